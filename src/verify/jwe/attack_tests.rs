//! Hostile input against the pure JWE decryptor: crafted headers, parts of
//! odd sizes, ephemeral keys that are not points, garbage encrypted keys,
//! padding errors under a valid tag, the kid-less try bound, and random
//! mutation. Each test names the behaviour it asserts. An adversarial
//! review wrote these; the hole it found ("Was a hole" below) is fixed.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin, EcPublicKeyUncompressedBin};
use serde_json::json;

use super::*;
use crate::seal::{aes_wrap, seal};

fn oct_jwk(fill: u8, len: usize, kid: Option<&str>, alg: Option<&str>) -> Map<String, Value> {
    let mut jwk = json!({"kty": "oct", "k": B64URL.encode(vec![fill; len])});
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
    }
    if let Some(alg) = alg {
        jwk["alg"] = alg.into();
    }
    jwk.as_object().unwrap().clone()
}

fn set_of(jwks: &[Map<String, Value>]) -> DecryptionKeys {
    DecryptionKeys::from_jwks(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
}

/// A compact JWE (`dir`, `A256GCM`) with exactly `header` (any JSON text),
/// for headers `seal` will not write.
fn dir_gcm_raw(secret: &[u8; 32], header: &str, plaintext: &[u8]) -> String {
    let header = B64URL.encode(header);
    let iv = [9u8; 12];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).unwrap());
    let mut in_out = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header.as_bytes()),
            &mut in_out,
        )
        .unwrap();
    format!(
        "{header}..{}.{}.{}",
        B64URL.encode(iv),
        B64URL.encode(&in_out),
        B64URL.encode(tag.as_ref())
    )
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

/// A fresh P-256 key: the private JWK (for jwtd) and the public one (for
/// the sender).
fn ec_p256() -> (Map<String, Value>, Map<String, Value>) {
    let private = agreement::PrivateKey::generate(&agreement::ECDH_P256).unwrap();
    let d: EcPrivateKeyBin<'_> = private.as_be_bytes().unwrap();
    let point: EcPublicKeyUncompressedBin<'_> =
        private.compute_public_key().unwrap().as_be_bytes().unwrap();
    let point = point.as_ref();
    let public = json!({
        "kty": "EC", "crv": "P-256",
        "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..]),
    });
    let mut private_jwk = public.clone();
    private_jwk["d"] = B64URL.encode(d.as_ref()).into();
    (
        private_jwk.as_object().unwrap().clone(),
        public.as_object().unwrap().clone(),
    )
}

