//! Command-line behaviour of jwtd check / mint / keygen.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{repo_path, run_jwtd, stdout_json};

/// Unix time the tests mint and check at.
const T0: i64 = 1_700_000_000;

/// A 1024-bit RSA modulus (`openssl genrsa 1024`), base64url.
const RSA_1024_N: &str = "4qKVnQtLIntokZAvFwKmVf4N0jyoVFb_3pk0iBqPuRhI7lN4Zxp6qGjFGlnSjHCUtoQlQwmHLDCcYM_YJ4rafXxK7cWpcRdg04o5ADqOqge77p2rzsX1n1ehe9tDb_zrh9VJ3YV67gck2GuYrZc8acxj_HQxKIC8NWlPr7spL0s";

/// Files made by one `jwtd keygen`, in their own temporary directory.
struct Generated {
    dir: TempDir,
    private: PathBuf,
    jwks: PathBuf,
}

impl Generated {
    fn private(&self) -> &str {
        s(&self.private)
    }

    fn jwks(&self) -> &str {
        s(&self.jwks)
    }

    fn public_jwk(&self) -> Value {
        let set: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.jwks).expect("read jwks"))
                .expect("jwks is JSON");
        set["keys"][0].clone()
    }

    fn kid(&self) -> String {
        self.public_jwk()["kid"]
            .as_str()
            .expect("jwks kid")
            .to_owned()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The public key as PEM (SPKI), extracted by OpenSSL from the private
    /// key file `keygen` wrote.
    fn public_pem(&self) -> PathBuf {
        let path = self.file("public.pem");
        let out = Command::new("openssl")
            .args(["pkey", "-pubout", "-in", self.private(), "-out", s(&path)])
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl: {}", stderr(&out));
        path
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `jwtd keygen --alg ALG` (plus `extra`) into a fresh directory.
fn keygen(alg: &str, extra: &[&str]) -> Generated {
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("private.key");
    let jwks = dir.path().join("jwks.json");
    let mut args = vec![
        "keygen",
        "--alg",
        alg,
        "--private",
        s(&private),
        "--jwks-file",
        s(&jwks),
    ];
    args.extend_from_slice(extra);
    let out = run_jwtd(&args, None);
    assert_eq!(out.status.code(), Some(0), "keygen: {}", stderr(&out));
    Generated { dir, private, jwks }
}

/// `jwtd mint --key KEY ARGS`, which must succeed; returns the token.
fn mint(key: &str, args: &[&str]) -> String {
    let mut argv = vec!["mint", "--key", key];
    argv.extend_from_slice(args);
    let out = run_jwtd(&argv, None);
    assert_eq!(out.status.code(), Some(0), "mint: {}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "not a JWS: {token:?}");
    token
}

/// `jwtd check ARGS -- TOKEN`.
fn check(args: &[&str], token: &str) -> Output {
    let mut argv = vec!["check"];
    argv.extend_from_slice(args);
    argv.extend(["--", token]);
    run_jwtd(&argv, None)
}

/// Asserts `jwtd check` refused the token with `reason` (exit 1).
fn assert_rejected(out: &Output, reason: &str) {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(out));
    let v = stdout_json(out);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

/// Asserts `jwtd check` accepted the token (exit 0) and returns its output.
fn assert_valid(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        stdout(out),
        stderr(out)
    );
    let v = stdout_json(out);
    assert_eq!(v["valid"], true, "{v}");
    v
}

fn at(t: i64) -> String {
    format!("--now={t}")
}

fn write_jwks(dir: &Path, name: &str, keys: &[Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json!({ "keys": keys }).to_string()).expect("write jwks");
    path
}

fn weak_rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "n": RSA_1024_N, "e": "AQAB", "use": "sig"})
}

// ------------------------------------------------ keygen -> mint -> check

