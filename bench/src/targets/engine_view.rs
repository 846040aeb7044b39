//! The engine's own view of a case, printed beside the harness's: what the
//! owning shard's store counted during the case (operations and p99 per
//! kind, from `Engine::stats` taken before and after it). The store times
//! an operation from its call on the owning shard to its result, so the
//! gap to the harness's latency is what the path adds (queues, hops,
//! wake-ups); its counts include warm-up and background operations, which
//! the harness does not measure. Gathered outside the measured window.

use shardblob::stats::{OpKind, OpStats};
use shardblob::EngineStats;

use crate::result::{Outcome, Summary};

/// Adds the engine's view of a measured `outcome` (see [`note`]) to its
/// notes, which the report shows under the case's table and keeps in its
/// JSON (with repeats, the first repeat's); returns it, `None` for an
/// outcome not measured.
pub fn add_note(
    before: &EngineStats,
    after: &EngineStats,
    shard: usize,
    outcome: &mut Outcome,
) -> Option<String> {
    let Outcome::Measured(summary) = outcome else {
        return None;
    };
    let view = note(before, after, shard, summary);
    summary.notes.push(view.clone());
    Some(view)
}

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

#[cfg(test)]
mod tests {
    use shardblob::stats::QueueDepth;
    use shardblob::ShardStats;
    use shardblob_shards::stats::StoreStats;

    use super::*;

    /// One shard whose store counted `reads` reads of `read_us` each.
    fn stats(reads: u64, read_us: u64) -> EngineStats {
        let mut store = StoreStats::default().snapshot();
        add_reads(&mut store.ops[OpKind::Read.index()], reads, read_us);
        let shard = ShardStats {
            shard: 0,
            store,
            forwarded_in_flight: 0,
            foreign_queue: QueueDepth::default(),
            sync_queue: QueueDepth::default(),
            peer_queues: Vec::new(),
        };
        EngineStats {
            shards: vec![shard],
        }
    }

    fn add_reads(read: &mut OpStats, reads: u64, read_us: u64) {
        read.latency_us.record_n(read_us, reads).unwrap();
        read.count += reads;
    }

    #[test]
    fn the_note_shows_only_what_the_case_added() {
        let before = stats(10, 5000);
        let mut after = stats(10, 5000);
        add_reads(
            &mut after.shards[0].store.ops[OpKind::Read.index()],
            100,
            80,
        );
        let summary = crate::report::fixture::summary(1000.0, 90.0);
        let during = note(&before, &after, 0, &summary);
        let expected =
            "engine-side view, shard 0: read 100 ops p99 80 µs | harness: 22000 ops p99 90 µs";
        assert_eq!(during, expected);
        let idle = note(&before, &before, 0, &summary);
        assert!(idle.contains("shard 0: no operation |"), "{idle}");
    }

    #[test]
    fn a_measured_row_keeps_the_view_as_a_note() {
        let (before, after) = (stats(0, 0), stats(4, 80));
        let summary = crate::report::fixture::summary(1000.0, 90.0);
        let mut measured = Outcome::Measured(Box::new(summary));
        let view = add_note(&before, &after, 0, &mut measured).expect("measured");
        assert!(view.contains("read 4 ops"), "{view}");
        assert_eq!(
            measured.summary().map(|s| s.notes.clone()),
            Some(vec![view])
        );
        let mut failed = Outcome::Failed {
            error: "no disk".into(),
        };
        assert_eq!(add_note(&before, &after, 0, &mut failed), None);
    }
}
