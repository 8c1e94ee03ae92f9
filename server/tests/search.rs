//! The search query language (`domain::search`) means the same on every store: one table of
//! queries and the entries each must find, and one of queries that must be refused with
//! INVALID_ARGUMENT naming the problem, both run through the gRPC API of a real `batond` on
//! the embedded SQLite store and on PostgreSQL (scores and ranking are each store's own, so
//! only which entries match is compared). Snippets never mark an excluded word.

mod common;

use baton_proto::v1 as pb;
use common::*;
use tonic::Code;

backend_tests!(
    every_query_finds_the_same_entries,
    malformed_queries_are_refused_naming_the_problem,
    snippets_mark_only_what_was_asked_for,
);

/// The session every case searches, one entry per line: seq = index + 1.
const TEXTS: &[&str] = &[
    /* 1 */ "We will migrate the plan today.",
    /* 2 */ "Migrating the database took an hour.",
    /* 3 */ "The migration plan is ready.",
    /* 4 */ "Plan B: migrate later.",
    /* 5 */ "Deploy to staging failed; mail user@example.com or see foo.bar/baz.",
    /* 6 */ "Deploy to production succeeded.",
    /* 7 */ "Café Straße 日本語 ÜBER Ελληνικά",
    /* 8 */ "The cafe is closed.",
    /* 9 */ "state of the art tooling",
    /* 10 */ "It is what it is.",
    /* 11 */ "migrate_db v1.2.3 well-known",
];

/// Seq of the binary entry appended after the texts (it holds the word "migrate" as bytes).
const BINARY: u64 = TEXTS.len() as u64 + 1;

/// Query → the seqs it finds, whatever the store.
const FINDS: &[(&str, &[u64])] = &[
    // Phrases, with the common words inside them, and stemming inside phrases.
    ("\"migrate the\"", &[1, 2]),
    ("\"MIGRATE THE\"", &[1, 2]),
    ("\"migrate the\" -plan", &[2]),
    ("\"migrate the\" OR plan", &[1, 2, 3, 4]),
    ("\"state of the art\"", &[9]),
    ("\"state art\"", &[]),
    ("state art", &[9]),
    ("\"it is\"", &[10]),
    ("\"the\" closed", &[8]),
    ("\"or\"", &[5]),
    // Stemming and case.
    ("migrate", &[1, 2, 3, 4, 11]),
    ("migrating", &[1, 2, 3, 4, 11]),
    ("MIGRATIONS", &[1, 2, 3, 4, 11]),
    // Implicit AND, a bare AND, OR binding tighter than AND, exclusions.
    ("migrate plan", &[1, 3, 4]),
    ("migrate AND plan", &[1, 3, 4]),
    ("migrate -plan", &[2, 11]),
    ("the migrate -plan", &[2, 11]),
    ("deploy OR release failed", &[5]),
    ("deploy OR tooling", &[5, 6, 9]),
    ("deploy -staging", &[6]),
    ("-\"to staging\" deploy", &[6]),
    ("migrate -\"plan b\"", &[1, 2, 3, 11]),
    ("zeppelin", &[]),
    // Words are runs of letters and digits, in the text as in the query.
    ("example", &[5]),
    ("user@example.com", &[5]),
    ("foo.bar", &[5]),
    ("\"bar foo\"", &[]),
    ("v1.2.3", &[11]),
    ("well-known", &[11]),
    ("known db", &[11]),
    ("(deploy) [production]!", &[6]),
    ("deploy* ^production", &[6]),
    // FTS5 and tsquery syntax typed by the caller is only words.
    ("content_text:deploy", &[]),
    ("NEAR(deploy production)", &[]),
    ("deploy:* & !production", &[6]),
    // Unicode words: case-folded, accents kept.
    ("café", &[7]),
    ("CAFÉ", &[7]),
    ("cafe", &[8]),
    ("straße über", &[7]),
    ("日本語", &[7]),
    ("ελληνικά", &[7]),
];

/// Query → the start of what is wrong with it.
fn refusals() -> Vec<(String, &'static str)> {
    let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let owned = |q: &str, why| (q.to_owned(), why);
    vec![
        owned("\"migrate the\" OR -plan", "OR at byte 14 cannot join the excluded term at byte 17"),
        owned("the", "the query has no searchable words"),
        owned("The OF and", "the query has no searchable words"),
        owned("-plan", "the query only excludes"),
        owned("-plan -\"migrate the\"", "the query only excludes"),
        owned("(*)", "the query has no searchable words"),
        owned("... -- !", "the query has no searchable words"),
        owned("-", "the query has no searchable words"),
        owned("\"\"", "the query has no searchable words"),
        owned("\"unclosed phrase", "the quote at byte 0 is never closed"),
        owned("OR plan", "OR at byte 0 needs a word or phrase on each side"),
        owned("plan OR", "OR at byte 5 needs a word or phrase on each side"),
        owned("plan OR the", "OR at byte 5 needs a word or phrase on each side"),
        owned("deploy NOT staging", "NOT at byte 7 is not an operator"),
        owned("", "is required"),
        owned("   ", "is required"),
        owned("migrate\0plan", "must not contain the NUL character (U+0000), found at byte 7"),
        (format!("migrate {}", "x".repeat(1017)), "must be at most 1024 bytes, got 1025"),
        (words(33), "has more than 32 words and phrases"),
    ]
}

