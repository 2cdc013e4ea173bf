//! The revocation checker without Redis: key layout, the decisions of the
//! known revocations alone, the fail policy against a Redis that is not
//! there (which a known revocation overrides), and, against a scripted
//! stand-in for Redis on paused time, the failure reasons and the timing of
//! memos and local answers (the real-Redis tests are in
//! `tests/it/revocation.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::remote::{Failure, Script};
use super::*;
use crate::verify::{Algorithm, Anomalies, Claims, Verified};

impl Revocation {
    /// Records a raw value as known (for tests of values
    /// [`Revocation::revoke`] never writes, such as garbage subject times).
    /// `expires_at` is a Unix second (`None`: never).
    pub(crate) fn revoke_local(
        &self,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<i64>,
        now: i64,
    ) -> bool {
        let fact = if is_jti_key(key) {
            Fact::Jti
        } else {
            Fact::Subject(parse_before(&value))
        };
        self.remember(key, fact, expires_at.unwrap_or(i64::MAX), now);
        true
    }

    /// A checker on `script`, a stand-in for Redis, with its batcher on the
    /// test's own runtime (so on its paused clock) and no push channel.
    fn scripted(config: RevocationConfig, script: &Arc<Script>) -> Revocation {
        let stats = Arc::new(Stats::default());
        let target = Arc::new(Target::scripted(script.clone()));
        let runtime = tokio::runtime::Handle::current();
        let batcher = Batcher::spawn(&runtime, target, &config, stats.clone());
        Revocation::with_store(config, Store::Remote(batcher), stats)
    }

    fn failed_lookup_count(&self, reason: &str) -> u64 {
        self.stats()
            .failed_lookups()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .unwrap()
    }
}

/// A verified token with these claims (`exp` 2000).
pub(super) fn token(
    iss: Option<&str>,
    sub: Option<&str>,
    jti: Option<&str>,
    iat: Option<i64>,
) -> Arc<Verified> {
    Arc::new(Verified {
        claims: Claims {
            iss: iss.map(Box::from),
            sub: sub.map(Box::from),
            jti: jti.map(Box::from),
            exp: Some(2_000),
            nbf: None,
            iat,
            cnf: None,
            raw: bytes::Bytes::new(),
        },
        alg: Some(Algorithm::ES256),
        kid: None,
        key: crate::verify::KeyFingerprint([0; 32]),
        anomalies: Anomalies::NONE,
    })
}

#[test]
fn keys_are_scoped_by_issuer_in_one_hash_tag() {
    let a = jti_key("jwtd:", Some("https://a.example"), "t1");
    let b = jti_key("jwtd:", Some("https://b.example"), "t1");
    assert_ne!(a, b, "two issuers' jtis collide");
    assert!(a.starts_with("jwtd:{") && a.ends_with("}:jti:t1"), "{a}");
    // The same tag for every key of an issuer: one cluster slot.
    let sub = sub_key("jwtd:", Some("https://a.example"), "alice");
    assert_eq!(batch_tag(&a), batch_tag(&sub));
    assert_eq!(jti_key("p:", None, "x"), "p:{-}:jti:x");
    assert_eq!(channel("p:"), "p:revocations");
    // 16 hex digits of SHA-256("https://a.example").
    let tag = batch_tag(&a);
    assert_eq!(tag.len(), 16);
    assert!(tag.chars().all(|c| c.is_ascii_hexdigit()));
}

fn batch_tag(key: &str) -> &str {
    let open = key.find('{').unwrap();
    let close = key.find('}').unwrap();
    &key[open + 1..close]
}

