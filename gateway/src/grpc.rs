//! Calls `batond` with dynamic messages: a tonic codec for `prost_reflect::DynamicMessage`, one
//! shared lazily-connecting channel, and per-call metadata (credentials, trace context, tenant)
//! and deadline.

use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

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
    /// W3C trace context.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// The tenant (`x-baton-tenant`); the server's default tenant when unset.
    pub tenant: Option<String>,
}

impl CallContext {
    fn apply(&self, metadata: &mut MetadataMap) -> Result<(), Status> {
        let pairs = [
            ("authorization", &self.authorization),
            ("traceparent", &self.traceparent),
            ("tracestate", &self.tracestate),
            (TENANT_HEADER, &self.tenant),
        ];
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
}

impl Backend {
    /// A backend for `endpoint` that connects on first use and reconnects after failures.
    pub fn connect_lazy(
        endpoint: &str,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(endpoint.to_owned())?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Self { channel, call_timeout })
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
        let deadline = self.call_timeout;
        let call = async {
            let request = self.request(request, ctx, Some(deadline))?;
            let mut grpc = self.ready().await?;
            grpc.unary(request, path(method)?, DynamicCodec::new(method.output()))
                .await
                .map(tonic::Response::into_inner)
        };
        match tokio::time::timeout(deadline, call).await {
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
    ) -> Result<Streaming<DynamicMessage>, Status> {
        let open = async {
            let request = self.request(request, ctx, deadline)?;
            let mut grpc = self.ready().await?;
            grpc.server_streaming(request, path(method)?, DynamicCodec::new(method.output()))
                .await
                .map(tonic::Response::into_inner)
        };
        let limit = deadline.map_or(self.call_timeout, |d| d.min(self.call_timeout));
        match tokio::time::timeout(limit, open).await {
            Ok(result) => result,
            Err(_) => Err(deadline_exceeded(limit)),
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
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        Ok(request)
    }

    async fn ready(&self) -> Result<tonic::client::Grpc<Channel>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(format!("batond is not reachable: {e}")))?;
        Ok(grpc)
    }
}

fn path(method: &MethodDescriptor) -> Result<PathAndQuery, Status> {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    PathAndQuery::try_from(path).map_err(|e| Status::internal(format!("bad method path: {e}")))
}

fn deadline_exceeded(deadline: Duration) -> Status {
    Status::new(Code::DeadlineExceeded, format!("no answer from batond within {} ms", deadline.as_millis()))
}
