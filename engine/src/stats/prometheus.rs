//! The Prometheus text exposition format (version 0.0.4) of
//! [`EngineStats`], one series per shard (`shard="N"` label).
//!
//! Own code rather than the `prometheus-client` crate: that crate could
//! encode these snapshots (a `Collector` writing through its
//! `DescriptorEncoder` on each scrape), but the text format needs little
//! (`# HELP`/`# TYPE` once per family, then one line per series) and a
//! renderer of about two hundred lines costs no dependency tree in every
//! build of the engine. Every label value here is a number or a fixed name,
//! so nothing needs escaping.
//!
//! Latencies are histograms since the engine started, in seconds: the
//! cumulative counts of operations at or below each bound of
//! [`LATENCY_BUCKETS_US`] (10 µs to 10 s in 1-2-5 steps), `+Inf`, `_sum` and
//! `_count`, so a scraper can take their `rate()` and add them across shards
//! (`histogram_quantile` over `sum by (le)`). The counts come from each
//! shard's HdrHistogram, which keeps two significant digits: an operation
//! within 1% above a bound may count in that bound's bucket. A max gauge
//! beside them gives the slowest operation, which buckets cannot.

use std::fmt::{Display, Write};

use super::{EngineStats, ErrorClass, OpStats, QueueDepth, ShardStats};

/// The upper bounds (`le`) of the latency histograms' buckets, in
/// microseconds: 10 µs to 10 s in 1-2-5 steps, then `+Inf`.
pub const LATENCY_BUCKETS_US: [u64; 19] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
    500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A counter of one operation kind: metric name, help, value.
type OpFamily = (&'static str, &'static str, fn(&OpStats) -> u64);

const OP_COUNTERS: [OpFamily; 3] = [
    (
        "shardblob_ops_total",
        "Operations that ended on the owning shard, successfully or not, by kind.",
        |op| op.count,
    ),
    (
        "shardblob_op_bytes_total",
        "Bytes read or written by successful operations, by kind.",
        |op| op.bytes,
    ),
    (
        "shardblob_ops_cancelled_total",
        "Operations whose caller dropped them before they ended, by kind.",
        |op| op.cancelled,
    ),
];

/// A gauge of one shard: metric name, help, value.
type ShardFamily = (&'static str, &'static str, fn(&ShardStats) -> u64);

const SHARD_GAUGES: [ShardFamily; 4] = [
    (
        "shardblob_ops_in_flight",
        "Operations running in the shard's store now.",
        |shard| shard.store.ops_in_flight,
    ),
    (
        "shardblob_forwarded_requests_in_flight",
        "Requests from other threads and shards being served now.",
        |shard| shard.forwarded_in_flight,
    ),
    (
        "shardblob_open_blobs",
        "Open blobs on the shard.",
        |shard| shard.store.open_blobs,
    ),
    (
        "shardblob_reserved_past_end_bytes",
        "Space reserved ahead of appends past the open blobs' logical ends.",
        |shard| shard.store.reserved_past_end_bytes,
    ),
];

const SHARD_COUNTERS: [ShardFamily; 1] = [(
    "shardblob_writes_joined_total",
    "Writes that went to the device in the write of the one ahead of them.",
    |shard| shard.store.writes_joined,
)];

/// A gauge of one queue: metric name, help, value.
type QueueFamily = (&'static str, &'static str, fn(&QueueDepth) -> u64);

const QUEUE_GAUGES: [QueueFamily; 2] = [
    (
        "shardblob_queue_depth_messages",
        "Messages waiting in a queue into the shard.",
        |queue| queue.depth_messages,
    ),
    (
        "shardblob_queue_high_water_messages",
        "The most messages a queue into the shard held at once.",
        |queue| queue.high_water_messages,
    ),
];

impl EngineStats {
    /// The statistics in the Prometheus text exposition format, each series
    /// labelled with its `shard` (and `op`, `class`, `queue`, `peer`).
    pub fn prometheus_text(&self) -> String {
        let mut text = Text::default();
        for (name, help, value) in OP_COUNTERS {
            text.family(name, "counter", help);
            for (shard, op) in self.ops() {
                text.sample(name, &op_labels(shard, op), value(op));
            }
        }
        self.errors(&mut text);
        self.latencies(&mut text);
        for (families, kind) in [(&SHARD_GAUGES[..], "gauge"), (&SHARD_COUNTERS, "counter")] {
            for (name, help, value) in families {
                text.family(name, kind, help);
                for shard in &self.shards {
                    text.sample(name, &format!("shard=\"{}\"", shard.shard), value(shard));
                }
            }
        }
        for (name, help, value) in QUEUE_GAUGES {
            text.family(name, "gauge", help);
            for (labels, queue) in self.queues() {
                text.sample(name, &labels, value(queue));
            }
        }
        text.out
    }

    /// Every shard's counters of every kind.
    fn ops(&self) -> impl Iterator<Item = (usize, &OpStats)> {
        let shards = self.shards.iter();
        shards.flat_map(|shard| shard.store.ops.iter().map(move |op| (shard.shard, op)))
    }

