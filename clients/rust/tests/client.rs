//! baton-client against a real batond (in process, embedded store, loopback): every RPC, the
//! error mapping, retries that do not write twice, streams that survive restarts, deadlines.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use std::time::{Duration, Instant};

use baton_client::v1::{self, *};
use baton_client::{Client, Code, Error, RetryPolicy};
use common::{Proxy, Server, client, message, patient, text};
use futures::{Stream, StreamExt, TryStreamExt};

/// The next item of a stream, failing the test if none comes within 10 s.
async fn next<T>(stream: &mut (impl Stream<Item = Result<T, Error>> + Unpin)) -> T {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(e))) => panic!("stream failed: {e}"),
        Ok(None) => panic!("stream ended"),
        Err(_) => panic!("no item within 10 s"),
    }
}

async fn create(c: &Client, key: &str, agent: &str) -> Session {
    c.create_session(CreateSessionRequest { session_key: key.into(), agent: agent.into(), ..Default::default() })
        .await
        .expect("create session")
}

async fn append(c: &Client, key: &str, texts: &[&str]) -> AppendEntriesResponse {
    let entries = texts.iter().map(|t| message("planner", t)).collect();
    c.append_entries(AppendEntriesRequest { session_key: key.into(), entries, ..Default::default() })
        .await
        .expect("append")
}

