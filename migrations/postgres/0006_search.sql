-- Search that means the same on both stores (the query language is `domain::search`'s).
-- PostgreSQL's `english` configuration differs from the embedded store's FTS5 index in two
-- ways that change which entries match: it drops English stop words (so "migrate the" can
-- never match as a phrase, and a stop word between two words shifts positions), and its parser
-- keeps hosts, e-mail addresses, paths, versions and numbers with dots as single tokens (so
-- `example` does not find user@example.com). `baton_english` stems with the same Snowball
-- English stemmer but keeps every word, and the text reaches it with punctuation turned
-- into spaces: a word is a run of letters and digits, as in FTS5's unicode61 tokenizer.

CREATE TEXT SEARCH DICTIONARY baton_english_stem (TEMPLATE = snowball, Language = english);
CREATE TEXT SEARCH CONFIGURATION baton_english (COPY = english);
ALTER TEXT SEARCH CONFIGURATION baton_english
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH baton_english_stem;

-- Re-derives the vector of every existing entry and rebuilds its index: a rewrite of the table
-- that holds an exclusive lock on entries until it is done (plan it for large tables).
DROP INDEX entries_search;
ALTER TABLE entries DROP COLUMN search;
ALTER TABLE entries ADD COLUMN search TSVECTOR GENERATED ALWAYS AS
    (to_tsvector('baton_english'::regconfig,
        regexp_replace(left(coalesce(content_text, ''), 262144), '[[:punct:][:space:][:cntrl:]]+', ' ', 'g'))) STORED;
CREATE INDEX entries_search ON entries USING GIN (search);
