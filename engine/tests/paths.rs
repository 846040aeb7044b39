//! The conformance suite through every path to a blob: same shard, cross
//! shard, a plain foreign thread, and a tokio runtime.

mod support;

use shardblob::{Blob, Config, Engine, Storage, WriteOptions};
use shardblob_shards::conformance;
use support::{partition_of, start};

#[test]
fn conformance_same_shard_and_cross_shard() {
    let (engine, dir) = start("engine-shard-paths", |_| {});
    let client = engine.client();
    let shards = engine.shard_count();
    assert_eq!(shards, 2);
    for (runner, owner) in [(0, 0), (1, 1), (0, 1), (1, 0)] {
        let done = client.spawn_on(runner, move |storage| async move {
            assert_eq!(storage.shard(), runner);
            let prefix = format!("r{runner}o{owner}");
            conformance::run(&storage, |check| {
                partition_of(&format!("{prefix}-{check}-"), owner, shards)
            })
            .await
            .expect("the suite passes on the shard");
        });
        futures::executor::block_on(done).expect("suite ran on the shard");
    }
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn conformance_from_a_foreign_thread_and_from_tokio() {
    let (engine, dir) = start("engine-foreign-paths", |_| {});
    let client = engine.client();
    let plain = client.clone();
    std::thread::spawn(move || {
        futures::executor::block_on(conformance::run(&plain, |check| format!("thread-{check}")))
            .expect("the suite passes from a std thread");
    })
    .join()
    .expect("suite passes from a std thread");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async move {
        tokio::spawn(async move {
            conformance::run(&client, |check| format!("tokio-{check}"))
                .await
                .expect("the suite passes inside tokio")
        })
        .await
        .expect("suite passes inside tokio");
    });
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes an aligned buffer and checks that the very allocation the caller
/// filled comes back, holding what the blob now holds.
async fn buffer_round_trip<B: Blob>(blob: &B) {
    let mut buf = blob.alloc_buf(8192).expect("alloc_buf");
    buf.fill(3);
    let from = buf.as_ptr();
    let buf = blob.write_buf_at(4096, buf, WriteOptions::NONE).await;
    let buf = buf.expect("write_buf_at");
    assert_eq!(buf.as_ptr(), from, "the caller's buffer comes back");
    let stored = blob.read_at(4096, 8192).await.expect("read");
    assert_eq!(&stored[..], &buf[..]);
}

/// A zero-copy write's buffer makes the round trip on every path: a
/// forwarded write moves it to the owner and back instead of copying it,
/// and on the owner glommio lets go of it once the write completed (the
/// device seeing the very buffer is `blob_races`' test). A buffer of
/// another handle's kind is written too, with a copy.
#[test]
fn a_buffer_write_gives_back_the_callers_buffer_on_every_path() {
    let (engine, dir) = start("engine-buffer-paths", |_| {});
    let client = engine.client();
    let shards = engine.shard_count();
    futures::executor::block_on(async {
        let (blob, _) = client.open("buffers-foreign", b"b").await.unwrap();
        buffer_round_trip(&blob).await;
    });
    for (runner, owner) in [(0, 0), (0, 1)] {
        let done = client.spawn_on(runner, move |storage| async move {
            let p = partition_of(&format!("buffers-{runner}{owner}-"), owner, shards);
            let (blob, _) = storage.open(&p, b"b").await.unwrap();
            buffer_round_trip(&blob).await;
        });
        futures::executor::block_on(done).expect("ran on the shard");
    }
    let swapped = client.spawn_on(0, move |storage| async move {
        let own = partition_of("buffers-own-", 0, shards);
        let peer = partition_of("buffers-peer-", 1, shards);
        let (own, _) = storage.open(&own, b"b").await.unwrap();
        let (peer, _) = storage.open(&peer, b"b").await.unwrap();
        for (from, to) in [(&own, &peer), (&peer, &own)] {
            let mut buf = from.alloc_buf(4096).unwrap();
            buf.fill(6);
            let buf = to.write_buf_at(0, buf, WriteOptions::NONE).await.unwrap();
            assert_eq!(buf.len(), 4096, "the buffer comes back whole");
            let stored = to.read_at(0, 4096).await.unwrap();
            assert!(
                stored.iter().all(|&b| b == 6),
                "written through the other kind"
            );
        }
    });
    futures::executor::block_on(swapped).expect("ran on the shard");
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn shutdown_releases_the_lock_and_keeps_synced_data() {
    let (engine, dir) = start("engine-restart", |_| {});
    let client = engine.client();
    futures::executor::block_on(async {
        let (blob, _) = client.open("kept", b"b").await.unwrap();
        shardblob::Blob::write_at(&blob, 0, b"durable")
            .await
            .unwrap();
        shardblob::Blob::sync(&blob).await.unwrap();
    });
    let again = Engine::start(Config {
        data_dir: dir.clone(),
        shards: 2,
        ..Config::default()
    });
    assert!(
        matches!(again, Err(shardblob::Error::DataDirLocked { .. })),
        "LOCK held while running"
    );
    drop(engine);
    let engine = Engine::start(Config {
        data_dir: dir.clone(),
        shards: 1,
        ..Config::default()
    })
    .expect("a new engine (with another shard count) starts after the old one stopped");
    let client = engine.client();
    futures::executor::block_on(async {
        let (blob, len) = client.open("kept", b"b").await.unwrap();
        assert_eq!(len, 7);
        assert_eq!(
            &*shardblob::Blob::read_at(&blob, 0, 7).await.unwrap(),
            b"durable"
        );
    });
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
