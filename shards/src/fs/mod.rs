//! The file seam: the only way the shard store reaches files and directories.
//!
//! The store is generic over [`FileSystem`] (static dispatch, so the real path
//! pays nothing for the indirection). Two implementations exist:
//! - [`dma::DmaFs`]: glommio `DmaFile`s, O_DIRECT, io_uring, the production path.
//! - [`sim::SimFs`]: an in-memory, seed-deterministic file system that knows
//!   what is synced, can fail any call and can crash; the conformance suite
//!   and the crash simulation drive the very same store code through it.
//! - [`any::AnyFs`]: either of the two, chosen at run time: what the engine
//!   runs on, so that it can start on a simulated disk too.
//!
//! Files are addressed with block-aligned offsets and lengths
//! ([`BLOCK_SIZE`]) for writes; reads may be unaligned (the implementation
//! aligns them). Directory calls are synchronous: they are rare metadata
//! operations and each costs one syscall.

use std::ffi::OsString;
use std::io;
use std::ops::Deref;
use std::path::Path;

use futures_lite::Stream;

pub mod any;
pub mod dma;
pub mod sim;

/// Direct-I/O block size: every write covers whole blocks of this size.
pub const BLOCK_SIZE: u64 = 4096;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// File name within the directory.
    pub name: OsString,
    /// Whether the entry is a regular file (not a directory, link or other).
    pub is_file: bool,
}

/// A buffer a file can write: aligned for direct I/O on the real path.
pub trait WriteBuf {
    /// The buffer's bytes.
    fn bytes(&self) -> &[u8];
    /// The whole buffer, to fill before writing.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Shortens the buffer to its first `len` bytes (no-op if shorter).
    fn truncate(&mut self, len: usize);
}

/// Files and directories as the shard store needs them.
#[allow(async_fn_in_trait)]
pub trait FileSystem: 'static {
    /// An open file.
    type File: File;

    /// Opens a file for reading and writing with direct I/O, creating it
    /// (empty) when `create` is set and it is missing.
    async fn open_file(&self, path: &Path, create: bool) -> io::Result<Self::File>;

    /// Creates a directory; `Ok(true)` if it was created, `Ok(false)` if a
    /// directory was already there.
    fn create_dir(&self, path: &Path) -> io::Result<bool>;

    /// Lists a directory (`NotFound` if missing).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;

    /// Removes a file's directory entry (open handles keep the data).
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;

    /// Makes the directory's entries durable (fsync of the directory).
    async fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Renames the file or directory `from` to `to`, which must not exist
    /// (`AlreadyExists`): never replaces an entry. Durable once both parent
    /// directories are synced; within one directory a crash keeps either
    /// the old or the new name, never both or neither.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
}

/// One open file, used by exactly one blob.
#[allow(async_fn_in_trait)]
pub trait File: 'static {
    /// An aligned buffer to write from. `'static`: a started write may be
    /// finished by another task after its caller is gone.
    type WriteBuf: WriteBuf + 'static;
    /// The bytes of a completed read.
    type ReadBuf: Deref<Target = [u8]> + Clone + 'static;

    /// Allocates a write buffer of `len` bytes (a multiple of [`BLOCK_SIZE`]).
    /// Its contents are unspecified: the caller fills all of it.
    fn alloc(&self, len: usize) -> Self::WriteBuf;

    /// Reads up to `len` bytes at `pos` (any alignment). Fewer bytes only at
    /// the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Self::ReadBuf>;

    /// Reads a batch of `(pos, len)` ranges submitted together, adjacent ones
    /// merged. Yields `(index, bytes)` as each completes.
    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, Self::ReadBuf)>>;

    /// Writes the buffer at the block-aligned `pos` and returns how many
    /// bytes it wrote: fewer than the buffer holds when the device cut the
    /// write short, which the caller must take for a failure
    /// (`written_whole`). With `durable`, the bytes are durable when it
    /// returns (data-sync semantics, one write).
    async fn write_at(&self, buf: Self::WriteBuf, pos: u64, durable: bool) -> io::Result<usize> {
        self.write_returning(buf, pos, durable).await.0
    }

    /// [`File::write_at`], and the buffer back, unchanged, once the device
    /// is done with it (`None` if it cannot be had back), for a caller that
    /// reuses its buffers (zero-copy writes, blob/write_buf.rs).
    async fn write_returning(
        &self,
        buf: Self::WriteBuf,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<Self::WriteBuf>);

    /// Sets the file size (extending with zeros or truncating).
    async fn set_len(&self, len: u64) -> io::Result<()>;

    /// Sets the file size now, from a synchronous context (a handle's drop).
    fn set_len_now(&self, len: u64) -> io::Result<()>;

    /// Writes one block at the block-aligned `pos` now, from a synchronous
    /// context (the length slot a handle's drop records), not durably.
    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()>;

    /// Reserves the blocks of `pos..pos + len` without changing the file
    /// size (fallocate with KEEP_SIZE). On failure it may have reserved part
    /// of them.
    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()>;

    /// Gives back the blocks reserved past the end of the file (a crash can
    /// leave them), if they exceed `slack` bytes; `Ok(true)` if it did. Costs
    /// one fstat when there are none.
    fn release_past_end_now(&self, slack: u64) -> io::Result<bool>;

    /// Makes the file's data and size durable (fdatasync).
    async fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and size durable now (fdatasync), from a
    /// synchronous context (a poisoned handle's drop).
    fn sync_data_now(&self) -> io::Result<()>;

    /// The file size in bytes.
    async fn size(&self) -> io::Result<u64>;
}

/// `Ok` if the device wrote all `len` bytes, else a short-write error: a
/// write may complete short (the kernel reports the bytes it wrote before
/// an error), and every caller must treat that as a failure.
pub(crate) fn written_whole(written: usize, len: u64) -> io::Result<()> {
    match written as u64 == len {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {written} of {len} bytes"),
        )),
    }
}
