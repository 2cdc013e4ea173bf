//! The binding stage: is this valid token valid **for this request**?
//!
//! A stage of the verifier's one pipeline (`crate::verifier`), after
//! revocation and before the route policy, on every valid answer (cache
//! hits included): the verified result is cached as before, and what binds
//! it to a request is checked per request, because it changes per request.
//!
//! ```text
//! cache hit / verified miss -> revocation -> BIND -> route -> Decision
//! ```
//!
//! # What it checks, in order
//!
//! 1. **Certificate-bound tokens** (RFC 8705): a token with
//!    `cnf.x5t#S256` passes only when the client certificate the front
//!    reports has that SHA-256 thumbprint ([`cert`]); none, or another, is
//!    [`Reject::CnfMismatch`]. A `cnf` holding only methods jwtd cannot
//!    check (`jwk`, `kid`...) is refused the same way rather than taken as
//!    a bearer token.
//! 2. **DPoP** (RFC 9449), per issuer ([`DpopMode`]):
//!    - presented as `DPoP`: the issuer must allow DPoP
//!      ([`Reject::DpopInvalid`] otherwise), the proof must hold for this
//!      request ([`crate::verify::dpop::verify_proof`]: invalid or
//!      mismatch), and its key's thumbprint must be the token's `cnf.jkt`
//!      ([`Reject::DpopMismatch`]; also for a token with no `cnf.jkt`);
//!    - presented as a bearer token: a token with `cnf.jkt` is
//!      [`Reject::BearerDowngrade`], whatever the issuer's mode (a bound
//!      token is bound), and so is every token of an issuer whose mode is
//!      `required`.
//! 3. **Device and address rules** (`[[bindings]]`, [`rules`]):
//!    [`Reject::BindingMismatch`].
//! 4. **Replay**: an accepted proof's `(jkt, jti)` is admitted once in the
//!    in-memory cache ([`replay`]; [`Reject::DpopReplay`]); with a shared
//!    store (Redis) the stage answers [`Bound::Claim`] and the pipeline
//!    also claims it there (`SET NX PX`, batched with revocation lookups)
//!    before answering, so a replay to another daemon is caught.
//!
//! # Cost
//!
//! [`Binder::applies`] is the whole cost of the stage for a request that
//! has nothing to bind: one test of the result's `cnf`, the token's scheme
//! and one flag. Only then does a plain cache hit stay on the pipeline's
//! fast path (`crate::verifier`'s `Tally`). A DPoP request pays one proof
//! signature check and one replay admission (plus one batched round trip
//! with Redis).
//!
//! # Where the request's method and URI come from
//!
//! Each front fills `crate::request::Context`; the contract per front is
//! in `docs/architecture.md` ("What each front reports"). `htu` is compared
//! with `public_origin` + path when that is set, else with
//! `scheme://authority` + path as the front reports them, else with the
//! absolute URI a native request carries.

pub mod cert;
pub mod replay;
pub mod rules;

use crate::request::{Context, TokenScheme};
use crate::verify::dpop::{self, Expect, ProofPolicy};
use crate::verify::{Reject, Verified};

pub use rules::{Missing, Rule, Source};

/// Whether an issuer's tokens may, or must, be DPoP-bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopMode {
    /// DPoP is not accepted: a request presenting `DPoP` is refused, and
    /// so is a DPoP-bound token (it can never be used here).
    #[default]
    Off,
    /// Bearer and DPoP-bound tokens are both accepted, each as what it is.
    Allowed,
    /// Every token must be DPoP-bound and presented with a proof.
    Required,
}

impl DpopMode {
    /// Parses `off`, `allowed` or `required`.
    pub fn parse(text: &str) -> Option<DpopMode> {
        match text.trim() {
            "off" => Some(DpopMode::Off),
            "allowed" => Some(DpopMode::Allowed),
            "required" => Some(DpopMode::Required),
            _ => None,
        }
    }
}

