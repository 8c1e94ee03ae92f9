//! Requests into validated domain commands. Each `TryFrom` destructures every field, so a new
//! proto field breaks the build until it is handled; every bad field is reported at once.

use std::time::Duration;

use baton_proto::v1 as pb;
use prost_types::Struct;

use crate::domain::commands::*;
use crate::domain::rules::Action;
use crate::domain::validate::*;
use crate::domain::{self as d, Error, Result, tokens};
use crate::wire::{entry_kind, handoff_status, handoff_type, micros, session_status, struct_to_json};

fn duration(v: &mut Violations, field: &str, d: Option<prost_types::Duration>) -> Option<Duration> {
    let d = d?;
    if !(0..=999_999_999).contains(&d.nanos) {
        v.add(field, format!("nanos must be between 0 and 999999999, got {}", d.nanos));
        return None;
    }
    match Duration::try_from(d) {
        Ok(d) if d <= Duration::from_secs(100 * 365 * 86_400) => Some(d),
        _ => {
            v.add(field, "must be a non-negative duration of at most 100 years");
            None
        }
    }
}

fn metadata(v: &mut Violations, field: &str, s: Option<Struct>) -> d::Metadata {
    sized_metadata(v, field, s).0
}

/// Deepest nesting of objects and lists accepted in metadata.
pub const MAX_METADATA_DEPTH: usize = 32;

/// Checks what JSON (and the stores) cannot hold: NaN and infinities, NUL characters, and
/// nesting deeper than [`MAX_METADATA_DEPTH`].
fn check_struct(v: &mut Violations, field: &str, s: &Struct) {
    fn walk(v: &mut Violations, path: &str, value: &prost_types::Value, depth: usize) {
        use prost_types::value::Kind;
        match &value.kind {
            Some(Kind::NumberValue(n)) if !n.is_finite() => {
                v.add(path, "must be a finite number (not NaN or infinite)")
            }
            Some(Kind::StringValue(t)) => v.no_nul(path, t),
            Some(Kind::StructValue(s)) => fields(v, path, s, depth + 1),
            Some(Kind::ListValue(l)) => {
                if depth + 1 > MAX_METADATA_DEPTH {
                    v.add(path, format!("nests deeper than {MAX_METADATA_DEPTH} levels"));
                    return;
                }
                for (i, item) in l.values.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), item, depth + 1);
                }
            }
            _ => {}
        }
    }
    fn fields(v: &mut Violations, path: &str, s: &Struct, depth: usize) {
        if depth > MAX_METADATA_DEPTH {
            v.add(path, format!("nests deeper than {MAX_METADATA_DEPTH} levels"));
            return;
        }
        for (key, value) in &s.fields {
            let here = format!("{path}.{key}");
            v.no_nul(&here, key);
            walk(v, &here, value, depth);
        }
    }
    fields(v, field, s, 1);
}

fn sized_metadata(v: &mut Violations, field: &str, s: Option<Struct>) -> (d::Metadata, usize) {
    if let Some(s) = &s {
        check_struct(v, field, s);
    }
    let m = s.map(struct_to_json).unwrap_or_default();
    let len = v.metadata(field, &m);
    (m, len)
}

/// 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z, nanos normalized: what every
/// store and every client's timestamp type can hold.
fn timestamp_in_range(t: &prost_types::Timestamp) -> bool {
    (-62_135_596_800..=253_402_300_799).contains(&t.seconds) && (0..=999_999_999).contains(&t.nanos)
}

// ---- requests ----

