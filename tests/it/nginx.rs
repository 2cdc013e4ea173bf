//! A real nginx (`auth_request`) in front of a stand-in app, asking the real
//! `jwtd serve` over its HTTP socket, with the configuration shipped in
//! `deploy/nginx.conf` (rendered with this test's ports and paths).
//!
//! nginx comes from Debian (`apt-get install nginx`; `scripts/test` installs
//! it). Each test runs its own nginx with `-p` a temp dir, on free loopback
//! ports, and stops it on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;
use serde_json::{Map, json};

use crate::support::{Helper, Jwtd, Proxied, free_port, now, repo_path};

/// jwtd with its HTTP front, and nginx in front of the stand-in app.
struct Stack(Proxied);

impl std::ops::Deref for Stack {
    type Target = Proxied;
    fn deref(&self) -> &Proxied {
        &self.0
    }
}

impl Stack {
    fn start() -> Stack {
        Stack::start_with(&[], false)
    }

    /// The same, jwtd with `jwtd_args` too; with `show_reason`, nginx also
    /// passes jwtd's `x-jwt-reason` (`--debug-reason true`) to the client
    /// (a test-only addition to the shipped file: see [`SHOW_REASON`]).
    fn start_with(jwtd_args: &[&str], show_reason: bool) -> Stack {
        let jwtd = Jwtd::builder()
            .http_front()
            .config(
                "[[routes]]\nprefix = \"/admin/\"\nscopes = [\"admin\"]\n\
                 [[routes]]\nprefix = \"/admin/health\"\n",
            )
            .args(jwtd_args)
            .start();
        let (port, app_port) = (free_port(), free_port());
        let prefix = jwtd.dir.path().join("nginx");
        let conf_path = render_conf(&prefix, jwtd.http_socket(), port, app_port);
        if show_reason {
            let conf = std::fs::read_to_string(&conf_path).expect("rendered nginx.conf");
            let conf = replace_once(&conf, "auth_request /_jwtd;", SHOW_REASON);
            std::fs::write(&conf_path, conf).expect("nginx.conf");
        }
        let mut nginx = Helper::spawn(
            "nginx",
            Command::new(nginx_bin())
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf_path)
                .args(["-g", "daemon off;"])
                .stderr(Stdio::null()),
        );
        nginx.wait_tcp(port);
        Stack(Proxied::new(jwtd, vec![nginx], port))
    }

    /// GET `path` through nginx (HTTP/1.0, one connection): status, raw
    /// headers, body.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        self.get_with(path, token, "")
    }

    /// The same, with more request headers (`Name: value\r\n` lines).
    fn get_with(&self, path: &str, token: Option<&str>, headers: &str) -> (u16, String, String) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        self.send(&format!(
            "GET {path} HTTP/1.0\r\nHost: app.example\r\n{auth}{headers}\r\n"
        ))
    }

    fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.jwtd.dir.path().join("nginx/error.log")).unwrap_or_default()
    }
}

/// Where nginx is installed (Debian's package).
fn nginx_bin() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is not installed: apt-get install nginx (scripts/test does)")
}

/// `deploy/nginx.conf` as shipped.
fn shipped_conf() -> String {
    std::fs::read_to_string(repo_path("deploy/nginx.conf")).expect("deploy/nginx.conf")
}

/// `s` with `from` (which must occur exactly once: a shipped file that
/// changed shape fails here, rather than running untested) replaced.
fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert_eq!(
        s.matches(from).count(),
        1,
        "deploy/nginx.conf should hold {from:?} exactly once"
    );
    s.replacen(from, to, 1)
}

/// The app behind nginx in the tests: echoes the claim headers it got, the
/// DPoP key's thumbprint and the DPoP proof, then the token (last).
const STAND_IN_APP: &str = r#"
    server {
        listen 127.0.0.1:APP_PORT;
        location / {
            return 200 "sub=$http_x_jwt_sub iss=$http_x_jwt_iss aud=$http_x_jwt_aud scope=$http_x_jwt_scope cnf_jkt=$http_x_jwt_cnf_jkt dpop=$http_dpop authorization=$http_authorization\n";
        }
    }
