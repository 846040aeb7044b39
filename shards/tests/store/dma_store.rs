//! The shard store on real DMA files: the conformance suite plus what only
//! real files show (header pages written by hand, device I/O counts, the
//! LOCK, the EOPNOTSUPP trap of a fresh data_dir).

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};
use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::header::{self, HEADER_LEN};
use shardblob_shards::{conformance, Blob, DataDir, Error, ShardStore, Storage};

/// A fresh directory under /tmp (ext4 here: O_DIRECT works, tmpfs would not).
fn fresh_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardblob-shards-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Runs `test` with a DMA store on a fresh data_dir, on its own executor.
fn with_store<Fut>(test: &str, body: impl FnOnce(ShardStore<DmaFs>, PathBuf) -> Fut)
where
    Fut: Future<Output = ()>,
{
    let dir = fresh_dir(test);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    executor.run(async {
        let store = open_store(&dir).await;
        body(store, dir.clone()).await;
    });
    fs::remove_dir_all(&dir).unwrap();
}

async fn open_store(dir: &Path) -> ShardStore<DmaFs> {
    let data_dir: Arc<DataDir> = DataDir::lock(dir).expect("lock data dir");
    let root = data_dir.path().to_path_buf();
    ShardStore::new(DmaFs::new(data_dir).await.expect("dma fs"), root)
}

#[test]
fn conformance_on_dma_files() {
    with_store("conformance", |store, _| async move {
        conformance::run(&store, |check| format!("dma-{check}"))
            .await
            .expect("the suite passes on DMA files");
    });
}

#[test]
fn fresh_data_dir_new_blob_reads_back() {
    // ARCHITECTURE.md, glommio 0.9 traps: a shard whose first DMA file is a new empty file ends
    // up with EOPNOTSUPP on every read. DmaFs::new opens the LOCK page first.
    with_store("fresh", |store, _| async move {
        let (blob, _) = store.open("p", b"first").await.unwrap();
        blob.write_at(0, &[42u8; 4096]).await.unwrap();
        assert_eq!(&*blob.read_at(0, 4096).await.unwrap(), &[42u8; 4096][..]);
        assert_eq!(&*blob.read_at(17, 3).await.unwrap(), &[42u8; 3][..]);
    });
}

fn blob_file(dir: &Path, partition: &str, name: &[u8]) -> PathBuf {
    dir.join(partition).join(shardblob_shards::name::hex(name))
}

/// A format-1 header page (the length is the file's size): every open
/// below converts it to format 2.
fn valid_page(version: u16) -> Vec<u8> {
    let mut page = vec![0u8; HEADER_LEN as usize];
    let v1 = header::Header {
        format: header::FORMAT_V1,
        ..header::Header::new(version, 0)
    };
    header::encode(&v1, &mut page);
    page
}

