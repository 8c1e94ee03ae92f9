//! The MCP handler: one `ServerHandler` for both transports. It lists the catalog's tools,
//! runs them through [`Gateway`], serves resources, and keeps resource subscriptions (the
//! legacy `resources/subscribe` and 2026-07-28 `subscriptions/listen`) alive with live follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomRequest, CustomResult,
    ErrorCode, Implementation, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ResourceContents, ResourceUpdatedNotificationParam, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{Map, Value as Json, json};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::Code;
use tracing::Instrument as _;

use crate::calls::{self, CallError, Gateway, NoProgress, Progress};
use crate::catalog::ToolSpec;
use crate::errors;
use crate::follow::{follow_session, last_seq};
use crate::grpc::{CallContext, TENANT_HEADER};
use crate::render;
use crate::resources::{self, ResourceRef};
use crate::telemetry::{TraceCarrier, mcp_span, record_error};

const INSTRUCTIONS: &str = "Baton keeps AI agents' working context and hands work from one agent to another. \
Open a session with register_session, add context with update_context, read it with get_context (the newest \
entries within a token budget) or the resource baton://sessions/{session_key}/context, and pass the work on with \
request_handoff; the target agent accepts it with accept_handoff and continues from the handoff's summary and \
context (stream_handoff_context).";

/// The MCP side of the gateway. Cheap to clone; one per MCP session (its subscriptions are
/// that session's and end with it).
#[derive(Clone)]
pub struct BatonMcp {
    gateway: Gateway,
    defaults: CallContext,
    subscriptions: Arc<Mutex<HashMap<String, Subscription>>>,
}

/// A legacy resource subscription: dropping it stops its follow.
struct Subscription {
    /// Cancelled when the follow stops, by an unsubscribe or by itself (the session was
    /// deleted); a subscription whose follow stopped by itself is subscribed to afresh.
    follow: CancellationToken,
    _stop: DropGuard,
}

impl BatonMcp {
    /// `defaults` are the credentials and tenant of calls that do not bring their own (stdio).
    pub fn new(gateway: Gateway, defaults: CallContext) -> Self {
        Self { gateway, defaults, subscriptions: Arc::default() }
    }

