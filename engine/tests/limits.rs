//! Resource limits that must never hang the engine: the in-flight bound at
//! any shard count (also for bulk requests with every permit reserved for
//! the latency class), and a blocking pool wide enough that handed-off syncs
//! of different blobs do not wait for each other.
//!
//! Issue 11, items 9 (second half) and 10.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use shardblob::{Blob, IoClass, Storage, WriteOptions};
use support::{partition_on, start, without_hanging};

/// Caught on 58545b6: with 2 shards and a limit of 1, each idle serving loop
/// held a permit while it waited for a request, so the first `spawn_on`
/// never ran (the test binary aborts after a minute).
#[test]
fn an_inflight_limit_of_one_serves_every_path() {
    let (engine, dir) = start("limits-inflight-one", |c| {
        c.inflight_per_shard_max = 1;
        // Every permit reserved for the latency class: bulk still gets one.
        c.inflight_latency_reserved_percent = 100;
        // The test leaves a task running for ever: no need to wait for it.
        c.shutdown_grace_ms = 1;
    });
    let client = engine.client();
    let here = partition_on(&engine, 0, "p");
    let there = partition_on(&engine, 1, "p");
    let both = [here, there.clone()];
    without_hanging(move || {
        // A task that never ends must not starve forwarded requests.
        let _server = client.spawn_on(1, |_| std::future::pending::<()>());
        let forwarded = block_on(client.spawn_on(0, move |storage| async move {
            let (blob, _) = storage.open(&there, b"forwarded").await?;
            blob.write_at(0, b"via a peer").await?;
            let bulk = blob.write_vectored_at(16, &[b"bulk"], WriteOptions::THROUGHPUT);
            bulk.await?;
            blob.sync().await?;
            Ok::<_, shardblob::Error>(blob.read_at(0, 10).await?.to_vec())
        }));
        assert_eq!(forwarded.unwrap().unwrap(), b"via a peer");
        block_on(async {
            for partition in &both {
                let (blob, _) = client.open(partition, b"foreign").await.unwrap();
                blob.write_at(0, b"from a thread").await.unwrap();
                let bulk = IoClass::Throughput.scope(blob.write_at(16, b"bulk"));
                bulk.await.unwrap();
                assert_eq!(&blob.read_at(0, 13).await.unwrap()[..], b"from a thread");
            }
        });
        // Inside the guard: a hung shard hangs the engine's drop too.
        drop(engine);
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6 (one blocking thread per shard): four blocking jobs
/// that each wait for all four to have started met only if four threads ran
/// them at once; with one thread the first waited alone until it gave up.
#[test]
fn blocking_jobs_of_one_shard_run_side_by_side() {
    let (engine, dir) = start("limits-blocking-pool", |_| {});
    // The default pool must let this many syncs of one shard run at once.
    let jobs = 4;
    let met = block_on(engine.client().spawn_on(0, move |_| async move {
        let arrived = Arc::new(AtomicUsize::new(0));
        let running: Vec<_> = (0..jobs)
            .map(|_| {
                let arrived = arrived.clone();
                // A task each: a blocking job is handed to the pool only
                // when its future is polled.
                glommio::spawn_local(glommio::executor().spawn_blocking(move || {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    // Bounded: a lone job gives up after 10,000 looks.
                    (0..10_000).any(|_| {
                        std::thread::sleep(Duration::from_millis(1));
                        arrived.load(Ordering::SeqCst) == jobs
                    })
                }))
            })
            .collect();
        let mut met = 0;
        for job in running {
            met += usize::from(job.await);
        }
        met
    }))
    .unwrap();
    assert_eq!(met, jobs, "blocking jobs of one shard ran one at a time");
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
