//! The verification core: token bytes + trusted keys + policy -> [`Verdict`].
//!
//! # The life of one token
//!
//! [`verify`] runs these steps in this order; each failure returns at once
//! with a [`Reject`] naming the first defect found:
//!
//! 1. **Size and shape.** At most [`Policy::max_token_bytes`]; exactly three
//!    dot-separated segments (five is a JWE: refused); header and payload
//!    non-empty.
//! 2. **Header.** Strict base64url, then a UTF-8 JSON object with no duplicate
//!    members and bounded depth (see `json`). `alg: none` in any spelling is
//!    refused here, before anything else looks at the token; then unknown or
//!    disallowed `alg`, `crit` (jwtd implements no extension), `b64: false`.
//!    `jwk`/`jku`/`x5u`/`x5c` are noted as [`Anomalies`] and never used.
//!    Payload and signature are then base64url-decoded.
//! 3. **Issuer** (only when the caller's [`Trust`] has several): the
//!    payload is parsed for `iss`, which picks the keys and policy; no issuer,
//!    [`Reject::UnknownIssuer`]. The chosen policy's algorithm list applies.
//! 4. **Keys.** A token with `kid` is checked only against keys with that kid;
//!    if none of them serves `alg` the reject is
//!    [`Reject::KeyAlgorithmMismatch`] (algorithm confusion). Without `kid`,
//!    every key that serves `alg` is tried, but only if there are at most
//!    [`Policy::max_kidless_keys`] of them: beyond that the token is
//!    [`Reject::UnknownKey`] without any signature check, so a forged
//!    kid-less token cannot cost one check per key of a large set (the
//!    [`Trust`] hears of it, so that no key refresh is asked for). A key
//!    serves an algorithm only if
//!    its type, curve, size and own JWK `alg` allow it (see [`keys`]),
//!    so an RSA public key can never be used as an HMAC secret.
//! 5. **Signature**, with keys parsed at load time. Payload and signature are
//!    base64url-decoded before any crypto, so garbage costs no cryptography.
//! 6. **Claims**, only after the signature holds, so operators never see
//!    reasons drawn from forged content: registered claim types (a
//!    NumericDate is a number in `0 ..=` [`MAX_NUMERIC_DATE`], the end of
//!    year 9999), required claims, `exp`/`nbf`/`iat` with leeway, maximum
//!    lifetime, `iss`, `aud`, header `typ`.
//!
//! # What this module does not do
//!
//! No I/O, no clock (the caller passes `now`), no caching, no logging, no
//! metrics: it is a pure function, which is what makes it testable against
//! the conformance vectors and cheap to call from any front.

mod alg;
pub mod dpop;
pub(crate) mod json;
pub mod jwe;
pub mod keys;
mod outcome;
pub mod pem;

use std::borrow::Cow;

use base64::Engine;

pub use alg::{AlgSet, Algorithm, AlgorithmNameError, Curve, Family, is_none_spelling};
pub use json::MAX_REQUIRED_CLAIMS;
pub use keys::{B64URL, Key, KeyFingerprint, KeyKind, KeyProblem, KeySet, KeySetError, SkippedKey};
pub use outcome::{Anomalies, Claims, Confirmation, Reject, Rejection, Verdict, Verified};

use json::{Field, Number};

