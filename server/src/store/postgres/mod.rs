//! PostgreSQL store.
//!
//! Every write that must be atomic runs in one transaction that first locks the row it is
//! about (the session for appends and new handoffs, the handoff for state changes), so seqs
//! and state transitions are serialized by PostgreSQL's row locks instead of retry loops.
//! Inbox cursors come from a per-agent head row upserted in the same transaction; locks are
//! always taken in the order handoff → session → inbox heads (heads sorted by tenant and
//! agent), so concurrent writers queue instead of deadlocking.
//!
//! Statements are built at run time and prepared and cached per connection by sqlx. Reads
//! that combine several facts (a context window, the pending inbox and its head) are single
//! statements so they see one snapshot. Timestamps are always the caller's `now`, never the
//! database clock, so the domain's clock is the only one.
//!
//! By aggregate: `sessions`, `entries` (with `append`, the write coalescer), `search`,
//! `handoffs`, `inbox`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

use super::rows::Moments;
use crate::domain::validate::is_key_char;
use crate::domain::{Error, Micros, Result};
use crate::store::Scope;
use crate::store::freshness::{self, Lsn};
use crate::store::sql::{PoolSample, Sql, pool_collector};
use replicas::Replicas;

/// `read!(store, scope, |sql, conn| body)`: runs `body` (an expression of type `Result<T>`
/// that may `.await`, with `sql: &Sql` and `conn: &mut PgConnection` in a transaction seeing
/// `scope`'s rows) on a read replica that may serve the call (`replicas`), else on the primary.
/// A read that fails on a replica, or whose value `keep` refuses, runs again on the primary.
/// Evaluates to `Result<(T, Option<Lsn>)>`: the value and, when a replica served it, the log
/// position that replica had replayed, which is also reported to the caller (`freshness`), so
/// its next reads see at least as much. (A macro rather than a function taking a closure: the
/// body borrows the caller's query for as long as it runs.)
macro_rules! read {
    ($store:expr, $scope:expr, |$sql:ident, $conn:ident| $body:expr) => {
        read!($store, $scope, keep |_v| true, |$sql, $conn| $body)
    };
    ($store:expr, $scope:expr, keep |$v:ident| $keep:expr, |$sql:ident, $conn:ident| $body:expr) => {
        async {
            let store: &$crate::store::postgres::PgStore = $store;
            let scope: $crate::store::Scope<'_> = $scope;
            let mut replica = store.replica();
            loop {
                let (sql, pool, at) = match replica {
                    Some(r) => (&r.sql, &r.pool, Some(r.replayed())),
                    None => (&store.sql, &store.pool, None),
                };
                let attempt: $crate::domain::Result<_> = async {
                    let begin = pool.begin_with($crate::store::postgres::begin_sql(scope)?);
                    let mut tx = sql.run("BEGIN", "", begin).await?;
                    let $sql: &$crate::store::sql::Sql = sql;
                    let $conn: &mut sqlx::PgConnection = &mut tx;
                    $body
                }
                .await;
                match (attempt, at) {
                    (Ok(value), Some(at)) if { let $v = &value; $keep } => {
                        $crate::store::freshness::saw(at);
                        break Ok((value, Some(at)));
                    }
                    (result, None) => break result.map(|value| (value, None)),
                    (Ok(_), Some(_)) => replica = None,
                    (Err(e), Some(_)) => {
                        tracing::debug!(error = %e, "a read failed on a replica: reading from the primary");
                        replica = None;
                    }
                }
            }
        }
    };
}

mod append;
binders!(sqlx::Postgres);

mod entries;
mod handoffs;
/// Statements whose plans the tests check (`tests/partitions.rs`); not an interface.
#[doc(hidden)]
pub mod plans {
    pub use super::entries::WINDOW;
    pub use super::handoffs::SUMMARY_STATE;
    pub use crate::store::queries::TAIL_START;
}
mod inbox;
mod indexer;
mod keys;
mod lifecycle;
mod partitions;
pub mod replicas;
mod search;
mod sessions;

/// Append workers: each writes one coalesced batch at a time, so one can commit while the
/// next batch gathers.
const APPEND_WORKERS: usize = 2;

