//! Tokens bound to the request, on the real `jwtd serve`: DPoP (RFC 9449)
//! through the HTTP front (as nginx's `auth_request` sends it), the gRPC
//! front (as Envoy's `ext_authz` sends it) and the native protocol
//! (VERIFY_CTX); certificate-bound tokens (RFC 8705); the `[[bindings]]`
//! device and address rules on both proxy fronts. Each refusal is asserted
//! with its reason (`--debug-reason` on the proxy fronts, the reply's
//! reason on the native one).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use hyper_util::rt::TokioIo;
use jwtd::protocol::{Reply, WireContext};
use jwtd::sign::SigningKey;
use jwtd::verify::{Algorithm, B64URL, Reject};
use serde_json::{Map, json};
use tonic::transport::{Endpoint, Uri};

use crate::support::{Jwtd, Response, exchange, now};

const URI: &str = "https://api.example.com/orders";

/// A client's DPoP key, and tokens bound to it.
struct Client {
    key: SigningKey,
}

impl Client {
    fn new(alg: Algorithm) -> Client {
        Client {
            key: SigningKey::generate(alg).expect("client key"),
        }
    }

    fn jkt(&self) -> String {
        self.key.thumbprint()
    }

    /// A proof for `method` `uri` and `token`, issued at `iat`, with `jti`.
    fn proof_at(&self, method: &str, uri: &str, token: &str, iat: i64, jti: &str) -> String {
        self.key
            .dpop_proof(method, uri, Some(token.as_bytes()), iat, jti, &Map::new())
            .expect("proof")
    }

    /// A fresh proof (random jti) for `method` `uri` and `token`, now.
    fn proof(&self, method: &str, uri: &str, token: &str) -> String {
        let mut jti = [0u8; 12];
        aws_lc_rs::rand::fill(&mut jti).expect("random");
        self.proof_at(method, uri, token, now(), &B64URL.encode(jti))
    }
}

