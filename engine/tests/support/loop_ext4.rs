//! A small ext4 filesystem on a loop device, for tests that fill a disk.
//!
//! Two kinds:
//! - [`Mounted::new`]: a sparse 64 MiB image on the host's disk. ext4's own
//!   allocator runs out of blocks: a write or a reservation that needs a new
//!   block fails with ENOSPC, a sync has nothing left to allocate.
//! - [`Mounted::new_thin`]: the same image on a size-limited tmpfs, fully
//!   allocated there, so the loop device works like a thin-provisioned disk
//!   (dm-thin, a cloud volume): [`Mounted::punch_block`] gives one block of
//!   a file back to the "pool" (its content must already read as zeros, as a
//!   thin pool that drops zero blocks would do), [`Mounted::exhaust_device`]
//!   leaves the pool no free page, and from then on the device fails every
//!   write to that block with `BLK_STS_NOSPC`: a direct write reports
//!   ENOSPC, and so does the `fdatasync` that writes back a page the kernel
//!   itself dirtied there (the partial-block zeroing of a truncate). ext4's
//!   metadata and journal never touch a hole, so the filesystem stays sound.
//!
//! Needs root (mount), loop devices, and the tools `mkfs.ext4` (apt package
//! `e2fsprogs`) and `mount`/`umount` (apt package `mount`). A missing piece
//! fails the test with a message that says which. Dropping a [`Mounted`]
//! unmounts and deletes everything, also while a failed assertion unwinds.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Size of the ext4 image.
pub const IMAGE_BYTES: u64 = 64 << 20;
/// The tmpfs under a thin image: room for the image and a little more.
const POOL_BYTES: u64 = IMAGE_BYTES + (16 << 20);
const FS_BLOCK_BYTES: u64 = 4096;
/// `_IO(0x00, 1)`: a file's block number to the device's (root only).
const FIBMAP: libc::c_ulong = 1;

/// Finds a tool in PATH or the sbin directories (root's tools live there,
/// and a CI PATH may not list them).
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "loop ext4: `{name}` not found; install the apt package `{package}` \
                 (apt-get install -y {package})"
            )
        })
}

pub fn run(tool: &Path, args: &[&OsStr]) -> Result<(), String> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {:?} failed ({}): {}",
            tool.display(),
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `statvfs(path)`.
fn statvfs(path: &Path) -> libc::statvfs {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs fills `stat` on success; read only then.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    // SAFETY: rc == 0.
    unsafe { stat.assume_init() }
}

