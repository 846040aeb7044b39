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

/// Queue depth of the interference suite's background writer.
pub const BACKGROUND_DEPTH: usize = 8;

/// Bulk work running on the same shard and data file for the whole of a
/// case's run (warm-up included): the interference suite's writer. Only
/// the case's own ops (the foreground) make the case's latencies; the
/// background's go to `Summary::background`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Background {
    pub workload: Workload,
    pub queue_depth: usize,
}

impl Background {
    /// `seq-write-128KiB qd8`.
    fn label(&self) -> String {
        format!("{} qd{}", self.workload.label(), self.queue_depth)
    }

    /// The background as a case of its own (bulk work, alone).
    pub fn case(&self) -> Case {
        let mut case = Case::new(
            self.workload.clone(),
            Load::Closed {
                queue_depth: self.queue_depth,
            },
        );
        case.bulk = true;
        case
    }
}

/// One measured unit: a workload under one load.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    pub workload: Workload,
    pub load: Load,
    /// A CPU-bound competitor runs on the measured shard's CPU (`hog`).
    pub cpu_hog: bool,
    /// Bulk work alongside (interference suite).
    pub background: Option<Background>,
    /// The case's own ops are bulk work: the engine target with I/O
    /// classes runs them in `IoClass::Throughput` (the background alone).
    pub bulk: bool,
}

impl Case {
    pub fn new(workload: Workload, load: Load) -> Case {
        Case {
            workload,
            load,
            cpu_hog: false,
            background: None,
            bulk: false,
        }
    }

    /// Whether some of the case's work is bulk work (its own or a background's).
    pub fn has_bulk_work(&self) -> bool {
        self.bulk || self.background.is_some()
    }

    /// The words after workload and load: ` +cpu-hog`, ` bulk`, ` +bg seq-write-128KiB qd8`.
    fn suffix(&self) -> String {
        let mut suffix = String::new();
        if self.cpu_hog {
            suffix.push_str(" +cpu-hog");
        }
        if self.bulk {
            suffix.push_str(" bulk");
        }
        if let Some(background) = &self.background {
            suffix.push_str(&format!(" +bg {}", background.label()));
        }
        suffix
    }

    /// `rand-read-4KiB qd1`, `rand-read-4KiB qd1 +cpu-hog`,
    /// `rand-read-4KiB qd1 +bg seq-write-128KiB qd8`.
    pub fn label(&self) -> String {
        format!(
            "{} {}{}",
            self.workload.label(),
            self.load.label(),
            self.suffix()
        )
    }

    /// A file-name-safe id: `rand-read-4KiB_qd1`, `rand-read-4KiB_open10000`,
    /// `rand-read-4KiB_qd1_bg_seq-write-128KiB_qd8`.
    pub fn id(&self) -> String {
        let load = self.load.label().replace("/s", "");
        let suffix = self.suffix().replace(" +", "_").replace(' ', "_");
        format!("{}_{load}{suffix}", self.workload.label())
    }
}

/// Everything a run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub cases: Vec<Case>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Runs of each case on every target.
    pub repeats: usize,
    /// Rate sweep: the p99 bound (µs) its open-loop cases are judged on.
    pub sweep_p99_us: Option<f64>,
    /// Size of the prefilled data file (the largest any case addresses).
    pub data_file_bytes: u64,
    pub targets: Vec<Target>,
    pub seed: u64,
    /// Synced ops use `WriteOptions::SYNC` where the target has it.
    pub sync_flag: bool,
    /// commonware's unsynced writes stay in the page cache (else they carry SYNC).
    pub commonware_cached: bool,
    pub profile: &'static str,
}

/// Defaults of a profile.
struct Profile {
    name: &'static str,
    repeats: usize,
    duration: Duration,
    warmup: Duration,
    file_size_bytes: u64,
    rate_ops_per_s: u64,
}

