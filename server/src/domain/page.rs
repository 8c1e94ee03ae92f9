//! Opaque page tokens. A token names the list it belongs to and carries a digest of that list,
//! the tenant and the position, so a token from one list or tenant is rejected by another
//! (`INVALID_ARGUMENT`) instead of silently returning the wrong page, and a garbled one is
//! caught. The digest is not secret: a caller who forges one gains only a position in its own
//! tenant's list, which row filters and row-level security bound anyway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

fn digest(kind: PageKind, tenant: &str, position: i64) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{}\n{tenant}\n{position}", kind.tag()));
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes the position after which the next page of `tenant`'s list starts.
pub fn encode(kind: PageKind, tenant: &str, position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v2:{}:{position}:{}", kind.tag(), digest(kind, tenant, position)))
}

/// Decodes a token of `kind` issued to `tenant`; an empty token is `None` (the first page).
pub fn decode(kind: PageKind, tenant: &str, token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || {
        Error::invalid("page_token", "invalid page token: pass back the next_page_token of the same list and tenant")
    };
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let raw = std::str::from_utf8(&raw).map_err(|_| malformed())?;
    let rest = raw.strip_prefix("v2:").and_then(|r| r.strip_prefix(kind.tag())).and_then(|r| r.strip_prefix(':'));
    let (position, tag) = rest.and_then(|r| r.split_once(':')).ok_or_else(malformed)?;
    let position = position.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(malformed)?;
    if tag != digest(kind, tenant, position) {
        return Err(malformed());
    }
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_or_garbled_tokens() {
        let t = encode(PageKind::Entries, "a", 42);
        assert_eq!(decode(PageKind::Entries, "a", &t).unwrap(), Some(42));
        assert_eq!(decode(PageKind::Entries, "a", "").unwrap(), None);
        assert!(decode(PageKind::Sessions, "a", &t).is_err(), "another list");
        assert!(decode(PageKind::Entries, "b", &t).is_err(), "another tenant");
        assert!(decode(PageKind::Entries, "a", "!!!").is_err());
        assert!(decode(PageKind::Entries, "a", &URL_SAFE_NO_PAD.encode("v1:entries:42")).is_err());
        let moved = URL_SAFE_NO_PAD.encode(format!("v2:entries:43:{}", digest(PageKind::Entries, "a", 42)));
        assert!(decode(PageKind::Entries, "a", &moved).is_err(), "a changed position");
    }
}
