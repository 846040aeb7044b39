//! The peers: what our rows are compared with in the same run, with the
//! same workload shapes. fio, the raw glommio `DmaFile` peer and the sync
//! loop share one prefilled data file laid out as the engine's blob files
//! (a header page, then the data), and append with the engine's
//! preallocation; commonware-runtime prefills its own blobs.

#[cfg(feature = "commonware")]
pub mod commonware;
pub mod dma;
pub mod fio;
pub mod sync_loop;

/// The page before the data in every raw peer's file, as in the engine's
/// blob files: data offset `x` lives at file offset `HEADER_PAGE_BYTES + x`,
/// so 128 KiB I/Os sit off 128 KiB alignment on every target alike.
pub const HEADER_PAGE_BYTES: u64 = shardblob_shards::header::HEADER_LEN;

/// The engine's preallocation step: appends reserve space past the end
/// (`fallocate` with KEEP_SIZE) in steps of this size.
pub const PREALLOCATE_BYTES: u64 = shardblob_shards::blob::PREALLOCATE_BYTES;

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::targets::pattern;

/// Chunk of prefill writes.
pub const PREFILL_CHUNK_BYTES: usize = 1 << 20;

/// Writes a header page and `len_bytes` of pattern to a new file at `path`, makes it durable
/// and drops it from the page cache (the peers read it with O_DIRECT).
pub fn prefill_raw_file(path: &Path, len_bytes: u64) -> Result<(), String> {
    let fail = |op: &str, e: std::io::Error| format!("prefill {}: {op}: {e}", path.display());
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| fail("create directory", e))?;
    }
    let mut file = File::create(path).map_err(|e| fail("create", e))?;
    let chunk = pattern(PREFILL_CHUNK_BYTES);
    let mut written_bytes = 0u64;
    let len_bytes = HEADER_PAGE_BYTES + len_bytes;
    while written_bytes < len_bytes {
        let n = (len_bytes - written_bytes).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).map_err(|e| fail("write", e))?;
        written_bytes += n as u64;
    }
    file.sync_all().map_err(|e| fail("sync", e))?;
    // SAFETY: posix_fadvise on an open descriptor only gives the kernel a hint.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    Ok(())
}
