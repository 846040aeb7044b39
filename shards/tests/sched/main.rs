//! The I/O scheduler's rules (`shards/src/sched`), proven by counting, not
//! by clocks:
//! - the scheduler alone, polled by hand: latency calls overtake queued bulk
//!   work, the bulk class gets its share of dispatches under a latency
//!   flood, the bounds hold under a seeded random load, a dropped waiter
//!   leaves no ghost and no permit, every queue is bounded;
//! - the store on simulated files and on real DMA files, both classes at
//!   once: the device calls in flight, counted at the file seam under the
//!   scheduler, never pass the bounds, and large operations reach the
//!   device in pieces.

mod probe;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::{future, StreamExt};
use glommio::{LocalExecutorBuilder, Placement};
use probe::{mixed_workload, Counting, Probe};
use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::fs::sim::SimFs;
use shardblob_shards::rng::Rng;
use shardblob_shards::sched::{max_io_bytes, Acquire, Cost, IoScheduler, Permit, SchedConfig};
use shardblob_shards::IoClass::{self, Latency, Throughput};
use shardblob_shards::{Blob, DataDir, ShardStore, Storage, WriteOptions};

const PIECE: usize = 64 << 10;

/// Bounds with the alone rule off (alone bounds = throughput bounds).
fn config() -> SchedConfig {
    SchedConfig {
        depth_max: 4,
        throughput_ops_max: 2,
        throughput_bytes_max: 2 * PIECE as u64,
        throughput_ops_max_alone: 2,
        throughput_bytes_max_alone: 2 * PIECE as u64,
        alone_after_ops: 1,
        throughput_every: 3,
        queue_max: 8,
        piece_bytes: PIECE,
    }
}

/// Runs `future` on an executor of its own (1 MiB of I/O memory).
fn on_executor<T>(future: impl std::future::Future<Output = T>) -> T {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    executor.run(future)
}

/// Polls once with a waker that does nothing: the tests poll by hand.
fn poll(acquire: &mut Acquire) -> Option<Permit> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(acquire).poll(&mut cx) {
        Poll::Ready(permit) => Some(permit),
        Poll::Pending => None,
    }
}

fn granted(sched: &Rc<IoScheduler>, class: IoClass, bytes: usize) -> Permit {
    poll(&mut sched.acquire(class, Cost::call(bytes))).expect("a permit at once")
}

/// Asserts the bounds against the scheduler's own counts (the alone
/// bounds: the throughput bounds where the alone rule is off).
fn assert_bounds(sched: &IoScheduler) {
    let config = sched.config();
    let (latency, throughput) = (sched.in_flight(Latency), sched.in_flight(Throughput));
    assert!(latency.ops + throughput.ops <= config.depth_max);
    assert_within(
        sched,
        config.throughput_ops_max_alone,
        config.throughput_bytes_max_alone,
    );
}

/// Asserts that the throughput class has at most `ops_max` calls and
/// `bytes_max` bytes in flight.
fn assert_within(sched: &IoScheduler, ops_max: u32, bytes_max: u64) {
    let throughput = sched.in_flight(Throughput);
    assert!(throughput.ops <= ops_max, "{throughput:?}");
    assert!(throughput.bytes <= bytes_max, "{throughput:?}");
}

#[test]
fn latency_calls_overtake_queued_bulk_work() {
    let sched = IoScheduler::new(config());
    let bulk = [
        granted(&sched, Throughput, PIECE),
        granted(&sched, Throughput, PIECE),
    ];
    let mut queued: Vec<Acquire> = (0..3)
        .map(|_| sched.acquire(Throughput, Cost::call(PIECE)))
        .collect();
    assert!(queued.iter_mut().all(|acquire| poll(acquire).is_none()));
    assert_eq!(sched.queued(Throughput), 3);
    // Three bulk calls wait; a latency call goes to the device at once.
    let latency = granted(&sched, Latency, 4096);
    assert_eq!(sched.in_flight(Throughput).ops, 2);
    assert_eq!(sched.in_flight(Latency).ops, 1);
    drop(latency);
    // Each finished bulk call lets exactly the next one in.
    let [first, second] = bulk;
    drop(first);
    let next = poll(&mut queued[0]).expect("the head is served");
    assert!(poll(&mut queued[1]).is_none());
    drop(second);
    let after = poll(&mut queued[1]).expect("the next is served");
    assert!(poll(&mut queued[2]).is_none());
    assert_bounds(&sched);
    drop((next, after));
}

