//! Creates and handoff transitions are safe to retry, end to end on every backend: a repeated
//! RequestHandoff, CreateSession or ForkSession with one idempotency key creates one thing and
//! answers with it each time (even when 16 race), different keys create different things, a
//! malformed key is INVALID_ARGUMENT, and a transition repeated by its agent returns the
//! handoff unchanged with no second event.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use baton_proto::v1 as pb;
use common::*;
use futures::StreamExt;
use pb::HandoffEventType as E;
use pb::HandoffStatus as S;
use tonic::Code;

backend_tests!(
    a_repeated_handoff_request_creates_one_handoff,
    a_repeated_create_session_creates_one_session,
    a_repeated_fork_creates_one_fork,
    concurrent_calls_with_one_key_create_one_thing,
    malformed_keys_are_invalid_argument,
    repeated_transitions_change_nothing_and_write_one_event,
);

fn handoff_request(session: &str, key: &str, instructions: &str) -> pb::RequestHandoffRequest {
    pb::RequestHandoffRequest {
        session_key: session.into(),
        from_agent: "alice".into(),
        to_agent: "bob".into(),
        r#type: pb::HandoffType::ContextTransfer.into(),
        instructions: instructions.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn create_request(session: &str, key: &str, agent: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_key: session.into(),
        agent: agent.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn fork_request(source: &str, new_key: &str, key: &str) -> pb::ForkSessionRequest {
    pb::ForkSessionRequest {
        session_key: source.into(),
        new_session_key: new_key.into(),
        agent: "b".into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn handoffs_of(h: &mut Handoffs, session: &str) -> Vec<pb::Handoff> {
    let list = pb::ListHandoffsRequest { session_key: session.into(), ..Default::default() };
    h.list_handoffs(list).await.unwrap().into_inner().handoffs
}

async fn session_keys(ctx: &mut Context) -> Vec<String> {
    let list = ctx.list_sessions(pb::ListSessionsRequest::default()).await.unwrap().into_inner();
    list.sessions.into_iter().map(|s| s.session_key).collect()
}

async fn a_repeated_handoff_request_creates_one_handoff(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "s", "alice").await;
    create_session(&mut ctx, "other", "alice").await;
    append(&mut ctx, "s", vec![message("alice", "one"), message("alice", "two")]).await;

    let first = h.request_handoff(handoff_request("s", "req-1", "finish it")).await.unwrap().into_inner();
    assert_eq!((first.status(), first.up_to_seq), (S::Pending, 2));
    append(&mut ctx, "s", vec![message("alice", "three")]).await;
    // A retry, even one whose other fields differ, answers with the first handoff.
    let again = h.request_handoff(handoff_request("s", "req-1", "something else")).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert_eq!(handoffs_of(&mut h, "s").await, std::slice::from_ref(&first));

    // Another key is another handoff; a key is scoped to its session.
    let second = h.request_handoff(handoff_request("s", "req-2", "more")).await.unwrap().into_inner();
    assert_ne!(second.handoff_id, first.handoff_id);
    assert_eq!(second.up_to_seq, 3);
    let elsewhere = h.request_handoff(handoff_request("other", "req-1", "x")).await.unwrap().into_inner();
    assert_ne!(elsewhere.handoff_id, first.handoff_id);
    assert_eq!(handoffs_of(&mut h, "s").await.len(), 2);
    assert_eq!(handoffs_of(&mut h, "other").await.len(), 1);

    // The retry is answered as the handoff is now, and before the session is checked: the
    // session has closed since, yet the first call's answer still comes back.
    let accepted = h
        .accept_handoff(pb::AcceptHandoffRequest { handoff_id: first.handoff_id.clone(), agent: "bob".into() })
        .await
        .unwrap()
        .into_inner();
    ctx.close_session(pb::CloseSessionRequest { session_key: "s".into() }).await.unwrap();
    let late = h.request_handoff(handoff_request("s", "req-1", "finish it")).await.unwrap().into_inner();
    assert_eq!(late, accepted);
    let closed = h.request_handoff(handoff_request("s", "req-3", "new")).await.unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "a new key still needs an open session");
    srv.shutdown().await;
}

async fn a_repeated_create_session_creates_one_session(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;

    // A generated session key: the retry gets the session the first call generated.
    let first = ctx.create_session(create_request("", "create-1", "a")).await.unwrap().into_inner();
    let again = ctx.create_session(create_request("", "create-1", "a")).await.unwrap().into_inner();
    assert_eq!(again, first);
    // Whatever the other fields say, and as the session is now.
    append(&mut ctx, &first.session_key, vec![message("a", "hello")]).await;
    let now = ctx.create_session(create_request("another-key", "create-1", "z")).await.unwrap().into_inner();
    assert_eq!((now.session_key.as_str(), now.last_seq), (first.session_key.as_str(), 1));
    assert_eq!(session_keys(&mut ctx).await, std::slice::from_ref(&first.session_key));

    // A chosen session key: the retry succeeds instead of ALREADY_EXISTS; another key (or
    // none) on that session key is still ALREADY_EXISTS.
    let chosen = ctx.create_session(create_request("mine", "create-2", "a")).await.unwrap().into_inner();
    assert_eq!(ctx.create_session(create_request("mine", "create-2", "a")).await.unwrap().into_inner(), chosen);
    for key in ["create-3", ""] {
        let taken = ctx.create_session(create_request("mine", key, "a")).await.unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists, "{key:?}");
    }
    let other = ctx.create_session(create_request("", "create-4", "a")).await.unwrap().into_inner();
    assert_ne!(other.session_key, first.session_key);
    assert_eq!(session_keys(&mut ctx).await.len(), 3);

    // Keys are the tenant's: another tenant's create with the same key is its own.
    let tenant = baton_testkit::tenant();
    let stranger = srv.server.key(&tenant, Role::Writer, None).await;
    let mut theirs = srv.context_as(Caller::new(Some(&tenant), Some(&stranger))).await;
    let theirs = theirs.create_session(create_request("mine", "create-2", "a")).await.unwrap().into_inner();
    assert_eq!((theirs.tenant.as_str(), theirs.last_seq), (tenant.as_str(), 0));

    // Deleting a session forgets its key: the same key then creates anew.
    ctx.delete_session(pb::DeleteSessionRequest { session_key: first.session_key.clone() }).await.unwrap();
    let fresh = ctx.create_session(create_request("", "create-1", "a")).await.unwrap().into_inner();
    assert_ne!(fresh.session_key, first.session_key);
    assert_eq!(fresh.last_seq, 0);
    srv.shutdown().await;
}

async fn a_repeated_fork_creates_one_fork(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "src", "a").await;
    append(&mut ctx, "src", vec![message("a", "one"), message("a", "two")]).await;

    let fork = ctx.fork_session(fork_request("src", "", "fork-1")).await.unwrap().into_inner();
    assert_eq!(fork.last_seq, 2);
    append(&mut ctx, "src", vec![message("a", "three")]).await;
    let again = ctx.fork_session(fork_request("src", "", "fork-1")).await.unwrap().into_inner();
    assert_eq!(again, fork, "the first fork, not a fork of the source as it is now");
    let another = ctx.fork_session(fork_request("src", "", "fork-2")).await.unwrap().into_inner();
    assert_ne!(another.session_key, fork.session_key);
    assert_eq!(another.last_seq, 3);
    assert_eq!(session_keys(&mut ctx).await.len(), 3);

    // CreateSession and ForkSession share the tenant's keys: a key names one creation.
    let created = ctx.create_session(create_request("", "fork-1", "a")).await.unwrap().into_inner();
    assert_eq!(created, fork);

    // The answer does not depend on the source: it may be gone since.
    ctx.delete_session(pb::DeleteSessionRequest { session_key: "src".into() }).await.unwrap();
    let after = ctx.fork_session(fork_request("src", "", "fork-1")).await.unwrap().into_inner();
    assert_eq!(after, fork);
    let gone = ctx.fork_session(fork_request("src", "", "fork-3")).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    srv.shutdown().await;
}

/// Runs `n` copies of a call at once and returns their answers.
async fn race<T, F>(n: usize, call: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap().expect("every racing call succeeds").into_inner());
    }
    out
}

