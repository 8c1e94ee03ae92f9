//! The gRPC API end to end: a real `batond` on port 0, real stores (SQLite and PostgreSQL),
//! real tonic clients.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use baton_proto::v1 as pb;
use common::*;
use futures::StreamExt;
use pb::EntryKind;
use tonic::Code;

backend_tests!(
    session_lifecycle,
    concurrent_appenders_get_gap_free_seqs,
    follower_sees_every_entry_once_while_writers_append,
    stream_replays_then_ends_without_follow,
    idempotent_retry_returns_the_original_append,
    expected_last_seq_conflict_writes_nothing,
    closed_session_takes_no_entries,
    list_entries_pages_and_filters,
    context_window_fits_the_token_budget,
    search_ranks_and_snippets,
    handoff_transitions,
    full_handoff_transfers_ownership,
    handoff_deadline_expires_without_a_request,
    watch_handoffs_pending_first_then_live_and_resumable,
    handoff_context_package,
    bad_input_is_rejected_with_field_violations,
    unknown_things_are_not_found,
    shutdown_ends_streams_with_unavailable,
    concurrent_retries_of_one_key_write_once,
    concurrent_conditional_appends_one_wins,
    token_budgets_past_the_limit_are_refused_alike,
);

async fn session_lifecycle(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut meta = prost_types::Struct::default();
    meta.fields.insert(
        "project".into(),
        prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("baton".into())) },
    );
    let s = ctx
        .create_session(pb::CreateSessionRequest {
            session_key: "s-1".into(),
            agent: "planner".into(),
            metadata: Some(meta.clone()),
            ttl: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.session_key.as_str(), s.owner.as_str(), s.created_by.as_str()), ("s-1", "planner", "planner"));
    assert_eq!(s.status(), pb::SessionStatus::Active);
    assert_eq!(s.tenant, srv.tenant);
    assert_eq!(s.metadata, Some(meta));
    assert!(s.expires_at.is_some());

    let dup = ctx
        .create_session(pb::CreateSessionRequest { session_key: "s-1".into(), agent: "x".into(), ..Default::default() })
        .await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);

    let generated = create_session(&mut ctx, "", "coder").await;
    assert!(!generated.session_key.is_empty());

    for i in 0..3 {
        create_session(&mut ctx, &format!("p-{i}"), "pager").await;
    }
    // Paging: newest first, two at a time, no repeats.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = ctx
            .list_sessions(pb::ListSessionsRequest {
                agent: "pager".into(),
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.sessions.into_iter().map(|s| s.session_key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["p-2", "p-1", "p-0"]);

    let updated = ctx
        .update_session(pb::UpdateSessionRequest {
            session_key: "s-1".into(),
            status: pb::SessionStatus::Dormant.into(),
            ttl: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.status(), pb::SessionStatus::Dormant);
    assert_eq!(updated.expires_at, None);
    // An append wakes a dormant session.
    append(&mut ctx, "s-1", vec![message("planner", "hi")]).await;
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "s-1".into() }).await.unwrap().into_inner();
    assert_eq!((s.status(), s.last_seq), (pb::SessionStatus::Active, 1));

    let dormant = ctx
        .list_sessions(pb::ListSessionsRequest { status: pb::SessionStatus::Closed.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(dormant.sessions.is_empty());
    let closed = ctx.close_session(pb::CloseSessionRequest { session_key: "s-1".into() }).await.unwrap().into_inner();
    assert_eq!(closed.status(), pb::SessionStatus::Closed);
    let reopen = ctx
        .update_session(pb::UpdateSessionRequest {
            session_key: "s-1".into(),
            status: pb::SessionStatus::Active.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reopen.code(), Code::FailedPrecondition);
    srv.shutdown().await;
}

async fn concurrent_appenders_get_gap_free_seqs(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "busy", "a").await;
    const WRITERS: usize = 32;
    const APPENDS: usize = 5;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..APPENDS {
                let n = 1 + (w + i) % 3;
                let entries = (0..n).map(|j| message(&format!("w{w}"), &format!("{w}/{i}/{j}"))).collect();
                let r = append(&mut ctx, "busy", entries).await;
                assert_eq!(r.last_seq - r.first_seq + 1, n as u64);
                got.extend(r.entries.iter().map(|e| e.seq));
                // A batch's seqs are consecutive.
                assert!(r.entries.windows(2).all(|w| w[1].seq == w[0].seq + 1));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let n = all.len() as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>(), "seqs are exactly 1..N");
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "busy".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, n);
    srv.shutdown().await;
}

async fn follower_sees_every_entry_once_while_writers_append(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "live", "a").await;
    // Some history before the follower starts, so it replays and then switches to live.
    for i in 0..20 {
        append(&mut ctx, "live", vec![message("a", &format!("old {i}"))]).await;
    }
    let mut stream = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "live".into(),
            after_seq: 0,
            follow: true,
            max_entries: 0,
        })
        .await
        .unwrap()
        .into_inner();
    const WRITERS: usize = 4;
    const APPENDS: usize = 50;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut ctx = ctx.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                let entries = (0..1 + i % 2).map(|j| message(&format!("w{w}"), &format!("{i}.{j}"))).collect();
                append(&mut ctx, "live", entries).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let total = 20 + WRITERS as u64 * (APPENDS as u64 / 2 * 3);
    let mut expected = 1;
    while expected <= total {
        let e = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("follower stalled")
            .expect("stream ended early")
            .expect("stream error");
        assert_eq!(e.seq, expected, "in order, no gap, no duplicate");
        expected += 1;
    }
    // Nothing extra arrives.
    assert!(tokio::time::timeout(Duration::from_millis(200), stream.next()).await.is_err());
    srv.shutdown().await;
}

