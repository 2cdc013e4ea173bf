//! Encrypted tokens on the real `jwtd serve`: a nested JWT (a JWS inside a
//! JWE, `cty: JWT`) decrypted with `--jwe-keys` and verified as any token,
//! through the native protocol and the HTTP front; Node `jose`'s tokens for
//! every alg/enc pair, each part tampered; claims alone
//! (`jwe_unsigned_claims`); per-issuer keys and PEM keys; a daemon without
//! keys. (The decryption core against the RFC examples and Node `jose`:
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
    let builder =
        Jwtd::builder()
            .http_front()
            .args(["--debug-reason", "true", "--forward-payload", "true"]);
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
    // forward_payload forwards the decrypted claims, never the JWE.
    let payload = B64URL
        .decode(a.header("x-jwt-payload").expect("x-jwt-payload"))
        .unwrap();
    let forwarded: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(forwarded["sub"], "alice");
    assert_eq!(
        forwarded,
        serde_json::from_slice::<serde_json::Value>(
            &B64URL.decode(inner.split('.').nth(1).unwrap()).unwrap()
        )
        .unwrap()
    );
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
    // Claims alone: only with --jwe-unsigned-claims (the key is symmetric).
    let claims_only = encrypt(
        json!({"sub": "carol", "exp": now() + 600})
            .to_string()
            .as_bytes(),
        None,
    );
    let (code, v) = check(&claims_only, true);
    assert_eq!((code, v["reason"].as_str()), (Some(1), Some("jwe")), "{v}");
    let out = run_jwtd(
        &[
            "check",
            "--jwks-file",
            &jwks,
            "--jwe-keys",
            &jwe_keys,
            "--jwe-unsigned-claims",
            &claims_only,
        ],
        None,
    );
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["claims"]["sub"], "carol");
    assert_eq!(v["alg"], serde_json::Value::Null, "no signature: no alg");
    assert_eq!(v["kid"], "enc-1", "the decryption key vouched");
    // A PEM key file, as serve reads it.
    let pem = format!(
        "{}/tests/conformance/jwe/pem/ec-p256-pkcs8.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let to_pem = jwtd::seal::seal(
        inner.as_bytes(),
        &ec_public_jwk(&pem),
        jwtd::verify::jwe::KeyAlg::EcdhEs,
        jwtd::verify::jwe::Enc::Gcm(128),
        Some("JWT"),
    )
    .unwrap();
    let out = run_jwtd(
        &["check", "--jwks-file", &jwks, "--jwe-keys", &pem, &to_pem],
        None,
    );
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["encrypted"], json!({"alg": "ECDH-ES", "enc": "A128GCM"}));
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

/// Flips one bit of part `n` of a compact JWE; the protected header (the
/// AAD) gets a member added instead, so that it still parses.
fn tamper(token: &str, n: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    if n == 0 {
        let mut header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(&parts[0]).unwrap()).unwrap();
        header["x-tampered"] = true.into();
        parts[0] = B64URL.encode(header.to_string());
    } else {
        let mut bytes = B64URL.decode(&parts[n]).unwrap();
        match bytes.first_mut() {
            Some(b) => *b ^= 1,
            // No encrypted key (dir, ECDH-ES): one where none belongs.
            None => bytes.push(0),
        }
        parts[n] = B64URL.encode(bytes);
    }
    parts.join(".")
}

