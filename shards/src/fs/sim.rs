//! A simulated file system: in memory, deterministic from a seed, able to fail
//! any call and to crash.
//!
//! Why it exists: a real disk cannot lose power or return EIO on demand, so
//! the store's error and crash paths cannot be tested on it. [`SimFs`]
//! implements the file seam, so the conformance suite and the crash simulation
//! drive the very same store code, and every run replays from its seed.
//!
//! Model. Each file (inode) holds its *current* bytes and its *durable* bytes;
//! each directory its current and its durable listing. A [`SimFs`] is a view
//! of a shared disk (clones share it). Every async call yields once to the
//! executor (a future dropped there was never submitted: no effect), then is
//! submitted: it counts as an op and its fault is decided. By default it then
//! acts at once.
//!
//! Threads. A disk and its views are `Send + Sync` (`Arc<Mutex<_>>` inside),
//! so the shards of one engine, each on its own thread, can share one
//! simulated disk (`Engine::start_simulated`); a [`SimFile`] stays on the
//! thread that opened it, like a `DmaFile`. Each call locks the disk for one
//! step and never across an await. One thread alone replays exactly from its
//! seed; several threads interleave their calls as the OS schedules them, so
//! op numbers, fault draws and crash choices follow that interleaving. A call
//! that races a crash made by another thread acts before the crash or not
//! at all (every effect checks, with the disk locked, that its view still
//! lives), as a request still in the device's queue at a power cut.
//!
//! Device latency ([`SimFs::set_latency`]): with a maximum of `n` yields, a
//! submitted call goes to the simulated device, a glommio task of its own
//! that waits a seeded `0..=n` executor yields, acts, waits another seeded
//! `0..=n` yields and completes. Completions therefore reorder, a read may
//! see a write that has not completed yet, and, as with io_uring (glommio's
//! drop only asks the kernel to cancel), a call whose future is dropped after
//! submission still acts later. A call still waiting when the disk crashes
//! never acts. No wall clock is involved: a seed replays exactly. It needs a
//! glommio executor; the default (no latency) does not.
//! - `write_at(.., durable: false)`, `set_len` and `set_len_now` change the
//!   current state only; `write_at(.., durable: true)` also copies its bytes
//!   into the durable state (growing the durable size to cover them, zeros in
//!   any gap). `sync_data` makes the current bytes and size durable;
//!   `sync_dir` makes that directory's current listing durable.
//! - Removing an entry keeps the inode for open handles (POSIX unlink).
//!   A rename removes the entry from its parent's current listing and adds
//!   it to the new parent's: two listing changes, each durable at its
//!   directory's `sync_dir` (so a crash keeps a rename within one directory
//!   whole, and may keep a rename across directories in both or neither).
//! - Paths: the root always exists; `/a/b` and `a/b` are the same; `..` is
//!   EINVAL. `list_dir` lists by name; `read_many` yields its ranges in a
//!   seeded random order.
//!
//! A crash ([`SimFs::crash`]) may do exactly this, each choice by the RNG:
//! - each directory keeps its durable listing plus any subset of its unsynced
//!   changes (per name: its durable or its current entry), except that the
//!   two names of a rename within that directory go together (old name or
//!   new name, never both or neither); a file or directory no longer
//!   reachable from the root through them vanishes;
//! - each file takes a size it had since its last flush (its durable size,
//!   its current size or any size a write or `set_len` gave it in between,
//!   none below the end of a durable write), then every 512-byte sector
//!   below it holds a version it had since then: its durable bytes, its
//!   current bytes or the bytes of any write to it since (zeros past the end
//!   of any): per file, all current, all durable, or chosen per sector (a
//!   torn write, or writes in flight landing in any order). A sector is never
//!   partly one version and partly another.
//!
//! Why that wide: it is what a real disk may do at a power cut. A write
//! that completed without a flush sits in the drive's volatile cache,
//! which writes sectors back in any order and loses the rest, so each
//! sector may come back as any write since its last flush made it (or as
//! it was then); only the 512-byte sector is written atomically. A file's
//! size lives in the file system's journal, whose transactions commit
//! independently of the data and of each other: any size update since the
//! last flush may be the last one that reached the disk. A directory's
//! entry changes are logged one by one, so any subset of those since its
//! last sync may survive, while a rename within one directory is one
//! journal update: whole or not at all. Only a flush (`sync_data`,
//! `sync_dir`, a data-sync write) is a promise. A simulation that keeps
//! only the flushed or the latest state would miss a store that relies on
//! a write reaching the disk before a later one, or on a size update
//! staying with the data that needed it.
//!
//! History bound: a file keeps at most [`HISTORY_MAX`] intermediate sector
//! versions and as many intermediate sizes; past that the oldest are
//! forgotten (a crash can then only pick among the newer ones, the durable
//! and the current state). `sync_data` clears the history; a durable write
//! drops the versions of the sectors it wrote and every size below its end.
//!
//! Afterwards current = durable. `crash` returns a new view that sees the
//! post-crash disk; every view and file handle from before fails every file
//! system call (as a killed process would make none), though its control
//! methods (faults, op count, crash) still work. Op counter, fault settings
//! and RNG carry on across the crash.
//!
//! Faults ([`Faults`]): every call of a [`FileSystem`] or [`File`] method
//! except `File::alloc` is one op, numbered from 0 ([`SimFs::op_count`]);
//! the file flushes (`sync_data`) are also numbered among themselves
//! ([`SimFs::sync_count`], [`Faults::at_sync`]). A
//! failed op changes nothing, except a short write: it stores a prefix of
//! whole sectors of the buffer (strictly shorter, current state only) and
//! returns that prefix's length, as the kernel reports a write cut short
//! after some bytes (for an even, non-zero number of sectors), or EIO.
//! Reads, `size` and `list_dir` fail with EIO; writes with EIO,
//! ENOSPC or a short write; other calls with EIO or ENOSPC. A file cannot grow
//! past [`MAX_FILE_BYTES`] (EFBIG).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_lite::future::yield_now;
use futures_lite::{stream, Stream, StreamExt};

use crate::rng::Rng;
use crate::sched::IoClass;

use super::{DirEntry, File, FileSystem, WriteBuf, BLOCK_SIZE};

/// Atomic unit of the simulated device: a crash keeps or drops whole sectors.
pub const SECTOR_BYTES: u64 = 512;
/// Largest file the simulation holds in memory; growing past it is EFBIG.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Fill byte of a fresh write buffer, whose contents are unspecified.
const UNFILLED_BYTE: u8 = 0xA5;
const ROOT: NodeId = 0;
/// Most intermediate sector versions, and most intermediate sizes, a file
/// remembers since its last flush; past it the oldest are forgotten.
pub const HISTORY_MAX: usize = 1024;

type NodeId = u64;

