//! Compact JWE (RFC 7516, algorithms of RFC 7518): one encrypted token and
//! one decryption key -> the plaintext, or why not.
//!
//! Pure (no I/O, no clock), tested against the RFC 7516 and RFC 7520
//! examples and tokens Node `jose` made (`tests/conformance/jwe/`). The
//! daemon calls it from `verifier/check.rs`; `docs/design/jwe.md` has the
//! whole design (nested tokens, claims alone, per-issuer keys).
//!
//! # What is accepted
//!
//! - Key management (`alg`): `RSA-OAEP`, `RSA-OAEP-256`, `ECDH-ES`,
//!   `ECDH-ES+A128KW`, `ECDH-ES+A192KW`, `ECDH-ES+A256KW`, `A128KW`,
//!   `A192KW`, `A256KW`, `dir`.
//! - Content encryption (`enc`): `A128GCM`, `A192GCM`, `A256GCM`,
//!   `A128CBC-HS256`, `A192CBC-HS384`, `A256CBC-HS512`.
//!
//! # What is refused, and how
//!
//! Facts of the public header are refused before any cryptography, each
//! with its own [`JweError`]: they tell an attacker nothing it did not send
//! (`RSA1_5`, whose padding oracles RFC 7516 11.5 warns of; `PBES2-*`,
//! whose iteration count is the sender's to choose; `zip`, a decompression
//! bomb; any `crit`; an `alg` or `enc` the key does not serve; an ECDH-ES
//! ephemeral key that is not a point of the key's curve, the invalid-curve
//! attack). Every failure *after* that (a wrong key, a tampered encrypted
//! key, IV, AAD, ciphertext or tag) is one opaque [`JweError::Decrypt`]:
//! no oracle. An RSA-OAEP unwrap that fails goes on with a random content
//! key (RFC 7516 11.5), so it fails where a bad tag fails, in about the
//! same time; CBC-HMAC tags are compared in constant time before anything
//! is decrypted.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement;
use aws_lc_rs::cipher::{self, DecryptingKey, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{self, KeyPairComponents, OaepPrivateDecryptingKey, PublicKeyComponents};
use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine;
use serde_json::{Map, Value};

use super::keys::{B64URL, KeyFingerprint};

/// Key management algorithms jwtd decrypts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1.
    RsaOaep,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    RsaOaep256,
    /// ECDH-ES, the agreed key is the content key.
    EcdhEs,
    /// ECDH-ES, the agreed key wraps the content key (AES key wrap of 128,
    /// 192 or 256 bits).
    EcdhEsKw(u16),
    /// AES key wrap (RFC 3394) of 128, 192 or 256 bits.
    AesKw(u16),
    /// The key is the content key.
    Dir,
}

impl KeyAlg {
    /// The `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::RsaOaep => "RSA-OAEP",
            KeyAlg::RsaOaep256 => "RSA-OAEP-256",
            KeyAlg::EcdhEs => "ECDH-ES",
            KeyAlg::EcdhEsKw(128) => "ECDH-ES+A128KW",
            KeyAlg::EcdhEsKw(192) => "ECDH-ES+A192KW",
            KeyAlg::EcdhEsKw(_) => "ECDH-ES+A256KW",
            KeyAlg::AesKw(128) => "A128KW",
            KeyAlg::AesKw(192) => "A192KW",
            KeyAlg::AesKw(_) => "A256KW",
            KeyAlg::Dir => "dir",
        }
    }

    /// The algorithm named `name`, if jwtd decrypts with it.
    pub fn from_name(name: &str) -> Option<KeyAlg> {
        Some(match name {
            "RSA-OAEP" => KeyAlg::RsaOaep,
            "RSA-OAEP-256" => KeyAlg::RsaOaep256,
            "ECDH-ES" => KeyAlg::EcdhEs,
            "ECDH-ES+A128KW" => KeyAlg::EcdhEsKw(128),
            "ECDH-ES+A192KW" => KeyAlg::EcdhEsKw(192),
            "ECDH-ES+A256KW" => KeyAlg::EcdhEsKw(256),
            "A128KW" => KeyAlg::AesKw(128),
            "A192KW" => KeyAlg::AesKw(192),
            "A256KW" => KeyAlg::AesKw(256),
            "dir" => KeyAlg::Dir,
            _ => return None,
        })
    }

    /// Whether anyone holding only a public key can encrypt with it (then
    /// the plaintext must be a signed token).
    pub fn is_public(self) -> bool {
        matches!(
            self,
            KeyAlg::RsaOaep | KeyAlg::RsaOaep256 | KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_)
        )
    }
}

