//! The command line. Every flag is optional: with none, the standard suite
//! runs on the engine's embedded default configuration in a fresh temporary
//! data directory. Flags override workload files, which override the profile
//! (`--quick`, standard, `--long`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::targets::Target;
use crate::units::{parse_duration, parse_size_bytes};
use crate::workload::WorkloadKind;

/// Tail-latency benchmark of shardblob against fio, raw glommio DmaFile and
/// commonware-runtime, in one run, with the same workload shapes.
#[derive(Debug, Parser)]
#[command(
    name = "shardblob-bench",
    version,
    after_help = "Examples:\n  \
        shardblob-bench                                  standard suite, ~5 minutes\n  \
        shardblob-bench --quick                          smoke run, about a minute\n  \
        shardblob-bench --publish --markdown bench/RESULTS.md   the published run\n  \
        shardblob-bench -w rand-read --sweep-p99-us 500  highest rate with p99 under 500 µs\n  \
        shardblob-bench -w rand-read --queue-depths 1,8 --duration 5s\n  \
        shardblob-bench -w mix --read-percent 90 --rate 20000\n  \
        shardblob-bench --config configs/bench/random.toml --peers fio,dma\n  \
        shardblob-bench --long --out-dir results/"
)]
pub struct Cli {
    /// Which built-in set of workloads to run. Defaults to `standard`, or to
    /// none when --workload or --config name workloads.
    #[arg(long, value_enum)]
    pub suite: Option<Suite>,

    /// Run this workload (repeatable); shaped by the size, depth and rate flags.
    #[arg(short = 'w', long = "workload", value_enum)]
    pub workloads: Vec<WorkloadKind>,

    /// Workload file (TOML, see configs/bench/); repeatable.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,

    /// Measured time per case, e.g. 500ms, 2s, 1m.
    #[arg(long, value_parser = parse_duration, value_name = "TIME")]
    pub duration: Option<Duration>,

    /// Unmeasured warm-up before each case.
    #[arg(long, value_parser = parse_duration, value_name = "TIME")]
    pub warmup: Option<Duration>,

    /// Size of the prefilled data file that reads and overwrites address.
    #[arg(long, value_parser = parse_size_bytes, value_name = "SIZE")]
    pub file_size: Option<u64>,

    /// Block size of random reads and writes, mix and append + sync.
    #[arg(long, value_parser = parse_size_bytes, value_name = "SIZE")]
    pub block_size: Option<u64>,

    /// Block size of sequential reads and writes.
    #[arg(long, value_parser = parse_size_bytes, value_name = "SIZE")]
    pub seq_block_size: Option<u64>,

    /// Record size of small appends.
    #[arg(long, value_parser = parse_size_bytes, value_name = "SIZE")]
    pub small_append_size: Option<u64>,

    /// Small appends sync each time this many bytes were appended.
    #[arg(long, value_parser = parse_size_bytes, value_name = "SIZE")]
    pub sync_every: Option<u64>,

    /// Share of reads in the mix workload, in percent.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PERCENT")]
    pub read_percent: Option<u8>,

    /// Closed-loop queue depths to sweep (every workload uses them when given).
    #[arg(long, value_delimiter = ',', value_name = "N,N,..")]
    pub queue_depths: Option<Vec<usize>>,

    /// Open-loop offered rate in ops/s (0: no open-loop cases).
    #[arg(long, value_name = "OPS_PER_S")]
    pub rate: Option<u64>,

    /// Open loop: most ops in flight before new ones wait (and count as late).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_in_flight: usize,

