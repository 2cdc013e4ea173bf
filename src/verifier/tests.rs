use super::check::Outcome;
use super::*;
use crate::request::{Cause, Context, Decision, Front, Request};
use crate::sign::SigningKey;
use crate::verify::{Algorithm, Reject, Rejection};
use serde_json::json;

/// The whole pipeline for a native request at `now`.
/// How a token with no selector is answered: `Valid(cached)`, or `Other`.
#[derive(Debug, PartialEq)]
enum Answered {
    Valid(bool),
    Other,
}
use Answered::Valid;

async fn answered(v: &Verifier, token: &[u8], now: i64) -> Answered {
    match decide(v, b"", token, now).await {
        Decision::Valid { cached, .. } => Valid(cached),
        _ => Answered::Other,
    }
}

async fn decide(v: &Verifier, selector: &[u8], token: &[u8], now: i64) -> Decision {
    v.decide(&Request {
        token: Some(token),
        selector,
        context: Context::new(Front::Native, std::time::Instant::now(), now),
    })
    .await
}

/// The reason of a refusal.
fn refused(decision: Decision) -> Reject {
    match decision {
        Decision::Invalid(r) => r.reason,
        other => panic!("expected a reject, got {other:?}"),
    }
}

fn setup(audiences: &[&str]) -> (SigningKey, Verifier) {
    let key = SigningKey::generate(Algorithm::HS256)
        .unwrap()
        .with_kid(Some("k".into()));
    let keys =
        KeySet::from_jwks(json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).unwrap();
    let policy = Policy {
        audiences: audiences.iter().map(|a| Box::from(*a)).collect(),
        ..Policy::default()
    };
    let v = Verifier::new(VerifierConfig::single(policy, 1000, 600));
    v.set_keys(0, keys);
    (key, v)
}

fn mint(key: &SigningKey, claims: serde_json::Value) -> Vec<u8> {
    key.mint(&claims, &Default::default()).unwrap().into_bytes()
}

#[tokio::test]
async fn second_check_is_a_cache_hit_until_exp_plus_leeway() {
    let (key, v) = setup(&[]);
    let token = mint(&key, json!({"exp": 1000}));
    assert_eq!(answered(&v, &token, 900).await, Valid(false));
    assert_eq!(answered(&v, &token, 901).await, Valid(true));
    // Leeway 30: the core accepts until 1029, the cache serves until then.
    assert_eq!(answered(&v, &token, 1029).await, Valid(true));
    assert!(v.check_cached(b"", &token, 1030).is_err());
    assert!(matches!(
        decide(&v, b"", &token, 1030).await,
        Decision::Invalid(Rejection {
            reason: Reject::Expired,
            ..
        })
    ));
}

#[tokio::test]
async fn tokens_without_exp_are_cached_for_at_most_the_max_ttl() {
    let (key, v) = setup(&[]);
    let keys = v.issuers()[0].keys().unwrap();
    let v = Verifier::new(VerifierConfig::single(
        Policy {
            required: vec![],
            ..Policy::default()
        },
        10,
        600,
    ));
    v.set_keys(0, (*keys).clone());
    let token = mint(&key, json!({"sub": "x"}));
    assert_eq!(answered(&v, &token, 0).await, Valid(false));
    assert!(v.check_cached(b"", &token, 599).is_ok());
    assert!(v.check_cached(b"", &token, 600).is_err());
}

