//! State rules that stores apply inside their transactions: the stores lock and write, these
//! functions decide. Handoff transitions are safe to retry: repeated by the agent allowed to
//! make it on a handoff already in the status it leads to, a transition decides nothing to do
//! (`decide` gives `None`) and the caller gets the handoff unchanged, with no event; every
//! other move out of a status stays ILLEGAL_TRANSITION.

use super::{
    EntryKind, Error, Handoff, HandoffEventType, HandoffStatus, HandoffType, Micros, Result, Retention, Session,
    SessionRef, SessionStatus,
};

/// The domain's decision on a handoff state change, taken with the handoff row locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub status: HandoffStatus,
    pub event: HandoffEventType,
    pub reason: Option<String>,
    /// The session's new owner, if the change moves ownership (accepting a FULL_HANDOFF
    /// gives it to the target; cancelling an accepted one gives it back).
    pub new_owner: Option<String>,
    /// New status of the session, if the change sets one.
    pub session_status: Option<SessionStatus>,
}

impl Change {
    /// Whether the change touches the handoff's session; if so the store locks the session
    /// and writes what [`session_after`] makes of it.
    pub fn touches_session(&self) -> bool {
        self.new_owner.is_some() || self.session_status.is_some()
    }
}

/// May `session` take an append now, given the caller's `expected_last_seq`?
pub fn check_append(session: &Session, expected_last_seq: Option<u64>, now: Micros) -> Result<()> {
    if !session.status.is_open() || session.expires_at.is_some_and(|t| t <= now) {
        let status = if session.status.is_open() { SessionStatus::Expired } else { session.status };
        return Err(Error::FailedPrecondition {
            reason: "SESSION_CLOSED",
            subject: format!("sessions/{}", session.session_key),
            message: format!("session {:?} is {} and takes no more entries", session.session_key, status.as_str()),
        });
    }
    if let Some(expected) = expected_last_seq
        && expected != session.last_seq
    {
        return Err(Error::FailedPrecondition {
            reason: "SEQ_MISMATCH",
            subject: format!("sessions/{}", session.session_key),
            message: format!(
                "expected_last_seq is {expected} but session {:?} is at {}",
                session.session_key, session.last_seq
            ),
        });
    }
    Ok(())
}

/// `expected_last_seq`, when given, must be the session's newest seq (`SEQ_MISMATCH`).
pub fn check_expected_last_seq(session: &Session, expected_last_seq: Option<u64>) -> Result<()> {
    match expected_last_seq {
        Some(expected) if expected != session.last_seq => Err(Error::FailedPrecondition {
            reason: "SEQ_MISMATCH",
            subject: format!("sessions/{}", session.session_key),
            message: format!(
                "expected_last_seq is {expected} but session {:?} is at {}",
                session.session_key, session.last_seq
            ),
        }),
        _ => Ok(()),
    }
}

/// Nothing of a session under legal hold may be erased (`LEGAL_HOLD`).
pub fn check_erasable(session: &Session) -> Result<()> {
    if session.legal_hold {
        return Err(Error::FailedPrecondition {
            reason: "LEGAL_HOLD",
            subject: format!("sessions/{}", session.session_key),
            message: format!("session {:?} is under legal hold: nothing of it may be erased", session.session_key),
        });
    }
    Ok(())
}

/// The last seq a fork of `source` copies: `at_seq`, or the source's newest for 0; never past
/// it.
pub fn fork_point(source: &Session, at_seq: u64) -> Result<u64> {
    match at_seq {
        0 => Ok(source.last_seq),
        at if at > source.last_seq => Err(Error::invalid(
            "at_seq",
            format!("must be at most the session's last_seq {} (0 for the newest)", source.last_seq),
        )),
        at if at + 1 < source.first_seq => Err(Error::OutOfRange(format!(
            "at_seq {at} was compacted away; session {:?} keeps seqs from {}",
            source.session_key, source.first_seq
        ))),
        at => Ok(at),
    }
}

/// The fork of `source` at `at` (from `fork_point`): a new ACTIVE session owned by `agent`,
/// with the source's metadata, entries `first_seq..=at` and the newest summary among them.
pub fn forked(source: &Session, at: u64, key: &str, agent: &str, now: Micros, expires_at: Option<Micros>) -> Session {
    Session {
        id: 0,
        tenant: source.tenant.clone(),
        session_key: key.to_owned(),
        created_by: agent.to_owned(),
        owner: agent.to_owned(),
        status: SessionStatus::Active,
        metadata: source.metadata.clone(),
        last_seq: at,
        last_summary_seq: if source.last_summary_seq <= at { source.last_summary_seq } else { 0 },
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        expires_at,
        forked_from: Some(SessionRef { session_key: source.session_key.clone(), seq: at }),
        first_seq: source.first_seq.min(at + 1),
        legal_hold: false,
        retention: source.retention,
    }
}

