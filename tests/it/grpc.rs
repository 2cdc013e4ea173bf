//! The gRPC front (`--grpc-socket`) of the real `jwtd serve`, without Envoy:
//! a tonic client calls `envoy.service.auth.v3.Authorization/Check` over the
//! Unix socket (and TCP with `--grpc-listen`) with the `CheckRequest`s Envoy's
//! `ext_authz` filter sends, in its default form (a header map) and with
//! `encode_raw_headers` (a header list with raw values).

use std::path::Path;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use hyper_util::rt::TokioIo;
use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;
use serde_json::json;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::support::{Jwtd, WAIT, free_port, front_token, now};

/// `jwtd serve` with a gRPC front: `config` is the TOML of its config file
/// (for `[[routes]]`), `extra` more flags.
fn start(config: &str, extra: &[&str]) -> Jwtd {
    Jwtd::builder()
        .grpc_front()
        .config(config)
        .args(extra)
        .start()
}

/// A tonic client (one channel: one HTTP/2 connection) on its own
/// single-threaded runtime, so that the tests stay synchronous.
struct Client {
    rt: tokio::runtime::Runtime,
    grpc: AuthorizationClient<Channel>,
    /// The connection itself, for raw streams.
    channel: Channel,
}

impl Client {
    /// Connected to the front's Unix socket.
    fn unix(path: &Path) -> Client {
        let rt = runtime();
        let path = path.to_path_buf();
        let channel = rt.block_on(async move {
            Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
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
        Client {
            rt,
            grpc: AuthorizationClient::new(channel.clone()),
            channel,
        }
    }

    /// Connected over TCP to `addr`, retrying until it listens.
    fn tcp(addr: &str) -> Client {
        let rt = runtime();
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
        let channel = rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match endpoint.connect().await {
                    Ok(channel) => break channel,
                    Err(e) => assert!(Instant::now() < deadline, "TCP front: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Client {
            rt,
            grpc: AuthorizationClient::new(channel.clone()),
            channel,
        }
    }

    fn check(&mut self, request: CheckRequest) -> Result<CheckResponse, tonic::Status> {
        self.rt
            .block_on(self.grpc.check(request))
            .map(tonic::Response::into_inner)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The pseudo-headers Envoy puts first, then `headers`.
fn envoy_headers<'a>(path: &'a str, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        (":authority", "app.example"),
        (":method", "GET"),
        (":path", path),
        (":scheme", "https"),
    ];
    all.extend_from_slice(headers);
    all
}

/// A check as Envoy sends it by default: lower-case headers in the
/// `headers` map, the path with its query in `path`.
fn check(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    envoy_check(HttpRequest {
        headers: envoy_headers(path, headers)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..http_request(path)
    })
}

/// The same check with `encode_raw_headers: true`: `headers` empty, each
/// header in `header_map` with its value in `raw_value`.
fn raw_check(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers = envoy_headers(path, headers)
        .into_iter()
        .map(|(k, v)| HeaderValue {
            key: k.to_owned(),
            value: String::new(),
            raw_value: v.as_bytes().to_vec(),
        })
        .collect();
    envoy_check(HttpRequest {
        header_map: Some(HeaderMap { headers }),
        ..http_request(path)
    })
}

fn http_request(path: &str) -> HttpRequest {
    HttpRequest {
        id: "1234".to_owned(),
        method: "GET".to_owned(),
        path: path.to_owned(),
        host: "app.example".to_owned(),
        scheme: "https".to_owned(),
        protocol: "HTTP/1.1".to_owned(),
        ..Default::default()
    }
}

fn envoy_check(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `OkHttpResponse` of an allowed check (status `OK`).
#[track_caller]
fn allowed(r: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(
        r.status.as_ref().map(|s| s.code),
        Some(Code::Ok as i32),
        "{r:?}"
    );
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        _ => panic!("allowed without an OkHttpResponse: {r:?}"),
    }
}

/// The `DeniedHttpResponse` of a denied check, with gRPC status `code` and
/// HTTP status `http`.
#[track_caller]
fn denied(r: &CheckResponse, code: Code, http: i32) -> &DeniedHttpResponse {
    assert_eq!(
        r.status.as_ref().map(|s| s.code),
        Some(code as i32),
        "{r:?}"
    );
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => {
            assert_eq!(d.status.as_ref().map(|s| s.code), Some(http), "{r:?}");
            d
        }
        _ => panic!("denied without a DeniedHttpResponse: {r:?}"),
    }
}

/// The 401 of a check without a valid token.
#[track_caller]
fn unauthenticated(r: &CheckResponse) -> &DeniedHttpResponse {
    denied(r, Code::Unauthenticated, 401)
}

/// The value an allowed check sets upstream for `name`; checks that it
/// replaces whatever the client sent.
#[track_caller]
fn upstream<'r>(ok: &'r OkHttpResponse, name: &str) -> Option<&'r str> {
    let mut found = ok
        .headers
        .iter()
        .filter(|h| h.header.as_ref().is_some_and(|h| h.key == name));
    let option = found.next()?;
    assert!(found.next().is_none(), "{name} set twice: {ok:?}");
    assert_eq!(
        option.append_action,
        HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        "{name} must overwrite what the client sent: {option:?}"
    );
    #[allow(deprecated)] // Envoy would honour `append` over `append_action`.
    let append = option.append;
    assert_eq!(append, None, "{name}: {option:?}");
    option.header.as_ref().map(|h| h.value.as_str())
}

