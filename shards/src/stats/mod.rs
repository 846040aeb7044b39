//! Per-shard statistics of the store: operations, bytes, errors and
//! latencies by operation kind, operations in flight, open blobs and the
//! space reserved past the blobs' ends.
//!
//! Why here: every path to a blob (a direct call on the owning shard, a
//! call forwarded from another shard, a `Client` call from a foreign
//! thread) ends in the owning shard's [`ShardStore`](crate::ShardStore) and
//! [`ShardBlob`](crate::ShardBlob), so counting there counts each operation
//! once, whichever way it came. (The engine's forwarded paths call the
//! store's hidden `*_uncounted` methods and count with
//! `StoreStats::start` themselves, by whether the caller was still there
//! for the answer; nothing else should.) A latency is the time the store spent on
//! the operation, from its call on the owning shard to its result: queueing
//! on the way there and back is not in it (the engine reports its queues).
//!
//! How: [`StoreStats`] lives on its shard's thread (`Cell`, `RefCell`, no
//! locks or atomics) and recording never allocates. [`StoreStats::snapshot`]
//! copies it into a [`StoreSnapshot`], plain data that may leave the thread.

mod kind;
mod latency;
mod op;
mod snapshot;
#[cfg(test)]
mod store_tests;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;

use hdrhistogram::Histogram;

pub use kind::{ErrorClass, OpKind};
pub use latency::{LATENCY_HISTOGRAM_BYTES, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS};
pub use snapshot::{OpStats, StoreSnapshot};

pub use op::OpTimer;
pub(crate) use op::TimedStream;

use latency::latency_histogram;

use crate::{Error, Result};

/// The live counters of one operation kind.
struct OpCounters {
    count: Cell<u64>,
    bytes: Cell<u64>,
    errors: [Cell<u64>; ErrorClass::ALL.len()],
    cancelled: Cell<u64>,
    latency_sum_us: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
}

impl OpCounters {
    fn new() -> OpCounters {
        OpCounters {
            count: Cell::new(0),
            bytes: Cell::new(0),
            errors: Default::default(),
            cancelled: Cell::new(0),
            latency_sum_us: Cell::new(0),
            latency_us: RefCell::new(latency_histogram()),
        }
    }

    fn snapshot(&self, kind: OpKind) -> OpStats {
        OpStats {
            kind,
            count: self.count.get(),
            bytes: self.bytes.get(),
            errors: std::array::from_fn(|class| self.errors[class].get()),
            cancelled: self.cancelled.get(),
            latency_sum_us: self.latency_sum_us.get(),
            latency_us: self.latency_us.borrow().clone(),
        }
    }
}

/// The statistics of one shard's store, recorded on its thread.
pub struct StoreStats {
    ops: [OpCounters; OpKind::ALL.len()],
    in_flight: Cell<u64>,
    open_blobs: Cell<u64>,
    reserved_past_end_bytes: Cell<u64>,
    writes_joined: Cell<u64>,
}

impl Default for StoreStats {
    fn default() -> StoreStats {
        StoreStats {
            ops: std::array::from_fn(|_| OpCounters::new()),
            in_flight: Cell::new(0),
            open_blobs: Cell::new(0),
            reserved_past_end_bytes: Cell::new(0),
            writes_joined: Cell::new(0),
        }
    }
}

impl StoreStats {
    /// A copy of every counter now.
    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            ops: OpKind::ALL
                .iter()
                .map(|&kind| self.ops[kind.index()].snapshot(kind))
                .collect(),
            ops_in_flight: self.in_flight.get(),
            open_blobs: self.open_blobs.get(),
            reserved_past_end_bytes: self.reserved_past_end_bytes.get(),
            writes_joined: self.writes_joined.get(),
        }
    }

    /// An operation of `kind` starts now, counted by the caller: for a
    /// call made with an uncounted method (such as
    /// [`ShardStore::open_versioned_uncounted`](crate::ShardStore::open_versioned_uncounted)).
    #[doc(hidden)] // engine-internal, with the `*_uncounted` calls
    pub fn start(&self, kind: OpKind) -> OpTimer<'_> {
        OpTimer::start(self, kind)
    }

    /// Runs `op` as one operation of `kind` that moves `bytes` if it
    /// succeeds; a dropped `op` counts as cancelled.
    pub(crate) async fn timed<T>(
        &self,
        kind: OpKind,
        bytes: u64,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let timer = self.start(kind);
        let result = op.await;
        timer.end(result.as_ref().err(), bytes);
        result
    }

    /// Counts an operation that ended after `elapsed`.
    fn record(&self, kind: OpKind, elapsed: Duration, error: Option<&Error>, bytes: u64) {
        let counters = &self.ops[kind.index()];
        add(&counters.count, 1);
        match error {
            None => add(&counters.bytes, bytes),
            Some(error) => add(&counters.errors[ErrorClass::of(error).index()], 1),
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        add(&counters.latency_sum_us, us);
        counters.latency_us.borrow_mut().saturating_record(us);
    }

    fn cancelled(&self, kind: OpKind) {
        add(&self.ops[kind.index()].cancelled, 1);
    }

    /// Blobs open now: opened, and not yet closed (a blob closes when its
    /// last handle is gone and the work it started has landed).
    pub fn open_blobs(&self) -> u64 {
        self.open_blobs.get()
    }

    /// A blob was opened.
    pub(crate) fn blob_opened(&self) {
        add(&self.open_blobs, 1);
    }

    /// An open blob closed: its last handle went, and the work it started
    /// (a commit whose caller left, the zeros written ahead) has landed.
    pub(crate) fn blob_closed(&self) {
        let open = self.open_blobs.get();
        debug_assert!(open > 0, "more blobs closed than opened");
        self.open_blobs.set(open.saturating_sub(1));
    }

    /// `n` waiting writes joined another write's device write
    /// (shards/src/blob/group.rs).
    pub(crate) fn writes_joined(&self, n: u64) {
        add(&self.writes_joined, n);
    }

    /// One blob's space reserved past its end went from `before` to `now`
    /// bytes.
    pub(crate) fn reserved_past_end_changed(&self, before: u64, now: u64) {
        let total = self.reserved_past_end_bytes.get();
        debug_assert!(total >= before, "a blob gave back more than it counted");
        self.reserved_past_end_bytes
            .set(total.saturating_sub(before).saturating_add(now));
    }
}

