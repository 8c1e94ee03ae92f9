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
    let method = gateway.method(GET_SESSION)?;
    let mut request = DynamicMessage::new(method.input());
    request.set_field_by_name("session_key", Value::String(session_key.to_owned()));
    let session = gateway.backend().unary(&method, request, ctx).await?;
    Ok(session.get_field_by_name("last_seq").and_then(|v| v.as_u64()).unwrap_or(0))
}

/// Follows `session_key` from `after_seq` until `cancel` fires, `on_entry` returns false (the
/// subscriber is gone) or the session disappears. Each new entry calls `on_entry` once; a
/// broken stream is reopened after the last entry seen, so nothing is skipped or repeated.
pub async fn follow_session<F, Fut>(
    gateway: Gateway,
    ctx: CallContext,
    session_key: String,
    mut after_seq: u64,
    cancel: CancellationToken,
    on_entry: F,
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
        match opened {
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return stream.stop(),
                    next = stream.message() => next,
                };
                match next {
                    Ok(Some(entry)) => {
                        attempt = 0;
                        after_seq = entry.get_field_by_name("seq").and_then(|v| v.as_u64()).unwrap_or(after_seq);
                        if !on_entry(after_seq).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, session_key, "session follow interrupted");
                        if stop_for(status.code()) {
                            return;
                        }
                        break;
                    }
                }
            },
            Err(status) => {
                tracing::debug!(%status, session_key, "cannot open a session follow");
                if stop_for(status.code()) {
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

/// Failures that retrying cannot fix.
fn stop_for(code: Code) -> bool {
    matches!(
        code,
        Code::NotFound | Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument | Code::Unimplemented
    )
}
