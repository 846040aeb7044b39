//! Using shardblob from a tokio application.
//!
//! The engine runs its own pinned glommio threads; tokio keeps its own
//! workers. They meet through `Client`: a `Send + Sync` handle whose futures
//! are `Send`, so they run in `tokio::spawn` tasks like any other I/O. Each
//! call goes over a bounded queue to the shard that owns the partition and
//! its answer comes back on a one-shot channel (bytes are copied once on the
//! way). When a queue is full the caller's task waits: backpressure, not
//! unbounded memory.
//!
//! Two calls block the calling thread and belong in `spawn_blocking`:
//! `Engine::start` (it starts the shard threads and waits until they are
//! ready) and `Engine::shutdown` (it waits for in-flight work and joins them).
//!
//! This program:
//! 1. starts an engine on a fresh data directory,
//! 2. runs many tokio tasks at once, each writing, syncing and reading back
//!    its own blob (open / write / sync / read / resize),
//! 3. shares one blob handle between tasks writing different ranges,
//! 4. lists the partitions, shows two typical errors, removes everything,
//! 5. shuts down and removes the data directory.
//!
//! Run it: `cargo run -p shardblob --example tokio_app`

use std::process::ExitCode;

use shardblob::{Blob, Client, Config, Engine, Error, Storage, WriteOptions};

#[path = "support/mod.rs"]
mod support;
use support::{check, shard_count, BoxError, TempDataDir};
use tokio::task::JoinSet;

/// Concurrent tasks, each with its own blob.
const TASKS: usize = 32;
/// Partitions `tenant-0..TENANTS`; the blobs are spread over them.
const TENANTS: usize = 4;
/// Chunks each task writes; deliberately not a multiple of 4 KiB.
const CHUNKS: usize = 8;
const CHUNK: usize = 1000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    support::init_logs();
    match run().await {
        Ok(()) => {
            println!("tokio_app: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tokio_app: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // Declared first, dropped last: the engine stops before its directory
    // is removed, on success and on every error path.
    let data_dir = TempDataDir::new("tokio_app");
    let config = Config {
        data_dir: data_dir.path().to_path_buf(),
        shards: shard_count(),
        ..Config::default()
    };
    // Starting blocks this thread until every shard is up: not on a worker.
    let engine = tokio::task::spawn_blocking(move || Engine::start(config)).await??;
    let client = engine.client();
    println!(
        "tokio_app: {} shards, data in {}",
        engine.shard_count(),
        data_dir.path().display()
    );

    let result = work(&client).await;

    // Stop the shards (after their in-flight work) even if `work` failed;
    // the first error wins.
    let stopped = tokio::task::spawn_blocking(move || engine.shutdown()).await?;
    result?;
    stopped?;
    Ok(())
}

async fn work(client: &Client) -> Result<(), BoxError> {
    // 2. Many tasks at once, each on its own blob. The client is cheap to
    // clone; every clone reaches every shard.
    let mut tasks = JoinSet::new();
    for i in 0..TASKS {
        tasks.spawn(object_roundtrip(client.clone(), i));
    }
    let mut written = 0;
    while let Some(done) = tasks.join_next().await {
        written += done??;
    }
    println!("tokio_app: {TASKS} tasks wrote, synced and read back {written} bytes");

    // 3. One blob, one open, shared by several tasks: clone the handle (a
    // second `open` of a blob that is still open is `BlobAlreadyOpen`).
    let (table, _) = client.open("shared", b"table").await?;
    let mut writers = JoinSet::new();
    for slot in 0..8u64 {
        let table = table.clone();
        writers.spawn(async move {
            // Different byte ranges of one blob never damage each other.
            table.write_at(slot * 512, &[slot as u8; 512]).await
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    table.sync().await?;
    let bytes = table.read_at(0, 8 * 512).await?;
    let expected: Vec<u8> = (0..8u8).flat_map(|slot| [slot; 512]).collect();
    check(bytes == expected, "eight writers, one blob")?;
    match client.open("shared", b"table").await {
        Err(Error::BlobAlreadyOpen { .. }) => {}
        _ => return Err("a second open of a live blob must be refused".into()),
    }
    drop(table);
    println!("tokio_app: 8 tasks shared one blob handle");

    // 4. Listing, errors, removal.
    for t in 0..TENANTS {
        let partition = format!("tenant-{t}");
        let names = client.scan(&partition).await?;
        check(names.len() == TASKS / TENANTS, "blobs per tenant")?;
    }
    // Errors are values that name what they concern; nothing panics.
    match client.open("no spaces allowed", b"x").await {
        Err(e @ Error::PartitionNameInvalid(_)) => println!("tokio_app: as expected: {e}"),
        _ => return Err("a bad partition name must be refused".into()),
    }
    let (blob, len) = client.open("tenant-0", b"object-0").await?;
    match blob.read_at(len - 10, 20).await {
        Err(e @ Error::BlobInsufficientLength { .. }) => println!("tokio_app: as expected: {e}"),
        _ => return Err("a read past the end must be refused".into()),
    }
    drop(blob);
    // Removing a whole partition is durable when it returns.
    for t in 0..TENANTS {
        client.remove(&format!("tenant-{t}"), None).await?;
    }
    client.remove("shared", None).await?;
    match client.scan("tenant-0").await {
        Err(Error::PartitionMissing(_)) => {}
        _ => return Err("a removed partition must be gone".into()),
    }
    println!("tokio_app: removed every partition");
    Ok(())
}

/// One task's work: write `CHUNKS` chunks to blob `object-<i>`, make them
/// durable, read them back, then truncate to half. Returns the bytes written.
async fn object_roundtrip(client: Client, i: usize) -> Result<usize, BoxError> {
    let partition = format!("tenant-{}", i % TENANTS);
    let name = format!("object-{i}");
    let (blob, len) = client.open(&partition, name.as_bytes()).await?;
    check(len == 0, "a new blob is empty")?;

    let data: Vec<u8> = (0..CHUNKS * CHUNK).map(|b| (b * 7 + i) as u8).collect();
    for (c, chunk) in data.chunks(CHUNK).enumerate() {
        // The last chunk is written with `SYNC`: durable when it returns.
        let options = if c + 1 == CHUNKS {
            WriteOptions::SYNC
        } else {
            WriteOptions::NONE
        };
        blob.write_vectored_at((c * CHUNK) as u64, &[chunk], options)
            .await?;
    }
    // Everything written before this call is durable when it returns.
    blob.sync().await?;

    let back = blob.read_at(0, data.len()).await?;
    check(back == data, "a blob read back")?;

    let half = (data.len() / 2) as u64;
    blob.resize(half).await?;
    blob.sync().await?;
    let mut tail = vec![0u8; 100];
    blob.read_into(half - 100, &mut tail).await?;
    check(
        tail[..] == data[half as usize - 100..half as usize],
        "after resize",
    )?;

    // Dropping the last handle closes the blob; it can be opened again.
    drop(blob);
    let (_, len) = client.open(&partition, name.as_bytes()).await?;
    check(len == half, "length after reopen")?;
    Ok(data.len())
}
