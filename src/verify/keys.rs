//! Trusted key sets: JWKS and PEM parsed once into ready-to-use verification
//! keys.
//!
//! A [`KeySet`] is built once per load (a file read, a fetch) and then
//! only read. Every usable key is turned into pre-parsed aws-lc-rs objects
//! (`ParsedPublicKey`, `hmac::Key`) *here*, so the request path never parses
//! key material. Each [`Key`] carries the exact list of algorithms it may
//! serve, derived from its type, curve, size and its own `alg`, so algorithm
//! binding is a property of the key, not a check someone can forget.
//!
//! Real key sets hold keys jwtd must not use (`use: enc`, unknown `kty`,
//! 1024-bit RSA, short EC coordinates, Ed448, Ed25519 points of small
//! order, a JWK with a member written twice). Each such key is skipped and
//! recorded as a [`SkippedKey`] naming its index and kid, for the caller to
//! log as a warning; only a set with *no* usable signing key is an error.
//!
//! Where the set comes from matters for one kind of key: an `oct` (HMAC)
//! secret is a signing key, so one published in a set fetched over the
//! network ([`KeySet::from_public_jwks`]: `jwks_url`, discovery) would let
//! anyone who can read that set mint tokens. There it is skipped; a local
//! key file ([`KeySet::from_jwks`]) may hold one.
//!
//! This module turns bytes into a validated `KeySet`; `crate::jwks::source`
//! (outside the core) watches where the bytes come from and publishes each
//! new validated set.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, VerificationAlgorithm};
use base64::Engine;
use serde_json::{Map, Value};

use super::pem;
use super::{Algorithm, Curve, Family};

/// Strict base64url (no padding, canonical trailing bits), as RFC 7515 2 and
/// RFC 7517 require for JWK members.
pub const B64URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Smallest RSA modulus accepted (NIST SP 800-131A; RFC 7518 3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus aws-lc-rs verifies with.
pub const MAX_RSA_BITS: usize = 8192;
/// Smallest HMAC secret accepted, in bytes (RFC 7518 3.2: at least the hash
/// size; HS384 and HS512 need 48 and 64).
pub const MIN_HMAC_BYTES: usize = 32;

/// A pre-parsed verification handle for one algorithm.
#[derive(Clone)]
enum Handle {
    Signature(ParsedPublicKey),
    /// Boxed: an `hmac::Key` holds both precomputed pad states (about 1.2 KB),
    /// which would make every handle of every key that large.
    Mac(Box<hmac::Key>),
}

/// A trusted key, ready to verify. Cheap to share: held in an `Arc`ed set.
#[derive(Clone)]
pub struct Key {
    /// The JWK `kid`, if any. A token naming a kid is verified only with keys
    /// of that kid.
    kid: Option<Arc<str>>,
    /// Set for keys loaded without a kid from PEM: they stand for whatever kid
    /// a token names, because PEM has no way to say one.
    any_kid: bool,
    /// What kind of key this is, for messages.
    kind: KeyKind,
    /// The algorithms this key may serve, each with its parsed key. Never
    /// empty; at most six entries (an RSA key without `alg`).
    handles: Vec<(Algorithm, Handle)>,
    /// Content identity: the same key loaded again has the same fingerprint.
    fingerprint: KeyFingerprint,
}

/// A key's identity across reloads: a digest of its kid, the algorithms it
/// serves and its key material. A cached result records the fingerprint of
/// the key that verified it and is served only while the current set still
/// holds that key, so a key that leaves the set stops vouching at the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint(pub [u8; 32]);

/// Key type and size, for messages and `jwtd check` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this many modulus bits.
    Rsa(usize),
    /// ECDSA on this curve.
    Ec(Curve),
    /// Ed25519.
    Ed25519,
    /// HMAC secret of this many bytes.
    Hmac(usize),
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa(bits) => write!(f, "RSA-{bits}"),
            KeyKind::Ec(c) => write!(f, "EC {}", c.as_str()),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::Hmac(len) => write!(f, "HMAC secret ({} bits)", len * 8),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algorithms", &self.algorithms().collect::<Vec<_>>())
            .finish()
    }
}

impl Key {
    fn new(kid: Option<Arc<str>>, any_kid: bool, parsed: Parsed) -> Key {
        let algs: Vec<u8> = parsed.handles.iter().map(|(a, _)| *a as u8).collect();
        let d = digest_of(&[
            kid.as_deref().unwrap_or("").as_bytes(),
            &[u8::from(kid.is_some()), u8::from(any_kid)],
            &algs,
            &parsed.material,
        ]);
        Key {
            kid,
            any_kid,
            kind: parsed.kind,
            handles: parsed.handles,
            fingerprint: KeyFingerprint(d),
        }
    }

