//! Startup checks: refuse to start, with a message that says what to change,
//! instead of failing later in a way that is hard to read.
//!
//! glommio reports some of these problems as a panic in a shard thread or an
//! obscure errno, and one of them not at all: when the locked-memory limit is
//! too small for its registered buffers it silently falls back to slower,
//! unregistered I/O. So the engine checks, before it starts any shard:
//! the locked-memory limit, that io_uring is usable, that `data_dir` can be
//! created and written, that its filesystem keeps data across a reboot
//! (tmpfs and ramfs do not; `allow_volatile_data_dir` accepts them for tests
//! and caches), and that it supports O_DIRECT. None of these checks needs
//! free space once the data_dir has its LOCK: the engine must start on a
//! full disk, so that data can be read and removed.
//!
//! Locked memory, as measured on Linux 6.18 (and read in glommio 0.9's
//! `Reactor::new`): each shard has three io_uring rings (main, latency, poll)
//! and registers its one `io_memory` buffer with each of them. Without
//! CAP_IPC_LOCK the kernel charges every registration separately, and each
//! ring's own memory too, against the *user's* locked-memory count, bounded
//! by `RLIMIT_MEMLOCK`. So the engine needs
//! `shards × 3 × (io_memory + ring memory)`, and other io_uring users of the
//! same user share the budget. With CAP_IPC_LOCK nothing is charged, but
//! glommio still refuses a limit below 512 KiB.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use shardblob_shards::name::LOCK_FILE_NAME;
use shardblob_shards::Error;

use crate::config::ResolvedConfig;

/// io_uring rings glommio 0.9 creates per executor, each registering the
/// executor's whole `io_memory`.
pub const RINGS_PER_SHARD: u64 = 3;

/// glommio 0.9 refuses to create an executor below this `RLIMIT_MEMLOCK`,
/// whatever the process's capabilities.
pub const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 * 1024;

const PAGE_BYTES: u64 = 4096;

/// CAP_IPC_LOCK's bit in the capability sets of `/proc/self/status`.
const CAP_IPC_LOCK_BIT: u32 = 14;

fn page_up(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES
}

/// The buffer glommio really allocates and registers for `io_memory_bytes`:
/// rounded up to 4 KiB, at least 64 KiB.
pub fn registered_io_memory_bytes(io_memory_bytes: usize) -> u64 {
    page_up(io_memory_bytes as u64).max(64 * 1024)
}

/// Memory of one io_uring ring of `ring_depth` entries that the kernel
/// charges as locked: the submission entries (64 bytes each) and the ring
/// of completions (16 bytes each, twice as many) with the submission index
/// array (4 bytes each) behind a header, each rounded up to pages. The
/// kernel rounds the depth up to a power of two. Measured on Linux 6.18:
/// 16 KiB at depth 128, 104 KiB at 1024, 404 KiB at 4096.
pub fn ring_locked_bytes(ring_depth: usize) -> u64 {
    let entries = ring_depth.max(1).next_power_of_two() as u64;
    const RINGS_HEADER_BYTES: u64 = 256;
    page_up(entries * 64) + page_up(RINGS_HEADER_BYTES + 2 * entries * 16 + entries * 4)
}

/// Locked memory the engine's rings need without CAP_IPC_LOCK.
pub fn locked_memory_bytes(shards: usize, io_memory_bytes: usize, ring_depth: usize) -> u64 {
    shards as u64
        * RINGS_PER_SHARD
        * (registered_io_memory_bytes(io_memory_bytes) + ring_locked_bytes(ring_depth))
}

impl ResolvedConfig {
    /// Checks that the engine can start on this machine with this
    /// configuration: locked-memory limit, io_uring, a writable `data_dir`
    /// (created if missing) on a persistent filesystem with O_DIRECT. The
    /// error says what to change.
    pub fn preflight(&self) -> Result<(), Error> {
        let limit_bytes = memlock_limit_bytes().map_err(|e| Error::LockedMemory {
            needed_bytes: self.locked_memory_bytes(),
            limit_bytes: None,
            reason: format!("cannot read the locked-memory limit (getrlimit): {e}"),
        })?;
        let ipc_lock = has_cap_ipc_lock();
        check_locked_memory(self, limit_bytes, ipc_lock)?;
        tracing::info!(
            needed_bytes = self.locked_memory_bytes(),
            limit_bytes = ?limit_bytes,
            cap_ipc_lock = ipc_lock,
            "locked memory: the rings and their registered io_memory fit `ulimit -l` (None: unlimited; with CAP_IPC_LOCK nothing is charged)"
        );
        check_io_uring()?;
        check_data_dir(&self.config.data_dir, self.config.allow_volatile_data_dir)
    }

