//! The data directory and its `LOCK`.
//!
//! One engine owns a data directory at a time: `<data_dir>/LOCK` is held with
//! an exclusive `flock` for as long as the [`DataDir`] lives, so a second
//! opener fails at once instead of corrupting blobs. The LOCK file also holds
//! one full page: each shard opens it as its first DMA file, which keeps
//! glommio 0.9 from wrongly marking the device as pollable (ARCHITECTURE.md, glommio 0.9 traps).
//!
//! Taking the lock also deletes the tombstones of removed partitions (see
//! `store.rs`): a removal commits by renaming the partition away, so what
//! its deletion left behind is garbage nobody lists.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::BLOCK_SIZE;
use crate::name::{is_tombstone, LOCK_FILE_NAME};
use crate::{Error, Result};

/// A locked data directory. Dropping the last `Arc` releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if missing, takes its LOCK and deletes the
    /// tombstones that removed partitions left behind. A relative path is
    /// made absolute against the working directory now: the shards open
    /// paths under it later, and glommio fails on a relative directory
    /// path. Needs no free space when the LOCK file exists.
    pub fn lock(path: impl Into<PathBuf>) -> Result<Arc<DataDir>> {
        let given = path.into();
        let path = std::path::absolute(&given).map_err(|e| Error::DataDir {
            dir: given.clone(),
            reason: "cannot make it an absolute path; set data_dir to an absolute path".to_string(),
            source: Some(e),
        })?;
        let dir_error = |reason: &str, source: io::Error| Error::DataDir {
            dir: path.clone(),
            reason: reason.to_string(),
            source: Some(source),
        };
        fs::create_dir_all(&path)
            .map_err(|e| dir_error("cannot create it; pick a writable data_dir", e))?;
        let lock_path = path.join(LOCK_FILE_NAME);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| dir_error("cannot open LOCK; is the directory writable?", e))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Error::DataDirLocked { dir: path }
            } else {
                dir_error("cannot lock LOCK", e)
            });
        }
        let page = lock_page();
        let current = lock.metadata().map(|m| m.len()).unwrap_or(0);
        if current < BLOCK_SIZE {
            lock.write_all(&page)
                .and_then(|()| lock.sync_all())
                .map_err(|e| dir_error("cannot write LOCK", e))?;
        }
        delete_tombstones(&path);
        Ok(Arc::new(DataDir { path, _lock: lock }))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The LOCK file: at least one page, safe to open with direct I/O.
    pub fn lock_path(&self) -> PathBuf {
        self.path.join(LOCK_FILE_NAME)
    }
}

/// Deletes the tombstones of partition removals that committed but did not
/// finish deleting (a crash, a failed unlink). Best effort: a tombstone is
/// never listed, and the next start tries again. Bounded by the listing.
fn delete_tombstones(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut cleaned = 0;
    for entry in entries.flatten() {
        if is_tombstone(&entry.file_name()) {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => cleaned += 1,
                Err(e) => tracing::warn!(
                    tombstone = %entry.path().display(),
                    error = %e,
                    "cannot delete the tombstone of a removed partition; the next start tries again"
                ),
            }
        }
    }
    if cleaned > 0 {
        tracing::info!(
            data_dir = %dir.display(),
            tombstones = cleaned,
            "deleted the tombstones of partition removals that did not finish"
        );
    }
}

fn lock_page() -> Vec<u8> {
    let mut page = b"shardblob data directory: held with flock by the running engine\n".to_vec();
    page.resize(BLOCK_SIZE as usize, b'\n');
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_directory() {
        let dir = std::env::temp_dir().join(format!("shardblob-lock-{}", std::process::id()));
        let first = DataDir::lock(&dir).unwrap();
        let err = DataDir::lock(&dir).unwrap_err();
        assert!(matches!(err, Error::DataDirLocked { .. }));
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        assert!(fs::metadata(first.lock_path()).unwrap().len() >= BLOCK_SIZE);
        drop(first);
        let again = DataDir::lock(&dir).expect("lock is released with the DataDir");
        drop(again);
        fs::remove_dir_all(&dir).unwrap();
    }
}