async fn concurrent_calls_with_one_key_create_one_thing(b: Backend) {
    let srv = start_server(b).await;
    let ctx = srv.context().await;
    let h = srv.handoffs().await;

    let sessions = race(16, || {
        let mut ctx = ctx.clone();
        async move { ctx.create_session(create_request("", "race-create", "a")).await }
    })
    .await;
    assert!(sessions.iter().all(|s| *s == sessions[0]), "one session for all: {sessions:?}");
    let mut c = ctx.clone();
    assert_eq!(session_keys(&mut c).await, [sessions[0].session_key.clone()]);
    let source = sessions[0].session_key.clone();
    append(&mut c, &source, vec![message("alice", "context")]).await;

    let forks = race(16, || {
        let mut ctx = ctx.clone();
        let source = source.clone();
        async move { ctx.fork_session(fork_request(&source, "", "race-fork")).await }
    })
    .await;
    assert!(forks.iter().all(|s| *s == forks[0]), "one fork for all: {forks:?}");
    assert_eq!(session_keys(&mut c).await.len(), 2);

    let handoffs = race(16, || {
        let mut h = h.clone();
        let source = source.clone();
        async move { h.request_handoff(handoff_request(&source, "race-handoff", "go")).await }
    })
    .await;
    assert!(handoffs.iter().all(|x| *x == handoffs[0]), "one handoff for all: {handoffs:?}");
    let mut hh = h.clone();
    assert_eq!(handoffs_of(&mut hh, &source).await, [handoffs[0].clone()]);
    srv.shutdown().await;
}

