//! One MCP tool call is one trace: a real OTLP collector (the OTLP TraceService over tonic, on
//! port 0) receives the spans of `baton-mcp` (a child process, exporting over OTLP/gRPC and
//! flushing when it is stopped) and of `batond` (in this process, on PostgreSQL and Redis when
//! `scripts/test` provides them), and the spans must form the chain
//! tool span → gRPC client span → gRPC server span → SQL (and Redis) spans.

mod support;

use baton_proto::v1 as pb;
use baton_telemetry::testing::{
    Collector, Received, Span, SpanKind, Value as AnyValue, attr, descends_from, hex, int, names, one, text,
};
use baton_telemetry::{LogFormat, Otlp, Protocol, Settings};
use serde_json::json;
use support::{Batond, Gateway, key};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Spans from both processes, including a SQL statement.
fn complete(trace: &[Received]) -> bool {
    let from = |service: &str| trace.iter().any(|r| r.service == service);
    from("baton-mcp") && from("batond") && trace.iter().any(|r| attr(&r.span, "db.sql.table").is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mcp_tool_call_is_one_trace_from_the_tool_to_sql_and_redis() {
    let (endpoint, collector) = Collector::start().await;
    let telemetry = baton_telemetry::init(Settings {
        service_name: "batond",
        service_version: "test",
        log_format: LogFormat::Text,
        log_filter: Some("warn".into()),
        log_writer: BoxMakeWriter::new(std::io::stderr),
        otlp: Some(Otlp { endpoint: Some(endpoint.clone()), protocol: Protocol::Grpc }),
    })
    .expect("telemetry");
    assert!(telemetry.is_tracing());
    let batond = Batond::start().await;
    // A long export delay: the gateway's spans arrive only because it flushes when stopped.
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()), ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned())];
    let mut gateway = Gateway::start(&batond.endpoint(), &otel).await;

    let tenant = key("tenant");
    let session = key("traced");
    let bearer = batond.bearer(&tenant).await;
    let tenant_header = ("x-baton-tenant", tenant.as_str());
    let auth_header = ("authorization", bearer.as_str());
    gateway
        .ok("register_session", json!({"session_key": session, "agent": "planner"}), &[tenant_header, auth_header])
        .await;

    // The caller's trace: the MCP HTTP request carries its traceparent.
    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    // The random end of another UUID v7.
    let caller_span = uuid::Uuid::now_v7().simple().to_string()[16..].to_owned();
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let secret = format!("do not trace {}", key("content"));
    let appended = gateway
        .ok(
            "update_context",
            json!({"session_key": session, "content": secret}),
            &[("traceparent", traceparent.as_str()), tenant_header, auth_header],
        )
        .await;
    assert_eq!(appended["entries"][0]["trace_id"], trace_id.as_str(), "{appended}");

    // Without one, the gateway starts the trace, and the entry still names it.
    let untraced = gateway
        .ok("update_context", json!({"session_key": session, "content": "second"}), &[tenant_header, auth_header])
        .await;
    let own_trace = untraced["entries"][0]["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(own_trace.len(), 32);
    assert_ne!(own_trace, trace_id);

    // The stored entries carry the ids, as read back by a plain client.
    let channel = tonic::transport::Channel::from_shared(batond.endpoint()).unwrap().connect().await.unwrap();
    let tenant_value: tonic::metadata::AsciiMetadataValue = tenant.parse().unwrap();
    let bearer_value: tonic::metadata::AsciiMetadataValue = bearer.parse().unwrap();
    let mut client = pb::context_service_client::ContextServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("x-baton-tenant", tenant_value.clone());
            request.metadata_mut().insert("authorization", bearer_value.clone());
            Ok(request)
        },
    );
    let stored = client
        .list_entries(pb::ListEntriesRequest { session_key: session.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(stored.iter().map(|e| e.trace_id.as_str()).collect::<Vec<_>>(), [trace_id.as_str(), own_trace.as_str()]);

    gateway.terminate();
    tokio::task::block_in_place(|| telemetry.force_flush());

    let trace = collector.wait_for(&trace_id, complete).await;
    // Every span of the trace hangs off the caller's span.
    for r in &trace {
        let parent = &r.span.parent_span_id;
        assert!(
            hex(parent) == caller_span || trace.iter().any(|o| &o.span.span_id == parent),
            "{} has a parent outside the trace: {:#?}",
            r.span.name,
            names(&trace)
        );
    }

    let tool = one(&trace, "baton-mcp", "tools/call update_context");
    assert_eq!(hex(&tool.parent_span_id), caller_span, "the tool span continues the HTTP request's traceparent");
    assert_eq!(tool.kind, SpanKind::Server as i32);
    assert_eq!(text(tool, "mcp.method.name"), "tools/call");
    assert_eq!(text(tool, "gen_ai.tool.name"), "update_context");
    assert_eq!(text(tool, "network.transport"), "tcp");

    let client_span = one(&trace, "baton-mcp", "baton.v1.ContextService/AppendEntries");
    assert_eq!(client_span.parent_span_id, tool.span_id);
    assert_eq!(client_span.kind, SpanKind::Client as i32);
    assert_eq!(text(client_span, "rpc.system"), "grpc");
    assert_eq!(text(client_span, "rpc.service"), "baton.v1.ContextService");
    assert_eq!(text(client_span, "rpc.method"), "AppendEntries");
    assert_eq!(int(client_span, "rpc.grpc.status_code"), 0);
    assert_eq!(text(client_span, "server.address"), "127.0.0.1");
    assert_eq!(int(client_span, "server.port"), i64::from(batond.grpc.port()));

    let server = one(&trace, "batond", "baton.v1.ContextService/AppendEntries");
    assert_eq!(server.parent_span_id, client_span.span_id, "batond continues the gateway's client span");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(text(server, "rpc.system"), "grpc");
    assert_eq!(text(server, "rpc.service"), "baton.v1.ContextService");
    assert_eq!(text(server, "rpc.method"), "AppendEntries");
    assert_eq!(int(server, "rpc.grpc.status_code"), 0);

    // The author defaulted to the session's owner: a GetSession call, in the same trace.
    let lookup = one(&trace, "baton-mcp", "baton.v1.ContextService/GetSession");
    assert_eq!(lookup.parent_span_id, tool.span_id);
    let lookup_server = one(&trace, "batond", "baton.v1.ContextService/GetSession");
    assert_eq!(lookup_server.parent_span_id, lookup.span_id);

    let system = if batond.postgres { "postgresql" } else { "sqlite" };
    let sql: Vec<&Span> = trace
        .iter()
        .filter(|r| attr(&r.span, "db.system").is_some_and(|v| *v == AnyValue::StringValue(system.into())))
        .map(|r| &r.span)
        .collect();
    let insert = sql
        .iter()
        .find(|s| s.name == "INSERT entries")
        .unwrap_or_else(|| panic!("no INSERT entries span in {:#?}", names(&trace)));
    assert!(descends_from(&trace, insert, server), "the INSERT runs under AppendEntries: {:#?}", names(&trace));
    assert_eq!(insert.kind, SpanKind::Client as i32);
    assert_eq!(text(insert, "db.operation"), "INSERT");
    assert_eq!(text(insert, "db.sql.table"), "entries");
    let commit = sql.iter().find(|s| s.name == "COMMIT" && descends_from(&trace, s, server)).expect("a COMMIT span");
    assert!(attr(commit, "db.sql.table").is_none());
    if batond.postgres {
        // Appends are coalesced: the statements run in the batch span of the first caller.
        let batch = one(&trace, "batond", "append batch");
        assert_eq!(batch.parent_span_id, server.span_id);
        assert_eq!(insert.parent_span_id, batch.span_id);
        assert_eq!(int(batch, "baton.append.batch_size"), 1);
    }
    // Statements, never their bound values.
    for span in &trace {
        for a in &span.span.attributes {
            assert!(!format!("{:?}", a.value).contains(&secret), "{} leaks the content", span.span.name);
        }
    }

    if batond.redis {
        let redis: Vec<&Span> = trace
            .iter()
            .filter(|r| attr(&r.span, "db.system").is_some_and(|v| *v == AnyValue::StringValue("redis".into())))
            .map(|r| &r.span)
            .collect();
        let append = redis
            .iter()
            .find(|s| text(s, "baton.redis.script") == "append")
            .unwrap_or_else(|| panic!("no Redis span for the append in {:#?}", names(&trace)));
        assert_eq!(append.parent_span_id, server.span_id, "the cache update runs in AppendEntries");
        assert_eq!(append.name, "EVALSHA");
        assert_eq!(text(append, "db.operation"), "EVALSHA");
        assert_eq!(int(append, "db.redis.commands"), 1);
        assert!(redis.iter().any(|s| s.parent_span_id == lookup_server.span_id), "GetSession asks the cache first");
    } else {
        eprintln!("BATON_TEST_REDIS_URL is unset: no Redis spans to check (scripts/test sets it)");
    }

    // The call without a traceparent: the same shape, rooted at the gateway's tool span.
    let own = collector.wait_for(&own_trace, complete).await;
    let own_tool = one(&own, "baton-mcp", "tools/call update_context");
    assert!(own_tool.parent_span_id.is_empty(), "the tool span starts the trace");
    let own_client = one(&own, "baton-mcp", "baton.v1.ContextService/AppendEntries");
    let own_server = one(&own, "batond", "baton.v1.ContextService/AppendEntries");
    assert_eq!(own_client.parent_span_id, own_tool.span_id);
    assert_eq!(own_server.parent_span_id, own_client.span_id);

    batond.shutdown().await;
    tokio::task::block_in_place(|| telemetry.shutdown());
}
