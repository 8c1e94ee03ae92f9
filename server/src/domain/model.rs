//! The records Baton keeps, independent of the wire format and of the store.

use serde_json::{Map, Value};

/// A JSON object (entry and session metadata).
pub type Metadata = Map<String, Value>;

/// Microseconds since the Unix epoch, UTC. All of Baton's timestamps have this precision,
/// which is PostgreSQL's, so a value reads back exactly as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub i64);

impl Micros {
    pub fn plus(self, d: std::time::Duration) -> Micros {
        Micros(self.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::domain::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(crate::domain::Error::Internal(format!(
                        "unknown stored {} {other:?}", stringify!($name)
                    ))),
                }
            }
        }
    };
}

string_enum!(
    /// What a context entry is.
    EntryKind { Message = "message", File = "file", ToolCall = "tool_call", ToolResult = "tool_result", System = "system", Summary = "summary" }
);
string_enum!(
    /// Lifecycle of a session.
    SessionStatus { Active = "active", Dormant = "dormant", HandedOff = "handed_off", Closed = "closed", Expired = "expired" }
);
string_enum!(
    /// What a handoff passes on.
    HandoffType { ContextTransfer = "context_transfer", FullHandoff = "full_handoff", Collaboration = "collaboration" }
);
string_enum!(
    /// State of a handoff.
    HandoffStatus { Pending = "pending", Accepted = "accepted", Rejected = "rejected", Completed = "completed", Cancelled = "cancelled", Expired = "expired" }
);
string_enum!(
    /// What happened to a handoff.
    HandoffEventType { Created = "created", Accepted = "accepted", Rejected = "rejected", Completed = "completed", Cancelled = "cancelled", Expired = "expired", Deleted = "deleted" }
);

impl SessionStatus {
    /// Closed and expired sessions are read-only.
    pub fn is_open(self) -> bool {
        !matches!(self, SessionStatus::Closed | SessionStatus::Expired)
    }
}

impl HandoffStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, HandoffStatus::Pending | HandoffStatus::Accepted)
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Store-internal id; never leaves the server.
    pub id: i64,
    pub tenant: String,
    pub session_key: String,
    pub created_by: String,
    pub owner: String,
    pub status: SessionStatus,
    pub metadata: Metadata,
    pub last_seq: u64,
    /// Seq of the newest SUMMARY entry (0: none).
    pub last_summary_seq: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub last_activity_at: Micros,
    pub expires_at: Option<Micros>,
    /// The session and seq this one was forked from.
    pub forked_from: Option<SessionRef>,
    /// The oldest seq still stored (compaction moves it; `last_seq + 1` when none is left).
    pub first_seq: u64,
    /// While set, nothing of the session may be erased.
    pub legal_hold: bool,
    /// The session's own retention; `Retention::default()` means the server's.
    pub retention: Retention,
}

/// A position in a session (where a fork started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub session_key: String,
    pub seq: u64,
}

/// What the sweeper keeps of a session: entries outside both bounds set are compacted away
/// (0 does not limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub keep_latest: u64,
    /// In microseconds.
    pub max_age_micros: i64,
}

impl Retention {
    pub fn is_unset(&self) -> bool {
        self.keep_latest == 0 && self.max_age_micros <= 0
    }
}

/// Who erased an entry's content, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub by: String,
    pub at: Micros,
    pub reason: String,
}

/// The content of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Data(Vec<u8>),
}

impl Content {
    pub fn len(&self) -> usize {
        match self {
            Content::Text(t) => t.len(),
            Content::Data(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            Content::Data(_) => None,
        }
    }
}

/// A context entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub session_key: String,
    pub seq: u64,
    pub kind: EntryKind,
    pub role: String,
    pub author: String,
    pub content: Content,
    pub media_type: String,
    pub metadata: Metadata,
    pub token_count: u32,
    /// Empty when the append had no idempotency key.
    pub idempotency_key: String,
    /// Empty when the append was not traced.
    pub trace_id: String,
    pub created_at: Micros,
    /// Set when the content and metadata were erased (the content is then empty text).
    pub redaction: Option<Redaction>,
}

/// An entry to append, validated, with its token estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub role: String,
    pub author: String,
    pub content: Content,
    pub media_type: String,
    pub metadata: Metadata,
    pub token_count: u32,
}

/// A handoff as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    pub handoff_id: String,
    pub tenant: String,
    pub session_key: String,
    pub from_agent: String,
    pub to_agent: String,
    pub kind: HandoffType,
    pub status: HandoffStatus,
    pub instructions: String,
    pub summary: String,
    pub up_to_seq: u64,
    pub max_tokens: u32,
    pub reason: String,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub deadline: Option<Micros>,
}

impl Handoff {
    /// What remains of a handoff whose session was deleted: its id, its last status and when
    /// it was erased (the other fields are empty and never sent).
    pub fn tombstone(tenant: &str, handoff_id: &str, status: HandoffStatus, at: Micros) -> Handoff {
        Handoff {
            handoff_id: handoff_id.to_owned(),
            tenant: tenant.to_owned(),
            session_key: String::new(),
            from_agent: String::new(),
            to_agent: String::new(),
            kind: HandoffType::ContextTransfer,
            status,
            instructions: String::new(),
            summary: String::new(),
            up_to_seq: 0,
            max_tokens: 0,
            reason: String::new(),
            created_at: at,
            updated_at: at,
            deadline: None,
        }
    }
}

/// An event in one agent's handoff inbox. Each agent's cursors are 1, 2, 3 … with no gaps,
/// assigned in commit order, so resuming after a cursor misses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffEvent {
    pub agent: String,
    pub cursor: u64,
    pub kind: HandoffEventType,
    /// The handoff as it was right after the event.
    pub handoff: Handoff,
}

/// A lifecycle action as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub tenant: String,
    /// `delete`, `fork`, `redact`, `compact`, `legal_hold`, `retention`, `purge`, `retain`.
    pub action: &'static str,
    pub session_key: String,
    /// The API key id ('' without authentication or for the server's own sweeps).
    pub principal: String,
    pub agent: String,
    /// The seqs concerned, e.g. `1-40` or `3,7`.
    pub seqs: String,
    pub reason: String,
    pub at: Micros,
}

/// Seqs as compact ranges: `1-3,7`.
pub fn seq_ranges(seqs: &[u64]) -> String {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        out.push(if sorted[i] == start { start.to_string() } else { format!("{start}-{}", sorted[i]) });
        i += 1;
    }
    out.join(",")
}

/// One full-text search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub entry: Entry,
    pub score: f64,
    pub snippet: String,
}
