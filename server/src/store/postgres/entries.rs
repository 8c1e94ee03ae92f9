//! Entries in PostgreSQL: appends (written by the coalescer in `append`), listing, context
//! windows and handoff tails.

use futures::TryStreamExt as _;

use super::{PgStore, bound, sessions};
use crate::domain::{Entry, Error, Result};
use crate::store::Scope;
use crate::store::rows::{SESSION_COLS, entry_at, session_at, signed, unsigned};
use crate::store::{AppendCommand, AppendOutcome, EntryQuery, WindowSlice};

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

/// Pages of at least this many entries are decoded row by row as the rows arrive. Shorter
/// ones (ListEntries pages, the first page of a replay) are collected first: pages of 100 at
/// C=16 ran ~8 % faster that way (A/B), where a replay's pages of 2,048 ran ~20 % faster
/// decoded as they arrive.
const STREAMED_PAGE: usize = 512;
/// Entries of a page allocated for up front at most (a page's limit can be far more than a
/// short session holds).
const FIRST_CAPACITY: usize = 1024;

/// The session with its latest summary and the newest entries after it, in one snapshot:
/// one row per entry (or one row with NULL entry columns when there is none). The entries
/// are a walk of the primary key newest first, as many as the budget holds (`window_len!`).
pub const WINDOW: &str = concat!(
    "SELECT ",
    session_cols!("s."),
    ", w.* FROM sessions s LEFT JOIN LATERAL ( \
       (SELECT ",
    entry_cols!(),
    " FROM entries e WHERE s.last_summary_seq > 0 AND e.session_id = s.id AND e.seq = s.last_summary_seq) \
       UNION ALL \
       (SELECT ",
    entry_cols!(),
    " FROM entries e WHERE e.session_id = s.id AND e.seq > s.last_summary_seq ORDER BY e.seq DESC LIMIT ",
    window_len!("s.id", "s.last_summary_seq", "$3", "$4"),
    ") \
     ) w ON true \
     WHERE s.tenant = $1 AND s.session_key = $2"
);

/// Appends through the write coalescer (`append`), then wakes the search indexer for the new
/// rows.
pub(super) async fn append(store: &PgStore, cmd: AppendCommand) -> Result<AppendOutcome> {
    let outcome = store.appender.append(cmd).await?;
    if !outcome.replayed {
        store.index_wake.notify_one();
    }
    Ok(outcome)
}

/// A page of entries. A full page may come from a replica (entries never change once
/// written, and seqs have no gaps, so a full page is the same everywhere; a redaction or
/// compaction reaches replicas within their lag); a page that is not full may end where the
/// replica's copy ends, so it is read again from the primary. So the end of a session (where
/// streams switch to live entries) always comes from the primary.
pub(super) async fn list(store: &PgStore, q: &EntryQuery) -> Result<Vec<Entry>> {
    let full = q.limit as usize;
    let read = read!(store, Scope::Tenant(&q.tenant), keep | page | page.len() >= full, |sql, conn| {
        let before = q.before_seq.map_or(i64::MAX, signed);
        let query = if q.kinds.is_empty() { sqlx::query(LIST_ENTRIES) } else { sqlx::query(LIST_ENTRIES_OF_KINDS) };
        let mut query =
            query.bind(&q.tenant).bind(&q.session_key).bind(signed(q.after_seq)).bind(before).bind(i64::from(q.limit));
        if !q.kinds.is_empty() {
            query = query.bind(q.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>());
        }
        if full < STREAMED_PAGE {
            let rows = sql.run("SELECT", "entries", query.fetch_all(&mut *conn)).await?;
            if rows.is_empty() {
                sessions::require(sql, conn, &q.tenant, &q.session_key).await?;
            }
            return rows.iter().map(|r| entry_at(r, 0, &q.session_key)).collect::<Result<Vec<_>>>();
        }
        // A long page: each row becomes an entry as it arrives, while the database produces
        // the next ones (collecting the rows first made a replay page's decoding wait for its
        // last row).
        let mut undecodable = None;
        let decode = async {
            let mut rows = query.fetch(&mut *conn);
            let mut entries = Vec::with_capacity(full.min(FIRST_CAPACITY));
            while let Some(row) = rows.try_next().await? {
                match entry_at(&row, 0, &q.session_key) {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        undecodable = Some(e);
                        break;
                    }
                }
            }
            Ok(entries)
        };
        let entries = sql.run("SELECT", "entries", decode).await?;
        if let Some(e) = undecodable {
            return Err(e);
        }
        if entries.is_empty() {
            sessions::require(sql, conn, &q.tenant, &q.session_key).await?;
        }
        Ok(entries)
    });
    Ok(read.await?.0)
}

pub(super) async fn window(
    store: &PgStore,
    tenant: &str,
    session_key: &str,
    max_entries: u32,
    max_tokens: u32,
) -> Result<WindowSlice> {
    let read = read!(store, Scope::Tenant(tenant), |sql, conn| {
        let window = sqlx::query(WINDOW)
            .bind(tenant)
            .bind(session_key)
            .bind(i64::from(max_entries))
            .bind(i64::from(max_tokens))
            .fetch_all(&mut *conn);
        Ok(sql.run("SELECT", "entries", window).await?)
    });
    let (rows, from_replica) = read.await?;
    let first = rows.first().ok_or_else(|| Error::session_not_found(session_key))?;
    let session = session_at(first, 0)?;
    let mut summary = None;
    let mut newest_first = Vec::with_capacity(rows.len());
    for row in &rows {
        if sqlx::Row::try_get::<Option<i64>, _>(row, SESSION_COLS)?.is_none() {
            continue;
        }
        let entry = entry_at(row, SESSION_COLS, session_key)?;
        if entry.seq == session.last_summary_seq {
            summary = Some(entry);
        } else {
            newest_first.push(entry);
        }
    }
    newest_first.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
    Ok(WindowSlice { session, summary, newest_first, from_replica: from_replica.is_some() })
}

pub(super) async fn tail_start(
    store: &PgStore,
    tenant: &str,
    session_key: &str,
    up_to_seq: u64,
    budget: u32,
) -> Result<u64> {
    let mut tx = store.begin(Scope::Tenant(tenant)).await?;
    let tail = bound::tail_start(tenant, session_key, up_to_seq, budget).fetch_one(&mut *tx);
    let start = store.sql.run("SELECT", "entries", tail).await?;
    match start {
        Some(s) => Ok(unsigned(s)),
        None => {
            // Nothing fits, or there is no such session.
            sessions::require(&store.sql, &mut tx, tenant, session_key).await?;
            Ok(up_to_seq + 1)
        }
    }
}
