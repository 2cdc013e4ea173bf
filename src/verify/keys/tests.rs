//! Unit tests of key loading: which keys load, what each serves, which are
//! skipped and why, kid lookup, and PEM.

use super::*;

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;

use crate::sign::SigningKey;
use crate::verify::{Policy, Reject, verify};

/// A 1024-bit RSA public key (`openssl genrsa 1024 | openssl rsa -pubout`).
const RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDiopWdC0sie2iRkC8XAqZV/g3S
PKhUVv/emTSIGo+5GEjuU3hnGnqoaMUaWdKMcJS2hCVDCYcsMJxgz9gnitp9fErt
xalxF2DTijkAOo6qB7vunavOxfWfV6F720Nv/OuH1UndhXruByTYa5itlzxpzGP8
dDEogLw1aU+vuykvSwIDAQAB
-----END PUBLIC KEY-----
";

/// The modulus of [`RSA_1024_PEM`], base64url.
const RSA_1024_N: &str = "4qKVnQtLIntokZAvFwKmVf4N0jyoVFb_3pk0iBqPuRhI7lN4Zxp6qGjFGlnSjHCUtoQlQwmHLDCcYM_YJ4rafXxK7cWpcRdg04o5ADqOqge77p2rzsX1n1ehe9tDb_zrh9VJ3YV67gck2GuYrZc8acxj_HQxKIC8NWlPr7spL0s";

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One RSA-2048 signing key shared by the tests (generation is slow).
fn rsa() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::RS256).expect("generate RSA"))
}

/// The public JWK of `key` without the `alg`, `use` and `kid` that
/// `public_jwk` adds.
fn bare_jwk(key: &SigningKey) -> Value {
    let mut jwk = key.public_jwk();
    let obj = jwk.as_object_mut().expect("object");
    obj.remove("alg");
    obj.remove("use");
    obj.remove("kid");
    jwk
}

fn bare(alg: Algorithm) -> Value {
    match alg.family() {
        Family::Rsa => bare_jwk(rsa()),
        _ => bare_jwk(&SigningKey::generate(alg).expect("generate")),
    }
}

fn oct(len: usize) -> Value {
    json!({"kty": "oct", "k": B64URL.encode(vec![7u8; len])})
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    jwk[member] = value;
    jwk
}

fn without(mut jwk: Value, member: &str) -> Value {
    jwk.as_object_mut().expect("object").remove(member);
    jwk
}

fn set_of(keys: &[Value]) -> Result<KeySet, KeySetError> {
    KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes())
}

/// Loads a set holding only `jwk` and returns its one key's algorithms.
fn algorithms_of(jwk: Value) -> Vec<Algorithm> {
    let set =
        set_of(std::slice::from_ref(&jwk)).unwrap_or_else(|e| panic!("{jwk} should load: {e}"));
    assert!(set.skipped().is_empty(), "{:?}", set.skipped());
    assert_eq!(set.keys().len(), 1);
    set.keys()[0].algorithms().collect()
}

/// Loads `[good, jwk]` and returns the skip recorded for `jwk`.
fn skip(jwk: Value) -> SkippedKey {
    let good = with(oct(32), "kid", json!("good"));
    let set = set_of(&[good, jwk.clone()])
        .unwrap_or_else(|e| panic!("the good key should keep the set loadable: {e}"));
    assert_eq!(set.keys().len(), 1, "{jwk} should have been skipped");
    assert_eq!(set.keys()[0].kid().map(|k| &**k), Some("good"));
    assert_eq!(set.skipped().len(), 1);
    set.skipped()[0].clone()
}

fn problem(jwk: Value) -> KeyProblem {
    let s = skip(jwk);
    assert_eq!(s.index, 1);
    s.problem
}

fn pem_public(label: &str, der: &[u8]) -> String {
    super::super::pem::encode(label, der)
}

fn ec_spki(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> Vec<u8> {
    let pair = EcdsaKeyPair::generate(alg).expect("generate EC");
    pair.public_key().as_der().expect("SPKI").as_ref().to_vec()
}

fn rsa_pair() -> &'static aws_lc_rs::rsa::KeyPair {
    static KEY: OnceLock<aws_lc_rs::rsa::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("generate")
    })
}

/// The SPKI of a `SigningKey`, read back from its PKCS#8 private file.
fn spki_of(key: &SigningKey) -> Vec<u8> {
    let file = key.private_file().expect("private file");
    let block = super::super::pem::parse(&file).expect("PEM").remove(0);
    let der = &block.der;
    match key.alg().family() {
        Family::Ec(curve) => {
            let alg = match curve {
                Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            };
            EcdsaKeyPair::from_pkcs8(alg, der)
                .expect("pkcs8")
                .public_key()
                .as_der()
                .expect("SPKI")
                .as_ref()
                .to_vec()
        }
        Family::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .expect("pkcs8")
            .public_key()
            .as_der()
            .expect("SPKI")
            .as_ref()
            .to_vec(),
        Family::Rsa => aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
            .expect("pkcs8")
            .public_key()
            .as_der()
            .expect("SPKI")
            .as_ref()
            .to_vec(),
        Family::Hmac => panic!("no public key"),
    }
}

fn token(key: &SigningKey) -> String {
    key.mint(&json!({"exp": 2_000_000_000}), &Map::new())
        .expect("mint")
}

const NOW: i64 = 1_900_000_000;

// ------------------------------------------------------- what each key serves

#[test]
fn rsa_key_without_alg_serves_all_six_rsa_algorithms() {
    assert_eq!(algorithms_of(bare(Algorithm::RS256)), RSA_ALGS);
}

