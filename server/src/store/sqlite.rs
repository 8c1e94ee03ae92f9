//! Embedded SQLite store, used when `batond` runs without a `DATABASE_URL`.
//!
//! One file (`baton.db` in the data directory) in WAL mode, so readers never block the
//! writer. Writes go through a pool of exactly one connection and every write transaction
//! starts with `BEGIN IMMEDIATE`: writers queue in the pool instead of racing for SQLite's
//! lock, no transaction ever has to upgrade a read lock (the source of `SQLITE_BUSY` in WAL
//! mode), and seqs and inbox cursors are gap-free because only one writer exists at a time.
//! Reads use a separate pool of read-only connections.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Executor, QueryBuilder, Row, Sqlite, Transaction};

use super::{
    AppendCommand, AppendOutcome, Change, Changed, Decide, EntryQuery, HandoffPage, HandoffQuery, NewHandoff,
    NewSession, SearchQuery, SessionPatch, SessionQuery, Store, WindowSlice,
};
use crate::domain::{
    Content, Entry, EntryKind, Error, Handoff, HandoffEvent, HandoffEventType, HandoffStatus, Metadata, Micros, Result,
    SearchHit, Session, SessionStatus, rules,
};
use crate::telemetry::sql::{PoolSample, Sql, pool_collector};

/// The database file inside the data directory.
const DB_FILE: &str = "baton.db";
/// Read connections. Reads are short; a few cover a single node's concurrency.
const READERS: u32 = 4;
/// How long a connection waits for a lock held by another process on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tokens of context around the matches in a search snippet.
const SNIPPET_TOKENS: u32 = 16;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

// Column lists as macros so they can be spliced into `concat!` and give `&'static str`
// statements, which sqlx prepares once per connection and reuses.
macro_rules! session_cols {
    () => {
        "id, tenant, session_key, created_by, owner, status, metadata, last_seq, last_summary_seq, \
         created_at, updated_at, last_activity_at, expires_at"
    };
}

macro_rules! entry_cols {
    () => {
        "e.seq AS seq, e.kind AS kind, e.role AS role, e.author AS author, \
         e.content_text AS content_text, e.content_data AS content_data, e.media_type AS media_type, \
         e.metadata AS metadata, e.token_count AS token_count, e.idempotency_key AS idempotency_key, \
         e.trace_id AS trace_id, e.created_at AS created_at"
    };
}

macro_rules! handoff_cols {
    () => {
        "h.id AS pk, h.session_id AS session_id, h.tenant AS tenant, h.handoff_id AS handoff_id, \
         h.session_key AS session_key, h.from_agent AS from_agent, h.to_agent AS to_agent, \
         h.type AS type, h.status AS status, h.instructions AS instructions, h.summary AS summary, \
         h.up_to_seq AS up_to_seq, h.max_tokens AS max_tokens, h.reason AS reason, \
         h.created_at AS created_at, h.updated_at AS updated_at, h.deadline AS deadline"
    };
}

macro_rules! event_cols {
    () => {
        "ev.agent AS ev_agent, ev.cursor AS ev_cursor, ev.event AS ev_event, ev.status AS ev_status, \
         ev.reason AS ev_reason, ev.updated_at AS ev_updated_at"
    };
}

/// The embedded store. Cloning is cheap and shares the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: the writer.
    write: SqlitePool,
    /// Read-only connections.
    read: SqlitePool,
    sql: Sql,
}

