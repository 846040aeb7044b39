//! The shard store on a simulated file system, every operation checked
//! against the model.
//!
//! [`Harness::run`] performs one [`Op`] and checks its result: an `Ok` must
//! match the model, an error must be one the model expects (`BlobAlreadyOpen`,
//! `BlobMissing`, `PartitionMissing`, `BlobPoisoned`,
//! `BlobInsufficientLength`) or come from a fault injected during that very
//! op. A failed op, or one cut short by a crash (`limit`), leaves the model in
//! "maybe": old or new. After a failed op that touches names, the harness
//! peeks at the current directory listings (faults off) to know which files
//! are there, as a caller could by scanning.
//!
//! Names: a name a crash must keep (its open returned `Ok`, no remove tried
//! since), may keep, or must drop (its remove returned `Ok`: the entry is
//! gone). [`Harness::crash`] crashes the disk, starts a new store on the new
//! view and checks every partition and blob against the model, then takes
//! what it found as the new, durable state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use shardblob_shards::fs::sim::{Faults, SimFs};
use shardblob_shards::name::hex;
use shardblob_shards::sched::{IoScheduler, SchedConfig};
use shardblob_shards::{Blob, Error, IoClass, ShardBlob, ShardStore, WriteOptions};

use super::model::BlobModel;
use super::{log, log_more};

pub type Model = Rc<RefCell<BlobModel>>;
/// Partition and blob name.
pub type Key = (String, Vec<u8>);

/// One open handle and the model of its file.
pub struct Handle {
    pub key: Key,
    pub blob: ShardBlob<SimFs>,
    pub model: Model,
    /// A sync or SYNC write failed on it.
    pub poisoned: bool,
}

/// Which handle an op uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The live open of a name.
    Open(Key),
    /// A handle whose blob was removed (it keeps its file).
    Orphan(usize),
}

/// Write data; its debug form is short.
#[derive(Clone)]
pub struct Data(pub Vec<u8>);

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes {:02x?}..",
            self.0.len(),
            &self.0[..self.0.len().min(4)]
        )
    }
}

#[derive(Clone, Debug)]
pub enum Op {
    Open(Key),
    Write {
        target: Target,
        offset: u64,
        data: Data,
        sync: bool,
        /// How the data is handed over ([`write_in`]).
        pieces: usize,
    },
    Read {
        target: Target,
        offset: u64,
        len: usize,
    },
    ReadMany {
        target: Target,
        ranges: Vec<(u64, usize)>,
    },
    Resize {
        target: Target,
        len: u64,
    },
    Sync {
        target: Target,
        start: bool,
    },
    Close(Target),
    Remove(Key),
    RemovePartition(String),
    Scan(String),
    /// A process restart without a crash: every handle and the store are
    /// dropped (trimming as they close), a new store opens the same disk.
    Restart,
}

impl Target {
    /// The live open of `partition/name`.
    pub fn open(partition: &str, name: &str) -> Target {
        Target::Open((partition.to_string(), name.as_bytes().to_vec()))
    }
}

/// Writes `data` at `offset` handed over as `pieces` says: one slice (1),
/// two with an empty one between (2), or a buffer of `alloc_buf` (3; a
/// zero-copy write where it is aligned).
pub async fn write_in<B: Blob>(
    blob: &B,
    offset: u64,
    data: &[u8],
    options: WriteOptions,
    pieces: usize,
) -> Result<(), Error> {
    if pieces == 3 {
        let mut buf = blob.alloc_buf(data.len())?;
        buf.copy_from_slice(data);
        return blob.write_buf_at(offset, buf, options).await.map(drop);
    }
    let cut = data.len() / pieces.max(1);
    let bufs: Vec<&[u8]> = match pieces > 1 && cut > 0 {
        true => vec![&data[..cut], &[], &data[cut..]],
        false => vec![data],
    };
    blob.write_vectored_at(offset, &bufs, options).await
}

impl Op {
    pub fn write(target: &Target, offset: u64, data: Vec<u8>, sync: bool) -> Op {
        let (target, data) = (target.clone(), Data(data));
        Op::Write {
            target,
            offset,
            data,
            sync,
            pieces: 2,
        }
    }

    pub fn read(target: &Target, offset: u64, len: usize) -> Op {
        Op::Read {
            target: target.clone(),
            offset,
            len,
        }
    }

    pub fn resize(target: &Target, len: u64) -> Op {
        Op::Resize {
            target: target.clone(),
            len,
        }
    }

    pub fn sync(target: &Target) -> Op {
        Op::Sync {
            target: target.clone(),
            start: false,
        }
    }

    pub fn start_sync(target: &Target) -> Op {
        Op::Sync {
            target: target.clone(),
            start: true,
        }
    }

    /// The handle the op uses, if any.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Op::Write { target, .. } | Op::Read { target, .. } => Some(target),
            Op::ReadMany { target, .. } | Op::Resize { target, .. } => Some(target),
            Op::Sync { target, .. } | Op::Close(target) => Some(target),
            _ => None,
        }
    }
}

