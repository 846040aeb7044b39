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
use shardblob::{Blob, Error, ShardStorage, Storage};
use support::{partition_on, start};

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
