//! Statements that are the same on both stores. Both take `$N` placeholders (sqlx binds them
//! by number on SQLite too), and both read the results with `rows`.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::HandoffQuery;

pub(super) const GET_SESSION: &str =
    concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.tenant = $1 AND s.session_key = $2");

pub(super) const UPDATE_SESSION: &str =
    "UPDATE sessions SET metadata = $2, status = $3, expires_at = $4, updated_at = $5 WHERE id = $1";

/// The session side of a handoff change, as `rules::session_after` decided it.
pub(super) const UPDATE_SESSION_SIDE: &str =
    "UPDATE sessions SET owner = $2, status = $3, updated_at = $4 WHERE id = $1";

pub(super) const GET_HANDOFF: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = $1 AND h.handoff_id = $2");

pub(super) const INSERT_HANDOFF: &str = "INSERT INTO handoffs \
     (tenant, handoff_id, session_id, session_key, from_agent, to_agent, type, status, instructions, summary, \
      up_to_seq, max_tokens, reason, created_at, updated_at, deadline) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id";

/// Pending handoffs due at $1, oldest deadline first, at most $2 (PostgreSQL adds its row
/// locks).
macro_rules! due_handoffs {
    () => {
        concat!(
            "SELECT ",
            handoff_cols!(),
            " FROM handoffs h WHERE h.status = 'pending' AND h.deadline IS NOT NULL AND h.deadline <= $1 \
             ORDER BY h.deadline, h.id LIMIT $2"
        )
    };
}

/// Where the handoff tail of session ($1, $2) up to seq $3 within a budget of $4 starts
/// (`columns::tail_start!`); NULL when nothing fits or there is no such session.
pub(super) const TAIL_START: &str =
    tail_start!("(SELECT id FROM sessions WHERE tenant = $1 AND session_key = $2)", "$3", "$4");

pub(super) const INBOX_AFTER: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM inbox_events ev JOIN handoffs h ON h.id = ev.handoff_pk \
     WHERE ev.tenant = $1 AND ev.agent = $2 AND ev.cursor > $3 ORDER BY ev.cursor LIMIT $4"
);

/// A page of handoffs by `q`'s filters, newest first.
pub(super) fn list_handoffs<'a, DB>(q: &'a HandoffQuery) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::new(concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = "));
    b.push_bind(q.tenant.as_str());
    if let Some(to) = &q.to_agent {
        b.push(" AND h.to_agent = ").push_bind(to.as_str());
    }
    if let Some(from) = &q.from_agent {
        b.push(" AND h.from_agent = ").push_bind(from.as_str());
    }
    if let Some(key) = &q.session_key {
        // Through the session's id, which the handoffs-by-session index covers.
        b.push(" AND h.session_id = (SELECT id FROM sessions WHERE tenant = ").push_bind(q.tenant.as_str());
        b.push(" AND session_key = ").push_bind(key.as_str()).push(")");
    }
    if let Some(status) = q.status {
        b.push(" AND h.status = ").push_bind(status.as_str());
    }
    if let Some(before) = q.before_id {
        b.push(" AND h.id < ").push_bind(before);
    }
    b.push(" ORDER BY h.id DESC LIMIT ").push_bind(i64::from(q.limit));
    b
}
