//! PostgreSQL store.
//!
//! Every write that must be atomic runs in one transaction that first locks the row it is
//! about (the session for appends and new handoffs, the handoff for state changes), so seqs
//! and state transitions are serialized by PostgreSQL's row locks instead of retry loops.
//! Inbox cursors come from a per-agent head row upserted in the same transaction; locks are
//! always taken in the order handoff → session → inbox heads (heads sorted by tenant and
//! agent), so concurrent writers queue instead of deadlocking.
//!
//! Statements are built at run time and prepared and cached per connection by sqlx. Reads
//! that combine several facts (a context window, the pending inbox and its head) are single
//! statements so they see one snapshot. Timestamps are always the caller's `now`, never the
//! database clock, so the domain's clock is the only one.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;

use super::{
    AppendCommand, AppendOutcome, Change, Changed, Decide, EntryQuery, HandoffPage, HandoffQuery, NewHandoff,
    NewSession, SearchQuery, SessionPatch, SessionQuery, Store, WindowSlice,
};
use crate::domain::{
    Content, Entry, Error, Handoff, HandoffEvent, HandoffEventType, HandoffStatus, Metadata, Micros, Result, SearchHit,
    Session, SessionStatus, rules,
};
use crate::telemetry::sql::{PoolSample, Sql, pool_collector};

/// Session columns, in the order `session_at` reads them (13).
macro_rules! session_cols {
    () => {
        "s.id, s.tenant, s.session_key, s.created_by, s.owner, s.status, s.metadata, s.last_seq, \
         s.last_summary_seq, s.created_at, s.updated_at, s.last_activity_at, s.expires_at"
    };
}

/// Entry columns, in the order `entry_at` reads them (12).
macro_rules! entry_cols {
    () => {
        "e.seq, e.kind, e.role, e.author, e.content_text, e.content_data, e.media_type, e.metadata, \
         e.token_count, e.idempotency_key, e.trace_id, e.created_at"
    };
}

/// Handoff columns, in the order `handoff_at` reads them (17).
macro_rules! handoff_cols {
    () => {
        "h.id, h.session_id, h.handoff_id, h.tenant, h.session_key, h.from_agent, h.to_agent, h.type, \
         h.status, h.instructions, h.summary, h.up_to_seq, h.max_tokens, h.reason, h.created_at, \
         h.updated_at, h.deadline"
    };
}

/// Inbox event columns followed by the handoff's, in the order `event_at` reads them (6 + 17).
macro_rules! event_cols {
    () => {
        concat!(
            "e.agent AS ev_agent, e.cursor AS ev_cursor, e.event AS ev_event, e.status AS ev_status, \
             e.reason AS ev_reason, e.updated_at AS ev_updated_at, ",
            handoff_cols!()
        )
    };
}

const SESSION_COUNT: usize = 13;
const ENTRY_COUNT: usize = 12;
const EVENT_COUNT: usize = 6;

const GET_SESSION: &str =
    concat!("SELECT ", session_cols!(), " FROM sessions s WHERE s.tenant = $1 AND s.session_key = $2");
mod append;

/// Append workers: each writes one coalesced batch at a time, so one can commit while the
/// next batch gathers.
const APPEND_WORKERS: usize = 2;

const LOCK_SESSION: &str =
    concat!("SELECT ", session_cols!(), " FROM sessions s WHERE s.tenant = $1 AND s.session_key = $2 FOR UPDATE");
const SESSION_EXISTS: &str = "SELECT 1 FROM sessions WHERE tenant = $1 AND session_key = $2";

const INSERT_SESSION: &str = "INSERT INTO sessions \
     (tenant, session_key, created_by, owner, status, metadata, created_at, updated_at, last_activity_at, expires_at) \
     VALUES ($1, $2, $3, $3, $4, $5, $6, $6, $6, $7) RETURNING id";

const UPDATE_SESSION: &str =
    "UPDATE sessions SET metadata = $2, status = $3, expires_at = $4, updated_at = $5 WHERE id = $1";

/// Where the newest entries up to $3 that fit a budget of $4 tokens start (NULL: none fit).
const TAIL_START: &str = "SELECT MIN(seq) FROM ( \
       SELECT e.seq, SUM(e.token_count) OVER (ORDER BY e.seq DESC) AS running \
       FROM entries e WHERE e.session_id = (SELECT id FROM sessions WHERE tenant = $1 AND session_key = $2) \
         AND e.seq <= $3 \
     ) t WHERE running <= $4";
// Entry reads resolve the session id in a scalar subquery rather than a join, so the planner
// walks the primary key (session_id, seq) in order and stops at the LIMIT instead of sorting
// every entry of the session.
const LIST_ENTRIES: &str = concat!(
    "SELECT ",
    entry_cols!(),
    " FROM entries e WHERE e.session_id = (SELECT id FROM sessions WHERE tenant = $1 AND session_key = $2) \
       AND e.seq > $3 AND e.seq < $4 \
     ORDER BY e.seq LIMIT $5"
);
const LIST_ENTRIES_OF_KINDS: &str = concat!(
    "SELECT ",
    entry_cols!(),
    " FROM entries e WHERE e.session_id = (SELECT id FROM sessions WHERE tenant = $1 AND session_key = $2) \
       AND e.seq > $3 AND e.seq < $4 AND e.kind = ANY($6) \
     ORDER BY e.seq LIMIT $5"
);

/// The session with its latest summary and the newest entries after it, in one snapshot:
/// one row per entry (or one row with NULL entry columns when there is none).
const WINDOW: &str = concat!(
    "SELECT ",
    session_cols!(),
    ", w.* FROM sessions s LEFT JOIN LATERAL ( \
       (SELECT ",
    entry_cols!(),
    " FROM entries e WHERE s.last_summary_seq > 0 AND e.session_id = s.id AND e.seq = s.last_summary_seq) \
       UNION ALL \
       (SELECT ",
    entry_cols!(),
    " FROM entries e WHERE e.session_id = s.id AND e.seq >= COALESCE(( \
           SELECT MIN(t.seq) FROM ( \
             SELECT seq, token_count, SUM(token_count) OVER (ORDER BY seq DESC) AS running \
             FROM entries WHERE session_id = s.id AND seq > s.last_summary_seq ORDER BY seq DESC LIMIT $3 \
           ) t WHERE t.running - t.token_count < $4), 9223372036854775807) \
         ORDER BY e.seq DESC) \
     ) w ON true \
     WHERE s.tenant = $1 AND s.session_key = $2"
);

/// Ranks first and highlights only the page: ts_headline re-parses the text, so it runs on
/// `limit` rows, not on every match.
macro_rules! search_sql {
    ($scope:literal) => {
        concat!(
            "WITH q AS (SELECT websearch_to_tsquery('english', $2) AS q), \
             hits AS ( \
               SELECT e.session_id, e.seq, ts_rank_cd(e.search, q.q, 32)::float8 AS score \
               FROM q, entries e JOIN sessions s ON s.id = e.session_id \
               WHERE s.tenant = $1 ",
            $scope,
            " AND numnode(q.q) > 0 AND e.search @@ q.q \
               ORDER BY score DESC, e.session_id, e.seq OFFSET $3 LIMIT $4 \
             ) \
             SELECT s.session_key, ",
            entry_cols!(),
            ", h.score, ts_headline('english', left(e.content_text, 262144), q.q, \
                 'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=2, FragmentDelimiter=\" ... \"') \
             FROM hits h \
             JOIN entries e ON e.session_id = h.session_id AND e.seq = h.seq \
             JOIN sessions s ON s.id = h.session_id, q \
             ORDER BY h.score DESC, h.session_id, h.seq"
        )
    };
}
const SEARCH_TENANT: &str = search_sql!("");
const SEARCH_SESSION: &str = search_sql!("AND s.session_key = $5");