/// A token of `daemon`'s issuer bound to `client`'s key.
fn bound_token(daemon: &Jwtd, client: &Client) -> String {
    daemon.token(json!({"cnf": {"jkt": client.jkt()}}))
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// An `auth_request` check as the shipped nginx config sends it for a
/// client's `method` request to `https://api.example.com{uri}`, plus
/// `headers`.
fn nginx(daemon: &Jwtd, method: &str, uri: &str, headers: &str) -> Response {
    let mut s = connect(daemon.http_socket());
    exchange(
        &mut s,
        &format!(
            "GET /verify HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\
             X-Original-Method: {method}\r\nX-Original-URI: {uri}\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.example.com\r\n\
             X-Real-IP: 192.0.2.7\r\n{headers}\r\n"
        ),
    )
}

/// The HTTP front's answer to a DPoP request: status and debug reason.
fn http_dpop(daemon: &Jwtd, token: &str, proof: &str) -> (u16, Option<String>) {
    let a = nginx(
        daemon,
        "GET",
        "/orders?page=2",
        &format!("Authorization: DPoP {token}\r\nDPoP: {proof}\r\n"),
    );
    (a.status, a.header("x-jwt-reason").map(str::to_owned))
}

fn refused(reason: &str) -> (u16, Option<String>) {
    (401, Some(reason.to_owned()))
}

/// A daemon with the HTTP, gRPC and native fronts, DPoP `mode`, the debug
/// reason on, and `config` (TOML).
fn daemon(mode: &str, config: &str, extra: &[&str]) -> Jwtd {
    Jwtd::builder()
        .http_front()
        .grpc_front()
        .admin()
        .config(config)
        .args(["--dpop", mode, "--debug-reason", "true"])
        .args(extra)
        .start()
}

#[test]
fn dpop_through_the_http_front_es256_and_eddsa_and_each_refusal_with_its_reason() {
    let d = daemon("allowed", "", &[]);
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let client = Client::new(alg);
        let token = bound_token(&d, &client);
        let a = nginx(
            &d,
            "GET",
            "/orders?page=2",
            &format!(
                "Authorization: DPoP {token}\r\nDPoP: {}\r\n",
                client.proof("GET", URI, &token)
            ),
        );
        assert_eq!(a.status, 200, "{alg:?}: {a:?}");
        assert_eq!(a.header("x-jwt-cnf-jkt"), Some(client.jkt().as_str()));
        // A second request with a fresh proof passes too (the token is
        // cached; the proof is checked every time).
        assert_eq!(
            http_dpop(&d, &token, &client.proof("GET", URI, &token)).0,
            200
        );
    }

    let client = Client::new(Algorithm::ES256);
    let token = bound_token(&d, &client);
    let other = Client::new(Algorithm::ES256);
    // htm, htu, ath.
    assert_eq!(
        http_dpop(&d, &token, &client.proof("POST", URI, &token)),
        refused("dpop_mismatch")
    );
    assert_eq!(
        http_dpop(
            &d,
            &token,
            &client.proof("GET", "https://api.example.com/other", &token)
        ),
        refused("dpop_mismatch")
    );
    assert_eq!(
        http_dpop(
            &d,
            &token,
            &client.proof("GET", "https://evil.example/orders", &token)
        ),
        refused("dpop_mismatch")
    );
    let another_token = bound_token(&d, &client);
    assert_eq!(
        http_dpop(&d, &token, &client.proof("GET", URI, &another_token)),
        refused("dpop_mismatch"),
        "wrong ath"
    );
    // Stale, and from the future.
    assert_eq!(
        http_dpop(
            &d,
            &token,
            &client.proof_at("GET", URI, &token, now() - 300, "old")
        ),
        refused("dpop_invalid")
    );
    assert_eq!(
        http_dpop(
            &d,
            &token,
            &client.proof_at("GET", URI, &token, now() + 300, "new")
        ),
        refused("dpop_invalid")
    );
    // Replayed jti.
    let once = client.proof_at("GET", URI, &token, now(), "once");
    assert_eq!(http_dpop(&d, &token, &once).0, 200);
    assert_eq!(http_dpop(&d, &token, &once), refused("dpop_replay"));
    // A valid proof by another key: the token is not bound to it.
    assert_eq!(
        http_dpop(&d, &token, &other.proof("GET", URI, &token)),
        refused("dpop_mismatch")
    );
    // A proof whose header names this client's key but signed by another.
    let forged = {
        let genuine = client.proof("GET", URI, &token);
        let (input, _) = genuine.rsplit_once('.').unwrap();
        let sig = other.key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", B64URL.encode(sig))
    };
    assert_eq!(http_dpop(&d, &token, &forged), refused("dpop_invalid"));
    // A private key in the proof header; alg none; HS256.
    let mut jwk = client.key.public_jwk();
    jwk["d"] = json!("ZHVtbXk");
    let claims = |jti: &str| {
        json!({"jti": jti, "htm": "GET", "htu": URI, "iat": now(),
            "ath": jwtd::verify::dpop::access_token_hash(token.as_bytes())})
        .to_string()
    };
    let private = client
        .key
        .sign_parts(
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})
                .to_string()
                .as_bytes(),
            claims("p").as_bytes(),
        )
        .unwrap();
    assert_eq!(http_dpop(&d, &token, &private), refused("dpop_invalid"));
    let none = format!(
        "{}.{}.",
        B64URL.encode(
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": client.key.public_jwk()}).to_string()
        ),
        B64URL.encode(claims("n"))
    );
    assert_eq!(http_dpop(&d, &token, &none), refused("dpop_invalid"));
    let hs = SigningKey::generate(Algorithm::HS256).unwrap();
    let hmac = hs
        .sign_parts(
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": hs.public_jwk()})
                .to_string()
                .as_bytes(),
            claims("h").as_bytes(),
        )
        .unwrap();
    assert_eq!(http_dpop(&d, &token, &hmac), refused("dpop_invalid"));
    // No proof, and two proofs.
    let a = nginx(
        &d,
        "GET",
        "/orders",
        &format!("Authorization: DPoP {token}\r\n"),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("dpop_invalid"));
    let (p1, p2) = (
        client.proof("GET", URI, &token),
        client.proof("GET", URI, &token),
    );
    let a = nginx(
        &d,
        "GET",
        "/orders",
        &format!("Authorization: DPoP {token}\r\nDPoP: {p1}\r\nDPoP: {p2}\r\n"),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("dpop_invalid"));
    // Bearer downgrade: the bound token without DPoP.
    let a = nginx(
        &d,
        "GET",
        "/orders",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(
        (a.status, a.header("x-jwt-reason")),
        (401, Some("bearer_downgrade"))
    );
    // An unbound token presented as DPoP.
    let plain = d.token(json!({}));
    assert_eq!(
        http_dpop(&d, &plain, &client.proof("GET", URI, &plain)),
        refused("dpop_mismatch")
    );
    // Still a bearer token as such, with a client's x-jwt-cnf-jkt removed.
    let a = nginx(
        &d,
        "GET",
        "/orders",
        &format!("Authorization: Bearer {plain}\r\nx-jwt-cnf-jkt: forged\r\n"),
    );
    assert_eq!(a.status, 200);
    assert!(
        a.header("x-envoy-auth-headers-to-remove")
            .is_some_and(|h| h.contains("x-jwt-cnf-jkt")),
        "{a:?}"
    );
    // The refusals are counted by reason and as anomalies.
    let metrics = d.metrics();
    for reason in [
        "dpop_invalid",
        "dpop_mismatch",
        "dpop_replay",
        "bearer_downgrade",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} not counted"
        );
    }
}

