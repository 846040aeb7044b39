//! The harness's blob operations: write, resize, sync, read, `read_many`
//! and close, each checked against the blob's model.

use futures_lite::StreamExt;
use shardblob_shards::fs::sim::Faults;
use shardblob_shards::{Blob, Error, IoClass, WriteOptions};

use super::harness::{
    cut_flush_failed, expect_poisoned, limited, show, write_in, Handle, Harness, Op, Outcome,
    Target,
};
use super::model::Trim;

impl Harness {
    fn handle_mut(&mut self, target: &Target) -> Option<&mut Handle> {
        match target {
            Target::Open(key) => self.open.get_mut(key),
            Target::Orphan(i) => self.orphans.get_mut(*i),
        }
    }

    pub(super) async fn close(&mut self, target: &Target) -> Outcome {
        let handle = match target {
            Target::Open(key) => self.open.remove(key),
            Target::Orphan(i) if *i < self.orphans.len() => Some(self.orphans.remove(*i)),
            Target::Orphan(_) => None,
        };
        let Some(handle) = handle else {
            return Outcome::Skipped;
        };
        let (model, poisoned) = (handle.model.clone(), handle.poisoned);
        let before = self.fs.injected_faults();
        let latency_before = self.fs.injected_faults_in(IoClass::Latency);
        let open = self.store.stats().open_blobs();
        drop(handle);
        self.closed(open - 1).await;
        let hit = self.fs.injected_faults() > before;
        // The close's calls run in the class of whatever drops the blob
        // last: a fault in the throughput class is counted by `run`.
        self.stats.swallowed += self.fs.injected_faults_in(IoClass::Latency) - latency_before;
        let trim = match (poisoned, hit) {
            (true, _) => Trim::Skipped,
            (false, true) => Trim::Maybe,
            (false, false) => Trim::Done,
        };
        model.borrow_mut().close(trim);
        Outcome::Done
    }

    pub(super) async fn restart(&mut self) -> Outcome {
        while let Some(target) = self.targets().first().cloned() {
            self.close(&target).await;
        }
        self.store = self.new_store(self.fs.clone());
        Outcome::Done
    }

