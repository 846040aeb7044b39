//! [`ShardStore`]: the blobs of the partitions one shard owns.
//!
//! Directory layout: `<root>/<partition>/<hex name>`, one file per blob.
//! Creating or removing a blob syncs the file and every directory whose
//! entries changed before returning, so `Ok` means durable. An `open` of an
//! existing blob also syncs its directory and the root, unless this store
//! synced them since their last change: a failed create (or an earlier
//! process) may have left an entry that is listed but not durable.
//!
//! The registry enforces one live open per blob: a slot is claimed before
//! the first file-system call of `open`, so two concurrent opens of one name
//! cannot both succeed, and a handle's drop releases only its own slot (a
//! removed and reopened name has a new slot). A remove and an open of one
//! name exclude each other (see [`Registry`]): were a remove to forget the
//! slot of an open in progress, a third open could claim the name and two
//! handles would end on one file, each with its own idea of the length.
//!
//! Removing a partition is atomic, to observers and across a crash: its
//! directory is renamed to a tombstone name no partition can have, and the
//! data directory synced; only then are the files deleted (best effort;
//! `DataDir::lock` deletes leftover tombstones at the next start). Deleting
//! file by file would leave a subset after a failure or a crash.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use event_listener::Event;

use crate::api::Storage;
use crate::blob::{ShardBlob, Slots, TailBlock, BLOB_LEN_MAX, PREALLOCATE_BYTES};
use crate::fs::{File, FileSystem, BLOCK_SIZE};
use crate::header::{self, Header, HEADER_LEN};
use crate::name::{blob_file_name, tombstone_name, unhex, validate_partition};
use crate::sched::{IoScheduler, SchedConfig, SchedFile};
use crate::stats::{OpKind, StoreStats};
use crate::{Error, Result};

/// A blob's identity: partition and raw name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobKey {
    /// The partition.
    pub partition: String,
    /// The blob's raw name (not hex).
    pub name: Vec<u8>,
}

enum Slot {
    /// An `open` is in progress; the number tells opens apart.
    Opening(u64),
    /// Open; the pointer identifies the open (compared, never dereferenced).
    Open(*const ()),
    /// Its last handle is gone, and work it started still runs (a commit
    /// whose caller left, the zeros written ahead): the close comes when
    /// that lands. An open of the name waits for it.
    Closing(*const ()),
}

/// What a remove in progress covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Removal {
    Blob(BlobKey),
    Partition(String),
}

impl Removal {
    fn covers(&self, key: &BlobKey) -> bool {
        match self {
            Removal::Blob(blob) => blob == key,
            Removal::Partition(partition) => *partition == key.partition,
        }
    }

    fn partition(&self) -> &str {
        match self {
            Removal::Blob(key) => &key.partition,
            Removal::Partition(partition) => partition,
        }
    }

    /// Whether the two removes touch a common name: either would see the
    /// other half done (a partition renamed away, and maybe put back).
    fn overlaps(&self, other: &Removal) -> bool {
        match (self, other) {
            (Removal::Blob(a), Removal::Blob(b)) => a == b,
            _ => self.partition() == other.partition(),
        }
    }
}

/// The live opens and the removes in progress of one store.
///
/// A remove and an open of one name exclude each other: a remove waits for
/// the removes it overlaps, announces itself (new opens of its names, and
/// scans of a partition it removes, then wait for it), then waits for the
/// opens already in progress; an open waits for the removes of its name,
/// then claims its slot. An open also waits for the close of a blob whose
/// last handle is gone while the work it started lands (`Slot::Closing`);
/// that work waits only for the device. A call waits only for calls that
/// announced themselves, and an announced remove only for opens that hold
/// a slot, which wait for nothing: no cycle, no deadlock. An open's slot is
/// never forgotten while the open runs: its final registration only fills
/// the slot it claimed. Waiting is not fair: a steady stream of removes of
/// one name can hold its opens back.
#[derive(Default)]
pub struct Registry {
    slots: RefCell<HashMap<BlobKey, Slot>>,
    /// One entry per remove in progress; bounded by the calls in flight.
    removals: RefCell<Vec<Removal>>,
    next_open: Cell<u64>,
    /// Notified whenever an open, a remove or a close ends.
    ended: Event,
    /// Logical lengths of blobs whose last handle's close left work to the
    /// next open (blob/mod.rs, the drop): a length it could not record, or
    /// a poisoned blob's whose close could not flush (its file may not be
    /// durable as it is). The next open takes the length and flushes,
    /// unless it finds a new file.
    unsettled: RefCell<HashMap<BlobKey, u64>>,
}

