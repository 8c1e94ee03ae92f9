//! Data lifecycle: delete, fork, redact and compact sessions (each one store transaction with
//! its audit record), secrets redacted from appended text before anything is stored, and the
//! purge and retention sweeps. After each change the cache drops every copy of what changed
//! (here and, over the bus, on the other replicas) and followers of a deleted session end with
//! NOT_FOUND.

use super::Baton;
use crate::domain::commands::{CompactSession, ForkSession, RedactEntries};
use crate::domain::principal::{Principal, Role};
use crate::domain::{Audit, Content, Entry, Error, NewEntry, Redaction, Result, Session, rules, seq_ranges};
use crate::hub::SessionMessage;
use crate::store::lifecycle::{Deleted, NewFork};

/// Sessions handled per purge or retention query.
const SWEEP_BATCH: u32 = 200;
/// The metadata key that records which secret detectors fired on an entry, and how often.
pub const REDACTIONS_KEY: &str = "baton_redactions";

impl Baton {
    /// An audit record of `who` at this moment.
    pub(super) fn audit(
        &self,
        tenant: &str,
        who: &Principal,
        action: &'static str,
        key: &str,
        seqs: String,
        reason: &str,
    ) -> Audit {
        Audit {
            tenant: tenant.to_owned(),
            action,
            session_key: key.to_owned(),
            principal: who.key_id.clone(),
            agent: who.agent.clone().unwrap_or_default(),
            seqs,
            reason: reason.to_owned(),
            at: self.now(),
        }
    }

    /// An agent-bound writer may erase only sessions its agent owns; admins and unbound keys
    /// any session of the tenant.
    async fn check_may_erase(&self, tenant: &str, who: &Principal, session_key: &str, action: &str) -> Result<()> {
        if who.role == Role::Admin {
            return Ok(());
        }
        if let Some(agent) = &who.agent {
            let session = self.store.get_session(tenant, session_key).await?;
            if &session.owner != agent {
                return Err(Error::PermissionDenied(format!(
                    "{action}: session {session_key:?} is owned by {:?}; this key acts as {agent:?}",
                    session.owner
                )));
            }
        }
        Ok(())
    }

    /// Deletes a session for good; returns how many entries went.
    pub async fn delete_session(&self, tenant: &str, who: &Principal, session_key: &str) -> Result<u64> {
        self.check_may_erase(tenant, who, session_key, "DeleteSession").await?;
        let audit = self.audit(tenant, who, "delete", session_key, String::new(), "");
        let deleted = self.store.delete_session(tenant, session_key, audit).await?;
        Ok(self.erased(tenant, deleted, "delete").await)
    }

    /// Tells the cache, the hub and the log that a session is gone.
    async fn erased(&self, tenant: &str, deleted: Deleted, why: &'static str) -> u64 {
        let Deleted { session, entries, handoff_ids, events } = deleted;
        self.cache.forget(tenant, &session.session_key, &handoff_ids, true, &events).await;
        self.hub.publish_session(tenant, &session.session_key, SessionMessage::Deleted);
        for e in events {
            self.hub.publish_agent(tenant, e);
        }
        tracing::info!(tenant, session_key = %session.session_key, entries, handoffs = handoff_ids.len(), action = why, "session deleted");
        entries
    }

    /// Forks a session at `at_seq` into a new one owned by `cmd.agent`.
    pub async fn fork_session(&self, tenant: &str, who: &Principal, cmd: ForkSession) -> Result<Session> {
        let ForkSession { session_key, at_seq, new_session_key, agent, idempotency_key } = cmd;
        let now = self.now();
        let key = new_session_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let audit = self.audit(tenant, who, "fork", &session_key, String::new(), &format!("into {key}"));
        let fork = NewFork {
            tenant: tenant.to_owned(),
            source_key: session_key,
            at_seq,
            session_key: key,
            agent,
            now,
            expires_at: None,
            idempotency_key,
        };
        let created = self.store.fork_session(fork, audit).await?;
        if created.replayed {
            return Ok(self.effective(created.record));
        }
        let session = created.record;
        tracing::info!(tenant, session_key = %session.session_key, forked_from = ?session.forked_from, "session forked");
        self.counters.session_created();
        Ok(session)
    }

    /// Erases the content and metadata of entries.
    pub async fn redact_entries(&self, tenant: &str, who: &Principal, cmd: RedactEntries) -> Result<Vec<Entry>> {
        let RedactEntries { session_key, seqs, reason, agent, expected_last_seq } = cmd;
        let redaction = Redaction { by: agent.clone(), at: self.now(), reason: reason.clone() };
        let mut audit = self.audit(tenant, who, "redact", &session_key, seq_ranges(&seqs), &reason);
        audit.agent = agent;
        let (session, entries) =
            self.store.redact_entries(tenant, &session_key, &seqs, expected_last_seq, redaction, audit).await?;
        self.cache.forget(tenant, &session.session_key, &[], false, &[]).await;
        tracing::info!(tenant, session_key = %session_key, seqs = %seq_ranges(&seqs), "entries redacted");
        Ok(entries)
    }

