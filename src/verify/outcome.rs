//! What verification says about a token: [`Reject`] reasons, [`Anomalies`]
//! seen in the header, and the [`Verified`] result.
//!
//! These types are the contract between the core and everything above it
//! (CLI, socket fronts, metrics). Rejects are small `Copy` values with stable
//! names: no strings are formatted and nothing is boxed on the request path.
//! The *names* (`as_str`) are part of jwtd's interface: metric labels, logs
//! and `jwtd check` output use them, so they never change once released.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::alg::Algorithm;

/// Why a token was refused. Each reason says what is wrong with the *token*;
/// "could not decide" conditions (no keys loaded yet, revocation store down)
/// are not rejects and live above the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Longer than the configured maximum token size.
    TooLarge,
    /// Not three dot-separated segments, or an empty header (a JWE has its
    /// own reason; an empty payload is [`Reject::Payload`], an empty
    /// signature [`Reject::BadSignature`]).
    Malformed,
    /// A segment is not strict base64url (padding, `+`/`/`, whitespace,
    /// non-canonical trailing bits, impossible length).
    Base64,
    /// The header is not a JSON object, has duplicate members, is nested too
    /// deeply, or a header parameter has the wrong type.
    Header,
    /// The payload is not a UTF-8 JSON object, has duplicate members, or is
    /// nested too deeply.
    Payload,
    /// Five segments: a JWE this daemon does not accept (no `jwe_keys`,
    /// or a header it refuses: `RSA1_5`, `PBES2`, `zip`, `crit`, an `alg`
    /// or `enc` no key serves, claims not inside a signed token).
    Jwe,
    /// `b64: false` (RFC 7797): JWTs never use unencoded payloads.
    Unencoded,
    /// A `crit` header: jwtd implements no JWS extension, so every critical
    /// extension is unknown; a malformed `crit` is refused the same way.
    Crit,
    /// `alg: none` in any spelling.
    AlgNone,
    /// `alg` is unknown or not in the configured allow-list.
    AlgorithmNotAllowed,
    /// The key the token names (by `kid`) cannot serve the token's `alg`:
    /// another key type, another curve, or the JWK's own `alg` differs. This is
    /// what an algorithm-confusion attack looks like.
    KeyAlgorithmMismatch,
    /// No trusted key has the token's `kid`, or, without `kid`, no trusted key
    /// fits `alg`.
    UnknownKey,
    /// The signature does not verify under any candidate key.
    BadSignature,
    /// `now >= exp + leeway`.
    Expired,
    /// `now + leeway < nbf`.
    NotYetValid,
    /// `iat` is later than `now + leeway`.
    IssuedInFuture,
    /// `exp - iat` exceeds the configured maximum lifetime (or `iat` missing
    /// when a maximum lifetime is configured).
    LifetimeTooLong,
    /// `iss` differs from the configured issuer.
    Issuer,
    /// No `aud` entry matches a configured audience.
    Audience,
    /// A required claim is absent.
    MissingClaim,
    /// A registered claim has the wrong JSON type (e.g. `exp` as a string,
    /// `iss` as `true`, `aud` holding a number).
    ClaimType,
    /// The header `typ` differs from the required one.
    Type,
    /// Several issuers are configured and the token's `iss` names none of
    /// them (or is absent): no key set is tried.
    UnknownIssuer,
    /// Valid, but revoked: its `jti` is on the revocation list, or its
    /// subject's tokens issued at or before a time are. The core never
    /// returns it (it knows no revocation store); the verifier's revocation
    /// stage does, and it is a reason here so that every front reports it
    /// like any other.
    Revoked,
    /// A DPoP proof (RFC 9449) is missing where one is needed, or is not a
    /// valid proof: malformed, wrong `typ`, an `alg` not allowed (`none`
    /// and HMAC never are), no public `jwk` (or one with private members),
    /// a signature that does not verify, `iat` outside the window. Like
    /// `Revoked`, the binding stage (`crate::bind`) returns the six reasons
    /// from here on; the core never does.
    DpopInvalid,
    /// A DPoP proof whose `jti` was already seen within the window.
    DpopReplay,
    /// A valid DPoP proof for another request or another key: `htm`,
    /// `htu` or `ath` do not match, or its key's thumbprint is not the
    /// token's `cnf.jkt` (or the token is not DPoP-bound at all).
    DpopMismatch,
    /// A DPoP-bound token (`cnf.jkt`) presented without DPoP, as a bearer
    /// token; or an unbound token where the issuer requires DPoP.
    BearerDowngrade,
    /// A certificate-bound token (`cnf.x5t#S256`, RFC 8705) without the
    /// client certificate it names; or a `cnf` jwtd cannot check.
    CnfMismatch,
    /// A configured device or address binding (`[[bindings]]`) not met.
    BindingMismatch,
    /// A JWE that does not decrypt with the configured keys: a wrong key,
    /// or anything in it tampered. Deliberately one reason for every
    /// decryption failure (no oracle); the verifier returns it, the core
    /// never does.
    JweDecrypt,
}