/// Bounds of two bulk calls, four when alone after three in a row.
fn alone_config() -> SchedConfig {
    SchedConfig {
        depth_max: 8,
        throughput_ops_max_alone: 4,
        throughput_bytes_max_alone: 4 * PIECE as u64,
        alone_after_ops: 3,
        ..config()
    }
}

/// Asserts the bounds that hold whenever the class is not alone too.
fn assert_tight(sched: &IoScheduler) {
    let config = sched.config();
    assert_within(
        sched,
        config.throughput_ops_max,
        config.throughput_bytes_max,
    );
}

#[test]
fn bulk_work_alone_fills_the_alone_bounds_after_its_quiet_run() {
    let sched = IoScheduler::new(alone_config());
    let mut held = vec![
        granted(&sched, Throughput, PIECE),
        granted(&sched, Throughput, PIECE),
    ];
    let mut waiting: Vec<Acquire> = (0..4)
        .map(|_| sched.acquire(Throughput, Cost::call(PIECE)))
        .collect();
    assert!(
        poll_all(&mut waiting).is_empty(),
        "two dispatched: not alone yet"
    );
    // The third dispatch makes the run; then the class is alone.
    held.remove(0);
    held.extend(poll_all(&mut waiting));
    assert_eq!(sched.in_flight(Throughput).ops, 4, "the alone bound");
    assert_eq!(waiting.len(), 1);
    assert!(sched.in_flight(Throughput).bytes <= 4 * PIECE as u64);
    drop((held, waiting));
}

#[test]
fn a_flush_does_not_end_bulk_works_quiet_spell() {
    let sched = IoScheduler::new(alone_config());
    let mut held: Vec<Permit> = (0..2).map(|_| granted(&sched, Throughput, PIECE)).collect();
    // A flush (no bytes: a sync of the bulk writer's own) in flight.
    let flush = granted(&sched, Latency, 0);
    held.remove(0);
    held.extend((0..3).map(|_| granted(&sched, Throughput, PIECE)));
    assert_eq!(sched.in_flight(Throughput).ops, 4, "alone beside a flush");
    drop((flush, held));
}

#[test]
fn a_latency_call_ends_bulk_works_alone_bounds_at_once() {
    let sched = IoScheduler::new(alone_config());
    let mut held: Vec<Permit> = (0..2).map(|_| granted(&sched, Throughput, PIECE)).collect();
    held.remove(0);
    held.extend((0..3).map(|_| granted(&sched, Throughput, PIECE)));
    assert_eq!(sched.in_flight(Throughput).ops, 4, "alone");
    // A latency call goes to the device at once, behind the four.
    let latency = granted(&sched, Latency, 4096);
    let mut waiting: Vec<Acquire> = (0..3)
        .map(|_| sched.acquire(Throughput, Cost::call(PIECE)))
        .collect();
    // No bulk call is dispatched until the class is within its bounds.
    for _ in 0..2 {
        held.remove(0);
        assert!(poll_all(&mut waiting).is_empty(), "bulk past its bounds");
    }
    held.remove(0);
    held.extend(poll_all(&mut waiting));
    assert_tight(&sched);
    assert_eq!(sched.in_flight(Throughput).ops, 2);
    // While the latency call is in flight, bulk stays within its bounds
    // however long its run.
    for _ in 0..8 {
        held.remove(0);
        held.extend(poll_all(&mut waiting));
        waiting.push(sched.acquire(Throughput, Cost::call(PIECE)));
        held.extend(poll_all(&mut waiting));
        assert_tight(&sched);
    }
    // Its completion lets bulk fill the alone bounds again: the run is long.
    drop(latency);
    waiting.extend((0..2).map(|_| sched.acquire(Throughput, Cost::call(PIECE))));
    held.extend(poll_all(&mut waiting));
    assert_eq!(sched.in_flight(Throughput).ops, 4, "alone again");
    drop((held, waiting));
}

