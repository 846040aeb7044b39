//! Syncs of a blob whose length is not block-aligned (issue 13, item 2).
//!
//! The length lives in the header's slots (format 2, shards/src/header.rs),
//! so a sync writes the slot and flushes: it cuts no padding, and waits
//! for no write. Reads and writes go on beside it.
//!
//! - `a_sync_does_not_wait_for_reads_or_aligned_writes`: a read and an
//!   aligned write in flight (each polled once, so each holds the blob's
//!   shared lock inside its device call) do not stop a sync from
//!   finishing. On cadb6da the sync waited for the exclusive lock.
//! - `a_sync_never_cuts_an_append_in_flight`: a sync that starts while an
//!   append's device write is in flight loses nothing of the append; after
//!   a crash the blob has a length the sync saw.
//! - `an_unaligned_sync_changes_no_file_size_on_real_files`: on real files
//!   appends grow the file ahead with zeros, a sync records the length in
//!   its slot and changes no file size; the close cuts the file.
//! - `a_stream_of_appends_does_not_starve_a_sync`: a task appending in a
//!   loop does not keep a sync from finishing.

use crate::common;

use std::cell::Cell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::rc::Rc;

use common::run_seeds;
use futures_lite::future::{poll_once, yield_now};
use glommio::{LocalExecutorBuilder, Placement};
use shardblob_shards::blob::{PREALLOCATE_BYTES, ZERO_AHEAD_MIN_BYTES, ZERO_LEAD_BYTES};
use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::fs::sim::SimFs;
use shardblob_shards::header;
use shardblob_shards::{Blob, DataDir, ShardBlob, ShardStore, Storage};

const BLOCK_BYTES: u64 = 4096;
/// Length of the blob under test: three whole blocks and 100 bytes.
const LEN_BYTES: u64 = 3 * BLOCK_BYTES + 100;

/// A blob of `LEN_BYTES` whose last block was written since the last sync:
/// the file holds zero padding past the logical end.
async fn padded_blob(fs: &SimFs) -> (ShardStore<SimFs>, ShardBlob<SimFs>) {
    let store = ShardStore::new(fs.clone(), "/");
    let (blob, _) = store.open("p", b"a").await.unwrap();
    blob.write_at(0, &[1; 3 * BLOCK_BYTES as usize])
        .await
        .unwrap();
    blob.sync().await.unwrap();
    blob.write_at(3 * BLOCK_BYTES, &[2; 100]).await.unwrap();
    (store, blob)
}

/// Polls `future` at most `polls` times, yielding between polls (so what it
/// waits on may run); `None` if it is still pending. Unlike waiting for a
/// wake-up, this ends even when the future waits on a lock that a future
/// nobody polls holds.
async fn poll_up_to<F: Future>(mut future: Pin<&mut F>, polls: usize) -> Option<F::Output> {
    for _ in 0..polls {
        if let Some(output) = poll_once(future.as_mut()).await {
            return Some(output);
        }
        yield_now().await;
    }
    None
}

/// Reopens the blob after a crash; returns its length and bytes.
async fn after_crash(fs: &SimFs) -> (u64, Vec<u8>) {
    let store = ShardStore::new(fs.crash(), "/");
    let (blob, len) = store.open("p", b"a").await.unwrap();
    let bytes = blob.read_at(0, len as usize).await.unwrap().to_vec();
    (len, bytes)
}

