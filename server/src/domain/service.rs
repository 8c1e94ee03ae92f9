//! `Baton`: the service behind both gRPC services. It applies the rules, calls the store,
//! publishes what committed to the hub, and runs the streams.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::commands::*;
use super::page::{self, PageKind};
use super::rules;
use super::summary::Summarizer;
use super::validate::Limits;
use super::{
    Content, Entry, EntryKind, Error, Handoff, HandoffEvent, Metadata, Micros, Result, SearchHit, Session,
    SessionStatus,
};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::hub::{AgentMessage, Hub, SessionMessage};
use crate::store::{
    AppendCommand, AppendOutcome, Changed, EntryQuery, HandoffQuery, NewHandoff, NewSession, SearchQuery, SessionPatch,
    SessionQuery, Store, WindowSlice,
};
use crate::telemetry::Metrics;

/// Entries read from the store per page when replaying a stream or folding a summary.
const STREAM_PAGE: u32 = 512;
/// Bytes of content a replay page aims at: pages of large entries get fewer of them, so a
/// stream's memory stays bounded whatever its entries' size.
const STREAM_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Items a stream buffers ahead of its client.
const STREAM_BUFFER: usize = 64;
/// Expired sessions and handoffs handled per sweep query.
const SWEEP_BATCH: u32 = 500;

/// The receiving end of a server stream. Items are boxed so that a channel's slots stay
/// small: each stream's channel allocates its slots up front, and 10k idle follow streams
/// should not hold 10k blocks of full-size entries.
pub type ItemStream<T> = mpsc::Receiver<Box<Result<T>>>;

/// The service state shared by every request.
pub struct Baton {
    store: Arc<dyn Store>,
    /// Redis and L1, when configured.
    cache: Option<Arc<Cache>>,
    hub: Arc<Hub>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Cancelled when the server shuts down: every stream ends with UNAVAILABLE.
    shutdown: CancellationToken,
    /// Business counters (sessions, entries, handoffs).
    metrics: Arc<Metrics>,
}

impl Baton {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Option<Arc<Cache>>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let hub = Arc::new(Hub::default());
        if let Some(cache) = &cache {
            cache.start(Arc::clone(&hub), shutdown.clone());
        }
        Arc::new(Self { store, cache, hub, clock, limits, shutdown, metrics })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn now(&self) -> Micros {
        self.clock.now()
    }

    // ---- sessions ----

    pub async fn create_session(&self, tenant: &str, cmd: CreateSession) -> Result<Session> {
        let CreateSession { session_key, agent, metadata, ttl } = cmd;
        let now = self.now();
        let session_key = session_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let session = self
            .store
            .create_session(NewSession {
                tenant: tenant.to_owned(),
                session_key,
                agent,
                metadata,
                now,
                expires_at: ttl.map(|d| now.plus(d)),
            })
            .await?;
        self.metrics.session_created();
        if let Some(cache) = &self.cache {
            let slice = WindowSlice { session: session.clone(), summary: None, newest_first: Vec::new() };
            cache.install(tenant, &slice).await;
        }
        Ok(session)
    }

    pub async fn get_session(&self, tenant: &str, session_key: &str) -> Result<Session> {
        if let Some(cached) = self.cached(tenant, session_key).await {
            return Ok(self.effective(cached.session.clone()));
        }
        let session = self.store.get_session(tenant, session_key).await?;
        Ok(self.effective(session))
    }

    async fn cached(&self, tenant: &str, session_key: &str) -> Option<Arc<crate::cache::CachedSession>> {
        match &self.cache {
            Some(cache) => cache.session(tenant, session_key).await,
            None => None,
        }
    }

    /// A session changed other than by an append: drop cached copies, tell followers.
    async fn session_changed(&self, tenant: &str, session: &Session) {
        if let Some(cache) = &self.cache {
            cache.invalidate(tenant, session).await;
        }
        if !session.status.is_open() {
            self.hub.publish_session(tenant, &session.session_key, SessionMessage::Closed);
        }
    }

    /// A session past its expiry reads as EXPIRED even before the sweeper has written so.
    fn effective(&self, mut s: Session) -> Session {
        if s.status.is_open() && s.expires_at.is_some_and(|t| t <= self.now()) {
            s.status = SessionStatus::Expired;
        }
        s
    }

