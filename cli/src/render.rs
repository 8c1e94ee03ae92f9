//! The human format: aligned tables for lists, label/value blocks for one record, RFC 3339
//! times, enum values by their short lower-case names, entry text shortened to one line.

use std::io::{self, Write};

use baton_client::v1::{self, EntryKind, HandoffEventType, HandoffStatus, HandoffType, SessionStatus, entry::Content};
use prost_types::Timestamp;

/// How many characters of an entry's text a one-line view keeps.
pub const TEXT_WIDTH: usize = 72;

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header = self.header.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `label  value` lines, the labels padded to the longest.
pub fn fields(out: &mut impl Write, fields: &[(&str, String)]) -> io::Result<()> {
    let width = fields.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in fields {
        writeln!(out, "{label:<width$}  {value}")?;
    }
    Ok(())
}

/// RFC 3339 in UTC to the second (lists), or `-` when unset.
pub fn time(t: Option<&Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| Timestamp { seconds: t.seconds, nanos: 0 }.to_string())
}

/// RFC 3339 in UTC with the fraction the server stored (single records), or `-`.
pub fn time_exact(t: Option<&Timestamp>) -> String {
    t.map_or_else(|| "-".into(), Timestamp::to_string)
}

/// An enum value's name without its type prefix, lower-case: `ENTRY_KIND_TOOL_CALL` → `tool_call`.
fn short(name: Option<&str>, prefix: &str, raw: i32) -> String {
    match name {
        Some(name) => name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase(),
        None => format!("unknown({raw})"),
    }
}

pub fn kind(raw: i32) -> String {
    short(EntryKind::try_from(raw).ok().map(|v| v.as_str_name()), "ENTRY_KIND_", raw)
}

pub fn session_status(raw: i32) -> String {
    short(SessionStatus::try_from(raw).ok().map(|v| v.as_str_name()), "SESSION_STATUS_", raw)
}

pub fn handoff_status(raw: i32) -> String {
    short(HandoffStatus::try_from(raw).ok().map(|v| v.as_str_name()), "HANDOFF_STATUS_", raw)
}

pub fn handoff_type(raw: i32) -> String {
    short(HandoffType::try_from(raw).ok().map(|v| v.as_str_name()), "HANDOFF_TYPE_", raw)
}

pub fn event_type(raw: i32) -> String {
    short(HandoffEventType::try_from(raw).ok().map(|v| v.as_str_name()), "HANDOFF_EVENT_TYPE_", raw)
}

/// A search score with four significant digits, however small (the stores' scales differ).
pub fn score(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) { format!("{x:.4}") } else { format!("{x:.3e}") }
}

/// `-` for an empty string, so that columns stay readable.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

/// Text on one line (whitespace runs become one space), cut to `width` characters with `…`.
pub fn one_line(text: &str, width: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        return flat;
    }
    let mut cut: String = flat.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// What an entry holds, for one line: its text shortened, or the size and type of its data.
pub fn entry_summary(entry: &v1::Entry) -> String {
    if entry.redacted {
        return "[redacted]".into();
    }
    match &entry.content {
        Some(Content::Text(text)) => one_line(text, TEXT_WIDTH),
        Some(Content::Data(data)) => format!("<{} bytes{}>", data.len(), media(&entry.media_type)),
        None => String::new(),
    }
}

fn media(media_type: &str) -> String {
    if media_type.is_empty() { String::new() } else { format!(" of {media_type}") }
}

/// The whole content of an entry: its text, or a note on its data (binary is not printed).
pub fn entry_content(entry: &v1::Entry) -> String {
    if entry.redacted {
        return "[redacted]".into();
    }
    match &entry.content {
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Data(data)) => {
            format!("<{} bytes{}; --json prints them in base64>", data.len(), media(&entry.media_type))
        }
        None => String::new(),
    }
}

/// The session table's columns.
pub const SESSION_COLUMNS: &[&str] =
    &["SESSION", "STATUS", "OWNER", "CREATED BY", "LAST SEQ", "LAST ACTIVITY", "CREATED"];

pub fn session_row(s: &v1::Session) -> Vec<String> {
    vec![
        s.session_key.clone(),
        session_status(s.status),
        s.owner.clone(),
        s.created_by.clone(),
        s.last_seq.to_string(),
        time(s.last_activity_at.as_ref()),
        time(s.created_at.as_ref()),
    ]
}

/// The entry table's columns.
pub const ENTRY_COLUMNS: &[&str] = &["SEQ", "TIME", "KIND", "ROLE", "AUTHOR", "TOKENS", "TEXT"];

pub fn entry_row(e: &v1::Entry) -> Vec<String> {
    vec![
        e.seq.to_string(),
        time(e.created_at.as_ref()),
        kind(e.kind),
        or_dash(&e.role),
        or_dash(&e.author),
        e.token_count.to_string(),
        entry_summary(e),
    ]
}

/// The handoff table's columns.
pub const HANDOFF_COLUMNS: &[&str] =
    &["HANDOFF", "STATUS", "TYPE", "SESSION", "FROM", "TO", "UP TO", "CREATED", "DEADLINE"];

pub fn handoff_row(h: &v1::Handoff) -> Vec<String> {
    vec![
        h.handoff_id.clone(),
        handoff_status(h.status),
        handoff_type(h.r#type),
        h.session_key.clone(),
        h.from_agent.clone(),
        h.to_agent.clone(),
        h.up_to_seq.to_string(),
        time(h.created_at.as_ref()),
        time(h.deadline.as_ref()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["SEQ", "TEXT"]);
        t.row(vec!["1".into(), "short".into()]);
        t.row(vec!["1000".into(), "é".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "SEQ   TEXT\n1     short\n1000  é\n");
    }

    #[test]
    fn text_is_flattened_and_cut() {
        assert_eq!(one_line("a\n\tb  c", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 5), "abcd…");
        assert_eq!(one_line("ééééé", 5), "ééééé");
    }

    #[test]
    fn enums_and_times_read_short() {
        assert_eq!(kind(EntryKind::ToolResult.into()), "tool_result");
        assert_eq!(session_status(SessionStatus::HandedOff.into()), "handed_off");
        assert_eq!(kind(42), "unknown(42)");
        let t = Timestamp { seconds: 1_700_000_000, nanos: 250_000_000 };
        assert_eq!(time(Some(&t)), "2023-11-14T22:13:20Z");
        assert_eq!(time_exact(Some(&t)), "2023-11-14T22:13:20.250Z");
        assert_eq!(time(None), "-");
        assert_eq!(score(9.407894736842107e-7), "9.408e-7");
        assert_eq!(score(12.5), "12.5000");
        assert_eq!(score(0.0), "0.0000");
    }
}
