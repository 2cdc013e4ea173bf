//! An outsider's attacks on tokens bound to the request, through the real
//! daemon's HTTP front exactly as the shipped `deploy/nginx.conf` calls it
//! (security review). Tests named `hole_*` were holes the review found,
//! kept as regressions now that they are fixed; the others are attacks that
//! held up. (The binding stage alone: `src/bind/attack_tests.rs`.)

use std::os::unix::net::UnixStream;
use std::time::Duration;

use base64::Engine;
use jwtd::sign::SigningKey;
use jwtd::verify::{Algorithm, B64URL};
use serde_json::{Map, json};

use crate::support::{Helper, Jwtd, Proxied, Response, exchange, free_port, now, repo_path};

/// A fresh proof by `key` for `method` `uri` and `token`.
fn proof(key: &SigningKey, method: &str, uri: &str, token: &str) -> String {
    let mut jti = [0u8; 12];
    aws_lc_rs::rand::fill(&mut jti).expect("random");
    key.dpop_proof(
        method,
        uri,
        Some(token.as_bytes()),
        now(),
        &B64URL.encode(jti),
        &Map::new(),
    )
    .expect("proof")
}

fn daemon(mode: &str, config: &str, extra: &[&str]) -> Jwtd {
    Jwtd::builder()
        .http_front()
        .config(config)
        .args(["--dpop", mode, "--debug-reason", "true"])
        .args(extra)
        .start()
}

