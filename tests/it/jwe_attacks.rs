//! Attacks on encrypted-token support through the real `jwtd serve` and
//! `jwtd check`: a cached nested result outliving the decryption key that
//! opened it (a verification racing the key swap), every post-header
//! failure looking the same on the wire, claims alone under public-key key
//! management or for an issuer that does not take them, and `check`
//! accepting decryption-key mistakes silently. An adversarial review wrote
//! these; the three holes it found ("Was a hole" below) are fixed and kept
//! as regressions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::cipher::{self, EncryptingKey, EncryptionContext, UnboundCipherKey};
use base64::Engine;
use jwtd::protocol::Reply;
use jwtd::seal::{aes_wrap, seal};
use jwtd::verify::jwe::{Enc, KeyAlg, cbc_hs_tag};
use jwtd::verify::{B64URL, Reject};
use serde_json::{Map, Value, json};

use crate::support::{Jwtd, now, run_jwtd, wait_for};

fn oct(kid: &str, secret: &[u8]) -> Map<String, Value> {
    json!({"kty": "oct", "kid": kid, "k": B64URL.encode(secret)})
        .as_object()
        .unwrap()
        .clone()
}

fn set_file(path: &std::path::Path, keys: &[Map<String, Value>]) {
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

fn reason(r: &Reply) -> Option<Reject> {
    match r {
        Reply::Invalid { reason, .. } => Some(*reason),
        _ => None,
    }
}

/// A fresh P-256 decryption key: the private JWK (for jwtd) and the public
/// one (for senders).
fn ec_p256(kid: &str) -> (Map<String, Value>, Map<String, Value>) {
    use aws_lc_rs::agreement::{ECDH_P256, PrivateKey};
    use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin, EcPublicKeyUncompressedBin};
    let private = PrivateKey::generate(&ECDH_P256).unwrap();
    let d: EcPrivateKeyBin<'_> = private.as_be_bytes().unwrap();
    let point: EcPublicKeyUncompressedBin<'_> =
        private.compute_public_key().unwrap().as_be_bytes().unwrap();
    let point = point.as_ref();
    let public = json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..]),
    });
    let mut private_jwk = public.clone();
    private_jwk["d"] = B64URL.encode(d.as_ref()).into();
    (
        private_jwk.as_object().unwrap().clone(),
        public.as_object().unwrap().clone(),
    )
}

