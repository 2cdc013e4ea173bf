//! Minimal PEM (RFC 7468) reading: the labelled base64 blocks of a key file.
//!
//! Only what key loading needs: find every `-----BEGIN L-----` ...
//! `-----END L-----` block, decode its body, and return the label with the
//! DER bytes. Headers inside blocks (RFC 1421 `Proc-Type:`) mean an encrypted
//! key, which jwtd does not read, and are reported as such.

use base64::Engine;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The label, e.g. `PUBLIC KEY`.
    pub label: String,
    /// The decoded body (DER).
    pub der: Vec<u8>,
}

/// Why a PEM file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `-----BEGIN` line at all.
    #[error("no PEM block found")]
    Empty,
    /// A block without its `-----END` line.
    #[error("PEM block '{0}' has no END line")]
    Unterminated(String),
    /// The body is not base64.
    #[error("PEM block '{0}' is not valid base64")]
    Base64(String),
    /// An encrypted (password-protected) key.
    #[error("PEM block '{0}' is encrypted; jwtd reads unencrypted keys only")]
    Encrypted(String),
    /// The text is not UTF-8.
    #[error("PEM text is not UTF-8")]
    NotUtf8,
}

/// Decodes every PEM block in `text`, in order. Text outside blocks is
/// ignored (OpenSSL writes comments there).
///
/// # Errors
///
/// If there is no block, or any block is unterminated, encrypted or not base64.
pub fn parse(text: &str) -> Result<Vec<Block>, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut terminated = false;
        for line in lines.by_ref() {
            if line == end {
                terminated = true;
                break;
            }
            if line.contains(':') {
                return Err(PemError::Encrypted(label.to_owned()));
            }
            body.push_str(line);
        }
        if !terminated {
            return Err(PemError::Unterminated(label.to_owned()));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| PemError::Base64(label.to_owned()))?;
        if label.contains("ENCRYPTED") {
            return Err(PemError::Encrypted(label.to_owned()));
        }
        blocks.push(Block {
            label: label.to_owned(),
            der,
        });
    }
    if blocks.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(blocks)
}

/// Encodes DER as one PEM block with 64-column lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_surrounding_text() {
        let der: Vec<u8> = (0..=255).collect();
        let text = format!("comment\n{}trailer\n", encode("PUBLIC KEY", &der));
        let blocks = parse(&text).unwrap();
        assert_eq!(
            blocks,
            vec![Block {
                label: "PUBLIC KEY".into(),
                der
            }]
        );
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(parse("nothing"), Err(PemError::Empty));
        assert_eq!(
            parse("-----BEGIN PUBLIC KEY-----\nAAAA\n"),
            Err(PemError::Unterminated("PUBLIC KEY".into()))
        );
        assert_eq!(
            parse("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"),
            Err(PemError::Base64("PUBLIC KEY".into()))
        );
        assert_eq!(
            parse(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            Err(PemError::Encrypted("ENCRYPTED PRIVATE KEY".into()))
        );
    }
}