/// Which ops fail; settable at any time with [`SimFs::set_faults`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail the op with this index (the [`SimFs::op_count`] before it).
    pub fail_op_index: Option<u64>,
    /// Fail the file flush (`sync_data`) with this index among the flushes
    /// (the [`SimFs::sync_count`] before it).
    pub fail_sync_index: Option<u64>,
    /// Fail each op with this probability, in parts per million.
    pub fail_per_million: u32,
}

impl Faults {
    /// Fails exactly the op with index `index`.
    pub fn at_op(index: u64) -> Self {
        let fail_op_index = Some(index);
        Faults {
            fail_op_index,
            ..Faults::default()
        }
    }

    /// Fails exactly the file flush (`sync_data`) with index `index` among
    /// the flushes: a test of what a failed flush does.
    pub fn at_sync(index: u64) -> Self {
        let fail_sync_index = Some(index);
        Faults {
            fail_sync_index,
            ..Faults::default()
        }
    }

    /// Fails each op with probability `per_million` / 1 000 000.
    pub fn random(per_million: u32) -> Self {
        let fail_per_million = per_million;
        Faults {
            fail_per_million,
            ..Faults::default()
        }
    }
}

/// A view of a simulated disk; clones share it. Dies at the next crash.
#[derive(Clone)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
    /// The disk's crash count when this view was made.
    epoch: u64,
}

/// An open simulated file.
#[derive(Clone)]
pub struct SimFile {
    disk: Arc<Mutex<Disk>>,
    data: Arc<Mutex<FileData>>,
    /// The disk's crash count at open: the handle dies at the next crash.
    epoch: u64,
}

/// A write buffer backed by a `Vec`.
pub struct SimWriteBuf(Vec<u8>);

struct Disk {
    rng: Rng,
    faults: Faults,
    ops: u64,
    /// Of those, the file flushes (`sync_data`).
    syncs: u64,
    injected_faults: u64,
    /// Of those, the ones injected into file flushes.
    injected_sync_faults: u64,
    /// Of those, the ones injected into calls of each I/O class
    /// ([`IoClass::current`] at the call; by [`IoClass::ALL`]'s order).
    injected_by_class: [u64; 2],
    /// How many crashes happened: views and handles from an older epoch are dead.
    epoch: u64,
    /// Most executor yields a submitted call waits before it acts, and again
    /// before it completes; 0: it acts and completes at once.
    latency_yields_max: u32,
    next_id: NodeId,
    nodes: BTreeMap<NodeId, Node>,
}

enum Node {
    File(Arc<Mutex<FileData>>),
    Dir(DirData),
}

#[derive(Default)]
struct DirData {
    current: BTreeMap<OsString, NodeId>,
    durable: BTreeMap<OsString, NodeId>,
}

#[derive(Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Since the last flush, oldest first: each sector version a write left
    /// (sector index, its bytes), at most [`HISTORY_MAX`].
    versions: VecDeque<(usize, Box<[u8]>)>,
    /// Since the last flush, oldest first: each size the file had, at most
    /// [`HISTORY_MAX`].
    sizes: VecDeque<usize>,
}

/// Where a path points: its parent directory, last name and node (if any).
struct Place<'p> {
    parent: NodeId,
    name: &'p OsStr,
    node: Option<NodeId>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Read,
    Write,
    /// `sync_data`: counted apart for [`Faults::fail_sync_index`].
    Sync,
    Other,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Eio,
    Enospc,
    ShortWrite,
    /// The handle was opened before a crash.
    Dead,
}

/// Locks one part of the disk. Several threads share a disk (the shards of
/// an engine on it): each lock is held for one step of one call, never
/// across an await, and the disk's lock is taken before a file's (effects
/// run with the disk locked). A panic
/// with a lock held (a failed assertion in a test) leaves the data whole,
/// so a poisoned lock is used as it is.
trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Eio | Fault::ShortWrite => os_error(libc::EIO),
            Fault::Enospc => os_error(libc::ENOSPC),
            Fault::Dead => io::Error::other("simulated file handle opened before a crash"),
        }
    }
}

/// Checks a file size against [`MAX_FILE_BYTES`]; returns it as `usize`.
fn checked_size(len_bytes: u64) -> io::Result<usize> {
    match usize::try_from(len_bytes) {
        Ok(len) if len_bytes <= MAX_FILE_BYTES => Ok(len),
        _ => Err(os_error(libc::EFBIG)),
    }
}

/// Copies `bytes` to `pos` in `target`, growing it (zero-filled) to fit.
fn put(target: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let end = pos + bytes.len();
    if target.len() < end {
        target.resize(end, 0);
    }
    target[pos..end].copy_from_slice(bytes);
}

impl FileData {
    /// Sets the current size (extending with zeros or truncating).
    fn set_len(data: &Mutex<FileData>, len: u64) -> io::Result<()> {
        let len = checked_size(len)?;
        let mut data = data.locked();
        data.current.resize(len, 0);
        data.remember_size();
        Ok(())
    }

    /// Writes `bytes` at `start` in the current state (and, if `durable`, in
    /// the durable state), remembering the sector versions and the size.
    fn write(&mut self, start: usize, bytes: &[u8], durable: bool) {
        put(&mut self.current, start, bytes);
        let sector = SECTOR_BYTES as usize;
        let first = start / sector;
        let sectors = first..first + bytes.len().div_ceil(sector);
        if durable {
            put(&mut self.durable, start, bytes);
            self.versions.retain(|(index, _)| !sectors.contains(index));
            let end = start + bytes.len();
            self.sizes.retain(|&size| size >= end);
        } else {
            for (index, chunk) in sectors.zip(bytes.chunks(sector)) {
                push_bounded(&mut self.versions, (index, chunk.into()));
            }
        }
        self.remember_size();
    }

    fn remember_size(&mut self) {
        let size = self.current.len();
        if self.sizes.back() != Some(&size) {
            push_bounded(&mut self.sizes, size);
        }
    }

    /// Makes the current state durable and forgets the history.
    fn flush(&mut self) {
        self.durable.clone_from(&self.current);
        self.versions.clear();
        self.sizes.clear();
    }

    fn read(&self, pos: u64, len: usize) -> Rc<[u8]> {
        let size = self.current.len();
        let start = usize::try_from(pos).unwrap_or(usize::MAX).min(size);
        let end = start.saturating_add(len).min(size);
        Rc::from(&self.current[start..end])
    }

    /// The bytes a crash leaves (see the module docs).
    fn after_crash(&self, rng: &mut Rng) -> Vec<u8> {
        let sector_bytes = SECTOR_BYTES as usize;
        let mut sizes = vec![self.durable.len(), self.current.len()];
        sizes.extend(&self.sizes);
        let mut versions: BTreeMap<usize, Vec<&[u8]>> = BTreeMap::new();
        for (index, bytes) in &self.versions {
            versions.entry(*index).or_default().push(bytes);
        }
        let size = sizes[rng.below(sizes.len() as u64) as usize];
        let mode = rng.below(3);
        let mut out = vec![0; size];
        for (index, sector) in out.chunks_mut(sector_bytes).enumerate() {
            let start = index * sector_bytes;
            let mut choices = vec![
                sector_at(&self.durable, start),
                sector_at(&self.current, start),
            ];
            choices.extend(versions.get(&index).into_iter().flatten());
            let pick = match mode {
                0 => 1,
                1 => 0,
                _ => rng.below(choices.len() as u64) as usize,
            };
            let source = choices[pick];
            let len = source.len().min(sector.len());
            sector[..len].copy_from_slice(&source[..len]);
        }
        out
    }
}