/// Every seq to redact must be stored (`stored`: those of `seqs` the session has).
pub fn check_redactable(session: &Session, seqs: &[u64], stored: &[u64]) -> Result<()> {
    let mut v = crate::domain::validate::Violations::default();
    for (i, seq) in seqs.iter().enumerate() {
        if !stored.contains(seq) {
            v.add(
                format!("seqs[{i}]"),
                format!(
                    "entry {seq} is not stored in session {:?} (it keeps {}..={})",
                    session.session_key, session.first_seq, session.last_seq
                ),
            );
        }
    }
    v.finish()
}

/// The session after removing its entries below `before_seq` at `now`, or `None` when nothing
/// is below it. Past `last_seq + 1` is invalid; past the newest SUMMARY entry needs `force`
/// (`SUMMARY_GUARD`), so compaction never silently drops the summary windows start from.
pub fn compaction(session: &Session, before_seq: u64, force: bool, now: Micros) -> Result<Option<Session>> {
    if before_seq > session.last_seq + 1 {
        return Err(Error::invalid("before_seq", format!("must be at most last_seq + 1 = {}", session.last_seq + 1)));
    }
    if before_seq <= session.first_seq {
        return Ok(None);
    }
    if !force && session.last_summary_seq > 0 && before_seq > session.last_summary_seq {
        return Err(Error::FailedPrecondition {
            reason: "SUMMARY_GUARD",
            subject: format!("sessions/{}", session.session_key),
            message: format!(
                "compacting before {before_seq} would remove the newest summary (seq {}); compact before it or set force",
                session.last_summary_seq
            ),
        });
    }
    let mut after = session.clone();
    after.first_seq = before_seq;
    if after.last_summary_seq < before_seq {
        after.last_summary_seq = 0;
    }
    after.updated_at = now;
    Ok(Some(after))
}

/// Where retention cuts a session at `now`: the first seq to keep, when entries must go. An
/// entry goes when it is outside every bound set: older than `keep_latest` newest and (if
/// set) older than `max_age` (`oldest_young`: the first seq created within `max_age`, or
/// `None` when all are older). The newest summary is always kept.
pub fn retention_cut(session: &Session, r: Retention, oldest_young: Option<u64>) -> Option<u64> {
    if r.is_unset() || session.legal_hold || session.last_seq < session.first_seq {
        return None;
    }
    let by_count = if r.keep_latest > 0 { session.last_seq.saturating_sub(r.keep_latest) + 1 } else { u64::MAX };
    let by_age = if r.max_age_micros > 0 { oldest_young.unwrap_or(session.last_seq + 1) } else { u64::MAX };
    let mut cut = by_count.min(by_age);
    if cut == u64::MAX {
        return None;
    }
    if session.last_summary_seq > 0 {
        cut = cut.min(session.last_summary_seq);
    }
    (cut > session.first_seq).then_some(cut)
}

/// An append of entries of `kinds` (in order) to `session`, which `check_append` allowed, at
/// `now`: returns the seq of its first entry and advances the session: its last seq and last
/// summary seq, its activity time, and a DORMANT session wakes up ACTIVE (a status change, so
/// it is updated at `now` too).
pub fn append_to(session: &mut Session, kinds: impl IntoIterator<Item = EntryKind>, now: Micros) -> u64 {
    let first = session.last_seq + 1;
    for kind in kinds {
        session.last_seq += 1;
        if kind == EntryKind::Summary {
            session.last_summary_seq = session.last_seq;
        }
    }
    session.last_activity_at = now;
    if session.status == SessionStatus::Dormant {
        session.status = SessionStatus::Active;
        session.updated_at = now;
    }
    first
}

/// May a session in `from` be set to `to` by UpdateSession?
pub fn check_session_status_change(session: &Session, to: SessionStatus) -> Result<()> {
    let ok = match to {
        SessionStatus::Active | SessionStatus::Dormant | SessionStatus::Closed => session.status.is_open(),
        SessionStatus::HandedOff | SessionStatus::Expired => false,
    };
    if ok || session.status == to {
        Ok(())
    } else {
        Err(Error::FailedPrecondition {
            reason: "ILLEGAL_TRANSITION",
            subject: format!("sessions/{}", session.session_key),
            message: format!(
                "session {:?} cannot go from {} to {}",
                session.session_key,
                session.status.as_str(),
                to.as_str()
            ),
        })
    }
}

/// A handoff state change requested by an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Reject,
    Complete,
    Cancel,
}

impl Action {
    fn target(self) -> HandoffStatus {
        match self {
            Action::Accept => HandoffStatus::Accepted,
            Action::Reject => HandoffStatus::Rejected,
            Action::Complete => HandoffStatus::Completed,
            Action::Cancel => HandoffStatus::Cancelled,
        }
    }

    fn event(self) -> HandoffEventType {
        match self {
            Action::Accept => HandoffEventType::Accepted,
            Action::Reject => HandoffEventType::Rejected,
            Action::Complete => HandoffEventType::Completed,
            Action::Cancel => HandoffEventType::Cancelled,
        }
    }
}

