//! A real nginx (`auth_request`) in front of a stand-in app, asking the real
//! `jwtd serve` over its HTTP socket, with the configuration shipped in
//! `deploy/nginx.conf` (rendered with this test's ports and paths).
//!
//! nginx comes from Debian (`apt-get install nginx`; `scripts/test` installs
//! it). Each test runs its own nginx with `-p` a temp dir, on free loopback
//! ports, and stops it on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;
use serde_json::{Value, json};

use crate::support::{free_port, front_token, jwtd_bin, now, repo_path, tcp_exchange};

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// jwtd with its HTTP front, and nginx in front of the stand-in app.
struct Stack {
    jwtd: Child,
    nginx: Child,
    port: u16,
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Stack {
        let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: apt-get install nginx (scripts/test does)");
        let dir = tempfile::tempdir().expect("temp dir");
        let key = SigningKey::generate(Algorithm::ES256)
            .expect("key")
            .with_kid(Some("k1".into()));
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).expect("jwks");
        let config = dir.path().join("jwtd.toml");
        std::fs::write(
            &config,
            "[[routes]]\nprefix = \"/admin/\"\nscopes = [\"admin\"]\n",
        )
        .expect("config");
        let http: PathBuf = dir.path().join("http.sock");
        let jwtd = Command::new(jwtd_bin())
            .arg("serve")
            .arg("--socket")
            .arg(dir.path().join("jwtd.sock"))
            .arg("--http-socket")
            .arg(&http)
            .arg("--jwks-file")
            .arg(&jwks)
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn jwtd");
        wait_for("jwtd", || {
            std::os::unix::net::UnixStream::connect(&http).is_ok()
        });

        let (port, app_port) = (free_port(), free_port());
        let prefix = dir.path().join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
        // As root, nginx's workers would drop to "nobody", who cannot reach
        // a socket in this private temp dir.
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let conf = std::fs::read_to_string(repo_path("deploy/nginx.conf"))
            .expect("deploy/nginx.conf")
            .replace("@USER@", if is_root { "user root;" } else { "" })
            .replace("@PREFIX@", &prefix.display().to_string())
            .replace("@HTTP_SOCKET@", &http.display().to_string())
            .replace("@APP_PORT@", &app_port.to_string())
            .replace("@PORT@", &port.to_string());
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let nginx = Command::new(nginx_bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let stack = Stack {
            jwtd,
            nginx,
            port,
            key,
            dir,
        };
        wait_for("nginx", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        stack
    }

    fn token(&self, claims: Value) -> String {
        front_token(&self.key, claims)
    }

    /// GET `path` through nginx (HTTP/1.0, one connection): status, raw
    /// headers, body.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        self.get_with(path, token, "")
    }

    /// The same, with more request headers (`Name: value\r\n` lines).
    fn get_with(&self, path: &str, token: Option<&str>, headers: &str) -> (u16, String, String) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        tcp_exchange(
            self.port,
            &format!("GET {path} HTTP/1.0\r\nHost: app.example\r\n{auth}{headers}\r\n"),
        )
    }

    fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nginx/error.log")).unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers
        // (killed outright, it would leave them running).
        if let Ok(pid) = libc::pid_t::try_from(self.nginx.id()) {
            // SAFETY: kill(2) on our own child with a valid signal.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.nginx.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for child in [&mut self.nginx, &mut self.jwtd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");

    let expired = stack.token(json!({"exp": now() - 3600}));
    for bad in ["garbage", "a.b.c", expired.as_str()] {
        let (status, head, body) = stack.get("/orders", Some(bad));
        assert_eq!(status, 401, "{bad}: {body}");
        assert!(
            head.contains("WWW-Authenticate: Bearer error=\"invalid_token\""),
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
    let mut stack = Stack::start();
    let token = stack.token(json!({}));
    let _ = stack.jwtd.kill();
    let _ = stack.jwtd.wait();
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
