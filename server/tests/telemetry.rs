//! batond's traces as a Rust client sees them: the client's span context goes out in gRPC
//! metadata (`baton_proto::trace::Propagate`), batond's server span continues it, the entry
//! stores its trace id, statements run in streams are children of the stream's call, statuses
//! are recorded for trailers-only errors, and JSON log lines carry the trace and span ids.
//! A real OTLP collector (tonic, port 0) receives the spans.

mod common;

use std::io;
use std::sync::{Arc, Mutex};

use baton_proto::trace::Propagate;
use baton_proto::v1 as pb;
use baton_telemetry::testing::{Collector, Received, SpanKind, attr, descends_from, hex, int, one, text};
use baton_telemetry::{LogFormat, Otlp, Protocol, Settings};
use common::Backend;
use opentelemetry::trace::TraceContextExt as _;
use pb::context_service_client::ContextServiceClient;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

/// `message` with the test caller's tenant and key.
fn request<T>(message: T, caller: &common::Caller) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(t) = &caller.tenant {
        request.metadata_mut().insert("x-baton-tenant", t.clone());
    }
    if let Some(k) = &caller.key {
        request.metadata_mut().insert("authorization", k.clone());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rust_clients_trace_continues_in_batond() {
    let (endpoint, collector) = Collector::start().await;
    let lines = Lines::default();
    let telemetry = baton_telemetry::init(Settings {
        service_name: "batond",
        service_version: "test",
        log_format: LogFormat::Json,
        log_filter: Some("info".into()),
        log_writer: BoxMakeWriter::new(lines.clone()),
        otlp: Some(Otlp { endpoint: Some(endpoint), protocol: Protocol::Grpc }),
    })
    .expect("telemetry");
    let backend = if common::postgres_url().is_some() { Backend::Postgres } else { Backend::Sqlite };
    let srv = common::start_server(backend).await;
    let channel = srv.channel().await;
    let mut client = ContextServiceClient::with_interceptor(channel, Propagate);
    let tenant = srv.caller();

    // The client's own span; the interceptor sends its context.
    let operation = tracing::info_span!(target: "baton::client", "client operation");
    let (trace_id, client_span_id) = {
        let cx = operation.context();
        let span = cx.span();
        (span.span_context().trace_id().to_string(), span.span_context().span_id().to_string())
    };
    let appended = async {
        tracing::info!(target: "baton::client", "appending");
        client
            .create_session(request(
                pb::CreateSessionRequest { session_key: "s".into(), agent: "a".into(), ..Default::default() },
                &tenant,
            ))
            .await
            .unwrap();
        client
            .append_entries(request(
                pb::AppendEntriesRequest {
                    session_key: "s".into(),
                    entries: vec![common::message("a", "hello")],
                    ..Default::default()
                },
                &tenant,
            ))
            .await
            .unwrap()
            .into_inner()
    }
    .instrument(operation.clone())
    .await;
    assert_eq!(appended.entries[0].trace_id, trace_id, "the entry names the client's trace");

    // A stream and a trailers-only error, in the same trace.
    async {
        let mut stream = client
            .stream_entries(request(
                pb::StreamEntriesRequest { session_key: "s".into(), ..Default::default() },
                &tenant,
            ))
            .await
            .unwrap()
            .into_inner();
        while stream.message().await.unwrap().is_some() {}
        let missing = client.get_session(request(pb::GetSessionRequest { session_key: "nope".into() }, &tenant)).await;
        assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
        let taken = pb::CreateSessionRequest { session_key: "s".into(), agent: "b".into(), ..Default::default() };
        let taken = client.create_session(request(taken, &tenant)).await;
        assert_eq!(taken.unwrap_err().code(), tonic::Code::AlreadyExists);
    }
    .instrument(operation.clone())
    .await;
    drop(operation);

    tokio::task::block_in_place(|| telemetry.force_flush());
    let complete = |trace: &[Received]| {
        ["AppendEntries", "StreamEntries", "GetSession", "CreateSession"]
            .iter()
            .all(|m| trace.iter().any(|r| r.span.name == format!("baton.v1.ContextService/{m}")))
            && trace.iter().any(|r| r.span.name == "client operation")
    };
    let trace = collector.wait_for(&trace_id, complete).await;

    let root = one(&trace, "batond", "client operation");
    assert_eq!(hex(&root.span_id), client_span_id);
    let append = one(&trace, "batond", "baton.v1.ContextService/AppendEntries");
    assert_eq!(append.parent_span_id, root.span_id, "the server span's parent is the client's span");
    assert_eq!(append.kind, SpanKind::Server as i32);
    assert_eq!(int(append, "rpc.grpc.status_code"), 0);

    // The stream's statements run in a task of their own, still under the stream's call.
    let stream = one(&trace, "batond", "baton.v1.ContextService/StreamEntries");
    assert_eq!(int(stream, "rpc.grpc.status_code"), 0);
    let reads: Vec<_> =
        trace.iter().filter(|r| r.span.name == "SELECT entries" && descends_from(&trace, &r.span, stream)).collect();
    assert!(!reads.is_empty(), "the replay's SELECT is a child of StreamEntries");

    // NOT_FOUND came back trailers-only; it is recorded, and is not a server error.
    let missing = one(&trace, "batond", "baton.v1.ContextService/GetSession");
    assert_eq!(int(missing, "rpc.grpc.status_code"), 5);
    assert!(attr(missing, "error.type").is_none());
    assert_ne!(missing.status.as_ref().map_or(0, |s| s.code), 2, "not an error status");
    let system = if backend == Backend::Postgres { "postgresql" } else { "sqlite" };
    let select = trace
        .iter()
        .find(|r| r.span.name == "SELECT sessions" && r.span.parent_span_id == missing.span_id)
        .expect("the lookup's SELECT");
    assert_eq!(text(&select.span, "db.system"), system);

    // A failed statement is an error on its span, with the database's own code.
    let failed = trace
        .iter()
        .filter(|r| r.span.name == "INSERT sessions")
        .find(|r| r.span.status.as_ref().is_some_and(|s| s.code == 2))
        .expect("the duplicate INSERT is an error span");
    let sqlstate = if backend == Backend::Postgres { "23505" } else { "2067" };
    assert_eq!(text(&failed.span, "db.response.status_code"), sqlstate);
    assert_eq!(text(&failed.span, "error.type"), sqlstate);
    let create =
        trace.iter().find(|r| r.span.span_id == failed.span.parent_span_id).expect("the INSERT's parent").span.clone();
    assert_eq!(create.name, "baton.v1.ContextService/CreateSession");
    assert_eq!(int(&create, "rpc.grpc.status_code"), 6);

    // JSON log lines inside a traced span name it.
    let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = logged
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .find(|l| l["fields"]["message"] == "appending")
        .expect("the client's log line");
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["span_id"], client_span_id.as_str());
    assert_eq!(line["span"]["name"], "client operation");

    srv.shutdown().await;
    tokio::task::block_in_place(|| telemetry.shutdown());
}
