//! Live follows behind resource subscriptions: StreamEntries(follow) on a session, reopened
//! from the last seen seq after a failure, calling back once per new entry.

use std::future::Future;

use prost_reflect::{DynamicMessage, Value};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::calls::{GET_SESSION, Gateway, backoff};
use crate::grpc::CallContext;

/// The RPC that follows a session's appends.
pub const STREAM_ENTRIES: &str = "baton.v1.ContextService.StreamEntries";

/// The session's `last_seq` now, or why it cannot be read.
pub async fn last_seq(gateway: &Gateway, ctx: &CallContext, session_key: &str) -> Result<u64, tonic::Status> {
    seq_field(gateway, ctx, session_key, "last_seq").await
}

/// A seq field of the session (`last_seq`, `first_seq`) now.
async fn seq_field(gateway: &Gateway, ctx: &CallContext, session_key: &str, field: &str) -> Result<u64, tonic::Status> {
    let method = gateway.method(GET_SESSION)?;
    let mut request = DynamicMessage::new(method.input());
    request.set_field_by_name("session_key", Value::String(session_key.to_owned()));
    let session = gateway.backend().unary(&method, request, ctx).await?;
    Ok(session.get_field_by_name(field).and_then(|v| v.as_u64()).unwrap_or(0))
}

/// Follows `session_key` from `after_seq` until `cancel` fires, `on_update` returns false (the
/// subscriber is gone) or the session disappears. Each new entry calls `on_update` once with
/// its seq; a broken stream is reopened after the last entry seen, so nothing is skipped or
/// repeated. Two more changes call it once: the session was deleted (the follow then ends), and
/// entries not yet seen were compacted away while the stream was down (OUT_OF_RANGE on
/// reopening; the follow goes on from the session's `first_seq`).
pub async fn follow_session<F, Fut>(
    gateway: Gateway,
    ctx: CallContext,
    session_key: String,
    mut after_seq: u64,
    cancel: CancellationToken,
    on_update: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let method = match gateway.method(STREAM_ENTRIES) {
        Ok(m) => m,
        Err(status) => {
            tracing::error!(%status, "cannot follow sessions");
            return;
        }
    };
    let mut attempt = 0u32;
    loop {
        let mut request = DynamicMessage::new(method.input());
        request.set_field_by_name("session_key", Value::String(session_key.clone()));
        request.set_field_by_name("after_seq", Value::U64(after_seq));
        request.set_field_by_name("follow", Value::Bool(true));
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            opened = gateway.backend().server_streaming(&method, request, &ctx, None) => opened,
        };
        let failure = match opened {
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return stream.stop(),
                    next = stream.message() => next,
                };
                match next {
                    Ok(Some(entry)) => {
                        attempt = 0;
                        after_seq = entry.get_field_by_name("seq").and_then(|v| v.as_u64()).unwrap_or(after_seq);
                        if !on_update(after_seq).await {
                            return;
                        }
                    }
                    Ok(None) => break None,
                    Err(status) => break Some(status),
                }
            },
            Err(status) => Some(status),
        };
        if let Some(status) = failure {
            tracing::debug!(%status, session_key, "session follow interrupted");
            let recovery = tokio::select! {
                _ = cancel.cancelled() => return,
                recovery = recover(&gateway, &ctx, &session_key, after_seq, &status) => recovery,
            };
            match recovery {
                Recovery::Retry => {}
                Recovery::Resume(first_kept) => {
                    tracing::info!(session_key, after_seq, first_kept, "entries were compacted away; following on");
                    after_seq = first_kept - 1;
                    attempt = 0;
                    if !on_update(after_seq).await {
                        return;
                    }
                    continue;
                }
                Recovery::Gone => {
                    tracing::info!(%status, session_key, "the session was deleted; subscription ended");
                    on_update(after_seq).await;
                    return;
                }
                Recovery::Stop => {
                    tracing::info!(%status, session_key, "subscription ended");
                    return;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff(attempt)) => {}
        }
        attempt = attempt.saturating_add(1);
    }
}

/// What a follow does after its stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Reopen after a backoff.
    Retry,
    /// Reopen now, from the oldest entry still stored (this `first_seq`).
    Resume(u64),
    /// The session no longer exists.
    Gone,
    /// A failure that retrying cannot fix.
    Stop,
}

async fn recover(
    gateway: &Gateway,
    ctx: &CallContext,
    session_key: &str,
    after_seq: u64,
    status: &tonic::Status,
) -> Recovery {
    match status.code() {
        Code::NotFound => Recovery::Gone,
        Code::OutOfRange => match seq_field(gateway, ctx, session_key, "first_seq").await {
            // Only forward: a first_seq the follow is already past cannot explain the refusal.
            Ok(first_kept) if first_kept > after_seq + 1 => Recovery::Resume(first_kept),
            Ok(_) => Recovery::Retry,
            Err(s) => classify(s.code()),
        },
        code => classify(code),
    }
}

fn classify(code: Code) -> Recovery {
    match code {
        Code::NotFound => Recovery::Gone,
        Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument | Code::Unimplemented => Recovery::Stop,
        _ => Recovery::Retry,
    }
}
