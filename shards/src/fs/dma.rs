//! The real file seam: glommio `DmaFile`s (O_DIRECT, io_uring).
//!
//! Direct I/O skips the page cache: every read and write goes to the device,
//! so latency is the device's and memory use is bounded by the buffers in
//! flight, at the price of block-aligned offsets, lengths and buffers. The
//! store does the aligning; this file only maps the seam onto glommio.
//!
//! `WriteOptions::SYNC` writes go through a second descriptor of the same
//! inode opened with `O_DSYNC` (glommio 0.9 has no per-write RWF_DSYNC), so a
//! synced write is one device write with data-sync semantics, not write +
//! fdatasync. It is reopened through `/proc/self/fd`, which works even after
//! the file was unlinked.

use std::cell::{Cell, OnceCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{stream, Stream, StreamExt};
use glommio::io::{
    DmaBuffer, DmaFile, IoVec, MergedBufferLimit, OpenOptions, ReadAmplificationLimit, ReadResult,
};
use glommio::GlommioError;

use super::{DirEntry, File, FileSystem, WriteBuf, BLOCK_SIZE};
use crate::data_dir::DataDir;

/// The production file system: DMA files under a locked data directory.
pub struct DmaFs {
    _data_dir: Arc<DataDir>,
    io_in_flight: InFlight,
    sync_inline_when_idle: bool,
}

impl DmaFs {
    /// Prepares this shard's executor for DMA files under `data_dir`.
    ///
    /// Must run on the shard's executor before any blob is created: it opens
    /// the page-sized LOCK file as this executor's first DMA file and reads
    /// it, so glommio's poll-support probe fails honestly (ARCHITECTURE.md, glommio 0.9 traps).
    pub async fn new(data_dir: Arc<DataDir>) -> io::Result<DmaFs> {
        let probe = DmaFile::open(data_dir.lock_path())
            .await
            .map_err(os_error)?;
        let page = probe
            .read_at_aligned(0, BLOCK_SIZE as usize)
            .await
            .map_err(os_error)?;
        if (page.len() as u64) < BLOCK_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "LOCK file holds less than one page",
            ));
        }
        probe.close().await.map_err(os_error)?;
        Ok(DmaFs {
            _data_dir: data_dir,
            io_in_flight: InFlight::default(),
            sync_inline_when_idle: true,
        })
    }

    /// Whether a sync with no other I/O of this shard in flight runs its
    /// fdatasync on the executor's thread (the default) or, like every other
    /// sync, on the executor's blocking thread. Inline saves two thread
    /// wake-ups per sync; it holds the executor for the whole flush.
    pub fn sync_inline_when_idle(mut self, inline: bool) -> DmaFs {
        self.sync_inline_when_idle = inline;
        self
    }
}

/// Opens `path` on a detached task of this executor and waits for it. A
/// caller that stops waiting does not cancel the open: glommio 0.9 drops
/// the result of an `openat` it was asked to cancel that the kernel
/// completed anyway, and that descriptor would leak; here the task finishes
/// and the file closes when it drops.
async fn open_to_the_end(options: OpenOptions, path: PathBuf) -> io::Result<DmaFile> {
    let open = glommio::spawn_local(async move { options.dma_open(path).await }).detach();
    match open.await {
        Some(opened) => opened.map_err(os_error),
        None => Err(io::Error::other("the executor stopped during the open")),
    }
}

impl FileSystem for DmaFs {
    type File = DmaBlobFile;

