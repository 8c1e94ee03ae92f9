//! `baton-follow`: batond's memory for many follow streams. Creates a few sessions, opens
//! `--streams` StreamEntries(follow) calls over `--connections` HTTP/2 connections, appends one
//! entry to every session (each stream receives it), holds them open, then closes every stream
//! and connection and watches batond's RSS come back. Prints one JSON object (KiB, from
//! `/proc/PID/status`): RSS before the streams, once all are open, the peak sampled every
//! 100 ms while they are open, `VmHWM`, and RSS at intervals after the close.
//!
//! Bounded: every wait has a deadline, and the load goes to the address given (loopback in
//! `ghz/streams-memory`).
//!
//! ```text
//! baton-follow --addr http://127.0.0.1:50051 --pid 1234 --streams 10000 --connections 25
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baton_proto::v1::context_service_client::ContextServiceClient;
use baton_proto::v1::new_entry::Content;
use baton_proto::v1::{AppendEntriesRequest, CreateSessionRequest, EntryKind, NewEntry, StreamEntriesRequest};
use serde_json::json;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

type Client = ContextServiceClient<Channel>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    addr: String,
    pid: u32,
    streams: usize,
    connections: usize,
    sessions: usize,
    entries: usize,
    hold: Duration,
    settle: Duration,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            addr: String::new(),
            pid: 0,
            streams: 10_000,
            connections: 25,
            sessions: 100,
            entries: 5,
            hold: Duration::from_secs(3),
            settle: Duration::from_secs(10),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--addr" => a.addr = value()?,
                "--pid" => a.pid = number(value()?)? as u32,
                "--streams" => a.streams = number(value()?)? as usize,
                "--connections" => a.connections = number(value()?)?.max(1) as usize,
                "--sessions" => a.sessions = number(value()?)?.max(1) as usize,
                "--entries" => a.entries = number(value()?)? as usize,
                "--hold" => a.hold = Duration::from_secs(number(value()?)?),
                "--settle" => a.settle = Duration::from_secs(number(value()?)?),
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if a.addr.is_empty() || a.pid == 0 {
            return Err("usage: baton-follow --addr URL --pid BATOND_PID [--streams N] [--connections C] \
                        [--sessions S] [--entries E] [--hold SECS] [--settle SECS]"
                .into());
        }
        Ok(a)
    }
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn entry(text: String) -> NewEntry {
    NewEntry {
        kind: EntryKind::Message as i32,
        role: "user".into(),
        author: "bench".into(),
        content: Some(Content::Text(text)),
        media_type: String::new(),
        metadata: None,
    }
}

async fn append(client: &mut Client, session: &str, entries: Vec<NewEntry>) -> Result<(), BoxError> {
    let request = AppendEntriesRequest {
        session_key: session.to_owned(),
        entries,
        idempotency_key: String::new(),
        expected_last_seq: None,
    };
    client.append_entries(request).await?;
    Ok(())
}

/// Waits until `done()` or the deadline; false on the deadline.
async fn until(deadline: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse(std::env::args().skip(1))?;
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(Endpoint::from_shared(args.addr.clone())?.tcp_nodelay(true).connect().await?);
    }
    let mut admin = Client::new(channels[0].clone());
    let run = std::process::id();
    let keys: Vec<String> = (0..args.sessions).map(|i| format!("mem-{run}-{i:04}")).collect();
    for key in &keys {
        let request = CreateSessionRequest {
            session_key: key.clone(),
            agent: "bench".into(),
            metadata: None,
            ttl: None,
            idempotency_key: String::new(),
        };
        admin.create_session(request).await?;
        let batch = (0..args.entries).map(|i| entry(format!("entry {i} of {key}: {}", "x".repeat(300)))).collect();
        append(&mut admin, key, batch).await?;
    }
    // The server after the set-up, before any stream: what the streams' memory should return to.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_kb, _) = memory(args.pid);

    let peak = Arc::new(AtomicU64::new(idle_kb));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (Arc::clone(&peak), Arc::clone(&sampling), args.pid);
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(memory(pid).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let mut client = Client::new(channels[i % channels.len()].clone());
        let request = StreamEntriesRequest {
            session_key: keys[i % keys.len()].clone(),
            after_seq: 0,
            follow: true,
            max_entries: 0,
        };
        let (opened, failed, received, mut stop) =
            (Arc::clone(&opened), Arc::clone(&failed), Arc::clone(&received), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = match client.stream_entries(request).await {
                Ok(r) => r.into_inner(),
                Err(_) => return failed.fetch_add(1, Ordering::Relaxed),
            };
            opened.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = stop.changed() => return 0,
                    m = stream.message() => match m {
                        Ok(Some(_)) => received.fetch_add(1, Ordering::Relaxed),
                        _ => return failed.fetch_add(1, Ordering::Relaxed),
                    },
                };
            }
        }));
    }
    let all = args.streams;
    let all_open =
        until(Duration::from_secs(120), || opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= all)
            .await;
    let open_secs = started.elapsed().as_secs_f64();
    let replayed = (all * args.entries) as u64;
    until(Duration::from_secs(60), || received.load(Ordering::Relaxed) >= replayed).await;
    let (open_kb, _) = memory(args.pid);

    // One live append per session: every stream receives it from the hub.
    for key in &keys {
        append(&mut admin, key, vec![entry(format!("live entry of {key}"))]).await?;
    }
    let expected = replayed + all as u64;
    let delivered = until(Duration::from_secs(60), || received.load(Ordering::Relaxed) >= expected).await;
    tokio::time::sleep(args.hold).await;
    let (live_kb, hwm_kb) = memory(args.pid);

    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(admin);
    drop(channels);
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let closed = Instant::now();
    let mut after = Vec::new();
    for at in [1u64, 2, 5, 10, 20, 30] {
        let at = Duration::from_secs(at);
        if at > args.settle {
            break;
        }
        tokio::time::sleep(at.saturating_sub(closed.elapsed())).await;
        after.push(json!({ "secs": at.as_secs(), "rss_kb": memory(args.pid).0 }));
    }
    let report = json!({
        "streams": all,
        "connections": args.connections,
        "sessions": args.sessions,
        "all_open": all_open,
        "open_secs": open_secs,
        "failed": failed.load(Ordering::Relaxed),
        "received": received.load(Ordering::Relaxed),
        "delivered_all": delivered,
        "idle_kb": idle_kb,
        "open_kb": open_kb,
        "live_kb": live_kb,
        "peak_kb": peak.load(Ordering::Relaxed).max(live_kb),
        "hwm_kb": hwm_kb,
        "after": after,
    });
    println!("{report}");
    Ok(())
}
