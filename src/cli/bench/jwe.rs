//! `jwtd bench crypto --jwe`: what jwtd's decryption and verification of
//! one nested JWT cost, against the sum of the raw aws-lc-rs primitives the
//! same work needs, single thread, in interleaved rounds.
//!
//! The raw side is written here from the keys, independently of
//! `verify::jwe`: each primitive with its key parsed once, as a
//! hand-written decryptor would hold it. `kw` is the key management (an
//! RSA-OAEP decryption; an ECDH agreement, one SHA-256 Concat KDF block and,
//! for `+A*KW`, an AES key unwrap; an AES key unwrap; nothing for `dir`),
//! `content` the content decryption (AES-GCM open, or HMAC-SHA-2 then
//! AES-CBC), `sig` the inner token's signature check. `jwtd` is
//! `DecryptionKeys::decrypt` then `verify::verify` on the inner token: all
//! the parsing, checks and claims the daemon does on a miss, without I/O.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{self, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::key_wrap::{self, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::{agreement, constant_time, digest, hmac, rsa};
use base64::Engine;
use serde_json::{Map, Value, json};

use jwtd::verify::jwe::{DecryptionKeys, Enc, KeyAlg};
use jwtd::verify::{B64URL, KeySet, Policy};

/// One raw key management step, its key parsed once.
enum Management {
    Rsa(rsa::OaepPrivateDecryptingKey, &'static rsa::OaepAlgorithm),
    Ecdh {
        private: agreement::PrivateKey,
        curve: &'static agreement::Algorithm,
        point: Vec<u8>,
        /// The Concat KDF's input after the counter and Z (RFC 7518 4.6.2).
        other_info: Vec<u8>,
        /// Wrapped content key (`ECDH-ES+A*KW`), with the KEK size.
        wrap: Option<u16>,
    },
    AesKw(Vec<u8>),
    Dir(Vec<u8>),
}

fn b64(jwk: &Map<String, Value>, name: &str) -> anyhow::Result<Vec<u8>> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .with_context(|| format!("key member {name:?}"))?;
    Ok(B64URL.decode(text)?)
}

fn kek(bits: usize) -> anyhow::Result<&'static key_wrap::AesBlockCipher> {
    match bits {
        128 => Ok(&key_wrap::AES_128),
        256 => Ok(&key_wrap::AES_256),
        // aws-lc-rs's key wrap has no 192-bit KEK (jwtd builds its own
        // over AES-ECB): no raw reference for it here.
        _ => bail!("no raw AES key wrap of {bits} bits in aws-lc-rs"),
    }
}

