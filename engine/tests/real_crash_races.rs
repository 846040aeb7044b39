//! Real kills under races (issue 11, last paragraph): a child process runs a
//! 2-shard engine on the real DMA path with many concurrent tasks, drops
//! futures at seeded points and races opens against removes; the parent
//! SIGKILLs it at a seeded moment, starts an engine on the same data_dir and
//! checks what the contract and the kill leave. Several kills per seed,
//! several seeds; the machinery is `support/kill.rs`, shared with
//! `real_crash.rs`.
//!
//! The child (test `races_child`, idle unless `SHARDBLOB_RACES_CHILD` is set):
//! - Data blobs, one per path: opened on shard 0 in its own partition
//!   (direct calls), opened on shard 0 in a partition of shard 1
//!   (forwarded), and opened by the `Client` (foreign thread). Each has
//!   `WRITERS` concurrent writers, each owning an unaligned region (so
//!   neighbours share 4 KiB blocks) with a seeded sequence of writes (some
//!   `WriteOptions::SYNC`, some vectored), `sync` and `start_sync`; a
//!   quarter of the futures are dropped, after 1 to 4 polls or when a
//!   timer fires.
//! - Race names: three blob names in a partition of each shard, raced in
//!   epochs by four actors, two on `Client` threads and one `spawn_on` task
//!   on each shard (so every partition sees direct, forwarded and foreign
//!   calls): `open` (then a check that the blob holds only zeros and valid
//!   stamps of its own name, and appended 64-byte stamps, some SYNC, some
//!   dropped), `remove` of a blob or the whole partition, and `scan`. Only
//!   the third name gets dropped opens and removes. After each epoch (all
//!   actors done, all handles dropped) every name must open within
//!   `QUIESCE_TRIES` tries (none stays "already open"), and no file of a
//!   race name may stay open (no descriptor leaks). The parent kills only
//!   after the first epoch passed these checks, and never during them.
//! - Every step is journaled (`support/kill.rs`) before and after, so the
//!   parent knows what was acknowledged, dropped or in flight, and in what
//!   order.
//!
//! The parent, after each kill:
//! - Data blobs: replays each writer's seeded operations and gives every
//!   byte the set of values it may hold: a write that completed before the
//!   kill (synced or not: a kill keeps the page cache) sets its bytes
//!   exactly; a dropped or in-flight one adds its bytes as possible;
//!   untouched bytes keep their value, and bytes never written read zero.
//!   The length lies between the end of the completed writes and the end
//!   of every started one, rounded up to 4 KiB.
//! - Race names: every name opens; each holds only zeros and valid stamps
//!   of its own name; every acknowledged stamp write is present when every
//!   remove of its name ended before its open began; a stamp of a handle
//!   that an acknowledged remove began after is gone; a name whose remove
//!   was acknowledged and that no open could have created since is not
//!   listed.
//!
//! What it caught, each fix reverted by hand (never committed):
//! - The close guard of a forwarded open (`engine/src/shard.rs`: the guard
//!   of an open whose caller left forgotten instead of dropped): the file
//!   stays open after every handle is dropped (the descriptor check after
//!   an epoch; the name itself is freed by the next remove).
//! - The open/remove exclusion (`shards/src/store.rs`, a remove not waiting
//!   for the opens in progress): the store's own debug assertion fires on
//!   the shard, and the first epoch never ends (the parent's timeout).
//! - Not caught: dropping a started commit (`shards/src/blob/commit.rs`)
//!   instead of finishing it. What it loses is bookkeeping of a write whose
//!   caller left, which a kill cannot tell from a write that did not
//!   happen; `shards/tests/store/blob_races.rs` checks it.
//! - Unreverted, it found a real leak: a dropped direct open lost the
//!   descriptor of an `openat` glommio had been asked to cancel but the
//!   kernel completed (`shards/src/fs/dma.rs` now lets the open finish).
//!
//! Seeds: `SHARDBLOB_RACES_SEED=<seed>` runs that seed alone (the kill
//! moments follow the seed; the thread interleavings do not).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::future::join_all;
use shardblob::{Blob, Client, Config, Engine, Error, Storage, WriteOptions};
use shardblob_shards::rng::{splitmix64, Rng};
use support::kill::{
    complete_lines, env_number, files_open_under, open_journal, report, seed_from_env, Victim,
    WorkDir,
};
use support::partition_on;

const CHILD_ENV: &str = "SHARDBLOB_RACES_CHILD";
const SEED_ENV: &str = "SHARDBLOB_RACES_SEED";
const CYCLE_ENV: &str = "SHARDBLOB_RACES_CYCLE";

/// Seeds per run when no seed is given.
const SEEDS: u64 = 3;
/// Kills per seed.
const CYCLES: usize = 8;
/// How long a child may take to start its engine and open its blobs.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The first epoch of races must pass its checks within this time...
const EPOCH_TIMEOUT: Duration = Duration::from_secs(20);
/// ... and the kill lands this long after it, at most.
const KILL_AFTER_MAX_US: u64 = 700_000;

/// Concurrent writers per data blob, each with its own region.
const WRITERS: u64 = 2;
/// A writer's region: not a multiple of 4 KiB, so regions share blocks.
const REGION: u64 = 6000;
/// Operations a writer runs if it is never killed.
const WRITER_OPS_MAX: u64 = 50_000;
/// The data blobs: direct, forwarded, foreign.
const DATA_BLOBS: usize = 3;

