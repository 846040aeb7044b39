//! The logical length: the header page's two length slots (header.rs).
//!
//! Why: with the length in the header, the file can run ahead of it with
//! zero-written blocks (blob/write.rs, `zero_ahead`), so an append + sync
//! overwrites blocks the file already holds and its flush commits no size
//! change through the file system's journal; and a sync of an unaligned
//! blob needs no trim of the padding past the end (ARCHITECTURE.md,
//! "Durable length").
//!
//! Rules:
//! - Every change of the length (a write's commit, a resize) records it in
//!   a slot before anyone sees it, as the file size did in format 1: a
//!   killed process loses no completed write. Not durably, unless the write
//!   is SYNC and the durable length does not reach its bytes.
//! - Every slot write goes to the slot that does not hold the durable
//!   length, so a torn write never damages the length a completed sync
//!   promised; slot writes take turns (`slot_turn`). A flush makes the
//!   slots written before it durable.
//! - An open does not know whether the newest slot it found is durable (a
//!   slot written since the last flush survives a kill): until the first
//!   flush or durable slot write, it counts on no durable length.

use std::io;

use crate::fs::{File, FileSystem, BLOCK_SIZE};
use crate::header::{self, Header, LengthSlot};

use super::{BlobState, Failed};

/// The length of a slot whose write failed: no blob has it.
const LEN_UNKNOWN: u64 = u64::MAX;
/// The highest sequence number an open accepts: room for 2^62 more slot
/// writes, so the count never wraps (a damaged or crafted header is
/// refused instead).
const SEQ_MAX: u64 = 1 << 62;

/// What this blob knows of its header's slots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots {
    /// What each slot holds on the device (after a failed write, its
    /// sequence number with [`LEN_UNKNOWN`]).
    on_device: [Option<LengthSlot>; 2],
    /// Which slot holds the durable length; the other takes the writes.
    durable_at: usize,
    /// Whether the slot at `durable_at` is known durable (not after an
    /// open, until the first flush).
    trusted: bool,
    /// The sequence number of the next slot written.
    next_seq: u64,
    /// Page writes started and not ended.
    pages_in_flight: u32,
    /// The blob version, rewritten with every page.
    blob_version: u16,
}

impl Slots {
    /// The slots of a header read at open. `None` for a header without a
    /// valid slot (format 1), or whose sequence numbers ran out.
    pub(crate) fn opened(header: &Header) -> Option<Slots> {
        let (newest_at, newest) = header.newest()?;
        Some(Slots {
            on_device: header.slots,
            durable_at: newest_at,
            trusted: false,
            next_seq: (newest.seq < SEQ_MAX).then_some(newest.seq + 1)?,
            pages_in_flight: 0,
            blob_version: header.blob_version,
        })
    }

    /// The length the newest slot records: the blob's length at an open.
    pub(crate) fn newest_len(&self) -> u64 {
        let at = self.newest_at();
        self.on_device[at].map_or(0, |slot| slot.len)
    }

    /// Where the newest slot is.
    fn newest_at(&self) -> usize {
        let seq = |at: usize| self.on_device[at].map_or(0, |slot| slot.seq);
        let other = 1 - self.durable_at;
        match seq(other) > seq(self.durable_at) {
            true => other,
            false => self.durable_at,
        }
    }

    /// The length every crash leaves, if known: the durable slot's, when
    /// no slot was written since (a crash may keep any of those).
    fn certain_len(&self) -> Option<u64> {
        let certain = self.trusted && self.newest_at() == self.durable_at;
        let durable = self.on_device[self.durable_at].filter(|_| certain);
        durable.map(|slot| slot.len)
    }

    /// The header recording `len` in the other slot, counted as durable:
    /// for an open, which writes it and flushes before it returns (or
    /// fails, and drops these slots).
    pub(crate) fn record_on_open(&mut self, len: u64) -> Header {
        let (header, target) = self.page_for(len);
        self.on_device = header.slots;
        self.durable_at = target;
        self.trusted = true;
        self.next_seq += 1;
        header
    }

    /// The header page recording `len` in the other slot, and that slot.
    fn page_for(&self, len: u64) -> (Header, usize) {
        let target = 1 - self.durable_at;
        let mut header = Header::new(self.blob_version, len);
        header.slots = self.on_device;
        header.slots[target] = Some(LengthSlot {
            seq: self.next_seq,
            len,
        });
        (header, target)
    }
}