#[test]
fn rsa_key_with_alg_serves_only_that_algorithm() {
    for alg in RSA_ALGS {
        let jwk = with(bare(Algorithm::RS256), "alg", json!(alg.as_str()));
        assert_eq!(algorithms_of(jwk), [alg], "alg {alg}");
    }
}

#[test]
fn rsa_key_kind_reports_modulus_bits() {
    let set = set_of(&[bare(Algorithm::RS256)]).expect("loads");
    assert_eq!(set.keys()[0].kind(), KeyKind::Rsa(2048));
    assert_eq!(set.keys()[0].kind().to_string(), "RSA-2048");
}

#[test]
fn ec_keys_serve_the_one_algorithm_of_their_curve() {
    for (alg, curve) in [
        (Algorithm::ES256, Curve::P256),
        (Algorithm::ES384, Curve::P384),
        (Algorithm::ES512, Curve::P521),
    ] {
        let jwk = bare(alg);
        assert_eq!(jwk["crv"], curve.as_str());
        let set = set_of(std::slice::from_ref(&jwk)).expect("loads");
        assert_eq!(set.keys()[0].kind(), KeyKind::Ec(curve));
        assert_eq!(set.keys()[0].algorithms().collect::<Vec<_>>(), [alg]);
        // With its own, matching alg it serves the same.
        assert_eq!(algorithms_of(with(jwk, "alg", json!(alg.as_str()))), [alg]);
    }
}

#[test]
fn okp_ed25519_key_serves_eddsa() {
    let jwk = bare(Algorithm::EdDSA);
    let set = set_of(std::slice::from_ref(&jwk)).expect("loads");
    assert_eq!(set.keys()[0].kind(), KeyKind::Ed25519);
    assert_eq!(algorithms_of(jwk.clone()), [Algorithm::EdDSA]);
    assert_eq!(
        algorithms_of(with(jwk, "alg", json!("EdDSA"))),
        [Algorithm::EdDSA]
    );
}

#[test]
fn oct_32_bytes_serves_only_hs256() {
    assert_eq!(algorithms_of(oct(32)), [Algorithm::HS256]);
}

#[test]
fn oct_48_bytes_serves_hs256_and_hs384() {
    assert_eq!(algorithms_of(oct(48)), [Algorithm::HS256, Algorithm::HS384]);
}

