//! Tool calls, transport-free: arguments → (aliases, validation) → request message → gRPC →
//! proto3 JSON. Streams are collected up to a bound, reporting progress per item.

use std::sync::Arc;
use std::time::Duration;

use prost_reflect::{DynamicMessage, MethodDescriptor, SerializeOptions};
use serde_json::{Map, Value as Json, json};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::args::{ArgumentError, Converter, json_type};
use crate::catalog::{CallShape, Catalog, DEFAULT_MAX_ITEMS, MAX_ITEMS_CAP, ToolSpec};
use crate::compat::{self, OwnerDefault};
use crate::errors::{self, ToolFailure};
use crate::grpc::{Backend, CallContext};

/// The RPC that tells the gateway a session's owner, for arguments that default to it.
pub const GET_SESSION: &str = "baton.v1.ContextService.GetSession";

/// Why a call produced no result.
#[derive(Debug)]
pub enum CallError {
    /// Rejected before any gRPC call.
    Arguments(ArgumentError),
    /// The server (or the way to it) said no.
    Status(Status),
}

impl CallError {
    pub fn to_failure(&self) -> ToolFailure {
        match self {
            CallError::Arguments(e) => errors::from_arguments(e),
            CallError::Status(s) => errors::from_status(s),
        }
    }
}

impl From<ArgumentError> for CallError {
    fn from(e: ArgumentError) -> Self {
        CallError::Arguments(e)
    }
}

impl From<Status> for CallError {
    fn from(s: Status) -> Self {
        CallError::Status(s)
    }
}

/// Receives stream progress: `done` items so far out of at most `limit`.
pub trait Progress: Send + Sync {
    fn report(&self, done: u32, limit: u32) -> impl Future<Output = ()> + Send;
}

/// For calls nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    async fn report(&self, _done: u32, _limit: u32) {}
}

/// How long a session's owner, looked up to fill in a missing author or `from_agent`, is
/// reused without asking `batond` again (`--owner-cache-ms` changes it).
pub const OWNER_CACHE_TTL: Duration = Duration::from_millis(1000);

/// The transport-independent gateway: catalog plus backend.
#[derive(Clone)]
pub struct Gateway {
    catalog: Arc<Catalog>,
    backend: Backend,
    /// Session owners by caller (tenant, credential) and session key: an `update_context` in
    /// the old argument shape is one gRPC call, not GetSession then AppendEntries, while its
    /// owner stays cached. Owner changes made through this gateway (accepting, completing or
    /// cancelling a handoff) empty it; others show within the TTL.
    owners: Option<moka::future::Cache<OwnerKey, String>>,
}