fn profile(cli: &Cli) -> Profile {
    if cli.quick {
        Profile {
            name: "quick",
            repeats: 2,
            duration: Duration::from_millis(150),
            warmup: Duration::from_millis(50),
            file_size_bytes: 256 << 20,
            rate_ops_per_s: 5_000,
        }
    } else if cli.long || cli.publish {
        Profile {
            name: if cli.long { "long" } else { "publish" },
            repeats: 5,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            file_size_bytes: if cli.long { 4 << 30 } else { 1 << 30 },
            rate_ops_per_s: 10_000,
        }
    } else if cli.suite == Some(Suite::Interference) {
        // A p99.9 per repeat needs thousands of foreground ops: 1 s repeats
        // (a depth-1 reader under the writer did 1,270-11,210 ops/s on the
        // dev VM, depending on the bounds). About five minutes.
        Profile {
            name: "interference",
            repeats: 5,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(100),
            file_size_bytes: 1 << 30,
            rate_ops_per_s: 10_000,
        }
    } else {
        // 5 repeats x 9 targets x 11 cases x (0.3 s + overhead): about 5 minutes.
        Profile {
            name: "standard",
            repeats: 5,
            duration: Duration::from_millis(200),
            warmup: Duration::from_millis(100),
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
    repeats: Option<usize>,
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
    /// A CPU-bound competitor on the measured shard's CPU.
    #[serde(default)]
    cpu_hog: bool,
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

/// The inputs every part of the plan reads.
struct Inputs<'a> {
    cli: &'a Cli,
    files: Vec<WorkloadFile>,
    shapes: Shapes,
    /// Depths from --queue-depths, else a workload file, else 1,4,32.
    sweep: Vec<usize>,
    rate_ops_per_s: u64,
}

fn inputs<'a>(cli: &'a Cli, profile: &Profile) -> Result<Inputs<'a>, String> {
    let files = cli
        .configs
        .iter()
        .map(|path| WorkloadFile::load(path))
        .collect::<Result<Vec<_>, _>>()?;
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
    let sweep = cli
        .queue_depths
        .clone()
        .or(files.iter().find_map(|f| f.queue_depths.clone()))
        .unwrap_or_else(|| vec![1, 4, 32]);
    let rate_ops_per_s = cli
        .rate
        .or(files.iter().find_map(|f| f.rate_ops_per_s))
        .unwrap_or(profile.rate_ops_per_s);
    Ok(Inputs {
        cli,
        files,
        shapes,
        sweep,
        rate_ops_per_s,
    })
}

/// A duration from the command line, else a workload file, else the profile.
fn timing(
    flag: Option<Duration>,
    files: &[WorkloadFile],
    pick: fn(&WorkloadFile) -> Option<&String>,
    default: Duration,
) -> Result<Duration, String> {
    match (flag, files.iter().find_map(pick)) {
        (Some(d), _) => Ok(d),
        (None, Some(text)) => parse_duration(text),
        (None, None) => Ok(default),
    }
}

/// The cases of a built-in suite. The standard suite keeps the cases the
/// targets are judged on (and one under a CPU hog) to fit its five repeats
/// in about five minutes; `--long` and `--suite all` run every depth.
fn suite_cases(suite: Suite, inputs: &Inputs) -> Vec<Case> {
    use WorkloadKind::*;
    if suite == Suite::Interference {
        return interference_cases(inputs);
    }
    let cli = inputs.cli;
    let every = cli.long || suite == Suite::All;
    let kinds: &[WorkloadKind] = match suite {
        Suite::Standard | Suite::All => <WorkloadKind as clap::ValueEnum>::value_variants(),
        Suite::Random => &[RandRead, RandWrite],
        Suite::Append => &[AppendSync, SmallAppend],
        Suite::Interference => &[],
    };
    let sweep = &inputs.sweep;
    let ends = vec![sweep[0], *sweep.last().unwrap_or(&1)];
    let mut cases = Vec::new();
    for &kind in kinds {
        let random = matches!(kind, RandRead | RandWrite);
        let mut depths: Vec<usize> = match kind {
            _ if every || cli.queue_depths.is_some() => sweep.clone(),
            _ if random => ends.clone(),
            Mix => vec![4],
            // Depth 8: appends that wait join one device write (issue 13,
            // item 4).
            SmallAppend => vec![1, 8],
            _ => vec![1],
        };
        depths.dedup();
        let open = (kind == RandRead && !cli.quick) || (every && matches!(kind, RandWrite | Mix));
        let rate = if open { inputs.rate_ops_per_s } else { 0 };
        let workload = inputs.shapes.workload(kind);
        for load in loads(&depths, rate, cli.max_in_flight) {
            cases.push(Case::new(workload.clone(), load));
        }
    }
    if matches!(suite, Suite::Standard | Suite::All | Suite::Random) {
        let mut hog = Case::new(
            inputs.shapes.workload(RandRead),
            Load::Closed { queue_depth: 1 },
        );
        hog.cpu_hog = true;
        cases.push(hog);
    }
    cases
}