/// The `auth_request` subrequest `deploy/nginx.conf` sends for a client
/// that sent `Host: {host}` and `{method} {uri}` over TLS from 192.0.2.7:
/// nginx forwards `$http_host` raw as X-Forwarded-Host.
fn nginx(d: &Jwtd, host: &str, method: &str, uri: &str, headers: &str) -> Response {
    let mut s = UnixStream::connect(d.http_socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    exchange(
        &mut s,
        &format!(
            "GET /verify HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\
             X-Original-Method: {method}\r\nX-Original-URI: {uri}\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: {host}\r\n\
             X-Real-IP: 192.0.2.7\r\n{headers}\r\n"
        ),
    )
}

fn outcome(r: &Response) -> (u16, Option<&str>) {
    (r.status, r.header("x-jwt-reason"))
}

/// nginx accepts `?` and `#` in `Host` (it refuses only `/`, blanks and
/// controls) and `deploy/nginx.conf` (a default server: any Host) forwards
/// `$http_host` as X-Forwarded-Host. jwtd builds `htu` as
/// `https://` + host + path and normalises it, cutting at the first `?`:
/// with `Host: api.example.com?` every path compares as `/`, so one proof
/// made for the root passes for any path (and with any host, a proof made
/// for another origin: see the next test).
#[test]
fn hole_a_question_mark_in_host_makes_a_root_proof_pass_for_any_path() {
    let d = daemon("allowed", "", &[]);
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = d.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    let p = proof(&client, "DELETE", "https://api.example.com/", &token);
    let r = nginx(
        &d,
        "api.example.com?",
        "DELETE",
        "/admin/users/42",
        &format!("Authorization: DPoP {token}\r\nDPoP: {p}\r\n"),
    );
    assert_eq!(
        outcome(&r),
        (401, Some("dpop_mismatch")),
        "a proof for https://api.example.com/ passed for /admin/users/42"
    );
}

/// The RS must check `htu` against its own URI (RFC 9449 4.3 step 9, 11.1:
/// a proof sent to another server must not be usable here). With the
/// shipped proxy configurations (nginx default server forwarding
/// `$http_host`, Envoy `domains: ["*"]`) and no `public_origin`, "its own
/// URI" is whatever Host the client sends: a proof (with its token) a
/// client sent to `https://evil.example` is accepted here.
#[test]
fn hole_without_public_origin_a_proof_for_another_origin_passes() {
    // jwtd cannot know which hosts are the app's: with public_origin unset
    // the htu is checked against the Host the client sent the proxy, so a
    // proxy that takes any Host lets a proof made for another site through.
    // The daemon says so at start; with public_origin set it is refused
    // (public_origin_pins_the_htu_whatever_the_host).
    let d = daemon("allowed", "", &[]);
    d.wait_log("DPoP on a proxy front without public_origin");
    let pinned = daemon(
        "allowed",
        "",
        &["--public-origin", "https://api.example.com"],
    );
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = pinned.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    let p = proof(&client, "GET", "https://evil.example/orders", &token);
    let r = nginx(
        &pinned,
        "evil.example",
        "GET",
        "/orders",
        &format!("Authorization: DPoP {token}\r\nDPoP: {p}\r\n"),
    );
    assert_eq!(
        outcome(&r),
        (401, Some("dpop_mismatch")),
        "a proof made for https://evil.example/orders was accepted"
    );
    assert!(!pinned.log().contains("without public_origin"));
}

/// A `[[bindings]]` rule's `prefix` is compared with the raw path only
/// (case folded), not the readings routes use; a rule that does not apply
/// passes. nginx forwards `$request_uri` raw and the app normalises it.
#[test]
fn hole_binding_rule_prefix_is_bypassed_by_an_unnormalised_path() {
    let config = r#"
[[bindings]]
claim = "ip"
equals = "client_ip"
prefix = "/admin/"
"#;
    let d = daemon("off", config, &[]);
    // Bound to 10/8; the thief is at 192.0.2.7.
    let token = d.token(json!({"ip": "10.0.0.0/8"}));
    let auth = format!("Authorization: Bearer {token}\r\n");
    let r = nginx(&d, "api.example.com", "GET", "/admin/users", &auth);
    assert_eq!(
        outcome(&r),
        (401, Some("binding_mismatch")),
        "the rule works"
    );
    let mut passed = Vec::new();
    for path in [
        "//admin/users",
        "/%61dmin/users",
        "/./admin/users",
        "/admin;x/users",
    ] {
        let r = nginx(&d, "api.example.com", "GET", path, &auth);
        if r.status == 200 {
            passed.push(path);
        }
    }
    assert!(
        passed.is_empty(),
        "the address binding on /admin/ was skipped for {passed:?}"
    );
}

/// The same hole end to end: a real nginx running the shipped
/// `deploy/nginx.conf` (only its addresses and paths changed) in front of a
/// stand-in app. The client sends `Host: 127.0.0.1:PORT?` and a proof made
/// for the site's root; nginx accepts the Host and jwtd lets a request for
/// `/admin/users/42` through to the app.
#[test]
fn hole_shipped_nginx_conf_lets_a_root_proof_through_for_any_path() {
    let Some(nginx_bin) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("nginx not installed: skipped");
        return;
    };
    let jwtd = Jwtd::builder()
        .http_front()
        .args(["--dpop", "allowed"])
        .start();
    let (port, app_port) = (free_port(), free_port());
    let prefix = jwtd.dir.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let at = |f: &str| prefix.join(f).display().to_string();
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut conf = std::fs::read_to_string(repo_path("deploy/nginx.conf")).unwrap();
    for (from, to) in [
        (
            "user www-data;",
            if is_root { "user root;" } else { "" }.to_owned(),
        ),
        ("pid /run/nginx.pid;", format!("pid {};", at("nginx.pid"))),
        (
            "error_log /var/log/nginx/error.log warn;",
            format!("error_log {} warn;", at("error.log")),
        ),
        (
            "access_log /var/log/nginx/access.log;",
            "access_log off;".to_owned(),
        ),
        (
            "server unix:/run/jwtd/http.sock;",
            format!("server unix:{};", jwtd.http_socket().display()),
        ),
        (
            "server 127.0.0.1:8080;",
            format!("server 127.0.0.1:{app_port};"),
        ),
        ("listen 80;", format!("listen 127.0.0.1:{port};")),
    ] {
        assert_eq!(conf.matches(from).count(), 1, "{from}");
        conf = conf.replacen(from, &to, 1);
    }
    let end = conf.rfind('}').unwrap();
    conf.insert_str(
        end,
        &format!(
            "server {{ listen 127.0.0.1:{app_port}; location / {{ return 200 \"app reached: $request_uri sub=$http_x_jwt_sub\\n\"; }} }}\n"
        ),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut nginx = Helper::spawn(
        "nginx",
        std::process::Command::new(nginx_bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stderr(std::process::Stdio::null()),
    );
    nginx.wait_tcp(port);
    let stack = Proxied::new(jwtd, vec![nginx], port);
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = stack.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    let host = format!("127.0.0.1:{port}");
    let send = |host: &str, path: &str, proof: &str| {
        stack.send(&format!(
            "DELETE {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\
             Authorization: DPoP {token}\r\nDPoP: {proof}\r\n\r\n"
        ))
    };
    // Sanity: the proof for the root, used honestly for another path, is
    // refused.
    let root = format!("http://{host}/");
    let (status, _, _) = send(
        &host,
        "/admin/users/42",
        &proof(&client, "DELETE", &root, &token),
    );
    assert_eq!(status, 401);
    // The attack.
    let (status, head, body) = send(
        &format!("{host}?"),
        "/admin/users/42",
        &proof(&client, "DELETE", &root, &token),
    );
    assert_eq!(
        status, 401,
        "a DELETE /admin/users/42 with a proof for {root} reached the app:\n{head}\n{body}"
    );
}

// ---------------------------------------------------------------------------
// What held up.

/// A DPoP-bound token is refused as a bearer token wherever a bearer token
/// can come from, before and after it was verified (and cached) as DPoP;
/// the DPoP scheme in odd case and spacing is still DPoP.
#[test]
fn a_bound_token_never_passes_as_bearer_from_any_place() {
    let d = daemon(
        "allowed",
        "",
        &["--token-cookie", "at", "--token-query", "access_token"],
    );
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = d.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    let uri = "https://api.example.com/orders";
    let bearer_ways = [
        (
            "/orders".to_owned(),
            format!("Authorization: Bearer {token}\r\n"),
        ),
        (
            "/orders".to_owned(),
            format!("Authorization: bearer   {token}\r\n"),
        ),
        ("/orders".to_owned(), format!("Cookie: a=1; at={token}\r\n")),
        (format!("/orders?access_token={token}"), String::new()),
        // A proof alongside does not make a bearer token DPoP.
        (
            "/orders".to_owned(),
            format!(
                "Authorization: Bearer {token}\r\nDPoP: {}\r\n",
                proof(&client, "GET", uri, &token)
            ),
        ),
        // Two Authorization headers: the first one counts.
        (
            "/orders".to_owned(),
            format!("Authorization: Bearer {token}\r\nAuthorization: DPoP {token}\r\n"),
        ),
    ];
    let try_all = |when: &str| {
        for (path, headers) in &bearer_ways {
            let r = nginx(&d, "api.example.com", "GET", path, headers);
            assert_eq!(
                outcome(&r),
                (401, Some("bearer_downgrade")),
                "{when}: {path} {headers}"
            );
        }
    };
    try_all("before");
    for scheme in ["DPoP", "dpop", "DPOP"] {
        let headers = format!(
            "Authorization: {scheme}   {token} \r\nDPoP: {}\r\n",
            proof(&client, "GET", uri, &token)
        );
        let r = nginx(&d, "api.example.com", "GET", "/orders", &headers);
        assert_eq!(r.status, 200, "{scheme}: {r:?}");
    }
    try_all("after it was cached as DPoP");
    // Two DPoP headers, or two proofs in one: refused.
    let (p1, p2) = (
        proof(&client, "GET", uri, &token),
        proof(&client, "GET", uri, &token),
    );
    for headers in [
        format!("Authorization: DPoP {token}\r\nDPoP: {p1}\r\nDPoP: {p2}\r\n"),
        format!("Authorization: DPoP {token}\r\nDPoP: {p1}, {p2}\r\n"),
    ] {
        let r = nginx(&d, "api.example.com", "GET", "/orders", &headers);
        assert_eq!(outcome(&r), (401, Some("dpop_invalid")), "{headers}");
    }
}

/// With `public_origin`, the Host the client sends does not matter.
#[test]
fn public_origin_pins_the_htu_whatever_the_host() {
    let d = daemon(
        "allowed",
        "",
        &["--public-origin", "https://api.example.com"],
    );
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = d.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    for (host, htu, want) in [
        ("evil.example", "https://evil.example/orders", 401),
        ("api.example.com?", "https://api.example.com/", 401),
        ("evil.example", "https://api.example.com/orders", 200),
    ] {
        let p = proof(&client, "GET", htu, &token);
        let r = nginx(
            &d,
            host,
            "GET",
            "/orders",
            &format!("Authorization: DPoP {token}\r\nDPoP: {p}\r\n"),
        );
        assert_eq!(r.status, want, "Host {host}, htu {htu}: {r:?}");
    }
}

/// A client certificate header is never read unless `client_cert_header`
/// names it: a certificate-bound token with a forged `Client-Cert` or XFCC
/// is refused.
#[test]
fn forged_client_certificate_headers_are_not_trusted_by_default() {
    let d = daemon("off", "", &[]);
    let der = b"\x30\x03\x02\x01\x01";
    let x5t = B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der));
    let hex: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let token = d.token(json!({"cnf": {"x5t#S256": x5t}}));
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    for forged in [
        format!("Client-Cert: :{b64}:\r\n"),
        format!("X-Forwarded-Client-Cert: Hash={hex}\r\n"),
    ] {
        let r = nginx(
            &d,
            "api.example.com",
            "GET",
            "/",
            &format!("Authorization: Bearer {token}\r\n{forged}"),
        );
        assert_eq!(outcome(&r), (401, Some("cnf_mismatch")), "{forged}");
    }
}
