use serde_json::Value;

use super::*;

/// RFC 3394 section 4.1: 128 bits of key data wrapped with a 128-bit KEK.
#[test]
fn aes_unwrap_rfc3394_vectors() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let cases = [
        // 4.1: 128-bit KEK, 128 bits of key data.
        (
            "000102030405060708090A0B0C0D0E0F",
            "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5",
            "00112233445566778899AABBCCDDEEFF",
        ),
        // 4.2: 192-bit KEK.
        (
            "000102030405060708090A0B0C0D0E0F1011121314151617",
            "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D",
            "00112233445566778899AABBCCDDEEFF",
        ),
        // 4.3: 256-bit KEK.
        (
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
            "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7",
            "00112233445566778899AABBCCDDEEFF",
        ),
        // 4.6: 256-bit KEK, 256 bits of key data.
        (
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
            "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21",
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
        ),
    ];
    for (kek, wrapped, want) in cases {
        assert_eq!(
            aes_unwrap(&hex(kek), &hex(wrapped)),
            Some(hex(want)),
            "{kek}"
        );
        // One bit flipped anywhere: the integrity check fails.
        let mut bad = hex(wrapped);
        bad[10] ^= 1;
        assert_eq!(aes_unwrap(&hex(kek), &bad), None);
    }
    assert_eq!(aes_unwrap(&[0; 16], &[0; 16]), None, "too short");
    assert_eq!(aes_unwrap(&[0; 15], &[0; 24]), None, "bad KEK");
}

/// RFC 7518 appendix C: the Concat KDF of the ECDH-ES example.
#[test]
fn concat_kdf_rfc7518_appendix_c() {
    let z = [
        158u8, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110,
        163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    let derived = concat_kdf(&z, "A128GCM", 128, b"Alice", b"Bob");
    assert_eq!(B64URL.encode(derived), "VqqN6vgjbSBcIijNcacQGg");
}

/// The RFC 7516 and RFC 7520 examples in `tests/conformance/jwe/`.
#[test]
fn rfc_examples() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/jwe/vectors.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        panic!("{path} is missing");
    };
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let mut decrypted = 0;
    for case in vectors["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // A refused case may name no JWK (PBES2's is a password): any
        // key then, the refusal comes before it is used.
        let key = match case["key"].as_object() {
            Some(jwk) => {
                DecryptionKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{name}: key: {e}"))
            }
            None => oct(16, None),
        };
        let got = decrypt(case["token"].as_str().unwrap().as_bytes(), &key);
        match case["expect"].as_str().unwrap() {
            "decrypt" => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    String::from_utf8(got.plaintext).unwrap(),
                    case["plaintext"].as_str().unwrap(),
                    "{name}"
                );
                decrypted += 1;
            }
            _ => assert!(got.is_err(), "{name}: refused"),
        }
    }
    assert!(decrypted >= 3, "only {decrypted} examples decrypted");
}

fn oct(len: usize, alg: Option<&str>) -> DecryptionKey {
    let mut jwk = serde_json::json!({"kty": "oct", "k": B64URL.encode(vec![7u8; len])});
    if let Some(alg) = alg {
        jwk["alg"] = alg.into();
    }
    DecryptionKey::from_jwk(jwk.as_object().unwrap()).unwrap()
}

fn with_header(header: Value) -> String {
    format!(
        "{}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
        B64URL.encode(header.to_string())
    )
}