// Was a hole (found by review, fixed: cache entries record the decryption
// key): `set_jwe_keys` stored the new set, then emptied the cache; a nested
// JWT whose verification decrypted it with the old set before the store
// inserted its result after the clear, and `still_trusted` checked only the
// inner signing key, so the JWE kept answering valid (cached) under a
// decryption key that was removed.
#[test]
fn a_nested_result_does_not_outlive_a_decryption_key_removed_while_it_was_verified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwe.json");
    let keys = [("a", [0x11u8; 32]), ("b", [0x22u8; 32])];
    set_file(&path, &[oct(keys[0].0, &keys[0].1)]);
    let d = Arc::new(
        Jwtd::builder()
            .arg("--jwe-keys")
            .arg(&path)
            .args([
                "--max-token-bytes",
                "262144",
                "--max-frame-bytes",
                "300000",
                "--grpc-max-message-bytes",
                "300000",
            ])
            .start(),
    );
    let reloads = {
        let d = d.clone();
        move || d.log().matches("JWE decryption keys reloaded").count()
    };
    // The watcher's first look reloads once: wait for it.
    assert!(wait_for(crate::support::WAIT, || reloads() >= 1));
    // A large inner token: each verification takes a while, so some are
    // in flight when the key is swapped.
    let pad = vec![0u8; 60_000];
    let mut stale = Vec::new();
    for round in 0..4 {
        let (kid, secret) = keys[round % 2];
        let (next_kid, next_secret) = keys[(round + 1) % 2];
        let inner = d.token(json!({"pad": pad, "jti": format!("round-{round}")}));
        let recipient = oct(kid, &secret);
        // The same inner token under many IVs: each JWE is a cache miss.
        let pool: Vec<String> = (0..400)
            .map(|_| {
                seal(
                    inner.as_bytes(),
                    &recipient,
                    KeyAlg::Dir,
                    Enc::Gcm(256),
                    Some("JWT"),
                )
                .unwrap()
            })
            .collect();
        let pool = Arc::new(Mutex::new(pool));
        let valid = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (d, pool, valid, stop) = (d.clone(), pool.clone(), valid.clone(), stop.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let c = d.client().await;
                        while !stop.load(Ordering::Relaxed) {
                            let Some(token) = pool.lock().unwrap().pop() else {
                                break;
                            };
                            let r = c.verify(token.as_bytes()).await.unwrap();
                            if matches!(r, Reply::Valid { .. }) {
                                valid.lock().unwrap().push(token);
                            }
                        }
                    });
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let before = reloads();
        set_file(&path, &[oct(next_kid, &next_secret)]);
        assert!(
            wait_for(crate::support::WAIT, || reloads() > before),
            "{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        // The key that opened them is gone: not one may still be valid.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let valid = std::mem::take(&mut *valid.lock().unwrap());
        rt.block_on(async {
            let c = d.client().await;
            for token in &valid {
                let r = c.verify(token.as_bytes()).await.unwrap();
                if let Reply::Valid { cached, .. } = r {
                    stale.push((round, cached));
                }
            }
        });
        if !stale.is_empty() {
            break;
        }
    }
    assert!(
        stale.is_empty(),
        "{} JWE(s) answered valid after the decryption key that opened them was removed \
         ((round, cached) of the first: {:?})",
        stale.len(),
        stale.first()
    );
}

/// A CBC-HS256 JWE under A128KW with each part as given: `cek` wrapped
/// with `kek`, `ciphertext` as is (no padding added) and a tag valid for it
/// under `cek`'s MAC half.
fn kw_cbc(kek: &[u8; 16], cek: &[u8], iv: &[u8], ciphertext: &[u8]) -> String {
    let header =
        B64URL.encode(json!({"alg": "A128KW", "enc": "A128CBC-HS256", "kid": "w"}).to_string());
    let mac_key = &cek[..cek.len().min(16)];
    let tag = cbc_hs_tag(128, mac_key, header.as_bytes(), iv, ciphertext);
    format!(
        "{header}.{}.{}.{}.{}",
        B64URL.encode(aes_wrap(kek, cek).unwrap()),
        B64URL.encode(iv),
        B64URL.encode(ciphertext),
        B64URL.encode(tag)
    )
}

