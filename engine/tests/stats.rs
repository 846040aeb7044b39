//! Per-shard statistics (issue 15, item 4): every path to a blob is counted
//! once, on the owning shard, by kind, with its bytes, errors and latency;
//! queue depths and their high-water marks; open blobs and the space
//! reserved past their ends; the Prometheus text; calls dropped by their
//! callers on every path.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::executor::block_on;
use futures::StreamExt;
use shardblob::stats::{ErrorClass, OpKind, OpStats};
use shardblob::{shard_of, Blob, Client, Config, Engine, ShardStats, Storage};

const SHARDS: usize = 2;
/// The shard whose partition the tests use.
const OWNER: usize = 0;

fn engine(test: &str) -> (Engine, PathBuf) {
    let dir = std::env::temp_dir().join(format!("shardblob-stats-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        data_dir: dir.clone(),
        shards: SHARDS,
        ..Config::default()
    };
    (Engine::start(config).expect("engine starts"), dir)
}

fn finish(engine: Engine, dir: PathBuf) {
    engine.shutdown().expect("clean shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// A partition that lives on `OWNER`.
fn partition() -> String {
    (0..)
        .map(|i| format!("stats-{i}"))
        .find(|name| shard_of(name, SHARDS) == OWNER)
        .expect("some name hashes to every shard")
}

fn shard_stats(client: &Client, shard: usize) -> ShardStats {
    let stats = block_on(client.stats()).expect("stats");
    assert_eq!(stats.shards.len(), SHARDS);
    stats.shards[shard].clone()
}

/// One operation of every kind on a fresh blob, all succeeding:
/// open, write (8192 bytes), read (4096 + 100 bytes, two reads),
/// read_many (30 bytes), resize, sync, scan, remove.
async fn sequence<S: Storage>(storage: &S, partition: &str, name: &[u8]) {
    let (blob, _) = storage.open(partition, name).await.expect("open");
    blob.write_at(0, &[7u8; 8192]).await.expect("write");
    assert_eq!(blob.read_at(0, 4096).await.expect("read").len(), 4096);
    let mut into = [0u8; 100];
    blob.read_into(100, &mut into).await.expect("read_into");
    let many: Vec<_> = blob.read_many(vec![(0, 10), (4096, 20)]).collect().await;
    assert!(many.iter().all(Result::is_ok), "read_many");
    blob.resize(4096).await.expect("resize");
    blob.sync().await.expect("sync");
    drop(blob);
    storage.scan(partition).await.expect("scan");
    storage.remove(partition, Some(name)).await.expect("remove");
}

/// What [`sequence`] adds to each kind: (operations, bytes).
fn expected(kind: OpKind) -> (u64, u64) {
    match kind {
        OpKind::Write => (1, 8192),
        OpKind::Read => (2, 4196),
        OpKind::ReadMany => (1, 30),
        _ => (1, 0),
    }
}

/// `after - before` of one kind's counters; the latency histogram holds
/// one value per operation.
fn delta(before: &OpStats, after: &OpStats) -> (u64, u64, u64) {
    assert_eq!(after.latency_us.len(), after.count, "{:?}", after.kind);
    (
        after.count - before.count,
        after.bytes - before.bytes,
        after.errors_total() - before.errors_total(),
    )
}

/// Runs `sequence` by `path` and checks what the owner counted.
fn assert_counted(client: &Client, path: &str, run: impl FnOnce()) {
    let before = shard_stats(client, OWNER);
    let other_before = shard_stats(client, 1 - OWNER);
    run();
    let after = shard_stats(client, OWNER);
    for kind in OpKind::ALL {
        let (ops, bytes) = expected(kind);
        let got = delta(before.store.op(kind), after.store.op(kind));
        assert_eq!(
            got,
            (ops, bytes, 0),
            "{path}: {kind:?} (ops, bytes, errors)"
        );
    }
    // The other shard ran no store operation of this partition.
    let other = shard_stats(client, 1 - OWNER);
    for kind in OpKind::ALL {
        let got = delta(other_before.store.op(kind), other.store.op(kind));
        assert_eq!(got, (0, 0, 0), "{path}: the non-owner counted {kind:?}");
    }
    assert_eq!(after.store.ops_in_flight, 0, "{path}");
}

#[test]
fn every_path_counts_its_operations_once_on_the_owning_shard() {
    let (engine, dir) = engine("paths");
    let client = engine.client();
    let partition = partition();
    // Started only when called: after the counters before it are taken.
    let spawn_sequence = |shard: usize, name: &'static [u8]| {
        let (client, partition) = (client.clone(), partition.clone());
        move || {
            let task = client.spawn_on(shard, move |storage| async move {
                sequence(&storage, &partition, name).await
            });
            block_on(task).expect("task ran")
        }
    };
    assert_counted(&client, "same shard", spawn_sequence(OWNER, b"same"));
    assert_counted(&client, "cross shard", spawn_sequence(1 - OWNER, b"cross"));
    assert_counted(&client, "foreign thread", || {
        block_on(sequence(&client, &partition, b"foreign"))
    });
    finish(engine, dir);
}

/// Runs the failing calls: a read past the end, a bad partition name, an
/// empty blob name, a second open of a live blob, a remove of a missing
/// blob, a scan of a missing partition.
async fn failures<S: Storage>(storage: &S, partition: &str) {
    let (blob, _) = storage.open(partition, b"short").await.expect("open");
    blob.write_at(0, b"abc").await.expect("write");
    assert!(blob.read_at(2, 10).await.is_err(), "read past the end");
    assert!(
        storage.open(partition, b"short").await.is_err(),
        "open twice"
    );
    drop(blob);
    assert!(storage.open(partition, b"").await.is_err(), "empty name");
    assert!(storage.remove(partition, Some(b"never")).await.is_err());
    assert!(storage.remove(partition, Some(b"short")).await.is_ok());
    assert!(storage.scan(&format!("{partition}-none")).await.is_err());
}

#[test]
fn errors_are_counted_by_kind_and_class() {
    let (engine, dir) = engine("errors");
    let client = engine.client();
    let partition = partition();
    let before = shard_stats(&client, OWNER);
    block_on(failures(&client, &partition));
    let owned = partition.clone();
    let task = client.spawn_on(OWNER, move |storage| async move {
        failures(&storage, &owned).await
    });
    block_on(task).expect("task ran");
    let after = shard_stats(&client, OWNER);
    let errors = |kind: OpKind, class: ErrorClass| {
        after.store.op(kind).errors_of(class) - before.store.op(kind).errors_of(class)
    };
    // Each failure twice: once from a foreign thread, once on the shard.
    assert_eq!(errors(OpKind::Read, ErrorClass::OutOfRange), 2);
    assert_eq!(errors(OpKind::Open, ErrorClass::AlreadyOpen), 2);
    assert_eq!(errors(OpKind::Open, ErrorClass::InvalidInput), 2);
    assert_eq!(errors(OpKind::Remove, ErrorClass::NotFound), 2);
    let scans = |stats: &ShardStats| stats.store.op(OpKind::Scan).errors_of(ErrorClass::NotFound);
    let missing_scan = shard_of(&format!("{partition}-none"), SHARDS);
    assert!(
        scans(&shard_stats(&client, missing_scan)) >= 2,
        "scan of a missing partition"
    );
    // A bad partition name is refused on the shard it hashes to.
    let bad = "not a partition!";
    let before_bad = shard_stats(&client, shard_of(bad, SHARDS));
    assert!(block_on(client.open(bad, b"x")).is_err());
    let after_bad = shard_stats(&client, shard_of(bad, SHARDS));
    let invalid = |stats: &ShardStats| {
        stats
            .store
            .op(OpKind::Open)
            .errors_of(ErrorClass::InvalidInput)
    };
    assert_eq!(invalid(&after_bad) - invalid(&before_bad), 1);
    // Failed operations are operations: counted and timed.
    let read = after.store.op(OpKind::Read);
    assert_eq!(read.latency_us.len(), read.count);
    finish(engine, dir);
}

/// Requests queued at once in the queue-depth test.
const QUEUED: usize = 16;

#[test]
fn requests_queued_behind_a_busy_owner_raise_the_high_water_marks() {
    let (engine, dir) = engine("queues");
    let client = engine.client();
    let partition = partition();
    let (blob, _) = block_on(client.open(&partition, b"q")).expect("open");
    block_on(blob.write_at(0, &[1u8; 4096])).expect("write");
    // From the other shard: QUEUED reads sent while the owner is busy.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let owned = partition.clone();
    let peer = client.spawn_on(1 - OWNER, move |storage| async move {
        let (blob, _) = storage.open(&owned, b"peer").await.expect("open");
        blob.write_at(0, &[2u8; 4096]).await.expect("write");
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let mut reads: Vec<_> = (0..QUEUED)
            .map(|_| Box::pin(blob.read_at(0, 4096)))
            .collect();
        for read in reads.iter_mut() {
            assert!(futures::poll!(read).is_pending());
        }
        sent_tx.send(()).unwrap();
        futures::future::join_all(reads).await.len()
    });
    ready_rx.recv().unwrap();
    let (release, blocked) = support::block_shard(&client, OWNER);
    go_tx.send(()).unwrap();
    sent_rx.recv().unwrap();
    // From this thread: QUEUED reads in the owner's foreign queue.
    let mut reads: Vec<_> = (0..QUEUED)
        .map(|_| Box::pin(blob.read_at(0, 4096)))
        .collect();
    poll_once(&mut reads);
    release.send(()).unwrap();
    assert!(block_on(blocked).expect("the blocking task ran"));
    assert_eq!(block_on(futures::future::join_all(reads)).len(), QUEUED);
    assert_eq!(block_on(peer).expect("the peer task ran"), QUEUED);
    let owner = shard_stats(&client, OWNER);
    let (from, peer) = owner.peer_queues[0];
    assert_eq!(from, 1 - OWNER, "the queue from the other shard");
    assert!(peer.high_water_messages >= QUEUED as u64, "{peer:?}");
    let foreign = owner.foreign_queue;
    assert!(foreign.high_water_messages >= QUEUED as u64, "{foreign:?}");
    // Served: nothing waits now, and nothing runs.
    assert_eq!(peer.depth_messages, 0);
    assert_eq!(foreign.depth_messages, 0);
    assert_eq!(owner.store.ops_in_flight, 0);
    // The stats request itself may hold a permit while it runs.
    assert!(owner.forwarded_in_flight <= 1);
    // The other shard's queues saw no request from the owner.
    let other = shard_stats(&client, 1 - OWNER);
    assert_eq!(other.peer_queues[0].1.high_water_messages, 0);
    drop(blob);
    finish(engine, dir);
}

#[test]
fn open_blobs_and_space_reserved_past_their_ends_follow_the_handles() {
    let (engine, dir) = engine("reserved");
    let client = engine.client();
    let partition = partition();
    let preallocate = Config::default().preallocate_bytes;
    assert!(preallocate > 8192, "the default reserves ahead");
    let task = client.spawn_on(OWNER, move |storage| async move {
        let before = storage.stats().store;
        let (blob, _) = storage.open(&partition, b"r").await.expect("open");
        blob.write_at(0, &[3u8; 5000]).await.expect("write");
        let held = storage.stats().store;
        drop(blob);
        let closed = storage.stats().store;
        (before, held, closed)
    });
    let (before, held, closed) = block_on(task).expect("task ran");
    assert_eq!(held.open_blobs, before.open_blobs + 1);
    // The first write reserved up to the first step; its own 5000 bytes
    // are the blob's, the rest of the step is reserved past its end.
    assert_eq!(
        held.reserved_past_end_bytes,
        before.reserved_past_end_bytes + preallocate - 5000
    );
    assert_eq!(closed.open_blobs, before.open_blobs);
    assert_eq!(
        closed.reserved_past_end_bytes,
        before.reserved_past_end_bytes
    );
    finish(engine, dir);
}

/// Splits `name{labels} value` and checks each part.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
    let (name, labels) = series.split_once('{').expect("every series has labels");
    let labels = labels.strip_suffix('}').expect("labels end with }");
    let labels = labels
        .split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("key=value");
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            (key.to_string(), value.expect("a quoted value").to_string())
        })
        .collect();
    (name.to_string(), labels, value)
}

