//! Per-shard statistics of a running engine: what each shard's store
//! counted (operations, bytes, errors and latencies by kind, operations in
//! flight, open blobs, space reserved past the blobs' ends) and the depths
//! of the queues into it.
//!
//! Each shard records its own store's statistics on its own thread, without
//! locks (`shardblob_shards::stats`); the queues' depths are counted where
//! the messages cross threads (`queue.rs`). [`Client::stats`] and
//! [`Engine::stats`] ask every shard for a snapshot, as `on_all_shards`
//! runs a task on each, and return plain owned data; a dropped call leaves
//! nothing behind (each shard's answer goes to a reply nobody reads).
//! [`EngineStats::prometheus_text`] renders them for a scraper.
//!
//! [`Client::stats`]: crate::Client::stats
//! [`Engine::stats`]: crate::Engine::stats

mod prometheus;
pub(crate) mod queue;

pub use prometheus::LATENCY_BUCKETS_US;
pub use queue::QueueDepth;
pub use shardblob_shards::stats::{
    ErrorClass, OpKind, OpStats, StoreSnapshot, LATENCY_HISTOGRAM_BYTES, LATENCY_MAX_US,
    LATENCY_SIGNIFICANT_DIGITS,
};

/// What one shard reported.
#[derive(Clone, Debug)]
pub struct ShardStats {
    /// The shard's index.
    pub shard: usize,
    /// Its store: every operation that reached its blobs, whichever path
    /// it came by (same shard, another shard, a foreign thread).
    pub store: StoreSnapshot,
    /// Requests from other threads and shards being served now (each holds
    /// one of the shard's `inflight_per_shard_max` permits; the request
    /// that gathers these statistics may count itself).
    pub forwarded_in_flight: u64,
    /// The queue of requests from threads outside the engine (`Client`),
    /// both I/O classes together.
    pub foreign_queue: QueueDepth,
    /// The sync lane: started syncs of handles held by other threads.
    pub sync_queue: QueueDepth,
    /// The queue from each other shard, both I/O classes together:
    /// `(sending shard, depth)`.
    pub peer_queues: Vec<(usize, QueueDepth)>,
}

/// What every shard reported, in shard order.
#[derive(Clone, Debug)]
pub struct EngineStats {
    /// One entry per shard; `shards[i].shard == i`.
    pub shards: Vec<ShardStats>,
}

impl EngineStats {
    /// The counters of `kind` on `shard`.
    pub fn op(&self, shard: usize, kind: OpKind) -> Option<&OpStats> {
        self.shards.get(shard).map(|stats| stats.store.op(kind))
    }
}
