//! Unit tests that need the engine's insides: a fault hook at start, and
//! the queues' fill levels.

use std::cell::Cell;

thread_local! {
    /// `Engine::start` on this thread makes this shard panic before it
    /// reports (a fault hook of the tests).
    pub static PANIC_SHARD_AT_START: Cell<Option<usize>> = const { Cell::new(None) };
}

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use futures_lite::future::{block_on, poll_once};
use shardblob_shards::{Blob, IoClass, Storage, WriteOptions};

use crate::message::{reply, Request};
use crate::{Client, Config, Engine};

fn config(test: &str, shards: usize) -> (Config, PathBuf) {
    let dir = std::env::temp_dir().join(format!("shardblob-unit-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        data_dir: dir.clone(),
        shards,
        ..Config::default()
    };
    (config, dir)
}

/// Blocks shard `shard`'s thread until the returned sender fires (or a
/// minute passes, so that a regression fails instead of hanging); the
/// task's output says whether the test released it.
fn block_shard(
    client: &Client,
    shard: usize,
) -> (
    mpsc::Sender<()>,
    impl std::future::Future<Output = crate::Result<bool>>,
) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocked = client.spawn_on(shard, move |_| async move {
        started_tx.send(()).unwrap();
        release_rx.recv_timeout(Duration::from_secs(60)).is_ok()
    });
    started_rx.recv().unwrap();
    (release_tx, blocked)
}

/// Returns once shard 0 has finished the polls it was in: a request's
/// budget goes back just after its reply, in the same poll. A spawn job
/// gives its bytes back before its task runs, so this one holds none.
fn round_trip(client: &Client) {
    block_on(client.spawn_on(0, |_| async {})).unwrap();
}