async fn malformed_keys_are_invalid_argument(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "s", "alice").await;
    let long = "k".repeat(129);
    for bad in ["has space", "slash/key", "ünïcode", long.as_str()] {
        let e = ctx.create_session(create_request("", bad, "a")).await.unwrap_err();
        assert_eq!((e.code(), violations(&e)), (Code::InvalidArgument, vec!["idempotency_key".to_owned()]), "{bad}");
        let e = ctx.fork_session(fork_request("s", "", bad)).await.unwrap_err();
        assert_eq!((e.code(), violations(&e)), (Code::InvalidArgument, vec!["idempotency_key".to_owned()]), "{bad}");
        let e = h.request_handoff(handoff_request("s", bad, "x")).await.unwrap_err();
        assert_eq!((e.code(), violations(&e)), (Code::InvalidArgument, vec!["idempotency_key".to_owned()]), "{bad}");
    }
    // The longest key allowed, and every allowed character.
    let longest = "k".repeat(128);
    ctx.create_session(create_request("", &longest, "a")).await.unwrap();
    ctx.create_session(create_request("", "Az09._:@-", "a")).await.unwrap();
    assert_eq!(session_keys(&mut ctx).await.len(), 3, "nothing was created by the refused calls");
    assert!(handoffs_of(&mut h, "s").await.is_empty());
    srv.shutdown().await;
}

