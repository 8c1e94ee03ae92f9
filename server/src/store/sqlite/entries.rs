//! Entries in SQLite: appends, listing, context windows and handoff tails.

use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, bound, sessions};
use crate::domain::{Entry, Error, Result, rules};
use crate::store::rows::{
    Cells, SESSION_COLS, content_columns, entry_at, session_at, signed, stored_entry, token_counts, unsigned,
};
use crate::store::{AppendCommand, AppendOutcome, EntryQuery, WindowSlice};

const SEEN_APPEND: &str = "SELECT first_seq, last_seq FROM appends WHERE session_id = ? AND idempotency_key = ?";
const ENTRY_RANGE: &str = concat!(
    "SELECT ",
    entry_cols!(),
    " FROM entries e WHERE e.session_id = ? AND e.seq BETWEEN ? AND ? ORDER BY e.seq"
);

const INSERT_ENTRY: &str = "INSERT INTO entries (session_id, seq, kind, role, author, content_text, content_data, \
     media_type, metadata, token_count, idempotency_key, trace_id, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_APPEND: &str =
    "INSERT INTO appends (session_id, idempotency_key, first_seq, last_seq, created_at) VALUES (?, ?, ?, ?, ?)";
/// The session with its summary state, as an append starts.
const APPENDING_TO: &str = concat!(
    "SELECT ",
    session_cols!("s."),
    ", s.summary_counts, s.summary_names FROM sessions s WHERE s.tenant = ? AND s.session_key = ?"
);
/// The session's position after an append (`rules::append_to`) and its summary state (the
/// names only when they changed).
const ADVANCE_SESSION: &str = "UPDATE sessions SET last_seq = ?, last_summary_seq = ?, last_activity_at = ?, \
     status = ?, updated_at = ?, summary_counts = ?, summary_names = COALESCE(?, summary_names) WHERE id = ?";

const SUMMARY: &str = concat!("SELECT ", entry_cols!(), " FROM entries e WHERE e.session_id = ? AND e.seq = ?");
const WINDOW: &str = concat!(
    "SELECT ",
    entry_cols!(),
    " FROM entries e WHERE e.session_id = ?1 AND e.seq >= COALESCE(",
    window_start!("?1", "?2", "?3", "?4"),
    ", 9223372036854775807) ORDER BY e.seq DESC"
);

pub(super) async fn append(store: &SqliteStore, cmd: AppendCommand) -> Result<AppendOutcome> {
    let mut tx = store.begin_write().await?;
    let read = sqlx::query(APPENDING_TO).bind(&cmd.tenant).bind(&cmd.session_key).fetch_optional(&mut *tx);
    let row =
        store.sql.run("SELECT", "sessions", read).await?.ok_or_else(|| Error::session_not_found(&cmd.session_key))?;
    let mut session = session_at(&row, 0)?;
    // `None`: the store does not know it (it stays so until a handoff rebuilds it).
    let mut summary = row.summary_state(SESSION_COLS)?;
    let mut renamed = false;
    let key = cmd.idempotency_key.as_deref().filter(|k| !k.is_empty()).unwrap_or_default();

    if !key.is_empty() {
        let seen = sqlx::query_as(SEEN_APPEND).bind(session.id).bind(key).fetch_optional(&mut *tx);
        let seen: Option<(i64, i64)> = store.sql.run("SELECT", "appends", seen).await?;
        if let Some((first, last)) = seen {
            let original = sqlx::query(ENTRY_RANGE).bind(session.id).bind(first).bind(last).fetch_all(&mut *tx);
            let rows = store.sql.run("SELECT", "entries", original).await?;
            store.sql.run("ROLLBACK", "", tx.rollback()).await?;
            let entries = rows.iter().map(|r| entry_at(r, 0, &session.session_key)).collect::<Result<_>>()?;
            return Ok(AppendOutcome { session, entries, replayed: true });
        }
    }

    rules::check_append(&session, cmd.expected_last_seq, cmd.now)?;
    let counts = token_counts(&cmd.entries)?;
    let first_seq = rules::append_to(&mut session, cmd.entries.iter().map(|e| e.kind), cmd.now);
    let mut entries = Vec::with_capacity(cmd.entries.len());
    for ((new, count), seq) in cmd.entries.into_iter().zip(counts).zip(first_seq..) {
        let (text, data) = content_columns(&new.content);
        let insert = sqlx::query(INSERT_ENTRY)
            .bind(session.id)
            .bind(signed(seq))
            .bind(new.kind.as_str())
            .bind(&new.role)
            .bind(&new.author)
            .bind(text)
            .bind(data)
            .bind(&new.media_type)
            .bind(Json(&new.metadata))
            .bind(count)
            .bind(key)
            .bind(&cmd.trace_id)
            .bind(cmd.now.0)
            .execute(&mut *tx);
        store.sql.run("INSERT", "entries", insert).await?;
        let entry = stored_entry(new, &session.session_key, seq, key, &cmd.trace_id, cmd.now);
        if let Some(state) = &mut summary {
            renamed |= state.add(&entry);
        }
        entries.push(entry);
    }

    if !key.is_empty() {
        let insert = sqlx::query(INSERT_APPEND)
            .bind(session.id)
            .bind(key)
            .bind(signed(first_seq))
            .bind(signed(session.last_seq))
            .bind(cmd.now.0)
            .execute(&mut *tx);
        store.sql.run("INSERT", "appends", insert).await?;
    }

    let advance = sqlx::query(ADVANCE_SESSION)
        .bind(signed(session.last_seq))
        .bind(signed(session.last_summary_seq))
        .bind(session.last_activity_at.0)
        .bind(session.status.as_str())
        .bind(session.updated_at.0)
        .bind(summary.as_ref().map(|s| Json(&s.counts)))
        .bind(summary.as_ref().filter(|_| renamed).map(|s| Json(&s.names)))
        .bind(session.id)
        .execute(&mut *tx);
    store.sql.run("UPDATE", "sessions", advance).await?;
    store.commit(tx).await?;
    Ok(AppendOutcome { session, entries, replayed: false })
}

