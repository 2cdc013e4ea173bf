//! What both proxy fronts share: where the token is, and how the
//! pipeline's [`Decision`] becomes a proxy's answer. [`super::http`]
//! (nginx `auth_request`, Envoy `ext_authz` HTTP mode) and [`super::grpc`]
//! (Envoy `ext_authz` gRPC mode) are thin adapters: each builds a
//! [`Request`] (token, method, path, headers, client) and turns an
//! [`Answer`] into its protocol's reply; neither decides anything itself,
//! so the two fronts cannot drift apart, and they decide exactly as the
//! native front does (the verifier's one pipeline: cache, budget,
//! verification, revocation, route policy).
//!
//! # Shape
//!
//! - [`find_token`] (`token.rs`) takes the token header's value, the
//!   `Cookie` header values and the query string (each front knows where
//!   those live in its request) and applies [`AuthzConfig`]'s order: the
//!   token header, then the cookie, then (only if named) the query
//!   parameter.
//! - [`decide`] sends the request down the pipeline and [`answer`] maps the
//!   decision:
//!   - `Allow` with one [`ClaimHeader`] value per mapping (`claims.rs`),
//!     `None` when the token lacks the claim. The fronts must make a `None`
//!     header *absent upstream*, or a client could forge it
//!     (`x-jwt-scope: admin`): gRPC lists it in `headers_to_remove`, HTTP
//!     in Envoy's `x-envoy-auth-headers-to-remove` (nginx never passes a
//!     header whose `proxy_set_header` value is empty);
//!   - `Deny` 401 (no token, or an invalid one) or 403 (a requirement of
//!     a route unmet: [`crate::route`]), with the RFC 6750 challenge;
//!   - `Undecided` (no keys yet, revocation store down under fail-closed,
//!     or every verification slot busy: `overloaded`):
//!     each front answers with what its proxy treats as an *error*, never
//!     as "allowed".
//! - The precise [`Reason`] is in every `Deny`/`Undecided` for logs and the
//!   opt-in debug header; clients otherwise get generic text.
//!
//! # Claim values as header values
//!
//! A string claim is sent as is; an array of strings joined by single
//! spaces (OAuth's `scope` convention, and `aud` lists); numbers and
//! booleans as JSON text; objects as compact JSON. A claim name is looked up
//! as a top-level key first, then as a dotted path (`realm_access.roles`),
//! so URL-shaped names (`https://example.com/roles`) work too. `scope` falls
//! back to `scp` (Azure AD, Okta). A value that cannot be a header value
//! (control characters, non-ASCII) is treated as absent rather than
//! mangled; `forward_payload` carries everything, base64url.

mod claims;
mod token;

use std::sync::Arc;

use crate::request::{Decision, Reason, Request, TokenScheme};
use crate::verifier::Verifier;

pub use claims::{headers, valid_claim_header};
pub use token::{find_proof, find_token};

/// A header for the upstream request, filled from a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// Lower-case header name (shared: every allowed request names it).
    pub header: Arc<str>,
    /// Claim name (top-level key, else a dotted path).
    pub claim: String,
}

/// Settings shared by the HTTP and gRPC fronts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzConfig {
    /// Lower-case name of the header holding the token. For
    /// `authorization` the `Bearer` scheme is required; for any other
    /// header a `Bearer ` prefix is optional.
    pub token_header: String,
    /// Cookie holding the token when the header is absent.
    pub token_cookie: Option<String>,
    /// Query parameter holding the token (off unless named).
    pub token_query: Option<String>,
    /// Claim-to-header mappings for allowed requests.
    pub claim_headers: Vec<ClaimHeader>,
    /// Also send the base64url payload as `x-jwt-payload`.
    pub forward_payload: bool,
    /// Add the precise reason as `x-jwt-reason` (debugging only).
    pub debug_reason: bool,
    /// Have the proxy remove the token header before the request goes
    /// upstream (gRPC `headers_to_remove`; HTTP mode through Envoy's
    /// `x-envoy-auth-headers-to-remove`).
    pub strip_token: bool,
    /// Prefix to strip from request paths before route matching (Envoy's
    /// HTTP-mode `path_prefix`).
    pub path_prefix: String,
    /// HTTP front: the header a trusted proxy puts the client certificate
    /// in (`None`: no header is trusted, and certificate-bound tokens
    /// cannot pass the HTTP front).
    pub client_cert_header: Option<CertHeader>,
    /// For apps that know only bearer tokens: an allowed DPoP request goes
    /// upstream as `Authorization: Bearer <token>`, without its `DPoP`
    /// header (gRPC: Envoy rewrites; HTTP: the `authorization` response
    /// header, for Envoy's `allowed_upstream_headers` or nginx's
    /// `auth_request_set`).
    pub dpop_to_bearer: bool,
    /// Send `x-jwt-cnf-jkt` ([`CNF_JKT_HEADER`]) with every allowed request,
    /// removed upstream when the token is not DPoP-bound: set when some
    /// issuer accepts DPoP (with DPoP off everywhere no token is ever
    /// DPoP-bound here, and the header is left alone).
    pub cnf_header: bool,
}

