//! The `jwtd` command line: parse arguments, run one subcommand, map the
//! result to an exit code. Everything else lives in the library or `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // One line per cause, first the outermost.
            eprintln!("jwtd: {err:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}
