//! API keys, the same on both stores: the statements (`$N` placeholders on both) and the row
//! reader. The table is not tenant-scoped: a key is looked up by its id before anyone knows
//! the caller's tenant, and it holds only hashes of secrets.

use crate::domain::principal::{ApiKey, StoredKey};
use crate::domain::{Error, Result};
use crate::store::rows::Cells;

macro_rules! key_cols {
    () => {
        "key_id, tenant, role, agent, name, created_at, expires_at, revoked_at, last_used_at, secret_hash"
    };
}

pub(super) const INSERT_KEY: &str = "INSERT INTO api_keys \
     (key_id, tenant, role, agent, name, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A key by id, stamping `last_used_at` with $2 (a verification-cache miss).
pub(super) const USE_KEY: &str =
    concat!("UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1 RETURNING ", key_cols!());

pub(super) const LIST_KEYS: &str =
    concat!("SELECT ", key_cols!(), " FROM api_keys WHERE $1 = '' OR tenant = $1 ORDER BY tenant, created_at, key_id");

/// Revokes key $1 at $2 (a key revoked before stays revoked at its first time).
pub(super) const REVOKE_KEY: &str =
    concat!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1 RETURNING ", key_cols!());

/// A row of `key_cols!`.
pub(super) fn key_at(row: &impl Cells) -> Result<StoredKey> {
    let key = ApiKey {
        id: row.text(0)?,
        tenant: row.text(1)?,
        role: row.name(2)?,
        agent: row.opt_text(3)?,
        name: row.text(4)?,
        created_at: row.time(5)?,
        expires_at: row.opt_time(6)?,
        revoked_at: row.opt_time(7)?,
        last_used_at: row.opt_time(8)?,
    };
    let secret_hash = row.opt_bytes(9)?.ok_or_else(|| Error::Internal("an API key without a hash".into()))?;
    Ok(StoredKey { key, secret_hash })
}

pub(super) fn not_found(id: &str) -> Error {
    Error::NotFound { what: "api key", key: id.to_owned() }
}