#[test]
fn a_sync_does_not_wait_for_reads_or_aligned_writes() {
    run_seeds(
        "sync_trim a_sync_does_not_wait_for_reads_or_aligned_writes",
        "",
        16,
        |seed| async move {
            let fs = SimFs::new(seed);
            let (_store, blob) = padded_blob(&fs).await;
            {
                let mut write = pin!(blob.write_at(0, &[3; BLOCK_BYTES as usize]));
                let mut read = pin!(blob.read_at(BLOCK_BYTES, 100));
                let pending = poll_once(&mut write).await.is_none();
                assert!(pending, "the write waits on the device");
                let pending = poll_once(&mut read).await.is_none();
                assert!(pending, "the read waits on the device");
                // Each simulated file call yields once: the cut and the flush
                // need a few polls, not the read's or the write's completion.
                let synced = poll_up_to(pin!(blob.sync()), 16).await;
                assert!(
                    matches!(synced, Some(Ok(()))),
                    "the sync finishes beside a read and an aligned write in flight: {synced:?}"
                );
                assert_eq!(&read.await.unwrap()[..], &[1; 100]);
                write.await.unwrap();
            }
            assert_eq!(blob.len(), LEN_BYTES);
            // The padding was cut before the flush: the synced length exactly.
            drop(blob);
            let (len, bytes) = after_crash(&fs).await;
            assert_eq!(len, LEN_BYTES, "the synced length after a crash");
            assert_eq!(
                &bytes[BLOCK_BYTES as usize..3 * BLOCK_BYTES as usize],
                &[1; 8192]
            );
            assert_eq!(&bytes[3 * BLOCK_BYTES as usize..], &[2; 100]);
            // The write that ended after the sync began: old or new.
            let first = &bytes[..BLOCK_BYTES as usize];
            assert!(
                first.iter().all(|&b| b == 1 || b == 3),
                "block 0 old or new"
            );
        },
    );
}

#[test]
fn a_sync_never_cuts_an_append_in_flight() {
    run_seeds(
        "sync_trim a_sync_never_cuts_an_append_in_flight",
        "",
        16,
        |seed| async move {
            let fs = SimFs::new(seed);
            let (_store, blob) = padded_blob(&fs).await;
            {
                let mut append = pin!(blob.write_at(LEN_BYTES, &[4; 50]));
                let pending = poll_once(&mut append).await.is_none();
                assert!(pending, "the append waits on the device");
                // The sync starts while the append is in flight, then both end.
                let mut sync = pin!(blob.sync());
                let early = poll_once(&mut sync).await;
                append.await.unwrap();
                match early {
                    Some(synced) => synced.unwrap(),
                    None => sync.await.unwrap(),
                }
            }
            let end = LEN_BYTES + 50;
            assert_eq!(blob.len(), end);
            let seen = blob.read_at(0, end as usize).await.unwrap();
            assert_eq!(
                &seen[LEN_BYTES as usize - 100..],
                &[&[2u8; 100][..], &[4; 50]].concat()[..]
            );
            drop(blob);
            // The sync cut nothing (the length lives in the header's slots):
            // a crash keeps the length the sync recorded, before the append
            // or after it, and the append's bytes whole if they show.
            let (len, bytes) = after_crash(&fs).await;
            assert!(
                [LEN_BYTES, end].contains(&len),
                "a length the sync saw: {len}"
            );
            assert!(bytes[LEN_BYTES as usize..].iter().all(|&b| b == 4));
        },
    );
}

/// Appends of `APPEND_BYTES` each, one after another, until `stop` is set
/// or `APPENDS_MAX` are done; returns how many were done.
async fn append_until(blob: &ShardBlob<SimFs>, stop: &Cell<bool>) -> u64 {
    let mut appends = 0;
    while !stop.get() && appends < APPENDS_MAX {
        blob.write_at(blob.len(), &[5; APPEND_BYTES]).await.unwrap();
        appends += 1;
    }
    appends
}

const APPEND_BYTES: usize = 10;
const APPENDS_MAX: u64 = 500;

