//! The `batonctl` binary as a person runs it, against a real `batond` (baton-testkit, API keys
//! on) on the embedded store and on PostgreSQL: every command's text and `--json` output checked
//! against data the test wrote with the Rust client, `tail` and `watch` receiving what is written
//! while they run (and `tail` carrying on across a server restart), and the exit codes of
//! failures.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use baton_client::Client;
use baton_client::v1::{
    self, AcceptHandoffRequest, AppendEntriesRequest, CreateSessionRequest, EntryKind, NewEntry, RequestHandoffRequest,
};
use baton_server::auth::KeySpec;
use baton_server::auth::keys::Hasher;
use baton_server::clock::{Clock, SystemClock};
use baton_server::domain::principal::Role;
use baton_server::store::Store;
use baton_testkit::{Backend, Server};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

const BATONCTL: &str = env!("CARGO_BIN_EXE_batonctl");
/// How long a followed line may take to show up.
const LINE_WAIT: Duration = Duration::from_secs(20);

/// Runs each test once per backend; PostgreSQL's tests fail when its variables are missing
/// (see `baton_testkit::service`).
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(baton_testkit::Backend::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if baton_testkit::Backend::Postgres.available() {
                    super::$name(baton_testkit::Backend::Postgres).await
                }
            })+
        }
    };
}

backend_tests!(
    sessions_list_and_show,
    entries_list_and_show,
    search_finds_entries,
    handoffs_inbox_and_show,
    tail_follows_appends,
    watch_follows_handoff_events,
    failures_have_their_exit_codes,
);

/// A server, a tenant, a writer client for the test's data and a reader key for batonctl.
struct Fixture {
    server: Server,
    tenant: String,
    reader: String,
    client: Client,
}

async fn start(backend: Backend) -> Fixture {
    let server = Server::start(backend, Arc::new(SystemClock), |_| {}).await.expect("the backend's services");
    let tenant = baton_testkit::tenant();
    let writer = server.key(&tenant, Role::Writer, None).await;
    let reader = server.key(&tenant, Role::Reader, None).await;
    let client = Client::builder(server.endpoint()).api_key(writer).connect().await.expect("connect");
    Fixture { server, tenant, reader, client }
}

impl Fixture {
    /// batonctl with the reader key and the server's address in the environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BATONCTL);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BATON_TARGET", self.server.endpoint())
            .env("BATON_API_KEY", &self.reader)
            .args(args);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("run batonctl")).await.unwrap()
    }

    /// stdout of a command that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "batonctl {args:?} failed: {}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// The JSON lines of a `--json` command that must succeed.
    async fn json(&self, args: &[&str]) -> Vec<Value> {
        let args: Vec<&str> = std::iter::once("--json").chain(args.iter().copied()).collect();
        json_lines(&self.ok(&args).await)
    }

    async fn session(&self, key: &str, agent: &str, metadata: Option<prost_types::Struct>) {
        let request =
            CreateSessionRequest { session_key: key.into(), agent: agent.into(), metadata, ..Default::default() };
        self.client.create_session(request).await.expect("create a session");
    }

    async fn append(&self, key: &str, entries: Vec<NewEntry>) {
        let request = AppendEntriesRequest { session_key: key.into(), entries, ..Default::default() };
        self.client.append_entries(request).await.expect("append");
    }

    async fn handoff(&self, key: &str, from: &str, to: &str, instructions: &str) -> v1::Handoff {
        let request = RequestHandoffRequest {
            session_key: key.into(),
            from_agent: from.into(),
            to_agent: to.into(),
            r#type: v1::HandoffType::ContextTransfer.into(),
            instructions: instructions.into(),
            ..Default::default()
        };
        self.client.request_handoff(request).await.expect("request a handoff")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect()
}

fn message(author: &str, text: &str) -> NewEntry {
    NewEntry {
        kind: EntryKind::Message.into(),
        role: "assistant".into(),
        author: author.into(),
        content: Some(v1::new_entry::Content::Text(text.into())),
        ..Default::default()
    }
}

