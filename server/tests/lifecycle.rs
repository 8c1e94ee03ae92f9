//! Data lifecycle over gRPC against a real batond on every backend (the embedded store,
//! PostgreSQL under row-level security, PostgreSQL with Redis): delete, fork, redact (on request
//! and on ingest), compaction and retention, legal hold, the purge of expired sessions, the
//! audit log, and all of it racing appends.

mod common;

use std::time::Duration;

use baton_proto::v1 as pb;
use common::*;
use futures::StreamExt;
use tonic::Code;

backend_tests!(
    delete_erases_everything_and_keeps_inboxes_gap_free,
    fork_copies_entries_and_keeps_the_lineage,
    redaction_erases_content_everywhere_and_keeps_seqs,
    retract_last_needs_the_expected_last_seq,
    secrets_are_redacted_on_ingest,
    compaction_moves_first_seq_and_refuses_reads_below_it,
    retention_compacts_by_count,
    legal_hold_blocks_every_destructive_path,
    expired_sessions_are_purged,
    lifecycle_races_appends_without_gaps,
);

async fn entries(ctx: &mut Context, key: &str, after: u64) -> Result<Vec<pb::Entry>, tonic::Status> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = ctx
            .list_entries(pb::ListEntriesRequest {
                session_key: key.into(),
                after_seq: Some(after),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

fn text_of(e: &pb::Entry) -> &str {
    match &e.content {
        Some(pb::entry::Content::Text(t)) => t,
        _ => "",
    }
}

async fn session(ctx: &mut Context, key: &str) -> Result<pb::Session, tonic::Status> {
    Ok(ctx.get_session(pb::GetSessionRequest { session_key: key.into() }).await?.into_inner())
}

async fn request(h: &mut Handoffs, key: &str, from: &str, to: &str) -> pb::Handoff {
    h.request_handoff(pb::RequestHandoffRequest {
        session_key: key.into(),
        from_agent: from.into(),
        to_agent: to.into(),
        r#type: pb::HandoffType::ContextTransfer.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

/// The whole inbox of `agent` (pending first, then history) up to now.
async fn inbox(h: &mut Handoffs, agent: &str) -> Vec<pb::HandoffEvent> {
    let mut stream = h
        .watch_handoffs(pb::WatchHandoffsRequest { agent: agent.into(), after_cursor: Some(0) })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
        out.push(e);
    }
    out
}

async fn audit_actions(srv: &TestServer, key: &str) -> Vec<&'static str> {
    srv.server.store().audit_log(&srv.tenant, key).await.unwrap().into_iter().map(|a| a.action).collect()
}

async fn delete_erases_everything_and_keeps_inboxes_gap_free(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    let mut h = srv.handoffs().await;
    create_session(&mut ctx, "gone", "a").await;
    create_session(&mut ctx, "kept", "a").await;
    ctx.append_entries(pb::AppendEntriesRequest {
        session_key: "gone".into(),
        entries: vec![message("a", "one"), message("a", "two")],
        idempotency_key: "k1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    request(&mut h, "kept", "a", "b").await;
    let doomed = request(&mut h, "gone", "a", "b").await;
    h.accept_handoff(pb::AcceptHandoffRequest { handoff_id: doomed.handoff_id.clone(), agent: "b".into() })
        .await
        .unwrap();
    request(&mut h, "kept", "a", "b").await;
    // A live follower of the session.
    let mut follower = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "gone".into(),
            after_seq: 2,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let before = inbox(&mut h, "b").await;

    let deleted =
        ctx.delete_session(pb::DeleteSessionRequest { session_key: "gone".into() }).await.unwrap().into_inner();
    assert_eq!(deleted.deleted_entries, 2);
    assert_eq!(session(&mut ctx, "gone").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(entries(&mut ctx, "gone", 0).await.unwrap_err().code(), Code::NotFound);
    let e = h.get_handoff(pb::GetHandoffRequest { handoff_id: doomed.handoff_id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let window =
        ctx.get_context_window(pb::GetContextWindowRequest { session_key: "gone".into(), ..Default::default() }).await;
    assert_eq!(window.unwrap_err().code(), Code::NotFound, "nothing served from a cache");
    // The follower ends with NOT_FOUND.
    let end = tokio::time::timeout(Duration::from_secs(5), follower.next()).await.expect("the follower ends");
    assert_eq!(end.expect("an item").unwrap_err().code(), Code::NotFound);
    // Inbox cursors stay 1, 2, 3 … with the deleted handoff's events as tombstones and a DELETED event.
    let after = inbox(&mut h, "b").await;
    let cursors: Vec<u64> = after.iter().map(|e| e.cursor).collect();
    let max = *cursors.iter().max().unwrap();
    let mut sorted = cursors.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (sorted[0]..=max).collect::<Vec<_>>(), "gap-free: {cursors:?}");
    assert!(max > before.iter().map(|e| e.cursor).max().unwrap(), "a DELETED event was appended");
    let of_doomed: Vec<_> =
        after.iter().filter(|e| e.handoff.as_ref().is_some_and(|h| h.handoff_id == doomed.handoff_id)).collect();
    assert!(of_doomed.iter().all(|e| e.r#type() == pb::HandoffEventType::Deleted), "{of_doomed:?}");
    assert!(
        of_doomed.iter().all(|e| e.handoff.as_ref().unwrap().instructions.is_empty()
            && e.handoff.as_ref().unwrap().session_key.is_empty())
    );
    // The other session is untouched.
    assert!(session(&mut ctx, "kept").await.is_ok());
    // Audited.
    assert_eq!(audit_actions(&srv, "gone").await, ["delete"]);
    // Nothing of it in any PostgreSQL table (read as the owner, every tenant visible); the
    // inbox keeps only tombstones (cursor, handoff id, status, time).
    if b != Backend::Sqlite {
        use sqlx::Row as _;
        let owner = sqlx::PgPool::connect(&postgres_url().unwrap()).await.unwrap();
        let mut tx = owner.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.all_tenants', 'on', true)").execute(&mut *tx).await.unwrap();
        let counts = sqlx::query(
            "SELECT (SELECT count(*) FROM sessions WHERE tenant = $1 AND session_key = 'gone'), \
                    (SELECT count(*) FROM entries e WHERE e.tenant = $1 AND NOT EXISTS \
                        (SELECT 1 FROM sessions s WHERE s.id = e.session_id)), \
                    (SELECT count(*) FROM entries WHERE tenant = $1), \
                    (SELECT count(*) FROM appends WHERE tenant = $1), \
                    (SELECT count(*) FROM handoffs WHERE tenant = $1 AND session_key = 'gone'), \
                    (SELECT count(*) FROM inbox_events WHERE tenant = $1 AND handoff_id = $2 AND handoff_pk IS NOT NULL)",
        )
        .bind(&srv.tenant)
        .bind(&doomed.handoff_id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let got: Vec<i64> = (0..6).map(|i| counts.get::<i64, _>(i)).collect();
        assert_eq!(
            got,
            [0, 0, 0, 0, 0, 0],
            "sessions, orphan entries, entries (kept had none), appends, handoffs, linked events"
        );
        tx.rollback().await.unwrap();
    }
    // Nothing of it in Redis.
    if b == Backend::PostgresRedis {
        let url = redis_url().unwrap();
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url, "--scan", "--pattern", &format!("*{}/gone*", srv.tenant)])
            .output()
            .expect("redis-cli");
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "left in Redis: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    srv.shutdown().await;
}

async fn fork_copies_entries_and_keeps_the_lineage(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "src", "a").await;
    for batch in 0..10 {
        let batch: Vec<_> = (0..100).map(|i| message("a", &format!("entry {}", batch * 100 + i + 1))).collect();
        append(&mut ctx, "src", batch).await;
    }
    let fork = ctx
        .fork_session(pb::ForkSessionRequest {
            session_key: "src".into(),
            at_seq: 600,
            new_session_key: "f1".into(),
            agent: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((fork.owner.as_str(), fork.created_by.as_str(), fork.last_seq), ("b", "b", 600));
    assert_eq!(fork.forked_from, Some(pb::SessionRef { session_key: "src".into(), seq: 600 }));
    let src_entries = entries(&mut ctx, "src", 0).await.unwrap();
    let fork_entries = entries(&mut ctx, "f1", 0).await.unwrap();
    assert_eq!(fork_entries.len(), 600);
    for (s, f) in src_entries.iter().zip(&fork_entries) {
        assert_eq!((s.seq, text_of(s), s.kind, &s.author), (f.seq, text_of(f), f.kind, &f.author));
        assert_eq!(f.session_key, "f1");
    }
    let next = append(&mut ctx, "f1", vec![message("b", "fork goes on")]).await;
    assert_eq!(next.first_seq, 601);
    assert_eq!(session(&mut ctx, "src").await.unwrap().last_seq, 1000, "the source is unchanged");
    assert_eq!(entries(&mut ctx, "src", 999).await.unwrap()[0].seq, 1000);
    // A fork of a fork points at its parent, whose forked_from points further.
    let f2 = ctx
        .fork_session(pb::ForkSessionRequest {
            session_key: "f1".into(),
            at_seq: 0,
            new_session_key: "f2".into(),
            agent: "c".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f2.forked_from, Some(pb::SessionRef { session_key: "f1".into(), seq: 601 }));
    assert_eq!(session(&mut ctx, "f1").await.unwrap().forked_from.unwrap().session_key, "src");
    // Bad fork points.
    let e = ctx
        .fork_session(pb::ForkSessionRequest {
            session_key: "src".into(),
            at_seq: 1001,
            new_session_key: "x".into(),
            agent: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = ctx
        .fork_session(pb::ForkSessionRequest {
            session_key: "src".into(),
            at_seq: 1,
            new_session_key: "f1".into(),
            agent: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(audit_actions(&srv, "src").await, ["fork"]);
    srv.shutdown().await;
}

async fn redaction_erases_content_everywhere_and_keeps_seqs(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "r", "a").await;
    let mut second = message("a", "the xyzzy password is hunter2");
    second.metadata = Some(wire_struct(serde_json::json!({"pii": "yes"})));
    append(&mut ctx, "r", vec![message("a", "xyzzy first"), second, message("a", "xyzzy third")]).await;
    // Warm every cache (window and tail) first.
    let w = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "r".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(w.into_inner().entries.len(), 3);

    let red = ctx
        .redact_entries(pb::RedactEntriesRequest {
            session_key: "r".into(),
            seqs: vec![2],
            reason: "pii".into(),
            agent: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(red.entries.len(), 1);
    let e = &red.entries[0];
    assert!(e.redacted && text_of(e).is_empty() && e.metadata.as_ref().is_none_or(|m| m.fields.is_empty()));
    let r = e.redaction.as_ref().unwrap();
    assert_eq!((r.redacted_by.as_str(), r.reason.as_str()), ("a", "pii"));
    // Seqs, kind, author kept; content gone from the list, the window and search.
    let listed = entries(&mut ctx, "r", 0).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(listed[1].redacted && text_of(&listed[1]).is_empty() && listed[1].author == "a");
    let w = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "r".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(
        w.into_inner().entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 3],
        "windows skip redacted entries"
    );
    let hits = ctx
        .search_entries(pb::SearchEntriesRequest {
            session_key: "r".into(),
            query: "xyzzy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    let mut found: Vec<u64> = hits.iter().map(|h| h.entry.as_ref().unwrap().seq).collect();
    found.sort_unstable();
    assert_eq!(found, [1, 3], "the search index forgot it");
    let hunter = ctx
        .search_entries(pb::SearchEntriesRequest {
            session_key: "r".into(),
            query: "hunter2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(hunter.into_inner().hits.is_empty());
    // A replay shows it redacted.
    let replay: Vec<_> = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "r".into(),
            after_seq: 0,
            follow: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert!(replay[1].as_ref().unwrap().redacted);
    // Redacting again keeps the first redaction; an unknown seq is refused and nothing changes.
    let again = ctx
        .redact_entries(pb::RedactEntriesRequest {
            session_key: "r".into(),
            seqs: vec![2],
            reason: "again".into(),
            agent: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.entries[0].redaction.as_ref().unwrap().reason, "pii");
    let e = ctx
        .redact_entries(pb::RedactEntriesRequest {
            session_key: "r".into(),
            seqs: vec![1, 9],
            reason: "x".into(),
            agent: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(!entries(&mut ctx, "r", 0).await.unwrap()[0].redacted, "seq 1 untouched by the refused call");
    assert_eq!(audit_actions(&srv, "r").await, ["redact", "redact"]);
    srv.shutdown().await;
}

fn wire_struct(v: serde_json::Value) -> prost_types::Struct {
    baton_server::wire::json_to_struct(v.as_object().unwrap().clone())
}

async fn retract_last_needs_the_expected_last_seq(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "p", "a").await;
    append(&mut ctx, "p", vec![message("a", "keep"), message("a", "oops")]).await;
    let stale = ctx
        .redact_entries(pb::RedactEntriesRequest {
            session_key: "p".into(),
            seqs: vec![2],
            reason: "pop".into(),
            agent: "a".into(),
            expected_last_seq: Some(1),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(!entries(&mut ctx, "p", 0).await.unwrap()[1].redacted, "a stale retract changes nothing");
    ctx.redact_entries(pb::RedactEntriesRequest {
        session_key: "p".into(),
        seqs: vec![2],
        reason: "pop".into(),
        agent: "a".into(),
        expected_last_seq: Some(2),
    })
    .await
    .expect("retract the last entry");
    assert!(entries(&mut ctx, "p", 0).await.unwrap()[1].redacted);
    srv.shutdown().await;
}

async fn secrets_are_redacted_on_ingest(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s", "a").await;
    let text = "deploy with AKIAIOSFODNN7EXAMPLE and https://admin:hunter2pass@db.example.com/app";
    let out = append(&mut ctx, "s", vec![message("a", text), message("a", "ordinary prose about 9f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6 and 123e4567-e89b-12d3-a456-426614174000")]).await;
    let stored = entries(&mut ctx, "s", 0).await.unwrap();
    for e in [&out.entries[0], &stored[0]] {
        let t = text_of(e);
        assert!(!t.contains("AKIAIOSFODNN7EXAMPLE") && !t.contains("hunter2pass"), "{t}");
        assert!(t.contains("[REDACTED:aws_access_key]") && t.contains("[REDACTED:url_password]"), "{t}");
        let meta = e.metadata.as_ref().unwrap();
        assert!(meta.fields.contains_key("baton_redactions"), "{meta:?}");
    }
    assert!(
        !stored[1].metadata.as_ref().is_some_and(|m| m.fields.contains_key("baton_redactions")),
        "lookalikes left alone"
    );
    assert!(text_of(&stored[1]).contains("123e4567-e89b-12d3-a456-426614174000"));
    let hits = ctx
        .search_entries(pb::SearchEntriesRequest {
            session_key: "s".into(),
            query: "hunter2pass".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(hits.into_inner().hits.is_empty(), "the secret never reached the search index");
    srv.shutdown().await;
}

async fn compaction_moves_first_seq_and_refuses_reads_below_it(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "c", "a").await;
    append(&mut ctx, "c", (1..=4).map(|i| message("a", &format!("m{i}"))).collect()).await;
    append(&mut ctx, "c", vec![text(pb::EntryKind::Summary, "a", "summary of 1-4")]).await;
    append(&mut ctx, "c", (6..=10).map(|i| message("a", &format!("m{i}"))).collect()).await;
    let mut follower = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "c".into(),
            after_seq: 10,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let guard = ctx
        .compact_session(pb::CompactSessionRequest { session_key: "c".into(), before_seq: 8, force: false })
        .await
        .unwrap_err();
    assert_eq!(guard.code(), Code::FailedPrecondition, "past the newest summary needs force");
    let s = ctx
        .compact_session(pb::CompactSessionRequest { session_key: "c".into(), before_seq: 5, force: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.first_seq, s.last_seq), (5, 10));
    assert_eq!(session(&mut ctx, "c").await.unwrap().first_seq, 5);
    // Below first_seq: OUT_OF_RANGE, never a silent gap.
    assert_eq!(entries(&mut ctx, "c", 0).await.unwrap_err().code(), Code::OutOfRange);
    let e = ctx
        .stream_entries(pb::StreamEntriesRequest {
            session_key: "c".into(),
            after_seq: 2,
            follow: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(
        entries(&mut ctx, "c", 4).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
    let w = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "c".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.summary.map(|s| s.seq), Some(5));
    // The live follower is unaffected.
    append(&mut ctx, "c", vec![message("a", "m11")]).await;
    let next = tokio::time::timeout(Duration::from_secs(5), follower.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.seq, 11);
    // With force, past the summary; past last_seq + 1 is invalid.
    let s = ctx
        .compact_session(pb::CompactSessionRequest { session_key: "c".into(), before_seq: 9, force: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.first_seq, 9);
    let w = ctx
        .get_context_window(pb::GetContextWindowRequest { session_key: "c".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(w.summary.is_none() && w.entries.first().map(|e| e.seq) == Some(9));
    let e = ctx
        .compact_session(pb::CompactSessionRequest { session_key: "c".into(), before_seq: 13, force: true })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(audit_actions(&srv, "c").await, ["compact", "compact"]);
    srv.shutdown().await;
}

async fn retention_compacts_by_count(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "k", "a").await;
    append(&mut ctx, "k", (1..=10).map(|i| message("a", &format!("m{i}"))).collect()).await;
    ctx.update_session(pb::UpdateSessionRequest {
        session_key: "k".into(),
        retention: Some(pb::Retention { keep_latest: 3, max_age: None }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(session(&mut ctx, "k").await.unwrap().retention.unwrap().keep_latest, 3);
    srv.baton.sweep_retention().await.unwrap();
    let s = session(&mut ctx, "k").await.unwrap();
    assert_eq!(s.first_seq, 8, "keeps the newest 3");
    assert_eq!(entries(&mut ctx, "k", 7).await.unwrap().len(), 3);
    assert_eq!(audit_actions(&srv, "k").await, ["retention", "retain"]);
    srv.shutdown().await;
}

async fn legal_hold_blocks_every_destructive_path(b: Backend) {
    let srv = start_server_with(b, |c| c.purge_expired_after = Duration::from_secs(60)).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "h", "a").await;
    append(&mut ctx, "h", (1..=5).map(|i| message("a", &format!("m{i}"))).collect()).await;
    let hold =
        |on: bool| pb::UpdateSessionRequest { session_key: "h".into(), legal_hold: Some(on), ..Default::default() };
    // A writer may not set it; an admin may.
    assert_eq!(ctx.update_session(hold(true)).await.unwrap_err().code(), Code::PermissionDenied);
    let admin = srv.server.key(&srv.tenant, Role::Admin, None).await;
    let mut adm = srv.context_as(Caller::new(None, Some(&admin))).await;
    assert!(adm.update_session(hold(true)).await.unwrap().into_inner().legal_hold);

    let held = |e: tonic::Status| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("legal hold"), "{e:?}");
    };
    held(adm.delete_session(pb::DeleteSessionRequest { session_key: "h".into() }).await.unwrap_err());
    held(
        adm.compact_session(pb::CompactSessionRequest { session_key: "h".into(), before_seq: 3, force: true })
            .await
            .unwrap_err(),
    );
    held(
        adm.redact_entries(pb::RedactEntriesRequest {
            session_key: "h".into(),
            seqs: vec![1],
            reason: "x".into(),
            agent: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    // Retention and the expiry purge skip it.
    adm.update_session(pb::UpdateSessionRequest {
        session_key: "h".into(),
        retention: Some(pb::Retention { keep_latest: 1, max_age: None }),
        ttl: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    })
    .await
    .unwrap();
    srv.clock.advance(Duration::from_secs(3600));
    srv.baton.sweep().await.unwrap();
    srv.clock.advance(Duration::from_secs(120));
    srv.baton.sweep_retention().await.unwrap();
    srv.baton.sweep().await.unwrap();
    let s = session(&mut ctx, "h").await.unwrap();
    assert_eq!(
        (s.first_seq, s.status()),
        (1, pb::SessionStatus::Expired),
        "held: expired but neither compacted nor purged"
    );
    // Lifted: the purge takes it.
    adm.update_session(hold(false)).await.unwrap();
    srv.baton.sweep().await.unwrap();
    assert_eq!(session(&mut ctx, "h").await.unwrap_err().code(), Code::NotFound);
    let actions = audit_actions(&srv, "h").await;
    assert_eq!(actions.iter().filter(|a| **a == "legal_hold").count(), 2, "{actions:?}");
    assert_eq!(actions.last(), Some(&"purge"));
    srv.shutdown().await;
}

async fn expired_sessions_are_purged(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    ctx.create_session(pb::CreateSessionRequest {
        session_key: "ttl".into(),
        agent: "a".into(),
        ttl: Some(prost_types::Duration { seconds: 10, nanos: 0 }),
        ..Default::default()
    })
    .await
    .unwrap();
    append(&mut ctx, "ttl", vec![message("a", "x")]).await;
    srv.clock.advance(Duration::from_secs(11));
    srv.baton.sweep().await.unwrap();
    assert_eq!(session(&mut ctx, "ttl").await.unwrap().status(), pb::SessionStatus::Expired);
    // The default purge delay is 30 days.
    srv.clock.advance(Duration::from_secs(29 * 86_400));
    srv.baton.sweep().await.unwrap();
    assert!(session(&mut ctx, "ttl").await.is_ok());
    srv.clock.advance(Duration::from_secs(2 * 86_400));
    srv.baton.sweep().await.unwrap();
    assert_eq!(session(&mut ctx, "ttl").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(audit_actions(&srv, "ttl").await, ["purge"]);
    srv.shutdown().await;
}

async fn lifecycle_races_appends_without_gaps(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    for key in ["race", "doomed"] {
        create_session(&mut ctx, key, "a").await;
        append(&mut ctx, key, (1..=50).map(|i| message("a", &format!("m{i}"))).collect()).await;
    }
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(srv.context().await);
    }
    let appenders: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, mut ctx)| {
            tokio::spawn(async move {
                let mut ok = 0;
                for i in 0..25 {
                    for key in ["race", "doomed"] {
                        let r = ctx
                            .append_entries(pb::AppendEntriesRequest {
                                session_key: key.into(),
                                entries: vec![message("a", &format!("w{w} {i}"))],
                                ..Default::default()
                            })
                            .await;
                        match r {
                            Ok(_) => ok += 1,
                            Err(e) => assert_eq!(e.code(), Code::NotFound, "only the deletion may refuse: {e:?}"),
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let mut forks = Vec::new();
    for n in 0..3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let f = ctx
            .fork_session(pb::ForkSessionRequest {
                session_key: "race".into(),
                at_seq: 0,
                new_session_key: format!("rf{n}"),
                agent: "b".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        forks.push(f);
        ctx.redact_entries(pb::RedactEntriesRequest {
            session_key: "race".into(),
            seqs: vec![40 + n],
            reason: "r".into(),
            agent: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        ctx.compact_session(pb::CompactSessionRequest {
            session_key: "race".into(),
            before_seq: 10 * (n + 1),
            force: false,
        })
        .await
        .unwrap();
    }
    ctx.delete_session(pb::DeleteSessionRequest { session_key: "doomed".into() }).await.unwrap();
    for a in appenders {
        a.await.unwrap();
    }
    // The source: first_seq..=last_seq, gap-free, every append whole.
    let s = session(&mut ctx, "race").await.unwrap();
    let listed = entries(&mut ctx, "race", s.first_seq - 1).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), (s.first_seq..=s.last_seq).collect::<Vec<_>>());
    assert_eq!(s.last_seq, 150, "50 + 4 writers x 25, none lost");
    // Each fork: 1..=at, gap-free, equal to the source where both still have them.
    for f in forks {
        let got = entries(&mut ctx, &f.session_key, f.first_seq - 1).await.unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), (f.first_seq..=f.last_seq).collect::<Vec<_>>());
    }
    assert_eq!(session(&mut ctx, "doomed").await.unwrap_err().code(), Code::NotFound);
    srv.shutdown().await;
}