fn unwrap_key(kek_bytes: &[u8], wrapped: &[u8]) -> anyhow::Result<Vec<u8>> {
    let kek = KeyEncryptionKey::new(kek(kek_bytes.len() * 8)?, kek_bytes)
        .map_err(|_| anyhow::anyhow!("bad KEK"))?;
    let mut out = vec![0u8; wrapped.len()];
    let n = kek
        .unwrap(wrapped, &mut out)
        .map_err(|_| anyhow::anyhow!("unwrap failed"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Where the raw side reads the private key from: a JWK, or a PEM block's
/// DER (as `jwe_keys` may hold either).
enum Source<'a> {
    Jwk(&'a Map<String, Value>),
    Der(&'a [u8]),
}

impl Management {
    fn new(
        key: Source<'_>,
        alg: KeyAlg,
        enc: Enc,
        header: &Map<String, Value>,
    ) -> anyhow::Result<Management> {
        use aws_lc_rs::encoding::AsDer;
        Ok(match alg {
            KeyAlg::RsaOaep | KeyAlg::RsaOaep256 => {
                let pkcs8 = match key {
                    Source::Der(der) => der.to_vec(),
                    Source::Jwk(jwk) => {
                        let strip = |b: Vec<u8>| {
                            let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
                            b[first..].to_vec()
                        };
                        let c = rsa::KeyPairComponents {
                            public_key: rsa::PublicKeyComponents {
                                n: strip(b64(jwk, "n")?),
                                e: strip(b64(jwk, "e")?),
                            },
                            d: b64(jwk, "d")?,
                            p: b64(jwk, "p")?,
                            q: b64(jwk, "q")?,
                            dP: b64(jwk, "dp")?,
                            dQ: b64(jwk, "dq")?,
                            qInv: b64(jwk, "qi")?,
                        };
                        rsa::KeyPair::from_components(&c)?
                            .as_der()?
                            .as_ref()
                            .to_vec()
                    }
                };
                let private = rsa::PrivateDecryptingKey::from_pkcs8(&pkcs8)?;
                let oaep = if alg == KeyAlg::RsaOaep {
                    &rsa::OAEP_SHA1_MGF1SHA1
                } else {
                    &rsa::OAEP_SHA256_MGF1SHA256
                };
                Management::Rsa(rsa::OaepPrivateDecryptingKey::new(private)?, oaep)
            }
            KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_) => {
                let (private, curve) = match key {
                    Source::Jwk(jwk) => {
                        let curve = match jwk.get("crv").and_then(Value::as_str) {
                            Some("P-256") => &agreement::ECDH_P256,
                            Some("P-384") => &agreement::ECDH_P384,
                            _ => &agreement::ECDH_P521,
                        };
                        (
                            agreement::PrivateKey::from_private_key(curve, &b64(jwk, "d")?)?,
                            curve,
                        )
                    }
                    Source::Der(der) => [
                        &agreement::ECDH_P256,
                        &agreement::ECDH_P384,
                        &agreement::ECDH_P521,
                    ]
                    .into_iter()
                    .find_map(|c| {
                        Some((agreement::PrivateKey::from_private_key_der(c, der).ok()?, c))
                    })
                    .context("not an EC key on P-256, P-384 or P-521")?,
                };
                let epk = header
                    .get("epk")
                    .and_then(Value::as_object)
                    .context("epk")?;
                let mut point = vec![4u8];
                point.extend(b64(epk, "x")?);
                point.extend(b64(epk, "y")?);
                let (name, bits) = match alg {
                    KeyAlg::EcdhEsKw(bits) => (alg.as_str(), u32::from(bits)),
                    _ => (enc.as_str(), enc.key_len() as u32 * 8),
                };
                let info = |v: Option<&Value>| {
                    v.and_then(Value::as_str)
                        .and_then(|s| B64URL.decode(s).ok())
                        .unwrap_or_default()
                };
                let mut other_info = Vec::new();
                for part in [
                    name.as_bytes().to_vec(),
                    info(header.get("apu")),
                    info(header.get("apv")),
                ] {
                    other_info.extend((part.len() as u32).to_be_bytes());
                    other_info.extend(part);
                }
                other_info.extend(bits.to_be_bytes());
                if bits > 256 {
                    bail!("a Concat KDF of more than one SHA-256 block");
                }
                Management::Ecdh {
                    private,
                    curve,
                    point,
                    other_info,
                    wrap: match alg {
                        KeyAlg::EcdhEsKw(bits) => Some(bits),
                        _ => None,
                    },
                }
            }
            KeyAlg::AesKw(_) | KeyAlg::Dir => {
                let Source::Jwk(jwk) = key else {
                    bail!("an oct key comes in a JWK set");
                };
                let k = b64(jwk, "k")?;
                if alg == KeyAlg::Dir {
                    Management::Dir(k)
                } else {
                    Management::AesKw(k)
                }
            }
        })
    }

    /// The content key of a JWE with this `encrypted_key`.
    fn content_key(&self, encrypted_key: &[u8]) -> anyhow::Result<Vec<u8>> {
        match self {
            Management::Rsa(key, oaep) => {
                let mut out = vec![0u8; key.min_output_size()];
                Ok(key.decrypt(oaep, encrypted_key, &mut out, None)?.to_vec())
            }
            Management::Ecdh {
                private,
                curve,
                point,
                other_info,
                wrap,
            } => {
                let peer = agreement::UnparsedPublicKey::new(curve, point);
                let derived = agreement::agree(private, peer, anyhow::anyhow!("agree"), |z| {
                    let mut ctx = digest::Context::new(&digest::SHA256);
                    ctx.update(&1u32.to_be_bytes());
                    ctx.update(z);
                    ctx.update(other_info);
                    Ok(ctx.finish().as_ref().to_vec())
                })?;
                let len = other_info[other_info.len() - 4..]
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(256) as usize
                    / 8;
                let derived = &derived[..len];
                match wrap {
                    Some(_) => unwrap_key(derived, encrypted_key),
                    None => Ok(derived.to_vec()),
                }
            }
            Management::AesKw(k) => unwrap_key(k, encrypted_key),
            Management::Dir(k) => Ok(k.clone()),
        }
    }
}

/// Raw content decryption: the plaintext, or why not.
fn open(enc: Enc, cek: &[u8], iv: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    match enc {
        Enc::Gcm(bits) => {
            let alg = match bits {
                128 => &aead::AES_128_GCM,
                192 => &aead::AES_192_GCM,
                _ => &aead::AES_256_GCM,
            };
            let key = LessSafeKey::new(UnboundKey::new(alg, cek).ok()?);
            let mut in_out = [ct, tag].concat();
            let nonce = Nonce::try_assume_unique_for_key(iv).ok()?;
            let plain = key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok()?;
            Some(plain.to_vec())
        }
        Enc::CbcHs(bits) => {
            let half = cek.len() / 2;
            let (mac_key, enc_key) = cek.split_at(half);
            let mac = match bits {
                128 => hmac::HMAC_SHA256,
                192 => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            let mut ctx = hmac::Context::with_key(&hmac::Key::new(mac, mac_key));
            ctx.update(aad);
            ctx.update(iv);
            ctx.update(ct);
            ctx.update(&(aad.len() as u64 * 8).to_be_bytes());
            let full = ctx.sign();
            constant_time::verify_slices_are_equal(&full.as_ref()[..half], tag).ok()?;
            let aes = match bits {
                128 => &cipher::AES_128,
                192 => &cipher::AES_192,
                _ => &cipher::AES_256,
            };
            let key =
                PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(aes, enc_key).ok()?)
                    .ok()?;
            let mut buf = ct.to_vec();
            let iv: [u8; 16] = iv.try_into().ok()?;
            let plain = key
                .decrypt(&mut buf, cipher::DecryptionContext::Iv128(iv.into()))
                .ok()?;
            Some(plain.to_vec())
        }
    }
}

pub(super) fn run(
    token: &str,
    jwe_keys: &std::path::Path,
    jwks_file: &std::path::Path,
    duration: std::time::Duration,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let token = token.trim();
    let key_bytes =
        std::fs::read(jwe_keys).with_context(|| format!("--jwe-keys {}", jwe_keys.display()))?;
    let keys = DecryptionKeys::from_file_contents(&key_bytes)
        .map_err(|e| anyhow::anyhow!("--jwe-keys {}: {e}", jwe_keys.display()))?;
    let signing = KeySet::from_file_contents(
        &std::fs::read(jwks_file)
            .with_context(|| format!("--jwks-file {}", jwks_file.display()))?,
    )?;
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, ek, iv, ct, tag] = parts[..] else {
        bail!("--jwe: not a compact JWE (five parts)");
    };
    let header: Map<String, Value> = serde_json::from_slice(&B64URL.decode(header_b64)?)?;
    let text = |n: &str| header.get(n).and_then(Value::as_str);
    let alg = text("alg").and_then(KeyAlg::from_name).context("alg")?;
    let enc = text("enc").and_then(Enc::from_name).context("enc")?;
    let management = if key_bytes.trim_ascii_start().starts_with(b"-----BEGIN ") {
        // Each PEM key answers any kid: the first that fits the alg.
        let blocks = jwtd::verify::pem::parse(std::str::from_utf8(&key_bytes)?)?;
        blocks
            .iter()
            .find_map(|b| Management::new(Source::Der(&b.der), alg, enc, &header).ok())
            .context("no PEM key of --jwe-keys fits the token's alg")?
    } else {
        let set: Value = serde_json::from_slice(&key_bytes).context("--jwe-keys: a JWK set")?;
        let jwk = set["keys"]
            .as_array()
            .and_then(|keys| {
                keys.iter()
                    .find(|k| text("kid").is_none_or(|kid| k["kid"] == kid))
            })
            .and_then(Value::as_object)
            .context("no key of --jwe-keys for the token's kid")?;
        Management::new(Source::Jwk(jwk), alg, enc, &header)?
    };
    let (ek, iv, ct, tag) = (
        B64URL.decode(ek)?,
        B64URL.decode(iv)?,
        B64URL.decode(ct)?,
        B64URL.decode(tag)?,
    );
    let cek = management.content_key(&ek)?;
    let inner = open(enc, &cek, &iv, header_b64.as_bytes(), &ct, &tag)
        .context("the raw primitives do not open the token")?;
    let (sig_alg, signing_input, sig) = super::split_jws(&inner)?;
    let sig_key = signing
        .keys()
        .iter()
        .find(|k| k.verify(sig_alg, signing_input, &sig))
        .context("no key of --jwks-file verifies the inner token")?;
    let policy = Policy {
        required: Vec::new(),
        ..Policy::default()
    };
    let now = jwtd::clock::unix_now();
    let jwtd_path = || -> bool {
        keys.decrypt(token.as_bytes())
            .ok()
            .is_some_and(|d| jwtd::verify::verify(&d.plaintext, &signing, &policy, now).is_ok())
    };
    anyhow::ensure!(jwtd_path(), "jwtd does not accept the token");

    const CASES: usize = 4; // kw, content, sig, jwtd
    let probe = Instant::now();
    for _ in 0..4 {
        std::hint::black_box(jwtd_path());
    }
    // About 2 ms of the whole path per batch.
    let batch = (0.002 / (probe.elapsed().as_secs_f64() / 4.0)).clamp(1.0, 10_000.0) as u64;
    let mut times: [Vec<f64>; CASES] = Default::default();
    let mut ratios = Vec::new();
    let began = Instant::now();
    let mut round = 0usize;
    while began.elapsed() < duration {
        let mut this = [0.0f64; CASES];
        for k in 0..CASES {
            let case = (round + k) % CASES;
            let t = Instant::now();
            for _ in 0..batch {
                match case {
                    0 => {
                        let _ =
                            std::hint::black_box(management.content_key(std::hint::black_box(&ek)));
                    }
                    1 => {
                        std::hint::black_box(open(
                            enc,
                            &cek,
                            &iv,
                            header_b64.as_bytes(),
                            std::hint::black_box(&ct),
                            &tag,
                        ));
                    }
                    2 => {
                        std::hint::black_box(sig_key.verify(
                            sig_alg,
                            std::hint::black_box(signing_input),
                            &sig,
                        ));
                    }
                    _ => {
                        std::hint::black_box(jwtd_path());
                    }
                }
            }
            this[case] = t.elapsed().as_secs_f64() / batch as f64;
        }
        for (all, t) in times.iter_mut().zip(this) {
            all.push(t);
        }
        ratios.push(this[3] / (this[0] + this[1] + this[2]));
        round += 1;
    }
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let [kw, content, sig_us, whole] = times.map(|mut t| median(&mut t) * 1e6);
    let ratio = median(&mut ratios);
    let raw = kw + content + sig_us;
    if json_out {
        println!(
            "{}",
            json!({
                "alg": alg.as_str(), "enc": enc.as_str(), "sig_alg": sig_alg.as_str(),
                "rounds": round, "kw_us": kw, "content_us": content, "sig_us": sig_us,
                "raw_sum_us": raw, "jwtd_us": whole, "jwtd_over_raw": ratio,
            })
        );
    } else {
        println!(
            "{} + {} around {sig_alg}: raw primitives {raw:.2} us (key management {kw:.2}, content {content:.2}, signature {sig_us:.2})",
            alg.as_str(),
            enc.as_str()
        );
        println!(
            "jwtd's decrypt + verify {whole:.2} us ({ratio:.3} x raw, median of {round} rounds)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