#[test]
fn bulk_work_keeps_its_share_under_a_latency_flood() {
    let sched = IoScheduler::new(config());
    let every = sched.config().throughput_every as usize;
    let mut held: Vec<Permit> = (0..4).map(|_| granted(&sched, Latency, 4096)).collect();
    let mut waiting: Vec<(IoClass, Acquire)> = (0..40)
        .map(|i| {
            let class = if i % 8 == 0 { Throughput } else { Latency };
            (class, sched.acquire(class, Cost::call(4096)))
        })
        .collect();
    for (_, acquire) in &mut waiting {
        assert!(poll(acquire).is_none(), "the device is full");
    }
    let mut order = Vec::new();
    while !waiting.is_empty() {
        // One call completes; the waiters that got its place are polled.
        held.remove(0);
        let mut still = Vec::new();
        for (class, mut acquire) in waiting {
            match poll(&mut acquire) {
                Some(permit) => {
                    held.push(permit);
                    order.push(class);
                }
                None => still.push((class, acquire)),
            }
        }
        waiting = still;
        assert_bounds(&sched);
    }
    // While bulk calls waited, never `every` latency dispatches in a row.
    let last_bulk = order.iter().rposition(|&c| c == Throughput).unwrap();
    for window in order[..=last_bulk].windows(every) {
        assert!(window.contains(&Throughput), "bulk starved: {order:?}");
    }
    assert_eq!(sched.dispatched(Throughput), 5);
}

#[test]
fn bounds_hold_under_a_random_load() {
    random_load(config());
    random_load(alone_config());
}

fn random_load(config: SchedConfig) {
    let mut rng = Rng::new(14);
    let sched = IoScheduler::new(config);
    let mut held: Vec<(IoClass, Cost, Permit)> = Vec::new();
    let mut waiting: Vec<(IoClass, Cost, Acquire)> = Vec::new();
    for _ in 0..20_000 {
        match rng.below(3) {
            0 if waiting.len() < 32 => {
                let class = IoClass::ALL[rng.below(2) as usize];
                let cost = Cost::call(1 + rng.below(PIECE as u64) as usize);
                waiting.push((class, cost, sched.acquire(class, cost)));
            }
            1 if !held.is_empty() => drop(held.swap_remove(rng.below(held.len() as u64) as usize)),
            _ if !waiting.is_empty() && rng.one_in(4) => {
                drop(waiting.swap_remove(rng.below(waiting.len() as u64) as usize));
            }
            _ => {}
        }
        let mut still = Vec::new();
        for (class, cost, mut acquire) in waiting {
            match poll(&mut acquire) {
                Some(permit) => held.push((class, cost, permit)),
                None => still.push((class, cost, acquire)),
            }
        }
        waiting = still;
        // The test's own count of what it holds is what the scheduler counts.
        for class in IoClass::ALL {
            let mut mine = Cost::default();
            for (_, cost, _) in held.iter().filter(|(c, _, _)| *c == class) {
                mine.ops += cost.ops;
                mine.bytes += cost.bytes;
            }
            assert_eq!(sched.in_flight(class), mine);
        }
        assert_bounds(&sched);
    }
    drop(held);
    drop(waiting);
    for class in IoClass::ALL {
        assert_eq!(sched.in_flight(class), Cost::default());
        assert_eq!(sched.queued(class), 0);
    }
}

