//! A write split into pieces (`SchedConfig::piece_bytes`) that fails at a
//! later piece: it adds no length, and the bytes its earlier pieces wrote
//! never show past the logical end (shards/src/api.rs, "A failed write adds
//! no length"): reads past the old end fail, a resize up or a write past a
//! gap reads zeros there, also after a sync and a crash.

use crate::common;

use common::{rng, run_seeds};
use shardblob_shards::fs::sim::{Faults, SimFs};
use shardblob_shards::sched::{IoScheduler, SchedConfig};
use shardblob_shards::{Blob, Error, ShardBlob, ShardStore, Storage, WriteOptions};

const PIECE: usize = 4096;
/// The blob's length before the failing write: inside block 1.
const OLD_LEN: u64 = 5000;
/// Four pieces of 4 KiB: blocks 1 to 4, from the old end.
const WRITE_LEN: usize = 3 * PIECE;

fn store(fs: &SimFs) -> ShardStore<SimFs> {
    let config = SchedConfig {
        piece_bytes: PIECE,
        ..SchedConfig::default()
    };
    ShardStore::with_scheduler(fs.clone(), "/", IoScheduler::new(config))
}

/// A blob `OLD_LEN` long, synced.
async fn blob_with_old(store: &ShardStore<SimFs>, old: &[u8]) -> ShardBlob<SimFs> {
    let (blob, _) = store.open("p", b"a").await.unwrap();
    blob.write_at(0, old).await.unwrap();
    blob.sync().await.unwrap();
    blob
}

/// The file-system calls of the split write, counted on a dry run.
async fn calls_of_the_write(seed: u64, old: &[u8], options: WriteOptions) -> u64 {
    let fs = SimFs::new(seed);
    let store = store(&fs);
    let blob = blob_with_old(&store, old).await;
    let before = fs.op_count();
    let new = rng(seed + 1).bytes(WRITE_LEN);
    blob.write_vectored_at(OLD_LEN, &[&new], options)
        .await
        .unwrap();
    fs.op_count() - before
}

/// The length is the old one, the old bytes are intact, a read past them
/// fails.
async fn check_old_length(blob: &ShardBlob<SimFs>, old: &[u8]) {
    assert_eq!(blob.len(), OLD_LEN, "a failed write adds no length");
    assert_eq!(blob.read_at(0, old.len()).await.unwrap()[..], old[..]);
    match blob.read_at(OLD_LEN, 1).await {
        Err(Error::BlobInsufficientLength { blob_len, .. }) => assert_eq!(blob_len, OLD_LEN),
        other => panic!("a read past the old end: {other:?}"),
    }
}

/// After a resize up (or a write past a gap, odd seeds) the bytes past the
/// old end read as zeros; returns the new length.
async fn check_zeros_past_the_old_end(blob: &ShardBlob<SimFs>, seed: u64) -> u64 {
    let grown = OLD_LEN + WRITE_LEN as u64 + 5000;
    match seed % 2 {
        0 => blob.resize(grown).await.unwrap(),
        _ => blob.write_at(grown - 1, &[9]).await.unwrap(),
    }
    let past = blob.read_at(OLD_LEN, (grown - 1 - OLD_LEN) as usize).await;
    assert!(
        past.unwrap().iter().all(|&b| b == 0),
        "bytes of the failed write showed past the old end"
    );
    grown
}

#[test]
fn a_split_write_failing_at_a_later_piece_adds_no_length() {
    run_seeds(
        "split_write_faults a_split_write_failing_at_a_later_piece_adds_no_length",
        "",
        8,
        |seed| async move {
            let old = rng(seed).bytes(OLD_LEN as usize);
            let options = match seed % 4 < 2 {
                true => WriteOptions::NONE,
                false => WriteOptions::SYNC,
            };
            let calls = calls_of_the_write(seed, &old, options).await;
            assert!(calls >= 4, "one device write per piece: {calls} calls");
            // Each call of the write failing in turn: the last ones are
            // device writes of pieces after the first.
            for fail_at in 0..calls {
                let fs = SimFs::new(seed);
                let store = store(&fs);
                let blob = blob_with_old(&store, &old).await;
                fs.set_faults(Faults::at_op(fs.op_count() + fail_at));
                let new = rng(seed + 1).bytes(WRITE_LEN);
                let written = blob.write_vectored_at(OLD_LEN, &[&new], options).await;
                assert_eq!(fs.injected_faults(), 1, "call {fail_at} failed");
                if written.is_ok() {
                    // A failed preallocation is advisory.
                    assert_eq!(blob.len(), OLD_LEN + WRITE_LEN as u64);
                    continue;
                }
                check_old_length(&blob, &old).await;
                if options.contains(WriteOptions::SYNC) {
                    // A failed SYNC write poisons: no resize or write after.
                    assert!(matches!(
                        blob.resize(1).await,
                        Err(Error::BlobPoisoned { .. })
                    ));
                    continue;
                }
                let grown = check_zeros_past_the_old_end(&blob, seed).await;
                blob.sync().await.unwrap();
                drop((blob, store));
                let store = ShardStore::new(fs.crash(), "/");
                let (blob, len) = store.open("p", b"a").await.unwrap();
                assert_eq!(len, grown, "call {fail_at}: the synced length");
                let back = blob.read_at(0, grown as usize).await.unwrap();
                assert_eq!(back[..OLD_LEN as usize], old[..]);
                let past = &back[OLD_LEN as usize..grown as usize - 1];
                assert!(past.iter().all(|&b| b == 0), "call {fail_at}: zeros");
            }
        },
    );
}
