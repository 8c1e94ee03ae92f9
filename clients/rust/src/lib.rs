//! The Rust client of Baton: sessions, strictly ordered context entries and handoffs between
//! AI agents, over gRPC.
//!
//! [`Client`] wraps the tonic stubs that `baton-proto` generates, one method per RPC of
//! `baton.v1.ContextService` and `baton.v1.HandoffService`. Each takes the request message
//! (or a [`tonic::Request`] of it, to add metadata) and returns the response message; the
//! messages are re-exported as [`v1`]. Over the raw stubs it adds:
//!
//! - **Safe retries.** [`Client::append_entries`] and the creates ([`Client::create_session`],
//!   [`Client::fork_session`], [`Client::request_handoff`]) fill in an `idempotency_key` when
//!   the request has none. `UNAVAILABLE` and `RESOURCE_EXHAUSTED` answers and lost connections
//!   are retried with exponential backoff and jitter ([`RetryPolicy`]), after the server's
//!   `google.rpc.RetryInfo` delay when it sends one, always with the same key: a retried append
//!   never writes twice, a retried create returns what the first attempt created. Reads and
//!   the handoff transitions (repeated on a handoff already there, they return it unchanged)
//!   retry the same way; other writes are retried only when the server cannot have run them (it
//!   refused them, or the connection was never made).
//! - **Streams that resume.** [`Client::stream_entries`] and [`Client::watch_handoffs`]
//!   reconnect when the stream breaks with `UNAVAILABLE` (a server restart, a lost connection)
//!   and continue after the last seq or cursor they delivered: every entry or event arrives
//!   exactly once, in order.
//! - **One error type**, [`Error`], with the canonical code name (`"NOT_FOUND"`), the message
//!   and the `google.rpc.BadRequest` field violations.
//! - **Deadlines** on every call (10 s unless [`Builder::timeout`] says otherwise), the
//!   `x-baton-tenant` and `authorization: Bearer` headers, and W3C trace context: the current
//!   OpenTelemetry context (with `tracing-opentelemetry`, that of the current span) is sent
//!   with every call through [`baton_proto::trace::Propagate`].
//!
//! ```no_run
//! use baton_client::v1::{self, AppendEntriesRequest, CreateSessionRequest, NewEntry, StreamEntriesRequest};
//! use baton_client::{Client, Error};
//! use futures::StreamExt;
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::builder("127.0.0.1:50051").tenant("acme").connect().await?;
//! let session = client
//!     .create_session(CreateSessionRequest { agent: "planner".into(), ..Default::default() })
//!     .await?;
//! let appended = client
//!     .append_entries(AppendEntriesRequest {
//!         session_key: session.session_key.clone(),
//!         entries: vec![NewEntry {
//!             kind: v1::EntryKind::Message.into(),
//!             role: "assistant".into(),
//!             author: "planner".into(),
//!             content: Some(v1::new_entry::Content::Text("Plan: fetch, summarise, hand off".into())),
//!             ..Default::default()
//!         }],
//!         ..Default::default()
//!     })
//!     .await?;
//! assert_eq!(appended.last_seq, 1);
//!
//! // Follow the session: replays 1, 2, ... then waits for new entries, across server restarts.
//! let mut entries = client
//!     .stream_entries(StreamEntriesRequest { session_key: session.session_key, follow: true, ..Default::default() })
//!     .await?;
//! while let Some(entry) = entries.next().await {
//!     let entry = entry?;
//!     println!("{} {:?}", entry.seq, entry.content);
//! }
//! # Ok(()) }
//! ```
//!
//! Errors carry what the server said:
//!
//! ```no_run
//! # async fn demo(client: baton_client::Client) {
//! use baton_client::v1::GetSessionRequest;
//!
//! match client.get_session(GetSessionRequest { session_key: "nope".into() }).await {
//!     Err(e) if e.code_name() == "NOT_FOUND" => println!("no such session: {}", e.message()),
//!     Err(e) => {
//!         for (field, description) in e.field_violations() {
//!             println!("{field}: {description}");
//!         }
//!     }
//!     Ok(session) => println!("{session:?}"),
//! }
//! # }
//! ```
//!
//! ## Features
//!
//! - `tls` (off): TLS for `https://` targets with rustls (ring), trusting the system's roots or
//!   `Builder::ca_certificate`. Without it, an `https://` target is an [`Error::Config`].