/// Caught on 58545b6: the engine kept a sender of the one shared ready
/// channel and the live shard another (waiting for "go"), so the report of
/// the dead shard never came and `Engine::start` hung.
#[test]
fn a_shard_that_dies_at_start_fails_the_start_naming_it() {
    let (config, dir) = config("dies", 2);
    PANIC_SHARD_AT_START.with(|shard| shard.set(Some(1)));
    let started = Engine::start(config.clone());
    PANIC_SHARD_AT_START.with(|shard| shard.set(None));
    match started {
        Ok(_) => panic!("a shard died, yet the engine started"),
        Err(e) => assert!(e.to_string().contains("shard 1"), "{e}"),
    }
    // The failed start let go of the LOCK.
    Engine::start(config).unwrap().shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6 (where each `start_sync` sent a request of its own,
/// blocking on a full queue): however many `start_sync` calls arrive while
/// the shard is busy, one open holds at most one queued sync, and every
/// caller still gets its answer.
#[test]
fn start_syncs_of_one_open_queue_at_most_one_request() {
    let (config, dir) = config("sync-lane", 1);
    let engine = Engine::start(config).unwrap();
    let client = engine.client();
    let (blob, _) = block_on(client.open("p", b"b")).unwrap();
    block_on(blob.write_at(0, b"data")).unwrap();
    let (release, blocked) = block_shard(&client, 0);
    for _ in 0..1000 {
        drop(blob.start_sync());
    }
    let kept: Vec<_> = (0..3).map(|_| blob.start_sync()).collect();
    assert_eq!(engine.router.syncs[0].len(), 1);
    release.send(()).unwrap();
    assert!(block_on(blocked).unwrap());
    for sync in kept {
        block_on(sync).unwrap();
    }
    drop(blob);
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6 (queues bounded in messages only, 256 writes of any
/// size per queue): with the shard busy, only as many writes as the byte
/// budget holds are admitted; a write larger than the whole budget is
/// admitted alone; every byte comes back.
#[test]
fn queued_requests_are_bounded_in_bytes() {
    const WRITE_BYTES: usize = 64 << 10;
    let cost = Request::Write {
        blob: 0,
        offset: 0,
        data: vec![0; WRITE_BYTES],
        options: WriteOptions::NONE,
        reply: reply().0,
    }
    .cost_bytes();
    let (mut config, dir) = config("bytes", 1);
    config.queue_bytes_per_shard_max = 4 * cost;
    config.channel_capacity = 1024;
    let engine = Engine::start(config).unwrap();
    let client = engine.client();
    let budget = &engine.router.budgets[0].latency;
    let (blob, _) = block_on(client.open("p", b"b")).unwrap();
    let data = vec![7u8; WRITE_BYTES];

    let (release, blocked) = block_shard(&client, 0);
    let mut writes: Vec<_> = (0..10u64)
        .map(|i| Box::pin(blob.write_at(i * WRITE_BYTES as u64, &data)))
        .collect();
    for write in &mut writes {
        assert!(block_on(poll_once(write)).is_none());
    }
    assert_eq!(
        engine.router.requests[0].latency.len(),
        4,
        "admitted past the budget"
    );
    assert_eq!(budget.available_bytes(), 0);
    release.send(()).unwrap();
    assert!(block_on(blocked).unwrap());
    for write in writes {
        block_on(write).unwrap();
    }
    round_trip(&client);
    assert_eq!(budget.available_bytes(), 4 * cost);

    let huge = vec![9u8; 5 * WRITE_BYTES];
    let (release, blocked) = block_shard(&client, 0);
    let mut alone = Box::pin(blob.write_at(0, &huge));
    let mut small = Box::pin(blob.write_at(0, &data[..1]));
    assert!(block_on(poll_once(&mut alone)).is_none());
    assert!(block_on(poll_once(&mut small)).is_none());
    assert_eq!(
        engine.router.requests[0].latency.len(),
        1,
        "the huge write goes alone"
    );
    release.send(()).unwrap();
    assert!(block_on(blocked).unwrap());
    block_on(alone).unwrap();
    block_on(small).unwrap();
    round_trip(&client);
    assert_eq!(budget.available_bytes(), 4 * cost);
    drop(blob);
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught before admission was made first-come first-served: a write that
/// needs the whole budget waited while smaller writes that came after it
/// took the bytes freed in between, so under a steady stream it could wait
/// for ever. Here a small write queued behind it must wait too.
#[test]
fn the_byte_budget_admits_senders_in_order() {
    const WRITE_BYTES: usize = 64 << 10;
    let (mut config, dir) = config("bytes-fifo", 1);
    config.queue_bytes_per_shard_max = 4 * WRITE_BYTES as u64;
    let engine = Engine::start(config).unwrap();
    let client = engine.client();
    let (blob, _) = block_on(client.open("p", b"b")).unwrap();
    let small = vec![1u8; WRITE_BYTES];
    let huge = vec![2u8; 8 * WRITE_BYTES];

    let (release, blocked) = block_shard(&client, 0);
    let mut first = Box::pin(blob.write_at(0, &small));
    let mut whole = Box::pin(blob.write_at(0, &huge));
    let mut after = Box::pin(blob.write_at(0, &small));
    for write in [&mut first, &mut whole, &mut after] {
        assert!(block_on(poll_once(write)).is_none());
    }
    assert_eq!(
        engine.router.requests[0].latency.len(),
        1,
        "a later write overtook the one waiting for the whole budget"
    );
    release.send(()).unwrap();
    assert!(block_on(blocked).unwrap());
    for write in [first, whole, after] {
        block_on(write).unwrap();
    }
    drop(blob);
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// A `spawn_on` job is queued in the class of the call, when it is queued
/// at once and when it waits for room and is sent later, from a poll in
/// another class.
#[test]
fn spawn_on_jobs_queue_in_the_class_of_the_call() {
    let (mut config, dir) = config("spawn-class", 1);
    config.channel_capacity = 1;
    let engine = Engine::start(config).unwrap();
    let client = engine.client();
    let queues = &engine.router.requests[0];
    let (release, blocked) = block_shard(&client, 0);
    let (first, second) = block_on(IoClass::Throughput.scope(async {
        (
            client.spawn_on(0, |_| async {}),
            client.spawn_on(0, |_| async {}),
        )
    }));
    let (mut first, mut second) = (Box::pin(first), Box::pin(second));
    assert_eq!(queues.throughput.len(), 1, "queued at once");
    // The second waits for room; polled here, in the latency class, it
    // must still wait for the throughput queue.
    assert!(block_on(poll_once(&mut second)).is_none());
    assert!(block_on(poll_once(&mut first)).is_none());
    assert_eq!(queues.latency.len(), 0, "nothing in the latency queue");
    release.send(()).unwrap();
    assert!(block_on(blocked).unwrap());
    block_on(first).unwrap();
    block_on(second).unwrap();
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
