//! Anomaly kinds and the security log: what counts as suspicious, and the
//! rate-limited `jwtd::security` events that report it (see the module doc
//! of [`crate::metrics`]).

use std::sync::Mutex;

use crate::request::Front;
use crate::verify::Reject;

/// Security log events per anomaly kind per second; the rest are counted.
pub const LOG_PER_SECOND: u32 = 10;

/// An expired token this long past `exp` counts as `expired_replay`.
pub const REPLAY_AFTER_SECS: i64 = 3600;

/// Kinds of anomaly (`jwtd_anomalies_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `alg: none`.
    AlgNone,
    /// `alg` does not fit the key its `kid` names.
    AlgConfusion,
    /// No trusted key has the `kid`.
    UnknownKid,
    /// The signature does not verify.
    BadSignature,
    /// Header `jwk`.
    EmbeddedJwk,
    /// Header `jku`.
    Jku,
    /// Header `x5u`.
    X5u,
    /// Header `x5c`.
    X5c,
    /// A `crit` header.
    UnsupportedCrit,
    /// Not a JWS: structure, base64, header or payload.
    Malformed,
    /// Longer than `max_token_bytes`.
    Oversized,
    /// Expired more than [`REPLAY_AFTER_SECS`] ago.
    ExpiredReplay,
    /// `iat` in the future.
    IatFuture,
    /// A revoked token used.
    Revoked,
    /// An `iss` no configured issuer has.
    UnknownIssuer,
    /// A DPoP proof that is not one (forged signature, private key in the
    /// header, `alg: none`, stale).
    DpopInvalid,
    /// A DPoP proof used twice: a captured request replayed.
    DpopReplay,
    /// A valid DPoP proof for another request or key: a token used by
    /// someone who does not hold its key.
    DpopMismatch,
    /// A DPoP-bound token sent as a bearer token: a stolen token tried
    /// without its key.
    BearerDowngrade,
    /// A certificate-bound token without its certificate.
    CnfMismatch,
    /// A device or address binding not met.
    BindingMismatch,
    /// A JWE that does not decrypt: a wrong key, or tampered.
    JweDecrypt,
}

impl Kind {
    /// Every kind, in label order.
    pub const ALL: [Kind; 22] = [
        Kind::AlgNone,
        Kind::AlgConfusion,
        Kind::UnknownKid,
        Kind::BadSignature,
        Kind::EmbeddedJwk,
        Kind::Jku,
        Kind::X5u,
        Kind::X5c,
        Kind::UnsupportedCrit,
        Kind::Malformed,
        Kind::Oversized,
        Kind::ExpiredReplay,
        Kind::IatFuture,
        Kind::Revoked,
        Kind::UnknownIssuer,
        Kind::DpopInvalid,
        Kind::DpopReplay,
        Kind::DpopMismatch,
        Kind::BearerDowngrade,
        Kind::CnfMismatch,
        Kind::BindingMismatch,
        Kind::JweDecrypt,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AlgNone => "alg_none",
            Kind::AlgConfusion => "alg_confusion",
            Kind::UnknownKid => "unknown_kid",
            Kind::BadSignature => "bad_signature",
            Kind::EmbeddedJwk => "embedded_jwk",
            Kind::Jku => "jku",
            Kind::X5u => "x5u",
            Kind::X5c => "x5c",
            Kind::UnsupportedCrit => "unsupported_crit",
            Kind::Malformed => "malformed",
            Kind::Oversized => "oversized",
            Kind::ExpiredReplay => "expired_replay",
            Kind::IatFuture => "iat_future",
            Kind::Revoked => "revoked",
            Kind::UnknownIssuer => "unknown_issuer",
            Kind::DpopInvalid => "dpop_invalid",
            Kind::DpopReplay => "dpop_replay",
            Kind::DpopMismatch => "dpop_mismatch",
            Kind::BearerDowngrade => "bearer_downgrade",
            Kind::CnfMismatch => "cnf_mismatch",
            Kind::BindingMismatch => "binding_mismatch",
            Kind::JweDecrypt => "jwe_decrypt",
        }
    }

    pub(super) fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The kind a reject reason is, if any (`expired` needs the token: see
    /// [`expired_long_ago`]).
    pub(super) fn of_reject(reason: Reject) -> Option<Kind> {
        Some(match reason {
            Reject::AlgNone => Kind::AlgNone,
            Reject::KeyAlgorithmMismatch => Kind::AlgConfusion,
            Reject::UnknownKey => Kind::UnknownKid,
            Reject::BadSignature => Kind::BadSignature,
            Reject::Crit => Kind::UnsupportedCrit,
            Reject::Malformed
            | Reject::Base64
            | Reject::Header
            | Reject::Payload
            | Reject::Unencoded => Kind::Malformed,
            Reject::TooLarge => Kind::Oversized,
            Reject::IssuedInFuture => Kind::IatFuture,
            Reject::Revoked => Kind::Revoked,
            Reject::UnknownIssuer => Kind::UnknownIssuer,
            Reject::DpopInvalid => Kind::DpopInvalid,
            Reject::DpopReplay => Kind::DpopReplay,
            Reject::DpopMismatch => Kind::DpopMismatch,
            Reject::BearerDowngrade => Kind::BearerDowngrade,
            Reject::CnfMismatch => Kind::CnfMismatch,
            Reject::BindingMismatch => Kind::BindingMismatch,
            Reject::JweDecrypt => Kind::JweDecrypt,
            _ => return None,
        })
    }
}

