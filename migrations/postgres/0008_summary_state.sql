-- Handoff summary state (domain::summary::SummaryState): what a handoff's summary needs of all
-- of a session's entries, kept by the append transaction with the same statement that moves
-- last_seq, so RequestHandoff reads one row and at most three entries whatever the session's
-- length. summary_counts (entries, tokens, last seq, counts by kind, the last messages' seqs)
-- changes with every append; summary_names (participants, files, tools: the first 20 of each
-- and hashes of at most 100 more) only when an append brings a new name.
--
-- NULL means unknown: the next handoff of the session rebuilds it from the entries under the
-- session's lock (redaction, compaction and forks set it back to NULL). Existing sessions start
-- unknown, so this migration rewrites no row; new sessions start empty ('{}').
ALTER TABLE sessions
    ADD COLUMN summary_counts JSONB,
    ADD COLUMN summary_names  JSONB;

ALTER TABLE sessions
    ALTER COLUMN summary_counts SET DEFAULT '{}',
    ALTER COLUMN summary_names  SET DEFAULT '{}';
