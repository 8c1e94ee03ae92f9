-- Data lifecycle: forks, compaction and retention, legal hold, redaction, deletion with
-- gap-free inboxes, and the audit log (the counterpart of migrations/postgres/0004).

ALTER TABLE sessions ADD COLUMN forked_from_key TEXT;
ALTER TABLE sessions ADD COLUMN forked_from_seq INTEGER;
ALTER TABLE sessions ADD COLUMN first_seq INTEGER NOT NULL DEFAULT 1 CHECK (first_seq >= 1);
ALTER TABLE sessions ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1));
ALTER TABLE sessions ADD COLUMN retention_keep_latest INTEGER NOT NULL DEFAULT 0 CHECK (retention_keep_latest >= 0);
ALTER TABLE sessions ADD COLUMN retention_max_age_us INTEGER NOT NULL DEFAULT 0 CHECK (retention_max_age_us >= 0);
CREATE INDEX sessions_expired ON sessions (expires_at) WHERE status = 'expired';

ALTER TABLE entries ADD COLUMN redacted_at INTEGER;
ALTER TABLE entries ADD COLUMN redacted_by TEXT;
ALTER TABLE entries ADD COLUMN redaction_reason TEXT;

-- Inbox events outlive their handoff as tombstones (SQLite cannot alter a foreign key, so the
-- table is rebuilt; dropping the child table violates nothing).
CREATE TABLE inbox_events_v2 (
    tenant     TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    cursor     INTEGER NOT NULL CHECK (cursor > 0),
    handoff_pk INTEGER REFERENCES handoffs (id) ON DELETE SET NULL,
    handoff_id TEXT    NOT NULL,
    event      TEXT    NOT NULL
        CHECK (event IN ('created', 'accepted', 'rejected', 'completed', 'cancelled', 'expired', 'deleted')),
    status     TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent, cursor)
) STRICT, WITHOUT ROWID;

INSERT INTO inbox_events_v2 (tenant, agent, cursor, handoff_pk, handoff_id, event, status, reason, updated_at)
SELECT ev.tenant, ev.agent, ev.cursor, ev.handoff_pk, h.handoff_id, ev.event, ev.status, ev.reason, ev.updated_at
FROM inbox_events ev JOIN handoffs h ON h.id = ev.handoff_pk;

DROP TABLE inbox_events;
ALTER TABLE inbox_events_v2 RENAME TO inbox_events;
CREATE INDEX inbox_events_handoff ON inbox_events (handoff_pk);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    session_key TEXT    NOT NULL,
    principal   TEXT    NOT NULL DEFAULT '',
    agent       TEXT    NOT NULL DEFAULT '',
    seqs        TEXT    NOT NULL DEFAULT '',
    reason      TEXT    NOT NULL DEFAULT '',
    at          INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_log_tenant_session ON audit_log (tenant, session_key, id);
