//! The `jwtd` command line: parse arguments, run one subcommand, report
//! its failure and map it to an exit code. Everything else lives in the
//! library or `cli/`.
//!
//! Exit statuses of every subcommand: 0 success; 1 and 3 as each
//! subcommand documents (invalid, unreachable, not ready, could not
//! decide); 2 usage error; 64 bad `jwtd serve` configuration; 69 `jwtd
//! serve` configured but unable to start (`cli::EXIT_UNAVAILABLE`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::Failure;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let failure = match cli::run(args) {
        Ok(code) => return code,
        Err(failure) => failure,
    };
    match &failure {
        Failure::Usage(err) => {
            eprintln!("jwtd: {}", causes(err));
        }
        Failure::Config(problems) => {
            for p in problems {
                eprintln!("jwtd: config: {p}");
            }
            eprintln!(
                "jwtd: {} configuration problem(s); not starting",
                problems.len()
            );
        }
        Failure::Startup(err) => {
            // `serve` set up logging before anything could fail to start:
            // the failure goes to the log, in its format (text or JSON).
            let error = causes(err);
            if tracing::dispatcher::has_been_set() {
                tracing::error!(%error, "jwtd cannot start");
            } else {
                eprintln!("jwtd: cannot start: {error}");
            }
        }
    }
    ExitCode::from(failure.exit_code())
}

/// An error and its causes on one line, outermost first. A cause whose
/// text its parent already shows (errors that print their source, as I/O
/// wrappers often do) is not repeated.
fn causes(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
