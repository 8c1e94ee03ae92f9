//! `batonctl`: parses the command line and runs it (see the `baton_cli` library).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = baton_cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("batonctl: cannot start the async runtime: {e}");
            return ExitCode::from(baton_cli::exit::OTHER);
        }
    };
    runtime.block_on(baton_cli::run(cli, &mut std::io::stdout().lock()))
}