    pub async fn list_sessions(&self, tenant: &str, cmd: ListSessions) -> Result<(Vec<Session>, String)> {
        let ListSessions { agent, status, page_size, page_token } = cmd;
        let sessions = self
            .store
            .list_sessions(&SessionQuery {
                tenant: tenant.to_owned(),
                agent,
                status,
                before_id: page_token,
                limit: page_size + 1,
            })
            .await?;
        let (sessions, next) = split_page(sessions, page_size, |s| page::encode(PageKind::Sessions, s.id));
        Ok((sessions.into_iter().map(|s| self.effective(s)).collect(), next))
    }

    pub async fn update_session(&self, tenant: &str, cmd: UpdateSession) -> Result<Session> {
        let UpdateSession { session_key, metadata, status, ttl } = cmd;
        let now = self.now();
        let patch = SessionPatch {
            metadata,
            status,
            expires_at: ttl.map(|d| if d.is_zero() { None } else { Some(now.plus(d)) }),
        };
        let session = self.store.update_session(tenant, &session_key, patch, now).await?;
        self.session_changed(tenant, &session).await;
        Ok(self.effective(session))
    }

    pub async fn close_session(&self, tenant: &str, session_key: String) -> Result<Session> {
        let cmd = UpdateSession { session_key, metadata: None, status: Some(SessionStatus::Closed), ttl: None };
        self.update_session(tenant, cmd).await
    }

    // ---- entries ----