/// Default maximum token size: 16 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest leeway a policy may configure: clock skew is bounded.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Default maximum JSON nesting depth (the top-level object counts as 1).
pub const DEFAULT_MAX_JSON_DEPTH: u32 = 16;
/// Default [`Policy::max_kidless_keys`].
pub const DEFAULT_MAX_KIDLESS_KEYS: usize = 4;
/// Largest [`Policy::max_kidless_keys`] a policy may configure.
pub const MAX_KIDLESS_KEYS: usize = 1024;
/// Largest signature any supported key produces (RSA-8192).
const MAX_SIGNATURE_BYTES: usize = 1024;
/// Headers up to this many decoded bytes are decoded on the stack.
const HEADER_STACK_BYTES: usize = 384;
/// The last NumericDate accepted: 9999-12-31T23:59:59Z. An `exp`, `nbf` or
/// `iat` beyond it (or before 1970) is [`Reject::ClaimType`]: no issuer
/// means such a date, and `exp: 1e300` must not read as "never expires".
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// What a valid token must satisfy. Built once from configuration, then
/// shared read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Algorithms accepted at all. Keys narrow this further per key.
    pub algorithms: AlgSet,
    /// Required `iss`, exact match; `None` skips the check.
    pub issuer: Option<Box<str>>,
    /// Accepted audiences: the token's `aud` (string or array) must contain
    /// one of them. Empty skips the check.
    pub audiences: Vec<Box<str>>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`, in seconds.
    pub leeway: u64,
    /// Claims that must be present (default: `exp`).
    pub required: Vec<Box<str>>,
    /// Maximum `exp - iat` in seconds; `None` skips the check.
    pub max_lifetime: Option<u64>,
    /// Required header `typ` (e.g. `at+jwt` for RFC 9068 access tokens),
    /// compared case-insensitively with an optional `application/` prefix
    /// (RFC 7515 4.1.9).
    pub typ: Option<Box<str>>,
    /// Longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// Deepest JSON nesting accepted in header and payload.
    pub max_json_depth: u32,
    /// A token without `kid` is tried against every key serving its `alg`;
    /// when more keys than this could match, it is refused `unknown_key`
    /// without any signature check.
    pub max_kidless_keys: usize,
}

impl Default for Policy {
    /// Every algorithm (keys bind each to its own), no issuer or audience
    /// check, `exp` required, 30 s leeway, 16 KiB tokens, depth 16, kid-less
    /// tokens tried against at most 4 keys.
    fn default() -> Self {
        Policy {
            algorithms: AlgSet::all(),
            issuer: None,
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY_SECS,
            required: vec!["exp".into()],
            max_lifetime: None,
            typ: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_kidless_keys: DEFAULT_MAX_KIDLESS_KEYS,
        }
    }
}

impl Policy {
    /// Every problem with this policy, one message each (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.algorithms.is_empty() {
            out.push("algorithms: the allow-list is empty".to_owned());
        }
        if self.leeway > MAX_LEEWAY_SECS {
            out.push(format!(
                "leeway: {} s exceeds the maximum of {MAX_LEEWAY_SECS} s",
                self.leeway
            ));
        }
        if self.required.len() > MAX_REQUIRED_CLAIMS {
            out.push(format!(
                "required claims: {} listed, at most {MAX_REQUIRED_CLAIMS}",
                self.required.len()
            ));
        }
        if self.required.iter().any(|c| c.is_empty()) {
            out.push("required claims: empty claim name".to_owned());
        }
        if self.issuer.as_deref() == Some("") {
            out.push("issuer: empty string".to_owned());
        }
        if self.audiences.iter().any(|a| a.is_empty()) {
            out.push("audience: empty string".to_owned());
        }
        if self.typ.as_deref() == Some("") {
            out.push("typ: empty string".to_owned());
        }
        if !(64..=1024 * 1024).contains(&self.max_token_bytes) {
            out.push(format!(
                "max token size: {} bytes is outside 64 B ..= 1 MiB",
                self.max_token_bytes
            ));
        }
        if !(2..=64).contains(&self.max_json_depth) {
            out.push(format!(
                "max JSON depth: {} is outside 2 ..= 64",
                self.max_json_depth
            ));
        }
        if self.max_kidless_keys > MAX_KIDLESS_KEYS {
            out.push(format!(
                "max_kidless_keys: {} is above the maximum of {MAX_KIDLESS_KEYS}",
                self.max_kidless_keys
            ));
        }
        out
    }
}

/// Verifies `token` against `keys` under `policy`, at Unix time `now`.
///
/// Never panics, whatever the bytes (property-tested).
///
/// # Example
///
/// ```
/// use jwtd::verify::KeySet;
/// use jwtd::verify::{verify, Policy, Reject};
///
/// let keys = KeySet::from_jwks(br#"{"keys":[{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#)?;
/// let verdict = verify(b"not.a.token", &keys, &Policy::default(), 1_700_000_000);
/// assert_eq!(verdict.unwrap_err().reason, Reject::Base64);
/// # Ok::<(), jwtd::verify::KeySetError>(())
/// ```
pub fn verify(token: &[u8], keys: &KeySet, policy: &Policy, now: i64) -> Verdict {
    verify_with(token, &Fixed { keys, policy }, now)
}

