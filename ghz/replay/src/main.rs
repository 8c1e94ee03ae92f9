//! `baton-replay`: replays a session with `StreamEntries` (no follow) a number of times, one
//! stream at a time, and writes a report in the shape of ghz's JSON report (so that
//! `ghz/summarize.py` reads both alike) with the entries received.
//!
//! Why not ghz for this one scenario: ghz decodes every message into a reflection-based dynamic
//! message, which costs it more CPU per entry than batond spends producing it, so on a 2-core
//! machine a 200k entries/s replay would measure ghz. This client decodes with prost and does
//! nothing else with the entries but check that their seqs are 1, 2, 3, … without a gap.
//!
//! ```text
//! baton-replay --addr http://127.0.0.1:50051 --session stream-10k --calls 5 --expect 10000 --out report.json
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_proto::v1::StreamEntriesRequest;
use baton_proto::v1::context_service_client::ContextServiceClient;
use serde_json::json;
use tonic::transport::Channel;

const CALL: &str = "baton.v1.ContextService/StreamEntries";

struct Args {
    addr: String,
    session: String,
    calls: u32,
    expect: u64,
    out: Option<String>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args { addr: String::new(), session: String::new(), calls: 5, expect: 0, out: None };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--addr" => a.addr = value()?,
                "--session" => a.session = value()?,
                "--calls" => a.calls = value()?.parse().map_err(|e| format!("--calls: {e}"))?,
                "--expect" => a.expect = value()?.parse().map_err(|e| format!("--expect: {e}"))?,
                "--out" => a.out = Some(value()?),
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if a.addr.is_empty() || a.session.is_empty() {
            return Err(
                "usage: baton-replay --addr URL --session KEY [--calls N] [--expect ENTRIES] [--out FILE]".into()
            );
        }
        Ok(a)
    }
}

/// One replay: the number of entries received, in order and without a gap.
/// With `api_key`, the call sends it as `authorization: Bearer` (a batond with `--auth api-key`).
async fn replay(
    client: &mut ContextServiceClient<Channel>,
    session: &str,
    api_key: Option<&str>,
) -> Result<u64, tonic::Status> {
    let mut request = tonic::Request::new(StreamEntriesRequest {
        session_key: session.to_owned(),
        after_seq: 0,
        follow: false,
        max_entries: 0,
    });
    if let Some(key) = api_key {
        let value = format!("Bearer {key}").parse().map_err(|_| tonic::Status::invalid_argument("BATON_API_KEY"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = client.stream_entries(request).await?.into_inner();
    let mut received = 0u64;
    while let Some(entry) = stream.message().await? {
        if entry.seq != received + 1 {
            return Err(tonic::Status::data_loss(format!("seq {} after {received}", entry.seq)));
        }
        received += 1;
    }
    Ok(received)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(std::env::args().skip(1))?;
    let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())?.tcp_nodelay(true).connect().await?;
    let mut client = ContextServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let api_key = std::env::var("BATON_API_KEY").ok().filter(|k| !k.is_empty());

    let mut latencies = Vec::with_capacity(args.calls as usize);
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut details = Vec::with_capacity(args.calls as usize);
    let mut entries = 0u64;
    let started = Instant::now();
    for _ in 0..args.calls {
        let t = Instant::now();
        let outcome = replay(&mut client, &args.session, api_key.as_deref()).await;
        let latency = t.elapsed();
        let (status, error) = match outcome {
            Ok(n) if args.expect == 0 || n == args.expect => {
                entries += n;
                ("OK".to_owned(), String::new())
            }
            Ok(n) => ("Incomplete".to_owned(), format!("received {n} entries, expected {}", args.expect)),
            Err(s) => (format!("{:?}", s.code()), format!("rpc error: code = {:?} desc = {}", s.code(), s.message())),
        };
        *codes.entry(status.clone()).or_default() += 1;
        if !error.is_empty() {
            *errors.entry(error.clone()).or_default() += 1;
        } else {
            latencies.push(latency);
        }
        details.push(json!({ "latency": nanos(latency), "status": status, "error": error }));
    }
    let total = started.elapsed();

    latencies.sort_unstable();
    let at = |pct: usize| latencies.get((pct * latencies.len()).div_ceil(100).max(1) - 1).copied();
    let distribution: Vec<_> = [10, 25, 50, 75, 90, 95, 99]
        .into_iter()
        .filter_map(|p| at(p).map(|l| json!({ "percentage": p, "latency": nanos(l) })))
        .collect();
    let ok = latencies.len() as u64;
    let report = json!({
        "name": "stream_replay_rust",
        "options": { "call": CALL, "host": args.addr, "concurrency": 1, "total": args.calls, "client": "baton-replay (prost)" },
        "count": args.calls,
        "total": nanos(total),
        "average": if ok > 0 { nanos(latencies.iter().sum::<Duration>() / ok as u32) } else { 0 },
        "fastest": latencies.first().copied().map_or(0, nanos),
        "slowest": latencies.last().copied().map_or(0, nanos),
        "rps": f64::from(args.calls) / total.as_secs_f64(),
        "entries": entries,
        "entriesPerSecond": entries as f64 / total.as_secs_f64(),
        "errorDistribution": errors,
        "statusCodeDistribution": codes,
        "latencyDistribution": distribution,
        "details": details,
    });
    let text = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => std::fs::write(path, text)?,
        None => println!("{text}"),
    }
    Ok(())
}
