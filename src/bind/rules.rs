//! The security guides' device and address bindings, as configured
//! `[[bindings]]` rules: a claim of the token compared with something the
//! request carries.
//!
//! - **Device**: `equals = "sha256(user-agent, accept-language)"`: the
//!   claim must be base64url (no padding) of SHA-256 over the named
//!   headers' values, in the order listed, each trimmed of surrounding
//!   blanks (an absent header is the empty string), joined by one `\n`
//!   ([`device_fingerprint`]). The issuer computes the same from the
//!   request that obtained the token.
//! - **Address**: `equals = "client_ip"`: the claim is an IP address or a
//!   CIDR block (`10.0.0.0/8`, `2001:db8::/32`), or an array of them; the
//!   client address the proxy reports must be one of them.
//!
//! A rule applies to a request when its `issuer` (if set) is the token's
//! and its `prefix` (if set) covers the request's path as routes read it
//! (every reading: raw, normalized, case folded; `crate::route`), so no
//! spelling of a bound path slips past its rule; and only where the
//! front reports what it compares: request headers (proxy fronts) for a
//! device rule, the client address (proxy fronts; native VERIFY with
//! context) for an address rule. A token without the claim is refused
//! unless the rule says `if_missing = "allow"`.

use std::net::IpAddr;

use base64::Engine;
use serde_json::Value;

use crate::request::Context;
use crate::verify::B64URL;

/// What a rule compares the claim with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// SHA-256 over these request headers (lower-case names), in order.
    Device(Vec<String>),
    /// The client's address.
    ClientIp,
}

impl Source {
    /// Parses an `equals` value: `client_ip`, or `sha256(h1, h2, ...)`.
    ///
    /// # Errors
    ///
    /// What is wrong with it, for the configuration report.
    pub fn parse(text: &str) -> Result<Source, String> {
        let text = text.trim();
        if text == "client_ip" {
            return Ok(Source::ClientIp);
        }
        let inner = text
            .strip_prefix("sha256(")
            .and_then(|t| t.strip_suffix(')'))
            .ok_or_else(|| {
                format!("{text:?}: expected \"client_ip\" or \"sha256(header, ...)\"")
            })?;
        let headers: Vec<String> = inner
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        if headers.iter().any(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
        }) {
            return Err(format!("{text:?}: list header names, comma-separated"));
        }
        Ok(Source::Device(headers))
    }
}

/// What happens to a token without the rule's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missing {
    /// Refused (the default: a rule is configured to bind tokens).
    #[default]
    Refuse,
    /// Passes (while issuers start adding the claim).
    Allow,
}

/// One `[[bindings]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The claim (top-level name) holding the bound value.
    pub claim: String,
    /// What it must match.
    pub source: Source,
    /// Only tokens of this issuer (`iss`), when set.
    pub issuer: Option<String>,
    /// Only requests under this path prefix, when set.
    pub prefix: Option<String>,
    /// A token without the claim.
    pub if_missing: Missing,
}

/// Whether the rule is met; `true` when it does not apply. `iss` is the
/// token's issuer, `raw` its payload.
pub fn met(rule: &Rule, iss: Option<&str>, raw: &[u8], ctx: &Context<'_>) -> bool {
    if rule.issuer.as_deref().is_some_and(|want| iss != Some(want)) {
        return true;
    }
    if let Some(prefix) = &rule.prefix
        && !ctx
            .path
            .is_some_and(|path| crate::route::any_reading_covers(prefix, path))
    {
        return true;
    }
    match &rule.source {
        Source::Device(_) if ctx.headers.is_none() => return true,
        Source::ClientIp if ctx.client.is_none() && ctx.path.is_none() => return true,
        _ => {}
    }
    let payload = crate::route::members(raw, |key| key == rule.claim);
    let Some(value) = payload.get(&rule.claim) else {
        return rule.if_missing == Missing::Allow;
    };
    match &rule.source {
        Source::Device(headers) => {
            let want = device_fingerprint(headers.iter().map(|h| ctx.header(h)));
            value.as_str() == Some(want.as_str())
        }
        // A proxy front that could not say who the client is fails the
        // rule rather than skipping it.
        Source::ClientIp => ctx.client.is_some_and(|ip| ip_matches(value, ip)),
    }
}