fn numbered(author: &str, from: u64, to: u64) -> Vec<NewEntry> {
    (from..=to).map(|i| message(author, &format!("note {i}"))).collect()
}

fn metadata(key: &str, value: &str) -> prost_types::Struct {
    let value = prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(value.into())) };
    prost_types::Struct { fields: [(key.to_owned(), value)].into() }
}

/// The rows of a table whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

/// Every row of a table has the cell of column `name` starting where the header's name does.
fn assert_aligned(table: &str, name: &str) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let at = header.find(name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    for line in lines {
        let before: String = line.chars().take(at).collect();
        assert!(before.ends_with("  "), "column {name} is not aligned in {line:?}\n{table}");
        let cell = line.chars().nth(at);
        assert!(cell.is_some_and(|c| !c.is_whitespace()), "column {name} does not start at {at} in {line:?}\n{table}");
    }
}

async fn sessions_list_and_show(backend: Backend) {
    let f = start(backend).await;
    f.session("alpha", "planner", Some(metadata("ticket", "T-1"))).await;
    f.append("alpha", numbered("planner", 1, 7)).await;
    f.session("beta-session", "coder", None).await;

    let table = f.ok(&["sessions", "list"]).await;
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.starts_with("SESSION "), "{table}");
    let alpha = row(&table, "alpha");
    assert!(alpha.contains("active") && alpha.contains("planner") && alpha.contains(" 7 "), "{alpha}");
    for column in ["STATUS", "OWNER", "LAST SEQ", "LAST ACTIVITY", "CREATED"] {
        assert_aligned(&table, column);
    }
    // RFC 3339 times, to the second.
    let created = alpha.split_whitespace().last().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z') && &created[10..11] == "T", "{created}");

    // Newest first; one JSON object per line, proto3 JSON names and values.
    let all = f.json(&["sessions", "list"]).await;
    let keys: Vec<&str> = all.iter().map(|s| s["sessionKey"].as_str().unwrap()).collect();
    assert_eq!(keys, ["beta-session", "alpha"]);
    assert_eq!(all[1]["lastSeq"], "7");
    assert_eq!(all[1]["status"], "SESSION_STATUS_ACTIVE");
    assert_eq!(all[1]["tenant"], f.tenant.as_str());
    assert_eq!(all[1]["metadata"], serde_json::json!({"ticket": "T-1"}));
    let coder = f.json(&["sessions", "list", "--agent", "coder"]).await;
    assert_eq!(coder.len(), 1);
    assert_eq!(coder[0]["sessionKey"], "beta-session");
    assert_eq!(f.json(&["sessions", "list", "--limit", "1"]).await.len(), 1);
    assert!(f.json(&["sessions", "list", "--status", "closed"]).await.is_empty());

    // show: the fields, the count, the first and last entries around the ones left out.
    let shown = f.ok(&["sessions", "show", "alpha", "--entries", "2"]).await;
    for expected in
        ["session        alpha", "owner          planner", "entries        7 (seq 1 to 7)", r#"{"ticket":"T-1"}"#]
    {
        assert!(shown.contains(expected), "{expected:?} missing from\n{shown}");
    }
    let seqs: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("SEQ"))
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(seqs, ["1", "2", "…", "6", "7"], "{shown}");
    assert!(shown.contains("(3 more; batonctl entries list alpha)"), "{shown}");

    let shown = f.json(&["sessions", "show", "alpha", "--entries", "3"]).await;
    assert_eq!(shown.len(), 1);
    let seqs = |list: &Value| {
        list.as_array().unwrap().iter().map(|e| e["seq"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(shown[0]["entryCount"], 7);
    assert_eq!(shown[0]["session"]["sessionKey"], "alpha");
    assert_eq!(seqs(&shown[0]["firstEntries"]), ["1", "2", "3"]);
    assert_eq!(seqs(&shown[0]["lastEntries"]), ["5", "6", "7"]);
    // Few entries: all of them, once.
    let small = f.json(&["sessions", "show", "alpha", "--entries", "5"]).await;
    assert_eq!(seqs(&small[0]["firstEntries"]), ["1", "2", "3", "4", "5"]);
    assert_eq!(seqs(&small[0]["lastEntries"]), ["6", "7"]);
    let empty = f.ok(&["sessions", "show", "beta-session"]).await;
    assert!(empty.contains("entries        0\n") && !empty.contains("SEQ"), "{empty}");
    f.server.shutdown().await;
}

async fn entries_list_and_show(backend: Backend) {
    let f = start(backend).await;
    f.session("s1", "planner", None).await;
    let long = format!("First line of a long plan\n\twith a tab and {}", "many words ".repeat(20));
    let image = NewEntry {
        kind: EntryKind::File.into(),
        author: "planner".into(),
        content: Some(v1::new_entry::Content::Data(vec![0x89, b'P', b'N', b'G'])),
        media_type: "image/png".into(),
        ..Default::default()
    };
    let mut tool = message("coder", "ls -la");
    tool.kind = EntryKind::ToolCall.into();
    tool.metadata = Some(metadata("tool", "shell"));
    f.append("s1", vec![message("planner", "hello"), message("planner", &long), image, tool]).await;

    let table = f.ok(&["entries", "list", "s1"]).await;
    assert_eq!(table.lines().count(), 5, "{table}");
    for column in ["TIME", "KIND", "ROLE", "AUTHOR", "TOKENS", "TEXT"] {
        assert_aligned(&table, column);
    }
    let second = row(&table, "2");
    assert!(second.contains("First line of a long plan with a tab and many words"), "{second}");
    assert!(second.ends_with('…'), "long text is cut: {second}");
    assert!(row(&table, "3").contains("<4 bytes of image/png>"), "{table}");
    let fourth = row(&table, "4");
    assert!(fourth.contains("tool_call") && fourth.contains("coder") && fourth.ends_with("ls -la"), "{fourth}");

    let page = f.json(&["entries", "list", "s1", "--after", "1", "--limit", "2"]).await;
    let seqs: Vec<&str> = page.iter().map(|e| e["seq"].as_str().unwrap()).collect();
    assert_eq!(seqs, ["2", "3"]);
    assert_eq!(page[0]["text"], long.as_str());
    assert_eq!(page[1]["data"], "iVBORw==");
    assert_eq!(page[1]["mediaType"], "image/png");
    assert_eq!(page[1]["kind"], "ENTRY_KIND_FILE");
    let tools = f.json(&["entries", "list", "s1", "--kind", "tool-call"]).await;
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["metadata"], serde_json::json!({"tool": "shell"}));

    // show: the whole text, as written.
    let shown = f.ok(&["entries", "show", "s1", "2"]).await;
    assert!(shown.contains("seq              2\n") && shown.contains("kind             message"), "{shown}");
    assert!(shown.ends_with(&format!("\n\n{long}\n")), "{shown}");
    let tool = f.ok(&["entries", "show", "s1", "4"]).await;
    assert!(tool.contains(r#"metadata         {"tool":"shell"}"#), "{tool}");
    let json = f.json(&["entries", "show", "s1", "4"]).await;
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["seq"], "4");
    assert_eq!(json[0]["author"], "coder");
    f.server.shutdown().await;
}

async fn search_finds_entries(backend: Backend) {
    let f = start(backend).await;
    f.session("notes", "planner", None).await;
    f.session("other", "planner", None).await;
    f.append("notes", vec![message("planner", "the zebra crossing is closed"), message("planner", "nothing here")])
        .await;
    f.append("other", vec![message("coder", "a zebra in the other session")]).await;

    let table = f.ok(&["search", "zebra"]).await;
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.starts_with("SCORE "), "{table}");
    assert_aligned(&table, "SNIPPET");
    assert!(table.contains("[zebra]"), "matches are marked: {table}");
    for line in table.lines().skip(1) {
        let score: f64 = line.split_whitespace().next().unwrap().parse().unwrap();
        assert!(score > 0.0, "a score however small shows: {line}");
    }

    let hits = f.json(&["search", "zebra", "--session", "notes"]).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["entry"]["sessionKey"], "notes");
    assert_eq!(hits[0]["entry"]["seq"], "1");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("[zebra]"), "{}", hits[0]);
    assert!(hits[0]["score"].is_number());
    assert_eq!(f.json(&["search", "zebra", "--limit", "1"]).await.len(), 1);
    assert!(f.json(&["search", "okapi"]).await.is_empty());
    f.server.shutdown().await;
}

