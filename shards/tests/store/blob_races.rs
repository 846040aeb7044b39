//! Cancellation and races on one blob (issue 11, items 2, 7, 8 and 9).
//!
//! The store runs on [`Device`], a wrapper of the simulated file system that
//! behaves like io_uring under glommio: every data-path call is *issued* to a
//! detached task and lands after a delay the test chooses, whether or not the
//! caller still waits for it (dropping a glommio I/O future only asks the
//! kernel to cancel; the write still happens). Each test says what it caught
//! on the code before the fix (58545b6).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;

use futures_lite::future::{poll_once, yield_now};
use futures_lite::{Stream, StreamExt};
use glommio::{LocalExecutorBuilder, Placement};
use shardblob_shards::blob::ZERO_LEAD_BYTES;
use shardblob_shards::fs::sim::{Faults, SimFile, SimFs, SimWriteBuf};
use shardblob_shards::fs::{DirEntry, File, FileSystem, WriteBuf, BLOCK_SIZE};
use shardblob_shards::sched::SchedConfig;
use shardblob_shards::{Blob, ShardBlob, ShardStore, Storage, WriteOptions};

use crate::common::finished_within;
use crate::logs::Logs;

const PARTITION: &str = "races";
/// Polls and yields any wait in these tests is bounded by.
const STEPS_MAX: usize = 10_000;

/// Counters and the delay schedule shared by a [`Device`] and its files.
#[derive(Default)]
struct Control {
    /// Yields the next issued data-path call waits before it lands.
    next_delay: Cell<u32>,
    issued: Cell<u64>,
    in_flight: Cell<u64>,
    flushes: Cell<u64>,
    /// The address of each written buffer's bytes, in the order issued.
    written_from: RefCell<Vec<usize>>,
    /// Writes keep their buffers (a file may: `File::write_returning`).
    keep_buffers: Cell<bool>,
    /// Writes at or past this file position land only after
    /// `slow_yields` yields (unless `next_delay` says otherwise).
    slow_from: Cell<u64>,
    slow_yields: Cell<u32>,
}

/// A simulated device whose calls land even when their caller is gone.
#[derive(Clone)]
struct Device {
    fs: SimFs,
    control: Rc<Control>,
}

struct DeviceFile {
    file: Rc<SimFile>,
    control: Rc<Control>,
}

impl Device {
    fn new(seed: u64) -> Device {
        let control = Control::default();
        control.slow_from.set(u64::MAX);
        Device {
            fs: SimFs::new(seed),
            control: Rc::new(control),
        }
    }

    /// Every later write at or past file position `pos` lands only after
    /// `yields` executor yields.
    fn slow_writes_from(&self, pos: u64, yields: u32) {
        self.control.slow_from.set(pos);
        self.control.slow_yields.set(yields);
    }

    /// The next data-path call lands only after `yields` executor yields.
    fn delay_next(&self, yields: u32) {
        self.control.next_delay.set(yields);
    }

    fn issued(&self) -> u64 {
        self.control.issued.get()
    }

    fn flushes(&self) -> u64 {
        self.control.flushes.get()
    }

    /// Yields until every issued call has landed and its caller (or the
    /// task that took it over) had the chance to finish its bookkeeping.
    async fn settle(&self) {
        let mut quiet = 0;
        for _ in 0..STEPS_MAX {
            yield_now().await;
            quiet = if self.control.in_flight.get() == 0 {
                quiet + 1
            } else {
                0
            };
            if quiet == 16 {
                return;
            }
        }
        panic!("the device did not settle");
    }
}

impl DeviceFile {
    /// Issues `op` on the file: it runs on its own task after the scheduled
    /// delay, and the returned future only waits for its result.
    fn issue<T: 'static, Fut: Future<Output = io::Result<T>> + 'static>(
        &self,
        op: impl FnOnce(Rc<SimFile>) -> Fut + 'static,
    ) -> impl Future<Output = io::Result<T>> {
        let control = self.control.clone();
        let delay = control.next_delay.replace(0);
        control.issued.set(control.issued.get() + 1);
        control.in_flight.set(control.in_flight.get() + 1);
        let file = self.file.clone();
        let landed = glommio::spawn_local(async move {
            for _ in 0..delay {
                yield_now().await;
            }
            let result = op(file).await;
            control.in_flight.set(control.in_flight.get() - 1);
            result
        })
        .detach();
        async move { landed.await.expect("the device task ran") }
    }
}

impl FileSystem for Device {
    type File = DeviceFile;

    async fn open_file(&self, path: &Path, create: bool) -> io::Result<DeviceFile> {
        Ok(DeviceFile {
            file: Rc::new(self.fs.open_file(path, create).await?),
            control: self.control.clone(),
        })
    }
    fn create_dir(&self, path: &Path) -> io::Result<bool> {
        self.fs.create_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.fs.list_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.fs.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.fs.remove_dir(path)
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.fs.sync_dir(path).await
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.fs.rename(from, to)
    }
}

impl File for DeviceFile {
    type WriteBuf = SimWriteBuf;
    type ReadBuf = Rc<[u8]>;

    fn alloc(&self, len: usize) -> SimWriteBuf {
        self.file.alloc(len)
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Rc<[u8]>> {
        self.issue(move |f| async move { f.read_at(pos, len).await })
            .await
    }
    /// Each range is a call of its own, as io_uring completes them: the
    /// stream yields them in the order they land.
    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, Rc<[u8]>)>> {
        let reads = ranges.into_iter().enumerate().map(|(index, (pos, len))| {
            let read = self.issue(move |f| async move { f.read_at(pos, len).await });
            Some(Box::pin(
                async move { read.await.map(|bytes| (index, bytes)) },
            ))
        });
        let mut reads: Vec<_> = reads.collect();
        futures_lite::stream::poll_fn(move |cx| {
            let mut pending = false;
            for slot in &mut reads {
                let Some(read) = slot else { continue };
                if let Poll::Ready(item) = read.as_mut().poll(cx) {
                    *slot = None;
                    return Poll::Ready(Some(item));
                }
                pending = true;
            }
            match pending {
                true => Poll::Pending,
                false => Poll::Ready(None),
            }
        })
    }
    async fn write_returning(
        &self,
        buf: SimWriteBuf,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<SimWriteBuf>) {
        if pos == 0 {
            // The header page (a length slot, blob/length.rs) goes to the
            // file as it is: these tests count, delay and hold data I/O.
            return self.file.write_returning(buf, pos, durable).await;
        }
        let from = buf.bytes().as_ptr() as usize;
        self.control.written_from.borrow_mut().push(from);
        if pos >= self.control.slow_from.get() && self.control.next_delay.get() == 0 {
            self.control.next_delay.set(self.control.slow_yields.get());
        }
        let written = self.issue(move |f| async move {
            let (written, buf) = f.write_returning(buf, pos, durable).await;
            written.map(|n| (n, buf))
        });
        let keep = self.control.keep_buffers.get();
        match written.await {
            Ok((n, buf)) => (Ok(n), buf.filter(|_| !keep)),
            Err(e) => (Err(e), None),
        }
    }
    async fn set_len(&self, len: u64) -> io::Result<()> {
        self.issue(move |f| async move { f.set_len(len).await })
            .await
    }
    fn set_len_now(&self, len: u64) -> io::Result<()> {
        self.file.set_len_now(len)
    }
    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()> {
        self.file.write_block_now(block, pos)
    }
    fn sync_data_now(&self) -> io::Result<()> {
        self.control.flushes.set(self.control.flushes.get() + 1);
        self.file.sync_data_now()
    }
    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        self.file.preallocate(pos, len).await
    }
    fn release_past_end_now(&self, slack: u64) -> io::Result<bool> {
        self.file.release_past_end_now(slack)
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.control.flushes.set(self.control.flushes.get() + 1);
        self.issue(|f| async move { f.sync_data().await }).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.file.size().await
    }
}

