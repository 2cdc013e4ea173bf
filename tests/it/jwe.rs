//! Encrypted tokens (issue 14, in progress) on the real `jwtd serve`: a
//! nested JWT (a JWS inside a JWE, `cty: JWT`) decrypted with `--jwe-keys`
//! and verified as any token, through the native protocol and the HTTP
//! front; tampering, a claims-only JWE and a daemon without keys refused.
//! (The decryption core against the RFC examples and Node `jose`:
//! `src/verify/jwe/`.)

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use jwtd::protocol::Reply;
use jwtd::verify::{B64URL, Reject};
use serde_json::json;

use crate::support::{Jwtd, exchange, now};

const KEY: [u8; 32] = [0x5a; 32];

/// A compact JWE (`dir`, `A256GCM`) of `plaintext`, made here with
/// aws-lc-rs: the sender's side, which jwtd itself does not have yet.
fn encrypt(plaintext: &[u8], cty: Option<&str>) -> String {
    encrypt_with(&KEY, "enc-1", plaintext, cty)
}

fn encrypt_with(secret: &[u8; 32], kid: &str, plaintext: &[u8], cty: Option<&str>) -> String {
    let mut header = json!({"alg": "dir", "enc": "A256GCM", "kid": kid});
    if let Some(cty) = cty {
        header["cty"] = cty.into();
    }
    let header = B64URL.encode(header.to_string());
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv).unwrap();
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

fn daemon(with_keys: bool) -> Jwtd {
    let builder = Jwtd::builder()
        .http_front()
        .args(["--debug-reason", "true"]);
    if !with_keys {
        return builder.start();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwe.json");
    let jwks =
        json!({"keys": [{"kty": "oct", "kid": "enc-1", "use": "enc", "k": B64URL.encode(KEY)}]});
    std::fs::write(&path, jwks.to_string()).unwrap();
    let d = builder.arg("--jwe-keys").arg(&path).start();
    // The file is read at start: the temp dir may go.
    drop(dir);
    d
}

#[test]
fn a_nested_jwt_is_decrypted_then_verified_on_every_front() {
    let d = daemon(true);
    let inner = d.token(json!({"exp": now() + 600}));
    let jwe = encrypt(inner.as_bytes(), Some("JWT"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        let r = c.verify(jwe.as_bytes()).await.unwrap();
        let Reply::Valid { claims, cached, .. } = r else {
            panic!("{r:?}")
        };
        assert!(!cached);
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["sub"], "alice");
        // The same JWE again: answered from the cache, keyed by the JWE.
        let r = c.verify(jwe.as_bytes()).await.unwrap();
        assert!(matches!(r, Reply::Valid { cached: true, .. }), "{r:?}");
        // Tampered ciphertext: the one opaque reason.
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let mut ciphertext = B64URL.decode(&parts[3]).unwrap();
        ciphertext[0] ^= 1;
        parts[3] = B64URL.encode(ciphertext);
        let r = c.verify(parts.join(".").as_bytes()).await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::JweDecrypt,
                    ..
                }
            ),
            "{r:?}"
        );
        // Claims alone (no signed token inside): refused.
        let claims_only = encrypt(br#"{"sub":"mallory","exp":4102444800}"#, None);
        let r = c.verify(claims_only.as_bytes()).await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::Jwe,
                    ..
                }
            ),
            "{r:?}"
        );
        // A nested token signed by a key the daemon does not trust.
        let stranger = jwtd::sign::SigningKey::generate(jwtd::verify::Algorithm::ES256).unwrap();
        let forged = stranger
            .mint(
                &json!({"sub": "mallory", "exp": now() + 600}),
                &Default::default(),
            )
            .unwrap();
        let r = c
            .verify(encrypt(forged.as_bytes(), Some("JWT")).as_bytes())
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::UnknownKey | Reject::BadSignature,
                    ..
                }
            ),
            "{r:?}"
        );
    });
    // The HTTP front: the decrypted claims become the claim headers.
    let mut s = std::os::unix::net::UnixStream::connect(d.http_socket()).unwrap();
    let a = exchange(
        &mut s,
        &format!("GET /verify HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {jwe}\r\n\r\n"),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-jwt-sub"), Some("alice"));
    assert!(d.log().contains("JWE decryption keys loaded"));
}