/// The sector of `bytes` from `start` (shorter at the end, empty past it).
fn sector_at(bytes: &[u8], start: usize) -> &[u8] {
    let end = bytes.len().min(start + SECTOR_BYTES as usize);
    bytes.get(start..end).unwrap_or_default()
}

/// Appends `item`, forgetting the oldest entry when over [`HISTORY_MAX`].
fn push_bounded<T>(history: &mut VecDeque<T>, item: T) {
    if history.len() >= HISTORY_MAX {
        history.pop_front();
    }
    history.push_back(item);
}

impl DirData {
    /// Makes the listing a crash leaves durable and current: the durable
    /// listing plus any subset of the unsynced changes, per name, except
    /// that the names of a rename within this directory go together: all
    /// of them, none, or each by a coin.
    fn crash(&mut self, rng: &mut Rng) {
        let mode = rng.below(3);
        let mut changed: BTreeSet<&OsString> = self.current.keys().collect();
        changed.extend(self.durable.keys());
        changed.retain(|name| self.current.get(*name) != self.durable.get(*name));
        let mut kept = self.durable.clone();
        let mut decided = BTreeSet::new();
        for name in changed {
            if decided.contains(name) {
                continue;
            }
            let take_current = match mode {
                0 => true,
                1 => false,
                _ => rng.coin(),
            };
            for tied in self.renamed_with(name) {
                match self.current.get(&tied) {
                    Some(id) if take_current => kept.insert(tied.clone(), *id),
                    _ if take_current => kept.remove(&tied),
                    _ => None,
                };
                decided.insert(tied);
            }
        }
        self.current.clone_from(&kept);
        self.durable = kept;
    }

    /// `name` and every name tied to it by renames within this directory:
    /// a node listed durably under one name and currently under another.
    fn renamed_with(&self, name: &OsString) -> BTreeSet<OsString> {
        let mut group = BTreeSet::from([name.clone()]);
        let mut stack = vec![name.clone()];
        while let Some(name) = stack.pop() {
            let ids = [self.current.get(&name), self.durable.get(&name)];
            for id in ids.into_iter().flatten() {
                let listings = [&self.current, &self.durable];
                let names = listings
                    .into_iter()
                    .flat_map(|listing| listing.iter().filter(|(_, other)| *other == id));
                for (other, _) in names {
                    if group.insert(other.clone()) {
                        stack.push(other.clone());
                    }
                }
            }
        }
        group
    }
}

impl Disk {
    /// Counts one op by a view or handle from `epoch`; fails it if that died
    /// in a crash or a fault hits.
    fn start(&mut self, kind: OpKind, epoch: u64) -> Result<(), Fault> {
        let index = self.ops;
        self.ops = self.ops.saturating_add(1);
        let by_sync_index = self.sync_fails(kind);
        if epoch != self.epoch {
            return Err(Fault::Dead);
        }
        let by_index = self.faults.fail_op_index == Some(index) || by_sync_index;
        let per_million = u64::from(self.faults.fail_per_million);
        let by_chance = per_million > 0 && self.rng.below(1_000_000) < per_million;
        if !(by_index || by_chance) {
            return Ok(());
        }
        self.injected_faults = self.injected_faults.saturating_add(1);
        if kind == OpKind::Sync {
            self.injected_sync_faults = self.injected_sync_faults.saturating_add(1);
        }
        let class = &mut self.injected_by_class[IoClass::current().index()];
        *class = class.saturating_add(1);
        let choices: &[Fault] = match kind {
            OpKind::Read => &[Fault::Eio],
            OpKind::Write => &[Fault::Eio, Fault::Enospc, Fault::ShortWrite],
            OpKind::Sync | OpKind::Other => &[Fault::Eio, Fault::Enospc],
        };
        Err(choices[self.rng.below(choices.len() as u64) as usize])
    }

    /// Counts a flush; whether it is the one [`Faults::fail_sync_index`]
    /// names.
    fn sync_fails(&mut self, kind: OpKind) -> bool {
        if kind != OpKind::Sync {
            return false;
        }
        let index = self.syncs;
        self.syncs = self.syncs.saturating_add(1);
        self.faults.fail_sync_index == Some(index)
    }

    fn dir(&self, id: NodeId) -> io::Result<&DirData> {
        match self.nodes.get(&id) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(os_error(libc::ENOTDIR)),
            None => Err(os_error(libc::ENOENT)),
        }
    }

    fn dir_mut(&mut self, id: NodeId) -> io::Result<&mut DirData> {
        match self.nodes.get_mut(&id) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(os_error(libc::ENOTDIR)),
            None => Err(os_error(libc::ENOENT)),
        }
    }

    fn is_file(&self, id: NodeId) -> bool {
        matches!(self.nodes.get(&id), Some(Node::File(_)))
    }

    /// Resolves `path` in the current listings; `None` for the root.
    fn place<'p>(&self, path: &'p Path) -> io::Result<Option<Place<'p>>> {
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => names.push(name),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(os_error(libc::EINVAL));
                }
            }
        }
        let Some((name, ancestors)) = names.split_last() else {
            return Ok(None);
        };
        let mut parent = ROOT;
        for ancestor in ancestors {
            let child = self.dir(parent)?.current.get(*ancestor);
            parent = *child.ok_or_else(|| os_error(libc::ENOENT))?;
        }
        let node = self.dir(parent)?.current.get(*name).copied();
        Ok(Some(Place { parent, name, node }))
    }

    /// The node at an existing `path`.
    fn lookup(&self, path: &Path) -> io::Result<NodeId> {
        match self.place(path)? {
            None => Ok(ROOT),
            Some(place) => place.node.ok_or_else(|| os_error(libc::ENOENT)),
        }
    }

    /// Adds `node` as `name` to the current listing of directory `parent`.
    fn add(&mut self, parent: NodeId, name: &OsStr, node: Node) -> io::Result<()> {
        let id = self.next_id;
        self.dir_mut(parent)?.current.insert(name.to_owned(), id);
        self.nodes.insert(id, node);
        self.next_id += 1;
        Ok(())
    }

    /// Drops every node that no listing, current or durable, reaches from
    /// the root (open handles keep their file's data alive).
    fn collect(&mut self) {
        let mut reached = BTreeSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            if let Some(Node::Dir(dir)) = self.nodes.get(&id) {
                for child in dir.current.values().chain(dir.durable.values()) {
                    if reached.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        self.nodes.retain(|id, _| reached.contains(id));
    }

    fn crash(&mut self) {
        self.epoch += 1;
        let rng = &mut self.rng;
        for node in self.nodes.values_mut() {
            match node {
                Node::Dir(dir) => dir.crash(rng),
                Node::File(file) => {
                    let bytes = file.locked().after_crash(rng);
                    let current = bytes.clone();
                    *file = Arc::new(Mutex::new(FileData {
                        current,
                        durable: bytes,
                        ..FileData::default()
                    }));
                }
            }
        }
        self.collect();
    }
}

/// Acts on the disk for a call of a view or handle from `epoch`, with the
/// disk locked: a call of a view that a crash killed meanwhile (another
/// thread's crash, or one during the call's latency) never acts.
fn act<T>(
    disk: &mut Disk,
    epoch: u64,
    effect: impl FnOnce(&mut Disk) -> io::Result<T>,
) -> io::Result<T> {
    if disk.epoch != epoch {
        return Err(Fault::Dead.error());
    }
    effect(disk)
}

/// Runs the effect of a submitted call on the simulated device: at once
/// without latency, else in a task of its own that acts after a seeded number
/// of yields (unless the disk crashed since `epoch`) and completes after
/// another. Dropping the returned future does not stop that task: the call
/// still acts, as a cancelled io_uring request may.
async fn device<T: 'static>(
    disk: &Arc<Mutex<Disk>>,
    epoch: u64,
    effect: impl FnOnce(&mut Disk) -> io::Result<T> + 'static,
) -> io::Result<T> {
    let (act_after, complete_after) = {
        let mut disk = disk.locked();
        let max = u64::from(disk.latency_yields_max);
        if max == 0 {
            return act(&mut disk, epoch, effect);
        }
        (disk.rng.below(max + 1), disk.rng.below(max + 1))
    };
    let disk = disk.clone();
    let task = glommio::spawn_local(async move {
        for _ in 0..act_after {
            yield_now().await;
        }
        let result = act(&mut disk.locked(), epoch, effect);
        for _ in 0..complete_after {
            yield_now().await;
        }
        result
    })
    .detach();
    let cancelled = || Err(io::Error::other("simulated device task cancelled"));
    task.await.unwrap_or_else(cancelled)
}

