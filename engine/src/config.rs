//! The engine's configuration: TOML through serde.
//!
//! `engine/configs/default.toml` (linked as `configs/default.toml`) is
//! compiled in and *is* the default, so the documented file and the
//! behaviour cannot drift apart, and
//! `Engine::start(Config::default())` needs no file. Every field is defaulted
//! and an unknown field is rejected with its name: a typo must not silently
//! leave a setting at its default.
//!
//! Parsing only checks shapes and types. [`Config::check_values`] holds
//! every numeric field to its bounds (the `*_MIN`/`*_MAX` constants here)
//! with an error that names the field, its value and the bounds;
//! [`Config::validate`] does that, then resolves the placement against this
//! machine into one CPU per shard; `ResolvedConfig::preflight` (in
//! `preflight.rs`) checks the environment.
//!
//! Besides TOML, a configuration can be written in code with
//! [`Config::builder`] (`config/builder.rs`), and `SHARDBLOB_<FIELD>`
//! environment variables can be laid over one with [`Config::overlay_env`]
//! (`config/env.rs`, which states the rules).

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shardblob_shards::sched::SchedConfig;
use shardblob_shards::Error;

use crate::placement::{first_per_core, format_cpu_list, spread_over_cores, Topology};

mod builder;
mod env;

pub use crate::io_scheduler::{
    IO_SCHEDULER_DEPTH_MAX, IO_SCHEDULER_QUEUE_MAX, IO_SCHEDULER_THROUGHPUT_BYTES_MAX,
    IO_SCHEDULER_THROUGHPUT_EVERY_MAX,
};
pub use builder::ConfigBuilder;
pub use env::ENV_PREFIX;

/// The text of `configs/default.toml`, the embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../configs/default.toml");

/// Largest `shards`: the kernel's largest CPU count (`NR_CPUS`), one shard
/// per CPU.
pub const SHARDS_MAX: usize = 8192;

/// Largest `spin_before_park_us`: 10 ms. Waking a parked shard costs tens
/// of microseconds; spinning far longer only burns the CPU after each burst.
pub const SPIN_BEFORE_PARK_US_MAX: u64 = 10_000;

/// Largest `io_memory_bytes`: the kernel refuses to register a buffer larger
/// than 1 GiB with io_uring.
pub const IO_MEMORY_BYTES_MAX: usize = 1 << 30;

/// Smallest `ring_depth`: glommio 0.9 panics at 1 (a link chain overflows
/// the submission queue) and, on the dev VM, hung in 4 runs of 5 at 2 with
/// a few hundred concurrent reads and writes. 8 leaves room for its linked
/// entries (timeouts, the link between its rings) with I/O in flight.
pub const RING_DEPTH_MIN: usize = 8;

/// Largest `ring_depth`: the kernel's limit on io_uring entries.
pub const RING_DEPTH_MAX: usize = 32768;

/// Largest `channel_capacity`: the queues are allocated up front, and more
/// slots than this only hold memory.
pub const CHANNEL_CAPACITY_MAX: usize = 1 << 20;

/// Largest `inflight_per_shard_max`: each in-flight request is a task of
/// its shard; far more than any queue delivers at once.
pub const INFLIGHT_PER_SHARD_MAX: usize = 1 << 20;

/// Largest `inflight_latency_reserved_percent`: all of the in-flight bound
/// (the throughput class still gets one permit).
pub const INFLIGHT_LATENCY_RESERVED_PERCENT_MAX: u32 = 100;

/// Largest `blocking_threads_per_shard`: each is an OS thread per shard.
pub const BLOCKING_THREADS_PER_SHARD_MAX: usize = 1024;

/// Largest `queue_bytes_per_shard_max`: 1 TiB. A budget beyond the
/// machine's memory bounds nothing.
pub const QUEUE_BYTES_PER_SHARD_MAX: u64 = 1 << 40;

/// Largest `shutdown_grace_ms`: one day. Far beyond any useful wait, and
/// small enough that a deadline computed from it never overflows.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Largest `preallocate_bytes`: 1 GiB.
pub const PREALLOCATE_BYTES_MAX: u64 = 1 << 30;