/// Node `jose` made, for every alg/enc pair jwtd decrypts, a nested JWT and
/// a JWE of the claims alone (`tests/conformance/jwe/jose-daemon.json`).
/// Through the daemon: every nested JWT is valid; claims alone are valid
/// with symmetric key management (`--jwe-unsigned-claims`) and refused
/// `jwe` with public-key key management; and each of the five parts
/// tampered (AAD, encrypted key, IV, ciphertext, tag) is refused.
#[test]
fn every_alg_enc_pair_from_node_jose_through_the_daemon_and_each_part_tampered() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../conformance/jwe/jose-daemon.json")).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    // 10 key management algorithms (ECDH-ES on three curves) x 6 encs.
    assert_eq!(cases.len(), 72);
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, vectors["signing_keys"].to_string()).unwrap();
    let jwe_keys = dir.path().join("jwe.json");
    let decrypting: Vec<&serde_json::Value> = cases.iter().map(|c| &c["key"]).collect();
    std::fs::write(&jwe_keys, json!({ "keys": decrypting }).to_string()).unwrap();
    let d = Jwtd::builder()
        .no_jwks_file()
        .arg("--jwks-file")
        .arg(&jwks)
        .arg("--jwe-keys")
        .arg(&jwe_keys)
        .arg("--jwe-unsigned-claims")
        .start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut pairs = std::collections::HashSet::new();
    rt.block_on(async {
        let c = d.client().await;
        for case in cases {
            let name = case["name"].as_str().unwrap();
            pairs.insert((case["alg"].as_str().unwrap(), case["enc"].as_str().unwrap()));
            let nested = case["nested"].as_str().unwrap();
            let r = c.verify(nested.as_bytes()).await.unwrap();
            let Reply::Valid { claims, .. } = &r else {
                panic!("nested {name}: {r:?}")
            };
            let claims: serde_json::Value = serde_json::from_slice(claims).unwrap();
            assert_eq!(claims["sub"], "alice", "{name}");
            for part in 0..5 {
                let r = c.verify(tamper(nested, part).as_bytes()).await.unwrap();
                let Reply::Invalid { reason, .. } = r else {
                    panic!("nested {name}, part {part} tampered: {r:?}")
                };
                // An encrypted key where none belongs is malformed (`jwe`);
                // every other tampering is the one opaque reason.
                let empty_key = nested.split('.').nth(1) == Some("");
                let want = if part == 1 && empty_key {
                    Reject::Jwe
                } else {
                    Reject::JweDecrypt
                };
                assert_eq!(reason, want, "nested {name}, part {part} tampered");
            }
            let claims_only = case["claims_only"].as_str().unwrap();
            let r = c.verify(claims_only.as_bytes()).await.unwrap();
            match case["claims_only_expect"].as_str().unwrap() {
                "accept" => {
                    let Reply::Valid { claims, .. } = &r else {
                        panic!("claims alone {name}: {r:?}")
                    };
                    let claims: serde_json::Value = serde_json::from_slice(claims).unwrap();
                    assert_eq!(claims["iss"], "https://issuer.example", "{name}");
                    let r = c.verify(tamper(claims_only, 4).as_bytes()).await.unwrap();
                    assert!(
                        matches!(
                            r,
                            Reply::Invalid {
                                reason: Reject::JweDecrypt,
                                ..
                            }
                        ),
                        "claims alone {name}, tag tampered: {r:?}"
                    );
                }
                _ => assert!(
                    matches!(
                        r,
                        Reply::Invalid {
                            reason: Reject::Jwe,
                            ..
                        }
                    ),
                    "claims alone {name} (public-key key management): {r:?}"
                ),
            }
        }
    });
    assert_eq!(pairs.len(), 60, "every alg x enc pair");
}

