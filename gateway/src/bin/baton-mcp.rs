//! `baton-mcp`: parses configuration and runs the gateway library.

use std::process::ExitCode;

use clap::Parser;

use baton_gateway::{BoxError, Config};

baton_server::use_jemalloc!();

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(e.into()),
    };
    let result = runtime.block_on(async {
        let shutdown = baton_gateway::shutdown_signal()?;
        let telemetry = baton_gateway::init_telemetry(config.log_format)?;
        let result = baton_gateway::run(config, shutdown).await;
        // Exports the spans still queued; blocking, so off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        result
    });
    // Tokio reads stdin with a blocking read that nothing can cancel: after a signal ends the
    // stdio transport, waiting for that thread would hang until the client writes again.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(error: BoxError) -> ExitCode {
    eprintln!("baton-mcp: {error}");
    ExitCode::FAILURE
}
