//! `jwtd dpop`: sign a DPoP proof (RFC 9449) for one request, for
//! development and tests (a client signs its own proofs; see
//! `jwtd mint --dpop-key` for a token bound to the same key).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Map;

use jwtd::verify::Algorithm;

/// Flags of `jwtd dpop`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The client's private key (a private JWK or PEM, as `jwtd mint
    /// --key`).
    #[arg(long, value_name = "FILE")]
    key: String,
    /// Algorithm [default: the key's].
    #[arg(long)]
    alg: Option<Algorithm>,
    /// The request's method (htm).
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// The request's absolute URI (htu), e.g. https://api.example.com/orders.
    #[arg(long, value_name = "URI")]
    uri: String,
    /// The access token the proof comes with (ath), or - for standard input.
    #[arg(long, value_name = "TOKEN|-")]
    token: Option<String>,
    /// Proof id (jti) [default: random].
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
    /// Issue at this Unix second instead of now.
    #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
    now: Option<i64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut key = super::signing_key("--key", std::path::Path::new(&args.key))?;
    if let Some(alg) = args.alg {
        key = key.with_alg(alg)?;
    }
    let token = args.token.as_deref().map(super::read_token).transpose()?;
    let jti = match args.jti {
        Some(jti) => jti,
        None => {
            let mut bytes = [0u8; 16];
            aws_lc_rs::rand::fill(&mut bytes).context("random jti")?;
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let proof = key.dpop_proof(
        &args.method,
        &args.uri,
        token.as_deref(),
        super::unix_now(args.now),
        &jti,
        &Map::new(),
    )?;
    println!("{proof}");
    Ok(ExitCode::SUCCESS)
}
