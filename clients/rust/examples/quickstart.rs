//! Quickstart: a planner agent opens a session, appends context while a follower streams it,
//! and hands the work off to a reviewer agent, which accepts it from its inbox and reads the
//! context package.
//!
//! Start a server, then run the example against it:
//!
//! ```text
//! cargo run -p baton-server --bin batond -- --data-dir /tmp/baton-data
//! cargo run -p baton-client --example quickstart -- 127.0.0.1:50051
//! ```

use baton_client::v1::{
    self, AcceptHandoffRequest, AppendEntriesRequest, CompleteHandoffRequest, CreateSessionRequest, HandoffType,
    NewEntry, RequestHandoffRequest, StreamEntriesRequest, StreamHandoffContextRequest, WatchHandoffsRequest,
};
use baton_client::{Client, Error};
use futures::{StreamExt, TryStreamExt};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let target = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let outcome = run(&target).await?;
    println!("done: session {} handed off as {}", outcome.session_key, outcome.handoff.handoff_id);
    Ok(())
}

/// What the quickstart did, for whoever wants to check it.
pub struct Outcome {
    pub session_key: String,
    /// The seqs the follower saw.
    pub followed: Vec<u64>,
    /// The context package the reviewer read.
    pub context: Vec<v1::Entry>,
    /// The handoff, completed by the reviewer.
    pub handoff: v1::Handoff,
}

fn entry(kind: v1::EntryKind, role: &str, author: &str, text: &str) -> NewEntry {
    NewEntry {
        kind: kind.into(),
        role: role.into(),
        author: author.into(),
        content: Some(v1::new_entry::Content::Text(text.into())),
        ..Default::default()
    }
}

pub async fn run(target: &str) -> Result<Outcome, Error> {
    // One client per agent here; a real agent shares one client across its tasks.
    let planner = Client::builder(target).tenant("quickstart").connect().await?;
    let reviewer = Client::builder(target).tenant("quickstart").connect().await?;

    // 1. A session, owned by the planner (its key is generated).
    let session =
        planner.create_session(CreateSessionRequest { agent: "planner".into(), ..Default::default() }).await?;
    let key = session.session_key.clone();
    println!("session {key}");

    // 2. A follower: replays the session and waits for new entries (here: the first three).
    let follow = StreamEntriesRequest { session_key: key.clone(), follow: true, max_entries: 3, ..Default::default() };
    let entries = planner.stream_entries(follow).await?;
    let follower = tokio::spawn(entries.map_ok(|e| e.seq).try_collect::<Vec<u64>>());

    // 3. Context, appended in one atomic batch (retried safely: the client adds an idempotency key).
    let appended = planner
        .append_entries(AppendEntriesRequest {
            session_key: key.clone(),
            entries: vec![
                entry(v1::EntryKind::Message, "user", "planner", "Find why checkout latency doubled on Monday."),
                entry(v1::EntryKind::ToolCall, "tool", "planner", r#"{"tool":"query_metrics","range":"7d"}"#),
                entry(
                    v1::EntryKind::Message,
                    "assistant",
                    "planner",
                    "p99 rose after the cache TTL change; needs review.",
                ),
            ],
            ..Default::default()
        })
        .await?;
    println!("appended seqs {}..{}", appended.first_seq, appended.last_seq);
    let followed = follower.await.expect("follower task")?;
    println!("follower saw {followed:?}");

    // 4. Hand the session off to the reviewer.
    let handoff = planner
        .request_handoff(RequestHandoffRequest {
            session_key: key.clone(),
            from_agent: "planner".into(),
            to_agent: "reviewer".into(),
            r#type: HandoffType::FullHandoff.into(),
            instructions: "Confirm the cause and propose a fix.".into(),
            ..Default::default()
        })
        .await?;
    println!("handoff {} ({})", handoff.handoff_id, handoff.summary);

    // 5. The reviewer finds it in its inbox and accepts it.
    let mut inbox =
        reviewer.watch_handoffs(WatchHandoffsRequest { agent: "reviewer".into(), after_cursor: None }).await?;
    let event = loop {
        let event = inbox.next().await.expect("the inbox stream ended")?;
        if event.handoff.as_ref().is_some_and(|h| h.handoff_id == handoff.handoff_id) {
            break event;
        }
    };
    println!("inbox event {} at cursor {}", event.r#type().as_str_name(), event.cursor);
    reviewer
        .accept_handoff(AcceptHandoffRequest { handoff_id: handoff.handoff_id.clone(), agent: "reviewer".into() })
        .await?;

    // 6. The context package: the summary first, then the entries that fit its token budget.
    let package = StreamHandoffContextRequest { handoff_id: handoff.handoff_id.clone() };
    let context: Vec<v1::Entry> = reviewer.stream_handoff_context(package).await?.try_collect().await?;
    for e in &context {
        println!("  context {} {}", e.seq, e.kind().as_str_name());
    }

    // 7. The reviewer now owns the session: it adds its findings and completes the handoff.
    reviewer
        .append_entries(AppendEntriesRequest {
            session_key: key.clone(),
            entries: vec![entry(v1::EntryKind::Message, "assistant", "reviewer", "Confirmed; revert the TTL to 300s.")],
            ..Default::default()
        })
        .await?;
    let handoff = reviewer
        .complete_handoff(CompleteHandoffRequest { handoff_id: handoff.handoff_id, agent: "reviewer".into() })
        .await?;
    println!("handoff {}", handoff.status().as_str_name());
    Ok(Outcome { session_key: key, followed, context, handoff })
}
