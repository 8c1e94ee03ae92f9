//! What the domain asks of a cache: a read-through view of sessions and handoffs that is told
//! about every committed change. The domain does not know what backs it; `crate::cache` is the
//! Redis one, [`NoCache`] the absence of one (a single replica without Redis).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Entry, EntryKind, Handoff, HandoffEvent, Session, tokens};
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
    /// Drops every cached copy of a session (and of the given handoffs), here and on the other
    /// replicas: after a redaction or compaction (`deleted` false), or a deletion (`deleted`:
    /// other replicas also end the session's followers, and hear the inbox `events`).
    async fn forget(
        &self,
        _tenant: &str,
        _session_key: &str,
        _handoff_ids: &[String],
        _deleted: bool,
        _events: &[HandoffEvent],
    ) {
    }
}

/// No cache: every read goes to the store.
pub struct NoCache;

impl Cache for NoCache {}

/// An entry as the cache holds it: its encoding as the API sends it (`baton.v1.Entry`), made
/// once when it entered the cache, and the few fields the domain reads to choose what to send
/// (windows and pages served from the cache send `wire` as it is; nothing decodes it again).
/// Holding the encoding alone, not the record beside it, keeps an entry at about its encoded
/// size in memory, and a tail read from Redis costs a scan of each entry's header instead of a
/// full decode into records nothing reads.
#[derive(Debug)]
pub struct CachedEntry {
    pub seq: u64,
    pub kind: EntryKind,
    pub token_count: u32,
    /// Redacted entries stay in a session's tail but never enter a window.
    pub redacted: bool,
    pub wire: Bytes,
}

impl CachedEntry {
    /// `entry` with its encoding `wire`.
    pub fn new(entry: &Entry, wire: Bytes) -> Self {
        CachedEntry {
            seq: entry.seq,
            kind: entry.kind,
            token_count: entry.token_count,
            redacted: entry.redaction.is_some(),
            wire,
        }
    }

    /// Roughly the bytes it holds in memory (what the L1 weighs): the record, its shared
    /// count and its encoding, with the allocator's share.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Self>() + ARC + heap(self.wire.len())
    }
}

/// An `Arc`'s two counts.
const ARC: usize = 16;
/// What an allocation costs beyond its bytes, on average (size-class rounding).
const ALLOCATION: usize = 16;
/// A node of a JSON object's map: eleven `(String, Value)` slots and its links.
const MAP_NODE: usize = 11 * (24 + 32) + 80;

fn heap(bytes: usize) -> usize {
    if bytes == 0 { 0 } else { bytes + ALLOCATION }
}

/// A JSON object's bytes beyond its own struct: its map's nodes, keys and values.
fn map_memory(m: &serde_json::Map<String, serde_json::Value>) -> usize {
    let nodes = m.len().div_ceil(11);
    nodes * heap(MAP_NODE) + m.iter().map(|(k, v)| heap(k.capacity()) + json_memory(v)).sum::<usize>()
}

fn json_memory(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => heap(s.capacity()),
        Value::Array(a) => heap(a.capacity() * std::mem::size_of::<Value>()) + a.iter().map(json_memory).sum::<usize>(),
        Value::Object(o) => map_memory(o),
    }
}

/// What the cache knows of a session: valid for `last_seq` and `updated_at`.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub session: Session,
    pub summary: Option<Arc<CachedEntry>>,
    /// The newest entries, oldest first, ending at `session.last_seq`.
    pub tail: Arc<[Arc<CachedEntry>]>,
}

/// Window material from the cache: the summary and the entries after it, newest first.
#[derive(Debug, Clone)]
pub struct CachedSlice {
    pub summary: Option<Arc<CachedEntry>>,
    pub newest_first: Vec<Arc<CachedEntry>>,
}

impl CachedSession {
    /// Roughly the bytes it holds in memory (what the L1 weighs): the session's record and
    /// strings, and its summary and tail entries (each shared, counted here in full).
    pub fn memory(&self) -> usize {
        let s = &self.session;
        let strings = [&s.tenant, &s.session_key, &s.created_by, &s.owner];
        let entries = self.summary.iter().chain(self.tail.iter());
        std::mem::size_of::<Self>()
            + strings.iter().map(|x| heap(x.capacity())).sum::<usize>()
            + map_memory(&s.metadata)
            + entries.map(|e| std::mem::size_of::<Arc<CachedEntry>>() + e.memory()).sum::<usize>()
    }

    /// The window material: entries after the summary, newest first, at most `max`, and no
    /// more than `max_tokens` can take (those that fit plus the first that does not). The
    /// slice is complete when it holds every such entry, `max` of them, or more than the
    /// budget.
    pub fn slice(&self, max: u32, max_tokens: u32) -> (CachedSlice, bool) {
        let after = self.session.last_summary_seq;
        let offered = || self.tail.iter().rev().take_while(move |e| e.seq > after).take(max as usize);
        let read = tokens::read_bound(offered().map(|e| e.token_count), max_tokens);
        let newest_first: Vec<Arc<CachedEntry>> = offered().take(read).cloned().collect();
        let total: u64 = newest_first.iter().map(|e| u64::from(e.token_count)).sum();
        let first_cached = self.tail.first().map_or(self.session.last_seq + 1, |e| e.seq);
        let complete = newest_first.len() == max as usize || total > u64::from(max_tokens) || first_cached <= after + 1;
        (CachedSlice { summary: self.summary.clone(), newest_first }, complete)
    }

