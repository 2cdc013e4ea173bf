//! `jwtd verify`: ask a running daemon about one token.

use std::process::ExitCode;

use serde_json::{Value, json};

use bytes::Bytes;
use jwtd::client::Client;
use jwtd::protocol::{Reply, WireContext};

/// Exit status when jwtd could not decide (daemon unreachable, no keys).
const EXIT_UNDECIDED: u8 = 3;

/// Flags of `jwtd verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/jwtd.sock or /tmp/jwtd.sock].
    #[arg(long, value_name = "PATH", env = "JWTD_SOCKET")]
    socket: Option<String>,
    /// Verify for this configured audience (a request selector).
    #[arg(long, value_name = "S")]
    audience: Option<String>,
    /// The request's method, for a DPoP proof's htm (sends VERIFY_CTX).
    #[arg(long, value_name = "METHOD")]
    method: Option<String>,
    /// The request's absolute URI, for a DPoP proof's htu (sends
    /// VERIFY_CTX).
    #[arg(long, value_name = "URI")]
    uri: Option<String>,
    /// The request's DPoP proof: the token is presented as DPoP (sends
    /// VERIFY_CTX).
    #[arg(long, value_name = "PROOF")]
    dpop_proof: Option<String>,
    /// The client's TLS certificate (PEM or DER file), for
    /// certificate-bound tokens (sends VERIFY_CTX).
    #[arg(long, value_name = "FILE")]
    client_cert: Option<std::path::PathBuf>,
    /// The client's IP address, for address bindings (sends VERIFY_CTX).
    #[arg(long, value_name = "IP")]
    client_ip: Option<std::net::IpAddr>,
    /// The token, or - to read it from standard input.
    #[arg(value_name = "TOKEN|-")]
    token: String,
}

/// The VERIFY_CTX context the flags give, if any.
fn context(args: &Args) -> anyhow::Result<Option<WireContext>> {
    let cert_sha256 = args
        .client_cert
        .as_deref()
        .map(|path| super::certificate_sha256("--client-cert", path))
        .transpose()?;
    let context = WireContext {
        method: args.method.clone().map(Bytes::from),
        uri: args.uri.clone().map(Bytes::from),
        dpop: args.dpop_proof.clone().map(Bytes::from),
        cert_sha256,
        client: args.client_ip,
    };
    Ok((context != WireContext::default()).then_some(context))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = super::read_token(&args.token)?;
    let context = context(&args)?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(jwtd::config::default_socket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(async {
        let client = Client::connect(&socket).await?;
        let selector = args.audience.as_deref().unwrap_or("").as_bytes();
        match &context {
            Some(context) => client.verify_with_context(selector, &token, context).await,
            None => client.verify_for(selector, &token).await,
        }
    });
    let (out, code) = match reply {
        Ok(Reply::Valid {
            claims, anomalies, ..
        }) => {
            let claims: Value = serde_json::from_slice(&claims).unwrap_or(Value::Null);
            let mut out = json!({"valid": true, "claims": claims});
            if !anomalies.is_empty() {
                out["anomalies"] = anomalies.names().collect();
            }
            (out, 0)
        }
        Ok(Reply::Invalid { reason, .. }) => {
            (json!({"valid": false, "reason": reason.as_str()}), 1)
        }
        Ok(Reply::Undecided { cause, .. }) => (
            json!({"valid": null, "undecided": cause.as_str()}),
            EXIT_UNDECIDED,
        ),
        Ok(Reply::Error { error, .. }) => {
            eprintln!("jwtd verify: the daemon refused the request: {error}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
        Ok(Reply::Pong { .. } | Reply::Done { .. } | Reply::Other { .. }) => {
            eprintln!("jwtd verify: a reply this jwtd does not understand (is the daemon newer?)");
            return Ok(ExitCode::from(EXIT_UNDECIDED));
        }
        Err(jwtd::client::ClientError::SelectorTooLong) => {
            eprintln!("jwtd verify: --audience is longer than 255 bytes");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
        Err(jwtd::client::ClientError::FieldTooLong) => {
            eprintln!("jwtd verify: the token or a context flag is longer than 65535 bytes");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
        Err(e) => {
            eprintln!("jwtd verify: {socket}: {e}");
            (
                json!({"valid": null, "undecided": "unreachable"}),
                EXIT_UNDECIDED,
            )
        }
    };
    println!("{out}");
    Ok(ExitCode::from(code))
}
