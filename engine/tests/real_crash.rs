//! Real crashes (issue 6, point 3): a child process writes and syncs through
//! the engine on the real DMA path and is killed with SIGKILL at a random
//! moment; the parent then starts an engine on the same data_dir in-process
//! and checks every byte the contract promises.
//!
//! How it works:
//! - The test binary re-executes itself (`current_exe() --exact crash_child`)
//!   with `SHARDBLOB_CRASH_CHILD=<dir>` and `SHARDBLOB_CRASH_SEED=<seed>`.
//!   The `crash_child` test does nothing unless that variable is set.
//! - The child opens two blobs (in two partitions, so with two shards they
//!   may live on different shards) and drives each from its own thread with
//!   a deterministic, seed-derived workload: unaligned and aligned writes,
//!   appends, vectored writes, writes with `WriteOptions::SYNC`, resizes up
//!   and down, `sync`, reads checked against its model, and now and then a
//!   remove + reopen (a fresh empty blob).
//! - Progress goes to a log file with one `write(2)` per line, made before
//!   the child goes on: `s <blob> <i>` before operation `i` starts, `d <blob>
//!   <i>` after a durable operation (sync, SYNC write, remove + reopen)
//!   returned `Ok`. The page cache outlives a SIGKILL, so the log is exact.
//! - The parent kills the child after a random delay (sometimes during
//!   startup, mostly while the workload runs), waits for it (the kernel
//!   finishes a dead task's io_uring requests before it is reaped, and its
//!   flock goes with it), then replays the same workload from the seed up to
//!   the last started operation and derives, byte by byte, what the contract
//!   allows: bytes covered by the last completed `sync` or a later completed
//!   SYNC write are exact; bytes no operation touched since that sync are
//!   unchanged; bytes a truncation touched are old or zero; bytes an
//!   unsynced or unfinished write touched may be anything; bytes past
//!   everything ever written are zero (the store may leave zero padding up to
//!   the next 4 KiB boundary). The reopened length lies between the durable
//!   length and the highest end reached, rounded up to 4 KiB.
//! - A kill is not a power loss: the page cache and every completed system
//!   call survive it. So the parent also checks the stronger model of
//!   `expected_after_kill`: every byte of every write that returned `Ok`
//!   before the kill reads back exactly, synced or not, unless the one
//!   operation that may still have been in flight (the last started one of
//!   that blob) overlaps it. The run counts the unsynced bytes only this
//!   check pins and fails if there were none.
//! - The work continues across kills: each cycle reopens the same two blobs
//!   and starts from what the parent found there (and synced). The child
//!   reports the length and a hash of what it read at start, which must match
//!   the parent's copy.
//!
//! A failure names the seed; `SHARDBLOB_CRASH_SEED=<seed>` reruns the same
//! workloads (the kill moments differ from run to run).

mod support;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use shardblob::{Blob, Client, Config, Engine, Storage, WriteOptions};
use shardblob_shards::rng::{splitmix64, Rng};
use support::kill::{
    complete_lines, env_number, files_open_under, fresh_seed, open_journal, report, seed_from_env,
    Victim, WorkDir,
};

const CHILD_ENV: &str = "SHARDBLOB_CRASH_CHILD";
const SEED_ENV: &str = "SHARDBLOB_CRASH_SEED";
const SHARDS_ENV: &str = "SHARDBLOB_CRASH_SHARDS";

/// SIGKILLs that must land on a running child.
const KILLS_MIN: usize = 50;
/// The parent stops after this many kills...
const KILLS_TARGET: usize = 80;
/// ... or this many cycles ...
const CYCLES_MAX: usize = 150;
/// ... or after this long, whichever comes first.
const TIME_BUDGET: Duration = Duration::from_secs(150);
/// How long a child may take to open its blobs.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Operations one child runs per blob if it is never killed.
const CHILD_OPS_MAX: u64 = 100_000;
/// A blob longer than this is cut back.
const BLOB_LIMIT: u64 = 160 << 10;
const BLOCK: u64 = 4096;

