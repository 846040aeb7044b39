//! The drain between two targets' runs: the filesystem of the data directory
//! is flushed (`syncfs`) until the kernel holds no dirty or writeback pages
//! (up to the counters' per-CPU slack), so no target pays for the writes of
//! the one before it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// What counts as nothing unwritten: /proc/meminfo's counters are summed
/// from per-CPU batches and can stay a few pages off zero after a full
/// `sync` (8 KiB on the dev VM), so up to this much counts as drained.
pub const DRAINED_KIB: u64 = 256;

/// Most flush rounds per drain; other programs' writes may keep the
/// counters above zero, and a drain must not stall the run.
const ROUNDS_MAX: usize = 5;
const PAUSE: Duration = Duration::from_millis(2);

/// Dirty plus writeback memory in KiB, from /proc/meminfo text.
pub fn unwritten_kib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn unwritten_now_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo").map_or(0, |text| unwritten_kib(&text))
}

/// Flushes `dir`'s filesystem until nothing (at most `DRAINED_KIB`) is
/// dirty or under writeback, for at most `ROUNDS_MAX` rounds; whether it
/// got there.
pub fn drain(dir: &Path) -> bool {
    let Ok(handle) = File::open(dir) else {
        return false;
    };
    for _ in 0..ROUNDS_MAX {
        // SAFETY: syncfs on a descriptor we hold open.
        unsafe {
            libc::syncfs(handle.as_raw_fd());
        }
        if unwritten_now_kib() <= DRAINED_KIB {
            return true;
        }
        std::thread::sleep(PAUSE);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_and_writeback_are_added() {
        let meminfo = "MemTotal: 100 kB\nDirty:            1234 kB\nWriteback:          16 kB\nWritebackTmp:   7 kB\n";
        assert_eq!(unwritten_kib(meminfo), 1250);
        assert_eq!(unwritten_kib("MemTotal: 1 kB\n"), 0);
    }
}