    /// The key's content identity.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// The key's kid.
    pub fn kid(&self) -> Option<&Arc<str>> {
        self.kid.as_ref()
    }

    /// Key type and size.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.handles.iter().map(|(a, _)| *a)
    }

    /// Whether this key may verify `alg`.
    #[inline]
    pub fn serves(&self, alg: Algorithm) -> bool {
        self.handles.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `signature` over `message` with `alg`. False when the key does
    /// not serve `alg` or the signature is wrong; aws-lc-rs checks lengths and
    /// ranges (ECDSA r and s in [1, n-1], fixed-size encoding).
    #[inline]
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match self.handles.iter().find(|(a, _)| *a == alg) {
            Some((_, Handle::Signature(k))) => k.verify_sig(message, signature).is_ok(),
            Some((_, Handle::Mac(k))) => hmac::verify(k, message, signature).is_ok(),
            None => false,
        }
    }
}

/// A key that was left out of a set, and why. Not an error: logged as a
/// warning by whoever loads the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the source (`keys` array index or PEM block index).
    pub index: usize,
    /// The key's kid, when it had a readable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub problem: KeyProblem,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(
                f,
                "key {} (kid {:?}) skipped: {}",
                self.index, kid, self.problem
            ),
            None => write!(f, "key {} (no kid) skipped: {}", self.index, self.problem),
        }
    }
}

/// Why one key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A required member is absent.
    #[error("missing member \"{0}\"")]
    Missing(&'static str),
    /// A member has the wrong JSON type or is not base64url.
    #[error("member \"{0}\" is not a valid {1}")]
    Invalid(&'static str, &'static str),
    /// `kty` jwtd does not verify with.
    #[error("unsupported key type \"{0}\"")]
    UnsupportedKty(String),
    /// `crv` jwtd does not verify with (Ed448, X25519, secp256k1...).
    #[error("unsupported curve \"{0}\"")]
    UnsupportedCurve(String),
    /// `use` other than `sig`.
    #[error("\"use\" is \"{0}\", not \"sig\"")]
    NotForSignatures(String),
    /// `key_ops` present without `verify`.
    #[error("\"key_ops\" does not include \"verify\"")]
    NoVerifyOp,
    /// `alg` is not a JWS algorithm jwtd implements (or is `none`).
    #[error("\"alg\" \"{0}\" is not a supported signature algorithm")]
    UnsupportedAlg(String),
    /// `alg` does not fit the key's type or curve.
    #[error("\"alg\" {alg} does not fit a {kind} key")]
    AlgMismatch {
        /// The JWK's alg.
        alg: Algorithm,
        /// What the key is.
        kind: &'static str,
    },
    /// RSA modulus below 2048 bits (or above 8192).
    #[error("RSA modulus is {0} bits; 2048 to 8192 required")]
    RsaSize(usize),
    /// EC coordinate of the wrong length (RFC 7518 6.2.1.2: full length).
    #[error("coordinate \"{member}\" is {len} bytes; {curve} needs exactly {expected}")]
    CoordinateLength {
        /// `x` or `y`.
        member: &'static str,
        /// Its length.
        len: usize,
        /// The curve.
        curve: &'static str,
        /// The required length.
        expected: usize,
    },
    /// HMAC secret too short for any (or its own) algorithm.
    #[error("HMAC secret is {bits} bits; {alg} needs at least {needed}")]
    WeakSecret {
        /// Secret size in bits.
        bits: usize,
        /// The algorithm it was meant for.
        alg: Algorithm,
        /// Required bits.
        needed: usize,
    },
    /// aws-lc-rs refused the key material (point not on the curve, bad RSA
    /// exponent, malformed DER...).
    #[error("key material rejected: {0}")]
    Rejected(String),
    /// A PEM block that is not a public key.
    #[error("PEM block \"{0}\" is not a public key")]
    NotAPublicKey(String),
    /// An `oct` (HMAC) secret in a set fetched over the network: whoever
    /// can read the set could sign tokens with it.
    #[error(
        "symmetric (oct) key in a published key set: anyone who can read the set could mint tokens with it (put HMAC secrets in a jwks_file)"
    )]
    SecretInPublicSet,
    /// A member written twice in the JWK (at any depth): two parsers could
    /// read two different keys.
    #[error("member \"{0}\" appears twice")]
    DuplicateMember(String),
    /// An Ed25519 public key of small order (the identity or another
    /// torsion point): signatures under it can be forged without any secret.
    #[error("Ed25519 public key is a point of small order (order 1, 2, 4 or 8): a forgeable key")]
    SmallOrder,
}

