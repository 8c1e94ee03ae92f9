//! The `baton.v1` API as Rust types: prost messages, tonic clients and servers, and the
//! encoded `FileDescriptorSet` (with source comments and custom options) that feeds server
//! reflection and the MCP gateway's tool schemas.

pub mod codec;
pub mod encoded;
pub mod position;

/// `baton.v1`: sessions, context entries and handoffs.
pub mod v1 {
    tonic::include_proto!("baton.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `proto/baton/v1`, including its imports
/// and source info (comments).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/baton_descriptor.bin"));

#[cfg(feature = "trace")]
pub mod trace;

/// The canonical name of a gRPC status code, as in the gRPC spec and `google.rpc.Code`
/// (`"NOT_FOUND"`, `"INVALID_ARGUMENT"`, ...): what the gateway and the Rust client report.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