    /// Engine paths to measure ("none" for none).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PATH,..",
        default_value = "same-shard,cross-shard,foreign-thread"
    )]
    pub paths: Vec<PathArg>,

    /// Peers to measure in the same run ("none" for none).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PEER,..",
        default_value = "fio,fio-tuned,fio-batched,dma,sync-loop,commonware-tokio,commonware-iouring"
    )]
    pub peers: Vec<PeerArg>,

    /// Where results (table, JSON, .hgrm, SVG) go [default: target/shardblob-bench/<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Parent of the temporary data directory; must support O_DIRECT (not tmpfs).
    #[arg(long, default_value = "/tmp", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Engine configuration (TOML) instead of the embedded default; its data_dir is replaced.
    #[arg(long, value_name = "FILE")]
    pub engine_config: Option<PathBuf>,

    /// Short smoke run: 2 repeats of 150 ms per case, 256 MiB file, fewer cases.
    #[arg(long, conflicts_with_all = ["long", "publish"])]
    pub quick: bool,

    /// Thorough run: 5 repeats of 10 s per case, 4 GiB file, every depth for every workload.
    #[arg(long, conflicts_with = "publish")]
    pub long: bool,

    /// The run bench/RESULTS.md is made from: the standard cases, 5 repeats of 10 s each.
    #[arg(long)]
    pub publish: bool,

    /// Times each case runs on every target (targets rotated each time)
    /// [default: 5; --quick: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeats: Option<u32>,

    /// Run every case with a CPU-bound competitor pinned to the measured shard's CPU.
    #[arg(long)]
    pub cpu_hog: bool,

    /// Rate sweep: open-loop cases of the named workloads at each of
    /// --sweep-rates, and per target the highest rate whose p99 stays
    /// under this bound (µs).
    #[arg(long, value_name = "US")]
    pub sweep_p99_us: Option<f64>,

    /// Offered rates of the sweep, ops/s.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,..",
        default_value = "2500,5000,10000,20000,40000,80000"
    )]
    pub sweep_rates: Vec<u64>,

    /// Scaling mode: each case on 1..N engine shards at once, each shard a
    /// task driving its own partition; reports aggregate ops/s and the
    /// per-core efficiency against one shard (no peers).
    #[arg(long)]
    pub scaling: bool,

    /// Also write the report as Markdown to this file (the tables of bench/RESULTS.md).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Hand-written Markdown placed after the verdicts in the Markdown
    /// report (the analysis of bench/RESULTS.md, kept apart so the file
    /// can be regenerated).
    #[arg(long, value_name = "FILE")]
    pub markdown_prose: Option<PathBuf>,

    /// Run nothing: place --markdown-prose into REPORT, a Markdown report
    /// this tool wrote without prose (e.g. `results.md` of an earlier run's
    /// --out-dir), where a run would have put it, and write the result to
    /// --markdown (analysis written after seeing the figures).
    #[arg(long, value_name = "REPORT", requires_all = ["markdown", "markdown_prose"])]
    pub prose_into: Option<PathBuf>,

    /// Glommio spin_before_park of the raw DmaFile peer, in microseconds
    /// [default: the engine configuration's spin_before_park_us].
    #[arg(long, value_name = "US")]
    pub peer_spin_us: Option<u64>,

    /// Synced ops of ours and commonware use one `WriteOptions::SYNC` write
    /// (RWF_DSYNC) instead of write then sync(); fio and dma keep fdatasync.
    #[arg(long)]
    pub sync_flag: bool,

    /// commonware's writes that no sync follows go to the page cache (its
    /// default) instead of carrying `WriteOptions::SYNC`; such rows are marked
    /// `page cache` and never chosen as the best peer.
    #[arg(long)]
    pub commonware_cached: bool,

    /// Engine shard that owns the benchmark partition (same-shard runs there,
    /// cross-shard on the next one) [default: the shard on the CPU that takes
    /// the data disk's interrupts, else 0].
    #[arg(long, value_name = "SHARD")]
    pub shard: Option<usize>,

    /// CPU the raw DmaFile peer's executor is pinned to [default: the CPU of
    /// the engine shard that owns the benchmark partition].
    #[arg(long, value_name = "CPU")]
    pub peer_cpu: Option<usize>,

    /// Seed of the offset generator (the same for every target).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Print the planned cases and exit.
    #[arg(long)]
    pub dry_run: bool,

    /// Keep the temporary data directory.
    #[arg(long)]
    pub keep_data: bool,
}

/// Built-in workload sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The cases the targets are judged on: random I/O at the first and last
    /// depth, an open loop on random reads, the other workloads at depth 1
    /// (mix: 4), and random reads at depth 1 under a CPU hog.
    Standard,
    /// Random reads and writes only (and random reads under a CPU hog).
    Random,
    /// Append + sync and small appends only.
    Append,
    /// Every workload at every depth, with open loops on reads, writes and mix.
    All,
    /// 4 KiB random reads at depth 1 and at --rate, each alone and under
    /// a writer of 128 KiB sequential writes at depth 8 on the same shard,
    /// and that writer alone: the engine with I/O classes, with one class,
    /// and fio running both jobs at once.
    Interference,
}

/// An engine path on the command line, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PathArg {
    None,
    SameShard,
    CrossShard,
    ForeignThread,
}

impl PathArg {
    pub fn target(self) -> Option<Target> {
        match self {
            PathArg::None => None,
            PathArg::SameShard => Some(Target::SameShard),
            PathArg::CrossShard => Some(Target::CrossShard),
            PathArg::ForeignThread => Some(Target::ForeignThread),
        }
    }
}

/// A peer on the command line, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PeerArg {
    None,
    Fio,
    FioTuned,
    FioBatched,
    Dma,
    SyncLoop,
    CommonwareTokio,
    CommonwareIouring,
}

impl PeerArg {
    pub fn target(self) -> Option<Target> {
        match self {
            PeerArg::None => None,
            PeerArg::Fio => Some(Target::Fio),
            PeerArg::FioTuned => Some(Target::FioTuned),
            PeerArg::FioBatched => Some(Target::FioBatched),
            PeerArg::Dma => Some(Target::Dma),
            PeerArg::SyncLoop => Some(Target::SyncLoop),
            PeerArg::CommonwareTokio => Some(Target::CommonwareTokio),
            PeerArg::CommonwareIouring => Some(Target::CommonwareIouring),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_with_units_and_lists() {
        let cli = Cli::try_parse_from([
            "shardblob-bench",
            "-w",
            "rand-read",
            "--queue-depths",
            "1,8",
            "--duration",
            "2s",
            "--block-size",
            "8KiB",
            "--peers",
            "fio,dma",
            "--paths",
            "same-shard",
        ])
        .unwrap();
        assert_eq!(cli.workloads, [WorkloadKind::RandRead]);
        assert_eq!(cli.queue_depths, Some(vec![1, 8]));
        assert_eq!(cli.duration, Some(Duration::from_secs(2)));
        assert_eq!(cli.block_size, Some(8192));
        assert_eq!(cli.peers, [PeerArg::Fio, PeerArg::Dma]);
        assert_eq!(cli.paths, [PathArg::SameShard]);
        assert!(Cli::try_parse_from(["shardblob-bench", "--paths", "fio"]).is_err());
        assert!(Cli::try_parse_from(["shardblob-bench", "--quick", "--long"]).is_err());
        assert!(Cli::try_parse_from(["shardblob-bench", "--read-percent", "101"]).is_err());
        let prose_alone = [
            "shardblob-bench",
            "--prose-into",
            "r.md",
            "--markdown",
            "o.md",
        ];
        assert!(
            Cli::try_parse_from(prose_alone).is_err(),
            "needs --markdown-prose"
        );
    }
}
