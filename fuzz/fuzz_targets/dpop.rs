//! DPoP proofs (RFC 9449): the strict header (typ, alg, the embedded jwk,
//! parsed as a trusted key is), the payload (jti, htm, htu and its URI
//! normalisation, iat, ath), the thumbprint and the signature.
#![no_main]

use jwtd::verify::dpop::{self, Expect, ProofPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = ProofPolicy::default();
    for uri in ["https://api.example.com/orders", "https://API.example.com:443/a/../orders?x"] {
        let expect = Expect {
            method: "GET",
            uri,
            access_token: b"token",
            jkt: None,
        };
        let _ = dpop::verify_proof(data, &policy, &expect, jwtd_fuzz::NOW);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dpop::normalize_uri(text);
    }
});
