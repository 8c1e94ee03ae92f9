//! What the benchmark suite's Rust clients share: a runner ([`closed_loop`]) that keeps a fixed
//! number of calls in flight for a fixed time, or starts them at a fixed rate (ghz's `--rps`),
//! the report they write in the shape of ghz's JSON report ([`Outcomes::ghz_report`], so
//! `ghz/summarize.py` reads them and ghz's alike; [`Outcomes::details`] for its per-call
//! `details`), a lazy look into protobuf responses ([`count_field`]) and argument helpers.
//!
//! The binaries: `baton-replay` (StreamEntries replay), `baton-follow` (follow streams' memory),
//! `baton-load` (GetContextWindow, ListEntries, AppendEntries, RequestHandoff and health Check
//! at a fixed concurrency or rate, without ghz's decoding) and `baton-mcp-load` (`update_context` through `baton-mcp`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// The latency percentiles a ghz report lists.
const PERCENTAGES: [usize; 7] = [10, 25, 50, 75, 90, 95, 99];
/// Longest error message kept per kind (as ghz/summarize.py cuts them).
const MESSAGE_CHARS: usize = 160;

/// Why one call failed: a status code name (gRPC's, or the client's own for a result it
/// refused) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::new(format!("{:?}", s.code()), format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))
    }
}

/// Every call's outcome: the latencies of the successful ones, status codes and error messages
/// (and, for the failed calls the runner timed, their latencies and codes).
#[derive(Debug, Default, Clone)]
pub struct Outcomes {
    latencies: Vec<Duration>,
    failed_latencies: Vec<(Duration, String)>,
    codes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Outcomes {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies.push(latency);
        *self.codes.entry("OK".into()).or_default() += 1;
    }

    pub fn failed(&mut self, failure: Failure) {
        *self.codes.entry(failure.code).or_default() += 1;
        let message: String = failure.message.chars().take(MESSAGE_CHARS).collect();
        *self.errors.entry(message).or_default() += 1;
    }

    /// A failed call that took `latency` (it shows in [`Outcomes::details`]).
    pub fn failed_after(&mut self, failure: Failure, latency: Duration) {
        self.failed_latencies.push((latency, failure.code.clone()));
        self.failed(failure);
    }

    pub fn merge(&mut self, other: Outcomes) {
        self.latencies.extend(other.latencies);
        self.failed_latencies.extend(other.failed_latencies);
        for (k, n) in other.codes {
            *self.codes.entry(k).or_default() += n;
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
    }

    /// Calls made, successful or not.
    pub fn count(&self) -> u64 {
        self.codes.values().sum()
    }

    /// Calls that did not succeed.
    pub fn failures(&self) -> u64 {
        self.count() - self.latencies.len() as u64
    }

    /// The latency at `percentage` of the successful calls (nearest rank), if any succeeded.
    pub fn percentile(&self, percentage: usize) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        nearest_rank(&sorted, percentage)
    }

    /// A report in the shape of ghz's (`-O json`): `options`, `count`, `total`, `average`,
    /// `fastest`, `slowest`, `rps`, `errorDistribution`, `statusCodeDistribution` and
    /// `latencyDistribution` (nanoseconds, successful calls only, as ghz does), plus `extra`.
    pub fn ghz_report(&self, name: &str, options: Value, total: Duration, extra: Map<String, Value>) -> Value {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let distribution: Vec<Value> = PERCENTAGES
            .into_iter()
            .filter_map(|p| nearest_rank(&sorted, p).map(|l| json!({ "percentage": p, "latency": nanos(l) })))
            .collect();
        let ok = sorted.len() as u64;
        let average = sorted.iter().map(|d| nanos(*d)).sum::<u64>().checked_div(ok).unwrap_or(0);
        let mut report = json!({
            "name": name,
            "options": options,
            "count": self.count(),
            "total": nanos(total),
            "average": average,
            "fastest": sorted.first().copied().map_or(0, nanos),
            "slowest": sorted.last().copied().map_or(0, nanos),
            "rps": if total.is_zero() { 0.0 } else { self.count() as f64 / total.as_secs_f64() },
            "errorDistribution": self.errors,
            "statusCodeDistribution": self.codes,
            "latencyDistribution": distribution,
        });
        if let Value::Object(fields) = &mut report {
            fields.extend(extra);
        }
        report
    }

