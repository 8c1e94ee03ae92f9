//! `--embedded`: Baton's service inside `baton-mcp`, on the embedded store, so one command
//! gives an MCP client everything. It stays gRPC-first: the process serves
//! `baton_server::serve` on a loopback listener and the gateway calls it over gRPC exactly as
//! it calls a remote `batond`, so tools, resources and errors are the same.
//!
//! Several processes may run on one data directory (two desktop clients, each starting its own
//! `baton-mcp --embedded`): the first takes the directory's lock and serves it ([`datadir`]);
//! the others call that owner over loopback gRPC. When the owner exits, the next connection of
//! any other process takes the lock and serves the directory itself. The database is only ever
//! opened by one process, and all of them see the same sessions, live follows included.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use baton_server::auth::AuthMode;
use baton_server::clock::SystemClock;
use baton_server::store::sqlite::SqliteStore;
use baton_server::{Listeners, Running};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use crate::BoxError;
use crate::datadir::{self, DirLock};

/// How long in-flight calls get when the embedded service stops.
const SHUTDOWN_GRACE_SECS: u64 = 5;
/// Between two tries to reach the directory's server while its owner changes.
const RETRY: Duration = Duration::from_millis(100);
/// Tries before a connection attempt gives up (the channel's connect timeout may end it first).
const ATTEMPTS: u32 = 50;

/// Where and how the embedded service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The embedded store's directory (created if missing).
    pub data_dir: PathBuf,
    /// The loopback address its gRPC service listens on when this process owns the directory
    /// (port 0: any free port).
    pub grpc_addr: SocketAddr,
}

/// The service this process runs, or the one it shares. Cheap to clone.
#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmbeddedConfig,
    state: Mutex<State>,
}

enum State {
    /// Another process owns the directory; calls go to it.
    Sharing,
    Serving(Served),
    /// Shut down: no connection may start the service again.
    Closed,
}

struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), BoxError>>,
    store: SqliteStore,
    // Released (and the owner file withdrawn) after the service has stopped.
    lock: DirLock,
}

impl Embedded {
    /// Serves the data directory, or shares it when another process already does.
    pub async fn start(config: EmbeddedConfig) -> Result<Embedded, BoxError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", config.data_dir.display()))?;
        let lock = DirLock::try_acquire(&config.data_dir)
            .map_err(|e| format!("cannot lock the data directory {}: {e}", config.data_dir.display()))?;
        let state = match lock {
            Some(lock) => {
                let served = serve(&config, lock).await?;
                tracing::info!(data_dir = %config.data_dir.display(), grpc = %served.addr, "serving the embedded store");
                State::Serving(served)
            }
            None => {
                match datadir::read_owner(&config.data_dir) {
                    Some(owner) => tracing::info!(
                        data_dir = %config.data_dir.display(), pid = owner.pid, grpc = %owner.grpc,
                        "the data directory is served by another baton-mcp; sharing it"
                    ),
                    None => tracing::info!(
                        data_dir = %config.data_dir.display(),
                        "the data directory is locked by another process; sharing it once it serves"
                    ),
                }
                State::Sharing
            }
        };
        Ok(Embedded { inner: Arc::new(Inner { config, state: Mutex::new(state) }) })
    }

    /// The gRPC address this process serves the directory on, when it is the owner.
    pub async fn serving(&self) -> Option<SocketAddr> {
        match &*self.inner.state.lock().await {
            State::Serving(served) => Some(served.addr),
            State::Sharing | State::Closed => None,
        }
    }

    /// Connects the gateway's channel to whoever serves the directory now.
    pub fn connector(&self) -> Connector {
        Connector { embedded: self.clone() }
    }

    /// The address to call now: this process's service; the service it starts after the
    /// previous owner left (the lock is free); or the owner's published address.
    async fn target(&self) -> io::Result<SocketAddr> {
        let mut state = self.inner.state.lock().await;
        match &*state {
            State::Serving(served) => return Ok(served.addr),
            State::Closed => return Err(io::Error::other("baton-mcp is shutting down")),
            State::Sharing => {}
        }
        let dir = &self.inner.config.data_dir;
        if let Some(lock) = DirLock::try_acquire(dir)? {
            let served = serve(&self.inner.config, lock).await.map_err(io::Error::other)?;
            let addr = served.addr;
            tracing::info!(data_dir = %dir.display(), grpc = %addr, "the previous owner left; serving the embedded store");
            *state = State::Serving(served);
            return Ok(addr);
        }
        datadir::read_owner(dir).map(|owner| owner.grpc).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the data directory {} is locked, and its owner serves no address yet", dir.display()),
            )
        })
    }

    /// Stops the service if this process runs it (in-flight calls get a few seconds), closes
    /// the store and releases the directory. Later connections fail instead of serving anew.
    pub async fn shutdown(&self) {
        let state = std::mem::replace(&mut *self.inner.state.lock().await, State::Closed);
        let State::Serving(served) = state else { return };
        let Served { stop, task, store, lock, .. } = served;
        let _ = stop.send(());
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the embedded service failed"),
            Err(e) => tracing::warn!(error = %e, "the embedded service task failed"),
        }
        // Closing checkpoints the WAL into the database file.
        store.close().await;
        drop(lock);
        tracing::info!("embedded store closed");
    }
}

