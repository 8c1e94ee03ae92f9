//! PostgreSQL's background search indexer (migration 0007, `store/postgres/indexer.rs`):
//! appends leave an entry's search vector NULL and the indexer fills it later, while searches
//! find the entry from the moment its append commits. On a real `batond` (the serving role
//! under row-level security) and on fresh databases of their own where a test must be alone
//! (two indexers racing, a migration of existing rows).

mod common;

use std::time::Duration;

use baton_proto::v1 as pb;
use baton_server::domain::search::Query;
use baton_server::store::postgres::PgStore;
use baton_server::store::{SearchQuery, Store};
use common::fresh::FreshDb;
use common::*;
use sqlx::postgres::PgPool;

/// Every entry's vector of a tenant, read as the tables' owner: (NULL vectors, vectors that
/// differ from what the text gives).
async fn vectors(owner: &PgPool, tenant: &str) -> (i64, i64) {
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(tenant).execute(&mut *tx).await.unwrap();
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE search IS NULL), \
                count(*) FILTER (WHERE search IS DISTINCT FROM baton_search_vector(content_text)) \
         FROM entries WHERE tenant = $1",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await
    .unwrap()
}

async fn hits(ctx: &mut Context, query: &str) -> Vec<(u64, String)> {
    let request =
        pb::SearchEntriesRequest { session_key: "s".into(), query: query.into(), page_size: 100, ..Default::default() };
    let hits = ctx.search_entries(request).await.expect("search").into_inner().hits;
    hits.into_iter()
        .map(|h| (h.entry.expect("a hit has its entry").seq, format!("{:.6} {}", h.score, h.snippet)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_is_found_at_once_and_indexed_soon_after() {
    let Some(owner_url) = postgres_url() else { return };
    let owner = PgPool::connect(&owner_url).await.expect("connect as the owner");
    let srv = start_server(Backend::Postgres).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s", "a").await;
    // Each text, and what "deploy" finds right after its append, whether or not the indexer
    // has been by.
    let steps: [(&str, &[u64]); 3] =
        [("the deploy to staging failed", &[1]), ("Deploying again, quietly", &[1, 2]), ("lunch", &[1, 2])];
    for (text, expected) in steps {
        append(&mut ctx, "s", vec![message("a", text)]).await;
        let found: Vec<u64> = hits(&mut ctx, "deploy").await.iter().map(|h| h.0).collect();
        assert_eq!(found, expected, "after appending {text:?}");
    }
    let before = hits(&mut ctx, "deploy OR lunch").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (null, wrong) = vectors(&owner, &srv.tenant).await;
        assert_eq!(wrong - null, 0, "a filled vector differs from what the text gives");
        if null == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{null} vector(s) still unfilled after 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Indexed, the same hits with the same scores and snippets.
    assert_eq!(hits(&mut ctx, "deploy OR lunch").await, before);
    srv.shutdown().await;
}

/// Writes `n` entries into a new session of `tenant` as the owner would have before 0007 or as
/// an append does now: without a search vector (the column is left to its default).
async fn insert_entries(owner: &PgPool, tenant: &str, n: i64, text: &str) {
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.all_tenants', 'on', true)").execute(&mut *tx).await.unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO sessions (tenant, session_key, created_by, owner, status, last_seq, created_at, updated_at, \
         last_activity_at) VALUES ($1, 's', 'a', 'a', 'active', $2, now(), now(), now()) RETURNING id",
    )
    .bind(tenant)
    .bind(n)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO entries (session_id, seq, kind, role, author, content_text, media_type, token_count, \
         created_at, tenant) \
         SELECT $1, g, 'message', 'user', 'a', $3 || ' ' || g, 'text/plain', 1, now(), $2 \
         FROM generate_series(1, $4::bigint) g",
    )
    .bind(id)
    .bind(tenant)
    .bind(text)
    .bind(n)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Two indexers (two replicas) at once over the same rows: every row filled exactly once
/// (the rows each reports filling add up to the rows there were), both doing part of it,
/// neither waiting for the other nor deadlocking.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_indexers_fill_every_row_once() {
    let Some(db) = FreshDb::create("baton_indexer").await else { return };
    let timeout = Duration::from_secs(5);
    PgStore::connect(&db.url, 1, timeout).await.unwrap().migrate().await.unwrap();
    let owner = PgPool::connect(&db.url).await.unwrap();
    const ROWS: i64 = 6000;
    for t in ["t-a", "t-b", "t-c"] {
        insert_entries(&owner, t, ROWS / 3, "indexed by whoever gets there first").await;
    }
    let replicas =
        [PgStore::connect(&db.url, 4, timeout).await.unwrap(), PgStore::connect(&db.url, 4, timeout).await.unwrap()];
    let runs = replicas.map(|store| {
        tokio::spawn(async move {
            let mut filled = 0;
            loop {
                match store.index_batch(50).await.expect("a batch fails neither by deadlock nor otherwise") {
                    0 => return filled,
                    n => filled += n,
                }
            }
        })
    });
    let [a, b] = runs;
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), async { (a.await.unwrap(), b.await.unwrap()) })
        .await
        .expect("both indexers finish");
    assert_eq!(a + b, ROWS as u64, "filled {a} + {b}: each row once");
    assert!(a > 0 && b > 0, "both indexers took part: {a} + {b}");
    for t in ["t-a", "t-b", "t-c"] {
        assert_eq!(vectors(&owner, t).await, (0, 0), "tenant {t}: every vector filled, as the text gives");
    }
    owner.close().await;
    db.drop().await;
}