/// The value of `name` in a denied check's response to the client.
fn to_client<'r>(d: &'r DeniedHttpResponse, name: &str) -> Option<&'r str> {
    d.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

const INVALID: &str = "Bearer error=\"invalid_token\"";

#[test]
fn a_valid_token_is_ok_with_claim_headers_that_overwrite_and_absent_claims_removed() {
    let front = start("", &["--forward-payload", "true"]);
    let mut grpc = Client::unix(front.grpc_socket());
    // No scope claim: x-jwt-scope must not reach the upstream, even forged.
    let token = front.token(json!({"aud": ["api", "other"]}));
    let auth = bearer(&token);
    let r = grpc
        .check(check(
            "/orders",
            &[("authorization", &auth), ("x-jwt-scope", "admin")],
        ))
        .expect("check");
    let ok = allowed(&r);
    assert_eq!(upstream(ok, "x-jwt-sub"), Some("alice"));
    assert_eq!(upstream(ok, "x-jwt-iss"), Some("https://issuer.example"));
    assert_eq!(
        upstream(ok, "x-jwt-aud"),
        Some("api other"),
        "arrays: space-separated"
    );
    assert_eq!(upstream(ok, "x-jwt-scope"), None);
    assert_eq!(ok.headers_to_remove, ["x-jwt-scope"]);
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(upstream(ok, "x-jwt-payload"), Some(payload));
    assert_eq!(ok.headers.len(), 4, "{ok:?}");

    // Every claim present: nothing to remove, the token header stays.
    let token = front.token(json!({"aud": "api", "scope": "read write"}));
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&token))]))
        .expect("check");
    let ok = allowed(&r);
    assert_eq!(upstream(ok, "x-jwt-scope"), Some("read write"));
    assert_eq!(upstream(ok, "x-jwt-aud"), Some("api"));
    assert!(ok.headers_to_remove.is_empty(), "{ok:?}");
    // The scheme is case-insensitive (RFC 7235).
    let r = grpc
        .check(check("/", &[("authorization", &format!("bearer {token}"))]))
        .expect("check");
    allowed(&r);
}

#[test]
fn missing_and_invalid_tokens_are_unauthenticated_401_with_rfc_6750_challenges() {
    let front = start("", &[]);
    let mut grpc = Client::unix(front.grpc_socket());
    let missing = grpc.check(check("/", &[])).expect("check");
    let d = unauthenticated(&missing);
    assert_eq!(
        to_client(d, "www-authenticate"),
        Some("Bearer"),
        "no error code without credentials"
    );
    assert_eq!(to_client(d, "x-jwt-reason"), None);
    let generic = d.body.clone();
    assert!(!generic.is_empty());

    let expired = front.token(json!({"exp": now() - 3600}));
    let other_key = SigningKey::generate(Algorithm::ES256)
        .expect("key")
        .with_kid(Some("k1".into()));
    let wrong_key = front_token(&other_key, json!({}));
    for bad in ["garbage", "a.b.c", expired.as_str(), wrong_key.as_str()] {
        let r = grpc
            .check(check("/", &[("authorization", &bearer(bad))]))
            .expect("check");
        let d = unauthenticated(&r);
        assert_eq!(to_client(d, "www-authenticate"), Some(INVALID), "{bad}");
        assert_eq!(
            to_client(d, "x-jwt-reason"),
            None,
            "reasons stay private by default"
        );
        assert_eq!(d.body, generic, "the body is generic");
        assert_eq!(d.headers.len(), 1, "{d:?}");
    }
    // Another scheme is no bearer token.
    let r = grpc
        .check(check("/", &[("authorization", "Basic YWxpY2U6cHc=")]))
        .expect("check");
    assert_eq!(
        to_client(unauthenticated(&r), "www-authenticate"),
        Some("Bearer")
    );
}

