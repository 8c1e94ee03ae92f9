//! Read-your-writes across PostgreSQL read replicas (`postgres::replicas`).
//!
//! A write tells its caller the position in the primary's write-ahead log (the LSN) at which it
//! is committed, in the response header [`LSN_HEADER`]; a caller that sends the highest position
//! it has been told back in [`MIN_LSN_HEADER`] is served by a replica only once that replica has
//! replayed at least that far, else by the primary. Positions are 16 hexadecimal digits, so a
//! client keeps the highest by comparing strings.
//!
//! The position travels through a call in a task-local scope that `api::ContextLayer` opens
//! around each call ([`within`]): stores read what the caller requires ([`required`]) and
//! report what they committed or read at ([`saw`]) without every store method carrying it.
//! Outside a call (sweeps, stream tasks) nothing is required and nothing is reported.

use std::cell::Cell;
use std::future::Future;

pub use baton_proto::position::{LSN_HEADER, MIN_LSN_HEADER};

/// A position in PostgreSQL's write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    /// A header value (`baton_proto::position::parse`).
    pub fn parse(text: &str) -> Option<Lsn> {
        baton_proto::position::parse(text).map(Lsn)
    }

    /// The header form (`baton_proto::position::format`).
    pub fn header(self) -> String {
        baton_proto::position::format(self.0)
    }
}

struct Call {
    required: Option<Lsn>,
    seen: Cell<Option<Lsn>>,
}

tokio::task_local! {
    static CALL: Call;
}

/// Runs one call's future with the position its caller requires, and returns its output with
/// the highest position a store reported while it ran.
pub async fn within<F: Future>(required: Option<Lsn>, call: F) -> (F::Output, Option<Lsn>) {
    CALL.scope(Call { required, seen: Cell::new(None) }, async move {
        let output = call.await;
        (output, CALL.with(|c| c.seen.get()))
    })
    .await
}

/// The position the current call requires its reads to reflect, if any.
pub(crate) fn required() -> Option<Lsn> {
    CALL.try_with(|c| c.required).ok().flatten()
}

/// True inside a call (where a reported position reaches the caller).
pub(crate) fn in_call() -> bool {
    CALL.try_with(|_| ()).is_ok()
}

/// Reports a position the current call's writes are committed at, or its reads reflect.
pub(crate) fn saw(lsn: Lsn) {
    let _ = CALL.try_with(|c| c.seen.set(c.seen.get().max(Some(lsn))));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_sees_what_it_requires_and_reports_the_highest() {
        assert_eq!(required(), None);
        saw(Lsn(1)); // outside a call: nowhere to go
        let ((), seen) = within(Some(Lsn(5)), async {
            assert_eq!(required(), Some(Lsn(5)));
            assert!(in_call());
            saw(Lsn(9));
            tokio::task::yield_now().await;
            saw(Lsn(7));
        })
        .await;
        assert_eq!(seen, Some(Lsn(9)));
        let ((), seen) = within(None, async {}).await;
        assert_eq!(seen, None);
        assert!(!in_call());
    }
}