#[test]
fn a_stream_of_appends_does_not_starve_a_sync() {
    run_seeds(
        "sync_trim a_stream_of_appends_does_not_starve_a_sync",
        "",
        8,
        |seed| async move {
            let fs = SimFs::new(seed);
            let (_store, blob) = padded_blob(&fs).await;
            let stop = Rc::new(Cell::new(false));
            let appender = {
                let (blob, stop) = (blob.clone(), stop.clone());
                glommio::spawn_local(async move { append_until(&blob, &stop).await })
            };
            yield_now().await;
            blob.sync().await.unwrap();
            stop.set(true);
            let appends = appender.await;
            // The sync's trim waits for the append in flight, then its turn:
            // it does not wait for the stream to end.
            assert!(appends < 10, "{appends} appends went ahead of the sync");
            let len = blob.len();
            assert_eq!(len, LEN_BYTES + appends * APPEND_BYTES as u64);
        },
    );
}

/// Runs `test` on blob `a` of partition `p` (file `p/61`) of a store over
/// real files in a fresh directory, whose blobs reserve space ahead of
/// appends in steps of `preallocate_bytes`; removes the directory after.
fn on_real_files<F, Fut>(tag: &str, preallocate_bytes: u64, test: F)
where
    F: FnOnce(ShardBlob<DmaFs>, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("shardblob-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    executor.run(async {
        let data_dir = DataDir::lock(&dir).expect("lock data dir");
        let root = data_dir.path().to_path_buf();
        let fs = DmaFs::new(data_dir).await.expect("dma fs");
        let store = ShardStore::new(fs, root.clone()).with_preallocate_bytes(preallocate_bytes);
        let (blob, _) = store.open("p", b"a").await.unwrap();
        test(blob, root.join("p").join("61")).await;
        drop(store);
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The length of the blob in the newest slot of its file's header.
fn slot_len(file: &std::path::Path) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let header = header::decode(&bytes[..4096]).unwrap();
    header.newest().expect("a valid slot").1.len
}

/// Yields (and sleeps a little) until `done`, for at most a second: the
/// zeros written ahead land on a task of their own.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("{what}: never happened");
}

/// On real files, the appends of a blob that syncs grow the file ahead in
/// zero-written blocks (one written once and synced, a put, writes none),
/// and an unaligned sync records the length in the header's slot and
/// changes no file size (issue 13, items 1 and 2: no truncate, no size
/// change for the journal to commit); the close gives the blocks past the
/// end back.
#[test]
fn an_unaligned_sync_changes_no_file_size_on_real_files() {
    on_real_files("sync-trim", PREALLOCATE_BYTES, |blob, file| async move {
        let file_bytes = || std::fs::metadata(&file).unwrap().len();
        blob.write_at(0, &[7; LEN_BYTES as usize]).await.unwrap();
        let written = 4096 + LEN_BYTES.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        assert_eq!(file_bytes(), written, "no zeros before a sync");
        blob.sync().await.unwrap();
        assert_eq!(file_bytes(), written, "the sync cuts nothing");
        assert_eq!(slot_len(&file), LEN_BYTES, "the length in its slot");
        // The blob syncs now: the next append starts the zeros, up to the
        // first step.
        blob.write_at(LEN_BYTES, &[7; 10]).await.unwrap();
        let ahead = 4096 + ZERO_AHEAD_MIN_BYTES;
        eventually("zeros written ahead", || file_bytes() == ahead).await;
        blob.sync().await.unwrap();
        assert_eq!(file_bytes(), ahead, "the second sync cuts nothing");
        assert_eq!(slot_len(&file), LEN_BYTES + 10, "the new length");
        let seen = blob.read_at(0, LEN_BYTES as usize + 10).await.unwrap();
        assert!(seen.iter().all(|&b| b == 7));
        // Plain appends keep the zeros ahead (the blob still syncs): one
        // that ends past half the step starts the next step.
        blob.write_at(LEN_BYTES + 10, &[7; 10]).await.unwrap();
        let len = ZERO_AHEAD_MIN_BYTES / 2 + 100;
        let rest = vec![7; (len - LEN_BYTES - 20) as usize];
        blob.write_at(LEN_BYTES + 20, &rest).await.unwrap();
        let next = 4096 + 2 * ZERO_AHEAD_MIN_BYTES;
        eventually("the next step of zeros", || file_bytes() == next).await;
        drop(blob);
        let cut = 4096 + len;
        eventually("the close cut the file", || file_bytes() == cut).await;
    });
}