/// The blobs of the workload: (partition, name).
const BLOBS: [(&str, &[u8]); 2] = [("crash-a", b"first"), ("crash-b", b"\x00second")];

/// The workload seed of blob `blob` in cycle `cycle`.
fn blob_seed(seed: u64, cycle: usize, blob: usize) -> u64 {
    splitmix64(seed ^ splitmix64((cycle as u64) << 8 | blob as u64))
}

/// FNV-1a: a hash of a blob's content, to compare the child's and the
/// parent's view of a cycle's starting point.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[derive(Clone, Debug)]
enum Op {
    /// Writes `data` at `offset`, handed over in pieces cut at `cuts`.
    Write {
        offset: u64,
        data: Vec<u8>,
        cuts: Vec<usize>,
        sync: bool,
    },
    Resize(u64),
    Sync,
    /// Reads a range and compares it with the model (child side only).
    Read {
        offset: u64,
        len: usize,
    },
    /// Drops the handle, removes the blob and opens it again, empty.
    Recreate,
}

impl Op {
    /// Whether a completed run of this operation is reported as durable.
    fn durable(&self) -> bool {
        matches!(self, Op::Write { sync: true, .. } | Op::Sync | Op::Recreate)
    }

    /// A short description (no data) for failure reports.
    fn describe(&self) -> String {
        match self {
            Op::Write {
                offset,
                data,
                cuts,
                sync,
            } => format!(
                "write {offset}..{} ({} bytes, {} pieces{})",
                offset + data.len() as u64,
                data.len(),
                cuts.len() + 1,
                if *sync { ", SYNC" } else { "" }
            ),
            Op::Resize(len) => format!("resize {len}"),
            Op::Sync => "sync".into(),
            Op::Read { offset, len } => format!("read {offset}+{len}"),
            Op::Recreate => "remove + reopen".into(),
        }
    }
}

/// One blob's deterministic workload and the content it leads to.
struct Workload {
    rng: Rng,
    model: Vec<u8>,
}

impl Workload {
    fn new(seed: u64, base: Vec<u8>) -> Workload {
        Workload {
            rng: Rng::new(seed),
            model: base,
        }
    }

    fn write(&mut self, sync: bool) -> Op {
        let len = self.model.len() as u64;
        let rng = &mut self.rng;
        let (offset, size) = match rng.below(4) {
            // append
            0 => (len, 1 + rng.below(6000)),
            // small, anywhere (up to a little past the end)
            1 => (rng.below(len + 8192), 1 + rng.below(600)),
            // aligned whole blocks
            2 => (
                rng.below(len / BLOCK + 2) * BLOCK,
                (1 + rng.below(4)) * BLOCK,
            ),
            // medium, anywhere
            _ => (rng.below(len + 8192), 1 + rng.below(12_000)),
        };
        let data = rng.bytes(size as usize);
        let cuts = if rng.below(5) == 0 {
            let mut cuts: Vec<usize> = (0..1 + rng.below(2))
                .map(|_| rng.below(size + 1) as usize)
                .collect();
            cuts.sort_unstable();
            cuts
        } else {
            Vec::new()
        };
        Op::Write {
            offset,
            data,
            cuts,
            sync,
        }
    }

    /// The next operation, chosen from the current content.
    fn next(&mut self) -> Op {
        let len = self.model.len() as u64;
        if len > BLOB_LIMIT {
            return Op::Resize(self.rng.below(len / 2));
        }
        match self.rng.below(1000) {
            0..=449 => self.write(false),
            450..=599 => self.write(true),
            600..=679 => {
                if self.rng.below(2) == 0 {
                    Op::Resize(self.rng.below(len + 1))
                } else {
                    Op::Resize(len + self.rng.below(10_000))
                }
            }
            680..=899 => Op::Sync,
            900..=996 => {
                let offset = self.rng.below(len + 1);
                let len = self.rng.below((len - offset).min(20_000) + 1) as usize;
                Op::Read { offset, len }
            }
            _ => Op::Recreate,
        }
    }

