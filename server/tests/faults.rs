//! Fault scenarios with real processes (helpers in `common/procs.rs`):
//!
//! 1. `batond` SIGKILLed (twice) while 8 writers append 300 entries each through baton-client,
//!    which retries with the same idempotency key; `batond` restarted on the same port.
//! 2. A private PostgreSQL cluster stopped (immediate, then fast) and started again while
//!    writers append and readers read; the same `batond` process recovers on its own.
//! 3. `batond` SIGTERMed while followers stream a session (baton-client's resumable streams and
//!    one raw stub that resumes by hand); appends go on through a second replica on the same
//!    database and Redis, and the first comes back on the same port.
//! 4. Scale-out: three `batond` replicas on one PostgreSQL primary with a streaming replica
//!    (`DATABASE_READ_URL`) and Redis; writers on every replica append to shared sessions and
//!    read after each append, followers stream every session from every replica; one `batond` is
//!    SIGKILLed and restarted, and the replica database is restarted, during the run. Reads
//!    never go backwards for a writer and always show its own append.
//!
//! After each: every append was acknowledged and is stored exactly once, seqs run 1..N with no
//! gap, each writer's entries are in its order, and every follower received 1..N exactly once,
//! in order. After 1 and 2 every append is also sent again with its idempotency key and must
//! return its original seq. The scenarios run one at a time, each under a hard time limit, so
//! that recovery times do not depend on what else the test binary runs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_client::v1 as pb;
use baton_client::{Client, RetryPolicy};
use common::RedisServer;
use common::procs::{BATOND, Batond, PgCluster, http_get};
use futures::StreamExt;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A scenario that takes longer than this fails (each takes 5 to 15 s on 2 busy cores).
const LIMIT: Duration = Duration::from_secs(60);
/// How long a writer sends one append again after the client gave up on it.
const RESEND_FOR: Duration = Duration::from_secs(30);
/// How long a follower may wait for its next entry.
const STALL: Duration = Duration::from_secs(20);

/// Runs one scenario on its own runtime, after the previous one finished.
fn scenario(name: &str, body: impl Future<Output = ()>) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        if tokio::time::timeout(LIMIT, body).await.is_err() {
            panic!("{name}: still running after {LIMIT:?}");
        }
    });
    eprintln!("{name}: {:.1?}", started.elapsed());
}

/// A client that rides out a restart: many quick retries within a 20 s deadline per call.
fn client(batond: &Batond, key: &str) -> Client {
    Client::builder(batond.endpoint())
        .api_key(key)
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(2))
        .retry(RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(300),
            multiplier: 2.0,
        })
        .connect_lazy()
        .expect("a client")
}

/// The text of a writer's `index`th entry.
fn body(writer: usize, index: usize) -> String {
    format!("w{writer}-{index}")
}

/// A writer's `index`th append: one message, under its own idempotency key.
fn append_request(session: &str, writer: usize, index: usize, idempotency_key: &str) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        session_key: session.into(),
        entries: vec![pb::NewEntry {
            kind: pb::EntryKind::Message.into(),
            role: "assistant".into(),
            author: format!("w{writer}"),
            content: Some(pb::new_entry::Content::Text(body(writer, index))),
            ..Default::default()
        }],
        idempotency_key: idempotency_key.into(),
        ..Default::default()
    }
}

/// One acknowledged append.
#[derive(Debug, Clone)]
struct Ack {
    writer: usize,
    index: usize,
    idempotency_key: String,
    seq: u64,
}

/// What the writers have done so far, for the task that injects the fault.
#[derive(Default)]
struct Progress {
    acked: AtomicUsize,
    /// Failures the client returned after its own retries, by code.
    errors: Mutex<BTreeMap<&'static str, (usize, String)>>,
}

impl Progress {
    fn error(&self, e: &baton_client::Error) {
        let mut errors = self.errors.lock().unwrap();
        let (n, _) = errors.entry(e.code_name()).or_insert_with(|| (0, e.to_string()));
        *n += 1;
    }

