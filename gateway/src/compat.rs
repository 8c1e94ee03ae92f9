//! Argument names of the earlier Node "AI handoff MCP server", accepted as aliases so its users
//! can switch by changing only the server command.
//!
//! | old argument  | becomes                                                            |
//! |---------------|--------------------------------------------------------------------|
//! | `sessionKey`  | `session_key` (it is also the field's proto3 JSON name)            |
//! | `agentFrom`   | `agent` where the request has it, else `from_agent`, else the author of the single entry built from `content` |
//! | `targetAgent` | `to_agent`                                                         |
//! | `requestType` | `type` (`"context_transfer"`, `"full_handoff"`, `"collaboration"`)  |
//! | `requestData` | `instructions` (a string as is, anything else as compact JSON)      |
//! | `contextType` | the single entry's `kind` (`"message"`, `"file"`, `"tool_call"`, …) |
//! | `content`     | the single entry's `text` (non-strings as JSON, `application/json`) |
//! | `metadata`    | `metadata`; in the single-entry form, the entry's `metadata`        |
//!
//! The single-entry form applies to requests with `entries` (update_context): `content`,
//! `contextType` (default `message`), `agentFrom`/`author`, `role` and `metadata` build one
//! `NewEntry`. In a call that uses any old argument name, a missing `from_agent` or entry
//! author defaults to the session's current owner, as the old server took it from the session.

use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{Map, Value as Json};

use crate::args::{ArgumentError, Violation};

/// Argument names only the old server used; any of them marks a call as old-style.
const LEGACY_ONLY: &[&str] = &["agentFrom", "targetAgent", "requestType", "requestData", "contextType", "content"];

/// A required field that the gateway fills in with the session's owner before the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerDefault {
    /// The argument path, e.g. `from_agent` or `entries[0].author`.
    pub path: String,
}

/// Arguments after alias mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub args: Map<String, Json>,
    pub owner_defaults: Vec<OwnerDefault>,
}

/// Rewrites old argument names in `args` for a request of type `desc`.
pub fn map_aliases(desc: &MessageDescriptor, mut args: Map<String, Json>) -> Result<Mapped, ArgumentError> {
    let legacy = LEGACY_ONLY.iter().any(|k| args.contains_key(*k));
    if !legacy {
        return Ok(Mapped { args, owner_defaults: Vec::new() });
    }
    let has = |name: &str| desc.get_field_by_name(name).is_some();
    let mut errors = Vec::new();
    let mut owner_defaults = Vec::new();

    if let Some(entry_field) =
        single_entry_target(desc).filter(|_| args.contains_key("content") || args.contains_key("contextType"))
    {
        if args.contains_key(&entry_field) {
            return Err(ArgumentError::one(
                "content",
                format!("give either `{entry_field}` or the single-entry form (`content`, `contextType`), not both"),
            ));
        }
        let mut entry = Map::new();
        entry.insert("kind".into(), args.remove("contextType").unwrap_or_else(|| Json::String("MESSAGE".into())));
        match args.remove("content") {
            Some(Json::String(text)) => {
                entry.insert("text".into(), Json::String(text));
            }
            Some(Json::Null) | None => errors.push(Violation::new("content", "required with `contextType`")),
            Some(other) => {
                entry.insert("text".into(), Json::String(other.to_string()));
                entry.insert("media_type".into(), Json::String("application/json".into()));
            }
        }
        let author = take_one(&mut args, &["agentFrom", "author"], "author", &mut errors);
        match author {
            Some(author) => {
                entry.insert("author".into(), author);
            }
            None => owner_defaults.push(OwnerDefault { path: format!("{entry_field}[0].author") }),
        }
        for key in ["role", "media_type", "mediaType"] {
            if let Some(v) = args.remove(key) {
                entry.insert(if key == "mediaType" { "media_type".into() } else { key.into() }, v);
            }
        }
        if !has("metadata")
            && let Some(v) = args.remove("metadata")
        {
            entry.insert("metadata".into(), v);
        }
        args.insert(entry_field, Json::Array(vec![Json::Object(entry)]));
    }

    if args.contains_key("agentFrom")
        && let Some(target) = ["agent", "from_agent"].into_iter().find(|f| has(f))
    {
        rename(&mut args, desc, "agentFrom", target, &mut errors);
    }
    if has("to_agent") {
        rename(&mut args, desc, "targetAgent", "to_agent", &mut errors);
    }
    if has("type") {
        rename(&mut args, desc, "requestType", "type", &mut errors);
    }
    if has("instructions")
        && let Some(data) = args.remove("requestData")
    {
        let text = match data {
            Json::String(s) => Json::String(s),
            Json::Null => Json::Null,
            other => Json::String(other.to_string()),
        };
        args.insert("requestData".into(), text);
        rename(&mut args, desc, "requestData", "instructions", &mut errors);
    }
    if has("from_agent") && !present(&args, desc, "from_agent") {
        owner_defaults.push(OwnerDefault { path: "from_agent".into() });
    }

    if errors.is_empty() { Ok(Mapped { args, owner_defaults }) } else { Err(ArgumentError { violations: errors }) }
}

