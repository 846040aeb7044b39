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
//! the first await of `open`, so two concurrent opens of one name cannot both
//! succeed, and a handle's drop releases only its own slot (a removed and
//! reopened name has a new slot).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::api::Storage;
use crate::blob::{ShardBlob, TailBlock};
use crate::fs::{File, FileSystem, WriteBuf, BLOCK_SIZE};
use crate::header::{self, HEADER_LEN};
use crate::name::{blob_file_name, unhex, validate_partition};
use crate::{Error, Result};

/// A blob's identity: partition and raw name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobKey {
    pub partition: String,
    pub name: Vec<u8>,
}

enum Slot {
    /// An `open` is in progress.
    Opening,
    /// Open; the pointer identifies the open (compared, never dereferenced).
    Open(*const ()),
}

/// The live opens of one store.
#[derive(Default)]
pub struct Registry {
    slots: RefCell<HashMap<BlobKey, Slot>>,
}

impl Registry {
    /// Claims `key` for an open; `false` if it is open or being opened.
    fn claim(&self, key: &BlobKey) -> bool {
        let mut slots = self.slots.borrow_mut();
        if slots.contains_key(key) {
            return false;
        }
        slots.insert(key.clone(), Slot::Opening);
        true
    }

    fn opened(&self, key: &BlobKey, open: *const ()) {
        self.slots
            .borrow_mut()
            .insert(key.clone(), Slot::Open(open));
    }

    fn abandon(&self, key: &BlobKey) {
        let mut slots = self.slots.borrow_mut();
        if matches!(slots.get(key), Some(Slot::Opening)) {
            slots.remove(key);
        }
    }

    /// Releases `key` if `open` still holds it.
    pub(crate) fn release(&self, key: &BlobKey, open: *const ()) {
        let mut slots = self.slots.borrow_mut();
        if matches!(slots.get(key), Some(Slot::Open(p)) if *p == open) {
            slots.remove(key);
        }
    }

    fn forget(&self, key: &BlobKey) {
        self.slots.borrow_mut().remove(key);
    }

    fn forget_partition(&self, partition: &str) {
        self.slots
            .borrow_mut()
            .retain(|key, _| key.partition != partition);
    }
}

/// Releases a claimed slot if `open` fails or is cancelled.
struct ClaimGuard<'a> {
    registry: &'a Registry,
    key: &'a BlobKey,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        self.registry.abandon(self.key);
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
pub struct ShardStore<F: FileSystem> {
    fs: F,
    root: PathBuf,
    registry: Rc<Registry>,
    dirs: DirSyncs,
}

