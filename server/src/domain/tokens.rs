//! Token estimates for context budgets.
//!
//! Baton does not know which model will read a context window, so it uses a documented,
//! model-neutral estimator instead of one vendor's tokenizer: English text averages about four
//! characters per token with BPE tokenizers (cl100k, o200k, Llama 3), so text costs
//! ceil(chars / 4) tokens; binary content costs as much as its base64 rendering would; and
//! every entry adds 4 tokens of framing (role, separators), as chat formats do.

use super::Content;

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

#[cfg(test)]
mod tests {
    use super::*;

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