/// Content encryption algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    /// AES-GCM with a key of 128, 192 or 256 bits.
    Gcm(u16),
    /// AES-CBC with HMAC-SHA-2 (RFC 7518 5.2): 128 (HS256), 192 (HS384) or
    /// 256 (HS512) bits of AES key.
    CbcHs(u16),
}

impl Enc {
    /// The `enc` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Enc::Gcm(128) => "A128GCM",
            Enc::Gcm(192) => "A192GCM",
            Enc::Gcm(_) => "A256GCM",
            Enc::CbcHs(128) => "A128CBC-HS256",
            Enc::CbcHs(192) => "A192CBC-HS384",
            Enc::CbcHs(_) => "A256CBC-HS512",
        }
    }

    /// The encryption named `name`, if jwtd decrypts it.
    pub fn from_name(name: &str) -> Option<Enc> {
        Some(match name {
            "A128GCM" => Enc::Gcm(128),
            "A192GCM" => Enc::Gcm(192),
            "A256GCM" => Enc::Gcm(256),
            "A128CBC-HS256" => Enc::CbcHs(128),
            "A192CBC-HS384" => Enc::CbcHs(192),
            "A256CBC-HS512" => Enc::CbcHs(256),
            _ => return None,
        })
    }

    /// The AES cipher of a CBC-HMAC `enc` of `bits` (its key is half the
    /// content key), or of a key wrap with a KEK of `bits`.
    pub fn aes(bits: u16) -> &'static cipher::Algorithm {
        match bits {
            128 => &cipher::AES_128,
            192 => &cipher::AES_192,
            _ => &cipher::AES_256,
        }
    }

    /// The AES-GCM algorithm of a GCM `enc` of `bits`.
    pub fn gcm(bits: u16) -> &'static aead::Algorithm {
        match bits {
            128 => &aead::AES_128_GCM,
            192 => &aead::AES_192_GCM,
            _ => &aead::AES_256_GCM,
        }
    }

    /// The content key's length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Enc::Gcm(bits) => usize::from(bits) / 8,
            // MAC key and encryption key, each as long as the AES key.
            Enc::CbcHs(bits) => usize::from(bits) / 4,
        }
    }
}

/// Why a JWE was not decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// Not five strict base64url segments, or a header that is not a JSON
    /// object with string `alg` and `enc`.
    #[error("not a compact JWE")]
    Malformed,
    /// `RSA1_5`: refused (padding oracles).
    #[error("RSA1_5 is refused")]
    Rsa15,
    /// `PBES2-*`: refused (the sender chooses the work).
    #[error("PBES2 is refused")]
    Pbes2,
    /// `zip`: refused (decompression bombs).
    #[error("compressed (zip) JWE is refused")]
    Zip,
    /// A `crit` header.
    #[error("crit is refused")]
    Crit,
    /// An `alg` or `enc` jwtd does not decrypt, or the key does not serve.
    #[error("alg or enc not allowed")]
    Algorithm,
    /// An ECDH-ES `epk` that is missing, malformed or not a point of the
    /// key's curve.
    #[error("bad ephemeral key")]
    EphemeralKey,
    /// Decryption failed: wrong key, or anything tampered. Deliberately one
    /// reason.
    #[error("decryption failed")]
    Decrypt,
}

/// A private key jwtd decrypts with, parsed once.
pub struct DecryptionKey {
    kid: Option<String>,
    /// A PEM key (PEM has no kid): it stands for whatever kid a JWE names,
    /// as kid-less PEM keys do for signatures.
    any_kid: bool,
    /// Its identity (a digest of the key, never shown): a claims-only
    /// result is served from the cache only while its key is loaded.
    fingerprint: KeyFingerprint,
    /// The one `alg` it serves (from its JWK `alg`), if it names one.
    alg: Option<KeyAlg>,
    /// The one `enc` it serves: a `dir` key whose JWK `alg` names the
    /// content encryption (RFC 7520 5.6 writes `"alg": "A128GCM"`).
    enc: Option<Enc>,
    material: Material,
}

enum Material {
    /// The OAEP key, and the digest of its PKCS#8 form (its identity).
    Rsa(OaepPrivateDecryptingKey, [u8; 32]),
    /// The curve, its coordinate length, the key parsed once (parsing
    /// derives the public point: a scalar multiplication), and the digest
    /// of `d` (its identity).
    Ec(
        &'static agreement::Algorithm,
        usize,
        agreement::PrivateKey,
        [u8; 32],
    ),
    Oct(Vec<u8>),
}

