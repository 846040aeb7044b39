//! From the command line and workload files to a `Plan`: the list of cases
//! (workload × load) and the run's timing. Precedence: command-line flag,
//! then workload file, then the profile (`--quick`, standard, `--long`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Suite};
use crate::load::Load;
use crate::targets::Target;
use crate::units::{format_duration, parse_duration, parse_size_bytes};
use crate::workload::{Workload, WorkloadKind};

/// One measured unit: a workload under one load.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    pub workload: Workload,
    pub load: Load,
}

impl Case {
    /// `rand-read-4KiB qd1`.
    pub fn label(&self) -> String {
        format!("{} {}", self.workload.label(), self.load.label())
    }

    /// A file-name-safe id: `rand-read-4KiB_qd1`, `rand-read-4KiB_open10000`.
    pub fn id(&self) -> String {
        let load = self.load.label().replace("/s", "");
        format!("{}_{load}", self.workload.label())
    }
}

/// Everything a run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub cases: Vec<Case>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Size of the prefilled data file (the largest any case addresses).
    pub data_file_bytes: u64,
    pub targets: Vec<Target>,
    pub seed: u64,
    /// Synced ops use `WriteOptions::SYNC` where the target has it.
    pub sync_flag: bool,
    pub profile: &'static str,
}

/// Defaults of a profile.
struct Profile {
    name: &'static str,
    duration: Duration,
    warmup: Duration,
    file_size_bytes: u64,
    rate_ops_per_s: u64,
}

fn profile(cli: &Cli) -> Profile {
    if cli.quick {
        Profile {
            name: "quick",
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            file_size_bytes: 256 << 20,
            rate_ops_per_s: 5_000,
        }
    } else if cli.long {
        Profile {
            name: "long",
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            file_size_bytes: 4 << 30,
            rate_ops_per_s: 10_000,
        }
    } else {
        Profile {
            name: "standard",
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(250),
            file_size_bytes: 1 << 30,
            rate_ops_per_s: 10_000,
        }
    }
}

/// A size in a workload file: `4096` or `"4KiB"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

impl SizeText {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeText::Bytes(bytes) => Ok(*bytes),
            SizeText::Text(text) => parse_size_bytes(text),
        }
    }
}

/// A workload file (configs/bench/*.toml).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    duration: Option<String>,
    warmup: Option<String>,
    file_size: Option<SizeText>,
    queue_depths: Option<Vec<usize>>,
    rate_ops_per_s: Option<u64>,
    #[serde(default)]
    workload: Vec<WorkloadEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadEntry {
    kind: WorkloadKind,
    block_size: Option<SizeText>,
    file_size: Option<SizeText>,
    read_percent: Option<u8>,
    sync_every: Option<SizeText>,
    queue_depths: Option<Vec<usize>>,
    /// 0 or absent: no open-loop case.
    open_rate_ops_per_s: Option<u64>,
}

