//! `baton-mcp`: Baton's MCP gateway. MCP clients (over stdio or Streamable HTTP) call tools and
//! read resources; the gateway turns them into gRPC calls on `batond`.
//!
//! How a tool call flows:
//!
//! ```text
//! transport (stdio | Streamable HTTP /mcp)          serve
//!   └─► BatonMcp (rmcp ServerHandler, one per MCP session)      handler
//!         ├─ tool span (caller's trace context)                 telemetry
//!         ├─ credentials, trace context, tenant → CallContext   grpc
//!         └─► Gateway::call_tool                                 calls
//!               ├─ old argument names → fields                  compat
//!               ├─ JSON → request message, checked per field    args
//!               ├─ gRPC with a dynamic codec and a deadline     grpc
//!               │    (client span; its context in the metadata)
//!               └─ response → proto3 JSON (+ text rendering)    render
//! ```
//!
//! - `descriptors`, `catalog`, `schema`: the tools come from the descriptor set
//!   (`baton_proto::FILE_DESCRIPTOR_SET`): each RPC with `(baton.v1.mcp_tool)` is a tool, its
//!   request message the input schema, its comments the descriptions.
//! - `resources`, `follow`: `baton://` resources, and live follows (StreamEntries with
//!   `follow`) behind resource subscriptions.
//! - `access`: who may use the HTTP transport (the caller's Baton key as its bearer token,
//!   401 when batond would refuse it).
//! - `errors`: gRPC statuses (with google.rpc details) and argument errors as tool errors.
//! - `telemetry`: the tool and gRPC client spans (continuing the caller's `traceparent`), and
//!   the metrics served at `/metrics`.
//! - `embedded`, `datadir`: `--embedded`, Baton's service in this process on the embedded
//!   store (served on loopback gRPC, called like a remote batond), and the lock that lets
//!   several processes share one data directory.
//! - `config`: flags and environment variables.

pub mod access;
pub mod args;
pub mod calls;
pub mod catalog;
pub mod compat;
pub mod config;
pub mod datadir;
pub mod descriptors;
pub mod embedded;
pub mod errors;
pub mod follow;
pub mod grpc;
pub mod handler;
pub mod render;
pub mod resources;
pub mod schema;
pub mod serve;
pub mod telemetry;

pub use config::Config;
pub use serve::{init_telemetry, run, shutdown_signal};

/// Errors that end the gateway.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
