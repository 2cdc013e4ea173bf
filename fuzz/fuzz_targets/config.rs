//! The configuration: a TOML file and `JWTD_*` environment variables
//! (the input's lines `NAME=value` after a line `---`), merged and
//! validated whole as `jwtd serve` does. File paths are dropped before
//! validation (a fuzzed path could name /dev/zero); everything else is
//! judged.
#![no_main]

use jwtd::config::{Config, RawConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once("\n---\n").unwrap_or((text, ""));
    let mut problems = Vec::new();
    let file = RawConfig::from_toml(toml, &mut problems);
    let env: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let from_env = RawConfig::from_env(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    });
    let mut raw = from_env.or(file);
    // No file is read: a key source that is a file becomes the dev set.
    if raw.jwks_file.take().is_some() {
        raw.dev = Some("true".into());
    }
    raw.jwe_keys = None;
    for issuer in raw.issuers.iter_mut().flatten() {
        if issuer.jwks_file.take().is_some() {
            issuer.jwks_url = Some("https://issuer.example/jwks".into());
        }
        issuer.jwe_keys = None;
    }
    if let Ok(config) = Config::from_raw(raw) {
        let _ = format!("{:?}", config.verifier.issuers.len());
    }
});
