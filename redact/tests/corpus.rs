//! The corpus: tests/corpus/positives.txt (synthetic secrets in context, each marked with the
//! detector that must take it) and tests/corpus/lookalikes.txt (text that must pass unchanged),
//! then generated data: every detector's format at many seeds inside prose full of lookalikes.

#[path = "support/synth.rs"]
mod synth;

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use baton_redact::{Detector, Redacted, Redactor};
use synth::Rng;

const POSITIVES: &str = include_str!("corpus/positives.txt");
const LOOKALIKES: &str = include_str!("corpus/lookalikes.txt");

struct Case {
    title: String,
    body: String,
}

/// Splits a corpus file into cases: a case is a run of `%%` title lines and the lines below;
/// `%%%` lines are comments.
fn cases(file: &str) -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    let mut in_title = false;
    for line in file.lines() {
        if line.starts_with("%%%") {
            continue;
        }
        if let Some(title) = line.strip_prefix("%%") {
            if !in_title {
                out.push(Case { title: String::new(), body: String::new() });
            }
            let case = out.last_mut().expect("pushed above");
            case.title.push_str(title);
            in_title = true;
        } else {
            let case = out.last_mut().expect("a corpus file starts with a %% title");
            if !in_title {
                case.body.push('\n');
            }
            case.body.push_str(line);
            in_title = false;
        }
    }
    out
}

/// A positive case with its markers resolved: the text to feed, the text expected back and the
/// expected findings.
struct Marked {
    input: String,
    expected: String,
    counts: BTreeMap<String, usize>,
    secrets: Vec<(String, String)>,
}

fn resolve(body: &str) -> Marked {
    let mut m = Marked { input: String::new(), expected: String::new(), counts: BTreeMap::new(), secrets: Vec::new() };
    let mut rest = body;
    while let Some(open) = rest.find('⟦') {
        let (before, marker) = rest.split_at(open);
        let close = marker.find('⟧').expect("every ⟦ has its ⟧");
        let (name, secret) = marker['⟦'.len_utf8()..close].split_once('|').expect("⟦detector|secret⟧");
        assert!(Detector::from_name(name).is_some(), "unknown detector {name}");
        m.input.push_str(before);
        m.input.push_str(secret);
        m.expected.push_str(before);
        m.expected.push_str(&format!("[REDACTED:{name}]"));
        *m.counts.entry(name.to_owned()).or_default() += 1;
        m.secrets.push((name.to_owned(), secret.to_owned()));
        rest = &marker[close + '⟧'.len_utf8()..];
    }
    m.input.push_str(rest);
    m.expected.push_str(rest);
    m
}

fn counts(r: &Redacted<'_>) -> BTreeMap<String, usize> {
    r.findings.iter().map(|f| (f.detector.name().to_owned(), f.count)).collect()
}

#[test]
fn corpus_files_parse() {
    let positives = cases(POSITIVES);
    let lookalikes = cases(LOOKALIKES);
    assert!(positives.len() >= 30, "{} positive cases", positives.len());
    assert!(lookalikes.len() >= 25, "{} lookalike cases", lookalikes.len());
    for case in positives.iter().chain(&lookalikes) {
        assert!(!case.body.trim().is_empty(), "case without text: {}", case.title);
    }
    for case in &positives {
        assert!(case.body.contains('⟦'), "positive case without a marked secret: {}", case.title);
    }
    for case in &lookalikes {
        assert!(!case.body.contains('⟦'), "lookalike case with a marker: {}", case.title);
    }
}

