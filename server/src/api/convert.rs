//! Proto ↔ domain conversions. Requests become validated domain commands (`TryFrom`, which
//! destructures every field so a new proto field breaks the build until it is handled);
//! domain records become proto messages.

use std::time::Duration;

use baton_proto::v1 as pb;
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

use crate::domain::commands::*;
use crate::domain::rules::Action;
use crate::domain::validate::*;
use crate::domain::{self as d, Error, Micros, Result, tokens};

// ---- scalars ----

pub fn timestamp(m: Micros) -> Timestamp {
    Timestamp { seconds: m.0.div_euclid(1_000_000), nanos: (m.0.rem_euclid(1_000_000) * 1000) as i32 }
}

fn micros(t: &Timestamp) -> Option<Micros> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    t.seconds.checked_mul(1_000_000)?.checked_add(i64::from(t.nanos / 1000)).map(Micros)
}

fn duration(v: &mut Violations, field: &str, d: Option<prost_types::Duration>) -> Option<Duration> {
    let d = d?;
    match Duration::try_from(d) {
        Ok(d) if d <= Duration::from_secs(100 * 365 * 86_400) => Some(d),
        _ => {
            v.add(field, "must be a non-negative duration of at most 100 years");
            None
        }
    }
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

fn metadata(v: &mut Violations, field: &str, s: Option<Struct>) -> d::Metadata {
    sized_metadata(v, field, s).0
}

fn sized_metadata(v: &mut Violations, field: &str, s: Option<Struct>) -> (d::Metadata, usize) {
    let m = s.map(struct_to_json).unwrap_or_default();
    let len = v.metadata(field, &m);
    (m, len)
}

// ---- enums ----

fn entry_kind(k: i32) -> Option<d::EntryKind> {
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

fn entry_kind_pb(k: d::EntryKind) -> pb::EntryKind {
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
fn session_status(s: i32) -> Option<Option<d::SessionStatus>> {
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

fn session_status_pb(s: d::SessionStatus) -> pb::SessionStatus {
    use pb::SessionStatus as P;
    match s {
        d::SessionStatus::Active => P::Active,
        d::SessionStatus::Dormant => P::Dormant,
        d::SessionStatus::HandedOff => P::HandedOff,
        d::SessionStatus::Closed => P::Closed,
        d::SessionStatus::Expired => P::Expired,
    }
}

fn handoff_type(t: i32) -> Option<d::HandoffType> {
    use pb::HandoffType as P;
    Some(match P::try_from(t).ok()? {
        P::Unspecified => return None,
        P::ContextTransfer => d::HandoffType::ContextTransfer,
        P::FullHandoff => d::HandoffType::FullHandoff,
        P::Collaboration => d::HandoffType::Collaboration,
    })
}

fn handoff_type_pb(t: d::HandoffType) -> pb::HandoffType {
    match t {
        d::HandoffType::ContextTransfer => pb::HandoffType::ContextTransfer,
        d::HandoffType::FullHandoff => pb::HandoffType::FullHandoff,
        d::HandoffType::Collaboration => pb::HandoffType::Collaboration,
    }
}

fn handoff_status(s: i32) -> Option<Option<d::HandoffStatus>> {
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

fn handoff_status_pb(s: d::HandoffStatus) -> pb::HandoffStatus {
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

fn event_type_pb(t: d::HandoffEventType) -> pb::HandoffEventType {
    use pb::HandoffEventType as P;
    match t {
        d::HandoffEventType::Created => P::Created,
        d::HandoffEventType::Accepted => P::Accepted,
        d::HandoffEventType::Rejected => P::Rejected,
        d::HandoffEventType::Completed => P::Completed,
        d::HandoffEventType::Cancelled => P::Cancelled,
        d::HandoffEventType::Expired => P::Expired,
    }
}

// ---- requests ----

impl TryFrom<pb::CreateSessionRequest> for CreateSession {
    type Error = Error;
    fn try_from(r: pb::CreateSessionRequest) -> Result<Self> {
        let pb::CreateSessionRequest { session_key, agent, metadata: meta, ttl } = r;
        let mut v = Violations::default();
        let cmd = CreateSession {
            session_key: v.optional_key("session_key", &session_key),
            agent: v.key("agent", &agent),
            metadata: metadata(&mut v, "metadata", meta),
            ttl: duration(&mut v, "ttl", ttl).filter(|d| !d.is_zero()),
        };
        v.finish().map(|()| cmd)
    }
}

/// A required key or name (session key, agent, handoff id) checked alone.
pub fn required_key(field: &str, key: &str) -> Result<String> {
    let mut v = Violations::default();
    let key = v.key(field, key);
    v.finish().map(|()| key)
}

impl TryFrom<pb::ListSessionsRequest> for ListSessions {
    type Error = Error;
    fn try_from(r: pb::ListSessionsRequest) -> Result<Self> {
        let pb::ListSessionsRequest { agent, status, page_size, page_token } = r;
        let mut v = Violations::default();
        let agent = v.optional_key("agent", &agent);
        let status = v.enumeration("status", status, session_status).flatten();
        let page_size = v.page_size("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let page_token = page_token_of(&mut v, d::page::PageKind::Sessions, &page_token);
        v.finish().map(|()| ListSessions { agent, status, page_size, page_token })
    }
}

fn page_token_of(v: &mut Violations, kind: d::page::PageKind, token: &str) -> Option<i64> {
    match d::page::decode(kind, token) {
        Ok(p) => p,
        Err(e) => {
            v.merge(Err(e));
            None
        }
    }
}

impl TryFrom<pb::UpdateSessionRequest> for UpdateSession {
    type Error = Error;
    fn try_from(r: pb::UpdateSessionRequest) -> Result<Self> {
        let pb::UpdateSessionRequest { session_key, metadata: meta, status, ttl } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let metadata = meta.map(|m| metadata(&mut v, "metadata", Some(m)));
        let status = v.enumeration("status", status, session_status).flatten();
        if matches!(status, Some(d::SessionStatus::HandedOff | d::SessionStatus::Expired)) {
            v.add("status", "may be set only to ACTIVE, DORMANT or CLOSED");
        }
        let ttl = duration(&mut v, "ttl", ttl);
        v.finish().map(|()| UpdateSession { session_key, metadata, status, ttl })
    }
}

impl AppendEntries {
    /// Validates an append against the server's limits; reports every bad field.
    pub fn from_proto(r: pb::AppendEntriesRequest, limits: &Limits) -> Result<Self> {
        let pb::AppendEntriesRequest { session_key, entries, idempotency_key, expected_last_seq } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let idempotency_key = v.optional_key("idempotency_key", &idempotency_key);
        if entries.is_empty() {
            v.add("entries", "at least one entry is required");
        } else if entries.len() > limits.max_entries_per_append {
            v.add(
                "entries",
                format!("at most {} entries per append, got {}", limits.max_entries_per_append, entries.len()),
            );
        }
        let mut total = 0usize;
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            let pb::NewEntry { kind, role, author, content, media_type, metadata: meta } = e;
            let f = |name: &str| format!("entries[{i}].{name}");
            let kind = v.enumeration(&f("kind"), kind, entry_kind);
            let role = v.text(&f("role"), &role, MAX_ROLE_LEN);
            let author = v.key(&f("author"), &author);
            let media_type = v.text(&f("media_type"), &media_type, MAX_MEDIA_TYPE_LEN);
            let (metadata, metadata_len) = sized_metadata(&mut v, &f("metadata"), meta);
            let content = match content {
                Some(pb::new_entry::Content::Text(t)) => d::Content::Text(t),
                Some(pb::new_entry::Content::Data(b)) => d::Content::Data(b),
                None => {
                    v.add(f("content"), "text or data is required");
                    d::Content::Text(String::new())
                }
            };
            if content.len() > limits.max_entry_bytes {
                v.add(f("content"), format!("must be at most {} bytes, got {}", limits.max_entry_bytes, content.len()));
            }
            let metadata_len = if metadata.is_empty() { 0 } else { metadata_len };
            total = total.saturating_add(content.len()).saturating_add(metadata_len);
            if let Some(kind) = kind {
                let token_count = tokens::estimate(&content);
                out.push(d::NewEntry { kind, role, author, content, media_type, metadata, token_count });
            }
        }
        if total > limits.max_append_bytes {
            v.add(
                "entries",
                format!("the append carries {total} bytes; at most {} are allowed", limits.max_append_bytes),
            );
        }
        v.finish().map(|()| AppendEntries { session_key, entries: out, idempotency_key, expected_last_seq })
    }
}

impl TryFrom<pb::ListEntriesRequest> for ListEntries {
    type Error = Error;
    fn try_from(r: pb::ListEntriesRequest) -> Result<Self> {
        let pb::ListEntriesRequest { session_key, after_seq, before_seq, kinds, page_size, page_token } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let kinds = kinds
            .iter()
            .enumerate()
            .filter_map(|(i, k)| v.enumeration(&format!("kinds[{i}]"), *k, entry_kind))
            .collect();
        let page_size = v.page_size("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let page_token = page_token_of(&mut v, d::page::PageKind::Entries, &page_token);
        v.finish().map(|()| ListEntries {
            session_key,
            after_seq: after_seq.unwrap_or(0),
            before_seq,
            kinds,
            page_size,
            page_token,
        })
    }
}

impl TryFrom<pb::StreamEntriesRequest> for StreamEntries {
    type Error = Error;
    fn try_from(r: pb::StreamEntriesRequest) -> Result<Self> {
        let pb::StreamEntriesRequest { session_key, after_seq, follow, max_entries } = r;
        Ok(StreamEntries { session_key: session_key_of(&session_key)?, after_seq, follow, max_entries })
    }
}

fn session_key_of(key: &str) -> Result<String> {
    required_key("session_key", key)
}

impl TryFrom<pb::GetContextWindowRequest> for GetContextWindow {
    type Error = Error;
    fn try_from(r: pb::GetContextWindowRequest) -> Result<Self> {
        let pb::GetContextWindowRequest { session_key, max_tokens, max_entries } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let max_entries = v.page_size("max_entries", max_entries, DEFAULT_WINDOW_ENTRIES, MAX_WINDOW_ENTRIES);
        let max_tokens = if max_tokens == 0 { DEFAULT_MAX_TOKENS } else { max_tokens };
        v.finish().map(|()| GetContextWindow { session_key, max_tokens, max_entries })
    }
}

impl TryFrom<pb::SearchEntriesRequest> for SearchEntries {
    type Error = Error;
    fn try_from(r: pb::SearchEntriesRequest) -> Result<Self> {
        let pb::SearchEntriesRequest { session_key, query, page_size, page_token } = r;
        let mut v = Violations::default();
        let session_key = v.optional_key("session_key", &session_key);
        if query.trim().is_empty() {
            v.add("query", "is required");
        }
        let query = v.text("query", &query, MAX_QUERY_BYTES);
        let page_size = v.page_size("page_size", page_size, DEFAULT_SEARCH_PAGE_SIZE, MAX_SEARCH_PAGE_SIZE);
        let offset = page_token_of(&mut v, d::page::PageKind::Search, &page_token).unwrap_or(0);
        if offset > 10_000 {
            v.add("page_token", "search pages end after 10000 hits; refine the query");
        }
        v.finish().map(|()| SearchEntries { session_key, query, page_size, offset: offset as u32 })
    }
}

impl TryFrom<pb::RequestHandoffRequest> for RequestHandoff {
    type Error = Error;
    fn try_from(r: pb::RequestHandoffRequest) -> Result<Self> {
        let pb::RequestHandoffRequest { session_key, from_agent, to_agent, r#type, instructions, deadline, max_tokens } =
            r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let from_agent = v.key("from_agent", &from_agent);
        let to_agent = v.key("to_agent", &to_agent);
        let kind = v.enumeration("type", r#type, handoff_type);
        let instructions = v.text("instructions", &instructions, MAX_INSTRUCTIONS_BYTES);
        let deadline = deadline.and_then(|t| {
            let m = micros(&t);
            if m.is_none() {
                v.add("deadline", "is not a valid timestamp");
            }
            m
        });
        v.finish()?;
        Ok(RequestHandoff {
            session_key,
            from_agent,
            to_agent,
            kind: kind.expect("validated"),
            instructions,
            deadline,
            max_tokens,
        })
    }
}

impl TryFrom<pb::ListHandoffsRequest> for ListHandoffs {
    type Error = Error;
    fn try_from(r: pb::ListHandoffsRequest) -> Result<Self> {
        let pb::ListHandoffsRequest { to_agent, from_agent, session_key, status, page_size, page_token } = r;
        let mut v = Violations::default();
        let cmd = ListHandoffs {
            to_agent: v.optional_key("to_agent", &to_agent),
            from_agent: v.optional_key("from_agent", &from_agent),
            session_key: v.optional_key("session_key", &session_key),
            status: v.enumeration("status", status, handoff_status).flatten(),
            page_size: v.page_size("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            page_token: page_token_of(&mut v, d::page::PageKind::Handoffs, &page_token),
        };
        v.finish().map(|()| cmd)
    }
}

fn change(handoff_id: &str, agent: &str, reason: &str, action: Action) -> Result<ChangeHandoff> {
    let mut v = Violations::default();
    let cmd = ChangeHandoff {
        handoff_id: v.key("handoff_id", handoff_id),
        agent: v.key("agent", agent),
        reason: Some(v.text("reason", reason, MAX_REASON_BYTES)).filter(|r| !r.is_empty()),
        action,
    };
    v.finish().map(|()| cmd)
}

impl TryFrom<pb::AcceptHandoffRequest> for ChangeHandoff {
    type Error = Error;
    fn try_from(r: pb::AcceptHandoffRequest) -> Result<Self> {
        let pb::AcceptHandoffRequest { handoff_id, agent } = r;
        change(&handoff_id, &agent, "", Action::Accept)
    }
}

impl TryFrom<pb::RejectHandoffRequest> for ChangeHandoff {
    type Error = Error;
    fn try_from(r: pb::RejectHandoffRequest) -> Result<Self> {
        let pb::RejectHandoffRequest { handoff_id, agent, reason } = r;
        change(&handoff_id, &agent, &reason, Action::Reject)
    }
}

impl TryFrom<pb::CompleteHandoffRequest> for ChangeHandoff {
    type Error = Error;
    fn try_from(r: pb::CompleteHandoffRequest) -> Result<Self> {
        let pb::CompleteHandoffRequest { handoff_id, agent } = r;
        change(&handoff_id, &agent, "", Action::Complete)
    }
}

impl TryFrom<pb::CancelHandoffRequest> for ChangeHandoff {
    type Error = Error;
    fn try_from(r: pb::CancelHandoffRequest) -> Result<Self> {
        let pb::CancelHandoffRequest { handoff_id, agent, reason } = r;
        change(&handoff_id, &agent, &reason, Action::Cancel)
    }
}

impl TryFrom<pb::WatchHandoffsRequest> for WatchHandoffs {
    type Error = Error;
    fn try_from(r: pb::WatchHandoffsRequest) -> Result<Self> {
        let pb::WatchHandoffsRequest { agent, after_cursor } = r;
        Ok(WatchHandoffs { agent: required_key("agent", &agent)?, after_cursor })
    }
}

pub fn handoff_id(id: &str) -> Result<String> {
    required_key("handoff_id", id)
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
        } = s;
        pb::Session {
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
        } = e;
        pb::Entry {
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
        pb::HandoffEvent { cursor, r#type: event_type_pb(kind).into(), handoff: Some(handoff.into()) }
    }
}

impl From<d::SearchHit> for pb::SearchHit {
    fn from(h: d::SearchHit) -> Self {
        let d::SearchHit { entry, score, snippet } = h;
        pb::SearchHit { entry: Some(entry.into()), score, snippet }
    }
}

impl From<ContextWindow> for pb::GetContextWindowResponse {
    fn from(w: ContextWindow) -> Self {
        let ContextWindow { summary, entries, total_tokens, last_seq, truncated } = w;
        pb::GetContextWindowResponse {
            summary: summary.map(Into::into),
            entries: entries.into_iter().map(Into::into).collect(),
            total_tokens,
            last_seq,
            truncated,
        }
    }
}

// ---- records back from their proto form (cache and bus payloads) ----

fn corrupt(what: &str) -> Error {
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
    } = p;
    Ok(d::Session {
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
        } = p;
        Ok(d::Entry {
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
    let kind = match P::try_from(r#type).map_err(|_| corrupt("handoff event"))? {
        P::Unspecified => return Err(corrupt("handoff event")),
        P::Created => d::HandoffEventType::Created,
        P::Accepted => d::HandoffEventType::Accepted,
        P::Rejected => d::HandoffEventType::Rejected,
        P::Completed => d::HandoffEventType::Completed,
        P::Cancelled => d::HandoffEventType::Cancelled,
        P::Expired => d::HandoffEventType::Expired,
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
        };
        assert_eq!(session_from_pb(pb::Session::from(session.clone()), 9, 4).unwrap(), session);
    }

    #[test]
    fn json_round_trips_through_struct() {
        let j = serde_json::json!({"a": 1.5, "b": [true, null, "x"], "c": {"d": "e"}});
        let m = j.as_object().unwrap().clone();
        assert_eq!(struct_to_json(json_to_struct(m.clone())), m);
    }

    #[test]
    fn append_reports_every_bad_field() {
        let req = pb::AppendEntriesRequest {
            session_key: "bad key".into(),
            entries: vec![
                pb::NewEntry {
                    kind: 99,
                    author: "a".into(),
                    content: Some(pb::new_entry::Content::Text("x".into())),
                    ..Default::default()
                },
                pb::NewEntry { kind: 1, author: String::new(), content: None, ..Default::default() },
            ],
            ..Default::default()
        };
        let Err(Error::InvalidArgument(v)) = AppendEntries::from_proto(req, &Limits::default()) else { panic!() };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["session_key", "entries[0].kind", "entries[1].author", "entries[1].content"]);
    }
}
