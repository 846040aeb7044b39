//! Crash and fault simulation of the whole engine (issue 17, item 1): the
//! router, the shard threads, the forwarding between shards and from a
//! foreign thread, over one simulated disk (`Engine::start_simulated`).
//!
//! Why: the store's simulations (`shards/tests/store/crash_sim.rs`,
//! `faults_sim.rs`) never cross a channel, so a forwarding path that loses
//! a promise (a `Sync` answered `Ok` without a flush, a write that drops
//! `WriteOptions::SYNC` on its way) passes them all. Here every operation
//! travels one of three routes, picked per session: a `Client` (foreign
//! thread), a `ShardStorage` in `spawn_on` on the shard that does *not* own
//! the partition (forwarded over the peer channels), or one on the owner
//! (direct calls). The two partitions are owned by different shards.
//!
//! Three tests. The sequential one runs sessions one after the other: a
//! remove of a blob, or an open followed by up to
//! six blob operations (writes at any offset, vectored, a third of them
//! with `WriteOptions::SYNC`; reads; `read_many`; resizes; syncs;
//! `start_sync`, awaited or dropped) and the close of the handle. Half the
//! seeds inject faults (2% of file calls fail); an error is accepted only
//! if a fault was injected meanwhile. One session in five crashes the disk
//! at a seeded step, after it or cut into it (the operation's future
//! dropped after a few polls): the old engine is shut down, a new one
//! starts on the crashed disk, and every name is checked against the model
//! (`shards/tests/common/model.rs`): every byte of a completed sync or SYNC
//! write intact, every other sector old or new, a length the store allows,
//! every name whose open returned `Ok` there, none whose remove did.
//!
//! The concurrent one (issue 11 across shards) runs rounds of eight
//! sessions at once, one per name of two partitions of different shards,
//! each on its route (so tasks on both shards and futures on the test's
//! thread); a quarter of them have their last operation's future dropped
//! after a few polls, the operation going on in the background. Half the
//! rounds crash the disk under the running sessions after a random pause
//! (up to 3 ms), the others after they end; an operation that fails once
//! the crash began ends its session and counts as maybe done. Each
//! session owns its blob.
//!
//! In all three, two thirds of the seeds give the simulated disk a latency
//! (`LATENCY_YIELDS`): each file call acts and then completes after a seeded
//! number of executor yields, so calls of one shard overtake each other and
//! a call whose future was dropped may still land later, as on io_uring.
//!
//! The race test (issue 11 on shared names, across shards) runs rounds of
//! eight sessions at once on random names of two per partition (four in
//! all, partitions of different shards), on random routes, so sessions on
//! both shards and the test's thread race on one name: opens (only one
//! may hold the name: the others get `BlobAlreadyOpen`), removes of the
//! blob and of its whole partition, scans, and the blob operations of
//! whichever session holds the handle. A third of the sessions are cut
//! after a few polls at a random step (the open too). The model of the
//! shared names is in `engine_sim/races.rs`: never two live handles, reads
//! only of bytes a write or a zero fill put there, after a crash synced
//! bytes intact and an acknowledged remove gone, unless an open overlapped
//! it. A round the disk did not crash under ends with every name reopened
//! within a second: none is left "already open".
//!
//! It catches, put in by hand (ARCHITECTURE.md, Where each rule is tested),
//! each at seed 0 of both tests in every run tried:
//! - the owning shard answering a forwarded `Sync` `Ok` without syncing
//!   (`handle_sync` in `engine/src/shard.rs` answering `Ok(())` instead of
//!   calling `sync_blob`): blob `00ff` comes back from a crash with a
//!   length its `Client` syncs excluded;
//! - a forwarded write dropping `WriteOptions::SYNC` (`Request::Write`
//!   served with `WriteOptions::NONE`): blob `a` comes back from a crash
//!   without bytes its SYNC writes made durable.
//!
//! The race test catches, put in by hand, each in the one run tried:
//! - a forwarded open that leaks its close guard when its caller left
//!   before the answer went out (in `engine/src/shard.rs`, `open`: the
//!   unsent reply passed to `std::mem::forget` instead of dropped): at
//!   seed 3, `p0/00ff` is still "already open" a second after the round;
//! - a remove that does not wait for the opens of its names in progress
//!   (`Registry::start_removal` in `shards/src/store.rs` without its
//!   second `wait_while`): at seed 1 the store's own check that a remove
//!   forgets only finished opens (a `debug_assert`) fails on a shard's
//!   thread; the test fails (the shard's sessions end with "engine shut
//!   down", or the round with `SHARD_PANICKED`) instead of hanging in the
//!   shutdown of an engine with a dead shard.
//!
//! Replay: `SHARDBLOB_SEED=n` reruns seed `n`; `SHARDBLOB_ENGINE_SIM_SEEDS`
//! sets the number of fixed seeds of all three. Each shard runs on its own
//! thread, so background work (the trim of a closed blob, a dropped sync
//! going on) and the concurrent sessions interleave as the OS schedules
//! them, and the fault and crash draws of the shared disk follow that
//! interleaving: a replay is best effort (the sequential test's usually
//! exact, the concurrent test's crash point a matter of timing).

#[path = "../../shards/tests/common/mod.rs"]
mod common;
#[path = "engine_sim/races.rs"]
mod races;
mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future;
use futures_lite::StreamExt;
use shardblob::sim::{Faults, SimFs};
use shardblob::{Blob, Client, Config, Engine, Error, Storage, WriteOptions};

use common::harness::{cut_flush_failed, limited, write_in, Data};
use common::model::{BlobModel, Trim};
use common::random::{offset, range, size, LEN_MAX};
use common::{log, rng, run_seeds, Rng};
use races::{Race, Removed};

