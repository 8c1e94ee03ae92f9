//! Calls `batond` with dynamic messages: a tonic codec for `prost_reflect::DynamicMessage`, one
//! shared lazily-connecting channel, and per-call metadata (credentials, trace context, tenant)
//! and deadline. Every call is a client span and a sample of
//! `grpc_client_request_duration_seconds`.
//!
//! Read-your-writes across batond's read replicas: the backend keeps the highest log position
//! batond answered a call with (`baton-lsn`) and sends it with every call (`baton-min-lsn`), so
//! an agent's `get_context` after its `update_context` sees the update even when a replica
//! serves it. One position for the whole gateway: every MCP session reads at least what any
//! session of this gateway wrote (stronger than each its own, and as cheap).

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};
use tracing::Instrument as _;

use crate::embedded::Connector;
use crate::telemetry::{ClientCall, GatewayMetrics, TraceCarrier};

/// The server's tenant header.
pub const TENANT_HEADER: &str = "x-baton-tenant";

/// Encodes dynamic requests and decodes responses of one known message type.
#[derive(Debug, Clone)]
pub struct DynamicCodec {
    response: MessageDescriptor,
}

impl DynamicCodec {
    pub fn new(response: MessageDescriptor) -> Self {
        Self { response }
    }
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder { response: self.response.clone() }
    }
}

#[derive(Debug)]
pub struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

#[derive(Debug)]
pub struct DynamicDecoder {
    response: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.response.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the response: {e}")))
    }
}

/// Who is calling and in which trace: forwarded as gRPC metadata on every call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The full `authorization` value, e.g. `Bearer abc`.
    pub authorization: Option<String>,
    /// The caller's W3C trace context and baggage.
    pub trace: TraceCarrier,
    /// The tenant (`x-baton-tenant`); the server's default tenant when unset.
    pub tenant: Option<String>,
}

impl CallContext {
    fn apply(&self, metadata: &mut MetadataMap) -> Result<(), Status> {
        crate::telemetry::inject(&self.trace, metadata);
        let pairs = [("authorization", &self.authorization), (TENANT_HEADER, &self.tenant)];
        for (key, value) in pairs {
            if let Some(value) = value {
                let value: AsciiMetadataValue = value
                    .parse()
                    .map_err(|_| Status::invalid_argument(format!("the {key} value is not valid ASCII header text")))?;
                metadata.insert(key, value);
            }
        }
        Ok(())
    }
}

/// The gRPC side of the gateway: one channel shared by every MCP session.
#[derive(Debug, Clone)]
pub struct Backend {
    channel: Channel,
    call_timeout: Duration,
    /// batond's host and port, for the client spans.
    server: (String, Option<u16>),
    metrics: Arc<GatewayMetrics>,
    /// The highest `baton-lsn` batond answered with (0: none yet).
    position: Arc<baton_proto::position::Highest>,
}

impl Backend {
    /// A backend for `endpoint` (with TLS when `tls` is given) that connects on first use and reconnects after failures.
    pub fn connect_lazy(
        endpoint: &str,
        tls: Option<ClientTlsConfig>,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(endpoint.to_owned())?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let uri = endpoint.uri();
        let server = (uri.host().unwrap_or_default().to_owned(), uri.port_u16());
        let channel = settings(endpoint, connect_timeout).connect_lazy();
        Ok(Self { channel, call_timeout, server, metrics: GatewayMetrics::new(), position: Default::default() })
    }

    /// A backend whose connections `connector` makes (the embedded service's), connecting on
    /// first use and reconnecting after failures.
    pub fn with_connector(connector: Connector, connect_timeout: Duration, call_timeout: Duration) -> Self {
        // The connector ignores the URI; it names the service in spans and `:authority`.
        let endpoint = Endpoint::from_static("http://127.0.0.1");
        let channel = settings(endpoint, connect_timeout).connect_with_connector_lazy(connector);
        Self {
            channel,
            call_timeout,
            server: ("127.0.0.1".to_owned(), None),
            metrics: GatewayMetrics::new(),
            position: Default::default(),
        }
    }

