//! Subcommands of the `jwtd` binary. Each module turns flags into library
//! calls and prints results; none holds verification logic of its own, so
//! `jwtd check` verifies exactly as the daemon will.

mod bench;
mod check;
mod dpop;
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

/// Exit status for usage errors: bad flags or arguments, and the problems
/// of the offline commands' own settings (clap exits 2 too).
pub const EXIT_USAGE: u8 = 2;

/// Exit status when `jwtd serve` cannot start although its configuration
/// is valid: a socket or address that cannot be bound, a runtime, metrics
/// recorder or revocation store that cannot be set up. sysexits'
/// EX_UNAVAILABLE (69, "a service is unavailable"): what jwtd needs to
/// start is not there, and may be later (a predecessor still holds the
/// address, a directory is not mounted yet), so unlike a bad configuration
/// (64) a service manager may retry it. EX_OSERR (71) is narrower (fork,
/// pipe), EX_SOFTWARE (70) would mean a bug in jwtd.
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Why a subcommand stopped without its answer: data until `main` reports
/// it and picks the exit status ([`Failure::exit_code`]).
#[derive(Debug)]
pub enum Failure {
    /// Bad flags or arguments, or a problem of an offline command's own
    /// settings: exit 2.
    Usage(anyhow::Error),
    /// `jwtd serve`'s configuration is bad: every problem, each naming
    /// where its value came from; exit 64.
    Config(Vec<String>),
    /// `jwtd serve` is configured but cannot start: exit 69.
    Startup(anyhow::Error),
}

impl Failure {
    /// The exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Config(_) => jwtd::config::EXIT_CONFIG,
            Failure::Startup(_) => EXIT_UNAVAILABLE,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Usage(e)
    }
}

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
    /// Sign a DPoP proof for one request (development and tests).
    Dpop(dpop::Args),
    /// Generate a signing key and its public JWK set (development and tests).
    Keygen(keygen::Args),
}

/// Runs the parsed command line.
///
/// # Errors
///
/// See [`Failure`]: each kind has its exit status.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    // With no subcommand, jwtd serves as configured by JWTD_* variables (a
    // container's entry point); with no key source configured that stops
    // with exit 64 naming the settings that give keys: the development set
    // needs an explicit `--dev`.
    let command = cli
        .command
        .unwrap_or(Command::Serve(serve::Args::default()));
    match command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => Ok(verify::run(args)?),
        Command::Ping(args) => Ok(ping::run(args)?),
        Command::Revoke(args) => Ok(revoke::run(args)?),
        Command::Check(args) => Ok(check::run(args)?),
        Command::Bench(args) => Ok(bench::run(args)?),
        Command::Mint(args) => Ok(mint::run(args)?),
        Command::Dpop(args) => Ok(dpop::run(args)?),
        Command::Keygen(args) => Ok(keygen::run(args)?),
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

/// A private key file (`--key`, `--dpop-key`...), as `jwtd mint` reads
/// one; `flag` names it in errors.
fn signing_key(flag: &str, path: &std::path::Path) -> anyhow::Result<jwtd::sign::SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))?;
    jwtd::sign::SigningKey::from_file_contents(&text)
        .with_context(|| format!("{flag} {}", path.display()))
}

