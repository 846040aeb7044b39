//! Shared by the store's tests (`shards/tests/store/`: the crash and fault
//! simulations, the races) and the engine's simulation (`engine_sim.rs`):
//! one glommio executor for all seeds, seeds from the environment, a seeded
//! RNG, and the reporting that names the failing seed.
//!
//! - [`model`]: what one blob may show now and after a crash.
//! - [`harness`]: the store on a [`SimFs`](shardblob_shards::fs::sim::SimFs),
//!   every operation checked against the model (blob operations in `ops`,
//!   names, crash and post-crash checks in `names`).
//! - [`random`]: seeded random operation sequences.

#![allow(dead_code)]

pub mod concurrent;
mod concurrent_names;
mod concurrent_ops;
pub mod harness;
pub mod model;
mod names;
mod ops;
pub mod random;

use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
pub use shardblob_shards::rng::Rng;

/// Environment variable that reruns exactly one seed.
pub const SEED_VAR: &str = "SHARDBLOB_SEED";

thread_local! {
    /// The operations of the seed being run, printed when it fails.
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records one line of the current seed's history.
pub fn log(line: impl FnOnce() -> String) {
    LOG.with(|log| log.borrow_mut().push(line()));
}

/// Appends to the last line of the current seed's history.
pub fn log_more(more: impl FnOnce() -> String) {
    LOG.with(|log| {
        if let Some(last) = log.borrow_mut().last_mut() {
            last.push_str(&more());
        }
    });
}

/// The last `n` lines of the current seed's history.
fn history(n: usize) -> String {
    LOG.with(|log| {
        let log = log.borrow();
        let skip = log.len().saturating_sub(n);
        let lines: Vec<&str> = log[skip..].iter().map(String::as_str).collect();
        format!(
            "last {} of {} steps:\n  {}",
            lines.len(),
            log.len(),
            lines.join("\n  ")
        )
    })
}

/// One executor per test: they are expensive, seeds are cheap.
pub fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("a glommio executor")
}

fn env_number(var: &str) -> Option<u64> {
    std::env::var(var).ok().map(|v| {
        v.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number"))
    })
}

/// The one seed `SHARDBLOB_SEED` asks for, if set.
pub fn seed_override() -> Option<u64> {
    env_number(SEED_VAR)
}

/// Sets the first seed of the rotating slice (to replay a whole slice).
pub const SEED_BASE_VAR: &str = "SHARDBLOB_SEED_BASE";

/// The seeds to run: `SHARDBLOB_SEED=n` runs seed `n` alone; otherwise the
/// fixed seeds `0..count`, where `count` comes from `count_var` (the long
/// mode; `""` for none) or is `default_count`, plus a rotating slice of a
/// quarter as many seeds that starts somewhere new on every run
/// ([`seed_base`]: printed, and replayed with `SHARDBLOB_SEED_BASE`), so that
/// each CI run explores new seeds while the fixed ones keep every run
/// comparable. `found` are rotating seeds that once failed: they run with
/// the fixed ones from then on.
pub fn seeds(count_var: &str, default_count: u64, found: &[u64]) -> Vec<u64> {
    if let Some(seed) = seed_override() {
        return vec![seed];
    }
    let count = match count_var {
        "" => default_count,
        var => env_number(var).unwrap_or(default_count),
    };
    let rotating = (count / 4).max(1);
    let base = seed_base();
    announce(&format!(
        "seeds 0..{count} and rotating {base}..{} (replay the slice: {SEED_BASE_VAR}={base})",
        base.saturating_add(rotating)
    ));
    (0..count)
        .chain(found.iter().copied())
        .chain((base..).take(rotating as usize).filter(|&s| s >= count))
        .collect()
}

/// Where a run's rotating seeds start: `SHARDBLOB_SEED_BASE`, or new on
/// every run (the clock and the process id pick it, once per test binary, so
/// one base replays all of its tests), far above the fixed seeds.
pub fn seed_base() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        env_number(SEED_BASE_VAR).unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (1 << 32) + Rng::new(now ^ u64::from(std::process::id())).below(1 << 40)
        })
    })
}

/// Prints `line` on stderr past the test harness's capture (it takes only
/// `print!` and `eprint!`), so a passing run's log says which seeds it ran.
pub fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `one(seed)` for every seed of [`seeds`] on one executor.
pub fn run_seeds<F, Fut>(test: &str, count_var: &str, default_count: u64, one: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    run_seeds_and_found(test, count_var, default_count, &[], one);
}

/// [`run_seeds`], and the `found` seeds that once failed.
pub fn run_seeds_and_found<F, Fut>(
    test: &str,
    count_var: &str,
    default_count: u64,
    found: &[u64],
    one: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let seeds = seeds(count_var, default_count, found);
    run_cases(&executor(), test, seeds, one);
}

/// Runs `one(case)` for every case on one executor. A failure is re-raised
/// with its case (seed), how to rerun it, and its last steps.
pub fn run_cases<F, Fut>(executor: &LocalExecutor, test: &str, cases: Vec<u64>, one: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let current = std::cell::Cell::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        executor.run(async {
            for &case in &cases {
                current.set(Some(case));
                LOG.with(|log| log.borrow_mut().clear());
                one(case).await;
            }
        })
    }));
    if let Err(payload) = result {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".to_string());
        match current.get() {
            Some(seed) => panic!(
                "{test} failed at seed {seed}: {message}\n\
                 rerun this seed alone: {SEED_VAR}={seed} {}\n{}",
                rerun_command(),
                history(60)
            ),
            None => panic!("{test} failed before its first seed: {message}"),
        }
    }
    eprintln!("{test}: {} seeds passed", cases.len());
}

/// The command that runs the current test alone. libtest runs each test on
/// a thread named after it (its module path in the test binary, e.g.
/// `crash_sim::random_ops_with_crashes_keep_the_contract`).
fn rerun_command() -> String {
    let binary = format!(
        "cargo test -p {} --test {}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_CRATE_NAME")
    );
    match std::thread::current().name() {
        Some(name) if name != "main" => format!("{binary} -- --exact {name}"),
        _ => binary,
    }
}

/// The workloads' own random numbers, separate from the file system's
/// (another stream of the same seed), so both replay from the seed.
pub fn rng(seed: u64) -> Rng {
    Rng::new(seed ^ 0x5EED_0F5A_4DB1_0B0B)
}

/// Polls `op` up to `polls` times, yielding to the executor's other tasks
/// between polls; its output if it finished by then, else `None`.
pub async fn finished_within<T>(
    mut op: std::pin::Pin<&mut dyn Future<Output = T>>,
    polls: usize,
) -> Option<T> {
    for _ in 0..polls {
        if let Some(output) = futures_lite::future::poll_once(op.as_mut()).await {
            return Some(output);
        }
        futures_lite::future::yield_now().await;
    }
    None
}