"#;

/// Replaces the shipped `auth_request /_jwtd;` in tests that assert refusal
/// reasons: nginx passes a 401's `WWW-Authenticate` only, so jwtd's
/// `x-jwt-reason` is copied to the client here. Not for production: the
/// reason tells a client why its token failed.
const SHOW_REASON: &str = "auth_request /_jwtd;
            auth_request_set $jwt_reason $upstream_http_x_jwt_reason;
            add_header X-Jwt-Reason $jwt_reason always;";

/// Writes `prefix/nginx.conf`: the shipped file with only its addresses and
/// file paths changed (this test's ports, jwtd's socket, files under
/// `prefix`), and [`STAND_IN_APP`] added.
fn render_conf(prefix: &Path, http_socket: &Path, port: u16, app_port: u16) -> PathBuf {
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
    let at = |file: &str| prefix.join(file).display().to_string();
    // As root, nginx's workers would drop to www-data, who cannot reach a
    // socket in this private temp dir.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut conf = shipped_conf();
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
            format!("server unix:{};", http_socket.display()),
        ),
        (
            "server 127.0.0.1:8080;",
            format!("server 127.0.0.1:{app_port};"),
        ),
        ("listen 80;", format!("listen 127.0.0.1:{port};")),
    ] {
        conf = replace_once(&conf, from, &to);
    }
    let end = conf.rfind('}').expect("the http block closes");
    conf.insert_str(
        end,
        &STAND_IN_APP.replace("APP_PORT", &app_port.to_string()),
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    path
}

#[test]
fn nginx_passes_good_tokens_with_claims_and_refuses_the_rest() {
    let stack = Stack::start();
    let good = stack.token(json!({"scope": "read"}));

    let (status, _, body) = stack.get("/orders", Some(&good));
    assert_eq!(status, 200, "{body}{}", stack.nginx_log());
    assert!(body.contains("sub=alice"), "{body}");
    assert!(body.contains("iss=https://issuer.example"), "{body}");
    assert!(body.contains("scope=read"), "{body}");
    assert!(
        body.trim_end().ends_with("authorization="),
        "the token reached the app: {body:?}"
    );

    let (status, head, _) = stack.get("/orders", None);
    assert_eq!(status, 401);
    assert_eq!(challenges(&head), ["Bearer"], "{head}");

    let expired = stack.token(json!({"exp": now() - 3600}));
    for bad in ["garbage", "a.b.c", expired.as_str()] {
        let (status, head, body) = stack.get("/orders", Some(bad));
        assert_eq!(status, 401, "{bad}: {body}");
        assert_eq!(
            challenges(&head),
            ["Bearer error=\"invalid_token\""],
            "{head}"
        );
        assert!(!body.contains("sub="), "the app was reached: {body}");
    }
}

#[test]
fn nginx_enforces_route_scopes_with_403() {
    let stack = Stack::start();
    let reader = stack.token(json!({"scope": "read"}));
    let admin = stack.token(json!({"scope": "read admin"}));
    let (status, head, _) = stack.get("/admin/users?page=2", Some(&reader));
    assert_eq!(status, 403);
    assert!(head.contains("insufficient_scope"), "{head}");
    let (status, _, body) = stack.get("/admin/users", Some(&admin));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn many_checks_over_the_kept_alive_upstream_all_succeed() {
    let stack = Stack::start();
    let token = stack.token(json!({}));
    for i in 0..50 {
        let (status, _, body) = stack.get(&format!("/item/{i}"), Some(&token));
        assert_eq!(status, 200, "request {i}: {body}{}", stack.nginx_log());
    }
}

#[test]
fn with_jwtd_gone_nginx_fails_closed_with_500() {
    let stack = Stack::start();
    let token = stack.token(json!({}));
    stack.jwtd.kill();
    let (status, _, body) = stack.get("/orders", Some(&token));
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("sub="), "the app was reached: {body}");
}

