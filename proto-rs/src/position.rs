//! Read-your-writes positions, the one definition the server, the Rust client and the MCP
//! gateway share. A server with PostgreSQL read replicas answers a write with the log position
//! it is committed at ([`LSN_HEADER`], 16 upper-case hexadecimal digits, so the highest is the
//! greatest string); a caller that sends the highest it was told back ([`MIN_LSN_HEADER`]) reads
//! from a replica only once that replica has replayed it.

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::metadata::MetadataMap;

/// The response header with the log position of what a call wrote (or a replica read).
pub const LSN_HEADER: &str = "baton-lsn";
/// The request header with the highest log position the caller has been told.
pub const MIN_LSN_HEADER: &str = "baton-min-lsn";

/// A header value as a position: 1 to 16 hexadecimal digits.
pub fn parse(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The header form of a position: 16 upper-case hexadecimal digits.
pub fn format(position: u64) -> String {
    format!("{position:016X}")
}

/// The highest position a caller has been told, shared by everything that calls for it
/// (a client and its clones, or a whole gateway). 0: none yet.
#[derive(Debug, Default)]
pub struct Highest(AtomicU64);

impl Highest {
    /// Keeps the position a response carries, if it is higher.
    pub fn note(&self, response: &MetadataMap) {
        if let Some(position) = response.get(LSN_HEADER).and_then(|v| v.to_str().ok()).and_then(parse) {
            self.0.fetch_max(position, Ordering::Relaxed);
        }
    }

    /// Asks a request's reads to reflect the highest position, unless the caller set one.
    pub fn attach(&self, request: &mut MetadataMap) {
        if let Some(position) = self.get()
            && !request.contains_key(MIN_LSN_HEADER)
            && let Ok(value) = position.parse()
        {
            request.insert(MIN_LSN_HEADER, value);
        }
    }

    /// The highest position in header form; `None` before the first.
    pub fn get(&self) -> Option<String> {
        let position = self.0.load(Ordering::Relaxed);
        (position > 0).then(|| format(position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_print_in_order() {
        assert_eq!(parse("16B3748"), Some(0x16B_3748));
        assert_eq!(format(0x16B_3748), "00000000016B3748");
        assert_eq!(parse(&format(u64::MAX)), Some(u64::MAX));
        for bad in ["", "0/16B3748", "xyz", "00000000000000001", "-1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(format(0xA) < format(0x10));
    }

    #[test]
    fn the_highest_is_kept_and_sent_unless_the_caller_set_one() {
        let highest = Highest::default();
        let mut request = MetadataMap::new();
        highest.attach(&mut request);
        assert!(request.get(MIN_LSN_HEADER).is_none());
        for told in ["00000000000000A0", "0000000000000010", "garbage"] {
            let mut response = MetadataMap::new();
            response.insert(LSN_HEADER, told.parse().unwrap());
            highest.note(&response);
        }
        assert_eq!(highest.get().as_deref(), Some("00000000000000A0"));
        highest.attach(&mut request);
        assert_eq!(request.get(MIN_LSN_HEADER).unwrap(), "00000000000000A0");
        let mut own = MetadataMap::new();
        own.insert(MIN_LSN_HEADER, "1".parse().unwrap());
        highest.attach(&mut own);
        assert_eq!(own.get(MIN_LSN_HEADER).unwrap(), "1");
    }
}