/// Engine configuration. See `configs/default.toml` for every field, its
/// default and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding the partitions and the LOCK file.
    pub data_dir: PathBuf,
    /// Number of shards; 0 = one per CPU of the placement.
    pub shards: usize,
    /// The CPUs the shards are pinned to.
    pub placement: Placement,
    /// Use one hardware thread per physical core of the placement.
    pub physical_cores_only: bool,
    /// Busy-poll this long before an idle shard sleeps; 0 = never spin.
    /// The spin starts with a yield of the CPU, at most one per 200 µs
    /// (glommio patch 2), except for a while after it found a thread
    /// computing on it.
    pub spin_before_park_us: u64,
    /// DMA buffer memory registered with io_uring, per shard.
    pub io_memory_bytes: usize,
    /// Entries of each io_uring ring.
    pub ring_depth: usize,
    /// Slots of each bounded cross-shard or foreign-thread queue.
    pub channel_capacity: usize,
    /// Forwarded requests one shard serves concurrently.
    pub inflight_per_shard_max: usize,
    /// The share of `inflight_per_shard_max`, in percent (rounded up),
    /// that only latency-class requests may take: throughput-class requests
    /// hold at most the rest, at least 1. See
    /// [`Config::inflight_throughput_per_shard_max`].
    pub inflight_latency_reserved_percent: u32,
    /// A sync with no other I/O of its shard in flight blocks the shard for
    /// its fdatasync instead of handing it to a helper thread.
    pub sync_inline_when_idle: bool,
    /// Helper threads per shard for blocking calls (handed-off syncs).
    pub blocking_threads_per_shard: usize,
    /// Bytes the queued and running forwarded requests of one shard and
    /// I/O class may hold (payloads, expected read replies, spawn jobs).
    pub queue_bytes_per_shard_max: u64,
    /// How long `Engine::shutdown` waits for running `spawn_on` tasks
    /// before it cancels them, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Accept a data_dir on a filesystem that keeps nothing across a
    /// reboot (tmpfs, ramfs): for tests and caches only.
    pub allow_volatile_data_dir: bool,
    /// Space a blob reserves ahead of its appends, in steps of this many
    /// bytes; 0 = none (every append allocates its own blocks).
    pub preallocate_bytes: u64,
    /// The bounds of each shard's I/O scheduler (`[io_scheduler]`).
    pub io_scheduler: SchedConfig,
}

/// Which CPUs the shards are pinned to. In TOML:
///
/// ```toml
/// placement = "all"                 # every online CPU this process may use
/// placement = { cpus = [0, 2, 4] }  # exactly these, shard i on the i-th
/// placement = { numa_node = 0 }     # the CPUs of one NUMA node
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Every online CPU in this process's affinity mask.
    All,
    /// Exactly these CPUs, in this order.
    Cpus(Vec<usize>),
    /// The CPUs of one NUMA node.
    NumaNode(usize),
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::All => write!(f, "placement = \"all\""),
            Placement::Cpus(cpus) => write!(f, "placement = {{ cpus = {cpus:?} }}"),
            Placement::NumaNode(node) => write!(f, "placement = {{ numa_node = {node} }}"),
        }
    }
}

/// A validated configuration with its placement resolved on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    /// The configuration it came from.
    pub config: Config,
    /// The CPU of each shard: shard `i` is pinned to `shard_cpus[i]`. Never
    /// empty, no CPU twice.
    pub shard_cpus: Vec<usize>,
}

impl ResolvedConfig {
    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shard_cpus.len()
    }
}

impl Default for Config {
    fn default() -> Config {
        toml::from_str::<DefaultFile>(DEFAULT_TOML)
            .map(Config::from)
            .expect("configs/default.toml is compiled in, lists every field and is parsed by a unit test")
    }
}