#[test]
fn forged_claim_headers_never_reach_the_app() {
    let stack = Stack::start();
    let token = stack.token(json!({}));
    let forged = "X-Jwt-Scope: admin\r\nX-Jwt-Sub: mallory\r\nX-Jwt-Aud: internal\r\n";
    let (status, _, _) = stack.get_with("/admin/users", Some(&token), forged);
    assert_eq!(status, 403, "the forged scope opened the admin route");
    let (status, _, body) = stack.get_with("/orders", Some(&token), forged);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sub=alice "), "{body}");
    assert!(body.contains("scope= "), "the forged scope passed: {body}");
    assert!(body.contains("aud= "), "the forged audience passed: {body}");
}

/// The values of every `WWW-Authenticate` header in a response head.
fn challenges(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, value)| value.trim())
        .collect()
}

#[test]
fn every_refusal_carries_exactly_one_challenge() {
    let stack = Stack::start();
    let reader = stack.token(json!({"scope": "read"}));
    let (status, head, _) = stack.get("/orders", None);
    assert_eq!(status, 401);
    assert_eq!(challenges(&head), ["Bearer"], "{head}");
    let (status, head, _) = stack.get("/orders", Some("a.b.c"));
    assert_eq!(status, 401);
    assert_eq!(
        challenges(&head),
        ["Bearer error=\"invalid_token\""],
        "{head}"
    );
    let (status, head, _) = stack.get("/admin/users", Some(&reader));
    assert_eq!(status, 403);
    assert_eq!(
        challenges(&head),
        ["Bearer error=\"insufficient_scope\", scope=\"admin\""],
        "{head}"
    );
    let (status, head, _) = stack.get("/orders", Some(&reader));
    assert_eq!(status, 200);
    assert!(challenges(&head).is_empty(), "{head}");
}

#[test]
fn routes_ignore_case_and_end_on_segment_boundaries_behind_nginx() {
    let stack = Stack::start();
    let reader = stack.token(json!({"scope": "read"}));
    let admin = stack.token(json!({"scope": "admin"}));
    // `/admin/` needs admin; `/admin/health` is open to any valid token.
    for (path, status) in [
        ("/admin/users", 403),
        ("/ADMIN/users", 403),
        ("/Admin/Users?x=1", 403),
        ("/%41dmin/users", 403),
        ("/admin/health", 200),
        ("/admin/health/live", 200),
        ("/admin/healthz", 403),
        ("/admin/health-dump", 403),
        // Read ignoring case, the path is the open `/admin/health`.
        ("/Admin/Health", 200),
        ("/Admin/Healthz", 403),
        ("/orders/Admin/x", 200),
    ] {
        let (got, _, body) = stack.get(path, Some(&reader));
        assert_eq!(got, status, "{path}: {body}{}", stack.nginx_log());
    }
    for path in ["/ADMIN/users", "/admin/healthz", "/Admin/Healthz"] {
        let (got, _, body) = stack.get(path, Some(&admin));
        assert_eq!(got, 200, "{path}: {body}");
    }
}

#[test]
fn the_shipped_conf_has_no_placeholders_and_passes_nginx_t() {
    let shipped = shipped_conf();
    // No `@NAME@` template markers (a user copying the file would get them).
    for (at, _) in shipped.match_indices('@') {
        let rest = &shipped[at + 1..];
        let name = rest
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || *b == b'_')
            .count();
        assert!(
            name == 0 || !rest[name..].starts_with('@'),
            "placeholder @{}@ in deploy/nginx.conf",
            &rest[..name]
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = render_conf(
        &dir.path().join("nginx"),
        &dir.path().join("http.sock"),
        free_port(),
        free_port(),
    );
    let out = Command::new(nginx_bin())
        .arg("-t")
        .arg("-p")
        .arg(dir.path().join("nginx"))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run nginx -t");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nginx -t failed: {said}");
    assert!(said.contains("test is successful"), "{said}");
}

