-- API keys (`batond keys`): looked up by their public id; only an HMAC of the secret is kept.
CREATE TABLE api_keys (
    key_id       TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    agent        TEXT,
    name         TEXT    NOT NULL DEFAULT '',
    secret_hash  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;

CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