/// SHA-256 of the DER of the first certificate in a PEM or DER file (a
/// client certificate, RFC 8705's `x5t#S256`); `flag` names it in errors.
fn certificate_sha256(flag: &str, path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let bytes = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
    let der = match std::str::from_utf8(&bytes)
        .ok()
        .filter(|t| t.contains("-----BEGIN"))
    {
        Some(text) => jwtd::verify::pem::parse(text)
            .ok()
            .and_then(|blocks| blocks.into_iter().find(|b| b.label == "CERTIFICATE"))
            .map(|b| b.der)
            .with_context(|| format!("{flag} {}: no CERTIFICATE block", path.display()))?,
        None => bytes,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    Ok(<[u8; 32]>::try_from(digest.as_ref())?)
}

/// The current Unix time, or `--now`.
fn unix_now(now: Option<i64>) -> i64 {
    now.unwrap_or_else(jwtd::clock::unix_now)
}

/// Clap value parser for durations compared with token times: the
/// daemon's syntax (`30s`, `2m`, bare seconds), whole seconds only, as the
/// daemon's `leeway` and `max_lifetime` (`500ms` would silently be 0).
fn whole_seconds(s: &str) -> Result<u64, String> {
    jwtd::config::parse_whole_seconds(s)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::{Arg, CommandFactory};

    use super::*;

    /// Every subcommand, nested ones included, by its path (`bench run`).
    fn subcommands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name()).trim().to_owned();
            out.push((path.clone(), sub.clone()));
            subcommands(sub, &path, out);
        }
    }

    fn all_subcommands() -> Vec<(String, clap::Command)> {
        let mut out = Vec::new();
        let mut cli = Cli::command();
        cli.build();
        subcommands(&cli, "", &mut out);
        out
    }

    /// `jwtd serve`'s flags by long name.
    fn serve_flags() -> HashMap<String, Arg> {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        serve
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?.to_owned(), a.clone())))
            .collect()
    }

    /// The spellings the subcommands used before they took serve's, and
    /// serve's name for each.
    const OLD_SPELLINGS: [(&str, &str); 4] = [
        ("iss", "issuer"),
        ("aud", "audience"),
        ("jwks", "jwks-file"),
        ("prefix", "revocation-prefix"),
    ];

    #[test]
    fn flags_shared_with_serve_have_its_names_and_value_syntax() {
        let serve = serve_flags();
        let mut shared = 0;
        for (path, cmd) in all_subcommands() {
            if path == "serve" {
                continue;
            }
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if let Some((old, _)) = OLD_SPELLINGS.iter().find(|(old, _)| *old == long) {
                    panic!("jwtd {path} --{old}: the old spelling is the flag's name");
                }
                // An alias is an old spelling kept for scripts: hidden, and
                // of a flag named as serve names it.
                for alias in arg.get_all_aliases().unwrap_or_default() {
                    assert!(
                        OLD_SPELLINGS.contains(&(alias, long)),
                        "jwtd {path} --{long}: unexpected alias --{alias}"
                    );
                    assert!(
                        arg.get_visible_aliases().unwrap_or_default().is_empty(),
                        "jwtd {path} --{long}: old spellings stay hidden"
                    );
                }
                if let Some(theirs) = serve.get(long) {
                    shared += 1;
                    // A switch on both sides (clap's derive names the value
                    // of a bool flag, though it takes none).
                    let takes = |a: &clap::Arg| a.get_action().takes_values();
                    assert_eq!(
                        takes(arg),
                        takes(theirs),
                        "jwtd {path} --{long} takes a value as serve's does"
                    );
                    if !takes(arg) {
                        continue;
                    }
                    assert_eq!(
                        arg.get_value_names(),
                        theirs.get_value_names(),
                        "jwtd {path} --{long} takes the value serve's does"
                    );
                }
            }
        }
        // check's policy flags, verify's, ping's and revoke's --socket, ...
        assert!(shared >= 15, "{shared} shared flags");
    }

    #[test]
    fn every_duration_flag_reads_the_daemons_duration_syntax() {
        let mut checked = 0;
        for (path, cmd) in all_subcommands() {
            for arg in cmd.get_arguments() {
                let is_duration = arg
                    .get_value_names()
                    .is_some_and(|names| names.iter().any(|n| n == "DURATION"));
                if !is_duration {
                    continue;
                }
                checked += 1;
                // The flag alone, parsed by clap as it would be.
                let long = arg.get_long().expect("a long flag");
                let parse = |value: &str| {
                    clap::Command::new("t")
                        .arg(arg.clone().required(false))
                        .try_get_matches_from(["t", &format!("--{long}"), value])
                };
                for good in ["2m", "120", "120s"] {
                    assert!(parse(good).is_ok(), "jwtd {path} --{long} {good}");
                }
                // serve's flags are text until the configuration is
                // validated (the same parser, with every other problem).
                if path != "serve" {
                    assert!(parse("2 parsecs").is_err(), "jwtd {path} --{long}");
                }
            }
        }
        assert!(checked >= 20, "{checked} duration flags");
    }

    #[test]
    fn old_spellings_still_parse_as_serves_names() {
        for argv in [
            &["jwtd", "mint", "--key", "k", "--iss", "a", "--aud", "b"][..],
            &["jwtd", "check", "--jwks", "j.json", "--leeway", "2m", "t"],
            &[
                "jwtd",
                "keygen",
                "--alg",
                "ES256",
                "--private",
                "p",
                "--jwks",
                "j",
            ],
            &[
                "jwtd",
                "revoke",
                "--redis",
                "redis://x",
                "--jti",
                "j",
                "--exp",
                "1",
            ]
            .iter()
            .copied()
            .chain(["--issuer", "i", "--prefix", "p:"])
            .collect::<Vec<_>>(),
            &[
                "jwtd", "bench", "tokens", "--key", "k", "--iss", "a", "--aud", "b",
            ],
            &["jwtd", "bench", "crypto", "--jwks", "j", "--token", "t"],
        ] {
            let parsed = Cli::try_parse_from(argv);
            assert!(parsed.is_ok(), "{argv:?}: {}", parsed.unwrap_err());
        }
        let cli = Cli::try_parse_from(["jwtd", "mint", "--key", "k", "--iss", "a", "--aud", "b,c"])
            .expect("parses");
        let Some(Command::Mint(mint)) = cli.command else {
            panic!("mint")
        };
        assert_eq!(format!("{mint:?}").matches("\"a\"").count(), 1, "{mint:?}");
        assert!(
            format!("{mint:?}").contains(r#"audience: ["b", "c"]"#),
            "{mint:?}"
        );
    }

    #[test]
    fn serve_flags_are_the_settings_of_the_list() {
        let serve = serve_flags();
        for s in jwtd::config::SETTINGS {
            let arg = serve
                .get(s.flag)
                .unwrap_or_else(|| panic!("no --{} for {}", s.flag, s.key));
            assert_eq!(arg.get_id(), s.key);
            assert_eq!(arg.get_help_heading(), Some(s.topic.heading()), "{}", s.key);
        }
        // and nothing else but --config
        assert_eq!(serve.len(), jwtd::config::SETTINGS.len() + 1);
        // Values read from the command line land in their settings, lists
        // split at commas and repeatable.
        let cli = Cli::try_parse_from([
            "jwtd",
            "serve",
            "--dev",
            "--leeway",
            "10s",
            "--audience",
            "a,b",
            "--audience",
            "c",
            "--require=sub",
            "--claim-header",
            "x-a=a",
        ])
        .expect("parses");
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve")
        };
        let raw = format!("{args:?}");
        for expected in [
            r#"dev: Some("true")"#,
            r#"leeway: Some("10s")"#,
            r#"audiences: Some(["a", "b", "c"])"#,
            r#"required_claims: Some(["sub"])"#,
            r#"claim_headers: Some(["x-a=a"])"#,
            "socket: None",
        ] {
            assert!(raw.contains(expected), "{expected} in {raw}");
        }
    }

    #[test]
    fn failures_have_distinct_exit_statuses() {
        let usage = Failure::Usage(anyhow::anyhow!("x")).exit_code();
        let config = Failure::Config(vec![]).exit_code();
        let startup = Failure::Startup(anyhow::anyhow!("x")).exit_code();
        assert_eq!((usage, config, startup), (2, 64, 69));
    }
}
