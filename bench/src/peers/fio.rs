//! fio, the yardstick: io_uring, O_DIRECT, one job, the same shape as our
//! case, on a file laid out as the engine's (a 4 KiB header page before the
//! data, `--offset`), appending with the engine's preallocation
//! (`--fallocate=keep`, unwritten extents past the end). Three variants
//! ([`Flavor`]): fio with its defaults; fio tuned as a shard runs (pinned
//! to the shard's CPU, `--fixedbufs --registerfiles`, and `--hipri`,
//! completions polled, where the disk has poll queues); and tuned fio
//! submitting in batches as glommio does (closed loops deeper than 1), so
//! a reader can tell what the device makes of batched submission from
//! what the engine costs (issue 13, item 6). fio has no busy-polled reaping on an
//! interrupt-driven disk: `--iodepth_batch_complete_min=0`, which reads as
//! one, makes fio wait for a completion before each submission, so the job
//! runs at depth 1 whatever its iodepth (fio issue #167; the 2026-11-29
//! runs before this was dropped show it: 16,134 reads/s at "depth 32" with
//! a 59.1 µs median). fio reports latency from submission (`lat_ns`, with
//! `lat_percentiles`), which for closed loops equals our op latency. For open
//! loops fio paces with `rate_iops` but still measures from submission, not
//! from the intended start, so its open-loop rows are not corrected for
//! coordinated omission (the row says so). Append + sync runs as write +
//! fdatasync on a growing file; fio times the two separately, so the row's
//! percentiles add the write's and the sync's (an upper bound). Small
//! appends (256 B) cannot be O_DIRECT I/O: skipped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::load::Load;
use crate::peers::{HEADER_PAGE_BYTES, PREALLOCATE_BYTES};
use crate::result::{
    Caveat, Outcome, PerRepeat, Spread, Summary, SPECTRUM_PERCENTILES, TABLE_PERCENTILES,
};
use crate::suite::{Case, Plan};
use crate::targets::Env;
use crate::workload::WorkloadKind;

