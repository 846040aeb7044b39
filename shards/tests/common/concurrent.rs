//! Many tasks at once on one shard store: the state and checks of the
//! concurrency simulation (`concurrency_sim.rs`).
//!
//! Why a layer over [`Harness`]: the harness checks one operation at a time,
//! so its model can say exactly what each result must be. Here up to
//! [`TASKS`] tasks overlap, so every op has a start and an end on a logical
//! clock, and the model is told both:
//! - at the start, the op's possible effect (a write's bytes may show, a
//!   resize or a trim may happen, an open may create the file): it is in
//!   flight, and it may still act after its future is dropped;
//! - at the end, its certain effect, but only where no other op that
//!   overlapped it in time touched the same bytes (overlapping writes are
//!   not atomic). A write whose future was dropped overlaps nothing that
//!   starts after the drop: a later write's bytes must win over it.
//! - while a write is in flight, it may land after any change the model
//!   is told meanwhile (writes overlapping in time land in any order).
//!
//! A read is checked against every content its blob could show while the
//! read was in flight (the union of the model's states, sector by sector),
//! and its length against the shortest and longest the blob had meanwhile.
//! Names keep the harness's model (`Part`, `Entry`), so its crash check
//! (a new store on the crashed disk, every blob reopened and compared)
//! serves here too. Extra rules: never two live handles of one name (an
//! open's `Ok` while the handle of an earlier open lives and no remove of
//! the name started since); `BlobAlreadyOpen` only while something may hold
//! the name; a resize or sync overtaken by at most [`OVERTAKES_MAX`]
//! writes of its blob that started after it: more is writes starving it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;

use futures_lite::future::yield_now;

use shardblob_shards::fs::sim::{Faults, SimFs};
use shardblob_shards::{Error, ShardBlob, ShardStore};

use super::harness::{check_names, show, Handle, Harness, Key, Model, Op, Target};
use super::model::{BlobModel, Trim};
use super::{log, random, Rng};

/// Concurrent tasks per round.
pub const TASKS: usize = 8;
/// Most writes of a blob that may start after a resize or sync of it and
/// complete before it. With a fair lock, each write already past the lock
/// (one per task) may finish first, and again for each other resize or
/// trim queued ahead (a sync's data flush runs outside the lock, where
/// writes may pass it too): a few rounds of the tasks. A lock that lets new
/// writes pass a waiting resize or trim gives many more, growing with the
/// stream of writes.
pub const OVERTAKES_MAX: u32 = 3 * TASKS as u32;

/// What an op in flight may touch, for the overlap rule.
#[derive(Clone, Debug)]
pub(super) struct Span {
    pub(super) start: u64,
    /// End time; `None` while in flight.
    pub(super) end: Option<u64>,
    /// Byte range it may change, end exclusive.
    pub(super) bytes: (u64, u64),
    /// A write's bytes (at `bytes.0`).
    pub(super) data: Option<Rc<[u8]>>,
}

impl Span {
    fn touches(&self, bytes: (u64, u64)) -> bool {
        self.bytes.0 < bytes.1 && bytes.0 < self.bytes.1
    }
}

/// A read in flight: every content and length its blob had meanwhile.
pub(super) struct Reader {
    pub(super) seen: BlobModel,
    pub(super) len_min: u64,
    pub(super) len_max: u64,
}

/// A resize or sync in flight: when it started, writes that overtook it,
/// lengths the blob had meanwhile, whether it may trim (a sync).
pub(super) struct Waiter {
    pub(super) start: u64,
    pub(super) overtaken: u32,
    pub(super) lens: BTreeSet<u64>,
    pub(super) trims: bool,
}

/// The concurrency state of one blob file (one model).
pub(super) struct Inode {
    pub(super) key: Key,
    pub(super) model: Weak<RefCell<BlobModel>>,
    /// Mutations (writes, resizes, trims) by id: in flight, or ended while
    /// something that started before their end still runs.
    pub(super) spans: BTreeMap<u64, Span>,
    pub(super) readers: BTreeMap<u64, Reader>,
    pub(super) waiters: BTreeMap<u64, Waiter>,
    /// Op futures that hold a handle of it now.
    pub(super) holders: u32,
    /// A dropped sync may still run, hold it, and fail and poison it.
    pub(super) background: bool,
    /// Its handle was closed while held: the last holder trims the file.
    pub(super) closed: bool,
    /// Lengths that dropped writes and resizes set if they go on after the
    /// drop and complete (a cancel-safe engine may finish them).
    pub(super) pending: Vec<(u64, Pending)>,
    /// The same for writes and resizes in flight by id: an engine that runs
    /// them in a task of their own changes the length before their futures
    /// complete.
    pub(super) in_flight: BTreeMap<u64, Pending>,
    /// A sync, SYNC write, or write or resize that cuts failed (or may
    /// have): it may be poisoned.
    pub(super) may_poison: bool,
}

