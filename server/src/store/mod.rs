//! Durable storage. PostgreSQL is the source of truth in production; the embedded SQLite
//! store serves single-node and development use. Both pass the same contract tests
//! (`tests/store_contract.rs`).
//!
//! Stores do the atomic parts (seq assignment, idempotency, state transitions under a row
//! lock); the rules they apply inside those transactions come from `domain` (`rules`,
//! `tokens`), so the stores hold storage only.
//!
//! Each store is split by aggregate, the same way, so the two read side by side:
//! `{postgres,sqlite}/{mod,sessions,entries,search,handoffs,inbox}.rs` (PostgreSQL adds
//! `append`, its write coalescer). What they share is here: the column lists (`columns`), the
//! statements that are the same on both and their bindings (`queries`), the row readers and
//! value conversions (`rows`), the handoff write flows over each store's statements
//! (`handoffs`), the `Store` implementation over each store's aggregate modules (`backend`),
//! the API key statements (`keys`), the mapping of database errors to domain errors (`error`), and statement metrics and spans
//! (`sql`). No sqlx type leaves this module.

use async_trait::async_trait;

use crate::domain::principal::{ApiKey, StoredKey};
use crate::domain::rules::{self, Change};
use crate::domain::{
    Audit, Entry, Handoff, HandoffEvent, HandoffStatus, Metadata, Micros, NewEntry, Redaction, Result, Retention,
    SearchHit, Session, SessionStatus,
};

#[macro_use]
mod columns;
#[macro_use]
mod backend;
mod error;
pub mod freshness;
mod handoffs;
mod keys;
pub mod lifecycle;
#[macro_use]
mod queries;
pub mod postgres;
mod rows;
pub mod sql;
pub mod sqlite;

/// A backend's background work, behind [`Store::spawn_background`]: none unless it says so.
pub(crate) trait Background {
    fn spawn_background(&self, _stop: tokio_util::sync::CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        Vec::new()
    }
}

/// The embedded store indexes in its append transaction (FTS5 triggers).
impl Background for sqlite::SqliteStore {}

/// Whose rows a PostgreSQL transaction may see (row-level security; SQLite ignores it): one
/// tenant, the tenants of a coalesced append batch, or every tenant (the expiry sweeper only).
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Tenant(&'a str),
    Tenants(&'a [&'a str]),
    AllTenants,
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub tenant: String,
    pub session_key: String,
    pub agent: String,
    pub metadata: Metadata,
    pub now: Micros,
    pub expires_at: Option<Micros>,
}

/// What a create that a caller may repeat did: the record, and whether an earlier call with
/// the same idempotency key had made it (then nothing was written and the record is as it is
/// now).
#[derive(Debug, Clone)]
pub struct Created<T> {
    pub record: T,
    pub replayed: bool,
}

/// Changes to a session; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SessionPatch {
    pub metadata: Option<Metadata>,
    pub status: Option<SessionStatus>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Micros>>,
    pub legal_hold: Option<bool>,
    pub retention: Option<Retention>,
    /// Audit records written in the same transaction (legal hold and retention changes).
    pub audit: Vec<Audit>,
}

impl SessionPatch {
    /// The session after the patch at `now`; a status change must pass
    /// `rules::check_session_status_change`.
    fn apply(self, mut session: Session, now: Micros) -> Result<Session> {
        if let Some(status) = self.status {
            rules::check_session_status_change(&session, status)?;
            session.status = status;
        }
        if let Some(metadata) = self.metadata {
            session.metadata = metadata;
        }
        if let Some(expires_at) = self.expires_at {
            session.expires_at = expires_at;
        }
        if let Some(hold) = self.legal_hold {
            session.legal_hold = hold;
        }
        if let Some(retention) = self.retention {
            session.retention = retention;
        }
        session.updated_at = now;
        Ok(session)
    }
}

