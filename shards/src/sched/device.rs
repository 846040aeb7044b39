//! The largest request a block device takes, from sysfs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The device's `max_sectors_kb` in bytes, for the block device holding
/// `path`; `None` when there is none or it cannot be read (tmpfs, overlay,
/// no sysfs): then the configured piece size applies as it is.
pub fn max_io_bytes(path: &Path) -> Option<usize> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return None;
    }
    let device = Path::new("/sys/dev/block")
        .join(format!("{major}:{minor}"))
        .canonicalize()
        .ok()?;
    // A partition has no queue of its own: its disk (the parent) does.
    [device.join("queue"), device.join("../queue")]
        .iter()
        .find_map(|queue| std::fs::read_to_string(queue.join("max_sectors_kb")).ok())
        .and_then(|kb| kb.trim().parse::<usize>().ok())
        .and_then(|kb| kb.checked_mul(1024))
}
