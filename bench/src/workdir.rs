//! The run's temporary data directory: a fresh directory under --data-dir,
//! refused on tmpfs, where O_DIRECT fails (the engine, fio and the dma peer
//! all need it).

use std::path::{Path, PathBuf};

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Refuses a data directory on tmpfs, where O_DIRECT fails.
fn check_filesystem(dir: &Path) -> Result<(), String> {
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: path holds a NUL byte", dir.display()))?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!(
            "{}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    if stat.f_type as i64 == TMPFS_MAGIC {
        return Err(format!(
            "{} is on tmpfs, which has no O_DIRECT: pass --data-dir on ext4 or xfs",
            dir.display()
        ));
    }
    Ok(())
}

/// Creates `<parent>/shardblob-bench-<stamp>-<pid>`.
pub fn make_work_dir(parent: &Path, stamp: &str) -> Result<PathBuf, String> {
    check_filesystem(parent)?;
    let dir = parent.join(format!("shardblob-bench-{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}