impl SimFs {
    /// An empty file system (only the root directory) driven by `seed`.
    pub fn new(seed: u64) -> Self {
        let disk = Disk {
            rng: Rng::new(seed),
            faults: Faults::default(),
            ops: 0,
            syncs: 0,
            injected_faults: 0,
            injected_sync_faults: 0,
            injected_by_class: [0; 2],
            epoch: 0,
            latency_yields_max: 0,
            next_id: ROOT + 1,
            nodes: BTreeMap::from([(ROOT, Node::Dir(DirData::default()))]),
        };
        let disk = Arc::new(Mutex::new(disk));
        SimFs { disk, epoch: 0 }
    }

    /// Replaces the fault settings; they apply from the next op on.
    pub fn set_faults(&self, faults: Faults) {
        self.disk.locked().faults = faults;
    }

    /// Sends every call submitted from now on through the simulated device:
    /// it acts after a seeded `0..=yields_max` executor yields and completes
    /// after as many again, even if its future was dropped (see the module
    /// docs). 0 (the default) acts at once. Needs a glommio executor.
    pub fn set_latency(&self, yields_max: u32) {
        self.disk.locked().latency_yields_max = yields_max;
    }

    /// How many ops have been called so far (the index of the next op).
    pub fn op_count(&self) -> u64 {
        self.disk.locked().ops
    }

    /// How many file flushes (`sync_data`) have been called so far (the
    /// index of the next one, for [`Faults::at_sync`]).
    pub fn sync_count(&self) -> u64 {
        self.disk.locked().syncs
    }

    /// How many ops failed by an injected fault so far (a write cut short
    /// counts, whether it returned EIO or its short count).
    pub fn injected_faults(&self) -> u64 {
        self.disk.locked().injected_faults
    }

    /// How many file flushes (`sync_data`) failed by an injected fault so
    /// far: a test can tell a failed flush (which must poison a blob) from
    /// other faults.
    pub fn injected_sync_faults(&self) -> u64 {
        self.disk.locked().injected_sync_faults
    }

    /// How many ops called in I/O class `class` failed by an injected fault
    /// so far: the store's background work (the zeros written ahead of
    /// appends) runs in [`IoClass::Throughput`].
    pub fn injected_faults_in(&self, class: IoClass) -> u64 {
        self.disk.locked().injected_by_class[class.index()]
    }

    /// Crashes the disk (see the module docs for what survives) and returns
    /// the view after it: every earlier view and handle is dead.
    #[must_use = "earlier views are dead after a crash"]
    pub fn crash(&self) -> SimFs {
        let mut disk = self.disk.locked();
        disk.crash();
        SimFs {
            disk: self.disk.clone(),
            epoch: disk.epoch,
        }
    }

    fn start(&self, kind: OpKind) -> io::Result<()> {
        self.begin(kind).map(drop)
    }

    /// Counts one op and, unless it fails, returns the locked disk to act
    /// on: no crash comes between the count and the effect.
    fn begin(&self, kind: OpKind) -> io::Result<MutexGuard<'_, Disk>> {
        let mut disk = self.disk.locked();
        disk.start(kind, self.epoch).map_err(Fault::error)?;
        Ok(disk)
    }

    /// The effect of `open_file`.
    fn open_now(&self, disk: &mut Disk, path: &Path, create: bool) -> io::Result<SimFile> {
        let place = disk.place(path)?.ok_or_else(|| os_error(libc::EISDIR))?;
        let data = match place.node.map(|id| disk.nodes.get(&id)) {
            Some(Some(Node::File(data))) => data.clone(),
            Some(_) => return Err(os_error(libc::EISDIR)),
            None if create => {
                let data = Arc::new(Mutex::new(FileData::default()));
                disk.add(place.parent, place.name, Node::File(data.clone()))?;
                data
            }
            None => return Err(os_error(libc::ENOENT)),
        };
        let (disk, epoch) = (self.disk.clone(), self.epoch);
        Ok(SimFile { disk, data, epoch })
    }
}

impl FileSystem for SimFs {
    type File = SimFile;

    async fn open_file(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        yield_now().await;
        self.start(OpKind::Other)?;
        let (view, path) = (self.clone(), path.to_path_buf());
        let open = move |disk: &mut Disk| view.open_now(disk, &path, create);
        device(&self.disk, self.epoch, open).await
    }

