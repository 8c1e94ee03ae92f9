//! What callers ask of the service, validated: built from protos by `api::requests`.

use std::time::Duration;

use super::rules::Action;
use super::{EntryKind, HandoffStatus, HandoffType, Metadata, Micros, NewEntry, SessionStatus};

#[derive(Debug, Clone)]
pub struct CreateSession {
    /// `None`: the server generates one.
    pub session_key: Option<String>,
    pub agent: String,
    pub metadata: Metadata,
    pub ttl: Option<Duration>,
    /// Makes the create once per key in the tenant (shared with forks).
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListSessions {
    pub agent: Option<String>,
    pub status: Option<SessionStatus>,
    pub page_size: u32,
    pub page_token: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct UpdateSession {
    pub session_key: String,
    pub metadata: Option<Metadata>,
    pub status: Option<SessionStatus>,
    /// `Some(ZERO)` removes the expiry.
    pub ttl: Option<Duration>,
    pub legal_hold: Option<bool>,
    /// `Some(Retention::default())` returns the session to the server's retention.
    pub retention: Option<super::Retention>,
}

#[derive(Debug, Clone)]
pub struct ForkSession {
    pub session_key: String,
    /// 0: the source's newest.
    pub at_seq: u64,
    pub new_session_key: Option<String>,
    pub agent: String,
    /// Makes the fork once per key in the tenant (shared with creates).
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RedactEntries {
    pub session_key: String,
    pub seqs: Vec<u64>,
    pub reason: String,
    pub agent: String,
    pub expected_last_seq: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct CompactSession {
    pub session_key: String,
    pub before_seq: u64,
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct AppendEntries {
    pub session_key: String,
    pub entries: Vec<NewEntry>,
    pub idempotency_key: Option<String>,
    pub expected_last_seq: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ListEntries {
    pub session_key: String,
    pub after_seq: u64,
    pub before_seq: Option<u64>,
    pub kinds: Vec<EntryKind>,
    pub page_size: u32,
    pub page_token: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct StreamEntries {
    pub session_key: String,
    pub after_seq: u64,
    pub follow: bool,
    /// 0: no limit.
    pub max_entries: u32,
}

#[derive(Debug, Clone)]
pub struct GetContextWindow {
    pub session_key: String,
    pub max_tokens: u32,
    pub max_entries: u32,
}

#[derive(Debug, Clone)]
pub struct SearchEntries {
    pub session_key: Option<String>,
    pub query: super::search::Query,
    pub page_size: u32,
    pub offset: u32,
}

#[derive(Debug, Clone)]
pub struct RequestHandoff {
    pub session_key: String,
    pub from_agent: String,
    pub to_agent: String,
    pub kind: HandoffType,
    pub instructions: String,
    pub deadline: Option<Micros>,
    pub max_tokens: u32,
    /// Makes the request once per key in the session.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListHandoffs {
    pub to_agent: Option<String>,
    pub from_agent: Option<String>,
    pub session_key: Option<String>,
    pub status: Option<HandoffStatus>,
    pub page_size: u32,
    pub page_token: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ChangeHandoff {
    pub handoff_id: String,
    pub agent: String,
    pub action: Action,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WatchHandoffs {
    pub agent: String,
    pub after_cursor: Option<u64>,
}

/// A context window.
#[derive(Debug, Clone)]
pub struct ContextWindow {
    pub summary: Option<WindowEntry>,
    pub entries: Vec<WindowEntry>,
    pub total_tokens: u32,
    pub last_seq: u64,
    pub truncated: bool,
}

/// An entry of a context window: read from the store, or shared with the cache (which holds
/// its encoding too).
#[derive(Debug, Clone)]
pub enum WindowEntry {
    Read(Box<super::Entry>),
    Cached(std::sync::Arc<super::cache::CachedEntry>),
}

impl WindowEntry {
    pub fn seq(&self) -> u64 {
        match self {
            WindowEntry::Read(e) => e.seq,
            WindowEntry::Cached(c) => c.seq,
        }
    }

    pub fn token_count(&self) -> u32 {
        match self {
            WindowEntry::Read(e) => e.token_count,
            WindowEntry::Cached(c) => c.token_count,
        }
    }

    pub fn redacted(&self) -> bool {
        match self {
            WindowEntry::Read(e) => e.redaction.is_some(),
            WindowEntry::Cached(c) => c.redacted,
        }
    }
}

// What a page token is bound to besides its list and tenant: the list's filters, so a token
// of one query is refused by another (`domain::page`). Positions (after_seq) are not part of
// it: the token replaces them.

impl ListSessions {
    pub fn page_scope(&self) -> String {
        format!("{:?}|{:?}", self.agent, self.status)
    }
}

impl ListEntries {
    pub fn page_scope(&self) -> String {
        format!("{:?}|{:?}|{:?}", self.session_key, self.before_seq, self.kinds)
    }
}

impl SearchEntries {
    pub fn page_scope(&self) -> String {
        Self::scope(&self.session_key, &self.query)
    }

    pub fn scope(session_key: &Option<String>, query: &super::search::Query) -> String {
        format!("{session_key:?}|{query:?}")
    }
}

impl ListHandoffs {
    pub fn page_scope(&self) -> String {
        format!("{:?}|{:?}|{:?}|{:?}", self.to_agent, self.from_agent, self.session_key, self.status)
    }
}
