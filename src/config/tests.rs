use std::time::Duration;

use super::*;
use crate::jwks::source::Endpoint;
use crate::verify::{AlgSet, Algorithm, Policy};

/// Settings from `JWTD_*` variables. Tests of other settings that name no
/// key source run on the development set (`JWTD_DEV=1`), as `serve --dev`.
fn raw(pairs: &[(&str, &str)]) -> RawConfig {
    let mut map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if ![
        "JWTD_JWKS_FILE",
        "JWTD_JWKS_URL",
        "JWTD_DISCOVERY",
        "JWTD_DEV",
    ]
    .iter()
    .any(|k| map.contains_key(*k))
    {
        map.insert("JWTD_DEV".into(), "1".into());
    }
    RawConfig::from_env(|k| map.get(k).cloned())
}

/// Only the environment given, nothing added.
fn env_only(pairs: &[(&str, &str)]) -> RawConfig {
    let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
    RawConfig::from_env(|k| map.get(k).map(|v| (*v).to_owned()))
}

#[test]
fn without_a_key_source_serve_refuses_to_start_and_says_which_settings_give_keys() {
    let problems = Config::from_raw(RawConfig::default()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    for named in ["jwks_file", "jwks_url", "discovery", "[[issuers]]", "--dev"] {
        assert!(problems[0].contains(named), "{named} in {problems:?}");
    }
    // Other settings do not change that.
    let problems = Config::from_raw(env_only(&[("JWTD_ISSUER", "https://idp")])).unwrap_err();
    assert!(problems[0].starts_with("no key source"), "{problems:?}");
}

#[test]
fn dev_serves_the_embedded_set_for_the_dev_issuer_only() {
    for spelling in ["1", "true"] {
        let c = Config::from_raw(env_only(&[("JWTD_DEV", spelling)])).expect("dev is valid");
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].source, KeySource::EmbeddedDev);
        assert_eq!(c.sources[0].keys.as_ref().unwrap().keys().len(), 1);
        assert_eq!(
            c.verifier.issuers[0].policy.issuer.as_deref(),
            Some(DEV_ISSUER)
        );
    }
    let mut problems = Vec::new();
    let file = RawConfig::from_toml("dev = true\n", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(Config::from_raw(file).is_ok());
    // JWTD_DEV=0 is not dev.
    assert!(Config::from_raw(env_only(&[("JWTD_DEV", "0")])).is_err());
    // The dev set never vouches for another issuer, nor mixes with real keys.
    for (pairs, expected) in [
        (
            vec![("JWTD_DEV", "1"), ("JWTD_ISSUER", "https://idp.example")],
            "issuer: \"https://idp.example\" with dev",
        ),
        (
            vec![
                ("JWTD_DEV", "1"),
                ("JWTD_JWKS_URL", "https://idp.example/jwks"),
            ],
            "dev: the embedded development key set cannot be combined",
        ),
        (vec![("JWTD_DEV", "yes please")], "dev: \"yes please\""),
    ] {
        let problems = Config::from_raw(env_only(&pairs)).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} in {problems:#?}"
        );
    }
    let mut problems = Vec::new();
    let file = RawConfig::from_toml(
        "dev = true\n[[issuers]]\nissuer = \"a\"\njwks_file = \"/x\"\n",
        &mut problems,
    );
    let problems = Config::from_raw(file).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("[[issuers]]") && p.starts_with("dev:")),
        "{problems:#?}"
    );
}

#[test]
fn unknown_jwtd_variables_are_problems_with_a_suggestion() {
    let problems = unknown_env([
        "JWTD_JWKS_URI",
        "JWTD_AUDIENCE",
        "JWTD_REQUIRED_CLAIMS",
        "JWTD_LEEWAY",
        "JWTD_DEV",
        "JWTD_FROBNICATE",
        "HOME",
        "XJWTD_LEEWAY",
    ]);
    assert_eq!(
        problems,
        vec![
            "JWTD_AUDIENCE: not a jwtd setting; did you mean JWTD_AUDIENCES?",
            "JWTD_FROBNICATE: not a jwtd setting (docs/configuration.md lists the JWTD_* variables)",
            "JWTD_JWKS_URI: not a jwtd setting; did you mean JWTD_JWKS_URL?",
            "JWTD_REQUIRED_CLAIMS: not a jwtd setting; did you mean JWTD_REQUIRE?",
        ]
    );
    // Every variable a setting reads is known.
    assert!(unknown_env(env_names()).is_empty());
    for name in env_names() {
        assert!(
            name.starts_with("JWTD_") && name == name.to_uppercase(),
            "{name}"
        );
    }
}

