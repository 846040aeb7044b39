//! What the device sees: [`Counting`] wraps any file system under the
//! store's scheduler and counts, by class, the calls in flight at the file
//! seam while [`Probe::arm`]ed; [`mixed_workload`] runs both classes at
//! once on a store built on it and checks the counts against the bounds.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::Path;
use std::rc::Rc;

use futures_lite::{stream, Stream, StreamExt};
use shardblob_shards::fs::{DirEntry, File, FileSystem, WriteBuf, BLOCK_SIZE};
use shardblob_shards::sched::{Cost, IoScheduler};
use shardblob_shards::IoClass::{self, Latency, Throughput};
use shardblob_shards::{Blob, ShardBlob, ShardStore, Storage, WriteOptions};

use super::PIECE;

/// Device calls in flight, by class, and what they reached at most.
#[derive(Debug, Default)]
struct Counts {
    now: [Cost; 2],
    max: [Cost; 2],
    total_max: u32,
    calls: [u64; 2],
    largest: u64,
    /// The most bytes of whole blocks one read range covered: what the
    /// device reads for it.
    largest_read: u64,
    /// Latency calls that reached the device while bulk calls waited in
    /// the scheduler's queue.
    overtakes: u64,
}

/// Counts the device calls of a store (module docs).
pub struct Probe {
    sched: Rc<IoScheduler>,
    armed: Cell<bool>,
    counts: RefCell<Counts>,
}

/// One call in flight at the device; counted out when dropped.
struct InFlight {
    probe: Option<(Rc<Probe>, usize, Cost)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((probe, class, cost)) = self.probe.take() {
            let mut counts = probe.counts.borrow_mut();
            counts.now[class].ops -= cost.ops;
            counts.now[class].bytes -= cost.bytes;
        }
    }
}

impl Probe {
    /// A probe of the store scheduled by `sched`.
    pub fn new(sched: Rc<IoScheduler>) -> Rc<Probe> {
        Rc::new(Probe {
            sched,
            armed: Cell::new(false),
            counts: RefCell::default(),
        })
    }

    /// Counts from now on: every call then is a scheduled blob call (the
    /// workload opens its blobs before).
    fn arm(&self) {
        self.armed.set(true);
    }

    /// A call of `cost` reaches the device, in the current class.
    fn start(self: &Rc<Self>, cost: Cost) -> InFlight {
        if !self.armed.get() {
            return InFlight { probe: None };
        }
        let class = IoClass::current();
        let index = class as usize;
        let config = *self.sched.config();
        let mut counts = self.counts.borrow_mut();
        counts.now[index].ops += cost.ops;
        counts.now[index].bytes += cost.bytes;
        let now = counts.now[index];
        counts.max[index].ops = counts.max[index].ops.max(now.ops);
        counts.max[index].bytes = counts.max[index].bytes.max(now.bytes);
        let total = counts.now[0].ops + counts.now[1].ops;
        counts.total_max = counts.total_max.max(total);
        counts.calls[index] += 1;
        if cost.ops == 1 {
            counts.largest = counts.largest.max(cost.bytes);
        }
        if class == Latency && self.sched.queued(Throughput) > 0 {
            counts.overtakes += 1;
        }
        assert!(total <= config.depth_max, "{counts:?}");
        assert!(counts.now[1].ops <= config.throughput_ops_max, "{counts:?}");
        assert!(
            counts.now[1].bytes <= config.throughput_bytes_max,
            "{counts:?}"
        );
        InFlight {
            probe: Some((self.clone(), index, cost)),
        }
    }

    /// A read range of `len` bytes at `pos` reaches the device, which reads
    /// the whole blocks it covers.
    fn read_range(&self, pos: u64, len: usize) {
        if self.armed.get() && len > 0 {
            let spanned = (pos + len as u64).div_ceil(4096) * 4096 - pos / 4096 * 4096;
            let mut counts = self.counts.borrow_mut();
            counts.largest_read = counts.largest_read.max(spanned);
        }
    }

