//! Cancellation on the forwarded paths: a write, resize or sync whose
//! caller left keeps the promises of the `Blob` contract (`shards/src/api.rs`,
//! Cancellation) when a foreign thread or another shard made the call.

mod support;

use futures::executor::block_on;
use futures_lite::future::poll_once;
use shardblob::{Blob, ClientBlob, Storage};
use support::ftrace::{flushes_between, inode, Tracer};
use support::{block_shard, partition_on, reopen, start, without_hanging};

const BLOCK: usize = 4096;
/// A write of many pieces (128 KiB by default), written one after another by the shard:
/// its last chunk goes out long after a one-block write issued beside it.
const BIG: usize = 64 << 20;
const ROUNDS: u8 = 8;
/// Reads a test makes while it waits for a big write to show its first
/// block; each is a round trip, so this only bounds a regression.
const PROBES_MAX: usize = 1_000_000;

/// Opens a blob of `BIG` bytes on shard 0, with a byte budget that lets a
/// big write and small requests be served side by side.
fn big_blob(test: &str) -> (shardblob::Engine, std::path::PathBuf, ClientBlob) {
    let (engine, dir) = start(test, |c| c.queue_bytes_per_shard_max = 4 * BIG as u64);
    let partition = partition_on(&engine, 0, "p");
    let client = engine.client();
    let (blob, _) = block_on(client.open(&partition, b"big")).unwrap();
    block_on(blob.resize(BIG as u64)).unwrap();
    (engine, dir, blob)
}

/// Waits until the shard has written the first block of a write of
/// `byte`s: the write started and its later chunks are still to come.
async fn wait_for_first_block<B: Blob>(blob: &B, byte: u8) {
    for _ in 0..PROBES_MAX {
        if blob
            .read_at(0, BLOCK)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == byte)
        {
            return;
        }
    }
    panic!("the big write never showed its first block");
}

/// Waits until every write of `blob` issued so far has landed, the dropped
/// ones included: a resize (here to the same length) waits for every write
/// that holds the blob's shared lock, and a write holds it until its last
/// chunk is on the device, on its caller's task or as an orphan.
async fn landed<B: Blob>(blob: &B) {
    blob.resize(BIG as u64).await.unwrap();
}

/// A forwarded version of `shards/tests/store/blob_races.rs`'s
/// `a_dropped_overwrite_never_lands_after_a_later_one`.
///
/// Each round starts a 64 MiB aligned overwrite from a foreign thread,
/// waits until its first piece is on the device (so the shard's
/// handler is running it), drops its future, then overwrites the last
/// block and reads it back: the later write must win. What it forces: the
/// dropped write has hundreds of pieces still to write, one after another, when the
/// one-block write is issued; before the fix the shard's handler kept
/// polling the dropped write (it was never an orphan, so the later write
/// did not wait for it) and its last chunk landed on top of the later
/// write. Failed before the fix: the last block held the dropped write's
/// bytes. After the fix the handler drops the write when its caller leaves:
/// the chunk in flight becomes an orphan the later write waits for, and
/// the chunks after it are never written. The read back comes after a
/// resize, which waits for every write still in flight (`landed`). It
/// cannot force the device to
/// complete a single pair of writes out of order.
#[test]
fn a_dropped_forwarded_overwrite_never_lands_after_a_later_one() {
    without_hanging(|| {
        let (engine, dir, blob) = big_blob("fwd-overwrite");
        block_on(overwrite_rounds(&blob));
        drop(blob);
        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    })
}

/// The same from another shard (shard 1 forwards to shard 0). Failed
/// before the fix like the foreign version.
#[test]
fn a_dropped_cross_shard_overwrite_never_lands_after_a_later_one() {
    without_hanging(|| {
        let (engine, dir, blob) = big_blob("peer-overwrite");
        drop(blob);
        let partition = partition_on(&engine, 0, "p");
        let done = engine.client().spawn_on(1, move |storage| async move {
            let (blob, _) = storage.open(&partition, b"big").await.unwrap();
            overwrite_rounds(&blob).await;
        });
        block_on(done).unwrap();
        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    })
}

/// The rounds of the overwrite tests: drop a big write once it started,
/// overwrite its last block, check the later write won.
async fn overwrite_rounds<B: Blob>(blob: &B) {
    for round in 0..ROUNDS {
        let (dropped, later) = (2 * round + 1, 2 * round + 2);
        let data = vec![dropped; BIG];
        let mut write = Box::pin(blob.write_at(0, &data));
        assert!(poll_once(&mut write).await.is_none(), "a 64 MiB write");
        wait_for_first_block(blob, dropped).await;
        drop(write);
        let at = (BIG - BLOCK) as u64;
        blob.write_at(at, &[later; BLOCK]).await.unwrap();
        landed(blob).await;
        let bytes = blob.read_at(at, BLOCK).await.unwrap();
        assert!(
            bytes.iter().all(|&b| b == later),
            "round {round}: the dropped write landed after the later one"
        );
    }
}

