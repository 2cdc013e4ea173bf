//! Key sources: where each issuer's key set comes from, and the background
//! tasks that keep it current while jwtd serves.
//!
//! | source | module | refreshed |
//! |---|---|---|
//! | local file (JWK set or PEM) | [`mod@file`] | when the file changes (polled every second, symlink swaps included) |
//! | JWKS URL | [`remote`] | on a schedule from `Cache-Control: max-age` within bounds, jittered; and on an unknown `kid` (single flight, cooldown) |
//! | OIDC discovery | [`remote`] | as a JWKS URL, with `jwks_uri` read from the issuer's discovery document at every refresh |
//!
//! Every source follows the same rules:
//!
//! - **Validated, then swapped.** A new set is parsed whole
//!   ([`crate::verify::KeySet`]: unusable keys skipped with a warning naming
//!   their kid) and published with one store
//!   ([`crate::verifier::Verifier::set_keys`]). Requests see the old set or
//!   the new one, never a mix, and never wait.
//! - **The last good set stays.** A failed fetch or reload (unreachable,
//!   timeout, HTTP error, oversized, garbage, empty set, no usable key)
//!   changes nothing but a warning and a failure count; remote sources retry
//!   with jittered exponential backoff.
//! - **Removed keys stop vouching at the swap.** Cached results remember the
//!   key that verified them, and are served only while it is in the set.
//! - **Readiness.** An issuer is ready once it has a first good set; a
//!   remote one stops being ready when its last good fetch is older than
//!   `max_stale` (when set). It keeps verifying with the last good set
//!   either way: readiness tells the orchestrator, it does not fail requests.

pub mod file;
pub mod remote;

pub use file::{FILE_POLL, watch_file, watch_jwe_file};
pub use remote::{Endpoint, RemoteSettings, url_problem, watch_remote};

use crate::jwks::refresh::RefreshGate;
use crate::verify::KeySet;

/// Where a source publishes one issuer's key sets: the narrow interface
/// between key sources and the verifier, so that sources know nothing of
/// the verifier (and the verifier nothing of files or HTTP).
pub trait KeySink: Send + Sync + 'static {
    /// Publishes a new, validated set (one atomic swap).
    fn set(&self, keys: KeySet);
    /// The source was read again and still holds the same set (HTTP 304):
    /// the set is as fresh as now.
    fn confirm(&self);
    /// A fetch or reload failed; the last good set stays.
    fn fail(&self);
    /// Unix time of the last good load, if any (for the failure log).
    fn last_good(&self) -> Option<i64>;
    /// The issuer's unknown-kid refresh gate, if it has one.
    fn gate(&self) -> Option<&RefreshGate>;
}

/// Warns about each key a new set skipped, by index and kid.
pub fn log_skipped(keys: &KeySet) {
    for skipped in keys.skipped() {
        tracing::warn!(
            index = skipped.index,
            kid = skipped.kid.as_deref().unwrap_or("(none)"),
            problem = %skipped.problem,
            "key skipped"
        );
    }
}
