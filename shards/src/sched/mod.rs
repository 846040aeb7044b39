//! I/O classes and the per-shard I/O scheduler.
//!
//! The problem: one shard serves both small, latency-critical operations
//! (a 4 KiB read a request waits for) and bulk work (a compaction writing
//! megabytes, a scan). The device serves whatever it has been given, in
//! roughly the order given. If the shard hands it everything at once, a
//! 4 KiB read submitted behind 64 MiB of bulk writes waits for all of them:
//! the bulk work's throughput is fine, the read's tail latency is not.
//!
//! The trade-off: keep bulk work *out of the device* until the device has
//! room for it, and the device's queue stays short for latency operations,
//! at the price of bulk throughput (the device sees less bulk work in
//! parallel, and bulk work waits in the shard's queue instead). Too tight a
//! bound starves the device and bulk throughput drops; too loose a bound
//! and latency operations queue behind bulk work again. Seastar's I/O
//! scheduler makes the same trade with classes, shares and a per-request
//! capacity; glommio 0.9 has only CPU shares, so this module does it for
//! the device. It is deliberately simpler than Seastar's fair queue: two
//! classes, counted bounds instead of a token bucket, and a fixed
//! interleave instead of virtual-time shares.
//!
//! The rules ([`IoScheduler`]), per shard:
//! - Every device call belongs to an [`IoClass`]: [`IoClass::Latency`]
//!   (the default) or [`IoClass::Throughput`]. Calls of one class are
//!   dispatched in arrival order, also when its queue is full: while
//!   anyone waits for room, a new caller waits for room behind them.
//! - At most `depth_max` device calls of the shard are in flight, all
//!   classes together. Throughput calls may in addition have at most
//!   `throughput_ops_max` calls and `throughput_bytes_max` bytes in flight.
//!   So a latency call never waits at the device behind more than that much
//!   bulk work (behind the alone bounds, below, if it is the first after a
//!   quiet spell), and it never queues in the scheduler behind bulk work that
//!   does not fit those bounds: it overtakes it. A waiting head that fits
//!   its class's bounds but not the free depth reserves the depth: the
//!   other class is granted nothing until enough calls completed for it,
//!   so no batch waits forever beside steady work of the other class (and
//!   batches are cut so that they fit: `sched::file`).
//! - When both classes wait and both fit, at least one dispatch in every
//!   `throughput_every` goes to the throughput class: bulk work keeps a
//!   share of the device under any latency load, it is never starved.
//! - Bulk work alone fills more of the device: once `alone_after_ops`
//!   throughput calls in a row were dispatched with no latency call that
//!   moves data dispatched in between, and while no such latency call is
//!   in flight and none waits, the throughput class is bounded by
//!   `throughput_ops_max_alone` and `throughput_bytes_max_alone` instead.
//!   (Flushes and size changes
//!   move no data: bulk work's own syncs, which run in the latency class,
//!   do not end its quiet spell.) The first latency call after such a
//!   spell may wait behind that much bulk work; from it on, no throughput
//!   call is dispatched until the class is back within its tighter bounds,
//!   except a group of reads cut to the alone bounds before the latency
//!   call came, which goes out whole once no bulk call is in flight
//!   (`sched::file`). Counted in dispatches, not in time, so that the rule
//!   is the same on a fast device and a slow one.
//! - Large operations are split into pieces of at most `piece_bytes`
//!   ([`SchedConfig::piece_bytes`], at most the device's `max_sectors_kb`)
//!   and every piece goes through the scheduler on its own, so an 8 MiB
//!   write holds the device one piece at a time and latency calls pass
//!   between its pieces.
//! - Every queue is bounded: at most `queue_max` calls of a class wait in
//!   the scheduler's queue; more wait for room on a listener each owns,
//!   and a batch of reads runs at most two groups ahead of its caller.
//!
//! Choosing the class. The class is a property of the *operation*, set
//! around the future that performs it ([`IoClass::scope`]), like Seastar's
//! scheduling groups: every device call made while that future is polled
//! takes its class, however deep in the store it is made. A write can also
//! say it in its options (`WriteOptions::THROUGHPUT`). The forwarded paths
//! carry the class of the sending future to the owning shard, which serves
//! the request in it. glommio runs a new task at once, inside the poll
//! that spawns it, so a task spawned in a scope makes its first device
//! calls in that class: scope a task's own future to give it a class of
//! its own (the engine does, for `spawn_on` tasks and forwarded requests).
//!
//! Decisions for the operations with no options:
//! - `resize` (and its truncations) runs in the caller's class.
//! - A flush (`sync`, with the length slot before it) always runs in the
//!   latency class: syncs are group-committed, so one flush answers callers
//!   of both classes, and a latency caller must not wait behind bulk work
//!   for it. It counts as one call with no bytes.
//! - Opens, removes and scans (headers, directory calls) are not scheduled:
//!   they are rare, small metadata operations.
//!
//! Cancellation: a call waiting in the scheduler's queue that is dropped
//! leaves the queue at once (no ghost entry that would block its class),
//! and a permit granted to a dropped waiter is given back at once.
//!
//! Calibrating for a device (NVMe): run the benchmark's interference
//! suite (`shardblob-bench --suite interference --engine-config FILE`:
//! latency-class 4 KiB reads at depth 1 and in an open loop, alone and
//! beside a throughput-class 128 KiB writer at depth 8) with an
//! `[io_scheduler]` block in FILE, raising `throughput_bytes_max` from one
//! piece upwards (`throughput_ops_max` = that divided by `piece_bytes`).
//! Take the largest value at which the reader's p99.9 under the writer
//! stays within your target of its p99.9 alone (the report judges 2x)
//! while the writer keeps the share of its solo MB/s you need (the report
//! judges 0.7x); the bounds trade one for the other, so where no value
//! meets both, choose which matters. Judge over several runs: a single
//! p99.9 of a short run rests on a few samples. The alone bounds
//! (`throughput_ops_max_alone`, `throughput_bytes_max_alone`) should be
//! about what bulk work needs in flight for the device's full bandwidth:
//! the suite's bulk-only row reports it (and fio's 128 KiB writer at the
//! same depth). Before calibrating, make sure the reader is not helped by
//! something else: on the dev VM a shard that spun without yielding kept
//! its own write completions (a kernel worker on its CPU) waiting, so the
//! writes seemed in flight long after the device was done and the reads
//! seemed to pass them (`third_party/glommio/PATCHES.md`, patch 2).
//! `depth_max` should be about the depth at which fio's 4 KiB random-read
//! IOPS stop growing (deeper only
//! queues inside the device). `piece_bytes`: NVMe drives often report
//! `max_sectors_kb` of 128 to 512; the piece follows it automatically.

