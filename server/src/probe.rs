//! `batond probe --endpoint URL`: an end-to-end check of a running `batond`, for `helm test`
//! and operators. It checks `grpc.health.v1` (SERVING), creates a session, appends one entry,
//! reads it back by seq, compares it with what was sent and closes the session. Each step has
//! the call deadline; the first failure ends the probe with a message naming the step.
//!
//! Requests fill only the fields the probe needs (`..Default::default()`), so new optional
//! API fields do not touch it.
//!
//! Probe sessions have keys `probe-<unix ms>-<random>`, a short time to live and are closed
//! at the end, so they leave no live state behind. `--tenant` keeps them apart from real
//! tenants.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_proto::v1::context_service_client::ContextServiceClient;
use baton_proto::v1::{
    AppendEntriesRequest, CloseSessionRequest, CreateSessionRequest, EntryKind, ListEntriesRequest, NewEntry, entry,
    new_entry,
};
use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The author of the probe's session and entry.
const AGENT: &str = "batond-probe";

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// gRPC endpoint of the batond to check, e.g. http://baton:50051.
    #[arg(long, env = "BATON_PROBE_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// Tenant the probe session is created in (sent as x-baton-tenant). Unset: the server's
    /// default tenant.
    #[arg(long, env = "BATON_PROBE_TENANT")]
    pub tenant: Option<String>,
    /// API key the probe calls with (`authorization: Bearer`), for a batond with
    /// `--auth api-key`: a writer key of the probe's tenant.
    #[arg(long, env = "BATON_PROBE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA certificates to trust for an https:// endpoint (a private CA); unset: the
    /// system's roots are not loaded, so a TLS probe needs this.
    #[arg(long, env = "BATON_PROBE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Deadline of connecting and of each call, in milliseconds.
    #[arg(long, env = "BATON_PROBE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// Time to live of the probe session, in seconds (it is closed at the end anyway).
    #[arg(long, env = "BATON_PROBE_SESSION_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(i64).range(1..))]
    pub session_ttl_secs: i64,
}

/// Why the probe failed; `Debug` prints the same message as `Display`, so that the error
/// `batond` returns from `main` reads as a sentence.
pub struct ProbeFailed(String);

impl fmt::Display for ProbeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "probe failed: {}", self.0)
    }
}

impl fmt::Debug for ProbeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ProbeFailed {}

fn failed(step: &str, detail: impl fmt::Display) -> ProbeFailed {
    ProbeFailed(format!("{step}: {detail}"))
}

fn status(step: &str, s: &tonic::Status) -> ProbeFailed {
    failed(step, format_args!("{:?}: {}", s.code(), s.message()))
}

/// Runs the probe; prints one line on success and returns the reason on failure.
pub async fn run(args: ProbeArgs) -> Result<(), ProbeFailed> {
    let started = Instant::now();
    let report = probe(&args).await?;
    println!("probe ok: {} {report} ({} ms)", args.endpoint, started.elapsed().as_millis());
    Ok(())
}

async fn probe(args: &ProbeArgs) -> Result<String, ProbeFailed> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let tenant = match args.tenant.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(MetadataValue::try_from(t).map_err(|e| failed("tenant", e))?),
        None => None,
    };
    let authorization = match args.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(MetadataValue::try_from(format!("Bearer {k}")).map_err(|e| failed("api key", e))?),
        None => None,
    };
    let caller = Caller { tenant, authorization };
    let mut endpoint = Endpoint::from_shared(args.endpoint.clone())
        .map_err(|e| failed("endpoint", format_args!("{:?} is not a URL: {e}", args.endpoint)))?;
    if let Some(ca) = &args.tls_ca {
        let pem = std::fs::read(ca).map_err(|e| failed("tls ca", format_args!("{}: {e}", ca.display())))?;
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).map_err(|e| failed("tls", e))?;
    }
    let channel = endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| failed("connect", error_chain(&e)))?;

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|s| status("health", &s))?
        .into_inner()
        .status();
    if health != ServingStatus::Serving {
        return Err(failed("health", format_args!("server reports {}", health.as_str_name())));
    }

    let mut context = ContextServiceClient::new(channel);
    let key = session_key();
    let text = format!("baton probe {key}");

    let session = context
        .create_session(with_tenant(
            &caller,
            CreateSessionRequest {
                session_key: key.clone(),
                agent: AGENT.to_owned(),
                ttl: Some(prost_types::Duration { seconds: args.session_ttl_secs, nanos: 0 }),
                ..Default::default()
            },
        ))
        .await
        .map_err(|s| status("create session", &s))?
        .into_inner();
    if session.session_key != key {
        return Err(failed("create session", format_args!("asked for {key:?}, got {:?}", session.session_key)));
    }

    let appended = context
        .append_entries(with_tenant(
            &caller,
            AppendEntriesRequest {
                session_key: key.clone(),
                entries: vec![NewEntry {
                    kind: EntryKind::System as i32,
                    role: "probe".to_owned(),
                    author: AGENT.to_owned(),
                    content: Some(new_entry::Content::Text(text.clone())),
                    media_type: "text/plain".to_owned(),
                    ..Default::default()
                }],
                expected_last_seq: Some(0),
                ..Default::default()
            },
        ))
        .await
        .map_err(|s| status("append entry", &s))?
        .into_inner();
    if appended.first_seq != 1 || appended.last_seq != 1 {
        return Err(failed(
            "append entry",
            format_args!("expected seq 1 in a new session, got {}..{}", appended.first_seq, appended.last_seq),
        ));
    }

    let listed = context
        .list_entries(with_tenant(
            &caller,
            ListEntriesRequest { session_key: key.clone(), after_seq: Some(0), page_size: 10, ..Default::default() },
        ))
        .await
        .map_err(|s| status("read back", &s))?
        .into_inner();
    match listed.entries.as_slice() {
        [e] if e.seq == 1
            && e.author == AGENT
            && e.kind == EntryKind::System as i32
            && e.content == Some(entry::Content::Text(text.clone())) => {}
        entries => {
            return Err(failed(
                "read back",
                format_args!("expected the one entry just appended, got {} entries: {entries:?}", entries.len()),
            ));
        }
    }

    context
        .close_session(with_tenant(&caller, CloseSessionRequest { session_key: key.clone() }))
        .await
        .map_err(|s| status("close session", &s))?;
    Ok(format!("health SERVING, session {key}: entry appended, read back and session closed"))
}

/// The caller's headers: the tenant and the API key, when given.
struct Caller {
    tenant: Option<MetadataValue<Ascii>>,
    authorization: Option<MetadataValue<Ascii>>,
}

fn with_tenant<T>(caller: &Caller, msg: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    if let Some(t) = &caller.tenant {
        request.metadata_mut().insert("x-baton-tenant", t.clone());
    }
    if let Some(a) = &caller.authorization {
        request.metadata_mut().insert("authorization", a.clone());
    }
    request
}

fn session_key() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("probe-{ms}-{:08x}", rand::random::<u32>())
}

/// The error and its sources on one line (a transport error's own text is often just
/// "transport error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
