//! The search query language, defined once for every store: [`Query::parse`] turns what a
//! caller typed into a [`Query`], and each store renders that into its own syntax through
//! [`Query::render`] (PostgreSQL a `tsquery`, SQLite an FTS5 MATCH expression), so both stores
//! find the same entries for the same query. Scores and snippets are each store's own.
//!
//! | You type            | It finds entries that                                              |
//! |---------------------|--------------------------------------------------------------------|
//! | `deploy failed`     | contain every word (AND is implicit; a bare `AND` says the same)   |
//! | `"deploy failed"`   | contain the words next to each other, in this order (a phrase)     |
//! | `deploy OR release` | contain either; `OR` binds tighter than AND: `a b OR c` = a (b/c) |
//! | `deploy -staging`   | contain `deploy` and not `staging`; `-"a phrase"` excludes a phrase |
//!
//! - Words are runs of letters and digits; everything else separates them, in the text and in
//!   the query alike, so `foo.bar`, `foo_bar` and `"foo bar"` are the same phrase.
//! - Matching ignores case and stems English words (`migrating` finds `migrate`, `migrations`).
//!   Each store stems with its own English stemmer (PostgreSQL Snowball, SQLite Porter), so a
//!   few rare word forms stem differently; accents are kept (`cafe` does not find `café`).
//! - Common English words ([`STOP_WORDS`]: `the`, `a`, `of`, ...) are ignored outside quotes,
//!   and so are words without a letter or digit; inside quotes every word counts
//!   (`"state of the art"`). A query left with nothing to look for is refused.
//! - `OR`, `AND` and `NOT` are operators only in capitals and unquoted (`"OR"` is the word).
//!   `NOT` is refused with a hint to write `-word`.
//!
//! Refused, as INVALID_ARGUMENT naming the problem: an unclosed quote; `OR` without a word or
//! phrase on each side, or next to an excluded term (`a OR -b`); a query that only excludes;
//! a query with no searchable word; more than [`MAX_TERMS`] words and phrases; and (checked in
//! `validate`) more than `MAX_QUERY_BYTES` bytes or a NUL character.

use std::fmt::Write as _;

/// Most words and phrases in one query, excluded ones included.
pub const MAX_TERMS: usize = 32;

/// Words ignored outside quotes: too common to say anything about an entry.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// A parsed query: every group must match (one of its phrases is enough), no excluded phrase
/// may. Never empty: parsing refuses a query without a required phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    required: Vec<Vec<Phrase>>,
    excluded: Vec<Phrase>,
}

/// Words that must appear next to each other, in order; one word is a phrase of one. Words
/// are kept as typed: each store folds case as it does for the text it indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase(Vec<String>);

impl Phrase {
    pub fn words(&self) -> &[String] {
        &self.0
    }
}

/// How a store writes the boolean operators of its query language.
pub struct Syntax {
    pub and: &'static str,
    pub or: &'static str,
    /// Between the required part and the (parenthesized) excluded ones.
    pub and_not: &'static str,
}

impl Query {
    /// Parses a query in the language above; `Err` describes what is wrong, for the caller.
    pub fn parse(text: &str) -> Result<Query, String> {
        let mut query = Query { required: Vec::new(), excluded: Vec::new() };
        let mut before = Before::Nothing;
        // An OR waiting for its right-hand phrase: where it is.
        let mut open_or: Option<usize> = None;
        for item in lex(text)? {
            match item {
                Item::Or(at) => match (open_or, before) {
                    (None, Before::Required) => open_or = Some(at),
                    (None, Before::Excluded(term)) => return Err(or_excluded(at, term)),
                    _ => return Err(or_alone(at)),
                },
                Item::And => {}
                Item::Not(at) => {
                    return Err(format!(
                        "NOT at byte {at} is not an operator: write -word or -\"a phrase\" to exclude, \
                         or \"NOT\" to search for the word"
                    ));
                }
                Item::Term { at, excluded, quoted, words } => {
                    let searchable = !words.is_empty() && (quoted || !words.iter().all(|w| is_stop_word(w)));
                    match (open_or, excluded, searchable) {
                        (Some(or), true, _) => return Err(or_excluded(or, at)),
                        (Some(or), false, false) => return Err(or_alone(or)),
                        _ => {}
                    }
                    before = match (searchable, excluded) {
                        (false, _) => Before::Nothing,
                        (true, false) => Before::Required,
                        (true, true) => Before::Excluded(at),
                    };
                    if !searchable {
                        continue;
                    }
                    if query.terms() == MAX_TERMS {
                        return Err(format!("has more than {MAX_TERMS} words and phrases"));
                    }
                    let phrase = Phrase(words);
                    match (excluded, open_or.take(), query.required.last_mut()) {
                        (true, _, _) => query.excluded.push(phrase),
                        (false, Some(_), Some(group)) => group.push(phrase),
                        (false, _, _) => query.required.push(vec![phrase]),
                    }
                }
            }
        }
        if let Some(at) = open_or {
            return Err(or_alone(at));
        }
        if query.required.is_empty() {
            return Err(if query.excluded.is_empty() {
                format!("the query has no searchable words{IGNORED}")
            } else {
                "the query only excludes: add a word or phrase to look for".to_owned()
            });
        }
        Ok(query)
    }