#[test]
fn the_debug_header_names_the_reason_only_when_enabled() {
    let front = start("", &["--debug-reason", "true"]);
    let mut grpc = Client::unix(front.grpc_socket());
    let expired = front.token(json!({"exp": now() - 3600}));
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&expired))]))
        .expect("check");
    let d = unauthenticated(&r);
    assert_eq!(to_client(d, "x-jwt-reason"), Some("expired"));
    assert_eq!(to_client(d, "www-authenticate"), Some(INVALID));
    assert!(!d.body.contains("expired"), "the body stays generic");
    let r = grpc.check(check("/", &[])).expect("check");
    assert_eq!(
        to_client(unauthenticated(&r), "x-jwt-reason"),
        Some("missing_token")
    );
}

#[test]
fn routes_are_permission_denied_403_by_the_path_without_its_query() {
    let routes = r#"
        [[routes]]
        prefix = "/api/"
        scopes = ["read"]

        [[routes]]
        prefix = "/api/admin/"
        scopes = ["admin"]
        claims = { tier = ["gold"] }

        [[routes]]
        prefix = "/ops/"
        claims = { "realm_access.roles" = ["ops", "sre"] }
    "#;
    let front = start(routes, &[]);
    let mut grpc = Client::unix(front.grpc_socket());
    let reader = bearer(&front.token(json!({"scope": "read"})));
    let admin = bearer(&front.token(json!({"scp": ["read", "admin"], "tier": "gold"})));
    let silver = bearer(&front.token(json!({"scope": "read admin", "tier": "silver"})));
    let ops = bearer(&front.token(json!({"realm_access": {"roles": ["dev", "ops"]}})));
    let mut decide = |path: &str, auth: &str| {
        grpc.check(check(path, &[("authorization", auth)]))
            .expect("check")
    };
    let forbidden = |r: &CheckResponse| -> String {
        let d = denied(r, Code::PermissionDenied, 403);
        to_client(d, "www-authenticate")
            .unwrap_or_default()
            .to_owned()
    };
    allowed(&decide("/api/orders", &reader));
    allowed(&decide("/public", &reader));
    assert_eq!(
        forbidden(&decide("/api/admin/users", &reader)),
        "Bearer error=\"insufficient_scope\", scope=\"admin\""
    );
    assert_eq!(
        forbidden(&decide("/api/orders", &ops)),
        "Bearer error=\"insufficient_scope\", scope=\"read\""
    );
    allowed(&decide("/api/admin/users", &admin));
    assert_eq!(
        forbidden(&decide("/api/admin/users", &silver)),
        "Bearer error=\"insufficient_scope\", scope=\"admin\"",
        "every claim must match too"
    );
    // A route with claims only: no scope in the challenge.
    allowed(&decide("/ops/deploy", &ops));
    assert_eq!(
        forbidden(&decide("/ops/deploy", &reader)),
        "Bearer error=\"insufficient_scope\""
    );
    // The query is not part of the path that selects the route.
    assert_eq!(
        forbidden(&decide("/api/admin/users?next=/public", &reader)),
        "Bearer error=\"insufficient_scope\", scope=\"admin\""
    );
    allowed(&decide("/public?next=/api/admin/users", &reader));
    allowed(&decide("/api/orders?x=/api/admin/", &reader));
    // The denied body is generic too.
    let r = decide("/api/admin/users", &reader);
    assert!(!denied(&r, Code::PermissionDenied, 403).body.is_empty());
}

