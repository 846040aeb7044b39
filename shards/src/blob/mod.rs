//! [`ShardBlob`]: one open blob on this shard.
//!
//! A blob is one file: a header page, then the data. The file is written
//! with direct I/O, so every write covers whole 4 KiB blocks. Two lengths
//! are tracked: `len`, the logical length users see, and `file_len`, the data
//! bytes the file holds, which runs ahead of `len` by the zero padding of a
//! partially written last block. `sync` (and dropping the last handle) trims
//! the file back to `len`, so the padding never shows as length on reopen.
//! A crash can show it: the file comes back with its durable size (the
//! length at the last sync, grown to the 4 KiB boundary past each
//! `WriteOptions::SYNC` write since, as that write makes its whole blocks
//! durable) or its current size (`file_len`): a blob with unsynced or
//! SYNC writes may reopen longer than its logical length, by zero padding
//! up to that boundary.
//!
//! The block that holds the logical end (the *tail block*) is kept in
//! memory: a small append merges into it without reading the device.
//!
//! Concurrency, all on one thread:
//! - `meta` (read-write lock): writes hold it shared; `resize` and the trim of
//!   `sync` hold it exclusively, so a file-size change never races a write.
//! - `rmw` (one permit): held by every write that reads-modifies-writes an
//!   edge block, extends the blob, or touches the tail block. Concurrent
//!   writes to different bytes of one block therefore never undo each other.
//!   Aligned writes inside the blob (the random-write hot path) skip it.

mod read;
mod write;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use futures_lite::Stream;
use glommio::sync::{RwLock, Semaphore};

pub use read::BlobBuf;

use crate::api::{Blob, WriteOptions};
use crate::fs::{File, FileSystem, BLOCK_SIZE};
use crate::header::HEADER_LEN;
use crate::store::{BlobKey, Registry};
use crate::{Error, Result};

/// Largest logical blob length: file offsets must fit an `off_t`.
pub const BLOB_LEN_MAX: u64 = (i64::MAX as u64) - HEADER_LEN - BLOCK_SIZE;
/// Largest single device I/O; bigger reads and writes are split (a single
/// oversized read can hang on some kernels, glommio issue 633).
pub const IO_BYTES_MAX: usize = 1 << 20;
/// Files grow in preallocated steps of this size, so an append does not pay
/// a block allocation each time.
pub const PREALLOCATE_BYTES: u64 = 8 << 20;
/// Most ranges one `read_many` call accepts.
pub const READ_MANY_RANGES_MAX: usize = 1024;

/// The in-memory copy of the block holding the logical end.
pub(crate) struct TailBlock {
    /// Block index in the data area.
    pub(crate) index: u64,
    /// Its bytes; zero past the logical end.
    pub(crate) bytes: Box<[u8]>,
}

pub(crate) struct BlobState<F: FileSystem> {
    pub(crate) key: BlobKey,
    pub(crate) file: F::File,
    /// Logical length.
    pub(crate) len: Cell<u64>,
    /// Data bytes the file may hold (>= len; the excess is zero padding,
    /// or what a failed write left).
    pub(crate) file_len: Cell<u64>,
    /// Data bytes preallocated.
    pub(crate) reserved_len: Cell<u64>,
    pub(crate) tail: RefCell<Option<TailBlock>>,
    pub(crate) meta: RwLock<()>,
    pub(crate) rmw: Semaphore,
    /// Why the blob refuses writes and syncs, after a failed sync.
    pub(crate) poison: RefCell<Option<String>>,
    registry: Weak<Registry>,
}

/// A handle to an open blob. Clones share the open.
pub struct ShardBlob<F: FileSystem> {
    pub(crate) state: Rc<BlobState<F>>,
}

impl<F: FileSystem> Clone for ShardBlob<F> {
    fn clone(&self) -> Self {
        ShardBlob {
            state: self.state.clone(),
        }
    }
}

impl<F: FileSystem> ShardBlob<F> {
    pub(crate) fn new(
        key: BlobKey,
        file: F::File,
        len: u64,
        tail: Option<TailBlock>,
        registry: Weak<Registry>,
    ) -> ShardBlob<F> {
        ShardBlob {
            state: Rc::new(BlobState {
                key,
                file,
                len: Cell::new(len),
                file_len: Cell::new(len),
                reserved_len: Cell::new(len),
                tail: RefCell::new(tail),
                meta: RwLock::new(()),
                rmw: Semaphore::new(1),
                poison: RefCell::new(None),
                registry,
            }),
        }
    }

    /// The logical length now.
    pub fn len(&self) -> u64 {
        self.state.len.get()
    }

    /// Whether the blob is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `self` and `other` are handles of the same open.
    pub fn same_open(&self, other: &ShardBlob<F>) -> bool {
        Rc::ptr_eq(&self.state, &other.state)
    }
}