    async fn open_file(&self, path: &Path, create: bool) -> io::Result<DmaBlobFile> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(create);
        let file = open_to_the_end(options, path.to_path_buf()).await?;
        if file.alignment() > BLOCK_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "device needs {}-byte direct I/O alignment; shardblob supports up to {BLOCK_SIZE}",
                    file.alignment()
                ),
            ));
        }
        Ok(DmaBlobFile {
            file: Rc::new(file),
            dsync: OnceCell::new(),
            io_in_flight: self.io_in_flight.clone(),
            sync_inline_when_idle: self.sync_inline_when_idle,
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<bool> {
        match std::fs::create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        std::fs::read_dir(path)?
            .map(|entry| {
                let entry = entry?;
                Ok(DirEntry {
                    name: entry.file_name(),
                    is_file: entry.file_type()?.is_file(),
                })
            })
            .collect()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let dir = glommio::io::Directory::open(path).await.map_err(os_error)?;
        dir.sync().await.map_err(os_error)?;
        dir.close().await.map_err(os_error)?;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        rename_no_replace(from, to)
    }
}

/// `renameat2(RENAME_NOREPLACE)`; where the filesystem lacks that flag
/// (EINVAL), a check for `to` then `rename`: the data directory has one
/// engine, and each name one shard, so nobody else renames onto `to`.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2_no_replace(from, to) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        done => return done,
    }
    match std::fs::symlink_metadata(to) {
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EEXIST)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(from, to),
        Err(e) => Err(e),
    }
}

/// The bare `renameat2(RENAME_NOREPLACE)` system call.
fn renameat2_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = |path: &Path| {
        // Not EINVAL: that would send the caller to the fallback.
        std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
    };
    let (from_c, to_c) = (c_path(from)?, c_path(to)?);
    // SAFETY: both paths are NUL-terminated and live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// One blob's DMA file.
pub struct DmaBlobFile {
    file: Rc<DmaFile>,
    dsync: OnceCell<DmaFile>,
    io_in_flight: InFlight,
    sync_inline_when_idle: bool,
}

/// Device operations this shard's files have in flight (all files share it).
#[derive(Clone, Default)]
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    /// Counts one operation until the guard drops (also when cancelled).
    fn enter(&self) -> InFlightGuard {
        self.0.set(self.0.get() + 1);
        InFlightGuard(self.0.clone())
    }

    fn is_idle(&self) -> bool {
        self.0.get() == 0
    }
}

struct InFlightGuard(Rc<Cell<usize>>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let count = self.0.get();
        assert!(count > 0, "in-flight count underflow");
        self.0.set(count - 1);
    }
}

impl DmaBlobFile {
    /// The `O_DSYNC` descriptor of the same inode, opened on first use.
    async fn dsync_file(&self) -> io::Result<&DmaFile> {
        if let Some(file) = self.dsync.get() {
            return Ok(file);
        }
        let path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let mut options = OpenOptions::new();
        options.read(true).write(true).custom_flags(libc::O_DSYNC);
        let file = open_to_the_end(options, path.into()).await?;
        // A concurrent task may have opened one meanwhile; keep the first.
        Ok(self.dsync.get_or_init(|| file))
    }

    /// The file a write goes to: the `O_DSYNC` one for a durable write.
    async fn file_for(&self, durable: bool) -> io::Result<&DmaFile> {
        match durable {
            true => self.dsync_file().await,
            false => Ok(&self.file),
        }
    }

    /// Whether a sync issued now runs inline (see [`DmaFs::sync_inline_when_idle`]).
    fn sync_runs_inline(&self) -> bool {
        self.sync_inline_when_idle && self.io_in_flight.is_idle()
    }

    /// Runs a blocking file call (fdatasync, fallocate, ftruncate) on this
    /// file's descriptor, which `call` receives.
    ///
    /// When nothing else of this shard waits on the device, no task could
    /// use the executor meanwhile: it runs inline, blocking the executor for
    /// one call, instead of being handed off. A hand-off costs two thread
    /// wake-ups, and on the dev VM an append + sync took 1.3-1.4x fio's time
    /// with it, 1.0x without (bench/results/2026-11-23-second-session.md). With other I/O in flight
    /// the executor must stay free for its completions, so the call runs on
    /// the executor's blocking thread, which the engine leaves unpinned to
    /// run beside the shard. Once handed off it runs even if the future is
    /// dropped, possibly after this file was closed: so it gets a duplicate
    /// descriptor of its own, and never acts on another file that reuses
    /// this one's number (`tests/dma_fd_reuse.rs`).
    async fn blocking_call(
        &self,
        call: impl FnOnce(RawFd) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let inline = self.sync_runs_inline();
        let _io = self.io_in_flight.enter();
        if inline {
            return call(self.file.as_raw_fd());
        }
        // SAFETY: the descriptor is open while `self` lives, which covers
        // this borrow; the clone is owned by the job and closed with it.
        let own = unsafe { BorrowedFd::borrow_raw(self.file.as_raw_fd()) }.try_clone_to_owned()?;
        glommio::executor()
            .spawn_blocking(move || call(own.as_raw_fd()))
            .await
    }