#[test]
fn strip_token_and_a_custom_token_header() {
    let front = start("", &["--strip-token", "true"]);
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({"aud": "api", "scope": "read"}));
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&token))]))
        .expect("check");
    assert_eq!(
        allowed(&r).headers_to_remove,
        ["authorization"],
        "the token does not go upstream"
    );

    let config = r#"
        token_header = "x-access-token"
        strip_token = true
        [claim_headers]
        x-user = "sub"
        x-roles = "realm_access.roles"
        x-missing = "nope"
    "#;
    let front = start(config, &[]);
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({"realm_access": {"roles": ["ops", "dev"]}}));
    for value in [token.clone(), bearer(&token)] {
        let r = grpc
            .check(check("/", &[("x-access-token", &value)]))
            .expect("check");
        let ok = allowed(&r);
        assert_eq!(upstream(ok, "x-user"), Some("alice"));
        assert_eq!(upstream(ok, "x-roles"), Some("ops dev"));
        assert_eq!(
            upstream(ok, "x-jwt-sub"),
            None,
            "the mapping replaces the defaults"
        );
        assert_eq!(ok.headers_to_remove, ["x-missing", "x-access-token"]);
    }
    // Authorization is not read when another header holds the token.
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&token))]))
        .expect("check");
    unauthenticated(&r);
}

#[test]
fn a_cookie_or_query_token_counts_only_when_named() {
    let front = start("", &["--token-cookie", "session"]);
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({}));
    let cookie = format!("theme=dark; session={token}");
    let r = grpc
        .check(check("/", &[("cookie", &cookie)]))
        .expect("check");
    assert_eq!(upstream(allowed(&r), "x-jwt-sub"), Some("alice"));
    let r = grpc
        .check(check("/", &[("cookie", "theme=dark; other=x")]))
        .expect("check");
    unauthenticated(&r);
    let r = grpc
        .check(check(&format!("/x?access_token={token}"), &[]))
        .expect("check");
    unauthenticated(&r);

    let front = start("", &["--token-query", "access_token"]);
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({}));
    let r = grpc
        .check(check(&format!("/x?a=1&access_token={token}"), &[]))
        .expect("check");
    allowed(&r);
    let r = grpc
        .check(check(&format!("/x?token={token}"), &[]))
        .expect("check");
    unauthenticated(&r);
    // No cookie setting: a cookie is not read.
    let r = grpc
        .check(check("/", &[("cookie", &format!("session={token}"))]))
        .expect("check");
    unauthenticated(&r);
}

#[test]
fn raw_headers_are_decided_like_the_header_map() {
    let front = start(
        "",
        &["--token-cookie", "session", "--forward-payload", "true"],
    );
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({"aud": "api"}));
    let expired = front.token(json!({"exp": now() - 3600}));
    let (auth, old, cookie) = (
        bearer(&token),
        bearer(&expired),
        format!("a=b; session={token}"),
    );
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("/", &[("authorization", &auth)]),
        ("/", &[("authorization", &old)]),
        ("/", &[("cookie", &cookie)]),
        ("/", &[]),
        ("/x", &[("authorization", "Basic YWxpY2U6cHc=")]),
    ];
    for (path, headers) in cases {
        let map = grpc.check(check(path, headers)).expect("check");
        let raw = grpc.check(raw_check(path, headers)).expect("raw check");
        assert_eq!(raw, map, "{headers:?}");
    }
    let r = grpc
        .check(raw_check("/", &[("authorization", &auth)]))
        .expect("check");
    let ok = allowed(&r);
    assert_eq!(upstream(ok, "x-jwt-sub"), Some("alice"));
    assert_eq!(ok.headers_to_remove, ["x-jwt-scope"]);
    let r = grpc
        .check(raw_check("/", &[("authorization", &old)]))
        .expect("check");
    assert_eq!(
        to_client(unauthenticated(&r), "www-authenticate"),
        Some(INVALID)
    );
    // A list may repeat a header: every `cookie` entry is searched.
    let session = format!("session={token}");
    let r = grpc
        .check(raw_check("/", &[("cookie", "a=b"), ("cookie", &session)]))
        .expect("check");
    allowed(&r);
    // A value in `value` rather than `raw_value` counts as well.
    let mut request = raw_check("/", &[("authorization", &auth)]);
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    for h in &mut http.header_map.as_mut().unwrap().headers {
        h.value = String::from_utf8(std::mem::take(&mut h.raw_value)).unwrap();
    }
    allowed(&grpc.check(request).expect("check"));
}