type OwnerKey = (Option<String>, Option<String>, String);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(catalog: Arc<Catalog>, backend: Backend) -> Self {
        Self::with_owner_cache(catalog, backend, OWNER_CACHE_TTL)
    }

    /// A gateway that reuses a session's owner for `ttl` (zero: asks every time).
    pub fn with_owner_cache(catalog: Arc<Catalog>, backend: Backend, ttl: Duration) -> Self {
        let owners =
            (!ttl.is_zero()).then(|| moka::future::Cache::builder().max_capacity(10_000).time_to_live(ttl).build());
        Self { catalog, backend, owners }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Runs one tool call and returns the proto3 JSON of its result.
    pub async fn call_tool<P: Progress>(
        &self,
        spec: &ToolSpec,
        mut args: Map<String, Json>,
        ctx: &CallContext,
        progress: &P,
    ) -> Result<Json, CallError> {
        let max_items = match &spec.max_items_arg {
            Some(arg) => Some(max_items(args.remove(arg.as_str()), arg)?),
            None => None,
        };
        let request = self.request(&spec.method, args, ctx).await?;
        match (spec.shape, max_items) {
            (CallShape::Unary, _) => {
                let response = self.backend.unary(&spec.method, request, ctx).await;
                self.after_owner_change(&spec.method);
                Ok(to_json(&response?))
            }
            (CallShape::ServerStreaming, limit) => {
                let key = spec.items_key.as_deref().unwrap_or("items");
                self.collect(&spec.method, request, ctx, limit.unwrap_or(DEFAULT_MAX_ITEMS), key, progress).await
            }
        }
    }

    /// Calls the RPC `method` (full name) with JSON arguments: what resources read. The
    /// arguments are an object by type, as a tool call's are.
    pub async fn call_method(
        &self,
        method: &str,
        args: Map<String, Json>,
        ctx: &CallContext,
    ) -> Result<Json, CallError> {
        let method = self.method(method)?;
        let request = self.request(&method, args, ctx).await?;
        let response = self.backend.unary(&method, request, ctx).await;
        self.after_owner_change(&method);
        Ok(to_json(&response?))
    }

    /// Forgets the cached owners after a call that can move a session's ownership (whatever
    /// its outcome: a call that failed on the way back may still have moved it).
    fn after_owner_change(&self, method: &MethodDescriptor) {
        const MOVES_OWNER: [&str; 3] = ["AcceptHandoff", "CompleteHandoff", "CancelHandoff"];
        if let Some(owners) = &self.owners
            && MOVES_OWNER.contains(&method.name())
        {
            owners.invalidate_all();
        }
    }

    /// The descriptor of the RPC `full_name`.
    pub fn method(&self, full_name: &str) -> Result<MethodDescriptor, Status> {
        let (service, name) = full_name.rsplit_once('.').unwrap_or_default();
        self.catalog
            .pool()
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == name))
            .ok_or_else(|| Status::unimplemented(format!("this gateway's descriptors have no RPC {full_name}")))
    }

    /// Builds the request message: aliases, validation, then defaults that need the server.
    pub async fn request(
        &self,
        method: &MethodDescriptor,
        args: Map<String, Json>,
        ctx: &CallContext,
    ) -> Result<DynamicMessage, CallError> {
        let input = method.input();
        let mapped = compat::map_aliases(&input, args)?;
        let converter = Converter::new(self.catalog.comments());
        let deferred: Vec<String> = mapped.owner_defaults.iter().map(|d| d.path.clone()).collect();
        let message = converter.message(&input, &mapped.args, &deferred)?;
        if mapped.owner_defaults.is_empty() {
            return Ok(message);
        }
        let mut args = mapped.args;
        let session_key = message
            .get_field_by_name("session_key")
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ArgumentError::one(
                    "session_key",
                    format!("required to default `{}` to the session's owner", deferred.join("`, `")),
                )
            })?;
        let owner = self.owner(&session_key, ctx).await?;
        for default in &mapped.owner_defaults {
            set_path(&mut args, default, &owner);
        }
        Ok(converter.message(&input, &args, &[])?)
    }

    async fn owner(&self, session_key: &str, ctx: &CallContext) -> Result<String, CallError> {
        let Some(owners) = &self.owners else { return self.fetch_owner(session_key, ctx).await };
        let key = (ctx.tenant.clone(), ctx.authorization.clone(), session_key.to_owned());
        if let Some(owner) = owners.get(&key).await {
            return Ok(owner);
        }
        let owner = self.fetch_owner(session_key, ctx).await?;
        owners.insert(key, owner.clone()).await;
        Ok(owner)
    }

    async fn fetch_owner(&self, session_key: &str, ctx: &CallContext) -> Result<String, CallError> {
        let method = self.method(GET_SESSION)?;
        let mut request = DynamicMessage::new(method.input());
        request.set_field_by_name("session_key", prost_reflect::Value::String(session_key.to_owned()));
        let session = self.backend.unary(&method, request, ctx).await?;
        Ok(session.get_field_by_name("owner").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
    }

    async fn collect<P: Progress>(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        ctx: &CallContext,
        limit: u32,
        key: &str,
        progress: &P,
    ) -> Result<Json, CallError> {
        let deadline = self.backend.call_timeout();
        let ends_at = Instant::now() + deadline;
        let mut stream = self.backend.server_streaming(method, request, ctx, Some(deadline)).await?;
        let mut items = Vec::new();
        let stopped = loop {
            match tokio::time::timeout_at(ends_at, stream.message()).await {
                Err(_) => break "deadline",
                Ok(Ok(None)) => break "end",
                Ok(Ok(Some(item))) => {
                    items.push(to_json(&item));
                    let done = items.len() as u32;
                    progress.report(done, limit).await;
                    if done >= limit {
                        break "max_items";
                    }
                }
                Ok(Err(status)) if status.code() == Code::DeadlineExceeded => break "deadline",
                Ok(Err(status)) => return Err(status.into()),
            }
        };
        // Stopping at the bound or the deadline is the tool's answer, not a failed call.
        stream.stop();
        let count = items.len();
        Ok(json!({ key: items, "count": count, "stopped": stopped }))
    }
}

