//! `batond`'s traces and metrics. Logs, the OTLP exporter and the JSON format come from
//! `baton-telemetry`; this module adds what is specific to the server:
//!
//! - [`grpc`]: the tower layer around every gRPC call (server span with the caller's W3C
//!   context as parent, duration histogram, active streams);
//! - [`Metrics`]: the service's Prometheus registry, served at `/metrics` on the admin port,
//!   with the business counters the domain increments.

pub mod grpc;

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{HistogramVec, IntGaugeVec, Registry};

use baton_telemetry::metrics::{gauge, histogram, register};

/// One server's metrics. Every metric the README lists is registered here, either directly
/// or as a collector handed in by the domain (business counters), the store and the cache.
pub struct Metrics {
    registry: Registry,
    pub(crate) rpc_duration: HistogramVec,
    pub(crate) active_streams: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let rpc_duration = histogram(
            "grpc_server_request_duration_seconds",
            "gRPC calls handled, by RPC and status code: from the request to the last byte of the \
             response (a stream's whole life).",
            &["service", "method", "code"],
        );
        let active_streams =
            gauge("grpc_server_active_streams", "Server streams open now, by RPC.", &["service", "method"]);
        register(&registry, &rpc_duration);
        register(&registry, &active_streams);
        Arc::new(Metrics { registry, rpc_duration, active_streams })
    }

    /// Adds metrics owned elsewhere (the store's, the cache's).
    pub fn register(&self, collector: Box<dyn Collector>) {
        self.registry.register(collector).unwrap_or_else(|e| panic!("registering a metric: {e}"));
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        baton_telemetry::metrics::render(&self.registry)
    }
}