impl SqliteStore {
    /// Opens (creating if needed) `baton.db` in `data_dir` and brings its schema up to date.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot create the data directory {}: {e}", data_dir.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // The writer stays open: reconnecting would put opening the file and setting its
        // pragmas on some append's path.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone().create_if_missing(true))
            .await?;
        MIGRATOR.run(&write).await.map_err(|e| {
            tracing::error!(error = %e, "embedded store migration failed");
            Error::Internal(format!("cannot migrate the embedded store: {e}"))
        })?;
        // Opened after the migration so the file and its WAL exist.
        let read = SqlitePoolOptions::new().max_connections(READERS).connect_with(options.read_only(true)).await?;
        Ok(SqliteStore { write, read, sql: Sql::new("sqlite") })
    }

    /// Closes both pools; the last connection to close checkpoints the WAL into the file.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// A write transaction that holds SQLite's write lock from its first statement.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.sql.run("BEGIN", "", self.write.begin_with("BEGIN IMMEDIATE")).await?)
    }

    /// A read transaction: one snapshot for several statements.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.sql.run("BEGIN", "", self.read.begin()).await?)
    }

    async fn commit(&self, tx: Transaction<'static, Sqlite>) -> Result<()> {
        Ok(self.sql.run("COMMIT", "", tx.commit()).await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.sql.run("SELECT", "", sqlx::query("SELECT 1").execute(&self.read)).await?;
        Ok(())
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let (read, write) = (self.read.clone(), self.write.clone());
        let pools = pool_collector(move || {
            [("read", &read), ("write", &write)]
                .into_iter()
                .map(|(name, pool)| PoolSample {
                    pool: name,
                    size: pool.size(),
                    idle: pool.num_idle(),
                    max: pool.options().get_max_connections(),
                })
                .collect()
        });
        vec![self.sql.collector(), pools]
    }

    async fn create_session(&self, new: NewSession) -> Result<Session> {
        let insert = sqlx::query(concat!(
            "INSERT INTO sessions (tenant, session_key, created_by, owner, status, metadata, created_at, \
             updated_at, last_activity_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
            session_cols!()
        ))
        .bind(&new.tenant)
        .bind(&new.session_key)
        .bind(&new.agent)
        .bind(&new.agent)
        .bind(SessionStatus::Active.as_str())
        .bind(metadata_json(&new.metadata)?)
        .bind(new.now.0)
        .bind(new.now.0)
        .bind(new.now.0)
        .bind(new.expires_at.map(|t| t.0))
        .fetch_one(&self.write);
        let row =
            self.sql.run("INSERT", "sessions", insert).await.map_err(|e| unique_or(e, "session", &new.session_key))?;
        session_from_row(&row)
    }

    async fn get_session(&self, tenant: &str, session_key: &str) -> Result<Session> {
        fetch_session(&self.sql, &self.read, tenant, session_key).await
    }

    async fn list_sessions(&self, q: &SessionQuery) -> Result<Vec<Session>> {
        let mut sql =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", session_cols!(), " FROM sessions WHERE tenant = "));
        sql.push_bind(&q.tenant);
        if let Some(agent) = &q.agent {
            sql.push(" AND (created_by = ").push_bind(agent).push(" OR owner = ").push_bind(agent).push(")");
        }
        if let Some(status) = q.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = q.before_id {
            sql.push(" AND id < ").push_bind(before);
        }
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(q.limit));
        let rows = self.sql.run("SELECT", "sessions", sql.build().fetch_all(&self.read)).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn update_session(
        &self,
        tenant: &str,
        session_key: &str,
        patch: SessionPatch,
        now: Micros,
    ) -> Result<Session> {
        let mut tx = self.begin_write().await?;
        let session = fetch_session(&self.sql, &mut *tx, tenant, session_key).await?;
        if let Some(status) = patch.status {
            rules::check_session_status_change(&session, status)?;
        }
        let metadata = match &patch.metadata {
            Some(m) => metadata_json(m)?,
            None => metadata_json(&session.metadata)?,
        };
        let status = patch.status.unwrap_or(session.status);
        let expires_at = patch.expires_at.unwrap_or(session.expires_at);
        let update = sqlx::query(concat!(
            "UPDATE sessions SET metadata = ?, status = ?, expires_at = ?, updated_at = ? WHERE id = ? RETURNING ",
            session_cols!()
        ))
        .bind(metadata)
        .bind(status.as_str())
        .bind(expires_at.map(|t| t.0))
        .bind(now.0)
        .bind(session.id)
        .fetch_one(&mut *tx);
        let row = self.sql.run("UPDATE", "sessions", update).await?;
        let updated = session_from_row(&row)?;
        self.commit(tx).await?;
        Ok(updated)
    }

    async fn append(&self, cmd: AppendCommand) -> Result<AppendOutcome> {
        let mut tx = self.begin_write().await?;
        let session = fetch_session(&self.sql, &mut *tx, &cmd.tenant, &cmd.session_key).await?;
        let key = cmd.idempotency_key.as_deref().filter(|k| !k.is_empty());

        if let Some(key) = key {
            let seen =
                sqlx::query_as("SELECT first_seq, last_seq FROM appends WHERE session_id = ? AND idempotency_key = ?")
                    .bind(session.id)
                    .bind(key)
                    .fetch_optional(&mut *tx);
            let seen: Option<(i64, i64)> = self.sql.run("SELECT", "appends", seen).await?;
            if let Some((first, last)) = seen {
                let original = sqlx::query(concat!(
                    "SELECT ",
                    entry_cols!(),
                    " FROM entries e WHERE e.session_id = ? AND e.seq BETWEEN ? AND ? ORDER BY e.seq"
                ))
                .bind(session.id)
                .bind(first)
                .bind(last)
                .fetch_all(&mut *tx);
                let rows = self.sql.run("SELECT", "entries", original).await?;
                self.sql.run("ROLLBACK", "", tx.rollback()).await?;
                let entries = rows.iter().map(|r| entry_from_row(r, &session.session_key)).collect::<Result<_>>()?;
                return Ok(AppendOutcome { session, entries, replayed: true });
            }
        }

        rules::check_append(&session, cmd.expected_last_seq, cmd.now)?;

        let first_seq = session.last_seq + 1;
        let mut seq = session.last_seq;
        let mut last_summary_seq = session.last_summary_seq;
        let mut entries = Vec::with_capacity(cmd.entries.len());
        for new in cmd.entries {
            seq += 1;
            let (text, data) = match &new.content {
                Content::Text(t) => (Some(t.as_str()), None),
                Content::Data(d) => (None, Some(d.as_slice())),
            };
            let insert = sqlx::query(
                "INSERT INTO entries (session_id, seq, kind, role, author, content_text, content_data, \
                 media_type, metadata, token_count, idempotency_key, trace_id, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(session.id)
            .bind(to_db(seq))
            .bind(new.kind.as_str())
            .bind(&new.role)
            .bind(&new.author)
            .bind(text)
            .bind(data)
            .bind(&new.media_type)
            .bind(metadata_json(&new.metadata)?)
            .bind(i64::from(new.token_count))
            .bind(key.unwrap_or(""))
            .bind(&cmd.trace_id)
            .bind(cmd.now.0)
            .execute(&mut *tx);
            self.sql.run("INSERT", "entries", insert).await?;
            if new.kind == EntryKind::Summary {
                last_summary_seq = seq;
            }
            entries.push(Entry {
                session_key: session.session_key.clone(),
                seq,
                kind: new.kind,
                role: new.role,
                author: new.author,
                content: new.content,
                media_type: new.media_type,
                metadata: new.metadata,
                token_count: new.token_count,
                idempotency_key: key.unwrap_or_default().to_owned(),
                trace_id: cmd.trace_id.clone(),
                created_at: cmd.now,
            });
        }

        if let Some(key) = key {
            let insert = sqlx::query(
                "INSERT INTO appends (session_id, idempotency_key, first_seq, last_seq, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(session.id)
            .bind(key)
            .bind(to_db(first_seq))
            .bind(to_db(seq))
            .bind(cmd.now.0)
            .execute(&mut *tx);
            self.sql.run("INSERT", "appends", insert).await?;
        }

        // Appending wakes a dormant session; that status change is an update.
        let update = sqlx::query(concat!(
            "UPDATE sessions SET last_seq = ?, last_summary_seq = ?, last_activity_at = ?, \
             updated_at = CASE WHEN status = 'dormant' THEN ? ELSE updated_at END, \
             status = CASE WHEN status = 'dormant' THEN 'active' ELSE status END \
             WHERE id = ? RETURNING ",
            session_cols!()
        ))
        .bind(to_db(seq))
        .bind(to_db(last_summary_seq))
        .bind(cmd.now.0)
        .bind(cmd.now.0)
        .bind(session.id)
        .fetch_one(&mut *tx);
        let row = self.sql.run("UPDATE", "sessions", update).await?;
        let session = session_from_row(&row)?;
        self.commit(tx).await?;
        Ok(AppendOutcome { session, entries, replayed: false })
    }

    async fn list_entries(&self, q: &EntryQuery) -> Result<Vec<Entry>> {
        let session_id = fetch_session_id(&self.sql, &self.read, &q.tenant, &q.session_key).await?;
        let mut sql =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", entry_cols!(), " FROM entries e WHERE e.session_id = "));
        sql.push_bind(session_id).push(" AND e.seq > ").push_bind(to_db(q.after_seq));
        if let Some(before) = q.before_seq {
            sql.push(" AND e.seq < ").push_bind(to_db(before));
        }
        if !q.kinds.is_empty() {
            sql.push(" AND e.kind IN (");
            let mut kinds = sql.separated(", ");
            for kind in &q.kinds {
                kinds.push_bind(kind.as_str());
            }
            sql.push(")");
        }
        sql.push(" ORDER BY e.seq LIMIT ").push_bind(i64::from(q.limit));
        let rows = self.sql.run("SELECT", "entries", sql.build().fetch_all(&self.read)).await?;
        rows.iter().map(|r| entry_from_row(r, &q.session_key)).collect()
    }

    async fn window(&self, tenant: &str, session_key: &str, max_entries: u32, max_tokens: u32) -> Result<WindowSlice> {
        // One read transaction: the session, its summary and its tail from the same snapshot.
        let mut tx = self.begin_read().await?;
        let session = fetch_session(&self.sql, &mut *tx, tenant, session_key).await?;
        let summary = if session.last_summary_seq > 0 {
            let summary =
                sqlx::query(concat!("SELECT ", entry_cols!(), " FROM entries e WHERE e.session_id = ? AND e.seq = ?"))
                    .bind(session.id)
                    .bind(to_db(session.last_summary_seq))
                    .fetch_optional(&mut *tx);
            self.sql.run("SELECT", "entries", summary).await?.map(|r| entry_from_row(&r, session_key)).transpose()?
        } else {
            None
        };
        let newest = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM entries e WHERE e.session_id = ?1 AND e.seq >= COALESCE(( \
               SELECT MIN(seq) FROM ( \
                 SELECT seq, token_count, SUM(token_count) OVER (ORDER BY seq DESC) AS running \
                 FROM entries WHERE session_id = ?1 AND seq > ?2 ORDER BY seq DESC LIMIT ?3 \
               ) WHERE running - token_count < ?4), 9223372036854775807) \
             ORDER BY e.seq DESC"
        ))
        .bind(session.id)
        .bind(to_db(session.last_summary_seq))
        .bind(i64::from(max_entries))
        .bind(i64::from(max_tokens))
        .fetch_all(&mut *tx);
        let rows = self.sql.run("SELECT", "entries", newest).await?;
        self.commit(tx).await?;
        let newest_first = rows.iter().map(|r| entry_from_row(r, session_key)).collect::<Result<_>>()?;
        Ok(WindowSlice { session, summary, newest_first })
    }

    async fn tail_start(&self, tenant: &str, session_key: &str, up_to_seq: u64, budget: u32) -> Result<u64> {
        let session_id = fetch_session_id(&self.sql, &self.read, tenant, session_key).await?;
        let tail = sqlx::query_scalar(
            "SELECT MIN(seq) FROM ( \
               SELECT seq, SUM(token_count) OVER (ORDER BY seq DESC) AS running \
               FROM entries WHERE session_id = ? AND seq <= ? \
             ) WHERE running <= ?",
        )
        .bind(session_id)
        .bind(to_db(up_to_seq))
        .bind(i64::from(budget))
        .fetch_one(&self.read);
        let start: Option<i64> = self.sql.run("SELECT", "entries", tail).await?;
        Ok(start.map_or(up_to_seq + 1, |s| s as u64))
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let session_id = match &q.session_key {
            Some(key) => Some(fetch_session_id(&self.sql, &self.read, &q.tenant, key).await?),
            None => None,
        };
        let Some(expression) = fts_expression(&q.query) else {
            return Ok(Vec::new());
        };
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT ");
        sql.push(concat!(entry_cols!(), ", s.session_key AS session_key, -bm25(entries_fts) AS score, "))
            .push(format_args!("snippet(entries_fts, 0, '[', ']', '…', {SNIPPET_TOKENS}) AS snippet"))
            .push(
                " FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid \
                 JOIN sessions s ON s.id = e.session_id WHERE entries_fts MATCH ",
            )
            .push_bind(expression)
            .push(" AND s.tenant = ")
            .push_bind(&q.tenant);
        if let Some(id) = session_id {
            sql.push(" AND e.session_id = ").push_bind(id);
        }
        sql.push(" ORDER BY score DESC, e.id LIMIT ")
            .push_bind(i64::from(q.limit))
            .push(" OFFSET ")
            .push_bind(i64::from(q.offset));
        let rows = self.sql.run("SELECT", "entries_fts", sql.build().fetch_all(&self.read)).await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get("session_key")?;
                Ok(SearchHit {
                    entry: entry_from_row(r, &key)?,
                    score: r.try_get("score")?,
                    snippet: r.try_get("snippet")?,
                })
            })
            .collect()
    }

    async fn create_handoff(&self, new: NewHandoff) -> Result<Changed> {
        let mut handoff = new.handoff;
        let now = handoff.created_at;
        let mut tx = self.begin_write().await?;
        let session = fetch_session(&self.sql, &mut *tx, &handoff.tenant, &handoff.session_key).await?;
        rules::check_append(&session, None, now)?;
        handoff.up_to_seq = session.last_seq;
        handoff.status = HandoffStatus::Pending;
        let insert = sqlx::query_scalar(
            "INSERT INTO handoffs (tenant, handoff_id, session_id, session_key, from_agent, to_agent, type, \
             status, instructions, summary, up_to_seq, max_tokens, reason, created_at, updated_at, deadline) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&handoff.tenant)
        .bind(&handoff.handoff_id)
        .bind(session.id)
        .bind(&handoff.session_key)
        .bind(&handoff.from_agent)
        .bind(&handoff.to_agent)
        .bind(handoff.kind.as_str())
        .bind(handoff.status.as_str())
        .bind(&handoff.instructions)
        .bind(&handoff.summary)
        .bind(to_db(handoff.up_to_seq))
        .bind(i64::from(handoff.max_tokens))
        .bind(&handoff.reason)
        .bind(handoff.created_at.0)
        .bind(handoff.updated_at.0)
        .bind(handoff.deadline.map(|t| t.0))
        .fetch_one(&mut *tx);
        let pk: i64 = self
            .sql
            .run("INSERT", "handoffs", insert)
            .await
            .map_err(|e| unique_or(e, "handoff", &handoff.handoff_id))?;
        let events = write_events(&self.sql, &mut tx, pk, &handoff, HandoffEventType::Created).await?;
        self.commit(tx).await?;
        Ok(Changed { handoff, events, session: None })
    }

    async fn get_handoff(&self, tenant: &str, handoff_id: &str) -> Result<Handoff> {
        Ok(fetch_handoff(&self.sql, &self.read, tenant, handoff_id).await?.handoff)
    }

    async fn list_handoffs(&self, q: &HandoffQuery) -> Result<HandoffPage> {
        let mut sql =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = "));
        sql.push_bind(&q.tenant);
        if let Some(agent) = &q.to_agent {
            sql.push(" AND h.to_agent = ").push_bind(agent);
        }
        if let Some(agent) = &q.from_agent {
            sql.push(" AND h.from_agent = ").push_bind(agent);
        }
        if let Some(key) = &q.session_key {
            // Through the session's id, which the handoffs_session index covers.
            sql.push(" AND h.session_id = (SELECT id FROM sessions WHERE tenant = ")
                .push_bind(&q.tenant)
                .push(" AND session_key = ")
                .push_bind(key)
                .push(")");
        }
        if let Some(status) = q.status {
            sql.push(" AND h.status = ").push_bind(status.as_str());
        }
        if let Some(before) = q.before_id {
            sql.push(" AND h.id < ").push_bind(before);
        }
        sql.push(" ORDER BY h.id DESC LIMIT ").push_bind(i64::from(q.limit));
        let rows = self.sql.run("SELECT", "handoffs", sql.build().fetch_all(&self.read)).await?;
        rows.iter().map(|r| handoff_from_row(r).map(|h| (h.pk, h.handoff))).collect()
    }

    async fn change_handoff(&self, tenant: &str, handoff_id: &str, now: Micros, decide: Decide<'_>) -> Result<Changed> {
        let mut tx = self.begin_write().await?;
        let row = fetch_handoff(&self.sql, &mut *tx, tenant, handoff_id).await?;
        let change = decide(&row.handoff)?;
        let changed = apply_change(&self.sql, &mut tx, row, change, now).await?;
        self.commit(tx).await?;
        Ok(changed)
    }

    async fn expire_handoffs(&self, now: Micros, limit: u32) -> Result<Vec<Changed>> {
        let mut tx = self.begin_write().await?;
        let due = sqlx::query(concat!(
            "SELECT ",
            handoff_cols!(),
            " FROM handoffs h WHERE h.status = 'pending' AND h.deadline IS NOT NULL AND h.deadline <= ? \
             ORDER BY h.deadline, h.id LIMIT ?"
        ))
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx);
        let rows = self.sql.run("SELECT", "handoffs", due).await?;
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = handoff_from_row(row)?;
            let change = rules::expire(&row.handoff, now)?;
            expired.push(apply_change(&self.sql, &mut tx, row, change, now).await?);
        }
        self.commit(tx).await?;
        Ok(expired)
    }

    async fn expire_sessions(&self, now: Micros, limit: u32) -> Result<Vec<Session>> {
        let expire = sqlx::query(concat!(
            "UPDATE sessions SET status = 'expired', updated_at = ?1 WHERE id IN (SELECT id FROM sessions \
             WHERE status IN ('active', 'dormant', 'handed_off') AND expires_at IS NOT NULL AND expires_at <= ?1 \
             ORDER BY expires_at, id LIMIT ?2) RETURNING ",
            session_cols!()
        ))
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.write);
        let rows = self.sql.run("UPDATE", "sessions", expire).await?;
        let mut sessions = rows.iter().map(session_from_row).collect::<Result<Vec<_>>>()?;
        // RETURNING comes back in no particular order.
        sessions.sort_by_key(|s| (s.expires_at, s.id));
        Ok(sessions)
    }

    async fn pending_inbox(&self, tenant: &str, agent: &str) -> Result<(Vec<HandoffEvent>, u64)> {
        let mut tx = self.begin_read().await?;
        // CROSS JOIN fixes the join order: from the agent's pending handoffs (a partial index)
        // to their events, rather than through the agent's whole inbox history.
        let pending = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            ", ",
            handoff_cols!(),
            " FROM handoffs h CROSS JOIN inbox_events ev ON ev.handoff_pk = h.id AND ev.tenant = h.tenant \
             AND ev.agent = h.to_agent AND ev.event = 'created' \
             WHERE h.tenant = ? AND h.to_agent = ? AND h.status = 'pending' ORDER BY ev.cursor"
        ))
        .bind(tenant)
        .bind(agent)
        .fetch_all(&mut *tx);
        let rows = self.sql.run("SELECT", "handoffs", pending).await?;
        let head = sqlx::query_scalar("SELECT last_cursor FROM inbox_heads WHERE tenant = ? AND agent = ?")
            .bind(tenant)
            .bind(agent)
            .fetch_optional(&mut *tx);
        let head: Option<i64> = self.sql.run("SELECT", "inbox_heads", head).await?;
        self.commit(tx).await?;
        let events = rows.iter().map(event_from_row).collect::<Result<_>>()?;
        Ok((events, from_db(head.unwrap_or(0))?))
    }

    async fn inbox_after(&self, tenant: &str, agent: &str, after_cursor: u64, limit: u32) -> Result<Vec<HandoffEvent>> {
        let after = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            ", ",
            handoff_cols!(),
            " FROM inbox_events ev JOIN handoffs h ON h.id = ev.handoff_pk \
             WHERE ev.tenant = ? AND ev.agent = ? AND ev.cursor > ? ORDER BY ev.cursor LIMIT ?"
        ))
        .bind(tenant)
        .bind(agent)
        .bind(to_db(after_cursor))
        .bind(i64::from(limit))
        .fetch_all(&self.read);
        let rows = self.sql.run("SELECT", "inbox_events", after).await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// A handoff with the store's internal ids.
