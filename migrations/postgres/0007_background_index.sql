-- Full-text indexing off the append transaction (issue 16). Computing an entry's tsvector
-- (and its GIN index entries) inside every append's transaction was most of an append's
-- database cost. `search` becomes a plain column: appends write it NULL, and batond's
-- background indexer (server/src/store/postgres/indexer.rs) fills it in batches soon after.
-- Searches also match the rows not indexed yet, computing their vectors on the fly, so an
-- entry is found as soon as its append commits.
--
-- The vector of an entry's text, as 0006 defined it: the indexer and the searches over rows
-- not indexed yet both use it, so an entry matches the same before and after it is indexed.
-- One SQL statement, IMMUTABLE: the planner inlines it.
CREATE FUNCTION baton_search_vector(content TEXT) RETURNS TSVECTOR
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT to_tsvector('baton_english'::regconfig,
            regexp_replace(left(coalesce(content, ''), 262144), '[[:punct:][:space:][:cntrl:]]+', ' ', 'g'))
    $$;

-- In place: a catalog change, no table rewrite; existing rows keep their vectors.
ALTER TABLE entries ALTER COLUMN search DROP EXPRESSION;

-- The rows the indexer has yet to fill (few: it keeps up), so that it finds them without
-- scanning the table.
CREATE INDEX entries_unindexed ON entries (session_id, seq) WHERE search IS NULL;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') THEN
        GRANT EXECUTE ON FUNCTION baton_search_vector(TEXT) TO baton_app;
    END IF;
END
$$;