/// The per-kind rate limit of the security log ([`LOG_PER_SECOND`]).
pub(super) struct LogLimit(Mutex<Vec<LogWindow>>);

#[derive(Default, Clone, Copy)]
struct LogWindow {
    second: u64,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    pub(super) fn new() -> LogLimit {
        LogLimit(Mutex::new(vec![LogWindow::default(); Kind::ALL.len()]))
    }

    /// Whether kind `i` may log now; with the count suppressed since its
    /// last event.
    pub(super) fn may_log(&self, i: usize) -> Option<u64> {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut windows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get_mut(i)?;
        if w.second != second {
            w.second = second;
            w.logged = 0;
        }
        if w.logged >= LOG_PER_SECOND {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// Logs one suspicious token (an anomaly of `kind` that [`LogLimit`] let
/// through; `suppressed` events of its kind were not logged since the last).
pub(super) fn log_suspicious(
    kind: Kind,
    front: Front,
    reason: &str,
    token: &[u8],
    suppressed: u64,
) {
    let (kid, iss) = peek(token);
    tracing::warn!(
        target: "jwtd::security",
        kind = kind.as_str(),
        reason,
        front = front.as_str(),
        fingerprint = %fingerprint(token),
        kid = kid.as_deref().unwrap_or("-"),
        iss = iss.as_deref().unwrap_or("-"),
        suppressed,
        "suspicious token"
    );
}

/// Whether `token`'s `exp` is more than [`REPLAY_AFTER_SECS`] ago (read
/// from the payload; only called for tokens already refused as expired).
pub(super) fn expired_long_ago(token: &[u8]) -> bool {
    let exp = segment_json(token, 1).and_then(|v| v.get("exp").and_then(serde_json::Value::as_f64));
    exp.is_some_and(|exp| (crate::clock::unix_now() as f64) - exp > REPLAY_AFTER_SECS as f64)
}

/// The `n`th dot-separated segment of `token`, base64url-decoded and parsed
/// as JSON (a best effort for logs: `None` for anything odd).
fn segment_json(token: &[u8], n: usize) -> Option<serde_json::Value> {
    use base64::Engine;
    let segment = token.split(|b| *b == b'.').nth(n)?;
    if segment.len() > 16 * 1024 {
        return None;
    }
    let bytes = crate::verify::B64URL.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `kid` and `iss` of a token, for logs: truncated to 64 characters,
/// with control, line-separator and bidi-override characters escaped
/// ([`crate::redact::text`]), in text and JSON logs alike.
pub(super) fn peek(token: &[u8]) -> (Option<String>, Option<String>) {
    let text = |v: Option<serde_json::Value>, name: &str| {
        let v = v?;
        let s = v.get(name)?.as_str()?;
        Some(crate::redact::text(s, 64))
    };
    (
        text(segment_json(token, 0), "kid"),
        text(segment_json(token, 1), "iss"),
    )
}

/// The first 12 hex digits of the token's SHA-256.
pub fn fingerprint(token: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