impl Material {
    /// A digest naming this key, domain-separated from every other use of
    /// SHA-256 in jwtd; only ever compared in memory.
    fn fingerprint(&self) -> KeyFingerprint {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"jwtd decryption key\0");
        match self {
            Material::Rsa(_, d) => {
                ctx.update(b"RSA\0");
                ctx.update(d);
            }
            Material::Ec(_, len, _, d) => {
                ctx.update(format!("EC{len}\0").as_bytes());
                ctx.update(d);
            }
            Material::Oct(k) => {
                ctx.update(b"oct\0");
                ctx.update(k);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        KeyFingerprint(out)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// Why aws-lc-rs refused an RSA key, in the words of the other checks.
fn rsa_rejected(e: aws_lc_rs::error::KeyRejected) -> KeyError {
    match e.to_string().as_str() {
        "TooSmall" => KeyError("RSA modulus below 2048 bits".to_owned()),
        other => KeyError(format!("RSA key rejected: {other}")),
    }
}

/// An RSA private key for OAEP: at least 2048 bits.
fn rsa_material(pair: &rsa::KeyPair) -> Result<Material, KeyError> {
    if pair.public_modulus_len() * 8 < super::keys::MIN_RSA_BITS {
        return Err(KeyError("RSA modulus below 2048 bits".to_owned()));
    }
    let der = pair
        .as_der()
        .map_err(|_| KeyError("RSA key cannot be encoded".to_owned()))?;
    let private = rsa::PrivateDecryptingKey::from_pkcs8(der.as_ref()).map_err(rsa_rejected)?;
    let fp = sha256(der.as_ref());
    Ok(Material::Rsa(
        OaepPrivateDecryptingKey::new(private)
            .map_err(|_| KeyError("RSA key rejected for OAEP".to_owned()))?,
        fp,
    ))
}

/// An EC private key in DER (PKCS#8 or SEC 1) on P-256, P-384 or P-521.
fn ec_material(der: &[u8]) -> Result<Material, KeyError> {
    use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
    for (curve, len) in [
        (&agreement::ECDH_P256, 32),
        (&agreement::ECDH_P384, 48),
        (&agreement::ECDH_P521, 66),
    ] {
        if let Ok(key) = agreement::PrivateKey::from_private_key_der(curve, der) {
            let d: EcPrivateKeyBin<'_> = key
                .as_be_bytes()
                .map_err(|_| KeyError("EC key cannot be encoded".to_owned()))?;
            let id = sha256(d.as_ref());
            return Ok(Material::Ec(curve, len, key, id));
        }
    }
    Err(KeyError(
        "not an RSA key or an EC key on P-256, P-384 or P-521".to_owned(),
    ))
}

impl std::fmt::Debug for DecryptionKey {
    // Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a private JWK cannot be a decryption key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

fn b64(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| KeyError(format!("missing member \"{name}\"")))?;
    B64URL
        .decode(text)
        .map_err(|_| KeyError(format!("member \"{name}\" is not base64url")))
}

impl DecryptionKey {
    /// A private JWK: RSA (with its CRT members), EC on P-256/384/521 (with
    /// `d`), or `oct`.
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<DecryptionKey, KeyError> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        if let Some(usage) = text("use")
            && usage != "enc"
        {
            return Err(KeyError(format!("\"use\" is \"{usage}\", not \"enc\"")));
        }
        let (alg, enc) = match text("alg") {
            None => (None, None),
            Some(name) => match (KeyAlg::from_name(name), Enc::from_name(name)) {
                (Some(alg), _) => (Some(alg), None),
                (None, Some(enc)) if text("kty") == Some("oct") => (Some(KeyAlg::Dir), Some(enc)),
                _ => {
                    return Err(KeyError(format!(
                        "\"alg\" {name:?} is not an algorithm jwtd decrypts with"
                    )));
                }
            },
        };
        let material = match text("kty") {
            Some("RSA") => {
                let strip = |b: Vec<u8>| {
                    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
                    b[first..].to_vec()
                };
                let c = KeyPairComponents {
                    public_key: PublicKeyComponents {
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
                rsa_material(&rsa::KeyPair::from_components(&c).map_err(rsa_rejected)?)?
            }
            Some("EC") => {
                let (alg, len) = match text("crv") {
                    Some("P-256") => (&agreement::ECDH_P256, 32),
                    Some("P-384") => (&agreement::ECDH_P384, 48),
                    Some("P-521") => (&agreement::ECDH_P521, 66),
                    other => return Err(KeyError(format!("unsupported curve {other:?}"))),
                };
                let d = b64(jwk, "d")?;
                if d.len() != len {
                    return Err(KeyError(format!(
                        "\"d\" is {} bytes; {len} needed",
                        d.len()
                    )));
                }
                let key = agreement::PrivateKey::from_private_key(alg, &d)
                    .map_err(|e| KeyError(format!("EC key rejected: {e}")))?;
                Material::Ec(alg, len, key, sha256(&d))
            }
            Some("oct") => {
                let k = b64(jwk, "k")?;
                if ![16, 24, 32, 48, 64].contains(&k.len()) {
                    return Err(KeyError(format!(
                        "an oct key of {} bytes fits no algorithm",
                        k.len()
                    )));
                }
                Material::Oct(k)
            }
            other => return Err(KeyError(format!("unsupported key type {other:?}"))),
        };
        Ok(DecryptionKey {
            kid: text("kid").map(str::to_owned),
            any_kid: false,
            fingerprint: material.fingerprint(),
            alg,
            enc,
            material,
        })
    }

    /// A PEM private key block: `PRIVATE KEY` (PKCS#8, RSA or EC),
    /// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC 1). It has no
    /// kid and no `alg`: it serves whatever its type allows, for any kid.
    ///
    /// # Errors
    ///
    /// Another label, or a key aws-lc-rs refuses (RSA below 2048 bits, a
    /// curve other than P-256/384/521).
    pub fn from_pem_block(block: &super::pem::Block) -> Result<DecryptionKey, KeyError> {
        let der = &block.der[..];
        let material = match block.label.as_str() {
            "RSA PRIVATE KEY" => rsa_material(&rsa::KeyPair::from_der(der).map_err(rsa_rejected)?)?,
            "PRIVATE KEY" => match rsa::KeyPair::from_pkcs8(der) {
                Ok(pair) => rsa_material(&pair)?,
                Err(_) => ec_material(der)?,
            },
            "EC PRIVATE KEY" => ec_material(der)?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError(
                    "an encrypted private key; jwtd reads unencrypted keys only".to_owned(),
                ));
            }
            other => return Err(KeyError(format!("a {other:?} block is not a private key"))),
        };
        Ok(DecryptionKey {
            kid: None,
            any_kid: true,
            fingerprint: material.fingerprint(),
            alg: None,
            enc: None,
            material,
        })
    }

    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's identity (a digest, never the key).
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// Whether a JWE naming `kid` may be tried with this key.
    fn answers_to(&self, kid: &str) -> bool {
        self.any_kid || self.kid.as_deref() == Some(kid)
    }

    /// Whether this key may unwrap with `alg` for `enc`.
    fn serves(&self, alg: KeyAlg, enc: Enc) -> bool {
        if self.alg.is_some_and(|own| own != alg) || self.enc.is_some_and(|own| own != enc) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Rsa(..), KeyAlg::RsaOaep | KeyAlg::RsaOaep256) => true,
            (Material::Ec(..), KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_)) => true,
            (Material::Oct(k), KeyAlg::AesKw(bits)) => k.len() * 8 == usize::from(bits),
            (Material::Oct(k), KeyAlg::Dir) => k.len() == enc.key_len(),
            _ => false,
        }
    }
}