/// A write or resize that may still complete (in flight, or dropped from
/// an engine that finishes it in the background).
#[derive(Clone, Debug)]
pub(super) enum Pending {
    /// A write of these bytes at this offset: the length grows to at least
    /// its end.
    Write(u64, Rc<[u8]>),
    /// A resize to that length.
    Resize(u64),
}

impl Pending {
    fn apply(&self, len: u64) -> u64 {
        match self {
            Pending::Write(..) => len.max(self.bytes(len).1),
            Pending::Resize(new_len) => *new_len,
        }
    }

    /// The bytes it may change.
    fn bytes(&self, len: u64) -> (u64, u64) {
        match self {
            Pending::Write(start, data) => (*start, start + data.len() as u64),
            Pending::Resize(new_len) => ((*new_len).min(len), u64::MAX),
        }
    }
}

impl Inode {
    /// The writes that may land around an op (`but`, its own, left out)
    /// that started at `since`: those in flight or dropped (which may still
    /// land), and those that ended after it started. Offset and bytes of
    /// each, once (a write's span and its pending entry share the bytes).
    fn writes(&self, but: Option<u64>, since: u64) -> Vec<(u64, Rc<[u8]>)> {
        let racing = self
            .spans
            .iter()
            .filter(|(other, span)| Some(**other) != but && span.end.is_none_or(|end| end > since));
        let racing = racing.filter_map(|(_, span)| Some((span.bytes.0, span.data.clone()?)));
        let pending = self.pending.iter().map(|(_, change)| change);
        let in_flight = self
            .in_flight
            .iter()
            .filter(|(other, _)| Some(**other) != but);
        let changes = pending.chain(in_flight.map(|(_, change)| change));
        let left = changes.filter_map(|change| match change {
            Pending::Write(offset, data) => Some((*offset, data.clone())),
            Pending::Resize(_) => None,
        });
        let mut writes: Vec<(u64, Rc<[u8]>)> = Vec::new();
        for (offset, data) in racing.chain(left) {
            if !writes.iter().any(|(_, seen)| Rc::ptr_eq(seen, &data)) {
                writes.push((offset, data));
            }
        }
        writes
    }

    /// What its writes and resizes in flight (or dropped) may still do to
    /// `model`: a write land over it, a resize set the file's size; and
    /// either first cut the file to the blob's length then (a resize up, a
    /// write that extends the blob: `trim_stale` in shards/src/blob/), any
    /// of `lens` below its end, the lengths it may have now (concurrency_sim
    /// seed 283984731271).
    fn may_still_act(&self, model: &mut BlobModel, lens: &BTreeSet<u64>) {
        let in_flight = self.spans.values().filter(|span| span.end.is_none());
        for span in in_flight {
            if let Some(data) = &span.data {
                model.maybe_land(span.bytes.0, data);
                lens.range(..span.bytes.1)
                    .for_each(|&cut| model.maybe_cut(cut));
            }
        }
        let pending = self.pending.iter().map(|(_, change)| change);
        for change in pending.chain(self.in_flight.values()) {
            if let Pending::Resize(len) = change {
                model.maybe_resize(*len);
                lens.range(..*len).for_each(|&cut| model.maybe_cut(cut));
            }
        }
    }

    /// Whether something may still hold a handle of it: an op, a dropped
    /// sync, or a dropped write or resize that a cancel-safe engine
    /// finishes in the background.
    fn held(&self) -> bool {
        self.holders > 0 || self.background || !self.pending.is_empty()
    }

    /// Every length it may have now: `model_len`, changed by any of the
    /// writes and resizes in flight or dropped.
    fn lens(&self, model_len: u64) -> BTreeSet<u64> {
        self.lens_but(model_len, None)
    }

