//! The concurrency simulation's name operations: open (plain and
//! versioned), remove of a blob or a partition, scan. Each tells the names'
//! model what may change when it starts and what did when it ends, and
//! peeks at the listing afterwards (faults off), as a caller could by
//! scanning, so the crash check knows which names may be there.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::rc::Rc;

use shardblob_shards::fs::sim::SimFs;
use shardblob_shards::{Error, ShardBlob, Storage};

use super::concurrent::Sim;
use super::concurrent_ops::End;
use super::harness::{check_names, limited, show, Entry, Handle, Key, Model};
use super::Rng;

/// A name of the harness's random workload.
pub(super) fn random_key(rng: &mut Rng) -> Key {
    use super::random::{NAMES, PARTITIONS};
    let p = PARTITIONS[rng.below(PARTITIONS.len() as u64) as usize];
    let n = NAMES[rng.below(NAMES.len() as u64) as usize];
    (p.to_string(), n.to_vec())
}

/// A version range: mostly `open`'s `0..=0`; else one that contains 0, or
/// does not (a mismatch for an existing blob), each also making new blobs
/// at another version.
pub(super) fn random_versions(rng: &mut Rng) -> RangeInclusive<u16> {
    match rng.below(9) {
        0 => 0..=2,
        1 => 1..=2,
        2 => 3..=3,
        _ => 0..=0,
    }
}

impl Sim {
    /// Opens `key` with `versions`, checking the one-live-open rule.
    pub(super) async fn open(
        &self,
        key: &Key,
        versions: RangeInclusive<u16>,
        limit: Option<usize>,
    ) -> End {
        let (p, n) = (key.0.as_str(), key.1.as_slice());
        let (pushed, candidates) = {
            let mut h = self.h.borrow_mut();
            let pushed = h.maybe_created(key);
            let entry = &h.parts[p].entries[n];
            (pushed, entry.models.clone())
        };
        let (start, removing) = (self.tick(), self.removing(key));
        self.names
            .borrow_mut()
            .entry(key.clone())
            .or_default()
            .opening += 1;
        let faults = self.faults_now();
        let store = self.store();
        let result = limited(store.open_versioned(p, n, versions.clone()), limit).await;
        let mut names = self.names.borrow_mut();
        let name = names.get_mut(key).expect("opening");
        name.opening -= 1;
        let (dropped_open, known) = (name.dropped_open, name.version);
        name.dropped_open |= result.is_none();
        drop(names);
        let overlapped = removing > 0 || self.last_remove(key) > start;
        let end = match result {
            None => End::Dropped,
            Some(Ok((blob, len, version))) => {
                let opened = Opened {
                    blob,
                    len,
                    version,
                    candidates,
                    new: pushed,
                    overlapped,
                    version_known: known.filter(|_| !dropped_open && !overlapped),
                };
                self.opened(key, &versions, opened);
                End::Done
            }
            Some(Err(e)) => self.open_refused(key, &versions, known, e, faults),
        };
        self.h.borrow_mut().peek(p);
        end
    }

    fn open_refused(
        &self,
        key: &Key,
        versions: &RangeInclusive<u16>,
        known: Option<u16>,
        e: Error,
        faults: u64,
    ) -> End {
        check_names(&e, (&key.0, Some(&key.1)));
        match e {
            Error::BlobAlreadyOpen { .. } => {
                assert!(
                    self.may_be_open(key),
                    "open {}: BlobAlreadyOpen, but nothing holds it (a dropped call left it open?)",
                    show(key)
                );
                self.stats.borrow_mut().opens_refused += 1;
                End::Refused
            }
            Error::BlobVersionMismatch { found, .. } => {
                assert!(!versions.contains(&found), "{found} is in {versions:?}");
                assert!(
                    known.is_none_or(|v| v == found),
                    "version {found}, not {known:?}"
                );
                End::Refused
            }
            e => {
                assert!(
                    self.fault_error(&e, faults),
                    "open {}: unexpected error: {e}",
                    show(key)
                );
                self.stats.borrow_mut().failed += 1;
                End::Failed
            }
        }
    }
}

/// What a successful open returned, and what the model knew at its start.
struct Opened {
    blob: ShardBlob<SimFs>,
    len: u64,
    version: u16,
    /// The files the name may have held when the open started, the listed
    /// one last (a fresh one for a new blob).
    candidates: Vec<Model>,
    /// The name was not listed when the open started: a new blob.
    new: bool,
    /// A remove of the name ran during the open.
    overlapped: bool,
    version_known: Option<u16>,
}

