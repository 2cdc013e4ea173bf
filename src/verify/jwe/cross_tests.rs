//! Cross-library vectors: tokens and keys made by panva/jose (Node), an
//! independent JOSE implementation, in `tests/conformance/jwe/jose.json`
//! (`tests/conformance/jwe/jose/generate.mjs` made them; see the README
//! there). Every supported `alg` x `enc` pair, one nested JWT per `alg`,
//! and the refusals jose can produce.

use serde_json::{Map, Value};

use super::*;
use crate::verify::{Algorithm, KeySet, Policy, verify};

/// Before the inner tokens' `exp` (4102444800, 2100-01-01).
const NOW: i64 = 1_700_000_000;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/jwe/jose.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        panic!("{path} is missing");
    };
    serde_json::from_str(&text).unwrap()
}

fn cases(vectors: &Value) -> &[Value] {
    vectors["cases"].as_array().unwrap()
}

fn text<'a>(case: &'a Value, member: &str) -> &'a str {
    case[member]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no string {member:?}"))
}

fn jwk(value: &Value) -> &Map<String, Value> {
    value.as_object().unwrap()
}

fn key_of(case: &Value) -> DecryptionKey {
    let name = text(case, "name");
    DecryptionKey::from_jwk(jwk(&case["key"])).unwrap_or_else(|e| panic!("{name}: key: {e}"))
}

/// The jwtd error each refusal made by jose must get: all of them are
/// facts of the public header.
fn refusal(name: &str) -> JweError {
    if name.contains("PBES2") {
        JweError::Pbes2
    } else if name.contains("zip") {
        JweError::Zip
    } else if name.contains("crit") {
        JweError::Crit
    } else if name.contains("unsupported") {
        JweError::Algorithm
    } else if name.contains("epk") {
        JweError::EphemeralKey
    } else {
        panic!("{name}: a refuse case this test does not know")
    }
}

/// Every case as `jose.json` says: "decrypt" cases give the plaintext (a
/// nested one, a JWS that verifies); "refuse" cases give their reason.
#[test]
fn jose_vectors() {
    let vectors = vectors();
    let plaintext = text(&vectors, "plaintext");
    let (mut decrypted, mut nested, mut refused) = (0, 0, 0);
    for case in cases(&vectors) {
        let name = text(case, "name");
        let key = key_of(case);
        assert_eq!(key.kid(), case["key"]["kid"].as_str(), "{name}: kid");
        let got = decrypt(text(case, "token").as_bytes(), &key);
        match text(case, "expect") {
            "decrypt" => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(got.alg.as_str(), text(case, "alg"), "{name}");
                assert_eq!(got.enc.as_str(), text(case, "enc"), "{name}");
                assert_eq!(Some(got.nested), case["nested"].as_bool(), "{name}: cty");
                if got.nested {
                    verify_inner(name, case, &got.plaintext);
                    nested += 1;
                } else {
                    assert_eq!(
                        String::from_utf8(got.plaintext).unwrap(),
                        plaintext,
                        "{name}"
                    );
                }
                decrypted += 1;
            }
            "refuse" => {
                assert_eq!(got.map(|_| ()), Err(refusal(name)), "{name}");
                refused += 1;
            }
            other => panic!("{name}: expect {other:?}"),
        }
    }
    // Every alg x enc (ECDH-ES on three curves), one nested token per
    // alg and curve, and the refusals.
    let pairs: std::collections::BTreeSet<(&str, &str)> = cases(&vectors)
        .iter()
        .filter(|c| c["expect"] == "decrypt" && c["nested"] == false)
        .map(|c| (text(c, "alg"), text(c, "enc")))
        .collect();
    assert_eq!(pairs.len(), 10 * 6, "{pairs:?}");
    assert!(decrypted >= 84, "{decrypted} decrypted");
    assert_eq!(nested, 12);
    assert!(refused >= 8, "{refused} refusals");
}

