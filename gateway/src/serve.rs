//! The two transports around the one handler: stdio, and Streamable HTTP at `/mcp` with
//! `/health` and `/metrics` routes. Logs go to stderr in both, because stdout carries the stdio
//! protocol.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::http::header;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::BoxError;
use crate::access::{BearerGate, require_bearer};
use crate::calls::Gateway;
use crate::catalog::Catalog;
use crate::config::{Config, LogFormat, Transport};
use crate::embedded::Embedded;
use crate::grpc::Backend;
use crate::handler::BatonMcp;

/// Logs to stderr (never stdout: it carries the stdio protocol), filtered by `RUST_LOG`
/// (default `info`), and exports traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
/// Must run inside the Tokio runtime. Shut the returned handle down after [`run`] returns.
pub fn init_telemetry(format: LogFormat) -> Result<baton_telemetry::Telemetry, BoxError> {
    let format = match format {
        LogFormat::Text => baton_telemetry::LogFormat::Text,
        LogFormat::Json => baton_telemetry::LogFormat::Json,
    };
    let settings = baton_telemetry::Settings::from_env("baton-mcp", env!("CARGO_PKG_VERSION"), format)?;
    Ok(baton_telemetry::init(settings)?)
}

/// Runs the gateway on the configured transport until the client leaves (stdio) or `shutdown`
/// resolves. With `--embedded` the service runs in this process (or is shared with the process
/// serving the data directory) and stops after the gateway.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), BoxError> {
    let catalog = Catalog::baton()?;
    let Some(embedded) = config.embedded()? else {
        let tls = config.tls()?;
        let backend = Backend::connect_lazy(&config.endpoint, tls, config.connect_timeout(), config.call_timeout())?;
        tracing::info!(endpoint = %config.endpoint, transport = ?config.transport, "baton-mcp starting");
        let gateway = Gateway::with_owner_cache(catalog, backend, config.owner_cache());
        let handler = BatonMcp::new(gateway, config.default_call_context());
        return serve(&config, handler, shutdown).await;
    };
    let embedded = Embedded::start(embedded).await?;
    let backend = Backend::with_connector(embedded.connector(), config.connect_timeout(), config.call_timeout());
    tracing::info!(transport = ?config.transport, "baton-mcp starting (embedded)");
    let gateway = Gateway::with_owner_cache(catalog, backend, config.owner_cache());
    let handler = BatonMcp::new(gateway, config.default_call_context());
    let result = serve(&config, handler, shutdown).await;
    embedded.shutdown().await;
    result
}

async fn serve(
    config: &Config,
    handler: BatonMcp,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    match config.transport {
        Transport::Stdio => serve_stdio(handler, shutdown).await,
        Transport::Http => {
            let addr = config.http_addr();
            if config.embedded && !addr.ip().is_loopback() {
                tracing::warn!(
                    %addr,
                    "SERVING THE EMBEDDED STORE TO THE NETWORK WITHOUT AUTHENTICATION: anyone who can reach this \
                     address can read and change every session; bind a loopback address, or run batond with API keys"
                );
            }
            let listener = TcpListener::bind(addr).await?;
            tracing::info!(addr = %listener.local_addr()?, "MCP Streamable HTTP at /mcp");
            serve_http(handler, listener, &config.allowed_hosts, shutdown).await
        }
    }
}

/// Serves one MCP client on stdin/stdout until it closes stdin or `shutdown` resolves.
pub async fn serve_stdio(
    handler: BatonMcp,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let running = tokio::select! {
        running = handler.serve(rmcp::transport::stdio()) => running?,
        () = &mut shutdown => {
            tracing::info!("shutting down before the client initialized");
            return Ok(());
        }
    };
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            tracing::info!(reason = ?quit?, "stdio client gone");
        }
        () = shutdown => {
            cancel.cancel();
            tracing::info!("shutting down");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C or Ctrl-Break on Windows). The handlers are installed
/// here, not when the future is first polled, so a signal during start-up is not fatal either:
/// the gateway stops as soon as it gets to look.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_c};
        let (mut c, mut brk) = (ctrl_c()?, ctrl_break()?);
        Ok(async move {
            tokio::select! {
                _ = c.recv() => {}
                _ = brk.recv() => {}
            }
        })
    }
}

/// Serves MCP Streamable HTTP at `/mcp` (and `GET /health`) on `listener` until `shutdown`.
pub async fn serve_http(
    handler: BatonMcp,
    listener: TcpListener,
    allowed_hosts: &[String],
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let stop = CancellationToken::new();
    let router = http_router(handler, allowed_hosts, HttpAccess::AsBatond, stop.child_token());
    // Without TCP_NODELAY, a response written in two parts (head, then body) waits for the
    // client's delayed ACK of the first: ~40 ms per tool call.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        })
        .await?;
    Ok(())
}

/// A session ended by `DELETE /mcp` is answered 204 No Content: rmcp says 202 Accepted,
/// which the official MCP SDKs take for a failure ("Session termination failed: 202"); every
/// revision of the Streamable HTTP transport lets a DELETE end the session, and 2xx-with-no-body
/// is 204. Other answers (400 without a session id, 404 for an unknown one) pass through.
async fn deleted_is_no_content(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let delete = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == axum::http::StatusCode::ACCEPTED {
        *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// Who may call `/mcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAccess {
    /// Whoever batond would accept: 401 with a bearer challenge otherwise ([`crate::access`]).
    AsBatond,
    /// Anyone; batond's refusals come back as tool errors.
    Open,
}

/// The HTTP routes: MCP Streamable HTTP at `/mcp`, liveness at `/health` and Prometheus metrics
/// at `/metrics`. Every MCP session gets its own handler (and subscriptions) over the shared
/// channel; `stop` ends them all.
pub fn http_router(
    handler: BatonMcp,
    allowed_hosts: &[String],
    access: HttpAccess,
    stop: CancellationToken,
) -> axum::Router {
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(stop);
    config = if allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(allowed_hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()))
    };
    let metrics = Arc::clone(handler.gateway().backend().metrics());
    let gate = BearerGate::new(handler.gateway().clone());
    let service = StreamableHttpService::new(
        move || Ok(handler.for_new_session()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut mcp =
        axum::Router::new().nest_service("/mcp", service).layer(axum::middleware::from_fn(deleted_is_no_content));
    if access == HttpAccess::AsBatond {
        mcp = mcp.layer(axum::middleware::from_fn_with_state(gate, require_bearer));
    }
    axum::Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/metrics",
            get(move || async move {
                ([(header::CONTENT_TYPE, baton_telemetry::metrics::CONTENT_TYPE)], metrics.render())
            }),
        )
        .merge(mcp)
}
