//! Subcommands of the `jwtd` binary. Each module turns flags into library
//! calls and prints results; none holds verification logic of its own, so
//! `jwtd check` verifies exactly as the daemon will.

mod bench;
mod check;
mod keygen;
mod mint;
mod ping;
mod revoke;
mod serve;
mod verify;

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Exit code for usage and configuration errors of the offline commands.
pub const EXIT_USAGE: u8 = 2;

/// jwtd: JWT verification sidecar.
#[derive(Debug, Parser)]
#[command(name = "jwtd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon on a Unix socket (see `jwtd serve --help`; `jwtd
    /// serve --dev` tries it out on the embedded development key set).
    Serve(serve::Args),
    /// Ask a running daemon about one token.
    ///
    /// Prints one JSON object; exit status 0 valid, 1 invalid, 3 could not
    /// decide (daemon unreachable or without keys), 2 usage error.
    Verify(verify::Args),
    /// Is the daemon up and ready (every issuer has keys, none too stale)?
    ///
    /// Prints {"ready":true|false}; exit status 0 ready, 3 not ready,
    /// 1 unreachable. Fit for a Kubernetes exec probe.
    Ping(ping::Args),
    /// Revoke a token (by jti) or a subject's tokens: in Redis (announced to
    /// every sidecar), or through a daemon's socket.
    ///
    /// Prints {"revoked":KEY,...}; exit status 0 written, 1 Redis or the
    /// daemon unreachable or refusing, 2 usage error.
    Revoke(revoke::Args),
    /// Load generator and reference servers (echo, raw crypto).
    Bench(bench::Args),
    /// Verify one token offline, with the same core as the daemon.
    ///
    /// Prints one JSON object: {"valid":true,"alg":..,"kid":..,"claims":{..}}
    /// or {"valid":false,"reason":".."}. Exit status: 0 valid, 1 invalid,
    /// 2 usage or configuration error.
    Check(check::Args),
    /// Sign a token (development and tests).
    Mint(mint::Args),
    /// Generate a signing key and its public JWK set (development and tests).
    Keygen(keygen::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // With no subcommand, jwtd serves as configured by JWTD_* variables (a
    // container's entry point); with no key source configured that stops
    // with exit 64 naming the settings that give keys: the development set
    // needs an explicit `--dev`.
    let command = cli
        .command
        .unwrap_or(Command::Serve(serve::Args::default()));
    match command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Ping(args) => ping::run(args),
        Command::Revoke(args) => revoke::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Mint(args) => mint::run(args),
        Command::Keygen(args) => keygen::run(args),
    }
}

/// Reads a token argument: the text itself, or `-` for standard input (where
/// surrounding whitespace such as the trailing newline of `echo` is dropped;
/// a token never contains whitespace).
fn read_token(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg != "-" {
        return Ok(arg.as_bytes().to_vec());
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("reading the token from standard input")?;
    Ok(buf.trim_ascii().to_vec())
}

/// The current Unix time, or `--now`.
fn unix_now(now: Option<i64>) -> i64 {
    now.unwrap_or_else(jwtd::clock::unix_now)
}

/// Clap value parser for durations in whole seconds.
fn duration_secs(s: &str) -> Result<u64, String> {
    jwtd::config::parse_duration(s).map(|d| d.as_secs())
}
