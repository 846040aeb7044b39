//! The write path: user bytes at any offset become whole-block DMA writes.
//!
//! A write covers blocks `first..=last`. Blocks it fills completely need no
//! old content; an edge block it covers only partly is merged with the old
//! bytes, taken from the in-memory tail block, known to be zeros (past the
//! end), or read from the device (the only case that costs a read). Writes
//! larger than `IO_BYTES_MAX` go out as several sequential device writes.

use crate::fs::{File, FileSystem, WriteBuf, BLOCK_SIZE};
use crate::header::HEADER_LEN;
use crate::{Error, Result};

use super::{BlobState, TailBlock, IO_BYTES_MAX, PREALLOCATE_BYTES};

const BLOCK: usize = BLOCK_SIZE as usize;
const BLOCKS_PER_IO: u64 = (IO_BYTES_MAX / BLOCK) as u64;

impl<F: FileSystem> BlobState<F> {
    /// Writes the concatenation of `bufs` at `offset`.
    pub(crate) async fn write(&self, offset: u64, bufs: &[&[u8]], durable: bool) -> Result<()> {
        let total = bufs.iter().map(|b| b.len() as u64).sum::<u64>();
        let end = self.end_of(offset, total)?;
        self.check_poison()?;
        if total == 0 {
            return Ok(());
        }
        let _shared = self.meta.read().await.map_err(|_| Error::Shutdown)?;
        let first = offset / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        let needs_rmw = !offset.is_multiple_of(BLOCK_SIZE)
            || end % BLOCK_SIZE != 0
            || end > self.len.get()
            || self.tail_in(first, last);
        let _rmw = if needs_rmw {
            Some(
                self.rmw
                    .acquire_permit(1)
                    .await
                    .map_err(|_| Error::Shutdown)?,
            )
        } else {
            None
        };
        let mut input = Input::new(bufs);
        let mut chunk_first = first;
        while chunk_first <= last {
            let chunk_last = last.min(chunk_first + BLOCKS_PER_IO - 1);
            let result = self
                .write_chunk(chunk_first, chunk_last, offset, end, &mut input, durable)
                .await;
            if let Err(e) = result {
                // The device may hold part of the write: forget the cached
                // tail block rather than trust it.
                self.tail.borrow_mut().take();
                return Err(if durable {
                    self.poison_with("synced write", e)
                } else {
                    self.io_error("write", e)
                });
            }
            chunk_first = chunk_last + 1;
        }
        debug_assert!(input.is_empty(), "every input byte written");
        Ok(())
    }

    /// Whether the cached tail block lies in `first..=last`.
    fn tail_in(&self, first: u64, last: u64) -> bool {
        let len = self.len.get();
        !len.is_multiple_of(BLOCK_SIZE) && (first..=last).contains(&(len / BLOCK_SIZE))
    }