/// How an op ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// An error the model expected.
    Refused,
    /// An error from a fault injected during the op.
    Failed,
    /// Cut short by a crash.
    Interrupted,
    /// Its handle does not exist.
    Skipped,
}

/// Counts that show what the runs exercised.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ops: u64,
    /// Ops that returned the error of a fault injected into them.
    pub failed: u64,
    /// Faults the store may absorb: a failed preallocation (advisory), a
    /// failed trim in a handle's drop, and a failed deletion of a removed
    /// partition's files after the removal committed (all best effort).
    pub swallowed: u64,
    pub interrupted: u64,
    pub crashes: u64,
    pub blobs_checked: u64,
    /// Blobs whose post-crash content or length differs from their content
    /// just before the crash (unsynced data lost or torn).
    pub blobs_changed: u64,
    /// Blobs that came back longer than their logical length (padding).
    pub blobs_padded: u64,
    /// Names a crash might drop: kept, dropped.
    pub maybe_names_kept: u64,
    pub maybe_names_dropped: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        let Stats {
            ops,
            failed,
            swallowed,
            interrupted,
            crashes,
            blobs_checked,
            blobs_changed,
            blobs_padded,
            maybe_names_kept,
            maybe_names_dropped,
        } = other;
        self.ops += ops;
        self.failed += failed;
        self.swallowed += swallowed;
        self.interrupted += interrupted;
        self.crashes += crashes;
        self.blobs_checked += blobs_checked;
        self.blobs_changed += blobs_changed;
        self.blobs_padded += blobs_padded;
        self.maybe_names_kept += maybe_names_kept;
        self.maybe_names_dropped += maybe_names_dropped;
    }
}

pub(super) struct Entry {
    /// The files the name may hold after a crash; the last is the listed one.
    pub(super) models: Vec<Model>,
    /// A crash must keep the name.
    pub(super) must: bool,
    /// The name is in the current listing.
    pub(super) listed: bool,
}

/// A partition directory and its names.
#[derive(Default)]
pub(super) struct Part {
    pub(super) listed: bool,
    pub(super) must: bool,
    pub(super) entries: BTreeMap<Vec<u8>, Entry>,
}

/// Polls `future` until it has returned `Pending` more than `limit` times
/// (each simulated file op yields once first), then drops it: `None`.
pub async fn limited<F: Future>(future: F, limit: Option<usize>) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut left = limit.unwrap_or(usize::MAX);
    poll_fn(move |cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if left == 0 => Poll::Ready(None),
        Poll::Pending => {
            left -= 1;
            Poll::Pending
        }
    })
    .await
}

pub(super) fn show(key: &Key) -> String {
    format!("{}/{}", key.0, hex(&key.1))
}

/// Checks that an error names its partition (and blob, for blob errors).
pub(super) fn check_names(e: &Error, key: (&str, Option<&[u8]>)) {
    let message = e.to_string();
    assert!(
        message.contains(key.0),
        "error does not name partition {}: {message}",
        key.0
    );
    let partition_level = matches!(e, Error::Io { name: None, .. } | Error::PartitionMissing(_));
    if let (Some(name), false) = (key.1, partition_level) {
        assert!(
            message.contains(&hex(name)),
            "error does not name blob {}: {message}",
            hex(name)
        );
    }
}

pub(super) fn expect_poisoned<T>(result: Result<T, Error>, key: &Key, op: &str) {
    match result {
        Err(e @ Error::BlobPoisoned { .. }) => {
            assert!(
                e.to_string().contains("poisoned"),
                "{op}: message must say poisoned: {e}"
            );
            check_names(&e, (&key.0, Some(&key.1)));
        }
        Err(e) => panic!(
            "{op} {} after a failed sync: {e}, expected BlobPoisoned",
            show(key)
        ),
        Ok(_) => panic!("{op} {} succeeded on a poisoned blob", show(key)),
    }
}

/// The store, its file system, and the model of both.
pub struct Harness {
    pub fs: SimFs,
    pub store: ShardStore<SimFs>,
    pub(super) parts: BTreeMap<String, Part>,
    pub(super) open: BTreeMap<Key, Handle>,
    pub(super) orphans: Vec<Handle>,
    pub(super) faults: Faults,
    /// Faults injected into latency-class calls before the current op.
    before: u64,
    /// Faults injected into file flushes before the current op.
    sync_faults_before: u64,
    pub stats: Stats,
}

/// Most yields a close waits for the work its blob started (the zeros
/// ahead: a few simulated device calls).
const CLOSE_YIELDS_MAX: usize = 100_000;

/// The store's step of space reserved and zeros written ahead of appends:
/// small, so that blobs of a few blocks grow the file several times (each
/// growth a few device writes that can fail), and runs stay short.
const SIM_PREALLOCATE_BYTES: u64 = 16 << 10;

impl Harness {
    pub fn new(seed: u64) -> Harness {
        Harness::with_piece_bytes(seed, SchedConfig::default().piece_bytes)
    }

