//! Durability audited on real files, on every path to a blob (issue 17,
//! point 2).
//!
//! The crash tests cannot see a missing flush: a SIGKILL keeps the page
//! cache, and the simulated disk never runs the real DMA file's code. So
//! this test asks the kernel: with ext4's flush tracepoint on
//! (`support/ftrace.rs`), it brackets each operation with markers and checks
//! that before the operation's `Ok` ext4 flushed
//! - the blob's inode, for `sync`, `start_sync` and a `WriteOptions::SYNC`
//!   write, aligned or into a partly written tail block (`fdatasync`, or
//!   the data-sync flush of the `O_DSYNC` write), once per piece for a
//!   SYNC write split into pieces (as many as the engine's piece, cut to
//!   the device's `max_sectors_kb`, makes);
//! - the data directory, the new blob file and its partition directory, in
//!   that order, for an `open` that creates a blob in a new partition; the
//!   new blob file, then the partition directory, for one that creates a
//!   blob in an existing partition;
//! - the partition directory for `remove` of a blob, the data directory for
//!   `remove` of a partition;
//!
//! and that reopening an existing, synced blob flushes nothing (what is
//! durable is not flushed again).
//!
//! It runs each operation on the owning shard (direct calls), from another
//! shard and from a foreign thread (forwarded), so the engine's forwarding
//! is audited as well as the DMA file. Hand-made bugs it catches: the DMA
//! file's `sync_data` doing nothing, the DMA file ignoring the data-sync
//! write, its directory sync doing nothing, the engine answering a forwarded
//! `Sync` without syncing, the engine dropping `SYNC` from a forwarded write.
//!
//! On a device that supports FUA, ext4 may complete an overwrite with
//! `O_DSYNC` as a FUA write without a flush event; the test says so if it
//! finds such a device under the data directory (the dev VM's virtio disk
//! has none).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shardblob::{Blob, Config, Engine, Storage, WriteOptions};
use shardblob_shards::sched::{max_io_bytes, SchedConfig};
use support::ftrace::{flushes_between, inode, Event, Tracer};
use support::partition_on;

/// Where an operation runs, relative to the partition's owner.
#[derive(Clone, Copy, Debug)]
enum Route {
    SameShard,
    CrossShard,
    Foreign,
}

const SHARDS: usize = 2;

fn marker(path: Route, op: &str, edge: &str) -> String {
    format!("shardblob-audit {path:?} {op} {edge}")
}

/// The inodes the checks need, read while the files exist.
#[derive(Debug)]
struct Inodes {
    root: u64,
    partition: u64,
    blob: u64,
    /// The second blob, created in the partition that exists by then.
    again: u64,
    /// The device writes of the SYNC write of several pieces.
    long_pieces: u64,
}

/// Runs the operations of one path against `storage`, marking each.
async fn operations<S: Storage>(
    storage: &S,
    tracer: &Tracer,
    path: Route,
    dir: &Path,
    partition: &str,
) -> Inodes {
    let mark = |op: &str, edge: &str| tracer.mark(&marker(path, op, edge));
    mark("open", "begin");
    let (blob, _) = storage.open(partition, b"audited").await.expect("open");
    mark("open", "end");
    let (root, partition_ino) = (inode(dir), inode(&dir.join(partition)));
    let blob_ino = inode(&dir.join(partition).join(hex(b"audited")));
    synced_writes(&blob, &mark).await;
    blob.write_at(4246, &[8u8; 100]).await.expect("write");
    mark("sync", "begin");
    blob.sync().await.expect("sync");
    mark("sync", "end");
    blob.write_at(4346, &[8u8; 100]).await.expect("write");
    mark("start-sync", "begin");
    blob.start_sync().await.expect("start_sync");
    mark("start-sync", "end");
    drop(blob);
    mark("reopen", "begin");
    let (blob, _) = storage.open(partition, b"audited").await.expect("reopen");
    mark("reopen", "end");
    drop(blob);
    mark("remove-blob", "begin");
    storage
        .remove(partition, Some(b"audited"))
        .await
        .expect("remove blob");
    mark("remove-blob", "end");
    // A second blob, created in the partition that exists (and so that
    // the partition holds something when it goes).
    mark("open-in-partition", "begin");
    let (again, _) = storage.open(partition, b"again").await.expect("open");
    mark("open-in-partition", "end");
    let again_ino = inode(&dir.join(partition).join(hex(b"again")));
    drop(again);
    mark("remove-partition", "begin");
    storage
        .remove(partition, None)
        .await
        .expect("remove partition");
    mark("remove-partition", "end");
    Inodes {
        root,
        partition: partition_ino,
        blob: blob_ino,
        again: again_ino,
        long_pieces: long_write_pieces(dir),
    }
}