/// A blob that starts to sync when it is already large writes a short
/// first run of zeros (`ZERO_AHEAD_MIN_BYTES`, from `ZERO_LEAD_BYTES` past
/// the append), not a whole step of its size: the next appends grow the
/// file themselves meanwhile rather than wait for zeros over their blocks.
/// The next append starts the rest of the step, in several pieces.
#[test]
fn the_first_zeros_of_a_large_blob_are_a_short_run() {
    on_real_files("first-run", PREALLOCATE_BYTES, |blob, file| async move {
        let file_bytes = || std::fs::metadata(&file).unwrap().len();
        let large = (1 << 20) + 100;
        blob.write_at(0, &vec![7; large as usize]).await.unwrap();
        blob.sync().await.unwrap();
        blob.write_at(large, &[7; 10]).await.unwrap();
        let block_end = (large + 10).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let ahead = 4096 + block_end + ZERO_LEAD_BYTES + ZERO_AHEAD_MIN_BYTES;
        eventually("the first run of zeros", || file_bytes() >= ahead).await;
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(file_bytes(), ahead, "a run of ZERO_AHEAD_MIN_BYTES");
        // The next append, within half a step (1 MiB, as large as the file)
        // of the zeroed end, starts the rest of the step: several pieces.
        blob.write_at(large + 10, &[7; 10]).await.unwrap();
        let step_end = 4096 + (2 << 20);
        eventually("the rest of the step", || file_bytes() == step_end).await;
    });
}

/// Bytes of storage a file holds (its allocated blocks).
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A store with `preallocate_bytes` 0 reserves nothing past the end: the
/// file holds only the blocks its appends wrote (the control row "engine,
/// no preallocation" of the benchmark).
#[test]
fn a_store_without_preallocation_reserves_nothing_past_the_end() {
    on_real_files("no-prealloc", 0, |blob, file| async move {
        for i in 0..4u64 {
            blob.write_at(i * LEN_BYTES, &[7; LEN_BYTES as usize])
                .await
                .unwrap();
            let size = std::fs::metadata(&file).unwrap().len();
            assert!(
                allocated(&file) < size + (64 << 10),
                "append {i}: {} bytes allocated for a file of {size}",
                allocated(&file)
            );
        }
        blob.sync().await.unwrap();
        assert!(allocated(&file) < PREALLOCATE_BYTES);
    });
}

/// A sync keeps the blocks reserved past the end (it cuts nothing), and
/// the close of the last handle gives them back (shards/src/blob/mod.rs,
/// "Space").
#[test]
fn a_sync_keeps_the_space_ahead_and_a_close_gives_it_back() {
    on_real_files("sync-reserve", PREALLOCATE_BYTES, |blob, file| async move {
        blob.write_at(0, &[7; LEN_BYTES as usize]).await.unwrap();
        assert!(
            allocated(&file) >= PREALLOCATE_BYTES,
            "the first append reserves"
        );
        blob.sync().await.unwrap();
        assert!(allocated(&file) >= PREALLOCATE_BYTES, "the sync keeps it");
        blob.write_at(LEN_BYTES, &[8; 10]).await.unwrap();
        let seen = blob.read_at(0, LEN_BYTES as usize + 10).await.unwrap();
        assert!(seen[..LEN_BYTES as usize].iter().all(|&b| b == 7));
        assert!(seen[LEN_BYTES as usize..].iter().all(|&b| b == 8));
        drop(blob);
        // The close comes when the zeros that append started have landed.
        eventually("the close gave the space back", || {
            allocated(&file) < 1 << 20
        })
        .await;
    });
}