    /// Waits until `n` appends were acknowledged.
    async fn reached(&self, n: usize) {
        while self.acked.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn report(&self, scenario: &str) {
        let errors = self.errors.lock().unwrap();
        if !errors.is_empty() {
            eprintln!("{scenario}: appends sent again after the client gave up: {errors:?}");
        }
    }
}

/// How one writer appends.
struct Writer {
    client: Client,
    session: String,
    id: usize,
    count: usize,
    /// A pause after each acknowledged append.
    pace: Duration,
    /// Before its append of this index, the writer waits until the flag is up.
    wait_at: Option<(usize, tokio::sync::watch::Receiver<bool>)>,
    /// After each acknowledged append, read the session's context window: it must hold the
    /// append and never show an older session than the writer saw before.
    read_back: bool,
    progress: Arc<Progress>,
}

impl Writer {
    /// A writer that appends as fast as it can.
    fn new(client: Client, session: &str, id: usize, count: usize, progress: &Arc<Progress>) -> Writer {
        let progress = Arc::clone(progress);
        Writer {
            client,
            session: session.into(),
            id,
            count,
            pace: Duration::ZERO,
            wait_at: None,
            read_back: false,
            progress,
        }
    }

    /// Appends `count` entries one after the other, each acknowledged before the next is sent.
    /// When the client gives up on one (its retries exhausted, or an error it does not retry),
    /// the writer sends the same request again, with the same idempotency key, as an
    /// application would.
    async fn run(mut self) -> Vec<Ack> {
        let mut acks = Vec::with_capacity(self.count);
        let mut seen = 0;
        for index in 0..self.count {
            if let Some((_, flag)) = self.wait_at.as_mut().filter(|(at, _)| *at == index) {
                flag.wait_for(|up| *up).await.expect("the flag's sender is alive");
            }
            let idempotency_key = uuid::Uuid::now_v7().to_string();
            let request = append_request(&self.session, self.id, index, &idempotency_key);
            let mut failing_since = None;
            let response = loop {
                match self.client.append_entries(request.clone()).await {
                    Ok(response) => break response,
                    Err(e) => {
                        use baton_client::Code::*;
                        // An outage is UNAVAILABLE (or the client's deadline passing while it
                        // retried); anything else is a wrong answer.
                        let transient = matches!(e.code(), Unavailable | DeadlineExceeded);
                        assert!(transient, "writer {}: append {index} failed: {e}", self.id);
                        self.progress.error(&e);
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        assert!(
                            since.elapsed() < RESEND_FOR,
                            "writer {}: append {index} failing for {RESEND_FOR:?}: {e}",
                            self.id
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            assert_eq!(response.first_seq, response.last_seq, "one entry, one seq");
            acks.push(Ack { writer: self.id, index, idempotency_key, seq: response.first_seq });
            self.progress.acked.fetch_add(1, Ordering::SeqCst);
            if self.read_back {
                seen = self.read_back(index, response.first_seq, seen).await;
            }
            if !self.pace.is_zero() {
                tokio::time::sleep(self.pace).await;
            }
        }
        acks
    }
}

impl Writer {
    /// Reads the context window after append `index` was stored at `seq`: its last_seq must be
    /// at least `seq` (the writer reads its own write) and at least `seen` (what the writer read
    /// before). Returns the new last_seq. Reads that fail during an outage are tried again.
    async fn read_back(&self, index: usize, seq: u64, seen: u64) -> u64 {
        let request =
            pb::GetContextWindowRequest { session_key: self.session.clone(), max_entries: 5, ..Default::default() };
        let started = Instant::now();
        let window = loop {
            match self.client.get_context_window(request.clone()).await {
                Ok(w) => break w,
                Err(e) => {
                    use baton_client::Code::*;
                    assert!(matches!(e.code(), Unavailable | DeadlineExceeded), "writer {}: read failed: {e}", self.id);
                    assert!(
                        started.elapsed() < RESEND_FOR,
                        "writer {}: reads failing for {RESEND_FOR:?}: {e}",
                        self.id
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert!(
            window.last_seq >= seq,
            "writer {}: append {index} stored at seq {seq}, then read a window ending at {}",
            self.id,
            window.last_seq
        );
        assert!(window.last_seq >= seen, "writer {}: read {} after {seen}: backwards", self.id, window.last_seq);
        let own = pb::ListEntriesRequest {
            session_key: self.session.clone(),
            after_seq: Some(seq - 1),
            page_size: 1,
            ..Default::default()
        };
        let page =
            self.client.list_entries(own).await.unwrap_or_else(|e| panic!("writer {}: list failed: {e}", self.id));
        assert_eq!(page.entries.first().map(|e| e.seq), Some(seq), "writer {}: its seq {seq} is not listed", self.id);
        window.last_seq
    }
}

fn start_writers(writers: impl IntoIterator<Item = Writer>) -> Vec<tokio::task::JoinHandle<Vec<Ack>>> {
    writers.into_iter().map(|w| tokio::spawn(w.run())).collect()
}

/// Sends every acknowledged append again, with its idempotency key, as a client would whose
/// answer was lost in the fault: each must return its original seq and write nothing. (A
/// fault rarely falls between a commit and its answer; this makes that case certain, and
/// shows the idempotency records outlived the fault.)
async fn replay(client: &Client, session: &str, acks: &[Ack]) {
    let mut by_writer: BTreeMap<usize, Vec<Ack>> = BTreeMap::new();
    for a in acks {
        by_writer.entry(a.writer).or_default().push(a.clone());
    }
    let tasks: Vec<_> = by_writer
        .into_values()
        .map(|acks| {
            let (client, session) = (client.clone(), session.to_owned());
            tokio::spawn(async move {
                for a in acks {
                    let again = client
                        .append_entries(append_request(&session, a.writer, a.index, &a.idempotency_key))
                        .await
                        .expect("send an append again");
                    assert_eq!(again.first_seq, a.seq, "{} sent again: another seq", body(a.writer, a.index));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a replay failed");
    }
}

async fn join_writers(tasks: Vec<tokio::task::JoinHandle<Vec<Ack>>>) -> Vec<Ack> {
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.expect("a writer failed"));
    }
    acks
}

/// Reads the session back and checks it against what the writers were told: seqs 1..=N with
/// no gap, N the number of appends (all acknowledged), each append stored exactly once, each
/// writer's entries in its order, and each acknowledged seq holding that append.
async fn assert_exactly_once(client: &Client, session: &str, counts: &[usize], acks: &[Ack]) {
    let n: usize = counts.iter().sum();
    assert_eq!(acks.len(), n, "every append was acknowledged");
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_entries(pb::ListEntriesRequest {
                session_key: session.into(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("read the session back");
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert!(seqs.iter().copied().eq(1..=n as u64), "seqs are not 1..={n} without a gap: {} entries", seqs.len());

    let mut stored: HashMap<String, u64> = HashMap::new();
    for e in &entries {
        let Some(pb::entry::Content::Text(text)) = &e.content else { panic!("entry {} has no text", e.seq) };
        if let Some(first) = stored.insert(text.clone(), e.seq) {
            panic!("{text:?} stored twice: seqs {first} and {}", e.seq);
        }
    }
    for (writer, &count) in counts.iter().enumerate() {
        let mut previous = 0;
        for index in 0..count {
            let seq = *stored.get(&body(writer, index)).unwrap_or_else(|| panic!("{} lost", body(writer, index)));
            assert!(
                seq > previous,
                "writer {writer}: entry {index} (seq {seq}) stored before entry {} (seq {previous})",
                index - 1
            );
            previous = seq;
        }
    }
    for a in acks {
        assert_eq!(
            stored[&body(a.writer, a.index)],
            a.seq,
            "{} was acknowledged with another seq",
            body(a.writer, a.index)
        );
    }
    let s = client.get_session(pb::GetSessionRequest { session_key: session.into() }).await.expect("get the session");
    assert_eq!(s.last_seq, n as u64);
}

async fn create_session(client: &Client, session: &str) {
    client
        .create_session(pb::CreateSessionRequest {
            session_key: session.into(),
            agent: "w".into(),
            ..Default::default()
        })
        .await
        .expect("create the session");
}

/// The shared test PostgreSQL, as `batond` serves it; `None` only with BATON_REQUIRE_SERVICES=0.
fn shared_postgres() -> Option<Vec<(String, String)>> {
    let owner = baton_testkit::postgres_url()?;
    let serving = baton_testkit::service(baton_testkit::APP_DATABASE_URL)?;
    Some(Batond::postgres_env(&serving, &owner))
}

// ---- 1. SIGKILL during idempotent appends ----

#[test]
fn sigkill_during_idempotent_appends_loses_and_duplicates_nothing() {
    scenario("SIGKILL during appends", async {
        let Some(env) = shared_postgres() else { return };
        let tenant = baton_testkit::tenant();
        let key = Batond::create_key(&env, &tenant, "writer");
        let mut batond = Batond::start(env, &[]).await;
        let session = "faults-sigkill";
        create_session(&client(&batond, &key), session).await;

        const WRITERS: usize = 8;
        const APPENDS: usize = 300;
        let progress = Arc::new(Progress::default());
        let writers = (0..WRITERS).map(|id| Writer::new(client(&batond, &key), session, id, APPENDS, &progress));
        let tasks = start_writers(writers);

        let total = WRITERS * APPENDS;
        for at in [total / 3, 2 * total / 3] {
            progress.reached(at).await;
            let pid = batond.pid();
            batond.kill();
            let acked = progress.acked.load(Ordering::SeqCst);
            assert!(acked < total, "the writers finished before the kill");
            eprintln!("SIGKILL of batond {pid:?} after {acked} acknowledged appends");
            batond.restart().await;
        }
        let acks = join_writers(tasks).await;
        progress.report("SIGKILL during appends");
        let after = client(&batond, &key);
        replay(&after, session, &acks).await;
        assert_exactly_once(&after, session, &[APPENDS; WRITERS], &acks).await;
    });
}

// ---- 2. PostgreSQL restarted under load ----

#[test]
fn postgres_restart_under_load_loses_and_duplicates_nothing() {
    scenario("PostgreSQL restart", async {
        let cluster = PgCluster::start().await;
        let env = Batond::postgres_env(&cluster.serving_url(), &cluster.owner_url());
        let tenant = baton_testkit::tenant();
        let key = Batond::create_key(&env, &tenant, "writer");
        let mut batond = Batond::start(env, &[]).await;
        let pid = batond.pid();
        let session = "faults-pg-restart";
        let reader = client(&batond, &key);
        create_session(&reader, session).await;

        const WRITERS: usize = 4;
        const APPENDS: usize = 200;
        let progress = Arc::new(Progress::default());
        let writers = (0..WRITERS).map(|id| Writer {
            pace: Duration::from_millis(2),
            ..Writer::new(client(&batond, &key), session, id, APPENDS, &progress)
        });
        let tasks = start_writers(writers);
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> =
            (0..2).map(|_| tokio::spawn(read_while(client(&batond, &key), session, Arc::clone(&done)))).collect();

        let total = WRITERS * APPENDS;
        let mut recoveries = Vec::new();
        for (at, mode) in [(total / 4, "immediate"), (total / 2, "fast")] {
            progress.reached(at).await;
            cluster.stop(mode);
            let acked = progress.acked.load(Ordering::SeqCst);
            // Long enough for every pooled connection to break and calls to fail.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let acked_while_down = progress.acked.load(Ordering::SeqCst) - acked;
            // At most the answers already on their way when it stopped.
            assert!(acked_while_down <= WRITERS, "{acked_while_down} appends acknowledged while PostgreSQL was down");
            cluster.start_again();
            let back = Instant::now();
            eprintln!("PostgreSQL stopped ({mode}) after {acked} acknowledged appends, started again");
            let before = progress.acked.load(Ordering::SeqCst);
            while progress.acked.load(Ordering::SeqCst) == before {
                assert!(
                    back.elapsed() < Duration::from_secs(15),
                    "no append acknowledged 15 s after PostgreSQL came back"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            recoveries.push(back.elapsed());
        }
        eprintln!("first acknowledged append after PostgreSQL came back: {recoveries:?}");
        let acks = join_writers(tasks).await;
        done.store(true, Ordering::SeqCst);
        for r in readers {
            let (ok_after_last_restart, failed) = r.await.expect("a reader failed");
            eprintln!("reader: {ok_after_last_restart} reads at the end, {failed} failed during the outages");
            assert!(ok_after_last_restart > 0, "reads work again");
        }
        progress.report("PostgreSQL restart");
        assert!(batond.is_running() && batond.pid() == pid, "the same batond served throughout");
        assert_eq!(batond.ready().await, Some(200), "ready again");
        replay(&reader, session, &acks).await;
        assert_exactly_once(&reader, session, &[APPENDS; WRITERS], &acks).await;
    });
}

/// Reads the session (the context window and a page of entries) until `done`, checking that
/// what comes back has no gap. Returns the reads that worked since the last failure, and the
/// failures (expected while PostgreSQL is down).
async fn read_while(client: Client, session: &str, done: Arc<AtomicBool>) -> (usize, usize) {
    let client = client.with_timeout(Duration::from_secs(5));
    let (mut ok, mut failed) = (0, 0);
    while !done.load(Ordering::SeqCst) {
        let window = client
            .get_context_window(pb::GetContextWindowRequest {
                session_key: session.into(),
                max_entries: 50,
                ..Default::default()
            })
            .await;
        let page = client
            .list_entries(pb::ListEntriesRequest { session_key: session.into(), page_size: 100, ..Default::default() })
            .await;
        match (window, page) {
            (Ok(w), Ok(p)) => {
                let seqs: Vec<u64> = w.entries.iter().map(|e| e.seq).collect();
                let from = seqs.first().copied().unwrap_or(1);
                assert!(seqs.iter().copied().eq(from..from + seqs.len() as u64), "a gap in the window: {seqs:?}");
                assert_eq!(seqs.last().copied().unwrap_or(0), w.last_seq, "the window ends at last_seq");
                let listed: Vec<u64> = p.entries.iter().map(|e| e.seq).collect();
                assert!(listed.iter().copied().eq(1..=listed.len() as u64), "a gap in the page: {listed:?}");
                ok += 1;
            }
            (w, p) => {
                for e in [w.err(), p.err()].into_iter().flatten() {
                    assert_ne!(e.code(), baton_client::Code::NotFound, "the session vanished: {e}");
                }
                failed += 1;
                ok = 0;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (ok, failed)
}

// ---- 3. SIGTERM during follow streams ----

#[test]
fn sigterm_during_follow_streams_resumes_exactly_once() {
    scenario("SIGTERM during streams", async {
        let Some(env) = shared_postgres() else { return };
        let Some(redis) = RedisServer::start().await else { return };
        let drain = batond_has_drain_flag();
        let redis_url = redis.url();
        let mut args_a = vec!["--redis-url", &redis_url];
        if drain {
            args_a.extend(["--shutdown-drain-secs", "1"]);
        } else {
            eprintln!("batond has no --shutdown-drain-secs yet: SIGTERM stops it at once");
        }
        let tenant = baton_testkit::tenant();
        let key = Batond::create_key(&env, &tenant, "writer");
        let mut a = Batond::start(env.clone(), &args_a).await;
        let b = Batond::start(env, &["--redis-url", &redis_url]).await;
        let session = "faults-sigterm";
        create_session(&client(&b, &key), session).await;

        // Writers 0 and 1 append through B, paced so they go on while A is down; after their
        // 150th append they wait for A to be back, so some appends come after the restart too.
        // Writer 2 appends through A itself.
        let counts = [200, 200, 100];
        let n = counts.iter().sum::<usize>() as u64;
        let progress = Arc::new(Progress::default());
        let (a_back, a_back_rx) = tokio::sync::watch::channel(false);
        let writers: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(id, &count)| Writer {
                pace: Duration::from_millis(10),
                wait_at: (id < 2).then(|| (150, a_back_rx.clone())),
                ..Writer::new(client(if id < 2 { &b } else { &a }, &key), session, id, count, &progress)
            })
            .collect();

        const FOLLOWERS: usize = 4;
        let delivered = Arc::new(AtomicUsize::new(0));
        let mut followers = Vec::new();
        for _ in 0..FOLLOWERS {
            let stream = client(&a, &key)
                .stream_entries(pb::StreamEntriesRequest {
                    session_key: session.into(),
                    follow: true,
                    ..Default::default()
                })
                .await
                .expect("open a follow stream");
            followers.push(tokio::spawn(follow(stream, n, Arc::clone(&delivered))));
        }
        let raw = tokio::spawn(follow_raw(a.endpoint(), key.clone(), session.into(), n, Arc::clone(&delivered)));
        let tasks = start_writers(writers);

        // Every follower is live and has some entries: SIGTERM.
        while delivered.load(Ordering::SeqCst) < 30 * (FOLLOWERS + 1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at_term = delivered.load(Ordering::SeqCst);
        let acked_at_term = progress.acked.load(Ordering::SeqCst);
        let termed = Instant::now();
        a.terminate();
        if drain {
            // Draining: not ready at once, yet the streams keep delivering until it stops.
            let mut saw_not_ready = false;
            let mut delivered_while_draining = false;
            while a.is_running() {
                saw_not_ready |= a.ready().await == Some(503);
                delivered_while_draining |= delivered.load(Ordering::SeqCst) > at_term + FOLLOWERS;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(saw_not_ready, "/ready never answered 503 during the drain");
            assert!(delivered_while_draining, "the streams stopped delivering during the drain");
        }
        let status = a.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "batond exited with {status} after SIGTERM:\n{}", a.log());
        let stopped_after = termed.elapsed();
        a.restart().await;
        let acked_while_a_was_away = progress.acked.load(Ordering::SeqCst) - acked_at_term;
        a_back.send_replace(true);
        eprintln!(
            "batond A stopped {stopped_after:.1?} after SIGTERM, back after {:.1?}; {acked_while_a_was_away} appends meanwhile",
            termed.elapsed()
        );
        assert!(acked_while_a_was_away > 0, "the appends through B went on while A was away");

        let acks = join_writers(tasks).await;
        progress.report("SIGTERM during streams");
        for (i, f) in followers.into_iter().enumerate() {
            let seqs = f.await.expect("a follower failed");
            assert!(seqs.iter().copied().eq(1..=n), "follower {i} did not receive 1..={n} once each, in order");
        }
        let streams = raw.await.expect("the raw follower failed");
        assert!(streams >= 2, "the raw follower's stream never broke");
        assert_exactly_once(&client(&b, &key), session, &counts, &acks).await;
    });
}

// ---- 4. Scale-out: three replicas, a read replica, faults ----

#[test]
fn three_replicas_with_a_read_replica_under_faults_lose_nothing() {
    scenario("three replicas and a read replica", async {
        let primary = PgCluster::start().await;
        let env = Batond::postgres_env(&primary.serving_url(), &primary.owner_url());
        let tenant = baton_testkit::tenant();
        let key = Batond::create_key(&env, &tenant, "writer");
        let standby = primary.standby("");
        let Some(redis) = RedisServer::start().await else { return };
        let mut env = env;
        env.push(("DATABASE_READ_URL".into(), standby.serving_url()));
        env.push(("REDIS_URL".into(), redis.url()));
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(Batond::start(env.clone(), &[]).await);
        }

        // Three sessions; each has a writer on every replica, and a follower on every replica.
        const SESSIONS: usize = 3;
        const APPENDS: usize = 60;
        let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("scale-{i}")).collect();
        for s in &sessions {
            create_session(&client(&replicas[0], &key), s).await;
        }
        let n = (replicas.len() * APPENDS) as u64;
        let delivered = Arc::new(AtomicUsize::new(0));
        let mut followers = Vec::new();
        for s in &sessions {
            for r in &replicas {
                let request = pb::StreamEntriesRequest { session_key: s.clone(), follow: true, ..Default::default() };
                let stream = client(r, &key).stream_entries(request).await.expect("open a follow stream");
                followers.push((s.clone(), tokio::spawn(follow(stream, n, Arc::clone(&delivered)))));
            }
        }
        let progress = Arc::new(Progress::default());
        let mut tasks = Vec::new();
        for s in &sessions {
            let writers = replicas.iter().enumerate().map(|(id, r)| Writer {
                pace: Duration::from_millis(5),
                read_back: true,
                ..Writer::new(client(r, &key), s, id, APPENDS, &progress)
            });
            tasks.push((s.clone(), start_writers(writers)));
        }

        let total = SESSIONS * replicas.len() * APPENDS;
        progress.reached(total / 4).await;
        let victim = &mut replicas[2];
        victim.kill();
        eprintln!("SIGKILL of one batond after {} acknowledged appends", progress.acked.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(500)).await;
        victim.restart().await;
        progress.reached(total / 2).await;
        standby.stop("fast");
        eprintln!("read replica stopped after {} acknowledged appends", progress.acked.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(500)).await;
        standby.start_again();
        eprintln!("read replica back after {} acknowledged appends", progress.acked.load(Ordering::SeqCst));

        for (session, tasks) in tasks {
            let acks = join_writers(tasks).await;
            assert_exactly_once(&client(&replicas[0], &key), &session, &[APPENDS; 3], &acks).await;
        }
        progress.report("three replicas and a read replica");
        for (i, (session, f)) in followers.into_iter().enumerate() {
            let seqs = f.await.expect("a follower failed");
            assert!(
                seqs.iter().copied().eq(1..=n),
                "follower {i} of {session} did not receive 1..={n} once each, in order"
            );
        }
        let served: usize = replicas.iter().map(|r| r.log().matches("read replica").count()).sum();
        eprintln!("replica state changes logged by the batonds: {served}");
    });
}

/// Whether `batond` keeps serving for a while after SIGTERM (`--shutdown-drain-secs`).
fn batond_has_drain_flag() -> bool {
    let help = std::process::Command::new(BATOND).arg("--help").output().expect("batond --help");
    String::from_utf8_lossy(&help.stdout).contains("--shutdown-drain-secs")
}

/// Collects a baton-client follow stream's seqs until it has `n`.
async fn follow(
    mut stream: impl futures::Stream<Item = Result<pb::Entry, baton_client::Error>> + Unpin,
    n: u64,
    delivered: Arc<AtomicUsize>,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < n {
        let entry = tokio::time::timeout(STALL, stream.next())
            .await
            .unwrap_or_else(|_| panic!("follower stalled after {} entries", seqs.len()))
            .expect("the stream ended")
            .expect("the stream failed");
        seqs.push(entry.seq);
        delivered.fetch_add(1, Ordering::SeqCst);
    }
    seqs
}

/// A follower on the bare stubs that resumes by hand after `UNAVAILABLE` or a lost connection,
/// from the last seq it got: the server itself must send each entry once (baton-client would
/// drop a repeated one).
/// Returns how many streams it opened.
async fn follow_raw(endpoint: String, key: String, session: String, n: u64, delivered: Arc<AtomicUsize>) -> usize {
    use pb::context_service_client::ContextServiceClient;
    let caller = common::Caller::new(None, Some(&key));
    let (mut last, mut reconnects, mut opened) = (0, 0, 0);
    while last < n {
        let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap().connect().await {
            Ok(channel) => channel,
            Err(_) => {
                reconnects += 1;
                assert!(reconnects < 400, "the raw follower could not reconnect");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut stub = ContextServiceClient::with_interceptor(channel, caller.clone());
        let request = pb::StreamEntriesRequest {
            session_key: session.clone(),
            after_seq: last,
            follow: true,
            ..Default::default()
        };
        let mut stream = match stub.stream_entries(request).await {
            Ok(response) => {
                opened += 1;
                response.into_inner()
            }
            Err(status) => {
                // UNAVAILABLE from a draining batond; CANCELLED when the request raced the
                // connection's close at the end of the drain (made on the client, the server
                // never saw the request): both are for resuming.
                assert!(
                    status.code() == tonic::Code::Unavailable
                        || (status.code() == tonic::Code::Cancelled && std::error::Error::source(&status).is_some()),
                    "opening the stream: {status:?}"
                );
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while last < n {
            match tokio::time::timeout(STALL, stream.message()).await.expect("the raw follower stalled") {
                Ok(Some(entry)) => {
                    assert_eq!(entry.seq, last + 1, "the raw follower got seq {} after {last}", entry.seq);
                    last = entry.seq;
                    delivered.fetch_add(1, Ordering::SeqCst);
                }
                Ok(None) => panic!("the follow stream ended after seq {last}"),
                Err(status) => {
                    // SIGTERM ends streams with UNAVAILABLE; a killed connection is UNKNOWN or
                    // similar, made on the client.
                    assert!(
                        matches!(
                            status.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Internal
                                | tonic::Code::Cancelled
                        ),
                        "the stream broke with {status:?}"
                    );
                    break;
                }
            }
        }
    }
    opened
}

// ---- 4. An outage is seen at once ----

/// With the database stopped, health turns NOT_SERVING and `/ready` 503 within about a second
/// (each `/ready` answering within its own bound), calls fail fast with UNAVAILABLE and a
/// RetryInfo delay instead of waiting out the pool, and everything comes back on its own.
#[test]
fn a_database_outage_is_seen_at_once_and_calls_fail_fast() {
    use baton_proto::v1::context_service_client::ContextServiceClient;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_types::StatusExt as _;

    scenario("database outage", async {
        let cluster = PgCluster::start().await;
        let env = Batond::postgres_env(&cluster.serving_url(), &cluster.owner_url());
        let tenant = baton_testkit::tenant();
        let key = Batond::create_key(&env, &tenant, "writer");
        let batond = Batond::start(env, &[]).await;
        let session = "faults-outage";
        create_session(&client(&batond, &key), session).await;

        let channel = tonic::transport::Endpoint::from_shared(batond.endpoint()).unwrap().connect().await.unwrap();
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
        let mut ctx = ContextServiceClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        });
        let mut health = HealthClient::new(channel);
        let serving = |health: &mut HealthClient<tonic::transport::Channel>| {
            let mut health = health.clone();
            async move {
                let check = tonic_health::pb::HealthCheckRequest { service: "baton.v1.ContextService".into() };
                health
                    .check(check)
                    .await
                    .map(|r| r.into_inner().status == ServingStatus::Serving as i32)
                    .unwrap_or(false)
            }
        };
        let append = |n: usize| pb::AppendEntriesRequest {
            session_key: session.into(),
            entries: vec![pb::NewEntry {
                kind: pb::EntryKind::Message.into(),
                author: "writer".into(),
                content: Some(pb::new_entry::Content::Text(format!("outage {n}"))),
                ..Default::default()
            }],
            ..Default::default()
        };
        ctx.append_entries(append(0)).await.expect("an append while the database is up");
        assert!(serving(&mut health).await);

        cluster.stop("fast");
        let down = Instant::now();
        // The first call meets the broken connection; it and every later one fail fast.
        for n in 1..=5 {
            let started = Instant::now();
            let e = ctx.append_entries(append(n)).await.expect_err("an append with the database down");
            assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
            assert!(started.elapsed() < Duration::from_millis(1500), "append {n} took {:?}", started.elapsed());
            let retry = e.get_details_retry_info().and_then(|r| r.retry_delay);
            assert!(retry.is_some(), "UNAVAILABLE carries RetryInfo: {e:?}");
        }
        while serving(&mut health).await {
            assert!(
                down.elapsed() < Duration::from_millis(1500),
                "health still SERVING {:?} after the stop",
                down.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        eprintln!("health NOT_SERVING {:?} after the database stopped", down.elapsed());
        for _ in 0..3 {
            let asked = Instant::now();
            let ready = http_get(batond.admin_port, "/ready", Duration::from_secs(3)).await.map(|(s, _)| s);
            assert_eq!(ready, Some(503), "/ready during the outage");
            assert!(asked.elapsed() < Duration::from_millis(1200), "/ready took {:?}", asked.elapsed());
        }

        cluster.start_again();
        let back = Instant::now();
        while !serving(&mut health).await {
            assert!(back.elapsed() < Duration::from_secs(15), "health not SERVING 15 s after the database came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("health SERVING {:?} after the database came back", back.elapsed());
        assert_eq!(batond.ready().await, Some(200));
        let r = ctx.append_entries(append(6)).await.expect("an append after the outage").into_inner();
        assert_eq!(r.first_seq, 2, "the appends refused during the outage wrote nothing");
    });
}