fn round_trip(alg: &str) {
    let keys = keygen(alg, &[]);
    let kid = keys.kid();
    let now = at(T0);
    let token = mint(
        keys.private(),
        &[
            "--issuer",
            "https://issuer.test",
            "--sub",
            "alice",
            "--audience",
            "api",
            "--ttl",
            "1h",
            &now,
        ],
    );
    let out = check(
        &[
            "--jwks-file",
            keys.jwks(),
            "--issuer",
            "https://issuer.test",
            "--audience",
            "api",
            &at(T0 + 10),
        ],
        &token,
    );
    let v = assert_valid(&out);
    assert_eq!(v["alg"], alg, "{v}");
    assert_eq!(v["kid"], kid.as_str(), "{v}");
    let claims = &v["claims"];
    assert_eq!(claims["iss"], "https://issuer.test", "{v}");
    assert_eq!(claims["sub"], "alice", "{v}");
    assert_eq!(claims["aud"], "api", "{v}");
    assert_eq!(claims["iat"], T0, "{v}");
    assert_eq!(claims["exp"], T0 + 3600, "{v}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 32), "{v}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn es256_keygen_mint_check_round_trip() {
    round_trip("ES256");
}

#[test]
fn es384_keygen_mint_check_round_trip() {
    round_trip("ES384");
}

#[test]
fn es512_keygen_mint_check_round_trip() {
    round_trip("ES512");
}

#[test]
fn rs256_keygen_mint_check_round_trip() {
    round_trip("RS256");
}

#[test]
fn ps256_keygen_mint_check_round_trip() {
    round_trip("PS256");
}

#[test]
fn eddsa_keygen_mint_check_round_trip() {
    round_trip("EdDSA");
}

#[test]
fn hs256_keygen_mint_check_round_trip() {
    round_trip("HS256");
}

// ------------------------------------------------------------------- keygen

#[cfg(unix)]
#[test]
fn keygen_private_file_has_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    for alg in ["ES256", "RS256", "EdDSA", "HS256"] {
        let keys = keygen(alg, &[]);
        let mode = std::fs::metadata(&keys.private)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{alg}: mode {:o}", mode & 0o777);
    }
}

#[cfg(unix)]
#[test]
fn keygen_overwriting_an_existing_file_leaves_it_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("private.pem");
    std::fs::write(&private, "placeholder\n").expect("write");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run_jwtd(
        &["keygen", "--alg", "ES256", "--private", s(&private)],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&private).expect("read");
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"));
    let mode = std::fs::metadata(&private)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "a private key was left readable by others: mode {:o}",
        mode & 0o777
    );
}

#[test]
fn keygen_private_pem_starts_with_kid_and_alg_lines() {
    for alg in ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"] {
        let keys = keygen(alg, &[]);
        let text = std::fs::read_to_string(&keys.private).expect("read private");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("kid: {}", keys.kid()), "{alg}: {text}");
        assert_eq!(lines[1], format!("alg: {alg}"), "{alg}: {text}");
        assert_eq!(lines[2], "-----BEGIN PRIVATE KEY-----", "{alg}: {text}");
        assert_eq!(
            lines.last().copied(),
            Some("-----END PRIVATE KEY-----"),
            "{alg}"
        );
    }
}

#[test]
fn keygen_hmac_private_file_is_a_private_jwk_matching_the_jwks() {
    let keys = keygen("HS256", &[]);
    let private: Value =
        serde_json::from_str(&std::fs::read_to_string(&keys.private).expect("read"))
            .expect("private file is JSON");
    assert_eq!(private["kty"], "oct");
    assert_eq!(private["alg"], "HS256");
    assert_eq!(private["kid"], keys.kid().as_str());
    let k = private["k"].as_str().expect("k");
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k)
        .expect("base64url");
    assert_eq!(secret.len(), 32, "HS256 secret is 256 bits");
    assert_eq!(keys.public_jwk()["k"], k);
}

#[test]
fn keygen_default_kid_is_the_rfc7638_thumbprint() {
    let keys = keygen("ES256", &[]);
    let jwk = keys.public_jwk();
    let (crv, x, y) = (
        jwk["crv"].as_str().expect("crv"),
        jwk["x"].as_str().expect("x"),
        jwk["y"].as_str().expect("y"),
    );
    assert_eq!(crv, "P-256");
    // RFC 7638 3.2: required members only, lexicographic order, no spaces.
    let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    assert_eq!(keys.kid(), thumbprint);
}

#[test]
fn keygen_explicit_kid_is_used_in_jwks_private_file_and_tokens() {
    let keys = keygen("EdDSA", &["--kid", "my-key-1"]);
    assert_eq!(keys.kid(), "my-key-1");
    let text = std::fs::read_to_string(&keys.private).expect("read");
    assert!(text.starts_with("kid: my-key-1\n"), "{text}");
    let token = mint(keys.private(), &[]);
    let v = assert_valid(&check(&["--jwks-file", keys.jwks()], &token));
    assert_eq!(v["kid"], "my-key-1");
}

