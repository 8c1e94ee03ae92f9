//! Synthetic test data shared by the tests and the benchmark: fake secrets in each detector's
//! format (never real keys: each carries an `EXAMPLE` marker where the format allows, the rest
//! comes from a seeded generator) and prose full of things that look like secrets but are not.

#![allow(dead_code)]

use base64::Engine as _;
use baton_redact::Detector;

/// xorshift64*: deterministic, so every run sees the same data.
pub struct Rng(u64);

pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub const HEX: &[u8] = b"0123456789abcdef";
pub const DIGITS: &[u8] = b"0123456789";

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'t, T: ?Sized>(&mut self, items: &[&'t T]) -> &'t T {
        items[self.below(items.len())]
    }

    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| alphabet[self.below(alphabet.len())] as char).collect()
    }

    /// A string of 1 to `max` characters.
    pub fn run(&mut self, alphabet: &[u8], max: usize) -> String {
        let len = 1 + self.below(max);
        self.string(alphabet, len)
    }
}

/// One fake secret in context: the text to embed and what it must become.
pub struct Sample {
    pub detector: Detector,
    pub input: String,
    pub expected: String,
}

fn whole(detector: Detector, input: String) -> Sample {
    Sample { detector, expected: format!("[REDACTED:{}]", detector.name()), input }
}

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A fake secret of `detector`'s format.
pub fn sample(rng: &mut Rng, detector: Detector) -> Sample {
    match detector {
        Detector::AwsAccessKey => {
            let key = format!("{}{}EXAMPLE", rng.pick(&["AKIA", "ASIA"]), rng.string(UPPER_DIGITS, 9));
            whole(detector, key)
        }
        Detector::AwsSecretKey => {
            let (name, close) = *rng.pick(&[
                &("aws_secret_access_key = ", ""),
                &("AWS_SECRET_ACCESS_KEY=", ""),
                &("\"SecretAccessKey\": \"", "\""),
                &("aws_secret_key: '", "'"),
                &("secret_access_key=", ""),
            ]);
            let secret = format!("{}EXAMPLEKEY", rng.string(BASE64, 30));
            Sample {
                detector,
                input: format!("{name}{secret}{close}"),
                expected: format!("{name}[REDACTED:aws_secret_key]{close}"),
            }
        }
        Detector::GitHubToken => {
            let token = if rng.below(4) == 0 {
                format!("github_pat_EXAMPLE{}_{}", rng.string(ALNUM, 15), rng.string(ALNUM, 59))
            } else {
                format!("{}EXAMPLE{}", rng.pick(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), rng.string(ALNUM, 29))
            };
            whole(detector, token)
        }
        Detector::GitLabToken => {
            let prefix = rng.pick(&["glpat-", "glptt-", "gldt-", "glrt-"]);
            whole(detector, format!("{prefix}EXAMPLE{}{}", rng.string(BASE64URL, 12), rng.string(ALNUM, 1)))
        }
        Detector::SlackToken => {
            let token = match rng.below(3) {
                0 => format!(
                    "xoxb-{}-{}-EXAMPLE{}",
                    rng.string(DIGITS, 11),
                    rng.string(DIGITS, 12),
                    rng.string(ALNUM, 17)
                ),
                1 => format!(
                    "xoxp-{}-{}-{}-EXAMPLE{}",
                    rng.string(DIGITS, 11),
                    rng.string(DIGITS, 11),
                    rng.string(DIGITS, 12),
                    rng.string(HEX, 25)
                ),
                _ => format!(
                    "xapp-1-AEXAMPLE{}-{}-{}",
                    rng.string(UPPER_DIGITS, 4),
                    rng.string(DIGITS, 13),
                    rng.string(HEX, 64)
                ),
            };
            whole(detector, token)
        }
        Detector::SlackWebhook => whole(
            detector,
            format!(
                "https://hooks.slack.com/services/T{}/B{}/EXAMPLE{}",
                rng.string(UPPER_DIGITS, 8),
                rng.string(UPPER_DIGITS, 10),
                rng.string(ALNUM, 17)
            ),
        ),
        Detector::StripeKey => {
            let prefix = rng.pick(&["sk_live_", "sk_test_", "rk_live_", "rk_test_"]);
            let len = 17 + rng.below(80);
            whole(detector, format!("{prefix}EXAMPLE{}", rng.string(ALNUM, len)))
        }
        Detector::OpenAiKey => {
            let key = match rng.below(3) {
                0 => format!("sk-proj-EXAMPLE{}{}", rng.string(ALNUM, 30), rng.string(BASE64URL, 119)),
                1 => format!("sk-svcacct-EXAMPLE{}{}", rng.string(ALNUM, 25), rng.string(BASE64URL, 100)),
                _ => format!("sk-EXAMPLE{}T3BlbkFJ{}", rng.string(ALNUM, 13), rng.string(ALNUM, 20)),
            };
            whole(detector, key)
        }
        Detector::AnthropicKey => {
            whole(detector, format!("sk-ant-api03-EXAMPLE{}{}AA", rng.string(ALNUM, 30), rng.string(BASE64URL, 56)))
        }
        Detector::GoogleApiKey => whole(detector, format!("AIzaSyEXAMPLE{}", rng.string(ALNUM, 26))),
        Detector::PrivateKey => {
            let kind = rng.pick(&["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "]);
            let mut body = format!("MIIEvEXAMPLE{}", rng.string(BASE64, 52));
            for _ in 0..rng.below(20) + 2 {
                body.push('\n');
                body.push_str(&rng.string(BASE64, 64));
            }
            body.push('\n');
            body.push_str(&rng.string(BASE64, 20));
            body.push_str("==");
            let key = format!("-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----");
            whole(detector, key)
        }
        Detector::Jwt => {
            let header =
                b64url(rng.pick(&[r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"typ":"JWT","alg":"RS256","kid":"EXAMPLE"}"#]));
            let payload = b64url(&format!(
                r#"{{"sub":"EXAMPLE-{}","name":"Example User","iat":{}}}"#,
                rng.string(DIGITS, 6),
                1_700_000_000 + rng.below(1_000_000)
            ));
            whole(detector, format!("{header}.{payload}.{}", rng.string(BASE64URL, 43)))
        }
        Detector::BatonApiKey => {
            whole(detector, format!("bk_{}_EXAMPLE{}", rng.string(HEX, 16), rng.string(BASE64URL, 36)))
        }
        Detector::UrlPassword => {
            let scheme = rng.pick(&["postgres", "postgresql", "redis", "mysql", "https", "amqp", "mongodb+srv"]);
            let user =
                if scheme == "redis" && rng.below(2) == 0 { String::new() } else { format!("user{}", rng.below(100)) };
            let len = 6 + rng.below(20);
            let password = format!("p{}", rng.string(b"abcdefXYZ0123456789!$&()*+,;=-._~%:", len));
            let host = rng.pick(&[
                "db.internal:5432/app",
                "127.0.0.1",
                "cache:6379/0",
                "cluster0.example.net/app?retryWrites=true",
            ]);
            Sample {
                detector,
                input: format!("{scheme}://{user}:{password}@{host}"),
                expected: format!("{scheme}://{user}:[REDACTED:url_password]@{host}"),
            }
        }
    }
}

/// A lookalike: something prose, logs and code are full of that no detector may take.
pub fn lookalike(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => format!(
            "{}-{}-4{}-{}{}-{}",
            rng.string(HEX, 8),
            rng.string(HEX, 4),
            rng.string(HEX, 3),
            rng.pick(&["8", "9", "a", "b"]),
            rng.string(HEX, 3),
            rng.string(HEX, 12)
        ),
        1 => rng.string(HEX, 40),
        2 => rng.string(HEX, 64),
        3 => {
            let len = 200 + rng.below(600);
            format!("data:image/png;base64,iVBORw0KGgo{}=", rng.string(BASE64, len))
        }
        4 => format!("https://example.com/{}/{}?page={}", rng.string(ALNUM, 8), rng.string(HEX, 12), rng.below(50)),
        5 => format!("user{}@example.com", rng.below(1000)),
        6 => format!("sha256:{}", rng.string(HEX, 64)),
        7 => format!("sha512-{}==", rng.string(BASE64, 86)),
        8 => format!("{}.{}.{}", rng.below(10), rng.below(30), rng.below(100)),
        9 => format!("postgres://app@db:{}/app", 5000 + rng.below(1000)),
        10 => rng.string(BASE64, 40),
        11 => format!("ghp_{}", "x".repeat(36)),
        12 => format!("{}.{}.{}", b64url(r#"{"typ":"JWT"}"#), rng.string(BASE64URL, 30), rng.string(BASE64URL, 30)),
        13 => format!("sk-{}-{}", rng.string(HEX, 8), rng.string(HEX, 4)),
        14 => format!("git@github.com:example/{}.git", rng.string(HEX, 6)),
        _ => format!("AKIA{}", rng.string(UPPER_DIGITS, 8)),
    }
}

/// Ordinary words; nothing here starts like a secret.
const PLAIN_WORDS: &str = "the agent handed off context to a reviewer after rollout of migration plan and summary \
    budget window is with session prefix host on for we retry idempotent append stream follower in tests passed \
    failed build function returns value error because should could would then when this that file line change";

/// Words that are, or start like, the prefixes the detectors look for.
const SECRETISH_WORDS: &str = "risk-free task-force desk-check ask-me sketch whisk token key secret password AKIA \
    sk eyJ JWT BEGIN PEM github gitlab slack stripe Google API scheme:// user:pass sk-learn glpat xoxb AIza ghp_";

/// Prose of about `len` bytes: words, punctuation, line breaks and a lookalike now and then.
pub fn prose(rng: &mut Rng, len: usize) -> String {
    let words: Vec<&str> = PLAIN_WORDS.split_whitespace().chain(SECRETISH_WORDS.split_whitespace()).collect();
    words_of(rng, len, &words, 12)
}

/// Prose of ordinary words only: nothing in it starts like a secret.
pub fn plain_prose(rng: &mut Rng, len: usize) -> String {
    let words: Vec<&str> = PLAIN_WORDS.split_whitespace().collect();
    words_of(rng, len, &words, 0)
}

/// Words from `list` with a lookalike one time in `lookalike_every` (never when 0).
fn words_of(rng: &mut Rng, len: usize, list: &[&str], lookalike_every: usize) -> String {
    let mut out = String::with_capacity(len + 64);
    while out.len() < len {
        if lookalike_every > 0 && rng.below(lookalike_every) == 0 {
            out.push_str(&lookalike(rng));
        } else {
            out.push_str(list[rng.below(list.len())]);
        }
        out.push_str(match rng.below(20) {
            0 => ". ",
            1 => ", ",
            2 => "\n",
            _ => " ",
        });
    }
    out
}

/// Texts of about `len` bytes that are one long near-miss after another: a rejected match full
/// of further candidates, private key headers without a body, `://` and `eyJ` runs.
pub fn pathological(len: usize) -> Vec<String> {
    let fill = |unit: &str| unit.repeat(len / unit.len() + 1);
    vec![
        fill("glpat-"),
        fill("-----BEGIN PRIVATE KEY-----\n"),
        fill("-----BEGIN RSA PRIVATE KEY----- "),
        fill("://a:"),
        fill("://:@"),
        fill("eyJhbGciOi."),
        fill("AKIA"),
        fill("sk-proj-"),
        fill("xoxb-1-"),
        fill("aws_secret_access_key="),
        format!("-----BEGIN PRIVATE KEY-----{}", " ".repeat(len)),
    ]
}
