//! Who makes a call: a principal (an API key's tenant, role and optional agent, or the
//! anonymous admin of `--auth none`), what each role may do, and the API key records the store
//! keeps. Verifying a presented key is `crate::auth`'s; deciding what a principal may do is here.

use super::{Error, Micros, Result};

string_enum! {
    /// What a key may do; each role includes the ones before it.
    Role { Reader = "reader", Writer = "writer", Admin = "admin" }
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Reader => 0,
            Role::Writer => 1,
            Role::Admin => 2,
        }
    }

    /// True when this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key's public id; empty for the anonymous principal of `--auth none`.
    pub key_id: String,
    /// The key's own tenant (an admin may act for another one).
    pub tenant: String,
    pub role: Role,
    /// The only agent this key may act as, when it is bound to one.
    pub agent: Option<String>,
}

impl Principal {
    /// The caller when authentication is off: an admin of whatever tenant it names.
    pub fn anonymous(tenant: String) -> Principal {
        Principal { key_id: String::new(), tenant, role: Role::Admin, agent: None }
    }

    /// What quotas are counted against: the key, or the tenant when there is none.
    pub fn quota_key(&self) -> &str {
        if self.key_id.is_empty() { &self.tenant } else { &self.key_id }
    }

    /// `PermissionDenied` unless the role includes `needed`.
    pub fn require(&self, needed: Role, call: &str) -> Result<()> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{call} needs the {} role; this key has the {} role",
                needed.as_str(),
                self.role.as_str()
            )))
        }
    }

    /// `PermissionDenied` when the key is bound to an agent other than `agent` (named in
    /// `field`). An empty name is left to the request's own validation.
    pub fn act_as(&self, field: &str, agent: &str) -> Result<()> {
        match &self.agent {
            Some(bound) if !agent.is_empty() && bound != agent => {
                Err(Error::PermissionDenied(format!("{field} {agent:?}: this key may act only as agent {bound:?}")))
            }
            _ => Ok(()),
        }
    }
}

/// An API key as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part of the key (`bk_<id>_…`), its primary key.
    pub id: String,
    pub tenant: String,
    pub role: Role,
    pub agent: Option<String>,
    /// A label for people.
    pub name: String,
    pub created_at: Micros,
    pub expires_at: Option<Micros>,
    pub revoked_at: Option<Micros>,
    /// When a server last looked the key up (at most once per verification-cache period).
    pub last_used_at: Option<Micros>,
}

impl ApiKey {
    /// Why the key cannot be used at `now`, if it cannot.
    pub fn unusable(&self, now: Micros) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at.is_some_and(|at| at <= now) {
            Some("expired")
        } else {
            None
        }
    }
}

/// An API key with the hash of its secret, as the store returns it for verification.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key: ApiKey,
    pub secret_hash: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_lower_ones() {
        assert!(Role::Admin.allows(Role::Writer) && Role::Writer.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Writer) && !Role::Writer.allows(Role::Admin));
        let reader = Principal { key_id: "k".into(), tenant: "t".into(), role: Role::Reader, agent: None };
        assert!(matches!(reader.require(Role::Writer, "AppendEntries"), Err(Error::PermissionDenied(_))));
    }

    #[test]
    fn a_bound_key_acts_only_as_its_agent() {
        let p = Principal { key_id: "k".into(), tenant: "t".into(), role: Role::Writer, agent: Some("a".into()) };
        assert!(p.act_as("agent", "a").is_ok());
        assert!(matches!(p.act_as("agent", "b"), Err(Error::PermissionDenied(_))));
        assert!(Principal::anonymous("t".into()).act_as("agent", "b").is_ok());
    }

    #[test]
    fn keys_expire_and_revoke() {
        let mut k = ApiKey {
            id: "i".into(),
            tenant: "t".into(),
            role: Role::Reader,
            agent: None,
            name: String::new(),
            created_at: Micros(0),
            expires_at: Some(Micros(10)),
            revoked_at: None,
            last_used_at: None,
        };
        assert_eq!(k.unusable(Micros(9)), None);
        assert_eq!(k.unusable(Micros(10)), Some("expired"));
        k.revoked_at = Some(Micros(1));
        assert_eq!(k.unusable(Micros(0)), Some("revoked"));
    }
}
