//! The harness's name operations (open, remove, scan), the peek at the
//! listings after a failed one, and the crash with its checks.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use shardblob_shards::fs::sim::Faults;
use shardblob_shards::fs::{DirEntry, FileSystem};
use shardblob_shards::name::{hex, unhex};
use shardblob_shards::{Blob, Error, Storage};

use super::harness::{check_names, limited, show, Entry, Handle, Harness, Key, Op, Outcome, Part};
use super::log;
use super::model::BlobModel;

impl Harness {
    pub(super) async fn open(&mut self, op: &Op, key: &Key, limit: Option<usize>) -> Outcome {
        let (p, n) = (key.0.as_str(), key.1.as_slice());
        if self.open.contains_key(key) {
            match self.store.open(p, n).await {
                Err(e @ Error::BlobAlreadyOpen { .. }) => check_names(&e, (p, Some(n))),
                Err(e) => panic!("open {} while open: {e}", show(key)),
                Ok(_) => panic!("open {} while open: a second live open", show(key)),
            }
            return Outcome::Refused;
        }
        let (blob, len) = match limited(self.store.open(p, n), limit).await {
            None => {
                self.maybe_created(key);
                return Outcome::Interrupted;
            }
            Some(Err(e)) => {
                self.failed(op, &e, (p, Some(n)));
                let part = self.parts.get(p);
                let entry = part
                    .and_then(|part| part.entries.get(n))
                    .filter(|e| e.listed);
                if let Some(model) = entry.and_then(|e| e.models.last()) {
                    let mut model = model.borrow_mut();
                    if model.len == 0 {
                        // Its sync of the header page may have happened.
                        model.maybe_sync();
                    }
                }
                let pushed = self.maybe_created(key);
                self.peek(p);
                let entries = &mut self.parts.get_mut(p).expect("peeked").entries;
                if pushed && !entries[n].listed {
                    let entry = entries.get_mut(n).expect("entry");
                    entry.models.pop();
                    if entry.models.is_empty() {
                        entries.remove(n);
                    }
                }
                return Outcome::Failed;
            }
            Some(Ok(opened)) => opened,
        };
        assert!(!self.faulted(), "{op:?} swallowed a fault");
        assert_eq!(blob.len(), len, "open {}: handle length", show(key));
        let part = self.parts.entry(p.to_string()).or_default();
        part.listed = true;
        part.must = true;
        let existing = part.entries.get(n).filter(|e| e.listed);
        let model = match existing.and_then(|e| e.models.last()) {
            Some(model) => {
                let mut m = model.borrow_mut();
                if let Err(e) = m.reopened(len) {
                    panic!("reopen {}: {e}", show(key));
                }
                if len == 0 {
                    // The open of an empty blob syncs its header page.
                    m.sync();
                }
                drop(m);
                model.clone()
            }
            None => {
                assert_eq!(len, 0, "a new blob {} is empty", show(key));
                Rc::default()
            }
        };
        let entry = Entry {
            models: vec![model.clone()],
            must: true,
            listed: true,
        };
        part.entries.insert(n.to_vec(), entry);
        let handle = Handle {
            key: key.clone(),
            blob,
            model,
            poisoned: false,
        };
        self.open.insert(key.clone(), handle);
        Outcome::Done
    }

    /// An open that failed or was cut short may have created the file:
    /// a fresh, empty candidate. Returns whether it added one.
    pub(super) fn maybe_created(&mut self, key: &Key) -> bool {
        let part = self.parts.entry(key.0.clone()).or_default();
        match part.entries.get_mut(&key.1) {
            Some(entry) if entry.listed => false,
            Some(entry) => {
                entry.models.push(Rc::default());
                entry.listed = true;
                true
            }
            None => {
                let entry = Entry {
                    models: vec![Rc::default()],
                    must: false,
                    listed: true,
                };
                part.entries.insert(key.1.clone(), entry);
                true
            }
        }
    }

    /// Learns the current listings of the root and of `p` (faults off).
    pub(super) fn peek(&mut self, p: &str) {
        self.fs.set_faults(Faults::default());
        let root = self.fs.list_dir(Path::new("/")).expect("peek at /");
        let listed = root.iter().any(|e| e.name == p);
        let names: BTreeSet<Vec<u8>> = match listed {
            true => {
                let entries = self.fs.list_dir(&Path::new("/").join(p)).expect("peek");
                let name = |e: &DirEntry| e.name.to_str().and_then(unhex);
                entries
                    .iter()
                    .map(|e| name(e).expect("a blob file name"))
                    .collect()
            }
            false => BTreeSet::new(),
        };
        self.fs.set_faults(self.faults);
        let part = self.parts.entry(p.to_string()).or_default();
        part.listed = listed;
        for (name, entry) in &mut part.entries {
            entry.listed = names.contains(name);
        }
        for name in &names {
            let known = part.entries.contains_key(name);
            assert!(
                known,
                "{p}/{} appeared, but no open of it was tried",
                hex(name)
            );
        }
        log(|| format!("peek {p}: listed {listed}, names {names:?}"));
    }

