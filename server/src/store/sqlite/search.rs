//! Full-text search in SQLite: FTS5 over the entries' text, ranked by bm25, with FTS5
//! snippets. Web-search syntax is translated to a MATCH expression here (`fts_expression`).

use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, sessions};
use crate::domain::{Result, SearchHit};
use crate::store::SearchQuery;
use crate::store::rows::hit_at;

/// Tokens of context around the matches in a search snippet.
const SNIPPET_TOKENS: u32 = 16;

pub(super) async fn search(store: &SqliteStore, q: &SearchQuery) -> Result<Vec<SearchHit>> {
    let session_id = match &q.session_key {
        Some(key) => Some(sessions::id(&store.sql, &store.read, &q.tenant, key).await?),
        None => None,
    };
    let Some(expression) = fts_expression(&q.query) else {
        return Ok(Vec::new());
    };
    let mut b = QueryBuilder::<Sqlite>::new(concat!(
        "SELECT s.session_key, ",
        entry_cols!(),
        ", -bm25(entries_fts) AS score, "
    ));
    b.push(format_args!("snippet(entries_fts, 0, '[', ']', '…', {SNIPPET_TOKENS})"))
        .push(
            " FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid \
             JOIN sessions s ON s.id = e.session_id WHERE entries_fts MATCH ",
        )
        .push_bind(expression)
        .push(" AND s.tenant = ")
        .push_bind(&q.tenant);
    if let Some(id) = session_id {
        b.push(" AND e.session_id = ").push_bind(id);
    }
    b.push(" ORDER BY score DESC, e.id LIMIT ")
        .push_bind(i64::from(q.limit))
        .push(" OFFSET ")
        .push_bind(i64::from(q.offset));
    let rows = store.sql.run("SELECT", "entries_fts", b.build().fetch_all(&store.read)).await?;
    rows.iter().map(hit_at).collect()
}

/// Translates a web-search style query into an FTS5 MATCH expression, or `None` when it has
/// no term to look for.
///
/// Words and `"quoted phrases"` must all match (a bare `AND` says so and is otherwise
/// ignored); `OR` between two of them makes either enough (binding tighter than the implicit
/// AND, as in web search); `-word` or `-"phrase"` excludes. Every term reaches FTS5 as a quoted string with its quotes doubled, so no input
/// is an FTS5 syntax error and FTS5 operators or column filters typed by the user are just
/// words. Terms without a letter or digit would tokenize to nothing and are dropped; a query
/// of exclusions alone matches nothing, since FTS5 cannot start from NOT.
fn fts_expression(query: &str) -> Option<String> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    // An OR just followed a positive term: the next positive term joins its group.
    let mut or_pending = false;
    for term in web_terms(query) {
        match term {
            WebTerm::Or => or_pending = !groups.is_empty(),
            WebTerm::Text { text, .. } if !text.chars().any(char::is_alphanumeric) => {}
            WebTerm::Text { text, negated: true } => {
                excluded.push(fts_string(&text));
                or_pending = false;
            }
            WebTerm::Text { text, negated: false } => {
                let phrase = fts_string(&text);
                match groups.last_mut() {
                    Some(group) if or_pending => group.push(phrase),
                    _ => groups.push(vec![phrase]),
                }
                or_pending = false;
            }
        }
    }
    if groups.is_empty() {
        return None;
    }
    let required = groups
        .into_iter()
        .map(|g| if g.len() == 1 { g.concat() } else { format!("({})", g.join(" OR ")) })
        .collect::<Vec<_>>()
        .join(" AND ");
    Some(if excluded.is_empty() { required } else { format!("({required}) NOT ({})", excluded.join(" OR ")) })
}

enum WebTerm {
    Or,
    Text { text: String, negated: bool },
}

/// Splits a query into words, quoted phrases (an unclosed quote runs to the end) and `OR`;
/// drops `AND`, which only restates the default.
fn web_terms(query: &str) -> Vec<WebTerm> {
    let mut terms = Vec::new();
    let mut chars = query.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let negated = first == '-';
        if negated {
            chars.next();
        }
        let mut text = String::new();
        if chars.next_if_eq(&'"').is_some() {
            text.extend(chars.by_ref().take_while(|&c| c != '"'));
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                text.push(c);
            }
            match text.as_str() {
                "OR" if !negated => {
                    terms.push(WebTerm::Or);
                    continue;
                }
                "AND" if !negated => continue,
                _ => {}
            }
        }
        terms.push(WebTerm::Text { text, negated });
    }
    terms
}

/// An FTS5 string literal: the text in double quotes, inner quotes doubled.
fn fts_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::fts_expression;

    fn fts(q: &str) -> Option<String> {
        fts_expression(q)
    }

    #[test]
    fn words_are_quoted_and_all_required() {
        assert_eq!(fts("deploy failed").as_deref(), Some(r#""deploy" AND "failed""#));
    }

    #[test]
    fn phrases_stay_phrases() {
        assert_eq!(
            fts(r#"the "deploy pipeline" broke"#).as_deref(),
            Some(r#""the" AND "deploy pipeline" AND "broke""#)
        );
        assert_eq!(fts(r#""unclosed phrase"#).as_deref(), Some(r#""unclosed phrase""#));
    }

    #[test]
    fn or_binds_tighter_than_and() {
        assert_eq!(fts("a OR b c").as_deref(), Some(r#"("a" OR "b") AND "c""#));
        assert_eq!(fts("a OR b OR c").as_deref(), Some(r#"("a" OR "b" OR "c")"#));
        // Lowercase "or" is a word; a stray OR is ignored.
        assert_eq!(fts("a or b").as_deref(), Some(r#""a" AND "or" AND "b""#));
        assert_eq!(fts("OR a OR").as_deref(), Some(r#""a""#));
        assert_eq!(fts("a AND b").as_deref(), Some(r#""a" AND "b""#));
        assert_eq!(fts(r#"a "AND" -AND"#).as_deref(), Some(r#"("a" AND "AND") NOT ("AND")"#));
    }

    #[test]
    fn minus_excludes() {
        assert_eq!(fts("deploy -staging").as_deref(), Some(r#"("deploy") NOT ("staging")"#));
        assert_eq!(fts(r#"a -"b c" -d"#).as_deref(), Some(r#"("a") NOT ("b c" OR "d")"#));
        assert_eq!(fts("-only -exclusions"), None);
    }

    #[test]
    fn fts5_syntax_in_input_is_inert() {
        assert_eq!(fts(r#"a" AND NEAR(b"#).as_deref(), Some(r#""a""" AND "NEAR(b""#));
        assert_eq!(fts("content_text:x* ^y").as_deref(), Some(r#""content_text:x*" AND "^y""#));
    }

    #[test]
    fn queries_without_terms_match_nothing() {
        assert_eq!(fts(""), None);
        assert_eq!(fts("   "), None);
        assert_eq!(fts(r#"++ -- "" - OR"#), None);
    }
}