pub(super) async fn list(store: &SqliteStore, q: &EntryQuery) -> Result<Vec<Entry>> {
    let session_id = sessions::id(&store.sql, &store.read, &q.tenant, &q.session_key).await?;
    let mut b = QueryBuilder::<Sqlite>::new(concat!("SELECT ", entry_cols!(), " FROM entries e WHERE e.session_id = "));
    b.push_bind(session_id).push(" AND e.seq > ").push_bind(signed(q.after_seq));
    if let Some(before) = q.before_seq {
        b.push(" AND e.seq < ").push_bind(signed(before));
    }
    if !q.kinds.is_empty() {
        b.push(" AND e.kind IN (");
        let mut kinds = b.separated(", ");
        for kind in &q.kinds {
            kinds.push_bind(kind.as_str());
        }
        b.push(")");
    }
    b.push(" ORDER BY e.seq LIMIT ").push_bind(i64::from(q.limit));
    let rows = store.sql.run("SELECT", "entries", b.build().fetch_all(&store.read)).await?;
    rows.iter().map(|r| entry_at(r, 0, &q.session_key)).collect()
}

pub(super) async fn window(
    store: &SqliteStore,
    tenant: &str,
    session_key: &str,
    max_entries: u32,
    max_tokens: u32,
) -> Result<WindowSlice> {
    // One read transaction: the session, its summary and its tail from the same snapshot.
    let mut tx = store.begin_read().await?;
    let session = sessions::fetch(&store.sql, &mut *tx, tenant, session_key).await?;
    let summary = if session.last_summary_seq > 0 {
        let summary =
            sqlx::query(SUMMARY).bind(session.id).bind(signed(session.last_summary_seq)).fetch_optional(&mut *tx);
        store.sql.run("SELECT", "entries", summary).await?.map(|r| entry_at(&r, 0, session_key)).transpose()?
    } else {
        None
    };
    let newest = sqlx::query(WINDOW)
        .bind(session.id)
        .bind(signed(session.last_summary_seq))
        .bind(i64::from(max_entries))
        .bind(i64::from(max_tokens))
        .fetch_all(&mut *tx);
    let rows = store.sql.run("SELECT", "entries", newest).await?;
    store.commit(tx).await?;
    let newest_first = rows.iter().map(|r| entry_at(r, 0, session_key)).collect::<Result<_>>()?;
    Ok(WindowSlice { session, summary, newest_first, from_replica: false })
}

pub(super) async fn tail_start(
    store: &SqliteStore,
    tenant: &str,
    session_key: &str,
    up_to_seq: u64,
    budget: u32,
) -> Result<u64> {
    let tail = bound::tail_start(tenant, session_key, up_to_seq, budget).fetch_one(&store.read);
    let start = store.sql.run("SELECT", "entries", tail).await?;
    match start {
        Some(s) => Ok(unsigned(s)),
        None => {
            // Nothing fits, or there is no such session.
            sessions::id(&store.sql, &store.read, tenant, session_key).await?;
            Ok(up_to_seq + 1)
        }
    }
}