/// The interference suite: 4 KiB random reads (the foreground) at depth 1
/// and in an open loop at --rate, each alone and under a background writer
/// of 128 KiB sequential writes at depth 8 on the same shard and file, and
/// that writer alone (as bulk work).
fn interference_cases(inputs: &Inputs) -> Vec<Case> {
    let background = Background {
        workload: inputs.shapes.workload(WorkloadKind::SeqWrite),
        queue_depth: BACKGROUND_DEPTH,
    };
    let foreground = inputs.shapes.workload(WorkloadKind::RandRead);
    let mut cases = Vec::new();
    for load in loads(&[1], inputs.rate_ops_per_s, inputs.cli.max_in_flight) {
        let alone = Case::new(foreground.clone(), load);
        let mut under = alone.clone();
        under.background = Some(background.clone());
        cases.extend([alone, under]);
    }
    cases.push(background.case());
    cases
}

/// The cases of --workload flags: every depth of the sweep, the open loop at
/// --rate, and the rate sweep's open loops.
fn flag_cases(inputs: &Inputs) -> Vec<Case> {
    let cli = inputs.cli;
    let mut cases = Vec::new();
    for &kind in &cli.workloads {
        let workload = inputs.shapes.workload(kind);
        let mut all = loads(&inputs.sweep, cli.rate.unwrap_or(0), cli.max_in_flight);
        if cli.sweep_p99_us.is_some() {
            all.extend(cli.sweep_rates.iter().map(|&rate_ops_per_s| Load::Open {
                rate_ops_per_s,
                max_in_flight: cli.max_in_flight,
            }));
        }
        cases.extend(
            all.into_iter()
                .map(|load| Case::new(workload.clone(), load)),
        );
    }
    cases
}

/// The cases of the workload files' `[[workload]]` entries.
fn file_cases(inputs: &Inputs) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for entry in inputs.files.iter().flat_map(|f| &f.workload) {
        let mut workload = inputs.shapes.workload(entry.kind);
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
        let depths = match (&inputs.cli.queue_depths, &entry.queue_depths) {
            (None, Some(depths)) => depths,
            _ => &inputs.sweep,
        };
        let rate = entry.open_rate_ops_per_s.unwrap_or(0);
        for load in loads(depths, rate, inputs.cli.max_in_flight) {
            let mut case = Case::new(workload.clone(), load);
            case.cpu_hog = entry.cpu_hog;
            cases.push(case);
        }
    }
    Ok(cases)
}

/// The targets of --paths and --peers, with same-shard's control rows
/// after it: with one I/O class when a case has bulk work, without
/// preallocation when a case appends.
fn targets(cli: &Cli, cases: &[Case]) -> Result<Vec<Target>, String> {
    let mut targets: Vec<Target> = Vec::new();
    for target in cli.paths.iter().filter_map(|p| p.target()) {
        targets.push(target);
        if target != Target::SameShard {
            continue;
        }
        if cases.iter().any(Case::has_bulk_work) {
            targets.push(Target::SameShardOneClass);
        }
        if cases.iter().any(|c| !c.workload.kind.uses_data_file()) {
            targets.push(Target::SameShardNoPrealloc);
        }
    }
    targets.extend(cli.peers.iter().filter_map(|p| p.target()));
    targets.dedup();
    if targets.is_empty() {
        return Err("nothing to measure: --paths none and --peers none".into());
    }
    Ok(targets)
}

