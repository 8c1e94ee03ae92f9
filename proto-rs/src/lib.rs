//! The `baton.v1` API as Rust types: prost messages, tonic clients and servers, and the
//! encoded `FileDescriptorSet` (with source comments and custom options) that feeds server
//! reflection and the MCP gateway's tool schemas.

/// `baton.v1`: sessions, context entries and handoffs.
pub mod v1 {
    tonic::include_proto!("baton.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `proto/baton/v1`, including its imports
/// and source info (comments).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/baton_descriptor.bin"));

#[cfg(feature = "trace")]
pub mod trace;