    /// [`Inode::lens`] without the change of op `but` (its own).
    fn lens_but(&self, model_len: u64, but: Option<u64>) -> BTreeSet<u64> {
        let mut lens = BTreeSet::from([model_len]);
        let pending = self.pending.iter().map(|(_, change)| change);
        let in_flight = self.in_flight.iter().filter(|(id, _)| Some(**id) != but);
        for change in pending.chain(in_flight.map(|(_, change)| change)) {
            let changed: Vec<u64> = lens.iter().map(|&len| change.apply(len)).collect();
            lens.extend(changed);
        }
        lens
    }
}

/// What the simulation knows about one name beyond the harness's entry.
#[derive(Default)]
pub(super) struct NameState {
    /// Opens in flight.
    pub(super) opening: u32,
    /// An open was dropped: its file creation may still happen.
    pub(super) dropped_open: bool,
    /// Removes of the name in flight, and when the last one started.
    pub(super) removing: u32,
    pub(super) last_remove: u64,
    /// When the live handle's open ended.
    pub(super) live_since: Option<u64>,
    /// The blob's version, when certain.
    pub(super) version: Option<u16>,
}

/// Counts that show what the runs exercised.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub ops: u64,
    pub dropped: u64,
    pub failed: u64,
    pub reads_checked: u64,
    pub racing_ends: u64,
    pub opens_refused: u64,
    pub crashes_mid_round: u64,
    /// Crashes that fell while several writes were in flight (their
    /// futures cut with the round, their device calls pending or landed).
    pub crashes_among_writes: u64,
    /// Writes that joined another's device write (the storm's appends).
    pub writes_joined: u64,
    pub rounds: u64,
    pub overtakes_max: u32,
}

impl SimStats {
    pub fn add(&mut self, other: &SimStats) {
        self.ops += other.ops;
        self.dropped += other.dropped;
        self.failed += other.failed;
        self.reads_checked += other.reads_checked;
        self.racing_ends += other.racing_ends;
        self.opens_refused += other.opens_refused;
        self.crashes_mid_round += other.crashes_mid_round;
        self.crashes_among_writes += other.crashes_among_writes;
        self.writes_joined += other.writes_joined;
        self.rounds += other.rounds;
        self.overtakes_max = self.overtakes_max.max(other.overtakes_max);
    }
}

/// The store, its model and the concurrency state of one seed.
pub struct Sim {
    pub(super) h: RefCell<Harness>,
    pub(super) store: RefCell<Rc<ShardStore<SimFs>>>,
    pub(super) rng: RefCell<Rng>,
    pub(super) clock: Cell<u64>,
    pub(super) inodes: RefCell<BTreeMap<usize, Inode>>,
    pub(super) names: RefCell<BTreeMap<Key, NameState>>,
    /// Removes of each partition in flight, and when the last one started.
    pub(super) part_removes: RefCell<BTreeMap<String, (u32, u64)>>,
    pub(super) faults_on: bool,
    /// Where the storm's next append goes: the appends of its tasks follow
    /// one another, so those in flight at once may join one device write
    /// (shards/src/blob/group.rs).
    pub(super) storm_append_at: Cell<u64>,
    pub stats: RefCell<SimStats>,
}

/// A handle picked for an op.
pub(super) struct Picked {
    pub(super) key: Key,
    pub(super) blob: ShardBlob<SimFs>,
    pub(super) model: Model,
    pub(super) inode: usize,
}

/// The id of a model's blob file.
pub(super) fn inode_of(model: &Model) -> usize {
    Rc::as_ptr(model) as usize
}

impl Sim {
    /// A fresh disk for `seed` whose calls wait up to `latency_yields_max`
    /// yields on the device and fail as `faults` says, its store and model.
    pub fn new(seed: u64, rng: Rng, latency_yields_max: u32, faults: Faults) -> Sim {
        let mut h = Harness::new(seed);
        h.fs.set_latency(latency_yields_max);
        h.set_faults(faults);
        let faults_on = faults != Faults::default();
        let store = Self::take_store(&mut h);
        Sim {
            h: RefCell::new(h),
            store: RefCell::new(store),
            rng: RefCell::new(rng),
            clock: Cell::new(0),
            inodes: RefCell::default(),
            names: RefCell::default(),
            part_removes: RefCell::default(),
            faults_on,
            storm_append_at: Cell::new(0),
            stats: RefCell::default(),
        }
    }