/// Fills the argument at `default.path` (`from_agent` or `entries[0].author`) with `owner`.
fn set_path(args: &mut Map<String, Json>, default: &OwnerDefault, owner: &str) {
    let mut parts = default.path.split('.').peekable();
    let mut current: &mut Map<String, Json> = args;
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if parts.peek().is_none() {
            current.insert(name.to_owned(), Json::String(owner.to_owned()));
            return;
        }
        let next = match (current.get_mut(name), index) {
            (Some(Json::Array(items)), Some(i)) => items.get_mut(i),
            (Some(value), None) => Some(value),
            _ => None,
        };
        match next {
            Some(Json::Object(map)) => current = map,
            _ => return,
        }
    }
}

/// The requests MCP defines from client to server. rmcp types the params of each; a request for
/// one of them whose params do not fit that type reaches the handler as a custom request.
const MCP_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

/// What is wrong with the params of an MCP request that rmcp could not type (so it arrived as a
/// custom request): for `tools/call`, the field at fault (`arguments` that is not an object, a
/// `name` that is not a string); `None` when `method` is not an MCP request at all (the caller
/// answers "method not found").
pub fn misshapen_params(method: &str, params: Option<&Json>) -> Option<ArgumentError> {
    if !MCP_REQUESTS.contains(&method) {
        return None;
    }
    let fallback = || ArgumentError::one("params", format!("do not have the shape `{method}` takes"));
    if method != "tools/call" {
        return Some(fallback());
    }
    let Some(Json::Object(params)) = params else {
        let got = params.map_or("nothing", json_type);
        return Some(ArgumentError::one("params", format!("expected a JSON object, got {got}")));
    };
    if let Err(error) = tool_arguments(params.get("arguments").cloned()) {
        return Some(error);
    }
    match params.get("name") {
        Some(Json::String(_)) => Some(fallback()),
        Some(other) => Some(ArgumentError::one("name", format!("expected a string, got {}", json_type(other)))),
        None => Some(ArgumentError::one("name", "required")),
    }
}

/// A tool call's `arguments`, which MCP defines as an object: absent or null is no arguments,
/// anything else is refused with the field named.
pub fn tool_arguments(value: Option<Json>) -> Result<Map<String, Json>, ArgumentError> {
    match value {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(args)) => Ok(args),
        Some(other) => {
            Err(ArgumentError::one("arguments", format!("expected a JSON object, got {}", json_type(&other))))
        }
    }
}

fn max_items(value: Option<Json>, arg: &str) -> Result<u32, ArgumentError> {
    match value {
        None | Some(Json::Null) => Ok(DEFAULT_MAX_ITEMS),
        Some(Json::Number(n)) => match n.as_u64() {
            Some(v) if (1..=MAX_ITEMS_CAP as u64).contains(&v) => Ok(v as u32),
            _ => Err(ArgumentError::one(arg, format!("must be an integer from 1 to {MAX_ITEMS_CAP}, got {n}"))),
        },
        Some(other) => Err(ArgumentError::one(arg, format!("expected an integer, got {}", json_type(&other)))),
    }
}

