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

use std::time::Instant;

use baton_ghz_replay::{Failure, Outcomes, api_key, nanos, write_report};
use baton_proto::v1::StreamEntriesRequest;
use baton_proto::v1::context_service_client::ContextServiceClient;
use serde_json::{Map, json};
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(std::env::args().skip(1))?;
    let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())?.tcp_nodelay(true).connect().await?;
    let mut client = ContextServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let api_key = api_key();

    let mut outcomes = Outcomes::default();
    let mut details = Vec::with_capacity(args.calls as usize);
    let mut entries = 0u64;
    let started = Instant::now();
    for _ in 0..args.calls {
        let t = Instant::now();
        let outcome = replay(&mut client, &args.session, api_key.as_deref()).await;
        let latency = t.elapsed();
        let failure = match outcome {
            Ok(n) if args.expect == 0 || n == args.expect => {
                entries += n;
                None
            }
            Ok(n) => Some(Failure::new("Incomplete", format!("received {n} entries, expected {}", args.expect))),
            Err(s) => Some(Failure::from(s)),
        };
        let (status, error) = failure.as_ref().map_or(("OK", ""), |f| (f.code.as_str(), f.message.as_str()));
        details.push(json!({ "latency": nanos(latency), "status": status, "error": error }));
        match failure {
            None => outcomes.ok(latency),
            Some(f) => outcomes.failed(f),
        }
    }
    let total = started.elapsed();

    let options = json!({ "call": CALL, "host": args.addr, "concurrency": 1, "total": args.calls, "client": "baton-replay (prost)" });
    let mut extra = Map::new();
    extra.insert("entries".into(), json!(entries));
    extra.insert("entriesPerSecond".into(), json!(entries as f64 / total.as_secs_f64()));
    extra.insert("details".into(), json!(details));
    write_report(&outcomes.ghz_report("stream_replay_rust", options, total, extra), args.out.as_deref())?;
    Ok(())
}