/// Where the SYNC write of several pieces starts, and how long it is.
const LONG_OFFSET: u64 = 4246;
const LONG_BYTES: usize = 3 * (128 << 10);

/// The SYNC writes of [`operations`], marked: aligned, into the tail
/// block, of several pieces, and from a buffer of `alloc_buf`.
async fn synced_writes<B: Blob>(blob: &B, mark: &dyn Fn(&str, &str)) {
    mark("write-sync", "begin");
    blob.write_vectored_at(0, &[&[7u8; 4096]], WriteOptions::SYNC)
        .await
        .expect("synced write");
    mark("write-sync", "end");
    // Into the partly written tail block: merged with its bytes in memory,
    // the whole block written again with data-sync semantics.
    blob.write_at(4096, &[8u8; 100]).await.expect("write");
    mark("write-sync-tail", "begin");
    blob.write_vectored_at(4146, &[&[9u8; 50], &[9u8; 50]], WriteOptions::SYNC)
        .await
        .expect("synced tail write");
    mark("write-sync-tail", "end");
    // Longer than a piece: every piece goes out as a data-sync write of
    // its own.
    let long = vec![6u8; LONG_BYTES];
    mark("write-sync-pieces", "begin");
    blob.write_vectored_at(LONG_OFFSET, &[&long], WriteOptions::SYNC)
        .await
        .expect("synced write of several pieces");
    mark("write-sync-pieces", "end");
    // A zero-copy write (on the owner, the caller's DMA buffer as it is),
    // aligned, past the end.
    let mut page = blob.alloc_buf(4096).expect("alloc_buf");
    page.fill(5);
    let past_the_end = (LONG_OFFSET + LONG_BYTES as u64).div_ceil(4096) * 4096;
    mark("write-sync-buf", "begin");
    blob.write_buf_at(past_the_end, page, WriteOptions::SYNC)
        .await
        .expect("synced buffer write");
    mark("write-sync-buf", "end");
}

/// The device writes of the SYNC write of several pieces, with the piece
/// the engine uses for the data directory `dir` (cut to its device's
/// `max_sectors_kb`): pieces count whole blocks from the write's first.
fn long_write_pieces(dir: &Path) -> u64 {
    let piece_bytes = SchedConfig::default()
        .for_device(max_io_bytes(dir))
        .piece_bytes as u64;
    let first = LONG_OFFSET / 4096;
    let last = (LONG_OFFSET + LONG_BYTES as u64 - 1) / 4096;
    (last - first + 1).div_ceil(piece_bytes / 4096)
}

fn hex(name: &[u8]) -> String {
    shardblob_shards::name::hex(name)
}

/// The flushes between `op`'s markers on `path`.
fn flushes_of(events: &[Event], path: Route, op: &str) -> Vec<(u64, bool)> {
    flushes_between(events, &marker(path, op, "begin"), &marker(path, op, "end"))
        .unwrap_or_else(|| panic!("{path:?} {op}: markers missing from the trace"))
}

fn check_path(events: &[Event], path: Route, inodes: &Inodes) {
    let flushes = |op: &str| flushes_of(events, path, op);
    let expect = |op: &str, ino: u64, what: &str, datasync_only: bool| {
        let seen = flushes(op);
        assert!(
            seen.iter()
                .any(|&(i, datasync)| i == ino && (datasync || !datasync_only)),
            "{path:?} {op}: ext4 never flushed {what} (inode {ino}) before the Ok; \
             flushes seen: {seen:?} ({inodes:?})"
        );
    };
    expect("open", inodes.blob, "the new blob file", false);
    expect(
        "open",
        inodes.partition,
        "the new partition directory",
        false,
    );
    expect("open", inodes.root, "the data directory", false);
    // In the order of ARCHITECTURE.md: the new partition's entry, then the
    // blob's header, then the blob's entry.
    let open = flushes("open");
    let first = |ino: u64| open.iter().position(|&(i, _)| i == ino);
    let order = [inodes.root, inodes.blob, inodes.partition].map(first);
    assert!(
        order.is_sorted(),
        "{path:?} open: flushed out of order (data directory, blob, partition directory \
         at {order:?}); flushes seen: {open:?} ({inodes:?})"
    );
    check_blob_flushes(events, path, inodes);
    // A create in an existing partition: the blob's header, then its entry.
    expect(
        "open-in-partition",
        inodes.again,
        "the new blob file",
        false,
    );
    expect(
        "open-in-partition",
        inodes.partition,
        "the partition directory of the new blob",
        false,
    );
    let created = flushes("open-in-partition");
    let first = |ino: u64| created.iter().position(|&(i, _)| i == ino);
    assert!(
        first(inodes.again) < first(inodes.partition),
        "{path:?} open-in-partition: the partition directory was flushed before the new \
         blob; flushes seen: {created:?} ({inodes:?})"
    );
    expect(
        "remove-blob",
        inodes.partition,
        "the partition directory",
        false,
    );
    expect("remove-partition", inodes.root, "the data directory", false);
    check_reopen(events, path, inodes);
}