mod device;
mod file;
mod queue;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

pub use device::max_io_bytes;
pub use file::SchedFile;
pub use queue::{Acquire, Cost, IoScheduler, Permit};

use crate::fs::BLOCK_SIZE;

/// Largest piece: the store's largest single device I/O.
pub const PIECE_BYTES_MAX: usize = 1 << 20;

/// The I/O class of an operation (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IoClass {
    /// Small operations someone waits for: never queued behind bulk work
    /// beyond the configured bounds. The default.
    #[default]
    Latency,
    /// Bulk work (compaction, scans, large copies): bounded at the device,
    /// never starved.
    Throughput,
}

impl IoClass {
    /// Both classes.
    pub const ALL: [IoClass; 2] = [IoClass::Latency, IoClass::Throughput];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The class of the operation being polled on this thread: the one of
    /// the innermost [`IoClass::scope`], else [`IoClass::Latency`].
    pub fn current() -> IoClass {
        CURRENT.with(|current| current.get())
    }

    /// Runs `inner` (a future or a stream) in this class: every device call
    /// it makes is scheduled in it, on this shard or, for a forwarded call,
    /// on the owning shard.
    pub fn scope<T>(self, inner: T) -> Scoped<T> {
        Scoped { class: self, inner }
    }
}

thread_local! {
    static CURRENT: std::cell::Cell<IoClass> = const { std::cell::Cell::new(IoClass::Latency) };
}

/// Restores the class that was current when it was made.
struct Restore(IoClass);

impl Restore {
    fn enter(class: IoClass) -> Restore {
        Restore(CURRENT.with(|current| current.replace(class)))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

pin_project_lite::pin_project! {
    /// A future or stream polled in an [`IoClass`] ([`IoClass::scope`]).
    #[derive(Debug)]
    pub struct Scoped<T> {
        class: IoClass,
        #[pin]
        inner: T,
    }
}

impl<T: Future> Future for Scoped<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.project();
        let _restore = Restore::enter(*this.class);
        this.inner.poll(cx)
    }
}

impl<T: Stream> Stream for Scoped<T> {
    type Item = T::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        let this = self.project();
        let _restore = Restore::enter(*this.class);
        this.inner.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The bounds of one shard's scheduler (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedConfig {
    /// Device calls in flight, all classes together.
    pub depth_max: u32,
    /// Throughput-class calls in flight.
    pub throughput_ops_max: u32,
    /// Throughput-class bytes in flight. At least `piece_bytes`, so that a
    /// piece always fits.
    pub throughput_bytes_max: u64,
    /// Throughput-class calls in flight while the class is alone (module
    /// docs), at most `depth_max`; below `throughput_ops_max` it counts as
    /// `throughput_ops_max`.
    pub throughput_ops_max_alone: u32,
    /// Throughput-class bytes in flight while the class is alone, at least
    /// `piece_bytes`; below `throughput_bytes_max` it counts as
    /// `throughput_bytes_max`.
    pub throughput_bytes_max_alone: u64,
    /// The throughput class is alone once this many of its calls in a row
    /// were dispatched with no latency call that moves data dispatched in
    /// between, while no such call is in flight and no latency call waits.
    /// At least 1.
    pub alone_after_ops: u32,
    /// When both classes wait, at least one dispatch in this many goes to
    /// the throughput class (1: every one).
    pub throughput_every: u32,
    /// Calls of one class waiting in the scheduler's queue.
    pub queue_max: u32,
    /// Largest single device read or write: a multiple of 4 KiB, at most
    /// [`PIECE_BYTES_MAX`].
    pub piece_bytes: usize,
}

