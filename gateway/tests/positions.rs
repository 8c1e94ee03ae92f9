//! Read-your-writes through the gateway: batond with read replicas answers writes with their
//! log position (`baton-lsn`); the gateway keeps the highest and sends it with every call
//! (`baton-min-lsn`), which batond checks. The "replica" here is the test PostgreSQL itself:
//! batond never reads from a node that is not in recovery, but it reports positions as soon as
//! read replicas are configured. (Routing to real hot standbys is tested in
//! server/tests/replicas.rs.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use baton_gateway::calls::{Gateway, NoProgress};
use baton_gateway::catalog::Catalog;
use baton_gateway::grpc::{Backend, CallContext};
use baton_server::clock::SystemClock;
use baton_server::domain::principal::Role;
use baton_testkit::Server;
use serde_json::{Value, json};
use support::key;

async fn tool(gateway: &Gateway, ctx: &CallContext, name: &str, args: Value) -> Value {
    let spec = gateway.catalog().tool(name).unwrap_or_else(|| panic!("no tool {name}")).clone();
    let Value::Object(args) = args else { unreachable!() };
    gateway.call_tool(&spec, args, ctx, &NoProgress).await.unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sends_back_the_highest_position_batond_gave_it() {
    let Some(store) = baton_testkit::postgres_store(8).await else { return };
    let primary = baton_testkit::service(baton_testkit::APP_DATABASE_URL).expect("the serving role's URL");
    let store = store.with_replicas(&[primary], 2, Duration::from_secs(3600)).expect("replicas");
    let server = Server::start_on(Arc::new(store), Arc::new(SystemClock), |_| {}).await;
    let tenant = key("tenant");
    let ctx = CallContext {
        authorization: Some(format!("Bearer {}", server.key(&tenant, Role::Writer, None).await)),
        tenant: Some(tenant),
        ..CallContext::default()
    };
    let backend =
        Backend::connect_lazy(&server.endpoint(), None, Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    let gateway = Gateway::new(Catalog::baton().unwrap(), backend);
    assert_eq!(gateway.backend().log_position(), None);

    let session = key("positions");
    tool(&gateway, &ctx, "register_session", json!({"session_key": session, "agent": "alice"})).await;
    let first = gateway.backend().log_position().expect("a write's position");
    assert_eq!(first.len(), 16, "{first}");
    tool(&gateway, &ctx, "update_context", json!({"session_key": session, "author": "alice", "content": "a note"}))
        .await;
    let second = gateway.backend().log_position().expect("position");
    assert!(second >= first, "{first} then {second}");
    // batond accepts the position the gateway sends back (a malformed one is INVALID_ARGUMENT).
    let context = tool(&gateway, &ctx, "get_context", json!({"session_key": session})).await;
    assert!(context.to_string().contains("a note"), "{context}");
    server.shutdown().await;
}
