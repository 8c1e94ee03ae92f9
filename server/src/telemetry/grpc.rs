//! The tower layer around every gRPC call: a server span (OpenTelemetry RPC conventions) whose
//! parent is the caller's W3C trace context, the call's duration by status code, and the
//! number of open server streams.
//!
//! tonic answers most failures with HTTP 200: a handler's error comes back "trailers-only",
//! `grpc-status` in the response headers; a successful call, and a stream, carry it in the
//! trailers after the last message. So the call is recorded when the headers hold a status,
//! else when the body yields its trailers; a body dropped before them (the client went away)
//! is CANCELLED.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prost::Message as _;
use tower::{Layer, Service};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use baton_telemetry::grpc::{code_name, is_server_error, split_path};

use super::Metrics;

/// Services whose calls are measured but not traced: probes and tooling, not requests.
const UNTRACED: &[&str] = &["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"];

/// `CANCELLED`: what a call whose response was dropped before its status ended with.
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const INTERNAL: i32 = 13;
const DATA_LOSS: i32 = 15;

/// What the layer knows of one RPC.
#[derive(Debug)]
struct Method {
    service: String,
    method: String,
    /// `service/method`, the span name.
    name: String,
    server_streaming: bool,
    traced: bool,
}

/// Wraps the gRPC routes; see the module docs.
#[derive(Clone)]
pub struct GrpcLayer {
    metrics: Arc<Metrics>,
    methods: Arc<HashMap<String, Arc<Method>>>,
    unknown: Arc<Method>,
}

impl GrpcLayer {
    /// Knows the RPCs of the given encoded `FileDescriptorSet`s; calls to any other path are
    /// labelled `unknown` (so clients cannot grow the metrics without bound).
    pub fn new(metrics: Arc<Metrics>, descriptor_sets: &[&[u8]]) -> Result<GrpcLayer, prost::DecodeError> {
        let mut methods = HashMap::new();
        for set in descriptor_sets {
            for file in prost_types::FileDescriptorSet::decode(*set)?.file {
                for service in &file.service {
                    let full = match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    for m in &service.method {
                        let method = Method {
                            service: full.clone(),
                            method: m.name().to_owned(),
                            name: format!("{full}/{}", m.name()),
                            server_streaming: m.server_streaming(),
                            traced: !UNTRACED.contains(&full.as_str()),
                        };
                        if method.server_streaming {
                            // Listed at 0 before the first stream opens.
                            drop(metrics.active_streams.with_label_values(&[&method.service, &method.method]));
                        }
                        methods.insert(format!("/{full}/{}", m.name()), Arc::new(method));
                    }
                }
            }
        }
        let unknown = Method {
            service: "unknown".into(),
            method: "unknown".into(),
            name: "unknown".into(),
            server_streaming: false,
            traced: true,
        };
        Ok(GrpcLayer { metrics, methods: Arc::new(methods), unknown: Arc::new(unknown) })
    }
}

impl<S> Layer<S> for GrpcLayer {
    type Service = GrpcService<S>;