/// The repeated-message field that the single-entry form fills: one whose messages have
/// `kind`, `author` and `text` fields (a `NewEntry`).
fn single_entry_target(desc: &MessageDescriptor) -> Option<String> {
    desc.fields()
        .find(|f| {
            f.is_list()
                && matches!(f.kind(), Kind::Message(ref m)
                    if ["kind", "author", "text"].iter().all(|n| m.get_field_by_name(n).is_some()))
        })
        .map(|f| f.name().to_owned())
}

/// Whether `field` (by proto or JSON name) has a non-null argument.
fn present(args: &Map<String, Json>, desc: &MessageDescriptor, field: &str) -> bool {
    let Some(f) = desc.get_field_by_name(field) else { return false };
    [f.name(), f.json_name()].iter().any(|k| args.get(*k).is_some_and(|v| !v.is_null()))
}

/// Moves `alias` to `target`, refusing different values under both names.
fn rename(
    args: &mut Map<String, Json>,
    desc: &MessageDescriptor,
    alias: &str,
    target: &str,
    errors: &mut Vec<Violation>,
) {
    let Some(value) = args.remove(alias) else { return };
    let existing = desc
        .get_field_by_name(target)
        .and_then(|f| [f.name().to_owned(), f.json_name().to_owned()].into_iter().find(|k| args.contains_key(k)));
    match existing {
        Some(key) if args[&key] != value && !args[&key].is_null() => {
            errors.push(Violation::new(
                target,
                format!("`{alias}` and `{key}` are the same argument with different values"),
            ));
        }
        Some(key) => {
            args.insert(key, value);
        }
        None => {
            args.insert(target.to_owned(), value);
        }
    }
}

/// Removes every key of `keys` and returns their common value.
fn take_one(args: &mut Map<String, Json>, keys: &[&str], field: &str, errors: &mut Vec<Violation>) -> Option<Json> {
    let mut found: Option<(String, Json)> = None;
    for key in keys {
        let Some(value) = args.remove(*key) else { continue };
        if value.is_null() {
            continue;
        }
        match &found {
            Some((first, v)) if *v != value => {
                errors.push(Violation::new(
                    field,
                    format!("`{first}` and `{key}` are the same argument with different values"),
                ));
            }
            Some(_) => {}
            None => found = Some(((*key).to_owned(), value)),
        }
    }
    found.map(|(_, v)| v)
}

