//! Domain records in their wire form: `baton.v1` messages. The gRPC API answers with them,
//! and the cache stores and publishes them, so both convert through here (and nothing in the
//! domain knows protos). Decoding back (`*_from_pb`) is for the cache's own payloads.

use baton_proto::v1 as pb;
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

use crate::domain::commands::{ContextWindow, WindowEntry};
use crate::domain::{self as d, Error, Micros, Result};
use baton_proto::encoded;

mod encode;
/// An entry's `baton.v1.Entry` encoding: what the cache keeps, windows, streams and entry
/// pages send.
pub(crate) use encode::{EntryHeader, encode_entry, entry_header};

// ---- scalars ----

pub fn timestamp(m: Micros) -> Timestamp {
    Timestamp { seconds: m.0.div_euclid(1_000_000), nanos: (m.0.rem_euclid(1_000_000) * 1000) as i32 }
}

pub fn micros(t: &Timestamp) -> Option<Micros> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    t.seconds.checked_mul(1_000_000)?.checked_add(i64::from(t.nanos / 1000)).map(Micros)
}

// ---- JSON ----

/// A `google.protobuf.Struct` as a JSON object.
pub fn struct_to_json(s: Struct) -> Map<String, Json> {
    s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()
}

fn value_to_json(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) => Number::from_f64(n).map_or(Json::Null, Json::Number),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_json(s)),
    }
}

pub fn json_to_struct(m: d::Metadata) -> Struct {
    Struct { fields: m.into_iter().map(|(k, v)| (k, json_to_value(v))).collect() }
}

fn json_to_value(v: Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(a) => Kind::ListValue(ListValue { values: a.into_iter().map(json_to_value).collect() }),
        Json::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    Value { kind: Some(kind) }
}

// ---- enums ----

pub fn entry_kind(k: i32) -> Option<d::EntryKind> {
    use pb::EntryKind as P;
    Some(match P::try_from(k).ok()? {
        P::Unspecified => return None,
        P::Message => d::EntryKind::Message,
        P::File => d::EntryKind::File,
        P::ToolCall => d::EntryKind::ToolCall,
        P::ToolResult => d::EntryKind::ToolResult,
        P::System => d::EntryKind::System,
        P::Summary => d::EntryKind::Summary,
    })
}

pub fn entry_kind_pb(k: d::EntryKind) -> pb::EntryKind {
    use pb::EntryKind as P;
    match k {
        d::EntryKind::Message => P::Message,
        d::EntryKind::File => P::File,
        d::EntryKind::ToolCall => P::ToolCall,
        d::EntryKind::ToolResult => P::ToolResult,
        d::EntryKind::System => P::System,
        d::EntryKind::Summary => P::Summary,
    }
}

/// A session status filter or update: UNSPECIFIED is `Some(None)`, unknown is `None`.
pub fn session_status(s: i32) -> Option<Option<d::SessionStatus>> {
    use pb::SessionStatus as P;
    Some(match P::try_from(s).ok()? {
        P::Unspecified => None,
        P::Active => Some(d::SessionStatus::Active),
        P::Dormant => Some(d::SessionStatus::Dormant),
        P::HandedOff => Some(d::SessionStatus::HandedOff),
        P::Closed => Some(d::SessionStatus::Closed),
        P::Expired => Some(d::SessionStatus::Expired),
    })
}

pub fn session_status_pb(s: d::SessionStatus) -> pb::SessionStatus {
    use pb::SessionStatus as P;
    match s {
        d::SessionStatus::Active => P::Active,
        d::SessionStatus::Dormant => P::Dormant,
        d::SessionStatus::HandedOff => P::HandedOff,
        d::SessionStatus::Closed => P::Closed,
        d::SessionStatus::Expired => P::Expired,
    }
}