/// Calls `$then!` with every field of [`Config`] but `data_dir`, as
/// `name: type,`: the one list that the strict default file and the
/// builder's setters are made from.
macro_rules! config_fields {
    ($then:ident) => {
        $then! {
            shards: usize,
            placement: Placement,
            physical_cores_only: bool,
            spin_before_park_us: u64,
            io_memory_bytes: usize,
            ring_depth: usize,
            channel_capacity: usize,
            inflight_per_shard_max: usize,
            inflight_latency_reserved_percent: u32,
            sync_inline_when_idle: bool,
            blocking_threads_per_shard: usize,
            queue_bytes_per_shard_max: u64,
            shutdown_grace_ms: u64,
            allow_volatile_data_dir: bool,
            preallocate_bytes: u64,
            io_scheduler: SchedConfig,
        }
    };
}
use config_fields;

/// `DefaultFile`, `configs/default.toml` read strictly (every field
/// required), and its conversion to [`Config`]. `Config` itself cannot
/// parse it for `Default`, because `#[serde(default)]` calls
/// `Config::default()` first and would recurse.
macro_rules! default_file {
    ($($field:ident: $ty:ty,)*) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DefaultFile {
            data_dir: PathBuf,
            $($field: $ty,)*
        }

        impl From<DefaultFile> for Config {
            fn from(file: DefaultFile) -> Config {
                Config {
                    data_dir: file.data_dir,
                    $($field: file.$field,)*
                }
            }
        }
    };
}
config_fields!(default_file);

/// Checks that `value` of `field` lies in `range`; the error names the
/// field, the value and the range, then `advice`.
pub(crate) fn within(
    field: &'static str,
    value: u64,
    range: RangeInclusive<u64>,
    advice: &str,
) -> Result<(), Error> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Error::ConfigValue {
        field,
        reason: format!(
            "{field} = {value} is outside {}..={}; {advice}",
            range.start(),
            range.end()
        ),
    })
}

