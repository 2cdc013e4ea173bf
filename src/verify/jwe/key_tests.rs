//! Decryption keys from PEM files (`tests/conformance/jwe/pem/`, made by
//! OpenSSL), and key selection over several sets (per-issuer `jwe_keys`).

use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use aws_lc_rs::signature::KeyPair as _;
use serde_json::{Map, Value, json};

use super::*;
use crate::seal::seal;

fn pem_file(name: &str) -> String {
    let path = format!(
        "{}/tests/conformance/jwe/pem/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The public JWK of a PEM private key, worked out here with aws-lc-rs
/// (independently of `DecryptionKey`), with `kid`.
fn public_jwk(text: &str, kid: &str) -> Map<String, Value> {
    let block = &super::super::pem::parse(text).unwrap()[0];
    let rsa = match block.label.as_str() {
        "RSA PRIVATE KEY" => rsa::KeyPair::from_der(&block.der).ok(),
        _ => rsa::KeyPair::from_pkcs8(&block.der).ok(),
    };
    let jwk = if let Some(pair) = rsa {
        let public = pair.public_key();
        json!({
            "kty": "RSA",
            "n": B64URL.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64URL.encode(public.exponent().big_endian_without_leading_zero()),
        })
    } else {
        let (curve, crv, len) = [
            (&agreement::ECDH_P256, "P-256", 32),
            (&agreement::ECDH_P384, "P-384", 48),
            (&agreement::ECDH_P521, "P-521", 66),
        ]
        .into_iter()
        .find(|(c, ..)| agreement::PrivateKey::from_private_key_der(c, &block.der).is_ok())
        .expect("an EC key on a NIST curve");
        let private = agreement::PrivateKey::from_private_key_der(curve, &block.der).unwrap();
        let point: EcPublicKeyUncompressedBin<'_> =
            private.compute_public_key().unwrap().as_be_bytes().unwrap();
        let point = point.as_ref();
        json!({
            "kty": "EC",
            "crv": crv,
            "x": B64URL.encode(&point[1..=len]),
            "y": B64URL.encode(&point[len + 1..]),
        })
    };
    let mut jwk = jwk.as_object().unwrap().clone();
    jwk.insert("kid".into(), kid.into());
    jwk
}

#[test]
fn pem_private_keys_of_every_kind_decrypt_for_any_kid() {
    let cases = [
        ("rsa-pkcs1.pem", [KeyAlg::RsaOaep, KeyAlg::RsaOaep256]),
        ("rsa-pkcs8.pem", [KeyAlg::RsaOaep256, KeyAlg::RsaOaep]),
        ("ec-p384-sec1.pem", [KeyAlg::EcdhEs, KeyAlg::EcdhEsKw(192)]),
        ("ec-p256-pkcs8.pem", [KeyAlg::EcdhEsKw(128), KeyAlg::EcdhEs]),
        ("ec-p521-pkcs8.pem", [KeyAlg::EcdhEs, KeyAlg::EcdhEsKw(256)]),
    ];
    for (file, algs) in cases {
        let text = pem_file(file);
        let keys = DecryptionKeys::from_file_contents(text.as_bytes())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(keys.len(), 1, "{file}");
        assert!(keys.skipped_messages().is_empty(), "{file}");
        // PEM has no kid: the key answers whatever kid a JWE names.
        let recipient = public_jwk(&text, "named-by-the-sender");
        for alg in algs {
            for enc in [Enc::Gcm(256), Enc::CbcHs(128)] {
                let token = seal(b"to a PEM key", &recipient, alg, enc, None).unwrap();
                let got = keys.decrypt(token.as_bytes());
                assert_eq!(
                    got.map(|d| d.plaintext),
                    Ok(b"to a PEM key".to_vec()),
                    "{file} {} {}",
                    alg.as_str(),
                    enc.as_str()
                );
            }
        }
        // Another RSA or EC key's JWE is the opaque failure, not a hit.
        let other = DecryptionKeys::from_file_contents(
            pem_file(if file.starts_with("rsa") {
                "rsa-pkcs8.pem"
            } else {
                "ec-p256-pkcs8.pem"
            })
            .as_bytes(),
        )
        .unwrap();
        if file != "rsa-pkcs8.pem" && file != "ec-p256-pkcs8.pem" {
            let token = seal(b"x", &recipient, algs[0], Enc::Gcm(128), None).unwrap();
            assert!(
                matches!(
                    other.decrypt(token.as_bytes()),
                    Err(JweError::Decrypt | JweError::EphemeralKey)
                ),
                "{file}"
            );
        }
    }
}

#[test]
fn unusable_pem_blocks_are_skipped_and_named_and_a_file_of_none_is_refused() {
    let mixed = [
        "ed25519.pem",
        "rsa-pkcs8.pem",
        "ec-secp256k1-sec1.pem",
        "rsa-1024-pkcs1.pem",
    ]
    .map(pem_file)
    .join("\n");
    let keys = DecryptionKeys::from_file_contents(mixed.as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    let skipped = keys.skipped_messages();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0].starts_with("key 0 (no kid) skipped"),
        "{skipped:?}"
    );
    assert!(skipped[2].contains("below 2048 bits"), "{skipped:?}");
    // A public key, a certificate: not private keys.
    let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    let refused = DecryptionKeys::from_file_contents(public.as_bytes());
    assert!(
        matches!(&refused, Err(KeysError::NoUsableKey(v)) if v[0].contains("not a private key")),
        "{refused:?}"
    );
    // Password-protected keys are refused, saying so (the file as a whole:
    // jwtd cannot read it).
    for file in ["rsa-pkcs8-encrypted.pem", "rsa-traditional-encrypted.pem"] {
        let refused = DecryptionKeys::from_file_contents(pem_file(file).as_bytes());
        let message = refused.map(|_| ()).unwrap_err().to_string();
        assert!(message.contains("encrypted"), "{file}: {message}");
    }
    // Broken PEM is not silently a JWK set.
    let broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n";
    assert!(matches!(
        DecryptionKeys::from_file_contents(broken.as_bytes()),
        Err(KeysError::NotASet(_))
    ));
}

fn oct_set(keys: &[(&str, u8)]) -> DecryptionKeys {
    let jwks: Vec<Value> = keys
        .iter()
        .map(|(kid, fill)| json!({"kty": "oct", "kid": kid, "k": B64URL.encode([*fill; 32])}))
        .collect();
    DecryptionKeys::from_jwks(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
}

fn oct_recipient(kid: Option<&str>, fill: u8) -> Map<String, Value> {
    let mut jwk = json!({"kty": "oct", "k": B64URL.encode([fill; 32])});
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
    }
    jwk.as_object().unwrap().clone()
}

#[test]
fn several_sets_answer_which_one_opened_the_token() {
    let first = oct_set(&[("a", 1)]);
    let second = oct_set(&[("b", 2)]);
    let sets = [&first, &second];
    for (kid, fill, want) in [("a", 1, 0), ("b", 2, 1)] {
        let token = seal(
            b"{}",
            &oct_recipient(Some(kid), fill),
            KeyAlg::AesKw(256),
            Enc::Gcm(256),
            None,
        )
        .unwrap();
        let (set, d) = decrypt_in(token.as_bytes(), &sets).unwrap();
        assert_eq!(set, want, "{kid}");
        assert_eq!(d.kid.as_deref(), Some(kid));
        // The result names its key: held by the set that opened it only.
        assert!(sets[want].contains(d.key));
        assert!(!sets[1 - want].contains(d.key));
    }
    // A kid no set holds: refused untried.
    let token = seal(
        b"{}",
        &oct_recipient(Some("c"), 1),
        KeyAlg::AesKw(256),
        Enc::Gcm(256),
        None,
    )
    .unwrap();
    assert_eq!(
        decrypt_in(token.as_bytes(), &sets).map(|_| ()),
        Err(JweError::Algorithm)
    );
}

#[test]
fn kidless_tries_are_bounded_over_all_sets_together() {
    // Three fitting keys here and two there: five in all, over the bound of
    // four, though each set alone is under it.
    let first = oct_set(&[("a1", 1), ("a2", 2), ("a3", 3)]);
    let second = oct_set(&[("b1", 4), ("b2", 5)]);
    let token = seal(
        b"{}",
        &oct_recipient(None, 5),
        KeyAlg::Dir,
        Enc::Gcm(256),
        None,
    )
    .unwrap();
    assert_eq!(
        decrypt_in(token.as_bytes(), &[&first, &second]).map(|(n, _)| n),
        Err(JweError::Algorithm)
    );
    // Four in all: tried, and the last one fits.
    let second = oct_set(&[("b2", 5)]);
    assert_eq!(
        decrypt_in(token.as_bytes(), &[&first, &second]).map(|(n, _)| n),
        Ok(1)
    );
}

#[test]
fn a_decrypted_jwe_reports_its_typ_and_key() {
    let set = oct_set(&[("k", 9)]);
    let token = seal(
        br#"{"sub":"x"}"#,
        &oct_recipient(Some("k"), 9),
        KeyAlg::Dir,
        Enc::CbcHs(128),
        None,
    )
    .unwrap();
    let d = set.decrypt(token.as_bytes()).unwrap();
    assert!(!d.nested);
    assert_eq!(d.typ, None);
    assert_eq!(d.kid.as_deref(), Some("k"));
    // Same key material, another kid: the same identity.
    let again = oct_set(&[("other", 9)]);
    assert!(again.contains(d.key));
    assert!(!oct_set(&[("k", 8)]).contains(d.key));
}

#[test]
fn a_kid_some_key_carries_is_not_tried_on_kidless_pem_keys() {
    // Five PEM keys that answer any kid (over the bound of four tries) in
    // one set, and a JWK key with kid "named" in another.
    let pem: String = [
        "ec-p256-pkcs8.pem",
        "ec-p384-sec1.pem",
        "ec-p521-pkcs8.pem",
        "rsa-pkcs1.pem",
        "rsa-pkcs8.pem",
    ]
    .map(pem_file)
    .join("\n");
    let pem_set = DecryptionKeys::from_file_contents(pem.as_bytes()).unwrap();
    assert_eq!(pem_set.len(), 5);
    let named = oct_set(&[("named", 7)]);
    let token = seal(
        b"{}",
        &oct_recipient(Some("named"), 7),
        KeyAlg::AesKw(256),
        Enc::Gcm(256),
        None,
    )
    .unwrap();
    assert_eq!(
        decrypt_in(token.as_bytes(), &[&pem_set, &named]).map(|(n, _)| n),
        Ok(1)
    );
    // A kid nobody carries: the PEM keys that fit (two RSA keys) are tried.
    let recipient = public_jwk(&pem_file("rsa-pkcs8.pem"), "unknown-kid");
    let token = seal(b"{}", &recipient, KeyAlg::RsaOaep256, Enc::Gcm(128), None).unwrap();
    assert_eq!(
        decrypt_in(token.as_bytes(), &[&pem_set, &named]).map(|(n, d)| (n, d.plaintext)),
        Ok((0, b"{}".to_vec()))
    );
}

#[test]
fn cty_names_a_nested_jwt_with_or_without_the_media_type_prefix() {
    for yes in ["JWT", "jwt", "application/jwt", "Application/JWT"] {
        assert!(is_jwt_type(yes), "{yes}");
    }
    for no in [
        "",
        "json",
        "application/json",
        "application/",
        "JWTX",
        "xapplication/jwt",
        "é",
    ] {
        assert!(!is_jwt_type(no), "{no}");
    }
}