#[test]
fn the_prometheus_text_parses_line_by_line_with_shard_labels() {
    let (engine, dir) = engine("prometheus");
    let client = engine.client();
    let partition = partition();
    block_on(sequence(&client, &partition, b"p"));
    let text = block_on(engine.stats()).expect("stats").prometheus_text();
    let (mut families, mut current) = (HashSet::new(), String::new());
    let mut shards_seen = HashSet::new();
    let mut writes_on_owner = 0.0;
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            assert!(help
                .split_once(' ')
                .is_some_and(|(_, text)| !text.is_empty()));
        } else if let Some(typed) = line.strip_prefix("# TYPE ") {
            let (name, kind) = typed.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(families.insert(name.to_string()), "{name} typed twice");
            current = name.to_string();
        } else {
            let (name, labels, value) = parse_sample(line);
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|base| *base == current)
                .unwrap_or(name.as_str());
            assert_eq!(family, current, "{line} outside its family");
            let shard = &labels[0];
            assert_eq!(shard.0, "shard", "{line}");
            shards_seen.insert(shard.1.parse::<usize>().expect("shard number"));
            let op_write = labels.iter().any(|(k, v)| k == "op" && v == "write");
            if name == "shardblob_ops_total" && shard.1 == OWNER.to_string() && op_write {
                writes_on_owner = value;
            }
        }
    }
    assert_eq!(shards_seen, (0..SHARDS).collect::<HashSet<_>>());
    assert_eq!(writes_on_owner, 1.0);
    for unit in ["_total", "_seconds", "_bytes", "_messages"] {
        assert!(
            families.iter().any(|f| f.ends_with(unit)),
            "a family in {unit}"
        );
    }
    finish(engine, dir);
}

