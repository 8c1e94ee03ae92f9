//! Handoff summaries from the incremental summary state (kept by the appends, rebuilt after
//! redaction, compaction and forks) equal the summary computed from scratch over the entries
//! (`reference`, the pre-state fold, with the documented bound on the "more" counts), on both
//! stores: randomized appends, the lifecycle operations, and concurrent appenders.
//!
//! SQLite always runs. PostgreSQL runs on `BATON_TEST_DATABASE_URL`; without it its cases fail
//! (`BATON_REQUIRE_SERVICES=0` makes them say loudly that they were skipped instead).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use baton_server::domain::summary::{MAX_COUNTED, MAX_NAMES};
use baton_server::domain::{
    Audit, Content, Entry, EntryKind, Handoff, HandoffStatus, HandoffType, Metadata, Micros, NewEntry, Redaction,
};
use baton_server::store::lifecycle::NewFork;
use baton_server::store::sqlite::SqliteStore;
use baton_server::store::{AppendCommand, EntryQuery, NewHandoff, NewSession, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

type Db = Arc<dyn Store>;

/// The cases' epoch, and a deadline no one reaches.
const T0: Micros = Micros(1_750_004_800_000_000);
const FAR: Micros = Micros(4_102_444_800_000_000);

struct Harness {
    store: Db,
    _dir: Option<tempfile::TempDir>,
}

async fn make_sqlite() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).await.expect("open the SQLite store");
    Some(Harness { store: Arc::new(store), _dir: Some(dir) })
}

async fn make_postgres() -> Option<Harness> {
    Some(Harness { store: Arc::new(baton_testkit::postgres_store(16).await?), _dir: None })
}

macro_rules! summary_tests {
    ($backend:ident, $make:expr; $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    #[allow(clippy::redundant_closure_call)]
                    let Some(harness) = ($make)().await else { return };
                    super::$case(harness.store.clone()).await;
                }
            )+
        }
    };
}

summary_tests!(sqlite, super::make_sqlite;
    randomized_appends_summarize_as_from_scratch,
    name_lists_are_bounded_and_say_so,
    redaction_compaction_and_forks_keep_the_summary_exact,
    concurrent_appenders_and_handoffs_agree_with_from_scratch,
);
summary_tests!(postgres, super::make_postgres;
    randomized_appends_summarize_as_from_scratch,
    name_lists_are_bounded_and_say_so,
    redaction_compaction_and_forks_keep_the_summary_exact,
    concurrent_appenders_and_handoffs_agree_with_from_scratch,
);

// ---- the reference: the summary computed from scratch over the stored entries ----

const LAST_MESSAGES: usize = 3;
const QUOTE_CHARS: usize = 280;

#[derive(Default)]
struct RefNames {
    names: Vec<String>,
    /// Every distinct name beyond the first `MAX_NAMES`.
    more: Vec<String>,
}

impl RefNames {
    fn add(&mut self, name: &str) {
        if name.is_empty() || self.names.iter().any(|n| n == name) || self.more.iter().any(|n| n == name) {
            return;
        }
        if self.names.len() < MAX_NAMES { self.names.push(name.to_owned()) } else { self.more.push(name.to_owned()) }
    }

    fn render(&self) -> String {
        let mut s = self.names.join(", ");
        if self.more.len() > MAX_COUNTED {
            let _ = write!(s, " and more than {MAX_COUNTED} more");
        } else if !self.more.is_empty() {
            let _ = write!(s, " and {} more", self.more.len());
        }
        s
    }
}

fn meta_str<'a>(e: &'a Entry, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| e.metadata.get(*k).and_then(|v| v.as_str())).filter(|s| !s.is_empty())
}