/// Builds the plan, or says which input is wrong.
pub fn plan(cli: &Cli) -> Result<Plan, String> {
    let profile = profile(cli);
    let inputs = inputs(cli, &profile)?;
    let duration = timing(
        cli.duration,
        &inputs.files,
        |f| f.duration.as_ref(),
        profile.duration,
    )?;
    let warmup = timing(
        cli.warmup,
        &inputs.files,
        |f| f.warmup.as_ref(),
        profile.warmup,
    )?;
    let suite = cli.suite.or_else(|| {
        (cli.workloads.is_empty() && cli.configs.is_empty()).then_some(Suite::Standard)
    });
    let mut cases = suite.map_or_else(Vec::new, |suite| suite_cases(suite, &inputs));
    cases.extend(flag_cases(&inputs));
    cases.extend(file_cases(&inputs)?);
    if cli.cpu_hog {
        cases.iter_mut().for_each(|case| case.cpu_hog = true);
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
    let targets = targets(cli, &cases)?;
    Ok(Plan {
        cases,
        warmup,
        duration,
        repeats: cli
            .repeats
            .map(|n| n as usize)
            .or(inputs.files.iter().find_map(|f| f.repeats))
            .unwrap_or(profile.repeats)
            .max(1),
        sweep_p99_us: cli.sweep_p99_us,
        data_file_bytes,
        targets,
        seed: cli.seed,
        sync_flag: cli.sync_flag,
        commonware_cached: cli.commonware_cached,
        profile: profile.name,
    })
}

impl Plan {
    /// A human summary for --dry-run and the report header.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "profile {}: {} cases x {} targets x {} repeats, {} warm-up + {} each, data file {}\n",
            self.profile,
            self.cases.len(),
            self.targets.len(),
            self.repeats,
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

    /// Rough wall time: cases x targets x repeats x (warm-up + duration +
    /// start-up and drain), excluding prefill.
    pub fn estimated_s(&self) -> f64 {
        let per_run_s = (self.warmup + self.duration).as_secs_f64() + 0.08;
        per_run_s * (self.runs() * self.repeats) as f64
    }

    /// (case, target) pairs that run (the rest skip at once).
    fn runs(&self) -> usize {
        let runs_case = |case: &Case| {
            self.targets
                .iter()
                .filter(|t| t.skips(case).is_none())
                .count()
        };
        self.cases.iter().map(runs_case).sum()
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
    fn the_standard_suite_keeps_the_judged_cases_in_five_minutes() {
        let plan = plan_of(&[]).unwrap();
        let labels: Vec<String> = plan.cases.iter().map(Case::label).collect();
        for want in [
            "rand-read-4KiB qd1",
            "rand-read-4KiB qd32",
            "rand-read-4KiB qd1 +cpu-hog",
            "rand-read-4KiB open10000/s",
            "rand-write-4KiB qd32",
            "seq-read-128KiB qd1",
            "seq-write-128KiB qd1",
            "append-sync-4KiB qd1",
            "small-append-256B qd1",
            "small-append-256B qd8",
            "mix70-4KiB qd4",
        ] {
            assert!(
                labels.contains(&want.to_string()),
                "{want} missing from {labels:?}"
            );
        }
        assert_eq!(plan.data_file_bytes, 1 << 30);
        assert_eq!(plan.targets.len(), 11, "{:?}", plan.targets);
        assert_eq!(plan.targets[1], Target::SameShardNoPrealloc);
        assert_eq!(plan.repeats, 5);
        assert!(plan.estimated_s() < 300.0, "{}", plan.estimated_s());
        let publish = plan_of(&["--publish"]).unwrap();
        assert_eq!(publish.cases.len(), plan.cases.len());
        assert_eq!(publish.duration, Duration::from_secs(10));
        assert_eq!(plan_of(&["--quick", "--repeats", "3"]).unwrap().repeats, 3);
    }

    #[test]
    fn the_interference_suite_pairs_each_foreground_with_its_background() {
        let plan = plan_of(&["--suite", "interference"]).unwrap();
        assert_eq!(plan.duration, Duration::from_secs(1), "p99.9 per repeat");
        let labels: Vec<String> = plan.cases.iter().map(Case::label).collect();
        assert_eq!(
            labels,
            [
                "rand-read-4KiB qd1",
                "rand-read-4KiB qd1 +bg seq-write-128KiB qd8",
                "rand-read-4KiB open10000/s",
                "rand-read-4KiB open10000/s +bg seq-write-128KiB qd8",
                "seq-write-128KiB qd8 bulk",
            ]
        );
        assert_eq!(
            plan.cases[1].id(),
            "rand-read-4KiB_qd1_bg_seq-write-128KiB_qd8"
        );
        assert_eq!(plan.cases[4].id(), "seq-write-128KiB_qd8_bulk");
        assert_eq!(
            plan.targets[..2],
            [Target::SameShard, Target::SameShardOneClass]
        );
        assert!(!plan.targets.contains(&Target::SameShardNoPrealloc));
        let under = &plan.cases[1];
        assert!(Target::SameShardOneClass.skips(&plan.cases[0]).is_some());
        for runs in [Target::SameShard, Target::SameShardOneClass, Target::Fio] {
            assert_eq!(runs.skips(under), None, "{runs:?}");
        }
        assert!(Target::Dma.skips(under).is_some());
        assert!(plan.estimated_s() < 300.0, "{}", plan.estimated_s());
    }

    #[test]
    fn a_rate_sweep_adds_an_open_loop_per_rate() {
        let plan = plan_of(&[
            "-w",
            "rand-read",
            "--queue-depths",
            "1",
            "--sweep-p99-us",
            "500",
            "--sweep-rates",
            "1000,2000",
        ])
        .unwrap();
        let labels: Vec<String> = plan.cases.iter().map(Case::label).collect();
        assert_eq!(
            labels,
            [
                "rand-read-4KiB qd1",
                "rand-read-4KiB open1000/s",
                "rand-read-4KiB open2000/s"
            ]
        );
        assert_eq!(plan.sweep_p99_us, Some(500.0));
        let hogged = plan_of(&["-w", "rand-read", "--queue-depths", "1", "--cpu-hog"]).unwrap();
        assert_eq!(hogged.cases[0].label(), "rand-read-4KiB qd1 +cpu-hog");
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
            "duration = \"2s\"\nfile_size = \"64MiB\"\nrepeats = 3\n\n[[workload]]\nkind = \"rand-write\"\nblock_size = 8192\nqueue_depths = [2]\nopen_rate_ops_per_s = 100\ncpu_hog = true\n",
        )
        .unwrap();
        assert_eq!(file.workload.len(), 1);
        assert_eq!(file.repeats, Some(3));
        assert!(file.workload[0].cpu_hog);
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
    fn every_shipped_workload_file_plans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/bench");
        let mut planned = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let plan = plan_of(&["--config", path.to_str().unwrap()])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!plan.cases.is_empty(), "{}", path.display());
            planned += 1;
        }
        assert!(planned >= 4, "{planned} files in {}", dir.display());
        let hog = plan_of(&[
            "--config",
            dir.join("oversubscribed.toml").to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(hog.repeats, 5);
        assert_eq!(hog.cases.iter().filter(|c| c.cpu_hog).count(), 1);
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        let err = plan_of(&["-w", "rand-read", "--block-size", "1000"]).unwrap_err();
        assert!(err.contains("4KiB"), "{err}");
        assert!(plan_of(&["-w", "rand-read", "--queue-depths", "0"]).is_err());
        assert!(plan_of(&["--paths", "none", "--peers", "none"]).is_err());
    }
}
