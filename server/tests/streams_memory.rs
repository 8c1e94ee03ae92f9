//! batond gives memory back after its follow streams close. A real `batond` process (the
//! binary, so its global allocator and its settings are the ones under test) on the embedded
//! store gets 2,000 follow streams over 8 connections, each receiving a replay and a live
//! entry; then every stream and connection closes, and its RSS must come back near what it was
//! before the streams, within a bounded wait. With the system allocator it stayed near the
//! peak (ghz/results/streams-memory.md).
//!
//! The full-size figures (10,000 streams, release build) come from `ghz/streams-memory`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use common::procs::Batond;
use pb::context_service_client::ContextServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

const STREAMS: usize = 2_000;
const CONNECTIONS: usize = 8;
const SESSIONS: usize = 20;
/// Streams opened before waiting for their replays.
const WAVE: usize = 250;
/// How long the memory may take to come back after the close.
const SETTLE: Duration = Duration::from_secs(20);
/// Opening every stream, receiving every entry: bounded.
const LIMIT: Duration = Duration::from_secs(120);

/// Adds the API key to every call.
type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Client = ContextServiceClient<InterceptedService<Channel, Auth>>;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

fn client(channel: Channel, key: &str) -> Client {
    let bearer: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    let auth: Auth = Box::new(move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    });
    ContextServiceClient::with_interceptor(channel, auth)
}

fn message(text: String) -> pb::NewEntry {
    pb::NewEntry {
        kind: pb::EntryKind::Message as i32,
        role: "user".into(),
        author: "bench".into(),
        content: Some(pb::new_entry::Content::Text(text)),
        media_type: String::new(),
        metadata: None,
    }
}

async fn append(c: &mut Client, session: &str, entries: Vec<pb::NewEntry>) {
    let req = pb::AppendEntriesRequest {
        session_key: session.into(),
        entries,
        idempotency_key: String::new(),
        expected_last_seq: None,
    };
    c.append_entries(req).await.expect("append");
}

/// Waits until `counter` reaches `target`; fails at once when a stream failed.
async fn wait_for(what: &str, counter: &AtomicUsize, target: usize, failed: &OnceLock<String>) {
    let started = Instant::now();
    while counter.load(Ordering::Relaxed) < target {
        if let Some(e) = failed.get() {
            panic!("{what}: a follow stream ended early: {e}");
        }
        assert!(started.elapsed() < LIMIT, "{what}: {} of {target} after {LIMIT:?}", counter.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `STREAMS` follow streams, delivers a live entry to each, closes them all; returns
/// batond's RSS peak while they were open.
async fn round(batond: &Batond, key: &str, sessions: &[String], pid: u32) -> u64 {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(Endpoint::from_shared(batond.endpoint()).unwrap().connect().await.expect("connect"));
    }
    let opened = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(OnceLock::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        // In waves: the test is about memory, not about a burst of reads on the embedded store
        // (2,000 catch-ups at once can outwait its pool's acquire timeout on a debug build).
        if i > 0 && i % WAVE == 0 {
            wait_for("streams open", &opened, i, &failed).await;
            wait_for("replayed entries", &received, i * 3, &failed).await;
        }
        let mut c = client(channels[i % CONNECTIONS].clone(), key);
        let session = sessions[i % sessions.len()].clone();
        let (opened, received, failed, mut stop) =
            (Arc::clone(&opened), Arc::clone(&received), Arc::clone(&failed), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let req = pb::StreamEntriesRequest { session_key: session, after_seq: 0, follow: true, max_entries: 0 };
            let mut stream = match c.stream_entries(req).await {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    let _ = failed.set(format!("opening it failed: {status}"));
                    return;
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let end = loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    m = stream.message() => match m {
                        Ok(Some(_)) => { received.fetch_add(1, Ordering::Relaxed); }
                        Ok(None) => break "it ended".to_owned(),
                        Err(status) => break format!("it failed: {status}"),
                    }
                }
            };
            let _ = failed.set(end);
        }));
    }
    wait_for("streams open", &opened, STREAMS, &failed).await;
    wait_for("replayed entries", &received, STREAMS * 3, &failed).await;
    let mut writer = client(channels[0].clone(), key);
    for s in sessions {
        append(&mut writer, s, vec![message(format!("live entry of {s}"))]).await;
    }
    wait_for("live entries", &received, STREAMS * 4, &failed).await;
    let peak = rss_kib(pid);
    stop_tx.send(true).unwrap();
    for t in tasks {
        t.await.expect("stream task");
    }
    drop((writer, channels));
    peak
}

#[test]
fn memory_comes_back_after_follow_streams_close() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let mut env = vec![("BATON_DATA_DIR".to_owned(), data.path().display().to_string())];
        // To watch the test fail: `_RJEM_MALLOC_CONF=background_thread:false` (no purging while idle).
        env.extend(std::env::var("_RJEM_MALLOC_CONF").ok().map(|v| ("_RJEM_MALLOC_CONF".to_owned(), v)));
        let tenant = baton_testkit::tenant();
        let key = Batond::create_key(&env, &tenant, "writer");
        let batond = Batond::start(env, &["--max-streams-per-principal", "0"]).await;
        let pid = batond.pid().unwrap();

        let channel = Endpoint::from_shared(batond.endpoint()).unwrap().connect().await.unwrap();
        let mut c = client(channel, &key);
        let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("mem-{i:02}")).collect();
        for s in &sessions {
            let req = pb::CreateSessionRequest {
                session_key: s.clone(),
                agent: "bench".into(),
                metadata: None,
                ttl: None,
                idempotency_key: String::new(),
            };
            c.create_session(req).await.expect("create session");
            append(&mut c, s, (0..3).map(|i| message(format!("entry {i}: {}", "x".repeat(300)))).collect()).await;
        }
        drop(c);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss_kib(pid);

        let peak = round(&batond, &key, &sessions, pid).await;
        let grown = peak.saturating_sub(idle);
        assert!(grown > 4 * 1024, "2,000 streams should cost batond memory (idle {idle} KiB, peak {peak} KiB)");
        // Back to within half of what the streams took (and at most 16 MiB above idle).
        let bound = idle + (grown / 2).min(16 * 1024);
        let started = Instant::now();
        let mut now = rss_kib(pid);
        while now > bound && started.elapsed() < SETTLE {
            tokio::time::sleep(Duration::from_millis(250)).await;
            now = rss_kib(pid);
        }
        eprintln!(
            "RSS idle {idle} KiB, peak {peak} KiB with {STREAMS} streams, {now} KiB {:.1?} after the close (bound {bound})",
            started.elapsed()
        );
        assert!(
            now <= bound,
            "batond kept its streams' memory: RSS {now} KiB {SETTLE:?} after they closed, idle {idle}, peak {peak}, bound {bound}"
        );
    });
}
