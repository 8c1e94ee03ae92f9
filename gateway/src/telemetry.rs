//! The gateway's traces and metrics: the caller's trace context as received, the spans of tool
//! calls (MCP conventions) and of gRPC calls (RPC conventions), and the Prometheus registry
//! served at `/metrics` on the HTTP transport.
//!
//! One MCP call is one trace: the tool span continues the caller's `traceparent` (the HTTP
//! request's header, or `params._meta` on stdio), the gRPC client spans are its children, and
//! their context goes to batond in the call's metadata. Without an OpenTelemetry layer (no OTLP
//! endpoint configured) the caller's context is passed on unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use prometheus::{HistogramVec, Registry};
use prost_reflect::MethodDescriptor;
use tonic::metadata::MetadataMap;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use baton_telemetry::grpc::code_name;
use baton_telemetry::metrics::{histogram, register, render};

/// The caller's trace context as it arrived: W3C `traceparent`, `tracestate` and `baggage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceCarrier(BTreeMap<String, String>);

impl TraceCarrier {
    /// Picks the propagation fields out of `get` (HTTP headers or MCP `_meta`).
    pub fn from_fields<'a>(get: impl Fn(&str) -> Option<&'a str>) -> TraceCarrier {
        let fields = baton_proto::trace::propagator().fields();
        TraceCarrier(fields.filter_map(|f| get(f).map(|v| (f.to_owned(), v.to_owned()))).collect())
    }

    /// True when the caller sent a `traceparent`.
    pub fn has_parent(&self) -> bool {
        self.0.contains_key("traceparent")
    }

    /// The remote context it carries (empty when none or invalid).
    pub fn context(&self) -> opentelemetry::Context {
        baton_proto::trace::propagator().extract(self)
    }
}

impl Extractor for TraceCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Writes the trace context of a gRPC call into its metadata: the current span's (the client
/// span) when tracing is on, else the caller's as received.
pub fn inject(carrier: &TraceCarrier, metadata: &mut MetadataMap) {
    let current = Span::current().context();
    if current.span().span_context().is_valid() {
        baton_proto::trace::inject(&current, metadata);
    } else {
        baton_proto::trace::inject(&carrier.context(), metadata);
    }
}

/// The server span of one MCP request (`tools/call`, `resources/read`, …), continuing the
/// caller's trace. `target` is the tool's name; it completes the span name. Like every span of
/// Baton's, a DEBUG span: disabled where it is created unless tracing (or `RUST_LOG=debug`)
/// wants it.
pub fn mcp_span(method: &'static str, target: Option<&str>, carrier: &TraceCarrier, http: bool) -> Span {
    let name = match target {
        Some(t) => format!("{method} {t}"),
        None => method.to_owned(),
    };
    let span = tracing::debug_span!(
        "mcp",
        otel.name = name,
        otel.kind = "server",
        mcp.method.name = method,
        gen_ai.tool.name = target,
        gen_ai.operation.name = if method == "tools/call" { Some("execute_tool") } else { None },
        mcp.resource.uri = Empty,
        network.transport = if http { "tcp" } else { "pipe" },
        error.type = Empty,
        otel.status_description = Empty,
    );
    // Always set, so the span is the caller's child or a new trace's root, never a child of
    // whatever span the MCP transport runs in. Fails only without an OpenTelemetry layer.
    if !span.is_disabled() {
        let _ = span.set_parent(carrier.context());
    }
    span
}

/// Marks a span failed with an error type and a description.
pub fn record_error(span: &Span, error_type: &str, description: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_description", description);
}

