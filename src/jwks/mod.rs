//! Key sources: where each issuer's key set comes from, and when to read it
//! again.
//!
//! Parsing and validating a set is the core's job ([`crate::verify::KeySet`]);
//! this module only fetches or reads bytes, hands them to the core, and
//! publishes each validated set through a [`source::KeySink`] (the
//! verifier implements it). Nothing here is on a request's path except the
//! [`refresh::RefreshGate`] an unknown kid waits on.
//!
//! - [`source`]: one task per issuer keeps its set current: a file (watched),
//!   a JWKS URL, or OIDC discovery. A new set is validated whole and swapped
//!   atomically; a failed load keeps the last good set.
//! - [`refresh`]: unknown-kid refreshes, single flight plus cooldown.

pub mod refresh;
pub mod source;
