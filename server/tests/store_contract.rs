//! The store contract: one suite of behaviours every `Store` backend must show, run against
//! each backend by `contract_tests!`.
//!
//! Every case works in a tenant of its own, so backends that share a database (PostgreSQL)
//! can run cases in parallel and run after run. Time is the `now` the cases pass in, never
//! the clock. Only the expiry cases use deadlines and expiries near `T0`, because the
//! sweepers are global; any other deadline is far in the future.
//!
//! SQLite always runs. PostgreSQL runs on `BATON_TEST_DATABASE_URL`; without it its cases
//! fail (`BATON_REQUIRE_SERVICES=0` makes them say loudly that they were skipped instead).

use std::collections::HashMap;
use std::sync::Arc;

use baton_server::domain::rules::{self, Action};
use baton_server::domain::search::Query;
use baton_server::domain::validate::MAX_TOKENS;
use baton_server::domain::{
    Content, Entry, EntryKind, Error, Handoff, HandoffEvent, HandoffEventType, HandoffStatus, HandoffType, Metadata,
    Micros, NewEntry, SessionStatus, tokens,
};
use baton_server::store::sqlite::SqliteStore;
use baton_server::store::{
    AppendCommand, AppendOutcome, Changed, EntryQuery, HandoffQuery, NewHandoff, NewSession, SearchQuery, SessionPatch,
    SessionQuery, Store,
};
use serde_json::json;

/// A backend under test and whatever must outlive it.
struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    fn new(store: impl Store) -> Harness {
        Harness { store: Arc::new(store), _dir: None }
    }
}

async fn make_sqlite() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).await.expect("open the SQLite store");
    Some(Harness { _dir: Some(dir), ..Harness::new(store) })
}

/// The PostgreSQL store on `BATON_TEST_DATABASE_URL`, migrated (the test kit's one setup):
/// missing, the case fails, or skips loudly with `BATON_REQUIRE_SERVICES=0`.
async fn make_postgres() -> Option<Harness> {
    Some(Harness::new(baton_testkit::postgres_store(8).await?))
}

