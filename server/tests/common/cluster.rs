//! A private Redis Cluster per test: three masters (no replicas) as `redis-server` children on
//! free loopback ports in a temporary directory, joined by `redis-cli --cluster create`. The
//! children are killed when the value drops, also when the test panics. A missing
//! `redis-server` or `redis-cli` fails the test: there is no skipping here.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a node may be unreachable before the others call it failed (and, with full
/// coverage required, the cluster down). Short, so outages in tests are quick to reach.
const NODE_TIMEOUT_MS: u32 = 1000;

pub struct RedisCluster {
    dir: tempfile::TempDir,
    /// (client port, cluster bus port) per node.
    pub ports: Vec<(u16, u16)>,
    children: Vec<Option<Child>>,
    server: PathBuf,
    cli: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().ok()?;
    let path = String::from_utf8(found.stdout).ok()?.trim().to_owned();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisCluster {
    /// Starts three masters and creates the cluster; returns once every node reports
    /// `cluster_state:ok`.
    pub async fn start() -> RedisCluster {
        let server = std::env::var(baton_testkit::REDIS_SERVER)
            .ok()
            .filter(|b| !b.is_empty())
            .map(PathBuf::from)
            .or_else(|| on_path("redis-server"))
            .expect("redis-server is needed for the Redis Cluster tests (scripts/test installs it)");
        let cli = server
            .parent()
            .map(|d| d.join("redis-cli"))
            .filter(|p| p.exists())
            .or_else(|| on_path("redis-cli"))
            .expect("redis-cli is needed for the Redis Cluster tests (scripts/test installs it)");
        let ports = (0..3).map(|_| (free_port(), free_port())).collect();
        let mut cluster =
            RedisCluster { dir: tempfile::tempdir().unwrap(), ports, children: vec![None, None, None], server, cli };
        for i in 0..3 {
            // A port found free may be taken again before the node binds it (tests start
            // clusters at once): a node that does not come up gets new ports, a few times.
            let mut attempts = 0;
            while !cluster.try_start_node(i).await {
                cluster.kill_node(i);
                attempts += 1;
                assert!(attempts < 5, "redis-server did not start on {:?}", cluster.ports[i]);
                cluster.ports[i] = (free_port(), free_port());
            }
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
        let out = Command::new(&cluster.cli)
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok().await;
        cluster
    }

    /// `REDIS_URL` for the cluster, in the comma-separated form the README documents.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// Starts node `i` (again) on its ports with its own cluster config file, so a restarted
    /// node rejoins with the slots it had (empty: nothing is persisted).
    pub async fn start_node(&mut self, i: usize) {
        let port = self.ports[i].0;
        assert!(self.try_start_node(i).await, "redis-server did not start on port {port}");
    }

    /// Starts node `i`; false if it does not answer within 5 s.
    async fn try_start_node(&mut self, i: usize) -> bool {
        let (port, bus) = self.ports[i];
        let child = Command::new(&self.server)
            .args(["--port", &port.to_string(), "--cluster-port", &bus.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.children[i] = Some(child);
        for _ in 0..100 {
            if self.cli(i, &["PING"]).is_some_and(|r| r.contains("PONG")) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Kills node `i` without warning, as a crash would.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every running node reports `cluster_state:ok`.
    pub async fn wait_ok(&self) {
        for _ in 0..400 {
            let ok = (0..3)
                .filter(|&i| self.children[i].is_some())
                .all(|i| self.cli(i, &["CLUSTER", "INFO"]).is_some_and(|r| r.contains("cluster_state:ok")));
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Redis Cluster never reached cluster_state:ok");
    }

    /// One command through redis-cli on node `i`; its output, or `None` if it failed.
    pub fn cli(&self, i: usize, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.cli)
            .args(["-h", "127.0.0.1", "-p", &self.ports[i].0.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill_node(i);
        }
    }
}
