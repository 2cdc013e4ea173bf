//! The binding stage on its own: verified results built by hand, contexts
//! as the fronts fill them. (The same checks through the real daemon and
//! every front: `tests/it/bound.rs`.)

use std::net::IpAddr;
use std::time::Instant;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::*;
use crate::request::{ClientCert, Front};
use crate::sign::SigningKey;
use crate::verify::{Algorithm, Anomalies, Claims, Confirmation, KeyFingerprint};

const NOW: i64 = 1_700_000_000;
const TOKEN: &[u8] = b"access.token.here";
const URI: &str = "https://api.example.com/orders";

fn verified(cnf: Option<Confirmation>, claims: Value) -> Verified {
    Verified {
        claims: Claims {
            iss: claims["iss"].as_str().map(Box::from),
            sub: None,
            jti: None,
            exp: None,
            nbf: None,
            iat: None,
            cnf: cnf.map(Box::new),
            raw: claims.to_string().into(),
        },
        alg: Some(Algorithm::ES256),
        kid: None,
        key: KeyFingerprint([0; 32]),
        anomalies: Anomalies::NONE,
    }
}

fn jkt_of(key: &SigningKey) -> [u8; 32] {
    crate::verify::B64URL
        .decode(key.thumbprint())
        .unwrap()
        .try_into()
        .unwrap()
}

fn bound_to(key: &SigningKey) -> Verified {
    verified(
        Some(Confirmation {
            jkt: Some(jkt_of(key)),
            x5t_s256: None,
            other: false,
        }),
        json!({}),
    )
}

fn proof(key: &SigningKey, jti: &str) -> String {
    key.dpop_proof("GET", URI, Some(TOKEN), NOW, jti, &Map::new())
        .unwrap()
}

/// A proxy-front context for `GET https://api.example.com/orders`.
fn ctx<'a>(scheme: TokenScheme, proof: Option<&'a str>) -> Context<'a> {
    Context {
        method: Some("GET"),
        scheme: Some("https"),
        authority: Some("api.example.com"),
        path: Some("/orders"),
        token_scheme: scheme,
        dpop_proof: proof.map(str::as_bytes),
        ..Context::new(Front::Http, Instant::now(), NOW)
    }
}

fn binder(mode: DpopMode, config: BindConfig) -> Binder {
    Binder::new(
        vec![IssuerBinding {
            dpop: mode,
            proof: ProofPolicy::default(),
        }],
        config,
    )
}

#[test]
fn a_plain_bearer_request_has_nothing_to_bind() {
    let b = binder(DpopMode::Allowed, BindConfig::default());
    let plain = verified(None, json!({}));
    assert!(!b.applies(&plain, &ctx(TokenScheme::Bearer, None)));
    assert!(b.applies(&plain, &ctx(TokenScheme::Dpop, None)));
    // Required, or a rule: every request.
    assert!(
        binder(DpopMode::Required, BindConfig::default())
            .applies(&plain, &ctx(TokenScheme::Bearer, None))
    );
}

#[test]
fn dpop_modes() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let bound = bound_to(&key);
    let plain = verified(None, json!({}));
    let p = proof(&key, "a");
    let run = |mode, result: &Verified, ctx: &Context<'_>| {
        binder(mode, BindConfig::default()).check(0, result, TOKEN, ctx, false)
    };
    let dpop = ctx(TokenScheme::Dpop, Some(&p));
    let bearer = ctx(TokenScheme::Bearer, None);
    assert_eq!(run(DpopMode::Allowed, &bound, &dpop), Ok(Bound::Pass));
    assert_eq!(run(DpopMode::Required, &bound, &dpop), Ok(Bound::Pass));
    assert_eq!(run(DpopMode::Off, &bound, &dpop), Err(Reject::DpopInvalid));
    for mode in [DpopMode::Off, DpopMode::Allowed, DpopMode::Required] {
        assert_eq!(
            run(mode, &bound, &bearer),
            Err(Reject::BearerDowngrade),
            "{mode:?}"
        );
    }
    assert_eq!(run(DpopMode::Allowed, &plain, &bearer), Ok(Bound::Pass));
    assert_eq!(
        run(DpopMode::Required, &plain, &bearer),
        Err(Reject::BearerDowngrade)
    );
    assert_eq!(
        run(DpopMode::Allowed, &plain, &dpop),
        Err(Reject::DpopMismatch)
    );
    // DPoP without a proof.
    assert_eq!(
        run(DpopMode::Allowed, &bound, &ctx(TokenScheme::Dpop, None)),
        Err(Reject::DpopInvalid)
    );
    // Without a known URI the proof cannot match.
    let unknown = Context {
        authority: None,
        ..ctx(TokenScheme::Dpop, Some(&p))
    };
    assert_eq!(
        run(DpopMode::Allowed, &bound, &unknown),
        Err(Reject::DpopMismatch)
    );
}

