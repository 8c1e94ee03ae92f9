//! `baton-load`: a gRPC load generator with a client that costs next to nothing, for the
//! scenarios where ghz would measure itself: the hot-read ratio (GetContextWindow on hot
//! sessions ÷ health Check, both at C=64), AppendEntries(1) (`--call append`: what batond and
//! PostgreSQL do per append when the load generator is not the other half of the machine) and
//! the mixed workload (`mixed_rust`: four processes at fixed rates, `--call window`, `list`,
//! `append` and `handoff` with `--rps`). Writes a report in the shape of ghz's.
//!
//! Why not ghz here: ghz decodes every response into a reflection-based dynamic message, and a
//! hot window is ~35 kB of entries, so on a 2-core machine ghz's decoding takes the CPU batond
//! would need and the ratio measures ghz (ghz costs ~0.7 ms of CPU per call in the mixed
//! workload). This client keeps `--concurrency` calls in flight over `--connections` HTTP/2
//! connections for `--duration` (closed loop), or with `--rps R` starts call n at
//! start + n/R, as ghz's `--rps` does (open loop; latency from when the call starts, as ghz's;
//! a call waits for a free worker among the `--concurrency`). It reads responses lazily: a
//! window or a ListEntries page must hold at least one entry and an append must answer with its
//! stored entries (the repeated `entries` field is counted on the wire, nothing is decoded), a
//! handoff must carry its `handoff_id`, and a health answer must be SERVING. Any other answer, a
//! gRPC error or a call past `--timeout` counts as a failed call.
//!
//! The requests are ghz's: `--data` is the scenario's data file (ghz/.work/data/window_hot.json,
//! window_cold.json, list_entries.json, append1.json, request_handoff.json: a JSON array of
//! requests in proto3 JSON), encoded with the API's descriptors (every field ghz sends is sent;
//! a field the request message does not have is an error) and taken round-robin over all calls
//! as ghz does. `--details` adds ghz's per-call `details` (every call's latency) to the report,
//! which ghz/summarize.py merges across the parts of a group.
//!
//! ```text
//! baton-load --addr http://127.0.0.1:50051 --call window --data ghz/.work/data/window_hot.json \
//!     --concurrency 64 --connections 4 --duration 15s --out window.ghz.json
//! baton-load --addr http://127.0.0.1:50051 --call health --concurrency 64 --duration 10s
//! baton-load --addr http://127.0.0.1:50051 --call list --data ghz/.work/data/list_entries.json \
//!     --rps 200 -c 8 --connections 1 -z 30s --details --out list.ghz.json
//! ```

use std::sync::Arc;
use std::time::Duration;

use baton_ghz_replay::{Failure, Worker, api_key, closed_loop, count_field, parse_secs, write_report};
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use serde_json::{Map, Value, json};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// `GetContextWindowResponse.entries`.
const WINDOW_ENTRIES_FIELD: u64 = 2;
/// `AppendEntriesResponse.entries`.
const APPENDED_ENTRIES_FIELD: u64 = 3;
/// `ListEntriesResponse.entries`.
const LISTED_ENTRIES_FIELD: u64 = 1;
/// `Handoff.handoff_id` (RequestHandoff answers with the `Handoff` itself).
const HANDOFF_ID_FIELD: u64 = 1;
/// `HealthCheckResponse { status: SERVING }` on the wire.
const SERVING: &[u8] = &[0x08, 0x01];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Window,
    Health,
    Append,
    List,
    Handoff,
}

