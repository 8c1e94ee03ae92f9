//! One span and one `db_query_duration_seconds` sample per SQL statement.
//!
//! Spans follow OpenTelemetry's database conventions (`db.system`, `db.operation`,
//! `db.sql.table`, named `"{operation} {table}"`) and never carry the statement's bound
//! values. They are DEBUG spans and children of the request they serve: statements run outside
//! any request (the expiry sweeper, health pings) are measured but not traced, so an idle server
//! exports nothing.
//!
//! [`Sql`] is also the store's circuit breaker: a failure that says the database cannot be
//! reached opens it, and until a health probe ([`Sql::probe`]) reaches the database again every
//! statement fails at once with an I/O error (UNAVAILABLE with RetryInfo, upstream), and calls
//! waiting for a connection give up, instead of each waiting out the pool's acquire timeout.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus::HistogramVec;
use tracing::Instrument as _;
use tracing::field::Empty;

use baton_telemetry::metrics::{Sampled, gauge, histogram};

/// Times and traces the statements of one store, behind its circuit breaker.
#[derive(Clone)]
pub struct Sql {
    system: &'static str,
    duration: HistogramVec,
    breaker: Arc<Breaker>,
}

/// How long a health probe may take before it counts as a failure.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Open while the database is known to be unreachable.
#[derive(Default)]
struct Breaker {
    open: AtomicBool,
    /// Wakes the calls waiting for a connection when the breaker opens.
    opened: tokio::sync::Notify,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    fn trip(&self, system: &str, cause: &dyn std::fmt::Display) {
        if !self.open.swap(true, Ordering::Relaxed) {
            tracing::warn!(db.system = system, error = %cause, "database unreachable: failing calls at once until it answers");
        }
        self.opened.notify_waiters();
    }

    fn close(&self, system: &str) {
        if self.open.swap(false, Ordering::Relaxed) {
            tracing::info!(db.system = system, "database answers again");
        }
    }
}

/// Failures that say the database cannot be reached at all (as opposed to a statement's own
/// error, a conflict, or a pool busy with other calls): I/O, TLS, and the connection-class
/// SQLSTATEs (08…, and 57P01–57P03: the server is shutting down or starting).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

fn circuit_open() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, "the database is unreachable (circuit open)"))
}

impl std::fmt::Debug for Sql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql").field("system", &self.system).finish_non_exhaustive()
    }
}

impl Sql {
    /// `system`: `postgresql` or `sqlite`, as OpenTelemetry names them.
    pub fn new(system: &'static str) -> Sql {
        let duration = histogram(
            "db_query_duration_seconds",
            "SQL statements, by database, operation and main table, from sending to the last row.",
            &["system", "operation", "table"],
        );
        Sql { system, duration, breaker: Arc::default() }
    }

    /// The same statement metrics behind a circuit breaker of its own: another database of
    /// the store (a read replica) whose outage must not mark this one down.
    pub fn with_own_breaker(&self) -> Sql {
        Sql { system: self.system, duration: self.duration.clone(), breaker: Arc::default() }
    }

    /// False while the circuit breaker is open (the database is unreachable).
    pub fn available(&self) -> bool {
        !self.breaker.is_open()
    }

    /// Runs a health probe: past the open breaker, bounded by [`PROBE_TIMEOUT`]; success
    /// closes the breaker, an unreachable database (or no answer in time) opens it.
    pub async fn probe<T>(&self, statement: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
        let result = match tokio::time::timeout(PROBE_TIMEOUT, statement).await {
            Ok(result) => result,
            Err(_) => {
                let e = sqlx::Error::PoolTimedOut;
                self.breaker.trip(self.system, &format_args!("no answer to a health probe within {PROBE_TIMEOUT:?}"));
                return Err(e);
            }
        };
        match &result {
            Ok(_) => self.breaker.close(self.system),
            Err(e) if unreachable(e) || matches!(e, sqlx::Error::PoolTimedOut) => self.breaker.trip(self.system, e),
            Err(_) => {}
        }
        result
    }

    /// The histogram, for the server's registry.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.duration.clone())
    }

    /// Runs one statement (or BEGIN / COMMIT / ROLLBACK, with an empty `table`).
    pub async fn run<T>(
        &self,
        operation: &'static str,
        table: &'static str,
        statement: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            let name = if table.is_empty() { operation.to_owned() } else { format!("{operation} {table}") };
            tracing::debug_span!(
                "sql",
                otel.name = name,
                otel.kind = "client",
                db.system = self.system,
                db.operation = operation,
                db.sql.table = (!table.is_empty()).then_some(table),
                db.response.status_code = Empty,
                error.type = Empty,
                otel.status_description = Empty,
            )
        };
        if self.breaker.is_open() {
            return Err(circuit_open());
        }
        let start = Instant::now();
        let result = if operation == "BEGIN" {
            // Waiting for a connection: give up as soon as the breaker opens.
            let opened = self.breaker.opened.notified();
            tokio::select! {
                biased;
                result = statement.instrument(span.clone()) => result,
                () = opened => Err(circuit_open()),
            }
        } else {
            statement.instrument(span.clone()).await
        };
        if let Err(e) = &result
            && unreachable(e)
        {
            self.breaker.trip(self.system, e);
        }
        self.duration.with_label_values(&[self.system, operation, table]).observe(start.elapsed().as_secs_f64());
        if let Err(e) = &result
            && !span.is_none()
        {
            let sqlstate = e.as_database_error().and_then(|d| d.code());
            if let Some(code) = &sqlstate {
                span.record("db.response.status_code", code.as_ref());
            }
            span.record("error.type", sqlstate.as_deref().unwrap_or_else(|| error_kind(e)));
            span.record("otel.status_description", tracing::field::display(e));
        }
        result
    }
}

/// `error.type` of a failure that is not the database's own (which is its SQLSTATE).
fn error_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        _ => "sqlx",
    }
}

/// The size of a connection pool when scraped.
pub struct PoolSample {
    /// `primary` (PostgreSQL), `read` or `write` (SQLite).
    pub pool: &'static str,
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: usize,
    pub max: u32,
}

/// `db_pool_connections{pool, state}` (state `idle` or `in_use`) and
/// `db_pool_max_connections{pool}`, read from the pools when scraped.
pub fn pool_collector(sample: impl Fn() -> Vec<PoolSample> + Send + 'static) -> Box<dyn prometheus::core::Collector> {
    let connections = gauge("db_pool_connections", "Open database connections, by pool and state.", &["pool", "state"]);
    let max = gauge("db_pool_max_connections", "Most connections a pool opens.", &["pool"]);
    let (c, m) = (connections.clone(), max.clone());
    Box::new(Sampled::new(vec![Box::new(connections), Box::new(max)], move || {
        for s in sample() {
            let idle = i64::try_from(s.idle).unwrap_or(i64::MAX);
            c.with_label_values(&[s.pool, "idle"]).set(idle);
            c.with_label_values(&[s.pool, "in_use"]).set(i64::from(s.size).saturating_sub(idle).max(0));
            m.with_label_values(&[s.pool]).set(i64::from(s.max));
        }
    }))
}
