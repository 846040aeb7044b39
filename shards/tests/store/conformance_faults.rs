//! The conformance suite with faults injected (issue 17, item 5): the same
//! checks the DMA store and every engine path pass, on the simulated file
//! system failing its calls.
//!
//! - Every call fails in turn: for each check of the suite and each index
//!   `n` of the file-system calls that check makes, a fresh store runs the
//!   check with `Faults::at_op(n)`. The fault must really be injected
//!   (exactly one), and the check must pass (the store absorbed it: a
//!   drop's trim, a cleanup) or return an I/O error (or `BlobPoisoned`,
//!   after the failed sync of a dropped `start_sync`) on the check's
//!   partition (the suite checks that it also names the blob the failed
//!   call concerns). A wrong value or a panic fails the case. Then, faults
//!   off, the store recovers: the partition is removed and the check
//!   passes again on the same store.
//! - Random faults (`Faults::random`) over seeds: the whole suite on one
//!   store, with the same rule.
//!
//! Each check runs on its own fresh disk rather than the whole suite per
//! fault: the checks use separate partitions, so a fault in one cannot
//! reach another, and a case costs one check, not the whole suite.
//!
//! `SHARDBLOB_SEED=n` reruns case `n`: for the every-call test, case
//! `check * 1_000_000 + op` (check: its index in `conformance::CHECKS`);
//! for the random test, the seed. `SHARDBLOB_CONFORMANCE_FAULT_SEEDS` sets
//! the number of random-fault seeds.

use crate::common;

use std::cell::RefCell;
use std::path::Path;

use common::{run_cases, run_seeds};
use shardblob_shards::conformance::{self, CHECKS};
use shardblob_shards::fs::sim::{Faults, SimFs};
use shardblob_shards::fs::FileSystem;
use shardblob_shards::name::is_tombstone;
use shardblob_shards::{Error, ShardStore, Storage};

/// Case number of (check index, failing op) in the every-call test.
const CASE_STRIDE: u64 = 1_000_000;
/// Yields after a check, so that work it left running (a dropped
/// `start_sync`, a handle's last drop) makes its calls before counting.
const SETTLE_YIELDS: usize = 64;

fn partition(check: &str) -> String {
    format!("f-{check}")
}

/// What one run of checks did, and the store it left.
struct Run {
    result: Result<(), Error>,
    ops: u64,
    injected: u64,
    store: ShardStore<SimFs>,
    fs: SimFs,
}

/// Runs the checks `checks` on a fresh simulated disk with `faults`.
async fn run_checks(checks: &[&str], seed: u64, faults: Faults) -> Run {
    let fs = SimFs::new(seed);
    fs.set_faults(faults);
    let store = ShardStore::new(fs.clone(), "/");
    let mut result = Ok(());
    for check in checks {
        result = conformance::run_check(&store, &partition, check).await;
        if result.is_err() {
            break;
        }
    }
    for _ in 0..SETTLE_YIELDS {
        futures_lite::future::yield_now().await;
    }
    Run {
        result,
        ops: fs.op_count(),
        injected: fs.injected_faults(),
        store,
        fs,
    }
}

/// After a run with faults, with faults off: every partition the run left
/// is removed, and then the checks pass again on the same store. A failed
/// call left no name held open, no wait that never ends, and nothing on
/// disk in the way of a removal or of a new blob of the same name.
async fn rerun_checks(run: &Run, checks: &[&str]) {
    let (store, fs) = (&run.store, &run.fs);
    fs.set_faults(Faults::default());
    let root = fs
        .list_dir(Path::new("/"))
        .expect("list the data directory");
    for entry in root.iter().filter(|e| !is_tombstone(&e.name)) {
        let p = entry.name.to_str().expect("a partition name");
        let removed = store.remove(p, None).await;
        removed.unwrap_or_else(|e| panic!("remove of {p} after the run: {e}"));
    }
    for check in checks {
        let again = conformance::run_check(store, &partition, check).await;
        again.unwrap_or_else(|e| panic!("check {check} again after the run: {e}"));
    }
}

/// The checks passed, or returned an I/O error on one of their partitions
/// (or `BlobPoisoned`, whose cause is one: a sync the suite did not await,
/// a dropped `start_sync`, may be the call that failed).
fn assert_passed_or_io_error(result: &Result<(), Error>, checks: &[&str], context: &str) {
    match result {
        Ok(()) => {}
        Err(Error::Io { partition: p, .. } | Error::BlobPoisoned { partition: p, .. }) => {
            let ours = checks.iter().any(|check| *p == partition(check));
            assert!(ours, "{context}: an I/O error on another partition: {p}");
        }
        Err(other) => panic!("{context}: an error that is not an I/O error: {other}"),
    }
}

/// Every call of a check of at most this many calls fails in turn; of a
/// longer one (the 64 concurrent writers: about 4,900 calls, each case a
/// whole run of the check), this many: its first 64 and last 64 calls, and
/// 128 spread evenly over the rest from a start that rotates between runs.
/// `SHARDBLOB_CONFORMANCE_ALL_CALLS=1` fails every call of every check
/// (about 80 s in a debug build).
const FAILING_CALLS_PER_CHECK_MAX: u64 = 256;
const ALL_CALLS_VAR: &str = "SHARDBLOB_CONFORMANCE_ALL_CALLS";

