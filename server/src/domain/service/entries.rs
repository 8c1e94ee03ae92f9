//! Entries: appends, entry lists (the cached tail when it holds the page), context windows,
//! search.

use std::sync::Arc;

use super::{Baton, split_page};
use crate::domain::commands::{
    AppendEntries, ContextWindow, GetContextWindow, ListEntries, SearchEntries, WindowEntry,
};
use crate::domain::page::{self, PageKind};
use crate::domain::{Entry, Result, SearchHit, Session, tokens};
use crate::hub::SessionMessage;
use crate::store::{AppendCommand, AppendOutcome, EntryQuery, SearchQuery, WindowSlice};

impl Baton {
    pub async fn append(&self, tenant: &str, cmd: AppendEntries, trace_id: String) -> Result<AppendOutcome> {
        let AppendEntries { session_key, mut entries, idempotency_key, expected_last_seq } = cmd;
        self.redact_secrets(&mut entries);
        let outcome = self
            .store
            .append(AppendCommand {
                tenant: tenant.to_owned(),
                session_key,
                entries,
                idempotency_key,
                expected_last_seq,
                trace_id,
                now: self.now(),
            })
            .await?;
        if !outcome.replayed {
            self.counters.entries_appended(&outcome.entries);
            self.cache.after_append(tenant, &outcome.session, &outcome.entries).await;
            let batch: Arc<[Entry]> = outcome.entries.clone().into();
            self.hub.publish_session(tenant, &outcome.session.session_key, SessionMessage::Appended(batch));
        }
        Ok(outcome)
    }

    /// A page of entries: those the cache holds are shared with it (their encoding with them),
    /// the others read from the store.
    pub async fn list_entries(&self, tenant: &str, cmd: ListEntries) -> Result<(Vec<WindowEntry>, String)> {
        let scope = cmd.page_scope();
        let ListEntries { session_key, after_seq, before_seq, kinds, page_size, page_token } = cmd;
        let after_seq = after_seq.max(page_token.map_or(0, |p| p as u64));
        // The tail of a session, unfiltered, comes from the cache when it holds all of it.
        if kinds.is_empty()
            && before_seq.is_none()
            && let Some(cached) = self.cache.session(tenant, &session_key).await
            && let Some(tail) = cached.entries_after(after_seq)
        {
            let page = tail.iter().take(page_size as usize + 1).map(|c| WindowEntry::Cached(Arc::clone(c))).collect();
            return Ok(split_page(page, page_size, |e| {
                page::encode(PageKind::Entries, tenant, &scope, e.seq() as i64)
            }));
        }
        let entries = self
            .store
            .list_entries(&EntryQuery {
                tenant: tenant.to_owned(),
                session_key: session_key.clone(),
                after_seq,
                before_seq,
                kinds,
                limit: page_size + 1,
            })
            .await?;
        // Only a page that does not start right after `after_seq` can hide compacted entries:
        // then (and only then) the session's first_seq is read.
        if entries.first().is_none_or(|e| e.seq != after_seq + 1) {
            self.check_stored_from(tenant, &session_key, after_seq).await?;
        }
        let entries = entries.into_iter().map(|e| WindowEntry::Read(Box::new(e))).collect();
        Ok(split_page(entries, page_size, |e: &WindowEntry| {
            page::encode(PageKind::Entries, tenant, &scope, e.seq() as i64)
        }))
    }

    pub async fn context_window(&self, tenant: &str, cmd: GetContextWindow) -> Result<ContextWindow> {
        let GetContextWindow { session_key, max_tokens, max_entries } = cmd;
        if let Some(cached) = self.cache.session(tenant, &session_key).await {
            let (slice, complete) = cached.slice(max_entries, max_tokens);
            let summary = slice.summary.map(WindowEntry::Cached);
            let newest_first = slice.newest_first.into_iter().map(WindowEntry::Cached).collect();
            let (window, exhausted) = fit_window(&cached.session, summary, newest_first, max_tokens);
            // A partial tail answers only when the budget ran out inside it.
            if complete || !exhausted {
                return Ok(window);
            }
        }
        let mut slice = match self.cache.tail_len() {
            // A miss with a cache reads the whole cacheable tail once, to repair the cache.
            Some(tail_len) => {
                let slice = self.store.window(tenant, &session_key, max_entries.max(tail_len), u32::MAX).await?;
                if !slice.from_replica {
                    self.cache.install(tenant, &slice).await;
                }
                slice
            }
            None => self.store.window(tenant, &session_key, max_entries, max_tokens).await?,
        };
        slice.newest_first.truncate(max_entries as usize);
        let WindowSlice { session, summary, newest_first, .. } = slice;
        let read = |e: Entry| WindowEntry::Read(Box::new(e));
        let newest_first = newest_first.into_iter().map(read).collect();
        Ok(fit_window(&session, summary.map(read), newest_first, max_tokens).0)
    }

    pub async fn search(&self, tenant: &str, cmd: SearchEntries) -> Result<(Vec<SearchHit>, String)> {
        let scope = cmd.page_scope();
        let SearchEntries { session_key, query, page_size, offset } = cmd;
        let hits = self
            .store
            .search(&SearchQuery { tenant: tenant.to_owned(), session_key, query, offset, limit: page_size + 1 })
            .await?;
        let next_offset = i64::from(offset) + i64::from(page_size);
        Ok(split_page(hits, page_size, |_| page::encode(PageKind::Search, tenant, &scope, next_offset)))
    }
}

/// Fits a window into `max_tokens` by the budget rule (`tokens::window_len`): the summary,
/// then entries newest first while they fit.
/// Also says whether it ran out of entries before it ran out of budget.
fn fit_window(
    session: &Session,
    summary: Option<WindowEntry>,
    newest_first: Vec<WindowEntry>,
    max_tokens: u32,
) -> (ContextWindow, bool) {
    // A redacted summary or entry is left out (its content is gone; it costs nothing).
    let summary = summary.filter(|s| !s.redacted());
    let summary_tokens = summary.as_ref().map_or(0, |s| s.token_count());
    let available = newest_first.len();
    let costs = newest_first.iter().map(|e| e.token_count());
    let taken = tokens::window_len(summary_tokens, costs, u32::MAX, max_tokens);
    let mut entries = newest_first;
    entries.truncate(taken);
    let exhausted = entries.len() == available;
    // Left out: entries that did not fit, or older ones beyond max_entries.
    let oldest_kept = entries.last().map_or(session.last_seq + 1, |e| e.seq());
    let truncated = !exhausted || oldest_kept > session.last_summary_seq + 1;
    entries.retain(|e| !e.redacted());
    entries.reverse();
    let total_tokens = summary_tokens + entries.iter().map(|e| e.token_count()).sum::<u32>();
    let window = ContextWindow { summary, entries, total_tokens, last_seq: session.last_seq, truncated };
    (window, exhausted)
}