#[test]
fn the_memory_store_revokes_by_jti_and_by_subject_time() {
    let r = Revocation::memory(RevocationConfig::default());
    let iss = Some("https://a.example");
    let t = token(iss, Some("alice"), Some("t1"), Some(100));
    assert_eq!(
        r.check_local(&t, 0, Probe::Miss),
        Local::Decided(Standing::Clear, None),
        "empty store"
    );

    // One jti, until its exp.
    let key = jti_key("jwtd:", iss, "t1");
    assert!(r.revoke_local(&key, b"1".to_vec(), Some(2_000), 0));
    assert_eq!(
        r.check_local(&t, 0, Probe::Miss),
        Local::Decided(Standing::Revoked, None)
    );
    assert_eq!(
        r.check_local(&t, 2_000, Probe::Miss),
        Local::Decided(Standing::Clear, None),
        "expired with the token"
    );
    let other = token(iss, Some("alice"), Some("t2"), Some(100));
    assert_eq!(
        r.check_local(&other, 0, Probe::Miss),
        Local::Decided(Standing::Clear, None)
    );

    // A subject: tokens issued at or before 150, and tokens without iat.
    let key = sub_key("jwtd:", iss, "bob");
    r.revoke_local(&key, b"150".to_vec(), None, 0);
    let at = |iat| token(iss, Some("bob"), Some("x"), iat);
    assert_eq!(
        r.check_local(&at(Some(150)), 0, Probe::Miss),
        Local::Decided(Standing::Revoked, None)
    );
    assert_eq!(
        r.check_local(&at(Some(151)), 0, Probe::Miss),
        Local::Decided(Standing::Clear, None)
    );
    assert_eq!(
        r.check_local(&at(None), 0, Probe::Miss),
        Local::Decided(Standing::Revoked, None)
    );
    // Another issuer's bob is someone else.
    let elsewhere = token(Some("https://b.example"), Some("bob"), None, Some(1));
    assert_eq!(
        r.check_local(&elsewhere, 0, Probe::Miss),
        Local::Decided(Standing::Clear, None)
    );
    // An unreadable time revokes every token of the subject (fail safe).
    r.revoke_local(&sub_key("jwtd:", iss, "carol"), b"soon".to_vec(), None, 0);
    let carol = token(iss, Some("carol"), None, Some(i64::MAX - 1));
    assert_eq!(
        r.check_local(&carol, 0, Probe::Miss),
        Local::Decided(Standing::Revoked, None)
    );
    // Nothing to look up: clear.
    assert_eq!(
        r.check_local(&token(iss, None, None, None), 0, Probe::Miss),
        Local::Decided(Standing::Clear, None)
    );
}

fn unreachable(fail_open: bool) -> Revocation {
    let config = RevocationConfig {
        fail_open,
        timeout: Duration::from_millis(50),
        ..RevocationConfig::default()
    };
    // Port 1: nothing listens; every batch fails fast.
    Revocation::redis(config, &["redis://127.0.0.1:1".to_owned()]).unwrap()
}

