//! `baton-mcp`'s configuration: flags, each with an environment variable and a default. The
//! README's "MCP gateway" section lists the same keys.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::embedded::EmbeddedConfig;
use crate::grpc::CallContext;

/// Where the HTTP transport listens by default: every interface in front of a remote batond
/// (which checks each caller's key), loopback only for the embedded service (which has no keys).
const HTTP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3000);
const EMBEDDED_HTTP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);

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
    /// batond's gRPC endpoint (not used with --embedded).
    #[arg(long, env = "BATON_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// Run Baton's service in this process on the embedded store instead of calling a batond.
    /// Processes started on the same data directory share it: the first serves it, the others
    /// call that one (and take over when it exits).
    #[arg(long, env = "BATON_EMBEDDED")]
    pub embedded: bool,
    /// Data directory of --embedded. Default: `baton` in the platform's user data directory
    /// (~/.local/share/baton, ~/Library/Application Support/baton, %LOCALAPPDATA%\baton).
    #[arg(long, env = "BATON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Loopback address of --embedded's gRPC service, for other agents and the CLI to share the
    /// same data; port 0 picks a free port.
    #[arg(long, env = "BATON_MCP_GRPC_ADDR", default_value = "127.0.0.1:0")]
    pub grpc_addr: SocketAddr,
    /// MCP transport.
    #[arg(long, env = "BATON_MCP_TRANSPORT", value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,
    /// Listen address of the HTTP transport (MCP at /mcp, liveness at /health). Default
    /// 0.0.0.0:3000, or 127.0.0.1:3000 with --embedded.
    #[arg(long, env = "BATON_MCP_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Host names (or host:port) the HTTP transport answers to, comma-separated; `*` for any.
    /// Guards against DNS rebinding; add the names clients use to reach a shared gateway.
    #[arg(long, env = "BATON_MCP_ALLOWED_HOSTS", value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub allowed_hosts: Vec<String>,
    /// PEM CA certificate(s) that batond's TLS certificate must chain to (a private CA); unset:
    /// the system's trusted roots. TLS is on for `https://` endpoints.
    #[arg(long, env = "BATON_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain for batond's mTLS (with --tls-key).
    #[arg(long, env = "BATON_MCP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BATON_MCP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name batond's certificate is checked against; default: the endpoint's host.
    #[arg(long, env = "BATON_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Baton API key sent to batond as `authorization: Bearer` on stdio. Over HTTP each MCP
    /// client presents its own key as its bearer token instead.
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
    /// How long a session's owner (the default author of `update_context` and `from_agent` of
    /// `request_handoff` in the old argument shape) is reused, in milliseconds; 0: looked up on
    /// every call.
    #[arg(long, env = "BATON_MCP_OWNER_CACHE_MS", default_value_t = 1_000)]
    pub owner_cache_ms: u64,
    /// Log format on stderr (stdout carries the stdio protocol).
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("embedded", &self.embedded)
            .field("data_dir", &self.data_dir)
            .field("grpc_addr", &self.grpc_addr)
            .field("transport", &self.transport)
            .field("http_addr", &self.http_addr)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tenant", &self.tenant)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_server_name", &self.tls_server_name)
            .field("call_timeout_ms", &self.call_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("owner_cache_ms", &self.owner_cache_ms)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Config {
    /// The HTTP transport's listen address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr.unwrap_or(if self.embedded { EMBEDDED_HTTP_ADDR } else { HTTP_ADDR })
    }

    /// The embedded service's settings, with --embedded; an error names a bad one.
    pub fn embedded(&self) -> Result<Option<EmbeddedConfig>, String> {
        if !self.embedded {
            return Ok(None);
        }
        if !self.grpc_addr.ip().is_loopback() {
            return Err(format!(
                "--grpc-addr {} is not a loopback address: the embedded service checks no API keys, so it is \
                 served on this machine only (run batond to serve a network)",
                self.grpc_addr
            ));
        }
        let data_dir = match &self.data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir()
                .ok_or("no home directory to put the embedded store in: pass --data-dir (or BATON_DATA_DIR)")?,
        };
        Ok(Some(EmbeddedConfig { data_dir, grpc_addr: self.grpc_addr }))
    }

    /// TLS settings for the remote endpoint: `None` for `http://`, and an error for TLS options
    /// on an `http://` endpoint (they would silently do nothing) or an unreadable file.
    pub fn tls(&self) -> Result<Option<ClientTlsConfig>, String> {
        let https = self.endpoint.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let options = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_server_name.is_some();
        if !https {
            return match options {
                true => Err(format!("--tls-* options need an https:// endpoint, not {}", self.endpoint)),
                false => Ok(None),
            };
        }
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &self.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "CA certificate file")?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert, "client certificate")?, read(key, "client key")?));
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(Some(tls))
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    pub fn owner_cache(&self) -> Duration {
        Duration::from_millis(self.owner_cache_ms)
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

/// `baton` in the platform's per-user, per-machine data directory.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.data_local_dir().join("baton"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = Config::try_parse_from(["baton-mcp"]).unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:50051");
        assert_eq!(config.transport, Transport::Stdio);
        assert_eq!(config.http_addr(), "0.0.0.0:3000".parse().unwrap());
        assert_eq!(config.embedded(), Ok(None));
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

    #[test]
    fn embedded_serves_loopback_only() {
        let config = Config::try_parse_from(["baton-mcp", "--embedded", "--data-dir", "/tmp/b"]).unwrap();
        let embedded = config.embedded().unwrap().unwrap();
        assert_eq!(embedded.data_dir, PathBuf::from("/tmp/b"));
        assert_eq!(embedded.grpc_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.http_addr(), "127.0.0.1:3000".parse().unwrap());
        let config = Config::try_parse_from(["baton-mcp", "--embedded", "--grpc-addr", "0.0.0.0:50051"]).unwrap();
        assert!(config.embedded().unwrap_err().contains("not a loopback address"));
        let config = Config::try_parse_from(["baton-mcp", "--embedded", "--grpc-addr", "[::1]:50051"]).unwrap();
        assert_eq!(config.embedded().unwrap().unwrap().grpc_addr, "[::1]:50051".parse().unwrap());
    }

    #[test]
    fn tls_is_for_https_endpoints() {
        let plain = Config::try_parse_from(["baton-mcp", "--endpoint", "http://h:1"]).unwrap();
        assert!(plain.tls().unwrap().is_none());
        let system = Config::try_parse_from(["baton-mcp", "--endpoint", "HTTPS://h:1"]).unwrap();
        assert!(system.tls().unwrap().is_some());
        let stray = Config::try_parse_from(["baton-mcp", "--endpoint", "http://h:1", "--tls-ca", "ca.pem"]).unwrap();
        assert!(stray.tls().unwrap_err().contains("need an https:// endpoint"));
        let missing = Config::try_parse_from(["baton-mcp", "--endpoint", "https://h:1", "--tls-ca", "/no/ca.pem"]);
        assert!(missing.unwrap().tls().unwrap_err().contains("/no/ca.pem"));
        assert!(Config::try_parse_from(["baton-mcp", "--tls-cert", "c.pem"]).is_err(), "a certificate needs its key");
    }

    #[test]
    fn the_default_data_dir_is_the_users() {
        let dir = default_data_dir().expect("a home directory");
        assert!(dir.ends_with("baton"));
        assert!(dir.is_absolute());
    }
}
