//! DPoP proofs (RFC 9449): one proof, the request it claims to be for, and
//! the time -> the proof key's thumbprint, or the [`Problem`] with it.
//!
//! A DPoP proof is a JWS whose key travels in its own header (`jwk`): the
//! one place where an embedded key is the point rather than an attack. So
//! it has its own entry, [`verify_proof`], and never goes near
//! [`super::verify_with`], which keeps refusing embedded keys for tokens.
//!
//! # What a proof must be (RFC 9449 4.3)
//!
//! 1. At most [`ProofPolicy::max_bytes`]; three strict base64url segments;
//!    a header that is a strict JSON object (no duplicate members at any
//!    depth, bounded depth) with `typ` `dpop+jwt`, no `crit`, and an `alg`
//!    in [`ProofPolicy::algorithms`], which is asymmetric only: `none`
//!    and HMAC are refused here whatever the configuration says.
//! 2. `jwk`: a public key (a private member such as `d` refuses the
//!    proof) whose RFC 7638 thumbprint is the one the token is bound to
//!    (when the caller says: [`Expect::jkt`]), parsed as strictly as a key
//!    of a trusted set (RSA of 2048 bits or more, points on their curve,
//!    no small-order Ed25519), that serves the proof's `alg`.
//! 3. Claims: `jti` (a non-empty string of at most [`MAX_JTI_BYTES`]),
//!    `htm`, `htu`, `iat`, and `ath`: proofs sent to a resource server
//!    always come with an access token. `htm` equals the request's method
//!    exactly; `htu` equals the request's URI once both are normalised
//!    ([`normalize_uri`]: RFC 3986 6.2.2 and 6.2.3, query and fragment
//!    dropped); `ath` is base64url(SHA-256(access token)); `iat` is no older
//!    than `max_age + leeway` and no later than `now + leeway`.
//! 4. The signature under the `jwk`, last: a proof for another key or
//!    another request costs no signature check (an RSA-8192 proof key
//!    costs about 0.5 ms to verify).
//!
//! The result is the key's RFC 7638 thumbprint ([`thumbprint`]), which the
//! caller compares with the token's `cnf.jkt`, and the `jti`/`iat` its
//! replay cache needs. Server nonces (`DPoP-Nonce`, RFC 9449 8) are not
//! implemented: a proof's `nonce` is ignored.
//!
//! Like the rest of the core: no I/O, no clock, no logging; the caller
//! passes `now` and keeps the replay cache.

use std::borrow::Cow;

use base64::Engine;
use serde_json::{Map, Value};

use super::json::{self, Field};
use super::keys::{self, B64URL};
use super::{AlgSet, Algorithm, Family, Reject, is_none_spelling};

/// Default [`ProofPolicy::max_age`]: 60 s.
pub const DEFAULT_MAX_AGE_SECS: u64 = 60;
/// Default [`ProofPolicy::max_bytes`]: 8 KiB (an RSA-4096 key and
/// signature fit with room to spare).
pub const DEFAULT_MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted, in bytes (it is kept in the replay cache).
pub const MAX_JTI_BYTES: usize = 256;
/// Deepest JSON nesting in a proof's header and payload (the `jwk` is one
/// level down).
const MAX_DEPTH: u32 = 4;

/// What a proof must satisfy, besides matching its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofPolicy {
    /// Algorithms a proof may use. Only asymmetric ones ever apply:
    /// [`ProofPolicy::new`] drops HMAC, and `none` is not an algorithm.
    pub algorithms: AlgSet,
    /// How old a proof's `iat` may be, in seconds (leeway added).
    pub max_age: u64,
    /// Clock skew allowed on `iat`, both ways, in seconds.
    pub leeway: u64,
    /// Longest proof accepted, in bytes.
    pub max_bytes: usize,
}