/// Sessions per seed (each seed ends with a crash too).
const SESSIONS: usize = 16;
/// One session in this many crashes the disk.
const CRASH_ONE_IN: u64 = 5;
/// Blob operations in a session, at most.
const OPS_MAX: u64 = 6;
/// Fixed seeds by default (plus a rotating quarter as many).
const SEEDS: u64 = 128;
const FAULTS_PER_MILLION: u32 = 20_000;
/// Simulated device latency by seed (`seed % 3`), in executor yields
/// (`SimFs::set_latency`): calls act and complete out of order, and a call
/// whose future was dropped may still land, on every route. A third of the
/// seeds run without, so calls act at once.
const LATENCY_YIELDS: [u32; 3] = [0, 2, 6];
const NAMES: [&[u8]; 4] = [b"a", &[0x00, 0xff], b"b", b"c"];
/// The sequential sessions use the first names only, so that sessions on
/// one name follow each other often.
const SEQUENTIAL_NAMES: usize = 2;
/// Rounds of concurrent sessions per seed, each ending with a crash.
const ROUNDS: usize = 3;
/// Fixed seeds of the concurrent sessions by default.
const CONCURRENT_SEEDS: u64 = 48;
/// A round of sessions at once that has not ended after this long hangs
/// (rounds take milliseconds).
const ROUND_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(20);
/// Race rounds: names of each partition the sessions share, sessions at
/// once, fixed seeds by default.
const RACE_NAMES: usize = 2;
const RACE_SESSIONS: usize = 8;
const RACE_SEEDS: u64 = 32;

type Key = (String, Vec<u8>);

/// What a name holds, as far as the contract tells.
#[derive(Clone, Debug)]
enum Entry {
    /// No file: never created, or its remove returned `Ok`.
    Absent,
    /// Its open returned `Ok`, no remove tried since: a crash keeps it.
    Present(BlobModel),
    /// After a failed or cut open or remove: a crash may keep it (with this
    /// content, or empty) or drop it.
    Maybe(BlobModel),
}

impl Entry {
    /// After a remove that failed or was cut short.
    fn maybe_removed(self) -> Entry {
        match self {
            Entry::Absent => Entry::Absent,
            Entry::Present(model) | Entry::Maybe(model) => Entry::Maybe(model),
        }
    }

    /// After an open that failed or was cut short.
    fn maybe_opened(self) -> Entry {
        match self {
            Entry::Absent => Entry::Maybe(BlobModel::default()),
            Entry::Present(mut model) => {
                if model.len == 0 {
                    // Its sync of the header page may have happened.
                    model.maybe_sync();
                }
                Entry::Present(model)
            }
            maybe => maybe,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Entry::Absent => 0,
            Entry::Present(model) | Entry::Maybe(model) => model.len,
        }
    }
}

/// How a session reaches the owning shard.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// A `Client` on the test's thread.
    Foreign,
    /// A `spawn_on` task on the shard that does not own the partition.
    Forwarded,
    /// A `spawn_on` task on the owner.
    Local,
}

impl Route {
    fn random(rng: &mut Rng) -> Route {
        match rng.below(3) {
            0 => Route::Foreign,
            1 => Route::Forwarded,
            _ => Route::Local,
        }
    }
}

#[derive(Clone, Debug)]
enum BlobOp {
    Write { offset: u64, data: Data, sync: bool },
    Read { offset: u64, len: usize },
    ReadMany(Vec<(u64, usize)>),
    Resize(u64),
    Sync,
    StartSync { dropped: bool },
}

#[derive(Clone, Debug)]
enum Action {
    Remove,
    /// Open, these operations, close.
    Blob(Vec<BlobOp>),
    /// `remove(partition, None)` (race rounds only).
    RemovePartition,
    /// `scan(partition)` (race rounds only).
    Scan,
}

/// Where a session stops: at step `step` (the open or remove is step 0),
/// cut into after `cut` polls (its future dropped) or after it; with
/// `disk`, the session then crashes the disk.
#[derive(Clone, Copy, Debug)]
struct Crash {
    step: usize,
    cut: Option<usize>,
    disk: bool,
}

#[derive(Clone, Debug)]
struct Plan {
    key: Key,
    route: Route,
    action: Action,
    crash: Option<Crash>,
    /// The seed injects faults.
    faulty: bool,
    /// The previous session of this name dropped a `start_sync`, which may
    /// still hold its open: until a dropped operation lands, the blob
    /// counts as open (`Blob`'s contract).
    landing: bool,
    /// Set by the driver just before it crashes the disk under running
    /// sessions: errors from then on are the crash's, and the session ends.
    crashed: Arc<AtomicBool>,
    /// In a race round: the names the sessions share.
    race: Option<Race>,
}

impl Plan {
    fn new(
        key: Key,
        route: Route,
        action: Action,
        crash: Option<Crash>,
        mode: &Mode,
        landing: bool,
    ) -> Plan {
        Plan {
            key,
            route,
            action,
            crash,
            faulty: mode.faulty,
            landing,
            crashed: mode.crashed.clone(),
            race: mode.race.clone(),
        }
    }

    /// The poll limit of step `step`.
    fn limit(&self, step: usize) -> Option<usize> {
        self.crash.filter(|c| c.step == step).and_then(|c| c.cut)
    }

    /// Runs the open or remove (step 0) to its end or to its cut. In a race
    /// round the cut comes after `limit` × 50 µs: a forwarded call is polled
    /// again only when its answer comes, so a cut after polls would drop it
    /// before it left or after it ended, and one after a time drops it
    /// anywhere on its way (the owner's open done, its answer unread).
    async fn cut_first<F: std::future::Future>(&self, call: F) -> Option<F::Output> {
        let limit = self.limit(0);
        let Some(cut) = limit.filter(|_| self.race.is_some()) else {
            return limited(call, limit).await;
        };
        let time = std::time::Duration::from_micros(50 * cut as u64);
        let timer = std::pin::pin!(glommio::timer::sleep(time));
        match future::select(std::pin::pin!(call), timer).await {
            future::Either::Left((output, _)) => Some(output),
            future::Either::Right(_) => None,
        }
    }

    fn crashes_at(&self, step: usize) -> bool {
        self.crash.is_some_and(|c| c.step == step && c.disk)
    }
}