#[tokio::test]
async fn cached_results_stop_at_the_swap_that_removes_their_key() {
    let (old_key, v) = setup(&[]);
    let token = mint(&old_key, json!({"exp": 1000}));
    assert_eq!(answered(&v, &token, 0).await, Valid(false));
    assert_eq!(answered(&v, &token, 1).await, Valid(true));

    // Same key reloaded (a periodic refresh): still a hit.
    let same = KeySet::from_jwks(
        json!({"keys": [old_key.public_jwk()]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    v.set_keys(0, same);
    assert_eq!(answered(&v, &token, 2).await, Valid(true));

    // Rotated away: the cached result is no longer served.
    let new_key = SigningKey::generate(Algorithm::HS256)
        .unwrap()
        .with_kid(Some("k2".into()));
    let rotated = KeySet::from_jwks(
        json!({"keys": [new_key.public_jwk()]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    v.set_keys(0, rotated);
    assert!(v.check_cached(b"", &token, 3).is_err());
    assert!(v.cache().is_empty(), "the refused entry was kept");
    assert!(matches!(
        decide(&v, b"", &token, 3).await,
        Decision::Invalid(Rejection {
            reason: Reject::UnknownKey,
            ..
        })
    ));
}

#[tokio::test]
async fn invalid_results_are_not_cached() {
    let (key, v) = setup(&[]);
    let token = mint(&key, json!({"exp": 10}));
    assert!(matches!(
        decide(&v, b"", &token, 100).await,
        Decision::Invalid(_)
    ));
    assert!(v.check_cached(b"", &token, 0).is_err());
    assert!(v.cache().is_empty());
}

#[tokio::test]
async fn selectors_pick_one_configured_audience() {
    let (key, v) = setup(&["a", "b"]);
    let token = mint(&key, json!({"exp": 1000, "aud": "b"}));
    assert!(matches!(
        decide(&v, b"", &token, 0).await,
        Decision::Valid { .. }
    ));
    assert!(matches!(
        decide(&v, b"b", &token, 0).await,
        Decision::Valid { .. }
    ));
    assert!(matches!(
        decide(&v, b"a", &token, 0).await,
        Decision::Invalid(Rejection {
            reason: Reject::Audience,
            ..
        })
    ));
    assert!(matches!(
        decide(&v, b"c", &token, 0).await,
        Decision::UnknownSelector
    ));
}

#[tokio::test]
async fn no_keys_means_undecided_until_a_set_is_published() {
    let (key, loaded) = setup(&[]);
    let v = Verifier::new(VerifierConfig::single(Policy::default(), 10, 600));
    assert!(!v.ready());
    let token = mint(&key, json!({"exp": 1000}));
    assert!(matches!(
        decide(&v, b"", &token, 0).await,
        Decision::Undecided(Cause::NoKeys)
    ));
    v.set_keys(0, (*loaded.issuers()[0].keys().unwrap()).clone());
    assert!(matches!(
        decide(&v, b"", &token, 0).await,
        Decision::Valid { .. }
    ));
    assert!(v.ready());
}

fn es256(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some(kid.into()))
}

fn set_of(keys: &[&SigningKey]) -> KeySet {
    let jwks: Vec<_> = keys.iter().map(|k| k.public_jwk()).collect();
    KeySet::from_jwks(json!({"keys": jwks}).to_string().as_bytes()).unwrap()
}

fn issuer(iss: &str, aud: &[&str], refresh: bool) -> IssuerConfig {
    IssuerConfig {
        policy: Policy {
            issuer: Some(iss.into()),
            audiences: aud.iter().map(|a| Box::from(*a)).collect(),
            ..Policy::default()
        },
        unknown_kid: refresh.then_some((Duration::from_secs(30), Duration::from_secs(1))),
        max_stale: None,
        binding: crate::bind::IssuerBinding::default(),
        jwe: crate::verifier::IssuerJwe::default(),
    }
}

fn reason(outcome: Outcome) -> Reject {
    match outcome {
        Outcome::Invalid(r) => r.reason,
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tokens_iss_picks_the_issuer_and_its_keys_only() {
    let (a, b) = (es256("a"), es256("b"));
    let v = Verifier::new(VerifierConfig {
        issuers: vec![
            issuer("https://a", &["api-a"], false),
            issuer("https://b", &["api-b"], false),
        ],
        cache_entries: 100,
        cache_max_ttl: 600,
        max_verifying: 100,
        routes: Vec::new(),
        bind: crate::bind::BindConfig::default(),
        jwe: Vec::new(),
    });
    assert!(!v.ready());
    v.set_keys(0, set_of(&[&a]));
    // B has no set yet: its tokens are undecided, A's are judged.
    let b_token = mint(&b, json!({"iss": "https://b", "aud": "api-b", "exp": 1000}));
    assert!(matches!(
        decide(&v, b"", &b_token, 0).await,
        Decision::Undecided(Cause::NoKeys)
    ));
    assert!(!v.ready());
    v.set_keys(1, set_of(&[&b]));
    assert!(v.ready());

    let a_token = mint(&a, json!({"iss": "https://a", "aud": "api-a", "exp": 1000}));
    assert!(matches!(
        decide(&v, b"", &a_token, 0).await,
        Decision::Valid { .. }
    ));
    assert!(matches!(
        decide(&v, b"", &b_token, 0).await,
        Decision::Valid { .. }
    ));
    // A's key, B's name: only B's keys are tried.
    let forged = mint(&a, json!({"iss": "https://b", "aud": "api-b", "exp": 1000}));
    assert_eq!(
        refused(decide(&v, b"", &forged, 0).await),
        Reject::UnknownKey
    );
    let stranger = mint(&a, json!({"iss": "https://c", "exp": 1000}));
    assert_eq!(
        refused(decide(&v, b"", &stranger, 0).await),
        Reject::UnknownIssuer
    );
    let anonymous = mint(&a, json!({"exp": 1000}));
    assert_eq!(
        refused(decide(&v, b"", &anonymous, 0).await),
        Reject::UnknownIssuer
    );
    let typed = mint(&a, json!({"iss": 7, "exp": 1000}));
    assert_eq!(refused(decide(&v, b"", &typed, 0).await), Reject::ClaimType);
    // Selectors: any configured audience; refused by the other issuer.
    assert!(matches!(
        decide(&v, b"api-a", &a_token, 0).await,
        Decision::Valid { .. }
    ));
    assert_eq!(
        refused(decide(&v, b"api-b", &a_token, 0).await),
        Reject::Audience
    );
    assert!(matches!(
        decide(&v, b"api-c", &a_token, 0).await,
        Decision::UnknownSelector
    ));
    let wrong_aud = mint(&a, json!({"iss": "https://a", "aud": "api-b", "exp": 1000}));
    assert_eq!(
        refused(decide(&v, b"", &wrong_aud, 0).await),
        Reject::Audience
    );
}

#[tokio::test]
async fn a_cached_result_stops_when_its_own_issuer_drops_the_key() {
    let shared = es256("shared");
    let v = Verifier::new(VerifierConfig {
        issuers: vec![
            issuer("https://a", &[], false),
            issuer("https://b", &[], false),
        ],
        cache_entries: 100,
        cache_max_ttl: 600,
        max_verifying: 100,
        routes: Vec::new(),
        bind: crate::bind::BindConfig::default(),
        jwe: Vec::new(),
    });
    // The same key trusted by both issuers.
    v.set_keys(0, set_of(&[&shared]));
    v.set_keys(1, set_of(&[&shared]));
    let token = mint(&shared, json!({"iss": "https://a", "exp": 1000}));
    assert_eq!(answered(&v, &token, 0).await, Valid(false));
    assert_eq!(answered(&v, &token, 1).await, Valid(true));
    // A drops it; B still has it, which must not keep A's token alive.
    v.set_keys(0, set_of(&[&es256("other")]));
    assert!(v.check_cached(b"", &token, 2).is_err());
    assert_eq!(
        refused(decide(&v, b"", &token, 2).await),
        Reject::UnknownKey
    );
}

#[tokio::test]
async fn an_unknown_kid_waits_for_the_refresh_and_is_verified_again() {
    let (old, new) = (es256("old"), es256("new"));
    let v = Verifier::new(VerifierConfig {
        issuers: vec![issuer("https://a", &[], true)],
        cache_entries: 100,
        cache_max_ttl: 600,
        max_verifying: 100,
        routes: Vec::new(),
        bind: crate::bind::BindConfig::default(),
        jwe: Vec::new(),
    });
    v.set_keys(0, set_of(&[&old]));
    let now = crate::clock::unix_now();
    let token = mint(&new, json!({"iss": "https://a", "exp": now + 3600}));
    let miss = v.check_cached(b"", &token, now).unwrap_err();
    let Outcome::Pending(refreshing) = v.check_uncached(miss, b"", &token, now) else {
        panic!("expected a refresh")
    };
    assert_eq!(refreshing.rejection().unwrap().reason, Reject::UnknownKey);
    // What the fetch task does: publish, then release the waiters.
    let fetcher = v.clone();
    tokio::spawn(async move {
        let gate = fetcher.issuers()[0].gate().unwrap();
        gate.started();
        fetcher.set_keys(0, set_of(&[&old, &new]));
        gate.finished();
    });
    let outcome = refreshing.finish(&v, b"", &token).await;
    assert!(
        matches!(outcome, Outcome::Valid { cached: false, .. }),
        "{outcome:?}"
    );
    // A second unknown kid within the cooldown is refused at once.
    let stranger = mint(&es256("x"), json!({"iss": "https://a", "exp": now + 3600}));
    let miss = v.check_cached(b"", &stranger, now).unwrap_err();
    assert_eq!(
        reason(v.check_uncached(miss, b"", &stranger, now)),
        Reject::UnknownKey
    );
    assert_eq!(v.issuers()[0].gate().unwrap().suppressed(), 1);
}

#[tokio::test]
async fn a_kidless_token_matching_too_many_keys_asks_for_no_refresh() {
    let keys: Vec<SigningKey> = (0..10).map(|n| es256(&format!("k{n}"))).collect();
    let v = Verifier::new(VerifierConfig {
        issuers: vec![issuer("https://a", &[], true)],
        cache_entries: 100,
        cache_max_ttl: 600,
        max_verifying: 100,
        routes: Vec::new(),
        bind: crate::bind::BindConfig::default(),
        jwe: Vec::new(),
    });
    v.set_keys(0, set_of(&keys.iter().collect::<Vec<_>>()));
    let now = crate::clock::unix_now();
    let payload = json!({"iss": "https://a", "exp": now + 3600}).to_string();
    let token = keys[9]
        .sign_parts(br#"{"alg":"ES256"}"#, payload.as_bytes())
        .unwrap()
        .into_bytes();
    let miss = v.check_cached(b"", &token, now).unwrap_err();
    // Answered at once (not Pending on a refresh), and nothing asked.
    assert_eq!(
        reason(v.check_uncached(miss, b"", &token, now)),
        Reject::UnknownKey
    );
    let gate = v.issuers()[0].gate().unwrap();
    assert_eq!((gate.requested(), gate.suppressed()), (0, 0));
    // An unknown kid still asks for one.
    let stranger = mint(&es256("x"), json!({"iss": "https://a", "exp": now + 3600}));
    let miss = v.check_cached(b"", &stranger, now).unwrap_err();
    assert!(matches!(
        v.check_uncached(miss, b"", &stranger, now),
        Outcome::Pending(_)
    ));
    assert_eq!(gate.requested(), 1);
}

#[tokio::test]
async fn revoked_tokens_are_refused_cached_or_not() {
    let (key, v) = setup(&[]);
    let token = mint(&key, json!({"sub": "alice", "jti": "t1", "exp": 1000}));
    assert_eq!(answered(&v, &token, 0).await, Valid(false));
    assert_eq!(answered(&v, &token, 1).await, Valid(true));
    let revoked = crate::revocation::jti_key("jwtd:", None, "t1");
    v.revocation()
        .revoke_local(&revoked, b"1".to_vec(), Some(1000), 1);
    // The cached result is still there, but the answer is a reject.
    assert_eq!(refused(decide(&v, b"", &token, 2).await), Reject::Revoked);
    assert!(!v.cache().is_empty());
    // Uncached tokens of the same subject issued before a subject
    // revocation are refused too.
    let old = mint(&key, json!({"sub": "alice", "iat": 5, "exp": 1000}));
    let new = mint(&key, json!({"sub": "alice", "iat": 20, "exp": 1000}));
    let subject = crate::revocation::sub_key("jwtd:", None, "alice");
    v.revocation()
        .revoke_local(&subject, b"10".to_vec(), None, 2);
    assert_eq!(refused(decide(&v, b"", &old, 30).await), Reject::Revoked);
    assert!(matches!(
        decide(&v, b"", &new, 30).await,
        Decision::Valid { .. }
    ));
}

#[tokio::test]
async fn a_cancelled_decision_gives_its_verification_slot_back() {
    // A proxy check whose client went away is a dropped `decide` future:
    // the miss it holds, waiting for a key refresh, must free its slot.
    let (old, new) = (es256("old"), es256("new"));
    let v = Verifier::new(VerifierConfig {
        issuers: vec![issuer("https://a", &[], true)],
        cache_entries: 100,
        cache_max_ttl: 600,
        max_verifying: 1,
        routes: Vec::new(),
        bind: crate::bind::BindConfig::default(),
        jwe: Vec::new(),
    });
    v.set_keys(0, set_of(&[&old]));
    let now = crate::clock::unix_now();
    let token = mint(&new, json!({"iss": "https://a", "exp": now + 3600}));
    let request = Request {
        token: Some(&token),
        selector: b"",
        context: Context::new(Front::Http, std::time::Instant::now(), now),
    };
    let mut waiting = Box::pin(v.decide(&request));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        waiting.as_mut().poll(&mut cx).is_pending(),
        "waits for the refresh"
    );
    assert_eq!(v.budget().in_use(), 1, "the waiting miss holds its slot");
    drop(waiting);
    assert_eq!(v.budget().in_use(), 0, "given back when cancelled");
    // And the next miss gets it, rather than `overloaded`.
    let valid = mint(&old, json!({"iss": "https://a", "exp": now + 3600}));
    assert_eq!(answered(&v, &valid, now).await, Valid(false));
}
