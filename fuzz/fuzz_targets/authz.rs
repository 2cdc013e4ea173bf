//! The proxy fronts' decision on arbitrary requests: the token found in
//! the header, a cookie or the query (Bearer and DPoP schemes), then the
//! whole pipeline (cache, revocation, the binding stage with DPoP proofs,
//! client certificates and `[[bindings]]` rules, routes on the path) and
//! the answer with its claim headers. Half the inputs carry a valid token,
//! so the stages after verification are reached.
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use jwtd::config::{Config, RawConfig};
use jwtd::request::{self, ClientCert, Context, Front, TokenScheme};
use jwtd::server::authz::{self, AuthzConfig};
use jwtd::verifier::Verifier;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
dev = true
dpop = "allowed"
token_cookie = "session"
token_query = "access_token"
client_cert_header = "x-forwarded-client-cert"
forward_payload = true
strip_token = true
[claim_headers]
x-user = "sub"
x-roles = "realm_access.roles"
[[routes]]
prefix = "/api/admin/"
scopes = ["admin"]
claims = { "realm_access.roles" = ["ops"] }
[[routes]]
prefix = "/api/admin/health"
[[bindings]]
claim = "device"
equals = "sha256(user-agent, accept-language)"
if_missing = "allow"
[[bindings]]
claim = "ip"
equals = "client_ip"
if_missing = "allow"
"#;

struct Fixture {
    verifier: Verifier,
    authz: AuthzConfig,
    runtime: tokio::runtime::Runtime,
    valid: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut problems = Vec::new();
    let raw = RawConfig::from_toml(CONFIG, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let config = Config::from_raw(raw).expect("the fixture's configuration");
    let verifier = Verifier::new(config.verifier.clone());
    for (n, source) in config.sources.iter().enumerate() {
        if let Some(keys) = &source.keys {
            verifier.set_keys(n, keys.clone());
        }
    }
    let key = jwtd::sign::SigningKey::from_pem(include_str!("../../deploy/dev/signing-key.pem"))
        .expect("the dev signing key");
    let valid = key
        .mint(
            &serde_json::json!({
                "iss": jwtd::config::DEV_ISSUER, "sub": "alice", "exp": 4_102_444_800_i64,
                "scope": "read admin", "realm_access": {"roles": ["ops"]},
            }),
            &Default::default(),
        )
        .expect("a dev token");
    Fixture {
        verifier,
        authz: config.fronts.authz.clone(),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        valid,
    }
});

#[derive(Debug, Arbitrary)]
struct Input {
    method: String,
    scheme: Option<String>,
    authority: Option<String>,
    /// The original URI: path, query, fragment.
    uri: String,
    authorization: Option<String>,
    cookies: Vec<String>,
    dpop: Option<String>,
    client_cert: Option<String>,
    client: Option<[u8; 4]>,
    headers: Vec<(String, String)>,
    /// Replace the token found by a valid one, keeping its scheme.
    valid_token: bool,
}

struct Headers<'a>(&'a [(String, String)]);

impl request::Headers for Headers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fuzz_target!(|input: Input| {
    let f = &*FIXTURE;
    let query = input.uri.split_once('?').map(|(_, q)| q);
    let found = authz::find_token(
        input.authorization.as_deref(),
        input.cookies.iter().map(String::as_str),
        query,
        &f.authz,
    );
    let (token, scheme) = match found {
        Some((_, scheme)) if input.valid_token => (Some(f.valid.as_bytes()), scheme),
        Some((token, scheme)) => (Some(token.as_bytes()), scheme),
        None => (None, TokenScheme::Bearer),
    };
    let path = input.uri.split(['?', '#']).next().unwrap_or_default();
    let headers = Headers(&input.headers);
    let mut context = Context::new(Front::Http, std::time::Instant::now(), jwtd_fuzz::NOW);
    context.method = Some(&input.method);
    context.scheme = input.scheme.as_deref();
    context.authority = input.authority.as_deref();
    context.path = Some(path);
    context.headers = Some(&headers);
    context.client = input.client.map(IpAddr::from);
    context.client_cert = input.client_cert.as_deref().map(ClientCert::Xfcc);
    context.token_scheme = scheme;
    context.dpop_proof = authz::find_proof(input.dpop.iter().map(String::as_str));
    let request = request::Request {
        token,
        selector: b"",
        context,
    };
    let answer = f
        .runtime
        .block_on(authz::decide(&f.verifier, &request, &f.authz));
    let _ = format!("{answer:?}");
});
