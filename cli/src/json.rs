//! `--json`: messages in the proto3 JSON mapping, through the API's own descriptors, so field
//! names, enum names and timestamps are what grpcurl and the other clients' JSON show.

use std::sync::OnceLock;

use baton_client::v1;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

/// A `baton.v1` message with its full protobuf name.
pub trait Proto: prost::Message {
    const NAME: &'static str;
}

macro_rules! proto_names {
    ($($ty:ty => $name:literal),+ $(,)?) => {
        $(impl Proto for $ty {
            const NAME: &'static str = $name;
        })+
    };
}

proto_names!(
    v1::Session => "baton.v1.Session",
    v1::Entry => "baton.v1.Entry",
    v1::SearchHit => "baton.v1.SearchHit",
    v1::Handoff => "baton.v1.Handoff",
    v1::HandoffEvent => "baton.v1.HandoffEvent",
);

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(baton_proto::FILE_DESCRIPTOR_SET).expect("baton-proto's descriptor set"))
}

/// The message as proto3 JSON, every field present (defaults too) so that scripts can rely on
/// the keys.
pub fn to_json<M: Proto>(message: &M) -> Value {
    let descriptor = pool().get_message_by_name(M::NAME).expect("a baton.v1 message the descriptor set holds");
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message re-decodes with its own descriptor");
    let options = SerializeOptions::new().skip_default_fields(false);
    dynamic.serialize_with_options(serde_json::value::Serializer, &options).expect("proto3 JSON of a decoded message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_the_canonical_mapping() {
        let entry = v1::Entry {
            session_key: "s1".into(),
            seq: 7,
            kind: v1::EntryKind::ToolCall.into(),
            content: Some(v1::entry::Content::Text("hi".into())),
            created_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            metadata: Some(prost_types::Struct {
                fields: [(
                    "n".to_owned(),
                    prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(2.0)) },
                )]
                .into(),
            }),
            ..Default::default()
        };
        let json = to_json(&entry);
        assert_eq!(json["sessionKey"], "s1");
        assert_eq!(json["seq"], "7");
        assert_eq!(json["kind"], "ENTRY_KIND_TOOL_CALL");
        assert_eq!(json["text"], "hi");
        assert_eq!(json["createdAt"], "2023-11-14T22:13:20Z");
        assert_eq!(json["metadata"], serde_json::json!({"n": 2.0}));
        assert_eq!(json["tokenCount"], 0, "defaults are present");
    }
}
