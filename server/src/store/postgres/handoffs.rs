//! Handoffs in PostgreSQL: the statements of the shared handoff flows (`store::handoffs`),
//! and handoff reads.

use async_trait::async_trait;
use sqlx::Postgres;

use super::{PgStore, bound, sessions, ts};
use crate::domain::summary::SummaryState;
use crate::domain::{Entry, Error, Handoff, HandoffEventType, Micros, Result, Session};
use crate::store::Scope;
use crate::store::error::unique_or;
use crate::store::handoffs::{HandoffTx, Tx};
use crate::store::queries::{self, GET_HANDOFF, HANDOFF_BY_IDEMPOTENCY_KEY, HANDOFF_BY_SESSION_AND_IDEMPOTENCY_KEY};
use crate::store::rows::{StoredHandoff, entry_at, handoff_at, inbox_owners, summary_state_at, unsigned};
use crate::store::{HandoffPage, HandoffQuery};

const LOCK_HANDOFF: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = $1 AND h.handoff_id = $2 FOR UPDATE");
/// Due handoffs, locked; those another sweeper holds are skipped.
const LOCK_DUE_HANDOFFS: &str = concat!(due_handoffs!(), " FOR UPDATE SKIP LOCKED");

/// Each message seq is looked up on its own (a LATERAL subquery the planner cannot flatten,
/// `LIMIT 1`), so it is a primary-key probe whatever the statistics say: joined as
/// `e.seq = ANY(seqs)`, or as a plain join, PostgreSQL could read every entry of the session
/// and filter them (1.5 ms per handoff at 1,600 entries, growing with the session).
pub const SUMMARY_STATE: &str = summary_state!(
    "(UNNEST((SELECT ARRAY(SELECT jsonb_array_elements_text(summary_counts -> 'messages')::bigint) \
       FROM sessions WHERE id = $1)::bigint[]) AS m(seq) \
     CROSS JOIN LATERAL (SELECT * FROM entries x WHERE x.session_id = $1 AND x.seq = m.seq LIMIT 1) e) ON true"
);

/// Applies a batch of decided changes (one for a state change, many for the sweeper).
const UPDATE_HANDOFFS: &str = "UPDATE handoffs h SET status = u.status, reason = u.reason, updated_at = u.updated_at \
     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS u(id, status, reason, updated_at) \
     WHERE h.id = u.id";

/// Writes inbox events and returns their cursors in input order. Each (tenant, agent) head
/// advances once by its number of events, in sorted order (the lock order), and the events
/// take the cursors it skipped over, in input order.
const WRITE_EVENTS: &str = "WITH ev AS ( \
       SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                            $7::timestamptz[], $8::text[]) \
         WITH ORDINALITY AS ev(tenant, agent, handoff_pk, event, status, reason, updated_at, handoff_id, ord) \
     ), heads AS ( \
       INSERT INTO inbox_heads AS ih (tenant, agent, last_cursor) \
       SELECT tenant, agent, count(*) FROM ev GROUP BY tenant, agent ORDER BY tenant, agent \
       ON CONFLICT (tenant, agent) DO UPDATE SET last_cursor = ih.last_cursor + EXCLUDED.last_cursor \
       RETURNING tenant, agent, last_cursor \
     ), numbered AS ( \
       SELECT ev.*, heads.last_cursor - count(*) OVER (PARTITION BY ev.tenant, ev.agent) \
                    + row_number() OVER (PARTITION BY ev.tenant, ev.agent ORDER BY ev.ord) AS cursor \
       FROM ev JOIN heads ON heads.tenant = ev.tenant AND heads.agent = ev.agent \
     ), written AS ( \
       INSERT INTO inbox_events (tenant, agent, cursor, handoff_pk, event, status, reason, updated_at, handoff_id) \
       SELECT tenant, agent, cursor, handoff_pk, event, status, reason, updated_at, handoff_id FROM numbered \
     ) \
     SELECT cursor FROM numbered ORDER BY ord";

pub(super) async fn get(store: &PgStore, tenant: &str, handoff_id: &str) -> Result<Handoff> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let get = sqlx::query(GET_HANDOFF).bind(tenant).bind(handoff_id).fetch_optional(&mut *tx);
    let row = store.sql.run("SELECT", "handoffs", get).await?;
    Ok(handoff_at(&row.ok_or_else(|| Error::handoff_not_found(handoff_id))?, 0)?.handoff)
}

pub(super) async fn by_idempotency_key(
    store: &PgStore,
    tenant: &str,
    session_key: &str,
    key: &str,
) -> Result<Option<Handoff>> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let get = sqlx::query(HANDOFF_BY_SESSION_AND_IDEMPOTENCY_KEY).bind(tenant).bind(session_key).bind(key);
    let row = store.sql.run("SELECT", "handoffs", get.fetch_optional(&mut *tx)).await?;
    row.map(|r| handoff_at(&r, 0).map(|h| h.handoff)).transpose()
}

pub(super) async fn list(store: &PgStore, q: &HandoffQuery) -> Result<HandoffPage> {
    let read = read!(store, Scope::Tenant(&q.tenant), |sql, conn| {
        let mut list = queries::list_handoffs::<Postgres>(q);
        let rows = sql.run("SELECT", "handoffs", list.build().fetch_all(&mut *conn)).await?;
        rows.iter().map(|r| handoff_at(r, 0).map(|h| (h.pk, h.handoff))).collect::<Result<HandoffPage>>()
    });
    Ok(read.await?.0)
}