/// Where a trusted proxy puts the client certificate (HTTP front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertHeader {
    /// RFC 9440 `Client-Cert`: the DER certificate as `:base64:`.
    ClientCert,
    /// Envoy's `x-forwarded-client-cert`, its `Hash=`.
    Xfcc,
    /// `x-ssl-client-cert`: the URL-encoded PEM nginx has in
    /// `$ssl_client_escaped_cert` (`proxy_set_header X-SSL-Client-Cert
    /// $ssl_client_escaped_cert;`).
    NginxPem,
}

impl CertHeader {
    /// Parses a `client_cert_header` value.
    pub fn parse(text: &str) -> Option<CertHeader> {
        match text.trim().to_ascii_lowercase().as_str() {
            "client-cert" => Some(CertHeader::ClientCert),
            "x-forwarded-client-cert" => Some(CertHeader::Xfcc),
            "x-ssl-client-cert" => Some(CertHeader::NginxPem),
            _ => None,
        }
    }

    /// The header's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            CertHeader::ClientCert => "client-cert",
            CertHeader::Xfcc => "x-forwarded-client-cert",
            CertHeader::NginxPem => "x-ssl-client-cert",
        }
    }
}

impl Default for AuthzConfig {
    fn default() -> Self {
        AuthzConfig {
            token_header: "authorization".to_owned(),
            token_cookie: None,
            token_query: None,
            claim_headers: default_claim_headers(),
            forward_payload: false,
            debug_reason: false,
            strip_token: false,
            path_prefix: String::new(),
            client_cert_header: None,
            dpop_to_bearer: false,
            cnf_header: false,
        }
    }
}

/// `x-jwt-sub`, `x-jwt-iss`, `x-jwt-aud`, `x-jwt-scope`.
pub fn default_claim_headers() -> Vec<ClaimHeader> {
    ["sub", "iss", "aud", "scope"]
        .into_iter()
        .map(|claim| ClaimHeader {
            header: Arc::from(format!("x-jwt-{claim}")),
            claim: claim.to_owned(),
        })
        .collect()
}

/// The header naming the key a DPoP-bound token is bound to (its
/// `cnf.jkt`, base64url), on every allowed request of such a token; removed
/// upstream otherwise (when [`AuthzConfig::cnf_header`]).
pub const CNF_JKT_HEADER: &str = "x-jwt-cnf-jkt";

/// The header carrying the payload when `forward_payload` is set.
pub const PAYLOAD_HEADER: &str = "x-jwt-payload";

/// Denial statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// 401: no token, or not a valid one.
    Unauthorized,
    /// 403: valid, but the route asks for more.
    Forbidden,
}

/// What a proxy front answers, in terms both proxies share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Let the request go on, with these headers (name, value; `None`:
    /// make sure the upstream does not get this header at all).
    Allow {
        /// One entry per mapping, then the payload header if enabled.
        headers: Vec<(Arc<str>, Option<String>)>,
    },
    /// Refuse it.
    Deny {
        /// 401 or 403.
        status: Deny,
        /// The `WWW-Authenticate` value.
        challenge: String,
        /// The precise reason (logs, debug header).
        reason: Reason,
    },
    /// Could not decide: the proxy must treat it as an error.
    Undecided {
        /// Why (logs, debug header).
        reason: Reason,
    },
}