#[tokio::test]
async fn an_unreachable_store_fails_closed_by_default_and_open_when_asked() {
    let t = token(Some("i"), Some("alice"), Some("t1"), Some(1));
    let closed = unreachable(false);
    assert_eq!(
        closed.check_local(&t, 0, Probe::Miss),
        Local::Lookup,
        "nothing known locally"
    );
    assert_eq!(closed.check(&t, 0).await, (Standing::Unavailable, None));
    assert_eq!(closed.stats().failed_closed.load(Ordering::Relaxed), 1);
    assert_eq!(closed.failed_lookup_count("connect"), 1, "refused");
    let open = unreachable(true);
    // Let through, but no memo: the next request asks again.
    assert_eq!(open.check(&t, 0).await, (Standing::Clear, None));
    assert_eq!(open.stats().failed_open.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_circuit_opens_after_failed_batches_and_answers_at_once() {
    let r = unreachable(false);
    let t = token(Some("i"), Some("alice"), Some("t1"), Some(1));
    for _ in 0..batch::BREAKER_FAILURES {
        assert_eq!(r.check(&t, 0).await.0, Standing::Unavailable);
    }
    let tried = r.stats().batches.load(Ordering::Relaxed);
    assert_eq!(r.check(&t, 0).await.0, Standing::Unavailable);
    // Answered by the open circuit: no batch went out.
    assert_eq!(r.stats().short_circuited.load(Ordering::Relaxed), 1);
    assert_eq!(r.stats().batches.load(Ordering::Relaxed), tried);
}

#[tokio::test]
async fn revocations_through_the_daemon_reach_the_memory_store() {
    let r = Revocation::memory(RevocationConfig::default());
    let key = r
        .revoke(
            Some("i"),
            &Revoke::Subject {
                sub: "alice".to_owned(),
                before: 10,
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(key, sub_key("jwtd:", Some("i"), "alice"));
    let t = token(Some("i"), Some("alice"), None, Some(10));
    assert_eq!(
        r.check_local(&t, 0, Probe::Miss),
        Local::Decided(Standing::Revoked, None)
    );
}

#[test]
fn only_jti_keys_are_jti_keys() {
    assert!(is_jti_key(&jti_key("jwtd:", Some("i"), "a:sub:b")));
    assert!(!is_jti_key(&sub_key("jwtd:", Some("i"), "x:jti:y")));
    assert!(!is_jti_key("jti:no-tag"));
}

#[tokio::test]
async fn a_revoked_jti_outlives_its_exp_by_the_largest_leeway() {
    let r = Revocation::memory(RevocationConfig::default());
    let what = Revoke::Jti {
        jti: "t1".to_owned(),
        exp: 1000,
    };
    r.revoke(Some("i"), &what, 0).await.unwrap();
    let t = token(Some("i"), None, Some("t1"), None);
    let at = |now| r.check_local(&t, now, Probe::Miss);
    assert_eq!(at(1000 + 299), Local::Decided(Standing::Revoked, None));
    assert_eq!(at(1000 + 300), Local::Decided(Standing::Clear, None));
}

#[tokio::test]
async fn a_known_revocation_is_revoked_with_the_store_down_in_both_fail_modes() {
    for fail_open in [false, true] {
        let r = unreachable(fail_open);
        let by_jti = token(Some("i"), Some("alice"), Some("t1"), Some(1));
        let by_sub = token(Some("i"), Some("bob"), Some("t9"), Some(1));
        let what = Revoke::Jti {
            jti: "t1".to_owned(),
            exp: 2_000,
        };
        // Redis cannot be written: reported, but enforced here all the same.
        let written = r.revoke(Some("i"), &what, 0).await;
        assert!(
            matches!(written, Err(RevokeError::Store(StoreError::Connect(_)))),
            "{written:?}"
        );
        let what = Revoke::Subject {
            sub: "bob".to_owned(),
            before: 10,
        };
        assert!(r.revoke(Some("i"), &what, 0).await.is_err());
        for t in [&by_jti, &by_sub] {
            assert_eq!(
                r.check_local(t, 0, Probe::Miss),
                Local::Decided(Standing::Revoked, None),
                "fail_open {fail_open}: decided without a lookup"
            );
            assert_eq!(r.check(t, 0).await, (Standing::Revoked, None));
            // Until exp + 300 s.
            assert_eq!(r.check(t, 2_299).await.0, Standing::Revoked);
        }
        assert_eq!(r.stats().looked_up.load(Ordering::Relaxed), 0);
        // A token of bob issued after the cut-off is not covered.
        let later = token(Some("i"), Some("bob"), None, Some(11));
        let expected = if fail_open {
            Standing::Clear
        } else {
            Standing::Unavailable
        };
        assert_eq!(r.check(&later, 0).await.0, expected);
        // The jti entry ends 300 s after exp.
        assert_eq!(
            r.check_local(
                &token(Some("i"), None, Some("t1"), None),
                2_300,
                Probe::Miss
            ),
            Local::Lookup
        );
    }
}

#[tokio::test]
async fn revocations_that_can_match_nothing_are_refused_and_not_recorded() {
    let r = Revocation::memory(RevocationConfig::default());
    let expired = Revoke::Jti {
        jti: "t1".to_owned(),
        exp: 1_000,
    };
    // Still within the grace: accepted.
    assert!(r.revoke(None, &expired, 1_299).await.is_ok());
    let r = Revocation::memory(RevocationConfig::default());
    let refused = r.revoke(None, &expired, 1_300).await;
    assert!(
        matches!(&refused, Err(RevokeError::MatchesNothing(why)) if why.contains("1000")),
        "{refused:?}"
    );
    assert!(r.known().is_empty(), "nothing recorded");
    for what in [
        Revoke::Jti {
            jti: String::new(),
            exp: 5_000,
        },
        Revoke::Subject {
            sub: String::new(),
            before: 5,
        },
    ] {
        assert!(matches_nothing(&what, 0).is_some(), "{what:?}");
    }
}

#[test]
fn errors_lose_the_credentials_of_redis_urls() {
    let urls = vec![
        "redis://:hunter22@cache:6379/0".to_owned(),
        "redis://admin:s3cr3t@other".to_owned(),
    ];
    let text = "cannot reach redis://:hunter22@cache:6379/0 (auth hunter22); admin:s3cr3t@other";
    let shown = scrub(text, &urls);
    for secret in ["hunter22", "s3cr3t"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("redis://***@cache:6379/0"), "{shown}");
    assert_eq!(scrub("plain", &urls), "plain");
    assert_eq!(userinfo_secret("redis://h:1"), None);
    assert_eq!(userinfo_secret("redis://:pw@h"), None, "too short to blank");
    assert_eq!(userinfo_secret("redis://user@h"), Some("user"));
}

// ---------------------------------------------------------------------------
// On a scripted stand-in for Redis, on paused time.

/// A token with a `jti` and a `sub`, both asked in one lookup.
fn alice() -> Arc<Verified> {
    token(Some("i"), Some("alice"), Some("t1"), Some(1))
}

#[tokio::test(start_paused = true)]
async fn a_memo_and_the_answers_it_rests_on_expire_after_cache_ttl() {
    let script = Arc::new(Script::default());
    let r = Revocation::scripted(RevocationConfig::default(), &script);
    let ttl = r.config().cache_ttl;
    let t = alice();
    let (standing, memo) = r.check(&t, 0).await;
    assert_eq!(standing, Standing::Clear);
    let mut memo = memo.expect("a clear token gets a memo");
    assert_eq!(r.memo_probe()(&mut memo), Probe::Clear);

    // Until cache_ttl, the local answers decide without the store.
    tokio::time::advance(ttl / 2).await;
    assert_eq!(r.memo_probe()(&mut memo), Probe::Clear);
    assert!(matches!(
        r.check_local(&t, 0, Probe::Miss),
        Local::Decided(Standing::Clear, Some(_))
    ));
    assert_eq!(script.mgets.load(Ordering::Relaxed), 1);

    // At cache_ttl both are gone: the memo misses, the token is looked up.
    tokio::time::advance(ttl - ttl / 2).await;
    assert_eq!(r.memo_probe()(&mut memo), Probe::Miss);
    assert_eq!(r.check_local(&t, 0, Probe::Miss), Local::Lookup);
    assert_eq!(r.check(&t, 0).await.0, Standing::Clear);
    assert_eq!(script.mgets.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_memo_due_is_refreshed_in_the_background_before_it_expires() {
    let script = Arc::new(Script::default());
    let r = Revocation::scripted(RevocationConfig::default(), &script);
    let ttl = r.config().cache_ttl;
    let t = alice();
    let mut memo = r.check(&t, 0).await.1.expect("a memo");

    // In its last fifth, one probe claims the refresh; the others go on
    // answering from the memo.
    tokio::time::advance(ttl.mul_f64(0.85)).await;
    assert_eq!(r.memo_probe()(&mut memo), Probe::Refresh);
    assert_eq!(
        r.memo_probe()(&mut memo),
        Probe::Clear,
        "one refresh per memo"
    );
    assert_eq!(r.check_local(&t, 0, Probe::Refresh), Local::Refresh);
    let mut renewed = r.refresh(&t, 0).await;
    assert_eq!(script.mgets.load(Ordering::Relaxed), 2, "asked again");

    // Past the first memo's end, the renewed one holds.
    tokio::time::advance(ttl.mul_f64(0.3)).await;
    assert_eq!(r.memo_probe()(&mut memo), Probe::Miss, "the first expired");
    assert_eq!(r.memo_probe()(&mut renewed), Probe::Clear, "renewed");

    // A refresh that finds the token revoked leaves no memo.
    script.set(&jti_key("jwtd:", Some("i"), "t1"), b"1", None);
    let mut none = r.refresh(&t, 0).await;
    assert_eq!(r.memo_probe()(&mut none), Probe::Miss);
    assert_eq!(r.memo_probe()(&mut renewed), Probe::Miss, "retired");
    assert_eq!(r.check(&t, 0).await, (Standing::Revoked, None));
}

#[tokio::test(start_paused = true)]
async fn lookup_failures_are_counted_by_reason_and_decided_by_the_fail_mode() {
    let script = Arc::new(Script::default());
    let r = Revocation::scripted(RevocationConfig::default(), &script);
    let t = alice();
    for failure in [Failure::Hang, Failure::Refuse, Failure::Error] {
        script.fail(Some(failure));
        assert_eq!(
            r.check(&t, 0).await,
            (Standing::Unavailable, None),
            "{failure:?}"
        );
    }
    // Three failed batches in a row: the circuit answers the next.
    assert_eq!(r.check(&t, 0).await, (Standing::Unavailable, None));
    let counts: Vec<(&str, u64)> = r.stats().failed_lookups().collect();
    assert_eq!(
        counts,
        [
            ("timeout", 1),
            ("connect", 1),
            ("breaker_open", 1),
            ("redis", 1),
            ("stopped", 0)
        ]
    );
    assert_eq!(r.stats().failed_closed.load(Ordering::Relaxed), 4);

    // Redis back: the probe a period later closes the circuit.
    script.fail(None);
    tokio::time::advance(batch::BREAKER_PROBE).await;
    assert_eq!(r.check(&t, 0).await.0, Standing::Clear);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_through_the_daemon_is_written_as_it_is_known() {
    let script = Arc::new(Script::default());
    let r = Revocation::scripted(RevocationConfig::default(), &script);
    let what = Revoke::Jti {
        jti: "t1".to_owned(),
        exp: 1_000,
    };
    let key = r.revoke(Some("i"), &what, 0).await.unwrap();
    assert_eq!(key, jti_key("jwtd:", Some("i"), "t1"));
    // Redis's key and the daemon's own record end together: exp + 300 s.
    assert_eq!(script.get(&key), Some((b"1".to_vec(), Some(1_300))));
    assert_eq!(r.known().get(&key, 1_299), Some(Fact::Jti));
    assert_eq!(r.known().get(&key, 1_300), None);

    let what = Revoke::Subject {
        sub: "alice".to_owned(),
        before: 10,
    };
    let key = r.revoke(Some("i"), &what, 0).await.unwrap();
    assert_eq!(script.get(&key), Some((b"10".to_vec(), None)));
    assert_eq!(r.known().get(&key, 0), Some(Fact::Subject(10)));
    assert_eq!(script.connects.load(Ordering::Relaxed), 1, "one connection");

    // A write Redis does not answer: typed, and enforced here all the same.
    script.fail(Some(Failure::Hang));
    let what = Revoke::Subject {
        sub: "bob".to_owned(),
        before: 10,
    };
    assert_eq!(
        r.revoke(Some("i"), &what, 0).await,
        Err(RevokeError::Store(StoreError::Timeout(
            batch::WRITE_TIMEOUT
        )))
    );
    let bob = token(Some("i"), Some("bob"), None, Some(5));
    assert_eq!(r.check(&bob, 0).await, (Standing::Revoked, None));
}

#[test]
fn a_revocation_is_stored_under_one_key_until_one_time() {
    let jti = Revoke::Jti {
        jti: "t1".to_owned(),
        exp: 1_000,
    }
    .entry("p:", Some("i"));
    assert_eq!(jti.key, jti_key("p:", Some("i"), "t1"));
    assert_eq!((jti.fact, jti.expires_at), (Fact::Jti, Some(1_300)));
    assert_eq!(jti.value(), "1");
    let sub = Revoke::Subject {
        sub: "alice".to_owned(),
        before: 10,
    }
    .entry("p:", None);
    assert_eq!(sub.key, sub_key("p:", None, "alice"));
    assert_eq!((sub.fact, sub.expires_at), (Fact::Subject(10), None));
    assert_eq!(sub.value(), "10");
    // The same end as the lookup path keeps a revoked jti for.
    assert_eq!(passes_until(Some(1_000), 0), 1_300);
    assert_eq!(passes_until(None, 50), 50 + 86_400);
}

#[tokio::test(start_paused = true)]
async fn a_pushed_revocation_read_back_is_known_until_its_key_expires() {
    let script = Arc::new(Script::default());
    let r = Revocation::scripted(RevocationConfig::default(), &script);
    let now = crate::clock::unix_now();
    let jti = jti_key("jwtd:", Some("i"), "t1");
    script.set(&jti, b"1", Some(now + 100));
    r.learn(&jti).await;
    assert_eq!(r.known().get(&jti, now + 98), Some(Fact::Jti));
    assert_eq!(r.known().get(&jti, now + 102), None);
    // A subject's cut-off: as the store's rule says.
    let sub = sub_key("jwtd:", Some("i"), "alice");
    script.set(&sub, b"10", None);
    r.learn(&sub).await;
    assert_eq!(r.known().get(&sub, now), Some(Fact::Subject(10)));
    assert_eq!(r.known().get(&sub, now + known::SUBJECT_KEEP + 2), None);
}

#[tokio::test]
async fn jwtd_revoke_reports_a_typed_failure_without_the_password() {
    let what = Revoke::Subject {
        sub: "alice".to_owned(),
        before: 10,
    };
    let dead = ["redis://:hunter22@127.0.0.1:1".to_owned()];
    let failed = revoke(&dead, "jwtd:", None, &what, Duration::from_secs(2)).await;
    assert!(matches!(&failed, Err(StoreError::Connect(_))), "{failed:?}");
    assert!(!format!("{failed:?}").contains("hunter22"), "{failed:?}");
    let bad = ["http://:hunter22@cache".to_owned()];
    let failed = revoke(&bad, "jwtd:", None, &what, Duration::from_secs(2)).await;
    assert!(
        matches!(&failed, Err(StoreError::Connect(why)) if why.contains("invalid URL")),
        "{failed:?}"
    );
    assert!(!format!("{failed:?}").contains("hunter22"), "{failed:?}");
}