impl Default for SchedConfig {
    /// Defaults for the 2-core dev VM (virtio disk, `max_sectors_kb` 1280,
    /// about 3.3 GB/s of 128 KiB writes): fio's 4 KiB random reads stop
    /// scaling near depth 32; 128 KiB pieces (Seastar's request size too).
    /// Beside a 128 KiB writer at depth 8, one piece of bulk work in flight
    /// kept a depth-1 4 KiB reader's p99.9 within 1.59-1.90x of its p99.9
    /// alone, where two pieces let it grow 2.11-2.75x and four 3.11-5.47x
    /// (three runs each); the writer kept 0.42-0.45x of its bandwidth
    /// alone (0.54-0.55x and 0.71-0.80x). Alone, bulk work
    /// may have 8 pieces (1 MiB) in flight, which that writer fills at the
    /// device's full speed (bench/RESULTS.md, "Interference";
    /// `configs/default.toml`).
    fn default() -> SchedConfig {
        SchedConfig {
            depth_max: 64,
            throughput_ops_max: 1,
            throughput_bytes_max: 128 << 10,
            throughput_ops_max_alone: 8,
            throughput_bytes_max_alone: 1 << 20,
            alone_after_ops: 16,
            throughput_every: 4,
            queue_max: 1024,
            piece_bytes: 128 << 10,
        }
    }
}

impl SchedConfig {
    /// Why these bounds cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let piece = self.piece_bytes as u64;
        let problem = if self.depth_max == 0 || self.throughput_ops_max == 0 {
            "depth_max and throughput_ops_max must be at least 1"
        } else if self.throughput_ops_max > self.depth_max {
            "throughput_ops_max must not exceed depth_max"
        } else if self.throughput_every == 0 || self.queue_max == 0 {
            "throughput_every and queue_max must be at least 1"
        } else if piece == 0
            || !piece.is_multiple_of(BLOCK_SIZE)
            || self.piece_bytes > PIECE_BYTES_MAX
        {
            "piece_bytes must be a multiple of 4096 in 4096..=1048576"
        } else if self.throughput_bytes_max < piece {
            "throughput_bytes_max must be at least piece_bytes, so a piece always fits"
        } else if !(1..=self.depth_max).contains(&self.throughput_ops_max_alone)
            || self.throughput_bytes_max_alone < piece
        {
            "throughput_ops_max_alone must be in 1..=depth_max, throughput_bytes_max_alone at least piece_bytes"
        } else if self.alone_after_ops == 0 {
            "alone_after_ops must be at least 1"
        } else {
            return Ok(());
        };
        Err(format!("{problem} (got {self:?})"))
    }

    /// The nearest bounds that pass [`SchedConfig::check`] (what
    /// [`IoScheduler::new`] runs with): `depth_max`, `throughput_every` and
    /// `queue_max` at least 1; `throughput_ops_max` in `1..=depth_max`;
    /// `piece_bytes` rounded down to a multiple of 4096, in
    /// `4096..=`[`PIECE_BYTES_MAX`]; `throughput_bytes_max` at least
    /// `piece_bytes`, and so is `throughput_bytes_max_alone`;
    /// `throughput_ops_max_alone` in `1..=depth_max`; `alone_after_ops` at
    /// least 1. Bounds that pass `check` are kept as they are.
    pub fn clamped(self) -> SchedConfig {
        let block = BLOCK_SIZE as usize;
        let depth_max = self.depth_max.max(1);
        let piece_bytes = self.piece_bytes.min(PIECE_BYTES_MAX) / block * block;
        let piece_bytes = piece_bytes.max(block);
        SchedConfig {
            depth_max,
            throughput_ops_max: self.throughput_ops_max.clamp(1, depth_max),
            throughput_bytes_max: self.throughput_bytes_max.max(piece_bytes as u64),
            throughput_ops_max_alone: self.throughput_ops_max_alone.clamp(1, depth_max),
            throughput_bytes_max_alone: self.throughput_bytes_max_alone.max(piece_bytes as u64),
            alone_after_ops: self.alone_after_ops.max(1),
            throughput_every: self.throughput_every.max(1),
            queue_max: self.queue_max.max(1),
            piece_bytes,
        }
    }

    /// These bounds with the piece cut to what the device takes in one
    /// request (`max_io_bytes` of the data directory's device, if known).
    pub fn for_device(mut self, device_max_bytes: Option<usize>) -> SchedConfig {
        if let Some(max) = device_max_bytes {
            let block = BLOCK_SIZE as usize;
            self.piece_bytes = self.piece_bytes.min(max / block * block).max(block);
        }
        self
    }
}