/// `contract_tests!(name, make)` runs every case against the backend `make` opens: `make`
/// is an async function giving `Option<Harness>`, `None` when the backend is not configured
/// here (`make` says so, or fails when services are required).
macro_rules! contract_tests {
    ($backend:ident, $make:expr) => {
        contract_tests!(@cases $backend, $make;
            session_create_get_and_duplicate,
            session_list_filters_and_paging,
            session_update_patch_and_illegal_status,
            append_assigns_consecutive_seqs,
            concurrent_appends_are_gap_free,
            idempotent_append_replays,
            expected_last_seq_mismatch_writes_nothing,
            closed_or_expired_session_rejects_appends,
            expire_sessions_sweeps_due_open_sessions,
            list_entries_ranges_and_kinds,
            window_starts_at_the_latest_summary,
            search_ranks_and_marks_snippets,
            search_scopes_to_tenant_and_session,
            handoff_create_snapshots_up_to_seq,
            handoff_legal_transitions,
            handoff_illegal_transitions_change_nothing,
            full_handoff_transfers_ownership,
            expire_handoffs_sweeps_due_pending,
            inbox_cursors_are_gap_free_per_agent,
            pending_inbox_and_head,
            inbox_after_resumes,
            concurrent_handoffs_get_gap_free_cursors,
            crossing_handoffs_neither_deadlock_nor_leave_gaps,
            max_tokens_are_kept_up_to_the_domain_limit_and_refused_above_it,
            a_sweep_skips_a_refused_handoff_and_expires_the_rest,
            a_resolved_handoff_never_reopens_an_ended_session,
            waking_a_dormant_session_is_an_update,
            every_window_agrees_with_the_budget_rule,
            every_handoff_tail_agrees_with_the_budget_rule,
        );
    };
    (@cases $backend:ident, $make:expr; $($case:ident),+ $(,)?) => {
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

contract_tests!(sqlite, super::make_sqlite);
contract_tests!(postgres, super::make_postgres);

type Db = Arc<dyn Store>;

/// Held by the cases that sweep: sweeps are global (every due row of every tenant, locked
/// while swept), so on a shared database two sweeping cases at once would take each other's
/// rows.
static SWEEPING: std::sync::LazyLock<tokio::sync::Mutex<()>> = std::sync::LazyLock::new(Default::default);

/// The cases' epoch: 2025-06-15T16:26:40Z.
const T0: Micros = Micros(1_750_004_800_000_000);
/// A deadline no sweep in this suite reaches.
const FAR: Micros = Micros(4_102_444_800_000_000);

fn at(seconds: i64) -> Micros {
    Micros(T0.0 + seconds * 1_000_000)
}

fn tenant() -> String {
    format!("t-{}", uuid::Uuid::now_v7())
}

fn meta(v: serde_json::Value) -> Metadata {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn entry(kind: EntryKind, author: &str, text: &str) -> NewEntry {
    let content = Content::Text(text.to_owned());
    NewEntry {
        kind,
        role: if kind == EntryKind::Message { "user".into() } else { String::new() },
        author: author.to_owned(),
        token_count: tokens::estimate(&content),
        content,
        media_type: "text/plain".into(),
        metadata: Metadata::new(),
    }
}

fn msg(text: &str) -> NewEntry {
    entry(EntryKind::Message, "alice", text)
}

fn data(bytes: &[u8]) -> NewEntry {
    let content = Content::Data(bytes.to_vec());
    NewEntry {
        kind: EntryKind::File,
        role: String::new(),
        author: "alice".into(),
        token_count: tokens::estimate(&content),
        content,
        media_type: "application/octet-stream".into(),
        metadata: meta(json!({ "path": "a.bin" })),
    }
}

async fn session(db: &Db, tenant: &str, key: &str, agent: &str, now: Micros) -> baton_server::domain::Session {
    db.create_session(NewSession {
        tenant: tenant.into(),
        session_key: key.into(),
        agent: agent.into(),
        metadata: Metadata::new(),
        now,
        expires_at: None,
    })
    .await
    .expect("create session")
}

fn append_cmd(tenant: &str, key: &str, entries: Vec<NewEntry>, now: Micros) -> AppendCommand {
    AppendCommand {
        tenant: tenant.into(),
        session_key: key.into(),
        entries,
        idempotency_key: None,
        expected_last_seq: None,
        trace_id: String::new(),
        now,
    }
}

async fn append(db: &Db, tenant: &str, key: &str, entries: Vec<NewEntry>, now: Micros) -> AppendOutcome {
    db.append(append_cmd(tenant, key, entries, now)).await.expect("append")
}

fn entries_query(tenant: &str, key: &str) -> EntryQuery {
    EntryQuery {
        tenant: tenant.into(),
        session_key: key.into(),
        after_seq: 0,
        before_seq: None,
        kinds: Vec::new(),
        limit: 1000,
    }
}

async fn all_seqs(db: &Db, tenant: &str, key: &str) -> Vec<u64> {
    db.list_entries(&entries_query(tenant, key)).await.expect("list entries").iter().map(|e| e.seq).collect()
}

fn new_handoff(tenant: &str, key: &str, from: &str, to: &str, kind: HandoffType, now: Micros) -> NewHandoff {
    NewHandoff {
        handoff: Handoff {
            handoff_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.into(),
            session_key: key.into(),
            from_agent: from.into(),
            to_agent: to.into(),
            kind,
            status: HandoffStatus::Pending,
            instructions: "carry on with the release".into(),
            summary: "two agents, one release".into(),
            up_to_seq: 0,
            max_tokens: 8000,
            reason: String::new(),
            created_at: now,
            updated_at: now,
            deadline: Some(FAR),
        },
    }
}

async fn handoff(db: &Db, tenant: &str, key: &str, from: &str, to: &str, kind: HandoffType, now: Micros) -> Changed {
    db.create_handoff(new_handoff(tenant, key, from, to, kind, now)).await.expect("create handoff")
}

async fn act(
    db: &Db,
    h: &Handoff,
    action: Action,
    agent: &str,
    reason: Option<&str>,
    now: Micros,
) -> Result<Changed, Error> {
    db.change_handoff(&h.tenant, &h.handoff_id, now, &|current: &Handoff| {
        rules::decide(current, action, agent, reason, now)
    })
    .await
}

/// The expiry sweep as the domain runs it (`rules::sweep`).
async fn sweep(db: &Db, now: Micros) -> Vec<Changed> {
    db.expire_handoffs(now, 1000).await.expect("sweep")
}

async fn inbox(db: &Db, tenant: &str, agent: &str) -> Vec<HandoffEvent> {
    db.inbox_after(tenant, agent, 0, 1000).await.expect("inbox")
}

fn assert_not_found(r: Result<impl std::fmt::Debug, Error>, what: &str) {
    match r {
        Err(Error::NotFound { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected NotFound {what}, got {other:?}"),
    }
}

fn assert_precondition(r: Result<impl std::fmt::Debug, Error>, reason: &str) {
    match r {
        Err(Error::FailedPrecondition { reason: r, .. }) => assert_eq!(r, reason),
        other => panic!("expected FailedPrecondition {reason}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Sessions

async fn session_create_get_and_duplicate(db: Db) {
    let t = tenant();
    let created = db
        .create_session(NewSession {
            tenant: t.clone(),
            session_key: "s1".into(),
            agent: "alice".into(),
            metadata: meta(json!({ "project": "baton", "n": 3, "nested": { "ok": true } })),
            now: at(1),
            expires_at: Some(at(3600)),
        })
        .await
        .unwrap();
    assert_eq!(created.tenant, t);
    assert_eq!(created.session_key, "s1");
    assert_eq!((created.created_by.as_str(), created.owner.as_str()), ("alice", "alice"));
    assert_eq!(created.status, SessionStatus::Active);
    assert_eq!((created.last_seq, created.last_summary_seq), (0, 0));
    assert_eq!((created.created_at, created.updated_at, created.last_activity_at), (at(1), at(1), at(1)));
    assert_eq!(created.expires_at, Some(at(3600)));
    assert_eq!(created.metadata, meta(json!({ "project": "baton", "n": 3, "nested": { "ok": true } })));

    assert_eq!(db.get_session(&t, "s1").await.unwrap(), created);

    let dup = db
        .create_session(NewSession {
            tenant: t.clone(),
            session_key: "s1".into(),
            agent: "bob".into(),
            metadata: Metadata::new(),
            now: at(2),
            expires_at: None,
        })
        .await;
    match dup {
        Err(Error::AlreadyExists { what, key }) => assert_eq!((what, key.as_str()), ("session", "s1")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(db.get_session(&t, "s1").await.unwrap(), created, "the duplicate changed nothing");

    // Keys are per tenant.
    let other = tenant();
    let elsewhere = session(&db, &other, "s1", "bob", at(2)).await;
    assert_ne!(elsewhere.id, created.id);
    assert_not_found(db.get_session(&t, "missing").await, "session");
    assert_not_found(db.get_session(&tenant(), "s1").await, "session");
}

async fn session_list_filters_and_paging(db: Db) {
    let t = tenant();
    let a = session(&db, &t, "a", "alice", at(1)).await;
    let b = session(&db, &t, "b", "bob", at(2)).await;
    session(&db, &t, "c", "alice", at(3)).await;
    let d = session(&db, &t, "d", "carol", at(4)).await;
    let e = session(&db, &t, "e", "bob", at(5)).await;
    session(&db, &tenant(), "x", "alice", at(5)).await;

    // d becomes owned by alice through an accepted full handoff; c is closed.
    let h = handoff(&db, &t, "d", "carol", "alice", HandoffType::FullHandoff, at(6)).await;
    act(&db, &h.handoff, Action::Accept, "alice", None, at(7)).await.unwrap();
    db.update_session(&t, "c", SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() }, at(8))
        .await
        .unwrap();

    let list = |agent: Option<&str>, status: Option<SessionStatus>, before_id: Option<i64>, limit: u32| {
        let q = SessionQuery { tenant: t.clone(), agent: agent.map(str::to_owned), status, before_id, limit };
        let db = db.clone();
        async move { db.list_sessions(&q).await.unwrap().into_iter().map(|s| s.session_key).collect::<Vec<_>>() }
    };

    assert_eq!(list(None, None, None, 100).await, ["e", "d", "c", "b", "a"]);
    // Keyset paging: each page starts below the previous page's last id.
    assert_eq!(list(None, None, None, 2).await, ["e", "d"]);
    assert_eq!(list(None, None, Some(d.id), 2).await, ["c", "b"]);
    assert_eq!(list(None, None, Some(b.id), 2).await, ["a"]);
    assert_eq!(list(None, None, Some(a.id), 2).await, Vec::<String>::new());
    // Created by or owned by.
    assert_eq!(list(Some("alice"), None, None, 100).await, ["d", "c", "a"]);
    assert_eq!(list(Some("carol"), None, None, 100).await, ["d"]);
    assert_eq!(list(Some("bob"), None, Some(e.id), 100).await, ["b"]);
    assert_eq!(list(Some("nobody"), None, None, 100).await, Vec::<String>::new());
    // By status, and combined.
    assert_eq!(list(None, Some(SessionStatus::Closed), None, 100).await, ["c"]);
    assert_eq!(list(None, Some(SessionStatus::HandedOff), None, 100).await, ["d"]);
    assert_eq!(list(None, Some(SessionStatus::Active), None, 100).await, ["e", "b", "a"]);
    assert_eq!(list(Some("alice"), Some(SessionStatus::Active), None, 100).await, ["a"]);
}

async fn session_update_patch_and_illegal_status(db: Db) {
    let t = tenant();
    let s = session(&db, &t, "s", "alice", at(1)).await;

    let patched = db
        .update_session(
            &t,
            "s",
            SessionPatch { metadata: Some(meta(json!({ "k": "v" }))), ..Default::default() },
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata, meta(json!({ "k": "v" })));
    assert_eq!(patched.status, SessionStatus::Active);
    assert_eq!(patched.updated_at, at(2));
    assert_eq!((patched.created_at, patched.last_activity_at), (s.created_at, s.last_activity_at));

    let with_expiry = db
        .update_session(&t, "s", SessionPatch { expires_at: Some(Some(FAR)), ..Default::default() }, at(3))
        .await
        .unwrap();
    assert_eq!(with_expiry.expires_at, Some(FAR));
    assert_eq!(with_expiry.metadata, meta(json!({ "k": "v" })), "an absent field is left as it is");
    let without =
        db.update_session(&t, "s", SessionPatch { expires_at: Some(None), ..Default::default() }, at(4)).await.unwrap();
    assert_eq!(without.expires_at, None);

    let dormant = db
        .update_session(&t, "s", SessionPatch { status: Some(SessionStatus::Dormant), ..Default::default() }, at(5))
        .await
        .unwrap();
    assert_eq!(dormant.status, SessionStatus::Dormant);

    // HANDED_OFF and EXPIRED are reached only through handoffs and expiry.
    for to in [SessionStatus::HandedOff, SessionStatus::Expired] {
        let r = db.update_session(&t, "s", SessionPatch { status: Some(to), ..Default::default() }, at(6)).await;
        assert_precondition(r, "ILLEGAL_TRANSITION");
    }
    let closed = db
        .update_session(&t, "s", SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() }, at(7))
        .await
        .unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    // A closed session stays closed.
    for to in [SessionStatus::Active, SessionStatus::Dormant] {
        let r = db.update_session(&t, "s", SessionPatch { status: Some(to), ..Default::default() }, at(8)).await;
        assert_precondition(r, "ILLEGAL_TRANSITION");
    }
    assert_eq!(db.get_session(&t, "s").await.unwrap(), closed, "rejected patches wrote nothing");

    assert_not_found(db.update_session(&t, "missing", SessionPatch::default(), at(9)).await, "session");
}

// ---------------------------------------------------------------------------------------
// Appends

async fn append_assigns_consecutive_seqs(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    db.update_session(&t, "s", SessionPatch { status: Some(SessionStatus::Dormant), ..Default::default() }, at(2))
        .await
        .unwrap();

    let first = db
        .append(AppendCommand {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            ..append_cmd(&t, "s", vec![msg("hello"), data(&[0, 1, 2, 255]), msg("world")], at(3))
        })
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(first.session.last_seq, 3);
    assert_eq!(first.session.status, SessionStatus::Active, "an append wakes a dormant session");
    assert_eq!(first.session.last_activity_at, at(3));
    assert_eq!(first.session.last_summary_seq, 0);

    let stored = db.list_entries(&entries_query(&t, "s")).await.unwrap();
    assert_eq!(stored, first.entries, "the append returns what it stored");
    let e = &stored[1];
    assert_eq!(e.session_key, "s");
    assert_eq!(e.kind, EntryKind::File);
    assert_eq!(e.content, Content::Data(vec![0, 1, 2, 255]));
    assert_eq!(e.media_type, "application/octet-stream");
    assert_eq!(e.metadata, meta(json!({ "path": "a.bin" })));
    assert_eq!(e.token_count, tokens::estimate(&Content::Data(vec![0, 1, 2, 255])));
    assert_eq!(e.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e.idempotency_key, "");
    assert_eq!(e.created_at, at(3));
    assert_eq!(stored[0].content, Content::Text("hello".into()));
    assert_eq!(stored[0].role, "user");

    let second =
        append(&db, &t, "s", vec![entry(EntryKind::Summary, "alice", "so far: greetings"), msg("next")], at(4)).await;
    assert_eq!(second.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!((second.session.last_seq, second.session.last_summary_seq), (5, 4));
    assert_eq!(db.get_session(&t, "s").await.unwrap(), second.session);
    assert_eq!(all_seqs(&db, &t, "s").await, [1, 2, 3, 4, 5]);

    assert_not_found(db.append(append_cmd(&t, "missing", vec![msg("x")], at(5))).await, "session");
}

async fn concurrent_appends_are_gap_free(db: Db) {
    const WRITERS: u64 = 32;
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let db = db.clone();
            let t = t.clone();
            tokio::spawn(async move {
                let batch = vec![msg(&format!("writer {i} first")), msg(&format!("writer {i} second"))];
                db.append(append_cmd(&t, "s", batch, at(2))).await
            })
        })
        .collect();
    let mut batches = Vec::new();
    for task in tasks {
        let outcome = task.await.expect("task").expect("append");
        let seqs: Vec<u64> = outcome.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs[1], seqs[0] + 1, "a batch's entries are consecutive");
        batches.push(seqs[0]);
    }
    batches.sort_unstable();
    assert_eq!(batches, (0..WRITERS).map(|i| 2 * i + 1).collect::<Vec<_>>());
    assert_eq!(all_seqs(&db, &t, "s").await, (1..=2 * WRITERS).collect::<Vec<_>>());
    assert_eq!(db.get_session(&t, "s").await.unwrap().last_seq, 2 * WRITERS);
}

async fn idempotent_append_replays(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    session(&db, &t, "other", "alice", at(1)).await;
    let keyed =
        |entries, now| AppendCommand { idempotency_key: Some("k-1".into()), ..append_cmd(&t, "s", entries, now) };

    let original = db.append(keyed(vec![msg("one"), msg("two")], at(2))).await.unwrap();
    assert!(!original.replayed);
    assert!(original.entries.iter().all(|e| e.idempotency_key == "k-1"));
    append(&db, &t, "s", vec![msg("three")], at(3)).await;

    let replay = db.append(keyed(vec![msg("different"), msg("content"), msg("entirely")], at(4))).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.entries, original.entries, "the replay returns the original entries");
    assert_eq!(replay.session.last_seq, 3);
    let after = db.get_session(&t, "s").await.unwrap();
    assert_eq!(after.last_seq, 3, "a replay writes nothing");
    assert_eq!(after.last_activity_at, at(3));
    assert_eq!(all_seqs(&db, &t, "s").await, [1, 2, 3]);

    // Keys are per session.
    let other = db
        .append(AppendCommand { idempotency_key: Some("k-1".into()), ..append_cmd(&t, "other", vec![msg("x")], at(5)) })
        .await
        .unwrap();
    assert!(!other.replayed);
    assert_eq!(other.entries[0].seq, 1);
}

async fn expected_last_seq_mismatch_writes_nothing(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let expecting =
        |seq, now| AppendCommand { expected_last_seq: Some(seq), ..append_cmd(&t, "s", vec![msg("x")], now) };

    assert_eq!(db.append(expecting(0, at(2))).await.unwrap().session.last_seq, 1);
    assert_precondition(db.append(expecting(0, at(3))).await, "SEQ_MISMATCH");
    assert_precondition(db.append(expecting(7, at(3))).await, "SEQ_MISMATCH");
    let s = db.get_session(&t, "s").await.unwrap();
    assert_eq!((s.last_seq, s.last_activity_at), (1, at(2)), "a rejected append writes nothing");
    assert_eq!(all_seqs(&db, &t, "s").await, [1]);
    // A rejected keyed append does not burn its key.
    let keyed = AppendCommand { idempotency_key: Some("k".into()), ..expecting(0, at(4)) };
    assert_precondition(db.append(keyed.clone()).await, "SEQ_MISMATCH");
    let retried = db.append(AppendCommand { expected_last_seq: Some(1), ..keyed }).await.unwrap();
    assert!(!retried.replayed);
    assert_eq!(retried.entries[0].seq, 2);
}

async fn closed_or_expired_session_rejects_appends(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    append(&db, &t, "s", vec![msg("before")], at(2)).await;
    db.update_session(&t, "s", SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() }, at(3))
        .await
        .unwrap();
    assert_precondition(db.append(append_cmd(&t, "s", vec![msg("after")], at(4))).await, "SESSION_CLOSED");
    assert_eq!(all_seqs(&db, &t, "s").await, [1]);

    // Past its expiry a session takes no entries even before the sweeper marks it.
    db.create_session(NewSession {
        tenant: t.clone(),
        session_key: "ttl".into(),
        agent: "alice".into(),
        metadata: Metadata::new(),
        now: at(1),
        expires_at: Some(FAR),
    })
    .await
    .unwrap();
    let late = Micros(FAR.0 + 1);
    assert_precondition(db.append(append_cmd(&t, "ttl", vec![msg("late")], late)).await, "SESSION_CLOSED");
    assert_eq!(all_seqs(&db, &t, "ttl").await, Vec::<u64>::new());
}

async fn expire_sessions_sweeps_due_open_sessions(db: Db) {
    let _sweeping = SWEEPING.lock().await;
    let t = tenant();
    let with_expiry = |key: &str, expires_at| NewSession {
        tenant: t.clone(),
        session_key: key.into(),
        agent: "alice".into(),
        metadata: Metadata::new(),
        now: at(1),
        expires_at,
    };
    db.create_session(with_expiry("due", Some(at(10)))).await.unwrap();
    db.create_session(with_expiry("later", Some(at(20)))).await.unwrap();
    db.create_session(with_expiry("never", None)).await.unwrap();
    db.create_session(with_expiry("closed", Some(at(5)))).await.unwrap();
    db.update_session(&t, "closed", SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() }, at(2))
        .await
        .unwrap();

    let mine = |sessions: Vec<baton_server::domain::Session>| {
        sessions
            .into_iter()
            .filter(|s| s.tenant == t)
            .map(|s| (s.session_key, s.status, s.updated_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(mine(db.expire_sessions(at(9), 1000).await.unwrap()), []);
    assert_eq!(
        mine(db.expire_sessions(at(10), 1000).await.unwrap()),
        [("due".to_owned(), SessionStatus::Expired, at(10))]
    );
    assert_eq!(db.get_session(&t, "due").await.unwrap().status, SessionStatus::Expired);
    assert_eq!(mine(db.expire_sessions(at(15), 1000).await.unwrap()), [], "an expired session is swept once");
    assert_eq!(db.get_session(&t, "closed").await.unwrap().status, SessionStatus::Closed);
    assert_eq!(db.get_session(&t, "later").await.unwrap().status, SessionStatus::Active);
    assert_eq!(db.get_session(&t, "never").await.unwrap().status, SessionStatus::Active);
}

// ---------------------------------------------------------------------------------------
// Reads

async fn list_entries_ranges_and_kinds(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let kinds = [
        EntryKind::Message,
        EntryKind::ToolCall,
        EntryKind::ToolResult,
        EntryKind::Message,
        EntryKind::System,
        EntryKind::Message,
        EntryKind::File,
        EntryKind::ToolCall,
        EntryKind::ToolResult,
        EntryKind::Message,
    ];
    append(
        &db,
        &t,
        "s",
        kinds.iter().enumerate().map(|(i, k)| entry(*k, "alice", &format!("entry {i}"))).collect(),
        at(2),
    )
    .await;

    let seqs = |q: EntryQuery| {
        let db = db.clone();
        async move { db.list_entries(&q).await.unwrap().into_iter().map(|e| e.seq).collect::<Vec<_>>() }
    };
    let base = entries_query(&t, "s");
    assert_eq!(seqs(base.clone()).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(EntryQuery { after_seq: 7, ..base.clone() }).await, [8, 9, 10]);
    assert_eq!(seqs(EntryQuery { before_seq: Some(4), ..base.clone() }).await, [1, 2, 3]);
    assert_eq!(seqs(EntryQuery { after_seq: 3, before_seq: Some(6), ..base.clone() }).await, [4, 5]);
    assert_eq!(seqs(EntryQuery { after_seq: 3, limit: 2, ..base.clone() }).await, [4, 5]);
    assert_eq!(seqs(EntryQuery { after_seq: 10, ..base.clone() }).await, Vec::<u64>::new());
    assert_eq!(seqs(EntryQuery { kinds: vec![EntryKind::Message], ..base.clone() }).await, [1, 4, 6, 10]);
    assert_eq!(
        seqs(EntryQuery { kinds: vec![EntryKind::ToolCall, EntryKind::ToolResult], after_seq: 2, ..base.clone() })
            .await,
        [3, 8, 9]
    );
    assert_eq!(seqs(EntryQuery { kinds: vec![EntryKind::Summary], ..base.clone() }).await, Vec::<u64>::new());

    assert_not_found(db.list_entries(&entries_query(&t, "missing")).await, "session");
}

async fn window_starts_at_the_latest_summary(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    append(&db, &t, "s", (1..=3).map(|i| msg(&format!("m{i}"))).collect(), at(2)).await;

    let plain = db.window(&t, "s", 2, u32::MAX).await.unwrap();
    assert!(plain.summary.is_none());
    assert_eq!(plain.newest_first.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(plain.session.last_seq, 3);

    append(&db, &t, "s", vec![entry(EntryKind::Summary, "alice", "old summary")], at(3)).await;
    append(&db, &t, "s", (5..=6).map(|i| msg(&format!("m{i}"))).collect(), at(4)).await;
    append(&db, &t, "s", vec![entry(EntryKind::Summary, "alice", "new summary")], at(5)).await;
    append(&db, &t, "s", (8..=10).map(|i| msg(&format!("m{i}"))).collect(), at(6)).await;

    let w = db.window(&t, "s", 2, u32::MAX).await.unwrap();
    let summary = w.summary.expect("summary");
    assert_eq!((summary.seq, summary.kind), (7, EntryKind::Summary));
    assert_eq!(summary.content, Content::Text("new summary".into()));
    assert_eq!(w.newest_first.iter().map(|e| e.seq).collect::<Vec<_>>(), [10, 9]);
    assert_eq!((w.session.last_seq, w.session.last_summary_seq), (10, 7));

    let all = db.window(&t, "s", 100, u32::MAX).await.unwrap();
    assert_eq!(
        all.newest_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [10, 9, 8],
        "only entries after the summary"
    );

    // A token budget reads only what can fit, plus the first entry that cannot
    // (`tokens::read_bound`). Each of m8..m10 costs estimate("m8") = 5 tokens.
    let cost = tokens::estimate(&Content::Text("m8".into()));
    let seqs = |w: baton_server::store::WindowSlice| w.newest_first.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(db.window(&t, "s", 100, 2 * cost - 1).await.unwrap()), [10, 9]);
    assert_eq!(seqs(db.window(&t, "s", 100, 2 * cost).await.unwrap()), [10, 9, 8]);
    assert_eq!(seqs(db.window(&t, "s", 100, cost - 1).await.unwrap()), [10]);
    assert_eq!(seqs(db.window(&t, "s", 100, 0).await.unwrap()), [10], "nothing fits; the stopper is read");

    assert_not_found(db.window(&t, "missing", 10, u32::MAX).await, "session");
}

async fn search_ranks_and_marks_snippets(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    append(
        &db,
        &t,
        "s",
        vec![
            msg("Lunch plans for the team offsite are still open."),
            msg("The deployment went out; the deployment dashboard looks fine and the next deployment is Friday."),
            msg("Remember to water the plants in the office."),
            msg("We talked about a deployment once, among many other topics like budgets, hiring, travel, \
                 office furniture, the quarterly review and the holiday party."),
            msg("Budget review moved to Thursday afternoon."),
            data(b"deployment deployment deployment"),
        ],
        at(2),
    )
    .await;

    let search = |query: &str| SearchQuery {
        tenant: t.clone(),
        session_key: Some("s".into()),
        query: Query::parse(query).unwrap(),
        offset: 0,
        limit: 10,
    };
    let hits = db.search(&search("deployment")).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.entry.seq).collect::<Vec<_>>(), [2, 4], "more and denser mentions rank first");
    assert!(
        hits[0].score > hits[1].score && hits[1].score > 0.0,
        "scores: {:?}",
        hits.iter().map(|h| h.score).collect::<Vec<_>>()
    );
    for hit in &hits {
        assert!(hit.snippet.contains("[deployment]"), "snippet marks the match: {:?}", hit.snippet);
        assert_eq!(hit.entry.session_key, "s");
    }
    assert_eq!(
        hits[0].entry.content,
        Content::Text(
            "The deployment went out; the deployment dashboard looks fine and the next deployment is Friday.".into()
        )
    );

    // Stemming: the query's word form need not match the text's.
    let stemmed = db.search(&search("deployments")).await.unwrap();
    assert_eq!(stemmed.iter().map(|h| h.entry.seq).collect::<Vec<_>>(), [2, 4]);
    // A phrase, an exclusion, an alternative.
    let seqs = |hits: Vec<baton_server::domain::SearchHit>| hits.into_iter().map(|h| h.entry.seq).collect::<Vec<_>>();
    assert_eq!(seqs(db.search(&search("\"deployment dashboard\"")).await.unwrap()), [2]);
    assert_eq!(seqs(db.search(&search("deployment -budgets")).await.unwrap()), [2]);
    let mut either = seqs(db.search(&search("plants OR lunch")).await.unwrap());
    either.sort_unstable();
    assert_eq!(either, [1, 3]);
    assert_eq!(seqs(db.search(&search("review thursday")).await.unwrap()), [5]);

    // Paging by offset continues the same order.
    let page2 = db.search(&SearchQuery { offset: 1, limit: 1, ..search("deployment") }).await.unwrap();
    assert_eq!(seqs(page2), [4]);
}

async fn search_scopes_to_tenant_and_session(db: Db) {
    let t = tenant();
    session(&db, &t, "a", "alice", at(1)).await;
    session(&db, &t, "b", "bob", at(1)).await;
    append(&db, &t, "a", vec![msg("the kubernetes rollout stalled")], at(2)).await;
    append(&db, &t, "b", vec![msg("kubernetes upgrade planned")], at(2)).await;
    let other = tenant();
    session(&db, &other, "a", "alice", at(1)).await;
    append(&db, &other, "a", vec![msg("kubernetes everywhere")], at(2)).await;

    let q = |key: Option<&str>, query: &str| SearchQuery {
        tenant: t.clone(),
        session_key: key.map(str::to_owned),
        query: Query::parse(query).unwrap(),
        offset: 0,
        limit: 10,
    };
    let mut keys: Vec<String> =
        db.search(&q(None, "kubernetes")).await.unwrap().into_iter().map(|h| h.entry.session_key).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b"], "the whole tenant, and only it");
    let only_b = db.search(&q(Some("b"), "kubernetes")).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].entry.content, Content::Text("kubernetes upgrade planned".into()));

    // What queries mean (and which are refused) is the query language's: tests/search.rs.
    assert!(db.search(&q(None, "zeppelin")).await.unwrap().is_empty());
    assert_eq!(db.search(&q(Some("a"), "kubernetes -upgrade")).await.unwrap().len(), 1);
    assert!(db.search(&q(Some("b"), "kubernetes -upgrade")).await.unwrap().is_empty());

    assert_not_found(db.search(&q(Some("missing"), "kubernetes")).await, "session");
}

// ---------------------------------------------------------------------------------------
// Handoffs

async fn handoff_create_snapshots_up_to_seq(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    append(&db, &t, "s", vec![msg("a"), msg("b"), msg("c")], at(2)).await;

    let mut new = new_handoff(&t, "s", "alice", "bob", HandoffType::ContextTransfer, at(3));
    new.handoff.up_to_seq = 99;
    let created = db.create_handoff(new.clone()).await.unwrap();
    let h = &created.handoff;
    assert_eq!(h.up_to_seq, 3, "the store snapshots the session's last seq");
    assert_eq!(h.status, HandoffStatus::Pending);
    assert_eq!(created.session, None);
    assert_eq!(Handoff { up_to_seq: 3, ..new.handoff.clone() }, *h, "every other field is stored as given");
    assert_eq!(created.events.len(), 2);
    for (ev, agent) in created.events.iter().zip(["alice", "bob"]) {
        assert_eq!((ev.agent.as_str(), ev.cursor, ev.kind), (agent, 1, HandoffEventType::Created));
        assert_eq!(ev.handoff, *h);
    }

    append(&db, &t, "s", vec![msg("d")], at(4)).await;
    assert_eq!(db.get_handoff(&t, &h.handoff_id).await.unwrap(), *h, "later appends do not move the snapshot");
    assert_not_found(db.get_handoff(&t, "no-such-handoff").await, "handoff");
    assert_not_found(db.get_handoff(&tenant(), &h.handoff_id).await, "handoff");

    let listed = db
        .list_handoffs(&HandoffQuery {
            tenant: t.clone(),
            to_agent: Some("bob".into()),
            from_agent: None,
            session_key: Some("s".into()),
            status: Some(HandoffStatus::Pending),
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed.into_iter().map(|(_, h)| h).collect::<Vec<_>>(), std::slice::from_ref(h));

    assert_not_found(
        db.create_handoff(new_handoff(&t, "missing", "alice", "bob", HandoffType::ContextTransfer, at(5))).await,
        "session",
    );
    db.update_session(&t, "s", SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() }, at(6))
        .await
        .unwrap();
    assert_precondition(
        db.create_handoff(new_handoff(&t, "s", "alice", "bob", HandoffType::ContextTransfer, at(7))).await,
        "SESSION_CLOSED",
    );
    assert_eq!(inbox(&db, &t, "bob").await.len(), 1, "rejected creations wrote no events");
}

async fn handoff_legal_transitions(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let ct = HandoffType::ContextTransfer;
    let status = |c: &Changed| c.handoff.status;

    // PENDING → ACCEPTED → COMPLETED
    let h = handoff(&db, &t, "s", "alice", "bob", ct, at(2)).await.handoff;
    let accepted = act(&db, &h, Action::Accept, "bob", None, at(3)).await.unwrap();
    assert_eq!((status(&accepted), accepted.handoff.updated_at), (HandoffStatus::Accepted, at(3)));
    assert_eq!(accepted.session, None, "a context transfer leaves the session alone");
    let completed = act(&db, &h, Action::Complete, "bob", None, at(4)).await.unwrap();
    assert_eq!(status(&completed), HandoffStatus::Completed);
    assert_eq!(db.get_handoff(&t, &h.handoff_id).await.unwrap(), completed.handoff);

    // PENDING → REJECTED, with a reason.
    let h = handoff(&db, &t, "s", "alice", "bob", ct, at(5)).await.handoff;
    let rejected = act(&db, &h, Action::Reject, "bob", Some("busy with another release"), at(6)).await.unwrap();
    assert_eq!(status(&rejected), HandoffStatus::Rejected);
    assert_eq!(rejected.handoff.reason, "busy with another release");
    assert!(
        rejected
            .events
            .iter()
            .all(|e| e.kind == HandoffEventType::Rejected && e.handoff.reason == rejected.handoff.reason)
    );

    // PENDING → CANCELLED by the requester.
    let h = handoff(&db, &t, "s", "alice", "bob", ct, at(7)).await.handoff;
    let cancelled = act(&db, &h, Action::Cancel, "alice", Some("not needed"), at(8)).await.unwrap();
    assert_eq!((status(&cancelled), cancelled.handoff.reason.as_str()), (HandoffStatus::Cancelled, "not needed"));

    // ACCEPTED → CANCELLED.
    let h = handoff(&db, &t, "s", "alice", "bob", HandoffType::Collaboration, at(9)).await.handoff;
    act(&db, &h, Action::Accept, "bob", None, at(10)).await.unwrap();
    let cancelled = act(&db, &h, Action::Cancel, "alice", None, at(11)).await.unwrap();
    assert_eq!(status(&cancelled), HandoffStatus::Cancelled);
    assert_eq!(cancelled.events.len(), 2);
    assert_eq!(
        cancelled.events.iter().map(|e| (e.agent.as_str(), e.kind)).collect::<Vec<_>>(),
        [("alice", HandoffEventType::Cancelled), ("bob", HandoffEventType::Cancelled)]
    );

    // Listing by status, newest first.
    let page = db
        .list_handoffs(&HandoffQuery {
            tenant: t.clone(),
            to_agent: None,
            from_agent: Some("alice".into()),
            session_key: None,
            status: Some(HandoffStatus::Cancelled),
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].0 > page[1].0);
    assert_eq!(page[0].1.handoff_id, h.handoff_id);
    let older = db
        .list_handoffs(&HandoffQuery {
            tenant: t.clone(),
            to_agent: Some("bob".into()),
            from_agent: None,
            session_key: None,
            status: None,
            before_id: Some(page[0].0),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 3, "keyset paging skips the newer handoff");
}

async fn handoff_illegal_transitions_change_nothing(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let ct = HandoffType::ContextTransfer;

    let pending = handoff(&db, &t, "s", "alice", "bob", ct, at(2)).await.handoff;
    let heads = |db: Db, t: String| async move {
        (db.pending_inbox(&t, "alice").await.unwrap().1, db.pending_inbox(&t, "bob").await.unwrap().1)
    };
    let before = heads(db.clone(), t.clone()).await;

    let denied = act(&db, &pending, Action::Accept, "alice", None, at(3)).await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))), "only the target accepts: {denied:?}");
    let denied = act(&db, &pending, Action::Cancel, "bob", None, at(3)).await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))), "only the requester cancels: {denied:?}");
    assert_precondition(act(&db, &pending, Action::Complete, "bob", None, at(3)).await, "ILLEGAL_TRANSITION");
    // Past its deadline a pending handoff is expired, swept or not.
    let past_deadline = Micros(FAR.0 + 1);
    assert_precondition(act(&db, &pending, Action::Accept, "bob", None, past_deadline).await, "ILLEGAL_TRANSITION");
    assert_eq!(db.get_handoff(&t, &pending.handoff_id).await.unwrap(), pending);

    let rejected = handoff(&db, &t, "s", "alice", "bob", ct, at(4)).await.handoff;
    act(&db, &rejected, Action::Reject, "bob", None, at(5)).await.unwrap();
    let completed = handoff(&db, &t, "s", "alice", "bob", ct, at(6)).await.handoff;
    act(&db, &completed, Action::Accept, "bob", None, at(7)).await.unwrap();
    act(&db, &completed, Action::Complete, "bob", None, at(8)).await.unwrap();
    let after_setup = heads(db.clone(), t.clone()).await;
    assert_eq!(after_setup, (before.0 + 5, before.1 + 5));

    for (h, action, agent) in [
        (&rejected, Action::Accept, "bob"),
        (&rejected, Action::Cancel, "alice"),
        (&rejected, Action::Complete, "bob"),
        (&completed, Action::Cancel, "alice"),
        (&completed, Action::Accept, "bob"),
        (&completed, Action::Reject, "bob"),
    ] {
        let stored = db.get_handoff(&t, &h.handoff_id).await.unwrap();
        assert_precondition(act(&db, h, action, agent, None, at(9)).await, "ILLEGAL_TRANSITION");
        assert_eq!(db.get_handoff(&t, &h.handoff_id).await.unwrap(), stored);
    }
    // Repeated by its agent, a transition already made changes nothing (a retry is safe).
    let again = act(&db, &completed, Action::Complete, "bob", None, at(9)).await.unwrap();
    assert!(again.unchanged && again.events.is_empty(), "{again:?}");
    assert_eq!(again.handoff, db.get_handoff(&t, &completed.handoff_id).await.unwrap());
    assert_eq!(heads(db.clone(), t.clone()).await, after_setup, "refused changes wrote no events");

    let missing = Handoff { handoff_id: "no-such-handoff".into(), ..pending.clone() };
    assert_not_found(act(&db, &missing, Action::Accept, "bob", None, at(10)).await, "handoff");
}