    pub async fn append(&self, tenant: &str, cmd: AppendEntries, trace_id: String) -> Result<AppendOutcome> {
        let AppendEntries { session_key, entries, idempotency_key, expected_last_seq } = cmd;
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
            self.metrics.entries_appended(&outcome.entries);
            if let Some(cache) = &self.cache {
                cache.after_append(tenant, &outcome.session, &outcome.entries).await;
            }
            let batch: Arc<[Entry]> = outcome.entries.clone().into();
            self.hub.publish_session(tenant, &outcome.session.session_key, SessionMessage::Appended(batch));
        }
        Ok(outcome)
    }

    pub async fn list_entries(&self, tenant: &str, cmd: ListEntries) -> Result<(Vec<Entry>, String)> {
        let ListEntries { session_key, after_seq, before_seq, kinds, page_size, page_token } = cmd;
        let after_seq = after_seq.max(page_token.map_or(0, |p| p as u64));
        // The tail of a session, unfiltered, comes from the cache when it holds all of it.
        if kinds.is_empty()
            && before_seq.is_none()
            && let Some(cached) = self.cached(tenant, &session_key).await
            && let Some(tail) = cached.entries_after(after_seq)
        {
            let page = tail.iter().take(page_size as usize + 1).cloned().collect();
            return Ok(split_page(page, page_size, |e| page::encode(PageKind::Entries, e.seq as i64)));
        }
        let entries = self
            .store
            .list_entries(&EntryQuery {
                tenant: tenant.to_owned(),
                session_key,
                after_seq,
                before_seq,
                kinds,
                limit: page_size + 1,
            })
            .await?;
        Ok(split_page(entries, page_size, |e| page::encode(PageKind::Entries, e.seq as i64)))
    }

    pub async fn context_window(&self, tenant: &str, cmd: GetContextWindow) -> Result<ContextWindow> {
        let GetContextWindow { session_key, max_tokens, max_entries } = cmd;
        if let Some(cached) = self.cached(tenant, &session_key).await {
            let (slice, complete) = cached.slice(max_entries, max_tokens);
            let (window, exhausted) = fit_window(slice, max_tokens);
            // A partial tail answers only when the budget ran out inside it.
            if complete || !exhausted {
                return Ok(window);
            }
        }
        // A miss with a cache reads the whole cacheable tail once, to repair the cache.
        let mut slice = match &self.cache {
            Some(cache) => {
                let slice =
                    self.store.window(tenant, &session_key, max_entries.max(cache.tail_len()), u32::MAX).await?;
                cache.install(tenant, &slice).await;
                slice
            }
            None => self.store.window(tenant, &session_key, max_entries, max_tokens).await?,
        };
        slice.newest_first.truncate(max_entries as usize);
        Ok(fit_window(slice, max_tokens).0)
    }

    pub async fn search(&self, tenant: &str, cmd: SearchEntries) -> Result<(Vec<SearchHit>, String)> {
        let SearchEntries { session_key, query, page_size, offset } = cmd;
        let hits = self
            .store
            .search(&SearchQuery { tenant: tenant.to_owned(), session_key, query, offset, limit: page_size + 1 })
            .await?;
        let next_offset = i64::from(offset) + i64::from(page_size);
        Ok(split_page(hits, page_size, |_| page::encode(PageKind::Search, next_offset)))
    }

    /// Streams entries after `after_seq`: a replay from the store in keyset pages, then (with
    /// `follow`) live appends. Every entry is delivered once, in order, across the switch.
    pub async fn stream_entries(self: &Arc<Self>, tenant: &str, cmd: StreamEntries) -> Result<ItemStream<Entry>> {
        let StreamEntries { session_key, after_seq, follow, max_entries } = cmd;
        // Subscribe before reading, so nothing committed after the replay's last page is missed.
        let mut live = follow.then(|| self.hub.subscribe_session(tenant, &session_key));
        // The store, not the cache: a stream needs the session's state, not its tail, and
        // thousands of followers should not fill the L1 with tails nobody reads.
        let session = self.effective(self.store.get_session(tenant, &session_key).await?);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let task = async move {
            let mut out = Sink { tx, sent: 0, max: max_entries, next: after_seq + 1, shutdown: this.shutdown.clone() };
            if this.catch_up(&tenant, &session_key, &mut out).await.is_err() {
                return;
            }
            let Some(live) = live.as_mut() else { return };
            if !session.status.is_open() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    biased;
                    _ = out.shutdown.cancelled() => return out.shutting_down().await,
                    _ = out.tx.closed() => return,
                    msg = live.recv() => msg,
                };
                let step = match msg {
                    Ok(SessionMessage::Appended(batch)) => this.deliver(&tenant, &session_key, &batch, &mut out).await,
                    Ok(SessionMessage::Advanced(last)) if last < out.next => Ok(()),
                    Ok(SessionMessage::Advanced(_) | SessionMessage::Resync) => {
                        this.catch_up(&tenant, &session_key, &mut out).await
                    }
                    Ok(SessionMessage::Closed) => {
                        let _ = this.catch_up(&tenant, &session_key, &mut out).await;
                        return;
                    }
                    // Fell behind the hub: the store has everything.
                    Err(RecvError::Lagged(_)) => this.catch_up(&tenant, &session_key, &mut out).await,
                    Err(RecvError::Closed) => return,
                };
                if step.is_err() {
                    return;
                }
            }
        };
        // In the call's span: the stream's statements are children of the call that opened it.
        tokio::spawn(task.in_current_span());
        Ok(rx)
    }

    /// Sends a live batch, first reading from the store whatever lies between the last entry
    /// sent and the batch (appends can commit in one order and publish in another).
    async fn deliver(
        &self,
        tenant: &str,
        session_key: &str,
        batch: &[Entry],
        out: &mut Sink<Entry>,
    ) -> Result<(), Stop> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return Ok(()) };
        if last.seq < out.next {
            return Ok(());
        }
        if first.seq > out.next {
            self.catch_up(tenant, session_key, out).await?;
        }
        for e in batch {
            if e.seq == out.next {
                out.send(e.clone(), e.seq).await?;
            }
        }
        Ok(())
    }

    /// Sends every stored entry from `out.next` on, page by page.
    async fn catch_up(&self, tenant: &str, session_key: &str, out: &mut Sink<Entry>) -> Result<(), Stop> {
        let mut limit = STREAM_PAGE;
        loop {
            let q = EntryQuery {
                tenant: tenant.to_owned(),
                session_key: session_key.to_owned(),
                after_seq: out.next - 1,
                before_seq: None,
                kinds: Vec::new(),
                limit,
            };
            let page = tokio::select! {
                biased;
                _ = out.shutdown.cancelled() => { out.shutting_down().await; return Err(Stop) }
                page = self.store.list_entries(&q) => page,
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = out.tx.send(Box::new(Err(e))).await;
                    return Err(Stop);
                }
            };
            let full = page.len() == limit as usize;
            let bytes: usize = page.iter().map(|e| e.content.len()).sum();
            limit = next_page_limit(limit, bytes);
            for e in page {
                let seq = e.seq;
                out.send(e, seq).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    // ---- handoffs ----

    pub async fn request_handoff(&self, tenant: &str, cmd: RequestHandoff) -> Result<Handoff> {
        let RequestHandoff { session_key, from_agent, to_agent, kind, instructions, deadline, max_tokens } = cmd;
        let now = self.now();
        if from_agent == to_agent {
            return Err(Error::invalid("to_agent", "must differ from from_agent"));
        }
        if deadline.is_some_and(|d| d <= now) {
            return Err(Error::invalid("deadline", "must be in the future"));
        }
        let session = self.store.get_session(tenant, &session_key).await?;
        rules::check_append(&session, None, now)?;
        let summary = self.summarize(tenant, &session_key, session.last_seq).await?;
        let handoff = Handoff {
            handoff_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_owned(),
            session_key,
            from_agent,
            to_agent,
            kind,
            status: super::HandoffStatus::Pending,
            instructions,
            summary,
            up_to_seq: session.last_seq,
            max_tokens,
            reason: String::new(),
            created_at: now,
            updated_at: now,
            deadline,
        };
        let changed = self.store.create_handoff(NewHandoff { handoff }).await?;
        Ok(self.publish_change(tenant, changed).await)
    }

    /// An extractive summary of entries 1..=up_to_seq, folded page by page.
    async fn summarize(&self, tenant: &str, session_key: &str, up_to_seq: u64) -> Result<String> {
        let mut summarizer = Summarizer::default();
        let mut after_seq = 0;
        while after_seq < up_to_seq {
            let page = self
                .store
                .list_entries(&EntryQuery {
                    tenant: tenant.to_owned(),
                    session_key: session_key.to_owned(),
                    after_seq,
                    before_seq: Some(up_to_seq + 1),
                    kinds: Vec::new(),
                    limit: STREAM_PAGE,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            page.iter().for_each(|e| summarizer.add(e));
        }
        Ok(summarizer.finish())
    }

    pub async fn get_handoff(&self, tenant: &str, handoff_id: &str) -> Result<Handoff> {
        if let Some(cache) = &self.cache
            && let Some(h) = cache.handoff(tenant, handoff_id).await
        {
            return Ok(self.effective_handoff(h));
        }
        let h = self.store.get_handoff(tenant, handoff_id).await?;
        Ok(self.effective_handoff(h))
    }

    fn effective_handoff(&self, mut h: Handoff) -> Handoff {
        h.status = rules::effective_status(&h, self.now());
        h
    }

    pub async fn list_handoffs(&self, tenant: &str, cmd: ListHandoffs) -> Result<(Vec<Handoff>, String)> {
        let ListHandoffs { to_agent, from_agent, session_key, status, page_size, page_token } = cmd;
        let rows = self
            .store
            .list_handoffs(&HandoffQuery {
                tenant: tenant.to_owned(),
                to_agent,
                from_agent,
                session_key,
                status,
                before_id: page_token,
                limit: page_size + 1,
            })
            .await?;
        let (rows, next) = split_page(rows, page_size, |(id, _)| page::encode(PageKind::Handoffs, *id));
        Ok((rows.into_iter().map(|(_, h)| self.effective_handoff(h)).collect(), next))
    }

    pub async fn change_handoff(&self, tenant: &str, cmd: ChangeHandoff) -> Result<Handoff> {
        let ChangeHandoff { handoff_id, agent, action, reason } = cmd;
        let now = self.now();
        let decide = move |h: &Handoff| rules::decide(h, action, &agent, reason.as_deref(), now);
        let changed = self.store.change_handoff(tenant, &handoff_id, now, &decide).await?;
        Ok(self.publish_change(tenant, changed).await)
    }

    async fn publish_change(&self, tenant: &str, changed: Changed) -> Handoff {
        let Changed { handoff, events, session } = changed;
        self.metrics.handoff_processed(handoff.status);
        if let Some(cache) = &self.cache {
            cache.after_handoff_change(tenant, &handoff, &events).await;
        }
        if let Some(session) = session {
            self.session_changed(tenant, &session).await;
        }
        for event in events {
            self.hub.publish_agent(tenant, event);
        }
        handoff
    }

    /// Expires what is due: pending handoffs past their deadline and sessions past their
    /// time to live. Runs on a timer (`run_sweeper`); tests call it after moving the clock.
    pub async fn sweep(&self) -> Result<()> {
        let now = self.now();
        loop {
            let changed = self.store.expire_handoffs(now, SWEEP_BATCH).await?;
            let n = changed.len();
            for c in changed {
                let tenant = c.handoff.tenant.clone();
                self.publish_change(&tenant, c).await;
            }
            if n < SWEEP_BATCH as usize {
                break;
            }
        }
        loop {
            let sessions = self.store.expire_sessions(now, SWEEP_BATCH).await?;
            let n = sessions.len();
            for s in sessions {
                self.session_changed(&s.tenant.clone(), &s).await;
            }
            if n < SWEEP_BATCH as usize {
                break;
            }
        }
        Ok(())
    }

    /// Sweeps every `interval` until shutdown.
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "expiry sweep failed; retrying on the next tick");
                    }
                }
            }
        }
    }

    /// An agent's inbox: pending handoffs addressed to it (or the events after `after_cursor`),
    /// then live events, each once and in cursor order.
    pub async fn watch_handoffs(
        self: &Arc<Self>,
        tenant: &str,
        cmd: WatchHandoffs,
    ) -> Result<ItemStream<HandoffEvent>> {
        let WatchHandoffs { agent, after_cursor } = cmd;
        let mut live = self.hub.subscribe_agent(tenant, &agent);
        let (pending, next) = match after_cursor {
            Some(c) => (Vec::new(), c + 1),
            None => {
                let (pending, head) = self.store.pending_inbox(tenant, &agent).await?;
                (pending, head + 1)
            }
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let task = async move {
            let mut out = Sink { tx, sent: 0, max: 0, next, shutdown: this.shutdown.clone() };
            for e in pending {
                // Past its deadline but not swept yet: its EXPIRED event follows in the log.
                if rules::effective_status(&e.handoff, this.now()) != super::HandoffStatus::Pending {
                    continue;
                }
                // Pending events are older than `next`; send them without moving the cursor.
                if out.tx.send(Box::new(Ok(e))).await.is_err() {
                    return;
                }
            }
            if this.inbox_catch_up(&tenant, &agent, &mut out).await.is_err() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    biased;
                    _ = out.shutdown.cancelled() => return out.shutting_down().await,
                    _ = out.tx.closed() => return,
                    msg = live.recv() => msg,
                };
                let step = match msg {
                    Ok(AgentMessage::Event(event)) if event.cursor < out.next => Ok(()),
                    Ok(AgentMessage::Event(event)) if event.cursor == out.next => {
                        out.send(event.as_ref().clone(), event.cursor).await
                    }
                    Ok(AgentMessage::Event(_) | AgentMessage::Resync) | Err(RecvError::Lagged(_)) => {
                        this.inbox_catch_up(&tenant, &agent, &mut out).await
                    }
                    Err(RecvError::Closed) => return,
                };
                if step.is_err() {
                    return;
                }
            }
        };
        tokio::spawn(task.in_current_span());
        Ok(rx)
    }

    async fn inbox_catch_up(&self, tenant: &str, agent: &str, out: &mut Sink<HandoffEvent>) -> Result<(), Stop> {
        loop {
            let page = match self.store.inbox_after(tenant, agent, out.next - 1, STREAM_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = out.tx.send(Box::new(Err(e))).await;
                    return Err(Stop);
                }
            };
            let full = page.len() == STREAM_PAGE as usize;
            for e in page {
                let cursor = e.cursor;
                out.send(e, cursor).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The handoff's context package: its summary as a SUMMARY entry (seq 0), then the newest
    /// entries up to `up_to_seq` that fit its token budget, in seq order.
    pub async fn stream_handoff_context(self: &Arc<Self>, tenant: &str, handoff_id: &str) -> Result<ItemStream<Entry>> {
        let handoff = self.get_handoff(tenant, handoff_id).await?;
        let budget = if handoff.max_tokens == 0 { super::validate::DEFAULT_MAX_TOKENS } else { handoff.max_tokens };
        let summary = self.handoff_summary_entry(&handoff);
        let first_seq = self
            .store
            .tail_start(tenant, &handoff.session_key, handoff.up_to_seq, budget.saturating_sub(summary.token_count))
            .await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let task = async move {
            let mut out = Sink { tx, sent: 0, max: 0, next: first_seq, shutdown: this.shutdown.clone() };
            if out.tx.send(Box::new(Ok(summary))).await.is_err() {
                return;
            }
            loop {
                let q = EntryQuery {
                    tenant: tenant.clone(),
                    session_key: handoff.session_key.clone(),
                    after_seq: out.next - 1,
                    before_seq: Some(handoff.up_to_seq + 1),
                    kinds: Vec::new(),
                    limit: STREAM_PAGE,
                };
                let page = match this.store.list_entries(&q).await {
                    Ok(p) => p,
                    Err(e) => return drop(out.tx.send(Box::new(Err(e))).await),
                };
                let full = page.len() == STREAM_PAGE as usize;
                for e in page {
                    let seq = e.seq;
                    if out.send(e, seq).await.is_err() {
                        return;
                    }
                }
                if !full {
                    return;
                }
            }
        };
        tokio::spawn(task.in_current_span());
        Ok(rx)
    }

    fn handoff_summary_entry(&self, h: &Handoff) -> Entry {
        let mut metadata = Metadata::new();
        metadata.insert("handoff_id".into(), h.handoff_id.clone().into());
        metadata.insert("up_to_seq".into(), h.up_to_seq.into());
        let mut text = h.summary.clone();
        if !h.instructions.is_empty() {
            text = format!("Instructions from {}: {}\n\n{text}", h.from_agent, h.instructions);
        }
        let content = Content::Text(text);
        Entry {
            session_key: h.session_key.clone(),
            seq: 0,
            kind: EntryKind::Summary,
            role: "system".into(),
            author: h.from_agent.clone(),
            token_count: super::tokens::estimate(&content),
            content,
            media_type: "text/plain".into(),
            metadata,
            idempotency_key: String::new(),
            trace_id: String::new(),
            created_at: h.created_at,
        }
    }
}

/// The stream ended (client gone, limit reached, or shutdown); nothing more to send.
#[derive(Debug)]
struct Stop;

/// A stream's sending side and its position.
struct Sink<T> {
    tx: mpsc::Sender<Box<Result<T>>>,
    sent: u32,
    /// 0: no limit.
    max: u32,
    /// The seq or cursor the stream sends next.
    next: u64,
    shutdown: CancellationToken,
}

impl<T> Sink<T> {
    async fn send(&mut self, item: T, position: u64) -> Result<(), Stop> {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => { self.shutting_down().await; return Err(Stop) }
            sent = self.tx.send(Box::new(Ok(item))) => sent.map_err(|_| Stop)?,
        }
        self.next = position + 1;
        self.sent += 1;
        if self.max != 0 && self.sent >= self.max { Err(Stop) } else { Ok(()) }
    }

    async fn shutting_down(&self) {
        let resume = self.next.saturating_sub(1);
        let msg = format!("server shutting down; resume after {resume}");
        let _ = self.tx.send(Box::new(Err(Error::Unavailable(msg)))).await;
    }
}