    fn create_dir(&self, path: &Path) -> io::Result<bool> {
        let mut disk = self.begin(OpKind::Other)?;
        let Some(place) = disk.place(path)? else {
            return Ok(false);
        };
        match place.node {
            None => disk.add(place.parent, place.name, Node::Dir(DirData::default()))?,
            Some(id) if disk.is_file(id) => return Err(os_error(libc::EEXIST)),
            Some(_) => return Ok(false),
        }
        Ok(true)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let disk = self.begin(OpKind::Read)?;
        let dir = disk.dir(disk.lookup(path)?)?;
        let entries = dir.current.iter().map(|(name, id)| DirEntry {
            name: name.clone(),
            is_file: disk.is_file(*id),
        });
        Ok(entries.collect())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.begin(OpKind::Other)?;
        let place = disk.place(path)?.ok_or_else(|| os_error(libc::EISDIR))?;
        let id = place.node.ok_or_else(|| os_error(libc::ENOENT))?;
        if !disk.is_file(id) {
            return Err(os_error(libc::EISDIR));
        }
        disk.dir_mut(place.parent)?.current.remove(place.name);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.begin(OpKind::Other)?;
        let place = disk.place(path)?.ok_or_else(|| os_error(libc::EBUSY))?;
        let id = place.node.ok_or_else(|| os_error(libc::ENOENT))?;
        if !disk.dir(id)?.current.is_empty() {
            return Err(os_error(libc::ENOTEMPTY));
        }
        disk.dir_mut(place.parent)?.current.remove(place.name);
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        yield_now().await;
        self.start(OpKind::Other)?;
        let path = path.to_path_buf();
        device(&self.disk, self.epoch, move |disk| {
            let id = disk.lookup(&path)?;
            let dir = disk.dir_mut(id)?;
            dir.durable.clone_from(&dir.current);
            disk.collect();
            Ok(())
        })
        .await
    }

    /// Moves the entry between the current listings of its old and new
    /// parent: like any entry change, durable per directory at its
    /// `sync_dir`, so a crash keeps a rename within one directory whole.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.begin(OpKind::Other)?;
        let source = disk.place(from)?.ok_or_else(|| os_error(libc::EBUSY))?;
        let id = source.node.ok_or_else(|| os_error(libc::ENOENT))?;
        if to.starts_with(from) {
            return Err(os_error(libc::EINVAL));
        }
        let target = disk.place(to)?.ok_or_else(|| os_error(libc::EEXIST))?;
        if target.node.is_some() {
            return Err(os_error(libc::EEXIST));
        }
        disk.dir_mut(source.parent)?.current.remove(source.name);
        let name = target.name.to_owned();
        disk.dir_mut(target.parent)?.current.insert(name, id);
        Ok(())
    }
}

impl SimFile {
    /// Counts one op on this handle; fails it if the handle died in a crash
    /// or a fault hits.
    fn start(&self, kind: OpKind) -> Result<(), Fault> {
        self.disk.locked().start(kind, self.epoch)
    }

    /// The write of [`File::write_returning`]; the device holds `bytes`
    /// until it has written them.
    async fn write_shared(&self, bytes: Rc<Vec<u8>>, pos: u64, durable: bool) -> io::Result<usize> {
        yield_now().await;
        let outcome = self.start(OpKind::Write);
        if let Err(fault @ (Fault::Eio | Fault::Enospc | Fault::Dead)) = outcome {
            return Err(fault.error());
        }
        let len_bytes = bytes.len() as u64;
        if !pos.is_multiple_of(BLOCK_SIZE) || !len_bytes.is_multiple_of(BLOCK_SIZE) {
            return Err(os_error(libc::EINVAL));
        }
        let start = checked_size(pos.saturating_add(len_bytes))? - bytes.len();
        let data = self.data.clone();
        self.device(move |disk| {
            if outcome.is_err() {
                let sectors = len_bytes / SECTOR_BYTES;
                let kept_bytes = disk.rng.below(sectors) * SECTOR_BYTES;
                let prefix = &bytes[..kept_bytes as usize];
                data.locked().write(start, prefix, false);
                // No second draw from the seed's generator: the seeds keep
                // their sequences.
                let counted = kept_bytes > 0 && (kept_bytes / SECTOR_BYTES).is_multiple_of(2);
                return match counted {
                    true => Ok(kept_bytes as usize),
                    false => Err(Fault::ShortWrite.error()),
                };
            }
            data.locked().write(start, &bytes, durable);
            Ok(bytes.len())
        })
        .await
    }

    /// Runs a submitted call's effect on the device (see [`device`]).
    async fn device<T: 'static>(
        &self,
        effect: impl FnOnce(&mut Disk) -> io::Result<T> + 'static,
    ) -> io::Result<T> {
        device(&self.disk, self.epoch, effect).await
    }
}

impl File for SimFile {
    type WriteBuf = SimWriteBuf;
    type ReadBuf = Rc<[u8]>;

    fn alloc(&self, len: usize) -> SimWriteBuf {
        SimWriteBuf(vec![UNFILLED_BYTE; len])
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Rc<[u8]>> {
        yield_now().await;
        self.start(OpKind::Read).map_err(Fault::error)?;
        let data = self.data.clone();
        self.device(move |_| Ok(data.locked().read(pos, len))).await
    }

    /// Yields the ranges in a seeded random order, or one error.
    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, Rc<[u8]>)>> {
        let file = self.clone();
        let batch = async move {
            yield_now().await;
            if let Err(fault) = file.start(OpKind::Read) {
                return vec![Err(fault.error())];
            }
            let order = file.disk.locked().rng.permutation(ranges.len());
            let data = file.data.clone();
            let read = file.device(move |_| {
                let data = data.locked();
                let mut results = Vec::with_capacity(ranges.len());
                for index in order {
                    if let Some(&(pos, len)) = ranges.get(index) {
                        results.push(Ok((index, data.read(pos, len))));
                    }
                }
                Ok(results)
            });
            read.await.unwrap_or_else(|e| vec![Err(e)])
        };
        stream::once_future(batch).flat_map(stream::iter)
    }

    async fn write_returning(
        &self,
        buf: SimWriteBuf,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<SimWriteBuf>) {
        let bytes = Rc::new(buf.0);
        let written = self.write_shared(bytes.clone(), pos, durable).await;
        (written, Rc::try_unwrap(bytes).ok().map(SimWriteBuf))
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        yield_now().await;
        self.start(OpKind::Other).map_err(Fault::error)?;
        let data = self.data.clone();
        self.device(move |_| FileData::set_len(&data, len)).await
    }

    fn set_len_now(&self, len: u64) -> io::Result<()> {
        // Under the disk's lock: no crash between the count and the effect.
        let mut disk = self.disk.locked();
        disk.start(OpKind::Other, self.epoch)
            .map_err(Fault::error)?;
        FileData::set_len(&self.data, len)
    }

