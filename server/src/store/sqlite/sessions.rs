//! Sessions in SQLite.

use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder, Sqlite, SqliteConnection};

use super::{SqliteStore, bound};
use crate::domain::{Error, Micros, Result, Session};
use crate::store::error::unique_or;
use crate::store::queries::{GET_SESSION, SESSION_BY_IDEMPOTENCY_KEY, UPDATE_SESSION, UPDATE_SESSION_SIDE};
use crate::store::rows::session_at;
use crate::store::sql::Sql;
use crate::store::{Created, NewSession, SessionPatch, SessionQuery};

const GET_SESSION_BY_ID: &str = concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.id = ?");
const GET_SESSION_ID: &str = "SELECT id FROM sessions WHERE tenant = ? AND session_key = ?";

const EXPIRE_SESSIONS: &str = concat!(
    "UPDATE sessions SET status = 'expired', updated_at = ?1 WHERE id IN (SELECT id FROM sessions \
     WHERE status IN ('active', 'dormant', 'handed_off') AND expires_at IS NOT NULL AND expires_at <= ?1 \
     ORDER BY expires_at, id LIMIT ?2) RETURNING ",
    session_cols!("")
);

/// The write transaction holds SQLite's one write lock: looking the idempotency key up and
/// inserting are atomic.
pub(super) async fn create(
    store: &SqliteStore,
    new: NewSession,
    idempotency_key: Option<&str>,
) -> Result<Created<Session>> {
    let mut tx = store.begin_write().await?;
    if let Some(key) = idempotency_key
        && let Some(made) = by_idempotency_key(&store.sql, &mut tx, &new.tenant, key).await?
    {
        return Ok(Created { record: made, replayed: true });
    }
    let insert = bound::insert_session(&new, idempotency_key)?.fetch_one(&mut *tx);
    let row =
        store.sql.run("INSERT", "sessions", insert).await.map_err(|e| unique_or(e, "session", &new.session_key))?;
    store.commit(tx).await?;
    Ok(Created { record: session_at(&row, 0)?, replayed: false })
}

/// The session that a create or fork with the idempotency key made in the tenant, if any.
pub(super) async fn by_idempotency_key(
    sql: &Sql,
    conn: &mut SqliteConnection,
    tenant: &str,
    key: &str,
) -> Result<Option<Session>> {
    let get = sqlx::query(SESSION_BY_IDEMPOTENCY_KEY).bind(tenant).bind(key).fetch_optional(conn);
    sql.run("SELECT", "sessions", get).await?.map(|row| session_at(&row, 0)).transpose()
}

pub(super) async fn get(store: &SqliteStore, tenant: &str, session_key: &str) -> Result<Session> {
    fetch(&store.sql, &store.read, tenant, session_key).await
}

/// The session, read with `ex`: in a write transaction, the writer's snapshot.
pub(super) async fn fetch<'e>(
    sql: &Sql,
    ex: impl Executor<'e, Database = Sqlite>,
    tenant: &str,
    session_key: &str,
) -> Result<Session> {
    let get = sqlx::query(GET_SESSION).bind(tenant).bind(session_key).fetch_optional(ex);
    let row = sql.run("SELECT", "sessions", get).await?.ok_or_else(|| Error::session_not_found(session_key))?;
    session_at(&row, 0)
}

pub(super) async fn get_by_id(sql: &Sql, conn: &mut SqliteConnection, id: i64) -> Result<Session> {
    let get = sqlx::query(GET_SESSION_BY_ID).bind(id).fetch_one(conn);
    session_at(&sql.run("SELECT", "sessions", get).await?, 0)
}

/// The session's internal id; `NotFound` when absent.
pub(super) async fn id<'e>(
    sql: &Sql,
    ex: impl Executor<'e, Database = Sqlite>,
    tenant: &str,
    session_key: &str,
) -> Result<i64> {
    let get = sqlx::query_scalar(GET_SESSION_ID).bind(tenant).bind(session_key).fetch_optional(ex);
    sql.run("SELECT", "sessions", get).await?.ok_or_else(|| Error::session_not_found(session_key))
}

pub(super) async fn list(store: &SqliteStore, q: &SessionQuery) -> Result<Vec<Session>> {
    let mut b =
        QueryBuilder::<Sqlite>::new(concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.tenant = "));
    b.push_bind(&q.tenant);
    if let Some(agent) = &q.agent {
        b.push(" AND (s.created_by = ").push_bind(agent).push(" OR s.owner = ").push_bind(agent).push(")");
    }
    if let Some(status) = q.status {
        b.push(" AND s.status = ").push_bind(status.as_str());
    }
    if let Some(before) = q.before_id {
        b.push(" AND s.id < ").push_bind(before);
    }
    b.push(" ORDER BY s.id DESC LIMIT ").push_bind(i64::from(q.limit));
    let rows = store.sql.run("SELECT", "sessions", b.build().fetch_all(&store.read)).await?;
    rows.iter().map(|r| session_at(r, 0)).collect()
}

pub(super) async fn update(
    store: &SqliteStore,
    tenant: &str,
    session_key: &str,
    mut patch: SessionPatch,
    now: Micros,
) -> Result<Session> {
    let mut tx = store.begin_write().await?;
    let audit = std::mem::take(&mut patch.audit);
    let session = patch.apply(fetch(&store.sql, &mut *tx, tenant, session_key).await?, now)?;
    let update = sqlx::query(UPDATE_SESSION)
        .bind(session.id)
        .bind(Json(&session.metadata))
        .bind(session.status.as_str())
        .bind(session.expires_at.map(|t| t.0))
        .bind(now.0)
        .bind(session.legal_hold)
        .bind(crate::store::rows::signed(session.retention.keep_latest))
        .bind(session.retention.max_age_micros)
        .execute(&mut *tx);
    store.sql.run("UPDATE", "sessions", update).await?;
    for a in &audit {
        super::lifecycle::insert_audit(&store.sql, &mut tx, a).await?;
    }
    store.commit(tx).await?;
    Ok(session)
}

pub(super) async fn expire(store: &SqliteStore, now: Micros, limit: u32) -> Result<Vec<Session>> {
    let expire = sqlx::query(EXPIRE_SESSIONS).bind(now.0).bind(i64::from(limit)).fetch_all(&store.write);
    let rows = store.sql.run("UPDATE", "sessions", expire).await?;
    let mut sessions = rows.iter().map(|r| session_at(r, 0)).collect::<Result<Vec<_>>>()?;
    // RETURNING comes back in no particular order.
    sessions.sort_by_key(|s| (s.expires_at, s.id));
    Ok(sessions)
}

pub(super) async fn update_side(sql: &Sql, conn: &mut SqliteConnection, session: &Session) -> Result<()> {
    let update = sqlx::query(UPDATE_SESSION_SIDE)
        .bind(session.id)
        .bind(&session.owner)
        .bind(session.status.as_str())
        .bind(session.updated_at.0)
        .execute(conn);
    sql.run("UPDATE", "sessions", update).await?;
    Ok(())
}
