//! Hostile tokens beyond the conformance vectors.
