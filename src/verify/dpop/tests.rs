use serde_json::{Map, Value, json};

use super::*;
use crate::sign::SigningKey;

const NOW: i64 = 1_700_000_000;
const URI: &str = "https://api.example.com/orders";
const TOKEN: &[u8] = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

fn expect() -> Expect<'static> {
    Expect {
        method: "GET",
        uri: URI,
        access_token: TOKEN,
        jkt: None,
    }
}

fn proof(key: &SigningKey, extra: Value) -> String {
    let extra: Map<String, Value> = extra.as_object().cloned().unwrap_or_default();
    key.dpop_proof("GET", URI, Some(TOKEN), NOW, "jti-1", &extra)
        .unwrap()
}

fn check(proof: &str) -> Result<Proof, Problem> {
    verify_proof(proof.as_bytes(), &ProofPolicy::default(), &expect(), NOW)
}

fn b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// A proof with this raw header, the default claims, signed by `key`.
fn with_header(key: &SigningKey, header: Value) -> String {
    let claims = json!({"jti": "j", "htm": "GET", "htu": URI, "iat": NOW,
        "ath": access_token_hash(TOKEN)});
    key.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes())
        .unwrap()
}

fn public(key: &SigningKey) -> Value {
    let mut jwk = key.public_jwk();
    jwk.as_object_mut()
        .unwrap()
        .retain(|k, _| !matches!(k.as_str(), "kid" | "alg" | "use"));
    jwk
}

#[test]
fn rfc9449_examples() {
    let text = include_str!("../../../tests/conformance/dpop/rfc9449.json");
    let vectors: Value = serde_json::from_str(text).unwrap();
    let jwk = vectors["jwk"].as_object().unwrap();
    let jkt = vectors["jkt"].as_str().unwrap();
    assert_eq!(
        b64(&thumbprint(jwk).unwrap()),
        jkt,
        "section 6.1 thumbprint"
    );
    for case in vectors["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let token = case["access_token"].as_str().unwrap().as_bytes();
        if let Some(ath) = case["ath"].as_str() {
            assert_eq!(access_token_hash(token), ath, "{name}: ath");
        }
        let expect = Expect {
            method: case["method"].as_str().unwrap(),
            uri: case["uri"].as_str().unwrap(),
            access_token: token,
            jkt: None,
        };
        let got = verify_proof(
            case["proof"].as_str().unwrap().as_bytes(),
            &ProofPolicy::default(),
            &expect,
            case["now"].as_i64().unwrap(),
        );
        match case["expect"].as_str().unwrap() {
            "valid" => {
                let proof = got.unwrap_or_else(|p| panic!("{name}: {p}"));
                assert_eq!(b64(&proof.jkt), jkt, "{name}");
                assert_eq!(proof.alg, Algorithm::ES256);
            }
            problem => assert_eq!(got.map_err(Problem::as_str), Err(problem), "{name}"),
        }
    }
}

#[test]
fn es256_eddsa_rs256_and_ps256_proofs_verify_and_report_their_thumbprint() {
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
    ] {
        let key = SigningKey::generate(alg).unwrap();
        let p = check(&proof(&key, json!({}))).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(b64(&p.jkt), key.thumbprint(), "{alg:?}");
        assert_eq!(&*p.jti, "jti-1");
        assert_eq!(p.iat, NOW);
    }
}

#[test]
fn each_defect_is_its_own_problem() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let other = SigningKey::generate(Algorithm::ES256).unwrap();
    let good = proof(&key, json!({}));
    assert!(check(&good).is_ok());
    let run = |policy: &ProofPolicy, expect: &Expect<'_>, now| {
        verify_proof(good.as_bytes(), policy, expect, now).map(|_| ())
    };
    let policy = ProofPolicy::default();
    // The request.
    let e = Expect {
        method: "POST",
        ..expect()
    };
    assert_eq!(run(&policy, &e, NOW), Err(Problem::Method));
    let e = Expect {
        method: "get",
        ..expect()
    };
    assert_eq!(run(&policy, &e, NOW), Err(Problem::Method));
    let e = Expect {
        uri: "https://api.example.com/orders/1",
        ..expect()
    };
    assert_eq!(run(&policy, &e, NOW), Err(Problem::Uri));
    let e = Expect {
        uri: "https://evil.example.com/orders",
        ..expect()
    };
    assert_eq!(run(&policy, &e, NOW), Err(Problem::Uri));
    let e = Expect {
        access_token: b"another.token.here",
        ..expect()
    };
    assert_eq!(run(&policy, &e, NOW), Err(Problem::AccessTokenHash));
    // Normalised URIs match: case of scheme and host, default port,
    // query and fragment.
    for uri in [
        "HTTPS://API.example.com:443/orders",
        "https://api.example.com/orders?x=1#f",
        "https://api.example.com/%6Frders",
    ] {
        let e = Expect { uri, ..expect() };
        assert_eq!(run(&policy, &e, NOW), Ok(()), "{uri}");
    }
    // Time: the window is max_age + leeway back, leeway ahead.
    assert_eq!(run(&policy, &expect(), NOW + 90), Ok(()));
    assert_eq!(run(&policy, &expect(), NOW + 91), Err(Problem::Stale));
    assert_eq!(run(&policy, &expect(), NOW - 30), Ok(()));
    assert_eq!(run(&policy, &expect(), NOW - 31), Err(Problem::Future));
    // The algorithm allow-list.
    let only_eddsa = ProofPolicy::new([Algorithm::EdDSA].into_iter().collect(), 60, 30);
    assert_eq!(run(&only_eddsa, &expect(), NOW), Err(Problem::Algorithm));
    // Another key's signature over this header.
    let forged = {
        let (input, _) = good.rsplit_once('.').unwrap();
        let sig = other.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&sig))
    };
    assert_eq!(check(&forged).map(|_| ()), Err(Problem::Signature));
}