async fn handoffs_inbox_and_show(backend: Backend) {
    let f = start(backend).await;
    f.session("work", "planner", None).await;
    f.append("work", vec![message("planner", "Plan: fetch the data, then summarise it")]).await;
    let first = f.handoff("work", "planner", "coder", "Implement the fetcher.\nThen the tests.").await;
    let second = f.handoff("work", "planner", "coder", "Review it.").await;
    f.handoff("work", "planner", "reviewer", "Not for coder.").await;
    f.client
        .accept_handoff(AcceptHandoffRequest { handoff_id: second.handoff_id.clone(), agent: "coder".into() })
        .await
        .expect("accept");

    // The inbox: pending handoffs addressed to the agent.
    let inbox = f.ok(&["handoffs", "inbox", "coder"]).await;
    assert_eq!(inbox.lines().count(), 2, "{inbox}");
    let line = row(&inbox, &first.handoff_id);
    assert!(line.contains("pending") && line.contains("context_transfer") && line.contains("planner"), "{line}");
    for column in ["STATUS", "TYPE", "SESSION", "FROM", "TO", "UP TO", "CREATED", "DEADLINE"] {
        assert_aligned(&inbox, column);
    }
    let accepted = f.json(&["handoffs", "inbox", "coder", "--state", "accepted"]).await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["handoffId"], second.handoff_id.as_str());
    assert_eq!(accepted[0]["status"], "HANDOFF_STATUS_ACCEPTED");
    assert_eq!(f.json(&["handoffs", "inbox", "coder", "--state", "any"]).await.len(), 2);
    assert_eq!(f.json(&["handoffs", "list", "--session", "work"]).await.len(), 3);
    assert_eq!(f.json(&["handoffs", "list", "--to", "reviewer"]).await.len(), 1);

    let shown = f.ok(&["handoffs", "show", &first.handoff_id]).await;
    for expected in [
        format!("handoff       {}", first.handoff_id),
        "status        pending".into(),
        "up to seq     1".into(),
        "instructions:\n    Implement the fetcher.\n    Then the tests.\n".into(),
        "summary:\n    ".into(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} missing from\n{shown}");
    }
    let json = f.json(&["handoffs", "show", &first.handoff_id]).await;
    assert_eq!(json[0]["instructions"], "Implement the fetcher.\nThen the tests.");
    assert_eq!(json[0]["upToSeq"], "1");
    assert_eq!(json[0]["summary"], first.summary.as_str());
    f.server.shutdown().await;
}

