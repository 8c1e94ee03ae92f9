//! Agent inboxes in SQLite. Events are written by the handoff flows (`handoffs`).

use super::{SqliteStore, bound};
use crate::domain::{HandoffEvent, Result};
use crate::store::rows::{event_at, unsigned};

/// The pending handoffs' `created` events. CROSS JOIN fixes the join order: from the agent's
/// pending handoffs (a partial index) to their events, rather than through the agent's whole
/// inbox history.
const PENDING_INBOX: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM handoffs h CROSS JOIN inbox_events ev ON ev.handoff_pk = h.id AND ev.tenant = h.tenant \
     AND ev.agent = h.to_agent AND ev.event = 'created' \
     WHERE h.tenant = ? AND h.to_agent = ? AND h.status = 'pending' ORDER BY ev.cursor"
);
const HEAD: &str = "SELECT last_cursor FROM inbox_heads WHERE tenant = ? AND agent = ?";

pub(super) async fn pending(store: &SqliteStore, tenant: &str, agent: &str) -> Result<(Vec<HandoffEvent>, u64)> {
    // One read transaction: the events and the head from the same snapshot.
    let mut tx = store.begin_read().await?;
    let pending = sqlx::query(PENDING_INBOX).bind(tenant).bind(agent).fetch_all(&mut *tx);
    let rows = store.sql.run("SELECT", "handoffs", pending).await?;
    let head = sqlx::query_scalar(HEAD).bind(tenant).bind(agent).fetch_optional(&mut *tx);
    let head: Option<i64> = store.sql.run("SELECT", "inbox_heads", head).await?;
    store.commit(tx).await?;
    let events = rows.iter().map(|r| event_at(r, 0)).collect::<Result<_>>()?;
    Ok((events, unsigned(head.unwrap_or(0))))
}

pub(super) async fn after(
    store: &SqliteStore,
    tenant: &str,
    agent: &str,
    after_cursor: u64,
    limit: u32,
) -> Result<Vec<HandoffEvent>> {
    let after = bound::inbox_after(tenant, agent, after_cursor, limit).fetch_all(&store.read);
    let rows = store.sql.run("SELECT", "inbox_events", after).await?;
    rows.iter().map(|r| event_at(r, 0)).collect()
}