    /// ghz's per-call `details` (`latency` in nanoseconds, `status`; no timestamps, and not in
    /// call order: the successful calls, then the failed ones), which ghz/summarize.py merges
    /// across the parts of a group such as the mixed workload.
    pub fn details(&self) -> Value {
        let ok = self.latencies.iter().map(|l| json!({ "latency": nanos(*l), "status": "OK", "error": "" }));
        let failed = self
            .failed_latencies
            .iter()
            .map(|(l, code)| json!({ "latency": nanos(*l), "status": code, "error": code }));
        Value::Array(ok.chain(failed).collect())
    }
}

/// The smallest value with at least `percentage` % of `sorted` at or below it.
fn nearest_rank(sorted: &[Duration], percentage: usize) -> Option<Duration> {
    let rank = (percentage * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One load generator's connection state: makes call number `n` (numbered across all workers,
/// so request data is taken round-robin as ghz does) and says whether it succeeded.
pub trait Worker: Send + 'static {
    fn call(&mut self, n: u64) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// What a run measured.
#[derive(Debug)]
pub struct Run<W> {
    pub outcomes: Outcomes,
    /// From the start until the last call in flight at the deadline ended.
    pub elapsed: Duration,
    /// The workers, back for the caller to close.
    pub workers: Vec<W>,
}

/// Runs every worker in its own task, each making one call after the other until `duration`
/// has passed; a call in flight at the deadline completes and counts (ghz's
/// `--duration-stop wait`). Every call is bounded by `timeout`: one that takes longer counts
/// as `DeadlineExceeded` and the worker goes on.
///
/// With a `rate` (calls per second; ghz's `--rps`) the run is an open loop instead: call `n`
/// (numbered across all workers) is due at start + n / rate, the worker that takes it waits
/// until then, and calls due at or after the deadline are not made. Latency counts from when
/// the call starts, as ghz's does, so a call that starts late because every worker was busy
/// does not count its wait (the achieved rate falling short of `rate` is the tell).
pub async fn closed_loop<W: Worker>(
    workers: Vec<W>,
    duration: Duration,
    timeout: Duration,
    rate: Option<f64>,
) -> Run<W> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut outcomes = Outcomes::default();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64(n as f64 / rate);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let t = Instant::now();
                    match tokio::time::timeout(timeout, worker.call(n)).await {
                        Ok(Ok(())) => outcomes.ok(t.elapsed()),
                        Ok(Err(failure)) => outcomes.failed_after(failure, t.elapsed()),
                        Err(_) => outcomes.failed_after(
                            Failure::new("DeadlineExceeded", format!("no answer within {} ms", timeout.as_millis())),
                            t.elapsed(),
                        ),
                    }
                }
                (worker, outcomes)
            })
        })
        .collect();
    let mut outcomes = Outcomes::default();
    let mut workers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (worker, o) = task.await.expect("a load worker panicked");
        outcomes.merge(o);
        workers.push(worker);
    }
    Run { outcomes, elapsed: started.elapsed(), workers }
}

/// How many times field `field` occurs at the top level of the protobuf message `buf`, read
/// without decoding anything else (a repeated field: how many elements it has). An error for
/// bytes that are not a well-formed message.
pub fn count_field(mut buf: &[u8], field: u64) -> Result<usize, String> {
    let mut count = 0;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let skip = match wire_type {
            0 => {
                varint(&mut buf)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut buf)?).map_err(|_| "length out of range".to_owned())?,
            5 => 4,
            other => return Err(format!("field {number}: unsupported wire type {other}")),
        };
        if skip > buf.len() {
            return Err(format!("field {number}: {skip} bytes past the end of the message"));
        }
        buf = &buf[skip..];
        if number == field {
            count += 1;
        }
    }
    Ok(count)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err("truncated or overlong varint".into())
}