impl Sim {
    fn opened(&self, key: &Key, versions: &RangeInclusive<u16>, o: Opened) {
        self.check_one_live_open(key);
        assert_eq!(o.blob.len(), o.len, "open {}: handle length", show(key));
        let model = match (o.new, o.overlapped, o.len) {
            (true, _, 0) => o.candidates.last().expect("a fresh model").clone(),
            (true, false, _) => panic!("a new blob {} has length {}", show(key), o.len),
            // A remove ran meanwhile: the open may have made a new file.
            (false, true, 0) => Model::default(),
            // A name a remove had unlisted: the file an earlier open made,
            // if the remove failed or had not reached it (the open waited
            // for that open's handle to close). The name's files as they
            // are now: a remove that succeeded left only a new, empty one.
            (true, true, _) => {
                let now = self.h.borrow().parts[&key.0].entries[&key.1].models.clone();
                self.reopened(key, &now, o.len)
            }
            _ => self.reopened(key, &o.candidates, o.len),
        };
        if let Some(v) = o.version_known.filter(|_| !o.new) {
            assert_eq!(o.version, v, "open {}: version", show(key));
        }
        // A new blob takes the range's last version, unless a dropped open
        // may have made the file, or a remove that ran meanwhile failed and
        // left the earlier file (whose version the model may not know).
        let made_elsewhere = self.names.borrow()[key].dropped_open || o.overlapped;
        if o.new && !made_elsewhere {
            assert_eq!(
                o.version,
                *versions.end(),
                "new blob {}: version",
                show(key)
            );
        }
        assert!(
            versions.contains(&o.version),
            "open {}: version {} outside {versions:?}",
            show(key),
            o.version
        );
        self.install(key, model, o.blob, o.overlapped);
        let now = self.tick();
        let mut names = self.names.borrow_mut();
        let name = names.get_mut(key).expect("opened");
        name.version = (!o.overlapped).then_some(o.version);
        name.live_since = Some(now);
    }

    /// The file an open of an existing blob found: the latest of the name's
    /// candidates whose possible lengths include the reported `len`.
    fn reopened(&self, key: &Key, candidates: &[Model], len: u64) -> Model {
        let mut errors = Vec::new();
        for model in candidates.iter().rev() {
            self.reopening(model);
            let mut reopened = model.borrow().clone();
            match reopened.reopened(len) {
                Ok(()) => {
                    if len == 0 {
                        reopened.sync();
                    }
                    *model.borrow_mut() = reopened;
                    return model.clone();
                }
                Err(e) => errors.push(e),
            }
        }
        panic!("reopen {}: {}", show(key), errors.join("; or: "));
    }

    /// Makes `model` the listed file of `key` and its handle the live one;
    /// an earlier live handle (a remove of it started since) is an orphan.
    fn install(&self, key: &Key, model: Model, blob: ShardBlob<SimFs>, overlapped: bool) {
        let mut h = self.h.borrow_mut();
        let part = h.parts.entry(key.0.clone()).or_default();
        part.listed = true;
        part.must |= !overlapped;
        let entry = part.entries.entry(key.1.clone()).or_insert_with(|| Entry {
            models: Vec::new(),
            must: false,
            listed: true,
        });
        entry.models.retain(|m| !Rc::ptr_eq(m, &model));
        entry.models.push(model.clone());
        entry.must = !overlapped;
        entry.listed = true;
        if let Some(earlier) = h.open.remove(key) {
            h.orphans.push(earlier);
        }
        let handle = Handle {
            key: key.clone(),
            blob,
            model,
            poisoned: false,
        };
        h.open.insert(key.clone(), handle);
    }
}

impl Sim {
    /// No crash may be trusted to keep `p`'s name `n` (every name, for `None`).
    fn unmust(&self, p: &str, n: Option<&[u8]>) {
        let mut h = self.h.borrow_mut();
        let Some(part) = h.parts.get_mut(p) else {
            return;
        };
        match n {
            Some(n) => {
                if let Some(entry) = part.entries.get_mut(n) {
                    entry.must = false;
                }
            }
            None => {
                part.must = false;
                part.entries.values_mut().for_each(|e| e.must = false);
            }
        }
    }

    /// A remove of `key` that started at `start` returned `Ok` (and the
    /// listing was peeked at since): the handle opened before it is an
    /// orphan, as is one whose open ended during the remove if the name is
    /// not listed now (the remove waited for that open and took its file);
    /// the name is gone unless an open that ran meanwhile (or a dropped
    /// one) may have made it again.
    /// A remove that failed may have unlinked the name (not durably): if
    /// the name is gone from the listing, it did, and `durable` is false.
    fn removed(&self, key: &Key, start: u64, durable: bool) {
        let mut names = self.names.borrow_mut();
        let name = names.entry(key.clone()).or_default();
        let mut h = self.h.borrow_mut();
        let part = h.parts.get(&key.0).filter(|part| part.listed);
        let listed = part
            .and_then(|part| part.entries.get(&key.1))
            .is_some_and(|e| e.listed);
        let opened_after = listed && name.live_since.is_some_and(|since| since > start);
        let creating = name.opening > 0 || name.dropped_open;
        let may_exist = !durable || creating || opened_after;
        if !durable && listed {
            if creating {
                // An open may have made a new file under the name since
                // the remove unlinked the old one.
                if let Some(entry) = h
                    .parts
                    .get_mut(&key.0)
                    .and_then(|p| p.entries.get_mut(&key.1))
                {
                    entry.must = false;
                    entry.models.push(Model::default());
                }
            }
            return;
        }
        if !opened_after {
            name.live_since = None;
            if let Some(handle) = h.open.remove(key) {
                h.orphans.push(handle);
            }
        }
        let Some(part) = h.parts.get_mut(&key.0) else {
            return;
        };
        match (may_exist, part.entries.get_mut(&key.1)) {
            (true, Some(entry)) => {
                entry.must = false;
                if durable {
                    // The old file is gone for good; an open in flight (or
                    // dropped) may make a new, empty one.
                    entry.models = vec![Model::default()];
                } else if creating {
                    // Not durably gone: the old file, or a new one.
                    entry.models.push(Model::default());
                }
            }
            (true, None) => {}
            (false, _) => drop(part.entries.remove(&key.1)),
        }
    }

