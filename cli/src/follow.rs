//! Streams followed until Ctrl-C (`tail`, `watch`).
//!
//! The client already resumes a broken stream after the last seq or cursor it delivered, within
//! its retry policy and deadline. A person tailing a session expects more: to keep waiting
//! through a restart that takes longer. So when the stream ends with UNAVAILABLE (or the
//! client's reconnection ran out of time), this loop reopens it after the last position
//! printed, backing off up to [`MAX_WAIT`], until it succeeds or Ctrl-C. Errors opening the
//! first stream (an unknown session, a bad key) end the command.

use std::future::Future;
use std::time::Duration;

use baton_client::{Code, Error};
use futures::{Stream, StreamExt};

use crate::Failure;

/// The longest wait between two reconnection attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
const FIRST_WAIT: Duration = Duration::from_millis(500);

/// Whether a broken stream is worth reopening: the server went away or did not answer in time.
fn resumable(e: &Error) -> bool {
    matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded)
}

/// Opens the stream with `open(None)`, hands every item to `emit`, and reopens it with
/// `open(Some(last position emitted))` after a break. Returns when the stream ends, on Ctrl-C
/// (both a success), or with the first error that is not a break.
pub async fn follow<T, S, Open, Fut>(
    mut open: Open,
    position: fn(&T) -> u64,
    mut emit: impl FnMut(&T) -> std::io::Result<()>,
) -> Result<(), Failure>
where
    Open: FnMut(Option<u64>) -> Fut,
    Fut: Future<Output = Result<S, Error>>,
    S: Stream<Item = Result<T, Error>> + Unpin,
{
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut stream = tokio::select! {
        _ = &mut interrupted => return Ok(()),
        opened = open(None) => opened?,
    };
    let mut last = None;
    loop {
        let item = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            item = stream.next() => item,
        };
        let broken = match item {
            None => return Ok(()),
            Some(Ok(item)) => {
                last = Some(position(&item));
                emit(&item)?;
                continue;
            }
            Some(Err(e)) if resumable(&e) => e,
            Some(Err(e)) => return Err(e.into()),
        };
        eprintln!("batonctl: the stream broke ({}: {}); reconnecting", broken.code_name(), broken.message());
        let mut wait = FIRST_WAIT;
        stream = loop {
            tokio::select! {
                _ = &mut interrupted => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            let reopened = tokio::select! {
                _ = &mut interrupted => return Ok(()),
                reopened = open(last) => reopened,
            };
            match reopened {
                Ok(stream) => break stream,
                Err(e) if resumable(&e) => {
                    wait = (wait * 2).min(MAX_WAIT);
                    eprintln!("batonctl: still unreachable ({}: {}); retrying in {wait:?}", e.code_name(), e.message());
                }
                Err(e) => return Err(e.into()),
            }
        };
        eprintln!("batonctl: reconnected");
    }
}