#[test]
fn dpop_off_refuses_dpop_and_bound_tokens_and_required_refuses_bearer_tokens() {
    let client = Client::new(Algorithm::ES256);
    let off = daemon("off", "", &[]);
    let token = bound_token(&off, &client);
    assert_eq!(
        http_dpop(&off, &token, &client.proof("GET", URI, &token)),
        refused("dpop_invalid")
    );
    let a = nginx(
        &off,
        "GET",
        "/orders",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("bearer_downgrade"));
    // Unbound bearer tokens are as before.
    let plain = off.token(json!({}));
    let a = nginx(
        &off,
        "GET",
        "/orders",
        &format!("Authorization: Bearer {plain}\r\n"),
    );
    assert_eq!(a.status, 200);

    let required = daemon("required", "", &["--dpop-to-bearer", "true"]);
    let plain = required.token(json!({}));
    let a = nginx(
        &required,
        "GET",
        "/orders",
        &format!("Authorization: Bearer {plain}\r\n"),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("bearer_downgrade"));
    let token = bound_token(&required, &client);
    let a = nginx(
        &required,
        "GET",
        "/orders",
        &format!(
            "Authorization: DPoP {token}\r\nDPoP: {}\r\n",
            client.proof("GET", URI, &token)
        ),
    );
    assert_eq!(a.status, 200, "{a:?}");
    // dpop_to_bearer: the app gets a bearer token.
    assert_eq!(
        a.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(
        a.header("x-envoy-auth-headers-to-remove")
            .is_some_and(|h| h.contains("dpop"))
    );
}

/// A tonic client for the gRPC front on its own runtime.
struct Grpc {
    rt: tokio::runtime::Runtime,
    client: AuthorizationClient<tonic::transport::Channel>,
}

impl Grpc {
    fn connect(path: &Path) -> Grpc {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = path.to_path_buf();
        let channel = rt.block_on(async move {
            Endpoint::try_from("http://[::]:50051")
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .expect("connect to the gRPC socket")
        });
        Grpc {
            rt,
            client: AuthorizationClient::new(channel),
        }
    }

    /// A check as Envoy sends it for `method https://api.example.com{path}`
    /// with `headers`, the client at `ip`, its certificate `cert` (URL-encoded
    /// PEM) if any.
    fn check(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        ip: &str,
        cert: Option<&str>,
    ) -> CheckResponse {
        let mut all: std::collections::HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert(":authority".into(), "api.example.com".into());
        all.insert(":method".into(), method.into());
        all.insert(":path".into(), path.into());
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: ip.to_owned(),
                            port_specifier: Some(socket_address::PortSpecifier::PortValue(443)),
                            ..Default::default()
                        })),
                    }),
                    certificate: cert.unwrap_or_default().to_owned(),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: method.to_owned(),
                        path: path.to_owned(),
                        host: "api.example.com".to_owned(),
                        scheme: "https".to_owned(),
                        headers: all,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        self.rt
            .block_on(self.client.check(request))
            .expect("check")
            .into_inner()
    }
}

