//! `batond`'s configuration: flags, each with an environment variable and a default. The
//! README's configuration table lists the same keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::domain::validate::Limits;

#[derive(Debug, Parser)]
#[command(name = "batond", version, about = "Baton: context and handoff service for AI agents (gRPC)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC and admin HTTP (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check a running batond end to end (health, create a session, append and read back
    /// an entry); exits 0 when it works, 1 with the failing step otherwise.
    Probe(crate::probe::ProbeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// gRPC listen address.
    #[arg(long, env = "BATON_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address (/health, /ready).
    #[arg(long, env = "BATON_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// PostgreSQL URL. Unset: the embedded SQLite store under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory of the embedded store (used when DATABASE_URL is unset).
    #[arg(long, env = "BATON_DATA_DIR", default_value = "./baton-data")]
    pub data_dir: PathBuf,
    /// Most PostgreSQL connections in the pool.
    #[arg(long, env = "BATON_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Redis URL (redis://, rediss://, redis-cluster://, redis-sentinel://). Unset: no
    /// cache and no cross-replica bus (run a single replica).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Connections in the Redis command pool.
    #[arg(long, env = "BATON_REDIS_POOL_SIZE", default_value_t = 4)]
    pub redis_pool_size: usize,
    /// Timeout of one Redis command in milliseconds; past it the call is served from the store.
    #[arg(long, env = "BATON_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// Newest entries cached per session (1 to 4096).
    #[arg(long, env = "BATON_CACHE_TAIL_LEN", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cache_tail_len: u32,
    /// Expiry of cached sessions and handoffs, in seconds.
    #[arg(long, env = "BATON_CACHE_TTL_SECS", default_value_t = 3600)]
    pub cache_ttl_secs: u64,
    /// Most bytes of entries held in the in-process L1 cache.
    #[arg(long, env = "BATON_L1_MAX_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub l1_max_bytes: u64,
    /// Run database migrations at start-up.
    #[arg(long, env = "BATON_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// Largest content of one entry, in bytes.
    #[arg(long, env = "BATON_MAX_ENTRY_BYTES", default_value_t = 1024 * 1024)]
    pub max_entry_bytes: usize,
    /// Largest append request (content and metadata of all entries), in bytes.
    #[arg(long, env = "BATON_MAX_APPEND_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_append_bytes: usize,
    /// Most entries in one append.
    #[arg(long, env = "BATON_MAX_ENTRIES_PER_APPEND", default_value_t = 1000)]
    pub max_entries_per_append: usize,
    /// How often expired handoffs and sessions are swept, in milliseconds.
    #[arg(long, env = "BATON_SWEEP_INTERVAL_MS", default_value_t = 1000)]
    pub sweep_interval_ms: u64,
    /// How long shutdown waits for in-flight calls, in seconds.
    #[arg(long, env = "BATON_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Log format on stderr.
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_entry_bytes: self.max_entry_bytes,
            max_append_bytes: self.max_append_bytes,
            max_entries_per_append: self.max_entries_per_append,
        }
    }

    /// The cache settings, when Redis is configured.
    pub fn cache(&self) -> Option<crate::cache::CacheConfig> {
        self.redis_url.as_ref().map(|url| crate::cache::CacheConfig {
            redis_url: url.clone(),
            pool_size: self.redis_pool_size,
            tail_len: self.cache_tail_len as usize,
            ttl: Duration::from_secs(self.cache_ttl_secs.max(1)),
            l1_max_bytes: self.l1_max_bytes,
            command_timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
        })
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms.max(10))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The documented defaults, as if no flag were given, whatever the environment holds: tests
    /// and embedders get the same configuration on every machine (an exported `REDIS_URL` must
    /// not turn a cache on behind a test's back).
    pub fn defaults() -> Self {
        let command = Cli::command().mut_args(|a| a.env(None));
        let matches = command.get_matches_from(["batond"]);
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| panic!("the defaults parse: {e}")).config
    }
}