/// Most keys a JWE without `kid` is tried with: beyond, it is refused
/// without trying any (each try may cost an RSA or ECDH operation).
pub const MAX_KIDLESS_TRIES: usize = 4;

/// A set of decryption keys (`jwe_keys`): a JWK set of private keys, each
/// parsed once; keys jwtd cannot use are skipped and named.
#[derive(Debug, Default)]
pub struct DecryptionKeys {
    keys: Vec<DecryptionKey>,
    skipped: Vec<(usize, Option<String>, KeyError)>,
}

/// Why a set of decryption keys cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWK set: {0}")]
    NotASet(String),
    /// No key of the set is usable (each skipped key is listed).
    #[error("no usable decryption key{}", list(.0))]
    NoUsableKey(Vec<String>),
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return " (the set is empty)".to_owned();
    }
    items.iter().map(|i| format!("\n  {i}")).collect()
}

impl DecryptionKeys {
    /// Parses a JWK set of private keys (strict JSON: a member written
    /// twice refuses the set).
    ///
    /// # Errors
    ///
    /// Not a set, or no usable key in it.
    pub fn from_jwks(json: &[u8]) -> Result<DecryptionKeys, KeysError> {
        let text =
            super::json::parse_jwk_set(json).map_err(|e| KeysError::NotASet(e.to_string()))?;
        let keys = text
            .value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeysError::NotASet("no \"keys\" array".to_owned()))?;
        let mut set = DecryptionKeys::default();
        for (index, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            let parsed = match text.duplicates.get(index) {
                Some(Some(name)) => Err(KeyError(format!("member \"{name}\" appears twice"))),
                _ => jwk
                    .as_object()
                    .ok_or_else(|| KeyError("not a JSON object".to_owned()))
                    .and_then(DecryptionKey::from_jwk),
            };
            match parsed {
                Ok(key) => set.keys.push(key),
                Err(e) => set.skipped.push((index, kid, e)),
            }
        }
        if set.keys.is_empty() {
            let skipped = set.skipped_messages();
            return Err(KeysError::NoUsableKey(skipped));
        }
        Ok(set)
    }

    /// The usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// One message per skipped key, naming its index and kid (never key
    /// material), for the caller to log as warnings.
    pub fn skipped_messages(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|(index, kid, e)| match kid {
                Some(kid) => format!("key {index} (kid {kid:?}) skipped: {e}"),
                None => format!("key {index} (no kid) skipped: {e}"),
            })
            .collect()
    }

    /// Decrypts `token` with the key its `kid` names, or, without `kid`,
    /// with each key that serves its `alg` and `enc` (at most
    /// [`MAX_KIDLESS_TRIES`] of them, else refused untried).
    ///
    /// # Errors
    ///
    /// As [`decrypt`]; no key for the `kid` is [`JweError::Algorithm`].
    pub fn decrypt(&self, token: &[u8]) -> Result<Decrypted, JweError> {
        decrypt_in(token, &[self]).map(|(_, d)| d)
    }

    /// Parses PEM private keys (see [`DecryptionKey::from_pem_block`]);
    /// blocks that are not usable private keys are skipped and named.
    ///
    /// # Errors
    ///
    /// Not PEM, or no usable key in it.
    pub fn from_pem(text: &str) -> Result<DecryptionKeys, KeysError> {
        let blocks = super::pem::parse(text).map_err(|e| KeysError::NotASet(e.to_string()))?;
        let mut set = DecryptionKeys::default();
        for (index, block) in blocks.iter().enumerate() {
            match DecryptionKey::from_pem_block(block) {
                Ok(key) => set.keys.push(key),
                Err(e) => set.skipped.push((index, None, e)),
            }
        }
        if set.keys.is_empty() {
            return Err(KeysError::NoUsableKey(set.skipped_messages()));
        }
        Ok(set)
    }

    /// Parses a `jwe_keys` file: PEM private keys when the text starts
    /// with a PEM armour line (after blank space), a JWK set otherwise
    /// (as `jwks_file` does for trusted keys).
    ///
    /// # Errors
    ///
    /// As [`DecryptionKeys::from_jwks`] and [`DecryptionKeys::from_pem`].
    pub fn from_file_contents(bytes: &[u8]) -> Result<DecryptionKeys, KeysError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN ") {
            let text = std::str::from_utf8(trimmed)
                .map_err(|_| KeysError::NotASet("PEM text is not UTF-8".to_owned()))?;
            DecryptionKeys::from_pem(text)
        } else {
            DecryptionKeys::from_jwks(bytes)
        }
    }

    /// Whether the set holds the key with this fingerprint.
    pub fn contains(&self, fingerprint: KeyFingerprint) -> bool {
        self.keys.iter().any(|k| k.fingerprint == fingerprint)
    }

    /// The keys of this set a JWE with this header may be tried with.
    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        fit: Option<(KeyAlg, Enc)>,
    ) -> impl Iterator<Item = &'a DecryptionKey> + 'a {
        self.keys.iter().filter(move |k| {
            kid.is_none_or(|kid| k.answers_to(kid))
                && fit.is_none_or(|(alg, enc)| k.serves(alg, enc))
        })
    }
}