/// Per-issuer keys: issuer A inherits the top-level `jwe_keys` (PEM), B has
/// its own (a JWK set, claims alone allowed), C opts out. An envelope only
/// carries tokens of the issuers whose keys opened it.
#[test]
fn jwe_keys_per_issuer_and_claims_alone_where_allowed() {
    use jwtd::seal::seal;
    use jwtd::sign::SigningKey;
    use jwtd::verify::Algorithm;
    use jwtd::verify::jwe::{Enc, KeyAlg};

    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let pem = format!("{root}/tests/conformance/jwe/pem/ec-p256-pkcs8.pem");
    // The PEM key's public half, for the senders.
    let top_recipient = {
        let keys =
            jwtd::verify::jwe::DecryptionKeys::from_file_contents(&std::fs::read(&pem).unwrap())
                .unwrap();
        assert_eq!(keys.len(), 1);
        ec_public_jwk(&pem)
    };
    let b_secret = [0x42u8; 32];
    let b_keys = dir.path().join("b-jwe.json");
    let b_jwk = json!({"kty": "oct", "kid": "b-enc", "k": B64URL.encode(b_secret)});
    std::fs::write(&b_keys, json!({ "keys": [b_jwk] }).to_string()).unwrap();
    let b_recipient = b_jwk.as_object().unwrap().clone();
    let mut signers = Vec::new();
    for name in ["a", "b", "c"] {
        let key = SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_kid(Some(format!("{name}-sig")));
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
        signers.push((format!("https://{name}.example"), key, path));
    }
    let [
        (a_iss, a_key, a_path),
        (b_iss, b_key, b_path),
        (c_iss, c_key, c_path),
    ] = &signers[..]
    else {
        unreachable!()
    };
    let toml = format!(
        r#"
        jwe_keys = "{pem}"

        [[issuers]]
        issuer = "{a_iss}"
        jwks_file = "{}"

        [[issuers]]
        issuer = "{b_iss}"
        jwks_file = "{}"
        jwe_keys = "{}"
        jwe_unsigned_claims = true

        [[issuers]]
        issuer = "{c_iss}"
        jwks_file = "{}"
        jwe_keys = ""
        "#,
        a_path.display(),
        b_path.display(),
        b_keys.display(),
        c_path.display(),
    );
    let d = Jwtd::builder()
        .no_jwks_file()
        .config(&toml)
        .args(["--debug-reason", "true"])
        .start();
    let exp = now() + 600;
    let signed = |key: &SigningKey, iss: &str| {
        key.mint(
            &json!({"iss": iss, "sub": "alice", "exp": exp}),
            &Default::default(),
        )
        .unwrap()
    };
    let to_top = |token: &str| {
        seal(
            token.as_bytes(),
            &top_recipient,
            KeyAlg::EcdhEsKw(128),
            Enc::Gcm(128),
            Some("JWT"),
        )
        .unwrap()
    };
    let to_b = |plaintext: &[u8], cty: Option<&str>| {
        seal(
            plaintext,
            &b_recipient,
            KeyAlg::AesKw(256),
            Enc::CbcHs(256),
            cty,
        )
        .unwrap()
    };
    let claims = |iss: &str, exp: i64| json!({"iss": iss, "sub": "bob", "exp": exp}).to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        let verdict = |r: Reply| match r {
            Reply::Valid { .. } => Ok(()),
            Reply::Invalid { reason, .. } => Err(reason),
            other => panic!("{other:?}"),
        };
        let rows: Vec<(&str, String, Result<(), Reject>)> = vec![
            (
                "A's token, A's (inherited PEM) key",
                to_top(&signed(a_key, a_iss)),
                Ok(()),
            ),
            (
                "B's token, B's key",
                to_b(signed(b_key, b_iss).as_bytes(), Some("JWT")),
                Ok(()),
            ),
            (
                "B's token, A's key",
                to_top(&signed(b_key, b_iss)),
                Err(Reject::JweDecrypt),
            ),
            (
                "A's token, B's key",
                to_b(signed(a_key, a_iss).as_bytes(), Some("JWT")),
                Err(Reject::JweDecrypt),
            ),
            (
                "C's token, A's key (C takes no JWE)",
                to_top(&signed(c_key, c_iss)),
                Err(Reject::Jwe),
            ),
            ("C's plain token", signed(c_key, c_iss), Ok(())),
            (
                "claims alone for B, B's key",
                to_b(claims(b_iss, exp).as_bytes(), None),
                Ok(()),
            ),
            (
                "claims alone for B, expired",
                to_b(claims(b_iss, now() - 3600).as_bytes(), None),
                Err(Reject::Expired),
            ),
            (
                "claims alone for A, B's key",
                to_b(claims(a_iss, exp).as_bytes(), None),
                Err(Reject::JweDecrypt),
            ),
            (
                "claims alone for A (not allowed), A's key",
                seal(
                    claims(a_iss, exp).as_bytes(),
                    &top_recipient,
                    KeyAlg::EcdhEs,
                    Enc::Gcm(256),
                    None,
                )
                .unwrap(),
                Err(Reject::Jwe),
            ),
            (
                "claims alone naming an unknown issuer",
                to_b(claims("https://x.example", exp).as_bytes(), None),
                Err(Reject::UnknownIssuer),
            ),
            (
                "a JWE inside a JWE (never opened twice)",
                to_b(
                    to_b(signed(b_key, b_iss).as_bytes(), Some("JWT")).as_bytes(),
                    Some("JWT"),
                ),
                Err(Reject::Jwe),
            ),
        ];
        for (what, token, want) in &rows {
            let got = verdict(c.verify(token.as_bytes()).await.unwrap());
            assert_eq!(got, *want, "{what}");
        }
        // Claims alone are cached under the JWE, like any token.
        let sealed = to_b(claims(b_iss, exp).as_bytes(), None);
        assert!(matches!(
            c.verify(sealed.as_bytes()).await.unwrap(),
            Reply::Valid { cached: false, .. }
        ));
        assert!(matches!(
            c.verify(sealed.as_bytes()).await.unwrap(),
            Reply::Valid { cached: true, .. }
        ));
    });
    // B's decryption key rotated out: its claims-only tokens stop at once,
    // from the cache too; A's PEM set is untouched. (Each watcher reloads
    // once at start: wait for both, then change B's file.)
    let reloads = || d.log().matches("JWE decryption keys reloaded").count();
    assert!(crate::support::wait_for(
        std::time::Duration::from_secs(10),
        || reloads() >= 2
    ));
    let rotated =
        json!({"keys": [{"kty": "oct", "kid": "b-enc-2", "k": B64URL.encode([7u8; 32])}]});
    std::fs::write(&b_keys, rotated.to_string()).unwrap();
    assert!(
        crate::support::wait_for(std::time::Duration::from_secs(10), || reloads() >= 3),
        "{}",
        d.log()
    );
    rt.block_on(async {
        let c = d.client().await;
        let sealed = to_b(claims(b_iss, exp).as_bytes(), None);
        let r = c.verify(sealed.as_bytes()).await.unwrap();
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
        let r = c
            .verify(to_top(&signed(a_key, a_iss)).as_bytes())
            .await
            .unwrap();
        assert!(matches!(r, Reply::Valid { .. }), "{r:?}");
    });
}

