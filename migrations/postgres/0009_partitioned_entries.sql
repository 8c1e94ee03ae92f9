-- Partitioned entries (issue 19, item 2): `entries` and `appends` (the idempotency records)
-- become declaratively partitioned BY RANGE (session_id), converted in place.
--
-- Why by session id range. `sessions.id` is an identity, so it grows with creation time, and
-- every statement on these two tables names its session (the primary keys start with
-- session_id; appends, windows, lists, replays, forks, redactions, compactions, the cascade of
-- a session's delete). Each such statement therefore prunes to ONE partition, and a range of
-- session ids is also a range of creation time: once the sessions of a range are idle, its
-- partition (and each of its indexes) stops growing, so no index grows without bound; once they
-- are all gone (deleted, purged) or due for the purge, the partition is dropped whole
-- (baton_drop_ranges). Compaction of one live session (removing its entries below a seq)
-- necessarily stays row deletes, inside that session's partition. The alternatives give only
-- one of the two: by entry time (pg_partman), a session's reads would probe every partition
-- its entries span (the key has no time in it); by session hash, every partition keeps
-- receiving new sessions forever, so none can ever be dropped and each grows without bound.
--
-- Width: sessions per partition, in baton_partitioning (one row). Default 1,000,000, so that
-- few partitions are alive: the reads that find their session by key in a subquery (lists,
-- windows, searches) can prune only when they run, so PostgreSQL plans and opens every
-- partition for them, measured at ~0.08 ms per partition and read (0.8 ms with 13
-- partitions, 8 ms with 103); a tenant-wide SearchEntries probes every partition's GIN index.
-- Keep (sessions kept) / width to a few tens: 1,000,000 holds 30 M sessions in 30 partitions,
-- a month of sessions at ~1 M a day (100x in docs/scaling.md). An operator changes it with `UPDATE baton_partitioning SET width = N` (as the tables' owner):
-- partitions created from then on have the new width, existing ones keep their bounds. The
-- width of the very first partition (the old table, below) can be chosen at the migration by
-- setting `baton.partition_width` on the migrating connection (in batond's URL:
-- `?options=-c%20baton.partition_width%3DN`); the tests use 8.
--
-- In place: the current tables are renamed `entries_p0` / `appends_p0` (indexes renamed
-- `*_p0_*`), the partitioned parents are created with the same columns, constraints, index and
-- constraint names, row-level security and grants, and the old tables are ATTACHed as the
-- first partition, FROM (MINVALUE) TO (B), B the next multiple of the width above the newest
-- session id handed out. Nothing is rewritten and no index is rebuilt: ATTACH adopts the
-- existing indexes, constraints and foreign keys because they match the parent's. Its one
-- cost is proving that every row lies below B: a CHECK (session_id < B) is added first, so
-- that ATTACH finds the proof and skips its own validation scan. Either way that is one
-- sequential read of each table (adding the CHECK reads it instead of ATTACH), under the
-- exclusive lock the rename took: plan for it on a large database (see docs/scaling.md for the
-- measured rate). The CHECK is dropped afterwards: the partition bound says the same.
--
-- Row-level security: policies, FORCE and baton_app's grants are on the parents, and a query
-- on a parent applies the parent's policies to every partition it reads. Partitions get no
-- grants to baton_app (and no policies of their own), so the serving role cannot read or write
-- a partition directly, past the policies.
--
-- Maintenance: batond connects as a role that owns nothing and cannot run DDL, so partitions
-- are made and dropped by the SECURITY DEFINER functions below (owned by the migrating role,
-- search_path pinned, EXECUTE granted to baton_app), which batond calls after migrating and
-- periodically (server/src/store/postgres/partitions.rs). A DEFAULT partition catches rows of
-- a session whose partition does not exist yet, so an insert never fails; the next
-- baton_ensure_partitions moves them into their partition.

-- The owner is bound by row-level security too (FORCE): the reads below must see every tenant.
SELECT set_config('app.all_tenants', 'on', true);

CREATE TABLE baton_partitioning (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Sessions per partition, for the partitions created from now on.
    width     BIGINT  NOT NULL CHECK (width >= 1),
    -- How many widths of ids past the newest session id handed out have partitions ready.
    ahead     INTEGER NOT NULL DEFAULT 2 CHECK (ahead >= 1)
);
INSERT INTO baton_partitioning (width)
    VALUES (coalesce(nullif(current_setting('baton.partition_width', true), '')::bigint, 1000000));

-- The old tables step aside, their indexes renamed so the parents can take the names.
ALTER TABLE entries RENAME TO entries_p0;
ALTER INDEX entries_pkey RENAME TO entries_p0_pkey;
ALTER INDEX entries_search RENAME TO entries_p0_search;
ALTER INDEX entries_session_kind RENAME TO entries_p0_session_kind;
ALTER INDEX entries_unindexed RENAME TO entries_p0_unindexed;
ALTER TABLE appends RENAME TO appends_p0;
ALTER INDEX appends_pkey RENAME TO appends_p0_pkey;

-- The parents: the columns in the old tables' order, and every constraint under its old name
-- (ATTACH matches CHECK constraints by name).
CREATE TABLE entries (
    session_id       BIGINT      NOT NULL,
    seq              BIGINT      NOT NULL CONSTRAINT entries_seq_check CHECK (seq > 0),
    kind             TEXT        NOT NULL CONSTRAINT entries_kind_check
        CHECK (kind IN ('message', 'file', 'tool_call', 'tool_result', 'system', 'summary')),
    role             TEXT        NOT NULL,
    author           TEXT        NOT NULL,
    content_text     TEXT,
    content_data     BYTEA,
    media_type       TEXT        NOT NULL,
    metadata         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    token_count      INTEGER     NOT NULL CONSTRAINT entries_token_count_check CHECK (token_count >= 0),
    idempotency_key  TEXT        NOT NULL DEFAULT '',
    trace_id         TEXT        NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL,
    tenant           TEXT        NOT NULL,
    redacted_at      TIMESTAMPTZ,
    redacted_by      TEXT,
    redaction_reason TEXT,
    -- Filled by the background indexer (0007).
    search           TSVECTOR,
    CONSTRAINT entries_pkey PRIMARY KEY (session_id, seq),
    CONSTRAINT entries_session_id_fkey FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE,
    CONSTRAINT entries_one_content CHECK ((content_text IS NULL) <> (content_data IS NULL))
) PARTITION BY RANGE (session_id);

CREATE INDEX entries_search ON entries USING GIN (search);
CREATE INDEX entries_session_kind ON entries (session_id, kind, seq);
CREATE INDEX entries_unindexed ON entries (session_id, seq) WHERE search IS NULL;

CREATE TABLE appends (
    session_id      BIGINT      NOT NULL,
    idempotency_key TEXT        NOT NULL,
    first_seq       BIGINT      NOT NULL,
    last_seq        BIGINT      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    tenant          TEXT        NOT NULL,
    CONSTRAINT appends_pkey PRIMARY KEY (session_id, idempotency_key),
    CONSTRAINT appends_session_id_fkey FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE
) PARTITION BY RANGE (session_id);

-- Row-level security moves to the parents (as 0003 set it on the tables).
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'appends'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (baton_tenant_visible(tenant)) '
                       'WITH CHECK (baton_tenant_visible(tenant))', t);
        EXECUTE format('DROP POLICY tenant_isolation ON %I', t || '_p0');
        EXECUTE format('ALTER TABLE %I NO FORCE ROW LEVEL SECURITY', t || '_p0');
        EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t || '_p0');
    END LOOP;