    fn fstat(&self) -> io::Result<libc::stat> {
        // fstat, not statx by path: the path is gone once the blob is removed.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills `stat` on success; we read it only then.
        cvt(unsafe { libc::fstat(self.file.as_raw_fd(), stat.as_mut_ptr()) })?;
        // SAFETY: fstat returned 0, so the struct is initialised.
        Ok(unsafe { stat.assume_init() })
    }
}

impl WriteBuf for DmaBuffer {
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }

    fn truncate(&mut self, len: usize) {
        self.trim_to_size(len.min(self.len()));
    }
}

/// A `read_many` range carrying its index in the caller's batch.
struct IndexedRange {
    index: usize,
    pos: u64,
    len: usize,
}

impl IoVec for IndexedRange {
    fn pos(&self) -> u64 {
        self.pos
    }
    fn size(&self) -> usize {
        self.len
    }
}

impl File for DmaBlobFile {
    type WriteBuf = DmaBuffer;
    type ReadBuf = ReadResult;

    fn alloc(&self, len: usize) -> DmaBuffer {
        debug_assert_eq!(len as u64 % BLOCK_SIZE, 0);
        self.file.alloc_dma_buffer(len)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        // Aligned here rather than by glommio's `read_at`, which after a
        // short read still returns `len` bytes, the rest stale pool memory.
        let aligned_pos = self.file.align_down(pos);
        let skip = (pos - aligned_pos) as usize;
        let aligned_len = self.file.align_up((skip + len) as u64) as usize;
        let _io = self.io_in_flight.enter();
        let read = self
            .file
            .read_at_aligned(aligned_pos, aligned_len)
            .await
            .map_err(os_error)?;
        let valid = len.min(read.len().saturating_sub(skip));
        ReadResult::slice(&read, skip, valid)
            .ok_or_else(|| io::Error::other("read result slice out of range"))
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, ReadResult)>> {
        let mut remaining = ranges.len();
        // Counted until the last range completes (or the stream drops).
        let mut io = (remaining > 0).then(|| self.io_in_flight.enter());
        let iovs = stream::iter(
            ranges
                .into_iter()
                .enumerate()
                .map(|(index, (pos, len))| IndexedRange { index, pos, len }),
        );
        self.file
            .read_many(
                iovs,
                MergedBufferLimit::DeviceMaxSingleRequest,
                ReadAmplificationLimit::NoAmplification,
            )
            .map(move |item| {
                remaining = remaining.saturating_sub(1);
                if remaining == 0 {
                    drop(io.take());
                }
                item.map(|(range, bytes)| (range.index, bytes))
                    .map_err(os_error)
            })
    }

    /// Hands the buffer to glommio (no reference count: the write path
    /// that does not reuse its buffers).
    async fn write_at(&self, buf: DmaBuffer, pos: u64, durable: bool) -> io::Result<usize> {
        let _io = self.io_in_flight.enter();
        let file = self.file_for(durable).await?;
        file.write_at(buf, pos).await.map_err(os_error)
    }

    /// Shares the buffer with glommio, which lets go of it when the write
    /// completes (or, for a dropped write, when the kernel is done with it).
    async fn write_returning(
        &self,
        buf: DmaBuffer,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<DmaBuffer>) {
        let _io = self.io_in_flight.enter();
        let file = match self.file_for(durable).await {
            Ok(file) => file,
            Err(e) => return (Err(e), Some(buf)),
        };
        let buf = Rc::new(buf);
        let written = file.write_rc_at(buf.clone(), pos).await.map_err(os_error);
        (written, Rc::try_unwrap(buf).ok())
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        // Like a flush, inline when nothing else of this shard waits on the
        // device (glommio's `truncate` always hands off to the blocking
        // thread: two wake-ups for every resize and cut).
        let len = to_off_t(len)?;
        // SAFETY: ftruncate on the descriptor `blocking_call` keeps open.
        self.blocking_call(move |fd| cvt(unsafe { libc::ftruncate(fd, len) }))
            .await
    }