    /// Applies a completed operation to the model.
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { offset, data, .. } => {
                let start = *offset as usize;
                let end = start + data.len();
                if self.model.len() < end {
                    self.model.resize(end, 0);
                }
                self.model[start..end].copy_from_slice(data);
            }
            Op::Resize(len) => self.model.resize(*len as usize, 0),
            Op::Sync | Op::Read { .. } => {}
            Op::Recreate => self.model.clear(),
        }
    }
}

// ---------------------------------------------------------------- child --

/// The child side: runs only when `SHARDBLOB_CRASH_CHILD` is set (the parent
/// test sets it); in a normal test run it returns at once.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let seed: u64 = env_number(SEED_ENV);
    let cycle: usize = env_number("SHARDBLOB_CRASH_CYCLE");
    let shards: usize = env_number(SHARDS_ENV);
    let log = open_journal(&dir.join("progress.log"));
    let engine = Engine::start(Config {
        data_dir: dir.join("data"),
        shards,
        ..Config::default()
    })
    .expect("child engine starts");
    let workers: Vec<_> = (0..BLOBS.len())
        .map(|index| {
            let client = engine.client();
            let log = log.try_clone().expect("log handle");
            std::thread::spawn(move || {
                block_on(child_blob(
                    client,
                    log,
                    index,
                    blob_seed(seed, cycle, index),
                ))
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("child worker");
    }
    engine.shutdown().expect("child engine stops");
}

/// Runs an `Op::Write`: its data handed over in the pieces its cuts make.
async fn write_pieces(handle: &shardblob::ClientBlob, op: &Op) -> shardblob::Result<()> {
    let Op::Write {
        offset,
        data,
        cuts,
        sync,
    } = op
    else {
        unreachable!("write_pieces runs writes only")
    };
    let mut pieces = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&data.len()]) {
        pieces.push(&data[at..cut]);
        at = cut;
    }
    let options = if *sync {
        WriteOptions::SYNC
    } else {
        WriteOptions::NONE
    };
    handle.write_vectored_at(*offset, &pieces, options).await
}

async fn child_blob(client: Client, log: File, index: usize, seed: u64) {
    let (partition, name) = BLOBS[index];
    let (blob, len) = client.open(partition, name).await.expect("child opens");
    let base = blob
        .read_at(0, len as usize)
        .await
        .expect("child reads base");
    report(&log, format!("base {index} {len} {}\n", fnv(&base)));
    let mut blob = Some(blob);
    let mut work = Workload::new(seed, base.to_vec());
    for i in 0..CHILD_OPS_MAX {
        let op = work.next();
        report(&log, format!("s {index} {i}\n"));
        let handle = blob.as_ref().expect("blob open");
        let what = || format!("child {partition} op {i} {}", op.describe());
        match &op {
            Op::Write { .. } => write_pieces(handle, &op)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", what())),
            Op::Resize(len) => handle
                .resize(*len)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", what())),
            Op::Sync => handle
                .sync()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", what())),
            Op::Read { offset, len } => {
                let got = handle
                    .read_at(*offset, *len)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", what()));
                let start = *offset as usize;
                assert!(
                    got[..] == work.model[start..start + len],
                    "{}: read differs from what was written",
                    what()
                );
            }
            Op::Recreate => {
                drop(blob.take());
                client
                    .remove(partition, Some(name))
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", what()));
                let (fresh, len) = client
                    .open(partition, name)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", what()));
                assert_eq!(len, 0, "{}: a removed blob reopens empty", what());
                blob = Some(fresh);
            }
        }
        if op.durable() {
            report(&log, format!("d {index} {i}\n"));
        }
        work.apply(&op);
    }
    report(&log, format!("end {index}\n"));
}

// --------------------------------------------------------------- parent --

/// What the contract allows one byte to read as after the crash.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Byte {
    Exact(u8),
    /// Cut by an unsynced truncation: the old value or zero.
    OldOrZero(u8),
    /// Touched by an unsynced or unfinished write.
    Any,
}