impl Registry {
    fn removing(&self, key: &BlobKey) -> bool {
        self.removals.borrow().iter().any(|r| r.covers(key))
    }

    fn closing(&self, key: &BlobKey) -> bool {
        matches!(self.slots.borrow().get(key), Some(Slot::Closing(_)))
    }

    /// Whether an open of a name `removal` covers is in progress.
    fn opening(&self, removal: &Removal) -> bool {
        let slots = self.slots.borrow();
        let opening = |slot: &Slot| matches!(slot, Slot::Opening(_));
        match removal {
            Removal::Blob(key) => slots.get(key).is_some_and(opening),
            Removal::Partition(_) => slots
                .iter()
                .any(|(key, slot)| opening(slot) && removal.covers(key)),
        }
    }

    /// Waits until `busy` is false. Each turn of the loop follows the end
    /// of an open or a remove of this store.
    async fn wait_while(&self, busy: impl Fn() -> bool) {
        while busy() {
            let listener = self.ended.listen();
            if !busy() {
                break;
            }
            listener.await;
        }
    }

    /// Waits for the removes of `key` and for the close of its last open,
    /// then claims it for an open; `None` if it is open or being opened.
    async fn claim<'a>(&'a self, key: &'a BlobKey) -> Option<ClaimGuard<'a>> {
        self.wait_while(|| self.removing(key) || self.closing(key))
            .await;
        let mut slots = self.slots.borrow_mut();
        if slots.contains_key(key) {
            return None;
        }
        let open = self.next_open.get();
        self.next_open.set(open + 1);
        slots.insert(key.clone(), Slot::Opening(open));
        Some(ClaimGuard {
            registry: self,
            key,
            open,
        })
    }

    /// Turns the claimed slot into an open one; `false` (nothing changed)
    /// if the slot is not the claim's any more.
    fn opened(&self, claim: &ClaimGuard<'_>, blob: *const ()) -> bool {
        let mut slots = self.slots.borrow_mut();
        match slots.get_mut(claim.key) {
            Some(slot) if matches!(*slot, Slot::Opening(o) if o == claim.open) => {
                *slot = Slot::Open(blob);
                true
            }
            _ => false,
        }
    }

    /// Whether a removal of the whole `partition` is in progress.
    fn removing_partition(&self, partition: &str) -> bool {
        let removals = self.removals.borrow();
        removals
            .iter()
            .any(|r| matches!(r, Removal::Partition(p) if p == partition))
    }

    /// Waits for the removes `removal` overlaps, announces it (opens of its
    /// names wait from now on), then waits for the opens of its names
    /// already in progress.
    async fn start_removal(&self, removal: Removal) -> RemovalGuard<'_> {
        let overlapped = || self.removals.borrow().iter().any(|r| r.overlaps(&removal));
        self.wait_while(overlapped).await;
        self.removals.borrow_mut().push(removal.clone());
        let guard = RemovalGuard {
            registry: self,
            removal,
        };
        self.wait_while(|| self.opening(&guard.removal)).await;
        guard
    }

    /// Marks `key` closing if `open` still holds it: its last handle is
    /// gone, and the work it started still runs.
    pub(crate) fn last_handle_dropped(&self, key: &BlobKey, open: *const ()) {
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get_mut(key) {
            if matches!(*slot, Slot::Open(p) if p == open) {
                *slot = Slot::Closing(open);
            }
        }
    }

    /// Releases `key` if `open` still holds it; `unsettled`: the logical
    /// length, if its close left work to the next open.
    pub(crate) fn release(&self, key: &BlobKey, open: *const (), unsettled: Option<u64>) {
        let mut slots = self.slots.borrow_mut();
        let held = |slot: &Slot| matches!(*slot, Slot::Open(p) | Slot::Closing(p) if p == open);
        if slots.get(key).is_some_and(held) {
            slots.remove(key);
            if let Some(len) = unsettled {
                self.unsettled.borrow_mut().insert(key.clone(), len);
            }
        }
        drop(slots);
        self.ended.notify(usize::MAX);
    }

    /// Forgets the open slots a remove covers (their files are gone from
    /// the names). Only under a [`RemovalGuard`] whose wait ended: no open
    /// of these names is in progress.
    fn forget(&self, removal: &Removal) {
        debug_assert!(
            !self.opening(removal),
            "a remove forgets only finished opens"
        );
        let mut slots = self.slots.borrow_mut();
        match removal {
            Removal::Blob(key) => {
                slots.remove(key);
            }
            Removal::Partition(_) => slots.retain(|key, _| !removal.covers(key)),
        }
        self.unsettled
            .borrow_mut()
            .retain(|key, _| !removal.covers(key));
    }
}