const INSERT_HANDOFF: &str = "INSERT INTO handoffs \
     (tenant, handoff_id, session_id, session_key, from_agent, to_agent, type, status, instructions, summary, \
      up_to_seq, max_tokens, reason, created_at, updated_at, deadline) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id";

const GET_HANDOFF: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = $1 AND h.handoff_id = $2");
const LOCK_HANDOFF: &str =
    concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = $1 AND h.handoff_id = $2 FOR UPDATE");

/// Applies a batch of decided changes (one for a state change, many for the sweeper).
const UPDATE_HANDOFFS: &str = "UPDATE handoffs h SET status = u.status, reason = u.reason, updated_at = $1 \
     FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS u(id, status, reason) WHERE h.id = u.id";

/// The session side of a handoff change. A closed or expired session stays so: a handoff
/// resolved after its session ended must not reopen it.
const TOUCH_SESSION: &str = concat!(
    "UPDATE sessions s SET owner = CASE WHEN $2 THEN $3 ELSE s.owner END, \
       status = CASE WHEN $4::text IS NULL OR s.status IN ('closed', 'expired') THEN s.status ELSE $4 END, \
       updated_at = $5 \
     WHERE s.id = $1 RETURNING ",
    session_cols!()
);

const DUE_HANDOFFS: &str = concat!(
    "SELECT ",
    handoff_cols!(),
    " FROM handoffs h WHERE h.status = 'pending' AND h.deadline <= $1 \
     ORDER BY h.deadline LIMIT $2 FOR UPDATE SKIP LOCKED"
);

const EXPIRE_SESSIONS: &str = concat!(
    "UPDATE sessions s SET status = 'expired', updated_at = $1 \
     WHERE s.id IN (SELECT id FROM sessions \
                    WHERE status IN ('active', 'dormant', 'handed_off') AND expires_at <= $1 \
                    ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    session_cols!()
);

/// Writes inbox events and returns their cursors in input order. Each (tenant, agent) head
/// advances once by its number of events, in sorted order (the lock order), and the events
/// take the cursors it skipped over, in input order.
const WRITE_EVENTS: &str = "WITH ev AS ( \
       SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                            $7::timestamptz[]) \
         WITH ORDINALITY AS ev(tenant, agent, handoff_pk, event, status, reason, updated_at, ord) \
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
       INSERT INTO inbox_events (tenant, agent, cursor, handoff_pk, event, status, reason, updated_at) \
       SELECT tenant, agent, cursor, handoff_pk, event, status, reason, updated_at FROM numbered \
     ) \
     SELECT cursor FROM numbered ORDER BY ord";

/// The head and the pending handoffs' `created` events in one snapshot; with no pending
/// handoff, one row with NULL event columns.
const PENDING_INBOX: &str = concat!(
    "SELECT coalesce((SELECT last_cursor FROM inbox_heads WHERE tenant = $1 AND agent = $2), 0), p.* \
     FROM (VALUES (1)) AS one(x) LEFT JOIN LATERAL ( \
       SELECT ",
    event_cols!(),
    " FROM handoffs h \
       JOIN inbox_events e ON e.handoff_pk = h.id AND e.tenant = h.tenant AND e.agent = h.to_agent \
                          AND e.event = 'created' \
       WHERE h.tenant = $1 AND h.to_agent = $2 AND h.status = 'pending' \
     ) p ON true \
     ORDER BY p.ev_cursor"
);

const INBOX_AFTER: &str = concat!(
    "SELECT ",
    event_cols!(),
    " FROM inbox_events e JOIN handoffs h ON h.id = e.handoff_pk \
     WHERE e.tenant = $1 AND e.agent = $2 AND e.cursor > $3 ORDER BY e.cursor LIMIT $4"
);

/// PostgreSQL-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Coalesces concurrent appends into shared transactions (`append`).
    appender: append::Appender,
    sql: Sql,
}