/// The inner token of a nested case is a JWS that jwtd's own verifier
/// accepts with the case's signing key.
fn verify_inner(name: &str, case: &Value, jws: &[u8]) {
    let signing = &case["signing_jwk"];
    let keys = serde_json::json!({ "keys": [signing] }).to_string();
    let keys = KeySet::from_jwks(keys.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let verified =
        verify(jws, &keys, &Policy::default(), NOW).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert_eq!(verified.alg, Some(Algorithm::ES256), "{name}");
    assert_eq!(
        verified.kid.as_deref(),
        signing["kid"].as_str(),
        "{name}: kid"
    );
    let claims = &verified.claims;
    assert_eq!(claims.sub.as_deref(), Some("alice"), "{name}");
    assert_eq!(
        claims.iss.as_deref(),
        Some("https://issuer.example"),
        "{name}"
    );
    assert_eq!(claims.exp, Some(4_102_444_800), "{name}");
}

/// One bit flipped in the encrypted key, IV, ciphertext or tag of every
/// non-nested "decrypt" case (at its first, middle and last byte), and
/// the protected header (the AAD) re-encoded with one member more: each
/// is `JweError::Decrypt`, never another reason.
#[test]
fn tampered_jose_tokens_are_one_opaque_refusal() {
    let vectors = vectors();
    let mut algs = std::collections::BTreeSet::new();
    let mut checked = 0;
    for case in cases(&vectors) {
        if case["expect"] != "decrypt" || case["nested"] == true {
            continue;
        }
        let name = text(case, "name");
        let key = key_of(case);
        let token = text(case, "token");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 5, "{name}");
        // The encrypted key, IV, ciphertext and tag.
        for i in 1..5 {
            let bytes = B64URL.decode(parts[i]).unwrap();
            if bytes.is_empty() {
                assert!(
                    i == 1 && matches!(text(case, "alg"), "dir" | "ECDH-ES"),
                    "{name}: part {i} is empty"
                );
                continue;
            }
            for (at, bit) in [(0, 0x80), (bytes.len() / 2, 0x10), (bytes.len() - 1, 0x01)] {
                let mut flipped = bytes.clone();
                flipped[at] ^= bit;
                let encoded = B64URL.encode(&flipped);
                let mut tampered = parts.clone();
                tampered[i] = &encoded;
                assert_eq!(
                    decrypt(tampered.join(".").as_bytes(), &key).map(|_| ()),
                    Err(JweError::Decrypt),
                    "{name}: part {i}, byte {at}, bit {bit:#x}"
                );
                checked += 1;
            }
        }
        // The AAD: the same header with one member more.
        let mut header: Map<String, Value> =
            serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
        header.insert("x-tampered".to_owned(), Value::Bool(true));
        let encoded = B64URL.encode(serde_json::to_vec(&header).unwrap());
        let mut tampered = parts.clone();
        tampered[0] = &encoded;
        assert_eq!(
            decrypt(tampered.join(".").as_bytes(), &key).map(|_| ()),
            Err(JweError::Decrypt),
            "{name}: header"
        );
        checked += 1;
        algs.insert(text(case, "alg"));
    }
    assert_eq!(algs.len(), 10, "{algs:?}");
    assert!(checked > 500, "{checked}");
}

/// Each non-nested "decrypt" case with another key of the same type
/// (another jose key of the same alg and curve, or fresh oct bytes of the
/// same length and alg): `JweError::Decrypt`, whatever the algorithm. For
/// RSA-OAEP that is the random content key of RFC 7516 11.5 failing where
/// a bad tag fails.
#[test]
fn jose_tokens_under_the_wrong_key_are_one_opaque_refusal() {
    let vectors = vectors();
    let all = cases(&vectors);
    let mut checked = 0;
    for case in all {
        if case["expect"] != "decrypt" || case["nested"] == true {
            continue;
        }
        let name = text(case, "name");
        let own = jwk(&case["key"]);
        let wrong = if own["kty"] == "oct" {
            let len = B64URL.decode(own["k"].as_str().unwrap()).unwrap().len();
            let mut k = vec![0u8; len];
            aws_lc_rs::rand::fill(&mut k).unwrap();
            let mut other = own.clone();
            other.insert("k".to_owned(), Value::String(B64URL.encode(&k)));
            other
        } else {
            // The nested case's key of the same alg and curve.
            let other = all
                .iter()
                .filter(|c| c["nested"] == true && c["alg"] == case["alg"])
                .map(|c| jwk(&c["key"]))
                .find(|k| k.get("crv") == own.get("crv"))
                .unwrap_or_else(|| panic!("{name}: no other key"));
            assert_ne!(other.get("d"), own.get("d"), "{name}");
            other.clone()
        };
        let wrong = DecryptionKey::from_jwk(&wrong).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            decrypt(text(case, "token").as_bytes(), &wrong).map(|_| ()),
            Err(JweError::Decrypt),
            "{name}"
        );
        checked += 1;
    }
    assert!(checked >= 72, "{checked}");
}
