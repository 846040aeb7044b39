//! The concurrency simulation's operations: each runs one store or blob
//! call as one task's op, tells the model its possible effect when it
//! starts and its certain effect when it ends, and checks the result.
//! `limit` drops the call's future after that many pending polls.

use std::collections::BTreeSet;
use std::rc::Rc;

use futures_lite::StreamExt;
use shardblob_shards::{Blob, Error, WriteOptions};

use super::concurrent::{Pending, Picked, Reader, Sim, Waiter, OVERTAKES_MAX};
use super::concurrent_names::{random_key, random_versions};
use super::harness::{cut_flush_failed, limited, show, write_in, Op, Target};
use super::log;
use super::model::BlobModel;

/// How an op ended, for the trace.
#[derive(Debug)]
pub enum End {
    Done,
    Refused,
    Failed,
    Dropped,
    Skipped,
}

impl Sim {
    /// Runs one op of task `task`; drops its future after `limit` pending
    /// polls.
    pub async fn run_op(&self, task: usize, op: &Op, limit: Option<usize>) {
        let id = self.clock.get();
        log(|| format!("t{task} @{id} {op:?} drop after {limit:?}"));
        let end = match op {
            // One open in three is versioned.
            Op::Open(key) => {
                let versions = random_versions(&mut self.rng.borrow_mut());
                self.open(key, versions, limit).await
            }
            // The harness's restart (of the whole store) stands for one
            // more open here: the tasks share the store.
            Op::Restart => {
                let key = random_key(&mut self.rng.borrow_mut());
                self.open(&key, 0..=0, limit).await
            }
            Op::Remove(key) => self.remove(key, limit).await,
            Op::RemovePartition(p) => self.remove_partition(p, limit).await,
            Op::Scan(p) => self.scan(p).await,
            Op::Close(target) => {
                self.close(target);
                End::Done
            }
            Op::Write {
                target,
                offset,
                data,
                sync,
                pieces,
            } => {
                self.write(target, *offset, &data.0, *sync, *pieces, limit)
                    .await
            }
            Op::Read {
                target,
                offset,
                len,
            } => self.read(target, *offset, *len, limit).await,
            Op::ReadMany { target, ranges } => self.read_many(target, ranges, limit).await,
            Op::Resize { target, len } => self.resize(target, *len, limit).await,
            Op::Sync { target, start } => self.sync(target, *start, limit).await,
        };
        log(|| format!("t{task} @{id} -> {end:?}"));
        let mut stats = self.stats.borrow_mut();
        stats.ops += 1;
        stats.dropped += u64::from(matches!(end, End::Dropped));
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        target: &Target,
        offset: u64,
        data: &[u8],
        sync: bool,
        pieces: usize,
        limit: Option<usize>,
    ) -> End {
        let Some(p) = self.pick(target) else {
            return End::Skipped;
        };
        let (id, faults) = (self.tick(), self.faults_now());
        let bytes = (offset, offset + data.len() as u64);
        let shared: Rc<[u8]> = Rc::from(data);
        self.start_span(p.inode, id, bytes, Some(shared.clone()));
        self.may_change_len(&p, id, Pending::Write(offset, shared));
        let torn = self.faults_on;
        let writes = self.writes_may_land(&p, id);
        self.edit(p.inode, &p.model, |m| {
            m.maybe_write_among((offset, data), sync, torn, writes.as_deref())
        });
        // A failed SYNC write poisons, and so does a failed flush of the cut
        // before a write that extends the blob (CUT_FLUSH_OP).
        let extends = self.may_extend(&p, id, bytes.1);
        self.mark_poison(&p, self.faults_on && (sync || extends));
        let options = [WriteOptions::NONE, WriteOptions::SYNC][usize::from(sync)];
        let write = write_in(&p.blob, offset, data, options, pieces);
        let result = limited(write, limit).await;
        let end = match result {
            None => End::Dropped,
            Some(Ok(())) => {
                let racing = self.racing(p.inode, id, bytes);
                self.stats.borrow_mut().racing_ends += u64::from(racing);
                // Lengths the blob may have had when it committed: writes
                // dropped before it landed first or never; writes still in
                // flight or dropped since may have committed first too.
                let settled = self.settle_dropped(&p, id);
                let lens: BTreeSet<u64> = settled
                    .iter()
                    .flat_map(|&len| self.possible_lens_but(p.inode, len, Some(id)))
                    .collect();
                let engine_len = p.blob.len();
                let writes = self.writes_may_land(&p, id);
                // It has landed: it lands after nothing that follows.
                self.end_span(p.inode, id);
                self.edit(p.inode, &p.model, |m| {
                    let completed = |m: &mut BlobModel| match racing {
                        true => m.write_racing((offset, data), sync, torn, writes.as_deref()),
                        false => m.write(offset, data, sync),
                    };
                    from_each_len(m, &lens, engine_len, completed)
                });
                self.overtake(p.inode, id);
                End::Done
            }
            Some(Err(e)) => {
                self.write_failed(&p, &e, sync, faults);
                End::Failed
            }
        };
        self.len_changed(&p, id, matches!(end, End::Dropped));
        if !matches!(end, End::Done) {
            self.end_span(p.inode, id);
        }
        self.release(p);
        end
    }

