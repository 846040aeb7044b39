//! shardblob-bench: the tail-latency benchmark of shardblob.
//!
//! Runs a plan of cases (workload x load), each on every target back to back
//! — our three engine paths, then fio, raw glommio DmaFile and
//! commonware-runtime — and reports every case with all targets side by
//! side. See `--help` and bench/README.md.

mod cleanup;
mod cli;
mod irq;
mod load;
mod peers;
mod progress;
mod report;
mod result;
mod rt;
mod run;
mod suite;
mod targets;
mod units;
mod workdir;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::cli::Cli;
use crate::progress::Progress;
use crate::report::{Meta, Results};
use crate::result::Outcome;
use crate::targets::Env;

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

/// The shard that owns the benchmark partition, and why: `--shard`, or the
/// shard on the CPU that takes the data disk's interrupts (see `irq`).
fn measured_shard(
    requested: Option<usize>,
    shard_cpus: &[usize],
    data_dir: &std::path::Path,
) -> Result<(usize, String), String> {
    if let Some(shard) = requested {
        let cpu = shard_cpus.get(shard).ok_or_else(|| {
            format!(
                "--shard {shard}: the engine has {} shards",
                shard_cpus.len()
            )
        })?;
        return Ok((shard, format!("shard {shard} on CPU {cpu} (--shard)")));
    }
    let chosen = match irq::completion_cpu(data_dir) {
        Ok((cpu, disk)) => match shard_cpus.iter().position(|&c| c == cpu) {
            Some(shard) => (
                shard,
                format!("shard {shard} on CPU {cpu}, which takes {disk}'s interrupts"),
            ),
            None => (
                0,
                format!(
                    "shard 0 on CPU {}: no shard is on CPU {cpu}, which takes {disk}'s interrupts",
                    shard_cpus[0]
                ),
            ),
        },
        Err(why) => (
            0,
            format!(
                "shard 0 on CPU {} (interrupt CPU unknown: {why})",
                shard_cpus[0]
            ),
        ),
    };
    Ok(chosen)
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
    let engine_config = match targets::engine::load_config(cli.engine_config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: engine configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // The dma peer shares the CPU of the shard that owns the benchmark partition.
    let shard_cpus = engine_config
        .validate()
        .map_or_else(|_| vec![0], |resolved| resolved.shard_cpus.clone());
    let (shard, shard_placement) = match measured_shard(cli.shard, &shard_cpus, &cli.data_dir) {
        Ok(choice) => choice,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shard_cpu = shard_cpus[shard];
    let work_dir = match workdir::make_work_dir(&cli.data_dir, &stamp) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: data directory: {e}");
            return ExitCode::from(2);
        }
    };
    cleanup::remove_on_interrupt(work_dir.clone(), cli.keep_data);
    eprintln!(
        "shardblob-bench: {} cases x {} targets, about {:.0} s; data in {}",
        plan.cases.len(),
        plan.targets.len(),
        plan.estimated_s(),
        work_dir.display()
    );
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
        shard,
        engine_config,
        progress: progress.clone(),
    };

    let by_target = run::run_all(&env);
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
            shard_placement,
            engine_settings: format!("{:?}", env.engine_config),
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
