//! The entry point every front calls: [`Verifier::begin`], then (on a
//! miss) [`Ticket::verify`], then (on a wait) [`Waiting::finish`]; or all
//! three at once with [`Verifier::decide`]. See the module doc of
//! [`super`] for the shape.
//!
//! The last stages are the same on every path ([`Verifier::conclude`]): the
//! route policy (requests with a path), then one metrics record. A plain
//! cache hit (valid, no header anomaly, no route asked) is the one
//! exception: it is counted into the caller's [`Tally`], which the native
//! front flushes once per read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Verifier;
use super::check::{Miss, Outcome, Pending};
use crate::bind::Bound;
use crate::request::{Cause, Decision, Front, Request, TokenScheme};
use crate::verify::{Anomalies, Rejection, Verified};

/// The verification budget, shared by every front: at most
/// `max_verifying` cache misses in verification at once (a miss waiting
/// for a key refresh included). A miss that finds no free slot is answered
/// undecided `overloaded` at once rather than queued without bound. Cheap
/// to clone.
#[derive(Clone)]
pub struct Budget(Arc<BudgetInner>);

struct BudgetInner {
    slots: Arc<Semaphore>,
    capacity: usize,
    /// Groups of misses verifying right now (the native front spreads a
    /// read's misses only onto cores no other group occupies).
    running: AtomicUsize,
}

impl Budget {
    /// At most `slots` misses in verification at once.
    pub fn new(slots: usize) -> Budget {
        Budget(Arc::new(BudgetInner {
            slots: Arc::new(Semaphore::new(slots)),
            capacity: slots,
            running: AtomicUsize::new(0),
        }))
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.0
            .capacity
            .saturating_sub(self.0.slots.available_permits())
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Verification groups running now.
    pub fn running(&self) -> usize {
        self.0.running.load(Ordering::Relaxed)
    }

    /// Marks one verification group as running while the guard lives.
    pub fn group(&self) -> Running {
        self.0.running.fetch_add(1, Ordering::Relaxed);
        Running(self.clone())
    }

    fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.0.slots.clone().try_acquire_owned().ok()
    }
}

/// A running verification group (see [`Budget::group`]).
pub struct Running(Budget);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Plain cache hits decided by [`Verifier::begin`] and not yet counted:
/// the caller flushes them with [`Verifier::flush`] (the native front once
/// per read: one metric update for many hits). Dropping a tally with hits
/// in it loses their count, so every caller flushes.
#[derive(Debug)]
pub struct Tally {
    front: Front,
    arrived: Instant,
    hits: u64,
}

impl Tally {
    /// An empty tally for requests of `front` that arrived at `arrived`.
    pub fn new(front: Front, arrived: Instant) -> Tally {
        Tally {
            front,
            arrived,
            hits: 0,
        }
    }

    /// When the requests being counted arrived.
    pub fn arrived(&self) -> Instant {
        self.arrived
    }

    /// Starts counting requests that arrived at `arrived` (call after a
    /// flush).
    pub fn restart(&mut self, arrived: Instant) {
        self.arrived = arrived;
    }
}

/// Where a request stands after a step of the pipeline.
#[derive(Debug)]
pub enum Step {
    /// Decided (and counted).
    Done(Decision),
    /// A cache miss holding a verification slot: run [`Ticket::verify`]
    /// where the CPU time should go.
    Verify(Ticket),
    /// The answer needs a wait (a key refresh, a revocation lookup): await
    /// [`Waiting::finish`] off the hot path.
    Wait(Waiting),
}

/// Where a verified miss stands: [`Step`] without `Verify`, which a ticket
/// cannot come back as.
#[derive(Debug)]
pub enum Next {
    /// Decided (and counted).
    Done(Decision),
    /// A key refresh (unknown kid) or a revocation lookup to await.
    Wait(Waiting),
}