/// Why a whole set cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Not JSON, or not an object.
    #[error("not a JWK set: {0}")]
    Json(String),
    /// No `keys` array.
    #[error("not a JWK set: no \"keys\" array")]
    NoKeysArray,
    /// Not PEM.
    #[error(transparent)]
    Pem(#[from] pem::PemError),
    /// Every key was skipped (or there were none).
    #[error("no usable signing key{}", list_skipped(.0))]
    NoUsableKey(Vec<SkippedKey>),
}

fn list_skipped(skipped: &[SkippedKey]) -> String {
    if skipped.is_empty() {
        return " (the set is empty)".to_owned();
    }
    let mut out = String::from(":");
    for s in skipped {
        out.push_str("\n  ");
        out.push_str(&s.to_string());
    }
    out
}

/// A validated set of trusted keys. Immutable once built.
#[derive(Default, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Index of `keys` by kid. A kid may name several keys (RFC 7517 4.5 only
    /// says SHOULD be distinct), e.g. the same kid for an RSA and an EC key.
    by_kid: HashMap<Arc<str>, Vec<usize>>,
    /// Keys that match any kid (PEM keys loaded without a kid).
    any_kid: Vec<usize>,
    /// Keys left out at load time.
    skipped: Vec<SkippedKey>,
    /// Fingerprints of `keys`, for [`KeySet::contains`].
    fingerprints: std::collections::HashSet<KeyFingerprint>,
    /// How many keys serve each algorithm (indexed by `Algorithm as
    /// usize`), for [`KeySet::kidless_candidates`].
    serving: [u32; Algorithm::ALL.len()],
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    /// Parses a JWK set (`{"keys":[...]}`, RFC 7517 5) from a trusted
    /// place (a local key file): `oct` secrets are usable.
    ///
    /// A member written twice inside one JWK skips that key
    /// ([`KeyProblem::DuplicateMember`]); a member written twice anywhere
    /// else (two `keys` arrays, say) refuses the whole set
    /// ([`KeySetError::Json`]), as a duplicate refuses a whole token.
    ///
    /// # Errors
    ///
    /// If the text is not a JWK set or no key in it is usable. Unusable keys
    /// in an otherwise good set are not errors; see [`KeySet::skipped`].
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, KeySetError> {
        KeySet::parse_jwks(json, true)
    }

    /// Parses a JWK set fetched over the network (`jwks_url`, OIDC
    /// discovery): as [`KeySet::from_jwks`], except that `oct` secrets are
    /// skipped ([`KeyProblem::SecretInPublicSet`]). A published set is
    /// readable by anyone; a secret in it is no secret.
    ///
    /// # Errors
    ///
    /// As [`KeySet::from_jwks`]; a set of only `oct` keys has no usable key.
    pub fn from_public_jwks(json: &[u8]) -> Result<KeySet, KeySetError> {
        KeySet::parse_jwks(json, false)
    }

    fn parse_jwks(json: &[u8], secrets: bool) -> Result<KeySet, KeySetError> {
        let text =
            super::json::parse_jwk_set(json).map_err(|e| KeySetError::Json(e.to_string()))?;
        let value = text.value;
        let Some(keys) = value.get("keys").and_then(Value::as_array) else {
            return Err(match value {
                Value::Object(_) => KeySetError::NoKeysArray,
                _ => KeySetError::Json("not a JSON object".to_owned()),
            });
        };
        let mut set = KeySet::default();
        for (index, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            let parsed = match text.duplicates.get(index) {
                Some(Some(name)) => Err(KeyProblem::DuplicateMember(name.clone())),
                _ => jwk
                    .as_object()
                    .ok_or(KeyProblem::NotAnObject)
                    .and_then(|jwk| parse_jwk(jwk, secrets)),
            };
            match parsed {
                Ok(key) => set.push(key),
                Err(problem) => set.skipped.push(SkippedKey {
                    index,
                    kid,
                    problem,
                }),
            }
        }
        set.finish()
    }

    /// Parses a key file: PEM public keys when the text starts with a PEM
    /// armour line (after blank space), a JWK set otherwise. This is what
    /// `jwks_file` sources load.
    ///
    /// # Errors
    ///
    /// As [`KeySet::from_jwks`] and [`KeySet::from_pem`].
    pub fn from_file_contents(bytes: &[u8]) -> Result<KeySet, KeySetError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN ") {
            let text = std::str::from_utf8(trimmed)
                .map_err(|_| KeySetError::Pem(pem::PemError::NotUtf8))?;
            KeySet::from_pem(text, None)
        } else {
            KeySet::from_jwks(bytes)
        }
    }

    /// Parses PEM public keys (`PUBLIC KEY`: SPKI for RSA, EC, Ed25519;
    /// `RSA PUBLIC KEY`: PKCS#1). PEM carries no kid: with `kid` given, every
    /// key gets it; without, the keys match whatever kid a token names.
    ///
    /// # Errors
    ///
    /// If the text is not PEM or holds no usable public key.
    pub fn from_pem(text: &str, kid: Option<&str>) -> Result<KeySet, KeySetError> {
        let mut set = KeySet::default();
        for (index, block) in pem::parse(text)?.into_iter().enumerate() {
            let parsed = match block.label.as_str() {
                "PUBLIC KEY" | "RSA PUBLIC KEY" => parse_public_der(&block.der),
                _ => Err(KeyProblem::NotAPublicKey(block.label)),
            };
            match parsed {
                Ok(parsed) => set.push(Key::new(kid.map(Arc::from), kid.is_none(), parsed)),
                Err(problem) => set.skipped.push(SkippedKey {
                    index,
                    kid: kid.map(str::to_owned),
                    problem,
                }),
            }
        }
        set.finish()
    }

    /// Adds every key of `other` (and its skipped list) to this set.
    pub fn extend(&mut self, other: KeySet) {
        self.skipped.extend(other.skipped);
        for key in other.keys {
            self.push(key);
        }
    }

    fn push(&mut self, key: Key) {
        let index = self.keys.len();
        if key.any_kid {
            self.any_kid.push(index);
        }
        if let Some(kid) = &key.kid {
            self.by_kid.entry(kid.clone()).or_default().push(index);
        }
        self.fingerprints.insert(key.fingerprint);
        for alg in key.algorithms() {
            self.serving[alg as usize] += 1;
        }
        self.keys.push(key);
    }

    /// How many keys a token without `kid` signed with `alg` would be tried
    /// against: every key serving `alg`. The core refuses such a token
    /// without any signature check when this exceeds
    /// [`super::Policy::max_kidless_keys`].
    #[inline]
    pub fn kidless_candidates(&self, alg: Algorithm) -> usize {
        self.serving[alg as usize] as usize
    }

    /// Whether the set holds the key with this fingerprint.
    #[inline]
    pub fn contains(&self, fingerprint: KeyFingerprint) -> bool {
        self.fingerprints.contains(&fingerprint)
    }

    fn finish(self) -> Result<KeySet, KeySetError> {
        if self.keys.is_empty() {
            return Err(KeySetError::NoUsableKey(self.skipped));
        }
        Ok(self)
    }

    /// The usable keys, in source order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Keys left out at load time, with reasons, for warnings.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The keys a token may be verified with: for a token naming `kid`, the
    /// keys with that kid (plus kid-less PEM keys); for a token without kid,
    /// every key. The caller still filters by algorithm.
    pub fn candidates<'a>(&'a self, kid: Option<&str>) -> impl Iterator<Item = &'a Key> + 'a {
        let (named, any): (&[usize], &[usize]) = match kid {
            Some(kid) => (
                self.by_kid.get(kid).map_or(&[][..], Vec::as_slice),
                &self.any_kid,
            ),
            None => (&[], &[]),
        };
        let all = kid
            .is_none()
            .then_some(self.keys.iter())
            .into_iter()
            .flatten();
        named.iter().chain(any).map(|&i| &self.keys[i]).chain(all)
    }
}

