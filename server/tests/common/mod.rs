//! Starts a real `batond` (the library's `serve`, on port 0) against a real store, and
//! connects gRPC clients to it. Every test uses its own tenant, so tests share one
//! PostgreSQL database without seeing each other's data.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use baton_proto::v1 as pb;
use baton_server::Running;
pub use baton_server::auth::AuthMode;
use baton_server::cache::RedisCache;
use baton_server::clock::ManualClock;
use baton_server::config::Config;
pub use baton_server::domain::principal::Role;
use baton_server::domain::service::Baton;
use pb::context_service_client::ContextServiceClient;
use pb::handoff_service_client::HandoffServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

#[allow(unused_imports)]
pub use baton_testkit::{Backend, postgres_url, redis_url, service};

pub mod cluster;
pub mod fresh;
pub mod procs;

/// Runs the test body once per backend: `backend_tests!(name1, name2, ...)` for `async fn
/// nameN(backend: Backend)` functions. A backend whose services are missing fails its tests
/// (see `baton_testkit::service`).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if $crate::common::Backend::Postgres.available() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            })+
        }
        mod postgres_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if $crate::common::Backend::PostgresRedis.available() {
                    super::$name($crate::common::Backend::PostgresRedis).await
                }
            })+
        }
    };
}

/// A running server and clients for one tenant.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub baton: Arc<Baton>,
    /// The Redis cache, when the server has one.
    pub redis: Option<Arc<RedisCache>>,
    pub tenant: String,
    /// A writer key of `tenant` (`None` when the server runs with `--auth none`).
    pub key: Option<String>,
    pub server: baton_testkit::Server,
}

pub type Context = ContextServiceClient<InterceptedService<Channel, Caller>>;
pub type Handoffs = HandoffServiceClient<InterceptedService<Channel, Caller>>;

/// Adds the caller's credential and tenant header to every call.
#[derive(Clone)]
pub struct Caller {
    pub tenant: Option<MetadataValue<tonic::metadata::Ascii>>,
    pub key: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Caller {
    pub fn new(tenant: Option<&str>, key: Option<&str>) -> Caller {
        Caller { tenant: tenant.map(|t| t.parse().unwrap()), key: key.map(|k| format!("Bearer {k}").parse().unwrap()) }
    }
}

impl tonic::service::Interceptor for Caller {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.tenant {
            req.metadata_mut().insert("x-baton-tenant", t.clone());
        }
        if let Some(k) = &self.key {
            req.metadata_mut().insert("authorization", k.clone());
        }
        Ok(req)
    }
}

pub async fn start_server(backend: Backend) -> TestServer {
    start_server_with(backend, |_| {}).await
}

pub async fn start_server_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestServer {
    let clock = Arc::new(ManualClock::new());
    let server = baton_testkit::Server::start(backend, clock.clone(), configure)
        .await
        .expect("the backend's services are there (tests check Backend::available first)");
    TestServer::new(server, clock).await
}

/// A server on `store` (a database of the test's own), without a cache.
pub async fn start_server_on(
    store: Arc<dyn baton_server::store::Store>,
    configure: impl FnOnce(&mut Config),
) -> TestServer {
    let clock = Arc::new(ManualClock::new());
    let server = baton_testkit::Server::start_on(store, clock.clone(), configure).await;
    TestServer::new(server, clock).await
}

