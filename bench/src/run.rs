//! The run: prepare each target once (start the engine, prefill the peers'
//! data), then run every case on every target, case by case.

use crate::peers;
use crate::result::{Outcome, Resources};
use crate::targets::engine::EngineTargets;
use crate::targets::{Env, Target};
use crate::units;
use crate::usage::Snapshot;
use crate::{drain, hog};

/// How each target runs a case; targets that could not be prepared fail every case.
enum Runner {
    Engine,
    /// The control row without preallocation: an engine of its own.
    NoPrealloc(EngineTargets),
    Fio(peers::fio::Flavor),
    Dma(peers::dma::DmaPeer),
    SyncLoop,
    #[cfg(feature = "commonware")]
    Commonware,
    Unavailable(Outcome),
}

/// The raw peers' data file: the engine's own data blob file when the
/// engine runs (one file, the same extents, the same header page before the
/// data), else a file of their own, prefilled.
fn raw_data(env: &mut Env, engine: Option<&EngineTargets>) -> Result<(), String> {
    let plan = &env.plan;
    let raw_peers = plan
        .targets
        .iter()
        .any(|t| t.is_fio() || matches!(t, Target::Dma | Target::SyncLoop));
    if !raw_peers || plan.data_file_bytes == 0 {
        return Ok(());
    }
    if let Some(path) = engine.and_then(|e| e.data_file_path(&env.work_dir)) {
        env.progress.note(&format!(
            "raw peers: the engine's data file {}",
            path.display()
        ));
        env.raw_data_file = Some(path);
        return Ok(());
    }
    env.progress.note(&format!(
        "raw peers: prefilling {}",
        units::format_size(plan.data_file_bytes)
    ));
    peers::prefill_raw_file(&env.raw_data_path(), plan.data_file_bytes)
}

