//! A readable text rendering of results, for the `text` content of tool results: an indented
//! outline (in the spirit of YAML) that a model reads at a glance, beside the exact structured
//! content. Message fields come out in declaration order (`session_key` first), which the
//! JSON value alone cannot give (its maps are sorted).

use prost_reflect::{Kind, MessageDescriptor};
use serde_json::Value as Json;

/// An ordered view of a JSON value.
enum Node {
    Leaf(Json),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

/// Flags that mark the exception on a record: shown only when set, so a context of many
/// entries does not repeat `redacted: false` on every one (the structured content keeps them).
const FLAGS: &[&str] = &["baton.v1.Entry.redacted", "baton.v1.Session.legal_hold"];

/// Renders a message's proto3 JSON, fields in declaration order.
pub fn message_to_text(desc: &MessageDescriptor, value: &Json) -> String {
    render(&node(value, Some(desc)))
}

/// Renders a stream tool's result: `count`, `stopped`, then the items under `key`.
pub fn stream_to_text(item: &MessageDescriptor, key: &str, value: &Json) -> String {
    let mut top = Vec::new();
    for name in ["count", "stopped"] {
        if let Some(v) = value.get(name) {
            top.push((name.to_owned(), node(v, None)));
        }
    }
    let items = value.get(key).and_then(Json::as_array).into_iter().flatten().map(|i| node(i, Some(item))).collect();
    top.push((key.to_owned(), Node::List(items)));
    render(&Node::Map(top))
}

/// Renders any JSON value (object keys in the map's order).
pub fn to_text(value: &Json) -> String {
    render(&node(value, None))
}

fn node(value: &Json, desc: Option<&MessageDescriptor>) -> Node {
    match (value, desc) {
        (Json::Object(obj), Some(desc)) if !desc.full_name().starts_with("google.protobuf.") => {
            let mut fields = Vec::with_capacity(obj.len());
            // Declaration order, as in the .proto file.
            let declared = desc.descriptor_proto().field.iter().filter_map(|f| desc.get_field_by_name(f.name()));
            for field in declared {
                let Some(v) = obj.get(field.name()) else { continue };
                if is_empty(v) || (v == &Json::Bool(false) && FLAGS.contains(&field.full_name())) {
                    // Unset strings, lists and objects say nothing to a reader; numbers and
                    // booleans stay (a last_seq of 0 or truncated: false is information),
                    // except the flags below while they are off.
                    continue;
                }
                let child = match field.kind() {
                    Kind::Message(m) if field.is_map() => {
                        let value_desc = match m.map_entry_value_field().kind() {
                            Kind::Message(vm) => Some(vm),
                            _ => None,
                        };
                        match v {
                            Json::Object(entries) => Node::Map(
                                entries.iter().map(|(k, e)| (k.clone(), node(e, value_desc.as_ref()))).collect(),
                            ),
                            other => node(other, None),
                        }
                    }
                    Kind::Message(m) => node(v, Some(&m)),
                    _ => node(v, None),
                };
                fields.push((field.name().to_owned(), child));
            }
            for (k, v) in obj {
                if desc.get_field_by_name(k).is_none() {
                    fields.push((k.clone(), node(v, None)));
                }
            }
            Node::Map(fields)
        }
        (Json::Array(items), desc) => Node::List(items.iter().map(|i| node(i, desc)).collect()),
        (Json::Object(obj), _) => Node::Map(obj.iter().map(|(k, v)| (k.clone(), node(v, None))).collect()),
        (leaf, _) => Node::Leaf(leaf.clone()),
    }
}

fn is_empty(value: &Json) -> bool {
    match value {
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        Json::Null => true,
        _ => false,
    }
}

fn render(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(fields) if !fields.is_empty() => map(&mut out, fields, 0),
        Node::List(items) if !items.is_empty() => list(&mut out, items, 0),
        other => out.push_str(&scalar(other)),
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

fn map(out: &mut String, fields: &[(String, Node)], indent: usize) {
    for (key, value) in fields {
        pad(out, indent);
        out.push_str(key);
        out.push(':');
        member(out, value, indent);
    }
}

fn list(out: &mut String, items: &[Node], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Node::Map(fields) if !fields.is_empty() => {
                // The first key goes on the dash's line, the others align under it.
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i == 0 {
                        out.push(' ');
                    } else {
                        pad(out, indent + 2);
                    }
                    out.push_str(key);
                    out.push(':');
                    member(out, value, indent + 2);
                }
            }
            Node::List(inner) if !inner.is_empty() => {
                out.push('\n');
                list(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                block_or_scalar(out, other, indent + 2);
            }
        }
    }
}

