//! Read replicas (`DATABASE_READ_URL`): PostgreSQL streaming replicas that serve reads the
//! primary need not.
//!
//! Which reads: ListEntries pages, searches, context windows read on a cache miss, and the
//! session and handoff lists (`PgStore::read`); everything that locks, writes or decides runs
//! on the primary. A replica serves a call only when it is
//!
//! - **answering**: its own health probe (every [`PROBE_EVERY`], on a connection of its own
//!   pool, bounded by `sql::PROBE_TIMEOUT`) succeeded last time; its circuit breaker is its own,
//!   so a dead replica never marks the primary down;
//! - **a replica**: in recovery (a node that was promoted, or a primary named by mistake, is
//!   never read from: its log positions are no longer the primary's);
//! - **not lagging**: it has replayed what the primary had written [`Replicas::max_lag`] ago
//!   (judged from the primary's positions sampled at each probe); and
//! - **caught up with the caller**: it has replayed the position the call requires
//!   (`freshness`), which is how a client reads its own writes.
//!
//! Otherwise the read goes to the primary: a lagging or dead replica costs nothing but its
//! share of reads, and a read never waits for one. A read that fails on a replica (a
//! connection cut, a query cancelled by a recovery conflict) is run again on the primary.
//! Replicas that qualify take reads in turn.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::{Error, Result};
use crate::store::freshness::Lsn;
use crate::store::sql::{PoolSample, Sql};

/// How often each replica, and the primary's position, is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The primary's current log position: how far its log is written, which (with
/// `synchronous_commit` on, PostgreSQL's default) is past the commit record of every
/// transaction that has returned, and always the end of a record a replica replays to, so an
/// idle replica catches up with it exactly.
pub(super) const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
/// Whether a node is a replica, and how far it has replayed the primary's log.
const REPLAYED: &str = "SELECT pg_is_in_recovery(), \
     (COALESCE(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) - '0/0'::pg_lsn)::bigint";

const UNKNOWN: u8 = 0;
const IN_RECOVERY: u8 = 1;
const NOT_IN_RECOVERY: u8 = 2;

/// One replica: its pool, its own circuit breaker, and what its last probe found.
#[derive(Debug)]
pub(super) struct Replica {
    pub(super) pool: PgPool,
    /// Statement metrics shared with the primary; the breaker is the replica's own.
    pub(super) sql: Sql,
    /// "PostgreSQL at host:port (…)", for logs.
    place: String,
    /// The log position it had replayed at its last probe (only ever grows on one node).
    replayed: AtomicU64,
    /// What its last probe found: [`UNKNOWN`] (never answered), [`IN_RECOVERY`] or
    /// [`NOT_IN_RECOVERY`].
    role: AtomicU8,
    /// Behind the primary by more than `max_lag` at its last probe.
    lagging: AtomicBool,
}

impl Replica {
    fn usable(&self) -> bool {
        self.sql.available()
            && self.role.load(Ordering::Relaxed) == IN_RECOVERY
            && !self.lagging.load(Ordering::Relaxed)
    }

    /// The position a read from this replica reflects at least.
    pub(super) fn replayed(&self) -> Lsn {
        Lsn(self.replayed.load(Ordering::Relaxed))
    }
}

/// The replicas of a [`PgStore`](super::PgStore).
#[derive(Debug)]
pub struct Replicas {
    nodes: Vec<Replica>,
    next: AtomicUsize,
    max_lag: Duration,
    /// The primary's positions over the last `max_lag` (and the newest before it).
    primary: std::sync::Mutex<VecDeque<(Instant, u64)>>,
}

