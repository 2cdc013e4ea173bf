//! The encrypting side of JWE (RFC 7516): a compact JWE of a plaintext for
//! a recipient's public (or shared) key. For `jwtd mint --encrypt-to`, the
//! tests and the benchmarks; never on a request path (the daemon only
//! decrypts: `crate::verify::jwe`).
//!
//! Every algorithm the daemon decrypts is here, so each alg/enc pair is
//! tested both ways in this crate, besides the RFC examples and the tokens
//! an independent library (Node `jose`) made.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    EncryptingKey, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::rand::{self, SystemRandom};
use aws_lc_rs::rsa::{self, OaepPublicEncryptingKey, PublicEncryptingKey, PublicKeyComponents};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::verify::B64URL;
use crate::verify::jwe::{Enc, KeyAlg, cbc_hs_tag, concat_kdf};

/// Why a JWE could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

fn err(what: impl std::fmt::Display) -> SealError {
    SealError(what.to_string())
}

fn b64(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, SealError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(|s| B64URL.decode(s).ok())
        .ok_or_else(|| {
            err(format!(
                "recipient key: member \"{name}\" missing or not base64url"
            ))
        })
}

/// A compact JWE of `plaintext` for `recipient` (a public JWK, or an `oct`
/// key for `A*KW` and `dir`), with `alg` and `enc`; `cty` is set when
/// given (`JWT` for a nested token), `kid` copied from the key.
///
/// # Errors
///
/// A key that does not fit `alg`/`enc`, or a crypto failure.
pub fn seal(
    plaintext: &[u8],
    recipient: &Map<String, Value>,
    alg: KeyAlg,
    enc: Enc,
    cty: Option<&str>,
) -> Result<String, SealError> {
    let mut header = json!({"alg": alg.as_str(), "enc": enc.as_str()});
    if let Some(kid) = recipient.get("kid").and_then(Value::as_str) {
        header["kid"] = kid.into();
    }
    if let Some(cty) = cty {
        header["cty"] = cty.into();
    }
    let mut cek = vec![0u8; enc.key_len()];
    rand::fill(&mut cek).map_err(err)?;
    let encrypted_key = match alg {
        KeyAlg::RsaOaep | KeyAlg::RsaOaep256 => {
            let components = PublicKeyComponents {
                n: b64(recipient, "n")?,
                e: b64(recipient, "e")?,
            };
            let public: PublicEncryptingKey = components.try_into().map_err(err)?;
            let key = OaepPublicEncryptingKey::new(public).map_err(err)?;
            let oaep = if alg == KeyAlg::RsaOaep {
                &rsa::OAEP_SHA1_MGF1SHA1
            } else {
                &rsa::OAEP_SHA256_MGF1SHA256
            };
            let mut out = vec![0u8; key.ciphertext_size()];
            key.encrypt(oaep, &cek, &mut out, None)
                .map_err(err)?
                .to_vec()
        }
        KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_) => {
            let (curve, len) = match recipient.get("crv").and_then(Value::as_str) {
                Some("P-256") => (&agreement::ECDH_P256, 32),
                Some("P-384") => (&agreement::ECDH_P384, 48),
                Some("P-521") => (&agreement::ECDH_P521, 66),
                other => return Err(err(format!("recipient key: curve {other:?}"))),
            };
            let mut point = vec![0x04];
            point.extend(b64(recipient, "x")?);
            point.extend(b64(recipient, "y")?);
            let ephemeral =
                EphemeralPrivateKey::generate(curve, &SystemRandom::new()).map_err(err)?;
            let public = ephemeral.compute_public_key().map_err(err)?;
            let bytes = public.as_ref();
            header["epk"] = json!({
                "kty": "EC",
                "crv": recipient.get("crv").cloned().unwrap_or_default(),
                "x": B64URL.encode(&bytes[1..1 + len]),
                "y": B64URL.encode(&bytes[1 + len..]),
            });
            let z = agreement::agree_ephemeral(
                ephemeral,
                UnparsedPublicKey::new(curve, point),
                err("key agreement failed"),
                |z| Ok(z.to_vec()),
            )?;
            match alg {
                KeyAlg::EcdhEs => {
                    cek = concat_kdf(&z, enc.as_str(), enc.key_len() * 8, b"", b"");
                    Vec::new()
                }
                KeyAlg::EcdhEsKw(bits) => {
                    let kek = concat_kdf(&z, alg.as_str(), usize::from(bits), b"", b"");
                    aes_wrap(&kek, &cek)?
                }
                _ => unreachable!("matched above"),
            }
        }
        KeyAlg::AesKw(bits) => {
            let kek = b64(recipient, "k")?;
            if kek.len() * 8 != usize::from(bits) {
                return Err(err(format!(
                    "an {}-bit key for {}",
                    kek.len() * 8,
                    alg.as_str()
                )));
            }
            aes_wrap(&kek, &cek)?
        }
        KeyAlg::Dir => {
            cek = b64(recipient, "k")?;
            if cek.len() != enc.key_len() {
                return Err(err(format!(
                    "a {}-byte key for dir with {}",
                    cek.len(),
                    enc.as_str()
                )));
            }
            Vec::new()
        }
    };
    let header = B64URL.encode(header.to_string());
    let (iv, ciphertext, tag) = encrypt_content(enc, &cek, header.as_bytes(), plaintext)?;
    Ok(format!(
        "{header}.{}.{}.{}.{}",
        B64URL.encode(encrypted_key),
        B64URL.encode(iv),
        B64URL.encode(ciphertext),
        B64URL.encode(tag)
    ))
}

