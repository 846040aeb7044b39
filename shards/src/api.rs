//! The storage contract every path to a blob implements.
//!
//! The model is commonware-runtime's `Storage`/`Blob`: partitions are named
//! groups of blobs, blobs are byte arrays addressed by offset. The same two
//! traits are implemented by the shard store itself and by every engine path
//! (same shard, cross shard, foreign thread), and one conformance suite
//! (`crate::conformance`) runs against each of them.
//!
//! The futures of [`Storage`] and [`Blob`] are not `Send`: a shard's
//! futures never leave its thread. Code generic over the traits that must
//! run on a work-stealing runtime (`tokio::spawn`) uses [`SendStorage`] and
//! [`SendBlob`] instead: the same contract, with `Send` futures, implemented
//! by the thread-safe handles (the engine's `Client`).

use std::future::Future;
use std::ops::{Deref, DerefMut, RangeInclusive};

use futures_lite::Stream;

use crate::sched::IoClass;
use crate::Result;

/// Options of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    bits: u8,
}

impl WriteOptions {
    /// A plain write: durable after the next `sync`.
    pub const NONE: WriteOptions = WriteOptions { bits: 0 };
    /// The written bytes are durable when the write returns `Ok` (one write
    /// with data-sync semantics). Not a barrier for earlier unsynced writes.
    pub const SYNC: WriteOptions = WriteOptions { bits: 1 };
    /// Accepted and a no-op: all I/O bypasses the page cache already.
    pub const DONT_CACHE: WriteOptions = WriteOptions { bits: 2 };
    /// The write runs in [`IoClass::Throughput`] (bulk work: bounded at the
    /// device so that latency-class operations pass it). Without it, a write
    /// runs in the class of the operation it is part of
    /// ([`IoClass::scope`]), by default [`IoClass::Latency`].
    pub const THROUGHPUT: WriteOptions = WriteOptions { bits: 4 };

    /// Whether `other`'s flags are all set in `self`.
    pub fn contains(self, other: WriteOptions) -> bool {
        self.bits & other.bits == other.bits
    }

    /// The I/O class the write runs in: the one these options name, else
    /// the current one.
    pub fn class(self) -> IoClass {
        match self.contains(WriteOptions::THROUGHPUT) {
            true => IoClass::Throughput,
            false => IoClass::current(),
        }
    }
}

impl std::ops::BitOr for WriteOptions {
    type Output = WriteOptions;
    fn bitor(self, rhs: WriteOptions) -> WriteOptions {
        WriteOptions {
            bits: self.bits | rhs.bits,
        }
    }
}

/// Options of one read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    bits: u8,
}

impl ReadOptions {
    /// A plain read.
    pub const NONE: ReadOptions = ReadOptions { bits: 0 };
    /// Accepted and a no-op: all I/O bypasses the page cache already.
    pub const DONT_CACHE: ReadOptions = ReadOptions { bits: 2 };
}

/// A set of blobs grouped in partitions.
///
/// Contract:
/// - `open` creates a missing blob; `Ok` means the blob (file and directory
///   entries) is durable. A new blob gets `versions.end()`; an existing one
///   whose version is outside `versions` gives `BlobVersionMismatch`; an empty
///   range gives `VersionRangeEmpty`.
/// - Uniqueness: one live open per blob. Opening a blob whose earlier handle
///   is still alive (and was not removed since) gives `BlobAlreadyOpen`.
///   Clone a handle to share it. An open right after the last handle's drop
///   waits for that close, which ends when the work the handle started has
///   landed (a write whose caller left, zeros written ahead of appends).
/// - `remove(p, Some(name))` removes a blob, `remove(p, None)` the whole
///   partition; `Ok` means durable. Handles opened before keep reading what
///   they had; reopening the name makes a new, empty blob. `BlobMissing`
///   from a remove is durable too: no crash brings the name back (a retry
///   after a remove that failed at its directory sync syncs it).
/// - `scan` lists blob names; a missing partition gives `PartitionMissing`,
///   an entry shardblob did not write gives `PartitionCorrupt`.
/// - Every error names the partition, and the blob where there is one, that
///   it concerns. No input, file on disk or filesystem error makes the
///   engine panic.
///
/// Cancellation: any of these futures may be dropped at any await. A dropped
/// `open` never leaves the name "already open" (on every path: a forwarded
/// open whose caller left is closed by the owning shard) and leaks no file
/// descriptor; a dropped `remove` leaves no remove pending.
///
/// Races: an `open` and a `remove` of the same name never overlap. A remove
/// waits for opens of its names that are already running; opens that start
/// during a remove wait for it, then open a new, empty blob. So there are
/// never two live handles on one file; a handle opened before the remove
/// keeps its own file. `remove(p, None)` is atomic to observers and across a
/// crash: a concurrent `scan` or `open` of the partition, or a restart after
/// a crash, sees the whole partition or none of it, and an error means that
/// nothing was removed unless its message says otherwise.
///
/// Resources: the engine starts on a full filesystem once its data directory
/// holds its LOCK (startup writes nothing there), so blobs can be opened,
/// read and removed to free space. A data directory on a filesystem that
/// keeps nothing (tmpfs, ramfs) is refused unless the configuration says
/// it is meant (`allow_volatile_data_dir`). A removed partition is renamed
/// to a tombstone, and its files are deleted at once, best effort; what a
/// crash leaves is deleted at the next start.
#[allow(async_fn_in_trait)]
pub trait Storage {
    /// The handle of an open blob.
    type Blob: Blob;