impl PgStore {
    /// Opens a pool of at most `max_connections` to `url`. A caller waits at most five
    /// seconds for a connection before the store reports itself unavailable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let sql = Sql::new("postgresql");
        let appender = append::Appender::start(pool.clone(), sql.clone(), APPEND_WORKERS);
        Ok(PgStore { pool, appender, sql })
    }

    /// Brings the schema up to date (`migrations/postgres`). Replicas may run this
    /// concurrently: sqlx serializes migrators with an advisory lock.
    pub async fn migrate(&self) -> Result<()> {
        match sqlx::migrate!("../migrations/postgres").run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) => Err(e.into()),
            Err(e) => {
                tracing::error!(error = %e, "database migration failed");
                Err(Error::Internal(format!("database migration failed: {e}")))
            }
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        self.sql.run("SELECT", "", sqlx::query("SELECT 1").execute(&self.pool)).await?;
        Ok(())
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let pool = self.pool.clone();
        let pools = pool_collector(move || {
            vec![PoolSample {
                pool: "primary",
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            }]
        });
        vec![self.sql.collector(), pools]
    }

    async fn create_session(&self, new: NewSession) -> Result<Session> {
        let now = ts(new.now)?;
        let expires_at = new.expires_at.map(ts).transpose()?;
        let status = SessionStatus::Active;
        let insert = sqlx::query(INSERT_SESSION)
            .bind(&new.tenant)
            .bind(&new.session_key)
            .bind(&new.agent)
            .bind(status.as_str())
            .bind(Json(&new.metadata))
            .bind(now)
            .bind(expires_at)
            .fetch_one(&self.pool);
        let inserted = self.sql.run("INSERT", "sessions", insert).await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::AlreadyExists { what: "session", key: new.session_key });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Session {
            id,
            tenant: new.tenant,
            session_key: new.session_key,
            created_by: new.agent.clone(),
            owner: new.agent,
            status,
            metadata: new.metadata,
            last_seq: 0,
            last_summary_seq: 0,
            created_at: new.now,
            updated_at: new.now,
            last_activity_at: new.now,
            expires_at: new.expires_at,
        })
    }

    async fn get_session(&self, tenant: &str, session_key: &str) -> Result<Session> {
        let get = sqlx::query(GET_SESSION).bind(tenant).bind(session_key).fetch_optional(&self.pool);
        let row = self.sql.run("SELECT", "sessions", get).await?;
        session_at(&row.ok_or_else(|| Error::session_not_found(session_key))?, 0)
    }

    async fn list_sessions(&self, q: &SessionQuery) -> Result<Vec<Session>> {
        let limit = i64::from(q.limit);
        let mut b = QueryBuilder::<Postgres>::new(concat!("SELECT ", session_cols!(), " FROM sessions s WHERE "));
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
        let rows = self.sql.run("SELECT", "sessions", b.build().fetch_all(&self.pool)).await?;
        rows.iter().map(|r| session_at(r, 0)).collect()
    }

    async fn update_session(
        &self,
        tenant: &str,
        session_key: &str,
        patch: SessionPatch,
        now: Micros,
    ) -> Result<Session> {
        let mut tx = self.sql.run("BEGIN", "", self.pool.begin()).await?;
        let mut session = lock_session(&self.sql, &mut tx, tenant, session_key).await?;
        if let Some(status) = patch.status {
            rules::check_session_status_change(&session, status)?;
            session.status = status;
        }
        if let Some(metadata) = patch.metadata {
            session.metadata = metadata;
        }
        if let Some(expires_at) = patch.expires_at {
            session.expires_at = expires_at;
        }
        session.updated_at = now;
        let update = sqlx::query(UPDATE_SESSION)
            .bind(session.id)
            .bind(Json(&session.metadata))
            .bind(session.status.as_str())
            .bind(session.expires_at.map(ts).transpose()?)
            .bind(ts(now)?)
            .execute(&mut *tx);
        self.sql.run("UPDATE", "sessions", update).await?;
        self.sql.run("COMMIT", "", tx.commit()).await?;
        Ok(session)
    }

    async fn append(&self, cmd: AppendCommand) -> Result<AppendOutcome> {
        self.appender.append(cmd).await
    }

    async fn list_entries(&self, q: &EntryQuery) -> Result<Vec<Entry>> {
        let before = q.before_seq.map_or(i64::MAX, signed);
        let query = if q.kinds.is_empty() { sqlx::query(LIST_ENTRIES) } else { sqlx::query(LIST_ENTRIES_OF_KINDS) };
        let mut query =
            query.bind(&q.tenant).bind(&q.session_key).bind(signed(q.after_seq)).bind(before).bind(i64::from(q.limit));
        if !q.kinds.is_empty() {
            query = query.bind(q.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>());
        }
        let rows = self.sql.run("SELECT", "entries", query.fetch_all(&self.pool)).await?;
        if rows.is_empty() {
            self.require_session(&q.tenant, &q.session_key).await?;
        }
        rows.iter().map(|r| entry_at(r, 0, &q.session_key)).collect()
    }

    async fn window(&self, tenant: &str, session_key: &str, max_entries: u32, max_tokens: u32) -> Result<WindowSlice> {
        let window = sqlx::query(WINDOW)
            .bind(tenant)
            .bind(session_key)
            .bind(i64::from(max_entries))
            .bind(i64::from(max_tokens))
            .fetch_all(&self.pool);
        let rows = self.sql.run("SELECT", "entries", window).await?;
        let first = rows.first().ok_or_else(|| Error::session_not_found(session_key))?;
        let session = session_at(first, 0)?;
        let mut summary = None;
        let mut newest_first = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>(SESSION_COUNT)?.is_none() {
                continue;
            }
            let entry = entry_at(row, SESSION_COUNT, session_key)?;
            if entry.seq == session.last_summary_seq {
                summary = Some(entry);
            } else {
                newest_first.push(entry);
            }
        }
        newest_first.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
        Ok(WindowSlice { session, summary, newest_first })
    }

    async fn tail_start(&self, tenant: &str, session_key: &str, up_to_seq: u64, budget: u32) -> Result<u64> {
        let tail = sqlx::query_scalar(TAIL_START)
            .bind(tenant)
            .bind(session_key)
            .bind(signed(up_to_seq))
            .bind(i64::from(budget))
            .fetch_one(&self.pool);
        let start: Option<i64> = self.sql.run("SELECT", "entries", tail).await?;
        Ok(start.map_or(up_to_seq + 1, |s| s as u64))
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let query = match &q.session_key {
            None => sqlx::query(SEARCH_TENANT),
            Some(_) => sqlx::query(SEARCH_SESSION),
        };
        let mut query = query.bind(&q.tenant).bind(&q.query).bind(i64::from(q.offset)).bind(i64::from(q.limit));
        if let Some(key) = &q.session_key {
            query = query.bind(key);
        }
        let rows = self.sql.run("SELECT", "entries", query.fetch_all(&self.pool)).await?;
        if let (true, Some(key)) = (rows.is_empty(), &q.session_key) {
            self.require_session(&q.tenant, key).await?;
        }
        rows.iter()
            .map(|r| {
                let session_key: String = r.try_get(0)?;
                Ok(SearchHit {
                    entry: entry_at(r, 1, &session_key)?,
                    score: r.try_get(1 + ENTRY_COUNT)?,
                    snippet: r.try_get::<Option<String>, _>(2 + ENTRY_COUNT)?.unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn create_handoff(&self, new: NewHandoff) -> Result<Changed> {
        let mut h = new.handoff;
        let mut tx = self.sql.run("BEGIN", "", self.pool.begin()).await?;
        // Locked so that up_to_seq is exactly the last entry the handoff covers and the
        // session cannot close in between.
        let session = lock_session(&self.sql, &mut tx, &h.tenant, &h.session_key).await?;
        rules::check_append(&session, None, h.created_at)?;
        h.up_to_seq = session.last_seq;
        let max_tokens =
            i32::try_from(h.max_tokens).map_err(|_| Error::invalid("max_tokens", "must be at most 2147483647"))?;
        let insert = sqlx::query(INSERT_HANDOFF)
            .bind(&h.tenant)
            .bind(&h.handoff_id)
            .bind(session.id)
            .bind(&h.session_key)
            .bind(&h.from_agent)
            .bind(&h.to_agent)
            .bind(h.kind.as_str())
            .bind(h.status.as_str())
            .bind(&h.instructions)
            .bind(&h.summary)
            .bind(signed(h.up_to_seq))
            .bind(max_tokens)
            .bind(&h.reason)
            .bind(ts(h.created_at)?)
            .bind(ts(h.updated_at)?)
            .bind(h.deadline.map(ts).transpose()?)
            .fetch_one(&mut *tx);
        let inserted = self.sql.run("INSERT", "handoffs", insert).await;
        let pk: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::AlreadyExists { what: "handoff", key: h.handoff_id });
            }
            Err(e) => return Err(e.into()),
        };
        let events = write_events(&self.sql, &mut tx, &[(pk, HandoffEventType::Created, &h)]).await?;
        self.sql.run("COMMIT", "", tx.commit()).await?;
        Ok(Changed { handoff: h, events, session: None })
    }

    async fn get_handoff(&self, tenant: &str, handoff_id: &str) -> Result<Handoff> {
        let get = sqlx::query(GET_HANDOFF).bind(tenant).bind(handoff_id).fetch_optional(&self.pool);
        let row = self.sql.run("SELECT", "handoffs", get).await?;
        Ok(handoff_at(&row.ok_or_else(|| Error::handoff_not_found(handoff_id))?, 0)?.handoff)
    }

    async fn list_handoffs(&self, q: &HandoffQuery) -> Result<HandoffPage> {
        let mut b =
            QueryBuilder::<Postgres>::new(concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = "));
        b.push_bind(&q.tenant);
        if let Some(to) = &q.to_agent {
            b.push(" AND h.to_agent = ").push_bind(to);
        }
        if let Some(from) = &q.from_agent {
            b.push(" AND h.from_agent = ").push_bind(from);
        }
        if let Some(key) = &q.session_key {
            b.push(" AND h.session_id = (SELECT id FROM sessions WHERE tenant = ").push_bind(&q.tenant);
            b.push(" AND session_key = ").push_bind(key).push(")");
        }
        if let Some(status) = q.status {
            b.push(" AND h.status = ").push_bind(status.as_str());
        }
        if let Some(before) = q.before_id {
            b.push(" AND h.id < ").push_bind(before);
        }
        b.push(" ORDER BY h.id DESC LIMIT ").push_bind(i64::from(q.limit));
        let rows = self.sql.run("SELECT", "handoffs", b.build().fetch_all(&self.pool)).await?;
        rows.iter()
            .map(|r| {
                let stored = handoff_at(r, 0)?;
                Ok((stored.pk, stored.handoff))
            })
            .collect()
    }

    async fn change_handoff(&self, tenant: &str, handoff_id: &str, now: Micros, decide: Decide<'_>) -> Result<Changed> {
        let mut tx = self.sql.run("BEGIN", "", self.pool.begin()).await?;
        let lock = sqlx::query(LOCK_HANDOFF).bind(tenant).bind(handoff_id).fetch_optional(&mut *tx);
        let row = self.sql.run("SELECT", "handoffs", lock).await?;
        let stored = handoff_at(&row.ok_or_else(|| Error::handoff_not_found(handoff_id))?, 0)?;
        let change = decide(&stored.handoff)?;
        let mut changed = apply_changes(&self.sql, &mut tx, vec![(stored, change)], now).await?;
        self.sql.run("COMMIT", "", tx.commit()).await?;
        changed.pop().ok_or_else(|| Error::Internal("a handoff change was lost".into()))
    }

    async fn expire_handoffs(&self, now: Micros, limit: u32) -> Result<Vec<Changed>> {
        let mut tx = self.sql.run("BEGIN", "", self.pool.begin()).await?;
        let due = sqlx::query(DUE_HANDOFFS).bind(ts(now)?).bind(i64::from(limit)).fetch_all(&mut *tx);
        let rows = self.sql.run("SELECT", "handoffs", due).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let stored = handoff_at(row, 0)?;
            // The query already picked due handoffs; the rule has the last word.
            if let Ok(change) = rules::expire(&stored.handoff, now) {
                due.push((stored, change));
            }
        }
        let changed = apply_changes(&self.sql, &mut tx, due, now).await?;
        self.sql.run("COMMIT", "", tx.commit()).await?;
        Ok(changed)
    }

    async fn expire_sessions(&self, now: Micros, limit: u32) -> Result<Vec<Session>> {
        let expire = sqlx::query(EXPIRE_SESSIONS).bind(ts(now)?).bind(i64::from(limit)).fetch_all(&self.pool);
        let rows = self.sql.run("UPDATE", "sessions", expire).await?;
        rows.iter().map(|r| session_at(r, 0)).collect()
    }

    async fn pending_inbox(&self, tenant: &str, agent: &str) -> Result<(Vec<HandoffEvent>, u64)> {
        let pending = sqlx::query(PENDING_INBOX).bind(tenant).bind(agent).fetch_all(&self.pool);
        let rows = self.sql.run("SELECT", "handoffs", pending).await?;
        let mut head = 0;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            head = unsigned(row.try_get(0)?);
            if row.try_get::<Option<i64>, _>(2)?.is_some() {
                events.push(event_at(row, 1)?);
            }
        }
        Ok((events, head))
    }

    async fn inbox_after(&self, tenant: &str, agent: &str, after_cursor: u64, limit: u32) -> Result<Vec<HandoffEvent>> {
        let after = sqlx::query(INBOX_AFTER)
            .bind(tenant)
            .bind(agent)
            .bind(signed(after_cursor))
            .bind(i64::from(limit))
            .fetch_all(&self.pool);
        let rows = self.sql.run("SELECT", "inbox_events", after).await?;
        rows.iter().map(|r| event_at(r, 0)).collect()
    }
}

