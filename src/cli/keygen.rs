//! `jwtd keygen`: make a signing key and its public JWK set.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;

/// Flags of `jwtd keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Algorithm the key is for (RSA keys are 2048-bit).
    #[arg(long)]
    alg: Algorithm,
    /// Key id [default: the RFC 7638 thumbprint of the public key].
    #[arg(long)]
    kid: Option<String>,
    /// Where to write the private key (PKCS#8 PEM; a private JWK for HS*),
    /// created with mode 0600.
    #[arg(long, value_name = "FILE")]
    private: String,
    /// Where to write the public JWK set, the file serve's --jwks-file
    /// reads [default: standard output].
    // `--jwks`, the old spelling, stays for scripts.
    #[arg(long = "jwks-file", alias = "jwks", value_name = "FILE")]
    jwks_file: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate(args.alg)?;
    let kid = match args.kid {
        Some(kid) => kid,
        None => key.thumbprint(),
    };
    let key = key.with_kid(Some(kid));
    write_private(&args.private, &key.private_file()?)?;
    let jwks = serde_json::to_string_pretty(&json!({"keys": [key.public_jwk()]}))? + "\n";
    match &args.jwks_file {
        Some(path) => std::fs::write(path, jwks).with_context(|| format!("--jwks-file {path}"))?,
        None => print!("{jwks}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &str, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("--private {path}"))?;
    // `mode` applies only when the file is created; an existing file keeps
    // its permissions unless they are set explicitly.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("--private {path}"))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("--private {path}"))
}
