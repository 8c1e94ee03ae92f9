-- Idempotent creates: CreateSession and ForkSession take an idempotency key scoped to the
-- tenant (one namespace for both: a key names one session creation), RequestHandoff one
-- scoped to the handoff's session. A repeat with a key already used writes nothing and returns
-- what the first call created. The key is kept on the row it created, so it goes with it
-- (DeleteSession, the purge) and needs no policy or grant of its own: the rows' tenant
-- isolation (0003) and baton_app's table grants cover the new columns. NULL: no key.
--
-- The server looks a session key up under a transaction-scoped advisory lock on (tenant, key)
-- and a handoff key under its session's row lock, so concurrent calls with one key create one
-- row; the unique indexes are the last line of that guarantee.

ALTER TABLE sessions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX sessions_tenant_idempotency_key ON sessions (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE handoffs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX handoffs_session_idempotency_key ON handoffs (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