    /// The gateway's metrics (its registry also holds the tool histogram).
    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }

    fn start(&self, method: &MethodDescriptor, ctx: &CallContext) -> ClientCall {
        ClientCall::start(method, &ctx.trace, (&self.server.0, self.server.1), &self.metrics)
    }

    /// The deadline of every unary call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// A unary call with the configured deadline.
    pub async fn unary(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        ctx: &CallContext,
    ) -> Result<DynamicMessage, Status> {
        let mut call = self.start(method, ctx);
        let result = self.bare_unary(method, request, ctx).instrument(call.span.clone()).await;
        call.finish(result.as_ref().err());
        result
    }

    /// A unary call with the configured deadline that is no client span and no metric sample:
    /// the gateway's own questions to batond (is this token valid?), not a tool's work.
    pub async fn bare_unary(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        ctx: &CallContext,
    ) -> Result<DynamicMessage, Status> {
        let deadline = self.call_timeout;
        let unary = async {
            let request = self.request(request, ctx, Some(deadline))?;
            let mut grpc = self.ready().await?;
            let response = grpc.unary(request, path(method)?, DynamicCodec::new(method.output())).await?;
            self.position.note(response.metadata());
            Ok(response.into_inner())
        };
        match tokio::time::timeout(deadline, unary).await {
            Ok(result) => result,
            Err(_) => Err(deadline_exceeded(deadline)),
        }
    }

    /// Opens a server stream. `deadline` bounds the whole stream (None: open until either side
    /// ends it, for live follows); opening it is bounded by the call timeout either way.
    pub async fn server_streaming(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        ctx: &CallContext,
        deadline: Option<Duration>,
    ) -> Result<CallStream, Status> {
        let mut call = self.start(method, ctx);
        let open = async {
            let request = self.request(request, ctx, deadline)?;
            let mut grpc = self.ready().await?;
            grpc.server_streaming(request, path(method)?, DynamicCodec::new(method.output()))
                .await
                .map(tonic::Response::into_inner)
        };
        let limit = deadline.map_or(self.call_timeout, |d| d.min(self.call_timeout));
        let opened = match tokio::time::timeout(limit, open.instrument(call.span.clone())).await {
            Ok(result) => result,
            Err(_) => Err(deadline_exceeded(limit)),
        };
        match opened {
            Ok(inner) => Ok(CallStream { inner, call }),
            Err(status) => {
                call.finish(Some(&status));
                Err(status)
            }
        }
    }

    fn request(
        &self,
        message: DynamicMessage,
        ctx: &CallContext,
        deadline: Option<Duration>,
    ) -> Result<tonic::Request<DynamicMessage>, Status> {
        let mut request = tonic::Request::new(message);
        ctx.apply(request.metadata_mut())?;
        self.position.attach(request.metadata_mut());
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        Ok(request)
    }

    /// The highest log position batond has answered with, as the header gives it.
    pub fn log_position(&self) -> Option<String> {
        self.position.get()
    }

    async fn ready(&self) -> Result<tonic::client::Grpc<Channel>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(format!("batond is not reachable: {e}")))?;
        Ok(grpc)
    }
}

/// An open server stream; its client span lasts until the stream ends or is dropped.
pub struct CallStream {
    inner: Streaming<DynamicMessage>,
    call: ClientCall,
}

impl CallStream {
    /// The next message; `None` at the end of the stream.
    pub async fn message(&mut self) -> Result<Option<DynamicMessage>, Status> {
        let next = self.inner.message().instrument(self.call.span.clone()).await;
        match &next {
            Ok(Some(_)) => {}
            Ok(None) => self.call.finish(None),
            Err(status) => self.call.finish(Some(status)),
        }
        next
    }

    /// Stops reading before the end, on purpose (not a failure).
    pub fn stop(mut self) {
        self.call.stop();
    }
}

/// The channel settings of every backend.
fn settings(endpoint: Endpoint, connect_timeout: Duration) -> Endpoint {
    endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
}

fn path(method: &MethodDescriptor) -> Result<PathAndQuery, Status> {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    PathAndQuery::try_from(path).map_err(|e| Status::internal(format!("bad method path: {e}")))
}

fn deadline_exceeded(deadline: Duration) -> Status {
    Status::new(Code::DeadlineExceeded, format!("no answer from batond within {} ms", deadline.as_millis()))
}