END
$$;

-- The old tables become the first partitions, up to the next multiple of the width above the
-- newest session id handed out (the sequence's, which is at least max(sessions.id)).
DO $$
DECLARE
    width  BIGINT := (SELECT p.width FROM baton_partitioning p);
    issued BIGINT := (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sessions_id_seq);
    bound  BIGINT;
    t      TEXT;
BEGIN
    issued := greatest(issued, coalesce((SELECT max(id) FROM sessions), 0));
    bound := (issued / width + 1) * width;
    FOREACH t IN ARRAY ARRAY['entries', 'appends'] LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (session_id < %s)', t || '_p0', t || '_p0_range', bound);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%s)', t, t || '_p0', bound);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t || '_p0', t || '_p0_range');
    END LOOP;
END
$$;

-- The safety net: a row whose partition does not exist yet (batond's maintenance fell behind,
-- or does not run) lands here instead of failing its append.
CREATE TABLE entries_default PARTITION OF entries DEFAULT;
CREATE TABLE appends_default PARTITION OF appends DEFAULT;

-- The range partitions of a parent and their bounds (lo NULL: MINVALUE), from the catalog.
CREATE FUNCTION baton_partition_ranges(parent REGCLASS) RETURNS TABLE (part REGCLASS, lo BIGINT, hi BIGINT)
    LANGUAGE sql STABLE
    AS $$
        SELECT c.oid::regclass,
               nullif(substring(b FROM 'FROM \(''?([^'')]*)''?\)'), 'MINVALUE')::bigint,
               substring(b FROM 'TO \(''?([^'')]*)''?\)')::bigint
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL pg_get_expr(c.relpartbound, c.oid) AS b
        WHERE i.inhparent = parent AND b <> 'DEFAULT'
    $$;

