//! Rows to records and values to columns, for both stores: they select the same columns in
//! the same order (`columns`) and read them here by position, whatever their SQL types are.

use std::str::FromStr;

use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Encode, Row, Type};

use crate::domain::summary::{SummaryCounts, SummaryNames, SummaryState};
use crate::domain::{
    Content, Entry, Error, Handoff, HandoffEvent, HandoffEventType, Metadata, Micros, NewEntry, Redaction, Result,
    Retention, SearchHit, Session, SessionRef,
};

/// Columns of `session_cols!`, `entry_cols!`, the inbox event part of `event_cols!`, and
/// `handoff_cols!`.
pub(super) const SESSION_COLS: usize = 19;
pub(super) const ENTRY_COLS: usize = 15;
pub(super) const EVENT_COLS: usize = 7;

/// How a database keeps a moment: PostgreSQL as `timestamptz`, SQLite as microseconds.
pub(super) trait Moments: sqlx::Database {
    type Moment: for<'r> Decode<'r, Self> + Type<Self> + for<'q> Encode<'q, Self> + Send + Sync + 'static;
    fn micros(m: Self::Moment) -> Micros;
    fn moment(m: Micros) -> Result<Self::Moment>;
}

/// Typed cells of a row, by position.
pub(super) trait Cells {
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    /// A token count: an INTEGER column of at most `i32::MAX` (`count_to_db`).
    fn count(&self, i: usize) -> Result<u32>;
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>>;
    fn float(&self, i: usize) -> Result<f64>;
    fn time(&self, i: usize) -> Result<Micros>;
    fn opt_time(&self, i: usize) -> Result<Option<Micros>>;
    fn metadata(&self, i: usize) -> Result<Metadata>;
    fn flag(&self, i: usize) -> Result<bool>;
    /// A session's summary state from its two columns (counts at `i`, names at `i + 1`);
    /// `None` when the store does not know it (NULL).
    fn summary_state(&self, i: usize) -> Result<Option<SummaryState>>;

    /// A seq or cursor.
    fn seq(&self, i: usize) -> Result<u64> {
        Ok(unsigned(self.int(i)?))
    }

    /// A status or kind, stored as its name.
    fn name<T>(&self, i: usize) -> Result<T>
    where
        T: FromStr,
        Error: From<T::Err>,
    {
        Ok(self.text(i)?.parse()?)
    }
}

impl<R> Cells for R
where
    R: Row,
    R::Database: Moments,
    usize: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i32: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    f64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Json<Metadata>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Json<SummaryCounts>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Json<SummaryNames>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    fn count(&self, i: usize) -> Result<u32> {
        u32::try_from(self.try_get::<i32, _>(i)?)
            .map_err(|_| Error::Internal("a stored token count is negative".into()))
    }
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(i)?)
    }
    fn float(&self, i: usize) -> Result<f64> {
        Ok(self.try_get(i)?)
    }
    fn time(&self, i: usize) -> Result<Micros> {
        Ok(R::Database::micros(self.try_get(i)?))
    }
    fn opt_time(&self, i: usize) -> Result<Option<Micros>> {
        Ok(self.try_get::<Option<<R::Database as Moments>::Moment>, _>(i)?.map(R::Database::micros))
    }
    fn metadata(&self, i: usize) -> Result<Metadata> {
        Ok(self.try_get::<Json<Metadata>, _>(i)?.0)
    }
    fn summary_state(&self, i: usize) -> Result<Option<SummaryState>> {
        let counts: Option<Json<SummaryCounts>> = self.try_get(i)?;
        let names: Option<Json<SummaryNames>> = self.try_get(i + 1)?;
        Ok(counts.zip(names).map(|(counts, names)| SummaryState { counts: counts.0, names: names.0 }))
    }
}

/// A session from `session_cols!` starting at column `at`.
pub(super) fn session_at(r: &impl Cells, at: usize) -> Result<Session> {
    Ok(Session {
        id: r.int(at)?,
        tenant: r.text(at + 1)?,
        session_key: r.text(at + 2)?,
        created_by: r.text(at + 3)?,
        owner: r.text(at + 4)?,
        status: r.name(at + 5)?,
        metadata: r.metadata(at + 6)?,
        last_seq: r.seq(at + 7)?,
        last_summary_seq: r.seq(at + 8)?,
        created_at: r.time(at + 9)?,
        updated_at: r.time(at + 10)?,
        last_activity_at: r.time(at + 11)?,
        expires_at: r.opt_time(at + 12)?,
        forked_from: match r.opt_text(at + 13)? {
            Some(session_key) => Some(SessionRef { session_key, seq: unsigned(r.opt_int(at + 14)?.unwrap_or(0)) }),
            None => None,
        },
        first_seq: r.seq(at + 15)?,
        legal_hold: r.flag(at + 16)?,
        retention: Retention { keep_latest: r.seq(at + 17)?, max_age_micros: r.int(at + 18)? },
    })
}

