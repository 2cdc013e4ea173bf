//! `jwtd mint`: sign a token from a private key, for development and tests.
//!
//! Claims that `jwtd serve` checks are set with serve's flag names
//! (`--issuer`, `--audience`); `--iss` and `--aud` are the old spellings,
//! still accepted.

use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use jwtd::verify::Algorithm;

/// Flags of `jwtd mint`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Private key: a private JWK (or a set of one) or PEM (PKCS#8, SEC1,
    /// PKCS#1).
    #[arg(long, value_name = "FILE")]
    key: String,
    /// Algorithm [default: the JWK's alg, else RS256 / ES* by curve / EdDSA /
    /// HS256].
    #[arg(long)]
    alg: Option<Algorithm>,
    /// Header kid [default: the JWK's kid].
    #[arg(long)]
    kid: Option<String>,
    /// Issuer claim (iss).
    // `--iss` and `--aud`, the old spellings, stay for scripts.
    #[arg(long = "issuer", alias = "iss", value_name = "S")]
    issuer: Option<String>,
    /// Subject claim.
    #[arg(long, value_name = "S")]
    sub: Option<String>,
    /// Audience claim (aud; repeatable or comma-separated for an array).
    #[arg(
        long = "audience",
        alias = "aud",
        value_name = "S",
        value_delimiter = ','
    )]
    audience: Vec<String>,
    /// Lifetime: exp = now + TTL (e.g. 15m, 1h, or bare seconds; whole
    /// seconds).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = super::whole_seconds)]
    ttl: u64,
    /// Leave out exp.
    #[arg(long)]
    no_exp: bool,
    /// Header typ.
    #[arg(long, value_name = "T", default_value = "JWT")]
    typ: String,
    /// Extra claims as a JSON object, merged last (overrides the flags).
    #[arg(long, value_name = "JSON")]
    claims: Option<String>,
    /// Extra header members as a JSON object, merged last.
    #[arg(long, value_name = "JSON")]
    header: Option<String>,
    /// Issue at this Unix second instead of now.
    #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
    now: Option<i64>,
    /// Bind the token to this DPoP key (a private key file, as --key):
    /// cnf.jkt is its RFC 7638 thumbprint (RFC 9449 6).
    #[arg(long, value_name = "FILE")]
    dpop_key: Option<String>,
    /// Bind the token to this client certificate (PEM or DER file):
    /// cnf.x5t#S256 is its SHA-256 (RFC 8705 3).
    #[arg(long, value_name = "FILE")]
    cert: Option<String>,
    #[command(flatten)]
    encrypt: EncryptArgs,
}

/// How to encrypt minted tokens (`jwtd mint`, `jwtd bench tokens`).
#[derive(Debug, clap::Args)]
pub(super) struct EncryptArgs {
    /// Encrypt the signed token for this recipient key (a public JWK, or a
    /// JWK set holding one; an oct key for A*KW or dir): a nested JWT
    /// (`cty: JWT`).
    #[arg(long, value_name = "FILE")]
    encrypt_to: Option<String>,
    /// With --encrypt-to: key management [default: the key's alg, else
    /// RSA-OAEP-256, ECDH-ES+A256KW, or A*KW by an oct key's size].
    #[arg(long, value_name = "ALG")]
    encrypt_alg: Option<String>,
    /// With --encrypt-to: content encryption.
    #[arg(long, value_name = "ENC", default_value = "A256GCM")]
    encrypt_enc: String,
}

/// A recipient and the algorithms to encrypt for it.
pub(super) struct Encryption {
    jwk: Map<String, Value>,
    alg: jwtd::verify::jwe::KeyAlg,
    enc: jwtd::verify::jwe::Enc,
    path: String,
}