fn member<'a>(
    jwk: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, KeyProblem> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyProblem::Invalid(name, "string")),
    }
}

fn required<'a>(jwk: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, KeyProblem> {
    member(jwk, name)?.ok_or(KeyProblem::Missing(name))
}

fn bytes(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyProblem> {
    B64URL
        .decode(required(jwk, name)?)
        .map_err(|_| KeyProblem::Invalid(name, "base64url value"))
}

/// One JWK; `secrets` says whether an `oct` key may be used (a local file)
/// or not (a published set).
pub(super) fn parse_jwk(jwk: &Map<String, Value>, secrets: bool) -> Result<Key, KeyProblem> {
    let kid = member(jwk, "kid")?.map(Arc::from);
    if let Some(usage) = member(jwk, "use")?
        && usage != "sig"
    {
        return Err(KeyProblem::NotForSignatures(usage.to_owned()));
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops
            .as_array()
            .ok_or(KeyProblem::Invalid("key_ops", "array"))?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err(KeyProblem::NoVerifyOp);
        }
    }
    let alg = match member(jwk, "alg")? {
        None => None,
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| KeyProblem::UnsupportedAlg(name.to_owned()))?,
        ),
    };
    let parsed = match required(jwk, "kty")? {
        "RSA" => {
            check_family(alg, |f| f == Family::Rsa, "RSA")?;
            rsa_key(&bytes(jwk, "n")?, &bytes(jwk, "e")?, alg)?
        }
        "EC" => {
            let curve = match required(jwk, "crv")? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                "P-521" => Curve::P521,
                other => return Err(KeyProblem::UnsupportedCurve(other.to_owned())),
            };
            check_family(alg, |f| f == Family::Ec(curve), curve.as_str())?;
            let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
            for (member, c) in [("x", &x), ("y", &y)] {
                if c.len() != curve.coordinate_len() {
                    return Err(KeyProblem::CoordinateLength {
                        member,
                        len: c.len(),
                        curve: curve.as_str(),
                        expected: curve.coordinate_len(),
                    });
                }
            }
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_key(curve, &point)?
        }
        "OKP" => {
            match required(jwk, "crv")? {
                "Ed25519" => {}
                other => return Err(KeyProblem::UnsupportedCurve(other.to_owned())),
            }
            check_family(alg, |f| f == Family::Ed25519, "Ed25519")?;
            let x = bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err(KeyProblem::CoordinateLength {
                    member: "x",
                    len: x.len(),
                    curve: "Ed25519",
                    expected: 32,
                });
            }
            ed25519_key(&x)?
        }
        "oct" if !secrets => return Err(KeyProblem::SecretInPublicSet),
        "oct" => {
            check_family(alg, |f| f == Family::Hmac, "oct")?;
            hmac_key(&bytes(jwk, "k")?, alg)?
        }
        other => return Err(KeyProblem::UnsupportedKty(other.to_owned())),
    };
    Ok(Key::new(kid, false, parsed))
}

