//! A local key file (a JWK set or PEM public keys) re-read when it changes.
//!
//! [`watch_file`] polls the file's metadata once a second and reloads it
//! when its identity changes (device, inode, size, modification and change
//! times), and once at start. The metadata is read through symlinks, so
//! Kubernetes' ConfigMap and Secret updates, which swap the `..data` symlink
//! to a new directory, show up as a new inode. A reload parses and validates
//! the *whole* file first ([`KeySet::from_file_contents`]) and publishes it
//! with one swap ([`KeySink::set`]); a file that is missing,
//! unreadable, half written or holds no usable key leaves the last good set
//! in place, with a warning. Unchanged keys keep their fingerprints across
//! reloads, so the result cache survives a reload that changes nothing.
//!
//! [`watch_jwe_file`] does the same for the JWE decryption keys
//! (`jwe_keys`), which are private keys: never logged, validated whole.
//!
//! Polling instead of inotify: it needs no platform API, sees symlink swaps
//! anywhere along the path, and one `stat` a second costs nothing.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use super::{KeySink, log_skipped};
use crate::verify::KeySet;
use crate::verify::jwe::DecryptionKeys;

/// How often the file's metadata is checked.
pub const FILE_POLL: Duration = Duration::from_secs(1);

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    /// Inode change time: catches an in-place rewrite of the same length
    /// within the filesystem's mtime granularity (`cp -p`, `rsync -t`).
    changed: (i64, i64),
}

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
        changed: (m.ctime(), m.ctime_nsec()),
    })
}

/// Reloads `path` into `sink` whenever it changes,
/// forever (abort the task to stop). `every` is the poll period
/// ([`FILE_POLL`] in the daemon).
pub async fn watch_file(path: PathBuf, sink: impl KeySink, every: Duration) {
    watch_path(path, every, "key set", move |path, bytes| {
        match KeySet::from_file_contents(bytes) {
            Ok(keys) => {
                log_skipped(&keys);
                tracing::info!(path = %path.display(), keys = keys.keys().len(), "key set reloaded");
                sink.set(keys);
            }
            Err(e) => {
                sink.fail();
                tracing::warn!(path = %path.display(), error = %e, "key set file rejected; keeping the last good set");
            }
        }
    })
    .await;
}

/// Reloads the JWE decryption keys at `path` (`jwe_keys`) whenever the
/// file changes, handing each set validated whole to `publish` (the
/// verifier's swap); a file that is missing, half written or holds no
/// usable key keeps the last good set, with a warning. Like [`watch_file`],
/// it knows nothing of the verifier.
pub async fn watch_jwe_file(
    path: PathBuf,
    publish: impl Fn(Arc<DecryptionKeys>) + Send + 'static,
    every: Duration,
) {
    watch_path(path, every, "JWE decryption key", move |path, bytes| {
        match DecryptionKeys::from_file_contents(bytes) {
            Ok(keys) => {
                for skipped in keys.skipped_messages() {
                    tracing::warn!(path = %path.display(), "JWE decryption {skipped}");
                }
                tracing::info!(path = %path.display(), keys = keys.len(), "JWE decryption keys reloaded");
                publish(Arc::new(keys));
            }
            // The error names kids and problems, never key material.
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "JWE decryption key file rejected; keeping the last good keys"),
        }
    })
    .await;
}

/// The polling loop both watchers share: `load` gets the bytes of each new
/// version of the file (`what` names it in warnings).
async fn watch_path(
    path: PathBuf,
    every: Duration,
    what: &'static str,
    load: impl Fn(&std::path::Path, &[u8]) + Send + 'static,
) {
    // No baseline: the first tick reloads once, so a change between the
    // start-up load and this task's first look is not missed (an unchanged
    // reload keeps every fingerprint, and so the cache).
    let mut seen: Option<Stamp> = None;
    let mut missing_reported = false;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = match stamp(&path) {
            Ok(s) => s,
            Err(e) => {
                if !missing_reported {
                    tracing::warn!(path = %path.display(), error = %e, "{what} file unreadable; keeping the last good set");
                    missing_reported = true;
                }
                continue;
            }
        };
        missing_reported = false;
        if seen.as_ref() == Some(&now) {
            continue;
        }
        // Off the async workers: a hung network filesystem must not stall
        // request handling.
        let read_path = path.clone();
        let bytes = match tokio::task::spawn_blocking(move || std::fs::read(read_path)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                // Not marked as seen: a transient failure is retried next tick.
                tracing::warn!(path = %path.display(), error = %e, "{what} file unreadable; keeping the last good set");
                continue;
            }
            Err(_) => continue,
        };
        seen = Some(now);
        load(&path, &bytes);
    }
}