    fn layer(&self, inner: S) -> GrpcService<S> {
        GrpcService { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcService<S> {
    inner: S,
    layer: GrpcLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let (method, span) = match self.layer.methods.get(path) {
            Some(m) if m.traced => (Arc::clone(m), server_span(&m.name, &m.service, &m.method, request.headers())),
            Some(m) => (Arc::clone(m), Span::none()),
            // The span may name what was asked for; the metrics may not.
            None => {
                let (service, rpc) = split_path(path).unwrap_or(("unknown", "unknown"));
                let name = format!("{service}/{rpc}");
                (Arc::clone(&self.layer.unknown), server_span(&name, service, rpc, request.headers()))
            }
        };
        let inner = span.in_scope(|| self.inner.call(request));
        let call = Call {
            span,
            start: Instant::now(),
            method,
            metrics: Arc::clone(&self.layer.metrics),
            stream_open: false,
            done: false,
        };
        ResponseFuture { inner, call: Some(call) }
    }
}

/// The server span of a call, child of the caller's context when it sent one. A DEBUG span:
/// without tracing (and below `RUST_LOG=debug`) it is disabled where it is created, so a
/// request pays a branch for it.
fn server_span(name: &str, service: &str, method: &str, headers: &HeaderMap) -> Span {
    let span = tracing::debug_span!(
        "grpc",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let parent = baton_proto::trace::extract(headers);
    if opentelemetry::trace::TraceContextExt::has_active_span(&parent) {
        // Fails only when no OpenTelemetry layer is installed: then there is no trace to join.
        let _ = span.set_parent(parent);
    }
    span
}

/// One call in flight; records itself exactly once (on drop if nothing else finished it).
struct Call {
    span: Span,
    start: Instant,
    method: Arc<Method>,
    metrics: Arc<Metrics>,
    stream_open: bool,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: i32, message: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let m = &self.method;
        self.metrics
            .rpc_duration
            .with_label_values(&[m.service.as_str(), m.method.as_str(), code_name(code)])
            .observe(self.start.elapsed().as_secs_f64());
        if self.stream_open {
            self.metrics.active_streams.with_label_values(&[m.service.as_str(), m.method.as_str()]).dec();
        }
        self.span.record("rpc.grpc.status_code", i64::from(code));
        if is_server_error(code) {
            self.span.record("error.type", code_name(code));
            if message.is_empty() {
                self.span.record("otel.status_code", "ERROR");
            } else {
                self.span.record("otel.status_description", message);
            }
        }
        // Failures that mean a bug or a broken store, not a refusal, a deadline or a shutdown;
        // logged inside the span, so the line names the trace.
        if matches!(code, UNKNOWN | INTERNAL | DATA_LOSS) {
            let _entered = self.span.enter();
            tracing::warn!(rpc = %m.name, code = code_name(code), message, "gRPC call failed");
        }
    }

    fn finish_with(&mut self, headers: &HeaderMap) -> bool {
        match tonic::Status::from_header_map(headers) {
            Some(status) => {
                self.finish(status.code() as i32, status.message());
                true
            }
            None => false,
        }
    }

    fn open_stream(&mut self) {
        if self.method.server_streaming {
            self.stream_open = true;
            self.metrics
                .active_streams
                .with_label_values(&[self.method.service.as_str(), self.method.method.as_str()])
                .inc();
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELLED, "the response was dropped before its status was sent");
    }
}

pin_project! {
    /// The inner service's response future, polled inside the call's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<TracedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|c| c.span.enter());
            ready!(this.inner.poll(cx))
        };
        let mut call = this.call.take();
        match result {
            Ok(response) => {
                if let Some(c) = call.as_mut() {
                    if c.finish_with(response.headers()) {
                        // Trailers-only: the status is all there is.
                        call = None;
                    } else {
                        c.open_stream();
                    }
                }
                Poll::Ready(Ok(response.map(|inner| TracedBody { inner, call })))
            }
            Err(e) => {
                if let Some(mut c) = call {
                    c.finish(UNKNOWN, "the gRPC service failed");
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// The response body; finishes the call at its trailers.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(mut call) = this.call.take()
                    && !call.finish_with(trailers)
                {
                    call.finish(UNKNOWN, "the trailers carry no grpc-status");
                }
            }
            Some(Err(_)) => {
                if let Some(mut call) = this.call.take() {
                    call.finish(UNKNOWN, "the response body failed");
                }
            }
            None => {
                if let Some(mut call) = this.call.take() {
                    call.finish(UNKNOWN, "the response ended without trailers");
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::ServiceExt;

    use super::*;

    fn layer(metrics: &Arc<Metrics>) -> GrpcLayer {
        GrpcLayer::new(Arc::clone(metrics), &[baton_proto::FILE_DESCRIPTOR_SET]).unwrap()
    }

    fn count(metrics: &Metrics, method: &str, code: &str) -> u64 {
        metrics.rpc_duration.with_label_values(&["baton.v1.ContextService", method, code]).get_sample_count()
    }

    fn request(path: &str) -> Request<Full<Bytes>> {
        Request::post(path).body(Full::new(Bytes::new())).unwrap()
    }

    #[tokio::test]
    async fn a_trailers_only_error_is_recorded_from_the_headers() {
        let metrics = Metrics::new();
        let svc = layer(&metrics).layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(tonic::Status::not_found("no such session").into_http::<Full<Bytes>>())
        }));
        let response = svc.oneshot(request("/baton.v1.ContextService/GetSession")).await.unwrap();
        assert_eq!(count(&metrics, "GetSession", "NOT_FOUND"), 1);
        response.into_body().collect().await.unwrap();
        assert_eq!(count(&metrics, "GetSession", "NOT_FOUND"), 1, "recorded once");
    }

    #[tokio::test]
    async fn a_stream_is_recorded_at_its_trailers_and_counted_while_open() {
        let metrics = Metrics::new();
        let svc = layer(&metrics).layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                vec![Ok(Frame::data(Bytes::from_static(b"x"))), Ok(Frame::trailers(trailers))];
            Ok::<_, Infallible>(Response::new(StreamBody::new(futures::stream::iter(frames))))
        }));
        let response = svc.oneshot(request("/baton.v1.ContextService/StreamEntries")).await.unwrap();
        let open = || metrics.active_streams.with_label_values(&["baton.v1.ContextService", "StreamEntries"]).get();
        assert_eq!(open(), 1);
        assert_eq!(count(&metrics, "StreamEntries", "OK"), 0);
        response.into_body().collect().await.unwrap();
        assert_eq!(open(), 0);
        assert_eq!(count(&metrics, "StreamEntries", "OK"), 1);
    }

    #[tokio::test]
    async fn a_dropped_response_is_cancelled_and_unknown_paths_share_one_label() {
        let metrics = Metrics::new();
        let svc = layer(&metrics).layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"x"))))
        }));
        let response = svc.clone().oneshot(request("/baton.v1.ContextService/GetContextWindow")).await.unwrap();
        drop(response);
        assert_eq!(count(&metrics, "GetContextWindow", "CANCELLED"), 1);
        let response = svc.oneshot(request("/made.up.Service/Anything")).await.unwrap();
        drop(response);
        let unknown = metrics.rpc_duration.with_label_values(&["unknown", "unknown", "CANCELLED"]).get_sample_count();
        assert_eq!(unknown, 1);
    }
}
