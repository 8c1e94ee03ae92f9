//! `backend_store!(Type)`: the [`Store`](super::Store) implementation of a backend, the same
//! for both: each method is the function of the same aggregate module of the backend
//! (`sessions`, `entries`, `search`, `handoffs`, `inbox`, `keys`), and the handoff writes are the
//! shared flows of `store::handoffs` over the backend's `handoff_tx()`. The backend itself
//! gives `ping()`, `collectors()` and `positioned()` (which reports a write's log position to
//! the caller where read replicas need it, `store::freshness`).

macro_rules! backend_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::domain::Result<()> {
                <$store>::ping_database(self).await
            }

            async fn instance_id(&self) -> $crate::domain::Result<String> {
                <$store>::instance_id(self).await
            }

            fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
                <$store>::pool_collectors(self)
            }

            fn spawn_background(&self, stop: tokio_util::sync::CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
                $crate::store::Background::spawn_background(self, stop)
            }

            fn available(&self) -> bool {
                self.sql.available()
            }

            async fn create_session_once(
                &self,
                new: $crate::store::NewSession,
                idempotency_key: Option<&str>,
            ) -> $crate::domain::Result<$crate::store::Created<$crate::domain::Session>> {
                self.positioned(sessions::create(self, new, idempotency_key)).await
            }

            async fn get_session(
                &self,
                tenant: &str,
                session_key: &str,
            ) -> $crate::domain::Result<$crate::domain::Session> {
                sessions::get(self, tenant, session_key).await
            }

            async fn list_sessions(
                &self,
                q: &$crate::store::SessionQuery,
            ) -> $crate::domain::Result<Vec<$crate::domain::Session>> {
                sessions::list(self, q).await
            }

            async fn update_session(
                &self,
                tenant: &str,
                session_key: &str,
                patch: $crate::store::SessionPatch,
                now: $crate::domain::Micros,
            ) -> $crate::domain::Result<$crate::domain::Session> {
                self.positioned(sessions::update(self, tenant, session_key, patch, now)).await
            }

            async fn expire_sessions(
                &self,
                now: $crate::domain::Micros,
                limit: u32,
            ) -> $crate::domain::Result<Vec<$crate::domain::Session>> {
                sessions::expire(self, now, limit).await
            }

            async fn append(
                &self,
                cmd: $crate::store::AppendCommand,
            ) -> $crate::domain::Result<$crate::store::AppendOutcome> {
                entries::append(self, cmd).await
            }

            async fn list_entries(
                &self,
                q: &$crate::store::EntryQuery,
            ) -> $crate::domain::Result<Vec<$crate::domain::Entry>> {
                entries::list(self, q).await
            }

            async fn window(
                &self,
                tenant: &str,
                session_key: &str,
                max_entries: u32,
                max_tokens: u32,
            ) -> $crate::domain::Result<$crate::store::WindowSlice> {
                entries::window(self, tenant, session_key, max_entries, max_tokens).await
            }

            async fn tail_start(
                &self,
                tenant: &str,
                session_key: &str,
                up_to_seq: u64,
                budget: u32,
            ) -> $crate::domain::Result<u64> {
                entries::tail_start(self, tenant, session_key, up_to_seq, budget).await
            }

            async fn search(
                &self,
                q: &$crate::store::SearchQuery,
            ) -> $crate::domain::Result<Vec<$crate::domain::SearchHit>> {
                search::search(self, q).await
            }

            async fn create_handoff_once(
                &self,
                new: $crate::store::NewHandoff,
                idempotency_key: Option<&str>,
            ) -> $crate::domain::Result<$crate::store::Changed> {
                let tx = self.handoff_tx($crate::store::Scope::Tenant(&new.handoff.tenant)).await?;
                self.positioned($crate::store::handoffs::create(tx, new, idempotency_key)).await
            }

            async fn handoff_by_idempotency_key(
                &self,
                tenant: &str,
                session_key: &str,
                idempotency_key: &str,
            ) -> $crate::domain::Result<Option<$crate::domain::Handoff>> {
                handoffs::by_idempotency_key(self, tenant, session_key, idempotency_key).await
            }

            async fn get_handoff(
                &self,
                tenant: &str,
                handoff_id: &str,
            ) -> $crate::domain::Result<$crate::domain::Handoff> {
                handoffs::get(self, tenant, handoff_id).await
            }

            async fn list_handoffs(
                &self,
                q: &$crate::store::HandoffQuery,
            ) -> $crate::domain::Result<$crate::store::HandoffPage> {
                handoffs::list(self, q).await
            }

            async fn change_handoff(
                &self,
                tenant: &str,
                handoff_id: &str,
                now: $crate::domain::Micros,
                decide: $crate::store::Decide<'_>,
            ) -> $crate::domain::Result<$crate::store::Changed> {
                let tx = self.handoff_tx($crate::store::Scope::Tenant(tenant)).await?;
                self.positioned($crate::store::handoffs::change(tx, tenant, handoff_id, now, decide)).await
            }

            async fn expire_handoffs_by(
                &self,
                now: $crate::domain::Micros,
                limit: u32,
                sweep: $crate::store::Sweep<'_>,
            ) -> $crate::domain::Result<Vec<$crate::store::Changed>> {
                let tx = self.handoff_tx($crate::store::Scope::AllTenants).await?;
                $crate::store::handoffs::expire(tx, now, limit, sweep).await
            }

            async fn pending_inbox(
                &self,
                tenant: &str,
                agent: &str,
            ) -> $crate::domain::Result<(Vec<$crate::domain::HandoffEvent>, u64)> {
                inbox::pending(self, tenant, agent).await
            }

            async fn inbox_after(
                &self,
                tenant: &str,
                agent: &str,
                after_cursor: u64,
                limit: u32,
            ) -> $crate::domain::Result<Vec<$crate::domain::HandoffEvent>> {
                inbox::after(self, tenant, agent, after_cursor, limit).await
            }

            async fn create_key(
                &self,
                key: &$crate::domain::principal::ApiKey,
                secret_hash: &[u8],
            ) -> $crate::domain::Result<()> {
                keys::create(self, key, secret_hash).await
            }

            async fn find_key(
                &self,
                id: &str,
                now: $crate::domain::Micros,
            ) -> $crate::domain::Result<Option<$crate::domain::principal::StoredKey>> {
                keys::find(self, id, now).await
            }

            async fn list_keys(
                &self,
                tenant: Option<&str>,
            ) -> $crate::domain::Result<Vec<$crate::domain::principal::ApiKey>> {
                keys::list(self, tenant).await
            }

            async fn revoke_key(
                &self,
                id: &str,
                now: $crate::domain::Micros,
            ) -> $crate::domain::Result<$crate::domain::principal::ApiKey> {
                keys::revoke(self, id, now).await
            }

            async fn delete_session(
                &self,
                tenant: &str,
                session_key: &str,
                audit: $crate::domain::Audit,
            ) -> $crate::domain::Result<$crate::store::lifecycle::Deleted> {
                let tx = self.handoff_tx($crate::store::Scope::Tenant(tenant)).await?;
                self.positioned($crate::store::lifecycle::delete(tx, tenant, session_key, audit)).await
            }

            async fn fork_session(
                &self,
                fork: $crate::store::lifecycle::NewFork,
                audit: $crate::domain::Audit,
            ) -> $crate::domain::Result<$crate::store::Created<$crate::domain::Session>> {
                let tx = self.handoff_tx($crate::store::Scope::Tenant(&fork.tenant)).await?;
                self.positioned($crate::store::lifecycle::fork(tx, fork, audit)).await
            }

            async fn redact_entries(
                &self,
                tenant: &str,
                session_key: &str,
                seqs: &[u64],
                expected_last_seq: Option<u64>,
                redaction: $crate::domain::Redaction,
                audit: $crate::domain::Audit,
            ) -> $crate::domain::Result<($crate::domain::Session, Vec<$crate::domain::Entry>)> {
                let tx = self.handoff_tx($crate::store::Scope::Tenant(tenant)).await?;
                self.positioned($crate::store::lifecycle::redact(
                    tx,
                    tenant,
                    session_key,
                    seqs,
                    expected_last_seq,
                    redaction,
                    audit,
                ))
                .await
            }

            async fn compact_session(
                &self,
                tenant: &str,
                session_key: &str,
                before_seq: u64,
                force: bool,
                audit: $crate::domain::Audit,
            ) -> $crate::domain::Result<($crate::domain::Session, u64)> {
                let tx = self.handoff_tx($crate::store::Scope::Tenant(tenant)).await?;
                self.positioned($crate::store::lifecycle::compact(tx, tenant, session_key, before_seq, force, audit))
                    .await
            }

            async fn audit_log(
                &self,
                tenant: &str,
                session_key: &str,
            ) -> $crate::domain::Result<Vec<$crate::domain::Audit>> {
                lifecycle::audit_log(self, tenant, session_key).await
            }

            async fn purgeable_sessions(
                &self,
                expired_before: $crate::domain::Micros,
                limit: u32,
            ) -> $crate::domain::Result<Vec<(String, String)>> {
                lifecycle::purgeable(self, expired_before, limit).await
            }

            async fn retention_candidates(
                &self,
                all: bool,
                after_id: i64,
                limit: u32,
            ) -> $crate::domain::Result<Vec<$crate::domain::Session>> {
                lifecycle::retention_candidates(self, all, after_id, limit).await
            }

            async fn first_seq_since(
                &self,
                tenant: &str,
                session_key: &str,
                since: $crate::domain::Micros,
            ) -> $crate::domain::Result<Option<u64>> {
                lifecycle::first_seq_since(self, tenant, session_key, since).await
            }
        }
    };
}