/// One issuer's binding settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IssuerBinding {
    /// Its DPoP mode.
    pub dpop: DpopMode,
    /// What its tokens' proofs must be.
    pub proof: ProofPolicy,
}

/// The daemon-wide binding settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindConfig {
    /// The `[[bindings]]` rules.
    pub rules: Vec<Rule>,
    /// `scheme://authority` the clients address (`https://api.example.com`),
    /// overriding what the front reports, for building `htu`.
    pub public_origin: Option<String>,
    /// Capacity of the in-memory replay cache, in proofs.
    pub replay_entries: usize,
}

/// Default [`BindConfig::replay_entries`].
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

impl Default for BindConfig {
    fn default() -> Self {
        BindConfig {
            rules: Vec::new(),
            public_origin: None,
            replay_entries: DEFAULT_REPLAY_ENTRIES,
        }
    }
}

/// A proof to claim in the shared store before the request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The proof key's thumbprint.
    pub jkt: [u8; 32],
    /// The proof's `jti`.
    pub jti: Box<str>,
    /// How long the claim must last, in seconds (until the proof is stale).
    pub ttl: u64,
}

/// The stage's answer when nothing refused the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Every check passed.
    Pass,
    /// Passed here; the proof must also be claimed in the shared store.
    Claim(Claim),
    /// The replay cache is full of live proofs: undecided (`overloaded`).
    Full,
}

/// The binding stage, built once from configuration.
pub struct Binder {
    issuers: Box<[IssuerBinding]>,
    rules: Vec<Rule>,
    public_origin: Option<Box<str>>,
    replay: replay::Replay,
    /// The stage runs for every valid answer: some issuer requires DPoP, or
    /// a rule is configured.
    always: bool,
}

