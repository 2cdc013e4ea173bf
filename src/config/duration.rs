//! The one duration syntax of jwtd, for every setting and every subcommand:
//! a whole number with an optional unit, `90` (seconds), `90s`, `500ms`,
//! `100us`, `15m`, `1h`, `7d`.

use std::time::Duration;

/// Parses a duration: `90`, `90s`, `500ms`, `100us`, `15m`, `1h`, `7d`; a
/// bare number is seconds.
///
/// # Errors
///
/// A message saying what is wrong.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use jwtd::config::parse_duration;
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number with an optional unit (us, ms, s, m, h, d)"
        )
    })?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too large"))
    };
    match unit {
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(format!(
            "invalid duration {s:?}: unknown unit {unit:?} (use us, ms, s, m, h or d)"
        )),
    }
}

/// Parses a duration that must be a whole number of seconds, for what is
/// compared with token times (NumericDates are seconds: `500ms` would
/// silently become 0).
///
/// # Errors
///
/// As [`parse_duration`], and a duration with a fraction of a second.
///
/// ```
/// use jwtd::config::parse_whole_seconds;
/// assert_eq!(parse_whole_seconds("2m"), Ok(120));
/// assert!(parse_whole_seconds("1500ms").is_err());
/// ```
pub fn parse_whole_seconds(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{d:?} is not a whole number of seconds"));
    }
    Ok(d.as_secs())
}