    /// Bytes of locked memory this configuration's io_uring rings need (see
    /// the module documentation).
    pub fn locked_memory_bytes(&self) -> u64 {
        locked_memory_bytes(
            self.shards(),
            self.config.io_memory_bytes,
            self.config.ring_depth,
        )
    }
}

/// The soft `RLIMIT_MEMLOCK` (what the kernel enforces), `None` if unlimited.
fn memlock_limit_bytes() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur))
}

/// Whether this process has CAP_IPC_LOCK in its effective set (root usually
/// has). Unknown counts as no.
fn has_cap_ipc_lock() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| status_has_cap_ipc_lock(&status))
}

/// Reads the `CapEff:` line of a `/proc/<pid>/status` text.
fn status_has_cap_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK_BIT) != 0)
}

fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

/// Checks the locked-memory limit (`None` = unlimited) for `resolved`; pure,
/// so tests can try any limit.
fn check_locked_memory(
    resolved: &ResolvedConfig,
    limit_bytes: Option<u64>,
    ipc_lock: bool,
) -> Result<(), Error> {
    let Some(limit_bytes) = limit_bytes else {
        return Ok(());
    };
    let needed = resolved.locked_memory_bytes();
    let too_low = |reason: String| Error::LockedMemory {
        needed_bytes: needed,
        limit_bytes: Some(limit_bytes),
        reason,
    };
    if limit_bytes < GLOMMIO_MEMLOCK_MIN_BYTES {
        return Err(too_low(format!(
            "`ulimit -l` is {} KiB, and glommio refuses to start below {} KiB, even as root; raise it with `ulimit -l {}` (LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf)",
            kib(limit_bytes),
            kib(GLOMMIO_MEMLOCK_MIN_BYTES),
            kib(GLOMMIO_MEMLOCK_MIN_BYTES.max(needed)),
        )));
    }
    if ipc_lock || needed <= limit_bytes {
        return Ok(());
    }
    let config = &resolved.config;
    let shards = resolved.shards() as u64;
    let ring = ring_locked_bytes(config.ring_depth);
    // The largest io_memory_bytes that fits: whole pages, glommio's 64 KiB minimum.
    let per_ring_budget = limit_bytes / shards / RINGS_PER_SHARD;
    let io_memory_fit = per_ring_budget.saturating_sub(ring) / PAGE_BYTES * PAGE_BYTES;
    let lower = if io_memory_fit >= 64 * 1024 {
        format!("lower io_memory_bytes to at most {io_memory_fit}")
    } else {
        "lower shards or ring_depth (even the smallest io_memory_bytes does not fit)".to_string()
    };
    Err(too_low(format!(
        "{shards} shards x {RINGS_PER_SHARD} io_uring rings x ({} bytes of io_memory_bytes + {ring} bytes of ring memory at ring_depth {}) = {} KiB, but `ulimit -l` is {} KiB. Raise it to at least `ulimit -l {}` (LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf; the limit is shared by all io_uring users of this user), run with CAP_IPC_LOCK, or {lower}",
        registered_io_memory_bytes(config.io_memory_bytes),
        config.ring_depth,
        kib(needed),
        kib(limit_bytes),
        kib(needed),
    )))
}

/// The fields of `struct io_uring_params` the caller sets, then the ones the
/// kernel fills in (120 bytes in all).
#[repr(C)]
struct IoUringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    offsets: [u32; 20],
}

