//! The storage contract every path to a blob implements.
//!
//! The model is commonware-runtime's `Storage`/`Blob`: partitions are named
//! groups of blobs, blobs are byte arrays addressed by offset. The same two
//! traits are implemented by the shard store itself and by every engine path
//! (same shard, cross shard, foreign thread), and one conformance suite
//! (`crate::conformance`) runs against each of them.
//!
//! The futures are not `Send`: a shard's futures never leave its thread. The
//! foreign-thread handle of the engine returns futures that are `Send`.

use std::ops::{Deref, RangeInclusive};

use futures_lite::Stream;

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

    /// Whether `other`'s flags are all set in `self`.
    pub fn contains(self, other: WriteOptions) -> bool {
        self.bits & other.bits == other.bits
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
///   Clone a handle to share it.
/// - `remove(p, Some(name))` removes a blob, `remove(p, None)` the whole
///   partition; `Ok` means durable. Handles opened before keep reading what
///   they had; reopening the name makes a new, empty blob.
/// - `scan` lists blob names; a missing partition gives `PartitionMissing`,
///   an entry shardblob did not write gives `PartitionCorrupt`.
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
///   durable when it returns `Ok`.
/// - `sync`: every write and resize completed before the call is durable when
///   it returns `Ok`. A failed sync poisons the blob: later writes and syncs
///   fail with `BlobPoisoned`.
/// - Concurrency: a read observes every write completed before it began.
///   Overlapping operations are not atomic, but concurrent writes to
///   different byte ranges never damage each other.
/// - Offset arithmetic never wraps: overflow gives `OffsetOverflow`.
/// - Crash: every byte covered by a completed sync (or SYNC write) is
///   intact; bytes not written since are unchanged; unsynced writes may be
///   torn. A blob whose last block was written partly since its last sync
///   may reopen longer than its logical length, by zero padding up to the
///   next 4 KiB boundary (a clean close never shows it).
#[allow(async_fn_in_trait)]
pub trait Blob: Clone {
    /// The bytes of a read.
    type Buf: Deref<Target = [u8]> + std::fmt::Debug;

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

    /// Extends the blob with zeros or truncates it to `len` bytes.
    async fn resize(&self, len: u64) -> Result<()>;

    /// Makes every completed write and resize durable.
    async fn sync(&self) -> Result<()>;

    /// Starts a sync that goes on even if the returned future is dropped.
    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>>;
}
