//! [`ShardBlob`]: one open blob on this shard.
//!
//! A blob is one file: a header page, then the data. The file is written
//! with direct I/O, so every write covers whole 4 KiB blocks. Two lengths
//! are tracked: `len`, the logical length users see, kept in the header's
//! length slots (blob/length.rs), and `file_len`, the data bytes the file
//! may hold, which runs ahead of `len` by the zero padding of a partially
//! written last block and the zeros written ahead of appends. Nothing past
//! `len` ever shows as length: a reopen, after a crash too, takes the length
//! from a slot (one a sync, a SYNC write, or a change since wrote), and
//! the close (dropping the last handle, once the work the blob started has
//! landed) cuts the file back to `len`.
//!
//! The block that holds the logical end (the *tail block*) is kept in
//! memory: a small append merges into it without reading the device.
//!
//! A gap reads as zeros. Past `len` the file holds zero padding, or the
//! bytes of a failed write (one that grew the file, or wrote part of the
//! tail block, before it failed); `stale_end` says where the latter may be.
//! Nothing shows them: reads stop at `len`, a block load clamps to `len`,
//! and a resize up or a write that extends the blob (past a gap: whole
//! blocks it never writes; or over the tail block, whose rewrite a crash
//! may lose while keeping the new length) first cuts the file to `len`,
//! durably, inside its commit and under the locks that keep the end still,
//! whenever `stale_end` is past `len`. Padding alone needs no cut: it is
//! zeros.
//!
//! Cancellation: every operation that changes the file runs its device calls
//! and the state update that goes with them as one [`commit::Committed`]
//! unit, which finishes even if the caller drops its future (see that
//! module). So `len`, `file_len`, the tail block and the locks always match
//! the device, and a dropped write never lands after a later one.
//!
//! Concurrency, all on one thread:
//! - `meta` (writer-preferring read-write lock): reads and writes hold it
//!   shared; `resize` holds it exclusively, so a resize
//!   never races a write, and a read never sees the file shrink under it
//!   (a short DMA read could hand back stale pool memory). Writer-preferring:
//!   a waiting resize stops new reads and writes, so a stream of writes
//!   cannot starve it.
//! - `rmw` (one permit): held by every write that reads-modifies-writes an
//!   edge block, extends the blob, or touches the tail block. Concurrent
//!   writes to different bytes of one block therefore never undo each other.
//!   Aligned writes inside the blob (the random-write hot path) skip it;
//!   "inside" counts only the length no write of several pieces in flight
//!   can give back (`growing_from`, blob/write.rs), so such a write never
//!   completes into bytes a failed write hands back. A small write that
//!   waits for it may instead be taken into the device write of the write
//!   that holds it (blob/group.rs): its bytes then go out under that
//!   write's lock, and it never holds the lock itself.
//!   The cut of a failed write's bytes before an extension holds it too:
//!   only the writes that hold it, and the zeros written ahead, have blocks
//!   past `len`, and that write first waits for the zeros in flight
//!   (blob/write.rs, `wait_for_zeros`), so a cut to `len` never cuts a
//!   write in flight, no zeros land past it, and it never shrinks the file
//!   below a read (reads stop at `len`). The zeros hold `meta` shared; a
//!   write whose blocks reach into them waits for them too.
//! - Syncs are group-committed: a sync is satisfied by the first flush that
//!   starts after it was called, so concurrent syncs share one fdatasync.
//!   A sync takes no lock of the blob's: it records the length in its slot
//!   if needed and flushes (blob/length.rs).
//!
//! Space: a write near the end reserves (fallocate, keep size) the blocks
//! from the reserved end up to the next step of the store's
//! `preallocate_bytes` (default `PREALLOCATE_BYTES`; 0 reserves nothing), so appends
//! do not allocate blocks one write at a time. A write that starts past the
//! reserved end reserves nothing (a gap stays a hole), a failed reservation
//! gives back what it took, and blocks a crash left reserved past the end
//! are given back when the blob is opened. Inside that space, the appends
//! of a blob that syncs have zeros written ahead of them on tasks of their
//! own (blob/write.rs, `zero_ahead`), so their blocks are written blocks
//! when their flush comes. Those tasks hold the state: the close comes after
//! them, and an open of the name waits for the close (store.rs).