async fn repeated_transitions_change_nothing_and_write_one_event(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "t", "alice").await;
    let id = |h: &pb::Handoff| h.handoff_id.clone();
    let request = |h: &mut Handoffs, kind: pb::HandoffType| {
        let mut h = h.clone();
        async move {
            let req = pb::RequestHandoffRequest {
                session_key: "t".into(),
                from_agent: "alice".into(),
                to_agent: "bob".into(),
                r#type: kind.into(),
                ..Default::default()
            };
            h.request_handoff(req).await.unwrap().into_inner()
        }
    };
    let twice = |first: Result<tonic::Response<pb::Handoff>, tonic::Status>,
                 second: Result<tonic::Response<pb::Handoff>, tonic::Status>| {
        let first = first.unwrap().into_inner();
        assert_eq!(second.unwrap().into_inner(), first, "the repeat returns the handoff unchanged");
        first
    };
    let accept = |handoff_id: String| pb::AcceptHandoffRequest { handoff_id, agent: "bob".into() };
    let complete = |handoff_id: String| pb::CompleteHandoffRequest { handoff_id, agent: "bob".into() };

    // pending → accepted → completed, each step twice; a FULL_HANDOFF so that the session
    // side (owner, status) is exercised too.
    let done = request(&mut h, pb::HandoffType::FullHandoff).await;
    let accepted = twice(h.accept_handoff(accept(id(&done))).await, h.accept_handoff(accept(id(&done))).await);
    assert_eq!(accepted.status(), S::Accepted);
    let owned = ctx.get_session(pb::GetSessionRequest { session_key: "t".into() }).await.unwrap().into_inner();
    assert_eq!((owned.owner.as_str(), owned.status()), ("bob", pb::SessionStatus::HandedOff));
    let completed = twice(h.complete_handoff(complete(id(&done))).await, h.complete_handoff(complete(id(&done))).await);
    assert_eq!(completed.status(), S::Completed);

    // Rejected twice: the first reason stays.
    let rejected = request(&mut h, pb::HandoffType::ContextTransfer).await;
    let reject = |reason: &str| pb::RejectHandoffRequest {
        handoff_id: rejected.handoff_id.clone(),
        agent: "bob".into(),
        reason: reason.into(),
    };
    let r = twice(h.reject_handoff(reject("busy")).await, h.reject_handoff(reject("other reason")).await);
    assert_eq!((r.status(), r.reason.as_str()), (S::Rejected, "busy"));

    // Cancelled twice by the requester; someone else repeating it is still refused, and a
    // different move out of a final status is still illegal.
    let cancelled = request(&mut h, pb::HandoffType::Collaboration).await;
    let cancel = |agent: &str| pb::CancelHandoffRequest {
        handoff_id: cancelled.handoff_id.clone(),
        agent: agent.into(),
        reason: String::new(),
    };
    let c = twice(h.cancel_handoff(cancel("alice")).await, h.cancel_handoff(cancel("alice")).await);
    assert_eq!(c.status(), S::Cancelled);
    assert_eq!(h.cancel_handoff(cancel("bob")).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(h.accept_handoff(accept(id(&cancelled))).await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(h.reject_handoff(reject("again")).await.map(|r| r.into_inner()).unwrap(), r);

    // Bob's inbox from the start: exactly one event per transition made.
    let sentinel = request(&mut h, pb::HandoffType::ContextTransfer).await;
    let mut inbox = h
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "bob".into(), after_cursor: Some(0) })
        .await
        .unwrap()
        .into_inner();
    let mut seen: BTreeMap<(String, i32), usize> = BTreeMap::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), inbox.next()).await.unwrap().unwrap().unwrap();
        let handoff_id = event.handoff.as_ref().map(|h| h.handoff_id.clone()).unwrap_or_default();
        if handoff_id == sentinel.handoff_id {
            break;
        }
        *seen.entry((handoff_id, event.r#type)).or_default() += 1;
    }
    let want: BTreeMap<(String, i32), usize> = [
        (id(&done), E::Created),
        (id(&done), E::Accepted),
        (id(&done), E::Completed),
        (id(&rejected), E::Created),
        (id(&rejected), E::Rejected),
        (id(&cancelled), E::Created),
        (id(&cancelled), E::Cancelled),
    ]
    .into_iter()
    .map(|(h, e)| ((h, e as i32), 1))
    .collect();
    assert_eq!(seen, want);
    srv.shutdown().await;
}