#[test]
fn header_defects() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let jwk = public(&key);
    let ok = with_header(&key, json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}));
    assert!(check(&ok).is_ok());
    let cases = [
        (
            json!({"typ": "JWT", "alg": "ES256", "jwk": jwk}),
            Problem::Type,
        ),
        (json!({"alg": "ES256", "jwk": jwk}), Problem::Type),
        (
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}),
            Problem::Algorithm,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}),
            Problem::Algorithm,
        ),
        (json!({"typ": "dpop+jwt", "alg": "ES256"}), Problem::Key),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": "x"}),
            Problem::Key,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, "crit": ["exp"]}),
            Problem::Crit,
        ),
        // A key of another type than alg: the ES384 alg on a P-256 key.
        (
            json!({"typ": "dpop+jwt", "alg": "ES384", "jwk": jwk}),
            Problem::Key,
        ),
    ];
    for (header, problem) in cases {
        let p = with_header(&key, header.clone());
        assert_eq!(check(&p).map(|_| ()), Err(problem), "{header}");
    }
    // The private key in the header.
    // (Any `d` member marks a private key; its value is never read.)
    let mut private = jwk.clone();
    private["d"] = json!("ZHVtbXk");
    let p = with_header(
        &key,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
    );
    assert_eq!(check(&p).map(|_| ()), Err(Problem::PrivateKey));
    // An HMAC "proof" whose jwk is the secret: HS never, whatever the key.
    let secret = SigningKey::generate(Algorithm::HS256).unwrap();
    let p = with_header(
        &secret,
        json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.public_jwk()}),
    );
    assert_eq!(check(&p).map(|_| ()), Err(Problem::Algorithm));
    // Duplicate members, anywhere.
    let dup = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":{x},"x":{x},"y":{y}}}}}"#,
        x = jwk["x"],
        y = jwk["y"]
    );
    let claims = json!({"jti": "j", "htm": "GET", "htu": URI, "iat": NOW,
        "ath": access_token_hash(TOKEN)});
    let p = key
        .sign_parts(dup.as_bytes(), claims.to_string().as_bytes())
        .unwrap();
    assert_eq!(check(&p).map(|_| ()), Err(Problem::Malformed));
}

#[test]
fn claim_defects() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public(&key)}).to_string();
    let sign = |claims: Value| {
        key.sign_parts(header.as_bytes(), claims.to_string().as_bytes())
            .unwrap()
    };
    let ath = access_token_hash(TOKEN);
    let good = json!({"jti": "j", "htm": "GET", "htu": URI, "iat": NOW, "ath": ath});
    assert!(check(&sign(good.clone())).is_ok());
    for member in ["jti", "htm", "htu", "iat", "ath"] {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(member);
        assert_eq!(
            check(&sign(c)).map(|_| ()),
            Err(Problem::Claims),
            "no {member}"
        );
        let mut c = good.clone();
        c[member] = json!(["wrong", "type"]);
        assert_eq!(
            check(&sign(c)).map(|_| ()),
            Err(Problem::Claims),
            "{member} array"
        );
    }
    let mut c = good.clone();
    c["jti"] = json!("");
    assert_eq!(check(&sign(c)).map(|_| ()), Err(Problem::Claims));
    let mut c = good.clone();
    c["jti"] = json!("x".repeat(MAX_JTI_BYTES + 1));
    assert_eq!(check(&sign(c)).map(|_| ()), Err(Problem::Claims));
    let mut c = good.clone();
    c["iat"] = json!(1e300);
    assert_eq!(check(&sign(c)).map(|_| ()), Err(Problem::Claims));
    // A nonce is ignored (server nonces are not implemented).
    let mut c = good.clone();
    c["nonce"] = json!("n");
    assert!(check(&sign(c)).is_ok());
}

#[test]
fn garbage_never_panics_and_is_malformed_or_too_large() {
    for bad in ["", ".", "..", "a.b.c", "a.b.c.d", "e30.e30.", "!!!.e30.AA"] {
        assert!(check(bad).is_err(), "{bad:?}");
    }
    let big = "a".repeat(DEFAULT_MAX_PROOF_BYTES + 1);
    assert_eq!(check(&big).map(|_| ()), Err(Problem::TooLarge));
}

#[test]
fn uri_normalisation() {
    let n = |s| normalize_uri(s);
    assert_eq!(
        n("HTTP://A.example:80").as_deref(),
        Some("http://a.example/")
    );
    assert_eq!(
        n("https://a.example:8443/x").as_deref(),
        Some("https://a.example:8443/x")
    );
    assert_eq!(
        n("https://a.example/%7euser%2f").as_deref(),
        Some("https://a.example/~user%2F")
    );
    assert_eq!(
        n("https://a.example/Path"),
        Some("https://a.example/Path".to_owned())
    );
    for bad in [
        "ftp://a/",
        "https://",
        "https://u@a.example/",
        "/relative",
        "https://a/%zz",
        "https://a/é",
    ] {
        assert_eq!(n(bad), None, "{bad}");
    }
}

#[test]
fn problems_map_to_two_reasons() {
    assert_eq!(Problem::Uri.reject(), Reject::DpopMismatch);
    assert_eq!(Problem::Method.reject(), Reject::DpopMismatch);
    assert_eq!(Problem::AccessTokenHash.reject(), Reject::DpopMismatch);
    assert_eq!(Problem::Signature.reject(), Reject::DpopInvalid);
    assert_eq!(Problem::PrivateKey.reject(), Reject::DpopInvalid);
}