    fn sync_data_now(&self) -> io::Result<()> {
        // Under the disk's lock: no crash between the count and the effect.
        let mut disk = self.disk.locked();
        disk.start(OpKind::Sync, self.epoch).map_err(Fault::error)?;
        self.data.locked().flush();
        Ok(())
    }

    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()> {
        let start = checked_size(pos.saturating_add(BLOCK_SIZE))? - block.len();
        // Under the disk's lock: no crash between the count and the effect.
        let mut disk = self.disk.locked();
        disk.start(OpKind::Write, self.epoch)
            .map_err(Fault::error)?;
        self.data.locked().write(start, block, false);
        Ok(())
    }

    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        yield_now().await;
        self.start(OpKind::Other).map_err(Fault::error)?;
        let end = pos.saturating_add(len);
        self.device(move |_| checked_size(end).map(drop)).await
    }

    /// The simulation does not model reserved blocks: none to give back.
    fn release_past_end_now(&self, _slack: u64) -> io::Result<bool> {
        Ok(false)
    }

    async fn sync_data(&self) -> io::Result<()> {
        yield_now().await;
        self.start(OpKind::Sync).map_err(Fault::error)?;
        let data = self.data.clone();
        self.device(move |_| {
            data.locked().flush();
            Ok(())
        })
        .await
    }

    async fn size(&self) -> io::Result<u64> {
        yield_now().await;
        self.start(OpKind::Read).map_err(Fault::error)?;
        let data = self.data.clone();
        self.device(move |_| Ok(data.locked().current.len() as u64))
            .await
    }
}

impl WriteBuf for SimWriteBuf {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{self, block_on};

    const BLOCK: usize = BLOCK_SIZE as usize;
    const SECTOR: usize = SECTOR_BYTES as usize;
    const SEEDS: u64 = 64;

    fn filled(file: &SimFile, byte: u8, blocks: usize) -> SimWriteBuf {
        let mut buf = file.alloc(blocks * BLOCK);
        buf.bytes_mut().fill(byte);
        buf
    }

    /// `/d/f` with its entries durable and `blocks` blocks of `byte` synced.
    async fn synced_file(fs: &SimFs, byte: u8, blocks: usize) -> SimFile {
        fs.create_dir(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).await.unwrap();
        let file = fs.open_file(Path::new("/d/f"), true).await.unwrap();
        fs.sync_dir(Path::new("/d")).await.unwrap();
        let buf = filled(&file, byte, blocks);
        file.write_at(buf, 0, false).await.unwrap();
        file.sync_data().await.unwrap();
        file
    }

    async fn contents(fs: &SimFs, path: &str) -> io::Result<Vec<u8>> {
        let file = fs.open_file(Path::new(path), false).await?;
        Ok(file.read_at(0, usize::MAX).await?.to_vec())
    }

    /// Asserts each sector is all `old` or all `new`; counts (olds, news).
    fn old_or_new(bytes: &[u8], old: u8, new: u8) -> (usize, usize) {
        let olds = bytes.chunks(SECTOR).filter(|s| s.iter().all(|&b| b == old));
        let news = bytes.chunks(SECTOR).filter(|s| s.iter().all(|&b| b == new));
        let (olds, news) = (olds.count(), news.count());
        assert_eq!(olds + news, bytes.len().div_ceil(SECTOR), "a mixed sector");
        (olds, news)
    }

    /// `/d/f` with three synced blocks of 0x11; then unsynced: blocks 1..=3
    /// written with 0x22 and a new file `/d/new`; block 0 rewritten durably
    /// with 0x33. Returns `/d/f` and the names in `/d` after a crash.
    fn crashed(seed: u64) -> (Vec<u8>, Vec<OsString>) {
        let fs = SimFs::new(seed);
        block_on(async {
            let file = synced_file(&fs, 0x11, 3).await;
            let buf = filled(&file, 0x22, 3);
            file.write_at(buf, BLOCK_SIZE, false).await.unwrap();
            file.write_at(filled(&file, 0x33, 1), 0, true)
                .await
                .unwrap();
            fs.open_file(Path::new("/d/new"), true).await.unwrap();
            let old = fs.clone();
            let fs = fs.crash();
            assert!(file.size().await.is_err(), "a handle survived the crash");
            assert!(old.list_dir(Path::new("/")).is_err(), "a view survived");
            let bytes = contents(&fs, "/d/f").await.unwrap();
            let listing = fs.list_dir(Path::new("/d")).unwrap();
            (bytes, listing.into_iter().map(|entry| entry.name).collect())
        })
    }

    /// `Faults::at_sync(n)` fails the n-th flush and only it, whatever
    /// other ops run between the flushes.
    #[test]
    fn at_sync_fails_exactly_that_flush() {
        block_on(async {
            let fs = SimFs::new(1);
            let file = synced_file(&fs, 0x11, 1).await;
            assert_eq!(fs.sync_count(), 1, "synced_file flushes once");
            fs.set_faults(Faults::at_sync(2));
            file.write_at(filled(&file, 0x22, 1), 0, false)
                .await
                .unwrap();
            file.sync_data().await.unwrap();
            file.set_len(BLOCK_SIZE).await.unwrap();
            assert!(file.sync_data().await.is_err(), "the flush with index 2");
            file.sync_data().await.unwrap();
            assert_eq!((fs.sync_count(), fs.injected_faults()), (4, 1));
            assert_eq!(fs.injected_sync_faults(), 1);
        });
    }

    #[test]
    fn crash_keeps_durable_and_keeps_or_drops_current() {
        let (mut saw_old_size, mut saw_new_size) = (false, false);
        for seed in 0..SEEDS {
            let (bytes, _) = crashed(seed);
            assert!(bytes[..BLOCK].iter().all(|&b| b == 0x33));
            saw_old_size |= bytes.len() == 3 * BLOCK;
            saw_new_size |= bytes.len() == 4 * BLOCK;
        }
        assert!(saw_old_size && saw_new_size);
    }

    #[test]
    fn torn_sectors_only_in_unsynced_ranges() {
        let (mut saw_old, mut saw_new, mut saw_torn) = (false, false, false);
        for seed in 0..SEEDS {
            let (bytes, _) = crashed(seed);
            let (olds, news) = old_or_new(&bytes[BLOCK..3 * BLOCK], 0x11, 0x22);
            old_or_new(&bytes[3 * BLOCK..], 0, 0x22);
            saw_old |= news == 0;
            saw_new |= olds == 0;
            saw_torn |= olds > 0 && news > 0;
        }
        assert!(saw_old && saw_new && saw_torn);
    }

    #[test]
    fn same_seed_same_crash() {
        assert_eq!(crashed(7), crashed(7));
        assert!((0..16).any(|seed| crashed(seed) != crashed(7)));
    }

    #[test]
    fn entry_survives_only_when_synced() {
        let listings: BTreeSet<_> = (0..SEEDS).map(|seed| crashed(seed).1).collect();
        let names = |names: &[&str]| names.iter().map(OsString::from).collect();
        let both = BTreeSet::from([names(&["f"]), names(&["f", "new"])]);
        assert_eq!(listings, both, "/d/f always there, /d/new kept or lost");
    }