/// Filters and keyset position for listing sessions, newest first.
#[derive(Debug, Clone)]
pub struct SessionQuery {
    pub tenant: String,
    /// Created by or owned by this agent.
    pub agent: Option<String>,
    pub status: Option<SessionStatus>,
    /// Only sessions with internal id below this (the previous page's last id).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// An append: validated entries for one session.
#[derive(Debug, Clone)]
pub struct AppendCommand {
    pub tenant: String,
    pub session_key: String,
    pub entries: Vec<NewEntry>,
    pub idempotency_key: Option<String>,
    pub expected_last_seq: Option<u64>,
    pub trace_id: String,
    pub now: Micros,
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// The session after the append.
    pub session: Session,
    /// The entries of the append, in seq order.
    pub entries: Vec<Entry>,
    /// True when the idempotency key was seen before: nothing was written and `entries` are
    /// the original append's.
    pub replayed: bool,
}

/// Filters and keyset position for listing entries in seq order.
#[derive(Debug, Clone)]
pub struct EntryQuery {
    pub tenant: String,
    pub session_key: String,
    /// Only seq > after_seq.
    pub after_seq: u64,
    /// Only seq < before_seq.
    pub before_seq: Option<u64>,
    /// Empty: every kind.
    pub kinds: Vec<crate::domain::EntryKind>,
    pub limit: u32,
}

/// The raw material of a context window.
#[derive(Debug, Clone)]
pub struct WindowSlice {
    pub session: Session,
    /// The newest SUMMARY entry, if any.
    pub summary: Option<Entry>,
    /// Entries after the summary, newest first, at most the requested count.
    pub newest_first: Vec<Entry>,
    /// Read from a read replica: it may miss other clients' newest writes, so it answers the
    /// call but never fills the cache.
    pub from_replica: bool,
}

/// A full-text search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub tenant: String,
    /// `None`: every session of the tenant.
    pub session_key: Option<String>,
    /// The parsed query (`domain::search`), which each store renders in its own syntax.
    pub query: crate::domain::search::Query,
    pub offset: u32,
    pub limit: u32,
}

/// A handoff to create; the store snapshots `up_to_seq`, writes the `created` events and, when
/// `summary` is empty, the summary of the session up to `up_to_seq` (rendered from the
/// session's summary state, `domain::summary`).
#[derive(Debug, Clone)]
pub struct NewHandoff {
    pub handoff: Handoff,
}

/// Filters and keyset position for listing handoffs, newest first.
#[derive(Debug, Clone)]
pub struct HandoffQuery {
    pub tenant: String,
    pub to_agent: Option<String>,
    pub from_agent: Option<String>,
    pub session_key: Option<String>,
    pub status: Option<HandoffStatus>,
    /// Only handoffs older than this one (the previous page's last internal id).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Decides a transition given the handoff as currently stored (locked): the change, or `None`
/// when the handoff already is where the transition leads (a repeated call).
pub type Decide<'a> = &'a (dyn Fn(&Handoff) -> Result<Option<Change>> + Send + Sync);

/// Decides the sweep of a handoff found due (locked): its change, or `None` to leave it as it
/// is (`rules::sweep`, which logs why).
pub type Sweep<'a> = &'a (dyn Fn(&Handoff) -> Option<Change> + Send + Sync);

/// A handoff after a change, with the inbox events the change wrote.
#[derive(Debug, Clone)]
pub struct Changed {
    pub handoff: Handoff,
    pub events: Vec<HandoffEvent>,
    /// The session after the change, when the change touched it.
    pub session: Option<Session>,
    /// True when nothing was written: a handoff create repeated with its idempotency key, or a
    /// change to the status the handoff already has (`rules::decide`). `handoff` is as stored,
    /// `events` is empty.
    pub unchanged: bool,
}

/// A handoff list with its internal keyset ids.
pub type HandoffPage = Vec<(i64, Handoff)>;

/// The durable store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the store answers a trivial query within a second. It is the store's
    /// health probe: it runs even while the store is known to be down, and its outcome opens
    /// or closes the store's circuit breaker.
    async fn ping(&self) -> Result<()>;

    /// False while the store is known to be unreachable (its circuit breaker is open): calls
    /// fail at once with `Unavailable` until a [`ping`](Store::ping) succeeds.
    fn available(&self) -> bool;

    /// This database's Baton identity: a random id its migrations made once
    /// (`baton_instance`). The cache's keys and channels in Redis carry it.
    async fn instance_id(&self) -> Result<String>;

