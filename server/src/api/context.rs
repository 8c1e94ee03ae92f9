//! The request context: the tenant a call acts for and the trace it belongs to, extracted once
//! per call by [`ContextLayer`] (a tower layer inside the telemetry layer, so the call's server
//! span is current) and put into the request's extensions. Handlers read it with
//! [`context`]; a call whose context is invalid is answered by the layer and never reaches
//! them. Authentication plugs in here: the layer is where a credential becomes a principal.

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::domain::validate::Violations;
use crate::domain::{Error, Result};

/// The request header naming the tenant; absent means [`DEFAULT_TENANT`].
pub const TENANT_HEADER: &str = "x-baton-tenant";
pub const DEFAULT_TENANT: &str = "default";
const TRACEPARENT: &str = "traceparent";

/// Who a call acts for and where it is traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub tenant: String,
    /// The caller's W3C `traceparent`, kept for [`RequestContext::trace_id`]: most calls never
    /// need a trace id, so none is worked out up front.
    traceparent: Option<HeaderValue>,
}

impl RequestContext {
    fn from_headers(headers: &HeaderMap) -> Result<Self> {
        Ok(RequestContext { tenant: tenant(headers)?, traceparent: headers.get(TRACEPARENT).cloned() })
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

/// The context [`ContextLayer`] put into a request.
pub fn context<T>(req: &tonic::Request<T>) -> Result<RequestContext, Status> {
    req.extensions()
        .get::<RequestContext>()
        .cloned()
        .ok_or_else(|| Error::Internal("the request context layer is not installed".into()).into())
}

fn tenant(headers: &HeaderMap) -> Result<String> {
    let Some(value) = headers.get(TENANT_HEADER) else { return Ok(DEFAULT_TENANT.to_owned()) };
    let mut v = Violations::default();
    match value.to_str() {
        Ok(t) => {
            let t = v.key(TENANT_HEADER, t);
            v.finish().map(|()| t)
        }
        Err(_) => Err(Error::invalid(TENANT_HEADER, "must be ASCII")),
    }
}

/// Puts a [`RequestContext`] into every request, or answers with the error that prevents one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextLayer;

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> ContextService<S> {
        ContextService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ContextService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match RequestContext::from_headers(req.headers()) {
            Ok(ctx) => {
                req.extensions_mut().insert(ctx);
                Either::Left(self.inner.call(req))
            }
            Err(e) => Either::Right(ready(Ok(Status::from(e).into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn tenant_defaults_and_is_validated() {
        assert_eq!(RequestContext::from_headers(&HeaderMap::new()).unwrap().tenant, DEFAULT_TENANT);
        assert_eq!(RequestContext::from_headers(&headers(&[(TENANT_HEADER, "acme")])).unwrap().tenant, "acme");
        let e = RequestContext::from_headers(&headers(&[(TENANT_HEADER, "")])).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(v) if v[0].field == TENANT_HEADER));
    }

    #[test]
    fn trace_id_comes_from_traceparent_without_a_tracer() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = RequestContext::from_headers(&headers(&[("traceparent", tp)])).unwrap();
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(RequestContext::from_headers(&HeaderMap::new()).unwrap().trace_id(), "");
    }
}