/// `fio --version`, or `None` when fio is not on PATH.
pub fn version() -> Option<String> {
    let output = Command::new("fio").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn fio_time(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

/// The percentile list fio reports (table and spectrum percentiles, at most 20).
fn percentile_list() -> String {
    let mut all: Vec<f64> = SPECTRUM_PERCENTILES
        .iter()
        .copied()
        .filter(|&p| p < 100.0)
        .collect();
    all.extend(TABLE_PERCENTILES);
    all.sort_by(f64::total_cmp);
    all.dedup();
    all.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Which fio runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// fio's defaults.
    Plain,
    /// As a shard runs: on the shard's CPU, registered buffers and files,
    /// polled completions where the disk can.
    Tuned,
    /// Tuned, and submitting as glommio's executor does: every I/O queued
    /// since the last submission goes in one `io_uring_enter`
    /// (`--iodepth_batch_submit` = the depth, which fio submits early when
    /// the queue is full, so after reaping k completions it submits k I/Os
    /// at once) and up to the depth is reaped at once.
    Batched,
}

/// How fio is set up for one run.
pub struct Variant {
    /// Which fio: plain, tuned or batched.
    pub flavor: Flavor,
    pub cpu: usize,
    /// The disk has poll queues: completions can be polled (`--hipri`).
    pub io_poll: bool,
}

impl Variant {
    fn args(&self) -> Vec<String> {
        if self.flavor == Flavor::Plain {
            return Vec::new();
        }
        let mut args: Vec<String> = vec![
            format!("--cpus_allowed={}", self.cpu),
            "--fixedbufs".into(),
            "--registerfiles".into(),
        ];
        if self.io_poll {
            args.push("--hipri".into());
        }
        args
    }
}

/// Whether the disk holding `dir` has poll queues (`queue/io_poll` is 1).
pub fn disk_polls(dir: &Path) -> bool {
    crate::machine::disk_of(dir)
        .ok()
        .and_then(|d| std::fs::read_to_string(d.join("queue/io_poll")).ok())
        .is_some_and(|text| text.trim() == "1")
}

/// Bytes fio preallocates for an append case: a generous bound on what the
/// case appends (50,000 ops/s for warm-up and duration), in whole steps of
/// the engine's preallocation.
fn append_size_bytes(block_size_bytes: u64, plan: &Plan) -> u64 {
    let seconds = (plan.warmup + plan.duration).as_secs_f64().max(0.1);
    let bytes = (seconds * 50_000.0) as u64 * block_size_bytes;
    bytes.div_ceil(PREALLOCATE_BYTES).max(1) * PREALLOCATE_BYTES
}

/// The access pattern of a workload in fio's terms, or why fio cannot do it.
fn pattern_args(w: &crate::workload::Workload) -> Result<Vec<String>, String> {
    let rw = |mode: &str| Ok(vec![format!("--rw={mode}")]);
    match w.kind {
        WorkloadKind::RandRead => rw("randread"),
        WorkloadKind::RandWrite => rw("randwrite"),
        WorkloadKind::SeqRead => rw("read"),
        WorkloadKind::SeqWrite => rw("write"),
        WorkloadKind::Mix => Ok(vec![
            "--rw=randrw".into(),
            format!("--rwmixread={}", w.read_percent),
            "--unified_rw_reporting=mixed".into(),
        ]),
        WorkloadKind::AppendSync => Ok([
            "--rw=write",
            "--fdatasync=1",
            "--file_append=1",
            "--fallocate=keep",
        ]
        .map(String::from)
        .to_vec()),
        WorkloadKind::SmallAppend => {
            Err("fio cannot do O_DIRECT appends smaller than a sector".into())
        }
    }
}

/// fio's arguments for `case` on `file` and, when the case has a
/// background, a second job running it on the same file at the same time;
/// or why fio cannot run it.
pub fn job_args(
    case: &Case,
    plan: &Plan,
    file: &Path,
    variant: &Variant,
) -> Result<Vec<String>, String> {
    let mut args = one_job_args(case, plan, file, variant)?;
    if let Some(background) = &case.background {
        let second = one_job_args(&background.case(), plan, file, variant)?;
        args.push("--name=background".into());
        args.extend(second.into_iter().skip(1).filter(|a| a != OUTPUT_FORMAT));
    }
    Ok(args)
}

/// Where fio's report goes (a global option, given once).
const OUTPUT_FORMAT: &str = "--output-format=json";

/// fio's arguments for one job of `case` on `file`, the job's name first.
fn one_job_args(
    case: &Case,
    plan: &Plan,
    file: &Path,
    variant: &Variant,
) -> Result<Vec<String>, String> {
    let w = &case.workload;
    let mut args = vec![
        "--name=shardblob-bench".to_string(),
        format!("--filename={}", file.display()),
        "--ioengine=io_uring".into(),
        "--direct=1".into(),
        "--thread".into(),
        format!("--bs={}", w.block_size_bytes),
        "--time_based".into(),
        format!("--runtime={}", fio_time(plan.duration)),
        format!("--ramp_time={}", fio_time(plan.warmup)),
        "--lat_percentiles=1".into(),
        "--clat_percentiles=0".into(),
        format!("--percentile_list={}", percentile_list()),
        OUTPUT_FORMAT.into(),
    ];
    args.extend(pattern_args(w)?);
    if w.kind.uses_data_file() {
        args.push(format!("--offset={HEADER_PAGE_BYTES}"));
        args.push(format!("--size={}", w.file_size_bytes));
    } else {
        // A growing file after its header page (appends start at the
        // file's end), preallocated past the end (KEEP_SIZE) as the engine
        // does, though at once rather than in steps, with room never to
        // wrap during the run.
        args.push(format!(
            "--size={}",
            append_size_bytes(w.block_size_bytes, plan)
        ));
    }
    args.extend(variant.args());
    match case.load {
        Load::Closed { queue_depth } => {
            args.push(format!("--iodepth={queue_depth}"));
            if variant.flavor == Flavor::Batched {
                args.push(format!("--iodepth_batch_submit={queue_depth}"));
                args.push(format!("--iodepth_batch_complete_max={queue_depth}"));
            }
        }
        Load::Open {
            rate_ops_per_s,
            max_in_flight,
        } => {
            args.push(format!("--iodepth={}", max_in_flight.min(1024)));
            args.push(format!("--rate_iops={rate_ops_per_s}"));
        }
    }
    Ok(args)
}

fn number(value: &Value, path: &[&str]) -> Result<f64, String> {
    let mut v = value;
    for key in path {
        v = v
            .get(key)
            .ok_or_else(|| format!("fio JSON has no {}", path.join(".")))?;
    }
    v.as_f64()
        .ok_or_else(|| format!("fio JSON {} is not a number", path.join(".")))
}

/// Latency (µs) at `percentile` from a fio `lat_ns` object.
fn percentile_us(lat_ns: &Value, percentile: f64) -> Result<f64, String> {
    if percentile >= 100.0 {
        return number(lat_ns, &["max"]).map(|ns| ns / 1e3);
    }
    let key = format!("{percentile:.6}");
    number(lat_ns, &["percentile", &key]).map(|ns| ns / 1e3)
}

/// The jobs of fio's JSON output (text before the JSON is ignored), if none failed.
fn jobs(output: &str) -> Result<Vec<Value>, String> {
    let start = output.find('{').ok_or("fio printed no JSON")?;
    let mut json: Value =
        serde_json::from_str(&output[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    let jobs = match json.get_mut("jobs").map(Value::take) {
        Some(Value::Array(jobs)) if !jobs.is_empty() => jobs,
        _ => return Err("fio JSON has no jobs".into()),
    };
    for job in &jobs {
        let error = number(job, &["error"]).unwrap_or(0.0);
        if error != 0.0 {
            return Err(format!("fio job failed with error {error}"));
        }
    }
    Ok(jobs)
}

/// Reads a case's numbers out of fio's JSON output (text before the JSON
/// is ignored): the first job's, and the second's as the background's.
pub fn parse(output: &str, case: &Case) -> Result<Summary, String> {
    let jobs = jobs(output)?;
    let mut summary = job_summary(&jobs[0], case)?;
    if let Some(background) = &case.background {
        let job = jobs.get(1).ok_or("fio JSON has no background job")?;
        summary.background = Some(Box::new(job_summary(job, &background.case())?));
    }
    Ok(summary)
}

/// A case's numbers from one job of fio's JSON output.
fn job_summary(job: &Value, case: &Case) -> Result<Summary, String> {
    let section = match case.workload.kind {
        WorkloadKind::RandRead | WorkloadKind::SeqRead => "read",
        WorkloadKind::Mix => "mixed",
        _ => "write",
    };
    let io = job
        .get(section)
        .ok_or_else(|| format!("fio JSON has no {section} section"))?;
    let lat = io.get("lat_ns").ok_or("fio JSON has no lat_ns")?;
    let sync_lat = (case.workload.kind == WorkloadKind::AppendSync)
        .then(|| job.get("sync").and_then(|s| s.get("lat_ns")))
        .flatten();
    let at = |p: f64| -> Result<f64, String> {
        let sync_us = match sync_lat {
            Some(sync) => percentile_us(sync, p)?,
            None => 0.0,
        };
        Ok(percentile_us(lat, p)? + sync_us)
    };
    let ops_per_s = number(io, &["iops"])?;
    let mut notes = Vec::new();
    let mut caveats = Vec::new();
    if sync_lat.is_some() {
        notes.push(
            "write and fdatasync latencies added per percentile (an upper bound); \
             sync-loop is the per-op reference"
                .to_string(),
        );
        caveats.push(Caveat::Summed);
    }
    if matches!(case.load, Load::Open { .. }) {
        notes.push("open-loop latency from submission, not from intended start".to_string());
    }
    let mean_sync_us = sync_lat.map_or(Ok(0.0), |s| number(s, &["mean"]).map(|ns| ns / 1e3))?;
    let (p50_us, p99_us, p999_us) = (at(50.0)?, at(99.0)?, at(99.9)?);
    Ok(Summary {
        ops_per_s,
        mb_per_s: ops_per_s * case.workload.block_size_bytes as f64 / 1e6,
        ops_per_s_spread: Spread::single(ops_per_s),
        p50_us,
        p50_us_spread: Spread::single(p50_us),
        p90_us: at(90.0)?,
        p99_us,
        p99_us_spread: Spread::single(p99_us),
        p999_us,
        // Kept for merging; `merge` shows it only with enough samples.
        p9999_us: Some(at(99.99)?),
        max_us: at(100.0)?,
        mean_us: number(lat, &["mean"])? / 1e3 + mean_sync_us,
        samples: number(lat, &["N"])? as u64,
        spectrum: SPECTRUM_PERCENTILES
            .iter()
            .map(|&p| at(p).map(|us| (p, us)))
            .collect::<Result<_, _>>()?,
        repeats: 1,
        per_repeat: PerRepeat::single(ops_per_s, p50_us, p99_us, p999_us),
        notes,
        caveats,
        max_issue_lag_us: 0.0,
        late_ops: 0,
        uncorrected: None,
        resources: None,
        background: None,
        histogram_ns: None,
        uncorrected_ns: None,
    })
}

/// Runs case `index` with fio (the caller checked that fio is on PATH).
pub fn run_case(env: &Env, index: usize, flavor: Flavor) -> Outcome {
    let case = &env.plan.cases[index];
    let fresh = !case.workload.kind.uses_data_file();
    let file = if fresh {
        env.work_dir
            .join("raw")
            .join(format!("fio-append-{index}.bin"))
    } else {
        env.raw_data_path()
    };
    let variant = Variant {
        flavor,
        cpu: env.peer_cpu,
        io_poll: disk_polls(&env.work_dir),
    };
    let args = match job_args(case, &env.plan, &file, &variant) {
        Ok(args) => args,
        Err(reason) => return Outcome::Skipped { reason },
    };
    if fresh {
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&file, crate::targets::pattern(HEADER_PAGE_BYTES as usize)) {
            return Outcome::Failed {
                error: format!("fio: create {}: {e}", file.display()),
            };
        }
    }
    let output = Command::new("fio").args(&args).output();
    if fresh {
        let _ = std::fs::remove_file(&file);
    }
    match output {
        Ok(out) if out.status.success() => match parse(&String::from_utf8_lossy(&out.stdout), case)
        {
            Ok(summary) => Outcome::Measured(Box::new(summary)),
            Err(error) => Outcome::Failed { error },
        },
        Ok(out) => Outcome::Failed {
            error: format!(
                "fio exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        },
        Err(e) => Outcome::Failed {
            error: format!("fio: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Target;
    use crate::workload::Workload;

    fn case(kind: WorkloadKind, load: Load) -> Case {
        Case::new(
            Workload {
                kind,
                block_size_bytes: 4096,
                file_size_bytes: 1 << 30,
                read_percent: 70,
                sync_every_bytes: 1 << 20,
            },
            load,
        )
    }

    const PLAIN: Variant = Variant {
        flavor: Flavor::Plain,
        cpu: 1,
        io_poll: false,
    };

    fn lat(scale: f64) -> String {
        let mut percentiles = Vec::new();
        for p in SPECTRUM_PERCENTILES.iter().chain(&TABLE_PERCENTILES) {
            if *p < 100.0 {
                percentiles.push(format!("\"{p:.6}\": {}", ((p * 1000.0) * scale) as u64));
            }
        }
        format!(
            "{{\"min\": 1000, \"max\": {}, \"mean\": {}, \"N\": 12345, \"percentile\": {{{}}}}}",
            (200_000.0 * scale) as u64,
            (40_000.0 * scale) as u64,
            percentiles.join(", ")
        )
    }

    fn output(section: &str, with_sync: bool) -> String {
        let sync = if with_sync {
            format!(", \"sync\": {{\"total_ios\": 0, \"lat_ns\": {}}}", lat(0.5))
        } else {
            String::new()
        };
        format!(
            "fio: note: some warning\n{{\"fio version\": \"fio-3.33\", \"jobs\": [{{\"jobname\": \"b\", \"error\": 0, \
             \"{section}\": {{\"iops\": 22400.5, \"bw_bytes\": 91750400, \"lat_ns\": {}}}{sync}}}]}}",
            lat(1.0)
        )
    }

    #[test]
    fn parses_ops_and_latency_percentiles() {
        let c = case(WorkloadKind::RandRead, Load::Closed { queue_depth: 1 });
        let s = parse(&output("read", false), &c).unwrap();
        assert_eq!(s.ops_per_s, 22400.5);
        assert!((s.mb_per_s - 22400.5 * 4096.0 / 1e6).abs() < 1e-9);
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p99_us, 99.0);
        assert!((s.p9999_us.unwrap() - 99.99).abs() < 1e-9);
        assert_eq!(s.max_us, 200.0);
        assert_eq!(s.samples, 12345);
        assert_eq!(s.spectrum.len(), SPECTRUM_PERCENTILES.len());
        assert!(s.notes.is_empty());
    }

    #[test]
    fn append_sync_adds_the_sync_latency() {
        let c = case(WorkloadKind::AppendSync, Load::Closed { queue_depth: 1 });
        let s = parse(&output("write", true), &c).unwrap();
        assert_eq!(s.p50_us, 75.0);
        assert_eq!(s.max_us, 300.0);
        assert_eq!(s.notes.len(), 1);
        assert_eq!(s.caveats, [Caveat::Summed]);
        assert!(!s.comparable());
    }

    #[test]
    fn mix_reads_the_unified_section_and_errors_are_reported() {
        let c = case(WorkloadKind::Mix, Load::Closed { queue_depth: 4 });
        assert!(parse(&output("mixed", false), &c).is_ok());
        let err = parse(&output("read", false), &c).unwrap_err();
        assert!(err.contains("mixed"), "{err}");
        assert!(parse("fio: command not found", &c).is_err());
        let failed = output("mixed", false).replace("\"error\": 0", "\"error\": 5");
        assert!(parse(&failed, &c).unwrap_err().contains("error 5"));
    }

    /// The plan of `-w rand-read`.
    fn plan() -> Plan {
        let cli =
            <crate::cli::Cli as clap::Parser>::try_parse_from(["b", "-w", "rand-read"]).unwrap();
        crate::suite::plan(&cli).unwrap()
    }

    fn assert_has(args: &[String], wants: &[&str]) {
        for want in wants {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
    }

    #[test]
    fn job_args_follow_the_case() {
        let plan = plan();
        let open = case(
            WorkloadKind::RandWrite,
            Load::Open {
                rate_ops_per_s: 5000,
                max_in_flight: 64,
            },
        );
        let args = job_args(&open, &plan, Path::new("/x/data.bin"), &PLAIN).unwrap();
        assert_has(
            &args,
            &[
                "--rw=randwrite",
                "--rate_iops=5000",
                "--iodepth=64",
                "--direct=1",
                "--ioengine=io_uring",
                "--filename=/x/data.bin",
                "--offset=4096",
            ],
        );
        let append = case(WorkloadKind::AppendSync, Load::Closed { queue_depth: 1 });
        let tuned = Variant {
            flavor: Flavor::Tuned,
            ..PLAIN
        };
        let args = job_args(&append, &plan, Path::new("/x/a.bin"), &tuned).unwrap();
        assert_has(
            &args,
            &[
                "--fdatasync=1",
                "--file_append=1",
                "--fallocate=keep",
                "--cpus_allowed=1",
                "--fixedbufs",
                "--registerfiles",
            ],
        );
        assert!(!args.iter().any(|a| a == "--hipri"));
        // fio waits for at least one completion per pass when this is 0,
        // which holds the job at depth 1 whatever its iodepth (fio#167).
        assert!(!args
            .iter()
            .any(|a| a.starts_with("--iodepth_batch_complete_min")));
        let size: u64 = args
            .iter()
            .find_map(|a| a.strip_prefix("--size="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(size % PREALLOCATE_BYTES, 0);
        let mut small = case(WorkloadKind::SmallAppend, Load::Closed { queue_depth: 1 });
        small.workload.block_size_bytes = 256;
        assert!(job_args(&small, &plan, Path::new("/x/s.bin"), &PLAIN).is_err());
        assert!(percentile_list().split(':').count() <= 20);
    }

    #[test]
    fn the_batched_variant_submits_and_reaps_a_depth_at_a_time() {
        let plan = plan();
        let batched = Variant {
            flavor: Flavor::Batched,
            ..PLAIN
        };
        let deep = case(WorkloadKind::RandRead, Load::Closed { queue_depth: 32 });
        let args = job_args(&deep, &plan, Path::new("/x/d.bin"), &batched).unwrap();
        assert_has(
            &args,
            &[
                "--iodepth=32",
                "--iodepth_batch_submit=32",
                "--iodepth_batch_complete_max=32",
                "--fixedbufs",
                "--registerfiles",
            ],
        );
        let tuned = Variant {
            flavor: Flavor::Tuned,
            ..PLAIN
        };
        let args = job_args(&deep, &plan, Path::new("/x/d.bin"), &tuned).unwrap();
        assert!(!args.iter().any(|a| a.starts_with("--iodepth_batch")));
        let shallow = case(WorkloadKind::RandRead, Load::Closed { queue_depth: 1 });
        assert!(Target::FioBatched.skips(&shallow).is_some());
        assert!(Target::FioBatched.skips(&deep).is_none());
    }

    /// A foreground case under a 128 KiB sequential writer at depth 8.
    fn under_background() -> Case {
        let mut under = case(WorkloadKind::RandRead, Load::Closed { queue_depth: 1 });
        let mut writer = under.workload.clone();
        writer.kind = WorkloadKind::SeqWrite;
        writer.block_size_bytes = 128 << 10;
        under.background = Some(crate::suite::Background {
            workload: writer,
            queue_depth: 8,
        });
        under
    }

    #[test]
    fn a_background_is_a_second_job_on_the_same_file() {
        let plan = plan();
        let args = job_args(&under_background(), &plan, Path::new("/x/d.bin"), &PLAIN).unwrap();
        let second = args.iter().position(|a| a == "--name=background").unwrap();
        let (first, background) = args.split_at(second);
        assert!(first.contains(&"--rw=randread".to_string()), "{first:?}");
        assert_has(
            background,
            &[
                "--rw=write",
                "--iodepth=8",
                "--bs=131072",
                "--filename=/x/d.bin",
            ],
        );
        assert_eq!(args.iter().filter(|a| *a == OUTPUT_FORMAT).count(), 1);
        let job = |section: &str, scale: f64| {
            format!(
                "{{\"jobname\": \"j\", \"error\": 0, \"{section}\": {{\"iops\": {}, \"lat_ns\": {}}}}}",
                1000.0 * scale,
                lat(scale)
            )
        };
        let text = format!(
            "{{\"jobs\": [{}, {}]}}",
            job("read", 1.0),
            job("write", 2.0)
        );
        let s = parse(&text, &under_background()).unwrap();
        assert_eq!(s.ops_per_s, 1000.0);
        let behind = s.background.unwrap();
        assert_eq!(behind.ops_per_s, 2000.0);
        assert!((behind.mb_per_s - 2000.0 * 131072.0 / 1e6).abs() < 1e-9);
        let one_job = format!("{{\"jobs\": [{}]}}", job("read", 1.0));
        assert!(parse(&one_job, &under_background()).is_err());
    }
}
