//! The load clients against the real thing, run as `ghz/run` runs them (child processes, a
//! report file each): `baton-load` against batond (the test kit's, on PostgreSQL and Redis from
//! `scripts/test`, with API keys on), and `baton-mcp-load` against baton-mcp's Streamable HTTP
//! router in front of that batond. Each report is checked against what the server did: a call
//! counts as OK only when it really succeeded.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use baton_gateway::calls::Gateway;
use baton_gateway::catalog::Catalog;
use baton_gateway::grpc::{Backend as GatewayBackend, CallContext};
use baton_gateway::handler::BatonMcp;
use baton_gateway::serve::{HttpAccess, http_router};
use baton_proto::v1::context_service_client::ContextServiceClient;
use baton_proto::v1::new_entry::Content;
use baton_proto::v1::{AppendEntriesRequest, CreateSessionRequest, EntryKind, GetSessionRequest, NewEntry};
use baton_server::clock::SystemClock;
use baton_server::domain::principal::Role;
use baton_testkit::{Backend, Server};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

struct Live {
    server: Server,
    key: String,
    tenant: String,
    dir: tempfile::TempDir,
}

impl Live {
    async fn start() -> Option<Live> {
        let server = Server::start(Backend::PostgresRedis, Arc::new(SystemClock), |_| {}).await?;
        let tenant = baton_testkit::tenant();
        let key = server.key(&tenant, Role::Writer, None).await;
        Some(Live { server, key, tenant, dir: tempfile::tempdir().expect("tempdir") })
    }

    async fn client(&self) -> ContextServiceClient<Channel> {
        ContextServiceClient::connect(self.server.endpoint()).await.expect("connect to batond")
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", format!("Bearer {}", self.key).parse().unwrap());
        request
    }

    /// A session of the test's tenant with `entries` entries of about 300 bytes.
    async fn session(&self, name: &str, entries: usize) -> String {
        let key = format!("{}-{name}", self.tenant);
        let mut client = self.client().await;
        let create = CreateSessionRequest { session_key: key.clone(), agent: "agent-1".into(), ..Default::default() };
        client.create_session(self.request(create)).await.expect("create a session");
        if entries > 0 {
            let entries = (0..entries)
                .map(|i| NewEntry {
                    kind: EntryKind::Message as i32,
                    role: "user".into(),
                    author: "agent-1".into(),
                    content: Some(Content::Text(format!("entry {i}: {}", "x".repeat(300)))),
                    media_type: String::new(),
                    metadata: None,
                })
                .collect();
            let append = AppendEntriesRequest { session_key: key.clone(), entries, ..Default::default() };
            client.append_entries(self.request(append)).await.expect("append entries");
        }
        key
    }

    async fn last_seq(&self, key: &str) -> u64 {
        let request = self.request(GetSessionRequest { session_key: key.into() });
        self.client().await.get_session(request).await.expect("get a session").into_inner().last_seq
    }