#[test]
fn without_jwe_keys_a_jwe_is_refused_and_a_bad_key_file_is_exit_64() {
    let d = daemon(false);
    let jwe = encrypt(d.token(json!({})).as_bytes(), Some("JWT"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = d.client().await.verify(jwe.as_bytes()).await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::Jwe,
                    ..
                }
            ),
            "{r:?}"
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"keys":[{"kty":"oct","kid":"short","k":"AAAA"}]}"#).unwrap();
    let exited = Jwtd::builder()
        .arg("--jwe-keys")
        .arg(&bad)
        .arg("--jwe-keys-typo-check")
        .run_until_exit();
    assert_eq!(exited.code, Some(2), "an unknown flag is a usage error");
    let exited = Jwtd::builder().arg("--jwe-keys").arg(&bad).run_until_exit();
    assert_eq!(exited.code, Some(64), "{}", exited.log);
    assert!(
        exited.log.contains("jwe_keys") && exited.log.contains("\"short\""),
        "{}",
        exited.log
    );
}

#[test]
fn the_key_file_is_watched_and_a_bad_version_keeps_the_last_good_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwe.json");
    let set = |kid: &str, secret: &[u8; 32]| {
        json!({"keys": [{"kty": "oct", "kid": kid, "k": B64URL.encode(secret)}]}).to_string()
    };
    std::fs::write(&path, set("enc-1", &KEY)).unwrap();
    let d = Jwtd::builder().arg("--jwe-keys").arg(&path).start();
    // 0644 by default here: readable by others, which is warned about.
    d.wait_log("readable by group or others");
    let inner = d.token(json!({}));
    let old = encrypt(inner.as_bytes(), Some("JWT"));
    let new_secret = [0x33u8; 32];
    let new = encrypt_with(&new_secret, "enc-2", inner.as_bytes(), Some("JWT"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let verdict = |token: &str| {
        rt.block_on(async { d.client().await.verify(token.as_bytes()).await.unwrap() })
    };
    assert!(matches!(verdict(&old), Reply::Valid { .. }));
    // Rotate: a new file with the new key only.
    let reloaded = d.log().matches("JWE decryption keys reloaded").count();
    std::fs::write(&path, set("enc-2", &new_secret)).unwrap();
    assert!(crate::support::wait_for(crate::support::WAIT, || {
        d.log().matches("JWE decryption keys reloaded").count() > reloaded
    }));
    assert!(
        matches!(verdict(&new), Reply::Valid { .. }),
        "{:?}",
        verdict(&new)
    );
    // The old key is gone: the JWE it opened (cached before) stops
    // vouching at the swap, and a new one under it is refused.
    assert!(
        matches!(
            verdict(&old),
            Reply::Invalid {
                reason: Reject::Jwe,
                ..
            }
        ),
        "{:?}",
        verdict(&old)
    );
    let fresh_old = encrypt(d.token(json!({"jti": "other"})).as_bytes(), Some("JWT"));
    assert!(matches!(
        verdict(&fresh_old),
        Reply::Invalid {
            reason: Reject::Jwe,
            ..
        }
    ));
    // A broken file: the last good keys stay.
    std::fs::write(&path, "{ not json").unwrap();
    d.wait_log("JWE decryption key file rejected");
    let another = encrypt_with(
        &new_secret,
        "enc-2",
        d.token(json!({"jti": "x"})).as_bytes(),
        Some("JWT"),
    );
    assert!(matches!(verdict(&another), Reply::Valid { .. }));
    assert!(
        !d.log().contains(&B64URL.encode(new_secret)),
        "a key in the log"
    );
}

#[test]
fn jwtd_check_decrypts_a_nested_jwt_offline() {
    use crate::support::{run_jwtd, stdout_json};
    let dir = tempfile::tempdir().unwrap();
    let signer = jwtd::sign::SigningKey::generate(jwtd::verify::Algorithm::ES256)
        .unwrap()
        .with_kid(Some("k1".into()));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [signer.public_jwk()]}).to_string()).unwrap();
    let jwe_keys = dir.path().join("jwe.json");
    std::fs::write(
        &jwe_keys,
        json!({"keys": [{"kty": "oct", "kid": "enc-1", "k": B64URL.encode(KEY)}]}).to_string(),
    )
    .unwrap();
    let inner = signer
        .mint(
            &json!({"sub": "alice", "exp": now() + 600}),
            &Default::default(),
        )
        .unwrap();
    let jwe = encrypt(inner.as_bytes(), Some("JWT"));
    let (jwks, jwe_keys) = (jwks.display().to_string(), jwe_keys.display().to_string());
    let check = |token: &str, with_keys: bool| {
        let mut args = vec!["check", "--jwks-file", &jwks];
        if with_keys {
            args.extend(["--jwe-keys", &jwe_keys]);
        }
        args.push(token);
        let out = run_jwtd(&args, None);
        (out.status.code(), stdout_json(&out))
    };
    let (code, v) = check(&jwe, true);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["claims"]["sub"], "alice");
    assert_eq!(v["encrypted"], json!({"alg": "dir", "enc": "A256GCM"}));
    let (code, v) = check(&jwe, false);
    assert_eq!((code, v["reason"].as_str()), (Some(1), Some("jwe")));
    let mut tampered = jwe.clone();
    tampered.pop();
    tampered.push(if jwe.ends_with('A') { 'B' } else { 'A' });
    let (code, v) = check(&tampered, true);
    assert_eq!(code, Some(1), "{v}");
    assert!(
        matches!(v["reason"].as_str(), Some("jwe_decrypt" | "jwe")),
        "{v}"
    );
}

