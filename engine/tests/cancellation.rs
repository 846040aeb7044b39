//! Cancellation through the router: a caller may drop any future at any
//! await, and no call blocks its caller's thread.
//!
//! Issue 11, items 1 and 5 (engine side).

mod support;

use std::time::Duration;

use futures::executor::block_on;
use futures_lite::future::poll_once;
use shardblob::{Blob, Error, Storage};
use support::{block_shard, partition_on, reopen, start, without_hanging, REOPEN_ATTEMPTS_MAX};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Caught on 58545b6: the owning shard put the blob in its table of remote
/// opens and the reply was lost with the dropped future, so every later open
/// of the name failed with `BlobAlreadyOpen` until restart (and the file
/// descriptor stayed open).
#[test]
fn a_dropped_foreign_open_never_leaves_the_name_open() {
    let (engine, dir) = start("cancel-foreign", |_| {});
    let client = engine.client();
    let partition = partition_on(&engine, 0, "p");
    // One open and close first, so lazily opened descriptors are counted.
    block_on(reopen(&client, &partition, b"warm-up"));
    let fds_before = open_fds();
    block_on(async {
        for round in 0..20u32 {
            let name = round.to_be_bytes();
            // Polled once: the request is queued, then the future is dropped.
            let mut open = Box::pin(client.open(&partition, &name));
            let _ = poll_once(&mut open).await;
            drop(open);
            reopen(&client, &partition, &name).await;
        }
    });
    // Dropped DMA files close on the shard's next reactor poll: a few
    // round trips give it those polls.
    let closed = (0..REOPEN_ATTEMPTS_MAX).any(|_| {
        block_on(client.scan(&partition)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        open_fds() <= fds_before
    });
    assert!(
        closed,
        "file descriptors leaked: {fds_before} before, {} after",
        open_fds()
    );
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6: the same leak for an open forwarded from one shard to
/// another and dropped there.
#[test]
fn a_dropped_cross_shard_open_never_leaves_the_name_open() {
    let (engine, dir) = start("cancel-peer", |_| {});
    let partition = partition_on(&engine, 1, "p");
    let reopened = block_on(engine.client().spawn_on(0, move |storage| async move {
        for round in 0..20u32 {
            let name = round.to_be_bytes();
            let mut open = Box::pin(storage.open(&partition, &name));
            let _ = poll_once(&mut open).await;
            drop(open);
            let mut reopened = false;
            for _ in 0..REOPEN_ATTEMPTS_MAX {
                match storage.open(&partition, &name).await {
                    Ok(_) => {
                        reopened = true;
                        break;
                    }
                    Err(Error::BlobAlreadyOpen { .. }) => {
                        glommio::timer::sleep(Duration::from_millis(1)).await
                    }
                    Err(e) => panic!("reopen failed: {e}"),
                }
            }
            if !reopened {
                return Some(round);
            }
        }
        None
    }))
    .unwrap();
    assert_eq!(reopened, None, "a dropped open left the name open");
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6: with the shard's queue full, `start_sync` blocked its
/// caller's thread (`send_blocking`) until the shard drained the queue;
/// here the shard waits for this very thread, so it stayed blocked until the
/// blocker gave up after a minute and the blocker reported `false`.
#[test]
fn start_sync_on_a_full_queue_returns_at_once_and_still_syncs() {
    let (engine, dir) = start("cancel-start-sync", |c| c.channel_capacity = 1);
    let client = engine.client();
    let partition = partition_on(&engine, 0, "p");
    let (blob, _) = block_on(client.open(&partition, b"b")).unwrap();
    block_on(blob.write_at(0, b"data")).unwrap();
    let (release, blocked) = block_shard(&client, 0);
    // Fill the one slot of shard 0's queue.
    let filler = client.spawn_on(0, |_| async { 7 });
    // Neither call may wait for the shard; the first future is dropped
    // unpolled, and its sync must happen all the same.
    drop(blob.start_sync());
    let sync = blob.start_sync();
    release.send(()).unwrap();
    assert!(
        block_on(blocked).unwrap(),
        "start_sync blocked the caller's thread"
    );
    assert_eq!(block_on(filler).unwrap(), 7);
    block_on(sync).unwrap();
    drop(blob);
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6: called on a shard whose own queue was full,
/// `start_sync` blocked the only thread that could drain that queue — a
/// deadlock (the test binary aborts after a minute).
#[test]
fn start_sync_on_the_shards_own_full_queue_does_not_deadlock() {
    let (engine, dir) = start("cancel-own-queue", |c| c.channel_capacity = 1);
    let client = engine.client();
    let partition = partition_on(&engine, 0, "p");
    let (blob, _) = block_on(client.open(&partition, b"b")).unwrap();
    let synced = without_hanging(move || {
        let inner = client.clone();
        block_on(client.spawn_on(0, move |_| async move {
            // Fills shard 0's queue from shard 0's own thread: nothing
            // drains it until this task yields.
            let filler = inner.spawn_on(0, |_| async {});
            let sync = blob.start_sync();
            filler.await.and(sync.await)
        }))
    });
    synced.unwrap().unwrap();
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