-- The newest session id handed out (0 before the first).
CREATE FUNCTION baton_sessions_issued() RETURNS BIGINT
    LANGUAGE sql STABLE
    AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sessions_id_seq $$;

-- Adds the partition [lo, hi) to `parent`: made as a plain table, filled with the rows of that
-- range that went to the DEFAULT partition meanwhile (moved, not copied), then ATTACHed.
-- ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so appends and reads go on
-- (CREATE TABLE … PARTITION OF would take an exclusive one); it builds the partition's
-- indexes and foreign key and checks that DEFAULT holds nothing of the range (a scan of
-- DEFAULT, normally empty).
CREATE FUNCTION baton_add_partition(parent TEXT, lo BIGINT, hi BIGINT) RETURNS VOID
    LANGUAGE plpgsql
    AS $$
    DECLARE
        part TEXT := format('%s_p%s', parent, lo);
    BEGIN
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE session_id >= $1 AND session_id < $2 RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved', parent || '_default', part)
            USING lo, hi;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', parent, part, lo, hi);
    END
    $$;

-- Makes sure the partitions exist up to `ahead` widths beyond the newest session id handed
-- out, contiguous from the highest bound (so a change of width never leaves a gap or an
-- overlap), moving any rows DEFAULT caught into them. Returns how many ranges it added.
-- Replicas call it concurrently: an advisory lock (held to the end of the caller's
-- transaction) makes them take turns. lock_timeout: DDL that waits for a long query must not
-- make every append queue behind it; it fails instead and the next call retries. It is
-- shorter than deadlock_timeout (1 s by default): when this DDL and a transaction wait for each
-- other (the transaction read `entries`, locking DEFAULT, and now writes `sessions`, whose
-- lock the new partition's foreign key needs), the maintenance is the one that gives up.
CREATE FUNCTION baton_ensure_partitions() RETURNS INTEGER
    LANGUAGE plpgsql SECURITY DEFINER
    SET lock_timeout = '200ms'
    AS $$
    DECLARE
        cfg    baton_partitioning;
        issued BIGINT;
        top    BIGINT;
        added  INTEGER := 0;
        -- The caller's own setting, restored before returning: ATTACH validates the moved
        -- rows' foreign key against sessions, which must see every tenant for that; the
        -- caller's transaction must not.
        before TEXT := current_setting('app.all_tenants', true);
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('baton_partitions'));
        PERFORM set_config('app.all_tenants', 'on', true);
        SELECT * INTO STRICT cfg FROM baton_partitioning;
        issued := baton_sessions_issued();
        top := (SELECT max(r.hi) FROM baton_partition_ranges('entries') r);
        IF top IS NULL THEN
            RAISE EXCEPTION 'entries has no range partition (migration 0009 makes the first one)';
        END IF;
        WHILE top <= issued + cfg.ahead * cfg.width LOOP
            PERFORM baton_add_partition('entries', top, top + cfg.width);
            PERFORM baton_add_partition('appends', top, top + cfg.width);
            top := top + cfg.width;
            added := added + 1;
        END LOOP;
        PERFORM set_config('app.all_tenants', coalesce(before, ''), true);
        RETURN added;
    END
    $$;

-- The lower bound of the partition new sessions get ids in: every range partition wholly
-- below it is closed, since ids only grow and a whole partition of them has been handed out
-- since (no transaction still about to insert a session there). -1 when that partition is
-- the first (nothing is below it); past the last bound when the newest ids are in DEFAULT.
CREATE FUNCTION baton_closed_below() RETURNS BIGINT
    LANGUAGE sql STABLE
    AS $$
        SELECT coalesce(
            (SELECT coalesce(r.lo, -1) FROM baton_partition_ranges('entries') r
             WHERE (r.lo IS NULL OR r.lo <= baton_sessions_issued()) AND baton_sessions_issued() < r.hi),
            (SELECT max(r.hi) FROM baton_partition_ranges('entries') r))
    $$;

-- Whether [lo, hi) still has a session to keep: any session, or with `due_before` set, one
-- not due for the purge (the purge sweep's condition, PURGEABLE in
-- server/src/store/lifecycle.rs: expired at or before `due_before`, not under legal hold).
-- Stops at the first such session.
CREATE FUNCTION baton_range_kept(lo BIGINT, hi BIGINT, due_before TIMESTAMPTZ) RETURNS BOOLEAN
    LANGUAGE sql STABLE
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM sessions s
            WHERE s.id < hi AND (lo IS NULL OR s.id >= lo)
              AND (due_before IS NULL
                   OR NOT coalesce(s.status = 'expired' AND s.expires_at <= due_before AND NOT s.legal_hold, false)))
    $$;

