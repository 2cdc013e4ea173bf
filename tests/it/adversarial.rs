//! Hostile tokens beyond the conformance vectors.
//!
//! Every test crafts what an attacker (or a broken issuer) would send and
//! asserts the exact reject reason, plus the header anomalies where they
//! matter. Tokens whose hostile content sits behind a *valid* signature are
//! built with `SigningKey::sign_parts`, so the checks that only run after the
//! signature holds (claims, payload JSON, `typ`) are really reached.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as awssig, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jwtd::sign::SigningKey;
use jwtd::verify::{
    AlgSet, Algorithm, Anomalies, Curve, Policy, Reject, Rejection, Verified, verify,
};
use jwtd::verify::{KeyProblem, KeySet, KeySetError};
use serde_json::{Map, Value, json};

use crate::support::keypair;

/// The Unix time most tests verify at.
const NOW: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text)
        .expect("test token segment is base64url")
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The verdict must be a rejection; returns it.
#[track_caller]
fn rejected(token: impl AsRef<[u8]>, keys: &KeySet, policy: &Policy, now: i64) -> Rejection {
    let token = token.as_ref();
    match verify(token, keys, policy, now) {
        Ok(v) => panic!(
            "token was accepted ({v:?}): {}",
            String::from_utf8_lossy(token)
        ),
        Err(r) => r,
    }
}

/// The reason of a verdict that must be a rejection.
#[track_caller]
fn reason(token: impl AsRef<[u8]>, keys: &KeySet, policy: &Policy, now: i64) -> Reject {
    rejected(token, keys, policy, now).reason
}

/// The verdict must be an acceptance; returns it.
#[track_caller]
fn accepted(token: impl AsRef<[u8]>, keys: &KeySet, policy: &Policy, now: i64) -> Verified {
    let token = token.as_ref();
    match verify(token, keys, policy, now) {
        Ok(v) => v,
        Err(r) => panic!(
            "token was refused ({r:?}): {}",
            String::from_utf8_lossy(token)
        ),
    }
}

fn good_claims() -> Value {
    json!({"sub": "alice", "iat": NOW, "exp": NOW + 3600})
}

fn good_payload() -> Vec<u8> {
    serde_json::to_vec(&good_claims()).unwrap()
}

/// Header JSON `{"alg":..,"typ":"JWT","kid":..}`.
fn header(alg: &str, kid: Option<&str>) -> Vec<u8> {
    let mut h = Map::new();
    h.insert("alg".into(), alg.into());
    h.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        h.insert("kid".into(), kid.into());
    }
    serde_json::to_vec(&Value::Object(h)).unwrap()
}

fn extra(members: Value) -> Map<String, Value> {
    match members {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn segments(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    [parts[0], parts[1], parts[2]]
}

fn signature_of(token: &str) -> Vec<u8> {
    unb64(segments(token)[2])
}

/// `token` with its signature replaced by `sig` (encoded canonically).
fn with_signature(token: &str, sig: &[u8]) -> String {
    let [h, p, _] = segments(token);
    format!("{h}.{p}.{}", b64(sig))
}

/// `token` with its signature segment replaced by `sig` verbatim.
fn with_signature_text(token: &str, sig: &str) -> String {
    let [h, p, _] = segments(token);
    format!("{h}.{p}.{sig}")
}

/// A compact JWS HMAC-signed with an arbitrary secret.
fn hmac_token(alg: Algorithm, secret: &[u8], header: &[u8], payload: &[u8]) -> String {
    let algorithm = match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        other => panic!("{other} is not an HMAC algorithm"),
    };
    let input = format!("{}.{}", b64(header), b64(payload));
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn keyset(jwks: &[Value]) -> KeySet {
    KeySet::from_jwks(json!({ "keys": jwks }).to_string().as_bytes()).expect("key set loads")
}

fn policy_with(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    assert!(p.problems().is_empty(), "test policy invalid: {p:?}");
    p
}

/// Signs `payload` (raw JSON text) with `key` under a plain header for its alg.
fn signed_payload(key: &SigningKey, payload: &str) -> String {
    let h = header(key.alg().as_str(), key.kid());
    key.sign_parts(&h, payload.as_bytes()).unwrap()
}

fn hs256() -> (SigningKey, KeySet) {
    keypair(Algorithm::HS256, "k1")
}

/// Builds a policy with the given leeway and required claims, verifies a
/// token carrying `claims` and returns the verdict.
fn verdict_for_claims(
    claims: &str,
    now: i64,
    f: impl FnOnce(&mut Policy),
) -> Result<Verified, Reject> {
    let (key, keys) = hs256();
    let token = signed_payload(&key, claims);
    let policy = policy_with(f);
    verify(token.as_bytes(), &keys, &policy, now).map_err(|r| r.reason)
}

// ---------------------------------------------------------------------------
// alg: none
// ---------------------------------------------------------------------------

#[test]
fn alg_none_is_refused_in_every_spelling() {
    let (key, keys) = hs256();
    let spellings = [
        "none", "None", "NONE", "nOnE", "NoNe", " none", "none ", "\tnone", "none\n",
    ];
    for alg in spellings {
        let h = header(alg, Some("k1"));
        let p = good_payload();
        // Otherwise perfect: a known kid, valid claims, and a signature that
        // the trusted key really made over this header and payload.
        let perfect = key.sign_parts(&h, &p).unwrap();
        let unsigned = with_signature_text(&perfect, "");
        let garbage_b64 = with_signature(&perfect, b"garbage");
        let not_b64 = with_signature_text(&perfect, "!!not*base64!!");
        let huge = with_signature_text(&perfect, &"A".repeat(5000));
        for token in [perfect, unsigned, garbage_b64, not_b64, huge] {
            let r = rejected(&token, &keys, &Policy::default(), NOW);
            assert_eq!(r.reason, Reject::AlgNone, "alg {alg:?}: {token}");
            assert!(r.anomalies.is_empty());
        }
    }
}

#[test]
fn alg_none_wins_over_every_later_header_defect() {
    let (key, keys) = hs256();
    let only_rs256 = policy_with(|p| p.algorithms = [Algorithm::RS256].into_iter().collect());
    let h = json!({
        "alg": "none", "kid": "nobody", "crit": ["exp"], "b64": false,
        "jwk": {"kty": "oct", "k": "AAAA"},
    });
    let token = key
        .sign_parts(h.to_string().as_bytes(), b"{\"exp\":\"x\"}")
        .unwrap();
    for policy in [Policy::default(), only_rs256] {
        let r = rejected(&token, &keys, &policy, NOW);
        assert_eq!(r.reason, Reject::AlgNone);
        assert_eq!(r.anomalies, Anomalies::EMBEDDED_JWK);
    }
}

#[test]
fn unknown_or_misspelled_algorithms_are_not_allowed() {
    let (key, keys) = hs256();
    for alg in [
        "hs256",
        "Hs256",
        "HS256 ",
        " HS256",
        "HS256\u{0}",
        "HS1",
        "ES256K",
        "Ed25519",
        "EDDSA",
        "RSA-OAEP",
        "",
    ] {
        let token = key
            .sign_parts(&header(alg, Some("k1")), &good_payload())
            .unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::AlgorithmNotAllowed,
            "alg {alg:?}"
        );
    }
}

#[test]
fn missing_or_non_string_alg_is_a_header_error() {
    let (key, keys) = hs256();
    for h in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":256}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"alg":{"name":"HS256"}}"#,
        r#"{"alg":true}"#,
    ] {
        let token = key.sign_parts(h.as_bytes(), &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Header,
            "{h}"
        );
    }
}

#[test]
fn algorithm_outside_the_allow_list_is_refused_even_with_a_valid_signature() {
    let (key, keys) = keypair(Algorithm::ES256, "ec1");
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    let only_rs256 = policy_with(|p| p.algorithms = [Algorithm::RS256].into_iter().collect());
    assert_eq!(
        reason(&token, &keys, &only_rs256, NOW),
        Reject::AlgorithmNotAllowed
    );
    let es256_too =
        policy_with(|p| p.algorithms = [Algorithm::RS256, Algorithm::ES256].into_iter().collect());
    accepted(&token, &keys, &es256_too, NOW);
}

// ---------------------------------------------------------------------------
// Algorithm confusion
// ---------------------------------------------------------------------------

/// Every form of an RSA public key an attacker might feed to HMAC.
fn rsa_public_key_forms(key: &SigningKey) -> Vec<(&'static str, Vec<u8>)> {
    let jwk = key.public_jwk();
    let n = unb64(jwk["n"].as_str().unwrap());
    let e = unb64(jwk["e"].as_str().unwrap());
    let spki = aws_lc_rs::rsa::PublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    }
    .as_der()
    .expect("SPKI DER")
    .as_ref()
    .to_vec();
    let pkcs1 = aws_lc_rs::rsa::PublicKey::from_der(&spki)
        .expect("parse SPKI")
        .as_ref()
        .to_vec();
    let pem = jwtd::verify::pem::encode("PUBLIC KEY", &spki);
    let pkcs1_pem = jwtd::verify::pem::encode("RSA PUBLIC KEY", &pkcs1);
    vec![
        ("JWK text", jwk.to_string().into_bytes()),
        (
            "JWKS text",
            json!({ "keys": [jwk.clone()] }).to_string().into_bytes(),
        ),
        ("n bytes", n.clone()),
        (
            "n base64url text",
            jwk["n"].as_str().unwrap().as_bytes().to_vec(),
        ),
        ("SPKI DER", spki),
        ("PKCS#1 DER", pkcs1),
        ("SPKI PEM", pem.clone().into_bytes()),
        (
            "SPKI PEM without final newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
        ("PKCS#1 PEM", pkcs1_pem.into_bytes()),
    ]
}

