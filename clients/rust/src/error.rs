//! The one error type of the client, and the canonical names of gRPC codes.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

/// A boxed error source, as transport failures carry it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a call can fail with.
///
/// [`code`](Error::code) and [`code_name`](Error::code_name) give the canonical gRPC code of
/// every variant, so most callers match on those; [`field_violations`](Error::field_violations)
/// lists what was wrong with an `INVALID_ARGUMENT` request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a gRPC status other than OK, or the client gave up on its own
    /// deadline (`DEADLINE_EXCEEDED`).
    #[error("{}: {message}", code_name(*.code))]
    Status {
        /// The status code.
        code: Code,
        /// The server's message.
        message: String,
        /// The `google.rpc.BadRequest` field violations, as (field, description) pairs.
        field_violations: Vec<(String, String)>,
        /// The full status, with its metadata and binary details.
        status: Box<tonic::Status>,
    },
    /// The connection failed or was lost before an answer came (code `UNAVAILABLE`).
    #[error("transport error: {message}")]
    Transport {
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The client was configured wrongly: a bad target, tenant or API key (code
    /// `INVALID_ARGUMENT`).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The canonical gRPC code: the server's for [`Error::Status`], `UNAVAILABLE` for
    /// [`Error::Transport`], `INVALID_ARGUMENT` for [`Error::Config`].
    pub fn code(&self) -> Code {
        match self {
            Error::Status { code, .. } => *code,
            Error::Transport { .. } => Code::Unavailable,
            Error::Config(_) => Code::InvalidArgument,
        }
    }

    /// The canonical name of [`code`](Error::code), e.g. `"NOT_FOUND"`.
    pub fn code_name(&self) -> &'static str {
        code_name(self.code())
    }

    /// The error's message without the code.
    pub fn message(&self) -> String {
        match self {
            Error::Status { message, .. } | Error::Transport { message, .. } => message.clone(),
            Error::Config(message) => message.clone(),
        }
    }

    /// The field violations of a `google.rpc.BadRequest` detail, as (field, description) pairs
    /// (empty unless the server sent one, as it does with `INVALID_ARGUMENT`).
    pub fn field_violations(&self) -> &[(String, String)] {
        match self {
            Error::Status { field_violations, .. } => field_violations,
            _ => &[],
        }
    }

    /// The gRPC status the server answered with, if it answered.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// How long the server asked the client to wait before retrying (`google.rpc.RetryInfo`).
    pub fn retry_delay(&self) -> Option<Duration> {
        self.status().and_then(|s| s.get_details_retry_info()).and_then(|r| r.retry_delay)
    }

    /// The deadline passed before an answer came: `DEADLINE_EXCEEDED`, whatever code the
    /// local timer reported.
    pub(crate) fn deadline_exceeded(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        Error::Status { code: Code::DeadlineExceeded, message, field_violations: Vec::new(), status: Box::new(status) }
    }

    /// A status that a lost or refused connection produced on the client side.
    pub(crate) fn transport(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        Error::Transport { message, source: Box::new(status) }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let field_violations = status
            .get_details_bad_request()
            .map(|br| br.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
            .unwrap_or_default();
        Error::Status {
            code: status.code(),
            message: status.message().to_owned(),
            field_violations,
            status: Box::new(status),
        }
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        let message = match std::error::Error::source(&e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        Error::Transport { message, source: Box::new(e) }
    }
}

pub use baton_proto::code_name;

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn carries_code_name_message_and_violations() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("agent", "is required");
        details.add_bad_request_violation("entries[0].kind", "unknown or unspecified value 0");
        let e = Error::from(tonic::Status::with_error_details(Code::InvalidArgument, "bad request", details));
        assert_eq!(e.code_name(), "INVALID_ARGUMENT");
        assert_eq!(e.message(), "bad request");
        assert_eq!(e.to_string(), "INVALID_ARGUMENT: bad request");
        assert_eq!(
            e.field_violations(),
            [
                ("agent".to_owned(), "is required".to_owned()),
                ("entries[0].kind".to_owned(), "unknown or unspecified value 0".to_owned())
            ]
        );
    }

    #[test]
    fn reads_retry_info() {
        let details = ErrorDetails::with_retry_info(Some(Duration::from_millis(750)));
        let e = Error::from(tonic::Status::with_error_details(Code::Unavailable, "busy", details));
        assert_eq!(e.retry_delay(), Some(Duration::from_millis(750)));
        assert!(e.field_violations().is_empty());
        assert_eq!(Error::from(tonic::Status::unavailable("x")).retry_delay(), None);
    }

    #[test]
    fn every_code_has_its_canonical_name() {
        for (n, name) in [(5, "NOT_FOUND"), (6, "ALREADY_EXISTS"), (9, "FAILED_PRECONDITION"), (16, "UNAUTHENTICATED")]
        {
            assert_eq!(code_name(Code::from_i32(n)), name);
        }
        assert_eq!(Error::Config("x".into()).code_name(), "INVALID_ARGUMENT");
    }
}