/// The race names; only the last one gets dropped opens and removes.
const NAMES: [&[u8]; 3] = [b"r0", b"r1", b"r2"];
const DROPPABLE: usize = 2;
/// Race actors: two `Client` threads, one task on each shard.
const ACTORS: usize = 4;
/// Operations per actor per epoch, and epochs a child runs at most.
const EPOCH_OPS: u64 = 6;
const EPOCHS_MAX: u64 = 500;
/// Tries (1 ms apart) for a name to open, and for its files to close, once
/// every handle is dropped: dropped opens are served within a few round
/// trips.
const QUIESCE_TRIES: u32 = 1000;
/// How long the parent lets a child finish the check it is in before the
/// kill.
const CHECK_GRACE: Duration = Duration::from_secs(20);
/// A stamp: 64 bytes at a 64-byte offset (never across a 512-byte sector).
const STAMP: usize = 64;
const STAMP_MAGIC: &[u8; 4] = b"STMP";
const BLOCK: u64 = 4096;

/// The partitions of a run: data on shard 0 and 1, races on shard 0 and 1.
struct Partitions {
    data: [String; 2],
    race: [String; 2],
}

impl Partitions {
    fn of(engine: &Engine) -> Partitions {
        let on = |shard, prefix| partition_on(engine, shard, prefix);
        Partitions {
            data: [on(0, "kd"), on(1, "kd")],
            race: [on(0, "kr"), on(1, "kr")],
        }
    }

    /// Data blob `b`: (partition, name).
    fn data_blob(&self, b: usize) -> (&str, &'static [u8]) {
        match b {
            0 => (&self.data[0], b"direct"),
            1 => (&self.data[1], b"forwarded"),
            _ => (&self.data[0], b"foreign"),
        }
    }
}

/// What every task of a child shares.
#[derive(Clone)]
struct Ctx {
    journal: Arc<File>,
    parts: Arc<Partitions>,
    seed: u64,
    cycle: usize,
}

fn writer_seed(seed: u64, cycle: usize, b: usize, w: u64) -> u64 {
    splitmix64(seed ^ splitmix64((cycle as u64) << 16 | (b as u64) << 8 | w))
}

fn actor_seed(seed: u64, cycle: usize, epoch: u64, a: usize) -> u64 {
    splitmix64(!seed ^ splitmix64((cycle as u64) << 40 | epoch << 8 | a as u64))
}

/// Where a future is dropped: after some polls (at a wake-up: mid-way
/// through a call of several steps), or when a timer fires (anywhere,
/// as a timeout does).
#[derive(Clone, Copy)]
enum Cut {
    Polls(u32),
    Micros(u64),
}

/// A quarter of the futures are dropped: half after 1 to 4 polls, half
/// after up to 3 ms.
fn drop_point(rng: &mut Rng) -> Option<Cut> {
    if !rng.one_in(4) {
        return None;
    }
    Some(match rng.coin() {
        true => Cut::Polls(1 + rng.below(4) as u32),
        false => Cut::Micros(rng.below(3000)),
    })
}

/// Runs `fut` until it ends or `cut` comes (timed with `pause`); `None`
/// if it was dropped unfinished.
async fn run_until<F: Future>(fut: F, cut: Option<Cut>, pause: Pause) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match cut {
        None => Some(fut.await),
        Some(Cut::Polls(polls)) => {
            let mut left = polls;
            std::future::poll_fn(move |cx| match left {
                0 => Poll::Ready(None),
                _ => {
                    left -= 1;
                    fut.as_mut().poll(cx).map(Some)
                }
            })
            .await
        }
        Some(Cut::Micros(micros)) => {
            let timeout = async {
                pause(Duration::from_micros(micros)).await;
                None
            };
            futures_lite::future::or(async { Some(fut.await) }, timeout).await
        }
    }
}

/// How a task waits: a shard task sleeps on its executor's timer; a
/// thread outside the engine has a helper thread wake it.
type Pause = fn(Duration) -> Pin<Box<dyn Future<Output = ()>>>;

fn pause_thread(wait: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    let (wake, woken) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(wait);
        let _ = wake.send(());
    });
    Box::pin(async move {
        let _ = woken.await;
    })
}

fn pause_shard(wait: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(glommio::timer::sleep(wait))
}

// ---------------------------------------------------------- data writers --

enum WriterOp {
    /// Writes `data` at `offset`, handed over in two pieces cut at `cut`.
    Write {
        offset: u64,
        data: Vec<u8>,
        cut: usize,
        sync: bool,
    },
    Sync {
        start: bool,
    },
}

/// Writer `w`'s next operation and its drop point.
fn writer_op(rng: &mut Rng, w: u64) -> (WriterOp, Option<Cut>) {
    let cut = drop_point(rng);
    if rng.one_in(8) {
        return (WriterOp::Sync { start: rng.coin() }, cut);
    }
    let rel = rng.below(REGION - 1);
    let len = 1 + rng.below((REGION - rel).min(3000));
    let op = WriterOp::Write {
        offset: w * REGION + rel,
        data: rng.bytes(len as usize),
        cut: rng.below(len + 1) as usize,
        sync: rng.one_in(4),
    };
    (op, cut)
}