impl ProofPolicy {
    /// A policy for `algorithms` (HMAC ones dropped), with a window of
    /// `max_age` and `leeway` seconds.
    pub fn new(algorithms: AlgSet, max_age: u64, leeway: u64) -> ProofPolicy {
        ProofPolicy {
            algorithms: algorithms
                .iter()
                .filter(|a| a.family() != Family::Hmac)
                .collect(),
            max_age,
            leeway,
            max_bytes: DEFAULT_MAX_PROOF_BYTES,
        }
    }
}

impl Default for ProofPolicy {
    /// Every asymmetric algorithm, 60 s, 30 s of leeway.
    fn default() -> Self {
        ProofPolicy::new(
            AlgSet::all(),
            DEFAULT_MAX_AGE_SECS,
            super::DEFAULT_LEEWAY_SECS,
        )
    }
}

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The request's method (`GET`), compared exactly.
    pub method: &'a str,
    /// The request's absolute URI (`https://host/path`); a query or
    /// fragment is ignored.
    pub uri: &'a str,
    /// The access token the proof comes with (for `ath`).
    pub access_token: &'a [u8],
    /// The thumbprint the proof's key must have (the token's `cnf.jkt`),
    /// checked before the signature: a proof by another key costs no
    /// signature check. `None`: any key (the caller compares).
    pub jkt: Option<[u8; 32]>,
}

/// A proof that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key.
    pub jkt: [u8; 32],
    /// The proof's `jti`.
    pub jti: Box<str>,
    /// The proof's `iat` (Unix seconds, fractions rounded up).
    pub iat: i64,
    /// The proof's algorithm.
    pub alg: Algorithm,
}

/// What is wrong with a proof, precisely (for operators and tests); every
/// problem maps to one of two [`Reject`] reasons ([`Problem::reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Longer than [`ProofPolicy::max_bytes`].
    #[error("proof too large")]
    TooLarge,
    /// Not three strict base64url segments, or a header or payload that
    /// is not a strict JSON object.
    #[error("proof malformed")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("proof typ is not dpop+jwt")]
    Type,
    /// `alg: none`, HMAC, or an algorithm not allowed.
    #[error("proof alg not allowed")]
    Algorithm,
    /// A `crit` header.
    #[error("proof has crit")]
    Crit,
    /// No `jwk`, or one that is not a usable public key for `alg`.
    #[error("proof key missing or unusable")]
    Key,
    /// The `jwk` holds private key members.
    #[error("proof key has private members")]
    PrivateKey,
    /// The signature does not verify under the proof's key.
    #[error("proof signature does not verify")]
    Signature,
    /// `jti`, `htm`, `htu`, `iat` or `ath` missing or of the wrong type.
    #[error("proof claim missing or of the wrong type")]
    Claims,
    /// `iat` older than the window.
    #[error("proof iat too old")]
    Stale,
    /// `iat` later than now (beyond the leeway).
    #[error("proof iat in the future")]
    Future,
    /// `htm` is not the request's method.
    #[error("proof htm is not the request method")]
    Method,
    /// `htu` is not the request's URI.
    #[error("proof htu is not the request URI")]
    Uri,
    /// `ath` is not the hash of the access token.
    #[error("proof ath is not the access token hash")]
    AccessTokenHash,
    /// The proof's key is not the one the token is bound to.
    #[error("proof key is not the token's cnf.jkt")]
    Thumbprint,
}

impl Problem {
    /// The reject reason: a proof for another request is
    /// [`Reject::DpopMismatch`]; anything else about the proof itself,
    /// [`Reject::DpopInvalid`].
    pub fn reject(self) -> Reject {
        match self {
            Problem::Method | Problem::Uri | Problem::AccessTokenHash | Problem::Thumbprint => {
                Reject::DpopMismatch
            }
            _ => Reject::DpopInvalid,
        }
    }

    /// Stable snake_case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::TooLarge => "too_large",
            Problem::Malformed => "malformed",
            Problem::Type => "typ",
            Problem::Algorithm => "alg",
            Problem::Crit => "crit",
            Problem::Key => "jwk",
            Problem::PrivateKey => "private_jwk",
            Problem::Signature => "signature",
            Problem::Claims => "claims",
            Problem::Stale => "iat_stale",
            Problem::Future => "iat_future",
            Problem::Method => "htm",
            Problem::Uri => "htu",
            Problem::AccessTokenHash => "ath",
            Problem::Thumbprint => "jkt",
        }
    }
}