struct HandoffRow {
    pk: i64,
    session_id: i64,
    handoff: Handoff,
}

async fn fetch_session<'e, E>(sql: &Sql, ex: E, tenant: &str, session_key: &str) -> Result<Session>
where
    E: Executor<'e, Database = Sqlite>,
{
    let get = sqlx::query(concat!("SELECT ", session_cols!(), " FROM sessions WHERE tenant = ? AND session_key = ?"))
        .bind(tenant)
        .bind(session_key)
        .fetch_optional(ex);
    let row = sql.run("SELECT", "sessions", get).await?.ok_or_else(|| Error::session_not_found(session_key))?;
    session_from_row(&row)
}

async fn fetch_session_id<'e, E>(sql: &Sql, ex: E, tenant: &str, session_key: &str) -> Result<i64>
where
    E: Executor<'e, Database = Sqlite>,
{
    let get = sqlx::query_scalar("SELECT id FROM sessions WHERE tenant = ? AND session_key = ?")
        .bind(tenant)
        .bind(session_key);
    sql.run("SELECT", "sessions", get.fetch_optional(ex)).await?.ok_or_else(|| Error::session_not_found(session_key))
}

async fn fetch_handoff<'e, E>(sql: &Sql, ex: E, tenant: &str, handoff_id: &str) -> Result<HandoffRow>
where
    E: Executor<'e, Database = Sqlite>,
{
    let get =
        sqlx::query(concat!("SELECT ", handoff_cols!(), " FROM handoffs h WHERE h.tenant = ? AND h.handoff_id = ?"))
            .bind(tenant)
            .bind(handoff_id)
            .fetch_optional(ex);
    let row = sql.run("SELECT", "handoffs", get).await?.ok_or_else(|| Error::handoff_not_found(handoff_id))?;
    handoff_from_row(&row)
}

