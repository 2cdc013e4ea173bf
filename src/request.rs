//! What every front hands the verifier, and what it gets back: a
//! [`Request`] in, a [`Decision`] out.
//!
//! The three fronts (native socket, HTTP, gRPC) differ only in wire format.
//! Each translates its request into a `Request` (the token, a selector, and
//! the request's [`Context`]: which front, when it arrived, and for proxy
//! checks the method, URI, the headers a policy may read, the client's
//! address and certificate), sends it down the one pipeline
//! ([`crate::verifier::Verifier::begin`]), and translates the `Decision`
//! back. Nothing in a front decides.
//!
//! Everything here borrows: a front builds a `Request` on its stack from
//! bytes it already holds, so the cached path allocates nothing for it.
//! A later stage that needs more of the request (a proof-of-possession
//! header, a client certificate, a client IP) reads it from the `Context`;
//! the fronts already fill what their proxies send.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::verify::{Reject, Rejection, Verified};

/// Which front a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The native protocol.
    Native = 0,
    /// The HTTP front (nginx, Envoy HTTP mode).
    Http = 1,
    /// The gRPC front (Envoy gRPC mode).
    Grpc = 2,
}

impl Front {
    /// Every front, in index order.
    pub const ALL: [Front; 3] = [Front::Native, Front::Http, Front::Grpc];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Native => "native",
            Front::Http => "http",
            Front::Grpc => "grpc",
        }
    }
}

/// Request headers a policy may read, by lower-case name. Each front
/// implements it over the headers it already has (hyper's `HeaderMap`,
/// Envoy's `CheckRequest` map), so nothing is copied unless read.
pub trait Headers: Sync {
    /// The first value of header `name` (lower-case), if present and text.
    fn get(&self, name: &str) -> Option<&str>;
}

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenScheme {
    /// As a bearer token: `Authorization: Bearer`, a cookie, a query
    /// parameter, a custom header, or a native VERIFY without a DPoP proof.
    #[default]
    Bearer,
    /// `Authorization: DPoP` (RFC 9449 7.1), or a native VERIFY carrying a
    /// DPoP proof: the request must come with a proof for the token's key.
    Dpop,
}

/// The client's TLS certificate, as the front got it: the binding stage
/// (`crate::bind`) turns it into a SHA-256 thumbprint only when a token
/// asks (`cnf.x5t#S256`), so requests of unbound tokens pay nothing for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert<'a> {
    /// The SHA-256 of the DER certificate, already computed (native
    /// VERIFY with context).
    Sha256([u8; 32]),
    /// URL-encoded PEM: Envoy's `attributes.source.certificate` (gRPC
    /// front, `include_peer_certificate: true`).
    UrlEncodedPem(&'a str),
    /// RFC 9440 `Client-Cert`: the DER certificate as a structured-field
    /// byte sequence (`:base64:`), set by a trusted proxy (HTTP front).
    Rfc9440(&'a str),
    /// Envoy's `x-forwarded-client-cert`, whose `Hash=` is the hex SHA-256
    /// of the DER certificate, set by a trusted proxy (HTTP front).
    Xfcc(&'a str),
}

/// What the request is, beyond its token.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The front it came through.
    pub front: Front,
    /// When it arrived (for the latency metrics).
    pub arrived: Instant,
    /// The Unix time to judge it at (read once by the front).
    pub now: i64,
    /// HTTP method of the original request (proxy fronts).
    pub method: Option<&'a str>,
    /// Scheme of the original request (`https`), when the proxy says.
    pub scheme: Option<&'a str>,
    /// Authority (host) of the original request.
    pub authority: Option<&'a str>,
    /// Path of the original request as routes see it: the query and
    /// fragment cut, the proxy's path prefix stripped (proxy fronts).
    pub path: Option<&'a str>,
    /// The original request's headers.
    pub headers: Option<&'a dyn Headers>,
    /// The client's address, as the proxy saw it.
    pub client: Option<IpAddr>,
    /// The client's TLS certificate, when the front knows it (see
    /// [`ClientCert`]): decoded only by a stage that needs it.
    pub client_cert: Option<ClientCert<'a>>,
    /// How the token was presented.
    pub token_scheme: TokenScheme,
    /// The `DPoP` header's value (RFC 9449 4.1). A front that finds more
    /// than one `DPoP` header passes an empty proof, which no check accepts
    /// (RFC 9449 4.3: exactly one).
    pub dpop_proof: Option<&'a [u8]>,
    /// The request's absolute URI when the front was given it whole (native
    /// VERIFY with context); else the binding stage builds it from
    /// `scheme`, `authority` and `path`.
    pub uri: Option<&'a str>,
}

impl<'a> Context<'a> {
    /// A context with only the front, arrival and time set.
    pub fn new(front: Front, arrived: Instant, now: i64) -> Context<'a> {
        Context {
            front,
            arrived,
            now,
            method: None,
            scheme: None,
            authority: None,
            path: None,
            headers: None,
            client: None,
            client_cert: None,
            token_scheme: TokenScheme::Bearer,
            dpop_proof: None,
            uri: None,
        }
    }

    /// The value of header `name` (lower-case), if the front passed
    /// headers and it is there.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers?.get(name)
    }
}

