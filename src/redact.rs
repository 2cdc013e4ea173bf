//! Text that is safe to log: URLs without their credentials, and strings
//! from tokens that cannot forge or hide log lines.
//!
//! Every URL jwtd logs or puts in an error (Redis, JWKS, discovery, a
//! redirect target) goes through [`url`] first. A Redis URL carries its
//! password in the userinfo (`redis://:secret@host`), and key-set URLs may
//! carry an API key in the query string (`?token=...`); neither may reach a
//! log line or an error message an operator pastes into a ticket.
//!
//! This module is a leaf: it imports nothing of the crate, so the core, key
//! sources, revocation and the command line can all use it.

/// `url` with its userinfo replaced by `***` and its query string and
/// fragment replaced by `?***` / `#***`; the scheme, host, port and path stay,
/// since they are what an operator needs to find the endpoint.
///
/// Text that does not parse as a URL is redacted by the same rules read
/// loosely: anything between `://` and the last `@` before the path, and
/// anything from the first `?` or `#`. This never fails and never returns
/// more than it was given.
///
/// ```
/// assert_eq!(jwtd::redact::url("redis://:hunter2@cache:6379/0"), "redis://***@cache:6379/0");
/// assert_eq!(jwtd::redact::url("https://idp.example/jwks?key=abc"), "https://idp.example/jwks?***");
/// assert_eq!(jwtd::redact::url("https://idp.example/jwks"), "https://idp.example/jwks");
/// ```
pub fn url(url: &str) -> String {
    // Query and fragment first: a `@` inside a query is not userinfo.
    let (head, tail) = match url.find(['?', '#']) {
        Some(i) => (
            &url[..i],
            if url[i..].starts_with('?') {
                "?***"
            } else {
                "#***"
            },
        ),
        None => (url, ""),
    };
    let (scheme, rest) = match head.find("://") {
        Some(i) => (&head[..i + 3], &head[i + 3..]),
        None => ("", head),
    };
    // The authority ends at the first `/` after the scheme.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***{}", &authority[at..]),
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{path}{tail}")
}

/// Each of `urls` through [`url`], joined by `, ` (for a list of Redis
/// cluster nodes in one log field).
pub fn urls<S: AsRef<str>>(urls: &[S]) -> String {
    urls.iter()
        .map(|u| url(u.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `s` cut to `max_chars` characters, with every character that could
/// forge a log line or hide what it says written as a `\u{..}` escape:
/// control characters (newlines, escape sequences), the Unicode line and
/// paragraph separators (U+2028, U+2029: JSON parsers in JavaScript and many
/// log viewers break lines there), and the bidirectional formatting
/// characters (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069:
/// "Trojan Source" reordering). A backslash is doubled, so an escape in the
/// output always came from here.
///
/// For strings taken from tokens or key sets (`kid`, `iss`), in text and
/// JSON logs alike: JSON escaping alone leaves U+2028 and U+202E as they are.
///
/// ```
/// assert_eq!(jwtd::redact::text("a\u{202e}b\nc", 64), "a\\u{202e}b\\u{a}c");
/// assert_eq!(jwtd::redact::text("abcdef", 3), "abc");
/// ```
pub fn text(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4));
    for c in s.chars().take(max_chars) {
        if c == '\\' {
            out.push_str("\\\\");
        } else if unsafe_in_logs(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters [`text`] escapes.
fn unsafe_in_logs(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_queries_never_survive() {
        for (given, shown) in [
            ("redis://user:pw@h:6379", "redis://***@h:6379"),
            ("redis://:pw@h", "redis://***@h"),
            ("rediss://u:p@h:1/2", "rediss://***@h:1/2"),
            ("https://h/jwks?api_key=s3cret", "https://h/jwks?***"),
            ("https://h/jwks#frag", "https://h/jwks#***"),
            ("https://u:p@h/a?b=c#d", "https://***@h/a?***"),
            ("https://h/p@th", "https://h/p@th"),
            ("https://h/x?redirect=a@b", "https://h/x?***"),
            ("not a url with pw@host", "***@host"),
            ("https://h/jwks", "https://h/jwks"),
            ("", ""),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
        assert!(!url("redis://a:b@c@d/").contains('b'));
    }

    #[test]
    fn token_text_cannot_forge_or_reorder_log_lines() {
        for (given, shown) in [
            ("kid-1", "kid-1"),
            ("a\nb", "a\\u{a}b"),
            (
                "a\r\n2026-12-05 INFO forged",
                "a\\u{d}\\u{a}2026-12-05 INFO forged",
            ),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("x\u{2028}y\u{2029}z", "x\\u{2028}y\\u{2029}z"),
            ("\u{202e}fdp.exe", "\\u{202e}fdp.exe"),
            (
                "\u{2066}\u{2069}\u{200f}\u{61c}",
                "\\u{2066}\\u{2069}\\u{200f}\\u{61c}",
            ),
            ("back\\slash", "back\\\\slash"),
            ("ünïcödé ok", "ünïcödé ok"),
        ] {
            assert_eq!(text(given, 64), shown, "{given:?}");
        }
        // Cut by characters, never inside one.
        assert_eq!(text("ééé", 2), "éé");
    }

    #[test]
    fn lists_are_redacted_item_by_item() {
        assert_eq!(
            urls(&["redis://:a@h1", "redis://h2?x=1"]),
            "redis://***@h1, redis://h2?***"
        );
    }
}