    /// Maps the result of a mutation; a failed sync or SYNC write poisons,
    /// and so does any op during which a file flush failed (a write or
    /// resize that cut a failed write's bytes first, durably).
    fn mutated<T>(
        &mut self,
        target: &Target,
        result: Option<Result<T, Error>>,
        poisons: bool,
    ) -> Outcome {
        match result {
            None => Outcome::Interrupted,
            Some(Ok(_)) => Outcome::Done,
            Some(Err(e)) => {
                let flush = self.flush_faulted();
                if flush && !poisons {
                    let cut = cut_flush_failed(&e);
                    assert!(cut, "a failed flush of a write or resize: {e}");
                }
                if let (true, Some(h)) = (poisons || flush, self.handle_mut(target)) {
                    h.poisoned = true;
                }
                Outcome::Failed
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write(
        &mut self,
        op: &Op,
        target: &Target,
        offset: u64,
        data: &[u8],
        sync: bool,
        pieces: usize,
        limit: Option<usize>,
    ) -> Outcome {
        let Some(h) = self.handle(target) else {
            return Outcome::Skipped;
        };
        let options = if sync {
            WriteOptions::SYNC
        } else {
            WriteOptions::NONE
        };
        let write = write_in(&h.blob, offset, data, options, pieces);
        if h.poisoned {
            expect_poisoned(write.await, &h.key, "write");
            return Outcome::Refused;
        }
        let result = limited(write, limit).await;
        // An interrupted write's commit goes on without its caller, and an
        // injected fault can still cut it short (a torn write).
        let torn_if_cut = self.faults != Faults::default();
        let mut model = h.model.borrow_mut();
        match &result {
            None => model.maybe_write(offset, data, sync, torn_if_cut),
            Some(Ok(())) => {
                assert!(
                    !self.flush_faulted(),
                    "{op:?} reported a write through a failed flush"
                );
                model.write(offset, data, sync);
                assert_eq!(h.blob.len(), model.len, "length after {op:?}");
            }
            Some(Err(e)) => {
                self.failed(op, e, (&h.key.0, Some(&h.key.1)));
                assert_eq!(h.blob.len(), model.len, "{op:?} failed: it adds no length");
                model.maybe_write(offset, data, sync, true);
            }
        }
        drop(model);
        if let Some(Ok(())) = result {
            // A failed preallocation is advisory: the write goes on.
            self.stats.swallowed += u64::from(self.faulted());
        }
        self.mutated(target, result, sync)
    }

    pub(super) async fn resize(
        &mut self,
        op: &Op,
        target: &Target,
        len: u64,
        limit: Option<usize>,
    ) -> Outcome {
        let Some(h) = self.handle(target) else {
            return Outcome::Skipped;
        };
        if h.poisoned {
            expect_poisoned(h.blob.resize(len).await, &h.key, "resize");
            return Outcome::Refused;
        }
        let result = limited(h.blob.resize(len), limit).await;
        let mut model = h.model.borrow_mut();
        match &result {
            None => model.maybe_resize(len),
            Some(Ok(())) => {
                assert!(!self.faulted(), "{op:?} swallowed a fault");
                model.resize(len);
                assert_eq!(h.blob.len(), len, "length after {op:?}");
            }
            Some(Err(e)) => {
                self.failed(op, e, (&h.key.0, Some(&h.key.1)));
                model.maybe_resize(len);
            }
        }
        drop(model);
        self.mutated(target, result, false)
    }

    pub(super) async fn sync(
        &mut self,
        op: &Op,
        target: &Target,
        start: bool,
        limit: Option<usize>,
    ) -> Outcome {
        let Some(h) = self.handle(target) else {
            return Outcome::Skipped;
        };
        let blob = h.blob.clone();
        let sync = async move {
            match start {
                true => blob.start_sync().await,
                false => blob.sync().await,
            }
        };
        if h.poisoned {
            expect_poisoned(sync.await, &h.key, "sync");
            return Outcome::Refused;
        }
        let result = limited(sync, limit).await;
        let mut model = h.model.borrow_mut();
        match &result {
            None => model.maybe_sync(),
            Some(Ok(())) => {
                assert!(!self.faulted(), "{op:?} reported a sync through a fault");
                model.sync();
            }
            Some(Err(e)) => {
                self.failed(op, e, (&h.key.0, Some(&h.key.1)));
                model.maybe_sync();
            }
        }
        drop(model);
        self.mutated(target, result, true)
    }

    pub(super) async fn read(
        &mut self,
        op: &Op,
        target: &Target,
        offset: u64,
        len: usize,
        limit: Option<usize>,
    ) -> Outcome {
        let Some(h) = self.handle(target) else {
            return Outcome::Skipped;
        };
        let model_len = h.model.borrow().len;
        let past_end = offset + len as u64 > model_len;
        let Some(result) = limited(h.blob.read_at(offset, len), limit).await else {
            return Outcome::Interrupted;
        };
        match result {
            Err(Error::BlobInsufficientLength { blob_len, .. }) if past_end => {
                assert_eq!(blob_len, model_len, "{op:?}: length in the error");
                Outcome::Refused
            }
            Ok(bytes) => {
                assert!(!past_end, "{op:?} past the end at {model_len} worked");
                assert!(!self.faulted(), "{op:?} swallowed a fault");
                assert_eq!(bytes.len(), len, "{op:?}: length");
                if let Err(e) = h.model.borrow().check_read(offset, &bytes) {
                    panic!("{op:?} of {}: {e}", show(&h.key));
                }
                Outcome::Done
            }
            Err(e) => {
                self.failed(op, &e, (&h.key.0, Some(&h.key.1)));
                Outcome::Failed
            }
        }
    }

    pub(super) async fn read_many(
        &mut self,
        op: &Op,
        target: &Target,
        ranges: &[(u64, usize)],
        limit: Option<usize>,
    ) -> Outcome {
        let Some(h) = self.handle(target) else {
            return Outcome::Skipped;
        };
        let model_len = h.model.borrow().len;
        let past_end = ranges.iter().any(|&(o, l)| o + l as u64 > model_len);
        let reads = h.blob.read_many(ranges.to_vec()).collect::<Vec<_>>();
        let Some(results) = limited(reads, limit).await else {
            return Outcome::Interrupted;
        };
        let mut seen = vec![false; ranges.len()];
        for result in results {
            match result {
                Ok((i, bytes)) => {
                    assert!(!past_end, "{op:?} past the end at {model_len} worked");
                    assert!(
                        !std::mem::replace(&mut seen[i], true),
                        "{op:?}: range {i} twice"
                    );
                    let (offset, len) = ranges[i];
                    assert_eq!(bytes.len(), len, "{op:?}: range {i} length");
                    if let Err(e) = h.model.borrow().check_read(offset, &bytes) {
                        panic!("{op:?} of {}, range {i}: {e}", show(&h.key));
                    }
                }
                Err(Error::BlobInsufficientLength { .. }) if past_end => return Outcome::Refused,
                Err(e) => {
                    self.failed(op, &e, (&h.key.0, Some(&h.key.1)));
                    return Outcome::Failed;
                }
            }
        }
        assert!(!self.faulted(), "{op:?} swallowed a fault");
        assert!(seen.iter().all(|&s| s), "{op:?} left out a range");
        Outcome::Done
    }
}