mod commit;
mod group;
mod length;
mod read;
mod write;
mod write_buf;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use async_lock::{RwLock, RwLockWriteGuardArc, Semaphore};
use event_listener::Event;
use futures_lite::Stream;

use commit::{Committed, Orphans};
pub(crate) use length::Slots;

pub use read::BlobBuf;
pub use write::{ZERO_AHEAD_BYTES, ZERO_AHEAD_MIN_BYTES, ZERO_LEAD_BYTES};
pub use write_buf::{check_write_buf_len, WriteBuffer, WRITE_BUF_BYTES_MAX};

use crate::api::{Blob, WriteOptions};
use crate::fs::{File, FileSystem, BLOCK_SIZE};
use crate::header::HEADER_LEN;
use crate::name::hex;
use crate::sched::{IoClass, SchedFile};
use crate::stats::{OpKind, StoreStats, TimedStream};
use crate::store::{BlobKey, Registry};
use crate::{Error, Result};

/// Largest logical blob length: file offsets must fit an `off_t`.
pub const BLOB_LEN_MAX: u64 = (i64::MAX as u64) - HEADER_LEN - BLOCK_SIZE;
/// Largest single device I/O; bigger reads and writes are split (a single
/// oversized read can hang on some kernels, glommio issue 633), into
/// pieces of the scheduler's `piece_bytes` (at most this).
pub const IO_BYTES_MAX: usize = crate::sched::PIECE_BYTES_MAX;
/// Files grow in preallocated steps of this size by default, so an append
/// does not pay a block allocation each time
/// ([`ShardStore::with_preallocate_bytes`](crate::store::ShardStore::with_preallocate_bytes)).
pub const PREALLOCATE_BYTES: u64 = 8 << 20;
/// Storage past a file's end that an open leaves alone: ext4 counts extent
/// tree blocks in a file's allocation, so a file with nothing reserved can
/// still show a few blocks more than its size.
const RESERVED_SLACK_BYTES: u64 = 64 << 10;
/// Most ranges one `read_many` call accepts.
pub const READ_MANY_RANGES_MAX: usize = 1024;