#[test]
fn a_dropped_waiter_leaves_no_ghost_and_no_permit() {
    let sched = IoScheduler::new(config());
    let mut bulk = vec![
        granted(&sched, Throughput, PIECE),
        granted(&sched, Throughput, PIECE),
    ];
    let mut first = sched.acquire(Throughput, Cost::call(PIECE));
    let mut second = sched.acquire(Throughput, Cost::call(PIECE));
    assert!(poll(&mut first).is_none() && poll(&mut second).is_none());
    // Dropped at the head of the queue: it leaves it, and the next waiter
    // is served in its place.
    drop(first);
    assert_eq!(sched.queued(Throughput), 1);
    bulk.pop();
    let second = poll(&mut second).expect("served after the dropped head");
    // Granted while its caller was gone: the permit comes back at once.
    let mut third = sched.acquire(Throughput, Cost::call(PIECE));
    assert!(poll(&mut third).is_none());
    drop(second);
    assert_eq!(sched.in_flight(Throughput).ops, 2, "granted to the waiter");
    drop(third);
    assert_eq!(sched.in_flight(Throughput).ops, 1);
    drop(bulk);
    assert_eq!(sched.in_flight(Throughput), Cost::default());
    assert_eq!(sched.queued(Throughput), 0);
}

#[test]
fn a_full_queue_holds_its_callers_outside_it() {
    let sched = IoScheduler::new(SchedConfig {
        queue_max: 2,
        ..config()
    });
    let mut held: Vec<Permit> = (0..4).map(|_| granted(&sched, Latency, 4096)).collect();
    let mut waiting: Vec<Acquire> = (0..3)
        .map(|_| sched.acquire(Latency, Cost::call(4096)))
        .collect();
    assert!(waiting.iter_mut().all(|acquire| poll(acquire).is_none()));
    assert_eq!(sched.queued(Latency), 2, "the third waits for room");
    held.pop();
    held.push(poll(&mut waiting[0]).expect("the head is served"));
    assert!(poll(&mut waiting[2]).is_none());
    assert_eq!(sched.queued(Latency), 2, "room made: the third is queued");
}

#[test]
fn bounds_are_checked_and_the_piece_follows_the_device() {
    assert_eq!(SchedConfig::default().check(), Ok(()));
    let small = SchedConfig {
        throughput_bytes_max: PIECE as u64 - 1,
        ..config()
    };
    assert!(small.check().unwrap_err().contains("piece_bytes"));
    let deep = SchedConfig {
        throughput_ops_max: 5,
        ..config()
    };
    assert!(deep.check().is_err());
    let small_device = SchedConfig::default().for_device(Some(64 << 10));
    assert_eq!(small_device.piece_bytes, 64 << 10);
    assert_eq!(
        SchedConfig::default().for_device(None).piece_bytes,
        128 << 10
    );
    assert_eq!(config().for_device(Some(5000)).piece_bytes, 4096);
}

/// Bounds of the store tests: pieces of 64 KiB, two bulk pieces in flight.
fn store_config() -> SchedConfig {
    SchedConfig {
        depth_max: 6,
        queue_max: 64,
        ..config()
    }
}

#[test]
fn both_classes_on_simulated_files_stay_within_the_bounds() {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("executor");
    executor.run(async {
        for seed in 0..8 {
            let sim = SimFs::new(seed);
            sim.set_latency(3);
            let sched = IoScheduler::new(store_config());
            let probe = Probe::new(sched.clone());
            let fs = Counting::new(sim, probe.clone());
            let store = Rc::new(ShardStore::with_scheduler(fs, "/", sched));
            mixed_workload(store, &probe).await;
        }
    });
}