impl Call {
    fn parse(name: &str) -> Option<Call> {
        Some(match name {
            "window" => Call::Window,
            "health" => Call::Health,
            "append" => Call::Append,
            "list" => Call::List,
            "handoff" => Call::Handoff,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Call::Window => "window",
            Call::Health => "health",
            Call::Append => "append",
            Call::List => "list",
            Call::Handoff => "handoff",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Call::Window => "/baton.v1.ContextService/GetContextWindow",
            Call::Health => "/grpc.health.v1.Health/Check",
            Call::Append => "/baton.v1.ContextService/AppendEntries",
            Call::List => "/baton.v1.ContextService/ListEntries",
            Call::Handoff => "/baton.v1.HandoffService/RequestHandoff",
        }
    }

    /// The request message, encoded from the data file's proto3 JSON (None: health's empty one).
    fn request_message(self) -> Option<&'static str> {
        match self {
            Call::Window => Some("baton.v1.GetContextWindowRequest"),
            Call::Health => None,
            Call::Append => Some("baton.v1.AppendEntriesRequest"),
            Call::List => Some("baton.v1.ListEntriesRequest"),
            Call::Handoff => Some("baton.v1.RequestHandoffRequest"),
        }
    }

    /// Whether the answer carries entries worth a per-call average in the report.
    fn has_entries(self) -> bool {
        matches!(self, Call::Window | Call::Append | Call::List)
    }

    /// The answer is what a successful call returns; its size in bytes and the entries in it.
    fn check(self, body: &[u8]) -> Result<usize, Failure> {
        match self {
            Call::Window => match count_field(body, WINDOW_ENTRIES_FIELD) {
                Ok(0) => Err(Failure::new("Empty", "a window without entries")),
                Ok(entries) => Ok(entries),
                Err(e) => Err(Failure::new("Malformed", format!("GetContextWindowResponse: {e}"))),
            },
            Call::Health if body == SERVING => Ok(0),
            Call::Health => Err(Failure::new("NotServing", format!("health answer {body:02x?}"))),
            Call::Append => match count_field(body, APPENDED_ENTRIES_FIELD) {
                Ok(0) => Err(Failure::new("Empty", "an append that stored no entry")),
                Ok(entries) => Ok(entries),
                Err(e) => Err(Failure::new("Malformed", format!("AppendEntriesResponse: {e}"))),
            },
            Call::List => match count_field(body, LISTED_ENTRIES_FIELD) {
                Ok(0) => Err(Failure::new("Empty", "a ListEntries page without entries")),
                Ok(entries) => Ok(entries),
                Err(e) => Err(Failure::new("Malformed", format!("ListEntriesResponse: {e}"))),
            },
            Call::Handoff => match count_field(body, HANDOFF_ID_FIELD) {
                Ok(0) => Err(Failure::new("Empty", "a handoff without a handoff_id")),
                Ok(_) => Ok(0),
                Err(e) => Err(Failure::new("Malformed", format!("Handoff: {e}"))),
            },
        }
    }
}

#[derive(Debug)]
struct Args {
    addr: String,
    call: Call,
    data: Option<String>,
    concurrency: usize,
    connections: usize,
    duration: Duration,
    timeout: Duration,
    rps: Option<f64>,
    details: bool,
    out: Option<String>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            addr: String::new(),
            call: Call::Window,
            data: None,
            concurrency: 64,
            connections: 4,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
            rps: None,
            details: false,
            out: None,
        };
        while let Some(flag) = args.next() {
            if flag == "--details" {
                a.details = true;
                continue;
            }
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let count = |v: String| v.parse::<usize>().map(|n| n.max(1)).map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--addr" => a.addr = value()?,
                "--call" => {
                    let name = value()?;
                    a.call = Call::parse(&name)
                        .ok_or_else(|| format!("--call: {name:?}: expected window, health, append, list or handoff"))?;
                }
                "--data" => a.data = Some(value()?),
                "--concurrency" | "-c" => a.concurrency = count(value()?)?,
                "--connections" => a.connections = count(value()?)?,
                "--duration" | "-z" => a.duration = parse_secs(&flag, &value()?)?,
                "--timeout" => a.timeout = parse_secs(&flag, &value()?)?,
                "--rps" => {
                    let v = value()?;
                    match v.parse::<f64>() {
                        Ok(r) if r > 0.0 && r.is_finite() => a.rps = Some(r),
                        _ => return Err(format!("--rps: {v:?}: expected calls per second above 0")),
                    }
                }
                "--out" => a.out = Some(value()?),
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if a.addr.is_empty() || (a.call != Call::Health && a.data.is_none()) {
            return Err("usage: baton-load --addr URL --call window|health|append|list|handoff \
                        [--data FILE (all but health)] [--concurrency C] [--connections N] [--duration SECS] \
                        [--rps R] [--timeout SECS] [--details] [--out FILE]"
                .into());
        }
        Ok(a)
    }
}

