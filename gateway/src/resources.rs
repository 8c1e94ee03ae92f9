//! MCP resources: sessions, a session's context window and handoffs as JSON documents, under
//! `baton://` and, for the earlier Node server's users, `handoff://`.

use rmcp::model::{Resource, ResourceTemplate};
use serde_json::{Map, Value as Json, json};

/// How many sessions `baton://sessions` lists.
pub const SESSION_LIST_PAGE: u32 = 100;

/// A resource URI the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceRef {
    /// `baton://sessions` (alias `handoff://sessions`).
    Sessions,
    /// `baton://sessions/{session_key}`.
    Session(String),
    /// `baton://sessions/{session_key}/context` (alias `handoff://context/{sessionKey}`).
    Context(String),
    /// `baton://handoffs/{handoff_id}`.
    Handoff(String),
}

impl ResourceRef {
    /// Parses a resource URI; `None` when it is not one of the gateway's.
    pub fn parse(uri: &str) -> Option<Self> {
        if let Some(rest) = uri.strip_prefix("baton://") {
            let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
            return match parts.as_slice() {
                ["sessions"] => Some(Self::Sessions),
                ["sessions", key] => Some(Self::Session(decode(key)?)),
                ["sessions", key, "context"] => Some(Self::Context(decode(key)?)),
                ["handoffs", id] => Some(Self::Handoff(decode(id)?)),
                _ => None,
            };
        }
        if let Some(rest) = uri.strip_prefix("handoff://") {
            let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
            return match parts.as_slice() {
                ["sessions"] => Some(Self::Sessions),
                ["context", key] => Some(Self::Context(decode(key)?)),
                _ => None,
            };
        }
        None
    }

    /// The RPC that reads the resource, and its arguments (one field each).
    pub fn call(&self) -> (&'static str, Map<String, Json>) {
        let (method, field, value) = match self {
            Self::Sessions => ("baton.v1.ContextService.ListSessions", "page_size", json!(SESSION_LIST_PAGE)),
            Self::Session(key) => ("baton.v1.ContextService.GetSession", "session_key", json!(key)),
            Self::Context(key) => ("baton.v1.ContextService.GetContextWindow", "session_key", json!(key)),
            Self::Handoff(id) => ("baton.v1.HandoffService.GetHandoff", "handoff_id", json!(id)),
        };
        (method, Map::from_iter([(field.to_owned(), value)]))
    }

    /// The session whose appends change this resource, if any: what a subscription follows.
    pub fn followed_session(&self) -> Option<&str> {
        match self {
            Self::Session(key) | Self::Context(key) => Some(key),
            Self::Sessions | Self::Handoff(_) => None,
        }
    }
}

/// Percent-decodes one path segment.
fn decode(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return None;
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a key for a URI path segment (keys are URL-safe already; this is a guard).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub const JSON: &str = "application/json";

/// The fixed resources.
pub fn static_resources() -> Vec<Resource> {
    vec![
        Resource::new("baton://sessions", "sessions")
            .with_title("Sessions")
            .with_description(format!("The tenant's sessions, newest first (up to {SESSION_LIST_PAGE})."))
            .with_mime_type(JSON),
    ]
}

/// The context resource of one session, for listings.
pub fn session_context_resource(session_key: &str, owner: &str, last_seq: &str) -> Resource {
    Resource::new(format!("baton://sessions/{}/context", encode(session_key)), format!("{session_key} context"))
        .with_title(format!("Context of session {session_key}"))
        .with_description(format!("Context window of session {session_key} (owner {owner}, last seq {last_seq})."))
        .with_mime_type(JSON)
}

/// The resource templates.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("baton://sessions/{session_key}", "session")
            .with_title("Session")
            .with_description("One session: owner, status, metadata, last_seq. Subscribe to hear of new entries.")
            .with_mime_type(JSON),
        ResourceTemplate::new("baton://sessions/{session_key}/context", "session-context")
            .with_title("Session context window")
            .with_description(
                "The session's context window (GetContextWindow): the latest summary and the newest entries within \
                 the default token budget. Subscribe to be told of every new entry.",
            )
            .with_mime_type(JSON),
        ResourceTemplate::new("baton://handoffs/{handoff_id}", "handoff")
            .with_title("Handoff")
            .with_description("One handoff: agents, type, status, instructions, summary, up_to_seq.")
            .with_mime_type(JSON),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(ResourceRef::parse("baton://sessions"), Some(ResourceRef::Sessions));
        assert_eq!(ResourceRef::parse("handoff://sessions"), Some(ResourceRef::Sessions));
        assert_eq!(ResourceRef::parse("baton://sessions/a.b"), Some(ResourceRef::Session("a.b".into())));
        assert_eq!(ResourceRef::parse("baton://sessions/a%40b/context"), Some(ResourceRef::Context("a@b".into())));
        assert_eq!(ResourceRef::parse("handoff://context/k1"), Some(ResourceRef::Context("k1".into())));
        assert_eq!(ResourceRef::parse("baton://handoffs/h-1"), Some(ResourceRef::Handoff("h-1".into())));
        assert_eq!(ResourceRef::parse("baton://sessions//context"), None);
        assert_eq!(ResourceRef::parse("baton://nope"), None);
        assert_eq!(ResourceRef::parse("file:///etc/passwd"), None);
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn calls_carry_one_argument_each() {
        let (method, args) = ResourceRef::Context("k1".into()).call();
        assert_eq!(method, "baton.v1.ContextService.GetContextWindow");
        assert_eq!(Json::Object(args), json!({"session_key": "k1"}));
        let (_, args) = ResourceRef::Sessions.call();
        assert_eq!(Json::Object(args), json!({"page_size": SESSION_LIST_PAGE}));
    }
}
