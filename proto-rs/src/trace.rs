//! W3C trace context (`traceparent`, `tracestate`) and baggage in gRPC metadata, so a call
//! joins its caller's trace. `batond` extracts them from every request; Rust clients inject
//! them with [`Propagate`]:
//!
//! ```ignore
//! let client = ContextServiceClient::with_interceptor(channel, baton_proto::trace::Propagate);
//! ```
//!
//! [`Propagate`] sends the current OpenTelemetry context: with `tracing-opentelemetry`, that of
//! the `tracing` span the call is made in. Without a current span nothing is sent.

use std::sync::LazyLock;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;

/// W3C trace context and W3C baggage, in that order.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new()), Box::new(BaggagePropagator::new())])
});

/// The propagator Baton uses on the wire: W3C trace context plus W3C baggage.
pub fn propagator() -> &'static TextMapCompositePropagator {
    &PROPAGATOR
}

/// Reads `traceparent`, `tracestate` and `baggage` from HTTP/2 headers (or gRPC metadata, via
/// `metadata.as_ref()`).
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes propagation fields into HTTP/2 headers; values that are not valid header text are
/// skipped.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

/// The remote context (span context and baggage) a request carries, or an empty context.
pub fn extract(headers: &HeaderMap) -> Context {
    PROPAGATOR.extract(&HeaderExtractor(headers))
}

/// Writes `cx` into `metadata`; an empty context writes nothing.
pub fn inject(cx: &Context, metadata: &mut MetadataMap) {
    PROPAGATOR.inject_context(cx, &mut HeaderInjector(metadata.as_mut()));
}

/// A tonic interceptor that sends the current OpenTelemetry context with every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Propagate;

impl tonic::service::Interceptor for Propagate {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        inject(&Context::current(), request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Context, KeyValue};
    use tonic::metadata::MetadataMap;
    use tonic::service::Interceptor;

    use super::*;

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn extracts_what_it_injects() {
        let mut md = MetadataMap::new();
        md.insert("traceparent", TRACEPARENT.parse().unwrap());
        md.insert("baggage", "agent=planner".parse().unwrap());
        let cx = extract(md.as_ref());
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(cx.baggage().get("agent").map(|v| v.as_str().to_owned()).as_deref(), Some("planner"));

        let mut out = MetadataMap::new();
        inject(&cx, &mut out);
        assert_eq!(out.get("traceparent").unwrap(), TRACEPARENT);
        assert_eq!(out.get("baggage").unwrap(), "agent=planner");
    }

    #[test]
    fn invalid_or_absent_context_yields_nothing() {
        let mut md = MetadataMap::new();
        md.insert("traceparent", "00-00000000000000000000000000000000-b7ad6b7169203331-01".parse().unwrap());
        assert!(!extract(md.as_ref()).span().span_context().is_valid());
        let mut out = MetadataMap::new();
        inject(&Context::new(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_interceptor_sends_the_current_context() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc).with_baggage([KeyValue::new("tenant", "acme")]);
        let _attached = cx.attach();
        let request = Propagate.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(request.metadata().get("baggage").unwrap(), "tenant=acme");
    }
}