/// PostgreSQL-backed [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Coalesces concurrent appends into shared transactions (`append`).
    appender: append::Appender,
    sql: Sql,
    /// The health probe's own connection, outside the pool: a probe never queues behind
    /// busy calls, and a stopped database breaks it at once (while the pool would quietly
    /// retry refused connections until its acquire timeout).
    probe: Arc<tokio::sync::Mutex<Option<sqlx::PgConnection>>>,
    /// Wakes the search indexer (`indexer`) after appends commit.
    index_wake: Arc<tokio::sync::Notify>,
    /// Read replicas (`replicas`), when configured.
    replicas: Option<Arc<Replicas>>,
}

impl PgStore {
    /// Opens a pool of at most `max_connections` to `url`. A caller waits at most
    /// `acquire_timeout` for a connection before the store reports itself unavailable.
    ///
    /// The first connection is made directly, so that a database that cannot be reached fails
    /// at once with what is wrong and where ("connection refused", "database … does not
    /// exist", a rejected password), not with the pool's timeout.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<PgStore> {
        use sqlx::Connection as _;
        let options: PgConnectOptions =
            url.parse().map_err(|e| Error::Unavailable(format!("the PostgreSQL URL is not valid: {e}")))?;
        let place = describe(&options);
        let first = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                Error::Unavailable(format!("cannot connect to {place}: no answer within {CONNECT_TIMEOUT:?}"))
            })?
            .map_err(|e| Error::Unavailable(format!("cannot connect to {place}: {}", connect_cause(&e))))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        drop(first);
        let sql = Sql::new("postgresql");
        let appender = append::Appender::start(pool.clone(), sql.clone(), APPEND_WORKERS, false);
        Ok(PgStore { pool, appender, sql, probe: Arc::default(), index_wake: Arc::default(), replicas: None })
    }

    /// Serves reads from replicas of this database as `replicas` says (`replicas::Replicas`):
    /// most connections `max_connections` per replica, skipped when behind by more than
    /// `max_lag`. Writes then report their log position to the caller (`freshness`).
    pub fn with_replicas(mut self, urls: &[String], max_connections: u32, max_lag: Duration) -> Result<PgStore> {
        if urls.is_empty() {
            return Ok(self);
        }
        let acquire = self.pool.options().get_acquire_timeout();
        let replicas = Replicas::open(urls, max_connections, acquire, max_lag, &self.sql)?;
        self.appender = append::Appender::start(self.pool.clone(), self.sql.clone(), APPEND_WORKERS, true);
        self.replicas = Some(Arc::new(replicas));
        Ok(self)
    }

    /// Brings the schema up to date (`migrations/postgres`). Replicas may run this
    /// concurrently: sqlx serializes migrators with an advisory lock. Then makes the entries
    /// partitions new sessions need (`partitions`; should that wait too long for a lock, the
    /// DEFAULT partition takes their rows until the server's maintenance makes them).
    pub async fn migrate(&self) -> Result<()> {
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => {
                if let Err(e) = self.ensure_partitions().await {
                    tracing::warn!(error = %e, "could not make the entries partitions yet; the server's maintenance retries");
                }
                Ok(())
            }
            Err(sqlx::migrate::MigrateError::Execute(e)) => Err(e.into()),
            Err(e) => {
                tracing::error!(error = %e, "database migration failed");
                Err(Error::Internal(format!("database migration failed: {e}")))
            }
        }
    }

    /// The versions of the migrations applied so far (none on an empty database), and what
    /// this build's migrations are: `batond migrate` reports the difference.
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        let read = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await;
        match read {
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Ok(Vec::new()),
            other => Ok(other?),
        }
    }

    /// Where this store connects, for messages: host, port, database and user.
    pub fn describe(&self) -> String {
        describe(&self.pool.connect_options())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The schema of `migrations/postgres`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// "PostgreSQL at host:port (database …, user …)", for messages (never the password).
fn describe(o: &PgConnectOptions) -> String {
    format!(
        "PostgreSQL at {}:{} (database {:?}, user {:?})",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or(o.get_username()),
        o.get_username()
    )
}

/// How long start-up waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection failed, in words: the database's own message (a missing database, a
/// rejected password) or the I/O error ("Connection refused").
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

impl Moments for Postgres {
    type Moment = OffsetDateTime;

    fn micros(t: OffsetDateTime) -> Micros {
        // OffsetDateTime spans ±9999 years, well inside i64 microseconds.
        Micros(i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX))
    }

    fn moment(m: Micros) -> Result<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.0) * 1000)
            .map_err(|_| Error::Internal(format!("timestamp {} µs since the epoch is out of range", m.0)))
    }
}

