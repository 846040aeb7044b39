//! The write path: user bytes at any offset become whole-block DMA writes.
//!
//! A write covers blocks `first..=last`. Blocks it fills completely need no
//! old content; an edge block it covers only partly is merged with the old
//! bytes, taken from the in-memory tail block, known to be zeros (past the
//! end), or read from the device (the only case that costs a read). Writes
//! larger than the scheduler's piece (`piece_bytes`, at most
//! `IO_BYTES_MAX`) go out as several sequential device writes, each
//! scheduled on its own; a SYNC write returns `Ok` only when every piece
//! was written durably.
//!
//! Each chunk is prepared in the caller's future (edge blocks loaded, the
//! DMA buffer filled: dropping it there has no effect), then committed
//! (reservation, device write, `len` and tail block update) as one
//! [`Committed`] unit holding the write's locks. A one-chunk write that
//! extends the blob first takes the small writes waiting for its lock that
//! continue its bytes into its buffer, and its commit answers them
//! (blob/group.rs). A write dropped between
//! chunks has written a prefix of whole chunks, as a crash may leave it.
//!
//! A write whose later chunk fails gives back the length its earlier chunks
//! added (shards/src/api.rs: a failed write adds no length): `len` returns
//! to its value before the write, `stale_end` covers the bytes written past
//! it (so a resize up or a write that extends the blob cuts them off
//! first) and the cached tail block goes (the next load reads the device,
//! clamped to `len`). Only a write holding the RMW lock moves `len`, so
//! nothing else moved it meanwhile; and while such a write has pieces to go, a write
//! without the RMW lock counts only on the length before it
//! (`growing_from`), so no completed write's bytes end up past `len`.

use std::rc::Rc;

use async_lock::{RwLockReadGuardArc, SemaphoreGuardArc};

use crate::fs::{written_whole, File, FileSystem, WriteBuf, BLOCK_SIZE};
use crate::header::HEADER_LEN;
use crate::sched::IoClass;
use crate::Result;

use super::commit::Committed;
use super::group::{Run, JOIN_BYTES_MAX};
use super::{BlobState, Failed, TailBlock, WRITE_OP};

const BLOCK: usize = BLOCK_SIZE as usize;
/// The largest step of zeros written ahead of the appends (capped by the
/// store's `preallocate_bytes`): 1 MiB, one growth of the file per 256
/// appends of 4 KiB. A run of zeros reaches at most 1.5 steps past the
/// append that starts it.
pub const ZERO_AHEAD_BYTES: u64 = 1 << 20;
/// The least: the zeros ahead of a blob grow with it, from this step up to
/// [`ZERO_AHEAD_BYTES`], so a small blob that syncs (a put) writes at most
/// this much for nothing before its close cuts it.
pub const ZERO_AHEAD_MIN_BYTES: u64 = 64 << 10;
/// How far past an append the zeros start when the file holds none ahead
/// of it (the first append after a sync, a cut, a resize): the next appends
/// up to there write blocks the file does not hold yet (they allocate them,
/// as on a growing file) while the first zeros land.
pub const ZERO_LEAD_BYTES: u64 = 16 << 10;

/// The write buffer of a blob's file.
pub(super) type FileBuf<F> = <<F as FileSystem>::File as File>::WriteBuf;

/// The locks one write holds until its last chunk is committed, and the
/// mark of a write of several pieces that may give back length. The commit
/// of a one-chunk write owns them; each commit of a larger write holds a
/// share. Either way a dropped write keeps them until it lands.
pub(super) struct WriteGuards<F: FileSystem> {
    _growing: Option<Growing<F>>,
    _shared: RwLockReadGuardArc<()>,
    _rmw: Option<SemaphoreGuardArc>,
}

/// Marks a write of several pieces that holds the RMW lock (an overwrite
/// inside the blob too: it takes the lock only for its edges, but may grow
/// nothing), while its commits may still give back length: sets
/// `growing_from` to `len` before it, and clears it when the last holder
/// of the write's guards lets go (its last commit has landed, or the write
/// stopped between pieces).
struct Growing<F: FileSystem>(Rc<BlobState<F>>);