#[test]
fn a_check_without_http_attributes_is_invalid_argument() {
    let front = start("", &[]);
    let mut grpc = Client::unix(front.grpc_socket());
    let no_http = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request::default()),
            ..Default::default()
        }),
    };
    for request in [CheckRequest::default(), no_http] {
        let e = grpc.check(request).expect_err("not a check");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    assert!(front.is_running());
    // The same channel goes on.
    let token = front.token(json!({}));
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&token))]))
        .expect("check");
    allowed(&r);
}

#[test]
fn no_keys_yet_is_unavailable_never_ok() {
    let front = Jwtd::builder()
        .grpc_front()
        .no_jwks_file()
        .args(["--jwks-url", "http://127.0.0.1:9/jwks.json"])
        .start();
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({}));
    for _ in 0..3 {
        let e = grpc
            .check(check("/", &[("authorization", &bearer(&token))]))
            .expect_err("no keys: no decision");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
}

#[test]
fn many_concurrent_checks_on_one_channel_are_each_answered() {
    let front = start("", &[]);
    let mut grpc = Client::unix(front.grpc_socket());
    let expired = bearer(&front.token(json!({"exp": now() - 3600})));
    // Each valid token has its own subject, so an answer given to the wrong
    // stream would show.
    let requests: Vec<(CheckRequest, Option<String>)> = (0..200)
        .map(|i| match i % 4 {
            0 | 1 => {
                let sub = format!("user{i}");
                let token = front.token(json!({"sub": sub}));
                (
                    check(&format!("/r/{i}"), &[("authorization", &bearer(&token))]),
                    Some(sub),
                )
            }
            2 => (check("/", &[("authorization", &expired)]), None),
            _ => (check("/", &[("authorization", "Bearer garbage")]), None),
        })
        .collect();
    // All in flight at once: one stream each on the channel's connection.
    let calls = requests.iter().map(|(request, _)| {
        let mut client = grpc.grpc.clone();
        let request = request.clone();
        async move { client.check(request).await.map(tonic::Response::into_inner) }
    });
    let answers = grpc.rt.block_on(futures_util::future::join_all(calls));
    assert_eq!(answers.len(), requests.len());
    for (i, (answer, (_, sub))) in answers.iter().zip(&requests).enumerate() {
        let r = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("check {i}: {e:?}"));
        match sub {
            Some(sub) => assert_eq!(
                upstream(allowed(r), "x-jwt-sub"),
                Some(sub.as_str()),
                "check {i}"
            ),
            None => assert_eq!(
                to_client(unauthenticated(r), "www-authenticate"),
                Some(INVALID),
                "check {i}"
            ),
        }
    }
    // And the channel still serves one more.
    let r = grpc.check(check("/", &[])).expect("check");
    unauthenticated(&r);
}

#[test]
fn the_front_also_serves_on_tcp_when_asked() {
    let addr = format!("127.0.0.1:{}", free_port());
    let front = start("", &["--grpc-listen", &addr]);
    let token = front.token(json!({}));
    let auth = bearer(&token);
    let mut tcp = Client::tcp(&addr);
    let r = tcp
        .check(check("/", &[("authorization", &auth)]))
        .expect("check over TCP");
    assert_eq!(upstream(allowed(&r), "x-jwt-sub"), Some("alice"));
    unauthenticated(&tcp.check(check("/", &[])).expect("check over TCP"));
    // The Unix socket is still served.
    let mut unix = Client::unix(front.grpc_socket());
    allowed(
        &unix
            .check(check("/", &[("authorization", &auth)]))
            .expect("check"),
    );
}

#[test]
fn a_check_over_the_message_limit_is_refused_and_the_daemon_keeps_serving() {
    let front = start("", &[]);
    let token = front.token(json!({}));
    let auth = bearer(&token);
    // Under grpc_max_message_bytes (64 KiB): decided as usual.
    let big = "a".repeat(60 * 1024);
    let mut grpc = Client::unix(front.grpc_socket());
    let r = grpc
        .check(check("/", &[("authorization", &auth), ("x-big", &big)]))
        .expect("a check under the limit");
    allowed(&r);
    // Over it (a tenth of the old 1 MiB limit): an RPC error, not a decision.
    let huge = "a".repeat(100 * 1024);
    let e = grpc
        .check(check("/", &[("authorization", &auth), ("x-big", &huge)]))
        .expect_err("an oversized check");
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(front.is_running());
    let mut grpc = Client::unix(front.grpc_socket());
    let r = grpc
        .check(check("/", &[("authorization", &auth)]))
        .expect("a normal check on a new channel");
    allowed(&r);
}

