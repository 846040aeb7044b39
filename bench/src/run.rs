//! The run: prepare each target once (start the engine, prefill the peers'
//! data), then run every case on every target, case by case.

use crate::peers;
use crate::result::Outcome;
use crate::targets::engine::EngineTargets;
use crate::targets::{Env, Target};
use crate::units;

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

/// Prepares every target, runs every case on all of them, stops the engine.
/// Each case runs on all targets back to back, so drift of the machine over
/// the run does not fall between the rows of one case.
pub fn run_all(env: &Env) -> Vec<(Target, Vec<Outcome>)> {
    let plan = &env.plan;
    let progress = &env.progress;
    let (engine, runners) = prepare(env);
    let running = runners
        .iter()
        .filter(|(_, r)| !matches!(r, Runner::Unavailable(_)))
        .count();
    progress.set_total(running * plan.cases.len());
    let mut by_target: Vec<(Target, Vec<Outcome>)> = runners
        .iter()
        .map(|(t, _)| (*t, Vec::with_capacity(plan.cases.len())))
        .collect();
    for (index, case) in plan.cases.iter().enumerate() {
        for (slot, (target, runner)) in runners.iter().enumerate() {
            if !matches!(runner, Runner::Unavailable(_)) {
                progress.step(target.name(), &case.label());
            }
            let outcome = run_one(env, engine.as_ref(), *target, runner, index);
            by_target[slot].1.push(outcome);
        }
    }
    if let Some(engine) = engine {
        if let Err(e) = engine.shutdown() {
            progress.note(&format!("engine shutdown: {e}"));
        }
    }
    by_target
}