/// An entry of the session `session_key` from `entry_cols!` starting at column `at`.
pub(super) fn entry_at(r: &impl Cells, at: usize, session_key: &str) -> Result<Entry> {
    let content = match r.opt_text(at + 4)? {
        Some(text) => Content::Text(text),
        None => Content::Data(r.opt_bytes(at + 5)?.unwrap_or_default()),
    };
    Ok(Entry {
        session_key: session_key.to_owned(),
        seq: r.seq(at)?,
        kind: r.name(at + 1)?,
        role: r.text(at + 2)?,
        author: r.text(at + 3)?,
        content,
        media_type: r.text(at + 6)?,
        metadata: r.metadata(at + 7)?,
        token_count: r.count(at + 8)?,
        idempotency_key: r.text(at + 9)?,
        trace_id: r.text(at + 10)?,
        created_at: r.time(at + 11)?,
        redaction: match r.opt_time(at + 12)? {
            Some(when) => Some(Redaction {
                by: r.opt_text(at + 13)?.unwrap_or_default(),
                at: when,
                reason: r.opt_text(at + 14)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

/// A session's summary state and its last messages from the rows of `queries::summary_state!`.
pub(super) fn summary_state_at(rows: &[impl Cells], session_key: &str) -> Result<Option<(SummaryState, Vec<Entry>)>> {
    let Some(state) = rows.first().map(|r| r.summary_state(0)).transpose()?.flatten() else { return Ok(None) };
    let mut messages = Vec::with_capacity(rows.len());
    for r in rows {
        if r.opt_int(2)?.is_some() {
            messages.push(entry_at(r, 2, session_key)?);
        }
    }
    Ok(Some((state, messages)))
}

/// A search hit: the session key, `entry_cols!`, the score and the snippet.
pub(super) fn hit_at(r: &impl Cells) -> Result<SearchHit> {
    Ok(SearchHit {
        entry: entry_at(r, 1, &r.text(0)?)?,
        score: r.float(1 + ENTRY_COLS)?,
        snippet: r.opt_text(2 + ENTRY_COLS)?.unwrap_or_default(),
    })
}

/// A handoff row with the store's internal keys.
pub(super) struct StoredHandoff {
    pub pk: i64,
    pub session_id: i64,
    pub handoff: Handoff,
}

/// A handoff from `handoff_cols!` starting at column `at`.
pub(super) fn handoff_at(r: &impl Cells, at: usize) -> Result<StoredHandoff> {
    Ok(StoredHandoff {
        pk: r.int(at)?,
        session_id: r.int(at + 1)?,
        handoff: Handoff {
            handoff_id: r.text(at + 2)?,
            tenant: r.text(at + 3)?,
            session_key: r.text(at + 4)?,
            from_agent: r.text(at + 5)?,
            to_agent: r.text(at + 6)?,
            kind: r.name(at + 7)?,
            status: r.name(at + 8)?,
            instructions: r.text(at + 9)?,
            summary: r.text(at + 10)?,
            up_to_seq: r.seq(at + 11)?,
            max_tokens: r.count(at + 12)?,
            reason: r.text(at + 13)?,
            created_at: r.time(at + 14)?,
            updated_at: r.time(at + 15)?,
            deadline: r.opt_time(at + 16)?,
        },
    })
}

/// An inbox event from `event_cols!` starting at column `at`: the handoff with the event's
/// status, reason and time laid over it, so it reads as it was right after the event.
pub(super) fn event_at(r: &impl Cells, at: usize) -> Result<HandoffEvent> {
    let (agent, cursor) = (r.text(at)?, r.seq(at + 1)?);
    if r.opt_int(at + EVENT_COLS)?.is_none() {
        // The handoff is gone with its session: every event of it reads as a tombstone.
        let tenant = String::new();
        let handoff = Handoff::tombstone(&tenant, &r.text(at + 6)?, r.name(at + 3)?, r.time(at + 5)?);
        return Ok(HandoffEvent { agent, cursor, kind: HandoffEventType::Deleted, handoff });
    }
    let mut handoff = handoff_at(r, at + EVENT_COLS)?.handoff;
    handoff.status = r.name(at + 3)?;
    handoff.reason = r.text(at + 4)?;
    handoff.updated_at = r.time(at + 5)?;
    Ok(HandoffEvent { agent, cursor, kind: r.name(at + 2)?, handoff })
}

/// Seqs and cursors are u64 in the domain and signed 64-bit integers in both databases; a
/// bound beyond i64::MAX matches nothing stored, so it saturates.
pub(super) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

/// A token count or budget as the 32-bit INTEGER both schemas keep. The domain never lets a
/// larger one through (`validate::MAX_TOKENS`); should one come, both stores refuse it alike,
/// before writing anything.
pub(super) fn count_to_db(field: impl Into<String>, v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(field, format!("must be at most {}", i32::MAX)))
}

/// The token counts of an append's entries as stored, or the error for the first that cannot
/// be, before anything is written.
pub(super) fn token_counts(entries: &[NewEntry]) -> Result<Vec<i32>> {
    entries.iter().enumerate().map(|(i, e)| count_to_db(format!("entries[{i}].token_count"), e.token_count)).collect()
}

/// An entry's content as the (text, data) column pair.
pub(super) fn content_columns(content: &Content) -> (Option<&str>, Option<&[u8]>) {
    match content {
        Content::Text(t) => (Some(t.as_str()), None),
        Content::Data(d) => (None, Some(d.as_slice())),
    }
}

/// The entry an append stores for `new` at `seq`.
pub(super) fn stored_entry(
    new: NewEntry,
    session_key: &str,
    seq: u64,
    key: &str,
    trace_id: &str,
    now: Micros,
) -> Entry {
    let NewEntry { kind, role, author, content, media_type, metadata, token_count } = new;
    Entry {
        session_key: session_key.to_owned(),
        seq,
        kind,
        role,
        author,
        content,
        media_type,
        metadata,
        token_count,
        idempotency_key: key.to_owned(),
        trace_id: trace_id.to_owned(),
        created_at: now,
        redaction: None,
    }
}

/// The agents whose inboxes get a handoff's events: both ends, from_agent's first, once each.
pub(super) fn inbox_owners(h: &Handoff) -> Vec<&str> {
    if h.from_agent == h.to_agent {
        vec![h.from_agent.as_str()]
    } else {
        vec![h.from_agent.as_str(), h.to_agent.as_str()]
    }
}
