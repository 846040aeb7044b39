//! The read path.
//!
//! Reads need no alignment from the caller: the file seam reads the covering
//! blocks and hands back a view of the requested bytes, without a copy. A
//! read larger than the scheduler's piece (`piece_bytes`, at most
//! `IO_BYTES_MAX`) is split into sequential device reads, each scheduled on
//! its own, and gathered into one owned buffer.
//!
//! Every read holds the blob's `meta` lock shared from its range check to
//! its last completion, so a shrinking resize waits for it; a trim (of the
//! padding, or of a failed write's bytes) cuts only past `len`, where no
//! read reaches. So the file never gets shorter than a range a read was
//! allowed to read (glommio hands back the requested length even after a
//! short read, pool memory included). Dropping a read has no effect to undo.

use std::ops::Deref;

use async_lock::RwLockReadGuard;
use futures_lite::{stream, Stream, StreamExt};

use crate::fs::{File, FileSystem};
use crate::header::HEADER_LEN;
use crate::{Error, Result};

use super::{BlobState, IO_BYTES_MAX, READ_MANY_RANGES_MAX};

/// The bytes of a read: a view of the I/O buffer, or an owned gather of a
/// split read.
#[derive(Clone)]
pub enum BlobBuf<R> {
    /// A view into the buffer the device read into.
    Io(R),
    /// Bytes gathered from several device reads (or none, for `len == 0`).
    Owned(Vec<u8>),
}

impl<R: Deref<Target = [u8]>> Deref for BlobBuf<R> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            BlobBuf::Io(r) => r,
            BlobBuf::Owned(v) => v,
        }
    }
}

impl<R: Deref<Target = [u8]>> std::fmt::Debug for BlobBuf<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobBuf({} bytes)", self.len())
    }
}

type ReadBuf<F> = <<F as FileSystem>::File as File>::ReadBuf;

impl<F: FileSystem> BlobState<F> {
    /// Checks that `offset..offset + len` lies inside the blob.
    fn check_range(&self, offset: u64, len: usize) -> Result<()> {
        let end = self.end_of(offset, len as u64)?;
        let blob_len = self.len.get();
        if end > blob_len {
            return Err(Error::BlobInsufficientLength {
                partition: self.key.partition.clone(),
                name: self.key.name.clone(),
                offset,
                len: len as u64,
                blob_len,
            });
        }
        Ok(())
    }

    /// One device read of at most one piece, exactly `len` long.
    async fn read_exact(&self, offset: u64, len: usize) -> Result<ReadBuf<F>> {
        debug_assert!(len <= self.file.piece_bytes());
        let bytes = self
            .file
            .read_at(HEADER_LEN + offset, len)
            .await
            .map_err(|e| self.io_error("read", e))?;
        if bytes.len() != len {
            return Err(self.short_read(offset, len, bytes.len()));
        }
        Ok(bytes)
    }

    fn short_read(&self, offset: u64, wanted: usize, got: usize) -> Error {
        self.io_error(
            "read",
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short read at {offset}: {got} of {wanted} bytes; the file is shorter than the blob"),
            ),
        )
    }

    pub(crate) async fn read_at(&self, offset: u64, len: usize) -> Result<BlobBuf<ReadBuf<F>>> {
        let _shared = self.meta.read().await;
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(BlobBuf::Owned(Vec::new()));
        }
        if len <= self.file.piece_bytes() {
            return Ok(BlobBuf::Io(self.read_exact(offset, len).await?));
        }
        let mut out = vec![0; len];
        self.read_into_unchecked(offset, &mut out).await?;
        Ok(BlobBuf::Owned(out))
    }

    pub(crate) async fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let _shared = self.meta.read().await;
        self.check_range(offset, out.len())?;
        self.read_into_unchecked(offset, out).await
    }

    async fn read_into_unchecked(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let piece_bytes = self.file.piece_bytes();
        for (i, piece) in out.chunks_mut(piece_bytes).enumerate() {
            let at = offset + (i * piece_bytes) as u64;
            piece.copy_from_slice(&self.read_exact(at, piece.len()).await?);
        }
        Ok(())
    }

    pub(crate) fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, BlobBuf<ReadBuf<F>>)>> + '_ {
        let mut ranges = Some(ranges);
        stream::once_future(self.meta.read()).flat_map(move |shared| {
            self.read_many_locked(shared, ranges.take().unwrap_or_default())
        })
    }

    /// `read_many` once the lock is held; the stream keeps it until it has
    /// yielded its last range (a caller that takes exactly its ranges and
    /// keeps the stream must not hold off a resize for ever).
    fn read_many_locked<'a>(
        &'a self,
        shared: RwLockReadGuard<'a, ()>,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, BlobBuf<ReadBuf<F>>)>> + 'a {
        let checked = self.check_batch(&ranges);
        let (device, empty): (Vec<_>, Vec<_>) = match checked {
            Ok(()) => ranges
                .iter()
                .copied()
                .enumerate()
                .partition(|(_, (_, len))| *len > 0),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let failed = stream::iter(checked.err().map(Err));
        let empty = stream::iter(
            empty
                .into_iter()
                .map(|(i, _)| Ok((i, BlobBuf::Owned(Vec::new())))),
        );
        let wanted: Vec<usize> = ranges.iter().map(|&(_, len)| len).collect();
        let indexes: Vec<usize> = device.iter().map(|&(i, _)| i).collect();
        let positions = device
            .iter()
            .map(|&(_, (offset, len))| (HEADER_LEN + offset, len))
            .collect();
        let mut remaining = indexes.len();
        let mut shared = (remaining > 0).then_some(shared);
        let reads = self.file.read_many(positions).map(move |item| {
            // Every range is still on its way to the device or done, even
            // after an error: the lock goes with the last one only.
            remaining = remaining.saturating_sub(1);
            if remaining == 0 {
                drop(shared.take());
            }
            self.read_many_item(item, &indexes, &ranges, &wanted)
        });
        failed.chain(empty).chain(reads)
    }

    /// Checks one completed range of a `read_many` batch.
    fn read_many_item(
        &self,
        item: std::io::Result<(usize, ReadBuf<F>)>,
        indexes: &[usize],
        ranges: &[(u64, usize)],
        wanted: &[usize],
    ) -> Result<(usize, BlobBuf<ReadBuf<F>>)> {
        let (k, bytes) = item.map_err(|e| self.io_error("read_many", e))?;
        let index = indexes[k];
        let (offset, len) = ranges[index];
        if bytes.len() != wanted[index] {
            return Err(self.short_read(offset, len, bytes.len()));
        }
        Ok((index, BlobBuf::Io(bytes)))
    }

    /// Checks a whole `read_many` batch before anything is submitted.
    fn check_batch(&self, ranges: &[(u64, usize)]) -> Result<()> {
        if ranges.len() > READ_MANY_RANGES_MAX {
            return Err(Error::InvalidArgument {
                partition: self.key.partition.clone(),
                name: self.key.name.clone(),
                reason: format!(
                    "read_many takes at most {READ_MANY_RANGES_MAX} ranges, got {}",
                    ranges.len()
                ),
            });
        }
        for &(offset, len) in ranges {
            self.check_range(offset, len)?;
            if len > IO_BYTES_MAX {
                return Err(Error::InvalidArgument {
                    partition: self.key.partition.clone(),
                    name: self.key.name.clone(),
                    reason: format!(
                        "read_many range of {len} bytes at {offset} is over the {IO_BYTES_MAX}-byte limit; use read_at"
                    ),
                });
            }
        }
        Ok(())
    }
}