/// The public JWK of a PEM EC private key (the sender's copy).
fn ec_public_jwk(path: &str) -> serde_json::Map<String, serde_json::Value> {
    use aws_lc_rs::agreement::{ECDH_P256, PrivateKey};
    use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
    let text = std::fs::read_to_string(path).unwrap();
    let der = &jwtd::verify::pem::parse(&text).unwrap()[0].der;
    let private = PrivateKey::from_private_key_der(&ECDH_P256, der).unwrap();
    let point: EcPublicKeyUncompressedBin<'_> =
        private.compute_public_key().unwrap().as_be_bytes().unwrap();
    let point = point.as_ref();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": "whatever-the-sender-calls-it",
        "x": B64URL.encode(&point[1..33]),
        "y": B64URL.encode(&point[33..]),
    })
    .as_object()
    .unwrap()
    .clone()
}

/// The refusals of the conformance sets, through the daemon: RSA1_5 (RFC
/// 7516 A.2, RFC 7520 5.1), PBES2 (RFC 7520 5.3 and Node `jose`), `zip`
/// (RFC 7520 5.9 and `jose`), `crit`, algorithms jwtd does not decrypt with,
/// and ECDH-ES with an ephemeral key off the curve or on another curve
/// (`jose`): each is refused `jwe` from its header, although the daemon
/// holds every key these tokens were made for.
#[test]
fn refused_algorithms_and_headers_from_the_conformance_sets_are_jwe_through_the_daemon() {
    let rfc: serde_json::Value =
        serde_json::from_str(include_str!("../conformance/jwe/vectors.json")).unwrap();
    let jose: serde_json::Value =
        serde_json::from_str(include_str!("../conformance/jwe/jose.json")).unwrap();
    let cases: Vec<&serde_json::Value> = rfc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .chain(jose["cases"].as_array().unwrap())
        .collect();
    let keys: Vec<&serde_json::Value> = cases
        .iter()
        .map(|c| &c["key"])
        .filter(|k| k.is_object())
        .collect();
    let refused: Vec<&&serde_json::Value> =
        cases.iter().filter(|c| c["expect"] == "refuse").collect();
    assert!(refused.len() >= 14, "{}", refused.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwe.json");
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    let d = Jwtd::builder()
        .arg("--jwe-keys")
        .arg(&path)
        .arg("--jwe-unsigned-claims")
        .start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        for case in refused {
            let token = case["token"].as_str().unwrap();
            let r = c.verify(token.as_bytes()).await.unwrap();
            assert!(
                matches!(
                    r,
                    Reply::Invalid {
                        reason: Reject::Jwe,
                        ..
                    }
                ),
                "{}: {r:?}",
                case["name"]
            );
        }
    });
}
