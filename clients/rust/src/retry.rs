//! When a failed call is tried again, and how long the client waits first.

use std::time::Duration;

use rand::Rng;
use tonic::Code;
use tonic_types::StatusExt;

/// How failed calls are retried: exponential backoff with jitter, `google.rpc.RetryInfo`
/// taking precedence when the server sends it.
///
/// Only `UNAVAILABLE` and `RESOURCE_EXHAUSTED` answers and connections that fail or are lost
/// are retried; every other code is returned at once. A call is abandoned when its deadline
/// would pass before the next attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The wait before the first retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The factor the wait grows by after each attempt.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts, waiting about 100 ms, 200 ms, 400 ms, 800 ms (at most 5 s) in between.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..Self::default() }
    }

    /// The wait before attempt `attempt + 1` after `attempt` failed attempts (1-based):
    /// `initial * multiplier^(attempt-1)`, capped, then drawn uniformly from its upper half so
    /// that clients that failed together do not retry together.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
        let capped = self.initial_backoff.mul_f64(exp.min(1e9)).min(self.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Whether a call may run twice: reads and idempotent appends may be retried even after the
/// connection was lost mid-call; other writes only when the server is known not to have run
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    Idempotent,
    NotIdempotent,
}

/// What a failed attempt means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered UNAVAILABLE or RESOURCE_EXHAUSTED: it did not do the work.
    Refused { retry_after: Option<Duration> },
    /// The connection could not be made: the request never left.
    NotConnected,
    /// The connection broke while the call was in flight: the server may have done the work.
    ConnectionLost,
    /// The call's deadline passed (tonic enforces the `grpc-timeout` it sends, too).
    DeadlineExceeded,
    /// Anything else: not retried.
    Fatal,
}

impl Failure {
    /// Whether a call of this idempotency may be retried after this failure.
    pub(crate) fn retryable(self, idempotency: Idempotency) -> bool {
        match self {
            Failure::Refused { .. } | Failure::NotConnected => true,
            Failure::ConnectionLost => idempotency == Idempotency::Idempotent,
            Failure::DeadlineExceeded | Failure::Fatal => false,
        }
    }
}

/// Classifies a failed attempt. A status the server sent carries no error source; one made on
/// the client from a transport failure does (hyper, h2 or I/O errors in its chain).
pub(crate) fn classify(status: &tonic::Status) -> Failure {
    let source = std::error::Error::source(status);
    match (status.code(), source) {
        (Code::Unavailable | Code::ResourceExhausted, None) => {
            Failure::Refused { retry_after: status.get_details_retry_info().and_then(|r| r.retry_delay) }
        }
        (Code::Unknown | Code::Unavailable | Code::Internal | Code::Cancelled, Some(source)) => {
            if in_chain(source, |e| e.is::<tonic::TimeoutExpired>()) {
                Failure::DeadlineExceeded
            } else if in_chain(source, never_connected) {
                Failure::NotConnected
            } else {
                Failure::ConnectionLost
            }
        }
        _ => Failure::Fatal,
    }
}

/// Whether `test` holds for `error` or any error in its source chain.
fn in_chain(
    error: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if test(e) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether an error says the connection was never established (refused, unreachable, connect
/// timeout) or the request never sent, so it cannot have reached the server.
fn never_connected(e: &(dyn std::error::Error + 'static)) -> bool {
    // tonic wraps every failure of its connector (refused, unreachable, timed out) in this.
    if e.is::<tonic::ConnectError>() {
        return true;
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        if matches!(io.kind(), ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable) {
            return true;
        }
    }
    // hyper cancels the requests it had not sent yet when their connection closes.
    e.to_string().starts_with("operation was canceled")
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            multiplier: 2.0,
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = p.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            let capped = p.backoff(9);
            assert!(capped >= Duration::from_millis(350) && capped <= Duration::from_millis(700), "{capped:?}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(2)).collect();
        assert!(draws.len() > 1, "backoff has no jitter");
    }

    #[test]
    fn server_refusals_are_retried_with_their_retry_info() {
        let details = ErrorDetails::with_retry_info(Some(Duration::from_millis(500)));
        let status = tonic::Status::with_error_details(Code::Unavailable, "restarting", details);
        assert_eq!(classify(&status), Failure::Refused { retry_after: Some(Duration::from_millis(500)) });
        assert_eq!(classify(&tonic::Status::resource_exhausted("slow down")), Failure::Refused { retry_after: None });
        for code in [Code::NotFound, Code::InvalidArgument, Code::Unknown, Code::DeadlineExceeded, Code::Internal] {
            assert_eq!(classify(&tonic::Status::new(code, "no")), Failure::Fatal, "{code:?}");
        }
    }

    #[test]
    fn transport_failures_are_told_apart() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = tonic::Status::from_error(Box::new(refused));
        assert_eq!(classify(&status), Failure::NotConnected);
        let connect = tonic::ConnectError(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        let status = tonic::Status::from_error(Box::new(connect));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(classify(&status), Failure::NotConnected);
        let status = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(classify(&status), Failure::DeadlineExceeded);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let status = tonic::Status::from_error(Box::new(reset));
        assert_eq!(classify(&status), Failure::ConnectionLost);
        assert!(Failure::ConnectionLost.retryable(Idempotency::Idempotent));
        assert!(!Failure::ConnectionLost.retryable(Idempotency::NotIdempotent));
        assert!(Failure::NotConnected.retryable(Idempotency::NotIdempotent));
    }
}
