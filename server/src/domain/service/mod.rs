//! `Baton`: the service behind both gRPC services. It applies the rules, calls the store,
//! tells the cache and the hub what committed, and runs the streams.
//!
//! - `sessions`: create, read (through the cache), list, update and close sessions;
//! - `entries`: appends, entry lists, context windows, search;
//! - `handoffs`: requests (with their summary), reads, state changes;
//! - `streams`: StreamEntries, WatchHandoffs, StreamHandoffContext, all paged by
//!   [`paging`]'s one loop (byte-bounded, shutdown-aware);
//! - `lifecycle`: delete, fork, redact, compact; redaction of secrets on ingest; the purge
//!   and retention sweeps;
//! - `sweep`: expiry of handoffs and sessions on a timer (and the lifecycle sweeps).

mod entries;
mod handoffs;
mod lifecycle;
pub mod paging;
mod sessions;
mod streams;
mod sweep;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::cache::Cache;
use super::counters::Counters;
use super::validate::Limits;
use super::{Micros, Session, SessionStatus};
use crate::clock::Clock;
use crate::hub::Hub;
use crate::store::Store;

pub use paging::ItemStream;

/// The service state shared by every request.
pub struct Baton {
    store: Arc<dyn Store>,
    /// A read-through cache told about every change ([`super::cache::NoCache`] when none).
    cache: Arc<dyn Cache>,
    hub: Arc<Hub>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Cancelled when the server shuts down: every stream ends with UNAVAILABLE.
    shutdown: CancellationToken,
    /// Business counters (sessions, entries, handoffs).
    counters: Arc<Counters>,
    lifecycle: LifecycleSettings,
    /// The store reads of streams (opening one, replay and catch-up pages), at most
    /// [`STREAM_READS`] at once.
    stream_reads: Arc<tokio::sync::Semaphore>,
}

/// Store reads streams make at once. 10,000 follow streams opened together would otherwise
/// each hold a store read (a future of a few KiB) while the pool served them one by one;
/// past this many they wait for a permit, which holds next to nothing. A permit is held for
/// the read alone, never while a page is sent, so a slow client cannot keep one.
const STREAM_READS: usize = 32;

/// The server's data lifecycle settings.
#[derive(Clone, Default)]
pub struct LifecycleSettings {
    /// Expired sessions are deleted this long after they expired; `None`: never.
    pub purge_expired_after: Option<std::time::Duration>,
    /// The retention of sessions that set none.
    pub default_retention: super::Retention,
    /// Replaces secrets in appended text before anything is stored (`--redact-secrets`).
    pub redactor: Option<Arc<baton_redact::Redactor>>,
}

/// What [`Baton::new`] needs besides the store.
pub struct Parts {
    pub cache: Arc<dyn Cache>,
    pub hub: Arc<Hub>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: CancellationToken,
    pub counters: Arc<Counters>,
    pub lifecycle: LifecycleSettings,
}

impl Baton {
    pub fn new(store: Arc<dyn Store>, parts: Parts) -> Arc<Self> {
        let Parts { cache, hub, clock, limits, shutdown, counters, lifecycle } = parts;
        let stream_reads = Arc::new(tokio::sync::Semaphore::new(STREAM_READS));
        Arc::new(Self { store, cache, hub, clock, limits, shutdown, counters, lifecycle, stream_reads })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn now(&self) -> Micros {
        self.clock.now()
    }

    /// A session past its expiry reads as EXPIRED even before the sweeper has written so.
    fn effective(&self, mut s: Session) -> Session {
        if s.status.is_open() && s.expires_at.is_some_and(|t| t <= self.now()) {
            s.status = SessionStatus::Expired;
        }
        s
    }
}

/// Cuts a `limit + 1` result to `limit` and makes the next page's token from its last item.
fn split_page<T>(mut items: Vec<T>, limit: u32, token: impl Fn(&T) -> String) -> (Vec<T>, String) {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        let next = items.last().map(&token).unwrap_or_default();
        (items, next)
    } else {
        (items, String::new())
    }
}