/// Writer `w` of data blob `b`: its seeded operations, journaled as
/// `D s|c|x b w i` (started, completed, dropped).
async fn writer<B: Blob>(blob: B, ctx: &Ctx, pause: Pause, b: usize, w: u64) {
    let mut rng = Rng::new(writer_seed(ctx.seed, ctx.cycle, b, w));
    for i in 0..WRITER_OPS_MAX {
        let (op, drop_at) = writer_op(&mut rng, w);
        report(&ctx.journal, format!("D s {b} {w} {i}\n"));
        let done = match &op {
            WriterOp::Write {
                offset,
                data,
                cut,
                sync,
            } => {
                let options = [WriteOptions::NONE, WriteOptions::SYNC][*sync as usize];
                let pieces = [&data[..*cut], &data[*cut..]];
                run_until(
                    blob.write_vectored_at(*offset, &pieces, options),
                    drop_at,
                    pause,
                )
                .await
            }
            WriterOp::Sync { start: false } => run_until(blob.sync(), drop_at, pause).await,
            WriterOp::Sync { start: true } => run_until(blob.start_sync(), drop_at, pause).await,
        };
        let state = match done {
            Some(Ok(())) => "c",
            Some(Err(e)) => panic!("data blob {b} writer {w} op {i}: {e}"),
            None => "x",
        };
        report(&ctx.journal, format!("D {state} {b} {w} {i}\n"));
    }
}

/// Runs the writers of data blob `b` on `blob` until they end.
async fn run_writers<B: Blob>(blob: B, ctx: Ctx, pause: Pause, b: usize) {
    join_all((0..WRITERS).map(|w| writer(blob.clone(), &ctx, pause, b, w))).await;
}

/// Starts the writers of every data blob: blobs 0 and 1 from a task on
/// shard 0 (direct and forwarded), blob 2 from a foreign thread.
fn start_writers(client: &Client, ctx: &Ctx) -> Vec<std::thread::JoinHandle<()>> {
    (0..DATA_BLOBS)
        .map(|b| {
            let (client, ctx) = (client.clone(), ctx.clone());
            std::thread::spawn(move || {
                if b == 2 {
                    let (partition, name) = ctx.parts.data_blob(b);
                    let (blob, _) = block_on(client.open(partition, name)).expect("open data blob");
                    return block_on(run_writers(blob, ctx, pause_thread, b));
                }
                let task = client.spawn_on(0, move |storage| async move {
                    let (partition, name) = ctx.parts.data_blob(b);
                    let (blob, _) = storage.open(partition, name).await.expect("open data blob");
                    run_writers(blob, ctx, pause_shard, b).await;
                });
                block_on(task).expect("data writers' task");
            })
        })
        .collect()
}

// ------------------------------------------------------------ race names --

/// Stamp `k` of operation `i` of actor `a` in `cycle`, for race name `n`
/// of race partition `p`: its fields, filler derived from them, a checksum.
fn stamp(p: usize, n: usize, a: usize, cycle: usize, i: u64, k: u64) -> [u8; STAMP] {
    let mut s = [0u8; STAMP];
    s[..4].copy_from_slice(STAMP_MAGIC);
    s[4..8].copy_from_slice(&[p as u8, n as u8, a as u8, k as u8]);
    s[8..16].copy_from_slice(&(cycle as u64).to_le_bytes());
    s[16..24].copy_from_slice(&i.to_le_bytes());
    let fill = Rng::new(checksum(&s[..24])).bytes(32);
    s[24..56].copy_from_slice(&fill);
    let sum = checksum(&s[..56]);
    s[56..].copy_from_slice(&sum.to_le_bytes());
    s
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0x5eed, |h, &b| splitmix64(h ^ b as u64))
}

/// Who wrote a stamp.
#[derive(Debug)]
struct StampId {
    a: usize,
    cycle: usize,
    i: u64,
    k: u64,
}

/// The stamps in the content of race name `n` of partition `p`, by offset;
/// `Err` if anything else than zeros and valid stamps of that name is there.
fn stamps_in(bytes: &[u8], p: usize, n: usize) -> Result<Vec<(u64, StampId)>, String> {
    if !bytes.len().is_multiple_of(STAMP) {
        return Err(format!(
            "length {} is not a multiple of {STAMP}",
            bytes.len()
        ));
    }
    let mut found = Vec::new();
    for (at, chunk) in bytes.chunks(STAMP).enumerate() {
        let off = (at * STAMP) as u64;
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        let field = |r: std::ops::Range<usize>| u64::from_le_bytes(chunk[r].try_into().unwrap());
        let (a, k) = (chunk[6] as usize, chunk[7] as u64);
        let id = StampId {
            a,
            cycle: field(8..16) as usize,
            i: field(16..24),
            k,
        };
        if chunk[..4] != *STAMP_MAGIC || chunk != stamp(p, n, a, id.cycle, id.i, k) {
            return Err(format!(
                "bytes {off}..{} are neither zeros nor a stamp of this name: {:02x?}",
                off + STAMP as u64,
                &chunk[..24]
            ));
        }
        found.push((off, id));
    }
    Ok(found)
}

/// One race actor: opens, removes and scans the race names through
/// `storage`, journaling `R <event> <actor> <op> <partition> <name> <arg>`
/// (name `NAMES.len()`: the whole partition).
struct Actor<S> {
    storage: S,
    pause: Pause,
    ctx: Ctx,
    a: usize,
}

impl<S: Storage> Actor<S> {
    fn log(&self, event: &str, i: u64, p: usize, n: Option<usize>, arg: u64) {
        let n = n.unwrap_or(NAMES.len());
        let a = self.a;
        report(
            &self.ctx.journal,
            format!("R {event} {a} {i} {p} {n} {arg}\n"),
        );
    }

    fn what(&self, i: u64, p: usize, n: Option<usize>) -> String {
        let name = n.map_or("*".into(), |n| {
            String::from_utf8_lossy(NAMES[n]).into_owned()
        });
        let (seed, cycle, a) = (self.ctx.seed, self.ctx.cycle, self.a);
        format!(
            "seed {seed}, cycle {cycle}, actor {a} op {i}: {}/{name}",
            self.ctx.parts.race[p]
        )
    }

