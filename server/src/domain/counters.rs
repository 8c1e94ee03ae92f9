//! The business counters the domain keeps (sessions created, entries appended by kind,
//! handoff state changes by status). `telemetry::Metrics` registers them beside the RPC
//! metrics and serves them at `/metrics`.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec};

use baton_telemetry::metrics::counter;

use super::{Entry, EntryKind, HandoffStatus};

pub struct Counters {
    sessions_created: IntCounter,
    handoffs_processed: IntCounterVec,
    context_entries: IntCounterVec,
    secrets_redacted: IntCounter,
}

impl Counters {
    pub fn new() -> Arc<Counters> {
        let sessions_created = IntCounter::new("sessions_created_total", "Sessions created.")
            .unwrap_or_else(|e| panic!("metric sessions_created_total: {e}"));
        let handoffs_processed = counter(
            "handoffs_processed_total",
            "Handoff state changes, by the status they led to (pending for a new request).",
            &["status"],
        );
        let context_entries = counter("context_entries_total", "Context entries appended, by kind.", &["kind"]);
        // Every series exists from the start, so rates and ratios have a baseline.
        HandoffStatus::ALL.iter().for_each(|s| drop(handoffs_processed.with_label_values(&[s.as_str()])));
        EntryKind::ALL.iter().for_each(|k| drop(context_entries.with_label_values(&[k.as_str()])));
        let secrets_redacted =
            IntCounter::new("secrets_redacted_total", "Secrets replaced in appended text on ingest.")
                .unwrap_or_else(|e| panic!("metric secrets_redacted_total: {e}"));
        Arc::new(Counters { sessions_created, handoffs_processed, context_entries, secrets_redacted })
    }

    /// For the server's registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.sessions_created.clone()),
            Box::new(self.handoffs_processed.clone()),
            Box::new(self.context_entries.clone()),
            Box::new(self.secrets_redacted.clone()),
        ]
    }

    pub(crate) fn session_created(&self) {
        self.sessions_created.inc();
    }

    pub(crate) fn entries_appended(&self, entries: &[Entry]) {
        for e in entries {
            self.context_entries.with_label_values(&[e.kind.as_str()]).inc();
        }
    }

    pub(crate) fn secrets_redacted(&self, n: u64) {
        self.secrets_redacted.inc_by(n);
    }

    pub(crate) fn handoff_processed(&self, status: HandoffStatus) {
        self.handoffs_processed.with_label_values(&[status.as_str()]).inc();
    }
}
