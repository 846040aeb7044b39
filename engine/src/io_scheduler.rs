//! The `[io_scheduler]` block of the configuration: the bounds of each
//! shard's I/O scheduler. The rules, the trade-off they make and how to
//! calibrate them for a device are in `shardblob_shards::sched`; the
//! defaults suit the 2-core dev VM (see `configs/default.toml`).

use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use shardblob_shards::sched::{max_io_bytes, IoScheduler, SchedConfig};

/// The bounds of each shard's I/O scheduler; `[io_scheduler]` in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IoSchedulerConfig {
    /// Device calls of one shard in flight, all classes together.
    pub depth_max: u32,
    /// Throughput-class device calls of one shard in flight.
    pub throughput_ops_max: u32,
    /// Throughput-class bytes of one shard in flight.
    pub throughput_bytes_max: u64,
    /// When both classes wait, at least one dispatch in this many goes to
    /// the throughput class.
    pub throughput_every: u32,
    /// Calls of one class waiting in a shard's scheduler queue.
    pub queue_max: u32,
    /// Largest single device read or write; cut to the device's
    /// `max_sectors_kb` at startup.
    pub piece_bytes: usize,
}

impl Default for IoSchedulerConfig {
    fn default() -> IoSchedulerConfig {
        let SchedConfig {
            depth_max,
            throughput_ops_max,
            throughput_bytes_max,
            throughput_every,
            queue_max,
            piece_bytes,
        } = SchedConfig::default();
        IoSchedulerConfig {
            depth_max,
            throughput_ops_max,
            throughput_bytes_max,
            throughput_every,
            queue_max,
            piece_bytes,
        }
    }
}

impl From<IoSchedulerConfig> for SchedConfig {
    fn from(config: IoSchedulerConfig) -> SchedConfig {
        SchedConfig {
            depth_max: config.depth_max,
            throughput_ops_max: config.throughput_ops_max,
            throughput_bytes_max: config.throughput_bytes_max,
            throughput_every: config.throughput_every,
            queue_max: config.queue_max,
            piece_bytes: config.piece_bytes,
        }
    }
}

impl IoSchedulerConfig {
    /// Why these bounds cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        SchedConfig::from(*self)
            .check()
            .map_err(|reason| format!("[io_scheduler] {reason}"))
    }

    /// A shard's scheduler with these bounds, its pieces cut to what the
    /// device holding `data_dir` takes in one request (logged for `shard`).
    pub(crate) fn scheduler_for(&self, shard: usize, data_dir: &Path) -> Rc<IoScheduler> {
        let device_max = max_io_bytes(data_dir);
        match device_max {
            Some(bytes) => tracing::info!(
                shard,
                max_io_bytes = bytes,
                "I/O pieces cut to the device's max_sectors_kb"
            ),
            None => tracing::info!(
                shard,
                piece_bytes = self.piece_bytes,
                "no block device limit in sysfs (tmpfs, overlay, simulated disk): I/O pieces as configured"
            ),
        }
        IoScheduler::new(SchedConfig::from(*self).for_device(device_max))
    }
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
        assert_eq!(block.len(), 6, "every field is listed: {block:?}");
        assert_eq!(Config::default().io_scheduler, IoSchedulerConfig::default());
        assert_eq!(IoSchedulerConfig::default().check(), Ok(()));
    }

    #[test]
    fn bounds_that_cannot_work_are_refused_by_name() {
        let text = "[io_scheduler]\nthroughput_bytes_max = 4096";
        let config = Config::from_toml_str(text).unwrap();
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("[io_scheduler]"), "{refused}");
        assert!(refused.contains("piece_bytes"), "{refused}");
        let unknown = Config::from_toml_str("[io_scheduler]\ndepth = 4").unwrap_err();
        assert!(unknown.to_string().contains("depth"), "{unknown}");
    }
}