/// Releases a claimed slot if `open` fails or is cancelled.
struct ClaimGuard<'a> {
    registry: &'a Registry,
    key: &'a BlobKey,
    open: u64,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut slots = self.registry.slots.borrow_mut();
        if matches!(slots.get(self.key), Some(Slot::Opening(o)) if *o == self.open) {
            slots.remove(self.key);
        }
        drop(slots);
        self.registry.ended.notify(usize::MAX);
    }
}

/// A remove in progress; its end (or cancellation) lets waiting opens on.
struct RemovalGuard<'a> {
    registry: &'a Registry,
    removal: Removal,
}

impl Drop for RemovalGuard<'_> {
    fn drop(&mut self) {
        let mut removals = self.registry.removals.borrow_mut();
        if let Some(at) = removals.iter().position(|r| *r == self.removal) {
            removals.swap_remove(at);
        }
        drop(removals);
        self.registry.ended.notify(usize::MAX);
    }
}

/// Which directory listings this store made durable since they changed.
///
/// Changes are numbered by a clock; a sync covers every change made before
/// it began. A directory this store never synced counts as not durable.
#[derive(Default)]
struct DirSyncs {
    clock: Cell<u64>,
    changed: RefCell<HashMap<PathBuf, u64>>,
    synced: RefCell<HashMap<PathBuf, u64>>,
}

impl DirSyncs {
    /// Records a change (made, or about to be made) to `dir`'s entries.
    fn changed(&self, dir: &Path) {
        let now = self.clock.get() + 1;
        self.clock.set(now);
        self.changed.borrow_mut().insert(dir.to_path_buf(), now);
    }

    fn is_durable(&self, dir: &Path) -> bool {
        let changed = self.changed.borrow().get(dir).copied().unwrap_or(0);
        self.synced.borrow().get(dir).is_some_and(|&s| s >= changed)
    }
}

/// The blob store of one shard, generic over the file seam.
///
/// Its blobs close when their last handle is gone and the work they
/// started has landed (blob/mod.rs), which may be after the store is
/// dropped: before a new store works on the same root in this process, wait
/// until this one's [`StoreStats::open_blobs`] is 0 (the engine's shards do
/// when they stop), or a late close could cut a file the new store writes.
pub struct ShardStore<F: FileSystem> {
    fs: F,
    root: PathBuf,
    registry: Rc<Registry>,
    dirs: DirSyncs,
    /// Number of the next tombstone name this store tries.
    tombstones: Cell<u64>,
    /// The shard's I/O scheduler: every blob's device calls go through it.
    sched: Rc<IoScheduler>,
    /// The step appends reserve ahead in; 0 = reserve nothing.
    preallocate_bytes: u64,
    /// What every operation of this store and its blobs counts in.
    stats: Rc<StoreStats>,
}

impl<F: FileSystem> ShardStore<F> {
    /// A store of the partitions under `root` (the data directory), with
    /// the default I/O scheduler.
    pub fn new(fs: F, root: impl Into<PathBuf>) -> ShardStore<F> {
        Self::with_scheduler(fs, root, IoScheduler::new(SchedConfig::default()))
    }

