//! The detectors: one pattern each, and a check on every match that the pattern cannot express
//! (the `regex` crate has no look-around) or that keeps placeholders out (`ghp_xxxx…`,
//! `${DB_PASSWORD}`). Every pattern starts with a literal (`AKIA`, `ghp_`, `://`, `-----BEGIN`,
//! …) so the scan's prefilter skips text that holds none of them.

use std::fmt;
use std::ops::Range;

use base64::Engine as _;

/// What kind of secret a match is. [`Detector::name`] is the stable name used in the
/// replacement (`[REDACTED:<name>]`) and in the findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// An AWS access key id: `AKIA` (long-term) or `ASIA` (temporary) and 16 more.
    AwsAccessKey,
    /// An AWS secret access key: 40 characters assigned to `aws_secret_access_key`,
    /// `AWS_SECRET_ACCESS_KEY`, `"SecretAccessKey"` and the like. Alone it is only 40 random
    /// characters, so it is found only next to such a name.
    AwsSecretKey,
    /// A GitHub token: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` or a fine-grained `github_pat_`.
    GitHubToken,
    /// A GitLab token: `glpat-` (personal), `glptt-`, `gldt-`, `glrt-`, `glsoat-`, `glft-`.
    GitLabToken,
    /// A Slack token: `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`, `xoxo-`, `xapp-`.
    SlackToken,
    /// A Slack incoming-webhook or workflow URL on `hooks.slack.com` (the whole URL).
    SlackWebhook,
    /// A Stripe secret or restricted key: `sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`.
    StripeKey,
    /// An OpenAI-style API key: `sk-` and 32 or more letters and digits, or `sk-proj-`,
    /// `sk-svcacct-`, `sk-admin-`, `sk-None-`.
    OpenAiKey,
    /// An Anthropic API key: `sk-ant-api03-…` and the like.
    AnthropicKey,
    /// A Google API key: `AIza` and 35 more.
    GoogleApiKey,
    /// A PEM (or PGP) private key block, from `-----BEGIN … PRIVATE KEY-----` to its `-----END`
    /// line, or to the end of its base64 body when the end line is missing.
    PrivateKey,
    /// A JSON Web Token: three base64url segments whose first decodes to a JSON object with
    /// `"alg"`.
    Jwt,
    /// The password of a URL (`scheme://user:password@host`); scheme, user and host are kept.
    UrlPassword,
    /// Baton's own API key: `bk_`, a 16-hex-digit id, `_` and a 43-character secret.
    BatonApiKey,
}

impl Detector {
    /// Every detector, in declaration order.
    pub const ALL: [Detector; 14] = [
        Detector::AwsAccessKey,
        Detector::AwsSecretKey,
        Detector::GitHubToken,
        Detector::GitLabToken,
        Detector::SlackToken,
        Detector::SlackWebhook,
        Detector::StripeKey,
        Detector::OpenAiKey,
        Detector::AnthropicKey,
        Detector::GoogleApiKey,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::UrlPassword,
        Detector::BatonApiKey,
    ];