impl<F: FileSystem> ShardStore<F> {
    /// A store of the partitions under `root` (the data directory).
    pub fn new(fs: F, root: impl Into<PathBuf>) -> ShardStore<F> {
        ShardStore {
            fs,
            root: root.into(),
            registry: Rc::new(Registry::default()),
            dirs: DirSyncs::default(),
        }
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file seam.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    fn partition_io<'a>(
        partition: &'a str,
        op: &'static str,
    ) -> impl FnOnce(io::Error) -> Error + 'a {
        move |e| Error::io(partition, None, op, e)
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
    async fn ensure_partition(&self, partition: &str, dir: &Path) -> Result<()> {
        let created = self.fs.create_dir(dir).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                Error::PartitionCorrupt {
                    partition: partition.to_string(),
                    reason: format!("{} exists and is not a directory", dir.display()),
                }
            }
            _ => Error::io(partition, None, "create partition", e),
        })?;
        if created {
            self.dirs.changed(&self.root);
        }
        self.make_durable(&self.root)
            .await
            .map_err(Self::partition_io(partition, "sync data directory"))
    }

    /// Opens the file of a claimed blob; returns (file, len, version, tail).
    async fn open_file(
        &self,
        key: &BlobKey,
        versions: &RangeInclusive<u16>,
    ) -> Result<(F::File, u64, u16, Option<TailBlock>)> {
        let partition = key.partition.as_str();
        let dir = self.root.join(partition);
        self.ensure_partition(partition, &dir).await?;
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
    /// blob file and loads its tail block.
    async fn load(
        &self,
        key: &BlobKey,
        versions: &RangeInclusive<u16>,
        dir: &Path,
        file: F::File,
    ) -> Result<(F::File, u64, u16, Option<TailBlock>)> {
        let partition = key.partition.as_str();
        let blob_io = |op| move |e| Error::io(partition, Some(&key.name), op, e);
        let size = file.size().await.map_err(blob_io("stat"))?;
        let page = if size >= HEADER_LEN {
            Some(
                file.read_at(0, HEADER_LEN as usize)
                    .await
                    .map_err(blob_io("read header"))?,
            )
        } else {
            None
        };
        let decoded = page.as_deref().map(header::decode);
        let version = match decoded {
            // A header and no data: perhaps a create whose data sync failed
            // wrote it. Make it durable before a handle can write data.
            Some(Ok(version)) if size == HEADER_LEN => {
                file.sync_data().await.map_err(blob_io("sync new blob"))?;
                version
            }
            Some(Ok(version)) => version,
            Some(Err(reason)) if size > HEADER_LEN => {
                return Err(Error::BlobCorrupt {
                    partition: partition.to_string(),
                    name: key.name.clone(),
                    reason: reason.to_string(),
                })
            }
            // No header, or a header page that never verified and no data:
            // the trace of a create that did not finish. Start afresh.
            _ => {
                // The entry may be new: sync the directory whatever happens.
                self.dirs.changed(dir);
                let version = *versions.end();
                let mut buf = file.alloc(HEADER_LEN as usize);
                header::encode(version, buf.bytes_mut());
                file.write_at(buf, 0, false)
                    .await
                    .map_err(blob_io("write header"))?;
                file.sync_data().await.map_err(blob_io("sync new blob"))?;
                version
            }
        };
        self.make_durable(dir)
            .await
            .map_err(blob_io("sync partition directory"))?;
        if !versions.contains(&version) {
            return Err(Error::BlobVersionMismatch {
                partition: partition.to_string(),
                name: key.name.clone(),
                expected: versions.clone(),
                found: version,
            });
        }
        let len = size.max(HEADER_LEN) - HEADER_LEN;
        let tail = if len.is_multiple_of(BLOCK_SIZE) {
            None
        } else {
            let index = len / BLOCK_SIZE;
            let start = HEADER_LEN + index * BLOCK_SIZE;
            let used = (len % BLOCK_SIZE) as usize;
            let read = file
                .read_at(start, used)
                .await
                .map_err(blob_io("read tail block"))?;
            let mut bytes = vec![0u8; BLOCK_SIZE as usize];
            let valid = read.len().min(used);
            bytes[..valid].copy_from_slice(&read[..valid]);
            Some(TailBlock {
                index,
                bytes: bytes.into(),
            })
        };
        Ok((file, len, version, tail))
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
        let dir = self.root.join(partition);
        self.dirs.changed(&dir);
        match self.fs.remove_file(&dir.join(file_name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::BlobMissing {
                    partition: partition.to_string(),
                    name: name.to_vec(),
                })
            }
            Err(e) => return Err(Error::io(partition, Some(name), "remove", e)),
        }
        self.registry.forget(&BlobKey {
            partition: partition.to_string(),
            name: name.to_vec(),
        });
        self.sync_dir(&dir)
            .await
            .map_err(|e| Error::io(partition, Some(name), "sync partition directory", e))
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

    async fn remove_partition(&self, partition: &str) -> Result<()> {
        // List (and refuse foreign entries) before deleting anything.
        let names = self.list(partition)?;
        let dir = self.root.join(partition);
        self.dirs.changed(&dir);
        self.dirs.changed(&self.root);
        for name in &names {
            let path = dir.join(crate::name::hex(name));
            self.fs
                .remove_file(&path)
                .map_err(|e| Error::io(partition, Some(name), "remove", e))?;
        }
        self.registry.forget_partition(partition);
        self.fs
            .remove_dir(&dir)
            .map_err(Self::partition_io(partition, "remove partition"))?;
        self.sync_dir(&self.root)
            .await
            .map_err(Self::partition_io(partition, "sync data directory"))
    }
}

impl<F: FileSystem> Storage for ShardStore<F> {
    type Blob = ShardBlob<F>;

    async fn open_versioned(
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
        if !self.registry.claim(&key) {
            return Err(Error::BlobAlreadyOpen {
                partition: key.partition,
                name: key.name,
            });
        }
        let guard = ClaimGuard {
            registry: &self.registry,
            key: &key,
        };
        let (file, len, version, tail) = self.open_file(&key, &versions).await?;
        drop(guard);
        let blob = ShardBlob::new(key.clone(), file, len, tail, Rc::downgrade(&self.registry));
        self.registry
            .opened(&key, Rc::as_ptr(&blob.state) as *const ());
        Ok((blob, len, version))
    }

    async fn remove(&self, partition: &str, name: Option<&[u8]>) -> Result<()> {
        validate_partition(partition)?;
        match name {
            Some(name) => self.remove_blob(partition, name).await,
            None => self.remove_partition(partition).await,
        }
    }

    async fn scan(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        validate_partition(partition)?;
        self.list(partition)
    }
}