#[test]
fn keygen_without_jwks_prints_the_public_set_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("k.pem");
    let out = run_jwtd(
        &["keygen", "--alg", "ES384", "--private", s(&private)],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let set: Value = serde_json::from_slice(&out.stdout).expect("stdout is a JWK set");
    let jwk = &set["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-384");
    assert_eq!(jwk["alg"], "ES384");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "private member leaked: {jwk}");
}

// -------------------------------------------------------------------- check

#[test]
fn check_expired_token_exits_1_with_reason_expired() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--ttl", "60", &at(T0)]);
    let out = check(&["--jwks-file", keys.jwks(), &at(T0 + 3600)], &token);
    assert_rejected(&out, "expired");
    assert_eq!(
        stdout_json(&out),
        json!({"valid": false, "reason": "expired"})
    );
    // Still valid within the lifetime.
    assert_valid(&check(&["--jwks-file", keys.jwks(), &at(T0 + 59)], &token));
}

#[test]
fn check_leeway_flag_widens_the_expiry_window() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--ttl", "60", &at(T0)]);
    // Expired 60 s ago: beyond the default 30 s, within 2 minutes.
    let late = at(T0 + 120);
    assert_rejected(
        &check(&["--jwks-file", keys.jwks(), &late], &token),
        "expired",
    );
    assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--leeway", "2m", &late],
        &token,
    ));
}

#[test]
fn check_reads_the_token_from_stdin_with_dash() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--sub", "stdin-user"]);
    let out = run_jwtd(
        &["check", "--jwks-file", keys.jwks(), "-"],
        Some(format!("{token}\n").as_bytes()),
    );
    let v = assert_valid(&out);
    assert_eq!(v["claims"]["sub"], "stdin-user");
}

#[test]
fn check_with_pem_key_without_kid_accepts_any_token_kid() {
    let keys = keygen("ES256", &[]);
    let pem = keys.public_pem();
    let token = mint(keys.private(), &["--kid", "some-other-kid"]);
    let v = assert_valid(&check(&["--key", s(&pem)], &token));
    assert_eq!(v["alg"], "ES256");
    assert_eq!(v["kid"], Value::Null, "a kid-less PEM key reports no kid");
}

#[test]
fn check_with_pem_key_and_wrong_kid_is_unknown_key() {
    let keys = keygen("ES256", &[]);
    let pem = keys.public_pem();
    let token = mint(keys.private(), &["--kid", "k-2024"]);
    assert_rejected(
        &check(&["--key", s(&pem), "--kid", "k-2023"], &token),
        "unknown_key",
    );
    let v = assert_valid(&check(&["--key", s(&pem), "--kid", "k-2024"], &token));
    assert_eq!(v["kid"], "k-2024");
}

#[test]
fn check_with_another_keys_jwks_is_bad_signature_or_unknown_key() {
    let signer = keygen("ES256", &["--kid", "shared"]);
    let other = keygen("ES256", &["--kid", "shared"]);
    let token = mint(signer.private(), &[]);
    assert_rejected(
        &check(&["--jwks-file", other.jwks()], &token),
        "bad_signature",
    );
    let stranger = keygen("ES256", &["--kid", "stranger"]);
    assert_rejected(
        &check(&["--jwks-file", stranger.jwks()], &token),
        "unknown_key",
    );
}

#[test]
fn check_algorithms_restriction_rejects_other_algorithms() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &[]);
    assert_rejected(
        &check(
            &["--jwks-file", keys.jwks(), "--algorithms", "RS256,EdDSA"],
            &token,
        ),
        "algorithm_not_allowed",
    );
    assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--algorithms", "RS256, ES256"],
        &token,
    ));
}

#[test]
fn check_require_custom_claim() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--claims", r#"{"tenant":"t1"}"#]);
    let v = assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--require", "exp,tenant"],
        &token,
    ));
    assert_eq!(v["claims"]["tenant"], "t1");
    assert_rejected(
        &check(
            &["--jwks-file", keys.jwks(), "--require", "tenant,scope"],
            &token,
        ),
        "missing_claim",
    );
}