/// A batonctl left running, its stdout lines arriving on a channel.
struct Followed {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Followed {
    fn spawn(mut cmd: Command) -> Followed {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn batonctl");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Followed { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(LINE_WAIT, self.lines.recv())
            .await
            .expect("a followed line in time")
            .expect("batonctl is still running")
    }

    async fn lines(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.line().await);
        }
        out
    }

    /// Ctrl-C: batonctl stops following and exits 0, having printed nothing more.
    async fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
        assert!(killed.success());
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
        assert_eq!(status.code(), Some(0), "Ctrl-C ends batonctl with 0");
        assert_eq!(self.lines.recv().await, None, "nothing more after the interrupt");
    }
}

fn seq_of(line: &str) -> u64 {
    line.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no seq in {line:?}"))
}

async fn tail_follows_appends(backend: Backend) {
    let f = start(backend).await;
    f.session("live", "planner", None).await;
    f.append("live", numbered("planner", 1, 5)).await;

    // Default: the last lines (-n), then what is appended while it runs.
    let mut tail = Followed::spawn(f.command(&["tail", "live", "-n", "2"]));
    let replayed = tail.lines(2).await;
    assert_eq!(replayed.iter().map(|l| seq_of(l)).collect::<Vec<_>>(), [4, 5], "{replayed:?}");
    assert!(replayed[1].ends_with("message      assistant  planner  note 5"), "{}", replayed[1]);
    f.append("live", numbered("planner", 6, 7)).await;
    f.append("live", vec![message("coder", "line one\nline two")]).await;
    let live = tail.lines(3).await;
    assert_eq!(live.iter().map(|l| seq_of(l)).collect::<Vec<_>>(), [6, 7, 8], "{live:?}");
    assert!(live[2].ends_with("coder  line one line two"), "one line per entry: {}", live[2]);
    tail.interrupt().await;

    // --json --from: every entry from that seq, one object per line; --full keeps newlines.
    let mut json = Followed::spawn(f.command(&["--json", "tail", "live", "--from", "7"]));
    let first: Vec<Value> = json.lines(2).await.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(first[0]["seq"], "7");
    assert_eq!(first[1]["text"], "line one\nline two");
    f.append("live", vec![message("planner", "after")]).await;
    let next: Value = serde_json::from_str(&json.line().await).unwrap();
    assert_eq!((next["seq"].as_str(), next["text"].as_str()), (Some("9"), Some("after")));
    json.interrupt().await;

    let mut full = Followed::spawn(f.command(&["tail", "live", "--from", "8", "--full"]));
    let lines = full.lines(5).await;
    assert!(lines[0].ends_with("coder") && seq_of(&lines[0]) == 8, "{lines:?}");
    assert_eq!(lines[1..3], ["    line one", "    line two"]);
    assert!(lines[3].ends_with("planner") && seq_of(&lines[3]) == 9, "{lines:?}");
    assert_eq!(lines[4], "    after");
    full.interrupt().await;
    f.server.shutdown().await;
}