#[test]
fn problems_name_the_variable_the_flag_or_the_file_line() {
    let text = "# jwtd\nsocket = \"/run/x.sock\"\nleeway = \"1h\"\nleewy = 3\n\n[[issuers]]\nissuer = \"a\"\njwks_uri = \"https://a\"\n";
    let mut problems = Vec::new();
    let file = RawConfig::from_toml(text, &mut problems);
    let env = env_only(&[("JWTD_CACHE_MAX_TTL", "0"), ("JWTD_MAX_STALE", "1500ms")]);
    let flags = RawConfig {
        max_connections: Some("0".into()),
        ..RawConfig::default()
    };
    let origins = Origins::new(&flags, &env, Some(("/etc/jwtd.toml", text, &file)));
    problems.extend(Config::from_raw(flags.or(env).or(file)).unwrap_err());
    let located: Vec<String> = problems.iter().map(|p| origins.locate(p)).collect();
    for expected in [
        "/etc/jwtd.toml:4: leewy: unknown setting; did you mean leeway?",
        "/etc/jwtd.toml:8: issuers[0].jwks_uri: unknown setting; did you mean jwks_url?",
        "/etc/jwtd.toml:3: issuers[0].leeway: ",
        "JWTD_CACHE_MAX_TTL: cache_max_ttl: must be at least 1s",
        "JWTD_MAX_STALE: max_stale: ",
        "--max-connections: max_connections: 0 is outside",
    ] {
        assert!(
            located.iter().any(|p| p.starts_with(expected)),
            "{expected:?} in {located:#?}"
        );
    }
    // A syntax error names the file; the parser's message names the line.
    let mut problems = Vec::new();
    let bad = "socket = \"a\"\nleeway = \n";
    RawConfig::from_toml(bad, &mut problems);
    let origins = Origins::new(
        &RawConfig::default(),
        &RawConfig::default(),
        Some(("j.toml", bad, &RawConfig::default())),
    );
    let located = origins.locate(&problems[0]);
    assert!(
        located.starts_with("j.toml: ") && located.contains("line 2"),
        "{located}"
    );
}

#[test]
fn required_claims_add_to_exp_and_only_minus_exp_removes_it() {
    let list = |items: &[&str]| -> Vec<String> { items.iter().map(|s| (*s).to_owned()).collect() };
    let boxed = |items: &[&str]| -> Vec<Box<str>> { items.iter().map(|s| Box::from(*s)).collect() };
    assert_eq!(required_claims(None).unwrap(), boxed(&["exp"]));
    assert_eq!(required_claims(Some(&[])).unwrap(), boxed(&["exp"]));
    assert_eq!(
        required_claims(Some(&list(&[""]))).unwrap(),
        boxed(&["exp"])
    );
    assert_eq!(
        required_claims(Some(&list(&["sub", "jti"]))).unwrap(),
        boxed(&["exp", "sub", "jti"])
    );
    assert_eq!(
        required_claims(Some(&list(&["exp", "sub", "sub"]))).unwrap(),
        boxed(&["exp", "sub"])
    );
    assert_eq!(required_claims(Some(&list(&["-exp"]))).unwrap(), boxed(&[]));
    assert_eq!(
        required_claims(Some(&list(&["sub", " -exp "]))).unwrap(),
        boxed(&["sub"])
    );
    assert!(required_claims(Some(&list(&["-sub"]))).is_err());
    assert!(required_claims(Some(&list(&["exp", "-exp"]))).is_err());
    // Through the settings: JWTD_REQUIRE=sub still requires exp.
    let c = Config::from_raw(raw(&[("JWTD_REQUIRE", "sub")])).unwrap();
    assert_eq!(
        c.verifier.issuers[0].policy.required,
        boxed(&["exp", "sub"])
    );
    let problems = Config::from_raw(raw(&[("JWTD_REQUIRE", "-iat")])).unwrap_err();
    assert!(
        problems[0].starts_with("required_claims: \"-iat\""),
        "{problems:?}"
    );
}

#[test]
fn defaults_with_dev() {
    let c = Config::from_raw(raw(&[])).expect("defaults are valid");
    assert_eq!(c.socket_mode, 0o660);
    assert_eq!(
        c.verifier.issuers[0].policy,
        Policy {
            issuer: Some(DEV_ISSUER.into()),
            ..Policy::default()
        }
    );
    assert_eq!(c.verifier.cache_entries, 100_000);
    assert_eq!(c.verifier.cache_max_ttl, 600);
    assert_eq!(c.max_frame_bytes, 65_536);
    assert_eq!(c.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.write_timeout, Duration::from_secs(30));
    assert_eq!(c.verifier.max_verifying, 4096);
}