async fn full_handoff_transfers_ownership(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;

    let h = handoff(&db, &t, "s", "alice", "bob", HandoffType::FullHandoff, at(2)).await.handoff;
    let accepted = act(&db, &h, Action::Accept, "bob", None, at(3)).await.unwrap();
    let s = accepted.session.expect("the accept touched the session");
    assert_eq!((s.owner.as_str(), s.created_by.as_str(), s.status), ("bob", "alice", SessionStatus::HandedOff));
    assert_eq!(s.updated_at, at(3));
    assert_eq!(db.get_session(&t, "s").await.unwrap(), s);

    // A handed-off session still takes entries from its new owner.
    append(&db, &t, "s", vec![entry(EntryKind::Message, "bob", "picking this up")], at(4)).await;

    let completed = act(&db, &h, Action::Complete, "bob", None, at(5)).await.unwrap();
    let s = completed.session.expect("completing a full handoff reactivates the session");
    assert_eq!((s.owner.as_str(), s.status), ("bob", SessionStatus::Active));
    assert_eq!(db.get_session(&t, "s").await.unwrap(), s);

    // Cancelling an accepted full handoff gives the session back to the requester.
    let back = handoff(&db, &t, "s", "bob", "carol", HandoffType::FullHandoff, at(6)).await.handoff;
    act(&db, &back, Action::Accept, "carol", None, at(7)).await.unwrap();
    let cancelled = act(&db, &back, Action::Cancel, "bob", None, at(8)).await.unwrap();
    let s = cancelled.session.expect("cancel after accept touches the session");
    assert_eq!((s.owner.as_str(), s.status), ("bob", SessionStatus::Active));

    // Other kinds never move ownership.
    let collab = handoff(&db, &t, "s", "carol", "dave", HandoffType::Collaboration, at(9)).await.handoff;
    let accepted = act(&db, &collab, Action::Accept, "dave", None, at(10)).await.unwrap();
    assert_eq!(accepted.session, None);
    assert_eq!(db.get_session(&t, "s").await.unwrap().owner, "bob");
}