    pub(super) async fn remove(&mut self, op: &Op, key: &Key, limit: Option<usize>) -> Outcome {
        let (p, n) = (key.0.as_str(), key.1.as_slice());
        let part = self.parts.get(p);
        let listed = part
            .and_then(|part| part.entries.get(n))
            .is_some_and(|e| e.listed);
        let result = limited(self.store.remove(p, Some(n)), limit).await;
        let entry = self
            .parts
            .get_mut(p)
            .and_then(|part| part.entries.get_mut(n));
        match result {
            None => {
                if let Some(entry) = entry {
                    entry.must = false;
                }
                Outcome::Interrupted
            }
            Some(Ok(())) => {
                assert!(!self.faulted(), "{op:?} swallowed a fault");
                assert!(listed, "{op:?} returned Ok, but there is no such blob");
                self.parts.get_mut(p).expect("listed").entries.remove(n);
                self.orphan(|k| k == key);
                Outcome::Done
            }
            Some(Err(Error::BlobMissing { .. })) if !self.faulted() => {
                assert!(!listed, "{op:?}: BlobMissing, but the blob is there");
                Outcome::Refused
            }
            Some(Err(e)) => {
                self.failed(op, &e, (p, Some(n)));
                self.peek(p);
                let entry = self
                    .parts
                    .get_mut(p)
                    .and_then(|part| part.entries.get_mut(n));
                if let Some(entry) = entry.filter(|e| !e.listed) {
                    // The file is gone from the listing, not yet durably.
                    entry.must = false;
                    self.orphan(|k| k == key);
                }
                Outcome::Failed
            }
        }
    }

    /// Moves the live handles of the keys `which` selects to the orphans:
    /// the store forgot their opens.
    pub(super) fn orphan(&mut self, which: impl Fn(&Key) -> bool) {
        let keys: Vec<Key> = self.open.keys().filter(|k| which(k)).cloned().collect();
        for key in keys {
            let handle = self.open.remove(&key).expect("listed key");
            self.orphans.push(handle);
        }
    }

    pub(super) async fn remove_partition(
        &mut self,
        op: &Op,
        p: &str,
        limit: Option<usize>,
    ) -> Outcome {
        let listed = self.parts.get(p).is_some_and(|part| part.listed);
        let result = limited(self.store.remove(p, None), limit).await;
        match result {
            None => {
                if let Some(part) = self.parts.get_mut(p) {
                    part.must = false;
                    part.entries.values_mut().for_each(|e| e.must = false);
                }
                Outcome::Interrupted
            }
            Some(Ok(())) => {
                // A fault may hit the best-effort deletion of the partition's
                // files after the removal committed: still a durable `Ok`.
                self.stats.swallowed += u64::from(self.faulted());
                assert!(listed, "{op:?} returned Ok, but there is no such partition");
                self.parts.insert(p.to_string(), Part::default());
                self.orphan(|k| k.0 == p);
                Outcome::Done
            }
            Some(Err(Error::PartitionMissing(_))) if !self.faulted() => {
                assert!(!listed, "{op:?}: PartitionMissing, but it is there");
                Outcome::Refused
            }
            Some(Err(e)) => {
                self.failed(op, &e, (p, None));
                self.peek(p);
                let part = self.parts.get_mut(p).expect("peeked");
                part.must &= part.listed;
                let mut any_listed = false;
                for entry in part.entries.values_mut() {
                    entry.must &= entry.listed;
                    any_listed |= entry.listed;
                }
                if !any_listed {
                    // Every file went: the store forgot the partition's opens.
                    self.orphan(|k| k.0 == p);
                }
                Outcome::Failed
            }
        }
    }