/// Writes a decided change: the handoff's new state, the session's if the change sets one,
/// and the event in both agents' inboxes.
async fn apply_change(
    sql: &Sql,
    conn: &mut SqliteConnection,
    row: HandoffRow,
    change: Change,
    now: Micros,
) -> Result<Changed> {
    let HandoffRow { pk, session_id, mut handoff } = row;
    handoff.status = change.status;
    if let Some(reason) = change.reason {
        handoff.reason = reason;
    }
    handoff.updated_at = now;
    let update = sqlx::query("UPDATE handoffs SET status = ?, reason = ?, updated_at = ? WHERE id = ?")
        .bind(handoff.status.as_str())
        .bind(&handoff.reason)
        .bind(now.0)
        .bind(pk)
        .execute(&mut *conn);
    sql.run("UPDATE", "handoffs", update).await?;

    let session = if change.new_owner.is_some() || change.session_status.is_some() {
        let get = sqlx::query(concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = ?")).bind(session_id);
        let current = sql.run("SELECT", "sessions", get.fetch_one(&mut *conn)).await?;
        let current = session_from_row(&current)?;
        let owner = change.new_owner.as_ref().unwrap_or(&current.owner);
        // A session closed or expired while the handoff was open stays so: the handoff's
        // outcome must not reopen it.
        let status = match change.session_status {
            Some(status) if current.status.is_open() => status,
            _ => current.status,
        };
        let update = sqlx::query(concat!(
            "UPDATE sessions SET owner = ?, status = ?, updated_at = ? WHERE id = ? RETURNING ",
            session_cols!()
        ))
        .bind(owner)
        .bind(status.as_str())
        .bind(now.0)
        .bind(session_id)
        .fetch_one(&mut *conn);
        let row = sql.run("UPDATE", "sessions", update).await?;
        Some(session_from_row(&row)?)
    } else {
        None
    };

    let events = write_events(sql, conn, pk, &handoff, change.event).await?;
    Ok(Changed { handoff, events, session })
}

/// Records `kind` in the inboxes of the handoff's two agents (one, if they are the same),
/// each at that agent's next cursor, with the handoff's state after the event.
async fn write_events(
    sql: &Sql,
    conn: &mut SqliteConnection,
    pk: i64,
    handoff: &Handoff,
    kind: HandoffEventType,
) -> Result<Vec<HandoffEvent>> {
    let mut agents = vec![&handoff.from_agent];
    if handoff.to_agent != handoff.from_agent {
        agents.push(&handoff.to_agent);
    }
    let mut events = Vec::with_capacity(agents.len());
    for agent in agents {
        let head = sqlx::query_scalar(
            "INSERT INTO inbox_heads (tenant, agent, last_cursor) VALUES (?, ?, 1) \
             ON CONFLICT (tenant, agent) DO UPDATE SET last_cursor = last_cursor + 1 RETURNING last_cursor",
        )
        .bind(&handoff.tenant)
        .bind(agent)
        .fetch_one(&mut *conn);
        let cursor: i64 = sql.run("INSERT", "inbox_heads", head).await?;
        let insert = sqlx::query(
            "INSERT INTO inbox_events (tenant, agent, cursor, handoff_pk, event, status, reason, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&handoff.tenant)
        .bind(agent)
        .bind(cursor)
        .bind(pk)
        .bind(kind.as_str())
        .bind(handoff.status.as_str())
        .bind(&handoff.reason)
        .bind(handoff.updated_at.0)
        .execute(&mut *conn);
        sql.run("INSERT", "inbox_events", insert).await?;
        events.push(HandoffEvent { agent: agent.clone(), cursor: from_db(cursor)?, kind, handoff: handoff.clone() });
    }
    Ok(events)
}

fn session_from_row(r: &SqliteRow) -> Result<Session> {
    Ok(Session {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        session_key: r.try_get("session_key")?,
        created_by: r.try_get("created_by")?,
        owner: r.try_get("owner")?,
        status: r.try_get::<&str, _>("status")?.parse()?,
        metadata: metadata_from(r.try_get("metadata")?)?,
        last_seq: from_db(r.try_get("last_seq")?)?,
        last_summary_seq: from_db(r.try_get("last_summary_seq")?)?,
        created_at: Micros(r.try_get("created_at")?),
        updated_at: Micros(r.try_get("updated_at")?),
        last_activity_at: Micros(r.try_get("last_activity_at")?),
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(Micros),
    })
}

fn entry_from_row(r: &SqliteRow, session_key: &str) -> Result<Entry> {
    let content = match r.try_get::<Option<String>, _>("content_text")? {
        Some(text) => Content::Text(text),
        None => Content::Data(r.try_get::<Option<Vec<u8>>, _>("content_data")?.unwrap_or_default()),
    };
    Ok(Entry {
        session_key: session_key.to_owned(),
        seq: from_db(r.try_get("seq")?)?,
        kind: r.try_get::<&str, _>("kind")?.parse()?,
        role: r.try_get("role")?,
        author: r.try_get("author")?,
        content,
        media_type: r.try_get("media_type")?,
        metadata: metadata_from(r.try_get("metadata")?)?,
        token_count: u32::try_from(r.try_get::<i64, _>("token_count")?)
            .map_err(|_| Error::Internal("stored token count out of range".into()))?,
        idempotency_key: r.try_get("idempotency_key")?,
        trace_id: r.try_get("trace_id")?,
        created_at: Micros(r.try_get("created_at")?),
    })
}

fn handoff_from_row(r: &SqliteRow) -> Result<HandoffRow> {
    Ok(HandoffRow {
        pk: r.try_get("pk")?,
        session_id: r.try_get("session_id")?,
        handoff: Handoff {
            handoff_id: r.try_get("handoff_id")?,
            tenant: r.try_get("tenant")?,
            session_key: r.try_get("session_key")?,
            from_agent: r.try_get("from_agent")?,
            to_agent: r.try_get("to_agent")?,
            kind: r.try_get::<&str, _>("type")?.parse()?,
            status: r.try_get::<&str, _>("status")?.parse()?,
            instructions: r.try_get("instructions")?,
            summary: r.try_get("summary")?,
            up_to_seq: from_db(r.try_get("up_to_seq")?)?,
            max_tokens: u32::try_from(r.try_get::<i64, _>("max_tokens")?)
                .map_err(|_| Error::Internal("stored max_tokens out of range".into()))?,
            reason: r.try_get("reason")?,
            created_at: Micros(r.try_get("created_at")?),
            updated_at: Micros(r.try_get("updated_at")?),
            deadline: r.try_get::<Option<i64>, _>("deadline")?.map(Micros),
        },
    })
}

/// An inbox event joined with its handoff; the handoff shows the state the event recorded.
fn event_from_row(r: &SqliteRow) -> Result<HandoffEvent> {
    let mut handoff = handoff_from_row(r)?.handoff;
    handoff.status = r.try_get::<&str, _>("ev_status")?.parse()?;
    handoff.reason = r.try_get("ev_reason")?;
    handoff.updated_at = Micros(r.try_get("ev_updated_at")?);
    Ok(HandoffEvent {
        agent: r.try_get("ev_agent")?,
        cursor: from_db(r.try_get("ev_cursor")?)?,
        kind: r.try_get::<&str, _>("ev_event")?.parse()?,
        handoff,
    })
}

fn metadata_json(m: &Metadata) -> Result<String> {
    serde_json::to_string(m).map_err(|e| Error::Internal(format!("cannot encode metadata: {e}")))
}

fn metadata_from(text: String) -> Result<Metadata> {
    serde_json::from_str(&text).map_err(|_| Error::Internal("stored metadata is not a JSON object".into()))
}

/// A seq or cursor as SQLite's signed integer. Values beyond i64 only occur as query bounds,
/// where the largest integer means the same thing.
fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_db(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Internal("stored counter is negative".into()))
}

/// `AlreadyExists` for a unique-key violation, otherwise the store error.
fn unique_or(e: sqlx::Error, what: &'static str, key: &str) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::AlreadyExists { what, key: key.to_owned() },
        _ => e.into(),
    }
}

