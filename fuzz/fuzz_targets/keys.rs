//! Key files: JWK sets and PEM, as `jwks_file` and `jwe_keys` read them
//! (trusted public keys and private decryption keys), and the PEM reader.
#![no_main]

use jwtd::verify::KeySet;
use jwtd::verify::jwe::DecryptionKeys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::from_file_contents(data) {
        // A set that loads answers its questions.
        for key in set.keys() {
            let _ = key.kid();
        }
        let _ = set.skipped().len();
    }
    if let Ok(keys) = DecryptionKeys::from_file_contents(data) {
        let _ = keys.skipped_messages();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jwtd::verify::pem::parse(text);
        let _ = KeySet::from_pem(text, Some("kid"));
    }
});