    /// A harness whose store splits device I/O into pieces of
    /// `piece_bytes` (a small piece makes most writes several device
    /// writes, each of which can fail), also after restarts and crashes.
    pub fn with_piece_bytes(seed: u64, piece_bytes: usize) -> Harness {
        let fs = SimFs::new(seed);
        let config = SchedConfig {
            piece_bytes,
            ..SchedConfig::default()
        };
        let store = ShardStore::with_scheduler(fs.clone(), "/", IoScheduler::new(config));
        Harness {
            store: store.with_preallocate_bytes(SIM_PREALLOCATE_BYTES),
            fs,
            parts: BTreeMap::new(),
            open: BTreeMap::new(),
            orphans: Vec::new(),
            faults: Faults::default(),
            before: 0,
            sync_faults_before: 0,
            stats: Stats::default(),
        }
    }

    /// A new store on `fs`, scheduled as the current one (a restart).
    pub(super) fn new_store(&self, fs: SimFs) -> ShardStore<SimFs> {
        let config = *self.store.scheduler().config();
        ShardStore::with_scheduler(fs, "/", IoScheduler::new(config))
            .with_preallocate_bytes(SIM_PREALLOCATE_BYTES)
    }

    /// Injects faults into every op from now on (not into peeks and checks).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.fs.set_faults(faults);
    }

    /// Every handle an op can use, in a fixed order.
    pub fn targets(&self) -> Vec<Target> {
        let open = self.open.keys().cloned().map(Target::Open);
        open.chain((0..self.orphans.len()).map(Target::Orphan))
            .collect()
    }

    pub fn handle(&self, target: &Target) -> Option<&Handle> {
        match target {
            Target::Open(key) => self.open.get(key),
            Target::Orphan(i) => self.orphans.get(*i),
        }
    }

    pub fn is_open(&self, key: &Key) -> bool {
        self.open.contains_key(key)
    }

    /// Whether a fault was injected since the current op began. The ops
    /// run in the latency class; the store's background work (the zeros
    /// written ahead of appends, which a failure only stops) runs in the
    /// throughput class, so a fault there is not the op's.
    pub(super) fn faulted(&self) -> bool {
        self.fs.injected_faults_in(IoClass::Latency) > self.before
    }

    /// Whether a file flush failed since the current op began: a failed
    /// flush poisons the blob it flushed, whatever the op.
    pub(super) fn flush_faulted(&self) -> bool {
        self.fs.injected_sync_faults() > self.sync_faults_before
    }

    /// Waits until at most `open_max` blobs of the store are open: a
    /// dropped handle's blob closes when the work it started has landed.
    pub(super) async fn closed(&self, open_max: u64) {
        for _ in 0..CLOSE_YIELDS_MAX {
            if self.store.stats().open_blobs() <= open_max {
                return;
            }
            futures_lite::future::yield_now().await;
        }
        panic!("a closed blob's background work never landed");
    }

    /// Accepts an error only if a fault was injected during the op.
    pub(super) fn failed(&self, op: &Op, e: &Error, key: (&str, Option<&[u8]>)) {
        assert!(self.faulted(), "{op:?}: unexpected error: {e}");
        check_names(e, key);
    }

    /// Runs `op`; with `limit`, cuts it short after that many yields (the
    /// caller then crashes).
    pub async fn run(&mut self, op: &Op, limit: Option<usize>) -> Outcome {
        self.before = self.fs.injected_faults_in(IoClass::Latency);
        self.sync_faults_before = self.fs.injected_sync_faults();
        let background_before = self.fs.injected_faults_in(IoClass::Throughput);
        log(|| format!("{op:?} limit {limit:?}"));
        let outcome = match op {
            Op::Open(key) => self.open(op, key, limit).await,
            Op::Remove(key) => self.remove(op, key, limit).await,
            Op::RemovePartition(p) => self.remove_partition(op, p, limit).await,
            Op::Scan(p) => self.scan(op, p).await,
            Op::Close(target) => self.close(target).await,
            Op::Restart => self.restart().await,
            Op::Write {
                target,
                offset,
                data,
                sync,
                pieces,
            } => {
                self.write(op, target, *offset, &data.0, *sync, *pieces, limit)
                    .await
            }
            Op::Resize { target, len } => self.resize(op, target, *len, limit).await,
            Op::Sync { target, start } => self.sync(op, target, *start, limit).await,
            Op::Read {
                target,
                offset,
                len,
            } => self.read(op, target, *offset, *len, limit).await,
            Op::ReadMany { target, ranges } => self.read_many(op, target, ranges, limit).await,
        };
        log_more(|| format!(" -> {outcome:?}"));
        // A failed zero write ahead only stops the zeros: absorbed.
        let background = self.fs.injected_faults_in(IoClass::Throughput);
        self.stats.swallowed += background - background_before;
        self.stats.ops += 1;
        match outcome {
            Outcome::Failed => self.stats.failed += 1,
            Outcome::Interrupted => self.stats.interrupted += 1,
            _ => {}
        }
        outcome
    }
}

/// Whether a write or resize failed at the flush of the cut before it,
/// which poisons its blob (`CUT_FLUSH_OP`).
pub fn cut_flush_failed(e: &Error) -> bool {
    matches!(e, Error::Io { op, .. } if *op == shardblob_shards::CUT_FLUSH_OP)
}
