-- API keys (`batond keys`): looked up by their public id; only an HMAC of the secret is kept.
-- Not tenant-scoped by row-level security: a key is read before its caller's tenant is known.
CREATE TABLE api_keys (
    key_id       TEXT        PRIMARY KEY,
    tenant       TEXT        NOT NULL,
    role         TEXT        NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    agent        TEXT,
    name         TEXT        NOT NULL DEFAULT '',
    secret_hash  BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