/// The proto3 JSON of a message, with proto field names and every field present.
pub fn to_json(message: &DynamicMessage) -> Json {
    let options = SerializeOptions::new().use_proto_field_name(true).skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or_else(|e| json!({"error": format!("the response does not convert to JSON: {e}")}))
}

/// How long a live stream waits before it is reopened after a failure.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(7)).min(30_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_paths_are_filled() {
        let Json::Object(mut args) = json!({"entries": [{"text": "x"}]}) else { unreachable!() };
        set_path(&mut args, &OwnerDefault { path: "entries[0].author".into() }, "planner");
        set_path(&mut args, &OwnerDefault { path: "from_agent".into() }, "planner");
        assert_eq!(
            Json::Object(args),
            json!({"entries": [{"text": "x", "author": "planner"}], "from_agent": "planner"})
        );
    }

    #[test]
    fn tool_arguments_are_an_object_or_nothing() {
        assert_eq!(tool_arguments(None).unwrap(), Map::new());
        assert_eq!(tool_arguments(Some(Json::Null)).unwrap(), Map::new());
        assert_eq!(Json::Object(tool_arguments(Some(json!({"a": 1}))).unwrap()), json!({"a": 1}));
        for (value, kind) in [(json!("x"), "a string"), (json!([1]), "an array"), (json!(5), "a number")] {
            let error = tool_arguments(Some(value)).unwrap_err();
            assert_eq!(error.violations[0].field, "arguments");
            assert!(error.violations[0].description.ends_with(kind), "{error}");
        }
    }

    #[test]
    fn misshapen_params_name_the_field() {
        let field =
            |method: &str, params: Json| misshapen_params(method, Some(&params)).unwrap().violations[0].field.clone();
        assert_eq!(field("tools/call", json!({"name": "get_session", "arguments": "x"})), "arguments");
        assert_eq!(field("tools/call", json!({"name": 7, "arguments": {}})), "name");
        assert_eq!(field("tools/call", json!({"arguments": {}})), "name");
        assert_eq!(field("tools/call", json!(["get_session"])), "params");
        assert_eq!(field("resources/read", json!({"uri": 5})), "params");
        assert_eq!(misshapen_params("tools/call", None).unwrap().violations[0].field, "params");
        assert!(misshapen_params("vendor/custom", Some(&json!({}))).is_none());
    }

    #[test]
    fn max_items_bounds() {
        assert_eq!(max_items(None, "max_items").unwrap(), DEFAULT_MAX_ITEMS);
        assert_eq!(max_items(Some(json!(5)), "max_items").unwrap(), 5);
        assert_eq!(max_items(Some(json!(0)), "max_items").unwrap_err().violations[0].field, "max_items");
        assert!(max_items(Some(json!(1001)), "max_items").is_err());
        assert!(max_items(Some(json!("5")), "max_items").is_err());
    }

    #[test]
    fn json_of_messages_uses_proto_names_and_strings_for_u64() {
        let catalog = Catalog::baton().unwrap();
        let desc = catalog.pool().get_message_by_name("baton.v1.Session").unwrap();
        let mut session = DynamicMessage::new(desc);
        session.set_field_by_name("session_key", prost_reflect::Value::String("s".into()));
        session.set_field_by_name("last_seq", prost_reflect::Value::U64(3));
        let json = to_json(&session);
        assert_eq!(json["session_key"], "s");
        assert_eq!(json["last_seq"], "3");
        assert_eq!(json["status"], "SESSION_STATUS_UNSPECIFIED");
        assert!(json.get("expires_at").is_none());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(1000));
        assert_eq!(backoff(20), Duration::from_millis(30_000));
    }
}