#[test]
fn require_never_silently_drops_exp() {
    let keys = keygen("ES256", &[]);
    let token = mint(
        keys.private(),
        &["--no-exp", "--claims", r#"{"tenant":"t1"}"#],
    );
    // exp is required by default, and a list of claims adds to it: neither
    // an empty list nor one naming other claims accepts a token without exp.
    assert_rejected(
        &check(&["--jwks-file", keys.jwks()], &token),
        "missing_claim",
    );
    for require in ["--require=", "--require=tenant", "--require=tenant,sub"] {
        assert_rejected(
            &check(&["--jwks-file", keys.jwks(), require], &token),
            "missing_claim",
        );
    }
    // Only the explicit -exp accepts it.
    let v = assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--require=tenant,-exp"],
        &token,
    ));
    assert!(v["claims"].get("exp").is_none(), "{v}");
    // Removing any other claim is a usage error, not a silent no-op.
    let out = run_jwtd(
        &[
            "check",
            "--jwks-file",
            keys.jwks(),
            "--require=-sub",
            &token,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only -exp"),
        "{out:?}"
    );
}

#[test]
fn check_typ_must_match_the_header() {
    let keys = keygen("ES256", &[]);
    let at_jwt = mint(keys.private(), &["--typ", "at+jwt"]);
    assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--typ", "at+jwt"],
        &at_jwt,
    ));
    assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--typ", "application/AT+JWT"],
        &at_jwt,
    ));
    let plain = mint(keys.private(), &[]);
    assert_rejected(
        &check(&["--jwks-file", keys.jwks(), "--typ", "at+jwt"], &plain),
        "typ",
    );
    // Without --typ, any typ is accepted.
    assert_valid(&check(&["--jwks-file", keys.jwks()], &at_jwt));
}

#[test]
fn check_max_lifetime_rejects_longer_lived_tokens() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--ttl", "2h", &at(T0)]);
    let soon = at(T0 + 1);
    assert_rejected(
        &check(
            &["--jwks-file", keys.jwks(), "--max-lifetime", "1h", &soon],
            &token,
        ),
        "lifetime_too_long",
    );
    assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--max-lifetime", "2h", &soon],
        &token,
    ));
}

#[test]
fn check_issuer_and_audience_mismatches_are_named() {
    let keys = keygen("ES256", &[]);
    let token = mint(
        keys.private(),
        &["--issuer", "https://a.test", "--audience", "api"],
    );
    assert_rejected(
        &check(
            &["--jwks-file", keys.jwks(), "--issuer", "https://b.test"],
            &token,
        ),
        "issuer",
    );
    assert_rejected(
        &check(&["--jwks-file", keys.jwks(), "--audience", "web"], &token),
        "audience",
    );
}

#[test]
fn check_bad_configuration_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.json");
    let out = check(
        &[
            "--jwks-file",
            s(&missing),
            "--algorithms",
            "none,XX",
            "--leeway",
            "10m",
        ],
        "a.b.c",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "no verdict: {}", stdout(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let expected = [
        "jwtd check: --algorithms: algorithm 'none' is never allowed".to_owned(),
        "jwtd check: --algorithms: unknown algorithm 'XX'".to_owned(),
        "jwtd check: leeway: 600 s exceeds the maximum of 300 s".to_owned(),
        format!("jwtd check: --jwks-file {}: ", s(&missing)),
    ];
    for want in &expected {
        let hits = lines
            .iter()
            .filter(|l| l.starts_with(want.as_str()))
            .count();
        assert_eq!(hits, 1, "expected one line starting {want:?} in:\n{err}");
    }
    // Each problem is on its own line: no line holds two of them.
    for line in &lines {
        let n = expected
            .iter()
            .filter(|w| line.contains(w.as_str()))
            .count();
        assert!(n <= 1, "two problems on one line: {line}");
    }
}

#[test]
fn check_with_out_of_range_token_size_is_a_configuration_error() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &[]);
    let out = check(
        &["--jwks-file", keys.jwks(), "--max-token-bytes", "10"],
        &token,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("max token size: 10 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_without_any_key_exits_2() {
    let out = check(&[], "a.b.c");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("no trusted keys: pass --jwks-file FILE or --key FILE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_warns_about_a_skipped_key_and_still_verifies() {
    let keys = keygen("ES256", &["--kid", "good"]);
    let jwks = write_jwks(
        keys.dir.path(),
        "mixed.json",
        &[keys.public_jwk(), weak_rsa_jwk("legacy-1024")],
    );
    let token = mint(keys.private(), &[]);
    let out = check(&["--jwks-file", s(&jwks)], &token);
    let v = assert_valid(&out);
    assert_eq!(v["kid"], "good");
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("\"legacy-1024\""), "{err}");
    assert!(warnings[0].contains("1024 bits"), "{err}");
}

#[test]
fn check_with_no_usable_key_exits_2_naming_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = write_jwks(dir.path(), "weak.json", &[weak_rsa_jwk("legacy-1024")]);
    let out = check(&["--jwks-file", s(&jwks)], "a.b.c");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("no usable signing key"), "{err}");
    assert!(err.contains("\"legacy-1024\""), "{err}");
    assert!(
        err.contains("RSA modulus is 1024 bits; 2048 to 8192 required"),
        "{err}"
    );
}