async fn expire_handoffs_sweeps_due_pending(db: Db) {
    let _sweeping = SWEEPING.lock().await;
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let with_deadline = |deadline| {
        let mut new = new_handoff(&t, "s", "alice", "bob", HandoffType::ContextTransfer, at(2));
        new.handoff.deadline = deadline;
        new
    };
    let due = db.create_handoff(with_deadline(Some(at(60)))).await.unwrap().handoff;
    let accepted = db.create_handoff(with_deadline(Some(at(60)))).await.unwrap().handoff;
    act(&db, &accepted, Action::Accept, "bob", None, at(3)).await.unwrap();
    let open_ended = db.create_handoff(with_deadline(None)).await.unwrap().handoff;

    let mine = |changed: Vec<Changed>| changed.into_iter().filter(|c| c.handoff.tenant == t).collect::<Vec<_>>();
    assert!(mine(sweep(&db, at(59)).await).is_empty(), "not due yet");
    let expired = mine(sweep(&db, at(60)).await);
    assert_eq!(expired.len(), 1);
    let c = &expired[0];
    assert_eq!(c.handoff.handoff_id, due.handoff_id);
    assert_eq!((c.handoff.status, c.handoff.updated_at), (HandoffStatus::Expired, at(60)));
    assert_eq!(c.session, None);
    assert_eq!(
        c.events.iter().map(|e| (e.agent.as_str(), e.kind, e.handoff.status)).collect::<Vec<_>>(),
        [
            ("alice", HandoffEventType::Expired, HandoffStatus::Expired),
            ("bob", HandoffEventType::Expired, HandoffStatus::Expired)
        ]
    );
    assert_eq!(db.get_handoff(&t, &due.handoff_id).await.unwrap(), c.handoff);
    assert!(mine(sweep(&db, at(120)).await).is_empty(), "swept once; accepted ones never");

    assert_eq!(db.get_handoff(&t, &accepted.handoff_id).await.unwrap().status, HandoffStatus::Accepted);
    assert_eq!(db.get_handoff(&t, &open_ended.handoff_id).await.unwrap().status, HandoffStatus::Pending);
    assert_precondition(act(&db, &due, Action::Accept, "bob", None, at(61)).await, "ILLEGAL_TRANSITION");
    let bob = inbox(&db, &t, "bob").await;
    assert_eq!(bob.last().map(|e| e.kind), Some(HandoffEventType::Expired));
}