/// AES key wrap (RFC 3394, default IV) over AES-ECB, any KEK size.
pub fn aes_wrap(kek: &[u8], key: &[u8]) -> Result<Vec<u8>, SealError> {
    if ![16, 24, 32].contains(&kek.len()) {
        return Err(err(format!("a {}-byte key wrapping key", kek.len())));
    }
    let algorithm = Enc::aes(u16::try_from(kek.len() * 8).map_err(err)?);
    if key.len() < 16 || !key.len().is_multiple_of(8) {
        return Err(err("key to wrap: a multiple of 8 bytes, at least 16"));
    }
    let n = key.len() / 8;
    let mut a = [0xA6u8; 8];
    let mut r: Vec<[u8; 8]> = key
        .chunks(8)
        .map(|c| c.try_into().unwrap_or([0; 8]))
        .collect();
    let ecb =
        EncryptingKey::ecb(UnboundCipherKey::new(algorithm, kek).map_err(err)?).map_err(err)?;
    for j in 0..6u64 {
        for (i, block_r) in r.iter_mut().enumerate() {
            let mut block = [0u8; 16];
            block[..8].copy_from_slice(&a);
            block[8..].copy_from_slice(block_r);
            ecb.less_safe_encrypt(&mut block, EncryptionContext::None)
                .map_err(err)?;
            let t = (n as u64) * j + (i as u64 + 1);
            for (k, byte) in t.to_be_bytes().iter().enumerate() {
                a[k] = block[k] ^ byte;
            }
            block_r.copy_from_slice(&block[8..]);
        }
    }
    let mut out = a.to_vec();
    for block in r {
        out.extend_from_slice(&block);
    }
    Ok(out)
}

type Sealed = (Vec<u8>, Vec<u8>, Vec<u8>);

