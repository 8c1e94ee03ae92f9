//! The gRPC surface: thin tonic handlers. Each one reads the tenant from the request
//! metadata, converts the request into a domain command (`convert`), calls `Baton`, and
//! converts the result back; errors map to statuses in one place (`status`).

use std::pin::Pin;
use std::sync::Arc;

use baton_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::domain::commands::*;
use crate::domain::service::{Baton, ItemStream};
use crate::domain::validate::Violations;
use crate::domain::{Error, Result};

pub mod convert;
mod status;

/// The request header naming the tenant; absent means [`DEFAULT_TENANT`].
pub const TENANT_HEADER: &str = "x-baton-tenant";
pub const DEFAULT_TENANT: &str = "default";

/// A server stream of proto messages.
pub type GrpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn tenant(md: &MetadataMap) -> Result<String> {
    let Some(value) = md.get(TENANT_HEADER) else { return Ok(DEFAULT_TENANT.to_owned()) };
    let mut v = Violations::default();
    match value.to_str() {
        Ok(t) => {
            let t = v.key(TENANT_HEADER, t);
            v.finish().map(|()| t)
        }
        Err(_) => Err(Error::invalid(TENANT_HEADER, "must be ASCII")),
    }
}

/// The id of the trace this call belongs to, stored on appended entries: that of the call's
/// server span when tracing is on (the caller's trace, or a new one), else the caller's W3C
/// `traceparent`, if it sent a valid one.
fn trace_id(md: &MetadataMap) -> String {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let current = tracing::Span::current().context();
    let remote;
    let cx = if current.span().span_context().is_valid() {
        &current
    } else {
        remote = baton_proto::trace::extract(md.as_ref());
        &remote
    };
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() { sc.trace_id().to_string() } else { String::new() }
}

fn stream<T, P>(rx: ItemStream<T>) -> Response<GrpcStream<P>>
where
    T: Into<P> + Send + 'static,
    P: Send + 'static,
{
    let s = ReceiverStream::new(rx).map(|item| (*item).map(Into::into).map_err(Status::from));
    Response::new(Box::pin(s))
}

/// `baton.v1.ContextService`.
pub struct ContextApi(pub Arc<Baton>);

#[tonic::async_trait]
impl pb::context_service_server::ContextService for ContextApi {
    async fn create_session(&self, req: Request<pb::CreateSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = CreateSession::try_from(req.into_inner())?;
        Ok(Response::new(self.0.create_session(&tenant, cmd).await?.into()))
    }

    async fn get_session(&self, req: Request<pb::GetSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let tenant = tenant(req.metadata())?;
        let pb::GetSessionRequest { session_key } = req.into_inner();
        let key = convert::required_key("session_key", &session_key)?;
        Ok(Response::new(self.0.get_session(&tenant, &key).await?.into()))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = ListSessions::try_from(req.into_inner())?;
        let (sessions, next_page_token) = self.0.list_sessions(&tenant, cmd).await?;
        let sessions = sessions.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions, next_page_token }))
    }

    async fn update_session(&self, req: Request<pb::UpdateSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = UpdateSession::try_from(req.into_inner())?;
        Ok(Response::new(self.0.update_session(&tenant, cmd).await?.into()))
    }

    async fn close_session(&self, req: Request<pb::CloseSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let tenant = tenant(req.metadata())?;
        let pb::CloseSessionRequest { session_key } = req.into_inner();
        let key = convert::required_key("session_key", &session_key)?;
        Ok(Response::new(self.0.close_session(&tenant, key).await?.into()))
    }

    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let tenant = tenant(req.metadata())?;
        let trace_id = trace_id(req.metadata());
        let cmd = AppendEntries::from_proto(req.into_inner(), self.0.limits())?;
        let outcome = self.0.append(&tenant, cmd, trace_id).await?;
        let first_seq = outcome.entries.first().map_or(0, |e| e.seq);
        let last_seq = outcome.entries.last().map_or(0, |e| e.seq);
        let entries = outcome.entries.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::AppendEntriesResponse { first_seq, last_seq, entries }))
    }

    async fn list_entries(
        &self,
        req: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = ListEntries::try_from(req.into_inner())?;
        let (entries, next_page_token) = self.0.list_entries(&tenant, cmd).await?;
        let entries = entries.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListEntriesResponse { entries, next_page_token }))
    }

    type StreamEntriesStream = GrpcStream<pb::Entry>;

    async fn stream_entries(
        &self,
        req: Request<pb::StreamEntriesRequest>,
    ) -> Result<Response<Self::StreamEntriesStream>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = StreamEntries::try_from(req.into_inner())?;
        Ok(stream(self.0.stream_entries(&tenant, cmd).await?))
    }

    async fn get_context_window(
        &self,
        req: Request<pb::GetContextWindowRequest>,
    ) -> Result<Response<pb::GetContextWindowResponse>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = GetContextWindow::try_from(req.into_inner())?;
        Ok(Response::new(self.0.context_window(&tenant, cmd).await?.into()))
    }

    async fn search_entries(
        &self,
        req: Request<pb::SearchEntriesRequest>,
    ) -> Result<Response<pb::SearchEntriesResponse>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = SearchEntries::try_from(req.into_inner())?;
        let (hits, next_page_token) = self.0.search(&tenant, cmd).await?;
        let hits = hits.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::SearchEntriesResponse { hits, next_page_token }))
    }
}