/// A raw `Check` stream on `channel`: the 5-byte gRPC prefix announcing
/// `announced` bytes, then `sent` bytes of it, and the body left open
/// (until the returned sender is dropped). Resolves to the RPC's status.
fn unfinished_check(
    channel: &Channel,
    announced: u32,
    sent: usize,
) -> (
    tokio::sync::mpsc::Sender<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>,
    impl std::future::Future<Output = tonic::Status> + use<>,
) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut data = vec![0u8];
    data.extend_from_slice(&announced.to_be_bytes());
    data.extend(std::iter::repeat_n(b'a', sent));
    tx.try_send(Ok(http_body::Frame::data(bytes::Bytes::from(data))))
        .expect("room for the first frame");
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri("http://[::]:50051/envoy.service.auth.v3.Authorization/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    let channel = channel.clone();
    let status = async move {
        let response = channel.oneshot(request).await.expect("a response");
        if let Some(status) = tonic::Status::from_header_map(response.headers()) {
            return status;
        }
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().unwrap_or_default();
        tonic::Status::from_header_map(&trailers).expect("grpc-status")
    };
    (tx, status)
}

#[test]
fn never_finished_checks_are_refused_or_timed_out_while_fresh_clients_are_served() {
    let front = start("", &[]);
    let token = front.token(json!({}));
    let auth = bearer(&token);
    let stalled = Client::unix(front.grpc_socket());
    let channel = stalled.channel.clone();
    let started = Instant::now();
    let (senders, statuses): (Vec<_>, Vec<_>) = stalled.rt.block_on(async {
        // 200 streams, each announcing a ~1 MB message and sending 10 KB of
        // it: refused on the announcement, nothing buffered.
        let mut senders = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..200 {
            let (tx, status) = unfinished_check(&channel, 1_000_000, 10_000);
            senders.push(tx);
            calls.push(tokio::spawn(status));
        }
        // And one within the limit that never ends: timed out.
        let (tx, status) = unfinished_check(&channel, 32 * 1024, 10_000);
        senders.push(tx);
        calls.push(tokio::spawn(status));
        (senders, calls)
    });
    // Meanwhile a fresh client is served, on its own connection.
    let mut fresh = Client::unix(front.grpc_socket());
    allowed(
        &fresh
            .check(check("/", &[("authorization", &auth)]))
            .expect("a fresh check"),
    );
    let statuses: Vec<tonic::Status> = stalled.rt.block_on(async {
        let all = futures_util::future::join_all(statuses);
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("every stream answered within 60 s")
            .into_iter()
            .map(|r| r.expect("task"))
            .collect()
    });
    for status in &statuses[..200] {
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    }
    let last = &statuses[200];
    assert_eq!(last.code(), Code::DeadlineExceeded, "{last:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the body timeout is 10 s"
    );
    drop(senders);
    // The channel that carried them still serves.
    let mut stalled = stalled;
    allowed(
        &stalled
            .check(check("/", &[("authorization", &auth)]))
            .expect("a check after the stalled ones"),
    );
}