async fn stream_replays_then_ends_without_follow(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "r", "a").await;
    // More than one store page (512) so keyset paging is exercised.
    for chunk in 0..3 {
        let entries = (0..400).map(|i| message("a", &format!("{chunk}-{i}"))).collect();
        append(&mut ctx, "r", entries).await;
    }
    let seqs: Vec<u64> = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "r".into(),
            after_seq: 100,
            follow: false,
            max_entries: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .map(|e| e.unwrap().seq)
        .collect()
        .await;
    assert_eq!(seqs, (101..=1200).collect::<Vec<_>>());
    let limited: Vec<u64> = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "r".into(),
            after_seq: 0,
            follow: false,
            max_entries: 7,
        })
        .await
        .unwrap()
        .into_inner()
        .map(|e| e.unwrap().seq)
        .collect()
        .await;
    assert_eq!(limited, (1..=7).collect::<Vec<_>>());
    srv.shutdown().await;
}

async fn idempotent_retry_returns_the_original_append(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "idem", "a").await;
    let req = pb::AppendEntriesRequest {
        session_key: "idem".into(),
        entries: vec![message("a", "one"), message("a", "two")],
        idempotency_key: "req-1".into(),
        expected_last_seq: None,
    };
    let first = ctx.append_entries(req.clone()).await.unwrap().into_inner();
    assert_eq!((first.first_seq, first.last_seq), (1, 2));
    assert_eq!(first.entries[0].idempotency_key, "req-1");
    let retry = ctx.append_entries(req.clone()).await.unwrap().into_inner();
    assert_eq!(retry, first, "the retry returns the original result");
    // Even with different content, the key wins: nothing is written.
    let mut other = req;
    other.entries = vec![message("a", "three")];
    let again = ctx.append_entries(other).await.unwrap().into_inner();
    assert_eq!(again, first);
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "idem".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 2);
    srv.shutdown().await;
}

async fn expected_last_seq_conflict_writes_nothing(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "occ", "a").await;
    append(&mut ctx, "occ", vec![message("a", "1"), message("a", "2")]).await;
    let mut req = pb::AppendEntriesRequest {
        session_key: "occ".into(),
        entries: vec![message("a", "3")],
        idempotency_key: String::new(),
        expected_last_seq: Some(1),
    };
    let err = ctx.append_entries(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    {
        use tonic_types::StatusExt;
        let pf = err.get_details_precondition_failure().expect("precondition details");
        assert_eq!(pf.violations[0].r#type, "SEQ_MISMATCH");
    }
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "occ".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 2, "nothing written");
    req.expected_last_seq = Some(2);
    let ok = ctx.append_entries(req).await.unwrap().into_inner();
    assert_eq!(ok.first_seq, 3);
    srv.shutdown().await;
}