/// Translates a web-search style query into an FTS5 MATCH expression, or `None` when it has
/// no term to look for.
///
/// Words and `"quoted phrases"` must all match (a bare `AND` says so and is otherwise
/// ignored); `OR` between two of them makes either enough (binding tighter than the implicit
/// AND, as in web search); `-word` or `-"phrase"` excludes. Every term reaches FTS5 as a quoted string with its quotes doubled, so no input
/// is an FTS5 syntax error and FTS5 operators or column filters typed by the user are just
/// words. Terms without a letter or digit would tokenize to nothing and are dropped; a query
/// of exclusions alone matches nothing, since FTS5 cannot start from NOT.
fn fts_expression(query: &str) -> Option<String> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    // An OR just followed a positive term: the next positive term joins its group.
    let mut or_pending = false;
    for term in web_terms(query) {
        match term {
            WebTerm::Or => or_pending = !groups.is_empty(),
            WebTerm::Text { text, .. } if !text.chars().any(char::is_alphanumeric) => {}
            WebTerm::Text { text, negated: true } => {
                excluded.push(fts_string(&text));
                or_pending = false;
            }
            WebTerm::Text { text, negated: false } => {
                let phrase = fts_string(&text);
                match groups.last_mut() {
                    Some(group) if or_pending => group.push(phrase),
                    _ => groups.push(vec![phrase]),
                }
                or_pending = false;
            }
        }
    }
    if groups.is_empty() {
        return None;
    }
    let required = groups
        .into_iter()
        .map(|g| if g.len() == 1 { g.concat() } else { format!("({})", g.join(" OR ")) })
        .collect::<Vec<_>>()
        .join(" AND ");
    Some(if excluded.is_empty() { required } else { format!("({required}) NOT ({})", excluded.join(" OR ")) })
}