    #[test]
    fn unlink_keeps_open_handle() {
        let fs = SimFs::new(1);
        block_on(async {
            let file = synced_file(&fs, 0x11, 1).await;
            fs.remove_file(Path::new("/d/f")).unwrap();
            assert!(fs.list_dir(Path::new("/d")).unwrap().is_empty());
            let err = contents(&fs, "/d/f").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            let buf = filled(&file, 0x22, 1);
            file.write_at(buf, BLOCK_SIZE, false).await.unwrap();
            fs.sync_dir(Path::new("/d")).await.unwrap();
            assert_eq!(fs.disk.locked().nodes.len(), 2, "unlinked inode kept");
            let bytes = file.read_at(0, usize::MAX).await.unwrap();
            assert_eq!(
                (bytes.len(), bytes[0], bytes[BLOCK]),
                (2 * BLOCK, 0x11, 0x22)
            );
            let fs = fs.crash();
            assert!(contents(&fs, "/d/f").await.is_err());
        });
    }

    /// Eleven independent ops on an open file; whether each succeeded.
    async fn workload(fs: &SimFs, file: &SimFile) -> Vec<bool> {
        let reads = file.read_many(vec![(0, 10), (5, 100)]).collect::<Vec<_>>();
        vec![
            file.write_at(filled(file, 1, 2), 0, false).await.is_ok(),
            file.read_at(0, 100).await.is_ok(),
            file.set_len(3 * BLOCK_SIZE).await.is_ok(),
            file.preallocate(0, 8 * BLOCK_SIZE).await.is_ok(),
            file.sync_data().await.is_ok(),
            file.size().await.is_ok(),
            fs.list_dir(Path::new("/")).is_ok(),
            fs.create_dir(Path::new("/e")).is_ok(),
            fs.sync_dir(Path::new("/")).await.is_ok(),
            reads.await.iter().all(|r| r.is_ok()),
            file.set_len_now(BLOCK_SIZE).is_ok(),
        ]
    }

    #[test]
    fn fault_fails_exactly_op_n() {
        for n in 0..12 {
            let fs = SimFs::new(3);
            block_on(async {
                let file = fs.open_file(Path::new("f"), true).await.unwrap();
                fs.set_faults(Faults::at_op(fs.op_count() + n));
                let results = workload(&fs, &file).await;
                let expected: Vec<bool> = (0..11).map(|i| i != n).collect();
                assert_eq!(results, expected, "failing op {n}");
                assert_eq!(fs.injected_faults(), u64::from(n < 11));
            });
        }
    }

    #[test]
    fn failed_sync_makes_nothing_durable() {
        let (mut saw_old_data, mut saw_lost_entry) = (false, false);
        for seed in 0..SEEDS {
            let fs = SimFs::new(seed);
            block_on(async {
                let file = synced_file(&fs, 0x11, 1).await;
                let buf = filled(&file, 0x22, 1);
                file.write_at(buf, 0, false).await.unwrap();
                fs.open_file(Path::new("/d/new"), true).await.unwrap();
                let next = fs.op_count();
                fs.set_faults(Faults::at_op(next));
                assert!(file.sync_data().await.is_err());
                fs.set_faults(Faults::at_op(next + 1));
                assert!(fs.sync_dir(Path::new("/d")).await.is_err());
                let fs = fs.crash();
                let bytes = contents(&fs, "/d/f").await.unwrap();
                saw_old_data |= old_or_new(&bytes, 0x11, 0x22).1 == 0;
                saw_lost_entry |= contents(&fs, "/d/new").await.is_err();
            });
        }
        assert!(saw_old_data && saw_lost_entry);
    }

    #[test]
    fn short_write_keeps_a_sector_prefix() {
        let fs = SimFs::new(5);
        let (mut saw_short, mut saw_short_count) = (false, false);
        block_on(async {
            let file = fs.open_file(Path::new("f"), true).await.unwrap();
            fs.set_faults(Faults::random(500_000));
            for _ in 0..200 {
                let result = file.write_at(filled(&file, 7, 1), 0, false).await;
                let len = file.data.locked().current.len();
                assert!(len % SECTOR == 0);
                // A short count is of an even, non-zero number of sectors;
                // an odd one (or none) is reported as EIO.
                let sectors = len / SECTOR;
                match result {
                    Ok(written) => {
                        assert_eq!(written, len, "the count is what it stored");
                        assert!(len == BLOCK || (len > 0 && sectors.is_multiple_of(2)));
                    }
                    Err(_) => assert!(len == 0 || !sectors.is_multiple_of(2)),
                }
                saw_short |= result.is_err() && len > 0;
                saw_short_count |= result.is_ok_and(|written| written < BLOCK);
                file.data.locked().current.clear();
            }
        });
        assert!(saw_short && saw_short_count);
    }

    /// Block 0 of `file`, as the device holds it now.
    fn first_byte(file: &SimFile) -> u8 {
        file.data.locked().current[0]
    }

    #[test]
    fn latency_reorders_and_a_dropped_call_still_acts() {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("an executor");
        let (mut acted_late, mut first_last, mut second_last) = (0, 0, 0);
        executor.run(async {
            for seed in 0..SEEDS {
                let fs = SimFs::new(seed);
                let file = synced_file(&fs, 0x11, 1).await;
                fs.set_latency(4);
                let mut dropped = Box::pin(file.write_at(filled(&file, 0x22, 1), 0, false));
                // The first poll yields before submission; the second submits.
                assert!(future::poll_once(&mut dropped).await.is_none());
                let done = future::poll_once(&mut dropped).await.is_some();
                drop(dropped);
                acted_late += usize::from(!done && first_byte(&file) == 0x11);
                for _ in 0..20 {
                    future::yield_now().await;
                }
                assert_eq!(first_byte(&file), 0x22, "a dropped write still acts");
                let first = file.write_at(filled(&file, 0x33, 1), 0, false);
                let second = file.write_at(filled(&file, 0x44, 1), 0, false);
                let (a, b) = future::zip(first, second).await;
                assert!(a.is_ok() && b.is_ok());
                first_last += usize::from(first_byte(&file) == 0x33);
                second_last += usize::from(first_byte(&file) == 0x44);
            }
        });
        assert!(acted_late > 0 && first_last > 0 && second_last > 0);
    }

    #[test]
    fn a_call_in_flight_at_a_crash_never_acts() {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("an executor");
        let mut crossed = 0;
        executor.run(async {
            for seed in 0..SEEDS {
                let fs = SimFs::new(seed);
                let file = synced_file(&fs, 0x11, 1).await;
                fs.set_latency(4);
                let mut write = Box::pin(file.write_at(filled(&file, 0x22, 1), 0, false));
                assert!(future::poll_once(&mut write).await.is_none());
                if future::poll_once(&mut write).await.is_some() {
                    continue;
                }
                let acted = first_byte(&file) == 0x22;
                let fs = fs.crash();
                let completed = write.await.is_ok();
                crossed += usize::from(!acted);
                assert!(acted || !completed, "a write that never acted completed");
                let bytes = contents(&fs, "/d/f").await.unwrap();
                assert!(acted || bytes[0] == 0x11, "acted after the crash");
            }
        });
        assert!(crossed > 0, "no write was in flight at a crash");
    }

