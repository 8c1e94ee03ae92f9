//! Partitioned `entries` and `appends` (migration 0009, `store/postgres/partitions.rs`): ranges
//! of session ids, 8 sessions wide here, on databases of the tests' own (the partition count is
//! what they check). Each test serves a real `batond` as the serving role (a member of
//! baton_app, under row-level security) and looks at the catalog as the tables' owner.

mod common;

use std::sync::Arc;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_server::store::postgres::PgStore;
use common::fresh::FreshDb;
use common::*;
use sqlx::postgres::PgPool;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The owner's URL with the first partition's width set for the migration (0009 reads
/// `baton.partition_width`).
fn width_8(owner_url: &str) -> String {
    format!("{owner_url}?options[baton.partition_width]=8")
}

/// A new database migrated with partitions 8 sessions wide, and the owner's pool on it.
async fn migrated() -> Option<(FreshDb, PgPool)> {
    let db = FreshDb::create("baton_partitions").await?;
    PgStore::connect(&width_8(&db.url), 1, TIMEOUT).await.unwrap().migrate().await.expect("migrate");
    let owner = PgPool::connect(&db.url).await.unwrap();
    Some((db, owner))
}

/// Runs the migrations up to (not including) `before`, as the owner, as a database written by
/// an older batond would have them.
async fn migrate_before(owner: &PgPool, before: &str) {
    let dir = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/postgres");
    for file in std::fs::read_dir(&all).unwrap().map(|f| f.unwrap().path()) {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < before {
            std::fs::copy(&file, dir.path().join(name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(dir.path()).await.unwrap().run(owner).await.unwrap();
}

/// A server on the database as the serving role, a client of a tenant of its own, and the
/// server's store (its pool closed by [`stop`]).
async fn serve(
    db: &FreshDb,
    configure: impl FnOnce(&mut baton_server::config::Config),
) -> (TestServer, Context, PgStore) {
    let store = PgStore::connect(&db.app_url, 8, TIMEOUT).await.expect("connect as the serving role");
    let srv = start_server_on(Arc::new(store.clone()), configure).await;
    let ctx = srv.context().await;
    (srv, ctx, store)
}

/// Shuts the server down and closes its connections: the owner may not end the serving role's
/// connections when it drops the database.
async fn stop(srv: TestServer, store: PgStore) {
    srv.shutdown().await;
    store.pool().close().await;
}

/// `SELECT …` as the owner, seeing every tenant.
async fn all_tenants<T>(owner: &PgPool, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.all_tenants', 'on', true)").execute(&mut *tx).await.unwrap();
    sqlx::query_as(sql).fetch_all(&mut *tx).await.unwrap()
}

/// The range partitions of `parent`: (name, lower bound or None for MINVALUE, upper bound).
async fn ranges(owner: &PgPool, parent: &str) -> Vec<(String, Option<i64>, i64)> {
    sqlx::query_as("SELECT part::text, lo, hi FROM baton_partition_ranges($1::regclass) ORDER BY hi")
        .bind(parent)
        .fetch_all(owner)
        .await
        .unwrap()
}

/// Where each row of `table` is: (partition, session id), one per session.
async fn placement(owner: &PgPool, table: &str) -> Vec<(String, i64)> {
    all_tenants(owner, &format!("SELECT DISTINCT tableoid::regclass::text, session_id FROM {table} ORDER BY 2")).await
}

/// The partition a session's rows belong in, 8 sessions wide from 8 (the first one, the old
/// table or the first of a new database, holds everything below its bound).
fn home(table: &str, id: i64, first_bound: i64) -> String {
    if id < first_bound { format!("{table}_p0") } else { format!("{table}_p{}", id / 8 * 8) }
}

async fn table_exists(owner: &PgPool, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL").bind(name).fetch_one(owner).await.unwrap()
}

async fn texts(ctx: &mut Context, key: &str) -> Vec<(u64, String)> {
    let page = ctx
        .list_entries(pb::ListEntriesRequest { session_key: key.into(), page_size: 1000, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("list {key}: {e}"))
        .into_inner();
    assert!(page.next_page_token.is_empty());
    page.entries
        .into_iter()
        .map(|e| match e.content {
            Some(pb::entry::Content::Text(t)) => (e.seq, t),
            other => panic!("entry {} of {key} is {other:?}", e.seq),
        })
        .collect()
}

async fn session_id(owner: &PgPool, tenant: &str, key: &str) -> i64 {
    let find = format!("SELECT id FROM sessions WHERE tenant = '{tenant}' AND session_key = '{key}'");
    all_tenants::<(i64,)>(owner, &find).await[0].0
}

/// A database written before 0009 (sessions, entries, an idempotency record, a fork) is
/// partitioned in place: the old tables become the first partitions, every row reads back as
/// it was, keyed appends still replay, and new sessions land in new partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_migration_partitions_existing_data_in_place() {
    let Some(db) = FreshDb::create("baton_partitions").await else { return };
    let owner = PgPool::connect(&width_8(&db.url)).await.unwrap();
    migrate_before(&owner, "0009").await;

    let (srv, mut ctx, served) = serve(&db, |_| {}).await;
    for i in 0..12 {
        let key = format!("old-{i}");
        create_session(&mut ctx, &key, "a").await;
        append(&mut ctx, &key, (1..=3).map(|n| message("a", &format!("old {i} entry {n}"))).collect()).await;
    }
    let keyed = pb::AppendEntriesRequest {
        session_key: "old-1".into(),
        entries: vec![message("a", "keyed")],
        idempotency_key: "k-1".into(),
        ..Default::default()
    };
    let first = ctx.append_entries(keyed.clone()).await.unwrap().into_inner();
    ctx.fork_session(pb::ForkSessionRequest {
        session_key: "old-2".into(),
        new_session_key: "old-fork".into(),
        agent: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut keys: Vec<String> = (0..12).map(|i| format!("old-{i}")).collect();
    keys.push("old-fork".into());
    let mut before = Vec::new();
    for key in &keys {
        before.push(texts(&mut ctx, key).await);
    }
    let rows = |owner: PgPool| async move {
        let entries = "SELECT string_agg(e::text, '|' ORDER BY session_id, seq) FROM entries e";
        let appends = "SELECT string_agg(a::text, '|' ORDER BY session_id, idempotency_key) FROM appends a";
        (all_tenants::<(String,)>(&owner, entries).await, all_tenants::<(String,)>(&owner, appends).await)
    };
    let (tenant, key) = (srv.tenant.clone(), srv.key.clone());
    stop(srv, served).await;
    // After the shutdown: the indexer fills search vectors until then.
    let stored = rows(owner.clone()).await;

    PgStore::connect(&width_8(&db.url), 1, TIMEOUT).await.unwrap().migrate().await.expect("0009 applies");

    // 13 sessions: the old tables hold ids below 16, then two ranges ahead.
    let relkind = "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass";
    for table in ["entries", "appends"] {
        let kind: String = sqlx::query_scalar(relkind).bind(table).fetch_one(&owner).await.unwrap();
        assert_eq!(kind, "p", "{table} is partitioned");
        let expected = [(format!("{table}_p0"), None, 16), (format!("{table}_p16"), Some(16), 24)];
        assert_eq!(ranges(&owner, table).await[..2], expected);
        assert!(table_exists(&owner, &format!("{table}_default")).await);
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'entries'::regclass ORDER BY 1",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(indexes, ["entries_pkey", "entries_search", "entries_session_kind", "entries_unindexed"]);
    // Adopted, not rebuilt: the old table's indexes are the parent's partitions of them.
    let attached: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent IN (SELECT indexrelid FROM pg_index \
         WHERE indrelid = 'entries'::regclass) AND inhrelid::regclass::text LIKE 'entries_p0_%'",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(attached, 4);
    assert_eq!(rows(owner.clone()).await, stored, "every row as it was");

    let (srv, _, served) = serve(&db, |_| {}).await;
    let caller = Caller::new(Some(&tenant), key.as_deref());
    let mut ctx = srv.context_as(caller).await;
    for (key, was) in keys.iter().zip(&before) {
        assert_eq!(&texts(&mut ctx, key).await, was, "{key} reads back");
    }
    let again = ctx.append_entries(keyed).await.unwrap().into_inner();
    assert_eq!((again.first_seq, again.last_seq), (first.first_seq, first.last_seq), "the keyed append replays");
    append(&mut ctx, "old-3", vec![message("a", "after the migration")]).await;
    assert_eq!(texts(&mut ctx, "old-3").await.last().unwrap().1, "after the migration");
    for i in 0..6 {
        let key = format!("new-{i}");
        create_session(&mut ctx, &key, "a").await;
        append(&mut ctx, &key, vec![message("a", "new")]).await;
    }
    // Ids 14..=19: the first two in the old table's range, the rest in the next partition.
    let placed = placement(&owner, "entries").await;
    assert_eq!(placed.len(), 19);
    for (part, id) in &placed {
        assert_eq!(part, &home("entries", *id, 16), "session {id}");
    }
    stop(srv, served).await;
    owner.close().await;
    db.drop().await;
}

/// 30 sessions over five partitions of 8: rows of sessions past the partitions made wait in
/// DEFAULT until the maintenance moves them home; then every read and lifecycle path works
/// across partitions, and a session's read scans one partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_spread_over_partitions_and_every_path_works() {
    let Some((db, owner)) = migrated().await else { return };
    let app = PgStore::connect(&db.app_url, 2, TIMEOUT).await.unwrap();
    // A new database: below 8, then two ranges ahead of the sequence.
    let made: Vec<i64> = ranges(&owner, "entries").await.iter().map(|r| r.2).collect();
    assert_eq!(made, [8, 16, 24]);

    let (srv, mut ctx, served) = serve(&db, |_| {}).await;
    for i in 1..=30 {
        let key = format!("s{i}");
        create_session(&mut ctx, &key, "a").await;
        let request = pb::AppendEntriesRequest {
            session_key: key.clone(),
            entries: vec![message("a", &format!("alpha {i}")), message("a", &format!("beta {i}"))],
            idempotency_key: format!("k{i}"),
            ..Default::default()
        };
        ctx.append_entries(request).await.unwrap();
    }
    let caught: Vec<i64> = placement(&owner, "entries")
        .await
        .into_iter()
        .filter(|(part, _)| part == "entries_default")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(caught, (24..=30).collect::<Vec<_>>(), "no partition yet for 24..=30: DEFAULT holds them");

    assert_eq!(app.ensure_partitions().await.unwrap(), 3, "[24, 32), [32, 40), [40, 48)");
    for table in ["entries", "appends"] {
        let placed = placement(&owner, table).await;
        assert_eq!(placed.len(), 30, "{table}");
        for (part, id) in &placed {
            assert_eq!(part, &home(table, *id, 8), "{table} of session {id}");
        }
    }
    assert_eq!(app.ensure_partitions().await.unwrap(), 0, "nothing more to make");

    // Reads, each session in its own partition.
    for i in 1..=30 {
        let expected = vec![(1, format!("alpha {i}")), (2, format!("beta {i}"))];
        assert_eq!(texts(&mut ctx, &format!("s{i}")).await, expected);
    }
    let window = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "s27".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((window.entries.len(), window.last_seq), (2, 2));
    let search = |session_key: &str, query: &str| pb::SearchEntriesRequest {
        session_key: session_key.into(),
        query: query.into(),
        page_size: 100,
        ..Default::default()
    };
    let hits = ctx.search_entries(search("", "alpha")).await.unwrap().into_inner().hits;
    assert_eq!(hits.len(), 30, "a tenant-wide search spans every partition");
    let hits = ctx.search_entries(search("s13", "beta")).await.unwrap().into_inner().hits;
    assert_eq!(hits.len(), 1);
    // A keyed append replays from its partition's idempotency record.
    let replay = pb::AppendEntriesRequest {
        session_key: "s29".into(),
        entries: vec![message("a", "alpha 29"), message("a", "beta 29")],
        idempotency_key: "k29".into(),
        ..Default::default()
    };
    let replayed = ctx.append_entries(replay).await.unwrap().into_inner();
    assert_eq!((replayed.first_seq, replayed.last_seq), (1, 2));

    // A fork copies from the first partition into the newest.
    ctx.fork_session(pb::ForkSessionRequest {
        session_key: "s3".into(),
        new_session_key: "fork".into(),
        agent: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(texts(&mut ctx, "fork").await, texts(&mut ctx, "s3").await);
    let fork = session_id(&owner, &srv.tenant, "fork").await;
    assert_eq!(fork, 31);
    assert!(placement(&owner, "entries").await.contains(&("entries_p24".into(), 31)));

    ctx.compact_session(pb::CompactSessionRequest { session_key: "s20".into(), before_seq: 2, force: true })
        .await
        .unwrap();
    let compacted = ctx
        .list_entries(pb::ListEntriesRequest { session_key: "s20".into(), after_seq: Some(1), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(compacted.iter().map(|e| e.seq).collect::<Vec<_>>(), [2], "seq 1 compacted away");
    ctx.redact_entries(pb::RedactEntriesRequest {
        session_key: "s11".into(),
        seqs: vec![1],
        reason: "test".into(),
        agent: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(texts(&mut ctx, "s11").await, [(1, String::new()), (2, "beta 11".into())]);
    let deleted = ctx.delete_session(pb::DeleteSessionRequest { session_key: "s12".into() }).await.unwrap();
    assert_eq!(deleted.into_inner().deleted_entries, 2);
    assert!(!placement(&owner, "entries").await.iter().any(|(_, id)| *id == 12));

    // A session's read prunes to its partition: the others are never scanned, whether the
    // session id is known when planning or only once its subquery has run.
    let s13 = session_id(&owner, &srv.tenant, "s13").await;
    let by_id = format!("SELECT * FROM entries WHERE session_id = {s13} ORDER BY seq");
    let by_key = format!(
        "SELECT * FROM entries e WHERE e.session_id = \
         (SELECT id FROM sessions WHERE tenant = '{}' AND session_key = 's13') ORDER BY e.seq",
        srv.tenant
    );
    for read in [by_id, by_key] {
        assert_eq!(scanned(&owner, &read).await, ["entries_p8"], "{read}");
    }
    stop(srv, served).await;
    app.pool().close().await;
    owner.close().await;
    db.drop().await;
}

/// Reads of a long session touch the entries they return, not the session: a handoff's
/// summary reads its last three messages by primary key (it read, and filtered, every entry
/// of the session before), and a context window read from PostgreSQL reads the entries it
/// holds and one more, not as many as its entry limit allows (a budget of 20 entries under
/// the default limit of 500; it read 500 before), and so does the start of a handoff's
/// context package (it summed every entry up to the handoff before).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_of_a_long_session_touch_the_entries_they_return() {
    let Some((db, owner)) = migrated().await else { return };
    let (srv, mut ctx, served) = serve(&db, |_| {}).await;
    create_session(&mut ctx, "long", "a").await;
    let mut per_entry = 0;
    for round in 0..3 {
        let entries = (0..500).map(|i| message("a", &format!("turn {round}.{i:03}"))).collect();
        per_entry = append(&mut ctx, "long", entries).await.entries[0].token_count;
    }
    // With statistics, as a database that has been running has them (without, the planner
    // takes the session for a few rows and may read it all through its (session, kind) index).
    sqlx::query("ANALYZE entries").execute(&owner).await.unwrap();

    let id = session_id(&owner, &srv.tenant, "long").await;
    let summary = baton_server::store::postgres::plans::SUMMARY_STATE.replace("$1", &id.to_string());
    let rows: Vec<(Option<i64>,)> = all_tenants(&owner, &summary.replacen("SELECT ", "SELECT e.seq, ", 1)).await;
    let seqs: Vec<i64> = rows.into_iter().filter_map(|r| r.0).collect();
    assert_eq!(seqs, [1498, 1499, 1500], "the last three messages");
    let (plan, touched) = entry_rows_touched(&owner, &summary).await;
    assert_eq!(touched, 3, "entry rows the summary touched: {plan}");

    let budget = 20 * per_entry;
    let window = baton_server::store::postgres::plans::WINDOW
        .replace("$1", &format!("'{}'", srv.tenant))
        .replace("$2", "'long'")
        .replace("$3", "500")
        .replace("$4", &budget.to_string());
    let (plan, touched) = entry_rows_touched(&owner, &window).await;
    assert!(touched <= 2 * 21 + 2, "entry rows the window touched: {touched} in {plan}");
    let read = ctx
        .get_context_window(pb::GetContextWindowRequest {
            session_key: "long".into(),
            max_tokens: budget,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<u64> = read.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1481..=1500).collect::<Vec<_>>(), "the newest 20 entries");

    // A handoff's context package up to seq 1,400 within the same budget starts at 1,381.
    let tail = baton_server::store::postgres::plans::TAIL_START
        .replace("$1", &format!("'{}'", srv.tenant))
        .replace("$2", "'long'")
        .replace("$3", "1400")
        .replace("$4", &budget.to_string());
    let start: Vec<(Option<i64>,)> = all_tenants(&owner, &tail).await;
    assert_eq!(start, [(Some(1381),)], "where the tail starts");
    let (plan, touched) = entry_rows_touched(&owner, &tail).await;
    assert!(touched <= 2 * 21 + 2, "entry rows the tail's start touched: {touched} in {plan}");
    stop(srv, served).await;
    owner.close().await;
    db.drop().await;
}

/// `read`'s plan as it ran, and the entry rows its scans of `entries` produced or filtered
/// away, over all their loops.
async fn entry_rows_touched(owner: &PgPool, read: &str) -> (serde_json::Value, u64) {
    fn touched(node: &serde_json::Value) -> u64 {
        let count = |key: &str| node[key].as_f64().unwrap_or(0.0);
        let mine = if node["Relation Name"].as_str().is_some_and(|r| r.starts_with("entries")) {
            ((count("Actual Rows") + count("Rows Removed by Filter")) * count("Actual Loops")) as u64
        } else {
            0
        };
        mine + node["Plans"].as_array().into_iter().flatten().map(touched).sum::<u64>()
    }
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {read}");
    let (plan,): (serde_json::Value,) = all_tenants(owner, &explain).await.remove(0);
    let rows = touched(&plan[0]["Plan"]);
    (plan, rows)
}

/// The `entries` partitions a statement actually read (EXPLAIN ANALYZE: scan nodes that ran).
async fn scanned(owner: &PgPool, read: &str) -> Vec<String> {
    fn walk(node: &serde_json::Value, out: &mut Vec<String>) {
        let ran = node["Actual Loops"].as_u64().unwrap_or(0) > 0;
        if let Some(rel) = node["Relation Name"].as_str()
            && rel.starts_with("entries")
            && ran
        {
            out.push(rel.to_owned());
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {read}");
    let (plan,): (serde_json::Value,) = all_tenants(owner, &explain).await.remove(0);
    let mut out = Vec::new();
    walk(&plan[0]["Plan"], &mut out);
    out
}

/// The serving role reads and writes only through the parents, under their policies: a
/// partition is out of its reach, and so is the DDL behind the maintenance functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_serving_role_reaches_partitions_only_through_the_parents() {
    let Some((db, owner)) = migrated().await else { return };
    let app = PgPool::connect(&db.app_url).await.unwrap();
    for statement in [
        "SELECT count(*) FROM entries_p0",
        "SELECT count(*) FROM entries_p8",
        "SELECT count(*) FROM entries_default",
        "SELECT count(*) FROM appends_p8",
        "DELETE FROM entries_p8",
        "DROP TABLE entries_p8",
        "SELECT baton_add_partition('entries', 1000, 1008)",
        "UPDATE baton_partitioning SET width = 1",
    ] {
        let e = sqlx::query(statement).execute(&app).await.expect_err(statement);
        let code = e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
        assert!(matches!(code.as_deref(), Some("42501")), "{statement}: {e}");
    }
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM entries").fetch_one(&app).await.unwrap();
    assert_eq!(all, 0, "the parent answers, under its policy (no tenant named: nothing)");
    app.close().await;
    owner.close().await;
    db.drop().await;
}

/// Row-level security on the partitioned tables: two tenants' sessions in the same partition,
/// each transaction sees its own tenant's rows only and cannot write another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_stay_isolated_on_the_partitioned_tables() {
    let Some((db, owner)) = migrated().await else { return };
    let (a, mut ctx_a, served_a) = serve(&db, |_| {}).await;
    let (b, mut ctx_b, served_b) = serve(&db, |_| {}).await;
    for ctx in [&mut ctx_a, &mut ctx_b] {
        for key in ["x", "y"] {
            create_session(ctx, key, "a").await;
            let request = pb::AppendEntriesRequest {
                session_key: key.into(),
                entries: vec![message("a", "secret")],
                idempotency_key: "k".into(),
                ..Default::default()
            };
            ctx.append_entries(request).await.unwrap();
        }
    }
    assert_eq!(placement(&owner, "entries").await.len(), 4);
    assert!(placement(&owner, "entries").await.iter().all(|(part, _)| part == "entries_p0"), "one partition");
    let b_session = session_id(&owner, &b.tenant, "x").await;

    let app = PgPool::connect(&db.app_url).await.unwrap();
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(&a.tenant).execute(&mut *tx).await.unwrap();
    let seen: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tenant FROM entries").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(seen, std::slice::from_ref(&a.tenant));
    let theirs: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE session_id = $1")
        .bind(b_session)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(theirs, 0, "B's session is invisible to A");
    let keyed: Vec<String> = sqlx::query_scalar("SELECT tenant FROM appends").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(keyed, [a.tenant.clone(), a.tenant.clone()], "A's two idempotency records, not B's");
    let forged = sqlx::query(
        "INSERT INTO entries (session_id, seq, kind, role, author, content_text, media_type, token_count, \
         created_at, tenant) VALUES ($1, 99, 'message', 'user', 'a', 'forged', 'text/plain', 1, now(), $2)",
    )
    .bind(b_session)
    .bind(&b.tenant)
    .execute(&mut *tx)
    .await
    .expect_err("A cannot write B's rows");
    assert!(forged.to_string().contains("row-level security"), "{forged}");
    drop(tx);
    stop(a, served_a).await;
    stop(b, served_b).await;
    app.close().await;
    owner.close().await;
    db.drop().await;
}

/// Sessions 1..=20, those of the range [8, 16) with a time to live of 10 s, one entry and one
/// idempotency record each.
async fn twenty_sessions_eight_expiring(ctx: &mut Context) {
    for i in 1..=20 {
        let key = format!("s{i}");
        let ttl = (8..16).contains(&i).then_some(prost_types::Duration { seconds: 10, nanos: 0 });
        let request =
            pb::CreateSessionRequest { session_key: key.clone(), agent: "a".into(), ttl, ..Default::default() };
        ctx.create_session(request).await.unwrap();
        let request = pb::AppendEntriesRequest {
            session_key: key,
            entries: vec![message("a", "x")],
            idempotency_key: "k".into(),
            ..Default::default()
        };
        ctx.append_entries(request).await.unwrap();
    }
}

/// The ids whose entries are stored, in order.
async fn stored_ids(owner: &PgPool) -> Vec<i64> {
    placement(owner, "entries").await.into_iter().map(|(_, id)| id).collect()
}

/// Retention by partition: when every session of a closed range is due for the purge, the
/// purge drops the range's partitions whole (entries and appends) and then deletes only the
/// session rows, with their audit records; while one session of the range is held, the range
/// is purged row by row around it and kept, and goes whole once the hold is lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_purge_drops_a_wholly_expired_range() {
    let Some((db, owner)) = migrated().await else { return };
    let (srv, mut ctx, served) = serve(&db, |c| c.purge_expired_after = Duration::from_secs(60)).await;
    twenty_sessions_eight_expiring(&mut ctx).await;
    let admin = srv.server.key(&srv.tenant, Role::Admin, None).await;
    let mut adm = srv.context_as(Caller::new(None, Some(&admin))).await;
    let hold =
        |on: bool| pb::UpdateSessionRequest { session_key: "s9".into(), legal_hold: Some(on), ..Default::default() };
    adm.update_session(hold(true)).await.unwrap();

    srv.clock.advance(Duration::from_secs(11));
    srv.baton.sweep().await.unwrap();
    srv.clock.advance(Duration::from_secs(61));
    srv.baton.sweep().await.unwrap();
    // s9 is held: its range is kept, the others in it purged row by row.
    assert!(table_exists(&owner, "entries_p8").await);
    assert_eq!(stored_ids(&owner).await, (1..8).chain([9]).chain(16..=20).collect::<Vec<_>>());

    adm.update_session(hold(false)).await.unwrap();
    srv.baton.sweep().await.unwrap();
    for table in ["entries", "appends"] {
        assert!(!table_exists(&owner, &format!("{table}_p8")).await, "{table}_p8 dropped by the purge");
        for kept in ["p0", "p16", "default"] {
            assert!(table_exists(&owner, &format!("{table}_{kept}")).await, "{table}_{kept} kept");
        }
    }
    let gone = ctx.get_session(pb::GetSessionRequest { session_key: "s9".into() }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "the session row went too");
    let audit = srv.server.store().audit_log(&srv.tenant, "s9").await.unwrap();
    assert_eq!(audit.last().map(|a| a.action), Some("purge"), "audited as any purge");
    for i in (1..8).chain(16..=20) {
        assert_eq!(texts(&mut ctx, &format!("s{i}")).await, [(1, "x".into())], "s{i} untouched");
    }
    stop(srv, served).await;
    owner.close().await;
    db.drop().await;
}

/// A range whose sessions were all deleted is dropped by the maintenance (entries and appends
/// alike) instead of staying an empty table; the ranges that still hold a session stay, and so
/// does the current one even when emptied (new sessions still get ids in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emptied_range_is_dropped_and_the_others_stay() {
    let Some((db, owner)) = migrated().await else { return };
    let app = PgStore::connect(&db.app_url, 2, TIMEOUT).await.unwrap();
    let (srv, mut ctx, served) = serve(&db, |_| {}).await;
    twenty_sessions_eight_expiring(&mut ctx).await;
    assert_eq!(app.drop_ranges(None).await.unwrap(), 0, "every range still has sessions");
    for i in 8..16 {
        ctx.delete_session(pb::DeleteSessionRequest { session_key: format!("s{i}") }).await.unwrap();
    }
    assert_eq!(app.drop_ranges(None).await.unwrap(), 1, "[8, 16): entries_p8 and appends_p8");
    for table in ["entries", "appends"] {
        assert!(!table_exists(&owner, &format!("{table}_p8")).await, "{table}_p8 dropped");
        for kept in ["p0", "p16", "default"] {
            assert!(table_exists(&owner, &format!("{table}_{kept}")).await, "{table}_{kept} kept");
        }
    }
    for i in (1..8).chain(16..=20) {
        assert_eq!(texts(&mut ctx, &format!("s{i}")).await, [(1, "x".into())]);
    }
    for i in 16..=20 {
        ctx.delete_session(pb::DeleteSessionRequest { session_key: format!("s{i}") }).await.unwrap();
    }
    assert_eq!(app.drop_ranges(None).await.unwrap(), 0);
    assert!(table_exists(&owner, "entries_p16").await);
    stop(srv, served).await;
    app.pool().close().await;
    owner.close().await;
    db.drop().await;
}
