//! What the fuzz targets share: fixed keys from the conformance sets, and
//! a fixed clock (targets must be deterministic: the same input, the same
//! path).

use jwtd::verify::KeySet;

/// The Unix second every target evaluates time at.
pub const NOW: i64 = 1_700_000_000;

/// Every key set of `tests/conformance/keys/` in one set: RSA, RSA-PSS,
/// EC P-256/P-521, Ed25519 and HMAC keys, with and without kids.
pub fn conformance_keys() -> KeySet {
    let mut all: Option<KeySet> = None;
    for text in [
        include_str!("../../tests/conformance/keys/envoy-es256.jwks.json"),
        include_str!("../../tests/conformance/keys/envoy-rsa.jwks.json"),
        include_str!("../../tests/conformance/keys/jvl-hmac.jwks.json"),
        include_str!("../../tests/conformance/keys/jvl-okp.jwks.json"),
        include_str!("../../tests/conformance/keys/jvl-rsa-pss.jwks.json"),
        include_str!("../../tests/conformance/keys/rfc7515-a1-hs256.jwks.json"),
        include_str!("../../tests/conformance/keys/rfc7515-a2-rsa.jwks.json"),
        include_str!("../../tests/conformance/keys/rfc7515-a3-p256.jwks.json"),
        include_str!("../../tests/conformance/keys/rfc7515-a4-p521.jwks.json"),
        include_str!("../../tests/conformance/keys/rfc8037-ed25519.jwks.json"),
    ] {
        let Ok(set) = KeySet::from_jwks(text.as_bytes()) else {
            continue;
        };
        match &mut all {
            Some(all) => all.extend(set),
            None => all = Some(set),
        }
    }
    all.expect("the conformance key sets load")
}