/// The encoded requests: the data file's objects for every call but health (see [`encode`]),
/// an empty `HealthCheckRequest` for health.
fn requests(call: Call, data: Option<&str>) -> Result<Vec<Bytes>, String> {
    let (Some(message), Some(path)) = (call.request_message(), data) else {
        return Ok(vec![Bytes::new()]);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let Value::Array(items) = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))? else {
        return Err(format!("{path}: expected a JSON array of requests"));
    };
    let encoded = encode(message, path, &items)?;
    if encoded.is_empty() {
        return Err(format!("{path}: no requests"));
    }
    Ok(encoded)
}

/// Requests of message `message` from ghz's data file (proto3 JSON: enums by name, oneof
/// members, Structs), read with the API's own descriptors, so every field ghz sends is sent
/// here too; a field the message does not have is an error, so the scenario cannot drift from
/// ghz's unnoticed.
fn encode(message: &str, path: &str, items: &[Value]) -> Result<Vec<Bytes>, String> {
    let pool = prost_reflect::DescriptorPool::decode(baton_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())?;
    let request = pool.get_message_by_name(message).ok_or_else(|| format!("no message {message}"))?;
    items
        .iter()
        .map(|item| {
            prost_reflect::DynamicMessage::deserialize(request.clone(), item)
                .map(|m| m.encode_to_vec().into())
                .map_err(|e| format!("{path}: {item}: {e}"))
        })
        .collect()
}

/// Messages as bytes: requests are encoded once up front, responses handed over undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

struct GrpcWorker {
    grpc: tonic::client::Grpc<Channel>,
    call: Call,
    path: PathAndQuery,
    requests: Arc<Vec<Bytes>>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    bytes: u64,
    entries: u64,
}

impl Worker for GrpcWorker {
    async fn call(&mut self, n: u64) -> Result<(), Failure> {
        let body = self.requests[(n % self.requests.len() as u64) as usize].clone();
        let mut request = tonic::Request::new(body);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        self.grpc.ready().await.map_err(|e| Failure::new("Unavailable", format!("connection not ready: {e}")))?;
        let response = self.grpc.unary(request, self.path.clone(), RawCodec).await?.into_inner();
        let entries = self.call.check(&response)?;
        self.bytes += response.len() as u64;
        self.entries += entries as u64;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(std::env::args().skip(1))?;
    let requests = Arc::new(requests(args.call, args.data.as_deref())?);
    let authorization = api_key().map(|k| format!("Bearer {k}").parse()).transpose()?;
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(Endpoint::from_shared(args.addr.clone())?.tcp_nodelay(true).connect().await?);
    }
    let workers = (0..args.concurrency)
        .map(|i| GrpcWorker {
            grpc: tonic::client::Grpc::new(channels[i % channels.len()].clone()).max_decoding_message_size(usize::MAX),
            call: args.call,
            path: PathAndQuery::from_static(args.call.path()),
            requests: Arc::clone(&requests),
            authorization: authorization.clone(),
            bytes: 0,
            entries: 0,
        })
        .collect();
    let run = closed_loop(workers, args.duration, args.timeout, args.rps).await;

