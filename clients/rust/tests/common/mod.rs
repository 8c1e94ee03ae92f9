//! A real `batond` (the server library's `run`, on the embedded SQLite store) on a free
//! loopback port that tests can restart on the same port and data, and a TCP proxy that can
//! swallow answers and cut connections.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_client::v1::{self, NewEntry};
use baton_client::{Client, RetryPolicy};
use baton_server::Listeners;
use baton_server::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A `batond` serving on one port and one data directory for the life of the test.
pub struct Server {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts on a free loopback port with an empty store.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = grpc.local_addr().unwrap();
        let mut server = Server { addr, dir, stop: None, task: None };
        server.launch(grpc).await;
        server
    }

    /// `host:port`, as clients take it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    async fn launch(&mut self, grpc: TcpListener) {
        let mut config = Config::defaults();
        config.data_dir = self.dir.path().to_path_buf();
        config.database_url = None;
        config.redis_url = None;
        config.shutdown_grace_secs = 2;
        config.shutdown_drain_secs = 0;
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            baton_server::run(config, Listeners { grpc, admin }, shutdown).await.expect("batond failed");
        });
        self.stop = Some(stop);
        self.task = Some(task);
        self.wait_ready().await;
    }

    /// Waits until the server answers a call.
    async fn wait_ready(&self) {
        let client = Client::builder(self.target()).retry(RetryPolicy::none()).connect_lazy().unwrap();
        for _ in 0..200 {
            if client.list_sessions(v1::ListSessionsRequest::default()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("batond did not answer on {}", self.addr);
    }

    /// Shuts down as SIGTERM would (streams end with UNAVAILABLE) and waits until it stopped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("batond task");
        }
    }

    /// Stops, then starts again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut last = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(grpc) => return self.launch(grpc).await,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("could not bind {} again: {last:?}", self.addr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Retries that outlast a server restart.
pub fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        multiplier: 2.0,
    }
}

/// A client of `target` in tenant `acme`.
pub async fn client(target: &str) -> Client {
    Client::builder(target).tenant("acme").retry(patient()).connect().await.expect("connect")
}

/// A text message entry.
pub fn message(author: &str, text: &str) -> NewEntry {
    NewEntry {
        kind: v1::EntryKind::Message.into(),
        role: "assistant".into(),
        author: author.into(),
        content: Some(v1::new_entry::Content::Text(text.into())),
        ..Default::default()
    }
}

/// The text of an entry.
pub fn text(entry: &v1::Entry) -> &str {
    match &entry.content {
        Some(v1::entry::Content::Text(t)) => t,
        _ => "",
    }
}

/// A TCP proxy in front of a server. It relays both ways until told to swallow the server's
/// bytes (the client then waits for an answer that never comes) or to cut every open
/// connection.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    swallow: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let swallow = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn({
            let (swallow, accepted, connections) = (swallow.clone(), accepted.clone(), connections.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(upstream).await else { continue };
                    let task = tokio::spawn(relay(client, server, swallow.clone()));
                    connections.lock().unwrap().push(task);
                }
            }
        });
        Proxy { addr, upstream, swallow, accepted, connections, acceptor }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// From now on, drop what the server sends instead of relaying it.
    pub fn swallow_answers(&self, on: bool) {
        self.swallow.store(on, Ordering::SeqCst);
    }

    /// Closes every open connection, both sides.
    pub fn cut(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

async fn relay(client: TcpStream, server: TcpStream, swallow: Arc<AtomicBool>) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !swallow.load(Ordering::SeqCst) && client_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // Either side closing ends the relay, closing the other side too.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
