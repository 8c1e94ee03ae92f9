//! The live follow behind resource subscriptions, against a real batond (PostgreSQL and Redis
//! from `scripts/test`): a follow that asks for entries compacted away goes on from the
//! session's `first_seq` (batond answers OUT_OF_RANGE, which no retry would fix), and a deleted
//! session tells the subscriber once and ends the follow.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_gateway::calls::Gateway;
use baton_gateway::catalog::Catalog;
use baton_gateway::follow::follow_session;
use baton_gateway::grpc::{Backend, CallContext};
use serde_json::{Value, json};
use support::{Batond, key};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CONTEXT: &str = "baton.v1.ContextService";

/// The gateway's calls to `batond`, as a writer of a new tenant.
async fn gateway(batond: &Batond) -> (Gateway, CallContext) {
    let tenant = key("tenant");
    let ctx = CallContext {
        authorization: Some(batond.bearer(&tenant).await),
        tenant: Some(tenant),
        ..CallContext::default()
    };
    let backend =
        Backend::connect_lazy(&batond.endpoint(), None, Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    (Gateway::new(Catalog::baton().unwrap(), backend), ctx)
}

async fn call(gateway: &Gateway, ctx: &CallContext, rpc: &str, args: Value) -> Value {
    let Value::Object(args) = args else { unreachable!() };
    gateway.call_method(&format!("{CONTEXT}.{rpc}"), args, ctx).await.unwrap_or_else(|e| panic!("{rpc}: {e:?}"))
}

async fn append(gateway: &Gateway, ctx: &CallContext, session: &str, texts: &[&str]) {
    let entries: Vec<Value> = texts.iter().map(|t| json!({"kind": "MESSAGE", "author": "a", "text": t})).collect();
    call(gateway, ctx, "AppendEntries", json!({"session_key": session, "entries": entries})).await;
}

async fn next(updates: &mut mpsc::UnboundedReceiver<u64>) -> u64 {
    tokio::time::timeout(Duration::from_secs(15), updates.recv())
        .await
        .expect("an update within 15 s")
        .expect("the follow is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_skips_compacted_entries_and_ends_when_the_session_is_deleted() {
    let batond = Batond::start().await;
    let (gateway, ctx) = gateway(&batond).await;
    let session = key("followed");
    call(&gateway, &ctx, "CreateSession", json!({"session_key": session, "agent": "a"})).await;
    append(&gateway, &ctx, &session, &["m1", "m2", "m3", "m4", "m5", "m6"]).await;
    let compacted = call(&gateway, &ctx, "CompactSession", json!({"session_key": session, "before_seq": 5})).await;
    assert_eq!(compacted["first_seq"], "5");

    // A follow from seq 0, as one reopened after a long outage would be: entries 1-4 are gone.
    let (tx, mut updates) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let follow = tokio::spawn(follow_session(gateway.clone(), ctx.clone(), session.clone(), 0, cancel.clone(), {
        let seen = seen.clone();
        move |seq| {
            seen.lock().unwrap().push(seq);
            let sent = tx.send(seq).is_ok();
            async move { sent }
        }
    }));
    // One update for the compaction (resuming after first_seq - 1), then entries 5 and 6 once.
    assert_eq!(next(&mut updates).await, 4);
    assert_eq!(next(&mut updates).await, 5);
    assert_eq!(next(&mut updates).await, 6);
    append(&gateway, &ctx, &session, &["m7"]).await;
    assert_eq!(next(&mut updates).await, 7);

    // Deleted: one last update, then the follow ends by itself.
    let deleted = call(&gateway, &ctx, "DeleteSession", json!({"session_key": session})).await;
    assert_eq!(deleted["deleted_entries"], "3");
    assert_eq!(next(&mut updates).await, 7);
    tokio::time::timeout(Duration::from_secs(15), follow).await.expect("the follow ended").unwrap();
    assert!(!cancel.is_cancelled());
    assert_eq!(*seen.lock().unwrap(), [4, 5, 6, 7, 7]);
    batond.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_of_a_missing_session_reports_it_gone_once() {
    let batond = Batond::start().await;
    let (gateway, ctx) = gateway(&batond).await;
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let follow = follow_session(gateway, ctx, key("never-made"), 0, CancellationToken::new(), move |_| {
        *counted.lock().unwrap() += 1;
        async { true }
    });
    tokio::time::timeout(Duration::from_secs(15), follow).await.expect("the follow ended");
    assert_eq!(*calls.lock().unwrap(), 1);
    batond.shutdown().await;
}