impl std::fmt::Debug for Context<'_> {
    // Never the headers: they may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("front", &self.front)
            .field("now", &self.now)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("client", &self.client)
            .field("token_scheme", &self.token_scheme)
            .finish_non_exhaustive()
    }
}

/// One check: a token (or none found), the selector, the context.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The token; `None` when a proxy front found none where it looked.
    pub token: Option<&'a [u8]>,
    /// A configured audience to check against; empty for the default.
    pub selector: &'a [u8],
    /// Everything else about the request.
    pub context: Context<'a>,
}

/// Why a token could not be decided either way. Every front treats it as
/// an error, never as "allowed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The token's issuer has no key set yet.
    NoKeys,
    /// Every verification slot is busy (`max_verifying`).
    Overloaded,
    /// The revocation store could not be asked in time and revocation
    /// fails closed.
    RevocationUnavailable,
}

impl Cause {
    /// Stable name for logs, metric labels and debug headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::NoKeys => "no_keys",
            Cause::Overloaded => "overloaded",
            Cause::RevocationUnavailable => "revocation_unavailable",
        }
    }
}

/// The pipeline's answer.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Valid (revocation checked, route requirements met).
    Valid {
        /// The verified result (shared with the cache).
        result: Arc<Verified>,
        /// Answered from the cache.
        cached: bool,
    },
    /// Invalid (revoked included).
    Invalid(Rejection),
    /// No token was found (proxy fronts).
    MissingToken,
    /// Valid, but a route the request's path meets asks for more.
    Forbidden {
        /// The scopes the refusing route requires, space-separated (for the
        /// RFC 6750 challenge); empty when it asked for claims only.
        scopes: String,
    },
    /// Could not decide.
    Undecided(Cause),
    /// The selector names no configured audience (native requests).
    UnknownSelector,
}

impl Decision {
    /// Why it is not `Valid`; `None` when it is.
    pub fn reason(&self) -> Option<Reason> {
        Some(match self {
            Decision::Valid { .. } => return None,
            Decision::Invalid(rejection) => Reason::Invalid(rejection.reason),
            Decision::MissingToken => Reason::MissingToken,
            Decision::Forbidden { .. } => Reason::InsufficientScope,
            Decision::Undecided(cause) => Reason::Undecided(*cause),
            Decision::UnknownSelector => Reason::UnknownSelector,
        })
    }
}

/// The precise reason of a decision other than valid: for operators (logs,
/// metrics, the opt-in debug header), never sent to clients by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token found.
    MissingToken,
    /// The token was refused for this reason.
    Invalid(Reject),
    /// A route's scope or claim requirement unmet.
    InsufficientScope,
    /// Could not decide.
    Undecided(Cause),
    /// Unknown selector.
    UnknownSelector,
}

impl Reason {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::Invalid(reject) => reject.as_str(),
            Reason::InsufficientScope => "insufficient_scope",
            Reason::Undecided(cause) => cause.as_str(),
            Reason::UnknownSelector => "unknown_selector",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