/// IV, ciphertext and tag of `plaintext` under `cek`, the AAD being the
/// protected header as sent.
fn encrypt_content(
    enc: Enc,
    cek: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SealError> {
    match enc {
        Enc::Gcm(bits) => {
            let algorithm = Enc::gcm(bits);
            let mut iv = [0u8; 12];
            rand::fill(&mut iv).map_err(err)?;
            let key = LessSafeKey::new(UnboundKey::new(algorithm, cek).map_err(err)?);
            let mut in_out = plaintext.to_vec();
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(aad),
                    &mut in_out,
                )
                .map_err(err)?;
            Ok((iv.to_vec(), in_out, tag.as_ref().to_vec()))
        }
        Enc::CbcHs(bits) => {
            let (mac_key, enc_key) = cek.split_at(cek.len() / 2);
            let algorithm = Enc::aes(bits);
            let mut iv = [0u8; 16];
            rand::fill(&mut iv).map_err(err)?;
            let key = PaddedBlockEncryptingKey::cbc_pkcs7(
                UnboundCipherKey::new(algorithm, enc_key).map_err(err)?,
            )
            .map_err(err)?;
            let mut in_out = plaintext.to_vec();
            key.less_safe_encrypt(
                &mut in_out,
                EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
            )
            .map_err(err)?;
            let tag = cbc_hs_tag(bits, mac_key, aad, &iv, &in_out);
            Ok((iv.to_vec(), in_out, tag))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::jwe::{DecryptionKey, JweError, decrypt};

    const ALGS: [&str; 10] = [
        "RSA-OAEP",
        "RSA-OAEP-256",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "ECDH-ES+A192KW",
        "ECDH-ES+A256KW",
        "A128KW",
        "A192KW",
        "A256KW",
        "dir",
    ];
    const ENCS: [&str; 6] = [
        "A128GCM",
        "A192GCM",
        "A256GCM",
        "A128CBC-HS256",
        "A192CBC-HS384",
        "A256CBC-HS512",
    ];

    /// A private JWK for `alg` (and `enc`, for `dir`), from the published
    /// test keys of `tests/conformance/jwe/vectors.json` where one fits.
    fn private_jwk(alg: KeyAlg, enc: Enc) -> Map<String, Value> {
        let vectors: Value =
            serde_json::from_str(include_str!("../tests/conformance/jwe/vectors.json")).unwrap();
        let key_of = |name: &str| -> Map<String, Value> {
            let case = vectors["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap();
            let mut key = case["key"].as_object().unwrap().clone();
            key.remove("alg");
            key
        };
        let oct = |len: usize| {
            let mut k = vec![0u8; len];
            rand::fill(&mut k).unwrap();
            json!({"kty": "oct", "k": B64URL.encode(k)})
                .as_object()
                .unwrap()
                .clone()
        };
        match alg {
            KeyAlg::RsaOaep | KeyAlg::RsaOaep256 => key_of("RFC 7516 A.1"),
            KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_) => key_of("RFC 7520 5.4"),
            KeyAlg::AesKw(bits) => oct(usize::from(bits) / 8),
            KeyAlg::Dir => oct(enc.key_len()),
        }
    }

    fn public_of(private: &Map<String, Value>) -> Map<String, Value> {
        let mut public = private.clone();
        if public.get("kty").and_then(Value::as_str) != Some("oct") {
            for m in ["d", "p", "q", "dp", "dq", "qi"] {
                public.remove(m);
            }
        }
        public
    }

    #[test]
    fn every_pair_round_trips_and_tampering_is_refused() {
        for alg in ALGS.map(|a| KeyAlg::from_name(a).unwrap()) {
            for enc in ENCS.map(|e| Enc::from_name(e).unwrap()) {
                let private = private_jwk(alg, enc);
                let key = DecryptionKey::from_jwk(&private).unwrap();
                let token = seal(b"hello", &public_of(&private), alg, enc, Some("JWT"))
                    .unwrap_or_else(|e| panic!("{alg:?} {enc:?}: {e}"));
                let d = decrypt(token.as_bytes(), &key)
                    .unwrap_or_else(|e| panic!("{alg:?} {enc:?}: {e}"));
                assert_eq!(
                    (d.plaintext.as_slice(), d.alg, d.enc, d.nested),
                    (&b"hello"[..], alg, enc, true)
                );
                let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                let mut tag = B64URL.decode(&parts[4]).unwrap();
                tag[0] ^= 1;
                parts[4] = B64URL.encode(tag);
                assert_eq!(
                    decrypt(parts.join(".").as_bytes(), &key).map(|_| ()),
                    Err(JweError::Decrypt),
                    "{alg:?} {enc:?}"
                );
            }
        }
    }

    #[test]
    fn aes_wrap_matches_rfc3394() {
        let kek: Vec<u8> = (0u8..16).collect();
        let key: Vec<u8> = (0u8..16).map(|i| i * 0x11).collect();
        let wrapped = aes_wrap(&kek, &key).unwrap();
        let hex: String = wrapped.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5");
        assert_eq!(crate::verify::jwe::aes_unwrap(&kek, &wrapped), Some(key));
    }
}