impl<F: FileSystem> BlobState<F> {
    pub(crate) fn io_error(&self, op: &'static str, source: std::io::Error) -> Error {
        Error::io(&self.key.partition, Some(&self.key.name), op, source)
    }

    pub(crate) fn overflow(&self, offset: u64, len: u64) -> Error {
        Error::OffsetOverflow {
            partition: self.key.partition.clone(),
            name: self.key.name.clone(),
            offset,
            len,
        }
    }

    /// `offset + len`, if it stays within [`BLOB_LEN_MAX`].
    pub(crate) fn end_of(&self, offset: u64, len: u64) -> Result<u64> {
        offset
            .checked_add(len)
            .filter(|&end| end <= BLOB_LEN_MAX)
            .ok_or_else(|| self.overflow(offset, len))
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match &*self.poison.borrow() {
            None => Ok(()),
            Some(cause) => Err(Error::BlobPoisoned {
                partition: self.key.partition.clone(),
                name: self.key.name.clone(),
                cause: cause.clone(),
            }),
        }
    }

    fn poison_with(&self, op: &'static str, source: std::io::Error) -> Error {
        self.poison
            .borrow_mut()
            .get_or_insert_with(|| format!("{op}: {source}"));
        self.io_error(op, source)
    }

    /// Makes every completed write and resize durable.
    async fn sync(&self) -> Result<()> {
        self.check_poison()?;
        if self.file_len.get() != self.len.get() {
            let _exclusive = self.meta.write().await.map_err(|_| Error::Shutdown)?;
            let len = self.len.get();
            if self.file_len.get() != len {
                if let Err(e) = self.file.set_len(HEADER_LEN + len).await {
                    return Err(self.poison_with("trim before sync", e));
                }
                self.file_len.set(len);
            }
        }
        match self.file.sync_data().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.poison_with("sync", e)),
        }
    }

    /// Extends with zeros or truncates to `new_len`.
    async fn resize(&self, new_len: u64) -> Result<()> {
        self.end_of(new_len, 0)?;
        self.check_poison()?;
        let _exclusive = self.meta.write().await.map_err(|_| Error::Shutdown)?;
        let old_len = self.len.get();
        self.file
            .set_len(HEADER_LEN + new_len)
            .await
            .map_err(|e| self.io_error("resize", e))?;
        // The file now holds exactly new_len bytes: the kernel zeroed the
        // rest of a cut block, and an extension reads as zeros.
        self.file_len.set(new_len);
        self.len.set(new_len);
        let tail = self.tail.borrow_mut().take();
        let tail = match (new_len % BLOCK_SIZE, tail) {
            (0, _) => None,
            (used, Some(mut tail)) if tail.index == new_len / BLOCK_SIZE => {
                tail.bytes[used as usize..].fill(0);
                Some(tail)
            }
            _ if new_len / BLOCK_SIZE * BLOCK_SIZE >= old_len => Some(TailBlock {
                index: new_len / BLOCK_SIZE,
                bytes: vec![0; BLOCK_SIZE as usize].into(),
            }),
            // A cut inside a block no longer cached: the next write that
            // needs it reads it from the device.
            _ => None,
        };
        *self.tail.borrow_mut() = tail;
        Ok(())
    }
}

impl<F: FileSystem> Drop for BlobState<F> {
    fn drop(&mut self) {
        // Trim the padding of the last block so the length on reopen is
        // exact, and give back the preallocated blocks past the end. Best
        // effort: a failure leaves zero padding, which a later open reports
        // as length (never lost data), or space reserved.
        let untrimmed =
            self.file_len.get() != self.len.get() || self.reserved_len.get() > self.len.get();
        if self.poison.borrow().is_none() && untrimmed {
            let _ = self.file.set_len_now(HEADER_LEN + self.len.get());
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.release(&self.key, self as *const BlobState<F> as *const ());
        }
    }
}

impl<F: FileSystem> Blob for ShardBlob<F> {
    type Buf = BlobBuf<<F::File as File>::ReadBuf>;

    async fn read_at(&self, offset: u64, len: usize) -> Result<Self::Buf> {
        self.state.read_at(offset, len).await
    }

    async fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.state.read_into(offset, buf).await
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, Self::Buf)>> {
        self.state.read_many(ranges)
    }

    async fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> Result<()> {
        self.state
            .write(offset, bufs, options.contains(WriteOptions::SYNC))
            .await
    }

    async fn resize(&self, len: u64) -> Result<()> {
        self.state.resize(len).await
    }

    async fn sync(&self) -> Result<()> {
        self.state.sync().await
    }

    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>> {
        let state = self.state.clone();
        let task = glommio::spawn_local(async move { state.sync().await }).detach();
        async move { task.await.unwrap_or(Err(Error::Shutdown)) }
    }
}
