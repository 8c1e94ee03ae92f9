//! Responses a server assembles from messages it already holds encoded.
//!
//! A context window is mostly entries the server's cache has kept since they were appended.
//! Decoding them into [`v1::Entry`](crate::v1::Entry) values only to encode them again for
//! every read costs more than the rest of the call, so the server's `GetContextWindow` answers
//! with [`ContextWindowResponse`], which writes each entry's `baton.v1.Entry` encoding as it
//! is. On the wire it is exactly a `baton.v1.GetContextWindowResponse`: clients decode it with
//! the generated type.
//!
//! `StreamEntries` likewise sends every entry as [`WireEntry`], its encoding made once, and
//! `ListEntries` answers with [`EntryPage`], whose entries the server encodes straight from the
//! records it read.
//!
//! Only the server sees these types: [`server`] is the generated `ContextService` server with
//! these types in place of the generated ones; every other type is [`v1`](crate::v1)'s.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// Reads one element of a repeated message field as its held encoding.
fn push_held(
    wire_type: WireType,
    to: &mut Vec<Bytes>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let mut held = Bytes::new();
    encoding::bytes::merge(wire_type, &mut held, buf, ctx)?;
    to.push(held);
    Ok(())
}

/// A `baton.v1.GetContextWindowResponse` whose summary and entries are held as their
/// `baton.v1.Entry` encodings.
#[derive(Clone, Default, PartialEq)]
pub struct ContextWindowResponse {
    /// The encoded summary entry, if any.
    pub summary: Option<Bytes>,
    /// The encoded entries, in sequence order.
    pub entries: Vec<Bytes>,
    pub total_tokens: u32,
    pub last_seq: u64,
    pub truncated: bool,
}

const SUMMARY: u32 = 1;
const ENTRIES: u32 = 2;
const TOTAL_TOKENS: u32 = 3;
const LAST_SEQ: u32 = 4;
const TRUNCATED: u32 = 5;

impl std::fmt::Debug for ContextWindowResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextWindowResponse")
            .field("summary_bytes", &self.summary.as_ref().map(Bytes::len))
            .field("entries", &self.entries.len())
            .field("total_tokens", &self.total_tokens)
            .field("last_seq", &self.last_seq)
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl Message for ContextWindowResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // A message field is written like a bytes field: key, length, the message's encoding.
        if let Some(summary) = &self.summary {
            encoding::bytes::encode(SUMMARY, summary, buf);
        }
        for entry in &self.entries {
            encoding::bytes::encode(ENTRIES, entry, buf);
        }
        if self.total_tokens != 0 {
            encoding::uint32::encode(TOTAL_TOKENS, &self.total_tokens, buf);
        }
        if self.last_seq != 0 {
            encoding::uint64::encode(LAST_SEQ, &self.last_seq, buf);
        }
        if self.truncated {
            encoding::bool::encode(TRUNCATED, &self.truncated, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            SUMMARY => {
                let mut more = Bytes::new();
                encoding::bytes::merge(wire_type, &mut more, buf, ctx)?;
                // A message field seen twice merges; concatenated encodings decode as that merge.
                self.summary = Some(match self.summary.take() {
                    Some(first) => [first, more].concat().into(),
                    None => more,
                });
                Ok(())
            }
            ENTRIES => push_held(wire_type, &mut self.entries, buf, ctx),
            TOTAL_TOKENS => encoding::uint32::merge(wire_type, &mut self.total_tokens, buf, ctx),
            LAST_SEQ => encoding::uint64::merge(wire_type, &mut self.last_seq, buf, ctx),
            TRUNCATED => encoding::bool::merge(wire_type, &mut self.truncated, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.summary.as_ref().map_or(0, |s| encoding::bytes::encoded_len(SUMMARY, s))
            + encoding::bytes::encoded_len_repeated(ENTRIES, &self.entries)
            + if self.total_tokens != 0 { encoding::uint32::encoded_len(TOTAL_TOKENS, &self.total_tokens) } else { 0 }
            + if self.last_seq != 0 { encoding::uint64::encoded_len(LAST_SEQ, &self.last_seq) } else { 0 }
            + if self.truncated { encoding::bool::encoded_len(TRUNCATED, &self.truncated) } else { 0 }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A `baton.v1.Entry` held as its encoding: the server's `StreamEntries` sends each entry as
/// the bytes it was encoded to once, without a [`v1::Entry`](crate::v1::Entry) on the way.
#[derive(Clone, Default, PartialEq)]
pub struct WireEntry(pub Bytes);

impl std::fmt::Debug for WireEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WireEntry").field(&self.0.len()).finish()
    }
}

impl Message for WireEntry {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// Decoding (not what the server does with it): each field is read as an entry's and
    /// appended re-encoded; concatenated encodings decode as their merge.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut field = crate::v1::Entry::default();
        field.merge_field(tag, wire_type, buf, ctx)?;
        self.0 = [self.0.as_ref(), &field.encode_to_vec()].concat().into();
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// A `baton.v1.ListEntriesResponse` whose entries are held as their `baton.v1.Entry`
/// encodings, written straight from the stored records by the server (no `v1::Entry`, no
/// `google.protobuf.Struct` per entry).
#[derive(Clone, Default, PartialEq)]
pub struct EntryPage {
    /// The encoded entries, in sequence order.
    pub entries: Vec<Bytes>,
    pub next_page_token: String,
}

const PAGE_ENTRIES: u32 = 1;
const PAGE_TOKEN: u32 = 2;

impl std::fmt::Debug for EntryPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryPage")
            .field("entries", &self.entries.len())
            .field("next_page_token", &self.next_page_token)
            .finish()
    }
}