/// Decrypts `token` with the keys of several sets (one per `jwe_keys`
/// file, for issuers with keys of their own): the key its `kid` names (a
/// kid no key carries: each kid-less PEM key that fits), or, without
/// `kid`, each key that serves its `alg` and `enc`; at most
/// [`MAX_KIDLESS_TRIES`] keys over all the sets, else refused untried.
/// Answers which set's key opened it.
///
/// # Errors
///
/// As [`decrypt`]; no key for the `kid` is [`JweError::Algorithm`].
pub fn decrypt_in(token: &[u8], sets: &[&DecryptionKeys]) -> Result<(usize, Decrypted), JweError> {
    let header = peek_header(token)?;
    let kid = header.get("kid").and_then(Value::as_str);
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(KeyAlg::from_name);
    let enc = header
        .get("enc")
        .and_then(Value::as_str)
        .and_then(Enc::from_name);
    let fit = alg.zip(enc);
    let mut candidates: Vec<(usize, &DecryptionKey)> = Vec::new();
    // A kid that some key carries names that key: kid-less (PEM) keys,
    // which answer any kid, are tried only when no key carries it.
    let named = kid.is_some_and(|kid| {
        sets.iter()
            .any(|set| set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    });
    for (n, set) in sets.iter().enumerate() {
        candidates.extend(
            set.candidates(kid, fit)
                .filter(|k| !named || !k.any_kid)
                .map(|k| (n, k)),
        );
        if candidates.len() > MAX_KIDLESS_TRIES {
            return Err(JweError::Algorithm);
        }
    }
    if fit.is_none() {
        // Let `decrypt` name what is wrong with the header.
        candidates.truncate(1);
    }
    let mut last = Err(JweError::Algorithm);
    for (n, key) in candidates {
        match decrypt(token, key) {
            Ok(d) => return Ok((n, d)),
            // Another key may fit; header facts (zip, crit, RSA1_5...)
            // are the same for every key.
            Err(e @ (JweError::Decrypt | JweError::Algorithm | JweError::EphemeralKey)) => {
                last = Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    last
}

/// The protected header of a compact JWE, parsed (no checks beyond JSON).
fn peek_header(token: &[u8]) -> Result<Map<String, Value>, JweError> {
    let first = token.split(|&b| b == b'.').next().unwrap_or_default();
    let bytes = B64URL.decode(first).map_err(|_| JweError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JweError::Malformed)
}

/// A decrypted JWE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Its `alg`.
    pub alg: KeyAlg,
    /// Its `enc`.
    pub enc: Enc,
    /// `cty` is `JWT` or `application/jwt` (any case): the plaintext is a
    /// nested token.
    pub nested: bool,
    /// The protected header's `typ`, if any (a claims-only JWE's type).
    pub typ: Option<String>,
    /// The `kid` of the key that decrypted it.
    pub kid: Option<String>,
    /// The identity of the key that decrypted it.
    pub key: KeyFingerprint,
}

/// Decrypts the compact JWE `token` with `key`.
///
/// # Errors
///
/// See [`JweError`]: header facts first, then one opaque
/// [`JweError::Decrypt`].
pub fn decrypt(token: &[u8], key: &DecryptionKey) -> Result<Decrypted, JweError> {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    let [header_b64, encrypted_key, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Malformed);
    };
    let decode = |part: &[u8]| B64URL.decode(part).map_err(|_| JweError::Malformed);
    let header_bytes = decode(header_b64)?;
    // Strict: duplicate members and depth, as every JOSE header.
    super::json::parse_header(&header_bytes, 8).map_err(|_| JweError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| JweError::Malformed)?;
    let text = |name: &str| header.get(name).and_then(Value::as_str);
    let alg_name = text("alg").ok_or(JweError::Malformed)?;
    let enc_name = text("enc").ok_or(JweError::Malformed)?;
    if alg_name == "RSA1_5" {
        return Err(JweError::Rsa15);
    }
    if alg_name.starts_with("PBES2") {
        return Err(JweError::Pbes2);
    }
    if header.contains_key("zip") {
        return Err(JweError::Zip);
    }
    if header.contains_key("crit") {
        return Err(JweError::Crit);
    }
    let alg = KeyAlg::from_name(alg_name).ok_or(JweError::Algorithm)?;
    let enc = Enc::from_name(enc_name).ok_or(JweError::Algorithm)?;
    if !key.serves(alg, enc) {
        return Err(JweError::Algorithm);
    }
    let (encrypted_key, iv, ciphertext, tag) = (
        decode(encrypted_key)?,
        decode(iv)?,
        decode(ciphertext)?,
        decode(tag)?,
    );
    let cek = content_key(key, alg, enc, &header, &encrypted_key)?;
    let plaintext =
        decrypt_content(enc, &cek, &iv, header_b64, &ciphertext, &tag).ok_or(JweError::Decrypt)?;
    Ok(Decrypted {
        plaintext,
        alg,
        enc,
        nested: text("cty").is_some_and(is_jwt_type),
        typ: text("typ").map(str::to_owned),
        kid: key.kid.clone(),
        key: key.fingerprint,
    })
}

/// `cty` names a JWT: `JWT`, or `application/jwt` (RFC 7515 4.1.10 lets
/// the `application/` prefix be omitted), in any case.
fn is_jwt_type(cty: &str) -> bool {
    let bare = match cty.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &cty[12..],
        _ => cty,
    };
    bare.eq_ignore_ascii_case("JWT")
}

/// The content encryption key: unwrapped, agreed or the key itself.
fn content_key(
    key: &DecryptionKey,
    alg: KeyAlg,
    enc: Enc,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
) -> Result<Vec<u8>, JweError> {
    match (&key.material, alg) {
        (Material::Rsa(private, _), KeyAlg::RsaOaep | KeyAlg::RsaOaep256) => {
            let oaep = if alg == KeyAlg::RsaOaep {
                &rsa::OAEP_SHA1_MGF1SHA1
            } else {
                &rsa::OAEP_SHA256_MGF1SHA256
            };
            let mut out = vec![0u8; private.min_output_size()];
            match private.decrypt(oaep, encrypted_key, &mut out, None) {
                Ok(cek) if cek.len() == enc.key_len() => Ok(cek.to_vec()),
                // RFC 7516 11.5: go on with a random key, so a bad
                // unwrap fails where a bad tag does.
                _ => Ok(random_key(enc)),
            }
        }
        (Material::Ec(curve, len, key, _), KeyAlg::EcdhEs | KeyAlg::EcdhEsKw(_)) => {
            // The token's own facts first, so a malformed one costs no
            // agreement.
            let apu = party_info(header, "apu")?;
            let apv = party_info(header, "apv")?;
            let (name, bits) = match alg {
                KeyAlg::EcdhEs if !encrypted_key.is_empty() => return Err(JweError::Malformed),
                KeyAlg::EcdhEs => (enc.as_str(), enc.key_len() * 8),
                KeyAlg::EcdhEsKw(bits) => {
                    wrapped_len(encrypted_key, enc)?;
                    (alg.as_str(), usize::from(bits))
                }
                _ => unreachable!("matched above"),
            };
            let agreed = ecdh(curve, *len, key, header)?;
            let derived = concat_kdf(&agreed, name, bits, &apu, &apv);
            match alg {
                KeyAlg::EcdhEs => Ok(derived),
                _ => aes_unwrap(&derived, encrypted_key).ok_or(JweError::Decrypt),
            }
        }
        (Material::Oct(k), KeyAlg::AesKw(_)) => {
            wrapped_len(encrypted_key, enc)?;
            aes_unwrap(k, encrypted_key).ok_or(JweError::Decrypt)
        }
        (Material::Oct(k), KeyAlg::Dir) => {
            if !encrypted_key.is_empty() {
                return Err(JweError::Malformed);
            }
            Ok(k.clone())
        }
        _ => Err(JweError::Algorithm),
    }
}

/// An AES-wrapped content key is the key plus one 8-byte block (RFC
/// 3394): anything else is refused before the unwrap, whose work grows
/// with the length (6 block operations per 8 bytes).
fn wrapped_len(encrypted_key: &[u8], enc: Enc) -> Result<(), JweError> {
    if encrypted_key.len() == enc.key_len() + 8 {
        Ok(())
    } else {
        Err(JweError::Decrypt)
    }
}

fn random_key(enc: Enc) -> Vec<u8> {
    let mut key = vec![0u8; enc.key_len()];
    // A failed fill leaves zeros: still a key no sender used.
    let _ = aws_lc_rs::rand::fill(&mut key);
    key
}

/// `apu` / `apv`, base64url-decoded (empty when absent).
fn party_info(header: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JweError> {
    match header.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => B64URL.decode(s).map_err(|_| JweError::Malformed),
        Some(_) => Err(JweError::Malformed),
    }
}

/// The ECDH shared secret with the header's `epk`, which must be a public
/// EC key on the recipient key's curve (aws-lc-rs refuses a point off the
/// curve: the invalid-curve attack).
fn ecdh(
    curve: &'static agreement::Algorithm,
    len: usize,
    private: &agreement::PrivateKey,
    header: &Map<String, Value>,
) -> Result<Vec<u8>, JweError> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or(JweError::EphemeralKey)?;
    let want = match len {
        32 => "P-256",
        48 => "P-384",
        _ => "P-521",
    };
    if epk.get("kty").and_then(Value::as_str) != Some("EC")
        || epk.get("crv").and_then(Value::as_str) != Some(want)
        || epk.contains_key("d")
    {
        return Err(JweError::EphemeralKey);
    }
    let coordinate = |name: &str| -> Result<Vec<u8>, JweError> {
        let bytes = epk
            .get(name)
            .and_then(Value::as_str)
            .and_then(|s| B64URL.decode(s).ok())
            .ok_or(JweError::EphemeralKey)?;
        if bytes.len() == len {
            Ok(bytes)
        } else {
            Err(JweError::EphemeralKey)
        }
    };
    let mut point = vec![0x04];
    point.extend(coordinate("x")?);
    point.extend(coordinate("y")?);
    let peer = agreement::UnparsedPublicKey::new(curve, point);
    agreement::agree(private, peer, JweError::EphemeralKey, |z| Ok(z.to_vec()))
}

