//! Unit tests of the core: claim checks, `typ` matching, policy validation,
//! and what a [`Verified`] carries.

use super::*;

use serde_json::{Map, Value, json};

use super::B64URL;
use crate::sign::SigningKey;

const NOW: i64 = 1_000_000;

/// A policy with nothing required, 30 s leeway, no issuer/audience/lifetime.
fn open() -> Policy {
    Policy {
        required: Vec::new(),
        ..Policy::default()
    }
}

fn boxed(list: &[&str]) -> Vec<Box<str>> {
    list.iter().map(|s| Box::from(*s)).collect()
}

/// Runs the claim checks on a payload written as JSON text.
fn check(payload: &str, policy: &Policy, now: i64) -> Result<(), Reject> {
    let p = json::parse_payload(payload.as_bytes(), policy.max_json_depth, &policy.required)
        .unwrap_or_else(|e| panic!("test payload {payload} does not parse: {e}"));
    check_claims(&p, policy, now).map(|_| ())
}

/// Runs a table of `(payload, expected)` rows under one policy, reporting
/// every wrong row at once.
fn table(policy: &Policy, now: i64, rows: &[(&str, Result<(), Reject>)]) {
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|(payload, want)| {
            let got = check(payload, policy, now);
            (got != *want).then(|| format!("{payload}: expected {want:?}, got {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "policy {policy:?}:\n{}", wrong.join("\n"));
}

fn keyed(alg: Algorithm, kid: Option<&str>) -> (SigningKey, KeySet) {
    let key = SigningKey::generate(alg)
        .expect("generate")
        .with_kid(kid.map(str::to_owned));
    let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
    let set = KeySet::from_jwks(jwks.as_bytes()).expect("own key loads");
    (key, set)
}

// ---------------------------------------------------------------- required

#[test]
fn default_policy_requires_exp() {
    assert_eq!(Policy::default().required, boxed(&["exp"]));
    table(
        &Policy::default(),
        NOW,
        &[
            ("{}", Err(Reject::MissingClaim)),
            (r#"{"sub":"alice","iat":1}"#, Err(Reject::MissingClaim)),
            (r#"{"exp":2000000}"#, Ok(())),
        ],
    );
}

#[test]
fn custom_required_claims_must_all_be_present_whatever_their_type() {
    let policy = Policy {
        required: boxed(&["tenant", "scope"]),
        ..Policy::default()
    };
    table(
        &policy,
        NOW,
        &[
            ("{}", Err(Reject::MissingClaim)),
            (r#"{"tenant":"t"}"#, Err(Reject::MissingClaim)),
            (r#"{"scope":"s"}"#, Err(Reject::MissingClaim)),
            (r#"{"tenant":"t","scope":"s"}"#, Ok(())),
            // Presence is what counts; a custom claim has no required type.
            (r#"{"tenant":null,"scope":[1,2]}"#, Ok(())),
            // exp is not required any more once the list is replaced.
            (r#"{"scope":"s","tenant":{"id":1}}"#, Ok(())),
        ],
    );
}

#[test]
fn required_claims_are_looked_up_at_the_top_level_only() {
    let policy = Policy {
        required: boxed(&["tenant"]),
        ..Policy::default()
    };
    table(
        &policy,
        NOW,
        &[
            (r#"{"ctx":{"tenant":"t"}}"#, Err(Reject::MissingClaim)),
            (r#"{"ctx":[{"tenant":"t"}]}"#, Err(Reject::MissingClaim)),
            (r#"{"Tenant":"t"}"#, Err(Reject::MissingClaim)),
            (r#"{"tenant":"t"}"#, Ok(())),
        ],
    );
}

#[test]
fn empty_required_list_accepts_an_empty_payload() {
    table(&open(), NOW, &[("{}", Ok(()))]);
}

#[test]
fn sixty_four_required_claims_are_all_tracked() {
    let names: Vec<String> = (0..MAX_REQUIRED_CLAIMS).map(|i| format!("c{i}")).collect();
    let policy = Policy {
        required: names.iter().map(|n| Box::from(n.as_str())).collect(),
        ..Policy::default()
    };
    assert!(policy.problems().is_empty());
    let all: Map<String, Value> = names.iter().map(|n| (n.clone(), json!(1))).collect();
    let mut all_but_last = all.clone();
    all_but_last.remove("c63");
    let all = Value::Object(all).to_string();
    let all_but_last = Value::Object(all_but_last).to_string();
    table(
        &policy,
        NOW,
        &[(&all, Ok(())), (&all_but_last, Err(Reject::MissingClaim))],
    );
}

#[test]
fn duplicate_required_claim_names_are_satisfied_by_one_occurrence() {
    // `jwtd check --require exp,exp` (or a config repeating a name) sets up
    // required = ["exp", "exp"]; parse_payload only sets the bit of the
    // first matching position, so required_seen is 0b01, never 0b11, and
    // every token is rejected as missing_claim.
    let policy = Policy {
        required: boxed(&["exp", "exp"]),
        ..Policy::default()
    };
    table(&policy, NOW, &[(r#"{"exp":2000000}"#, Ok(()))]);
}

#[test]
fn registered_claims_of_the_wrong_type_are_claim_type_errors() {
    table(
        &open(),
        NOW,
        &[
            (r#"{"iss":true}"#, Err(Reject::ClaimType)),
            (r#"{"sub":1}"#, Err(Reject::ClaimType)),
            (r#"{"jti":["a"]}"#, Err(Reject::ClaimType)),
            (r#"{"aud":{"a":1}}"#, Err(Reject::ClaimType)),
            (r#"{"aud":["a",1]}"#, Err(Reject::ClaimType)),
            (r#"{"exp":"2000000"}"#, Err(Reject::ClaimType)),
            (r#"{"nbf":null}"#, Err(Reject::ClaimType)),
            (r#"{"iat":false}"#, Err(Reject::ClaimType)),
            // A required claim of the wrong type is a type error, not missing.
            (r#"{"exp":"soon"}"#, Err(Reject::ClaimType)),
        ],
    );
    table(
        &Policy::default(),
        NOW,
        &[(r#"{"exp":"soon"}"#, Err(Reject::ClaimType))],
    );
}

// ------------------------------------------------------------------ issuer

#[test]
fn issuer_must_match_exactly_when_configured() {
    let policy = Policy {
        issuer: Some("https://issuer.example".into()),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (r#"{"iss":"https://issuer.example"}"#, Ok(())),
            (r#"{"iss":"https://other.example"}"#, Err(Reject::Issuer)),
            (r#"{"iss":"https://issuer.example/"}"#, Err(Reject::Issuer)),
            (r#"{"iss":"HTTPS://ISSUER.EXAMPLE"}"#, Err(Reject::Issuer)),
            (r#"{"iss":""}"#, Err(Reject::Issuer)),
            (r#"{}"#, Err(Reject::MissingClaim)),
            (r#"{"iss":7}"#, Err(Reject::ClaimType)),
        ],
    );
}

#[test]
fn issuer_is_not_checked_when_not_configured() {
    table(
        &open(),
        NOW,
        &[
            (r#"{"iss":"https://anyone.example"}"#, Ok(())),
            ("{}", Ok(())),
        ],
    );
}

// --------------------------------------------------------------- audiences

#[test]
fn audience_string_or_array_must_contain_a_configured_audience() {
    let policy = Policy {
        audiences: boxed(&["api"]),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (r#"{"aud":"api"}"#, Ok(())),
            (r#"{"aud":["api"]}"#, Ok(())),
            (r#"{"aud":["web","api"]}"#, Ok(())),
            (r#"{"aud":"web"}"#, Err(Reject::Audience)),
            (r#"{"aud":["web","mobile"]}"#, Err(Reject::Audience)),
            (r#"{"aud":"API"}"#, Err(Reject::Audience)),
            (r#"{"aud":"api "}"#, Err(Reject::Audience)),
            (r#"{"aud":[]}"#, Err(Reject::Audience)),
            (r#"{}"#, Err(Reject::MissingClaim)),
            (r#"{"aud":["api",1]}"#, Err(Reject::ClaimType)),
            (r#"{"aud":null}"#, Err(Reject::ClaimType)),
        ],
    );
}

#[test]
fn any_of_several_configured_audiences_is_accepted() {
    let policy = Policy {
        audiences: boxed(&["a", "b"]),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (r#"{"aud":"a"}"#, Ok(())),
            (r#"{"aud":"b"}"#, Ok(())),
            (r#"{"aud":["c","b"]}"#, Ok(())),
            (r#"{"aud":"c"}"#, Err(Reject::Audience)),
            (r#"{"aud":["c","d"]}"#, Err(Reject::Audience)),
        ],
    );
}

#[test]
fn audience_is_not_checked_when_none_configured() {
    table(
        &open(),
        NOW,
        &[
            (r#"{"aud":"anything"}"#, Ok(())),
            (r#"{"aud":[]}"#, Ok(())),
            ("{}", Ok(())),
        ],
    );
}

// ------------------------------------------------------------------- times

#[test]
fn exp_is_expired_from_exp_plus_leeway_on() {
    // now >= exp + leeway is expired.
    table(
        &open(),
        NOW,
        &[
            (&format!(r#"{{"exp":{}}}"#, NOW - 29), Ok(())),
            (&format!(r#"{{"exp":{}}}"#, NOW - 30), Err(Reject::Expired)),
            (
                &format!(r#"{{"exp":{}}}"#, NOW - 3600),
                Err(Reject::Expired),
            ),
            (&format!(r#"{{"exp":{}}}"#, NOW + 3600), Ok(())),
            // Fractions round down: never extend validity.
            (
                &format!(r#"{{"exp":{}.9}}"#, NOW - 30),
                Err(Reject::Expired),
            ),
            (&format!(r#"{{"exp":{}.0}}"#, NOW - 29), Ok(())),
            (&format!(r#"{{"exp":{MAX_NUMERIC_DATE}}}"#), Ok(())),
            (r#"{"exp":0}"#, Err(Reject::Expired)),
            // Out of range: no date at all, whatever it would compare to.
            (r#"{"exp":9223372036854775807}"#, Err(Reject::ClaimType)),
            (r#"{"exp":1e300}"#, Err(Reject::ClaimType)),
            (r#"{"exp":-1}"#, Err(Reject::ClaimType)),
        ],
    );
}

#[test]
fn exp_without_leeway_expires_at_exp() {
    let policy = Policy {
        leeway: 0,
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (&format!(r#"{{"exp":{}}}"#, NOW + 1), Ok(())),
            (&format!(r#"{{"exp":{}}}"#, NOW), Err(Reject::Expired)),
        ],
    );
}

#[test]
fn nbf_is_valid_from_nbf_minus_leeway_on() {
    // now + leeway < nbf is not yet valid.
    table(
        &open(),
        NOW,
        &[
            (&format!(r#"{{"nbf":{}}}"#, NOW + 30), Ok(())),
            (
                &format!(r#"{{"nbf":{}}}"#, NOW + 31),
                Err(Reject::NotYetValid),
            ),
            (&format!(r#"{{"nbf":{}}}"#, NOW - 1000), Ok(())),
            // Fractions round up: never advance validity.
            (&format!(r#"{{"nbf":{}.1}}"#, NOW + 29), Ok(())),
            (
                &format!(r#"{{"nbf":{}.1}}"#, NOW + 30),
                Err(Reject::NotYetValid),
            ),
            (
                &format!(r#"{{"nbf":{MAX_NUMERIC_DATE}}}"#),
                Err(Reject::NotYetValid),
            ),
            (r#"{"nbf":9223372036854775807}"#, Err(Reject::ClaimType)),
            (r#"{"nbf":18446744073709551615}"#, Err(Reject::ClaimType)),
        ],
    );
    let strict = Policy {
        leeway: 0,
        ..open()
    };
    table(
        &strict,
        NOW,
        &[
            (&format!(r#"{{"nbf":{NOW}}}"#), Ok(())),
            (
                &format!(r#"{{"nbf":{}}}"#, NOW + 1),
                Err(Reject::NotYetValid),
            ),
        ],
    );
}

#[test]
fn iat_later_than_now_plus_leeway_is_issued_in_future() {
    table(
        &open(),
        NOW,
        &[
            (&format!(r#"{{"iat":{}}}"#, NOW + 30), Ok(())),
            (
                &format!(r#"{{"iat":{}}}"#, NOW + 31),
                Err(Reject::IssuedInFuture),
            ),
            (&format!(r#"{{"iat":{}}}"#, NOW - 86_400), Ok(())),
            (
                &format!(r#"{{"iat":{}.5}}"#, NOW + 30),
                Err(Reject::IssuedInFuture),
            ),
        ],
    );
    let strict = Policy {
        leeway: 0,
        ..open()
    };
    table(
        &strict,
        NOW,
        &[
            (&format!(r#"{{"iat":{NOW}}}"#), Ok(())),
            (
                &format!(r#"{{"iat":{}}}"#, NOW + 1),
                Err(Reject::IssuedInFuture),
            ),
        ],
    );
}

#[test]
fn larger_leeway_widens_every_time_window() {
    let policy = Policy {
        leeway: MAX_LEEWAY_SECS,
        ..open()
    };
    let lw = MAX_LEEWAY_SECS as i64;
    table(
        &policy,
        NOW,
        &[
            (&format!(r#"{{"exp":{}}}"#, NOW - lw + 1), Ok(())),
            (&format!(r#"{{"exp":{}}}"#, NOW - lw), Err(Reject::Expired)),
            (&format!(r#"{{"nbf":{}}}"#, NOW + lw), Ok(())),
            (
                &format!(r#"{{"nbf":{}}}"#, NOW + lw + 1),
                Err(Reject::NotYetValid),
            ),
            (&format!(r#"{{"iat":{}}}"#, NOW + lw), Ok(())),
            (
                &format!(r#"{{"iat":{}}}"#, NOW + lw + 1),
                Err(Reject::IssuedInFuture),
            ),
        ],
    );
}

#[test]
fn time_checks_saturate_at_the_extremes() {
    // The clock, not the token, at the ends of i64: nothing overflows.
    table(
        &open(),
        i64::MAX,
        &[
            (
                &format!(r#"{{"exp":{MAX_NUMERIC_DATE}}}"#),
                Err(Reject::Expired),
            ),
            (&format!(r#"{{"nbf":{MAX_NUMERIC_DATE}}}"#), Ok(())),
        ],
    );
    table(
        &open(),
        i64::MIN,
        &[
            (r#"{"exp":0}"#, Ok(())),
            (r#"{"iat":0}"#, Err(Reject::IssuedInFuture)),
        ],
    );
}

#[test]
fn numeric_dates_outside_1970_to_9999_are_claim_type() {
    let out = [
        "-1",
        "-0.5",
        "-9223372036854775808",
        "-1e300",
        "253402300800",
        "253402300799.5",
        "9223372036854775807",
        "18446744073709551615",
        "1e300",
        "1.7976931348623157e308",
    ];
    let inside = ["0", "0.0", "-0.0", "1", "253402300799", "253402300798.5"];
    for claim in ["exp", "nbf", "iat"] {
        let mut rows: Vec<(String, Result<(), Reject>)> = Vec::new();
        for value in out {
            rows.push((format!(r#"{{"{claim}":{value}}}"#), Err(Reject::ClaimType)));
        }
        // In range: judged as a time (at a `now` where every one of them
        // passes its own check).
        let now = match claim {
            "exp" => -1_000,
            _ => MAX_NUMERIC_DATE,
        };
        for value in inside {
            rows.push((format!(r#"{{"{claim}":{value}}}"#), Ok(())));
        }
        let rows: Vec<(&str, Result<(), Reject>)> =
            rows.iter().map(|(p, r)| (p.as_str(), *r)).collect();
        table(&open(), now, &rows);
        // Out of range is a type problem, reported before a missing claim.
        let policy = Policy {
            required: boxed(&["tenant"]),
            ..open()
        };
        let payload = format!(r#"{{"{claim}":-1}}"#);
        table(&policy, NOW, &[(&payload, Err(Reject::ClaimType))]);
    }
}

#[test]
fn check_claims_returns_the_rounded_dates() {
    let p = json::parse_payload(br#"{"exp":2000.9,"nbf":1000.1,"iat":999.5}"#, 16, &[])
        .expect("parses");
    let t = check_claims(&p, &open(), 1500).expect("valid");
    assert_eq!((t.exp, t.nbf, t.iat), (Some(2000), Some(1001), Some(1000)));
    let p = json::parse_payload(b"{}", 16, &[]).expect("parses");
    let t = check_claims(&p, &open(), 1500).expect("valid");
    assert_eq!((t.exp, t.nbf, t.iat), (None, None, None));
}

// ------------------------------------------------------------ max lifetime

#[test]
fn max_lifetime_bounds_exp_minus_iat() {
    let policy = Policy {
        max_lifetime: Some(3600),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (&format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 3600), Ok(())),
            (
                &format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 3601),
                Err(Reject::LifetimeTooLong),
            ),
            // Issued earlier: the whole lifetime counts, not what remains.
            (
                &format!(r#"{{"iat":{},"exp":{}}}"#, NOW - 3000, NOW + 1000),
                Err(Reject::LifetimeTooLong),
            ),
            (
                &format!(r#"{{"iat":{},"exp":{}}}"#, NOW - 3000, NOW + 600),
                Ok(()),
            ),
        ],
    );
}

#[test]
fn max_lifetime_without_iat_judges_the_remaining_lifetime() {
    let policy = Policy {
        max_lifetime: Some(3600),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (&format!(r#"{{"exp":{}}}"#, NOW + 3600), Ok(())),
            (
                &format!(r#"{{"exp":{}}}"#, NOW + 3601),
                Err(Reject::LifetimeTooLong),
            ),
        ],
    );
}

#[test]
fn max_lifetime_rejects_a_token_that_never_expires() {
    let policy = Policy {
        max_lifetime: Some(3600),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (&format!(r#"{{"iat":{NOW}}}"#), Err(Reject::LifetimeTooLong)),
            ("{}", Err(Reject::LifetimeTooLong)),
        ],
    );
}

#[test]
fn no_max_lifetime_means_any_lifetime() {
    table(
        &open(),
        NOW,
        &[
            (&format!(r#"{{"iat":0,"exp":{MAX_NUMERIC_DATE}}}"#), Ok(())),
            (&format!(r#"{{"iat":{NOW}}}"#), Ok(())),
        ],
    );
}

#[test]
fn expired_is_reported_before_lifetime_issuer_and_audience() {
    let policy = Policy {
        issuer: Some("i".into()),
        audiences: boxed(&["a"]),
        max_lifetime: Some(1),
        ..open()
    };
    table(
        &policy,
        NOW,
        &[
            (
                r#"{"iss":"x","aud":"y","iat":0,"exp":10}"#,
                Err(Reject::Expired),
            ),
            (
                &format!(r#"{{"iss":"x","aud":"y","iat":{NOW},"exp":{}}}"#, NOW + 10),
                Err(Reject::LifetimeTooLong),
            ),
            (
                &format!(r#"{{"iss":"x","aud":"y","iat":{NOW},"exp":{}}}"#, NOW + 1),
                Err(Reject::Issuer),
            ),
            (
                &format!(r#"{{"iss":"i","aud":"y","iat":{NOW},"exp":{}}}"#, NOW + 1),
                Err(Reject::Audience),
            ),
        ],
    );
}

// --------------------------------------------------------------------- typ

#[test]
fn typ_matches_case_insensitively_with_optional_application_prefix() {
    let rows = [
        ("JWT", "JWT", true),
        ("jwt", "JWT", true),
        ("JwT", "jwt", true),
        ("at+jwt", "at+jwt", true),
        ("AT+JWT", "at+jwt", true),
        ("application/at+jwt", "at+jwt", true),
        ("at+jwt", "application/at+jwt", true),
        ("APPLICATION/AT+JWT", "at+jwt", true),
        ("Application/jwt", "application/JWT", true),
        // Not a prefix or suffix match.
        ("jwt", "at+jwt", false),
        ("at+jwt", "jwt", false),
        ("JWT", "JWTX", false),
        ("", "JWT", false),
        ("application/", "JWT", false),
        ("application/jwt", "at+jwt", false),
        // The prefix is exactly "application/", nothing else.
        ("text/jwt", "jwt", false),
        ("applicationjwt", "jwt", false),
        ("application/application/jwt", "jwt", false),
        // Multi-byte text near the prefix boundary must not panic.
        ("applicatioñ/jwt", "jwt", false),
        ("ééééééé", "jwt", false),
    ];
    let wrong: Vec<_> = rows
        .iter()
        .filter(|(got, want, m)| typ_matches(got, want) != *m)
        .collect();
    assert!(wrong.is_empty(), "wrong typ_matches rows: {wrong:?}");
}

// ---------------------------------------------------------------- problems

#[test]
fn default_policy_has_no_problems() {
    assert_eq!(Policy::default().problems(), Vec::<String>::new());
}

#[test]
fn policy_problems_reports_every_problem_at_once() {
    let policy = Policy {
        algorithms: AlgSet::EMPTY,
        issuer: Some("".into()),
        audiences: boxed(&["ok", ""]),
        leeway: MAX_LEEWAY_SECS + 1,
        required: vec![Box::from(""); MAX_REQUIRED_CLAIMS + 1],
        max_lifetime: None,
        typ: Some("".into()),
        max_token_bytes: 10,
        max_json_depth: 1,
        max_kidless_keys: MAX_KIDLESS_KEYS + 1,
    };
    let problems = policy.problems();
    let expected = [
        "algorithms: the allow-list is empty",
        "leeway: 301 s exceeds the maximum of 300 s",
        "required claims: 65 listed, at most 64",
        "required claims: empty claim name",
        "issuer: empty string",
        "audience: empty string",
        "typ: empty string",
        "max token size: 10 bytes is outside 64 B ..= 1 MiB",
        "max JSON depth: 1 is outside 2 ..= 64",
        "max_kidless_keys: 1025 is above the maximum of 1024",
    ];
    assert_eq!(problems, expected, "one message per problem, in order");
}

#[test]
fn each_policy_field_is_validated_on_its_own() {
    type Edit = fn(&mut Policy);
    let rows: [(&str, Edit, &str); 9] = [
        (
            "empty allow-list",
            |p| p.algorithms = AlgSet::EMPTY,
            "algorithms",
        ),
        ("leeway 301", |p| p.leeway = 301, "leeway"),
        (
            "65 required",
            |p| p.required = (0..65).map(|i| format!("c{i}").into()).collect(),
            "required claims",
        ),
        (
            "empty required name",
            |p| p.required = boxed(&["exp", ""]),
            "empty claim name",
        ),
        ("empty issuer", |p| p.issuer = Some("".into()), "issuer"),
        ("empty audience", |p| p.audiences = boxed(&[""]), "audience"),
        ("empty typ", |p| p.typ = Some("".into()), "typ"),
        (
            "token size 63",
            |p| p.max_token_bytes = 63,
            "max token size",
        ),
        ("depth 65", |p| p.max_json_depth = 65, "max JSON depth"),
    ];
    for (what, edit, needle) in rows {
        let mut policy = Policy::default();
        edit(&mut policy);
        let problems = policy.problems();
        assert_eq!(problems.len(), 1, "{what}: {problems:?}");
        assert!(problems[0].contains(needle), "{what}: {problems:?}");
    }
}

#[test]
fn policy_bounds_are_inclusive() {
    type Edit = fn(&mut Policy);
    let fine: [(&str, Edit); 8] = [
        ("leeway 300", |p| p.leeway = MAX_LEEWAY_SECS),
        ("leeway 0", |p| p.leeway = 0),
        ("token size 64", |p| p.max_token_bytes = 64),
        ("token size 1 MiB", |p| p.max_token_bytes = 1024 * 1024),
        ("depth 2", |p| p.max_json_depth = 2),
        ("depth 64", |p| p.max_json_depth = 64),
        ("no required claims", |p| p.required.clear()),
        ("one algorithm", |p| {
            p.algorithms = [Algorithm::EdDSA].into_iter().collect()
        }),
    ];
    for (what, edit) in fine {
        let mut policy = Policy::default();
        edit(&mut policy);
        assert_eq!(policy.problems(), Vec::<String>::new(), "{what}");
    }
    type Bad = fn(&mut Policy);
    let bad: [(&str, Bad); 2] = [
        ("token size 1 MiB + 1", |p| {
            p.max_token_bytes = 1024 * 1024 + 1
        }),
        ("depth 1", |p| p.max_json_depth = 1),
    ];
    for (what, edit) in bad {
        let mut policy = Policy::default();
        edit(&mut policy);
        assert_eq!(policy.problems().len(), 1, "{what}");
    }
}

// ---------------------------------------------------------------- verified

#[test]
fn verified_carries_claims_alg_and_kid() {
    let (key, keys) = keyed(Algorithm::ES256, Some("k1"));
    let payload = br#"{ "iss":"https://issuer.example", "sub":"alice", "jti":"j-1",
        "exp":2000000000.75, "nbf":1000.25, "iat":999.5, "scope":"a b" }"#;
    let header = br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
    let token = key.sign_parts(header, payload).expect("sign");
    let v =
        verify(token.as_bytes(), &keys, &Policy::default(), 1_900_000_000).expect("token verifies");
    assert_eq!(v.alg, Some(Algorithm::ES256));
    assert_eq!(v.kid.as_deref(), Some("k1"));
    assert_eq!(v.anomalies, Anomalies::NONE);
    assert_eq!(v.claims.iss.as_deref(), Some("https://issuer.example"));
    assert_eq!(v.claims.sub.as_deref(), Some("alice"));
    assert_eq!(v.claims.jti.as_deref(), Some("j-1"));
    assert_eq!(v.claims.exp, Some(2_000_000_000));
    assert_eq!(v.claims.nbf, Some(1001));
    assert_eq!(v.claims.iat, Some(1000));
    assert_eq!(
        &*v.claims.raw,
        &payload[..],
        "raw is the payload, byte for byte"
    );
    assert_eq!(v.claims.json().as_bytes(), &payload[..]);
}

#[test]
fn verified_leaves_absent_claims_empty() {
    let (key, keys) = keyed(Algorithm::HS256, Some("h"));
    let token = key
        .mint(&json!({"exp": 2_000_000_000}), &Map::new())
        .expect("mint");
    let v =
        verify(token.as_bytes(), &keys, &Policy::default(), 1_900_000_000).expect("token verifies");
    assert_eq!(v.alg, Some(Algorithm::HS256));
    assert_eq!(
        (v.claims.iss, v.claims.sub, v.claims.jti),
        (None, None, None)
    );
    assert_eq!((v.claims.nbf, v.claims.iat), (None, None));
    assert_eq!(v.claims.exp, Some(2_000_000_000));
}

#[test]
fn verified_kid_is_none_for_a_key_without_kid() {
    let (key, keys) = keyed(Algorithm::EdDSA, None);
    let token = key
        .mint(&json!({"exp": 2_000_000_000}), &Map::new())
        .expect("mint");
    let v =
        verify(token.as_bytes(), &keys, &Policy::default(), 1_900_000_000).expect("token verifies");
    assert_eq!(v.alg, Some(Algorithm::EdDSA));
    assert_eq!(v.kid, None);
}

#[test]
fn verified_reports_the_key_carrying_header_anomalies() {
    let (key, keys) = keyed(Algorithm::ES384, Some("k"));
    let mut extra = Map::new();
    extra.insert("jku".into(), json!("https://evil.example/jwks"));
    extra.insert("x5u".into(), json!("https://evil.example/cert"));
    let token = key
        .mint(&json!({"exp": 2_000_000_000}), &extra)
        .expect("mint");
    let v = verify(token.as_bytes(), &keys, &Policy::default(), 1_900_000_000)
        .expect("anomalies do not invalidate a token");
    assert_eq!(v.anomalies.names().collect::<Vec<_>>(), vec!["jku", "x5u"]);
}

#[test]
fn claims_of_a_forged_token_are_never_judged() {
    // Expired, wrong issuer, and a bad signature: the signature is reported.
    let (key, keys) = keyed(Algorithm::ES256, Some("k"));
    let (other, _) = keyed(Algorithm::ES256, Some("k"));
    let token = other
        .mint(&json!({"iss": "x", "exp": 1}), &Map::new())
        .expect("mint");
    let policy = Policy {
        issuer: Some("i".into()),
        ..Policy::default()
    };
    let r = verify(token.as_bytes(), &keys, &policy, NOW).expect_err("forged");
    assert_eq!(r.reason, Reject::BadSignature);
    // The same claims signed by the trusted key are judged on their claims.
    let token = key
        .mint(&json!({"iss": "x", "exp": 1}), &Map::new())
        .expect("mint");
    let r = verify(token.as_bytes(), &keys, &policy, NOW).expect_err("expired");
    assert_eq!(r.reason, Reject::Expired);
}

#[test]
fn verify_applies_the_typ_policy_to_the_header() {
    let (key, keys) = keyed(Algorithm::ES256, Some("k"));
    let claims = json!({"exp": 2_000_000_000});
    let with_typ = |typ: Option<&str>| {
        let mut header = json!({"alg": "ES256", "kid": "k"});
        if let Some(t) = typ {
            header["typ"] = t.into();
        }
        key.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes())
            .expect("sign")
    };
    let policy = Policy {
        typ: Some("at+jwt".into()),
        ..Policy::default()
    };
    let now = 1_900_000_000;
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = with_typ(Some(typ));
        assert!(
            verify(token.as_bytes(), &keys, &policy, now).is_ok(),
            "typ {typ}"
        );
    }
    for typ in [Some("JWT"), Some("jwt"), None] {
        let token = with_typ(typ);
        let r = verify(token.as_bytes(), &keys, &policy, now).expect_err("wrong typ");
        assert_eq!(r.reason, Reject::Type, "typ {typ:?}");
    }
    // Without a typ policy any typ (or none) is fine.
    let token = with_typ(None);
    assert!(verify(token.as_bytes(), &keys, &Policy::default(), now).is_ok());
}

#[test]
fn verify_applies_issuer_audience_and_required_claims() {
    let (key, keys) = keyed(Algorithm::HS512, Some("k"));
    let now = 1_900_000_000;
    let token = key
        .mint(
            &json!({"iss": "i", "aud": ["x", "api"], "exp": 2_000_000_000, "tenant": "t"}),
            &Map::new(),
        )
        .expect("mint");
    let base = Policy {
        issuer: Some("i".into()),
        audiences: boxed(&["api"]),
        required: boxed(&["exp", "tenant"]),
        ..Policy::default()
    };
    assert!(verify(token.as_bytes(), &keys, &base, now).is_ok());
    let rows: [(Policy, Reject); 3] = [
        (
            Policy {
                issuer: Some("j".into()),
                ..base.clone()
            },
            Reject::Issuer,
        ),
        (
            Policy {
                audiences: boxed(&["web"]),
                ..base.clone()
            },
            Reject::Audience,
        ),
        (
            Policy {
                required: boxed(&["exp", "scope"]),
                ..base.clone()
            },
            Reject::MissingClaim,
        ),
    ];
    for (policy, want) in rows {
        let r = verify(token.as_bytes(), &keys, &policy, now).expect_err("rejected");
        assert_eq!(r.reason, want, "{policy:?}");
    }
}

// ------------------------------------------------------- kid-less tokens

/// `n` ES256 keys, each with a kid, and the set of their public halves.
fn many(n: usize) -> (Vec<SigningKey>, KeySet) {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| {
            SigningKey::generate(Algorithm::ES256)
                .expect("generate")
                .with_kid(Some(format!("k{i}")))
        })
        .collect();
    let jwks: Vec<Value> = keys.iter().map(SigningKey::public_jwk).collect();
    let set = KeySet::from_jwks(json!({ "keys": jwks }).to_string().as_bytes()).expect("loads");
    (keys, set)
}

/// A token signed by `key` whose header names no kid.
fn kidless(key: &SigningKey) -> String {
    let payload = json!({"exp": NOW + 600}).to_string();
    key.sign_parts(br#"{"alg":"ES256"}"#, payload.as_bytes())
        .expect("sign")
}

/// `token` with its signature replaced by 64 bytes of zeros (the right
/// length for ES256, so only a signature check can refuse it).
fn forged(token: &str) -> String {
    let (signed, _) = token.rsplit_once('.').expect("three parts");
    format!("{signed}.{}", B64URL.encode([0u8; 64]))
}

fn verdict(token: &str, keys: &KeySet, policy: &Policy) -> Result<(), Reject> {
    verify(token.as_bytes(), keys, policy, NOW)
        .map(|_| ())
        .map_err(|r| r.reason)
}

#[test]
fn kidless_tokens_are_tried_against_at_most_max_kidless_keys() {
    let policy = Policy::default();
    assert_eq!(policy.max_kidless_keys, 4);
    let (signers, ten) = many(10);
    let (four_signers, four) = many(4);
    // Four keys: every one is tried, the signer's holds; a forgery is
    // refused by the signature checks (bad_signature).
    let last = kidless(&four_signers[3]);
    assert_eq!(verdict(&last, &four, &policy), Ok(()));
    assert_eq!(
        verdict(&forged(&last), &four, &policy),
        Err(Reject::BadSignature)
    );
    // Ten keys: refused before any signature check. A forgery gets the same
    // answer as a good token (unknown_key, not bad_signature): no key was
    // tried.
    for token in [kidless(&signers[0]), kidless(&signers[9])] {
        assert_eq!(verdict(&token, &ten, &policy), Err(Reject::UnknownKey));
        assert_eq!(
            verdict(&forged(&token), &ten, &policy),
            Err(Reject::UnknownKey)
        );
    }
    // Tokens naming their kid are unaffected.
    let named = signers[9]
        .mint(&json!({"exp": NOW + 600}), &Map::new())
        .expect("mint");
    assert_eq!(verdict(&named, &ten, &policy), Ok(()));
    // The bound is the policy's.
    let wide = Policy {
        max_kidless_keys: 10,
        ..Policy::default()
    };
    assert_eq!(verdict(&kidless(&signers[9]), &ten, &wide), Ok(()));
    let none = Policy {
        max_kidless_keys: 0,
        ..Policy::default()
    };
    assert_eq!(
        verdict(&kidless(&four_signers[0]), &four, &none),
        Err(Reject::UnknownKey)
    );
}

#[test]
fn only_keys_serving_the_tokens_alg_count_against_the_bound() {
    let (_, mut set) = many(6);
    // Six ES256 keys, plus one Ed25519 key: an EdDSA token without kid has
    // one candidate.
    let (ed, ed_set) = keyed(Algorithm::EdDSA, Some("ed"));
    set.extend(ed_set);
    let payload = json!({"exp": NOW + 600}).to_string();
    let token = ed
        .sign_parts(br#"{"alg":"EdDSA"}"#, payload.as_bytes())
        .expect("sign");
    assert_eq!(verdict(&token, &set, &Policy::default()), Ok(()));
}

// ---------------------------------------------------------------- cnf

#[test]
fn cnf_is_read_once_and_a_malformed_one_is_a_claim_type_error() {
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    // (RFC 8705's own example value, bwcK...dg2, has non-canonical trailing
    // bits: strict base64url refuses it, as it refuses them everywhere.)
    let x5t = "BimEMugGayniIjvMI6qVBLVq5Qj6vzQ1UIhpucMZDiI";
    let (key, set) = keyed(Algorithm::ES256, Some("k"));
    let verified = |cnf: Value| {
        let token = key
            .mint(&json!({"exp": NOW + 60, "cnf": cnf}), &Map::new())
            .unwrap();
        verify(token.as_bytes(), &set, &Policy::default(), NOW)
    };
    let v = verified(json!({"jkt": jkt})).unwrap();
    let cnf = v.claims.cnf.as_deref().copied().unwrap();
    assert_eq!(B64URL.encode(cnf.jkt.unwrap()), jkt);
    assert_eq!((cnf.x5t_s256, cnf.other), (None, false));
    let v = verified(json!({"x5t#S256": x5t, "kid": "other-method"})).unwrap();
    let cnf = v.claims.cnf.as_deref().copied().unwrap();
    assert_eq!(B64URL.encode(cnf.x5t_s256.unwrap()), x5t);
    assert!(cnf.other && cnf.jkt.is_none());
    // Only a method jwtd cannot check: kept as such, never dropped.
    let v = verified(json!({"jwk": {"kty": "EC"}})).unwrap();
    assert!(v.claims.cnf.unwrap().other);
    // Empty: unbound.
    assert_eq!(verified(json!({})).unwrap().claims.cnf, None);
    for bad in [
        json!("jkt"),
        json!(["jkt"]),
        json!({"jkt": 1}),
        json!({"jkt": "short"}),
        json!({"jkt": format!("{jkt}=")}),
        json!({"x5t#S256": "+/+/"}),
    ] {
        assert_eq!(
            verified(bad.clone()).map(|_| ()),
            Err(Rejection::from(Reject::ClaimType)),
            "{bad}"
        );
    }
    // Duplicates inside cnf are refused like anywhere else.
    let payload = format!(
        r#"{{"exp":{},"cnf":{{"jkt":"{jkt}","jkt":"{jkt}"}}}}"#,
        NOW + 60
    );
    let token = key
        .sign_parts(br#"{"alg":"ES256","kid":"k"}"#, payload.as_bytes())
        .unwrap();
    assert_eq!(
        verify(token.as_bytes(), &set, &Policy::default(), NOW)
            .map(|_| ())
            .map_err(|r| r.reason),
        Err(Reject::Payload)
    );
}

/// Claims that came alone in a JWE (`verify_sealed`): the same claim checks
/// as a signed token's payload, the JWE header's `typ` as the header's,
/// and a result that names the decryption key and no algorithm.
#[test]
fn sealed_claims_are_checked_as_a_signed_payload_is() {
    let key = KeyFingerprint([3; 32]);
    let sealed = |typ| Sealed {
        typ,
        kid: Some("enc-1"),
        key,
    };
    let policy = Policy {
        issuer: Some("https://issuer.example".into()),
        audiences: boxed(&["orders"]),
        ..Policy::default()
    };
    let now = 1_700_000_000;
    let good =
        json!({"iss": "https://issuer.example", "aud": "orders", "sub": "alice", "exp": now + 60});
    let v = verify_sealed(good.to_string().as_bytes(), sealed(None), &policy, now).unwrap();
    assert_eq!(v.alg, None);
    assert_eq!(v.key, key);
    assert_eq!(v.kid.as_deref(), Some("enc-1"));
    assert_eq!(v.claims.sub.as_deref(), Some("alice"));
    assert_eq!(v.claims.exp, Some(now + 60));
    let refused = |claims: Value, typ, policy: &Policy| {
        verify_sealed(claims.to_string().as_bytes(), sealed(typ), policy, now)
            .map(|_| ())
            .map_err(|r| r.reason)
    };
    let mut expired = good.clone();
    expired["exp"] = json!(now - 3600);
    assert_eq!(refused(expired, None, &policy), Err(Reject::Expired));
    let mut other = good.clone();
    other["iss"] = json!("https://elsewhere.example");
    assert_eq!(refused(other, None, &policy), Err(Reject::Issuer));
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(refused(no_exp, None, &policy), Err(Reject::MissingClaim));
    let typed = Policy {
        typ: Some("at+jwt".into()),
        ..policy.clone()
    };
    assert_eq!(
        refused(good.clone(), Some("JWT"), &typed),
        Err(Reject::Type)
    );
    assert_eq!(refused(good.clone(), Some("at+jwt"), &typed), Ok(()));
    assert_eq!(
        verify_sealed(b"[1,2]", sealed(None), &policy, now)
            .map_err(|r| r.reason)
            .map(|_| ()),
        Err(Reject::Payload)
    );
    let small = Policy {
        max_token_bytes: 64,
        ..policy
    };
    assert_eq!(
        refused(
            json!({"pad": "x".repeat(100), "exp": now + 60}),
            None,
            &small
        ),
        Err(Reject::TooLarge)
    );
}
