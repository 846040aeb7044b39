//! The `[io_scheduler]` block of the configuration: the bounds of each
//! shard's I/O scheduler, [`SchedConfig`] itself. The rules, the trade-off
//! they make and how to calibrate them for a device are in
//! `shardblob_shards::sched`; the defaults suit the 2-core dev VM (see
//! `configs/default.toml`). This module holds the bounds the configuration
//! accepts for them.

use std::path::Path;
use std::rc::Rc;

use shardblob_shards::fs::BLOCK_SIZE;
use shardblob_shards::sched::{max_io_bytes, IoScheduler, SchedConfig, PIECE_BYTES_MAX};
use shardblob_shards::Error;

use crate::config::{within, RING_DEPTH_MAX};

/// Largest `io_scheduler.depth_max`, in device calls: the kernel's limit on
/// io_uring entries; more calls than a ring holds are never at the device.
pub const IO_SCHEDULER_DEPTH_MAX: u32 = RING_DEPTH_MAX as u32;

/// Largest `io_scheduler.throughput_bytes_max`: 1 GiB of bulk work in
/// flight per shard is more than any device queue holds; larger bounds
/// nothing.
pub const IO_SCHEDULER_THROUGHPUT_BYTES_MAX: u64 = 1 << 30;

/// Largest `io_scheduler.throughput_every`, in dispatches: one in 1024
/// still leaves bulk work a share under any latency load; a larger value
/// all but turns the starvation guard off.
pub const IO_SCHEDULER_THROUGHPUT_EVERY_MAX: u32 = 1024;

/// Largest `io_scheduler.queue_max`, in calls of one class: each waiting
/// call is a task of its shard, as for `inflight_per_shard_max`.
pub const IO_SCHEDULER_QUEUE_MAX: u32 = 1 << 20;

/// Checks the `[io_scheduler]` block; the error names the field as
/// `io_scheduler.<field>`.
pub(crate) fn check(config: &SchedConfig) -> Result<(), Error> {
    let depth = config.depth_max as u64;
    within(
        "io_scheduler.depth_max",
        depth,
        1..=IO_SCHEDULER_DEPTH_MAX as u64,
        "about the depth at which the device's 4 KiB random reads stop scaling; 64 is the default",
    )?;
    within(
        "io_scheduler.throughput_ops_max",
        config.throughput_ops_max as u64,
        1..=depth,
        "throughput calls in flight are part of depth_max; 1 is the default",
    )?;
    within(
        "io_scheduler.piece_bytes",
        config.piece_bytes as u64,
        BLOCK_SIZE..=PIECE_BYTES_MAX as u64,
        "131072 (128 KiB) is the default",
    )?;
    if !(config.piece_bytes as u64).is_multiple_of(BLOCK_SIZE) {
        return Err(Error::ConfigValue {
            field: "io_scheduler.piece_bytes",
            reason: format!(
                "io_scheduler.piece_bytes = {} is not a multiple of {BLOCK_SIZE}",
                config.piece_bytes
            ),
        });
    }
    within(
        "io_scheduler.throughput_bytes_max",
        config.throughput_bytes_max,
        config.piece_bytes as u64..=IO_SCHEDULER_THROUGHPUT_BYTES_MAX,
        "at least piece_bytes, so a piece always fits; 131072 (128 KiB) is the default",
    )?;
    within(
        "io_scheduler.throughput_ops_max_alone",
        config.throughput_ops_max_alone as u64,
        1..=depth,
        "calls of bulk work alone are part of depth_max (below throughput_ops_max it counts as that); 8 is the default",
    )?;
    within(
        "io_scheduler.throughput_bytes_max_alone",
        config.throughput_bytes_max_alone,
        config.piece_bytes as u64..=IO_SCHEDULER_THROUGHPUT_BYTES_MAX,
        "at least piece_bytes (below throughput_bytes_max it counts as that); 1048576 (1 MiB) is the default",
    )?;
    within(
        "io_scheduler.alone_after_ops",
        config.alone_after_ops as u64,
        1..=u32::MAX as u64,
        "throughput dispatches in a row with no latency call before bulk work counts as alone; 16 is the default",
    )?;
    within(
        "io_scheduler.throughput_every",
        config.throughput_every as u64,
        1..=IO_SCHEDULER_THROUGHPUT_EVERY_MAX as u64,
        "when both classes wait, bulk work gets at least one dispatch in this many (1: every one it fits); 4 is the default",
    )?;
    within(
        "io_scheduler.queue_max",
        config.queue_max as u64,
        1..=IO_SCHEDULER_QUEUE_MAX as u64,
        "0 would queue no call; 1024 is the default",
    )
}