/// A session's end: the name's entry, and the disk after a crash if the
/// session crashed it.
type Outcome = (Entry, Option<SimFs>);

/// Accepts an error only if a fault was injected since `before`, or the
/// disk is crashing.
fn failed(fs: &SimFs, before: u64, crashed: &AtomicBool, what: &str, e: &Error) {
    assert!(
        fs.injected_faults() > before || crashed.load(Ordering::SeqCst),
        "{what}: unexpected error: {e}"
    );
}

async fn run_plan<S: Storage>(storage: S, entry: Entry, plan: Plan, fs: SimFs) -> Outcome {
    match (&plan.action, &plan.race) {
        (Action::Remove | Action::RemovePartition, Some(race)) => {
            race_remove(&storage, race, &plan, &fs).await;
            (entry, None)
        }
        (Action::Scan, _) => {
            scan(&storage, &plan, &fs).await;
            (entry, None)
        }
        (Action::Remove | Action::RemovePartition, None) => {
            remove(&storage, entry, &plan, &fs).await
        }
        (Action::Blob(ops), _) => blob_session(&storage, entry, &plan, ops, &fs).await,
    }
}

/// A remove of a blob or of its whole partition while other sessions use
/// the names (a race round).
async fn race_remove<S: Storage>(storage: &S, race: &Race, plan: &Plan, fs: &SimFs) {
    let (p, n) = (&plan.key.0, &plan.key.1);
    let (name, keys) = match plan.action {
        Action::Remove => (Some(n.as_slice()), vec![plan.key.clone()]),
        _ => {
            let names = NAMES[..RACE_NAMES].iter();
            (None, names.map(|n| (p.clone(), n.to_vec())).collect())
        }
    };
    let before = fs.injected_faults();
    race.remove_start(&keys);
    let result = plan.cut_first(storage.remove(p, name)).await;
    let removed = match &result {
        Some(Ok(())) | Some(Err(Error::BlobMissing { .. })) => Removed::Gone,
        Some(Err(Error::PartitionMissing(_))) => Removed::Missing,
        Some(Err(_)) => Removed::Failed,
        None => Removed::Cut,
    };
    let there = race.remove_end(&keys, removed);
    let what = format!("remove {p}/{name:02x?}");
    match result {
        Some(Err(e @ (Error::BlobMissing { .. } | Error::PartitionMissing(_)))) if there => {
            failed(fs, before, &plan.crashed, &what, &e)
        }
        Some(Err(Error::BlobMissing { .. } | Error::PartitionMissing(_))) | Some(Ok(())) | None => {
        }
        Some(Err(e)) => failed(fs, before, &plan.crashed, &what, &e),
    }
}

/// A scan while other sessions create and remove the names.
async fn scan<S: Storage>(storage: &S, plan: &Plan, fs: &SimFs) {
    let p = &plan.key.0;
    let before = fs.injected_faults();
    match limited(storage.scan(p), plan.limit(0)).await {
        Some(Ok(names)) => {
            let known = &NAMES[..RACE_NAMES];
            let foreign = names.iter().find(|n| !known.contains(&n.as_slice()));
            assert!(
                foreign.is_none(),
                "scan {p} lists {foreign:02x?}, never created"
            );
        }
        Some(Err(Error::PartitionMissing(_))) | None => {}
        Some(Err(e)) => failed(fs, before, &plan.crashed, &format!("scan {p}"), &e),
    }
}

async fn remove<S: Storage>(storage: &S, entry: Entry, plan: &Plan, fs: &SimFs) -> Outcome {
    let (p, n) = (&plan.key.0, &plan.key.1);
    let before = fs.injected_faults();
    let next = match limited(storage.remove(p, Some(n)), plan.limit(0)).await {
        Some(Ok(())) => Entry::Absent,
        // Not there, durably: after a failed remove the unlink may not be
        // in the directory's durable listing yet, and the store syncs it
        // before it answers `BlobMissing`, so no crash brings the name back.
        Some(Err(Error::BlobMissing { .. } | Error::PartitionMissing(_)))
            if !matches!(entry, Entry::Present(_)) =>
        {
            Entry::Absent
        }
        Some(Err(e)) => {
            failed(
                fs,
                before,
                &plan.crashed,
                &format!("remove {p}/{n:02x?}"),
                &e,
            );
            entry.maybe_removed()
        }
        None => entry.maybe_removed(),
    };
    (next, plan.crashes_at(0).then(|| fs.crash()))
}

/// The model of a blob just opened with length `len`.
fn opened(entry: Entry, len: u64, key: &Key) -> BlobModel {
    let mut model = match entry {
        Entry::Absent => {
            assert_eq!(len, 0, "a new blob {key:?} is empty");
            return BlobModel::default();
        }
        Entry::Present(model) => model,
        // Either a fresh blob or the old one, emptied: both read empty.
        Entry::Maybe(_) if len == 0 => return BlobModel::default(),
        Entry::Maybe(model) => model,
    };
    if let Err(e) = model.reopened(len) {
        panic!("reopen {key:?}: {e}");
    }
    if len == 0 {
        // The open of an empty blob syncs its header page.
        model.sync();
    }
    model
}