/// The Concat KDF of RFC 7518 4.6.2 (NIST SP 800-56A), over SHA-256:
/// `bits` of key for algorithm `name`.
pub fn concat_kdf(z: &[u8], name: &str, bits: usize, apu: &[u8], apv: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bits / 8 + 32);
    let mut counter = 1u32;
    let with_len = |ctx: &mut digest::Context, data: &[u8]| {
        ctx.update(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        ctx.update(data);
    };
    while out.len() < bits / 8 {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        with_len(&mut ctx, name.as_bytes());
        with_len(&mut ctx, apu);
        with_len(&mut ctx, apv);
        ctx.update(&u32::try_from(bits).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(bits / 8);
    out
}

/// AES key unwrap (RFC 3394, default IV), for 128, 192 and 256-bit KEKs;
/// `None` when the integrity check fails or the input is malformed.
pub fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Option<Vec<u8>> {
    if ![16, 24, 32].contains(&kek.len()) {
        return None;
    }
    let algorithm = Enc::aes(u16::try_from(kek.len() * 8).ok()?);
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return None;
    }
    let n = wrapped.len() / 8 - 1;
    let mut a: [u8; 8] = wrapped[..8].try_into().ok()?;
    let mut r: Vec<[u8; 8]> = wrapped[8..]
        .chunks(8)
        .map(|c| c.try_into().unwrap_or([0; 8]))
        .collect();
    let key = DecryptingKey::ecb(UnboundCipherKey::new(algorithm, kek).ok()?).ok()?;
    for j in (0..6u64).rev() {
        for i in (1..=n).rev() {
            let t = (n as u64) * j + i as u64;
            let mut block = [0u8; 16];
            for (k, byte) in t.to_be_bytes().iter().enumerate() {
                block[k] = a[k] ^ byte;
            }
            block[8..].copy_from_slice(&r[i - 1]);
            key.decrypt(&mut block, cipher::DecryptionContext::None)
                .ok()?;
            a.copy_from_slice(&block[..8]);
            r[i - 1].copy_from_slice(&block[8..]);
        }
    }
    let iv = [0xA6u8; 8];
    if constant_time::verify_slices_are_equal(&a, &iv).is_err() {
        return None;
    }
    Some(r.concat())
}

/// Decrypts the content: AES-GCM, or AES-CBC after its HMAC tag (compared
/// in constant time) holds. The AAD is the protected header as sent.
fn decrypt_content(
    enc: Enc,
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Option<Vec<u8>> {
    if cek.len() != enc.key_len() {
        return None;
    }
    match enc {
        Enc::Gcm(bits) => {
            if tag.len() != 16 {
                return None;
            }
            let key = LessSafeKey::new(UnboundKey::new(Enc::gcm(bits), cek).ok()?);
            let nonce = Nonce::try_assume_unique_for_key(iv).ok()?;
            let mut in_out = Vec::with_capacity(ciphertext.len() + 16);
            in_out.extend_from_slice(ciphertext);
            in_out.extend_from_slice(tag);
            let plain = key
                .open_in_place(nonce, Aad::from(aad), &mut in_out)
                .ok()?
                .len();
            in_out.truncate(plain);
            Some(in_out)
        }
        Enc::CbcHs(bits) => {
            let (mac_key, enc_key) = cek.split_at(cek.len() / 2);
            if iv.len() != 16 {
                return None;
            }
            // Compared in constant time (a wrong length is simply unequal),
            // before anything is decrypted.
            let want = cbc_hs_tag(bits, mac_key, aad, iv, ciphertext);
            constant_time::verify_slices_are_equal(&want, tag).ok()?;
            let key = PaddedBlockDecryptingKey::cbc_pkcs7(
                UnboundCipherKey::new(Enc::aes(bits), enc_key).ok()?,
            )
            .ok()?;
            let mut in_out = ciphertext.to_vec();
            let iv: [u8; 16] = iv.try_into().ok()?;
            let plain = key
                .decrypt(
                    &mut in_out,
                    cipher::DecryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
                )
                .ok()?
                .len();
            in_out.truncate(plain);
            Some(in_out)
        }
    }
}

/// The authentication tag of AES-CBC with HMAC-SHA-2 (RFC 7518 5.2.2):
/// HMAC over AAD, IV, ciphertext and the AAD's length in bits, truncated
/// to half the hash. Shared by the decrypting side and the encrypting one
/// (`crate::seal`).
pub fn cbc_hs_tag(bits: u16, mac_key: &[u8], aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let (hash, tag_len) = match bits {
        128 => (hmac::HMAC_SHA256, 16),
        192 => (hmac::HMAC_SHA384, 24),
        _ => (hmac::HMAC_SHA512, 32),
    };
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hash, mac_key));
    ctx.update(aad);
    ctx.update(iv);
    ctx.update(ciphertext);
    ctx.update(&(aad.len() as u64 * 8).to_be_bytes());
    ctx.sign().as_ref()[..tag_len].to_vec()
}

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod cross_tests;
#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod tests;