pub fn handoff_type(t: i32) -> Option<d::HandoffType> {
    use pb::HandoffType as P;
    Some(match P::try_from(t).ok()? {
        P::Unspecified => return None,
        P::ContextTransfer => d::HandoffType::ContextTransfer,
        P::FullHandoff => d::HandoffType::FullHandoff,
        P::Collaboration => d::HandoffType::Collaboration,
    })
}

pub fn handoff_type_pb(t: d::HandoffType) -> pb::HandoffType {
    match t {
        d::HandoffType::ContextTransfer => pb::HandoffType::ContextTransfer,
        d::HandoffType::FullHandoff => pb::HandoffType::FullHandoff,
        d::HandoffType::Collaboration => pb::HandoffType::Collaboration,
    }
}

pub fn handoff_status(s: i32) -> Option<Option<d::HandoffStatus>> {
    use pb::HandoffStatus as P;
    Some(match P::try_from(s).ok()? {
        P::Unspecified => None,
        P::Pending => Some(d::HandoffStatus::Pending),
        P::Accepted => Some(d::HandoffStatus::Accepted),
        P::Rejected => Some(d::HandoffStatus::Rejected),
        P::Completed => Some(d::HandoffStatus::Completed),
        P::Cancelled => Some(d::HandoffStatus::Cancelled),
        P::Expired => Some(d::HandoffStatus::Expired),
    })
}

pub fn handoff_status_pb(s: d::HandoffStatus) -> pb::HandoffStatus {
    use pb::HandoffStatus as P;
    match s {
        d::HandoffStatus::Pending => P::Pending,
        d::HandoffStatus::Accepted => P::Accepted,
        d::HandoffStatus::Rejected => P::Rejected,
        d::HandoffStatus::Completed => P::Completed,
        d::HandoffStatus::Cancelled => P::Cancelled,
        d::HandoffStatus::Expired => P::Expired,
    }
}

pub fn event_type_pb(t: d::HandoffEventType) -> pb::HandoffEventType {
    use pb::HandoffEventType as P;
    match t {
        d::HandoffEventType::Created => P::Created,
        d::HandoffEventType::Accepted => P::Accepted,
        d::HandoffEventType::Rejected => P::Rejected,
        d::HandoffEventType::Completed => P::Completed,
        d::HandoffEventType::Cancelled => P::Cancelled,
        d::HandoffEventType::Expired => P::Expired,
        d::HandoffEventType::Deleted => P::Deleted,
    }
}

/// A retention as its proto.
pub fn retention_pb(r: d::Retention) -> pb::Retention {
    pb::Retention {
        keep_latest: r.keep_latest,
        max_age: (r.max_age_micros > 0).then(|| prost_types::Duration {
            seconds: r.max_age_micros / 1_000_000,
            nanos: i32::try_from((r.max_age_micros % 1_000_000) * 1000).unwrap_or(0),
        }),
    }
}

/// A retention from its proto (a negative or absent age does not limit).
pub fn retention_from_pb(r: pb::Retention) -> d::Retention {
    let max_age_micros = r
        .max_age
        .map(|d| d.seconds.saturating_mul(1_000_000).saturating_add(i64::from(d.nanos) / 1000))
        .unwrap_or(0)
        .max(0);
    d::Retention { keep_latest: r.keep_latest, max_age_micros }
}

// ---- responses ----

impl From<d::Session> for pb::Session {
    fn from(s: d::Session) -> Self {
        let d::Session {
            id: _,
            tenant,
            session_key,
            created_by,
            owner,
            status,
            metadata,
            last_seq,
            last_summary_seq: _,
            created_at,
            updated_at,
            last_activity_at,
            expires_at,
            forked_from,
            first_seq,
            legal_hold,
            retention,
        } = s;
        pb::Session {
            forked_from: forked_from.map(|f| pb::SessionRef { session_key: f.session_key, seq: f.seq }),
            first_seq,
            legal_hold,
            retention: (!retention.is_unset()).then(|| retention_pb(retention)),
            session_key,
            tenant,
            created_by,
            owner,
            status: session_status_pb(status).into(),
            metadata: Some(json_to_struct(metadata)),
            last_seq,
            created_at: Some(timestamp(created_at)),
            updated_at: Some(timestamp(updated_at)),
            last_activity_at: Some(timestamp(last_activity_at)),
            expires_at: expires_at.map(timestamp),
        }
    }
}

