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
//! Criterion times each case on its own (groups `verify/<ALG>/<case>`). The
//! figure of merit is the ratio raw/jwtd, not the absolute time, and on a
//! shared VM the CPU speed drifts between criterion's cases by more than the
//! few percent being measured. So after criterion, every selected algorithm
//! is measured once more with the cases interleaved in short rounds, and a
//! table of per-round ratios is printed (see [`paired`] and BENCHMARKS.md).
//!
//! Run with `cargo bench --bench verify`.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jwtd::sign::SigningKey;
use jwtd::verify::KeySet;
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
    /// Boxed as in jwtd's own key handles (an `hmac::Key` is about 1.2 KB).
    Mac(Box<hmac::Key>),
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
        Algorithm::HS256 => Raw::Mac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, &b64(jwk, "k")))),
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

/// Target duration of one timed batch in the paired measurement.
const BATCH: Duration = Duration::from_millis(3);
/// Time spent on the paired measurement of one algorithm.
const PAIRED_BUDGET: Duration = Duration::from_millis(2500);
const PAIRED_MIN_ROUNDS: usize = 30;

/// Calls `f` `n` times; wall-clock nanoseconds per call.
fn ns_per_call<O>(n: u64, f: &impl Fn() -> O) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// How many calls of `f` take about [`BATCH`] (also warms it up).
fn calls_per_batch<O>(f: &impl Fn() -> O) -> u64 {
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        let elapsed = start.elapsed();
        if elapsed >= BATCH / 4 {
            let scaled = n as f64 * BATCH.as_secs_f64() / elapsed.as_secs_f64();
            return (scaled.ceil() as u64).max(1);
        }
        n *= 2;
    }
}

/// The median of a sample with its distribution-free 95% confidence interval
/// (the order statistics n/2 -/+ 0.98 sqrt(n)).
#[derive(Clone, Copy)]
struct Spread {
    lo: f64,
    median: f64,
    hi: f64,
}

impl Spread {
    fn of(mut xs: Vec<f64>) -> Spread {
        xs.sort_by(f64::total_cmp);
        let last = (xs.len() - 1) as f64;
        let (mid, half) = (last / 2.0, 0.98 * (xs.len() as f64).sqrt());
        let at = |rank: f64| xs[rank.clamp(0.0, last) as usize];
        Spread {
            lo: at((mid - half).floor()),
            median: (at(mid.floor()) + at(mid.ceil())) / 2.0,
            hi: at((mid + half).ceil()),
        }
    }
}

/// One algorithm's paired result: per-call times and per-round ratios to raw.
struct Paired {
    alg: Algorithm,
    rounds: usize,
    raw: f64,
    jwtd: f64,
    jsonwebtoken: Option<f64>,
    jwtd_ratio: Spread,
    jsonwebtoken_ratio: Option<Spread>,
}

/// Times the cases in interleaved rounds (one batch of each per round, order
/// rotating) and takes the ratio within each round.
///
/// Criterion measures the cases one after another, several seconds apart, and
/// on a shared VM the speed of the CPU drifts by 10-20% over seconds (other
/// tenants, frequency). That drift hits the cases unequally and swamps a
/// difference of a few percent. Within one round of about 10 ms the cases see
/// the same machine, so the per-round ratio cancels the drift.
fn paired<A, B, C, OA, OB, OC>(alg: Algorithm, raw: &A, jwtd: &B, jwt: Option<&C>) -> Paired
where
    A: Fn() -> OA,
    B: Fn() -> OB,
    C: Fn() -> OC,
{
    let n_raw = calls_per_batch(raw);
    let n_jwtd = calls_per_batch(jwtd);
    let n_jwt = jwt.map(calls_per_batch);
    let mut times: [Vec<f64>; 3] = Default::default();
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < PAIRED_MIN_ROUNDS || start.elapsed() < PAIRED_BUDGET {
        for k in 0..3 {
            match (rounds + k) % 3 {
                0 => times[0].push(ns_per_call(n_raw, raw)),
                1 => times[1].push(ns_per_call(n_jwtd, jwtd)),
                _ => {
                    if let (Some(f), Some(n)) = (jwt, n_jwt) {
                        times[2].push(ns_per_call(n, f));
                    }
                }
            }
        }
        rounds += 1;
    }
    let ratios =
        |case: &[f64]| -> Vec<f64> { case.iter().zip(&times[0]).map(|(t, raw)| t / raw).collect() };
    let has_jwt = jwt.is_some();
    Paired {
        alg,
        rounds,
        raw: Spread::of(times[0].clone()).median,
        jwtd: Spread::of(times[1].clone()).median,
        jsonwebtoken: has_jwt.then(|| Spread::of(times[2].clone()).median),
        jwtd_ratio: Spread::of(ratios(&times[1])),
        jsonwebtoken_ratio: has_jwt.then(|| Spread::of(ratios(&times[2]))),
    }
}

