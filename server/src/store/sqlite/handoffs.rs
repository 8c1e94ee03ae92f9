//! Handoffs in SQLite: the statements of the shared handoff flows (`store::handoffs`), and
//! handoff reads. The write transaction holds SQLite's one write lock, so "locking" a row is
//! reading it.

use async_trait::async_trait;
use sqlx::{Executor, Sqlite};

use super::{SqliteStore, bound, sessions};
use crate::domain::summary::SummaryState;
use crate::domain::{Entry, Error, Handoff, HandoffEventType, Micros, Result, Session};
use crate::store::error::unique_or;
use crate::store::handoffs::{HandoffTx, Tx};
use crate::store::queries::{self, GET_HANDOFF, HANDOFF_BY_IDEMPOTENCY_KEY, HANDOFF_BY_SESSION_AND_IDEMPOTENCY_KEY};
use crate::store::rows::{StoredHandoff, entry_at, handoff_at, inbox_owners, summary_state_at, unsigned};
use crate::store::sql::Sql;
use crate::store::{HandoffPage, HandoffQuery};

const DUE_HANDOFFS: &str = due_handoffs!();

const SUMMARY_STATE: &str = summary_state!(
    "entries e ON e.session_id = s.id AND e.seq \
     IN (SELECT value FROM json_each((SELECT summary_counts FROM sessions WHERE id = $1), '$.messages'))"
);

const UPDATE_HANDOFF: &str = "UPDATE handoffs SET status = ?, reason = ?, updated_at = ? WHERE id = ?";

/// Advances the agent's inbox head by one and returns the new cursor.
const NEXT_CURSOR: &str = "INSERT INTO inbox_heads (tenant, agent, last_cursor) VALUES (?, ?, 1) \
     ON CONFLICT (tenant, agent) DO UPDATE SET last_cursor = last_cursor + 1 RETURNING last_cursor";
const INSERT_EVENT: &str = "INSERT INTO inbox_events \
     (tenant, agent, cursor, handoff_pk, event, status, reason, updated_at, handoff_id) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

async fn fetch<'e>(
    sql: &Sql,
    ex: impl Executor<'e, Database = Sqlite>,
    tenant: &str,
    handoff_id: &str,
) -> Result<StoredHandoff> {
    let get = sqlx::query(GET_HANDOFF).bind(tenant).bind(handoff_id).fetch_optional(ex);
    let row = sql.run("SELECT", "handoffs", get).await?.ok_or_else(|| Error::handoff_not_found(handoff_id))?;
    handoff_at(&row, 0)
}

pub(super) async fn get(store: &SqliteStore, tenant: &str, handoff_id: &str) -> Result<Handoff> {
    Ok(fetch(&store.sql, &store.read, tenant, handoff_id).await?.handoff)
}

pub(super) async fn by_idempotency_key(
    store: &SqliteStore,
    tenant: &str,
    session_key: &str,
    key: &str,
) -> Result<Option<Handoff>> {
    let get = sqlx::query(HANDOFF_BY_SESSION_AND_IDEMPOTENCY_KEY).bind(tenant).bind(session_key).bind(key);
    let row = store.sql.run("SELECT", "handoffs", get.fetch_optional(&store.read)).await?;
    row.map(|r| handoff_at(&r, 0).map(|h| h.handoff)).transpose()
}

pub(super) async fn list(store: &SqliteStore, q: &HandoffQuery) -> Result<HandoffPage> {
    let mut list = queries::list_handoffs::<Sqlite>(q);
    let rows = store.sql.run("SELECT", "handoffs", list.build().fetch_all(&store.read)).await?;
    rows.iter().map(|r| handoff_at(r, 0).map(|h| (h.pk, h.handoff))).collect()
}

impl SqliteStore {
    /// A write transaction of the handoff flows.
    pub(super) async fn handoff_tx(&self, _scope: crate::store::Scope<'_>) -> Result<Tx<'_, Sqlite>> {
        Ok(Tx { tx: self.begin_write().await?, sql: &self.sql })
    }
}

#[async_trait]
impl HandoffTx for Tx<'_, Sqlite> {
    async fn lock_session(&mut self, tenant: &str, session_key: &str) -> Result<Session> {
        sessions::fetch(self.sql, &mut *self.tx, tenant, session_key).await
    }

    async fn lock_session_by_id(&mut self, id: i64) -> Result<Session> {
        sessions::get_by_id(self.sql, &mut self.tx, id).await
    }

    async fn lock_handoff(&mut self, tenant: &str, handoff_id: &str) -> Result<StoredHandoff> {
        fetch(self.sql, &mut *self.tx, tenant, handoff_id).await
    }

    async fn lock_due_handoffs(&mut self, now: Micros, limit: u32) -> Result<Vec<StoredHandoff>> {
        let due = sqlx::query(DUE_HANDOFFS).bind(now.0).bind(i64::from(limit)).fetch_all(&mut *self.tx);
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
        for (pk, h) in changed {
            let update = sqlx::query(UPDATE_HANDOFF)
                .bind(h.status.as_str())
                .bind(&h.reason)
                .bind(h.updated_at.0)
                .bind(pk)
                .execute(&mut *self.tx);
            self.sql.run("UPDATE", "handoffs", update).await?;
        }
        Ok(())
    }

    async fn update_session_side(&mut self, session: &Session) -> Result<()> {
        sessions::update_side(self.sql, &mut self.tx, session).await
    }

    async fn write_events(&mut self, batch: &[(i64, HandoffEventType, &Handoff)]) -> Result<Vec<u64>> {
        let mut cursors = Vec::with_capacity(2 * batch.len());
        for (pk, kind, h) in batch {
            for agent in inbox_owners(h) {
                let head = sqlx::query_scalar(NEXT_CURSOR).bind(&h.tenant).bind(agent).fetch_one(&mut *self.tx);
                let cursor: i64 = self.sql.run("INSERT", "inbox_heads", head).await?;
                let insert = sqlx::query(INSERT_EVENT)
                    .bind(&h.tenant)
                    .bind(agent)
                    .bind(cursor)
                    .bind(pk)
                    .bind(kind.as_str())
                    .bind(h.status.as_str())
                    .bind(&h.reason)
                    .bind(h.updated_at.0)
                    .bind(&h.handoff_id)
                    .execute(&mut *self.tx);
                self.sql.run("INSERT", "inbox_events", insert).await?;
                cursors.push(unsigned(cursor));
            }
        }
        Ok(cursors)
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