    /// One epoch of seeded operations.
    async fn run(&self, epoch: u64) {
        let mut rng = Rng::new(actor_seed(self.ctx.seed, self.ctx.cycle, epoch, self.a));
        for j in 0..EPOCH_OPS {
            let i = epoch * EPOCH_OPS + j;
            let p = rng.below(2) as usize;
            let n = rng.below(NAMES.len() as u64) as usize;
            let cut = if n == DROPPABLE {
                drop_point(&mut rng)
            } else {
                None
            };
            match rng.below(10) {
                0..=4 => self.open(&mut rng, i, p, n, cut).await,
                5..=7 => self.remove(i, p, Some(n), cut).await,
                8 => self.remove(i, p, None, None).await,
                _ => self.scan(i, p).await,
            }
        }
    }

    /// Opens a name, checks it, appends a few stamps, holds it a moment.
    async fn open(&self, rng: &mut Rng, i: u64, p: usize, n: usize, cut: Option<Cut>) {
        self.log("os", i, p, Some(n), 0);
        let opened = run_until(
            self.storage.open(&self.ctx.parts.race[p], NAMES[n]),
            cut,
            self.pause,
        )
        .await;
        let (blob, len) = match opened {
            None => return self.log("ox", i, p, Some(n), 0),
            Some(Err(Error::BlobAlreadyOpen { .. })) => return self.log("oe", i, p, Some(n), 0),
            Some(Err(e)) => panic!("{}: open: {e}", self.what(i, p, Some(n))),
            Some(Ok(opened)) => opened,
        };
        self.check_opened(&blob, i, p, n, len).await;
        for k in 0..rng.below(4) {
            let off = len + k * STAMP as u64;
            let data = stamp(p, n, self.a, self.ctx.cycle, i, k);
            let options = [WriteOptions::NONE, WriteOptions::SYNC][rng.one_in(3) as usize];
            let cut = drop_point(rng);
            self.log("ws", i, p, Some(n), off);
            let event = match run_until(
                blob.write_vectored_at(off, &[&data], options),
                cut,
                self.pause,
            )
            .await
            {
                Some(Ok(())) => "wk",
                Some(Err(e)) => panic!("{}: stamp at {off}: {e}", self.what(i, p, Some(n))),
                None => "wx",
            };
            self.log(event, i, p, Some(n), off);
        }
        (self.pause)(Duration::from_micros(rng.below(2000))).await;
    }

    /// Journals an open's success and checks what the blob holds.
    async fn check_opened(&self, blob: &S::Blob, i: u64, p: usize, n: usize, len: u64) {
        self.log("oo", i, p, Some(n), len);
        let what = || self.what(i, p, Some(n));
        let bytes = blob
            .read_at(0, len as usize)
            .await
            .unwrap_or_else(|e| panic!("{}: read after open: {e}", what()));
        if let Err(why) = stamps_in(&bytes, p, n) {
            panic!(
                "{}: an open blob holds bytes never written to it: {why}",
                what()
            );
        }
    }

    async fn remove(&self, i: u64, p: usize, n: Option<usize>, cut: Option<Cut>) {
        self.log("rs", i, p, n, 0);
        let removed = self
            .storage
            .remove(&self.ctx.parts.race[p], n.map(|n| NAMES[n]));
        let event = match run_until(removed, cut, self.pause).await {
            None => "rx",
            Some(Ok(())) => "rk",
            Some(Err(Error::BlobMissing { .. } | Error::PartitionMissing(_))) => "re",
            Some(Err(e)) => panic!("{}: remove: {e}", self.what(i, p, n)),
        };
        self.log(event, i, p, n, 0);
    }

    async fn scan(&self, i: u64, p: usize) {
        match self.storage.scan(&self.ctx.parts.race[p]).await {
            Ok(names) => {
                let foreign = names.iter().find(|name| !NAMES.contains(&name.as_slice()));
                assert!(
                    foreign.is_none(),
                    "{}: scan lists {foreign:?}",
                    self.what(i, p, None)
                );
            }
            Err(Error::PartitionMissing(_)) => {}
            Err(e) => panic!("{}: scan: {e}", self.what(i, p, None)),
        }
    }

    /// After an epoch, every handle dropped: every name opens within
    /// `QUIESCE_TRIES` tries (dropped opens settle in a few round trips)
    /// and holds only zeros and its own stamps.
    async fn quiesce(&self, epoch: u64) {
        for p in 0..2 {
            for n in 0..NAMES.len() {
                let i = (epoch * 2 + p as u64) * NAMES.len() as u64 + n as u64;
                self.log("os", i, p, Some(n), 0);
                let (blob, len) = self.open_settled(i, p, n).await;
                self.check_opened(&blob, i, p, n, len).await;
            }
        }
    }

    /// With every handle dropped, no file of a race name stays open (a
    /// dropped open leaks no descriptor): within `QUIESCE_TRIES` rounds of
    /// an open on each shard, which takes the close notices of dropped
    /// handles, and 1 ms for the files to close.
    async fn no_file_left_open(&self, data_dir: &Path) {
        let mut held = Vec::new();
        for _ in 0..QUIESCE_TRIES {
            for partition in &self.ctx.parts.data {
                let probe = self.storage.open(partition, b"probe").await;
                drop(probe.unwrap_or_else(|e| panic!("probe open of {partition}: {e}")));
            }
            held = files_open_under(data_dir);
            // The data blobs and the probes stay open; the LOCK and the
            // shards' files at the root too.
            held.retain(|path| {
                let inside = path.strip_prefix(data_dir).expect("under the data_dir");
                let top = inside.iter().next().and_then(|top| top.to_str());
                inside.iter().count() > 1 && !self.ctx.parts.data.iter().any(|d| top == Some(d))
            });
            if held.is_empty() {
                return;
            }
            (self.pause)(Duration::from_millis(1)).await;
        }
        panic!(
            "seed {}, cycle {}: with every handle of the race names dropped, {held:?} stay open",
            self.ctx.seed, self.ctx.cycle
        );
    }