impl From<d::Entry> for pb::Entry {
    fn from(e: d::Entry) -> Self {
        let d::Entry {
            session_key,
            seq,
            kind,
            role,
            author,
            content,
            media_type,
            metadata,
            token_count,
            idempotency_key,
            trace_id,
            created_at,
            redaction,
        } = e;
        pb::Entry {
            redacted: redaction.is_some(),
            redaction: redaction.map(|r| pb::Redaction {
                redacted_by: r.by,
                redacted_at: Some(timestamp(r.at)),
                reason: r.reason,
            }),
            session_key,
            seq,
            kind: entry_kind_pb(kind).into(),
            role,
            author,
            content: Some(match content {
                d::Content::Text(t) => pb::entry::Content::Text(t),
                d::Content::Data(b) => pb::entry::Content::Data(b),
            }),
            media_type,
            metadata: Some(json_to_struct(metadata)),
            token_count,
            idempotency_key,
            trace_id,
            created_at: Some(timestamp(created_at)),
        }
    }
}

impl From<d::Handoff> for pb::Handoff {
    fn from(h: d::Handoff) -> Self {
        let d::Handoff {
            handoff_id,
            tenant: _,
            session_key,
            from_agent,
            to_agent,
            kind,
            status,
            instructions,
            summary,
            up_to_seq,
            max_tokens,
            reason,
            created_at,
            updated_at,
            deadline,
        } = h;
        pb::Handoff {
            handoff_id,
            session_key,
            from_agent,
            to_agent,
            r#type: handoff_type_pb(kind).into(),
            status: handoff_status_pb(status).into(),
            instructions,
            summary,
            up_to_seq,
            created_at: Some(timestamp(created_at)),
            updated_at: Some(timestamp(updated_at)),
            deadline: deadline.map(timestamp),
            reason,
            max_tokens,
        }
    }
}

