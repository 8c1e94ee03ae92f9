//! Handoffs: requests (with an extractive summary of the session, which the store renders
//! under the session's lock from the state its appends keep: `domain::summary`), reads, state
//! changes.

use super::{Baton, split_page};
use crate::domain::commands::{ChangeHandoff, ListHandoffs, RequestHandoff};
use crate::domain::page::{self, PageKind};
use crate::domain::{Error, Handoff, HandoffStatus, Result, rules};
use crate::store::{Changed, HandoffQuery, NewHandoff};

impl Baton {
    pub async fn request_handoff(&self, tenant: &str, cmd: RequestHandoff) -> Result<Handoff> {
        let RequestHandoff {
            session_key,
            from_agent,
            to_agent,
            kind,
            instructions,
            deadline,
            max_tokens,
            idempotency_key,
        } = cmd;
        let now = self.now();
        // A repeat is answered before anything else is checked (the session may have closed
        // since); the store checks again under the session's lock, for a repeat that races the
        // first call.
        if let Some(key) = &idempotency_key
            && let Some(made) = self.store.handoff_by_idempotency_key(tenant, &session_key, key).await?
        {
            return Ok(self.effective_handoff(made));
        }
        if from_agent == to_agent {
            return Err(Error::invalid("to_agent", "must differ from from_agent"));
        }
        if deadline.is_some_and(|d| d <= now) {
            return Err(Error::invalid("deadline", "must be in the future"));
        }
        // The store checks that the session is open and fills in up_to_seq and (asked by the
        // empty one here) the summary, under the session's lock.
        let handoff = Handoff {
            handoff_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_owned(),
            session_key,
            from_agent,
            to_agent,
            kind,
            status: HandoffStatus::Pending,
            instructions,
            summary: String::new(),
            up_to_seq: 0,
            max_tokens,
            reason: String::new(),
            created_at: now,
            updated_at: now,
            deadline,
        };
        let changed = self.store.create_handoff_once(NewHandoff { handoff }, idempotency_key.as_deref()).await?;
        Ok(self.publish_change(tenant, changed).await)
    }

    pub async fn get_handoff(&self, tenant: &str, handoff_id: &str) -> Result<Handoff> {
        let h = match self.cache.handoff(tenant, handoff_id).await {
            Some(h) => h,
            None => self.store.get_handoff(tenant, handoff_id).await?,
        };
        Ok(self.effective_handoff(h))
    }

    pub(super) fn effective_handoff(&self, mut h: Handoff) -> Handoff {
        h.status = rules::effective_status(&h, self.now());
        h
    }

    pub async fn list_handoffs(&self, tenant: &str, cmd: ListHandoffs) -> Result<(Vec<Handoff>, String)> {
        let scope = cmd.page_scope();
        let ListHandoffs { to_agent, from_agent, session_key, status, page_size, page_token } = cmd;
        let rows = self
            .store
            .list_handoffs(&HandoffQuery {
                tenant: tenant.to_owned(),
                to_agent,
                from_agent,
                session_key,
                status,
                before_id: page_token,
                limit: page_size + 1,
            })
            .await?;
        let (rows, next) = split_page(rows, page_size, |(id, _)| page::encode(PageKind::Handoffs, tenant, &scope, *id));
        Ok((rows.into_iter().map(|(_, h)| self.effective_handoff(h)).collect(), next))
    }

    pub async fn change_handoff(&self, tenant: &str, cmd: ChangeHandoff) -> Result<Handoff> {
        let ChangeHandoff { handoff_id, agent, action, reason } = cmd;
        let now = self.now();
        let decide = move |h: &Handoff| rules::decide(h, action, &agent, reason.as_deref(), now);
        let changed = self.store.change_handoff(tenant, &handoff_id, now, &decide).await?;
        Ok(self.publish_change(tenant, changed).await)
    }

    /// Tells the cache, the session's followers and both agents' inboxes what a change wrote;
    /// a write that found nothing to do (`unchanged`) tells no one.
    pub(super) async fn publish_change(&self, tenant: &str, changed: Changed) -> Handoff {
        let Changed { handoff, events, session, unchanged } = changed;
        if unchanged {
            return self.effective_handoff(handoff);
        }
        self.counters.handoff_processed(handoff.status);
        self.cache.after_handoff_change(tenant, &handoff, &events).await;
        if let Some(session) = session {
            self.session_changed(tenant, &session).await;
        }
        for event in events {
            self.hub.publish_agent(tenant, event);
        }
        handoff
    }
}