    #[test]
    fn read_many_yields_each_range_once() {
        let fs = SimFs::new(9);
        let results = block_on(async {
            let file = synced_file(&fs, 0x11, 1).await;
            let ranges = vec![(0, 10), (4090, 100), (5000, 1), (7, 0)];
            file.read_many(ranges).collect::<Vec<_>>().await
        });
        let lens: BTreeSet<(usize, usize)> = results
            .into_iter()
            .map(|r| r.map(|(i, bytes)| (i, bytes.len())).unwrap())
            .collect();
        assert_eq!(lens, BTreeSet::from([(0, 10), (1, 6), (2, 0), (3, 0)]));
    }

    fn kind<T>(result: io::Result<T>) -> Option<io::ErrorKind> {
        result.err().map(|e| e.kind())
    }

    #[test]
    fn bad_input_is_an_error() {
        let fs = SimFs::new(11);
        block_on(async {
            let file = synced_file(&fs, 0x11, 1).await;
            let invalid = Some(io::ErrorKind::InvalidInput);
            let unaligned = file.write_at(filled(&file, 1, 1), 512, false);
            assert_eq!(kind(unaligned.await), invalid);
            let partial_block = file.write_at(file.alloc(100), 0, false);
            assert_eq!(kind(partial_block.await), invalid);
            let huge = file.write_at(filled(&file, 1, 1), u64::MAX - 4095, false);
            assert!(huge.await.is_err());
            assert!(file.set_len(u64::MAX).await.is_err());
            assert!(file.preallocate(0, MAX_FILE_BYTES + 1).await.is_err());
            assert_eq!(file.read_at(4000, 500).await.unwrap().len(), 96);
            let not_found = Some(io::ErrorKind::NotFound);
            assert_eq!(kind(contents(&fs, "/d/missing").await), not_found);
            let in_missing_dir = fs.open_file(Path::new("/no/f"), true);
            assert_eq!(kind(in_missing_dir.await), not_found);
            assert_eq!(kind(fs.list_dir(Path::new("/no"))), not_found);
            assert!(!fs.create_dir(Path::new("/d")).unwrap());
            assert!(!fs.create_dir(Path::new("/")).unwrap());
            let exists = Some(io::ErrorKind::AlreadyExists);
            assert_eq!(kind(fs.create_dir(Path::new("/d/f"))), exists);
            assert!(fs.create_dir(Path::new("/d/f/g")).is_err());
            assert!(fs.remove_dir(Path::new("/d")).is_err());
            assert!(fs.remove_file(Path::new("/d")).is_err());
            assert!(fs.open_file(Path::new("/d/../d/f"), false).await.is_err());
            assert!(fs.open_file(Path::new("/"), true).await.is_err());
        });
    }
    /// Every sector of `bytes` is all one of `allowed`; which ones appeared.
    fn versions_seen(bytes: &[u8], allowed: &[u8]) -> BTreeSet<u8> {
        let mut seen = BTreeSet::new();
        for sector in bytes.chunks(SECTOR) {
            assert!(sector.iter().all(|&b| b == sector[0]), "a mixed sector");
            assert!(allowed.contains(&sector[0]), "a version never written");
            seen.insert(sector[0]);
        }
        seen
    }

    #[test]
    fn a_crash_may_keep_an_intermediate_sector_version() {
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let fs = SimFs::new(seed);
            block_on(async {
                let file = synced_file(&fs, 0x11, 1).await;
                for byte in [0x22, 0x33, 0x44] {
                    file.write_at(filled(&file, byte, 1), 0, false)
                        .await
                        .unwrap();
                }
                let fs = fs.crash();
                let bytes = contents(&fs, "/d/f").await.unwrap();
                seen.extend(versions_seen(&bytes, &[0x11, 0x22, 0x33, 0x44]));
            });
        }
        assert!(seen.contains(&0x22) && seen.contains(&0x33), "{seen:?}");
    }

    #[test]
    fn a_durable_write_drops_the_older_versions() {
        for seed in 0..SEEDS {
            let fs = SimFs::new(seed);
            block_on(async {
                let file = synced_file(&fs, 0x11, 1).await;
                file.write_at(filled(&file, 0x22, 1), 0, false)
                    .await
                    .unwrap();
                file.write_at(filled(&file, 0x33, 1), 0, true)
                    .await
                    .unwrap();
                let fs = fs.crash();
                let bytes = contents(&fs, "/d/f").await.unwrap();
                assert_eq!(versions_seen(&bytes, &[0x33]).len(), 1);
            });
        }
    }

    #[test]
    fn a_crash_may_keep_an_intermediate_size() {
        let mut sizes = BTreeSet::new();
        for seed in 0..SEEDS {
            let fs = SimFs::new(seed);
            block_on(async {
                let file = synced_file(&fs, 0x11, 1).await;
                for block in [1, 2] {
                    let buf = filled(&file, 0x22, 1);
                    file.write_at(buf, block * BLOCK_SIZE, false).await.unwrap();
                }
                file.set_len(5 * BLOCK_SIZE).await.unwrap();
                file.set_len(4 * BLOCK_SIZE).await.unwrap();
                let fs = fs.crash();
                let bytes = contents(&fs, "/d/f").await.unwrap();
                versions_seen(&bytes, &[0x11, 0x22, 0]);
                sizes.insert(bytes.len() / BLOCK);
            });
        }
        assert_eq!(sizes, BTreeSet::from([1, 2, 3, 4, 5]));
    }

    #[test]
    fn a_crash_may_keep_any_subset_of_a_directorys_changes() {
        let mut listings = BTreeSet::new();
        for seed in 0..SEEDS {
            let fs = SimFs::new(seed);
            block_on(async {
                synced_file(&fs, 0x11, 1).await;
                for name in ["/d/a", "/d/b"] {
                    fs.open_file(Path::new(name), true).await.unwrap();
                }
                fs.rename(Path::new("/d/f"), Path::new("/d/g")).unwrap();
                let fs = fs.crash();
                let listing = fs.list_dir(Path::new("/d")).unwrap();
                let names: Vec<_> = listing.into_iter().map(|entry| entry.name).collect();
                let renamed = names.iter().filter(|n| *n == "f" || *n == "g").count();
                assert_eq!(renamed, 1, "a rename kept both names or neither");
                listings.insert(names);
            });
        }
        let names = |names: &[&str]| names.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(listings.contains(&names(&["a", "f"])), "{listings:?}");
        assert!(listings.contains(&names(&["b", "g"])), "{listings:?}");
        assert!(listings.contains(&names(&["f"])) && listings.contains(&names(&["a", "b", "g"])));
    }

    #[test]
    fn the_history_is_bounded() {
        let fs = SimFs::new(13);
        block_on(async {
            let file = fs.open_file(Path::new("f"), true).await.unwrap();
            for _ in 0..HISTORY_MAX {
                file.write_at(filled(&file, 1, 1), 0, false).await.unwrap();
                file.set_len(0).await.unwrap();
            }
            let data = file.data.locked();
            assert_eq!(data.versions.len(), HISTORY_MAX);
            assert!(data.sizes.len() <= HISTORY_MAX);
        });
    }
}