    let ok = (run.outcomes.count() - run.outcomes.failures()).max(1);
    let bytes: u64 = run.workers.iter().map(|w| w.bytes).sum();
    let entries: u64 = run.workers.iter().map(|w| w.entries).sum();
    let mut options = json!({
        "call": args.call.path().trim_start_matches('/'),
        "host": args.addr,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "duration": args.duration.as_nanos() as u64,
        "client": "baton-load (tonic, responses read lazily)",
    });
    if let Some(rps) = args.rps {
        // As ghz's `options.rps` (a whole number when it is one: summarize.py shows it as given).
        options["rps"] = if rps.fract() == 0.0 { json!(rps as u64) } else { json!(rps) };
    }
    let mut extra = Map::new();
    extra.insert("bytesPerCall".into(), json!(bytes / ok));
    if args.call.has_entries() {
        extra.insert("entriesPerCall".into(), json!(entries as f64 / ok as f64));
    }
    if args.details {
        extra.insert("details".into(), run.outcomes.details());
    }
    let name = format!("baton_load_{}", args.call.name());
    write_report(&run.outcomes.ghz_report(&name, options, run.elapsed, extra), args.out.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::v1::{GetContextWindowRequest, HandoffType, ListEntriesRequest, RequestHandoffRequest};

    #[test]
    fn window_answers_need_entries_and_health_answers_serving() {
        // GetContextWindowResponse { entries: [Entry{seq: 1}, Entry{seq: 2}], total_tokens: 9 }
        let window = [0x12, 2, 0x08, 1, 0x12, 2, 0x08, 2, 0x18, 9];
        assert_eq!(Call::Window.check(&window), Ok(2));
        assert_eq!(Call::Window.check(&[0x18, 9]).unwrap_err().code, "Empty");
        assert_eq!(Call::Window.check(&[0x12, 9]).unwrap_err().code, "Malformed");
        assert_eq!(Call::Health.check(SERVING), Ok(0));
        assert_eq!(Call::Health.check(&[0x08, 0x02]).unwrap_err().code, "NotServing");
        // AppendEntriesResponse { first_seq: 1, last_seq: 1, entries: [Entry{seq: 1}] }
        assert_eq!(Call::Append.check(&[0x08, 1, 0x10, 1, 0x1a, 2, 0x08, 1]), Ok(1));
        assert_eq!(Call::Append.check(&[0x08, 1, 0x10, 1]).unwrap_err().code, "Empty");
        // ListEntriesResponse { entries: [Entry{seq: 5}], next_page_token: "t" }
        assert_eq!(Call::List.check(&[0x0a, 2, 0x08, 5, 0x12, 1, b't']), Ok(1));
        assert_eq!(Call::List.check(&[0x12, 1, b't']).unwrap_err().code, "Empty");
        assert_eq!(Call::List.check(&[0x0a, 9]).unwrap_err().code, "Malformed");
        // Handoff { handoff_id: "h1", session_key: "r" }
        assert_eq!(Call::Handoff.check(&[0x0a, 2, b'h', b'1', 0x12, 1, b'r']), Ok(0));
        assert_eq!(Call::Handoff.check(&[0x12, 1, b'r']).unwrap_err().code, "Empty");
        assert_eq!(Call::Handoff.check(&[0x0a, 5, b'h']).unwrap_err().code, "Malformed");
    }

    #[test]
    fn requests_come_from_the_scenario_data_file() {
        let dir = std::env::temp_dir().join(format!("baton-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("window_hot.json");
        std::fs::write(&path, r#"[{"session_key":"r-0000"},{"session_key":"r-0001"}]"#).unwrap();
        let encoded = requests(Call::Window, path.to_str()).unwrap();
        let decoded: Vec<_> =
            encoded.iter().map(|b| GetContextWindowRequest::decode(b.clone()).unwrap().session_key).collect();
        assert_eq!(decoded, ["r-0000", "r-0001"]);

        // Every field of the data file is sent; one the request does not have is an error.
        std::fs::write(&path, r#"[{"session_key":"r-0000","max_tokens":5}]"#).unwrap();
        let encoded = requests(Call::Window, path.to_str()).unwrap();
        let decoded = GetContextWindowRequest::decode(encoded[0].clone()).unwrap();
        assert_eq!((decoded.session_key.as_str(), decoded.max_tokens), ("r-0000", 5));
        std::fs::write(&path, r#"[{"session_key":"r-0000","max_tokenz":5}]"#).unwrap();
        assert!(requests(Call::Window, path.to_str()).unwrap_err().contains("max_tokenz"));
        std::fs::write(&path, "[]").unwrap();
        assert!(requests(Call::Window, path.to_str()).unwrap_err().contains("no requests"));
        assert_eq!(requests(Call::Health, None).unwrap(), vec![Bytes::new()]);

        // Appends: ghz's proto3 JSON (enum names, a oneof member, a Struct) as the API encodes it.
        std::fs::write(
            &path,
            r#"[{"session_key":"w-0000","entries":[{"kind":"ENTRY_KIND_MESSAGE","author":"a","text":"hi",
                 "metadata":{"turn":0,"model":"m"}}]}]"#,
        )
        .unwrap();
        let encoded = requests(Call::Append, path.to_str()).unwrap();
        let decoded = baton_proto::v1::AppendEntriesRequest::decode(encoded[0].clone()).unwrap();
        assert_eq!(decoded.session_key, "w-0000");
        let entry = &decoded.entries[0];
        assert_eq!((entry.kind(), entry.author.as_str()), (baton_proto::v1::EntryKind::Message, "a"));
        assert_eq!(entry.content, Some(baton_proto::v1::new_entry::Content::Text("hi".into())));
        assert_eq!(entry.metadata.as_ref().unwrap().fields.len(), 2);
        std::fs::write(&path, r#"[{"session_key":"w","entries":[{"kind":"NOPE"}]}]"#).unwrap();
        assert!(requests(Call::Append, path.to_str()).is_err());

        // ListEntries: ghz's list_entries.json (after_seq is optional: 0 is sent, not dropped).
        std::fs::write(
            &path,
            r#"[{"session_key":"r-0000","after_seq":0,"page_size":100},
                                  {"session_key":"r-0001","after_seq":137,"page_size":100}]"#,
        )
        .unwrap();
        let encoded = requests(Call::List, path.to_str()).unwrap();
        let decoded: Vec<_> = encoded
            .iter()
            .map(|b| {
                let r = ListEntriesRequest::decode(b.clone()).unwrap();
                (r.session_key, r.after_seq, r.page_size)
            })
            .collect();
        assert_eq!(decoded, [("r-0000".into(), Some(0), 100), ("r-0001".into(), Some(137), 100)]);

        // RequestHandoff: ghz's request_handoff.json, the type an enum by name.
        std::fs::write(
            &path,
            r#"[{"session_key":"r-0000","from_agent":"planner-000","to_agent":"coder-00",
                 "type":"HANDOFF_TYPE_CONTEXT_TRANSFER","instructions":"Continue."}]"#,
        )
        .unwrap();
        let encoded = requests(Call::Handoff, path.to_str()).unwrap();
        let decoded = RequestHandoffRequest::decode(encoded[0].clone()).unwrap();
        assert_eq!(
            (decoded.session_key.as_str(), decoded.from_agent.as_str(), decoded.to_agent.as_str()),
            ("r-0000", "planner-000", "coder-00")
        );
        assert_eq!((decoded.r#type(), decoded.instructions.as_str()), (HandoffType::ContextTransfer, "Continue."));
        std::fs::write(&path, r#"[{"session_key":"r","type":"HANDOFF_TYPE_NOPE"}]"#).unwrap();
        assert!(requests(Call::Handoff, path.to_str()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arguments() {
        let parse = |s: &str| Args::parse(s.split_whitespace().map(String::from));
        let a = parse("--addr http://x --call health -c 8 --connections 2 -z 3s").unwrap();
        assert_eq!((a.call, a.concurrency, a.connections, a.duration), (Call::Health, 8, 2, Duration::from_secs(3)));
        assert!(parse("--addr http://x --call window").unwrap_err().starts_with("usage"));
        assert!(parse("--addr http://x --call poll").unwrap_err().contains("poll"));
        assert_eq!(parse("--addr http://x --call health").unwrap().rps, None);
        let a = parse("--addr http://x --call list --data d.json --rps 200 --details").unwrap();
        assert_eq!((a.call, a.rps, a.details), (Call::List, Some(200.0), true));
        assert_eq!(parse("--addr http://x --call handoff --data d.json").unwrap().call, Call::Handoff);
        assert!(parse("--addr http://x --call list").unwrap_err().starts_with("usage"));
        assert!(parse("--addr http://x --call list --data d --rps 0").unwrap_err().contains("--rps"));
    }
}