fn check_family(
    alg: Option<Algorithm>,
    fits: impl Fn(Family) -> bool,
    kind: &'static str,
) -> Result<(), KeyProblem> {
    match alg {
        Some(alg) if !fits(alg.family()) => Err(KeyProblem::AlgMismatch { alg, kind }),
        _ => Ok(()),
    }
}

/// A parsed key before it gets its kid.
struct Parsed {
    kind: KeyKind,
    handles: Vec<(Algorithm, Handle)>,
    /// SHA-256 of the key material (public key bytes, or the HMAC secret),
    /// for [`KeyFingerprint`].
    material: [u8; 32],
}

fn digest_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn rejected(e: impl fmt::Display) -> KeyProblem {
    KeyProblem::Rejected(e.to_string())
}

fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn rsa_key(n: &[u8], e: &[u8], alg: Option<Algorithm>) -> Result<Parsed, KeyProblem> {
    // JWK integers are unsigned big-endian without leading zeros (RFC 7518
    // 6.3.1.1), but some issuers pad; aws-lc-rs refuses leading zeros.
    let (n, e) = (strip_zeros(n), strip_zeros(e));
    let bits = match n.first() {
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyProblem::RsaSize(bits));
    }
    let components = PublicKeyComponents { n, e };
    let mut handles = Vec::new();
    for a in Algorithm::ALL {
        if alg.is_some_and(|only| only != a) {
            continue;
        }
        if let Some(params) = rsa_params(a) {
            let parsed = components.to_parsed_public_key(params).map_err(rejected)?;
            handles.push((a, Handle::Signature(parsed)));
        }
    }
    Ok(Parsed {
        kind: KeyKind::Rsa(bits),
        handles,
        material: digest_of(&[n, e]),
    })
}

fn ec_algorithm(curve: Curve) -> &'static dyn VerificationAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
        Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
    }
}