#[test]
fn public_origin_overrides_what_the_proxy_reports() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let p = proof(&key, "a");
    let wrong_host = Context {
        authority: Some("internal:8080"),
        scheme: Some("http"),
        ..ctx(TokenScheme::Dpop, Some(&p))
    };
    let plain = binder(DpopMode::Allowed, BindConfig::default());
    assert_eq!(
        plain.check(0, &bound_to(&key), TOKEN, &wrong_host, false),
        Err(Reject::DpopMismatch)
    );
    let with_origin = binder(
        DpopMode::Allowed,
        BindConfig {
            public_origin: Some("https://api.example.com/".into()),
            ..BindConfig::default()
        },
    );
    assert_eq!(
        with_origin.check(0, &bound_to(&key), TOKEN, &wrong_host, false),
        Ok(Bound::Pass)
    );
}

#[test]
fn replays_are_caught_here_and_claimed_in_a_shared_store() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let b = binder(DpopMode::Allowed, BindConfig::default());
    let p = proof(&key, "once");
    let c = ctx(TokenScheme::Dpop, Some(&p));
    let bound = bound_to(&key);
    match b.check(0, &bound, TOKEN, &c, true) {
        Ok(Bound::Claim(claim)) => {
            assert_eq!(claim.jkt, jkt_of(&key));
            assert_eq!(&*claim.jti, "once");
            // iat + 60 s + 30 s of leeway, from now.
            assert_eq!(claim.ttl, 90);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.check(0, &bound, TOKEN, &c, true), Err(Reject::DpopReplay));
    assert_eq!(b.replay_entries(), 1);
    // A refused proof is not recorded.
    let other = proof(&key, "other");
    let wrong = Context {
        method: Some("POST"),
        ..ctx(TokenScheme::Dpop, Some(&other))
    };
    assert_eq!(
        b.check(0, &bound, TOKEN, &wrong, false),
        Err(Reject::DpopMismatch)
    );
    assert_eq!(b.replay_entries(), 1);
    // A full cache: undecided, never a forgotten proof.
    let tiny = binder(
        DpopMode::Allowed,
        BindConfig {
            replay_entries: 1,
            ..BindConfig::default()
        },
    );
    let mut full = false;
    for i in 0..64 {
        let p = proof(&key, &i.to_string());
        if tiny.check(0, &bound, TOKEN, &ctx(TokenScheme::Dpop, Some(&p)), false) == Ok(Bound::Full)
        {
            full = true;
            break;
        }
    }
    assert!(
        full,
        "one entry per shard: a second proof in one shard finds it full"
    );
}