    /// Moves the harness's store out for the tasks to share; the harness
    /// keeps an unused one until its next crash check makes a new store.
    fn take_store(h: &mut Harness) -> Rc<ShardStore<SimFs>> {
        let spare = ShardStore::new(h.fs.clone(), "/");
        Rc::new(std::mem::replace(&mut h.store, spare))
    }

    /// The next instant of the logical clock.
    pub(super) fn tick(&self) -> u64 {
        let now = self.clock.get() + 1;
        self.clock.set(now);
        now
    }

    pub(super) fn store(&self) -> Rc<ShardStore<SimFs>> {
        self.store.borrow().clone()
    }

    /// A random op for the current handles (the harness's generator; a
    /// restart becomes a versioned open, which the tasks do instead).
    pub(super) fn random_op(&self) -> Op {
        let h = self.h.borrow();
        random::op(&mut self.rng.borrow_mut(), &h)
    }

    /// Resolves a target to a handle now, and counts the op as its holder.
    pub(super) fn pick(&self, target: &Target) -> Option<Picked> {
        let picked = self.pick_handle(target)?;
        self.catch_up(&picked);
        Some(picked)
    }

    fn pick_handle(&self, target: &Target) -> Option<Picked> {
        let h = self.h.borrow();
        let handle: &Handle = h.handle(target)?;
        let inode = inode_of(&handle.model);
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.entry(inode).or_insert_with(|| Inode {
            key: handle.key.clone(),
            model: Rc::downgrade(&handle.model),
            spans: BTreeMap::new(),
            readers: BTreeMap::new(),
            waiters: BTreeMap::new(),
            holders: 0,
            background: false,
            closed: false,
            pending: Vec::new(),
            in_flight: BTreeMap::new(),
            may_poison: false,
        });
        state.holders += 1;
        Some(Picked {
            key: handle.key.clone(),
            blob: handle.blob.clone(),
            model: handle.model.clone(),
            inode,
        })
    }

    /// Every length the blob may have now: the model's, changed by any of
    /// the dropped writes and resizes that may have completed since.
    pub(super) fn possible_lens(&self, inode: usize, model_len: u64) -> BTreeSet<u64> {
        self.possible_lens_but(inode, model_len, None)
    }

    /// [`Sim::possible_lens`] without the change of op `but` (its own).
    pub(super) fn possible_lens_but(
        &self,
        inode: usize,
        model_len: u64,
        but: Option<u64>,
    ) -> BTreeSet<u64> {
        match self.inodes.borrow().get(&inode) {
            Some(state) => state.lens_but(model_len, but),
            None => BTreeSet::from([model_len]),
        }
    }

    /// Takes the engine's length when a dropped op's completion explains
    /// it (the content is already "maybe" in the model); any other
    /// difference from the model is a length the engine made up.
    pub(super) fn catch_up(&self, p: &Picked) {
        let (engine, model_len) = (p.blob.len(), p.model.borrow().len);
        if engine == model_len {
            return;
        }
        let lens = self.possible_lens(p.inode, model_len);
        assert!(
            lens.contains(&engine),
            "{}: the engine says length {engine}, the model {model_len}; its dropped writes \
             and resizes can only make {lens:?}",
            show(&p.key)
        );
        log(|| format!("{}: a dropped op completed: length {engine}", show(&p.key)));
        // It landed at some time since its drop, and writes that failed
        // since may have written inside the length it gave: the old
        // contents past the model's end stay possible.
        self.edit(p.inode, &p.model, |m| m.resize_racing(engine, None));
    }

