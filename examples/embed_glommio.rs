//! Embedding shardblob in glommio code that runs on the engine's own shards.
//!
//! A thread-per-core server wants each request handled on the core that owns
//! the data it touches. The engine runs one pinned glommio executor per
//! shard, and lets you run your own async code on them:
//!
//! - `client.spawn_on(shard, |storage| async move { .. })` runs a task on one
//!   shard and hands you its result;
//! - `client.on_all_shards(|storage| async move { .. })` runs one on every
//!   shard and returns the results in shard order.
//!
//! Inside, `storage` is that shard's `ShardStorage`. A partition the shard
//! owns (`storage.shard_of(partition) == storage.shard()`) is served by direct
//! calls into the shard's store: no channel, no copy, no thread hop. Any other
//! partition still works, forwarded to its owner (one hop there, one back).
//! Inside the task you are in plain glommio: `glommio::spawn_local`, timers,
//! sockets, everything runs on that core.
//!
//! This program:
//! 1. starts an engine on a fresh data directory,
//! 2. runs one task on the owner of a partition: open, append, sync, read;
//! 3. runs a task on every shard that fills the partitions that shard owns,
//!    with several glommio tasks per shard, a started sync and one batched
//!    read (`read_many`);
//! 4. reads everything back from the main thread (the foreign-thread path);
//! 5. shuts the engine down and removes the data directory.
//!
//! Run it: `cargo run -p shardblob --example embed_glommio`

use std::process::ExitCode;

use futures_lite::future::block_on;
use futures_lite::StreamExt;
use shardblob::{Blob, Config, Engine, ShardBlobHandle, ShardStorage, Storage, WriteOptions};

#[path = "support/mod.rs"]
mod support;
use support::{check, shard_count, BoxError, TempDataDir};

/// Partitions `events-0..PARTITIONS`, each spread by hash over the shards.
const PARTITIONS: usize = 8;
/// Records per partition, written concurrently.
const RECORDS: usize = 16;
/// Bytes per record.
const RECORD: usize = 64;