enum WebTerm {
    Or,
    Text { text: String, negated: bool },
}

/// Splits a query into words, quoted phrases (an unclosed quote runs to the end) and `OR`;
/// drops `AND`, which only restates the default.
fn web_terms(query: &str) -> Vec<WebTerm> {
    let mut terms = Vec::new();
    let mut chars = query.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let negated = first == '-';
        if negated {
            chars.next();
        }
        let mut text = String::new();
        if chars.next_if_eq(&'"').is_some() {
            text.extend(chars.by_ref().take_while(|&c| c != '"'));
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                text.push(c);
            }
            match text.as_str() {
                "OR" if !negated => {
                    terms.push(WebTerm::Or);
                    continue;
                }
                "AND" if !negated => continue,
                _ => {}
            }
        }
        terms.push(WebTerm::Text { text, negated });
    }
    terms
}

/// An FTS5 string literal: the text in double quotes, inner quotes doubled.
fn fts_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::fts_expression;

    fn fts(q: &str) -> Option<String> {
        fts_expression(q)
    }

    #[test]
    fn words_are_quoted_and_all_required() {
        assert_eq!(fts("deploy failed").as_deref(), Some(r#""deploy" AND "failed""#));
    }

    #[test]
    fn phrases_stay_phrases() {
        assert_eq!(
            fts(r#"the "deploy pipeline" broke"#).as_deref(),
            Some(r#""the" AND "deploy pipeline" AND "broke""#)
        );
        assert_eq!(fts(r#""unclosed phrase"#).as_deref(), Some(r#""unclosed phrase""#));
    }

    #[test]
    fn or_binds_tighter_than_and() {
        assert_eq!(fts("a OR b c").as_deref(), Some(r#"("a" OR "b") AND "c""#));
        assert_eq!(fts("a OR b OR c").as_deref(), Some(r#"("a" OR "b" OR "c")"#));
        // Lowercase "or" is a word; a stray OR is ignored.
        assert_eq!(fts("a or b").as_deref(), Some(r#""a" AND "or" AND "b""#));
        assert_eq!(fts("OR a OR").as_deref(), Some(r#""a""#));
        assert_eq!(fts("a AND b").as_deref(), Some(r#""a" AND "b""#));
        assert_eq!(fts(r#"a "AND" -AND"#).as_deref(), Some(r#"("a" AND "AND") NOT ("AND")"#));
    }

    #[test]
    fn minus_excludes() {
        assert_eq!(fts("deploy -staging").as_deref(), Some(r#"("deploy") NOT ("staging")"#));
        assert_eq!(fts(r#"a -"b c" -d"#).as_deref(), Some(r#"("a") NOT ("b c" OR "d")"#));
        assert_eq!(fts("-only -exclusions"), None);
    }

    #[test]
    fn fts5_syntax_in_input_is_inert() {
        assert_eq!(fts(r#"a" AND NEAR(b"#).as_deref(), Some(r#""a""" AND "NEAR(b""#));
        assert_eq!(fts("content_text:x* ^y").as_deref(), Some(r#""content_text:x*" AND "^y""#));
    }

    #[test]
    fn queries_without_terms_match_nothing() {
        assert_eq!(fts(""), None);
        assert_eq!(fts("   "), None);
        assert_eq!(fts(r#"++ -- "" - OR"#), None);
    }
}