/// CPU-heavy work with its verification slot: a cache miss, or a cached
/// token whose DPoP proof must be verified (one signature check, like a
/// miss: it takes a slot of the same budget, and the native front spreads
/// it over the cores with the misses).
#[derive(Debug)]
pub struct Ticket {
    work: Work,
    slot: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Work {
    /// Verify the token.
    Miss(Miss),
    /// The token is valid (cached, revocation checked): bind it.
    Bind(Outcome),
}

/// A request waiting for a key refresh or a revocation lookup. A miss keeps
/// its verification slot until decided.
#[derive(Debug)]
pub struct Waiting {
    pending: Pending,
    slot: Option<OwnedSemaphorePermit>,
}

impl Verifier {
    /// The verification budget (for the native front's spreading and the
    /// metrics).
    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// The first step of every request: a missing token, an unknown
    /// selector, a cache hit (through revocation and route) are decided
    /// here, inline; a miss takes a verification slot (none free:
    /// `overloaded`) and comes back as a [`Ticket`].
    pub fn begin(&self, req: &Request<'_>, tally: &mut Tally) -> Step {
        let ctx = &req.context;
        let Some(token) = req.token else {
            return Step::Done(self.conclude(req, Concluded::MissingToken));
        };
        match self.check_cached(req.selector, token, ctx.now) {
            Ok(Outcome::Valid {
                result,
                cached: true,
            }) if result.anomalies == Anomalies::NONE
                && !self.routes_apply(req)
                && !self.inner.bind.applies(&result, ctx) =>
            {
                tally.hits += 1;
                Step::Done(Decision::Valid {
                    result,
                    cached: true,
                })
            }
            Ok(Outcome::Pending(pending)) => Step::Wait(Waiting {
                pending,
                slot: None,
            }),
            // A proof to verify: a signature check, so a slot of the budget
            // and the caller's choice of core, like a miss.
            Ok(outcome @ Outcome::Valid { .. })
                if ctx.token_scheme == TokenScheme::Dpop
                    && ctx.dpop_proof.is_some_and(|p| !p.is_empty()) =>
            {
                match self.inner.budget.slot() {
                    Some(slot) => Step::Verify(Ticket {
                        work: Work::Bind(outcome),
                        slot,
                    }),
                    None => {
                        tracing::debug!("verification budget exhausted");
                        Step::Done(self.conclude(req, Concluded::Overloaded))
                    }
                }
            }
            Ok(outcome) => match self.settle(req, outcome, None) {
                Next::Done(decision) => Step::Done(decision),
                Next::Wait(waiting) => Step::Wait(waiting),
            },
            Err(miss) => match self.inner.budget.slot() {
                Some(slot) => Step::Verify(Ticket {
                    work: Work::Miss(miss),
                    slot,
                }),
                None => {
                    tracing::debug!("verification budget exhausted");
                    Step::Done(self.conclude(req, Concluded::Overloaded))
                }
            },
        }
    }

    /// Counts the plain hits of `tally` and empties it.
    pub fn flush(&self, tally: &mut Tally) {
        let hits = std::mem::take(&mut tally.hits);
        self.inner
            .metrics
            .record_hits(tally.front, hits, tally.arrived);
    }

    /// The whole pipeline for one request, waits included.
    pub async fn decide(&self, req: &Request<'_>) -> Decision {
        let mut tally = Tally::new(req.context.front, req.context.arrived);
        let step = self.begin(req, &mut tally);
        self.flush(&mut tally);
        let waiting = match step {
            Step::Done(decision) => return decision,
            Step::Wait(waiting) => waiting,
            Step::Verify(ticket) => match ticket.verify(self, req) {
                Next::Done(decision) => return decision,
                Next::Wait(waiting) => waiting,
            },
        };
        waiting.finish(self, req).await
    }