impl<F: FileSystem> Growing<F> {
    fn new(state: &Rc<BlobState<F>>, len_before: u64) -> Growing<F> {
        let before = state.growing_from.replace(Some(len_before));
        assert!(before.is_none(), "two writes hold the RMW lock");
        Growing(state.clone())
    }
}

impl<F: FileSystem> Drop for Growing<F> {
    fn drop(&mut self) {
        self.0.growing_from.set(None);
    }
}

/// The user's range of one write, and what undoing its length needs.
#[derive(Clone, Copy)]
pub(super) struct WriteRange {
    offset: u64,
    end: u64,
    /// `len` before the write's first chunk, if the write holds the RMW
    /// lock (every write that may move `len` does).
    len_before: Option<u64>,
    durable: bool,
}

/// How a write that needs the RMW lock goes on.
enum Turn {
    /// It holds the lock.
    Locked(SemaphoreGuardArc),
    /// It joined another write's device write (blob/group.rs), which ended
    /// with this outcome.
    Joined(std::result::Result<(), Failed>),
}

/// One chunk ready for the device: data blocks `start..end` (bytes).
pub(super) struct Chunk<B> {
    pub(super) buf: B,
    pub(super) start: u64,
    pub(super) end: u64,
    /// End of the user's bytes in this chunk.
    pub(super) data_end: u64,
    /// The new tail block, if this chunk holds the logical end afterwards.
    pub(super) tail: Option<Box<[u8]>>,
    /// `buf` is the caller's (a zero-copy write, blob/write_buf.rs): the
    /// device gives it back. Other chunks' buffers are handed over for
    /// good (no reference count on the write path).
    pub(super) caller_buf: bool,
}

impl<F: FileSystem> BlobState<F> {
    /// Writes the concatenation of `bufs` at `offset`.
    pub(crate) async fn write(
        self: &Rc<Self>,
        offset: u64,
        bufs: &[&[u8]],
        durable: bool,
    ) -> Result<()> {
        let total = bufs.iter().map(|b| b.len() as u64).sum::<u64>();
        let end = self.end_of(offset, total)?;
        self.check_poison()?;
        if total == 0 {
            return Ok(());
        }
        let first = offset / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        let blocks_per_io = (self.file.piece_bytes() / BLOCK) as u64;
        let several = last - first >= blocks_per_io;
        let Some((write, guards)) = self
            .lock_for_write(offset, end, bufs, durable, several)
            .await?
        else {
            return Ok(());
        };
        let mut input = Input::new(bufs);
        let chunk = |chunk_first: u64| (chunk_first, last.min(chunk_first + blocks_per_io - 1));
        if !several {
            // One chunk (the common case): its commit takes the locks, and
            // the appends waiting for them may join it, in its piece.
            let joins = self.joins_up_to(&write);
            self.write_chunk(chunk(first), write, &mut input, guards, joins)
                .await?;
        } else {
            let guards = Rc::new(guards);
            let mut chunk_first = first;
            while chunk_first <= last {
                let chunk = chunk(chunk_first);
                let guards = guards.clone();
                self.write_chunk(chunk, write, &mut input, guards, None)
                    .await?;
                chunk_first = chunk.1 + 1;
            }
        }
        debug_assert!(input.is_empty(), "every input byte written");
        debug_assert!(self.len.get() >= end, "a written write covers its bytes");
        Ok(())
    }

    /// Takes the locks of a write of `offset..end` (`bufs`, its bytes;
    /// `several`: whether it takes several pieces). `None` when a small
    /// append joined the device write of the one holding the RMW lock
    /// instead (blob/group.rs) and it landed: nothing is left to do.
    pub(super) async fn lock_for_write(
        self: &Rc<Self>,
        offset: u64,
        end: u64,
        bufs: &[&[u8]],
        durable: bool,
        several: bool,
    ) -> Result<Option<(WriteRange, WriteGuards<F>)>> {
        let shared = self.meta.read_arc().await;
        // Only a write at or past the end can be taken (it continues one).
        let joinable = !several && end - offset <= JOIN_BYTES_MAX && offset >= self.len.get();
        let rmw = match self.needs_rmw(offset, end) {
            true => match self.lock_or_join(offset, bufs, durable, joinable).await {
                Turn::Locked(guard) => Some(guard),
                Turn::Joined(done) => {
                    return done
                        .map(|()| None)
                        .map_err(|failed| self.write_failed(failed, durable))
                }
            },
            false => None,
        };
        // Without the RMW lock the write ends inside the blob: it never
        // moves `len`, and others may.
        let write = WriteRange {
            offset,
            end,
            len_before: rmw.is_some().then(|| self.len.get()),
            durable,
        };
        let growing = write.len_before.filter(|_| several);
        let guards = WriteGuards {
            _growing: growing.map(|len_before| Growing::new(self, len_before)),
            _shared: shared,
            _rmw: rmw,
        };
        Ok(Some((write, guards)))
    }