    fn set_len_now(&self, len: u64) -> io::Result<()> {
        let len = to_off_t(len)?;
        // SAFETY: ftruncate on a descriptor this file owns.
        cvt(unsafe { libc::ftruncate(self.file.as_raw_fd(), len) })
    }

    fn sync_data_now(&self) -> io::Result<()> {
        // SAFETY: fdatasync on a descriptor this file owns.
        cvt(unsafe { libc::fdatasync(self.file.as_raw_fd()) })
    }

    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()> {
        /// One block in memory aligned for direct I/O.
        #[repr(C, align(4096))]
        struct Aligned([u8; BLOCK_SIZE as usize]);
        let aligned = Box::new(Aligned(*block));
        let pos = to_off_t(pos)?;
        // SAFETY: pwrite from a live, block-aligned buffer of BLOCK_SIZE
        // bytes on a descriptor this file owns.
        let written = unsafe {
            libc::pwrite(
                self.file.as_raw_fd(),
                aligned.0.as_ptr().cast(),
                aligned.0.len(),
                pos,
            )
        };
        match usize::try_from(written) {
            Ok(n) if n == aligned.0.len() => Ok(()),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write of a block: {n} bytes"),
            )),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        // glommio's `pre_allocate` always starts at offset 0, which would
        // reserve every gap below `pos` too.
        let (pos, len) = (to_off_t(pos)?, to_off_t(len)?);
        self.blocking_call(move |fd| {
            // SAFETY: fallocate on the descriptor `blocking_call` keeps open.
            cvt(unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, pos, len) })
        })
        .await
    }

    fn release_past_end_now(&self, slack: u64) -> io::Result<bool> {
        let stat = self.fstat()?;
        let size = u64::try_from(stat.st_size).map_err(|_| io::Error::other("negative size"))?;
        let allocated = u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512);
        if allocated <= size.div_ceil(BLOCK_SIZE) * BLOCK_SIZE + slack {
            return Ok(false);
        }
        // Truncating to the same size frees the blocks past the end (ext4
        // calls its truncate even when the size does not change).
        self.set_len_now(size)?;
        Ok(true)
    }

    async fn sync_data(&self) -> io::Result<()> {
        // SAFETY: fdatasync on the descriptor `blocking_call` keeps open.
        self.blocking_call(move |fd| cvt(unsafe { libc::fdatasync(fd) }))
            .await
    }

    async fn size(&self) -> io::Result<u64> {
        let size = self.fstat()?.st_size;
        u64::try_from(size).map_err(|_| io::Error::other("negative file size"))
    }
}

/// glommio's error as the OS error it carries, errno included. glommio's
/// own conversion into `io::Error` rebuilds it from its message: the errno
/// is lost (`raw_os_error()` is `None` for ENOSPC) and the message names the
/// file by its path, `/proc/self/fd/N` for a SYNC write's descriptor. The
/// store names the partition and blob instead.
fn os_error(error: GlommioError<()>) -> io::Error {
    match error {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::from(other),
    }
}

