//! The handoff writes, once for both stores: creating a handoff, changing one, and the expiry
//! sweep. Each store gives the statements (`HandoffTx`, one write transaction); the flows here
//! say what is locked and written in which order, and the domain's rules decide every state
//! (`rules::decide` through `Decide`, `rules::sweep` through `Sweep`, `rules::handoff_after`,
//! `rules::session_after`).
//!
//! Locks are always taken in the order handoff → session → inbox heads, so concurrent writers
//! queue instead of deadlocking.
//!
//! Both writes are safe to repeat. A create with an idempotency key first looks for the
//! handoff that key made in the session, under the session's lock (so concurrent requests with
//! one key queue there and create one handoff), and returns it as stored, writing nothing. A
//! change that `decide` finds already made (the handoff is in the status the call leads to)
//! writes nothing either. Both come back `unchanged`, with no events.

use async_trait::async_trait;
use sqlx::Transaction;

use super::rows::{StoredHandoff, inbox_owners};
use super::sql::Sql;
use super::{Change, Changed, Decide, NewHandoff, Sweep};
use crate::domain::summary::{Summarizer, SummaryState};
use crate::domain::{Entry, Error, Handoff, HandoffEvent, HandoffEventType, Micros, Result, Session, rules};

/// Entries read per statement when a session's summary state is rebuilt.
const REBUILD_PAGE: u32 = 1000;

/// A write transaction of a store with its statement meter; each store implements
/// [`HandoffTx`] for its own.
pub(super) struct Tx<'a, DB: sqlx::Database> {
    pub tx: Transaction<'static, DB>,
    pub sql: &'a Sql,
}

/// The statements of one write transaction that the handoff flows need. Dropping it without
/// `commit` rolls everything back.
#[async_trait]
pub(super) trait HandoffTx: Send + Sized {
    /// The session, locked for the rest of the transaction; `NotFound` when absent.
    async fn lock_session(&mut self, tenant: &str, session_key: &str) -> Result<Session>;
    /// The session of a locked handoff, locked.
    async fn lock_session_by_id(&mut self, id: i64) -> Result<Session>;
    /// The handoff, locked; `NotFound` when absent.
    async fn lock_handoff(&mut self, tenant: &str, handoff_id: &str) -> Result<StoredHandoff>;
    /// At most `limit` pending handoffs whose deadline is at or before `now`, locked (skipping
    /// any another sweeper holds), oldest deadline first.
    async fn lock_due_handoffs(&mut self, now: Micros, limit: u32) -> Result<Vec<StoredHandoff>>;
    /// Inserts the handoff of the session `session_id` with its idempotency key; returns its
    /// internal id, or `AlreadyExists` when its id is taken in the tenant.
    async fn insert_handoff(&mut self, session_id: i64, h: &Handoff, idempotency_key: Option<&str>) -> Result<i64>;
    /// The handoff that the idempotency key made in the (locked) session `session_id`.
    async fn handoff_by_idempotency_key(&mut self, session_id: i64, key: &str) -> Result<Option<StoredHandoff>>;
    /// Writes the status, reason and time of changed handoffs, by internal id.
    async fn update_handoffs(&mut self, changed: &[(i64, &Handoff)]) -> Result<()>;
    /// Writes a session's owner, status and time.
    async fn update_session_side(&mut self, session: &Session) -> Result<()>;
    /// Appends, for each (handoff id, event, handoff as of right after it), the event to the
    /// inbox of each of `inbox_owners(handoff)`, at that agent's next cursor; returns the
    /// cursors in that order.
    async fn write_events(&mut self, batch: &[(i64, HandoffEventType, &Handoff)]) -> Result<Vec<u64>>;
    /// The (locked) session's summary state and the entries of its last messages, in seq
    /// order; `None` when the store does not know the state.
    async fn summary_state(&mut self, session: &Session) -> Result<Option<(SummaryState, Vec<Entry>)>>;
    /// At most `limit` entries of the session after `after_seq`, in seq order.
    async fn entries_after(&mut self, session: &Session, after_seq: u64, limit: u32) -> Result<Vec<Entry>>;
    /// Writes the session's summary state; `None` forgets it (it is rebuilt when next needed).
    async fn set_summary_state(&mut self, session_id: i64, state: Option<&SummaryState>) -> Result<()>;
    async fn commit(self) -> Result<()>;
}

/// Writes the handoff with `up_to_seq` = the session's last seq (and, when it comes without
/// one, the summary of the entries up to it), under the session's lock (so that the snapshot is exact and the session cannot
/// close in between), with a `created` event for both agents; or returns the handoff
/// `idempotency_key` already made in the session.
pub(super) async fn create(mut tx: impl HandoffTx, new: NewHandoff, idempotency_key: Option<&str>) -> Result<Changed> {
    let mut h = new.handoff;
    let session = tx.lock_session(&h.tenant, &h.session_key).await?;
    if let Some(key) = idempotency_key
        && let Some(made) = tx.handoff_by_idempotency_key(session.id, key).await?
    {
        return Ok(unchanged(made.handoff));
    }
    rules::check_append(&session, None, h.created_at)?;
    h.up_to_seq = session.last_seq;
    if h.summary.is_empty() {
        h.summary = summarize(&mut tx, &session).await?;
    }
    let pk = tx.insert_handoff(session.id, &h, idempotency_key).await?;
    let events = events(&mut tx, &[(pk, HandoffEventType::Created, &h)]).await?.pop().unwrap_or_default();
    tx.commit().await?;
    Ok(Changed { handoff: h, events, session: None, unchanged: false })
}

