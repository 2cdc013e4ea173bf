//! Tests of the revocation checker.