#[test]
fn every_positive_is_redacted_exactly() {
    let redactor = Redactor::new();
    let mut failures = Vec::new();
    for case in cases(POSITIVES) {
        let m = resolve(&case.body);
        let out = redactor.redact(&m.input);
        if out.text != m.expected || counts(&out) != m.counts {
            failures.push(format!(
                "case{}\n  expected: {:?} {:?}\n  got:      {:?} {:?}",
                case.title,
                m.expected,
                m.counts,
                out.text,
                counts(&out)
            ));
        }
    }
    assert!(failures.is_empty(), "{} positive cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_detector_has_positive_cases() {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for case in cases(POSITIVES) {
        for (name, n) in resolve(&case.body).counts {
            *seen.entry(name).or_default() += n;
        }
    }
    for d in Detector::ALL {
        assert!(seen.get(d.name()).is_some_and(|&n| n >= 2), "{d}: fewer than two positives in the corpus ({seen:?})");
    }
}

/// The positives are fakes: each carries EXAMPLE where its format allows it (a JWT in its
/// payload; a URL password is a word such as `hunter2`, short of any real credential).
#[test]
fn positives_are_synthetic() {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for case in cases(POSITIVES) {
        for (name, secret) in resolve(&case.body).secrets {
            let marked = match name.as_str() {
                "url_password" => secret.len() <= 16,
                "jwt" => {
                    let payload = secret.split('.').nth(1).unwrap_or("");
                    b64.decode(payload).is_ok_and(|p| String::from_utf8_lossy(&p).contains("EXAMPLE"))
                }
                _ => secret.contains("EXAMPLE"),
            };
            assert!(marked, "case{}: {name} {secret:?} carries no EXAMPLE marker", case.title);
        }
    }
}

#[test]
fn every_lookalike_is_untouched() {
    let redactor = Redactor::new();
    let mut failures = Vec::new();
    for case in cases(LOOKALIKES) {
        let out = redactor.redact(&case.body);
        if !matches!(out.text, Cow::Borrowed(_)) || !out.findings.is_empty() {
            failures.push(format!("case{}: {:?}\n  became {:?}", case.title, out.findings, out.text));
        }
    }
    assert!(failures.is_empty(), "{} lookalike cases were changed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn redacting_the_redacted_corpus_changes_nothing() {
    let redactor = Redactor::new();
    for case in cases(POSITIVES) {
        let expected = resolve(&case.body).expected;
        let again = redactor.redact(&expected);
        assert!(again.findings.is_empty(), "case{}: {:?} in {:?}", case.title, again.findings, again.text);
    }
}

/// Each positive again, alone inside generated prose and lookalikes: context does not hide it
/// and it does not spill into its neighbours.
#[test]
fn positives_are_found_inside_generated_prose() {
    let redactor = Redactor::new();
    let mut rng = Rng::new(1);
    for case in cases(POSITIVES) {
        let m = resolve(&case.body);
        let (before, after) = (synth::prose(&mut rng, 300), synth::prose(&mut rng, 300));
        let input = format!("{before}\n{}\n{after}", m.input);
        let out = redactor.redact(&input);
        assert_eq!(out.text, format!("{before}\n{}\n{after}", m.expected), "case{}", case.title);
        assert_eq!(counts(&out), m.counts, "case{}", case.title);
    }
}

/// Every detector's format, many times over with seeded random bodies, between prose.
#[test]
fn generated_secrets_are_redacted_exactly() {
    let redactor = Redactor::new();
    let mut rng = Rng::new(7);
    for round in 0..200 {
        for detector in Detector::ALL {
            let sample = synth::sample(&mut rng, detector);
            let (before, after) = (synth::prose(&mut rng, 120), synth::prose(&mut rng, 120));
            let input = format!("{before} {} {after}", sample.input);
            let out = redactor.redact(&input);
            assert_eq!(out.text, format!("{before} {} {after}", sample.expected), "round {round}, {detector}");
            assert_eq!(counts(&out), BTreeMap::from([(detector.name().to_owned(), 1)]), "round {round}");
        }
    }
}

#[test]
fn generated_prose_and_lookalikes_are_untouched() {
    let redactor = Redactor::new();
    let mut rng = Rng::new(11);
    for _ in 0..20 {
        let text = synth::prose(&mut rng, 64 * 1024);
        let out = redactor.redact(&text);
        assert!(out.findings.is_empty(), "{:?}", out.findings);
        assert!(matches!(out.text, Cow::Borrowed(_)));
    }
    for _ in 0..5_000 {
        let text = synth::lookalike(&mut rng);
        assert!(!redactor.redact(&text).is_redacted(), "{text}");
    }
}

/// Line-ending variants of a PEM block: CRLF, and a block cut off before its end line.
#[test]
fn private_keys_with_crlf_and_without_end_line() {
    let redactor = Redactor::new();
    let mut rng = Rng::new(3);
    let sample = synth::sample(&mut rng, Detector::PrivateKey);
    let crlf = sample.input.replace('\n', "\r\n");
    let input = format!("key:\r\n{crlf}\r\nend");
    let out = redactor.redact(&input);
    assert_eq!(out.text, "key:\r\n[REDACTED:private_key]\r\nend");

    let cut = sample.input.rsplit_once('\n').expect("a multi-line block").0;
    let input = format!("{cut}\n\nThat was all of it.");
    let out = redactor.redact(&input);
    assert_eq!(out.text, "[REDACTED:private_key]\n\nThat was all of it.");
}

/// A redactor shared across threads gives every thread the same answers.
#[test]
fn one_redactor_serves_many_threads() {
    let redactor = Redactor::new();
    let positives: Vec<Marked> = cases(POSITIVES).iter().map(|c| resolve(&c.body)).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for m in &positives {
                    assert_eq!(redactor.redact(&m.input).text, m.expected);
                }
            });
        }
    });
}