    /// A handler for a new MCP session, sharing the gateway but not the subscriptions.
    pub fn for_new_session(&self) -> Self {
        Self::new(self.gateway.clone(), self.defaults.clone())
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Credentials, trace context and tenant for the gRPC calls made for `request`: from the
    /// HTTP request when there is one, from the configuration otherwise.
    fn call_context(&self, request: &RequestContext<RoleServer>) -> CallContext {
        let mut ctx = self.defaults.clone();
        if let Some(parts) = request.extensions.get::<http::request::Parts>() {
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            // Over HTTP the caller's own credentials are forwarded, never the gateway's.
            ctx.authorization = header("authorization");
            ctx.trace = TraceCarrier::from_fields(|name| parts.headers.get(name).and_then(|v| v.to_str().ok()));
            if let Some(tenant) = header(TENANT_HEADER) {
                ctx.tenant = Some(tenant);
            }
        }
        // MCP's own place for trace context, and the only one on stdio.
        if !ctx.trace.has_parent() {
            ctx.trace = TraceCarrier::from_fields(|key| request.meta.get(key).and_then(Json::as_str));
        }
        ctx
    }

    /// The span of an MCP request made with `ctx`.
    fn span(
        &self,
        method: &'static str,
        target: Option<&str>,
        ctx: &CallContext,
        request: &RequestContext<RoleServer>,
    ) -> tracing::Span {
        let http = request.extensions.get::<http::request::Parts>().is_some();
        mcp_span(method, target, &ctx.trace, http)
    }

    async fn read(&self, uri: &str, ctx: &CallContext) -> Result<Json, ErrorData> {
        let resource = ResourceRef::parse(uri).ok_or_else(|| {
            ErrorData::resource_not_found(format!("no such resource: {uri}"), Some(json!({"uri": uri})))
        })?;
        let (method, args) = resource.call();
        self.gateway.call_method(method, args, ctx).await.map_err(|e| resource_error(uri, e))
    }

    /// Starts following the session behind `uri` for the legacy subscription of this session.
    async fn start_subscription(&self, uri: String, ctx: CallContext, peer: Peer<RoleServer>) -> Result<(), ErrorData> {
        let (session_key, after) = self.subscribable(&uri, &ctx).await?;
        let cancel = CancellationToken::new();
        {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            if subscriptions.get(&uri).is_some_and(|s| !s.follow.is_cancelled()) {
                return Ok(());
            }
            subscriptions
                .insert(uri.clone(), Subscription { follow: cancel.clone(), _stop: cancel.clone().drop_guard() });
        }
        let gateway = self.gateway.clone();
        let follow = follow_session(gateway, ctx, session_key, after, cancel.clone(), move |_seq| {
            let peer = peer.clone();
            let uri = uri.clone();
            async move { peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await.is_ok() }
        });
        tokio::spawn(async move {
            follow.await;
            cancel.cancel();
        });
        Ok(())
    }

    /// The session a subscribable URI follows and its current last seq; errors for others.
    async fn subscribable(&self, uri: &str, ctx: &CallContext) -> Result<(String, u64), ErrorData> {
        let resource = ResourceRef::parse(uri).ok_or_else(|| {
            ErrorData::resource_not_found(format!("no such resource: {uri}"), Some(json!({"uri": uri})))
        })?;
        let Some(session_key) = resource.followed_session() else {
            return Err(ErrorData::invalid_params(
                format!("{uri} cannot be subscribed to; subscribe to a session or its context"),
                None,
            ));
        };
        let after =
            last_seq(&self.gateway, ctx, session_key).await.map_err(|s| resource_error(uri, CallError::Status(s)))?;
        Ok((session_key.to_owned(), after))
    }
}

/// Reports stream progress as MCP progress notifications.
struct PeerProgress {
    peer: Peer<RoleServer>,
    token: rmcp::model::ProgressToken,
}

impl Progress for PeerProgress {
    async fn report(&self, done: u32, limit: u32) {
        let param = ProgressNotificationParam::new(self.token.clone(), done as f64)
            .with_total(limit as f64)
            .with_message(format!("{done} item(s) received"));
        if let Err(error) = self.peer.notify_progress(param).await {
            tracing::debug!(%error, "progress notification not delivered");
        }
    }
}

fn resource_error(uri: &str, error: CallError) -> ErrorData {
    let failure = error.to_failure();
    match &error {
        CallError::Status(s) if s.code() == Code::NotFound => {
            ErrorData::resource_not_found(format!("{uri}: {}", s.message()), Some(json!({"uri": uri})))
        }
        CallError::Arguments(_) => {
            ErrorData::invalid_params(format!("{uri}: {}", failure.text), Some(failure.structured))
        }
        CallError::Status(s) if s.code() == Code::InvalidArgument => {
            ErrorData::invalid_params(format!("{uri}: {}", failure.text), Some(failure.structured))
        }
        CallError::Status(_) => ErrorData::internal_error(format!("{uri}: {}", failure.text), Some(failure.structured)),
    }
}

/// Protocol revisions before 2025-06-18 have no structured tool output: clients on them get the
/// JSON itself as the text, so programs can still parse it.
fn has_structured_output(version: Option<&ProtocolVersion>) -> bool {
    version.is_none_or(|v| v.as_str() >= ProtocolVersion::V_2025_06_18.as_str())
}

fn success(spec: &ToolSpec, value: Json, structured_output: bool) -> CallToolResult {
    let text = if structured_output {
        match &spec.items_key {
            Some(key) => render::stream_to_text(&spec.method.output(), key, &value),
            None => render::message_to_text(&spec.method.output(), &value),
        }
    } else {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

fn failure(error: &CallError) -> CallToolResult {
    let failure = error.to_failure();
    let mut result = CallToolResult::error(vec![ContentBlock::text(failure.text)]);
    result.structured_content = Some(failure.structured);
    result
}

impl ServerHandler for BatonMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build(),
        )
        .with_server_info(
            Implementation::new("baton-mcp", env!("CARGO_PKG_VERSION"))
                .with_title("Baton")
                .with_description("Context and handoffs for AI agents, over MCP"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.gateway.catalog().tools().iter().map(|t| t.tool.clone()).collect()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.gateway.catalog().tool(name).map(|t| t.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let ctx = self.call_context(&context);
        let span = self.span("tools/call", Some(&request.name), &ctx, &context);
        let Some(spec) = self.gateway.catalog().tool(&request.name) else {
            let message = format!("unknown tool: {}", request.name);
            record_error(&span, "-32602", &message);
            return Err(ErrorData::invalid_params(message, None));
        };
        let args: Map<String, Json> = request.arguments.unwrap_or_default();
        let structured_output = has_structured_output(context.protocol_version().as_ref());
        let outcome = match context.meta.get_progress_token() {
            Some(token) => {
                let progress = PeerProgress { peer: context.peer.clone(), token };
                self.run(spec, args, &ctx, &progress, &context).instrument(span.clone()).await
            }
            None => self.run(spec, args, &ctx, &NoProgress, &context).instrument(span.clone()).await,
        };
        let metrics = self.gateway.backend().metrics();
        let result = match outcome {
            Ok(value) => {
                metrics.tool_call(&request.name, "ok", started);
                success(spec, value, structured_output)
            }
            Err(error) => {
                let text = error.to_failure().text;
                let kind = match &error {
                    CallError::Arguments(_) => "arguments",
                    CallError::Status(s) => baton_telemetry::grpc::code_name(s.code() as i32),
                };
                metrics.tool_call(&request.name, kind, started);
                // MCP conventions: a result with isError is a `tool_error`.
                record_error(&span, "tool_error", &text);
                span.in_scope(|| tracing::debug!(tool = %request.name, error = %text, "tool call failed"));
                failure(&error)
            }
        };
        Ok(CallToolResponse::Complete(result))
    }

    /// rmcp passes on a request whose params do not fit its method's type (a `tools/call`
    /// whose `arguments` is not an object) as a custom request: invalid params, naming the
    /// field, rather than "method not found".
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        match calls::misshapen_params(&request.method, request.params.as_ref()) {
            Some(error) => {
                let failure = errors::from_arguments(&error);
                Err(ErrorData::invalid_params(
                    format!("{}: {}", request.method, failure.text),
                    Some(failure.structured),
                ))
            }
            None => Err(ErrorData::new(ErrorCode::METHOD_NOT_FOUND, request.method, None)),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let ctx = self.call_context(&context);
        let span = self.span("resources/list", None, &ctx, &context);
        let mut listed = resources::static_resources();
        let sessions = self.read("baton://sessions", &ctx).instrument(span.clone()).await.inspect_err(|e| {
            record_error(&span, &e.code.0.to_string(), &e.message);
        })?;
        for session in sessions["sessions"].as_array().into_iter().flatten() {
            let key = session["session_key"].as_str().unwrap_or_default();
            let owner = session["owner"].as_str().unwrap_or_default();
            let last_seq = session["last_seq"].as_str().unwrap_or("0");
            listed.push(resources::session_context_resource(key, owner, last_seq));
        }
        Ok(ListResourcesResult::with_all_items(listed).with_ttl_ms(0).with_cache_scope(CacheScope::Private))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let ctx = self.call_context(&context);
        let span = self.span("resources/read", None, &ctx, &context);
        span.record("mcp.resource.uri", request.uri.as_str());
        let value = self.read(&request.uri, &ctx).instrument(span.clone()).await.inspect_err(|e| {
            record_error(&span, &e.code.0.to_string(), &e.message);
        })?;
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        // Context changes with every append: clients must not cache it.
        let result =
            ReadResourceResult::new(vec![ResourceContents::text(text, request.uri).with_mime_type(resources::JSON)])
                .with_ttl_ms(0)
                .with_cache_scope(CacheScope::Private);
        Ok(ReadResourceResponse::Complete(result))
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let ctx = self.call_context(&context);
        let span = self.span("resources/subscribe", None, &ctx, &context);
        span.record("mcp.resource.uri", request.uri.as_str());
        self.start_subscription(request.uri, ctx, context.peer.clone()).instrument(span.clone()).await.inspect_err(
            |e| {
                record_error(&span, &e.code.0.to_string(), &e.message);
            },
        )
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Dropping the guard cancels the follow.
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner()).remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let uris: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| ResourceRef::parse(uri).is_some_and(|r| r.followed_session().is_some()))
            .cloned()
            .collect();
        Some(SubscriptionFilter::builder().resource_subscriptions(uris).build())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let ctx = self.call_context(context.request_context());
        let cancel = CancellationToken::new();
        let _stop_follows = cancel.clone().drop_guard();
        for uri in context.accepted().resource_subscriptions.iter().flatten() {
            let (session_key, after) = match self.subscribable(uri, &ctx).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::info!(uri, error = %error.message, "not following a subscribed resource");
                    continue;
                }
            };
            let sink = context.sink().clone();
            let uri = uri.clone();
            tokio::spawn(follow_session(
                self.gateway.clone(),
                ctx.clone(),
                session_key,
                after,
                cancel.clone(),
                move |_seq| {
                    let sink = sink.clone();
                    let uri = uri.clone();
                    async move { sink.notify_resource_updated(uri).await.is_ok() }
                },
            ));
        }
        context.cancelled().await;
        Ok(())
    }
}

impl BatonMcp {
    async fn run<P: Progress>(
        &self,
        spec: &ToolSpec,
        args: Map<String, Json>,
        ctx: &CallContext,
        progress: &P,
        context: &RequestContext<RoleServer>,
    ) -> Result<Json, CallError> {
        tokio::select! {
            result = self.gateway.call_tool(spec, args, ctx, progress) => result,
            _ = context.ct.cancelled() => Err(CallError::Status(tonic::Status::cancelled("the client cancelled the call"))),
        }
    }
}
