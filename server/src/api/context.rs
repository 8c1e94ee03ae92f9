//! The request context: the tenant a call acts for and the trace it belongs to, extracted once
//! per call by [`ContextLayer`] (a tower layer inside the telemetry layer, so the call's server
//! span is current) and put into the request's extensions. Handlers read it with
//! [`context`]; a call whose context is invalid is answered by the layer and never reaches
//! them. This is where a credential becomes a principal (`crate::auth`), and where a call's
//! read-your-writes position comes in and goes out (`store::freshness`: the `baton-min-lsn`
//! request header, the `baton-lsn` response header).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::auth::{Authenticator, Quotas, StreamPermit, required_role};
use crate::domain::principal::Principal;
use crate::domain::{Error, Result};
use crate::store::freshness::{self, LSN_HEADER, Lsn, MIN_LSN_HEADER};

const TRACEPARENT: &str = "traceparent";

/// Who a call acts for and where it is traced.
#[derive(Clone)]
pub struct RequestContext {
    /// The tenant the call acts for: the key's own, or the one an admin named.
    pub tenant: String,
    /// Who made the call.
    pub principal: Principal,
    /// The caller's W3C `traceparent`, kept for [`RequestContext::trace_id`]: most calls never
    /// need a trace id, so none is worked out up front.
    traceparent: Option<HeaderValue>,
    /// The connection's remote address (for the per-connection stream cap).
    peer: Option<SocketAddr>,
    quotas: Option<Quotas>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("tenant", &self.tenant)
            .field("principal", &self.principal)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    /// A context with no quotas (tests and in-process callers).
    pub fn new(tenant: String, principal: Principal) -> Self {
        RequestContext { tenant, principal, traceparent: None, peer: None, quotas: None }
    }

    /// `PermissionDenied` when the caller's key is bound to another agent than `agent`
    /// (named in the request's `field`).
    pub fn act_as(&self, field: &str, agent: &str) -> Result<()> {
        self.principal.act_as(field, agent)
    }

    /// A place for one more open stream under the caller's and the connection's caps; keep
    /// it as long as the stream is open.
    pub fn open_stream(&self) -> Result<Option<StreamPermit>> {
        self.quotas.as_ref().map(|q| q.open_stream(self.principal.quota_key(), self.peer)).transpose()
    }

    /// The id of the trace this call belongs to, stored on appended entries: that of the
    /// call's server span when tracing is on (the caller's trace, or a new one), else the
    /// caller's `traceparent`, if it sent a valid one; empty otherwise. Call it inside the
    /// call (the handler runs in the server span).
    pub fn trace_id(&self) -> String {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let current = tracing::Span::current().context();
        let remote;
        let cx = if current.span().span_context().is_valid() {
            &current
        } else {
            let mut headers = HeaderMap::new();
            if let Some(tp) = &self.traceparent {
                headers.insert(TRACEPARENT, tp.clone());
            }
            remote = baton_proto::trace::extract(&headers);
            &remote
        };
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() { sc.trace_id().to_string() } else { String::new() }
    }
}

/// The context [`ContextLayer`] put into a request (shared, so taking it costs no copy).
pub fn context<T>(req: &tonic::Request<T>) -> Result<Arc<RequestContext>, Status> {
    req.extensions()
        .get::<Arc<RequestContext>>()
        .cloned()
        .ok_or_else(|| Error::Internal("the request context layer is not installed".into()).into())
}

/// Authenticates every call to Baton's services, checks its role and rate quota, and puts a
/// [`RequestContext`] into it, or answers with the error that prevents one. Calls to other
/// services (health, reflection) pass through untouched.
#[derive(Clone)]
pub struct ContextLayer {
    auth: Authenticator,
    quotas: Quotas,
}

