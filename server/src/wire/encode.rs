//! An entry's `baton.v1.Entry` encoding, written straight from the domain record: no
//! `pb::Entry` and no `google.protobuf.Struct` built on the way (for metadata that was most of
//! the cost: a map of owned keys and values, built, encoded and freed for every entry sent).
//! The bytes are those prost writes for `pb::Entry::from(entry)` (fields in tag order, proto3
//! defaults left out, a Struct's keys in the map's order, which is sorted): the tests hold the
//! two to the same bytes.

use bytes::{BufMut, Bytes};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use serde_json::{Map, Value};

use super::{entry_kind_pb, timestamp};
use crate::domain::{self as d, Micros};

/// `baton.v1.Entry` field numbers.
mod tag {
    pub const SESSION_KEY: u32 = 1;
    pub const SEQ: u32 = 2;
    pub const KIND: u32 = 3;
    pub const ROLE: u32 = 4;
    pub const AUTHOR: u32 = 5;
    pub const TEXT: u32 = 6;
    pub const DATA: u32 = 7;
    pub const MEDIA_TYPE: u32 = 8;
    pub const METADATA: u32 = 9;
    pub const TOKEN_COUNT: u32 = 10;
    pub const IDEMPOTENCY_KEY: u32 = 11;
    pub const TRACE_ID: u32 = 12;
    pub const CREATED_AT: u32 = 13;
    pub const REDACTED: u32 = 14;
    pub const REDACTION: u32 = 15;
}

/// The entry's `baton.v1.Entry` encoding.
pub(crate) fn encode_entry(e: &d::Entry) -> Bytes {
    // The metadata's length is needed twice (the entry's length and the field's header):
    // walked once.
    let metadata = struct_len(&e.metadata);
    let len = entry_len(e, metadata);
    let mut buf = Vec::with_capacity(len);
    write_entry(e, metadata, &mut buf);
    debug_assert_eq!(buf.len(), len, "entry_len and write_entry disagree");
    buf.into()
}

/// What the cache reads of an entry it holds encoded: the fields that choose what a window
/// sends, never its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub seq: u64,
    pub kind: d::EntryKind,
    pub token_count: u32,
    pub redacted: bool,
}

/// The header of an entry's `baton.v1.Entry` encoding, read by walking its fields and skipping
/// every other one (content and metadata are passed over, not decoded). An encoding that is
/// not an entry's (truncated, no seq, an unknown kind) is an error: the cache treats it as a
/// miss.
pub(crate) fn entry_header(mut wire: &[u8]) -> Result<EntryHeader, String> {
    use prost::encoding::{DecodeContext, decode_key, decode_varint, skip_field};
    let (mut seq, mut kind, mut token_count, mut redacted) = (0, 0, 0, false);
    let buf = &mut wire;
    while !buf.is_empty() {
        let (field, wire_type) = decode_key(buf).map_err(|e| e.to_string())?;
        let varint = matches!(field, tag::SEQ | tag::KIND | tag::TOKEN_COUNT | tag::REDACTED);
        if varint && wire_type == WireType::Varint {
            let v = decode_varint(buf).map_err(|e| e.to_string())?;
            match field {
                tag::SEQ => seq = v,
                tag::KIND => kind = v as i32,
                tag::TOKEN_COUNT => token_count = v as u32,
                _ => redacted = v != 0,
            }
        } else {
            skip_field(wire_type, field, buf, DecodeContext::default()).map_err(|e| e.to_string())?;
        }
    }
    let kind = super::entry_kind(kind).ok_or_else(|| format!("entry kind {kind} is not one of Baton's"))?;
    if seq == 0 {
        return Err("entry without a seq".into());
    }
    Ok(EntryHeader { seq, kind, token_count, redacted })
}

fn kind(e: &d::Entry) -> u64 {
    i32::from(entry_kind_pb(e.kind)) as u64
}

fn entry_len(e: &d::Entry, metadata: usize) -> usize {
    let content = match &e.content {
        d::Content::Text(t) => field_len(tag::TEXT, t.len()),
        d::Content::Data(b) => field_len(tag::DATA, b.len()),
    };
    str_len(tag::SESSION_KEY, &e.session_key)
        + varint_len(tag::SEQ, e.seq)
        + varint_len(tag::KIND, kind(e))
        + str_len(tag::ROLE, &e.role)
        + str_len(tag::AUTHOR, &e.author)
        + content
        + str_len(tag::MEDIA_TYPE, &e.media_type)
        + field_len(tag::METADATA, metadata)
        + varint_len(tag::TOKEN_COUNT, u64::from(e.token_count))
        + str_len(tag::IDEMPOTENCY_KEY, &e.idempotency_key)
        + str_len(tag::TRACE_ID, &e.trace_id)
        + field_len(tag::CREATED_AT, timestamp_len(e.created_at))
        + e.redaction.as_ref().map_or(0, |r| varint_len(tag::REDACTED, 1) + field_len(tag::REDACTION, redaction_len(r)))
}

