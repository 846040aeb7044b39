//! Forwarded requests are queued and admitted by I/O class (issue 14,
//! `ARCHITECTURE.md`, I/O classes): a latency-class request sent to a busy
//! shard after a flood of throughput-class requests is served before nearly
//! all of them, on the cross-shard and on the foreign-thread path, even when
//! the flood has spent the shard's byte budget; and every bulk request is
//! still served. Judged by the order of completion, not by a clock.

mod support;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::{join, join_all, maybe_done};
use shardblob::{Blob, IoClass, Storage, WriteOptions};
use support::{block_shard, partition_on, start, without_hanging};

/// Throughput-class writes queued before the latency-class read.
const BULK: usize = 64;
const BULK_BYTES: usize = 64 << 10;
/// The latency read may complete after at most this many bulk writes (the
/// ones already admitted when it arrives); queued FIFO behind the flood it
/// would complete after nearly all `BULK`.
const RANK_MAX: usize = 8;
/// The id the latency read records in the completion order.
const LATENCY: usize = BULK;

/// Sends `BULK` throughput-class writes to `bulk` (every other one marked
/// by its scope, the rest by `WriteOptions::THROUGHPUT`), then a
/// latency-class read of `small`, another blob of the same shard (bulk
/// work writes files of its own: a read of a blob whose length a write is
/// changing waits for that write, whatever its class); then releases the
/// blocked owner. Returns the ids in completion order.
async fn flood_then_read<B: Blob>(bulk: &B, small: &B, release: mpsc::Sender<()>) -> Vec<usize> {
    let done = Arc::new(Mutex::new(Vec::with_capacity(BULK + 1)));
    // Built now, first polled (sent) after the flood; stays ready once done.
    let read = RefCell::new(maybe_done(Box::pin(async {
        let bytes = small.read_at(0, 4096).await.expect("latency read");
        assert!(bytes.iter().all(|&b| b == 1), "the read's bytes");
        done.lock().unwrap().push(LATENCY);
    })));
    let poll_read = |cx: &mut Context<'_>| Pin::new(&mut *read.borrow_mut()).poll(cx);
    // A reference, which each `async move` write below copies.
    let poll_read = &poll_read;
    let data = vec![9u8; BULK_BYTES];
    let mut writes: Vec<_> = (0..BULK)
        .map(|i| {
            let (done, data) = (done.clone(), &data);
            Box::pin(async move {
                let offset = (i * BULK_BYTES) as u64;
                let written = match i % 2 {
                    0 => IoClass::Throughput.scope(bulk.write_at(offset, data)).await,
                    _ => {
                        let options = WriteOptions::THROUGHPUT;
                        bulk.write_vectored_at(offset, &[data], options).await
                    }
                };
                written.unwrap_or_else(|e| panic!("bulk write {i}: {e}"));
                // The read is recorded first if its reply is in by now
                // (see below).
                poll_fn(|cx| {
                    let _ = poll_read(cx);
                    Poll::Ready(())
                })
                .await;
                done.lock().unwrap().push(i);
            })
        })
        .collect();
    // A first poll sends a request, or puts it in line for the byte budget;
    // nothing completes while the owner is blocked.
    for write in &mut writes {
        assert!(futures::poll!(write.as_mut()).is_pending());
    }
    assert!(futures::poll!(poll_fn(poll_read)).is_pending());
    release.send(()).expect("the owner waits for its release");
    // Completions are recorded as this task sees them, and each write
    // polls the read before it records itself. Without that, a thread
    // taken off its CPU between a poll of the read and the writes' polls
    // that follow it saw replies that came after the read's before it
    // (ranked 8-15 under load, where the owner had answered the read
    // before its first write). Under such a stall the read may now be
    // recorded before writes whose replies came just before its own. The
    // read's own arm goes last: a write that polled it and finished leaves
    // a dead waker with its reply channel, and this poll registers the
    // task's again (otherwise a read answered after every write would
    // hang).
    join(join_all(writes), poll_fn(poll_read)).await;
    let order = done.lock().unwrap().clone();
    order
}

/// Where the latency read finished among all completions, after checking
/// that every request completed once.
fn latency_rank(order: &[usize]) -> usize {
    let mut sorted = order.to_vec();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..=BULK).collect::<Vec<_>>(), "each request once");
    order.iter().position(|&id| id == LATENCY).expect("ranked")
}