impl ContextLayer {
    pub fn new(auth: Authenticator, quotas: Quotas) -> Self {
        ContextLayer { auth, quotas }
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> ContextService<S> {
        ContextService { inner, auth: self.auth.clone(), quotas: self.quotas.clone() }
    }
}

#[derive(Clone)]
pub struct ContextService<S> {
    inner: S,
    auth: Authenticator,
    quotas: Quotas,
}

impl<S> ContextService<S> {
    async fn admit(&self, path: &str, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<RequestContext> {
        let (principal, tenant) = self.auth.authenticate(headers).await?;
        if let Some(needed) = required_role(path) {
            let method = path.rsplit('/').next().unwrap_or(path);
            principal.require(needed, method).inspect_err(|_| self.auth.fail("role"))?;
        }
        self.quotas.request(principal.quota_key())?;
        Ok(RequestContext {
            tenant,
            principal,
            traceparent: headers.get(TRACEPARENT).cloned(),
            peer,
            quotas: Some(self.quotas.clone()),
        })
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone is the one that was polled ready: it takes the call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if required_role(req.uri().path()).is_none() {
            return Box::pin(inner.call(req));
        }
        let this = ContextService { inner: (), auth: self.auth.clone(), quotas: self.quotas.clone() };
        let peer =
            req.extensions().get::<tonic::transport::server::TcpConnectInfo>().and_then(|c| c.remote_addr()).or_else(
                || {
                    req.extensions()
                        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
                        .and_then(|c| c.get_ref().remote_addr())
                },
            );
        Box::pin(async move {
            let admitted = this.admit(req.uri().path(), req.headers(), peer).await;
            let required = min_lsn(req.headers());
            match admitted.and_then(|ctx| Ok((ctx, required?))) {
                Ok((ctx, required)) => {
                    req.extensions_mut().insert(Arc::new(ctx));
                    let (response, seen) = freshness::within(required, inner.call(req)).await;
                    let mut response = malformed_is_invalid(response?);
                    if let Some(lsn) = seen
                        && let Ok(value) = HeaderValue::from_str(&lsn.header())
                    {
                        response.headers_mut().insert(LSN_HEADER, value);
                    }
                    Ok(response)
                }
                Err(e) => Ok(Status::from(e).into_http()),
            }
        })
    }
}

/// The position the caller's reads must reflect (`baton-min-lsn`), if it sent one.
fn min_lsn(headers: &HeaderMap) -> Result<Option<Lsn>> {
    let Some(value) = headers.get(MIN_LSN_HEADER) else { return Ok(None) };
    let lsn = value.to_str().ok().and_then(Lsn::parse);
    lsn.map(Some).ok_or_else(|| {
        Error::invalid(
            MIN_LSN_HEADER,
            "must be a log position as the baton-lsn response header gives it (1 to 16 hexadecimal digits)",
        )
    })
}

/// tonic answers a request body it cannot decode (truncated or garbage bytes, invalid UTF-8
/// in a string field, nesting past prost's recursion limit) with INTERNAL; it is the caller's
/// error, so it becomes INVALID_ARGUMENT, worded for the caller.
fn malformed_is_invalid<B: Default>(response: Response<B>) -> Response<B> {
    const DECODE: &str = "failed to decode Protobuf message";
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    if status.code() != tonic::Code::Internal || !status.message().starts_with(DECODE) {
        return response;
    }
    let cause = status.message()[DECODE.len()..].trim_start_matches(':').trim();
    let description = if cause.contains("recursion limit") {
        format!(
            "the message nests too deeply to decode ({cause}); metadata may nest at most {} levels",
            super::requests::MAX_METADATA_DEPTH
        )
    } else {
        format!("the request is not a valid protobuf message of this method: {cause}")
    };
    Status::from(Error::invalid("request", description)).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_comes_from_traceparent_without_a_tracer() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut ctx = RequestContext::new("t".into(), Principal::anonymous("t".into()));
        assert_eq!(ctx.trace_id(), "");
        ctx.traceparent = Some(HeaderValue::from_static(tp));
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
