-- Search that means the same on both stores (the query language is `domain::search`'s): the
-- index keeps accents, as PostgreSQL's `baton_english` configuration does, so `cafe` finds
-- `cafe` and `café` finds `café` on both (unicode61 removed diacritics by default). Words are
-- still runs of letters and digits, case-folded and Porter-stemmed, every word indexed.
--
-- The triggers of 0001 name the table, not its definition: they keep feeding the new one.
-- Existing entries are indexed again exactly as the insert trigger would have indexed them.

DROP TABLE entries_fts;

CREATE VIRTUAL TABLE entries_fts USING fts5 (
    content_text,
    content = 'entries',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 0'
);

INSERT INTO entries_fts (rowid, content_text)
SELECT id, content_text FROM entries WHERE content_text IS NOT NULL;
