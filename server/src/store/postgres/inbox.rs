//! Agent inboxes in PostgreSQL. Events are written by the handoff flows (`handoffs`).

use super::{PgStore, bound};
use crate::domain::{HandoffEvent, Result};
use crate::store::Scope;
use crate::store::rows::{Cells, event_at};

/// The head and the pending handoffs' `created` events in one snapshot; with no pending
/// handoff, one row with NULL event columns.
const PENDING_INBOX: &str = concat!(
    "SELECT coalesce((SELECT last_cursor FROM inbox_heads WHERE tenant = $1 AND agent = $2), 0), p.* \
     FROM (VALUES (1)) AS one(x) LEFT JOIN LATERAL ( \
       SELECT ",
    event_cols!(),
    " FROM handoffs h \
       JOIN inbox_events ev ON ev.handoff_pk = h.id AND ev.tenant = h.tenant AND ev.agent = h.to_agent \
                           AND ev.event = 'created' \
       WHERE h.tenant = $1 AND h.to_agent = $2 AND h.status = 'pending' \
     ) p ON true \
     ORDER BY p.cursor"
);

pub(super) async fn pending(store: &PgStore, tenant: &str, agent: &str) -> Result<(Vec<HandoffEvent>, u64)> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let pending = sqlx::query(PENDING_INBOX).bind(tenant).bind(agent).fetch_all(&mut *tx);
    let rows = store.sql.run("SELECT", "handoffs", pending).await?;
    let mut head = 0;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        head = row.seq(0)?;
        if row.opt_int(2)?.is_some() {
            events.push(event_at(row, 1)?);
        }
    }
    Ok((events, head))
}

pub(super) async fn after(
    store: &PgStore,
    tenant: &str,
    agent: &str,
    after_cursor: u64,
    limit: u32,
) -> Result<Vec<HandoffEvent>> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let after = bound::inbox_after(tenant, agent, after_cursor, limit).fetch_all(&mut *tx);
    let rows = store.sql.run("SELECT", "inbox_events", after).await?;
    rows.iter().map(|r| event_at(r, 0)).collect()
}