#[test]
fn environment_variables_are_read_with_lists_split() {
    let r = raw(&[
        ("JWTD_SOCKET", "/run/x.sock"),
        ("JWTD_AUDIENCES", "a, b,,c"),
        ("JWTD_ALGORITHMS", "ES256,RS256"),
        ("JWTD_REQUIRE", "exp,sub"),
        ("JWTD_LEEWAY", "10s"),
    ]);
    assert_eq!(r.socket.as_deref(), Some("/run/x.sock"));
    assert_eq!(r.audiences, Some(vec!["a".into(), "b".into(), "c".into()]));
    let c = Config::from_raw(r).unwrap();
    assert_eq!(c.verifier.issuers[0].policy.audiences.len(), 3);
    assert_eq!(
        c.verifier.issuers[0]
            .policy
            .algorithms
            .iter()
            .collect::<Vec<_>>(),
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert_eq!(
        c.verifier.issuers[0].policy.required,
        vec![Box::from("exp"), Box::from("sub")]
    );
    assert_eq!(c.verifier.issuers[0].policy.leeway, 10);
}

#[test]
fn flags_beat_environment_beat_file() {
    let mut problems = Vec::new();
    let file = RawConfig::from_toml(
        "issuer = \"file\"\nleeway = \"1s\"\ncache_entries = 5\n",
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let env = raw(&[("JWTD_ISSUER", "env"), ("JWTD_LEEWAY", "2s")]);
    let flags = RawConfig {
        issuer: Some("flag".into()),
        ..RawConfig::default()
    };
    let merged = flags.or(env).or(file);
    assert_eq!(merged.issuer.as_deref(), Some("flag"));
    assert_eq!(merged.leeway.as_deref(), Some("2s"));
    assert_eq!(merged.cache_entries.as_deref(), Some("5"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let r = raw(&[
        ("JWTD_SOCKET_MODE", "999"),
        ("JWTD_ALGORITHMS", "none,HS1"),
        ("JWTD_LEEWAY", "10m"),
        ("JWTD_CACHE_ENTRIES", "many"),
        ("JWTD_IDLE_TIMEOUT", "5 parsecs"),
        ("JWTD_MAX_IN_FLIGHT", "0"),
        ("JWTD_JWKS_FILE", "/nonexistent/jwks.json"),
        ("JWTD_LOG", "loud"),
    ]);
    let problems = Config::from_raw(r).unwrap_err();
    let expect = [
        "socket_mode",
        "algorithms: algorithm 'none'",
        "algorithms: unknown algorithm 'HS1'",
        "leeway",
        "cache_entries",
        "idle_timeout",
        "max_in_flight",
        "jwks_file: /nonexistent/jwks.json",
        "log",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
}

#[test]
fn toml_problems_are_all_reported() {
    let mut problems = Vec::new();
    let r = RawConfig::from_toml(
        "socket = 5\nfrobnicate = true\nalgorithms = [\"ES256\", 3]\nleeway = [1]\ncolour = 1\n",
        &mut problems,
    );
    // An integer is accepted where a string is expected ("5").
    assert_eq!(r.socket.as_deref(), Some("5"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("frobnicate: unknown setting")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("colour: unknown setting")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("algorithms: expected an array of strings"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("leeway: expected a string or integer"))
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let mut problems = Vec::new();
    RawConfig::from_toml("socket = \"a\"\nleeway = \n", &mut problems);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("line 2"), "{problems:?}");
}

#[test]
fn a_bad_key_set_is_a_config_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
    )
    .unwrap();
    let problems = Config::from_raw(RawConfig {
        jwks_file: Some(path.to_string_lossy().into_owned()),
        ..RawConfig::default()
    })
    .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("no usable signing key"),
        "{problems:?}"
    );
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    for bad in ["", "s", "-1s", "1.5s", "10x", "99999999999999999999d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sub_second_settings_that_would_truncate_are_refused() {
    let problems = Config::from_raw(raw(&[
        ("JWTD_LEEWAY", "500ms"),
        ("JWTD_CACHE_MAX_TTL", "0"),
        ("JWTD_IDLE_TIMEOUT", "100ms"),
        ("JWTD_WRITE_TIMEOUT", "0s"),
        ("JWTD_CACHE_ENTRIES", "100000000"),
        ("JWTD_MAX_LIFETIME", "500ms"),
    ]))
    .unwrap_err();
    for e in [
        "leeway",
        "cache_max_ttl",
        "idle_timeout",
        "write_timeout",
        "cache_entries",
        "max_lifetime",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn the_example_config_file_loads_without_problems() {
    let mut problems = Vec::new();
    let mut raw = RawConfig::from_toml(&repo_file("deploy/jwtd.toml"), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    // Relative to the repository root, where the test runs.
    raw.jwks_file = raw
        .jwks_file
        .map(|f| format!("{}/{f}", env!("CARGO_MANIFEST_DIR")));
    let c = Config::from_raw(raw).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(c.verifier.issuers[0].policy.algorithms, AlgSet::all());
    assert_eq!(c.verifier.cache_entries, 100_000);
}

/// The rows of the table of `docs/configuration.md` whose header starts
/// with `header`, as trimmed cells (code marks kept), up to the first line
/// that is not a row.
fn doc_table(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table {header:?} in the docs");
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn every_setting_of_the_list_has_its_row_in_the_docs_and_every_row_a_setting() {
    let doc = repo_file("docs/configuration.md");
    let rows = doc_table(&doc, "| TOML key | flag | environment | default |");
    let mut documented = std::collections::HashSet::new();
    for row in &rows {
        // `[claim_headers]`: a table in the file.
        let key = row[0].trim_matches('`').trim_matches(['[', ']']);
        let s =
            Setting::named(key).unwrap_or_else(|| panic!("documented, but not a setting: {key}"));
        assert!(documented.insert(key), "{key} is documented twice");
        assert!(
            row[1].starts_with(&format!("`{}`", s.flag()))
                || row[1].starts_with(&format!("`{} ", s.flag())),
            "{key}: its flag is {} in the list: {row:?}",
            s.flag()
        );
        assert!(
            row[2].starts_with(&format!("`{}`", s.env)),
            "{key}: its variable is {} in the list: {row:?}",
            s.env
        );
        if let Some(default) = s.default {
            assert!(
                row[3].starts_with(&format!("`{default}`")),
                "{key}: its default is {default} in the list: {row:?}"
            );
        }
        let table = s.kind == Kind::Pairs;
        assert_eq!(row[0].starts_with("`["), table, "{key}: {row:?}");
    }
    for s in SETTINGS {
        assert!(
            documented.contains(s.key),
            "undocumented setting: {}",
            s.key
        );
    }
    // The keys an [[issuers]] table takes, and only those.
    let issuer_keys: Vec<String> = doc_table(&doc, "| `[[issuers]]` key |")
        .iter()
        .map(|row| row[0].trim_matches('`').to_owned())
        .collect();
    let mut listed: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.scope != Scope::Daemon)
        .map(|s| s.key)
        .collect();
    let mut issuer_keys: Vec<&str> = issuer_keys.iter().map(String::as_str).collect();
    listed.sort_unstable();
    issuer_keys.sort_unstable();
    assert_eq!(issuer_keys, listed, "the [[issuers]] table of the docs");
    assert!(doc.contains("| `[[routes]]` key |"));
}

#[test]
fn every_setting_has_its_own_flag_variable_and_key() {
    let mut seen = std::collections::HashSet::new();
    for s in SETTINGS {
        for name in [s.key.to_owned(), s.flag(), s.env.to_owned()] {
            assert!(seen.insert(name.clone()), "{name} is declared twice");
        }
        // The flag is the key in kebab case; a list's flag, which takes
        // one item, may drop the plural (--audience, --require).
        let kebab = s.key.replace('_', "-");
        match s.kind {
            Kind::List | Kind::Pairs => assert!(kebab.starts_with(s.flag), "{s:?}"),
            Kind::Text | Kind::Switch => assert_eq!(s.flag, kebab, "{s:?}"),
        }
        // The variable is named after the key or after the flag.
        let by_key = format!("JWTD_{}", s.key.to_uppercase());
        let by_flag = format!("JWTD_{}", s.flag.replace('-', "_").to_uppercase());
        assert!(s.env == by_key || s.env == by_flag, "{s:?}");
        assert!(!s.help().is_empty() && !s.value_name.is_empty(), "{s:?}");
    }
    // `--require`'s variable is JWTD_REQUIRE; every other list's is named
    // after its key (a rule of naming, not a fallback: each is declared).
    let list_vars: Vec<(&str, &str)> = SETTINGS
        .iter()
        .filter(|s| matches!(s.kind, Kind::List | Kind::Pairs))
        .map(|s| (s.key, s.env))
        .collect();
    assert_eq!(
        list_vars,
        [
            ("audiences", "JWTD_AUDIENCES"),
            ("algorithms", "JWTD_ALGORITHMS"),
            ("required_claims", "JWTD_REQUIRE"),
            ("dpop_algorithms", "JWTD_DPOP_ALGORITHMS"),
            ("claim_headers", "JWTD_CLAIM_HEADERS"),
            ("redis", "JWTD_REDIS"),
        ]
    );
}

#[test]
fn each_variable_and_each_file_key_sets_its_own_setting_only() {
    for s in SETTINGS {
        let value = match s.kind {
            Kind::Pairs => "x-a=a,x-b=b",
            Kind::List => "a,b",
            Kind::Text | Kind::Switch => "1",
        };
        let env = RawConfig::from_env(|k| (k == s.env).then(|| value.to_owned()));
        assert_eq!(env.given(), [s.key], "{}", s.env);
        let file = match s.kind {
            Kind::Pairs => format!("[{}]\nx-a = \"a\"\nx-b = \"b\"\n", s.key),
            Kind::List => format!("{} = [\"a\", \"b\"]\n", s.key),
            Kind::Text | Kind::Switch => format!("{} = \"1\"\n", s.key),
        };
        let mut problems = Vec::new();
        let toml = RawConfig::from_toml(&file, &mut problems);
        assert!(problems.is_empty(), "{file}: {problems:?}");
        assert_eq!(toml.given(), [s.key], "{file}");
        // The environment and the file give the same value.
        assert_eq!(env, toml, "{}", s.key);
    }
}

#[test]
fn the_declared_defaults_are_the_defaults() {
    let unset = Config::from_raw(raw(&[])).expect("defaults are valid");
    let declared = raw(&[]).or(RawConfig::read(|s| {
        s.default.map(|d| Value::Text(d.to_owned()))
    }));
    assert!(declared.given().len() > 40, "{declared:?}");
    let declared = Config::from_raw(declared).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(format!("{declared:?}"), format!("{unset:?}"));
    // And the defaults of the modules that use them.
    assert_eq!(
        unset.revocation,
        crate::revocation::RevocationConfig::default()
    );
    assert_eq!(unset.max_frame_bytes, crate::protocol::DEFAULT_MAX_FRAME);
}

#[test]
fn max_token_bytes_has_the_bounds_of_the_policy() {
    // The policy's own problems are reported as they are, so its bound on
    // max_token_bytes must be the one config checks first (else the same
    // problem would be reported twice).
    for (bytes, ok) in [
        (63, false),
        (64, true),
        (1 << 20, true),
        ((1 << 20) + 1, false),
    ] {
        let policy = Policy {
            max_token_bytes: bytes,
            ..Policy::default()
        };
        assert_eq!(policy.problems().is_empty(), ok, "{bytes}");
        let problems = Config::from_raw(raw(&[
            ("JWTD_MAX_TOKEN_BYTES", &bytes.to_string()),
            ("JWTD_MAX_FRAME_BYTES", "2000000"),
            ("JWTD_GRPC_MAX_MESSAGE_BYTES", "2000000"),
        ]))
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), usize::from(!ok), "{bytes}: {problems:?}");
    }
}

fn from_toml(text: &str) -> Result<Config, Vec<String>> {
    let mut problems = Vec::new();
    let raw = RawConfig::from_toml(text, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    Config::from_raw(raw)
}

#[test]
fn issuer_tables_inherit_top_level_policy_settings() {
    let dev = format!("{}/deploy/dev/jwks.json", env!("CARGO_MANIFEST_DIR"));
    let c = from_toml(&format!(
        r#"
        audiences = ["shared"]
        leeway = "10s"
        fetch_timeout = "2s"

        [[issuers]]
        discovery = "https://login.example.com/realms/prod"

        [[issuers]]
        issuer = "https://partner.example"
        jwks_file = "{dev}"
        audiences = ["partner"]
        algorithms = ["ES256"]
        "#
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let [a, b] = &c.verifier.issuers[..] else {
        panic!("two issuers expected")
    };
    assert_eq!(
        a.policy.issuer.as_deref(),
        Some("https://login.example.com/realms/prod")
    );
    assert_eq!(a.policy.audiences, vec![Box::from("shared")]);
    assert_eq!(a.policy.leeway, 10);
    assert_eq!(a.policy.algorithms, AlgSet::all());
    assert!(
        a.unknown_kid.is_some(),
        "remote sources refresh on unknown kids"
    );
    assert_eq!(b.policy.issuer.as_deref(), Some("https://partner.example"));
    assert_eq!(b.policy.audiences, vec![Box::from("partner")]);
    assert_eq!(b.policy.leeway, 10);
    assert_eq!(
        b.policy.algorithms.iter().collect::<Vec<_>>(),
        [Algorithm::ES256]
    );
    assert!(b.unknown_kid.is_none() && b.max_stale.is_none());
    assert!(matches!(
        &c.sources[0].source,
        KeySource::Remote(Endpoint::Discovery { .. })
    ));
    assert!(c.sources[0].keys.is_none());
    assert!(c.sources[1].keys.is_some(), "files are loaded at start");
    assert_eq!(c.remote.fetch_timeout, std::time::Duration::from_secs(2));
}

#[test]
fn issuer_and_source_problems_are_all_reported() {
    let problems = from_toml(
        r#"
        jwks_url = "https://top.example/jwks"
        refresh_min = "2h"
        refresh_max = "1h"

        [[issuers]]
        jwks_url = "http://idp.example.com/jwks"

        [[issuers]]
        issuer = "https://a.example"
        jwks_url = "https://a.example/jwks"
        jwks_file = "/nonexistent/jwks.json"

        [[issuers]]
        issuer = "https://a.example"

        [[issuers]]
        issuer = "https://b.example"
        discovery = "https://c.example"
        "#,
    )
    .unwrap_err();
    for expected in [
        "jwks_url: set at the top level, but [[issuers]]",
        "refresh_min (7200s) is above refresh_max (3600s)",
        "issuers[0].jwks_url: http://idp.example.com/jwks: plain http",
        "issuers[0].issuer: required in every [[issuers]] table",
        "issuers[1].jwks_file, jwks_url, discovery: set exactly one",
        "issuers[1].jwks_file: /nonexistent/jwks.json:",
        "issuers[2].: no key source",
        "issuers[2].issuer: \"https://a.example\" is configured twice",
        "issuers[3].issuer: \"https://b.example\" differs from discovery",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
}

#[test]
fn remote_urls_must_be_https_or_loopback() {
    for (url, ok) in [
        ("https://idp.example.com/jwks", true),
        ("http://127.0.0.1:8080/jwks", true),
        ("http://localhost/jwks", true),
        ("http://idp.example.com/jwks", false),
        ("ftp://idp.example.com/jwks", false),
        ("not a url", false),
    ] {
        let result = Config::from_raw(raw(&[("JWTD_JWKS_URL", url)]));
        assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
    }
    let c = Config::from_raw(raw(&[("JWTD_DISCOVERY", "https://idp.example.com/")])).unwrap();
    assert_eq!(
        c.verifier.issuers[0].policy.issuer.as_deref(),
        Some("https://idp.example.com/"),
        "the discovery URL is the issuer, compared exactly"
    );
}

#[test]
fn unknown_keys_in_issuer_tables_are_problems() {
    let mut problems = Vec::new();
    RawConfig::from_toml(
        "[[issuers]]\nissuer = \"x\"\njwks_uri = \"https://x\"\n",
        &mut problems,
    );
    assert_eq!(
        problems,
        ["config file: issuers[0].jwks_uri: unknown setting; did you mean jwks_url?"]
    );
}

#[test]
fn a_single_issuer_table_must_name_its_issuer_and_key_source() {
    // Never a silent fall-back to the published development keys.
    let problems = from_toml("[[issuers]]\naudiences = [\"api\"]\n").unwrap_err();
    for expected in [
        "issuers[0].: no key source",
        "issuers[0].issuer: required in every [[issuers]] table",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
    let problems = from_toml("[[issuers]]\njwks_url = \"https://a.example/jwks\"\n").unwrap_err();
    assert_eq!(
        problems,
        ["issuers[0].issuer: required in every [[issuers]] table (the token's iss picks one)"]
    );
}

#[test]
fn refresh_settings_are_bounded() {
    let problems = Config::from_raw(raw(&[
        ("JWTD_REFRESH_INTERVAL", "18446744073709551615"),
        ("JWTD_REFRESH_MAX", "31d"),
        ("JWTD_UNKNOWN_KID_COOLDOWN", "500ms"),
        ("JWTD_MAX_STALE", "90s"),
        ("JWTD_REFRESH_MIN", "1m"),
    ]))
    .unwrap_err();
    for expected in [
        "refresh_interval: 18446744073709551615s is above the maximum of 30 days",
        "refresh_max: 2678400s is above the maximum of 30 days",
        "unknown_kid_cooldown: 500ms is below the minimum of 1s",
        "max_stale: 90s is below twice refresh_min (60s)",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
    let problems = Config::from_raw(raw(&[("JWTD_MAX_STALE", "1500ms")])).unwrap_err();
    assert!(
        problems[0].starts_with("max_stale: 1.5s is not a whole number of seconds"),
        "{problems:?}"
    );
}

#[test]
fn front_settings_are_read() {
    let c = from_toml(
        r#"
        dev = true
        http_socket = "/run/jwtd/http.sock"
        grpc_socket = "/run/jwtd/grpc.sock"
        grpc_listen = "127.0.0.1:9191"
        forward_payload = true
        token_cookie = "session"
        token_header = "X-Access-Token"
        strip_token = true

        [claim_headers]
        x-user = "sub"
        x-roles = "realm_access.roles"

        [[routes]]
        prefix = "/api/admin/"
        scopes = ["admin"]
        claims = { tenant = ["acme", "globex"] }
        "#,
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let f = &c.fronts;
    assert_eq!(
        f.http_socket.as_deref(),
        Some(std::path::Path::new("/run/jwtd/http.sock"))
    );
    assert_eq!(
        f.grpc_socket.as_deref(),
        Some(std::path::Path::new("/run/jwtd/grpc.sock"))
    );
    assert_eq!(f.grpc_listen, Some("127.0.0.1:9191".parse().unwrap()));
    assert_eq!(f.http_listen, None);
    let a = &f.authz;
    assert!(a.forward_payload && a.strip_token && !a.debug_reason);
    assert_eq!(a.token_cookie.as_deref(), Some("session"));
    assert_eq!(a.token_header, "x-access-token");
    let mut headers: Vec<(&str, &str)> = a
        .claim_headers
        .iter()
        .map(|h| (&*h.header, h.claim.as_str()))
        .collect();
    headers.sort_unstable();
    assert_eq!(
        headers,
        [("x-roles", "realm_access.roles"), ("x-user", "sub")]
    );
    let routes = &c.verifier.routes;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].scopes, ["admin"]);
    assert_eq!(
        routes[0].claims,
        [(
            "tenant".to_owned(),
            vec!["acme".to_owned(), "globex".to_owned()]
        )]
    );

    // Defaults: the four x-jwt-* headers, the Authorization header.
    let c = from_toml("dev = true").unwrap();
    assert_eq!(c.fronts.authz, crate::server::authz::AuthzConfig::default());
    assert_eq!(c.fronts.authz.claim_headers.len(), 4);
    // The environment and the command line write mappings as a list.
    let c = Config::from_raw(raw(&[("JWTD_CLAIM_HEADERS", "x-a=a, x-b=b")])).unwrap();
    assert_eq!(c.fronts.authz.claim_headers.len(), 2);
    assert_eq!(c.fronts.authz.claim_headers[1].claim, "b");

    let mut problems = Vec::new();
    RawConfig::from_toml(
        "[[routes]]\nscopes = [\"a\"]\nmethod = \"GET\"\nclaims = [\"x\"]\n",
        &mut problems,
    );
    assert_eq!(
        problems,
        [
            "config file: routes[0].claims: expected a table of claim = [values], found array",
            "config file: routes[0].method: unknown setting",
        ]
    );
}

#[test]
fn bad_front_settings_are_all_reported() {
    let problems = from_toml(
        r#"
        socket = "/run/jwtd/s.sock"
        http_socket = "/run/jwtd/h.sock"
        grpc_socket = "/run/jwtd/h.sock"
        http_listen = "localhost:80"
        debug_reason = "yes"
        token_header = "cookie"

        [claim_headers]
        Authorization = "sub"
        x-a = ""
        "x b" = "sub"

        [[routes]]
        scopes = ["a b"]

        [[routes]]
        prefix = "/x"
        claims = { role = [] }
        "#,
    )
    .unwrap_err();
    for expected in [
        "grpc_socket: the same path as http_socket",
        "http_listen: \"localhost:80\" is not an IP address and port",
        "token_header: \"cookie\" is not a header name",
        "claim_headers: \"authorization\": reserved",
        "claim_headers: \"x-a\": no claim named",
        "claim_headers: \"x b\": not a lower-case header name",
        "debug_reason: \"yes\" is neither true nor false",
        "routes[0].prefix: a path starting with \"/\" is required",
        "routes[1].claims.role: list at least one allowed value",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
}

#[test]
fn max_kidless_keys_is_a_policy_setting_inherited_by_issuer_tables() {
    let dev = format!("{}/deploy/dev/jwks.json", env!("CARGO_MANIFEST_DIR"));
    let c = from_toml(&format!(
        r#"
        max_kidless_keys = 2

        [[issuers]]
        issuer = "https://a.example"
        jwks_file = "{dev}"

        [[issuers]]
        issuer = "https://b.example"
        jwks_file = "{dev}"
        max_kidless_keys = 0
        "#
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let limits: Vec<usize> = c
        .verifier
        .issuers
        .iter()
        .map(|i| i.policy.max_kidless_keys)
        .collect();
    assert_eq!(limits, [2, 0]);
    let default = from_toml(&format!("jwks_file = \"{dev}\"")).expect("valid");
    assert_eq!(default.verifier.issuers[0].policy.max_kidless_keys, 4);
    let env = RawConfig::from_env(|k| (k == "JWTD_MAX_KIDLESS_KEYS").then(|| "7".to_owned()));
    assert_eq!(env.max_kidless_keys.as_deref(), Some("7"));
    for bad in ["1025", "-1", "many"] {
        let problems = from_toml(&format!(
            "jwks_file = \"{dev}\"\nmax_kidless_keys = \"{bad}\""
        ))
        .expect_err(bad);
        assert!(
            problems.iter().any(|p| p.starts_with("max_kidless_keys:")),
            "{bad}: {problems:?}"
        );
    }
}

#[test]
fn jwe_keys_are_per_issuer_inherited_read_once_and_can_be_opted_out_of() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dev = format!("{root}/deploy/dev/jwks.json");
    let pem = format!("{root}/tests/conformance/jwe/pem/ec-p256-pkcs8.pem");
    let other = format!("{root}/tests/conformance/jwe/pem/rsa-pkcs8.pem");
    let c = from_toml(&format!(
        r#"
        jwe_keys = "{pem}"

        [[issuers]]
        issuer = "https://a.example"
        jwks_file = "{dev}"

        [[issuers]]
        issuer = "https://b.example"
        jwks_file = "{dev}"
        jwe_keys = "{other}"

        [[issuers]]
        issuer = "https://c.example"
        jwks_file = "{dev}"
        jwe_keys = ""

        [[issuers]]
        issuer = "https://d.example"
        jwks_file = "{dev}"
        "#
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let sets: Vec<Option<usize>> = c.verifier.issuers.iter().map(|i| i.jwe.keys).collect();
    // a and d share the top-level file, read once; b has its own; c none.
    assert_eq!(sets, [Some(0), Some(1), None, Some(0)]);
    assert_eq!(
        c.jwe_keys,
        [
            std::path::PathBuf::from(&pem),
            std::path::PathBuf::from(&other)
        ]
    );
    assert_eq!(c.verifier.jwe.len(), 2);
    assert!(c.verifier.issuers.iter().all(|i| !i.jwe.unsigned_claims));
}

#[test]
fn jwe_problems_are_reported_once_per_file_and_claims_alone_need_keys() {
    let dev = format!("{}/deploy/dev/jwks.json", env!("CARGO_MANIFEST_DIR"));
    let problems = from_toml(&format!(
        r#"
        jwe_keys = "/nonexistent/jwe.json"

        [[issuers]]
        issuer = "https://a.example"
        jwks_file = "{dev}"

        [[issuers]]
        issuer = "https://b.example"
        jwks_file = "{dev}"
        jwe_keys = ""
        jwe_unsigned_claims = true

        [[issuers]]
        issuer = "https://c.example"
        jwks_file = "{dev}"
        jwe_unsigned_claims = "maybe"
        "#
    ))
    .unwrap_err();
    let missing: Vec<&String> = problems
        .iter()
        .filter(|p| p.contains("/nonexistent/jwe.json"))
        .collect();
    assert_eq!(missing.len(), 1, "{problems:#?}");
    assert!(missing[0].starts_with("issuers[0].jwe_keys: /nonexistent/jwe.json:"));
    for expected in [
        "issuers[1].jwe_unsigned_claims: needs jwe_keys",
        "issuers[2].jwe_unsigned_claims: \"maybe\" is neither true nor false",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
    // One issuer: the flags alone.
    let problems = Config::from_raw(raw(&[
        ("JWTD_JWKS_FILE", &dev),
        ("JWTD_JWE_UNSIGNED_CLAIMS", "true"),
    ]))
    .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("jwe_unsigned_claims: needs jwe_keys")),
        "{problems:#?}"
    );
}
