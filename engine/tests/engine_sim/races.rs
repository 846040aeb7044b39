//! The names the race sessions share (issue 11 across shards): what each
//! holds, who holds a handle on its current file, and which opens and
//! removes of it are running, for sessions on both shards and on the
//! test's thread at once.
//!
//! A name's entry is exact (the sequential model: `Present` after an `Ok`
//! open, `Absent` after an `Ok` remove) until an open and a remove of it
//! overlap in time: the owning shard orders them, and the test cannot tell
//! in which order (a forwarded call reaches the owner later). From then
//! until the next crash check the name is *loose*: its entry is a `Maybe`
//! whose model holds every content any of its handles left (the union,
//! sector by sector), so a read or a crash may show any of them, or
//! nothing; never bytes that no write or zero fill put there.
//!
//! Never two live handles: an `Ok` open while another session holds a
//! handle on the name's current file fails the test, unless the name is
//! loose (a remove between them may have freed the name). An `Ok` remove
//! with no open overlapping it takes the name from its holder: the
//! holder's later writes go to the unlinked file and never come back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use shardblob::Error;

use super::{BlobModel, Entry, Key};

/// One shared name.
#[derive(Debug)]
struct Slot {
    /// What the name holds while no session holds its current file.
    entry: Entry,
    /// The session (token) holding a handle on the name's current file.
    holder: Option<u64>,
    /// Opens and removes of it running (a cut one counts until the round
    /// ends: its call may still reach the owner).
    opening: u32,
    removing: u32,
    loose: bool,
}

impl Slot {
    /// An open and a remove overlapped: either may have come first.
    fn loosen(&mut self) {
        if !self.loose {
            self.loose = true;
            self.entry = std::mem::replace(&mut self.entry, Entry::Absent).maybe_removed();
        }
    }

    /// Adds what a handle left to the contents a loose name may show.
    fn absorb(&mut self, model: &BlobModel) {
        let entry = std::mem::replace(&mut self.entry, Entry::Absent);
        self.entry = match entry {
            Entry::Absent => Entry::Maybe(model.clone()),
            Entry::Present(mut union) | Entry::Maybe(mut union) => {
                union.absorb(model);
                Entry::Maybe(union)
            }
        };
    }
}

/// How a remove ended.
#[derive(Clone, Copy, Debug)]
pub(super) enum Removed {
    /// `Ok`, or a blob's `BlobMissing` (durable as well).
    Gone,
    /// A partition's `PartitionMissing`: nothing changed.
    Missing,
    /// It failed: any of its names may be gone.
    Failed,
    /// Its future was dropped: it may still run at the owner.
    Cut,
}

/// The shared names of one round, and counts of what the races did.
#[derive(Clone, Default)]
pub(super) struct Race {
    slots: Arc<Mutex<BTreeMap<Key, Slot>>>,
    tokens: Arc<AtomicU64>,
    /// Opens refused with `BlobAlreadyOpen`.
    pub(super) refused: Arc<AtomicU64>,
    /// Names that became loose.
    pub(super) loosened: Arc<AtomicU64>,
}

impl std::fmt::Debug for Race {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Race")
    }
}

