//! Extractive handoff summaries: who took part, what kinds of entries there are, which files
//! and tools were referenced, and the last messages.
//!
//! Every session carries a [`SummaryState`] that its append transaction advances with the
//! entries it writes ([`SummaryState::add`]), so a handoff renders the state plus the (at most
//! [`LAST_MESSAGES`]) entries it points at, at the same cost for 10 entries or 100,000. The
//! state is bounded: counts, the first [`MAX_NAMES`] distinct names of each list, and hashes of
//! at most [`MAX_COUNTED`] further ones (past those a list says "more than N more"). The
//! stores keep it in two columns: the counts, rewritten by every append, and the names,
//! rewritten only when an append adds one. A state the store does not know (sessions from
//! before it existed, or after a redaction, compaction or fork) is rebuilt by folding the
//! session's entries once, under the session's lock, when a handoff needs it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::{Entry, EntryKind};

/// How many of the newest messages the summary quotes.
pub const LAST_MESSAGES: usize = 3;
/// How many characters of each quoted message.
const QUOTE_CHARS: usize = 280;
/// How many distinct files, tools and participants the summary names.
pub const MAX_NAMES: usize = 20;
/// How many further distinct names of a list (beyond the [`MAX_NAMES`] named) are counted
/// exactly; past that the summary says "and more than 100 more".
pub const MAX_COUNTED: usize = 100;

/// The part of a session's summary state that every append changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryCounts {
    pub entries: u64,
    pub tokens: u64,
    pub last_seq: u64,
    /// Entries by kind name.
    pub kinds: BTreeMap<String, u64>,
    /// The seqs of the newest messages with text, oldest first, at most [`LAST_MESSAGES`].
    pub messages: Vec<u64>,
}

/// The part of a session's summary state that changes only when an entry brings a new name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryNames {
    pub participants: Names,
    pub files: Names,
    pub tools: Names,
}

/// What a summary needs of all of a session's entries, kept as they arrive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryState {
    pub counts: SummaryCounts,
    pub names: SummaryNames,
}

/// The first [`MAX_NAMES`] distinct names in seq order, and how many distinct others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Names {
    names: Vec<String>,
    /// FNV-1a hashes of further distinct names, at most [`MAX_COUNTED`].
    more: Vec<u64>,
    /// A further name came when `more` was full.
    overflow: bool,
}

impl Names {
    /// Adds a name; true when the list changed.
    fn add(&mut self, name: &str) -> bool {
        if name.is_empty() || self.names.iter().any(|n| n == name) {
            return false;
        }
        if self.names.len() < MAX_NAMES {
            self.names.push(name.to_owned());
            return true;
        }
        let hash = fnv1a(name);
        if self.overflow || self.more.contains(&hash) {
            return false;
        }
        if self.more.len() < MAX_COUNTED {
            self.more.push(hash);
        } else {
            self.overflow = true;
        }
        true
    }

    fn render(&self) -> String {
        let mut s = self.names.join(", ");
        if self.overflow {
            let _ = write!(s, " and more than {MAX_COUNTED} more");
        } else if !self.more.is_empty() {
            let _ = write!(s, " and {} more", self.more.len());
        }
        s
    }
}

