//! Many tasks over all three paths at once, each checked against a model,
//! and a flood through tiny queues that must neither lose a request nor grow
//! memory without bound.

mod support;

use std::collections::{BTreeSet, HashMap};

use futures::future::join_all;
use shardblob::{Blob, Client, Error, Storage, WriteOptions};
use shardblob_shards::rng::Rng;
use support::start;

/// One task's blobs: it alone touches its partitions, so the model is exact.
#[derive(Default)]
struct Model {
    blobs: HashMap<(String, Vec<u8>), Vec<u8>>,
}

const NAMES: [&[u8]; 3] = [b"a", b"bb", b"\x00\xff"];

/// Runs `ops` random operations over `partitions` and checks every answer.
async fn worker<S: Storage>(storage: &S, seed: u64, partitions: &[String], ops: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut open: HashMap<(String, Vec<u8>), S::Blob> = HashMap::new();
    for _ in 0..ops {
        let partition = &partitions[rng.below(partitions.len() as u64) as usize];
        let name = NAMES[rng.below(NAMES.len() as u64) as usize].to_vec();
        let key = (partition.clone(), name.clone());
        match rng.below(10) {
            0..=3 => {
                if !open.contains_key(&key) {
                    let (blob, len) = storage.open(partition, &name).await.expect("open");
                    let expected = model.blobs.entry(key.clone()).or_default();
                    assert_eq!(len, expected.len() as u64, "length on open of {key:?}");
                    open.insert(key.clone(), blob);
                }
                let blob = &open[&key];
                let offset = rng.below(20_000);
                let len = 1 + rng.below(9_000) as usize;
                let byte = rng.next_u64() as u8;
                let data = vec![byte; len];
                let options = if rng.below(4) == 0 {
                    WriteOptions::SYNC
                } else {
                    WriteOptions::NONE
                };
                blob.write_vectored_at(offset, &[&data[..len / 2], &data[len / 2..]], options)
                    .await
                    .expect("write");
                let content = model
                    .blobs
                    .get_mut(&key)
                    .expect("opened blobs are modelled");
                let end = offset as usize + len;
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[offset as usize..end].fill(byte);
            }
            4..=5 => {
                if let (Some(blob), Some(content)) = (open.get(&key), model.blobs.get(&key)) {
                    if !content.is_empty() {
                        let offset = rng.below(content.len() as u64) as usize;
                        let len = rng.below((content.len() - offset) as u64 + 1) as usize;
                        let bytes = blob.read_at(offset as u64, len).await.expect("read");
                        assert!(
                            *bytes == content[offset..offset + len],
                            "read of {key:?} at {offset}+{len}"
                        );
                    }
                    let past = blob.read_at(content.len() as u64, 1).await;
                    assert!(matches!(past, Err(Error::BlobInsufficientLength { .. })));
                }
            }
            6 => {
                if let Some(blob) = open.get(&key) {
                    let len = rng.below(15_000) as usize;
                    blob.resize(len as u64).await.expect("resize");
                    model.blobs.get_mut(&key).expect("modelled").resize(len, 0);
                }
            }
            7 => {
                if let Some(blob) = open.get(&key) {
                    blob.sync().await.expect("sync");
                }
            }
            8 => {
                open.remove(&key);
                let removed = storage.remove(partition, Some(&name)).await;
                match model.blobs.remove(&key) {
                    Some(_) => removed.expect("remove of a present blob"),
                    None => assert!(removed.is_err(), "remove of an absent blob fails"),
                }
            }
            _ => {
                let listed = storage.scan(partition).await;
                let expected: BTreeSet<Vec<u8>> = model
                    .blobs
                    .keys()
                    .filter(|(p, _)| p == partition)
                    .map(|(_, n)| n.clone())
                    .collect();
                match listed {
                    Ok(names) => assert_eq!(names.into_iter().collect::<BTreeSet<_>>(), expected),
                    Err(Error::PartitionMissing(_)) => assert!(expected.is_empty()),
                    Err(e) => panic!("scan {partition}: {e}"),
                }
            }
        }
    }
    ops
}

const TASKS_PER_PATH: usize = 24;
const PARTITIONS_PER_TASK: usize = 2;
const OPS_PER_TASK: usize = 150;

fn partitions(path: &str, task: usize) -> Vec<String> {
    (0..PARTITIONS_PER_TASK)
        .map(|i| format!("{path}-{task}-{i}"))
        .collect()
}

