//! Who may use the HTTP transport.
//!
//! Baton's API keys are issued by Baton (`batond keys create`) for Baton, and the gateway is a
//! door of that same service: the bearer token an MCP client presents is a Baton key, and the
//! gateway passes it to batond, which checks it on every call (tenant, role, agent). That is not
//! the token passthrough MCP's authorization guidance forbids (relaying a token that was issued
//! for some other resource to an upstream API): the audience of the key is Baton, the gateway
//! accepts no token that batond would refuse, and it never lends its own credentials (the stdio
//! `--token`) to HTTP callers.
//!
//! So that an MCP client gets the HTTP answer the MCP authorization spec asks for (401 with
//! `WWW-Authenticate: Bearer`) rather than a tool error on every call, the gateway asks batond
//! about a token before letting its first request in: a one-item `ListSessions`, where
//! UNAUTHENTICATED means no. Answers are remembered per token for [`REMEMBER`] (and for "no
//! token", which is how the gateway learns that batond runs without auth and nothing is
//! required). Any other failure (batond unreachable) lets the request through, so its tool calls
//! report it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prost_reflect::{DynamicMessage, Value};
use serde_json::json;
use tonic::Code;

use crate::calls::Gateway;
use crate::grpc::CallContext;

/// How long an answer about a token is trusted; batond still checks every call, so a key
/// revoked meanwhile fails its calls at once.
pub const REMEMBER: Duration = Duration::from_secs(30);
/// The RPC that asks batond whether a token is good: the cheapest read any role may make.
const PROBE: &str = "baton.v1.ContextService.ListSessions";
/// Tokens remembered at most; past it the memory starts over.
const MAX_REMEMBERED: usize = 4096;

/// Per credential (None: none at all): when batond was asked, and whether it accepted.
type Answers = HashMap<Option<String>, (Instant, bool)>;

/// Lets HTTP requests in when batond would accept their credentials.
#[derive(Clone)]
pub struct BearerGate {
    gateway: Gateway,
    remembered: Arc<Mutex<Answers>>,
}

impl BearerGate {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway, remembered: Arc::default() }
    }

    /// Whether batond accepts `authorization` (None: no credentials at all).
    async fn accepts(&self, authorization: Option<&str>) -> bool {
        let token = authorization.map(str::to_owned);
        if let Some((at, accepted)) = self.lock().get(&token)
            && at.elapsed() < REMEMBER
        {
            return *accepted;
        }
        let accepted = match self.probe(token.clone()).await {
            Ok(()) => true,
            Err(status) if status.code() == Code::Unauthenticated => false,
            Err(status) => {
                tracing::debug!(%status, "cannot check the caller's credentials; letting the request in");
                return true;
            }
        };
        let mut remembered = self.lock();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(token, (Instant::now(), accepted));
        accepted
    }

    async fn probe(&self, authorization: Option<String>) -> Result<(), tonic::Status> {
        let method = self.gateway.method(PROBE)?;
        let mut request = DynamicMessage::new(method.input());
        request.set_field_by_name("page_size", Value::U32(1));
        let ctx = CallContext { authorization, ..Default::default() };
        self.gateway.backend().bare_unary(&method, request, &ctx).await.map(drop)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Middleware of the `/mcp` route: 401 with a `WWW-Authenticate: Bearer` challenge when batond
/// would refuse the request's credentials.
pub async fn require_bearer(State(gate): State<BearerGate>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
    if gate.accepts(authorization).await {
        return next.run(request).await;
    }
    let (challenge, description) = match authorization {
        None => (
            r#"Bearer realm="baton""#,
            "this Baton gateway needs a Baton API key (batond keys create) as the bearer token",
        ),
        Some(_) => (
            r#"Bearer realm="baton", error="invalid_token", error_description="the API key is unknown, revoked or expired""#,
            "the API key is unknown, revoked or expired",
        ),
    };
    let body = json!({"error": if authorization.is_some() { "invalid_token" } else { "unauthorized" }, "error_description": description});
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}