/// Polls each of `calls` once, so that each is sent or queued.
fn poll_once<F: Future + Unpin>(calls: &mut [F]) {
    block_on(async {
        for call in calls.iter_mut() {
            assert!(futures::poll!(call).is_pending(), "the call waits");
        }
    });
}

/// Polls `call` once (it starts, or its request goes out), then drops it.
async fn start_and_drop<F: Future>(call: F) {
    let mut call = std::pin::pin!(call);
    assert!(futures::poll!(call.as_mut()).is_pending(), "the call waits");
}

/// Drops a read, a write and a sync of `blob` after their first poll.
async fn drop_read_write_sync<B: Blob>(blob: &B) {
    start_and_drop(blob.read_at(0, 4096)).await;
    start_and_drop(blob.write_at(0, &[5u8; 4096])).await;
    start_and_drop(blob.sync()).await;
}

/// How often [`owner_stats_once`] looks again.
const LOOKS_MAX: usize = 5000;

/// The owner's statistics once `done` holds for them: a call its caller
/// dropped is still served, in its own time.
fn owner_stats_once(client: &Client, done: impl Fn(&ShardStats) -> bool) -> ShardStats {
    for _ in 0..LOOKS_MAX {
        let stats = shard_stats(client, OWNER);
        if done(&stats) {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let store = shard_stats(client, OWNER).store;
    let counts: Vec<_> = store
        .ops
        .iter()
        .map(|op| (op.kind, op.count, op.cancelled))
        .collect();
    panic!(
        "the owner's statistics never got there: (kind, count, cancelled) {counts:?}, {} in flight",
        store.ops_in_flight
    );
}

/// `(operations, cancelled)` that `kind` gained from `before` to `after`.
fn gained(before: &ShardStats, after: &ShardStats, kind: OpKind) -> (u64, u64) {
    let (before, after) = (before.store.op(kind), after.store.op(kind));
    let (ops, _, _) = delta(before, after);
    (ops, after.cancelled - before.cancelled)
}

#[test]
fn concurrent_syncs_from_a_foreign_client_count_one_each() {
    const SYNCS: usize = 8;
    let (engine, dir) = engine("syncs");
    let client = engine.client();
    let partition = partition();
    let (blob, _) = block_on(client.open(&partition, b"s")).expect("open");
    block_on(blob.write_at(0, &[3u8; 4096])).expect("write");
    let before = shard_stats(&client, OWNER);
    // The owner is busy: every sync joins one request in its sync lane.
    let (release, blocked) = support::block_shard(&client, OWNER);
    let mut syncs: Vec<_> = (0..SYNCS).map(|_| Box::pin(blob.sync())).collect();
    poll_once(&mut syncs);
    release.send(()).unwrap();
    assert!(block_on(blocked).expect("the blocking task ran"));
    for synced in block_on(futures::future::join_all(syncs)) {
        synced.expect("sync");
    }
    let after = shard_stats(&client, OWNER);
    assert_eq!(gained(&before, &after, OpKind::Sync), (SYNCS as u64, 0));
    assert_eq!(
        after.sync_queue.high_water_messages, 1,
        "one shared request"
    );
    assert_eq!(after.store.ops_in_flight, 0);
    drop(blob);
    finish(engine, dir);
}

#[test]
fn remote_calls_dropped_by_their_callers_count_as_cancelled() {
    let (engine, dir) = engine("dropped-remote");
    let client = engine.client();
    let partition = partition();
    let (blob, _) = block_on(client.open(&partition, b"d")).expect("open");
    block_on(blob.write_at(0, &[4u8; 4096])).expect("write");
    let before = shard_stats(&client, OWNER);
    let (release, blocked) = support::block_shard(&client, OWNER);
    // Sent (or queued) while the owner is busy, then dropped. The second
    // sync joins the first's queued request and prunes its closed reply.
    block_on(start_and_drop(blob.sync()));
    block_on(start_and_drop(blob.sync()));
    block_on(start_and_drop(client.remove(&partition, Some(b"absent"))));
    block_on(start_and_drop(client.scan(&partition)));
    let mut ranges = Box::pin(blob.read_many(vec![(0, 4096)]));
    block_on(start_and_drop(ranges.next()));
    drop(ranges);
    release.send(()).unwrap();
    assert!(block_on(blocked).expect("the blocking task ran"));
    let cancelled = [
        (OpKind::Sync, 2),
        (OpKind::Remove, 1),
        (OpKind::Scan, 1),
        (OpKind::ReadMany, 1),
    ];
    let after = owner_stats_once(&client, |now| {
        now.store.ops_in_flight == 0
            && cancelled
                .iter()
                .all(|&(kind, n)| gained(&before, now, kind) == (0, n))
    });
    for (kind, n) in cancelled {
        assert_eq!(gained(&before, &after, kind), (0, n), "{kind:?}");
    }
    drop(blob);
    finish(engine, dir);
}

#[test]
fn reads_writes_and_syncs_dropped_on_every_path_count_as_cancelled() {
    let (engine, dir) = engine("dropped-paths");
    let client = engine.client();
    let partition = partition();
    let before = shard_stats(&client, OWNER);
    // Same shard: dropped while their I/O runs.
    let owned = partition.clone();
    let same = client.spawn_on(OWNER, move |storage| async move {
        let (blob, _) = storage.open(&owned, b"same").await.expect("open");
        blob.write_at(0, &[1u8; 8192]).await.expect("write");
        drop_read_write_sync(&blob).await;
    });
    block_on(same).expect("the same-shard task ran");
    // Cross shard and foreign: dropped while queued behind a busy owner.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
    let owned = partition.clone();
    let cross = client.spawn_on(1 - OWNER, move |storage| async move {
        let (blob, _) = storage.open(&owned, b"cross").await.expect("open");
        blob.write_at(0, &[2u8; 8192]).await.expect("write");
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        drop_read_write_sync(&blob).await;
        dropped_tx.send(()).unwrap();
    });
    ready_rx.recv().unwrap();
    let (blob, _) = block_on(client.open(&partition, b"foreign")).expect("open");
    block_on(blob.write_at(0, &[3u8; 8192])).expect("write");
    let (release, blocked) = support::block_shard(&client, OWNER);
    go_tx.send(()).unwrap();
    dropped_rx.recv().unwrap();
    block_on(drop_read_write_sync(&blob));
    release.send(()).unwrap();
    assert!(block_on(blocked).expect("the blocking task ran"));
    block_on(cross).expect("the cross-shard task ran");
    let kinds = [OpKind::Read, OpKind::Write, OpKind::Sync];
    let cancelled = |now: &ShardStats, kind| gained(&before, now, kind).1;
    let after = owner_stats_once(&client, |now| {
        now.store.ops_in_flight == 0 && kinds.iter().all(|&kind| cancelled(now, kind) >= 3)
    });
    for kind in kinds {
        assert_eq!(cancelled(&after, kind), 3, "{kind:?}: one per path");
    }
    drop(blob);
    finish(engine, dir);
}