impl From<d::HandoffEvent> for pb::HandoffEvent {
    fn from(e: d::HandoffEvent) -> Self {
        let d::HandoffEvent { agent: _, cursor, kind, handoff } = e;
        let handoff = if kind == d::HandoffEventType::Deleted {
            // A tombstone: only what identifies it is left.
            pb::Handoff {
                handoff_id: handoff.handoff_id,
                status: handoff_status_pb(handoff.status).into(),
                created_at: Some(timestamp(handoff.created_at)),
                updated_at: Some(timestamp(handoff.updated_at)),
                ..Default::default()
            }
        } else {
            handoff.into()
        };
        pb::HandoffEvent { cursor, r#type: event_type_pb(kind).into(), handoff: Some(handoff) }
    }
}

impl From<d::SearchHit> for pb::SearchHit {
    fn from(h: d::SearchHit) -> Self {
        let d::SearchHit { entry, score, snippet } = h;
        pb::SearchHit { entry: Some(entry.into()), score, snippet }
    }
}

/// An entry as `StreamEntries` sends it: its encoding.
impl From<d::Entry> for encoded::WireEntry {
    fn from(e: d::Entry) -> Self {
        encoded::WireEntry(encode_entry(&e))
    }
}

/// An entry of a window or page as the server sends it: the bytes the cache keeps, or (read
/// from the store) encoded here, once.
pub(crate) fn wire(e: WindowEntry) -> bytes::Bytes {
    match e {
        WindowEntry::Cached(c) => c.wire.clone(),
        WindowEntry::Read(e) => encode_entry(&e),
    }
}

/// A window as the server sends it: entries the cache holds go out as the bytes it keeps; the
/// others are encoded here, once.
impl From<ContextWindow> for encoded::ContextWindowResponse {
    fn from(w: ContextWindow) -> Self {
        let ContextWindow { summary, entries, total_tokens, last_seq, truncated } = w;
        encoded::ContextWindowResponse {
            summary: summary.map(wire),
            entries: entries.into_iter().map(wire).collect(),
            total_tokens,
            last_seq,
            truncated,
        }
    }
}

// ---- records back from their proto form (cache and bus payloads) ----

pub(crate) fn corrupt(what: &str) -> Error {
    Error::Internal(format!("a cached {what} could not be decoded"))
}

fn required_micros(t: Option<Timestamp>, what: &str) -> Result<Micros> {
    t.as_ref().and_then(micros).ok_or_else(|| corrupt(what))
}

/// A session from its proto form plus the fields the proto does not carry.
pub fn session_from_pb(p: pb::Session, id: i64, last_summary_seq: u64) -> Result<d::Session> {
    let pb::Session {
        session_key,
        tenant,
        created_by,
        owner,
        status,
        metadata,
        last_seq,
        created_at,
        updated_at,
        last_activity_at,
        expires_at,
        forked_from,
        first_seq,
        legal_hold,
        retention,
    } = p;
    Ok(d::Session {
        forked_from: forked_from.map(|f| d::SessionRef { session_key: f.session_key, seq: f.seq }),
        first_seq,
        legal_hold,
        retention: retention.map(retention_from_pb).unwrap_or_default(),
        id,
        tenant,
        session_key,
        created_by,
        owner,
        status: session_status(status).flatten().ok_or_else(|| corrupt("session"))?,
        metadata: metadata.map(struct_to_json).unwrap_or_default(),
        last_seq,
        last_summary_seq,
        created_at: required_micros(created_at, "session")?,
        updated_at: required_micros(updated_at, "session")?,
        last_activity_at: required_micros(last_activity_at, "session")?,
        expires_at: expires_at.as_ref().and_then(micros),
    })
}

impl TryFrom<pb::Entry> for d::Entry {
    type Error = Error;
    fn try_from(p: pb::Entry) -> Result<Self> {
        let pb::Entry {
            session_key,
            seq,
            kind,
            role,
            author,
            content,
            media_type,
            metadata,
            token_count,
            idempotency_key,
            trace_id,
            created_at,
            redacted,
            redaction,
        } = p;
        let redaction = match (redacted, redaction) {
            (false, _) => None,
            (true, Some(r)) => {
                Some(d::Redaction { by: r.redacted_by, at: required_micros(r.redacted_at, "entry")?, reason: r.reason })
            }
            (true, None) => return Err(corrupt("entry")),
        };
        Ok(d::Entry {
            redaction,
            session_key,
            seq,
            kind: entry_kind(kind).ok_or_else(|| corrupt("entry"))?,
            role,
            author,
            content: match content {
                Some(pb::entry::Content::Text(t)) => d::Content::Text(t),
                Some(pb::entry::Content::Data(b)) => d::Content::Data(b),
                None => return Err(corrupt("entry")),
            },
            media_type,
            metadata: metadata.map(struct_to_json).unwrap_or_default(),
            token_count,
            idempotency_key,
            trace_id,
            created_at: required_micros(created_at, "entry")?,
        })
    }
}

/// A handoff from its proto form; the tenant is not part of it.
pub fn handoff_from_pb(p: pb::Handoff, tenant: &str) -> Result<d::Handoff> {
    let pb::Handoff {
        handoff_id,
        session_key,
        from_agent,
        to_agent,
        r#type,
        status,
        instructions,
        summary,
        up_to_seq,
        created_at,
        updated_at,
        deadline,
        reason,
        max_tokens,
    } = p;
    Ok(d::Handoff {
        handoff_id,
        tenant: tenant.to_owned(),
        session_key,
        from_agent,
        to_agent,
        kind: handoff_type(r#type).ok_or_else(|| corrupt("handoff"))?,
        status: handoff_status(status).flatten().ok_or_else(|| corrupt("handoff"))?,
        instructions,
        summary,
        up_to_seq,
        max_tokens,
        reason,
        created_at: required_micros(created_at, "handoff")?,
        updated_at: required_micros(updated_at, "handoff")?,
        deadline: deadline.as_ref().and_then(micros),
    })
}

/// A handoff event from its proto form, for the inbox of `agent`.
pub fn event_from_pb(p: pb::HandoffEvent, tenant: &str, agent: &str) -> Result<d::HandoffEvent> {
    let pb::HandoffEvent { cursor, r#type, handoff } = p;
    use pb::HandoffEventType as P;
    if r#type == P::Deleted as i32 {
        let h = handoff.ok_or_else(|| corrupt("handoff event"))?;
        let status = handoff_status(h.status).flatten().ok_or_else(|| corrupt("handoff event"))?;
        let at = required_micros(h.updated_at, "handoff event")?;
        let handoff = d::Handoff::tombstone(tenant, &h.handoff_id, status, at);
        return Ok(d::HandoffEvent { agent: agent.to_owned(), cursor, kind: d::HandoffEventType::Deleted, handoff });
    }
    let kind = match P::try_from(r#type).map_err(|_| corrupt("handoff event"))? {
        P::Unspecified => return Err(corrupt("handoff event")),
        P::Created => d::HandoffEventType::Created,
        P::Accepted => d::HandoffEventType::Accepted,
        P::Rejected => d::HandoffEventType::Rejected,
        P::Completed => d::HandoffEventType::Completed,
        P::Cancelled => d::HandoffEventType::Cancelled,
        P::Expired => d::HandoffEventType::Expired,
        P::Deleted => unreachable!("handled above"),
    };
    let handoff = handoff_from_pb(handoff.ok_or_else(|| corrupt("handoff event"))?, tenant)?;
    Ok(d::HandoffEvent { agent: agent.to_owned(), cursor, kind, handoff })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        for m in [0, 1, 1_700_000_000_123_456, -1] {
            assert_eq!(micros(&timestamp(Micros(m))), Some(Micros(m)));
        }
    }

    #[test]
    fn records_round_trip_through_their_protos() {
        let entry = d::Entry {
            session_key: "s".into(),
            seq: 7,
            kind: d::EntryKind::ToolResult,
            role: "tool".into(),
            author: "a".into(),
            content: d::Content::Data(vec![1, 2, 3]),
            media_type: "application/octet-stream".into(),
            metadata: serde_json::json!({"k": "v"}).as_object().unwrap().clone(),
            token_count: 5,
            idempotency_key: "i".into(),
            trace_id: "t".into(),
            created_at: Micros(1_700_000_000_000_001),
            redaction: Some(d::Redaction { by: "b".into(), at: Micros(5), reason: "pii".into() }),
        };
        assert_eq!(d::Entry::try_from(pb::Entry::from(entry.clone())).unwrap(), entry);
        let session = d::Session {
            id: 9,
            tenant: "t".into(),
            session_key: "s".into(),
            created_by: "a".into(),
            owner: "b".into(),
            status: d::SessionStatus::HandedOff,
            metadata: d::Metadata::new(),
            last_seq: 12,
            last_summary_seq: 4,
            created_at: Micros(1),
            updated_at: Micros(2),
            last_activity_at: Micros(3),
            expires_at: Some(Micros(4)),
            forked_from: Some(d::SessionRef { session_key: "src".into(), seq: 3 }),
            first_seq: 2,
            legal_hold: true,
            retention: d::Retention { keep_latest: 10, max_age_micros: 3_600_000_000 },
        };
        assert_eq!(session_from_pb(pb::Session::from(session.clone()), 9, 4).unwrap(), session);
    }

    #[test]
    fn json_round_trips_through_struct() {
        let j = serde_json::json!({"a": 1.5, "b": [true, null, "x"], "c": {"d": "e"}});
        let m = j.as_object().unwrap().clone();
        assert_eq!(struct_to_json(json_to_struct(m.clone())), m);
    }
}