/// Writes what follows `key:`.
fn member(out: &mut String, value: &Node, indent: usize) {
    match value {
        Node::Map(fields) if !fields.is_empty() => {
            out.push('\n');
            map(out, fields, indent + 2);
        }
        Node::List(items) if !items.is_empty() && items.iter().all(is_short_leaf) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            out.push_str(&format!(" [{}]\n", parts.join(", ")));
        }
        Node::List(items) if !items.is_empty() => {
            out.push('\n');
            list(out, items, indent + 2);
        }
        other => {
            out.push(' ');
            block_or_scalar(out, other, indent + 2);
        }
    }
}

fn block_or_scalar(out: &mut String, value: &Node, indent: usize) {
    match value {
        Node::Leaf(Json::String(s)) if s.contains('\n') => {
            out.push_str("|\n");
            for line in s.lines() {
                pad(out, indent);
                out.push_str(line);
                out.push('\n');
            }
        }
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn is_short_leaf(value: &Node) -> bool {
    match value {
        Node::Leaf(Json::String(s)) => s.len() <= 40 && !s.contains('\n'),
        Node::Leaf(_) => true,
        _ => false,
    }
}

fn scalar(value: &Node) -> String {
    match value {
        Node::Leaf(Json::String(s)) if s.is_empty() => "\"\"".into(),
        Node::Leaf(Json::String(s)) => s.clone(),
        // Struct numbers are doubles: show 1.0 as 1.
        Node::Leaf(Json::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Node::Leaf(other) => other.to_string(),
        Node::Map(_) => "{}".into(),
        Node::List(_) => "[]".into(),
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::descriptors::decode_pool;

    #[test]
    fn outline_in_field_order() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let desc = pool.get_message_by_name("baton.v1.GetContextWindowResponse").unwrap();
        let value = json!({
            "truncated": false,
            "last_seq": "2",
            "total_tokens": 12,
            "entries": [
                {"text": "line one\nline two", "seq": "1", "session_key": "demo", "metadata": {"team": "core", "tags": ["a", "b"]}},
                {"seq": "2", "session_key": "demo", "text": "", "metadata": {}}
            ]
        });
        assert_eq!(
            message_to_text(&desc, &value),
            "entries:\n  - session_key: demo\n    seq: 1\n    text: |\n      line one\n      line two\n    metadata:\n      tags: [a, b]\n      team: core\n  - session_key: demo\n    seq: 2\ntotal_tokens: 12\nlast_seq: 2\ntruncated: false"
        );
    }

    #[test]
    fn lifecycle_fields() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let list = pool.get_message_by_name("baton.v1.ListEntriesResponse").unwrap();
        let value = json!({
            "entries": [
                {"session_key": "s", "seq": "1", "text": "kept", "redacted": false},
                {"session_key": "s", "seq": "2", "text": "", "metadata": {}, "token_count": 0, "redacted": true,
                 "redaction": {"redacted_by": "a", "redacted_at": "2026-01-02T03:04:05Z", "reason": "pii"}}
            ],
            "next_page_token": ""
        });
        assert_eq!(
            message_to_text(&list, &value),
            "entries:\n  - session_key: s\n    seq: 1\n    text: kept\n  - session_key: s\n    seq: 2\n    token_count: 0\n    redacted: true\n    redaction:\n      redacted_by: a\n      redacted_at: 2026-01-02T03:04:05Z\n      reason: pii"
        );

        let session = pool.get_message_by_name("baton.v1.Session").unwrap();
        let fork = json!({
            "session_key": "f", "last_seq": "2", "first_seq": "1", "legal_hold": false,
            "forked_from": {"session_key": "s", "seq": "2"}
        });
        assert_eq!(
            message_to_text(&session, &fork),
            "session_key: f\nlast_seq: 2\nforked_from:\n  session_key: s\n  seq: 2\nfirst_seq: 1"
        );
        let held =
            json!({"session_key": "s", "first_seq": "3", "legal_hold": true, "retention": {"keep_latest": "10"}});
        assert_eq!(
            message_to_text(&session, &held),
            "session_key: s\nfirst_seq: 3\nlegal_hold: true\nretention:\n  keep_latest: 10"
        );
    }

    #[test]
    fn stream_results() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let desc = pool.get_message_by_name("baton.v1.Entry").unwrap();
        let value = json!({"entries": [{"seq": "1", "session_key": "s"}], "count": 1, "stopped": "end"});
        assert_eq!(
            stream_to_text(&desc, "entries", &value),
            "count: 1\nstopped: end\nentries:\n  - session_key: s\n    seq: 1"
        );
        assert_eq!(to_text(&json!({"a": [], "n": 1.0, "m": 1.5})), "a: []\nm: 1.5\nn: 1");
    }
}
