//! The signing side: private keys, token minting, key generation.
//!
//! Used by `jwtd mint`, `jwtd keygen` and the tests; never by the daemon's
//! request path. It signs with aws-lc-rs directly rather than through
//! `jsonwebtoken` because jsonwebtoken has no ES512 and cannot read a private
//! JWK, and jwtd must be able to mint every algorithm it verifies.
//!
//! Private keys are read from a private JWK (RFC 7518 6: `d`, and for RSA the
//! CRT members; `k` for `oct`), or from PEM: `PRIVATE KEY` (PKCS#8),
//! `EC PRIVATE KEY` (SEC1), `RSA PRIVATE KEY` (PKCS#1).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaEncoding,
};
use aws_lc_rs::{hmac, rsa};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::verify::B64URL;
use crate::verify::pem;
use crate::verify::{Algorithm, Curve, Family};

/// Why a private key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignKeyError {
    /// Not a JSON object (or a set of exactly one key).
    #[error("not a private JWK: {0}")]
    Json(String),
    /// A member is missing or malformed.
    #[error("private JWK member \"{0}\" is missing or not base64url")]
    Member(&'static str),
    /// Unsupported `kty`/`crv`.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// PEM problems.
    #[error(transparent)]
    Pem(#[from] pem::PemError),
    /// aws-lc-rs refused the key (inconsistent components, weak RSA...).
    #[error("key rejected: {0}")]
    Rejected(String),
    /// The requested algorithm does not fit the key.
    #[error("algorithm {alg} does not fit this {kind} key")]
    AlgMismatch {
        /// Requested algorithm.
        alg: Algorithm,
        /// Key description.
        kind: String,
    },
    /// Signing failed (should not happen with a valid key).
    #[error("signing failed")]
    Sign,
}

enum Secret {
    Hmac(Vec<u8>),
    Rsa(rsa::KeyPair),
    Ec(Curve, EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key with the algorithm and kid it signs with.
pub struct SigningKey {
    secret: Secret,
    alg: Algorithm,
    kid: Option<String>,
}

fn rejected(e: impl std::fmt::Display) -> SignKeyError {
    SignKeyError::Rejected(e.to_string())
}

fn ec_signing(curve: Curve) -> &'static EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    }
}

fn rsa_encoding(alg: Algorithm) -> &'static dyn RsaEncoding {
    match alg {
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

impl Secret {
    fn describe(&self) -> String {
        match self {
            Secret::Hmac(k) => format!("HMAC ({} bits)", k.len() * 8),
            Secret::Rsa(k) => format!("RSA-{}", k.public_modulus_len() * 8),
            Secret::Ec(c, _) => format!("EC {}", c.as_str()),
            Secret::Ed25519(_) => "Ed25519".to_owned(),
        }
    }

    fn default_alg(&self) -> Algorithm {
        match self {
            Secret::Hmac(_) => Algorithm::HS256,
            Secret::Rsa(_) => Algorithm::RS256,
            Secret::Ec(c, _) => c.algorithm(),
            Secret::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    fn fits(&self, alg: Algorithm) -> bool {
        match (self, alg.family()) {
            (Secret::Hmac(_), Family::Hmac) | (Secret::Rsa(_), Family::Rsa) => true,
            (Secret::Ec(c, _), Family::Ec(want)) => *c == want,
            (Secret::Ed25519(_), Family::Ed25519) => true,
            _ => false,
        }
    }
}

fn b64(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, SignKeyError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(|s| B64URL.decode(s).ok())
        .ok_or(SignKeyError::Member(name))
}

impl SigningKey {
    /// Reads a private JWK, or a JWK set holding exactly one key.
    ///
    /// # Errors
    ///
    /// If the JSON is not a private key jwtd can sign with.
    pub fn from_jwk(json: &[u8]) -> Result<SigningKey, SignKeyError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| SignKeyError::Json(e.to_string()))?;
        let jwk = match value.get("keys").and_then(Value::as_array) {
            Some(keys) if keys.len() == 1 => &keys[0],
            Some(_) => {
                return Err(SignKeyError::Json(
                    "a key set must hold exactly one key".into(),
                ));
            }
            None => &value,
        };
        let jwk = jwk
            .as_object()
            .ok_or_else(|| SignKeyError::Json("not a JSON object".into()))?;
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let secret = match text("kty") {
            Some("oct") => Secret::Hmac(b64(jwk, "k")?),
            Some("RSA") => {
                let c = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: strip(&b64(jwk, "n")?).to_vec(),
                        e: strip(&b64(jwk, "e")?).to_vec(),
                    },
                    d: b64(jwk, "d")?,
                    p: b64(jwk, "p")?,
                    q: b64(jwk, "q")?,
                    dP: b64(jwk, "dp")?,
                    dQ: b64(jwk, "dq")?,
                    qInv: b64(jwk, "qi")?,
                };
                Secret::Rsa(rsa::KeyPair::from_components(&c).map_err(rejected)?)
            }
            Some("EC") => {
                let curve = match text("crv") {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    Some("P-521") => Curve::P521,
                    other => return Err(SignKeyError::Unsupported(format!("EC curve {other:?}"))),
                };
                let mut point = vec![0x04];
                point.extend(b64(jwk, "x")?);
                point.extend(b64(jwk, "y")?);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    ec_signing(curve),
                    &b64(jwk, "d")?,
                    &point,
                )
                .map_err(rejected)?;
                Secret::Ec(curve, pair)
            }
            Some("OKP") if text("crv") == Some("Ed25519") => Secret::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&b64(jwk, "d")?, &b64(jwk, "x")?)
                    .map_err(rejected)?,
            ),
            other => return Err(SignKeyError::Unsupported(format!("kty {other:?}"))),
        };
        let alg = match text("alg") {
            Some(name) => name
                .parse::<Algorithm>()
                .map_err(|e| SignKeyError::Unsupported(e.to_string()))?,
            None => secret.default_alg(),
        };
        SigningKey {
            alg: secret.default_alg(),
            secret,
            kid: text("kid").map(str::to_owned),
        }
        .with_alg(alg)
    }

    /// Reads the first private key of a PEM file.
    ///
    /// # Errors
    ///
    /// If no block is a private key jwtd can sign with.
    pub fn from_pem(text: &str) -> Result<SigningKey, SignKeyError> {
        let mut last = SignKeyError::Unsupported("no private key block".into());
        for block in pem::parse(text)? {
            let der = &block.der;
            let secret = match block.label.as_str() {
                "RSA PRIVATE KEY" => rsa::KeyPair::from_der(der)
                    .map(Secret::Rsa)
                    .map_err(rejected),
                "EC PRIVATE KEY" => ec_from(der, EcdsaKeyPair::from_private_key_der),
                "PRIVATE KEY" => rsa::KeyPair::from_pkcs8(der)
                    .map(Secret::Rsa)
                    .or_else(|_| ec_from(der, EcdsaKeyPair::from_pkcs8))
                    .or_else(|_| {
                        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                            .map(Secret::Ed25519)
                            .map_err(rejected)
                    }),
                other => Err(SignKeyError::Unsupported(format!("PEM block {other:?}"))),
            };
            match secret {
                Ok(secret) => {
                    let (kid, alg) = explanatory(text);
                    let key = SigningKey {
                        alg: secret.default_alg(),
                        secret,
                        kid,
                    };
                    return match alg {
                        Some(alg) => key.with_alg(alg),
                        None => Ok(key),
                    };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Reads a key file: JSON (private JWK) if it starts with `{`, else PEM.
    ///
    /// # Errors
    ///
    /// As [`SigningKey::from_jwk`] and [`SigningKey::from_pem`].
    pub fn from_file_contents(text: &str) -> Result<SigningKey, SignKeyError> {
        if text.trim_start().starts_with('{') {
            SigningKey::from_jwk(text.as_bytes())
        } else {
            SigningKey::from_pem(text)
        }
    }

    /// Generates a fresh key for `alg` (RSA: 2048 bits; HMAC: hash-sized).
    ///
    /// # Errors
    ///
    /// Only if the system random source fails.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, SignKeyError> {
        let secret = match alg.family() {
            Family::Hmac => {
                let len = match alg {
                    Algorithm::HS384 => 48,
                    Algorithm::HS512 => 64,
                    _ => 32,
                };
                let mut k = vec![0u8; len];
                aws_lc_rs::rand::fill(&mut k).map_err(|_| SignKeyError::Sign)?;
                Secret::Hmac(k)
            }
            Family::Rsa => Secret::Rsa(
                rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(|_| SignKeyError::Sign)?,
            ),
            Family::Ec(c) => Secret::Ec(
                c,
                EcdsaKeyPair::generate(ec_signing(c)).map_err(|_| SignKeyError::Sign)?,
            ),
            Family::Ed25519 => {
                Secret::Ed25519(Ed25519KeyPair::generate().map_err(|_| SignKeyError::Sign)?)
            }
        };
        Ok(SigningKey {
            secret,
            alg,
            kid: None,
        })
    }

    /// Signs with `alg` instead of the key's default.
    ///
    /// # Errors
    ///
    /// If `alg` does not fit the key type or curve.
    pub fn with_alg(mut self, alg: Algorithm) -> Result<SigningKey, SignKeyError> {
        if !self.secret.fits(alg) {
            return Err(SignKeyError::AlgMismatch {
                alg,
                kind: self.secret.describe(),
            });
        }
        self.alg = alg;
        Ok(self)
    }

    /// Sets the kid written into headers and the public JWK.
    pub fn with_kid(mut self, kid: Option<String>) -> SigningKey {
        self.kid = kid;
        self
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The kid, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Signs `input` (the JWS signing input) and returns the raw signature.
    ///
    /// # Errors
    ///
    /// Only on an internal crypto failure.
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignKeyError> {
        let rng = SystemRandom::new();
        Ok(match &self.secret {
            Secret::Hmac(k) => {
                let h = match self.alg {
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    Algorithm::HS512 => hmac::HMAC_SHA512,
                    _ => hmac::HMAC_SHA256,
                };
                hmac::sign(&hmac::Key::new(h, k), input).as_ref().to_vec()
            }
            Secret::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(rsa_encoding(self.alg), &rng, input, &mut sig)
                    .map_err(|_| SignKeyError::Sign)?;
                sig
            }
            Secret::Ec(_, k) => k
                .sign(&rng, input)
                .map_err(|_| SignKeyError::Sign)?
                .as_ref()
                .to_vec(),
            Secret::Ed25519(k) => k.sign(input).as_ref().to_vec(),
        })
    }

    /// Builds a compact JWS from raw header and payload bytes, exactly as
    /// given (tests use this to craft hostile tokens with valid signatures).
    ///
    /// # Errors
    ///
    /// Only on an internal crypto failure.
    pub fn sign_parts(&self, header: &[u8], payload: &[u8]) -> Result<String, SignKeyError> {
        let mut token = B64URL.encode(header);
        token.push('.');
        token.push_str(&B64URL.encode(payload));
        let sig = self.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&B64URL.encode(sig));
        Ok(token)
    }

    /// Mints a token: header `{"alg","typ":"JWT","kid"}` plus `extra_header`
    /// members (which may override), and `claims` as the payload.
    ///
    /// # Errors
    ///
    /// Only on an internal crypto failure.
    pub fn mint(
        &self,
        claims: &Value,
        extra_header: &Map<String, Value>,
    ) -> Result<String, SignKeyError> {
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.as_str().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        for (k, v) in extra_header {
            header.insert(k.clone(), v.clone());
        }
        let header = serde_json::to_vec(&Value::Object(header)).map_err(|_| SignKeyError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| SignKeyError::Sign)?;
        self.sign_parts(&header, &payload)
    }

    /// A DPoP proof (RFC 9449 4.2) signed with this key: header `typ`
    /// `dpop+jwt`, `alg`, and the public `jwk` (its key members only);
    /// claims `jti`, `htm`, `htu`, `iat`, and `ath` when `access_token` is
    /// given. `extra` members are added to the claims (and may override).
    ///
    /// # Errors
    ///
    /// Only on an internal crypto failure.
    pub fn dpop_proof(
        &self,
        method: &str,
        uri: &str,
        access_token: Option<&[u8]>,
        iat: i64,
        jti: &str,
        extra: &Map<String, Value>,
    ) -> Result<String, SignKeyError> {
        let mut jwk = self.public_jwk();
        if let Some(map) = jwk.as_object_mut() {
            map.retain(|k, _| matches!(k.as_str(), "kty" | "crv" | "x" | "y" | "n" | "e"));
        }
        let header = json!({"typ": "dpop+jwt", "alg": self.alg.as_str(), "jwk": jwk});
        let mut claims = json!({"jti": jti, "htm": method, "htu": uri, "iat": iat});
        if let Some(token) = access_token {
            claims["ath"] = crate::verify::dpop::access_token_hash(token).into();
        }
        for (k, v) in extra {
            claims[k.as_str()] = v.clone();
        }
        let header = serde_json::to_vec(&header).map_err(|_| SignKeyError::Sign)?;
        let payload = serde_json::to_vec(&claims).map_err(|_| SignKeyError::Sign)?;
        self.sign_parts(&header, &payload)
    }

    /// The public JWK (for HMAC, the secret itself: there is no public half),
    /// with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.secret {
            Secret::Hmac(k) => json!({"kty": "oct", "k": B64URL.encode(k)}),
            Secret::Rsa(k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "n": B64URL.encode(&c.n), "e": B64URL.encode(&c.e)})
            }
            Secret::Ec(curve, k) => {
                let point = k.public_key().as_ref();
                let n = curve.coordinate_len();
                json!({
                    "kty": "EC",
                    "crv": curve.as_str(),
                    "x": B64URL.encode(&point[1..1 + n]),
                    "y": B64URL.encode(&point[1 + n..]),
                })
            }
            Secret::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(k.public_key().as_ref())})
            }
        };
        if let Some(kid) = &self.kid {
            jwk["kid"] = kid.clone().into();
        }
        jwk["alg"] = self.alg.as_str().into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key:
    /// a stable, collision-resistant default kid.
    pub fn thumbprint(&self) -> String {
        // `public_jwk` always has the members RFC 7638 requires.
        self.public_jwk()
            .as_object()
            .and_then(crate::verify::dpop::thumbprint)
            .map(|digest| B64URL.encode(digest))
            .unwrap_or_default()
    }

    /// The private key as a file `jwtd mint --key` reads back: PKCS#8 PEM for
    /// asymmetric keys, a private JWK for HMAC secrets.
    ///
    /// # Errors
    ///
    /// Only on an internal encoding failure.
    pub fn private_file(&self) -> Result<String, SignKeyError> {
        let der = match &self.secret {
            Secret::Hmac(_) => {
                let jwk = self.public_jwk();
                return serde_json::to_string_pretty(&jwk)
                    .map(|s| s + "\n")
                    .map_err(|_| SignKeyError::Sign);
            }
            Secret::Rsa(k) => k
                .as_der()
                .map_err(|_| SignKeyError::Sign)?
                .as_ref()
                .to_vec(),
            Secret::Ec(_, k) => k
                .to_pkcs8v1()
                .map_err(|_| SignKeyError::Sign)?
                .as_ref()
                .to_vec(),
            Secret::Ed25519(k) => k
                .to_pkcs8v1()
                .map_err(|_| SignKeyError::Sign)?
                .as_ref()
                .to_vec(),
        };
        // RFC 7468 5.2 lets explanatory text precede a block, and PEM readers
        // ignore it; jwtd keeps the kid and alg there so `mint` can read
        // them back (PKCS#8 has no place for either).
        let mut out = String::new();
        if let Some(kid) = &self.kid {
            out.push_str(&format!("kid: {kid}\n"));
        }
        out.push_str(&format!("alg: {}\n", self.alg));
        out.push_str(&pem::encode("PRIVATE KEY", &der));
        Ok(out)
    }
}

/// `kid:` and `alg:` lines before the first PEM block (written by
/// [`SigningKey::private_file`]).
fn explanatory(text: &str) -> (Option<String>, Option<Algorithm>) {
    let (mut kid, mut alg) = (None, None);
    for line in text.lines().take_while(|l| !l.starts_with("-----BEGIN")) {
        if let Some(k) = line.strip_prefix("kid:") {
            kid = Some(k.trim().to_owned());
        } else if let Some(a) = line.strip_prefix("alg:") {
            alg = a.trim().parse().ok();
        }
    }
    (kid, alg)
}

fn strip(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn ec_from(
    der: &[u8],
    parse: fn(
        &'static EcdsaSigningAlgorithm,
        &[u8],
    ) -> Result<EcdsaKeyPair, aws_lc_rs::error::KeyRejected>,
) -> Result<Secret, SignKeyError> {
    let mut last = SignKeyError::Unsupported("not an EC key".into());
    for curve in [Curve::P256, Curve::P384, Curve::P521] {
        match parse(ec_signing(curve), der) {
            Ok(pair) => return Ok(Secret::Ec(curve, pair)),
            Err(e) => last = rejected(e),
        }
    }
    Err(last)
}