    /// Every queue of every shard, with its labels.
    fn queues(&self) -> impl Iterator<Item = (String, &QueueDepth)> {
        self.shards.iter().flat_map(|shard| {
            let own = |queue: &str| format!("shard=\"{}\",queue=\"{queue}\"", shard.shard);
            let peers = shard.peer_queues.iter().map(move |(peer, depth)| {
                let labels = format!("shard=\"{}\",queue=\"peer\",peer=\"{peer}\"", shard.shard);
                (labels, depth)
            });
            [
                (own("foreign"), &shard.foreign_queue),
                (own("sync"), &shard.sync_queue),
            ]
            .into_iter()
            .chain(peers)
        })
    }

    fn errors(&self, text: &mut Text) {
        let name = "shardblob_op_errors_total";
        let help = "Failed operations by kind and error class (io, no_space, corrupt and poisoned need an operator).";
        text.family(name, "counter", help);
        for (shard, op) in self.ops() {
            for class in ErrorClass::ALL {
                let labels = format!("{},class=\"{}\"", op_labels(shard, op), class.name());
                text.sample(name, &labels, op.errors_of(class));
            }
        }
    }

    fn latencies(&self, text: &mut Text) {
        let name = "shardblob_op_latency_seconds";
        let help = "Time the owning shard's store spent on an operation, by kind, since start.";
        text.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (shard, op) in self.ops() {
            let labels = op_labels(shard, op);
            for le_us in LATENCY_BUCKETS_US {
                let le = seconds(le_us);
                let at_most = op.latency_us.count_between(0, le_us);
                text.sample(&bucket, &format!("{labels},le=\"{le}\""), at_most);
            }
            text.sample(&bucket, &format!("{labels},le=\"+Inf\""), op.count);
            text.sample(&format!("{name}_sum"), &labels, seconds(op.latency_sum_us));
            text.sample(&format!("{name}_count"), &labels, op.count);
        }
        let max_name = "shardblob_op_latency_max_seconds";
        let help = "The slowest operation of each kind since start.";
        text.family(max_name, "gauge", help);
        for (shard, op) in self.ops() {
            let max = measured_seconds(op, op.latency_us.max());
            text.sample(max_name, &op_labels(shard, op), max);
        }
    }
}

fn op_labels(shard: usize, op: &OpStats) -> String {
    format!("shard=\"{shard}\",op=\"{}\"", op.kind.name())
}

/// Microseconds in seconds.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// A latency of `op` in seconds, `NaN` while none was measured.
fn measured_seconds(op: &OpStats, us: u64) -> f64 {
    match op.count {
        0 => f64::NAN,
        _ => seconds(us),
    }
}

/// The text being written.
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use shardblob_shards::stats::StoreStats;

    use super::super::OpKind;
    use super::*;

    fn shard(index: usize) -> ShardStats {
        let mut store = StoreStats::default().snapshot();
        let read = &mut store.ops[OpKind::Read.index()];
        read.count = 2;
        read.latency_sum_us = 300;
        read.latency_us.record(100).unwrap();
        read.latency_us.record(200).unwrap();
        ShardStats {
            shard: index,
            store,
            forwarded_in_flight: 0,
            foreign_queue: QueueDepth::default(),
            sync_queue: QueueDepth::default(),
            peer_queues: vec![(1 - index, QueueDepth::default())],
        }
    }

    /// The value of the series `series` (name and labels) in `text`.
    fn value_of(text: &str, series: &str) -> String {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{series} ")));
        let line = line.unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit_once(' ').unwrap().1.to_string()
    }

    #[test]
    fn latency_buckets_are_cumulative_and_end_with_the_count() {
        let text = EngineStats {
            shards: vec![shard(0)],
        }
        .prometheus_text();
        let bucket = |le: &str| {
            let series = format!(
                "shardblob_op_latency_seconds_bucket{{shard=\"0\",op=\"read\",le=\"{le}\"}}"
            );
            value_of(&text, &series)
        };
        // The reads took 100 µs and 200 µs.
        assert_eq!(bucket("0.00005"), "0");
        assert_eq!(bucket("0.0001"), "1");
        assert_eq!(bucket("0.0002"), "2");
        assert_eq!(bucket("10"), "2");
        assert_eq!(bucket("+Inf"), "2");
        let count = "shardblob_op_latency_seconds_count{shard=\"0\",op=\"read\"}";
        assert_eq!(value_of(&text, count), "2");
        let buckets = text
            .lines()
            .filter(|l| {
                l.starts_with("shardblob_op_latency_seconds_bucket{shard=\"0\",op=\"read\"")
            })
            .count();
        assert_eq!(buckets, LATENCY_BUCKETS_US.len() + 1);
    }

    #[test]
    fn each_family_is_typed_once_and_each_series_has_its_shard() {
        let stats = EngineStats {
            shards: vec![shard(0), shard(1)],
        };
        let text = stats.prometheus_text();
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_string()), "{name} typed twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
            assert!(series.contains("{shard=\""), "{line}");
        }
        assert!(text.contains("shardblob_ops_total{shard=\"1\",op=\"read\"} 2\n"));
        assert!(text.contains("shardblob_op_latency_seconds_sum{shard=\"0\",op=\"read\"} 0.0003\n"));
        assert!(text.contains("# TYPE shardblob_op_latency_seconds histogram\n"));
        assert!(text.contains("shardblob_op_latency_max_seconds{shard=\"0\",op=\"write\"} NaN\n"));
        assert!(text.contains(
            "shardblob_queue_high_water_messages{shard=\"0\",queue=\"peer\",peer=\"1\"} 0\n"
        ));
    }
}
