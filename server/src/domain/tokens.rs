//! Token estimates for context budgets.
//!
//! Baton does not know which model will read a context window, so it uses a documented,
//! model-neutral estimator instead of one vendor's tokenizer: English text averages about four
//! characters per token with BPE tokenizers (cl100k, o200k, Llama 3), so text costs
//! ceil(chars / 4) tokens; binary content costs as much as its base64 rendering would; and
//! every entry adds 4 tokens of framing (role, separators), as chat formats do.
//!
//! The token-budget rule is written here once ([`fitting`]); everything that selects entries
//! by budget (a context window, a handoff's context package) applies it, and every bounded
//! read of the stores and the cache fetches at least what [`read_bound`] says, so that the
//! rule gives the same answer on what they read as on the whole session ([`window_of`] and
//! [`tail_of`] are that whole-session answer, the reference the contract tests hold every
//! implementation to).

use super::{Content, Entry, EntryKind};

/// Tokens charged to every entry for its framing.
pub const ENTRY_OVERHEAD: u32 = 4;

/// Estimated tokens of an entry with this content.
pub fn estimate(content: &Content) -> u32 {
    let body = match content {
        Content::Text(t) => t.chars().count().div_ceil(4),
        Content::Data(d) => d.len().div_ceil(3),
    };
    u32::try_from(body).unwrap_or(u32::MAX).saturating_add(ENTRY_OVERHEAD)
}

/// The token-budget rule. Of entries offered newest first (by their costs), a budget of
/// `budget` tokens takes the longest run, starting at the newest, whose costs total at most
/// `budget`: the first entry that does not fit ends the run, even when an older, smaller one
/// would fit, so what a budget selects is always a contiguous tail. Returns the run's length.
pub fn fitting(costs_newest_first: impl IntoIterator<Item = u32>, budget: u32) -> usize {
    let mut left = u64::from(budget);
    let mut taken = 0;
    for cost in costs_newest_first {
        let Some(rest) = left.checked_sub(u64::from(cost)) else { break };
        left = rest;
        taken += 1;
    }
    taken
}

/// How many of the entries offered newest first a bounded read must fetch for [`fitting`] to
/// give the same answer on what it read as on all of them: the entries that fit plus the first
/// that does not (which shows that the budget, not the entries, ran out). Equivalently: every
/// entry whose newer entries together cost at most `budget`; that is how the stores' SQL
/// states it.
pub fn read_bound(costs_newest_first: impl IntoIterator<Item = u32>, budget: u32) -> usize {
    let mut newer = 0u64;
    let mut read = 0;
    for cost in costs_newest_first {
        if newer > u64::from(budget) {
            break;
        }
        newer += u64::from(cost);
        read += 1;
    }
    read
}

/// The context window's share of the entries after the latest summary, offered newest first:
/// at most `max_entries` of them, and only those that fit what the summary leaves of
/// `max_tokens` (a summary costing more than the budget leaves nothing, and is still sent).
/// Returns how many of the offered entries the window takes.
pub fn window_len(
    summary_tokens: u32,
    costs_newest_first: impl IntoIterator<Item = u32>,
    max_entries: u32,
    max_tokens: u32,
) -> usize {
    let budget = max_tokens.saturating_sub(summary_tokens);
    fitting(costs_newest_first.into_iter().take(max_entries as usize), budget)
}

/// The context window of a session whose entries are `entries` (all of them, in seq order):
/// its latest summary, and the entries after it that [`window_len`] takes, in seq order.
pub fn window_of(entries: &[Entry], max_entries: u32, max_tokens: u32) -> (Option<&Entry>, &[Entry]) {
    let after = entries.iter().rposition(|e| e.kind == EntryKind::Summary);
    let summary = after.map(|i| &entries[i]);
    let candidates = &entries[after.map_or(0, |i| i + 1)..];
    let summary_tokens = summary.map_or(0, |s| s.token_count);
    let costs = candidates.iter().rev().map(|e| e.token_count);
    let n = window_len(summary_tokens, costs, max_entries, max_tokens);
    (summary, &candidates[candidates.len() - n..])
}

