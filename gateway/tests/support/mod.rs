//! The real thing for the telemetry tests: `batond` (the test kit's server, on port 0) on
//! PostgreSQL and Redis from `scripts/test`, and the
//! `baton-mcp` binary as a child process on Streamable HTTP, called like an MCP client would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use baton_server::clock::SystemClock;
use baton_server::domain::principal::Role;
use baton_testkit::{Backend, Server};
use serde_json::{Value, json};

/// A running batond.
pub struct Batond {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub postgres: bool,
    pub redis: bool,
    server: Server,
}

impl Batond {
    /// On PostgreSQL and Redis from `scripts/test`'s variables (missing ones fail the test;
    /// with `BATON_REQUIRE_SERVICES=0` it runs on the embedded store instead).
    pub async fn start() -> Batond {
        let backend = if Backend::PostgresRedis.available() { Backend::PostgresRedis } else { Backend::Sqlite };
        let server = Server::start(backend, Arc::new(SystemClock), |_| {}).await.expect("start batond");
        let redis = backend == Backend::PostgresRedis;
        if redis {
            // The cache connects in the background; wait until reads go through Redis.
            wait_until_ready(server.admin_addr).await;
        }
        Batond { grpc: server.addr, admin: server.admin_addr, postgres: backend != Backend::Sqlite, redis, server }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// The `authorization` value of a new writer key of `tenant` (the test kit serves with API
    /// keys on).
    pub async fn bearer(&self, tenant: &str) -> String {
        format!("Bearer {}", self.server.key(tenant, Role::Writer, None).await)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn wait_until_ready(admin: SocketAddr) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("http://{admin}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("batond was not ready");
}

/// `baton-mcp` on Streamable HTTP, as a child process.
pub struct Gateway {
    pub base: String,
    child: Child,
    http: reqwest::Client,
    next_id: u64,
}

impl Gateway {
    /// Starts the binary against `endpoint` with the given extra environment (OTEL_*).
    pub async fn start(endpoint: &str, env: &[(&str, String)]) -> Gateway {
        Self::start_with(endpoint, &[], env).await
    }

    /// Starts the binary against `endpoint` with extra flags and environment.
    pub async fn start_with(endpoint: &str, args: &[&str], env: &[(&str, String)]) -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton-mcp"));
        for (key, _) in std::env::vars() {
            if key.starts_with("BATON_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .args(["--transport", "http", "--http-addr", &format!("127.0.0.1:{port}"), "--endpoint", endpoint])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start baton-mcp");
        let gateway =
            Gateway { base: format!("http://127.0.0.1:{port}"), child, http: reqwest::Client::new(), next_id: 1 };
        for _ in 0..200 {
            if gateway.http.get(format!("{}/health", gateway.base)).send().await.is_ok_and(|r| r.status().is_success())
            {
                return gateway;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("baton-mcp did not come up on {}", gateway.base);
    }

    /// One `tools/call` (2026-07-28 per-request style) with extra HTTP headers; the JSON-RPC
    /// result.
    pub async fn call(&mut self, tool: &str, arguments: Value, headers: &[(&str, &str)]) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "telemetry-test", "version": "1.0"},
                    "io.modelcontextprotocol/clientCapabilities": {}
                }
            }
        });
        let mut request = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.body(body.to_string()).send().await.expect("POST /mcp");
        assert!(response.status().is_success(), "HTTP {}", response.status());
        let text = response.text().await.unwrap();
        let message = std::iter::once(text.as_str())
            .chain(text.lines().filter_map(|l| l.strip_prefix("data:")))
            .filter_map(|chunk| serde_json::from_str::<Value>(chunk.trim()).ok())
            .find(|m| m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no response to request {id} in {text}"));
        message["result"].clone()
    }

    /// A successful call's structured result.
    pub async fn ok(&mut self, tool: &str, arguments: Value, headers: &[(&str, &str)]) -> Value {
        let result = self.call(tool, arguments, headers).await;
        assert_eq!(result["isError"], false, "{tool} failed: {result}");
        result["structuredContent"].clone()
    }

    pub async fn metrics(&self) -> prometheus_parse::Scrape {
        scrape(&self.http, &format!("{}/metrics", self.base)).await
    }

    /// SIGTERM, as an orchestrator stops it, and waits for the exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "baton-mcp exited with {exit}");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs a Prometheus text endpoint and parses it.
pub async fn scrape(http: &reqwest::Client, url: &str) -> prometheus_parse::Scrape {
    let response = http.get(url).send().await.expect("GET /metrics");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// A metric's value: a counter or gauge, or a histogram's `_count`, matching every label given.
pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => *v,
            prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// A fresh session key.
pub fn key(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}