    /// The stable snake_case name: `[REDACTED:<name>]`, metadata and policies use it.
    pub fn name(self) -> &'static str {
        match self {
            Detector::AwsAccessKey => "aws_access_key",
            Detector::AwsSecretKey => "aws_secret_key",
            Detector::GitHubToken => "github_token",
            Detector::GitLabToken => "gitlab_token",
            Detector::SlackToken => "slack_token",
            Detector::SlackWebhook => "slack_webhook",
            Detector::StripeKey => "stripe_key",
            Detector::OpenAiKey => "openai_key",
            Detector::AnthropicKey => "anthropic_key",
            Detector::GoogleApiKey => "google_api_key",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::UrlPassword => "url_password",
            Detector::BatonApiKey => "baton_api_key",
        }
    }

    /// The detector with this [`name`](Detector::name).
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The pattern. When it has a group named `s`, only that group is the secret (the rest is
    /// context that stays); otherwise the whole match is.
    pub(crate) fn pattern(self) -> &'static str {
        match self {
            Detector::AwsAccessKey => r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
            Detector::AwsSecretKey => concat!(
                r"(?:(?:aws|AWS|Aws)[_.-]?(?:secret|SECRET|Secret)[_.-]?(?:access|ACCESS|Access)?[_.-]?(?:key|KEY|Key)",
                r"|(?:secret|Secret|SECRET)[_-]?(?:access|Access|ACCESS)[_-]?(?:key|Key|KEY))",
                r#"["']?[\t ]*(?:=>|:=|[:=])[\t ]*["']?(?P<s>[A-Za-z0-9/+]{40})"#,
            ),
            Detector::GitHubToken => {
                r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?-u:\b)"
            }
            Detector::GitLabToken => r"(?-u:\b)gl(?:pat|ptt|dt|rt|soat|ft)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*",
            Detector::SlackToken => r"(?-u:\b)(?:xox[abeoprs]|xapp)-[0-9]{1,20}-[A-Za-z0-9-]*[A-Za-z0-9]",
            Detector::SlackWebhook => {
                r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,}(?:/[A-Za-z0-9]{1,40}){1,2}/[A-Za-z0-9]{16,}"
            }
            Detector::StripeKey => r"(?-u:\b)[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
            Detector::OpenAiKey => r"(?-u:\b)sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})",
            Detector::AnthropicKey => r"(?-u:\b)sk-ant-[a-z]{2,10}[0-9]{0,3}-[A-Za-z0-9_-]{32,}",
            Detector::GoogleApiKey => r"(?-u:\b)AIza[A-Za-z0-9_-]{35}",
            // The header; `confirm` finds the body and the end line in code, in time linear in
            // the text (a lazy `.*?` up to an end line would rescan the text for every header).
            Detector::PrivateKey => r"-----BEGIN[ A-Z0-9]{0,40} PRIVATE KEY(?: BLOCK)?-----",
            Detector::Jwt => r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}=*\.[A-Za-z0-9_-]{8,}=*\.[A-Za-z0-9_-]{16,}",
            Detector::UrlPassword => r#"://[^\s:/?#@\[\]"'<>]*:(?P<s>[^\s/?#"'<>]+)@[A-Za-z0-9\[]"#,
            Detector::BatonApiKey => r"(?-u:\b)bk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}",
        }
    }

    /// The span to replace for a match of [`pattern`](Detector::pattern), or `None` when it is
    /// not a secret: `whole` is the match in `text`, `secret` the part that would be replaced.
    pub(crate) fn confirm(self, text: &str, whole: Range<usize>, secret: Range<usize>) -> Option<Range<usize>> {
        let secret = match self {
            Detector::PrivateKey => secret.start..pem_block_end(text, secret.end),
            _ => secret,
        };
        self.accepts(text, whole, secret.clone()).then_some(secret)
    }

    fn accepts(self, text: &str, whole: Range<usize>, secret: Range<usize>) -> bool {
        let s = &text[secret.clone()];
        let next = text.as_bytes().get(secret.end).copied();
        match self {
            Detector::AwsAccessKey => distinct(&s[4..]) >= 6,
            Detector::AwsSecretKey => {
                !next.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'=')) && random_looking(s)
            }
            Detector::GitHubToken => random_looking(s.split_once('_').map_or(s, |(_, body)| body)),
            Detector::GitLabToken | Detector::StripeKey => random_looking(after(s, &['-', '_'], 1)),
            // `xoxb-<team digits>-<the rest>`: the rest is what must look random.
            Detector::SlackToken => s.len() >= 24 && random_looking(after(s, &['-'], 2)),
            Detector::SlackWebhook => true,
            Detector::OpenAiKey => {
                let body = after(s, &['-'], if has_project_prefix(s) { 2 } else { 1 });
                longest_alnum_run(body) >= 20 && random_looking(body)
            }
            Detector::AnthropicKey => {
                let body = after(s, &['-'], 3);
                longest_alnum_run(body) >= 20 && random_looking(body)
            }
            Detector::GoogleApiKey => {
                !next.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) && random_looking(&s[4..])
            }
            // A real key's body has base64 lines; a mention of the header in prose has none.
            Detector::PrivateKey => longest_run(s, |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/')) >= 40,
            Detector::Jwt => jwt_header_has_alg(s),
            Detector::UrlPassword => url_has_scheme(text, whole.start) && !placeholder_password(s),
            Detector::BatonApiKey => {
                !next.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) && random_looking(&s[20..])
            }
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The part of `s` after its `n`th separator (any of `seps`).
fn after<'s>(s: &'s str, seps: &[char], n: usize) -> &'s str {
    let mut rest = s;
    for _ in 0..n {
        match rest.split_once(seps) {
            Some((_, r)) => rest = r,
            None => return rest,
        }
    }
    rest
}