/// A way to damage a header page by hand.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn damaged_headers_of_blobs_with_data_are_corrupt() {
    with_store("corrupt", |store, dir| async move {
        let cases: Vec<(&[u8], Damage, &str)> = vec![
            (b"magic", Box::new(|page| page[0] ^= 0xff), "bad magic"),
            (b"crc", Box::new(|page| page[12] ^= 0x01), "bad header crc"),
            (
                b"format",
                Box::new(|page| {
                    page[8..10].copy_from_slice(&9u16.to_le_bytes());
                    let crc = crc32fast::hash(&page[..12]);
                    page[12..16].copy_from_slice(&crc.to_le_bytes());
                }),
                "unknown format version 9",
            ),
        ];
        for (name, damage, reason) in cases {
            let (blob, _) = store.open("p", name).await.unwrap();
            blob.write_at(0, b"precious").await.unwrap();
            blob.sync().await.unwrap();
            drop(blob);
            let path = blob_file(&dir, "p", name);
            let mut bytes = fs::read(&path).unwrap();
            damage(&mut bytes);
            fs::write(&path, &bytes).unwrap();
            let err = store.open("p", name).await.map(drop).unwrap_err();
            assert!(matches!(err, Error::BlobCorrupt { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(reason), "{text}");
            assert!(
                text.contains(&format!("p/{}", shardblob_shards::name::hex(name))),
                "{text}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "a corrupt blob is left as it was"
            );
        }
        // A good header at a version outside the range.
        let path = blob_file(&dir, "p", b"ver");
        let mut bytes = valid_page(7);
        bytes.extend_from_slice(b"data");
        fs::write(&path, &bytes).unwrap();
        let err = store
            .open_versioned("p", b"ver", 0..=3)
            .await
            .map(drop)
            .unwrap_err();
        assert!(
            matches!(err, Error::BlobVersionMismatch { found: 7, .. }),
            "{err:?}"
        );
        let (blob, len, version) = store.open_versioned("p", b"ver", 5..=8).await.unwrap();
        assert_eq!((len, version), (4, 7));
        assert_eq!(&*blob.read_at(0, 4).await.unwrap(), b"data");
        // The open converted the file to format 2, length in a slot.
        let converted = header::decode(&fs::read(&path).unwrap()[..HEADER_LEN as usize]).unwrap();
        assert_eq!(converted, header::Header::new(7, 4));
        drop(blob);
        let (_, len, _) = store.open_versioned("p", b"ver", 5..=8).await.unwrap();
        assert_eq!(len, 4, "a converted file reopens with its length");
    });
}

#[test]
fn unfinished_creates_reopen_as_fresh_blobs() {
    with_store("unfinished", |store, dir| async move {
        fs::create_dir_all(dir.join("p")).unwrap();
        let mut torn = valid_page(1);
        torn[100] = 1;
        torn[12] ^= 0xff;
        let cases: Vec<(&[u8], Vec<u8>)> = vec![
            (b"empty", Vec::new()),
            (b"short", vec![0x53; 100]),
            (b"zeros", vec![0; HEADER_LEN as usize]),
            (b"torn", torn),
            (b"almost", valid_page(1)[..4095].to_vec()),
        ];
        for (name, bytes) in cases {
            fs::write(blob_file(&dir, "p", name), &bytes).unwrap();
            let (blob, len, version) = store.open_versioned("p", name, 2..=4).await.unwrap();
            assert_eq!((len, version), (0, 4), "{name:?} resets to a fresh blob");
            blob.write_at(0, b"ok").await.unwrap();
            drop(blob);
            let on_disk = fs::read(blob_file(&dir, "p", name)).unwrap();
            let header = header::decode(&on_disk[..HEADER_LEN as usize]).unwrap();
            assert_eq!(header.blob_version, 4);
        }
        // An empty blob with a good header keeps its version.
        fs::write(blob_file(&dir, "p", b"kept"), valid_page(3)).unwrap();
        let (_, len, version) = store.open_versioned("p", b"kept", 0..=9).await.unwrap();
        assert_eq!((len, version), (0, 3));
    });
}

#[test]
fn scan_refuses_foreign_entries_and_partition_remove_keeps_them() {
    with_store("foreign", |store, dir| async move {
        drop(store.open("p", b"mine").await.unwrap());
        fs::write(dir.join("p").join("README.txt"), b"hi").unwrap();
        let err = store.scan("p").await.unwrap_err();
        assert!(matches!(err, Error::PartitionCorrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("README.txt"), "{err}");
        assert!(store.remove("p", None).await.is_err());
        assert!(blob_file(&dir, "p", b"mine").exists(), "nothing removed");
        fs::write(dir.join("q"), b"a file where a partition would be").unwrap();
        let err = store.open("q", b"x").await.map(drop).unwrap_err();
        assert!(matches!(err, Error::PartitionCorrupt { .. }), "{err:?}");
    });
}

/// File reads and writes this executor issued while running `op`.
async fn device_ops<F: Future<Output = ()>>(op: F) -> (u64, u64) {
    // io_stats() returns the counts since its previous call.
    glommio::executor().io_stats();
    op.await;
    let during = glommio::executor().io_stats().all_rings();
    (during.file_reads().0, during.file_writes().0)
}

#[test]
fn device_io_costs_only_what_alignment_requires() {
    with_store("iocost", |store, _| async move {
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &vec![1u8; 64 << 10]).await.unwrap();
        let (reads, writes) = device_ops(async {
            blob.write_at(8192, &[2u8; 4096]).await.unwrap();
        })
        .await;
        assert_eq!((reads, writes), (0, 1), "aligned 4 KiB write");
        let (reads, writes) = device_ops(async {
            blob.read_at(4096, 4096).await.unwrap();
        })
        .await;
        assert_eq!((reads, writes), (1, 0), "aligned 4 KiB read");
        let (reads, writes) = device_ops(async {
            blob.write_at(100, &[3u8; 10]).await.unwrap();
        })
        .await;
        assert_eq!(
            (reads, writes),
            (1, 1),
            "unaligned write inside the blob reads its block"
        );
        let (reads, writes) = device_ops(async {
            for i in 0..100u64 {
                blob.write_at((64 << 10) + i * 256, &[4u8; 256])
                    .await
                    .unwrap();
            }
        })
        .await;
        assert_eq!(reads, 0, "small appends merge into the cached tail block");
        // Each append: its block, and its length in the header's slot
        // (shards/src/blob/length.rs: a kill keeps every completed write).
        assert_eq!(writes, 200);
        drop(blob);
        let (blob, len) = store.open("p", b"b").await.unwrap();
        assert_eq!(len, (64 << 10) + 25_600);
        let (reads, _) = device_ops(async {
            blob.write_at(len, &[5u8; 100]).await.unwrap();
        })
        .await;
        assert_eq!(reads, 0, "the tail block is loaded at open");
        assert_eq!(&*blob.read_at(len - 2, 4).await.unwrap(), &[4, 4, 5, 5]);
    });
}

/// A resize keeps the tail block in memory where it can: after a cut
/// inside the cached tail block, and after an extension into a block wholly
/// past the old end (zeros), the next unaligned write there reads nothing
/// from the device. Kills, in `BlobState::commit_resize`,
/// `shards/src/blob/mod.rs:454:39: replace match guard tail.index == new_len
/// / BLOCK_SIZE with false`, `…454:61: replace / with *` and `…458:18:
/// replace match guard new_len / BLOCK_SIZE * BLOCK_SIZE >= old_len with
/// false` (each dropped the tail block, so the next write read it back).
#[test]
fn a_resize_keeps_the_tail_block_cached() {
    with_store("resize-tail", |store, _| async move {
        let (blob, _) = store.open("p", b"b").await.unwrap();
        blob.write_at(0, &[1u8; 5000]).await.unwrap();
        blob.resize(4500).await.unwrap();
        let (reads, _) = device_ops(async {
            blob.write_at(4500, &[2u8; 10]).await.unwrap();
        })
        .await;
        assert_eq!(reads, 0, "a cut inside the cached tail block keeps it");
        blob.resize(8192).await.unwrap();
        blob.resize(8192 + 100).await.unwrap();
        let (reads, _) = device_ops(async {
            blob.write_at(8192 + 100, &[3u8; 10]).await.unwrap();
        })
        .await;
        assert_eq!(reads, 0, "an extension past the old end caches zeros");
        let bytes = blob.read_at(4498, 14).await.unwrap();
        assert_eq!(&*bytes, &[1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0]);
        let bytes = blob.read_at(8192 + 98, 12).await.unwrap();
        assert_eq!(&*bytes, &[0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
    });
}

#[test]
fn second_store_on_a_data_dir_is_refused() {
    let dir = fresh_dir("lock");
    let held = DataDir::lock(&dir).unwrap();
    let err = DataDir::lock(&dir).unwrap_err().to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    drop(held);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_tasks_writing_inside_shared_blocks_lose_no_byte() {
    with_store("sharedtasks", |store, _| async move {
        let (blob, _) = store.open("p", b"shared").await.unwrap();
        const TASKS: usize = 48;
        const STRIDE: usize = 5;
        const ROUNDS: usize = 30;
        // Task t owns bytes [(r * TASKS + t) * STRIDE, +STRIDE) of round r:
        // every 4 KiB block is shared by many tasks at once.
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let blob = blob.clone();
                glommio::spawn_local(async move {
                    for r in 0..ROUNDS {
                        let offset = ((r * TASKS + t) * STRIDE) as u64;
                        blob.write_at(offset, &[(t * 7 + r) as u8; STRIDE])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let all = blob.read_at(0, TASKS * ROUNDS * STRIDE).await.unwrap();
        for (i, range) in all.chunks(STRIDE).enumerate() {
            let (r, t) = (i / TASKS, i % TASKS);
            assert!(
                range.iter().all(|&b| b == (t * 7 + r) as u8),
                "range {i} lost bytes: {range:?}"
            );
        }
    });
}
