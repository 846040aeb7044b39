//! shardblob-bench: the tail-latency benchmark of shardblob.
//!
//! Runs a plan of cases (workload x load) on each target in turn — our three
//! engine paths, then fio, raw glommio DmaFile and commonware-runtime — and
//! reports every case with all targets side by side. See `--help`.

mod cli;
mod load;
mod peers;
mod progress;
mod report;
mod result;
mod rt;
mod suite;
mod targets;
mod units;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::cli::Cli;
use crate::progress::Progress;
use crate::report::{Meta, Results};
use crate::result::Outcome;
use crate::targets::engine::EngineTargets;
use crate::targets::{Env, Target};

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Refuses a data directory on tmpfs, where O_DIRECT fails.
fn check_filesystem(dir: &Path) -> Result<(), String> {
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: path holds a NUL byte", dir.display()))?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!(
            "{}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    if stat.f_type as i64 == TMPFS_MAGIC {
        return Err(format!(
            "{} is on tmpfs, which has no O_DIRECT: pass --data-dir on ext4 or xfs",
            dir.display()
        ));
    }
    Ok(())
}

fn make_work_dir(parent: &Path, stamp: &str) -> Result<PathBuf, String> {
    check_filesystem(parent)?;
    let dir = parent.join(format!("shardblob-bench-{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// How each target runs a case; targets that could not be prepared fail every case.
enum Runner {
    Engine,
    Fio,
    Dma,
    #[cfg(feature = "commonware")]
    Commonware,
    Unavailable(Outcome),
}

/// Prepares every target: starts the engine, prefills the peers' data.
fn prepare(env: &Env) -> (Option<EngineTargets>, Vec<(Target, Runner)>) {
    let plan = &env.plan;
    let mut runners = Vec::new();
    let mut engine_error = None;
    let mut engine = None;
    if plan.targets.iter().any(|t| t.is_ours()) {
        match EngineTargets::start(env) {
            Ok(started) => engine = Some(started),
            Err(e) => engine_error = Some(e),
        }
    }
    let raw_prefill = if plan
        .targets
        .iter()
        .any(|t| matches!(t, Target::Fio | Target::Dma))
        && plan.data_file_bytes > 0
    {
        env.progress.note(&format!(
            "raw peers: prefilling {}",
            units::format_size(plan.data_file_bytes)
        ));
        peers::prefill_raw_file(&env.raw_data_path(), plan.data_file_bytes)
    } else {
        Ok(())
    };
    let failed = |error: &str| {
        Runner::Unavailable(Outcome::Failed {
            error: error.to_string(),
        })
    };
    for &target in &plan.targets {
        let runner = match target {
            ours if ours.is_ours() => match (&engine, &engine_error) {
                (Some(_), _) => Runner::Engine,
                (None, Some(e)) => failed(e),
                (None, None) => failed("engine not started"),
            },
            Target::Fio | Target::Dma => match (&raw_prefill, target) {
                (Err(e), _) => failed(e),
                (Ok(()), Target::Fio) if peers::fio::version().is_none() => {
                    env.progress
                        .note("fio not on PATH: fio rows skipped (apt-get install fio)");
                    Runner::Unavailable(Outcome::Skipped {
                        reason: "fio not on PATH".into(),
                    })
                }
                (Ok(()), Target::Fio) => Runner::Fio,
                (Ok(()), _) => Runner::Dma,
            },
            #[cfg(feature = "commonware")]
            _ => match peers::commonware::prepare(env, target) {
                Ok(()) => Runner::Commonware,
                Err(e) => failed(&e),
            },
            #[cfg(not(feature = "commonware"))]
            _ => Runner::Unavailable(Outcome::Skipped {
                reason: "built without the `commonware` feature".into(),
            }),
        };
        runners.push((target, runner));
    }
    (engine, runners)
}

/// Runs case `index` on one target.
fn run_one(
    env: &Env,
    engine: Option<&EngineTargets>,
    target: Target,
    runner: &Runner,
    index: usize,
) -> Outcome {
    match (runner, engine) {
        (Runner::Engine, Some(engine)) => engine.run_case(env, target, index),
        (Runner::Engine, None) => Outcome::Failed {
            error: "engine not started".into(),
        },
        (Runner::Fio, _) => peers::fio::run_case(env, index),
        (Runner::Dma, _) => peers::dma::run_case_on_executor(env, index),
        #[cfg(feature = "commonware")]
        (Runner::Commonware, _) => peers::commonware::run_case_on_runtime(env, target, index),
        (Runner::Unavailable(outcome), _) => outcome.clone(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match suite::plan(&cli) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.dry_run {
        print!("{}", plan.describe());
        println!("estimated time: {:.0} s plus prefill", plan.estimated_s());
        return ExitCode::SUCCESS;
    }
    let load_average_start = load_average();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = units::utc_stamp(started_unix_s);
    let out_dir = cli
        .out_dir
        .clone()
        .unwrap_or_else(|| suite::default_out_dir(started_unix_s));
    let work_dir = match make_work_dir(&cli.data_dir, &stamp) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: data directory: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "shardblob-bench: {} cases x {} targets, about {:.0} s; data in {}",
        plan.cases.len(),
        plan.targets.len(),
        plan.estimated_s(),
        work_dir.display()
    );
    let engine_config = match targets::engine::load_config(cli.engine_config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: engine configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // The dma peer shares the CPU of the shard that owns the benchmark partition.
    let shard_cpu = match engine_config.validate() {
        Ok(resolved) => match resolved.shard_cpus.get(cli.shard) {
            Some(&cpu) => cpu,
            None => {
                eprintln!(
                    "error: --shard {}: the engine has {} shards",
                    cli.shard,
                    resolved.shards()
                );
                return ExitCode::from(2);
            }
        },
        Err(_) => 0,
    };
    let step_estimate = plan.warmup + plan.duration + Duration::from_millis(100);
    let progress = Arc::new(Progress::new(
        plan.cases.len() * plan.targets.len(),
        step_estimate,
    ));
    let env = Env {
        plan: plan.clone(),
        work_dir: work_dir.clone(),
        peer_spin: cli
            .peer_spin_us
            .map(Duration::from_micros)
            .unwrap_or_else(|| engine_config.spin_before_park().unwrap_or(Duration::ZERO)),
        peer_cpu: cli.peer_cpu.unwrap_or(shard_cpu),
        shard: cli.shard,
        engine_config,
        progress: progress.clone(),
    };

    // Every case runs on all targets back to back, so drift of the machine
    // over the run does not fall between the rows of one case.
    let (engine, runners) = prepare(&env);
    let mut by_target: Vec<(Target, Vec<Outcome>)> = runners
        .iter()
        .map(|(t, _)| (*t, Vec::with_capacity(plan.cases.len())))
        .collect();
    for (index, case) in plan.cases.iter().enumerate() {
        for (slot, (target, runner)) in runners.iter().enumerate() {
            if !matches!(runner, Runner::Unavailable(_)) {
                progress.step(target.name(), &case.label());
            }
            let outcome = run_one(&env, engine.as_ref(), *target, runner, index);
            by_target[slot].1.push(outcome);
        }
    }
    if let Some(engine) = engine {
        if let Err(e) = engine.shutdown() {
            progress.note(&format!("engine shutdown: {e}"));
        }
    }
    progress.finish();

    let results = Results {
        meta: Meta {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_utc: stamp,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: kernel(),
            load_average_start,
            load_average_end: load_average(),
            fio_version: peers::fio::version(),
            engine_config: cli
                .engine_config
                .as_ref()
                .map_or("embedded default".into(), |p| p.display().to_string()),
            warmup_ms: plan.warmup.as_millis(),
            duration_ms: plan.duration.as_millis(),
            data_file_bytes: plan.data_file_bytes,
        },
        plan,
        by_target,
    };
    print!("{}", report::table::render(&results));
    match results.write_files(&out_dir) {
        Ok(files) => eprintln!("\nwrote {}", files.join(", ")),
        Err(e) => eprintln!("\nerror: {e}"),
    }
    if !cli.keep_data {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    let ours_failed = results
        .by_target
        .iter()
        .filter(|(t, _)| t.is_ours())
        .any(|(_, outcomes)| outcomes.iter().any(|o| matches!(o, Outcome::Failed { .. })));
    if ours_failed {
        eprintln!("error: some engine cases failed (see the notes in the table)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