/// A handoff's context package of a session whose entries are `entries` (all of them, in seq
/// order): the newest entries up to `up_to_seq` that fit `budget`, in seq order. Its first
/// seq (or `up_to_seq + 1` when it is empty) is what `Store::tail_start` answers.
pub fn tail_of(entries: &[Entry], up_to_seq: u64, budget: u32) -> &[Entry] {
    let upto = entries.partition_point(|e| e.seq <= up_to_seq);
    let n = fitting(entries[..upto].iter().rev().map(|e| e.token_count), budget);
    &entries[upto - n..upto]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_takes_the_newest_run_that_fits() {
        assert_eq!(fitting([5, 5, 5], 10), 2);
        assert_eq!(fitting([5, 5, 5], 9), 1);
        assert_eq!(fitting([5, 5, 5], 0), 0);
        assert_eq!(fitting([5, 5, 5], u32::MAX), 3);
        // The first entry that does not fit ends the run, however small the older ones are.
        assert_eq!(fitting([3, 20, 1, 1], 10), 1);
        // Free entries fit in an exhausted budget until a costly one ends the run.
        assert_eq!(fitting([5, 0, 0, 3, 0], 5), 3);
        assert_eq!(fitting([u32::MAX, u32::MAX], u32::MAX), 1);
    }

    #[test]
    fn a_bounded_read_holds_the_run_and_the_entry_that_ends_it() {
        assert_eq!(read_bound([5, 5, 5], 10), 3);
        assert_eq!(read_bound([5, 5, 5, 5], 10), 3);
        assert_eq!(read_bound([5, 5, 5], 9), 2);
        assert_eq!(read_bound([5, 5, 5], 0), 1);
        assert_eq!(read_bound([0, 0, 5], 0), 3);
        assert_eq!(read_bound([5, 0, 0, 3, 0], 5), 4);
        assert_eq!(read_bound(Vec::<u32>::new(), 5), 0);
        // Whatever the costs and budget: the rule on the bounded read is the rule on all.
        let costs = [7, 0, 3, 3, 12, 1, 0, 0, 9, 4];
        for budget in 0..50 {
            let bound = read_bound(costs, budget);
            assert_eq!(fitting(costs[..bound].iter().copied(), budget), fitting(costs, budget), "budget {budget}");
            assert!(bound == costs.len() || bound > fitting(costs, budget), "budget {budget}: the stopper is read");
        }
    }

    fn e(seq: u64, kind: EntryKind, token_count: u32) -> Entry {
        Entry {
            session_key: "s".into(),
            seq,
            kind,
            role: String::new(),
            author: "a".into(),
            content: Content::Text(String::new()),
            media_type: "text/plain".into(),
            metadata: Default::default(),
            token_count,
            idempotency_key: String::new(),
            trace_id: String::new(),
            created_at: crate::domain::Micros(0),
            redaction: None,
        }
    }

    #[test]
    fn a_window_is_the_latest_summary_and_what_fits_after_it() {
        use EntryKind::{Message as M, Summary as S};
        let entries = [e(1, M, 5), e(2, S, 10), e(3, M, 5), e(4, S, 4), e(5, M, 6), e(6, M, 6), e(7, M, 6)];
        let seqs = |w: &[Entry]| w.iter().map(|e| e.seq).collect::<Vec<_>>();
        let (summary, tail) = window_of(&entries, 100, u32::MAX);
        assert_eq!((summary.map(|s| s.seq), seqs(tail)), (Some(4), vec![5, 6, 7]));
        assert_eq!(seqs(window_of(&entries, 2, u32::MAX).1), [6, 7]);
        // The summary's 4 tokens leave 12 of 16: two entries.
        assert_eq!(seqs(window_of(&entries, 100, 16).1), [6, 7]);
        assert_eq!(seqs(window_of(&entries, 100, 15).1), [7]);
        let (summary, tail) = window_of(&entries, 100, 3);
        assert_eq!((summary.map(|s| s.seq), tail.len()), (Some(4), 0), "an oversized summary is still sent");
        let plain = [e(1, M, 5), e(2, M, 5)];
        assert_eq!(window_of(&plain, 100, 5), (None, &plain[1..]));
        assert_eq!(window_of(&[], 100, 5), (None, &[][..]));
    }

    #[test]
    fn a_handoff_tail_ignores_summaries_and_stops_at_up_to_seq() {
        use EntryKind::{Message as M, Summary as S};
        let entries = [e(1, M, 5), e(2, S, 5), e(3, M, 5), e(4, M, 5)];
        let seqs = |w: &[Entry]| w.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(tail_of(&entries, 3, 10)), [2, 3]);
        assert_eq!(seqs(tail_of(&entries, 4, 100)), [1, 2, 3, 4]);
        assert_eq!(seqs(tail_of(&entries, 4, 4)), Vec::<u64>::new());
        assert_eq!(seqs(tail_of(&entries, 0, 100)), Vec::<u64>::new());
    }

    #[test]
    fn text_is_a_quarter_of_its_characters_plus_framing() {
        assert_eq!(estimate(&Content::Text(String::new())), 4);
        assert_eq!(estimate(&Content::Text("abcd".into())), 5);
        assert_eq!(estimate(&Content::Text("abcde".into())), 6);
        // Characters, not bytes: four 3-byte characters are one token.
        assert_eq!(estimate(&Content::Text("日本語話".into())), 5);
    }

    #[test]
    fn data_costs_its_base64_length() {
        // 300 bytes → 400 base64 characters → 100 tokens.
        assert_eq!(estimate(&Content::Data(vec![0; 300])), 104);
    }
}
