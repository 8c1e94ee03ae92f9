//! What the gateway sends to batond: a fake gRPC server records the metadata of each call,
//! and MCP requests go through the real Streamable HTTP routes and the stdio defaults.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use baton_gateway::calls::{Gateway, NoProgress};
use baton_gateway::catalog::Catalog;
use baton_gateway::config::Config;
use baton_gateway::grpc::Backend;
use baton_gateway::handler::BatonMcp;
use baton_gateway::serve::{HttpAccess, http_router};
use clap::Parser;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A gRPC "ContextService" that records request headers and answers every call with
/// UNAUTHENTICATED.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl tonic::server::NamedService for Recorder {
    const NAME: &'static str = "baton.v1.ContextService";
}

impl tower::Service<http::Request<tonic::body::Body>> for Recorder {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.seen.lock().unwrap().push(request.headers().clone());
        ready(Ok(tonic::Status::unauthenticated("recorded").into_http()))
    }
}

/// The fake answers every call UNAUTHENTICATED, the bearer check too: these routes let every
/// request in, and what the gateway forwards is what is checked. The check itself is tested
/// against a real batond with API keys (gateway/tests/test_mcp.py).
const OPEN: HttpAccess = HttpAccess::Open;

async fn fake_batond() -> (String, Recorder) {
    let recorder = Recorder::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = recorder.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (endpoint, recorder)
}

fn gateway(endpoint: &str) -> Gateway {
    let backend = Backend::connect_lazy(endpoint, None, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    Gateway::new(Catalog::baton().unwrap(), backend)
}

/// Posts one JSON-RPC request in the 2026-07-28 (per-request) style and returns its response.
async fn mcp_post(router: axum::Router, headers: &[(&str, &str)], body: Value) -> Value {
    let method = body["method"].as_str().unwrap().to_owned();
    let mut request = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", &method);
    if let Some(name) = body["params"]["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    assert!(response.status().is_success(), "HTTP {}", response.status());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let id = body["id"].clone();
    std::iter::once(text.as_str())
        .chain(text.lines().filter_map(|l| l.strip_prefix("data:")))
        .filter_map(|chunk| serde_json::from_str::<Value>(chunk.trim()).ok())
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no response to request {id} in {text}"))
}

fn modern_call(name: &str, arguments: Value, meta: Value) -> Value {
    let mut meta_obj = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "forwarding-test", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    for (k, v) in meta.as_object().unwrap() {
        meta_obj[k] = v.clone();
    }
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments, "_meta": meta_obj}})
}

#[tokio::test]
async fn http_forwards_the_callers_bearer_token_trace_context_and_tenant() {
    let (endpoint, recorder) = fake_batond().await;
    // The gateway's own token must not reach batond on behalf of HTTP callers.
    let defaults = Config::try_parse_from(["baton-mcp", "--token", "gateway-secret"]).unwrap().default_call_context();
    let router =
        http_router(BatonMcp::new(gateway(&endpoint), defaults), &["localhost".into()], OPEN, CancellationToken::new());

    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = mcp_post(
        router.clone(),
        &[("authorization", "Bearer caller-token"), ("traceparent", traceparent), ("x-baton-tenant", "acme")],
        modern_call("get_session", json!({"session_key": "s1"}), json!({})),
    )
    .await;
    let result = &response["result"];
    assert_eq!(result["isError"], true, "{response}");
    assert!(result["content"][0]["text"].as_str().unwrap().starts_with("UNAUTHENTICATED: recorded"));

    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0];
    assert_eq!(headers["authorization"], "Bearer caller-token");
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(headers["x-baton-tenant"], "acme");
    assert!(headers.contains_key("grpc-timeout"), "every call carries a deadline");

    // No Authorization header: nothing is forwarded (not the gateway's token either).
    mcp_post(router, &[], modern_call("get_session", json!({"session_key": "s1"}), json!({}))).await;
    let seen = recorder.seen.lock().unwrap().clone();
    assert!(!seen[1].contains_key("authorization"));
}

#[tokio::test]
async fn stdio_defaults_send_the_configured_token_and_tenant() {
    let (endpoint, recorder) = fake_batond().await;
    let config = Config::try_parse_from(["baton-mcp", "--token", "s3cret", "--tenant", "team-a"]).unwrap();
    let gateway = gateway(&endpoint);
    let spec = gateway.catalog().tool("get_session").unwrap().clone();
    let args = json!({"session_key": "s1"}).as_object().unwrap().clone();
    let error = gateway.call_tool(&spec, args, &config.default_call_context(), &NoProgress).await.unwrap_err();
    assert!(error.to_failure().text.starts_with("UNAUTHENTICATED"));
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen[0]["authorization"], "Bearer s3cret");
    assert_eq!(seen[0]["x-baton-tenant"], "team-a");
}

#[tokio::test]
async fn bad_arguments_never_reach_batond() {
    let (endpoint, recorder) = fake_batond().await;
    let router = http_router(
        BatonMcp::new(gateway(&endpoint), Default::default()),
        &["localhost".into()],
        OPEN,
        CancellationToken::new(),
    );
    let response =
        mcp_post(router, &[], modern_call("register_session", json!({"agent": ["not", "a", "string"]}), json!({})))
            .await;
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("`agent`: expected a string, got an array"), "{text}");
    assert!(recorder.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_batond_is_an_unavailable_tool_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let gateway = gateway(&endpoint);
    let spec = gateway.catalog().tool("get_context").unwrap().clone();
    let args = json!({"session_key": "s1"}).as_object().unwrap().clone();
    let error = gateway.call_tool(&spec, args, &Default::default(), &NoProgress).await.unwrap_err();
    assert!(error.to_failure().text.starts_with("UNAVAILABLE"), "{}", error.to_failure().text);
}

#[tokio::test]
async fn health() {
    let router = http_router(
        BatonMcp::new(gateway("http://127.0.0.1:1"), Default::default()),
        &["localhost".into()],
        OPEN,
        CancellationToken::new(),
    );
    let response = router
        .oneshot(http::Request::get("/health").header("host", "localhost").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