impl PgStore {
    /// A transaction of the handoff flows, seeing `scope`'s rows.
    pub(super) async fn handoff_tx(&self, scope: Scope<'_>) -> Result<Tx<'_, Postgres>> {
        Ok(Tx { tx: self.begin(scope).await?, sql: &self.sql })
    }
}

#[async_trait]
impl HandoffTx for Tx<'_, Postgres> {
    async fn lock_session(&mut self, tenant: &str, session_key: &str) -> Result<Session> {
        sessions::lock(self.sql, &mut self.tx, tenant, session_key).await
    }

    async fn lock_session_by_id(&mut self, id: i64) -> Result<Session> {
        sessions::lock_by_id(self.sql, &mut self.tx, id).await
    }

    async fn lock_handoff(&mut self, tenant: &str, handoff_id: &str) -> Result<StoredHandoff> {
        let lock = sqlx::query(LOCK_HANDOFF).bind(tenant).bind(handoff_id).fetch_optional(&mut *self.tx);
        let row = self.sql.run("SELECT", "handoffs", lock).await?;
        handoff_at(&row.ok_or_else(|| Error::handoff_not_found(handoff_id))?, 0)
    }

    async fn lock_due_handoffs(&mut self, now: Micros, limit: u32) -> Result<Vec<StoredHandoff>> {
        let due = sqlx::query(LOCK_DUE_HANDOFFS).bind(ts(now)?).bind(i64::from(limit)).fetch_all(&mut *self.tx);
        let rows = self.sql.run("SELECT", "handoffs", due).await?;
        rows.iter().map(|r| handoff_at(r, 0)).collect()
    }

    async fn insert_handoff(&mut self, session_id: i64, h: &Handoff, idempotency_key: Option<&str>) -> Result<i64> {
        let insert = bound::insert_handoff(session_id, h, idempotency_key)?.fetch_one(&mut *self.tx);
        self.sql.run("INSERT", "handoffs", insert).await.map_err(|e| unique_or(e, "handoff", &h.handoff_id))
    }

    async fn handoff_by_idempotency_key(&mut self, session_id: i64, key: &str) -> Result<Option<StoredHandoff>> {
        let get = sqlx::query(HANDOFF_BY_IDEMPOTENCY_KEY).bind(session_id).bind(key).fetch_optional(&mut *self.tx);
        self.sql.run("SELECT", "handoffs", get).await?.map(|row| handoff_at(&row, 0)).transpose()
    }

    async fn update_handoffs(&mut self, changed: &[(i64, &Handoff)]) -> Result<()> {
        let ids: Vec<i64> = changed.iter().map(|(pk, _)| *pk).collect();
        let statuses: Vec<&str> = changed.iter().map(|(_, h)| h.status.as_str()).collect();
        let reasons: Vec<&str> = changed.iter().map(|(_, h)| h.reason.as_str()).collect();
        let times = changed.iter().map(|(_, h)| ts(h.updated_at)).collect::<Result<Vec<_>>>()?;
        let update =
            sqlx::query(UPDATE_HANDOFFS).bind(&ids).bind(&statuses).bind(&reasons).bind(&times).execute(&mut *self.tx);
        self.sql.run("UPDATE", "handoffs", update).await?;
        Ok(())
    }

    async fn update_session_side(&mut self, session: &Session) -> Result<()> {
        sessions::update_side(self.sql, &mut self.tx, session).await
    }

    async fn write_events(&mut self, batch: &[(i64, HandoffEventType, &Handoff)]) -> Result<Vec<u64>> {
        let mut tenants = Vec::new();
        let mut agents = Vec::new();
        let mut pks = Vec::new();
        let mut kinds = Vec::new();
        let mut statuses = Vec::new();
        let mut reasons = Vec::new();
        let mut updated = Vec::new();
        let mut ids = Vec::new();
        for (pk, kind, h) in batch {
            for agent in inbox_owners(h) {
                tenants.push(h.tenant.as_str());
                agents.push(agent);
                pks.push(*pk);
                kinds.push(kind.as_str());
                statuses.push(h.status.as_str());
                reasons.push(h.reason.as_str());
                updated.push(ts(h.updated_at)?);
                ids.push(h.handoff_id.as_str());
            }
        }
        let write = sqlx::query_scalar(WRITE_EVENTS)
            .bind(&tenants)
            .bind(&agents)
            .bind(&pks)
            .bind(&kinds)
            .bind(&statuses)
            .bind(&reasons)
            .bind(&updated)
            .bind(&ids)
            .fetch_all(&mut *self.tx);
        let cursors: Vec<i64> = self.sql.run("INSERT", "inbox_events", write).await?;
        Ok(cursors.into_iter().map(unsigned).collect())
    }

    async fn summary_state(&mut self, session: &Session) -> Result<Option<(SummaryState, Vec<Entry>)>> {
        let read = sqlx::query(SUMMARY_STATE).bind(session.id).fetch_all(&mut *self.tx);
        summary_state_at(&self.sql.run("SELECT", "sessions", read).await?, &session.session_key)
    }

    async fn entries_after(&mut self, session: &Session, after_seq: u64, limit: u32) -> Result<Vec<Entry>> {
        let read = bound::entries_after(session.id, after_seq, limit).fetch_all(&mut *self.tx);
        let rows = self.sql.run("SELECT", "entries", read).await?;
        rows.iter().map(|r| entry_at(r, 0, &session.session_key)).collect()
    }

    async fn set_summary_state(&mut self, session_id: i64, state: Option<&SummaryState>) -> Result<()> {
        let write = bound::set_summary_state(session_id, state).execute(&mut *self.tx);
        self.sql.run("UPDATE", "sessions", write).await?;
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        Ok(self.sql.run("COMMIT", "", self.tx.commit()).await?)
    }
}