#[test]
fn mixed_operations_over_all_paths_match_the_model() {
    let (engine, dir) = start("stress-mixed", |_| {});
    let client = engine.client();
    let mut runs = Vec::new();
    // Shard tasks: their partitions hash to both shards, so they take the
    // direct path and the cross-shard path.
    for task in 0..TASKS_PER_PATH {
        let shard = task % engine.shard_count();
        runs.push(std::thread::spawn({
            let client = client.clone();
            move || {
                let run = client.spawn_on(shard, move |storage| async move {
                    worker(
                        &storage,
                        task as u64 + 1,
                        &partitions("shard", task),
                        OPS_PER_TASK,
                    )
                    .await
                });
                futures::executor::block_on(run).expect("shard task")
            }
        }));
    }
    // Foreign tasks: 4 threads, each running several tasks concurrently.
    for thread in 0..4 {
        let client: Client = client.clone();
        runs.push(std::thread::spawn(move || {
            let tasks = (0..TASKS_PER_PATH / 4).map(|i| {
                let task = thread * (TASKS_PER_PATH / 4) + i;
                let client = client.clone();
                async move {
                    worker(
                        &client,
                        1000 + task as u64,
                        &partitions("foreign", task),
                        OPS_PER_TASK,
                    )
                    .await
                }
            });
            futures::executor::block_on(join_all(tasks))
                .into_iter()
                .sum()
        }));
    }
    // Cross-shard tasks that only use partitions of the other shard.
    for task in 0..TASKS_PER_PATH {
        let shard = task % 2;
        let owned_by_other: Vec<String> = (0..)
            .map(|i| format!("cross-{task}-{i}"))
            .filter(|p| engine.shard_of(p) != shard)
            .take(PARTITIONS_PER_TASK)
            .collect();
        let client = client.clone();
        runs.push(std::thread::spawn(move || {
            let run = client.spawn_on(shard, move |storage| async move {
                worker(&storage, 2000 + task as u64, &owned_by_other, OPS_PER_TASK).await
            });
            futures::executor::block_on(run).expect("cross-shard task")
        }));
    }
    let total: usize = runs
        .into_iter()
        .map(|r| r.join().expect("no task panicked"))
        .sum();
    assert_eq!(total, 3 * TASKS_PER_PATH * OPS_PER_TASK);
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn flood_through_tiny_queues_completes_in_bounded_memory() {
    let (engine, dir) = start("stress-flood", |config| {
        config.channel_capacity = 2;
        config.inflight_per_shard_max = 2;
    });
    let client = engine.client();
    let setup = client.clone();
    futures::executor::block_on(async move {
        for p in ["flood-0", "flood-1", "flood-2", "flood-3"] {
            let (blob, _) = setup.open(p, b"b").await.unwrap();
            blob.write_at(0, &vec![7u8; 64 << 10]).await.unwrap();
        }
    });
    let rounds = |client: Client, seed: u64| async move {
        let mut rng = Rng::new(seed);
        let mut done = 0usize;
        for _ in 0..100 {
            let p = format!("flood-{}", rng.below(4));
            let bytes = client.scan(&p).await.unwrap();
            assert_eq!(bytes, vec![b"b".to_vec()]);
            done += 1;
        }
        done
    };
    let rss_before = rss_bytes();
    let mut threads = Vec::new();
    for t in 0..8u64 {
        let client = client.clone();
        threads.push(std::thread::spawn(move || {
            let tasks = (0..16).map(|i| rounds(client.clone(), t * 100 + i + 1));
            futures::executor::block_on(join_all(tasks))
                .into_iter()
                .sum::<usize>()
        }));
    }
    let shard_floods: Vec<_> = (0..2)
        .map(|shard| {
            client.spawn_on(shard, move |storage| async move {
                let reads = (0..64u64).map(|i| {
                    let storage = storage.clone();
                    async move {
                        let p = format!("flood-opens-{}", i % 4);
                        let (_, len) =
                            match storage.open(&p, format!("s{shard}x{i}").as_bytes()).await {
                                Ok(opened) => opened,
                                Err(e) => panic!("open {p}: {e}"),
                            };
                        assert_eq!(len, 0);
                        1usize
                    }
                });
                join_all(reads).await.into_iter().sum::<usize>()
            })
        })
        .collect();
    let foreign: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let on_shards: usize = futures::executor::block_on(join_all(shard_floods))
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(foreign, 8 * 16 * 100, "every foreign request answered");
    assert_eq!(on_shards, 128, "every shard request answered");
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 64 << 20,
        "memory grew by {grown} bytes under a flood"
    );
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