/// The JWK members that only a private key has (RFC 7518 6.2.2, 6.3.2,
/// 6.4.1; RFC 8037 2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The claims of a proof jwtd reads beyond `jti` and `iat`.
#[derive(serde::Deserialize)]
struct ProofClaims<'a> {
    #[serde(borrow)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htu: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ath: Option<Cow<'a, str>>,
}

/// Verifies one DPoP proof for the request `expect` at Unix time `now`.
///
/// Never panics, whatever the bytes.
///
/// # Errors
///
/// The first [`Problem`] found, in the order of the module doc.
pub fn verify_proof(
    proof: &[u8],
    policy: &ProofPolicy,
    expect: &Expect<'_>,
    now: i64,
) -> Result<Proof, Problem> {
    if proof.len() > policy.max_bytes {
        return Err(Problem::TooLarge);
    }
    let mut dots = memchr::memchr_iter(b'.', proof);
    let (Some(d1), Some(d2), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(Problem::Malformed);
    };
    let (header_b64, payload_b64, sig_b64) = (&proof[..d1], &proof[d1 + 1..d2], &proof[d2 + 1..]);
    let header_bytes = B64URL.decode(header_b64).map_err(|_| Problem::Malformed)?;
    let payload = B64URL.decode(payload_b64).map_err(|_| Problem::Malformed)?;
    let signature = B64URL.decode(sig_b64).map_err(|_| Problem::Malformed)?;

    // 1. Header: strict first (duplicates at any depth, depth), then read
    // as a tree for the jwk.
    let header = json::parse_header(&header_bytes, MAX_DEPTH).map_err(|_| Problem::Malformed)?;
    let alg_name = header.alg.as_deref().ok_or(Problem::Malformed)?;
    if is_none_spelling(alg_name) {
        return Err(Problem::Algorithm);
    }
    let alg = Algorithm::from_name(alg_name).ok_or(Problem::Algorithm)?;
    if alg.family() == Family::Hmac || !policy.algorithms.contains(alg) {
        return Err(Problem::Algorithm);
    }
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| super::typ_matches(t, "dpop+jwt"))
    {
        return Err(Problem::Type);
    }
    if header.crit || header.b64.is_some() {
        return Err(Problem::Crit);
    }
    let tree: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| Problem::Malformed)?;
    let Some(Value::Object(jwk)) = tree.get("jwk") else {
        return Err(Problem::Key);
    };

    // 2. The key: public, usable for `alg`, and (when the caller knows
    // it) the one the token is bound to. Parsed for `alg` alone: an RSA key
    // without its own `alg` would otherwise be prepared for six.
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Problem::PrivateKey);
    }
    let jkt = thumbprint(jwk).ok_or(Problem::Key)?;
    if expect.jkt.is_some_and(|want| want != jkt) {
        return Err(Problem::Thumbprint);
    }
    let key = if jwk.contains_key("alg") {
        keys::parse_jwk(jwk, false)
    } else {
        let mut one = jwk.clone();
        one.insert("alg".to_owned(), Value::String(alg.as_str().to_owned()));
        keys::parse_jwk(&one, false)
    }
    .map_err(|_| Problem::Key)?;
    if !key.serves(alg) {
        return Err(Problem::Key);
    }

    // 3. Claims, every one before the signature: a proof for another
    // request costs no signature check either.
    let p = json::parse_payload(&payload, MAX_DEPTH, &[]).map_err(|_| Problem::Malformed)?;
    let claims: ProofClaims<'_> = serde_json::from_slice(&payload).map_err(|_| Problem::Claims)?;
    let jti = match &p.jti {
        Field::Present(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_BYTES => jti,
        _ => return Err(Problem::Claims),
    };
    let iat = match p.iat {
        Field::Present(n) if n.in_range(super::MAX_NUMERIC_DATE) => n.ceil(),
        _ => return Err(Problem::Claims),
    };
    let (Some(htm), Some(htu), Some(ath)) = (&claims.htm, &claims.htu, &claims.ath) else {
        return Err(Problem::Claims);
    };
    let leeway = i64::try_from(policy.leeway).unwrap_or(i64::MAX);
    let max_age = i64::try_from(policy.max_age).unwrap_or(i64::MAX);
    if iat > now.saturating_add(leeway) {
        return Err(Problem::Future);
    }
    if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
        return Err(Problem::Stale);
    }
    if **htm != *expect.method {
        return Err(Problem::Method);
    }
    match (normalize_uri(htu), normalize_uri(expect.uri)) {
        (Some(got), Some(want)) if got == want => {}
        _ => return Err(Problem::Uri),
    }
    if ath.as_bytes() != access_token_hash(expect.access_token).as_bytes() {
        return Err(Problem::AccessTokenHash);
    }

    // 4. The signature, last.
    if !key.verify(alg, &proof[..d2], &signature) {
        return Err(Problem::Signature);
    }
    Ok(Proof {
        jkt,
        jti: Box::from(&**jti),
        iat,
        alg,
    })
}