/// `key` is an uncompressed SEC1 point or an SPKI; aws-lc-rs checks the point
/// is on the curve.
fn ec_key(curve: Curve, key: &[u8]) -> Result<Parsed, KeyProblem> {
    let parsed = ParsedPublicKey::new(ec_algorithm(curve), key).map_err(rejected)?;
    Ok(Parsed {
        kind: KeyKind::Ec(curve),
        handles: vec![(curve.algorithm(), Handle::Signature(parsed))],
        material: digest_of(&[key]),
    })
}

/// `key` is the raw 32-byte point or an SPKI.
fn ed25519_key(key: &[u8]) -> Result<Parsed, KeyProblem> {
    let parsed = ParsedPublicKey::new(&signature::ED25519, key).map_err(rejected)?;
    // The SPKI of an Ed25519 key ends with the 32-byte point, whichever form
    // it was loaded from.
    let spki = parsed.as_der().map_err(rejected)?;
    let point = spki
        .as_ref()
        .last_chunk::<32>()
        .ok_or_else(|| KeyProblem::Rejected("Ed25519 key shorter than 32 bytes".to_owned()))?;
    if ed25519_small_order(point) {
        return Err(KeyProblem::SmallOrder);
    }
    Ok(Parsed {
        kind: KeyKind::Ed25519,
        handles: vec![(Algorithm::EdDSA, Handle::Signature(parsed))],
        material: digest_of(&[key]),
    })
}

/// The y coordinates (little-endian, sign bit clear) of every Ed25519 point
/// of small order, as libsodium's `has_small_order` blocklist lists them
/// (also listed in "Taming the many EdDSAs", Chalkias et al., 2020): with the sign
/// bit of x either way they cover the 8 torsion points (orders 1, 2, 4, 8)
/// and their non-canonical encodings (y = p and y = p + 1, and x = -0).
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 7] = {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; 32];
    one[0] = 1;
    [
        // y = 0: the two points of order 4.
        [0; 32],
        // y = 1: the identity (order 1).
        one,
        // The four points of order 8 (two y values, x either sign).
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        // y = p - 1 = -1: the point of order 2.
        p_minus_1,
        // y = p and y = p + 1: non-canonical 0 and 1.
        p,
        p_plus_1,
    ]
};

/// Whether an encoded Ed25519 point is of small order (order 1, 2, 4 or 8,
/// canonical or not). Such a key verifies signatures anyone can make.
fn ed25519_small_order(point: &[u8; 32]) -> bool {
    let mut y = *point;
    y[31] &= 0x7f;
    ED25519_SMALL_ORDER_Y.contains(&y)
}

fn hmac_key(secret: &[u8], alg: Option<Algorithm>) -> Result<Parsed, KeyProblem> {
    let sizes = [
        (Algorithm::HS256, hmac::HMAC_SHA256, 32),
        (Algorithm::HS384, hmac::HMAC_SHA384, 48),
        (Algorithm::HS512, hmac::HMAC_SHA512, 64),
    ];
    let mut handles = Vec::new();
    for (a, h, needed) in sizes {
        if alg.is_some_and(|only| only != a) {
            continue;
        }
        if secret.len() >= needed {
            handles.push((a, Handle::Mac(Box::new(hmac::Key::new(h, secret)))));
        } else if alg.is_some() || a == Algorithm::HS256 {
            // Too short for its own alg, or too short for any alg.
            return Err(KeyProblem::WeakSecret {
                bits: secret.len() * 8,
                alg: a,
                needed: needed * 8,
            });
        }
    }
    Ok(Parsed {
        kind: KeyKind::Hmac(secret.len()),
        handles,
        material: digest_of(&[secret]),
    })
}

/// A DER public key: SPKI (RSA, EC on any supported curve, Ed25519) or
/// PKCS#1 RSAPublicKey.
fn parse_public_der(der: &[u8]) -> Result<Parsed, KeyProblem> {
    if let Ok(rsa) = aws_lc_rs::rsa::PublicKey::from_der(der) {
        let c = PublicKeyComponents::<Vec<u8>>::from(&rsa);
        return rsa_key(&c.n, &c.e, None);
    }
    for curve in [Curve::P256, Curve::P384, Curve::P521] {
        if let Ok(parsed) = ec_key(curve, der) {
            return Ok(parsed);
        }
    }
    ed25519_key(der).map_err(|problem| match problem {
        KeyProblem::SmallOrder => problem,
        _ => {
            KeyProblem::Rejected("not an RSA, EC (P-256/384/521) or Ed25519 public key".to_owned())
        }
    })
}

#[cfg(test)]
mod tests;