#[test]
fn request_bytes_over_the_front_budget_are_refused_until_freed() {
    let front = start(
        "",
        &[
            "--grpc-max-buffered-bytes",
            "65536",
            "--grpc-max-message-bytes",
            "32768",
            "--grpc-body-timeout",
            "3s",
        ],
    );
    let token = front.token(json!({}));
    let auth = bearer(&token);
    let holder = Client::unix(front.grpc_socket());
    let channel = holder.channel.clone();
    // Three unfinished checks of 30 KB each on one connection: two fit the
    // 64 KiB budget and are held until the body timeout; the budget refuses
    // whichever comes third in the daemon's reading order (not knowable
    // from here, so the test does not guess it by sleeping).
    let (held, statuses) = holder.rt.block_on(async {
        let mut held = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..3 {
            let (tx, status) = unfinished_check(&channel, 32_000, 30_000);
            held.push(tx);
            calls.push(tokio::spawn(status));
        }
        let all = futures_util::future::join_all(calls);
        let statuses: Vec<Code> = tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("every check is answered within 60 s")
            .into_iter()
            .map(|r| r.expect("task").code())
            .collect();
        (held, statuses)
    });
    let refused = statuses
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    let timed_out = statuses
        .iter()
        .filter(|c| **c == Code::DeadlineExceeded)
        .count();
    assert!(
        refused >= 1 && timed_out >= 1 && refused + timed_out == 3,
        "{statuses:?}"
    );
    // Once the holders timed out, their bytes are freed: checks pass again.
    drop(held);
    let mut fresh = Client::unix(front.grpc_socket());
    let big = "a".repeat(20_000);
    allowed(
        &fresh
            .check(check("/", &[("authorization", &auth), ("x-big", &big)]))
            .expect("a check once the budget is free"),
    );
}

#[test]
fn sigterm_while_connected_removes_the_socket_and_exits_0() {
    // A grace far beyond the wait below: the daemon must finish because
    // the connection drained, not because the grace ran out.
    let front = start("", &["--shutdown-grace", "90s"]);
    let mut grpc = Client::unix(front.grpc_socket());
    let token = front.token(json!({}));
    allowed(
        &grpc
            .check(check("/", &[("authorization", &bearer(&token))]))
            .expect("check"),
    );
    front.signal(libc::SIGTERM);
    // The client's runtime keeps running while we wait, so its connection
    // answers the server's GOAWAY and PING as Envoy's would.
    let started = Instant::now();
    let status = grpc.rt.block_on(async {
        loop {
            if let Some(status) = front.try_exit() {
                break status;
            }
            assert!(
                started.elapsed() < WAIT,
                "jwtd still running {WAIT:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        !front.grpc_socket().exists(),
        "the gRPC socket file is removed"
    );
    drop(grpc);
}

/// An encrypted token (a nested JWT) through the gRPC front: its decrypted
/// claims become the headers upstream, `forward_payload` carries the
/// decrypted claims, `strip_token` removes the JWE; tampered, the one
/// opaque refusal.
#[test]
fn a_nested_jwt_passes_the_grpc_front_with_its_decrypted_claims() {
    use base64::Engine as _;
    use jwtd::verify::jwe::{Enc, KeyAlg};
    let dir = tempfile::tempdir().unwrap();
    let secret = json!({"kty": "oct", "kid": "enc-g", "k": jwtd::verify::B64URL.encode([9u8; 32])});
    let keys = dir.path().join("jwe.json");
    std::fs::write(&keys, json!({ "keys": [secret] }).to_string()).unwrap();
    let front = start(
        "",
        &[
            "--jwe-keys",
            keys.to_str().unwrap(),
            "--forward-payload",
            "true",
            "--strip-token",
            "true",
            "--debug-reason",
            "true",
        ],
    );
    let mut grpc = Client::unix(front.grpc_socket());
    let inner = front.token(json!({"aud": "api", "scope": "read"}));
    let jwe = jwtd::seal::seal(
        inner.as_bytes(),
        secret.as_object().unwrap(),
        KeyAlg::AesKw(256),
        Enc::Gcm(256),
        Some("JWT"),
    )
    .unwrap();
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&jwe))]))
        .expect("check");
    let ok = allowed(&r);
    assert_eq!(upstream(ok, "x-jwt-sub"), Some("alice"));
    assert_eq!(upstream(ok, "x-jwt-scope"), Some("read"));
    let payload = upstream(ok, "x-jwt-payload").expect("x-jwt-payload");
    assert_eq!(
        payload,
        inner.split('.').nth(1).unwrap(),
        "the inner token's claims"
    );
    assert!(ok.headers_to_remove.iter().any(|h| h == "authorization"));
    let mut tampered = jwe.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = grpc
        .check(check("/", &[("authorization", &bearer(&tampered))]))
        .expect("check");
    let denied = unauthenticated(&r);
    assert!(
        matches!(
            to_client(denied, "x-jwt-reason"),
            Some("jwe_decrypt" | "jwe")
        ),
        "{denied:?}"
    );
}