#[test]
fn rsa_public_key_used_as_hmac_secret_is_refused() {
    let (key, keys) = keypair(Algorithm::RS256, "rsa1");
    let pem = jwtd::verify::pem::encode(
        "PUBLIC KEY",
        &rsa_public_key_forms(&key)
            .into_iter()
            .find(|(name, _)| *name == "SPKI DER")
            .unwrap()
            .1,
    );
    // The same RSA key loaded from PEM, with and without a kid; kid-less PEM
    // keys stand for any kid, so they are named by every token's kid.
    let pem_any_kid = KeySet::from_pem(&pem, None).unwrap();
    let pem_with_kid = KeySet::from_pem(&pem, Some("rsa1")).unwrap();
    let payload = good_payload();
    for (form, secret) in rsa_public_key_forms(&key) {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let named = hmac_token(alg, &secret, &header(alg.as_str(), Some("rsa1")), &payload);
            let anonymous = hmac_token(alg, &secret, &header(alg.as_str(), None), &payload);
            for set in [&keys, &pem_any_kid, &pem_with_kid] {
                assert_eq!(
                    reason(&named, set, &Policy::default(), NOW),
                    Reject::KeyAlgorithmMismatch,
                    "{alg} keyed with {form}, kid rsa1"
                );
                assert_eq!(
                    reason(&anonymous, set, &Policy::default(), NOW),
                    Reject::UnknownKey,
                    "{alg} keyed with {form}, no kid"
                );
            }
        }
    }
}

#[test]
fn ec_key_named_by_kid_refuses_every_other_algorithm() {
    let (ec_key, keys) = keypair(Algorithm::ES256, "ec1");
    let jwk = ec_key.public_jwk();
    let mut point = vec![4u8];
    point.extend(unb64(jwk["x"].as_str().unwrap()));
    point.extend(unb64(jwk["y"].as_str().unwrap()));
    let payload = good_payload();

    // Asymmetric attackers: each signs correctly with its own key of another
    // family or curve, naming the EC key's kid.
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ] {
        let attacker = SigningKey::generate(alg).unwrap();
        let named = attacker
            .sign_parts(&header(alg.as_str(), Some("ec1")), &payload)
            .unwrap();
        let anonymous = attacker
            .sign_parts(&header(alg.as_str(), None), &payload)
            .unwrap();
        assert_eq!(
            reason(&named, &keys, &Policy::default(), NOW),
            Reject::KeyAlgorithmMismatch,
            "{alg} naming ec1"
        );
        assert_eq!(
            reason(&anonymous, &keys, &Policy::default(), NOW),
            Reject::UnknownKey,
            "{alg} without kid"
        );
    }
    // HMAC keyed with the public point, the JWK text or x alone.
    for secret in [
        point.clone(),
        jwk.to_string().into_bytes(),
        unb64(jwk["x"].as_str().unwrap()),
    ] {
        let named = hmac_token(
            Algorithm::HS256,
            &secret,
            &header("HS256", Some("ec1")),
            &payload,
        );
        assert_eq!(
            reason(&named, &keys, &Policy::default(), NOW),
            Reject::KeyAlgorithmMismatch
        );
        let anonymous = hmac_token(Algorithm::HS256, &secret, &header("HS256", None), &payload);
        assert_eq!(
            reason(&anonymous, &keys, &Policy::default(), NOW),
            Reject::UnknownKey
        );
    }
}

#[test]
fn hmac_key_named_by_kid_refuses_asymmetric_algorithms() {
    let (_, keys) = hs256();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let attacker = SigningKey::generate(alg).unwrap();
        let token = attacker
            .sign_parts(&header(alg.as_str(), Some("k1")), &good_payload())
            .unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::KeyAlgorithmMismatch,
            "{alg}"
        );
    }
}

#[test]
fn jwk_alg_binds_an_rsa_key_to_that_one_algorithm() {
    let key = SigningKey::generate(Algorithm::RS256)
        .unwrap()
        .with_kid(Some("r1".into()));
    let jwk = key.public_jwk();
    assert_eq!(jwk["alg"], "RS256");
    let keys = keyset(&[jwk]);
    let rs256 = key.mint(&good_claims(), &Map::new()).unwrap();
    accepted(&rs256, &keys, &Policy::default(), NOW);

    // The same private key, signing PSS and other hashes: a real signature by
    // the right key, but the JWK restricted the key to RS256.
    let mut key = key;
    for alg in [
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::RS384,
        Algorithm::RS512,
    ] {
        key = key.with_alg(alg).unwrap();
        let named = key.mint(&good_claims(), &Map::new()).unwrap();
        assert_eq!(
            reason(&named, &keys, &Policy::default(), NOW),
            Reject::KeyAlgorithmMismatch,
            "{alg} with kid"
        );
        let anonymous = key
            .sign_parts(&header(alg.as_str(), None), &good_payload())
            .unwrap();
        assert_eq!(
            reason(&anonymous, &keys, &Policy::default(), NOW),
            Reject::UnknownKey,
            "{alg} without kid"
        );
    }
}

#[test]
fn jwk_alg_binds_an_hmac_secret_to_that_one_algorithm() {
    // A 64-byte secret could serve all three HMACs; its JWK says HS256 only.
    let secret = [7u8; 64];
    let keys = keyset(&[json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": b64(secret)})]);
    let payload = good_payload();
    let ok = hmac_token(
        Algorithm::HS256,
        &secret,
        &header("HS256", Some("h")),
        &payload,
    );
    accepted(&ok, &keys, &Policy::default(), NOW);
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = hmac_token(alg, &secret, &header(alg.as_str(), Some("h")), &payload);
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::KeyAlgorithmMismatch,
            "{alg}"
        );
    }
}

#[test]
fn jwk_alg_contradicting_the_key_type_or_curve_is_skipped_at_load() {
    let p384 = SigningKey::generate(Algorithm::ES384)
        .unwrap()
        .with_kid(Some("p384".into()));
    let mut lying = p384.public_jwk();
    lying["alg"] = "ES256".into();

    match KeySet::from_jwks(json!({ "keys": [lying.clone()] }).to_string().as_bytes()) {
        Err(KeySetError::NoUsableKey(skipped)) => {
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].index, 0);
            assert_eq!(skipped[0].kid.as_deref(), Some("p384"));
            assert_eq!(
                skipped[0].problem,
                KeyProblem::AlgMismatch {
                    alg: Algorithm::ES256,
                    kind: "P-384"
                }
            );
        }
        other => panic!("expected NoUsableKey, got {other:?}"),
    }

    // Next to a good key the set loads, but the lying key is not in it.
    let (good, good_keys_only) = keypair(Algorithm::ES256, "good");
    let rsa = SigningKey::generate(Algorithm::RS256)
        .unwrap()
        .with_kid(Some("rsa-as-es".into()));
    let mut rsa_lying = rsa.public_jwk();
    rsa_lying["alg"] = "ES256".into();
    let oct_lying = json!({"kty": "oct", "kid": "oct-as-rs", "alg": "RS256", "k": b64([1u8; 32])});
    let keys = keyset(&[lying, good.public_jwk(), rsa_lying, oct_lying]);
    let problems: Vec<_> = keys
        .skipped()
        .iter()
        .map(|s| (s.index, s.problem.clone()))
        .collect();
    assert_eq!(
        problems,
        vec![
            (
                0,
                KeyProblem::AlgMismatch {
                    alg: Algorithm::ES256,
                    kind: "P-384"
                }
            ),
            (
                2,
                KeyProblem::AlgMismatch {
                    alg: Algorithm::ES256,
                    kind: "RSA"
                }
            ),
            (
                3,
                KeyProblem::AlgMismatch {
                    alg: Algorithm::RS256,
                    kind: "oct"
                }
            ),
        ]
    );
    assert_eq!(keys.keys().len(), good_keys_only.keys().len());

    // A correct ES384 token from the skipped key names a kid nobody has.
    let es384 = p384.mint(&good_claims(), &Map::new()).unwrap();
    assert_eq!(
        reason(&es384, &keys, &Policy::default(), NOW),
        Reject::UnknownKey
    );
    // The kid-less variant finds no key serving ES384 either.
    let es384_anonymous = p384
        .sign_parts(&header("ES384", None), &good_payload())
        .unwrap();
    assert_eq!(
        reason(&es384_anonymous, &keys, &Policy::default(), NOW),
        Reject::UnknownKey
    );
    accepted(
        good.mint(&good_claims(), &Map::new()).unwrap(),
        &keys,
        &Policy::default(),
        NOW,
    );
}

// ---------------------------------------------------------------------------
// Signatures: psychic ECDSA, DER, lengths, malleability
// ---------------------------------------------------------------------------

/// The order n of each NIST curve, big-endian, full coordinate length.
fn curve_order(curve: Curve) -> Vec<u8> {
    hex(match curve {
        Curve::P256 => "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        Curve::P384 => {
            "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"
        }
        Curve::P521 => {
            "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"
        }
    })
}

const EC_ALGS: [(Algorithm, Curve); 3] = [
    (Algorithm::ES256, Curve::P256),
    (Algorithm::ES384, Curve::P384),
    (Algorithm::ES512, Curve::P521),
];