/// The indexes of the calls of a check of `calls` calls that fail in turn.
fn failing_calls(calls: u64, base: u64) -> Vec<u64> {
    let all = std::env::var(ALL_CALLS_VAR).is_ok_and(|v| v == "1");
    if all || calls <= FAILING_CALLS_PER_CHECK_MAX {
        return (0..calls).collect();
    }
    let edge = FAILING_CALLS_PER_CHECK_MAX / 4;
    let spread = FAILING_CALLS_PER_CHECK_MAX - 2 * edge;
    let stride = (calls - 2 * edge) / spread;
    let start = edge + base % stride;
    let middle = (0..spread).map(|i| start + i * stride);
    (0..edge).chain(middle).chain(calls - edge..calls).collect()
}

/// Where the spread calls start: `SHARDBLOB_SEED_BASE`, or new on every
/// run (printed, to replay).
fn rotating_base() -> u64 {
    let base = common::seed_base();
    common::announce(&format!(
        "conformance_faults: spread calls from base {base} (replay: {}={base})",
        common::SEED_BASE_VAR
    ));
    base
}

/// The number of file-system calls each check makes without faults.
fn calls_per_check(executor: &glommio::LocalExecutor) -> Vec<u64> {
    executor.run(async {
        let mut calls = Vec::with_capacity(CHECKS.len());
        for check in CHECKS {
            let run = run_checks(&[check], 0, Faults::default()).await;
            run.result.expect("the check passes without faults");
            assert!(run.ops < CASE_STRIDE, "{check}: {} calls", run.ops);
            calls.push(run.ops);
        }
        calls
    })
}

#[test]
fn every_call_of_every_check_can_fail() {
    let executor = common::executor();
    let calls = calls_per_check(&executor);
    eprintln!("conformance_faults: calls per check {calls:?}");
    let cases: Vec<u64> = match common::seed_override() {
        Some(case) => vec![case],
        None => {
            let base = rotating_base();
            (0..CHECKS.len() as u64)
                .flat_map(|check| {
                    let ops = failing_calls(calls[check as usize], base);
                    ops.into_iter().map(move |op| check * CASE_STRIDE + op)
                })
                .collect()
        }
    };
    // (cases, passed, returned an error)
    let counts = RefCell::new((0u64, 0u64, 0u64));
    run_cases(
        &executor,
        "conformance_faults every_call_of_every_check_can_fail",
        cases,
        |case| {
            let counts = &counts;
            async move {
                let (check, fail_at) = (CHECKS[(case / CASE_STRIDE) as usize], case % CASE_STRIDE);
                common::log(|| format!("check {check}, call {fail_at} fails"));
                let run = run_checks(&[check], case, Faults::at_op(fail_at)).await;
                let context = format!("check {check}, call {fail_at} failing");
                assert_eq!(run.injected, 1, "{context}: the fault was injected");
                assert!(run.ops > fail_at, "{context}: only {} calls", run.ops);
                assert_passed_or_io_error(&run.result, &[check], &context);
                rerun_checks(&run, &[check]).await;
                let mut counts = counts.borrow_mut();
                counts.0 += 1;
                counts.1 += u64::from(run.result.is_ok());
                counts.2 += u64::from(run.result.is_err());
            }
        },
    );
    let (cases, passed, failed) = counts.into_inner();
    eprintln!("conformance_faults: {cases} cases: {passed} passed, {failed} returned an I/O error");
    if common::seed_override().is_none() {
        assert!(failed * 2 > cases, "most faults surface as errors");
    }
}

#[test]
fn random_faults_through_the_whole_suite() {
    // (seeds, faults injected, seeds that returned an error)
    let counts = RefCell::new((0u64, 0u64, 0u64));
    run_seeds(
        "conformance_faults random_faults_through_the_whole_suite",
        "SHARDBLOB_CONFORMANCE_FAULT_SEEDS",
        8,
        |seed| {
            let counts = &counts;
            async move {
                // From about one fault per 5,000 calls to one per 250.
                let per_million = 200 + 800 * (seed % 5) as u32;
                common::log(|| format!("{per_million} faults per million calls"));
                let run = run_checks(CHECKS, seed, Faults::random(per_million)).await;
                assert_passed_or_io_error(&run.result, CHECKS, &format!("seed {seed}"));
                rerun_checks(&run, CHECKS).await;
                let mut counts = counts.borrow_mut();
                counts.0 += 1;
                counts.1 += run.injected;
                counts.2 += u64::from(run.result.is_err());
            }
        },
    );
    let (seeds, injected, failed) = counts.into_inner();
    eprintln!("conformance_faults random: {seeds} seeds, {injected} faults, {failed} errors");
    if seeds > 1 {
        assert!(
            injected > 0 && failed > 0,
            "faults were injected and surfaced"
        );
    }
}