/// Nothing durable is flushed again: reopening an existing, synced blob
/// changes no directory entry and no byte.
fn check_reopen(events: &[Event], path: Route, inodes: &Inodes) {
    let reopen = flushes_of(events, path, "reopen");
    for (ino, what) in [
        (inodes.root, "the data directory"),
        (inodes.partition, "the partition directory"),
        (inodes.blob, "the synced blob"),
    ] {
        assert!(
            !reopen.iter().any(|&(i, _)| i == ino),
            "{path:?} reopen: ext4 flushed {what} (inode {ino}), though nothing in it \
             changed; flushes seen: {reopen:?} ({inodes:?})"
        );
    }
}

/// The flushes of the blob's inode that its SYNC writes and syncs owe.
fn check_blob_flushes(events: &[Event], path: Route, inodes: &Inodes) {
    let blob_flushes = |op: &str, datasync_only: bool| {
        let seen = flushes_of(events, path, op);
        let ours = seen
            .iter()
            .filter(|&&(i, datasync)| i == inodes.blob && (datasync || !datasync_only));
        (ours.count() as u64, seen)
    };
    // One data-sync flush per piece of a SYNC write: one that reached only
    // some pieces would leave the others in the disk's volatile cache.
    for (op, pieces, datasync_only) in [
        ("write-sync", 1, true),
        ("write-sync-tail", 1, true),
        ("write-sync-pieces", inodes.long_pieces, true),
        ("write-sync-buf", 1, true),
        ("sync", 1, false),
        ("start-sync", 1, false),
    ] {
        let (count, seen) = blob_flushes(op, datasync_only);
        assert!(
            count >= pieces,
            "{path:?} {op}: {count} flushes of the blob (inode {}) before the Ok, {pieces} \
             owed (data-sync only: {datasync_only}); flushes seen: {seen:?} ({inodes:?})",
            inodes.blob
        );
    }
}

/// Runs `path`'s operations on a partition of shard 0; returns its inodes.
fn run_path(engine: &Engine, tracer: &Arc<Tracer>, dir: &Path, path: Route) -> Inodes {
    let client = engine.client();
    let owner = 0;
    let partition = partition_on(engine, owner, &format!("audit-{path:?}-"));
    let runner = match path {
        Route::SameShard => owner,
        Route::CrossShard => 1 - owner,
        Route::Foreign => {
            return futures::executor::block_on(operations(&client, tracer, path, dir, &partition))
        }
    };
    let tracer = tracer.clone();
    let dir = dir.to_path_buf();
    let done = client.spawn_on(runner, move |storage| async move {
        operations(&storage, &tracer, path, &dir, &partition).await
    });
    futures::executor::block_on(done).expect("the path's task ran on its shard")
}

fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardblob-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Warns when the data directory's disk may answer O_DSYNC with FUA writes,
/// which ext4 does not report as flushes.
fn warn_if_fua(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir.parent().unwrap_or(dir)).map_or(0, |m| m.dev());
    let block = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    let fua = ["queue/fua", "../queue/fua"]
        .iter()
        .find_map(|f| std::fs::read_to_string(Path::new(&block).join(f)).ok())
        .unwrap_or_default();
    if fua.trim() == "1" {
        eprintln!(
            "durability audit: the disk under {} supports FUA; a SYNC overwrite may go out \
             as a FUA write that ext4 does not trace",
            dir.display()
        );
    }
}

#[test]
fn every_acknowledged_flush_reaches_ext4_on_every_path() {
    let dir = fresh_dir();
    warn_if_fua(&dir);
    let config = Config {
        data_dir: dir.clone(),
        shards: SHARDS,
        ..Config::default()
    };
    let engine = Engine::start(config).expect("engine starts");
    let tracer = Arc::new(Tracer::start("audit"));
    let paths = [Route::SameShard, Route::CrossShard, Route::Foreign];
    let inodes: Vec<Inodes> = paths
        .iter()
        .map(|&path| run_path(&engine, &tracer, &dir, path))
        .collect();
    let events = tracer.events();
    for (path, inodes) in paths.iter().zip(&inodes) {
        check_path(&events, *path, inodes);
    }
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