    /// The groups that must all match; one phrase of a group is enough.
    pub fn required(&self) -> &[Vec<Phrase>] {
        &self.required
    }

    /// The phrases none of which may appear.
    pub fn excluded(&self) -> &[Phrase] {
        &self.excluded
    }

    /// The query in a store's syntax, each phrase written by `phrase` (which must bind
    /// tighter than AND and OR). `positive` leaves the exclusions out: what snippets
    /// highlight, so that an excluded word is never marked. The required part and the
    /// exclusions are parenthesized, and so is each group of alternatives.
    pub fn render(&self, syntax: &Syntax, positive: bool, phrase: impl Fn(&Phrase) -> String) -> String {
        let either = |phrases: &[Phrase]| phrases.iter().map(&phrase).collect::<Vec<_>>().join(syntax.or);
        let groups: Vec<String> =
            self.required.iter().map(|g| if g.len() == 1 { either(g) } else { format!("({})", either(g)) }).collect();
        let required = format!("({})", groups.join(syntax.and));
        if positive || self.excluded.is_empty() {
            return required;
        }
        format!("{required}{}({})", syntax.and_not, either(&self.excluded))
    }

    fn terms(&self) -> usize {
        self.required.iter().map(Vec::len).sum::<usize>() + self.excluded.len()
    }
}

/// What came just before an OR: only a required phrase can be its left side.
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    Required,
    /// An excluded term, at this byte.
    Excluded(usize),
}

fn or_alone(at: usize) -> String {
    format!("OR at byte {at} needs a word or phrase on each side{IGNORED}")
}

fn or_excluded(or: usize, term: usize) -> String {
    format!("OR at byte {or} cannot join the excluded term at byte {term}: an exclusion applies to the whole query")
}

/// Why a query may have less in it than was typed; ends the messages that say so.
const IGNORED: &str =
    " (common words such as \"the\", and words without letters or digits, are ignored outside quotes)";

pub fn is_stop_word(word: &str) -> bool {
    let lower = word.to_lowercase();
    STOP_WORDS.binary_search(&lower.as_str()).is_ok()
}

/// The words of a text: runs of letters and digits, as typed.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

enum Item {
    Or(usize),
    And,
    Not(usize),
    Term { at: usize, excluded: bool, quoted: bool, words: Vec<String> },
}

/// Splits a query into operators and terms. A term is a run of characters up to whitespace
/// or a quote, or a quoted phrase; a `-` right before a letter, digit or quote excludes it.
fn lex(text: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some(&(at, c)) = rest.peek() {
        if c.is_whitespace() {
            rest.next();
            continue;
        }
        let mut start = at;
        let excluded = c == '-' && text[at + 1..].chars().next().is_some_and(|n| n == '"' || n.is_alphanumeric());
        if excluded {
            rest.next();
            start += 1;
        }
        if text[start..].starts_with('"') {
            rest.next();
            let Some(len) = text[start + 1..].find('"') else {
                return Err(format!("the quote at byte {start} is never closed"));
            };
            let inner = &text[start + 1..start + 1 + len];
            while rest.next_if(|&(i, _)| i <= start + 1 + len).is_some() {}
            items.push(Item::Term { at, excluded, quoted: true, words: words(inner) });
            continue;
        }
        let mut end = start;
        while let Some((i, c)) = rest.next_if(|&(_, c)| !c.is_whitespace() && c != '"') {
            end = i + c.len_utf8();
        }
        let raw = &text[start..end];
        items.push(match (excluded, raw) {
            (false, "OR") => Item::Or(at),
            (false, "AND") => Item::And,
            (false, "NOT") => Item::Not(at),
            _ => Item::Term { at, excluded, quoted: false, words: words(raw) },
        });
    }
    Ok(items)
}