fn write_entry(e: &d::Entry, metadata: usize, buf: &mut Vec<u8>) {
    write_str(tag::SESSION_KEY, &e.session_key, buf);
    write_varint(tag::SEQ, e.seq, buf);
    write_varint(tag::KIND, kind(e), buf);
    write_str(tag::ROLE, &e.role, buf);
    write_str(tag::AUTHOR, &e.author, buf);
    // A oneof member is written even when empty.
    match &e.content {
        d::Content::Text(t) => write_bytes(tag::TEXT, t.as_bytes(), buf),
        d::Content::Data(b) => write_bytes(tag::DATA, b, buf),
    }
    write_str(tag::MEDIA_TYPE, &e.media_type, buf);
    write_header(tag::METADATA, metadata, buf);
    write_struct(&e.metadata, buf);
    write_varint(tag::TOKEN_COUNT, u64::from(e.token_count), buf);
    write_str(tag::IDEMPOTENCY_KEY, &e.idempotency_key, buf);
    write_str(tag::TRACE_ID, &e.trace_id, buf);
    write_header(tag::CREATED_AT, timestamp_len(e.created_at), buf);
    write_timestamp(e.created_at, buf);
    if let Some(r) = &e.redaction {
        write_varint(tag::REDACTED, 1, buf);
        write_header(tag::REDACTION, redaction_len(r), buf);
        write_str(1, &r.by, buf);
        write_header(2, timestamp_len(r.at), buf);
        write_timestamp(r.at, buf);
        write_str(3, &r.reason, buf);
    }
}

// ---- fields ----

/// A length-delimited field of `len` bytes, key and length included.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A proto3 string: absent when empty.
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(tag, s.len()) }
}

/// A proto3 varint scalar: absent when zero.
fn varint_len(tag: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(tag) + encoded_len_varint(v) }
}

fn write_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn write_bytes(tag: u32, b: &[u8], buf: &mut Vec<u8>) {
    write_header(tag, b.len(), buf);
    buf.put_slice(b);
}

fn write_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        write_bytes(tag, s.as_bytes(), buf);
    }
}

fn write_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

// ---- google.protobuf.Timestamp and baton.v1.Redaction ----

/// Seconds and nanos as their varints (int64 and int32 sign-extend to 64 bits).
fn timestamp_parts(m: Micros) -> (u64, u64) {
    let t = timestamp(m);
    (t.seconds as u64, i64::from(t.nanos) as u64)
}

fn timestamp_len(m: Micros) -> usize {
    let (seconds, nanos) = timestamp_parts(m);
    varint_len(1, seconds) + varint_len(2, nanos)
}

fn write_timestamp(m: Micros, buf: &mut Vec<u8>) {
    let (seconds, nanos) = timestamp_parts(m);
    write_varint(1, seconds, buf);
    write_varint(2, nanos, buf);
}

fn redaction_len(r: &d::Redaction) -> usize {
    str_len(1, &r.by) + field_len(2, timestamp_len(r.at)) + str_len(3, &r.reason)
}

// ---- google.protobuf.Struct, Value, ListValue ----
//
// Struct { map<string, Value> fields = 1 }: each pair is an entry message { key = 1, value = 2 }
// (an empty key left out). Value { oneof kind: null_value = 1, number_value = 2 (double),
// string_value = 3, bool_value = 4, struct_value = 5, list_value = 6 }: the member is written
// even when it holds its default. ListValue { repeated Value values = 1 }.

fn struct_len(m: &Map<String, Value>) -> usize {
    m.iter().map(|(k, v)| field_len(1, pair_len(k, v))).sum()
}

fn pair_len(k: &str, v: &Value) -> usize {
    str_len(1, k) + field_len(2, value_len(v))
}

fn list_len(a: &[Value]) -> usize {
    a.iter().map(|v| field_len(1, value_len(v))).sum()
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Null => key_len(1) + 1,
        Value::Number(_) => key_len(2) + 8,
        Value::String(s) => field_len(3, s.len()),
        Value::Bool(_) => key_len(4) + 1,
        Value::Object(o) => field_len(5, struct_len(o)),
        Value::Array(a) => field_len(6, list_len(a)),
    }
}

fn write_struct(m: &Map<String, Value>, buf: &mut Vec<u8>) {
    for (k, v) in m {
        write_header(1, pair_len(k, v), buf);
        write_str(1, k, buf);
        write_header(2, value_len(v), buf);
        write_value(v, buf);
    }
}