#[test]
fn a_latency_request_overtakes_queued_bulk_requests_on_every_forwarded_path() {
    without_hanging(|| {
        let (engine, dir) = start("forwarded-classes", |config| {
            config.inflight_per_shard_max = 4;
            // Less than the flood: most bulk writes wait for budget bytes.
            config.queue_bytes_per_shard_max = 1 << 20;
        });
        let client = engine.client();
        let owner = 1;
        let partition = partition_on(&engine, owner, "classes-");

        // From a foreign thread (this one).
        let (small, _) = block_on(client.open(&partition, b"small")).unwrap();
        block_on(small.write_at(0, &[1u8; 4096])).unwrap();
        let (bulk, _) = block_on(client.open(&partition, b"bulk")).unwrap();
        let (release, blocked) = block_shard(&client, owner);
        let order = block_on(flood_then_read(&bulk, &small, release));
        assert!(block_on(blocked).unwrap(), "released by the test");
        drop((small, bulk));
        let rank = latency_rank(&order);
        assert!(
            rank < RANK_MAX,
            "foreign thread: latency read ranked {rank}: {order:?}"
        );

        // From the other shard: it opens the blob before the owner blocks.
        let (opened_tx, opened) = mpsc::channel();
        let (go, go_rx) = oneshot::channel::<mpsc::Sender<()>>();
        let from_shard = partition.clone();
        let order = client.spawn_on(0, move |storage| async move {
            let (small, _) = storage.open(&from_shard, b"small").await.expect("open");
            let (bulk, _) = storage.open(&from_shard, b"bulk").await.expect("open");
            opened_tx.send(()).unwrap();
            let release = go_rx.await.expect("the test sends the release");
            flood_then_read(&bulk, &small, release).await
        });
        opened.recv().unwrap();
        let (release, blocked) = block_shard(&client, owner);
        go.send(release).unwrap();
        let order = block_on(order).unwrap();
        assert!(block_on(blocked).unwrap(), "released by the test");
        let rank = latency_rank(&order);
        assert!(
            rank < RANK_MAX,
            "cross shard: latency read ranked {rank}: {order:?}"
        );

        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// Bulk requests hold at most `inflight_per_shard_max` less the reserved
/// permits, however many are queued: sampled through the owner's
/// statistics while a flood is served.
#[test]
fn bulk_requests_never_hold_the_permits_reserved_for_latency() {
    const INFLIGHT: usize = 8;
    /// 6 of 8: bulk may hold 2.
    const RESERVED_PERCENT: u32 = 75;
    const BULK_SHARE: u64 = 2;
    const SAMPLES_MAX: usize = 100_000;
    without_hanging(|| {
        let (engine, dir) = start("forwarded-reserve", |config| {
            config.inflight_per_shard_max = INFLIGHT;
            config.inflight_latency_reserved_percent = RESERVED_PERCENT;
        });
        let client = engine.client();
        let owner = 1;
        let partition = partition_on(&engine, owner, "reserve-");
        let (bulk, _) = block_on(client.open(&partition, b"bulk")).unwrap();
        let data = vec![9u8; BULK_BYTES];
        let flooded = Cell::new(false);
        let (release, blocked) = block_shard(&client, owner);
        let mut writes: Vec<_> = (0..BULK)
            .map(|i| {
                let write = bulk.write_at((i * BULK_BYTES) as u64, &data);
                Box::pin(IoClass::Throughput.scope(write))
            })
            .collect();
        let flood = async {
            // Queued (or in line for the budget) before the owner goes on.
            for write in &mut writes {
                assert!(futures::poll!(write.as_mut()).is_pending());
            }
            release.send(()).unwrap();
            for written in join_all(writes).await {
                written.expect("bulk write");
            }
            flooded.set(true);
        };
        let sample = async {
            let (mut samples, mut in_flight_max) = (0, 0);
            while !flooded.get() && samples < SAMPLES_MAX {
                let stats = client.stats().await.expect("stats");
                in_flight_max = in_flight_max.max(stats.shards[owner].forwarded_in_flight);
                samples += 1;
            }
            (samples, in_flight_max)
        };
        let ((), (samples, in_flight_max)) = block_on(join(flood, sample));
        assert!(block_on(blocked).unwrap(), "released by the test");
        assert!(
            flooded.get(),
            "the flood ended within {SAMPLES_MAX} samples"
        );
        // The bulk share, plus the statistics request itself; and the
        // samples saw the flood running.
        let allowed = BULK_SHARE + 1;
        assert!(
            (BULK_SHARE..=allowed).contains(&in_flight_max),
            "{in_flight_max} requests in flight at most (over {samples} samples), \
             {BULK_SHARE}..={allowed} expected"
        );
        drop(bulk);
        engine.shutdown().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    });
}