/// The device fingerprint of these header values (see the module doc).
pub fn device_fingerprint<'a>(values: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (i, value) in values.enumerate() {
        if i > 0 {
            ctx.update(b"\n");
        }
        ctx.update(value.unwrap_or_default().trim().as_bytes());
    }
    B64URL.encode(ctx.finish())
}

/// Whether `ip` is one of the addresses or blocks of a claim value (a
/// string, or an array of strings).
pub fn ip_matches(value: &Value, ip: IpAddr) -> bool {
    match value {
        Value::String(s) => in_block(s, ip),
        Value::Array(items) => items
            .iter()
            .any(|v| v.as_str().is_some_and(|s| in_block(s, ip))),
        _ => false,
    }
}

/// Whether `ip` is `text` (an address) or inside it (a CIDR block). An
/// IPv4 client seen as an IPv4-mapped IPv6 address matches IPv4 blocks.
fn in_block(text: &str, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => match b.parse::<u8>() {
            Ok(bits) => (a, Some(bits)),
            Err(_) => return false,
        },
        None => (text, None),
    };
    let Ok(net) = addr.trim().parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let bits = bits.unwrap_or(32);
            bits <= 32
                && prefix_eq(
                    u128::from(u32::from(n)) << 96,
                    u128::from(u32::from(i)) << 96,
                    bits,
                )
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let bits = bits.unwrap_or(128);
            bits <= 128 && prefix_eq(u128::from(n), u128::from(i), bits)
        }
        _ => false,
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8) -> bool {
    let mask = match bits {
        0 => 0,
        n => u128::MAX << (128 - u32::from(n)),
    };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_parse() {
        assert_eq!(Source::parse("client_ip"), Ok(Source::ClientIp));
        assert_eq!(
            Source::parse("sha256(User-Agent, accept-language)"),
            Ok(Source::Device(vec![
                "user-agent".into(),
                "accept-language".into()
            ]))
        );
        for bad in ["sha256()", "sha256(a,,b)", "md5(a)", "sha256(a b)", "ip"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_and_blocks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ip_matches(&json!("10.1.2.3"), ip("10.1.2.3")));
        assert!(!ip_matches(&json!("10.1.2.3"), ip("10.1.2.4")));
        assert!(ip_matches(&json!("10.0.0.0/8"), ip("10.200.0.1")));
        assert!(!ip_matches(&json!("10.0.0.0/8"), ip("11.0.0.1")));
        assert!(ip_matches(&json!("0.0.0.0/0"), ip("192.0.2.1")));
        assert!(ip_matches(&json!("2001:db8::/32"), ip("2001:db8:1::1")));
        assert!(!ip_matches(&json!("2001:db8::/32"), ip("2001:db9::1")));
        assert!(ip_matches(&json!("192.0.2.0/24"), ip("::ffff:192.0.2.7")));
        assert!(ip_matches(
            &json!(["1.1.1.1", "10.0.0.0/8"]),
            ip("10.0.0.9")
        ));
        for bad in [
            json!("10.0.0.0/33"),
            json!("10.0.0.0/x"),
            json!("host"),
            json!(7),
            json!({}),
        ] {
            assert!(!ip_matches(&bad, ip("10.0.0.1")), "{bad}");
        }
        assert!(!ip_matches(&json!("10.0.0.1"), ip("::1")));
    }

    #[test]
    fn fingerprint_is_sha256_of_trimmed_values_joined_by_newlines() {
        let got = device_fingerprint([Some(" curl/8 "), None, Some("gzip")].into_iter());
        let want = B64URL.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            b"curl/8\n\ngzip",
        ));
        assert_eq!(got, want);
    }
}