#[test]
fn every_failure_after_the_header_is_the_same_answer_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwe.json");
    let kek = [0x5au8; 16];
    set_file(&path, &[oct("w", &kek)]);
    let d = Jwtd::builder().arg("--jwe-keys").arg(&path).start();
    let inner = d.token(json!({}));
    let good = seal(
        inner.as_bytes(),
        &oct("w", &kek),
        KeyAlg::AesKw(128),
        Enc::CbcHs(128),
        Some("JWT"),
    )
    .unwrap();
    let cek = [7u8; 32];
    let iv = [1u8; 16];
    // A block that decrypts to a plaintext ending in 0x00: bad padding
    // under a tag that holds.
    let mut bad_padding = [0x41u8; 16];
    bad_padding[15] = 0;
    EncryptingKey::cbc(UnboundCipherKey::new(&cipher::AES_128, &cek[16..]).unwrap())
        .unwrap()
        .less_safe_encrypt(
            &mut bad_padding,
            EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
        )
        .unwrap();
    let part = |token: &str, n: usize, bytes: &[u8]| {
        let mut p: Vec<String> = token.split('.').map(str::to_owned).collect();
        p[n] = B64URL.encode(bytes);
        p.join(".")
    };
    let cases: Vec<(&str, String)> = vec![
        ("bad tag", part(&good, 4, &[0u8; 16])),
        ("short tag", part(&good, 4, &[0u8; 15])),
        (
            "wrapped key that does not unwrap",
            part(&good, 1, &[3u8; 40]),
        ),
        ("IV of 12 bytes", part(&good, 2, &[0u8; 12])),
        ("ciphertext of 17 bytes", part(&good, 3, &[0u8; 17])),
        (
            "bad padding under a valid tag",
            kw_cbc(&kek, &cek, &iv, &bad_padding),
        ),
        (
            "a 16-byte content key under a valid wrap",
            kw_cbc(&kek, &cek[..16], &iv, &bad_padding),
        ),
        ("no body under a valid tag", kw_cbc(&kek, &cek, &iv, &[])),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        assert!(matches!(
            c.verify(good.as_bytes()).await.unwrap(),
            Reply::Valid { .. }
        ));
        for (what, token) in &cases {
            let r = c.verify(token.as_bytes()).await.unwrap();
            assert!(
                matches!(
                    r,
                    Reply::Invalid {
                        reason: Reject::JweDecrypt,
                        ..
                    }
                ),
                "{what}: {r:?}"
            );
        }
    });
}

#[test]
fn claims_alone_need_symmetric_key_management_and_an_issuer_that_takes_them() {
    use jwtd::sign::SigningKey;
    use jwtd::verify::Algorithm;
    let dir = tempfile::tempdir().unwrap();
    let secret = [0x42u8; 32];
    let (ec_private, ec_public) = ec_p256("e");
    let jwe = dir.path().join("jwe.json");
    set_file(&jwe, &[oct("s", &secret), ec_private]);
    let mut signers = Vec::new();
    for name in ["a", "b"] {
        let key = SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_kid(Some(format!("{name}-sig")));
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
        signers.push((format!("https://{name}.example"), key, path));
    }
    // Both issuers share the top-level set; only B takes claims alone.
    let toml = format!(
        r#"
        jwe_keys = "{}"

        [[issuers]]
        issuer = "{}"
        jwks_file = "{}"

        [[issuers]]
        issuer = "{}"
        jwks_file = "{}"
        jwe_unsigned_claims = true
        "#,
        jwe.display(),
        signers[0].0,
        signers[0].2.display(),
        signers[1].0,
        signers[1].2.display(),
    );
    let d = Jwtd::builder()
        .no_jwks_file()
        .config(&toml)
        .args(["--debug-reason", "true"])
        .start();
    let exp = now() + 600;
    let claims = |iss: &str| json!({"iss": iss, "sub": "bob", "exp": exp}).to_string();
    let (a_iss, b_iss) = (&signers[0].0, &signers[1].0);
    let symmetric = oct("s", &secret);
    let rows: Vec<(&str, String, Result<(), Reject>)> = vec![
        (
            "claims for B, A256KW",
            seal(
                claims(b_iss).as_bytes(),
                &symmetric,
                KeyAlg::AesKw(256),
                Enc::Gcm(256),
                None,
            )
            .unwrap(),
            Ok(()),
        ),
        (
            "claims for B, dir",
            seal(
                claims(b_iss).as_bytes(),
                &symmetric,
                KeyAlg::Dir,
                Enc::CbcHs(128),
                None,
            )
            .unwrap(),
            Ok(()),
        ),
        (
            "claims for A (no jwe_unsigned_claims), A256KW",
            seal(
                claims(a_iss).as_bytes(),
                &symmetric,
                KeyAlg::AesKw(256),
                Enc::Gcm(256),
                None,
            )
            .unwrap(),
            Err(Reject::Jwe),
        ),
        (
            "claims for B, ECDH-ES (anyone could make it)",
            seal(
                claims(b_iss).as_bytes(),
                &ec_public,
                KeyAlg::EcdhEs,
                Enc::Gcm(128),
                None,
            )
            .unwrap(),
            Err(Reject::Jwe),
        ),
        (
            "claims for B, ECDH-ES+A256KW",
            seal(
                claims(b_iss).as_bytes(),
                &ec_public,
                KeyAlg::EcdhEsKw(256),
                Enc::Gcm(128),
                None,
            )
            .unwrap(),
            Err(Reject::Jwe),
        ),
        (
            "claims with no iss (several issuers)",
            seal(
                json!({"sub": "x", "exp": exp}).to_string().as_bytes(),
                &symmetric,
                KeyAlg::Dir,
                Enc::Gcm(256),
                None,
            )
            .unwrap(),
            Err(Reject::UnknownIssuer),
        ),
        (
            "B's signed token, ECDH-ES (nested)",
            seal(
                signers[1]
                    .1
                    .mint(
                        &json!({"iss": b_iss, "sub": "b", "exp": exp}),
                        &Default::default(),
                    )
                    .unwrap()
                    .as_bytes(),
                &ec_public,
                KeyAlg::EcdhEs,
                Enc::Gcm(128),
                Some("JWT"),
            )
            .unwrap(),
            Ok(()),
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        for (what, token, want) in &rows {
            let r = c.verify(token.as_bytes()).await.unwrap();
            let got = match &r {
                Reply::Valid { .. } => Ok(()),
                _ => Err(reason(&r).unwrap_or_else(|| panic!("{what}: {r:?}"))),
            };
            assert_eq!(got, *want, "{what}");
        }
        // Claims labelled as a nested JWT are not taken as claims alone: the
        // plaintext is refused as a token (whatever the reason).
        let labelled = seal(
            claims(b_iss).as_bytes(),
            &symmetric,
            KeyAlg::Dir,
            Enc::Gcm(256),
            Some("JWT"),
        )
        .unwrap();
        let r = c.verify(labelled.as_bytes()).await.unwrap();
        assert!(reason(&r).is_some(), "{r:?}");
    });
}