/// The summary of `entries` (all of a session's stored entries up to a seq), as the
/// pre-state fold computed it, with the bound on the "more" counts.
fn reference(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "The session has no entries yet.".to_owned();
    }
    let mut tokens = 0u64;
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut participants, mut files, mut tools) = (RefNames::default(), RefNames::default(), RefNames::default());
    let mut last: Vec<(u64, String, String)> = Vec::new();
    for e in entries {
        tokens += u64::from(e.token_count);
        *by_kind.entry(e.kind.as_str()).or_default() += 1;
        participants.add(&e.author);
        match e.kind {
            EntryKind::File => {
                if let Some(name) = meta_str(e, &["path", "file", "filename", "name", "uri"]) {
                    files.add(name);
                } else if !e.media_type.is_empty() {
                    files.add(&format!("({})", e.media_type));
                }
            }
            EntryKind::ToolCall | EntryKind::ToolResult => {
                if let Some(name) = meta_str(e, &["tool", "tool_name", "name", "function"]) {
                    tools.add(name);
                }
            }
            EntryKind::Message => {
                if let Some(text) = e.content.text() {
                    let quote: String = text.chars().take(QUOTE_CHARS).collect();
                    let quote = if text.chars().nth(QUOTE_CHARS).is_some() { quote + "…" } else { quote };
                    let who = if e.role.is_empty() { e.author.clone() } else { format!("{} ({})", e.author, e.role) };
                    last.push((e.seq, who, quote.replace('\n', " ")));
                }
            }
            _ => {}
        }
    }
    let last_seq = entries.iter().map(|e| e.seq).max().unwrap_or_default();
    let mut s = String::new();
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(s, "{} entries up to seq {last_seq} (~{tokens} tokens): {}.", entries.len(), kinds.join(", "));
    let _ = writeln!(s, "Participants: {}.", participants.render());
    if !files.names.is_empty() {
        let _ = writeln!(s, "Files: {}.", files.render());
    }
    if !tools.names.is_empty() {
        let _ = writeln!(s, "Tools: {}.", tools.render());
    }
    let last = &last[last.len().saturating_sub(LAST_MESSAGES)..];
    if !last.is_empty() {
        let _ = writeln!(s, "Last messages:");
        for (seq, who, text) in last {
            let _ = writeln!(s, "- #{seq} {who}: {text}");
        }
    }
    s.truncate(s.trim_end().len());
    s
}

// ---- helpers ----

fn tenant() -> String {
    format!("sum-{}", uuid::Uuid::now_v7())
}

async fn session(db: &Db, tenant: &str, key: &str) {
    let new = NewSession {
        tenant: tenant.into(),
        session_key: key.into(),
        agent: "planner".into(),
        metadata: Metadata::new(),
        now: T0,
        expires_at: None,
    };
    db.create_session(new).await.expect("create session");
}

fn new_entry(kind: EntryKind, author: &str, content: Content, meta: serde_json::Value, media_type: &str) -> NewEntry {
    NewEntry {
        kind,
        role: if author.len().is_multiple_of(2) { "assistant".into() } else { String::new() },
        author: author.into(),
        token_count: u32::try_from(content.len() / 4 + 1).unwrap_or(1),
        content,
        media_type: media_type.into(),
        metadata: meta.as_object().cloned().unwrap_or_default(),
    }
}

/// A random entry: names drawn from pools of `names` (so they repeat), messages of every
/// length (some above the quote's length, some with newlines, some binary).
fn random_entry(rng: &mut StdRng, names: usize) -> NewEntry {
    let author = format!("agent-{}", rng.random_range(0..names.min(30)));
    let pick = |rng: &mut StdRng, what: &str| format!("{what}-{}", rng.random_range(0..names));
    match rng.random_range(0..10) {
        0..=3 => {
            let len = [5, 40, 300][rng.random_range(0..3)];
            let text: String =
                (0..len).map(|i| if i % 17 == 16 { '\n' } else { char::from(b'a' + (i % 26) as u8) }).collect();
            new_entry(EntryKind::Message, &author, Content::Text(format!("{author} says {text}")), json!({}), "")
        }
        4 => new_entry(EntryKind::Message, &author, Content::Data(vec![1, 2, 3]), json!({}), "image/png"),
        5 => {
            let meta = match rng.random_range(0..4) {
                0 => json!({"path": pick(rng, "src/file")}),
                1 => json!({"uri": pick(rng, "s3://bucket/obj"), "path": ""}),
                2 => json!({}),
                _ => json!({"filename": pick(rng, "notes"), "path": 7}),
            };
            let media = if rng.random_bool(0.5) { "text/plain" } else { "" };
            new_entry(EntryKind::File, &author, Content::Text("contents".into()), meta, media)
        }
        6 | 7 => {
            let kind = if rng.random_bool(0.5) { EntryKind::ToolCall } else { EntryKind::ToolResult };
            let meta = match rng.random_range(0..3) {
                0 => json!({"tool": pick(rng, "tool")}),
                1 => json!({"function": pick(rng, "fn"), "name": ""}),
                _ => json!({}),
            };
            new_entry(kind, &author, Content::Text("{}".into()), meta, "application/json")
        }
        8 => new_entry(EntryKind::System, "system", Content::Text("policy".into()), json!({}), ""),
        _ => new_entry(EntryKind::Summary, &author, Content::Text("so far so good".into()), json!({}), ""),
    }
}

