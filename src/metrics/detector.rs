//! The surge detector: anomaly counts in, `jwtd_anomaly_surge{kind}` and a
//! `jwtd::security` log line on each change out. Ticked by the admin
//! listener's thread, never on a request path.

use metrics::Gauge;

use super::security::Kind;

/// Surge detection over the anomaly counts: an EWMA of each kind's
/// per-second rate as its baseline, and the rate over the last
/// [`Detector::WINDOW`] seconds against it. Ticked once a second.
pub struct Detector {
    last: Vec<u64>,
    /// Per kind, the last `WINDOW` per-second rates (a ring).
    recent: Vec<[f64; Detector::WINDOW]>,
    at: usize,
    /// Ticks so far (the first `WINDOW` only learn).
    ticks: usize,
    baseline: Vec<f64>,
    surging: Vec<bool>,
    gauges: Vec<Gauge>,
}

impl Detector {
    /// Seconds the current rate is measured over.
    pub const WINDOW: usize = 10;
    /// Baseline time constant, seconds.
    pub const TAU: f64 = 300.0;
    /// A surge: the recent rate above this many times the baseline...
    pub const FACTOR: f64 = 10.0;
    /// ...and above this many events per second.
    pub const FLOOR: f64 = 1.0;

    /// A detector starting from `counts` (see
    /// [`Metrics::anomaly_counts`](super::Metrics::anomaly_counts)).
    pub fn new(counts: Vec<u64>) -> Detector {
        let n = counts.len();
        Detector {
            last: counts,
            recent: vec![[0.0; Detector::WINDOW]; n],
            at: 0,
            ticks: 0,
            baseline: vec![0.0; n],
            surging: vec![false; n],
            gauges: Kind::ALL
                .iter()
                .map(|k| metrics::gauge!("jwtd_anomaly_surge", "kind" => k.as_str()))
                .collect(),
        }
    }

    /// `secs` seconds passed (about one: the admin thread's tick, which may
    /// run late); `counts` are the totals now. Returns the kinds whose surge
    /// state changed (and logs each change).
    ///
    /// The first [`Detector::WINDOW`] ticks only learn: then each baseline
    /// is seeded with the *median* per-second rate of that window, so a
    /// steady background at start-up is normal (not a surge that takes half
    /// an hour to fade), while a burst in those seconds (a few busy seconds
    /// among quiet ones) is not mistaken for it and surges at once.
    pub fn tick(&mut self, counts: &[u64], secs: f64) -> Vec<(Kind, bool)> {
        let secs = secs.max(0.001);
        let mut changes = Vec::new();
        self.ticks += 1;
        self.at = (self.at + 1) % Detector::WINDOW;
        let warming = self.ticks < Detector::WINDOW;
        for (i, kind) in Kind::ALL.iter().enumerate() {
            let (Some(&now), Some(last)) = (counts.get(i), self.last.get_mut(i)) else {
                continue;
            };
            let per_second = now.saturating_sub(*last) as f64 / secs;
            *last = now;
            self.recent[i][self.at] = per_second;
            let rate = self.recent[i].iter().sum::<f64>() / Detector::WINDOW as f64;
            if warming {
                continue;
            }
            if self.ticks == Detector::WINDOW {
                let mut window = self.recent[i];
                window.sort_by(f64::total_cmp);
                self.baseline[i] = window[Detector::WINDOW / 2];
            }
            let baseline = self.baseline[i];
            // While a kind surges its baseline learns ten times slower: a
            // long attack stays visible for hours, yet a lasting new normal
            // is eventually accepted.
            let tau = if self.surging[i] {
                Detector::TAU * 10.0
            } else {
                Detector::TAU
            };
            self.baseline[i] = baseline + (per_second - baseline) * (1.0 - (-secs / tau).exp());
            let was = self.surging[i];
            let is = if was {
                rate >= (2.0 * baseline).max(Detector::FLOOR / 2.0)
            } else {
                rate > (Detector::FACTOR * baseline).max(Detector::FLOOR)
            };
            if is != was {
                self.surging[i] = is;
                if let Some(g) = self.gauges.get(i) {
                    g.set(if is { 1.0 } else { 0.0 });
                }
                if is {
                    tracing::warn!(target: "jwtd::security", kind = kind.as_str(), rate, baseline, "anomaly surge");
                } else {
                    tracing::info!(target: "jwtd::security", kind = kind.as_str(), rate, baseline, "anomaly surge over");
                }
                changes.push((*kind, is));
            }
        }
        changes
    }
}
