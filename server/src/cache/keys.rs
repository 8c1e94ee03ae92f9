//! What the cache stores and sends: key and channel names (every key carries the tenant, so
//! tenants never share an entry), the encoded session and bus messages, and the decoding of a
//! read script's reply.

use fred::bytes::Bytes;
use fred::prelude::*;
use prost::Message as _;

use std::sync::Arc;

use super::CachedSession;
use crate::domain::cache::CachedEntry;
use crate::domain::{Entry, Session};
use crate::wire;
use baton_proto::v1 as pb;

/// The encoded session stored in `meta.session`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SessionBlob {
    #[prost(int64, tag = "1")]
    pub(super) id: i64,
    #[prost(uint64, tag = "2")]
    pub(super) last_summary_seq: u64,
    #[prost(message, optional, tag = "3")]
    pub(super) session: Option<pb::Session>,
}

/// What replicas tell each other on the bus.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct BusMessage {
    /// The sending replica; it ignores its own messages.
    #[prost(uint64, tag = "1")]
    pub(super) replica: u64,
    #[prost(string, tag = "2")]
    pub(super) tenant: String,
    #[prost(string, tag = "3")]
    pub(super) session_key: String,
    /// The session's last_seq after an append (0 for other messages).
    #[prost(uint64, tag = "4")]
    pub(super) last_seq: u64,
    /// The appended entries (each a `baton.v1.Entry` encoding, as the cache keeps them: on
    /// the wire the same as a repeated message field); empty when they were too large to
    /// inline.
    #[prost(bytes = "bytes", repeated, tag = "5")]
    pub(super) entries: Vec<Bytes>,
    /// The inbox an event belongs to.
    #[prost(string, tag = "6")]
    pub(super) agent: String,
    #[prost(message, optional, tag = "7")]
    pub(super) event: Option<pb::HandoffEvent>,
    /// The session was closed or expired.
    #[prost(bool, tag = "8")]
    pub(super) closed: bool,
    /// Cached copies of the session are stale (redacted, compacted, deleted): drop them.
    #[prost(bool, tag = "9")]
    pub(super) purged: bool,
    /// The session was deleted: its followers end with NOT_FOUND.
    #[prost(bool, tag = "10")]
    pub(super) deleted: bool,
    /// Changes may have gone unannounced (a failed update could not publish): the receiver's
    /// followers and inbox watchers read the store.
    #[prost(bool, tag = "11")]
    pub(super) resync: bool,
}

// A session's keys share the hash tag `{tenant/key}`, so on a Redis Cluster both live in one
// slot and each script, which touches them together, runs on one node (cross-slot scripts fail
// with CROSSSLOT). A handoff is one key. Channels are not keys: the bus publishes on classic
// channels, which a cluster forwards to every node, so one pattern subscription on any node
// hears them all.

/// The key and channel names of one store's cache. Each starts `baton:<instance>:`, the
/// store's identity (`Store::instance_id`, made once per database), so deployments on
/// different databases that share a Redis never read each other's cached entries or hear each
/// other's live appends, and a database made anew behind the same Redis starts with an empty
/// cache rather than the version floors its predecessor left.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(instance: &str) -> Keys {
        Keys { prefix: format!("baton:{instance}:") }
    }

    pub(super) fn meta(&self, tenant: &str, key: &str) -> String {
        format!("{}{{{tenant}/{key}}}:meta", self.prefix)
    }

    pub(super) fn tail(&self, tenant: &str, key: &str) -> String {
        format!("{}{{{tenant}/{key}}}:tail", self.prefix)
    }

    pub(super) fn handoff(&self, tenant: &str, id: &str) -> String {
        format!("{}handoff:{tenant}/{id}", self.prefix)
    }

    pub(super) fn session_channel(&self, tenant: &str, key: &str) -> String {
        format!("{}bus:{tenant}:s:{key}", self.prefix)
    }

    pub(super) fn agent_channel(&self, tenant: &str, agent: &str) -> String {
        format!("{}bus:{tenant}:a:{agent}", self.prefix)
    }

    /// Every channel of this store's bus.
    pub(super) fn bus_pattern(&self) -> String {
        format!("{}bus:*", self.prefix)
    }
}

pub(super) fn encode_session(s: &Session) -> Bytes {
    let blob = SessionBlob { id: s.id, last_summary_seq: s.last_summary_seq, session: Some(s.clone().into()) };
    blob.encode_to_vec().into()
}

/// An entry as the cache holds it, with its encoding.
pub(super) fn cached_entry(e: &Entry) -> Arc<CachedEntry> {
    Arc::new(CachedEntry::new(e, wire::encode_entry(e)))
}

/// An entry read from its encoding in a Redis reply. The encoding is copied out: the reply's
/// values are slices of the connection's read buffer, and a cached slice would keep that whole
/// buffer alive, unweighed, for as long as any entry read with it stays in the L1.
fn decode_entry(reply: &[u8]) -> Result<Arc<CachedEntry>, String> {
    let wire::EntryHeader { seq, kind, token_count, redacted } = wire::entry_header(reply)?;
    Ok(Arc::new(CachedEntry { seq, kind, token_count, redacted, wire: Bytes::copy_from_slice(reply) }))
}

fn into_bytes(v: Value) -> Bytes {
    match v {
        Value::Bytes(b) => b,
        Value::String(s) => s.into_inner(),
        _ => Bytes::new(),
    }
}

pub(super) fn decode_read(reply: Vec<Value>) -> Result<CachedSession, String> {
    let mut it = reply.into_iter().skip(1);
    let mut next = || it.next().ok_or_else(|| "short reply".to_owned());
    let _last = next()?;
    let _upd = next()?;
    let session = next()?;
    let _sseq = next()?;
    let summary = next()?;
    let tail = next()?;
    let blob = SessionBlob::decode(session.as_bytes().unwrap_or_default()).map_err(|e| e.to_string())?;
    let session = wire::session_from_pb(blob.session.ok_or("no session")?, blob.id, blob.last_summary_seq)
        .map_err(|e| e.to_string())?;
    let summary = match into_bytes(summary) {
        b if b.is_empty() => None,
        b => Some(decode_entry(&b)?),
    };
    let tail: Vec<Arc<CachedEntry>> =
        tail.into_array().into_iter().map(|v| decode_entry(&into_bytes(v))).collect::<Result<_, _>>()?;
    // A tail that does not end at last_seq or has a hole is not a tail: treat as a miss.
    let contiguous = tail.windows(2).all(|w| w[1].seq == w[0].seq + 1);
    let ends_right = tail.last().map_or(session.last_seq == 0, |e| e.seq == session.last_seq)
        || (tail.is_empty() && session.last_seq == session.last_summary_seq);
    if !contiguous || !ends_right {
        return Err("cached tail does not match its session".into());
    }
    Ok(CachedSession { session, summary, tail: tail.into() })
}
