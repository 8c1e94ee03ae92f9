-- What-if: write coalescing (issue 7), in plain SQL. One transaction appends one entry to each
-- of 16 sessions (the appends that queued while the previous batch committed): lock the 16
-- session rows in id order, one multi-row INSERT at each session's last_seq + 1, one UPDATE,
-- one COMMIT (fsync) for all 16. pgbench's TPS x 16 = appends/s. Sessions 2001-2256 of
-- bench_sessions, in 16 groups of 16; C=4 clients keep 64 appends in flight.
\set lo 2001 + 16 * random(0, 15)
\set hi :lo + 15
BEGIN;
SELECT id FROM bench_sessions WHERE id BETWEEN :lo AND :hi ORDER BY id FOR UPDATE;
INSERT INTO bench_entries (session_id, seq, kind, role, author, content_text, media_type, metadata, token_count, created_at)
SELECT s.id, s.last_seq + 1, 'message', 'assistant', 'agent-1',
  'assistant turn 7: the schema migration adds an index on sessions so that listing by owner stays fast while the append path keeps its row lock short we verified the plan with explain and the tests pass on both stores next step is to wire the cache and measure again with ghz under load the handoff summary lists files touched tools used and open questions for the reviewing agent who continues from the last sequence number without gaps the schema migration adds an index on sessions so that listing by owner',
  'text/plain', '{"turn": 7, "model": "model-a"}', 129, now()
FROM bench_sessions s WHERE s.id BETWEEN :lo AND :hi;
UPDATE bench_sessions SET last_seq = last_seq + 1, last_activity_at = now() WHERE id BETWEEN :lo AND :hi;
COMMIT;
