//! The 73 third-party vectors of `tests/conformance/` (see its README for
//! provenance), run through the library and through `jwtd check`.

use std::collections::BTreeMap;

use jwtd::verify::KeySet;
use jwtd::verify::{AlgSet, Algorithm, Policy, verify};
use serde_json::Value;

use crate::support::{repo_path, run_jwtd, stdout_json};

struct Case {
    id: String,
    token: String,
    jwks: String,
    accept: bool,
    v: Value,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(repo_path("tests/conformance/cases.jsonl"))
        .expect("read cases.jsonl");
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let c: Value = serde_json::from_str(line).expect("case is JSON");
            Case {
                id: c["id"].as_str().expect("id").to_owned(),
                token: c["token"].as_str().expect("token").to_owned(),
                jwks: c["jwks"].as_str().expect("jwks").to_owned(),
                accept: match c["expect"].as_str() {
                    Some("accept") => true,
                    Some("reject") => false,
                    other => panic!("unknown expect {other:?}"),
                },
                v: c["validation"].clone(),
            }
        })
        .collect();
    assert_eq!(cases.len(), 73, "the vector file holds 73 cases");
    cases
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn jwks_path(name: &str) -> String {
    repo_path("tests/conformance/keys")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_conformance_vector_gets_the_expected_verdict_from_the_library() {
    let mut wrong = BTreeMap::new();
    for case in cases() {
        let bytes = std::fs::read(jwks_path(&case.jwks)).expect("read jwks");
        let keys = KeySet::from_jwks(&bytes).expect("every vector key set has a usable key");
        let policy = Policy {
            // "none" may appear in a case's list; it is never accepted, and
            // jwtd cannot even represent it, so it is simply not added.
            algorithms: strings(&case.v["algorithms"])
                .iter()
                .filter_map(|a| a.parse::<Algorithm>().ok())
                .collect::<AlgSet>(),
            issuer: case.v["iss"].as_str().map(Box::from),
            audiences: case.v["aud"].as_str().map(Box::from).into_iter().collect(),
            leeway: case.v["leeway"].as_u64().expect("leeway"),
            required: strings(&case.v["required_claims"])
                .into_iter()
                .map(Box::from)
                .collect(),
            ..Policy::default()
        };
        let now = case.v["now"].as_i64().expect("now");
        let verdict = verify(case.token.as_bytes(), &keys, &policy, now);
        if verdict.is_ok() != case.accept {
            wrong.insert(case.id, format!("{verdict:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts: {wrong:#?}");
}

#[test]
fn every_conformance_vector_gets_the_expected_verdict_from_jwtd_check() {
    let mut wrong = BTreeMap::new();
    for case in cases() {
        let mut args: Vec<String> =
            vec!["check".into(), "--jwks-file".into(), jwks_path(&case.jwks)];
        if let Some(iss) = case.v["iss"].as_str() {
            args.extend(["--issuer".into(), iss.into()]);
        }
        if let Some(aud) = case.v["aud"].as_str() {
            args.extend(["--audience".into(), aud.into()]);
        }
        let algs: Vec<String> = strings(&case.v["algorithms"])
            .into_iter()
            .filter(|a| a != "none")
            .collect();
        args.push(format!("--algorithms={}", algs.join(",")));
        args.push(format!("--leeway={}", case.v["leeway"]));
        // `--require` adds to exp; a vector that does not require exp says
        // so with `-exp`.
        let mut required = strings(&case.v["required_claims"]);
        if !required.iter().any(|c| c == "exp") {
            required.push("-exp".to_owned());
        }
        args.push(format!("--require={}", required.join(",")));
        args.push(format!("--now={}", case.v["now"]));
        args.extend(["--".into(), case.token.clone()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_jwtd(&argv, None);
        let code = out.status.code();
        let expected = if case.accept { Some(0) } else { Some(1) };
        if code != expected {
            wrong.insert(
                case.id,
                format!(
                    "exit {code:?}, stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
            continue;
        }
        let json = stdout_json(&out);
        if json["valid"].as_bool() != Some(case.accept) {
            wrong.insert(case.id, json.to_string());
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts: {wrong:#?}");
}
