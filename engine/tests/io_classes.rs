//! I/O classes on every path (issue 14): an operation run in
//! `IoClass::Throughput.scope(..)`, or a write with
//! `WriteOptions::THROUGHPUT`, reaches the owning shard's device in the
//! throughput class, whether it was called on the owning shard, on another
//! shard or on a foreign thread; anything else, and every flush, in the
//! latency class. Counted by the owning shard's scheduler.

mod support;

use futures::executor::block_on;
use futures::StreamExt;
use shardblob::{Blob, Client, IoClass, Storage, WriteOptions};
use support::{partition_on, start};

#[derive(Clone, Copy, Debug)]
enum Op {
    ThroughputWrite,
    ThroughputRead,
    ThroughputReadMany,
    ThroughputResize,
    ThroughputSync,
    LatencyWrite,
    LatencyRead,
    LatencyReadMany,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::ThroughputWrite,
        Op::ThroughputRead,
        Op::ThroughputReadMany,
        Op::ThroughputResize,
        Op::ThroughputSync,
        Op::LatencyWrite,
        Op::LatencyRead,
        Op::LatencyReadMany,
    ];

    /// The class its device calls must have: a sync flushes in the latency
    /// class whatever its caller's class.
    fn class(self) -> IoClass {
        match self {
            Op::ThroughputWrite
            | Op::ThroughputRead
            | Op::ThroughputReadMany
            | Op::ThroughputResize => IoClass::Throughput,
            Op::ThroughputSync | Op::LatencyWrite | Op::LatencyRead | Op::LatencyReadMany => {
                IoClass::Latency
            }
        }
    }

    async fn run<B: Blob>(self, blob: &B) {
        let bulk = IoClass::Throughput;
        let done = match self {
            Op::ThroughputWrite => {
                let data = [1u8; 8192];
                blob.write_vectored_at(0, &[&data], WriteOptions::THROUGHPUT)
                    .await
            }
            Op::ThroughputRead => bulk.scope(blob.read_at(0, 4096)).await.map(drop),
            Op::ThroughputReadMany => bulk.scope(read_many(blob)).await,
            Op::ThroughputResize => bulk.scope(blob.resize(3 * 4096)).await,
            Op::ThroughputSync => bulk.scope(blob.sync()).await,
            Op::LatencyWrite => blob.write_at(4096, &[2u8; 4096]).await,
            Op::LatencyRead => blob.read_at(0, 4096).await.map(drop),
            Op::LatencyReadMany => read_many(blob).await,
        };
        done.unwrap_or_else(|e| panic!("{self:?}: {e}"));
    }
}

/// Reads two blocks in one `read_many` batch, to its end.
async fn read_many<B: Blob>(blob: &B) -> shardblob::Result<()> {
    let ranges = vec![(0, 4096), (4096, 4096)];
    let mut items = std::pin::pin!(blob.read_many(ranges));
    let mut seen = 0;
    while let Some(item) = items.next().await {
        item?;
        seen += 1;
    }
    assert_eq!(seen, 2, "each range once");
    Ok(())
}

/// Device calls dispatched by `shard`'s scheduler so far, by class.
fn dispatched(client: &Client, shard: usize) -> [u64; 2] {
    let counts = client.spawn_on(shard, |storage| async move {
        IoClass::ALL.map(|class| storage.io_scheduler().dispatched(class))
    });
    block_on(counts).expect("counted on the shard")
}

/// Runs `op` on `partition`'s blob from shard `runner`, or from this
/// (foreign) thread when `runner` is `None`.
fn run_from(client: &Client, runner: Option<usize>, partition: &str, op: Op) {
    let partition = partition.to_string();
    match runner {
        Some(runner) => {
            let done = client.spawn_on(runner, move |storage| async move {
                let (blob, _) = storage.open(&partition, b"b").await.expect("open");
                op.run(&blob).await;
            });
            block_on(done).expect("ran on the shard");
        }
        None => block_on(async {
            let (blob, _) = client.open(&partition, b"b").await.expect("open");
            op.run(&blob).await;
        }),
    }
}

#[test]
fn every_path_carries_the_class_to_the_owning_shard() {
    let (engine, dir) = start("io-classes", |_| {});
    let client = engine.client();
    let owner = 1;
    let partition = partition_on(&engine, owner, "classes-");
    for runner in [Some(owner), Some(0), None] {
        for op in Op::ALL {
            let before = dispatched(&client, owner);
            run_from(&client, runner, &partition, op);
            let after = dispatched(&client, owner);
            let grew = |class: IoClass| after[class as usize] > before[class as usize];
            let other = match op.class() {
                IoClass::Latency => IoClass::Throughput,
                IoClass::Throughput => IoClass::Latency,
            };
            assert!(
                grew(op.class()),
                "{op:?} from {runner:?}: {before:?} -> {after:?}"
            );
            assert!(
                !grew(other),
                "{op:?} from {runner:?}: {before:?} -> {after:?}"
            );
        }
    }
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
