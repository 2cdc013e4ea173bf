//! Unit tests of `crate::metrics`.

use super::security::peek;
use super::*;

#[test]
fn every_documented_metric_has_help_text_and_no_other() {
    let doc = include_str!("../../docs/metrics.md");
    let documented: std::collections::BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `jwtd_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let described: std::collections::BTreeSet<&str> = HELP
        .iter()
        .map(|(n, _, _)| n.strip_prefix("jwtd_").unwrap_or(n))
        .collect();
    assert_eq!(documented, described);
}

#[test]
fn latency_histograms_render_cumulative_buckets() {
    let h = Latency {
        on: true,
        ..Latency::new()
    };
    h.record(3e-6);
    h.record_many(1.5e-4, 3);
    h.record(5.0);
    let mut out = String::new();
    h.render(&mut out, "front=\"native\",cache=\"hit\"");
    let line = |le: &str| {
        let key = format!(
            "jwtd_request_duration_seconds_bucket{{front=\"native\",cache=\"hit\",le=\"{le}\"}} "
        );
        out.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("{le} in {out}"))
            .to_owned()
    };
    assert_eq!(line("0.000002"), "0");
    assert_eq!(line("0.000005"), "1");
    assert_eq!(line("0.0002"), "4");
    assert_eq!(line("1"), "4");
    assert_eq!(line("+Inf"), "5");
    assert!(out.contains("_count{front=\"native\",cache=\"hit\"} 5"));
    // 3 us + 450 us + 5 s
    assert!(out.contains("_sum{front=\"native\",cache=\"hit\"} 5.000453"));
    // Off (no recorder): nothing recorded.
    let off = Latency {
        on: false,
        ..Latency::new()
    };
    off.record(1.0);
    assert_eq!(off.count.load(Ordering::Relaxed), 0);
}

#[test]
fn every_kind_has_a_distinct_label() {
    let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Kind::ALL.len());
    for (i, k) in Kind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i);
    }
}

#[test]
fn a_burst_above_the_baseline_surges_and_then_subsides() {
    let kind = Kind::BadSignature.index();
    let mut counts = vec![0u64; Kind::ALL.len()];
    let mut d = Detector::new(counts.clone());
    // A steady background of 1 every other second: no surge.
    for s in 0..600 {
        counts[kind] += s % 2;
        assert!(d.tick(&counts, 1.0).is_empty(), "surge at second {s}");
    }
    // 50/s: a surge within the window, reported once.
    let mut changes = Vec::new();
    for _ in 0..20 {
        counts[kind] += 50;
        changes.extend(d.tick(&counts, 1.0));
    }
    assert_eq!(changes, [(Kind::BadSignature, true)]);
    // Back to the background: over once the window has passed.
    let mut changes = Vec::new();
    for s in 0..30 {
        counts[kind] += s % 2;
        changes.extend(d.tick(&counts, 1.0));
    }
    assert_eq!(changes, [(Kind::BadSignature, false)]);
}

#[test]
fn a_steady_rate_at_start_up_is_normal_and_a_burst_at_start_up_is_not() {
    let kind = Kind::UnknownKid.index();
    // 5/s from the first second on: learned, never a surge.
    let mut counts = vec![0u64; Kind::ALL.len()];
    let mut d = Detector::new(counts.clone());
    for s in 0..300 {
        counts[kind] += 5;
        assert!(d.tick(&counts, 1.0).is_empty(), "surge at second {s}");
    }
    // 300 at once in the first second, then quiet: a surge when the
    // warm-up ends.
    let mut counts = vec![0u64; Kind::ALL.len()];
    let mut d = Detector::new(counts.clone());
    counts[kind] += 300;
    let mut changes = Vec::new();
    for _ in 0..Detector::WINDOW {
        changes.extend(d.tick(&counts, 1.0));
    }
    assert_eq!(changes, [(Kind::UnknownKid, true)]);
}

#[test]
fn a_late_tick_is_not_read_as_a_faster_rate() {
    let kind = Kind::BadSignature.index();
    let mut counts = vec![0u64; Kind::ALL.len()];
    let mut d = Detector::new(counts.clone());
    for _ in 0..600 {
        counts[kind] += 2;
        assert!(d.tick(&counts, 1.0).is_empty());
    }
    // The admin thread stalled 30 s: 60 more events, still 2/s.
    counts[kind] += 60;
    assert!(d.tick(&counts, 30.0).is_empty());
}

#[test]
fn a_few_events_on_a_quiet_kind_do_not_surge() {
    let mut counts = vec![0u64; Kind::ALL.len()];
    let mut d = Detector::new(counts.clone());
    for s in 0..60 {
        // 5 events in one second: 0.5/s over the window, under the floor.
        if s == 30 {
            counts[Kind::AlgNone.index()] += 5;
        }
        assert!(d.tick(&counts, 1.0).is_empty());
    }
}

#[test]
fn security_logs_are_rate_limited_per_kind() {
    let m = Metrics::new(&[]);
    let logged = (0..25).filter(|_| m.log_limit.may_log(0).is_some()).count();
    // Within one second, 10; a second boundary in between allows more.
    assert!((10..=20).contains(&logged), "{logged}");
    assert!(
        m.log_limit.may_log(1).is_some(),
        "another kind has its own budget"
    );
}

#[test]
fn the_fingerprint_is_a_short_hash_and_peek_is_safe_on_garbage() {
    let fp = fingerprint(b"a.b.c");
    assert_eq!(fp.len(), 12);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(peek(b"garbage"), (None, None));
    assert_eq!(peek(b"..."), (None, None));
    // {"kid":"k\u0001\u2028"} . {"iss":"\u202ex"}
    use base64::Engine;
    let h = crate::verify::B64URL.encode(br#"{"kid":"k\u0001\u2028"}"#);
    let p = crate::verify::B64URL.encode(br#"{"iss":"\u202ex"}"#);
    let token = format!("{h}.{p}.sig");
    assert_eq!(
        peek(token.as_bytes()),
        (
            Some("k\\u{1}\\u{2028}".to_owned()),
            Some("\\u{202e}x".to_owned())
        )
    );
}