/// A forwarded write whose caller left while it was still queued is never
/// started (as a forwarded open already was not).
///
/// Shard 0 is held busy while a 64 MiB write is queued and its future
/// dropped; then a one-block write to the last block is awaited. Failed
/// before the fix: the shard ran the dropped write anyway, its first block
/// showed its bytes and its last chunk landed after the later write.
#[test]
fn a_forwarded_write_dropped_while_queued_never_starts() {
    without_hanging(|| {
        let (engine, dir, blob) = big_blob("fwd-queued");
        let client = engine.client();
        block_on(async {
            blob.write_at(0, &vec![1; BIG]).await.unwrap();
            let (release, blocked) = block_shard(&client, 0);
            let data = vec![2; BIG];
            let mut write = Box::pin(blob.write_at(0, &data));
            assert!(
                poll_once(&mut write).await.is_none(),
                "the shard is blocked"
            );
            drop(write);
            release.send(()).unwrap();
            assert!(blocked.await.unwrap(), "the test released the shard");
            let at = (BIG - BLOCK) as u64;
            blob.write_at(at, &[3; BLOCK]).await.unwrap();
            landed(&blob).await;
            let first = blob.read_at(0, BLOCK).await.unwrap();
            assert!(first.iter().all(|&b| b == 1), "the dropped write ran");
            let last = blob.read_at(at, BLOCK).await.unwrap();
            assert!(last.iter().all(|&b| b == 3), "the later write lost");
        });
        drop(blob);
        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    })
}

/// A forwarded `sync` whose future is dropped, followed at once by the
/// drop of the blob's last handle, still flushes the blob (the contract: a
/// dropped sync still flushes).
///
/// Shard 0 (one in-flight request at a time) is held busy while a big
/// write to another blob, the sync (polled once, then dropped) and the
/// handle's close notice are queued; the blob's name is then reopened,
/// which succeeds only once the shard let the blob go. ext4's flush
/// tracepoint must show a flush of the blob's inode before that. Failed
/// before the fix: the sync request carried only the blob's id, the close
/// notice was served while the big write held the in-flight permit, and
/// the sync then found no blob, answered `Shutdown` and never flushed.
#[test]
fn a_dropped_forwarded_sync_still_flushes_after_the_handle_is_dropped() {
    without_hanging(|| {
        let (engine, dir) = start("fwd-sync", |c| {
            c.inflight_per_shard_max = 1;
            c.queue_bytes_per_shard_max = 64 << 20;
        });
        let client = engine.client();
        let partition = partition_on(&engine, 0, "p");
        let tracer = Tracer::start("fwd-sync");
        block_on(async {
            let (blob, _) = client.open(&partition, b"synced").await.unwrap();
            let (other, _) = client.open(&partition, b"other").await.unwrap();
            blob.write_at(0, &[7; 100]).await.unwrap();
            let ino = inode(&dir.join(&partition).join(hex(b"synced")));
            tracer.mark("fwd-sync begin");
            let (release, blocked) = block_shard(&client, 0);
            let data = vec![9; 8 << 20];
            let mut filler = Box::pin(other.write_at(0, &data));
            assert!(
                poll_once(&mut filler).await.is_none(),
                "the shard is blocked"
            );
            let mut sync = Box::pin(blob.sync());
            assert!(poll_once(&mut sync).await.is_none(), "the shard is blocked");
            drop(sync);
            drop(blob);
            release.send(()).unwrap();
            assert!(blocked.await.unwrap(), "the test released the shard");
            filler.await.unwrap();
            reopen(&client, &partition, b"synced").await;
            tracer.mark("fwd-sync end");
            let seen = flushes_between(&tracer.events(), "fwd-sync begin", "fwd-sync end")
                .expect("markers in the trace");
            assert!(
                seen.iter().any(|&(i, _)| i == ino),
                "the dropped sync never flushed the blob (inode {ino}); flushes: {seen:?}"
            );
        });
        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    })
}

fn hex(name: &[u8]) -> String {
    shardblob_shards::name::hex(name)
}

/// The bytes of a forwarded `read_many` count against the owning shard's
/// byte budget until the stream has read them or is dropped, not only
/// while the shard reads them.
///
/// Shard 0 serves one request at a time and has a 2 MiB budget. A
/// `read_many` of two 1 MiB ranges takes the whole budget; the test reads
/// one item and keeps the stream. A sync (served after the read, since the
/// shard serves one request at a time) shows that the shard is done with
/// the read. Then a `spawn_on` future is made and dropped at once: its job
/// is queued only if the budget has room right now. Failed before the fix:
/// the shard gave the budget back when it had sent the items, so the job
/// was queued and ran while the unread megabyte still sat in the stream.
#[test]
fn forwarded_read_many_bytes_count_until_the_stream_is_done() {
    without_hanging(|| {
        let (engine, dir) = start("fwd-read-many", |c| {
            c.inflight_per_shard_max = 1;
            c.queue_bytes_per_shard_max = 2 << 20;
        });
        let client = engine.client();
        let partition = partition_on(&engine, 0, "p");
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        block_on(async {
            let (blob, _) = client.open(&partition, b"read").await.unwrap();
            blob.write_at(0, &vec![5; 2 << 20]).await.unwrap();
            let mut items = Box::pin(blob.read_many(vec![(0, 1 << 20), (1 << 20, 1 << 20)]));
            let first = futures_lite::StreamExt::next(&mut items).await;
            assert!(matches!(first, Some(Ok(_))), "the first range reads");
            blob.sync().await.unwrap();
            let runs = ran.clone();
            drop(client.spawn_on(0, move |_| async move {
                runs.store(true, std::sync::atomic::Ordering::SeqCst)
            }));
            drop(items);
            client.spawn_on(0, |_| async {}).await.unwrap();
        });
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "a job was queued while an unread megabyte held the whole budget"
        );
        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    })
}