    /// Lengths the blob had when write or resize `id` of `p` committed: the
    /// model's, changed by any of the writes and resizes dropped before it
    /// started (the contract lets them land before it, never after). Those
    /// are settled now: forgets them.
    pub(super) fn settle_dropped(&self, p: &Picked, id: u64) -> BTreeSet<u64> {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        let mut lens = BTreeSet::from([p.model.borrow().len]);
        let (before, after) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|(dropped, _)| *dropped < id);
        let before: Vec<(u64, Pending)> = before;
        state.pending = after;
        for (_, change) in before {
            let changed: Vec<u64> = lens.iter().map(|&len| change.apply(len)).collect();
            lens.extend(changed);
        }
        lens
    }

    /// A write or resize `id` of `p` starts: it may change the length.
    pub(super) fn may_change_len(&self, p: &Picked, id: u64, change: Pending) {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        state.in_flight.insert(id, change);
    }

    /// A write or resize `id` of `p` ended; if its future was dropped, it
    /// may still complete.
    pub(super) fn len_changed(&self, p: &Picked, id: u64, dropped: bool) {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        let change = state.in_flight.remove(&id).expect("in flight");
        if dropped {
            let now = self.tick();
            state.pending.push((now, change));
        }
    }

    /// The op on `picked` ended: it no longer holds it. If it held a
    /// closed handle last, the handle goes now and trims the file.
    pub(super) fn release(&self, picked: Picked) {
        let Picked {
            blob, model, inode, ..
        } = picked;
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&inode).expect("picked inode");
        state.holders -= 1;
        let last = state.closed && !state.held();
        state.closed &= !last;
        drop(inodes);
        let faults = self.faults_now();
        drop(blob);
        if last {
            self.trimmed(inode, &model, faults);
        }
    }

    /// The last holder of a closed handle went: it trimmed the file, unless
    /// a fault hit the trim or the blob is poisoned (a poisoned blob leaves
    /// its file alone).
    fn trimmed(&self, inode: usize, model: &Model, faults_before: u64) {
        let may_poison = self
            .inodes
            .borrow()
            .get(&inode)
            .is_some_and(|i| i.may_poison);
        let trim = match may_poison || self.faults_now() > faults_before {
            true => Trim::Maybe,
            false => Trim::Done,
        };
        log(|| format!("last holder of a closed handle went: {trim:?}"));
        self.edit(inode, model, |m| m.close(trim));
    }

    /// Closed handles that a dropped op or a background sync still held
    /// have gone by now, at some point: their trims may have happened, at
    /// any length the dropped ops left.
    fn trims_happened(&self) {
        let mut inodes = self.inodes.borrow_mut();
        let closed: Vec<(usize, Model)> = inodes
            .iter_mut()
            .filter(|(_, state)| state.closed)
            .filter_map(|(inode, state)| {
                state.closed = false;
                state.model.upgrade().map(|m| (*inode, m))
            })
            .collect();
        drop(inodes);
        for (inode, model) in closed {
            self.closed_trim(inode, &model);
        }
    }

    /// The trim of a handle closed while held: at any length its dropped
    /// ops left, or none (a fault, a poisoned blob).
    fn closed_trim(&self, inode: usize, model: &Model) {
        let lens = self.possible_lens(inode, model.borrow().len);
        self.edit(inode, model, |m| {
            lens.into_iter().for_each(|len| m.maybe_resize(len));
            m.close(Trim::Maybe);
        });
    }

    /// A new open of `model`'s file found it: a handle closed while held
    /// has gone by now.
    pub(super) fn reopening(&self, model: &Model) {
        let inode = inode_of(model);
        let mut inodes = self.inodes.borrow_mut();
        let closed = inodes
            .get_mut(&inode)
            .is_some_and(|state| std::mem::take(&mut state.closed));
        drop(inodes);
        if closed {
            self.closed_trim(inode, model);
        }
    }

    /// Applies `edit` to a model and shows the new state, and every length
    /// the ops in flight may give it, to its readers.
    /// A write in flight may land after the change, over it: writes that
    /// overlap in time land in any order (one that started first may be
    /// the last to take the blob's RMW lock).
    /// While a sync runs (or a dropped one may), it may trim and sync the
    /// blob at any of its states.
    pub(super) fn edit(&self, inode: usize, model: &Model, edit: impl FnOnce(&mut BlobModel)) {
        let mut model = model.borrow_mut();
        edit(&mut model);
        let mut inodes = self.inodes.borrow_mut();
        if let Some(state) = inodes.get_mut(&inode) {
            let lens = state.lens(model.len);
            state.may_still_act(&mut model, &lens);
            if state.background || state.waiters.values().any(|w| w.trims) {
                lens.iter().for_each(|&len| model.maybe_sync_at(len));
            }
            let (shortest, longest) = (lens.first().copied(), lens.last().copied());
            for reader in state.readers.values_mut() {
                reader.seen.absorb_now(&model);
                reader.len_min = reader.len_min.min(shortest.unwrap_or(model.len));
                reader.len_max = reader.len_max.max(longest.unwrap_or(model.len));
            }
            for waiter in state.waiters.values_mut() {
                waiter.lens.insert(model.len);
            }
        }
    }

    /// Whether an error is one an injected fault explains.
    pub(super) fn fault_error(&self, e: &Error, faults_before: u64) -> bool {
        let injected = self.h.borrow().fs.injected_faults() > faults_before;
        // EIO or ENOSPC, or a write the device cut short (its count).
        let injectable = match e {
            Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::EIO) | Some(libc::ENOSPC))
                    || source.kind() == std::io::ErrorKind::WriteZero
            }
            _ => false,
        };
        injected && injectable
    }

    /// Faults injected so far.
    pub(super) fn faults_now(&self) -> u64 {
        self.h.borrow().fs.injected_faults()
    }

    /// Accepts an error of an op on a blob only if an injected fault or a
    /// possible poisoning explains it.
    pub(super) fn expect_failure(
        &self,
        what: &str,
        picked: &Picked,
        e: &Error,
        faults_before: u64,
    ) {
        let poisoned = matches!(e, Error::BlobPoisoned { .. })
            && self.inodes.borrow()[&picked.inode].may_poison;
        assert!(
            poisoned || self.fault_error(e, faults_before),
            "{what} of {}: unexpected error: {e}",
            show(&picked.key)
        );
        check_names(e, (&picked.key.0, Some(&picked.key.1)));
        self.stats.borrow_mut().failed += 1;
    }

    /// When the last remove of `key`, by name or by partition, started.
    pub(super) fn last_remove(&self, key: &Key) -> u64 {
        let names = self.names.borrow();
        let by_name = names.get(key).map_or(0, |n| n.last_remove);
        let parts = self.part_removes.borrow();
        by_name.max(parts.get(&key.0).map_or(0, |p| p.1))
    }

    /// Removes of `key` in flight, by name or by partition.
    pub(super) fn removing(&self, key: &Key) -> u32 {
        let names = self.names.borrow();
        let by_name = names.get(key).map_or(0, |n| n.removing);
        let parts = self.part_removes.borrow();
        by_name + parts.get(&key.0).map_or(0, |p| p.0)
    }

    /// Whether something may hold `key` open: its live handle, an orphan
    /// (a remove that failed may not have released it), another open in
    /// flight, an op or a background sync still holding a closed handle.
    pub(super) fn may_be_open(&self, key: &Key) -> bool {
        let h = self.h.borrow();
        let orphan = h.orphans.iter().any(|o| &o.key == key);
        let opening = self.names.borrow().get(key).map_or(0, |n| n.opening);
        let held = self
            .inodes
            .borrow()
            .values()
            .any(|i| &i.key == key && i.held());
        h.open.contains_key(key) || orphan || opening > 0 || held
    }

    /// Closes a handle the tasks picked: drops the table's copy. The file is
    /// trimmed when its last holder goes, which may be later.
    pub(super) fn close(&self, target: &Target) {
        let mut h = self.h.borrow_mut();
        let handle = match target {
            Target::Open(key) => h.open.remove(key),
            Target::Orphan(i) if *i < h.orphans.len() => Some(h.orphans.remove(*i)),
            Target::Orphan(_) => None,
        };
        let Some(handle) = handle else {
            return;
        };
        if let Target::Open(key) = target {
            if let Some(name) = self.names.borrow_mut().get_mut(key) {
                name.live_since = None;
            }
        }
        let (inode, key) = (inode_of(&handle.model), handle.key.clone());
        let mut inodes = self.inodes.borrow_mut();
        let held = inodes.get_mut(&inode).filter(|i| i.held());
        let held = held.map(|state| state.closed = true).is_some();
        drop(inodes);
        let faults = h.fs.injected_faults();
        let model = handle.model.clone();
        drop(handle);
        drop(h);
        log(|| format!("closed {} (held: {held})", show(&key)));
        if !held {
            self.trimmed(inode, &model, faults);
        }
    }

    /// Ends a round: every task is gone. Crashes the disk and checks it with
    /// the harness; the blobs it finds stay open for the next round.
    pub async fn crash_and_check(&self) {
        log(|| "crash and check".to_string());
        self.trims_happened();
        let inodes = self.inodes.take();
        let writes_in_flight = inodes
            .values()
            .flat_map(|inode| inode.spans.values())
            .filter(|span| span.end.is_none() && span.data.is_some())
            .count();
        self.stats.borrow_mut().crashes_among_writes += u64::from(writes_in_flight > 1);
        self.names.borrow_mut().clear();
        self.part_removes.borrow_mut().clear();
        // The harness drops the handles after the crash, as a killed
        // process makes no more calls; the tasks' store goes with them.
        let mut h = self.h.replace(Harness::new(0));
        let tasks_store = self
            .store
            .replace(Rc::new(ShardStore::new(h.fs.clone(), "/")));
        let joined = tasks_store.stats().snapshot().writes_joined;
        self.stats.borrow_mut().writes_joined += joined;
        h.crash().await;
        drop(tasks_store);
        let keys: Vec<Key> = h.open.keys().cloned().collect();
        let store = Self::take_store(&mut h);
        *self.store.borrow_mut() = store;
        self.h.replace(h);
        for key in keys {
            let now = self.tick();
            self.names.borrow_mut().entry(key).or_default().live_since = Some(now);
        }
    }

    /// Whether mutation `id` of `bytes`, from its start until now, overlapped
    /// another mutation of the same bytes in time.
    pub(super) fn racing(&self, inode: usize, id: u64, bytes: (u64, u64)) -> bool {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&inode).expect("inode of a mutation");
        let me_start = state.spans[&id].start;
        let racing = state.spans.iter().any(|(other, span)| {
            *other != id && span.touches(bytes) && span.end.is_none_or(|end| end > me_start)
        });
        racing
    }

    /// The writes of `p` that may land around mutation `id`, before or
    /// after it ([`Inode::writes`]), if the blob's length is known apart
    /// from `id`'s own change (see [`Landing`](super::model::Landing)).
    pub(super) fn writes_may_land(&self, p: &Picked, id: u64) -> Option<Vec<(u64, Rc<[u8]>)>> {
        let inodes = self.inodes.borrow();
        let state = &inodes[&p.inode];
        let known = state.lens_but(p.model.borrow().len, Some(id)).len() == 1;
        known.then(|| state.writes(Some(id), state.spans[&id].start))
    }

    /// Ends mutation `id` now, and forgets spans that no op in flight
    /// started before the end of.
    pub(super) fn end_span(&self, inode: usize, id: u64) {
        let now = self.tick();
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&inode).expect("inode of a mutation");
        if let Some(span) = state.spans.get_mut(&id) {
            span.end = Some(now);
        }
        let oldest_live = state
            .spans
            .values()
            .filter(|s| s.end.is_none())
            .map(|s| s.start)
            .chain(state.waiters.values().map(|w| w.start))
            .min()
            .unwrap_or(u64::MAX);
        state
            .spans
            .retain(|_, s| s.end.is_none_or(|end| end > oldest_live));
    }

    /// Starts mutation `id` of `bytes` (a write's, with its `data`).
    pub(super) fn start_span(
        &self,
        inode: usize,
        id: u64,
        bytes: (u64, u64),
        data: Option<Rc<[u8]>>,
    ) {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&inode).expect("inode of a mutation");
        let span = Span {
            start: id,
            end: None,
            bytes,
            data,
        };
        state.spans.insert(id, span);
    }

    /// Byte ranges of other mutations that overlapped op `start..now`, or
    /// were dropped and may complete yet: a sync may or may not cover them.
    pub(super) fn busy(&self, inode: usize, id: u64, start: u64, len: u64) -> Vec<(u64, u64)> {
        let inodes = self.inodes.borrow();
        let state = &inodes[&inode];
        let overlapping = state
            .spans
            .iter()
            .filter(|(other, span)| **other != id && span.end.is_none_or(|end| end > start));
        let dropped = state.pending.iter().map(|(_, change)| change.bytes(len));
        overlapping
            .map(|(_, span)| span.bytes)
            .chain(dropped)
            .collect()
    }

    /// The handles of a name: a successful open while the live handle of an
    /// earlier open lives, with no remove of the name started since, is two
    /// live handles on one blob.
    pub(super) fn check_one_live_open(&self, key: &Key) {
        let last_remove = self.last_remove(key);
        let names = self.names.borrow();
        let since = names.get(key).and_then(|n| n.live_since);
        let live = self.h.borrow().open.contains_key(key);
        assert!(
            !(live && since.is_some_and(|since| since > last_remove)),
            "open {} returned Ok while the handle of an earlier open lives and no remove of it \
             started since: two live handles on one blob",
            show(key)
        );
    }
}

