//! Opaque page tokens. A token names the list it belongs to, so a token from one list is
//! rejected by another instead of silently returning the wrong page.

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

/// Encodes the position after which the next page starts.
pub fn encode(kind: PageKind, position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{position}", kind.tag()))
}

/// Decodes a token of `kind`; an empty token is `None` (the first page).
pub fn decode(kind: PageKind, token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed =
        || Error::invalid("page_token", "malformed page token: pass back the next_page_token of the same list");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let raw = std::str::from_utf8(&raw).map_err(|_| malformed())?;
    let rest = raw.strip_prefix("v1:").and_then(|r| r.strip_prefix(kind.tag())).and_then(|r| r.strip_prefix(':'));
    let position = rest.and_then(|p| p.parse::<i64>().ok()).filter(|p| *p >= 0).ok_or_else(malformed)?;
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_or_garbled_tokens() {
        let t = encode(PageKind::Entries, 42);
        assert_eq!(decode(PageKind::Entries, &t).unwrap(), Some(42));
        assert_eq!(decode(PageKind::Entries, "").unwrap(), None);
        assert!(decode(PageKind::Sessions, &t).is_err());
        assert!(decode(PageKind::Entries, "!!!").is_err());
        assert!(decode(PageKind::Entries, &URL_SAFE_NO_PAD.encode("v1:entries:-3")).is_err());
    }
}