async fn request_handoff(c: &Client, key: &str, to: &str) -> Handoff {
    c.request_handoff(RequestHandoffRequest {
        session_key: key.into(),
        from_agent: "planner".into(),
        to_agent: to.into(),
        r#type: HandoffType::ContextTransfer.into(),
        instructions: "take a look".into(),
        ..Default::default()
    })
    .await
    .expect("request handoff")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_once() {
    let server = Server::start().await;
    let c = Client::builder(format!("http://{}", server.target())).tenant("acme").connect().await.unwrap();

    // ContextService
    let s = create(&c, "s1", "planner").await;
    assert_eq!((s.session_key.as_str(), s.tenant.as_str(), s.owner.as_str()), ("s1", "acme", "planner"));
    assert_eq!(c.get_session(GetSessionRequest { session_key: "s1".into() }).await.unwrap().session_key, "s1");
    let listed = c.list_sessions(ListSessionsRequest { agent: "planner".into(), ..Default::default() }).await.unwrap();
    assert_eq!(listed.sessions.iter().map(|s| s.session_key.as_str()).collect::<Vec<_>>(), ["s1"]);
    let updated = c
        .update_session(UpdateSessionRequest {
            session_key: "s1".into(),
            status: SessionStatus::Dormant.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(updated.status(), SessionStatus::Dormant);

    let appended = append(&c, "s1", &["the cache TTL changed", "p99 doubled", "revert it"]).await;
    assert_eq!((appended.first_seq, appended.last_seq), (1, 3));
    assert!(!appended.entries[0].idempotency_key.is_empty(), "the client sets an idempotency key");
    let page = c
        .list_entries(ListEntriesRequest { session_key: "s1".into(), after_seq: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    let streamed: Vec<Entry> = c
        .stream_entries(StreamEntriesRequest { session_key: "s1".into(), ..Default::default() })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.iter().map(text).collect::<Vec<_>>(), ["the cache TTL changed", "p99 doubled", "revert it"]);
    let window =
        c.get_context_window(GetContextWindowRequest { session_key: "s1".into(), ..Default::default() }).await.unwrap();
    assert_eq!((window.last_seq, window.entries.len()), (3, 3));
    let hits = c
        .search_entries(SearchEntriesRequest {
            session_key: "s1".into(),
            query: "doubled".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(hits.hits.iter().map(|h| h.entry.as_ref().unwrap().seq).collect::<Vec<_>>(), [2]);

    // HandoffService
    let h1 = request_handoff(&c, "s1", "reviewer").await;
    assert_eq!((h1.status(), h1.up_to_seq), (HandoffStatus::Pending, 3));
    assert_eq!(
        c.get_handoff(GetHandoffRequest { handoff_id: h1.handoff_id.clone() }).await.unwrap().handoff_id,
        h1.handoff_id
    );
    let mut inbox =
        c.watch_handoffs(WatchHandoffsRequest { agent: "reviewer".into(), after_cursor: None }).await.unwrap();
    let created = next(&mut inbox).await;
    assert_eq!(
        (created.r#type(), created.handoff.unwrap().handoff_id),
        (HandoffEventType::Created, h1.handoff_id.clone())
    );
    let accepted = c
        .accept_handoff(AcceptHandoffRequest { handoff_id: h1.handoff_id.clone(), agent: "reviewer".into() })
        .await
        .unwrap();
    assert_eq!(accepted.status(), HandoffStatus::Accepted);
    assert_eq!(next(&mut inbox).await.r#type(), HandoffEventType::Accepted);
    let package: Vec<Entry> = c
        .stream_handoff_context(StreamHandoffContextRequest { handoff_id: h1.handoff_id.clone() })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(package[0].kind(), EntryKind::Summary);
    assert_eq!(package[1..].iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let completed = c
        .complete_handoff(CompleteHandoffRequest { handoff_id: h1.handoff_id.clone(), agent: "reviewer".into() })
        .await
        .unwrap();
    assert_eq!(completed.status(), HandoffStatus::Completed);

    let h2 = request_handoff(&c, "s1", "reviewer").await;
    let rejected = c
        .reject_handoff(RejectHandoffRequest {
            handoff_id: h2.handoff_id,
            agent: "reviewer".into(),
            reason: "busy".into(),
        })
        .await
        .unwrap();
    assert_eq!((rejected.status(), rejected.reason.as_str()), (HandoffStatus::Rejected, "busy"));
    let h3 = request_handoff(&c, "s1", "reviewer").await;
    let cancelled = c
        .cancel_handoff(CancelHandoffRequest {
            handoff_id: h3.handoff_id,
            agent: "planner".into(),
            reason: "done".into(),
        })
        .await
        .unwrap();
    assert_eq!(cancelled.status(), HandoffStatus::Cancelled);
    let handoffs =
        c.list_handoffs(ListHandoffsRequest { to_agent: "reviewer".into(), ..Default::default() }).await.unwrap();
    assert_eq!(handoffs.handoffs.len(), 3);

    let closed = c.close_session(CloseSessionRequest { session_key: "s1".into() }).await.unwrap();
    assert_eq!(closed.status(), SessionStatus::Closed);

    // The tenant header scopes every call: another tenant sees nothing.
    let other = Client::builder(server.target()).tenant("globex").connect().await.unwrap();
    let e = other.get_session(GetSessionRequest { session_key: "s1".into() }).await.unwrap_err();
    assert_eq!(e.code_name(), "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_code_message_and_field_violations() {
    let server = Server::start().await;
    let c = client(&server.target()).await;

    let e = c.get_session(GetSessionRequest { session_key: "missing".into() }).await.unwrap_err();
    assert_eq!((e.code(), e.code_name()), (Code::NotFound, "NOT_FOUND"));
    assert!(e.message().contains("missing"), "{e}");
    assert!(e.to_string().starts_with("NOT_FOUND: "), "{e}");
    assert!(matches!(e, Error::Status { .. }));
    let e = c
        .get_handoff(GetHandoffRequest { handoff_id: "0192f3a0-0000-7000-8000-000000000000".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "NOT_FOUND");
    let e = c
        .stream_entries(StreamEntriesRequest { session_key: "missing".into(), ..Default::default() })
        .await
        .err()
        .unwrap();
    assert_eq!(e.code_name(), "NOT_FOUND");

    let e = c
        .create_session(CreateSessionRequest { session_key: "bad key!".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "INVALID_ARGUMENT");
    let fields: Vec<&str> = e.field_violations().iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["session_key", "agent"], "{e:?}");
    assert!(e.field_violations().iter().all(|(_, d)| !d.is_empty()));

    create(&c, "s1", "planner").await;
    let bad_entry = NewEntry { author: "planner".into(), ..Default::default() };
    let e = c
        .append_entries(AppendEntriesRequest {
            session_key: "s1".into(),
            entries: vec![bad_entry],
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields: Vec<&str> = e.field_violations().iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["entries[0].kind", "entries[0].content"], "{e:?}");

    let e = c
        .create_session(CreateSessionRequest {
            session_key: "s1".into(),
            agent: "planner".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "ALREADY_EXISTS");
    let e = c
        .append_entries(AppendEntriesRequest {
            session_key: "s1".into(),
            entries: vec![message("planner", "late")],
            expected_last_seq: Some(7),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "FAILED_PRECONDITION");
    assert!(e.field_violations().is_empty());
}

/// Runs `call` while the proxy swallows the server's answers; once `arrived` (asked directly)
/// says the server did the work, cuts the connection and returns what the call ended with.
async fn lose_the_answer<T: Send + 'static>(
    proxy: &Proxy,
    call: impl Future<Output = T> + Send + 'static,
    arrived: impl AsyncFn() -> bool,
) -> T {
    proxy.swallow_answers(true);
    let pending = tokio::spawn(call);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !arrived().await {
        assert!(Instant::now() < deadline, "the call never reached the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.swallow_answers(false);
    proxy.cut();
    tokio::time::timeout(Duration::from_secs(10), pending).await.expect("the call finished").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_retried_after_a_lost_answer_is_stored_once() {
    let server = Server::start().await;
    let direct = client(&server.target()).await;
    let proxy = Proxy::start(server.addr).await;
    let via_proxy = client(&proxy.target()).await;
    create(&via_proxy, "s1", "planner").await;
    let connections = proxy.accepted();

    // The server commits the append but the answer is lost with the connection: the client
    // sends it again over a new one, with the same idempotency key.
    let call = async move { append(&via_proxy, "s1", &["only once"]).await };
    let arrived =
        async || direct.get_session(GetSessionRequest { session_key: "s1".into() }).await.unwrap().last_seq > 0;
    let response = lose_the_answer(&proxy, call, arrived).await;

    assert!(proxy.accepted() > connections, "the retry went over a new connection");
    assert_eq!((response.first_seq, response.last_seq), (1, 1));
    let stored =
        direct.list_entries(ListEntriesRequest { session_key: "s1".into(), ..Default::default() }).await.unwrap();
    assert_eq!(stored.entries.len(), 1, "the retried append was stored twice");
    assert_eq!(text(&stored.entries[0]), "only once");
    assert_eq!(stored.entries[0].idempotency_key, response.entries[0].idempotency_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_transitions_retried_after_lost_answers_happen_once() {
    let server = Server::start().await;
    let direct = client(&server.target()).await;
    let proxy = Proxy::start(server.addr).await;
    let via_proxy = client(&proxy.target()).await;
    let sessions = async || direct.list_sessions(ListSessionsRequest::default()).await.unwrap().sessions;

    let c = via_proxy.clone();
    let call =
        async move { c.create_session(CreateSessionRequest { agent: "planner".into(), ..Default::default() }).await };
    let s = lose_the_answer(&proxy, call, async || !sessions().await.is_empty()).await.expect("create retried");
    append(&direct, &s.session_key, &["context"]).await;

    let c = via_proxy.clone();
    let source = s.session_key.clone();
    let call = async move {
        c.fork_session(ForkSessionRequest { session_key: source, agent: "reviewer".into(), ..Default::default() }).await
    };
    let fork = lose_the_answer(&proxy, call, async || sessions().await.len() == 2).await.expect("fork retried");
    assert_eq!(
        (fork.forked_from.as_ref().map(|f| f.session_key.as_str()), fork.last_seq),
        (Some(s.session_key.as_str()), 1)
    );

    let c = via_proxy.clone();
    let key = s.session_key.clone();
    let call = async move { Ok::<_, Error>(request_handoff(&c, &key, "reviewer").await) };
    let list = ListHandoffsRequest { session_key: s.session_key.clone(), ..Default::default() };
    let handoffs = async || direct.list_handoffs(list.clone()).await.unwrap().handoffs;
    let h = lose_the_answer(&proxy, call, async || !handoffs().await.is_empty()).await.unwrap();

    let c = via_proxy.clone();
    let id = h.handoff_id.clone();
    let call = async move { c.accept_handoff(AcceptHandoffRequest { handoff_id: id, agent: "reviewer".into() }).await };
    let get = GetHandoffRequest { handoff_id: h.handoff_id.clone() };
    let accepted = async || direct.get_handoff(get.clone()).await.unwrap().status() == HandoffStatus::Accepted;
    let a = lose_the_answer(&proxy, call, accepted).await.expect("accept retried");
    assert_eq!(a.status(), HandoffStatus::Accepted);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut keys: Vec<String> = sessions().await.into_iter().map(|s| s.session_key).collect();
    keys.sort();
    let mut want = vec![s.session_key.clone(), fork.session_key.clone()];
    want.sort();
    assert_eq!(keys, want, "one session and one fork");
    let ids: Vec<String> = handoffs().await.into_iter().map(|h| h.handoff_id).collect();
    assert_eq!(ids, std::slice::from_ref(&h.handoff_id), "one handoff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_repeat_is_not_retried_after_a_lost_answer() {
    let server = Server::start().await;
    let direct = client(&server.target()).await;
    let proxy = Proxy::start(server.addr).await;
    let via_proxy = client(&proxy.target()).await;
    create(&via_proxy, "s1", "planner").await;

    let call = async move { via_proxy.close_session(CloseSessionRequest { session_key: "s1".into() }).await };
    let get = GetSessionRequest { session_key: "s1".into() };
    let arrived = async || direct.get_session(get.clone()).await.unwrap().status() == SessionStatus::Closed;
    let e = lose_the_answer(&proxy, call, arrived).await.unwrap_err();

    // Not retried: the caller learns the connection broke, and reads to find out.
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(e.code_name(), "UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_stream_survives_a_server_restart() {
    let mut server = Server::start().await;
    let c = client(&server.target()).await;
    create(&c, "s1", "planner").await;
    let mut stream = c
        .stream_entries(StreamEntriesRequest { session_key: "s1".into(), follow: true, ..Default::default() })
        .await
        .unwrap();

    for i in 1..=5 {
        append(&c, "s1", &[&format!("entry {i}")]).await;
    }
    let mut seen = Vec::new();
    for _ in 1..=5 {
        seen.push(next(&mut stream).await);
    }
    server.restart().await;
    for i in 6..=10 {
        append(&c, "s1", &[&format!("entry {i}")]).await;
    }
    for _ in 6..=10 {
        seen.push(next(&mut stream).await);
    }
    // A second restart while idle, then one more entry: no duplicate arrives before it.
    server.restart().await;
    append(&c, "s1", &["entry 11"]).await;
    seen.push(next(&mut stream).await);

    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=11).collect::<Vec<u64>>());
    let texts: Vec<String> = seen.iter().map(|e| text(e).to_owned()).collect();
    assert_eq!(texts, (1..=11).map(|i| format!("entry {i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_a_limit_keeps_it_across_restarts() {
    let mut server = Server::start().await;
    let c = client(&server.target()).await;
    create(&c, "s1", "planner").await;
    append(&c, "s1", &["a", "b"]).await;
    let mut stream = c
        .stream_entries(StreamEntriesRequest { session_key: "s1".into(), follow: true, max_entries: 4, after_seq: 0 })
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.seq, 1);
    assert_eq!(next(&mut stream).await.seq, 2);
    server.restart().await;
    append(&c, "s1", &["c", "d", "e"]).await;
    let rest: Vec<u64> = tokio::time::timeout(Duration::from_secs(10), stream.map_ok(|e| e.seq).try_collect())
        .await
        .expect("stream ended")
        .unwrap();
    assert_eq!(rest, [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_handoffs_resumes_by_cursor_after_a_restart() {
    let mut server = Server::start().await;
    let c = client(&server.target()).await;
    create(&c, "s1", "planner").await;
    append(&c, "s1", &["context"]).await;
    let mut inbox =
        c.watch_handoffs(WatchHandoffsRequest { agent: "reviewer".into(), after_cursor: None }).await.unwrap();

    let h1 = request_handoff(&c, "s1", "reviewer").await;
    let mut events = vec![next(&mut inbox).await];
    server.restart().await;
    let h2 = request_handoff(&c, "s1", "reviewer").await;
    c.accept_handoff(AcceptHandoffRequest { handoff_id: h1.handoff_id.clone(), agent: "reviewer".into() })
        .await
        .unwrap();
    c.cancel_handoff(CancelHandoffRequest {
        handoff_id: h2.handoff_id.clone(),
        agent: "planner".into(),
        reason: String::new(),
    })
    .await
    .unwrap();
    for _ in 0..3 {
        events.push(next(&mut inbox).await);
    }
    server.restart().await;
    let h3 = request_handoff(&c, "s1", "reviewer").await;
    events.push(next(&mut inbox).await);

    let seen: Vec<(u64, HandoffEventType, String)> =
        events.iter().map(|e| (e.cursor, e.r#type(), e.handoff.as_ref().unwrap().handoff_id.clone())).collect();
    use HandoffEventType::*;
    let expected = vec![
        (1, Created, h1.handoff_id.clone()),
        (2, Created, h2.handoff_id.clone()),
        (3, Accepted, h1.handoff_id),
        (4, Cancelled, h2.handoff_id),
        (5, Created, h3.handoff_id),
    ];
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_retried_until_the_server_is_back() {
    let mut server = Server::start().await;
    let c = client(&server.target()).await;
    create(&c, "s1", "planner").await;
    server.stop().await;
    // A write the server cannot have run (no connection) is retried too.
    let restarted = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.restart().await;
        server
    });
    let started = Instant::now();
    let s = create(&c, "s2", "planner").await;
    assert_eq!(s.session_key, "s2");
    assert!(started.elapsed() >= Duration::from_millis(300), "answered while the server was down?");
    let mut server = restarted.await.unwrap();

    // Without retries the same outage is an error at once.
    let once = Client::builder(server.target()).retry(RetryPolicy::none()).connect().await.unwrap();
    server.stop().await;
    let e = once.get_session(GetSessionRequest { session_key: "s1".into() }).await.unwrap_err();
    assert_eq!(e.code_name(), "UNAVAILABLE", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_with_deadline_exceeded_when_no_answer_comes() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let c = Client::builder(proxy.target())
        .tenant("acme")
        .timeout(Duration::from_secs(1))
        .retry(patient())
        .connect()
        .await
        .unwrap();
    create(&c, "s1", "planner").await;

    proxy.swallow_answers(true);
    let started = Instant::now();
    let e = c.get_session(GetSessionRequest { session_key: "s1".into() }).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code_name(), "DEADLINE_EXCEEDED", "{e:?}");
    assert!(took >= Duration::from_millis(990) && took < Duration::from_secs(4), "took {took:?}");

    // A per-client deadline overrides the default.
    let started = Instant::now();
    let e = c.with_timeout(Duration::from_millis(150)).list_sessions(ListSessionsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());

    // Once answers flow again, the same client works.
    proxy.swallow_answers(false);
    proxy.cut();
    let s = c
        .with_timeout(Duration::from_secs(5))
        .get_session(GetSessionRequest { session_key: "s1".into() })
        .await
        .unwrap();
    assert_eq!(s.session_key, "s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_runs() {
    let server = Server::start().await;
    let outcome = quickstart::run(&server.target()).await.expect("quickstart");
    assert_eq!(outcome.followed, [1, 2, 3]);
    assert_eq!(outcome.context[0].kind(), v1::EntryKind::Summary);
    assert_eq!(outcome.context[1..].iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(outcome.handoff.status(), v1::HandoffStatus::Completed);
    let c = Client::builder(server.target()).tenant("quickstart").connect().await.unwrap();
    let s = c.get_session(GetSessionRequest { session_key: outcome.session_key }).await.unwrap();
    assert_eq!((s.owner.as_str(), s.last_seq), ("reviewer", 4));
}