async fn watch_follows_handoff_events(backend: Backend) {
    let f = start(backend).await;
    f.session("w", "planner", None).await;
    let waiting = f.handoff("w", "planner", "coder", "already waiting").await;

    let mut watch = Followed::spawn(f.command(&["--json", "watch", "coder"]));
    let event: Value = serde_json::from_str(&watch.line().await).unwrap();
    assert_eq!(event["type"], "HANDOFF_EVENT_TYPE_CREATED");
    assert_eq!(event["handoff"]["handoffId"], waiting.handoff_id.as_str());
    let new = f.handoff("w", "planner", "coder", "new work").await;
    f.client
        .accept_handoff(AcceptHandoffRequest { handoff_id: new.handoff_id.clone(), agent: "coder".into() })
        .await
        .expect("accept");
    let events: Vec<Value> = watch.lines(2).await.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events[0]["type"], "HANDOFF_EVENT_TYPE_CREATED");
    assert_eq!(events[1]["type"], "HANDOFF_EVENT_TYPE_ACCEPTED");
    assert_eq!(events[1]["handoff"]["handoffId"], new.handoff_id.as_str());
    assert_eq!(events[1]["handoff"]["status"], "HANDOFF_STATUS_ACCEPTED");
    let cursor = events[1]["cursor"].as_str().unwrap().to_owned();
    watch.interrupt().await;

    // The text form, resuming after a cursor.
    let mut watch = Followed::spawn(f.command(&["watch", "coder", "--after", &cursor]));
    f.handoff("w", "planner", "coder", "third").await;
    let line = watch.line().await;
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[1], "created", "{line}");
    assert_eq!(&cells[4..7], ["planner", "->", "coder"], "{line}");
    assert_eq!(cells[7], "pending", "{line}");
    assert!(cells[0].parse::<u64>().unwrap() > cursor.parse().unwrap(), "{line}");
    watch.interrupt().await;
    f.server.shutdown().await;
}

