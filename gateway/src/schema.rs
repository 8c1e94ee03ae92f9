//! JSON Schemas for protobuf messages under the proto3 JSON mapping: tool input schemas (from
//! request messages) and output schemas (from response messages).
//!
//! Input schemas describe what `args` accepts: 64-bit integers as decimal strings (numbers
//! accepted), enums by name, `Struct` as an object, `Timestamp` and `Duration` as strings,
//! repeated fields as arrays, and fields whose comment says "(required)" in `required`.
//! Output schemas are looser (no `required`, enums not closed) so a newer server never makes a
//! client reject a result.

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::descriptors::{Comments, comment_says_required};

/// Which side of a call a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// Builds JSON Schemas from message descriptors, with descriptions from proto comments.
pub struct SchemaBuilder<'a> {
    comments: &'a Comments,
    direction: Direction,
}

impl<'a> SchemaBuilder<'a> {
    pub fn new(comments: &'a Comments, direction: Direction) -> Self {
        Self { comments, direction }
    }

    /// The object schema of `desc` (a tool's whole input or output).
    pub fn message(&self, desc: &MessageDescriptor) -> Map<String, Value> {
        let mut stack = Vec::new();
        self.message_object(desc, &mut stack, true)
    }

    fn message_object(&self, desc: &MessageDescriptor, stack: &mut Vec<String>, root: bool) -> Map<String, Value> {
        let mut schema = Map::new();
        schema.insert("type".into(), json!("object"));
        if stack.iter().any(|name| name == desc.full_name()) {
            // A recursive message: stop here rather than unroll it forever.
            return schema;
        }
        stack.push(desc.full_name().to_owned());
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in desc.fields() {
            let comment = self.field_comment(&field);
            if self.direction == Direction::Input && comment.is_some_and(comment_says_required) {
                required.push(json!(field.name()));
            }
            properties.insert(field.name().to_owned(), Value::Object(self.field(&field, stack)));
        }
        stack.pop();
        schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".into(), Value::Array(required));
        }
        // Nested input objects are closed; the root stays open because the gateway also accepts
        // the argument names of the earlier Node MCP server there (see `compat`), and the
        // gateway itself rejects anything it does not know with a message naming the field.
        if self.direction == Direction::Input && !root {
            schema.insert("additionalProperties".into(), json!(false));
        }
        schema
    }

    fn field_comment(&self, field: &FieldDescriptor) -> Option<&'a str> {
        self.comments.get(field.parent_file().name(), field.path())
    }

    fn field(&self, field: &FieldDescriptor, stack: &mut Vec<String>) -> Map<String, Value> {
        let mut notes: Vec<String> = Vec::new();
        if let Some(comment) = self.field_comment(field) {
            notes.push(comment.to_owned());
        }
        if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
            let members: Vec<String> = oneof.fields().map(|f| f.name().to_owned()).collect();
            notes.push(format!("One of `{}` ({}): set at most one of them.", oneof.name(), members.join(" | ")));
        }
        let mut schema = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { unreachable!("map fields have entry messages") };
            let value_field = entry.map_entry_value_field();
            let (value_schema, _) = self.singular(&value_field.kind(), stack);
            let mut s = Map::new();
            s.insert("type".into(), json!("object"));
            s.insert("additionalProperties".into(), Value::Object(value_schema));
            s
        } else {
            let (item, note) = self.singular(&field.kind(), stack);
            if let Some(note) = note {
                notes.push(note);
            }
            if field.is_list() {
                let mut s = Map::new();
                s.insert("type".into(), json!("array"));
                s.insert("items".into(), Value::Object(item));
                s
            } else {
                item
            }
        };
        if !notes.is_empty() {
            schema.insert("description".into(), json!(notes.join(" ")));
        }
        schema
    }

    /// The schema of one value of `kind`, and a note on its JSON form for the description.
    fn singular(&self, kind: &Kind, stack: &mut Vec<String>) -> (Map<String, Value>, Option<String>) {
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!("schemas are objects"),
        };
        match kind {
            Kind::Double | Kind::Float => match self.direction {
                Direction::Input => (obj(json!({"type": "number"})), None),
                // Non-finite values are written as "NaN", "Infinity" or "-Infinity".
                Direction::Output => (obj(json!({"type": ["number", "string"]})), None),
            },
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                (obj(json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX})), None)
            }
            Kind::Uint32 | Kind::Fixed32 => (obj(json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})), None),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (
                obj(json!({"type": ["string", "integer"], "pattern": "^-?[0-9]+$"})),
                Some("64-bit integer as a decimal string (a JSON number is accepted too).".into()),
            ),
            Kind::Uint64 | Kind::Fixed64 => (
                obj(json!({"type": ["string", "integer"], "pattern": "^[0-9]+$", "minimum": 0})),
                Some("64-bit integer as a decimal string (a JSON number is accepted too).".into()),
            ),
            Kind::Bool => (obj(json!({"type": "boolean"})), None),
            Kind::String => (obj(json!({"type": "string"})), None),
            Kind::Bytes => {
                (obj(json!({"type": "string", "contentEncoding": "base64"})), Some("Base64-encoded bytes.".into()))
            }
            Kind::Enum(e) => self.enumeration(e),
            Kind::Message(m) => match well_known(m.full_name()) {
                Some(schema) => schema,
                None => (self.message_object(m, stack, false), None),
            },
        }
    }

    fn enumeration(&self, e: &EnumDescriptor) -> (Map<String, Value>, Option<String>) {
        let prefix = enum_prefix(e);
        let mut names = Vec::new();
        let mut described = Vec::new();
        for value in e.values() {
            let unspecified = value.number() == 0 && value.name().ends_with("_UNSPECIFIED");
            if unspecified && self.direction == Direction::Input {
                // Leaving the field out means the same, and listing it invites a useless choice.
                continue;
            }
            names.push(json!(value.name()));
            let comment = self.comments.get(value.parent_file().name(), value.path());
            described.push(match comment {
                Some(c) => format!("{} ({})", value.name(), c.trim_end_matches('.')),
                None => value.name().to_owned(),
            });
        }
        let mut note = format!("Values: {}.", described.join("; "));
        if self.direction == Direction::Input && !prefix.is_empty() {
            note.push_str(&format!(
                " The short form without the `{prefix}` prefix is accepted too, in any case (e.g. {:?}).",
                e.values()
                    .find(|v| v.number() != 0)
                    .map(|v| v.name().strip_prefix(&prefix).unwrap_or(v.name()).to_ascii_lowercase())
                    .unwrap_or_default()
            ));
        }
        let schema = match self.direction {
            Direction::Input => json!({"type": "string", "enum": names}),
            // A newer server may send a value this gateway does not know, as a number.
            Direction::Output => json!({"type": ["string", "integer"]}),
        };
        (obj_of(schema), Some(note))
    }
}

