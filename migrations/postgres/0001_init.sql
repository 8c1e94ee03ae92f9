-- Baton's PostgreSQL schema. Timestamps are written by the server (microsecond precision,
-- the clock the domain controls), never by now().

CREATE TABLE sessions (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           TEXT        NOT NULL,
    session_key      TEXT        NOT NULL,
    created_by       TEXT        NOT NULL,
    owner            TEXT        NOT NULL,
    status           TEXT        NOT NULL
        CHECK (status IN ('active', 'dormant', 'handed_off', 'closed', 'expired')),
    metadata         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    last_seq         BIGINT      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_summary_seq BIGINT      NOT NULL DEFAULT 0 CHECK (last_summary_seq >= 0),
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    last_activity_at TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ,
    CONSTRAINT sessions_tenant_key UNIQUE (tenant, session_key)
);

-- ListSessions pages newest first, unfiltered or by status; the agent filter (created_by OR
-- owner) runs as two index scans merged.
CREATE INDEX sessions_tenant_id ON sessions (tenant, id DESC);
CREATE INDEX sessions_tenant_owner ON sessions (tenant, owner, id DESC);
CREATE INDEX sessions_tenant_created_by ON sessions (tenant, created_by, id DESC);
CREATE INDEX sessions_tenant_status ON sessions (tenant, status, id DESC);
-- The expiry sweeper only looks at open sessions that have an expiry.
CREATE INDEX sessions_expiry ON sessions (expires_at)
    WHERE status IN ('active', 'dormant', 'handed_off') AND expires_at IS NOT NULL;

CREATE TABLE entries (
    session_id      BIGINT      NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq             BIGINT      NOT NULL CHECK (seq > 0),
    kind            TEXT        NOT NULL
        CHECK (kind IN ('message', 'file', 'tool_call', 'tool_result', 'system', 'summary')),
    role            TEXT        NOT NULL,
    author          TEXT        NOT NULL,
    content_text    TEXT,
    content_data    BYTEA,
    media_type      TEXT        NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    token_count     INTEGER     NOT NULL CHECK (token_count >= 0),
    idempotency_key TEXT        NOT NULL DEFAULT '',
    trace_id        TEXT        NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    -- Capped so one huge entry cannot exceed the tsvector size limit and fail its append.
    search          TSVECTOR GENERATED ALWAYS AS
        (to_tsvector('english', left(coalesce(content_text, ''), 262144))) STORED,
    PRIMARY KEY (session_id, seq),
    CONSTRAINT entries_one_content CHECK ((content_text IS NULL) <> (content_data IS NULL))
);

CREATE INDEX entries_search ON entries USING GIN (search);
CREATE INDEX entries_session_kind ON entries (session_id, kind, seq);

-- Idempotency records: an append's key and the seqs it wrote.
CREATE TABLE appends (
    session_id      BIGINT      NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    idempotency_key TEXT        NOT NULL,
    first_seq       BIGINT      NOT NULL,
    last_seq        BIGINT      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, idempotency_key)
);

CREATE TABLE handoffs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       TEXT        NOT NULL,
    handoff_id   TEXT        NOT NULL,
    session_id   BIGINT      NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    session_key  TEXT        NOT NULL,
    from_agent   TEXT        NOT NULL,
    to_agent     TEXT        NOT NULL,
    type         TEXT        NOT NULL
        CHECK (type IN ('context_transfer', 'full_handoff', 'collaboration')),
    status       TEXT        NOT NULL
        CHECK (status IN ('pending', 'accepted', 'rejected', 'completed', 'cancelled', 'expired')),
    instructions TEXT        NOT NULL DEFAULT '',
    summary      TEXT        NOT NULL DEFAULT '',
    up_to_seq    BIGINT      NOT NULL,
    max_tokens   INTEGER     NOT NULL CHECK (max_tokens >= 0),
    reason       TEXT        NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    deadline     TIMESTAMPTZ,
    CONSTRAINT handoffs_tenant_handoff_id UNIQUE (tenant, handoff_id)
);

CREATE INDEX handoffs_tenant_to ON handoffs (tenant, to_agent, id DESC);
CREATE INDEX handoffs_tenant_from ON handoffs (tenant, from_agent, id DESC);
CREATE INDEX handoffs_session ON handoffs (session_id, id DESC);
CREATE INDEX handoffs_tenant_status ON handoffs (tenant, status, id DESC);
CREATE INDEX handoffs_due ON handoffs (deadline) WHERE status = 'pending';
-- An agent's pending inbox (WatchHandoffs' first page) reads only what is still open, however
-- long the agent's history is.
CREATE INDEX handoffs_pending_to ON handoffs (tenant, to_agent) WHERE status = 'pending';

-- Each agent's inbox: cursors 1, 2, 3 … without gaps. The head row is upserted in the
-- transaction that writes the event, so its row lock hands out cursors in commit order.
CREATE TABLE inbox_heads (
    tenant      TEXT   NOT NULL,
    agent       TEXT   NOT NULL,
    last_cursor BIGINT NOT NULL,
    PRIMARY KEY (tenant, agent)
);

CREATE TABLE inbox_events (
    tenant     TEXT        NOT NULL,
    agent      TEXT        NOT NULL,
    cursor     BIGINT      NOT NULL,
    handoff_pk BIGINT      NOT NULL REFERENCES handoffs (id) ON DELETE CASCADE,
    event      TEXT        NOT NULL
        CHECK (event IN ('created', 'accepted', 'rejected', 'completed', 'cancelled', 'expired')),
    -- The handoff's state right after the event.
    status     TEXT        NOT NULL,
    reason     TEXT        NOT NULL DEFAULT '',
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, agent, cursor)
);

-- Joins from a handoff to its events (pending inbox) and the cascade on delete.
CREATE INDEX inbox_events_handoff ON inbox_events (handoff_pk);
