//! Claim headers: the claims an allowed request carries upstream, as
//! header values (see the rules in [`super`]'s doc), and which header names
//! may carry them.

use std::sync::Arc;

use serde_json::Value;

use super::{AuthzConfig, CNF_JKT_HEADER, PAYLOAD_HEADER};
use crate::route::{asks, claim, members};
use crate::verify::Verified;

/// The claim headers for a valid token: one entry per mapping (`None`:
/// the token lacks the claim, or its value cannot be a header value; the
/// front must make sure the upstream does not get that header at all),
/// then the payload header if `forward_payload` is set.
pub fn headers(result: &Verified, config: &AuthzConfig) -> Vec<(Arc<str>, Option<String>)> {
    let payload = wanted_members(&result.claims.raw, config);
    let mut headers: Vec<(Arc<str>, Option<String>)> = config
        .claim_headers
        .iter()
        .map(|m| {
            let value = claim(&payload, &m.claim)
                .or_else(|| (m.claim == "scope").then(|| payload.get("scp")).flatten())
                .and_then(header_text)
                .filter(|v| is_header_value(v));
            (m.header.clone(), value)
        })
        .collect();
    // Listed on every allowed request where DPoP is accepted, so that a
    // client's own `x-jwt-cnf-jkt` is removed when the token is not
    // DPoP-bound.
    if config.cnf_header {
        static CNF_JKT: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| Arc::from(CNF_JKT_HEADER));
        headers.push((
            CNF_JKT.clone(),
            result.claims.cnf.as_ref().and_then(|c| c.jkt).map(|jkt| {
                use base64::Engine;
                crate::verify::B64URL.encode(jkt)
            }),
        ));
    }
    if config.forward_payload {
        use base64::Engine;
        static NAME: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| Arc::from(PAYLOAD_HEADER));
        headers.push((
            NAME.clone(),
            Some(crate::verify::B64URL.encode(&result.claims.raw)),
        ));
    }
    headers
}

/// The payload's members the claim headers ask for (`scp` too, the
/// fallback of `scope`), parsed; the rest only skimmed ([`members`]).
fn wanted_members(raw: &[u8], config: &AuthzConfig) -> Value {
    members(raw, |key| {
        key == "scp" || config.claim_headers.iter().any(|m| asks(&m.claim, key))
    })
}

/// A claim rendered as header text (see the module doc).
fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => Some(other.to_string()),
    }
}

/// Visible ASCII, spaces and tabs, not empty, no leading or trailing blank
/// (what every proxy accepts unchanged).
fn is_header_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        && !v.starts_with([' ', '\t'])
        && !v.ends_with([' ', '\t'])
}

/// Whether `name` may be a claim header: a lower-case HTTP token that is not
/// one the proxies own (hop-by-hop, framing, routing, the credentials).
pub fn valid_claim_header(name: &str) -> Result<(), &'static str> {
    const RESERVED: &[&str] = &[
        "authorization",
        "cookie",
        "host",
        "connection",
        "content-length",
        "content-type",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "www-authenticate",
    ];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err("not a lower-case header name (a-z, 0-9, -, _)");
    }
    if RESERVED.contains(&name) || name.starts_with("x-envoy-") {
        return Err("reserved for the proxy or the credentials");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::claim;
    use crate::server::authz::ClaimHeader;

    #[test]
    fn claims_render_as_header_text_or_not_at_all() {
        let payload: Value = serde_json::json!({
            "sub": "alice",
            "aud": ["a", "b"],
            "n": 5,
            "flag": true,
            "obj": {"k": "v"},
            "realm_access": {"roles": ["admin", "ops"]},
            "https://example.com/tenant": "acme",
            "bad": "line\nbreak",
            "uni": "Jos\u{e9}",
        });
        let text = |name: &str| {
            claim(&payload, name)
                .and_then(header_text)
                .filter(|v| is_header_value(v))
        };
        assert_eq!(text("sub").as_deref(), Some("alice"));
        assert_eq!(text("aud").as_deref(), Some("a b"));
        assert_eq!(text("n").as_deref(), Some("5"));
        assert_eq!(text("flag").as_deref(), Some("true"));
        assert_eq!(text("obj").as_deref(), Some(r#"{"k":"v"}"#));
        assert_eq!(text("realm_access.roles").as_deref(), Some("admin ops"));
        assert_eq!(text("https://example.com/tenant").as_deref(), Some("acme"));
        assert_eq!(text("bad"), None);
        assert_eq!(text("uni"), None);
        assert_eq!(text("missing"), None);
    }

    #[test]
    fn only_the_wanted_members_are_parsed_and_escaped_names_still_work() {
        let config = AuthzConfig {
            claim_headers: vec![
                ClaimHeader {
                    header: Arc::from("x-user"),
                    claim: "sub".into(),
                },
                ClaimHeader {
                    header: Arc::from("x-roles"),
                    claim: "realm_access.roles".into(),
                },
            ],
            ..AuthzConfig::default()
        };
        let raw = br#"{"sub":"a","jti":"j","exp":1,"realm_access":{"roles":["ops"]},"scp":["r"],"big":[1,2,3]}"#;
        let v = wanted_members(raw, &config);
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["realm_access", "scp", "sub"]);
        // A member name with an escape cannot be borrowed: parsed whole.
        let v = wanted_members(br#"{"sub":"a"}"#, &config);
        assert_eq!(v["sub"], "a");
        assert_eq!(wanted_members(b"not json", &config), Value::Null);
    }

    #[test]
    fn claim_header_names_are_checked() {
        assert!(valid_claim_header("x-user-id").is_ok());
        assert!(valid_claim_header("X-User").is_err());
        assert!(valid_claim_header("x user").is_err());
        assert!(valid_claim_header("").is_err());
        assert!(valid_claim_header("authorization").is_err());
        assert!(valid_claim_header("x-envoy-original-path").is_err());
    }
}