impl TryFrom<pb::CreateSessionRequest> for CreateSession {
    type Error = Error;
    fn try_from(r: pb::CreateSessionRequest) -> Result<Self> {
        let pb::CreateSessionRequest { session_key, agent, metadata: meta, ttl, idempotency_key } = r;
        let mut v = Violations::default();
        let cmd = CreateSession {
            session_key: v.optional_key("session_key", &session_key),
            agent: v.key("agent", &agent),
            metadata: metadata(&mut v, "metadata", meta),
            ttl: duration(&mut v, "ttl", ttl).filter(|d| !d.is_zero()),
            idempotency_key: v.optional_key("idempotency_key", &idempotency_key),
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

/// With the tenant the call acts for: page tokens are bound to it.
impl TryFrom<(pb::ListSessionsRequest, &str)> for ListSessions {
    type Error = Error;
    fn try_from((r, tenant): (pb::ListSessionsRequest, &str)) -> Result<Self> {
        let pb::ListSessionsRequest { agent, status, page_size, page_token } = r;
        let mut v = Violations::default();
        let agent = v.optional_key("agent", &agent);
        let status = v.enumeration("status", status, session_status).flatten();
        let page_size = v.page_size("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let mut cmd = ListSessions { agent, status, page_size, page_token: None };
        cmd.page_token = page_token_of(&mut v, d::page::PageKind::Sessions, tenant, &cmd.page_scope(), &page_token);
        v.finish().map(|()| cmd)
    }
}

fn page_token_of(v: &mut Violations, kind: d::page::PageKind, tenant: &str, scope: &str, token: &str) -> Option<i64> {
    match d::page::decode(kind, tenant, scope, token) {
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
        let pb::UpdateSessionRequest { session_key, metadata: meta, status, ttl, legal_hold, retention } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let metadata = meta.map(|m| metadata(&mut v, "metadata", Some(m)));
        let status = v.enumeration("status", status, session_status).flatten();
        if matches!(status, Some(d::SessionStatus::HandedOff | d::SessionStatus::Expired)) {
            v.add("status", "may be set only to ACTIVE, DORMANT or CLOSED");
        }
        let ttl = duration(&mut v, "ttl", ttl);
        if let Some(age) = retention.as_ref().and_then(|r| r.max_age)
            && (age.seconds < 0 || age.nanos < 0)
        {
            v.add("retention.max_age", "must not be negative");
        }
        let retention = retention.map(crate::wire::retention_from_pb);
        v.finish().map(|()| UpdateSession { session_key, metadata, status, ttl, legal_hold, retention })
    }
}

/// Most seqs in one RedactEntries.
const MAX_REDACT_SEQS: usize = 1000;
/// Longest redaction reason, in bytes.
const MAX_REASON: usize = 1024;

impl TryFrom<pb::ForkSessionRequest> for ForkSession {
    type Error = Error;
    fn try_from(r: pb::ForkSessionRequest) -> Result<Self> {
        let pb::ForkSessionRequest { session_key, at_seq, new_session_key, agent, idempotency_key } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let new_session_key = v.optional_key("new_session_key", &new_session_key);
        let agent = v.key("agent", &agent);
        let idempotency_key = v.optional_key("idempotency_key", &idempotency_key);
        v.finish().map(|()| ForkSession { session_key, at_seq, new_session_key, agent, idempotency_key })
    }
}

impl TryFrom<pb::RedactEntriesRequest> for RedactEntries {
    type Error = Error;
    fn try_from(r: pb::RedactEntriesRequest) -> Result<Self> {
        let pb::RedactEntriesRequest { session_key, seqs, reason, agent, expected_last_seq } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let agent = v.key("agent", &agent);
        let reason = v.text("reason", &reason, MAX_REASON);
        if seqs.is_empty() {
            v.add("seqs", "at least one seq is required");
        } else if seqs.len() > MAX_REDACT_SEQS {
            v.add("seqs", format!("at most {MAX_REDACT_SEQS} seqs, got {}", seqs.len()));
        }
        if let Some(i) = seqs.iter().position(|s| *s == 0) {
            v.add(format!("seqs[{i}]"), "seqs start at 1");
        }
        v.finish().map(|()| RedactEntries { session_key, seqs, reason, agent, expected_last_seq })
    }
}

impl TryFrom<pb::CompactSessionRequest> for CompactSession {
    type Error = Error;
    fn try_from(r: pb::CompactSessionRequest) -> Result<Self> {
        let pb::CompactSessionRequest { session_key, before_seq, force } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        if before_seq == 0 {
            v.add("before_seq", "is required (entries with seq below it are removed)");
        }
        v.finish().map(|()| CompactSession { session_key, before_seq, force })
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
                Some(pb::new_entry::Content::Text(t)) => {
                    v.no_nul(&f("text"), &t);
                    if t.is_empty() {
                        v.add(f("text"), "must not be empty (an entry carries content)");
                    }
                    d::Content::Text(t)
                }
                Some(pb::new_entry::Content::Data(b)) if b.is_empty() => {
                    v.add(f("data"), "must not be empty (an entry carries content)");
                    d::Content::Data(b)
                }
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

/// With the tenant the call acts for: page tokens are bound to it.
impl TryFrom<(pb::ListEntriesRequest, &str)> for ListEntries {
    type Error = Error;
    fn try_from((r, tenant): (pb::ListEntriesRequest, &str)) -> Result<Self> {
        let pb::ListEntriesRequest { session_key, after_seq, before_seq, kinds, page_size, page_token } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let kinds = kinds
            .iter()
            .enumerate()
            .filter_map(|(i, k)| v.enumeration(&format!("kinds[{i}]"), *k, entry_kind))
            .collect();
        let page_size = v.page_size("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let mut cmd = ListEntries {
            session_key,
            after_seq: after_seq.unwrap_or(0),
            before_seq,
            kinds,
            page_size,
            page_token: None,
        };
        cmd.page_token = page_token_of(&mut v, d::page::PageKind::Entries, tenant, &cmd.page_scope(), &page_token);
        v.finish().map(|()| cmd)
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
        let max_tokens = match v.max_tokens("max_tokens", max_tokens) {
            0 => DEFAULT_MAX_TOKENS,
            n => n,
        };
        v.finish().map(|()| GetContextWindow { session_key, max_tokens, max_entries })
    }
}

/// With the tenant the call acts for: page tokens are bound to it.
impl TryFrom<(pb::SearchEntriesRequest, &str)> for SearchEntries {
    type Error = Error;
    fn try_from((r, tenant): (pb::SearchEntriesRequest, &str)) -> Result<Self> {
        let pb::SearchEntriesRequest { session_key, query, page_size, page_token } = r;
        let mut v = Violations::default();
        let session_key = v.optional_key("session_key", &session_key);
        let query = v.search_query("query", &query);
        let page_size = v.page_size("page_size", page_size, DEFAULT_SEARCH_PAGE_SIZE, MAX_SEARCH_PAGE_SIZE);
        // A token is bound to the parsed query; a malformed query was reported above.
        let offset = query.as_ref().map_or(0, |q| {
            let scope = SearchEntries::scope(&session_key, q);
            page_token_of(&mut v, d::page::PageKind::Search, tenant, &scope, &page_token).unwrap_or(0)
        });
        if offset > 10_000 {
            v.add("page_token", "search pages end after 10000 hits; refine the query");
        }
        v.finish()?;
        // `search_query` reported a missing or malformed query above; this only satisfies the type.
        let Some(query) = query else { return Err(Error::invalid("query", "is required")) };
        Ok(SearchEntries { session_key, query, page_size, offset: offset as u32 })
    }
}

impl TryFrom<pb::RequestHandoffRequest> for RequestHandoff {
    type Error = Error;
    fn try_from(r: pb::RequestHandoffRequest) -> Result<Self> {
        let pb::RequestHandoffRequest {
            session_key,
            from_agent,
            to_agent,
            r#type,
            instructions,
            deadline,
            max_tokens,
            idempotency_key,
        } = r;
        let mut v = Violations::default();
        let session_key = v.key("session_key", &session_key);
        let from_agent = v.key("from_agent", &from_agent);
        let to_agent = v.key("to_agent", &to_agent);
        let kind = v.enumeration("type", r#type, handoff_type);
        let instructions = v.text("instructions", &instructions, MAX_INSTRUCTIONS_BYTES);
        let max_tokens = v.max_tokens("max_tokens", max_tokens);
        let idempotency_key = v.optional_key("idempotency_key", &idempotency_key);
        let deadline = deadline.and_then(|t| {
            let m = timestamp_in_range(&t).then(|| micros(&t)).flatten();
            if m.is_none() {
                v.add("deadline", "must be a valid timestamp between the years 1 and 9999");
            }
            m
        });
        v.finish()?;
        // `enumeration` reported a missing or unknown type above; this only satisfies the type.
        let Some(kind) = kind else { return Err(Error::invalid("type", "is required")) };
        Ok(RequestHandoff {
            session_key,
            from_agent,
            to_agent,
            kind,
            instructions,
            deadline,
            max_tokens,
            idempotency_key,
        })
    }
}

/// With the tenant the call acts for: page tokens are bound to it.
impl TryFrom<(pb::ListHandoffsRequest, &str)> for ListHandoffs {
    type Error = Error;
    fn try_from((r, tenant): (pb::ListHandoffsRequest, &str)) -> Result<Self> {
        let pb::ListHandoffsRequest { to_agent, from_agent, session_key, status, page_size, page_token } = r;
        let mut v = Violations::default();
        let mut cmd = ListHandoffs {
            to_agent: v.optional_key("to_agent", &to_agent),
            from_agent: v.optional_key("from_agent", &from_agent),
            session_key: v.optional_key("session_key", &session_key),
            status: v.enumeration("status", status, handoff_status).flatten(),
            page_size: v.page_size("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            page_token: None,
        };
        cmd.page_token = page_token_of(&mut v, d::page::PageKind::Handoffs, tenant, &cmd.page_scope(), &page_token);
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

#[cfg(test)]
mod tests {
    use super::*;

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