    /// A store whose blobs' device calls go through `sched`.
    pub fn with_scheduler(
        fs: F,
        root: impl Into<PathBuf>,
        sched: Rc<IoScheduler>,
    ) -> ShardStore<F> {
        ShardStore {
            fs,
            root: root.into(),
            registry: Rc::new(Registry::default()),
            dirs: DirSyncs::default(),
            tombstones: Cell::new(0),
            sched,
            preallocate_bytes: PREALLOCATE_BYTES,
            stats: Rc::default(),
        }
    }

    /// The same store whose blobs reserve space ahead of appends in steps
    /// of `bytes` (default [`PREALLOCATE_BYTES`]); 0 reserves nothing, so
    /// every append allocates its own blocks.
    pub fn with_preallocate_bytes(mut self, bytes: u64) -> ShardStore<F> {
        self.preallocate_bytes = bytes;
        self
    }

    /// The shard's I/O scheduler.
    pub fn scheduler(&self) -> &Rc<IoScheduler> {
        &self.sched
    }

    /// The statistics of this store and its blobs, on every path that
    /// reaches them.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file seam.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// Syncs `dir` and records it durable (as of the sync's start).
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let start = self.dirs.clock.get();
        self.fs.sync_dir(dir).await?;
        let mut synced = self.dirs.synced.borrow_mut();
        let at = synced.entry(dir.to_path_buf()).or_insert(start);
        *at = (*at).max(start);
        Ok(())
    }

    /// Syncs `dir` unless this store did since its last change.
    async fn make_durable(&self, dir: &Path) -> io::Result<()> {
        if self.dirs.is_durable(dir) {
            return Ok(());
        }
        self.sync_dir(dir).await
    }

    /// Makes sure the partition directory exists (durably).
    async fn ensure_partition(&self, partition: &str, name: &[u8], dir: &Path) -> Result<()> {
        let created = self.fs.create_dir(dir).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                Error::PartitionCorrupt {
                    partition: partition.to_string(),
                    reason: format!("{} exists and is not a directory", dir.display()),
                }
            }
            _ => Error::io(partition, Some(name), "create partition", e),
        })?;
        if created {
            self.dirs.changed(&self.root);
        }
        self.make_durable(&self.root)
            .await
            .map_err(|e| Error::io(partition, Some(name), "sync data directory", e))
    }

    /// Opens the file of a claimed blob.
    async fn open_file(
        &self,
        key: &BlobKey,
        versions: &RangeInclusive<u16>,
    ) -> Result<Loaded<F::File>> {
        let partition = key.partition.as_str();
        let dir = self.root.join(partition);
        self.ensure_partition(partition, &key.name, &dir).await?;
        let path = dir.join(blob_file_name(partition, &key.name)?);
        let blob_io = |op| move |e| Error::io(partition, Some(&key.name), op, e);
        let (file, created) = match self.fs.open_file(&path, false).await {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = self
                    .fs
                    .open_file(&path, true)
                    .await
                    .map_err(blob_io("create"))?;
                (file, true)
            }
            Err(e) => return Err(blob_io("open")(e)),
        };
        match self.load(key, versions, &dir, file).await {
            // A create that failed half-way (a full disk, say) leaves no
            // entry behind for `scan` to list. Best effort: a leftover is an
            // unfinished create, which the next open resets.
            Err(e) if created => {
                let _ = self.fs.remove_file(&path);
                Err(e)
            }
            loaded => loaded,
        }
    }

    /// Reads (or, for an unfinished create, writes) the header of an open
    /// blob file, sets the file's size to the logical length and loads its
    /// tail block.
    async fn load(
        &self,
        key: &BlobKey,
        versions: &RangeInclusive<u16>,
        dir: &Path,
        file: F::File,
    ) -> Result<Loaded<F::File>> {
        let blob_io = |op| move |e| Error::io(&key.partition, Some(&key.name), op, e);
        let size = file.size().await.map_err(blob_io("stat"))?;
        // A file without a header is a new one (or the trace of a create
        // that did not finish): what a close left for an earlier file of
        // the name (removed since, outside this store's removes) is not its.
        if size < HEADER_LEN {
            self.registry.unsettled.borrow_mut().remove(key);
        }
        let (header, size) = self.read_header(key, versions, dir, &file, size).await?;
        self.make_durable(dir)
            .await
            .map_err(blob_io("sync partition directory"))?;
        let version = header.blob_version;
        if !versions.contains(&version) {
            return Err(Error::BlobVersionMismatch {
                partition: key.partition.clone(),
                name: key.name.clone(),
                expected: versions.clone(),
                found: version,
            });
        }
        let header = match header.format {
            header::FORMAT_V1 => Self::convert(key, &file, header, size).await?,
            _ => header,
        };
        let mut slots =
            Slots::opened(&header).ok_or_else(|| corrupt(key, "length slots exhausted"))?;
        let len = self.settle_len(key, &file, &mut slots, size).await?;
        self.registry.unsettled.borrow_mut().remove(key);
        let tail = Self::load_tail(key, &file, len).await?;
        Ok(Loaded {
            file,
            len,
            slots,
            version,
            tail,
        })
    }

    /// The logical length of an opened file (its newest slot's, or what a
    /// close left to this open), recorded in its slot, with the file's size
    /// set to it, durably.
    async fn settle_len(
        &self,
        key: &BlobKey,
        file: &F::File,
        slots: &mut Slots,
        size: u64,
    ) -> Result<u64> {
        let blob_io = |op| move |e| Error::io(&key.partition, Some(&key.name), op, e);
        let closed_len = self.registry.unsettled.borrow().get(key).copied();
        let len = closed_len.unwrap_or(slots.newest_len());
        if len > BLOB_LEN_MAX {
            return Err(corrupt(key, &format!("length {len} past {BLOB_LEN_MAX}")));
        }
        // A close that could not record its length left it to this open.
        let recorded = len != slots.newest_len();
        if recorded {
            header::write_page(file, &slots.record_on_open(len), false)
                .await
                .map_err(blob_io("record the length"))?;
        }
        // The file holds exactly the logical length from here on: a crash
        // may have left it longer (blocks written ahead, unsynced appends
        // whose length never reached a slot) or shorter (a size change the
        // flush did not make durable: the missing bytes read as zeros).
        if size != HEADER_LEN + len {
            file.set_len(HEADER_LEN + len)
                .await
                .map_err(blob_io("set the size to the length"))?;
        }
        // Durably: the cut above (a later durable slot must not find the
        // bytes it took back after a crash), a length recorded here, and
        // whatever a poisoned blob's failed flush left (a cut that may not
        // be durable). A blob whose size is its length and whose close left
        // nothing to do reopens with no flush.
        if size != HEADER_LEN + len || closed_len.is_some() {
            file.sync_data().await.map_err(blob_io("sync on open"))?;
        }
        Ok(len)
    }

    /// Converts a format-1 file (its length is its size) to format 2 in
    /// place: first its length in slot A under the old sector 0 (which a
    /// format-1 reader ignores), made durable; then sector 0 says format 2.
    /// Each step rewrites what the device holds, so a crash between or
    /// inside them leaves a file that opens, in either format.
    async fn convert(key: &BlobKey, file: &F::File, v1: Header, size: u64) -> Result<Header> {
        let len = size.max(HEADER_LEN) - HEADER_LEN;
        let v2 = Header::new(v1.blob_version, len);
        let v1_with_slot = Header {
            format: header::FORMAT_V1,
            ..v2
        };
        for step in [v1_with_slot, v2] {
            let written = match header::write_page(file, &step, false).await {
                Ok(()) => file.sync_data().await,
                Err(e) => Err(e),
            };
            written.map_err(|e| {
                Error::io(&key.partition, Some(&key.name), "convert to format 2", e)
            })?;
        }
        tracing::info!(
            partition = %key.partition,
            name = %crate::name::hex(&key.name),
            len,
            "converted a blob file from format 1 to format 2"
        );
        Ok(v2)
    }

    /// The header of a file of `size` bytes, and the file's size after
    /// it; writes a fresh header over the trace of a create that did not
    /// finish.
    async fn read_header(
        &self,
        key: &BlobKey,
        versions: &RangeInclusive<u16>,
        dir: &Path,
        file: &F::File,
        size: u64,
    ) -> Result<(Header, u64)> {
        let blob_io = |op| move |e| Error::io(&key.partition, Some(&key.name), op, e);
        let page = match size >= HEADER_LEN {
            true => Some(
                file.read_at(0, HEADER_LEN as usize)
                    .await
                    .map_err(blob_io("read header"))?,
            ),
            false => None,
        };
        match page.as_deref().map(header::decode) {
            // A header and no data: perhaps a create whose data sync failed
            // wrote it. Make it durable before a handle can write data.
            Some(Ok(header)) if size == HEADER_LEN => {
                file.sync_data().await.map_err(blob_io("sync new blob"))?;
                Ok((header, size))
            }
            Some(Ok(header)) => Ok((header, size)),
            Some(Err(reason)) if size > HEADER_LEN => Err(corrupt(key, &reason.to_string())),
            // No header, or a header page that never verified and no data:
            // the trace of a create that did not finish. Start afresh.
            _ => {
                // The entry may be new: sync the directory whatever happens.
                self.dirs.changed(dir);
                let header = Header::new(*versions.end(), 0);
                header::write_page(file, &header, false)
                    .await
                    .map_err(blob_io("write header"))?;
                file.sync_data().await.map_err(blob_io("sync new blob"))?;
                Ok((header, HEADER_LEN))
            }
        }
    }

    /// The block holding the logical end `len`, if it is partly used.
    async fn load_tail(key: &BlobKey, file: &F::File, len: u64) -> Result<Option<TailBlock>> {
        if len.is_multiple_of(BLOCK_SIZE) {
            return Ok(None);
        }
        let index = len / BLOCK_SIZE;
        let used = (len % BLOCK_SIZE) as usize;
        let read = file
            .read_at(HEADER_LEN + index * BLOCK_SIZE, used)
            .await
            .map_err(|e| Error::io(&key.partition, Some(&key.name), "read tail block", e))?;
        let mut bytes = vec![0u8; BLOCK_SIZE as usize];
        let valid = read.len().min(used);
        bytes[..valid].copy_from_slice(&read[..valid]);
        Ok(Some(TailBlock {
            index,
            bytes: bytes.into(),
        }))
    }

    fn check_versions(key: &BlobKey, versions: &RangeInclusive<u16>) -> Result<()> {
        if versions.is_empty() {
            return Err(Error::VersionRangeEmpty {
                partition: key.partition.clone(),
                name: key.name.clone(),
                versions: versions.clone(),
            });
        }
        Ok(())
    }

    async fn remove_blob(&self, partition: &str, name: &[u8]) -> Result<()> {
        let file_name = blob_file_name(partition, name)?;
        let removal = Removal::Blob(BlobKey {
            partition: partition.to_string(),
            name: name.to_vec(),
        });
        let removing = self.registry.start_removal(removal).await;
        // The unlink and the forget go together, with no await between: a
        // handle's slot lives exactly as long as its file has the name.
        let dir = self.root.join(partition);
        let removed = self.fs.remove_file(&dir.join(file_name));
        if !matches!(&removed, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            // Recorded with no await since the unlink: no sync between.
            self.dirs.changed(&dir);
        }
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.already_removed(partition, name, &dir).await)
            }
            Err(e) => return Err(Error::io(partition, Some(name), "remove", e)),
        }
        self.registry.forget(&removing.removal);
        self.sync_dir(&dir)
            .await
            .map_err(|e| Error::io(partition, Some(name), "sync partition directory", e))
    }

    /// The answer to a remove that finds no file: `BlobMissing` once the
    /// name's absence is durable. An earlier remove whose directory sync
    /// failed (or a crashed process) may have left the unlink unsynced, and
    /// the caller takes `BlobMissing` as "gone": without this sync a crash
    /// could bring the name back. Free unless this store changed the
    /// directory since its last sync of it (or never synced it). A missing
    /// partition directory: its removal must be durable in the data
    /// directory instead.
    async fn already_removed(&self, partition: &str, name: &[u8], dir: &Path) -> Error {
        let synced = match self.make_durable(dir).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_durable(&self.root).await,
            synced => synced,
        };
        match synced {
            Ok(()) => Error::BlobMissing {
                partition: partition.to_string(),
                name: name.to_vec(),
            },
            Err(e) => Error::io(partition, Some(name), "sync partition directory", e),
        }
    }

    /// Lists the blob names of a partition; anything foreign is an error.
    fn list(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        let dir = self.root.join(partition);
        let entries = self.fs.list_dir(&dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::PartitionMissing(partition.to_string()),
            io::ErrorKind::NotADirectory => Error::PartitionCorrupt {
                partition: partition.to_string(),
                reason: format!("{} is not a directory", dir.display()),
            },
            _ => Error::io(partition, None, "list partition", e),
        })?;
        entries
            .into_iter()
            .map(|entry| {
                let name = entry
                    .name
                    .to_str()
                    .and_then(unhex)
                    .filter(|_| entry.is_file);
                name.ok_or_else(|| Error::PartitionCorrupt {
                    partition: partition.to_string(),
                    reason: format!(
                        "{:?} in {} was not written by shardblob",
                        entry.name,
                        dir.display()
                    ),
                })
            })
            .collect()
    }

    /// Removes a partition atomically: its directory is renamed to a
    /// tombstone (no partition can have that name), the data directory
    /// synced (the commit point), then the tombstone deleted, best effort
    /// (`DataDir::lock` deletes leftovers). Before the commit, a failure
    /// puts the directory back and says that nothing was removed.
    async fn remove_partition(&self, partition: &str) -> Result<()> {
        let removal = Removal::Partition(partition.to_string());
        let removing = self.registry.start_removal(removal).await;
        // List (and refuse foreign entries) before changing anything.
        self.list(partition).map_err(|e| match e {
            Error::Io { source, .. } => Error::io(partition, None, LIST_FAILED, source),
            other => other,
        })?;
        let dir = self.root.join(partition);
        let tombstone = self.rename_to_tombstone(partition, &dir)?;
        self.dirs.changed(&self.root);
        self.dirs.changed(&dir);
        // From here the blobs have left their names: even if this call is
        // dropped, their handles must not keep the names "already open".
        let forget = ForgetOnDrop {
            registry: &self.registry,
            removal: &removing.removal,
        };
        if let Err(e) = self.sync_dir(&self.root).await {
            if self.fs.rename(&tombstone, &dir).is_err() {
                let op = "sync data directory; the partition is gone, but a crash may bring all of it back";
                return Err(Error::io(partition, None, op, e));
            }
            // Disarmed: the files have their names back, and the live
            // handles keep the names they hold.
            std::mem::forget(forget);
            // The rename back must be as durable as the rename away may
            // have become, or a crash could keep the tombstone, which the
            // next start deletes.
            let op = match self.sync_dir(&self.root).await {
                Ok(()) => "sync data directory; nothing was removed",
                Err(_) => "sync data directory; nothing was removed, unless the machine crashes before the data directory is synced",
            };
            return Err(Error::io(partition, None, op, e));
        }
        drop(forget);
        self.delete_tombstone(&tombstone);
        Ok(())
    }

    /// Renames a partition's directory to a free tombstone name.
    fn rename_to_tombstone(&self, partition: &str, dir: &Path) -> Result<PathBuf> {
        for _ in 0..TOMBSTONE_NAMES_MAX {
            let sequence = self.tombstones.get();
            self.tombstones.set(sequence.wrapping_add(1));
            let tombstone = self.root.join(tombstone_name(partition, sequence));
            match self.fs.rename(dir, &tombstone) {
                Ok(()) => return Ok(tombstone),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(partition, None, RENAME_FAILED, e)),
            }
        }
        let taken = format!(
            "{TOMBSTONE_NAMES_MAX} tombstone names in a row are taken by earlier removals; restarting the engine deletes them"
        );
        let taken = io::Error::new(io::ErrorKind::AlreadyExists, taken);
        Err(Error::io(partition, None, RENAME_FAILED, taken))
    }

    /// Deletes a committed tombstone, best effort: whatever is left stays
    /// unlisted until `DataDir::lock` deletes it.
    fn delete_tombstone(&self, tombstone: &Path) {
        let Ok(entries) = self.fs.list_dir(tombstone) else {
            return;
        };
        for entry in entries {
            let _ = self.fs.remove_file(&tombstone.join(&entry.name));
        }
        let _ = self.fs.remove_dir(tombstone);
    }
}

