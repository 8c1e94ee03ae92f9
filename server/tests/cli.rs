//! The `batond` binary as an operator runs it: `batond keys create|list|revoke` on both stores
//! (flags before or after the subcommand), a created key working against a `batond --auth
//! api-key` started from the same store, and the loud warning of `--auth none` on a
//! non-loopback address.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use common::*;

const BATOND: &str = env!("CARGO_BIN_EXE_batond");

/// `batond` with a clean environment but for the store settings.
fn batond(store: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BATOND);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "warn");
    for (k, v) in store {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("run batond")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "batond failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The store settings of each backend: a fresh data dir, or the test PostgreSQL (serving as the
/// serving role, migrating as the owner).
fn stores(dir: &std::path::Path) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let mut out = vec![("sqlite", vec![("BATON_DATA_DIR", dir.display().to_string())])];
    if let (Some(owner), Some(app)) = (postgres_url(), baton_testkit::service(baton_testkit::APP_DATABASE_URL)) {
        out.push(("postgres", vec![("DATABASE_URL", app), ("BATON_MIGRATE_DATABASE_URL", owner)]));
    }
    out
}

#[test]
fn keys_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores(dir.path()) {
        let tenant = baton_testkit::tenant();
        // Flags after the subcommand work as well as before it.
        let created = ok(&batond(
            &store,
            &[
                "keys",
                "create",
                "--tenant",
                &tenant,
                "--role",
                "writer",
                "--agent",
                "planner",
                "--name",
                "ci",
                "--expires-in",
                "90d",
            ],
        ));
        let key = created.lines().last().expect("the key is the last line");
        let id = baton_server::auth::keys::parse(key)
            .unwrap_or_else(|| panic!("{backend}: not a key: {key:?}"))
            .id
            .to_owned();

        let listed = ok(&batond(&store, &["keys", "list", "--tenant", &tenant, "--json"]));
        let rows: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 1, "{backend}: {listed}");
        let row = &rows[0];
        assert_eq!(row["id"], id.as_str());
        assert_eq!(
            (row["role"].as_str(), row["agent"].as_str(), row["state"].as_str()),
            (Some("writer"), Some("planner"), Some("active"))
        );
        assert!(row["expires_at"].is_string(), "{row}");
        assert!(!listed.contains(key), "{backend}: list must never show a secret");
        let table = ok(&batond(&store, &["keys", "list", "--tenant", &tenant]));
        assert!(table.starts_with("ID") && table.contains(&id), "{table}");

        let revoked = ok(&batond(&store, &["keys", "revoke", &id]));
        assert!(revoked.contains(&id), "{revoked}");
        let listed = ok(&batond(&store, &["keys", "list", "--tenant", &tenant, "--json"]));
        assert!(listed.contains("\"state\":\"revoked\""), "{backend}: {listed}");

        let unknown = batond(&store, &["keys", "revoke", "0000000000000000"]);
        assert!(!unknown.status.success(), "{backend}: revoking an unknown key fails");
        let bad_role = batond(&store, &["keys", "create", "--tenant", &tenant, "--role", "root"]);
        assert!(!bad_role.status.success(), "{backend}: an unknown role is refused");
    }
}

/// A running `batond` child, killed on drop.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_key_works_against_batond_with_api_key_auth() {
    let dir = tempfile::tempdir().unwrap();
    let store = vec![("BATON_DATA_DIR", dir.path().display().to_string())];
    let tenant = baton_testkit::tenant();
    let key = ok(&batond(&store, &["keys", "create", "--tenant", &tenant, "--role", "writer"]))
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let (grpc, admin) = (free_port(), free_port());
    let child = Command::new(BATOND)
        .env_clear()
        .env("BATON_DATA_DIR", dir.path())
        .args([
            "--auth",
            "api-key",
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--admin-addr",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _served = Served(child);
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        match tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap().connect().await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("batond did not come up: {e}"),
        }
    };
    let mut anonymous = pb::context_service_client::ContextServiceClient::new(channel.clone());
    let e = anonymous.list_sessions(pb::ListSessionsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut ctx =
        pb::context_service_client::ContextServiceClient::with_interceptor(channel, Caller::new(None, Some(&key)));
    let s = create_session(&mut ctx, "cli", "a").await;
    assert_eq!(s.tenant, tenant, "the key's tenant");
}

#[test]
fn auth_none_on_a_public_address_warns_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BATOND)
        .env_clear()
        .env("BATON_DATA_DIR", dir.path())
        .args(["--auth", "none", "--grpc-addr", "0.0.0.0:0", "--admin-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let served = Served(child);
    let mut warned = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("AUTHENTICATION IS OFF") {
            warned = true;
        }
        if line.contains("batond listening") {
            break;
        }
    }
    drop(served);
    assert!(warned, "no warning before `batond listening`");

    // On loopback, no warning.
    let mut child = Command::new(BATOND)
        .env_clear()
        .env("BATON_DATA_DIR", dir.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _served = Served(child);
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        assert!(!line.contains("AUTHENTICATION IS OFF"), "{line}");
        if line.contains("batond listening") {
            break;
        }
    }
}

