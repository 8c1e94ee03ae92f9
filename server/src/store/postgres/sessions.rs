//! Sessions in PostgreSQL.

use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{PgStore, bound, ts};
use crate::domain::{Error, Micros, Result, Session};
use crate::store::Scope;
use crate::store::error::unique_or;
use crate::store::queries::{GET_SESSION, SESSION_BY_IDEMPOTENCY_KEY, UPDATE_SESSION, UPDATE_SESSION_SIDE};
use crate::store::rows::session_at;
use crate::store::sql::Sql;
use crate::store::{Created, NewSession, SessionPatch, SessionQuery};

const LOCK_SESSION: &str =
    concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.tenant = $1 AND s.session_key = $2 FOR UPDATE");
const LOCK_SESSION_BY_ID: &str = concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.id = $1 FOR UPDATE");
const SESSION_EXISTS: &str = "SELECT 1 FROM sessions WHERE tenant = $1 AND session_key = $2";
/// Serializes creates with one idempotency key in a tenant until the transaction ends (keys and
/// tenants never contain '/', so the text names one pair).
const LOCK_IDEMPOTENCY_KEY: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('baton/session-create/' || $1 || '/' || $2, 0))";

const EXPIRE_SESSIONS: &str = concat!(
    "UPDATE sessions s SET status = 'expired', updated_at = $1 \
     WHERE s.id IN (SELECT id FROM sessions \
                    WHERE status IN ('active', 'dormant', 'handed_off') AND expires_at <= $1 \
                    ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    session_cols!("s.")
);

pub(super) async fn create(
    store: &PgStore,
    new: NewSession,
    idempotency_key: Option<&str>,
) -> Result<Created<Session>> {
    let mut tx = store.begin(Scope::Tenant(&new.tenant)).await?;
    if let Some(key) = idempotency_key
        && let Some(made) = claim_idempotency_key(&store.sql, &mut tx, &new.tenant, key).await?
    {
        return Ok(Created { record: made, replayed: true });
    }
    let insert = bound::insert_session(&new, idempotency_key)?.fetch_one(&mut *tx);
    let row =
        store.sql.run("INSERT", "sessions", insert).await.map_err(|e| unique_or(e, "session", &new.session_key))?;
    store.sql.run("COMMIT", "", tx.commit()).await?;
    Ok(Created { record: session_at(&row, 0)?, replayed: false })
}

/// Locks the idempotency key of a session create in the tenant for the rest of the transaction
/// (concurrent creates with it wait here), then reads the session it already made, if any.
pub(super) async fn claim_idempotency_key(
    sql: &Sql,
    conn: &mut PgConnection,
    tenant: &str,
    key: &str,
) -> Result<Option<Session>> {
    let lock = sqlx::query(LOCK_IDEMPOTENCY_KEY).bind(tenant).bind(key).execute(&mut *conn);
    sql.run("SELECT", "sessions", lock).await?;
    let get = sqlx::query(SESSION_BY_IDEMPOTENCY_KEY).bind(tenant).bind(key).fetch_optional(conn);
    sql.run("SELECT", "sessions", get).await?.map(|row| session_at(&row, 0)).transpose()
}

pub(super) async fn get(store: &PgStore, tenant: &str, session_key: &str) -> Result<Session> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let get = sqlx::query(GET_SESSION).bind(tenant).bind(session_key).fetch_optional(&mut *tx);
    let row = store.sql.run("SELECT", "sessions", get).await?;
    session_at(&row.ok_or_else(|| Error::session_not_found(session_key))?, 0)
}

/// `NotFound` unless the session exists; for reads whose empty answer is ambiguous.
pub(super) async fn require(sql: &Sql, conn: &mut PgConnection, tenant: &str, session_key: &str) -> Result<()> {
    let exists = sqlx::query(SESSION_EXISTS).bind(tenant).bind(session_key).fetch_optional(conn);
    let found = sql.run("SELECT", "sessions", exists).await?;
    found.map(drop).ok_or_else(|| Error::session_not_found(session_key))
}

/// A page of the tenant's sessions, from a replica when one may serve it.
pub(super) async fn list(store: &PgStore, q: &SessionQuery) -> Result<Vec<Session>> {
    let read = read!(store, Scope::Tenant(&q.tenant), |sql, conn| {
        let mut list = list_query(q);
        let rows = sql.run("SELECT", "sessions", list.build().fetch_all(&mut *conn)).await?;
        rows.iter().map(|r| session_at(r, 0)).collect::<Result<Vec<_>>>()
    });
    Ok(read.await?.0)
}

