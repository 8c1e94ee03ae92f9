//! Statements that are the same on both stores, with their bindings (`binders!`). Both take
//! `$N` placeholders (sqlx binds them by number on SQLite too), and both read the results with
//! `rows`.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::HandoffQuery;

pub(super) const INSERT_SESSION: &str = concat!(
    "INSERT INTO sessions (tenant, session_key, created_by, owner, status, metadata, created_at, updated_at, \
     last_activity_at, expires_at, idempotency_key) VALUES ($1, $2, $3, $3, $4, $5, $6, $6, $6, $7, $8) RETURNING ",
    session_cols!("")
);

/// The session that a create or fork with idempotency key $2 made in tenant $1.
pub(super) const SESSION_BY_IDEMPOTENCY_KEY: &str =
    concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.tenant = $1 AND s.idempotency_key = $2");

pub(super) const GET_SESSION: &str =
    concat!("SELECT ", session_cols!("s."), " FROM sessions s WHERE s.tenant = $1 AND s.session_key = $2");

pub(super) const UPDATE_SESSION: &str = "UPDATE sessions SET metadata = $2, status = $3, expires_at = $4, updated_at = $5, legal_hold = $6, \
     retention_keep_latest = $7, retention_max_age_us = $8 WHERE id = $1";

/// The session side of a handoff change, as `rules::session_after` decided it.
pub(super) const UPDATE_SESSION_SIDE: &str =
    "UPDATE sessions SET owner = $2, status = $3, updated_at = $4 WHERE id = $1";

/// Entries of the session with internal id $1 after seq $2, at most $3, in seq order.
pub(super) const ENTRIES_AFTER: &str =
    concat!("SELECT ", entry_cols!(), " FROM entries e WHERE e.session_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3");

/// Writes (or, with NULLs, forgets) the summary state of the session with internal id $1.
pub(super) const SET_SUMMARY_STATE: &str = "UPDATE sessions SET summary_counts = $2, summary_names = $3 WHERE id = $1";

/// The summary state of the session with internal id $1 (`rows::Cells::summary_state`), then
/// the entries its last messages are (`entry_cols!`, NULL when there are none), in seq order.
/// `$entries` is what `s` is left-joined with: the entries `e` at the state's message seqs,
/// read by a subquery of its own and found by primary key (each store's form is the one its
/// planner makes primary-key lookups of, not a scan of the session).
macro_rules! summary_state {
    ($entries:literal) => {
        concat!(
            "SELECT s.summary_counts, s.summary_names, ",
            entry_cols!(),
            " FROM sessions s LEFT JOIN ",
            $entries,
            " WHERE s.id = $1 ORDER BY e.seq"
        )
    };
}

pub(super) const GET_HANDOFF: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = $1 AND h.handoff_id = $2");

pub(super) const INSERT_HANDOFF: &str = "INSERT INTO handoffs \
     (tenant, handoff_id, session_id, session_key, from_agent, to_agent, type, status, instructions, summary, \
      up_to_seq, max_tokens, reason, created_at, updated_at, deadline, idempotency_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id";

/// The handoff that a request with idempotency key $2 made in the session with internal id $1.
pub(super) const HANDOFF_BY_IDEMPOTENCY_KEY: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.session_id = $1 AND h.idempotency_key = $2");

/// The same by tenant $1 and session key $2, idempotency key $3.
pub(super) const HANDOFF_BY_SESSION_AND_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    handoff_cols!(),
    " FROM handoffs h WHERE h.tenant = $1 \
     AND h.session_id = (SELECT id FROM sessions WHERE tenant = $1 AND session_key = $2) AND h.idempotency_key = $3"
);

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
pub const TAIL_START: &str =
    tail_start!("(SELECT id FROM sessions WHERE tenant = $1 AND session_key = $2)", "$3", "$4");

pub(super) const INBOX_AFTER: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM inbox_events ev LEFT JOIN handoffs h ON h.id = ev.handoff_pk \
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