async fn failures_have_their_exit_codes(backend: Backend) {
    let f = start(backend).await;
    f.session("here", "planner", None).await;
    let failing = |out: &Output, code: i32, expected: &str| {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
        assert!(stderr.contains(expected), "{expected:?} missing from stderr: {stderr}");
        assert!(out.stdout.is_empty(), "nothing on stdout: {}", text(&out.stdout));
    };

    for args in [
        &["sessions", "show", "nope"][..],
        &["entries", "list", "nope"],
        &["tail", "nope"],
        &["--json", "tail", "nope", "--from", "1"],
    ] {
        failing(&f.run(args).await, 3, "batonctl: NOT_FOUND: ");
    }
    failing(&f.run(&["entries", "show", "here", "1"]).await, 3, "NOT_FOUND: session \"here\" has no entry 1");
    failing(&f.run(&["handoffs", "show", "00000000-0000-0000-0000-000000000000"]).await, 3, "NOT_FOUND");

    let mut bad_key = f.command(&["sessions", "list"]);
    bad_key.env("BATON_API_KEY", "bk_live_0000_not-a-key");
    let out = tokio::task::spawn_blocking(move || bad_key.output().unwrap()).await.unwrap();
    failing(&out, 5, "batonctl: UNAUTHENTICATED: ");
    let mut no_key = f.command(&["sessions", "list"]);
    no_key.env_remove("BATON_API_KEY");
    let out = tokio::task::spawn_blocking(move || no_key.output().unwrap()).await.unwrap();
    failing(&out, 5, "UNAUTHENTICATED");
    // A reader key of one tenant naming another: PERMISSION_DENIED.
    failing(&f.run(&["--tenant", "someone-else", "sessions", "list"]).await, 5, "PERMISSION_DENIED");

    // The server refuses the input: INVALID_ARGUMENT with its field violations.
    let out = f.run(&["search", ""]).await;
    failing(&out, 2, "batonctl: INVALID_ARGUMENT: ");
    assert!(text(&out.stderr).lines().any(|l| l.starts_with("  query: ")), "{}", text(&out.stderr));

    // Bad usage, before any call.
    let out = f.run(&["sessions", "frobnicate"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = f.run(&["--timeout", "soon", "sessions", "list"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = f.run(&["--target", &closed.to_string(), "--timeout", "2s", "sessions", "list"]).await;
    failing(&out, 4, "batonctl: UNAVAILABLE: ");
    f.server.shutdown().await;
}

/// `tail` across a server restart on the same address: the entries appended before, during
/// the reconnection and after arrive once each, in order, and batonctl says it reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_resumes_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = baton_testkit::open_store(Backend::Sqlite, dir.path()).await.unwrap();
    let tenant = baton_testkit::tenant();
    let config = baton_testkit::config();
    let hasher = Hasher::new(config.key_pepper.as_deref());
    let issue = |role| {
        let spec = KeySpec { tenant: tenant.clone(), role, agent: None, name: "cli".into(), expires_in: None };
        baton_server::auth::issue(&*store, &hasher, spec, SystemClock.now())
    };
    let (writer, reader) = (issue(Role::Writer).await.unwrap().token, issue(Role::Reader).await.unwrap().token);

    let first = serve(Arc::clone(&store), "127.0.0.1:0".parse().unwrap()).await;
    let addr = first.addr;
    let endpoint = format!("http://{addr}");
    let client = Client::builder(&endpoint).api_key(writer).connect_lazy().unwrap();
    let append = |entries| {
        let request = AppendEntriesRequest { session_key: "r".into(), entries, ..Default::default() };
        let client = client.clone();
        async move { client.append_entries(request).await.expect("append") }
    };
    client
        .create_session(CreateSessionRequest { session_key: "r".into(), agent: "planner".into(), ..Default::default() })
        .await
        .unwrap();
    append(numbered("planner", 1, 3)).await;

    let mut cmd = Command::new(BATONCTL);
    cmd.env_clear().args(["--target", &endpoint, "--api-key", &reader, "tail", "r", "--from", "1"]);
    let stderr = dir.path().join("tail.stderr");
    cmd.stderr(std::fs::File::create(&stderr).unwrap());
    let mut tail = Followed::spawn(cmd);
    assert_eq!(tail.lines(3).await.iter().map(|l| seq_of(l)).collect::<Vec<_>>(), [1, 2, 3]);

    first.stop().await;
    // Down for longer than the client's own retries (about 1.5 s each time the stream is
    // opened): batonctl keeps reopening it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let second = serve(Arc::clone(&store), addr).await;
    append(numbered("planner", 4, 6)).await;
    let after: Vec<u64> = tail.lines(3).await.iter().map(|l| seq_of(l)).collect();
    assert_eq!(after, [4, 5, 6], "each entry once, in order, after the restart");
    tail.interrupt().await;
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert!(said.contains("batonctl: the stream broke (UNAVAILABLE: "), "{said}");
    assert!(said.contains("batonctl: still unreachable (UNAVAILABLE: "), "{said}");
    assert!(said.ends_with("batonctl: reconnected\n"), "{said}");
    second.stop().await;
}

/// A batond serving `store` on `addr` (the same address again after a restart).
struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(store: Arc<dyn Store>, addr: SocketAddr) -> Served {
    let grpc = tokio::net::TcpListener::bind(addr).await.expect("bind gRPC");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let addr = grpc.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel();
    let listeners = baton_server::Listeners { grpc, admin };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let started = move |_| {
            let _ = started_tx.send(());
        };
        baton_server::serve(baton_testkit::config(), store, Arc::new(SystemClock), listeners, shutdown, started)
            .await
            .expect("batond");
    });
    started.await.expect("batond started");
    Served { addr, stop, task }
}

impl Served {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// `--tls-ca` (and `--tls-server-name`) against a batond serving TLS with a private CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let authority = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, ca) = authority("batonctl test CA");
    let (other_pem, _) = authority("another CA");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&server_key, &ca).unwrap();
    let (ca, other) = (write("ca.pem", ca_pem), write("other.pem", other_pem));
    let (cert, key) = (write("server.pem", server_cert.pem()), write("server.key", server_key.serialize_pem()));

    let server = Server::start(Backend::Sqlite, Arc::new(SystemClock), |c| {
        c.tls_cert = Some(cert.into());
        c.tls_key = Some(key.into());
    })
    .await
    .unwrap();
    let tenant = baton_testkit::tenant();
    let writer = server.key(&tenant, Role::Writer, None).await;
    let reader = server.key(&tenant, Role::Reader, None).await;
    let port = server.addr.port();
    let client = Client::builder(format!("https://localhost:{port}"))
        .ca_certificate(std::fs::read(&ca).unwrap())
        .api_key(writer)
        .connect()
        .await
        .unwrap();
    let request = CreateSessionRequest { session_key: "secure".into(), agent: "planner".into(), ..Default::default() };
    client.create_session(request).await.unwrap();

    let run = |target: String, tls: Vec<String>| {
        let mut cmd = Command::new(BATONCTL);
        cmd.env_clear().env("BATON_API_KEY", &reader).args(["--target", &target]).args(tls).args(["sessions", "list"]);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let localhost = format!("https://localhost:{port}");
    let by_ip = format!("https://127.0.0.1:{port}");
    let flags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (target, tls) in [
        (localhost.clone(), flags(&["--tls-ca", &ca])),
        (by_ip.clone(), flags(&["--tls-ca", &ca, "--tls-server-name", "localhost"])),
    ] {
        let out = run(target.clone(), tls.clone()).await.unwrap();
        assert!(out.status.success(), "{target} {tls:?}: {}", text(&out.stderr));
        assert!(row(&text(&out.stdout), "secure").contains("planner"));
    }
    // A certificate that does not chain to the given CA, or names another host.
    for (target, tls) in [(localhost.clone(), flags(&["--tls-ca", &other])), (by_ip, flags(&["--tls-ca", &ca]))] {
        let out = run(target.clone(), tls.clone()).await.unwrap();
        assert_eq!(out.status.code(), Some(4), "{target} {tls:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("batonctl: UNAVAILABLE: ") && out.stdout.is_empty());
    }
    let out = run(localhost, flags(&["--tls-ca", "/nonexistent/ca.pem"])).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the --tls-ca file /nonexistent/ca.pem"), "{}", text(&out.stderr));
    server.shutdown().await;
}
