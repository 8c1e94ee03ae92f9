//! API keys in PostgreSQL (statements in `store::keys`).

use super::{PgStore, ts};
use crate::domain::principal::{ApiKey, StoredKey};
use crate::domain::{Micros, Result};
use crate::store::error::unique_or;
use crate::store::keys::{INSERT_KEY, LIST_KEYS, REVOKE_KEY, USE_KEY, key_at, not_found};

pub(super) async fn create(store: &PgStore, key: &ApiKey, secret_hash: &[u8]) -> Result<()> {
    let insert = sqlx::query(INSERT_KEY)
        .bind(&key.id)
        .bind(&key.tenant)
        .bind(key.role.as_str())
        .bind(&key.agent)
        .bind(&key.name)
        .bind(secret_hash)
        .bind(ts(key.created_at)?)
        .bind(key.expires_at.map(ts).transpose()?)
        .execute(&store.pool);
    store.sql.run("INSERT", "api_keys", insert).await.map_err(|e| unique_or(e, "api key", &key.id))?;
    Ok(())
}

pub(super) async fn find(store: &PgStore, id: &str, now: Micros) -> Result<Option<StoredKey>> {
    let used = sqlx::query(USE_KEY).bind(id).bind(ts(now)?).fetch_optional(&store.pool);
    store.sql.run("UPDATE", "api_keys", used).await?.as_ref().map(key_at).transpose()
}

pub(super) async fn list(store: &PgStore, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
    let list = sqlx::query(LIST_KEYS).bind(tenant.unwrap_or_default()).fetch_all(&store.pool);
    store.sql.run("SELECT", "api_keys", list).await?.iter().map(|r| key_at(r).map(|k| k.key)).collect()
}

pub(super) async fn revoke(store: &PgStore, id: &str, now: Micros) -> Result<ApiKey> {
    let revoke = sqlx::query(REVOKE_KEY).bind(id).bind(ts(now)?).fetch_optional(&store.pool);
    let row = store.sql.run("UPDATE", "api_keys", revoke).await?.ok_or_else(|| not_found(id))?;
    Ok(key_at(&row)?.key)
}
