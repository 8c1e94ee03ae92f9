-- Idempotent creates (the counterpart of migrations/postgres/0005): a session's idempotency
-- key is unique in its tenant (CreateSession and ForkSession share it), a handoff's in its
-- session. Kept on the row created, so it goes with it. The write transaction holds SQLite's
-- one write lock, so the lookup and the insert are atomic. NULL: no key.

ALTER TABLE sessions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX sessions_tenant_idempotency_key ON sessions (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE handoffs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX handoffs_session_idempotency_key ON handoffs (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
