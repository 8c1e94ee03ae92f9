//! [`Builder`]: where the client connects and what it sends with every call.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::trace::Propagate;
use baton_proto::v1::context_service_client::ContextServiceClient;
use baton_proto::v1::handoff_service_client::HandoffServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::{Client, Error, Headers, RetryPolicy};

/// The deadline of a call when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long establishing a connection may take when none is configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures and connects a [`Client`]; made by [`Client::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), baton_client::Error> {
/// use std::time::Duration;
///
/// let client = baton_client::Client::builder("baton.internal:50051")
///     .tenant("acme")
///     .api_key("bk_live_...")
///     .timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until connect() is called"]
pub struct Builder {
    target: String,
    tenant: Option<String>,
    api_key: Option<String>,
    tls: bool,
    ca_certificate: Option<Vec<u8>>,
    tls_domain: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl Builder {
    pub(crate) fn new(target: impl Into<String>) -> Self {
        Builder {
            target: target.into(),
            tenant: None,
            api_key: None,
            tls: false,
            ca_certificate: None,
            tls_domain: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// The tenant every call acts in, sent as `x-baton-tenant` (the server's default tenant
    /// when unset).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The API key, sent as `authorization: Bearer <key>`.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Connect over TLS, trusting the system's root certificates (an `https://` target turns it
    /// on too).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// Connect over TLS, trusting this PEM-encoded CA certificate (in addition to the system's
    /// roots).
    #[cfg(feature = "tls")]
    pub fn ca_certificate(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls = true;
        self.ca_certificate = Some(pem.as_ref().to_vec());
        self
    }

    /// The name the server's certificate must carry, when it differs from the target's host.
    #[cfg(feature = "tls")]
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.tls = true;
        self.tls_domain = Some(domain.into());
        self
    }

    /// The deadline of each call, retries included (default 10 s). It is sent to the server as
    /// `grpc-timeout` and enforced by the client. Streams use it only to open.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long establishing a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How failed calls are retried (default [`RetryPolicy::default`]; [`RetryPolicy::none`]
    /// turns retries off).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Connects now: fails when the server cannot be reached.
    pub async fn connect(self) -> Result<Client, Error> {
        let (endpoint, headers) = (self.endpoint()?, self.headers()?);
        let channel = endpoint.connect().await?;
        Ok(self.client(channel, headers))
    }

    /// Returns at once and connects on the first call (and again whenever the connection is
    /// lost, as [`connect`](Builder::connect)ed clients do too).
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let (endpoint, headers) = (self.endpoint()?, self.headers()?);
        Ok(self.client(endpoint.connect_lazy(), headers))
    }

    fn uri(&self) -> Result<(String, bool), Error> {
        let target = self.target.trim();
        if target.is_empty() {
            return Err(Error::Config("the target is empty; give host:port".into()));
        }
        Ok(if let Some(rest) = target.strip_prefix("https://") {
            (format!("https://{rest}"), true)
        } else if let Some(rest) = target.strip_prefix("http://") {
            (format!("{}://{rest}", if self.tls { "https" } else { "http" }), self.tls)
        } else if target.contains("://") {
            return Err(Error::Config(format!("unsupported scheme in target {target:?}; use host:port")));
        } else {
            (format!("{}://{target}", if self.tls { "https" } else { "http" }), self.tls)
        })
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        let (uri, tls) = self.uri()?;
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| Error::Config(format!("invalid target {:?}: {e}", self.target)))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if tls { self.with_tls(endpoint) } else { Ok(endpoint) }
    }

    #[cfg(feature = "tls")]
    fn with_tls(&self, endpoint: Endpoint) -> Result<Endpoint, Error> {
        use tonic::transport::{Certificate, ClientTlsConfig};
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(pem) = &self.ca_certificate {
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some(domain) = &self.tls_domain {
            config = config.domain_name(domain.clone());
        }
        endpoint.tls_config(config).map_err(|e| Error::Config(format!("TLS: {e}")))
    }

    #[cfg(not(feature = "tls"))]
    fn with_tls(&self, _: Endpoint) -> Result<Endpoint, Error> {
        let _ = (&self.ca_certificate, &self.tls_domain);
        Err(Error::Config("https:// targets need baton-client's `tls` feature".into()))
    }

    fn headers(&self) -> Result<Headers, Error> {
        let header = |name: &str, value: String| {
            let invalid = || Error::Config(format!("the {name} is not valid header text (visible ASCII)"));
            if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(invalid());
            }
            MetadataValue::<Ascii>::try_from(value).map_err(|_| invalid())
        };
        Ok(Headers {
            tenant: self.tenant.clone().map(|t| header("tenant", t)).transpose()?,
            authorization: self.api_key.as_ref().map(|k| header("API key", format!("Bearer {k}"))).transpose()?,
            position: Default::default(),
        })
    }

    fn client(self, channel: Channel, headers: Headers) -> Client {
        Client {
            context: ContextServiceClient::with_interceptor(channel.clone(), Propagate)
                .max_decoding_message_size(usize::MAX),
            handoff: HandoffServiceClient::with_interceptor(channel, Propagate).max_decoding_message_size(usize::MAX),
            headers: Arc::new(headers),
            timeout: self.timeout,
            retry: Arc::new(self.retry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_an_optional_scheme() {
        let uri = |t: &str| Builder::new(t).uri().map(|(u, _)| u);
        assert_eq!(uri("127.0.0.1:50051").unwrap(), "http://127.0.0.1:50051");
        assert_eq!(uri("http://localhost:1").unwrap(), "http://localhost:1");
        assert_eq!(uri("https://baton.example:443").unwrap(), "https://baton.example:443");
        assert!(Builder::new("https://x:1").uri().unwrap().1);
        assert!(matches!(uri("unix:///tmp/s"), Err(Error::Config(_))));
        assert!(matches!(uri("  "), Err(Error::Config(_))));
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn https_without_the_tls_feature_is_a_config_error() {
        let e = Builder::new("https://baton.example:443").connect_lazy().unwrap_err();
        assert_eq!(e.code_name(), "INVALID_ARGUMENT");
        assert!(e.message().contains("tls"), "{e}");
    }

    #[test]
    fn rejects_header_values_that_are_not_ascii_text() {
        let e = Builder::new("127.0.0.1:1").tenant("caf\u{e9}").connect_lazy().unwrap_err();
        assert!(matches!(e, Error::Config(ref m) if m.contains("tenant")), "{e}");
        let e = Builder::new("127.0.0.1:1").api_key("a\nb").connect_lazy().unwrap_err();
        assert!(matches!(e, Error::Config(ref m) if m.contains("API key")), "{e}");
    }
}