    async fn open_settled(&self, i: u64, p: usize, n: usize) -> (S::Blob, u64) {
        for _ in 0..QUIESCE_TRIES {
            match self.storage.open(&self.ctx.parts.race[p], NAMES[n]).await {
                Ok(opened) => return opened,
                Err(Error::BlobAlreadyOpen { .. }) => (self.pause)(Duration::from_millis(1)).await,
                Err(e) => panic!("{}: open after the epoch: {e}", self.what(i, p, Some(n))),
            }
        }
        panic!(
            "{}: still \"already open\" after {QUIESCE_TRIES} tries, with every handle dropped",
            self.what(i, p, Some(n))
        )
    }
}

/// One epoch of the race actors: two on `Client` threads, one task on each
/// shard; returns when all are done (their handles dropped).
fn run_epoch(client: &Client, ctx: &Ctx, epoch: u64) {
    let actors: Vec<_> = (0..ACTORS)
        .map(|a| {
            let (client, ctx) = (client.clone(), ctx.clone());
            std::thread::spawn(move || {
                if a < 2 {
                    let actor = Actor {
                        storage: client.clone(),
                        pause: pause_thread,
                        ctx,
                        a,
                    };
                    return block_on(actor.run(epoch));
                }
                let task = client.spawn_on(a - 2, move |storage| async move {
                    let actor = Actor {
                        storage,
                        pause: pause_shard,
                        ctx,
                        a,
                    };
                    actor.run(epoch).await
                });
                block_on(task).expect("race actor's task")
            })
        })
        .collect();
    for actor in actors {
        actor.join().expect("race actor");
    }
}

// ----------------------------------------------------------------- child --

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.join("data"),
        shards: 2,
        ..Config::default()
    }
}

/// The child side: runs only when `SHARDBLOB_RACES_CHILD` is set (the
/// parent test sets it); in a normal test run it returns at once. It runs
/// until it is killed.
#[test]
fn races_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let journal = Arc::new(open_journal(&dir.join("journal.log")));
    let engine = Engine::start(config(&dir)).expect("child engine starts");
    let ctx = Ctx {
        journal,
        parts: Arc::new(Partitions::of(&engine)),
        seed: env_number(SEED_ENV),
        cycle: env_number(CYCLE_ENV),
    };
    let client = engine.client();
    let writers = start_writers(&client, &ctx);
    report(&ctx.journal, "ready\n".into());
    let checking = dir.join("checking");
    for epoch in 0..EPOCHS_MAX {
        run_epoch(&client, &ctx, epoch);
        // The parent does not kill while this file exists: a check that
        // fails always gets to say so.
        fs::write(&checking, b"").expect("child marks its check");
        let checker = Actor {
            storage: client.clone(),
            pause: pause_thread,
            ctx: ctx.clone(),
            a: ACTORS,
        };
        block_on(checker.quiesce(epoch));
        block_on(checker.no_file_left_open(&dir.join("data")));
        fs::remove_file(&checking).expect("child unmarks its check");
        report(&ctx.journal, format!("Q {epoch}\n"));
    }
    for writer in writers {
        writer.join().expect("data writers");
    }
    drop(client);
    engine.shutdown().expect("child engine stops");
}

// ---------------------------------------------------------------- parent --

/// How a journaled call ended: at a journal line, or not for sure (dropped
/// or in flight at the kill: it may still take effect).
#[derive(Clone, Copy, Debug)]
enum End {
    Ok(usize),
    Err(usize),
    Open,
}

/// What the journal says about one data writer.
#[derive(Default)]
struct WriterLog {
    last_started: Option<u64>,
    completed: BTreeSet<u64>,
    dropped: BTreeSet<u64>,
}

struct OpenLog {
    start: usize,
    end: End,
    len: u64,
}

/// A remove of `name` (`None`: the whole partition) of race partition `p`.
struct RemoveLog {
    p: usize,
    name: Option<usize>,
    start: usize,
    end: End,
}

impl RemoveLog {
    fn covers(&self, p: usize, n: usize) -> bool {
        self.p == p && self.name.is_none_or(|name| name == n)
    }
}

/// A stamp write: by the handle of open (`a`, `i`), at `off`.
struct StampLog {
    p: usize,
    n: usize,
    a: usize,
    i: u64,
    off: u64,
    acked: bool,
}

/// The child's journal, parsed; positions are line numbers.
#[derive(Default)]
struct Journal {
    epochs: u64,
    writers: HashMap<(usize, u64), WriterLog>,
    /// By (actor, op); each names its partition and name.
    opens: HashMap<(usize, u64), (usize, usize, OpenLog)>,
    /// By (actor, op).
    removes: HashMap<(usize, u64), RemoveLog>,
    /// By (actor, op, offset).
    stamps: HashMap<(usize, u64, u64), StampLog>,
}

impl Journal {
    fn parse(text: &str) -> Journal {
        let mut journal = Journal::default();
        for (pos, line) in complete_lines(text).enumerate() {
            let words: Vec<&str> = line.split(' ').collect();
            let num = |at: usize| -> u64 {
                let word = words.get(at).and_then(|w| w.parse().ok());
                word.unwrap_or_else(|| panic!("bad journal line {pos}: {line:?}"))
            };
            match words[0] {
                "ready" => {}
                "Q" => journal.epochs += 1,
                "D" => journal.data(words[1], num(2) as usize, num(3), num(4)),
                "R" => journal.race(pos, words[1], [num(2), num(3), num(4), num(5), num(6)]),
                _ => panic!("bad journal line {pos}: {line:?}"),
            }
        }
        journal
    }