#[test]
fn psychic_ecdsa_signatures_are_refused() {
    for (alg, curve) in EC_ALGS {
        let len = curve.coordinate_len();
        let (key, keys) = keypair(alg, "ec");
        let token = key.mint(&good_claims(), &Map::new()).unwrap();
        accepted(&token, &keys, &Policy::default(), NOW);
        let valid = signature_of(&token);
        assert_eq!(valid.len(), 2 * len);
        let (r, s) = valid.split_at(len);
        let n = curve_order(curve);
        assert_eq!(n.len(), len);
        let zero = vec![0u8; len];
        let mut one = vec![0u8; len];
        one[len - 1] = 1;
        let mut n_minus_1 = n.clone();
        n_minus_1[len - 1] -= 1; // n is odd: no borrow.
        let mut n_plus_1 = n.clone();
        n_plus_1[len - 1] += 1; // n's last byte is below 0xff: no carry.

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("r = s = 0", [&zero[..], &zero].concat()),
            ("r = s = n", [&n[..], &n].concat()),
            ("r = s = n + 1", [&n_plus_1[..], &n_plus_1].concat()),
            ("r = s = 1", [&one[..], &one].concat()),
            ("r = s = n - 1", [&n_minus_1[..], &n_minus_1].concat()),
            ("all 0xff", vec![0xff; 2 * len]),
            ("r = 0, valid s", [&zero[..], s].concat()),
            ("valid r, s = 0", [r, &zero[..]].concat()),
            ("r = n, valid s", [&n[..], s].concat()),
            ("valid r, s = n", [r, &n[..]].concat()),
            ("r and s swapped", [s, r].concat()),
        ];
        for (what, sig) in cases {
            assert_eq!(sig.len(), 2 * len);
            let forged = with_signature(&token, &sig);
            assert_eq!(
                reason(&forged, &keys, &Policy::default(), NOW),
                Reject::BadSignature,
                "{alg}: {what}"
            );
            let [_, p, _] = segments(&forged);
            let without_kid = format!("{}.{p}.{}", b64(header(alg.as_str(), None)), b64(&sig));
            assert_eq!(
                reason(&without_kid, &keys, &Policy::default(), NOW),
                Reject::BadSignature,
                "{alg} without kid: {what}"
            );
        }
    }
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=127 => out.push(len as u8),
        128..=255 => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let body = &bytes[first..];
    let pad = body[0] & 0x80 != 0;
    let mut out = vec![0x02];
    der_length(&mut out, body.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(body);
    out
}

/// ASN.1 `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
fn p1363_to_der(sig: &[u8]) -> Vec<u8> {
    let (r, s) = sig.split_at(sig.len() / 2);
    let body = [der_integer(r), der_integer(s)].concat();
    let mut out = vec![0x30];
    der_length(&mut out, body.len());
    out.extend(body);
    out
}

#[test]
fn der_encoded_ecdsa_signature_is_refused_even_when_valid() {
    for (alg, curve) in EC_ALGS {
        let (key, keys) = keypair(alg, "ec");
        let token = key.mint(&good_claims(), &Map::new()).unwrap();
        let der = p1363_to_der(&signature_of(&token));

        // The DER form is a genuinely valid ASN.1 ECDSA signature...
        let jwk = key.public_jwk();
        let mut point = vec![4u8];
        point.extend(unb64(jwk["x"].as_str().unwrap()));
        point.extend(unb64(jwk["y"].as_str().unwrap()));
        let asn1: &'static dyn awssig::VerificationAlgorithm = match curve {
            Curve::P256 => &awssig::ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &awssig::ECDSA_P384_SHA384_ASN1,
            Curve::P521 => &awssig::ECDSA_P521_SHA512_ASN1,
        };
        let [h, p, _] = segments(&token);
        UnparsedPublicKey::new(asn1, &point)
            .verify(format!("{h}.{p}").as_bytes(), &der)
            .expect("the DER signature is valid ASN.1 ECDSA");

        // ...but JWS requires the fixed-size form (RFC 7518 3.4).
        assert_eq!(
            reason(with_signature(&token, &der), &keys, &Policy::default(), NOW),
            Reject::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn signature_one_byte_short_or_long_is_refused() {
    for alg in Algorithm::ALL {
        let (key, keys) = keypair(alg, "k");
        let token = key.mint(&good_claims(), &Map::new()).unwrap();
        accepted(&token, &keys, &Policy::default(), NOW);
        let sig = signature_of(&token);
        let short = &sig[..sig.len() - 1];
        let long_end = [&sig[..], &[0]].concat();
        let long_start = [&[0][..], &sig].concat();
        let dup_last = [&sig[..], &sig[sig.len() - 1..]].concat();
        for (what, bad) in [
            ("one byte short", short.to_vec()),
            ("zero appended", long_end),
            ("zero prepended", long_start),
            ("last byte repeated", dup_last),
            ("first half only", sig[..sig.len() / 2].to_vec()),
            ("single byte", sig[..1].to_vec()),
        ] {
            assert_eq!(
                reason(with_signature(&token, &bad), &keys, &Policy::default(), NOW),
                Reject::BadSignature,
                "{alg}: {what}"
            );
        }
    }
}

#[test]
fn eddsa_signature_with_non_canonical_s_is_refused() {
    // S + L verifies the same equation as S; RFC 8032 5.1.7 requires S < L.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let (key, keys) = keypair(Algorithm::EdDSA, "ed");
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    accepted(&token, &keys, &Policy::default(), NOW);
    let mut sig = signature_of(&token);
    let mut carry = 0u16;
    for (i, l) in L.iter().enumerate() {
        let sum = u16::from(sig[32 + i]) + u16::from(*l) + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 32 bytes");
    assert_eq!(
        reason(with_signature(&token, &sig), &keys, &Policy::default(), NOW),
        Reject::BadSignature
    );
    // All-zero R and S (R is then a small-order point).
    assert_eq!(
        reason(
            with_signature(&token, &[0u8; 64]),
            &keys,
            &Policy::default(),
            NOW
        ),
        Reject::BadSignature
    );
}

#[test]
fn truncated_hmac_tag_is_refused() {
    let (key, keys) = keypair(Algorithm::HS512, "h");
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    let tag = signature_of(&token);
    for len in [1, 10, 16, 32, 48, 63] {
        assert_eq!(
            reason(
                with_signature(&token, &tag[..len]),
                &keys,
                &Policy::default(),
                NOW
            ),
            Reject::BadSignature,
            "tag truncated to {len} bytes"
        );
    }
}

#[test]
fn signature_longer_than_any_key_produces_is_refused_without_decoding() {
    let (key, keys) = hs256();
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    // 1025 bytes: more than RSA-8192 produces.
    let too_long = with_signature(&token, &[0x5a; 1025]);
    assert_eq!(
        reason(&too_long, &keys, &Policy::default(), NOW),
        Reject::BadSignature
    );
    // Length is judged before the alphabet: garbage this long is not
    // decoded at all.
    let garbage = with_signature_text(&token, &"!".repeat(2000));
    assert_eq!(
        reason(&garbage, &keys, &Policy::default(), NOW),
        Reject::BadSignature
    );
}

// ---------------------------------------------------------------------------
// kid
// ---------------------------------------------------------------------------

#[test]
fn hostile_kid_strings_name_no_key() {
    let (hmac_key, hmac_keys) = hs256();
    let rsa = SigningKey::generate(Algorithm::RS256)
        .unwrap()
        .with_kid(Some("k1".into()));
    let rsa_keys = keyset(&[rsa.public_jwk()]);
    let long = "k".repeat(10 * 1024);
    let kids = [
        "../../dev/null",
        "../../../../../../etc/passwd",
        "/dev/null",
        "file:///dev/null",
        "https://attacker.example/.well-known/jwks.json",
        "' OR 1=1 --",
        "k1' OR '1'='1",
        "\"; DROP TABLE keys; --",
        "$(id)",
        "{{kid}}",
        "\u{0}",
        "k1\u{0}",
        "\u{0}k1",
        "k1 ",
        " k1",
        "K1",
        "k\u{2081}",
        "k1\n",
        "%6B1",
        "",
        &long,
    ];
    for kid in kids {
        for (key, keys) in [(&hmac_key, &hmac_keys), (&rsa, &rsa_keys)] {
            // Signed by the trusted key itself: the kid is the only defect.
            let token = key
                .sign_parts(&header(key.alg().as_str(), Some(kid)), &good_payload())
                .unwrap();
            let r = rejected(&token, keys, &Policy::default(), NOW);
            assert_eq!(
                r.reason,
                Reject::UnknownKey,
                "kid {:?}",
                &kid[..kid.len().min(40)]
            );
        }
    }
}

#[test]
fn kid_of_wrong_json_type_is_a_header_error() {
    let (key, keys) = hs256();
    for kid in [
        "1",
        "1.5",
        "-0",
        "true",
        "false",
        "null",
        "{}",
        r#"{"kid":"k1"}"#,
        r#"["k1"]"#,
        "[]",
    ] {
        let h = format!(r#"{{"alg":"HS256","kid":{kid}}}"#);
        let token = key.sign_parts(h.as_bytes(), &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Header,
            "kid {kid}"
        );
    }
}

#[test]
fn kid_spelled_with_json_escapes_names_the_same_key() {
    let (key, keys) = hs256();
    let h = br#"{"alg":"HS256","kid":"\u006b\u0031"}"#;
    let token = key.sign_parts(h, &good_payload()).unwrap();
    let v = accepted(&token, &keys, &Policy::default(), NOW);
    assert_eq!(v.kid.as_deref(), Some("k1"));
}

#[test]
fn token_naming_a_kid_is_not_tried_against_kidless_jwks_keys() {
    let key = SigningKey::generate(Algorithm::HS256).unwrap();
    let keys = keyset(&[key.public_jwk()]);
    let anonymous = key.mint(&good_claims(), &Map::new()).unwrap();
    assert_eq!(
        accepted(&anonymous, &keys, &Policy::default(), NOW).kid,
        None
    );
    let named = key
        .sign_parts(&header("HS256", Some("whatever")), &good_payload())
        .unwrap();
    assert_eq!(
        reason(&named, &keys, &Policy::default(), NOW),
        Reject::UnknownKey
    );
}

// ---------------------------------------------------------------------------
// Embedded keys and key URLs
// ---------------------------------------------------------------------------

#[test]
fn attacker_key_embedded_as_jwk_is_never_trusted() {
    let (_, keys) = keypair(Algorithm::ES256, "trusted");
    let attacker = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("attacker".into()));
    let embedded = attacker.public_jwk();
    let cases = [
        // Naming the trusted kid: the trusted key is tried, and fails.
        (Some("trusted"), Reject::BadSignature),
        // No kid: every ES256 key is tried, and all fail.
        (None, Reject::BadSignature),
        // The attacker's own kid: no such trusted key.
        (Some("attacker"), Reject::UnknownKey),
    ];
    for (kid, expected) in cases {
        let mut h = extra(json!({"alg": "ES256", "jwk": embedded}));
        if let Some(kid) = kid {
            h.insert("kid".into(), kid.into());
        }
        let token = attacker
            .sign_parts(
                &serde_json::to_vec(&Value::Object(h)).unwrap(),
                &good_payload(),
            )
            .unwrap();
        let r = rejected(&token, &keys, &Policy::default(), NOW);
        assert_eq!(r.reason, expected, "kid {kid:?}");
        assert_eq!(r.anomalies, Anomalies::EMBEDDED_JWK, "kid {kid:?}");
    }
    // An embedded HMAC secret with HS256 against an ES256-only set.
    let secret = [9u8; 32];
    let h = json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(secret)}});
    let token = hmac_token(
        Algorithm::HS256,
        &secret,
        h.to_string().as_bytes(),
        &good_payload(),
    );
    let r = rejected(&token, &keys, &Policy::default(), NOW);
    assert_eq!(r.reason, Reject::UnknownKey);
    assert_eq!(r.anomalies, Anomalies::EMBEDDED_JWK);
}

