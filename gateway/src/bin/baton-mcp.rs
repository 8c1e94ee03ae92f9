//! `baton-mcp`: parses configuration and runs the gateway library.

use clap::Parser;

use baton_gateway::{BoxError, Config};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = Config::parse();
    let telemetry = baton_gateway::init_telemetry(config.log_format)?;
    let result = baton_gateway::run(config, baton_telemetry::signal::shutdown()).await;
    // Exports the spans still queued; blocking, so off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}
