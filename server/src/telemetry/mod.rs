//! `batond`'s traces and metrics. Logs, the OTLP exporter and the JSON format come from
//! `baton-telemetry`; this module adds what is specific to the server:
//!
//! - [`grpc`]: the tower layer around every gRPC call (server span with the caller's W3C
//!   context as parent, duration histogram, active streams);
//! - [`sql`]: one span and one histogram sample per SQL statement;
//! - [`Metrics`]: the service's Prometheus registry, served at `/metrics` on the admin port,
//!   with the business counters the domain increments.

pub mod grpc;
pub mod sql;

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry};

use baton_telemetry::metrics::{counter, gauge, histogram, register};

use crate::domain::{Entry, EntryKind, HandoffStatus};

/// One server's metrics. Every metric the README lists is registered here, either directly
/// or as a collector handed in by the store and the cache.
pub struct Metrics {
    registry: Registry,
    sessions_created: IntCounter,
    handoffs_processed: IntCounterVec,
    context_entries: IntCounterVec,
    pub(crate) rpc_duration: HistogramVec,
    pub(crate) active_streams: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let sessions_created = IntCounter::new("sessions_created_total", "Sessions created.")
            .unwrap_or_else(|e| panic!("metric sessions_created_total: {e}"));
        let handoffs_processed = counter(
            "handoffs_processed_total",
            "Handoff state changes, by the status they led to (pending for a new request).",
            &["status"],
        );
        let context_entries = counter("context_entries_total", "Context entries appended, by kind.", &["kind"]);
        let rpc_duration = histogram(
            "grpc_server_request_duration_seconds",
            "gRPC calls handled, by RPC and status code: from the request to the last byte of the \
             response (a stream's whole life).",
            &["service", "method", "code"],
        );
        let active_streams =
            gauge("grpc_server_active_streams", "Server streams open now, by RPC.", &["service", "method"]);
        register(&registry, &handoffs_processed);
        register(&registry, &context_entries);
        register(&registry, &rpc_duration);
        register(&registry, &active_streams);
        register(&registry, &sessions_created);
        // Every series exists from the start, so rates and ratios have a baseline.
        HandoffStatus::ALL.iter().for_each(|s| drop(handoffs_processed.with_label_values(&[s.as_str()])));
        EntryKind::ALL.iter().for_each(|k| drop(context_entries.with_label_values(&[k.as_str()])));
        Arc::new(Metrics {
            registry,
            sessions_created,
            handoffs_processed,
            context_entries,
            rpc_duration,
            active_streams,
        })
    }

    /// Adds metrics owned elsewhere (the store's, the cache's).
    pub fn register(&self, collector: Box<dyn Collector>) {
        self.registry.register(collector).unwrap_or_else(|e| panic!("registering a metric: {e}"));
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        baton_telemetry::metrics::render(&self.registry)
    }

    pub(crate) fn session_created(&self) {
        self.sessions_created.inc();
    }

    pub(crate) fn entries_appended(&self, entries: &[Entry]) {
        for e in entries {
            self.context_entries.with_label_values(&[e.kind.as_str()]).inc();
        }
    }

    pub(crate) fn handoff_processed(&self, status: HandoffStatus) {
        self.handoffs_processed.with_label_values(&[status.as_str()]).inc();
    }
}