impl Race {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Key, Slot>) -> T) -> T {
        f(&mut self.slots.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn slot<'a>(slots: &'a mut BTreeMap<Key, Slot>, key: &Key) -> &'a mut Slot {
        slots.get_mut(key).expect("a shared name")
    }

    /// Starts a round on these names.
    pub(super) fn start(&self, entries: &BTreeMap<Key, Entry>) {
        self.with(|slots| {
            *slots = entries
                .iter()
                .map(|(key, entry)| {
                    let slot = Slot {
                        entry: entry.clone(),
                        holder: None,
                        opening: 0,
                        removing: 0,
                        loose: false,
                    };
                    (key.clone(), slot)
                })
                .collect();
        });
    }

    /// Ends the round: what each name holds.
    pub(super) fn end(&self) -> BTreeMap<Key, Entry> {
        let slots = self.with(std::mem::take);
        let loose = slots.values().filter(|s| s.loose).count();
        self.loosened.fetch_add(loose as u64, Ordering::SeqCst);
        slots.into_iter().map(|(key, s)| (key, s.entry)).collect()
    }

    /// An open of `key` starts; returns its session's token.
    pub(super) fn open_start(&self, key: &Key) -> u64 {
        self.with(|slots| {
            let slot = Self::slot(slots, key);
            slot.opening += 1;
            if slot.removing > 0 {
                slot.loosen();
            }
        });
        self.tokens.fetch_add(1, Ordering::SeqCst)
    }

    /// The open of session `token` ended (`None`: cut); returns the entry
    /// its blob opened from.
    pub(super) fn open_end(
        &self,
        key: &Key,
        token: u64,
        result: Option<Result<(), &Error>>,
    ) -> Entry {
        if matches!(result, Some(Err(Error::BlobAlreadyOpen { .. }))) {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        self.with(|slots| {
            let slot = Self::slot(slots, key);
            match result {
                Some(Ok(())) => {
                    slot.opening -= 1;
                    assert!(
                        slot.holder.is_none() || slot.loose,
                        "open {key:02x?} returned Ok while session {:?} holds a handle on it \
                         and no remove of it overlapped since: two live handles on one blob",
                        slot.holder
                    );
                    slot.holder = Some(token);
                }
                Some(Err(Error::BlobAlreadyOpen { .. })) => slot.opening -= 1,
                Some(Err(_)) => {
                    slot.opening -= 1;
                    slot.entry = slot.entry.clone().maybe_opened();
                }
                None => slot.entry = slot.entry.clone().maybe_opened(),
            }
            slot.entry.clone()
        })
    }

    /// Session `token` is about to drop its handle, whose blob now holds
    /// `model`: the name holds it, unless a remove took the name.
    pub(super) fn put_back(&self, key: &Key, token: u64, model: &BlobModel) {
        self.with(|slots| {
            let slot = Self::slot(slots, key);
            let current = slot.holder == Some(token);
            if current {
                slot.holder = None;
            }
            match (slot.loose, current) {
                (true, _) => slot.absorb(model),
                (false, true) => slot.entry = Entry::Present(model.clone()),
                // Its file was unlinked by an acknowledged remove.
                (false, false) => {}
            }
        });
    }

    /// A remove of `keys` starts.
    pub(super) fn remove_start(&self, keys: &[Key]) {
        self.with(|slots| {
            for key in keys {
                let slot = Self::slot(slots, key);
                slot.removing += 1;
                if slot.opening > 0 {
                    slot.loosen();
                }
            }
        });
    }

    /// A remove of `keys` ended. Returns whether the names were surely
    /// there (opened `Ok`, not removed since, no other remove running), for
    /// the caller to refuse a `Missing` answer no fault explains.
    pub(super) fn remove_end(&self, keys: &[Key], removed: Removed) -> bool {
        self.with(|slots| {
            let mut there = false;
            for key in keys {
                let slot = Self::slot(slots, key);
                // Another remove running may have taken it first.
                there |= !slot.loose
                    && slot.removing == 1
                    && (slot.holder.is_some() || matches!(slot.entry, Entry::Present(_)));
                if !matches!(removed, Removed::Cut) {
                    slot.removing -= 1;
                }
                match (removed, slot.loose) {
                    (Removed::Gone, false) => {
                        slot.entry = Entry::Absent;
                        slot.holder = None;
                    }
                    (Removed::Gone | Removed::Missing, true) | (Removed::Missing, false) => {}
                    (Removed::Failed | Removed::Cut, _) => {
                        // It may have unlinked the holder's file and freed
                        // the name.
                        if slot.holder.take().is_some() {
                            slot.loosen();
                        }
                        slot.entry = slot.entry.clone().maybe_removed();
                    }
                }
            }
            there
        })
    }
}
