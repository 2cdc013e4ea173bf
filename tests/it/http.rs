//! The HTTP front (`--http-socket`) of the real `jwtd serve`, spoken to over
//! its Unix socket with hand-written HTTP/1.0 and HTTP/1.1 requests, as
//! nginx `auth_request` and Envoy `ext_authz` send them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Jwtd, Response as Answer, exchange, now};

/// `jwtd serve` with an HTTP front: `config` is the TOML of its config
/// file (for `[[routes]]`), `extra` more flags.
fn start(config: &str, extra: &[&str]) -> Jwtd {
    Jwtd::builder()
        .http_front()
        .config(config)
        .args(extra)
        .start()
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// What nginx's `auth_request` subrequest looks like (literal unix: form).
fn nginx_check(front: &Jwtd, headers: &str) -> Answer {
    let mut s = connect(front.http_socket());
    exchange(
        &mut s,
        &format!("GET /verify HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"),
    )
}

#[test]
fn a_valid_token_is_200_with_its_claim_headers() {
    let front = start("", &["--forward-payload", "true"]);
    let token = front.token(json!({"aud": ["api", "other"], "scope": "read write"}));
    let a = nginx_check(&front, &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-jwt-sub"), Some("alice"));
    assert_eq!(a.header("x-jwt-iss"), Some("https://issuer.example"));
    assert_eq!(
        a.header("x-jwt-aud"),
        Some("api other"),
        "arrays: space-separated"
    );
    assert_eq!(a.header("x-jwt-scope"), Some("read write"));
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(a.header("x-jwt-payload"), Some(payload));
    assert_eq!(
        a.header("x-envoy-auth-headers-to-remove"),
        None,
        "every claim present"
    );
    // The scheme is case-insensitive (RFC 7235).
    let a = nginx_check(&front, &format!("authorization: bearer {token}\r\n"));
    assert_eq!(a.status, 200);
}

#[test]
fn missing_and_invalid_tokens_are_401_with_rfc_6750_challenges() {
    let front = start("", &[]);
    let a = nginx_check(&front, "");
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer"),
        "no error code without credentials"
    );
    let expired = front.token(json!({"exp": now() - 3600}));
    for bad in ["garbage", "a.b.c", expired.as_str()] {
        let a = nginx_check(&front, &format!("Authorization: Bearer {bad}\r\n"));
        assert_eq!(a.status, 401, "{bad}");
        assert_eq!(
            a.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
        assert_eq!(
            a.header("x-jwt-reason"),
            None,
            "reasons stay private by default"
        );
        assert_eq!(a.header("x-jwt-sub"), None);
    }
    // Another scheme is no bearer token.
    let a = nginx_check(&front, "Authorization: Basic YWxpY2U6cHc=\r\n");
    assert_eq!(
        (a.status, a.header("www-authenticate")),
        (401, Some("Bearer"))
    );
}

#[test]
fn the_debug_header_names_the_reason_only_when_enabled() {
    let front = start("", &["--debug-reason", "true"]);
    let expired = front.token(json!({"exp": now() - 3600}));
    let a = nginx_check(&front, &format!("Authorization: Bearer {expired}\r\n"));
    assert_eq!(a.header("x-jwt-reason"), Some("expired"));
}

#[test]
fn keep_alive_serves_many_checks_on_one_connection_with_any_method_and_path() {
    let front = start("", &[]);
    let token = front.token(json!({}));
    let mut s = connect(front.http_socket());
    // As Envoy sends them: the original method, path_prefix + path.
    for (method, path) in [
        ("GET", "/verify/app"),
        ("POST", "/verify/app/orders?x=1"),
        ("DELETE", "/"),
    ] {
        let a = exchange(
            &mut s,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: app.example\r\ncontent-length: 0\r\nauthorization: Bearer {token}\r\n\r\n"
            ),
        );
        assert_eq!(a.status, 200, "{method} {path}");
    }
    let a = exchange(&mut s, "GET /verify HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.status, 401, "the same connection, no token");
}

#[test]
fn routes_require_their_scopes_with_403() {
    let routes = r#"
        [[routes]]
        prefix = "/api/"
        scopes = ["read"]

        [[routes]]
        prefix = "/api/admin/"
        scopes = ["admin"]
    "#;
    // Envoy style: path_prefix + the client's path; X-Original-URI ignored.
    let envoy = start(routes, &["--http-path-prefix", "/verify"]);
    // nginx style: the client's URI in X-Original-URI.
    let nginx = start(routes, &[]);
    let reader = envoy.token(json!({"scope": "read"}));
    let admin = envoy.token(json!({"scp": ["read", "admin"]}));
    let check = |front: &Jwtd, path: &str, token: &str, original: Option<&str>| {
        let mut s = connect(front.http_socket());
        let original = original.map_or(String::new(), |o| format!("X-Original-URI: {o}\r\n"));
        exchange(
            &mut s,
            &format!("GET {path} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n{original}\r\n"),
        )
    };
    assert_eq!(
        check(&envoy, "/verify/api/orders", &reader, None).status,
        200
    );
    let denied = check(&envoy, "/verify/api/admin/users", &reader, None);
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"admin\"")
    );
    assert_eq!(
        check(&envoy, "/verify/api/admin/users", &admin, None).status,
        200
    );
    assert_eq!(
        check(&envoy, "/verify/api/admin/users", &reader, Some("/public")).status,
        403,
        "a client-sent X-Original-URI picked its route in Envoy mode"
    );
    // nginx: the original URI, the query ignored.
    let nginx_reader = nginx.token(json!({"scope": "read"}));
    let r = nginx_reader.as_str();
    assert_eq!(
        check(&nginx, "/verify", r, Some("/api/admin/x?y=1")).status,
        403
    );
    assert_eq!(check(&nginx, "/verify", r, Some("/public")).status, 200);
    // No spelling of the path slips past the route (the app may decode or
    // normalize it): escapes, repeated slashes, dot segments, `;`.
    for sneaky in [
        "/api/%61dmin/users",
        "/api//admin/users",
        "/api/./admin/users",
        "/api/x/../admin/users",
        "/api/x/..;/admin/users",
        "/api/admin/../orders",
        "/api/admin",
    ] {
        assert_eq!(
            check(&nginx, "/verify", r, Some(sneaky)).status,
            403,
            "{sneaky}"
        );
        assert_eq!(
            check(&envoy, &format!("/verify{sneaky}"), &reader, None).status,
            403,
            "{sneaky} (Envoy style)"
        );
    }
}