/// The value of the first `name` header (any case) in a response head.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

#[test]
fn nginx_passes_dpop_bound_tokens_with_a_proof_for_the_url_the_client_asked() {
    let stack = Stack::start_with(&["--dpop", "allowed", "--debug-reason", "true"], true);
    let client = SigningKey::generate(Algorithm::ES256).expect("client key");
    let token = stack.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    // What a client asking for http://127.0.0.1:PORT/orders?page=2 sends:
    // Host with the port, and that URL (port included, query dropped) as
    // the proof's htu.
    let host = format!("127.0.0.1:{}", stack.port);
    let htu = format!("http://{host}/orders");
    let jti = std::cell::Cell::new(0);
    let proof_for = |method: &str, uri: &str| {
        jti.set(jti.get() + 1);
        client
            .dpop_proof(
                method,
                uri,
                Some(token.as_bytes()),
                now(),
                &format!("jti-{}", jti.get()),
                &Map::new(),
            )
            .expect("proof")
    };
    let send = |method: &str, auth: &str, proof: Option<&str>| {
        let dpop = proof.map_or(String::new(), |p| format!("DPoP: {p}\r\n"));
        stack.send(&format!(
            "{method} /orders?page=2 HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\
             Authorization: {auth}\r\n{dpop}\r\n"
        ))
    };
    let dpop = format!("DPoP {token}");
    let refused = |(status, head, body): (u16, String, String), reason: &str| {
        assert_eq!(status, 401, "{reason}: {head}\n{body}");
        assert_eq!(header_value(&head, "x-jwt-reason"), Some(reason), "{head}");
        assert!(!body.contains("sub="), "the app was reached: {body}");
    };

    let once = proof_for("GET", &htu);
    let (status, head, body) = send("GET", &dpop, Some(&once));
    assert_eq!(
        status,
        200,
        "{head}\n{body}{}{}",
        stack.nginx_log(),
        stack.jwtd.log_report()
    );
    assert!(body.contains("sub=alice "), "{body}");
    assert!(
        body.contains(&format!("cnf_jkt={} ", client.thumbprint())),
        "the app did not get the key's thumbprint: {body}"
    );
    assert!(body.contains("dpop= "), "the proof reached the app: {body}");
    assert!(
        body.trim_end().ends_with("authorization="),
        "the token reached the app: {body:?}"
    );
    // The same proof again.
    refused(send("GET", &dpop, Some(&once)), "dpop_replay");
    // The client's method reaches jwtd (X-Original-Method): a POST with a
    // proof for POST passes, a GET with it does not.
    let (status, _, body) = send("POST", &dpop, Some(&proof_for("POST", &htu)));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sub=alice "), "{body}");
    refused(
        send("GET", &dpop, Some(&proof_for("POST", &htu))),
        "dpop_mismatch",
    );
    // Another URL: the port matters (X-Forwarded-Host is the Host the
    // client sent, port included), and so does the path.
    refused(
        send(
            "GET",
            &dpop,
            Some(&proof_for("GET", "http://127.0.0.1/orders")),
        ),
        "dpop_mismatch",
    );
    refused(
        send(
            "GET",
            &dpop,
            Some(&proof_for("GET", &format!("http://{host}/other"))),
        ),
        "dpop_mismatch",
    );
    // The bound token as a bearer token, with or without the proof.
    refused(
        send("GET", &format!("Bearer {token}"), None),
        "bearer_downgrade",
    );
    refused(
        send(
            "GET",
            &format!("Bearer {token}"),
            Some(&proof_for("GET", &htu)),
        ),
        "bearer_downgrade",
    );
    // A plain token still passes as a bearer token (DPoP is allowed, not
    // required), with no thumbprint for the app.
    let plain = stack.token(json!({}));
    let (status, _, body) = send("GET", &format!("Bearer {plain}"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cnf_jkt= "), "{body}");
}
