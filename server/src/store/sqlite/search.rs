//! Full-text search in SQLite: FTS5 over the entries' text (`porter unicode61
//! remove_diacritics 0`: words are runs of letters and digits, case-folded, Porter-stemmed,
//! accents kept, no stop words), ranked by bm25, with FTS5 snippets. The parsed query
//! (`domain::search`) is rendered to a MATCH expression by `fts_expression`.

use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, sessions};
use crate::domain::search::{Phrase, Query, Syntax};
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
    let mut b = QueryBuilder::<Sqlite>::new(concat!(
        "SELECT s.session_key, ",
        entry_cols!(),
        ", -bm25(entries_fts) AS score, "
    ));
    // snippet() marks the instances of the MATCH expression's phrases in the row; a row
    // that matches holds no excluded phrase, so none is ever marked.
    b.push(format_args!("snippet(entries_fts, 0, '[', ']', '…', {SNIPPET_TOKENS})"))
        .push(
            " FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid \
             JOIN sessions s ON s.id = e.session_id WHERE entries_fts MATCH ",
        )
        .push_bind(fts_expression(&q.query))
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

/// The query as an FTS5 MATCH expression. Every phrase is an FTS5 string (in double quotes,
/// inner quotes doubled), so nothing the user typed is FTS5 syntax; FTS5 tokenizes the
/// string as it tokenized the text, and a string of several words is a phrase.
fn fts_expression(query: &Query) -> String {
    const FTS5: Syntax = Syntax { and: " AND ", or: " OR ", and_not: " NOT " };
    query.render(&FTS5, false, |p: &Phrase| format!("\"{}\"", p.words().join(" ").replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fts(q: &str) -> String {
        fts_expression(&Query::parse(q).unwrap())
    }

    #[test]
    fn phrases_are_fts5_strings() {
        assert_eq!(fts("deploy failed"), r#"("deploy" AND "failed")"#);
        assert_eq!(fts(r#""migrate the" OR plan"#), r#"(("migrate the" OR "plan"))"#);
        assert_eq!(fts("foo.bar -x -\"y z\""), r#"("foo bar") NOT ("x" OR "y z")"#);
        assert_eq!(fts("NEAR(b AND c*"), r#"("NEAR b" AND "c")"#);
    }
}
