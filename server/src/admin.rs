//! Admin HTTP: liveness and readiness for orchestrators, Prometheus metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct Admin {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

/// `/health`: the process is up. `/ready`: it answers requests (store reachable, not
/// shutting down). `/metrics`: Prometheus text format.
pub fn router(store: Arc<dyn Store>, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(Admin { store, metrics, shutdown })
}

async fn metrics_text(State(admin): State<Admin>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, baton_telemetry::metrics::CONTENT_TYPE)], admin.metrics.render())
}

async fn ready(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match admin.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}
