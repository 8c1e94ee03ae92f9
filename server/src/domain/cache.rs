//! What the domain asks of a cache: a read-through view of sessions and handoffs that is told
//! about every committed change. The domain does not know what backs it; `crate::cache` is the
//! Redis one, [`NoCache`] the absence of one (a single replica without Redis).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Entry, Handoff, HandoffEvent, Session};
use crate::store::WindowSlice;

/// A read-through cache. Reads answer `None` when the cache cannot vouch for a current copy;
/// the notifications are best effort (a failed one must leave the cache unable to serve the
/// stale data, never serve it).
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Newest entries kept per session; `None` when nothing is cached.
    fn tail_len(&self) -> Option<u32> {
        None
    }
    /// The session as the store last committed it, with its newest entries.
    async fn session(&self, _tenant: &str, _session_key: &str) -> Option<Arc<CachedSession>> {
        None
    }
    async fn handoff(&self, _tenant: &str, _handoff_id: &str) -> Option<Handoff> {
        None
    }
    /// Installs what the store returned for a window (or a new session), repairing a miss.
    async fn install(&self, _tenant: &str, _slice: &WindowSlice) {}
    /// An append committed.
    async fn after_append(&self, _tenant: &str, _session: &Session, _entries: &[Entry]) {}
    /// A session changed other than by an append.
    async fn invalidate(&self, _tenant: &str, _session: &Session) {}
    /// A handoff changed, writing these inbox events.
    async fn after_handoff_change(&self, _tenant: &str, _handoff: &Handoff, _events: &[HandoffEvent]) {}
}

/// No cache: every read goes to the store.
pub struct NoCache;

impl Cache for NoCache {}

/// What the cache knows of a session: valid for `last_seq` and `updated_at`.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub session: Session,
    pub summary: Option<Entry>,
    /// The newest entries, oldest first, ending at `session.last_seq`.
    pub tail: Arc<[Entry]>,
}

impl CachedSession {
    /// The window material: entries after the summary, newest first, at most `max`, and no
    /// more than `max_tokens` can take (those that fit plus the first that does not). The
    /// slice is complete when it holds every such entry, `max` of them, or more than the
    /// budget.
    pub fn slice(&self, max: u32, max_tokens: u32) -> (WindowSlice, bool) {
        let after = self.session.last_summary_seq;
        let mut total = 0u64;
        let mut newest_first = Vec::new();
        for e in self.tail.iter().rev().take_while(|e| e.seq > after).take(max as usize) {
            if total >= u64::from(max_tokens) {
                break;
            }
            total += u64::from(e.token_count);
            newest_first.push(e.clone());
        }
        let first_cached = self.tail.first().map_or(self.session.last_seq + 1, |e| e.seq);
        let complete =
            newest_first.len() == max as usize || total >= u64::from(max_tokens) || first_cached <= after + 1;
        let slice = WindowSlice { session: self.session.clone(), summary: self.summary.clone(), newest_first };
        (slice, complete)
    }

    /// Entries with seq > `after` when the cached tail holds all of them.
    pub fn entries_after(&self, after: u64) -> Option<&[Entry]> {
        let first_cached = self.tail.first().map_or(self.session.last_seq + 1, |e| e.seq);
        if after + 1 < first_cached {
            return None;
        }
        let skip = self.tail.partition_point(|e| e.seq <= after);
        Some(&self.tail[skip..])
    }
}

