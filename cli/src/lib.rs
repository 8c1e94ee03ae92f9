//! `batonctl`: a person's view of a running Baton, read through the same gRPC API as every
//! client, with the Rust client `baton-client` (retries, resuming streams, one error type).
//!
//! - [`args`]: the command line (clap): global connection flags, one subcommand per view.
//! - `commands`: connects, runs the calls of a subcommand (paging through lists) and prints.
//! - `follow`: `tail` and `watch`, streams followed until Ctrl-C that reopen after the last
//!   seq or cursor whenever the server goes away, however long it stays away.
//! - `render`: the human format (tables, label/value blocks); `json`: `--json`, the proto3
//!   JSON mapping of the messages through the API's descriptors.
//!
//! A call's failure becomes a line on stderr (code name, message, field violations) and an
//! exit code per gRPC code ([`exit_code`]).

pub mod args;
mod commands;
mod follow;
mod json;
mod render;

use std::io::{self, Write};
use std::process::ExitCode;

use baton_client::Code;

pub use args::Cli;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// A call failed (or the client could not be configured).
    Api(baton_client::Error),
    /// Something the server holds no record of, found out by the command itself (an entry seq
    /// past the end).
    NotFound(String),
    /// A flag's value cannot be used (an unreadable --tls-ca file).
    Usage(String),
    /// Writing the output failed.
    Io(io::Error),
}

impl From<baton_client::Error> for Failure {
    fn from(e: baton_client::Error) -> Self {
        Failure::Api(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// Exit codes: success, then one per kind of failure a script may want to tell apart.
pub mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    /// Bad usage: clap's own code, and INVALID_ARGUMENT (the server refused what was given).
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    /// The server could not be reached, or did not answer in time.
    pub const UNAVAILABLE: u8 = 4;
    /// The API key is missing, unknown or not allowed to read this.
    pub const DENIED: u8 = 5;
}

/// The exit code of a failed call with this gRPC code.
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::Ok => exit::OK,
        Code::InvalidArgument => exit::USAGE,
        Code::NotFound => exit::NOT_FOUND,
        Code::Unavailable | Code::DeadlineExceeded => exit::UNAVAILABLE,
        Code::Unauthenticated | Code::PermissionDenied => exit::DENIED,
        _ => exit::OTHER,
    }
}

/// Runs the command, printing to `out`; failures are reported on stderr and become the exit
/// code. A closed stdout (`batonctl ... | head`) ends the command quietly.
pub async fn run(cli: Cli, out: &mut impl Write) -> ExitCode {
    let result = commands::execute(cli, out).await;
    let code = match result {
        Ok(()) => exit::OK,
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(failure) => {
            report(&failure);
            match &failure {
                Failure::Api(e) => exit_code(e.code()),
                Failure::NotFound(_) => exit::NOT_FOUND,
                Failure::Usage(_) => exit::USAGE,
                Failure::Io(_) => exit::OTHER,
            }
        }
    };
    let _ = out.flush();
    ExitCode::from(code)
}

/// One line per failure on stderr, `batonctl: CODE: message`, then one per field violation.
fn report(failure: &Failure) {
    let mut err = io::stderr().lock();
    let _ = match failure {
        Failure::Api(e) => {
            let _ = writeln!(err, "batonctl: {}: {}", e.code_name(), e.message());
            e.field_violations().iter().try_for_each(|(field, description)| writeln!(err, "  {field}: {description}"))
        }
        Failure::NotFound(message) => writeln!(err, "batonctl: NOT_FOUND: {message}"),
        Failure::Usage(message) => writeln!(err, "batonctl: {message}"),
        Failure::Io(e) => writeln!(err, "batonctl: cannot write the output: {e}"),
    };
}
