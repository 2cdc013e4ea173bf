//! `jwtd revoke`: put a token (by `jti`) or every token of a subject issued
//! before a time on the revocation list: straight into Redis (and announce
//! it to every sidecar), or through a running daemon's socket (the native
//! REVOKE op: its in-memory store, or its Redis). Key layout:
//! `docs/revocation.md`.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use jwtd::client::Client;
use jwtd::protocol::Reply;
use jwtd::revocation::{self, Revoke};

/// Flags of `jwtd revoke`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["jti", "sub"])))]
#[command(group(clap::ArgGroup::new("to").required(true).args(["redis", "socket"])))]
pub struct Args {
    /// Redis: a redis:// URL, or cluster nodes (repeatable or comma-separated).
    #[arg(long, value_name = "URL", value_delimiter = ',', env = "JWTD_REDIS")]
    redis: Vec<String>,
    /// Instead of Redis: a running daemon's socket (it writes to its own
    /// store, in-memory or Redis).
    #[arg(long, value_name = "PATH")]
    socket: Option<String>,
    /// Revoke the token with this jti (with --exp).
    #[arg(long, value_name = "ID", requires = "exp")]
    jti: Option<String>,
    /// The token's exp (Unix seconds): the revocation expires 300 s after it
    /// (the largest leeway a verifier may allow).
    #[arg(long, value_name = "UNIX")]
    exp: Option<i64>,
    /// Revoke every token of this subject issued at or before --before.
    #[arg(long, value_name = "S", conflicts_with_all = ["jti", "exp"])]
    sub: Option<String>,
    /// With --sub: tokens with iat at or before this (Unix seconds) [default: now].
    #[arg(long, value_name = "UNIX", requires = "sub")]
    before: Option<i64>,
    /// The tokens' issuer (iss); omit for tokens without iss.
    #[arg(long, value_name = "ISS")]
    issuer: Option<String>,
    /// Key prefix, as the daemons' revocation_prefix [default: jwtd:].
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "jwtd:",
        env = "JWTD_REVOCATION_PREFIX"
    )]
    prefix: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let what = match (&args.jti, args.exp, &args.sub) {
        (Some(jti), Some(exp), _) => Revoke::Jti {
            jti: jti.clone(),
            exp,
        },
        (_, _, Some(sub)) => Revoke::Subject {
            sub: sub.clone(),
            before: args.before.unwrap_or_else(jwtd::server::unix_now),
        },
        // clap requires one of the two forms.
        _ => anyhow::bail!("give --jti with --exp, or --sub"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(socket) = &args.socket {
        return runtime.block_on(through_daemon(socket, args.issuer.as_deref(), &what));
    }
    let written = runtime.block_on(revocation::revoke(
        &args.redis,
        &args.prefix,
        args.issuer.as_deref(),
        &what,
        Duration::from_secs(5),
    ));
    match written {
        Ok((key, receivers)) => {
            println!("{}", json!({"revoked": key, "announced_to": receivers}));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("jwtd revoke: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The REVOKE op on a daemon's socket (its prefix applies, not --prefix).
async fn through_daemon(
    socket: &str,
    iss: Option<&str>,
    what: &Revoke,
) -> anyhow::Result<ExitCode> {
    let mut body = match what {
        Revoke::Jti { jti, exp } => json!({"jti": jti, "exp": exp}),
        Revoke::Subject { sub, before } => json!({"sub": sub, "before": before}),
    };
    if let Some(iss) = iss {
        body["iss"] = json!(iss);
    }
    let reply = async {
        let client = Client::connect(socket).await?;
        client.revoke(body.to_string().as_bytes()).await
    };
    match tokio::time::timeout(Duration::from_secs(10), reply).await {
        Ok(Ok(Reply::Done { key, .. })) => {
            println!("{}", json!({"revoked": String::from_utf8_lossy(&key)}));
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(Reply::Error { error, .. })) => {
            eprintln!("jwtd revoke: the daemon refused: {error}");
            Ok(ExitCode::FAILURE)
        }
        Ok(Ok(other)) => {
            eprintln!("jwtd revoke: unexpected reply {other:?} (is the daemon older?)");
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(e)) => {
            eprintln!("jwtd revoke: {socket}: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("jwtd revoke: {socket}: no answer within 10 s");
            Ok(ExitCode::FAILURE)
        }
    }
}