/// A query's terms in the language above, for messages and tests: `(a OR "b c") d -e`.
impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted = |p: &Phrase| {
            let s = p.0.join(" ");
            if p.0.len() == 1 { s } else { format!("\"{s}\"") }
        };
        let mut out = String::new();
        for group in &self.required {
            let alternatives = group.iter().map(quoted).collect::<Vec<_>>().join(" OR ");
            let _ = if group.len() > 1 { write!(out, " ({alternatives})") } else { write!(out, " {alternatives}") };
        }
        for p in &self.excluded {
            let _ = write!(out, " -{}", quoted(p));
        }
        f.write_str(out.trim_start())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(q: &str) -> String {
        Query::parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}")).to_string()
    }

    fn refused(q: &str) -> String {
        Query::parse(q).expect_err(q)
    }

    #[test]
    fn stop_words_are_sorted_lowercase_and_unique() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.iter().all(|w| w.chars().all(|c| c.is_ascii_lowercase())));
    }

    #[test]
    fn words_phrases_and_implicit_and() {
        assert_eq!(parsed("deploy failed"), "deploy failed");
        assert_eq!(parsed("deploy AND failed"), "deploy failed");
        assert_eq!(parsed(r#"the "deploy pipeline" broke"#), r#""deploy pipeline" broke"#);
        assert_eq!(parsed(r#""migrate the""#), r#""migrate the""#);
        assert_eq!(parsed(r#""the""#), "the", "quoted, a common word counts");
        assert_eq!(parsed(r#"a"b c"d"#), r#""b c" d"#, "a quote ends a word");
    }

    #[test]
    fn punctuation_separates_words_and_is_never_syntax() {
        assert_eq!(parsed("foo.bar"), r#""foo bar""#);
        assert_eq!(parsed("migrate_db C++ (x)"), r#""migrate db" C x"#);
        assert_eq!(parsed("content_text:x* ^y NEAR(b"), r#""content text x" y "NEAR b""#);
        assert_eq!(parsed("don't deploy"), "deploy", "every word of don't is common");
        assert_eq!(parsed("a:b"), r#""a b""#, "not every word is common: all are kept");
        assert_eq!(parsed("Straße 日本語 ÜBER"), "Straße 日本語 ÜBER");
    }

    #[test]
    fn or_binds_tighter_than_and() {
        assert_eq!(parsed("a1 OR b1 c1"), "(a1 OR b1) c1");
        assert_eq!(parsed("x a1 OR b1 OR \"c d\""), r#"x (a1 OR b1 OR "c d")"#);
        assert_eq!(parsed("deploy or release"), "deploy release", "lowercase or is a common word");
        assert_eq!(parsed(r#""OR" "AND" "NOT""#), "OR AND NOT");
    }

    #[test]
    fn minus_excludes() {
        assert_eq!(parsed("deploy -staging"), "deploy -staging");
        assert_eq!(parsed(r#"deploy -"blue green" -x"#), r#"deploy -"blue green" -x"#);
        assert_eq!(parsed("deploy -- - -+"), "deploy", "a minus before no word is punctuation");
        assert_eq!(parsed("deploy -the"), "deploy", "common words are ignored, excluded or not");
        assert_eq!(parsed("well-known"), r#""well known""#);
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            refused(r#""migrate the" OR -plan"#),
            "OR at byte 14 cannot join the excluded term at byte 17: an exclusion applies to the whole query"
        );
        assert_eq!(
            refused("-plan OR migrate"),
            "OR at byte 6 cannot join the excluded term at byte 0: an exclusion applies to the whole query"
        );
        assert!(refused("OR migrate").starts_with("OR at byte 0 needs"));
        assert!(refused("migrate OR").starts_with("OR at byte 8 needs"));
        assert!(refused("migrate OR OR plan").starts_with("OR at byte 11 needs"));
        assert!(refused("the OR plan").starts_with("OR at byte 4 needs"));
        assert!(refused("plan OR the").starts_with("OR at byte 5 needs"));
        assert!(refused("deploy NOT staging").starts_with("NOT at byte 7 is not an operator"));
        assert_eq!(refused(r#"deploy "pipeline"#), "the quote at byte 7 is never closed");
        assert_eq!(refused("-plan -staging"), "the query only excludes: add a word or phrase to look for");
        for nothing in ["", "   ", "the", "the of and", "-", "(*)", "++ --", r#""""#, r#""...""#, "-the", "AND"] {
            assert!(refused(nothing).starts_with("the query has no searchable words"), "{nothing:?}");
        }
    }

    #[test]
    fn terms_are_limited() {
        let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert!(Query::parse(&words(MAX_TERMS)).is_ok());
        assert_eq!(refused(&words(MAX_TERMS + 1)), "has more than 32 words and phrases");
        assert_eq!(refused(&format!("{} -x", words(MAX_TERMS))), "has more than 32 words and phrases");
        assert!(Query::parse(&format!("{} the of", words(MAX_TERMS))).is_ok(), "ignored words do not count");
    }

    #[test]
    fn renders_to_a_store_syntax() {
        let sql = Syntax { and: " & ", or: " | ", and_not: " & !" };
        let phrase = |p: &Phrase| p.words().join("<->");
        let q = Query::parse(r#"a1 OR "b c" d -e -"f g""#).unwrap();
        assert_eq!(q.render(&sql, false, phrase), "((a1 | b<->c) & d) & !(e | f<->g)");
        assert_eq!(q.render(&sql, true, phrase), "((a1 | b<->c) & d)");
        assert_eq!(Query::parse("x -y").unwrap().render(&sql, false, phrase), "(x) & !(y)");
    }
}