impl Byte {
    fn allows(self, got: u8) -> bool {
        match self {
            Byte::Exact(v) => got == v,
            Byte::OldOrZero(v) => got == v || got == 0,
            Byte::Any => true,
        }
    }
}

/// What the child's progress log says about one blob.
#[derive(Default, Debug)]
struct Progress {
    base: Option<(u64, u64)>,
    last_started: Option<u64>,
    durable: std::collections::BTreeSet<u64>,
    ended: bool,
}

fn parse_progress(text: &str) -> Vec<Progress> {
    let mut blobs: Vec<Progress> = BLOBS.iter().map(|_| Progress::default()).collect();
    for line in complete_lines(text) {
        let words: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("bad progress line {line:?}"))
        };
        let blob = &mut blobs[number(1) as usize];
        match words[0] {
            "base" => blob.base = Some((number(2), number(3))),
            "s" => blob.last_started = Some(number(2)),
            "d" => {
                blob.durable.insert(number(2));
            }
            "end" => blob.ended = true,
            _ => panic!("bad progress line {line:?}"),
        }
    }
    blobs
}

/// What may be found in one blob after the crash.
struct Expected {
    bytes: Vec<Byte>,
    /// The reopened length must be at least this...
    len_min: u64,
    /// ... and at most this (before rounding up to a block).
    len_max: u64,
    /// A remove + reopen was under way: an empty blob is fine too.
    may_be_empty: bool,
    /// The operations since the last durable point, for failure reports.
    since_sync: Vec<String>,
}

/// Replays blob `index`'s workload from `base` up to its last started
/// operation and derives what the contract promises.
fn expected(base: &[u8], seed: u64, progress: &Progress) -> Expected {
    let mut work = Workload::new(seed, base.to_vec());
    let mut exp = Expected {
        bytes: base.iter().map(|&b| Byte::Exact(b)).collect(),
        len_min: base.len() as u64,
        len_max: base.len() as u64,
        may_be_empty: false,
        since_sync: vec!["(cycle start)".into()],
    };
    let Some(last) = progress.last_started else {
        return exp;
    };
    for i in 0..=last {
        let op = work.next();
        let completed_durably = progress.durable.contains(&i);
        work.apply(&op);
        let state = match (completed_durably, i == last) {
            (true, _) => " (durable)",
            (false, true) => " (in flight)",
            (false, false) => "",
        };
        exp.since_sync
            .push(format!("op {i}: {}{state}", op.describe()));
        match &op {
            Op::Sync | Op::Recreate if completed_durably => {
                // Everything up to here is durable: a new starting point.
                exp.bytes = work.model.iter().map(|&b| Byte::Exact(b)).collect();
                exp.len_min = work.model.len() as u64;
                exp.len_max = work.model.len() as u64;
                exp.may_be_empty = false;
                exp.since_sync = vec![format!("op {i}: {} (durable)", op.describe())];
            }
            Op::Sync | Op::Read { .. } => {}
            Op::Recreate => exp.may_be_empty = true,
            Op::Write {
                offset, data, sync, ..
            } => {
                let start = *offset as usize;
                let end = start + data.len();
                if exp.bytes.len() < end {
                    exp.bytes.resize(end, Byte::Exact(0));
                }
                if *sync && completed_durably {
                    for (slot, &b) in exp.bytes[start..end].iter_mut().zip(data) {
                        *slot = Byte::Exact(b);
                    }
                    exp.len_min = exp.len_min.max(end as u64);
                } else {
                    exp.bytes[start..end].fill(Byte::Any);
                }
                exp.len_max = exp.len_max.max(end as u64);
            }
            Op::Resize(len) => {
                for slot in exp.bytes.iter_mut().skip(*len as usize) {
                    if let Byte::Exact(v) = *slot {
                        if v != 0 {
                            *slot = Byte::OldOrZero(v);
                        }
                    }
                }
                exp.len_min = exp.len_min.min(*len);
                exp.len_max = exp.len_max.max(*len);
            }
        }
    }
    exp
}