/// Opens the plan's blob, waiting out a dropped sync that still holds it.
async fn open<S: Storage>(storage: &S, plan: &Plan) -> Option<shardblob::Result<(S::Blob, u64)>> {
    let (p, n) = (&plan.key.0, &plan.key.1);
    for _ in 0..1000 {
        match plan.cut_first(storage.open(p, n)).await {
            Some(Err(Error::BlobAlreadyOpen { .. })) if plan.landing => {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            opened => return opened,
        }
    }
    panic!("{p}/{n:02x?} still open a second after its handles were dropped");
}

async fn blob_session<S: Storage>(
    storage: &S,
    entry: Entry,
    plan: &Plan,
    ops: &[BlobOp],
    fs: &SimFs,
) -> Outcome {
    let (p, n) = (&plan.key.0, &plan.key.1);
    let before = fs.injected_faults();
    let token = plan.race.as_ref().map(|race| race.open_start(&plan.key));
    let result = open(storage, plan).await;
    let entry = match (&plan.race, token) {
        (Some(race), Some(token)) => {
            let ended = result.as_ref().map(|r| r.as_ref().map(|_| ()));
            race.open_end(&plan.key, token, ended)
        }
        _ => entry,
    };
    let (blob, len) = match result {
        Some(Ok(opened)) => opened,
        Some(Err(Error::BlobAlreadyOpen { .. })) if plan.race.is_some() => return (entry, None),
        Some(Err(e)) => {
            failed(fs, before, &plan.crashed, &format!("open {p}/{n:02x?}"), &e);
            return (entry.maybe_opened(), plan.crashes_at(0).then(|| fs.crash()));
        }
        None => return (entry.maybe_opened(), plan.crashes_at(0).then(|| fs.crash())),
    };
    let model = opened(entry, len, &plan.key);
    let mut open = OpenBlob {
        blob,
        model,
        poisoned: false,
        maybe_poisoned: false,
        sync_pending: false,
        faulty: plan.faulty,
        landing_len: None,
        crashed: plan.crashed.clone(),
        fs: fs.clone(),
    };
    for (step, op) in (0..=ops.len()).zip(std::iter::once(None).chain(ops.iter().map(Some))) {
        if let Some(op) = op {
            open.run(op, plan.limit(step)).await;
        }
        if plan.crashes_at(step) {
            // The handle is dropped after the crash: like a killed process,
            // it makes no more calls that count.
            let crashed = fs.crash();
            return (Entry::Present(open.model), Some(crashed));
        }
        if plan.crashed.load(Ordering::SeqCst) {
            // The driver is crashing the disk: the process is gone. Its
            // handle's drop may still trim before the crash lands.
            break;
        }
    }
    let trim = if open.poisoned {
        Trim::Skipped
    } else {
        // Its close reaches the owner later: trimmed or not at a crash.
        Trim::Maybe
    };
    close(&mut open.model, trim, open.landing_len);
    if let (Some(race), Some(token)) = (&plan.race, token) {
        // Before the handle goes: the next open of the name starts from it.
        race.put_back(&plan.key, token, &open.model);
    }
    (Entry::Present(open.model), None)
}

/// The close of a blob's last handle. A cut write or resize going on in
/// the background may land first and set the length to `landing`, which
/// the close's trim then keeps.
fn close(model: &mut BlobModel, trim: Trim, landing: Option<u64>) {
    if let Some(len) = landing {
        let mut landed = model.clone();
        landed.len = len;
        landed.close(trim);
        model.close(trim);
        model.absorb(&landed);
    } else {
        model.close(trim);
    }
}

/// An open blob and its model.
struct OpenBlob<B> {
    blob: B,
    model: BlobModel,
    /// A sync or SYNC write failed on it, or a file flush failed during a
    /// write or resize (the cut before an extension).
    poisoned: bool,
    /// A dropped sync, write or resize ran while faults were on: it may
    /// have poisoned it.
    maybe_poisoned: bool,
    /// A dropped sync may still run, at any point between two operations
    /// (it trims and flushes under the blob's exclusive lock).
    sync_pending: bool,
    /// Faults are on.
    faulty: bool,
    /// The length a cut write or resize sets if it lands.
    landing_len: Option<u64>,
    crashed: Arc<AtomicBool>,
    fs: SimFs,
}

impl<B: Blob> OpenBlob<B> {
    async fn run(&mut self, op: &BlobOp, limit: Option<usize>) {
        let before = self.fs.injected_faults();
        match op {
            BlobOp::Write { offset, data, sync } => {
                self.write(*offset, &data.0, *sync, limit, before).await;
            }
            BlobOp::Read { offset, len } => self.read(*offset, *len, limit, before).await,
            BlobOp::ReadMany(ranges) => self.read_many(ranges, limit, before).await,
            BlobOp::Resize(len) => self.resize(*len, limit, before).await,
            BlobOp::Sync => self.sync(false, limit, before).await,
            BlobOp::StartSync { dropped: false } => self.sync(true, limit, before).await,
            BlobOp::StartSync { dropped: true } => {
                drop(self.blob.start_sync());
                self.sync_pending |= !self.poisoned;
                self.maybe_poisoned |= self.faulty;
            }
        }
        if self.sync_pending {
            self.model.maybe_sync_at(self.model.len);
        }
    }

    /// Accepts an error from an injected fault, or from a poisoning that
    /// a dropped sync may have caused.
    fn failed(&self, before: u64, what: &str, e: &Error) {
        if !(self.maybe_poisoned && matches!(e, Error::BlobPoisoned { .. })) {
            failed(&self.fs, before, &self.crashed, what, e);
        }
    }

    fn refused<T>(&self, result: Result<T, Error>, what: &str) {
        assert!(
            matches!(result, Err(Error::BlobPoisoned { .. })),
            "{what} on a poisoned blob: expected BlobPoisoned"
        );
    }

    async fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        sync: bool,
        limit: Option<usize>,
        before: u64,
    ) {
        let options = match sync {
            true => WriteOptions::SYNC,
            false => WriteOptions::NONE,
        };
        // In two slices, or, one write in four (chosen by its first byte,
        // so that the seeds' op streams stay as they were), from a buffer
        // of `alloc_buf`: zero-copy on the owner where it is aligned.
        let from_buf = data.first().is_some_and(|byte| byte % 4 == 0);
        let write = write_in(&self.blob, offset, data, options, 2 + usize::from(from_buf));
        if self.poisoned {
            return self.refused(write.await, "write");
        }
        match limited(write, limit).await {
            Some(Ok(())) => self.model.write(offset, data, sync),
            Some(Err(e)) => {
                self.failed(before, "write", &e);
                self.model.maybe_write(offset, data, sync, true);
                self.poisoned |= sync || cut_flush_failed(&e);
            }
            None => {
                self.model.maybe_write(offset, data, sync, true);
                self.maybe_poisoned |= self.faulty;
                let end = offset + data.len() as u64;
                self.landing_len = Some(self.model.len.max(end));
            }
        }
    }

    async fn resize(&mut self, len: u64, limit: Option<usize>, before: u64) {
        if self.poisoned {
            return self.refused(self.blob.resize(len).await, "resize");
        }
        match limited(self.blob.resize(len), limit).await {
            Some(Ok(())) => self.model.resize(len),
            Some(Err(e)) => {
                self.failed(before, "resize", &e);
                self.model.maybe_resize(len);
                self.poisoned |= cut_flush_failed(&e);
            }
            None => {
                self.model.maybe_resize(len);
                self.maybe_poisoned |= self.faulty;
                self.landing_len = Some(len);
            }
        }
    }

    async fn sync(&mut self, start: bool, limit: Option<usize>, before: u64) {
        let blob = &self.blob;
        let sync = async move {
            match start {
                true => blob.start_sync().await,
                false => blob.sync().await,
            }
        };
        if self.poisoned {
            return self.refused(sync.await, "sync");
        }
        match limited(sync, limit).await {
            Some(Ok(())) => self.model.sync(),
            Some(Err(e)) => {
                self.failed(before, "sync", &e);
                self.model.maybe_sync();
                self.poisoned = true;
            }
            None => self.model.maybe_sync(),
        }
    }

    fn check_read(&self, offset: u64, bytes: &[u8], what: &str) {
        if let Err(e) = self.model.check_read(offset, bytes) {
            panic!("{what} at {offset}: {e}");
        }
    }

    async fn read(&self, offset: u64, len: usize, limit: Option<usize>, before: u64) {
        let past_end = offset + len as u64 > self.model.len;
        let Some(result) = limited(self.blob.read_at(offset, len), limit).await else {
            return;
        };
        match result {
            Err(Error::BlobInsufficientLength { .. }) if past_end => {}
            Ok(bytes) => {
                assert!(!past_end, "a read past the end {} worked", self.model.len);
                assert_eq!(bytes.len(), len, "read length");
                self.check_read(offset, &bytes, "read");
            }
            Err(e) => self.failed(before, "read", &e),
        }
    }

    async fn read_many(&self, ranges: &[(u64, usize)], limit: Option<usize>, before: u64) {
        let model_len = self.model.len;
        let past_end = ranges.iter().any(|&(o, l)| o + l as u64 > model_len);
        let reads = self.blob.read_many(ranges.to_vec()).collect::<Vec<_>>();
        let Some(results) = limited(reads, limit).await else {
            return;
        };
        let mut seen = vec![false; ranges.len()];
        for result in results {
            match result {
                Ok((i, bytes)) => {
                    assert!(!past_end, "read_many past the end {model_len} worked");
                    assert!(!std::mem::replace(&mut seen[i], true), "range {i} twice");
                    assert_eq!(bytes.len(), ranges[i].1, "range {i} length");
                    self.check_read(ranges[i].0, &bytes, "read_many");
                }
                Err(Error::BlobInsufficientLength { .. }) if past_end => return,
                Err(e) => return self.failed(before, "read_many", &e),
            }
        }
        assert!(seen.iter().all(|&s| s), "read_many left out a range");
    }
}

