//! The lifecycle writes, once for both stores: deleting, forking, redacting and compacting a
//! session, each in one write transaction that first locks the session (so it serializes with
//! appends and handoff changes, and nothing is ever half done) and writes its audit record in
//! the same transaction. Each store gives the statements ([`LifecycleTx`], on top of the
//! handoff flows' [`HandoffTx`]); the rules (legal hold, bounds, the summary guard) are
//! `domain::rules`'. A fork, redaction or compaction forgets the session's summary state (the
//! next handoff rebuilds it from the entries; `store::handoffs`).

use async_trait::async_trait;

use super::Created;
use super::handoffs::HandoffTx;
use super::rows::StoredHandoff;
use crate::domain::{Audit, Entry, HandoffEvent, HandoffEventType, Redaction, Result, Session, rules};

/// What a deletion erased, and the DELETED events it wrote into the agents' inboxes.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The session as it was just before.
    pub session: Session,
    pub entries: u64,
    /// The ids of the handoffs erased with it.
    pub handoff_ids: Vec<String>,
    pub events: Vec<HandoffEvent>,
}

/// A fork to make: the new session (its key, owner and times; the store fills in the rest).
#[derive(Debug, Clone)]
pub struct NewFork {
    pub tenant: String,
    pub source_key: String,
    /// 0: the source's newest.
    pub at_seq: u64,
    pub session_key: String,
    pub agent: String,
    pub now: crate::domain::Micros,
    pub expires_at: Option<crate::domain::Micros>,
    /// Makes the fork once per key in the tenant (shared with CreateSession's keys).
    pub idempotency_key: Option<String>,
}

/// The statements of the lifecycle flows.
#[async_trait]
pub(super) trait LifecycleTx: HandoffTx {
    /// The handoffs of a session, locked.
    async fn session_handoffs(&mut self, session_id: i64) -> Result<Vec<StoredHandoff>>;
    /// Deletes the session row (its entries, idempotency records and handoffs go with it;
    /// inbox events stay as tombstones); returns how many entries it had.
    async fn delete_session_row(&mut self, session: &Session) -> Result<u64>;
    /// Inserts a session row as given (a fork) with its idempotency key; `AlreadyExists` when
    /// the session key is taken.
    async fn insert_session_row(&mut self, session: &Session, idempotency_key: Option<&str>) -> Result<i64>;
    /// The session that a create or fork with the idempotency key made in the tenant, if any,
    /// with the key held until the transaction ends so that concurrent calls with it queue.
    async fn claim_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Session>>;
    /// Copies the entries `first..=up_to` of session `from` into session `to` (inside the
    /// database).
    async fn copy_entries(&mut self, from: i64, to: &Session, up_to: u64) -> Result<()>;
    /// Erases content and metadata of the given stored entries not yet redacted; returns all
    /// of them as they read now, in seq order.
    async fn redact(&mut self, session: &Session, seqs: &[u64], redaction: &Redaction) -> Result<Vec<Entry>>;
    /// The seqs among `seqs` that the session has (stored, not compacted).
    async fn stored_seqs(&mut self, session_id: i64, seqs: &[u64]) -> Result<Vec<u64>>;
    /// Removes the entries below `before_seq`; returns how many.
    async fn remove_entries_before(&mut self, session_id: i64, before_seq: u64) -> Result<u64>;
    /// Writes a session's first_seq and updated_at.
    async fn set_first_seq(&mut self, session: &Session) -> Result<()>;
    async fn insert_audit(&mut self, audit: &Audit) -> Result<()>;
}

/// Deletes a session with everything of it, writing a DELETED event for each of its handoffs
/// into both agents' inboxes first (their cursors stay gap-free; the earlier events become
/// tombstones).
pub(super) async fn delete(mut tx: impl LifecycleTx, tenant: &str, session_key: &str, audit: Audit) -> Result<Deleted> {
    let session = tx.lock_session(tenant, session_key).await?;
    rules::check_erasable(&session)?;
    let handoffs = tx.session_handoffs(session.id).await?;
    let mut gone = Vec::with_capacity(handoffs.len());
    for h in &handoffs {
        let mut last = h.handoff.clone();
        last.updated_at = audit.at;
        gone.push((h.pk, last));
    }
    let batch: Vec<_> = gone.iter().map(|(pk, h)| (*pk, HandoffEventType::Deleted, h)).collect();
    let cursors = if batch.is_empty() { Vec::new() } else { tx.write_events(&batch).await? };
    let mut events = Vec::with_capacity(cursors.len());
    let mut cursors = cursors.into_iter();
    for (_, h) in &gone {
        for agent in super::rows::inbox_owners(h) {
            let cursor = cursors.next().unwrap_or_default();
            let tombstone = crate::domain::Handoff::tombstone(tenant, &h.handoff_id, h.status, audit.at);
            events.push(HandoffEvent {
                agent: agent.to_owned(),
                cursor,
                kind: HandoffEventType::Deleted,
                handoff: tombstone,
            });
        }
    }
    let entries = tx.delete_session_row(&session).await?;
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    let handoff_ids = gone.into_iter().map(|(_, h)| h.handoff_id).collect();
    Ok(Deleted { session, entries, handoff_ids, events })
}