/// Inputs built to make a matcher rescan: long rejected matches full of candidates, thousands
/// of headers without a body. They must come back unchanged (the benchmark times them).
#[test]
fn pathological_inputs_change_nothing() {
    let redactor = Redactor::new();
    for text in synth::pathological(64 * 1024) {
        let out = redactor.redact(&text);
        assert!(out.findings.is_empty(), "{:?} in {:.80}", out.findings, text);
    }
}

/// Random mixes of secret prefixes, fragments of real formats, line breaks and non-ASCII text:
/// redaction never panics, keeps every byte outside what it replaces, and is idempotent.
#[test]
fn random_fragments_never_break_redaction() {
    const FRAGMENTS: &[&str] = &[
        "AKIA",
        "ASIA",
        "ghp_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-1-",
        "xapp-",
        "sk-",
        "sk-proj-",
        "sk-ant-api03-",
        "sk_live_",
        "rk_test_",
        "AIza",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJ",
        ".",
        "://",
        "postgres://",
        "u:",
        ":",
        "@",
        "h",
        "aws_secret_access_key=",
        "https://hooks.slack.com/services/T",
        "\n",
        "\r\n",
        "\\n",
        " ",
        "=",
        "-",
        "_",
        "/",
        "é",
        "秘",
        "🔑",
        "[REDACTED:jwt]",
    ];
    let redactor = Redactor::new();
    let mut rng = Rng::new(5);
    let mut redacted = 0;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..rng.below(24) {
            match rng.below(3) {
                0 => text.push_str(&rng.run(synth::ALNUM, 48)),
                1 => text.push_str(&rng.run(synth::BASE64URL, 16)),
                _ => text.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]),
            }
        }
        let once = redactor.redact(&text);
        let again = redactor.redact(&once.text);
        assert!(again.findings.is_empty(), "not idempotent: {text:?} -> {:?} -> {:?}", once.text, again.text);
        // Every placeholder stands for at least one byte of the input, and the rest is kept.
        let replaced: usize = once.findings.iter().map(|f| f.count).sum();
        assert_eq!(once.text.matches("[REDACTED:").count() - text.matches("[REDACTED:").count(), replaced, "{text:?}");
        redacted += usize::from(once.is_redacted());
    }
    // The mixes do reach the detectors: a fair share of them holds something redacted.
    assert!(redacted >= 1_000, "only {redacted} of 20000 texts had a secret");
}