/// Allowed (`None`) or the debug reason of a gRPC answer.
fn grpc_reason(r: &CheckResponse) -> Option<String> {
    match &r.http_response {
        Some(HttpResponse::OkResponse(_)) => None,
        Some(HttpResponse::DeniedResponse(d)) => d
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "x-jwt-reason")
            .map(|h| h.value.clone())
            .or(Some("denied".into())),
        other => Some(format!("{other:?}")),
    }
}

#[test]
fn dpop_through_the_grpc_front() {
    let d = daemon("allowed", "", &[]);
    let mut grpc = Grpc::connect(d.grpc_socket());
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let client = Client::new(alg);
        let token = bound_token(&d, &client);
        let auth = format!("DPoP {token}");
        let proof = client.proof("PUT", URI, &token);
        let r = grpc.check(
            "PUT",
            "/orders?x=1",
            &[("authorization", &auth), ("dpop", &proof)],
            "192.0.2.7",
            None,
        );
        assert_eq!(grpc_reason(&r), None, "{alg:?}: {r:?}");
        let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
            unreachable!()
        };
        let jkt = ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "x-jwt-cnf-jkt");
        assert_eq!(jkt.map(|h| h.value.as_str()), Some(client.jkt().as_str()));
        // Replayed.
        let r = grpc.check(
            "PUT",
            "/orders",
            &[("authorization", &auth), ("dpop", &proof)],
            "192.0.2.7",
            None,
        );
        assert_eq!(grpc_reason(&r).as_deref(), Some("dpop_replay"));
        // Wrong method.
        let proof = client.proof("GET", URI, &token);
        let r = grpc.check(
            "PUT",
            "/orders",
            &[("authorization", &auth), ("dpop", &proof)],
            "192.0.2.7",
            None,
        );
        assert_eq!(grpc_reason(&r).as_deref(), Some("dpop_mismatch"));
        // Downgrade.
        let bearer = format!("Bearer {token}");
        let r = grpc.check(
            "PUT",
            "/orders",
            &[("authorization", &bearer)],
            "192.0.2.7",
            None,
        );
        assert_eq!(grpc_reason(&r).as_deref(), Some("bearer_downgrade"));
    }
}

