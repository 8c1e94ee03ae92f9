//! Server streams as [`futures::Stream`]s, and the resuming ones behind `stream_entries` and
//! `watch_handoffs`.

use std::future::Future;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::time::Instant;
use tonic::Streaming;
use tonic::metadata::MetadataMap;

use crate::retry::{Failure, Idempotency, classify};
use crate::{Client, Error, failure_error};

/// A finite server stream, its statuses turned into [`Error`]s.
pub(crate) fn plain<T: Send + 'static>(streaming: Streaming<T>) -> BoxStream<'static, Result<T, Error>> {
    streaming
        .map(|item| {
            item.map_err(|status| {
                let failure = classify(&status);
                failure_error(status, failure)
            })
        })
        .boxed()
}

fn with_metadata<T>(metadata: &MetadataMap, message: T) -> tonic::Request<T> {
    tonic::Request::from_parts(metadata.clone(), tonic::Extensions::default(), message)
}

/// Opens one attempt of a stream.
type Opener<Req, T> = Box<
    dyn Fn(tonic::Request<Req>) -> BoxFuture<'static, Result<tonic::Response<Streaming<T>>, tonic::Status>>
        + Send
        + Sync,
>;

/// A stream that resumes: what it needs to reconnect, and how far it got.
struct Resumable<Req, T> {
    client: Client,
    metadata: MetadataMap,
    /// The caller's request, kept to derive each reconnection's request from.
    original: Req,
    open: Opener<Req, T>,
    /// The position (seq, cursor) of an item.
    position: fn(&T) -> u64,
    /// The request that continues after position `last`, having delivered `delivered`
    /// items; `None` when the stream is complete (its item limit reached).
    resume: fn(&Req, u64, u64) -> Option<Req>,
    current: Option<Streaming<T>>,
    opened_at: Instant,
    last: Option<u64>,
    delivered: u64,
    /// Consecutive breaks with no item and little time in between.
    breaks: u32,
    finished: bool,
}

/// Opens a stream that reconnects when it breaks with UNAVAILABLE or a lost connection, and
/// continues after the position (seq, cursor) of the last item it delivered. Items at or
/// before that position are dropped, so each is delivered once, in order.
pub(crate) async fn resumable<Req, T, Open, Fut>(
    client: Client,
    request: tonic::Request<Req>,
    open: Open,
    position: fn(&T) -> u64,
    resume: fn(&Req, u64, u64) -> Option<Req>,
) -> Result<BoxStream<'static, Result<T, Error>>, Error>
where
    Req: Clone + Send + Sync + 'static,
    T: Send + 'static,
    Open: Fn(tonic::Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<Streaming<T>>, tonic::Status>> + Send + 'static,
{
    let open: Opener<Req, T> = Box::new(move |r| open(r).boxed());
    let (metadata, _, original) = request.into_parts();
    let first =
        client.attempts(with_metadata(&metadata, original.clone()), Idempotency::Idempotent, false, &open).await?;
    let state = Resumable {
        client,
        metadata,
        original,
        open,
        position,
        resume,
        current: Some(first.into_inner()),
        opened_at: Instant::now(),
        last: None,
        delivered: 0,
        breaks: 0,
        finished: false,
    };
    Ok(stream::unfold(state, Resumable::next).boxed())
}

impl<Req: Clone + Send + Sync + 'static, T: Send + 'static> Resumable<Req, T> {
    /// The next item: reconnects as often as the retry policy allows.
    async fn next(mut st: Self) -> Option<(Result<T, Error>, Self)> {
        loop {
            if st.finished {
                return None;
            }
            let Some(current) = st.current.as_mut() else {
                let request = match st.last {
                    None => st.original.clone(),
                    Some(last) => (st.resume)(&st.original, last, st.delivered)?,
                };
                let request = with_metadata(&st.metadata, request);
                let reopened = st.client.attempts(request, Idempotency::Idempotent, false, &st.open).await;
                match reopened {
                    Ok(response) => {
                        st.current = Some(response.into_inner());
                        st.opened_at = Instant::now();
                    }
                    Err(e) => {
                        st.finished = true;
                        return Some((Err(e), st));
                    }
                }
                continue;
            };
            match current.message().await {
                Ok(Some(item)) => {
                    let position = (st.position)(&item);
                    if st.last.is_some_and(|last| position <= last) {
                        continue;
                    }
                    st.last = Some(position);
                    st.delivered += 1;
                    st.breaks = 0;
                    return Some((Ok(item), st));
                }
                Ok(None) => return None,
                Err(status) => {
                    let failure = classify(&status);
                    let policy = st.client.retry_policy();
                    // A stream that ran for a while before breaking starts a new series of breaks.
                    if st.opened_at.elapsed() >= policy.max_backoff {
                        st.breaks = 0;
                    }
                    st.breaks += 1;
                    let wait = match failure {
                        Failure::Refused { .. } | Failure::NotConnected | Failure::ConnectionLost => {
                            st.client.retry_wait(failure, Idempotency::Idempotent, st.breaks)
                        }
                        Failure::DeadlineExceeded | Failure::Fatal => None,
                    };
                    match wait {
                        Some(wait) => {
                            st.current = None;
                            tokio::time::sleep(wait).await;
                        }
                        None => {
                            st.finished = true;
                            return Some((Err(failure_error(status, failure)), st));
                        }
                    }
                }
            }
        }
    }
}