/// A random blob operation for a blob about `len` long.
fn blob_op(rng: &mut Rng, len: u64) -> BlobOp {
    match rng.below(20) {
        0..=7 => {
            let size = size(rng);
            let offset = offset(rng, len).min(LEN_MAX - size);
            let data = Data(rng.bytes(size as usize));
            let sync = rng.one_in(3);
            BlobOp::Write { offset, data, sync }
        }
        8..=10 => {
            let (offset, len) = range(rng, len);
            BlobOp::Read { offset, len }
        }
        11..=12 => BlobOp::ReadMany((0..1 + rng.below(4)).map(|_| range(rng, len)).collect()),
        13..=14 => BlobOp::Resize(rng.below(len + 6000).min(LEN_MAX)),
        15..=17 => BlobOp::Sync,
        _ => BlobOp::StartSync {
            dropped: rng.one_in(2),
        },
    }
}

/// Up to [`OPS_MAX`] operations, their sizes following the planned length.
fn blob_ops(rng: &mut Rng, mut len: u64) -> Vec<BlobOp> {
    let count = 1 + rng.below(OPS_MAX);
    let mut ops = Vec::new();
    for _ in 0..count {
        let op = blob_op(rng, len);
        len = match &op {
            BlobOp::Write { offset, data, .. } => len.max(offset + data.0.len() as u64),
            BlobOp::Resize(to) => *to,
            _ => len,
        };
        ops.push(op);
    }
    ops
}

/// How the sessions of a seed run.
#[derive(Clone, Debug)]
struct Mode {
    faulty: bool,
    /// Sessions run at once; the driver crashes the disk, not a session.
    concurrent: bool,
    crashed: Arc<AtomicBool>,
    /// Race rounds: the sessions share the names.
    race: Option<Race>,
}

/// A session on `key` (a blob of about `len` bytes).
fn plan(rng: &mut Rng, key: Key, len: u64, mode: &Mode, landing: bool) -> Plan {
    let route = Route::random(rng);
    let action = match rng.one_in(8) {
        true => Action::Remove,
        false => Action::Blob(blob_ops(rng, len)),
    };
    let steps = match &action {
        Action::Blob(ops) => 1 + ops.len() as u64,
        _ => 1,
    };
    let crash = match mode.concurrent {
        // Sessions on other shards still run: only the last step may be
        // cut, its operation going on in the background.
        true => rng.one_in(4).then(|| Crash {
            step: steps as usize - 1,
            cut: Some(rng.below(8) as usize),
            disk: false,
        }),
        false => rng.one_in(CRASH_ONE_IN).then(|| Crash {
            step: rng.below(steps) as usize,
            cut: rng.one_in(2).then(|| rng.below(8) as usize),
            disk: true,
        }),
    };
    Plan::new(key, route, action, crash, mode, landing)
}

