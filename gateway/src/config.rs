//! `baton-mcp`'s configuration: flags, each with an environment variable and a default. The
//! README's "MCP gateway" section lists the same keys.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::grpc::CallContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// MCP over standard input and output (one client, the parent process).
    Stdio,
    /// MCP Streamable HTTP at /mcp (many clients), with /health.
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Parser)]
#[command(
    name = "baton-mcp",
    version,
    about = "Baton's MCP gateway: MCP (stdio or Streamable HTTP) to batond's gRPC API"
)]
pub struct Config {
    /// batond's gRPC endpoint.
    #[arg(long, env = "BATON_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// MCP transport.
    #[arg(long, env = "BATON_MCP_TRANSPORT", value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,
    /// Listen address of the HTTP transport (MCP at /mcp, liveness at /health).
    #[arg(long, env = "BATON_MCP_HTTP_ADDR", default_value = "0.0.0.0:3000")]
    pub http_addr: SocketAddr,
    /// Host names (or host:port) the HTTP transport answers to, comma-separated; `*` for any.
    /// Guards against DNS rebinding; add the names clients use to reach a shared gateway.
    #[arg(long, env = "BATON_MCP_ALLOWED_HOSTS", value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub allowed_hosts: Vec<String>,
    /// Bearer token sent to batond as `authorization` on stdio (HTTP forwards the caller's own).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tenant sent as `x-baton-tenant` (an HTTP caller's own header wins). Unset: the
    /// server's default tenant.
    #[arg(long, env = "BATON_TENANT")]
    pub tenant: Option<String>,
    /// Deadline of every gRPC call, in milliseconds (stream tools collect until it too).
    #[arg(long, env = "BATON_CALL_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub call_timeout_ms: u64,
    /// How long connecting to batond may take, in milliseconds.
    #[arg(long, env = "BATON_CONNECT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,
    /// Log format on stderr (stdout carries the stdio protocol).
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("transport", &self.transport)
            .field("http_addr", &self.http_addr)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tenant", &self.tenant)
            .field("call_timeout_ms", &self.call_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Config {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Credentials and tenant of calls that bring none of their own.
    pub fn default_call_context(&self) -> CallContext {
        let authorization = self.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(|t| {
            if t.len() > 7 && t[..7].eq_ignore_ascii_case("bearer ") { t.to_owned() } else { format!("Bearer {t}") }
        });
        CallContext { authorization, trace: Default::default(), tenant: self.tenant.clone().filter(|t| !t.is_empty()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = Config::try_parse_from(["baton-mcp"]).unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:50051");
        assert_eq!(config.transport, Transport::Stdio);
        assert_eq!(config.http_addr, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(config.call_timeout(), Duration::from_secs(10));
        assert_eq!(config.default_call_context(), CallContext::default());
    }

    #[test]
    fn token_becomes_a_bearer_header_and_is_not_printed() {
        let config = Config::try_parse_from(["baton-mcp", "--token", "s3cret", "--tenant", "acme"]).unwrap();
        let ctx = config.default_call_context();
        assert_eq!(ctx.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(ctx.tenant.as_deref(), Some("acme"));
        assert!(!format!("{config:?}").contains("s3cret"));
        let config = Config::try_parse_from(["baton-mcp", "--token", "Bearer abc"]).unwrap();
        assert_eq!(config.default_call_context().authorization.as_deref(), Some("Bearer abc"));
    }
}