/// `baton.v1.HandoffService`.
pub struct HandoffApi(pub Arc<Baton>);

impl HandoffApi {
    async fn change<R>(&self, req: Request<R>) -> Result<Response<pb::Handoff>, Status>
    where
        ChangeHandoff: TryFrom<R, Error = Error>,
    {
        let tenant = tenant(req.metadata())?;
        let cmd = ChangeHandoff::try_from(req.into_inner())?;
        Ok(Response::new(self.0.change_handoff(&tenant, cmd).await?.into()))
    }
}

#[tonic::async_trait]
impl pb::handoff_service_server::HandoffService for HandoffApi {
    async fn request_handoff(&self, req: Request<pb::RequestHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = RequestHandoff::try_from(req.into_inner())?;
        Ok(Response::new(self.0.request_handoff(&tenant, cmd).await?.into()))
    }

    async fn get_handoff(&self, req: Request<pb::GetHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        let tenant = tenant(req.metadata())?;
        let pb::GetHandoffRequest { handoff_id } = req.into_inner();
        let id = convert::handoff_id(&handoff_id)?;
        Ok(Response::new(self.0.get_handoff(&tenant, &id).await?.into()))
    }

    async fn list_handoffs(
        &self,
        req: Request<pb::ListHandoffsRequest>,
    ) -> Result<Response<pb::ListHandoffsResponse>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = ListHandoffs::try_from(req.into_inner())?;
        let (handoffs, next_page_token) = self.0.list_handoffs(&tenant, cmd).await?;
        let handoffs = handoffs.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListHandoffsResponse { handoffs, next_page_token }))
    }

    async fn accept_handoff(&self, req: Request<pb::AcceptHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        self.change(req).await
    }

    async fn reject_handoff(&self, req: Request<pb::RejectHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        self.change(req).await
    }

    async fn complete_handoff(
        &self,
        req: Request<pb::CompleteHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        self.change(req).await
    }

    async fn cancel_handoff(&self, req: Request<pb::CancelHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        self.change(req).await
    }

    type WatchHandoffsStream = GrpcStream<pb::HandoffEvent>;

    async fn watch_handoffs(
        &self,
        req: Request<pb::WatchHandoffsRequest>,
    ) -> Result<Response<Self::WatchHandoffsStream>, Status> {
        let tenant = tenant(req.metadata())?;
        let cmd = WatchHandoffs::try_from(req.into_inner())?;
        Ok(stream(self.0.watch_handoffs(&tenant, cmd).await?))
    }

    type StreamHandoffContextStream = GrpcStream<pb::Entry>;

    async fn stream_handoff_context(
        &self,
        req: Request<pb::StreamHandoffContextRequest>,
    ) -> Result<Response<Self::StreamHandoffContextStream>, Status> {
        let tenant = tenant(req.metadata())?;
        let pb::StreamHandoffContextRequest { handoff_id } = req.into_inner();
        let id = convert::handoff_id(&handoff_id)?;
        Ok(stream(self.0.stream_handoff_context(&tenant, &id).await?))
    }
}
