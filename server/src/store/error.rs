//! Database errors as domain errors: the SQLSTATE and sqlx classification lives here, with
//! the stores, so that nothing above `store` knows about SQL.

use crate::domain::Error;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                // Logged once per outage by the circuit breaker (`store::sql`), not per call.
                tracing::debug!(error = %e, "store unavailable");
                Error::Unavailable("the store is unavailable; retry later".into())
            }
            sqlx::Error::RowNotFound => Error::Internal("a stored record disappeared".into()),
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_transient(&c)) => {
                // Connection loss, server shutdown, serialization failure, deadlock: retryable.
                tracing::warn!(code = ?db.code(), "transient database error");
                Error::Unavailable("the store is temporarily unavailable; retry".into())
            }
            other => {
                // The database's message may quote SQL or values: log it, do not return it.
                tracing::error!(error = %other, "store error");
                Error::Internal("internal storage error".into())
            }
        }
    }
}

/// SQLSTATEs after which a retry can succeed: connection exceptions (08…), operator
/// intervention (57P01–57P03), serialization failure (40001) and deadlock (40P01).
fn is_transient(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

/// `AlreadyExists` for a unique-key violation (a session key or handoff id taken in the
/// tenant), otherwise the store error.
pub(super) fn unique_or(e: sqlx::Error, what: &'static str, key: &str) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::AlreadyExists { what, key: key.to_owned() },
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retryable_sqlstates_are_transient() {
        for code in ["08000", "08006", "57P01", "57P03", "40001", "40P01"] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "22003", "57014"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn pool_exhaustion_is_unavailable_and_a_lost_row_internal() {
        assert!(matches!(Error::from(sqlx::Error::PoolTimedOut), Error::Unavailable(_)));
        assert!(matches!(Error::from(sqlx::Error::RowNotFound), Error::Internal(_)));
    }
}