/// The step of a blob operation that failed, and the OS's error.
pub(crate) type Failed = (&'static str, std::io::Error);
/// The step named in the error of a failed device write (or a failed read
/// of the blocks it rewrites).
pub(crate) const WRITE_OP: &str = "write";
/// The step named in the error of a write or resize whose flush of the cut
/// before it failed: the blob is poisoned (api.rs, the write contract).
pub const CUT_FLUSH_OP: &str = "sync before extending";
/// The step named in the error of a write or resize whose cut before it
/// (`set_len`) failed: nothing changed.
pub const CUT_OP: &str = "cut before extending";

/// The in-memory copy of the block holding the logical end.
pub(crate) struct TailBlock {
    /// Block index in the data area.
    pub(crate) index: u64,
    /// Its bytes; zero past the logical end.
    pub(crate) bytes: Box<[u8]>,
}

pub(crate) struct BlobState<F: FileSystem> {
    pub(crate) key: BlobKey,
    /// Every device call goes through the shard's I/O scheduler.
    pub(crate) file: SchedFile<F::File>,
    /// Logical length.
    pub(crate) len: Cell<u64>,
    /// `len` before the write of several pieces that holds the RMW lock, if
    /// one runs: its failure gives back what its earlier pieces added, so a
    /// write without the RMW lock counts only on this much (blob/write.rs).
    pub(crate) growing_from: Cell<Option<u64>>,
    /// Data bytes the file may hold (>= len; the excess is zero padding,
    /// or what a failed write left).
    pub(crate) file_len: Cell<u64>,
    /// The file may hold a failed write's bytes (not zeros) in
    /// `len..stale_end`. At or below `len`, every byte the file holds past
    /// `len` is zero padding. Cleared whenever the file is cut to `len`.
    pub(crate) stale_end: Cell<u64>,
    /// Where reserved space ends, or where reserving resumes after a gap
    /// (a hole, nothing reserved) or a failed reservation: a write ending at
    /// or below it reserves nothing.
    pub(crate) reserved_len: Cell<u64>,
    /// Where the space really reserved starts: a gap or a failed
    /// reservation moves `reserved_len` and reserves nothing below it.
    /// At most `reserved_len` ([`BlobState::account_reserved`]).
    pub(crate) reserved_from: Cell<u64>,
    /// The bytes past `len` this blob counts as reserved in `stats`.
    reserved_counted: Cell<u64>,
    /// The step appends reserve ahead in; 0 = reserve nothing.
    pub(crate) preallocate_bytes: u64,
    /// The store's statistics, which this blob's operations count in.
    stats: Rc<StoreStats>,
    pub(crate) tail: RefCell<Option<TailBlock>>,
    pub(crate) meta: Arc<RwLock<()>>,
    pub(crate) rmw: Arc<Semaphore>,
    /// Why the blob refuses writes and syncs, after a failed flush (a
    /// sync's, a SYNC write's, or a cut's before an extension).
    pub(crate) poison: RefCell<Option<String>>,
    /// Write and resize commits whose caller left; later writes wait for them.
    pub(crate) orphans: Rc<Orphans>,
    /// Small writes waiting for the RMW lock, which the write holding it
    /// may take into its device write (blob/group.rs).
    group: group::Group,
    /// Flushes whose callers left; nothing waits for them but their syncs.
    flush_orphans: Rc<Orphans>,
    /// The zeros being written ahead of the appends (one run at a time, a
    /// task per piece; blob/write.rs, `zero_ahead`), and where they start.
    zeroing: Rc<Orphans>,
    zeroing_from: Cell<u64>,
    /// A sync started, or a SYNC write ran, in this open: appends get zeros
    /// ahead (blob/write.rs, `zero_ahead`).
    synced: Cell<bool>,
    flushes: Flushes,
    /// The header's length slots (blob/length.rs).
    slots: RefCell<Slots>,
    /// Slot writes take turns; a fair lock, so a stream of appends does not
    /// keep a sync's flush from its turn.
    slot_turn: async_lock::Mutex<()>,
    /// The length a write's commit is recording while its data write is in
    /// flight, before it publishes it (blob/length.rs).
    recording: Cell<Option<u64>>,
    /// The live [`ShardBlob`] handles of this open.
    handles: Cell<usize>,
    registry: Weak<Registry>,
}

/// Group commit of syncs: flushes are numbered from 1 and run one at a time.
#[derive(Default)]
struct Flushes {
    /// Flushes started so far.
    started: Cell<u64>,
    /// Flushes finished so far, successfully or not (in order).
    finished: Cell<u64>,
    /// Notified when a flush finishes.
    finished_event: Event,
}

/// A handle to an open blob. Clones share the open.
pub struct ShardBlob<F: FileSystem> {
    pub(crate) state: Rc<BlobState<F>>,
}

impl<F: FileSystem> Clone for ShardBlob<F> {
    fn clone(&self) -> Self {
        let handles = &self.state.handles;
        handles.set(handles.get() + 1);
        ShardBlob {
            state: self.state.clone(),
        }
    }
}

impl<F: FileSystem> Drop for ShardBlob<F> {
    /// The last handle's drop starts the close, which ends when the work
    /// the blob started lands (the state's drop): a commit whose caller
    /// left, the zeros written ahead. An open of the name waits for it.
    fn drop(&mut self) {
        let state = &self.state;
        let handles = state.handles.get();
        debug_assert!(handles > 0, "handle count underflow");
        state.handles.set(handles - 1);
        if handles == 1 {
            if let Some(registry) = state.registry.upgrade() {
                registry.last_handle_dropped(&state.key, Rc::as_ptr(state) as *const ());
            }
        }
    }
}

impl<F: FileSystem> ShardBlob<F> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: BlobKey,
        file: SchedFile<F::File>,
        len: u64,
        slots: Slots,
        tail: Option<TailBlock>,
        registry: Weak<Registry>,
        preallocate_bytes: u64,
        stats: Rc<StoreStats>,
    ) -> ShardBlob<F> {
        // A crash can leave blocks reserved past the end (fallocate with
        // KEEP_SIZE); give them back now. One fstat on a normal open, a
        // truncate only when something is there. Best effort: a failure
        // leaves the space reserved, never loses data.
        let released = file.release_past_end_now(RESERVED_SLACK_BYTES);
        log_released_past_end(&key, released);
        stats.blob_opened();
        ShardBlob {
            state: Rc::new(BlobState {
                key,
                file,
                len: Cell::new(len),
                growing_from: Cell::new(None),
                file_len: Cell::new(len),
                stale_end: Cell::new(0),
                reserved_len: Cell::new(len),
                reserved_from: Cell::new(len),
                reserved_counted: Cell::new(0),
                preallocate_bytes,
                stats,
                tail: RefCell::new(tail),
                meta: Arc::new(RwLock::new(())),
                rmw: Arc::new(Semaphore::new(1)),
                poison: RefCell::new(None),
                orphans: Rc::default(),
                group: group::Group::default(),
                flush_orphans: Rc::default(),
                zeroing: Rc::default(),
                zeroing_from: Cell::new(u64::MAX),
                synced: Cell::new(false),
                flushes: Flushes::default(),
                slots: RefCell::new(slots),
                slot_turn: async_lock::Mutex::new(()),
                recording: Cell::new(None),
                handles: Cell::new(1),
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

    /// Checks the invariants of the lengths and the tail block; call where
    /// no commit is half-way through its state update.
    pub(crate) fn debug_check_ends(&self) {
        let (len, file_len, stale_end) =
            (self.len.get(), self.file_len.get(), self.stale_end.get());
        debug_assert!(len <= file_len, "len {len} > file_len {file_len}");
        debug_assert!(
            stale_end <= file_len,
            "stale_end {stale_end} > file_len {file_len}"
        );
        if let Some(tail) = &*self.tail.borrow() {
            debug_assert!(
                len % BLOCK_SIZE != 0,
                "a tail block at the aligned end {len}"
            );
            debug_assert_eq!(tail.index, len / BLOCK_SIZE, "tail block of length {len}");
        }
    }

    /// Records that the file now holds exactly `len` data bytes: the
    /// truncation also gave back the blocks reserved past them, so the next
    /// append past `len` reserves ahead again.
    pub(crate) fn file_cut_to(&self, len: u64) {
        self.file_len.set(len);
        self.stale_end.set(0);
        self.reservation_cut_to(len);
    }

    /// Records that a truncation to `len` gave back the blocks reserved
    /// past it, whether or not the truncation is durable yet.
    fn reservation_cut_to(&self, len: u64) {
        self.reserved_len.set(self.reserved_len.get().min(len));
        self.account_reserved();
    }

    /// Brings the shard's count of space reserved past the blobs' ends up
    /// to date with this blob's `len` and reservation. Called after every
    /// change of either (a write's commit or failure, a cut, a resize)
    /// before the next reservation.
    pub(crate) fn account_reserved(&self) {
        let reserved = self.reserved_len.get();
        let from = self.reserved_from.get().min(reserved);
        self.reserved_from.set(from);
        let now = reserved.saturating_sub(self.len.get().max(from));
        let before = self.reserved_counted.replace(now);
        self.stats.reserved_past_end_changed(before, now);
    }

    /// Cuts the file to the logical length: the zero padding of the last
    /// block, a failed write's bytes and the blocks reserved past the end
    /// go. The one trim of the file to `len` while the blob is open (the
    /// one before a reveal); the caller holds the locks that keep the end
    /// still. A failed `set_len` changes nothing (the file may still hold
    /// all of it); a failed flush after it poisons the blob, as a failed
    /// sync does, since a later flush may report success for what it lost.
    async fn cut_to_len(&self) -> std::result::Result<(), Failed> {
        let len = self.len.get();
        let cut = self.file.set_len(HEADER_LEN + len).await;
        cut.map_err(|e| (CUT_OP, e))?;
        self.reservation_cut_to(len);
        // Durably: a flush may have made the failed write's bytes durable
        // (a sync cuts nothing, blob/length.rs), and a later durable slot
        // past them must not find them back after a crash.
        if let Err(e) = self.file.sync_data().await {
            // A crash may still bring them back: the blob keeps counting
            // them (the writes and resizes that waited for this one find it
            // poisoned and are refused), and the close flushes again (or,
            // if that fails, leaves a flush to the next open, store.rs).
            self.poison(CUT_FLUSH_OP, &e);
            return Err((CUT_FLUSH_OP, e));
        }
        self.file_cut_to(len);
        self.debug_check_ends();
        Ok(())
    }

    /// Cuts the file to the logical length if a failed write may have left
    /// its bytes past it, so that a resize up or a write past the end
    /// exposes zeros, after a crash too (an extension of a file reads as
    /// zeros; a gap's blocks are never written). Runs only inside a commit
    /// that holds the locks that keep the end still (a resize's exclusive
    /// lock, or an extending write's RMW lock), so it finishes, or fails,
    /// whoever drops the caller's future: with the bytes still counted
    /// past the end, and the blob poisoned if the cut's flush failed.
    pub(crate) async fn trim_stale(&self) -> std::result::Result<(), Failed> {
        match self.stale_end.get() > self.len.get() {
            true => self.cut_to_len().await,
            false => Ok(()),
        }
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

    /// Poisons the blob (the first cause stays) and returns `source` as the
    /// error of `op`.
    fn poison_with(&self, op: &'static str, source: std::io::Error) -> Error {
        self.poison(op, &source);
        self.io_error(op, source)
    }

    fn poison(&self, op: &'static str, source: &std::io::Error) {
        self.poison.borrow_mut().get_or_insert_with(|| {
            tracing::warn!(
                partition = %self.key.partition,
                name = %hex(&self.key.name),
                op,
                error = %source,
                "blob poisoned: it refuses writes and syncs until it is reopened"
            );
            format!("{op}: {source}")
        });
    }

    /// Makes every completed write and resize durable.
    ///
    /// Group commit: satisfied by the first flush that starts after this
    /// call (one already running may have missed this caller's writes), so
    /// concurrent syncs share a flush. At most two flushes pass per call.
    async fn sync(self: &Rc<Self>) -> Result<()> {
        self.synced.set(true);
        let flushes = &self.flushes;
        let wanted = flushes.started.get() + 1;
        while flushes.finished.get() < wanted {
            self.check_poison()?;
            if flushes.started.get() == flushes.finished.get() {
                debug_assert_eq!(flushes.started.get() + 1, wanted);
                flushes.started.set(wanted);
                // The starter reports the flush's own error; syncs that
                // waited for it find the blob poisoned.
                let flush = FlushGuard::new(self.clone());
                // One flush serves the syncs of both classes: latency.
                let run = IoClass::Latency.scope(flush.run());
                Committed::new(&self.flush_orphans, run).await?;
            } else {
                let listener = flushes.finished_event.listen();
                if flushes.started.get() != flushes.finished.get() {
                    listener.await;
                }
            }
        }
        self.check_poison()
    }

    /// Extends with zeros or truncates to `new_len`.
    async fn resize(self: &Rc<Self>, new_len: u64) -> Result<()> {
        self.end_of(new_len, 0)?;
        self.check_poison()?;
        let exclusive = self.meta.write_arc().await;
        // Poisoned while it waited (a failed flush): refused as well.
        self.check_poison()?;
        let commit = self.clone().commit_resize(new_len, exclusive);
        Committed::new(&self.orphans, commit).await
    }

    /// The part of `resize` that runs to the end once started.
    async fn commit_resize(
        self: Rc<Self>,
        new_len: u64,
        _exclusive: RwLockWriteGuardArc<()>,
    ) -> Result<()> {
        let old_len = self.len.get();
        // First cut off, durably, what a failed write left past the end:
        // an extension keeps the bytes the file holds, and a shrink's own
        // cut below is not durable, so a later write past a gap could find
        // them back after a crash (gap_zero.rs).
        let trimmed = self.trim_stale().await;
        trimmed.map_err(|(op, e)| self.io_error(op, e))?;
        self.record_resize(new_len)
            .await
            .map_err(|e| self.io_error("resize", e))?;
        if let Err(e) = self.file.set_len(HEADER_LEN + new_len).await {
            // The slot says a length the blob does not have: best effort,
            // the one it has (else the next sync or close writes it).
            let _ = self.record_resize(old_len).await;
            return Err(self.io_error("resize", e));
        }
        // The file now holds exactly new_len bytes: the kernel zeroed the
        // rest of a cut block, and an extension reads as zeros (a hole,
        // nothing reserved).
        self.file_cut_to(new_len);
        self.len.set(new_len);
        self.reserved_len.set(new_len);
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
        self.account_reserved();
        self.debug_check_ends();
        Ok(())
    }
}

/// One started flush. Whatever ends it (completion, or a drop when no
/// executor is left to finish it), the flush counts as finished and its
/// waiters wake; a flush that did not complete poisons the blob, so no sync
/// reports success for it.
struct FlushGuard<F: FileSystem> {
    state: Rc<BlobState<F>>,
    completed: bool,
}

impl<F: FileSystem> FlushGuard<F> {
    fn new(state: Rc<BlobState<F>>) -> FlushGuard<F> {
        FlushGuard {
            state,
            completed: false,
        }
    }

    async fn run(mut self) -> Result<()> {
        let flushed = self.state.flush_with_length().await;
        self.completed = true;
        flushed.map_err(|(op, e)| self.state.poison_with(op, e))
    }
}

impl<F: FileSystem> Drop for FlushGuard<F> {
    fn drop(&mut self) {
        if !self.completed {
            let abandoned = std::io::Error::other("the flush was abandoned (executor stopped)");
            self.state.poison_with("sync", abandoned);
        }
        let flushes = &self.state.flushes;
        flushes.finished.set(flushes.finished.get() + 1);
        flushes.finished_event.notify(usize::MAX);
    }
}

impl<F: FileSystem> Drop for BlobState<F> {
    fn drop(&mut self) {
        // Record the length in its slot, so a reopen sees it, and give back
        // the blocks past the end (zero-written or reserved). Best effort:
        // a failure leaves the registry the length, for the next open of
        // this store (store.rs), or space held past the end.
        // Not when a failed write's bytes are past the end: a sync may have
        // made them durable, and the cut would not be; the next open cuts,
        // durably (store.rs).
        let stale = self.stale_end.get() > self.len.get();
        let untrimmed = !stale
            && (self.file_len.get() != self.len.get() || self.reserved_len.get() > self.len.get());
        // A poisoned blob records its length too (its writes stay readable
        // after a reopen, as they are now), leaves the file's size alone,
        // and flushes: its failed flush may have left a cut that is not
        // durable (`cut_to_len`), and an open by another store (a new
        // process) would not know to flush. One blocking `fdatasync`, on an
        // error path only. Whatever fails here, the next open of this store
        // does.
        let poisoned = self.poison.borrow().is_some();
        let closed = self.write_length_now().and_then(|()| match poisoned {
            true => self.file.sync_data_now(),
            false if untrimmed => self.file.set_len_now(HEADER_LEN + self.len.get()),
            false => Ok(()),
        });
        let unsettled = closed.err().map(|e| {
            tracing::warn!(
                partition = %self.key.partition,
                name = %hex(&self.key.name),
                len = self.len.get(),
                poisoned,
                error = %e,
                "closing failed: the next open of this store records the length and flushes"
            );
            self.len.get()
        });
        if let Some(registry) = self.registry.upgrade() {
            let open = self as *const BlobState<F> as *const ();
            registry.release(&self.key, open, unsettled);
        }
        let stats = &self.stats;
        stats.reserved_past_end_changed(self.reserved_counted.get(), 0);
        stats.blob_closed();
    }
}

/// Logs what the open's release of the space reserved past the end did:
/// space given back (left by a crash), or a failure (best effort).
fn log_released_past_end(key: &BlobKey, released: std::io::Result<bool>) {
    match released {
        Ok(false) => {}
        Ok(true) => tracing::warn!(
            partition = %key.partition,
            name = %hex(&key.name),
            "gave back the space reserved past the end of a blob (left by a crash)"
        ),
        Err(e) => tracing::warn!(
            partition = %key.partition,
            name = %hex(&key.name),
            error = %e,
            "cannot give back the space reserved past the end of a blob; it stays reserved"
        ),
    }
}

impl<F: FileSystem> ShardBlob<F> {
    /// [`Blob::sync`], uncounted: for a caller that counts the call itself
    /// with [`StoreStats::start`] (the engine's sync lane answers every
    /// waiting caller with one flush and counts one sync per caller).
    #[doc(hidden)] // engine-internal: a caller that skips it goes uncounted
    pub async fn sync_uncounted(&self) -> Result<()> {
        self.state.sync().await
    }
}

/// Every call is counted in the store's [`StoreStats`].
impl<F: FileSystem> Blob for ShardBlob<F> {
    type Buf = BlobBuf<<F::File as File>::ReadBuf>;
    type WriteBuf = WriteBuffer<<F::File as File>::WriteBuf>;

    async fn read_at(&self, offset: u64, len: usize) -> Result<Self::Buf> {
        let read = self.state.read_at(offset, len);
        self.state.stats.timed(OpKind::Read, len as u64, read).await
    }

    async fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        let read = self.state.read_into(offset, buf);
        self.state.stats.timed(OpKind::Read, len, read).await
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, Self::Buf)>> {
        let count = ranges.len();
        TimedStream::new(&self.state.stats, count, self.state.read_many(ranges))
    }

    async fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> Result<()> {
        let durable = options.contains(WriteOptions::SYNC);
        let bytes = bufs.iter().map(|buf| buf.len() as u64).sum();
        let write = options
            .class()
            .scope(self.state.write(offset, bufs, durable));
        self.state.stats.timed(OpKind::Write, bytes, write).await
    }

    fn alloc_buf(&self, len: usize) -> Result<Self::WriteBuf> {
        self.state.alloc_buf(len)
    }

    async fn write_buf_at(
        &self,
        offset: u64,
        buf: Self::WriteBuf,
        options: WriteOptions,
    ) -> Result<Self::WriteBuf> {
        let durable = options.contains(WriteOptions::SYNC);
        let bytes = buf.len() as u64;
        let write = options
            .class()
            .scope(self.state.write_buf(offset, buf, durable));
        self.state.stats.timed(OpKind::Write, bytes, write).await
    }

    async fn resize(&self, len: u64) -> Result<()> {
        let resize = self.state.resize(len);
        self.state.stats.timed(OpKind::Resize, 0, resize).await
    }

    async fn sync(&self) -> Result<()> {
        let sync = self.state.sync();
        self.state.stats.timed(OpKind::Sync, 0, sync).await
    }

    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>> {
        let state = self.state.clone();
        let task =
            glommio::spawn_local(
                async move { state.stats.timed(OpKind::Sync, 0, state.sync()).await },
            )
            .detach();
        async move { task.await.unwrap_or(Err(Error::Shutdown)) }
    }
}