/// Prepares every target: starts the engine, prefills the peers' data.
/// Returns the environment the targets run in (with the raw data file).
fn prepare(env: &Env) -> (Option<EngineTargets>, Vec<(Target, Runner)>, Env) {
    let mut env = env.clone();
    let plan = env.plan.clone();
    let mut runners = Vec::new();
    let mut engine_error = None;
    let mut engine = None;
    if plan.targets.iter().any(|t| t.is_ours()) {
        match EngineTargets::start(&env, false) {
            Ok(started) => engine = Some(started),
            Err(e) => engine_error = Some(e),
        }
    }
    let raw_prefill = raw_data(&mut env, engine.as_ref());
    let failed = |error: &str| {
        Runner::Unavailable(Outcome::Failed {
            error: error.to_string(),
        })
    };
    for &target in &plan.targets {
        let runner = match target {
            Target::SameShardNoPrealloc => EngineTargets::start_without_preallocation(&env)
                .map_or_else(|e| failed(&e), Runner::NoPrealloc),
            ours if ours.is_ours() => match (&engine, &engine_error) {
                (Some(_), _) => Runner::Engine,
                (None, Some(e)) => failed(e),
                (None, None) => failed("engine not started"),
            },
            Target::Fio
            | Target::FioTuned
            | Target::FioBatched
            | Target::Dma
            | Target::SyncLoop => raw_runner(&env, target, &raw_prefill),
            #[cfg(feature = "commonware")]
            _ => match peers::commonware::prepare(&env, target) {
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
    (engine, runners, env)
}

/// The runner of a peer on the raw data file, once it is prefilled.
fn raw_runner(env: &Env, target: Target, raw_prefill: &Result<(), String>) -> Runner {
    let failed = |error: String| Runner::Unavailable(Outcome::Failed { error });
    if let Err(e) = raw_prefill {
        return failed(e.clone());
    }
    match target {
        fio if fio.is_fio() && peers::fio::version().is_none() => {
            env.progress
                .note("fio not on PATH: fio rows skipped (apt-get install fio)");
            Runner::Unavailable(Outcome::Skipped {
                reason: "fio not on PATH".into(),
            })
        }
        Target::Fio => Runner::Fio(peers::fio::Flavor::Plain),
        Target::FioTuned => Runner::Fio(peers::fio::Flavor::Tuned),
        Target::FioBatched => Runner::Fio(peers::fio::Flavor::Batched),
        Target::Dma => peers::dma::DmaPeer::start(env).map_or_else(failed, Runner::Dma),
        _ => Runner::SyncLoop,
    }
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
        (Runner::NoPrealloc(control), _) => control.run_case(env, target, index),
        (Runner::Fio(flavor), _) => peers::fio::run_case(env, index, *flavor),
        (Runner::Dma(peer), _) => peer.run_case(index),
        (Runner::SyncLoop, _) => peers::sync_loop::run_case(env, index),
        #[cfg(feature = "commonware")]
        (Runner::Commonware, _) => peers::commonware::run_case_on_runtime(env, target, index),
        (Runner::Unavailable(outcome), _) => outcome.clone(),
    }
}

/// Everything a run measured, per target one outcome per case.
pub struct RunOutput {
    pub by_target: Vec<(Target, Vec<Outcome>)>,
    /// Drains that gave up with dirty or writeback pages left.
    pub undrained: usize,
}

/// Runs one repeat of case `index` on one target, between a drain and the
/// resource snapshots; the CPU hog runs alongside when the case has one.
fn measured_run(
    env: &Env,
    engine: Option<&EngineTargets>,
    (target, runner): (Target, &Runner),
    index: usize,
    usage: &mut Resources,
) -> (Outcome, bool) {
    if let Some(reason) = target.skips(&env.plan.cases[index]) {
        return (Outcome::Skipped { reason }, true);
    }
    let drained = drain::drain(&env.work_dir);
    let hog = env.plan.cases[index]
        .cpu_hog
        .then(|| hog::CpuHog::start(env.peer_cpu));
    let before = Snapshot::now(env.disk_irqs.as_ref());
    let outcome = run_one(env, engine, target, runner, index);
    let mut spent = before.until(&Snapshot::now(env.disk_irqs.as_ref()));
    if let Some(hog) = hog {
        let (user_s, system_s) = hog.stop();
        spent.cpu_user_s = (spent.cpu_user_s - user_s).max(0.0);
        spent.cpu_system_s = (spent.cpu_system_s - system_s).max(0.0);
        spent.hog_cpu_s = user_s + system_s;
        spent.hog_on_cpu = Some(env.peer_cpu);
    }
    usage.add(&spent);
    (outcome, drained)
}

/// Prepares every target, runs every case on all of them, stops the engine.
/// Each case runs `plan.repeats` times; each time every target runs once,
/// back to back, in an order rotated by one per repeat, with a drain
/// before each, so drift of the machine and one target's leftovers do not
/// fall on the same target every time.
pub fn run_all(env: &Env) -> RunOutput {
    let (engine, runners, env) = prepare(env);
    let env = &env;
    let plan = &env.plan;
    let progress = &env.progress;
    let live: Vec<usize> = (0..runners.len())
        .filter(|&slot| !matches!(runners[slot].1, Runner::Unavailable(_)))
        .collect();
    progress.set_total(live.len() * plan.cases.len() * plan.repeats);
    let mut by_target: Vec<(Target, Vec<Outcome>)> = runners
        .iter()
        .map(|(t, _)| (*t, Vec::with_capacity(plan.cases.len())))
        .collect();
    let mut undrained = 0;
    for (index, case) in plan.cases.iter().enumerate() {
        let mut runs: Vec<Vec<Outcome>> = vec![Vec::with_capacity(plan.repeats); runners.len()];
        let mut usage = vec![Resources::default(); runners.len()];
        for repeat in 0..plan.repeats {
            for k in 0..live.len() {
                let slot = live[(k + repeat) % live.len()];
                let (target, runner) = &runners[slot];
                let label = format!("{} #{}/{}", case.label(), repeat + 1, plan.repeats);
                progress.step(target.name(), &label);
                let (outcome, drained) = measured_run(
                    env,
                    engine.as_ref(),
                    (*target, runner),
                    index,
                    &mut usage[slot],
                );
                undrained += usize::from(!drained);
                runs[slot].push(outcome);
            }
        }
        for (slot, (_, runner)) in runners.iter().enumerate() {
            let outcome = match runner {
                Runner::Unavailable(outcome) => outcome.clone(),
                _ => with_resources(
                    Outcome::aggregate(std::mem::take(&mut runs[slot])),
                    usage[slot],
                ),
            };
            by_target[slot].1.push(outcome);
        }
    }
    let controls = runners.into_iter().filter_map(|(_, runner)| match runner {
        Runner::NoPrealloc(control) => Some(control),
        _ => None,
    });
    for engine in engine.into_iter().chain(controls) {
        if let Err(e) = engine.shutdown() {
            progress.note(&format!("engine shutdown: {e}"));
        }
    }
    RunOutput {
        by_target,
        undrained,
    }
}

fn with_resources(mut outcome: Outcome, usage: Resources) -> Outcome {
    if let Outcome::Measured(summary) = &mut outcome {
        summary.resources = Some(usage);
    }
    outcome
}

/// Scaling mode: one case on 1..=N shards at once.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScalingRow {
    pub shards: usize,
    /// Summed over the shards, merged over the repeats.
    pub outcome: Outcome,
}

/// Scaling mode: every case of the plan on shards `0..n` at once for each
/// n in 1..=N (each shard driving its own partition), `plan.repeats` times
/// with a drain before each; per case and n the shards' ops summed.
pub fn run_scaling(env: &Env) -> Vec<Vec<ScalingRow>> {
    let plan = &env.plan;
    let engine = match EngineTargets::start(env, true) {
        Ok(engine) => engine,
        Err(error) => {
            let failed = ScalingRow {
                shards: 1,
                outcome: Outcome::Failed { error },
            };
            return vec![vec![failed]; plan.cases.len()];
        }
    };
    let shard_count = engine.shard_count();
    env.progress
        .set_total(plan.cases.len() * shard_count * plan.repeats);
    let mut by_case = Vec::with_capacity(plan.cases.len());
    for (index, case) in plan.cases.iter().enumerate() {
        let mut rows = Vec::with_capacity(shard_count);
        for shards in 1..=shard_count {
            let mut runs = Vec::with_capacity(plan.repeats);
            for repeat in 0..plan.repeats {
                drain::drain(&env.work_dir);
                let label = format!("{} #{}/{}", case.label(), repeat + 1, plan.repeats);
                env.progress.step(&format!("{shards} shard(s)"), &label);
                runs.push(Outcome::sum(engine.run_on_shards(env, index, shards)));
            }
            rows.push(ScalingRow {
                shards,
                outcome: Outcome::aggregate(runs),
            });
        }
        by_case.push(rows);
    }
    if let Err(e) = engine.shutdown() {
        env.progress.note(&format!("engine shutdown: {e}"));
    }
    by_case
}
