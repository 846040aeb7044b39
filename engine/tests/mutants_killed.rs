//! Tests that kill mutants of the engine that `scripts/mutants` found alive
//! (issue 17, point 7).
//!
//! Each test names the mutant it kills (the `cargo mutants` description:
//! file, line, column, replacement); it fails with that mutant applied. The
//! survivors that cannot matter are listed, with the reason, in
//! `mutants-survivors.md`.

mod support;

use futures::executor::block_on;
use futures::FutureExt;
use shardblob::sim::{Faults, SimFs};
use shardblob::{Blob, Config, Engine, Error, ShardStorage, Storage};
use support::{block_shard, partition_on, start};

/// A task on a shard finds that shard's storage with
/// `ShardStorage::current()`, and it works: a blob written through it on the
/// owner reads back through the client. Off the shards there is none. Kills
/// `engine/src/shard.rs:65:9: replace ShardContext::current ->
/// Option<Rc<ShardContext>> with None`.
#[test]
fn a_shard_task_finds_its_own_storage() {
    let (engine, dir) = start("mutants-killed-current", |_| {});
    let client = engine.client();
    assert!(ShardStorage::current().is_none(), "not on a shard");
    for shard in 0..engine.shard_count() {
        let partition = partition_on(&engine, shard, "current-");
        let task_partition = partition.clone();
        let found = block_on(client.spawn_on(shard, move |_| async move {
            let storage = ShardStorage::current()?;
            let (blob, _) = storage.open(&task_partition, b"b").await.ok()?;
            blob.write_at(0, b"through current").await.ok()?;
            blob.sync().await.ok()?;
            Some(storage.shard())
        }))
        .unwrap();
        assert_eq!(found, Some(shard), "the task's own shard");
        let bytes = block_on(async {
            let (blob, len) = client.open(&partition, b"b").await?;
            assert_eq!(len, 15);
            blob.read_at(0, 15).await
        })
        .unwrap();
        assert_eq!(&bytes[..], b"through current");
    }
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sync asked of a forwarded blob after the engine stopped answers
/// `Shutdown` at its first poll: the stopped shard's sync lane refuses the
/// request, and the request's drop hands its waiter back. A second sync
/// finds no sync queued and is answered the same way. Kills
/// `engine/src/remote.rs:213:9: replace <impl Drop for SyncRequest>::drop
/// with ()` (the waiter stayed queued in the open, so the caller waited for
/// ever).
#[test]
fn a_sync_after_shutdown_answers_shutdown_at_once() {
    let (engine, dir) = start("mutants-killed-sync-after-stop", |_| {});
    let client = engine.client();
    let partition = partition_on(&engine, 0, "stopped-");
    let (blob, _) = block_on(client.open(&partition, b"b")).unwrap();
    block_on(blob.write_at(0, b"kept")).unwrap();
    engine.shutdown().unwrap();
    for attempt in 0..2 {
        let answer = blob.sync().now_or_never();
        assert!(
            matches!(answer, Some(Err(Error::Shutdown))),
            "sync {attempt} after shutdown: {answer:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `start_sync` calls queued together on a forwarded blob share one flush,
/// and each caller gets that flush's outcome: the same disk ops as one sync
/// alone, and when the flush fails every caller gets an error. The owning
/// shard is held busy while the calls queue, so they join one request.
/// Kills `engine/src/shard.rs:404:25: replace match guard synced with true
/// in ShardContext::handle_sync` (after a failed flush the second caller
/// was told `Ok`) and `… with false` (each further caller flushed again).
#[test]
fn joined_syncs_share_one_flush_and_its_failure() {
    let disk = SimFs::new(17);
    let config = Config {
        shards: 2,
        io_memory_bytes: 256 << 10,
        spin_before_park_us: 0,
        ..Config::default()
    };
    let engine = Engine::start_simulated(config, disk.clone()).unwrap();
    let client = engine.client();
    let partition = partition_on(&engine, 0, "joined-");
    let (blob, _) = block_on(client.open(&partition, b"b")).unwrap();
    // Writes the same bytes, queues `syncs` syncs while shard 0 is held,
    // fails the first disk op after that if asked; the ops the syncs took
    // and their answers.
    let syncs_queued_together = |syncs: usize, fail: bool| {
        block_on(blob.write_at(0, b"joined")).unwrap();
        let (release, held) = block_shard(&client, 0);
        let before = disk.op_count();
        let pending: Vec<_> = (0..syncs).map(|_| blob.start_sync()).collect();
        if fail {
            disk.set_faults(Faults::at_op(before));
        }
        release.send(()).unwrap();
        assert!(block_on(held).unwrap(), "shard 0 was released");
        let answers: Vec<_> = pending.into_iter().map(block_on).collect();
        disk.set_faults(Faults::default());
        (disk.op_count() - before, answers)
    };
    // The first sync also records the length in its slot (one more op).
    let (_, answers) = syncs_queued_together(1, false);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let (ops_alone, answers) = syncs_queued_together(1, false);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert!(ops_alone > 0, "a sync flushes");
    let (ops_joined, answers) = syncs_queued_together(3, false);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(ops_joined, ops_alone, "three joined syncs, one flush");
    let injected = disk.injected_faults();
    let (_, answers) = syncs_queued_together(3, true);
    assert_eq!(disk.injected_faults(), injected + 1, "the flush failed");
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    drop(blob);
    engine.shutdown().unwrap();
}

/// Two tasks still running on one shard when the grace period ends are both
/// cancelled and both counted: each task is tracked under its own id.
/// Kills `engine/src/shard.rs:453:31: replace + with * in
/// ShardContext::start_task` (every task got id 0, so the second replaced
/// the first in the shard's table: one was neither cancelled nor counted).
#[test]
fn every_task_running_at_shutdown_is_cancelled_and_counted() {
    let (engine, dir) = start("mutants-killed-two-tasks", |config| {
        config.shutdown_grace_ms = 20;
    });
    let client = engine.client();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let started = started_tx.clone();
            client.spawn_on(1, move |_| {
                started.send(()).unwrap();
                std::future::pending::<()>()
            })
        })
        .collect();
    for _ in 0..2 {
        started_rx.recv().unwrap();
    }
    let error = engine.shutdown().unwrap_err();
    assert!(
        matches!(error, Error::ShutdownIncomplete { ref cancelled, .. } if cancelled == &[(1, 2)]),
        "{error:?}"
    );
    for task in tasks {
        assert!(matches!(task.now_or_never(), Some(Err(Error::Shutdown))));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every directory under `dir`, recursively, sorted.
fn directories(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(directories(&path));
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Removing a partition through the engine leaves no directory of it behind
/// (the engine's file system is `AnyFs`, which forwards to the DMA one).
/// Kills `shards/src/fs/any.rs:125:9: replace <impl FileSystem for
/// AnyFs>::remove_dir -> io::Result<()> with Ok(())` (an empty tombstone
/// directory was left per removal).
#[test]
fn removing_a_partition_through_the_engine_leaves_no_directory() {
    let (engine, dir) = start("mutants-killed-remove-dir", |_| {});
    let client = engine.client();
    let before = directories(&dir);
    for shard in 0..engine.shard_count() {
        let partition = partition_on(&engine, shard, "gone-");
        block_on(async {
            let (blob, _) = client.open(&partition, b"b").await?;
            blob.write_at(0, b"removed").await?;
            blob.sync().await?;
            drop(blob);
            client.remove(&partition, None).await
        })
        .unwrap();
        assert_eq!(directories(&dir), before, "after removing {partition}");
    }
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
