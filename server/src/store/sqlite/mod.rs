//! Embedded SQLite store, used when `batond` runs without a `DATABASE_URL`.
//!
//! One file (`baton.db` in the data directory) in WAL mode, so readers never block the
//! writer. Writes go through a pool of exactly one connection and every write transaction
//! starts with `BEGIN IMMEDIATE`: writers queue in the pool instead of racing for SQLite's
//! lock, no transaction ever has to upgrade a read lock (the source of `SQLITE_BUSY` in WAL
//! mode), and seqs and inbox cursors are gap-free because only one writer exists at a time.
//! Reads use a separate pool of read-only connections.
//!
//! By aggregate, as the PostgreSQL store: `sessions`, `entries`, `search`, `handoffs`, `inbox`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use super::rows::Moments;
use crate::domain::{Error, Micros, Result};
use crate::store::sql::{PoolSample, Sql, pool_collector};

binders!(sqlx::Sqlite);

mod entries;
mod handoffs;
mod inbox;
mod keys;
mod lifecycle;
mod search;
mod sessions;

/// The database file inside the data directory.
const DB_FILE: &str = "baton.db";
/// Held while migrating, so processes sharing the directory migrate one at a time.
const MIGRATE_LOCK: &str = "baton.migrate.lock";
/// Read connections. Reads are short; a few cover a single node's concurrency.
const READERS: u32 = 4;
/// How long a connection waits for a lock held by another process on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema of `migrations/sqlite`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The embedded store. Cloning is cheap and shares the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: the writer.
    write: SqlitePool,
    /// Read-only connections.
    read: SqlitePool,
    sql: Sql,
    /// The health probe's own read-only connection, outside the pools: a probe never waits
    /// behind a burst of reads (which would read as an outage and open the breaker).
    probe: std::sync::Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `baton.db` in `data_dir` and brings its schema up to date.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot create the data directory {}: {e}", data_dir.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // The writer stays open: reconnecting would put opening the file and setting its
        // pragmas on some append's path.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone().create_if_missing(true))
            .await?;
        // Migrations of one file are serialized across processes (a `batond keys` command
        // starting while a server starts on a fresh directory): SQLite's migrator takes no lock.
        let lock_path = data_dir.join(MIGRATE_LOCK);
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path)?;
            fs4::FileExt::lock(&file)?;
            Ok(file)
        })
        .await
        .map_err(|e| Error::Internal(format!("migration lock task: {e}")))?
        .map_err(|e| Error::Unavailable(format!("cannot lock {MIGRATE_LOCK} in {}: {e}", data_dir.display())))?;
        let migrated = MIGRATOR.run(&write).await;
        drop(lock);
        migrated.map_err(|e| {
            tracing::error!(error = %e, "embedded store migration failed");
            Error::Internal(format!("cannot migrate the embedded store: {e}"))
        })?;
        // Opened after the migration so the file and its WAL exist.
        let read = SqlitePoolOptions::new().max_connections(READERS).connect_with(options.read_only(true)).await?;
        Ok(SqliteStore { write, read, sql: Sql::new("sqlite"), probe: Default::default() })
    }

    /// The database file of the embedded store in `data_dir`.
    pub fn file(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(DB_FILE)
    }

    /// The versions of the migrations applied to the store in `data_dir` (none when it has no
    /// database yet), read without creating or changing anything.
    pub async fn schema_versions_at(data_dir: &Path) -> Result<Vec<i64>> {
        use sqlx::Connection as _;
        let file = Self::file(data_dir);
        if !file.exists() {
            return Ok(Vec::new());
        }
        let mut conn =
            sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&file).read_only(true)).await?;
        let has_table: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')")
                .fetch_one(&mut conn)
                .await?;
        if !has_table {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut conn)
            .await?)
    }

    /// Closes both pools; the last connection to close checkpoints the WAL into the file.
    pub async fn close(&self) {
        use sqlx::Connection as _;
        if let Some(probe) = self.probe.lock().await.take() {
            let _ = probe.close().await;
        }
        self.read.close().await;
        self.write.close().await;
    }

    /// A write transaction that holds SQLite's write lock from its first statement.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.sql.run("BEGIN", "", self.write.begin_with("BEGIN IMMEDIATE")).await?)
    }

    /// A read transaction: one snapshot for several statements.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.sql.run("BEGIN", "", self.read.begin()).await?)
    }

    async fn commit(&self, tx: Transaction<'static, Sqlite>) -> Result<()> {
        Ok(self.sql.run("COMMIT", "", tx.commit()).await?)
    }
}

/// SQLite keeps moments as microseconds since the epoch.
impl Moments for Sqlite {
    type Moment = i64;

    fn micros(t: i64) -> Micros {
        Micros(t)
    }

    fn moment(m: Micros) -> Result<i64> {
        Ok(m.0)
    }
}

impl SqliteStore {
    /// Runs a write. The embedded store has no replicas, so there is no position to report.
    async fn positioned<T>(&self, write: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        write.await
    }

    /// Succeeds when the database answers a trivial query on the probe's own connection.
    async fn ping_database(&self) -> Result<()> {
        use sqlx::Connection as _;
        let probe = async {
            // Taken out while in use: a probe cut short by its timeout leaves nothing half-used.
            let taken = self.probe.lock().await.take();
            let mut conn = match taken {
                Some(conn) => conn,
                None => sqlx::SqliteConnection::connect_with(&self.read.connect_options()).await?,
            };
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            *self.probe.lock().await = Some(conn);
            Ok(())
        };
        Ok(self.sql.probe(probe).await?)
    }

    /// Statement durations and pool usage.
    async fn instance_id(&self) -> Result<String> {
        let read = sqlx::query_scalar("SELECT id FROM baton_instance").fetch_one(&self.read);
        Ok(self.sql.run("SELECT", "baton_instance", read).await?)
    }

    fn pool_collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let (read, write) = (self.read.clone(), self.write.clone());
        let pools = pool_collector(move || {
            [("read", &read), ("write", &write)]
                .into_iter()
                .map(|(name, pool)| PoolSample {
                    pool: name,
                    size: pool.size(),
                    idle: pool.num_idle(),
                    max: pool.options().get_max_connections(),
                })
                .collect()
        });
        vec![self.sql.collector(), pools]
    }
}

backend_store!(SqliteStore);