/// The handoff state machine: PENDING → ACCEPTED → COMPLETED; PENDING → REJECTED;
/// PENDING/ACCEPTED → CANCELLED; PENDING → EXPIRED at the deadline. Accept, reject and
/// complete belong to the target agent, cancel to the requester.
///
/// Transitions are safe to retry: the allowed agent repeating one on a handoff already in the
/// status it leads to gets `None` (nothing to change, no event; the first call's reason stays),
/// so a retry after a lost answer succeeds with the handoff as it is. Any other move out of a
/// status is ILLEGAL_TRANSITION.
pub fn decide(
    handoff: &Handoff,
    action: Action,
    agent: &str,
    reason: Option<&str>,
    now: Micros,
) -> Result<Option<Change>> {
    let allowed_agent = match action {
        Action::Cancel => &handoff.from_agent,
        _ => &handoff.to_agent,
    };
    if agent != allowed_agent {
        let role = if action == Action::Cancel { "requester (from_agent)" } else { "target (to_agent)" };
        return Err(Error::PermissionDenied(format!(
            "agent {agent:?} may not {} handoff {}: only its {role} {allowed_agent:?} may",
            verb(action),
            handoff.handoff_id
        )));
    }
    let status = effective_status(handoff, now);
    if status == action.target() {
        return Ok(None);
    }
    let legal = matches!(
        (status, action),
        (HandoffStatus::Pending, Action::Accept | Action::Reject | Action::Cancel)
            | (HandoffStatus::Accepted, Action::Complete | Action::Cancel)
    );
    if !legal {
        return Err(Error::FailedPrecondition {
            reason: "ILLEGAL_TRANSITION",
            subject: format!("handoffs/{}", handoff.handoff_id),
            message: format!(
                "handoff {} is {} and cannot be {}",
                handoff.handoff_id,
                status.as_str(),
                action.target().as_str()
            ),
        });
    }
    let full = handoff.kind == HandoffType::FullHandoff;
    Ok(Some(Change {
        status: action.target(),
        event: action.event(),
        reason: reason.filter(|r| !r.is_empty()).map(str::to_owned),
        new_owner: match action {
            Action::Accept if full => Some(handoff.to_agent.clone()),
            Action::Cancel if full && status == HandoffStatus::Accepted => Some(handoff.from_agent.clone()),
            _ => None,
        },
        session_status: match action {
            Action::Accept if full => Some(SessionStatus::HandedOff),
            Action::Complete | Action::Cancel if full && status == HandoffStatus::Accepted => {
                Some(SessionStatus::Active)
            }
            _ => None,
        },
    }))
}

/// The change that expires a pending handoff past its deadline.
pub fn expire(handoff: &Handoff, now: Micros) -> Result<Change> {
    if effective_status(handoff, now) != HandoffStatus::Expired || handoff.status != HandoffStatus::Pending {
        return Err(Error::FailedPrecondition {
            reason: "NOT_DUE",
            subject: format!("handoffs/{}", handoff.handoff_id),
            message: format!("handoff {} is not due to expire", handoff.handoff_id),
        });
    }
    Ok(Change {
        status: HandoffStatus::Expired,
        event: HandoffEventType::Expired,
        reason: None,
        new_owner: None,
        session_status: None,
    })
}

/// The sweeper's decision on a handoff its query found due (locked): the change that expires
/// it, or `None` when [`expire`] refuses. A refusal means the store's idea of "due" and the
/// rule's disagree about this handoff; the sweep logs it, leaves that handoff as it is and
/// goes on with the others, so one odd row never stops every expiry.
pub fn sweep(handoff: &Handoff, now: Micros) -> Option<Change> {
    match expire(handoff, now) {
        Ok(change) => Some(change),
        Err(e) => {
            tracing::warn!(
                tenant = %handoff.tenant,
                handoff_id = %handoff.handoff_id,
                error = %e,
                "the expiry sweep skipped a handoff the rule does not expire"
            );
            None
        }
    }
}

/// The handoff after a change at `now`: its new status, and the change's reason if it gives one.
pub fn handoff_after(mut handoff: Handoff, change: &Change, now: Micros) -> Handoff {
    handoff.status = change.status;
    if let Some(reason) = &change.reason {
        handoff.reason.clone_from(reason);
    }
    handoff.updated_at = now;
    handoff
}

/// The session side of a handoff change, applied to the session as stored (locked): the
/// change's new owner, if it moves ownership, and its session status, except that a session
/// no longer open (closed or expired) stays as it is: a handoff resolved after its session
/// ended never reopens it. The session is updated at `now` either way.
pub fn session_after(mut session: Session, change: &Change, now: Micros) -> Session {
    if let Some(owner) = &change.new_owner {
        session.owner.clone_from(owner);
    }
    if let Some(status) = change.session_status
        && session.status.is_open()
    {
        session.status = status;
    }
    session.updated_at = now;
    session
}

/// A pending handoff whose deadline has passed is expired, whether or not the sweeper has
/// written that down yet.
pub fn effective_status(handoff: &Handoff, now: Micros) -> HandoffStatus {
    match handoff.deadline {
        Some(d) if handoff.status == HandoffStatus::Pending && d <= now => HandoffStatus::Expired,
        _ => handoff.status,
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Accept => "accept",
        Action::Reject => "reject",
        Action::Complete => "complete",
        Action::Cancel => "cancel",
    }
}