    /// For a one-chunk `write` that holds the RMW lock, where the queued
    /// appends that join it must end: within its first block's piece.
    pub(super) fn joins_up_to(&self, write: &WriteRange) -> Option<u64> {
        let blocks_per_io = (self.file.piece_bytes() / BLOCK) as u64;
        let first = write.offset / BLOCK_SIZE;
        write
            .len_before
            .map(|_| (first + blocks_per_io) * BLOCK_SIZE)
    }

    /// Whether a write of `offset..end` takes the RMW lock: unless it is
    /// aligned and ends inside the length no write in flight can give back.
    /// An aligned write that ends inside the blob never covers the tail
    /// block: that block holds the unaligned end, past any aligned end at or
    /// below it.
    fn needs_rmw(&self, offset: u64, end: u64) -> bool {
        let len_settled = self.growing_from.get().unwrap_or(self.len.get());
        !offset.is_multiple_of(BLOCK_SIZE) || !end.is_multiple_of(BLOCK_SIZE) || end > len_settled
    }

    /// The RMW lock for a write; or, for a small one (`joinable`) that
    /// finds it taken, the outcome of the device write it joined instead
    /// (blob/group.rs).
    async fn lock_or_join(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        durable: bool,
        joinable: bool,
    ) -> Turn {
        if let Some(guard) = self.rmw.try_acquire_arc() {
            return Turn::Locked(guard);
        }
        let queued = joinable.then(|| self.group.queue(offset, bufs, durable));
        let Some(queued) = queued.flatten() else {
            return Turn::Locked(self.rmw.acquire_arc().await);
        };
        let lock = async { Some(self.rmw.acquire_arc().await) };
        let taken = async {
            queued.taken().await;
            None
        };
        if let Some(guard) = futures_lite::future::or(lock, taken).await {
            if queued.leave() {
                return Turn::Locked(guard);
            }
            // Taken as the lock came: it goes back before the wait.
        }
        Turn::Joined(queued.done().await)
    }