    pub(super) async fn scan(&mut self, op: &Op, p: &str) -> Outcome {
        let part = self.parts.get(p);
        let listed = part.is_some_and(|part| part.listed);
        match self.store.scan(p).await {
            Ok(names) => {
                assert!(!self.faulted(), "{op:?} swallowed a fault");
                assert!(listed, "{op:?} of a missing partition gave {names:?}");
                let entries = part.iter().flat_map(|part| &part.entries);
                let expected: BTreeSet<&Vec<u8>> =
                    entries.filter(|(_, e)| e.listed).map(|(n, _)| n).collect();
                assert_eq!(names.iter().collect::<BTreeSet<_>>(), expected, "{op:?}");
                Outcome::Done
            }
            Err(Error::PartitionMissing(_)) if !self.faulted() => {
                assert!(!listed, "{op:?}: PartitionMissing, but it is there");
                Outcome::Refused
            }
            Err(e) => {
                self.failed(op, &e, (p, None));
                Outcome::Failed
            }
        }
    }

    /// Crashes the disk, starts a new store on what is left, checks every
    /// partition and blob against the model, and keeps a handle on each blob
    /// found. The old handles and store are dropped after the crash: like a
    /// killed process they make no more calls (their trims fail on the dead
    /// view). Faults are off during the checks.
    pub async fn crash(&mut self) {
        let fs = self.fs.crash();
        log(|| "crash".to_string());
        self.stats.crashes += 1;
        self.open.clear();
        self.orphans.clear();
        self.store = self.new_store(fs.clone());
        self.fs = fs;
        self.fs.set_faults(Faults::default());
        let partitions: Vec<String> = self.parts.keys().cloned().collect();
        for p in partitions {
            let part = self.parts.remove(&p).expect("known partition");
            let part = self.check_partition(&p, part).await;
            self.parts.insert(p, part);
        }
        self.fs.set_faults(self.faults);
    }

    async fn check_partition(&mut self, p: &str, mut part: Part) -> Part {
        let scanned = self.store.scan(p).await;
        let present = scanned.is_ok();
        let names = match scanned {
            Ok(names) => names,
            Err(Error::PartitionMissing(_)) => {
                assert!(
                    !part.must,
                    "partition {p} was durably created, but is gone after the crash"
                );
                Vec::new()
            }
            Err(e) => panic!("scan {p} after the crash: {e}"),
        };
        for (name, entry) in &part.entries {
            let kept = names.contains(name);
            assert!(
                kept || !entry.must,
                "{p}/{}: open returned Ok, not removed since, but gone after the crash",
                hex(name)
            );
            if !entry.must {
                match kept {
                    true => self.stats.maybe_names_kept += 1,
                    false => self.stats.maybe_names_dropped += 1,
                }
            }
        }
        let mut found = Part {
            listed: present,
            must: present,
            entries: BTreeMap::new(),
        };
        for name in names {
            let key: Key = (p.to_string(), name.clone());
            let Some(entry) = part.entries.remove(&name) else {
                panic!("{} is there after the crash, but its remove returned Ok (or it was never created)", show(&key));
            };
            // A blob made at another version (the concurrency simulation's
            // versioned opens) reopens at the version it holds.
            let opened = match self.store.open(p, &name).await {
                Err(Error::BlobVersionMismatch { found, .. }) => {
                    let versioned = self.store.open_versioned(p, &name, found..=found);
                    versioned.await.map(|(blob, len, _)| (blob, len))
                }
                opened => opened,
            };
            let (blob, len) = match opened {
                Ok(opened) => opened,
                Err(e) => panic!("{} does not reopen after the crash: {e}", show(&key)),
            };
            let bytes = match blob.read_at(0, len as usize).await {
                Ok(bytes) => bytes.to_vec(),
                Err(e) => panic!("{}: read after the crash: {e}", show(&key)),
            };
            let mut errors = Vec::new();
            for model in &entry.models {
                let model = model.borrow();
                match model.check_crashed(&bytes) {
                    Ok(()) => {
                        self.stats.blobs_padded += u64::from(len > model.len);
                        let same = len == model.len && model.check_read(0, &bytes).is_ok();
                        self.stats.blobs_changed += u64::from(!same);
                        errors.clear();
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
            assert!(
                errors.is_empty(),
                "{} after the crash: {}",
                show(&key),
                errors.join("; or: ")
            );
            self.stats.blobs_checked += 1;
            let model = Rc::new(RefCell::new(BlobModel::observed(&bytes)));
            found.entries.insert(
                name,
                Entry {
                    models: vec![model.clone()],
                    must: true,
                    listed: true,
                },
            );
            self.open.insert(
                key.clone(),
                Handle {
                    key,
                    blob,
                    model,
                    poisoned: false,
                },
            );
        }
        found
    }
}
