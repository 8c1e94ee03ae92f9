//! `baton-mcp`: parses configuration and runs the gateway library.

use clap::Parser;

use baton_gateway::{BoxError, Config};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = Config::parse();
    baton_gateway::init_logging(config.log_format);
    baton_gateway::run(config, shutdown_signal()).await
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
