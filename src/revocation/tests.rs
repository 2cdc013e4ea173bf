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

fn token(
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
            raw: bytes::Bytes::new(),
        },
        alg: Algorithm::ES256,
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

#[test]
fn revoke_requests_parse_or_are_refused() {
    assert_eq!(
        parse_revoke(br#"{"jti":"t1","exp":99,"iss":"i"}"#, 5),
        Some((
            Some("i".to_owned()),
            Revoke::Jti {
                jti: "t1".to_owned(),
                exp: 99
            }
        ))
    );
    assert_eq!(
        parse_revoke(br#"{"sub":"alice"}"#, 5),
        Some((
            None,
            Revoke::Subject {
                sub: "alice".to_owned(),
                before: 5
            }
        ))
    );
    for bad in [
        // Mistyped or misspelt members never widen a jti into a subject.
        &br#"{"jti":5,"sub":"alice"}"#[..],
        br#"{"jti":null,"sub":"alice"}"#,
        br#"{"sub":"alice","exp":123}"#,
        br#"{"sub":"alice","befor":5}"#,
        br#"{"jti":"t1"}"#,
        br#"{"jti":"t1","sub":"a","exp":1}"#,
        br#"{"sub":""}"#,
        br#"{"sub":"a","before":"soon"}"#,
        br#"{"sub":"a","iss":7}"#,
        br#"["sub"]"#,
        b"not json",
    ] {
        assert_eq!(
            parse_revoke(bad, 5),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
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
        assert!(matches!(written, Err(RevokeError::Store(_))), "{written:?}");
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