    fn data(&mut self, event: &str, b: usize, w: u64, i: u64) {
        let log = self.writers.entry((b, w)).or_default();
        match event {
            "s" => log.last_started = Some(i),
            "c" => drop(log.completed.insert(i)),
            _ => drop(log.dropped.insert(i)),
        }
    }

    fn race(&mut self, pos: usize, event: &str, [a, i, p, n, arg]: [u64; 5]) {
        let (a, p, n) = (a as usize, p as usize, n as usize);
        let name = (n < NAMES.len()).then_some(n);
        match event {
            "os" => {
                let start = OpenLog {
                    start: pos,
                    end: End::Open,
                    len: 0,
                };
                self.opens.insert((a, i), (p, n, start));
            }
            "oo" | "oe" => {
                let open = &mut self.opens.get_mut(&(a, i)).expect("open logged").2;
                open.end = [End::Err(pos), End::Ok(pos)][(event == "oo") as usize];
                open.len = arg;
            }
            "rs" => {
                let start = RemoveLog {
                    p,
                    name,
                    start: pos,
                    end: End::Open,
                };
                self.removes.insert((a, i), start);
            }
            "rk" | "re" => {
                let remove = self.removes.get_mut(&(a, i)).expect("remove logged");
                remove.end = [End::Err(pos), End::Ok(pos)][(event == "rk") as usize];
            }
            "ws" => {
                let write = StampLog {
                    p,
                    n,
                    a,
                    i,
                    off: arg,
                    acked: false,
                };
                self.stamps.insert((a, i, arg), write);
            }
            "wk" => {
                self.stamps
                    .get_mut(&(a, i, arg))
                    .expect("stamp logged")
                    .acked = true
            }
            _ => {} // "ox", "rx", "wx": dropped, may still take effect
        }
    }
}

/// A set of byte values.
#[derive(Clone, Copy)]
struct Values([u64; 4]);

impl Values {
    fn only(v: u8) -> Values {
        let mut set = Values([0; 4]);
        set.add(v);
        set
    }

    fn add(&mut self, v: u8) {
        self.0[v as usize / 64] |= 1 << (v % 64);
    }

    fn has(self, v: u8) -> bool {
        self.0[v as usize / 64] & 1 << (v % 64) != 0
    }

    fn list(self) -> Vec<u8> {
        (0..=255).filter(|&v| self.has(v)).collect()
    }
}

/// What data blob `b` may hold after the kill: the values of each byte,
/// and the bounds of its length (before rounding up to a block).
struct Allowed {
    bytes: Vec<Values>,
    len_min: u64,
    len_max: u64,
}

/// Replays the writers of data blob `b` from `base` (module docs).
fn allowed(base: &[u8], journal: &Journal, seed: u64, cycle: usize, b: usize) -> Allowed {
    let cap = (WRITERS * REGION).max(base.len() as u64) as usize;
    let mut bytes = vec![Values::only(0); cap];
    for (slot, &v) in bytes.iter_mut().zip(base) {
        *slot = Values::only(v);
    }
    let (mut len_min, mut len_max) = (base.len() as u64, base.len() as u64);
    for w in 0..WRITERS {
        let Some(log) = journal.writers.get(&(b, w)) else {
            continue;
        };
        let mut rng = Rng::new(writer_seed(seed, cycle, b, w));
        for i in log.last_started.map_or(0..0, |last| 0..last + 1) {
            let (WriterOp::Write { offset, data, .. }, _) = writer_op(&mut rng, w) else {
                continue;
            };
            let end = offset + data.len() as u64;
            len_max = len_max.max(end);
            let slots = &mut bytes[offset as usize..end as usize];
            if log.completed.contains(&i) {
                len_min = len_min.max(end);
                for (slot, &v) in slots.iter_mut().zip(&data) {
                    *slot = Values::only(v);
                }
            } else {
                for (slot, &v) in slots.iter_mut().zip(&data) {
                    slot.add(v);
                }
            }
        }
    }
    Allowed {
        bytes,
        len_min,
        len_max,
    }
}

/// Checks data blob content `got` against `allowed`.
fn check_data(got: &[u8], allowed: &Allowed) -> Result<(), String> {
    let len = got.len() as u64;
    let len_max = allowed.len_max.div_ceil(BLOCK) * BLOCK;
    if len < allowed.len_min || len > len_max {
        return Err(format!(
            "reopened length {len}: completed writes end at {}, started ones at {} \
             (so at most {len_max} with zero padding)",
            allowed.len_min, allowed.len_max
        ));
    }
    let zero = Values::only(0);
    for (at, &v) in got.iter().enumerate() {
        let values = allowed.bytes.get(at).copied().unwrap_or(zero);
        if !values.has(v) {
            let region = at as u64 / REGION;
            return Err(format!(
                "byte {at} (writer {region}'s region) reads {v:#04x}; a completed write, \
                 a dropped one or the bytes before allow only {:02x?}",
                values.list()
            ));
        }
    }
    Ok(())
}