#![warn(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::trace::Propagate;
use baton_proto::v1::context_service_client::ContextServiceClient;
use baton_proto::v1::handoff_service_client::HandoffServiceClient;
use futures::Stream;
use tokio::time::Instant;
use tonic::IntoRequest;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

mod builder;
mod error;
mod retry;
mod stream;

pub use builder::{Builder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT};
pub use error::{BoxError, Error, code_name};
pub use retry::RetryPolicy;
pub use tonic::Code;

use retry::{Failure, Idempotency, classify};
use v1::*;

/// The `baton.v1` messages and enums (re-exported from `baton-proto`).
pub mod v1 {
    pub use baton_proto::v1::*;
}

/// The request header naming the tenant.
pub const TENANT_HEADER: &str = "x-baton-tenant";

type ContextStub = ContextServiceClient<InterceptedService<Channel, Propagate>>;
type HandoffStub = HandoffServiceClient<InterceptedService<Channel, Propagate>>;

/// The log position headers of read-your-writes across a server's read replicas.
pub use baton_proto::position::{LSN_HEADER, MIN_LSN_HEADER};

/// Headers sent with every call (unless the call's own request sets them).
#[derive(Debug, Default)]
pub(crate) struct Headers {
    tenant: Option<MetadataValue<Ascii>>,
    authorization: Option<MetadataValue<Ascii>>,
    /// The highest `baton-lsn` any call of this client (and its clones) was answered with;
    /// 0 before the first.
    position: baton_proto::position::Highest,
}

/// A connection to `batond`: one method per RPC of ContextService and HandoffService.
///
/// Cheap to clone; clones share the connection (HTTP/2 multiplexes concurrent calls), so share
/// one client rather than connecting per call.
#[derive(Debug, Clone)]
pub struct Client {
    context: ContextStub,
    handoff: HandoffStub,
    headers: Arc<Headers>,
    timeout: Duration,
    retry: Arc<RetryPolicy>,
}

