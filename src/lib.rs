//! jwtd: a JWT verification sidecar.
//!
//! jwtd answers "is this token valid, and what does it say?" for an
//! application or a proxy beside it. This crate holds the verification core
//! and everything around it; the `jwtd` binary is a thin command line over it.
//!
//! # Layout
//!
//! Dependencies point inward: `verify` and `jwks` know nothing of sockets;
//! `server` knows nothing of where keys come from.
//!
//! ```text
//! verify/   the core: token bytes + KeySet + Policy -> Verdict (pure, no I/O)
//!   alg       Algorithm, AlgSet: the closed set of JWS algorithms (no `none`)
//!   json      strict JSON: duplicates, depth, typed registered members
//!   outcome   Reject reasons, Anomalies, Claims, Verified, Verdict
//! jwks/     trusted keys: JWKS and PEM parsed once into aws-lc-rs keys
//!   refresh   RefreshGate: unknown-kid refreshes, single flight + cooldown
//!   source/   tasks keeping each issuer's set current: file, remote (JWKS
//!             URL, OIDC discovery); validated whole, swapped atomically
//! cache     verified-result cache: SHA-256 keyed, sharded LRU, never past exp
//! verifier  Verifier: the shared handle (issuers: keys via ArcSwap and
//!           policies; the cache; readiness)
//! metrics   metric handles (resolved once), anomaly kinds, surge detector,
//!           rate-limited security log events (docs/metrics.md)
//! protocol/ native protocol codec: bytes <-> Request / Reply (docs/protocol.md)
//! server/   listeners: socket hygiene, accept loop, drain
//!   native    the native protocol's connections
//!   authz     the proxy fronts' shared decision (token lookup, claim
//!             headers, route policies)
//!   http      HTTP/1.1 front (nginx auth_request, Envoy ext_authz HTTP)
//!   grpc      gRPC front (Envoy ext_authz gRPC, Istio)
//!   listen    a front's listeners: Unix socket or TCP, connection limit
//!   admin     /metrics, /livez, /readyz on a thread of its own
//! client    Rust client for the native protocol (pipelined, replies by id)
//! config    serve settings: flags > JWTD_* env > TOML > defaults, all errors at once
//! sign      the signing side (mint, keygen, tests); never on a request path
//! pem       minimal PEM block reader/writer
//! redact    URLs safe to log (no userinfo, no query string)
//! ```
//!
//! The binary adds `src/cli/` (one module per subcommand: serve, verify,
//! check, ping, mint, keygen, bench) and a thin `src/main.rs`.
//!
//! # The life of one request
//!
//! 1. `server::native` reads bytes; `protocol::decode_request` cuts a whole
//!    frame (zero-copy) into a `Request`.
//! 2. `Verifier::check_cached` picks the policy for the selector and looks the
//!    token's SHA-256 up in the cache: a hit is answered inline.
//! 3. A miss joins the read's batch; batches are verified on this task and,
//!    when cores are idle, on spawned ones (`Verifier::check_uncached`, which
//!    runs [`verify::verify_with`]: size and shape, header with `alg: none`
//!    refused first, the issuer chosen by `iss` when several are configured,
//!    key selection by kid and algorithm binding, the signature with keys
//!    parsed at load time, then claims once the signature holds) and valid
//!    results are cached until `exp + leeway`. An unknown kid of a remote
//!    issuer waits (bounded) for one shared refresh of its set and is
//!    verified again.
//! 4. The reply (`protocol::Reply`) goes through the connection's writer,
//!    batched with whatever else is ready, tagged with the request's id.
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
pub mod server;
pub mod sign;
pub mod verifier;
pub mod verify;
