//! The cache and bus on a Redis Cluster (`REDIS_URL=redis-cluster://…`): two `batond` replicas
//! on the test database and a private three-master cluster behave as one service, and a dead
//! node costs only cache hits.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use baton_proto::v1 as pb;
use common::cluster::RedisCluster;
use common::*;
use futures::StreamExt;

/// How long one change may take to reach the other replica.
const DELIVERY: Duration = Duration::from_secs(5);

/// Two replicas sharing one tenant on the test database and a fresh cluster; `None` when
/// PostgreSQL is missing and BATON_REQUIRE_SERVICES=0 (else that fails).
async fn replicas() -> Option<(RedisCluster, TestServer, TestServer)> {
    postgres_url()?;
    let cluster = RedisCluster::start().await;
    let (a, b) = replicas_on(&cluster.url()).await;
    Some((cluster, a, b))
}

fn hits(srv: &TestServer) -> u64 {
    stats(srv).redis_hits.load(Ordering::Relaxed) + stats(srv).l1_hits.load(Ordering::Relaxed)
}

type Follower = tonic::Streaming<pb::Entry>;

async fn follow(ctx: &mut Context, key: &str, after_seq: u64) -> Follower {
    ctx.stream_entries(pb::StreamEntriesRequest { session_key: key.into(), after_seq, follow: true, max_entries: 0 })
        .await
        .unwrap()
        .into_inner()
}