/// The old argument names a request of type `desc` accepts, for its tool description.
pub fn accepted_aliases(desc: &MessageDescriptor) -> Vec<&'static str> {
    let has = |name: &str| desc.get_field_by_name(name).is_some();
    let mut names = Vec::new();
    if has("session_key") {
        names.push("sessionKey");
    }
    let single_entry = single_entry_target(desc).is_some();
    if has("agent") || has("from_agent") || single_entry {
        names.push("agentFrom");
    }
    if has("to_agent") {
        names.push("targetAgent");
    }
    if has("type") {
        names.push("requestType");
    }
    if has("instructions") {
        names.push("requestData");
    }
    if single_entry {
        names.extend(["contextType", "content"]);
    }
    if has("metadata") || single_entry {
        names.push("metadata");
    }
    // sessionKey alone is just the proto3 JSON name; only mention aliases where old ones apply.
    if names.len() <= 1 { Vec::new() } else { names }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::descriptors::decode_pool;

    fn map(message: &str, args: Json) -> Result<Mapped, ArgumentError> {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let desc = pool.get_message_by_name(message).unwrap();
        let Json::Object(args) = args else { panic!("arguments are an object") };
        map_aliases(&desc, args)
    }

    #[test]
    fn new_style_arguments_pass_through() {
        let args = json!({"session_key": "s", "entries": [{"kind": "MESSAGE", "author": "a", "text": "x"}]});
        let mapped = map("baton.v1.AppendEntriesRequest", args.clone()).unwrap();
        assert_eq!(Json::Object(mapped.args), args);
        assert!(mapped.owner_defaults.is_empty());
    }

    #[test]
    fn register_session_aliases() {
        let mapped = map(
            "baton.v1.CreateSessionRequest",
            json!({"sessionKey": "s", "agentFrom": "planner", "metadata": {"a": 1}}),
        )
        .unwrap();
        assert_eq!(Json::Object(mapped.args), json!({"sessionKey": "s", "agent": "planner", "metadata": {"a": 1}}));
        assert!(mapped.owner_defaults.is_empty());
    }

    #[test]
    fn update_context_single_entry_form() {
        let mapped = map(
            "baton.v1.AppendEntriesRequest",
            json!({"sessionKey": "s", "contextType": "tool_call", "content": "ran ls", "agentFrom": "coder", "metadata": {"m": true}}),
        )
        .unwrap();
        assert_eq!(
            Json::Object(mapped.args),
            json!({"sessionKey": "s", "entries": [{"kind": "tool_call", "text": "ran ls", "author": "coder", "metadata": {"m": true}}]})
        );
        assert!(mapped.owner_defaults.is_empty());
    }

    #[test]
    fn update_context_without_author_defaults_to_owner() {
        let mapped = map("baton.v1.AppendEntriesRequest", json!({"sessionKey": "s", "content": {"k": 1}})).unwrap();
        assert_eq!(
            Json::Object(mapped.args),
            json!({"sessionKey": "s", "entries": [{"kind": "MESSAGE", "text": "{\"k\":1}", "media_type": "application/json"}]})
        );
        assert_eq!(mapped.owner_defaults, vec![OwnerDefault { path: "entries[0].author".into() }]);
    }

    #[test]
    fn update_context_refuses_both_forms() {
        let e = map("baton.v1.AppendEntriesRequest", json!({"session_key": "s", "content": "x", "entries": []}))
            .unwrap_err();
        assert_eq!(e.violations[0].field, "content");
    }

    #[test]
    fn request_handoff_aliases() {
        let mapped = map(
            "baton.v1.RequestHandoffRequest",
            json!({"sessionKey": "s", "targetAgent": "b", "requestType": "full_handoff", "requestData": {"instructions": "go", "priority": "high"}}),
        )
        .unwrap();
        assert_eq!(
            Json::Object(mapped.args),
            json!({"sessionKey": "s", "to_agent": "b", "type": "full_handoff", "instructions": "{\"instructions\":\"go\",\"priority\":\"high\"}"})
        );
        assert_eq!(mapped.owner_defaults, vec![OwnerDefault { path: "from_agent".into() }]);
        let mapped = map(
            "baton.v1.RequestHandoffRequest",
            json!({"session_key": "s", "agentFrom": "a", "targetAgent": "b", "requestData": "go"}),
        )
        .unwrap();
        assert_eq!(mapped.args["from_agent"], "a");
        assert_eq!(mapped.args["instructions"], "go");
        assert!(mapped.owner_defaults.is_empty());
    }

    #[test]
    fn conflicting_alias_values_are_rejected() {
        let e = map("baton.v1.RequestHandoffRequest", json!({"to_agent": "b", "targetAgent": "c"})).unwrap_err();
        assert_eq!(e.violations[0].field, "to_agent");
        let same =
            map("baton.v1.RequestHandoffRequest", json!({"from_agent": "a", "toAgent": "b", "targetAgent": "b"}))
                .unwrap();
        assert_eq!(same.args["toAgent"], "b");
    }

    #[test]
    fn aliases_listed_per_request() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let get = |n: &str| accepted_aliases(&pool.get_message_by_name(n).unwrap());
        assert_eq!(get("baton.v1.CreateSessionRequest"), ["sessionKey", "agentFrom", "metadata"]);
        assert_eq!(
            get("baton.v1.AppendEntriesRequest"),
            ["sessionKey", "agentFrom", "contextType", "content", "metadata"]
        );
        assert_eq!(
            get("baton.v1.RequestHandoffRequest"),
            ["sessionKey", "agentFrom", "targetAgent", "requestType", "requestData"]
        );
        assert!(get("baton.v1.GetSessionRequest").is_empty());
    }
}
