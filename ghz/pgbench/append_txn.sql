-- What-if: Baton's append transaction today, in plain SQL (store/postgres.rs, PgStore::append):
-- BEGIN; lock the session row; one statement that inserts the entry at last_seq + 1 and moves
-- the session's last_seq (as WRITE_APPEND does); COMMIT. Four round trips and one commit
-- (fsync) per append. Runs on bench_sessions /
-- bench_entries (copies made by ghz/run), sessions 1001-1256, so Baton's data is untouched.
-- Compared with insert_entry.sql it prices the protocol; compared with AppendEntries(1) it
-- prices batond itself.
\set sid random(1001, 1256)
BEGIN;
SELECT last_seq FROM bench_sessions WHERE id = :sid FOR UPDATE \gset
WITH written AS (
INSERT INTO bench_entries (session_id, seq, kind, role, author, content_text, media_type, metadata, token_count, created_at)
VALUES (:sid, :last_seq + 1, 'message', 'assistant', 'agent-1',
  'assistant turn 7: the schema migration adds an index on sessions so that listing by owner stays fast while the append path keeps its row lock short we verified the plan with explain and the tests pass on both stores next step is to wire the cache and measure again with ghz under load the handoff summary lists files touched tools used and open questions for the reviewing agent who continues from the last sequence number without gaps the schema migration adds an index on sessions so that listing by owner',
  'text/plain', '{"turn": 7, "model": "model-a"}', 129, now()))
UPDATE bench_sessions SET last_seq = :last_seq + 1, last_activity_at = now() WHERE id = :sid;
COMMIT;