    /// Checks what the armed phase showed, and that nothing is left over.
    fn check(&self) {
        self.armed.set(false);
        let counts = self.counts.borrow();
        let config = self.sched.config();
        assert_eq!(counts.now, [Cost::default(); 2], "{counts:?}");
        assert!(counts.calls[0] > 0 && counts.calls[1] > 0, "{counts:?}");
        assert!(
            counts.overtakes > 0,
            "no latency call passed bulk work: {counts:?}"
        );
        assert!(counts.largest <= config.piece_bytes as u64, "{counts:?}");
        assert!(
            counts.largest_read <= config.piece_bytes as u64,
            "{counts:?}"
        );
        assert_eq!(counts.max[1].ops, config.throughput_ops_max, "{counts:?}");
        for class in IoClass::ALL {
            assert_eq!(self.sched.in_flight(class), Cost::default());
            assert_eq!(self.sched.queued(class), 0);
        }
    }
}

/// A file system whose file calls a [`Probe`] counts.
pub struct Counting<F> {
    inner: F,
    probe: Rc<Probe>,
}

impl<F> Counting<F> {
    pub fn new(inner: F, probe: Rc<Probe>) -> Counting<F> {
        Counting { inner, probe }
    }
}

/// A file whose calls a [`Probe`] counts.
pub struct CountingFile<Fi> {
    inner: Fi,
    probe: Rc<Probe>,
}

impl<F: FileSystem> FileSystem for Counting<F> {
    type File = CountingFile<F::File>;

    async fn open_file(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        let inner = self.inner.open_file(path, create).await?;
        let probe = self.probe.clone();
        Ok(CountingFile { inner, probe })
    }

    fn create_dir(&self, path: &Path) -> io::Result<bool> {
        self.inner.create_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path).await
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
}

impl<Fi: File> File for CountingFile<Fi> {
    type WriteBuf = Fi::WriteBuf;
    type ReadBuf = Fi::ReadBuf;

    fn alloc(&self, len: usize) -> Fi::WriteBuf {
        self.inner.alloc(len)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Fi::ReadBuf> {
        let _call = self.probe.start(Cost::call(len));
        self.probe.read_range(pos, len);
        self.inner.read_at(pos, len).await
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, Fi::ReadBuf)>> {
        let cost = Cost {
            ops: ranges.len() as u32,
            bytes: ranges.iter().map(|&(_, len)| len as u64).sum(),
        };
        let call = self.probe.start(cost);
        for &(pos, len) in &ranges {
            self.probe.read_range(pos, len);
        }
        stream::once(call).flat_map(move |call| {
            let ranges = ranges.clone();
            self.inner.read_many(ranges).map(move |item| {
                let _call = &call;
                item
            })
        })
    }

    async fn write_returning(
        &self,
        buf: Fi::WriteBuf,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<Fi::WriteBuf>) {
        let _call = self.probe.start(Cost::call(buf.bytes().len()));
        self.inner.write_returning(buf, pos, durable).await
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        let _call = self.probe.start(Cost::call(0));
        self.inner.set_len(len).await
    }

    fn set_len_now(&self, len: u64) -> io::Result<()> {
        self.inner.set_len_now(len)
    }

    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()> {
        self.inner.write_block_now(block, pos)
    }

    fn sync_data_now(&self) -> io::Result<()> {
        self.inner.sync_data_now()
    }

    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        let _call = self.probe.start(Cost::call(0));
        self.inner.preallocate(pos, len).await
    }

    fn release_past_end_now(&self, slack: u64) -> io::Result<bool> {
        self.inner.release_past_end_now(slack)
    }

    async fn sync_data(&self) -> io::Result<()> {
        let _call = self.probe.start(Cost::call(0));
        self.inner.sync_data().await
    }

    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }
}

/// Bytes that say where they were written.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i * 31 + seed * 7) as u8).collect()
}