/// The summary of the locked session as of its last seq, from its summary state (the
/// appends keep it), which is rebuilt from the entries first when the store does not know it.
async fn summarize(tx: &mut impl HandoffTx, session: &Session) -> Result<String> {
    if let Some((state, messages)) = tx.summary_state(session).await? {
        return Ok(state.render(&messages));
    }
    let mut fold = Summarizer::default();
    let mut after = 0;
    loop {
        let page = tx.entries_after(session, after, REBUILD_PAGE).await?;
        for e in &page {
            fold.add(e);
            after = e.seq;
        }
        if page.len() < REBUILD_PAGE as usize {
            break;
        }
    }
    tx.set_summary_state(session.id, Some(fold.state())).await?;
    Ok(fold.finish())
}

/// A handoff as stored, when a write found nothing to do (the transaction rolls back).
fn unchanged(handoff: Handoff) -> Changed {
    Changed { handoff, events: Vec::new(), session: None, unchanged: true }
}

/// Locks the handoff, asks `decide`, and writes the change, if there is one.
pub(super) async fn change(
    mut tx: impl HandoffTx,
    tenant: &str,
    handoff_id: &str,
    now: Micros,
    decide: Decide<'_>,
) -> Result<Changed> {
    let stored = tx.lock_handoff(tenant, handoff_id).await?;
    let Some(change) = decide(&stored.handoff)? else { return Ok(unchanged(stored.handoff)) };
    let mut changed = apply(&mut tx, vec![(stored, change)], now).await?;
    tx.commit().await?;
    changed.pop().ok_or_else(|| Error::Internal("a handoff change was lost".into()))
}

/// Expires the due handoffs that `sweep` expires and leaves the others as they are.
pub(super) async fn expire(mut tx: impl HandoffTx, now: Micros, limit: u32, sweep: Sweep<'_>) -> Result<Vec<Changed>> {
    let due = tx.lock_due_handoffs(now, limit).await?;
    let changes: Vec<_> = due.into_iter().filter_map(|stored| Some((sweep(&stored.handoff)?, stored))).collect();
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let changed = apply(&mut tx, changes.into_iter().map(|(c, s)| (s, c)).collect(), now).await?;
    tx.commit().await?;
    Ok(changed)
}

/// Writes decided changes of locked handoffs: their new state, the session side of those that
/// touch their session, and an event for each handoff's agents.
async fn apply(tx: &mut impl HandoffTx, changes: Vec<(StoredHandoff, Change)>, now: Micros) -> Result<Vec<Changed>> {
    let done: Vec<(StoredHandoff, Change)> = changes
        .into_iter()
        .map(|(mut stored, change)| {
            stored.handoff = rules::handoff_after(stored.handoff, &change, now);
            (stored, change)
        })
        .collect();
    let rows: Vec<(i64, &Handoff)> = done.iter().map(|(s, _)| (s.pk, &s.handoff)).collect();
    tx.update_handoffs(&rows).await?;

    let mut sessions = Vec::with_capacity(done.len());
    for (stored, change) in &done {
        let session = if change.touches_session() {
            let current = tx.lock_session_by_id(stored.session_id).await?;
            let session = rules::session_after(current, change, now);
            tx.update_session_side(&session).await?;
            Some(session)
        } else {
            None
        };
        sessions.push(session);
    }

    let batch: Vec<_> = done.iter().map(|(s, c)| (s.pk, c.event, &s.handoff)).collect();
    let events = events(tx, &batch).await?;
    Ok(done
        .into_iter()
        .zip(sessions)
        .zip(events)
        .map(|(((stored, _), session), events)| Changed { handoff: stored.handoff, events, session, unchanged: false })
        .collect())
}

/// Writes a batch of events and returns them per handoff, from_agent's first.
async fn events(
    tx: &mut impl HandoffTx,
    batch: &[(i64, HandoffEventType, &Handoff)],
) -> Result<Vec<Vec<HandoffEvent>>> {
    let cursors = tx.write_events(batch).await?;
    let mut cursors = cursors.into_iter();
    let mut out = Vec::with_capacity(batch.len());
    for (_, kind, h) in batch {
        let mut events = Vec::with_capacity(2);
        for agent in inbox_owners(h) {
            let cursor = cursors.next().ok_or_else(|| Error::Internal("inbox events were not all written".into()))?;
            events.push(HandoffEvent { agent: agent.to_owned(), cursor, kind: *kind, handoff: (*h).clone() });
        }
        out.push(events);
    }
    Ok(out)
}
