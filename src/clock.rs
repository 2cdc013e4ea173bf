//! The wall clock, in one place.
//!
//! The verification core never reads the clock: it takes `now` as an
//! argument, so tests and the conformance vectors choose the time. Everything
//! that does need the current Unix time (the verifier, key sources, metrics,
//! the fronts, the command line) reads it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current Unix time in whole seconds; 0 before 1970, `i64::MAX` past
/// the end of `i64`.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
