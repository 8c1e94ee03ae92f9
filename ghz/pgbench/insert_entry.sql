-- pgbench baseline for AppendEntries(1 entry): one durable single-row INSERT of an entry's
-- shape (about 500 bytes of text plus a small jsonb) into bench_entries, a copy of `entries`
-- made by ghz/run with CREATE TABLE ... (LIKE entries INCLUDING ALL): same columns, the same
-- generated tsvector column, primary key, GIN and kind indexes, checks (not the foreign key).
-- One statement, autocommit: the database's ceiling for durable single-row writes.
\set sid random(1, 256)
INSERT INTO bench_entries (session_id, seq, kind, role, author, content_text, media_type, metadata, token_count, created_at)
VALUES (:sid, nextval('bench_seq'), 'message', 'assistant', 'agent-1',
  'assistant turn 7: the schema migration adds an index on sessions so that listing by owner stays fast while the append path keeps its row lock short we verified the plan with explain and the tests pass on both stores next step is to wire the cache and measure again with ghz under load the handoff summary lists files touched tools used and open questions for the reviewing agent who continues from the last sequence number without gaps the schema migration adds an index on sessions so that listing by owner',
  'text/plain', '{"turn": 7, "model": "model-a"}', 129, now());
