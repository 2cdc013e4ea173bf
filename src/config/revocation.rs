//! The revocation settings: how the store is asked and what an unreachable
//! store means. Which store (Redis URLs) is read with the daemon's other
//! settings; the store itself lives in `crate::revocation`.

use std::time::Duration;

use super::settings::{RawConfig, s};
use super::validate::Check;
use crate::revocation::RevocationConfig;

/// Types the revocation settings.
pub(super) fn settings(c: &mut Check, raw: &RawConfig) -> RevocationConfig {
    let fail_open = c.choice(
        &s::revocation_fail,
        raw.revocation_fail.as_deref(),
        ["closed", "open"],
        "neither \"closed\" nor \"open\"",
    );
    let prefix = raw
        .revocation_prefix
        .clone()
        .or(s::revocation_prefix.default.map(str::to_owned))
        .unwrap_or_default();
    if prefix.contains(['{', '}']) {
        c.problem(
            &s::revocation_prefix,
            format_args!("{prefix:?} must not contain braces (jwtd adds the cluster hash tag)"),
        );
    }
    let window = c.duration(&s::revocation_window, raw.revocation_window.as_deref());
    if window > Duration::from_millis(10) {
        c.problem(
            &s::revocation_window,
            format_args!(
                "{window:?} is above the maximum of 10ms (every lookup would wait that long)"
            ),
        );
    }
    let timeout = c.duration(&s::revocation_timeout, raw.revocation_timeout.as_deref());
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
        c.problem(
            &s::revocation_timeout,
            format_args!("{timeout:?} is outside 1ms ..= 10s"),
        );
    }
    let cache_ttl = c.duration(
        &s::revocation_cache_ttl,
        raw.revocation_cache_ttl.as_deref(),
    );
    if cache_ttl > Duration::from_secs(3600) {
        c.problem(
            &s::revocation_cache_ttl,
            format_args!("{cache_ttl:?} is above the maximum of 1h"),
        );
    }
    RevocationConfig {
        prefix,
        fail_open,
        window,
        batch_max: c.number(
            &s::revocation_batch,
            raw.revocation_batch.as_deref(),
            (1, 100_000),
        ),
        timeout,
        cache_ttl,
        // Not a setting: bounded by the cache's memory, not by the user.
        cache_entries: RevocationConfig::default().cache_entries,
    }
}