    /// Accepts a name op's error only if an injected fault explains it.
    fn name_failed(&self, what: &str, p: &str, n: Option<&[u8]>, e: &Error, faults: u64) -> End {
        assert!(
            self.fault_error(e, faults),
            "{what} {p}: unexpected error: {e}"
        );
        check_names(e, (p, n));
        self.stats.borrow_mut().failed += 1;
        End::Failed
    }

    pub(super) async fn remove(&self, key: &Key, limit: Option<usize>) -> End {
        let (p, n) = (key.0.as_str(), key.1.as_slice());
        let start = self.tick();
        {
            let mut names = self.names.borrow_mut();
            let name = names.entry(key.clone()).or_default();
            name.removing += 1;
            name.last_remove = start;
        }
        self.unmust(p, Some(n));
        let faults = self.faults_now();
        let store = self.store();
        let result = limited(store.remove(p, Some(n)), limit).await;
        self.names
            .borrow_mut()
            .get_mut(key)
            .expect("removing")
            .removing -= 1;
        // A dropped or failed remove may have unlinked the name (not durably).
        self.h.borrow_mut().peek(p);
        self.removed(key, start, matches!(result, Some(Ok(()))));
        match result {
            None => End::Dropped,
            Some(Ok(())) => End::Done,
            Some(Err(Error::BlobMissing { .. })) => End::Refused,
            Some(Err(e)) => self.name_failed("remove", p, Some(n), &e, faults),
        }
    }

    pub(super) async fn remove_partition(&self, p: &str, limit: Option<usize>) -> End {
        let start = self.tick();
        {
            let mut parts = self.part_removes.borrow_mut();
            let part = parts.entry(p.to_string()).or_default();
            part.0 += 1;
            part.1 = start;
        }
        self.unmust(p, None);
        let faults = self.faults_now();
        let store = self.store();
        let result = limited(store.remove(p, None), limit).await;
        self.part_removes
            .borrow_mut()
            .get_mut(p)
            .expect("removing")
            .0 -= 1;
        self.partition_removed(p, start, matches!(result, Some(Ok(()))));
        match result {
            None => End::Dropped,
            Some(Ok(())) => End::Done,
            Some(Err(Error::PartitionMissing(_))) => End::Refused,
            Some(Err(e)) => self.name_failed("remove partition", p, None, &e, faults),
        }
    }

    /// A remove of partition `p` that started at `start` ended (`durable`
    /// if it returned `Ok`; a dropped or failed one may have unlinked some
    /// names, not durably): each name it unlinked is removed.
    fn partition_removed(&self, p: &str, start: u64, durable: bool) {
        self.h.borrow_mut().peek(p);
        let h = self.h.borrow();
        let known = h
            .parts
            .get(p)
            .into_iter()
            .flat_map(|part| part.entries.keys());
        let open = h.open.keys().filter(|k| k.0 == p).map(|k| &k.1);
        let names: Vec<Vec<u8>> = known.chain(open).cloned().collect();
        drop(h);
        for n in names {
            self.removed(&(p.to_string(), n), start, durable);
        }
    }

    /// A scan lists the partition as it is: it makes no await.
    pub(super) async fn scan(&self, p: &str) -> End {
        let faults = self.faults_now();
        let result = self.store().scan(p).await;
        let mut h = self.h.borrow_mut();
        h.peek(p);
        let part = h.parts.get(p).filter(|part| part.listed);
        let listed = part.iter().flat_map(|part| &part.entries);
        let expected: BTreeSet<&Vec<u8>> =
            listed.filter(|(_, e)| e.listed).map(|(n, _)| n).collect();
        match result {
            Ok(names) => {
                assert!(
                    part.is_some(),
                    "scan {p} listed {names:?}, but it is missing"
                );
                assert_eq!(names.iter().collect::<BTreeSet<_>>(), expected, "scan {p}");
                End::Done
            }
            Err(Error::PartitionMissing(_)) => {
                assert!(
                    part.is_none(),
                    "scan {p}: PartitionMissing, but it is there"
                );
                End::Refused
            }
            Err(e) => {
                drop(h);
                self.name_failed("scan", p, None, &e, faults)
            }
        }
    }
}