/// A PEM certificate-shaped block around `der`, URL-encoded as Envoy sends
/// `source.certificate`. (The thumbprint is of the DER, whatever it holds.)
fn envoy_cert(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    pem.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn x5t(der: &[u8]) -> String {
    B64URL.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

#[test]
fn certificate_bound_tokens_pass_only_with_their_certificate_on_every_front() {
    let d = daemon(
        "off",
        "",
        &["--client-cert-header", "x-forwarded-client-cert"],
    );
    let (mine, theirs) = (
        b"\x30\x03\x02\x01\x01".as_slice(),
        b"\x30\x03\x02\x01\x02".as_slice(),
    );
    let token = d.token(json!({"cnf": {"x5t#S256": x5t(mine)}}));
    let bearer = format!("Bearer {token}");
    // gRPC: the peer certificate Envoy passes.
    let mut grpc = Grpc::connect(d.grpc_socket());
    let r = grpc.check(
        "GET",
        "/",
        &[("authorization", &bearer)],
        "192.0.2.7",
        Some(&envoy_cert(mine)),
    );
    assert_eq!(grpc_reason(&r), None, "{r:?}");
    let r = grpc.check(
        "GET",
        "/",
        &[("authorization", &bearer)],
        "192.0.2.7",
        Some(&envoy_cert(theirs)),
    );
    assert_eq!(grpc_reason(&r).as_deref(), Some("cnf_mismatch"));
    let r = grpc.check("GET", "/", &[("authorization", &bearer)], "192.0.2.7", None);
    assert_eq!(grpc_reason(&r).as_deref(), Some("cnf_mismatch"));
    // HTTP: the trusted proxy's x-forwarded-client-cert Hash=.
    let hex = |der: &[u8]| -> String {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let xfcc = |der: &[u8]| {
        format!(
            "x-forwarded-client-cert: By=spiffe://jwtd;Hash={}\r\n",
            hex(der)
        )
    };
    let a = nginx(
        &d,
        "GET",
        "/",
        &format!("Authorization: {bearer}\r\n{}", xfcc(mine)),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = nginx(
        &d,
        "GET",
        "/",
        &format!("Authorization: {bearer}\r\n{}", xfcc(theirs)),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("cnf_mismatch"));
    let a = nginx(&d, "GET", "/", &format!("Authorization: {bearer}\r\n"));
    assert_eq!(a.header("x-jwt-reason"), Some("cnf_mismatch"));
    // Native: VERIFY_CTX with the thumbprint; plain VERIFY has no
    // certificate.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        let digest = |der: &[u8]| -> [u8; 32] {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
                .as_ref()
                .try_into()
                .unwrap()
        };
        let ctx = |der: &[u8]| WireContext {
            cert_sha256: Some(digest(der)),
            ..WireContext::default()
        };
        let r = c
            .verify_with_context(b"", token.as_bytes(), &ctx(mine))
            .await
            .unwrap();
        assert!(matches!(r, Reply::Valid { .. }), "{r:?}");
        let r = c
            .verify_with_context(b"", token.as_bytes(), &ctx(theirs))
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::CnfMismatch,
                    ..
                }
            ),
            "{r:?}"
        );
        let r = c.verify(token.as_bytes()).await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::CnfMismatch,
                    ..
                }
            ),
            "{r:?}"
        );
    });
    // nginx's $ssl_client_escaped_cert (URL-encoded PEM) in X-SSL-Client-Cert.
    let behind_nginx = daemon("off", "", &["--client-cert-header", "x-ssl-client-cert"]);
    let token = behind_nginx.token(json!({"cnf": {"x5t#S256": x5t(mine)}}));
    let pem = |der: &[u8]| format!("X-SSL-Client-Cert: {}\r\n", envoy_cert(der));
    let a = nginx(
        &behind_nginx,
        "GET",
        "/",
        &format!("Authorization: Bearer {token}\r\n{}", pem(mine)),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = nginx(
        &behind_nginx,
        "GET",
        "/",
        &format!("Authorization: Bearer {token}\r\n{}", pem(theirs)),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("cnf_mismatch"));
    // Without --client-cert-header, the HTTP front trusts no header.
    let untrusting = daemon("off", "", &[]);
    let token = untrusting.token(json!({"cnf": {"x5t#S256": x5t(mine)}}));
    let a = nginx(
        &untrusting,
        "GET",
        "/",
        &format!("Authorization: Bearer {token}\r\n{}", xfcc(mine)),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("cnf_mismatch"));
}

#[test]
fn dpop_over_the_native_protocol_with_verify_ctx() {
    let d = daemon("allowed", "", &[]);
    let client = Client::new(Algorithm::ES256);
    let token = bound_token(&d, &client);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        let ctx = |method: &str, uri: &str, proof: String| WireContext {
            method: Some(method.to_owned().into()),
            uri: Some(uri.to_owned().into()),
            dpop: Some(proof.into()),
            ..WireContext::default()
        };
        let ok = ctx("GET", URI, client.proof("GET", URI, &token));
        let r = c
            .verify_with_context(b"", token.as_bytes(), &ok)
            .await
            .unwrap();
        assert!(matches!(r, Reply::Valid { .. }), "{r:?}");
        // The same proof again, another daemon-side request: a replay.
        let r = c
            .verify_with_context(b"", token.as_bytes(), &ok)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::DpopReplay,
                    ..
                }
            ),
            "{r:?}"
        );
        let wrong_uri = ctx(
            "GET",
            "https://api.example.com/x",
            client.proof("GET", URI, &token),
        );
        let r = c
            .verify_with_context(b"", token.as_bytes(), &wrong_uri)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::DpopMismatch,
                    ..
                }
            ),
            "{r:?}"
        );
        // Plain VERIFY of a DPoP-bound token: a downgrade.
        let r = c.verify(token.as_bytes()).await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::BearerDowngrade,
                    ..
                }
            ),
            "{r:?}"
        );
    });
    // A malformed context is an error for that request; the connection goes
    // on (so does an unknown op).
    let mut s = connect(&d.socket);
    let mut frame = Vec::new();
    let body: Vec<u8> = [&[0u8][..], &[0, 1], b"x", &[9, 0, 1, b'z']].concat();
    frame.extend_from_slice(&u32::try_from(8 + body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 7]);
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&[0, 0, 0, 8, 1, 99, 0, 0, 0, 0, 0, 8]);
    frame.extend_from_slice(&[0, 0, 0, 8, 1, 2, 0, 0, 0, 0, 0, 9]);
    s.write_all(&frame).unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while seen.len() < 3 {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {seen:?}");
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(r)) = jwtd::protocol::decode_reply(&mut buf, 1 << 16) {
            seen.push(r);
        }
    }
    assert!(
        matches!(
            seen.as_slice(),
            [
                Reply::Error {
                    id: 7,
                    error: jwtd::protocol::ProtocolError::BadContext
                },
                Reply::Error {
                    id: 8,
                    error: jwtd::protocol::ProtocolError::BadOp
                },
                Reply::Pong { id: 9, .. },
            ]
        ),
        "{seen:?}"
    );
}