/// `binders!(Database)`: the shared statements with their values bound, for one database, as
/// the module `bound` of the store that invokes it (written once, so both stores bind every
/// shared statement in the same order).
macro_rules! binders {
    ($db:ty) => {
        /// The shared statements of `store::queries`, bound.
        mod bound {
            use sqlx::query::{Query, QueryScalar};
            use sqlx::types::Json;

            use $crate::domain::summary::SummaryState;
            use $crate::domain::{Handoff, Result, SessionStatus};
            use $crate::store::NewSession;
            use $crate::store::queries::{
                ENTRIES_AFTER, INBOX_AFTER, INSERT_HANDOFF, INSERT_SESSION, SET_SUMMARY_STATE, TAIL_START,
            };
            use $crate::store::rows::{Moments, count_to_db, signed};

            type Args<'q> = <$db as sqlx::Database>::Arguments<'q>;

            /// Inserts a new ACTIVE session; the row has `session_cols!`.
            pub(in $crate::store) fn insert_session<'q>(
                new: &'q NewSession,
                idempotency_key: Option<&'q str>,
            ) -> Result<Query<'q, $db, Args<'q>>> {
                Ok(sqlx::query(INSERT_SESSION)
                    .bind(new.tenant.as_str())
                    .bind(new.session_key.as_str())
                    .bind(new.agent.as_str())
                    .bind(SessionStatus::Active.as_str())
                    .bind(Json(&new.metadata))
                    .bind(<$db>::moment(new.now)?)
                    .bind(new.expires_at.map(<$db>::moment).transpose()?)
                    .bind(idempotency_key))
            }

            /// Inserts the handoff of the session `session_id`; returns its internal id.
            pub(in $crate::store) fn insert_handoff<'q>(
                session_id: i64,
                h: &'q Handoff,
                idempotency_key: Option<&'q str>,
            ) -> Result<QueryScalar<'q, $db, i64, Args<'q>>> {
                Ok(sqlx::query_scalar(INSERT_HANDOFF)
                    .bind(h.tenant.as_str())
                    .bind(h.handoff_id.as_str())
                    .bind(session_id)
                    .bind(h.session_key.as_str())
                    .bind(h.from_agent.as_str())
                    .bind(h.to_agent.as_str())
                    .bind(h.kind.as_str())
                    .bind(h.status.as_str())
                    .bind(h.instructions.as_str())
                    .bind(h.summary.as_str())
                    .bind(signed(h.up_to_seq))
                    .bind(count_to_db("max_tokens", h.max_tokens)?)
                    .bind(h.reason.as_str())
                    .bind(<$db>::moment(h.created_at)?)
                    .bind(<$db>::moment(h.updated_at)?)
                    .bind(h.deadline.map(<$db>::moment).transpose()?)
                    .bind(idempotency_key))
            }

            /// Where the handoff tail of a session starts.
            pub(in $crate::store) fn tail_start<'q>(
                tenant: &'q str,
                session_key: &'q str,
                up_to_seq: u64,
                budget: u32,
            ) -> QueryScalar<'q, $db, Option<i64>, Args<'q>> {
                sqlx::query_scalar(TAIL_START)
                    .bind(tenant)
                    .bind(session_key)
                    .bind(signed(up_to_seq))
                    .bind(i64::from(budget))
            }

            /// Entries of a session after a seq, at most `limit`; rows have `entry_cols!`.
            pub(in $crate::store) fn entries_after<'q>(
                session_id: i64,
                after_seq: u64,
                limit: u32,
            ) -> Query<'q, $db, Args<'q>> {
                sqlx::query(ENTRIES_AFTER).bind(session_id).bind(signed(after_seq)).bind(i64::from(limit))
            }

            /// Writes (`None`: forgets) a session's summary state.
            pub(in $crate::store) fn set_summary_state<'q>(
                session_id: i64,
                state: Option<&'q SummaryState>,
            ) -> Query<'q, $db, Args<'q>> {
                sqlx::query(SET_SUMMARY_STATE)
                    .bind(session_id)
                    .bind(state.map(|s| Json(&s.counts)))
                    .bind(state.map(|s| Json(&s.names)))
            }

            /// An agent's inbox events after a cursor, at most `limit`; rows have `event_cols!`.
            pub(in $crate::store) fn inbox_after<'q>(
                tenant: &'q str,
                agent: &'q str,
                after_cursor: u64,
                limit: u32,
            ) -> Query<'q, $db, Args<'q>> {
                sqlx::query(INBOX_AFTER).bind(tenant).bind(agent).bind(signed(after_cursor)).bind(i64::from(limit))
            }
        }
    };
}
