//! `jwtd check`: verify one token offline and print the verdict as JSON.
//!
//! Its policy flags are `jwtd serve`'s, with the same names and values
//! (durations as `30s`, `2m`, or bare seconds); `--jwks` is the old
//! spelling of `--jwks-file`, still accepted.

use std::process::ExitCode;

use anyhow::anyhow;
use serde_json::{Map, Value, json};

use jwtd::verify::KeySet;
use jwtd::verify::{self, AlgSet, Algorithm, Policy};

/// Flags of `jwtd check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trusted JWK set or PEM public key file, as serve's (repeatable;
    /// sets are merged).
    // `--jwks`, the old spelling, stays for scripts.
    #[arg(long = "jwks-file", alias = "jwks", value_name = "FILE")]
    jwks_file: Vec<String>,
    /// Trusted PEM public key file (repeatable): SPKI or PKCS#1 RSA.
    #[arg(long, value_name = "FILE")]
    key: Vec<String>,
    /// Kid given to the --key PEM keys; without it they match any token kid.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// Required issuer (exact match).
    #[arg(long, value_name = "S")]
    issuer: Option<String>,
    /// Accepted audience (repeatable or comma-separated; the token must
    /// name one of them).
    #[arg(long, value_name = "S", value_delimiter = ',')]
    audience: Vec<String>,
    /// Allowed algorithms, comma-separated [default: all; `none` never].
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    algorithms: Vec<String>,
    /// Clock skew allowed on exp/nbf/iat (e.g. 30s, 2m, or bare seconds;
    /// whole seconds, at most 5m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::whole_seconds)]
    leeway: u64,
    /// Claims that must be present besides exp, comma-separated; `-exp`
    /// accepts tokens without exp (e.g. --require=sub,-exp).
    #[arg(long, value_name = "CLAIM,...", value_delimiter = ',')]
    require: Option<Vec<String>>,
    /// Required header typ (e.g. at+jwt).
    #[arg(long, value_name = "T")]
    typ: Option<String>,
    /// Maximum token lifetime, exp - iat (e.g. 1h; whole seconds).
    #[arg(long, value_name = "DURATION", value_parser = super::whole_seconds)]
    max_lifetime: Option<u64>,
    /// Maximum token size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = verify::DEFAULT_MAX_TOKEN_BYTES)]
    max_token_bytes: usize,
    /// Evaluate time at this Unix second instead of now.
    #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
    now: Option<i64>,
    /// JWE decryption keys (a JWK set or PEM file of private keys), as
    /// serve's: a nested JWT is decrypted, then its inner token checked.
    #[arg(long, value_name = "FILE")]
    jwe_keys: Option<std::path::PathBuf>,
    /// Accept a JWE of claims alone (no inner signature) when its key
    /// management is symmetric (A*KW, dir), as serve's.
    #[arg(long, requires = "jwe_keys")]
    jwe_unsigned_claims: bool,
    /// The token, or - to read it from standard input.
    #[arg(value_name = "TOKEN|-")]
    token: String,
}

