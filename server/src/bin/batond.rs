//! `batond`: parses configuration, binds listeners and runs the server library.

use clap::Parser;
use tokio::net::TcpListener;

use baton_server::config::{Cli, Command, Config};
use baton_server::{BoxError, Listeners};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Cli { command, config } = Cli::parse();
    let telemetry = baton_server::init_telemetry(config.log_format)?;
    let result = execute(command.unwrap_or(Command::Serve), config).await;
    // Exports the spans still queued; blocking, so off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn execute(command: Command, config: Config) -> Result<(), BoxError> {
    match command {
        Command::Migrate => {
            let mut config = config;
            config.migrate = true;
            baton_server::open_store(&config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Probe(args) => Ok(baton_server::probe::run(args).await?),
        Command::Serve => {
            let grpc = TcpListener::bind(config.grpc_addr).await?;
            let admin = TcpListener::bind(config.admin_addr).await?;
            tracing::info!(grpc = %grpc.local_addr()?, admin = %admin.local_addr()?, store = if config.database_url.is_some() { "postgres" } else { "sqlite" }, "batond listening");
            baton_server::run(config, Listeners { grpc, admin }, baton_telemetry::signal::shutdown()).await
        }
    }
}