    /// A decided outcome through the binding stage, then concluded; or a
    /// wait, when a DPoP proof must be claimed in the shared store (`slot`
    /// is the verification slot a miss holds until decided).
    fn settle(
        &self,
        req: &Request<'_>,
        outcome: Outcome,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Next {
        match self.bind(req, outcome) {
            Ok(outcome) => Next::Done(self.conclude(req, Concluded::Outcome(outcome))),
            Err(pending) => Next::Wait(Waiting { pending, slot }),
        }
    }

    /// The binding stage ([`crate::bind`]) on a valid outcome: the outcome
    /// (refused: invalid with the stage's reason), or the claim of a DPoP
    /// proof in the shared store to wait for.
    fn bind(&self, req: &Request<'_>, outcome: Outcome) -> Result<Outcome, Pending> {
        let Outcome::Valid { result, cached } = outcome else {
            return Ok(outcome);
        };
        let (ctx, bind) = (&req.context, &self.inner.bind);
        if !bind.applies(&result, ctx) {
            return Ok(Outcome::Valid { result, cached });
        }
        let token = req.token.unwrap_or_default();
        let shared = self.inner.revocation.shares_claims();
        match bind.check(self.issuer_of(&result), &result, token, ctx, shared) {
            Ok(Bound::Pass) => Ok(Outcome::Valid { result, cached }),
            Ok(Bound::Claim(claim)) => Err(Pending::claim(result, cached, claim)),
            Ok(Bound::Full) => Ok(Outcome::Busy),
            Err(reason) => Ok(Outcome::Invalid(Rejection {
                reason,
                anomalies: result.anomalies,
            })),
        }
    }

    /// The index of the issuer that vouched for `result`: with several, the
    /// one its `iss` names (verification chose it so).
    fn issuer_of(&self, result: &Verified) -> usize {
        if self.inner.issuers.len() <= 1 {
            return 0;
        }
        result
            .claims
            .iss
            .as_deref()
            .and_then(|iss| self.inner.by_iss.get(iss))
            .copied()
            .unwrap_or(0)
    }

    /// Whether a route policy could apply to `req` (then even a plain hit
    /// goes through [`Verifier::conclude`]).
    fn routes_apply(&self, req: &Request<'_>) -> bool {
        req.context.path.is_some() && !self.inner.routes.is_empty()
    }

    /// The last stages of every decided request: the route policy, then the
    /// metrics.
    fn conclude(&self, req: &Request<'_>, concluded: Concluded) -> Decision {
        let ctx = &req.context;
        let token = req.token.unwrap_or_default();
        let decision = match concluded {
            Concluded::MissingToken => Decision::MissingToken,
            Concluded::Overloaded => Decision::Undecided(Cause::Overloaded),
            Concluded::Outcome(outcome) => match outcome {
                Outcome::Valid { result, cached } => match ctx.path {
                    Some(path) if !self.inner.routes.is_empty() => {
                        match crate::route::check(&self.inner.routes, &result.claims.raw, path) {
                            Ok(()) => Decision::Valid { result, cached },
                            Err(scopes) => {
                                self.inner
                                    .metrics
                                    .record_forbidden(ctx.front, cached, ctx.arrived);
                                return Decision::Forbidden { scopes };
                            }
                        }
                    }
                    _ => Decision::Valid { result, cached },
                },
                Outcome::Invalid(rejection) => {
                    tracing::debug!(reason = rejection.reason.as_str(), "token rejected");
                    Decision::Invalid(rejection)
                }
                Outcome::NoKeys => Decision::Undecided(Cause::NoKeys),
                Outcome::UnknownSelector => Decision::UnknownSelector,
                Outcome::RevocationUnavailable => Decision::Undecided(Cause::RevocationUnavailable),
                Outcome::Busy => Decision::Undecided(Cause::Overloaded),
                // A wait is finished before it is concluded; should one get
                // here, fail safe: its refusal, or undecided.
                Outcome::Pending(pending) => match pending.rejection() {
                    Some(rejection) => Decision::Invalid(rejection),
                    None => Decision::Undecided(Cause::RevocationUnavailable),
                },
            },
        };
        self.inner
            .metrics
            .record(ctx.front, &decision, token, ctx.arrived);
        decision
    }
}

/// What reaches [`Verifier::conclude`].
enum Concluded {
    MissingToken,
    Overloaded,
    Outcome(Outcome),
}

impl Ticket {
    /// Verifies the token (the CPU-heavy step) and caches a valid result,
    /// or, for a cached token, verifies its DPoP proof. Time is `req`'s `now`: a front queueing tickets reads the clock when
    /// verification starts, so a queued token is never judged by a stale
    /// clock.
    pub fn verify(self, verifier: &Verifier, req: &Request<'_>) -> Next {
        let token = req.token.unwrap_or_default();
        let outcome = match self.work {
            Work::Miss(miss) => verifier.check_uncached(miss, req.selector, token, req.context.now),
            Work::Bind(outcome) => outcome,
        };
        match outcome {
            Outcome::Pending(pending) => Next::Wait(Waiting {
                pending,
                slot: Some(self.slot),
            }),
            outcome => verifier.settle(req, outcome, Some(self.slot)),
        }
    }
}

impl Waiting {
    /// Waits (bounded: a refresh by the issuer's `unknown_kid_wait`, a
    /// revocation lookup by its deadline), then decides. `req` is the
    /// request that began it.
    pub async fn finish(self, verifier: &Verifier, req: &Request<'_>) -> Decision {
        let token = req.token.unwrap_or_default();
        let claimed = self.pending.is_claim();
        let mut outcome = self.pending.finish(verifier, req.selector, token).await;
        if !claimed {
            // A refresh or a revocation lookup decided it: the binding
            // stage comes next (once: a claim has been through it).
            outcome = match verifier.bind(req, outcome) {
                Ok(outcome) => outcome,
                Err(claim) => claim.finish(verifier, req.selector, token).await,
            };
        }
        let decision = verifier.conclude(req, Concluded::Outcome(outcome));
        drop(self.slot);
        decision
    }
}