impl PgStore {
    /// `NotFound` unless the session exists; for reads whose empty answer is ambiguous.
    async fn require_session(&self, tenant: &str, session_key: &str) -> Result<()> {
        let exists = sqlx::query(SESSION_EXISTS).bind(tenant).bind(session_key).fetch_optional(&self.pool);
        let found = self.sql.run("SELECT", "sessions", exists).await?;
        found.map(drop).ok_or_else(|| Error::session_not_found(session_key))
    }
}

async fn lock_session(sql: &Sql, conn: &mut PgConnection, tenant: &str, session_key: &str) -> Result<Session> {
    let lock = sqlx::query(LOCK_SESSION).bind(tenant).bind(session_key).fetch_optional(conn);
    let row = sql.run("SELECT", "sessions", lock).await?;
    session_at(&row.ok_or_else(|| Error::session_not_found(session_key))?, 0)
}

/// A handoff row with its internal keys.
struct StoredHandoff {
    pk: i64,
    session_id: i64,
    handoff: Handoff,
}

/// Writes decided changes of locked handoffs: their new state, the session side, and an
/// event for each handoff's agents.
async fn apply_changes(
    sql: &Sql,
    conn: &mut PgConnection,
    changes: Vec<(StoredHandoff, Change)>,
    now: Micros,
) -> Result<Vec<Changed>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(changes.len());
    let mut statuses = Vec::with_capacity(changes.len());
    let mut reasons = Vec::with_capacity(changes.len());
    let mut done = Vec::with_capacity(changes.len());
    for (mut stored, change) in changes {
        let h = &mut stored.handoff;
        h.status = change.status;
        if let Some(reason) = &change.reason {
            h.reason.clone_from(reason);
        }
        h.updated_at = now;
        ids.push(stored.pk);
        statuses.push(h.status.as_str());
        reasons.push(h.reason.clone());
        done.push((stored, change));
    }
    let update =
        sqlx::query(UPDATE_HANDOFFS).bind(ts(now)?).bind(&ids).bind(&statuses).bind(&reasons).execute(&mut *conn);
    sql.run("UPDATE", "handoffs", update).await?;

    let mut sessions = Vec::with_capacity(done.len());
    for (stored, change) in &done {
        let session = if change.new_owner.is_some() || change.session_status.is_some() {
            let touch = sqlx::query(TOUCH_SESSION)
                .bind(stored.session_id)
                .bind(change.new_owner.is_some())
                .bind(change.new_owner.as_deref().unwrap_or_default())
                .bind(change.session_status.map(SessionStatus::as_str))
                .bind(ts(now)?)
                .fetch_one(&mut *conn);
            let row = sql.run("UPDATE", "sessions", touch).await?;
            Some(session_at(&row, 0)?)
        } else {
            None
        };
        sessions.push(session);
    }

    let batch: Vec<_> = done.iter().map(|(s, c)| (s.pk, c.event, &s.handoff)).collect();
    let mut events = write_events(sql, conn, &batch).await?.into_iter();
    let mut out = Vec::with_capacity(done.len());
    for ((stored, _), session) in done.into_iter().zip(sessions) {
        let n = inbox_owners(&stored.handoff).len();
        out.push(Changed { events: events.by_ref().take(n).collect(), handoff: stored.handoff, session });
    }
    Ok(out)
}

/// The agents whose inboxes get a handoff's events: both ends, once each.
fn inbox_owners(h: &Handoff) -> Vec<&str> {
    if h.from_agent == h.to_agent {
        vec![h.from_agent.as_str()]
    } else {
        vec![h.from_agent.as_str(), h.to_agent.as_str()]
    }
}

/// Writes, for each (handoff pk, event, handoff as of right after it), the event into the
/// inboxes of the handoff's agents; returns the events in input order, from_agent's first.
async fn write_events(
    sql: &Sql,
    conn: &mut PgConnection,
    batch: &[(i64, HandoffEventType, &Handoff)],
) -> Result<Vec<HandoffEvent>> {
    let mut tenants = Vec::new();
    let mut agents = Vec::new();
    let mut pks = Vec::new();
    let mut kinds = Vec::new();
    let mut statuses = Vec::new();
    let mut reasons = Vec::new();
    let mut updated = Vec::new();
    for (pk, kind, h) in batch {
        for agent in inbox_owners(h) {
            tenants.push(h.tenant.as_str());
            agents.push(agent);
            pks.push(*pk);
            kinds.push(kind.as_str());
            statuses.push(h.status.as_str());
            reasons.push(h.reason.as_str());
            updated.push(ts(h.updated_at)?);
        }
    }
    let write = sqlx::query(WRITE_EVENTS)
        .bind(&tenants)
        .bind(&agents)
        .bind(&pks)
        .bind(&kinds)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&updated)
        .fetch_all(&mut *conn);
    let rows = sql.run("INSERT", "inbox_events", write).await?;
    if rows.len() != agents.len() {
        return Err(Error::Internal("inbox events were not all written".into()));
    }
    let mut cursors = rows.iter().map(|r| r.try_get::<i64, _>(0).map(unsigned));
    let mut events = Vec::with_capacity(rows.len());
    for (_, kind, h) in batch {
        for agent in inbox_owners(h) {
            let cursor = cursors.next().transpose()?.unwrap_or_default();
            events.push(HandoffEvent { agent: agent.to_owned(), cursor, kind: *kind, handoff: (*h).clone() });
        }
    }
    Ok(events)
}