#[test]
fn both_classes_on_dma_files_stay_within_the_bounds() {
    let dir = std::env::temp_dir().join(format!("shardblob-sched-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("executor");
    executor.run(async {
        let data_dir = DataDir::lock(&dir).expect("lock data dir");
        let root = data_dir.path().to_path_buf();
        let dma = DmaFs::new(data_dir).await.expect("dma fs");
        let sched = IoScheduler::new(store_config());
        let probe = Probe::new(sched.clone());
        let store = ShardStore::with_scheduler(Counting::new(dma, probe.clone()), root, sched);
        mixed_workload(Rc::new(store), &probe).await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bulk_io_between_the_ranges_of_a_batch_does_not_deadlock() {
    on_executor(async {
        let sim = SimFs::new(3);
        sim.set_latency(2);
        let sched = IoScheduler::new(store_config());
        let store = ShardStore::with_scheduler(sim, "/", sched.clone());
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &[7u8; 16 * 4096]).await.unwrap();
        // Eight groups, each holding the whole throughput budget of two
        // calls while its reads are at the device.
        let ranges: Vec<(u64, usize)> = (0..16).map(|k| (k * 4096, 4096)).collect();
        let scan = Throughput.scope(async {
            let mut batch = std::pin::pin!(blob.read_many(ranges));
            while let Some(item) = batch.next().await {
                assert!(item.unwrap().1.iter().all(|&b| b == 7));
                // More bulk I/O before taking the next range.
                blob.read_at(0, 4096).await.unwrap();
            }
        });
        let stuck = async {
            glommio::timer::sleep(std::time::Duration::from_secs(30)).await;
            panic!("the scan waits for a budget its own batch holds");
        };
        futures_lite::future::or(scan, stuck).await;
        assert_eq!(sched.in_flight(Throughput), Cost::default());
        assert_eq!(sched.dispatched(Throughput), 8 + 16);
    });
}

#[test]
fn a_synced_write_split_into_pieces_is_durable_whole() {
    on_executor(async {
        for seed in 0..16 {
            let sim = SimFs::new(seed);
            sim.set_latency(2);
            let sched = IoScheduler::new(store_config());
            let store = ShardStore::with_scheduler(sim.clone(), "/", sched.clone());
            let (blob, _) = store.open("p", b"b").await.unwrap();
            // Eight pieces and a bit, from an unaligned offset.
            let data: Vec<u8> = (0..8 * PIECE + 100).map(|i| (i % 251) as u8).collect();
            let synced = WriteOptions::THROUGHPUT | WriteOptions::SYNC;
            blob.write_vectored_at(10, &[&data], synced).await.unwrap();
            assert!(sched.dispatched(Throughput) >= 9, "written in pieces");
            drop(blob);
            let after = ShardStore::new(sim.crash(), "/");
            let (blob, len) = after.open("p", b"b").await.unwrap();
            assert!(len >= 10 + data.len() as u64, "seed {seed}: length {len}");
            let back = blob.read_at(10, data.len()).await.unwrap();
            assert!(back[..] == data[..], "seed {seed}: every piece durable");
        }
    });
}

#[test]
fn the_piece_follows_max_sectors_kb_of_the_data_dir_device() {
    // No block device under /proc.
    assert_eq!(max_io_bytes(Path::new("/proc")), None);
    if let Some(bytes) = max_io_bytes(&std::env::temp_dir()) {
        assert!(bytes >= 4096 && bytes.is_multiple_of(1024), "{bytes}");
        let piece = SchedConfig::default().for_device(Some(bytes)).piece_bytes;
        assert!(piece <= bytes && piece.is_multiple_of(4096), "{piece}");
    }
}

#[test]
fn dropped_operations_waiting_for_the_device_leave_nothing_behind() {
    on_executor(async {
        let sched = IoScheduler::new(store_config());
        let store = ShardStore::with_scheduler(SimFs::new(1), "/", sched.clone());
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &[1u8; 8192]).await.unwrap();
        let full = || {
            [
                granted(&sched, Throughput, PIECE),
                granted(&sched, Throughput, PIECE),
            ]
        };
        // A read dropped in the queue leaves it: no ghost, no permit.
        let budget = full();
        let mut read = Box::pin(Throughput.scope(blob.read_at(0, 4096)));
        assert!(future::poll_once(&mut read).await.is_none());
        assert_eq!(sched.queued(Throughput), 1);
        drop(read);
        assert_eq!(sched.queued(Throughput), 0);
        drop(budget);
        assert_eq!(sched.in_flight(Throughput), Cost::default());
        // A write dropped there keeps its place (its commit finishes on its
        // own, ARCHITECTURE.md, Cancellation) and lands when served.
        let budget = full();
        let nines = [9u8; 4096];
        let bufs: [&[u8]; 1] = [&nines];
        let mut write = Box::pin(blob.write_vectored_at(0, &bufs, WriteOptions::THROUGHPUT));
        assert!(future::poll_once(&mut write).await.is_none());
        drop(write);
        assert_eq!(sched.queued(Throughput), 1);
        drop(budget);
        // A later write waits for the orphan; then both are there.
        blob.write_at(4096, &[8u8; 4096]).await.unwrap();
        let back = blob.read_at(0, 8192).await.unwrap();
        assert!(back[..4096] == nines && back[4096..].iter().all(|&b| b == 8));
        for class in IoClass::ALL {
            assert_eq!(sched.in_flight(class), Cost::default());
            assert_eq!(sched.queued(class), 0);
        }
    });
}

/// Holds `n` latency permits: the device is `n` calls deep.
fn hold(sched: &Rc<IoScheduler>, n: usize) -> Vec<Permit> {
    (0..n).map(|_| granted(sched, Latency, 4096)).collect()
}

/// Polls every waiter once; takes out those granted, with their permits.
fn poll_all(waiting: &mut Vec<Acquire>) -> Vec<Permit> {
    let mut permits = Vec::new();
    waiting.retain_mut(|acquire| match poll(acquire) {
        Some(permit) => {
            permits.push(permit);
            false
        }
        None => true,
    });
    permits
}

#[test]
fn callers_waiting_for_room_are_all_woken_by_releases_in_one_turn() {
    let sched = IoScheduler::new(SchedConfig {
        queue_max: 2,
        ..config()
    });
    let mut held = hold(&sched, 4);
    // A and B queued, C and D wait for room.
    let mut waiting: Vec<Acquire> = (0..4)
        .map(|_| sched.acquire(Latency, Cost::call(4096)))
        .collect();
    assert!(waiting.iter_mut().all(|acquire| poll(acquire).is_none()));
    assert_eq!(sched.queued(Latency), 2);
    // Four calls complete before any waiter runs.
    held.clear();
    let permits: Vec<Option<Permit>> = waiting.iter_mut().map(poll).collect();
    assert!(
        permits.iter().all(Option::is_some),
        "a room-waiter never woken"
    );
}

#[test]
fn a_new_caller_does_not_take_the_room_of_a_waiting_one() {
    let sched = IoScheduler::new(SchedConfig {
        queue_max: 2,
        ..config()
    });
    let mut held = hold(&sched, 4);
    let mut waiting: Vec<Acquire> = (0..3)
        .map(|_| sched.acquire(Latency, Cost::call(4096)))
        .collect();
    assert!(waiting.iter_mut().all(|acquire| poll(acquire).is_none()));
    // A's place at the device is freed; C (waiting for room) is woken, but
    // E arrives before C runs: E must not take C's place in the queue.
    held.pop();
    let mut late = sched.acquire(Latency, Cost::call(4096));
    assert!(poll(&mut late).is_none());
    assert!(poll(&mut waiting[2]).is_none());
    assert_eq!(sched.queued(Latency), 2, "C is queued, E waits for room");
    // Arrival order: B, then C, then E.
    held.pop();
    assert!(poll(&mut waiting[1]).is_some());
    assert!(poll(&mut late).is_none(), "E before C");
    held.pop();
    assert!(poll(&mut waiting[2]).is_some());
    held.pop();
    assert!(poll(&mut late).is_some(), "E served last");
}

#[test]
fn a_latency_call_as_deep_as_the_device_is_not_starved_by_bulk_work() {
    let sched = IoScheduler::new(config());
    // Steady bulk work: two in flight, always more queued.
    let mut held: Vec<Permit> = (0..2).map(|_| granted(&sched, Throughput, 4096)).collect();
    let mut bulk: Vec<Acquire> = (0..8)
        .map(|_| sched.acquire(Throughput, Cost::call(4096)))
        .collect();
    assert!(bulk.iter_mut().all(|acquire| poll(acquire).is_none()));
    let deep = Cost {
        ops: sched.config().depth_max,
        bytes: 4096,
    };
    let mut batch = sched.acquire(Latency, deep);
    assert!(poll(&mut batch).is_none());
    assert!(
        granted_as_room_comes(&sched, &mut held, &mut bulk, &mut batch),
        "the latency batch never fits beside the bulk work"
    );
}

#[test]
fn a_bulk_call_as_deep_as_its_bound_is_not_starved_by_latency_calls() {
    let sched = IoScheduler::new(config());
    let mut held = hold(&sched, 4);
    let mut flood: Vec<Acquire> = (0..16)
        .map(|_| sched.acquire(Latency, Cost::call(4096)))
        .collect();
    let wide = Cost {
        ops: sched.config().throughput_ops_max,
        bytes: 4096,
    };
    let mut bulk = sched.acquire(Throughput, wide);
    assert!(poll(&mut bulk).is_none());
    assert!(flood.iter_mut().all(|acquire| poll(acquire).is_none()));
    assert!(
        granted_as_room_comes(&sched, &mut held, &mut flood, &mut bulk),
        "the bulk batch never fits beside the latency calls"
    );
}

/// Gives back one held permit at a time, letting the other class's
/// waiters in as room comes, until `batch` is granted (within the bounds):
/// false if four rounds do not do it.
fn granted_as_room_comes(
    sched: &IoScheduler,
    held: &mut Vec<Permit>,
    others: &mut Vec<Acquire>,
    batch: &mut Acquire,
) -> bool {
    for _ in 0..4 {
        held.remove(0);
        held.extend(poll_all(others));
        if let Some(permit) = poll(batch) {
            assert_bounds(sched);
            drop(permit);
            return true;
        }
    }
    false
}

#[test]
fn a_bad_config_is_clamped_not_a_panic() {
    let bad = SchedConfig {
        depth_max: 0,
        throughput_ops_max: 9,
        throughput_bytes_max: 0,
        throughput_ops_max_alone: 0,
        throughput_bytes_max_alone: 0,
        alone_after_ops: 0,
        throughput_every: 0,
        queue_max: 0,
        piece_bytes: 100,
    };
    let sched = IoScheduler::new(bad);
    assert_eq!(sched.config().check(), Ok(()));
    assert_eq!(sched.config().piece_bytes, 4096);
    let huge = SchedConfig {
        piece_bytes: usize::MAX,
        ..config()
    };
    let clamped = *IoScheduler::new(huge).config();
    assert_eq!(clamped.check(), Ok(()));
    assert_eq!(
        clamped.piece_bytes,
        shardblob_shards::sched::PIECE_BYTES_MAX
    );
    assert_eq!(IoScheduler::new(config()).config(), &config());
}

#[test]
fn a_store_with_a_tiny_piece_still_writes_and_reads() {
    on_executor(async {
        let sched = IoScheduler::new(SchedConfig {
            piece_bytes: 1,
            ..config()
        });
        let store = ShardStore::with_scheduler(SimFs::new(5), "/", sched);
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &[3u8; 3 * 4096]).await.unwrap();
        let back = blob.read_at(0, 3 * 4096).await.unwrap();
        assert!(back.iter().all(|&b| b == 3));
    });
}

#[test]
fn latency_batches_are_cut_to_leave_room_for_bulk_work() {
    on_executor(async {
        let sched = IoScheduler::new(store_config());
        let store = ShardStore::with_scheduler(SimFs::new(2), "/", sched.clone());
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &[5u8; 10 * 4096]).await.unwrap();
        let before = sched.dispatched(Latency);
        let ranges: Vec<(u64, usize)> = (0..10).map(|k| (k * 4096, 4096)).collect();
        let items: Vec<_> = blob.read_many(ranges).collect().await;
        assert_eq!(items.len(), 10);
        // depth_max 6, throughput_ops_max 2: groups of at most 4 ranges.
        assert_eq!(sched.dispatched(Latency) - before, 3);
    });
}

/// A simulated store scheduled by `alone_config`, and a blob of `blocks`
/// blocks of 7s written in it (in the latency class).
async fn alone_store(
    blocks: usize,
) -> (
    Rc<IoScheduler>,
    ShardStore<SimFs>,
    shardblob_shards::ShardBlob<SimFs>,
) {
    let sched = IoScheduler::new(SchedConfig {
        queue_max: 64,
        ..alone_config()
    });
    let store = ShardStore::with_scheduler(SimFs::new(3), "/", sched.clone());
    let (blob, _) = store.open("p", b"b").await.unwrap();
    blob.write_at(0, &vec![7u8; blocks * 4096]).await.unwrap();
    (sched, store, blob)
}

#[test]
fn a_bulk_batch_alone_is_cut_to_the_alone_bounds() {
    on_executor(async {
        let (sched, _store, blob) = alone_store(8).await;
        let ranges: Vec<(u64, usize)> = (0..8).map(|k| (k * 4096, 4096)).collect();
        let groups_of = async |ranges: Vec<(u64, usize)>| {
            let before = sched.dispatched(Throughput);
            let items: Vec<_> = Throughput.scope(blob.read_many(ranges)).collect().await;
            assert_eq!(items.len(), 8);
            sched.dispatched(Throughput) - before
        };
        // After the latency-class write: groups of the bounds, two ranges.
        assert_eq!(groups_of(ranges.clone()).await, 4);
        // Four bulk dispatches in a row since: alone, groups of four.
        assert_eq!(groups_of(ranges).await, 2);
    });
}

#[test]
fn a_bulk_batch_takes_the_tight_bounds_when_latency_work_comes() {
    on_executor(async {
        let (sched, _store, blob) = alone_store(16).await;
        for k in 0..4 {
            Throughput
                .scope(blob.read_at(k * 4096, 4096))
                .await
                .unwrap();
        }
        let before = sched.dispatched(Throughput);
        let ranges: Vec<(u64, usize)> = (0..16).map(|k| (k * 4096, 4096)).collect();
        let mut batch = Box::pin(Throughput.scope(blob.read_many(ranges)));
        batch.next().await.unwrap().unwrap();
        // Latency work comes: the groups not cut yet take the tight bounds.
        let latency = granted(&sched, Latency, 4096);
        let rest: Vec<_> = batch.collect().await;
        assert_eq!(rest.len(), 15);
        drop(latency);
        // Cut at the start, alone: four groups of four. Cut group by group:
        // one or two of four, then groups of two.
        let groups = sched.dispatched(Throughput) - before;
        assert!(
            groups >= 5,
            "{groups} groups: the batch kept the alone bounds"
        );
    });
}

#[test]
fn a_batch_reads_ahead_of_its_caller_only_so_far() {
    on_executor(async {
        let sim = SimFs::new(4);
        sim.set_latency(2);
        let sched = IoScheduler::new(store_config());
        let store = ShardStore::with_scheduler(sim.clone(), "/", sched.clone());
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &[6u8; 16 * 4096]).await.unwrap();
        let before = sched.dispatched(Throughput);
        // Sixteen ranges, groups of two; the caller takes one and waits.
        let ranges: Vec<(u64, usize)> = (0..16).map(|k| (k * 4096, 4096)).collect();
        let mut batch = Box::pin(Throughput.scope(blob.read_many(ranges)));
        batch.next().await.unwrap().unwrap();
        let idle = || glommio::timer::sleep(std::time::Duration::from_millis(50));
        idle().await;
        let ahead = sched.dispatched(Throughput) - before;
        assert!(ahead <= 3, "{ahead} groups read for a caller that took one");
        // Dropped: the driver stops, no more device calls.
        drop(batch);
        let ops = sim.op_count();
        idle().await;
        assert_eq!(
            sim.op_count(),
            ops,
            "device reads after the batch was dropped"
        );
        assert_eq!(sched.in_flight(Throughput), Cost::default());
    });
}