impl std::fmt::Debug for Binder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binder")
            .field("issuers", &self.issuers)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Binder {
    /// The stage for these issuers (by issuer index) and settings.
    pub fn new(issuers: Vec<IssuerBinding>, config: BindConfig) -> Binder {
        let always =
            !config.rules.is_empty() || issuers.iter().any(|i| i.dpop == DpopMode::Required);
        Binder {
            issuers: issuers.into(),
            rules: config.rules,
            public_origin: config
                .public_origin
                .map(|o| Box::from(o.trim_end_matches('/'))),
            replay: replay::Replay::new(config.replay_entries),
            always,
        }
    }

    /// Whether the stage has anything to check for this valid result and
    /// request. False is the common case, and keeps a plain cache hit on
    /// the fast path.
    #[inline]
    pub fn applies(&self, result: &Verified, ctx: &Context<'_>) -> bool {
        self.always || result.claims.cnf.is_some() || ctx.token_scheme == TokenScheme::Dpop
    }

    /// Proofs held in the replay cache.
    pub fn replay_entries(&self) -> usize {
        self.replay.len()
    }

    /// Checks a valid `result` of issuer number `issuer`, presented as
    /// `token`, against its request. `shared`: a shared store takes claims.
    ///
    /// # Errors
    ///
    /// The reason the request is refused.
    pub fn check(
        &self,
        issuer: usize,
        result: &Verified,
        token: &[u8],
        ctx: &Context<'_>,
        shared: bool,
    ) -> Result<Bound, Reject> {
        let settings = self.issuers.get(issuer).copied().unwrap_or_default();
        let cnf = result.claims.cnf.as_deref();
        // 1. Certificate binding, and methods jwtd cannot check.
        if let Some(cnf) = cnf {
            if let Some(want) = cnf.x5t_s256 {
                let got = ctx.client_cert.as_ref().and_then(cert::thumbprint);
                if got != Some(want) {
                    tracing::debug!(
                        certificate = if got.is_some() { "another" } else { "none" },
                        "certificate-bound token without its certificate"
                    );
                    return Err(Reject::CnfMismatch);
                }
            } else if cnf.other && cnf.jkt.is_none() {
                tracing::debug!("token bound by a confirmation method jwtd cannot check");
                return Err(Reject::CnfMismatch);
            }
        }
        // 2. DPoP.
        let jkt = cnf.and_then(|c| c.jkt);
        let mut claim = None;
        match ctx.token_scheme {
            TokenScheme::Dpop => {
                if settings.dpop == DpopMode::Off {
                    tracing::debug!("DPoP presented to an issuer without DPoP");
                    return Err(Reject::DpopInvalid);
                }
                let Some(proof) = ctx.dpop_proof else {
                    tracing::debug!("DPoP scheme without a DPoP proof");
                    return Err(Reject::DpopInvalid);
                };
                let Some(jkt) = jkt else {
                    tracing::debug!("DPoP scheme with a token not bound to a key");
                    return Err(Reject::DpopMismatch);
                };
                // A key whose share of the replay cache is full of live
                // proofs is answered before its proof costs a signature.
                if !self.replay.has_room(&jkt, ctx.now) {
                    return Ok(Bound::Full);
                }
                let uri = self.htu(ctx);
                let expect = Expect {
                    method: ctx.method.unwrap_or_default(),
                    uri: uri.as_deref().unwrap_or_default(),
                    access_token: token,
                    jkt: Some(jkt),
                };
                let proof = dpop::verify_proof(proof, &settings.proof, &expect, ctx.now).map_err(
                    |problem| {
                        tracing::debug!(problem = problem.as_str(), "DPoP proof refused");
                        problem.reject()
                    },
                )?;
                claim = Some(proof);
            }
            TokenScheme::Bearer => {
                if jkt.is_some() || settings.dpop == DpopMode::Required {
                    tracing::debug!(bound = jkt.is_some(), "token presented without DPoP");
                    return Err(Reject::BearerDowngrade);
                }
            }
        }
        // 3. Device and address rules.
        for rule in &self.rules {
            if !rules::met(rule, result.claims.iss.as_deref(), &result.claims.raw, ctx) {
                tracing::debug!(claim = %rule.claim, "binding rule not met");
                return Err(Reject::BindingMismatch);
            }
        }
        // 4. Replay, last: only a proof that passed everything is recorded.
        let Some(proof) = claim else {
            return Ok(Bound::Pass);
        };
        let window = i64::try_from(settings.proof.max_age.saturating_add(settings.proof.leeway))
            .unwrap_or(i64::MAX);
        let until = proof.iat.saturating_add(window);
        match self.replay.admit(
            &proof.jkt,
            replay::key(&proof.jkt, &proof.jti),
            until,
            ctx.now,
        ) {
            replay::Admit::Replayed => {
                tracing::debug!("DPoP proof replayed");
                Err(Reject::DpopReplay)
            }
            replay::Admit::Full => Ok(Bound::Full),
            replay::Admit::Fresh if shared => Ok(Bound::Claim(Claim {
                jkt: proof.jkt,
                jti: proof.jti,
                ttl: u64::try_from(until.saturating_sub(ctx.now))
                    .unwrap_or(0)
                    .max(1),
            })),
            replay::Admit::Fresh => Ok(Bound::Pass),
        }
    }

    /// The URI the proof's `htu` must match, if the request's is known.
    /// What the front reports is taken only when it is a scheme (`http`,
    /// `https`) and an authority (`host[:port]`) and nothing else: a
    /// client's `Host: api.example.com?` must not end the authority early
    /// and drop the path from the comparison.
    fn htu(&self, ctx: &Context<'_>) -> Option<String> {
        if let Some(uri) = ctx.uri {
            return Some(uri.to_owned());
        }
        let path = ctx.path?;
        if !path.starts_with('/') {
            return None;
        }
        match &self.public_origin {
            Some(origin) => Some(format!("{origin}{path}")),
            None => {
                let scheme = ctx.scheme?.trim();
                let authority = ctx.authority?.trim();
                let known =
                    scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http");
                (known && dpop::is_authority(authority))
                    .then(|| format!("{scheme}://{authority}{path}"))
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod attack_tests;
