//! Full-text search in PostgreSQL over the entries' `search` column (text search
//! configuration `baton_english`: words are runs of letters and digits, Snowball-stemmed, no
//! stop words; see `migrations/postgres/0006_search.sql`), ranked by `ts_rank_cd`, snippets by
//! `ts_headline`. The parsed query (`domain::search`) is rendered to `to_tsquery` input by
//! `tsquery`.
//!
//! The column is filled after the append by the background indexer (`indexer`, migration
//! 0007); until then a row's vector is derived here from its text by the same function
//! (`baton_search_vector`), so an entry is found as soon as its append has committed.

use super::{PgStore, sessions};
use crate::domain::search::{Phrase, Query, Syntax};
use crate::domain::{Result, SearchHit};
use crate::store::Scope;
use crate::store::SearchQuery;
use crate::store::rows::hit_at;

/// Ranks first and highlights only the page: ts_headline re-parses the text, so it runs on
/// `limit` rows, not on every match. It highlights with the query's required part alone
/// (`$5`), so an excluded word is never marked.
macro_rules! search_sql {
    ($scope:literal) => {
        concat!(
            "WITH q AS (SELECT to_tsquery('baton_english', $2) AS q, to_tsquery('baton_english', $5) AS shown), \
             hits AS ( \
               SELECT e.session_id, e.seq, ts_rank_cd(v.search, q.q, 32)::float8 AS score \
               FROM q, entries e JOIN sessions s ON s.id = e.session_id, \
                 LATERAL (SELECT COALESCE(e.search, baton_search_vector(e.content_text)) AS search) v \
               WHERE s.tenant = $1 ",
            $scope,
            " AND numnode(q.q) > 0 AND v.search @@ q.q \
               ORDER BY score DESC, e.session_id, e.seq OFFSET $3 LIMIT $4 \
             ) \
             SELECT s.session_key, ",
            entry_cols!(),
            ", h.score, ts_headline('baton_english', left(e.content_text, 262144), q.shown, \
                 'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=2, FragmentDelimiter=\" ... \"') \
             FROM hits h \
             JOIN entries e ON e.session_id = h.session_id AND e.seq = h.seq \
             JOIN sessions s ON s.id = h.session_id, q \
             ORDER BY h.score DESC, h.session_id, h.seq"
        )
    };
}
const SEARCH_TENANT: &str = search_sql!("");
const SEARCH_SESSION: &str = search_sql!("AND s.session_key = $6");

/// Ranked hits, from a replica when one may serve the call.
pub(super) async fn search(store: &PgStore, q: &SearchQuery) -> Result<Vec<SearchHit>> {
    let read = read!(store, Scope::Tenant(&q.tenant), |sql, conn| {
        let query = match &q.session_key {
            None => sqlx::query(SEARCH_TENANT),
            Some(_) => sqlx::query(SEARCH_SESSION),
        };
        let mut query = query
            .bind(&q.tenant)
            .bind(tsquery(&q.query, false))
            .bind(i64::from(q.offset))
            .bind(i64::from(q.limit))
            .bind(tsquery(&q.query, true));
        if let Some(key) = &q.session_key {
            query = query.bind(key);
        }
        let rows = sql.run("SELECT", "entries", query.fetch_all(&mut *conn)).await?;
        if let (true, Some(key)) = (rows.is_empty(), &q.session_key) {
            sessions::require(sql, conn, &q.tenant, key).await?;
        }
        rows.iter().map(hit_at).collect::<Result<Vec<_>>>()
    });
    Ok(read.await?.0)
}

/// The query as `to_tsquery` input, bound as a value (never spliced into SQL): every word is
/// a quoted lexeme (quotes doubled, backslashes escaped), which `to_tsquery` parses and stems
/// with the configuration as it did the text; a phrase's words are joined by `<->`.
/// `positive`: the required part alone.
fn tsquery(query: &Query, positive: bool) -> String {
    const TSQUERY: Syntax = Syntax { and: " & ", or: " | ", and_not: " & !" };
    let lexeme = |w: &String| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''"));
    // `<->` binds tighter than `&` and `|`, so a phrase needs no parentheses of its own.
    query.render(&TSQUERY, positive, |p: &Phrase| p.words().iter().map(lexeme).collect::<Vec<_>>().join(" <-> "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(q: &str, positive: bool) -> String {
        tsquery(&Query::parse(q).unwrap(), positive)
    }

    #[test]
    fn words_are_quoted_lexemes() {
        assert_eq!(ts("deploy failed", false), "('deploy' & 'failed')");
        assert_eq!(
            ts(r#""migrate the" OR plan -x -"y z""#, false),
            "(('migrate' <-> 'the' | 'plan')) & !('x' | 'y' <-> 'z')"
        );
        assert_eq!(ts(r#""migrate the" OR plan -x"#, true), "(('migrate' <-> 'the' | 'plan'))");
        assert_eq!(ts("bob's:* !x & y|z", false), "('bob' <-> 's' & 'x' & 'y' <-> 'z')");
    }
}