    /// Prepares and commits blocks `chunk.0..=chunk.1` of `write`; the
    /// commit holds `guards` until it lands. With `joins`, the queued
    /// writes that continue this one past the end, up to that limit, join
    /// its device write.
    async fn write_chunk<G: 'static>(
        self: &Rc<Self>,
        (chunk_first, chunk_last): (u64, u64),
        write: WriteRange,
        input: &mut Input<'_>,
        guards: G,
        joins: Option<u64>,
    ) -> Result<()> {
        // A dropped write still in flight lands before this one reads or
        // writes anything.
        self.orphans.settled().await;
        let prepared = self
            .prepare_chunk(chunk_first, chunk_last, write.offset, write.end, input)
            .await;
        let chunk = match prepared {
            Ok(chunk) => chunk,
            Err(e) => {
                self.take_back_length(write.len_before);
                self.account_reserved();
                return Err(self.write_failed((WRITE_OP, e), write.durable));
            }
        };
        self.commit_prepared(chunk, write, guards, joins)
            .await
            .map(drop)
    }

    /// Commits a prepared `chunk` of `write` (after the writes that join
    /// it, with `joins`): runs to its end once started, and gives back the
    /// chunk's buffer when the device let go of it.
    pub(super) async fn commit_prepared<G: 'static>(
        self: &Rc<Self>,
        chunk: Chunk<FileBuf<F>>,
        write: WriteRange,
        guards: G,
        joins: Option<u64>,
    ) -> Result<Option<FileBuf<F>>> {
        // A blob poisoned since the write began (by a failed flush, perhaps
        // of the cut this write would have to redo) refuses it too.
        if let Err(poisoned) = self.check_poison() {
            self.take_back_length(write.len_before);
            self.account_reserved();
            return Err(poisoned);
        }
        // No await from here to the commit, which runs to its end: the
        // writes taken are always answered.
        let joined = match joins {
            Some(end_max) if write.end >= self.len.get() => {
                self.group.take_run(write.end, write.durable, end_max)
            }
            _ => Run::default(),
        };
        let (chunk, own) = self.joined_chunk(chunk, &joined);
        let commit = self.clone().commit_chunk(chunk, guards, write, joined);
        let back = Committed::new(&self.orphans, commit).await?;
        Ok(own.or(back))
    }

    /// `chunk` grown by the writes that `joined` it: they continue its
    /// bytes, one after another, past the end, where the file holds zeros.
    /// The chunk's own buffer comes back if the grown chunk is a new one.
    fn joined_chunk(
        &self,
        chunk: Chunk<FileBuf<F>>,
        joined: &Run,
    ) -> (Chunk<FileBuf<F>>, Option<FileBuf<F>>) {
        let joined = joined.joiners();
        let Some(last) = joined.last() else {
            return (chunk, None);
        };
        self.stats.writes_joined(joined.len() as u64);
        let Chunk {
            buf: own,
            start,
            data_end: own_end,
            tail,
            ..
        } = chunk;
        let data_end = last.end();
        let end = data_end.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        let mut buf = self.file.alloc((end - start) as usize);
        let bytes = buf.bytes_mut();
        let own_bytes = own.bytes();
        debug_assert!(own_bytes[(own_end - start) as usize..]
            .iter()
            .all(|&b| b == 0));
        bytes[..own_bytes.len()].copy_from_slice(own_bytes);
        bytes[own_bytes.len()..].fill(0);
        for joiner in joined {
            let at = (joiner.offset - start) as usize;
            bytes[at..at + joiner.bytes.len()].copy_from_slice(&joiner.bytes);
        }
        let new_len = self.len.get().max(data_end);
        let tail = tail_block(bytes, start / BLOCK_SIZE, new_len, || tail);
        let chunk = Chunk {
            buf,
            start,
            end,
            data_end,
            tail,
            caller_buf: false,
        };
        (chunk, Some(own))
    }

    /// A failed write adds no length: gives back what its earlier chunks
    /// added (module docs). `len_before`: the length before the write, if
    /// it holds the RMW lock (else it never moved `len`).
    fn take_back_length(&self, len_before: Option<u64>) {
        let Some(len_before) = len_before else {
            return;
        };
        let grown = self.len.get();
        assert!(
            grown >= len_before,
            "len {grown} shrank under a write from {len_before}"
        );
        if grown == len_before {
            return;
        }
        self.len.set(len_before);
        // Earlier chunks wrote up to `grown` (their blocks, counted in
        // `file_len`): past `len_before` the file may hold their bytes.
        self.stale_end.set(self.stale_end.get().max(grown));
        self.tail.borrow_mut().take();
        self.debug_check_ends();
    }

    /// The error of a failed write (`op`: the step that failed, the device
    /// write or the cut before it); a failed SYNC write poisons the blob,
    /// and so does a failed flush of the cut (`cut_to_len`) of any write.
    fn write_failed(&self, (op, e): Failed, durable: bool) -> crate::Error {
        match (durable, op) {
            (true, WRITE_OP) => self.poison_with("synced write", e),
            (true, _) => self.poison_with(op, e),
            (false, _) => self.io_error(op, e),
        }
    }

    /// Fills the buffer of blocks `chunk_first..=chunk_last` of a write of
    /// `offset..end`: edge blocks' old bytes, then the user's.
    async fn prepare_chunk(
        &self,
        chunk_first: u64,
        chunk_last: u64,
        offset: u64,
        end: u64,
        input: &mut Input<'_>,
    ) -> std::io::Result<Chunk<FileBuf<F>>> {
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
        // The old tail block's buffer is reused: the commit replaces it, or
        // it stays forgotten if the write is dropped before its commit or
        // fails (the next load reads the block from the device). This writer
        // holds the RMW lock, as every write that reaches the tail block
        // does.
        let old_tail = || self.tail.borrow_mut().take().map(|old| old.bytes);
        let tail = tail_block(bytes, chunk_first, new_len, old_tail);
        Ok(Chunk {
            buf,
            start: chunk_start,
            end: chunk_end,
            data_end,
            tail,
            caller_buf: false,
        })
    }

    /// Reserves, writes and accounts one prepared chunk of `write`: runs to
    /// the end once started (module docs), failed or not, and answers the
    /// writes that `joined` it with its outcome.
    async fn commit_chunk<G: 'static>(
        self: Rc<Self>,
        chunk: Chunk<FileBuf<F>>,
        _guards: G,
        write: WriteRange,
        joined: Run,
    ) -> Result<Option<FileBuf<F>>> {
        let (committed, buf) = self.commit_chunk_blocks(chunk, write).await;
        if committed.is_err() {
            self.take_back_length(write.len_before);
        }
        self.account_reserved();
        joined.answer(committed.as_ref().err());
        committed
            .map(|()| buf)
            .map_err(|failed| self.write_failed(failed, write.durable))
    }

    /// The device calls and state update of [`BlobState::commit_chunk`],
    /// and the chunk's buffer if the device gave it back.
    async fn commit_chunk_blocks(
        self: &Rc<Self>,
        chunk: Chunk<FileBuf<F>>,
        write: WriteRange,
    ) -> (std::result::Result<(), Failed>, Option<FileBuf<F>>) {
        let Chunk {
            buf,
            start,
            end,
            data_end,
            tail,
            caller_buf,
        } = chunk;
        let locked = write.len_before.is_some();
        if let Err(failed) = self.clear_the_way(end, data_end, locked).await {
            return (Err(failed), Some(buf));
        }
        self.reserve(start, end).await;
        // A write past the file's end leaves a hole, which stays one.
        let gap = start > self.file_len.get().div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        // Count the blocks as file bytes before the write: a failed (short)
        // write may still have grown the file with bytes past the end.
        self.file_len.set(self.file_len.get().max(end));
        debug_assert!(end - start <= self.file.piece_bytes() as u64, "one piece");
        let pos = HEADER_LEN + start;
        let data = async {
            match caller_buf {
                true => self.file.write_returning(buf, pos, write.durable).await,
                false => (self.file.write_at(buf, pos, write.durable).await, None),
            }
        };
        // The new length goes to its slot before it is published (durably
        // for a SYNC write whose bytes the durable length does not reach),
        // in flight with the data: nobody sees a length a failure takes
        // back, and the two writes cost one device latency (blob/length.rs).
        let record = self.record_length(data_end, write.durable);
        let ((written, buf), recorded) = futures_lite::future::zip(data, record).await;
        let result = written.and_then(|written| written_whole(written, end - start));
        let result = result.and(recorded);
        self.recording.set(None);
        if let Err(e) = result {
            // The device may hold part of the write: forget the cached
            // tail block rather than trust it, and remember that the bytes
            // past the end may not be zeros any more.
            self.tail.borrow_mut().take();
            self.stale_end.set(self.stale_end.get().max(end));
            return (Err((WRITE_OP, e)), buf);
        }
        let new_len = self.len.get().max(data_end);
        assert!(locked || new_len == self.len.get(), "moved len unlocked");
        self.len.set(new_len);
        // After the write's last chunk (or past it: the writes it took
        // in), so its next chunks never wait for zeros over their blocks.
        if locked && !gap && data_end >= write.end {
            self.zero_ahead(end, write.durable);
        }
        if let Some(bytes) = tail {
            debug_assert!((start..end).contains(&(new_len / BLOCK_SIZE * BLOCK_SIZE)));
            *self.tail.borrow_mut() = Some(TailBlock {
                index: new_len / BLOCK_SIZE,
                bytes,
            });
        } else if new_len.is_multiple_of(BLOCK_SIZE) {
            self.tail.borrow_mut().take();
        }
        self.debug_check_ends();
        (Ok(()), buf)
    }

    /// Before a chunk's device write of blocks ending at `end`: waits for
    /// the zeros in flight it must not race, and if it extends the blob (to
    /// `data_end`), cuts a failed write's bytes past the end first.
    async fn clear_the_way(
        &self,
        end: u64,
        data_end: u64,
        locked: bool,
    ) -> std::result::Result<(), Failed> {
        // First: the cut below and the reservation must not race them.
        self.wait_for_zeros(end, data_end > self.len.get()).await;
        if data_end > self.len.get() {
            // The write extends the blob over what lies past `len`, which
            // must not be a failed write's bytes: a gap's whole blocks are
            // never written, and an edge block rewritten with zeros past
            // `len` may not survive a crash that keeps the new length in its
            // slot, while a sync may have made those bytes durable
            // (concurrency_sim 620350668355). So they go first, durably. This
            // write holds the RMW lock: no other write moves the end
            // meanwhile.
            assert!(locked, "a write past the end without the RMW lock");
            self.trim_stale().await?;
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

    /// Preallocates ahead when a write near the end reaches past the
    /// reserved blocks; a write that starts past them reserves nothing,
    /// and so does every write of a store with `preallocate_bytes` 0.
    ///
    /// Advisory: when it fails (a full filesystem, one without fallocate)
    /// the write goes ahead and reports its own error if it has one, so a
    /// write that fits the space left still succeeds.
    async fn reserve(&self, start: u64, end: u64) {
        let step = self.preallocate_bytes;
        let reserved = self.reserved_len.get();
        if step == 0 || end <= reserved {
            return;
        }
        if start > reserved {
            // A gap: its blocks stay a hole. Appends from here reserve ahead.
            self.reserved_len.set(end);
            self.reserved_from.set(end);
            return;
        }
        let target = end.div_ceil(step) * step;
        let reserving = self
            .file
            .preallocate(HEADER_LEN + reserved, target - reserved);
        let reserved_ok = reserving.await.is_ok();
        // Also after a failure: the next try comes at the next step, not at
        // every write to a full disk.
        self.reserved_len.set(target);
        if !reserved_ok {
            // Nothing stays reserved past the end (below): none counted.
            self.reserved_from.set(target);
            // A failed fallocate may keep the blocks it got past the end:
            // give them back. Truncating to the file's current size frees
            // the blocks past the end (ext4) and cuts nothing, whatever is
            // in flight (no zeros are: this write ends past them all, so it
            // waited for them). (Not to `file_len`: it already counts this write,
            // so that would grow the file and free nothing.)
            let _ = self.file.release_past_end_now(0);
        }
    }
}

impl<F: FileSystem> BlobState<F> {
    /// Keeps the file of a blob that syncs grown ahead of its appends with
    /// zero-written blocks, so the next appends overwrite blocks the file
    /// holds: their flush changes no size (blob/length.rs). Called by a
    /// write that holds the RMW lock (it may have extended the blob) once
    /// its blocks ending at `end` have landed, unless they left a hole
    /// before them (a gap stays a hole). A blob syncs once a sync
    /// started in this open, or a SYNC write before this one ran; the
    /// others gain nothing from zeros (a blob written once with SYNC, a
    /// put, writes none). The step is the zeroed size, at least
    /// `ZERO_AHEAD_MIN_BYTES`, at most [`ZERO_AHEAD_BYTES`] and the store's
    /// `preallocate_bytes`. When a write comes within half a step of the
    /// zeroed end, zeros up to the next step past that (at most the space
    /// really reserved) are written on tasks of their own: no write waits
    /// for them, unless its blocks reach into them (inside the commit of
    /// the append that grew the file they put one 4 KiB append + sync in
    /// 256 at about 1.5 ms, against 0.25 ms for the rest; bench/RESULTS.md).
    /// No zeros go past a failed reservation (the disk is nearly full).
    /// Advisory, as [`BlobState::reserve`]: a failed piece leaves a hole
    /// (the appends that reach it allocate its blocks themselves, as on a
    /// growing file), and the writes go on.
    fn zero_ahead(self: &Rc<Self>, end: u64, durable: bool) {
        let syncs = self.synced.replace(self.synced.get() || durable);
        if let Some((from, target)) = self.zeros_due(end).filter(|_| syncs) {
            self.start_zeros(from, target);
        }
    }

    /// Waits for the zeros in flight if the write of blocks ending at `end`
    /// reaches into them (they must not land over its bytes), or may cut
    /// the file (it `extends` the blob while a failed write's bytes lie
    /// past `len`: the zeros must not land past the cut).
    async fn wait_for_zeros(&self, end: u64, extends: bool) {
        let may_cut = extends && self.stale_end.get() > self.len.get();
        if self.zeroing.in_flight() && (end > self.zeroing_from.get() || may_cut) {
            self.zeroing.settled().await;
        }
    }

    /// The zeros a write of blocks ending at `end` starts ahead, if any.
    fn zeros_due(&self, end: u64) -> Option<(u64, u64)> {
        let file_end = self.file_len.get().div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        let step = file_end.clamp(ZERO_AHEAD_MIN_BYTES, ZERO_AHEAD_BYTES);
        let step = step.min(self.preallocate_bytes).div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        let reserved = self.reserved_len.get();
        let really_reserved = self.reserved_from.get() < reserved;
        let near = end + step / 2 > file_end;
        if step == 0 || !really_reserved || !near || self.zeroing.in_flight() {
            return None;
        }
        let target = (end + step / 2).div_ceil(step) * step;
        let target = target.min(reserved / BLOCK_SIZE * BLOCK_SIZE);
        // The file holds this write's blocks (file_end >= end): past them.
        // With none ahead yet, a few blocks further, and a short first run:
        // the next appends grow the file themselves meanwhile, rather than
        // wait for zeros written over their own blocks.
        let (from, target) = match file_end > end {
            true => (file_end, target),
            false => {
                let from = end + ZERO_LEAD_BYTES;
                (from, target.min(from + ZERO_AHEAD_MIN_BYTES))
            }
        };
        (from < target).then_some((from, target))
    }

    /// Writes zeros to data bytes `from..target` on tasks of their own, one
    /// per piece, in the throughput class (bulk work no one waits for).
    /// Each holds `meta` shared, as a write does, so a resize waits for it,
    /// and the state, so the close (which cuts the file) comes after it.
    fn start_zeros(self: &Rc<Self>, from: u64, target: u64) {
        debug_assert!(from.is_multiple_of(BLOCK_SIZE) && target.is_multiple_of(BLOCK_SIZE));
        // One run at a time: a write waits for the run in flight by where
        // it starts (`wait_for_zeros`), and past the blob's end.
        debug_assert!(!self.zeroing.in_flight(), "a second run of zeros");
        debug_assert!(from >= self.len.get(), "zeros over the blob's bytes");
        self.zeroing_from.set(from);
        let piece_bytes = self.file.piece_bytes() as u64;
        let mut at = from;
        // Bounded: at most 1.5 * ZERO_AHEAD_BYTES / piece_bytes + 1 pieces,
        // each on its own task, so they land together (one after another,
        // they kept the device busy for more appends: p99 1.7x;
        // bench/RESULTS.md).
        while at < target {
            // A resize waits for `meta`: no zeros, it may cut the file.
            let Some(shared) = self.meta.try_read_arc() else {
                return;
            };
            let len = piece_bytes.min(target - at);
            // Counted before they land: the file may hold them from now on.
            self.file_len.set(self.file_len.get().max(at + len));
            let state = self.clone();
            let zeros = async move {
                let _shared = shared;
                let mut zeros = state.file.alloc(len as usize);
                zeros.bytes_mut().fill(0);
                let _ = state.file.write_at(zeros, HEADER_LEN + at, false).await;
            };
            let zeros = IoClass::Throughput.scope(zeros);
            self.zeroing.adopt(Box::pin(zeros));
            at += len;
        }
    }
}

/// The copy of the block holding the end `new_len` from `bytes` (the
/// blocks from `chunk_first` on), zeros past the end, in the buffer `reuse`
/// gives if any; `None` if the end is aligned or outside these blocks.
fn tail_block(
    bytes: &[u8],
    chunk_first: u64,
    new_len: u64,
    reuse: impl FnOnce() -> Option<Box<[u8]>>,
) -> Option<Box<[u8]>> {
    let index = new_len / BLOCK_SIZE;
    let blocks = (bytes.len() / BLOCK) as u64;
    let holds =
        !new_len.is_multiple_of(BLOCK_SIZE) && (chunk_first..chunk_first + blocks).contains(&index);
    if !holds {
        return None;
    }
    let at = ((index - chunk_first) * BLOCK_SIZE) as usize;
    let mut block = reuse().unwrap_or_else(|| vec![0; BLOCK].into_boxed_slice());
    block.copy_from_slice(&bytes[at..at + BLOCK]);
    block[(new_len % BLOCK_SIZE) as usize..].fill(0);
    Some(block)
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