async fn append(db: &Db, tenant: &str, key: &str, entries: Vec<NewEntry>) -> u64 {
    let cmd = AppendCommand {
        tenant: tenant.into(),
        session_key: key.into(),
        entries,
        idempotency_key: None,
        expected_last_seq: None,
        trace_id: String::new(),
        now: T0,
    };
    db.append(cmd).await.expect("append").session.last_seq
}

async fn stored(db: &Db, tenant: &str, key: &str, up_to: u64) -> Vec<Entry> {
    let mut all = Vec::new();
    loop {
        let q = EntryQuery {
            tenant: tenant.into(),
            session_key: key.into(),
            after_seq: all.last().map_or(0, |e: &Entry| e.seq),
            before_seq: Some(up_to + 1),
            kinds: Vec::new(),
            limit: 1000,
        };
        let page = db.list_entries(&q).await.expect("list entries");
        let n = page.len();
        all.extend(page);
        if n < 1000 {
            return all;
        }
    }
}

async fn request_handoff(db: &Db, tenant: &str, key: &str) -> Handoff {
    let new = NewHandoff {
        handoff: Handoff {
            handoff_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.into(),
            session_key: key.into(),
            from_agent: "planner".into(),
            to_agent: "coder".into(),
            kind: HandoffType::ContextTransfer,
            status: HandoffStatus::Pending,
            instructions: String::new(),
            summary: String::new(),
            up_to_seq: 0,
            max_tokens: 8000,
            reason: String::new(),
            created_at: T0,
            updated_at: T0,
            deadline: Some(FAR),
        },
    };
    db.create_handoff(new).await.expect("create handoff").handoff
}

/// Requests a handoff and checks its summary against the one computed from scratch.
async fn assert_exact(db: &Db, tenant: &str, key: &str, when: &str) -> Handoff {
    let h = request_handoff(db, tenant, key).await;
    let want = reference(&stored(db, tenant, key, h.up_to_seq).await);
    assert_eq!(h.summary, want, "{when}: summary of {key} up to {}", h.up_to_seq);
    h
}

fn audit(tenant: &str, key: &str, action: &'static str) -> Audit {
    Audit {
        tenant: tenant.into(),
        action,
        session_key: key.into(),
        principal: String::new(),
        agent: "planner".into(),
        seqs: String::new(),
        reason: "test".into(),
        at: T0,
    }
}

// ---- cases ----

async fn randomized_appends_summarize_as_from_scratch(db: Db) {
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let t = tenant();
    session(&db, &t, "s").await;
    let h = assert_exact(&db, &t, "s", &format!("seed {seed}, empty")).await;
    assert_eq!(h.summary, "The session has no entries yet.");
    for round in 0..12 {
        let batches = rng.random_range(1..6);
        for _ in 0..batches {
            let n = rng.random_range(1..25);
            let entries = (0..n).map(|_| random_entry(&mut rng, 60)).collect();
            append(&db, &t, "s", entries).await;
        }
        assert_exact(&db, &t, "s", &format!("seed {seed}, round {round}")).await;
    }
}

async fn name_lists_are_bounded_and_say_so(db: Db) {
    let t = tenant();
    session(&db, &t, "s").await;
    let file =
        |i: usize| new_entry(EntryKind::File, "coder", Content::Text("x".into()), json!({"path": format!("f{i}")}), "");
    // Exactly counted: MAX_NAMES named and MAX_COUNTED more, each seen twice.
    for round in 0..2 {
        let entries = (0..MAX_NAMES + MAX_COUNTED).map(file).collect();
        append(&db, &t, "s", entries).await;
        let h = assert_exact(&db, &t, "s", &format!("at the bound, round {round}")).await;
        assert!(h.summary.contains(&format!("f19 and {MAX_COUNTED} more.")), "{}", h.summary);
    }
    // One distinct name more: the count becomes a lower bound, and stays one.
    append(&db, &t, "s", vec![file(MAX_NAMES + MAX_COUNTED)]).await;
    let h = assert_exact(&db, &t, "s", "past the bound").await;
    assert!(h.summary.contains(&format!("f19 and more than {MAX_COUNTED} more.")), "{}", h.summary);
    append(&db, &t, "s", (500..700).map(file).collect()).await;
    assert_exact(&db, &t, "s", "far past the bound").await;
}

