-- pgbench baseline for AppendEntries(1 entry) without search indexing: one durable single-row
-- INSERT of the same ~500 bytes of text into bench_plain (id, session, seq, text), a table made by
-- ghz/run with only its identity primary key: no generated tsvector column, no GIN index, no
-- other column or index of `entries`. One statement, autocommit: the database's ceiling for a
-- durable row write with nothing else attached, which an append can approach only by keeping
-- indexing and bookkeeping off its transaction (issue 16; goal AppendEntries(1) >= 0.5x this).
\set sid random(1, 256)
INSERT INTO bench_plain (session, seq, text)
VALUES (:sid, nextval('bench_seq'),
  'assistant turn 7: the schema migration adds an index on sessions so that listing by owner stays fast while the append path keeps its row lock short we verified the plan with explain and the tests pass on both stores next step is to wire the cache and measure again with ghz under load the handoff summary lists files touched tools used and open questions for the reviewing agent who continues from the last sequence number without gaps the schema migration adds an index on sessions so that listing by owner');