/// Runs `test` on a fresh executor.
fn run<Fut: Future<Output = ()>>(test: impl FnOnce() -> Fut + Send + 'static) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { test().await })
        .expect("executor")
        .join()
        .expect("test body");
}

/// Polls `op` until it has issued one more device call, then drops it:
/// a caller that gave up (a timeout) while its I/O was in flight.
async fn drop_after_issue<T>(device: &Device, op: impl Future<Output = T>) {
    let mut op: Pin<Box<dyn Future<Output = T> + '_>> = Box::pin(op);
    poll_until_issued(device, op.as_mut()).await;
}

/// Polls `op` until it has issued a device call; it must not finish first.
async fn poll_until_issued<T>(device: &Device, mut op: Pin<&mut dyn Future<Output = T>>) {
    let issued = device.issued();
    for _ in 0..STEPS_MAX {
        assert!(
            poll_once(op.as_mut()).await.is_none(),
            "the operation finished before it issued a device call"
        );
        if device.issued() > issued {
            return;
        }
        yield_now().await;
    }
    panic!("the operation never issued a device call");
}

async fn open(device: &Device, name: &[u8]) -> (ShardStore<Device>, ShardBlob<Device>) {
    // No zeros written ahead: the tests count the device's writes.
    let store = ShardStore::new(device.clone(), "/").with_preallocate_bytes(0);
    let (blob, _) = store.open(PARTITION, name).await.expect("open");
    (store, blob)
}

/// What a reopen of `name` finds, after `blob`'s handle is dropped.
async fn reopened(store: &ShardStore<Device>, blob: ShardBlob<Device>, name: &[u8]) -> Vec<u8> {
    drop(blob);
    let (blob, len) = store.open(PARTITION, name).await.expect("reopen");
    blob.read_at(0, len as usize).await.expect("read").to_vec()
}

/// Caught on 58545b6: a dropped append into the tail block gave up the RMW
/// lock while its write was in flight; the next append read the block from
/// the device before the dropped one landed, and the dropped one then
/// overwrote the completed append's bytes with zeros.
#[test]
fn a_dropped_append_never_overwrites_a_later_append() {
    run(|| async {
        let device = Device::new(1);
        let (store, blob) = open(&device, b"tail").await;
        blob.write_at(0, &[1; 100]).await.unwrap();
        device.delay_next(50);
        drop_after_issue(&device, blob.write_at(100, &[2; 100])).await;
        blob.write_at(200, &[3; 100]).await.unwrap();
        device.settle().await;
        let bytes = blob.read_at(0, 300).await.unwrap().to_vec();
        assert_eq!(&bytes[..100], &[1; 100]);
        assert!(
            bytes[100..200] == [2; 100] || bytes[100..200] == [0; 100],
            "the dropped write is all there or not at all"
        );
        assert_eq!(&bytes[200..], &[3; 100], "the completed append survives");
        assert_eq!(reopened(&store, blob, b"tail").await, bytes);
    });
}

/// A commit that fails after its caller left is logged, as nobody else
/// learns of it. Kills `shards/src/blob/commit.rs:43:9: replace <impl
/// Outcome for crate::Result<T>>::failure -> Option<&Error> with None`.
#[test]
fn a_failed_commit_whose_caller_left_is_logged() {
    run(|| async {
        let (logs, _capture) = Logs::capture();
        let device = Device::new(3);
        let (_store, blob) = open(&device, b"orphan").await;
        device.delay_next(20);
        drop_after_issue(&device, blob.write_at(0, &[4; 4096])).await;
        device.fs.set_faults(Faults::random(1_000_000));
        device.settle().await;
        device.fs.set_faults(Faults::default());
        let failed = logs.lines_with("a commit whose caller left failed");
        assert_eq!(failed.len(), 1, "{failed:?}");
    });
}

/// Caught on 58545b6: an aligned overwrite takes no RMW lock, so a dropped
/// one still in flight landed after the overwrite that completed later.
#[test]
fn a_dropped_overwrite_never_lands_after_a_later_one() {
    run(|| async {
        let device = Device::new(2);
        let (_store, blob) = open(&device, b"over").await;
        let block = BLOCK_SIZE as usize;
        blob.write_at(0, &vec![1; 2 * block]).await.unwrap();
        device.delay_next(50);
        drop_after_issue(&device, blob.write_at(0, &vec![2; block])).await;
        blob.write_at(0, &vec![3; block]).await.unwrap();
        device.settle().await;
        let bytes = blob.read_at(0, block).await.unwrap();
        assert!(bytes.iter().all(|&b| b == 3), "the later write wins");
    });
}

/// An aligned overwrite of the blob's last blocks, ending exactly at its
/// (aligned) length, takes no RMW lock: it completes while an append past
/// it is still in flight. Kills `shards/src/blob/write.rs:88:20: replace >
/// with >= in BlobState<F>::write` (every write ending at the length waited
/// for the appends in flight).
#[test]
fn an_aligned_overwrite_ending_at_the_length_does_not_wait_for_an_append() {
    run(|| async {
        let device = Device::new(5);
        let (_store, blob) = open(&device, b"end").await;
        let block = BLOCK_SIZE as usize;
        blob.write_at(0, &vec![1; 2 * block]).await.unwrap();
        device.delay_next(1_000);
        let mut append: Pin<Box<dyn Future<Output = _>>> =
            Box::pin(blob.write_at(2 * BLOCK_SIZE, &[2; 100]));
        poll_until_issued(&device, append.as_mut()).await;
        let threes = vec![3; block];
        let mut overwrite: Pin<Box<dyn Future<Output = _>>> =
            Box::pin(blob.write_at(BLOCK_SIZE, &threes));
        let overwritten = finished_within(overwrite.as_mut(), 100).await;
        assert!(overwritten.is_some(), "the overwrite waited for the append");
        overwritten.unwrap().unwrap();
        append.await.unwrap();
        let bytes = blob.read_at(0, 2 * block + 100).await.unwrap();
        assert!(bytes[..block].iter().all(|&b| b == 1));
        assert!(bytes[block..2 * block].iter().all(|&b| b == 3));
        assert_eq!(&bytes[2 * block..], &[2; 100]);
    });
}

/// An aligned overwrite inside the first piece of a longer append, which
/// fails in its second piece, keeps its bytes: the failed append gives back
/// the length its first piece added, so an overwrite that counted on that
/// length (and took no RMW lock) would have returned `Ok` for bytes past
/// the end. Caught on fd7dfeb: the overwrite completed while the append was
/// in flight, and the blob ended 4096 bytes long instead of 8192.
#[test]
fn an_overwrite_inside_a_failed_appends_first_piece_keeps_its_bytes() {
    run(|| overwrite_inside_a_failed_append(8, false));
}

/// The same with a zero-copy overwrite (`write_buf_at`): it decides on the
/// RMW lock as a copying write does.
#[test]
fn a_buffer_overwrite_inside_a_failed_appends_first_piece_keeps_its_bytes() {
    run(|| overwrite_inside_a_failed_append(28, true));
}

