//! The Redis cache and bus with real Redis and real PostgreSQL: several `batond` replicas on
//! one database and one Redis behave as one service, and Redis going away loses nothing.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use baton_proto::v1 as pb;
use common::*;
use futures::StreamExt;

/// Two replicas on the test database and a private Redis, sharing one tenant; `None` when
/// PostgreSQL or redis-server is missing and BATON_REQUIRE_SERVICES=0 (else that fails).
async fn replicas() -> Option<(RedisServer, TestServer, TestServer)> {
    postgres_url()?;
    let redis = RedisServer::start().await?;
    let (a, b) = replicas_on(&redis.url()).await;
    Some((redis, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_on_b_sees_every_append_through_a_and_b() {
    let Some((_redis, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut ctx_b = b.context().await;
    create_session(&mut ctx_a, "two", "w").await;
    let mut follower = ctx_b
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "two".into(),
            after_seq: 0,
            follow: true,
            max_entries: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut writers = Vec::new();
    for (w, ctx) in [ctx_a.clone(), ctx_b.clone(), ctx_a.clone(), ctx_b.clone()].into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            let mut ctx = ctx;
            for i in 0..40 {
                append(&mut ctx, "two", vec![message(&format!("w{w}"), &format!("{i}"))]).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for expected in 1..=160u64 {
        let e = tokio::time::timeout(Duration::from_secs(20), follower.next())
            .await
            .expect("follower stalled")
            .expect("stream ended")
            .expect("stream error");
        assert_eq!(e.seq, expected);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_b_see_an_append_on_a_at_once() {
    let Some((_redis, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut ctx_b = b.context().await;
    create_session(&mut ctx_a, "rw", "w").await;
    for i in 1..=30u64 {
        // Warm B's caches, so a stale copy would be there to serve.
        let before = ctx_b
            .get_context_window(pb::GetContextWindowRequest { session_key: "rw".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(before.last_seq, i - 1);
        append(&mut ctx_a, "rw", vec![message("w", &format!("entry {i}"))]).await;
        let window = ctx_b
            .get_context_window(pb::GetContextWindowRequest { session_key: "rw".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(window.last_seq, i, "no stale read");
        assert_eq!(window.entries.last().unwrap().seq, i);
        assert_eq!(window.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=i).collect::<Vec<_>>(), "no gap");
        let s = ctx_b.get_session(pb::GetSessionRequest { session_key: "rw".into() }).await.unwrap().into_inner();
        assert_eq!(s.last_seq, i);
        let tail = ctx_b
            .list_entries(pb::ListEntriesRequest {
                session_key: "rw".into(),
                after_seq: Some(i - 1),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(tail.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [i]);
    }
    // A close on A is seen on B at once too.
    ctx_a.close_session(pb::CloseSessionRequest { session_key: "rw".into() }).await.unwrap();
    let s = ctx_b.get_session(pb::GetSessionRequest { session_key: "rw".into() }).await.unwrap().into_inner();
    assert_eq!(s.status(), pb::SessionStatus::Closed);
    assert!(
        stats(&b).redis_hits.load(Ordering::Relaxed) + stats(&b).l1_hits.load(Ordering::Relaxed) > 0,
        "the cache served reads"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_round_trip_per_append_and_per_hot_read() {
    let Some((redis, a, b)) = replicas().await else { return };
    b.shutdown().await;
    let mut ctx = a.context().await;
    create_session(&mut ctx, "rt", "w").await;
    append(&mut ctx, "rt", vec![message("w", "warm")]).await;
    let read = |ctx: &mut Context| {
        let mut ctx = ctx.clone();
        async move {
            ctx.get_context_window(pb::GetContextWindowRequest { session_key: "rt".into(), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
        }
    };
    read(&mut ctx).await; // warm L1
    let trips = || stats(&a).redis_round_trips.load(Ordering::Relaxed);

    let (t0, e0) = (trips(), redis.calls("evalsha").await);
    append(&mut ctx, "rt", vec![message("w", "one"), message("w", "two")]).await;
    assert_eq!((trips() - t0, redis.calls("evalsha").await - e0), (1, 1), "an append is one EVALSHA");

    let (t0, e0, hits0) = (trips(), redis.calls("evalsha").await, stats(&a).l1_hits.load(Ordering::Relaxed));
    let w = read(&mut ctx).await;
    assert_eq!(w.last_seq, 3);
    assert_eq!((trips() - t0, redis.calls("evalsha").await - e0), (1, 1), "a hot read is one EVALSHA");
    assert_eq!(stats(&a).l1_hits.load(Ordering::Relaxed) - hits0, 1, "served from L1 after Redis confirmed it");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_loses_nothing_and_the_cache_heals() {
    init_test_logging();
    let Some((mut redis, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut ctx_b = b.context().await;
    create_session(&mut ctx_a, "down", "w").await;
    let mut follower = ctx_b
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "down".into(),
            after_seq: 0,
            follow: true,
            max_entries: 0,
        })
        .await
        .unwrap()
        .into_inner();

    // Writers keep appending through A while Redis dies and comes back.
    let writer = {
        let mut ctx = ctx_a.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..150 {
                let r = append(&mut ctx, "down", vec![message("w", &format!("{i}"))]).await; // panics on any error
                acked.push(r.first_seq);
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    redis.kill();
    // Reads keep working too, from PostgreSQL.
    for _ in 0..5 {
        ctx_b
            .get_context_window(pb::GetContextWindowRequest { session_key: "down".into(), ..Default::default() })
            .await
            .unwrap();
    }
    let acked = writer.await.unwrap();
    let mut sorted = acked.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=150).collect::<Vec<_>>(), "every append was acknowledged, seqs gap-free");

    // The follower on B keeps receiving through the store while the bus is down.
    for expected in 1..=150u64 {
        let e = tokio::time::timeout(Duration::from_secs(20), follower.next())
            .await
            .expect("follower stalled")
            .unwrap()
            .unwrap();
        assert_eq!(e.seq, expected);
    }
    assert!(stats(&a).redis_errors.load(Ordering::Relaxed) > 0, "the outage was counted");

    redis.restart().await;
    wait_for_bus(&a).await;
    wait_for_bus(&b).await;
    // After the restart the cache fills again: the first read repairs, later ones hit.
    let hits = |s: &TestServer| stats(s).redis_hits.load(Ordering::Relaxed) + stats(s).l1_hits.load(Ordering::Relaxed);
    let before = hits(&b);
    let mut healed = false;
    for _ in 0..100 {
        let w = ctx_b
            .get_context_window(pb::GetContextWindowRequest { session_key: "down".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(w.last_seq, 150);
        if hits(&b) > before + 2 {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healed, "cache hits resume after Redis returns");
    // Appends after the restart flow to B's follower over the bus again.
    append(&mut ctx_a, "down", vec![message("w", "after")]).await;
    let e = tokio::time::timeout(Duration::from_secs(20), follower.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(e.seq, 151);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handoff_events_cross_replicas() {
    let Some((_redis, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut h_a = a.handoffs().await;
    let mut h_b = b.handoffs().await;
    create_session(&mut ctx_a, "ho", "alice").await;
    let mut inbox = h_b
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "bob".into(), after_cursor: None })
        .await
        .unwrap()
        .into_inner();
    let ho = h_a
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "ho".into(),
            from_agent: "alice".into(),
            to_agent: "bob".into(),
            r#type: pb::HandoffType::FullHandoff.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let created = tokio::time::timeout(Duration::from_secs(10), inbox.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((created.r#type(), created.cursor), (pb::HandoffEventType::Created, 1));
    h_b.accept_handoff(pb::AcceptHandoffRequest { handoff_id: ho.handoff_id.clone(), agent: "bob".into() })
        .await
        .unwrap();
    // A's cached handoff and session reflect B's change.
    let got = h_a.get_handoff(pb::GetHandoffRequest { handoff_id: ho.handoff_id }).await.unwrap().into_inner();
    assert_eq!(got.status(), pb::HandoffStatus::Accepted);
    let s = ctx_a.get_session(pb::GetSessionRequest { session_key: "ho".into() }).await.unwrap().into_inner();
    assert_eq!(s.owner, "bob");
    a.shutdown().await;
    b.shutdown().await;
}

/// Windows served from the cache send the entries' kept encodings: every path (the store, a
/// Redis hit, an L1 hit, an L1 copy extended by an append, another replica's bus) gives the
/// window a server without a cache reads from the store, field for field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_windows_are_the_windows_the_store_reads() {
    init_test_logging();
    let Some((_redis, a, b)) = replicas().await else { return };
    let mut plain = start_server(Backend::Postgres).await;
    plain.tenant = a.tenant.clone();
    plain.key = a.key.clone();
    let (mut ctx_a, ctx_b, ctx_plain) = (a.context().await, b.context().await, plain.context().await);
    create_session(&mut ctx_a, "enc", "w").await;
    let mut meta = prost_types::Struct::default();
    meta.fields.insert("tool".into(), prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(2.5)) });
    let with_meta = pb::NewEntry { metadata: Some(meta), media_type: "text/markdown".into(), ..message("w", "**hi**") };
    let binary = pb::NewEntry {
        kind: pb::EntryKind::ToolResult.into(),
        author: "tool".into(),
        media_type: "application/octet-stream".into(),
        content: Some(pb::new_entry::Content::Data(vec![0, 159, 146, 150, 255])),
        ..Default::default()
    };
    append(&mut ctx_a, "enc", vec![message("w", "before the summary"), with_meta.clone()]).await;
    append(&mut ctx_a, "enc", vec![text(pb::EntryKind::Summary, "w", "so far: hello")]).await;
    append(&mut ctx_a, "enc", vec![binary, with_meta, message("w", "ünïcödé ✓")]).await;
    ctx_a
        .redact_entries(pb::RedactEntriesRequest {
            session_key: "enc".into(),
            seqs: vec![5],
            reason: "test".into(),
            agent: "w".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    append(&mut ctx_a, "enc", vec![message("w", "after the redaction")]).await;

    let requests = [(0, 0), (0, 2), (12, 0), (1_000, 3)].map(|(max_tokens, max_entries)| pb::GetContextWindowRequest {
        session_key: "enc".into(),
        max_tokens,
        max_entries,
    });
    let reader = ctx_a.clone();
    let check = |label: &'static str| {
        let (mut ctx_a, mut ctx_b, mut ctx_plain) = (reader.clone(), ctx_b.clone(), ctx_plain.clone());
        let requests = requests.clone();
        async move {
            for req in requests {
                let want = ctx_plain.get_context_window(req.clone()).await.unwrap().into_inner();
                assert!(want.summary.is_some(), "{label}: a window with its summary");
                if req.max_tokens == 0 {
                    assert!(!want.entries.is_empty(), "{label}: a window with entries");
                }
                // Three reads each: a miss or Redis hit, then L1 hits.
                for _ in 0..3 {
                    let got = ctx_a.get_context_window(req.clone()).await.unwrap().into_inner();
                    assert_eq!(got, want, "{label}: replica a, {req:?}");
                    let got = ctx_b.get_context_window(req.clone()).await.unwrap().into_inner();
                    assert_eq!(got, want, "{label}: replica b, {req:?}");
                }
            }
        }
    };
    check("after the redaction").await;
    let hits = stats(&a).l1_hits.load(Ordering::Relaxed);
    assert!(hits > 0, "a's L1 served windows");
    // An append after the redaction dropped the session's keys is an ordinary miss in Redis,
    // not a script error that would take the cache out for everyone.
    assert_eq!(stats(&a).redis_errors.load(Ordering::Relaxed), 0);
    // a's L1 copy is extended by its own append; b hears it on the bus.
    append(&mut ctx_a, "enc", vec![message("w", "extends the L1 copy")]).await;
    check("after an append").await;
    assert!(stats(&a).l1_hits.load(Ordering::Relaxed) > hits);
    a.shutdown().await;
    b.shutdown().await;
    plain.shutdown().await;
}

/// Two deployments on different databases behind one Redis (or a database made anew behind
/// the Redis its predecessor used) never meet there, though their tenant and session keys are
/// the same: each reads its own entries, from its own cache, and its followers hear only its
/// own appends. (The cache's keys and channels carry the database's identity.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployments_on_other_databases_share_a_redis_without_meeting() {
    let Some(redis) = RedisServer::start().await else { return };
    let Some(db) = common::fresh::FreshDb::create("baton_instance").await else { return };
    const TIMEOUT: Duration = Duration::from_secs(5);
    use baton_server::store::postgres::PgStore;
    PgStore::connect(&db.url, 1, TIMEOUT).await.unwrap().migrate().await.expect("migrate");
    let store = PgStore::connect(&db.app_url, 4, TIMEOUT).await.expect("connect as the serving role");
    let a = start_server_with(Backend::Postgres, |c| c.redis_url = Some(redis.url())).await;
    let mut b = start_server_on(std::sync::Arc::new(store.clone()), |c| c.redis_url = Some(redis.url())).await;
    b.key = Some(b.server.key(&a.tenant, baton_server::domain::principal::Role::Writer, None).await);
    b.tenant = a.tenant.clone();
    wait_for_bus(&a).await;
    wait_for_bus(&b).await;
    let (mut ctx_a, mut ctx_b) = (a.context().await, b.context().await);
    create_session(&mut ctx_a, "same", "w").await;
    create_session(&mut ctx_b, "same", "w").await;
    let follow = pb::StreamEntriesRequest { session_key: "same".into(), after_seq: 0, follow: true, max_entries: 0 };
    let mut follower_a = ctx_a.stream_entries(follow).await.unwrap().into_inner();
    for i in 1..=3 {
        append(&mut ctx_a, "same", vec![message("w", &format!("a {i}"))]).await;
        append(&mut ctx_b, "same", vec![message("w", &format!("b {i}"))]).await;
        append(&mut ctx_b, "same", vec![message("w", &format!("b {i} again"))]).await;
    }
    let window = pb::GetContextWindowRequest { session_key: "same".into(), ..Default::default() };
    let text = |e: &pb::Entry| match &e.content {
        Some(pb::entry::Content::Text(t)) => t.clone(),
        other => panic!("a text entry: {other:?}"),
    };
    // Each read twice: the first repairs the cache, the second is served from it.
    for _ in 0..2 {
        let got = ctx_a.get_context_window(window.clone()).await.unwrap().into_inner();
        assert_eq!(got.entries.iter().map(text).collect::<Vec<_>>(), ["a 1", "a 2", "a 3"]);
        let got = ctx_b.get_context_window(window.clone()).await.unwrap().into_inner();
        assert_eq!(got.last_seq, 6, "b's own session: {got:?}");
        assert!(got.entries.iter().all(|e| text(e).starts_with('b')), "{got:?}");
    }
    assert!(stats(&a).l1_hits.load(Ordering::Relaxed) + stats(&a).redis_hits.load(Ordering::Relaxed) > 0);
    for seq in 1..=3u64 {
        let e = tokio::time::timeout(Duration::from_secs(10), follower_a.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((e.seq, text(&e)), (seq, format!("a {seq}")));
    }
    // Nothing of b's reaches a's follower (b's sixth append would be seq 4..6 to it).
    append(&mut ctx_b, "same", vec![message("w", "b late")]).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), follower_a.next()).await;
    assert!(quiet.is_err(), "a's follower heard {quiet:?}");
    drop(follower_a);
    a.shutdown().await;
    b.shutdown().await;
    store.pool().close().await;
    db.drop().await;
}