async fn next_seq(follower: &mut Follower, what: &str) -> u64 {
    tokio::time::timeout(DELIVERY, follower.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: not delivered within {DELIVERY:?}"))
        .expect("stream ended")
        .expect("stream error")
        .seq
}

/// Appends through one replica, one at a time, each of which must reach the other
/// replica's follower before the next is written: nothing may wait for a later message.
async fn each_reaches(writer: &mut Context, followers: &mut [Follower], keys: &[String], n: u64, base: u64) {
    for i in 0..n {
        let k = (i % keys.len() as u64) as usize;
        let seq = base + i / keys.len() as u64 + 1;
        let r = append(writer, &keys[k], vec![message("w", &format!("{i}"))]).await;
        assert_eq!(r.first_seq, seq);
        assert_eq!(next_seq(&mut followers[k], &format!("append {i} to {}", keys[k])).await, seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_append_reaches_the_other_replica_at_once() {
    init_test_logging();
    let Some((_cluster, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut ctx_b = b.context().await;
    // Ten sessions: their slots spread over all three masters.
    let keys: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    for k in &keys {
        create_session(&mut ctx_a, k, "w").await;
        on_a.push(follow(&mut ctx_a, k, 0).await);
        on_b.push(follow(&mut ctx_b, k, 0).await);
    }
    each_reaches(&mut ctx_a, &mut on_b, &keys, 200, 0).await;
    // A's own followers saw 1..=20 of each session too, then B's appends 21..=40 reach them.
    for f in on_a.iter_mut() {
        for seq in 1..=20 {
            assert_eq!(next_seq(f, "A's own append").await, seq);
        }
    }
    each_reaches(&mut ctx_b, &mut on_a, &keys, 200, 20).await;
    for f in on_b.iter_mut() {
        for seq in 21..=40 {
            assert_eq!(next_seq(f, "B's own append").await, seq);
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Reads an inbox until the event of this type for this handoff, each within `DELIVERY`
/// (earlier events of the inbox, such as its own agent's transitions, are passed over).
async fn next_event(inbox: &mut tonic::Streaming<pb::HandoffEvent>, handoff_id: &str, kind: pb::HandoffEventType) {
    loop {
        let e = tokio::time::timeout(DELIVERY, inbox.next())
            .await
            .unwrap_or_else(|_| panic!("{kind:?} of {handoff_id} not delivered within {DELIVERY:?}"))
            .expect("stream ended")
            .expect("stream error");
        if e.handoff.as_ref().is_some_and(|h| h.handoff_id == handoff_id) && e.r#type() == kind {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handoff_events_reach_the_other_replica() {
    let Some((_cluster, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut h_a = a.handoffs().await;
    let mut h_b = b.handoffs().await;
    let mut inbox_bob = h_b
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "bob".into(), after_cursor: None })
        .await
        .unwrap()
        .into_inner();
    let mut inbox_alice = h_a
        .watch_handoffs(pb::WatchHandoffsRequest { agent: "alice".into(), after_cursor: None })
        .await
        .unwrap()
        .into_inner();
    for i in 0..5u64 {
        let key = format!("ho{i}");
        create_session(&mut ctx_a, &key, "alice").await;
        let ho = h_a
            .request_handoff(pb::RequestHandoffRequest {
                session_key: key.clone(),
                from_agent: "alice".into(),
                to_agent: "bob".into(),
                r#type: pb::HandoffType::FullHandoff.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Requested through A, seen in bob's inbox on B.
        next_event(&mut inbox_bob, &ho.handoff_id, pb::HandoffEventType::Created).await;
        // Accepted through B, seen in alice's inbox on A.
        h_b.accept_handoff(pb::AcceptHandoffRequest { handoff_id: ho.handoff_id.clone(), agent: "bob".into() })
            .await
            .unwrap();
        next_event(&mut inbox_alice, &ho.handoff_id, pb::HandoffEventType::Accepted).await;
        // A's cached handoff and session reflect B's change.
        let got = h_a.get_handoff(pb::GetHandoffRequest { handoff_id: ho.handoff_id }).await.unwrap().into_inner();
        assert_eq!(got.status(), pb::HandoffStatus::Accepted);
        let s = ctx_a.get_session(pb::GetSessionRequest { session_key: key }).await.unwrap().into_inner();
        assert_eq!(s.owner, "bob");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_b_see_writes_on_a_and_hit_the_cache() {
    let Some((_cluster, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut ctx_b = b.context().await;
    let window = |ctx: &mut Context, key: &str| {
        let (mut ctx, key) = (ctx.clone(), key.to_owned());
        async move {
            ctx.get_context_window(pb::GetContextWindowRequest { session_key: key, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let keys: Vec<String> = (0..6).map(|i| format!("rw{i}")).collect();
    for k in &keys {
        create_session(&mut ctx_a, k, "w").await;
    }
    let hits_before = hits(&b);
    for i in 1..=10u64 {
        for k in &keys {
            // Warm B's caches, so a stale copy would be there to serve.
            assert_eq!(window(&mut ctx_b, k).await.last_seq, i - 1);
            append(&mut ctx_a, k, vec![message("w", &format!("entry {i}"))]).await;
            let w = window(&mut ctx_b, k).await;
            assert_eq!(w.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=i).collect::<Vec<_>>(), "fresh");
        }
    }
    assert!(hits(&b) > hits_before + 50, "B's reads were served from the cache");
    assert_eq!(stats(&a).redis_errors.load(Ordering::Relaxed), 0, "no Redis call failed on A");
    assert_eq!(stats(&b).redis_errors.load(Ordering::Relaxed), 0, "no Redis call failed on B");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_node_costs_only_cache_hits() {
    init_test_logging();
    let Some((mut cluster, a, b)) = replicas().await else { return };
    let mut ctx_a = a.context().await;
    let mut ctx_b = b.context().await;
    let keys: Vec<String> = (0..3).map(|i| format!("down{i}")).collect();
    let mut on_b = Vec::new();
    for k in &keys {
        create_session(&mut ctx_a, k, "w").await;
        on_b.push(follow(&mut ctx_b, k, 0).await);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    // A writer appends through A the whole time (any error fails the test).
    let writer = {
        let (mut ctx, keys, stop) = (ctx_a.clone(), keys.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                for k in &keys {
                    append(&mut ctx, k, vec![message("w", &format!("{n}"))]).await;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.kill_node(0);
    // The cluster fails (a master without a replica is gone): calls go to the store.
    let errors = |s: &TestServer| stats(s).redis_errors.load(Ordering::Relaxed);
    for _ in 0..100 {
        for k in &keys {
            let w = ctx_b
                .get_context_window(pb::GetContextWindowRequest { session_key: k.clone(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            assert!(w.last_seq > 0);
        }
        if errors(&a) > 0 && errors(&b) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors(&a) > 0 && errors(&b) > 0, "both replicas saw the outage");
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.start_node(0).await;
    cluster.wait_ok().await;
    wait_for_bus(&a).await;
    wait_for_bus(&b).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let rounds = writer.await.unwrap();
    // B's followers received everything, through the outage and after it.
    for f in on_b.iter_mut() {
        for seq in 1..=rounds {
            assert_eq!(next_seq(f, "append during the outage").await, seq);
        }
    }
    // The cache fills again: B's reads hit, and see the newest entries.
    let before = hits(&b);
    let mut healed = false;
    for _ in 0..100 {
        let w = ctx_b
            .get_context_window(pb::GetContextWindowRequest { session_key: keys[0].clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(w.last_seq, rounds);
        if hits(&b) > before + 2 {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healed, "cache hits resume once the node is back");
    // And the bus carries each new append to B at once again.
    for k in 0..keys.len() {
        let r = append(&mut ctx_a, &keys[k], vec![message("w", "after")]).await;
        assert_eq!(next_seq(&mut on_b[k], "append after the outage").await, r.first_seq);
    }
    a.shutdown().await;
    b.shutdown().await;
}
