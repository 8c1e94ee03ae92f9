-- Handoff summary state (the counterpart of migrations/postgres/0008): kept by every append;
-- NULL means unknown and is rebuilt from the entries by the session's next handoff. New
-- sessions start empty ('{}'); existing ones start unknown (SQLite's ADD COLUMN gives every
-- existing row the default, so they are set back to NULL).
ALTER TABLE sessions ADD COLUMN summary_counts TEXT DEFAULT '{}';
ALTER TABLE sessions ADD COLUMN summary_names TEXT DEFAULT '{}';
UPDATE sessions SET summary_counts = NULL, summary_names = NULL;
