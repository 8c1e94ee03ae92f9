//! Partition maintenance (migration 0009). `entries` and `appends` are partitioned by ranges
//! of session id; batond, which connects as a role that owns nothing and cannot run DDL, keeps
//! them up through the migration's SECURITY DEFINER functions:
//!
//! - `baton_ensure_partitions()` makes the partitions of the range that new sessions get ids
//!   in and of the ranges ahead, and moves into them any rows the DEFAULT partition caught. It
//!   runs right after migrating ([`PgStore::migrate`]), then at start and every [`EVERY`].
//! - `baton_drop_ranges(NULL)` drops the partitions of a range with no session left (all
//!   deleted, or purged around a legal hold) once newer sessions get ids above it: one DROP
//!   instead of an empty table kept forever. It runs every [`EVERY`]. The purge sweep calls it
//!   too, with its cut-off (`lifecycle`), to drop the ranges wholly due for the purge before
//!   it deletes sessions one by one.
//!
//! Each replica runs this task; the functions take turns on an advisory lock, and give up on a
//! table lock they cannot get within 200 ms (a long query on `entries`, or a transaction that
//! waits for them in turn) rather than make appends queue behind their DDL. Until they succeed
//! (retried every [`RETRY`]), new sessions' rows wait in the DEFAULT partition: no append
//! fails for want of a partition.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{PgStore, ts};
use crate::domain::{Micros, Result};

/// How often the partitions are checked.
const EVERY: Duration = Duration::from_secs(60);
/// How soon a failed round is retried.
const RETRY: Duration = Duration::from_secs(10);

impl PgStore {
    /// Makes the partitions new sessions need (the current range and the ones ahead);
    /// returns how many ranges it added.
    pub async fn ensure_partitions(&self) -> Result<u32> {
        let q = sqlx::query_scalar("SELECT baton_ensure_partitions()").fetch_one(&self.pool);
        let added: i32 = self.sql.run("SELECT", "entries", q).await?;
        Ok(u32::try_from(added).unwrap_or_default())
    }

    /// Drops the partitions (entries and appends) of the closed ranges with no session left,
    /// or, given `due_before`, none but sessions due for the purge (expired at or before it,
    /// not held); returns how many ranges.
    pub async fn drop_ranges(&self, due_before: Option<Micros>) -> Result<u32> {
        let due_before = due_before.map(ts).transpose()?;
        let q = sqlx::query_scalar("SELECT baton_drop_ranges($1)").bind(due_before).fetch_one(&self.pool);
        let dropped: i32 = self.sql.run("SELECT", "entries", q).await?;
        Ok(u32::try_from(dropped).unwrap_or_default())
    }

    async fn maintain_partitions(&self) -> Result<()> {
        let added = self.ensure_partitions().await?;
        let dropped = self.drop_ranges(None).await?;
        if added > 0 || dropped > 0 {
            tracing::info!(added, dropped, "entries partitions maintained");
        }
        Ok(())
    }

    /// Maintains the partitions at start and every [`EVERY`] until `stop`.
    pub(super) async fn run_partition_maintenance(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            while let Err(e) = self.maintain_partitions().await {
                tracing::warn!(error = %e, "partition maintenance failed; new sessions' rows land in the DEFAULT partition until it succeeds; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}