#[test]
fn device_and_address_bindings_on_both_proxy_fronts() {
    let config = r#"
[[bindings]]
claim = "device"
equals = "sha256(user-agent, accept-language)"

[[bindings]]
claim = "ip"
equals = "client_ip"
if_missing = "allow"
"#;
    let d = daemon("off", config, &[]);
    let device = jwtd::bind::rules::device_fingerprint([Some("curl/8.5"), Some("en")].into_iter());
    let token = d.token(json!({"device": device, "ip": "192.0.2.0/24"}));
    let headers = |ua: &str| {
        format!("Authorization: Bearer {token}\r\nUser-Agent: {ua}\r\nAccept-Language: en\r\n")
    };
    // HTTP front: nginx passes X-Real-IP 192.0.2.7.
    assert_eq!(nginx(&d, "GET", "/", &headers("curl/8.5")).status, 200);
    let a = nginx(&d, "GET", "/", &headers("stolen/1.0"));
    assert_eq!(a.header("x-jwt-reason"), Some("binding_mismatch"));
    // gRPC front: Envoy's source address.
    let mut grpc = Grpc::connect(d.grpc_socket());
    let bearer = format!("Bearer {token}");
    let h = [
        ("authorization", bearer.as_str()),
        ("user-agent", "curl/8.5"),
        ("accept-language", "en"),
    ];
    assert_eq!(
        grpc_reason(&grpc.check("GET", "/", &h, "192.0.2.9", None)),
        None
    );
    assert_eq!(
        grpc_reason(&grpc.check("GET", "/", &h, "198.51.100.1", None)).as_deref(),
        Some("binding_mismatch")
    );
    // A token without the device claim: refused (the rule's default); one
    // without the ip claim passes (if_missing = "allow").
    let no_device = d.token(json!({"ip": "192.0.2.7"}));
    let a = nginx(
        &d,
        "GET",
        "/",
        &format!("Authorization: Bearer {no_device}\r\nUser-Agent: curl/8.5\r\n"),
    );
    assert_eq!(a.header("x-jwt-reason"), Some("binding_mismatch"));
    let no_ip = d.token(json!({"device": device}));
    let h = [
        ("authorization", &*format!("Bearer {no_ip}")),
        ("user-agent", "curl/8.5"),
        ("accept-language", "en"),
    ];
    assert_eq!(
        grpc_reason(&grpc.check("GET", "/", &h, "203.0.113.1", None)),
        None
    );
}

#[test]
fn bad_binding_settings_are_reported_together_with_exit_64() {
    let config = r#"
dpop = "sometimes"
dpop_algorithms = ["HS256"]
dpop_max_age = "1h"
public_origin = "https://api.example.com/path"
client_cert_header = "x-ssl-cert"

[[bindings]]
claim = "device"
equals = "md5(user-agent)"

[[bindings]]
equals = "client_ip"
if_missing = "maybe"
"#;
    let exited = Jwtd::builder().config(config).run_until_exit();
    assert_eq!(exited.code, Some(64), "{}", exited.log);
    for needle in [
        "dpop:",
        "dpop_algorithms:",
        "dpop_max_age:",
        "public_origin:",
        "client_cert_header:",
        "bindings[0].equals",
        "bindings[1].claim",
    ] {
        assert!(
            exited.log.contains(needle),
            "{needle} not reported:\n{}",
            exited.log
        );
    }
}