/// Defines a unary method: its doc, name (the stub's), stub field, request and response
/// types, and whether it may run twice.
macro_rules! unary {
    ($(#[$doc:meta])* $name:ident, $stub:ident, $req:ty => $resp:ty, $idempotency:ident) => {
        $(#[$doc])*
        pub async fn $name(&self, request: impl IntoRequest<$req>) -> Result<$resp, Error> {
            let stub = self.$stub.clone();
            let call = move |r| {
                let mut stub = stub.clone();
                async move { stub.$name(r).await }
            };
            self.unary(request.into_request(), Idempotency::$idempotency, call).await
        }
    };
}

/// Defines a unary method whose request carries an idempotency key: a fresh one (a UUIDv7)
/// when the caller gave none, sent on every retry, so the server acts once and the call is
/// retried like a read.
macro_rules! keyed {
    ($(#[$doc:meta])* $name:ident, $stub:ident, $req:ty => $resp:ty) => {
        $(#[$doc])*
        pub async fn $name(&self, request: impl IntoRequest<$req>) -> Result<$resp, Error> {
            let (metadata, extensions, mut message) = request.into_request().into_parts();
            if message.idempotency_key.is_empty() {
                message.idempotency_key = uuid::Uuid::now_v7().to_string();
            }
            let stub = self.$stub.clone();
            let call = move |r| {
                let mut stub = stub.clone();
                async move { stub.$name(r).await }
            };
            self.unary(tonic::Request::from_parts(metadata, extensions, message), Idempotency::Idempotent, call).await
        }
    };
}

impl Client {
    /// Connects to `target` (`host:port`; an `http://` or `https://` prefix is accepted) with
    /// the defaults: no tenant header, no API key, 10 s deadlines, [`RetryPolicy::default`].
    pub async fn connect(target: impl Into<String>) -> Result<Client, Error> {
        Builder::new(target).connect().await
    }

    /// A [`Builder`] for a client with a tenant, an API key, TLS, other deadlines or retries.
    pub fn builder(target: impl Into<String>) -> Builder {
        Builder::new(target)
    }

    /// A client sharing this one's connection whose calls have another deadline.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client { timeout, ..self.clone() }
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    // ---- ContextService ----

    keyed!(
        /// Opens a new session owned by the calling agent (`session_key` is generated when
        /// empty). A request without an `idempotency_key` gets a fresh one, sent on every
        /// retry: a retry after a lost answer returns the session the first attempt created.
        create_session, context, CreateSessionRequest => Session
    );
    unary!(
        /// Returns one session.
        get_session, context, GetSessionRequest => Session, Idempotent
    );
    unary!(
        /// Lists sessions, newest first, optionally filtered by agent and status.
        list_sessions, context, ListSessionsRequest => ListSessionsResponse, Idempotent
    );
    unary!(
        /// Changes a session's metadata, status or time to live, sets or lifts its legal hold
        /// (`legal_hold: Some(..)`, admin keys only) or replaces its retention; unset fields are
        /// left as they are.
        update_session, context, UpdateSessionRequest => Session, NotIdempotent
    );
    unary!(
        /// Closes a session: it stays readable but accepts no more entries.
        close_session, context, CloseSessionRequest => Session, NotIdempotent
    );

    keyed!(
        /// Appends a batch of entries atomically; they get consecutive sequence numbers.
        ///
        /// A request without an `idempotency_key` gets a fresh one (a UUIDv7), and every retry
        /// sends the same key, so the batch is stored once however often it is sent.
        append_entries, context, AppendEntriesRequest => AppendEntriesResponse
    );

    unary!(
        /// Lists a session's entries in sequence order, one page at a time.
        list_entries, context, ListEntriesRequest => ListEntriesResponse, Idempotent
    );

    /// Streams a session's entries after `after_seq` and, with `follow`, the ones appended
    /// later, each exactly once and in order.
    ///
    /// When the stream breaks with `UNAVAILABLE` or a lost connection, the client reconnects
    /// (per its [`RetryPolicy`]) and continues after the last seq it delivered, keeping
    /// `max_entries` for the whole stream. Errors opening the stream (`NOT_FOUND`, ...) are
    /// returned here; a later error ends the stream as its last item.
    pub async fn stream_entries(
        &self,
        request: impl IntoRequest<StreamEntriesRequest>,
    ) -> Result<impl Stream<Item = Result<Entry, Error>> + Send + Unpin + 'static, Error> {
        let stub = self.context.clone();
        let open = move |r| {
            let mut stub = stub.clone();
            async move { stub.stream_entries(r).await }
        };
        let resume = |original: &StreamEntriesRequest, last: u64, delivered: u64| {
            let mut next = original.clone();
            next.after_seq = last;
            if original.max_entries > 0 {
                let left = u64::from(original.max_entries).saturating_sub(delivered);
                next.max_entries = u32::try_from(left).ok().filter(|&n| n > 0)?;
            }
            Some(next)
        };
        stream::resumable(self.clone(), request.into_request(), open, |e: &Entry| e.seq, resume).await
    }

    unary!(
        /// Returns the newest entries that fit a token budget, after the latest summary entry.
        get_context_window, context, GetContextWindowRequest => GetContextWindowResponse, Idempotent
    );
    unary!(
        /// Full-text search over entries' text, best matches first.
        search_entries, context, SearchEntriesRequest => SearchEntriesResponse, Idempotent
    );

    unary!(
        /// Erases a session for good: its entries, handoffs and idempotency records. Followers'
        /// streams end with `NOT_FOUND`; `FAILED_PRECONDITION` while the session is under legal
        /// hold. Not retried after a lost connection: the session may be gone already.
        delete_session, context, DeleteSessionRequest => DeleteSessionResponse, NotIdempotent
    );
    keyed!(
        /// Starts a new session, owned by `agent`, whose entries 1..`at_seq` (0: the source's
        /// newest) are copies of another session's; its `forked_from` names the source and seq.
        /// Handoffs are not copied. Like `create_session` it carries an `idempotency_key`
        /// (fresh unless given), so a retry returns the first fork instead of making a second.
        fork_session, context, ForkSessionRequest => Session
    );
    unary!(
        /// Erases the content and metadata of the entries `seqs`: each keeps its seq, kind,
        /// role, author and timestamps and reads back with `redacted` set and a `redaction` (who,
        /// when, why). With `expected_last_seq` it redacts only while that is the session's
        /// newest seq (`FAILED_PRECONDITION` otherwise), to retract exactly the last entry.
        redact_entries, context, RedactEntriesRequest => RedactEntriesResponse, NotIdempotent
    );
    unary!(
        /// Removes the entries before `before_seq`; the session's `first_seq` moves to the
        /// oldest one kept, and reads below it fail with `OUT_OF_RANGE`. Removing the newest
        /// SUMMARY entry needs `force`.
        compact_session, context, CompactSessionRequest => Session, NotIdempotent
    );

    // ---- HandoffService ----

    keyed!(
        /// Asks another agent to take over or join the work on a session. It carries an
        /// `idempotency_key` (fresh unless given), so a retry returns the first handoff instead
        /// of requesting a second.
        request_handoff, handoff, RequestHandoffRequest => Handoff
    );
    unary!(
        /// Returns one handoff.
        get_handoff, handoff, GetHandoffRequest => Handoff, Idempotent
    );
    unary!(
        /// Lists handoffs, newest first, filtered by agents, session and status.
        list_handoffs, handoff, ListHandoffsRequest => ListHandoffsResponse, Idempotent
    );
    unary!(
        /// The target agent takes a pending handoff (a FULL_HANDOFF makes it the session's
        /// owner). Like the other transitions it is retried after a lost connection: repeated
        /// on a handoff already accepted, it returns it unchanged.
        accept_handoff, handoff, AcceptHandoffRequest => Handoff, Idempotent
    );
    unary!(
        /// The target agent declines a pending handoff.
        reject_handoff, handoff, RejectHandoffRequest => Handoff, Idempotent
    );
    unary!(
        /// The target agent marks an accepted handoff done.
        complete_handoff, handoff, CompleteHandoffRequest => Handoff, Idempotent
    );
    unary!(
        /// The requesting agent withdraws a pending or accepted handoff.
        cancel_handoff, handoff, CancelHandoffRequest => Handoff, Idempotent
    );

    /// An agent's handoff inbox: the pending handoffs addressed to it (or the events after
    /// `after_cursor`), then every later event of handoffs it sent or received, live.
    ///
    /// When the stream breaks with `UNAVAILABLE` or a lost connection, the client reconnects
    /// and resumes after the cursor of the last event it delivered, so each event arrives
    /// exactly once, in cursor order.
    pub async fn watch_handoffs(
        &self,
        request: impl IntoRequest<WatchHandoffsRequest>,
    ) -> Result<impl Stream<Item = Result<HandoffEvent, Error>> + Send + Unpin + 'static, Error> {
        let stub = self.handoff.clone();
        let open = move |r| {
            let mut stub = stub.clone();
            async move { stub.watch_handoffs(r).await }
        };
        let resume = |original: &WatchHandoffsRequest, last: u64, _delivered: u64| {
            Some(WatchHandoffsRequest { after_cursor: Some(last), ..original.clone() })
        };
        stream::resumable(self.clone(), request.into_request(), open, |e: &HandoffEvent| e.cursor, resume).await
    }

    /// The handoff's context package: the summary first (as a SUMMARY entry with seq 0), then
    /// the session's entries up to the handoff's `up_to_seq` that fit its token budget, in
    /// sequence order. Opening is retried like a read; the stream itself is finite and does not
    /// resume.
    pub async fn stream_handoff_context(
        &self,
        request: impl IntoRequest<StreamHandoffContextRequest>,
    ) -> Result<impl Stream<Item = Result<Entry, Error>> + Send + Unpin + 'static, Error> {
        let stub = self.handoff.clone();
        let open = move |r| {
            let mut stub = stub.clone();
            async move { stub.stream_handoff_context(r).await }
        };
        let streaming = self.attempts(request.into_request(), Idempotency::Idempotent, false, open).await?;
        Ok(stream::plain(streaming.into_inner()))
    }

    // ---- the call machinery ----

    /// Runs a unary call with the client's deadline and retries.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        request: tonic::Request<Req>,
        idempotency: Idempotency,
        call: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        Ok(self.attempts(request, idempotency, true, call).await?.into_inner())
    }

    /// Sends `request` until it succeeds, fails for good, runs out of attempts or would miss
    /// the deadline. `send_deadline` sends the remaining time as `grpc-timeout` (unary calls);
    /// streams only bound their opening by it.
    pub(crate) async fn attempts<Req, Resp, F, Fut>(
        &self,
        request: tonic::Request<Req>,
        idempotency: Idempotency,
        send_deadline: bool,
        call: F,
    ) -> Result<tonic::Response<Resp>, Error>
    where
        Req: Clone,
        F: Fn(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let (metadata, _, message) = request.into_parts();
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::deadline_exceeded(self.timeout_status()));
            }
            let request = self.request(&metadata, message.clone(), send_deadline.then_some(remaining));
            let status = match tokio::time::timeout(remaining, call(request)).await {
                Ok(Ok(response)) => {
                    self.headers.position.note(response.metadata());
                    return Ok(response);
                }
                Ok(Err(status)) => status,
                Err(_) => return Err(Error::deadline_exceeded(self.timeout_status())),
            };
            let failure = classify(&status);
            let wait = self.retry_wait(failure, idempotency, attempt);
            match wait {
                Some(wait) if Instant::now() + wait < deadline => tokio::time::sleep(wait).await,
                _ => return Err(failure_error(status, failure)),
            }
        }
    }

    /// The wait before the next attempt, or `None` when the call must not be retried.
    pub(crate) fn retry_wait(&self, failure: Failure, idempotency: Idempotency, attempt: u32) -> Option<Duration> {
        if attempt >= self.retry.max_attempts || !failure.retryable(idempotency) {
            return None;
        }
        Some(match failure {
            Failure::Refused { retry_after: Some(delay) } => delay,
            _ => self.retry.backoff(attempt),
        })
    }

    /// One attempt's request: the caller's metadata, then the client's headers where the
    /// caller set none, and the deadline.
    pub(crate) fn request<T>(
        &self,
        metadata: &MetadataMap,
        message: T,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::from_parts(metadata.clone(), tonic::Extensions::default(), message);
        let md = request.metadata_mut();
        if let Some(tenant) = &self.headers.tenant
            && !md.contains_key(TENANT_HEADER)
        {
            md.insert(TENANT_HEADER, tenant.clone());
        }
        if let Some(authorization) = &self.headers.authorization
            && !md.contains_key("authorization")
        {
            md.insert("authorization", authorization.clone());
        }
        self.headers.position.attach(md);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    }

    /// The highest log position the server has told this client (and its clones) of, as the
    /// `baton-lsn` header gives it; every call sends it back as `baton-min-lsn`, so reads
    /// served by a read replica reflect this client's own writes. `None` before the first
    /// write to a server with read replicas.
    pub fn log_position(&self) -> Option<String> {
        self.headers.position.get()
    }

    fn timeout_status(&self) -> tonic::Status {
        tonic::Status::deadline_exceeded(format!("no answer within the {:?} deadline", self.timeout))
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }
}

