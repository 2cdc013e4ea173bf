//! The client certificate's SHA-256 thumbprint (RFC 8705 3.1), from
//! whatever form the front got it in ([`ClientCert`]).

use base64::Engine;

use crate::request::ClientCert;
use crate::verify::pem;

/// The SHA-256 of the DER client certificate, or `None` when what the
/// front passed is not one certificate (then a certificate-bound token is
/// refused).
pub fn thumbprint(cert: &ClientCert<'_>) -> Option<[u8; 32]> {
    match cert {
        ClientCert::Sha256(digest) => Some(*digest),
        ClientCert::UrlEncodedPem(text) => {
            let pem_text = percent_decode(text)?;
            let blocks = pem::parse(&pem_text).ok()?;
            // The leaf comes first (Envoy sends the peer's certificate
            // only: `source.certificate`).
            let leaf = blocks.into_iter().find(|b| b.label == "CERTIFICATE")?;
            Some(sha256(&leaf.der))
        }
        ClientCert::Rfc9440(value) => {
            // RFC 9440 2.2: an sf-binary, `:` standard base64 `:`.
            let inner = value.trim().strip_prefix(':')?.strip_suffix(':')?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .ok()?;
            (!der.is_empty()).then(|| sha256(&der))
        }
        ClientCert::Xfcc(value) => xfcc_hash(value),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `Hash=` of an `x-forwarded-client-cert` value with exactly one element:
/// several elements mean several hops appended theirs (Envoy's
/// `APPEND_FORWARD`), and which is the client's is then a guess; the
/// shipped Envoy configuration uses `SANITIZE_SET`, which sends one.
fn xfcc_hash(value: &str) -> Option<[u8; 32]> {
    let mut found = None;
    let mut quoted = false;
    let mut start = 0;
    let bytes = value.as_bytes();
    let mut fields = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => return None,
            b';' if !quoted => {
                fields.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(&value[start..]);
    for field in fields {
        let Some((name, v)) = field.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("hash") {
            if found.is_some() {
                return None;
            }
            found = Some(hex32(v.trim().trim_matches('"'))?);
        }
    }
    found
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Percent-decoding of a URL-encoded PEM (`%0A`, `%2B`...); `None` on a
/// broken escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A tiny self-signed certificate is not needed: the thumbprint is of
    // whatever DER the PEM holds.
    const DER: &[u8] = b"\x30\x03\x02\x01\x01";

    fn pem_of(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
    }

    fn url_encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn every_form_gives_the_same_thumbprint() {
        let want = sha256(DER);
        let pem = pem_of(DER);
        assert_eq!(
            thumbprint(&ClientCert::UrlEncodedPem(&url_encode(&pem))),
            Some(want)
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(DER);
        assert_eq!(
            thumbprint(&ClientCert::Rfc9440(&format!(":{b64}:"))),
            Some(want)
        );
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        let xfcc = format!("By=spiffe://a/b;Hash={hex};Subject=\"CN=x;O=y\";URI=spiffe://c");
        assert_eq!(thumbprint(&ClientCert::Xfcc(&xfcc)), Some(want));
        assert_eq!(thumbprint(&ClientCert::Sha256(want)), Some(want));
    }

    #[test]
    fn malformed_or_ambiguous_certificates_give_none() {
        let hex = "ab".repeat(32);
        for bad in [
            format!("Hash={hex},Hash={hex}"),
            format!("Hash={hex};Hash={hex}"),
            "Hash=abc".to_owned(),
            "By=x".to_owned(),
        ] {
            assert_eq!(thumbprint(&ClientCert::Xfcc(&bad)), None, "{bad}");
        }
        for bad in ["", "::", "abc", ":not base64!:"] {
            assert_eq!(thumbprint(&ClientCert::Rfc9440(bad)), None, "{bad}");
        }
        for bad in ["%zz", "not a pem", "%2D%2D"] {
            assert_eq!(thumbprint(&ClientCert::UrlEncodedPem(bad)), None, "{bad}");
        }
    }
}
