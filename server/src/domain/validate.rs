//! Input rules: what a well-formed key, name, page size or entry is. Validation collects
//! every violation of a request, so a client fixes them all at once.

use super::search::Query;
use super::{Error, FieldViolation, Metadata, Result};

/// Longest session key, agent name, tenant or idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest role.
pub const MAX_ROLE_LEN: usize = 64;
/// Longest media type.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;
/// Largest metadata object, JSON-encoded.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Longest handoff instructions.
pub const MAX_INSTRUCTIONS_BYTES: usize = 64 * 1024;
/// Longest rejection or cancellation reason.
pub const MAX_REASON_BYTES: usize = 4 * 1024;
/// Longest search query (the language is `search`'s).
pub const MAX_QUERY_BYTES: usize = 1024;
/// Default and largest page of sessions, entries and handoffs.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Default and largest page of search hits.
pub const DEFAULT_SEARCH_PAGE_SIZE: u32 = 20;
pub const MAX_SEARCH_PAGE_SIZE: u32 = 100;
/// Default token budget of context windows and handoff packages.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// Largest token budget a request may ask for: 2^31 - 1, far above any model's context, and
/// what both stores keep (a 32-bit INTEGER column).
pub const MAX_TOKENS: u32 = i32::MAX as u32;
/// Default and largest entry count of a context window.
pub const DEFAULT_WINDOW_ENTRIES: u32 = 500;
pub const MAX_WINDOW_ENTRIES: u32 = 10_000;

/// Size limits of appends; configurable per server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest content of one entry, in bytes.
    pub max_entry_bytes: usize,
    /// Largest total content and metadata of one append, in bytes.
    pub max_append_bytes: usize,
    /// Most entries in one append.
    pub max_entries_per_append: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_entry_bytes: 1024 * 1024, max_append_bytes: 8 * 1024 * 1024, max_entries_per_append: 1000 }
    }
}

/// The violations found so far in one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// A required key or name: 1 to 128 bytes of ASCII letters, digits and `. _ : @ -`.
    pub fn key(&mut self, field: &str, value: &str) -> String {
        if value.is_empty() {
            self.add(field, "is required");
        } else {
            self.key_chars(field, value);
        }
        value.to_owned()
    }

    /// An optional key or name: empty means absent.
    pub fn optional_key(&mut self, field: &str, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        self.key_chars(field, value);
        Some(value.to_owned())
    }

    fn key_chars(&mut self, field: &str, value: &str) {
        if value.len() > MAX_KEY_LEN {
            self.add(field, format!("must be at most {MAX_KEY_LEN} bytes, got {}", value.len()));
        } else if let Some(c) = value.chars().find(|c| !is_key_char(*c)) {
            self.add(field, format!("may contain only ASCII letters, digits and . _ : @ -; found {c:?}"));
        }
    }

    /// A free text of at most `max` bytes, without NUL characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        if value.len() > max {
            self.add(field, format!("must be at most {max} bytes, got {}", value.len()));
        }
        self.no_nul(field, value);
        value.to_owned()
    }

    /// Text may not contain U+0000: PostgreSQL cannot store it, and no client means it.
    pub fn no_nul(&mut self, field: &str, value: &str) {
        if let Some(at) = value.find('\0') {
            self.add(field, format!("must not contain the NUL character (U+0000), found at byte {at}"));
        }
    }

    /// A search query: required, at most [`MAX_QUERY_BYTES`], without NUL, and well-formed in
    /// the query language (`search`); `None` when it is not.
    pub fn search_query(&mut self, field: &str, value: &str) -> Option<Query> {
        if value.trim().is_empty() {
            self.add(field, "is required");
            return None;
        }
        let before = self.0.len();
        self.text(field, value, MAX_QUERY_BYTES);
        if self.0.len() > before {
            return None;
        }
        Query::parse(value).map_err(|problem| self.add(field, problem)).ok()
    }

    /// A page size: 0 means `default`; otherwise 1..=max.
    pub fn page_size(&mut self, field: &str, value: u32, default: u32, max: u32) -> u32 {
        match value {
            0 => default,
            v if v > max => {
                self.add(field, format!("must be between 1 and {max} (0 for {default}), got {v}"));
                default
            }
            v => v,
        }
    }

    /// A token budget (`max_tokens` of a context window or a handoff): at most [`MAX_TOKENS`];
    /// 0 stays 0 (the caller's default applies).
    pub fn max_tokens(&mut self, field: &str, value: u32) -> u32 {
        if value > MAX_TOKENS {
            self.add(field, format!("must be at most {MAX_TOKENS}, got {value}"));
        }
        value
    }

    /// Metadata must encode to at most 64 KiB of JSON. Returns its encoded size.
    pub fn metadata(&mut self, field: &str, value: &Metadata) -> usize {
        let len = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
        if len > MAX_METADATA_BYTES {
            self.add(field, format!("must encode to at most {MAX_METADATA_BYTES} bytes of JSON, got {len}"));
        }
        len
    }

    /// An enum given as its wire number: `None` (after recording a violation) when unknown.
    pub fn enumeration<T>(&mut self, field: &str, value: i32, parse: impl FnOnce(i32) -> Option<T>) -> Option<T> {
        let parsed = parse(value);
        if parsed.is_none() {
            self.add(field, format!("unknown or unspecified value {value}"));
        }
        parsed
    }

    pub fn merge(&mut self, other: Result<()>) {
        if let Err(Error::InvalidArgument(v)) = other {
            self.0.extend(v);
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(self.0)) }
    }
}

pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let mut v = Violations::default();
        v.key("a", "ok.key_1:x@y-z");
        assert!(v.0.is_empty());
        v.key("b", "");
        v.key("c", "no spaces");
        v.key("d", &"x".repeat(129));
        assert_eq!(v.0.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["b", "c", "d"]);
    }

    #[test]
    fn token_budgets() {
        let mut v = Violations::default();
        assert_eq!(v.max_tokens("max_tokens", 0), 0);
        assert_eq!(v.max_tokens("max_tokens", MAX_TOKENS), MAX_TOKENS);
        assert!(v.0.is_empty());
        v.max_tokens("max_tokens", MAX_TOKENS + 1);
        v.max_tokens("max_tokens", u32::MAX);
        assert_eq!(v.0.len(), 2);
        assert_eq!(v.0[0].description, "must be at most 2147483647, got 2147483648");
    }

    #[test]
    fn search_queries() {
        let mut v = Violations::default();
        assert!(v.search_query("query", "deploy -staging").is_some());
        assert!(v.0.is_empty());
        for bad in ["", " ", "a\0b", "the", "-x", "\"open"] {
            assert!(v.search_query("query", bad).is_none(), "{bad:?}");
        }
        assert!(v.search_query("query", &"x".repeat(MAX_QUERY_BYTES + 1)).is_none());
        let said: Vec<&str> = v.0.iter().map(|f| f.description.as_str()).collect();
        assert_eq!(said.len(), 7, "one violation each: {said:?}");
        assert_eq!(said[2], "must not contain the NUL character (U+0000), found at byte 1");
        assert_eq!(said[6], "must be at most 1024 bytes, got 1025");
    }

    #[test]
    fn page_sizes() {
        let mut v = Violations::default();
        assert_eq!(v.page_size("p", 0, 100, 1000), 100);
        assert_eq!(v.page_size("p", 1000, 100, 1000), 1000);
        assert!(v.0.is_empty());
        v.page_size("p", 1001, 100, 1000);
        assert_eq!(v.0.len(), 1);
    }
}
