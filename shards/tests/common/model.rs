//! What one blob may show: now (to a read) and after a crash.
//!
//! The contract (DESIGN.md, "Crash") at the granularity of the simulated
//! device, the 512-byte sector: every byte covered by a completed sync, or
//! by a completed `WriteOptions::SYNC` write, is intact; every other sector
//! holds its content at the last sync or a content it had since, whole.
//!
//! So each sector keeps two sets of full 512-byte contents (bytes past the
//! end of the file count as zeros):
//! - `now`: what a read may return. One content, unless a failed or
//!   interrupted write left the sector old or new.
//! - `crash`: what a crash may leave: the content at the last sync and every
//!   content since. A sync collapses it to `now`; a SYNC write pins its
//!   bytes in every candidate.
//!
//! Lengths follow the store's documented behaviour (shards/src/blob/mod.rs):
//! the file's data size (`file_lens`) runs ahead of the logical length by the
//! zero padding of a partly written last block, up to the next 4096 boundary
//! past a write's end; `sync`, `resize` and the close of the last handle set
//! it back to the logical length. The durable size (`durable_lens`) is the
//! length at the last sync, grown to the padded end of each SYNC write since
//! (that write makes its whole blocks durable). After a crash the file holds
//! its durable size or any size it had since the last sync (`lens_since_sync`,
//! which holds every `file_lens` the model went through, and the sizes inside
//! an op: the end of each block a write adds, as a split write grows the file
//! piece by piece, and the logical length the store cuts the file to before
//! a resize up or a write that extends the blob; a SYNC write lifts them
//! all to its
//! padded end), as a real disk may keep any of the size updates it had not
//! flushed (shards/src/fs/sim.rs, "A crash"). So the blob reopens with a
//! length in `durable_lens ∪ lens_since_sync`, and with exactly the logical
//! length after a clean close. A failed write may leave any whole-sector
//! prefix of its blocks, so it adds every sector boundary up to its padded
//! end; a failed SYNC write, split into pieces, may have made the size
//! durable at the end of any of its blocks.
//!
//! A failed write leaves each of its sectors old or new (as a crash would)
//! until rewritten, also past the logical end, where no read reaches; new
//! as the store writes it: whole blocks, zeros past the old end around its
//! bytes. After a crash it counts as an unsynced write (shards/src/api.rs):
//! its bytes, and its end as length, may show. What becomes visible past
//! the old end reads as zeros, and nothing else: a resize up zeroes
//! everything past the old end; a write zeroes the gap below its offset
//! (whole blocks it never writes included) and the padding past its end,
//! whatever a failed write left there (the store trims such bytes off
//! first, shards/src/blob/mod.rs). That trim may cut the file to the
//! logical length, zeroing a failed write's bytes past it (in a sector it
//! shares with bytes below it too), before the resize or write fails or a
//! crash cuts it short: such a failed op adds the logical length to the
//! file's sizes, and those zeros to the contents.

use std::collections::BTreeSet;
use std::rc::Rc;

/// The writes (offset, bytes) that may land around an op that exposes the
/// space past the end, when the blob's length is known; `None` when it is
/// not (ops dropped or in flight may have moved it, and writes that failed
/// since may have written inside it): then the old contents stay possible.
pub type Landing<'a> = Option<&'a [(u64, Rc<[u8]>)]>;

/// Atomic unit of the simulated device.
pub const SECTOR: u64 = 512;
/// Direct-I/O block: the store writes whole blocks.
pub const BLOCK: u64 = 4096;

type Sector = [u8; SECTOR as usize];
const ZERO: Sector = [0; SECTOR as usize];

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

fn push_unique(set: &mut Vec<Sector>, content: Sector) {
    if !set.contains(&content) {
        set.push(content);
    }
}

/// How the close of the last handle treated the file's padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// Trimmed to the logical length.
    Done,
    /// The trim may have failed (an injected fault hit it).
    Maybe,
    /// Not trimmed (a poisoned blob leaves its file alone).
    Skipped,
}