#[test]
fn jwtd_mint_encrypt_to_makes_nested_jwts_the_daemon_accepts() {
    use crate::support::run_jwtd;
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../conformance/jwe/vectors.json")).unwrap();
    let ec = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "RFC 7520 5.4")
        .unwrap()["key"]
        .clone();
    let mut ec_public = ec.clone();
    ec_public.as_object_mut().unwrap().remove("d");
    let oct = json!({"kty": "oct", "kid": "enc-1", "k": B64URL.encode(KEY)});
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("jwe.json");
    std::fs::write(&keys, json!({"keys": [ec, oct]}).to_string()).unwrap();
    let d = Jwtd::builder().arg("--jwe-keys").arg(&keys).start();
    let issuer_key = dir.path().join("issuer.pem");
    std::fs::write(&issuer_key, d.key.private_file().unwrap()).unwrap();
    let kid = d.key.kid().unwrap_or_default().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (recipient, extra) in [
        (ec_public.clone(), vec![]),
        (
            ec_public,
            vec!["--encrypt-alg", "ECDH-ES", "--encrypt-enc", "A128CBC-HS256"],
        ),
        (oct.clone(), vec![]),
        (oct, vec!["--encrypt-alg", "dir"]),
    ] {
        let to = dir.path().join("recipient.json");
        std::fs::write(&to, recipient.to_string()).unwrap();
        let (key_path, to_path) = (issuer_key.display().to_string(), to.display().to_string());
        let mut args = vec![
            "mint",
            "--key",
            &key_path,
            "--kid",
            &kid,
            "--sub",
            "alice",
            "--encrypt-to",
            &to_path,
        ];
        args.extend(extra.iter().copied());
        let out = run_jwtd(&args, None);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let jwe = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(jwe.split('.').count(), 5, "{jwe}");
        let r = rt.block_on(async { d.client().await.verify(jwe.as_bytes()).await.unwrap() });
        assert!(matches!(r, Reply::Valid { .. }), "{extra:?}: {r:?}");
    }
}

/// Node `jose` made a nested JWT for every key management algorithm
/// (`tests/conformance/jwe/jose.json`): each is accepted by the daemon,
/// and each tampered one refused with the one opaque reason.
#[test]
fn nested_jwts_from_node_jose_pass_the_daemon_for_every_key_management_algorithm() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../conformance/jwe/jose.json")).unwrap();
    let nested: Vec<&serde_json::Value> = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["nested"] == true && c["expect"] == "decrypt")
        .collect();
    assert!(nested.len() >= 10, "{}", nested.len());
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let signing: Vec<&serde_json::Value> = nested.iter().map(|c| &c["signing_jwk"]).collect();
    std::fs::write(&jwks, json!({ "keys": signing }).to_string()).unwrap();
    let jwe_keys = dir.path().join("jwe.json");
    let decrypting: Vec<&serde_json::Value> = nested.iter().map(|c| &c["key"]).collect();
    std::fs::write(&jwe_keys, json!({ "keys": decrypting }).to_string()).unwrap();
    let d = Jwtd::builder()
        .no_jwks_file()
        .arg("--jwks-file")
        .arg(&jwks)
        .arg("--jwe-keys")
        .arg(&jwe_keys)
        .start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        for case in nested {
            let name = format!("{} {}", case["alg"], case["enc"]);
            let token = case["token"].as_str().unwrap();
            let r = c.verify(token.as_bytes()).await.unwrap();
            let Reply::Valid { claims, .. } = &r else {
                panic!("{name}: {r:?}")
            };
            let claims: serde_json::Value = serde_json::from_slice(claims).unwrap();
            assert_eq!(claims["sub"], "alice", "{name}");
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut tag = B64URL.decode(&parts[4]).unwrap();
            tag[0] ^= 1;
            parts[4] = B64URL.encode(tag);
            let r = c.verify(parts.join(".").as_bytes()).await.unwrap();
            assert!(
                matches!(
                    r,
                    Reply::Invalid {
                        reason: Reject::JweDecrypt,
                        ..
                    }
                ),
                "{name}: {r:?}"
            );
        }
    });
}