// ---- rows ----

fn session_at(r: &PgRow, at: usize) -> Result<Session> {
    Ok(Session {
        id: r.try_get(at)?,
        tenant: r.try_get(at + 1)?,
        session_key: r.try_get(at + 2)?,
        created_by: r.try_get(at + 3)?,
        owner: r.try_get(at + 4)?,
        status: r.try_get::<&str, _>(at + 5)?.parse()?,
        metadata: r.try_get::<Json<Metadata>, _>(at + 6)?.0,
        last_seq: unsigned(r.try_get(at + 7)?),
        last_summary_seq: unsigned(r.try_get(at + 8)?),
        created_at: micros(r.try_get(at + 9)?),
        updated_at: micros(r.try_get(at + 10)?),
        last_activity_at: micros(r.try_get(at + 11)?),
        expires_at: r.try_get::<Option<OffsetDateTime>, _>(at + 12)?.map(micros),
    })
}

fn entry_at(r: &PgRow, at: usize, session_key: &str) -> Result<Entry> {
    let content = match r.try_get::<Option<String>, _>(at + 4)? {
        Some(text) => Content::Text(text),
        None => Content::Data(r.try_get::<Option<Vec<u8>>, _>(at + 5)?.unwrap_or_default()),
    };
    Ok(Entry {
        session_key: session_key.to_owned(),
        seq: unsigned(r.try_get(at)?),
        kind: r.try_get::<&str, _>(at + 1)?.parse()?,
        role: r.try_get(at + 2)?,
        author: r.try_get(at + 3)?,
        content,
        media_type: r.try_get(at + 6)?,
        metadata: r.try_get::<Json<Metadata>, _>(at + 7)?.0,
        token_count: u32::try_from(r.try_get::<i32, _>(at + 8)?).unwrap_or_default(),
        idempotency_key: r.try_get(at + 9)?,
        trace_id: r.try_get(at + 10)?,
        created_at: micros(r.try_get(at + 11)?),
    })
}

fn handoff_at(r: &PgRow, at: usize) -> Result<StoredHandoff> {
    Ok(StoredHandoff {
        pk: r.try_get(at)?,
        session_id: r.try_get(at + 1)?,
        handoff: Handoff {
            handoff_id: r.try_get(at + 2)?,
            tenant: r.try_get(at + 3)?,
            session_key: r.try_get(at + 4)?,
            from_agent: r.try_get(at + 5)?,
            to_agent: r.try_get(at + 6)?,
            kind: r.try_get::<&str, _>(at + 7)?.parse()?,
            status: r.try_get::<&str, _>(at + 8)?.parse()?,
            instructions: r.try_get(at + 9)?,
            summary: r.try_get(at + 10)?,
            up_to_seq: unsigned(r.try_get(at + 11)?),
            max_tokens: u32::try_from(r.try_get::<i32, _>(at + 12)?).unwrap_or_default(),
            reason: r.try_get(at + 13)?,
            created_at: micros(r.try_get(at + 14)?),
            updated_at: micros(r.try_get(at + 15)?),
            deadline: r.try_get::<Option<OffsetDateTime>, _>(at + 16)?.map(micros),
        },
    })
}

/// An inbox event: the handoff with the event's status, reason and time laid over it, so it
/// reads as it was right after the event.
fn event_at(r: &PgRow, at: usize) -> Result<HandoffEvent> {
    let mut handoff = handoff_at(r, at + EVENT_COUNT)?.handoff;
    handoff.status = r.try_get::<&str, _>(at + 3)?.parse::<HandoffStatus>()?;
    handoff.reason = r.try_get(at + 4)?;
    handoff.updated_at = micros(r.try_get(at + 5)?);
    Ok(HandoffEvent {
        agent: r.try_get(at)?,
        cursor: unsigned(r.try_get(at + 1)?),
        kind: r.try_get::<&str, _>(at + 2)?.parse()?,
        handoff,
    })
}

// ---- conversions ----

fn ts(m: Micros) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.0) * 1000)
        .map_err(|_| Error::Internal(format!("timestamp {} µs since the epoch is out of range", m.0)))
}

fn micros(t: OffsetDateTime) -> Micros {
    // OffsetDateTime spans ±9999 years, well inside i64 microseconds.
    Micros(i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX))
}