#[test]
fn oct_64_bytes_serves_all_three_hmac_algorithms() {
    assert_eq!(
        algorithms_of(oct(64)),
        [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
    );
    let set = set_of(&[oct(64)]).expect("loads");
    assert_eq!(set.keys()[0].kind(), KeyKind::Hmac(64));
    assert_eq!(set.keys()[0].kind().to_string(), "HMAC secret (512 bits)");
}

#[test]
fn oct_with_alg_serves_only_that_algorithm() {
    assert_eq!(
        algorithms_of(with(oct(64), "alg", json!("HS384"))),
        [Algorithm::HS384]
    );
    assert_eq!(
        algorithms_of(with(oct(64), "alg", json!("HS256"))),
        [Algorithm::HS256]
    );
}

#[test]
fn oct_shorter_than_32_bytes_is_skipped_as_weak() {
    assert_eq!(
        problem(oct(31)),
        KeyProblem::WeakSecret {
            bits: 248,
            alg: Algorithm::HS256,
            needed: 256
        }
    );
}

#[test]
fn oct_hs512_with_32_bytes_is_skipped_as_weak() {
    assert_eq!(
        problem(with(oct(32), "alg", json!("HS512"))),
        KeyProblem::WeakSecret {
            bits: 256,
            alg: Algorithm::HS512,
            needed: 512
        }
    );
    assert_eq!(
        problem(with(oct(47), "alg", json!("HS384"))),
        KeyProblem::WeakSecret {
            bits: 376,
            alg: Algorithm::HS384,
            needed: 384
        }
    );
}

#[test]
fn key_verifies_only_algorithms_it_serves() {
    // An RSA key restricted to RS256 refuses a valid PS256 signature.
    let ps = rsa()
        .clone_with_kid("r")
        .with_alg(Algorithm::PS256)
        .expect("fits");
    let jwk = with(ps.public_jwk(), "alg", json!("RS256"));
    let set = set_of(&[jwk]).expect("loads");
    let key = &set.keys()[0];
    let sig = ps.sign(b"message").expect("sign");
    assert!(!key.serves(Algorithm::PS256));
    assert!(!key.verify(Algorithm::PS256, b"message", &sig));
    // The same key with alg PS256 accepts it, and not a different message.
    let set = set_of(&[ps.public_jwk()]).expect("loads");
    let key = &set.keys()[0];
    assert!(key.verify(Algorithm::PS256, b"message", &sig));
    assert!(!key.verify(Algorithm::PS256, b"massage", &sig));
}

// ------------------------------------------------------------- skipped keys

#[test]
fn encryption_keys_are_skipped() {
    let jwk = with(oct(32), "use", json!("enc"));
    assert_eq!(problem(jwk), KeyProblem::NotForSignatures("enc".into()));
    // use: sig is fine.
    assert_eq!(
        algorithms_of(with(oct(32), "use", json!("sig"))),
        [Algorithm::HS256]
    );
}

#[test]
fn key_ops_without_verify_are_skipped() {
    assert_eq!(
        problem(with(oct(32), "key_ops", json!(["sign"]))),
        KeyProblem::NoVerifyOp
    );
    assert_eq!(
        problem(with(oct(32), "key_ops", json!([]))),
        KeyProblem::NoVerifyOp
    );
    assert_eq!(
        problem(with(oct(32), "key_ops", json!("verify"))),
        KeyProblem::Invalid("key_ops", "array")
    );
    assert_eq!(
        algorithms_of(with(oct(32), "key_ops", json!(["sign", "verify"]))),
        [Algorithm::HS256]
    );
}

#[test]
fn unknown_kty_is_skipped() {
    assert_eq!(
        problem(json!({"kty": "foo", "k": "AAAA"})),
        KeyProblem::UnsupportedKty("foo".into())
    );
    assert_eq!(
        problem(json!({"kty": "rsa", "n": "AQAB", "e": "AQAB"})),
        KeyProblem::UnsupportedKty("rsa".into())
    );
}

#[test]
fn unsupported_curves_are_skipped() {
    let x = B64URL.encode([9u8; 32]);
    let rows = [
        (
            json!({"kty": "OKP", "crv": "Ed448", "x": B64URL.encode([9u8; 57])}),
            "Ed448",
        ),
        (json!({"kty": "OKP", "crv": "X25519", "x": x}), "X25519"),
        (
            json!({"kty": "EC", "crv": "secp256k1", "x": x, "y": x}),
            "secp256k1",
        ),
        (
            json!({"kty": "EC", "crv": "P-192", "x": x, "y": x}),
            "P-192",
        ),
    ];
    for (jwk, crv) in rows {
        assert_eq!(problem(jwk), KeyProblem::UnsupportedCurve(crv.into()));
    }
}

#[test]
fn rsa_1024_is_skipped_for_its_size() {
    let jwk = json!({"kty": "RSA", "kid": "weak", "n": RSA_1024_N, "e": "AQAB"});
    let s = skip(jwk);
    assert_eq!(
        s,
        SkippedKey {
            index: 1,
            kid: Some("weak".into()),
            problem: KeyProblem::RsaSize(1024)
        }
    );
}

#[test]
fn rsa_modulus_leading_zero_bytes_are_tolerated() {
    let key = rsa().clone_with_kid("padded");
    let mut jwk = key.public_jwk();
    let mut n = B64URL.decode(jwk["n"].as_str().expect("n")).expect("b64");
    n.splice(0..0, [0u8, 0u8]);
    jwk["n"] = B64URL.encode(&n).into();
    let mut e = B64URL.decode(jwk["e"].as_str().expect("e")).expect("b64");
    e.insert(0, 0);
    jwk["e"] = B64URL.encode(&e).into();
    let set = set_of(&[jwk]).expect("padded key loads");
    assert_eq!(set.keys()[0].kind(), KeyKind::Rsa(2048));
    // And it verifies what the key signs.
    let v = verify(token(&key).as_bytes(), &set, &Policy::default(), NOW).expect("verifies");
    assert_eq!(v.kid.as_deref(), Some("padded"));
}

#[test]
fn ec_coordinates_of_the_wrong_length_are_skipped() {
    let p256 = bare(Algorithm::ES256);
    let x = B64URL.decode(p256["x"].as_str().expect("x")).expect("b64");
    let short = B64URL.encode(&x[1..]);
    let long = B64URL.encode([&[0u8][..], &x].concat());
    assert_eq!(
        problem(with(p256.clone(), "x", json!(short))),
        KeyProblem::CoordinateLength {
            member: "x",
            len: 31,
            curve: "P-256",
            expected: 32
        }
    );
    assert_eq!(
        problem(with(p256, "y", json!(long))),
        KeyProblem::CoordinateLength {
            member: "y",
            len: 33,
            curve: "P-256",
            expected: 32
        }
    );
    // P-521 coordinates are 66 bytes; 65 (a stripped leading zero) is refused.
    let p521 = bare(Algorithm::ES512);
    let y = B64URL.decode(p521["y"].as_str().expect("y")).expect("b64");
    assert_eq!(
        problem(with(p521, "y", json!(B64URL.encode(&y[1..])))),
        KeyProblem::CoordinateLength {
            member: "y",
            len: 65,
            curve: "P-521",
            expected: 66
        }
    );
    // Ed25519 public keys are 32 bytes.
    let ed = bare(Algorithm::EdDSA);
    assert_eq!(
        problem(with(ed, "x", json!(B64URL.encode([1u8; 31])))),
        KeyProblem::CoordinateLength {
            member: "x",
            len: 31,
            curve: "Ed25519",
            expected: 32
        }
    );
}

#[test]
fn ec_point_not_on_the_curve_is_rejected() {
    let mut one = [0u8; 32];
    one[31] = 1;
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": B64URL.encode(one), "y": B64URL.encode(one)});
    assert!(
        matches!(problem(jwk), KeyProblem::Rejected(_)),
        "(1, 1) is not on P-256"
    );
    // A real key with one coordinate altered.
    let mut jwk = bare(Algorithm::ES384);
    let mut y = B64URL.decode(jwk["y"].as_str().expect("y")).expect("b64");
    y[47] ^= 1;
    jwk["y"] = B64URL.encode(&y).into();
    assert!(matches!(problem(jwk), KeyProblem::Rejected(_)));
}

#[test]
fn jwk_alg_that_does_not_fit_the_key_is_skipped() {
    let rows = [
        (bare(Algorithm::RS256), Algorithm::ES256, "RSA"),
        (bare(Algorithm::RS256), Algorithm::HS256, "RSA"),
        (bare(Algorithm::ES256), Algorithm::ES384, "P-256"),
        (bare(Algorithm::ES256), Algorithm::RS256, "P-256"),
        (bare(Algorithm::ES512), Algorithm::ES256, "P-521"),
        (bare(Algorithm::EdDSA), Algorithm::ES256, "Ed25519"),
        (oct(64), Algorithm::RS256, "oct"),
        (oct(64), Algorithm::EdDSA, "oct"),
    ];
    for (jwk, alg, kind) in rows {
        let jwk = with(jwk, "alg", json!(alg.as_str()));
        assert_eq!(
            problem(jwk.clone()),
            KeyProblem::AlgMismatch { alg, kind },
            "{jwk}"
        );
    }
}

#[test]
fn jwk_alg_that_is_not_a_signature_algorithm_is_skipped() {
    for alg in ["none", "None", "RSA-OAEP", "ECDH-ES", "rs256", "HS1", ""] {
        assert_eq!(
            problem(with(oct(64), "alg", json!(alg))),
            KeyProblem::UnsupportedAlg(alg.into()),
            "alg {alg:?}"
        );
    }
    assert_eq!(
        problem(with(oct(64), "alg", json!(256))),
        KeyProblem::Invalid("alg", "string")
    );
}

#[test]
fn kid_that_is_not_a_string_is_invalid_and_not_reported_as_kid() {
    let s = skip(with(oct(32), "kid", json!(5)));
    assert_eq!(
        s,
        SkippedKey {
            index: 1,
            kid: None,
            problem: KeyProblem::Invalid("kid", "string")
        }
    );
}

#[test]
fn missing_members_are_named() {
    let rsa = bare(Algorithm::RS256);
    let ec = bare(Algorithm::ES256);
    let okp = bare(Algorithm::EdDSA);
    let rows = [
        (without(oct(32), "kty"), "kty"),
        (without(oct(32), "k"), "k"),
        (without(rsa.clone(), "n"), "n"),
        (without(rsa, "e"), "e"),
        (without(ec.clone(), "crv"), "crv"),
        (without(ec.clone(), "x"), "x"),
        (without(ec, "y"), "y"),
        (without(okp.clone(), "crv"), "crv"),
        (without(okp, "x"), "x"),
    ];
    for (jwk, member) in rows {
        assert_eq!(problem(jwk.clone()), KeyProblem::Missing(member), "{jwk}");
    }
}

#[test]
fn members_that_are_not_strict_base64url_are_invalid() {
    let k = B64URL.encode([7u8; 32]);
    let rows = [
        (format!("{k}="), "padding"),
        (format!("+{}", &k[1..]), "+"),
        (format!("/{}", &k[1..]), "/"),
        (format!("{} ", &k), "space"),
    ];
    for (bad, what) in rows {
        assert_eq!(
            problem(json!({"kty": "oct", "k": bad})),
            KeyProblem::Invalid("k", "base64url value"),
            "{what}: {bad}"
        );
    }
    // In RSA and EC members too.
    let rsa = bare(Algorithm::RS256);
    assert_eq!(
        problem(with(rsa, "e", json!("AQAB="))),
        KeyProblem::Invalid("e", "base64url value")
    );
    let ec = bare(Algorithm::ES256);
    let x = ec["x"].as_str().expect("x").to_owned();
    assert_eq!(
        problem(with(ec, "x", json!(format!("{x}=")))),
        KeyProblem::Invalid("x", "base64url value")
    );
    // Not a string at all.
    assert_eq!(
        problem(json!({"kty": "oct", "k": 5})),
        KeyProblem::Invalid("k", "string")
    );
}

#[test]
fn base64url_with_non_canonical_trailing_bits_is_invalid() {
    // 32 bytes encode to 43 characters; the last carries 2 unused bits.
    let k = B64URL.encode([0u8; 32]);
    assert!(k.ends_with('A'));
    let bad = format!("{}B", &k[..k.len() - 1]);
    assert_eq!(
        problem(json!({"kty": "oct", "k": bad})),
        KeyProblem::Invalid("k", "base64url value")
    );
}

#[test]
fn key_that_is_not_an_object_is_skipped() {
    assert_eq!(problem(json!("key")), KeyProblem::NotAnObject);
    assert_eq!(problem(json!([1, 2])), KeyProblem::NotAnObject);
}

#[test]
fn skipped_key_display_names_index_kid_and_reason() {
    let s = SkippedKey {
        index: 3,
        kid: Some("old-2019".into()),
        problem: KeyProblem::RsaSize(1024),
    };
    let text = s.to_string();
    assert_eq!(
        text,
        "key 3 (kid \"old-2019\") skipped: RSA modulus is 1024 bits; 2048 to 8192 required"
    );
    let s = SkippedKey {
        index: 0,
        kid: None,
        problem: KeyProblem::NotForSignatures("enc".into()),
    };
    assert_eq!(
        s.to_string(),
        "key 0 (no kid) skipped: \"use\" is \"enc\", not \"sig\""
    );
}

#[test]
fn skipped_key_keeps_its_kid_and_index() {
    let s = skip(with(with(oct(32), "use", json!("enc")), "kid", json!("e1")));
    assert_eq!(s.index, 1);
    assert_eq!(s.kid.as_deref(), Some("e1"));
    assert!(s.to_string().contains("\"e1\""), "{s}");
}

// ---------------------------------------------------------------- whole sets

#[test]
fn set_without_a_usable_key_lists_every_skipped_key() {
    let keys = [
        with(with(oct(32), "use", json!("enc")), "kid", json!("enc-key")),
        json!({"kty": "RSA", "kid": "weak", "n": RSA_1024_N, "e": "AQAB"}),
        with(json!({"kty": "foo"}), "kid", json!("alien")),
    ];
    let err = set_of(&keys).expect_err("nothing usable");
    let KeySetError::NoUsableKey(skipped) = &err else {
        panic!("expected NoUsableKey, got {err:?}");
    };
    assert_eq!(
        skipped.iter().map(|s| s.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        skipped[0].problem,
        KeyProblem::NotForSignatures("enc".into())
    );
    assert_eq!(skipped[1].problem, KeyProblem::RsaSize(1024));
    assert_eq!(skipped[2].problem, KeyProblem::UnsupportedKty("foo".into()));
    let text = err.to_string();
    assert!(text.starts_with("no usable signing key:"), "{text}");
    for kid in ["enc-key", "weak", "alien"] {
        assert!(text.contains(&format!("(kid \"{kid}\")")), "{text}");
    }
    assert_eq!(text.lines().count(), 4, "one line per key: {text}");
}

#[test]
fn empty_keys_array_is_no_usable_key() {
    let err = KeySet::from_jwks(br#"{"keys":[]}"#).expect_err("empty");
    assert_eq!(err, KeySetError::NoUsableKey(Vec::new()));
    assert_eq!(err.to_string(), "no usable signing key (the set is empty)");
}

#[test]
fn text_that_is_not_json_is_a_json_error() {
    for text in [&b"not json"[..], b"", b"{\"keys\":[", b"\xff"] {
        assert!(
            matches!(KeySet::from_jwks(text), Err(KeySetError::Json(_))),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    // JSON, but not an object.
    assert_eq!(
        KeySet::from_jwks(b"[]").expect_err("array"),
        KeySetError::Json("not a JSON object".into())
    );
}

#[test]
fn object_without_keys_array_is_no_keys_array() {
    for text in [
        &br#"{}"#[..],
        br#"{"kty":"oct","k":"AAAA"}"#,
        br#"{"keys":{}}"#,
        br#"{"keys":"x"}"#,
        br#"{"Keys":[]}"#,
    ] {
        assert_eq!(
            KeySet::from_jwks(text).expect_err("no keys"),
            KeySetError::NoKeysArray,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn usable_keys_load_despite_skipped_neighbours() {
    let keys = [
        json!({"kty": "foo", "kid": "a"}),
        with(oct(32), "kid", json!("b")),
        json!({"kty": "RSA", "kid": "c", "n": RSA_1024_N, "e": "AQAB"}),
        with(bare(Algorithm::ES256), "kid", json!("d")),
    ];
    let set = set_of(&keys).expect("loads");
    let kids: Vec<_> = set.keys().iter().map(|k| k.kid().map(|k| &**k)).collect();
    assert_eq!(kids, [Some("b"), Some("d")]);
    let skipped: Vec<_> = set
        .skipped()
        .iter()
        .map(|s| (s.index, s.kid.as_deref()))
        .collect();
    assert_eq!(skipped, [(0, Some("a")), (2, Some("c"))]);
}

// -------------------------------------------------------------- candidates

fn kids<'a>(it: impl Iterator<Item = &'a Key>) -> Vec<Option<String>> {
    it.map(|k| k.kid().map(|k| k.to_string())).collect()
}

#[test]
fn duplicate_kids_are_both_candidates() {
    let keys = [
        with(oct(32), "kid", json!("dup")),
        with(bare(Algorithm::ES256), "kid", json!("dup")),
        with(oct(48), "kid", json!("other")),
    ];
    let set = set_of(&keys).expect("loads");
    let dup: Vec<KeyKind> = set.candidates(Some("dup")).map(Key::kind).collect();
    assert_eq!(dup, [KeyKind::Hmac(32), KeyKind::Ec(Curve::P256)]);
}

#[test]
fn candidates_with_kid_are_only_that_kids_keys() {
    let keys = [
        with(oct(32), "kid", json!("a")),
        with(oct(32), "kid", json!("b")),
        oct(64),
    ];
    let set = set_of(&keys).expect("loads");
    assert_eq!(kids(set.candidates(Some("a"))), [Some("a".to_owned())]);
    assert_eq!(kids(set.candidates(Some("b"))), [Some("b".to_owned())]);
    // Kid-less JWK keys do not stand for an unknown kid.
    assert!(kids(set.candidates(Some("c"))).is_empty());
    assert!(kids(set.candidates(Some(""))).is_empty());
    assert!(kids(set.candidates(Some("A"))).is_empty());
}

#[test]
fn candidates_without_kid_are_all_keys() {
    let keys = [
        with(oct(32), "kid", json!("a")),
        with(oct(32), "kid", json!("b")),
        oct(64),
    ];
    let set = set_of(&keys).expect("loads");
    assert_eq!(
        kids(set.candidates(None)),
        [Some("a".to_owned()), Some("b".to_owned()), None]
    );
}

// ----------------------------------------------------------------------- PEM

#[test]
fn pem_spki_rsa_loads_and_serves_all_six_rsa_algorithms() {
    let der = rsa_pair().public_key().as_der().expect("SPKI");
    let set = KeySet::from_pem(&pem_public("PUBLIC KEY", der.as_ref()), None).expect("loads");
    assert_eq!(set.keys().len(), 1);
    assert_eq!(set.keys()[0].kind(), KeyKind::Rsa(2048));
    assert_eq!(set.keys()[0].algorithms().collect::<Vec<_>>(), RSA_ALGS);
}

#[test]
fn pem_pkcs1_rsa_public_key_loads() {
    let der = rsa_pair().public_key().as_ref().to_vec();
    let set = KeySet::from_pem(&pem_public("RSA PUBLIC KEY", &der), None).expect("loads");
    assert_eq!(set.keys()[0].kind(), KeyKind::Rsa(2048));
    assert_eq!(set.keys()[0].algorithms().collect::<Vec<_>>(), RSA_ALGS);
}

#[test]
fn pem_spki_ec_loads_on_each_curve() {
    for (signing, curve) in [
        (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, Curve::P256),
        (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, Curve::P384),
        (&signature::ECDSA_P521_SHA512_FIXED_SIGNING, Curve::P521),
    ] {
        let pem = pem_public("PUBLIC KEY", &ec_spki(signing));
        let set = KeySet::from_pem(&pem, None).expect("loads");
        assert_eq!(set.keys()[0].kind(), KeyKind::Ec(curve), "{curve:?}");
        assert_eq!(
            set.keys()[0].algorithms().collect::<Vec<_>>(),
            [curve.algorithm()]
        );
    }
}

#[test]
fn pem_spki_ed25519_loads() {
    let pair = Ed25519KeyPair::generate().expect("generate");
    let der = pair.public_key().as_der().expect("SPKI");
    let set = KeySet::from_pem(&pem_public("PUBLIC KEY", der.as_ref()), None).expect("loads");
    assert_eq!(set.keys()[0].kind(), KeyKind::Ed25519);
    assert_eq!(
        set.keys()[0].algorithms().collect::<Vec<_>>(),
        [Algorithm::EdDSA]
    );
}

#[test]
fn pem_keys_verify_tokens_of_their_private_key() {
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::PS512,
    ] {
        let key = match alg.family() {
            Family::Rsa => rsa().clone_with_kid("any").with_alg(alg).expect("fits"),
            _ => SigningKey::generate(alg)
                .expect("generate")
                .with_kid(Some("any".into())),
        };
        let pem = pem_public("PUBLIC KEY", &spki_of(&key));
        let set = KeySet::from_pem(&pem, None).expect("loads");
        let v = verify(token(&key).as_bytes(), &set, &Policy::default(), NOW)
            .unwrap_or_else(|r| panic!("{alg}: {r:?}"));
        assert_eq!(v.alg, Some(alg));
        assert_eq!(v.kid, None, "a kid-less PEM key reports no kid");
        // Another key of the same type does not verify it.
        let other = match alg.family() {
            Family::Rsa => {
                let der = rsa_pair().public_key().as_der().expect("SPKI");
                der.as_ref().to_vec()
            }
            _ => spki_of(&SigningKey::generate(alg).expect("generate")),
        };
        let set = KeySet::from_pem(&pem_public("PUBLIC KEY", &other), None).expect("loads");
        let r =
            verify(token(&key).as_bytes(), &set, &Policy::default(), NOW).expect_err("other key");
        assert_eq!(r.reason, Reject::BadSignature, "{alg}");
    }
}

#[test]
fn pem_key_without_kid_matches_any_token_kid() {
    let pem = pem_public(
        "PUBLIC KEY",
        &ec_spki(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
    );
    let set = KeySet::from_pem(&pem, None).expect("loads");
    assert_eq!(set.keys()[0].kid(), None);
    assert_eq!(set.candidates(Some("whatever")).count(), 1);
    assert_eq!(set.candidates(Some("")).count(), 1);
    assert_eq!(set.candidates(None).count(), 1);
}

#[test]
fn pem_key_with_kid_matches_only_that_kid() {
    let pem = pem_public(
        "PUBLIC KEY",
        &ec_spki(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
    );
    let set = KeySet::from_pem(&pem, Some("k7")).expect("loads");
    assert_eq!(set.keys()[0].kid().map(|k| &**k), Some("k7"));
    assert_eq!(set.candidates(Some("k7")).count(), 1);
    assert_eq!(set.candidates(Some("whatever")).count(), 0);
    assert_eq!(set.candidates(None).count(), 1);
}

#[test]
fn pem_keys_keep_matching_any_kid_after_extend() {
    let mut set = set_of(&[with(oct(32), "kid", json!("a"))]).expect("loads");
    let pem = pem_public(
        "PUBLIC KEY",
        &ec_spki(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
    );
    set.extend(KeySet::from_pem(&pem, None).expect("loads"));
    let a: Vec<KeyKind> = set.candidates(Some("a")).map(Key::kind).collect();
    assert_eq!(a, [KeyKind::Hmac(32), KeyKind::Ec(Curve::P256)]);
    let z: Vec<KeyKind> = set.candidates(Some("z")).map(Key::kind).collect();
    assert_eq!(z, [KeyKind::Ec(Curve::P256)]);
    assert_eq!(set.candidates(None).count(), 2);
}

#[test]
fn extend_merges_keys_and_skipped_lists() {
    let mut set = set_of(&[
        with(oct(32), "kid", json!("a")),
        json!({"kty": "foo", "kid": "x"}),
    ])
    .expect("loads");
    let other = set_of(&[
        json!({"kty": "bar", "kid": "y"}),
        with(oct(48), "kid", json!("b")),
    ])
    .expect("loads");
    set.extend(other);
    assert_eq!(set.keys().len(), 2);
    assert_eq!(kids(set.candidates(Some("b"))), [Some("b".to_owned())]);
    let skipped: Vec<_> = set.skipped().iter().map(|s| s.kid.as_deref()).collect();
    assert_eq!(skipped, [Some("x"), Some("y")]);
}

#[test]
fn pem_private_key_block_is_skipped_as_not_a_public_key() {
    let key = SigningKey::generate(Algorithm::ES256).expect("generate");
    let private = key.private_file().expect("private file");
    let err = KeySet::from_pem(&private, None).expect_err("no public key");
    assert_eq!(
        err,
        KeySetError::NoUsableKey(vec![SkippedKey {
            index: 0,
            kid: None,
            problem: KeyProblem::NotAPublicKey("PRIVATE KEY".into())
        }])
    );
    // Next to a public key, only the private block is skipped.
    let text = format!(
        "{}{}",
        pem_public("PUBLIC KEY", &spki_of(&key)),
        super::super::pem::encode("PRIVATE KEY", &[1, 2, 3])
    );
    let set = KeySet::from_pem(&text, Some("k")).expect("loads");
    assert_eq!(set.keys().len(), 1);
    assert_eq!(
        set.skipped(),
        [SkippedKey {
            index: 1,
            kid: Some("k".into()),
            problem: KeyProblem::NotAPublicKey("PRIVATE KEY".into())
        }]
    );
}

#[test]
fn pem_certificate_block_is_not_a_public_key() {
    let text = super::super::pem::encode("CERTIFICATE", &[0x30, 0x00]);
    let err = KeySet::from_pem(&text, None).expect_err("not a key");
    assert_eq!(
        err,
        KeySetError::NoUsableKey(vec![SkippedKey {
            index: 0,
            kid: None,
            problem: KeyProblem::NotAPublicKey("CERTIFICATE".into())
        }])
    );
}

#[test]
fn pem_rsa_1024_is_skipped_for_its_size() {
    let err = KeySet::from_pem(RSA_1024_PEM, None).expect_err("too small");
    assert_eq!(
        err,
        KeySetError::NoUsableKey(vec![SkippedKey {
            index: 0,
            kid: None,
            problem: KeyProblem::RsaSize(1024)
        }])
    );
}

#[test]
fn pem_garbage_der_is_rejected() {
    let text = pem_public("PUBLIC KEY", b"definitely not DER");
    let err = KeySet::from_pem(&text, None).expect_err("garbage");
    let KeySetError::NoUsableKey(skipped) = &err else {
        panic!("expected NoUsableKey, got {err:?}");
    };
    assert!(
        matches!(&skipped[0].problem, KeyProblem::Rejected(_)),
        "{skipped:?}"
    );
}

#[test]
fn text_that_is_not_pem_is_a_pem_error() {
    assert_eq!(
        KeySet::from_pem("just text", None).expect_err("not PEM"),
        KeySetError::Pem(super::super::pem::PemError::Empty)
    );
}

/// `SigningKey` is not `Clone`; rebuild the shared RSA key from its private
/// file with another kid.
trait CloneWithKid {
    fn clone_with_kid(&self, kid: &str) -> SigningKey;
}

impl CloneWithKid for SigningKey {
    fn clone_with_kid(&self, kid: &str) -> SigningKey {
        SigningKey::from_pem(&self.private_file().expect("private file"))
            .expect("reads back")
            .with_kid(Some(kid.to_owned()))
    }
}

// ------------------------------------------------------- published key sets

#[test]
fn oct_keys_of_a_published_set_are_skipped_naming_their_kid() {
    let jwks = json!({"keys": [
        with(oct(32), "kid", json!("hmac-1")),
        with(bare(Algorithm::ES256), "kid", json!("ec-1")),
    ]})
    .to_string();
    let set = KeySet::from_public_jwks(jwks.as_bytes()).expect("the EC key keeps it usable");
    assert_eq!(kids(set.keys().iter()), [Some("ec-1".to_owned())]);
    assert_eq!(
        set.skipped(),
        [SkippedKey {
            index: 0,
            kid: Some("hmac-1".into()),
            problem: KeyProblem::SecretInPublicSet,
        }]
    );
    let text = set.skipped()[0].to_string();
    assert!(
        text.contains("\"hmac-1\"") && text.contains("oct"),
        "{text}"
    );
    // The same text in a local key file keeps its secret.
    let local = KeySet::from_jwks(jwks.as_bytes()).expect("loads");
    assert_eq!(local.keys().len(), 2);
    assert!(local.skipped().is_empty());
}

#[test]
fn a_published_set_of_only_oct_keys_has_no_usable_key() {
    let jwks = json!({"keys": [
        with(oct(32), "kid", json!("a")),
        with(with(oct(64), "kid", json!("b")), "alg", json!("HS512")),
    ]})
    .to_string();
    let err = KeySet::from_public_jwks(jwks.as_bytes()).expect_err("nothing usable");
    let KeySetError::NoUsableKey(skipped) = &err else {
        panic!("expected NoUsableKey, got {err:?}");
    };
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped
            .iter()
            .all(|s| s.problem == KeyProblem::SecretInPublicSet),
        "{skipped:?}"
    );
}

// ------------------------------------------------------- duplicate members

/// `jwk`'s JSON text with `member` written once more at its start.
fn text_with_leading(jwk: &Value, member: &str) -> String {
    format!("{{{member},{}", &jwk.to_string()[1..])
}

#[test]
fn a_jwk_with_a_duplicate_member_is_skipped_naming_its_kid() {
    let good = with(bare(Algorithm::ES256), "kid", json!("good")).to_string();
    let twice = text_with_leading(
        &with(bare(Algorithm::ES256), "kid", json!("twice")),
        r#""kty":"oct""#,
    );
    let escaped = text_with_leading(
        &with(bare(Algorithm::ES256), "kid", json!("escaped")),
        r#""\u0063rv":"P-384""#,
    );
    let nested = text_with_leading(
        &with(bare(Algorithm::ES256), "kid", json!("nested")),
        r#""ext":{"a":[{"b":1,"b":2}]}"#,
    );
    let text = format!(r#"{{"keys":[{good},{twice},{escaped},{nested}]}}"#);
    for set in [
        KeySet::from_jwks(text.as_bytes()).expect("the good key loads"),
        KeySet::from_public_jwks(text.as_bytes()).expect("the good key loads"),
    ] {
        assert_eq!(kids(set.keys().iter()), [Some("good".to_owned())]);
        let skipped: Vec<_> = set
            .skipped()
            .iter()
            .map(|s| (s.index, s.kid.as_deref(), s.problem.clone()))
            .collect();
        assert_eq!(
            skipped,
            [
                (1, Some("twice"), KeyProblem::DuplicateMember("kty".into())),
                (
                    2,
                    Some("escaped"),
                    KeyProblem::DuplicateMember("crv".into())
                ),
                (3, Some("nested"), KeyProblem::DuplicateMember("b".into())),
            ]
        );
        let line = set.skipped()[0].to_string();
        assert!(
            line.contains("\"twice\"") && line.contains("\"kty\" appears twice"),
            "{line}"
        );
    }
    // Even a duplicate that repeats the same value is refused.
    let same = text_with_leading(
        &with(bare(Algorithm::ES256), "kid", json!("same")),
        r#""kty":"EC""#,
    );
    let err = KeySet::from_jwks(format!(r#"{{"keys":[{same}]}}"#).as_bytes())
        .expect_err("its one key is skipped");
    assert!(err.to_string().contains("\"kty\" appears twice"), "{err}");
}

#[test]
fn a_duplicate_member_outside_the_keys_refuses_the_whole_set() {
    let good = json!([with(bare(Algorithm::ES256), "kid", json!("a"))]).to_string();
    for text in [
        format!(r#"{{"keys":{good},"keys":[]}}"#),
        format!(r#"{{"keys":[],"keys":{good}}}"#),
        format!(r#"{{"keys":{good},"\u006beys":{good}}}"#),
        format!(r#"{{"keys":{good},"meta":{{"a":1,"a":2}}}}"#),
    ] {
        for result in [
            KeySet::from_jwks(text.as_bytes()),
            KeySet::from_public_jwks(text.as_bytes()),
        ] {
            match result {
                Err(KeySetError::Json(message)) => {
                    assert!(message.contains("duplicate member"), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}

// ----------------------------------------------------- Ed25519 small order

/// Every encoding of an Ed25519 point of small order (libsodium's
/// `has_small_order` blocklist, spelled out): the 8 torsion points in their
/// canonical encodings, then the non-canonical ones (x = -0 for the two
/// points with x = 0; y = p and y = p + 1, with either sign bit).
const SMALL_ORDER_POINTS: [(&str, &str); 14] = [
    (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "identity (order 1)",
    ),
    (
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "(0, -1), order 2",
    ),
    (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "(sqrt(-1), 0), order 4",
    ),
    (
        "0000000000000000000000000000000000000000000000000000000000000080",
        "(-sqrt(-1), 0), order 4",
    ),
    (
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "order 8",
    ),
    (
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "order 8",
    ),
    (
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "order 8",
    ),
    (
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "order 8",
    ),
    (
        "0100000000000000000000000000000000000000000000000000000000000080",
        "identity, x = -0",
    ),
    (
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "order 2, x = -0",
    ),
    (
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "y = p (0), order 4",
    ),
    (
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "y = p (0), sign bit set",
    ),
    (
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "y = p + 1 (1), the identity",
    ),
    (
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "y = p + 1 (1), sign bit set",
    ),
];

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn ed25519_keys_of_small_order_are_skipped_as_jwks() {
    for (n, (point, what)) in SMALL_ORDER_POINTS.iter().enumerate() {
        let kid = format!("torsion-{n}");
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64URL.encode(unhex(point))});
        let s = skip(jwk);
        assert_eq!(s.problem, KeyProblem::SmallOrder, "{what}: {point}");
        assert_eq!(s.kid.as_deref(), Some(kid.as_str()));
    }
}

#[test]
fn ed25519_keys_of_small_order_are_skipped_as_pem() {
    // The fixed SPKI prefix of an Ed25519 public key (RFC 8410).
    let prefix = unhex("302a300506032b6570032100");
    for (point, what) in SMALL_ORDER_POINTS {
        let der = [prefix.as_slice(), &unhex(point)].concat();
        let err = KeySet::from_pem(&pem_public("PUBLIC KEY", &der), Some("t"))
            .expect_err("its one key is skipped");
        let KeySetError::NoUsableKey(skipped) = &err else {
            panic!("{what}: expected NoUsableKey, got {err:?}");
        };
        assert_eq!(skipped[0].problem, KeyProblem::SmallOrder, "{what}");
    }
}

#[test]
fn ed25519_keys_next_to_small_order_encodings_still_load() {
    // A real key loads; so does one whose encoding differs from a torsion
    // point's only where the check masks nothing (it is not small order,
    // whatever aws-lc-rs thinks of it later).
    let real = bare(Algorithm::EdDSA);
    assert_eq!(algorithms_of(real), [Algorithm::EdDSA]);
    let mut near = unhex(SMALL_ORDER_POINTS[0].0);
    near[0] = 9;
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(&near)});
    let set = set_of(&[jwk]);
    if let Err(KeySetError::NoUsableKey(skipped)) = &set {
        assert_ne!(skipped[0].problem, KeyProblem::SmallOrder);
    }
}

// ------------------------------------------------------- kid-less candidates

#[test]
fn kidless_candidates_count_the_keys_serving_each_algorithm() {
    let set = set_of(&[
        with(bare(Algorithm::ES256), "kid", json!("a")),
        with(bare(Algorithm::ES256), "kid", json!("b")),
        with(bare(Algorithm::RS256), "kid", json!("r")),
        with(oct(48), "kid", json!("h")),
    ])
    .expect("loads");
    assert_eq!(set.kidless_candidates(Algorithm::ES256), 2);
    assert_eq!(set.kidless_candidates(Algorithm::PS384), 1);
    assert_eq!(set.kidless_candidates(Algorithm::HS384), 1);
    assert_eq!(set.kidless_candidates(Algorithm::HS512), 0);
    assert_eq!(set.kidless_candidates(Algorithm::EdDSA), 0);
    let mut more = set.clone();
    more.extend(set);
    assert_eq!(more.kidless_candidates(Algorithm::ES256), 4);
}