fn list_query(q: &SessionQuery) -> QueryBuilder<'_, Postgres> {
    let limit = i64::from(q.limit);
    let mut b = QueryBuilder::<Postgres>::new(concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE "));
    match &q.agent {
        // Created-by OR owner as two index scans, each already newest first and limited.
        Some(agent) => {
            b.push("s.id IN (");
            for (i, column) in ["owner", "created_by"].into_iter().enumerate() {
                if i > 0 {
                    b.push(" UNION ");
                }
                b.push("(SELECT id FROM sessions WHERE tenant = ").push_bind(&q.tenant);
                b.push(format_args!(" AND {column} = ")).push_bind(agent);
                if let Some(status) = q.status {
                    b.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(before) = q.before_id {
                    b.push(" AND id < ").push_bind(before);
                }
                b.push(" ORDER BY id DESC LIMIT ").push_bind(limit).push(")");
            }
            b.push(")");
        }
        None => {
            b.push("s.tenant = ").push_bind(&q.tenant);
            if let Some(status) = q.status {
                b.push(" AND s.status = ").push_bind(status.as_str());
            }
            if let Some(before) = q.before_id {
                b.push(" AND s.id < ").push_bind(before);
            }
        }
    }
    b.push(" ORDER BY s.id DESC LIMIT ").push_bind(limit);
    b
}

pub(super) async fn update(
    store: &PgStore,
    tenant: &str,
    session_key: &str,
    mut patch: SessionPatch,
    now: Micros,
) -> Result<Session> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let audit = std::mem::take(&mut patch.audit);
    let session = patch.apply(lock(&store.sql, &mut tx, tenant, session_key).await?, now)?;
    let update = sqlx::query(UPDATE_SESSION)
        .bind(session.id)
        .bind(Json(&session.metadata))
        .bind(session.status.as_str())
        .bind(session.expires_at.map(ts).transpose()?)
        .bind(ts(now)?)
        .bind(session.legal_hold)
        .bind(crate::store::rows::signed(session.retention.keep_latest))
        .bind(session.retention.max_age_micros)
        .execute(&mut *tx);
    store.sql.run("UPDATE", "sessions", update).await?;
    for a in &audit {
        super::lifecycle::insert_audit(&store.sql, &mut tx, a).await?;
    }
    store.sql.run("COMMIT", "", tx.commit()).await?;
    Ok(session)
}

pub(super) async fn expire(store: &PgStore, now: Micros, limit: u32) -> Result<Vec<Session>> {
    let mut tx = store.begin(Scope::AllTenants).await?;
    let expire = sqlx::query(EXPIRE_SESSIONS).bind(ts(now)?).bind(i64::from(limit)).fetch_all(&mut *tx);
    let rows = store.sql.run("UPDATE", "sessions", expire).await?;
    store.sql.run("COMMIT", "", tx.commit()).await?;
    let mut sessions = rows.iter().map(|r| session_at(r, 0)).collect::<Result<Vec<_>>>()?;
    // RETURNING comes back in no particular order.
    sessions.sort_by_key(|s| (s.expires_at, s.id));
    Ok(sessions)
}

/// The session, locked until the transaction ends.
pub(super) async fn lock(sql: &Sql, conn: &mut PgConnection, tenant: &str, session_key: &str) -> Result<Session> {
    let lock = sqlx::query(LOCK_SESSION).bind(tenant).bind(session_key).fetch_optional(conn);
    let row = sql.run("SELECT", "sessions", lock).await?;
    session_at(&row.ok_or_else(|| Error::session_not_found(session_key))?, 0)
}

pub(super) async fn lock_by_id(sql: &Sql, conn: &mut PgConnection, id: i64) -> Result<Session> {
    let lock = sqlx::query(LOCK_SESSION_BY_ID).bind(id).fetch_one(conn);
    session_at(&sql.run("SELECT", "sessions", lock).await?, 0)
}

pub(super) async fn update_side(sql: &Sql, conn: &mut PgConnection, session: &Session) -> Result<()> {
    let update = sqlx::query(UPDATE_SESSION_SIDE)
        .bind(session.id)
        .bind(&session.owner)
        .bind(session.status.as_str())
        .bind(ts(session.updated_at)?)
        .execute(conn);
    sql.run("UPDATE", "sessions", update).await?;
    Ok(())
}
