//! jwtd: a JWT verification sidecar.
//!
//! jwtd answers "is this token valid, and what does it say?" for an
//! application or a proxy beside it. This crate holds the verification core
//! and everything around it; the `jwtd` binary is a thin command line over it.
//!
//! # Layout
//!
//! ```text
//! verify/   the core: token bytes + KeySet + Policy -> Verdict (pure, no I/O)
//!   alg       Algorithm, AlgSet: the closed set of JWS algorithms (no `none`)
//!   json      strict JSON: duplicates, depth, typed registered members
//!   outcome   Reject reasons, Anomalies, Claims, Verified, Verdict
//! client    Rust client for the native protocol (pipelined, replies by id)
//! config    serve settings: flags > JWTD_* env > TOML > defaults, all errors at once
//! cache     verified-result cache: SHA-256 keyed, sharded LRU, never past exp
//! jwks/     trusted keys: JWKS and PEM parsed once into aws-lc-rs keys
//! sign      the signing side (mint, keygen, tests); never on a request path
//! pem       minimal PEM block reader/writer
//! verifier  Verifier: the shared handle (keys via ArcSwap, policies, cache)
//! protocol/ native protocol codec: bytes <-> Request / Reply (docs/protocol.md)
//! server/   listeners: socket hygiene, accept loop, drain; native connections
//! ```
//!
//! The binary adds `src/cli/` (one module per subcommand) and `src/main.rs`.
//!
//! # The life of one token
//!
//! See [`verify`]: size and shape, header (and `alg: none` refused first),
//! key selection by kid and algorithm binding, signature with keys parsed at
//! load time, then claims, only once the signature holds.
//!
//! # Example
//!
//! ```
//! use jwtd::jwks::KeySet;
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
pub mod config;
pub mod jwks;
pub mod pem;
pub mod protocol;
pub mod server;
pub mod sign;
pub mod verifier;
pub mod verify;
