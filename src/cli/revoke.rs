//! `jwtd revoke`: put a token (by `jti`) or every token of a subject issued
//! before a time on the revocation list: straight into Redis (and announce
//! it to every sidecar), or through a running daemon's socket (the native
//! REVOKE op: its own store, in-memory or Redis). Key layout:
//! `docs/revocation.md`.
//!
//! What to revoke comes from a token (`--token`: its `jti`, `exp`, `iss`,
//! and `sub` with `--all-of-subject`; decoded, not verified), or from flags,
//! which then must name the issuer (`--issuer`, `''` for tokens without
//! `iss`): a key under the wrong issuer matches nothing. A revocation that
//! can match nothing is never reported as done: an empty `jti` or subject,
//! a token expired more than 300 s ago (exit 2), an issuer the daemon does
//! not serve (the daemon refuses; exit 1).
//!
//! Redis URLs in messages are redacted (`jwtd::redact`).

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use jwtd::client::Client;
use jwtd::protocol::{ProtocolError, Reply};
use jwtd::revocation::{self, Revoke};

/// Flags of `jwtd revoke`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["jti", "sub", "token"])))]
#[command(group(clap::ArgGroup::new("to").required(true).args(["redis", "socket"])))]
#[command(group(clap::ArgGroup::new("subject").args(["sub", "all_of_subject"])))]
pub struct Args {
    /// Redis: a redis:// URL, or cluster nodes (repeatable or comma-separated).
    #[arg(long, value_name = "URL", value_delimiter = ',', env = "JWTD_REDIS")]
    redis: Vec<String>,
    /// Instead of Redis: a running daemon's socket (it writes to its own
    /// store, in-memory or Redis, and refuses an issuer it does not serve).
    #[arg(long, value_name = "PATH")]
    socket: Option<String>,
    /// Revoke this token (or - to read it from standard input): its jti,
    /// exp and iss (and sub, with --all-of-subject) are taken from it. The
    /// token is DECODED, NOT VERIFIED: its signature is not checked (a
    /// revocation can only refuse tokens, never accept one). A token that
    /// is not a compact JWS (three base64url parts, JSON header and
    /// payload) is refused.
    #[arg(long, value_name = "TOKEN|-", conflicts_with_all = ["jti", "exp", "sub", "issuer"])]
    token: Option<String>,
    /// With --token: revoke every token of its subject (sub) issued at or
    /// before --before, instead of the token alone.
    #[arg(long, requires = "token")]
    all_of_subject: bool,
    /// Revoke the token with this jti (with --exp and --issuer).
    #[arg(long, value_name = "ID", requires = "exp")]
    jti: Option<String>,
    /// The token's exp (Unix seconds): the revocation expires 300 s after it
    /// (the largest leeway a verifier may allow).
    #[arg(long, value_name = "UNIX")]
    exp: Option<i64>,
    /// Revoke every token of this subject issued at or before --before
    /// (with --issuer).
    #[arg(long, value_name = "S", conflicts_with_all = ["jti", "exp"])]
    sub: Option<String>,
    /// With --sub or --all-of-subject: tokens with iat at or before this
    /// (Unix seconds) [default: now].
    #[arg(long, value_name = "UNIX", requires = "subject")]
    before: Option<i64>,
    /// The tokens' issuer (iss), exactly as in the tokens; '' for tokens
    /// without iss. Required unless --token gives it.
    #[arg(long, value_name = "S", required_unless_present = "token")]
    issuer: Option<String>,
    /// Key prefix, as the daemons' revocation_prefix.
    // `--prefix`, the old spelling, stays for scripts.
    #[arg(
        long = "revocation-prefix",
        alias = "prefix",
        value_name = "PREFIX",
        default_value = "jwtd:",
        env = "JWTD_REVOCATION_PREFIX"
    )]
    revocation_prefix: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let now = jwtd::clock::unix_now();
    let (iss, what) = match what_to_revoke(&args, now) {
        Ok(found) => found,
        Err(why) => return Ok(usage(&why)),
    };
    if let Some(why) = revocation::matches_nothing(&what, now) {
        return Ok(usage(&format!("nothing revoked: {why}")));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(socket) = &args.socket {
        return runtime.block_on(through_daemon(socket, iss.as_deref(), &what));
    }
    let written = runtime.block_on(revocation::revoke(
        &args.redis,
        &args.revocation_prefix,
        iss.as_deref(),
        &what,
        Duration::from_secs(5),
    ));
    match written {
        Ok((key, receivers)) => {
            println!("{}", json!({"revoked": key, "announced_to": receivers}));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "jwtd revoke: Redis {}: {}; nothing revoked",
                jwtd::redact::urls(&args.redis),
                revocation::scrub(&e.to_string(), &args.redis)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A usage problem: said on stderr, exit 2.
fn usage(why: &str) -> ExitCode {
    eprintln!("jwtd revoke: {why}");
    ExitCode::from(super::EXIT_USAGE)
}

/// The issuer and what to revoke, from the token or from the flags.
fn what_to_revoke(args: &Args, now: i64) -> Result<(Option<String>, Revoke), String> {
    let before = args.before.unwrap_or(now);
    let Some(arg) = &args.token else {
        // clap requires --issuer here; '' means "without iss".
        let iss = args.issuer.clone().filter(|iss| !iss.is_empty());
        let what = match (&args.jti, args.exp, &args.sub) {
            (Some(jti), Some(exp), _) => Revoke::Jti {
                jti: jti.clone(),
                exp,
            },
            (_, _, Some(sub)) => Revoke::Subject {
                sub: sub.clone(),
                before,
            },
            // clap requires one of the two forms.
            _ => return Err("give --token, --jti with --exp, or --sub".to_owned()),
        };
        return Ok((iss, what));
    };
    let token = super::read_token(arg).map_err(|e| format!("{e:#}"))?;
    let claims = unverified_claims(&token)?;
    let text = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("the token's {name} is not a string")),
    };
    let iss = text("iss")?;
    let what = if args.all_of_subject {
        let sub = text("sub")?.ok_or("the token has no sub: --all-of-subject needs one")?;
        Revoke::Subject { sub, before }
    } else {
        let jti = text("jti")?.ok_or(
            "the token has no jti, so it cannot be revoked alone: \
             revoke every token of its subject with --all-of-subject",
        )?;
        let exp = match claims.get("exp") {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64)
                })
                .ok_or("the token's exp is not a usable number")?,
            Some(_) => return Err("the token's exp is not a number".to_owned()),
            None => {
                return Err(
                    "the token has no exp, so its revocation would have no end: \
                     give --jti, --exp and --issuer instead"
                        .to_owned(),
                );
            }
        };
        Revoke::Jti { jti, exp }
    };
    Ok((iss, what))
}