/// Forks a session: the new one starts with copies of the source's entries up to `at_seq`. A
/// fork whose idempotency key already made a session returns that one as it is now (before the
/// source is even looked at: it may have changed or gone since) and writes nothing.
pub(super) async fn fork(mut tx: impl LifecycleTx, new: NewFork, audit: Audit) -> Result<Created<Session>> {
    if let Some(key) = &new.idempotency_key
        && let Some(made) = tx.claim_idempotency_key(&new.tenant, key).await?
    {
        return Ok(Created { record: made, replayed: true });
    }
    let source = tx.lock_session(&new.tenant, &new.source_key).await?;
    let at = rules::fork_point(&source, new.at_seq)?;
    let mut session = rules::forked(&source, at, &new.session_key, &new.agent, new.now, new.expires_at);
    session.id = tx.insert_session_row(&session, new.idempotency_key.as_deref()).await?;
    if at >= session.first_seq {
        tx.copy_entries(source.id, &session, at).await?;
        tx.set_summary_state(session.id, None).await?;
    }
    let mut audit = audit;
    audit.seqs = if at == 0 { String::new() } else { format!("{}-{at}", source.first_seq.min(at)) };
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    Ok(Created { record: session, replayed: false })
}

/// Redacts stored entries of a session (optionally only if its newest seq is `expected_last_seq`).
pub(super) async fn redact(
    mut tx: impl LifecycleTx,
    tenant: &str,
    session_key: &str,
    seqs: &[u64],
    expected_last_seq: Option<u64>,
    redaction: Redaction,
    audit: Audit,
) -> Result<(Session, Vec<Entry>)> {
    let session = tx.lock_session(tenant, session_key).await?;
    rules::check_erasable(&session)?;
    rules::check_expected_last_seq(&session, expected_last_seq)?;
    let stored = tx.stored_seqs(session.id, seqs).await?;
    rules::check_redactable(&session, seqs, &stored)?;
    let entries = tx.redact(&session, seqs, &redaction).await?;
    tx.set_summary_state(session.id, None).await?;
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    Ok((session, entries))
}

/// Removes a session's entries below `before_seq` (the summary guard unless `force`).
pub(super) async fn compact(
    mut tx: impl LifecycleTx,
    tenant: &str,
    session_key: &str,
    before_seq: u64,
    force: bool,
    audit: Audit,
) -> Result<(Session, u64)> {
    let session = tx.lock_session(tenant, session_key).await?;
    rules::check_erasable(&session)?;
    let Some(mut compacted) = rules::compaction(&session, before_seq, force, audit.at)? else {
        return Ok((session, 0));
    };
    let removed = tx.remove_entries_before(session.id, compacted.first_seq).await?;
    tx.set_summary_state(session.id, None).await?;
    tx.set_first_seq(&compacted).await?;
    let mut audit = audit;
    audit.seqs = format!("{}-{}", session.first_seq, compacted.first_seq - 1);
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    compacted.updated_at = audit.at;
    Ok((compacted, removed))
}

// ---- statements both stores share ($N placeholders on both) ----

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log (tenant, action, session_key, principal, agent, seqs, \
     reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) const AUDIT_LOG: &str = "SELECT tenant, action, session_key, principal, agent, seqs, reason, at \
     FROM audit_log WHERE tenant = $1 AND session_key = $2 ORDER BY id";

pub(super) const COUNT_ENTRIES: &str = "SELECT count(*) FROM entries WHERE session_id = $1";

pub(super) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id = $1";

pub(super) const INSERT_SESSION_ROW: &str = "INSERT INTO sessions (tenant, session_key, created_by, owner, status, \
     metadata, last_seq, last_summary_seq, created_at, updated_at, last_activity_at, expires_at, forked_from_key, \
     forked_from_seq, first_seq, legal_hold, retention_keep_latest, retention_max_age_us, idempotency_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id";

pub(super) const REMOVE_ENTRIES_BEFORE: &str = "DELETE FROM entries WHERE session_id = $1 AND seq < $2";

pub(super) const SET_FIRST_SEQ: &str =
    "UPDATE sessions SET first_seq = $2, last_summary_seq = $3, updated_at = $4 WHERE id = $1";

pub(super) const PURGEABLE: &str = "SELECT tenant, session_key FROM sessions \
     WHERE status = 'expired' AND expires_at <= $1 AND NOT legal_hold ORDER BY expires_at, id LIMIT $2";

pub(super) const RETENTION_CANDIDATES: &str = concat!(
    "SELECT ",
    session_cols!("s."),
    " FROM sessions s WHERE s.id > $1 AND NOT s.legal_hold \
     AND ($2 OR s.retention_keep_latest > 0 OR s.retention_max_age_us > 0) ORDER BY s.id LIMIT $3"
);

pub(super) const FIRST_SEQ_SINCE: &str = "SELECT min(e.seq) FROM entries e JOIN sessions s ON s.id = e.session_id \
     WHERE s.tenant = $1 AND s.session_key = $2 AND e.created_at >= $3";

/// An audit record from `AUDIT_LOG`'s columns.
pub(super) fn audit_at(r: &impl super::rows::Cells) -> Result<Audit> {
    let action = r.text(1)?;
    Ok(Audit {
        tenant: r.text(0)?,
        action: ACTIONS.iter().copied().find(|a| *a == action).unwrap_or("unknown"),
        session_key: r.text(2)?,
        principal: r.text(3)?,
        agent: r.text(4)?,
        seqs: r.text(5)?,
        reason: r.text(6)?,
        at: r.time(7)?,
    })
}

/// Every action the audit log records.
pub const ACTIONS: &[&str] = &["delete", "fork", "redact", "compact", "legal_hold", "retention", "purge", "retain"];
