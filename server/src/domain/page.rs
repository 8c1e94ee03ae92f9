//! Opaque page tokens. A token is the position after which the next page starts, encrypted
//! and authenticated (ChaCha20-Poly1305, a random nonce per token) under a key derived from the
//! server's secret, with the list, the tenant and the list's query (its filters: see each
//! command's `page_scope`) as associated data. So a token reveals nothing (not even a row id),
//! and one changed, forged, or taken to another list, tenant or query is `INVALID_ARGUMENT`
//! instead of a wrong page.
//!
//! The key is process-wide: [`set_secret`] derives it from `--key-pepper` at start-up, so every
//! replica sharing the pepper accepts the others' tokens (a restart too). Without a pepper the
//! key comes from a fixed label: tokens stay opaque and bound, but someone who knows the label
//! could forge a position within a list they may read anyway.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::{Error, Result};

/// Which list a token continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Sessions,
    Entries,
    Search,
    Handoffs,
}

impl PageKind {
    fn tag(self) -> &'static str {
        match self {
            PageKind::Sessions => "sessions",
            PageKind::Entries => "entries",
            PageKind::Search => "search",
            PageKind::Handoffs => "handoffs",
        }
    }
}

/// The first byte of every token: the format.
const VERSION: u8 = 3;
/// The label the key is derived from without a secret, and the context of the derivation.
const LABEL: &[u8] = b"baton page tokens v3";

static KEY: OnceLock<LessSafeKey> = OnceLock::new();

/// Derives the token key from the server's secret (`--key-pepper`); the first call wins (every
/// server in one process shares the key). Returns false when a key was already in use.
pub fn set_secret(secret: &[u8]) -> bool {
    KEY.set(derive(secret)).is_ok()
}

fn derive(secret: &[u8]) -> LessSafeKey {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(LABEL);
    let bytes = mac.finalize().into_bytes();
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("a 32-byte key"))
}

fn key() -> &'static LessSafeKey {
    KEY.get_or_init(|| derive(LABEL))
}

fn aad(kind: PageKind, tenant: &str, scope: &str) -> Vec<u8> {
    [kind.tag().as_bytes(), b"\n", tenant.as_bytes(), b"\n", scope.as_bytes()].concat()
}

/// Encodes the position after which the next page of `tenant`'s list (with the filters
/// `scope`) starts.
pub fn encode(kind: PageKind, tenant: &str, scope: &str, position: i64) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut sealed = position.to_be_bytes().to_vec();
    key()
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(kind, tenant, scope)), &mut sealed)
        .expect("sealing 8 bytes cannot fail");
    let token: Vec<u8> = [&[VERSION][..], &nonce, &sealed].concat();
    URL_SAFE_NO_PAD.encode(token)
}

/// Decodes a token of `kind` issued to `tenant` for the same `scope`; an empty token is
/// `None` (the first page).
pub fn decode(kind: PageKind, tenant: &str, scope: &str, token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || {
        Error::invalid(
            "page_token",
            "invalid page token: pass back the next_page_token of the same list, query and tenant",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let (&version, rest) = raw.split_first().ok_or_else(malformed)?;
    if version != VERSION || rest.len() != NONCE_LEN + 8 + CHACHA20_POLY1305.tag_len() {
        return Err(malformed());
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
    let mut sealed = sealed.to_vec();
    let plain =
        key().open_in_place(nonce, Aad::from(aad(kind, tenant, scope)), &mut sealed).map_err(|_| malformed())?;
    let position = i64::from_be_bytes(plain.try_into().map_err(|_| malformed())?);
    if position < 0 {
        return Err(malformed());
    }
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_or_changed_tokens() {
        let t = encode(PageKind::Entries, "a", "s1", 42);
        assert_eq!(decode(PageKind::Entries, "a", "s1", &t).unwrap(), Some(42));
        assert_eq!(decode(PageKind::Entries, "a", "s1", "").unwrap(), None);
        assert!(decode(PageKind::Sessions, "a", "s1", &t).is_err(), "another list");
        assert!(decode(PageKind::Entries, "b", "s1", &t).is_err(), "another tenant");
        assert!(decode(PageKind::Entries, "a", "s2", &t).is_err(), "another query");
        assert!(decode(PageKind::Entries, "a", "s1", "!!!").is_err());
        // Every single changed bit is caught.
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() * 8 {
            let mut flipped = raw.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            assert!(decode(PageKind::Entries, "a", "s1", &URL_SAFE_NO_PAD.encode(flipped)).is_err(), "bit {i}");
        }
        // The position does not show: two tokens of one position differ, and neither holds it.
        let again = encode(PageKind::Entries, "a", "s1", 42);
        assert_ne!(t, again);
        assert!(!raw.windows(8).any(|w| w == 42i64.to_be_bytes()));
    }
}