#[test]
fn jku_x5u_and_x5c_headers_are_never_followed() {
    let (_, keys) = keypair(Algorithm::RS256, "trusted");
    let attacker = SigningKey::generate(Algorithm::RS256).unwrap();
    let fake_cert = STANDARD.encode(b"0\x82\x01\x00 not really a certificate");
    let cases = [
        (
            json!({"jku": "https://attacker.example/jwks.json"}),
            Anomalies::JKU,
        ),
        (
            json!({"x5u": "https://attacker.example/cert.pem"}),
            Anomalies::X5U,
        ),
        (json!({"x5c": [fake_cert]}), Anomalies::X5C),
        (
            json!({"jwk": attacker.public_jwk()}),
            Anomalies::EMBEDDED_JWK,
        ),
    ];
    let mut all = Map::new();
    let mut all_bits = Anomalies::NONE;
    for (members, bit) in &cases {
        all.extend(extra(members.clone()));
        all_bits.insert(*bit);
    }
    let mut cases = cases.to_vec();
    cases.push((Value::Object(all), all_bits));
    for (members, bits) in cases {
        for (kid, expected) in [
            (Some("trusted"), Reject::BadSignature),
            (None, Reject::BadSignature),
            (
                Some("https://attacker.example/jwks.json"),
                Reject::UnknownKey,
            ),
        ] {
            let mut h = extra(members.clone());
            h.insert("alg".into(), "RS256".into());
            if let Some(kid) = kid {
                h.insert("kid".into(), kid.into());
            }
            let token = attacker
                .sign_parts(
                    &serde_json::to_vec(&Value::Object(h)).unwrap(),
                    &good_payload(),
                )
                .unwrap();
            let r = rejected(&token, &keys, &Policy::default(), NOW);
            assert_eq!(r.reason, expected, "{members} kid {kid:?}");
            assert_eq!(r.anomalies, bits, "{members} kid {kid:?}");
        }
    }
    assert_eq!(all_bits.names().count(), 4);
}

#[test]
fn key_url_member_names_spelled_with_escapes_are_still_noticed() {
    let (key, keys) = hs256();
    let h =
        br#"{"alg":"HS256","kid":"k1","\u006a\u006bu":"https://attacker.example/","x\u0035c":[]}"#;
    let token = key.sign_parts(h, &good_payload()).unwrap();
    let v = accepted(&token, &keys, &Policy::default(), NOW);
    let mut expected = Anomalies::JKU;
    expected.insert(Anomalies::X5C);
    assert_eq!(v.anomalies, expected);
}

#[test]
fn valid_token_carrying_jku_is_accepted_and_reports_the_anomaly() {
    let (key, keys) = keypair(Algorithm::ES256, "trusted");
    let token = key
        .mint(
            &good_claims(),
            &extra(json!({"jku": "https://attacker.example/jwks.json"})),
        )
        .unwrap();
    let v = accepted(&token, &keys, &Policy::default(), NOW);
    assert_eq!(v.anomalies, Anomalies::JKU);
    assert_eq!(v.anomalies.names().collect::<Vec<_>>(), ["jku"]);
    assert_eq!(v.kid.as_deref(), Some("trusted"));

    let plain = key.mint(&good_claims(), &Map::new()).unwrap();
    assert!(
        accepted(&plain, &keys, &Policy::default(), NOW)
            .anomalies
            .is_empty()
    );
}

