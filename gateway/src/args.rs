//! Tool arguments (JSON) to request messages, checked against the request's descriptor before
//! any gRPC call: unknown fields, wrong JSON types, out-of-range numbers, unknown enum names,
//! two members of one oneof, and missing required fields are all reported with the field's
//! path (`entries[0].kind`).
//!
//! The accepted JSON is the proto3 JSON mapping (field names or their lowerCamelCase JSON
//! names, 64-bit integers as strings or numbers, enums by name or number, well-known types in
//! their special forms), plus one convenience: enum names without their type prefix and in any
//! case (`"message"` for `ENTRY_KIND_MESSAGE`).

use std::collections::{HashMap, HashSet};
use std::fmt;

use base64::Engine as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};
use serde_json::{Map, Value as Json};

use crate::descriptors::Comments;
use crate::schema::enum_prefix;

/// One bad argument: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// The arguments of a tool call do not fit its request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentError {
    pub violations: Vec<Violation>,
}

impl ArgumentError {
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { violations: vec![Violation::new(field, description)] }
    }
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid arguments:")?;
        for v in &self.violations {
            write!(f, "\n- `{}`: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for ArgumentError {}

/// Converts JSON arguments into request messages.
pub struct Converter<'a> {
    comments: &'a Comments,
}

impl<'a> Converter<'a> {
    pub fn new(comments: &'a Comments) -> Self {
        Self { comments }
    }

    /// Builds a `desc` message from `args`. Required fields whose paths are in `deferred` are
    /// not checked (the caller fills them in later).
    pub fn message(
        &self,
        desc: &MessageDescriptor,
        args: &Map<String, Json>,
        deferred: &[String],
    ) -> Result<DynamicMessage, ArgumentError> {
        let mut errors = Vec::new();
        let message = self.object(desc, args, "", deferred, &mut errors);
        if errors.is_empty() { Ok(message) } else { Err(ArgumentError { violations: errors }) }
    }

    fn object(
        &self,
        desc: &MessageDescriptor,
        obj: &Map<String, Json>,
        prefix: &str,
        deferred: &[String],
        errors: &mut Vec<Violation>,
    ) -> DynamicMessage {
        let mut message = DynamicMessage::new(desc.clone());
        let mut seen: HashMap<u32, &str> = HashMap::new();
        // Setting one member of a oneof clears the others, so clashes are caught on the way in.
        let mut oneof_members: HashMap<String, String> = HashMap::new();
        for (key, value) in obj {
            let Some(field) = desc.get_field_by_name(key).or_else(|| desc.get_field_by_json_name(key)) else {
                let known = desc.fields().map(|f| f.name().to_owned()).collect::<Vec<_>>().join(", ");
                errors.push(Violation::new(join(prefix, key), format!("unknown field; expected one of: {known}")));
                continue;
            };
            let path = join(prefix, field.name());
            if let Some(previous) = seen.insert(field.number(), key) {
                errors.push(Violation::new(&path, format!("given twice, as `{previous}` and as `{key}`")));
                continue;
            }
            if value.is_null() {
                continue;
            }
            if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic())
                && let Some(other) = oneof_members.insert(oneof.name().to_owned(), field.name().to_owned())
            {
                errors.push(Violation::new(
                    &path,
                    format!(
                        "`{other}` and `{}` are alternatives (oneof `{}`): set only one of them",
                        field.name(),
                        oneof.name()
                    ),
                ));
                continue;
            }
            if let Some(v) = self.field_value(&field, value, &path, deferred, errors) {
                message.set_field(&field, v);
            }
        }
        for field in desc.fields() {
            let path = join(prefix, field.name());
            if self.comments.is_required(&field)
                && !message.has_field(&field)
                && !deferred.contains(&path)
                && !errors.iter().any(|e| e.field == path)
            {
                errors.push(Violation::new(path, "required"));
            }
        }
        message
    }

    fn field_value(
        &self,
        field: &FieldDescriptor,
        value: &Json,
        path: &str,
        deferred: &[String],
        errors: &mut Vec<Violation>,
    ) -> Option<Value> {
        if field.is_map() {
            let Json::Object(obj) = value else {
                errors.push(Violation::new(path, format!("expected a JSON object, got {}", json_type(value))));
                return None;
            };
            let Kind::Message(entry) = field.kind() else { unreachable!("map fields have entry messages") };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            let mut map = HashMap::new();
            for (k, v) in obj {
                let item_path = format!("{path}[{k:?}]");
                let Some(key) = map_key(&key_kind, k) else {
                    errors.push(Violation::new(&item_path, format!("invalid map key {k:?}")));
                    continue;
                };
                if let Some(v) = self.singular(&value_kind, v, &item_path, deferred, errors) {
                    map.insert(key, v);
                }
            }
            return Some(Value::Map(map));
        }
        if field.is_list() {
            let Json::Array(items) = value else {
                errors.push(Violation::new(path, format!("expected an array, got {}", json_type(value))));
                return None;
            };
            let kind = field.kind();
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_null() {
                    errors.push(Violation::new(item_path, "null is not allowed in a list"));
                    continue;
                }
                if let Some(v) = self.singular(&kind, item, &item_path, deferred, errors) {
                    list.push(v);
                }
            }
            return Some(Value::List(list));
        }
        self.singular(&field.kind(), value, path, deferred, errors)
    }

    fn singular(
        &self,
        kind: &Kind,
        value: &Json,
        path: &str,
        deferred: &[String],
        errors: &mut Vec<Violation>,
    ) -> Option<Value> {
        let result = match kind {
            Kind::Double => float(value).map(Value::F64),
            Kind::Float => float(value).map(|f| Value::F32(f as f32)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                integer(value, i32::MIN as i128, i32::MAX as i128).map(|i| Value::I32(i as i32))
            }
            Kind::Uint32 | Kind::Fixed32 => integer(value, 0, u32::MAX as i128).map(|i| Value::U32(i as u32)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                integer(value, i64::MIN as i128, i64::MAX as i128).map(|i| Value::I64(i as i64))
            }
            Kind::Uint64 | Kind::Fixed64 => integer(value, 0, u64::MAX as i128).map(|i| Value::U64(i as u64)),
            Kind::Bool => match value {
                Json::Bool(b) => Ok(Value::Bool(*b)),
                other => Err(format!("expected true or false, got {}", json_type(other))),
            },
            Kind::String => match value {
                Json::String(s) => Ok(Value::String(s.clone())),
                other => Err(format!("expected a string, got {}", json_type(other))),
            },
            Kind::Bytes => match value {
                Json::String(s) => decode_base64(s).map(|b| Value::Bytes(b.into())),
                other => Err(format!("expected a base64 string, got {}", json_type(other))),
            },
            Kind::Enum(e) => enum_value(e, value).map(Value::EnumNumber),
            Kind::Message(m) if is_well_known(m.full_name()) => {
                DynamicMessage::deserialize_with_options(m.clone(), value.clone(), &DeserializeOptions::new())
                    .map(Value::Message)
                    .map_err(|e| format!("not a valid {}: {e}", m.full_name().trim_start_matches("google.protobuf.")))
            }
            Kind::Message(m) => match value {
                Json::Object(obj) => Ok(Value::Message(self.object(m, obj, path, deferred, errors))),
                other => Err(format!("expected a JSON object, got {}", json_type(other))),
            },
        };
        match result {
            Ok(v) => Some(v),
            Err(description) => {
                errors.push(Violation::new(path, description));
                None
            }
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

fn is_well_known(full_name: &str) -> bool {
    full_name.starts_with("google.protobuf.")
}

/// How to name a JSON value's type in an error message.
pub fn json_type(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn float(value: &Json) -> Result<f64, String> {
    match value {
        Json::Number(n) => n.as_f64().ok_or_else(|| "not a representable number".to_owned()),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.trim().parse::<f64>().map_err(|_| format!("expected a number, got the string {other:?}")),
        },
        other => Err(format!("expected a number, got {}", json_type(other))),
    }
}

fn integer(value: &Json, min: i128, max: i128) -> Result<i128, String> {
    let n: i128 = match value {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                i as i128
            } else if let Some(u) = n.as_u64() {
                u as i128
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(format!("expected an integer, got {n}"));
                }
                f as i128
            }
        }
        Json::String(s) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| format!("expected an integer (a number or a decimal string), got the string {s:?}"))?,
        other => return Err(format!("expected an integer, got {}", json_type(other))),
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range ({min} to {max})"));
    }
    Ok(n)
}

fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
        .ok_or_else(|| "not valid base64".to_owned())
}

/// Resolves an enum argument: its full name, the name without the enum's prefix, either in
/// any case, or its number.
pub fn enum_value(e: &EnumDescriptor, value: &Json) -> Result<i32, String> {
    let prefix = enum_prefix(e);
    let expected = || {
        e.values()
            .filter(|v| !(v.number() == 0 && v.name().ends_with("_UNSPECIFIED")))
            .map(|v| v.name().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match value {
        Json::String(s) => {
            let upper = s.trim().to_ascii_uppercase();
            e.values()
                .find(|v| {
                    v.name() == upper || (!prefix.is_empty() && v.name().strip_prefix(&prefix) == Some(upper.as_str()))
                })
                .map(|v| v.number())
                .ok_or_else(|| format!("unknown value {s:?}; expected one of: {}", expected()))
        }
        Json::Number(n) => {
            let number = n.as_i64().and_then(|i| i32::try_from(i).ok());
            match number.and_then(|i| e.get_value(i)) {
                Some(v) => Ok(v.number()),
                None => Err(format!("unknown value {n}; expected one of: {}", expected())),
            }
        }
        other => {
            Err(format!("expected the name of a value, got {}; expected one of: {}", json_type(other), expected()))
        }
    }
}

fn map_key(kind: &Kind, key: &str) -> Option<MapKey> {
    Some(match kind {
        Kind::String => MapKey::String(key.to_owned()),
        Kind::Bool => MapKey::Bool(key.parse().ok()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(key.parse().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(key.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(key.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(key.parse().ok()?),
        _ => return None,
    })
}

/// The names (and JSON names) of `desc`'s fields, to tell gateway-only arguments from fields.
pub fn field_names(desc: &MessageDescriptor) -> HashSet<String> {
    desc.fields().flat_map(|f| [f.name().to_owned(), f.json_name().to_owned()]).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::descriptors::decode_pool;

    fn convert(message: &str, args: Json) -> Result<DynamicMessage, ArgumentError> {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let comments = Comments::from_pool(&pool);
        let desc = pool.get_message_by_name(message).unwrap();
        let Json::Object(args) = args else { panic!("arguments are an object") };
        Converter::new(&comments).message(&desc, &args, &[])
    }

    /// The fields named by an error, sorted (arguments are visited in map order).
    fn fields(e: ArgumentError) -> Vec<String> {
        let mut fields: Vec<String> = e.violations.into_iter().map(|v| v.field).collect();
        fields.sort();
        fields
    }

    #[test]
    fn accepts_proto3_json() {
        let m = convert(
            "baton.v1.AppendEntriesRequest",
            json!({
                "sessionKey": "s1",
                "entries": [
                    {"kind": "ENTRY_KIND_MESSAGE", "author": "a", "text": "hi", "metadata": {"x": [1, "two"]}},
                    {"kind": "tool_call", "author": "a", "data": "aGVsbG8=", "media_type": "application/octet-stream"},
                    {"kind": 5, "author": "a", "text": "sys"}
                ],
                "expected_last_seq": "7"
            }),
        )
        .unwrap();
        let request: baton_proto::v1::AppendEntriesRequest = m.transcode_to().unwrap();
        assert_eq!(request.session_key, "s1");
        assert_eq!(request.expected_last_seq, Some(7));
        assert_eq!(request.entries.len(), 3);
        assert_eq!(request.entries[1].kind, baton_proto::v1::EntryKind::ToolCall as i32);
        assert_eq!(request.entries[2].kind, baton_proto::v1::EntryKind::System as i32);
        assert!(matches!(
            request.entries[1].content,
            Some(baton_proto::v1::new_entry::Content::Data(ref d)) if d == b"hello"
        ));
        assert!(request.entries[0].metadata.as_ref().unwrap().fields.contains_key("x"));
    }

    #[test]
    fn numbers_are_accepted_for_64_bit_integers_and_durations_parse() {
        let m = convert(
            "baton.v1.AppendEntriesRequest",
            json!({"session_key": "s", "entries": [], "expected_last_seq": 3}),
        )
        .unwrap();
        let request: baton_proto::v1::AppendEntriesRequest = m.transcode_to().unwrap();
        assert_eq!(request.expected_last_seq, Some(3));
        let m = convert("baton.v1.CreateSessionRequest", json!({"agent": "a", "ttl": "90s"})).unwrap();
        let request: baton_proto::v1::CreateSessionRequest = m.transcode_to().unwrap();
        assert_eq!(request.ttl.unwrap().seconds, 90);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = convert("baton.v1.GetSessionRequest", json!({"session_key": "s", "sesion": 1})).unwrap_err();
        assert_eq!(fields(e.clone()), ["sesion"]);
        assert!(e.violations[0].description.contains("session_key"));
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        let e = convert(
            "baton.v1.AppendEntriesRequest",
            json!({"session_key": 5, "entries": [{"kind": "MESSAGE", "author": "a", "text": "x"}, {"kind": "nope", "author": "a", "text": 3}]}),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["entries[1].kind", "entries[1].text", "session_key"]);
    }

    #[test]
    fn missing_required_fields() {
        let e = convert("baton.v1.CreateSessionRequest", json!({"session_key": "s"})).unwrap_err();
        assert_eq!(e.violations, vec![Violation::new("agent", "required")]);
        let e = convert("baton.v1.AppendEntriesRequest", json!({"session_key": "s", "entries": [{"text": "x"}]}))
            .unwrap_err();
        assert_eq!(fields(e), ["entries[0].author", "entries[0].kind"]);
    }

    #[test]
    fn oneof_members_are_exclusive() {
        let e = convert(
            "baton.v1.AppendEntriesRequest",
            json!({"session_key": "s", "entries": [{"kind": "MESSAGE", "author": "a", "text": "x", "data": "eA=="}]}),
        )
        .unwrap_err();
        assert_eq!(e.violations.len(), 1);
        assert!(["entries[0].data", "entries[0].text"].contains(&e.violations[0].field.as_str()));
        let description = &e.violations[0].description;
        assert!(
            description.contains("`data`") && description.contains("`text`") && description.contains("oneof `content`")
        );
    }

    #[test]
    fn out_of_range_and_duplicates() {
        let e = convert("baton.v1.ListSessionsRequest", json!({"page_size": -1})).unwrap_err();
        assert_eq!(fields(e), ["page_size"]);
        let e = convert("baton.v1.GetSessionRequest", json!({"session_key": "a", "sessionKey": "b"})).unwrap_err();
        assert_eq!(fields(e), ["session_key"]);
    }

    #[test]
    fn well_known_type_errors_name_the_field() {
        let e = convert("baton.v1.CreateSessionRequest", json!({"agent": "a", "ttl": "soon"})).unwrap_err();
        assert_eq!(fields(e), ["ttl"]);
        let e = convert("baton.v1.CreateSessionRequest", json!({"agent": "a", "metadata": "x"})).unwrap_err();
        assert_eq!(fields(e), ["metadata"]);
    }

    #[test]
    fn deferred_required_fields_are_not_reported() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let comments = Comments::from_pool(&pool);
        let desc = pool.get_message_by_name("baton.v1.RequestHandoffRequest").unwrap();
        let Json::Object(args) = json!({"session_key": "s", "to_agent": "b", "type": "full_handoff"}) else {
            unreachable!()
        };
        Converter::new(&comments).message(&desc, &args, &["from_agent".to_owned()]).unwrap();
    }
}
