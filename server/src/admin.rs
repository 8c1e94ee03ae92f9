//! Admin HTTP: liveness and readiness for orchestrators.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

#[derive(Clone)]
struct Admin {
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
}

/// `/health`: the process is up. `/ready`: it answers requests (store reachable, not
/// shutting down).
pub fn router(store: Arc<dyn Store>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(Admin { store, shutdown })
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