#[test]
fn check_without_token_is_a_usage_error() {
    let keys = keygen("ES256", &[]);
    let out = run_jwtd(&["check", "--jwks-file", keys.jwks()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("<TOKEN|->"), "{err}");
    assert!(err.contains("Usage:"), "{err}");
}

// --------------------------------------------------------------------- mint

#[test]
fn mint_with_alg_that_does_not_fit_the_key_fails_clearly() {
    let keys = keygen("ES256", &[]);
    let out = run_jwtd(&["mint", "--key", keys.private(), "--alg", "RS256"], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "no token: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("algorithm RS256 does not fit this EC P-256 key"),
        "{err}"
    );
}

#[test]
fn mint_extra_claims_appear_in_check_output() {
    let keys = keygen("ES256", &[]);
    let token = mint(
        keys.private(),
        &["--claims", r#"{"scope":"a b","roles":["x"]}"#],
    );
    let v = assert_valid(&check(&["--jwks-file", keys.jwks()], &token));
    assert_eq!(v["claims"]["scope"], "a b");
    assert_eq!(v["claims"]["roles"], json!(["x"]));
}

#[test]
fn mint_extra_header_jku_is_reported_as_an_anomaly() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--header", r#"{"jku":"https://evil"}"#]);
    let v = assert_valid(&check(&["--jwks-file", keys.jwks()], &token));
    assert_eq!(v["anomalies"], json!(["jku"]), "{v}");
    // A plain token has no anomalies member.
    let plain = mint(keys.private(), &[]);
    let v = assert_valid(&check(&["--jwks-file", keys.jwks()], &plain));
    assert!(v.get("anomalies").is_none(), "{v}");
}

#[test]
fn mint_repeated_aud_yields_an_array() {
    let keys = keygen("ES256", &[]);
    let token = mint(keys.private(), &["--audience", "a", "--audience", "b"]);
    let v = assert_valid(&check(
        &["--jwks-file", keys.jwks(), "--audience", "b"],
        &token,
    ));
    assert_eq!(v["claims"]["aud"], json!(["a", "b"]));
    let single = mint(keys.private(), &["--audience", "a"]);
    let v = assert_valid(&check(&["--jwks-file", keys.jwks()], &single));
    assert_eq!(v["claims"]["aud"], "a");
}

// --------------------------------------------------------------- dev keys

#[test]
fn dev_key_set_round_trips_through_mint_and_check() {
    let key = repo_path("deploy/dev/signing-key.pem");
    let jwks = repo_path("deploy/dev/jwks.json");
    let token = mint(
        s(&key),
        &[
            "--issuer",
            "https://jwtd.dev.invalid",
            "--audience",
            "jwtd-dev",
        ],
    );
    let v = assert_valid(&check(
        &[
            "--jwks-file",
            s(&jwks),
            "--issuer",
            "https://jwtd.dev.invalid",
            "--audience",
            "jwtd-dev",
        ],
        &token,
    ));
    assert_eq!(v["alg"], "ES256");
    assert_eq!(v["kid"], "jwtd-dev-es256");
    assert_eq!(v["claims"]["iss"], "https://jwtd.dev.invalid");
}

// ---------------------------------------------------- names across commands

#[test]
fn old_flag_spellings_still_work() {
    // Scripts written before the subcommands took serve's names.
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("k.pem");
    let jwks = dir.path().join("jwks.json");
    let out = run_jwtd(
        &[
            "keygen",
            "--alg",
            "ES256",
            "--private",
            s(&private),
            "--jwks",
            s(&jwks),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let token = mint(
        s(&private),
        &["--iss", "https://a.test", "--aud", "api", &at(T0)],
    );
    let v = assert_valid(&check(
        &[
            "--jwks",
            s(&jwks),
            "--issuer",
            "https://a.test",
            "--audience",
            "api",
            "--leeway",
            "30",
            &at(T0 + 1),
        ],
        &token,
    ));
    assert_eq!(v["claims"]["iss"], "https://a.test");
}

#[test]
fn check_reads_durations_as_the_daemon_does_and_pem_through_jwks_file() {
    let keys = keygen("ES256", &[]);
    // Lifetime 90 s, written three ways.
    for ttl in ["90", "90s", "1m"] {
        let token = mint(keys.private(), &["--ttl", ttl, &at(T0)]);
        let v = assert_valid(&check(&["--jwks-file", keys.jwks(), &at(T0)], &token));
        let lifetime = v["claims"]["exp"].as_i64().unwrap() - T0;
        assert_eq!(lifetime, if ttl == "1m" { 60 } else { 90 }, "{ttl}");
    }
    // As the daemon refuses it: leeway in whole seconds only.
    let token = mint(keys.private(), &[]);
    let out = check(&["--jwks-file", keys.jwks(), "--leeway", "500ms"], &token);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a whole number of seconds"),
        "{}",
        stderr(&out)
    );
    // --jwks-file reads PEM public keys, as the daemon's jwks_file does.
    let pem = keys.public_pem();
    assert_valid(&check(&["--jwks-file", s(&pem)], &token));
}

// ----------------------------------------------------------- serve --help

#[test]
fn serve_help_groups_flags_by_topic_and_names_each_variable() {
    let out = run_jwtd(&["serve", "--help"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = stdout(&out);
    // The help's sections: a heading line ("Keys:") and its flags.
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            sections.push((line.trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let headings: Vec<&str> = sections.iter().map(|(h, _)| h.as_str()).collect();
    let topics: Vec<&str> = jwtd::config::Topic::ALL
        .iter()
        .map(|t| t.heading())
        .collect();
    assert_eq!(headings[1..], topics[..], "{help}");
    for setting in jwtd::config::SETTINGS {
        let (_, body) = sections
            .iter()
            .find(|(h, _)| h == setting.topic.heading())
            .expect("the setting's heading");
        // The flag's entry: from its name to the next flag.
        let flag = format!("--{} ", setting.flag);
        let flag_alone = format!("--{}\n", setting.flag);
        let at = body
            .find(&flag)
            .or_else(|| body.find(&flag_alone))
            .unwrap_or_else(|| panic!("{flag} under {}:\n{help}", setting.topic.heading()));
        let entry = &body[at..];
        let entry = &entry[..entry[2..].find("\n      --").map_or(entry.len(), |n| n + 2)];
        assert!(
            entry.contains(&format!("[env: {}]", setting.env)),
            "{flag}: {entry}"
        );
        // A switch takes no value: its default (false) goes without saying.
        if let (Some(default), false) =
            (setting.default, setting.kind == jwtd::config::Kind::Switch)
        {
            assert!(
                entry.contains(&format!("[default: {default}]")),
                "{flag}: {entry}"
            );
        }
    }
}

// ----------------------------------------------------------- exit statuses

/// `jwtd serve ARGS` with no `JWTD_*` variable inherited, to its exit.
fn serve_exit(args: &[&str]) -> Output {
    let mut cmd = Command::new(crate::support::jwtd_bin());
    cmd.arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("JWTD_")) {
        cmd.env_remove(k);
    }
    cmd.output().expect("run jwtd serve")
}

#[test]
fn serve_that_cannot_start_exits_69_apart_from_usage_and_config_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A socket in a directory that does not exist: valid, but not bindable.
    let missing = dir.path().join("no-such-dir/jwtd.sock");
    let out = serve_exit(&["--dev", "--socket", s(&missing)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("cannot bind the socket"), "{err}");
    assert!(err.contains(s(&missing)), "{err}");

    // The admin address taken: the native socket was bound by then, and
    // is removed again.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let socket = dir.path().join("jwtd.sock");
    let out = serve_exit(&["--dev", "--socket", s(&socket), "--admin-addr", &addr]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("admin listener"), "{err}");
    assert!(!socket.exists(), "the bound socket was left behind: {err}");

    // A usage error is still 2, a configuration problem still 64.
    let out = serve_exit(&["--dev", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = serve_exit(&["--dev", "--socket", s(&socket), "--leeway", "1h"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("jwtd: config: --leeway: leeway: "),
        "{}",
        stderr(&out)
    );
}
