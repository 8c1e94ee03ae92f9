//! Full-text search in PostgreSQL: `websearch_to_tsquery` over the entries' `search` column,
//! ranked by `ts_rank_cd`, snippets by `ts_headline`.

use super::{PgStore, sessions};
use crate::domain::{Result, SearchHit};
use crate::store::Scope;
use crate::store::SearchQuery;
use crate::store::rows::hit_at;

/// Ranks first and highlights only the page: ts_headline re-parses the text, so it runs on
/// `limit` rows, not on every match.
macro_rules! search_sql {
    ($scope:literal) => {
        concat!(
            "WITH q AS (SELECT websearch_to_tsquery('english', $2) AS q), \
             hits AS ( \
               SELECT e.session_id, e.seq, ts_rank_cd(e.search, q.q, 32)::float8 AS score \
               FROM q, entries e JOIN sessions s ON s.id = e.session_id \
               WHERE s.tenant = $1 ",
            $scope,
            " AND numnode(q.q) > 0 AND e.search @@ q.q \
               ORDER BY score DESC, e.session_id, e.seq OFFSET $3 LIMIT $4 \
             ) \
             SELECT s.session_key, ",
            entry_cols!(),
            ", h.score, ts_headline('english', left(e.content_text, 262144), q.q, \
                 'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=2, FragmentDelimiter=\" ... \"') \
             FROM hits h \
             JOIN entries e ON e.session_id = h.session_id AND e.seq = h.seq \
             JOIN sessions s ON s.id = h.session_id, q \
             ORDER BY h.score DESC, h.session_id, h.seq"
        )
    };
}
const SEARCH_TENANT: &str = search_sql!("");
const SEARCH_SESSION: &str = search_sql!("AND s.session_key = $5");

pub(super) async fn search(store: &PgStore, q: &SearchQuery) -> Result<Vec<SearchHit>> {
    let query = match &q.session_key {
        None => sqlx::query(SEARCH_TENANT),
        Some(_) => sqlx::query(SEARCH_SESSION),
    };
    let mut query = query.bind(&q.tenant).bind(&q.query).bind(i64::from(q.offset)).bind(i64::from(q.limit));
    if let Some(key) = &q.session_key {
        query = query.bind(key);
    }
    let mut tx = store.begin(Scope::Tenant(&q.tenant)).await?;
    let rows = store.sql.run("SELECT", "entries", query.fetch_all(&mut *tx)).await?;
    if let (true, Some(key)) = (rows.is_empty(), &q.session_key) {
        sessions::require(&store.sql, &mut tx, &q.tenant, key).await?;
    }
    rows.iter().map(hit_at).collect()
}
