//! API key material: `bk_<id>_<secret>`, where `id` (16 hex digits) is public and names the
//! key in the store, and `secret` is 32 random bytes (base64url, 43 characters).
//!
//! Only `HMAC-SHA-256(pepper, secret)` is stored. The secret is 256 random bits, so nobody can
//! guess it from its hash however fast the hash is; a slow password hash (argon2id) protects
//! low-entropy passwords and would only add milliseconds to every cache miss here. The pepper
//! (`--key-pepper`, default a fixed label) keeps a stolen database dump from being checked
//! offline against keys stolen elsewhere; changing it invalidates every key. Comparison is
//! constant-time (`Mac::verify_slice`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every key starts with, so it is recognizable in logs and by secret scanners.
pub const PREFIX: &str = "bk_";
const ID_LEN: usize = 16;
const SECRET_BYTES: usize = 32;
/// The pepper when none is configured.
const DEFAULT_PEPPER: &[u8] = b"baton-api-key-v1";

/// A key as presented by a caller, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Splits `bk_<id>_<secret>`; `None` when the token does not have that shape.
pub fn parse(token: &str) -> Option<Presented<'_>> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?.strip_prefix('_')?);
    let id_ok = id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() == 43 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(Presented { id, secret })
}

/// A new key: its id and the whole token (shown once, never stored).
pub fn generate() -> (String, String) {
    let mut id = [0u8; ID_LEN / 2];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut id).expect("the operating system's random source");
    getrandom::fill(&mut secret).expect("the operating system's random source");
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    (id, token)
}

/// Hashes and checks secrets with one pepper.
#[derive(Clone)]
pub struct Hasher {
    pepper: Vec<u8>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher { pepper: <redacted> }")
    }
}

impl Hasher {
    /// `pepper`: the configured one, or `None` for the default.
    pub fn new(pepper: Option<&str>) -> Hasher {
        let pepper = pepper.filter(|p| !p.is_empty()).map_or(DEFAULT_PEPPER.to_vec(), |p| p.as_bytes().to_vec());
        Hasher { pepper }
    }

    fn mac(&self, secret: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.pepper).expect("HMAC takes keys of any length");
        mac.update(secret.as_bytes());
        mac
    }

    pub fn hash(&self, secret: &str) -> Vec<u8> {
        self.mac(secret).finalize().into_bytes().to_vec()
    }

    /// Constant-time comparison of `secret`'s hash with `stored`.
    pub fn verify(&self, secret: &str, stored: &[u8]) -> bool {
        self.mac(secret).verify_slice(stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let (id, token) = generate();
        let p = parse(&token).expect("a generated key parses");
        assert_eq!(p.id, id);
        let h = Hasher::new(None);
        let stored = h.hash(p.secret);
        assert!(h.verify(p.secret, &stored));
        assert!(!Hasher::new(Some("another pepper")).verify(p.secret, &stored));
        let (_, other) = generate();
        assert!(!h.verify(parse(&other).unwrap().secret, &stored));
        assert_ne!(generate().1, token);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let (_, token) = generate();
        for bad in [
            "",
            "bk_",
            &token[..token.len() - 1],
            &format!("{token}x"),
            &token.replace("bk_", "xx_"),
            &format!("bk_ABCDEF0123456789_{}", &token[20..]),
            "Bearer something",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
