//! An OTLP collector for tests: the OTLP `TraceService` over tonic on a loopback port, keeping
//! every span it is sent with the `service.name` of its sender, plus helpers to read spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
pub use opentelemetry_proto::tonic::common::v1::any_value::Value;
pub use opentelemetry_proto::tonic::trace::v1::Span;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// A span as received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

/// Keeps every span it is sent.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| Received { service: service.clone(), span }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Serves on a free loopback port, on the current runtime; returns its `http://` endpoint.
    pub async fn start() -> (String, Collector) {
        let collector = Collector::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("collector address"));
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .expect("the test collector failed");
        });
        (endpoint, collector)
    }

    /// Every span received so far of the trace `trace_id` (hex).
    pub fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        spans.iter().filter(|r| hex(&r.span.trace_id) == trace_id).cloned().collect()
    }

    /// Waits (up to ten seconds) until the trace satisfies `complete`, and returns it.
    pub async fn wait_for(&self, trace_id: &str, complete: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..200 {
            let trace = self.trace(trace_id);
            if complete(&trace) {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("trace {trace_id} is incomplete: {:#?}", names(&self.trace(trace_id)));
    }
}

/// Lower-case hex, as W3C trace context writes ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An attribute's value.
pub fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()
}

/// A string attribute; panics naming the span when absent.
pub fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(span, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("span {:?} has no string attribute {key}: {other:?}", span.name),
    }
}

/// An integer attribute; panics naming the span when absent.
pub fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::IntValue(v)) => *v,
        other => panic!("span {:?} has no integer attribute {key}: {other:?}", span.name),
    }
}

/// The one span of `trace` from `service` named `name`; panics unless there is exactly one.
pub fn one<'a>(trace: &'a [Received], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> =
        trace.iter().filter(|r| r.service == service && r.span.name == name).map(|r| &r.span).collect();
    assert_eq!(found.len(), 1, "one {service} span {name:?} expected in {:#?}", names(trace));
    found[0]
}

/// `service name (parent id)` of each span, for failure messages.
pub fn names(trace: &[Received]) -> Vec<String> {
    trace.iter().map(|r| format!("{} {} (parent {})", r.service, r.span.name, hex(&r.span.parent_span_id))).collect()
}

/// Whether `ancestor` is on `span`'s chain of parents within `trace`.
pub fn descends_from(trace: &[Received], span: &Span, ancestor: &Span) -> bool {
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|r| (r.span.span_id.as_slice(), &r.span)).collect();
    let mut current = span;
    while let Some(parent) = by_id.get(current.parent_span_id.as_slice()) {
        if parent.span_id == ancestor.span_id {
            return true;
        }
        current = parent;
    }
    false
}