/// The gateway's metrics.
pub struct GatewayMetrics {
    registry: Registry,
    tools: HistogramVec,
    rpcs: HistogramVec,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

impl GatewayMetrics {
    pub fn new() -> Arc<GatewayMetrics> {
        let registry = Registry::new();
        let tools = histogram(
            "mcp_tool_duration_seconds",
            "MCP tool calls, by tool and outcome (ok, arguments, or the gRPC status code of the failure).",
            &["tool", "outcome"],
        );
        let rpcs = histogram(
            "grpc_client_request_duration_seconds",
            "gRPC calls to batond, by RPC and status code (streams: until the gateway stops reading).",
            &["service", "method", "code"],
        );
        register(&registry, &tools);
        register(&registry, &rpcs);
        Arc::new(GatewayMetrics { registry, tools, rpcs })
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }

    pub(crate) fn tool_call(&self, tool: &str, outcome: &str, started: Instant) {
        self.tools.with_label_values(&[tool, outcome]).observe(started.elapsed().as_secs_f64());
    }
}

/// One gRPC call in flight: its client span and timer; records itself once.
pub(crate) struct ClientCall {
    pub(crate) span: Span,
    method: MethodDescriptor,
    started: Instant,
    metrics: Arc<GatewayMetrics>,
    done: bool,
}

impl ClientCall {
    /// Starts the client span of `method`: a child of the current span (the tool's), or of the
    /// caller's context when the call runs outside one (live follows).
    pub(crate) fn start(
        method: &MethodDescriptor,
        carrier: &TraceCarrier,
        server: (&str, Option<u16>),
        metrics: &Arc<GatewayMetrics>,
    ) -> ClientCall {
        let service = method.parent_service();
        let span = tracing::debug_span!(
            "grpc client",
            otel.name = format!("{}/{}", service.full_name(), method.name()),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = service.full_name(),
            rpc.method = method.name(),
            server.address = server.0,
            server.port = server.1.map(i64::from),
            rpc.grpc.status_code = Empty,
            error.type = Empty,
            otel.status_description = Empty,
        );
        if !span.is_disabled() && Span::current().is_none() {
            let _ = span.set_parent(carrier.context());
        }
        ClientCall { span, method: method.clone(), started: Instant::now(), metrics: Arc::clone(metrics), done: false }
    }

    /// Records the call's status: every code but OK is an error on a client span.
    pub(crate) fn finish(&mut self, status: Option<&tonic::Status>) {
        let code = status.map_or(0, |s| s.code() as i32);
        self.record(code);
        if let Some(s) = status {
            record_error(&self.span, code_name(code), s.message());
        }
    }

    /// The gateway stopped reading a stream on purpose (enough items, its own deadline): the
    /// call ends CANCELLED, which is not a failure.
    pub(crate) fn stop(&mut self) {
        self.record(1);
    }

    fn record(&mut self, code: i32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.span.record("rpc.grpc.status_code", i64::from(code));
        let service = self.method.parent_service();
        self.metrics
            .rpcs
            .with_label_values(&[service.full_name(), self.method.name(), code_name(code)])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Some(&tonic::Status::cancelled("the call was abandoned")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn carriers_keep_only_propagation_fields_and_pass_them_on() {
        let headers = [("traceparent", TRACEPARENT), ("baggage", "agent=planner"), ("authorization", "Bearer x")];
        let carrier = TraceCarrier::from_fields(|k| headers.iter().find(|(n, _)| *n == k).map(|(_, v)| *v));
        assert!(carrier.has_parent());
        assert_eq!(carrier.keys().len(), 2);
        // No OpenTelemetry layer in unit tests: the caller's context is passed on as it came.
        let mut md = MetadataMap::new();
        inject(&carrier, &mut md);
        assert_eq!(md.get("traceparent").unwrap(), TRACEPARENT);
        assert_eq!(md.get("baggage").unwrap(), "agent=planner");
        assert!(md.get("authorization").is_none());
    }

    #[test]
    fn an_empty_carrier_sends_nothing() {
        let carrier = TraceCarrier::default();
        assert!(!carrier.has_parent());
        let mut md = MetadataMap::new();
        inject(&carrier, &mut md);
        assert!(md.is_empty());
    }
}
