//! Baton's test kit, shared by every crate's integration tests.
//!
//! - [`service`]: the external services a test needs (PostgreSQL, Redis) come from the
//!   variables `scripts/test` exports. A missing one **fails** the test; only
//!   `BATON_REQUIRE_SERVICES=0` turns that into a loud skip, for a developer who wants the
//!   tests that need nothing. No test passes by not running.
//! - [`config`]: the server's documented defaults, never read from the environment (an
//!   exported `REDIS_URL` must not turn the cache on in a "no cache" test), with
//!   authentication ON (`--auth api-key`) as in production; [`Server::key`] issues keys.
//! - [`Server`]: a real `batond` (the library's `serve`) on loopback port 0 against the
//!   chosen [`Backend`], stopped as SIGTERM would stop it.

use std::net::SocketAddr;
use std::sync::Arc;

use baton_server::auth::keys::Hasher;
use baton_server::auth::{AuthMode, IssuedKey, KeySpec};
use baton_server::clock::Clock;
use baton_server::config::Config;
use baton_server::domain::principal::Role;
use baton_server::store::Store;
use baton_server::store::postgres::PgStore;
use baton_server::store::sqlite::SqliteStore;
use baton_server::{Listeners, Running};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Set to `0` to skip (loudly) the tests whose services are missing instead of failing them.
pub const REQUIRE_SERVICES: &str = "BATON_REQUIRE_SERVICES";
/// The tables' owner: migrations run as it.
pub const DATABASE_URL: &str = "BATON_TEST_DATABASE_URL";
/// The serving role (a member of `baton_app`, owning nothing): test servers run as it, so
/// row-level security binds every test.
pub const APP_DATABASE_URL: &str = "BATON_TEST_APP_DATABASE_URL";
pub const REDIS_URL: &str = "BATON_TEST_REDIS_URL";
/// The `redis-server` binary, for tests that kill and restart their own Redis.
pub const REDIS_SERVER: &str = "BATON_TEST_REDIS_SERVER";

/// The value of a service variable. Missing: panics (the test fails), unless
/// `BATON_REQUIRE_SERVICES=0`, when it says so on stderr and returns `None` for the test to
/// return early.
pub fn service(var: &str) -> Option<String> {
    if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    if std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "0") {
        eprintln!("SKIPPED: {var} is unset and {REQUIRE_SERVICES}=0");
        return None;
    }
    panic!(
        "{var} is unset, and this test needs that service. Run the tests through scripts/test, or start the \
         services with `eval \"$(scripts/dev-services)\"`; {REQUIRE_SERVICES}=0 skips such tests instead."
    )
}

pub fn postgres_url() -> Option<String> {
    service(DATABASE_URL)
}

pub fn redis_url() -> Option<String> {
    service(REDIS_URL)
}

/// The store (and cache) a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store; needs nothing.
    Sqlite,
    Postgres,
    /// PostgreSQL with the Redis cache and bus in front.
    PostgresRedis,
}

impl Backend {
    /// Whether the services this backend needs are there; fails the test when they are not
    /// (see [`service`]).
    pub fn available(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => postgres_url().is_some(),
            Backend::PostgresRedis => postgres_url().is_some() && redis_url().is_some(),
        }
    }
}

/// The test PostgreSQL store, migrated. Every test isolates itself by tenant, so tests share
/// one database.
pub async fn postgres_store(max_connections: u32) -> Option<PgStore> {
    let owner = PgStore::connect(&postgres_url()?, 1, std::time::Duration::from_secs(5))
        .await
        .expect("connect to the test PostgreSQL as its owner");
    owner.migrate().await.expect("migrate the test PostgreSQL");
    let app = service(APP_DATABASE_URL)?;
    Some(
        PgStore::connect(&app, max_connections, std::time::Duration::from_secs(5))
            .await
            .expect("connect to the test PostgreSQL as the serving role"),
    )
}