/// `fallocate(fd, mode, offset, len)` as a `Result`.
pub fn fallocate(
    file: &std::fs::File,
    mode: libc::c_int,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    // SAFETY: fallocate on a descriptor `file` keeps open.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// A loop-mounted ext4 image.
pub struct Mounted {
    root: PathBuf,
    image: PathBuf,
    pub mount_point: PathBuf,
    mounted: bool,
    /// The tmpfs holding a thin image.
    pool: Option<PathBuf>,
}

impl Mounted {
    /// A sparse image on the host's disk: ext4 itself runs out of blocks.
    pub fn new(tag: &str) -> Mounted {
        let root = Self::root(tag);
        let mut mounted = Mounted {
            image: root.join("fs.img"),
            mount_point: root.join("mnt"),
            root,
            mounted: false,
            pool: None,
        };
        mounted.make_fs();
        mounted.mount();
        mounted
    }

    /// An image fully allocated on a tmpfs of its own: a thin-provisioned
    /// device whose pool the test can exhaust (module docs).
    pub fn new_thin(tag: &str) -> Mounted {
        let root = Self::root(tag);
        let pool = root.join("pool");
        std::fs::create_dir(&pool).unwrap();
        let size = format!("size={}k", POOL_BYTES >> 10);
        run(
            &tool("mount", "mount"),
            &[
                OsStr::new("-t"),
                OsStr::new("tmpfs"),
                OsStr::new("-o"),
                OsStr::new(&size),
                OsStr::new("tmpfs"),
                pool.as_os_str(),
            ],
        )
        .unwrap_or_else(|e| panic!("loop ext4: mount a tmpfs: {e}"));
        let mut mounted = Mounted {
            image: pool.join("fs.img"),
            mount_point: root.join("mnt"),
            root,
            mounted: false,
            pool: Some(pool),
        };
        mounted.make_fs();
        // Every page of the image allocated in the pool: metadata and the
        // journal never meet a hole; only punched blocks can fail.
        let image = std::fs::OpenOptions::new()
            .write(true)
            .open(&mounted.image)
            .unwrap();
        fallocate(&image, 0, 0, IMAGE_BYTES).unwrap_or_else(|e| panic!("allocate the image: {e}"));
        mounted.mount();
        mounted
    }

    fn root(tag: &str) -> PathBuf {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "loop ext4: mounting a loop device needs root (CI runs as root)"
        );
        assert!(
            Path::new("/dev/loop-control").exists(),
            "loop ext4: no /dev/loop-control: loop devices are unavailable here \
             (load the `loop` module, or give the container loop devices)"
        );
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("mnt")).unwrap();
        root
    }

    fn make_fs(&self) {
        std::fs::File::create(&self.image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .unwrap();
        // 4 KiB blocks like a real disk; no blocks reserved for root (the
        // test runs as root and would fill those too).
        run(
            &tool("mkfs.ext4", "e2fsprogs"),
            &[
                OsStr::new("-q"),
                OsStr::new("-F"),
                OsStr::new("-b"),
                OsStr::new("4096"),
                OsStr::new("-m"),
                OsStr::new("0"),
                OsStr::new("-E"),
                OsStr::new("nodiscard"),
                self.image.as_os_str(),
            ],
        )
        .unwrap_or_else(|e| panic!("loop ext4: mkfs.ext4: {e}"));
    }

    pub fn mount(&mut self) {
        run(
            &tool("mount", "mount"),
            &[
                OsStr::new("-o"),
                OsStr::new("loop"),
                self.image.as_os_str(),
                self.mount_point.as_os_str(),
            ],
        )
        .unwrap_or_else(|e| panic!("loop ext4: loop mount: {e}"));
        self.mounted = true;
    }

    /// This process's open files under the mount point (why it is busy).
    pub fn open_here(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/proc/self/fd")
            .map(|dir| {
                dir.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                    .filter(|target| target.starts_with(&self.mount_point))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn unmount(&mut self) -> Result<(), String> {
        unmount_path(&self.mount_point).map_err(|e| {
            format!(
                "{e} (files this process holds there: {:?})",
                self.open_here()
            )
        })?;
        self.mounted = false;
        Ok(())
    }

    /// Bytes an unprivileged file could still get.
    pub fn free_bytes(&self) -> u64 {
        let stat = statvfs(&self.mount_point);
        stat.f_bavail * stat.f_frsize
    }

    fn pool(&self) -> &Path {
        self.pool
            .as_deref()
            .expect("only a thin image (Mounted::new_thin) has a pool")
    }

    /// Gives the device block under byte `offset` of `file` (on this
    /// filesystem) back to the pool and returns its number. The block must
    /// read as zeros already: it reads as zeros afterwards.
    pub fn punch_block(&self, file: &Path, offset: u64) -> u64 {
        let handle = std::fs::File::open(file).unwrap();
        let mut block = libc::c_int::try_from(offset / FS_BLOCK_BYTES).unwrap();
        // SAFETY: FIBMAP reads and writes one int, `block`, which lives
        // across the call.
        let rc = unsafe { libc::ioctl(handle.as_raw_fd(), FIBMAP as _, &mut block) };
        assert_eq!(rc, 0, "FIBMAP: {}", std::io::Error::last_os_error());
        assert!(
            block > 0,
            "byte {offset} of {} has no block",
            file.display()
        );
        let image = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .unwrap();
        let physical = block as u64 * FS_BLOCK_BYTES;
        fallocate(
            &image,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            physical,
            FS_BLOCK_BYTES,
        )
        .unwrap_or_else(|e| panic!("punch block {block} of the image: {e}"));
        block as u64
    }

    /// Leaves the pool without a free page: from now on the device fails
    /// every write to a punched block with ENOSPC.
    pub fn exhaust_device(&self) {
        let pool = self.pool();
        let stat = statvfs(pool);
        let used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize;
        remount_pool(pool, used.div_ceil(1024).max(4));
        // Whatever rounding left: a filler takes it, page by page.
        use std::io::Write;
        let mut filler = std::fs::File::create(pool.join("filler")).unwrap();
        for _ in 0..(1 << 16) {
            match filler.write(&[0x5a; 4096]) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("fill the pool: {e}"),
            }
        }
        assert_eq!(statvfs(pool).f_bavail, 0, "the pool is exhausted");
    }

    /// Gives the pool room again.
    pub fn replenish_device(&self) {
        let pool = self.pool();
        let _ = std::fs::remove_file(pool.join("filler"));
        remount_pool(pool, POOL_BYTES >> 10);
    }
}

fn remount_pool(pool: &Path, size_kib: u64) {
    let options = format!("remount,size={size_kib}k");
    run(
        &tool("mount", "mount"),
        &[OsStr::new("-o"), OsStr::new(&options), pool.as_os_str()],
    )
    .unwrap_or_else(|e| panic!("loop ext4: resize the pool: {e}"));
}

/// Unmounts `path`, retrying a little while it is busy.
fn unmount_path(path: &Path) -> Result<(), String> {
    let umount = tool("umount", "mount");
    let mut last = String::new();
    for _ in 0..50 {
        match run(&umount, &[path.as_os_str()]) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let paths = [Some(&self.mount_point), self.pool.as_ref()];
        for (i, path) in paths.into_iter().enumerate() {
            let Some(path) = path else { continue };
            if i == 0 && !self.mounted {
                continue;
            }
            if let Err(e) = unmount_path(path) {
                eprintln!("loop ext4: {e}; detaching lazily");
                let _ = run(
                    &tool("umount", "mount"),
                    &[OsStr::new("-l"), path.as_os_str()],
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