#[test]
fn a_proof_replayed_to_another_daemon_sharing_redis_is_refused() {
    let redis = crate::revocation::Redis::start();
    let first = Jwtd::builder()
        .admin()
        .args(["--dpop", "allowed", "--redis", &redis.url()])
        .start();
    // The second daemon trusts the same key (another pod of the fleet).
    let same_key = SigningKey::from_file_contents(&first.key.private_file().unwrap())
        .unwrap()
        .with_kid(first.key.kid().map(str::to_owned));
    let second = Jwtd::builder()
        .signing_key(same_key)
        .args(["--dpop", "allowed", "--redis", &redis.url()])
        .start();
    let client = Client::new(Algorithm::EdDSA);
    let token = bound_token(&first, &client);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (a, b) = (first.client().await, second.client().await);
        let ctx = |proof: String| WireContext {
            method: Some("GET".into()),
            uri: Some(URI.into()),
            dpop: Some(proof.into()),
            ..WireContext::default()
        };
        let proof = ctx(client.proof("GET", URI, &token));
        let r = a
            .verify_with_context(b"", token.as_bytes(), &proof)
            .await
            .unwrap();
        assert!(matches!(r, Reply::Valid { .. }), "{r:?}");
        // The same proof at the other pod: caught through Redis.
        let r = b
            .verify_with_context(b"", token.as_bytes(), &proof)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Invalid {
                    reason: Reject::DpopReplay,
                    ..
                }
            ),
            "{r:?}"
        );
        // A fresh proof passes at either.
        let fresh = ctx(client.proof("GET", URI, &token));
        let r = b
            .verify_with_context(b"", token.as_bytes(), &fresh)
            .await
            .unwrap();
        assert!(matches!(r, Reply::Valid { .. }), "{r:?}");
        // Concurrent replays of one proof across both daemons: exactly one
        // passes.
        let once = ctx(client.proof("GET", URI, &token));
        let tries = (0..16).map(|i| {
            let (c, once, token) = (if i % 2 == 0 { &a } else { &b }, &once, &token);
            async move {
                c.verify_with_context(b"", token.as_bytes(), once)
                    .await
                    .unwrap()
            }
        });
        let replies = futures_util::future::join_all(tries).await;
        let valid = replies
            .iter()
            .filter(|r| matches!(r, Reply::Valid { .. }))
            .count();
        assert_eq!(valid, 1, "{replies:?}");
        assert!(replies.iter().all(|r| matches!(
            r,
            Reply::Valid { .. }
                | Reply::Invalid {
                    reason: Reject::DpopReplay,
                    ..
                }
        )));
    });
    // The claims are in Redis under the revocation prefix, with a TTL.
    let keys = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "--scan", "--pattern", "jwtd:dpop:*"])
        .output()
        .expect("redis-cli");
    let listed = String::from_utf8_lossy(&keys.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // Redis down with revocation failing closed: undecided, never valid.
    drop(redis);
    rt.block_on(async {
        let a = first.client().await;
        let proof = WireContext {
            method: Some("GET".into()),
            uri: Some(URI.into()),
            dpop: Some(client.proof("GET", URI, &token).into()),
            ..WireContext::default()
        };
        let r = a
            .verify_with_context(b"", token.as_bytes(), &proof)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Undecided {
                    cause: jwtd::protocol::Cause::RevocationUnavailable,
                    ..
                }
            ),
            "{r:?}"
        );
    });
}