/// A hash that stays the same across builds and platforms (the state outlives the binary).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl SummaryState {
    /// Takes an entry (appended after every entry already in the state); returns whether
    /// the names changed.
    pub fn add(&mut self, e: &Entry) -> bool {
        let c = &mut self.counts;
        c.entries += 1;
        c.tokens += u64::from(e.token_count);
        c.last_seq = c.last_seq.max(e.seq);
        *c.kinds.entry(e.kind.as_str().to_owned()).or_default() += 1;
        let mut named = self.names.participants.add(&e.author);
        match e.kind {
            EntryKind::File => {
                if let Some(name) = meta_str(e, &["path", "file", "filename", "name", "uri"]) {
                    named |= self.names.files.add(name);
                } else if !e.media_type.is_empty() {
                    named |= self.names.files.add(&format!("({})", e.media_type));
                }
            }
            EntryKind::ToolCall | EntryKind::ToolResult => {
                if let Some(name) = meta_str(e, &["tool", "tool_name", "name", "function"]) {
                    named |= self.names.tools.add(name);
                }
            }
            EntryKind::Message if e.content.text().is_some() => {
                c.messages.push(e.seq);
                if c.messages.len() > LAST_MESSAGES {
                    c.messages.remove(0);
                }
            }
            _ => {}
        }
        named
    }

    /// The summary, given the entries at `counts.messages` (as stored now, in seq order).
    pub fn render(&self, messages: &[Entry]) -> String {
        let c = &self.counts;
        if c.entries == 0 {
            return "The session has no entries yet.".to_owned();
        }
        let mut s = String::new();
        let kinds: Vec<String> = c.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ =
            writeln!(s, "{} entries up to seq {} (~{} tokens): {}.", c.entries, c.last_seq, c.tokens, kinds.join(", "));
        let _ = writeln!(s, "Participants: {}.", self.names.participants.render());
        if !self.names.files.names.is_empty() {
            let _ = writeln!(s, "Files: {}.", self.names.files.render());
        }
        if !self.names.tools.names.is_empty() {
            let _ = writeln!(s, "Tools: {}.", self.names.tools.render());
        }
        let quoted: Vec<&Entry> = messages.iter().filter(|m| c.messages.contains(&m.seq)).collect();
        if !quoted.is_empty() {
            let _ = writeln!(s, "Last messages:");
            for m in quoted {
                let text = m.content.text().unwrap_or_default();
                let quote: String = text.chars().take(QUOTE_CHARS).collect();
                let quote = if text.chars().nth(QUOTE_CHARS).is_some() { quote + "…" } else { quote };
                let who = if m.role.is_empty() { m.author.clone() } else { format!("{} ({})", m.author, m.role) };
                let _ = writeln!(s, "- #{} {who}: {}", m.seq, quote.replace('\n', " "));
            }
        }
        s.truncate(s.trim_end().len());
        s
    }
}

/// Folds entries into a summary from scratch (the state plus the newest messages).
#[derive(Debug, Default)]
pub struct Summarizer {
    state: SummaryState,
    last_messages: VecDeque<Entry>,
}

impl Summarizer {
    pub fn add(&mut self, e: &Entry) {
        self.state.add(e);
        if e.kind == EntryKind::Message && e.content.text().is_some() {
            self.last_messages.push_back(e.clone());
            if self.last_messages.len() > LAST_MESSAGES {
                self.last_messages.pop_front();
            }
        }
    }

    /// The state of everything added so far.
    pub fn state(&self) -> &SummaryState {
        &self.state
    }

    pub fn finish(mut self) -> String {
        self.state.render(self.last_messages.make_contiguous())
    }
}

fn meta_str<'a>(e: &'a Entry, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| e.metadata.get(*k).and_then(|v| v.as_str())).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Content, Micros};
    use serde_json::json;

    fn entry(seq: u64, kind: EntryKind, author: &str, text: &str, meta: serde_json::Value) -> Entry {
        Entry {
            session_key: "s".into(),
            seq,
            kind,
            role: "assistant".into(),
            author: author.into(),
            content: Content::Text(text.into()),
            media_type: String::new(),
            metadata: meta.as_object().cloned().unwrap_or_default(),
            token_count: 10,
            idempotency_key: String::new(),
            trace_id: String::new(),
            created_at: Micros(0),
            redaction: None,
        }
    }

    #[test]
    fn names_participants_files_tools_and_last_messages() {
        let mut s = Summarizer::default();
        s.add(&entry(1, EntryKind::Message, "planner", "first", json!({})));
        s.add(&entry(2, EntryKind::File, "planner", "fn main() {}", json!({"path": "src/main.rs"})));
        s.add(&entry(3, EntryKind::ToolCall, "coder", "{}", json!({"tool": "cargo_test"})));
        for i in 4..=7 {
            s.add(&entry(i, EntryKind::Message, "coder", &format!("message {i}"), json!({})));
        }
        let text = s.finish();
        assert!(text.starts_with("7 entries up to seq 7 (~70 tokens): 1 file, 5 message, 1 tool_call."), "{text}");
        assert!(text.contains("Participants: planner, coder."), "{text}");
        assert!(text.contains("Files: src/main.rs."), "{text}");
        assert!(text.contains("Tools: cargo_test."), "{text}");
        assert!(!text.contains("message 4"), "only the last three messages: {text}");
        assert!(text.contains("- #7 coder (assistant): message 7"), "{text}");
    }

    #[test]
    fn empty_session() {
        assert_eq!(Summarizer::default().finish(), "The session has no entries yet.");
    }
}