/// What a SIGKILL leaves of one blob: more than the crash contract.
///
/// A kill is not a power loss: the kernel keeps the page cache, finishes
/// the dead process's I/O, and every system call that returned stands. So
/// every operation that *completed* before the kill (synced or not) is on
/// the file, byte for byte. One blob's operations run one at a time, so
/// every operation before the last started one completed (its successor
/// was logged as started after it returned); only the last started one may
/// have been in flight, and only it may have left a partial effect: a
/// write's range may hold anything, a resize may or may not have cut, a
/// remove + reopen may have emptied the blob. Nothing else may differ:
/// bytes of a completed write that no later operation touched read back
/// exactly, whether or not a sync followed.
fn expected_after_kill(base: &[u8], seed: u64, progress: &Progress) -> Expected {
    let mut work = Workload::new(seed, base.to_vec());
    let mut highest = base.len() as u64;
    let mut recent: Vec<String> = vec!["(cycle start)".into()];
    let Some(last) = progress.last_started else {
        return exact(&work.model, highest, recent);
    };
    for i in 0..last {
        let op = work.next();
        highest = highest.max(reach(&op));
        work.apply(&op);
        recent.push(format!("op {i}: {} (completed)", op.describe()));
    }
    let op = work.next();
    highest = highest.max(reach(&op));
    if progress.ended {
        work.apply(&op);
        recent.push(format!("op {last}: {} (completed)", op.describe()));
        return exact(&work.model, highest, recent);
    }
    recent.push(format!("op {last}: {} (in flight)", op.describe()));
    let mut exp = exact(&work.model, highest, recent);
    match &op {
        Op::Write { offset, data, .. } => {
            let (start, end) = (*offset as usize, *offset as usize + data.len());
            if exp.bytes.len() < end {
                exp.bytes.resize(end, Byte::Exact(0));
            }
            exp.bytes[start..end].fill(Byte::Any);
        }
        Op::Resize(len) => {
            for slot in exp.bytes.iter_mut().skip(*len as usize) {
                if let Byte::Exact(v) = *slot {
                    *slot = if v == 0 {
                        Byte::Exact(0)
                    } else {
                        Byte::OldOrZero(v)
                    };
                }
            }
            exp.len_min = exp.len_min.min(*len);
        }
        Op::Recreate => exp.may_be_empty = true,
        Op::Sync | Op::Read { .. } => {}
    }
    exp
}

/// The highest blob length operation `op` may lead to.
fn reach(op: &Op) -> u64 {
    match op {
        Op::Write { offset, data, .. } => offset + data.len() as u64,
        Op::Resize(len) => *len,
        Op::Sync | Op::Read { .. } | Op::Recreate => 0,
    }
}

/// Exactly `model`: its length at least, and up to `highest` (any padding
/// a write left reads as zeros); the last few operations for reports.
fn exact(model: &[u8], highest: u64, mut recent: Vec<String>) -> Expected {
    let keep_from = recent.len().saturating_sub(12);
    recent.drain(..keep_from);
    Expected {
        bytes: model.iter().map(|&b| Byte::Exact(b)).collect(),
        len_min: model.len() as u64,
        len_max: highest.max(model.len() as u64),
        may_be_empty: false,
        since_sync: recent,
    }
}

