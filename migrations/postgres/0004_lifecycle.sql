-- Data lifecycle: forks, compaction and retention, legal hold, redaction, deletion with
-- gap-free inboxes, and the audit log.

-- Row-level security binds the owner too (FORCE): the backfill below must see every tenant.
SELECT set_config('app.all_tenants', 'on', true);

ALTER TABLE sessions
    ADD COLUMN forked_from_key       TEXT,
    ADD COLUMN forked_from_seq       BIGINT,
    -- The oldest seq still stored; last_seq + 1 when compaction removed everything.
    ADD COLUMN first_seq             BIGINT  NOT NULL DEFAULT 1 CHECK (first_seq >= 1),
    ADD COLUMN legal_hold            BOOLEAN NOT NULL DEFAULT false,
    -- 0: no limit of that kind (both 0: the server's default retention).
    ADD COLUMN retention_keep_latest BIGINT  NOT NULL DEFAULT 0 CHECK (retention_keep_latest >= 0),
    ADD COLUMN retention_max_age_us  BIGINT  NOT NULL DEFAULT 0 CHECK (retention_max_age_us >= 0);

-- Expired sessions are purged some time after they expired.
CREATE INDEX sessions_expired ON sessions (expires_at) WHERE status = 'expired';

-- A redacted entry keeps its row (seq, kind, role, author, times); its content is '' and its
-- metadata {}, so the generated search vector is empty too.
ALTER TABLE entries
    ADD COLUMN redacted_at      TIMESTAMPTZ,
    ADD COLUMN redacted_by      TEXT,
    ADD COLUMN redaction_reason TEXT;

-- Inbox events outlive their handoff (deleted with its session) as tombstones, so cursors stay
-- gap-free: the event keeps the handoff's id, and its link to the row becomes NULL.
ALTER TABLE inbox_events ADD COLUMN handoff_id TEXT;
UPDATE inbox_events ev SET handoff_id = h.handoff_id FROM handoffs h WHERE h.id = ev.handoff_pk;
ALTER TABLE inbox_events ALTER COLUMN handoff_id SET NOT NULL;
ALTER TABLE inbox_events ALTER COLUMN handoff_pk DROP NOT NULL;
ALTER TABLE inbox_events DROP CONSTRAINT inbox_events_handoff_pk_fkey;
ALTER TABLE inbox_events ADD CONSTRAINT inbox_events_handoff_pk_fkey
    FOREIGN KEY (handoff_pk) REFERENCES handoffs (id) ON DELETE SET NULL;
ALTER TABLE inbox_events DROP CONSTRAINT inbox_events_event_check;
ALTER TABLE inbox_events ADD CONSTRAINT inbox_events_event_check
    CHECK (event IN ('created', 'accepted', 'rejected', 'completed', 'cancelled', 'expired', 'deleted'));

-- Every lifecycle action (delete, fork, redact, compact, legal hold, retention, purge).
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    action      TEXT        NOT NULL,
    session_key TEXT        NOT NULL,
    -- The API key id ('' without authentication or for the server's own sweeps).
    principal   TEXT        NOT NULL DEFAULT '',
    agent       TEXT        NOT NULL DEFAULT '',
    -- The seqs concerned, as ranges, e.g. '1-40' or '3,7'.
    seqs        TEXT        NOT NULL DEFAULT '',
    reason      TEXT        NOT NULL DEFAULT '',
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_tenant_session ON audit_log (tenant, session_key, id);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (baton_tenant_visible(tenant)) WITH CHECK (baton_tenant_visible(tenant));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') THEN
        -- Append-only for the server: it may not rewrite history.
        GRANT SELECT, INSERT ON audit_log TO baton_app;
        GRANT USAGE, SELECT ON SEQUENCE audit_log_id_seq TO baton_app;
    END IF;
END
$$;
