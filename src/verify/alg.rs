//! JWS algorithm identifiers and allow-lists.
//!
//! [`Algorithm`] is the closed set of `alg` values jwtd can verify. `none` is
//! deliberately not a variant: there is no way to configure or represent it,
//! so no code path can accept an unsecured token. [`AlgSet`] is a bit set used
//! for the policy's allow-list; it is `Copy` so checking membership on the hot
//! path costs one AND.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm jwtd can verify (RFC 7518 section 3, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256, fixed-size (r || s) signature.
    ES256,
    /// ECDSA on P-384 with SHA-384, fixed-size (r || s) signature.
    ES384,
    /// ECDSA on P-521 with SHA-512, fixed-size (r || s) signature.
    ES512,
    /// EdDSA; jwtd supports the Ed25519 curve only.
    EdDSA,
}

/// The key family an algorithm needs. A key of one family never serves an
/// algorithm of another: this is what stops RS256 -> HS256 confusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Symmetric secret (`kty: oct`).
    Hmac,
    /// RSA public key (`kty: RSA`), for both PKCS#1 v1.5 and PSS.
    Rsa,
    /// Elliptic-curve public key (`kty: EC`) on the given curve.
    Ec(Curve),
    /// Ed25519 public key (`kty: OKP`, `crv: Ed25519`).
    Ed25519,
}

/// NIST curves for ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// P-256 (secp256r1).
    P256,
    /// P-384 (secp384r1).
    P384,
    /// P-521 (secp521r1).
    P521,
}

impl Curve {
    /// The JWK `crv` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Length in bytes of one coordinate (and of r and s in a signature).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The algorithm bound to this curve (RFC 7518 3.4: one curve, one hash).
    pub fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
            Curve::P521 => Algorithm::ES512,
        }
    }
}

impl Algorithm {
    /// Every algorithm, in declaration order.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The registered `alg` name, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses a header `alg` value; exact, case-sensitive match (RFC 7515
    /// 4.1.1 makes `alg` a case-sensitive string).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The key family this algorithm needs.
    pub fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Family::Rsa,
            Algorithm::ES256 => Family::Ec(Curve::P256),
            Algorithm::ES384 => Family::Ec(Curve::P384),
            Algorithm::ES512 => Family::Ec(Curve::P521),
            Algorithm::EdDSA => Family::Ed25519,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an `alg` name jwtd does not know (or refuses: `none`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmNameError {
    /// `none` in any spelling: unsecured JWS is never allowed.
    #[error("algorithm 'none' is never allowed")]
    None,
    /// Not a JWS algorithm jwtd implements.
    #[error(
        "unknown algorithm '{0}' (expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)"
    )]
    Unknown(String),
}

impl FromStr for Algorithm {
    type Err = AlgorithmNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_none_spelling(s) {
            return Err(AlgorithmNameError::None);
        }
        Algorithm::from_name(s).ok_or_else(|| AlgorithmNameError::Unknown(s.to_owned()))
    }
}

/// True for `none` in any letter case, with or without surrounding
/// whitespace: every spelling an attacker tries against case-insensitive
/// verifiers. Such tokens are counted as `alg_none` rather than as an
/// unknown algorithm so the anomaly is visible.
pub fn is_none_spelling(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("none")
}

/// A set of algorithms, e.g. the policy's allow-list.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

impl AlgSet {
    /// The empty set.
    pub const EMPTY: AlgSet = AlgSet(0);

    /// Every algorithm jwtd implements.
    pub fn all() -> AlgSet {
        Algorithm::ALL.into_iter().collect()
    }

    /// Whether `alg` is in the set.
    #[inline]
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    /// Adds `alg` to the set.
    pub fn insert(&mut self, alg: Algorithm) {
        self.0 |= alg.bit();
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Algorithm> for AlgSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        let mut set = AlgSet::EMPTY;
        for a in iter {
            set.insert(a);
        }
        set
    }
}

impl fmt::Debug for AlgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
    }

    #[test]
    fn alg_names_are_case_sensitive() {
        assert!(matches!(
            "hs256".parse::<Algorithm>(),
            Err(AlgorithmNameError::Unknown(_))
        ));
        assert!(matches!(
            "EDDSA".parse::<Algorithm>(),
            Err(AlgorithmNameError::Unknown(_))
        ));
    }

    #[test]
    fn none_is_refused_in_every_spelling() {
        for s in ["none", "None", "NONE", "nOnE", " none", "none\t"] {
            assert_eq!(
                s.parse::<Algorithm>(),
                Err(AlgorithmNameError::None),
                "{s:?}"
            );
        }
    }

    #[test]
    fn algset_membership() {
        let set: AlgSet = [Algorithm::ES256, Algorithm::EdDSA].into_iter().collect();
        assert!(set.contains(Algorithm::ES256));
        assert!(set.contains(Algorithm::EdDSA));
        assert!(!set.contains(Algorithm::HS256));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(AlgSet::all().iter().count(), 13);
    }
}
