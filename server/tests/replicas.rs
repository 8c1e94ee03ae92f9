//! PostgreSQL read replicas (`DATABASE_READ_URL`) with real streaming replicas: a private
//! primary (`common/procs.rs`) and hot standbys made from it with `pg_basebackup` over
//! loopback, served by a real `batond`. A replica's answer carries the log position it had
//! replayed (`baton-lsn`), a primary's read none: that is how the tests see where a read went.
//!
//! - A replica held back (`recovery_min_apply_delay`: it never applies anything written after
//!   it was made) with a seeded session: reads without a position get its stale copy (windows,
//!   full list pages, searches, session lists); a caller that sends back the position its write
//!   was answered with (`baton-min-lsn`) reads its own writes from the primary, and baton-client
//!   does that by itself; a page that is not full, or a session the replica lacks, is read
//!   again from the primary; a bad position is INVALID_ARGUMENT; a dead replica fails no read.
//! - With a lag bound, the held-back replica is skipped once it is behind by more than it.
//! - A live replica serves reads, a writer that sends its position back always reads its own
//!   appends, and a stream replays every entry once, in order, switching from the replica's
//!   pages to the primary's tail and then to live appends.

mod common;

use std::time::{Duration, Instant};

use baton_client::v1 as pb;
use baton_proto::v1::context_service_client::ContextServiceClient;
use common::procs::{Batond, PgCluster};
use futures::StreamExt;
use tonic::transport::Channel;

/// A replica that applies nothing written after it was made (within any test's time).
const HELD_BACK: &str = "recovery_min_apply_delay = '1h'";
/// The session written before the replica is made, with this many entries.
const SEEDED: &str = "seeded";
const SEEDED_ENTRIES: u64 = 150;

struct Setup {
    primary: PgCluster,
    replica: PgCluster,
    batond: Batond,
    key: String,
}

/// A primary with Baton's schema, a key and the session [`SEEDED`], a replica made from it
/// with `replica_conf`, and a `batond` reading from the replica, skipping it when it lags by
/// more than `max_lag_ms`.
async fn setup(replica_conf: &str, max_lag_ms: u64) -> Setup {
    let primary = PgCluster::start().await;
    let env = Batond::postgres_env(&primary.serving_url(), &primary.owner_url());
    let key = Batond::create_key(&env, &baton_testkit::tenant(), "writer");
    {
        let seeder = Batond::start(env.clone(), &[]).await;
        let mut c = stub(&seeder).await;
        c.create_session(request(&key, create(SEEDED), None)).await.expect("create");
        let bodies: Vec<String> = (1..=SEEDED_ENTRIES).map(|i| format!("old entry {i}")).collect();
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        c.append_entries(request(&key, append(SEEDED, &bodies), None)).await.expect("seed");
    }
    let replica = primary.standby(replica_conf);
    let mut env = env;
    env.push(("DATABASE_READ_URL".into(), replica.serving_url()));
    let lag = max_lag_ms.to_string();
    let batond = Batond::start(env, &["--read-replica-max-lag-ms", &lag]).await;
    // The replica is read from once its first probe found it in recovery.
    tokio::time::sleep(Duration::from_millis(600)).await;
    Setup { primary, replica, batond, key }
}

/// A raw stub, so the test sees and sets the position headers itself.
async fn stub(batond: &Batond) -> ContextServiceClient<Channel> {
    ContextServiceClient::connect(batond.endpoint()).await.expect("connect to batond")
}

/// A request with the key and, when given, the position the reads must reflect.
fn request<T>(key: &str, message: T, min_lsn: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    if let Some(lsn) = min_lsn {
        r.metadata_mut().insert("baton-min-lsn", lsn.parse().unwrap());
    }
    r
}

/// The position a response carries (a write's, or a replica read's), if any.
fn position<T>(response: &tonic::Response<T>) -> Option<String> {
    response.metadata().get("baton-lsn").map(|v| v.to_str().unwrap().to_owned())
}

fn text(author: &str, body: &str) -> pb::NewEntry {
    pb::NewEntry {
        kind: pb::EntryKind::Message.into(),
        role: "user".into(),
        author: author.into(),
        content: Some(pb::new_entry::Content::Text(body.into())),
        ..Default::default()
    }
}

