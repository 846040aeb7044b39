//! User tasks on shards: `on_all_shards` runs them at once, and a panicking
//! task is reported without taking its shard down.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardblob::{Blob, Error, Storage};
use support::{partition_on, start};

#[test]
fn on_all_shards_runs_every_shard_at_once() {
    let (engine, dir) = start("tasks-rendezvous", |_| {});
    let arrived = Arc::new(AtomicUsize::new(0));
    let shards = engine.shard_count();
    let met = futures::executor::block_on(engine.client().on_all_shards(move |storage| {
        let arrived = arrived.clone();
        async move {
            // Each task waits for all the others: only concurrent runs meet.
            arrived.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while arrived.load(Ordering::SeqCst) < shards && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            (storage.shard(), arrived.load(Ordering::SeqCst) == shards)
        }
    }))
    .unwrap();
    assert_eq!(met, (0..shards).map(|s| (s, true)).collect::<Vec<_>>());
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_panicking_task_is_an_error_and_its_shard_lives_on() {
    let (engine, dir) = start("tasks-panic", |_| {});
    let client = engine.client();
    let partition = partition_on(&engine, 0, "p");
    let panicked = futures::executor::block_on(client.spawn_on(0, |_| async { panic!("boom") }));
    match panicked {
        Err(Error::TaskPanicked { shard: 0, message }) => assert_eq!(message, "boom"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    futures::executor::block_on(async {
        let (blob, _) = client
            .open(&partition, b"after")
            .await
            .expect("shard 0 still serves");
        blob.write_at(0, b"alive").await.unwrap();
        assert_eq!(&blob.read_at(0, 5).await.unwrap()[..], b"alive");
    });
    let missing = futures::executor::block_on(client.spawn_on(9, |_| async {}));
    assert!(
        matches!(missing, Err(Error::NoSuchShard { shard: 9, .. })),
        "{missing:?}"
    );
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
