//! Real processes a fault test can kill and restart: `batond` children on fixed loopback ports
//! (a restart comes back at the same address, as a supervisor would bring it back), and a
//! private PostgreSQL cluster in a temporary directory (with streaming replicas of it). Both are stopped on drop, also when the
//! test panics, and print their log's tail when it does.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `batond` binary cargo built for this package's tests.
pub const BATOND: &str = env!("CARGO_BIN_EXE_batond");

/// How long a process may take to come up (or go down) before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plain HTTP/1.1 GET on loopback: the status code and body, `None` when nothing answered
/// within `timeout`.
pub async fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

/// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

// ---- batond ----

/// A `batond` child process (`--auth api-key`) on two fixed loopback ports. Its stderr goes to
/// a log file that survives restarts.
pub struct Batond {
    pub grpc_port: u16,
    pub admin_port: u16,
    env: Vec<(String, String)>,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Batond {
    /// The environment of a `batond` serving PostgreSQL: `serving` is the role it serves as
    /// (owning nothing, under row-level security), `owner` the one migrations run as.
    pub fn postgres_env(serving: &str, owner: &str) -> Vec<(String, String)> {
        vec![("DATABASE_URL".into(), serving.into()), ("BATON_MIGRATE_DATABASE_URL".into(), owner.into())]
    }

    /// Starts `batond` with `env` (and nothing else of the test's environment but PATH) and
    /// `args` after the listen addresses, and waits until `/ready` answers 200.
    pub async fn start(env: Vec<(String, String)>, args: &[&str]) -> Batond {
        let dir = tempfile::tempdir().expect("tempdir");
        let grpc_port = free_port();
        let admin_port = std::iter::repeat_with(free_port).find(|&p| p != grpc_port).unwrap();
        let mut b = Batond {
            grpc_port,
            admin_port,
            env,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            log: dir.path().join("batond.log"),
            _dir: dir,
        };
        b.restart().await;
        b
    }

    /// Starts it (again) on the same ports and waits until it is ready.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "batond is still running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the batond log");
        let mut cmd = Command::new(BATOND);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var("BATON_FAULTS_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["--auth", "api-key", "--rate-limit-rps", "0", "--shutdown-grace-secs", "5"])
            .args(["--grpc-addr", &format!("127.0.0.1:{}", self.grpc_port)])
            .args(["--admin-addr", &format!("127.0.0.1:{}", self.admin_port)])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let started = Instant::now();
        // A port can stay taken for a moment after the previous process died; retry binding.
        loop {
            self.child = Some(cmd.spawn().expect("spawn batond"));
            match self.wait_ready(started).await {
                Ok(()) => return,
                Err(status) if started.elapsed() < START_TIMEOUT && tail(&self.log, 5).contains("in use") => {
                    eprintln!("batond exited ({status}) as its port was still taken; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => panic!("batond exited with {status} before it was ready:\n{}", tail(&self.log, 30)),
            }
        }
    }

    /// Waits for `/ready` to answer 200; `Err` with the exit status when the process ended.
    async fn wait_ready(&mut self, started: Instant) -> Result<(), ExitStatus> {
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return Err(status);
            }
            if self.ready().await == Some(200) {
                return Ok(());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "batond not ready after {START_TIMEOUT:?}:\n{}",
                tail(&self.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status `/ready` answers with, `None` when nothing answers within a second.
    pub async fn ready(&self) -> Option<u16> {
        http_get(self.admin_port, "/ready", Duration::from_secs(1)).await.map(|(status, _)| status)
    }

    /// `http://127.0.0.1:<grpc port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (the same one: a restart is not counted).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as an orchestrator stopping the pod would; the process keeps running until
    /// [`Batond::wait_exit`] sees it go.
    pub fn terminate(&self) {
        signal(self.pid().expect("batond is running"), "TERM");
    }

    /// Waits (at most `timeout`) for the process to exit, and returns how it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        let child = self.child.as_mut().expect("batond is running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(started.elapsed() < timeout, "batond still running {timeout:?} after the signal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The log so far (stderr of every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Issues an API key with `batond keys create` on the store this `batond` serves.
    pub fn create_key(env: &[(String, String)], tenant: &str, role: &str) -> String {
        let out = Command::new(BATOND)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["keys", "create", "--tenant", tenant, "--role", role])
            .output()
            .expect("run batond keys create");
        assert!(out.status.success(), "batond keys create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().last().expect("the key is the last line").to_owned()
    }
}

impl Drop for Batond {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- batond :{} log (tail) ----\n{}", self.grpc_port, tail(&self.log, 40));
        }
    }
}

// ---- a private PostgreSQL cluster ----

/// Where the PostgreSQL server binaries are: `BATON_TEST_PG_BIN`, else Debian's PostgreSQL 15.
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("BATON_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A PostgreSQL cluster of the test's own (initdb in a temporary directory, listening on a
/// free loopback port, password authentication), which the test may stop and start at will.
/// As root it runs as the `postgres` OS user (PostgreSQL refuses to run as root). Stopped
/// (immediately) and removed on drop.
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The OS user the cluster runs as, when it is not the test's.
    run_as: Option<String>,
    dir: tempfile::TempDir,
}

/// Passwords of the private cluster's roles (loopback only, gone with the cluster).
const SUPERUSER_PASSWORD: &str = "faults-superuser";
const OWNER_PASSWORD: &str = "baton";
const SERVING_PASSWORD: &str = "baton_server";

impl PgCluster {
    /// Creates and starts the cluster, with the roles and database `batond` expects: `baton`
    /// (owns the tables, runs migrations), `baton_server` (serves, a member of `baton_app`,
    /// no BYPASSRLS) and the database `baton`. A missing PostgreSQL fails the test.
    pub async fn start() -> PgCluster {
        let bin = pg_bin_dir();
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "no PostgreSQL server binaries in {} (set BATON_TEST_PG_BIN; scripts/test installs PostgreSQL 15)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let (uid, gid) = os_user(user);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster directory");
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        let cluster = PgCluster {
            port: free_port(),
            bin,
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            run_as,
            dir,
        };
        let data = cluster.data.display().to_string();
        let pwfile = format!("--pwfile={}", pwfile.display());
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                &pwfile,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.configure("listen_addresses = '127.0.0.1'\nmax_connections = 60\nshared_buffers = 32MB\nfsync = off\nfull_page_writes = off");
        cluster.start_again();
        cluster.bootstrap().await;
        cluster
    }

    /// One of the PostgreSQL binaries, to run as the cluster's OS user.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Runs one of the PostgreSQL binaries and fails the test on error.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log, 20)
        );
    }

    fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{database}", self.port)
    }

    /// The tables' owner: migrations run as it.
    pub fn owner_url(&self) -> String {
        self.url("baton", OWNER_PASSWORD, "baton")
    }

    /// The serving role, under row-level security.
    pub fn serving_url(&self) -> String {
        self.url("baton_server", SERVING_PASSWORD, "baton")
    }

    async fn bootstrap(&self) {
        use sqlx::Connection as _;
        let mut su = sqlx::PgConnection::connect(&self.url("postgres", SUPERUSER_PASSWORD, "postgres"))
            .await
            .expect("connect to the private cluster as its superuser");
        for sql in [
            format!("CREATE ROLE baton LOGIN PASSWORD '{OWNER_PASSWORD}' CREATEDB"),
            "CREATE ROLE baton_app NOLOGIN".to_owned(),
            format!("CREATE ROLE baton_server LOGIN PASSWORD '{SERVING_PASSWORD}' NOBYPASSRLS IN ROLE baton_app"),
            "CREATE DATABASE baton OWNER baton".to_owned(),
        ] {
            sqlx::raw_sql(&sql).execute(&mut su).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        su.close().await.ok();
    }

    /// A streaming replica of this cluster (a hot standby made with `pg_basebackup -R` over
    /// loopback, started on a port of its own), with `conf` added to its configuration (e.g.
    /// `recovery_min_apply_delay = '1h'` for a replica that stays behind). It has the
    /// primary's roles, databases and schema as they were when it was made.
    pub fn standby(&self, conf: &str) -> PgCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(user) = &self.run_as {
            let (uid, gid) = os_user(user);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the replica's directory");
        }
        let standby = PgCluster {
            port: free_port(),
            bin: self.bin.clone(),
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            run_as: self.run_as.clone(),
            dir,
        };
        let (data, port) = (standby.data.display().to_string(), self.port.to_string());
        let out = standby
            .command("pg_basebackup")
            .args([
                "-D",
                &data,
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        standby.configure(&format!("hot_standby = on\n{conf}"));
        standby.start_again();
        standby
    }

    /// Adds `settings` to the configuration, after this cluster's own port and socket
    /// directory (a later line wins).
    fn configure(&self, settings: &str) {
        let conf =
            format!("port = {}\nunix_socket_directories = '{}'\n{settings}\n", self.port, self.dir.path().display());
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("configure the cluster");
    }

    /// Stops the server: `immediate` (every process killed, crash recovery at the next start)
    /// or `fast` (connections cut, a clean checkpoint).
    pub fn stop(&self, mode: &str) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["stop", "-D", &data, "-m", mode, "-w", "-t", "30"]);
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let (data, log) = (self.data.display().to_string(), self.log.display().to_string());
        self.run("pg_ctl", &["start", "-D", &data, "-l", &log, "-w", "-t", "30"]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- private PostgreSQL :{} log (tail) ----\n{}", self.port, tail(&self.log, 20));
        }
        let data = self.data.display().to_string();
        // Not self.run: a failure here must not panic inside a panic. The directory goes with
        // `dir` afterwards.
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-D", &data, "-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The uid and gid of an OS user; fails the test when there is none.
fn os_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, name]).output().expect("run id");
        assert!(out.status.success(), "no OS user {name:?} to run PostgreSQL as (it refuses to run as root)");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
    };
    (id("-u"), id("-g"))
}