/// Where [`verify_with`] gets its keys and policy: the caller's trust
/// configuration, asked once the token is decoded and before any signature
/// work.
///
/// With one issuer nothing needs choosing ([`verify`] uses a fixed pair).
/// With several, [`Trust::by_issuer`] is true: the payload is parsed before
/// the signature to read `iss`, and [`Trust::select`] picks that issuer's
/// keys and policy, or refuses the token ([`Reject::UnknownIssuer`]). The
/// parse happens before the signature holds, so in that mode a garbage
/// payload is `bad_payload` rather than `bad_signature`; nothing else about
/// the token is judged until its signature is verified.
pub trait Trust {
    /// The key set handed back by [`Trust::select`]: a plain reference, or a
    /// guard keeping a hot-swapped set alive for the call.
    type Keys<'a>: std::ops::Deref<Target = KeySet>
    where
        Self: 'a;

    /// The limits that apply before the issuer is known: token size, JSON
    /// depth and the algorithm allow-list (with several issuers, the union of
    /// theirs; the chosen issuer's own list is checked once it is known).
    fn limits(&self) -> &Policy;

    /// Whether the token's `iss` chooses the keys and policy.
    fn by_issuer(&self) -> bool;

    /// The keys and policy for a token whose `iss` is `iss` (always `None`
    /// when [`Trust::by_issuer`] is false).
    ///
    /// # Errors
    ///
    /// The reject to answer without trying any key.
    fn select(&self, iss: Option<&str>) -> Result<(Self::Keys<'_>, &Policy), Reject>;

    /// A token without `kid` was refused [`Reject::UnknownKey`] because more
    /// than [`Policy::max_kidless_keys`] keys could match it (not because
    /// its key is missing: a refresh of the set would not help).
    fn kidless_refused(&self) {}
}

/// One key set and one policy: the single-issuer [`Trust`].
struct Fixed<'k> {
    keys: &'k KeySet,
    policy: &'k Policy,
}

impl Trust for Fixed<'_> {
    type Keys<'a>
        = &'a KeySet
    where
        Self: 'a;

    fn limits(&self) -> &Policy {
        self.policy
    }

    fn by_issuer(&self) -> bool {
        false
    }

    fn select(&self, _iss: Option<&str>) -> Result<(&KeySet, &Policy), Reject> {
        Ok((self.keys, self.policy))
    }
}

/// Verifies `token` with the keys and policy `trust` selects for it, at Unix
/// time `now`. [`verify`] is this with one fixed key set and policy.
///
/// Never panics, whatever the bytes (property-tested).
pub fn verify_with<T: Trust>(token: &[u8], trust: &T, now: i64) -> Verdict {
    let mut anomalies = Anomalies::NONE;
    verify_inner(token, trust, now, &mut anomalies)
        .map_err(|reason| Rejection { reason, anomalies })
}