    /// Whether the write `id` of `p`, ending at `end`, may extend the blob:
    /// it ends past a length the blob may have (a resize that starts later
    /// marks the blob itself).
    fn may_extend(&self, p: &Picked, id: u64, end: u64) -> bool {
        let model_len = p.model.borrow().len;
        let lens = self.possible_lens_but(p.inode, model_len, Some(id));
        lens.first().is_some_and(|&min| end > min)
    }

    /// A write of `p` failed with `e`: a fault explains it, and it poisons
    /// the blob if it was a SYNC write or its cut's flush failed (which
    /// only a write the harness saw might extend may do).
    fn write_failed(&self, p: &Picked, e: &Error, sync: bool, faults: u64) {
        self.expect_failure("write", p, e, faults);
        let cut = cut_flush_failed(e);
        let marked = self.inodes.borrow()[&p.inode].may_poison;
        assert!(!cut || marked, "a write that could not extend cut: {e}");
        self.mark_poison(p, sync || cut);
    }

    /// A write that started at `id` completed: it overtook every resize or
    /// sync of its blob in flight that started before it.
    fn overtake(&self, inode: usize, id: u64) {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&inode).expect("inode of a write");
        for waiter in state.waiters.values_mut() {
            waiter.overtaken += u32::from(waiter.start < id);
        }
    }

    /// A sync, write or resize of `p` that poisons when it fails failed,
    /// or (with faults injected) may fail: the blob may be poisoned from
    /// now on, even before its future reports it.
    fn mark_poison(&self, p: &Picked, poisons: bool) {
        if poisons {
            let mut inodes = self.inodes.borrow_mut();
            inodes.get_mut(&p.inode).expect("picked").may_poison = true;
        }
    }

    /// Starts watching a resize or sync of `p` that started at `id`.
    fn wait(&self, p: &Picked, id: u64, trims: bool) {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        let lens = [p.model.borrow().len].into();
        let waiter = Waiter {
            start: id,
            overtaken: 0,
            lens,
            trims,
        };
        state.waiters.insert(id, waiter);
    }

    /// Ends watching; checks that it made progress under writes.
    fn waited(&self, p: &Picked, id: u64, what: &str, completed: bool) -> Waiter {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        let waiter = state.waiters.remove(&id).expect("a waiter");
        let mut stats = self.stats.borrow_mut();
        stats.overtakes_max = stats.overtakes_max.max(waiter.overtaken);
        assert!(
            !completed || waiter.overtaken <= OVERTAKES_MAX,
            "{what} of {} was overtaken by {} writes that started after it (at most \
             {OVERTAKES_MAX}): writes starve it",
            show(&p.key),
            waiter.overtaken
        );
        waiter
    }

    async fn resize(&self, target: &Target, len: u64, limit: Option<usize>) -> End {
        let Some(p) = self.pick(target) else {
            return End::Skipped;
        };
        let (id, faults) = (self.tick(), self.faults_now());
        let old_len = p.model.borrow().len;
        let bytes = (len.min(old_len), u64::MAX);
        self.start_span(p.inode, id, bytes, None);
        self.may_change_len(&p, id, Pending::Resize(len));
        let writes = self.writes_may_land(&p, id);
        self.edit(p.inode, &p.model, |m| {
            m.maybe_resize_among(len, writes.as_deref())
        });
        self.wait(&p, id, false);
        // A resize up flushes the cut before it, and a failure poisons; a
        // resize down may make a write in flight extend the blob, which
        // cuts first too.
        self.mark_poison(&p, self.faults_on);
        let result = limited(p.blob.resize(len), limit).await;
        self.waited(&p, id, "resize", matches!(result, Some(Ok(()))));
        let end = match result {
            None => End::Dropped,
            Some(Ok(())) => {
                let racing = self.racing(p.inode, id, bytes);
                self.stats.borrow_mut().racing_ends += u64::from(racing);
                let writes = self.writes_may_land(&p, id);
                let dropped_lens = self.settle_dropped(&p, id);
                let longest_before = dropped_lens.last().copied().unwrap_or(0);
                self.edit(p.inode, &p.model, |m| match racing {
                    true => m.resize_racing(len, writes.as_deref()),
                    false => m.resize_after_maybe(len, longest_before, writes.as_deref()),
                });
                End::Done
            }
            Some(Err(e)) => {
                self.expect_failure("resize", &p, &e, faults);
                End::Failed
            }
        };
        self.len_changed(&p, id, matches!(end, End::Dropped));
        self.end_span(p.inode, id);
        self.release(p);
        end
    }

    async fn sync(&self, target: &Target, start: bool, limit: Option<usize>) -> End {
        let Some(p) = self.pick(target) else {
            return End::Skipped;
        };
        let (id, faults) = (self.tick(), self.faults_now());
        let bytes = (p.model.borrow().len, u64::MAX);
        self.start_span(p.inode, id, bytes, None);
        // Waiting first: the edit then lets the sync trim and flush at any
        // length the dropped writes and resizes may leave.
        self.wait(&p, id, true);
        self.edit(p.inode, &p.model, BlobModel::maybe_sync);
        self.mark_poison(&p, self.faults_on);
        let blob = p.blob.clone();
        let call = async move {
            match start {
                true => blob.start_sync().await,
                false => blob.sync().await,
            }
        };
        let result = limited(call, limit).await;
        let waiter = self.waited(&p, id, "sync", matches!(result, Some(Ok(()))));
        let mut lens = waiter.lens;
        lens.extend(self.possible_lens(p.inode, p.model.borrow().len));
        let end = match result {
            None => {
                let mut inodes = self.inodes.borrow_mut();
                let state = inodes.get_mut(&p.inode).expect("picked");
                // A `start_sync` goes on; a cancel-safe `sync` may too.
                state.background = true;
                state.may_poison |= self.faults_on;
                End::Dropped
            }
            Some(Ok(())) => {
                let len = p.model.borrow().len;
                let busy = self.busy(p.inode, id, id, len);
                self.stats.borrow_mut().racing_ends += u64::from(!busy.is_empty());
                self.edit(p.inode, &p.model, |m| match busy.is_empty() {
                    true => m.sync(),
                    false => m.sync_racing(&busy, &lens),
                });
                End::Done
            }
            Some(Err(e)) => {
                self.expect_failure("sync", &p, &e, faults);
                self.mark_poison(&p, true);
                End::Failed
            }
        };
        self.end_span(p.inode, id);
        self.release(p);
        end
    }

    /// Registers a read of `p`: it may see every state from now on.
    fn start_read(&self, p: &Picked, id: u64) {
        let model = p.model.borrow();
        let lens = self.possible_lens(p.inode, model.len);
        let reader = Reader {
            seen: model.clone(),
            len_min: *lens.first().expect("the model's length"),
            len_max: *lens.last().expect("the model's length"),
        };
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        state.readers.insert(id, reader);
    }

    fn end_read(&self, p: &Picked, id: u64) -> Reader {
        let mut inodes = self.inodes.borrow_mut();
        let state = inodes.get_mut(&p.inode).expect("picked");
        state.readers.remove(&id).expect("a reader")
    }

    /// Checks bytes read at `offset` against what the blob could show.
    fn check_bytes(&self, p: &Picked, reader: &Reader, offset: u64, bytes: &[u8], len: usize) {
        let end = offset + len as u64;
        assert!(
            end <= reader.len_max,
            "read {offset}+{len} of {} worked past every length it had ({}..={})",
            show(&p.key),
            reader.len_min,
            reader.len_max
        );
        assert_eq!(bytes.len(), len, "read {offset}+{len} of {}", show(&p.key));
        if let Err(e) = reader.seen.check_read(offset, bytes) {
            panic!("read {offset}+{len} of {}: {e}", show(&p.key));
        }
        self.stats.borrow_mut().reads_checked += 1;
    }

    /// Checks a read's error: past the end, or from a fault.
    fn check_read_error(&self, p: &Picked, reader: &Reader, e: &Error, faults: u64) -> End {
        if let Error::BlobInsufficientLength {
            offset,
            len,
            blob_len,
            ..
        } = e
        {
            let lens = reader.len_min..=reader.len_max;
            assert!(
                offset + len > reader.len_min && lens.contains(blob_len),
                "{e}: the blob had lengths {lens:?}"
            );
            return End::Refused;
        }
        self.expect_failure("read", p, e, faults);
        End::Failed
    }

    async fn read(&self, target: &Target, offset: u64, len: usize, limit: Option<usize>) -> End {
        let Some(p) = self.pick(target) else {
            return End::Skipped;
        };
        let (id, faults) = (self.tick(), self.faults_now());
        self.start_read(&p, id);
        let result = limited(p.blob.read_at(offset, len), limit).await;
        let reader = self.end_read(&p, id);
        let end = match result {
            None => End::Dropped,
            Some(Ok(bytes)) => {
                self.check_bytes(&p, &reader, offset, &bytes, len);
                End::Done
            }
            Some(Err(e)) => self.check_read_error(&p, &reader, &e, faults),
        };
        self.release(p);
        end
    }

    async fn read_many(
        &self,
        target: &Target,
        ranges: &[(u64, usize)],
        limit: Option<usize>,
    ) -> End {
        let Some(p) = self.pick(target) else {
            return End::Skipped;
        };
        let (id, faults) = (self.tick(), self.faults_now());
        self.start_read(&p, id);
        let reads = p.blob.read_many(ranges.to_vec()).collect::<Vec<_>>();
        let result = limited(reads, limit).await;
        let reader = self.end_read(&p, id);
        let mut end = End::Dropped;
        let mut seen = vec![false; ranges.len()];
        for item in result.into_iter().flatten() {
            match item {
                Ok((i, bytes)) => {
                    let (offset, len) = ranges[i];
                    assert!(!std::mem::replace(&mut seen[i], true), "range {i} twice");
                    self.check_bytes(&p, &reader, offset, &bytes, len);
                    end = End::Done;
                }
                Err(e) => {
                    end = self.check_read_error(&p, &reader, &e, faults);
                    break;
                }
            }
        }
        if matches!(end, End::Done) {
            assert!(
                seen.iter().all(|&s| s),
                "read_many {ranges:?} left out a range"
            );
        }
        self.release(p);
        end
    }
}

/// Applies `completed` to `model` from each of `lens` (the lengths the
/// blob may have had when it committed) and keeps every outcome, and the
/// outcome's length that the engine's, `engine_len`, tells (a write dropped
/// since may have moved it: the next op's catch-up checks what is left).
fn from_each_len(
    model: &mut BlobModel,
    lens: &BTreeSet<u64>,
    engine_len: u64,
    completed: impl Fn(&mut BlobModel),
) {
    if lens.len() == 1 {
        // The common case: one possible length, the model's.
        completed(model);
        return;
    }
    let mut outcomes = lens.iter().map(|&len| {
        let mut outcome = model.clone();
        outcome.len = len;
        outcome.note_len();
        completed(&mut outcome);
        outcome
    });
    let mut merged = outcomes.next().expect("the model's own length");
    let mut ends = BTreeSet::from([merged.len]);
    for outcome in outcomes {
        ends.insert(outcome.len);
        merged.absorb(&outcome);
    }
    // Ops dropped since (still pending) only grow the length or resize it:
    // the outcome is the longest of those the engine's length allows.
    let longest_allowed = ends.range(..=engine_len).next_back();
    merged.len = *longest_allowed.or(ends.last()).expect("an outcome");
    merged.note_len();
    *model = merged;
}