/// The line of an acknowledged remove of race name (`p`, `n`) that no open
/// can have undone: every open of the name ended before it began (or
/// failed), none was dropped or still in flight.
fn must_be_gone(journal: &Journal, p: usize, n: usize) -> Option<usize> {
    let opens = journal
        .opens
        .values()
        .filter(|(op, on, _)| (*op, *on) == (p, n));
    let removes = journal.removes.values().filter(|r| r.covers(p, n));
    removes
        .filter(|r| matches!(r.end, End::Ok(_)))
        .map(|r| r.start)
        .find(|&start| {
            opens.clone().all(|(_, _, open)| match open.end {
                End::Ok(end) => end < start,
                End::Err(_) => true,
                End::Open => false,
            })
        })
}

/// Checks stamp `id` found at `off` of race name (`p`, `n`): written there
/// by a handle no acknowledged remove began after.
fn check_found(
    journal: &Journal,
    cycle: usize,
    p: usize,
    n: usize,
    off: u64,
    id: &StampId,
) -> Result<(), String> {
    let mut acked_removes = journal
        .removes
        .values()
        .filter(|r| r.covers(p, n) && matches!(r.end, End::Ok(_)));
    if id.cycle != cycle {
        return match acked_removes.next() {
            Some(r) if id.cycle < cycle => Err(format!(
                "{id:?} at {off}, from an earlier cycle, survived the remove acknowledged at journal line {}",
                r.start
            )),
            Some(_) | None if id.cycle < cycle => Ok(()),
            _ => Err(format!("{id:?} at {off} is from a later cycle")),
        };
    }
    let open = journal.opens.get(&(id.a, id.i)).map(|(_, _, open)| open);
    let (Some(open), true) = (open, journal.stamps.contains_key(&(id.a, id.i, off))) else {
        return Err(format!("{id:?} at {off} was never written there"));
    };
    let End::Ok(opened) = open.end else {
        return Err(format!(
            "{id:?} at {off} was written by an open that did not succeed"
        ));
    };
    if (off - open.len) / STAMP as u64 != id.k {
        return Err(format!(
            "{id:?} at {off}: its handle opened at length {}",
            open.len
        ));
    }
    match acked_removes.find(|r| r.start > opened) {
        Some(r) => Err(format!(
            "{id:?} at {off} was written through a handle opened at journal line {opened}, \
             yet a remove that began after it (line {}) was acknowledged",
            r.start
        )),
        None => Ok(()),
    }
}

/// Checks the content of race name (`p`, `n`) after the kill: zeros and
/// valid stamps only, none that a remove took, every acknowledged one
/// that no remove can have taken. Counts the stamps pinned.
fn check_stamps(
    bytes: &[u8],
    journal: &Journal,
    cycle: usize,
    p: usize,
    n: usize,
) -> Result<u64, String> {
    for (off, id) in stamps_in(bytes, p, n)? {
        check_found(journal, cycle, p, n, off, &id)?;
    }
    let mut pinned = 0;
    for write in journal.stamps.values() {
        let (_, _, open) = &journal.opens[&(write.a, write.i)];
        let kept = journal
            .removes
            .values()
            .filter(|r| r.covers(p, n))
            .all(|r| matches!(r.end, End::Ok(e) | End::Err(e) if e < open.start));
        if (write.p, write.n) != (p, n) || !write.acked || !kept {
            continue;
        }
        let want = stamp(
            p,
            n,
            write.a,
            cycle,
            write.i,
            (write.off - open.len) / STAMP as u64,
        );
        let at = write.off as usize;
        if bytes.get(at..at + STAMP) != Some(&want[..]) {
            return Err(format!(
                "the stamp actor {} wrote at {at} (op {}, acknowledged; no remove of the \
                 name since its open) is missing (blob length {})",
                write.a,
                write.i,
                bytes.len()
            ));
        }
        pinned += 1;
    }
    Ok(pinned)
}

/// What the parent counted over all seeds.
#[derive(Default)]
struct Tally {
    kills: usize,
    epochs: u64,
    writes_completed: usize,
    ops_dropped: usize,
    removes_acked: usize,
    /// Acknowledged stamps checked present, names checked gone.
    stamps_pinned: u64,
    names_gone: usize,
}

/// Opens blob `name` of `partition`, reads it whole and syncs it (the next
/// cycle's durable start).
fn read_whole(client: &Client, partition: &str, name: &[u8]) -> Result<Vec<u8>, String> {
    let read = block_on(async {
        let (blob, len) = client.open(partition, name).await?;
        let bytes = blob.read_at(0, len as usize).await?.to_vec();
        blob.sync().await?;
        shardblob::Result::Ok(bytes)
    });
    read.map_err(|e| {
        format!(
            "{partition}/{}: reopen after the kill: {e}",
            String::from_utf8_lossy(name)
        )
    })
}

/// Checks race partition `p` after the kill (module docs).
fn verify_races(
    client: &Client,
    parts: &Partitions,
    journal: &Journal,
    cycle: usize,
    p: usize,
    tally: &mut Tally,
) -> Result<(), String> {
    let partition = &parts.race[p];
    let listed = match block_on(client.scan(partition)) {
        Ok(names) => names,
        Err(Error::PartitionMissing(_)) => Vec::new(),
        Err(e) => return Err(format!("{partition}: scan after the kill: {e}")),
    };
    for (n, name) in NAMES.iter().enumerate() {
        let what = format!("{partition}/{}", String::from_utf8_lossy(name));
        if let Some(line) = must_be_gone(journal, p, n) {
            if listed.iter().any(|l| l == name) {
                return Err(format!(
                    "{what}: its remove was acknowledged (journal line {line}) and no open \
                     can have created it since, yet it is listed"
                ));
            }
            tally.names_gone += 1;
        }
        let bytes = read_whole(client, partition, name)?;
        tally.stamps_pinned +=
            check_stamps(&bytes, journal, cycle, p, n).map_err(|why| format!("{what}: {why}"))?;
    }
    Ok(())
}