#[test]
fn certificate_bound_tokens_and_unknown_confirmation_methods() {
    let digest = [7u8; 32];
    let bound = verified(
        Some(Confirmation {
            jkt: None,
            x5t_s256: Some(digest),
            other: false,
        }),
        json!({}),
    );
    let b = binder(DpopMode::Off, BindConfig::default());
    let with = |cert| Context {
        client_cert: cert,
        ..ctx(TokenScheme::Bearer, None)
    };
    assert_eq!(
        b.check(
            0,
            &bound,
            TOKEN,
            &with(Some(ClientCert::Sha256(digest))),
            false
        ),
        Ok(Bound::Pass)
    );
    assert_eq!(
        b.check(
            0,
            &bound,
            TOKEN,
            &with(Some(ClientCert::Sha256([8; 32]))),
            false
        ),
        Err(Reject::CnfMismatch)
    );
    assert_eq!(
        b.check(0, &bound, TOKEN, &with(None), false),
        Err(Reject::CnfMismatch)
    );
    assert_eq!(
        b.check(
            0,
            &bound,
            TOKEN,
            &with(Some(ClientCert::Xfcc("Hash=zz"))),
            false
        ),
        Err(Reject::CnfMismatch)
    );
    let unknown = verified(
        Some(Confirmation {
            jkt: None,
            x5t_s256: None,
            other: true,
        }),
        json!({}),
    );
    assert_eq!(
        b.check(0, &unknown, TOKEN, &with(None), false),
        Err(Reject::CnfMismatch)
    );
}

#[test]
fn rules_apply_by_issuer_path_and_what_the_front_reports() {
    let rules = vec![Rule {
        claim: "ip".into(),
        source: Source::ClientIp,
        issuer: Some("https://a".into()),
        prefix: Some("/api/".into()),
        if_missing: Missing::Refuse,
    }];
    let b = binder(
        DpopMode::Off,
        BindConfig {
            rules,
            ..BindConfig::default()
        },
    );
    let token = |iss: &str, ip: Value| verified(None, json!({"iss": iss, "ip": ip}));
    let at = |path: &'static str, ip: &str| Context {
        path: Some(path),
        client: Some(ip.parse::<IpAddr>().unwrap()),
        ..ctx(TokenScheme::Bearer, None)
    };
    let ok = token("https://a", json!("10.0.0.0/8"));
    assert_eq!(
        b.check(0, &ok, TOKEN, &at("/api/x", "10.1.1.1"), false),
        Ok(Bound::Pass)
    );
    assert_eq!(
        b.check(0, &ok, TOKEN, &at("/api/x", "11.1.1.1"), false),
        Err(Reject::BindingMismatch)
    );
    // Case-folded prefix: a wider reading can only add the rule.
    assert_eq!(
        b.check(0, &ok, TOKEN, &at("/API/x", "11.1.1.1"), false),
        Err(Reject::BindingMismatch)
    );
    // Outside the prefix, or another issuer: the rule does not apply.
    assert_eq!(
        b.check(0, &ok, TOKEN, &at("/web", "11.1.1.1"), false),
        Ok(Bound::Pass)
    );
    let other = token("https://b", json!("10.0.0.0/8"));
    assert_eq!(
        b.check(0, &other, TOKEN, &at("/api/x", "11.1.1.1"), false),
        Ok(Bound::Pass)
    );
    // Missing claim: refused by default.
    let missing = verified(None, json!({"iss": "https://a"}));
    assert_eq!(
        b.check(0, &missing, TOKEN, &at("/api/x", "10.1.1.1"), false),
        Err(Reject::BindingMismatch)
    );
    // A proxy front that could not say who the client is fails the rule.
    let unknown = Context {
        client: None,
        ..at("/api/x", "10.1.1.1")
    };
    assert_eq!(
        b.check(0, &ok, TOKEN, &unknown, false),
        Err(Reject::BindingMismatch)
    );
}

#[test]
fn the_stage_never_panics_on_hostile_proofs() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let bound = bound_to(&key);
    let b = binder(DpopMode::Allowed, BindConfig::default());
    let p = proof(&key, "x");
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"..".to_vec(),
        vec![0xff; 100],
        p.as_bytes().to_vec(),
    ];
    for cut in (0..p.len()).step_by(7) {
        cases.push(p.as_bytes()[..cut].to_vec());
    }
    for case in cases {
        let c = Context {
            dpop_proof: Some(&case),
            ..ctx(TokenScheme::Dpop, None)
        };
        // Never Ok: a cut or garbage proof is always refused.
        assert!(b.check(0, &bound, TOKEN, &c, false).is_err() || case == p.as_bytes());
    }
}
