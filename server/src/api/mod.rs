//! The gRPC surface: thin tonic handlers. Each one takes the request context (tenant, trace)
//! and principal that [`ContextLayer`] authenticated (checking the agent a bound key may act
//! as, and taking a stream's place in its caps), converts the request into a domain command (`requests`),
//! calls `Baton`, and converts the result back (`crate::wire`); errors map to statuses in one
//! place (`status`).

use std::pin::Pin;
use std::sync::Arc;

use baton_proto::encoded;
use baton_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::StreamPermit;
use crate::domain::commands::*;
use crate::domain::service::{Baton, ItemStream};
use crate::domain::{Error, Result};

mod context;
mod requests;
mod status;

pub use crate::auth::{DEFAULT_TENANT, TENANT_HEADER};
pub use context::{ContextLayer, RequestContext, context};

/// A server stream of proto messages.
pub type GrpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A domain item stream as a gRPC stream; `permit` holds the stream's place in its caps
/// until the stream is dropped.
fn stream<T, P>(rx: ItemStream<T>, permit: Option<StreamPermit>) -> Response<GrpcStream<P>>
where
    T: Into<P> + Send + 'static,
    P: Send + 'static,
{
    let s = ReceiverStream::new(rx).map(move |item| {
        let _held = &permit;
        (*item).map(Into::into).map_err(Status::from)
    });
    Response::new(Box::pin(s))
}

/// `baton.v1.ContextService` (windows answer from the entries' kept encodings: see
/// `baton_proto::encoded`).
pub struct ContextApi(pub Arc<Baton>);

#[tonic::async_trait]
impl encoded::server::context_service_server::ContextService for ContextApi {
    async fn create_session(&self, req: Request<pb::CreateSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let ctx = context(&req)?;
        let cmd = CreateSession::try_from(req.into_inner())?;
        ctx.act_as("agent", &cmd.agent)?;
        Ok(Response::new(self.0.create_session(&ctx.tenant, cmd).await?.into()))
    }

    async fn get_session(&self, req: Request<pb::GetSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let ctx = context(&req)?;
        let pb::GetSessionRequest { session_key } = req.into_inner();
        let key = requests::required_key("session_key", &session_key)?;
        Ok(Response::new(self.0.get_session(&ctx.tenant, &key).await?.into()))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let ctx = context(&req)?;
        let cmd = ListSessions::try_from((req.into_inner(), ctx.tenant.as_str()))?;
        let (sessions, next_page_token) = self.0.list_sessions(&ctx.tenant, cmd).await?;
        let sessions = sessions.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions, next_page_token }))
    }

    async fn update_session(&self, req: Request<pb::UpdateSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let ctx = context(&req)?;
        let cmd = UpdateSession::try_from(req.into_inner())?;
        Ok(Response::new(self.0.update_session_as(&ctx.tenant, &ctx.principal, cmd).await?.into()))
    }

    async fn close_session(&self, req: Request<pb::CloseSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let ctx = context(&req)?;
        let pb::CloseSessionRequest { session_key } = req.into_inner();
        let key = requests::required_key("session_key", &session_key)?;
        Ok(Response::new(self.0.close_session(&ctx.tenant, key).await?.into()))
    }

    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let ctx = context(&req)?;
        let cmd = AppendEntries::from_proto(req.into_inner(), self.0.limits())?;
        for (i, e) in cmd.entries.iter().enumerate() {
            ctx.act_as(&format!("entries[{i}].author"), &e.author)?;
        }
        let outcome = self.0.append(&ctx.tenant, cmd, ctx.trace_id()).await?;
        let first_seq = outcome.entries.first().map_or(0, |e| e.seq);
        let last_seq = outcome.entries.last().map_or(0, |e| e.seq);
        let entries = outcome.entries.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::AppendEntriesResponse { first_seq, last_seq, entries }))
    }

    async fn list_entries(&self, req: Request<pb::ListEntriesRequest>) -> Result<Response<encoded::EntryPage>, Status> {
        let ctx = context(&req)?;
        let cmd = ListEntries::try_from((req.into_inner(), ctx.tenant.as_str()))?;
        let (entries, next_page_token) = self.0.list_entries(&ctx.tenant, cmd).await?;
        let entries = entries.into_iter().map(crate::wire::wire).collect();
        Ok(Response::new(encoded::EntryPage { entries, next_page_token }))
    }

    type StreamEntriesStream = GrpcStream<encoded::WireEntry>;

    async fn stream_entries(
        &self,
        req: Request<pb::StreamEntriesRequest>,
    ) -> Result<Response<Self::StreamEntriesStream>, Status> {
        let ctx = context(&req)?;
        let cmd = StreamEntries::try_from(req.into_inner())?;
        let permit = ctx.open_stream()?;
        Ok(stream(self.0.stream_entries(&ctx.tenant, cmd).await?, permit))
    }

    async fn get_context_window(
        &self,
        req: Request<pb::GetContextWindowRequest>,
    ) -> Result<Response<encoded::ContextWindowResponse>, Status> {
        let ctx = context(&req)?;
        let cmd = GetContextWindow::try_from(req.into_inner())?;
        Ok(Response::new(self.0.context_window(&ctx.tenant, cmd).await?.into()))
    }

    async fn search_entries(
        &self,
        req: Request<pb::SearchEntriesRequest>,
    ) -> Result<Response<pb::SearchEntriesResponse>, Status> {
        let ctx = context(&req)?;
        let cmd = SearchEntries::try_from((req.into_inner(), ctx.tenant.as_str()))?;
        let (hits, next_page_token) = self.0.search(&ctx.tenant, cmd).await?;
        let hits = hits.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::SearchEntriesResponse { hits, next_page_token }))
    }
    async fn delete_session(
        &self,
        req: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let ctx = context(&req)?;
        let pb::DeleteSessionRequest { session_key } = req.into_inner();
        let key = requests::required_key("session_key", &session_key)?;
        let deleted_entries = self.0.delete_session(&ctx.tenant, &ctx.principal, &key).await?;
        Ok(Response::new(pb::DeleteSessionResponse { deleted_entries }))
    }

    async fn fork_session(&self, req: Request<pb::ForkSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let ctx = context(&req)?;
        let cmd = ForkSession::try_from(req.into_inner())?;
        ctx.act_as("agent", &cmd.agent)?;
        Ok(Response::new(self.0.fork_session(&ctx.tenant, &ctx.principal, cmd).await?.into()))
    }

    async fn redact_entries(
        &self,
        req: Request<pb::RedactEntriesRequest>,
    ) -> Result<Response<pb::RedactEntriesResponse>, Status> {
        let ctx = context(&req)?;
        let cmd = RedactEntries::try_from(req.into_inner())?;
        ctx.act_as("agent", &cmd.agent)?;
        let entries = self.0.redact_entries(&ctx.tenant, &ctx.principal, cmd).await?;
        Ok(Response::new(pb::RedactEntriesResponse { entries: entries.into_iter().map(Into::into).collect() }))
    }

    async fn compact_session(&self, req: Request<pb::CompactSessionRequest>) -> Result<Response<pb::Session>, Status> {
        let ctx = context(&req)?;
        let cmd = CompactSession::try_from(req.into_inner())?;
        Ok(Response::new(self.0.compact_session(&ctx.tenant, &ctx.principal, cmd).await?.into()))
    }
}