/// A session of a race round on `key`: an open and up to [`OPS_MAX`]
/// operations, a remove of the blob or of its partition, or a scan. One in
/// three is cut after a few polls at a random step, ending it there.
fn race_plan(rng: &mut Rng, key: Key, len: u64, mode: &Mode) -> Plan {
    let route = Route::random(rng);
    let cut = rng.one_in(3).then(|| rng.below(8) as usize);
    let action = match rng.below(16) {
        0..=2 => Action::Remove,
        3 => Action::RemovePartition,
        4 => Action::Scan,
        _ => {
            let mut ops = blob_ops(rng, len);
            if cut.is_some() {
                ops.truncate(rng.below(ops.len() as u64 + 1) as usize);
            }
            Action::Blob(ops)
        }
    };
    let step = match &action {
        Action::Blob(ops) => ops.len(),
        _ => 0,
    };
    let crash = cut.map(|cut| Crash {
        step,
        cut: Some(cut),
        disk: false,
    });
    Plan::new(key, route, action, crash, mode, false)
}

/// A running engine on the simulated disk.
struct World {
    /// `None` only while it restarts.
    engine: Option<Engine>,
    client: Client,
    /// One partition owned by each shard.
    partitions: Vec<String>,
}

/// Set when a thread of a shard panics outside a session's task (which
/// `spawn_on` catches, and which sets it too). An engine whose shard died
/// never shuts down (it waits for the dead shard's report): the test fails
/// at the end of the round instead, and leaks that engine.
static SHARD_PANICKED: AtomicBool = AtomicBool::new(false);

/// Records panics on the shards' threads in [`SHARD_PANICKED`].
fn watch_shard_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_string);
            if name.is_some_and(|n| n.starts_with("shardblob-")) {
                SHARD_PANICKED.store(true, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

impl Drop for World {
    fn drop(&mut self) {
        if SHARD_PANICKED.load(Ordering::SeqCst) {
            std::mem::forget(self.engine.take());
        }
    }
}

impl World {
    fn start(disk: SimFs) -> World {
        let config = Config {
            shards: 2,
            io_memory_bytes: 256 << 10,
            spin_before_park_us: 0,
            ..Config::default()
        };
        let engine =
            Engine::start_simulated(config, disk).expect("an engine on the simulated disk");
        let partitions = (0..engine.shard_count())
            .map(|shard| support::partition_on(&engine, shard, "p"))
            .collect();
        let client = engine.client();
        World {
            engine: Some(engine),
            client,
            partitions,
        }
    }

    /// Runs one session on its route.
    async fn run(&self, plan: Plan, entry: Entry, fs: SimFs) -> Outcome {
        let owner = self.client.shard_of(&plan.key.0);
        let shard = match plan.route {
            Route::Foreign => return run_plan(self.client.clone(), entry, plan, fs).await,
            Route::Forwarded => (owner + 1) % self.client.shard_count(),
            Route::Local => owner,
        };
        let task = self
            .client
            .spawn_on(shard, move |storage| run_plan(storage, entry, plan, fs));
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => panic!("the session on shard {shard} failed: {e}"),
        }
    }

    /// Shuts this engine down.
    fn shutdown(&mut self) {
        if let Some(Err(e)) = self.engine.take().map(Engine::shutdown) {
            panic!("shutdown: {e}");
        }
    }

    /// Shuts this engine down and starts a new one on `disk`.
    fn restart(&mut self, disk: SimFs) {
        self.shutdown();
        *self = World::start(disk);
    }
}

/// Checks one name after a crash (`kept`: it is listed) and returns what it
/// holds now.
async fn check_name(client: &Client, key: &Key, entry: &Entry, kept: bool) -> Entry {
    let model = match (entry, kept) {
        (Entry::Absent, true) => panic!("{key:?} is there after the crash, but its remove returned Ok (or it was never created)"),
        (Entry::Present(_), false) => panic!("{key:?}: open returned Ok, not removed since, but gone after the crash"),
        (_, false) => return Entry::Absent,
        (Entry::Present(model) | Entry::Maybe(model), true) => model,
    };
    let (blob, len) = match client.open(&key.0, &key.1).await {
        Ok(opened) => opened,
        Err(e) => panic!("{key:?} does not reopen after the crash: {e}"),
    };
    let bytes = match blob.read_at(0, len as usize).await {
        Ok(bytes) => bytes,
        Err(e) => panic!("{key:?}: read after the crash: {e}"),
    };
    let fresh = matches!(entry, Entry::Maybe(_)) && bytes.is_empty();
    if let (false, Err(e)) = (fresh, model.check_crashed(&bytes)) {
        panic!("{key:?} after the crash: {e}");
    }
    Entry::Present(BlobModel::observed(&bytes))
}

/// Checks every partition and name after a crash, through the client.
async fn check_crashed(world: &World, entries: &mut BTreeMap<Key, Entry>) {
    for p in &world.partitions {
        let listed = match world.client.scan(p).await {
            Ok(names) => names,
            Err(Error::PartitionMissing(_)) => Vec::new(),
            Err(e) => panic!("scan {p} after the crash: {e}"),
        };
        for name in &listed {
            let key = (p.clone(), name.clone());
            assert!(entries.contains_key(&key), "{key:?}: never created");
        }
        for (key, entry) in entries.iter_mut().filter(|(key, _)| &key.0 == p) {
            *entry = check_name(&world.client, key, entry, listed.contains(&key.1)).await;
        }
    }
}

/// What the runs exercised, to show they did.
#[derive(Debug, Default)]
struct Stats {
    /// Sessions by route: foreign, forwarded, local.
    routes: [u64; 3],
    crashes: u64,
    /// Blobs that came back from a crash holding data, checked.
    blobs_checked: u64,
    injected_faults: u64,
    /// Race rounds: opens refused with `BlobAlreadyOpen`, and names whose
    /// opens and removes overlapped.
    opens_refused: u64,
    loosened: u64,
}

/// One seed's engine, disk, model and random numbers.
struct Run<'s> {
    rng: Rng,
    disk: SimFs,
    faults: Faults,
    mode: Mode,
    world: World,
    entries: BTreeMap<Key, Entry>,
    /// Names whose last session dropped a `start_sync`.
    landing: BTreeSet<Key>,
    stats: &'s RefCell<Stats>,
}