impl EncryptArgs {
    /// The encryption asked for, if any.
    pub(super) fn encryption(&self) -> anyhow::Result<Option<Encryption>> {
        use jwtd::verify::jwe::{Enc, KeyAlg};
        let Some(path) = &self.encrypt_to else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("--encrypt-to {path}"))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("--encrypt-to {path}: not JSON"))?;
        let jwk = match value.get("keys").and_then(Value::as_array) {
            Some(keys) if keys.len() == 1 => keys[0].clone(),
            Some(_) => bail!("--encrypt-to {path}: a set of exactly one key"),
            None => value,
        };
        let jwk = jwk
            .as_object()
            .cloned()
            .with_context(|| format!("--encrypt-to {path}: not a JWK"))?;
        let named = |v: Option<&str>| v.and_then(KeyAlg::from_name);
        let alg = match (&self.encrypt_alg, jwk.get("kty").and_then(Value::as_str)) {
            (Some(a), _) => KeyAlg::from_name(a).with_context(|| format!("--encrypt-alg {a:?}"))?,
            (None, kty) => match (named(jwk.get("alg").and_then(Value::as_str)), kty) {
                (Some(a), _) => a,
                (None, Some("RSA")) => KeyAlg::RsaOaep256,
                (None, Some("EC")) => KeyAlg::EcdhEsKw(256),
                (None, Some("oct")) => {
                    let len = jwk
                        .get("k")
                        .and_then(Value::as_str)
                        .map_or(0, |k| k.len() * 3 / 4);
                    match len {
                        16 => KeyAlg::AesKw(128),
                        24 => KeyAlg::AesKw(192),
                        _ => KeyAlg::AesKw(256),
                    }
                }
                (None, other) => bail!("--encrypt-to {path}: key type {other:?}"),
            },
        };
        let enc = Enc::from_name(&self.encrypt_enc)
            .with_context(|| format!("--encrypt-enc {:?}", self.encrypt_enc))?;
        Ok(Some(Encryption {
            jwk,
            alg,
            enc,
            path: path.clone(),
        }))
    }
}

impl Encryption {
    /// `token` as a nested JWT (`cty: JWT`) for the recipient.
    pub(super) fn seal(&self, token: &str) -> anyhow::Result<String> {
        jwtd::seal::seal(token.as_bytes(), &self.jwk, self.alg, self.enc, Some("JWT"))
            .map_err(|e| anyhow::anyhow!("--encrypt-to {}: {e}", self.path))
    }
}

fn object(flag: &str, text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    match text {
        None => Ok(Map::new()),
        Some(t) => match serde_json::from_str(t).with_context(|| format!("{flag}: not JSON"))? {
            Value::Object(m) => Ok(m),
            _ => bail!("{flag}: expected a JSON object"),
        },
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut key = super::signing_key("--key", std::path::Path::new(&args.key))?;
    if let Some(alg) = args.alg {
        key = key.with_alg(alg)?;
    }
    if args.kid.is_some() {
        key = key.with_kid(args.kid.clone());
    }
    let now = super::unix_now(args.now);
    let mut claims = Map::new();
    if let Some(iss) = &args.issuer {
        claims.insert("iss".into(), iss.as_str().into());
    }
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), sub.as_str().into());
    }
    // One audience is a string, several an array (RFC 7519 4.1.3).
    let aud: Option<Value> = match args.audience.as_slice() {
        [] => None,
        [one] => Some(one.as_str().into()),
        many => Some(many.iter().map(String::as_str).collect()),
    };
    if let Some(aud) = aud {
        claims.insert("aud".into(), aud);
    }
    claims.insert("iat".into(), now.into());
    if !args.no_exp {
        let ttl = i64::try_from(args.ttl).context("--ttl is too large")?;
        claims.insert("exp".into(), now.saturating_add(ttl).into());
    }
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).context("random jti")?;
    claims.insert(
        "jti".into(),
        jti.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
    );
    let mut cnf = Map::new();
    if let Some(path) = &args.dpop_key {
        let dpop = super::signing_key("--dpop-key", std::path::Path::new(path))?;
        cnf.insert("jkt".into(), dpop.thumbprint().into());
    }
    if let Some(path) = &args.cert {
        use base64::Engine;
        let digest = super::certificate_sha256("--cert", std::path::Path::new(path))?;
        cnf.insert(
            "x5t#S256".into(),
            jwtd::verify::B64URL.encode(digest).into(),
        );
    }
    if !cnf.is_empty() {
        claims.insert("cnf".into(), Value::Object(cnf));
    }
    claims.extend(object("--claims", args.claims.as_deref())?);

    let mut header = Map::new();
    header.insert("typ".into(), args.typ.into());
    header.extend(object("--header", args.header.as_deref())?);
    let token = key.mint(&Value::Object(claims), &header)?;
    let Some(encryption) = args.encrypt.encryption()? else {
        println!("{token}");
        return Ok(ExitCode::SUCCESS);
    };
    let sealed = encryption.seal(&token)?;
    println!("{sealed}");
    Ok(ExitCode::SUCCESS)
}