/// base64url(SHA-256(token)): the `ath` of a proof for `token` (RFC 9449
/// 4.2).
pub fn access_token_hash(token: &[u8]) -> String {
    B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token))
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: the required members
/// of its `kty`, in lexicographic order, as compact JSON. `None` when a
/// required member is missing or not a string, or the `kty` is not one
/// jwtd knows.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<[u8; 32]> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        // RFC 7638 3.2 (a DPoP proof's `jwk` is never one: refused later).
        "oct" => &["k", "kty"],
        _ => return None,
    };
    let mut text = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            text.push(',');
        }
        // Names are plain ASCII; values are escaped as JSON strings.
        text.push('"');
        text.push_str(name);
        text.push_str("\":");
        text.push_str(&serde_json::to_string(value).ok()?);
    }
    text.push('}');
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().try_into().ok()
}

/// An absolute http(s) URI normalised for comparison (RFC 3986 6.2.2 and
/// 6.2.3, as RFC 9449 4.3 asks): query and fragment dropped, scheme and
/// host lower-cased, the default port dropped, an empty path made `/`,
/// percent-encodings upper-cased and unreserved ones decoded. `None` when
/// it is not an absolute `http` or `https` URI, or holds user info.
/// Dot segments are not resolved: a proof for `/a/../b` does not match
/// `/b`.
pub fn normalize_uri(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !is_authority(authority) {
        return None;
    }
    let mut host = authority.to_ascii_lowercase();
    if let Some(bare) = host.strip_suffix(default_port) {
        host = bare.to_owned();
    }
    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if path.is_empty() {
        out.push('/');
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits exactly (from_str_radix alone takes `+4`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&format!("{value:02X}"));
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    // Non-ASCII bytes were pushed one by one above as Latin-1 chars; a URI
    // is ASCII, so refuse rather than compare a mangled one.
    uri.is_ascii().then_some(out)
}

/// Whether `text` is a URI authority jwtd compares: `host[:port]`, the
/// host a DNS name or IPv4 address (letters, digits, `-`, `.`) or a
/// bracketed IPv6 address, the port digits. No user info, and nothing a
/// client could slip into a `Host` header to end the authority early
/// (`?`, `#`, `/`, `@`, `%`, blanks).
pub fn is_authority(text: &str) -> bool {
    let (host_ok, rest) = match text.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, rest)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), rest),
            None => return false,
        },
        None => {
            let end = text.find(':').unwrap_or(text.len());
            let host = &text[..end];
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            (ok, &text[end..])
        }
    };
    let port_ok = rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|digits| {
            !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
        });
    host_ok && port_ok
}

#[cfg(test)]
mod tests;