/// The error a failed attempt ends the call with: transport failures as [`Error::Transport`].
pub(crate) fn failure_error(status: tonic::Status, failure: Failure) -> Error {
    match failure {
        Failure::NotConnected | Failure::ConnectionLost => Error::transport(status),
        Failure::DeadlineExceeded => Error::deadline_exceeded(status),
        Failure::Refused { .. } | Failure::Fatal => Error::from(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_carry_tenant_authorization_and_deadline() {
        let client = Client::builder("127.0.0.1:1").tenant("acme").api_key("k1").connect_lazy().unwrap();
        let request = client.request(&MetadataMap::new(), (), Some(Duration::from_millis(1500)));
        let md = request.metadata();
        assert_eq!(md.get(TENANT_HEADER).unwrap(), "acme");
        assert_eq!(md.get("authorization").unwrap(), "Bearer k1");
        assert_eq!(md.get("grpc-timeout").unwrap(), "1500000u");

        // The call's own headers win over the client's.
        let mut own = MetadataMap::new();
        own.insert(TENANT_HEADER, "other".parse().unwrap());
        let request = client.request(&own, (), None);
        assert_eq!(request.metadata().get(TENANT_HEADER).unwrap(), "other");
        assert!(request.metadata().get("grpc-timeout").is_none());

        let bare = Client::builder("127.0.0.1:1").connect_lazy().unwrap();
        let request = bare.request(&MetadataMap::new(), (), None);
        assert!(request.metadata().is_empty());
    }

    #[tokio::test]
    async fn retry_waits_follow_the_policy() {
        let client = Client::builder("127.0.0.1:1").retry(RetryPolicy::none()).connect_lazy().unwrap();
        assert_eq!(client.retry_wait(Failure::NotConnected, Idempotency::Idempotent, 1), None);
        let client = Client::builder("127.0.0.1:1").connect_lazy().unwrap();
        let wait = client.retry_wait(
            Failure::Refused { retry_after: Some(Duration::from_millis(500)) },
            Idempotency::NotIdempotent,
            1,
        );
        assert_eq!(wait, Some(Duration::from_millis(500)));
        assert!(client.retry_wait(Failure::ConnectionLost, Idempotency::NotIdempotent, 1).is_none());
        assert!(client.retry_wait(Failure::ConnectionLost, Idempotency::Idempotent, 4).is_some());
        assert!(client.retry_wait(Failure::ConnectionLost, Idempotency::Idempotent, 5).is_none());
        assert!(client.retry_wait(Failure::Fatal, Idempotency::Idempotent, 1).is_none());
    }
}
