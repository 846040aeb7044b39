//! What one shard's store has counted, copied out: plain owned data that can
//! leave the shard's thread (`Send`), taken without stopping anything.

use hdrhistogram::Histogram;

use super::kind::{ErrorClass, OpKind};

/// The counters of one operation kind since the store started.
///
/// An operation is counted when it ends: in `count` (and its latency in
/// `latency_us`) whether it succeeded or failed, in `errors` when it
/// failed, in `cancelled` (and nowhere else) when its caller dropped it
/// first. `bytes` counts the bytes of successful reads and writes only.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// The kind counted.
    pub kind: OpKind,
    /// Operations that ended, successfully or not.
    pub count: u64,
    /// Bytes read or written by the successful ones.
    pub bytes: u64,
    /// Failed operations by error class, indexed by [`ErrorClass::index`].
    pub errors: [u64; ErrorClass::ALL.len()],
    /// Operations whose caller dropped them before they ended.
    pub cancelled: u64,
    /// The sum of their latencies, in microseconds.
    pub latency_sum_us: u64,
    /// Their latencies, in microseconds (`stats::latency` has the bounds);
    /// `latency_us.len() == count`.
    pub latency_us: Histogram<u64>,
}

impl OpStats {
    /// Failed operations of `class`.
    pub fn errors_of(&self, class: ErrorClass) -> u64 {
        self.errors[class.index()]
    }

    /// Failed operations of every class.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// A copy of one shard store's statistics.
#[derive(Clone, Debug)]
pub struct StoreSnapshot {
    /// One entry per operation kind, in the order of [`OpKind::ALL`].
    pub ops: Vec<OpStats>,
    /// Operations running on the shard now, whose callers wait for them
    /// (the commit of a dropped write that finishes on its own is not).
    pub ops_in_flight: u64,
    /// Open blobs on the shard, each holding its file: live handles, and
    /// blobs whose last handle went while the work they started lands.
    pub open_blobs: u64,
    /// Space reserved ahead of appends (`preallocate_bytes`) past the
    /// logical ends of the open blobs, in bytes. Two gaps: after a resize
    /// that extends a blob to inside its reserved region the blob counts 0
    /// (until an append reserves again), and slack a blob already had past
    /// its end when it was opened is not counted.
    pub reserved_past_end_bytes: u64,
    /// Writes that waited for a blob's RMW lock and went to the device in
    /// the write of the one that held it (appends at depth > 1), since the
    /// shard started. Each is also counted as a write of its own.
    pub writes_joined: u64,
}

impl StoreSnapshot {
    /// The counters of `kind`.
    pub fn op(&self, kind: OpKind) -> &OpStats {
        &self.ops[kind.index()]
    }
}