/// Checks a reopened blob against what the contract allows; `Err` says how
/// it differs.
fn check(got: &[u8], exp: &Expected) -> Result<(), String> {
    let len = got.len() as u64;
    if exp.may_be_empty && len == 0 {
        return Ok(());
    }
    let len_max = exp.len_max.div_ceil(BLOCK) * BLOCK;
    if len < exp.len_min || len > len_max {
        return Err(format!(
            "reopened length {len}, expected {}..={len_max} (durable length {}, highest end {})",
            exp.len_min, exp.len_min, exp.len_max
        ));
    }
    for (at, &b) in got.iter().enumerate() {
        let allowed = exp.bytes.get(at).copied().unwrap_or(Byte::Exact(0));
        if !allowed.allows(b) {
            let bad = got[at..]
                .iter()
                .zip(exp.bytes[at.min(exp.bytes.len())..].iter())
                .take_while(|(g, e)| !e.allows(**g))
                .count();
            return Err(format!(
                "byte {at} reads {b:#04x}, the contract allows {allowed:?} \
                 (a run of at least {bad} wrong bytes; blob length {len})"
            ));
        }
    }
    Ok(())
}

/// What the parent counted over all cycles.
#[derive(Default)]
struct Tally {
    kills: usize,
    cycles: usize,
    ops: u64,
    durable_ops: u64,
    /// Unsynced bytes of completed writes checked exactly after a kill.
    pinned_bytes: u64,
}

#[test]
fn sigkill_at_random_moments_keeps_every_synced_byte() {
    let seed = seed_from_env(SEED_ENV);
    eprintln!("real_crash: seed {seed} (rerun with {SEED_ENV}={seed})");
    let work_dir = WorkDir::new("real-crash");
    let root = work_dir.0.clone();
    let mut timing = Rng::new(fresh_seed());
    let mut bases: Vec<Vec<u8>> = BLOBS.iter().map(|_| Vec::new()).collect();
    let started = Instant::now();
    let mut tally = Tally::default();
    while tally.kills < KILLS_TARGET && tally.cycles < CYCLES_MAX && started.elapsed() < TIME_BUDGET
    {
        let cycle = tally.cycles;
        tally.cycles += 1;
        kill_a_child(&root, seed, cycle, &mut timing, &mut tally)
            .and_then(|progress| check_after_kill(&root, seed, cycle, &mut bases, &progress, &mut tally))
            .unwrap_or_else(|msg| {
                panic!("seed {seed}, cycle {cycle}: {msg}\n(rerun the workloads with {SEED_ENV}={seed})")
            });
    }
    let Tally {
        kills,
        cycles,
        ops,
        durable_ops,
        pinned_bytes,
    } = tally;
    eprintln!(
        "real_crash: {kills} kills in {cycles} cycles, {ops} operations started, \
         {durable_ops} durable, {pinned_bytes} unsynced bytes of completed writes checked \
         exactly, {:.1?}",
        started.elapsed()
    );
    assert!(
        kills >= KILLS_MIN,
        "seed {seed}: only {kills} kills in {cycles} cycles within {TIME_BUDGET:?}"
    );
    assert!(
        durable_ops >= kills as u64,
        "seed {seed}: the children completed only {durable_ops} durable operations in \
         {kills} kills: the workload hardly ran (hang?)"
    );
    assert!(
        pinned_bytes > 0,
        "seed {seed}: no unsynced byte of a completed write was checked after a kill: \
         the completed-write check did not bite"
    );
    drop(work_dir);
}

/// Runs cycle `cycle`'s child and SIGKILLs it at a random moment (unless it
/// finished first); returns its progress log.
fn kill_a_child(
    root: &Path,
    seed: u64,
    cycle: usize,
    timing: &mut Rng,
    tally: &mut Tally,
) -> Result<Vec<Progress>, String> {
    let progress_path = root.join("progress.log");
    let _ = fs::remove_file(&progress_path);
    let child_shards = 1 + (splitmix64(seed ^ cycle as u64) % 2) as usize;
    let mut child = Victim::spawn(
        "crash_child",
        root,
        &[
            (CHILD_ENV, root.display().to_string()),
            (SEED_ENV, seed.to_string()),
            ("SHARDBLOB_CRASH_CYCLE", cycle.to_string()),
            (SHARDS_ENV, child_shards.to_string()),
        ],
    );
    // One kill in eight lands early (engine start, open); the others
    // while the workload runs.
    let early = timing.below(8) == 0;
    let ready = if early {
        std::thread::sleep(Duration::from_micros(timing.below(40_000)));
        Ok(())
    } else {
        // Ready once the child reported the base of every blob.
        let bases_reported = || {
            let text = fs::read_to_string(&progress_path).unwrap_or_default();
            text.lines().filter(|l| l.starts_with("base ")).count() == BLOBS.len()
        };
        child.wait_ready(READY_TIMEOUT, bases_reported).map(|()| {
            std::thread::sleep(Duration::from_micros(timing.below(120_000)));
        })
    };
    let killed = child.kill(ready)?;
    tally.kills += killed as usize;
    let progress = parse_progress(&fs::read_to_string(&progress_path).unwrap_or_default());
    if !killed && !progress.iter().all(|p| p.ended) {
        return Err("a child that was not killed did not run its whole workload".into());
    }
    Ok(progress)
}

