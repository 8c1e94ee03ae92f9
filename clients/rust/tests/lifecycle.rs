//! The data lifecycle RPCs of baton-client against a real batond (in process, embedded store,
//! loopback): delete, fork, redact (and retract-last), compact, retention and legal hold.

mod common;

use baton_client::v1::*;
use baton_client::{Client, Error};
use common::{Server, client, message, text};
use futures::TryStreamExt;

/// Opens `key` owned by `agent` with the entries "entry 1" .. "entry n".
async fn seeded(c: &Client, key: &str, agent: &str, n: usize) {
    c.create_session(CreateSessionRequest { session_key: key.into(), agent: agent.into(), ..Default::default() })
        .await
        .expect("create session");
    let entries = (1..=n).map(|i| message(agent, &format!("entry {i}"))).collect();
    c.append_entries(AppendEntriesRequest { session_key: key.into(), entries, ..Default::default() })
        .await
        .expect("append");
}

async fn session(c: &Client, key: &str) -> Result<Session, Error> {
    c.get_session(GetSessionRequest { session_key: key.into() }).await
}

async fn entries(c: &Client, key: &str, after_seq: Option<u64>) -> Result<Vec<Entry>, Error> {
    let page = c.list_entries(ListEntriesRequest { session_key: key.into(), after_seq, ..Default::default() }).await?;
    Ok(page.entries)
}

fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn redact(key: &str, seqs: Vec<u64>, expected_last_seq: Option<u64>) -> RedactEntriesRequest {
    RedactEntriesRequest {
        session_key: key.into(),
        seqs,
        reason: "leaked a password".into(),
        agent: "planner".into(),
        expected_last_seq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_session_erases_it() {
    let server = Server::start().await;
    let c = client(&server.target()).await;
    seeded(&c, "doomed", "planner", 3).await;

    let gone = c.delete_session(DeleteSessionRequest { session_key: "doomed".into() }).await.unwrap();
    assert_eq!(gone.deleted_entries, 3);
    assert_eq!(session(&c, "doomed").await.unwrap_err().code_name(), "NOT_FOUND");
    assert_eq!(entries(&c, "doomed", None).await.unwrap_err().code_name(), "NOT_FOUND");
    let again = c.delete_session(DeleteSessionRequest { session_key: "doomed".into() }).await.unwrap_err();
    assert_eq!(again.code_name(), "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_copies_entries_up_to_at_seq() {
    let server = Server::start().await;
    let c = client(&server.target()).await;
    seeded(&c, "source", "planner", 5).await;

    let fork = c
        .fork_session(ForkSessionRequest {
            session_key: "source".into(),
            at_seq: 3,
            new_session_key: "fork".into(),
            agent: "explorer".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((fork.session_key.as_str(), fork.owner.as_str(), fork.last_seq), ("fork", "explorer", 3));
    assert_eq!(fork.forked_from, Some(SessionRef { session_key: "source".into(), seq: 3 }));

    let copied = entries(&c, "fork", None).await.unwrap();
    assert_eq!(seqs(&copied), [1, 2, 3]);
    assert_eq!(copied.iter().map(text).collect::<Vec<_>>(), ["entry 1", "entry 2", "entry 3"]);
    let next = c
        .append_entries(AppendEntriesRequest {
            session_key: "fork".into(),
            entries: vec![message("explorer", "elsewhere")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.first_seq, 4);
    let source = session(&c, "source").await.unwrap();
    assert_eq!((source.last_seq, source.forked_from), (5, None), "the source is unchanged");

    let grand = c
        .fork_session(ForkSessionRequest {
            session_key: "fork".into(),
            at_seq: 2,
            agent: "planner".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!grand.session_key.is_empty() && grand.session_key != "fork", "a key is generated");
    assert_eq!(grand.forked_from, Some(SessionRef { session_key: "fork".into(), seq: 2 }));
    let parent = session(&c, "fork").await.unwrap();
    assert_eq!(parent.forked_from.map(|r| r.session_key).as_deref(), Some("source"), "the lineage stays visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_empties_the_content_and_retract_last_checks_the_last_seq() {
    let server = Server::start().await;
    let c = client(&server.target()).await;
    seeded(&c, "s", "planner", 3).await;

    let r = c.redact_entries(redact("s", vec![2], None)).await.unwrap();
    assert_eq!(seqs(&r.entries), [2]);
    let red = &r.entries[0];
    // The content is empty (batond sends an empty text), never the old text or data.
    assert!(red.redacted && text(red).is_empty(), "{red:?}");
    assert!(!matches!(red.content, Some(entry::Content::Data(_))), "{red:?}");
    assert_eq!((red.author.as_str(), red.kind()), ("planner", EntryKind::Message));
    let redaction = red.redaction.as_ref().expect("redaction");
    assert_eq!(redaction.reason, "leaked a password");
    assert!(!redaction.redacted_by.is_empty() && redaction.redacted_at.is_some(), "{redaction:?}");

    let listed = entries(&c, "s", None).await.unwrap();
    let view: Vec<(u64, bool, &str)> = listed.iter().map(|e| (e.seq, e.redacted, text(e))).collect();
    assert_eq!(view, [(1, false, "entry 1"), (2, true, ""), (3, false, "entry 3")]);

    let stale = c.redact_entries(redact("s", vec![3], Some(2))).await.unwrap_err();
    assert_eq!(stale.code_name(), "FAILED_PRECONDITION");
    assert!(!entries(&c, "s", Some(2)).await.unwrap()[0].redacted, "the stale retraction changed nothing");
    let retracted = c.redact_entries(redact("s", vec![3], Some(3))).await.unwrap();
    assert!(retracted.entries[0].redacted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_moves_first_seq_and_reads_below_it_are_out_of_range() {
    let server = Server::start().await;
    let c = client(&server.target()).await;
    seeded(&c, "s", "planner", 5).await;
    assert_eq!(session(&c, "s").await.unwrap().first_seq, 1);

    let compacted = c
        .compact_session(CompactSessionRequest { session_key: "s".into(), before_seq: 3, force: false })
        .await
        .unwrap();
    assert_eq!((compacted.first_seq, compacted.last_seq), (3, 5));
    assert_eq!(session(&c, "s").await.unwrap().first_seq, 3);
    assert_eq!(seqs(&entries(&c, "s", Some(2)).await.unwrap()), [3, 4, 5]);
    assert_eq!(entries(&c, "s", Some(1)).await.unwrap_err().code_name(), "OUT_OF_RANGE");

    let below = StreamEntriesRequest { session_key: "s".into(), after_seq: 1, ..Default::default() };
    let e = match c.stream_entries(below).await {
        Err(e) => e,
        Ok(stream) => stream.try_collect::<Vec<_>>().await.expect_err("a stream below first_seq fails"),
    };
    assert_eq!(e.code_name(), "OUT_OF_RANGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legal_hold_blocks_delete_compaction_and_redaction() {
    let server = Server::start().await;
    let c = client(&server.target()).await;
    seeded(&c, "held", "planner", 2).await;

    let hold =
        |on: bool| UpdateSessionRequest { session_key: "held".into(), legal_hold: Some(on), ..Default::default() };
    assert!(c.update_session(hold(true)).await.unwrap().legal_hold);
    let e = c.delete_session(DeleteSessionRequest { session_key: "held".into() }).await.unwrap_err();
    assert_eq!(e.code_name(), "FAILED_PRECONDITION");
    let e = c
        .compact_session(CompactSessionRequest { session_key: "held".into(), before_seq: 2, force: false })
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "FAILED_PRECONDITION");
    let e = c.redact_entries(redact("held", vec![1], None)).await.unwrap_err();
    assert_eq!(e.code_name(), "FAILED_PRECONDITION");
    let kept = entries(&c, "held", None).await.unwrap();
    assert_eq!(kept.iter().map(|e| e.redacted).collect::<Vec<_>>(), [false, false]);

    // A google.protobuf.Duration of 30 days (prost-types is not a dependency of its own here).
    let mut max_age = Retention::default().max_age.unwrap_or_default();
    max_age.seconds = 30 * 86_400;
    let retention = Retention { keep_latest: 100, max_age: Some(max_age) };
    let s = c
        .update_session(UpdateSessionRequest {
            session_key: "held".into(),
            retention: Some(retention),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(s.legal_hold, "an update without legal_hold leaves it set");
    assert_eq!(s.retention, Some(retention));

    assert!(!c.update_session(hold(false)).await.unwrap().legal_hold);
    let gone = c.delete_session(DeleteSessionRequest { session_key: "held".into() }).await.unwrap();
    assert_eq!(gone.deleted_entries, 2);
}
