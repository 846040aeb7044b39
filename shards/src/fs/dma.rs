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

use std::cell::OnceCell;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{stream, Stream, StreamExt};
use glommio::io::{
    DmaBuffer, DmaFile, IoVec, MergedBufferLimit, OpenOptions, ReadAmplificationLimit, ReadResult,
};

use super::{DirEntry, File, FileSystem, WriteBuf, BLOCK_SIZE};
use crate::data_dir::DataDir;

/// The production file system: DMA files under a locked data directory.
pub struct DmaFs {
    _data_dir: Arc<DataDir>,
}

impl DmaFs {
    /// Prepares this shard's executor for DMA files under `data_dir`.
    ///
    /// Must run on the shard's executor before any blob is created: it opens
    /// the page-sized LOCK file as this executor's first DMA file and reads
    /// it, so glommio's poll-support probe fails honestly (DESIGN.md, traps).
    pub async fn new(data_dir: Arc<DataDir>) -> io::Result<DmaFs> {
        let probe = DmaFile::open(data_dir.lock_path()).await?;
        let page = probe.read_at_aligned(0, BLOCK_SIZE as usize).await?;
        if (page.len() as u64) < BLOCK_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "LOCK file holds less than one page",
            ));
        }
        probe.close().await?;
        Ok(DmaFs {
            _data_dir: data_dir,
        })
    }
}

impl FileSystem for DmaFs {
    type File = DmaBlobFile;

    async fn open_file(&self, path: &Path, create: bool) -> io::Result<DmaBlobFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await?;
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
        let dir = glommio::io::Directory::open(path).await?;
        dir.sync().await?;
        dir.close().await?;
        Ok(())
    }
}

/// One blob's DMA file.
pub struct DmaBlobFile {
    file: Rc<DmaFile>,
    dsync: OnceCell<DmaFile>,
}

impl DmaBlobFile {
    /// The `O_DSYNC` descriptor of the same inode, opened on first use.
    async fn dsync_file(&self) -> io::Result<&DmaFile> {
        if let Some(file) = self.dsync.get() {
            return Ok(file);
        }
        let path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(path)
            .await?;
        // A concurrent task may have opened one meanwhile; keep the first.
        Ok(self.dsync.get_or_init(|| file))
    }
}

impl WriteBuf for DmaBuffer {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
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
        Ok(self.file.read_at(pos, len).await?)
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, ReadResult)>> {
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
            .map(|item| {
                item.map(|(range, bytes)| (range.index, bytes))
                    .map_err(io::Error::from)
            })
    }

    async fn write_at(&self, buf: DmaBuffer, pos: u64, durable: bool) -> io::Result<usize> {
        let file = if durable {
            self.dsync_file().await?
        } else {
            &self.file
        };
        Ok(file.write_at(buf, pos).await?)
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        Ok(self.file.truncate(len).await?)
    }

    fn set_len_now(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file length too large"))?;
        // SAFETY: ftruncate on a descriptor this file owns.
        if unsafe { libc::ftruncate(self.file.as_raw_fd(), len) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        Ok(self.file.pre_allocate(len, true).await?)
    }

    async fn sync_data(&self) -> io::Result<()> {
        // On the executor's blocking thread, not through io_uring: io_uring
        // runs an fdatasync in an io-wq worker that inherits the shard's CPU
        // pin, where the executor spins waiting for it. The blocking pool is
        // not pinned (the engine builds it so), so the sync runs beside it.
        let fd = self.file.as_raw_fd();
        // `self` keeps the descriptor open until the await ends.
        glommio::executor()
            .spawn_blocking(move || {
                // SAFETY: fdatasync on a descriptor the file keeps open.
                if unsafe { libc::fdatasync(fd) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
            .await
    }

    async fn size(&self) -> io::Result<u64> {
        // fstat, not statx by path: the path is gone once the blob is removed.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills `stat` on success; we read it only then.
        if unsafe { libc::fstat(self.file.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat returned 0, so the struct is initialised.
        let size = unsafe { stat.assume_init() }.st_size;
        u64::try_from(size).map_err(|_| io::Error::other("negative file size"))
    }
}