#[test]
fn anomalies_are_reported_with_early_rejections_but_not_unreadable_headers() {
    let (key, keys) = hs256();
    let crit = key
        .sign_parts(
            br#"{"alg":"HS256","kid":"k1","crit":["x"],"x5c":[],"x5u":"u"}"#,
            &good_payload(),
        )
        .unwrap();
    let r = rejected(&crit, &keys, &Policy::default(), NOW);
    assert_eq!(r.reason, Reject::Crit);
    let mut bits = Anomalies::X5C;
    bits.insert(Anomalies::X5U);
    assert_eq!(r.anomalies, bits);

    let expired = key
        .sign_parts(
            br#"{"alg":"HS256","kid":"k1","jku":"u"}"#,
            format!(r#"{{"exp":{}}}"#, NOW - 3600).as_bytes(),
        )
        .unwrap();
    let r = rejected(&expired, &keys, &Policy::default(), NOW);
    assert_eq!(r.reason, Reject::Expired);
    assert_eq!(r.anomalies, Anomalies::JKU);

    // A header that cannot be read reports nothing from it.
    let duplicate = key
        .sign_parts(br#"{"alg":"HS256","jwk":{},"jwk":{}}"#, &good_payload())
        .unwrap();
    let r = rejected(&duplicate, &keys, &Policy::default(), NOW);
    assert_eq!(r.reason, Reject::Header);
    assert!(r.anomalies.is_empty());
}

// ---------------------------------------------------------------------------
// Claim types and duplicates
// ---------------------------------------------------------------------------

const NOT_NUMBERS: [&str; 10] = [
    r#""1700000000""#,
    r#""1.7e9""#,
    "null",
    "true",
    "false",
    "[1700000000]",
    "[]",
    "{}",
    r#"{"$date":1700000000}"#,
    r#""""#,
];

const NOT_STRINGS: [&str; 9] = [
    "1",
    "-1",
    "1.5",
    "true",
    "false",
    "null",
    r#"["a"]"#,
    "{}",
    r#"{"a":"b"}"#,
];

#[test]
fn numeric_date_claims_of_wrong_type_are_refused() {
    for claim in ["exp", "nbf", "iat"] {
        for value in NOT_NUMBERS {
            let mut members = vec![r#""sub":"alice""#.to_owned()];
            if claim != "exp" {
                members.push(format!(r#""exp":{}"#, NOW + 3600));
            }
            members.push(format!(r#""{claim}":{value}"#));
            let payload = format!("{{{}}}", members.join(","));
            // With and without the claim being required.
            for required in [vec![], vec![claim.into()]] {
                assert_eq!(
                    verdict_for_claims(&payload, NOW, |p| p.required = required).unwrap_err(),
                    Reject::ClaimType,
                    "{payload}"
                );
            }
        }
    }
}

#[test]
fn string_claims_of_wrong_type_are_refused() {
    for claim in ["iss", "sub", "jti"] {
        for value in NOT_STRINGS {
            let payload = format!(r#"{{"exp":{},"{claim}":{value}}}"#, NOW + 3600);
            assert_eq!(
                verdict_for_claims(&payload, NOW, |_| {}).unwrap_err(),
                Reject::ClaimType,
                "{payload}"
            );
        }
    }
    // Even when an issuer is configured (type before value).
    let payload = format!(r#"{{"exp":{},"iss":["https://issuer"]}}"#, NOW + 3600);
    assert_eq!(
        verdict_for_claims(&payload, NOW, |p| p.issuer = Some("https://issuer".into()))
            .unwrap_err(),
        Reject::ClaimType
    );
}

#[test]
fn aud_of_wrong_type_is_refused() {
    for value in [
        "1",
        "true",
        "null",
        "{}",
        r#"{"aud":"api"}"#,
        r#"["api",1]"#,
        r#"[1,"api"]"#,
        r#"["api",null]"#,
        r#"["api",true]"#,
        r#"[["api"]]"#,
        r#"["api",["api"]]"#,
        r#"[{"a":"api"}]"#,
    ] {
        let payload = format!(r#"{{"exp":{},"aud":{value}}}"#, NOW + 3600);
        assert_eq!(
            verdict_for_claims(&payload, NOW, |_| {}).unwrap_err(),
            Reject::ClaimType,
            "{payload} without audience policy"
        );
        assert_eq!(
            verdict_for_claims(&payload, NOW, |p| p.audiences = vec!["api".into()]).unwrap_err(),
            Reject::ClaimType,
            "{payload} with audience policy"
        );
    }
}

#[test]
fn registered_claims_of_right_type_are_accepted() {
    // The control for the type tests: the same shapes, well typed.
    let payload = format!(
        r#"{{"exp":{},"nbf":{},"iat":{},"iss":"i","sub":"s","jti":"j","aud":["api","x"]}}"#,
        NOW + 10,
        NOW - 10,
        NOW - 10
    );
    let v = verdict_for_claims(&payload, NOW, |p| {
        p.issuer = Some("i".into());
        p.audiences = vec!["api".into()];
    })
    .unwrap();
    assert_eq!(v.claims.iss.as_deref(), Some("i"));
    assert_eq!(v.claims.sub.as_deref(), Some("s"));
    assert_eq!(v.claims.jti.as_deref(), Some("j"));
    assert_eq!(v.claims.exp, Some(NOW + 10));
    assert_eq!(v.claims.raw.as_ref(), payload.as_bytes());
}

#[test]
fn claims_are_not_judged_before_the_signature_holds() {
    let (_, keys) = hs256();
    let attacker = SigningKey::generate(Algorithm::HS256)
        .unwrap()
        .with_kid(Some("k1".into()));
    for payload in [
        r#"{"exp":"soon"}"#.to_owned(),
        format!(r#"{{"exp":{}}}"#, NOW - 3600),
        r#"{"exp":1,"exp":2}"#.to_owned(),
        "[]".to_owned(),
        "\u{feff}not json".to_owned(),
    ] {
        let token = signed_payload(&attacker, &payload);
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::BadSignature,
            "{payload}"
        );
    }
}

#[test]
fn duplicate_claims_are_refused() {
    let exp = NOW + 3600;
    for payload in [
        r#"{"exp":1,"exp":2}"#.to_owned(),
        format!(r#"{{"exp":{exp},"exp":{exp}}}"#),
        format!(r#"{{"exp":{exp},"\u0065xp":{exp}}}"#),
        format!(r#"{{"\u0065\u0078\u0070":{exp},"exp":{}}}"#, exp + 1),
        format!(r#"{{"exp":{exp},"sub":"alice","sub":"admin"}}"#),
        format!(r#"{{"exp":{exp},"iss":"a","\u0069ss":"b"}}"#),
        format!(r#"{{"exp":{exp},"aud":"a","aud":["b"]}}"#),
        format!(r#"{{"exp":{exp},"role":"user","role":"admin"}}"#),
        format!(r#"{{"exp":{exp},"x":{{"a":1,"a":2}}}}"#),
        format!(r#"{{"exp":{exp},"x":[{{"a":1,"\u0061":2}}]}}"#),
    ] {
        assert_eq!(
            verdict_for_claims(&payload, NOW, |_| {}).unwrap_err(),
            Reject::Payload,
            "{payload}"
        );
    }
    // Same names in sibling objects are fine.
    let payload = format!(r#"{{"exp":{exp},"x":{{"a":1}},"y":{{"a":1}}}}"#);
    verdict_for_claims(&payload, NOW, |_| {}).unwrap();
}

#[test]
fn duplicate_header_members_are_refused() {
    let (key, keys) = hs256();
    for h in [
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"HS256","\u0061lg":"none"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"k1","kid":"k1"}"#,
        r#"{"alg":"HS256","kid":"k1","\u006bid":"other"}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#,
        r#"{"alg":"HS256","jku":"a","jku":"b"}"#,
        r#"{"alg":"HS256","x":{"y":1,"y":1}}"#,
    ] {
        let token = key.sign_parts(h.as_bytes(), &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Header,
            "{h}"
        );
    }
}

// ---------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------

fn at(claims: &str, now: i64, leeway: u64) -> Result<Verified, Reject> {
    verdict_for_claims(claims, now, |p| {
        p.leeway = leeway;
        p.required = vec![];
    })
}

#[test]
fn exp_boundaries_with_and_without_leeway() {
    for leeway in [0u64, 30, 300] {
        let l = leeway as i64;
        // exp + leeway == now: expired.
        assert_eq!(
            at(&format!(r#"{{"exp":{}}}"#, NOW - l), NOW, leeway).unwrap_err(),
            Reject::Expired,
            "leeway {leeway}"
        );
        // exp + leeway == now + 1: still valid.
        let v = at(&format!(r#"{{"exp":{}}}"#, NOW - l + 1), NOW, leeway).unwrap();
        assert_eq!(v.claims.exp, Some(NOW - l + 1));
        // exp == now is valid only through leeway.
        let exp_now = at(&format!(r#"{{"exp":{NOW}}}"#), NOW, leeway);
        if leeway == 0 {
            assert_eq!(exp_now.unwrap_err(), Reject::Expired);
        } else {
            exp_now.unwrap();
        }
    }
    // leeway 0: exp == now + 1 accepted.
    at(&format!(r#"{{"exp":{}}}"#, NOW + 1), NOW, 0).unwrap();
}

#[test]
fn nbf_boundaries_with_and_without_leeway() {
    for leeway in [0u64, 30, 300] {
        let l = leeway as i64;
        let v = at(&format!(r#"{{"nbf":{}}}"#, NOW + l), NOW, leeway).unwrap();
        assert_eq!(v.claims.nbf, Some(NOW + l));
        assert_eq!(
            at(&format!(r#"{{"nbf":{}}}"#, NOW + l + 1), NOW, leeway).unwrap_err(),
            Reject::NotYetValid,
            "leeway {leeway}"
        );
    }
}

#[test]
fn iat_boundaries_with_and_without_leeway() {
    for leeway in [0u64, 30, 300] {
        let l = leeway as i64;
        let v = at(&format!(r#"{{"iat":{}}}"#, NOW + l), NOW, leeway).unwrap();
        assert_eq!(v.claims.iat, Some(NOW + l));
        assert_eq!(
            at(&format!(r#"{{"iat":{}}}"#, NOW + l + 1), NOW, leeway).unwrap_err(),
            Reject::IssuedInFuture,
            "leeway {leeway}"
        );
    }
}

#[test]
fn fractional_dates_are_rounded_towards_refusal() {
    // docs/verification.md: `exp` rounds down, `nbf`/`iat` round up, so a
    // fraction never extends validity. `now` is a whole second that may
    // stand for any instant within it.
    let v = at(r#"{"exp":100.5}"#, 99, 0).unwrap();
    assert_eq!(v.claims.exp, Some(100));
    assert_eq!(at(r#"{"exp":100.5}"#, 100, 0).unwrap_err(), Reject::Expired);
    assert_eq!(
        at(r#"{"exp":100.999}"#, 100, 0).unwrap_err(),
        Reject::Expired
    );
    at(r#"{"exp":100.5}"#, 100, 1).unwrap();

    assert_eq!(
        at(r#"{"nbf":100.5}"#, 100, 0).unwrap_err(),
        Reject::NotYetValid
    );
    let v = at(r#"{"nbf":100.5}"#, 101, 0).unwrap();
    assert_eq!(v.claims.nbf, Some(101));
    at(r#"{"nbf":100.001}"#, 100, 1).unwrap();

    assert_eq!(
        at(r#"{"iat":100.5}"#, 100, 0).unwrap_err(),
        Reject::IssuedInFuture
    );
    let v = at(r#"{"iat":100.5}"#, 101, 0).unwrap();
    assert_eq!(v.claims.iat, Some(101));

    // Exponent notation is a number like any other.
    let v = at(r#"{"exp":1.7e9}"#, 1_699_999_999, 0).unwrap();
    assert_eq!(v.claims.exp, Some(1_700_000_000));
}

#[test]
fn negative_dates_are_claim_type() {
    // A NumericDate before 1970 is no date jwtd accepts (docs/verification.md),
    // whatever the clock says: not "long expired", not "valid since ever".
    for claims in [
        r#"{"exp":-1}"#,
        r#"{"exp":-0.5}"#,
        r#"{"nbf":-100,"exp":100}"#,
        r#"{"nbf":-1}"#,
        r#"{"iat":-0.5}"#,
        r#"{"exp":-9223372036854775808}"#,
        r#"{"exp":-1e300}"#,
        r#"{"nbf":-9223372036854775808,"iat":-1e300}"#,
    ] {
        for (now, leeway) in [(0, 0), (-2, 0), (NOW, 300)] {
            assert_eq!(
                at(claims, now, leeway).unwrap_err(),
                Reject::ClaimType,
                "{claims} at {now}"
            );
        }
    }
    // 0 itself is 1970-01-01T00:00:00Z, a date like any other.
    assert_eq!(at(r#"{"exp":0}"#, 0, 0).unwrap_err(), Reject::Expired);
    at(r#"{"exp":0}"#, -1, 0).unwrap();
    at(r#"{"nbf":0,"iat":0,"exp":100}"#, 0, 0).unwrap();
}

#[test]
fn dates_beyond_year_9999_are_claim_type_not_never_expiring() {
    for date in [
        "253402300800",
        "253402300799.5",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "1e300",
        "1.7976931348623157e308",
    ] {
        for claim in ["exp", "nbf", "iat"] {
            for leeway in [0, 300] {
                assert_eq!(
                    at(&format!(r#"{{"{claim}":{date}}}"#), NOW, leeway).unwrap_err(),
                    Reject::ClaimType,
                    "{claim} {date}"
                );
            }
        }
    }
    // The last second of 9999 is still a date: far future, and leeway added
    // to it, or a clock at the end of i64, overflows nothing.
    let last = "253402300799";
    let v = at(&format!(r#"{{"exp":{last}}}"#), NOW, 300).unwrap();
    assert_eq!(v.claims.exp, Some(253_402_300_799));
    assert_eq!(
        at(&format!(r#"{{"exp":{last}}}"#), i64::MAX, 300).unwrap_err(),
        Reject::Expired
    );
    assert_eq!(
        at(&format!(r#"{{"nbf":{last}}}"#), NOW, 300).unwrap_err(),
        Reject::NotYetValid
    );
    assert_eq!(
        at(&format!(r#"{{"iat":{last}}}"#), NOW, 300).unwrap_err(),
        Reject::IssuedInFuture
    );
    // A number beyond f64 is not a number JSON can carry.
    assert_eq!(at(r#"{"exp":1e400}"#, NOW, 0).unwrap_err(), Reject::Payload);
}

fn lifetime(claims: &str, max: u64) -> Result<Verified, Reject> {
    verdict_for_claims(claims, NOW, |p| {
        p.leeway = 0;
        p.required = vec![];
        p.max_lifetime = Some(max);
    })
}

#[test]
fn max_lifetime_edges() {
    let iat = NOW - 10;
    let ok = format!(r#"{{"iat":{iat},"exp":{}}}"#, iat + 3600);
    lifetime(&ok, 3600).unwrap();
    let long = format!(r#"{{"iat":{iat},"exp":{}}}"#, iat + 3601);
    assert_eq!(lifetime(&long, 3600).unwrap_err(), Reject::LifetimeTooLong);
    // No exp: never expires, longer than any maximum.
    for claims in [format!(r#"{{"iat":{iat}}}"#), "{}".to_owned()] {
        assert_eq!(
            lifetime(&claims, 3600).unwrap_err(),
            Reject::LifetimeTooLong,
            "{claims}"
        );
        assert_eq!(
            lifetime(&claims, u64::MAX).unwrap_err(),
            Reject::LifetimeTooLong,
            "{claims}"
        );
    }
    // No iat: the remaining lifetime is judged.
    lifetime(&format!(r#"{{"exp":{}}}"#, NOW + 3600), 3600).unwrap();
    assert_eq!(
        lifetime(&format!(r#"{{"exp":{}}}"#, NOW + 3601), 3600).unwrap_err(),
        Reject::LifetimeTooLong
    );
    // Extremes do not overflow.
    assert_eq!(
        lifetime(r#"{"iat":0,"exp":253402300799}"#, 3600).unwrap_err(),
        Reject::LifetimeTooLong
    );
    lifetime(r#"{"iat":0,"exp":253402300799}"#, u64::MAX).unwrap();
    // A maximum of 0 and of 1 second.
    assert_eq!(
        lifetime(&format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 1), 0).unwrap_err(),
        Reject::LifetimeTooLong
    );
    lifetime(&format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 1), 1).unwrap();
}

#[test]
fn required_issuer_and_audience_must_match_exactly() {
    let exp = NOW + 60;
    let run = |claims: &str| {
        verdict_for_claims(claims, NOW, |p| {
            p.issuer = Some("https://issuer.example".into());
            p.audiences = vec!["api".into(), "web".into()];
        })
    };
    run(&format!(
        r#"{{"exp":{exp},"iss":"https://issuer.example","aud":["x","web"]}}"#
    ))
    .unwrap();
    for (claims, expected) in [
        (
            format!(r#"{{"exp":{exp},"aud":"api"}}"#),
            Reject::MissingClaim,
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"https://issuer.example"}}"#),
            Reject::MissingClaim,
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"https://issuer.example/","aud":"api"}}"#),
            Reject::Issuer,
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"HTTPS://ISSUER.EXAMPLE","aud":"api"}}"#),
            Reject::Issuer,
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"https://issuer.example","aud":"API"}}"#),
            Reject::Audience,
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"https://issuer.example","aud":[]}}"#),
            Reject::Audience,
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"https://issuer.example","aud":"api "}}"#),
            Reject::Audience,
        ),
    ] {
        assert_eq!(run(&claims).unwrap_err(), expected, "{claims}");
    }
}

#[test]
fn missing_required_claims_are_refused() {
    let run = |claims: &str| {
        verdict_for_claims(claims, NOW, |p| {
            p.required = vec!["exp".into(), "scope".into()];
        })
    };
    run(&format!(r#"{{"exp":{},"scope":"read"}}"#, NOW + 60)).unwrap();
    assert_eq!(
        run(&format!(r#"{{"exp":{}}}"#, NOW + 60)).unwrap_err(),
        Reject::MissingClaim
    );
    assert_eq!(
        run(r#"{"scope":"read"}"#).unwrap_err(),
        Reject::MissingClaim
    );
    // Present but nested is not present.
    assert_eq!(
        run(&format!(r#"{{"exp":{},"x":{{"scope":"read"}}}}"#, NOW + 60)).unwrap_err(),
        Reject::MissingClaim
    );
}

#[test]
fn a_claim_required_twice_is_flagged_or_satisfied_by_one_occurrence() {
    // `jwtd check --require exp,exp` builds exactly this policy. Either the
    // policy is refused up front, or one `exp` satisfies both entries; what
    // must not happen is a valid policy that refuses every token.
    let policy = Policy {
        required: vec!["exp".into(), "exp".into()],
        ..Policy::default()
    };
    let (key, keys) = hs256();
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    let verdict = verify(token.as_bytes(), &keys, &policy, NOW);
    assert!(
        !policy.problems().is_empty() || verdict.is_ok(),
        "valid policy refuses a token with exp: {verdict:?}"
    );
}

// ---------------------------------------------------------------------------
// Structure and encoding
// ---------------------------------------------------------------------------

#[test]
fn five_segments_is_a_jwe() {
    let (key, keys) = hs256();
    let jwe_header = b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    for t in [
        format!("{jwe_header}.a2V5.aXY.Y2lwaGVy.dGFn"),
        format!("{jwe_header}...."),
        "....".to_owned(),
        format!("{token}.x.y"),
    ] {
        assert_eq!(
            reason(&t, &keys, &Policy::default(), NOW),
            Reject::Jwe,
            "{t}"
        );
    }
}

#[test]
fn other_segment_counts_and_an_empty_header_are_malformed() {
    let (key, keys) = hs256();
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    let [h, p, s] = segments(&token);
    for t in [
        String::new(),
        h.to_owned(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}.{s}.{s}.{s}"),
        format!("{h}.{p}.{s}........."),
        format!(".{p}.{s}"),
        "..".to_owned(),
        ".".to_owned(),
    ] {
        assert_eq!(
            reason(&t, &keys, &Policy::default(), NOW),
            Reject::Malformed,
            "{t}"
        );
    }
}

#[test]
fn detached_payload_is_refused() {
    let (key, keys) = hs256();
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    let [h, _, s] = segments(&token);
    // RFC 7515 appendix F: detached content. A JWT always carries claims.
    let detached = key.sign_parts(&header("HS256", Some("k1")), b"").unwrap();
    for t in [format!("{h}..{s}"), detached] {
        assert_eq!(reason(&t, &keys, &Policy::default(), NOW), Reject::Payload);
    }
}

#[test]
fn missing_signature_is_refused() {
    let (key, keys) = hs256();
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    assert_eq!(
        reason(
            with_signature_text(&token, ""),
            &keys,
            &Policy::default(),
            NOW
        ),
        Reject::BadSignature
    );
}

#[test]
fn b64_false_is_an_unencoded_payload() {
    let (key, keys) = hs256();
    for h in [
        r#"{"alg":"HS256","kid":"k1","b64":false,"crit":["b64"]}"#,
        r#"{"alg":"HS256","kid":"k1","b64":false}"#,
        r#"{"alg":"HS256","kid":"k1","crit":["b64"],"b64":false}"#,
    ] {
        let token = key.sign_parts(h.as_bytes(), &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Unencoded,
            "{h}"
        );
    }
    // b64 must be a boolean.
    for h in [
        r#"{"alg":"HS256","kid":"k1","b64":"false"}"#,
        r#"{"alg":"HS256","kid":"k1","b64":0}"#,
        r#"{"alg":"HS256","kid":"k1","b64":null}"#,
    ] {
        let token = key.sign_parts(h.as_bytes(), &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Header,
            "{h}"
        );
    }
    // b64: true is the default encoding and harmless on its own.
    let token = key
        .sign_parts(br#"{"alg":"HS256","kid":"k1","b64":true}"#, &good_payload())
        .unwrap();
    accepted(&token, &keys, &Policy::default(), NOW);
}

#[test]
fn any_crit_header_is_refused() {
    let (key, keys) = hs256();
    for crit in [
        r#"["b64"]"#,
        r#"["exp"]"#,
        r#"["http://example.invalid/UNDEFINED"]"#,
        "[]",
        r#""b64""#,
        "null",
        "{}",
        "1",
    ] {
        let h = format!(r#"{{"alg":"HS256","kid":"k1","b64":true,"crit":{crit}}}"#);
        let token = key.sign_parts(h.as_bytes(), &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Crit,
            "{h}"
        );
    }
}

/// `segment` with its unused trailing bits set, or `None` when it has none.
fn set_trailing_bits(segment: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_mask = match segment.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => return None,
    };
    let last = *segment.as_bytes().last()?;
    let v = ALPHABET.iter().position(|&c| c == last)? as u8;
    assert_eq!(v & unused_mask, 0, "canonical encoder left bits set");
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(char::from(ALPHABET[usize::from(v | 1)]));
    Some(out)
}

#[test]
fn non_canonical_base64_in_any_segment_is_refused() {
    let (key, keys) = hs256();
    // Header and payload lengths chosen so no segment is a multiple of 3
    // bytes: every segment then has unused trailing bits to abuse.
    let h = br#"{"alg":"HS256","kid":"k1"}"#;
    let p = format!(r#"{{"sub":"alice","exp":{}}}"#, NOW + 3600);
    assert_ne!(h.len() % 3, 0);
    assert_ne!(p.len() % 3, 0);
    let token = key.sign_parts(h, p.as_bytes()).unwrap();
    accepted(&token, &keys, &Policy::default(), NOW);
    let segs = segments(&token).map(str::to_owned);

    for i in 0..3 {
        let seg = &segs[i];
        assert_eq!(seg.len() % 4, 3, "segment {i} has 2 unused bits");
        let mid = seg.len() / 2;
        let mut variants = vec![
            format!("{seg}="),
            format!("{seg}=="),
            format!("{seg}==="),
            format!("{} {}", &seg[..mid], &seg[mid..]),
            format!("{}\n{}", &seg[..mid], &seg[mid..]),
            format!("{}\r\n{}", &seg[..mid], &seg[mid..]),
            format!("{}\t{}", &seg[..mid], &seg[mid..]),
            format!(" {seg}"),
            format!("{seg}\n"),
            format!("{}+{}", &seg[..mid], &seg[mid + 1..]),
            format!("{}/{}", &seg[..mid], &seg[mid + 1..]),
            format!("{}%{}", &seg[..mid], &seg[mid..]),
            format!("{seg}AA"), // length 1 mod 4: impossible
            set_trailing_bits(seg).expect("segment has unused bits"),
        ];
        // Standard alphabet: same bytes, '+'/'/' instead of '-'/'_'.
        let standard = STANDARD.encode(unb64(seg));
        if standard != *seg {
            variants.push(standard);
        }
        for v in variants {
            let mut parts = segs.clone();
            parts[i] = v.clone();
            let t = parts.join(".");
            assert_eq!(
                reason(&t, &keys, &Policy::default(), NOW),
                Reject::Base64,
                "segment {i} as {v:?}"
            );
        }
    }
}

#[test]
fn whole_token_in_standard_base64_is_refused() {
    let (key, keys) = hs256();
    // Find a header whose standard encoding needs '+' or '/' or padding.
    let h = br#"{"alg":"HS256","kid":"k1","x":"??>>"}"#;
    let token = key.sign_parts(h, &good_payload()).unwrap();
    let [hs, ps, ss] = segments(&token);
    let std_token = [hs, ps, ss].map(|s| STANDARD.encode(unb64(s))).join(".");
    assert_ne!(std_token, token);
    assert_eq!(
        reason(&std_token, &keys, &Policy::default(), NOW),
        Reject::Base64
    );
}

#[test]
fn token_size_limit_is_exact() {
    let (key, keys) = hs256();
    let token = key.mint(&good_claims(), &Map::new()).unwrap();
    let exact = policy_with(|p| p.max_token_bytes = token.len());
    accepted(&token, &keys, &exact, NOW);
    let one_less = policy_with(|p| p.max_token_bytes = token.len() - 1);
    assert_eq!(reason(&token, &keys, &one_less, NOW), Reject::TooLarge);

    // With the default limit: a token of exactly 16 KiB passes, one more
    // byte (even garbage) is too large before anything is parsed.
    let limit = Policy::default().max_token_bytes;
    assert_eq!(limit, 16 * 1024);
    let mut found = None;
    'search: for kid_len in 1..8 {
        let kid = "k".repeat(kid_len);
        let key = SigningKey::generate(Algorithm::HS256)
            .unwrap()
            .with_kid(Some(kid));
        for pad in 12_000..12_400 {
            let claims = json!({"exp": NOW + 60, "pad": "p".repeat(pad)});
            let t = key.mint(&claims, &Map::new()).unwrap();
            if t.len() == limit {
                found = Some((key, t));
                break 'search;
            }
            if t.len() > limit {
                break;
            }
        }
    }
    let (key, t) = found.expect("a token of exactly the limit");
    let keys = keyset(&[key.public_jwk()]);
    accepted(&t, &keys, &Policy::default(), NOW);
    assert_eq!(
        reason(format!("{t}A"), &keys, &Policy::default(), NOW),
        Reject::TooLarge
    );
    assert_eq!(
        reason(vec![b'.'; limit + 1], &keys, &Policy::default(), NOW),
        Reject::TooLarge
    );
    assert_eq!(
        reason(vec![0xffu8; 1 << 20], &keys, &Policy::default(), NOW),
        Reject::TooLarge
    );
}

fn nested(depth: usize) -> String {
    // `depth` containers counting the outer object.
    let inner = depth - 1;
    format!(
        r#"{{"exp":{},"n":{}{}}}"#,
        NOW + 60,
        "[".repeat(inner),
        "]".repeat(inner)
    )
}

#[test]
fn json_nesting_deeper_than_the_limit_is_refused() {
    let (key, keys) = hs256();
    for max in [2u32, 5, 16, 64] {
        let policy = policy_with(|p| p.max_json_depth = max);
        let deep_enough = nested(max as usize);
        accepted(signed_payload(&key, &deep_enough), &keys, &policy, NOW);
        let too_deep = nested(max as usize + 1);
        assert_eq!(
            reason(signed_payload(&key, &too_deep), &keys, &policy, NOW),
            Reject::Payload,
            "payload depth {} at max {max}",
            max + 1
        );
        let inner = max as usize - 1;
        let header_ok = format!(
            r#"{{"alg":"HS256","kid":"k1","x":{}{}}}"#,
            "[".repeat(inner),
            "]".repeat(inner)
        );
        let header_deep = format!(
            r#"{{"alg":"HS256","kid":"k1","x":{}{}}}"#,
            "[".repeat(inner + 1),
            "]".repeat(inner + 1)
        );
        accepted(
            key.sign_parts(header_ok.as_bytes(), &good_payload())
                .unwrap(),
            &keys,
            &policy,
            NOW,
        );
        assert_eq!(
            reason(
                key.sign_parts(header_deep.as_bytes(), &good_payload())
                    .unwrap(),
                &keys,
                &policy,
                NOW
            ),
            Reject::Header,
            "header depth {} at max {max}",
            max + 1
        );
    }
    // Objects count like arrays.
    let policy = policy_with(|p| p.max_json_depth = 3);
    let objects = format!(r#"{{"exp":{},"a":{{"b":{{"c":{{}}}}}}}}"#, NOW + 60);
    assert_eq!(
        reason(signed_payload(&key, &objects), &keys, &policy, NOW),
        Reject::Payload
    );
}

#[test]
fn extremely_deep_nesting_is_refused_without_exhausting_the_stack() {
    let (key, keys) = hs256();
    let policy = policy_with(|p| p.max_token_bytes = 1024 * 1024);
    let depth = 300_000;
    let payload = format!(r#"{{"a":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    assert_eq!(
        reason(signed_payload(&key, &payload), &keys, &policy, NOW),
        Reject::Payload
    );
    let unclosed = format!(r#"{{"a":{}"#, "{\"a\":".repeat(depth / 5));
    assert_eq!(
        reason(signed_payload(&key, &unclosed), &keys, &policy, NOW),
        Reject::Payload
    );
    let header = format!(
        r#"{{"alg":"HS256","a":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(
        reason(
            key.sign_parts(header.as_bytes(), &good_payload()).unwrap(),
            &keys,
            &policy,
            NOW
        ),
        Reject::Header
    );
}

#[test]
fn payload_must_be_one_utf8_json_object() {
    let (key, keys) = hs256();
    let policy = policy_with(|p| p.required = vec![]);
    let bad: Vec<Vec<u8>> = vec![
        b"\xff\xfe".to_vec(),
        b"{\"sub\":\"\xff\"}".to_vec(),
        b"{\"s\xc3\x28\":1}".to_vec(),
        b"{\"sub\":\"\xed\xa0\x80\"}".to_vec(), // CESU surrogate
        br#"{"sub":"\ud800"}"#.to_vec(),
        br#"{"sub":"\udc00\ud800"}"#.to_vec(),
        "\u{feff}{}".as_bytes().to_vec(),
        b"[]".to_vec(),
        br#"[{"exp":1}]"#.to_vec(),
        br#""{}""#.to_vec(),
        b"1".to_vec(),
        b"null".to_vec(),
        b"true".to_vec(),
        b"{} {}".to_vec(),
        b"{}x".to_vec(),
        b"{".to_vec(),
        b"{\"a\":1,}".to_vec(),
        b"{'a':1}".to_vec(),
        b"{a:1}".to_vec(),
        b"{\"a\":NaN}".to_vec(),
        b"{\"a\":01}".to_vec(),
        b"{\"a\":\"\x01\"}".to_vec(),
        b"{}\x00".to_vec(),
        b" ".to_vec(),
    ];
    for payload in bad {
        let token = key
            .sign_parts(&header("HS256", Some("k1")), &payload)
            .unwrap();
        assert_eq!(
            reason(&token, &keys, &policy, NOW),
            Reject::Payload,
            "{:?}",
            String::from_utf8_lossy(&payload)
        );
    }
    // Controls: an empty object and whitespace around one are fine.
    for payload in [&b"{}"[..], b" \n{}\t\r\n"] {
        let token = key
            .sign_parts(&header("HS256", Some("k1")), payload)
            .unwrap();
        accepted(&token, &keys, &policy, NOW);
    }
}

#[test]
fn header_must_be_one_utf8_json_object() {
    let (key, keys) = hs256();
    let bad: Vec<Vec<u8>> = vec![
        b"\xff".to_vec(),
        b"{\"alg\":\"HS256\",\"kid\":\"k\xff\"}".to_vec(),
        br#"{"alg":"HS256","kid":"\ud800"}"#.to_vec(),
        br#"[{"alg":"HS256"}]"#.to_vec(),
        br#""HS256""#.to_vec(),
        b"null".to_vec(),
        b"{}".to_vec(),
        br#"{"alg":"HS256"}{}"#.to_vec(),
        br#"{"alg":"HS256"}x"#.to_vec(),
        br#"{"alg":"HS256",}"#.to_vec(),
        "\u{feff}{\"alg\":\"HS256\"}".as_bytes().to_vec(),
    ];
    for h in bad {
        let token = key.sign_parts(&h, &good_payload()).unwrap();
        assert_eq!(
            reason(&token, &keys, &Policy::default(), NOW),
            Reject::Header,
            "{:?}",
            String::from_utf8_lossy(&h)
        );
    }
    // Control: whitespace around the object is valid JSON.
    let token = key
        .sign_parts(b" {\"alg\":\"HS256\"}\n", &good_payload())
        .unwrap();
    accepted(&token, &keys, &Policy::default(), NOW);
}

#[test]
fn typ_is_matched_case_insensitively_with_optional_application_prefix() {
    let (key, keys) = hs256();
    let token_with = |typ: Option<&str>| {
        let mut h = extra(json!({"alg": "HS256", "kid": "k1"}));
        if let Some(t) = typ {
            h.insert("typ".into(), t.into());
        }
        key.sign_parts(
            &serde_json::to_vec(&Value::Object(h)).unwrap(),
            &good_payload(),
        )
        .unwrap()
    };
    for want in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let policy = policy_with(|p| p.typ = Some(want.into()));
        for typ in [
            "at+jwt",
            "AT+JWT",
            "At+Jwt",
            "application/at+jwt",
            "application/AT+JWT",
            "APPLICATION/at+jwt",
        ] {
            accepted(token_with(Some(typ)), &keys, &policy, NOW);
        }
        for typ in [
            "JWT",
            "jwt",
            "",
            "application/",
            "at+jwt ",
            " at+jwt",
            "at+jwt\u{0}",
            "xapplication/at+jwt",
            "application/application/at+jwt",
            "application at+jwt",
            "text/at+jwt",
            "applicatio/at+jwt",
            "ééééééé/at+jwt",
            "aéééééé/at+jwt",
            "at\u{ff0b}jwt",
        ] {
            assert_eq!(
                reason(token_with(Some(typ)), &keys, &policy, NOW),
                Reject::Type,
                "typ {typ:?} against {want:?}"
            );
        }
        assert_eq!(
            reason(token_with(None), &keys, &policy, NOW),
            Reject::Type,
            "missing typ against {want:?}"
        );
    }
    // typ of the wrong JSON type is a header error, policy or not.
    let token = key
        .sign_parts(br#"{"alg":"HS256","kid":"k1","typ":1}"#, &good_payload())
        .unwrap();
    assert_eq!(
        reason(&token, &keys, &Policy::default(), NOW),
        Reject::Header
    );
    // Without a typ policy any string typ is fine.
    accepted(token_with(Some("anything")), &keys, &Policy::default(), NOW);
}

// ---------------------------------------------------------------------------
// Every algorithm
// ---------------------------------------------------------------------------

#[test]
fn every_algorithm_verifies_a_freshly_minted_token() {
    let pairs: Vec<(SigningKey, Value)> = Algorithm::ALL
        .into_iter()
        .map(|alg| {
            let key = SigningKey::generate(alg)
                .unwrap()
                .with_kid(Some(format!("kid-{alg}")));
            let jwk = key.public_jwk();
            (key, jwk)
        })
        .collect();
    let all = keyset(&pairs.iter().map(|(_, j)| j.clone()).collect::<Vec<_>>());
    assert_eq!(all.keys().len(), 13);
    let everything = policy_with(|p| p.algorithms = AlgSet::all());
    for (key, jwk) in &pairs {
        let alg = key.alg();
        let claims = json!({"sub": format!("user-{alg}"), "exp": NOW + 60});
        let token = key.mint(&claims, &Map::new()).unwrap();
        // Alone, and among all the others.
        let own = keyset(std::slice::from_ref(jwk));
        for keys in [&own, &all] {
            let v = accepted(&token, keys, &everything, NOW);
            assert_eq!(v.alg, Some(alg));
            assert_eq!(v.kid.as_deref(), key.kid());
            assert_eq!(v.claims.sub.as_deref(), Some(&*format!("user-{alg}")));
        }
        // Without kid, the key is found by algorithm.
        let anonymous = key
            .sign_parts(
                &header(alg.as_str(), None),
                &serde_json::to_vec(&claims).unwrap(),
            )
            .unwrap();
        let v = accepted(&anonymous, &all, &everything, NOW);
        assert_eq!(v.kid.as_deref(), key.kid());
        // Allow-list of every other algorithm.
        let others = policy_with(|p| {
            p.algorithms = Algorithm::ALL.into_iter().filter(|a| *a != alg).collect()
        });
        assert_eq!(
            reason(&token, &all, &others, NOW),
            Reject::AlgorithmNotAllowed,
            "{alg}"
        );
    }
}

// ---------------------------------------------------------------------------
// Kid-less tokens against many keys
// ---------------------------------------------------------------------------

/// `n` ES256 signers with kids, and the set of their public keys.
fn es256_set(n: usize) -> (Vec<SigningKey>, KeySet) {
    let signers: Vec<SigningKey> = (0..n)
        .map(|i| {
            SigningKey::generate(Algorithm::ES256)
                .unwrap()
                .with_kid(Some(format!("k{i}")))
        })
        .collect();
    let jwks: Vec<Value> = signers.iter().map(SigningKey::public_jwk).collect();
    (signers, keyset(&jwks))
}

#[test]
fn a_forged_kidless_token_costs_no_signature_check_against_a_large_set() {
    // A thousand trusted keys: trying each would be a thousand checks. The
    // default bound (4) refuses before any: the forgery's answer is
    // `unknown_key`, where a tried-and-failed one would be `bad_signature`.
    let (signers, many) = es256_set(1000);
    let forged = with_signature(
        &signers[0]
            .sign_parts(&header("ES256", None), &good_payload())
            .unwrap(),
        &[7u8; 64],
    );
    assert_eq!(
        reason(&forged, &many, &Policy::default(), NOW),
        Reject::UnknownKey
    );
    let everything = policy_with(|p| p.max_kidless_keys = 1000);
    assert_eq!(
        reason(&forged, &many, &everything, NOW),
        Reject::BadSignature,
        "with the bound raised, every key is tried"
    );
    // Ten keys: refused even when validly signed by one of them; the kid
    // still finds it.
    let (signers, ten) = es256_set(10);
    let anonymous = signers[3]
        .sign_parts(&header("ES256", None), &good_payload())
        .unwrap();
    assert_eq!(
        reason(&anonymous, &ten, &Policy::default(), NOW),
        Reject::UnknownKey
    );
    let named = signers[3]
        .sign_parts(&header("ES256", Some("k3")), &good_payload())
        .unwrap();
    accepted(&named, &ten, &Policy::default(), NOW);
    // Four keys: still tried, the signer found by its signature.
    let (signers, four) = es256_set(4);
    let anonymous = signers[3]
        .sign_parts(&header("ES256", None), &good_payload())
        .unwrap();
    let v = accepted(&anonymous, &four, &Policy::default(), NOW);
    assert_eq!(v.kid.as_deref(), Some("k3"));
}

// ---------------------------------------------------------------------------
// Key sets that would let anyone sign
// ---------------------------------------------------------------------------

#[test]
fn an_identity_ed25519_key_is_skipped_so_the_universal_forgery_fails() {
    // The identity point as a public key: R = identity, S = 0 satisfies
    // [S]B = R + [k]A for every message, so anyone could sign any token.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let (good, _) = keypair(Algorithm::EdDSA, "good");
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64(identity)},
        good.public_jwk(),
    ]});
    let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).expect("the good key loads");
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(keys.skipped()[0].problem, KeyProblem::SmallOrder);
    assert_eq!(keys.skipped()[0].kid.as_deref(), Some("weak"));
    let mut signature = [0u8; 64];
    signature[0] = 1;
    for kid in [Some("weak"), None] {
        let unsigned = format!("{}.{}.", b64(header("EdDSA", kid)), b64(good_payload()));
        let forged = with_signature(&format!("{unsigned}x"), &signature);
        // The forgery is real: aws-lc-rs accepts it under the identity key.
        let signing_input = &unsigned.as_bytes()[..unsigned.len() - 1];
        assert!(
            UnparsedPublicKey::new(&awssig::ED25519, identity)
                .verify(signing_input, &signature)
                .is_ok(),
            "the identity key no longer verifies the universal forgery"
        );
        let got = reason(&forged, &keys, &Policy::default(), NOW);
        assert!(
            got == Reject::UnknownKey || got == Reject::BadSignature,
            "{kid:?}: {got:?}"
        );
    }
}

#[test]
fn a_published_hmac_secret_is_not_a_key_and_a_duplicate_member_is_not_a_jwk() {
    let secret = [9u8; 32];
    let (ec, _) = keypair(Algorithm::ES256, "ec");
    let jwks = json!({"keys": [
        {"kty": "oct", "kid": "shared", "k": b64(secret)},
        ec.public_jwk(),
    ]})
    .to_string();
    let token = hmac_token(
        Algorithm::HS256,
        &secret,
        &header("HS256", Some("shared")),
        &good_payload(),
    );
    // From a key file: a legitimate local secret.
    accepted(
        &token,
        &KeySet::from_jwks(jwks.as_bytes()).unwrap(),
        &Policy::default(),
        NOW,
    );
    // From a published set: anyone holding the set could have made it.
    let public = KeySet::from_public_jwks(jwks.as_bytes()).unwrap();
    assert_eq!(public.skipped()[0].problem, KeyProblem::SecretInPublicSet);
    assert_eq!(
        reason(&token, &public, &Policy::default(), NOW),
        Reject::UnknownKey
    );

    // A JWK that says two things: which `x` would another library use?
    let mut jwk = ec.public_jwk().to_string();
    jwk.insert_str(1, r#""x":"AAAA","#);
    let text = format!(r#"{{"keys":[{jwk}]}}"#);
    match KeySet::from_public_jwks(text.as_bytes()) {
        Err(KeySetError::NoUsableKey(skipped)) => {
            assert_eq!(skipped[0].problem, KeyProblem::DuplicateMember("x".into()))
        }
        other => panic!("{other:?}"),
    }
}