fn main() -> ExitCode {
    support::init_logs();
    match run() {
        Ok(()) => {
            println!("embed_glommio: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embed_glommio: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    // Declared first, dropped last: the engine stops before its directory
    // is removed, on success and on every error path.
    let data_dir = TempDataDir::new("embed_glommio");
    let engine = Engine::start(Config {
        data_dir: data_dir.path().to_path_buf(),
        shards: shard_count(),
        ..Config::default()
    })?;
    // The client is `Send + Sync` and cheap to clone: it is how any thread
    // reaches the shards.
    let client = engine.client();
    println!(
        "embed_glommio: {} shards, data in {}",
        engine.shard_count(),
        data_dir.path().display()
    );

    // 1. One task on the shard that owns a partition.
    let partition = "sensor-7";
    let owner = engine.shard_of(partition);
    let readings = block_on(client.spawn_on(owner, move |storage| async move {
        // From here on we run on shard `owner`'s thread, in its executor.
        let (blob, len) = storage.open(partition, b"readings").await?;
        // On the owner, the handle is the blob itself: direct calls.
        if !matches!(blob, ShardBlobHandle::Local(_)) {
            return Err::<Vec<u8>, BoxError>("the owner got a forwarding handle".into());
        }
        // Append two records with one vectored write, then make them durable.
        let first: [&[u8]; 2] = [b"t=1 v=20.5\n", b"t=2 v=20.7\n"];
        blob.write_vectored_at(len, &first, WriteOptions::NONE)
            .await?;
        blob.sync().await?;
        // Or in one step: a write that is durable when it returns (one
        // data-sync write, no separate fdatasync).
        let len = len + 22;
        blob.write_vectored_at(len, &[b"t=3 v=20.6\n"], WriteOptions::SYNC)
            .await?;
        // The bytes read are a view of this shard's DMA buffer (no copy);
        // copy them to hand them to another thread.
        let bytes = blob.read_at(0, len as usize + 11).await?;
        Ok(bytes.to_vec())
    }))??;
    println!(
        "embed_glommio: shard {owner} owns {partition:?}, which now holds {:?}",
        String::from_utf8_lossy(&readings)
    );
    check(
        readings == b"t=1 v=20.5\nt=2 v=20.7\nt=3 v=20.6\n",
        "readings read back",
    )?;

    // 2. A task on every shard, each filling the partitions it owns.
    let owned = block_on(client.on_all_shards(|storage| async move {
        let mine: Vec<String> = (0..PARTITIONS)
            .map(|i| format!("events-{i}"))
            .filter(|p| storage.shard_of(p) == storage.shard())
            .collect();
        // One glommio task per partition; they interleave on this core.
        let tasks: Vec<_> = mine
            .iter()
            .map(|p| glommio::spawn_local(fill_and_check(storage.clone(), p.clone())))
            .collect();
        for task in tasks {
            task.await?;
        }
        Ok::<_, BoxError>((storage.shard(), mine))
    }))?;
    let mut filled = 0;
    for result in owned {
        let (shard, mine) = result?;
        println!("embed_glommio: shard {shard} filled its partitions {mine:?}");
        filled += mine.len();
    }
    check(
        filled == PARTITIONS,
        "every partition is owned by one shard",
    )?;

    // A shard can reach a partition it does not own: the same calls,
    // forwarded to the owner. Correct, but each call hops twice.
    if engine.shard_count() > 1 {
        let other = (owner + 1) % engine.shard_count();
        let (forwarded, len) = block_on(client.spawn_on(other, move |storage| async move {
            let (blob, len) = storage.open(partition, b"readings").await?;
            let forwarded = matches!(blob, ShardBlobHandle::Peer(_));
            Ok::<_, BoxError>((forwarded, len))
        }))??;
        check(forwarded, "another shard gets a forwarding handle")?;
        check(len == 33, "a forwarded open sees the owner's blob")?;
        println!("embed_glommio: shard {other} reached {partition:?} on shard {owner} (forwarded)");
    }

    // 3. The same blobs from this (foreign) thread, through the client.
    block_on(async {
        for i in 0..PARTITIONS {
            let partition = format!("events-{i}");
            let names = client.scan(&partition).await?;
            check(names == [b"log".to_vec()], "scan lists the one blob")?;
            let (blob, len) = client.open(&partition, b"log").await?;
            check(len == (RECORDS * RECORD) as u64, "length of a filled log")?;
            let last = blob.read_at(len - RECORD as u64, RECORD).await?;
            check(
                last == record(&partition, RECORDS - 1),
                "last record from the main thread",
            )?;
        }
        Ok::<_, BoxError>(())
    })?;
    println!("embed_glommio: main thread read back {PARTITIONS} partitions");

    // 4. Stop every shard (waits for in-flight work) and release the LOCK.
    engine.shutdown()?;
    Ok(())
}

/// On the shard that owns `partition`: writes `RECORDS` records to its blob
/// `log` from concurrent glommio tasks, syncs, and checks them with one
/// batched read.
async fn fill_and_check(storage: ShardStorage, partition: String) -> Result<(), BoxError> {
    let (blob, _) = storage.open(&partition, b"log").await?;
    // Handles are cheap to clone; concurrent writes to different ranges of
    // one blob never damage each other (even inside one 4 KiB block).
    let writes: Vec<_> = (0..RECORDS)
        .map(|i| {
            let blob = blob.clone();
            let bytes = record(&partition, i);
            glommio::spawn_local(async move { blob.write_at((i * RECORD) as u64, &bytes).await })
        })
        .collect();
    for write in writes {
        write.await?;
    }
    // Start the sync now, read while it runs, then wait for it. (A started
    // sync goes on even if its future is dropped.)
    let synced = blob.start_sync();
    // All ranges go to the device together, adjacent ones merged; results
    // arrive as they complete, in any order.
    let ranges = (0..RECORDS)
        .map(|i| ((i * RECORD) as u64, RECORD))
        .collect();
    let mut results = std::pin::pin!(blob.read_many(ranges));
    let mut seen = 0;
    while let Some(item) = results.next().await {
        let (i, bytes) = item?;
        check(*bytes == record(&partition, i), "a record read back")?;
        seen += 1;
    }
    check(seen == RECORDS, "read_many yields every range once")?;
    synced.await?;
    Ok(())
}

/// Record `i` of `partition`: text padded to `RECORD` bytes.
fn record(partition: &str, i: usize) -> Vec<u8> {
    let mut bytes = format!("{partition} record {i:03}").into_bytes();
    bytes.resize(RECORD, b'.');
    bytes
}
