//! `jwtd keygen`: make a signing key and its public JWK set, or a JWE
//! decryption key (for `jwe_keys`) and the public JWK a sender encrypts to.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

use jwtd::sign::SigningKey;
use jwtd::verify::jwe::KeyAlg;
use jwtd::verify::{Algorithm, B64URL};

/// Flags of `jwtd keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Algorithm the key is for (RSA keys are 2048-bit): a signature
    /// algorithm, or a JWE key management algorithm (RSA-OAEP,
    /// RSA-OAEP-256, ECDH-ES, ECDH-ES+A128KW/A192KW/A256KW,
    /// A128KW/A192KW/A256KW) for a decryption key.
    #[arg(long)]
    alg: String,
    /// Curve of an ECDH-ES decryption key: P-256, P-384 or P-521.
    #[arg(long, value_name = "CRV", default_value = "P-256")]
    crv: String,
    /// Key id [default: the RFC 7638 thumbprint of the public key].
    #[arg(long)]
    kid: Option<String>,
    /// Where to write the private key (PKCS#8 PEM; a private JWK set for
    /// HS* and A*KW), created with mode 0600. A decryption key's file is
    /// what serve's --jwe-keys reads.
    #[arg(long, value_name = "FILE")]
    private: String,
    /// Where to write the public JWK set, the file serve's --jwks-file
    /// reads [default: standard output].
    // `--jwks`, the old spelling, stays for scripts.
    #[arg(long = "jwks-file", alias = "jwks", value_name = "FILE")]
    jwks_file: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(alg) = KeyAlg::from_name(&args.alg) {
        return decryption_key(&args, alg);
    }
    let alg: Algorithm = args.alg.parse()?;
    let key = SigningKey::generate(alg)?;
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

/// A JWE decryption key for `alg`: RSA 2048 and EC keys are written as
/// PKCS#8 PEM (the private file `jwe_keys` reads; PEM has no kid, so the
/// key answers any), with their public JWK (kid, `alg`, `use: enc`) for
/// the sender; an AES key-wrap key, which has no public half, as a private
/// JWK set only (the sender needs the same file).
fn decryption_key(args: &Args, alg: KeyAlg) -> anyhow::Result<ExitCode> {
    use aws_lc_rs::encoding::{AsBigEndian, AsDer, EcPublicKeyUncompressedBin, Pkcs8V1Der};
    use aws_lc_rs::signature::KeyPair as _;
    use aws_lc_rs::{agreement, rsa};
    use jwtd::verify::pem;

    let mut public = match alg {
        KeyAlg::RsaOaep | KeyAlg::RsaOaep256 => {
            let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
            let der: Pkcs8V1Der<'_> = pair.as_der()?;
            write_private(&args.private, &pem::encode("PRIVATE KEY", der.as_ref()))?;
            let key = pair.public_key();
            json!({
                "kty": "RSA",
                "n": B64URL.encode(key.modulus().big_endian_without_leading_zero()),
                "e": B64URL.encode(key.exponent().big_endian_without_leading_zero()),
            })
        }
        KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_) => {
            let (curve, len) = match args.crv.as_str() {
                "P-256" => (&agreement::ECDH_P256, 32),
                "P-384" => (&agreement::ECDH_P384, 48),
                "P-521" => (&agreement::ECDH_P521, 66),
                other => bail!("--crv {other:?}: P-256, P-384 or P-521"),
            };
            let private = agreement::PrivateKey::generate(curve)
                .map_err(|_| anyhow::anyhow!("EC key generation failed"))?;
            let der: Pkcs8V1Der<'_> = private.as_der()?;
            write_private(&args.private, &pem::encode("PRIVATE KEY", der.as_ref()))?;
            let point: EcPublicKeyUncompressedBin<'_> = private
                .compute_public_key()
                .map_err(|_| anyhow::anyhow!("EC public key"))?
                .as_be_bytes()?;
            let point = point.as_ref();
            json!({
                "kty": "EC",
                "crv": args.crv,
                "x": B64URL.encode(&point[1..=len]),
                "y": B64URL.encode(&point[len + 1..]),
            })
        }
        KeyAlg::AesKw(bits) => {
            if args.jwks_file.is_some() {
                bail!(
                    "--jwks-file: an {} key is a shared secret with no public half; give the --private file to the sender",
                    alg.as_str()
                );
            }
            let mut k = vec![0u8; usize::from(bits) / 8];
            aws_lc_rs::rand::fill(&mut k).map_err(|_| anyhow::anyhow!("no randomness"))?;
            json!({"kty": "oct", "k": B64URL.encode(k)})
        }
        KeyAlg::Dir => bail!(
            "--alg dir: the key is the content key itself; an A128KW key (16 bytes) serves dir with A128GCM, an A256KW key (32 bytes) dir with A256GCM or A128CBC-HS256"
        ),
    };
    let object = public.as_object_mut().context("a JWK")?;
    let kid = match &args.kid {
        Some(kid) => kid.clone(),
        None => {
            let t = jwtd::verify::dpop::thumbprint(object).context("thumbprint")?;
            B64URL.encode(t)
        }
    };
    object.insert("kid".into(), kid.into());
    object.insert("alg".into(), alg.as_str().into());
    object.insert("use".into(), "enc".into());
    if let KeyAlg::AesKw(_) = alg {
        let set = serde_json::to_string_pretty(&json!({"keys": [public]}))? + "\n";
        write_private(&args.private, &set)?;
        return Ok(ExitCode::SUCCESS);
    }
    let jwks =
        serde_json::to_string_pretty(&json!({"keys": [Value::Object(object.clone())]}))? + "\n";
    match &args.jwks_file {
        Some(path) => std::fs::write(path, jwks).with_context(|| format!("--jwks-file {path}"))?,
        None => print!("{jwks}"),
    }
    Ok(ExitCode::SUCCESS)
}
