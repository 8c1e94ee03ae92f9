-- Tenant isolation enforced by PostgreSQL itself, under the server's own checks (defense in
-- depth): every tenant-owned table carries `tenant`, and row-level security shows a
-- transaction only the rows of the tenant(s) it named with
-- `set_config('app.tenant_id', 'T', true)` (a comma-separated list for a coalesced append
-- batch). Unset, nothing is visible (fail closed). The expiry sweeper alone opts into every
-- tenant with `set_config('app.all_tenants', 'on', true)`. FORCE makes the policies bind the
-- tables' owner too; batond should still connect as a role that owns nothing (baton_app below).

ALTER TABLE entries ADD COLUMN tenant TEXT;
UPDATE entries e SET tenant = s.tenant FROM sessions s WHERE s.id = e.session_id;
ALTER TABLE entries ALTER COLUMN tenant SET NOT NULL;

ALTER TABLE appends ADD COLUMN tenant TEXT;
UPDATE appends a SET tenant = s.tenant FROM sessions s WHERE s.id = a.session_id;
ALTER TABLE appends ALTER COLUMN tenant SET NOT NULL;

-- The common case, one tenant, is a plain comparison that stops at the first match; the list
-- and the sweeper's opt-in are only looked at for rows that fail it.
CREATE FUNCTION baton_tenant_visible(row_tenant TEXT) RETURNS BOOLEAN
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT row_tenant = current_setting('app.tenant_id', true)
            OR (strpos(current_setting('app.tenant_id', true), ',') > 0
                AND row_tenant = ANY (string_to_array(current_setting('app.tenant_id', true), ',')))
            OR coalesce(current_setting('app.all_tenants', true), '') = 'on'
    $$;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['sessions', 'entries', 'appends', 'handoffs', 'inbox_heads', 'inbox_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (baton_tenant_visible(tenant)) '
                       'WITH CHECK (baton_tenant_visible(tenant))', t);
    END LOOP;
END
$$;

-- The serving role: batond connects as a LOGIN role that is a member of baton_app, owns no
-- table and has no BYPASSRLS; migrations run as the tables' owner. baton_app is created here
-- when the migrating role may create roles; otherwise an administrator creates it (see the
-- README) and re-runs the grants below.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') THEN
        BEGIN
            CREATE ROLE baton_app NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'cannot create role baton_app (no CREATEROLE); create it and grant it access as the README says';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO baton_app', current_schema());
        GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, entries, appends, handoffs, inbox_heads, inbox_events
            TO baton_app;
        GRANT SELECT, INSERT, UPDATE ON api_keys TO baton_app;
        GRANT USAGE, SELECT ON SEQUENCE sessions_id_seq, handoffs_id_seq TO baton_app;
        GRANT EXECUTE ON FUNCTION baton_tenant_visible(TEXT) TO baton_app;
    END IF;
END
$$;