#[test]
fn the_command_line_mints_bound_tokens_signs_proofs_and_verifies_with_context() {
    use crate::support::{run_jwtd, stdout_json};
    let d = daemon("allowed", "", &[]);
    let dir = d.dir.path();
    // The daemon's signing key, and a client key, as files.
    let issuer_key = dir.join("issuer.pem");
    std::fs::write(&issuer_key, d.key.private_file().unwrap()).unwrap();
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let client_key = dir.join("client.pem");
    std::fs::write(&client_key, client.private_file().unwrap()).unwrap();
    let path = |p: &Path| p.display().to_string();
    let kid = d.key.kid().unwrap_or_default().to_owned();
    let out = run_jwtd(
        &[
            "mint",
            "--key",
            &path(&issuer_key),
            "--kid",
            &kid,
            "--dpop-key",
            &path(&client_key),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let proof = |method: &str| {
        let out = run_jwtd(
            &[
                "dpop",
                "--key",
                &path(&client_key),
                "--method",
                method,
                "--uri",
                URI,
                "--token",
                &token,
            ],
            None,
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let socket = path(&d.socket);
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--socket", &socket];
        args.extend_from_slice(extra);
        args.push(&token);
        let out = run_jwtd(&args, None);
        (out.status.code(), stdout_json(&out))
    };
    let good = proof("GET");
    let (code, v) = verify(&["--method", "GET", "--uri", URI, "--dpop-proof", &good]);
    assert_eq!((code, &v["valid"]), (Some(0), &json!(true)), "{v}");
    assert_eq!(v["claims"]["cnf"]["jkt"], json!(client.thumbprint()));
    let (code, v) = verify(&["--method", "GET", "--uri", URI, "--dpop-proof", &good]);
    assert_eq!((code, v["reason"].as_str()), (Some(1), Some("dpop_replay")));
    let (code, v) = verify(&[
        "--method",
        "POST",
        "--uri",
        URI,
        "--dpop-proof",
        &proof("GET"),
    ]);
    assert_eq!(
        (code, v["reason"].as_str()),
        (Some(1), Some("dpop_mismatch"))
    );
    let (code, v) = verify(&[]);
    assert_eq!(
        (code, v["reason"].as_str()),
        (Some(1), Some("bearer_downgrade"))
    );

    // Certificate-bound: mint --cert, verify --client-cert (PEM or DER).
    let pem_of = |der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
    };
    let (mine, theirs) = (dir.join("mine.pem"), dir.join("theirs.der"));
    std::fs::write(&mine, pem_of(b"\x30\x03\x02\x01\x01")).unwrap();
    std::fs::write(&theirs, b"\x30\x03\x02\x01\x02").unwrap();
    let out = run_jwtd(
        &[
            "mint",
            "--key",
            &path(&issuer_key),
            "--kid",
            &kid,
            "--cert",
            &path(&mine),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let bound = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let check = |cert: &Path| {
        let out = run_jwtd(
            &[
                "verify",
                "--socket",
                &socket,
                "--client-cert",
                &path(cert),
                &bound,
            ],
            None,
        );
        (out.status.code(), stdout_json(&out))
    };
    let (code, v) = check(&mine);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        v["claims"]["cnf"]["x5t#S256"],
        json!(x5t(b"\x30\x03\x02\x01\x01"))
    );
    let (code, v) = check(&theirs);
    assert_eq!(
        (code, v["reason"].as_str()),
        (Some(1), Some("cnf_mismatch"))
    );
}

#[test]
fn strip_token_removes_a_dpop_proof_and_dpop_to_bearer_rewrites_the_scheme_on_grpc() {
    let client = Client::new(Algorithm::ES256);
    for (flag, removed, set) in [
        ("--strip-token", vec!["authorization", "dpop"], None),
        ("--dpop-to-bearer", vec!["dpop"], Some("authorization")),
    ] {
        let d = daemon("allowed", "", &[flag, "true"]);
        let mut grpc = Grpc::connect(d.grpc_socket());
        let token = bound_token(&d, &client);
        let auth = format!("DPoP {token}");
        let proof = client.proof("GET", URI, &token);
        let r = grpc.check(
            "GET",
            "/orders",
            &[("authorization", &auth), ("dpop", &proof)],
            "192.0.2.7",
            None,
        );
        let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
            panic!("{flag}: {r:?}")
        };
        for name in removed {
            assert!(
                ok.headers_to_remove.iter().any(|h| h == name),
                "{flag}: {name} kept: {ok:?}"
            );
        }
        let rewritten = ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "authorization")
            .map(|h| h.value.clone());
        assert_eq!(rewritten, set.map(|_| format!("Bearer {token}")), "{flag}");
    }
}