/// Creates and closes a one-entry io_uring: the cheapest proof that the
/// kernel lets this process use io_uring.
fn check_io_uring() -> Result<(), Error> {
    let mut params = IoUringParams {
        sq_entries: 0,
        cq_entries: 0,
        flags: 0,
        sq_thread_cpu: 0,
        sq_thread_idle: 0,
        features: 0,
        wq_fd: 0,
        resv: [0; 3],
        offsets: [0; 20],
    };
    // SAFETY: io_uring_setup reads and writes one io_uring_params, which
    // `params` is (same layout, 120 bytes, reserved fields zero).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1u32,
            &mut params as *mut IoUringParams,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        let sysctl = fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
        return Err(Error::IoUring {
            reason: io_uring_problem(&error, sysctl.as_deref()),
            source: error,
        });
    }
    // SAFETY: `fd` is the ring io_uring_setup just returned; nothing else uses it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// What a failed io_uring_setup means. `disabled_sysctl` is the text of
/// /proc/sys/kernel/io_uring_disabled, if readable.
fn io_uring_problem(error: &io::Error, disabled_sysctl: Option<&str>) -> String {
    let sysctl = match disabled_sysctl.map(str::trim) {
        Some(value) => format!("kernel.io_uring_disabled = {value}"),
        None => "kernel.io_uring_disabled is unknown".to_string(),
    };
    match error.raw_os_error() {
        Some(libc::ENOSYS) => format!(
            "io_uring is unavailable ({error}): this kernel has no io_uring (it needs Linux 5.8 or later built with CONFIG_IO_URING), or a seccomp filter blocks it (container runtimes' default profiles do: allow io_uring_setup, io_uring_enter, io_uring_register)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "io_uring is disabled for this process ({error}; {sysctl}): set the sysctl kernel.io_uring_disabled = 0, or with 1 add this user to the group in kernel.io_uring_group; a seccomp filter can also deny io_uring"
        ),
        Some(libc::ENOMEM) => format!(
            "io_uring_setup failed for lack of locked memory ({error}): raise `ulimit -l` or run with CAP_IPC_LOCK"
        ),
        _ => format!("io_uring_setup failed: {error} ({sysctl})"),
    }
}

/// Tells apart the probe files of concurrent checks in one process.
static PROBE_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Creates `dir` if missing, refuses a filesystem that keeps nothing across
/// a reboot (unless `allow_volatile`), then proves that files in it can be
/// written and read with O_DIRECT, as the shards will.
///
/// The proof needs no free space when the LOCK of an earlier run is there:
/// the engine must start on a full disk, so that data can be read and
/// removed. It then checks that the directory is writable and reads the
/// LOCK page with O_DIRECT. Otherwise (a new data_dir) it creates a probe
/// file, writes a page to it with O_DIRECT and removes it.
fn check_data_dir(dir: &Path, allow_volatile: bool) -> Result<(), Error> {
    let problem = |reason: String, source: Option<io::Error>| Error::DataDir {
        dir: dir.to_path_buf(),
        reason,
        source,
    };
    fs::create_dir_all(dir).map_err(|e| {
        let reason = "cannot create it; create it yourself or set data_dir to a writable directory";
        problem(reason.to_string(), Some(e))
    })?;
    let volatile = filesystem_magic(dir).is_some_and(is_volatile);
    if volatile && allow_volatile {
        tracing::warn!(
            data_dir = %dir.display(),
            filesystem = filesystem_name(dir),
            "data_dir keeps nothing across a reboot; accepted (allow_volatile_data_dir)"
        );
    }
    if volatile && !allow_volatile {
        return Err(problem(format!(
            "its filesystem ({}) keeps nothing across a reboot, so every blob the engine reports durable would be lost; set data_dir to a directory on ext4 or xfs, or set allow_volatile_data_dir = true if that is meant (tests, caches)",
            filesystem_name(dir)
        ), None));
    }
    let lock = dir.join(LOCK_FILE_NAME);
    let lock_is_a_page = fs::metadata(&lock).is_ok_and(|m| m.is_file() && m.len() >= PAGE_BYTES);
    tracing::debug!(
        data_dir = %dir.display(),
        in_place = lock_is_a_page,
        "probing O_DIRECT (in place: reads the LOCK page, needs no free space)"
    );
    let result = if lock_is_a_page {
        probe_in_place(dir, &lock)
    } else {
        let probe = dir.join(format!(
            ".preflight-{}-{}",
            std::process::id(),
            PROBE_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let result = probe_file(&probe);
        // The probe may not exist if its creation failed.
        let _ = fs::remove_file(&probe);
        result
    };
    result.map_err(|(step, e)| {
        let reason = match step {
            ProbeStep::Create => "not writable: cannot create a file in it; fix its owner or permissions, or set data_dir to a writable directory".to_string(),
            ProbeStep::Direct if e.raw_os_error() == Some(libc::EINVAL) => {
                format!(
                    "its filesystem ({}) does not support O_DIRECT, which every blob file uses; set data_dir to a directory on ext4 or xfs",
                    filesystem_name(dir)
                )
            }
            ProbeStep::Direct => "cannot write a file in it with O_DIRECT".to_string(),
        };
        problem(reason, Some(e))
    })
}

/// Which step of the data_dir probe failed.
enum ProbeStep {
    Create,
    Direct,
}

/// One page, aligned for O_DIRECT.
#[repr(C, align(4096))]
struct AlignedPage([u8; PAGE_BYTES as usize]);

fn probe_file(path: &Path) -> Result<(), (ProbeStep, io::Error)> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| (ProbeStep::Create, e))?;
    // Some filesystems accept O_DIRECT at open and fail the I/O: write too.
    let file = open_direct(path)?;
    let page = Box::new(AlignedPage([0; PAGE_BYTES as usize]));
    file.write_all_at(&page.0, 0)
        .map_err(|e| (ProbeStep::Direct, e))
}