/// Builds the policy, the key set and the decryption keys, collecting every
/// problem before failing (a bad --jwe-keys is one, whatever the token).
#[allow(clippy::type_complexity)]
fn configure(
    args: &Args,
) -> Result<(Policy, KeySet, Option<verify::jwe::DecryptionKeys>), Vec<String>> {
    let mut problems = Vec::new();
    let mut algorithms = AlgSet::EMPTY;
    for name in &args.algorithms {
        match name.trim().parse::<Algorithm>() {
            Ok(a) => algorithms.insert(a),
            Err(e) => problems.push(format!("--algorithms: {e}")),
        }
    }
    let required = jwtd::config::required_claims(args.require.as_deref()).unwrap_or_else(|e| {
        problems.push(format!("--require: {e}"));
        Vec::new()
    });
    let policy = Policy {
        algorithms: if args.algorithms.is_empty() {
            AlgSet::all()
        } else {
            algorithms
        },
        issuer: args.issuer.as_deref().map(Box::from),
        audiences: args
            .audience
            .iter()
            .map(|a| Box::from(a.as_str()))
            .collect(),
        leeway: args.leeway,
        required,
        max_lifetime: args.max_lifetime,
        typ: args.typ.as_deref().map(Box::from),
        max_token_bytes: args.max_token_bytes,
        ..Policy::default()
    };
    problems.extend(policy.problems());

    let mut keys: Option<KeySet> = None;
    let mut add = |set: KeySet| match &mut keys {
        Some(all) => all.extend(set),
        None => keys = Some(set),
    };
    if args.jwks_file.is_empty() && args.key.is_empty() {
        problems.push("no trusted keys: pass --jwks-file FILE or --key FILE".to_owned());
    }
    for path in &args.jwks_file {
        // As serve reads its jwks_file: a JWK set, or PEM public keys.
        match std::fs::read(path) {
            Ok(bytes) => match KeySet::from_file_contents(&bytes) {
                Ok(set) => add(set),
                Err(e) => problems.push(format!("--jwks-file {path}: {e}")),
            },
            Err(e) => problems.push(format!("--jwks-file {path}: {e}")),
        }
    }
    for path in &args.key {
        match std::fs::read_to_string(path) {
            Ok(text) => match KeySet::from_pem(&text, args.kid.as_deref()) {
                Ok(set) => add(set),
                Err(e) => problems.push(format!("--key {path}: {e}")),
            },
            Err(e) => problems.push(format!("--key {path}: {e}")),
        }
    }
    let jwe_keys = args.jwe_keys.as_ref().and_then(|path| {
        let loaded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                verify::jwe::DecryptionKeys::from_file_contents(&bytes).map_err(|e| e.to_string())
            });
        loaded
            .map_err(|e| problems.push(format!("--jwe-keys {}: {e}", path.display())))
            .ok()
    });
    match keys {
        Some(keys) if problems.is_empty() => Ok((policy, keys, jwe_keys)),
        _ => Err(problems),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (policy, keys, jwe_keys) = configure(&args).map_err(|problems| {
        for p in &problems {
            eprintln!("jwtd check: {p}");
        }
        anyhow!("{} configuration problem(s)", problems.len())
    })?;
    for skipped in keys.skipped() {
        eprintln!("warning: {skipped}");
    }
    for skipped in jwe_keys.iter().flat_map(|k| k.skipped_messages()) {
        eprintln!("warning: {skipped}");
    }
    let mut token = super::read_token(&args.token)?;
    let now = super::unix_now(args.now);
    let mut encryption = None;
    let mut sealed = None;
    if let Some(jwe_keys) = &jwe_keys
        && token.iter().filter(|&&b| b == b'.').count() == 4
    {
        let reason = match jwe_keys.decrypt(&token) {
            Ok(d) => {
                encryption = Some((d.alg.as_str(), d.enc.as_str()));
                if d.nested {
                    token = d.plaintext;
                    None
                } else if args.jwe_unsigned_claims && !d.alg.is_public() {
                    sealed = Some(d);
                    None
                } else {
                    Some("jwe")
                }
            }
            Err(verify::jwe::JweError::Decrypt) => Some("jwe_decrypt"),
            Err(_) => Some("jwe"),
        };
        if let Some(reason) = reason {
            println!("{}", json!({"valid": false, "reason": reason}));
            return Ok(ExitCode::from(1));
        }
    }
    let verdict = match &sealed {
        Some(d) => verify::verify_sealed(
            &d.plaintext,
            verify::Sealed {
                typ: d.typ.as_deref(),
                kid: d.kid.as_deref(),
                key: d.key,
            },
            &policy,
            now,
        ),
        None => verify::verify(&token, &keys, &policy, now),
    };
    let (out, code) = match verdict {
        Ok(v) => {
            // The payload is a validated JSON object; re-serialize it so the
            // output is one compact line whatever whitespace the token had.
            let claims: Value = serde_json::from_slice(&v.claims.raw).unwrap_or_default();
            let mut out = Map::new();
            out.insert("valid".into(), true.into());
            // No alg: claims alone, vouched for by the decryption key.
            out.insert(
                "alg".into(),
                v.alg.map_or(Value::Null, |a| a.as_str().into()),
            );
            out.insert(
                "kid".into(),
                v.kid.as_deref().map_or(Value::Null, Value::from),
            );
            if !v.anomalies.is_empty() {
                out.insert("anomalies".into(), v.anomalies.names().collect());
            }
            if let Some((alg, enc)) = encryption {
                out.insert("encrypted".into(), json!({"alg": alg, "enc": enc}));
            }
            out.insert("claims".into(), claims);
            (Value::Object(out), 0)
        }
        Err(r) => {
            let mut out = json!({"valid": false, "reason": r.reason.as_str()});
            if !r.anomalies.is_empty() {
                out["anomalies"] = r.anomalies.names().collect();
            }
            (out, 1)
        }
    };
    println!("{out}");
    Ok(ExitCode::from(code))
}
