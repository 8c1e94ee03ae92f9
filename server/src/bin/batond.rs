//! `batond`: parses configuration, binds listeners and runs the server library.

use clap::Parser;
use tokio::net::TcpListener;

use baton_server::auth::{self, AuthMode, KeySpec};
use baton_server::clock::{Clock as _, SystemClock};
use baton_server::config::{Cli, Command, Config, KeysCommand};
use baton_server::{BoxError, Listeners};

baton_server::use_jemalloc!();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Cli { command, config } = Cli::parse();
    let telemetry = match baton_server::init_telemetry(config.log_format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("batond: cannot set up telemetry: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = execute(command.unwrap_or(Command::Serve), config).await;
    // Exports the spans still queued; blocking, so off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error's own words ("cannot connect to PostgreSQL at …: Connection refused").
            eprintln!("batond: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, config: Config) -> Result<(), BoxError> {
    match command {
        Command::Migrate => {
            println!("{}", baton_server::migrate(&config).await?);
            Ok(())
        }
        Command::Probe(args) => Ok(baton_server::probe::run(args).await?),
        Command::Keys { command } => keys(command, config).await,
        Command::Serve => {
            if config.auth == AuthMode::None && !config.grpc_addr.ip().is_loopback() {
                tracing::warn!(
                    grpc = %config.grpc_addr,
                    "AUTHENTICATION IS OFF (--auth none) on a non-loopback address: anyone who can reach this \
                     port can read, write and delete every tenant's data. Use --auth api-key (BATON_AUTH=api-key) \
                     with keys from `batond keys create`, or listen on 127.0.0.1."
                );
            }
            // One process serves an embedded data directory at a time (the same lock as
            // `baton-mcp --embedded`'s), released when this process exits.
            let _lock = match &config.database_url {
                None => Some(lock_data_dir(&config.data_dir)?),
                Some(_) => None,
            };
            let grpc = TcpListener::bind(config.grpc_addr).await?;
            let admin = TcpListener::bind(config.admin_addr).await?;
            tracing::info!(grpc = %grpc.local_addr()?, admin = %admin.local_addr()?, store = if config.database_url.is_some() { "postgres" } else { "sqlite" }, "batond listening");
            baton_server::run(config, Listeners { grpc, admin }, baton_telemetry::signal::shutdown()).await
        }
    }
}

/// `batond keys create|list|revoke`, on the store `batond` serves.
async fn keys(command: KeysCommand, config: Config) -> Result<(), BoxError> {
    let store = baton_server::open_store(&config).await?;
    let now = SystemClock.now();
    match command {
        KeysCommand::Create { tenant, role, name, agent, expires_in } => {
            let hasher = auth::keys::Hasher::new(config.key_pepper.as_deref());
            let spec = KeySpec { tenant, role: role.parse()?, agent, name, expires_in };
            let issued = auth::issue(&*store, &hasher, spec, now).await?;
            let k = &issued.key;
            eprintln!(
                "created key {} for tenant {:?}, role {}{}; it is shown only once:",
                k.id,
                k.tenant,
                k.role.as_str(),
                k.agent.as_ref().map(|a| format!(", agent {a:?}")).unwrap_or_default()
            );
            println!("{}", issued.token);
        }
        KeysCommand::List { tenant, json } => {
            let keys = store.list_keys(tenant.as_deref()).await?;
            if !json {
                println!("{:<16}  {:<20}  {:<6}  {:<16}  {:<7}  NAME", "ID", "TENANT", "ROLE", "AGENT", "STATE");
            }
            for k in keys {
                let state = k.unusable(now).unwrap_or("active");
                if json {
                    let line = serde_json::json!({
                        "id": k.id, "tenant": k.tenant, "role": k.role.as_str(), "agent": k.agent, "name": k.name,
                        "state": state, "created_at": rfc3339(Some(k.created_at)), "expires_at": rfc3339(k.expires_at),
                        "revoked_at": rfc3339(k.revoked_at), "last_used_at": rfc3339(k.last_used_at),
                    });
                    println!("{line}");
                } else {
                    let agent = k.agent.as_deref().unwrap_or("-");
                    println!(
                        "{:<16}  {:<20}  {:<6}  {:<16}  {:<7}  {}",
                        k.id,
                        k.tenant,
                        k.role.as_str(),
                        agent,
                        state,
                        k.name
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let k = store.revoke_key(&id, now).await?;
            println!(
                "revoked key {} of tenant {:?}; servers refuse it within --auth-cache-secs ({} s)",
                k.id, k.tenant, config.auth_cache_secs
            );
        }
    }
    Ok(())
}

fn rfc3339(m: Option<baton_server::domain::Micros>) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m?.0) * 1000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// The exclusive lock on an embedded data directory's `baton.lock`.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, BoxError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    let path = dir.join("baton.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(format!(
            "the data directory {} is in use by another batond or `baton-mcp --embedded` (it holds {}); stop \
             that process, or call it over gRPC instead of serving the directory twice",
            dir.display(),
            path.display()
        )
        .into()),
        Err(fs4::TryLockError::Error(e)) => Err(e.into()),
    }
}
