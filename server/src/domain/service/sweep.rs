//! Expiry: pending handoffs past their deadline and sessions past their time to live, swept
//! on a timer by a task that `serve` owns.

use std::sync::Arc;
use std::time::Duration;

use super::Baton;
use crate::domain::Result;

/// Expired sessions and handoffs handled per sweep query.
const SWEEP_BATCH: u32 = 500;
/// How often sessions are compacted by their retention.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

impl Baton {
    /// Expires what is due. Runs on a timer ([`Baton::run_sweeper`]); tests call it after
    /// moving the clock.
    pub async fn sweep(&self) -> Result<()> {
        let now = self.now();
        loop {
            let changed = self.store.expire_handoffs(now, SWEEP_BATCH).await?;
            let n = changed.len();
            for c in changed {
                let tenant = c.handoff.tenant.clone();
                self.publish_change(&tenant, c).await;
            }
            if n < SWEEP_BATCH as usize {
                break;
            }
        }
        self.purge_expired().await?;
        loop {
            let sessions = self.store.expire_sessions(now, SWEEP_BATCH).await?;
            let n = sessions.len();
            for s in sessions {
                self.session_changed(&s.tenant.clone(), &s).await;
            }
            if n < SWEEP_BATCH as usize {
                break;
            }
        }
        Ok(())
    }

    /// The retention sweep: compacts sessions by their retention (slower cadence than expiry:
    /// it reads every session with a retention).
    pub async fn sweep_retention(&self) -> Result<()> {
        self.retain().await
    }

    /// Sweeps every `interval` until shutdown; the retention sweep every `RETENTION_EVERY`.
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(RETENTION_EVERY);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "expiry sweep failed; retrying on the next tick");
                    }
                }
                _ = retention.tick() => {
                    if let Err(e) = self.sweep_retention().await {
                        tracing::warn!(error = %e, "retention sweep failed; retrying on the next tick");
                    }
                }
            }
        }
    }
}
