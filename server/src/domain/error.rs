//! The one error type of the domain. `api::status` maps it to a gRPC `Status`; the store
//! maps its database errors into it (`store::error`).

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `entries[3].text`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// Everything that can go wrong in Baton, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; nothing was written.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named session or handoff does not exist in the tenant.
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// A session with this key already exists in the tenant.
    #[error("{what} {key:?} already exists")]
    AlreadyExists { what: &'static str, key: String },
    /// The request is valid but the resource is not in a state that allows it.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine-readable reason, e.g. `SEQ_MISMATCH`, `SESSION_CLOSED`, `ILLEGAL_TRANSITION`.
        reason: &'static str,
        /// What the subject of the precondition is, e.g. `session/abc`.
        subject: String,
        message: String,
    },
    /// The calling agent may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request asks for entries that are no longer stored (compacted away).
    #[error("{0}")]
    OutOfRange(String),
    /// The caller presented no credential, or one that is unknown, revoked or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller used up a quota (request rate, open streams); retrying after `retry_after`
    /// may work.
    #[error("{message}")]
    ResourceExhausted { message: String, retry_after: std::time::Duration },
    /// The service cannot answer now (store unreachable, shutting down); retrying may work.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected store failure. The message is safe to show to clients: it
    /// never carries SQL text or bound values.
    #[error("{0}")]
    Internal(String),
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter().map(|f| format!("{}: {}", f.field, f.description)).collect::<Vec<_>>().join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn session_not_found(key: &str) -> Self {
        Error::NotFound { what: "session", key: key.to_owned() }
    }

    pub fn handoff_not_found(id: &str) -> Self {
        Error::NotFound { what: "handoff", key: id.to_owned() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
