//! jwtd's integration tests: one binary, one module per area.
//!
//! Tests that exercise the command line run the real `jwtd` binary built by
//! cargo (`CARGO_BIN_EXE_jwtd`) with files in a fresh temporary directory.
//! Every `jwtd serve` is started by one launcher, `support::Jwtd` (flags,
//! environment, config file, key source, captured log, readiness, metrics,
//! kill on drop), and tests wait for conditions, never for fixed times (see
//! `support`).

mod adversarial;
mod bound;
mod bound_attacks;
mod cli;
mod conformance;
mod daemon;
mod deploy;
mod envoy;
mod grpc;
mod http;
mod jwe;
mod jwe_attacks;
mod layering;
mod metrics;
mod nginx;
mod observability;
mod pipeline;
mod props;
mod readme;
mod remote;
mod revocation;
mod support;
