//! Subcommands of the `jwtd` binary. Each module turns flags into library
//! calls and prints results; none holds verification logic of its own, so
//! `jwtd check` verifies exactly as the daemon will.

mod check;
mod keygen;
mod mint;

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Exit code for usage and configuration errors of the offline commands.
pub const EXIT_USAGE: u8 = 2;

/// jwtd: JWT verification sidecar.
#[derive(Debug, Parser)]
#[command(name = "jwtd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    match cli.command {
        Command::Check(args) => check::run(args),
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
    now.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// Parses a duration: `90`, `90s`, `500ms`, `15m`, `1h`, `7d`. A bare number
/// is seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        bail!("invalid duration {s:?}: expected a number with an optional unit (ms, s, m, h, d)");
    }
    let n: u64 = digits
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .with_context(|| format!("duration {s:?} is too large"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => bail!("invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"),
    }
}

/// Clap value parser for durations in whole seconds.
fn duration_secs(s: &str) -> Result<u64, String> {
    parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "s", "-1s", "1.5s", "10x", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