/// Sends `request` down the verifier's pipeline and turns the decision into
/// a proxy answer.
pub async fn decide(verifier: &Verifier, request: &Request<'_>, config: &AuthzConfig) -> Answer {
    let decision = verifier.decide(request).await;
    let mut answer = answer(decision, config);
    // The app needs neither the token nor its proof: with `strip_token`,
    // a DPoP request's proof goes too.
    if config.strip_token
        && !config.dpop_to_bearer
        && request.context.token_scheme == TokenScheme::Dpop
        && let Answer::Allow { headers } = &mut answer
    {
        headers.push((Arc::from("dpop"), None));
    }
    if config.dpop_to_bearer
        && request.context.token_scheme == TokenScheme::Dpop
        && let Answer::Allow { headers } = &mut answer
        && let Some(token) = request.token.and_then(|t| std::str::from_utf8(t).ok())
    {
        headers.push((Arc::from("authorization"), Some(format!("Bearer {token}"))));
        headers.push((Arc::from("dpop"), None));
    }
    answer
}

/// The proxy answer for a decision.
pub fn answer(decision: Decision, config: &AuthzConfig) -> Answer {
    let reason = decision.reason();
    match decision {
        Decision::Valid { result, .. } => Answer::Allow {
            headers: headers(&result, config),
        },
        // RFC 6750 3.1: no error code when no credentials were sent.
        Decision::MissingToken => Answer::Deny {
            status: Deny::Unauthorized,
            challenge: "Bearer".to_owned(),
            reason: Reason::MissingToken,
        },
        Decision::Invalid(rejection) => Answer::Deny {
            status: Deny::Unauthorized,
            challenge: "Bearer error=\"invalid_token\"".to_owned(),
            reason: Reason::Invalid(rejection.reason),
        },
        Decision::Forbidden { scopes } => {
            let mut challenge = "Bearer error=\"insufficient_scope\"".to_owned();
            if !scopes.is_empty() {
                challenge.push_str(&format!(", scope=\"{scopes}\""));
            }
            Answer::Deny {
                status: Deny::Forbidden,
                challenge,
                reason: Reason::InsufficientScope,
            }
        }
        // No proxy request carries a selector; should one, it is refused as
        // undecided rather than allowed.
        Decision::Undecided(_) | Decision::UnknownSelector => Answer::Undecided {
            reason: reason.unwrap_or(Reason::UnknownSelector),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::unix_now;
    use crate::request::{Cause, Context, Front};

    #[tokio::test]
    async fn a_miss_without_a_free_verification_slot_is_overloaded_a_hit_is_not() {
        use crate::verifier::VerifierConfig;
        use crate::verify::{Algorithm, Policy};
        let key = crate::sign::SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_kid(Some("k1".into()));
        let jwks = serde_json::json!({"keys": [key.public_jwk()]}).to_string();
        let mut config = VerifierConfig::single(Policy::default(), 10, 600);
        config.max_verifying = 1;
        let verifier = Verifier::new(config);
        verifier.set_keys(
            0,
            crate::verify::KeySet::from_jwks(jwks.as_bytes()).unwrap(),
        );
        let token = key
            .mint(
                &serde_json::json!({"sub": "a", "exp": unix_now() + 600}),
                &serde_json::Map::new(),
            )
            .unwrap();
        let config = AuthzConfig::default();
        let request = Request {
            token: Some(token.as_bytes()),
            selector: b"",
            context: Context::new(Front::Http, std::time::Instant::now(), unix_now()),
        };
        // The one slot taken by another front's miss: overloaded.
        let mut tally = crate::verifier::Tally::new(Front::Native, std::time::Instant::now());
        let held = verifier.begin(&request, &mut tally);
        assert!(matches!(held, crate::verifier::Step::Verify(_)), "{held:?}");
        assert_eq!(
            decide(&verifier, &request, &config).await,
            Answer::Undecided {
                reason: Reason::Undecided(Cause::Overloaded)
            }
        );
        drop(held);
        assert!(matches!(
            decide(&verifier, &request, &config).await,
            Answer::Allow { .. }
        ));
        assert_eq!(verifier.budget().in_use(), 0, "the slot is given back");
        // Now cached: answered without a slot, even with none free.
        let held = verifier.begin(
            &Request {
                token: Some(b"x.y.z"),
                ..request
            },
            &mut tally,
        );
        assert!(matches!(held, crate::verifier::Step::Verify(_)), "{held:?}");
        assert!(matches!(
            decide(&verifier, &request, &config).await,
            Answer::Allow { .. }
        ));
    }
}