impl Reject {
    /// Every reason, for pre-registering metric handles.
    pub const ALL: [Reject; 31] = [
        Reject::TooLarge,
        Reject::Malformed,
        Reject::Base64,
        Reject::Header,
        Reject::Payload,
        Reject::Jwe,
        Reject::Unencoded,
        Reject::Crit,
        Reject::AlgNone,
        Reject::AlgorithmNotAllowed,
        Reject::KeyAlgorithmMismatch,
        Reject::UnknownKey,
        Reject::BadSignature,
        Reject::Expired,
        Reject::NotYetValid,
        Reject::IssuedInFuture,
        Reject::LifetimeTooLong,
        Reject::Issuer,
        Reject::Audience,
        Reject::MissingClaim,
        Reject::ClaimType,
        Reject::Type,
        Reject::UnknownIssuer,
        Reject::Revoked,
        Reject::DpopInvalid,
        Reject::DpopReplay,
        Reject::DpopMismatch,
        Reject::BearerDowngrade,
        Reject::CnfMismatch,
        Reject::BindingMismatch,
        Reject::JweDecrypt,
    ];

    /// Stable snake_case name for metric labels, logs and CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::TooLarge => "too_large",
            Reject::Malformed => "malformed",
            Reject::Base64 => "bad_base64",
            Reject::Header => "bad_header",
            Reject::Payload => "bad_payload",
            Reject::Jwe => "jwe",
            Reject::Unencoded => "unencoded_payload",
            Reject::Crit => "unsupported_crit",
            Reject::AlgNone => "alg_none",
            Reject::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reject::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            Reject::UnknownKey => "unknown_key",
            Reject::BadSignature => "bad_signature",
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::IssuedInFuture => "issued_in_future",
            Reject::LifetimeTooLong => "lifetime_too_long",
            Reject::Issuer => "issuer",
            Reject::Audience => "audience",
            Reject::MissingClaim => "missing_claim",
            Reject::ClaimType => "claim_type",
            Reject::Type => "typ",
            Reject::UnknownIssuer => "unknown_issuer",
            Reject::Revoked => "revoked",
            Reject::DpopInvalid => "dpop_invalid",
            Reject::DpopReplay => "dpop_replay",
            Reject::DpopMismatch => "dpop_mismatch",
            Reject::BearerDowngrade => "bearer_downgrade",
            Reject::CnfMismatch => "cnf_mismatch",
            Reject::BindingMismatch => "binding_mismatch",
            Reject::JweDecrypt => "jwe_decrypt",
        }
    }

    /// Whether the reason suggests an attack rather than an honest mistake
    /// (expired or misaddressed tokens are routine; `alg: none` is not).
    pub fn is_attack(self) -> bool {
        matches!(
            self,
            Reject::AlgNone
                | Reject::KeyAlgorithmMismatch
                | Reject::BadSignature
                | Reject::UnknownKey
                | Reject::Unencoded
                | Reject::DpopReplay
                | Reject::DpopMismatch
                | Reject::BearerDowngrade
                | Reject::CnfMismatch
                | Reject::BindingMismatch
                | Reject::JweDecrypt
        )
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header parameters that carry or point to keys. jwtd never uses them to
/// find a key (keys come only from the trusted set), but their presence is an
/// anomaly worth counting: it is how embedded-key and `jku` attacks start.
/// A bit set, `Copy`, reported with both valid and rejected tokens.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Anomalies(u8);

impl Anomalies {
    /// No anomaly.
    pub const NONE: Anomalies = Anomalies(0);
    /// Header `jwk`: an embedded public key (CVE-2018-0114 style).
    pub const EMBEDDED_JWK: Anomalies = Anomalies(1);
    /// Header `jku`: a URL to fetch keys from.
    pub const JKU: Anomalies = Anomalies(2);
    /// Header `x5u`: a URL to fetch a certificate from.
    pub const X5U: Anomalies = Anomalies(4);
    /// Header `x5c`: an embedded certificate chain.
    pub const X5C: Anomalies = Anomalies(8);

    const NAMES: [(Anomalies, &'static str); 4] = [
        (Anomalies::EMBEDDED_JWK, "embedded_jwk"),
        (Anomalies::JKU, "jku"),
        (Anomalies::X5U, "x5u"),
        (Anomalies::X5C, "x5c"),
    ];

    /// Every anomaly, one flag each.
    pub const ALL: [Anomalies; 4] = [
        Anomalies::EMBEDDED_JWK,
        Anomalies::JKU,
        Anomalies::X5U,
        Anomalies::X5C,
    ];

    /// Whether any anomaly is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every anomaly in `other` is set.
    pub fn contains(self, other: Anomalies) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the anomalies of `other`.
    pub fn insert(&mut self, other: Anomalies) {
        self.0 |= other.0;
    }

    /// Stable names of the anomalies set, for labels and output.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Anomalies::NAMES
            .into_iter()
            .filter(move |(a, _)| self.contains(*a))
            .map(|(_, n)| n)
    }
}

impl fmt::Debug for Anomalies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// A refused token: the reason plus the header anomalies seen before the
/// decision (empty when the header could not be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Why the token was refused.
    pub reason: Reject,
    /// Key-carrying header parameters that were present (and ignored).
    pub anomalies: Anomalies,
}

