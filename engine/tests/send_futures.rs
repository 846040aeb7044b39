//! Code generic over the storage traits runs on any runtime (issue 15,
//! point 2): a function generic over `S: SendStorage` is `tokio::spawn`ed
//! on a multi-threaded runtime, so every future it awaits (and the
//! `read_many` stream it holds across awaits) must be `Send`. With
//! `S: Storage` the same function does not compile: `async fn` in a trait
//! promises no `Send`.

use futures::StreamExt;
use shardblob::{Config, Engine, SendBlob, SendStorage, WriteOptions};

/// Writes, syncs, reads and removes one blob through any `SendStorage`.
async fn round_trip<S: SendStorage + 'static>(storage: S, partition: String) -> Vec<u8> {
    let (blob, len) = storage.open(&partition, b"k").await.expect("open");
    assert_eq!(len, 0);
    blob.write_at(0, b"hello").await.expect("write");
    blob.write_vectored_at(5, &[b" ", b"world"], WriteOptions::SYNC)
        .await
        .expect("synced write");
    blob.sync().await.expect("sync");
    blob.start_sync().await.expect("start_sync");
    blob.resize(11).await.expect("resize");
    assert_eq!(
        storage.scan(&partition).await.expect("scan"),
        vec![b"k".to_vec()]
    );
    let mut world = [0u8; 5];
    blob.read_into(6, &mut world).await.expect("read_into");
    assert_eq!(&world, b"world");
    let mut seen = Vec::new();
    {
        let mut many = std::pin::pin!(blob.read_many(vec![(0, 5), (6, 5)]));
        while let Some(item) = many.next().await {
            let (index, bytes) = item.expect("read_many");
            seen.push((index, bytes.to_vec()));
        }
    }
    seen.sort();
    assert_eq!(seen, vec![(0, b"hello".to_vec()), (1, b"world".to_vec())]);
    let bytes = blob.read_at(0, 11).await.expect("read").to_vec();
    drop(blob);
    storage.remove(&partition, None).await.expect("remove");
    let (_, _, version) = storage
        .open_versioned(&partition, b"k", 3..=5)
        .await
        .expect("open_versioned");
    assert_eq!(version, 5);
    bytes
}

#[test]
fn generic_code_over_send_storage_is_spawned_on_tokio() {
    let dir = std::env::temp_dir().join(format!("shardblob-send-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        data_dir: dir.clone(),
        shards: 2,
        ..Config::default()
    };
    let engine = Engine::start(config).expect("engine starts");
    let client = engine.client();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let outputs = runtime.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| tokio::spawn(round_trip(client.clone(), format!("send-{i}"))))
            .collect();
        let mut outputs = Vec::new();
        for task in tasks {
            outputs.push(task.await.expect("the task ran to the end"));
        }
        outputs
    });
    assert!(outputs.iter().all(|bytes| bytes == b"hello world"));
    drop(runtime);
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