#[test]
fn a_second_batond_on_one_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Command::new(BATOND)
        .env_clear()
        .env("BATON_DATA_DIR", dir.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = Served(first);
    let stderr = first.0.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("batond listening") {
            break;
        }
    }
    let second = Command::new(BATOND)
        .env_clear()
        .env("BATON_DATA_DIR", dir.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is in use by another batond"), "{err}");
    // The keys command still works on the directory while it is served.
    ok(&batond(&[("BATON_DATA_DIR", dir.path().display().to_string())], &["keys", "list"]));
}

/// The status code of `GET path` on the admin port, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn migrate_says_what_it_migrated_and_never_creates_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    // No database and no data directory: nothing is created, and the error says why.
    let missing = dir.path().join("baton-data");
    let out = batond(&[], &["migrate", "--data-dir", &missing.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to migrate") && err.contains(&missing.display().to_string()), "{err}");
    assert!(!missing.exists(), "migrate created {}", missing.display());

    // An existing (empty) data directory: every migration is applied, and named; then none.
    std::fs::create_dir(&missing).unwrap();
    let first = ok(&batond(&[], &["migrate", "--data-dir", &missing.display().to_string()]));
    assert!(first.contains("the embedded store") && first.contains("applied") && first.contains("0001 "), "{first}");
    let again = ok(&batond(&[], &["migrate", "--data-dir", &missing.display().to_string()]));
    assert!(again.contains("nothing to apply"), "{again}");

    // PostgreSQL, the URL given after the subcommand: where it is, and the schema's version.
    if let Some(owner) = postgres_url() {
        let out = ok(&batond(&[], &["migrate", "--database-url", &owner]));
        assert!(out.contains("PostgreSQL at ") && out.contains("schema"), "{out}");
        assert!(!out.contains("baton:baton@"), "the password is never printed: {out}");
    }
}

#[test]
fn start_up_errors_say_what_is_wrong_and_where() {
    // Nothing listens on the port: refused at once, not after the pool's timeout.
    let port = free_port();
    let url = format!("postgres://baton:secret@127.0.0.1:{port}/baton");
    let started = Instant::now();
    let out = batond(&[("DATABASE_URL", url)], &["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("secret"), "the password is never printed: {err}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());

    // A database that does not exist is named as such.
    if let Some(owner) = postgres_url() {
        let (base, _) = owner.rsplit_once('/').unwrap();
        let url = format!("{base}/baton_no_such_database");
        let out = batond(&[("DATABASE_URL", url)], &["migrate"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("baton_no_such_database") && err.contains("does not exist"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_before_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, admin) = (free_port(), free_port());
    let child = Command::new(BATOND)
        .env_clear()
        .env("BATON_DATA_DIR", dir.path())
        .env("RUST_LOG", "info")
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--admin-addr",
            &format!("127.0.0.1:{admin}"),
            "--shutdown-drain-secs",
            "6",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut served = Served(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(admin, "/ready") != Some(200) {
        assert!(Instant::now() < deadline, "batond did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}")).unwrap().connect().await.unwrap();
    let mut ctx =
        pb::context_service_client::ContextServiceClient::with_interceptor(channel.clone(), Caller::new(None, None));
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = tonic_health::pb::HealthCheckRequest { service: String::new() };

    let term = Instant::now();
    let killed = Command::new("kill").args(["-TERM", &served.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    // Not ready well before the drain ends, while calls are still served, over old and new
    // connections. (The bounds leave room for a loaded machine: CI once took over a second
    // to see the first 503; what matters is that it comes early in the drain.)
    while http_status(admin, "/ready") != Some(503) {
        assert!(term.elapsed() < Duration::from_secs(3), "/ready still 200 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    while health.check(check.clone()).await.unwrap().into_inner().status != not_serving {
        assert!(term.elapsed() < Duration::from_secs(3), "health still SERVING after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    create_session(&mut ctx, "drain-a", "a").await;
    let fresh =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}")).unwrap().connect().await.unwrap();
    let mut fresh = pb::context_service_client::ContextServiceClient::with_interceptor(fresh, Caller::new(None, None));
    create_session(&mut fresh, "drain-b", "b").await;
    assert!(term.elapsed() < Duration::from_secs(6), "the checks above took the whole drain");
    // Then it shuts down on its own once the drain is over.
    let exit = tokio::task::spawn_blocking(move || {
        let status = served.0.wait().unwrap();
        (status, term.elapsed())
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "{:?}", exit.0);
    assert!(exit.1 >= Duration::from_millis(5900) && exit.1 < Duration::from_secs(15), "exited after {:?}", exit.1);
}
