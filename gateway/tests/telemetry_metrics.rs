//! `/metrics` on batond's admin port and on baton-mcp's HTTP port, scraped and parsed as
//! Prometheus text before and after known MCP calls: the counters move by exactly what the
//! calls did.

mod support;

use prometheus_parse::Scrape;
use serde_json::json;
use support::{Batond, Gateway, key, scrape, value};

/// After minus before, for one metric and label set.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

const CONTEXT: (&str, &str) = ("service", "baton.v1.ContextService");
const HANDOFF: (&str, &str) = ("service", "baton.v1.HandoffService");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_move_by_what_known_calls_did() {
    let batond = Batond::start().await;
    let mut gateway = Gateway::start(&batond.endpoint(), &[]).await;
    let http = reqwest::Client::new();
    let admin = format!("http://{}/metrics", batond.admin);
    let tenant = key("tenant");
    let bearer = batond.bearer(&tenant).await;
    let t = [("x-baton-tenant", tenant.as_str()), ("authorization", bearer.as_str())];
    let session = key("metrics");

    let server0 = scrape(&http, &admin).await;
    let gateway0 = gateway.metrics().await;
    for name in ["sessions_created_total", "db_pool_connections", "db_pool_max_connections"] {
        assert!(server0.samples.iter().any(|s| s.metric == name), "{name} is exported from the start");
    }

    gateway.ok("register_session", json!({"session_key": session, "agent": "planner"}), &t).await;
    let entries = json!([
        {"kind": "MESSAGE", "author": "planner", "text": "one"},
        {"kind": "MESSAGE", "author": "planner", "text": "two"},
        {"kind": "TOOL_CALL", "author": "planner", "text": "three"}
    ]);
    gateway.ok("update_context", json!({"session_key": session, "entries": entries}), &t).await;
    let handoff = gateway
        .ok(
            "request_handoff",
            json!({"session_key": session, "from_agent": "planner", "to_agent": "coder", "type": "HANDOFF_TYPE_CONTEXT_TRANSFER"}),
            &t,
        )
        .await;
    let handoff_id = handoff["handoff_id"].as_str().unwrap().to_owned();
    gateway.ok("accept_handoff", json!({"handoff_id": handoff_id, "agent": "coder"}), &t).await;
    let missing = gateway.call("get_session", json!({"session_key": key("missing")}), &t).await;
    assert_eq!(missing["isError"], true);
    let streamed = gateway.ok("stream_entries", json!({"session_key": session}), &t).await;
    assert_eq!(streamed["stopped"], "end");
    let window = gateway.ok("get_context", json!({"session_key": session}), &t).await;
    gateway.ok("get_context", json!({"session_key": session}), &t).await;

    let server1 = scrape(&http, &admin).await;
    let gateway1 = gateway.metrics().await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&server0, &server1, name, labels);

    // Business counters.
    assert_eq!(d("sessions_created_total", &[]), 1.0);
    assert_eq!(d("context_entries_total", &[("kind", "message")]), 2.0);
    assert_eq!(d("context_entries_total", &[("kind", "tool_call")]), 1.0);
    assert_eq!(d("context_entries_total", &[]), 3.0);
    assert_eq!(d("handoffs_processed_total", &[("status", "pending")]), 1.0);
    assert_eq!(d("handoffs_processed_total", &[("status", "accepted")]), 1.0);

    // One sample per RPC, by status code (a trailers-only NOT_FOUND included).
    let rpc = "grpc_server_request_duration_seconds_count";
    assert_eq!(d(rpc, &[CONTEXT, ("method", "CreateSession"), ("code", "OK")]), 1.0);
    assert_eq!(d(rpc, &[CONTEXT, ("method", "AppendEntries"), ("code", "OK")]), 1.0);
    assert_eq!(d(rpc, &[HANDOFF, ("method", "RequestHandoff"), ("code", "OK")]), 1.0);
    assert_eq!(d(rpc, &[HANDOFF, ("method", "AcceptHandoff"), ("code", "OK")]), 1.0);
    assert_eq!(d(rpc, &[CONTEXT, ("method", "GetSession"), ("code", "NOT_FOUND")]), 1.0);
    assert_eq!(d(rpc, &[CONTEXT, ("method", "GetContextWindow"), ("code", "OK")]), 2.0);
    // A stream read to its end finishes at its trailers, and is no longer open.
    assert_eq!(d(rpc, &[CONTEXT, ("method", "StreamEntries"), ("code", "OK")]), 1.0);
    assert_eq!(value(&server1, "grpc_server_active_streams", &[CONTEXT, ("method", "StreamEntries")]), 0.0);

    // Statements.
    let sql = "db_query_duration_seconds_count";
    let system = if batond.postgres { "postgresql" } else { "sqlite" };
    assert_eq!(d(sql, &[("system", system), ("operation", "INSERT"), ("table", "sessions")]), 1.0);
    assert_eq!(d(sql, &[("system", system), ("operation", "INSERT"), ("table", "handoffs")]), 1.0);
    let entry_inserts = d(sql, &[("system", system), ("operation", "INSERT"), ("table", "entries")]);
    // PostgreSQL writes a batch in one statement; SQLite one row per statement.
    assert_eq!(entry_inserts, if batond.postgres { 1.0 } else { 3.0 });
    assert!(d(sql, &[("system", system), ("operation", "COMMIT")]) >= 3.0);
    assert!(value(&server1, "db_pool_max_connections", &[]) >= 1.0);

    if batond.redis {
        // Two identical context reads: the first fills L1 if it was empty, the second is
        // answered by L1 after Redis confirmed it is current.
        let lookups = |s: &Scrape, level: &str| {
            value(s, "cache_hits_total", &[("level", level)]) + value(s, "cache_misses_total", &[("level", level)])
        };
        assert!(lookups(&server1, "l1") - lookups(&server0, "l1") >= 2.0);
        assert!(d("cache_hits_total", &[("level", "l1")]) >= 1.0);
        assert_eq!(d("redis_errors_total", &[]), 0.0);
        assert!(d("redis_commands_total", &[]) >= 6.0);
        assert!(d("redis_command_duration_seconds_count", &[("command", "EVALSHA")]) >= 6.0);
        let ratio = value(&server1, "cache_hit_ratio", &[]);
        assert!((0.0..=1.0).contains(&ratio) && ratio > 0.0, "{ratio}");
    } else {
        assert!(server1.samples.iter().all(|s| !s.metric.starts_with("cache_")), "no cache, no cache metrics");
        eprintln!("BATON_TEST_REDIS_URL is unset: cache metrics not checked (scripts/test sets it)");
    }
    assert_eq!(window["entries"].as_array().unwrap().len(), 3);

    // The gateway: one sample per tool call, by outcome, and per gRPC call it made.
    let g = |name: &str, labels: &[(&str, &str)]| delta(&gateway0, &gateway1, name, labels);
    let tool = "mcp_tool_duration_seconds_count";
    assert_eq!(g(tool, &[("tool", "register_session"), ("outcome", "ok")]), 1.0);
    assert_eq!(g(tool, &[("tool", "update_context"), ("outcome", "ok")]), 1.0);
    assert_eq!(g(tool, &[("tool", "get_context"), ("outcome", "ok")]), 2.0);
    assert_eq!(g(tool, &[("tool", "get_session"), ("outcome", "NOT_FOUND")]), 1.0);
    assert_eq!(g(tool, &[]), 8.0);
    let client = "grpc_client_request_duration_seconds_count";
    assert_eq!(g(client, &[CONTEXT, ("method", "CreateSession"), ("code", "OK")]), 1.0);
    assert_eq!(g(client, &[CONTEXT, ("method", "GetSession"), ("code", "NOT_FOUND")]), 1.0);
    assert_eq!(g(client, &[CONTEXT, ("method", "StreamEntries"), ("code", "OK")]), 1.0);
    assert_eq!(g(client, &[]), 8.0);

    // Arguments the gateway rejects never reach batond, and are counted as such.
    let bad = gateway.call("register_session", json!({"agent": ["not", "a", "string"]}), &t).await;
    assert_eq!(bad["isError"], true);
    let gateway2 = gateway.metrics().await;
    assert_eq!(delta(&gateway1, &gateway2, tool, &[("tool", "register_session"), ("outcome", "arguments")]), 1.0);
    assert_eq!(delta(&gateway1, &gateway2, client, &[]), 0.0);

    drop(gateway);
    batond.shutdown().await;
}
