//! Compact JWE decryption on arbitrary tokens, with keys of every type
//! (AES key wrap and dir secrets, EC P-256 and P-384, RSA 2048) in two
//! sets, as per-issuer `jwe_keys` hold them.
#![no_main]

use std::sync::LazyLock;

use jwtd::verify::jwe::{self, DecryptionKeys};
use libfuzzer_sys::fuzz_target;

static SETS: LazyLock<(DecryptionKeys, DecryptionKeys)> = LazyLock::new(|| {
    let oct = r#"{"keys":[
        {"kty":"oct","kid":"kw128","k":"AAECAwQFBgcICQoLDA0ODw"},
        {"kty":"oct","kid":"kw256","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
        {"kty":"oct","kid":"dir","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}
    ]}"#;
    let pem = [
        include_str!("../../tests/conformance/jwe/pem/ec-p256-pkcs8.pem"),
        include_str!("../../tests/conformance/jwe/pem/ec-p384-sec1.pem"),
        include_str!("../../tests/conformance/jwe/pem/rsa-pkcs8.pem"),
    ]
    .join("\n");
    (
        DecryptionKeys::from_jwks(oct.as_bytes()).expect("oct keys"),
        DecryptionKeys::from_file_contents(pem.as_bytes()).expect("PEM keys"),
    )
});

fuzz_target!(|data: &[u8]| {
    let (oct, pem) = &*SETS;
    if let Ok((_, opened)) = jwe::decrypt_in(data, &[oct, pem]) {
        // What decrypts is then a token: the core takes it as one.
        let keys = jwtd::verify::KeySet::default();
        let _ = jwtd::verify::verify(
            &opened.plaintext,
            &keys,
            &jwtd::verify::Policy::default(),
            jwtd_fuzz::NOW,
        );
    }
});
