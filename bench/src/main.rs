//! shardblob-bench: the tail-latency benchmark of shardblob.
//!
//! Runs a plan of cases (workload x load), each on every target back to back
//! — our three engine paths, then fio, raw glommio DmaFile and
//! commonware-runtime — and reports every case with all targets side by
//! side. See `--help` and bench/README.md.

mod cleanup;
mod cli;
mod drain;
mod hog;
mod irq;
mod load;
mod machine;
mod peers;
mod progress;
mod report;
mod result;
mod rt;
mod run;
mod suite;
mod targets;
mod units;
mod usage;
mod workdir;
mod workload;

use std::path::Path;
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

/// The plan, and the hand-written Markdown of --markdown-prose.
fn plan_and_prose(cli: &Cli) -> Result<(suite::Plan, Option<String>), String> {
    let plan = suite::plan(cli)?;
    let prose = cli
        .markdown_prose
        .as_ref()
        .map(std::fs::read_to_string)
        .transpose()
        .map_err(|e| format!("--markdown-prose: {e}"))?;
    Ok((plan, prose))
}

/// Runs the plan: the scaling runs with --scaling, else every case on every target.
fn measure(cli: &Cli, env: &Env) -> (run::RunOutput, Vec<Vec<run::ScalingRow>>) {
    if cli.scaling {
        let output = run::RunOutput {
            by_target: Vec::new(),
            undrained: 0,
        };
        (output, run::run_scaling(env))
    } else {
        (run::run_all(env), Vec::new())
    }
}

/// Whether any engine case failed (the exit status says so).
fn ours_failed(results: &Results) -> bool {
    let failed = |o: &Outcome| matches!(o, Outcome::Failed { .. });
    results
        .by_target
        .iter()
        .filter(|(t, _)| t.is_ours())
        .any(|(_, outcomes)| outcomes.iter().any(failed))
        || results
            .scaling
            .iter()
            .flatten()
            .any(|row| failed(&row.outcome))
}

/// What the run recorded about itself before and while it ran.
struct Run {
    stamp: String,
    load_average_start: String,
    shard_placement: String,
    undrained: usize,
}

/// The report's metadata, read at the end of the run.
fn meta(cli: &Cli, env: &Env, run: Run) -> Meta {
    let environment = machine::Machine::probe(&env.work_dir);
    let plan = &env.plan;
    Meta {
        schema_version: report::SCHEMA_VERSION,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_utc: run.stamp,
        git_commit: environment.git_commit.clone(),
        environment,
        load_average_start: run.load_average_start,
        load_average_end: load_average(),
        fio_version: peers::fio::version(),
        engine_config: cli
            .engine_config
            .as_ref()
            .map_or("embedded default".into(), |p| p.display().to_string()),
        shard_placement: run.shard_placement,
        engine_settings: format!("{:?}", env.engine_config),
        io_scheduler: format!("{:?}", env.engine_config.io_scheduler),
        warmup_ms: plan.warmup.as_millis(),
        duration_ms: plan.duration.as_millis(),
        repeats: plan.repeats,
        undrained: run.undrained,
        data_file_bytes: plan.data_file_bytes,
    }
}

/// Writes the report files and the Markdown copy asked for; says where.
fn write_reports(results: &Results, out_dir: &std::path::Path, markdown: Option<&std::path::Path>) {
    match results.write_files(out_dir) {
        Ok(files) => eprintln!("\nwrote {}", files.join(", ")),
        Err(e) => eprintln!("\nerror: {e}"),
    }
    if let Some(path) = markdown {
        match std::fs::write(path, report::markdown::render(results)) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("error: write {}: {e}", path.display()),
        }
    }
}

/// The targets' environment: the engine configuration, the measured shard
/// and its CPU, the run's data directory. Exits with a message on bad input.
fn environment(cli: &Cli, plan: &suite::Plan, stamp: &str) -> Result<(Env, String), String> {
    let engine_config = targets::engine::load_config(cli.engine_config.as_deref())
        .map_err(|e| format!("engine configuration: {e}"))?;
    // The dma peer shares the CPU of the shard that owns the benchmark partition.
    let shard_cpus = engine_config
        .validate()
        .map_or_else(|_| vec![0], |resolved| resolved.shard_cpus.clone());
    let (shard, shard_placement) = measured_shard(cli.shard, &shard_cpus, &cli.data_dir)?;
    let work_dir =
        workdir::make_work_dir(&cli.data_dir, stamp).map_err(|e| format!("data directory: {e}"))?;
    let step_estimate = plan.warmup + plan.duration + Duration::from_millis(80);
    let env = Env {
        plan: plan.clone(),
        work_dir,
        peer_spin: cli
            .peer_spin_us
            .map(Duration::from_micros)
            .unwrap_or_else(|| engine_config.spin_before_park().unwrap_or(Duration::ZERO)),
        peer_cpu: cli.peer_cpu.unwrap_or(shard_cpus[shard]),
        shard,
        disk_irqs: irq::DiskIrqs::of(&cli.data_dir).ok(),
        raw_data_file: None,
        engine_config,
        progress: Arc::new(Progress::new(
            plan.cases.len() * plan.targets.len() * plan.repeats,
            step_estimate,
        )),
    };
    Ok((env, shard_placement))
}

/// `--prose-into`: the prose placed into an earlier report without prose,
/// written to `out` (--markdown).
fn place_prose(report: &Path, prose: &str, out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(report)
        .map_err(|e| format!("--prose-into {}: {e}", report.display()))?;
    if report::markdown::has_prose(&text) {
        return Err(format!(
            "--prose-into {}: the report has prose already; give the run's own results.md",
            report.display()
        ));
    }
    std::fs::write(out, report::markdown::with_prose(&text, prose))
        .map_err(|e| format!("--markdown {}: {e}", out.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (plan, prose) = match plan_and_prose(&cli) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // clap requires --markdown and --markdown-prose with --prose-into.
    if let (Some(report), Some(prose), Some(out)) = (&cli.prose_into, &prose, &cli.markdown) {
        return match place_prose(report, prose, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
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
    let (env, shard_placement) = match environment(&cli, &plan, &stamp) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let work_dir = env.work_dir.clone();
    cleanup::remove_on_interrupt(work_dir.clone(), cli.keep_data);
    eprintln!(
        "shardblob-bench: {} cases x {} targets x {} repeats, about {:.0} s; data in {}",
        plan.cases.len(),
        plan.targets.len(),
        plan.repeats,
        plan.estimated_s(),
        work_dir.display()
    );
    let (output, scaling) = measure(&cli, &env);
    env.progress.finish();
    let run = Run {
        stamp,
        load_average_start,
        shard_placement,
        undrained: output.undrained,
    };
    let results = Results {
        meta: meta(&cli, &env, run),
        plan,
        by_target: output.by_target,
        scaling,
        prose,
    };
    print!("{}", report::table::render(&results));
    write_reports(&results, &out_dir, cli.markdown.as_deref());
    if !cli.keep_data {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    if ours_failed(&results) {
        eprintln!("error: some engine cases failed (see the notes in the table)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
