//! How close jwtd's verification core comes to the crypto limit.
//!
//! For each algorithm, the same token is verified three ways:
//!
//! * `jwtd`: [`jwtd::verify::verify`] with a policy checking issuer and
//!   audience (leeway 30 s, `exp` required): the whole core, from token bytes
//!   to a [`jwtd::verify::Verified`].
//! * `raw`: aws-lc-rs alone on exactly the same signing input and signature,
//!   with the public key parsed once outside the loop (`ParsedPublicKey`, or
//!   an `hmac::Key` for HS256). This is the floor: no JWT handling at all.
//! * `jsonwebtoken`: `jsonwebtoken::decode::<serde_json::Value>` (11.1,
//!   aws-lc-rs backend) with equivalent validation and a `DecodingKey` built
//!   once. jsonwebtoken has no ES512, so that case is absent.
//!
//! The figure of merit is the ratio raw/jwtd, not the absolute time: see
//! BENCHMARKS.md. Run with `cargo bench --bench verify`.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jwtd::jwks::KeySet;
use jwtd::sign::SigningKey;
use jwtd::verify::{Algorithm, Policy, verify};
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.example.com/realms/production";
const AUDIENCE: &str = "orders-api";
const LEEWAY: u64 = 30;

const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
    Algorithm::HS256,
];

/// The crypto floor: the public key (or MAC key) parsed once.
enum Raw {
    Signature(ParsedPublicKey),
    Mac(hmac::Key),
}

impl Raw {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Raw::Signature(k) => k.verify_sig(message, signature).is_ok(),
            Raw::Mac(k) => hmac::verify(k, message, signature).is_ok(),
        }
    }
}

/// One algorithm's token and the three verifiers' ready-made inputs.
struct Case {
    alg: Algorithm,
    token: String,
    keys: KeySet,
    /// Byte offset of the last dot: `token[..dot]` is the signing input.
    dot: usize,
    signature: Vec<u8>,
    raw: Raw,
    /// `None` where jsonwebtoken has no such algorithm (ES512).
    jsonwebtoken: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

/// A realistic access token payload of about 300 bytes.
fn claims(now: i64) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "user-7f3c2a91-5d84-4e0b-9c1f-2b6a8e4d3c70",
        "aud": AUDIENCE,
        "exp": now + 3600,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": "0b9e7c1d-4a52-4f3e-8d6b-91c2e5a7f048",
        "scope": "openid profile email orders:read orders:write invoices:read offline_access",
    })
}

fn b64(jwk: &Value, member: &str) -> Vec<u8> {
    let text = jwk[member]
        .as_str()
        .unwrap_or_else(|| panic!("JWK member {member} missing"));
    URL_SAFE_NO_PAD.decode(text).expect("base64url JWK member")
}

/// The same key, parsed once by aws-lc-rs directly from the public JWK.
fn raw_verifier(alg: Algorithm, jwk: &Value) -> Raw {
    let ec = |algorithm: &'static signature::EcdsaVerificationAlgorithm| {
        let mut point = vec![0x04];
        point.extend(b64(jwk, "x"));
        point.extend(b64(jwk, "y"));
        Raw::Signature(ParsedPublicKey::new(algorithm, point).expect("EC public key"))
    };
    let rsa = |params: &'static signature::RsaParameters| {
        let (n, e) = (b64(jwk, "n"), b64(jwk, "e"));
        let components = PublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        };
        Raw::Signature(
            components
                .to_parsed_public_key(params)
                .expect("RSA public key"),
        )
    };
    match alg {
        Algorithm::ES256 => ec(&signature::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => ec(&signature::ECDSA_P384_SHA384_FIXED),
        Algorithm::ES512 => ec(&signature::ECDSA_P521_SHA512_FIXED),
        Algorithm::RS256 => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::PS256 => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        Algorithm::EdDSA => Raw::Signature(
            ParsedPublicKey::new(&signature::ED25519, b64(jwk, "x")).expect("Ed25519 key"),
        ),
        Algorithm::HS256 => Raw::Mac(hmac::Key::new(hmac::HMAC_SHA256, &b64(jwk, "k"))),
        other => panic!("no raw verifier for {other}"),
    }
}

fn jsonwebtoken_alg(alg: Algorithm) -> Option<jsonwebtoken::Algorithm> {
    Some(match alg {
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        _ => return None,
    })
}

/// jsonwebtoken set up to check what the jwtd policy checks: iss, aud, exp
/// (required) and nbf, with the same leeway.
fn jsonwebtoken_setup(
    alg: Algorithm,
    jwk: &Value,
) -> Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)> {
    let alg = jsonwebtoken_alg(alg)?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).expect("jsonwebtoken reads the JWK");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("jsonwebtoken DecodingKey");
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.leeway = LEEWAY;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    Some((key, validation))
}

fn policy() -> Policy {
    Policy {
        issuer: Some(ISSUER.into()),
        audiences: vec![AUDIENCE.into()],
        leeway: LEEWAY,
        required: vec!["exp".into()],
        ..Policy::default()
    }
}

fn case(alg: Algorithm, now: i64) -> Case {
    let key = SigningKey::generate(alg)
        .expect("key generation")
        .with_kid(Some(format!("key-{}-2026-11", alg.as_str().to_lowercase())));
    let token = key
        .mint(&claims(now), &Default::default())
        .expect("minting");
    let jwk = key.public_jwk();
    let jwks = json!({ "keys": [jwk] }).to_string();
    let keys = KeySet::from_jwks(jwks.as_bytes()).expect("key set");
    let dot = token.rfind('.').expect("compact JWS");
    let signature = URL_SAFE_NO_PAD
        .decode(&token[dot + 1..])
        .expect("signature base64url");
    Case {
        alg,
        raw: raw_verifier(alg, &jwk),
        jsonwebtoken: jsonwebtoken_setup(alg, &jwk),
        token,
        keys,
        dot,
        signature,
    }
}

fn bench_verify(c: &mut Criterion) {
    let now = unix_now();
    let policy = policy();
    for alg in ALGORITHMS {
        let case = case(alg, now);
        let token = case.token.as_bytes();
        let signing_input = &token[..case.dot];

        // Every case must succeed before it is timed.
        let verified = verify(token, &case.keys, &policy, now).expect("jwtd accepts the token");
        assert_eq!(verified.alg, case.alg);
        assert!(case.raw.verify(signing_input, &case.signature));
        if let Some((key, validation)) = &case.jsonwebtoken {
            jsonwebtoken::decode::<Value>(&case.token, key, validation)
                .expect("jsonwebtoken accepts the token");
        }

        let mut group = c.benchmark_group(format!("verify/{}", alg.as_str()));
        group.throughput(Throughput::Elements(1));
        group.bench_function("raw", |b| {
            b.iter(|| {
                case.raw
                    .verify(black_box(signing_input), black_box(&case.signature))
            })
        });
        group.bench_function("jwtd", |b| {
            b.iter(|| {
                verify(
                    black_box(token),
                    black_box(&case.keys),
                    black_box(&policy),
                    black_box(now),
                )
            })
        });
        if let Some((key, validation)) = &case.jsonwebtoken {
            group.bench_function("jsonwebtoken", |b| {
                b.iter(|| {
                    jsonwebtoken::decode::<Value>(
                        black_box(case.token.as_str()),
                        black_box(key),
                        black_box(validation),
                    )
                })
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_verify
}
criterion_main!(benches);
