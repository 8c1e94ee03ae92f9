-- This database's Baton identity: one random id, made once. Redis keys and bus channels carry
-- it (cache::keys), so deployments on different databases that share a Redis never read each
-- other's cached entries or hear each other's live appends, and a database created anew (a
-- fresh test or benchmark database behind the same Redis) starts with an empty cache instead
-- of version floors left by the last one.
CREATE TABLE baton_instance (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    id       TEXT NOT NULL
);
INSERT INTO baton_instance (id) VALUES (md5(random()::text || clock_timestamp()::text));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') THEN
        GRANT SELECT ON baton_instance TO baton_app;
    END IF;
END
$$;