fn verify_inner<T: Trust>(
    token: &[u8],
    trust: &T,
    now: i64,
    anomalies: &mut Anomalies,
) -> Result<Verified, Reject> {
    let limits = trust.limits();
    // 1. Size and shape.
    if token.len() > limits.max_token_bytes {
        return Err(Reject::TooLarge);
    }
    // memchr scans a word (or vector) at a time: a byte loop here cost a
    // measurable share of an RSA verification (BENCHMARKS.md).
    let mut dots = memchr::memchr_iter(b'.', token);
    let (Some(d1), Some(d2)) = (dots.next(), dots.next()) else {
        return Err(Reject::Malformed);
    };
    match dots.count() {
        0 => {}
        2 => return Err(Reject::Jwe),
        _ => return Err(Reject::Malformed),
    }
    let (header_b64, payload_b64, sig_b64) = (&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]);
    if header_b64.is_empty() {
        return Err(Reject::Malformed);
    }

    // 2. Header.
    // Headers are small: decode onto the stack, falling back to the heap
    // for the rare large one (an x5c chain).
    let mut header_buf = [0u8; HEADER_STACK_BYTES];
    let header_heap;
    let header_bytes = if header_b64.len() <= HEADER_STACK_BYTES / 3 * 4 {
        let n = B64URL
            .decode_slice(header_b64, &mut header_buf)
            .map_err(|_| Reject::Base64)?;
        &header_buf[..n]
    } else {
        header_heap = B64URL.decode(header_b64).map_err(|_| Reject::Base64)?;
        &header_heap[..]
    };
    let header =
        json::parse_header(header_bytes, limits.max_json_depth).map_err(|_| Reject::Header)?;
    *anomalies = header.anomalies;
    let alg_name = header.alg.as_deref().ok_or(Reject::Header)?;
    if is_none_spelling(alg_name) {
        return Err(Reject::AlgNone);
    }
    let alg = Algorithm::from_name(alg_name).ok_or(Reject::AlgorithmNotAllowed)?;
    if !limits.algorithms.contains(alg) {
        return Err(Reject::AlgorithmNotAllowed);
    }
    // b64:false comes with crit:["b64"] (RFC 7797 6); name the specific
    // defect rather than the generic one.
    if header.b64 == Some(false) {
        return Err(Reject::Unencoded);
    }
    if header.crit {
        return Err(Reject::Crit);
    }

    // Decode the rest before any crypto: malformed tokens cost no signature.
    if payload_b64.is_empty() {
        // Detached content (RFC 7515 F): a JWT always carries its claims.
        return Err(Reject::Payload);
    }
    let payload = B64URL.decode(payload_b64).map_err(|_| Reject::Base64)?;
    let mut sig_buf = [0u8; MAX_SIGNATURE_BYTES];
    if sig_b64.len() > MAX_SIGNATURE_BYTES * 4 / 3 + 1 {
        return Err(Reject::BadSignature);
    }
    let sig_len = B64URL
        .decode_slice(sig_b64, &mut sig_buf)
        .map_err(|_| Reject::Base64)?;
    let signature = &sig_buf[..sig_len];
    if signature.is_empty() {
        return Err(Reject::BadSignature);
    }

    // 3. The issuer's keys and policy (one fixed pair unless several issuers
    // are configured; then chosen by `iss`, before any crypto).
    let (keys, policy) = if trust.by_issuer() {
        let peek = json::parse_payload(&payload, limits.max_json_depth, &[])
            .map_err(|_| Reject::Payload)?;
        match &peek.iss {
            Field::Present(iss) => trust.select(Some(iss))?,
            Field::Absent => trust.select(None)?,
            Field::WrongType => return Err(Reject::ClaimType),
        }
    } else {
        trust.select(None)?
    };
    let keys = &*keys;
    if !policy.algorithms.contains(alg) {
        return Err(Reject::AlgorithmNotAllowed);
    }

    // 4 and 5. Key selection and signature.
    let signing_input = &token[..d2];
    let kid = header.kid.as_deref();
    if kid.is_none() && keys.kidless_candidates(alg) > policy.max_kidless_keys {
        trust.kidless_refused();
        return Err(Reject::UnknownKey);
    }
    let (mut named, mut fits) = (false, false);
    let mut verified_by = None;
    for key in keys.candidates(kid) {
        named = true;
        if !key.serves(alg) {
            continue;
        }
        fits = true;
        if key.verify(alg, signing_input, signature) {
            verified_by = Some(key);
            break;
        }
    }
    let key = match verified_by {
        Some(key) => key,
        None if !named => return Err(Reject::UnknownKey),
        None if !fits && kid.is_some() => return Err(Reject::KeyAlgorithmMismatch),
        None if !fits => return Err(Reject::UnknownKey),
        None => return Err(Reject::BadSignature),
    };

    // 6. Claims.
    let claims = claims(payload, header.typ.as_deref(), policy, now)?;
    Ok(Verified {
        claims,
        alg: Some(alg),
        kid: key.kid().cloned(),
        key: key.fingerprint(),
        anomalies: *anomalies,
    })
}