/// Fits a window into `max_tokens`: the summary, then entries newest first while they fit.
/// Also says whether it ran out of entries before it ran out of budget.
fn fit_window(slice: WindowSlice, max_tokens: u32) -> (ContextWindow, bool) {
    let summary_tokens = slice.summary.as_ref().map_or(0, |s| s.token_count);
    let mut budget = max_tokens.saturating_sub(summary_tokens);
    let available = slice.newest_first.len();
    let mut entries = Vec::with_capacity(available);
    for e in slice.newest_first {
        if e.token_count > budget {
            break;
        }
        budget -= e.token_count;
        entries.push(e);
    }
    let exhausted = entries.len() == available;
    // Left out: entries that did not fit, or older ones beyond max_entries.
    let oldest_kept = entries.last().map_or(slice.session.last_seq + 1, |e| e.seq);
    let truncated = !exhausted || oldest_kept > slice.session.last_summary_seq + 1;
    entries.reverse();
    let total_tokens = summary_tokens + entries.iter().map(|e| e.token_count).sum::<u32>();
    let window =
        ContextWindow { summary: slice.summary, entries, total_tokens, last_seq: slice.session.last_seq, truncated };
    (window, exhausted)
}

/// The next replay page's size: as many entries of the last page's average size as fit in
/// `STREAM_PAGE_BYTES`, between 1 and `STREAM_PAGE`.
fn next_page_limit(limit: u32, page_bytes: usize) -> u32 {
    let average = (page_bytes / limit.max(1) as usize).max(1);
    u32::try_from(STREAM_PAGE_BYTES / average).unwrap_or(u32::MAX).clamp(1, STREAM_PAGE)
}

/// Cuts a `limit + 1` result to `limit` and makes the next page's token from its last item.
fn split_page<T>(mut items: Vec<T>, limit: u32, token: impl Fn(&T) -> String) -> (Vec<T>, String) {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        let next = items.last().map(&token).unwrap_or_default();
        (items, next)
    } else {
        (items, String::new())
    }
}