    /// Removes a session's entries below `before_seq`.
    pub async fn compact_session(&self, tenant: &str, who: &Principal, cmd: CompactSession) -> Result<Session> {
        let CompactSession { session_key, before_seq, force } = cmd;
        self.check_may_erase(tenant, who, &session_key, "CompactSession").await?;
        let reason = if force { "forced" } else { "" };
        let audit = self.audit(tenant, who, "compact", &session_key, String::new(), reason);
        let (session, removed) = self.store.compact_session(tenant, &session_key, before_seq, force, audit).await?;
        if removed > 0 {
            self.cache.forget(tenant, &session_key, &[], false, &[]).await;
            tracing::info!(tenant, session_key = %session_key, removed, first_seq = session.first_seq, "session compacted");
        }
        Ok(self.effective(session))
    }

    /// `OutOfRange` when a read starting after `after_seq` would begin below what the session
    /// still stores (compacted away): never a silent gap.
    pub(super) async fn check_stored_from(&self, tenant: &str, session_key: &str, after_seq: u64) -> Result<()> {
        let session = self.get_session(tenant, session_key).await?;
        if session.first_seq > 1 && after_seq + 1 < session.first_seq {
            return Err(Error::OutOfRange(format!(
                "entries up to {} of session {session_key:?} were compacted away; read after_seq >= {}",
                session.first_seq - 1,
                session.first_seq - 1
            )));
        }
        Ok(())
    }

    /// Replaces secrets in the entries' text (`--redact-secrets`), recording the detectors
    /// that fired in each entry's metadata, before anything is stored or cached.
    pub(super) fn redact_secrets(&self, entries: &mut [NewEntry]) {
        let Some(redactor) = &self.lifecycle.redactor else { return };
        for e in entries {
            let Content::Text(text) = &e.content else { continue };
            let found = redactor.redact(text);
            if found.findings.is_empty() {
                continue;
            }
            let mut counts = serde_json::Map::new();
            for f in &found.findings {
                counts.insert(f.detector.name().to_owned(), f.count.into());
            }
            let total = found.findings.iter().map(|f| f.count as u64).sum();
            let redacted = found.text.into_owned();
            e.metadata.insert(REDACTIONS_KEY.to_owned(), counts.into());
            e.content = Content::Text(redacted);
            e.token_count = crate::domain::tokens::estimate(&e.content);
            self.counters.secrets_redacted(total);
        }
    }

    /// Deletes sessions that expired longer than `--purge-expired-after` ago (not under legal
    /// hold), with an audit record each.
    pub(super) async fn purge_expired(&self) -> Result<()> {
        let Some(after) = self.lifecycle.purge_expired_after else { return Ok(()) };
        let now = self.now();
        let before = crate::domain::Micros(now.0.saturating_sub(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)));
        let system = Principal::anonymous(String::new());
        loop {
            let due = self.store.purgeable_sessions(before, SWEEP_BATCH).await?;
            let n = due.len();
            for (tenant, key) in due {
                let audit = self.audit(&tenant, &system, "purge", &key, String::new(), "expired");
                match self.store.delete_session(&tenant, &key, audit).await {
                    Ok(deleted) => {
                        self.erased(&tenant, deleted, "purge").await;
                    }
                    // Held or deleted meanwhile: skipped.
                    Err(Error::FailedPrecondition { .. } | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if n < SWEEP_BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Compacts sessions by their retention (or the server's default), never past their
    /// newest summary, skipping sessions under legal hold.
    pub(super) async fn retain(&self) -> Result<()> {
        let default = self.lifecycle.default_retention;
        let now = self.now();
        let system = Principal::anonymous(String::new());
        let mut after_id = 0;
        loop {
            let batch = self.store.retention_candidates(!default.is_unset(), after_id, SWEEP_BATCH).await?;
            let n = batch.len();
            for s in batch {
                after_id = after_id.max(s.id);
                let r = if s.retention.is_unset() { default } else { s.retention };
                let young = if r.max_age_micros > 0 {
                    let since = crate::domain::Micros(now.0.saturating_sub(r.max_age_micros));
                    self.store.first_seq_since(&s.tenant, &s.session_key, since).await?
                } else {
                    None
                };
                let Some(cut) = rules::retention_cut(&s, r, young) else { continue };
                let audit = self.audit(&s.tenant, &system, "retain", &s.session_key, String::new(), "retention");
                match self.store.compact_session(&s.tenant, &s.session_key, cut, false, audit).await {
                    Ok((_, removed)) if removed > 0 => {
                        self.cache.forget(&s.tenant, &s.session_key, &[], false, &[]).await;
                        tracing::info!(tenant = %s.tenant, session_key = %s.session_key, removed, first_seq = cut, "retention compacted a session");
                    }
                    Ok(_) | Err(Error::FailedPrecondition { .. } | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if n < SWEEP_BATCH as usize {
                return Ok(());
            }
        }
    }
}