impl Config {
    /// Parses a TOML configuration; missing fields take their defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, Error> {
        toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: None,
            reason: e.to_string(),
        })
    }

    /// Reads and parses a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::ConfigParse {
            path: Some(path.to_path_buf()),
            reason: e.to_string(),
        })
    }

    /// `spin_before_park_us` as glommio takes it: `None` = do not spin.
    pub fn spin_before_park(&self) -> Option<Duration> {
        (self.spin_before_park_us > 0).then(|| Duration::from_micros(self.spin_before_park_us))
    }

    /// How many forwarded throughput-class requests one shard serves at
    /// once: `inflight_per_shard_max` less the share reserved for the
    /// latency class (rounded up), at least 1 (so bulk work is never shut
    /// out, and with a bound of 1 both classes share the one permit).
    pub fn inflight_throughput_per_shard_max(&self) -> usize {
        let percent = self
            .inflight_latency_reserved_percent
            .min(INFLIGHT_LATENCY_RESERVED_PERCENT_MAX) as usize;
        let reserved = self
            .inflight_per_shard_max
            .saturating_mul(percent)
            .div_ceil(100);
        self.inflight_per_shard_max.saturating_sub(reserved).max(1)
    }

    /// Checks every value and resolves the placement on this machine into
    /// one CPU per shard.
    pub fn validate(&self) -> Result<ResolvedConfig, Error> {
        self.check_values()?;
        let topology = Topology::read().map_err(|reason| self.placement_error(reason))?;
        self.resolve_on(&topology)
    }

    /// Checks every value against its bounds, without looking at the
    /// machine: the placement is resolved by [`Config::validate`].
    pub fn check_values(&self) -> Result<(), Error> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::ConfigValue {
                field: "data_dir",
                reason: "data_dir is empty; set it to a directory on ext4 or xfs".to_string(),
            });
        }
        within(
            "shards",
            self.shards as u64,
            0..=SHARDS_MAX as u64,
            "0 is one shard per CPU of the placement",
        )?;
        within(
            "spin_before_park_us",
            self.spin_before_park_us,
            0..=SPIN_BEFORE_PARK_US_MAX,
            "waking a parked shard costs tens of microseconds, so longer spins only burn the CPU; 50 is the default",
        )?;
        within(
            "io_memory_bytes",
            self.io_memory_bytes as u64,
            1..=IO_MEMORY_BYTES_MAX as u64,
            "io_uring registers at most 1 GiB; 524288 (512 KiB) is the default",
        )?;
        within(
            "ring_depth",
            self.ring_depth as u64,
            RING_DEPTH_MIN as u64..=RING_DEPTH_MAX as u64,
            "glommio needs room for its linked entries, the kernel allows 32768; 128 is glommio's default",
        )?;
        self.check_limits()?;
        self.io_scheduler
            .check()
            .map_err(|reason| Error::ConfigValue {
                field: "io_scheduler",
                reason,
            })?;
        Ok(())
    }

    /// The bounds of the queues, helper threads, shutdown and space reservations.
    fn check_limits(&self) -> Result<(), Error> {
        within(
            "channel_capacity",
            self.channel_capacity as u64,
            1..=CHANNEL_CAPACITY_MAX as u64,
            "queues must hold at least one request; 256 is the default",
        )?;
        within(
            "inflight_per_shard_max",
            self.inflight_per_shard_max as u64,
            1..=INFLIGHT_PER_SHARD_MAX as u64,
            "0 would serve no forwarded request; 128 is the default",
        )?;
        within(
            "inflight_latency_reserved_percent",
            u64::from(self.inflight_latency_reserved_percent),
            0..=u64::from(INFLIGHT_LATENCY_RESERVED_PERCENT_MAX),
            "a share of inflight_per_shard_max in percent; 0 lets bulk requests take every in-flight permit; 25 is the default",
        )?;
        within(
            "blocking_threads_per_shard",
            self.blocking_threads_per_shard as u64,
            1..=BLOCKING_THREADS_PER_SHARD_MAX as u64,
            "4 lets four syncs of one shard run at once",
        )?;
        within(
            "queue_bytes_per_shard_max",
            self.queue_bytes_per_shard_max,
            1..=QUEUE_BYTES_PER_SHARD_MAX,
            "0 would admit no request; 33554432 (32 MiB) is the default",
        )?;
        within(
            "shutdown_grace_ms",
            self.shutdown_grace_ms,
            0..=SHUTDOWN_GRACE_MS_MAX,
            "the largest is one day; 5000 is the default",
        )?;
        within(
            "preallocate_bytes",
            self.preallocate_bytes,
            0..=PREALLOCATE_BYTES_MAX,
            "0 reserves nothing, the largest is 1 GiB; 8388608 (8 MiB) is the default",
        )?;
        crate::io_scheduler::check(&self.io_scheduler)
    }

    fn placement_error(&self, reason: String) -> Error {
        Error::Placement {
            placement: self.placement.to_string(),
            reason,
        }
    }

    /// Resolves the placement on `topology` (this machine, or a made-up one
    /// in tests) into one CPU per shard.
    pub(crate) fn resolve_on(&self, topology: &Topology) -> Result<ResolvedConfig, Error> {
        let core = |cpu| topology.core(cpu);
        let cpus = self.placement_cpus(topology)?;
        let (cpus, per) = if self.physical_cores_only {
            (first_per_core(&cpus, core), "physical cores")
        } else {
            (cpus, "CPUs")
        };
        let shards = match self.shards {
            0 => cpus.len(),
            n if n <= cpus.len() => n,
            n => {
                return Err(self.placement_error(format!(
                    "shards = {n}, but it offers {} {per} ({}); lower shards to at most {}, set shards = 0 for one per {}, or widen the placement",
                    cpus.len(),
                    format_cpu_list(&cpus),
                    cpus.len(),
                    per.trim_end_matches('s'),
                )))
            }
        };
        Ok(ResolvedConfig {
            config: self.clone(),
            shard_cpus: cpus[..shards].to_vec(),
        })
    }

    /// The placement's CPUs on `topology`, spread over physical cores.
    fn placement_cpus(&self, topology: &Topology) -> Result<Vec<usize>, Error> {
        let core = |cpu| topology.core(cpu);
        Ok(match &self.placement {
            Placement::All => {
                let usable: Vec<usize> = topology
                    .online
                    .iter()
                    .copied()
                    .filter(|&cpu| topology.is_allowed(cpu))
                    .collect();
                if usable.is_empty() {
                    return Err(self.placement_error(format!(
                        "none of the online CPUs ({}) is in this process's affinity mask; check taskset or the cgroup cpuset",
                        format_cpu_list(&topology.online)
                    )));
                }
                spread_over_cores(&usable, core)
            }
            Placement::Cpus(listed) => {
                if listed.is_empty() {
                    return Err(self.placement_error(
                        "the list is empty; name at least one CPU, or use placement = \"all\""
                            .to_string(),
                    ));
                }
                self.check_listed(listed, topology)?;
                listed.clone()
            }
            Placement::NumaNode(node) => {
                let Some(node_cpus) = topology.nodes.get(node) else {
                    let nodes: Vec<usize> = topology.nodes.keys().copied().collect();
                    return Err(self.placement_error(if nodes.is_empty() {
                        "this machine reports no NUMA nodes (/sys/devices/system/node); use placement = \"all\"".to_string()
                    } else {
                        format!(
                            "NUMA node {node} does not exist (nodes: {}); pick one of those",
                            format_cpu_list(&nodes)
                        )
                    }));
                };
                let usable: Vec<usize> = node_cpus
                    .iter()
                    .copied()
                    .filter(|&cpu| topology.online.contains(&cpu) && topology.is_allowed(cpu))
                    .collect();
                if usable.is_empty() {
                    return Err(self.placement_error(format!(
                        "none of the node's CPUs ({}) is online and in this process's affinity mask; pick another node or check taskset / the cgroup cpuset",
                        format_cpu_list(node_cpus)
                    )));
                }
                spread_over_cores(&usable, core)
            }
        })
    }

    /// Checks the CPUs of `placement = { cpus = [...] }` on `topology`.
    fn check_listed(&self, listed: &[usize], topology: &Topology) -> Result<(), Error> {
        for (i, &cpu) in listed.iter().enumerate() {
            if listed[..i].contains(&cpu) {
                return Err(self.placement_error(format!(
                    "CPU {cpu} is listed twice; each shard needs a CPU of its own",
                )));
            }
            if !topology.online.contains(&cpu) {
                return Err(self.placement_error(format!(
                    "CPU {cpu} is not online (online CPUs: {}); remove it from the list",
                    format_cpu_list(&topology.online)
                )));
            }
            if !topology.is_allowed(cpu) {
                return Err(self.placement_error(format!(
                    "CPU {cpu} is online but this process may not run on it (allowed: {}); remove it from the list or widen taskset / the cgroup cpuset",
                    format_cpu_list(topology.allowed.as_deref().unwrap_or_default())
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const NUMA_TOML: &str = include_str!("../../configs/numa.toml");

    fn message(result: Result<impl fmt::Debug, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn default_file_parses_and_is_the_default() {
        let parsed = Config::from_toml_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
        assert_eq!(
            parsed,
            Config {
                data_dir: PathBuf::from("shardblob-data"),
                shards: 0,
                placement: Placement::All,
                physical_cores_only: false,
                spin_before_park_us: 50,
                io_memory_bytes: 512 * 1024,
                ring_depth: 128,
                channel_capacity: 256,
                inflight_per_shard_max: 128,
                inflight_latency_reserved_percent: 25,
                sync_inline_when_idle: true,
                blocking_threads_per_shard: 4,
                queue_bytes_per_shard_max: 32 << 20,
                shutdown_grace_ms: 5000,
                allow_volatile_data_dir: false,
                preallocate_bytes: 8 << 20,
                io_scheduler: SchedConfig::default(),
            }
        );
        assert_eq!(parsed.spin_before_park(), Some(Duration::from_micros(50)));
    }

    #[test]
    fn the_throughput_class_gets_the_permits_not_reserved_and_at_least_one() {
        let with = |inflight, percent| Config {
            inflight_per_shard_max: inflight,
            inflight_latency_reserved_percent: percent,
            ..Config::default()
        };
        assert_eq!(Config::default().inflight_throughput_per_shard_max(), 96);
        assert_eq!(with(4, 0).inflight_throughput_per_shard_max(), 4);
        assert_eq!(with(4, 25).inflight_throughput_per_shard_max(), 3);
        assert_eq!(with(8, 75).inflight_throughput_per_shard_max(), 2);
        assert_eq!(with(8, 76).inflight_throughput_per_shard_max(), 1);
        assert_eq!(with(2, 100).inflight_throughput_per_shard_max(), 1);
        assert_eq!(with(1, 25).inflight_throughput_per_shard_max(), 1);
        let error = with(128, 101).check_values().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("inflight_latency_reserved_percent"),
            "{error}"
        );
    }

    #[test]
    fn missing_fields_take_defaults() {
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
        let config = Config::from_toml_str("shards = 1\nring_depth = 64").unwrap();
        assert_eq!(config.shards, 1);
        assert_eq!(config.ring_depth, 64);
        assert_eq!(config.io_memory_bytes, Config::default().io_memory_bytes);
        let config = Config::from_toml_str("spin_before_park_us = 0").unwrap();
        assert_eq!(config.spin_before_park(), None);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let error = message(Config::from_toml_str("shard = 4"));
        assert!(error.contains("unknown field `shard`"), "{error}");
        let error = message(Config::from_toml_str("placement = { cpu = [0] }"));
        assert!(error.contains("cpu"), "{error}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        let error = message(Config::from_toml_str("shards = -1"));
        assert!(error.contains("shards"), "{error}");
        let error = message(Config::from_toml_str("io_memory_bytes = \"1M\""));
        assert!(error.contains("io_memory_bytes"), "{error}");
    }

    #[test]
    fn placement_shapes() {
        let parse = |text: &str| Config::from_toml_str(text).map(|c| c.placement);
        assert_eq!(parse("placement = \"all\"").unwrap(), Placement::All);
        assert_eq!(
            parse("placement = { cpus = [0, 1] }").unwrap(),
            Placement::Cpus(vec![0, 1])
        );
        assert_eq!(
            parse("placement = { numa_node = 1 }").unwrap(),
            Placement::NumaNode(1)
        );
        assert_eq!(
            parse("[placement]\ncpus = [3]").unwrap(),
            Placement::Cpus(vec![3])
        );
        let error = message(parse("placement = \"some\""));
        assert!(error.contains("unknown variant `some`"), "{error}");
        assert!(parse("placement = { cpus = [0], numa_node = 0 }").is_err());
        assert!(parse("placement = { numa_node = -1 }").is_err());
    }

    #[test]
    fn reads_files() {
        let dir = std::env::temp_dir().join(format!("shardblob-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("engine.toml");
        std::fs::write(&path, "shards = 2\n").unwrap();
        assert_eq!(Config::from_file(&path).unwrap().shards, 2);
        std::fs::write(&path, "shards = 2\nbogus = 1\n").unwrap();
        let error = message(Config::from_file(&path));
        assert!(
            error.contains("engine.toml") && error.contains("bogus"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let error = message(Config::from_file(&path));
        assert!(error.contains("cannot read configuration file"), "{error}");
    }

    /// Two NUMA nodes of two cores with two threads each: node 0 has cores
    /// {0, 4} and {1, 5}, node 1 has {2, 6} and {3, 7}. CPU 7 is offline.
    fn two_nodes() -> Topology {
        Topology {
            online: vec![0, 1, 2, 3, 4, 5, 6],
            allowed: Some(vec![0, 1, 2, 3, 4, 5, 6]),
            nodes: BTreeMap::from([(0, vec![0, 1, 4, 5]), (1, vec![2, 3, 6, 7])]),
            core_of: (0..8).map(|cpu| (cpu, cpu % 4)).collect(),
        }
    }

    fn with(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    /// `validate` on a made-up machine.
    fn resolve(config: &Config, topology: &Topology) -> Result<ResolvedConfig, Error> {
        config.check_values()?;
        config.resolve_on(topology)
    }

    fn cpus(text: &str, topology: &Topology) -> Result<Vec<usize>, Error> {
        resolve(&with(text), topology).map(|r| r.shard_cpus)
    }

    #[test]
    fn resolves_all_cpus() {
        let t = two_nodes();
        assert_eq!(cpus("", &t).unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(cpus("shards = 2", &t).unwrap(), vec![0, 1]);
        assert_eq!(
            cpus("physical_cores_only = true", &t).unwrap(),
            vec![0, 1, 2, 3]
        );
        let mut amd = t.clone();
        amd.core_of = (0..8).map(|cpu| (cpu, cpu / 2 * 2)).collect();
        assert_eq!(cpus("shards = 3", &amd).unwrap(), vec![0, 2, 4]);
        let mut restricted = t.clone();
        restricted.allowed = Some(vec![2, 3]);
        assert_eq!(cpus("", &restricted).unwrap(), vec![2, 3]);
        restricted.allowed = Some(vec![7]);
        assert!(message(cpus("", &restricted)).contains("affinity mask"));
        let resolved = resolve(&with(""), &t).unwrap();
        assert_eq!(resolved.shards(), 7);
        assert_eq!(resolved.config, Config::default());
    }

    #[test]
    fn rejects_more_shards_than_cpus() {
        let t = two_nodes();
        let error = message(cpus("shards = 8", &t));
        assert!(
            error.contains("shards = 8")
                && error.contains("offers 7 CPUs (0-6)")
                && error.contains("at most 7"),
            "{error}"
        );
        let error = message(cpus("shards = 5\nphysical_cores_only = true", &t));
        assert!(error.contains("offers 4 physical cores"), "{error}");
        assert!(error.contains("one per physical core"), "{error}");
        let error = message(cpus("shards = 4\nplacement = { numa_node = 1 }", &t));
        assert!(
            error.contains("numa_node = 1") && error.contains("at most 3"),
            "{error}"
        );
    }

    #[test]
    fn resolves_cpu_lists() {
        let t = two_nodes();
        assert_eq!(
            cpus("placement = { cpus = [6, 0] }", &t).unwrap(),
            vec![6, 0]
        );
        assert_eq!(
            cpus(
                "placement = { cpus = [0, 4, 1] }\nphysical_cores_only = true",
                &t
            )
            .unwrap(),
            vec![0, 1]
        );
        let error = message(cpus("placement = { cpus = [0, 7] }", &t));
        assert!(
            error.contains("CPU 7 is not online (online CPUs: 0-6)"),
            "{error}"
        );
        let error = message(cpus("placement = { cpus = [1, 1] }", &t));
        assert!(error.contains("CPU 1 is listed twice"), "{error}");
        let error = message(cpus("placement = { cpus = [] }", &t));
        assert!(error.contains("empty"), "{error}");
        let mut restricted = t.clone();
        restricted.allowed = Some(vec![0]);
        let error = message(cpus("placement = { cpus = [0, 1] }", &restricted));
        assert!(
            error.contains("CPU 1 is online but this process may not run on it"),
            "{error}"
        );
    }

    #[test]
    fn resolves_numa_nodes() {
        let t = two_nodes();
        assert_eq!(
            cpus("placement = { numa_node = 0 }", &t).unwrap(),
            vec![0, 1, 4, 5]
        );
        // CPU 7 of node 1 is offline.
        assert_eq!(
            cpus("placement = { numa_node = 1 }", &t).unwrap(),
            vec![2, 3, 6]
        );
        let error = message(cpus("placement = { numa_node = 2 }", &t));
        assert!(
            error.contains("NUMA node 2 does not exist (nodes: 0-1)"),
            "{error}"
        );
        let mut flat = t.clone();
        flat.nodes.clear();
        let error = message(cpus("placement = { numa_node = 0 }", &flat));
        assert!(error.contains("no NUMA nodes"), "{error}");
        let mut restricted = t.clone();
        restricted.allowed = Some(vec![2]);
        let error = message(cpus("placement = { numa_node = 0 }", &restricted));
        assert!(
            error.contains("none of the node's CPUs (0-1,4-5)"),
            "{error}"
        );
    }

    /// A TOML line, the field it makes out of bounds and a part of the
    /// message.
    const IMPOSSIBLE: &[(&str, &str, &str)] = &[
        (
            "shards = 8193",
            "shards",
            "shards = 8193 is outside 0..=8192",
        ),
        (
            "spin_before_park_us = 5000000",
            "spin_before_park_us",
            "spin_before_park_us = 5000000 is outside 0..=10000",
        ),
        (
            "io_memory_bytes = 0",
            "io_memory_bytes",
            "io_memory_bytes = 0 is outside 1..=",
        ),
        (
            "io_memory_bytes = 1073741825",
            "io_memory_bytes",
            "io_memory_bytes = 1073741825 is outside 1..=1073741824",
        ),
        (
            "ring_depth = 0",
            "ring_depth",
            "ring_depth = 0 is outside 8..=32768",
        ),
        (
            "ring_depth = 3",
            "ring_depth",
            "ring_depth = 3 is outside 8..=32768",
        ),
        ("ring_depth = 65536", "ring_depth", "ring_depth = 65536"),
        (
            "channel_capacity = 0",
            "channel_capacity",
            "channel_capacity = 0",
        ),
        (
            "channel_capacity = 2000000",
            "channel_capacity",
            "channel_capacity = 2000000 is outside 1..=1048576",
        ),
        (
            "inflight_per_shard_max = 0",
            "inflight_per_shard_max",
            "inflight_per_shard_max = 0 is outside 1..=1048576",
        ),
        ("data_dir = \"\"", "data_dir", "data_dir is empty"),
        (
            "blocking_threads_per_shard = 0",
            "blocking_threads_per_shard",
            "blocking_threads_per_shard = 0 is outside 1..=1024",
        ),
        (
            "blocking_threads_per_shard = 1025",
            "blocking_threads_per_shard",
            "blocking_threads_per_shard = 1025",
        ),
        (
            "queue_bytes_per_shard_max = 0",
            "queue_bytes_per_shard_max",
            "queue_bytes_per_shard_max = 0 is outside 1..=1099511627776",
        ),
        (
            "shutdown_grace_ms = 9223372036854775807",
            "shutdown_grace_ms",
            "shutdown_grace_ms = 9223372036854775807 is outside 0..=86400000",
        ),
    ];

    #[test]
    fn rejects_impossible_values() {
        let t = two_nodes();
        for &(text, field, expected) in IMPOSSIBLE {
            let error = cpus(text, &t).unwrap_err();
            assert!(
                matches!(error, Error::ConfigValue { field: f, .. } if f == field),
                "{text}: {error:?}"
            );
            assert!(error.to_string().contains(expected), "{text}: {error}");
            let error = message(with(text).validate());
            assert!(error.contains(expected), "{text}: {error}");
        }
        for text in [
            "io_memory_bytes = 1073741824",
            "ring_depth = 8",
            "spin_before_park_us = 10000",
            "shutdown_grace_ms = 86400000",
        ] {
            assert!(cpus(text, &t).is_ok(), "{text}");
        }
    }

    #[test]
    fn preallocation_is_none_to_one_gibibyte() {
        for text in ["preallocate_bytes = 0", "preallocate_bytes = 1073741824"] {
            assert!(with(text).check_values().is_ok(), "{text}");
        }
        let error = with("preallocate_bytes = 1073741825")
            .check_values()
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::ConfigValue {
                    field: "preallocate_bytes",
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("preallocate_bytes = 1073741825 is outside 0..=1073741824"),
            "{text}"
        );
    }

    #[test]
    fn numa_example_is_one_shard_per_core_of_node_0() {
        let config = Config::from_toml_str(NUMA_TOML).unwrap();
        assert_eq!(config.placement, Placement::NumaNode(0));
        assert!(config.physical_cores_only);
        assert_eq!(
            resolve(&config, &two_nodes()).unwrap().shard_cpus,
            vec![0, 1]
        );
    }

    #[test]
    fn default_validates_on_this_machine() {
        let resolved = Config::default().validate().unwrap();
        let online = crate::placement::parse_cpu_list(
            &std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap(),
        )
        .unwrap();
        assert!(resolved.shards() >= 1 && resolved.shards() <= online.len());
        let error = message(with(&format!("shards = {}", online.len() + 1)).validate());
        assert!(error.contains("lower shards"), "{error}");
    }
}