/// A libc return code as an `io::Result`.
fn cvt(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn to_off_t(value: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(value)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::poll_once;
    use std::future::Future;

    /// Runs `test` on a glommio executor with a fresh `DmaFs` in a directory
    /// of its own (named by `tag`) and a new file at the path it is given;
    /// the directory is removed after.
    fn on_dma_file<Fut: Future<Output = ()>>(
        tag: &str,
        test: impl FnOnce(DmaFs, DmaBlobFile, PathBuf) -> Fut + Send + 'static,
    ) {
        let dir = std::env::temp_dir().join(format!("shardblob-dma-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data_dir = DataDir::lock(&dir).unwrap();
        let path = dir.join("blob");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let fs = DmaFs::new(data_dir).await.unwrap();
                let file = fs.open_file(&path, true).await.unwrap();
                test(fs, file, path).await;
            })
            .unwrap()
            .join()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A sync runs inline only when enabled and nothing else is in flight,
    /// and the in-flight count returns to idle however an operation ends:
    /// completed, short, or dropped while in flight.
    #[test]
    fn syncs_run_inline_only_when_enabled_and_idle() {
        on_dma_file("inflight", |fs, file, path| async move {
            let mut page = file.alloc(BLOCK_SIZE as usize);
            page.bytes_mut().fill(7);
            file.write_at(page, 0, false).await.unwrap();
            assert!(fs.io_in_flight.is_idle());

            // Dropped after its first poll: the read was submitted.
            assert!(file.sync_runs_inline());
            let mut read = Box::pin(file.read_at(0, BLOCK_SIZE as usize));
            if poll_once(read.as_mut()).await.is_none() {
                assert!(!fs.io_in_flight.is_idle(), "a submitted read is in flight");
                assert!(
                    !file.sync_runs_inline(),
                    "a sync beside a read is handed off"
                );
            }
            drop(read);
            assert!(fs.io_in_flight.is_idle());

            // A read past the end completes short; a sync with a read
            // in flight goes to the blocking thread and still succeeds.
            assert_eq!(file.read_at(BLOCK_SIZE, 16).await.unwrap().len(), 0);
            let (read, synced) =
                futures_lite::future::zip(file.read_at(0, 16), file.sync_data()).await;
            assert_eq!(&read.unwrap()[..], &[7; 16]);
            synced.unwrap();
            file.sync_data().await.unwrap();
            assert!(fs.io_in_flight.is_idle());

            // Switched off, a sync is handed off even when idle, and works.
            let fs = fs.sync_inline_when_idle(false);
            let file = fs.open_file(&path, false).await.unwrap();
            assert!(!file.sync_runs_inline());
            file.sync_data().await.unwrap();
        });
    }

    /// A `read_many` counts as in flight from its creation until its last
    /// range has completed, so a sync issued beside it is handed off; an
    /// empty one never counts. Kills `dma.rs:334:33` (`remaining > 0`
    /// replaced with `== 0`, `< 0`, `>= 0`) and `dma.rs:349:30` (`==` with
    /// `!=`: the count dropped after the first range).
    #[test]
    fn a_read_many_is_in_flight_until_its_last_range() {
        on_dma_file("read-many", |fs, file, _| async move {
            let mut pages = file.alloc(2 * BLOCK_SIZE as usize);
            pages.bytes_mut().fill(7);
            file.write_at(pages, 0, false).await.unwrap();
            let empty = file.read_many(Vec::new());
            assert!(
                fs.io_in_flight.is_idle(),
                "an empty read_many is never in flight"
            );
            drop(empty);

            let mut reads = Box::pin(file.read_many(vec![(0, 16), (BLOCK_SIZE, 16)]));
            assert!(
                !file.sync_runs_inline(),
                "a sync beside a read_many is handed off"
            );
            let (_, first) = reads.next().await.unwrap().unwrap();
            assert_eq!(&first[..], &[7; 16]);
            assert!(!fs.io_in_flight.is_idle(), "one range is still to come");
            let (_, second) = reads.next().await.unwrap().unwrap();
            assert_eq!(&second[..], &[7; 16]);
            assert!(fs.io_in_flight.is_idle(), "the last range has completed");
            assert!(reads.next().await.is_none());
        });
    }

    /// Caught on 58545b6: glommio's `read_at` answers an unaligned read that
    /// reaches past the end of the file with the requested length, the bytes
    /// past the end being whatever the DMA pool held. Only the bytes read may
    /// come back.
    #[test]
    fn a_read_past_the_end_returns_only_the_bytes_read() {
        on_dma_file("short", |_, file, _| async move {
            // Leave recognisable bytes in the pool, then free them.
            let mut page = file.alloc(2 * BLOCK_SIZE as usize);
            page.bytes_mut().fill(0xEE);
            drop(page);
            let mut page = file.alloc(BLOCK_SIZE as usize);
            page.bytes_mut().fill(7);
            file.write_at(page, 0, false).await.unwrap();
            file.set_len(150).await.unwrap();
            let read = file.read_at(100, 100).await.unwrap();
            assert_eq!(&read[..], &[7; 50][..], "only the 50 bytes before the end");
            assert_eq!(file.read_at(200, 10).await.unwrap().len(), 0);
        });
    }

    /// Makes `renameat2` with `RENAME_NOREPLACE` fail with `errno` on this
    /// thread from now on (EINVAL: as on a filesystem without the flag, NFS
    /// or ecryptfs): a seccomp filter, which other threads do not inherit.
    /// Other system calls, and `renameat2` with other flags (the plain
    /// `rename` of some C libraries), pass. The test runs natively, so the
    /// architecture is the build's and the numbers are its own.
    fn refuse_rename_no_replace_on_this_thread(errno: i32) {
        let instruction = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let jump_if_equal = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let ret = libc::BPF_RET | libc::BPF_K;
        // `seccomp_data`: `nr` at byte 0, `args[4]` (the flags) at 48, whose
        // low half comes first on a little-endian machine.
        let flags_at = if cfg!(target_endian = "little") {
            48
        } else {
            52
        };
        let mut program = [
            instruction(load, 0, 0, 0),
            instruction(jump_if_equal, 0, 3, libc::SYS_renameat2 as u32),
            instruction(load, 0, 0, flags_at),
            instruction(jump_if_equal, 0, 1, libc::RENAME_NOREPLACE),
            instruction(ret, 0, 0, libc::SECCOMP_RET_ERRNO | errno as u32),
            instruction(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
        ];
        let filter = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: plain prctl calls; `filter` points at `program`, which
        // lives across the call (the kernel copies it).
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
            let installed = libc::prctl(libc::PR_SET_SECCOMP, mode, &filter as *const _);
            assert_eq!(installed, 0, "seccomp: {}", io::Error::last_os_error());
        }
    }

    /// A fresh directory for a rename test, with files `a` and `c`.
    fn rename_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shardblob-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), b"a").unwrap();
        std::fs::write(dir.join("c"), b"c").unwrap();
        dir
    }

    /// Any other error of `renameat2` is the answer: the fallback, which
    /// would rename anyway, is only for a filesystem without the flag.
    /// Kills `shards/src/fs/dma.rs:157:19: replace match guard
    /// e.raw_os_error() == Some(libc::EINVAL) with true in rename_no_replace`.
    #[test]
    fn rename_reports_an_error_other_than_a_refused_flag() {
        let dir = rename_dir("rename-eperm");
        let (a, b) = (dir.join("a"), dir.join("b"));
        let outcome = std::thread::spawn(move || {
            refuse_rename_no_replace_on_this_thread(libc::EPERM);
            rename_no_replace(&a, &b)
        });
        let refused = outcome.join().unwrap().unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EPERM), "{refused}");
        assert!(dir.join("a").exists() && !dir.join("b").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Where the filesystem refuses `RENAME_NOREPLACE`, the fallback still
    /// renames to a free name and refuses a taken one, leaving both files.
    /// Kills what was `shards/src/fs/dma.rs:176:29: replace != with == in
    /// rename_no_replace` (it sent EINVAL back to the caller: every
    /// partition removal failed on such a filesystem), and its kind: a
    /// fallback taken on the wrong error.
    #[test]
    fn rename_falls_back_where_renameat2_flags_are_refused() {
        let dir = rename_dir("rename-einval");
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        let outcomes = std::thread::spawn(move || {
            refuse_rename_no_replace_on_this_thread(libc::EINVAL);
            let refused = renameat2_no_replace(&a, &b).unwrap_err();
            assert_eq!(refused.raw_os_error(), Some(libc::EINVAL), "{refused}");
            (rename_no_replace(&a, &b), rename_no_replace(&c, &b))
        });
        let (free, taken) = outcomes.join().unwrap();
        free.expect("a rename to a free name");
        assert_eq!(taken.unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"a");
        assert_eq!(std::fs::read(dir.join("c")).unwrap(), b"c");
        assert!(!dir.join("a").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
