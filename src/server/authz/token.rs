//! Where a proxy front finds the token: the configured header (with the
//! `Bearer` scheme for `authorization`), then the cookie, then (only if
//! named) the query parameter.

use super::AuthzConfig;

/// The token, by the configured order: header, cookie, query parameter.
/// `cookies` are the values of every `Cookie` header; `query` is the query
/// string without `?`.
pub fn find_token<'a>(
    header: Option<&'a str>,
    cookies: impl IntoIterator<Item = &'a str>,
    query: Option<&'a str>,
    config: &AuthzConfig,
) -> Option<&'a str> {
    if let Some(value) = header {
        let value = value.trim();
        // Bytes, not chars: a header from Envoy may hold any UTF-8, and byte
        // 7 of it need not be a char boundary (`value.get(7..)` is safe once
        // the first seven bytes are the ASCII "bearer ").
        let bearer = value
            .as_bytes()
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer "));
        let token = if bearer {
            value.get(7..).unwrap_or("").trim_start()
        } else if config.token_header == "authorization" {
            // Another scheme (Basic...): no bearer token here.
            return None;
        } else {
            value
        };
        return (!token.is_empty()).then_some(token);
    }
    if let Some(name) = &config.token_cookie {
        for header in cookies {
            for pair in header.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == name
                    && !v.is_empty()
                {
                    return Some(v);
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
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