/// Starts an engine on the killed child's data_dir and checks every blob
/// (`verify_blob`); what it finds becomes the next cycle's base.
fn check_after_kill(
    root: &Path,
    seed: u64,
    cycle: usize,
    bases: &mut [Vec<u8>],
    progress: &[Progress],
    tally: &mut Tally,
) -> Result<(), String> {
    let data_dir = root.join("data");
    let engine = Engine::start(Config {
        data_dir: data_dir.clone(),
        shards: 1 + cycle % 2,
        ..Config::default()
    })
    .map_err(|e| format!("engine does not start after the kill: {e}"))?;
    let client = engine.client();
    for (index, &(partition, _)) in BLOBS.iter().enumerate() {
        let p = &progress[index];
        let base = &bases[index];
        if let Some((len, hash)) = p.base {
            if len != base.len() as u64 || hash != fnv(base) {
                return Err(format!(
                    "{partition}: the child opened {len} bytes (hash {hash:x}) where \
                     the parent left {} (hash {:x})",
                    base.len(),
                    fnv(base)
                ));
            }
        }
        tally.ops += p.last_started.map_or(0, |s| s + 1);
        tally.durable_ops += p.durable.len() as u64;
        let seeded = blob_seed(seed, cycle, index);
        let (got, pinned) = verify_blob(&client, index, base, seeded, p)?;
        tally.pinned_bytes += pinned;
        bases[index] = got;
    }
    drop(client);
    engine.shutdown().unwrap();
    let held = files_open_under(&data_dir);
    match held.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "shutdown closes every blob file, yet {held:?} are still open"
        )),
    }
}

/// Reopens blob `index` after the kill, reads it whole, syncs it (the next
/// cycle's durable start) and checks it against both models: the crash
/// contract and what a kill must leave. Returns the content and how many
/// bytes only the kill model pins (unsynced bytes of completed writes).
fn verify_blob(
    client: &Client,
    index: usize,
    base: &[u8],
    seed: u64,
    progress: &Progress,
) -> Result<(Vec<u8>, u64), String> {
    let (partition, name) = BLOBS[index];
    let got = block_on(async {
        let (blob, len) = client.open(partition, name).await?;
        let got = blob.read_at(0, len as usize).await?;
        blob.sync().await?;
        shardblob::Result::Ok(got.to_vec())
    })
    .map_err(|e| format!("{partition}: reopen after the kill: {e}"))?;
    let contract = expected(base, seed, progress);
    check(&got, &contract).map_err(|why| {
        format!(
            "{partition}: {why}\noperations since the last durable point:\n  {}",
            contract.since_sync.join("\n  ")
        )
    })?;
    let after_kill = expected_after_kill(base, seed, progress);
    check(&got, &after_kill).map_err(|why| {
        format!(
            "{partition}: a completed write did not survive the kill: {why}\n\
             the last operations:\n  {}",
            after_kill.since_sync.join("\n  ")
        )
    })?;
    let pinned = contract
        .bytes
        .iter()
        .zip(&after_kill.bytes)
        .filter(|(c, k)| **c == Byte::Any && matches!(k, Byte::Exact(_)))
        .count() as u64;
    Ok((got, pinned))
}