    /// The store's metrics (statement durations, pool usage), for the server's registry.
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>>;

    /// Starts the store's background work, which ends when `stop` is cancelled (PostgreSQL:
    /// the search indexer, `postgres::indexer`; the embedded store has none).
    fn spawn_background(&self, stop: tokio_util::sync::CancellationToken) -> Vec<tokio::task::JoinHandle<()>>;

    /// Creates a session; `AlreadyExists` when the key is taken in the tenant.
    async fn create_session(&self, new: NewSession) -> Result<Session> {
        Ok(self.create_session_once(new, None).await?.record)
    }
    /// Creates a session, once per `idempotency_key` in the tenant (a namespace shared with
    /// forks): when a session made with that key exists, writes nothing and returns it as it
    /// is now (`replayed`), whatever `new` says. Atomic: concurrent calls with one key create
    /// one session.
    async fn create_session_once(&self, new: NewSession, idempotency_key: Option<&str>) -> Result<Created<Session>>;
    /// `NotFound` when absent.
    async fn get_session(&self, tenant: &str, session_key: &str) -> Result<Session>;
    async fn list_sessions(&self, q: &SessionQuery) -> Result<Vec<Session>>;
    /// Applies a patch; `NotFound` when absent; checks a status change with
    /// `rules::check_session_status_change` under the row lock.
    async fn update_session(
        &self,
        tenant: &str,
        session_key: &str,
        patch: SessionPatch,
        now: Micros,
    ) -> Result<Session>;

    /// Appends atomically: with the session row locked, replays an already-seen idempotency
    /// key, checks that the session is open (`FailedPrecondition` `SESSION_CLOSED`) and
    /// `expected_last_seq` (`FailedPrecondition` `SEQ_MISMATCH`), assigns seqs
    /// last_seq+1.. and writes entries, the idempotency record and the session's new
    /// last_seq / last_summary_seq / last_activity_at (a DORMANT session becomes ACTIVE).
    async fn append(&self, cmd: AppendCommand) -> Result<AppendOutcome>;
    /// Entries in seq order. `NotFound` when the session is absent.
    async fn list_entries(&self, q: &EntryQuery) -> Result<Vec<Entry>>;
    /// The latest summary and the newest entries after it: at most `max_entries`, and only
    /// as many as `tokens::read_bound` says a budget of `max_tokens` needs (those that fit
    /// plus the first that does not), so a window never reads much more than it can return.
    async fn window(&self, tenant: &str, session_key: &str, max_entries: u32, max_tokens: u32) -> Result<WindowSlice>;
    /// The smallest seq `s` such that entries `s..=up_to_seq` together cost at most `budget`
    /// tokens: where a token-budgeted tail starts (`up_to_seq + 1` when not even the newest
    /// entry fits), as `tokens::tail_of` selects it. `NotFound` when the session is absent.
    async fn tail_start(&self, tenant: &str, session_key: &str, up_to_seq: u64, budget: u32) -> Result<u64>;
    /// Ranked full-text hits with snippets, best first.
    async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>>;