#[test]
fn header_facts_are_refused_before_any_crypto_each_with_its_reason() {
    let key = oct(16, None);
    let cases = [
        (
            serde_json::json!({"alg": "RSA1_5", "enc": "A128GCM"}),
            JweError::Rsa15,
        ),
        (
            serde_json::json!({"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2c": 1_000_000_000u64}),
            JweError::Pbes2,
        ),
        (
            serde_json::json!({"alg": "A128KW", "enc": "A128GCM", "zip": "DEF"}),
            JweError::Zip,
        ),
        (
            serde_json::json!({"alg": "A128KW", "enc": "A128GCM", "crit": ["x"], "x": 1}),
            JweError::Crit,
        ),
        (
            serde_json::json!({"alg": "A256KW", "enc": "A128GCM"}),
            JweError::Algorithm,
        ),
        (
            serde_json::json!({"alg": "RSA-OAEP", "enc": "A128GCM"}),
            JweError::Algorithm,
        ),
        (
            serde_json::json!({"alg": "A128KW", "enc": "A128CTR"}),
            JweError::Algorithm,
        ),
        (
            serde_json::json!({"alg": "none", "enc": "A128GCM"}),
            JweError::Algorithm,
        ),
        (serde_json::json!({"enc": "A128GCM"}), JweError::Malformed),
    ];
    for (header, want) in cases {
        assert_eq!(
            decrypt(with_header(header.clone()).as_bytes(), &key).map(|_| ()),
            Err(want),
            "{header}"
        );
    }
    // A key's own alg binds it.
    let bound = oct(16, Some("A128KW"));
    let dir = with_header(serde_json::json!({"alg": "dir", "enc": "A128GCM"}));
    assert_eq!(
        decrypt(dir.as_bytes(), &bound).map(|_| ()),
        Err(JweError::Algorithm)
    );
    // Duplicate header members, and the wrong number of parts.
    let dup = format!(
        "{}.AAAA.AAAA.AAAA.AAAA",
        B64URL.encode(br#"{"alg":"A128KW","alg":"dir","enc":"A128GCM"}"#)
    );
    assert_eq!(
        decrypt(dup.as_bytes(), &key).map(|_| ()),
        Err(JweError::Malformed)
    );
    assert_eq!(
        decrypt(b"a.b.c", &key).map(|_| ()),
        Err(JweError::Malformed)
    );
    // A wrapped key that does not unwrap: the one opaque reason.
    let kw = with_header(serde_json::json!({"alg": "A128KW", "enc": "A128GCM"}));
    let kw = kw.replacen(".AAAA.", &format!(".{}.", B64URL.encode([1u8; 24])), 1);
    assert_eq!(
        decrypt(kw.as_bytes(), &key).map(|_| ()),
        Err(JweError::Decrypt)
    );
}

#[test]
fn keys_for_signing_or_of_unusable_sizes_are_refused() {
    let refused = |jwk: Value| DecryptionKey::from_jwk(jwk.as_object().unwrap()).is_err();
    assert!(refused(
        serde_json::json!({"kty": "oct", "k": B64URL.encode([1u8; 16]), "use": "sig"})
    ));
    assert!(refused(
        serde_json::json!({"kty": "oct", "k": B64URL.encode([1u8; 20])})
    ));
    assert!(refused(
        serde_json::json!({"kty": "oct", "k": B64URL.encode([1u8; 16]), "alg": "RSA1_5"})
    ));
    assert!(refused(
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
    ));
    assert!(refused(
        serde_json::json!({"kty": "OKP", "crv": "X25519", "d": "AA"})
    ));
    // The Debug form never shows key material.
    let text = format!("{:?}", oct(32, None));
    assert!(!text.contains("7, 7"), "{text}");
}

/// Every part of every RFC example that decrypts, tampered (one bit of its
/// bytes), is refused with the one opaque reason; the protected header too
/// (it is the AAD) when it still parses.
#[test]
fn tampering_any_part_is_one_opaque_refusal() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/jwe/vectors.json"
    );
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for case in vectors["cases"].as_array().unwrap() {
        if case["expect"] != "decrypt" {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let key = DecryptionKey::from_jwk(case["key"].as_object().unwrap()).unwrap();
        let token = case["token"].as_str().unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let mut bytes = B64URL.decode(part).unwrap();
            if bytes.is_empty() {
                continue; // dir and ECDH-ES have no encrypted key
            }
            let at = bytes.len() / 2;
            // A header bit that keeps it JSON: flip a letter's case.
            bytes[at] ^= if i == 0 { 0x20 } else { 0x01 };
            let mut tampered = parts.clone();
            let encoded = B64URL.encode(&bytes);
            tampered[i] = &encoded;
            let got = decrypt(tampered.join(".").as_bytes(), &key);
            match i {
                0 => assert!(got.is_err(), "{name}: header tampered"),
                _ => assert_eq!(got.map(|_| ()), Err(JweError::Decrypt), "{name}: part {i}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn a_key_set_picks_by_kid_or_tries_the_keys_that_fit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/jwe/vectors.json"
    );
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let decryptable: Vec<&Value> = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["expect"] == "decrypt")
        .collect();
    // Every example's key in one set, plus one that is skipped.
    let mut jwks: Vec<Value> = decryptable.iter().map(|c| c["key"].clone()).collect();
    jwks.push(serde_json::json!({"kty": "oct", "kid": "sig-key", "use": "sig", "k": "AAAA"}));
    let set = DecryptionKeys::from_jwks(serde_json::json!({ "keys": jwks }).to_string().as_bytes())
        .unwrap();
    assert_eq!(set.len(), decryptable.len());
    let skipped = set.skipped_messages();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("sig-key"), "{skipped:?}");
    for case in &decryptable {
        let got = set.decrypt(case["token"].as_str().unwrap().as_bytes());
        assert_eq!(
            got.map(|d| String::from_utf8(d.plaintext).unwrap())
                .as_deref(),
            Ok(case["plaintext"].as_str().unwrap()),
            "{}",
            case["name"]
        );
    }
    // A set of nothing usable is an error naming why.
    let bad = DecryptionKeys::from_jwks(br#"{"keys":[{"kty":"oct","k":"AAAA","kid":"x"}]}"#);
    assert!(
        matches!(bad, Err(KeysError::NoUsableKey(ref v)) if v[0].contains("\"x\"")),
        "{bad:?}"
    );
    assert!(matches!(
        DecryptionKeys::from_jwks(b"[]"),
        Err(KeysError::NotASet(_))
    ));
}
