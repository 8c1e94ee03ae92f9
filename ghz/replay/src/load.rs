//! `baton-load`: a closed-loop gRPC load generator for the hot-read ratio (GetContextWindow on
//! hot sessions ÷ health Check, both at C=64), and for AppendEntries(1) with a client that
//! costs next to nothing (`--call append`: what batond and PostgreSQL do per append when the
//! load generator is not the other half of the machine). Writes a report in the shape of ghz's.
//!
//! Why not ghz here: ghz decodes every response into a reflection-based dynamic message, and a
//! hot window is ~35 kB of entries, so on a 2-core machine ghz's decoding takes the CPU batond
//! would need and the ratio measures ghz. This client keeps `--concurrency` calls in flight
//! over `--connections` HTTP/2 connections for `--duration`, and reads responses lazily: a
//! window must hold at least one entry (its repeated `entries` field is counted on the wire,
//! nothing is decoded) and a health answer must be SERVING. Any other answer, a gRPC error or
//! a call past `--timeout` counts as a failed call.
//!
//! The requests are ghz's: `--data` is the scenario's data file (ghz/.work/data/window_hot.json,
//! a JSON array of `{"session_key": …}`; for appends ghz/.work/data/append1.json, proto3 JSON
//! encoded with the API's descriptors), taken round-robin over all calls as ghz does. An append
//! must answer with its stored entries.
//!
//! ```text
//! baton-load --addr http://127.0.0.1:50051 --call window --data ghz/.work/data/window_hot.json \
//!     --concurrency 64 --connections 4 --duration 15s --out window.ghz.json
//! baton-load --addr http://127.0.0.1:50051 --call health --concurrency 64 --duration 10s
//! ```

use std::sync::Arc;
use std::time::Duration;

use baton_ghz_replay::{Failure, Worker, api_key, closed_loop, count_field, parse_secs, write_report};
use baton_proto::v1::GetContextWindowRequest;
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
/// `HealthCheckResponse { status: SERVING }` on the wire.
const SERVING: &[u8] = &[0x08, 0x01];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Window,
    Health,
    Append,
}

impl Call {
    fn path(self) -> &'static str {
        match self {
            Call::Window => "/baton.v1.ContextService/GetContextWindow",
            Call::Health => "/grpc.health.v1.Health/Check",
            Call::Append => "/baton.v1.ContextService/AppendEntries",
        }
    }

    /// The answer is what a successful call returns; its size in bytes and the entries in it.
    fn check(self, body: &[u8]) -> Result<usize, Failure> {
        match self {
            Call::Window => match count_field(body, WINDOW_ENTRIES_FIELD) {
                Ok(0) => Err(Failure::new("Empty", "a hot window without entries")),
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
            out: None,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let count = |v: String| v.parse::<usize>().map(|n| n.max(1)).map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--addr" => a.addr = value()?,
                "--call" => {
                    a.call = match value()?.as_str() {
                        "window" => Call::Window,
                        "health" => Call::Health,
                        "append" => Call::Append,
                        other => return Err(format!("--call: {other:?}: expected window, health or append")),
                    }
                }
                "--data" => a.data = Some(value()?),
                "--concurrency" | "-c" => a.concurrency = count(value()?)?,
                "--connections" => a.connections = count(value()?)?,
                "--duration" | "-z" => a.duration = parse_secs(&flag, &value()?)?,
                "--timeout" => a.timeout = parse_secs(&flag, &value()?)?,
                "--out" => a.out = Some(value()?),
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if a.addr.is_empty() || (a.call != Call::Health && a.data.is_none()) {
            return Err("usage: baton-load --addr URL --call window|health|append [--data FILE (window, append)] \
                        [--concurrency C] [--connections N] [--duration SECS] [--timeout SECS] [--out FILE]"
                .into());
        }
        Ok(a)
    }
}

/// The encoded requests: the data file's objects for a window (only `session_key` is taken;
/// any other field is refused, so the scenario cannot drift from ghz's unnoticed), an empty
/// `HealthCheckRequest` for health.
fn requests(call: Call, data: Option<&str>) -> Result<Vec<Bytes>, String> {
    let Some(path) = data.filter(|_| call != Call::Health) else {
        return Ok(vec![Bytes::new()]);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let Value::Array(items) = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))? else {
        return Err(format!("{path}: expected a JSON array of requests"));
    };
    let encoded = if call == Call::Append { appends(path, &items)? } else { windows(path, &items)? };
    if encoded.is_empty() {
        return Err(format!("{path}: no requests"));
    }
    Ok(encoded)
}

/// `AppendEntriesRequest`s from ghz's data file (proto3 JSON, read with the API's own
/// descriptors, so every field ghz sends is sent here too).
fn appends(path: &str, items: &[Value]) -> Result<Vec<Bytes>, String> {
    let pool = prost_reflect::DescriptorPool::decode(baton_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())?;
    let request = pool.get_message_by_name("baton.v1.AppendEntriesRequest").ok_or("no AppendEntriesRequest")?;
    items
        .iter()
        .map(|item| {
            prost_reflect::DynamicMessage::deserialize(request.clone(), item)
                .map(|m| m.encode_to_vec().into())
                .map_err(|e| format!("{path}: {item}: {e}"))
        })
        .collect()
}

/// `GetContextWindowRequest`s from ghz's data file.
fn windows(path: &str, items: &[Value]) -> Result<Vec<Bytes>, String> {
    items
        .iter()
        .map(|item| {
            let Some(Value::String(key)) = item.get("session_key") else {
                return Err(format!("{path}: {item}: no session_key"));
            };
            if let Some(other) = item.as_object().and_then(|o| o.keys().find(|k| *k != "session_key")) {
                return Err(format!("{path}: {item}: field {other:?} is not supported"));
            }
            Ok(GetContextWindowRequest { session_key: key.clone(), ..Default::default() }.encode_to_vec().into())
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
    let run = closed_loop(workers, args.duration, args.timeout).await;

    let ok = (run.outcomes.count() - run.outcomes.failures()).max(1);
    let bytes: u64 = run.workers.iter().map(|w| w.bytes).sum();
    let entries: u64 = run.workers.iter().map(|w| w.entries).sum();
    let options = json!({
        "call": args.call.path().trim_start_matches('/'),
        "host": args.addr,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "duration": args.duration.as_nanos() as u64,
        "client": "baton-load (tonic, responses read lazily)",
    });
    let mut extra = Map::new();
    extra.insert("bytesPerCall".into(), json!(bytes / ok));
    if args.call != Call::Health {
        extra.insert("entriesPerCall".into(), json!(entries as f64 / ok as f64));
    }
    let kind = match args.call {
        Call::Window => "window",
        Call::Health => "health",
        Call::Append => "append",
    };
    let name = format!("baton_load_{kind}");
    write_report(&run.outcomes.ghz_report(&name, options, run.elapsed, extra), args.out.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

        std::fs::write(&path, r#"[{"session_key":"r-0000","max_tokens":5}]"#).unwrap();
        assert!(requests(Call::Window, path.to_str()).unwrap_err().contains("max_tokens"));
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arguments() {
        let parse = |s: &str| Args::parse(s.split_whitespace().map(String::from));
        let a = parse("--addr http://x --call health -c 8 --connections 2 -z 3s").unwrap();
        assert_eq!((a.call, a.concurrency, a.connections, a.duration), (Call::Health, 8, 2, Duration::from_secs(3)));
        assert!(parse("--addr http://x --call window").unwrap_err().starts_with("usage"));
        assert!(parse("--addr http://x --call poll").unwrap_err().contains("poll"));
    }
}
