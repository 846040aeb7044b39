//! Zero-copy writes: the caller fills a buffer of the blob's own I/O
//! memory, and an aligned write hands it to the device as it is.
//!
//! Why: every other write copies the caller's bytes into a fresh DMA
//! buffer (blob/write.rs). A caller that builds its data in place (a log's
//! page, a compaction's output block) can skip the copy and the allocation:
//! [`Blob::alloc_buf`](crate::Blob::alloc_buf) gives it a buffer from the
//! blob's file, and [`Blob::write_buf_at`](crate::Blob::write_buf_at) writes
//! it and gives it back for the next write. On this project's VM, 128 KiB
//! sequential writes with and without the copy were within the
//! benchmark's spread of each other (bench/RESULTS.md, "Zero-copy writes",
//! beside fio's figures from the same runs): the shard's time goes to the
//! device and the executor's loop. It matters where memory bandwidth does,
//! and a buffer reused costs no allocation either.
//!
//! No copy when the write is aligned (offset and length multiples of
//! 4096) and fits one device write (the scheduler's `piece_bytes`): the
//! buffer becomes the write's one chunk (blob/write.rs), under the same
//! locks as a copying write (the RMW lock where it may move the end, or
//! ends past what a write of several pieces in flight may give back).
//! Such a write covers whole blocks only, so it needs no old bytes, and it
//! leaves no tail block: where it extends the blob its end is aligned, and
//! inside the blob it never reaches the block holding an unaligned end.
//! A small one that finds the RMW lock taken joins the holder's device
//! write as any append does (blob/group.rs), with a copy; one that holds
//! the lock takes the waiting appends into a copy of its buffer and gives
//! its own back at once. Any other write goes through the copying path
//! with the buffer's bytes.
//!
//! Cancellation: a dropped write is a dropped write of blob/write.rs; the
//! buffer goes with its commit and is not given back. A device that keeps
//! a buffer past the write (a file implementation may) is answered with a
//! new zeroed one.

use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use crate::fs::{File, FileSystem, WriteBuf, BLOCK_SIZE};
use crate::{Error, Result};

use super::write::{Chunk, FileBuf};
use super::{BlobState, IO_BYTES_MAX};

/// Largest buffer [`Blob::alloc_buf`](crate::Blob::alloc_buf) gives, on
/// every path: one device write of the largest piece. A write of it is
/// zero-copy only up to the scheduler's `piece_bytes`.
pub const WRITE_BUF_BYTES_MAX: usize = IO_BYTES_MAX;

/// A buffer of a blob's I/O memory for a zero-copy write
/// ([`Blob::write_buf_at`](crate::Blob::write_buf_at)). Its bytes are the
/// caller's to fill; it holds no other blob's data (it starts zeroed).
pub struct WriteBuffer<B> {
    buf: B,
}

impl<B: WriteBuf> Deref for WriteBuffer<B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.bytes()
    }
}

impl<B: WriteBuf> DerefMut for WriteBuffer<B> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.bytes_mut()
    }
}

impl<B: WriteBuf> std::fmt::Debug for WriteBuffer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteBuffer({} bytes)", self.buf.bytes().len())
    }
}

/// Refuses a write buffer of `len` bytes for blob `name` of `partition`
/// if it is over [`WRITE_BUF_BYTES_MAX`] (every path's `alloc_buf`).
pub fn check_write_buf_len(partition: &str, name: &[u8], len: usize) -> Result<()> {
    match len <= WRITE_BUF_BYTES_MAX {
        true => Ok(()),
        false => Err(Error::InvalidArgument {
            partition: partition.to_string(),
            name: name.to_vec(),
            reason: format!("write buffer of {len} bytes: at most {WRITE_BUF_BYTES_MAX} bytes"),
        }),
    }
}

impl<F: FileSystem> BlobState<F> {
    /// A zeroed buffer of `len` bytes from the file's I/O memory, at most
    /// [`WRITE_BUF_BYTES_MAX`].
    pub(crate) fn alloc_buf(&self, len: usize) -> Result<WriteBuffer<FileBuf<F>>> {
        check_write_buf_len(&self.key.partition, &self.key.name, len)?;
        let blocks_len = len.div_ceil(BLOCK_SIZE as usize).max(1) * BLOCK_SIZE as usize;
        let mut buf = self.file.alloc(blocks_len);
        buf.bytes_mut().fill(0);
        buf.truncate(len);
        debug_assert_eq!(buf.bytes().len(), len);
        Ok(WriteBuffer { buf })
    }

    /// Writes `buf` at `offset`, without a copy where it is aligned and
    /// fits one piece (module docs); gives back a buffer of the same
    /// length: `buf`, or, if the device kept it, a new zeroed one.
    pub(crate) async fn write_buf(
        self: &Rc<Self>,
        offset: u64,
        buf: WriteBuffer<FileBuf<F>>,
        durable: bool,
    ) -> Result<WriteBuffer<FileBuf<F>>> {
        let len = buf.len();
        let aligned = offset.is_multiple_of(BLOCK_SIZE)
            && (len as u64).is_multiple_of(BLOCK_SIZE)
            && len > 0
            && len <= self.file.piece_bytes();
        if !aligned {
            self.write(offset, &[&buf], durable).await?;
            return Ok(buf);
        }
        let end = self.end_of(offset, len as u64)?;
        self.check_poison()?;
        let bytes: &[&[u8]] = &[&buf];
        let Some((write, guards)) = self
            .lock_for_write(offset, end, bytes, durable, false)
            .await?
        else {
            // It joined another write's device write with a copy.
            return Ok(buf);
        };
        // A dropped write still in flight lands before this one.
        self.orphans.settled().await;
        let chunk = Chunk {
            buf: buf.buf,
            start: offset,
            end,
            data_end: end,
            tail: None,
            caller_buf: true,
        };
        let joins = self.joins_up_to(&write);
        let back = self.commit_prepared(chunk, write, guards, joins).await?;
        debug_assert!(self.len.get() >= end, "a written write covers its bytes");
        match back {
            Some(buf) => Ok(WriteBuffer { buf }),
            None => self.alloc_buf(len),
        }
    }
}
