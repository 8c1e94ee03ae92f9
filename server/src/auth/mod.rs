//! Authentication and quotas: who a call is from, and whether it may be made now.
//!
//! - `keys`: the API key format, generation and the peppered HMAC-SHA-256 of secrets.
//! - [`Authenticator`]: turns the `authorization: Bearer …` / `x-api-key` header into a
//!   [`Principal`] (`--auth api-key`), or the anonymous admin (`--auth none`). Verified keys are
//!   cached in-process for `--auth-cache-secs` (by id, and whole verified keys so that a key
//!   seen before is not hashed again), so a call costs no database round trip and a
//!   revocation reaches every replica within that bound; a lookup (a cache miss) also stamps the
//!   key's `last_used_at`, so that costs one write per key per period and replica.
//! - [`required_role`]: the role each gRPC method needs.
//! - `quota`: per-principal token buckets and caps on open streams.
//!
//! `api::ContextLayer` calls these once per request and puts the result into the request's
//! extensions; handlers never read credentials or the tenant header themselves.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use prometheus::IntCounterVec;

use crate::clock::Clock;
use crate::domain::principal::{ApiKey, Principal, Role};
use crate::domain::validate::Violations;
use crate::domain::{Error, Micros, Result};
use crate::store::Store;

pub mod keys;
pub mod quota;

pub use quota::{QuotaConfig, Quotas, StreamPermit};

/// The request header naming the tenant; absent means [`DEFAULT_TENANT`].
pub const TENANT_HEADER: &str = "x-baton-tenant";
pub const DEFAULT_TENANT: &str = "default";
/// The alternative to `authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Most keys (known and unknown) held in the verification cache.
const CACHE_CAPACITY: u64 = 100_000;

/// `--auth`: whether calls must present an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every caller is an admin of the tenant it names (`x-baton-tenant`). Only for a server
    /// nobody else can reach.
    None,
    /// Every call presents an API key (`batond keys create`).
    ApiKey,
}

/// A new key, as `batond keys create` prints it: the token is shown this once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub token: String,
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub tenant: String,
    pub role: Role,
    pub agent: Option<String>,
    pub name: String,
    pub expires_in: Option<Duration>,
}

/// Creates a key in `store`: the secret is hashed with `hasher` and never stored.
pub async fn issue(store: &dyn Store, hasher: &keys::Hasher, spec: KeySpec, now: Micros) -> Result<IssuedKey> {
    let mut v = Violations::default();
    let tenant = v.key("tenant", &spec.tenant);
    let agent = spec.agent.as_deref().and_then(|a| v.optional_key("agent", a));
    let name = v.text("name", &spec.name, 200);
    v.finish()?;
    let (id, token) = keys::generate();
    let secret = keys::parse(&token).expect("a generated key parses").secret;
    let key = ApiKey {
        id,
        tenant,
        role: spec.role,
        agent,
        name,
        created_at: now,
        expires_at: spec.expires_in.map(|d| now.plus(d)),
        revoked_at: None,
        last_used_at: None,
    };
    store.create_key(&key, &hasher.hash(secret)).await?;
    Ok(IssuedKey { key, token })
}

/// Authenticates calls; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: keys::Hasher,
    /// Key id → the stored key, or `None` for an id the store does not know.
    cache: moka::future::Cache<String, Option<Arc<crate::domain::principal::StoredKey>>>,
    /// Whole keys already verified → their record, for the same time: a call with a key seen
    /// before costs one in-memory lookup (no hash). Held only in this process's memory.
    verified: moka::sync::Cache<String, Arc<crate::domain::principal::StoredKey>>,
    failures: IntCounterVec,
}

impl Authenticator {
    pub fn new(
        mode: AuthMode,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: keys::Hasher,
        cache_ttl: Duration,
    ) -> Authenticator {
        let cache = moka::future::Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(cache_ttl).build();
        let verified = moka::sync::Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(cache_ttl).build();
        let failures = baton_telemetry::metrics::counter(
            "auth_failures_total",
            "Calls refused by authentication or authorization, by reason.",
            &["reason"],
        );
        Authenticator { mode, store, clock, hasher, cache, verified, failures }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// `auth_failures_total`, for the server's registry.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.failures.clone())
    }