impl Run<'_> {
    fn new(seed: u64, concurrent: bool, stats: &RefCell<Stats>) -> Run<'_> {
        let mut rng = rng(seed);
        let disk = SimFs::new(seed);
        disk.set_latency(LATENCY_YIELDS[(seed % 3) as usize]);
        let faulty = rng.one_in(2);
        let faults = match faulty {
            true => Faults::random(FAULTS_PER_MILLION),
            false => Faults::default(),
        };
        let world = World::start(disk.clone());
        let entries = world
            .partitions
            .iter()
            .flat_map(|p| {
                NAMES
                    .iter()
                    .map(|n| ((p.clone(), n.to_vec()), Entry::Absent))
            })
            .collect();
        let crashed = Arc::new(AtomicBool::new(false));
        Run {
            rng,
            disk,
            faults,
            mode: Mode {
                faulty,
                concurrent,
                crashed,
                race: None,
            },
            world,
            entries,
            landing: BTreeSet::new(),
            stats,
        }
    }

    /// Plans a session on `key` and takes the name's entry for it.
    fn plan(&mut self, key: Key) -> (Plan, Entry) {
        let len = self.entries.get(&key).map_or(0, Entry::len);
        let landing = self.landing.contains(&key);
        let plan = plan(&mut self.rng, key, len, &self.mode, landing);
        let drops_a_sync = matches!(&plan.action, Action::Blob(ops)
            if ops.iter().any(|op| matches!(op, BlobOp::StartSync { dropped: true })));
        match drops_a_sync {
            true => self.landing.insert(plan.key.clone()),
            false => self.landing.remove(&plan.key),
        };
        log(|| format!("{plan:?}"));
        self.stats.borrow_mut().routes[plan.route as usize] += 1;
        let entry = self.entries.insert(plan.key.clone(), Entry::Absent);
        (plan, entry.expect("a known name"))
    }

    /// One session on a random name of the first [`SEQUENTIAL_NAMES`];
    /// returns the disk after a crash if it crashed.
    async fn session(&mut self) -> Option<SimFs> {
        let partitions = &self.world.partitions;
        let p = partitions[self.rng.below(partitions.len() as u64) as usize].clone();
        let name = NAMES[self.rng.below(SEQUENTIAL_NAMES as u64) as usize].to_vec();
        let (plan, entry) = self.plan((p, name));
        let key = plan.key.clone();
        self.disk.set_faults(self.faults);
        let (entry, after) = self.world.run(plan, entry, self.disk.clone()).await;
        self.disk.set_faults(Faults::default());
        self.entries.insert(key, entry);
        after
    }

    /// A session on every name at once, on their routes; the disk crashes
    /// while they run or after they end. Returns the disk after the crash.
    async fn concurrent_round(&mut self) -> SimFs {
        let keys: Vec<Key> = self.entries.keys().cloned().collect();
        let plans: Vec<(Plan, Entry)> = keys.into_iter().map(|key| self.plan(key)).collect();
        let (outcomes, during) = self.at_once(plans).await;
        for (key, (entry, _)) in outcomes {
            self.entries.insert(key, entry);
        }
        during.unwrap_or_else(|| self.disk.crash())
    }

    /// Runs the sessions at once, on their routes, with faults on; half the
    /// time crashes the disk under them after a random pause (up to 3 ms).
    /// Returns their outcomes, and the disk after a crash if one came.
    async fn at_once(&mut self, plans: Vec<(Plan, Entry)>) -> (Vec<(Key, Outcome)>, Option<SimFs>) {
        let sleep_us = self.rng.one_in(2).then(|| self.rng.below(3000));
        let crashed = self.mode.crashed.clone();
        self.disk.set_faults(self.faults);
        let (world, disk) = (&self.world, &self.disk);
        let sessions = plans.into_iter().map(|(plan, entry)| async move {
            let key = plan.key.clone();
            (key, world.run(plan, entry, disk.clone()).await)
        });
        let disk = self.disk.clone();
        let crash = async move {
            let sleep_us = sleep_us?;
            glommio::timer::sleep(std::time::Duration::from_micros(sleep_us)).await;
            crashed.store(true, Ordering::SeqCst);
            Some(disk.crash())
        };
        let round = std::pin::pin!(future::join(future::join_all(sessions), crash));
        let hang = std::pin::pin!(glommio::timer::sleep(ROUND_TIME_MAX));
        let (outcomes, during) = match future::select(round, hang).await {
            future::Either::Left((ended, _)) => ended,
            future::Either::Right(_) => panic!(
                "the sessions still run after {ROUND_TIME_MAX:?}: a hang (a call whose \
                 answer never comes; a panic on a shard thread is printed above)"
            ),
        };
        self.disk.set_faults(Faults::default());
        assert!(
            !SHARD_PANICKED.load(Ordering::SeqCst),
            "a shard's thread panicked (printed above)"
        );
        for (_, (_, after)) in &outcomes {
            assert!(after.is_none(), "a concurrent session crashed the disk");
        }
        (outcomes, during)
    }

    /// A race round: [`RACE_SESSIONS`] sessions at once, each on a random
    /// shared name and route. A round the disk did not crash under ends
    /// with every name reopened, then the crash.
    async fn race_round(&mut self) -> SimFs {
        let race = self.mode.race.clone().expect("a race seed");
        race.start(&self.entries);
        let keys: Vec<Key> = self.entries.keys().cloned().collect();
        let mut plans = Vec::new();
        for _ in 0..RACE_SESSIONS {
            let key = keys[self.rng.below(keys.len() as u64) as usize].clone();
            let len = self.entries[&key].len();
            let plan = race_plan(&mut self.rng, key, len, &self.mode);
            log(|| format!("{plan:?}"));
            self.stats.borrow_mut().routes[plan.route as usize] += 1;
            plans.push((plan, Entry::Absent));
        }
        let (_, during) = self.at_once(plans).await;
        self.entries = race.end();
        if let Some(after) = during {
            return after;
        }
        self.reopen_all().await;
        self.disk.crash()
    }

    /// After a race round that ran out: every name opens within a second,
    /// none left "already open" by a dropped open (a forwarded one is
    /// closed by its owner) or by a handle whose last operation landed.
    async fn reopen_all(&mut self) {
        for (key, entry) in self.entries.iter_mut() {
            let mut refused = 0;
            let (blob, len) = loop {
                match self.world.client.open(&key.0, &key.1).await {
                    Ok(opened) => break opened,
                    Err(Error::BlobAlreadyOpen { .. }) if refused < 1000 => {
                        refused += 1;
                        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    Err(e) => panic!("{key:02x?} after the round: {e}"),
                }
            };
            let mut model = opened(entry.clone(), len, key);
            close(&mut model, Trim::Maybe, None);
            *entry = Entry::Present(model);
            drop(blob);
        }
    }

    /// Restarts the engine on the crashed disk and checks every name.
    async fn crashed(&mut self, after: SimFs) {
        log(|| "crash".to_string());
        {
            let mut stats = self.stats.borrow_mut();
            stats.injected_faults += self.disk.injected_faults();
            stats.crashes += 1;
        }
        self.disk = after;
        self.landing.clear();
        self.mode.crashed.store(false, Ordering::SeqCst);
        self.world.restart(self.disk.clone());
        check_crashed(&self.world, &mut self.entries).await;
        let with_data = self.entries.values().filter(|e| e.len() > 0).count();
        self.stats.borrow_mut().blobs_checked += with_data as u64;
    }
}