fn pem_keys(name: &str) -> DecryptionKeys {
    let path = format!(
        "{}/tests/conformance/jwe/pem/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    DecryptionKeys::from_file_contents(&std::fs::read(path).unwrap()).unwrap()
}

// Was a hole (found by review, fixed): an A*KW / ECDH-ES+A*KW encrypted key
// was unwrapped whatever its length (RFC 3394 costs 6 AES blocks per 8
// bytes), though a content key wraps to exactly key_len + 8 bytes: a
// ~600 KB encrypted key (a 1 MB max_token_bytes allows it) cost ~14 ms per
// key in release, times the 4 kid-less tries, for one request.
#[test]
fn an_oversized_wrapped_key_is_refused_without_unwrapping_it() {
    // Four kid-less A256KW keys: a kid-less JWE is tried with each.
    let set = set_of(&[
        oct_jwk(1, 32, None, Some("A256KW")),
        oct_jwk(2, 32, None, Some("A256KW")),
        oct_jwk(3, 32, None, Some("A256KW")),
        oct_jwk(4, 32, None, Some("A256KW")),
    ]);
    let header = B64URL.encode(json!({"alg": "A256KW", "enc": "A256GCM"}).to_string());
    let big = vec![0x41u8; 600_000];
    let token = |encrypted_key: &[u8], ciphertext: &[u8]| {
        format!(
            "{header}.{}.{}.{}.{}",
            B64URL.encode(encrypted_key),
            B64URL.encode([0u8; 12]),
            B64URL.encode(ciphertext),
            B64URL.encode([0u8; 16])
        )
    };
    // The same number of bytes to decode, once in the encrypted key and
    // once in the ciphertext behind a wrapped key of the right size.
    let oversized = token(&big, &[0u8; 16]);
    let reference = token(&[0x41u8; 40], &big);
    for t in [&oversized, &reference] {
        assert_eq!(
            set.decrypt(t.as_bytes()).map(|_| ()),
            Err(JweError::Decrypt)
        );
    }
    // The guard that refuses it before the unwrap: only a key's length
    // plus one block is unwrapped (no timing here: the bound is the rule).
    assert_eq!(wrapped_len(&big, Enc::Gcm(256)), Err(JweError::Decrypt));
    assert_eq!(wrapped_len(&[0x41u8; 40], Enc::Gcm(256)), Ok(()));
    assert_eq!(
        wrapped_len(&[0x41u8; 40], Enc::CbcHs(256)),
        Err(JweError::Decrypt)
    );
    assert_eq!(wrapped_len(&[0x41u8; 72], Enc::CbcHs(256)), Ok(()));
}

#[test]
fn deep_huge_and_non_utf8_headers_are_malformed_without_a_crash() {
    let set = set_of(&[oct_jwk(5, 32, Some("k"), None)]);
    let secret = [5u8; 32];
    let deep_array = "[".repeat(200_000);
    let deep_member = format!(
        r#"{{"alg":"dir","enc":"A256GCM","kid":"k","x":{}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let headers: Vec<Vec<u8>> = vec![
        deep_array.into_bytes(),
        deep_member.into_bytes(),
        b"\xff\xfe{\"alg\":\"dir\"}".to_vec(),
        br#"{"alg":"dir","enc":"A256GCM","kid":"k\xff"}"#.to_vec(),
        br#"["alg","dir"]"#.to_vec(),
        br#"{"alg":7,"enc":"A256GCM"}"#.to_vec(),
        br#"{"alg":"dir","enc":"A256GCM","kid":"k"} trailing"#.to_vec(),
        Vec::new(),
    ];
    for header in headers {
        let token = format!(
            "{}..{}.{}.{}",
            B64URL.encode(&header),
            B64URL.encode([0u8; 12]),
            B64URL.encode([0u8; 4]),
            B64URL.encode([0u8; 16])
        );
        assert_eq!(
            set.decrypt(token.as_bytes()).map(|_| ()),
            Err(JweError::Malformed),
            "{}",
            String::from_utf8_lossy(&header[..header.len().min(60)])
        );
    }
    // A valid token is still opened by the same set (the set is usable).
    let ok = dir_gcm_raw(&secret, r#"{"alg":"dir","enc":"A256GCM","kid":"k"}"#, b"{}");
    assert!(set.decrypt(ok.as_bytes()).is_ok());
}

#[test]
fn empty_missing_and_extra_parts_are_malformed() {
    let set = set_of(&[oct_jwk(5, 32, Some("k"), None)]);
    let ok = dir_gcm_raw(
        &[5u8; 32],
        r#"{"alg":"dir","enc":"A256GCM","kid":"k"}"#,
        b"{}",
    );
    let p = parts(&ok);
    let cases = [
        String::new(),
        "....".to_owned(),
        ".....".to_owned(),
        format!("{}.", ok),
        format!("{}.{}.{}.{}", p[0], p[1], p[2], p[3]),
        format!("{}.{}.{}.{}.{}=", p[0], p[1], p[2], p[3], p[4]),
        format!("{}.{}.{}.{}.{} ", p[0], p[1], p[2], p[3], p[4]),
        format!("{}=.{}.{}.{}.{}", p[0], p[1], p[2], p[3], p[4]),
        format!("{}.{}.{}+.{}.{}", p[0], p[1], p[2], p[3], p[4]),
    ];
    for token in cases {
        assert_eq!(
            set.decrypt(token.as_bytes()).map(|_| ()),
            Err(JweError::Malformed),
            "{token:.80}"
        );
    }
}

#[test]
fn gcm_ivs_and_tags_of_the_wrong_length_are_the_one_opaque_refusal() {
    let set = set_of(&[oct_jwk(5, 32, Some("k"), None)]);
    let ok = dir_gcm_raw(
        &[5u8; 32],
        r#"{"alg":"dir","enc":"A256GCM","kid":"k"}"#,
        b"{}",
    );
    let p = parts(&ok);
    let with = |n: usize, bytes: &[u8]| {
        let mut q = p.clone();
        q[n] = B64URL.encode(bytes);
        q.join(".")
    };
    for (n, bytes) in [
        (2, vec![9u8; 0]),
        (2, vec![9u8; 11]),
        (2, vec![9u8; 13]),
        (2, vec![9u8; 16]),
        (2, vec![9u8; 100_000]),
        (4, vec![]),
        (4, vec![0u8; 15]),
        (4, vec![0u8; 17]),
        (3, vec![]),
    ] {
        assert_eq!(
            set.decrypt(with(n, &bytes).as_bytes()).map(|_| ()),
            Err(JweError::Decrypt),
            "part {n}, {} bytes",
            bytes.len()
        );
    }
}

/// A CBC-HS JWE (`dir`, `A128CBC-HS256`) whose ciphertext is `ciphertext`
/// as given (no padding added) under a tag that is valid for it.
fn cbc_with_valid_tag(secret: &[u8; 32], iv: &[u8], ciphertext: &[u8]) -> String {
    let header = B64URL.encode(r#"{"alg":"dir","enc":"A128CBC-HS256","kid":"c"}"#);
    let tag = cbc_hs_tag(128, &secret[..16], header.as_bytes(), iv, ciphertext);
    format!(
        "{header}..{}.{}.{}",
        B64URL.encode(iv),
        B64URL.encode(ciphertext),
        B64URL.encode(tag)
    )
}

#[test]
fn cbc_bodies_that_are_not_whole_blocks_or_badly_padded_under_a_valid_tag_fail_as_a_bad_tag() {
    let secret = [6u8; 32];
    let set = set_of(&[oct_jwk(6, 32, Some("c"), None)]);
    let iv = [3u8; 16];
    // A block whose plaintext ends in 0x00: never valid PKCS#7.
    let mut bad_padding = [0x41u8; 16];
    bad_padding[15] = 0;
    let key = EncryptingKey::cbc(UnboundCipherKey::new(&cipher::AES_128, &secret[16..]).unwrap())
        .unwrap();
    key.less_safe_encrypt(
        &mut bad_padding,
        EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("empty body", cbc_with_valid_tag(&secret, &iv, &[])),
        ("15 bytes", cbc_with_valid_tag(&secret, &iv, &[1u8; 15])),
        ("17 bytes", cbc_with_valid_tag(&secret, &iv, &[1u8; 17])),
        (
            "bad padding",
            cbc_with_valid_tag(&secret, &iv, &bad_padding),
        ),
        (
            "IV of 15",
            cbc_with_valid_tag(&secret, &[3u8; 15], &bad_padding),
        ),
        (
            "IV of 17",
            cbc_with_valid_tag(&secret, &[3u8; 17], &bad_padding),
        ),
    ];
    for (what, token) in &cases {
        assert_eq!(
            set.decrypt(token.as_bytes()).map(|_| ()),
            Err(JweError::Decrypt),
            "{what}"
        );
    }
    // And a bad tag: the same answer.
    let mut p = parts(&cases[3].1);
    p[4] = B64URL.encode([0u8; 16]);
    assert_eq!(
        set.decrypt(p.join(".").as_bytes()).map(|_| ()),
        Err(JweError::Decrypt)
    );
}

#[test]
fn crafted_ephemeral_keys_are_refused_before_any_agreement() {
    let (private, public) = ec_p256();
    let set = set_of(std::slice::from_ref(&private));
    let ok = seal(b"{}", &public, KeyAlg::EcdhEs, Enc::Gcm(128), None).unwrap();
    assert!(set.decrypt(ok.as_bytes()).is_ok());
    let x = public["x"].as_str().unwrap();
    let y = public["y"].as_str().unwrap();
    // P-256's field prime: a coordinate of the right length, not reduced.
    let p256 = "_____wAAAAEAAAAAAAAAAAAAAAD_______________8";
    let mut flipped = B64URL.decode(y).unwrap();
    flipped[31] ^= 1;
    let epks = [
        json!({"kty": "EC", "crv": "P-256", "x": x}),
        json!({"kty": "EC", "crv": "P-256", "y": y}),
        json!({"kty": "EC", "crv": "P-384", "x": x, "y": y}),
        json!({"kty": "OKP", "crv": "X25519", "x": x}),
        json!({"kty": "EC", "crv": "P-256", "x": &x[1..], "y": y}),
        json!({"kty": "EC", "crv": "P-256", "x": format!("{x}AA"), "y": y}),
        json!({"kty": "EC", "crv": "P-256", "x": 5, "y": y}),
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": B64URL.encode(flipped)}),
        json!({"kty": "EC", "crv": "P-256", "x": p256, "y": y}),
        json!({"kty": "EC", "crv": "P-256", "x": B64URL.encode([0u8; 32]), "y": B64URL.encode([0u8; 32])}),
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "d": x}),
        json!("not an object"),
        json!([x, y]),
    ];
    for epk in epks {
        let header = json!({"alg": "ECDH-ES", "enc": "A128GCM", "epk": epk});
        let mut p = parts(&ok);
        p[0] = B64URL.encode(header.to_string());
        assert_eq!(
            set.decrypt(p.join(".").as_bytes()).map(|_| ()),
            Err(JweError::EphemeralKey),
            "{epk}"
        );
    }
    // No epk at all.
    let mut p = parts(&ok);
    p[0] = B64URL.encode(json!({"alg": "ECDH-ES", "enc": "A128GCM"}).to_string());
    assert_eq!(
        set.decrypt(p.join(".").as_bytes()).map(|_| ()),
        Err(JweError::EphemeralKey)
    );
}

#[test]
fn garbage_rsa_oaep_encrypted_keys_fail_as_a_bad_tag_does() {
    let set = pem_keys("rsa-pkcs8.pem");
    let header = B64URL.encode(json!({"alg": "RSA-OAEP-256", "enc": "A256GCM"}).to_string());
    for len in [0usize, 1, 255, 256, 257, 512, 20_000] {
        for fill in [0u8, 0xff] {
            let token = format!(
                "{header}.{}.{}.{}.{}",
                B64URL.encode(vec![fill; len]),
                B64URL.encode([0u8; 12]),
                B64URL.encode([0u8; 32]),
                B64URL.encode([0u8; 16])
            );
            assert_eq!(
                set.decrypt(token.as_bytes()).map(|_| ()),
                Err(JweError::Decrypt),
                "{len} bytes of {fill:#x}"
            );
        }
    }
}

#[test]
fn a_non_string_or_repeated_kid_does_not_lift_the_try_bound() {
    // Five keys that each fit dir/A256GCM; the token is for the fifth.
    let jwks: Vec<_> = (1..=5u8)
        .map(|n| oct_jwk(n, 32, Some(&format!("k{n}")), None))
        .collect();
    let set = set_of(&jwks);
    let secret = [5u8; 32];
    for header in [
        r#"{"alg":"dir","enc":"A256GCM","kid":5}"#,
        r#"{"alg":"dir","enc":"A256GCM","kid":null}"#,
        r#"{"alg":"dir","enc":"A256GCM","kid":["k5"]}"#,
        r#"{"alg":"dir","enc":"A256GCM"}"#,
    ] {
        let token = dir_gcm_raw(&secret, header, b"{}");
        assert!(
            set.decrypt(token.as_bytes()).is_err(),
            "{header}: five keys tried"
        );
    }
    // Two kids: the lenient look picks the last, the strict parse refuses.
    let token = dir_gcm_raw(
        &secret,
        r#"{"alg":"dir","enc":"A256GCM","kid":"k1","kid":"k5"}"#,
        b"{}",
    );
    assert_eq!(
        set.decrypt(token.as_bytes()).map(|_| ()),
        Err(JweError::Malformed)
    );
    // The named key itself still opens it.
    let token = dir_gcm_raw(
        &secret,
        r#"{"alg":"dir","enc":"A256GCM","kid":"k5"}"#,
        b"{}",
    );
    assert!(set.decrypt(token.as_bytes()).is_ok());
}

#[test]
fn a_wrapped_key_of_the_wrong_content_key_length_is_the_one_opaque_refusal() {
    // A valid RFC 3394 wrap, but of a 16-byte key for A256GCM (32 needed),
    // and of a 64-byte key: unwraps, then fails as a bad tag does.
    let kek = [8u8; 16];
    let set = set_of(&[oct_jwk(8, 16, Some("w"), None)]);
    let header = B64URL.encode(json!({"alg": "A128KW", "enc": "A256GCM", "kid": "w"}).to_string());
    for cek_len in [16usize, 24, 64] {
        let wrapped = aes_wrap(&kek, &vec![1u8; cek_len]).unwrap();
        let token = format!(
            "{header}.{}.{}.{}.{}",
            B64URL.encode(wrapped),
            B64URL.encode([0u8; 12]),
            B64URL.encode([0u8; 8]),
            B64URL.encode([0u8; 16])
        );
        assert_eq!(
            set.decrypt(token.as_bytes()).map(|_| ()),
            Err(JweError::Decrypt),
            "{cek_len}-byte content key"
        );
    }
}

/// A tiny deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_of_real_tokens_never_panic_nor_open() {
    let (ec_private, ec_public) = ec_p256();
    let oct = oct_jwk(4, 32, Some("o"), None);
    let set = set_of(&[ec_private, oct.clone()]);
    let mut tokens = Vec::new();
    for enc in [Enc::Gcm(256), Enc::CbcHs(128)] {
        tokens.push(seal(br#"{"sub":"x"}"#, &ec_public, KeyAlg::EcdhEs, enc, None).unwrap());
        tokens.push(
            seal(
                br#"{"sub":"x"}"#,
                &ec_public,
                KeyAlg::EcdhEsKw(128),
                enc,
                None,
            )
            .unwrap(),
        );
        tokens.push(seal(br#"{"sub":"x"}"#, &oct, KeyAlg::AesKw(256), enc, None).unwrap());
        tokens.push(seal(br#"{"sub":"x"}"#, &oct, KeyAlg::Dir, enc, None).unwrap());
    }
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for token in &tokens {
        assert!(set.decrypt(token.as_bytes()).is_ok());
        for _ in 0..300 {
            let mut t = token.as_bytes().to_vec();
            for _ in 0..=rng.below(3) {
                match rng.below(4) {
                    0 if !t.is_empty() => {
                        let i = rng.below(t.len());
                        t[i] = alphabet[rng.below(alphabet.len())];
                    }
                    1 if !t.is_empty() => {
                        let i = rng.below(t.len());
                        t.truncate(i);
                    }
                    2 => {
                        let i = rng.below(t.len() + 1);
                        t.insert(i, alphabet[rng.below(alphabet.len())]);
                    }
                    _ if !t.is_empty() => {
                        t.remove(rng.below(t.len()));
                    }
                    _ => {}
                }
            }
            if t == token.as_bytes() {
                continue;
            }
            if let Ok(d) = set.decrypt(&t) {
                panic!(
                    "a mutated token opened: {:?} -> {:?}",
                    String::from_utf8_lossy(&t),
                    String::from_utf8_lossy(&d.plaintext)
                );
            }
        }
    }
}