/// The payload of a compact JWS, decoded and NOT verified, after checking
/// the token's shape: three base64url parts, a JSON object header with an
/// `alg`, a JSON object payload.
fn unverified_claims(token: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    const NOT_A_JWT: &str =
        "--token: not a JWT (a compact JWS: header.payload.signature, base64url)";
    let text = std::str::from_utf8(token).map_err(|_| NOT_A_JWT.to_owned())?;
    let parts: Vec<&str> = text.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(
                "--token: an encrypted JWT (JWE) cannot be read; give --jti, --exp and --issuer"
                    .to_owned(),
            );
        }
        _ => return Err(NOT_A_JWT.to_owned()),
    }
    let object = |part: &str, what: &str| {
        let bytes = jwtd::verify::B64URL
            .decode(part)
            .map_err(|_| format!("{NOT_A_JWT}: the {what} is not base64url"))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(format!("{NOT_A_JWT}: the {what} is not a JSON object")),
        }
    };
    let header = object(parts[0], "header")?;
    if !header.get("alg").is_some_and(Value::is_string) {
        return Err(format!("{NOT_A_JWT}: the header has no alg"));
    }
    if parts[2].is_empty() {
        return Err(format!("{NOT_A_JWT}: it has no signature"));
    }
    object(parts[1], "payload")
}

/// The REVOKE op on a daemon's socket (its prefix applies, not
/// --revocation-prefix).
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
    let refused = |why: &str| {
        eprintln!("jwtd revoke: the daemon at {socket} refused: {why}; nothing revoked");
        Ok(ExitCode::FAILURE)
    };
    match tokio::time::timeout(Duration::from_secs(10), reply).await {
        Ok(Ok(Reply::Done { key, .. })) => {
            println!("{}", json!({"revoked": String::from_utf8_lossy(&key)}));
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(Reply::Error {
            error: ProtocolError::UnknownIssuer,
            ..
        })) => refused(&match iss {
            Some(iss) => format!("it does not serve issuer {iss:?}, so no token could match"),
            None => "it does not serve tokens without iss, so no token could match".to_owned(),
        }),
        Ok(Ok(Reply::Error {
            error: ProtocolError::RevokeFailed,
            ..
        })) => refused(
            "its revocation store (Redis) could not be written \
             (the daemon enforces the revocation itself; the other sidecars do not have it)",
        ),
        Ok(Ok(Reply::Error { error, .. })) => refused(&error.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_compact_jws_shape_is_read() {
        let b64 = |v: &str| jwtd::verify::B64URL.encode(v);
        let header = b64(r#"{"alg":"ES256"}"#);
        let payload = b64(r#"{"jti":"t1","exp":100}"#);
        let good = format!("{header}.{payload}.c2ln");
        let claims = unverified_claims(good.as_bytes()).unwrap();
        assert_eq!(claims["jti"], "t1");
        for bad in [
            "not a token".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln.x.y"),
            format!("{}.{payload}.c2ln", b64(r#"{"typ":"JWT"}"#)),
            format!("{header}.{}.c2ln", b64("[1]")),
            format!("{header}.%%%.c2ln"),
        ] {
            assert!(unverified_claims(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