/// An aligned overwrite of the block after the first, from a buffer of
/// `alloc_buf` if `by_buffer`, while an append of two pieces from there
/// is in flight and then fails in its second piece.
async fn overwrite_inside_a_failed_append(seed: u64, by_buffer: bool) {
    let device = Device::new(seed);
    let (store, blob) = open(&device, b"split").await;
    let block = BLOCK_SIZE as usize;
    blob.write_at(0, &vec![1; block]).await.unwrap();
    let twos = vec![2; 2 * SchedConfig::default().piece_bytes];
    let mut append: Pin<Box<dyn Future<Output = _>>> = Box::pin(blob.write_at(BLOCK_SIZE, &twos));
    poll_until_issued(&device, append.as_mut()).await;
    device.delay_next(200);
    poll_until_issued(&device, append.as_mut()).await;
    assert!(blob.len() > 2 * BLOCK_SIZE, "the first piece landed");
    let overwriter = blob.clone();
    let mut overwrite: Pin<Box<dyn Future<Output = _>>> = Box::pin(async move {
        match by_buffer {
            true => {
                let mut threes = overwriter.alloc_buf(block)?;
                threes.fill(3);
                let write = overwriter.write_buf_at(BLOCK_SIZE, threes, WriteOptions::NONE);
                write.await.map(drop)
            }
            false => overwriter.write_at(BLOCK_SIZE, &vec![3; block]).await,
        }
    });
    let early = finished_within(overwrite.as_mut(), 100).await;
    // The next device call, the append's second piece, fails.
    device.fs.set_faults(Faults::at_op(device.fs.op_count()));
    assert!(append.await.is_err(), "the second piece failed");
    assert_eq!(device.fs.injected_faults(), 1, "on the second piece alone");
    device.fs.set_faults(Faults::default());
    match early {
        Some(result) => result.unwrap(),
        None => overwrite.as_mut().await.unwrap(),
    }
    drop(overwrite);
    assert_eq!(blob.len(), 2 * BLOCK_SIZE, "the overwrite's bytes count");
    let bytes = blob.read_at(0, 2 * block).await.unwrap().to_vec();
    assert!(bytes[..block].iter().all(|&b| b == 1));
    assert!(bytes[block..].iter().all(|&b| b == 3));
    assert_eq!(reopened(&store, blob, b"split").await, bytes);
}

/// Caught on 58545b6: a dropped shrinking resize still truncated the file
/// (the truncate was issued), but the blob kept its old length, so a read
/// inside that length failed with a short read.
#[test]
fn a_dropped_resize_keeps_length_and_file_in_step() {
    run(|| async {
        let device = Device::new(3);
        let (store, blob) = open(&device, b"resize").await;
        blob.write_at(0, &[7; 3 * 4096 + 100]).await.unwrap();
        device.delay_next(50);
        drop_after_issue(&device, blob.resize(10)).await;
        device.settle().await;
        let len = blob.len();
        assert!(len == 10 || len == 3 * 4096 + 100, "len {len}");
        let bytes = blob.read_at(0, len as usize).await.expect("read all");
        assert!(bytes.iter().all(|&b| b == 7));
        blob.write_at(len, &[8; 10]).await.expect("append after");
        blob.sync().await.expect("sync after");
        let mut want = vec![7; len as usize];
        want.extend([8; 10]);
        assert_eq!(reopened(&store, blob, b"resize").await, want);
    });
}

/// Caught on 58545b6: a read did not hold off a shrinking resize, so the
/// file shrank under a read of bytes that were in the blob when it began,
/// and the read failed (on glommio it can return stale pool memory).
#[test]
fn a_read_racing_a_shrinking_resize_returns_the_bytes_it_began_with() {
    run(|| async {
        let device = Device::new(4);
        let (_store, blob) = open(&device, b"shrink").await;
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        blob.write_at(0, &data).await.unwrap();
        device.delay_next(50);
        let (read, resized) =
            futures_lite::future::zip(blob.read_at(4096, 4096), blob.resize(100)).await;
        resized.unwrap();
        assert_eq!(
            &read.expect("the read began inside the blob")[..],
            &data[4096..]
        );
        assert_eq!(blob.len(), 100);
    });
}

/// Caught on 58545b6: glommio's RwLock lets new readers pass a waiting
/// writer, so a resize waited until every writer had stopped (all 4 x 200
/// writes went first).
#[test]
fn a_resize_completes_under_a_stream_of_writes() {
    const WRITERS: u64 = 4;
    const WRITES_EACH: u64 = 200;
    run(|| async {
        let device = Device::new(5);
        let (_store, blob) = open(&device, b"stream").await;
        blob.write_at(0, &vec![0; (WRITERS * BLOCK_SIZE) as usize])
            .await
            .unwrap();
        let writes = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (blob, writes) = (blob.clone(), writes.clone());
            tasks.push(glommio::spawn_local(async move {
                for i in 0..WRITES_EACH {
                    let byte = [(i % 200) as u8 + 1; BLOCK_SIZE as usize];
                    if blob.write_at(w * BLOCK_SIZE, &byte).await.is_err() {
                        return; // cut off by the resize: fine
                    }
                    writes.set(writes.get() + 1);
                }
            }));
        }
        yield_now().await;
        yield_now().await;
        let before = writes.get();
        blob.resize(WRITERS * BLOCK_SIZE + 1).await.unwrap();
        let during = writes.get() - before;
        for task in tasks {
            task.await;
        }
        assert!(
            during <= 2 * WRITERS,
            "{during} writes passed a waiting resize"
        );
    });
}

/// Caught on 58545b6: every sync issued its own fdatasync (8 for 8
/// concurrent syncs).
#[test]
fn concurrent_syncs_share_one_flush() {
    const SYNCS: usize = 8;
    run(|| async {
        let device = Device::new(6);
        let (_store, blob) = open(&device, b"group").await;
        blob.write_at(0, &[1; 4096]).await.unwrap();
        let before = device.flushes();
        let syncs = (0..SYNCS).map(|_| {
            let blob = blob.clone();
            glommio::spawn_local(async move { blob.sync().await })
        });
        let syncs: Vec<_> = syncs.collect();
        for sync in syncs {
            sync.await.unwrap();
        }
        let flushes = device.flushes() - before;
        assert!(
            (1..=2).contains(&flushes),
            "{SYNCS} concurrent syncs issued {flushes} flushes"
        );
    });
}

/// A sync called while a flush is in flight waits for a flush that began
/// after it (the one in flight may have missed its writes). Passes on
/// 58545b6 too, where every sync flushed; it keeps the group commit from
/// sharing too much.
#[test]
fn a_sync_is_not_satisfied_by_a_flush_that_began_before_it() {
    run(|| async {
        let device = Device::new(7);
        let (_store, blob) = open(&device, b"later").await;
        blob.write_at(0, &[1; 4096]).await.unwrap();
        let before = device.flushes();
        device.delay_next(20);
        let first = blob.clone();
        let first = glommio::spawn_local(async move { first.sync().await });
        for _ in 0..STEPS_MAX {
            if device.flushes() > before {
                break;
            }
            yield_now().await;
        }
        blob.write_at(4096, &[2; 4096]).await.unwrap();
        blob.sync().await.unwrap();
        first.await.unwrap();
        assert_eq!(device.flushes() - before, 2);
    });
}