const LIST_FAILED: &str = "list partition; nothing was removed";
const RENAME_FAILED: &str = "rename partition to its tombstone; nothing was removed";
/// Tombstone names one removal tries before it gives up.
const TOMBSTONE_NAMES_MAX: u32 = 64;

/// Forgets the open slots of a removed partition when dropped.
struct ForgetOnDrop<'a> {
    registry: &'a Registry,
    removal: &'a Removal,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.registry.forget(self.removal);
    }
}

impl<F: FileSystem> ShardStore<F> {
    /// [`Storage::open_versioned`], uncounted: for a caller that counts
    /// the call itself with [`StoreStats::start`] (the engine counts a
    /// forwarded call by whether its caller was still there for the answer).
    #[doc(hidden)] // engine-internal: a caller that skips it goes uncounted
    pub async fn open_versioned_uncounted(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> Result<(ShardBlob<F>, u64, u16)> {
        validate_partition(partition)?;
        blob_file_name(partition, name)?;
        let key = BlobKey {
            partition: partition.to_string(),
            name: name.to_vec(),
        };
        Self::check_versions(&key, &versions)?;
        let Some(claim) = self.registry.claim(&key).await else {
            return Err(Error::BlobAlreadyOpen {
                partition: key.partition,
                name: key.name,
            });
        };
        let Loaded {
            file,
            len,
            slots,
            version,
            tail,
        } = self.open_file(&key, &versions).await?;
        let file = SchedFile::new(file, self.sched.clone());
        let registry = Rc::downgrade(&self.registry);
        let blob = ShardBlob::new(
            key.clone(),
            file,
            len,
            slots,
            tail,
            registry,
            self.preallocate_bytes,
            self.stats.clone(),
        );
        // A remove never forgets a slot whose open is in progress, so the
        // claim still holds it; if not, fail rather than take another's.
        let registered = self
            .registry
            .opened(&claim, Rc::as_ptr(&blob.state) as *const ());
        debug_assert!(registered, "an open's slot stays its own until it ends");
        if !registered {
            drop(claim);
            return Err(Error::BlobAlreadyOpen {
                partition: key.partition,
                name: key.name,
            });
        }
        Ok((blob, len, version))
    }

    /// [`Storage::remove`], uncounted (see
    /// [`ShardStore::open_versioned_uncounted`]).
    #[doc(hidden)] // engine-internal: a caller that skips it goes uncounted
    pub async fn remove_uncounted(&self, partition: &str, name: Option<&[u8]>) -> Result<()> {
        validate_partition(partition)?;
        match name {
            Some(name) => self.remove_blob(partition, name).await,
            None => self.remove_partition(partition).await,
        }
    }

    /// [`Storage::scan`], uncounted (see
    /// [`ShardStore::open_versioned_uncounted`]).
    #[doc(hidden)] // engine-internal: a caller that skips it goes uncounted
    pub async fn scan_uncounted(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        validate_partition(partition)?;
        // A partition removal is seen whole or not at all, even if it fails
        // and puts the directory back.
        let registry = &self.registry;
        registry
            .wait_while(|| registry.removing_partition(partition))
            .await;
        self.list(partition)
    }
}

/// Every call is counted in the store's [`StoreStats`].
impl<F: FileSystem> Storage for ShardStore<F> {
    type Blob = ShardBlob<F>;

    async fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> Result<(ShardBlob<F>, u64, u16)> {
        let open = self.open_versioned_uncounted(partition, name, versions);
        self.stats.timed(OpKind::Open, 0, open).await
    }

    async fn remove(&self, partition: &str, name: Option<&[u8]>) -> Result<()> {
        let remove = self.remove_uncounted(partition, name);
        self.stats.timed(OpKind::Remove, 0, remove).await
    }

    async fn scan(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        let scan = self.scan_uncounted(partition);
        self.stats.timed(OpKind::Scan, 0, scan).await
    }
}

/// An opened blob file and what its open read.
struct Loaded<Fi> {
    file: Fi,
    len: u64,
    slots: Slots,
    version: u16,
    tail: Option<TailBlock>,
}

/// The error of a blob file whose header says something impossible.
fn corrupt(key: &BlobKey, reason: &str) -> Error {
    Error::BlobCorrupt {
        partition: key.partition.clone(),
        name: key.name.clone(),
        reason: reason.to_string(),
    }
}