/// The storm's writes fall in the first this many bytes of its blob.
const STORM_BYTES: u64 = 16 * 1024;

/// Scheduler steps after which a round that has not ended is a hang: far
/// more than the longest round takes.
const ROUND_POLLS_MAX: u64 = 100_000;

/// A boxed task of a round.
type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

impl Sim {
    /// A write-heavy op on one blob: small writes spread over its first
    /// [`STORM_BYTES`] (rarely overlapping, so the model stays small) or
    /// appended one after another from its end, now and then a resize or a
    /// sync of it (the starvation scenario).
    fn storm_op(&self) -> Op {
        let target = Target::open(random::PARTITIONS[0], "a");
        let len = self
            .h
            .borrow()
            .handle(&target)
            .map_or(0, |h| h.model.borrow().len);
        let mut rng = self.rng.borrow_mut();
        match rng.below(16) {
            0 => Op::resize(&target, (len + rng.below(3000)).saturating_sub(1500)),
            1 => Op::sync(&target),
            2 => Op::start_sync(&target),
            3 | 4 => {
                let size = 1 + rng.below(300);
                // From the end on, up to a bound on the model's size.
                let at = self.storm_append_at.get().max(len);
                let offset = match at < 2 * STORM_BYTES {
                    true => at,
                    false => rng.below(STORM_BYTES),
                };
                self.storm_append_at.set(offset + size);
                Op::write(&target, offset, rng.bytes(size as usize), rng.one_in(8))
            }
            _ => {
                let size = 1 + rng.below(300);
                let offset = rng.below(STORM_BYTES);
                Op::write(&target, offset, rng.bytes(size as usize), rng.one_in(8))
            }
        }
    }

