//! `batond`'s configuration: flags, each with an environment variable and a default. The
//! README's configuration table lists the same keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::auth::{AuthMode, QuotaConfig};
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
    /// Manage API keys in the store batond serves (DATABASE_URL or --data-dir).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (the last line of the output is the key).
    Create {
        /// The tenant the key belongs to.
        #[arg(long)]
        tenant: String,
        /// reader (reads and streams), writer (+ appends, sessions, handoffs) or admin (+ any
        /// tenant via x-baton-tenant, lifecycle of any session).
        #[arg(long, value_parser = ["reader", "writer", "admin"])]
        role: String,
        /// A label for people.
        #[arg(long, default_value = "")]
        name: String,
        /// Bind the key to one agent: calls naming another agent are refused.
        #[arg(long)]
        agent: Option<String>,
        /// Expire the key after this long (e.g. 90d, 12h); default: never.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; servers stop accepting it within --auth-cache-secs.
    Revoke {
        /// The key's id (the 16 hex digits after `bk_`).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct Config {
    /// gRPC listen address.
    #[arg(long, global = true, env = "BATON_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address (/health, /ready).
    #[arg(long, global = true, env = "BATON_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// PostgreSQL URL. Unset: the embedded SQLite store under --data-dir.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory of the embedded store (used when DATABASE_URL is unset).
    #[arg(long, global = true, env = "BATON_DATA_DIR", default_value = "./baton-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL read replicas (streaming replicas of DATABASE_URL's database), comma-separated:
    /// list, search and window reads go to one that has replayed the caller's own writes and
    /// is not lagging, else to the primary. Unset: every read goes to DATABASE_URL.
    #[arg(long, global = true, env = "DATABASE_READ_URL", value_delimiter = ',', hide_env_values = true)]
    pub database_read_url: Vec<String>,
    /// A read replica further behind the primary than this is skipped until it catches up.
    #[arg(long, global = true, env = "BATON_READ_REPLICA_MAX_LAG_MS", default_value_t = 1000)]
    pub read_replica_max_lag_ms: u64,
    /// PostgreSQL URL migrations run with: the tables' owner, when batond serves as a role
    /// that owns nothing (the secure setup; see the README). Unset: DATABASE_URL.
    #[arg(long, global = true, env = "BATON_MIGRATE_DATABASE_URL", hide_env_values = true)]
    pub migrate_database_url: Option<String>,
    /// Most PostgreSQL connections in the pool.
    #[arg(long, global = true, env = "BATON_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Redis URL (redis://, rediss://, redis-cluster://, redis-sentinel://). Unset: no
    /// cache and no cross-replica bus (run a single replica).
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Connections in the Redis command pool.
    #[arg(long, global = true, env = "BATON_REDIS_POOL_SIZE", default_value_t = 4)]
    pub redis_pool_size: usize,
    /// Timeout of one Redis command in milliseconds; past it the call is served from the store.
    #[arg(long, global = true, env = "BATON_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// Newest entries cached per session (1 to 4096).
    #[arg(long, global = true, env = "BATON_CACHE_TAIL_LEN", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cache_tail_len: u32,
    /// Expiry of cached sessions and handoffs, in seconds.
    #[arg(long, global = true, env = "BATON_CACHE_TTL_SECS", default_value_t = 3600)]
    pub cache_ttl_secs: u64,
    /// Most bytes of entries held in the in-process L1 cache.
    #[arg(long, global = true, env = "BATON_L1_MAX_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub l1_max_bytes: u64,
    /// Run database migrations at start-up.
    #[arg(long, global = true, env = "BATON_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// Largest content of one entry, in bytes.
    #[arg(long, global = true, env = "BATON_MAX_ENTRY_BYTES", default_value_t = 1024 * 1024)]
    pub max_entry_bytes: usize,
    /// Largest append request (content and metadata of all entries), in bytes.
    #[arg(long, global = true, env = "BATON_MAX_APPEND_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_append_bytes: usize,
    /// Most entries in one append.
    #[arg(long, global = true, env = "BATON_MAX_ENTRIES_PER_APPEND", default_value_t = 1000)]
    pub max_entries_per_append: usize,
    /// How often expired handoffs and sessions are swept, in milliseconds.
    #[arg(long, global = true, env = "BATON_SWEEP_INTERVAL_MS", default_value_t = 1000)]
    pub sweep_interval_ms: u64,
    /// How long shutdown waits for in-flight calls, in seconds.
    #[arg(long, global = true, env = "BATON_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// On SIGTERM, how long to keep serving with `/ready` and gRPC health reporting
    /// not-serving, so load balancers move traffic away before connections are refused, in
    /// seconds (SIGINT, Ctrl-C, skips it; a second signal ends the drain).
    #[arg(long, global = true, env = "BATON_SHUTDOWN_DRAIN_SECS", default_value_t = 5)]
    pub shutdown_drain_secs: u64,
    /// How long a call waits for a PostgreSQL connection from the pool before it fails with
    /// UNAVAILABLE, in milliseconds (a database that does not answer fails calls at once
    /// through the circuit breaker instead).
    #[arg(long, global = true, env = "BATON_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub db_acquire_timeout_ms: u64,
    /// Log format on stderr.
    #[arg(long, global = true, env = "BATON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Authentication: `api-key` (every call presents a key from `batond keys create`) or
    /// `none` (every caller is an admin of the tenant it names; for loopback use only).
    #[arg(long, global = true, env = "BATON_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,
    /// Secret mixed into the hashes of API keys (HMAC-SHA-256). Set it before creating keys:
    /// changing it invalidates every key. Unset: a fixed label.
    #[arg(long, global = true, env = "BATON_KEY_PEPPER", hide_env_values = true)]
    pub key_pepper: Option<String>,
    /// How long a verified key is trusted without asking the store again, in seconds: the
    /// bound on how late a revocation takes effect, on every replica.
    #[arg(long, global = true, env = "BATON_AUTH_CACHE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub auth_cache_secs: u64,
    /// Sustained requests per second per principal (key, or tenant without auth); 0: no limit.
    #[arg(long, global = true, env = "BATON_RATE_LIMIT_RPS", default_value_t = 1000)]
    pub rate_limit_rps: u32,
    /// Requests a principal may make in a burst above the sustained rate.
    #[arg(long, global = true, env = "BATON_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub rate_limit_burst: u32,
    /// Most streams one principal holds open at once; 0: no cap.
    #[arg(long, global = true, env = "BATON_MAX_STREAMS_PER_PRINCIPAL", default_value_t = 1000)]
    pub max_streams_per_principal: usize,
    /// Most streams one connection holds open at once (also the HTTP/2 concurrent stream
    /// limit, plus room for unary calls); 0: no cap.
    #[arg(long, global = true, env = "BATON_MAX_STREAMS_PER_CONNECTION", default_value_t = 500)]
    pub max_streams_per_connection: usize,
    /// Replace high-confidence secrets (cloud and API keys, private keys, JWTs, passwords in
    /// URLs) in appended text with `[REDACTED:<type>]` before anything is stored or cached.
    #[arg(long, global = true, env = "BATON_REDACT_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub redact_secrets: bool,
    /// Delete expired sessions this long after they expired (e.g. 30d); 0: never.
    #[arg(long, global = true, env = "BATON_PURGE_EXPIRED_AFTER", default_value = "30d", value_parser = humantime::parse_duration)]
    pub purge_expired_after: Duration,
    /// Retention of sessions that set none: keep at least this many newest entries (0: no
    /// count bound). With --retention-max-age, entries outside both bounds go.
    #[arg(long, global = true, env = "BATON_RETENTION_KEEP_LATEST", default_value_t = 0)]
    pub retention_keep_latest: u64,
    /// Retention of sessions that set none: remove entries older than this (e.g. 90d; 0: no
    /// age bound).
    #[arg(long, global = true, env = "BATON_RETENTION_MAX_AGE", default_value = "0s", value_parser = humantime::parse_duration)]
    pub retention_max_age: Duration,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, global = true, env = "BATON_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the gRPC port (with --tls-cert).
    #[arg(long, global = true, env = "BATON_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve the admin port (/health, /ready, /metrics) over TLS too, with --tls-cert and
    /// --tls-key (probes then use HTTPS).
    #[arg(long, global = true, env = "BATON_ADMIN_TLS", requires = "tls_cert", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub admin_tls: bool,
    /// PEM CA certificates: clients must present a certificate signed by one (mTLS).
    #[arg(long, global = true, env = "BATON_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
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

    pub fn quotas(&self) -> QuotaConfig {
        QuotaConfig {
            rate_per_sec: self.rate_limit_rps,
            burst: self.rate_limit_burst.max(1),
            streams_per_principal: self.max_streams_per_principal,
            streams_per_connection: self.max_streams_per_connection,
        }
    }

    pub fn lifecycle(&self) -> crate::domain::service::LifecycleSettings {
        crate::domain::service::LifecycleSettings {
            purge_expired_after: (!self.purge_expired_after.is_zero()).then_some(self.purge_expired_after),
            default_retention: crate::domain::Retention {
                keep_latest: self.retention_keep_latest,
                max_age_micros: i64::try_from(self.retention_max_age.as_micros()).unwrap_or(i64::MAX),
            },
            redactor: self.redact_secrets.then(|| std::sync::Arc::new(baton_redact::Redactor::new())),
        }
    }

    pub fn auth_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.auth_cache_secs.max(1))
    }

    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_secs)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms.max(1))
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