/// A moment as `timestamptz`.
fn ts(m: Micros) -> Result<OffsetDateTime> {
    Postgres::moment(m)
}

/// The statement that opens a transaction seeing only `scope`'s rows: row-level security
/// (migration 0003) compares each row's tenant with `app.tenant_id` (a comma-separated list
/// for a coalesced append batch), set for this transaction only (`set_config(.., true)`), so a
/// pooled connection never carries one call's tenant into the next. BEGIN and the setting go
/// in one round trip. Tenants are keys (ASCII letters, digits and `. _ : @ -`), checked again
/// here because they are written into the statement.
pub(super) fn begin_sql(scope: Scope<'_>) -> Result<String> {
    let tenants = match scope {
        Scope::AllTenants => return Ok("BEGIN; SELECT set_config('app.all_tenants', 'on', true)".into()),
        Scope::Tenant(t) => t.to_owned(),
        Scope::Tenants(ts) => ts.join(","),
    };
    let ok = |t: &str| !t.is_empty() && t.chars().all(is_key_char);
    if tenants.split(',').all(ok) {
        Ok(format!("BEGIN; SELECT set_config('app.tenant_id', '{tenants}', true)"))
    } else {
        Err(Error::Internal(format!("refusing to scope a transaction to tenant(s) {tenants:?}")))
    }
}

impl PgStore {
    /// A transaction that sees only `scope`'s rows. Reads let it roll back on drop (sent
    /// with the connection's next statement); writes commit.
    pub(super) async fn begin(&self, scope: Scope<'_>) -> Result<Transaction<'static, Postgres>> {
        Ok(self.sql.run("BEGIN", "", self.pool.begin_with(begin_sql(scope)?)).await?)
    }

    /// The replica the current call's next read may go to (`replicas`), if any.
    fn replica(&self) -> Option<&replicas::Replica> {
        self.replicas.as_ref().and_then(|r| r.pick(freshness::required()))
    }

    /// Runs a write; once it has committed, with replicas, reports the primary's log position
    /// (past the commit) to the calling client, so that its next reads see the write
    /// (`freshness`).
    pub(super) async fn positioned<T>(&self, write: impl Future<Output = Result<T>>) -> Result<T> {
        let written = write.await?;
        if self.replicas.is_some() && freshness::in_call() {
            let read = sqlx::query_scalar::<_, i64>(replicas::PRIMARY_POSITION).fetch_one(&self.pool);
            match self.sql.run("SELECT", "", read).await {
                Ok(position) => freshness::saw(Lsn(position as u64)),
                Err(e) => tracing::debug!(error = %e, "could not read the log position after a write"),
            }
        }
        Ok(written)
    }

    /// Succeeds when the database answers a trivial query on the probe's own connection
    /// (made again when missing or broken).
    async fn ping_database(&self) -> Result<()> {
        use sqlx::Connection as _;
        let probe = async {
            // Taken out while in use: a probe cut short by its timeout leaves no half-used
            // connection behind.
            let taken = self.probe.lock().await.take();
            let mut conn = match taken {
                Some(conn) => conn,
                None => sqlx::PgConnection::connect_with(&self.pool.connect_options()).await?,
            };
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            *self.probe.lock().await = Some(conn);
            Ok(())
        };
        Ok(self.sql.probe(probe).await?)
    }

    /// Statement durations and pool usage.
    async fn instance_id(&self) -> Result<String> {
        let read = sqlx::query_scalar("SELECT id FROM baton_instance").fetch_one(&self.pool);
        Ok(self.sql.run("SELECT", "baton_instance", read).await?)
    }

    fn pool_collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let pool = self.pool.clone();
        let replicas = self.replicas.clone();
        let pools = pool_collector(move || {
            let primary = PoolSample {
                pool: "primary",
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            };
            std::iter::once(primary).chain(replicas.as_ref().map(|r| r.pool_sample())).collect()
        });
        vec![self.sql.collector(), pools]
    }
}

backend_store!(PgStore);