    /// One task: `ops` ops; one in four is dropped after a few polls.
    async fn task(&self, task: usize, ops: usize, storm: bool) {
        for _ in 0..ops {
            let op = match storm {
                true => self.storm_op(),
                false => self.random_op(),
            };
            let limit = {
                let mut rng = self.rng.borrow_mut();
                rng.one_in(4).then(|| rng.below(8) as usize)
            };
            self.run_op(task, &op, limit).await;
        }
    }

    /// Runs [`TASKS`] tasks of `ops` ops each. With `cut_after`, drops them
    /// all after that many polls of the round (a crash then follows);
    /// returns whether it did.
    pub async fn round(&self, ops: usize, storm: bool, cut_after: Option<u64>) -> bool {
        let mut tasks: Vec<Option<Task<'_>>> = (0..TASKS)
            .map(|t| Some(Box::pin(self.task(t, ops, storm)) as Task<'_>))
            .collect();
        let mut polls = 0u64;
        let cut = poll_fn(|cx| {
            polls += 1;
            if cut_after.is_some_and(|limit| polls > limit) {
                return Poll::Ready(true);
            }
            for slot in &mut tasks {
                if slot
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready())
                {
                    *slot = None;
                }
            }
            if tasks.iter().all(Option::is_none) {
                return Poll::Ready(false);
            }
            assert!(
                polls < ROUND_POLLS_MAX,
                "the tasks still run after {ROUND_POLLS_MAX} scheduler steps: a hang"
            );
            // Polled at every scheduler step, so that a hang is counted.
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        drop(tasks);
        if cut {
            log(|| format!("round cut after {polls} polls"));
            self.stats.borrow_mut().crashes_mid_round += 1;
        }
        cut
    }

    /// After a round that ran to its end: lets every call still on the
    /// device and every background sync finish, closes every handle, and
    /// opens every name: none may be left "already open".
    pub async fn settle_and_reopen(&self, settle_yields: usize) {
        for _ in 0..settle_yields {
            yield_now().await;
        }
        for target in self.h.borrow().targets() {
            // Checks the engine's length against the model.
            if let Some(picked) = self.pick(&target) {
                self.release(picked);
            }
        }
        self.trims_happened();
        for state in self.inodes.borrow_mut().values_mut() {
            state.background = false;
            state.pending.clear();
        }
        loop {
            let Some(target) = self.h.borrow().targets().first().cloned() else {
                break;
            };
            self.close(&target);
        }
        for p in random::PARTITIONS {
            for n in random::NAMES {
                let key = (p.to_string(), n.to_vec());
                log(|| format!("reopen {}", show(&key)));
                self.open(&key, 0..=0, None).await;
            }
        }
    }
}