/// Opens the store and starts the gRPC service on it; the lock is held for as long as it runs.
async fn serve(config: &EmbeddedConfig, lock: DirLock) -> Result<Served, BoxError> {
    let store = SqliteStore::open(&config.data_dir).await?;
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|e| format!("the embedded gRPC service cannot listen on {}: {e}", config.grpc_addr))?;
    // `serve` also runs the admin routes (/health, /ready, /metrics); nobody is told where.
    let admin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = grpc.local_addr()?;
    let mut server = baton_server::config::Config::defaults();
    server.data_dir = config.data_dir.clone();
    server.grpc_addr = addr;
    server.admin_addr = admin.local_addr()?;
    server.shutdown_grace_secs = SHUTDOWN_GRACE_SECS;
    // Only this process talks to it: nothing to drain.
    server.shutdown_drain_secs = 0;
    // Loopback only, for this user's own agents: no keys (the server's default, said here
    // because the service is exposed to no one else).
    server.auth = AuthMode::None;
    let (stop, stopped) = oneshot::channel::<()>();
    let (up, is_up) = oneshot::channel::<()>();
    let task = tokio::spawn(baton_server::serve(
        server,
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        Listeners { grpc, admin },
        async move {
            let _ = stopped.await;
        },
        move |_: Running| {
            let _ = up.send(());
        },
    ));
    if is_up.await.is_err() {
        // It ended before serving: its error says why.
        store.close().await;
        return Err(match task.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => "the embedded service stopped before it started".into(),
            Err(e) => e.into(),
        });
    }
    lock.publish(addr)?;
    Ok(Served { addr, stop, task, store, lock })
}

/// A `tower::Service<Uri>` for tonic's channel: every (re)connection goes to the directory's
/// current server, whatever the URI.
#[derive(Clone)]
pub struct Connector {
    embedded: Embedded,
}

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let embedded = self.embedded.clone();
        Box::pin(async move {
            let mut last = None;
            for _ in 0..ATTEMPTS {
                // A refused connection while sharing: the owner is leaving or starting; the
                // next try takes the lock or reads its successor's address.
                match embedded.target().await {
                    Ok(addr) => match TcpStream::connect(addr).await {
                        Ok(stream) => {
                            stream.set_nodelay(true)?;
                            return Ok(TokioIo::new(stream));
                        }
                        Err(e) => last = Some(e),
                    },
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => last = Some(e),
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(last.unwrap_or_else(|| io::Error::other("no server for the data directory")))
        })
    }
}