/// A database written before 0007 (vectors generated by the column) is converted in place:
/// existing rows keep their vectors, the column is a plain one that new rows leave NULL, and
/// searches find old and new rows alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_migration_keeps_existing_vectors() {
    let Some(db) = FreshDb::create("baton_indexer").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/postgres");
    for file in std::fs::read_dir(&all).unwrap().map(|f| f.unwrap().path()) {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&file, dir.path().join(name)).unwrap();
        }
    }
    let owner = PgPool::connect(&db.url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.path()).await.unwrap().run(&owner).await.unwrap();
    insert_entries(&owner, "t", 300, "migrating the old plan").await;
    let generated =
        "SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 'entries'::regclass AND attname = 'search'";
    assert_eq!(sqlx::query_scalar::<_, String>(generated).fetch_one(&owner).await.unwrap(), "s");
    let all_vectors = |owner: PgPool| async move {
        let mut tx = owner.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', 't', true)").execute(&mut *tx).await.unwrap();
        let read = "SELECT count(search), string_agg(search::text, '|' ORDER BY seq) FROM entries";
        sqlx::query_as::<_, (i64, String)>(read).fetch_one(&mut *tx).await.unwrap()
    };
    let before = all_vectors(owner.clone()).await;
    assert_eq!(before.0, 300, "generated vectors");

    let timeout = Duration::from_secs(5);
    PgStore::connect(&db.url, 1, timeout).await.unwrap().migrate().await.expect("0007 and on apply");
    assert_eq!(sqlx::query_scalar::<_, String>(generated).fetch_one(&owner).await.unwrap(), "");
    assert_eq!(all_vectors(owner.clone()).await, before, "the same vectors");
    assert_eq!(vectors(&owner, "t").await, (0, 0), "none left to fill, all as the text gives");
    insert_entries(&owner, "u", 2, "a new plan").await;
    assert_eq!(vectors(&owner, "u").await, (2, 2), "new rows wait for the indexer");

    let store = PgStore::connect(&db.url, 2, timeout).await.unwrap();
    let search = |tenant: &str| SearchQuery {
        tenant: tenant.into(),
        session_key: None,
        query: Query::parse("plans").unwrap(),
        offset: 0,
        limit: 1000,
    };
    assert_eq!(store.search(&search("t")).await.unwrap().len(), 300, "old rows, indexed before");
    assert_eq!(store.search(&search("u")).await.unwrap().len(), 2, "new rows, not indexed yet");
    assert_eq!(store.index_batch(500).await.unwrap(), 2, "only the new rows are left to fill");
    assert_eq!(store.search(&search("u")).await.unwrap().len(), 2, "new rows, indexed");
    owner.close().await;
    db.drop().await;
}
