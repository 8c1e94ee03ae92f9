//! Prometheus metrics: each service owns a [`Registry`] (so servers in one process, as in
//! tests, never mix counts) and renders it as text at `/metrics`.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Buckets of every latency histogram, in seconds: from half a millisecond (a cached read) to
/// half a minute (a stream or a slow statement).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The content type of [`render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A latency histogram in seconds with [`LATENCY_BUCKETS`].
pub fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

pub fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

pub fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

/// Registers `collector` in `registry`. Names are fixed in the code, so a clash is a bug.
pub fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: &C) {
    registry.register(Box::new(collector.clone())).unwrap_or_else(|e| panic!("registering a metric: {e}"));
}

/// The registry in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
}

/// Metrics whose values live elsewhere (atomic counters, connection pools) and are copied in
/// when scraped: `update` runs under a lock, then the metrics are collected.
pub struct Sampled {
    metrics: Vec<Box<dyn Collector>>,
    update: Mutex<Box<dyn FnMut() + Send>>,
}

impl Sampled {
    pub fn new(metrics: Vec<Box<dyn Collector>>, update: impl FnMut() + Send + 'static) -> Self {
        Sampled { metrics, update: Mutex::new(Box::new(update)) }
    }
}

impl Collector for Sampled {
    fn desc(&self) -> Vec<&Desc> {
        self.metrics.iter().flat_map(|m| m.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut update = self.update.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        update();
        self.metrics.iter().flat_map(|m| m.collect()).collect()
    }
}

/// Brings a Prometheus counter up to `total`, a count kept elsewhere that only grows.
pub fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn sampled_counters_follow_their_source() {
        let registry = Registry::new();
        let hits = counter("cache_hits_total", "Hits.", &["level"]);
        let source = Arc::new(AtomicU64::new(3));
        let (c, s) = (hits.clone(), Arc::clone(&source));
        let sampled = Sampled::new(vec![Box::new(hits.clone())], move || {
            catch_up(&c.with_label_values(&["l1"]), s.load(Ordering::Relaxed));
        });
        registry.register(Box::new(sampled)).unwrap();
        assert!(render(&registry).contains("cache_hits_total{level=\"l1\"} 3\n"));
        source.store(5, Ordering::Relaxed);
        assert!(render(&registry).contains("cache_hits_total{level=\"l1\"} 5\n"));
        assert!(render(&registry).contains("# TYPE cache_hits_total counter"));
    }
}