async fn closed_session_takes_no_entries(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "c", "a").await;
    ctx.close_session(pb::CloseSessionRequest { session_key: "c".into() }).await.unwrap();
    let err = ctx
        .append_entries(pb::AppendEntriesRequest {
            session_key: "c".into(),
            entries: vec![message("a", "x")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    srv.shutdown().await;
}

async fn list_entries_pages_and_filters(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "l", "a").await;
    let entries = (1..=10)
        .map(|i| {
            if i % 3 == 0 {
                text(EntryKind::ToolCall, "a", &format!("call {i}"))
            } else {
                message("a", &format!("m {i}"))
            }
        })
        .collect();
    append(&mut ctx, "l", entries).await;
    let mut seqs = Vec::new();
    let mut token = String::new();
    loop {
        let page = ctx
            .list_entries(pb::ListEntriesRequest {
                session_key: "l".into(),
                after_seq: Some(1),
                before_seq: Some(10),
                page_size: 3,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seqs.extend(page.entries.iter().map(|e| e.seq));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seqs, (2..=9).collect::<Vec<_>>());
    let calls = ctx
        .list_entries(pb::ListEntriesRequest {
            session_key: "l".into(),
            kinds: vec![EntryKind::ToolCall.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(calls.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 6, 9]);
    srv.shutdown().await;
}

async fn context_window_fits_the_token_budget(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "w", "a").await;
    // 40 characters = 10 tokens + 4 framing = 14 tokens each.
    let body = "x".repeat(40);
    append(&mut ctx, "w", (0..5).map(|_| message("a", &body)).collect()).await;
    append(&mut ctx, "w", vec![text(EntryKind::Summary, "a", &"s".repeat(40))]).await; // seq 6
    append(&mut ctx, "w", (0..10).map(|_| message("a", &body)).collect()).await; // seqs 7..=16

    let w = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "w".into(), max_tokens: 14 * 4, max_entries: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.summary.as_ref().map(|s| s.seq), Some(6));
    // Budget 56 = summary 14 + three newest entries.
    assert_eq!(w.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [14, 15, 16]);
    assert_eq!((w.total_tokens, w.last_seq, w.truncated), (56, 16, true));

    let all = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "w".into(), max_tokens: 10_000, max_entries: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (7..=16).collect::<Vec<_>>());
    assert!(!all.truncated, "everything after the summary fits");

    let capped = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "w".into(), max_tokens: 10_000, max_entries: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [15, 16]);
    assert!(capped.truncated);
    srv.shutdown().await;
}

async fn search_ranks_and_snippets(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s1", "a").await;
    create_session(&mut ctx, "s2", "a").await;
    append(
        &mut ctx,
        "s1",
        vec![
            message("a", "The deploy pipeline failed at the migration step."),
            message("a", "Lunch was good."),
            message("a", "Migration migration migration: the migration of the schema is the whole deploy story."),
        ],
    )
    .await;
    append(&mut ctx, "s2", vec![message("a", "Another migration elsewhere.")]).await;

    let hits = ctx
        .search_entries(pb::SearchEntriesRequest {
            session_key: "s1".into(),
            query: "migration".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    let seqs: Vec<u64> = hits.iter().map(|h| h.entry.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [3, 1], "the entry about migrations ranks first; lunch does not match");
    assert!(hits[0].score >= hits[1].score);
    assert!(
        hits[0].snippet.contains("[") && hits[0].snippet.contains("]"),
        "snippet marks matches: {}",
        hits[0].snippet
    );

    let tenant_wide = ctx
        .search_entries(pb::SearchEntriesRequest { query: "migration".into(), page_size: 2, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tenant_wide.hits.len(), 2);
    assert!(!tenant_wide.next_page_token.is_empty());
    let rest = ctx
        .search_entries(pb::SearchEntriesRequest {
            query: "migration".into(),
            page_size: 2,
            page_token: tenant_wide.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.hits.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // Query syntax never becomes a server error: a malformed query is the caller's
    // (INVALID_ARGUMENT naming `query`); tests/search.rs has the language itself.
    for q in ["\"unterminated", "AND OR NOT", "-", "(*)", "a:b"] {
        let r = ctx.search_entries(pb::SearchEntriesRequest { query: q.into(), ..Default::default() }).await;
        if let Err(e) = r {
            assert_eq!((e.code(), violations(&e)), (Code::InvalidArgument, vec!["query".to_owned()]), "{q:?}: {e:?}");
        }
    }
    srv.shutdown().await;
}

async fn request(h: &mut Handoffs, key: &str, kind: pb::HandoffType) -> pb::Handoff {
    h.request_handoff(pb::RequestHandoffRequest {
        session_key: key.into(),
        from_agent: "alice".into(),
        to_agent: "bob".into(),
        r#type: kind.into(),
        instructions: "finish the migration".into(),
        ..Default::default()
    })
    .await
    .expect("request handoff")
    .into_inner()
}

fn id(handoff_id: &str, agent: &str) -> (String, String) {
    (handoff_id.to_owned(), agent.to_owned())
}

async fn handoff_transitions(b: Backend) {
    use pb::HandoffStatus as S;
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "h", "alice").await;
    append(&mut ctx, "h", vec![message("alice", "started"), text(EntryKind::File, "alice", "fn main() {}")]).await;

    let accept = |h: &mut Handoffs, (id, agent): (String, String)| {
        let mut h = h.clone();
        async move { h.accept_handoff(pb::AcceptHandoffRequest { handoff_id: id, agent }).await.map(|r| r.into_inner()) }
    };
    let complete = |h: &mut Handoffs, (id, agent): (String, String)| {
        let mut h = h.clone();
        async move { h.complete_handoff(pb::CompleteHandoffRequest { handoff_id: id, agent }).await.map(|r| r.into_inner()) }
    };
    let reject = |h: &mut Handoffs, (id, agent): (String, String)| {
        let mut h = h.clone();
        async move {
            h.reject_handoff(pb::RejectHandoffRequest { handoff_id: id, agent, reason: "busy".into() })
                .await
                .map(|r| r.into_inner())
        }
    };
    let cancel = |h: &mut Handoffs, (id, agent): (String, String)| {
        let mut h = h.clone();
        async move {
            h.cancel_handoff(pb::CancelHandoffRequest { handoff_id: id, agent, reason: "plans changed".into() })
                .await
                .map(|r| r.into_inner())
        }
    };

    // pending → accepted → completed
    let a = request(&mut h, "h", pb::HandoffType::ContextTransfer).await;
    assert_eq!((a.status(), a.up_to_seq), (S::Pending, 2));
    assert!(a.summary.contains("2 entries up to seq 2"), "{}", a.summary);
    assert_eq!(accept(&mut h, id(&a.handoff_id, "mallory")).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(complete(&mut h, id(&a.handoff_id, "bob")).await.unwrap_err().code(), Code::FailedPrecondition);
    let accepted = accept(&mut h, id(&a.handoff_id, "bob")).await.unwrap();
    assert_eq!(accepted.status(), S::Accepted);
    // A repeated transition (a retry after a lost answer) returns the handoff unchanged.
    assert_eq!(accept(&mut h, id(&a.handoff_id, "bob")).await.unwrap(), accepted);
    assert_eq!(reject(&mut h, id(&a.handoff_id, "bob")).await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(complete(&mut h, id(&a.handoff_id, "bob")).await.unwrap().status(), S::Completed);
    assert_eq!(cancel(&mut h, id(&a.handoff_id, "alice")).await.unwrap_err().code(), Code::FailedPrecondition);

    // pending → rejected (terminal)
    let r = request(&mut h, "h", pb::HandoffType::Collaboration).await;
    let rejected = reject(&mut h, id(&r.handoff_id, "bob")).await.unwrap();
    assert_eq!((rejected.status(), rejected.reason.as_str()), (S::Rejected, "busy"));
    assert_eq!(accept(&mut h, id(&r.handoff_id, "bob")).await.unwrap_err().code(), Code::FailedPrecondition);

    // pending → cancelled, by the requester only
    let c = request(&mut h, "h", pb::HandoffType::ContextTransfer).await;
    assert_eq!(cancel(&mut h, id(&c.handoff_id, "bob")).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(cancel(&mut h, id(&c.handoff_id, "alice")).await.unwrap().status(), S::Cancelled);

    // accepted → cancelled
    let ac = request(&mut h, "h", pb::HandoffType::ContextTransfer).await;
    accept(&mut h, id(&ac.handoff_id, "bob")).await.unwrap();
    assert_eq!(cancel(&mut h, id(&ac.handoff_id, "alice")).await.unwrap().status(), S::Cancelled);

    let got = h.get_handoff(pb::GetHandoffRequest { handoff_id: a.handoff_id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.status(), S::Completed);

    let to_bob = h
        .list_handoffs(pb::ListHandoffsRequest {
            to_agent: "bob".into(),
            status: S::Cancelled.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        to_bob.handoffs.iter().map(|h| h.handoff_id.as_str()).collect::<Vec<_>>(),
        [&ac.handoff_id, &c.handoff_id]
    );

    let same = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "h".into(),
            from_agent: "alice".into(),
            to_agent: "alice".into(),
            r#type: pb::HandoffType::FullHandoff.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(same.code(), Code::InvalidArgument);
    srv.shutdown().await;
}

async fn full_handoff_transfers_ownership(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "f", "alice").await;
    let ho = request(&mut h, "f", pb::HandoffType::FullHandoff).await;
    h.accept_handoff(pb::AcceptHandoffRequest { handoff_id: ho.handoff_id.clone(), agent: "bob".into() })
        .await
        .unwrap();
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "f".into() }).await.unwrap().into_inner();
    assert_eq!((s.owner.as_str(), s.status()), ("bob", pb::SessionStatus::HandedOff));
    // The new owner continues the work.
    append(&mut ctx, "f", vec![message("bob", "picking this up")]).await;
    h.complete_handoff(pb::CompleteHandoffRequest { handoff_id: ho.handoff_id, agent: "bob".into() }).await.unwrap();
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "f".into() }).await.unwrap().into_inner();
    assert_eq!((s.owner.as_str(), s.status()), ("bob", pb::SessionStatus::Active));
    srv.shutdown().await;
}

async fn handoff_deadline_expires_without_a_request(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "d", "alice").await;
    let now = baton_server::wire::timestamp(baton_server::clock::Clock::now(srv.clock.as_ref()));
    let deadline = prost_types::Timestamp { seconds: now.seconds + 60, nanos: now.nanos };
    let ho = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "d".into(),
            from_agent: "alice".into(),
            to_agent: "bob".into(),
            r#type: pb::HandoffType::ContextTransfer.into(),
            deadline: Some(deadline),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut inbox = h
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "bob".into(), after_cursor: None })
        .await
        .unwrap()
        .into_inner();
    let created = inbox.next().await.unwrap().unwrap();
    assert_eq!(created.r#type(), pb::HandoffEventType::Created);

    srv.clock.advance(Duration::from_secs(61));
    srv.baton.sweep().await.unwrap();
    let expired = tokio::time::timeout(Duration::from_secs(10), inbox.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(expired.r#type(), pb::HandoffEventType::Expired);
    assert_eq!(expired.handoff.unwrap().status(), pb::HandoffStatus::Expired);
    let got = h.get_handoff(pb::GetHandoffRequest { handoff_id: ho.handoff_id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.status(), pb::HandoffStatus::Expired);
    let late = h
        .accept_handoff(pb::AcceptHandoffRequest { handoff_id: ho.handoff_id, agent: "bob".into() })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);

    let past = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "d".into(),
            from_agent: "alice".into(),
            to_agent: "bob".into(),
            r#type: pb::HandoffType::ContextTransfer.into(),
            deadline: Some(now),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&past), ["deadline"]);
    srv.shutdown().await;
}

async fn watch_handoffs_pending_first_then_live_and_resumable(b: Backend) {
    use pb::HandoffEventType as E;
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "w", "alice").await;
    let done = request(&mut h, "w", pb::HandoffType::ContextTransfer).await;
    h.reject_handoff(pb::RejectHandoffRequest {
        handoff_id: done.handoff_id.clone(),
        agent: "bob".into(),
        reason: String::new(),
    })
    .await
    .unwrap();
    let p1 = request(&mut h, "w", pb::HandoffType::ContextTransfer).await;
    let p2 = request(&mut h, "w", pb::HandoffType::Collaboration).await;

    let mut inbox = h
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "bob".into(), after_cursor: None })
        .await
        .unwrap()
        .into_inner();
    // Pending first: only the two still pending, oldest first.
    let e1 = next(&mut inbox).await;
    let e2 = next(&mut inbox).await;
    assert_eq!((e1.r#type(), e1.handoff.as_ref().unwrap().handoff_id.as_str()), (E::Created, p1.handoff_id.as_str()));
    assert_eq!((e2.r#type(), e2.handoff.as_ref().unwrap().handoff_id.as_str()), (E::Created, p2.handoff_id.as_str()));

    // Then live.
    h.accept_handoff(pb::AcceptHandoffRequest { handoff_id: p1.handoff_id.clone(), agent: "bob".into() })
        .await
        .unwrap();
    let e3 = next(&mut inbox).await;
    assert_eq!(e3.r#type(), E::Accepted);
    assert_eq!(e3.handoff.as_ref().unwrap().status(), pb::HandoffStatus::Accepted);
    let cursor = e3.cursor;
    drop(inbox);

    // Events while disconnected are replayed on resume, in order, nothing twice.
    h.cancel_handoff(pb::CancelHandoffRequest {
        handoff_id: p2.handoff_id.clone(),
        agent: "alice".into(),
        reason: String::new(),
    })
    .await
    .unwrap();
    h.complete_handoff(pb::CompleteHandoffRequest { handoff_id: p1.handoff_id.clone(), agent: "bob".into() })
        .await
        .unwrap();
    let mut resumed = h
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "bob".into(), after_cursor: Some(cursor) })
        .await
        .unwrap()
        .into_inner();
    let r1 = next(&mut resumed).await;
    let r2 = next(&mut resumed).await;
    assert_eq!((r1.r#type(), r1.cursor), (E::Cancelled, cursor + 1));
    assert_eq!((r2.r#type(), r2.cursor), (E::Completed, cursor + 2));
    // The requester's inbox has its own gap-free cursors: 3 created, reject, accept, cancel, complete.
    let mut alice = h
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "alice".into(), after_cursor: Some(0) })
        .await
        .unwrap()
        .into_inner();
    let mut cursors = Vec::new();
    for _ in 0..6 {
        cursors.push(next(&mut alice).await.cursor);
    }
    assert_eq!(cursors, (1..=6).collect::<Vec<_>>());
    srv.shutdown().await;
}

async fn next(s: &mut tonic::Streaming<pb::HandoffEvent>) -> pb::HandoffEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("event").unwrap().unwrap()
}

async fn handoff_context_package(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "pkg", "alice").await;
    let body = "y".repeat(40); // 14 tokens each
    append(&mut ctx, "pkg", (0..10).map(|_| message("alice", &body)).collect()).await;
    let ho = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "pkg".into(),
            from_agent: "alice".into(),
            to_agent: "bob".into(),
            r#type: pb::HandoffType::ContextTransfer.into(),
            max_tokens: 2000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Appends after the request are not part of the package.
    append(&mut ctx, "pkg", vec![message("alice", "after")]).await;
    let items: Vec<pb::Entry> = h
        .stream_handoff_context(pb::StreamHandoffContextRequest { handoff_id: ho.handoff_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(items[0].kind(), EntryKind::Summary);
    assert_eq!(items[0].seq, 0);
    assert_eq!(items[1..].iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());

    // A small budget keeps the newest entries.
    let small = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "pkg".into(),
            from_agent: "alice".into(),
            to_agent: "bob".into(),
            r#type: pb::HandoffType::ContextTransfer.into(),
            max_tokens: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let items: Vec<pb::Entry> = h
        .stream_handoff_context(pb::StreamHandoffContextRequest { handoff_id: small.handoff_id })
        .await
        .unwrap()
        .into_inner()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(items.len(), 1, "only the summary: no entry fits one token");
    srv.shutdown().await;
}

async fn bad_input_is_rejected_with_field_violations(b: Backend) {
    let srv = start_server_with(b, |c| {
        c.max_entry_bytes = 1000;
        c.max_append_bytes = 3000;
    })
    .await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "ok", "a").await;

    async fn bad_create(ctx: &mut Context, key: &str, agent: &str) -> Vec<String> {
        let err = ctx
            .create_session(pb::CreateSessionRequest {
                session_key: key.into(),
                agent: agent.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        violations(&err)
    }
    assert_eq!(bad_create(&mut ctx, "ok", "").await, ["agent"]);
    assert_eq!(bad_create(&mut ctx, &"k".repeat(129), "a").await, ["session_key"]);
    assert_eq!(bad_create(&mut ctx, "white space", "a/b").await, ["session_key", "agent"]);

    let mut big_meta = prost_types::Struct::default();
    big_meta.fields.insert(
        "blob".into(),
        prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("z".repeat(70_000))) },
    );
    let err = ctx
        .create_session(pb::CreateSessionRequest { agent: "a".into(), metadata: Some(big_meta), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["metadata"]);

    let append_err = |entries: Vec<pb::NewEntry>| {
        let mut ctx = ctx.clone();
        async move {
            let err = ctx
                .append_entries(pb::AppendEntriesRequest { session_key: "ok".into(), entries, ..Default::default() })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            violations(&err)
        }
    };
    assert_eq!(append_err(vec![]).await, ["entries"]);
    assert_eq!(append_err(vec![message("a", &"x".repeat(1001))]).await, ["entries[0].content"]);
    assert_eq!(append_err((0..4).map(|_| message("a", &"x".repeat(900))).collect()).await, ["entries"]);
    assert_eq!(append_err((0..1001).map(|_| message("a", "x")).collect()).await, ["entries"]);
    let mut unknown_kind = message("a", "x");
    unknown_kind.kind = 42;
    let mut unspecified = message("a", "x");
    unspecified.kind = 0;
    let mut no_content = message("a", "x");
    no_content.content = None;
    assert_eq!(
        append_err(vec![unknown_kind, unspecified, no_content, message("", "x")]).await,
        ["entries[0].kind", "entries[1].kind", "entries[2].content", "entries[3].author"]
    );
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "ok".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 0, "nothing was written by any bad append");

    let err = ctx.list_sessions(pb::ListSessionsRequest { page_size: 1001, ..Default::default() }).await.unwrap_err();
    assert_eq!(violations(&err), ["page_size"]);
    let err = ctx
        .list_sessions(pb::ListSessionsRequest { page_token: "garbage!".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_token"]);
    let err = ctx.list_sessions(pb::ListSessionsRequest { status: 77, ..Default::default() }).await.unwrap_err();
    assert_eq!(violations(&err), ["status"]);
    // A token from another list is malformed here (even with the same filters).
    let entries_token =
        baton_server::domain::page::encode(baton_server::domain::page::PageKind::Entries, &srv.tenant, "None|None", 5);
    let err = ctx
        .list_sessions(pb::ListSessionsRequest { page_token: entries_token, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_token"]);
    let err =
        ctx.search_entries(pb::SearchEntriesRequest { query: "  ".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(violations(&err), ["query"]);
    let err = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "ok".into(),
            from_agent: "a".into(),
            to_agent: "b".into(),
            r#type: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["type"]);
    let err =
        ctx.get_session(tonic::Request::new(pb::GetSessionRequest { session_key: String::new() })).await.unwrap_err();
    assert_eq!(violations(&err), ["session_key"]);

    // Errors never carry SQL.
    let msg = err.message().to_lowercase();
    assert!(!msg.contains("select") && !msg.contains("insert"), "{msg}");
    srv.shutdown().await;
}

async fn unknown_things_are_not_found(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    let codes = [
        ctx.get_session(pb::GetSessionRequest { session_key: "nope".into() }).await.unwrap_err().code(),
        ctx.append_entries(pb::AppendEntriesRequest {
            session_key: "nope".into(),
            entries: vec![message("a", "x")],
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        ctx.list_entries(pb::ListEntriesRequest { session_key: "nope".into(), ..Default::default() })
            .await
            .unwrap_err()
            .code(),
        ctx.stream_entries(pb::StreamEntriesRequest { session_key: "nope".into(), ..Default::default() })
            .await
            .unwrap_err()
            .code(),
        ctx.get_context_window(pb::GetContextWindowRequest { session_key: "nope".into(), ..Default::default() })
            .await
            .unwrap_err()
            .code(),
        ctx.search_entries(pb::SearchEntriesRequest {
            session_key: "nope".into(),
            query: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        h.get_handoff(pb::GetHandoffRequest { handoff_id: "nope".into() }).await.unwrap_err().code(),
        h.accept_handoff(pb::AcceptHandoffRequest { handoff_id: "nope".into(), agent: "b".into() })
            .await
            .unwrap_err()
            .code(),
        request_err(&mut h).await,
    ];
    assert!(codes.iter().all(|c| *c == Code::NotFound), "{codes:?}");

    // Another tenant's session is invisible.
    create_session(&mut ctx, "mine", "a").await;
    let someone_else = srv.server.key("someone-else", Role::Writer, None).await;
    let mut other = srv.context_as(Caller::new(None, Some(&someone_else))).await;
    let err = other.get_session(pb::GetSessionRequest { session_key: "mine".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    srv.shutdown().await;
}

async fn request_err(h: &mut Handoffs) -> Code {
    h.request_handoff(pb::RequestHandoffRequest {
        session_key: "nope".into(),
        from_agent: "a".into(),
        to_agent: "b".into(),
        r#type: pb::HandoffType::FullHandoff.into(),
        ..Default::default()
    })
    .await
    .unwrap_err()
    .code()
}

async fn shutdown_ends_streams_with_unavailable(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "sd", "a").await;
    append(&mut ctx, "sd", vec![message("a", "1")]).await;
    let mut stream = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "sd".into(),
            after_seq: 0,
            follow: true,
            max_entries: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
    let mut inbox = srv
        .handoffs()
        .await
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "a".into(), after_cursor: None })
        .await
        .unwrap()
        .into_inner();
    srv.shutdown().await;
    let end = stream.next().await.expect("a final status").unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
    assert!(end.message().contains("resume after 1"), "{}", end.message());
    assert_eq!(inbox.next().await.unwrap().unwrap_err().code(), Code::Unavailable);
}

/// Health, reflection and admin HTTP on the embedded store.
#[tokio::test]
async fn health_reflection_and_admin() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let srv = start_server(Backend::Sqlite).await;
    let mut health = HealthClient::new(srv.channel().await);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let mut status = None;
    for _ in 0..50 {
        let r = health.check(check("baton.v1.ContextService")).await;
        if let Ok(r) = r {
            status = Some(r.into_inner().status);
            if status == Some(1) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(1), "SERVING");

    let mut reflection = ServerReflectionClient::new(srv.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains("baton.v1.ContextService") && names.contains("baton.v1.HandoffService"), "{names:?}");
    assert!(names.contains("grpc.health.v1.Health"), "{names:?}");

    // The error details Baton sends resolve, with every file they import (grpcurl prints
    // "google.rpc.BadRequest is not recognized" otherwise).
    let ask = |request: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut files = Vec::new();
    for symbol in ["google.rpc.BadRequest", "google.rpc.RetryInfo", "google.rpc.ErrorInfo", "google.rpc.Status"] {
        let req = ask(MessageRequest::FileContainingSymbol(symbol.into()));
        let mut responses = reflection.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
        match responses.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::FileDescriptorResponse(f)) => files.extend(f.file_descriptor_proto),
            other => panic!("{symbol} not served: {other:?}"),
        }
    }
    for file in files {
        let file = <prost_types::FileDescriptorProto as prost::Message>::decode(file.as_slice()).unwrap();
        for dependency in file.dependency {
            let req = ask(MessageRequest::FileByFilename(dependency.clone()));
            let mut responses =
                reflection.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
            let response = responses.next().await.unwrap().unwrap().message_response;
            assert!(
                matches!(response, Some(MessageResponse::FileDescriptorResponse(_))),
                "{dependency} (imported by {:?}) not served: {response:?}",
                file.name
            );
        }
    }

    for (path, code) in [("/health", 200), ("/ready", 200), ("/nope", 404)] {
        let got = http_status(srv.admin_addr, path).await;
        assert_eq!(got, code, "{path}");
    }
    srv.shutdown().await;
}

/// A minimal HTTP/1.1 GET, enough for the admin endpoints.
async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A request compressed with gzip or zstd is accepted.
#[tokio::test]
async fn compressed_requests_are_accepted() {
    use tonic::codec::CompressionEncoding;
    let srv = start_server(Backend::Sqlite).await;
    for enc in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut ctx = srv.context().await.send_compressed(enc);
        let key = format!("z-{enc:?}");
        create_session(&mut ctx, &key, "a").await;
        let r = append(&mut ctx, &key, vec![message("a", &"compressible ".repeat(1000))]).await;
        assert_eq!(r.last_seq, 1);
    }
    srv.shutdown().await;
}

/// Retries racing each other (they may share one coalesced transaction) write once.
async fn concurrent_retries_of_one_key_write_once(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "race", "a").await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.append_entries(pb::AppendEntriesRequest {
                    session_key: "race".into(),
                    entries: vec![message("a", "once"), message("a", "twice?")],
                    idempotency_key: "same-key".into(),
                    expected_last_seq: None,
                })
                .await
                .unwrap()
                .into_inner()
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results.iter().all(|r| (r.first_seq, r.last_seq) == (1, 2)), "every retry sees the one append");
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "race".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 2);
    srv.shutdown().await;
}

/// Conditional appends racing on one seq: exactly one wins, the others fail and write nothing.
async fn concurrent_conditional_appends_one_wins(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "cas", "a").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let mut ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.append_entries(pb::AppendEntriesRequest {
                    session_key: "cas".into(),
                    entries: vec![message("a", &format!("writer {i}"))],
                    idempotency_key: String::new(),
                    expected_last_seq: Some(0),
                })
                .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                won += 1;
                assert_eq!(r.into_inner().first_seq, 1);
            }
            Err(e) => assert_eq!(e.code(), Code::FailedPrecondition),
        }
    }
    assert_eq!(won, 1);
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "cas".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 1);
    srv.shutdown().await;
}

/// A `max_tokens` past the domain's limit is INVALID_ARGUMENT on every store and RPC, before
/// anything is read or written; the limit itself is accepted.
async fn token_budgets_past_the_limit_are_refused_alike(b: Backend) {
    use baton_server::domain::validate::MAX_TOKENS;
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "budget", "a").await;
    append(&mut ctx, "budget", vec![message("a", "hello")]).await;
    let window = |max_tokens| pb::GetContextWindowRequest { session_key: "budget".into(), max_tokens, max_entries: 0 };
    let handoff = |max_tokens| pb::RequestHandoffRequest {
        session_key: "budget".into(),
        from_agent: "a".into(),
        to_agent: "b".into(),
        r#type: pb::HandoffType::ContextTransfer as i32,
        max_tokens,
        ..Default::default()
    };
    for over in [MAX_TOKENS + 1, u32::MAX] {
        let err = ctx.get_context_window(window(over)).await.unwrap_err();
        assert_eq!((err.code(), violations(&err)), (Code::InvalidArgument, vec!["max_tokens".to_owned()]));
        let err = h.request_handoff(handoff(over)).await.unwrap_err();
        assert_eq!((err.code(), violations(&err)), (Code::InvalidArgument, vec!["max_tokens".to_owned()]));
    }
    let listed = h.list_handoffs(pb::ListHandoffsRequest::default()).await.unwrap().into_inner();
    assert!(listed.handoffs.is_empty(), "a refused handoff wrote nothing");
    let w = ctx.get_context_window(window(MAX_TOKENS)).await.unwrap().into_inner();
    assert_eq!(w.entries.len(), 1);
    let made = h.request_handoff(handoff(MAX_TOKENS)).await.unwrap().into_inner();
    assert_eq!(made.max_tokens, MAX_TOKENS);
    srv.shutdown().await;
}