impl Message for EntryPage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for entry in &self.entries {
            encoding::bytes::encode(PAGE_ENTRIES, entry, buf);
        }
        if !self.next_page_token.is_empty() {
            encoding::string::encode(PAGE_TOKEN, &self.next_page_token, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            PAGE_ENTRIES => push_held(wire_type, &mut self.entries, buf, ctx),
            PAGE_TOKEN => encoding::string::merge(wire_type, &mut self.next_page_token, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::bytes::encoded_len_repeated(PAGE_ENTRIES, &self.entries)
            + if self.next_page_token.is_empty() {
                0
            } else {
                encoding::string::encoded_len(PAGE_TOKEN, &self.next_page_token)
            }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The generated `baton.v1.ContextService` server, answering `GetContextWindow` with
/// [`ContextWindowResponse`], `ListEntries` with [`EntryPage`] and streaming `StreamEntries` as [`WireEntry`]s.
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/encoded/baton.v1.rs"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    fn entry(seq: u64, text: &str) -> v1::Entry {
        v1::Entry {
            session_key: "s".into(),
            seq,
            author: "a".into(),
            content: Some(v1::entry::Content::Text(text.into())),
            token_count: 3,
            ..Default::default()
        }
    }

    /// The assembled response is byte for byte what the generated type encodes, and decodes
    /// back into both.
    #[test]
    fn encodes_as_the_generated_response() {
        let generated = v1::GetContextWindowResponse {
            summary: Some(entry(2, "so far")),
            entries: vec![entry(3, "three"), entry(4, "four"), entry(300, "")],
            total_tokens: 12,
            last_seq: 300,
            truncated: true,
        };
        let assembled = ContextWindowResponse {
            summary: generated.summary.as_ref().map(|e| e.encode_to_vec().into()),
            entries: generated.entries.iter().map(|e| e.encode_to_vec().into()).collect(),
            total_tokens: 12,
            last_seq: 300,
            truncated: true,
        };
        let bytes = assembled.encode_to_vec();
        assert_eq!(bytes, generated.encode_to_vec());
        assert_eq!(assembled.encoded_len(), bytes.len());
        assert_eq!(v1::GetContextWindowResponse::decode(&bytes[..]).unwrap(), generated);
        assert_eq!(ContextWindowResponse::decode(&bytes[..]).unwrap(), assembled);

        let empty = ContextWindowResponse::default();
        assert!(empty.encode_to_vec().is_empty());
        assert_eq!(v1::GetContextWindowResponse::decode(&[][..]).unwrap(), v1::GetContextWindowResponse::default());
    }

    /// A page assembled from encoded entries is byte for byte the generated response.
    #[test]
    fn an_entry_page_encodes_as_the_generated_response() {
        for token in ["", "next:4"] {
            let generated = v1::ListEntriesResponse {
                entries: vec![entry(3, "three"), entry(4, "")],
                next_page_token: token.into(),
            };
            let assembled = EntryPage {
                entries: generated.entries.iter().map(|e| e.encode_to_vec().into()).collect(),
                next_page_token: token.into(),
            };
            let bytes = assembled.encode_to_vec();
            assert_eq!(bytes, generated.encode_to_vec());
            assert_eq!(assembled.encoded_len(), bytes.len());
            assert_eq!(v1::ListEntriesResponse::decode(&bytes[..]).unwrap(), generated);
            assert_eq!(EntryPage::decode(&bytes[..]).unwrap(), assembled);
        }
        assert!(EntryPage::default().encode_to_vec().is_empty());
    }

    /// A held entry writes its bytes as they are; decoded, it holds an encoding of the same
    /// entry.
    #[test]
    fn a_wire_entry_is_its_encoding() {
        let mut e = entry(9, "nine");
        e.created_at = Some(prost_types::Timestamp { seconds: 5, nanos: 6 });
        let bytes: Bytes = e.encode_to_vec().into();
        let held = WireEntry(bytes.clone());
        assert_eq!(held.encode_to_vec(), bytes);
        assert_eq!(held.encoded_len(), bytes.len());
        let decoded = WireEntry::decode(bytes.clone()).unwrap();
        assert_eq!(v1::Entry::decode(decoded.0).unwrap(), e);
        assert_eq!(WireEntry::decode(&[][..]).unwrap(), WireEntry::default());
    }

    /// A summary field seen twice decodes as the merge of both, as the generated type does.
    #[test]
    fn a_repeated_summary_merges() {
        let mut bytes =
            v1::GetContextWindowResponse { summary: Some(entry(2, "x")), ..Default::default() }.encode_to_vec();
        bytes.extend(
            v1::GetContextWindowResponse {
                summary: Some(v1::Entry { author: "b".into(), ..Default::default() }),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let merged = ContextWindowResponse::decode(&bytes[..]).unwrap();
        let summary = v1::Entry::decode(merged.summary.unwrap()).unwrap();
        assert_eq!(Some(summary), v1::GetContextWindowResponse::decode(&bytes[..]).unwrap().summary);
    }
}