/// A duration argument in whole seconds, with or without ghz's `s` suffix (`15s`, `15`).
pub fn parse_secs(flag: &str, value: &str) -> Result<Duration, String> {
    let secs = value.strip_suffix('s').unwrap_or(value);
    secs.parse::<u64>().map(Duration::from_secs).map_err(|e| format!("{flag}: {value:?}: {e}"))
}

/// The API key the clients send (`authorization: Bearer …`), from `BATON_API_KEY` as
/// `ghz/run` exports it for a batond with `--auth api-key`; None when unset or empty.
pub fn api_key() -> Option<String> {
    std::env::var("BATON_API_KEY").ok().filter(|k| !k.is_empty())
}

/// Writes `report` to `out`, or to stdout without one.
pub fn write_report(report: &Value, out: Option<&str>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    match out {
        Some(path) => std::fs::write(path, text + "\n"),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn report_has_ghz_shape_and_counts_failures_apart() {
        let mut o = Outcomes::default();
        for n in 1..=100 {
            o.ok(ms(n));
        }
        o.failed(Failure::new("Unavailable", "x".repeat(500)));
        o.failed(Failure::new("Unavailable", "x".repeat(500)));
        assert_eq!((o.count(), o.failures()), (102, 2));
        let r = o.ghz_report("t", json!({"concurrency": 4}), Duration::from_secs(2), Map::new());
        assert_eq!(r["count"], 102);
        assert_eq!(r["rps"], 51.0);
        assert_eq!(r["statusCodeDistribution"]["OK"], 100);
        assert_eq!(r["statusCodeDistribution"]["Unavailable"], 2);
        let (message, n) = r["errorDistribution"].as_object().unwrap().iter().next().unwrap();
        assert_eq!((message.len(), n), (MESSAGE_CHARS, &json!(2)));
        let p = |pct: u64| {
            r["latencyDistribution"].as_array().unwrap().iter().find(|d| d["percentage"] == pct).unwrap()["latency"]
                .clone()
        };
        assert_eq!(p(50), json!(nanos(ms(50))));
        assert_eq!(p(99), json!(nanos(ms(99))));
        assert_eq!(r["average"], json!(nanos(Duration::from_micros(50_500))));
        assert_eq!((r["fastest"].clone(), r["slowest"].clone()), (json!(nanos(ms(1))), json!(nanos(ms(100)))));
        assert_eq!(o.percentile(95), Some(ms(95)));
    }

    #[test]
    fn merged_outcomes_add_up() {
        let (mut a, mut b) = (Outcomes::default(), Outcomes::default());
        a.ok(ms(3));
        b.ok(ms(1));
        b.failed(Failure::from(tonic::Status::unavailable("down")));
        a.merge(b);
        assert_eq!((a.count(), a.failures(), a.percentile(1)), (3, 1, Some(ms(1))));
        let r = a.ghz_report("t", json!({}), Duration::ZERO, Map::new());
        assert_eq!(r["errorDistribution"]["rpc error: code = Unavailable desc = down"], 1);
        assert_eq!(r["rps"], 0.0);
    }

    #[test]
    fn no_successful_call_has_no_latencies() {
        let mut o = Outcomes::default();
        o.failed(Failure::new("Internal", "boom"));
        let r = o.ghz_report("t", json!({}), ms(10), Map::new());
        assert_eq!(r["latencyDistribution"], json!([]));
        assert_eq!(r["average"], 0);
    }

    #[test]
    fn counts_a_repeated_field_without_decoding_it() {
        // field 1: message (len 2), field 2 twice (len 3, len 0), field 3: varint 300, field 4:
        // fixed64, field 5: fixed32.
        let msg = [
            0x0a, 2, 0x08, 1, 0x12, 3, 1, 2, 3, 0x12, 0, 0x18, 0xac, 0x02, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0x2d, 0, 0, 0,
            0,
        ];
        assert_eq!(count_field(&msg, 2), Ok(2));
        assert_eq!(count_field(&msg, 1), Ok(1));
        assert_eq!(count_field(&msg, 9), Ok(0));
        assert_eq!(count_field(&[], 2), Ok(0));
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(count_field(&[0x12, 5, 1], 2).unwrap_err().contains("past the end"));
        assert!(count_field(&[0x08], 1).unwrap_err().contains("varint"));
        assert!(count_field(&[0x0b], 1).unwrap_err().contains("wire type 3"));
    }

    #[test]
    fn durations_take_ghz_suffix() {
        assert_eq!(parse_secs("--duration", "15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_secs("--duration", "3"), Ok(Duration::from_secs(3)));
        assert!(parse_secs("--duration", "1m").is_err());
    }

    struct Counting {
        calls: u64,
        fail_every: u64,
    }

    impl Worker for Counting {
        async fn call(&mut self, n: u64) -> Result<(), Failure> {
            self.calls += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            if n.is_multiple_of(self.fail_every) { Err(Failure::new("Aborted", "every third")) } else { Ok(()) }
        }
    }

    struct Stuck;

    impl Worker for Stuck {
        async fn call(&mut self, _: u64) -> Result<(), Failure> {
            std::future::pending::<()>().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn closed_loop_keeps_every_worker_busy_until_the_deadline() {
        let workers = (0..4).map(|_| Counting { calls: 0, fail_every: 3 }).collect();
        let run = closed_loop(workers, ms(200), Duration::from_secs(5), None).await;
        let per_worker: Vec<u64> = run.workers.iter().map(|w| w.calls).collect();
        assert!(per_worker.iter().all(|&n| n >= 10), "{per_worker:?}");
        assert_eq!(run.outcomes.count(), per_worker.iter().sum::<u64>());
        // Call numbers are shared: every third of them failed, whichever worker made it.
        assert_eq!(run.outcomes.failures(), run.outcomes.count().div_ceil(3));
        assert!(run.elapsed >= ms(200));
    }

    #[tokio::test]
    async fn a_call_past_its_timeout_fails_and_the_run_still_ends() {
        let run = closed_loop(vec![Stuck, Stuck], ms(50), ms(20), None).await;
        assert!(run.outcomes.count() >= 2);
        assert_eq!(run.outcomes.failures(), run.outcomes.count());
        assert!(run.elapsed < Duration::from_secs(1), "{:?}", run.elapsed);
        // Timed-out calls are in the details, with their latency and code.
        let details = run.outcomes.details();
        let details = details.as_array().unwrap();
        assert_eq!(details.len() as u64, run.outcomes.count());
        assert!(
            details.iter().all(|d| d["status"] == "DeadlineExceeded" && d["latency"].as_u64() >= Some(nanos(ms(20))))
        );
    }

    #[tokio::test]
    async fn a_paced_run_makes_rate_times_duration_calls() {
        // 200 calls/s for 250 ms: calls 0..49 are due before the deadline, one every 5 ms,
        // whatever the concurrency (8 workers could make ~1,000 calls of 2 ms closed-loop).
        let workers = (0..8).map(|_| Counting { calls: 0, fail_every: u64::MAX }).collect();
        let run = closed_loop(workers, ms(250), Duration::from_secs(5), Some(200.0)).await;
        assert_eq!(run.outcomes.count(), 50);
        assert_eq!(run.workers.iter().map(|w| w.calls).sum::<u64>(), 50);
        // The last call was due at 245 ms; the run did not end before it.
        assert!(run.elapsed >= ms(245), "{:?}", run.elapsed);
        assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
        assert_eq!(run.outcomes.details().as_array().unwrap().len(), 50);
    }
}