#[test]
fn cookies_always_and_query_parameters_only_when_named() {
    let front = start("", &["--token-cookie", "session"]);
    let token = front.token(json!({}));
    let a = nginx_check(&front, &format!("Cookie: theme=dark; session={token}\r\n"));
    assert_eq!(a.status, 200);
    let mut s = connect(front.http_socket());
    let a = exchange(
        &mut s,
        &format!("GET /verify?access_token={token} HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(a.status, 401, "a query token without token_query");

    let front = start("", &["--token-query", "access_token"]);
    let token = front.token(json!({}));
    let mut s = connect(front.http_socket());
    let a = exchange(
        &mut s,
        &format!("GET /verify?x=1&access_token={token} HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(a.status, 200);
    // Behind nginx the client's query is in X-Original-URI.
    let mut s = connect(front.http_socket());
    let a = exchange(
        &mut s,
        &format!("GET /verify HTTP/1.0\r\nX-Original-URI: /app?access_token={token}\r\n\r\n"),
    );
    assert_eq!(a.status, 200);
}

#[test]
fn no_keys_yet_is_503_never_allowed() {
    let front = Jwtd::builder()
        .http_front()
        .no_jwks_file()
        .args(["--jwks-url", "http://127.0.0.1:9/jwks.json"])
        .start();
    let token = front.token(json!({}));
    let a = nginx_check(&front, &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(a.status, 503, "{a:?}");
}

#[test]
fn claims_the_token_lacks_are_listed_for_envoy_to_remove() {
    let front = start("", &[]);
    let token = front.token(json!({"aud": "api"}));
    let a = nginx_check(&front, &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-jwt-scope"), None);
    // A client-sent x-jwt-scope must not survive to the upstream.
    assert_eq!(
        a.header("x-envoy-auth-headers-to-remove"),
        Some("x-jwt-scope")
    );
}

#[test]
fn claim_headers_token_header_and_strip_token_are_configurable() {
    let config = r#"
        token_header = "x-access-token"
        strip_token = true
        [claim_headers]
        x-user = "sub"
        x-roles = "realm_access.roles"
        x-tenant = "https://example.com/tenant"
        x-missing = "nope"
    "#;
    let front = start(config, &[]);
    let token = front.token(json!({
        "realm_access": {"roles": ["ops", "dev"]},
        "https://example.com/tenant": "acme",
    }));
    let a = nginx_check(&front, &format!("X-Access-Token: {token}\r\n"));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-user"), Some("alice"));
    assert_eq!(a.header("x-roles"), Some("ops dev"));
    assert_eq!(a.header("x-tenant"), Some("acme"));
    assert_eq!(
        a.header("x-jwt-sub"),
        None,
        "the mapping replaces the defaults"
    );
    assert_eq!(
        a.header("x-envoy-auth-headers-to-remove"),
        Some("x-missing,x-access-token")
    );
    // `Bearer ` is optional in a custom header; Authorization is not read.
    let a = nginx_check(&front, &format!("X-Access-Token: Bearer {token}\r\n"));
    assert_eq!(a.status, 200);
    let a = nginx_check(&front, &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(a.status, 401);
}

#[test]
fn routes_can_require_claim_values() {
    let routes = r#"
        [[routes]]
        prefix = "/ops/"
        claims = { "realm_access.roles" = ["ops", "sre"], tier = ["gold"] }

        [[routes]]
        prefix = "/ops/status"
    "#;
    let front = start(routes, &[]);
    let ops = front.token(json!({"realm_access": {"roles": ["dev", "ops"]}, "tier": "gold"}));
    let dev = front.token(json!({"realm_access": {"roles": ["dev"]}, "tier": "gold"}));
    let no_tier = front.token(json!({"realm_access": {"roles": ["ops"]}}));
    let check = |token: &str, original: &str| {
        nginx_check(
            &front,
            &format!("Authorization: Bearer {token}\r\nX-Original-URI: {original}\r\n"),
        )
    };
    assert_eq!(check(&ops, "/ops/deploy").status, 200);
    let denied = check(&dev, "/ops/deploy");
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    assert_eq!(
        check(&no_tier, "/ops/deploy").status,
        403,
        "every claim must match"
    );
    assert_eq!(
        check(&dev, "/ops/status").status,
        200,
        "a route without requirements"
    );
    assert_eq!(check(&dev, "/elsewhere").status, 200);
    // `/ops/status` covers itself and what is below it, not a neighbour
    // that merely starts with its name; case does not open a way round.
    assert_eq!(check(&dev, "/ops/status/live").status, 200);
    for sneaky in [
        "/ops/statusz",
        "/ops/status-dump",
        "/OPS/deploy",
        "/Ops/Statusz",
    ] {
        assert_eq!(check(&dev, sneaky).status, 403, "{sneaky}");
    }
}

#[test]
fn the_front_also_listens_on_tcp_when_asked() {
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let front = start("", &["--http-listen", &addr]);
    let token = front.token(json!({}));
    let mut s = std::net::TcpStream::connect(&addr).expect("the TCP front");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET /verify HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-jwt-sub: alice"),
        "{text}"
    );
}

#[test]
fn idle_and_slow_connections_are_closed_after_idle_timeout() {
    let front = start("", &["--idle-timeout", "1s"]);
    let token = front.token(json!({}));
    // Kept alive after a check, then idle.
    let mut idle = connect(front.http_socket());
    let a = exchange(
        &mut idle,
        &format!("GET /verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"),
    );
    assert_eq!(a.status, 200);
    // Half a request header, never finished.
    let mut slow = connect(front.http_socket());
    slow.write_all(b"GET /verify HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    for s in [&mut idle, &mut slow] {
        let mut rest = Vec::new();
        // EOF (the server closed), not the 10 s read timeout.
        let _ = s.read_to_end(&mut rest);
        assert!(started.elapsed() < Duration::from_secs(8), "not closed");
    }
}

/// Reads until the server closes the connection; returns what it sent.
fn read_until_closed(s: &mut UnixStream) -> String {
    let mut rest = Vec::new();
    // EOF or a reset: both mean closed. The caller's read timeout bounds it.
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "not closed: {e}; read {:?}",
            String::from_utf8_lossy(&rest)
        ),
    }
    String::from_utf8_lossy(&rest).into_owned()
}

#[test]
fn an_oversized_request_head_is_431_and_the_front_keeps_serving() {
    let front = start("", &[]);
    // 40 KB of headers: over the 32 KiB default, far under hyper's own
    // ~400 KB limit.
    let big = "a".repeat(1000);
    let headers: String = (0..40).map(|i| format!("X-Big-{i}: {big}\r\n")).collect();
    let mut s = connect(front.http_socket());
    s.write_all(format!("GET /verify HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
        .expect("write");
    let text = read_until_closed(&mut s);
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "expected 431, got {text:?}"
    );
    // Just under the limit: decided as usual.
    let headers: String = (0..28).map(|i| format!("X-Big-{i}: {big}\r\n")).collect();
    let token = front.token(json!({}));
    let a = nginx_check(
        &front,
        &format!("Authorization: Bearer {token}\r\n{headers}"),
    );
    assert_eq!(a.status, 200);
    // A lower limit is honoured.
    let small = start("", &["--max-header-bytes", "8192"]);
    let headers: String = (0..10).map(|i| format!("X-Big-{i}: {big}\r\n")).collect();
    let mut s = connect(small.http_socket());
    s.write_all(format!("GET /verify HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
        .expect("write");
    assert!(read_until_closed(&mut s).starts_with("HTTP/1.1 431"));
}

#[test]
fn a_slow_request_head_is_closed_after_the_header_deadline_while_others_are_served() {
    // Defaults: header_timeout 10 s, idle_timeout 5 min.
    let front = start("", &[]);
    let token = front.token(json!({}));
    let check = format!("GET /verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    // A kept-alive connection that goes idle after one check.
    let mut idle = connect(front.http_socket());
    assert_eq!(exchange(&mut idle, &check).status, 200);
    // A head that starts and never ends (one byte more now and then).
    let mut slow = connect(front.http_socket());
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    slow.write_all(b"GET /verify HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    // Meanwhile a fresh client is served.
    let mut fresh = connect(front.http_socket());
    assert_eq!(exchange(&mut fresh, &check).status, 200);
    let trickle = slow.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        let mut trickle = trickle;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_secs(1));
            if trickle.write_all(b"X").is_err() {
                return;
            }
        }
    });
    read_until_closed(&mut slow);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(50),
        "closed after {took:?}, the header deadline is 10 s"
    );
    drop(slow);
    let _ = dripping.join();
    // The idle keep-alive connection is not the header deadline's: it still
    // serves (idle_timeout is 5 min).
    assert_eq!(exchange(&mut idle, &check).status, 200);
}

/// A group the test process may give a file, other than its own group when
/// there is one: a supplementary group, or (as root) `nogroup`'s 65534.
/// With its name from /etc/group when it has one.
fn another_group() -> (u32, Option<String>) {
    let egid = unsafe { libc::getegid() };
    let mut groups = vec![0 as libc::gid_t; 256];
    let n = unsafe { libc::getgroups(256, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(n).unwrap_or(0));
    let gid =
        groups
            .into_iter()
            .find(|&g| g != egid)
            .unwrap_or(if unsafe { libc::geteuid() } == 0 {
                65534
            } else {
                egid
            });
    let name = std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == gid.to_string()).then(|| f[0].to_owned())
        });
    (gid, name)
}

#[test]
fn socket_group_is_given_to_every_socket_and_an_unknown_group_is_exit_64() {
    use std::os::unix::fs::MetadataExt;
    let (gid, name) = another_group();
    if gid == unsafe { libc::getegid() } {
        eprintln!("note: the test user has no second group; only the own group is checked");
    }
    // By name when the group has one, else by number.
    let group = name.clone().unwrap_or_else(|| gid.to_string());
    let front = Jwtd::builder()
        .http_front()
        .grpc_front()
        .args(["--socket-group", &group])
        .start();
    for socket in [&front.socket, front.http_socket(), front.grpc_socket()] {
        let meta = std::fs::metadata(socket).expect("socket");
        assert_eq!(meta.gid(), gid, "{}", socket.display());
        assert_eq!(meta.mode() & 0o777, 0o660, "{}", socket.display());
    }
    // The numeric form works too.
    if name.is_some() {
        let numeric = start("", &["--socket-group", &gid.to_string()]);
        assert_eq!(std::fs::metadata(numeric.http_socket()).unwrap().gid(), gid);
    }
    // An unknown group name: a configuration problem.
    let exited = Jwtd::builder()
        .args(["--socket-group", "no-such-group-jwtd"])
        .run_until_exit();
    assert_eq!(exited.code, Some(64), "{}", exited.log);
    let stderr = exited.log;
    assert!(
        stderr.contains("socket_group: no group named \"no-such-group-jwtd\""),
        "{stderr}"
    );
}