fn time(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn ratio(s: Spread) -> String {
    format!(
        "{:.3} [{:.3}, {:.3}]  {:5.1}%",
        s.median,
        s.lo,
        s.hi,
        100.0 / s.median
    )
}

fn print_paired(results: &[Paired]) {
    if results.is_empty() {
        return;
    }
    println!();
    println!(
        "Paired ratios: the cases interleaved in rounds of ~{} ms per case, {:.1} s per algorithm.",
        BATCH.as_millis(),
        PAIRED_BUDGET.as_secs_f64()
    );
    println!(
        "Time ratio to raw: median of the per-round ratios [95% CI of the median], then % of raw throughput (1 / median)."
    );
    println!(
        "{:<6} {:>6} {:>10} {:>10} {:>12}   {:<31} {:<31}",
        "alg", "rounds", "raw", "jwtd", "jsonwebtoken", "jwtd / raw", "jsonwebtoken / raw"
    );
    for p in results {
        println!(
            "{:<6} {:>6} {:>10} {:>10} {:>12}   {:<31} {:<31}",
            p.alg.as_str(),
            p.rounds,
            time(p.raw),
            time(p.jwtd),
            p.jsonwebtoken.map_or_else(|| "n/a".to_owned(), time),
            ratio(p.jwtd_ratio),
            p.jsonwebtoken_ratio
                .map_or_else(|| "n/a (no ES512 in jsonwebtoken)".to_owned(), ratio),
        );
    }
}

/// True when criterion measures: under `cargo bench`, but not with `--test`
/// (also what `cargo test --benches` amounts to), `--list` or `--profile-time`.
fn timing_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a.starts_with("--profile-time"))
}

fn bench_verify(c: &mut Criterion) {
    let now = unix_now();
    let policy = policy();
    let timing = timing_run();
    let mut results = Vec::new();
    for alg in ALGORITHMS {
        let case = case(alg, now);
        let token_str = case.token.as_str();
        let token = token_str.as_bytes();
        let signing_input = &token[..case.dot];

        let raw = || {
            case.raw
                .verify(black_box(signing_input), black_box(&case.signature))
        };
        let jwtd = || {
            verify(
                black_box(token),
                black_box(&case.keys),
                black_box(&policy),
                black_box(now),
            )
        };
        let jwt = case.jsonwebtoken.as_ref().map(|(key, validation)| {
            move || {
                jsonwebtoken::decode::<Value>(
                    black_box(token_str),
                    black_box(key),
                    black_box(validation),
                )
            }
        });

        // Every case must succeed before it is timed.
        assert!(raw(), "raw aws-lc-rs rejects the {alg} token");
        let verified = jwtd().expect("jwtd accepts the token");
        assert_eq!(verified.alg, Some(case.alg));
        if let Some(jwt) = &jwt {
            jwt().expect("jsonwebtoken accepts the token");
        }

        // Set when criterion's filter selects this algorithm.
        let selected = Cell::new(false);
        let mut group = c.benchmark_group(format!("verify/{}", alg.as_str()));
        group.throughput(Throughput::Elements(1));
        group.bench_function("raw", |b| {
            selected.set(true);
            b.iter(&raw)
        });
        group.bench_function("jwtd", |b| {
            selected.set(true);
            b.iter(&jwtd)
        });
        if let Some(jwt) = &jwt {
            group.bench_function("jsonwebtoken", |b| {
                selected.set(true);
                b.iter(jwt)
            });
        }
        group.finish();

        if timing && selected.get() {
            results.push(paired(alg, &raw, &jwtd, jwt.as_ref()));
        }
    }
    print_paired(&results);
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
