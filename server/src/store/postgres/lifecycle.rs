//! The lifecycle statements in PostgreSQL (flows in `store::lifecycle`).

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres};

use super::{PgStore, ts};
use crate::domain::{Audit, Entry, Micros, Redaction, Result, Session};
use crate::store::Scope;
use crate::store::error::unique_or;
use crate::store::handoffs::Tx;
use crate::store::lifecycle::*;
use crate::store::rows::{Cells, StoredHandoff, entry_at, handoff_at, session_at, signed, unsigned};
use crate::store::sql::Sql;

const SESSION_HANDOFFS: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.session_id = $1 ORDER BY h.id FOR UPDATE");

const COPY_ENTRIES: &str = "INSERT INTO entries (session_id, seq, kind, role, author, content_text, content_data, \
     media_type, metadata, token_count, idempotency_key, trace_id, created_at, redacted_at, redacted_by, \
     redaction_reason, tenant, search) \
     SELECT $2, seq, kind, role, author, content_text, content_data, media_type, metadata, token_count, \
            idempotency_key, trace_id, created_at, redacted_at, redacted_by, redaction_reason, $4, search \
     FROM entries WHERE session_id = $1 AND seq <= $3";

const STORED_SEQS: &str = "SELECT seq FROM entries WHERE session_id = $1 AND seq = ANY($2)";

/// The erased entry's search vector goes back to NULL: the indexer derives it again from the
/// erased text, and until then searches derive it from that text too.
const REDACT: &str = "UPDATE entries SET content_text = '', content_data = NULL, metadata = '{}', token_count = 0, \
     search = NULL, \
     redacted_at = $3, redacted_by = $4, redaction_reason = $5 \
     WHERE session_id = $1 AND seq = ANY($2) AND redacted_at IS NULL";

const ENTRIES_AT: &str =
    concat!("SELECT ", entry_cols!(), " FROM entries e WHERE e.session_id = $1 AND e.seq = ANY($2) ORDER BY e.seq");

/// Writes an audit record in the transaction `conn` is in.
pub(super) async fn insert_audit(sql: &Sql, conn: &mut PgConnection, a: &Audit) -> Result<()> {
    let insert = sqlx::query(INSERT_AUDIT)
        .bind(&a.tenant)
        .bind(a.action)
        .bind(&a.session_key)
        .bind(&a.principal)
        .bind(&a.agent)
        .bind(&a.seqs)
        .bind(&a.reason)
        .bind(ts(a.at)?)
        .execute(conn);
    sql.run("INSERT", "audit_log", insert).await?;
    Ok(())
}

