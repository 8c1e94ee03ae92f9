//! The handoff state machine as a table: every stored state (and a pending handoff past its
//! deadline) × every action × every handoff type × the acting agent, against the rules'
//! `decide` and `expire`. Pure domain: no store, no server. A transition repeated by its agent
//! on a handoff already in the status it leads to changes nothing (a retry is safe).

use baton_server::domain::rules::{self, Action};
use baton_server::domain::{Error, Handoff, HandoffEventType, HandoffStatus, HandoffType, Micros, SessionStatus};

const NOW: Micros = Micros(1_000_000_000);

/// A state a handoff can be found in: a stored status, or pending with its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Stored(HandoffStatus),
    Overdue,
}

fn handoff(state: State, kind: HandoffType) -> Handoff {
    let (status, deadline) = match state {
        State::Stored(s) => (s, Some(Micros(NOW.0 + 60_000_000))),
        State::Overdue => (HandoffStatus::Pending, Some(Micros(NOW.0 - 1))),
    };
    Handoff {
        handoff_id: "h1".into(),
        tenant: "t".into(),
        session_key: "s".into(),
        from_agent: "alice".into(),
        to_agent: "bob".into(),
        kind,
        status,
        instructions: String::new(),
        summary: String::new(),
        up_to_seq: 3,
        max_tokens: 0,
        reason: String::new(),
        created_at: Micros(NOW.0 - 10),
        updated_at: Micros(NOW.0 - 10),
        deadline,
    }
}

/// What the table expects of one cell.
#[derive(Debug, PartialEq)]
enum Outcome {
    To {
        status: HandoffStatus,
        event: HandoffEventType,
        owner: Option<&'static str>,
        session: Option<SessionStatus>,
    },
    /// Already there: nothing to change.
    Unchanged,
    Denied,
    Illegal,
}

fn expected(state: State, action: Action, kind: HandoffType, agent: &str) -> Outcome {
    let owner = if action == Action::Cancel { "alice" } else { "bob" };
    if agent != owner {
        return Outcome::Denied;
    }
    let full = kind == HandoffType::FullHandoff;
    use HandoffStatus as S;
    match (state, action) {
        (State::Stored(S::Pending), Action::Accept) => Outcome::To {
            status: S::Accepted,
            event: HandoffEventType::Accepted,
            owner: full.then_some("bob"),
            session: full.then_some(SessionStatus::HandedOff),
        },
        (State::Stored(S::Pending), Action::Reject) => {
            Outcome::To { status: S::Rejected, event: HandoffEventType::Rejected, owner: None, session: None }
        }
        (State::Stored(S::Pending), Action::Cancel) => {
            Outcome::To { status: S::Cancelled, event: HandoffEventType::Cancelled, owner: None, session: None }
        }
        (State::Stored(S::Accepted), Action::Complete) => Outcome::To {
            status: S::Completed,
            event: HandoffEventType::Completed,
            owner: None,
            session: full.then_some(SessionStatus::Active),
        },
        (State::Stored(S::Accepted), Action::Cancel) => Outcome::To {
            status: S::Cancelled,
            event: HandoffEventType::Cancelled,
            owner: full.then_some("alice"),
            session: full.then_some(SessionStatus::Active),
        },
        (State::Stored(S::Accepted), Action::Accept)
        | (State::Stored(S::Rejected), Action::Reject)
        | (State::Stored(S::Completed), Action::Complete)
        | (State::Stored(S::Cancelled), Action::Cancel) => Outcome::Unchanged,
        _ => Outcome::Illegal,
    }
}

fn states() -> Vec<State> {
    let mut all: Vec<State> = HandoffStatus::ALL.iter().map(|s| State::Stored(*s)).collect();
    all.push(State::Overdue);
    all
}

const ACTIONS: [Action; 4] = [Action::Accept, Action::Reject, Action::Complete, Action::Cancel];

#[test]
fn every_state_action_type_and_agent() {
    let mut cells = 0;
    for state in states() {
        for action in ACTIONS {
            for kind in HandoffType::ALL.iter().copied() {
                for agent in ["alice", "bob", "mallory"] {
                    let h = handoff(state, kind);
                    let got = match rules::decide(&h, action, agent, Some("why"), NOW) {
                        Ok(None) => Outcome::Unchanged,
                        Ok(Some(c)) => Outcome::To {
                            status: c.status,
                            event: c.event,
                            owner: match c.new_owner.as_deref() {
                                Some("alice") => Some("alice"),
                                Some("bob") => Some("bob"),
                                Some(other) => panic!("unexpected owner {other}"),
                                None => None,
                            },
                            session: c.session_status,
                        },
                        Err(Error::PermissionDenied(_)) => Outcome::Denied,
                        Err(Error::FailedPrecondition { reason: "ILLEGAL_TRANSITION", .. }) => Outcome::Illegal,
                        Err(e) => panic!("{state:?} {action:?} {kind:?} by {agent}: unexpected error {e:?}"),
                    };
                    assert_eq!(got, expected(state, action, kind, agent), "{state:?} {action:?} {kind:?} by {agent}");
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, states().len() * ACTIONS.len() * HandoffType::ALL.len() * 3);
}

#[test]
fn a_reason_is_kept_only_when_given() {
    let h = handoff(State::Stored(HandoffStatus::Pending), HandoffType::ContextTransfer);
    let reason = |r| rules::decide(&h, Action::Reject, "bob", r, NOW).unwrap().expect("a change").reason;
    assert_eq!(reason(Some("busy")).as_deref(), Some("busy"));
    assert_eq!(reason(Some("")), None);
    assert_eq!(reason(None), None);
}

#[test]
fn only_an_overdue_pending_handoff_expires() {
    for state in states() {
        for kind in HandoffType::ALL.iter().copied() {
            let h = handoff(state, kind);
            let got = rules::expire(&h, NOW);
            if state == State::Overdue {
                let c = got.unwrap_or_else(|e| panic!("{state:?} {kind:?}: {e:?}"));
                assert_eq!((c.status, c.event), (HandoffStatus::Expired, HandoffEventType::Expired));
                assert_eq!((c.new_owner, c.session_status), (None, None));
            } else {
                assert!(matches!(got, Err(Error::FailedPrecondition { .. })), "{state:?} {kind:?}: {got:?}");
            }
        }
    }
}

#[test]
fn effective_status_reads_an_overdue_pending_handoff_as_expired() {
    for state in states() {
        let h = handoff(state, HandoffType::ContextTransfer);
        let want = match state {
            State::Overdue => HandoffStatus::Expired,
            State::Stored(s) => s,
        };
        assert_eq!(rules::effective_status(&h, NOW), want, "{state:?}");
    }
}
