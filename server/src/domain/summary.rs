//! Extractive handoff summaries: who took part, what kinds of entries there are, which files
//! and tools were referenced, and the last messages. Built by folding the session's entries
//! one page at a time, so memory stays bounded whatever the session's length.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Entry, EntryKind};

/// How many of the newest messages the summary quotes.
const LAST_MESSAGES: usize = 3;
/// How many characters of each quoted message.
const QUOTE_CHARS: usize = 280;
/// How many distinct files, tools and participants the summary names.
const MAX_NAMES: usize = 20;

/// Folds entries into a summary.
#[derive(Debug, Default)]
pub struct Summarizer {
    entries: u64,
    tokens: u64,
    last_seq: u64,
    by_kind: BTreeMap<&'static str, u64>,
    participants: Names,
    files: Names,
    tools: Names,
    last_messages: std::collections::VecDeque<(u64, String, String)>,
}

#[derive(Debug, Default)]
struct Names {
    names: Vec<String>,
    more: u64,
}

impl Names {
    fn add(&mut self, name: &str) {
        if name.is_empty() || self.names.iter().any(|n| n == name) {
            return;
        }
        if self.names.len() < MAX_NAMES {
            self.names.push(name.to_owned());
        } else {
            self.more += 1;
        }
    }

    fn render(&self) -> String {
        let mut s = self.names.join(", ");
        if self.more > 0 {
            let _ = write!(s, " and {} more", self.more);
        }
        s
    }
}

impl Summarizer {
    pub fn add(&mut self, e: &Entry) {
        self.entries += 1;
        self.tokens += u64::from(e.token_count);
        self.last_seq = self.last_seq.max(e.seq);
        *self.by_kind.entry(e.kind.as_str()).or_default() += 1;
        self.participants.add(&e.author);
        match e.kind {
            EntryKind::File => {
                if let Some(name) = meta_str(e, &["path", "file", "filename", "name", "uri"]) {
                    self.files.add(name);
                } else if !e.media_type.is_empty() {
                    self.files.add(&format!("({})", e.media_type));
                }
            }
            EntryKind::ToolCall | EntryKind::ToolResult => {
                if let Some(name) = meta_str(e, &["tool", "tool_name", "name", "function"]) {
                    self.tools.add(name);
                }
            }
            EntryKind::Message => {
                if let Some(text) = e.content.text() {
                    let quote: String = text.chars().take(QUOTE_CHARS).collect();
                    let quote = if text.chars().nth(QUOTE_CHARS).is_some() { quote + "…" } else { quote };
                    let who = if e.role.is_empty() { e.author.clone() } else { format!("{} ({})", e.author, e.role) };
                    self.last_messages.push_back((e.seq, who, quote.replace('\n', " ")));
                    if self.last_messages.len() > LAST_MESSAGES {
                        self.last_messages.pop_front();
                    }
                }
            }
            _ => {}
        }
    }

    pub fn finish(self) -> String {
        if self.entries == 0 {
            return "The session has no entries yet.".to_owned();
        }
        let mut s = String::new();
        let kinds: Vec<String> = self.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            s,
            "{} entries up to seq {} (~{} tokens): {}.",
            self.entries,
            self.last_seq,
            self.tokens,
            kinds.join(", ")
        );
        let _ = writeln!(s, "Participants: {}.", self.participants.render());
        if !self.files.names.is_empty() {
            let _ = writeln!(s, "Files: {}.", self.files.render());
        }
        if !self.tools.names.is_empty() {
            let _ = writeln!(s, "Tools: {}.", self.tools.render());
        }
        if !self.last_messages.is_empty() {
            let _ = writeln!(s, "Last messages:");
            for (seq, who, text) in &self.last_messages {
                let _ = writeln!(s, "- #{seq} {who}: {text}");
            }
        }
        s.truncate(s.trim_end().len());
        s
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
