//! Starts a real `batond` (the library's `serve`, on port 0) against a real store, and
//! connects gRPC clients to it. Every test uses its own tenant, so tests share one
//! PostgreSQL database without seeing each other's data.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use baton_proto::v1 as pb;
use baton_server::Listeners;
use baton_server::clock::ManualClock;
use baton_server::config::Config;
use baton_server::domain::service::Baton;
use baton_server::store::Store;
use pb::context_service_client::ContextServiceClient;
use pb::handoff_service_client::HandoffServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL with the Redis cache and bus in front (the shared test Redis).
    PostgresRedis,
}

/// Runs the test body once per backend: `backend_tests!(name1, name2, ...)` for `async fn
/// nameN(backend: Backend)` functions.
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
                if $crate::common::postgres_url().is_none() {
                    eprintln!("BATON_TEST_DATABASE_URL is unset: skipping the PostgreSQL run (scripts/test sets it)");
                    return;
                }
                super::$name($crate::common::Backend::Postgres).await
            })+
        }
        mod postgres_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if $crate::common::postgres_url().is_none() || $crate::common::redis_url().is_none() {
                    eprintln!("BATON_TEST_DATABASE_URL or BATON_TEST_REDIS_URL is unset: skipping (scripts/test sets them)");
                    return;
                }
                super::$name($crate::common::Backend::PostgresRedis).await
            })+
        }
    };
}

pub fn postgres_url() -> Option<String> {
    std::env::var("BATON_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// The shared test Redis (scripts/test starts it); tests isolate themselves by tenant.
pub fn redis_url() -> Option<String> {
    std::env::var("BATON_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

pub async fn open_store(backend: Backend, dir: &std::path::Path) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => Arc::new(baton_server::store::sqlite::SqliteStore::open(dir).await.expect("open sqlite")),
        Backend::Postgres | Backend::PostgresRedis => {
            let url = postgres_url().expect("BATON_TEST_DATABASE_URL");
            let pg = baton_server::store::postgres::PgStore::connect(&url, 16).await.expect("connect postgres");
            pg.migrate().await.expect("migrate");
            Arc::new(pg)
        }
    }
}

/// A running server and clients for one tenant.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub baton: Arc<Baton>,
    pub tenant: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub type Context = ContextServiceClient<InterceptedService<Channel, Tenant>>;
pub type Handoffs = HandoffServiceClient<InterceptedService<Channel, Tenant>>;

/// Adds the tenant header to every call.
#[derive(Clone)]
pub struct Tenant(pub MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Tenant {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("x-baton-tenant", self.0.clone());
        Ok(req)
    }
}

pub async fn start_server(backend: Backend) -> TestServer {
    start_server_with(backend, |_| {}).await
}

pub async fn start_server_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(backend, dir.path()).await;
    let mut config = Config::defaults();
    config.shutdown_grace_secs = 5;
    if backend == Backend::PostgresRedis {
        config.redis_url = redis_url();
    }
    configure(&mut config);
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (grpc.local_addr().unwrap(), admin.local_addr().unwrap());
    let clock = Arc::new(ManualClock::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel();
    let clock_dyn: Arc<dyn baton_server::clock::Clock> = clock.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let started = move |b: Arc<Baton>| {
            let _ = started_tx.send(b);
        };
        baton_server::serve(config, store, clock_dyn, Listeners { grpc, admin }, shutdown, started)
            .await
            .expect("server failed");
    });
    let baton = started_rx.await.expect("server started");
    TestServer {
        addr,
        admin_addr,
        clock,
        baton,
        tenant: format!("t-{}", uuid::Uuid::now_v7().simple()),
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl TestServer {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect")
    }

    fn tenant_interceptor(&self) -> Tenant {
        Tenant(self.tenant.parse().unwrap())
    }

    pub async fn context(&self) -> Context {
        ContextServiceClient::with_interceptor(self.channel().await, self.tenant_interceptor())
    }

    pub async fn handoffs(&self) -> Handoffs {
        HandoffServiceClient::with_interceptor(self.channel().await, self.tenant_interceptor())
    }

    /// Shuts the server down as SIGTERM would, and waits for it to stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
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
        std::env::var("BATON_TEST_REDIS_SERVER").ok().filter(|b| !b.is_empty()).or_else(|| {
            let found = std::process::Command::new("sh").args(["-c", "command -v redis-server"]).output().ok()?;
            let path = String::from_utf8(found.stdout).ok()?.trim().to_owned();
            (!path.is_empty()).then_some(path)
        })
    }

    /// `None` (the caller skips) when redis-server is not installed; scripts/test installs it.
    pub async fn start() -> Option<RedisServer> {
        Self::binary()?;
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