/// `baton.v1.HandoffService`.
pub struct HandoffApi(pub Arc<Baton>);

impl HandoffApi {
    async fn change<R>(&self, req: Request<R>) -> Result<Response<pb::Handoff>, Status>
    where
        ChangeHandoff: TryFrom<R, Error = Error>,
    {
        let ctx = context(&req)?;
        let cmd = ChangeHandoff::try_from(req.into_inner())?;
        ctx.act_as("agent", &cmd.agent)?;
        Ok(Response::new(self.0.change_handoff(&ctx.tenant, cmd).await?.into()))
    }
}

#[tonic::async_trait]
impl pb::handoff_service_server::HandoffService for HandoffApi {
    async fn request_handoff(&self, req: Request<pb::RequestHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        let ctx = context(&req)?;
        let cmd = RequestHandoff::try_from(req.into_inner())?;
        ctx.act_as("from_agent", &cmd.from_agent)?;
        Ok(Response::new(self.0.request_handoff(&ctx.tenant, cmd).await?.into()))
    }

    async fn get_handoff(&self, req: Request<pb::GetHandoffRequest>) -> Result<Response<pb::Handoff>, Status> {
        let ctx = context(&req)?;
        let pb::GetHandoffRequest { handoff_id } = req.into_inner();
        let id = requests::handoff_id(&handoff_id)?;
        Ok(Response::new(self.0.get_handoff(&ctx.tenant, &id).await?.into()))
    }

    async fn list_handoffs(
        &self,
        req: Request<pb::ListHandoffsRequest>,
    ) -> Result<Response<pb::ListHandoffsResponse>, Status> {
        let ctx = context(&req)?;
        let cmd = ListHandoffs::try_from((req.into_inner(), ctx.tenant.as_str()))?;
        let (handoffs, next_page_token) = self.0.list_handoffs(&ctx.tenant, cmd).await?;
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
        let ctx = context(&req)?;
        let cmd = WatchHandoffs::try_from(req.into_inner())?;
        ctx.act_as("agent", &cmd.agent)?;
        let permit = ctx.open_stream()?;
        Ok(stream(self.0.watch_handoffs(&ctx.tenant, cmd).await?, permit))
    }

    type StreamHandoffContextStream = GrpcStream<pb::Entry>;

    async fn stream_handoff_context(
        &self,
        req: Request<pb::StreamHandoffContextRequest>,
    ) -> Result<Response<Self::StreamHandoffContextStream>, Status> {
        let ctx = context(&req)?;
        let pb::StreamHandoffContextRequest { handoff_id } = req.into_inner();
        let id = requests::handoff_id(&handoff_id)?;
        let permit = ctx.open_stream()?;
        Ok(stream(self.0.stream_handoff_context(&ctx.tenant, &id).await?, permit))
    }
}