fn create(session: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest { session_key: session.into(), agent: "writer".into(), ..Default::default() }
}

fn list(session: &str) -> pb::ListEntriesRequest {
    pb::ListEntriesRequest { session_key: session.into(), ..Default::default() }
}

fn append(session: &str, bodies: &[&str]) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        session_key: session.into(),
        entries: bodies.iter().map(|b| text("writer", b)).collect(),
        ..Default::default()
    }
}

fn window(session: &str) -> pb::GetContextWindowRequest {
    pb::GetContextWindowRequest { session_key: session.into(), max_entries: 1000, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_read_their_writes_past_a_replica_that_is_behind() {
    let Setup { primary: _primary, replica, batond, key } = setup(HELD_BACK, 3_600_000).await;
    let mut c = stub(&batond).await;

    let appended = c.append_entries(request(&key, append(SEEDED, &["fresh one", "fresh two", "fresh three"]), None));
    let t1 = position(&appended.await.expect("append")).expect("a write answers with its log position (baton-lsn)");
    assert_eq!(t1.len(), 16, "{t1:?}");

    // Without a position: the replica's copy, from before the append.
    let stale = c.get_context_window(request(&key, window(SEEDED), None)).await.expect("window");
    assert!(position(&stale).is_some(), "the replica served it");
    assert_eq!(stale.get_ref().last_seq, SEEDED_ENTRIES);
    // With it: the primary, which has the append.
    let fresh = c.get_context_window(request(&key, window(SEEDED), Some(&t1))).await.expect("window");
    assert_eq!(position(&fresh), None, "the primary served it");
    assert_eq!(fresh.get_ref().last_seq, SEEDED_ENTRIES + 3);

    // A full page may come from the replica; one that is not full comes from the primary.
    let full = c.list_entries(request(&key, list(SEEDED), None)).await.expect("list");
    assert!(position(&full).is_some(), "the replica served the full page");
    assert_eq!(full.get_ref().entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
    let tail = pb::ListEntriesRequest { session_key: SEEDED.into(), after_seq: Some(100), ..Default::default() };
    let tail = c.list_entries(request(&key, tail, None)).await.expect("list the tail");
    assert_eq!(position(&tail), None, "the primary served the last page");
    assert_eq!(tail.get_ref().entries.last().map(|e| e.seq), Some(SEEDED_ENTRIES + 3));

    let search = |min| {
        let q = pb::SearchEntriesRequest { session_key: SEEDED.into(), query: "fresh".into(), ..Default::default() };
        request(&key, q, min)
    };
    let blind = c.search_entries(search(None)).await.expect("search");
    assert!(position(&blind).is_some() && blind.get_ref().hits.is_empty(), "{blind:?}");
    assert_eq!(c.search_entries(search(Some(&t1))).await.expect("search").get_ref().hits.len(), 3);

    // A session the replica does not have yet is read from the primary, with or without.
    let created = c.create_session(request(&key, create("new"), None)).await.expect("create");
    let t2 = position(&created).expect("position");
    assert!(t2 > t1, "positions grow: {t1} then {t2}");
    let page = c.list_entries(request(&key, list("new"), None)).await.expect("the primary has it");
    assert_eq!(position(&page), None);
    let sessions = |min| request(&key, pb::ListSessionsRequest::default(), min);
    let blind = c.list_sessions(sessions(None)).await.expect("list sessions on the replica");
    assert!(position(&blind).is_some(), "the replica served it");
    assert!(blind.get_ref().sessions.iter().all(|s| s.session_key != "new"), "the replica is behind");
    let listed = c.list_sessions(sessions(Some(&t2))).await.expect("list sessions").into_inner().sessions;
    assert!(listed.iter().any(|s| s.session_key == "new"));

    for bad in ["xyz", "0/16B3748", "00000000000000001"] {
        let refused = c.list_entries(request(&key, list(SEEDED), Some(bad))).await.expect_err(bad);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{bad}: {refused:?}");
        assert!(refused.message().contains("baton-min-lsn"), "{refused:?}");
    }

    // baton-client sends its position back by itself: its reads see its writes.
    let client = baton_client::Client::builder(batond.endpoint()).api_key(&key).connect().await.expect("client");
    assert_eq!(client.log_position(), None);
    client.append_entries(append(SEEDED, &["from the client"])).await.expect("append");
    assert!(client.log_position().is_some());
    let w = client.get_context_window(window(SEEDED)).await.expect("window");
    assert_eq!(w.last_seq, SEEDED_ENTRIES + 4, "the client reads its own write");
    let w = client.clone().get_context_window(window(SEEDED)).await.expect("window");
    assert_eq!(w.last_seq, SEEDED_ENTRIES + 4, "clones share the position");
    let other = baton_client::Client::builder(batond.endpoint()).api_key(&key).connect().await.expect("client");
    let w = other.get_context_window(window(SEEDED)).await.expect("window");
    assert_eq!(w.last_seq, SEEDED_ENTRIES, "a client that wrote nothing reads the replica");

    // A dead replica fails no read: it goes to the primary.
    replica.stop("immediate");
    let started = Instant::now();
    let w = c.get_context_window(request(&key, window(SEEDED), None)).await.expect("window with the replica down");
    assert_eq!(w.get_ref().last_seq, SEEDED_ENTRIES + 4);
    eprintln!("first read after the replica died: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = c.list_sessions(sessions(None)).await.expect("list with the replica down");
    assert_eq!(position(&page), None, "the primary served it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_skipped() {
    let Setup { primary: _primary, replica: _replica, batond, key } = setup(HELD_BACK, 300).await;
    let mut c = stub(&batond).await;
    c.append_entries(request(&key, append(SEEDED, &["x"]), None)).await.expect("append");
    // Once the primary's position of 300 ms ago is past what the replica replayed, reads
    // without a position go to the primary.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let w = c.get_context_window(request(&key, window(SEEDED), None)).await.expect("window");
        if position(&w).is_none() {
            assert_eq!(w.get_ref().last_seq, SEEDED_ENTRIES + 1);
            break;
        }
        assert_eq!(w.get_ref().last_seq, SEEDED_ENTRIES, "the replica is held back");
        assert!(Instant::now() < deadline, "the lagging replica was still read after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(batond.log().contains("read replica lagging"), "{}", batond.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_replica_serves_reads_and_writers_always_see_their_appends() {
    let Setup { primary: _primary, replica: _replica, batond, key } = setup("", 5_000).await;
    let mut c = stub(&batond).await;
    let created = c.create_session(request(&key, create("live"), None)).await.expect("create");
    let mut token = position(&created).expect("position");
    let (mut from_replica, rounds) = (0, 200);
    for i in 1..=rounds {
        let body = format!("entry {i}");
        let appended = c.append_entries(request(&key, append("live", &[&body]), Some(&token))).await.expect("append");
        token = token.max(position(&appended).expect("position"));
        let after = pb::ListEntriesRequest { session_key: "live".into(), after_seq: Some(i - 1), ..Default::default() };
        let page = c.list_entries(request(&key, after, Some(&token))).await.expect("list");
        if let Some(p) = position(&page) {
            from_replica += 1;
            token = token.max(p);
        }
        let page = page.into_inner().entries;
        assert_eq!(page.first().map(|e| e.seq), Some(i), "round {i}: the writer's own append is missing");
    }
    eprintln!("{from_replica} of {rounds} read-after-write pages came from the replica");

    // Caught up: the replica serves reads (its answers carry its position).
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = c.list_entries(request(&key, list("live"), Some(&token))).await.expect("list");
        if position(&page).is_some() {
            break page.into_inner();
        }
        assert!(Instant::now() < deadline, "the replica never served a read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page.entries.len(), 100, "a full page");

    // A stream: the replica's full pages, then the primary's tail, then live appends.
    let stream = pb::StreamEntriesRequest { session_key: "live".into(), follow: true, ..Default::default() };
    let mut stream = c.stream_entries(request(&key, stream, None)).await.expect("stream").into_inner();
    c.append_entries(request(&key, append("live", &["live one"]), None)).await.expect("append");
    let mut seqs = Vec::new();
    while seqs.len() < rounds as usize + 1 {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("stream stalled");
        seqs.push(next.expect("stream ended").expect("entry").seq);
    }
    assert_eq!(seqs, (1..=rounds + 1).collect::<Vec<_>>());
}
