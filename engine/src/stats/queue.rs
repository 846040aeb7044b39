//! The depth of one queue into a shard, with its high-water mark. The
//! foreign queue and each peer queue are a pair, one per I/O class
//! (`transport.rs`); one gauge counts both.
//!
//! A queue is written by other threads (foreign callers, a peer shard) and
//! read by its shard, so its gauge is shared: two atomics, counted by the
//! sender as it starts to send ([`QueueGauge::push`], given back if the
//! send fails or is dropped) and by the shard's serving loop when it takes
//! a message out. Counting before the send means the shard never takes out
//! a message not yet counted, and a sender waiting for room in a full
//! queue counts in its depth: a queue's depth is the messages in it plus
//! the senders blocked on its channel (a depth above twice the capacity,
//! both classes full, is backpressure). It counts messages, not bytes: a sender waiting for
//! the shard's byte budget is not in it yet. A `try_send` refused as full
//! ([`QueueGauge::try_push`]) never raises the high-water mark. Neither glommio's shared channels nor the byte budget
//! give a per-queue depth, and a lock would be worse than two relaxed
//! atomic operations beside a cross-thread message.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How deep one queue is, in messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting in it now, and senders waiting for room in it.
    pub depth_messages: u64,
    /// The highest `depth_messages` since the engine started.
    pub high_water_messages: u64,
}

/// The live gauge of one queue, alone on its cache line: the gauges of a
/// shard's queues are written by different threads, which would otherwise
/// take the line from each other on every message.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct QueueGauge {
    /// Signed, so that a miscount shows as zero rather than wrapping.
    depth: AtomicI64,
    high_water: AtomicU64,
}

impl QueueGauge {
    /// A message is being sent: counted until the returned guard is
    /// dropped, or for good once [`Pushed::sent`] says it is in the queue.
    /// A sender that waits for room counts in the depth (and the mark) as
    /// it waits.
    pub fn push(&self) -> Pushed<'_> {
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        self.raise(messages(depth));
        Pushed {
            gauge: self,
            sent: false,
            raise_when_sent: false,
        }
    }

    /// A message is offered without waiting (a `try_send`): counted like
    /// [`QueueGauge::push`], but the high-water mark rises only once it is
    /// in the queue, so an offer refused as full leaves no mark.
    pub fn try_push(&self) -> Pushed<'_> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        Pushed {
            gauge: self,
            sent: false,
            raise_when_sent: true,
        }
    }

    /// Raises the high-water mark to `depth` messages if it is lower.
    fn raise(&self, depth: u64) {
        // A load first: the mark is rarely raised, and a plain load keeps
        // the line shared where an unconditional read-modify-write would not.
        if self.high_water.load(Ordering::Relaxed) < depth {
            self.high_water.fetch_max(depth, Ordering::Relaxed);
        }
    }

    /// A message was taken out of the queue.
    pub fn popped(&self) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// The depth now and the high-water mark.
    pub fn read(&self) -> QueueDepth {
        let depth_messages = messages(self.depth.load(Ordering::Relaxed));
        QueueDepth {
            depth_messages,
            high_water_messages: self.high_water.load(Ordering::Relaxed).max(depth_messages),
        }
    }
}

/// A signed count as messages: never below zero.
fn messages(depth: i64) -> u64 {
    u64::try_from(depth).unwrap_or(0)
}

/// A message counted in a queue's depth while its send is under way.
#[must_use = "dropping it takes the message back out of the count"]
pub struct Pushed<'a> {
    gauge: &'a QueueGauge,
    sent: bool,
    /// From [`QueueGauge::try_push`]: the mark rises when it is sent.
    raise_when_sent: bool,
}

impl Pushed<'_> {
    /// The message is in the queue: the shard takes it out of the count.
    pub fn sent(mut self) {
        self.sent = true;
        if self.raise_when_sent {
            let gauge = self.gauge;
            gauge.raise(messages(gauge.depth.load(Ordering::Relaxed)));
        }
    }
}

impl Drop for Pushed<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.gauge.popped();
        }
    }
}

/// The gauges of the queues into one shard.
#[derive(Debug)]
pub struct ShardQueueGauges {
    /// Requests from threads outside the engine (`Client`).
    pub foreign: QueueGauge,
    /// Started syncs of remote handles (the sync lane).
    pub syncs: QueueGauge,
    /// Requests from each other shard, indexed by the sending shard (the
    /// entry at this shard's own index stays zero).
    pub peers: Vec<QueueGauge>,
}

impl ShardQueueGauges {
    /// The gauges of one shard of `shard_count`.
    pub fn new(shard_count: usize) -> ShardQueueGauges {
        ShardQueueGauges {
            foreign: QueueGauge::default(),
            syncs: QueueGauge::default(),
            peers: (0..shard_count).map(|_| QueueGauge::default()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gauge_has_a_cache_line_of_its_own() {
        assert_eq!(std::mem::align_of::<QueueGauge>(), 64);
        let gauges = ShardQueueGauges::new(2);
        let foreign = &gauges.foreign as *const QueueGauge as usize;
        let syncs = &gauges.syncs as *const QueueGauge as usize;
        assert!(foreign.abs_diff(syncs) >= 64);
    }

    #[test]
    fn the_high_water_mark_stays_after_the_queue_drains() {
        let gauge = QueueGauge::default();
        gauge.push().sent();
        gauge.push().sent();
        gauge.popped();
        gauge.push().sent();
        gauge.popped();
        gauge.popped();
        assert_eq!(
            gauge.read(),
            QueueDepth {
                depth_messages: 0,
                high_water_messages: 2
            }
        );
    }

    #[test]
    fn an_offer_refused_as_full_leaves_no_mark() {
        let gauge = QueueGauge::default();
        {
            let _refused = gauge.try_push();
            assert_eq!(gauge.read().depth_messages, 1);
        }
        assert_eq!(gauge.read(), QueueDepth::default());
        gauge.try_push().sent();
        assert_eq!(gauge.read().high_water_messages, 1);
    }

    #[test]
    fn a_send_that_fails_or_is_dropped_counts_only_while_it_waits() {
        let gauge = QueueGauge::default();
        {
            let _waiting = gauge.push();
            assert_eq!(gauge.read().depth_messages, 1);
        }
        assert_eq!(
            gauge.read(),
            QueueDepth {
                depth_messages: 0,
                high_water_messages: 1
            }
        );
    }
}