impl<F: FileSystem> BlobState<F> {
    /// Writes the header page recording `len` in the slot that takes the
    /// writes; the device may hold it whether or not this fails, and the
    /// sequence number is spent either way. Runs in the slot turn.
    async fn write_length_page(&self, len: u64, durable: bool) -> io::Result<()> {
        let (header, target) = self.slots.borrow().page_for(len);
        // Spent as the write starts: a flush tells by it that a page went
        // to the device during its data flush.
        {
            let mut slots = self.slots.borrow_mut();
            slots.next_seq += 1;
            slots.pages_in_flight += 1;
        }
        let written = header::write_page(&self.file, &header, durable).await;
        let mut slots = self.slots.borrow_mut();
        slots.pages_in_flight -= 1;
        // A failed write may have landed, or not: counted as newest, with a
        // length no change records, so the next one writes its own.
        let unknown = |slot: LengthSlot| LengthSlot {
            len: LEN_UNKNOWN,
            ..slot
        };
        let landed = header.slots[target];
        slots.on_device[target] = landed.map(|slot| match written {
            Ok(()) => slot,
            Err(_) => unknown(slot),
        });
        written?;
        if durable {
            slots.durable_at = target;
            slots.trusted = true;
        }
        Ok(())
    }

    /// Records the length a change of data ending at `end` is about to
    /// publish, in its slot, before it is published (module docs); with
    /// `durable` (a SYNC write), durably, unless every crash leaves a length
    /// that reaches `end` already. A failure fails the change.
    pub(super) async fn record_length(&self, end: u64, durable: bool) -> io::Result<()> {
        let extends = end > self.len.get();
        if !extends && !durable {
            // Its bytes are inside a length every slot a kill may show
            // holds already (a failed record's too: it was longer).
            return Ok(());
        }
        // Only a write under the RMW lock extends, one at a time: it says
        // what it records until it publishes it, so that the others (a
        // flush, a SYNC write inside) never record less.
        if extends {
            self.recording.set(Some(end));
        }
        // In the turn: one that does not extend records the length of
        // then, never an older one.
        self.record(|len| len.max(end), end, durable).await
    }

    /// The length to record now: the published one, or the one a write in
    /// flight is recording before it publishes it.
    fn length_to_record(&self) -> u64 {
        self.len.get().max(self.recording.get().unwrap_or(0))
    }

    /// Records `new_len`, the length a resize is about to publish, in its
    /// slot (not durably), before it is published.
    pub(super) async fn record_resize(&self, new_len: u64) -> io::Result<()> {
        self.record(|_| new_len, 0, false).await
    }

    /// [`BlobState::record_length`] of the length `new_len` makes of the
    /// length in the slot turn.
    async fn record(
        &self,
        new_len: impl FnOnce(u64) -> u64,
        end: u64,
        durable: bool,
    ) -> io::Result<()> {
        let _turn = self.slot_turn.lock().await;
        let new_len = new_len(self.length_to_record());
        let slots = *self.slots.borrow();
        let recorded = slots.newest_len() == new_len;
        let durable = durable && slots.certain_len().is_none_or(|len| len < end);
        if recorded && !durable {
            return Ok(());
        }
        self.write_length_page(new_len, durable).await
    }

    /// The flush of a sync: the length in its slot if the newest does not
    /// hold it (a failed change left another), then one data flush, which
    /// makes the slots written so far durable.
    pub(super) async fn flush_with_length(&self) -> Result<(), Failed> {
        // Every length was recorded before it was published (or while a
        // write records it): a page is needed only after a failed change
        // left another. So a stream of appends, each recording its own
        // length, never keeps a flush from its turn.
        // A page in flight records it (the write it belongs to races this
        // sync: either side of it is allowed).
        let needs_page = {
            let slots = self.slots.borrow();
            slots.pages_in_flight == 0 && slots.newest_len() != self.length_to_record()
        };
        if needs_page {
            let _turn = self.slot_turn.lock().await;
            let len = self.length_to_record();
            if self.slots.borrow().newest_len() != len {
                let written = self.write_length_page(len, false).await;
                written.map_err(|e| ("write length", e))?;
            }
        }
        let newest = {
            let slots = self.slots.borrow();
            let quiet = slots.pages_in_flight == 0;
            (slots.newest_at(), slots.next_seq, quiet)
        };
        self.file.sync_data().await.map_err(|e| ("sync", e))?;
        // The newest slot then is durable now, and becomes the durable one
        // if no page was in flight or went to the device since (one may be
        // on its way to it, or have replaced it: which one a crash keeps is
        // not known, so the durable slot stays; the flushed length is safe
        // in the newest slot, whole, whichever write it holds).
        let mut slots = self.slots.borrow_mut();
        let (newest_at, next_seq, quiet) = newest;
        if quiet && slots.next_seq == next_seq {
            slots.durable_at = newest_at;
            slots.trusted = true;
        }
        Ok(())
    }

    /// On the close (the blob state's drop): records the length in its slot now
    /// if the newest does not hold it (a failed change left another).
    pub(super) fn write_length_now(&self) -> io::Result<()> {
        let slots = *self.slots.borrow();
        let len = self.len.get();
        if slots.newest_len() == len {
            return Ok(());
        }
        let (header, _) = slots.page_for(len);
        let mut page = [0u8; BLOCK_SIZE as usize];
        header::encode(&header, &mut page);
        self.file.write_block_now(&page, 0)
    }
}