impl TestServer {
    /// A tenant of its own on `server`, with a writer key when the server authenticates.
    async fn new(server: baton_testkit::Server, clock: Arc<ManualClock>) -> TestServer {
        let Running { baton, redis } = &server.running;
        let tenant = baton_testkit::tenant();
        let key = match server.auth {
            AuthMode::ApiKey => Some(server.key(&tenant, Role::Writer, None).await),
            AuthMode::None => None,
        };
        TestServer {
            addr: server.addr,
            admin_addr: server.admin_addr,
            clock,
            baton: Arc::clone(baton),
            redis: redis.clone(),
            tenant,
            key,
            server,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect")
    }

    /// The test's own caller: its tenant and writer key.
    pub fn caller(&self) -> Caller {
        Caller::new(Some(&self.tenant), self.key.as_deref())
    }

    pub async fn context(&self) -> Context {
        self.context_as(self.caller()).await
    }

    pub async fn handoffs(&self) -> Handoffs {
        self.handoffs_as(self.caller()).await
    }

    pub async fn context_as(&self, caller: Caller) -> Context {
        ContextServiceClient::with_interceptor(self.channel().await, caller)
    }

    pub async fn handoffs_as(&self, caller: Caller) -> Handoffs {
        HandoffServiceClient::with_interceptor(self.channel().await, caller)
    }

    /// Shuts the server down as SIGTERM would, and waits for it to stop.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

// ---- request helpers ----

pub fn text(kind: pb::EntryKind, author: &str, text: &str) -> pb::NewEntry {
    pb::NewEntry {
        kind: kind.into(),
        role: "assistant".into(),
        author: author.into(),
        content: Some(pb::new_entry::Content::Text(text.into())),
        ..Default::default()
    }
}

pub fn message(author: &str, body: &str) -> pb::NewEntry {
    text(pb::EntryKind::Message, author, body)
}

pub async fn create_session(ctx: &mut Context, key: &str, agent: &str) -> pb::Session {
    ctx.create_session(pb::CreateSessionRequest { session_key: key.into(), agent: agent.into(), ..Default::default() })
        .await
        .expect("create session")
        .into_inner()
}

pub async fn append(ctx: &mut Context, key: &str, entries: Vec<pb::NewEntry>) -> pb::AppendEntriesResponse {
    ctx.append_entries(pb::AppendEntriesRequest { session_key: key.into(), entries, ..Default::default() })
        .await
        .expect("append")
        .into_inner()
}

/// The field names of a status's BadRequest details.
pub fn violations(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

// ---- a private Redis per test ----

/// A `redis-server` child process on a free loopback port, which tests may kill and restart.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    fn binary() -> Option<String> {
        std::env::var(baton_testkit::REDIS_SERVER).ok().filter(|b| !b.is_empty()).or_else(|| {
            let found = std::process::Command::new("sh").args(["-c", "command -v redis-server"]).output().ok()?;
            let path = String::from_utf8(found.stdout).ok()?.trim().to_owned();
            (!path.is_empty()).then_some(path)
        })
    }

    /// A private Redis on a free port. Without redis-server the test fails (scripts/test
    /// installs it), or skips with `BATON_REQUIRE_SERVICES=0`.
    pub async fn start() -> Option<RedisServer> {
        if Self::binary().is_none() {
            baton_testkit::service(baton_testkit::REDIS_SERVER)?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        let child = std::process::Command::new(Self::binary().expect("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if self.command(&["PING"]).await.is_some_and(|r| r.contains("PONG")) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills it without warning, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command and returns the raw reply (enough for PING and INFO).
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        loop {
            let n = tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut buf)).await.ok()?.ok()?;
            out.extend_from_slice(&buf[..n]);
            // A simple or bulk reply is complete once it ends with CRLF and, for bulk, holds
            // the announced length.
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some(rest) = text.strip_prefix('$') {
                let (len, body) = rest.split_once("\r\n")?;
                if body.len() >= len.parse::<usize>().ok()? + 2 {
                    return Some(body.to_owned());
                }
            } else if text.ends_with("\r\n") || n == 0 {
                return Some(text);
            }
        }
    }

    /// Calls of one command so far, from INFO commandstats.
    pub async fn calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).await.unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Logs to the test's output when RUST_LOG is set.
pub fn init_test_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
}

// ---- replicas sharing a Redis (or a Redis Cluster) ----

/// Two replicas serving one tenant on the test PostgreSQL with the Redis at `url`, each
/// connected to it (the cache connects in the background). Both serve one database, so a's key
/// is good on b.
pub async fn replicas_on(url: &str) -> (TestServer, TestServer) {
    let a = start_server_with(Backend::Postgres, |c| c.redis_url = Some(url.to_owned())).await;
    let mut b = start_server_with(Backend::Postgres, |c| c.redis_url = Some(url.to_owned())).await;
    b.tenant = a.tenant.clone();
    b.key = a.key.clone();
    wait_for_bus(&a).await;
    wait_for_bus(&b).await;
    (a, b)
}

/// Waits until the replica's cache has answered Redis once.
pub async fn wait_for_bus(srv: &TestServer) {
    let cache = srv.redis.as_ref().expect("cache configured");
    for _ in 0..200 {
        if cache.is_connected() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the replica never connected to Redis");
}

pub fn stats(srv: &TestServer) -> &baton_server::cache::CacheMetrics {
    srv.redis.as_ref().unwrap().metrics()
}
