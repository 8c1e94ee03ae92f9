//! `baton-mcp-load`: a closed-loop MCP load generator for `update_context` through `baton-mcp`'s
//! Streamable HTTP transport, with the official Rust MCP SDK (rmcp) as the client. Writes a
//! report in the shape of ghz's, so ghz/summarize.py sets it next to gRPC AppendEntries(1).
//!
//! Opens `--concurrency` MCP sessions (initialize, one HTTP connection pool shared by all),
//! registers one Baton session per MCP session (`register_session`), then has each MCP
//! session call `update_context` on its Baton session, one call after the other, for
//! `--duration`. A call succeeds when the tool answers without `isError`; a tool error, a
//! transport error or a call past `--timeout` counts as failed. At the end every MCP session
//! is closed (`DELETE /mcp`). The report lists the Baton sessions (`mcp-PID-NNN`) it appended to.
//!
//! `--shape legacy` (the default) sends the earlier AI handoff MCP server's arguments
//! (`sessionKey`, `content`, `metadata`; no author, so the gateway defaults it to the
//! session's owner, which it caches: one AppendEntries per call); `--shape native` sends
//! `session_key` and one full entry. Either way one entry of ~500 bytes, as ghz's
//! AppendEntries(1) appends.
//!
//! With `BATON_API_KEY` set, every request carries it as `Authorization: Bearer` (the gateway
//! passes it on to a batond with `--auth api-key`).
//!
//! ```text
//! baton-mcp-load --url http://127.0.0.1:3000/mcp --concurrency 32 --duration 15s --out mcp.ghz.json
//! ```

use std::time::Duration;

use baton_ghz_replay::{Failure, Worker, api_key, closed_loop, parse_secs, write_report};
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value, json};

/// An entry's text of ~500 bytes (the pgbench baselines' text).
const TEXT: &str = "assistant turn 7: the schema migration adds an index on sessions so that listing by owner \
    stays fast while the append path keeps its row lock short we verified the plan with explain and the tests \
    pass on both stores next step is to wire the cache and measure again with ghz under load the handoff \
    summary lists files touched tools used and open questions for the reviewing agent who continues from the \
    last sequence number without gaps the schema migration adds an index on sessions so that listing by owner";
/// The owner of the benchmark's sessions (the legacy shape's default author).
const AGENT: &str = "agent-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Legacy,
    Native,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Legacy => "legacy",
            Shape::Native => "native",
        }
    }

    /// `update_context`'s arguments for one entry in session `key`.
    fn arguments(self, key: &str) -> JsonObject {
        let metadata = json!({"turn": 7, "model": "model-a"});
        let args = match self {
            Shape::Legacy => json!({"sessionKey": key, "content": TEXT, "metadata": metadata}),
            Shape::Native => json!({
                "session_key": key,
                "entries": [{
                    "kind": "ENTRY_KIND_MESSAGE", "role": "assistant", "author": AGENT,
                    "text": TEXT, "media_type": "text/plain", "metadata": metadata,
                }],
            }),
        };
        let Value::Object(args) = args else { unreachable!("a JSON object literal") };
        args
    }
}

#[derive(Debug)]
struct Args {
    url: String,
    concurrency: usize,
    duration: Duration,
    timeout: Duration,
    shape: Shape,
    out: Option<String>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            url: String::new(),
            concurrency: 32,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
            shape: Shape::Legacy,
            out: None,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--url" => a.url = value()?,
                "--concurrency" | "-c" => {
                    a.concurrency = value()?.parse::<usize>().map_err(|e| format!("{flag}: {e}"))?.max(1)
                }
                "--duration" | "-z" => a.duration = parse_secs(&flag, &value()?)?,
                "--timeout" => a.timeout = parse_secs(&flag, &value()?)?,
                "--shape" => {
                    a.shape = match value()?.as_str() {
                        "legacy" => Shape::Legacy,
                        "native" => Shape::Native,
                        other => return Err(format!("--shape: {other:?}: expected legacy or native")),
                    }
                }
                "--out" => a.out = Some(value()?),
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if a.url.is_empty() {
            return Err("usage: baton-mcp-load --url http://HOST:PORT/mcp [--concurrency C] [--duration SECS] \
                        [--timeout SECS] [--shape legacy|native] [--out FILE]"
                .into());
        }
        Ok(a)
    }
}

/// A tool answer as a call outcome: `isError` (or no answer content) is a failure carrying the
/// tool's text, which starts with the gRPC status code name for a gRPC error.
fn outcome(result: &CallToolResult) -> Result<(), Failure> {
    if result.is_error != Some(true) {
        return Ok(());
    }
    let text = result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect::<Vec<_>>();
    let text = text.join(" ");
    let code = text.split(':').next().filter(|c| !c.is_empty() && !c.contains(' ')).unwrap_or("ToolError");
    Err(Failure::new(code, format!("tool error: {text}")))
}

