//! Sessions: create, read (through the cache), list, update, close.

use super::{Baton, split_page};
use crate::domain::commands::{CreateSession, ListSessions, UpdateSession};
use crate::domain::page::{self, PageKind};
use crate::domain::principal::Principal;
use crate::domain::{Result, Session, SessionStatus};
use crate::hub::SessionMessage;
use crate::store::{NewSession, SessionPatch, SessionQuery, WindowSlice};

impl Baton {
    pub async fn create_session(&self, tenant: &str, cmd: CreateSession) -> Result<Session> {
        let CreateSession { session_key, agent, metadata, ttl, idempotency_key } = cmd;
        let now = self.now();
        let session_key = session_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let new = NewSession {
            tenant: tenant.to_owned(),
            session_key,
            agent,
            metadata,
            now,
            expires_at: ttl.map(|d| now.plus(d)),
        };
        let created = self.store.create_session_once(new, idempotency_key.as_deref()).await?;
        if created.replayed {
            return Ok(self.effective(created.record));
        }
        let session = created.record;
        self.counters.session_created();
        let slice =
            WindowSlice { session: session.clone(), summary: None, newest_first: Vec::new(), from_replica: false };
        self.cache.install(tenant, &slice).await;
        Ok(session)
    }

    pub async fn get_session(&self, tenant: &str, session_key: &str) -> Result<Session> {
        if let Some(cached) = self.cache.session(tenant, session_key).await {
            return Ok(self.effective(cached.session.clone()));
        }
        let session = self.store.get_session(tenant, session_key).await?;
        Ok(self.effective(session))
    }

    /// A session changed other than by an append: drop cached copies, tell followers.
    pub(super) async fn session_changed(&self, tenant: &str, session: &Session) {
        self.cache.invalidate(tenant, session).await;
        if !session.status.is_open() {
            self.hub.publish_session(tenant, &session.session_key, SessionMessage::Closed);
        }
    }

    pub async fn list_sessions(&self, tenant: &str, cmd: ListSessions) -> Result<(Vec<Session>, String)> {
        let scope = cmd.page_scope();
        let ListSessions { agent, status, page_size, page_token } = cmd;
        let sessions = self
            .store
            .list_sessions(&SessionQuery {
                tenant: tenant.to_owned(),
                agent,
                status,
                before_id: page_token,
                limit: page_size + 1,
            })
            .await?;
        let (sessions, next) =
            split_page(sessions, page_size, |s| page::encode(PageKind::Sessions, tenant, &scope, s.id));
        Ok((sessions.into_iter().map(|s| self.effective(s)).collect(), next))
    }

    pub async fn update_session(&self, tenant: &str, cmd: UpdateSession) -> Result<Session> {
        self.update_session_as(tenant, &Principal::anonymous(tenant.to_owned()), cmd).await
    }

    /// Updates a session for `who`: setting the legal hold needs an admin; legal hold and
    /// retention changes are audited.
    pub async fn update_session_as(&self, tenant: &str, who: &Principal, cmd: UpdateSession) -> Result<Session> {
        let UpdateSession { session_key, metadata, status, ttl, legal_hold, retention } = cmd;
        let now = self.now();
        let mut audit = Vec::new();
        if let Some(hold) = legal_hold {
            who.require(crate::domain::principal::Role::Admin, "setting legal_hold")?;
            let reason = if hold { "legal hold set" } else { "legal hold lifted" };
            audit.push(self.audit(tenant, who, "legal_hold", &session_key, String::new(), reason));
        }
        if let Some(r) = retention {
            let reason = format!("keep_latest={} max_age_us={}", r.keep_latest, r.max_age_micros);
            audit.push(self.audit(tenant, who, "retention", &session_key, String::new(), &reason));
        }
        let patch = SessionPatch {
            metadata,
            status,
            expires_at: ttl.map(|d| if d.is_zero() { None } else { Some(now.plus(d)) }),
            legal_hold,
            retention,
            audit,
        };
        let session = self.store.update_session(tenant, &session_key, patch, now).await?;
        self.session_changed(tenant, &session).await;
        Ok(self.effective(session))
    }

    pub async fn close_session(&self, tenant: &str, session_key: String) -> Result<Session> {
        let cmd = UpdateSession {
            session_key,
            metadata: None,
            status: Some(SessionStatus::Closed),
            ttl: None,
            legal_hold: None,
            retention: None,
        };
        self.update_session(tenant, cmd).await
    }
}