impl WorkloadFile {
    pub fn parse(text: &str) -> Result<WorkloadFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn load(path: &Path) -> Result<WorkloadFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        WorkloadFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Shapes shared by every workload of the run.
struct Shapes {
    file_size_bytes: u64,
    block_size_bytes: u64,
    seq_block_size_bytes: u64,
    small_append_bytes: u64,
    sync_every_bytes: u64,
    read_percent: u8,
}

impl Shapes {
    fn workload(&self, kind: WorkloadKind) -> Workload {
        let block_size_bytes = match kind {
            WorkloadKind::SeqRead | WorkloadKind::SeqWrite => self.seq_block_size_bytes,
            WorkloadKind::SmallAppend => self.small_append_bytes,
            _ => self.block_size_bytes,
        };
        Workload {
            kind,
            block_size_bytes,
            file_size_bytes: self.file_size_bytes,
            read_percent: self.read_percent,
            sync_every_bytes: self.sync_every_bytes,
        }
    }
}

/// The loads of one workload in a suite: closed loops at `depths`, plus an
/// open loop when `rate_ops_per_s > 0`.
fn loads(depths: &[usize], rate_ops_per_s: u64, max_in_flight: usize) -> Vec<Load> {
    let mut loads: Vec<Load> = depths
        .iter()
        .map(|&queue_depth| Load::Closed { queue_depth })
        .collect();
    if rate_ops_per_s > 0 {
        loads.push(Load::Open {
            rate_ops_per_s,
            max_in_flight,
        });
    }
    loads
}

/// Builds the plan, or says which input is wrong.
pub fn plan(cli: &Cli) -> Result<Plan, String> {
    let profile = profile(cli);
    let mut files = Vec::new();
    for path in &cli.configs {
        files.push(WorkloadFile::load(path)?);
    }
    let file = |pick: fn(&WorkloadFile) -> Option<String>| files.iter().find_map(pick);
    let duration = match (cli.duration, file(|f| f.duration.clone())) {
        (Some(d), _) => d,
        (None, Some(text)) => parse_duration(&text)?,
        (None, None) => profile.duration,
    };
    let warmup = match (cli.warmup, file(|f| f.warmup.clone())) {
        (Some(d), _) => d,
        (None, Some(text)) => parse_duration(&text)?,
        (None, None) => profile.warmup,
    };
    let file_size_from_files = files
        .iter()
        .find_map(|f| f.file_size.clone())
        .map(|s| s.bytes())
        .transpose()?;
    let shapes = Shapes {
        file_size_bytes: cli
            .file_size
            .or(file_size_from_files)
            .unwrap_or(profile.file_size_bytes),
        block_size_bytes: cli.block_size.unwrap_or(4096),
        seq_block_size_bytes: cli.seq_block_size.unwrap_or(128 << 10),
        small_append_bytes: cli.small_append_size.unwrap_or(256),
        sync_every_bytes: cli.sync_every.unwrap_or(1 << 20),
        read_percent: cli.read_percent.unwrap_or(70),
    };
    let file_depths = files.iter().find_map(|f| f.queue_depths.clone());
    let sweep = cli
        .queue_depths
        .clone()
        .or(file_depths)
        .unwrap_or_else(|| vec![1, 4, 32]);
    let depths_given = cli.queue_depths.is_some();
    let rate = cli
        .rate
        .or(files.iter().find_map(|f| f.rate_ops_per_s))
        .unwrap_or(profile.rate_ops_per_s);
    let max_in_flight = cli.max_in_flight;

    let mut cases = Vec::new();
    let mut push = |workload: Workload, loads: Vec<Load>| {
        for load in loads {
            cases.push(Case {
                workload: workload.clone(),
                load,
            });
        }
    };

    let suite = cli.suite.or_else(|| {
        (cli.workloads.is_empty() && cli.configs.is_empty()).then_some(Suite::Standard)
    });
    if let Some(suite) = suite {
        use WorkloadKind::*;
        let every = cli.long || suite == Suite::All;
        let quick = cli.quick;
        let kinds: &[WorkloadKind] = match suite {
            Suite::Standard | Suite::All => &[
                RandRead,
                RandWrite,
                SeqRead,
                SeqWrite,
                AppendSync,
                SmallAppend,
                Mix,
            ],
            Suite::Random => &[RandRead, RandWrite],
            Suite::Append => &[AppendSync, SmallAppend],
        };
        for &kind in kinds {
            let random = matches!(kind, RandRead | RandWrite);
            let depths: Vec<usize> = if every || depths_given || (random && !quick) {
                sweep.clone()
            } else if random {
                vec![sweep[0], *sweep.last().unwrap_or(&1)]
            } else if kind == Mix {
                vec![4]
            } else {
                vec![1]
            };
            let mut depths_unique = depths;
            depths_unique.dedup();
            let open = random && !(quick && kind == RandWrite) || (every && kind == Mix);
            push(
                shapes.workload(kind),
                loads(&depths_unique, if open { rate } else { 0 }, max_in_flight),
            );
        }
    }
    for &kind in &cli.workloads {
        push(
            shapes.workload(kind),
            loads(&sweep, cli.rate.unwrap_or(0), max_in_flight),
        );
    }
    for entry in files.iter().flat_map(|f| &f.workload) {
        let mut workload = shapes.workload(entry.kind);
        if let Some(size) = &entry.block_size {
            workload.block_size_bytes = size.bytes()?;
        }
        if let Some(size) = &entry.file_size {
            workload.file_size_bytes = size.bytes()?;
        }
        if let Some(size) = &entry.sync_every {
            workload.sync_every_bytes = size.bytes()?;
        }
        if let Some(percent) = entry.read_percent {
            workload.read_percent = percent;
        }
        let depths = if depths_given {
            &sweep
        } else {
            entry.queue_depths.as_ref().unwrap_or(&sweep)
        };
        push(
            workload,
            loads(
                depths,
                entry.open_rate_ops_per_s.unwrap_or(0),
                max_in_flight,
            ),
        );
    }

    if cases.is_empty() {
        return Err("no cases to run: name a --suite, --workload or --config".into());
    }
    for case in &cases {
        case.workload.validate()?;
        if case.load.max_in_flight() == 0 {
            return Err(format!("{}: queue depth must be at least 1", case.label()));
        }
    }
    let data_file_bytes = cases
        .iter()
        .filter(|c| c.workload.kind.uses_data_file())
        .map(|c| c.workload.file_size_bytes)
        .max()
        .unwrap_or(0);
    let mut targets: Vec<Target> = cli.paths.iter().filter_map(|p| p.target()).collect();
    targets.extend(cli.peers.iter().filter_map(|p| p.target()));
    targets.dedup();
    if targets.is_empty() {
        return Err("nothing to measure: --paths none and --peers none".into());
    }
    Ok(Plan {
        cases,
        warmup,
        duration,
        data_file_bytes,
        targets,
        seed: cli.seed,
        sync_flag: cli.sync_flag,
        profile: profile.name,
    })
}

impl Plan {
    /// A human summary for --dry-run and the report header.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "profile {}: {} cases x {} targets, {} warm-up + {} each, data file {}\n",
            self.profile,
            self.cases.len(),
            self.targets.len(),
            format_duration(self.warmup),
            format_duration(self.duration),
            crate::units::format_size(self.data_file_bytes),
        );
        for case in &self.cases {
            text.push_str(&format!("  {}\n", case.label()));
        }
        let names: Vec<&str> = self.targets.iter().map(|t| t.name()).collect();
        text.push_str(&format!("  targets: {}\n", names.join(", ")));
        text
    }

    /// Rough wall time: cases x targets x (warm-up + duration), excluding prefill.
    pub fn estimated_s(&self) -> f64 {
        let per_case_s = (self.warmup + self.duration).as_secs_f64() + 0.1;
        per_case_s * (self.cases.len() * self.targets.len()) as f64
    }
}

