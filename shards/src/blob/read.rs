//! The read path.
//!
//! Reads need no alignment from the caller: the file seam reads the covering
//! blocks and hands back a view of the requested bytes, without a copy. No
//! device read of `read_at` or `read_into` covers more than the scheduler's
//! piece (`piece_bytes`, at most `IO_BYTES_MAX`; more can hang a device,
//! glommio issue 633): a read
//! whose blocks span more is cut at piece boundaries counted from its first
//! block ([`pieces`]), so an unaligned read of one piece is two device
//! reads. `read_at` and `read_into` issue the pieces one after another, each
//! scheduled on its own, and gather them into one owned buffer; a
//! `read_many` range of several pieces goes to the device as several ranges
//! of the batch and is gathered when its last piece is in. On DMA files
//! glommio may merge adjacent ranges of one batch into one device read, up
//! to the device's `max_sectors_kb` (`fs::dma`, `MergedBufferLimit::
//! DeviceMaxSingleRequest`): such a read can span several pieces, each
//! still scheduled on its own, and never more than the device takes in one
//! request.
//!
//! Every read holds the blob's `meta` lock shared from its range check to
//! its last completion, so a shrinking resize waits for it; a cut (of a
//! failed write's bytes, or the zeros ahead) cuts only past `len`, where no
//! read reaches. So the file never gets shorter than a range a read was
//! allowed to read (glommio hands back the requested length even after a
//! short read, pool memory included). Dropping a read has no effect to undo.

use std::ops::Deref;

use async_lock::RwLockReadGuard;
use futures_lite::{stream, Stream, StreamExt};

use crate::fs::{File, FileSystem, BLOCK_SIZE};
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

/// `offset..offset + len` cut at multiples of `piece` bytes counted from
/// its first block: the blocks of each piece span at most `piece` bytes,
/// so no device read (which covers whole blocks) is larger. Empty for
/// `len == 0`.
fn pieces(offset: u64, len: usize, piece: usize) -> impl Iterator<Item = (u64, usize)> {
    debug_assert!(
        (piece as u64).is_multiple_of(BLOCK_SIZE) && piece > 0,
        "piece {piece}"
    );
    let end = offset + len as u64;
    let base = offset / BLOCK_SIZE * BLOCK_SIZE;
    let piece = piece as u64;
    (0..)
        .map(move |k| base + k * piece)
        .take_while(move |&from| from < end && len > 0)
        .map(move |from| {
            let start = from.max(offset);
            (start, ((from + piece).min(end) - start) as usize)
        })
}

/// The bytes of device blocks a read of `len` at `offset` covers.
fn blocks_spanned(offset: u64, len: usize) -> u64 {
    let end = offset + len as u64;
    end.div_ceil(BLOCK_SIZE) * BLOCK_SIZE - offset / BLOCK_SIZE * BLOCK_SIZE
}

/// One range of a `read_many` batch, gathered from its pieces.
struct Gather {
    /// Pieces not read yet.
    left: usize,
    /// The range's bytes, filled piece by piece (a range of several).
    bytes: Vec<u8>,
}

/// The pieces of a `read_many` batch on their way back to its ranges.
struct Batch {
    /// Per piece: the index of its range, its offset in it, its length.
    pieces: Vec<(usize, usize, usize)>,
    /// Per range of the batch.
    ranges: Vec<Gather>,
}

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
        let spanned = blocks_spanned(offset, len);
        debug_assert!(spanned <= self.file.piece_bytes() as u64, "{spanned}");
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
        if blocks_spanned(offset, len) <= self.file.piece_bytes() as u64 {
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
        let mut rest = out;
        for (at, len) in pieces(offset, rest.len(), self.file.piece_bytes()) {
            let (piece, after) = rest.split_at_mut(len);
            piece.copy_from_slice(&self.read_exact(at, len).await?);
            rest = after;
        }
        debug_assert!(rest.is_empty(), "every byte read");
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
        let ranges = match checked {
            Ok(()) => ranges,
            Err(_) => Vec::new(),
        };
        let failed = stream::iter(checked.err().map(Err));
        let empty: Vec<usize> = (0..ranges.len()).filter(|&i| ranges[i].1 == 0).collect();
        let empty = stream::iter(
            empty
                .into_iter()
                .map(|i| Ok((i, BlobBuf::Owned(Vec::new())))),
        );
        let (mut batch, positions) = self.batch(&ranges);
        let mut remaining = positions.len();
        let mut shared = (remaining > 0).then_some(shared);
        let reads = self.file.read_many(positions).filter_map(move |item| {
            // Every piece is still on its way to the device or done, even
            // after an error: the lock goes with the last one only.
            remaining = remaining.saturating_sub(1);
            if remaining == 0 {
                drop(shared.take());
            }
            self.read_many_item(item, &mut batch, &ranges).transpose()
        });
        failed.chain(empty).chain(reads)
    }

    /// Cuts the ranges of a checked batch into pieces: what gathers them
    /// back, and the device ranges.
    fn batch(&self, ranges: &[(u64, usize)]) -> (Batch, Vec<(u64, usize)>) {
        let piece_bytes = self.file.piece_bytes();
        let mut batch = Batch {
            pieces: Vec::with_capacity(ranges.len()),
            ranges: Vec::with_capacity(ranges.len()),
        };
        let mut positions = Vec::with_capacity(ranges.len());
        for (index, &(offset, len)) in ranges.iter().enumerate() {
            let mut left = 0;
            for (at, piece_len) in pieces(offset, len, piece_bytes) {
                batch
                    .pieces
                    .push((index, (at - offset) as usize, piece_len));
                positions.push((HEADER_LEN + at, piece_len));
                left += 1;
            }
            let bytes = Vec::new();
            batch.ranges.push(Gather { left, bytes });
        }
        (batch, positions)
    }

    /// Takes one completed piece of a `read_many` batch: its range, once
    /// all of the range's pieces are in.
    fn read_many_item(
        &self,
        item: std::io::Result<(usize, ReadBuf<F>)>,
        batch: &mut Batch,
        ranges: &[(u64, usize)],
    ) -> Result<Option<(usize, BlobBuf<ReadBuf<F>>)>> {
        let (k, bytes) = item.map_err(|e| self.io_error("read_many", e))?;
        let (index, at, len) = batch.pieces[k];
        let (offset, range_len) = ranges[index];
        if bytes.len() != len {
            return Err(self.short_read(offset + at as u64, len, bytes.len()));
        }
        let gather = &mut batch.ranges[index];
        assert!(gather.left > 0, "piece {k} of range {index} came twice");
        gather.left -= 1;
        if len == range_len {
            return Ok(Some((index, BlobBuf::Io(bytes))));
        }
        if gather.bytes.is_empty() {
            gather.bytes = vec![0; range_len];
        }
        gather.bytes[at..at + len].copy_from_slice(&bytes);
        match gather.left {
            0 => Ok(Some((
                index,
                BlobBuf::Owned(std::mem::take(&mut gather.bytes)),
            ))),
            _ => Ok(None),
        }
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