/// Step 6: the claims of a payload whose sender is vouched for, checked
/// against `policy` (and `typ`, the header's, against its `typ`).
fn claims(
    payload: Vec<u8>,
    typ: Option<&str>,
    policy: &Policy,
    now: i64,
) -> Result<Claims, Reject> {
    let p = json::parse_payload(&payload, policy.max_json_depth, &policy.required)
        .map_err(|_| Reject::Payload)?;
    let times = check_claims(&p, policy, now)?;
    if let Some(want) = &policy.typ
        && !typ.is_some_and(|t| typ_matches(t, want))
    {
        return Err(Reject::Type);
    }
    Ok(Claims {
        iss: owned(&p.iss),
        sub: owned(&p.sub),
        jti: owned(&p.jti),
        exp: times.exp,
        nbf: times.nbf,
        iat: times.iat,
        cnf: times.cnf.map(Box::new),
        raw: payload.into(),
    })
}

/// Who vouches for claims that carry no signature: the key that decrypted
/// the JWE they came in (symmetric key management only, see
/// [`verify_sealed_with`]).
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    /// The JWE protected header's `typ`, checked against [`Policy::typ`].
    pub typ: Option<&'a str>,
    /// The decryption key's `kid`.
    pub kid: Option<&'a str>,
    /// The decryption key's identity.
    pub key: KeyFingerprint,
}

/// [`verify_sealed_with`] for one issuer's `policy`.
///
/// # Errors
///
/// As [`verify_sealed_with`].
pub fn verify_sealed(claims_json: &[u8], sealed: Sealed<'_>, policy: &Policy, now: i64) -> Verdict {
    let keys = KeySet::default();
    verify_sealed_with(
        claims_json,
        sealed,
        &Fixed {
            keys: &keys,
            policy,
        },
        now,
    )
}

/// Checks claims that arrived without a signature, in a JWE whose key
/// management only a holder of the shared key can perform (`A*KW`, `dir`:
/// `jwe_unsigned_claims`). The caller decrypted them and decided that this
/// is allowed; this is step 6 of [`verify_with`] (the issuer chosen by
/// `iss` as there, its key set not used), and the result names the
/// decryption key in place of a signing key, with no `alg`.
///
/// # Errors
///
/// As [`verify_with`]'s claim checks; a payload over
/// [`Policy::max_token_bytes`] is [`Reject::TooLarge`].
pub fn verify_sealed_with<T: Trust>(
    claims_json: &[u8],
    sealed: Sealed<'_>,
    trust: &T,
    now: i64,
) -> Verdict {
    let fail = |reason| Rejection {
        reason,
        anomalies: Anomalies::NONE,
    };
    let limits = trust.limits();
    if claims_json.len() > limits.max_token_bytes {
        return Err(fail(Reject::TooLarge));
    }
    let policy = if trust.by_issuer() {
        let peek = json::parse_payload(claims_json, limits.max_json_depth, &[])
            .map_err(|_| fail(Reject::Payload))?;
        match &peek.iss {
            Field::Present(iss) => trust.select(Some(iss)),
            Field::Absent => trust.select(None),
            Field::WrongType => return Err(fail(Reject::ClaimType)),
        }
    } else {
        trust.select(None)
    }
    .map_err(fail)?
    .1;
    let claims = claims(claims_json.to_vec(), sealed.typ, policy, now).map_err(fail)?;
    Ok(Verified {
        claims,
        alg: None,
        kid: sealed.kid.map(std::sync::Arc::from),
        key: sealed.key,
        anomalies: Anomalies::NONE,
    })
}

fn owned(f: &Field<Cow<'_, str>>) -> Option<Box<str>> {
    match f {
        Field::Present(s) => Some(Box::from(&**s)),
        _ => None,
    }
}

struct Times {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    cnf: Option<Confirmation>,
}