    /// Opens or creates a blob at version 0.
    async fn open(&self, partition: &str, name: &[u8]) -> Result<(Self::Blob, u64)> {
        let (blob, len, _) = self.open_versioned(partition, name, 0..=0).await?;
        Ok((blob, len))
    }

    /// Opens or creates a blob whose version must lie in `versions`; returns
    /// the handle, the logical length and the blob's version.
    async fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> Result<(Self::Blob, u64, u16)>;

    /// Removes one blob (`Some(name)`) or the whole partition (`None`).
    async fn remove(&self, partition: &str, name: Option<&[u8]>) -> Result<()>;

    /// Lists the names of the blobs in a partition, in no particular order.
    async fn scan(&self, partition: &str) -> Result<Vec<Vec<u8>>>;
}

/// One open blob: a byte array addressed by offset.
///
/// Contract:
/// - `read_at` returns exactly `len` bytes or `BlobInsufficientLength`;
///   `len == 0` is fine anywhere up to the end.
/// - `write_at` accepts any offset and length; past the end it extends the
///   blob and a gap reads as zeros. With `WriteOptions::SYNC` those bytes are
///   durable when it returns `Ok` (all of them, however many device writes
///   a large write is split into).
/// - I/O classes: every operation runs in the [`IoClass`] of the future
///   performing it ([`IoClass::scope`]; `WriteOptions::THROUGHPUT` for one
///   write), on every path; the class changes when an operation reaches
///   the device, never what it does. A `sync` always flushes in the latency
///   class (one flush serves the syncs of both classes).
/// - `sync`: every write and resize completed before the call is durable when
///   it returns `Ok`. A failed sync poisons the blob: later writes and syncs
///   fail with `BlobPoisoned`.
/// - A failed write adds no length, and its bytes never show past the
///   logical end: a later `resize` up, or a write past the end, reads zeros
///   there (it first cuts them off, durably: a flush, which poisons the
///   blob as a failed sync does if it fails; the error's `op` is then
///   [`CUT_FLUSH_OP`](crate::CUT_FLUSH_OP), and the blob's close flushes
///   again, or, if that fails too, the next open of the blob by the same
///   store). Inside the blob each of its 512-byte
///   sectors reads old or new.
///   After a crash it counts as an unsynced write, as one the crash cut
///   short would: until the next sync, a crash may show it whole or torn,
///   with the length it would have given the blob (its length slot may
///   have been written with it).
/// - Concurrency: a read observes every write completed before it began.
///   Overlapping operations are not atomic, but concurrent writes to
///   different byte ranges never damage each other.
/// - Offset arithmetic never wraps: overflow gives `OffsetOverflow`.
/// - Crash: every byte covered by a completed sync (or SYNC write) is
///   intact; bytes not written since are unchanged; unsynced writes may be
///   torn. A blob reopens with a length it had: the durable one, or one a
///   change since recorded (no zero padding shows as length).
///   A killed process loses no completed write.
///
/// Cancellation: any future may be dropped at any await (timeouts,
/// `select!`). A write, resize or sync that has issued device I/O finishes
/// on its own task, with the blob's length, tail block and locks updated
/// with it: a dropped write is at most an unsynced write, and it lands
/// before any write issued after the drop; a dropped `resize` takes effect
/// entirely or not at all; a dropped `sync` (or the handle of `start_sync`)
/// still flushes, and poisons the blob if the flush fails. Until a dropped
/// operation lands, the blob counts as open.
///
/// Races: a read racing a shrinking `resize` returns the bytes it began
/// with, never bytes that were not in the blob (reads hold off a shrink
/// until it has yielded its last range, so do
/// not await `resize` or `sync` of a blob while holding a
/// `read_many` stream of it that still has ranges to yield). `sync` and `resize`
/// make progress under a steady stream of writes: a sync waits for none of
/// them, and a waiting resize lets no new write pass it. Concurrent syncs of one blob share one flush:
/// a sync is satisfied by the first flush that began after it was called.
///
/// Resources: no single call can take the host's disk. A write reserves
/// space (fallocate, size kept) only from the reserved end up to the next
/// 8 MiB step and only when it starts at or before that end, so a write far
/// past the end reserves nothing for the gap; a reservation that fails
/// gives back what it took. Space a crashed process left reserved past a
/// blob's end is given back when the blob is opened.
#[allow(async_fn_in_trait)]
pub trait Blob: Clone {
    /// The bytes of a read.
    type Buf: Deref<Target = [u8]> + std::fmt::Debug;
    /// A buffer for [`Blob::write_buf_at`], from [`Blob::alloc_buf`].
    type WriteBuf: DerefMut<Target = [u8]> + std::fmt::Debug;

