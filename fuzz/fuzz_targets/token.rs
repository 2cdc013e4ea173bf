//! The token path: size and shape, strict base64url, header and payload
//! JSON, key selection, signatures and every claim check, against the
//! conformance keys, with two policies (open, and strict).
#![no_main]

use std::sync::LazyLock;

use jwtd::verify::{self, KeySet, Policy};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<KeySet> = LazyLock::new(jwtd_fuzz::conformance_keys);
static OPEN: LazyLock<Policy> = LazyLock::new(|| Policy {
    required: Vec::new(),
    ..Policy::default()
});
static STRICT: LazyLock<Policy> = LazyLock::new(|| Policy {
    issuer: Some("https://issuer.example".into()),
    audiences: vec!["api".into()],
    required: vec!["exp".into(), "sub".into()],
    max_lifetime: Some(3600),
    typ: Some("at+jwt".into()),
    ..Policy::default()
});

fuzz_target!(|data: &[u8]| {
    let _ = verify::verify(data, &KEYS, &OPEN, jwtd_fuzz::NOW);
    let _ = verify::verify(data, &KEYS, &STRICT, jwtd_fuzz::NOW);
    // Claims that came alone in a JWE take the same claim checks.
    let sealed = verify::Sealed {
        typ: None,
        kid: None,
        key: verify::KeyFingerprint([0; 32]),
    };
    let _ = verify::verify_sealed(data, sealed, &STRICT, jwtd_fuzz::NOW);
});