// ---------------------------------------------------------------------------------------
// Inboxes

async fn inbox_cursors_are_gap_free_per_agent(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    session(&db, &t, "s2", "carol", at(1)).await;
    let ct = HandoffType::ContextTransfer;

    let mut written: HashMap<String, Vec<HandoffEvent>> = HashMap::new();
    let mut record = |c: &Changed| {
        for e in &c.events {
            written.entry(e.agent.clone()).or_default().push(e.clone());
        }
    };
    let h1 = handoff(&db, &t, "s", "alice", "bob", ct, at(2)).await;
    record(&h1);
    let h2 = handoff(&db, &t, "s2", "carol", "bob", ct, at(3)).await;
    record(&h2);
    record(&act(&db, &h1.handoff, Action::Accept, "bob", None, at(4)).await.unwrap());
    let h3 = handoff(&db, &t, "s", "bob", "alice", ct, at(5)).await;
    record(&h3);
    record(&act(&db, &h2.handoff, Action::Reject, "bob", Some("no"), at(6)).await.unwrap());
    record(&act(&db, &h1.handoff, Action::Complete, "bob", None, at(7)).await.unwrap());
    record(&act(&db, &h3.handoff, Action::Cancel, "bob", None, at(8)).await.unwrap());

    let expected_counts = [("alice", 5), ("bob", 7), ("carol", 2)];
    for (agent, count) in expected_counts {
        let events = inbox(&db, &t, agent).await;
        assert_eq!(events.iter().map(|e| e.cursor).collect::<Vec<_>>(), (1..=count).collect::<Vec<u64>>(), "{agent}");
        assert!(events.iter().all(|e| e.agent == agent));
        assert_eq!(events, written[agent], "{agent}'s inbox holds exactly the events the changes returned");
    }
    assert_eq!(inbox(&db, &tenant(), "bob").await, [], "inboxes are per tenant");

    // Each event shows the handoff as it was right after that event.
    let bob = inbox(&db, &t, "bob").await;
    let h1_events: Vec<_> = bob
        .iter()
        .filter(|e| e.handoff.handoff_id == h1.handoff.handoff_id)
        .map(|e| (e.kind, e.handoff.status, e.handoff.updated_at))
        .collect();
    assert_eq!(
        h1_events,
        [
            (HandoffEventType::Created, HandoffStatus::Pending, at(2)),
            (HandoffEventType::Accepted, HandoffStatus::Accepted, at(4)),
            (HandoffEventType::Completed, HandoffStatus::Completed, at(7)),
        ]
    );
    let rejection = bob.iter().find(|e| e.kind == HandoffEventType::Rejected).unwrap();
    assert_eq!((rejection.handoff.status, rejection.handoff.reason.as_str()), (HandoffStatus::Rejected, "no"));
    let created = bob.iter().find(|e| e.handoff.handoff_id == h2.handoff.handoff_id).unwrap();
    assert_eq!((created.kind, created.handoff.reason.as_str()), (HandoffEventType::Created, ""));
}

