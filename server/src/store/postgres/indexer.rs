//! The background search indexer (migration 0007). Appends write an entry's `search` vector
//! NULL, so no append computes a tsvector or touches the GIN index inside its transaction;
//! this task fills the vectors afterwards, in batches of [`BATCH`] rows per transaction.
//!
//! It runs when appends commit (woken through [`PgStore`]'s `index_wake`, then waiting
//! [`GATHER`] so that one batch takes many appends) and every [`EVERY`] (rows written by other
//! replicas, by forks, or left by a failed batch). Replicas each run one: a batch locks the
//! rows it fills with `SKIP LOCKED`, so two indexers never fill the same row nor wait for each
//! other. It sees every tenant's rows (`Scope::AllTenants`, like the expiry sweeper).
//!
//! Freshness: searches also match rows whose vector is still NULL (`search.rs`), so an entry
//! is found as soon as its append commits; the indexer only decides how many rows a search
//! derives on the fly (normally the last moment's appends).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use crate::domain::Result;
use crate::store::{Background, Scope};

/// Rows filled per transaction.
pub const BATCH: u32 = 500;
/// How long the indexer lets appends gather after being woken, before it fills a batch.
const GATHER: Duration = Duration::from_millis(50);
/// How often it looks for rows to fill without being woken.
const EVERY: Duration = Duration::from_secs(5);
/// How long it waits after a failed batch (the database is down, or shutting down).
const BACKOFF: Duration = Duration::from_secs(1);

/// Fills the vectors of at most `$1` rows that have none, skipping rows another transaction
/// has locked (another replica's indexer, a redaction, a delete).
const FILL: &str = "UPDATE entries e SET search = baton_search_vector(e.content_text) \
     FROM (SELECT session_id, seq FROM entries WHERE search IS NULL ORDER BY session_id, seq LIMIT $1 \
           FOR NO KEY UPDATE SKIP LOCKED) AS p \
     WHERE e.session_id = p.session_id AND e.seq = p.seq";

impl PgStore {
    /// Fills the search vectors of at most `limit` entries that have none, in one transaction;
    /// returns how many it filled (fewer than `limit`: nothing else is waiting, unless other
    /// indexers hold the rest).
    pub async fn index_batch(&self, limit: u32) -> Result<u64> {
        let mut tx = self.begin(Scope::AllTenants).await?;
        let fill = sqlx::query(FILL).bind(i64::from(limit)).execute(&mut *tx);
        let filled = self.sql.run("UPDATE", "entries", fill).await?.rows_affected();
        self.sql.run("COMMIT", "", tx.commit()).await?;
        Ok(filled)
    }

    /// Fills batches until a batch comes back short.
    async fn index_pending(&self) -> Result<()> {
        while self.index_batch(BATCH).await? == u64::from(BATCH) {}
        Ok(())
    }

    async fn run_indexer(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.index_wake.notified() => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(GATHER) => {}
                    }
                }
                _ = tick.tick() => {}
            }
            if let Err(e) = self.index_pending().await {
                tracing::warn!(error = %e, "search indexing failed; searches still find the entries; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(BACKOFF) => {}
                }
            }
        }
    }
}

impl Background for PgStore {
    fn spawn_background(&self, stop: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(self.clone().run_indexer(stop.clone())),
            // Partition maintenance (`partitions`).
            tokio::spawn(self.clone().run_partition_maintenance(stop.clone())),
        ];
        if let Some(replicas) = &self.replicas {
            tasks.push(replicas.spawn_monitor(self.pool.clone(), stop));
        }
        tasks
    }
}
