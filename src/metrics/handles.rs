//! The resolved metric handles: per front, every `jwtd_requests_total`
//! outcome and reason and the two latency histograms; per issuer, its key
//! set's gauges and counters; the open-connection guard. Each label
//! combination is registered once, when [`Metrics`](super::Metrics) is
//! built, so recording is an atomic add on a handle already at hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge};

use super::latency::Latency;
use crate::request::Front;
use crate::verify::Reject;

/// Reasons a proxy front adds to the core's.
const MISSING_TOKEN: &str = "missing_token";

/// One front's request handles.
pub(super) struct FrontHandles {
    pub(super) valid: Counter,
    /// By `Reject::ALL` index.
    pub(super) invalid: Vec<Counter>,
    pub(super) missing_token: Counter,
    pub(super) forbidden: Counter,
    pub(super) no_keys: Counter,
    pub(super) overloaded: Counter,
    pub(super) revocation_unavailable: Counter,
    pub(super) unknown_selector: Counter,
    pub(super) hit: Latency,
    pub(super) miss: Latency,
}

impl FrontHandles {
    pub(super) fn new(front: Front) -> FrontHandles {
        let f = front.as_str();
        let req = |outcome: &'static str, reason: &'static str| metrics::counter!("jwtd_requests_total", "front" => f, "outcome" => outcome, "reason" => reason);
        FrontHandles {
            valid: req("valid", "none"),
            invalid: Reject::ALL
                .iter()
                .map(|r| req("invalid", r.as_str()))
                .collect(),
            missing_token: req("invalid", MISSING_TOKEN),
            forbidden: req("forbidden", "insufficient_scope"),
            no_keys: req("undecided", "no_keys"),
            overloaded: req("undecided", "overloaded"),
            revocation_unavailable: req("undecided", "revocation_unavailable"),
            unknown_selector: req("error", "unknown_selector"),
            hit: Latency::new(),
            miss: Latency::new(),
        }
    }
}

/// One issuer's state handles.
pub(super) struct IssuerHandles {
    pub(super) keys: Gauge,
    pub(super) updated: Counter,
    pub(super) unchanged: Counter,
    pub(super) error: Counter,
    pub(super) last_success: Gauge,
    pub(super) age: Gauge,
    pub(super) unknown_kid: Counter,
    pub(super) suppressed: Counter,
}

impl IssuerHandles {
    /// The handles of the issuer called `name` (`default` when it has none).
    pub(super) fn new(name: &str) -> IssuerHandles {
        let refresh = |result: &'static str| metrics::counter!("jwtd_jwks_refreshes_total", "issuer" => name.to_owned(), "result" => result);
        IssuerHandles {
            keys: metrics::gauge!("jwtd_jwks_keys", "issuer" => name.to_owned()),
            updated: refresh("updated"),
            unchanged: refresh("unchanged"),
            error: refresh("error"),
            last_success: metrics::gauge!("jwtd_jwks_last_success_timestamp_seconds", "issuer" => name.to_owned()),
            age: metrics::gauge!("jwtd_jwks_age_seconds", "issuer" => name.to_owned()),
            unknown_kid: metrics::counter!("jwtd_jwks_unknown_kid_refreshes_total", "issuer" => name.to_owned()),
            suppressed: metrics::counter!("jwtd_jwks_unknown_kid_suppressed_total", "issuer" => name.to_owned()),
        }
    }
}

/// Keeps one connection counted in `jwtd_connections{front}` while alive.
#[derive(Debug)]
pub struct OpenConnection(pub(super) Arc<AtomicU64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