async fn pending_inbox_and_head(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let ct = HandoffType::ContextTransfer;

    assert_eq!(db.pending_inbox(&t, "bob").await.unwrap(), (vec![], 0), "an agent without events");

    let first = handoff(&db, &t, "s", "alice", "bob", ct, at(2)).await.handoff;
    let accepted = handoff(&db, &t, "s", "alice", "bob", ct, at(3)).await.handoff;
    let from_bob = handoff(&db, &t, "s", "bob", "alice", ct, at(4)).await.handoff;
    let cancelled = handoff(&db, &t, "s", "carol", "bob", ct, at(5)).await.handoff;
    let last = handoff(&db, &t, "s", "carol", "bob", ct, at(6)).await.handoff;
    act(&db, &accepted, Action::Accept, "bob", None, at(7)).await.unwrap();
    act(&db, &cancelled, Action::Cancel, "carol", None, at(8)).await.unwrap();

    let (pending, head) = db.pending_inbox(&t, "bob").await.unwrap();
    assert_eq!(
        pending.iter().map(|e| (e.handoff.handoff_id.as_str(), e.cursor, e.kind)).collect::<Vec<_>>(),
        [
            (first.handoff_id.as_str(), 1, HandoffEventType::Created),
            (last.handoff_id.as_str(), 5, HandoffEventType::Created)
        ],
        "pending handoffs addressed to bob, in cursor order"
    );
    assert!(pending.iter().all(|e| e.agent == "bob" && e.handoff.status == HandoffStatus::Pending));
    assert_eq!(pending[0].handoff, first);
    assert_eq!(head, 7, "bob's newest cursor");
    assert_eq!(inbox(&db, &t, "bob").await.last().map(|e| e.cursor), Some(head));

    let (alice_pending, alice_head) = db.pending_inbox(&t, "alice").await.unwrap();
    assert_eq!(alice_pending.iter().map(|e| e.handoff.handoff_id.clone()).collect::<Vec<_>>(), [from_bob.handoff_id]);
    assert_eq!(alice_head, 4);
}