    /// Entries with seq > `after` when the cached tail holds all of them.
    pub fn entries_after(&self, after: u64) -> Option<&[Arc<CachedEntry>]> {
        let first_cached = self.tail.first().map_or(self.session.last_seq + 1, |e| e.seq);
        if after + 1 < first_cached {
            return None;
        }
        let skip = self.tail.partition_point(|e| e.seq <= after);
        Some(&self.tail[skip..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Content, EntryKind, Metadata, Micros, SessionStatus};

    fn entry(seq: u64, kind: EntryKind, tokens: u32) -> Entry {
        Entry {
            session_key: "s".into(),
            seq,
            kind,
            role: String::new(),
            author: "a".into(),
            content: Content::Text(String::new()),
            media_type: String::new(),
            metadata: Metadata::new(),
            token_count: tokens,
            idempotency_key: String::new(),
            trace_id: String::new(),
            created_at: Micros(0),
            redaction: None,
        }
    }

    fn session(last_seq: u64, last_summary_seq: u64) -> Session {
        Session {
            id: 1,
            tenant: "t".into(),
            session_key: "s".into(),
            created_by: "a".into(),
            owner: "a".into(),
            status: SessionStatus::Active,
            metadata: Metadata::new(),
            last_seq,
            last_summary_seq,
            created_at: Micros(0),
            updated_at: Micros(0),
            last_activity_at: Micros(0),
            expires_at: None,
            forked_from: None,
            first_seq: 1,
            legal_hold: false,
            retention: Default::default(),
        }
    }

    /// The weight is the record and its encoding: what the entry held beside it (content,
    /// strings, metadata) is not kept.
    #[test]
    fn memory_is_the_record_and_its_encoding() {
        let mut e = entry(1, EntryKind::Message, 1);
        let bare = CachedEntry::new(&e, Bytes::from_static(&[0; 100]));
        assert_eq!(bare.memory(), std::mem::size_of::<CachedEntry>() + ARC + 100 + ALLOCATION);
        e.content = Content::Text("x".repeat(500));
        e.metadata.insert("model".into(), "gpt".into());
        let rich = CachedEntry::new(&e, Bytes::from_static(&[0; 600]));
        assert_eq!(rich.memory() - bare.memory(), 500);
        e.redaction = Some(crate::domain::Redaction { at: Micros(1), by: "a".into(), reason: String::new() });
        assert!(CachedEntry::new(&e, Bytes::new()).redacted && !rich.redacted);
    }

    /// Whenever a cached tail says it can answer a window, the budget rule applied to it gives
    /// the window the whole session gives (`tokens::window_of`, the stores' reference).
    #[test]
    fn a_complete_slice_selects_what_the_whole_session_selects() {
        let mut state = 0x2545_f491_u64;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let mut answered = 0;
        for _ in 0..300 {
            let len = 1 + next(60);
            let entries: Vec<Entry> = (1..=len)
                .map(|seq| {
                    let kind = if next(10) == 0 { EntryKind::Summary } else { EntryKind::Message };
                    entry(seq, kind, 4 + next(40) as u32)
                })
                .collect();
            let summary = entries.iter().rev().find(|e| e.kind == EntryKind::Summary).cloned();
            let cached_len = 1 + next(len) as usize;
            let share = |e: &Entry| Arc::new(CachedEntry::new(e, Bytes::new()));
            let cached = CachedSession {
                session: session(len, summary.as_ref().map_or(0, |s| s.seq)),
                summary: summary.as_ref().map(share),
                tail: entries[entries.len() - cached_len..].iter().map(share).collect(),
            };
            let (max_entries, max_tokens) = (1 + next(30) as u32, next(400) as u32);
            let (slice, complete) = cached.slice(max_entries, max_tokens);
            if !complete {
                continue;
            }
            answered += 1;
            let summary_tokens = slice.summary.as_ref().map_or(0, |s| s.token_count);
            let n = tokens::window_len(
                summary_tokens,
                slice.newest_first.iter().map(|e| e.token_count),
                max_entries,
                max_tokens,
            );
            let from_cache: Vec<u64> = slice.newest_first[..n].iter().rev().map(|e| e.seq).collect();
            let (want_summary, want) = tokens::window_of(&entries, max_entries, max_tokens);
            assert_eq!(slice.summary.as_ref().map(|s| s.seq), want_summary.map(|s| s.seq));
            assert_eq!(from_cache, want.iter().map(|e| e.seq).collect::<Vec<_>>(), "{max_entries} {max_tokens}");
        }
        assert!(answered > 100, "only {answered} windows were answerable from the cache");
    }
}