#[async_trait]
impl LifecycleTx for Tx<'_, Postgres> {
    async fn session_handoffs(&mut self, session_id: i64) -> Result<Vec<StoredHandoff>> {
        let q = sqlx::query(SESSION_HANDOFFS).bind(session_id).fetch_all(&mut *self.tx);
        self.sql.run("SELECT", "handoffs", q).await?.iter().map(|r| handoff_at(r, 0)).collect()
    }

    async fn delete_session_row(&mut self, session: &Session) -> Result<u64> {
        let count = sqlx::query_scalar(COUNT_ENTRIES).bind(session.id).fetch_one(&mut *self.tx);
        let count: i64 = self.sql.run("SELECT", "entries", count).await?;
        let delete = sqlx::query(DELETE_SESSION).bind(session.id).execute(&mut *self.tx);
        self.sql.run("DELETE", "sessions", delete).await?;
        Ok(unsigned(count))
    }

    async fn insert_session_row(&mut self, s: &Session, idempotency_key: Option<&str>) -> Result<i64> {
        let insert = sqlx::query_scalar(INSERT_SESSION_ROW)
            .bind(&s.tenant)
            .bind(&s.session_key)
            .bind(&s.created_by)
            .bind(&s.owner)
            .bind(s.status.as_str())
            .bind(Json(&s.metadata))
            .bind(signed(s.last_seq))
            .bind(signed(s.last_summary_seq))
            .bind(ts(s.created_at)?)
            .bind(s.expires_at.map(ts).transpose()?)
            .bind(s.forked_from.as_ref().map(|f| f.session_key.as_str()))
            .bind(s.forked_from.as_ref().map(|f| signed(f.seq)))
            .bind(signed(s.first_seq))
            .bind(s.legal_hold)
            .bind(signed(s.retention.keep_latest))
            .bind(s.retention.max_age_micros)
            .bind(idempotency_key)
            .fetch_one(&mut *self.tx);
        self.sql.run("INSERT", "sessions", insert).await.map_err(|e| unique_or(e, "session", &s.session_key))
    }

    async fn claim_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Session>> {
        super::sessions::claim_idempotency_key(self.sql, &mut self.tx, tenant, key).await
    }

    async fn copy_entries(&mut self, from: i64, to: &Session, up_to: u64) -> Result<()> {
        let copy = sqlx::query(COPY_ENTRIES)
            .bind(from)
            .bind(to.id)
            .bind(signed(up_to))
            .bind(&to.tenant)
            .execute(&mut *self.tx);
        self.sql.run("INSERT", "entries", copy).await?;
        Ok(())
    }

    async fn stored_seqs(&mut self, session_id: i64, seqs: &[u64]) -> Result<Vec<u64>> {
        let seqs: Vec<i64> = seqs.iter().map(|s| signed(*s)).collect();
        let q = sqlx::query_scalar(STORED_SEQS).bind(session_id).bind(&seqs).fetch_all(&mut *self.tx);
        let found: Vec<i64> = self.sql.run("SELECT", "entries", q).await?;
        Ok(found.into_iter().map(unsigned).collect())
    }

    async fn redact(&mut self, session: &Session, seqs: &[u64], r: &Redaction) -> Result<Vec<Entry>> {
        let seqs: Vec<i64> = seqs.iter().map(|s| signed(*s)).collect();
        let update = sqlx::query(REDACT)
            .bind(session.id)
            .bind(&seqs)
            .bind(ts(r.at)?)
            .bind(&r.by)
            .bind(&r.reason)
            .execute(&mut *self.tx);
        self.sql.run("UPDATE", "entries", update).await?;
        let read = sqlx::query(ENTRIES_AT).bind(session.id).bind(&seqs).fetch_all(&mut *self.tx);
        let rows = self.sql.run("SELECT", "entries", read).await?;
        rows.iter().map(|row| entry_at(row, 0, &session.session_key)).collect()
    }

    async fn remove_entries_before(&mut self, session_id: i64, before_seq: u64) -> Result<u64> {
        let delete =
            sqlx::query(REMOVE_ENTRIES_BEFORE).bind(session_id).bind(signed(before_seq)).execute(&mut *self.tx);
        Ok(self.sql.run("DELETE", "entries", delete).await?.rows_affected())
    }

    async fn set_first_seq(&mut self, s: &Session) -> Result<()> {
        let update = sqlx::query(SET_FIRST_SEQ)
            .bind(s.id)
            .bind(signed(s.first_seq))
            .bind(signed(s.last_summary_seq))
            .bind(ts(s.updated_at)?)
            .execute(&mut *self.tx);
        self.sql.run("UPDATE", "sessions", update).await?;
        Ok(())
    }

    async fn insert_audit(&mut self, audit: &Audit) -> Result<()> {
        insert_audit(self.sql, &mut self.tx, audit).await
    }
}

pub(super) async fn audit_log(store: &PgStore, tenant: &str, session_key: &str) -> Result<Vec<Audit>> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let q = sqlx::query(AUDIT_LOG).bind(tenant).bind(session_key).fetch_all(&mut *tx);
    store.sql.run("SELECT", "audit_log", q).await?.iter().map(audit_at).collect()
}

/// The sessions due for the purge. First drops whole the partitions of the ranges whose every
/// session is due (migration 0009), so that their purges delete no entry rows.
pub(super) async fn purgeable(store: &PgStore, expired_before: Micros, limit: u32) -> Result<Vec<(String, String)>> {
    drop_purged_ranges(store, expired_before).await;
    let mut tx = store.begin(Scope::AllTenants).await?;
    let q = sqlx::query(PURGEABLE).bind(ts(expired_before)?).bind(i64::from(limit)).fetch_all(&mut *tx);
    store.sql.run("SELECT", "sessions", q).await?.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
}

pub(super) async fn retention_candidates(
    store: &PgStore,
    all: bool,
    after_id: i64,
    limit: u32,
) -> Result<Vec<Session>> {
    let mut tx = store.begin(Scope::AllTenants).await?;
    let q = sqlx::query(RETENTION_CANDIDATES).bind(after_id).bind(all).bind(i64::from(limit)).fetch_all(&mut *tx);
    store.sql.run("SELECT", "sessions", q).await?.iter().map(|r| session_at(r, 0)).collect()
}

pub(super) async fn first_seq_since(store: &PgStore, tenant: &str, key: &str, since: Micros) -> Result<Option<u64>> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let q = sqlx::query_scalar(FIRST_SEQ_SINCE).bind(tenant).bind(key).bind(ts(since)?).fetch_one(&mut *tx);
    let first: Option<i64> = store.sql.run("SELECT", "entries", q).await?;
    Ok(first.map(unsigned))
}

/// Drops the partitions of the ranges wholly due for the purge (`PgStore::drop_ranges`).
/// Best effort: when it fails (say a long query on `entries` holds the lock the DROP needs
/// past its lock_timeout), the purge deletes those sessions' rows one by one as before.
async fn drop_purged_ranges(store: &PgStore, expired_before: Micros) {
    match store.drop_ranges(Some(expired_before)).await {
        Ok(0) => {}
        Ok(dropped) => tracing::info!(dropped, "the purge dropped whole ranges of expired sessions' entries"),
        Err(e) => tracing::warn!(error = %e, "could not drop the partitions of purged ranges; purging row by row"),
    }
}