async fn inbox_after_resumes(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    for i in 0..4 {
        let h = handoff(&db, &t, "s", "alice", "bob", HandoffType::ContextTransfer, at(2 + i)).await.handoff;
        if i % 2 == 0 {
            act(&db, &h, Action::Accept, "bob", None, at(10 + i)).await.unwrap();
        }
    }
    let all = inbox(&db, &t, "bob").await;
    assert_eq!(all.len(), 6);

    let mut resumed = Vec::new();
    let mut cursor = 0;
    loop {
        let page = db.inbox_after(&t, "bob", cursor, 4).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        resumed.extend(page);
    }
    assert_eq!(resumed, all, "pages resumed from each last cursor add up to the inbox");
    assert_eq!(db.inbox_after(&t, "bob", 3, 100).await.unwrap(), all[3..]);
    assert_eq!(db.inbox_after(&t, "bob", 6, 100).await.unwrap(), []);
    assert_eq!(db.inbox_after(&t, "bob", 0, 0).await.unwrap(), []);
}

// ---------------------------------------------------------------------------------------
// Concurrency (formerly PostgreSQL-only tests; every store must pass them)

async fn concurrent_handoffs_get_gap_free_cursors(db: Db) {
    const N: u64 = 16;
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (db, t) = (db.clone(), t.clone());
            let from = if i % 2 == 0 { "alice" } else { "carol" };
            tokio::spawn(async move {
                db.create_handoff(new_handoff(&t, "s", from, "bob", HandoffType::Collaboration, at(2))).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("create handoff");
    }
    let cursors = |v: &[HandoffEvent]| v.iter().map(|e| e.cursor).collect::<Vec<_>>();
    let bob = inbox(&db, &t, "bob").await;
    assert_eq!(cursors(&bob), (1..=N).collect::<Vec<_>>());
    assert!(bob.iter().all(|e| e.agent == "bob" && e.kind == HandoffEventType::Created));
    assert_eq!(cursors(&inbox(&db, &t, "alice").await), (1..=N / 2).collect::<Vec<_>>());
    assert_eq!(cursors(&inbox(&db, &t, "carol").await), (1..=N / 2).collect::<Vec<_>>());

    // A later change takes the next cursor; the created event still shows the handoff pending.
    let rejected = act(&db, &bob[0].handoff, Action::Reject, "bob", Some("busy"), at(3)).await.unwrap();
    let bobs = rejected.events.iter().find(|e| e.agent == "bob").unwrap();
    assert_eq!(bobs.cursor, N + 1);
    assert_eq!(db.inbox_after(&t, "bob", N, 10).await.unwrap(), std::slice::from_ref(bobs));
    assert_eq!(db.inbox_after(&t, "bob", 0, 1).await.unwrap()[0].handoff.status, HandoffStatus::Pending);
    let (pending, head) = db.pending_inbox(&t, "bob").await.unwrap();
    assert_eq!((cursors(&pending), head), ((2..=N).collect::<Vec<_>>(), N + 1));
}

async fn crossing_handoffs_neither_deadlock_nor_leave_gaps(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "a", at(1)).await;
    let agents = ["a", "b", "c", "d"];
    let pairs: Vec<(usize, &str, &str)> =
        (0..24).map(|i| (i, agents[i % 4], agents[(i / 4 + 1 + i) % 4])).filter(|(_, from, to)| from != to).collect();
    let creates: Vec<_> = pairs
        .iter()
        .map(|&(_, from, to)| {
            let (db, t) = (db.clone(), t.clone());
            tokio::spawn(async move {
                db.create_handoff(new_handoff(&t, "s", from, to, HandoffType::Collaboration, at(2))).await
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in creates {
        created.push(task.await.expect("task").expect("create").handoff);
    }
    // Half are accepted by their targets, half cancelled by their requesters, all at once.
    let changes: Vec<_> = created
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let db = db.clone();
            tokio::spawn(async move {
                let (action, agent) = if i % 2 == 0 {
                    (Action::Accept, h.to_agent.clone())
                } else {
                    (Action::Cancel, h.from_agent.clone())
                };
                act(&db, &h, action, &agent, None, at(3)).await
            })
        })
        .collect();
    for task in changes {
        task.await.expect("task").expect("change");
    }
    for agent in agents {
        let events = inbox(&db, &t, agent).await;
        let involved = pairs.iter().filter(|(_, f, to)| *f == agent || *to == agent).count();
        assert_eq!(events.len(), 2 * involved, "agent {agent}");
        assert_eq!(events.iter().map(|e| e.cursor).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
        assert_eq!(db.pending_inbox(&t, agent).await.unwrap(), (Vec::new(), events.len() as u64));
    }
}

// ---------------------------------------------------------------------------------------
// Rules the stores once disagreed on (each now written once, in the domain)

/// Token budgets are validated in the domain (`validate::MAX_TOKENS`); up to it every store
/// keeps one as given, and above it every store refuses it alike, before writing anything
/// (PostgreSQL used to refuse, SQLite to store it).
async fn max_tokens_are_kept_up_to_the_domain_limit_and_refused_above_it(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let mut largest = new_handoff(&t, "s", "alice", "bob", HandoffType::ContextTransfer, at(2));
    largest.handoff.max_tokens = MAX_TOKENS;
    let kept = db.create_handoff(largest).await.unwrap().handoff;
    assert_eq!(db.get_handoff(&t, &kept.handoff_id).await.unwrap().max_tokens, MAX_TOKENS);

    let mut above = new_handoff(&t, "s", "alice", "bob", HandoffType::ContextTransfer, at(3));
    above.handoff.max_tokens = MAX_TOKENS + 1;
    match db.create_handoff(above.clone()).await {
        Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, "max_tokens"),
        other => panic!("expected InvalidArgument max_tokens, got {other:?}"),
    }
    assert_not_found(db.get_handoff(&t, &above.handoff.handoff_id).await, "handoff");
    assert_eq!(inbox(&db, &t, "bob").await.len(), 1, "the refused handoff wrote no event");

    // The same limit holds for an entry's cost.
    let mut huge = msg("huge");
    huge.token_count = MAX_TOKENS + 1;
    match db.append(append_cmd(&t, "s", vec![msg("fine"), huge], at(4))).await {
        Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, "entries[1].token_count"),
        other => panic!("expected InvalidArgument entries[1].token_count, got {other:?}"),
    }
    assert_eq!(all_seqs(&db, &t, "s").await, Vec::<u64>::new(), "the refused append wrote nothing");
    let mut largest = msg("largest");
    largest.token_count = MAX_TOKENS;
    let kept = append(&db, &t, "s", vec![largest], at(5)).await;
    assert_eq!(db.list_entries(&entries_query(&t, "s")).await.unwrap(), kept.entries);
}

/// The sweep applies the domain's decision to each due handoff: one it refuses is skipped
/// (and logged by `rules::sweep`) and the others still expire (one store used to abort the
/// whole sweep, the other to skip).
async fn a_sweep_skips_a_refused_handoff_and_expires_the_rest(db: Db) {
    let _sweeping = SWEEPING.lock().await;
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    let mut due = Vec::new();
    for i in 0..3 {
        let mut new = new_handoff(&t, "s", "alice", "bob", HandoffType::ContextTransfer, at(2));
        new.handoff.deadline = Some(at(70 + i));
        due.push(db.create_handoff(new).await.unwrap().handoff);
    }
    let refused = due[1].handoff_id.clone();
    let now = at(80);
    let decide = |h: &Handoff| if h.tenant != t || h.handoff_id == refused { None } else { rules::sweep(h, now) };
    let swept = db.expire_handoffs_by(now, 1000, &decide).await.unwrap();
    let mut mine: Vec<_> =
        swept.iter().filter(|c| c.handoff.tenant == t).map(|c| c.handoff.handoff_id.clone()).collect();
    mine.sort();
    assert_eq!(mine, [due[0].handoff_id.clone(), due[2].handoff_id.clone()]);
    assert_eq!(db.get_handoff(&t, &refused).await.unwrap(), due[1], "the refused handoff is as it was");
    let bob = inbox(&db, &t, "bob").await;
    assert_eq!(bob.iter().filter(|e| e.kind == HandoffEventType::Expired).count(), 2);
    assert!(!bob.iter().any(|e| e.handoff.handoff_id == refused && e.kind == HandoffEventType::Expired));

    // The rule itself expires it on the next sweep.
    let next: Vec<_> = sweep(&db, now).await.into_iter().filter(|c| c.handoff.tenant == t).collect();
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].handoff.handoff_id.as_str(), next[0].handoff.status),
        (refused.as_str(), HandoffStatus::Expired)
    );
}