/// Starts an engine on the killed child's data_dir and checks every data
/// blob and race name; what the data blobs hold becomes the next base.
fn verify(
    root: &Path,
    seed: u64,
    cycle: usize,
    journal: &Journal,
    bases: &mut [Vec<u8>],
    tally: &mut Tally,
) -> Result<(), String> {
    let engine = Engine::start(config(root))
        .map_err(|e| format!("engine does not start after the kill: {e}"))?;
    let parts = Partitions::of(&engine);
    let client = engine.client();
    for (b, base) in bases.iter_mut().enumerate() {
        let (partition, name) = parts.data_blob(b);
        let got = read_whole(&client, partition, name)?;
        check_data(&got, &allowed(base, journal, seed, cycle, b)).map_err(|why| {
            format!(
                "data blob {partition}/{}: {why}",
                String::from_utf8_lossy(name)
            )
        })?;
        *base = got;
    }
    for p in 0..2 {
        verify_races(&client, &parts, journal, cycle, p, tally)?;
    }
    drop(client);
    engine
        .shutdown()
        .map_err(|e| format!("shutdown after the checks: {e}"))?;
    let held = files_open_under(root);
    match held.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "shutdown closes every blob file, yet {held:?} are still open"
        )),
    }
}

/// Runs cycle `cycle`'s child and SIGKILLs it at a seeded moment: now and
/// then during its start, mostly while its tasks run. Returns its journal.
fn kill_a_child(root: &Path, seed: u64, cycle: usize, timing: &mut Rng) -> Result<Journal, String> {
    let path = root.join("journal.log");
    let _ = fs::remove_file(&path);
    let env = [
        (CHILD_ENV, root.display().to_string()),
        (SEED_ENV, seed.to_string()),
        (CYCLE_ENV, cycle.to_string()),
    ];
    let mut child = Victim::spawn("races_child", root, &env);
    let ready = if timing.one_in(6) {
        std::thread::sleep(Duration::from_micros(timing.below(40_000)));
        Ok(())
    } else {
        let ready = || fs::read_to_string(&path).is_ok_and(|text| text.contains("ready\n"));
        // Not before the first epoch of races passed its checks: a race
        // that hangs the engine fails here instead of being killed.
        let epoch_done = || fs::read_to_string(&path).is_ok_and(|text| text.contains("\nQ "));
        child.wait_ready(READY_TIMEOUT, ready).and_then(|()| {
            child.wait_ready(EPOCH_TIMEOUT, epoch_done)?;
            std::thread::sleep(Duration::from_micros(timing.below(KILL_AFTER_MAX_US)));
            child.wait_ready(CHECK_GRACE, || !root.join("checking").exists())
        })
    };
    if !child.kill(ready)? {
        return Err("the child ended before it was killed".into());
    }
    Ok(Journal::parse(
        &fs::read_to_string(&path).unwrap_or_default(),
    ))
}

/// Adds what a cycle's journal shows to the tally.
fn count(journal: &Journal, tally: &mut Tally) {
    tally.kills += 1;
    tally.epochs += journal.epochs;
    for log in journal.writers.values() {
        tally.writes_completed += log.completed.len();
        tally.ops_dropped += log.dropped.len();
    }
    let acked = journal
        .removes
        .values()
        .filter(|r| matches!(r.end, End::Ok(_)));
    tally.removes_acked += acked.count();
}

fn run_seed(seed: u64, tally: &mut Tally) {
    let work_dir = WorkDir::new(&format!("real-crash-races-{seed}"));
    let mut timing = Rng::new(splitmix64(seed ^ 0x6b69_6c6c));
    let mut bases = vec![Vec::new(); DATA_BLOBS];
    for cycle in 0..CYCLES {
        kill_a_child(&work_dir.0, seed, cycle, &mut timing)
            .and_then(|journal| {
                count(&journal, tally);
                verify(&work_dir.0, seed, cycle, &journal, &mut bases, tally)
            })
            .unwrap_or_else(|msg| {
                panic!("seed {seed}, cycle {cycle}: {msg}\n(rerun with {SEED_ENV}={seed})")
            });
    }
}

#[test]
fn sigkill_while_tasks_drop_futures_and_race_opens_with_removes() {
    let first = seed_from_env(SEED_ENV);
    let seeds = if std::env::var_os(SEED_ENV).is_some() {
        1
    } else {
        SEEDS
    };
    let started = Instant::now();
    let mut tally = Tally::default();
    for k in 0..seeds {
        let seed = if k == 0 { first } else { splitmix64(first ^ k) };
        eprintln!("real_crash_races: seed {seed} (rerun with {SEED_ENV}={seed})");
        run_seed(seed, &mut tally);
    }
    let Tally {
        kills,
        epochs,
        writes_completed,
        ops_dropped,
        removes_acked,
        stamps_pinned,
        names_gone,
    } = tally;
    eprintln!(
        "real_crash_races: {kills} kills, {epochs} race epochs, {writes_completed} data writes \
         completed, {ops_dropped} data operations dropped, {removes_acked} removes acknowledged, \
         {stamps_pinned} acknowledged stamps checked present, {names_gone} names checked gone, \
         {:.1?}",
        started.elapsed()
    );
    assert!(
        epochs > 0 && ops_dropped > 0 && removes_acked > 0 && stamps_pinned > 0 && names_gone > 0,
        "seeds from {first}: the checks did not bite (too few epochs, drops, removes, stamps or \
         gone names): is the child hanging?"
    );
}