fn obj_of(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("schemas are objects"),
    }
}

/// The prefix shared by an enum's value names by the protobuf style guide: `EntryKind` ->
/// `ENTRY_KIND_`. Empty when the values do not follow it.
pub fn enum_prefix(e: &EnumDescriptor) -> String {
    let mut prefix = String::new();
    for (i, c) in e.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    if e.values().all(|v| v.name().starts_with(&prefix)) { prefix } else { String::new() }
}

/// Schemas of the well-known types under their special JSON mapping.
fn well_known(full_name: &str) -> Option<(Map<String, Value>, Option<String>)> {
    let (schema, note) = match full_name {
        "google.protobuf.Struct" => (json!({"type": "object"}), "A JSON object."),
        "google.protobuf.Value" => (json!({}), "Any JSON value."),
        "google.protobuf.ListValue" => (json!({"type": "array"}), "A JSON array."),
        "google.protobuf.Timestamp" => (
            json!({"type": "string", "format": "date-time"}),
            "RFC 3339 timestamp in UTC, e.g. \"2030-01-02T15:04:05Z\".",
        ),
        "google.protobuf.Duration" => (
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
            "Duration in seconds with an `s` suffix, e.g. \"3600s\" or \"1.5s\".",
        ),
        "google.protobuf.FieldMask" => (json!({"type": "string"}), "Comma-separated field paths."),
        "google.protobuf.Empty" => (json!({"type": "object"}), "An empty object."),
        "google.protobuf.Any" => (
            json!({"type": "object", "properties": {"@type": {"type": "string"}}}),
            "A message with its type URL in `@type`.",
        ),
        "google.protobuf.BoolValue" => (json!({"type": "boolean"}), ""),
        "google.protobuf.StringValue" => (json!({"type": "string"}), ""),
        "google.protobuf.BytesValue" => {
            (json!({"type": "string", "contentEncoding": "base64"}), "Base64-encoded bytes.")
        }
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => (json!({"type": "number"}), ""),
        "google.protobuf.Int32Value" => (json!({"type": "integer"}), ""),
        "google.protobuf.UInt32Value" => (json!({"type": "integer", "minimum": 0}), ""),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => (
            json!({"type": ["string", "integer"], "pattern": "^-?[0-9]+$"}),
            "64-bit integer as a decimal string (a JSON number is accepted too).",
        ),
        _ => return None,
    };
    Some((obj_of(schema), (!note.is_empty()).then(|| note.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptors::decode_pool;

    fn input(message: &str) -> Value {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let comments = Comments::from_pool(&pool);
        let desc = pool.get_message_by_name(message).unwrap();
        Value::Object(SchemaBuilder::new(&comments, Direction::Input).message(&desc))
    }

    #[test]
    fn create_session_input() {
        let s = input("baton.v1.CreateSessionRequest");
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["agent"]));
        assert_eq!(s["properties"]["metadata"]["type"], "object");
        assert_eq!(s["properties"]["ttl"]["type"], "string");
        assert!(s["properties"]["ttl"]["description"].as_str().unwrap().contains("3600s"));
        assert!(s["properties"]["agent"]["description"].as_str().unwrap().contains("becomes the owner"));
        assert!(s.get("additionalProperties").is_none());
    }

    #[test]
    fn append_entries_input_nests_new_entry() {
        let s = input("baton.v1.AppendEntriesRequest");
        let entries = &s["properties"]["entries"];
        assert_eq!(entries["type"], "array");
        let entry = &entries["items"];
        assert_eq!(entry["additionalProperties"], false);
        assert_eq!(entry["required"], json!(["kind", "author"]));
        let kind = &entry["properties"]["kind"];
        assert_eq!(
            kind["enum"],
            json!([
                "ENTRY_KIND_MESSAGE",
                "ENTRY_KIND_FILE",
                "ENTRY_KIND_TOOL_CALL",
                "ENTRY_KIND_TOOL_RESULT",
                "ENTRY_KIND_SYSTEM",
                "ENTRY_KIND_SUMMARY"
            ])
        );
        assert!(kind["description"].as_str().unwrap().contains("\"message\""));
        assert!(entry["properties"]["text"]["description"].as_str().unwrap().contains("text | data"));
        assert_eq!(entry["properties"]["data"]["contentEncoding"], "base64");
        let expected = &s["properties"]["expected_last_seq"];
        assert_eq!(expected["type"], json!(["string", "integer"]));
    }

    #[test]
    fn enum_prefixes() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        assert_eq!(enum_prefix(&pool.get_enum_by_name("baton.v1.EntryKind").unwrap()), "ENTRY_KIND_");
        assert_eq!(enum_prefix(&pool.get_enum_by_name("baton.v1.HandoffEventType").unwrap()), "HANDOFF_EVENT_TYPE_");
    }

    #[test]
    fn output_schema_is_open() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let comments = Comments::from_pool(&pool);
        let desc = pool.get_message_by_name("baton.v1.Session").unwrap();
        let s = Value::Object(SchemaBuilder::new(&comments, Direction::Output).message(&desc));
        assert!(s.get("required").is_none());
        assert_eq!(s["properties"]["status"]["type"], json!(["string", "integer"]));
        assert_eq!(s["properties"]["last_seq"]["type"], json!(["string", "integer"]));
        assert_eq!(s["properties"]["created_at"]["format"], "date-time");
    }
}