/// `rules::session_after`: a handoff resolved after its session was closed or expired moves
/// ownership as it says but never reopens the session (SQL in one store, Rust in the other).
async fn a_resolved_handoff_never_reopens_an_ended_session(db: Db) {
    let _sweeping = SWEEPING.lock().await;
    let t = tenant();
    let full = HandoffType::FullHandoff;
    session(&db, &t, "closed", "alice", at(1)).await;

    // Completed after the session was closed: stays closed, with its new owner.
    let h = handoff(&db, &t, "closed", "alice", "bob", full, at(2)).await.handoff;
    act(&db, &h, Action::Accept, "bob", None, at(3)).await.unwrap();
    db.update_session(&t, "closed", SessionPatch { status: Some(SessionStatus::Closed), ..Default::default() }, at(4))
        .await
        .unwrap();
    let done = act(&db, &h, Action::Complete, "bob", None, at(5)).await.unwrap();
    let s = done.session.expect("completing a full handoff touches its session");
    assert_eq!((s.status, s.owner.as_str(), s.updated_at), (SessionStatus::Closed, "bob", at(5)));
    assert_eq!(db.get_session(&t, "closed").await.unwrap(), s);

    // Cancelled after acceptance, the session expired meanwhile: ownership goes back, the
    // session stays expired.
    db.create_session(NewSession {
        tenant: t.clone(),
        session_key: "ttl".into(),
        agent: "alice".into(),
        metadata: Metadata::new(),
        now: at(1),
        expires_at: Some(at(40)),
    })
    .await
    .unwrap();
    let h = handoff(&db, &t, "ttl", "alice", "bob", full, at(2)).await.handoff;
    act(&db, &h, Action::Accept, "bob", None, at(3)).await.unwrap();
    let expired = db.expire_sessions(at(40), 1000).await.unwrap();
    assert!(expired.iter().any(|s| s.tenant == t && s.session_key == "ttl"));
    let cancelled = act(&db, &h, Action::Cancel, "alice", None, at(41)).await.unwrap();
    let s = cancelled.session.expect("cancelling an accepted full handoff touches its session");
    assert_eq!((s.status, s.owner.as_str(), s.updated_at), (SessionStatus::Expired, "alice", at(41)));
    assert_eq!(db.get_session(&t, "ttl").await.unwrap(), s);
}

/// `rules::append_to`: an append wakes a DORMANT session, and that status change is an update
/// (SQLite moved `updated_at`, PostgreSQL did not).
async fn waking_a_dormant_session_is_an_update(db: Db) {
    let t = tenant();
    session(&db, &t, "s", "alice", at(1)).await;
    db.update_session(&t, "s", SessionPatch { status: Some(SessionStatus::Dormant), ..Default::default() }, at(2))
        .await
        .unwrap();
    let woken = append(&db, &t, "s", vec![msg("hello")], at(3)).await.session;
    assert_eq!((woken.status, woken.updated_at, woken.last_activity_at), (SessionStatus::Active, at(3), at(3)));
    assert_eq!(db.get_session(&t, "s").await.unwrap(), woken);
    // An append to an active session is activity, not an update.
    let active = append(&db, &t, "s", vec![msg("again")], at(4)).await.session;
    assert_eq!((active.updated_at, active.last_activity_at), (at(3), at(4)));
    assert_eq!(db.get_session(&t, "s").await.unwrap(), active);
}

/// Entries of varied costs (free ones too) around a summary, for the budget cases.
async fn budget_session(db: &Db, t: &str) -> Vec<Entry> {
    session(db, t, "s", "alice", at(1)).await;
    let costed = |kind, cost| NewEntry { token_count: cost, ..entry(kind, "alice", &format!("costs {cost}")) };
    use EntryKind::{Message as M, Summary as S, ToolCall as C};
    let batches = [
        vec![costed(M, 7), costed(C, 3), costed(M, 12)],
        vec![costed(S, 9)],
        vec![costed(M, 4), costed(M, 0), costed(C, 6), costed(M, 6), costed(M, 0), costed(M, 11), costed(M, 2)],
    ];
    for (i, batch) in batches.into_iter().enumerate() {
        append(db, t, "s", batch, at(2 + i as i64)).await;
    }
    db.list_entries(&entries_query(t, "s")).await.unwrap()
}

/// Every store's window, cut by the domain's rule, is the window the rule gives on the whole
/// session (`tokens::window_of`); and what the store reads is exactly `tokens::read_bound`.
async fn every_window_agrees_with_the_budget_rule(db: Db) {
    let t = tenant();
    let all = budget_session(&db, &t).await;
    assert_eq!(all.len(), 11);
    let after_summary: Vec<u32> = all[4..].iter().rev().map(|e| e.token_count).collect();
    for max_entries in [0, 1, 2, 3, 5, 7, 100] {
        for max_tokens in [0, 1, 2, 6, 8, 9, 10, 13, 15, 16, 17, 19, 20, 29, 30, 31, 38, 39, 40, 41, 1000, MAX_TOKENS] {
            let slice = db.window(&t, "s", max_entries, max_tokens).await.unwrap();
            let case = format!("max_entries {max_entries}, max_tokens {max_tokens}");
            let read = tokens::read_bound(after_summary.iter().copied().take(max_entries as usize), max_tokens);
            assert_eq!(slice.newest_first.len(), read, "{case}: the store reads the bounded tail");
            let summary = slice.summary.as_ref().expect("summary");
            let n = tokens::window_len(
                summary.token_count,
                slice.newest_first.iter().map(|e| e.token_count),
                max_entries,
                max_tokens,
            );
            let mut window: Vec<Entry> = slice.newest_first[..n].to_vec();
            window.reverse();
            let (want_summary, want) = tokens::window_of(&all, max_entries, max_tokens);
            assert_eq!(Some(summary), want_summary, "{case}");
            assert_eq!(window, want, "{case}");
        }
    }
}

/// Every store's handoff tail starts where the rule on the whole session says
/// (`tokens::tail_of`), and a missing session is `NotFound` (PostgreSQL used to answer as if
/// nothing fitted).
async fn every_handoff_tail_agrees_with_the_budget_rule(db: Db) {
    let t = tenant();
    let all = budget_session(&db, &t).await;
    for up_to_seq in [0, 1, 4, 6, 10, 11] {
        for budget in [0, 1, 2, 6, 11, 13, 19, 25, 36, 60, 1000, MAX_TOKENS] {
            let start = db.tail_start(&t, "s", up_to_seq, budget).await.unwrap();
            let tail = tokens::tail_of(&all, up_to_seq, budget);
            let want = tail.first().map_or(up_to_seq + 1, |e| e.seq);
            assert_eq!(start, want, "up_to_seq {up_to_seq}, budget {budget}");
        }
    }
    assert_not_found(db.tail_start(&t, "missing", 3, 100).await, "session");
}