async fn seeded(b: Backend) -> (TestServer, Context) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s", "a").await;
    let mut entries: Vec<pb::NewEntry> = TEXTS.iter().map(|t| message("a", t)).collect();
    entries.push(pb::NewEntry {
        kind: pb::EntryKind::File.into(),
        author: "a".into(),
        media_type: "application/octet-stream".into(),
        content: Some(pb::new_entry::Content::Data(b"migrate the plan".to_vec())),
        ..Default::default()
    });
    assert_eq!(append(&mut ctx, "s", entries).await.last_seq, BINARY);
    (srv, ctx)
}

async fn search(ctx: &mut Context, query: &str) -> Result<Vec<pb::SearchHit>, tonic::Status> {
    let request =
        pb::SearchEntriesRequest { session_key: "s".into(), query: query.into(), page_size: 100, ..Default::default() };
    Ok(ctx.search_entries(request).await?.into_inner().hits)
}

fn seqs(hits: &[pb::SearchHit]) -> Vec<u64> {
    let mut seqs: Vec<u64> = hits.iter().map(|h| h.entry.as_ref().expect("a hit has its entry").seq).collect();
    seqs.sort_unstable();
    seqs
}

async fn every_query_finds_the_same_entries(b: Backend) {
    let (srv, mut ctx) = seeded(b).await;
    let mut wrong = Vec::new();
    for &(query, expected) in FINDS {
        match search(&mut ctx, query).await {
            Ok(hits) if seqs(&hits) == expected => {}
            Ok(hits) => wrong.push(format!("{query:?} found {:?}, not {expected:?}", seqs(&hits))),
            Err(e) => wrong.push(format!("{query:?} failed: {e:?}")),
        }
    }
    assert!(wrong.is_empty(), "on {b:?}:\n{}", wrong.join("\n"));
    srv.shutdown().await;
}

async fn malformed_queries_are_refused_naming_the_problem(b: Backend) {
    use tonic_types::StatusExt;
    let (srv, mut ctx) = seeded(b).await;
    let mut wrong = Vec::new();
    for (query, why) in refusals() {
        let shown = query.chars().take(60).collect::<String>();
        let e = match search(&mut ctx, &query).await {
            Ok(hits) => {
                wrong.push(format!("{shown:?} was answered: {:?}", seqs(&hits)));
                continue;
            }
            Err(e) => e,
        };
        let said: Vec<(String, String)> = e
            .get_details_bad_request()
            .map(|br| br.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
            .unwrap_or_default();
        let named =
            matches!(said.as_slice(), [(field, description)] if field == "query" && description.starts_with(why));
        if e.code() != Code::InvalidArgument || !named {
            wrong.push(format!("{shown:?}: {:?} {said:?}, expected INVALID_ARGUMENT query: {why}", e.code()));
        }
    }
    assert!(wrong.is_empty(), "on {b:?}:\n{}", wrong.join("\n"));
    srv.shutdown().await;
}

async fn snippets_mark_only_what_was_asked_for(b: Backend) {
    let (srv, mut ctx) = seeded(b).await;
    // Entry 1 and 3 hold "plan", but not the excluded phrase "plan b": they match, and their
    // "plan" is not marked.
    let hits = search(&mut ctx, "migrate -\"plan b\"").await.unwrap();
    assert_eq!(seqs(&hits), [1, 2, 3, 11]);
    for hit in &hits {
        let snippet = hit.snippet.to_lowercase();
        assert!(snippet.contains("[migrat"), "on {b:?} the match is marked: {snippet:?}");
        assert!(!snippet.contains("[plan"), "on {b:?} an excluded word is marked: {snippet:?}");
    }
    let hits = search(&mut ctx, "\"migrate the\" -plan").await.unwrap();
    assert_eq!(seqs(&hits), [2]);
    assert!(hits[0].snippet.contains("[Migrating"), "on {b:?}: {:?}", hits[0].snippet);
    srv.shutdown().await;
}

/// An embedded store written before the query language (its index removed accents and was
/// built by the earlier migrations) is indexed again in place when it is opened: its entries
/// are found as the language says.
#[tokio::test]
async fn an_existing_embedded_index_is_rebuilt_in_place() {
    use baton_server::domain::search::Query;
    use baton_server::store::sqlite::SqliteStore;
    use baton_server::store::{SearchQuery, Store};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

    // The migrations that came before this one, applied as a store of that time applied them.
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    for file in std::fs::read_dir(&all).unwrap().map(|f| f.unwrap().path()) {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0005" {
            std::fs::copy(&file, earlier.join(name)).unwrap();
        }
    }
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let options = SqliteConnectOptions::new().filename(SqliteStore::file(&data)).create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(earlier.as_path()).await.unwrap().run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO sessions (tenant, session_key, created_by, owner, status, created_at, updated_at, \
         last_activity_at) VALUES ('t', 's', 'a', 'a', 'active', 0, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (seq, text) in [(1, "Café migrating the plan"), (2, "the cafe")] {
        sqlx::query(
            "INSERT INTO entries (session_id, seq, kind, role, author, content_text, media_type, token_count, \
             created_at) VALUES (1, $1, 'message', 'user', 'a', $2, 'text/plain', 1, 0)",
        )
        .bind(seq)
        .bind(text)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&data).await.expect("the store opens and migrates");
    let mut found = Vec::new();
    for query in ["cafe", "café", "\"migrate the\""] {
        let q = SearchQuery {
            tenant: "t".into(),
            session_key: None,
            query: Query::parse(query).unwrap(),
            offset: 0,
            limit: 10,
        };
        found.push(store.search(&q).await.unwrap().iter().map(|h| h.entry.seq).collect::<Vec<_>>());
    }
    assert_eq!(found, [vec![2], vec![1], vec![1]], "cafe, café, \"migrate the\"");
}