/// The same on real DMA files: a resize or write dropped after `k` polls
/// (its truncate on glommio's blocking thread, its write in io_uring) is
/// finished by a detached task; the blob's length, content and reopened
/// file agree afterwards. On 58545b6 a dropped shrink left the old length
/// over a truncated file (a later read returned zeros for bytes the blob
/// claimed were 7s).
#[test]
fn dropped_operations_on_real_files_leave_the_blob_consistent() {
    use shardblob_shards::fs::dma::DmaFs;
    use shardblob_shards::DataDir;
    let dir = std::env::temp_dir().join(format!("shardblob-races-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = DataDir::lock(&dir).expect("lock");
    run(move || async move {
        let root = data_dir.path().to_path_buf();
        let store = ShardStore::new(DmaFs::new(data_dir).await.expect("dma"), root);
        for k in 0..8 {
            let name = format!("real-{k}").into_bytes();
            let (blob, _) = store.open(PARTITION, &name).await.unwrap();
            blob.write_at(0, &[7; 3 * 4096 + 100]).await.unwrap();
            let ops: [Pin<Box<dyn Future<Output = _>>>; 2] = [
                Box::pin(blob.resize(10)),
                Box::pin(blob.write_at(0, &[7; 5000])),
            ];
            for mut op in ops {
                for _ in 0..k {
                    if poll_once(op.as_mut()).await.is_some() {
                        break;
                    }
                    yield_now().await;
                }
                drop(op);
            }
            // A write waits for dropped commits still in flight; `len`
            // shows a dropped resize once it has landed.
            blob.write_at(0, &[7]).await.unwrap();
            let len = blob.len();
            blob.write_at(len, b"z").await.unwrap();
            let bytes = blob.read_at(0, len as usize + 1).await.unwrap().to_vec();
            assert!(bytes[..len as usize].iter().all(|&b| b == 7), "k {k}");
            assert_eq!(bytes[len as usize], b'z');
            drop(blob);
            let (blob, reopened_len) = store.open(PARTITION, &name).await.unwrap();
            assert_eq!(reopened_len, len + 1, "k {k}");
            assert_eq!(&blob.read_at(0, bytes.len()).await.unwrap()[..], &bytes[..]);
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One operation of [`every_drop_point_leaves_a_consistent_blob`].
#[derive(Clone, Copy, Debug)]
enum DropOp {
    Append,
    Overwrite,
    /// Many device writes: crosses `IO_BYTES_MAX` and every piece of the
    /// default scheduler (`SchedConfig::piece_bytes`) on the way.
    LargeWrite,
    Shrink,
    Grow,
    Sync,
}

impl DropOp {
    /// Runs the op on `blob`; returns the contents it may leave, given the
    /// contents `before` (a write dropped between its pieces leaves a prefix
    /// of whole pieces).
    async fn run(self, blob: &ShardBlob<Device>, before: &[u8], polls: usize) -> Vec<Vec<u8>> {
        let large = shardblob_shards::blob::IO_BYTES_MAX + 3000;
        let (offset, data) = match self {
            DropOp::Append => (before.len(), vec![5; 300]),
            DropOp::Overwrite => (1000, vec![6; 5000]),
            DropOp::LargeWrite => (100, vec![9; large]),
            _ => (0, Vec::new()),
        };
        let op: Pin<Box<dyn Future<Output = shardblob_shards::Result<()>> + '_>> = match self {
            DropOp::Shrink => Box::pin(blob.resize(5000)),
            DropOp::Grow => Box::pin(blob.resize(before.len() as u64 + 7000)),
            DropOp::Sync => Box::pin(blob.sync()),
            _ => Box::pin(blob.write_at(offset as u64, &data)),
        };
        poll_then_drop(op, polls).await;
        let overlay = |upto: usize| {
            let mut after = before.to_vec();
            after.resize(after.len().max(offset + upto), 0);
            after[offset..offset + upto].copy_from_slice(&data[..upto]);
            after
        };
        let mut shrunk = before.to_vec();
        shrunk.truncate(5000);
        let mut grown = before.to_vec();
        grown.resize(before.len() + 7000, 0);
        // Piece boundaries are multiples of the piece in the blob's data.
        let piece = SchedConfig::default().piece_bytes;
        let piece_ends = (1..)
            .map(|k| k * piece - offset)
            .take_while(|&upto| upto < data.len());
        match self {
            DropOp::Shrink => vec![before.to_vec(), shrunk],
            DropOp::Grow => vec![before.to_vec(), grown],
            DropOp::Sync => vec![before.to_vec()],
            DropOp::LargeWrite => std::iter::once(before.to_vec())
                .chain(piece_ends.map(&overlay))
                .chain([overlay(data.len())])
                .collect(),
            _ => vec![before.to_vec(), overlay(data.len())],
        }
    }
}

/// Polls `op` up to `polls` times (yielding between), then drops it.
async fn poll_then_drop<T>(mut op: Pin<Box<dyn Future<Output = T> + '_>>, polls: usize) {
    for _ in 0..polls {
        if poll_once(op.as_mut()).await.is_some() {
            return;
        }
        yield_now().await;
    }
}

/// Every operation that changes a blob, dropped after each number of polls
/// (with device delays that reorder completions): afterwards the blob holds
/// one of the contents the op may leave, its length matches, it reopens the
/// same, and it takes writes and syncs. With the hand-off of dropped commits
/// disabled (as on 58545b6) it fails: a shrink dropped after 1 poll leaves
/// the old length over a truncated file (a short read).
#[test]
fn every_drop_point_leaves_a_consistent_blob() {
    use DropOp::*;
    run(|| async {
        let device = Device::new(8);
        // No zeros written ahead: the tests count the device's writes.
        let store = ShardStore::new(device.clone(), "/").with_preallocate_bytes(0);
        let before: Vec<u8> = (0..3 * 4096 + 100u32)
            .map(|i| (i % 250) as u8 + 1)
            .collect();
        for (n, op) in [Append, Overwrite, LargeWrite, Shrink, Grow, Sync]
            .into_iter()
            .enumerate()
        {
            for polls in 0..12 {
                let name = format!("drop-{n}-{polls}").into_bytes();
                let (blob, _) = store.open(PARTITION, &name).await.unwrap();
                blob.write_at(0, &before).await.unwrap();
                device.delay_next(polls as u32 % 4);
                let allowed = op.run(&blob, &before, polls).await;
                device.settle().await;
                let len = blob.len() as usize;
                let now = blob.read_at(0, len).await.unwrap().to_vec();
                assert!(
                    allowed.contains(&now),
                    "{op:?} dropped after {polls} polls left {len} bytes"
                );
                let reopened = reopened(&store, blob, &name).await;
                assert_eq!(reopened, now, "{op:?} after {polls} polls: reopen");
                let (blob, _) = store.open(PARTITION, &name).await.unwrap();
                blob.write_at(len as u64, b"more").await.unwrap();
                blob.sync().await.unwrap();
            }
        }
    });
}

/// A batch yields each range as it lands: one range slow at the device
/// does not hold back the others of its group. Kills
/// `shards/src/sched/file.rs:100:20: delete ! in drive` (the first range
/// to land waited in the driver until its whole group was in).
#[test]
fn a_read_many_range_is_yielded_before_a_slower_one_of_its_group_lands() {
    run(|| async {
        let device = Device::new(10);
        let (_store, blob) = open(&device, b"order").await;
        let block = BLOCK_SIZE as usize;
        blob.write_at(0, &[1u8; 2 * BLOCK_SIZE as usize])
            .await
            .unwrap();
        // One group (two ranges); the first range is slow.
        device.delay_next(1_000);
        let mut stream = Box::pin(blob.read_many(vec![(0, block), (BLOCK_SIZE, block)]));
        let mut next: Pin<Box<dyn Future<Output = _>>> = Box::pin(stream.next());
        let first = finished_within(next.as_mut(), 100).await;
        drop(next);
        let (index, bytes) = first.expect("waited for the slow range").unwrap().unwrap();
        assert_eq!(index, 1);
        assert!(bytes.iter().all(|&b| b == 1));
        let (index, _) = stream.next().await.unwrap().unwrap();
        assert_eq!(index, 0);
    });
}

/// A caller that takes exactly its ranges from `read_many` and keeps the
/// stream does not hold off a resize of the same blob. Found in review: the
/// stream held the blob's lock until it was dropped, so this resize never
/// completed within the 1000 scheduler steps the test allows.
#[test]
fn a_read_many_stream_that_yielded_every_range_holds_off_nothing() {
    run(|| async {
        let device = Device::new(9);
        let (_store, blob) = open(&device, b"many").await;
        blob.write_at(0, &[7u8; 3 * BLOCK_SIZE as usize])
            .await
            .unwrap();
        let ranges = vec![(0, 10), (BLOCK_SIZE, 10), (2 * BLOCK_SIZE, 10)];
        let mut stream = Box::pin(blob.read_many(ranges.clone()));
        for _ in 0..ranges.len() {
            let (_, bytes) = stream.next().await.expect("a range").unwrap();
            assert_eq!(&bytes[..], &[7u8; 10]);
        }
        // The stream is alive and drained of ranges: a resize must pass.
        let resized =
            futures_lite::future::or(async { Some(blob.resize(BLOCK_SIZE).await) }, async {
                for _ in 0..1000 {
                    yield_now().await;
                }
                None
            })
            .await;
        assert!(
            matches!(resized, Some(Ok(()))),
            "the resize waited on a read_many stream that had yielded every range"
        );
        assert!(stream.next().await.is_none());
    });
}

type Spawned = glommio::task::JoinHandle<shardblob_shards::Result<()>>;
type Pending = Pin<Box<dyn Future<Output = shardblob_shards::Result<()>>>>;

/// A write of `bytes` at `offset` whose device call lands after `delay`
/// yields, polled until it issued that call: it holds the RMW lock while
/// the test lines up writes behind it. Await it to let it finish.
async fn write_in_flight(
    device: &Device,
    blob: &ShardBlob<Device>,
    offset: u64,
    bytes: Vec<u8>,
    delay: u32,
) -> Pending {
    device.delay_next(delay);
    let blob = blob.clone();
    let mut write: Pending = Box::pin(async move { blob.write_at(offset, &bytes).await });
    poll_until_issued(device, write.as_mut()).await;
    write
}

/// A write of `bytes` at `offset`, polled until it waits (for the RMW lock,
/// or queued to join another's device write).
async fn queued_write(blob: &ShardBlob<Device>, offset: u64, bytes: Vec<u8>) -> Pending {
    let blob = blob.clone();
    let mut write: Pending = Box::pin(async move { blob.write_at(offset, &bytes).await });
    assert!(finished_within(write.as_mut(), 4).await.is_none());
    write
}

/// Writes `bytes` at `offset` of `blob` on a task of its own.
fn spawn_write(blob: &ShardBlob<Device>, offset: u64, bytes: Vec<u8>) -> Spawned {
    let blob = blob.clone();
    glommio::spawn_local(async move { blob.write_at(offset, &bytes).await }).detach()
}

/// Appends of 256 bytes of `k + 1` at `base + 256 * k`, for each `k` of
/// `range`, each on a task of its own.
fn spawn_appends(blob: &ShardBlob<Device>, base: u64, range: std::ops::Range<u64>) -> Vec<Spawned> {
    range
        .map(|k| spawn_write(blob, base + 256 * k, vec![k as u8 + 1; 256]))
        .collect()
}

/// Appends that wait for the RMW lock join the device write of the append
/// that takes it next (blob/group.rs): eight appends at depth 8 cost two
/// device writes, not eight, and read back as the eight in order.
#[test]
fn appends_waiting_for_the_lock_share_one_device_write() {
    run(|| appends_share_one_write(0));
}

/// The same far into a blob (past its first piece, where blocks count from
/// a high index). Kills `shards/src/blob/write.rs:126:28: replace - with +
/// in BlobState<F>::write` (there, one-chunk appends counted as writes of
/// several pieces, and never joined).
#[test]
fn appends_far_into_a_blob_join_too() {
    run(|| appends_share_one_write(1 << 20));
}

/// Eight 256 B appends from `base` (the blob holds `base` bytes first), the
/// first in flight while the other seven wait: two device writes.
async fn appends_share_one_write(base: u64) {
    let device = Device::new(11);
    let (store, blob) = open(&device, b"group").await;
    blob.write_at(0, &vec![9; base as usize]).await.unwrap();
    let first = write_in_flight(&device, &blob, base, vec![1; 256], 50).await;
    let issued = device.issued();
    let rest = spawn_appends(&blob, base, 1..8);
    first.await.unwrap();
    for append in rest {
        append.await.unwrap().unwrap();
    }
    assert_eq!(
        device.issued() - issued,
        1,
        "the seven waiting appends in one write"
    );
    let joined = store.stats().snapshot().writes_joined;
    assert_eq!(joined, 6, "six joined the write of the seventh");
    let expected: Vec<u8> = (0..8u8).flat_map(|k| [k + 1; 256]).collect();
    assert_eq!(&blob.read_at(base, 2048).await.unwrap()[..], &expected[..]);
    let reopened = reopened(&store, blob, b"group").await;
    assert_eq!(&reopened[base as usize..], &expected[..]);
}

/// A queued append dropped before a writer took it never lands: the write
/// that takes the lock next, which it continues, finds it gone, and the
/// append after it, no longer contiguous, writes on its own. The gap reads
/// as zeros.
#[test]
fn a_queued_append_dropped_before_it_is_taken_never_lands() {
    run(|| async {
        let device = Device::new(12);
        let (_store, blob) = open(&device, b"dropped").await;
        let first = write_in_flight(&device, &blob, 0, vec![1; 100], 50).await;
        // The next writer: it ends where the dropped append begins.
        let next = spawn_write(&blob, 100, vec![2; 156]);
        let dropped = queued_write(&blob, 256, vec![3; 256]).await;
        let last = spawn_write(&blob, 512, vec![4; 256]);
        drop(dropped);
        first.await.unwrap();
        next.await.unwrap().unwrap();
        last.await.unwrap().unwrap();
        let bytes = blob.read_at(0, 768).await.unwrap().to_vec();
        assert_eq!(&bytes[..100], &[1; 100]);
        assert_eq!(&bytes[100..256], &[2; 156]);
        assert_eq!(&bytes[256..512], &[0; 256], "the dropped append landed");
        assert_eq!(&bytes[512..], &[4; 256]);
    });
}

/// A queued append dropped after a writer took it lands with that writer's
/// device write, whole, and a later write of the same bytes lands after it.
#[test]
fn a_taken_append_dropped_lands_before_a_later_write() {
    run(|| async {
        let device = Device::new(14);
        let (_store, blob) = open(&device, b"taken").await;
        let first = write_in_flight(&device, &blob, 0, vec![1; 100], 50).await;
        let first = glommio::spawn_local(first).detach();
        let next = spawn_write(&blob, 100, vec![2; 100]);
        let mut taken = queued_write(&blob, 200, vec![3; 100]).await;
        // The next device call is the writer's, with the queued append in.
        device.delay_next(50);
        poll_until_issued(&device, taken.as_mut()).await;
        drop(taken);
        first.await.unwrap().unwrap();
        next.await.unwrap().unwrap();
        assert_eq!(blob.len(), 300, "the taken append's bytes count");
        blob.write_at(200, &[9; 100]).await.unwrap();
        device.settle().await;
        let bytes = blob.read_at(0, 300).await.unwrap().to_vec();
        assert_eq!(&bytes[100..200], &[2; 100]);
        assert_eq!(&bytes[200..], &[9; 100], "the later write lands last");
    });
}

/// When the device write that appends joined fails, every one of them
/// fails with the same OS error, and none adds length.
#[test]
fn a_failed_joined_write_fails_every_append_in_it() {
    run(|| async {
        let device = Device::new(13);
        let (_store, blob) = open(&device, b"failed").await;
        blob.write_at(0, &[9; 100]).await.unwrap();
        let first = write_in_flight(&device, &blob, 100, vec![1; 156], 50).await;
        let rest = spawn_appends(&blob, 0, 1..4);
        first.await.unwrap();
        // The next device call is the write the three appends joined.
        device.fs.set_faults(Faults::at_op(device.fs.op_count()));
        let mut errors = Vec::new();
        for append in rest {
            errors.push(append.await.unwrap().unwrap_err());
        }
        device.fs.set_faults(Faults::default());
        assert_eq!(
            device.fs.injected_faults(),
            1,
            "one device write for the three"
        );
        let source = |e: &shardblob_shards::Error| match e {
            shardblob_shards::Error::Io { source, .. } => (source.kind(), source.raw_os_error()),
            other => panic!("not an I/O error: {other}"),
        };
        let leader = source(&errors[0]);
        for error in &errors[1..] {
            assert_eq!(source(error), leader, "{error} against {}", errors[0]);
        }
        assert_eq!(blob.len(), 256);
    });
}

/// A write taken into another's device write is answered even when that
/// write's commit is dropped unrun (its caller panicked while it was in
/// flight: blob/commit.rs drops a commit rather than spawn during a
/// panic): it fails instead of waiting for ever. Kills
/// `shards/src/blob/group.rs:149:9: replace <impl Drop for Run>::drop
/// with ()`.
#[test]
fn a_taken_append_is_answered_when_its_writer_is_abandoned() {
    run(|| async {
        let device = Device::new(15);
        let (_store, blob) = open(&device, b"abandoned").await;
        let first = write_in_flight(&device, &blob, 0, vec![1; 100], 50).await;
        let mut writer = queued_write(&blob, 100, vec![2; 100]).await;
        let taken = spawn_write(&blob, 200, vec![3; 100]);
        first.await.unwrap();
        device.delay_next(50);
        poll_until_issued(&device, writer.as_mut()).await;
        // The writer's caller panics with its commit in flight.
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _writer = writer;
            panic!("the writer's caller panics");
        }));
        assert!(unwound.is_err());
        let mut taken: Pin<Box<dyn Future<Output = _>>> = Box::pin(taken);
        let answer = finished_within(taken.as_mut(), 100).await;
        let error = answer.expect("the taken append waits for ever").unwrap();
        let error = error.expect_err("its device write was abandoned");
        assert!(error.to_string().contains("abandoned"), "{error}");
    });
}

/// A write over the join bound (16 KiB: a copy of its bytes would wait in
/// the queue) never queues: it waits for the lock and writes on its own.
/// Kills `shards/src/blob/write.rs:128:33: replace && with || in
/// BlobState<F>::write`.
#[test]
fn a_write_over_the_join_bound_never_joins() {
    run(|| async {
        let device = Device::new(16);
        let (store, blob) = open(&device, b"bound").await;
        let first = write_in_flight(&device, &blob, 0, vec![1; 100], 200).await;
        let next = spawn_write(&blob, 100, vec![2; 100]);
        let large = spawn_write(&blob, 200, vec![3; (16 << 10) + 1]);
        first.await.unwrap();
        next.await.unwrap().unwrap();
        large.await.unwrap().unwrap();
        assert_eq!(store.stats().snapshot().writes_joined, 0);
        assert_eq!(blob.len(), 200 + (16 << 10) + 1);
    });
}

/// Only writes at or past the end queue (only those can continue a write
/// that extends the blob): small overwrites inside the blob waiting for
/// the lock leave the queue's room to the appends. Kills
/// `shards/src/blob/write.rs:128:60: replace && with || in
/// BlobState<F>::write` (64 waiting overwrites filled the queue, and the
/// append after them wrote on its own).
#[test]
fn overwrites_inside_the_blob_leave_the_queue_to_appends() {
    run(|| async {
        let device = Device::new(17);
        let (store, blob) = open(&device, b"room").await;
        blob.write_at(0, &[1; 4096]).await.unwrap();
        let first = write_in_flight(&device, &blob, 4096, vec![2; 100], 200).await;
        let next = spawn_write(&blob, 4196, vec![3; 100]);
        let overwrites: Vec<_> = (0..64)
            .map(|k| spawn_write(&blob, 10 * k + 1, vec![4; 5]))
            .collect();
        let joined = spawn_write(&blob, 4296, vec![5; 100]);
        first.await.unwrap();
        for write in overwrites.into_iter().chain([next, joined]) {
            write.await.unwrap().unwrap();
        }
        assert_eq!(store.stats().snapshot().writes_joined, 1);
        let bytes = blob.read_at(4096, 300).await.unwrap().to_vec();
        assert_eq!(&bytes[200..], &[5; 100]);
    });
}

/// The device write that appends joined leaves the new tail block cached,
/// also past the blob's first block: the next append merges into it
/// without reading the device. Kills `shards/src/blob/write.rs:290:44:
/// replace / with % in BlobState<F>::joined_chunk` (and `with *`), which
/// lost the tail block of every joined write past block 0.
#[test]
fn a_joined_write_leaves_the_tail_block_cached() {
    run(|| async {
        let device = Device::new(18);
        let (store, blob) = open(&device, b"tail").await;
        blob.write_at(0, &[1; 4196]).await.unwrap();
        let first = write_in_flight(&device, &blob, 4196, vec![2; 100], 200).await;
        let next = spawn_write(&blob, 4296, vec![3; 100]);
        let joined = spawn_write(&blob, 4396, vec![4; 100]);
        first.await.unwrap();
        next.await.unwrap().unwrap();
        joined.await.unwrap().unwrap();
        assert_eq!(store.stats().snapshot().writes_joined, 1);
        let issued = device.issued();
        blob.write_at(4496, &[5; 10]).await.unwrap();
        assert_eq!(
            device.issued() - issued,
            1,
            "the append read the tail block"
        );
        let bytes = blob.read_at(4096, 410).await.unwrap().to_vec();
        assert_eq!(&bytes[300..400], &[4; 100]);
        assert_eq!(&bytes[400..], &[5; 10]);
    });
}

/// A zero-copy write hands the caller's buffer to the device as it is,
/// when it extends the blob (under the RMW lock) and when it overwrites
/// it, and gives the same buffer back; an unaligned one is copied. A
/// write path that copied every buffer shows the device other addresses.
#[test]
fn an_aligned_buffer_write_reaches_the_device_as_it_is() {
    run(|| async {
        let device = Device::new(21);
        let (_store, blob) = open(&device, b"zero-copy").await;
        // The open wrote the header page.
        let header_writes = device.control.written_from.borrow().len();
        let block = BLOCK_SIZE as usize;
        let mut buf = blob.alloc_buf(2 * block).unwrap();
        buf.fill(7);
        let from = buf.as_ptr() as usize;
        let buf = blob.write_buf_at(0, buf, WriteOptions::NONE).await;
        let buf = blob.write_buf_at(block as u64, buf.unwrap(), WriteOptions::NONE);
        let mut buf = buf.await.unwrap();
        buf.fill(9);
        let buf = blob.write_buf_at(0, buf, WriteOptions::SYNC).await.unwrap();
        assert_eq!(buf.as_ptr() as usize, from, "the same buffer comes back");
        assert_eq!(
            device.control.written_from.borrow()[header_writes..],
            [from; 3],
            "every device write came from the caller's buffer"
        );
        let bytes = blob.read_at(0, 3 * block).await.unwrap().to_vec();
        assert!(bytes[..2 * block].iter().all(|&b| b == 9));
        assert!(bytes[2 * block..].iter().all(|&b| b == 7));
        let mut odd = blob.alloc_buf(100).unwrap();
        odd.fill(5);
        let odd_from = odd.as_ptr() as usize;
        blob.write_buf_at(10, odd, WriteOptions::NONE)
            .await
            .unwrap();
        let last = device.control.written_from.borrow().last().copied();
        assert_ne!(
            last,
            Some(odd_from),
            "an unaligned write is merged in a copy"
        );
    });
}

/// A dropped zero-copy overwrite still in flight lands before a later one
/// (it takes no RMW lock: only the wait for orphaned commits orders them).
#[test]
fn a_dropped_buffer_write_never_lands_after_a_later_one() {
    run(|| async {
        let device = Device::new(22);
        let (_store, blob) = open(&device, b"over").await;
        let block = BLOCK_SIZE as usize;
        blob.write_at(0, &vec![1; 2 * block]).await.unwrap();
        let mut dropped = blob.alloc_buf(block).unwrap();
        dropped.fill(2);
        device.delay_next(50);
        drop_after_issue(&device, blob.write_buf_at(0, dropped, WriteOptions::NONE)).await;
        let mut later = blob.alloc_buf(block).unwrap();
        later.fill(3);
        blob.write_buf_at(0, later, WriteOptions::NONE)
            .await
            .unwrap();
        device.settle().await;
        let bytes = blob.read_at(0, block).await.unwrap();
        assert!(bytes.iter().all(|&b| b == 3), "the later write wins");
    });
}

/// A buffer larger than one piece is copied into the pieces of a copying
/// write (a device write never covers more than one piece).
#[test]
fn a_buffer_over_one_piece_is_written_in_copied_pieces() {
    run(|| async {
        let device = Device::new(23);
        let (store, blob) = open(&device, b"long").await;
        let piece = store.scheduler().config().piece_bytes;
        let mut buf = blob.alloc_buf(piece + BLOCK_SIZE as usize).unwrap();
        buf.fill(4);
        let from = buf.as_ptr() as usize;
        let issued = device.issued();
        let buf = blob.write_buf_at(0, buf, WriteOptions::NONE).await.unwrap();
        assert_eq!(device.issued() - issued, 2, "two pieces");
        let copied = !device.control.written_from.borrow().contains(&from);
        assert!(copied, "copied into the pieces");
        let bytes = blob.read_at(0, buf.len()).await.unwrap();
        assert!(bytes.iter().all(|&b| b == 4));
    });
}

/// A zero-copy write over the cached tail block of an unaligned end
/// replaces it: a later append merges with the new bytes, not the cached
/// old ones.
#[test]
fn a_buffer_write_over_the_tail_block_replaces_it() {
    run(|| async {
        let device = Device::new(24);
        let (store, blob) = open(&device, b"tail").await;
        let block = BLOCK_SIZE as usize;
        blob.write_at(0, &[1; 5000]).await.unwrap();
        let mut buf = blob.alloc_buf(block).unwrap();
        buf.fill(2);
        blob.write_buf_at(BLOCK_SIZE, buf, WriteOptions::NONE)
            .await
            .unwrap();
        blob.write_at(2 * BLOCK_SIZE - 10, &[3; 20]).await.unwrap();
        let mut expected = vec![1; block];
        expected.extend(vec![2; block - 10]);
        expected.extend([3; 20]);
        assert_eq!(blob.read_at(0, expected.len()).await.unwrap()[..], expected);
        assert_eq!(reopened(&store, blob, b"tail").await, expected);
    });
}

/// A zero-copy append that finds the RMW lock taken joins the device write
/// of the append that takes it next, as any small append does; one that
/// holds the lock takes the waiting appends and gets its own buffer back.
#[test]
fn buffer_appends_join_the_writes_waiting_for_the_lock() {
    run(|| async {
        let device = Device::new(25);
        let (store, blob) = open(&device, b"join").await;
        let block = BLOCK_SIZE as usize;
        let first = write_in_flight(&device, &blob, 0, vec![1; 100], 50).await;
        let issued = device.issued();
        let appends = (1..4u8).map(|k| {
            let blob = blob.clone();
            glommio::spawn_local(async move {
                let mut buf = blob.alloc_buf(block).unwrap();
                buf.fill(k + 1);
                let from = buf.as_ptr();
                let at = u64::from(k) * BLOCK_SIZE;
                let buf = blob.write_buf_at(at, buf, WriteOptions::NONE).await;
                assert_eq!(buf.unwrap().as_ptr(), from, "its own buffer back");
            })
        });
        let appends: Vec<_> = appends.collect();
        first.await.unwrap();
        for append in appends {
            append.await;
        }
        assert_eq!(
            device.issued() - issued,
            1,
            "the waiting appends in one write"
        );
        let joined = store.stats().snapshot().writes_joined;
        assert_eq!(joined, 2, "two joined the write of the third");
        let mut expected = vec![1; 100];
        expected.resize(block, 0);
        (1..4u8).for_each(|k| expected.extend(vec![k + 1; block]));
        assert_eq!(blob.read_at(0, 4 * block).await.unwrap()[..], expected);
    });
}

/// A device that keeps a written buffer: the write gives back a new,
/// zeroed buffer of the same length.
#[test]
fn a_buffer_the_device_keeps_is_replaced_by_a_zeroed_one() {
    run(|| async {
        let device = Device::new(26);
        let (_store, blob) = open(&device, b"kept").await;
        device.control.keep_buffers.set(true);
        let mut buf = blob.alloc_buf(BLOCK_SIZE as usize).unwrap();
        buf.fill(7);
        let buf = blob.write_buf_at(0, buf, WriteOptions::NONE).await.unwrap();
        assert_eq!(buf.len(), BLOCK_SIZE as usize);
        assert!(buf.iter().all(|&b| b == 0), "a new zeroed buffer");
        let bytes = blob.read_at(0, BLOCK_SIZE as usize).await.unwrap();
        assert!(bytes.iter().all(|&b| b == 7), "the write landed");
    });
}

/// A waiting append that would carry its writer's device write past one
/// piece (counted from the writer's first block) does not join it: it goes
/// out on its own. Kills `shards/src/blob/write.rs:205:54: replace / with
/// *` and `206:34: replace / with %` in `BlobState<F>::joins_up_to`
/// (there, the bound of a joined run moved far past the piece).
#[test]
fn appends_never_join_past_their_writers_piece() {
    run(|| async {
        let device = Device::new(27);
        let (store, blob) = open(&device, b"bound").await;
        let piece = store.scheduler().config().piece_bytes;
        let first = write_in_flight(&device, &blob, 0, vec![1; 256], 50).await;
        let issued = device.issued();
        // The writer that takes the lock next, at block 0, then 16 KiB
        // appends that continue it up to past its piece.
        let mut expected = vec![1; 256];
        let mut waiting = vec![spawn_write(&blob, 256, vec![2; 256])];
        expected.extend([2; 256]);
        while expected.len() <= piece {
            let bytes = vec![expected.len() as u8; 16 << 10];
            waiting.push(spawn_write(&blob, expected.len() as u64, bytes.clone()));
            expected.extend(bytes);
        }
        first.await.unwrap();
        for write in waiting {
            write.await.unwrap().unwrap();
        }
        assert_eq!(
            device.issued() - issued,
            2,
            "the append past the piece alone"
        );
        let joined = store.stats().snapshot().writes_joined;
        assert_eq!(joined, (piece / (16 << 10) - 1) as u64, "the others joined");
        assert_eq!(blob.read_at(0, expected.len()).await.unwrap()[..], expected);
    });
}

/// The store of the zeros-ahead tests: zeros ahead in steps of 64 KiB.
async fn open_zeroing(device: &Device, name: &[u8]) -> (ShardStore<Device>, ShardBlob<Device>) {
    let store = ShardStore::new(device.clone(), "/").with_preallocate_bytes(64 << 10);
    let (blob, _) = store.open(PARTITION, name).await.expect("open");
    (store, blob)
}

/// Yields the zero writes ahead of the tests' appends wait before landing:
/// far more than any bounded wait of these tests.
const ZEROS_LAND_AFTER_YIELDS: u32 = 2_000;

/// Caught on 95593c6: the append that grew the file of a blob that syncs
/// wrote the zeros ahead (up to the next step) inside its own commit and
/// waited for them, which
/// put one append in 256 at about 1.5 ms (issue 13). They are now written
/// on a task of their own, which the append does not wait for.
#[test]
fn an_append_does_not_wait_for_the_zeros_it_starts_ahead() {
    run(|| async {
        let device = Device::new(28);
        let (_store, blob) = open_zeroing(&device, b"ahead").await;
        blob.write_at(0, &[1; 100]).await.unwrap();
        blob.sync().await.unwrap();
        // Past the first step of zeros (where 95593c6 had zeroed already):
        // the zeros start past its 17 blocks (and a lead).
        let bytes = vec![5; 64 << 10];
        let zeros_from = shardblob_shards::header::HEADER_LEN + 17 * BLOCK_SIZE;
        device.slow_writes_from(zeros_from, ZEROS_LAND_AFTER_YIELDS);
        let mut append = pin!(blob.write_at(100, &bytes));
        let appended = finished_within(append.as_mut(), STEPS_MAX / 100).await;
        assert!(
            appended
                .expect("the append finished before the zeros landed")
                .is_ok(),
            "the append succeeds"
        );
        assert!(
            device.control.in_flight.get() > 0,
            "the zeros are in flight"
        );
        device.settle().await;
    });
}

/// An append whose blocks reach into the zeros being written ahead waits
/// for them: zeros landing after it would overwrite its bytes.
#[test]
fn an_append_into_zeros_in_flight_lands_after_them() {
    run(|| async {
        let device = Device::new(29);
        let (_store, blob) = open_zeroing(&device, b"into").await;
        blob.write_at(0, &[1; 100]).await.unwrap();
        blob.sync().await.unwrap();
        // Starts the zeros ahead: none are there yet, so from a lead past
        // its block on.
        let zeros_from = BLOCK_SIZE + ZERO_LEAD_BYTES;
        let header = shardblob_shards::header::HEADER_LEN;
        device.slow_writes_from(header + zeros_from, ZEROS_LAND_AFTER_YIELDS);
        blob.write_at(100, &[2; 100]).await.unwrap();
        for _ in 0..16 {
            yield_now().await;
        }
        assert!(
            device.control.in_flight.get() > 0,
            "the zeros are in flight"
        );
        // An append (no gap) whose last block is past where they start: it
        // lands at once, unless it waits for the zeros.
        device.slow_writes_from(u64::MAX, 0);
        let bytes = vec![3; (zeros_from + BLOCK_SIZE - 200) as usize];
        blob.write_at(200, &bytes).await.unwrap();
        device.settle().await;
        let seen = blob.read_at(200, bytes.len()).await.unwrap();
        assert!(seen.iter().all(|&b| b == 3), "the append kept its bytes");
    });
}

/// Caught on 95593c6 (with zeros ahead on a task of their own, and already
/// for a dropped write's commit): the blob stayed open until that work
/// landed, so an open right after the last handle's drop failed with
/// `BlobAlreadyOpen`. The open now waits for the close, which gives the
/// space past the end back.
#[test]
fn an_open_right_after_the_close_waits_for_the_work_in_flight() {
    run(|| async {
        let device = Device::new(30);
        let (store, blob) = open_zeroing(&device, b"reopen").await;
        blob.write_at(0, &[1; 100]).await.unwrap();
        device.delay_next(50);
        drop_after_issue(&device, blob.write_at(100, &[2; 100])).await;
        drop(blob);
        let (blob, len) = store.open(PARTITION, b"reopen").await.expect("reopen");
        assert_eq!(len, 200, "the dropped write landed before the close");
        blob.sync().await.unwrap();
        let data_from = shardblob_shards::header::HEADER_LEN + BLOCK_SIZE;
        device.slow_writes_from(data_from, 200);
        blob.write_at(200, &[3; BLOCK_SIZE as usize]).await.unwrap();
        drop(blob);
        let (_blob, len) = store.open(PARTITION, b"reopen").await.expect("reopen");
        assert_eq!(len, 200 + BLOCK_SIZE);
        let dir = Path::new("/").join(PARTITION);
        let entries = device.fs.list_dir(&dir).unwrap();
        let [entry] = &entries[..] else {
            panic!("one blob file: {entries:?}")
        };
        let file = device.fs.open_file(&dir.join(&entry.name), false).await;
        let size = file.unwrap().size().await.unwrap();
        let header = shardblob_shards::header::HEADER_LEN;
        assert_eq!(size, header + len, "no zeros landed after the reopen");
    });
}

/// While a run of zeros is in flight, an append near the zeroed end that
/// does not reach into the run starts no second run, so an append into
/// the run's range still waits for it (a second run moved the point writes
/// wait from past the first, whose zeros then landed over that append).
#[test]
fn an_append_into_a_run_in_flight_waits_though_later_appends_came_first() {
    run(|| async {
        let device = Device::new(31);
        let store = ShardStore::new(device.clone(), "/");
        let (blob, _) = store.open(PARTITION, b"runs").await.expect("open");
        let large = 1 << 20;
        blob.write_at(0, &vec![1; large as usize]).await.unwrap();
        blob.sync().await.unwrap();
        // The first run, slow: a lead past this append's block.
        let run_from = large + BLOCK_SIZE + ZERO_LEAD_BYTES;
        let header = shardblob_shards::header::HEADER_LEN;
        device.slow_writes_from(header + run_from, ZEROS_LAND_AFTER_YIELDS);
        blob.write_at(large, &[2; 100]).await.unwrap();
        for _ in 0..16 {
            yield_now().await;
        }
        assert!(device.control.in_flight.get() > 0, "the run is in flight");
        device.slow_writes_from(u64::MAX, 0);
        // Within half a step (1 MiB) of the zeroed end, short of the run.
        blob.write_at(large + 100, &[3; 100]).await.unwrap();
        // Into the run's first block: it waits for the run.
        let into = vec![4; (run_from + BLOCK_SIZE - large - 200) as usize];
        blob.write_at(large + 200, &into).await.unwrap();
        device.settle().await;
        let seen = blob.read_at(large + 200, into.len()).await.unwrap();
        assert!(seen.iter().all(|&b| b == 4), "the append kept its bytes");
    });
}