/// The default output directory for a run started at `unix_s`.
pub fn default_out_dir(unix_s: u64) -> PathBuf {
    PathBuf::from("target/shardblob-bench").join(crate::units::utc_stamp(unix_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan_of(args: &[&str]) -> Result<Plan, String> {
        let mut all = vec!["shardblob-bench"];
        all.extend_from_slice(args);
        plan(&Cli::try_parse_from(all).unwrap())
    }

    #[test]
    fn the_standard_suite_sweeps_depths_on_random_io() {
        let plan = plan_of(&[]).unwrap();
        let labels: Vec<String> = plan.cases.iter().map(Case::label).collect();
        for want in [
            "rand-read-4KiB qd1",
            "rand-read-4KiB qd4",
            "rand-read-4KiB qd32",
            "rand-read-4KiB open10000/s",
            "rand-write-4KiB qd32",
            "seq-read-128KiB qd1",
            "seq-write-128KiB qd1",
            "append-sync-4KiB qd1",
            "small-append-256B qd1",
            "mix70-4KiB qd4",
        ] {
            assert!(
                labels.contains(&want.to_string()),
                "{want} missing from {labels:?}"
            );
        }
        assert_eq!(plan.data_file_bytes, 1 << 30);
        assert_eq!(plan.targets.len(), 7);
        assert!(plan.estimated_s() < 200.0, "{}", plan.estimated_s());
    }

    #[test]
    fn command_line_workloads_replace_the_suite() {
        let plan = plan_of(&[
            "-w",
            "mix",
            "--read-percent",
            "90",
            "--queue-depths",
            "2",
            "--rate",
            "500",
        ])
        .unwrap();
        let labels: Vec<String> = plan.cases.iter().map(Case::label).collect();
        assert_eq!(labels, ["mix90-4KiB qd2", "mix90-4KiB open500/s"]);
    }

    #[test]
    fn workload_files_parse_sizes_and_reject_unknown_fields() {
        let file = WorkloadFile::parse(
            "duration = \"2s\"\nfile_size = \"64MiB\"\n\n[[workload]]\nkind = \"rand-write\"\nblock_size = 8192\nqueue_depths = [2]\nopen_rate_ops_per_s = 100\n",
        )
        .unwrap();
        assert_eq!(file.workload.len(), 1);
        assert_eq!(
            file.workload[0].block_size.as_ref().unwrap().bytes(),
            Ok(8192)
        );
        assert_eq!(file.file_size.unwrap().bytes(), Ok(64 << 20));
        let err =
            WorkloadFile::parse("[[workload]]\nkind = \"rand-read\"\nblok_size = 1\n").unwrap_err();
        assert!(err.contains("blok_size"), "{err}");
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        let err = plan_of(&["-w", "rand-read", "--block-size", "1000"]).unwrap_err();
        assert!(err.contains("4KiB"), "{err}");
        assert!(plan_of(&["-w", "rand-read", "--queue-depths", "0"]).is_err());
        assert!(plan_of(&["--paths", "none", "--peers", "none"]).is_err());
    }
}