/// Adds `n` to a counter (saturating: a counter never wraps to zero).
fn add(counter: &Cell<u64>, n: u64) {
    counter.set(counter.get().saturating_add(n));
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures_lite::future::{block_on, poll_once};
    use futures_lite::{stream, StreamExt};

    use super::*;

    fn missing() -> Error {
        Error::BlobMissing {
            partition: "p".into(),
            name: b"b".to_vec(),
        }
    }

    #[test]
    fn an_operation_counts_once_with_its_bytes_or_its_error() {
        let stats = StoreStats::default();
        block_on(stats.timed(OpKind::Write, 10, async { Ok(()) })).unwrap();
        let failed = block_on(stats.timed(OpKind::Write, 10, async { Err::<(), _>(missing()) }));
        assert!(failed.is_err());
        let write = stats.snapshot().op(OpKind::Write).clone();
        assert_eq!((write.count, write.bytes, write.cancelled), (2, 10, 0));
        assert_eq!(write.errors_of(ErrorClass::NotFound), 1);
        assert_eq!(write.errors_total(), 1);
        assert_eq!(write.latency_us.len(), write.count);
        assert_eq!(stats.snapshot().op(OpKind::Read).count, 0);
        assert_eq!(stats.snapshot().ops_in_flight, 0);
    }

    #[test]
    fn a_dropped_operation_counts_as_cancelled_and_leaves_nothing_in_flight() {
        let stats = StoreStats::default();
        {
            let mut op = pin!(stats.timed(OpKind::Sync, 0, std::future::pending::<Result<()>>()));
            assert!(block_on(poll_once(op.as_mut())).is_none());
            assert_eq!(stats.snapshot().ops_in_flight, 1);
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.ops_in_flight, 0);
        let sync = snapshot.op(OpKind::Sync);
        assert_eq!(
            (sync.count, sync.cancelled, sync.latency_us.len()),
            (0, 1, 0)
        );
    }

    #[test]
    fn a_read_many_ends_with_its_last_range_or_its_first_error() {
        let stats = StoreStats::default();
        let items: Vec<Result<(usize, Vec<u8>)>> = vec![Ok((0, vec![1; 3])), Ok((1, vec![2; 4]))];
        // Its last range ends it: the stream's own end need not be polled.
        let mut timed = pin!(TimedStream::new(&stats, 2, stream::iter(items)));
        assert!(block_on(timed.next()).is_some());
        assert_eq!(stats.snapshot().op(OpKind::ReadMany).count, 0);
        assert!(block_on(timed.next()).is_some());
        let read_many = stats.snapshot().op(OpKind::ReadMany).clone();
        assert_eq!((read_many.count, read_many.bytes), (1, 7));

        let failing: Vec<Result<(usize, Vec<u8>)>> = vec![Ok((0, vec![0; 1])), Err(missing())];
        let failing = stream::iter(failing);
        let all: Vec<_> = block_on(TimedStream::new(&stats, 5, failing).collect());
        assert_eq!(all.len(), 2);
        let read_many = stats.snapshot().op(OpKind::ReadMany).clone();
        assert_eq!((read_many.count, read_many.bytes), (2, 7));
        assert_eq!(read_many.errors_of(ErrorClass::NotFound), 1);
        assert_eq!(stats.snapshot().ops_in_flight, 0);
    }

    #[test]
    fn reserved_bytes_and_open_blobs_follow_their_changes() {
        let stats = StoreStats::default();
        stats.blob_opened();
        stats.blob_opened();
        stats.reserved_past_end_changed(0, 8192);
        stats.reserved_past_end_changed(0, 100);
        stats.reserved_past_end_changed(8192, 4096);
        stats.blob_closed();
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.open_blobs, snapshot.reserved_past_end_bytes),
            (1, 4196)
        );
    }
}