/// The token's `cnf`: `Ok(None)` when absent or empty; a member jwtd
/// checks must be a base64url SHA-256 digest.
fn confirmation(f: &Field<json::CnfText<'_>>) -> Result<Option<Confirmation>, Reject> {
    fn digest(f: &Field<Cow<'_, str>>) -> Result<Option<[u8; 32]>, Reject> {
        match f {
            Field::Absent => Ok(None),
            Field::Present(s) => {
                let mut out = [0u8; 32];
                match B64URL.decode_slice(s.as_bytes(), &mut out) {
                    Ok(32) if s.len() == 43 => Ok(Some(out)),
                    _ => Err(Reject::ClaimType),
                }
            }
            Field::WrongType => Err(Reject::ClaimType),
        }
    }
    match f {
        Field::Absent => Ok(None),
        Field::WrongType => Err(Reject::ClaimType),
        Field::Present(c) => {
            let cnf = Confirmation {
                jkt: digest(&c.jkt)?,
                x5t_s256: digest(&c.x5t_s256)?,
                other: c.other,
            };
            Ok((cnf.jkt.is_some() || cnf.x5t_s256.is_some() || cnf.other).then_some(cnf))
        }
    }
}

fn date(f: &Field<Number>, round: fn(Number) -> i64) -> Option<i64> {
    match f {
        Field::Present(n) => Some(round(*n)),
        _ => None,
    }
}

fn check_claims(p: &json::Payload<'_>, policy: &Policy, now: i64) -> Result<Times, Reject> {
    let wrong = [
        p.iss == Field::WrongType,
        p.sub == Field::WrongType,
        p.jti == Field::WrongType,
        p.aud == Field::WrongType,
        p.exp == Field::WrongType,
        p.nbf == Field::WrongType,
        p.iat == Field::WrongType,
    ];
    if wrong.into_iter().any(|w| w) {
        return Err(Reject::ClaimType);
    }
    // A NumericDate is a time between 1970 and the end of year 9999;
    // anything else is no date at all (RFC 7519 2 leaves the range open,
    // which is how `exp: 1e300` would mean "never expires").
    let insane =
        |f: &Field<Number>| matches!(f, Field::Present(n) if !n.in_range(MAX_NUMERIC_DATE));
    if [&p.exp, &p.nbf, &p.iat].into_iter().any(insane) {
        return Err(Reject::ClaimType);
    }
    let tracked = policy.required.len().min(MAX_REQUIRED_CLAIMS);
    let all_required = if tracked == 64 {
        u64::MAX
    } else {
        (1u64 << tracked) - 1
    };
    if p.required_seen != all_required
        || (policy.issuer.is_some() && !p.iss.is_present())
        || (!policy.audiences.is_empty() && !p.aud.is_present())
    {
        return Err(Reject::MissingClaim);
    }

    let t = Times {
        exp: date(&p.exp, Number::floor),
        nbf: date(&p.nbf, Number::ceil),
        iat: date(&p.iat, Number::ceil),
        cnf: confirmation(&p.cnf)?,
    };
    let leeway = i64::try_from(policy.leeway).unwrap_or(i64::MAX);
    if let Some(exp) = t.exp
        && now >= exp.saturating_add(leeway)
    {
        return Err(Reject::Expired);
    }
    if let Some(nbf) = t.nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(Reject::NotYetValid);
    }
    if let Some(iat) = t.iat
        && iat > now.saturating_add(leeway)
    {
        return Err(Reject::IssuedInFuture);
    }
    if let Some(max) = policy.max_lifetime {
        // Without iat, judge the remaining lifetime; without exp, the token
        // never expires, which is longer than any maximum.
        let start = t.iat.unwrap_or(now);
        let too_long = t
            .exp
            .is_none_or(|exp| exp.saturating_sub(start) > i64::try_from(max).unwrap_or(i64::MAX));
        if too_long {
            return Err(Reject::LifetimeTooLong);
        }
    }

    if let Some(want) = &policy.issuer
        && !matches!(&p.iss, Field::Present(iss) if **iss == **want)
    {
        return Err(Reject::Issuer);
    }
    if !policy.audiences.is_empty() {
        let Field::Present(aud) = &p.aud else {
            return Err(Reject::MissingClaim);
        };
        if !aud
            .iter()
            .any(|a| policy.audiences.iter().any(|w| **w == **a))
        {
            return Err(Reject::Audience);
        }
    }
    Ok(t)
}

/// RFC 7515 4.1.9: media types compare case-insensitively, and
/// `application/` may be omitted.
fn typ_matches(got: &str, want: &str) -> bool {
    fn bare(s: &str) -> &str {
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    bare(got).eq_ignore_ascii_case(bare(want))
}

#[cfg(test)]
mod tests;