/// The backend's store (a fresh SQLite file under `dir` for the embedded one).
pub async fn open_store(backend: Backend, dir: &std::path::Path) -> Option<Arc<dyn Store>> {
    Some(match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open(dir).await.expect("open the embedded store")),
        Backend::Postgres | Backend::PostgresRedis => Arc::new(postgres_store(16).await?),
    })
}

/// The documented defaults, whatever the environment holds, with a short shutdown grace.
pub fn config() -> Config {
    let mut config = Config::defaults();
    config.shutdown_grace_secs = 5;
    // Tests stop servers on purpose: no load balancer to drain (the drain test sets one).
    config.shutdown_drain_secs = 0;
    config.auth = AuthMode::ApiKey;
    // Tests make calls as fast as they can from one key; the quota tests turn it back on.
    config.rate_limit_rps = 0;
    config
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub running: Running,
    /// The server's authentication mode (`config().auth` unless the test changed it).
    pub auth: AuthMode,
    pepper: Option<String>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on `backend` with `clock`, after `configure` adjusted [`config`] (the
    /// Redis URL is already set for [`Backend::PostgresRedis`]). `None` only when the backend's
    /// services are missing and skipping is allowed.
    pub async fn start(backend: Backend, clock: Arc<dyn Clock>, configure: impl FnOnce(&mut Config)) -> Option<Server> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(backend, dir.path()).await?;
        let redis_url = match backend {
            Backend::PostgresRedis => Some(redis_url()?),
            Backend::Sqlite | Backend::Postgres => None,
        };
        let configure = |config: &mut Config| {
            config.redis_url = redis_url;
            configure(config);
        };
        Some(Server::launch(dir, store, clock, configure).await)
    }

    /// Starts a server on `store` (a database of the test's own, say), as [`Server::start`]
    /// does, without a cache unless `configure` sets one.
    pub async fn start_on(store: Arc<dyn Store>, clock: Arc<dyn Clock>, configure: impl FnOnce(&mut Config)) -> Server {
        Server::launch(tempfile::tempdir().expect("tempdir"), store, clock, configure).await
    }

    /// Serves `store` (whose files, for the embedded one, are in `dir`, kept as long as the
    /// server).
    async fn launch(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        configure: impl FnOnce(&mut Config),
    ) -> Server {
        let mut config = config();
        configure(&mut config);
        let (auth, pepper) = (config.auth, config.key_pepper.clone());
        let served = Arc::clone(&store);
        let clock_ = Arc::clone(&clock);
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let (addr, admin_addr) = (grpc.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let started = move |running: Running| {
                let _ = started_tx.send(running);
            };
            baton_server::serve(config, served, clock, Listeners { grpc, admin }, shutdown, started)
                .await
                .expect("the test server failed");
        });
        let running = started_rx.await.expect("the test server started");
        Server {
            addr,
            admin_addr,
            running,
            auth,
            pepper,
            store,
            clock: clock_,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Issues an API key in the server's store (as `batond keys create` would) and returns
    /// the token.
    pub async fn key(&self, tenant: &str, role: Role, agent: Option<&str>) -> String {
        self.issue(KeySpec {
            tenant: tenant.into(),
            role,
            agent: agent.map(Into::into),
            name: "test".into(),
            expires_in: None,
        })
        .await
        .token
    }

    /// Issues an API key as `spec` says.
    pub async fn issue(&self, spec: KeySpec) -> IssuedKey {
        let hasher = Hasher::new(self.pepper.as_deref());
        let now = self.clock.now();
        baton_server::auth::issue(&*self.store, &hasher, spec, now).await.expect("issue an API key")
    }

    /// The store the server serves.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// `http://` and the gRPC address.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down as SIGTERM would, and waits for it to stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the test server task");
        }
    }
}

/// A tenant of its own for one test.
pub fn tenant() -> String {
    format!("t-{}", uuid::Uuid::now_v7().simple())
}
