//! `baton-mcp`: parses configuration and runs the gateway library.

use clap::Parser;

use baton_gateway::{BoxError, Config};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = Config::parse();
    let telemetry = baton_gateway::init_telemetry(config.log_format)?;
    let result = baton_gateway::run(config, shutdown_signal()).await;
    // Exports the spans still queued; blocking, so off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