fn write_value(v: &Value, buf: &mut Vec<u8>) {
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, buf);
            encode_varint(0, buf);
        }
        Value::Number(n) => {
            encode_key(2, WireType::SixtyFourBit, buf);
            buf.put_f64_le(n.as_f64().unwrap_or_default());
        }
        Value::String(s) => write_bytes(3, s.as_bytes(), buf),
        Value::Bool(b) => {
            encode_key(4, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::Object(o) => {
            write_header(5, struct_len(o), buf);
            write_struct(o, buf);
        }
        Value::Array(a) => {
            write_header(6, list_len(a), buf);
            for item in a {
                write_header(1, value_len(item), buf);
                write_value(item, buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use baton_proto::v1 as pb;
    use prost::Message as _;
    use serde_json::json;

    use super::*;
    use crate::domain::{Content, EntryKind, Metadata, Redaction};

    fn entry() -> d::Entry {
        d::Entry {
            session_key: "s-1".into(),
            seq: 7,
            kind: EntryKind::Message,
            role: "user".into(),
            author: "planner".into(),
            content: Content::Text("hello".into()),
            media_type: "text/plain".into(),
            metadata: Metadata::new(),
            token_count: 3,
            idempotency_key: String::new(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            created_at: Micros(1_765_000_000_123_456),
            redaction: None,
        }
    }

    fn prost_bytes(e: &d::Entry) -> Vec<u8> {
        pb::Entry::from(e.clone()).encode_to_vec()
    }

    /// The header read back from an encoding is the entry's, whatever else it holds; what is
    /// not an entry's encoding is refused.
    #[test]
    fn the_header_is_read_from_the_encoding() {
        let mut e = entry();
        e.metadata.insert("nested".into(), json!({"a": [1, "two", {"b": null}]}));
        let header = |e: &d::Entry| entry_header(&encode_entry(e)).unwrap();
        assert_eq!(header(&e), EntryHeader { seq: 7, kind: EntryKind::Message, token_count: 3, redacted: false });
        e.seq = 300_000_000_000;
        e.kind = EntryKind::Summary;
        e.token_count = 0;
        e.content = Content::Data(vec![0xff; 70_000]);
        e.redaction = Some(Redaction { by: "admin".into(), at: Micros(5), reason: "pii".into() });
        assert_eq!(
            header(&e),
            EntryHeader { seq: 300_000_000_000, kind: EntryKind::Summary, token_count: 0, redacted: true }
        );

        let bytes = encode_entry(&e);
        assert!(entry_header(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(entry_header(&[]).is_err(), "no seq");
        let unknown_kind = pb::Entry { seq: 1, kind: 99, ..Default::default() }.encode_to_vec();
        assert!(entry_header(&unknown_kind).is_err());
    }

    #[test]
    fn writes_the_bytes_prost_writes() {
        let mut cases = vec![entry()];
        // Every default left out; empty text still present (a oneof member).
        cases.push(d::Entry {
            session_key: String::new(),
            seq: 0,
            kind: EntryKind::System,
            role: String::new(),
            author: String::new(),
            content: Content::Text(String::new()),
            media_type: String::new(),
            metadata: Metadata::new(),
            token_count: 0,
            idempotency_key: String::new(),
            trace_id: String::new(),
            created_at: Micros(0),
            redaction: None,
        });
        let mut data = entry();
        data.content = Content::Data(vec![0, 1, 2, 255]);
        data.kind = EntryKind::ToolResult;
        data.created_at = Micros(-1_500_001); // before 1970: negative seconds, positive nanos
        cases.push(data);
        let mut empty_data = entry();
        empty_data.content = Content::Data(Vec::new());
        cases.push(empty_data);
        let mut redacted = entry();
        redacted.content = Content::Text(String::new());
        redacted.redaction = Some(Redaction { by: "admin".into(), at: Micros(1_000_000), reason: String::new() });
        cases.push(redacted);
        let mut rich = entry();
        rich.idempotency_key = "k-1".into();
        rich.token_count = 300;
        rich.content = Content::Text("x".repeat(300));
        let Value::Object(metadata) = json!({
            "": "empty key",
            "null": null,
            "yes": true,
            "no": false,
            "zero": 0,
            "pi": 3.25,
            "big": 18_446_744_073_709_551_615u64,
            "neg": -42,
            "empty": "",
            "text": "ünïcødé",
            "list": [1, "two", null, [3, []], {"k": {}}],
            "nested": {"a": {"b": {"c": [true, {"d": "e"}]}}, "long": "y".repeat(200)},
            "empty_list": [],
            "empty_object": {}
        }) else {
            unreachable!()
        };
        rich.metadata = metadata;
        cases.push(rich);
        for e in &cases {
            assert_eq!(encode_entry(e).as_ref(), prost_bytes(e).as_slice(), "{e:?}");
        }
    }
}