    /// ghz's data file for these session keys.
    fn data_file(&self, name: &str, keys: &[&str]) -> String {
        let path = self.dir.path().join(format!("{name}.json"));
        let data: Vec<Value> = keys.iter().map(|k| serde_json::json!({ "session_key": k })).collect();
        std::fs::write(&path, serde_json::to_string(&data).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// Runs a client binary with `key` as BATON_API_KEY (off the runtime's threads, which serve
/// batond) and returns its exit and, when it wrote one, its report.
async fn run(binary: &str, key: &str, args: Vec<String>, out: &Path) -> (Output, Option<Value>) {
    let (binary, key, out) = (binary.to_owned(), key.to_owned(), out.to_owned());
    tokio::task::spawn_blocking(move || {
        let output = Command::new(&binary)
            .args(&args)
            .arg("--out")
            .arg(&out)
            .env("BATON_API_KEY", key)
            .output()
            .unwrap_or_else(|e| panic!("run {binary}: {e}"));
        let report = std::fs::read_to_string(&out).ok().map(|t| serde_json::from_str(&t).expect("a JSON report"));
        (output, report)
    })
    .await
    .expect("the client process")
}

fn args(s: String) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn count(report: &Value) -> u64 {
    report["count"].as_u64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_load_counts_only_real_windows_and_serving_health_answers() {
    let Some(live) = Live::start().await else { return };
    let (hot, empty) = (live.session("hot", 5).await, live.session("empty", 0).await);
    let addr = live.server.endpoint();
    let out = live.dir.path().join("report.json");
    let load = env!("CARGO_BIN_EXE_baton-load");

    let data = live.data_file("hot", &[&hot]);
    let cmd = format!("--addr {addr} --call window --data {data} -c 4 --connections 2 -z 1");
    let (exit, report) = run(load, &live.key, args(cmd), &out).await;
    assert!(exit.status.success(), "{exit:?}");
    let report = report.expect("a report");
    assert!(count(&report) > 4, "{report}");
    assert_eq!(report["statusCodeDistribution"], serde_json::json!({ "OK": count(&report) }), "{report}");
    assert_eq!(report["entriesPerCall"], 5.0, "every window held the session's 5 entries");
    assert!(report["bytesPerCall"].as_u64().unwrap() > 5 * 300, "{report}");
    assert_eq!(report["options"]["call"], "baton.v1.ContextService/GetContextWindow");

    // A window without entries, and one of a session that does not exist, are failed calls.
    let data = live.data_file("bad", &[&empty, "no-such-session"]);
    let cmd = format!("--addr {addr} --call window --data {data} -c 2 -z 1");
    let (_, report) = run(load, &live.key, args(cmd), &out).await;
    let report = report.expect("a report");
    let codes = report["statusCodeDistribution"].as_object().unwrap();
    assert_eq!(codes.keys().collect::<Vec<_>>(), ["Empty", "NotFound"], "{report}");
    assert!(report["latencyDistribution"].as_array().unwrap().is_empty());

    let cmd = format!("--addr {addr} --call health -c 8 -z 1");
    let (_, report) = run(load, &live.key, args(cmd), &out).await;
    let report = report.expect("a report");
    assert_eq!(report["statusCodeDistribution"], serde_json::json!({ "OK": count(&report) }), "{report}");
    assert_eq!(report["bytesPerCall"], 2);

    // Without a key, batond refuses every call: none of them counts as OK.
    let data = live.data_file("hot", &[&hot]);
    let cmd = format!("--addr {addr} --call window --data {data} -c 2 -z 1");
    let (_, report) = run(load, "", args(cmd), &out).await;
    let codes = report.expect("a report")["statusCodeDistribution"].clone();
    assert_eq!(codes.as_object().unwrap().keys().collect::<Vec<_>>(), ["Unauthenticated"], "{codes}");
    live.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_mcp_load_appends_one_entry_per_successful_call() {
    let Some(live) = Live::start().await else { return };
    let backend =
        GatewayBackend::connect_lazy(&live.server.endpoint(), None, Duration::from_secs(5), Duration::from_secs(10))
            .expect("the gateway's channel");
    let gateway = Gateway::with_owner_cache(Catalog::baton().unwrap(), backend, Duration::from_secs(1));
    let handler = BatonMcp::new(gateway, CallContext::default());
    let stop = CancellationToken::new();
    let router = http_router(handler, &["127.0.0.1".into()], HttpAccess::AsBatond, stop.child_token());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let serving = tokio::spawn(async move { axum::serve(listener, router).await });
    let out = live.dir.path().join("report.json");
    let mcp_load = env!("CARGO_BIN_EXE_baton-mcp-load");

    for shape in ["legacy", "native"] {
        let cmd = format!("--url {url} -c 3 -z 1 --shape {shape}");
        let (exit, report) = run(mcp_load, &live.key, args(cmd), &out).await;
        assert!(exit.status.success(), "{exit:?}");
        let report = report.expect("a report");
        let ok = count(&report);
        assert!(ok >= 3, "{report}");
        assert_eq!(report["statusCodeDistribution"], serde_json::json!({ "OK": ok }), "{report}");
        assert_eq!(report["shape"], shape);
        // One Baton session per MCP session, as the report lists them: their entries are the calls.
        let sessions = report["sessions"].as_array().expect("the report lists its sessions");
        assert_eq!(sessions.len(), 3, "{report}");
        let mut appended = 0;
        for key in sessions {
            appended += live.last_seq(key.as_str().unwrap()).await;
        }
        assert_eq!(appended, ok, "one entry per successful update_context");
    }

    // A reader key cannot register a session: the client stops before any load, and says why.
    let reader = live.server.key(&live.tenant, Role::Reader, None).await;
    let (exit, _) = run(mcp_load, &reader, args(format!("--url {url} -c 1 -z 1")), &out).await;
    assert!(!exit.status.success());
    assert!(String::from_utf8_lossy(&exit.stderr).contains("register_session"), "{exit:?}");

    stop.cancel();
    serving.abort();
    live.server.shutdown().await;
}