async fn redaction_compaction_and_forks_keep_the_summary_exact(db: Db) {
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let t = tenant();
    session(&db, &t, "s").await;
    let mut last = 0;
    for _ in 0..6 {
        let entries = (0..rng.random_range(10..40)).map(|_| random_entry(&mut rng, 40)).collect();
        last = append(&db, &t, "s", entries).await;
    }
    assert_exact(&db, &t, "s", &format!("seed {seed}, before")).await;

    // Redact the newest messages (quoted), file and tool entries (named), and a few others.
    let all = stored(&db, &t, "s", last).await;
    let mut seqs: Vec<u64> = all.iter().rev().filter(|e| e.kind == EntryKind::Message).take(2).map(|e| e.seq).collect();
    seqs.extend(all.iter().filter(|e| matches!(e.kind, EntryKind::File | EntryKind::ToolCall)).take(5).map(|e| e.seq));
    seqs.push(rng.random_range(1..=last));
    seqs.sort_unstable();
    seqs.dedup();
    let redaction = Redaction { by: "planner".into(), at: T0, reason: "test".into() };
    db.redact_entries(&t, "s", &seqs, None, redaction, audit(&t, "s", "redact")).await.expect("redact");
    assert_exact(&db, &t, "s", &format!("seed {seed}, after redacting {seqs:?}")).await;
    let more = (0..5).map(|_| random_entry(&mut rng, 40)).collect();
    last = append(&db, &t, "s", more).await;
    assert_exact(&db, &t, "s", &format!("seed {seed}, appended after redaction")).await;

    // Compact the older half (past any summary entry: forced).
    let cut = last / 2;
    let (_, removed) = db.compact_session(&t, "s", cut, true, audit(&t, "s", "compact")).await.expect("compact");
    assert_eq!(removed, cut - 1);
    assert_exact(&db, &t, "s", &format!("seed {seed}, after compacting below {cut}")).await;
    let more = (0..5).map(|_| random_entry(&mut rng, 40)).collect();
    last = append(&db, &t, "s", more).await;
    assert_exact(&db, &t, "s", &format!("seed {seed}, appended after compaction")).await;

    // Fork in the middle: the fork's summary covers what it copied, the source's is unchanged.
    let at = rng.random_range(cut..last);
    let fork = NewFork {
        tenant: t.clone(),
        source_key: "s".into(),
        at_seq: at,
        session_key: "f".into(),
        agent: "coder".into(),
        now: T0,
        expires_at: None,
        idempotency_key: None,
    };
    db.fork_session(fork, audit(&t, "s", "fork")).await.expect("fork");
    let h = assert_exact(&db, &t, "f", &format!("seed {seed}, fork at {at}")).await;
    assert_eq!(h.up_to_seq, at);
    assert_exact(&db, &t, "s", &format!("seed {seed}, source after the fork")).await;
    let more = (0..7).map(|_| random_entry(&mut rng, 40)).collect();
    append(&db, &t, "f", more).await;
    assert_exact(&db, &t, "f", &format!("seed {seed}, appended to the fork")).await;

    // Compacting everything leaves no entries.
    let last = append(&db, &t, "s", vec![random_entry(&mut rng, 40)]).await;
    db.compact_session(&t, "s", last + 1, true, audit(&t, "s", "compact")).await.expect("compact all");
    let h = assert_exact(&db, &t, "s", "compacted away").await;
    assert_eq!(h.summary, "The session has no entries yet.");
}

async fn concurrent_appenders_and_handoffs_agree_with_from_scratch(db: Db) {
    let seed: u64 = rand::random();
    let t = tenant();
    for key in ["a", "b", "c"] {
        session(&db, &t, key).await;
    }
    // Appenders on three sessions at once (the PostgreSQL coalescer batches them together),
    // and handoff requests on them meanwhile: each handoff's summary is exact at its up_to_seq.
    let mut tasks = Vec::new();
    for w in 0..12u64 {
        let (db, t) = (db.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w));
            let key = ["a", "b", "c"][(w % 3) as usize];
            for _ in 0..15 {
                let entries = (0..rng.random_range(1..4)).map(|_| random_entry(&mut rng, 50)).collect();
                append(&db, &t, key, entries).await;
            }
        }));
    }
    let mut handoffs = Vec::new();
    for i in 0..9 {
        let key = ["a", "b", "c"][i % 3];
        handoffs.push((key, request_handoff(&db, &t, key).await));
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.expect("appender");
    }
    for (key, h) in handoffs {
        assert_eq!(h.summary, reference(&stored(&db, &t, key, h.up_to_seq).await), "seed {seed}: {key} during appends");
    }
    for key in ["a", "b", "c"] {
        assert_exact(&db, &t, key, &format!("seed {seed}, after the appenders")).await;
    }
}
