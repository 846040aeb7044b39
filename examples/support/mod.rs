//! What the examples share: an error type, a check, the shard count, and a
//! temporary data directory. Included by each example with `#[path]`.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

/// Errors of the examples: engine errors and their own checks. `Send`, so a
/// task on a shard can hand one back to the main thread.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// `Ok` if `ok`, else an error naming the check.
pub fn check(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

/// Prints the engine's logs (the library installs no subscriber) on stderr:
/// `info` and up, or what `RUST_LOG` says (`RUST_LOG=shardblob=debug`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Two shards, or one on a single-CPU machine. (`Config::default()` has
/// `shards = 0`: one per CPU.)
pub fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// A data directory unique to this run, under the system temp directory,
/// removed on drop. (The engine creates it. It must support O_DIRECT: ext4
/// or xfs, not tmpfs.)
pub struct TempDataDir(PathBuf);

impl TempDataDir {
    pub fn new(program: &str) -> TempDataDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        TempDataDir(std::env::temp_dir().join(format!(
            "shardblob-{program}-{}-{nanos}",
            std::process::id()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