    /// Reads exactly `len` bytes at `offset`.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Self::Buf>;

    /// Reads exactly `buf.len()` bytes at `offset` into a caller's buffer.
    async fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Reads a batch of `(offset, len)` ranges submitted to the device
    /// together. Yields `(index into ranges, bytes)` as each completes, every
    /// range exactly once, or one error that ends the call.
    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, Self::Buf)>>;

    /// Writes the concatenation of `bufs` at `offset`.
    async fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> Result<()>;

    /// Writes `data` at `offset` (a plain, unsynced write).
    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_vectored_at(offset, &[data], WriteOptions::NONE)
            .await
    }

    /// A zeroed buffer of `len` bytes to fill in place and write with
    /// [`Blob::write_buf_at`]: on the shard that owns the blob, memory its
    /// device writes use as it is; elsewhere plain memory that travels to
    /// that shard without a copy. At most
    /// [`WRITE_BUF_BYTES_MAX`](crate::blob::WRITE_BUF_BYTES_MAX) bytes, else
    /// `InvalidArgument`.
    fn alloc_buf(&self, len: usize) -> Result<Self::WriteBuf>;

    /// Writes `buf` at `offset`, as [`Blob::write_vectored_at`] would (same
    /// contract), and on `Ok` gives back a buffer of the same length for
    /// the next write: `buf` with the bytes written, or a new zeroed one
    /// where the device kept it. On the owning shard a write that is
    /// aligned (offset and length multiples of 4096) and fits one device
    /// write (the scheduler's `piece_bytes`) costs no copy, any other one
    /// copy (its blocks are assembled in DMA memory); from another shard
    /// or thread the buffer moves to the owner, which copies it once. A
    /// write that fails or whose future is dropped consumes the buffer: it
    /// is not given back.
    async fn write_buf_at(
        &self,
        offset: u64,
        buf: Self::WriteBuf,
        options: WriteOptions,
    ) -> Result<Self::WriteBuf>;

    /// Extends the blob with zeros or truncates it to `len` bytes.
    async fn resize(&self, len: u64) -> Result<()>;

    /// Makes every completed write and resize durable.
    async fn sync(&self) -> Result<()>;

    /// Starts a sync that goes on even if the returned future is dropped.
    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>>;
}

/// [`Storage`] for thread-safe handles: the same contract, and every future
/// is `Send`, so code generic over it can be spawned on any runtime.
pub trait SendStorage: Send + Sync {
    /// The handle of an open blob.
    type Blob: SendBlob;

    /// [`Storage::open`].
    fn open(
        &self,
        partition: &str,
        name: &[u8],
    ) -> impl Future<Output = Result<(Self::Blob, u64)>> + Send;

    /// [`Storage::open_versioned`].
    fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> impl Future<Output = Result<(Self::Blob, u64, u16)>> + Send;

    /// [`Storage::remove`].
    fn remove(
        &self,
        partition: &str,
        name: Option<&[u8]>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// [`Storage::scan`].
    fn scan(&self, partition: &str) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send;
}

/// [`Blob`] for thread-safe handles: the same contract, and every future
/// is `Send`.
pub trait SendBlob: Clone + Send + Sync + 'static {
    /// The bytes of a read.
    type Buf: Deref<Target = [u8]> + std::fmt::Debug + Send;
    /// [`Blob::WriteBuf`].
    type WriteBuf: DerefMut<Target = [u8]> + std::fmt::Debug + Send;

    /// [`Blob::read_at`].
    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = Result<Self::Buf>> + Send;

    /// [`Blob::read_into`].
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> impl Future<Output = Result<()>> + Send;

    /// [`Blob::read_many`].
    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, Self::Buf)>> + Send;

    /// [`Blob::write_vectored_at`].
    fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> impl Future<Output = Result<()>> + Send;

    /// [`Blob::write_at`].
    fn write_at(&self, offset: u64, data: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// [`Blob::alloc_buf`].
    fn alloc_buf(&self, len: usize) -> Result<Self::WriteBuf>;

    /// [`Blob::write_buf_at`].
    fn write_buf_at(
        &self,
        offset: u64,
        buf: Self::WriteBuf,
        options: WriteOptions,
    ) -> impl Future<Output = Result<Self::WriteBuf>> + Send;

    /// [`Blob::resize`].
    fn resize(&self, len: u64) -> impl Future<Output = Result<()>> + Send;

    /// [`Blob::sync`].
    fn sync(&self) -> impl Future<Output = Result<()>> + Send;

    /// [`Blob::start_sync`].
    fn start_sync(&self) -> impl Future<Output = Result<()>> + Send;
}