/// Seqs and cursors are u64 in the domain and BIGINT in the database; a bound beyond
/// i64::MAX matches nothing stored, so it saturates.
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::EntryKind;
    use crate::domain::rules::Action;
    use crate::domain::{HandoffType, NewEntry};

    const T0: Micros = Micros(1_700_000_000_000_000);
    const SECOND: i64 = 1_000_000;

    /// A migrated store on `BATON_TEST_DATABASE_URL`, or `None` (the test is skipped).
    async fn store(max_connections: u32) -> Option<PgStore> {
        let Ok(url) = std::env::var("BATON_TEST_DATABASE_URL") else {
            eprintln!("BATON_TEST_DATABASE_URL is not set; skipping a PostgreSQL store test");
            return None;
        };
        let store = PgStore::connect(&url, max_connections).await.expect("connect");
        store.migrate().await.expect("migrate");
        Some(store)
    }

    /// A fresh tenant, so tests share one database without seeing each other's rows.
    fn tenant() -> String {
        format!("test-{}", uuid::Uuid::now_v7().simple())
    }

    fn at(seconds: i64) -> Micros {
        Micros(T0.0 + seconds * SECOND)
    }

    async fn session(store: &PgStore, tenant: &str, key: &str, agent: &str) -> Session {
        store
            .create_session(NewSession {
                tenant: tenant.into(),
                session_key: key.into(),
                agent: agent.into(),
                metadata: Metadata::new(),
                now: T0,
                expires_at: None,
            })
            .await
            .expect("create session")
    }

    fn text(kind: EntryKind, body: &str) -> NewEntry {
        let content = Content::Text(body.into());
        NewEntry {
            kind,
            role: "user".into(),
            author: "alice".into(),
            token_count: crate::domain::tokens::estimate(&content),
            content,
            media_type: "text/plain".into(),
            metadata: Metadata::new(),
        }
    }

    fn append(tenant: &str, key: &str, entries: Vec<NewEntry>) -> AppendCommand {
        AppendCommand {
            tenant: tenant.into(),
            session_key: key.into(),
            entries,
            idempotency_key: None,
            expected_last_seq: None,
            trace_id: String::new(),
            now: at(1),
        }
    }

    fn handoff(tenant: &str, key: &str, id: &str, from: &str, to: &str, kind: HandoffType) -> NewHandoff {
        NewHandoff {
            handoff: Handoff {
                handoff_id: id.into(),
                tenant: tenant.into(),
                session_key: key.into(),
                from_agent: from.into(),
                to_agent: to.into(),
                kind,
                status: HandoffStatus::Pending,
                instructions: "take over".into(),
                summary: "so far".into(),
                up_to_seq: 0,
                max_tokens: 1000,
                reason: String::new(),
                created_at: at(2),
                updated_at: at(2),
                deadline: None,
            },
        }
    }

    async fn all_entries(store: &PgStore, tenant: &str, key: &str) -> Vec<Entry> {
        store
            .list_entries(&EntryQuery {
                tenant: tenant.into(),
                session_key: key.into(),
                after_seq: 0,
                before_seq: None,
                kinds: Vec::new(),
                limit: 10_000,
            })
            .await
            .expect("list entries")
    }

    fn reason(e: Error) -> &'static str {
        match e {
            Error::FailedPrecondition { reason, .. } => reason,
            other => panic!("expected a failed precondition, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_appends_get_gap_free_seqs() {
        let Some(store) = store(33).await else { return };
        let store = Arc::new(store);
        let t = tenant();
        session(&store, &t, "s", "alice").await;

        const TASKS: usize = 32;
        const APPENDS: usize = 4;
        const BATCH: usize = 3;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..APPENDS {
                        let batch = (0..BATCH).map(|j| text(EntryKind::Message, &format!("{task}.{i}.{j}"))).collect();
                        let out = store.append(append(&t, "s", batch)).await.expect("append");
                        let got: Vec<u64> = out.entries.iter().map(|e| e.seq).collect();
                        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "a batch is contiguous: {got:?}");
                        assert_eq!(out.session.last_seq, *got.last().unwrap());
                        seqs.extend(got);
                    }
                    seqs
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.extend(task.await.unwrap());
        }
        seqs.sort_unstable();
        let n = (TASKS * APPENDS * BATCH) as u64;
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>());

        let stored = all_entries(&store, &t, "s").await;
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
        assert_eq!(store.get_session(&t, "s").await.unwrap().last_seq, n);
    }

    #[tokio::test]
    async fn a_replayed_idempotency_key_returns_the_original_and_writes_nothing() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "s", "alice").await;

        let mut first = append(&t, "s", vec![text(EntryKind::Message, "one"), text(EntryKind::Summary, "sum")]);
        first.idempotency_key = Some("k1".into());
        first.trace_id = "trace-1".into();
        let original = store.append(first.clone()).await.unwrap();
        assert!(!original.replayed);
        assert_eq!(original.session.last_seq, 2);
        assert_eq!(original.session.last_summary_seq, 2);
        assert_eq!(original.entries[0].idempotency_key, "k1");
        assert_eq!(original.entries[0].trace_id, "trace-1");

        let mut again = first.clone();
        again.entries = vec![text(EntryKind::Message, "different")];
        again.now = at(5);
        let replay = store.append(again).await.unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.entries, original.entries);
        assert_eq!(replay.session.last_seq, 2);
        assert_eq!(all_entries(&store, &t, "s").await, original.entries);

        // The key is per session and an unkeyed append goes on from there.
        let next = store.append(append(&t, "s", vec![text(EntryKind::Message, "two")])).await.unwrap();
        assert_eq!(next.entries[0].seq, 3);
        assert_eq!(next.entries[0].idempotency_key, "");
        assert_eq!(next.session.last_summary_seq, 2);
    }

    #[tokio::test]
    async fn a_seq_mismatch_or_a_closed_session_writes_nothing() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "s", "alice").await;
        store.append(append(&t, "s", vec![text(EntryKind::Message, "one")])).await.unwrap();

        let mut stale = append(&t, "s", vec![text(EntryKind::Message, "two")]);
        stale.expected_last_seq = Some(0);
        stale.idempotency_key = Some("k".into());
        assert_eq!(reason(store.append(stale.clone()).await.unwrap_err()), "SEQ_MISMATCH");
        assert_eq!(all_entries(&store, &t, "s").await.len(), 1);

        // The failed attempt left no idempotency record behind.
        stale.expected_last_seq = Some(1);
        let ok = store.append(stale).await.unwrap();
        assert!(!ok.replayed);
        assert_eq!(ok.entries[0].seq, 2);

        let patch = SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() };
        let closed = store.update_session(&t, "s", patch, at(3)).await.unwrap();
        assert_eq!(closed.status, SessionStatus::Closed);
        assert_eq!(closed.updated_at, at(3));
        let late = store.append(append(&t, "s", vec![text(EntryKind::Message, "three")])).await.unwrap_err();
        assert_eq!(reason(late), "SESSION_CLOSED");
        assert_eq!(store.get_session(&t, "s").await.unwrap().last_seq, 2);

        let reopen = SessionPatch { status: Some(SessionStatus::Active), ..Default::default() };
        assert_eq!(reason(store.update_session(&t, "s", reopen, at(4)).await.unwrap_err()), "ILLEGAL_TRANSITION");
        let missing = store.append(append(&t, "nope", vec![text(EntryKind::Message, "x")])).await.unwrap_err();
        assert!(matches!(missing, Error::NotFound { what: "session", .. }));
    }

    #[tokio::test]
    async fn sessions_are_unique_per_tenant_and_list_newest_first() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "a", "alice").await;
        let dup = NewSession {
            tenant: t.clone(),
            session_key: "a".into(),
            agent: "bob".into(),
            metadata: Metadata::new(),
            now: T0,
            expires_at: None,
        };
        match store.create_session(dup).await.unwrap_err() {
            Error::AlreadyExists { what: "session", key } => assert_eq!(key, "a"),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        session(&store, &tenant(), "a", "alice").await;
        session(&store, &t, "b", "bob").await;
        session(&store, &t, "c", "alice").await;

        let query = |agent: Option<&str>, before_id| SessionQuery {
            tenant: t.clone(),
            agent: agent.map(str::to_owned),
            status: None,
            before_id,
            limit: 2,
        };
        let keys = |v: &[Session]| v.iter().map(|s| s.session_key.clone()).collect::<Vec<_>>();
        let page = store.list_sessions(&query(None, None)).await.unwrap();
        assert_eq!(keys(&page), ["c", "b"]);
        let rest = store.list_sessions(&query(None, Some(page[1].id))).await.unwrap();
        assert_eq!(keys(&rest), ["a"]);
        assert_eq!(keys(&store.list_sessions(&query(Some("alice"), None)).await.unwrap()), ["c", "a"]);
    }

    #[tokio::test]
    async fn a_full_handoff_moves_ownership_and_rejects_illegal_transitions() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "s", "alice").await;
        store
            .append(append(&t, "s", vec![text(EntryKind::Message, "a"), text(EntryKind::Message, "b")]))
            .await
            .unwrap();

        let created =
            store.create_handoff(handoff(&t, "s", "h1", "alice", "bob", HandoffType::FullHandoff)).await.unwrap();
        assert_eq!(created.handoff.up_to_seq, 2);
        assert_eq!(created.handoff.status, HandoffStatus::Pending);
        assert_eq!(created.events.len(), 2);
        assert_eq!(store.get_handoff(&t, "h1").await.unwrap(), created.handoff);
        let dup = store.create_handoff(handoff(&t, "s", "h1", "alice", "bob", HandoffType::FullHandoff)).await;
        assert!(matches!(dup, Err(Error::AlreadyExists { what: "handoff", .. })));

        let by_carol = store
            .change_handoff(&t, "h1", at(3), &|h| rules::decide(h, Action::Accept, "carol", None, at(3)))
            .await
            .unwrap_err();
        assert!(matches!(by_carol, Error::PermissionDenied(_)));

        let accepted = store
            .change_handoff(&t, "h1", at(3), &|h| rules::decide(h, Action::Accept, "bob", None, at(3)))
            .await
            .unwrap();
        assert_eq!(accepted.handoff.status, HandoffStatus::Accepted);
        assert_eq!(accepted.handoff.updated_at, at(3));
        let s = accepted.session.expect("a full handoff touches the session");
        assert_eq!((s.owner.as_str(), s.status), ("bob", SessionStatus::HandedOff));
        assert_eq!(store.get_session(&t, "s").await.unwrap(), s);
        assert_eq!(accepted.events.iter().map(|e| e.kind).collect::<Vec<_>>(), [HandoffEventType::Accepted; 2]);

        let again = store
            .change_handoff(&t, "h1", at(4), &|h| rules::decide(h, Action::Reject, "bob", Some("no"), at(4)))
            .await
            .unwrap_err();
        assert_eq!(reason(again), "ILLEGAL_TRANSITION");
        assert_eq!(store.get_handoff(&t, "h1").await.unwrap().status, HandoffStatus::Accepted);

        let done = store
            .change_handoff(&t, "h1", at(5), &|h| rules::decide(h, Action::Complete, "bob", None, at(5)))
            .await
            .unwrap();
        assert_eq!(done.handoff.status, HandoffStatus::Completed);
        assert_eq!(done.session.unwrap().status, SessionStatus::Active);

        let missing =
            store.change_handoff(&t, "nope", at(5), &|h| rules::decide(h, Action::Accept, "bob", None, at(5)));
        assert!(matches!(missing.await, Err(Error::NotFound { what: "handoff", .. })));

        let page = store
            .list_handoffs(&HandoffQuery {
                tenant: t.clone(),
                to_agent: Some("bob".into()),
                from_agent: None,
                session_key: Some("s".into()),
                status: Some(HandoffStatus::Completed),
                before_id: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].1, done.handoff);

        let patch = SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() };
        store.update_session(&t, "s", patch, at(6)).await.unwrap();
        let closed = store.create_handoff(handoff(&t, "s", "h2", "bob", "carol", HandoffType::ContextTransfer)).await;
        assert_eq!(reason(closed.unwrap_err()), "SESSION_CLOSED");
    }

    #[tokio::test]
    async fn due_handoffs_and_sessions_expire() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        let mut new = NewSession {
            tenant: t.clone(),
            session_key: "short".into(),
            agent: "alice".into(),
            metadata: Metadata::new(),
            now: T0,
            expires_at: Some(at(100)),
        };
        store.create_session(new.clone()).await.unwrap();
        new.session_key = "s".into();
        new.expires_at = None;
        store.create_session(new).await.unwrap();

        let mut h = handoff(&t, "s", "h1", "alice", "bob", HandoffType::ContextTransfer);
        h.handoff.deadline = Some(at(50));
        store.create_handoff(h).await.unwrap();
        store.create_handoff(handoff(&t, "s", "h2", "alice", "bob", HandoffType::ContextTransfer)).await.unwrap();

        // Other tests share the database: look only at this tenant's changes.
        let mine = |v: Vec<Changed>| v.into_iter().filter(|c| c.handoff.tenant == t).collect::<Vec<_>>();
        assert!(mine(store.expire_handoffs(at(49), 1000).await.unwrap()).is_empty());
        let expired = mine(store.expire_handoffs(at(50), 1000).await.unwrap());
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].handoff.handoff_id, "h1");
        assert_eq!(expired[0].handoff.status, HandoffStatus::Expired);
        assert_eq!(expired[0].handoff.updated_at, at(50));
        let agents: Vec<_> = expired[0].events.iter().map(|e| (e.agent.as_str(), e.kind)).collect();
        assert_eq!(agents, [("alice", HandoffEventType::Expired), ("bob", HandoffEventType::Expired)]);
        assert_eq!(store.get_handoff(&t, "h1").await.unwrap().status, HandoffStatus::Expired);
        assert!(mine(store.expire_handoffs(at(60), 1000).await.unwrap()).is_empty());

        let mine = |v: Vec<Session>| v.into_iter().filter(|s| s.tenant == t).collect::<Vec<_>>();
        assert!(mine(store.expire_sessions(at(99), 1000).await.unwrap()).is_empty());
        let expired = mine(store.expire_sessions(at(100), 1000).await.unwrap());
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].session_key.as_str(), expired[0].status), ("short", SessionStatus::Expired));
        assert_eq!(expired[0].updated_at, at(100));
        assert!(mine(store.expire_sessions(at(200), 1000).await.unwrap()).is_empty());
        assert_eq!(store.get_session(&t, "s").await.unwrap().status, SessionStatus::Active);
    }

    #[tokio::test]
    async fn inbox_cursors_are_gap_free_and_events_show_their_moment() {
        let Some(store) = store(17).await else { return };
        let store = Arc::new(store);
        let t = tenant();
        session(&store, &t, "s", "alice").await;

        assert_eq!(store.pending_inbox(&t, "bob").await.unwrap(), (Vec::new(), 0));

        const N: usize = 16;
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (store, t) = (store.clone(), t.clone());
                let from = if i % 2 == 0 { "alice" } else { "carol" };
                tokio::spawn(async move {
                    let h = handoff(&t, "s", &format!("h{i}"), from, "bob", HandoffType::Collaboration);
                    store.create_handoff(h).await.expect("create handoff")
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let cursors = |v: &[HandoffEvent]| v.iter().map(|e| e.cursor).collect::<Vec<_>>();
        let bob = store.inbox_after(&t, "bob", 0, 100).await.unwrap();
        assert_eq!(cursors(&bob), (1..=N as u64).collect::<Vec<_>>());
        assert!(bob.iter().all(|e| e.agent == "bob" && e.kind == HandoffEventType::Created));
        let alice = store.inbox_after(&t, "alice", 0, 100).await.unwrap();
        assert_eq!(cursors(&alice), (1..=N as u64 / 2).collect::<Vec<_>>());

        // Bob rejects the handoff of his first event; the created event still shows it pending.
        let first = bob[0].handoff.handoff_id.clone();
        let rejected = store
            .change_handoff(&t, &first, at(3), &|h| rules::decide(h, Action::Reject, "bob", Some("busy"), at(3)))
            .await
            .unwrap();
        let bobs = rejected.events.iter().find(|e| e.agent == "bob").unwrap();
        assert_eq!(bobs.cursor, N as u64 + 1);

        let after = store.inbox_after(&t, "bob", N as u64 - 1, 100).await.unwrap();
        assert_eq!(cursors(&after), [N as u64, N as u64 + 1]);
        assert_eq!(after[1].kind, HandoffEventType::Rejected);
        assert_eq!(after[1].handoff.status, HandoffStatus::Rejected);
        assert_eq!(after[1].handoff.reason, "busy");
        assert_eq!(after[1].handoff.updated_at, at(3));
        assert_eq!(after[1], *bobs);
        let created = store.inbox_after(&t, "bob", 0, 1).await.unwrap();
        assert_eq!(created[0].handoff.handoff_id, first);
        assert_eq!(created[0].handoff.status, HandoffStatus::Pending);
        assert_eq!(created[0].handoff.updated_at, at(2));

        let (pending, head) = store.pending_inbox(&t, "bob").await.unwrap();
        assert_eq!(head, N as u64 + 1);
        assert_eq!(cursors(&pending), (2..=N as u64).collect::<Vec<_>>());
        assert!(
            pending.iter().all(|e| e.kind == HandoffEventType::Created && e.handoff.status == HandoffStatus::Pending)
        );
        assert_eq!(pending, bob[1..]);
        // Nothing is addressed to alice: no pending handoffs, but her inbox has a head.
        let alice = store.inbox_after(&t, "alice", 0, 100).await.unwrap();
        let alice_head = alice.last().unwrap().cursor;
        assert_eq!(cursors(&alice), (1..=alice_head).collect::<Vec<_>>());
        assert_eq!(store.pending_inbox(&t, "alice").await.unwrap(), (Vec::new(), alice_head));
    }

    #[tokio::test]
    async fn crossing_handoffs_between_shared_agents_neither_deadlock_nor_leave_gaps() {
        let Some(store) = store(17).await else { return };
        let store = Arc::new(store);
        let t = tenant();
        session(&store, &t, "s", "a").await;
        let agents = ["a", "b", "c", "d"];
        let pairs: Vec<(usize, &str, &str)> = (0..24)
            .map(|i| (i, agents[i % 4], agents[(i / 4 + 1 + i) % 4]))
            .filter(|(_, from, to)| from != to)
            .collect();
        let creates: Vec<_> = pairs
            .iter()
            .map(|&(i, from, to)| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    let h = handoff(&t, "s", &format!("h{i}"), from, to, HandoffType::Collaboration);
                    store.create_handoff(h).await.map(drop)
                })
            })
            .collect();
        for task in creates {
            task.await.unwrap().expect("create");
        }
        // Half are accepted by their targets, half cancelled by their requesters, all at once.
        let changes: Vec<_> = pairs
            .iter()
            .map(|&(i, from, to)| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    let (action, agent) = if i % 2 == 0 { (Action::Accept, to) } else { (Action::Cancel, from) };
                    let decide = move |h: &Handoff| rules::decide(h, action, agent, None, at(3));
                    store.change_handoff(&t, &format!("h{i}"), at(3), &decide).await.map(drop)
                })
            })
            .collect();
        for task in changes {
            task.await.unwrap().expect("change");
        }
        for agent in agents {
            let inbox = store.inbox_after(&t, agent, 0, 1000).await.unwrap();
            let involved = pairs.iter().filter(|(_, f, to)| *f == agent || *to == agent).count();
            assert_eq!(inbox.len(), 2 * involved, "agent {agent}");
            assert_eq!(
                inbox.iter().map(|e| e.cursor).collect::<Vec<_>>(),
                (1..=inbox.len() as u64).collect::<Vec<_>>()
            );
            assert_eq!(store.pending_inbox(&t, agent).await.unwrap(), (Vec::new(), inbox.len() as u64));
        }
    }

    #[tokio::test]
    async fn search_ranks_hits_with_highlighted_snippets() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "s", "alice").await;
        session(&store, &t, "other", "alice").await;
        let entries = vec![
            text(EntryKind::Message, "The quick brown fox jumps over the lazy dog."),
            text(EntryKind::Message, "Foxes: a fox, another fox and the fox den."),
            text(EntryKind::Message, "Nothing about that animal here."),
        ];
        store.append(append(&t, "s", entries)).await.unwrap();
        store.append(append(&t, "other", vec![text(EntryKind::Message, "one fox")])).await.unwrap();
        store.append(append(&tenant(), "s", vec![text(EntryKind::Message, "fox")])).await.ok();

        let query = |session_key: Option<&str>, q: &str, offset| SearchQuery {
            tenant: t.clone(),
            session_key: session_key.map(str::to_owned),
            query: q.into(),
            offset,
            limit: 10,
        };
        let hits = store.search(&query(Some("s"), "fox", 0)).await.unwrap();
        assert_eq!(hits.iter().map(|h| h.entry.seq).collect::<Vec<_>>(), [2, 1]);
        assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);
        assert!(hits[0].snippet.contains("[fox]"), "snippet: {}", hits[0].snippet);
        assert!(hits[1].snippet.contains("[fox]"), "snippet: {}", hits[1].snippet);
        assert_eq!(hits[0].entry.session_key, "s");

        let everywhere = store.search(&query(None, "fox", 0)).await.unwrap();
        assert_eq!(everywhere.len(), 3);
        let page2 = store.search(&query(None, "fox", 2)).await.unwrap();
        assert_eq!(page2, everywhere[2..]);
        let phrase = store.search(&query(None, "\"lazy dog\" -cat", 0)).await.unwrap();
        assert_eq!(phrase.iter().map(|h| h.entry.seq).collect::<Vec<_>>(), [1]);

        assert!(store.search(&query(None, "the", 0)).await.unwrap().is_empty());
        assert!(store.search(&query(None, "", 0)).await.unwrap().is_empty());
        let missing = store.search(&query(Some("nope"), "fox", 0)).await.unwrap_err();
        assert!(matches!(missing, Error::NotFound { what: "session", .. }));
    }

    #[tokio::test]
    async fn the_window_is_the_latest_summary_and_the_newest_entries_after_it() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "s", "alice").await;

        let empty = store.window(&t, "s", 10, u32::MAX).await.unwrap();
        assert!(empty.summary.is_none() && empty.newest_first.is_empty());

        let batch = |kinds: &[EntryKind]| kinds.iter().map(|k| text(*k, k.as_str())).collect::<Vec<_>>();
        use EntryKind::*;
        store.append(append(&t, "s", batch(&[Message, Summary, ToolCall]))).await.unwrap();
        store.append(append(&t, "s", batch(&[Message, Summary, Message, ToolResult, Message]))).await.unwrap();

        let w = store.window(&t, "s", 2, u32::MAX).await.unwrap();
        assert_eq!(w.session.last_seq, 8);
        assert_eq!(w.summary.as_ref().map(|e| e.seq), Some(5));
        assert_eq!(w.newest_first.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 7]);
        let all = store.window(&t, "s", 100, u32::MAX).await.unwrap();
        assert_eq!(all.newest_first.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 7, 6]);
        assert_eq!(all.summary.unwrap().content, Content::Text("summary".into()));
        let none = store.window(&t, "s", 0, u32::MAX).await.unwrap();
        assert!(none.newest_first.is_empty() && none.summary.is_some());

        let listed = store
            .list_entries(&EntryQuery {
                tenant: t.clone(),
                session_key: "s".into(),
                after_seq: 1,
                before_seq: Some(8),
                kinds: vec![Message, Summary],
                limit: 3,
            })
            .await
            .unwrap();
        assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4, 5]);
        assert!(matches!(store.window(&t, "nope", 5, u32::MAX).await, Err(Error::NotFound { .. })));
        let missing = EntryQuery {
            tenant: t.clone(),
            session_key: "nope".into(),
            after_seq: 0,
            before_seq: None,
            kinds: Vec::new(),
            limit: 5,
        };
        assert!(matches!(store.list_entries(&missing).await, Err(Error::NotFound { .. })));
    }

    #[tokio::test]
    async fn binary_content_and_metadata_round_trip() {
        let Some(store) = store(4).await else { return };
        let t = tenant();
        session(&store, &t, "s", "alice").await;
        let mut metadata = Metadata::new();
        metadata.insert("tool".into(), serde_json::json!({"name": "grep", "args": [1, 2]}));
        let content = Content::Data(vec![0, 159, 146, 150, 255]);
        let entry = NewEntry {
            kind: EntryKind::File,
            role: "tool".into(),
            author: "alice".into(),
            token_count: crate::domain::tokens::estimate(&content),
            content,
            media_type: "application/octet-stream".into(),
            metadata,
        };
        let written = store.append(append(&t, "s", vec![entry])).await.unwrap();
        assert_eq!(all_entries(&store, &t, "s").await, written.entries);
        assert_eq!(written.entries[0].created_at, at(1));
    }
}
