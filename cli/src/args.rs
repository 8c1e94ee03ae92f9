//! The command line: global connection flags and one subcommand per view.

use std::path::PathBuf;
use std::time::Duration;

use baton_client::v1::{EntryKind, HandoffStatus, SessionStatus};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Inspect a running Baton: sessions, entries, search and handoffs, read through its gRPC API.
///
/// Output is aligned text for people; --json prints one JSON object per line (the proto3 JSON
/// mapping of the API's messages: lowerCamelCase names, enum names, 64-bit integers as strings,
/// RFC 3339 timestamps).
///
/// Exit codes: 0 success (and Ctrl-C ending tail or watch), 1 any other failure, 2 bad usage or
/// INVALID_ARGUMENT, 3 NOT_FOUND, 4 UNAVAILABLE or DEADLINE_EXCEEDED (the server cannot be
/// reached in time), 5 UNAUTHENTICATED or PERMISSION_DENIED.
#[derive(Debug, Parser)]
#[command(name = "batonctl", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach batond and how to print.
#[derive(Debug, Args)]
pub struct Global {
    /// batond's gRPC address: host:port, http://host:port or https://host:port.
    #[arg(long, global = true, env = "BATON_TARGET", default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, global = true, env = "BATON_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Tenant to read (sent as x-baton-tenant; only admin keys may name another tenant than
    /// their own).
    #[arg(long, global = true, env = "BATON_TENANT")]
    pub tenant: Option<String>,
    /// PEM CA certificate that batond's TLS certificate must chain to (besides the system's
    /// roots); turns TLS on.
    #[arg(long, global = true, env = "BATON_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The name batond's certificate is checked against (default: the target's host).
    #[arg(long, global = true, env = "BATON_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Deadline of each call, retries included (e.g. 500ms, 10s, 1m). Streams use it to open.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sessions: list them, or show one.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// A session's entries: list them, or show one in full.
    #[command(subcommand)]
    Entries(EntriesCommand),
    /// Follow a session's entries as they are appended, until Ctrl-C (reconnects across
    /// server restarts, without losing or repeating an entry).
    Tail(TailArgs),
    /// Full-text search over entries' text, best matches first.
    Search(SearchArgs),
    /// Handoffs: an agent's inbox, a filtered list, or one handoff.
    #[command(subcommand)]
    Handoffs(HandoffsCommand),
    /// Follow an agent's handoff events (WatchHandoffs) until Ctrl-C.
    Watch(WatchArgs),
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Sessions, newest first.
    List {
        /// Only sessions this agent created or owns.
        #[arg(long)]
        agent: Option<String>,
        /// Only sessions in this state.
        #[arg(long)]
        status: Option<SessionState>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One session: its fields, how many entries it holds, and its first and last entries.
    Show {
        session_key: String,
        /// How many of the first and of the last entries to show.
        #[arg(long, default_value_t = 3)]
        entries: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum EntriesCommand {
    /// Entries in sequence order (text shortened to one line).
    List {
        session_key: String,
        /// Only entries after this seq.
        #[arg(long)]
        after: Option<u64>,
        /// Only entries of these kinds (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        kind: Vec<Kind>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One entry in full: every field and the whole text.
    Show { session_key: String, seq: u64 },
}

#[derive(Debug, Args)]
pub struct TailArgs {
    pub session_key: String,
    /// Start at this seq (inclusive); default: the last --lines entries.
    #[arg(long, conflicts_with = "lines")]
    pub from: Option<u64>,
    /// How many existing entries to print before following (without --from).
    #[arg(short = 'n', long, default_value_t = 10)]
    pub lines: u64,
    /// Print each entry's whole text instead of one shortened line.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    pub query: String,
    /// Search one session only.
    #[arg(long)]
    pub session: Option<String>,
    /// At most this many hits (0: all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum HandoffsCommand {
    /// Handoffs addressed to an agent, newest first (pending ones unless --state says).
    Inbox {
        agent: String,
        #[arg(long, default_value = "pending")]
        state: HandoffState,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Handoffs filtered by agents, session and state, newest first.
    List {
        /// Addressed to this agent.
        #[arg(long)]
        to: Option<String>,
        /// Requested by this agent.
        #[arg(long)]
        from: Option<String>,
        /// On this session.
        #[arg(long)]
        session: Option<String>,
        #[arg(long, default_value = "any")]
        state: HandoffState,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One handoff in full, with its instructions and summary.
    Show { handoff_id: String },
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub agent: String,
    /// Resume after this cursor (default: the pending handoffs addressed to the agent, then
    /// live events).
    #[arg(long)]
    pub after: Option<u64>,
}

/// A session state filter.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SessionState {
    Active,
    Dormant,
    HandedOff,
    Closed,
    Expired,
}

impl From<SessionState> for SessionStatus {
    fn from(s: SessionState) -> Self {
        match s {
            SessionState::Active => SessionStatus::Active,
            SessionState::Dormant => SessionStatus::Dormant,
            SessionState::HandedOff => SessionStatus::HandedOff,
            SessionState::Closed => SessionStatus::Closed,
            SessionState::Expired => SessionStatus::Expired,
        }
    }
}

/// A handoff state filter; `any` lists every state.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HandoffState {
    Any,
    Pending,
    Accepted,
    Rejected,
    Completed,
    Cancelled,
    Expired,
}

impl From<HandoffState> for HandoffStatus {
    fn from(s: HandoffState) -> Self {
        match s {
            HandoffState::Any => HandoffStatus::Unspecified,
            HandoffState::Pending => HandoffStatus::Pending,
            HandoffState::Accepted => HandoffStatus::Accepted,
            HandoffState::Rejected => HandoffStatus::Rejected,
            HandoffState::Completed => HandoffStatus::Completed,
            HandoffState::Cancelled => HandoffStatus::Cancelled,
            HandoffState::Expired => HandoffStatus::Expired,
        }
    }
}

/// An entry kind filter.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Message,
    File,
    ToolCall,
    ToolResult,
    System,
    Summary,
}

impl From<Kind> for EntryKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Message => EntryKind::Message,
            Kind::File => EntryKind::File,
            Kind::ToolCall => EntryKind::ToolCall,
            Kind::ToolResult => EntryKind::ToolResult,
            Kind::System => EntryKind::System,
            Kind::Summary => EntryKind::Summary,
        }
    }
}

/// `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration such as 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s:?} must be a positive duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