fn rmcp_failure(e: rmcp::ServiceError) -> Failure {
    Failure::new("McpError", e.to_string())
}

struct McpWorker {
    client: RunningService<RoleClient, ()>,
    session: String,
    arguments: JsonObject,
}

impl Worker for McpWorker {
    async fn call(&mut self, _: u64) -> Result<(), Failure> {
        let params = CallToolRequestParams::new("update_context").with_arguments(self.arguments.clone());
        outcome(&self.client.call_tool(params).await.map_err(rmcp_failure)?)
    }
}

/// One MCP session with its Baton session `key` registered.
async fn open(
    http: reqwest::Client,
    url: &str,
    key: &str,
    shape: Shape,
) -> Result<McpWorker, Box<dyn std::error::Error + Send + Sync>> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(k) = api_key() {
        config = config.auth_header(k);
    }
    let client = ().serve(StreamableHttpClientTransport::with_client(http, config)).await?;
    let register = CallToolRequestParams::new("register_session").with_arguments(
        json!({"session_key": key, "agent": AGENT}).as_object().cloned().expect("a JSON object literal"),
    );
    outcome(&client.call_tool(register).await?).map_err(|f| format!("register_session {key}: {}", f.message))?;
    Ok(McpWorker { client, session: key.to_owned(), arguments: shape.arguments(key) })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse(std::env::args().skip(1))?;
    // Loopback only: no proxy; idle connections kept for every session's POSTs and SSE stream.
    let http =
        reqwest::Client::builder().no_proxy().tcp_nodelay(true).pool_max_idle_per_host(4 * args.concurrency).build()?;
    let run_id = std::process::id();
    let opening: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let (http, url, key) = (http.clone(), args.url.clone(), format!("mcp-{run_id}-{i:03}"));
            let shape = args.shape;
            tokio::spawn(async move { open(http, &url, &key, shape).await })
        })
        .collect();
    let mut workers = Vec::with_capacity(opening.len());
    for task in opening {
        workers.push(task.await??);
    }
    let sessions: Vec<String> = workers.iter().map(|w| w.session.clone()).collect();

    let run = closed_loop(workers, args.duration, args.timeout, None).await;
    for worker in run.workers {
        // Ends the MCP session (DELETE /mcp); the figures are in already, so a failure to
        // close only shows in the gateway's log.
        let _ = worker.client.cancel().await;
    }
    let options = json!({
        "call": "mcp/update_context",
        "host": args.url,
        "concurrency": args.concurrency,
        "duration": args.duration.as_nanos() as u64,
        "client": "baton-mcp-load (rmcp, Streamable HTTP)",
    });
    let mut extra = Map::new();
    extra.insert("shape".into(), json!(args.shape.name()));
    extra.insert("sessions".into(), json!(sessions));
    write_report(&run.outcomes.ghz_report("baton_mcp_load", options, run.elapsed, extra), args.out.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rmcp::model::ContentBlock;

    use super::*;

    #[test]
    fn tool_errors_are_failures_named_by_their_code() {
        assert_eq!(outcome(&CallToolResult::success(vec![ContentBlock::text("ok")])), Ok(()));
        let denied =
            outcome(&CallToolResult::error(vec![ContentBlock::text("PERMISSION_DENIED: reader key")])).unwrap_err();
        assert_eq!(denied.code, "PERMISSION_DENIED");
        assert!(denied.message.contains("reader key"));
        let args = outcome(&CallToolResult::error(vec![ContentBlock::text("invalid arguments:\n- `x`")])).unwrap_err();
        assert_eq!(args.code, "ToolError");
    }

    #[test]
    fn both_shapes_append_one_entry_of_the_same_text() {
        let legacy = Shape::Legacy.arguments("s-1");
        assert_eq!((legacy["sessionKey"].as_str(), legacy["content"].as_str()), (Some("s-1"), Some(TEXT)));
        assert!(!legacy.contains_key("entries"), "the legacy shape leaves the author to the gateway");
        let native = Shape::Native.arguments("s-1");
        assert_eq!(native["entries"][0]["text"], TEXT);
        assert_eq!(native["entries"][0]["author"], AGENT);
        assert!((450..=520).contains(&TEXT.len()), "{}", TEXT.len());
    }

    #[test]
    fn arguments() {
        let parse = |s: &str| Args::parse(s.split_whitespace().map(String::from));
        let a = parse("--url http://x/mcp -c 8 -z 2s --shape native").unwrap();
        assert_eq!((a.concurrency, a.duration, a.shape), (8, Duration::from_secs(2), Shape::Native));
        assert_eq!(parse("--url http://x/mcp").unwrap().shape, Shape::Legacy);
        assert!(parse("-c 8").unwrap_err().starts_with("usage"));
    }
}
