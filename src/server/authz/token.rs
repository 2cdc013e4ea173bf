//! Where a proxy front finds the token: the configured header (with the
//! `Bearer` or `DPoP` scheme for `authorization`), then the cookie, then
//! (only if named) the query parameter; and the request's `DPoP` proof.

use super::AuthzConfig;
use crate::request::TokenScheme;

/// The token, by the configured order: header, cookie, query parameter,
/// with how it was presented. `cookies` are the values of every `Cookie`
/// header; `query` is the query string without `?`. Only the
/// `authorization` header's `DPoP` scheme (RFC 9449 7.1) presents a token
/// as DPoP; anything else is a bearer token.
pub fn find_token<'a>(
    header: Option<&'a str>,
    cookies: impl IntoIterator<Item = &'a str>,
    query: Option<&'a str>,
    config: &AuthzConfig,
) -> Option<(&'a str, TokenScheme)> {
    if let Some(value) = header {
        let value = value.trim();
        // Bytes, not chars: a header from Envoy may hold any UTF-8, and byte
        // 7 of it need not be a char boundary (`value.get(7..)` is safe once
        // the first seven bytes are the ASCII "bearer ").
        let scheme = |name: &[u8]| {
            value
                .as_bytes()
                .get(..name.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(name))
        };
        let authorization = config.token_header == "authorization";
        let (token, presented) = if scheme(b"bearer ") {
            (value.get(7..).unwrap_or(""), TokenScheme::Bearer)
        } else if authorization && scheme(b"dpop ") {
            (value.get(5..).unwrap_or(""), TokenScheme::Dpop)
        } else if authorization {
            // Another scheme (Basic...): no token here.
            return None;
        } else {
            (value, TokenScheme::Bearer)
        };
        let token = token.trim_start();
        return (!token.is_empty()).then_some((token, presented));
    }
    if let Some(name) = &config.token_cookie {
        for header in cookies {
            for pair in header.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == name
                    && !v.is_empty()
                {
                    return Some((v, TokenScheme::Bearer));
                }
            }
        }
    }
    if let Some(name) = &config.token_query {
        for pair in query?.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k == name
                && !v.is_empty()
            {
                return Some((v, TokenScheme::Bearer));
            }
        }
    }
    None
}

/// The `DPoP` proof from the values of every `DPoP` header: one value
/// that is one proof, or an empty proof (which no check accepts) when there
/// are several (RFC 9449 4.3: exactly one), including several joined by a
/// comma as a proxy may merge them.
pub fn find_proof<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<&'a [u8]> {
    let first = values.next()?;
    if values.next().is_some() || first.contains(',') {
        return Some(b"");
    }
    Some(first.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token alone, as the tests below were written.
    fn find_token<'a>(
        header: Option<&'a str>,
        cookies: impl IntoIterator<Item = &'a str>,
        query: Option<&'a str>,
        config: &AuthzConfig,
    ) -> Option<&'a str> {
        super::find_token(header, cookies, query, config).map(|(t, _)| t)
    }

    #[test]
    fn dpop_scheme_and_proofs() {
        let config = AuthzConfig::default();
        let found = |h| super::find_token(Some(h), [], None, &config);
        assert_eq!(found("DPoP a.b.c"), Some(("a.b.c", TokenScheme::Dpop)));
        assert_eq!(found("dpop   a.b.c "), Some(("a.b.c", TokenScheme::Dpop)));
        assert_eq!(found("Bearer a.b.c"), Some(("a.b.c", TokenScheme::Bearer)));
        assert_eq!(found("DPoP "), None);
        assert_eq!(found("DPoPa.b.c"), None);
        // A custom header has no DPoP scheme: its value is the token.
        let custom = AuthzConfig {
            token_header: "x-token".into(),
            ..AuthzConfig::default()
        };
        assert_eq!(
            super::find_token(Some("DPoP a.b.c"), [], None, &custom),
            Some(("DPoP a.b.c", TokenScheme::Bearer))
        );
        assert_eq!(find_proof(["p.p.p"].into_iter()), Some(&b"p.p.p"[..]));
        assert_eq!(find_proof(["p.p.p", "q.q.q"].into_iter()), Some(&b""[..]));
        assert_eq!(find_proof(["p.p.p, q.q.q"].into_iter()), Some(&b""[..]));
        assert_eq!(find_proof([].into_iter()), None);
    }

    #[test]
    fn the_token_comes_from_the_header_then_the_cookie_then_the_query() {
        let mut config = AuthzConfig {
            token_cookie: Some("jwt".into()),
            token_query: Some("access_token".into()),
            ..AuthzConfig::default()
        };
        let cookies = ["a=1; jwt=c.c.c", "b=2"];
        assert_eq!(
            find_token(
                Some("Bearer h.h.h"),
                cookies,
                Some("access_token=q"),
                &config
            ),
            Some("h.h.h")
        );
        assert_eq!(
            find_token(Some("bEaReR   h.h.h "), [], None, &config),
            Some("h.h.h")
        );
        // Another scheme in Authorization is no token, and does not fall
        // through to the cookie (the client chose its credentials).
        assert_eq!(
            find_token(Some("Basic dXNlcg=="), cookies, None, &config),
            None
        );
        assert_eq!(find_token(Some("Bearer "), cookies, None, &config), None);
        // Multi-byte characters around byte 7 (Envoy passes UTF-8 through).
        assert_eq!(find_token(Some("Beareré.b.c"), [], None, &config), None);
        assert_eq!(find_token(Some("ééééé"), [], None, &config), None);
        assert_eq!(find_token(None, cookies, None, &config), Some("c.c.c"));
        assert_eq!(
            find_token(None, ["jwt="], Some("x=1&access_token=q.q.q"), &config),
            Some("q.q.q")
        );
        config.token_query = None;
        assert_eq!(
            find_token(None, [], Some("access_token=q.q.q"), &config),
            None
        );
        // A custom header: the value is the token, `Bearer ` optional.
        config.token_header = "x-access-token".into();
        assert_eq!(find_token(Some("t.t.t"), [], None, &config), Some("t.t.t"));
        assert_eq!(
            find_token(Some("Bearer t.t.t"), [], None, &config),
            Some("t.t.t")
        );
        assert_eq!(
            find_token(Some("abcdefé.x"), [], None, &config),
            Some("abcdefé.x")
        );
    }
}
