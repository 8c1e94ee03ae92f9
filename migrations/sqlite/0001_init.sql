-- Baton's embedded (SQLite) schema, the counterpart of migrations/postgres. Timestamps are
-- INTEGER microseconds since the Unix epoch written by the server from the clock the domain
-- controls, never by the database. Metadata is JSON text.

CREATE TABLE sessions (
    -- AUTOINCREMENT: ids are keyset cursors handed to clients, so they are never reused.
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant           TEXT    NOT NULL,
    session_key      TEXT    NOT NULL,
    created_by       TEXT    NOT NULL,
    owner            TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('active', 'dormant', 'handed_off', 'closed', 'expired')),
    metadata         TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    last_seq         INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_summary_seq INTEGER NOT NULL DEFAULT 0 CHECK (last_summary_seq >= 0),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    expires_at       INTEGER,
    UNIQUE (tenant, session_key)
) STRICT;

-- ListSessions pages newest first, unfiltered, by status, or by agent (created_by OR owner,
-- which SQLite can answer with two index scans).
CREATE INDEX sessions_tenant_id ON sessions (tenant, id);
CREATE INDEX sessions_tenant_owner ON sessions (tenant, owner, id);
CREATE INDEX sessions_tenant_created_by ON sessions (tenant, created_by, id);
CREATE INDEX sessions_tenant_status ON sessions (tenant, status, id);
-- The expiry sweeper only looks at open sessions that have an expiry.
CREATE INDEX sessions_expiry ON sessions (expires_at)
    WHERE status IN ('active', 'dormant', 'handed_off') AND expires_at IS NOT NULL;

CREATE TABLE entries (
    -- The full-text index refers to entries by rowid. An implicit rowid may be renumbered by
    -- VACUUM, which would silently detach the index from its rows, so the rowid is an
    -- explicit column and (session_id, seq) is the unique key instead of the primary key.
    id              INTEGER PRIMARY KEY,
    session_id      INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL CHECK (seq > 0),
    kind            TEXT    NOT NULL
        CHECK (kind IN ('message', 'file', 'tool_call', 'tool_result', 'system', 'summary')),
    role            TEXT    NOT NULL,
    author          TEXT    NOT NULL,
    content_text    TEXT,
    content_data    BLOB,
    media_type      TEXT    NOT NULL,
    metadata        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    token_count     INTEGER NOT NULL CHECK (token_count >= 0),
    idempotency_key TEXT    NOT NULL DEFAULT '',
    trace_id        TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    UNIQUE (session_id, seq),
    CHECK ((content_text IS NULL) <> (content_data IS NULL))
) STRICT;

CREATE INDEX entries_session_kind ON entries (session_id, kind, seq);

-- Full-text search over text content. External content: the index stores no second copy of
-- the text, snippet() reads it from entries. The triggers keep the two in step.
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    content_text,
    content = 'entries',
    content_rowid = 'id',
    tokenize = 'porter unicode61'
);

CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries
WHEN new.content_text IS NOT NULL
BEGIN
    INSERT INTO entries_fts (rowid, content_text) VALUES (new.id, new.content_text);
END;

CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries
WHEN old.content_text IS NOT NULL
BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, content_text)
    VALUES ('delete', old.id, old.content_text);
END;

-- Entries are never edited by Baton; this keeps the index right if one is edited by hand.
CREATE TRIGGER entries_fts_update AFTER UPDATE OF content_text ON entries
BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, content_text)
    SELECT 'delete', old.id, old.content_text WHERE old.content_text IS NOT NULL;
    INSERT INTO entries_fts (rowid, content_text)
    SELECT new.id, new.content_text WHERE new.content_text IS NOT NULL;
END;

-- Idempotency records: an append's key and the seqs it wrote.
CREATE TABLE appends (
    session_id      INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    idempotency_key TEXT    NOT NULL,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (session_id, idempotency_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE handoffs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT    NOT NULL,
    handoff_id   TEXT    NOT NULL,
    session_id   INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    session_key  TEXT    NOT NULL,
    from_agent   TEXT    NOT NULL,
    to_agent     TEXT    NOT NULL,
    type         TEXT    NOT NULL
        CHECK (type IN ('context_transfer', 'full_handoff', 'collaboration')),
    status       TEXT    NOT NULL
        CHECK (status IN ('pending', 'accepted', 'rejected', 'completed', 'cancelled', 'expired')),
    instructions TEXT    NOT NULL DEFAULT '',
    summary      TEXT    NOT NULL DEFAULT '',
    up_to_seq    INTEGER NOT NULL CHECK (up_to_seq >= 0),
    max_tokens   INTEGER NOT NULL CHECK (max_tokens >= 0),
    reason       TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    deadline     INTEGER,
    UNIQUE (tenant, handoff_id)
) STRICT;

CREATE INDEX handoffs_tenant_id ON handoffs (tenant, id);
CREATE INDEX handoffs_tenant_to ON handoffs (tenant, to_agent, id);
CREATE INDEX handoffs_tenant_from ON handoffs (tenant, from_agent, id);
CREATE INDEX handoffs_session ON handoffs (session_id, id);
CREATE INDEX handoffs_tenant_status ON handoffs (tenant, status, id);
-- An agent's pending inbox starts from its few pending handoffs, not its whole history.
CREATE INDEX handoffs_pending_to ON handoffs (tenant, to_agent) WHERE status = 'pending';
-- The expiry sweeper only looks at pending handoffs with a deadline.
CREATE INDEX handoffs_due ON handoffs (deadline)
    WHERE status = 'pending' AND deadline IS NOT NULL;

-- Each agent's inbox: cursors 1, 2, 3 … without gaps. The head is bumped in the transaction
-- that writes the event; writers are serialised, so cursors follow commit order.
CREATE TABLE inbox_heads (
    tenant      TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    last_cursor INTEGER NOT NULL CHECK (last_cursor > 0),
    PRIMARY KEY (tenant, agent)
) STRICT, WITHOUT ROWID;

CREATE TABLE inbox_events (
    tenant     TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    cursor     INTEGER NOT NULL CHECK (cursor > 0),
    handoff_pk INTEGER NOT NULL REFERENCES handoffs (id) ON DELETE CASCADE,
    event      TEXT    NOT NULL
        CHECK (event IN ('created', 'accepted', 'rejected', 'completed', 'cancelled', 'expired')),
    -- The handoff's state right after the event.
    status     TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent, cursor)
) STRICT, WITHOUT ROWID;

-- Joins from a handoff to its events (pending inbox) and serves the cascade on delete.
CREATE INDEX inbox_events_handoff ON inbox_events (handoff_pk);
