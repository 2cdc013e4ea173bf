//! jwtd's own request latency histogram (`jwtd_request_duration_seconds`):
//! fixed buckets, relaxed atomic counts, rendered in the Prometheus text
//! format next to the exporter's output.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Metrics;
use crate::request::Front;

/// Latency buckets, seconds: microseconds to a second.
pub(super) const LATENCY_BUCKETS: &[f64] = &[
    2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0,
];

/// Whether [`install`](super::install) ran: jwtd's own [`Latency`] histograms record only
/// then (the `metrics` handles are no-ops by themselves without a
/// recorder).
pub(super) static RECORDING: AtomicBool = AtomicBool::new(false);

/// `jwtd_request_duration_seconds`, kept by jwtd rather than by the
/// exporter: on the hot path the exporter's histogram costs an atomic
/// queue push per sample (about 10% of a native cache hit, measured with
/// `benches/metrics.sh`), while this is three relaxed adds per *batch*
/// (`record_many`: the native front records a read's hits at once).
/// Rendered by [`Metrics::render_latency`] in the Prometheus text format.
pub struct Latency {
    // Fields are pub(super) for the unit tests (tests.rs), which build one.
    pub(super) on: bool,
    /// Per bucket of [`LATENCY_BUCKETS`], plus `+Inf` (not cumulative).
    pub(super) buckets: Vec<AtomicU64>,
    /// Sum of samples, nanoseconds.
    pub(super) sum_ns: AtomicU64,
    pub(super) count: AtomicU64,
}

impl Latency {
    pub(super) fn new() -> Latency {
        Latency {
            on: RECORDING.load(Ordering::Relaxed),
            buckets: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self, secs: f64) {
        self.record_many(secs, 1);
    }

    pub(super) fn record_many(&self, secs: f64, n: u64) {
        if !self.on || n == 0 {
            return;
        }
        let i = LATENCY_BUCKETS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        let ns = (secs * 1e9) as u64;
        self.sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines for `labels`.
    pub(super) fn render(&self, out: &mut String, labels: &str) {
        use std::fmt::Write;
        let name = "jwtd_request_duration_seconds";
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_owned()))
            .enumerate()
        {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        // The count is the +Inf bucket: read once, so they agree.
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

impl Metrics {
    /// The request latency histograms in the Prometheus text format (append
    /// to the exporter's rendering).
    pub fn render_latency(&self) -> String {
        let mut out = String::from(
            "# HELP jwtd_request_duration_seconds Time from a request's arrival to its decision, by front and cache (hit: answered without verifying)\n# TYPE jwtd_request_duration_seconds histogram\n",
        );
        for (front, f) in Front::ALL.iter().zip(&self.fronts) {
            for (cache, h) in [("hit", &f.hit), ("miss", &f.miss)] {
                h.render(
                    &mut out,
                    &format!("front=\"{}\",cache=\"{cache}\"", front.as_str()),
                );
            }
        }
        out
    }
}