    /// Writes the handoff with `up_to_seq` = the session's last_seq at that moment and a
    /// `created` event in the inboxes of both agents.
    async fn create_handoff(&self, new: NewHandoff) -> Result<Changed> {
        self.create_handoff_once(new, None).await
    }
    /// As [`create_handoff`](Store::create_handoff), once per `idempotency_key` in the
    /// handoff's session: under the session's lock, a handoff made with that key is returned as
    /// it is now (`unchanged`, nothing written), before the session is checked to be open.
    async fn create_handoff_once(&self, new: NewHandoff, idempotency_key: Option<&str>) -> Result<Changed>;
    /// The handoff made in the session with `idempotency_key`, if any (`NotFound` is not an
    /// error here: an unknown session has none).
    async fn handoff_by_idempotency_key(
        &self,
        tenant: &str,
        session_key: &str,
        idempotency_key: &str,
    ) -> Result<Option<Handoff>>;
    async fn get_handoff(&self, tenant: &str, handoff_id: &str) -> Result<Handoff>;
    async fn list_handoffs(&self, q: &HandoffQuery) -> Result<HandoffPage>;
    /// Locks the handoff, asks `decide`, and writes the change and its events atomically; when
    /// `decide` finds nothing to change, writes nothing (`unchanged`).
    async fn change_handoff(&self, tenant: &str, handoff_id: &str, now: Micros, decide: Decide<'_>) -> Result<Changed>;
    /// Moves at most `limit` pending handoffs whose deadline is at or before `now` to EXPIRED,
    /// as the domain's `rules::sweep` decides for each.
    async fn expire_handoffs(&self, now: Micros, limit: u32) -> Result<Vec<Changed>> {
        self.expire_handoffs_by(now, limit, &|h| rules::sweep(h, now)).await
    }
    /// Moves at most `limit` pending handoffs whose deadline is at or before `now` to EXPIRED,
    /// as `sweep` decides for each (locked): one it refuses stays as it is and the others still
    /// expire.
    async fn expire_handoffs_by(&self, now: Micros, limit: u32, sweep: Sweep<'_>) -> Result<Vec<Changed>>;
    /// Moves every open session whose expiry is at or before `now` to EXPIRED.
    async fn expire_sessions(&self, now: Micros, limit: u32) -> Result<Vec<Session>>;

    /// The pending handoffs addressed to `agent`, as their `created` events in cursor order,
    /// and the agent's newest cursor, read in one snapshot.
    async fn pending_inbox(&self, tenant: &str, agent: &str) -> Result<(Vec<HandoffEvent>, u64)>;
    /// The agent's inbox events after `after_cursor`, in cursor order.
    async fn inbox_after(&self, tenant: &str, agent: &str, after_cursor: u64, limit: u32) -> Result<Vec<HandoffEvent>>;

    /// Stores a new API key with the hash of its secret; `AlreadyExists` if the id is taken.
    async fn create_key(&self, key: &ApiKey, secret_hash: &[u8]) -> Result<()>;
    /// The key with this id, stamping its `last_used_at` with `now`; `None` when unknown.
    async fn find_key(&self, id: &str, now: Micros) -> Result<Option<StoredKey>>;
    /// Every key, or a tenant's, by tenant and creation time.
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>>;
    /// Revokes a key at `now` (a revoked key keeps its first revocation time); `NotFound` when
    /// unknown.
    async fn revoke_key(&self, id: &str, now: Micros) -> Result<ApiKey>;

    /// Deletes a session and everything of it (`lifecycle::delete`).
    async fn delete_session(&self, tenant: &str, session_key: &str, audit: Audit) -> Result<lifecycle::Deleted>;
    /// Forks a session (`lifecycle::fork`), once per the fork's idempotency key.
    async fn fork_session(&self, fork: lifecycle::NewFork, audit: Audit) -> Result<Created<Session>>;
    /// Redacts entries (`lifecycle::redact`).
    async fn redact_entries(
        &self,
        tenant: &str,
        session_key: &str,
        seqs: &[u64],
        expected_last_seq: Option<u64>,
        redaction: Redaction,
        audit: Audit,
    ) -> Result<(Session, Vec<Entry>)>;
    /// Removes the entries below `before_seq` (`lifecycle::compact`); returns the session and
    /// how many entries went.
    async fn compact_session(
        &self,
        tenant: &str,
        session_key: &str,
        before_seq: u64,
        force: bool,
        audit: Audit,
    ) -> Result<(Session, u64)>;
    /// A session's audit records, oldest first.
    async fn audit_log(&self, tenant: &str, session_key: &str) -> Result<Vec<Audit>>;
    /// At most `limit` sessions (tenant, key) that expired at or before `expired_before` and
    /// are not under legal hold, oldest first (the purge sweep).
    async fn purgeable_sessions(&self, expired_before: Micros, limit: u32) -> Result<Vec<(String, String)>>;
    /// At most `limit` sessions not under legal hold, by internal id after `after_id`: those
    /// with their own retention, or every one when `all` (a server default applies).
    async fn retention_candidates(&self, all: bool, after_id: i64, limit: u32) -> Result<Vec<Session>>;
    /// The first seq of the session created at or after `since`; `None` when none is.
    async fn first_seq_since(&self, tenant: &str, session_key: &str, since: Micros) -> Result<Option<u64>>;
}