const BULK_TASKS: u64 = 4;
/// Eight pieces of the tests' 64 KiB.
const BULK_BYTES: usize = 512 << 10;
const HOT_TASKS: u64 = 3;
const HOT_BYTES: usize = 64 << 10;

/// One bulk task: large writes (one of them SYNC) and reads, a batch of
/// reads, a resize and a sync, all in the throughput class.
async fn bulk<F: FileSystem>(blob: ShardBlob<Counting<F>>, seed: u64) {
    let data = pattern(seed, 2 * BULK_BYTES);
    let (first, second) = data.split_at(BULK_BYTES);
    let plain = WriteOptions::THROUGHPUT;
    blob.write_vectored_at(0, &[first], plain).await.unwrap();
    let synced = WriteOptions::THROUGHPUT | WriteOptions::SYNC;
    blob.write_vectored_at(BULK_BYTES as u64, &[second], synced)
        .await
        .unwrap();
    Throughput
        .scope(async {
            let back = blob.read_at(0, data.len()).await.unwrap();
            assert!(back[..] == data[..], "bulk read back");
            // Unaligned, more than a piece: no device read larger than one.
            let back = blob.read_at(100, 2 * PIECE).await.unwrap();
            assert!(back[..] == data[100..100 + 2 * PIECE], "unaligned read");
            let mut ranges: Vec<(u64, usize)> = (0..12).map(|k| (k * 40_000, 4096)).collect();
            ranges.push((3 * 4096 + 5, 3 * PIECE));
            ranges.push((PIECE as u64 - 1, 2));
            let items: Vec<_> = blob.read_many(ranges.clone()).collect().await;
            for item in items {
                let (index, bytes) = item.unwrap();
                let (at, len) = (ranges[index].0 as usize, ranges[index].1);
                assert!(bytes[..] == data[at..at + len], "bulk read_many");
            }
            blob.resize(BULK_BYTES as u64).await.unwrap();
            blob.sync().await.unwrap();
        })
        .await;
}

/// One latency task: small reads of the hot blob, small synced appends.
async fn hot<F: FileSystem>(blob: ShardBlob<Counting<F>>, log: ShardBlob<Counting<F>>, task: u64) {
    let data = pattern(99, HOT_BYTES);
    for k in 0..40u64 {
        let at = (k * 4096 * (task + 1) + task * 100) as usize % (HOT_BYTES - 4096);
        let bytes = blob.read_at(at as u64, 4096).await.unwrap();
        assert!(bytes[..] == data[at..at + 4096], "hot read");
        if k % 10 == 0 {
            let line = [task as u8; 100];
            let at = log.len();
            log.write_vectored_at(at, &[&line], WriteOptions::SYNC)
                .await
                .unwrap();
        }
    }
}

/// Runs bulk and latency tasks side by side on `store`; the probe checks
/// every device call against the bounds, and what the run showed at its
/// end.
pub async fn mixed_workload<F: FileSystem>(store: Rc<ShardStore<Counting<F>>>, probe: &Rc<Probe>) {
    let (hot_blob, _) = store.open("p", b"hot").await.unwrap();
    hot_blob.write_at(0, &pattern(99, HOT_BYTES)).await.unwrap();
    let (log, _) = store.open("p", b"log").await.unwrap();
    let mut bulk_blobs = Vec::new();
    for i in 0..BULK_TASKS {
        bulk_blobs.push(
            store
                .open("p", format!("bulk{i}").as_bytes())
                .await
                .unwrap()
                .0,
        );
    }
    probe.arm();
    let mut tasks = Vec::new();
    for (i, blob) in bulk_blobs.into_iter().enumerate() {
        tasks.push(glommio::spawn_local(bulk(blob, i as u64)).detach());
    }
    for task in 0..HOT_TASKS {
        let (blob, log) = (hot_blob.clone(), log.clone());
        tasks.push(glommio::spawn_local(hot(blob, log, task)).detach());
    }
    for task in tasks {
        task.await.expect("task finished");
    }
    probe.check();
}