/// The probe of a data_dir that has its LOCK page: writes nothing.
fn probe_in_place(dir: &Path, lock: &Path) -> Result<(), (ProbeStep, io::Error)> {
    let dir_c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| {
        (
            ProbeStep::Create,
            io::Error::from_raw_os_error(libc::EINVAL),
        )
    })?;
    // SAFETY: access only reads the NUL-terminated path.
    if unsafe { libc::access(dir_c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err((ProbeStep::Create, io::Error::last_os_error()));
    }
    // Some filesystems accept O_DIRECT at open and fail the I/O: read too.
    let file = open_direct(lock)?;
    let mut page = Box::new(AlignedPage([0; PAGE_BYTES as usize]));
    file.read_exact_at(&mut page.0, 0)
        .map_err(|e| (ProbeStep::Direct, e))
}

fn open_direct(path: &Path) -> Result<fs::File, (ProbeStep, io::Error)> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EROFS | libc::EACCES | libc::EPERM) => (ProbeStep::Create, e),
            _ => (ProbeStep::Direct, e),
        })
}

/// Filesystems that keep nothing across a reboot (statfs magic numbers).
fn is_volatile(magic: u64) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    matches!(magic, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// The statfs type (magic number) of the filesystem of `dir`.
fn filesystem_magic(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain data, all-zero is valid; the call writes one.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` a valid statfs.
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_type as u64)
}

/// The filesystem type of `dir` for messages, e.g. "tmpfs".
fn filesystem_name(dir: &Path) -> String {
    let Some(magic) = filesystem_magic(dir) else {
        return "unknown type".to_string();
    };
    let name = match magic {
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0x6573_5546 => "fuse",
        0x6969 => "nfs",
        0xff53_4d42 | 0xfe53_4d42 => "cifs/smb",
        0x794c_7630 => "overlayfs",
        0xef53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x2fc1_2fc1 => "zfs",
        _ => return format!("type 0x{magic:x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;

    const KIB: u64 = 1024;

    fn resolved(shards: usize, io_memory_bytes: usize, ring_depth: usize) -> ResolvedConfig {
        ResolvedConfig {
            config: Config {
                io_memory_bytes,
                ring_depth,
                ..Config::default()
            },
            shard_cpus: (0..shards).collect(),
        }
    }

    #[test]
    fn locked_memory_arithmetic() {
        assert_eq!(registered_io_memory_bytes(1), 64 * KIB);
        assert_eq!(registered_io_memory_bytes(65537), 68 * KIB);
        assert_eq!(registered_io_memory_bytes(512 * 1024), 512 * KIB);
        // Measured on Linux 6.18: the smallest RLIMIT_MEMLOCK one ring fits in.
        assert_eq!(ring_locked_bytes(128), 16 * KIB);
        assert_eq!(ring_locked_bytes(1024), 104 * KIB);
        assert_eq!(ring_locked_bytes(4096), 404 * KIB);
        assert_eq!(ring_locked_bytes(100), ring_locked_bytes(128));
        // The default on the 2-core dev VM: 2 x 3 x (512 + 16) KiB.
        let default = Config::default();
        assert_eq!(
            locked_memory_bytes(2, default.io_memory_bytes, default.ring_depth),
            3168 * KIB
        );
        // Up to 5 default shards fit an 8 MiB limit, 6 do not.
        let fits = |shards| {
            check_locked_memory(&resolved(shards, 512 * 1024, 128), Some(8192 * KIB), false).is_ok()
        };
        assert!(fits(5) && !fits(6));
        // configs/numa.toml on 16 cores: 16 x 3 x (8 MiB + 28 KiB).
        assert_eq!(locked_memory_bytes(16, 8 << 20, 256), 394_560 * KIB);
    }

    fn memlock_message(config: &ResolvedConfig, limit: Option<u64>, ipc_lock: bool) -> String {
        check_locked_memory(config, limit, ipc_lock)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn too_much_io_memory_for_the_limit_is_reported() {
        // 2 shards x 3 x (4 MiB + 16 KiB) = 24672 KiB against 8 MiB.
        let config = resolved(2, 4 << 20, 128);
        let error = memlock_message(&config, Some(8192 * KIB), false);
        assert!(error.contains("= 24672 KiB"), "{error}");
        assert!(error.contains("`ulimit -l` is 8192 KiB"), "{error}");
        assert!(error.contains("`ulimit -l 24672`"), "{error}");
        // 8 MiB / 2 / 3 = 1398101 bytes per ring, less 16 KiB, in pages.
        assert!(
            error.contains("io_memory_bytes to at most 1380352"),
            "{error}"
        );
        let fitting = resolved(2, 1_380_352, 128);
        assert!(check_locked_memory(&fitting, Some(8192 * KIB), false).is_ok());
        let over = resolved(2, 1_380_352 + 4096, 128);
        assert!(check_locked_memory(&over, Some(8192 * KIB), false).is_err());
        // Nothing fits when even 64 KiB per ring is too much.
        let error = memlock_message(&resolved(64, 512 * 1024, 128), Some(8192 * KIB), false);
        assert!(error.contains("lower shards or ring_depth"), "{error}");
    }

    #[test]
    fn ipc_lock_or_no_limit_lifts_the_check() {
        let config = resolved(2, 4 << 20, 128);
        assert!(check_locked_memory(&config, Some(8192 * KIB), true).is_ok());
        assert!(check_locked_memory(&config, None, false).is_ok());
        // glommio's own floor holds even with CAP_IPC_LOCK.
        let error = memlock_message(&config, Some(64 * KIB), true);
        assert!(error.contains("below 512 KiB"), "{error}");
        assert!(error.contains("`ulimit -l 24672`"), "{error}");
    }

    #[test]
    fn reads_cap_ipc_lock() {
        let status = |caps: &str| format!("Name:\ttest\nCapPrm:\t0\nCapEff:\t{caps}\nCapBnd:\t0\n");
        assert!(status_has_cap_ipc_lock(&status("000001fffeffffff")));
        assert!(status_has_cap_ipc_lock(&status("0000000000004000")));
        assert!(!status_has_cap_ipc_lock(&status("000001fffeffbfff")));
        assert!(!status_has_cap_ipc_lock(&status("0000000000000000")));
        assert!(!status_has_cap_ipc_lock("CapEff:\tzz\n"));
        assert!(!status_has_cap_ipc_lock(""));
    }

    #[test]
    fn io_uring_problems_say_what_to_do() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let message = io_uring_problem(&eperm, Some("2\n"));
        assert!(
            message.contains("kernel.io_uring_disabled = 2"),
            "{message}"
        );
        assert!(message.contains("disabled"), "{message}");
        let enosys = io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(io_uring_problem(&enosys, None).contains("seccomp"));
        let enomem = io::Error::from_raw_os_error(libc::ENOMEM);
        assert!(io_uring_problem(&enomem, Some("0")).contains("ulimit -l"));
    }

    #[test]
    fn io_uring_works_here() {
        check_io_uring().unwrap();
    }

    /// A fresh directory path under the system temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("shardblob-preflight-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_a_missing_data_dir_and_leaves_it_empty() {
        let dir = scratch("fresh");
        let data_dir = dir.join("a/b");
        check_data_dir(&data_dir, false).unwrap();
        assert!(data_dir.is_dir());
        assert_eq!(fs::read_dir(&data_dir).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reports_a_data_dir_that_cannot_be_created() {
        let dir = scratch("file");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        fs::write(&file, b"x").unwrap();
        let error = check_data_dir(&file.join("data"), false).unwrap_err();
        assert!(matches!(error, Error::DataDir { .. }), "{error}");
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!(
                "data directory {}/data: cannot create it;",
                file.display()
            )),
            "{shown}"
        );
        // The OS error is the source, once, not part of the message too.
        assert!(!shown.contains("os error"), "{shown}");
        let source = std::error::Error::source(&error).expect("the OS error is the source");
        assert!(source.to_string().contains("os error 20"), "{source}");
        assert_eq!(error.raw_os_error(), Some(libc::ENOTDIR));
        let error = check_data_dir(&file, false).unwrap_err().to_string();
        assert!(error.contains("cannot create it"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reports_a_read_only_data_dir() {
        // procfs refuses new files, even to root.
        let error = check_data_dir(Path::new("/proc/self"), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not writable"), "{error}");
        let error = check_data_dir(Path::new("/proc/self/shardblob"), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot create it"), "{error}");
    }

    /// A ramfs mount (a filesystem without O_DIRECT) for the guard's life.
    /// Mounting needs root, which CI and the dev VM have.
    struct Ramfs(PathBuf);

    impl Ramfs {
        fn mount(name: &str) -> Ramfs {
            let dir =
                std::env::temp_dir().join(format!("shardblob-ramfs-{name}-{}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            let status = std::process::Command::new("mount")
                .args(["-t", "ramfs", "ramfs"])
                .arg(&dir)
                .status()
                .expect("run mount");
            assert!(
                status.success(),
                "mounting a ramfs at {} needs root",
                dir.display()
            );
            Ramfs(dir)
        }
    }

    impl Drop for Ramfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn reports_a_filesystem_without_o_direct() {
        let ramfs = Ramfs::mount("odirect");
        let dir = ramfs.0.join("data");
        // Allowed as volatile, so the O_DIRECT check is what refuses it.
        let error = check_data_dir(&dir, true).unwrap_err().to_string();
        assert!(
            error.contains("(ramfs) does not support O_DIRECT"),
            "{error}"
        );
        assert!(error.contains("ext4 or xfs"), "{error}");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "probe file left behind"
        );
    }

    #[test]
    fn refuses_a_volatile_filesystem_unless_allowed() {
        let ramfs = Ramfs::mount("volatile");
        let dir = ramfs.0.join("data");
        let error = check_data_dir(&dir, false).unwrap_err().to_string();
        assert!(
            error.contains("(ramfs) keeps nothing across a reboot"),
            "{error}"
        );
        assert!(error.contains("allow_volatile_data_dir = true"), "{error}");
        assert!(is_volatile(
            filesystem_magic(Path::new("/dev/shm")).unwrap()
        ));
        assert!(!is_volatile(filesystem_magic(Path::new("/proc")).unwrap()));
    }

    #[test]
    fn names_filesystems() {
        assert_eq!(filesystem_name(Path::new("/dev/shm")), "tmpfs");
        assert_eq!(filesystem_name(Path::new("/nonexistent/x")), "unknown type");
    }

    #[test]
    fn default_config_passes_preflight_here() {
        let dir = scratch("default");
        let config = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        config.validate().unwrap().preflight().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
