//! `update_context` in the old argument shape (no author) against a real batond: the session's
//! owner is looked up once and reused, so the call after the first is a single AppendEntries;
//! an ownership move made through the gateway (accepting a FULL_HANDOFF) is seen at once, and
//! with the cache off every call asks again.

mod support;

use std::time::Duration;

use baton_gateway::calls::{Gateway, NoProgress};
use baton_gateway::catalog::Catalog;
use baton_gateway::grpc::{Backend, CallContext};
use serde_json::{Value, json};
use support::{Batond, key};

/// The gateway's gRPC calls of one method so far, from its own metrics.
fn calls(gateway: &Gateway, method: &str) -> u64 {
    let text = gateway.backend().metrics().render();
    text.lines()
        .filter(|l| {
            l.starts_with("grpc_client_request_duration_seconds_count") && l.contains(&format!("method=\"{method}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn gateway(batond: &Batond, ttl: Duration) -> (Gateway, CallContext) {
    let tenant = key("tenant");
    let ctx = CallContext {
        authorization: Some(batond.bearer(&tenant).await),
        tenant: Some(tenant),
        ..CallContext::default()
    };
    let backend =
        Backend::connect_lazy(&batond.endpoint(), None, Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    (Gateway::with_owner_cache(Catalog::baton().unwrap(), backend, ttl), ctx)
}

async fn tool(gateway: &Gateway, ctx: &CallContext, name: &str, args: Value) -> Value {
    let spec = gateway.catalog().tool(name).unwrap_or_else(|| panic!("no tool {name}")).clone();
    let Value::Object(args) = args else { unreachable!() };
    gateway.call_tool(&spec, args, ctx, &NoProgress).await.unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_context_reuses_the_owner_and_sees_moves_made_through_the_gateway() {
    let batond = Batond::start().await;
    let (gateway, ctx) = gateway(&batond, Duration::from_secs(60)).await;
    let session = key("owner");
    tool(&gateway, &ctx, "register_session", json!({"session_key": session, "agent": "alice"})).await;

    for n in 0..5 {
        let r = tool(&gateway, &ctx, "update_context", json!({"sessionKey": session, "content": format!("note {n}")}))
            .await;
        assert_eq!(r["entries"][0]["author"], "alice", "{r}");
    }
    assert_eq!(calls(&gateway, "GetSession"), 1, "the owner is looked up once");
    assert_eq!(calls(&gateway, "AppendEntries"), 5);

    // A FULL_HANDOFF accepted through the gateway makes bob the owner: seen at once.
    let h = tool(
        &gateway,
        &ctx,
        "request_handoff",
        json!({"session_key": session, "from_agent": "alice", "to_agent": "bob", "type": "FULL_HANDOFF"}),
    )
    .await;
    let id = h["handoff_id"].as_str().unwrap_or_else(|| panic!("{h}")).to_owned();
    tool(&gateway, &ctx, "accept_handoff", json!({"handoff_id": id, "agent": "bob"})).await;
    let r = tool(&gateway, &ctx, "update_context", json!({"sessionKey": session, "content": "after"})).await;
    assert_eq!(r["entries"][0]["author"], "bob", "{r}");
    assert_eq!(calls(&gateway, "GetSession"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_every_call_asks_for_the_owner() {
    let batond = Batond::start().await;
    let (gateway, ctx) = gateway(&batond, Duration::ZERO).await;
    let session = key("nocache");
    tool(&gateway, &ctx, "register_session", json!({"session_key": session, "agent": "alice"})).await;
    for n in 0..3 {
        tool(&gateway, &ctx, "update_context", json!({"sessionKey": session, "content": format!("note {n}")})).await;
    }
    assert_eq!(calls(&gateway, "GetSession"), 3);
}
