//! Redaction throughput, on std alone: `cargo bench -p baton-redact`. Prints MB/s for prose
//! without secrets (the common case: every append goes through it) as one large text and as
//! entry-sized texts, and for text dense with secrets. Numbers, not assertions: speed is
//! measured here, never in a timed test.

#[path = "../tests/support/synth.rs"]
mod synth;

use std::hint::black_box;
use std::time::{Duration, Instant};

use baton_redact::{Detector, Redactor};
use synth::Rng;

/// Runs `f` over `texts` until at least `min` has passed; returns the best pass's MB/s.
fn measure(texts: &[String], min: Duration, f: impl Fn(&str) -> usize) -> (f64, usize) {
    let bytes: usize = texts.iter().map(String::len).sum();
    let (mut best, mut total, mut found) = (Duration::MAX, Duration::ZERO, 0);
    let mut passes = 0;
    while total < min || passes < 3 {
        let start = Instant::now();
        found = texts.iter().map(|t| f(black_box(t))).sum();
        let took = start.elapsed();
        best = best.min(took);
        total += took;
        passes += 1;
    }
    (bytes as f64 / best.as_secs_f64() / 1e6, found)
}

/// Microseconds per entry at `mbs` MB/s.
fn per_entry(texts: &[String], mbs: f64) -> f64 {
    texts.iter().map(String::len).sum::<usize>() as f64 / texts.len() as f64 / mbs
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let min = if quick { Duration::from_millis(10) } else { Duration::from_secs(2) };
    let redactor = Redactor::new();
    let mut rng = Rng::new(42);
    let redact = |t: &str| redactor.redact(t).findings.iter().map(|f| f.count).sum::<usize>();

    let plain = vec![synth::plain_prose(&mut rng, 8 << 20)];
    let (mbs, _) = measure(&plain, min, redact);
    println!("plain prose, one 8 MiB text:               {mbs:8.1} MB/s");
    let plain: Vec<String> = (0..8192).map(|_| synth::plain_prose(&mut rng, 1024)).collect();
    let (mbs, _) = measure(&plain, min, redact);
    println!("plain prose, 8192 entries of 1 KiB:        {mbs:8.1} MB/s  ({:.2} µs/entry)", per_entry(&plain, mbs));
    let plain: Vec<String> = (0..65536).map(|_| synth::plain_prose(&mut rng, 100)).collect();
    let (mbs, _) = measure(&plain, min, redact);
    println!("plain prose, 65536 entries of ~100 B:      {mbs:8.1} MB/s  ({:.2} µs/entry)", per_entry(&plain, mbs));

    // Prose in which every 12th word is a lookalike (UUID, SHA, data URI, URL, `sk-…`) and many
    // words are secret prefixes (`AKIA`, `ghp_`, `sk-learn`, `eyJ`): the prefilter's worst case.
    let big = vec![synth::prose(&mut rng, 8 << 20)];
    let (mbs, found) = measure(&big, min, redact);
    println!("lookalike prose, one 8 MiB text:           {mbs:8.1} MB/s  ({found} secrets)");
    let entries: Vec<String> = (0..8192).map(|_| synth::prose(&mut rng, 1024)).collect();
    let (mbs, found) = measure(&entries, min, redact);
    println!(
        "lookalike prose, 8192 entries of 1 KiB:    {mbs:8.1} MB/s  ({:.2} µs/entry, {found} secrets)",
        per_entry(&entries, mbs)
    );

    // One secret every ~200 bytes, every detector in turn.
    let mut dense = String::new();
    let mut planted = 0;
    while dense.len() < 4 << 20 {
        dense.push_str(&synth::prose(&mut rng, 150));
        dense.push(' ');
        dense.push_str(&synth::sample(&mut rng, Detector::ALL[planted % Detector::ALL.len()]).input);
        dense.push(' ');
        planted += 1;
    }
    let dense = vec![dense];
    let (mbs, found) = measure(&dense, min, redact);
    println!(
        "secret-dense, 4 MiB (1 per ~{} B):        {mbs:8.1} MB/s  ({found} of {planted} secrets)",
        dense[0].len() / planted
    );
    assert_eq!(found, planted, "every planted secret is found");

    // Near-misses built to make a matcher rescan: each must stay linear.
    let worst = synth::pathological(1 << 20);
    let (mbs, found) = measure(&worst, min, redact);
    println!("pathological near-misses, {} x 1 MiB:      {mbs:8.1} MB/s  ({found} secrets)", worst.len());
}