/// The model of one blob file (one inode).
#[derive(Clone, Debug)]
pub struct BlobModel {
    /// The logical length the store reports.
    pub len: u64,
    now: Vec<Vec<Sector>>,
    crash: Vec<Vec<Sector>>,
    durable_lens: BTreeSet<u64>,
    file_lens: BTreeSet<u64>,
    /// Every size the file may have had since its last sync: a crash may
    /// leave any of them. Holds `file_lens` at every step.
    lens_since_sync: BTreeSet<u64>,
}

impl Default for BlobModel {
    fn default() -> Self {
        BlobModel::observed(&[])
    }
}

impl BlobModel {
    /// A blob whose whole content is `bytes`, all of it durable (as after a
    /// crash, or a fresh create).
    pub fn observed(bytes: &[u8]) -> BlobModel {
        let sectors: Vec<Vec<Sector>> = bytes
            .chunks(SECTOR as usize)
            .map(|chunk| {
                let mut sector = ZERO;
                sector[..chunk.len()].copy_from_slice(chunk);
                vec![sector]
            })
            .collect();
        let len = bytes.len() as u64;
        BlobModel {
            len,
            now: sectors.clone(),
            crash: sectors,
            durable_lens: BTreeSet::from([len]),
            file_lens: BTreeSet::from([len]),
            lens_since_sync: BTreeSet::from([len]),
        }
    }

    /// The file may also hold any of `lens` now.
    fn may_hold(&mut self, lens: impl IntoIterator<Item = u64>) {
        for len in lens {
            self.file_lens.insert(len);
            self.lens_since_sync.insert(len);
        }
    }

    /// The file holds exactly `len` now.
    fn holds(&mut self, len: u64) {
        self.file_lens = BTreeSet::from([len]);
        self.lens_since_sync.insert(len);
    }

    /// The sizes a write of the blocks `first..padded` gives the file on
    /// its way: its pieces grow it in turn, to the end of any of its blocks
    /// (from any size it may have).
    fn grown_by(&self, first: u64, padded: u64) -> Vec<u64> {
        let ends: Vec<u64> = (first + BLOCK..=padded).step_by(BLOCK as usize).collect();
        let lens = self.file_lens.iter();
        lens.flat_map(|&f| ends.iter().map(move |&e| f.max(e)))
            .collect()
    }

    /// Whether every sector has exactly one content now.
    pub fn is_definite(&self) -> bool {
        self.now.iter().all(|set| set.len() == 1)
    }