impl Replicas {
    /// Pools (opened lazily: a replica down at start-up is skipped until it answers) of at
    /// most `max_connections` each for `urls`, and the lag past which a replica is skipped.
    pub fn open(
        urls: &[String],
        max_connections: u32,
        acquire_timeout: Duration,
        max_lag: Duration,
        primary_sql: &Sql,
    ) -> Result<Replicas> {
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let options: PgConnectOptions = url
                .parse()
                .map_err(|e| Error::Unavailable(format!("a read replica's PostgreSQL URL is not valid: {e}")))?;
            let place = super::describe(&options);
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(acquire_timeout)
                .connect_lazy_with(options);
            nodes.push(Replica {
                pool,
                sql: primary_sql.with_own_breaker(),
                place,
                replayed: AtomicU64::new(0),
                role: AtomicU8::new(UNKNOWN),
                lagging: AtomicBool::new(false),
            });
        }
        Ok(Replicas { nodes, next: AtomicUsize::new(0), max_lag, primary: Default::default() })
    }

    /// The next replica in turn that may serve a read requiring `required` (none required:
    /// any usable one), or `None`: read from the primary.
    pub(super) fn pick(&self, required: Option<Lsn>) -> Option<&Replica> {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.nodes[(start + i) % n])
            .find(|r| r.usable() && required.is_none_or(|lsn| r.replayed() >= lsn))
    }

    /// Probes the primary's position and every replica each [`PROBE_EVERY`] until `stop`.
    pub(super) fn spawn_monitor(self: &Arc<Self>, primary: PgPool, stop: CancellationToken) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                this.probe(&primary).await;
            }
        })
    }

    /// One round: the primary's position, then every replica at once.
    async fn probe(&self, primary: &PgPool) {
        let now = Instant::now();
        let position = tokio::time::timeout(
            crate::store::sql::PROBE_TIMEOUT,
            sqlx::query_scalar::<_, i64>(PRIMARY_POSITION).fetch_one(primary),
        )
        .await;
        if let Ok(Ok(p)) = position {
            let mut samples = self.primary.lock().unwrap_or_else(|e| e.into_inner());
            samples.push_back((now, p as u64));
            // Keep the newest sample at least max_lag old, and everything since.
            while samples.len() > 1 && samples[1].0 + self.max_lag <= now {
                samples.pop_front();
            }
        }
        let due = self.due(now);
        futures::future::join_all(self.nodes.iter().map(|r| probe_replica(r, due))).await;
    }

    /// What a replica must have replayed not to be lagging: the primary's position `max_lag`
    /// ago (`None` until the samples reach back that far).
    fn due(&self, now: Instant) -> Option<u64> {
        let samples = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        samples.front().filter(|(at, _)| *at + self.max_lag <= now).map(|&(_, p)| p)
    }

    /// Pool sizes, summed over the replicas, for `db_pool_connections{pool="replica"}`.
    pub(super) fn pool_sample(&self) -> PoolSample {
        let mut sample = PoolSample { pool: "replica", size: 0, idle: 0, max: 0 };
        for r in &self.nodes {
            sample.size += r.pool.size();
            sample.idle += r.pool.num_idle();
            sample.max += r.pool.options().get_max_connections();
        }
        sample
    }
}

async fn probe_replica(r: &Replica, due: Option<u64>) {
    let probe = r.sql.probe(sqlx::query_as::<_, (bool, i64)>(REPLAYED).fetch_one(&r.pool)).await;
    let Ok((in_recovery, replayed)) = probe else { return };
    let replayed = replayed as u64;
    r.replayed.fetch_max(replayed, Ordering::Relaxed);
    let role = if in_recovery { IN_RECOVERY } else { NOT_IN_RECOVERY };
    if r.role.swap(role, Ordering::Relaxed) != role && !in_recovery {
        tracing::warn!(replica = %r.place, "this read replica is not in recovery (promoted, or a primary): not reading from it");
    }
    let lagging = due.is_some_and(|due| replayed < due);
    if r.lagging.swap(lagging, Ordering::Relaxed) != lagging {
        if lagging {
            tracing::warn!(replica = %r.place, "read replica lagging: reading from the primary until it catches up");
        } else {
            tracing::info!(replica = %r.place, "read replica caught up");
        }
    }
}