-- Drops the entries and appends partitions of each closed range with no session left to keep
-- (nothing can be inserted into a closed range again): one DROP instead of row deletes, no
-- dead tuples, no vacuum, the space back at once. Returns how many ranges it dropped.
--
-- With `due_before` NULL (batond's maintenance, every minute), the ranges whose sessions are
-- all gone, deleted or purged one by one. With `due_before` set (the purge sweep, before it
-- deletes expired sessions one by one: server/src/store/postgres/lifecycle.rs), also the
-- ranges whose every session left is due for the purge: retention by partition. Those
-- sessions are first marked compacted down to nothing (first_seq = last_seq + 1, summary
-- state unknown), with their rows locked, in this transaction; their purge then deletes only
-- the session rows (with audit records and inbox tombstones as usual) and no entry row.
-- Should a legal hold land before that, the session is valid (held, all compacted), not half
-- purged. Cheap when nothing is due: one probe per closed range, which stops at its first
-- session to keep. DROP takes an exclusive lock on the parent for a moment, bounded by
-- lock_timeout as in baton_ensure_partitions.
CREATE FUNCTION baton_drop_ranges(due_before TIMESTAMPTZ) RETURNS INTEGER
    LANGUAGE plpgsql SECURITY DEFINER
    SET lock_timeout = '200ms'
    AS $$
    DECLARE
        r       RECORD;
        ap      REGCLASS;
        dropped INTEGER := 0;
        -- As in baton_ensure_partitions: the sessions must be seen whatever their tenant.
        before  TEXT := current_setting('app.all_tenants', true);
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('baton_partitions'));
        PERFORM set_config('app.all_tenants', 'on', true);
        FOR r IN
            SELECT p.part, p.lo, p.hi FROM baton_partition_ranges('entries') p
            WHERE p.hi <= baton_closed_below() ORDER BY p.hi
        LOOP
            -- Checked, then locked (only a range that looks droppable: a lock writes each
            -- row) and checked again: a legal hold either committed before or waits.
            CONTINUE WHEN baton_range_kept(r.lo, r.hi, due_before);
            PERFORM 1 FROM sessions s WHERE s.id < r.hi AND (r.lo IS NULL OR s.id >= r.lo) ORDER BY s.id FOR UPDATE;
            CONTINUE WHEN baton_range_kept(r.lo, r.hi, due_before);
            UPDATE sessions s SET first_seq = s.last_seq + 1, summary_counts = NULL, summary_names = NULL
                WHERE s.id < r.hi AND (r.lo IS NULL OR s.id >= r.lo);
            EXECUTE format('DROP TABLE %s', r.part);
            SELECT a.part INTO ap FROM baton_partition_ranges('appends') a
                WHERE a.lo IS NOT DISTINCT FROM r.lo AND a.hi = r.hi;
            IF ap IS NOT NULL THEN
                EXECUTE format('DROP TABLE %s', ap);
            END IF;
            dropped := dropped + 1;
        END LOOP;
        PERFORM set_config('app.all_tenants', coalesce(before, ''), true);
        RETURN dropped;
    END
    $$;

-- Pinned search paths (the schema this migration runs in, temporary objects last), so a
-- caller's search_path cannot redirect the owner's DDL; baton_app may call the two entry
-- points and nothing else of this.
DO $$
DECLARE
    path TEXT := format('%I, pg_temp', current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION baton_partition_ranges(REGCLASS) SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION baton_sessions_issued() SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION baton_add_partition(TEXT, BIGINT, BIGINT) SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION baton_ensure_partitions() SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION baton_closed_below() SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION baton_range_kept(BIGINT, BIGINT, TIMESTAMPTZ) SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION baton_drop_ranges(TIMESTAMPTZ) SET search_path = %s', path);
END
$$;
REVOKE ALL ON FUNCTION baton_partition_ranges(REGCLASS), baton_sessions_issued(),
    baton_add_partition(TEXT, BIGINT, BIGINT), baton_closed_below(), baton_ensure_partitions(),
    baton_range_kept(BIGINT, BIGINT, TIMESTAMPTZ), baton_drop_ranges(TIMESTAMPTZ) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') THEN
        -- As 0003 granted them on the old tables, which keep none.
        GRANT SELECT, INSERT, UPDATE, DELETE ON entries, appends TO baton_app;
        REVOKE ALL ON entries_p0, appends_p0 FROM baton_app;
        GRANT EXECUTE ON FUNCTION baton_ensure_partitions(), baton_drop_ranges(TIMESTAMPTZ) TO baton_app;
    END IF;
END
$$;

-- The current range and the ones ahead exist before this migration's transaction ends.
SELECT baton_ensure_partitions();
