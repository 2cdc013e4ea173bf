//! jwtd: a JWT verification sidecar.
//!
//! jwtd answers "is this token valid, and what does it say?" for an
//! application or a proxy beside it. This crate holds the verification core
//! and everything around it; the `jwtd` binary is a thin command line over it.
//!
//! # Layout
//!
//! Dependencies point inward, and a test keeps them so
//! (`tests/it/layering.rs`: no cycle among these modules, and `verify`
//! imports nothing of the crate). `docs/architecture.md` draws the rooms and
//! the arrows between them.
//!
//! ```text
//! verify/    the core, a leaf: token bytes + KeySet + Policy + now -> Verdict
//!            (pure, no I/O, no clock)
//!   alg        Algorithm, AlgSet: the closed set of JWS algorithms (no `none`)
//!   json       strict JSON: duplicates, depth, typed registered members
//!   keys       KeySet: JWKS and PEM parsed once into aws-lc-rs keys; unusable
//!              keys skipped with a reason
//!   pem        minimal PEM block reader/writer
//!   dpop       DPoP proofs (RFC 9449): proof bytes + request -> key thumbprint
//!   jwe        compact JWE decryption (RFC 7516/7518): token + private keys -> plaintext
//!   outcome    Reject reasons, Anomalies, Claims (with cnf), Verified, Verdict
//! request    what every front hands the verifier (Request: token, selector,
//!            Context) and gets back (Decision)
//! verifier/  Verifier: the shared handle and the one request pipeline
//!   issuer     issuers, their key sets (ArcSwap) and health; the KeySink
//!   check      stages on one token: cache, verification, revocation, waits
//!   pipeline   begin / Ticket::verify / Waiting::finish / decide; the
//!              verification Budget; route stage; one metrics record
//! bind/      the binding stage: DPoP, certificate-bound tokens (cnf), device
//!            and address rules, the DPoP replay cache
//! route      route policies (path prefix -> scopes, claims), a pipeline stage
//! cache      verified-result cache: SHA-256 keyed, sharded LRU, never past exp
//! revocation/ the blacklist: batched Redis lookups, local answers, pushed
//!            invalidations, REVOKE writes (docs/revocation.md)
//! jwks/      key sources: file, JWKS URL, OIDC discovery, publishing through
//!            a KeySink; RefreshGate for unknown kids (docs/key-sources.md)
//! metrics/   metric handles (resolved once), anomaly kinds, surge detector,
//!            rate-limited security log events (docs/metrics.md)
//! protocol/  native protocol codec: bytes <-> frames, wire codes for reasons
//!            and anomalies (docs/protocol.md)
//! server/    the fronts: wire format in, Request down the pipeline, wire out
//!   listen     listeners (Unix or TCP), one accept loop with the connection
//!              limit, one drain
//!   native     the native protocol's connections (pipelined, out of order)
//!   authz/     the proxy fronts' shared part: token lookup, Decision -> Answer,
//!              claim headers
//!   http       HTTP/1.1 front (nginx auth_request, Envoy ext_authz HTTP)
//!   grpc       gRPC front (Envoy ext_authz gRPC, Istio)
//!   admin      /metrics, /livez, /readyz on a thread of its own
//! client     Rust client for the native protocol (pipelined, replies by id)
//! config/    serve settings: one list (settings.rs); flags > JWTD_* env >
//!            TOML > defaults; every error at once (docs/configuration.md)
//! sign       the signing side (mint, keygen, tests); never on a request path
//! seal       the encrypting side of JWE (mint --encrypt-to, tests)
//! clock      the wall clock, read in one place
//! redact     URLs safe to log (no userinfo, no query string)
//! ```
//!
//! The binary adds `src/cli/` (one module per subcommand: serve, verify,
//! check, ping, mint, keygen, revoke, bench) and a thin `src/main.rs`.
//!
//! # The life of one request
//!
//! Every front does the same three things: translate the wire request into
//! a [`request::Request`], send it down the verifier's pipeline, translate
//! the [`request::Decision`] back.
//!
//! 1. **In.** `server::native` cuts whole frames out of a read
//!    (`protocol::decode_request`, zero-copy); `server::http` reads an
//!    `auth_request`/`ext_authz` HTTP check and `server::grpc` a
//!    `CheckRequest`, and both find the token with `authz::find_token`
//!    (header, cookie, query, in the configured order) and fill the
//!    request's context (method, scheme, authority, path, headers, client
//!    address and certificate).
//! 2. **Begin.** `Verifier::begin` picks the issuer policy for the
//!    selector and looks the token's SHA-256 up in the cache. A hit goes
//!    through the local revocation answer and the route stage and is
//!    `Step::Done` at once (a plain hit is counted into the caller's
//!    `Tally`, one metrics update per read).
//! 3. **Verify.** A miss takes a slot of the verification budget (none
//!    free: undecided `overloaded`) and is a `Ticket`; `Ticket::verify` runs
//!    [`verify::verify_with`] (size and shape, `alg: none` refused first,
//!    the issuer by `iss`, key by kid with its algorithm binding, the
//!    signature, then the claims) and caches a valid result until
//!    `exp + leeway`. The native front verifies a read's tickets as a batch,
//!    spread over idle cores; the proxy fronts call `Verifier::decide`,
//!    which runs every step in one future.
//! 4. **Wait.** An unknown kid of a remote issuer waits (bounded) for one
//!    shared refresh of its set; a revocation status not known locally
//!    joins the next batched Redis lookup. Both are `Step::Wait`, finished
//!    by `Waiting::finish`.
//! 5. **Conclude.** Revocation, then the binding stage (`bind`: DPoP
//!    proof, client certificate, device and address rules; a DPoP proof
//!    claimed in Redis is one more wait), then the route policy (requests
//!    with a path), then one metrics record, give the `Decision`.
//! 6. **Out.** The native front replies with `protocol::Reply`, tagged with
//!    the request's id and batched with whatever else is ready; the proxy
//!    fronts map the decision to `authz::Answer` (allow with claim headers,
//!    deny 401/403 with an RFC 6750 challenge, or an error their proxy never
//!    treats as "allowed").
//!
//! REVOKE (native protocol, `jwtd revoke --socket`) goes through
//! `Verifier::revoke`, which refuses a revocation that could match nothing
//! here and writes the rest to the store.
//!
//! # Example
//!
//! ```
//! use jwtd::verify::KeySet;
//! use jwtd::sign::SigningKey;
//! use jwtd::verify::{verify, Algorithm, Policy};
//!
//! let key = SigningKey::generate(Algorithm::ES256)?.with_kid(Some("k1".into()));
//! let jwks = serde_json::json!({ "keys": [key.public_jwk()] }).to_string();
//! let keys = KeySet::from_jwks(jwks.as_bytes())?;
//! let token = key.mint(&serde_json::json!({"sub": "alice", "exp": 2_000_000_000}), &Default::default())?;
//! let verified = verify(token.as_bytes(), &keys, &Policy::default(), 1_900_000_000).unwrap();
//! assert_eq!(verified.claims.sub.as_deref(), Some("alice"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod bind;
pub mod cache;
pub mod client;
pub mod clock;
pub mod config;
pub mod jwks;
pub mod metrics;
pub mod protocol;
pub mod redact;
pub mod request;
pub mod revocation;
pub mod route;
pub mod seal;
pub mod server;
pub mod sign;
pub mod verifier;
pub mod verify;