async fn sequential_seed(seed: u64, stats: &RefCell<Stats>) {
    let mut run = Run::new(seed, false, stats);
    for _ in 0..SESSIONS {
        if let Some(after) = run.session().await {
            run.crashed(after).await;
        }
    }
    let after = run.disk.crash();
    run.crashed(after).await;
    run.world.shutdown();
}

async fn race_seed(seed: u64, stats: &RefCell<Stats>) {
    watch_shard_panics();
    let mut run = Run::new(seed, true, stats);
    let race = Race::default();
    run.mode.race = Some(race.clone());
    let shared = &NAMES[..RACE_NAMES];
    run.entries
        .retain(|key, _| shared.contains(&key.1.as_slice()));
    for _ in 0..ROUNDS {
        let after = run.race_round().await;
        run.crashed(after).await;
    }
    run.world.shutdown();
    let mut stats = stats.borrow_mut();
    stats.opens_refused += race.refused.load(Ordering::SeqCst);
    stats.loosened += race.loosened.load(Ordering::SeqCst);
}

async fn concurrent_seed(seed: u64, stats: &RefCell<Stats>) {
    let mut run = Run::new(seed, true, stats);
    for _ in 0..ROUNDS {
        let after = run.concurrent_round().await;
        run.crashed(after).await;
    }
    run.world.shutdown();
}

/// Checks that the runs did what they are for.
fn check_stats(stats: RefCell<Stats>, seeds: u64, test: &str) {
    let stats = stats.into_inner();
    eprintln!("{test}: {stats:?}");
    if stats.crashes >= seeds {
        // Enough seeds ran for every route, crashes with data on the disk
        // and injected faults to have happened many times.
        assert!(stats.routes.iter().all(|&n| n > seeds), "{stats:?}");
        assert!(stats.crashes > 2 * seeds, "{stats:?}");
        assert!(stats.blobs_checked > 2 * seeds, "{stats:?}");
        assert!(stats.injected_faults > seeds, "{stats:?}");
    }
}

#[test]
fn engine_sessions_on_every_route_survive_crashes_and_faults() {
    let stats = RefCell::new(Stats::default());
    run_seeds("engine_sim", "SHARDBLOB_ENGINE_SIM_SEEDS", SEEDS, |seed| {
        sequential_seed(seed, &stats)
    });
    check_stats(stats, SEEDS, "engine_sim");
}

/// Issue 11 across shards: a session on each of the eight names at once
/// (on both shards and the test's thread, on partitions of both shards),
/// some cut short with their operations going on, the disk crashed while
/// they run or after.
#[test]
fn concurrent_sessions_on_two_shards_survive_crashes_and_faults() {
    let stats = RefCell::new(Stats::default());
    let count_var = "SHARDBLOB_ENGINE_SIM_SEEDS";
    run_seeds("engine_sim", count_var, CONCURRENT_SEEDS, |seed| {
        concurrent_seed(seed, &stats)
    });
    check_stats(stats, CONCURRENT_SEEDS, "engine_sim concurrent");
}

/// Issue 11 across shards, on shared names: eight sessions at once on two
/// names of each of the two partitions (owned by different shards), on
/// both shards and the test's thread, racing opens, removes of blobs and
/// partitions, scans and blob operations; futures cut at random polls,
/// faults, crashes. `races.rs` says what the model allows.
#[test]
fn sessions_racing_on_shared_names_across_shards_keep_the_contract() {
    let stats = RefCell::new(Stats::default());
    let count_var = "SHARDBLOB_ENGINE_SIM_SEEDS";
    run_seeds("engine_sim", count_var, RACE_SEEDS, |seed| {
        race_seed(seed, &stats)
    });
    let (refused, loosened, crashes) = {
        let stats = stats.borrow();
        (stats.opens_refused, stats.loosened, stats.crashes)
    };
    check_stats(stats, RACE_SEEDS, "engine_sim races");
    if crashes >= RACE_SEEDS {
        // The races happened: opens refused while a handle lived, opens
        // overlapping removes.
        assert!(
            refused > RACE_SEEDS && loosened > RACE_SEEDS,
            "{refused} {loosened}"
        );
    }
}