/// A shard's scheduler with these bounds, its pieces cut to what the
/// device holding `data_dir` takes in one request.
pub(crate) fn scheduler_for(
    config: &SchedConfig,
    shard: usize,
    data_dir: &Path,
) -> Rc<IoScheduler> {
    let device_max = max_io_bytes(data_dir);
    let fitted = config.for_device(device_max);
    match device_max {
        Some(bytes) if fitted.piece_bytes < config.piece_bytes => tracing::info!(
            shard,
            max_io_bytes = bytes,
            piece_bytes = fitted.piece_bytes,
            "I/O pieces cut to the device's max_sectors_kb"
        ),
        Some(bytes) => tracing::info!(
            shard,
            max_io_bytes = bytes,
            piece_bytes = fitted.piece_bytes,
            "I/O pieces as configured: the device takes them whole"
        ),
        None => tracing::info!(
            shard,
            piece_bytes = config.piece_bytes,
            "no block device limit in sysfs (tmpfs, overlay, simulated disk): I/O pieces as configured"
        ),
    }
    IoScheduler::new(fitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_TOML};

    #[test]
    fn the_default_file_lists_every_field_with_the_defaults() {
        let file: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        let block = file["io_scheduler"]
            .as_table()
            .expect("an [io_scheduler] table");
        assert_eq!(block.len(), 9, "every field is listed: {block:?}");
        assert_eq!(Config::default().io_scheduler, SchedConfig::default());
        assert!(check(&SchedConfig::default()).is_ok());
        assert_eq!(SchedConfig::default().check(), Ok(()));
    }

    /// `[io_scheduler]` lines, the field refused and a part of the message.
    const REFUSED: &[(&str, &str, &str)] = &[
        ("depth_max = 0", "depth_max", "= 0 is outside 1..=32768"),
        ("depth_max = 32769", "depth_max", "= 32769 is outside"),
        (
            "throughput_ops_max = 0",
            "throughput_ops_max",
            "outside 1..=64",
        ),
        (
            "throughput_ops_max = 65",
            "throughput_ops_max",
            "= 65 is outside 1..=64",
        ),
        (
            "throughput_bytes_max = 4096",
            "throughput_bytes_max",
            "outside 131072..=",
        ),
        (
            "throughput_bytes_max = 1073745920",
            "throughput_bytes_max",
            "..=1073741824",
        ),
        (
            "throughput_ops_max_alone = 65",
            "throughput_ops_max_alone",
            "= 65 is outside 1..=64",
        ),
        (
            "throughput_bytes_max_alone = 4096",
            "throughput_bytes_max_alone",
            "outside 131072..=",
        ),
        (
            "alone_after_ops = 0",
            "alone_after_ops",
            "= 0 is outside 1..=",
        ),
        (
            "throughput_every = 0",
            "throughput_every",
            "= 0 is outside 1..=1024",
        ),
        (
            "throughput_every = 4294967295",
            "throughput_every",
            "= 4294967295",
        ),
        ("queue_max = 0", "queue_max", "= 0 is outside 1..=1048576"),
        (
            "queue_max = 4294967295",
            "queue_max",
            "= 4294967295 is outside",
        ),
        (
            "piece_bytes = 0",
            "piece_bytes",
            "= 0 is outside 4096..=1048576",
        ),
        (
            "piece_bytes = 6000",
            "piece_bytes",
            "= 6000 is not a multiple of 4096",
        ),
        (
            "piece_bytes = 2097152",
            "piece_bytes",
            "= 2097152 is outside",
        ),
    ];

    #[test]
    fn bounds_that_cannot_work_are_refused_by_field() {
        for &(line, field, expected) in REFUSED {
            let config = Config::from_toml_str(&format!("[io_scheduler]\n{line}")).unwrap();
            let error = config.check_values().unwrap_err();
            let named = format!("io_scheduler.{field}");
            assert!(
                matches!(&error, Error::ConfigValue { field: f, .. } if *f == named),
                "{line}: {error:?}"
            );
            assert!(error.to_string().contains(expected), "{line}: {error}");
        }
        let unknown = Config::from_toml_str("[io_scheduler]\ndepth = 4").unwrap_err();
        assert!(unknown.to_string().contains("depth"), "{unknown}");
    }

    #[test]
    fn the_largest_bounds_are_accepted() {
        let text = "[io_scheduler]\ndepth_max = 32768\nthroughput_ops_max = 32768\n\
            throughput_bytes_max = 1073741824\nthroughput_every = 1024\n\
            queue_max = 1048576\npiece_bytes = 4096";
        assert!(Config::from_toml_str(text).unwrap().check_values().is_ok());
    }
}