/// A key set file and a token it verifies, for `jwtd check`.
fn check_inputs(dir: &std::path::Path) -> (String, String) {
    let key = jwtd::sign::SigningKey::generate(jwtd::verify::Algorithm::ES256)
        .unwrap()
        .with_kid(Some("k".to_owned()));
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
    let token = key
        .mint(
            &json!({"sub": "a", "exp": now() + 600}),
            &Default::default(),
        )
        .unwrap();
    (jwks.display().to_string(), token)
}

// Was a hole (fixed): `jwtd check` read --jwe-keys only when the token has five parts
// (cli/check.rs `run`), so a missing or unusable decryption key file is
// never reported for a signed token: the check says valid (exit 0), where
// a bad --jwks-file is a configuration problem (exit 2) and serve refuses
// a bad jwe_keys file (exit 64).
#[test]
fn check_refuses_a_jwe_keys_file_it_cannot_use_whatever_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (jwks, token) = check_inputs(dir.path());
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    for jwe_keys in ["/nonexistent/jwe.json", empty.to_str().unwrap()] {
        let out = run_jwtd(
            &[
                "check",
                "--jwks-file",
                &jwks,
                "--jwe-keys",
                jwe_keys,
                &token,
            ],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "--jwe-keys {jwe_keys}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// Was a hole (fixed): `jwtd check --jwe-unsigned-claims` without --jwe-keys was accepted
// silently (the flag can never apply), where serve refuses the same
// setting without jwe_keys as a configuration problem (exit 64).
#[test]
fn check_refuses_jwe_unsigned_claims_without_jwe_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (jwks, token) = check_inputs(dir.path());
    let out = run_jwtd(
        &[
            "check",
            "--jwks-file",
            &jwks,
            "--jwe-unsigned-claims",
            &token,
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