    /// The principal of a call and the tenant it acts for, from its headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<(Principal, String)> {
        let named = named_tenant(headers)?;
        let principal = match self.mode {
            AuthMode::None => Principal::anonymous(named.clone().unwrap_or_else(|| DEFAULT_TENANT.to_owned())),
            AuthMode::ApiKey => {
                self.verify(headers).await.inspect_err(|(reason, _)| self.fail(reason)).map_err(|e| e.1)?
            }
        };
        let tenant = match named {
            Some(t) if t != principal.tenant => {
                if principal.role != Role::Admin {
                    self.fail("tenant");
                    return Err(Error::PermissionDenied(format!(
                        "this key belongs to tenant {:?}; only admin keys may act for another tenant",
                        principal.tenant
                    )));
                }
                t
            }
            _ => principal.tenant.clone(),
        };
        Ok((principal, tenant))
    }

    /// Counts a refusal.
    pub fn fail(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    async fn verify(&self, headers: &HeaderMap) -> std::result::Result<Principal, (&'static str, Error)> {
        let unauthenticated =
            |reason: &'static str, message: &str| (reason, Error::Unauthenticated(message.to_owned()));
        let token = match credential(headers) {
            Credential::Missing => {
                return Err(unauthenticated(
                    "missing",
                    "an API key is required: send `authorization: Bearer <key>` or `x-api-key: <key>`",
                ));
            }
            Credential::Malformed => return Err(unauthenticated("malformed", "the credential is not a Baton API key")),
            Credential::Key(token) => token,
        };
        if let Some(known) = self.verified.get(token) {
            return self.usable(&known);
        }
        let presented =
            keys::parse(token).ok_or_else(|| unauthenticated("malformed", "the credential is not a Baton API key"))?;
        let store = Arc::clone(&self.store);
        let now = self.clock.now();
        let id = presented.id.to_owned();
        let stored = self
            .cache
            .try_get_with(id.clone(), async move { store.find_key(&id, now).await.map(|k| k.map(Arc::new)) })
            .await
            .map_err(|e: Arc<Error>| ("store", Error::Unavailable(format!("cannot verify the API key: {e}"))))?;
        let Some(stored) = stored.filter(|s| self.hasher.verify(presented.secret, &s.secret_hash)) else {
            return Err(unauthenticated("unknown", "unknown API key"));
        };
        self.verified.insert(token.to_owned(), Arc::clone(&stored));
        self.usable(&stored)
    }

    /// The principal of a verified key, unless it is revoked or expired by now.
    fn usable(
        &self,
        stored: &crate::domain::principal::StoredKey,
    ) -> std::result::Result<Principal, (&'static str, Error)> {
        if let Some(why) = stored.key.unusable(self.clock.now()) {
            return Err((why, Error::Unauthenticated(format!("the API key is {why}"))));
        }
        let k = &stored.key;
        Ok(Principal { key_id: k.id.clone(), tenant: k.tenant.clone(), role: k.role, agent: k.agent.clone() })
    }
}

enum Credential<'a> {
    Missing,
    Malformed,
    Key(&'a str),
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else { return Credential::Malformed };
        return match v.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => Credential::Key(key.trim()),
            _ => Credential::Malformed,
        };
    }
    match headers.get(API_KEY_HEADER).map(|v| v.to_str()) {
        None => Credential::Missing,
        Some(Ok(key)) => Credential::Key(key.trim()),
        Some(Err(_)) => Credential::Malformed,
    }
}

/// The tenant a call names in `x-baton-tenant`, validated.
fn named_tenant(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(TENANT_HEADER) else { return Ok(None) };
    let mut v = Violations::default();
    match value.to_str() {
        Ok(t) => {
            let t = v.key(TENANT_HEADER, t);
            v.finish().map(|()| Some(t))
        }
        Err(_) => Err(Error::invalid(TENANT_HEADER, "must be ASCII")),
    }
}

/// The role a gRPC method of `baton.v1` needs; `None` for methods outside Baton's services
/// (health, reflection), which need no credential. Methods this table does not know need
/// `admin`, so a new RPC is closed until someone decides who may call it.
pub fn required_role(path: &str) -> Option<Role> {
    let method = path.strip_prefix("/baton.v1.")?;
    let (_, method) = method.split_once('/')?;
    Some(match method {
        "GetSession"
        | "ListSessions"
        | "ListEntries"
        | "StreamEntries"
        | "GetContextWindow"
        | "SearchEntries"
        | "GetHandoff"
        | "ListHandoffs"
        | "WatchHandoffs"
        | "StreamHandoffContext" => Role::Reader,
        "CreateSession" | "UpdateSession" | "CloseSession" | "AppendEntries" | "RequestHandoff" | "AcceptHandoff"
        | "RejectHandoff" | "CompleteHandoff" | "CancelHandoff" | "ForkSession" | "RedactEntries" => Role::Writer,
        // A writer may erase only sessions its bound agent owns (checked by the service);
        // admins any session of the tenant.
        "DeleteSession" | "CompactSession" => Role::Writer,
        _ => Role::Admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn credentials_come_from_either_header() {
        assert!(matches!(credential(&headers(&[("authorization", "Bearer bk_x")])), Credential::Key("bk_x")));
        assert!(matches!(credential(&headers(&[("authorization", "bearer  bk_x ")])), Credential::Key("bk_x")));
        assert!(matches!(credential(&headers(&[("x-api-key", "bk_y")])), Credential::Key("bk_y")));
        assert!(matches!(credential(&headers(&[("authorization", "Basic abc")])), Credential::Malformed));
        assert!(matches!(credential(&HeaderMap::new()), Credential::Missing));
    }

    #[test]
    fn tenant_header_is_validated() {
        assert_eq!(named_tenant(&HeaderMap::new()).unwrap(), None);
        assert_eq!(named_tenant(&headers(&[(TENANT_HEADER, "acme")])).unwrap().as_deref(), Some("acme"));
        let e = named_tenant(&headers(&[(TENANT_HEADER, "a b")])).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(v) if v[0].field == TENANT_HEADER));
    }

    #[test]
    fn methods_need_roles() {
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(required_role("/baton.v1.ContextService/GetContextWindow"), Some(Role::Reader));
        assert_eq!(required_role("/baton.v1.ContextService/AppendEntries"), Some(Role::Writer));
        assert_eq!(required_role("/baton.v1.HandoffService/AcceptHandoff"), Some(Role::Writer));
        assert_eq!(required_role("/baton.v1.ContextService/SomethingNew"), Some(Role::Admin));
    }
}
