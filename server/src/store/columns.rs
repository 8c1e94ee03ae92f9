//! The column lists both stores select, in the order the row readers (`rows`) read them, as
//! macros so that statements stay `&'static str` built with `concat!` (prepared once per
//! connection and reused). Declared before the stores so their statements can splice them.

/// Session columns (`rows::SESSION_COLS` of them), qualified with the table alias `$p`
/// (`"s."`), or unqualified (`""`) for SQLite's `RETURNING`.
macro_rules! session_cols {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "tenant, ",
            $p,
            "session_key, ",
            $p,
            "created_by, ",
            $p,
            "owner, ",
            $p,
            "status, ",
            $p,
            "metadata, ",
            $p,
            "last_seq, ",
            $p,
            "last_summary_seq, ",
            $p,
            "created_at, ",
            $p,
            "updated_at, ",
            $p,
            "last_activity_at, ",
            $p,
            "expires_at, ",
            $p,
            "forked_from_key, ",
            $p,
            "forked_from_seq, ",
            $p,
            "first_seq, ",
            $p,
            "legal_hold, ",
            $p,
            "retention_keep_latest, ",
            $p,
            "retention_max_age_us"
        )
    };
}

/// Entry columns of the alias `e` (`rows::ENTRY_COLS`).
macro_rules! entry_cols {
    () => {
        "e.seq, e.kind, e.role, e.author, e.content_text, e.content_data, e.media_type, e.metadata, \
         e.token_count, e.idempotency_key, e.trace_id, e.created_at, e.redacted_at, e.redacted_by, \
         e.redaction_reason"
    };
}

/// Handoff columns of the alias `h` (`rows::HANDOFF_COLS`).
macro_rules! handoff_cols {
    () => {
        "h.id, h.session_id, h.handoff_id, h.tenant, h.session_key, h.from_agent, h.to_agent, h.type, \
         h.status, h.instructions, h.summary, h.up_to_seq, h.max_tokens, h.reason, h.created_at, \
         h.updated_at, h.deadline"
    };
}

/// Inbox event columns of the alias `ev` (`rows::EVENT_COLS`), then its handoff's (`h`; all
/// NULL for a tombstone, the event of a handoff whose session was deleted: LEFT JOIN it).
macro_rules! event_cols {
    () => {
        concat!("ev.agent, ev.cursor, ev.event, ev.status, ev.reason, ev.updated_at, ev.handoff_id, ", handoff_cols!())
    };
}

/// Where the token-budget read of a session's newest entries starts: the smallest seq among
/// entries of session `$session` with seq above `$after`, at most `$limit` of the newest, whose
/// newer entries together cost at most `$budget` (`tokens::read_bound`). NULL when none.
/// The embedded store uses it (SQLite walks the primary key newest first and stops at the
/// limit); PostgreSQL counts the entries instead ([`window_len!`]).
macro_rules! window_start {
    ($session:literal, $after:literal, $limit:literal, $budget:literal) => {
        concat!(
            "(SELECT MIN(t.seq) FROM ( \
               SELECT seq, token_count, SUM(token_count) OVER (ORDER BY seq DESC) AS running \
               FROM entries WHERE session_id = ",
            $session,
            " AND seq > ",
            $after,
            " ORDER BY seq DESC LIMIT ",
            $limit,
            ") t WHERE t.running - t.token_count <= ",
            $budget,
            ")"
        )
    };
}

/// How many of the newest entries of session `$session` with seq above `$after` the same
/// bound holds (`tokens::read_bound`), as PostgreSQL reads it: newest first, stopped at the
/// first entry past `$limit` or `$budget`, so a read costs the entries the window holds, not
/// `$limit` of them. PostgreSQL takes it as the `LIMIT` of a walk of the primary key newest
/// first; with a start seq instead (`window_start!`), the planner, not knowing the start,
/// could read the whole session through another index when the session was long.
macro_rules! window_len {
    ($session:literal, $after:literal, $limit:literal, $budget:literal) => {
        concat!(
            "COALESCE((SELECT t.n - 1 FROM ( \
               SELECT token_count, ROW_NUMBER() OVER w AS n, SUM(token_count) OVER w AS running \
               FROM entries WHERE session_id = ",
            $session,
            " AND seq > ",
            $after,
            " WINDOW w AS (ORDER BY seq DESC)) t WHERE t.n > ",
            $limit,
            " OR t.running - t.token_count > ",
            $budget,
            " LIMIT 1), ",
            $limit,
            ")"
        )
    };
}

/// Where a handoff's token-budgeted tail starts: the smallest seq `s` of session `$session`
/// such that entries `s..=$up_to` together cost at most `$budget` (`tokens::tail_of`). NULL
/// when not even the newest fits. Read newest first and stopped at the first entry that does
/// not fit (the start is the entry just newer than it, NULL when that is the newest, through
/// the sentinel 0: seqs start at 1); when every entry fits, the oldest. So the read costs the
/// tail, not the session (PostgreSQL stops the walk; it summed the whole session before).
macro_rules! tail_start {
    ($session:literal, $up_to:literal, $budget:literal) => {
        concat!(
            "SELECT NULLIF(COALESCE((SELECT COALESCE(t.newer, 0) FROM ( \
               SELECT LAG(seq) OVER w AS newer, SUM(token_count) OVER w AS running \
               FROM entries WHERE session_id = ",
            $session,
            " AND seq <= ",
            $up_to,
            " WINDOW w AS (ORDER BY seq DESC)) t WHERE t.running > ",
            $budget,
            " LIMIT 1), (SELECT MIN(seq) FROM entries WHERE session_id = ",
            $session,
            " AND seq <= ",
            $up_to,
            ")), 0)"
        )
    };
}