fn has_project_prefix(key: &str) -> bool {
    ["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"].iter().any(|p| key.starts_with(p))
}

fn distinct(s: &str) -> usize {
    let mut seen = [false; 128];
    s.bytes().filter(|&b| b < 128 && !std::mem::replace(&mut seen[b as usize], true)).count()
}

/// Random key material rather than a placeholder or a word: at least 8 different characters
/// and at least two of lower case, upper case and digits. A random 20-character key fails this
/// with a probability far below one in a million; `xxxx…`, `0000…`, `your-token-here` fail it.
fn random_looking(s: &str) -> bool {
    let classes = [
        s.bytes().any(|b| b.is_ascii_lowercase()),
        s.bytes().any(|b| b.is_ascii_uppercase()),
        s.bytes().any(|b| b.is_ascii_digit()),
    ];
    distinct(s) >= 8 && classes.iter().filter(|&&c| c).count() >= 2
}

fn longest_run(s: &str, class: impl Fn(u8) -> bool) -> usize {
    let (mut best, mut run) = (0, 0);
    for b in s.bytes() {
        run = if class(b) { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

fn longest_alnum_run(s: &str) -> usize {
    longest_run(s, |b| b.is_ascii_alphanumeric())
}

/// The first segment decodes (base64url, padding optional) to a JSON object with an `"alg"`.
fn jwt_header_has_alg(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or("").trim_end_matches('=');
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else { return false };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(serde_json::Value::is_string),
        _ => false,
    }
}

/// Where the PEM block whose header ends at `from` ends: after its end line when one follows
/// the body, else after the body (a key pasted without its end line is still a key).
fn pem_block_end(text: &str, from: usize) -> usize {
    // The body on one line or many, up to the next `-----`: only the bytes of base64, line
    // breaks (also JSON-escaped) and `Name: value` headers. Stops at the next `-----`, so each
    // header is followed once, never past the next block.
    let bytes = text.as_bytes();
    let body_byte = |b: u8| b.is_ascii_alphanumeric() || b" \t\r\n\\+/=:,.-".contains(&b);
    let mut i = from;
    while i < bytes.len() && body_byte(bytes[i]) {
        if bytes[i..].starts_with(b"-----") {
            if let Some(end) = pem_end_line(text, i) {
                return end;
            }
            break;
        }
        i += 1;
    }
    // Lines with other bytes in their headers: the body line by line, then its end line.
    let body_end = pem_body_end(text, from);
    let rest = &text[body_end..];
    let next_line = ["\r\n", "\n", "\\r\\n", "\\n"].iter().find(|t| rest.starts_with(**t)).map_or(0, |t| t.len());
    pem_end_line(text, body_end + next_line).unwrap_or(body_end)
}

/// The end of the `-----END … PRIVATE KEY-----` line at `at`, if one is there.
fn pem_end_line(text: &str, at: usize) -> Option<usize> {
    let rest = text[at..].strip_prefix("-----END")?;
    let label_len = rest.bytes().take(60).position(|b| b == b'-')?;
    let label = &rest[..label_len];
    let kind = label.strip_suffix(" PRIVATE KEY").or_else(|| label.strip_suffix(" PRIVATE KEY BLOCK"))?;
    let closed = rest[label_len..].starts_with("-----");
    (closed && kind.bytes().all(|b| b == b' ' || b.is_ascii_uppercase() || b.is_ascii_digit()))
        .then_some(at + "-----END".len() + label_len + "-----".len())
}

/// Where the body of a PEM block without an end line stops: after the run of lines, from
/// `from` (the end of the header line) on, that are base64 or `Name: value` headers, with one
/// blank line allowed after the headers. Lines break on `\n`, `\r\n` or their JSON escapes.
fn pem_body_end(text: &str, from: usize) -> usize {
    let (mut pos, mut end, mut blank_allowed) = (from, from, false);
    loop {
        let rest = &text[pos..];
        let Some(term) = ["\r\n", "\n", "\\r\\n", "\\n"].iter().find(|t| rest.starts_with(**t)) else { break };
        let start = pos + term.len();
        let len = text[start..].find(['\n', '\r', '\\']).unwrap_or(text.len() - start);
        let line = text[start..start + len].trim_matches([' ', '\t']);
        pos = start + len;
        if line.is_empty() && std::mem::take(&mut blank_allowed) {
            continue;
        }
        let base64 =
            !line.is_empty() && line.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        let header = line.split_once(": ").is_some_and(|(name, _)| {
            name.starts_with(|c: char| c.is_ascii_uppercase())
                && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
        });
        if !(base64 || header) {
            break;
        }
        blank_allowed = header;
        end = pos;
    }
    end
}

/// `://` at `at` follows a URL scheme (RFC 3986: a letter, then letters, digits, `+ - .`).
fn url_has_scheme(text: &str, at: usize) -> bool {
    let before = &text.as_bytes()[..at];
    let len = before.iter().rev().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')).count();
    len > 0 && before[at - len].is_ascii_alphabetic()
}

/// A reference to a password rather than one: `${DB_PASSWORD}`, `$PASS`, `<password>`,
/// `{password}`, `%s`, `****`, or this crate's own replacement.
fn placeholder_password(p: &str) -> bool {
    p.starts_with(['$', '<', '{', '%']) || p.bytes().all(|b| b == b'*') || p.starts_with("[REDACTED:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut names: Vec<_> = Detector::ALL.iter().map(|d| d.name()).collect();
        for (i, (d, n)) in Detector::ALL.iter().zip(&names).enumerate() {
            assert_eq!(*d as usize, i, "ALL is in declaration order (counts are indexed by it)");
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{n}");
            assert_eq!(Detector::from_name(n), Some(*d));
            assert_eq!(d.to_string(), *n);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Detector::ALL.len());
        assert_eq!(Detector::from_name("nope"), None);
    }

    /// The set's prefilter needs every pattern to start with one of a few literals: a pattern
    /// that starts with a class would make every byte of every text a candidate. This extracts
    /// the set's prefixes the way the regex crate does before it builds its prefilter.
    #[test]
    fn the_set_starts_with_a_few_literals() {
        use regex_syntax::hir::{
            Hir,
            literal::{ExtractKind, Extractor},
        };
        let hirs = Detector::ALL.map(|d| regex_syntax::parse(d.pattern()).unwrap());
        let mut prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(&Hir::alternation(hirs.to_vec()));
        prefixes.optimize_for_prefix_by_preference();
        let literals = prefixes.literals().expect("a finite prefix set");
        assert!(literals.len() <= 64, "{} prefixes", literals.len());
        assert!(literals.iter().all(|l| l.len() >= 3), "a prefix shorter than 3 bytes in {literals:?}");
    }

    #[test]
    fn random_looking_rejects_placeholders() {
        for s in [
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "000000000000000000000000",
            "your-token-here-please",
            "abcdefghijklmnop",
        ] {
            assert!(!random_looking(s), "{s}");
        }
        for s in ["Qm3xT9vLp2Rk8WzN4cYh", "f3a9c1e07b2d4e6f8a0b", "AbCdEfGhIjKlMnOp"] {
            assert!(random_looking(s), "{s}");
        }
    }

    #[test]
    fn after_counts_separators() {
        assert_eq!(after("sk-proj-abc-def", &['-'], 2), "abc-def");
        assert_eq!(after("xoxb-123-456-abc", &['-'], 2), "456-abc");
        assert_eq!(after("glpat-abc_def", &['-', '_'], 1), "abc_def");
        assert_eq!(after("nosep", &['-'], 3), "nosep");
    }

    #[test]
    fn url_scheme_must_start_with_a_letter() {
        assert!(url_has_scheme("postgres://", 8));
        assert!(url_has_scheme("see mongodb+srv://", 15));
        assert!(!url_has_scheme("://", 0));
        assert!(!url_has_scheme(" 9x://", 3));
        assert!(!url_has_scheme("a ://", 2));
    }

    #[test]
    fn jwt_header_must_be_json_with_alg() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        assert!(jwt_header_has_alg(&format!("{}.x.y", b64(r#"{"alg":"HS256","typ":"JWT"}"#))));
        assert!(jwt_header_has_alg(&format!("{}==.x.y", b64(r#"{"alg":"RS256"}"#))));
        assert!(!jwt_header_has_alg(&format!("{}.x.y", b64(r#"{"typ":"JWT"}"#))));
        assert!(!jwt_header_has_alg(&format!("{}.x.y", b64(r#"{"alg":1}"#))));
        assert!(!jwt_header_has_alg(&format!("{}.x.y", b64(r#"["alg"]"#))));
        assert!(!jwt_header_has_alg("eyJ!!!.x.y"));
    }
}
