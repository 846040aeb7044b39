//! The engine's own view of a case, printed beside the harness's: what the
//! owning shard's store counted during the case (operations and p99 per
//! kind, from `Engine::stats` taken before and after it). The store times
//! an operation from its call on the owning shard to its result, so the
//! gap to the harness's latency is what the path adds (queues, hops,
//! wake-ups); its counts include warm-up and background operations, which
//! the harness does not measure. Gathered outside the measured window.

use shardblob::stats::{OpKind, OpStats};
use shardblob::EngineStats;

use crate::result::Summary;

/// One line: the store's operations and p99 per kind on `shard` between
/// `before` and `after`, then the harness's.
pub fn note(before: &EngineStats, after: &EngineStats, shard: usize, summary: &Summary) -> String {
    let kinds: Vec<String> = OpKind::ALL
        .iter()
        .filter_map(|&kind| {
            let during = during(before.op(shard, kind)?, after.op(shard, kind)?)?;
            let p99_us = during.1.value_at_quantile(0.99);
            Some(format!("{} {} ops p99 {p99_us} µs", kind.name(), during.0))
        })
        .collect();
    format!(
        "engine-side view, shard {shard}: {} | harness: {} ops p99 {:.0} µs",
        match kinds.is_empty() {
            true => "no operation".to_string(),
            false => kinds.join(", "),
        },
        summary.samples,
        summary.p99_us
    )
}

/// The operations of one kind between two snapshots and their latencies;
/// `None` if there were none.
fn during(before: &OpStats, after: &OpStats) -> Option<(u64, hdrhistogram::Histogram<u64>)> {
    let count = after.count.checked_sub(before.count).filter(|&n| n > 0)?;
    let mut latency_us = after.latency_us.clone();
    latency_us.subtract(&before.latency_us).ok()?;
    Some((count, latency_us))
}