    /// Writes blocks `chunk_first..=chunk_last` of a write of `offset..end`.
    async fn write_chunk(
        &self,
        chunk_first: u64,
        chunk_last: u64,
        offset: u64,
        end: u64,
        input: &mut Input<'_>,
        durable: bool,
    ) -> std::io::Result<()> {
        let chunk_start = chunk_first * BLOCK_SIZE;
        let chunk_end = (chunk_last + 1) * BLOCK_SIZE;
        let mut buf = self.file.alloc((chunk_end - chunk_start) as usize);
        let bytes = buf.bytes_mut();
        let data_start = offset.max(chunk_start);
        let data_end = end.min(chunk_end);
        if data_start > chunk_start {
            self.load_block(chunk_first, &mut bytes[..BLOCK]).await?;
        }
        if data_end < chunk_end && !(data_start > chunk_start && chunk_first == chunk_last) {
            let at = bytes.len() - BLOCK;
            self.load_block(chunk_last, &mut bytes[at..]).await?;
        }
        let from = (data_start - chunk_start) as usize;
        let to = (data_end - chunk_start) as usize;
        input.copy_to(&mut bytes[from..to]);

        let new_len = self.len.get().max(data_end);
        let tail = (!new_len.is_multiple_of(BLOCK_SIZE)
            && (chunk_first..=chunk_last).contains(&(new_len / BLOCK_SIZE)))
        .then(|| {
            let at = ((new_len / BLOCK_SIZE - chunk_first) * BLOCK_SIZE) as usize;
            // The old tail block's buffer is reused: it is replaced below, or
            // forgotten if the write fails (this writer holds the RMW lock,
            // as every write that reaches the tail block does).
            let mut block = match self.tail.borrow_mut().take() {
                Some(old) => old.bytes,
                None => vec![0; BLOCK].into_boxed_slice(),
            };
            block.copy_from_slice(&bytes[at..at + BLOCK]);
            block[(new_len % BLOCK_SIZE) as usize..].fill(0);
            block
        });

        self.reserve(chunk_end).await;
        // Count the blocks as file bytes before the write: a failed (short)
        // write may still have grown the file, and the next sync must trim
        // whatever it left past the logical end.
        self.file_len.set(self.file_len.get().max(chunk_end));
        let written = self
            .file
            .write_at(buf, HEADER_LEN + chunk_start, durable)
            .await?;
        if written as u64 != chunk_end - chunk_start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!(
                    "short write: {written} of {} bytes",
                    chunk_end - chunk_start
                ),
            ));
        }
        self.len.set(self.len.get().max(data_end));
        if let Some(bytes) = tail {
            *self.tail.borrow_mut() = Some(TailBlock {
                index: new_len / BLOCK_SIZE,
                bytes,
            });
        } else if self.len.get().is_multiple_of(BLOCK_SIZE) {
            self.tail.borrow_mut().take();
        }
        Ok(())
    }

    /// Fills `out` with the current content of data block `index`.
    async fn load_block(&self, index: u64, out: &mut [u8]) -> std::io::Result<()> {
        if let Some(tail) = &*self.tail.borrow() {
            if tail.index == index {
                out.copy_from_slice(&tail.bytes);
                return Ok(());
            }
        }
        let start = index * BLOCK_SIZE;
        let len = self.len.get();
        if start >= len {
            out.fill(0);
            return Ok(());
        }
        let read = self.file.read_at(HEADER_LEN + start, BLOCK).await?;
        // Bytes past the logical end are zero by invariant; past the end
        // of the file they do not exist: both read as zeros.
        let valid = read.len().min((len - start) as usize);
        out[..valid].copy_from_slice(&read[..valid]);
        out[valid..].fill(0);
        Ok(())
    }

    /// Preallocates ahead when a write reaches past the reserved blocks.
    ///
    /// Advisory: when it fails (a full filesystem, one without fallocate)
    /// the write goes ahead and reports its own error if it has one, so a
    /// write that fits the space left still succeeds.
    async fn reserve(&self, data_end: u64) {
        if data_end <= self.reserved_len.get() {
            return;
        }
        let target = data_end.div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
        if self.file.preallocate(HEADER_LEN + target).await.is_ok() {
            self.reserved_len.set(target);
        }
    }
}

/// The user's buffers, consumed in order.
struct Input<'a> {
    bufs: &'a [&'a [u8]],
    index: usize,
    used: usize,
}

impl<'a> Input<'a> {
    fn new(bufs: &'a [&'a [u8]]) -> Input<'a> {
        Input {
            bufs,
            index: 0,
            used: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.bufs[self.index..]
            .iter()
            .map(|b| b.len())
            .sum::<usize>()
            == self.used
    }

    /// Copies the next `out.len()` input bytes into `out`.
    fn copy_to(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            let current = &self.bufs[self.index][self.used..];
            let n = current.len().min(out.len());
            out[..n].copy_from_slice(&current[..n]);
            out = &mut out[n..];
            self.used += n;
            if self.used == self.bufs[self.index].len() {
                self.index += 1;
                self.used = 0;
            }
        }
    }
}