impl From<Reject> for Rejection {
    fn from(reason: Reject) -> Self {
        Rejection {
            reason,
            anomalies: Anomalies::NONE,
        }
    }
}

/// The registered claims jwtd reads, plus the whole payload as received.
///
/// Only what later stages need is parsed out (`sub` for proxy headers, `jti`
/// for revocation, `exp` for cache lifetime); everything else stays in
/// [`Claims::raw`], which is the decoded payload: a JSON object already
/// checked for syntax, duplicates and depth. Keeping the raw bytes instead of
/// a parsed tree keeps a cached result small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss`, if present.
    pub iss: Option<Box<str>>,
    /// `sub`, if present.
    pub sub: Option<Box<str>>,
    /// `jti`, if present.
    pub jti: Option<Box<str>>,
    /// `exp` in Unix seconds (fractions rounded down), if present.
    pub exp: Option<i64>,
    /// `nbf` in Unix seconds (fractions rounded up), if present.
    pub nbf: Option<i64>,
    /// `iat` in Unix seconds (fractions rounded up), if present.
    pub iat: Option<i64>,
    /// `cnf` (RFC 7800): what the token is bound to, if anything. Read once
    /// at verification, so a cached result carries it and the binding
    /// stage (`crate::bind`) pays nothing to find it. Boxed: most tokens
    /// have none.
    pub cnf: Option<Box<Confirmation>>,
    /// The decoded payload: UTF-8 JSON text of an object. `Bytes` so that
    /// every reply served from the cache shares it instead of copying it.
    pub raw: Bytes,
}

impl Claims {
    /// The payload as JSON text.
    pub fn json(&self) -> &str {
        // The payload was parsed by serde_json from these exact bytes, which
        // requires valid UTF-8; a failure here would be a bug in the core.
        std::str::from_utf8(&self.raw).unwrap_or("{}")
    }
}

/// A token's `cnf` claim: the proof-of-possession keys it is bound to.
///
/// The core only reads it (a malformed `jkt` or `x5t#S256` is
/// [`Reject::ClaimType`]); enforcing it needs the request, which is the
/// binding stage's work (`crate::bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// `cnf.jkt` (RFC 9449 6.1): the SHA-256 JWK thumbprint (RFC 7638) of
    /// the key every DPoP proof must be signed with.
    pub jkt: Option<[u8; 32]>,
    /// `cnf.x5t#S256` (RFC 8705 3.1): the SHA-256 of the DER client
    /// certificate the token must come with.
    pub x5t_s256: Option<[u8; 32]>,
    /// Another confirmation method (`jwk`, `kid`, `jku`...) that jwtd
    /// cannot check: such a token is refused rather than taken as a bearer
    /// token.
    pub other: bool,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The token's claims.
    pub claims: Claims,
    /// The algorithm the signature was verified with; `None` for claims
    /// that came alone in a JWE (`jwe_unsigned_claims`), vouched for by
    /// the decryption key that `key` names.
    pub alg: Option<Algorithm>,
    /// The `kid` of the key that verified it (`None` for a key without kid).
    pub kid: Option<Arc<str>>,
    /// The identity of the key that verified it: a cached result is served
    /// only while the current key set still holds this key.
    pub key: super::KeyFingerprint,
    /// Key-carrying header parameters that were present (and ignored).
    pub anomalies: Anomalies,
}

/// The outcome of verifying one token.
pub type Verdict = Result<Verified, Rejection>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_names_are_unique_snake_case() {
        let mut names: Vec<_> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reject::ALL.len());
    }

    #[test]
    fn anomalies_report_their_names() {
        let mut a = Anomalies::NONE;
        assert!(a.is_empty());
        a.insert(Anomalies::JKU);
        a.insert(Anomalies::X5C);
        assert_eq!(a.names().collect::<Vec<_>>(), vec!["jku", "x5c"]);
        assert!(a.contains(Anomalies::JKU));
        assert!(!a.contains(Anomalies::EMBEDDED_JWK));
    }
}
