//! `jwtd serve` configuration: every setting, its default, its sources, and
//! validation that reports every problem at once.
//!
//! Two stages, as in ripgrep: [`RawConfig`] holds each setting as text, as
//! close to its source as possible; [`Config::from_raw`] types and checks all
//! of them and returns either a [`Config`] or the full list of problems (the
//! binary prints one per line and exits [`EXIT_CONFIG`]).
//!
//! Sources, highest precedence first: command-line flags, `JWTD_*`
//! environment variables, the TOML file given by `--config`, defaults.
//!
//! # Settings
//!
//! [`SETTINGS`] is the one list of settings: each declares its TOML key,
//! flag, `JWTD_*` variable, `--help` topic, default and purpose once
//! (`config/settings.rs`). [`RawConfig`], [`RawIssuer`], the readers of the
//! environment and the file, and the flags of `jwtd serve` all come from it;
//! a test checks `docs/configuration.md`, the table users read, against it.
//!
//! Durations read as `30`, `30s`, `500ms`, `100us`, `5m`, `1h`, `1d`
//! ([`parse_duration`]). Lists in TOML are arrays; on the command line and
//! in the environment, comma-separated.
//!
//! # Layout
//!
//! ```text
//! settings    the one list; RawConfig and RawIssuer generated from it
//! raw         environment and TOML into RawConfig; unknown names
//! origin      where each given value came from, for problems
//! duration    the duration syntax shared by every subcommand
//! validate    RawConfig -> Config, in named steps; the shared checks
//! fronts      the proxy fronts' listeners, token lookup, headers, routes
//! revocation  the revocation store's settings
//! issuers     each issuer's key source and token policy
//! ```

mod duration;
mod fronts;
mod issuers;
mod origin;
mod raw;
mod revocation;
mod settings;
mod validate;

pub use duration::{parse_duration, parse_whole_seconds};
pub use fronts::Fronts;
pub use issuers::{DEV_ISSUER, DEV_JWKS, IssuerSource, KeySource, required_claims};
pub use origin::{Origin, Origins};
pub use raw::{RawBinding, RawRoute, env_names, unknown_env};
pub use settings::{Kind, RawConfig, RawIssuer, SETTINGS, Scope, Setting, Topic, Value};
pub use validate::{Config, ListenLimits, default_socket};

/// Exit status for a bad configuration: sysexits' EX_USAGE, 64, as linkerd
/// uses (EX_CONFIG, 78, would say the same; 64 is what service managers and
/// operators of sidecars already expect). `deploy/systemd/jwtd.service`
/// does not restart on it: a bad configuration stays bad until edited.
pub const EXIT_CONFIG: u8 = 64;

#[cfg(test)]
mod tests;