    /// The one content of `offset..offset + len` now (zeros past the model).
    /// Panics if a sector is undecided.
    pub fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        (offset..offset + len as u64)
            .map(|at| {
                let set = self.now.get((at / SECTOR) as usize);
                let set = set.map_or(&[ZERO][..], Vec::as_slice);
                assert_eq!(set.len(), 1, "sector {} is undecided", at / SECTOR);
                set[0][(at % SECTOR) as usize]
            })
            .collect()
    }

    fn grow(&mut self, sectors: usize) {
        if self.now.len() < sectors {
            self.now.resize(sectors, vec![ZERO]);
            self.crash.resize(sectors, vec![ZERO]);
        }
    }

    /// Applies `edit` to every `now` content of the sectors of `start..end`;
    /// with `keep_old` the old contents stay possible. New contents become
    /// crash candidates.
    fn edit(&mut self, start: u64, end: u64, keep_old: bool, edit: impl Fn(u64, &mut Sector)) {
        let (first, last) = ((start / SECTOR) as usize, end.div_ceil(SECTOR) as usize);
        self.grow(last);
        for s in first..last {
            let mut set = if keep_old {
                self.now[s].clone()
            } else {
                Vec::new()
            };
            for old in &self.now[s] {
                let mut content = *old;
                edit(s as u64 * SECTOR, &mut content);
                push_unique(&mut set, content);
            }
            for content in &set {
                push_unique(&mut self.crash[s], *content);
            }
            self.now[s] = set;
        }
    }

    /// Overlays `data` at `offset` onto a sector starting at `sector_start`.
    fn overlay(offset: u64, data: &[u8], sector_start: u64, sector: &mut Sector) {
        let end = offset + data.len() as u64;
        let from = offset.max(sector_start);
        let to = end.min(sector_start + SECTOR);
        if from < to {
            let src = &data[(from - offset) as usize..(to - offset) as usize];
            sector[(from - sector_start) as usize..(to - sector_start) as usize]
                .copy_from_slice(src);
        }
    }

    /// Zeroes everything from `len` on, now (a truncation or a trim).
    fn zero_from(&mut self, len: u64, keep_old: bool) {
        let end = (self.now.len() as u64 * SECTOR).max(len);
        self.zero_between(len, end, keep_old);
    }

    /// Zeroes the bytes of `from..to`, now.
    fn zero_between(&mut self, from: u64, to: u64, keep_old: bool) {
        self.edit(from, to, keep_old, |start, sector| {
            let first = from.saturating_sub(start).min(SECTOR) as usize;
            let last = to.saturating_sub(start).min(SECTOR) as usize;
            sector[first..last].fill(0);
        });
    }

    /// Zeroes `from..to` now, except that any of `writes` (offset and
    /// bytes; in flight, dropped or racing, so they may land before or
    /// after) may show over the zeros, each in whole sectors and in any
    /// order: what a resize up or a write past a gap exposes while writes
    /// race it. Nothing else, a failed write's bytes in particular, shows.
    fn zero_under(&mut self, from: u64, to: u64, writes: Landing<'_>) {
        let to = to.min((self.now.len() as u64 * SECTOR).max(from));
        let Some(writes) = writes else {
            self.zero_between(from, to, true);
            return;
        };
        self.zero_between(from, to, false);
        // Each pass lands every write once more over every outcome so far:
        // as many passes as writes reach every order.
        for _ in 0..writes.len() {
            for (offset, data) in writes {
                let end = offset + data.len() as u64;
                let (start, stop) = ((*offset).max(from), end.min(to));
                if start >= stop {
                    continue;
                }
                let part = &data[(start - offset) as usize..(stop - offset) as usize];
                self.edit(start, stop, true, |at, sector| {
                    Self::overlay(start, part, at, sector)
                });
            }
        }
    }

    /// Whether a write at `offset` leaves whole blocks (or the rest of the
    /// tail block) between the logical end and its first block unwritten.
    fn leaves_gap(&self, offset: u64) -> bool {
        offset / BLOCK * BLOCK > self.len
    }

    /// A completed write (durable if `sync`).
    pub fn write(&mut self, offset: u64, data: &[u8], sync: bool) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        let len = self.len;
        if self.leaves_gap(offset) {
            // The gap reads as zeros, whatever a failed write left there:
            // the store may have cut the file to the logical length first.
            self.zero_between(len, offset / BLOCK * BLOCK, false);
            self.may_hold([len]);
        } else if end > len {
            // An extension: the store may have cut a failed write's bytes
            // past `len` first, durably, so a crash that loses this write's
            // blocks may find zeros there.
            self.zero_from(len, true);
            self.may_hold([len]);
        }
        let (first, last) = (offset / BLOCK * BLOCK, round_up(end, BLOCK));
        self.edit(first, last, false, |start, s| {
            Self::written(offset, data, len, start, s)
        });
        let passed = self.grown_by(first, last);
        self.lens_since_sync.extend(passed);
        if sync {
            for s in (offset / SECTOR) as usize..end.div_ceil(SECTOR) as usize {
                let pinned = self.crash[s].iter().map(|old| {
                    let mut content = *old;
                    Self::overlay(offset, data, s as u64 * SECTOR, &mut content);
                    content
                });
                let mut set = Vec::new();
                pinned.for_each(|content| push_unique(&mut set, content));
                self.crash[s] = set;
            }
            // Its bytes are durable: no crash leaves the blob shorter than
            // its end. A length already past it stays possible (format 2:
            // the write records no slot when the durable one reaches its
            // end, shards/src/blob/length.rs); a shorter one grows to the
            // write's padded end (as a file size) or its new length (as a
            // slot, noted below).
            let lift = |lens: &BTreeSet<u64>| {
                let lift = |&l: &u64| if l >= end { l } else { l.max(last) };
                lens.iter().map(lift).collect()
            };
            self.durable_lens = lift(&self.durable_lens);
            self.lens_since_sync = lift(&self.lens_since_sync);
        }
        self.file_lens = self.file_lens.iter().map(|&f| f.max(last)).collect();
        self.len = self.len.max(end);
        self.note_len();
    }

    /// The sector at `start` as a write of `data` at `offset` to a blob
    /// `len` long leaves it: the store writes whole blocks, so past the old
    /// end the bytes of those blocks it does not write are zeros (the gap
    /// below `offset` in its first block and the padding past its end; a
    /// failed write's bytes stay only in blocks it does not touch).
    fn written(offset: u64, data: &[u8], len: u64, start: u64, sector: &mut Sector) {
        let end = offset + data.len() as u64;
        let (first, last) = (offset / BLOCK * BLOCK, round_up(end, BLOCK));
        let new_len = len.max(end);
        Self::overlay(offset, data, start, sector);
        for at in len.max(start)..start + SECTOR {
            let in_gap = (first..offset).contains(&at);
            if in_gap || (new_len..last).contains(&at) {
                sector[(at - start) as usize] = 0;
            }
        }
    }

    /// A write that failed (`torn`) or was cut short by a crash: each of its
    /// sectors is old or new and the length is unchanged. The file may have
    /// grown as the write would grow it, or, when `torn` (a short write), by
    /// any whole-sector prefix of its blocks.
    pub fn maybe_write(&mut self, offset: u64, data: &[u8], sync: bool, torn: bool) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        let len = self.len;
        if end > len {
            // The cut of the file to the logical length before a write that
            // extends the blob may have happened (durably): past `len`, a
            // failed write's bytes may have become zeros, in the sectors
            // inside the blob too.
            self.zero_from(len, true);
            self.may_hold([len]);
        }
        // Each sector old or new: new as the store writes it (zeros past
        // the old end around the data), or with only the data over it (a
        // racing write that prepared its blocks at another length).
        let (first, last) = (offset / BLOCK * BLOCK, round_up(end, BLOCK));
        self.edit(first, last, true, |start, s| {
            Self::written(offset, data, len, start, s)
        });
        self.edit(offset, end, true, |start, s| {
            Self::overlay(offset, data, start, s)
        });
        let padded = round_up(end, BLOCK);
        let grown = self.grown_by(first, padded);
        self.may_hold(grown);
        // The length the write gives if it lands: a slot may record it
        // (a sync's, or the write's own) before a failure gives it back.
        self.may_hold([len.max(end)]);
        let mut at = round_up(self.len, SECTOR);
        while torn && at <= padded {
            self.may_hold([at]);
            at += SECTOR;
        }
        if sync {
            // Split into pieces (`SchedConfig::piece_bytes`, whole blocks
            // from its first), each a durable write that makes the file's
            // size durable up to its end: any block end of the write may be
            // the durable size.
            let ends: Vec<u64> = (first + BLOCK..=padded).step_by(BLOCK as usize).collect();
            let grown: Vec<u64> = (self.durable_lens.iter())
                .flat_map(|&d| ends.iter().map(move |&e| d.max(e)))
                .collect();
            self.durable_lens.extend(grown);
        }
    }

    /// [`BlobModel::maybe_write`] among `writes` (in flight, dropped or
    /// racing): the bytes between the old end and its offset, which it
    /// exposes if it lands (its first block's zeros, a gap's), read as zeros
    /// with any of `writes` over them, and nothing else; unless it lands,
    /// nothing there is readable.
    pub fn maybe_write_among(
        &mut self,
        (offset, data): (u64, &[u8]),
        sync: bool,
        torn: bool,
        writes: Landing<'_>,
    ) {
        let len = self.len;
        self.maybe_write(offset, data, sync, torn);
        if offset > len {
            self.zero_under(len, offset, writes);
        }
    }

    /// A completed write that raced other mutations of its bytes, which
    /// may have landed before or after it: each of its sectors old or new,
    /// and below its offset what [`BlobModel::maybe_write_among`] allows.
    pub fn write_racing(
        &mut self,
        (offset, data): (u64, &[u8]),
        sync: bool,
        torn: bool,
        writes: Landing<'_>,
    ) {
        self.maybe_write_among((offset, data), sync, torn, writes);
        self.len = self.len.max(offset + data.len() as u64);
        self.note_len();
    }

    /// Bytes of a write in flight that may land now, over whatever the
    /// blob holds: each sector of `offset..` old or new. The store writes
    /// whole blocks, so the file may also grow to the write's padded end
    /// (concurrency_sim seed 332303538607: a write inside the tail block
    /// lands after a shrinking resize, and a crash shows the block's end).
    pub fn maybe_land(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        self.edit(offset, end, true, |start, s| {
            Self::overlay(offset, data, start, s)
        });
        let grown = self.grown_by(offset / BLOCK * BLOCK, round_up(end, BLOCK));
        self.may_hold(grown);
        // Its slot may hold its end as the length (format 2 records it
        // before the data lands), from whatever length the blob had then.
        self.may_hold([self.len.max(end), end]);
    }

    /// A completed resize: everything past the shorter of the old and the
    /// new length reads as zeros.
    pub fn resize(&mut self, len: u64) {
        self.zero_from(self.len.min(len), false);
        self.cut_before_growing(len);
        self.len = len;
        self.note_len();
        self.holds(len);
    }

    /// A resize up may cut the file to the logical length first.
    fn cut_before_growing(&mut self, len: u64) {
        if len > self.len {
            self.lens_since_sync.insert(self.len);
        }
    }

    /// A completed resize after `writes` that may or may not have landed
    /// before it (dropped or racing ones: the store finishes them before a
    /// resize takes its lock): up to `longest_before`, the length they may
    /// have given the blob, the bytes past the old end are theirs or zeros;
    /// past it, zeros.
    pub fn resize_after_maybe(&mut self, len: u64, longest_before: u64, writes: Landing<'_>) {
        let from = self.len.min(len);
        let sure = longest_before.max(self.len).min(len);
        self.zero_under(from, sure, writes);
        self.zero_from(sure, false);
        self.cut_before_growing(len);
        self.len = len;
        self.note_len();
        self.holds(len);
    }

    /// A completed resize that raced `writes` (in flight, dropped or
    /// overlapping it in time): each may land before or after it, so past
    /// the shorter of the old and the new length, zeros with any of them
    /// over them, and nothing else.
    pub fn resize_racing(&mut self, len: u64, writes: Landing<'_>) {
        self.zero_under(self.len.min(len), u64::MAX, writes);
        self.may_hold([len]);
        if len > self.len {
            self.may_hold([self.len]);
        }
        self.len = len;
        self.note_len();
    }

    /// [`BlobModel::maybe_resize`] among `writes` (in flight, dropped or
    /// racing): past the old end, a resize up exposes zeros with any of
    /// them over them, and nothing else; unless it happens, nothing there
    /// is readable.
    pub fn maybe_resize_among(&mut self, len: u64, writes: Landing<'_>) {
        let old = self.len;
        self.maybe_resize(len);
        if len > old {
            self.zero_under(old, u64::MAX, writes);
        }
    }

    /// A resize that failed or was cut short; one up may have trimmed the
    /// file to the logical length first.
    pub fn maybe_resize(&mut self, len: u64) {
        self.zero_from(self.len.min(len), true);
        self.may_hold([len]);
        if len > self.len {
            self.may_hold([self.len]);
        }
    }

    /// A completed sync: everything is durable, past the logical end too
    /// (format 2: a sync cuts nothing; a failed write's bytes there stay
    /// until a write that extends the blob or a resize up cuts them).
    pub fn sync(&mut self) {
        self.crash.clone_from(&self.now);
        self.durable_lens = BTreeSet::from([self.len]);
        self.file_lens = BTreeSet::from([self.len]);
        self.lens_since_sync = BTreeSet::from([self.len]);
    }

    /// A sync that failed or was cut short: it may have trimmed, and its
    /// data sync may have happened (which adds nothing a crash could not
    /// already show, except the trimmed length).
    pub fn maybe_sync(&mut self) {
        self.maybe_cut(self.len);
        self.durable_lens.insert(self.len);
    }

    /// The store may have cut the file to `len`, the logical length then
    /// (a trim): past it, zeros.
    pub fn maybe_cut(&mut self, len: u64) {
        self.zero_from(len, true);
        self.may_hold([len]);
    }

    /// The last handle closed.
    pub fn close(&mut self, trim: Trim) {
        match trim {
            Trim::Done => {
                self.zero_from(self.len, false);
                self.holds(self.len);
            }
            Trim::Maybe => {
                // A close that failed may not have recorded the length in
                // its slot either: a reopen may find any length a crash may.
                self.maybe_cut(self.len);
                let lens = self.crash_lens();
                self.file_lens.extend(lens);
            }
            // A poisoned blob's close records its length too (format 2),
            // and leaves the file's size alone (its flush is not modelled:
            // a crash may keep less than it made durable).
            Trim::Skipped => self.may_hold([self.len]),
        }
    }

    /// Checks that `observed`, read at `offset`, is a possible content of
    /// those bytes in `sets`, sector by sector.
    fn check_sectors(sets: &[Vec<Sector>], offset: u64, observed: &[u8]) -> Result<(), String> {
        let end = offset + observed.len() as u64;
        let mut at = offset;
        while at < end {
            let s = at / SECTOR;
            let sector_start = s * SECTOR;
            let to = end.min(sector_start + SECTOR);
            let seen = &observed[(at - offset) as usize..(to - offset) as usize];
            let range = (at - sector_start) as usize..(to - sector_start) as usize;
            let set = sets.get(s as usize).map_or(&[ZERO][..], Vec::as_slice);
            if !set.iter().any(|content| &content[range.clone()] == seen) {
                let first_diff = |c: &Sector| {
                    let i = c[range.clone()].iter().zip(seen).position(|(a, b)| a != b);
                    i.map_or(0, |i| at + i as u64)
                };
                let diffs: Vec<u64> = set.iter().map(first_diff).collect();
                return Err(format!(
                    "bytes {at}..{to} (sector {s}) match none of its {} possible contents \
                     (first differing byte against each: {diffs:?}; seen starts {:02x?})",
                    set.len(),
                    &seen[..seen.len().min(8)]
                ));
            }
            at = to;
        }
        Ok(())
    }

    /// Checks a read of `observed` at `offset`.
    pub fn check_read(&self, offset: u64, observed: &[u8]) -> Result<(), String> {
        Self::check_sectors(&self.now, offset, observed)
    }

    /// Checks a reopen (no crash) that reported `len`, and takes it: the
    /// file now ends there.
    pub fn reopened(&mut self, len: u64) -> Result<(), String> {
        // The close recorded the logical length in the header's slot.
        if len != self.len && !self.file_lens.contains(&len) {
            return Err(format!(
                "reopened with length {len}; the file can only hold {:?} (logical length {})",
                self.file_lens, self.len
            ));
        }
        self.len = len;
        self.note_len();
        self.zero_from(len, false);
        self.holds(len);
        Ok(())
    }

    /// Checks the whole content a blob shows after a crash.
    ///
    /// The length comes from a slot of the header and the file's size is
    /// kept apart (format 2): a crash may keep a slot's length with a file
    /// size from before the writes that reached it, so past any size the
    /// file had since the sync, the rest may read as zeros (the open
    /// extends the file to the length), even inside a sector.
    pub fn check_crashed(&self, observed: &[u8]) -> Result<(), String> {
        let len = observed.len() as u64;
        let lens = self.crash_lens();
        if !lens.contains(&len) {
            return Err(format!(
                "length {len} after the crash; allowed: durable {:?}, since the last sync {:?}",
                self.durable_lens, self.lens_since_sync
            ));
        }
        let whole = Self::check_sectors(&self.crash, 0, observed);
        let cut_short = |&size: &u64| {
            let kept = &observed[..size as usize];
            observed[size as usize..].iter().all(|&b| b == 0)
                && Self::check_sectors(&self.crash, 0, kept).is_ok()
        };
        match whole.is_err() && lens.range(..len).any(cut_short) {
            true => Ok(()),
            false => whole,
        }
    }

    /// A sync or trim that may have run while the blob was `len` long (a
    /// dropped sync going on, or one racing writes): it may have trimmed
    /// there and made that size durable, or, racing a write, made the
    /// file's size durable before its trim.
    pub fn maybe_sync_at(&mut self, len: u64) {
        self.maybe_cut(len);
        self.durable_lens.insert(len);
        self.durable_lens.extend(self.file_lens.clone());
    }

    /// Adds every content `other` may show now to what this model may show
    /// now: a read that overlaps several states of a blob (the concurrency
    /// simulation) may see any of them, sector by sector.
    pub fn absorb_now(&mut self, other: &BlobModel) {
        self.grow(other.now.len());
        for (mine, theirs) in self.now.iter_mut().zip(&other.now) {
            theirs
                .iter()
                .for_each(|content| push_unique(mine, *content));
        }
    }

    /// Adds every state `other` may be in, now and after a crash, to this
    /// model's (the same write applied from several possible lengths).
    pub fn absorb(&mut self, other: &BlobModel) {
        self.absorb_now(other);
        for (mine, theirs) in self.crash.iter_mut().zip(&other.crash) {
            theirs
                .iter()
                .for_each(|content| push_unique(mine, *content));
        }
        self.durable_lens.extend(&other.durable_lens);
        self.file_lens.extend(&other.file_lens);
        self.lens_since_sync.extend(&other.lens_since_sync);
    }

    /// A completed sync while other writes, resizes or syncs of the same
    /// blob ran: sectors those touch (`busy` byte ranges, end exclusive) may
    /// or may not be covered by it, every other sector is durable now; the
    /// size it made durable is any the file had meanwhile (`lens_seen`).
    pub fn sync_racing(&mut self, busy: &[(u64, u64)], lens_seen: &BTreeSet<u64>) {
        for (s, now) in self.now.iter().enumerate() {
            let (start, end) = (s as u64 * SECTOR, (s as u64 + 1) * SECTOR);
            if !busy.iter().any(|&(from, to)| from < end && start < to) {
                self.crash[s].clone_from(now);
            }
        }
        self.durable_lens
            .extend(lens_seen.iter().chain(&self.file_lens));
        self.durable_lens.insert(self.len);
        self.may_hold([self.len]);
    }

    /// Records the logical length as one a crash may leave: format 2 keeps
    /// the length in the header's slots (shards/src/header.rs), which a
    /// sync, a SYNC write or a close writes with the length of that moment.
    pub fn note_len(&mut self) {
        self.lens_since_sync.insert(self.len);
    }

    /// Lengths a crash may leave.
    pub fn crash_lens(&self) -> BTreeSet<u64> {
        self.durable_lens
            .union(&self.lens_since_sync)
            .copied()
            .collect()
    }
}
