//! The one conformance suite every path to a blob must pass.
//!
//! [`run`] takes any [`Storage`] and checks the whole contract of DESIGN.md
//! against it: the reference suite of commonware-runtime, plus the newer
//! contracts (one live open, read after remove, versions, overflow, synced
//! writes, `read_many`, concurrent writes inside shared blocks). The shard
//! store runs it on real DMA files and on the simulated file system; the
//! engine runs it unchanged through the same-shard, cross-shard and
//! foreign-thread paths. Each check uses its own partition, named by the
//! caller's `partition` function (an engine test picks names that land on
//! the shard it wants), so one storage can run the suite more than once.

use std::collections::HashSet;

use futures::future::join_all;
use futures::StreamExt;

use crate::api::{Blob, Storage, WriteOptions};
use crate::rng::Rng;
use crate::Error;

/// Runs every check; panics (as a test does) on the first broken contract.
pub async fn run<S: Storage>(storage: &S, partition: impl Fn(&str) -> String) {
    let p = |check: &str| partition(check);
    open_write_read(storage, &p("open")).await;
    remove_and_scan(storage, &p("remove")).await;
    scan_lists_blobs(storage, &p("scan")).await;
    concurrent_access(storage, &p("concurrent")).await;
    large_data(storage, &p("large")).await;
    overwrite_append_overlap(storage, &p("overwrite")).await;
    read_beyond_end(storage, &p("beyond")).await;
    sparse_writes_read_zeros(storage, &p("sparse")).await;
    vectored_writes(storage, &p("vectored")).await;
    chunked_read_write(storage, &p("chunked")).await;
    resize_then_reopen(storage, &p("resize")).await;
    partition_names(storage, &p).await;
    blob_names(storage, &p("names")).await;
    versions(storage, &p("versions")).await;
    zero_lengths(storage, &p("zero")).await;
    read_into_buffers(storage, &p("into")).await;
    one_live_open(storage, &p("live")).await;
    read_after_remove(storage, &p("removed")).await;
    missing_things(storage, &p("missing")).await;
    offset_overflow(storage, &p("overflow")).await;
    read_many_batches(storage, &p("many")).await;
    synced_writes(storage, &p("synced")).await;
    shared_block_writers(storage, &p("shared")).await;
    unaligned_edges(storage, &p("edges")).await;
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

async fn read<B: Blob>(blob: &B, offset: u64, len: usize) -> Vec<u8> {
    blob.read_at(offset, len).await.expect("read").to_vec()
}

async fn open_write_read<S: Storage>(s: &S, p: &str) {
    let (blob, len) = s.open(p, b"test_blob").await.unwrap();
    assert_eq!(len, 0, "a new blob is empty");
    blob.write_at(0, b"hello world").await.unwrap();
    assert_eq!(read(&blob, 0, 11).await, b"hello world");
    assert_eq!(read(&blob, 6, 5).await, b"world");
}

async fn remove_and_scan<S: Storage>(s: &S, p: &str) {
    drop(s.open(p, b"test_blob").await.unwrap());
    s.remove(p, Some(b"test_blob")).await.unwrap();
    assert!(s.scan(p).await.unwrap().is_empty(), "blob removed");
}

async fn scan_lists_blobs<S: Storage>(s: &S, p: &str) {
    let names: Vec<&[u8]> = vec![b"blob1", b"blob2", &[0, 255, 10]];
    for name in &names {
        drop(s.open(p, name).await.unwrap());
    }
    let found: HashSet<Vec<u8>> = s.scan(p).await.unwrap().into_iter().collect();
    let wanted: HashSet<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    assert_eq!(found, wanted);
}

async fn concurrent_access<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    blob.write_at(0, b"concurrent write").await.unwrap();
    let (written, bytes) =
        futures::join!(blob.write_at(0, b"concurrent write"), blob.read_at(0, 16));
    written.unwrap();
    assert_eq!(&*bytes.unwrap(), b"concurrent write");
}

async fn large_data<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"large").await.unwrap();
    let data = pattern(1, 10 << 20);
    blob.write_at(0, &data).await.unwrap();
    assert!(
        read(&blob, 0, data.len()).await == data,
        "10 MiB round trip"
    );
    assert!(read(&blob, 12_345, 3 << 20).await == data[12_345..12_345 + (3 << 20)]);
}

async fn overwrite_append_overlap<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    blob.write_at(0, b"initial data").await.unwrap();
    blob.write_at(8, b"overwrite").await.unwrap();
    assert_eq!(read(&blob, 0, 17).await, b"initial overwrite");
    let (blob, _) = s.open(p, b"append").await.unwrap();
    blob.write_at(0, b"first").await.unwrap();
    blob.write_at(5, b"second").await.unwrap();
    assert_eq!(read(&blob, 0, 11).await, b"firstsecond");
    let (blob, _) = s.open(p, b"overlap").await.unwrap();
    blob.write_at(0, b"overlap").await.unwrap();
    blob.write_at(4, b"map").await.unwrap();
    assert_eq!(read(&blob, 0, 7).await, b"overmap");
}

fn is_short(result: Result<impl Sized, Error>) -> bool {
    matches!(result, Err(Error::BlobInsufficientLength { .. }))
}

async fn read_beyond_end<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    assert!(
        is_short(blob.read_at(0, 1).await),
        "empty blob has no byte 0"
    );
    blob.write_at(0, b"hello").await.unwrap();
    assert!(is_short(blob.read_at(6, 10).await));
    assert!(is_short(blob.read_at(0, 6).await));
    let mut buf = [0u8; 10];
    assert!(is_short(blob.read_into(6, &mut buf).await));
    let err = blob.read_at(4, 2).await.unwrap_err().to_string();
    assert!(
        err.contains(p) && err.contains("/62"),
        "error names blob: {err}"
    );
}

async fn sparse_writes_read_zeros<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    blob.write_at(10_000, b"offset data").await.unwrap();
    assert_eq!(read(&blob, 10_000, 11).await, b"offset data");
    assert!(
        read(&blob, 0, 10_000).await.iter().all(|&b| b == 0),
        "gap reads zeros"
    );
    blob.write_at(0, b"first").await.unwrap();
    blob.write_at(10, b"second").await.unwrap();
    assert_eq!(read(&blob, 0, 16).await, b"first\0\0\0\0\0second");
}

async fn vectored_writes<S: Storage>(s: &S, p: &str) {
    let cases: Vec<(u64, Vec<Vec<u8>>)> = vec![
        (0, vec![b"hello".to_vec(), b" ".to_vec(), b"world".to_vec()]),
        (
            0,
            vec![vec![], b"abc".to_vec(), vec![], b"def".to_vec(), vec![]],
        ),
        (0, (0..128).map(|i| vec![i as u8; i]).collect()),
        (5_000, (0..128).map(|i| vec![i as u8; i]).collect()),
    ];
    for (i, (offset, bufs)) in cases.into_iter().enumerate() {
        let (blob, _) = s.open(p, format!("v{i}").as_bytes()).await.unwrap();
        let slices: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        blob.write_vectored_at(offset, &slices, WriteOptions::NONE)
            .await
            .unwrap();
        let expected = bufs.concat();
        assert_eq!(
            read(&blob, offset, expected.len()).await,
            expected,
            "case {i}"
        );
        assert!(read(&blob, 0, offset as usize)
            .await
            .iter()
            .all(|&b| b == 0));
    }
}

async fn chunked_read_write<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    let chunk = 1 << 20;
    for i in 0..10u64 {
        blob.write_at(i * chunk as u64, &pattern(i, chunk))
            .await
            .unwrap();
    }
    for i in 0..10u64 {
        assert!(
            read(&blob, i * chunk as u64, chunk).await == pattern(i, chunk),
            "chunk {i}"
        );
    }
}

async fn resize_then_reopen<S: Storage>(s: &S, p: &str) {
    {
        let (blob, _) = s.open(p, b"b").await.unwrap();
        blob.write_at(0, b"hello world").await.unwrap();
        blob.resize(5).await.unwrap();
        blob.sync().await.unwrap();
        assert!(is_short(blob.read_at(0, 6).await));
        blob.resize(9000).await.unwrap();
        assert_eq!(
            read(&blob, 0, 9000).await[..12],
            *b"hello\0\0\0\0\0\0\0",
            "cut bytes do not return"
        );
        blob.resize(5).await.unwrap();
        blob.sync().await.unwrap();
    }
    let (blob, len) = s.open(p, b"b").await.unwrap();
    assert_eq!(len, 5, "length after resize and reopen");
    assert_eq!(read(&blob, 0, 5).await, b"hello");
    drop(blob);
    {
        let (blob, _) = s.open(p, b"unaligned").await.unwrap();
        blob.write_at(0, &pattern(2, 5_000)).await.unwrap();
        blob.write_at(5_000, &pattern(3, 77)).await.unwrap();
    }
    let (blob, len) = s.open(p, b"unaligned").await.unwrap();
    assert_eq!(len, 5_077, "padding of the last block is not length");
    assert_eq!(read(&blob, 5_000, 77).await, pattern(3, 77));
}

async fn partition_names<S: Storage>(s: &S, p: impl Fn(&str) -> String) {
    let invalid = |r: Result<(), Error>| matches!(r, Err(Error::PartitionNameInvalid(_)));
    for base in [
        "partition",
        "my_partition",
        "my-partition",
        "partition123",
        "A1",
    ] {
        let valid = p(base);
        let valid = valid.as_str();
        assert!(
            !invalid(s.open(valid, b"blob").await.map(drop)),
            "{valid} accepted by open"
        );
        assert!(
            !invalid(s.remove(valid, None).await),
            "{valid} accepted by remove"
        );
        assert!(
            !invalid(s.scan(valid).await.map(drop)),
            "{valid} accepted by scan"
        );
    }
    let long = "x".repeat(256);
    for bad in [
        "my/partition",
        "my.partition",
        "my partition",
        "../escape",
        "",
        "..",
        "a\0b",
        "é",
        &long,
    ] {
        assert!(
            invalid(s.open(bad, b"blob").await.map(drop)),
            "{bad:?} rejected by open"
        );
        assert!(
            invalid(s.remove(bad, None).await),
            "{bad:?} rejected by remove"
        );
        assert!(
            invalid(s.scan(bad).await.map(drop)),
            "{bad:?} rejected by scan"
        );
    }
}

async fn blob_names<S: Storage>(s: &S, p: &str) {
    let bad = |r: Result<(), Error>| matches!(r, Err(Error::BlobNameInvalid { .. }));
    assert!(bad(s.open(p, b"").await.map(drop)), "empty blob name");
    assert!(
        bad(s.open(p, &[1; 128]).await.map(drop)),
        "128-byte blob name"
    );
    assert!(bad(s.remove(p, Some(b"")).await), "remove of empty name");
    let (blob, _) = s.open(p, &[0xff; 127]).await.unwrap();
    blob.write_at(0, b"x").await.unwrap();
}

async fn versions<S: Storage>(s: &S, p: &str) {
    let (blob, _, version) = s.open_versioned(p, b"b", 1..=1).await.unwrap();
    assert_eq!(version, 1);
    blob.sync().await.unwrap();
    drop(blob);
    let (blob, _, version) = s.open_versioned(p, b"b", 0..=2).await.unwrap();
    assert_eq!(version, 1, "stored version kept");
    drop(blob);
    let result = s.open_versioned(p, b"b", 2..=3).await.map(drop);
    assert!(
        matches!(result, Err(Error::BlobVersionMismatch { ref expected, found: 1, .. }) if *expected == (2..=3)),
        "{result:?}"
    );
    #[allow(clippy::reversed_empty_ranges)]
    let empty = s.open_versioned(p, b"c", 3..=2).await.map(drop);
    assert!(
        matches!(empty, Err(Error::VersionRangeEmpty { .. })),
        "{empty:?}"
    );
    let (_, _, version) = s.open_versioned(p, b"d", 4..=9).await.unwrap();
    assert_eq!(version, 9, "a new blob gets versions.end()");
}

async fn zero_lengths<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    assert_eq!(
        blob.read_at(0, 0).await.unwrap().len(),
        0,
        "empty read of empty blob"
    );
    blob.write_at(0, b"hello").await.unwrap();
    for offset in [0, 3, 5] {
        assert_eq!(blob.read_at(offset, 0).await.unwrap().len(), 0);
        blob.read_into(offset, &mut []).await.unwrap();
    }
    assert!(
        is_short(blob.read_at(6, 0).await),
        "zero-length read past the end"
    );
    blob.write_at(1 << 30, &[]).await.unwrap();
    assert!(
        is_short(blob.read_at(0, 6).await),
        "empty write does not extend"
    );
}

async fn read_into_buffers<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    blob.write_at(0, b"hello world").await.unwrap();
    let mut exact = [0u8; 11];
    blob.read_into(0, &mut exact).await.unwrap();
    assert_eq!(&exact, b"hello world");
    let mut big = [7u8; 64];
    blob.read_into(6, &mut big[..5]).await.unwrap();
    assert_eq!(&big[..5], b"world");
    assert!(big[5..].iter().all(|&b| b == 7), "bytes past len untouched");
}

async fn one_live_open<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    let again = s.open(p, b"b").await.map(drop);
    assert!(
        matches!(again, Err(Error::BlobAlreadyOpen { .. })),
        "{again:?}"
    );
    let clone = blob.clone();
    drop(blob);
    clone.write_at(0, b"shared").await.unwrap();
    assert!(matches!(
        s.open(p, b"b").await.map(drop),
        Err(Error::BlobAlreadyOpen { .. })
    ));
    drop(clone);
    let (blob, len) = s
        .open(p, b"b")
        .await
        .expect("reopen after the last handle dropped");
    assert_eq!(len, 6);
    assert_eq!(read(&blob, 0, 6).await, b"shared");
}

async fn read_after_remove<S: Storage>(s: &S, p: &str) {
    let (old, _) = s.open(p, b"b").await.unwrap();
    old.write_at(0, b"kept by the old handle").await.unwrap();
    s.remove(p, Some(b"b")).await.unwrap();
    assert_eq!(
        read(&old, 0, 4).await,
        b"kept",
        "old handle reads after remove"
    );
    let (new, len) = s
        .open(p, b"b")
        .await
        .expect("reopen after remove is a new blob");
    assert_eq!(len, 0);
    new.write_at(0, b"new").await.unwrap();
    assert_eq!(read(&old, 0, 4).await, b"kept");
    drop(old);
    assert!(
        matches!(
            s.open(p, b"b").await.map(drop),
            Err(Error::BlobAlreadyOpen { .. })
        ),
        "old handle's drop keeps the new open"
    );
    s.remove(p, None).await.unwrap();
    assert_eq!(
        read(&new, 0, 3).await,
        b"new",
        "handle reads after partition remove"
    );
}

async fn missing_things<S: Storage>(s: &S, p: &str) {
    assert!(matches!(s.scan(p).await, Err(Error::PartitionMissing(_))));
    assert!(matches!(
        s.remove(p, None).await,
        Err(Error::PartitionMissing(_))
    ));
    drop(s.open(p, b"present").await.unwrap());
    let missing = s.remove(p, Some(b"absent")).await;
    assert!(
        matches!(missing, Err(Error::BlobMissing { .. })),
        "{missing:?}"
    );
    let text = missing.unwrap_err().to_string();
    assert!(text.contains(&format!("{p}/616273656e74")), "{text}");
    s.remove(p, None).await.unwrap();
    assert!(matches!(s.scan(p).await, Err(Error::PartitionMissing(_))));
}

async fn offset_overflow<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    blob.write_at(0, b"safe").await.unwrap();
    let overflow = |r: Result<(), Error>| matches!(r, Err(Error::OffsetOverflow { .. }));
    assert!(overflow(blob.write_at(u64::MAX - 1, b"xyz").await));
    assert!(
        overflow(blob.write_at(u64::MAX / 2, b"xyz").await),
        "past the largest file"
    );
    assert!(overflow(blob.read_at(u64::MAX, 2).await.map(drop)));
    assert!(overflow(blob.resize(u64::MAX).await));
    let mut buf = [0u8; 2];
    assert!(overflow(blob.read_into(u64::MAX - 1, &mut buf).await));
    assert_eq!(read(&blob, 0, 4).await, b"safe", "nothing stored is lost");
}

async fn read_many_batches<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    let data = pattern(9, 64 << 10);
    blob.write_at(0, &data).await.unwrap();
    let ranges = vec![
        (0, 4096),
        (4096, 4096),
        (100, 10),
        (100, 10),
        (60_000, 0),
        (8191, 3000),
        (65_000, 536),
    ];
    let mut seen = vec![0u32; ranges.len()];
    let mut results = std::pin::pin!(blob.read_many(ranges.clone()));
    while let Some(item) = results.next().await {
        let (index, bytes) = item.expect("read_many item");
        let (offset, len) = ranges[index];
        assert_eq!(
            &*bytes,
            &data[offset as usize..offset as usize + len],
            "range {index}"
        );
        seen[index] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "each range exactly once: {seen:?}"
    );
    let mut past = std::pin::pin!(blob.read_many(vec![(0, 10), (65_530, 10)]));
    let first = past.next().await.expect("an error item");
    assert!(is_short(first), "a range past the end fails the call");
    assert!(std::pin::pin!(blob.read_many(Vec::new()))
        .next()
        .await
        .is_none());
}

async fn synced_writes<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    let data = pattern(4, 9_000);
    blob.write_vectored_at(0, &[&data[..100], &data[100..]], WriteOptions::SYNC)
        .await
        .unwrap();
    blob.write_vectored_at(
        9_000,
        &[b"tail"],
        WriteOptions::SYNC | WriteOptions::DONT_CACHE,
    )
    .await
    .unwrap();
    assert_eq!(read(&blob, 0, 9_000).await, data);
    assert_eq!(read(&blob, 9_000, 4).await, b"tail");
    let handle = blob.start_sync();
    handle.await.unwrap();
    drop(blob.start_sync());
    blob.sync().await.unwrap();
}

async fn shared_block_writers<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    blob.write_at(0, &[0xEE; 3]).await.unwrap();
    const WRITERS: usize = 64;
    const STRIDE: usize = 7;
    const ROUNDS: usize = 40;
    let blob_ref = &blob;
    join_all((0..WRITERS).map(|w| async move {
        for round in 0..ROUNDS {
            let offset = (round * WRITERS + w) * STRIDE;
            let bytes = [(w as u8) ^ (round as u8); STRIDE];
            blob_ref.write_at(offset as u64, &bytes).await.unwrap();
        }
    }))
    .await;
    let total = WRITERS * ROUNDS * STRIDE;
    let all = read(&blob, 0, total).await;
    for (i, chunk) in all.chunks(STRIDE).enumerate() {
        let (round, w) = (i / WRITERS, i % WRITERS);
        assert!(
            chunk.iter().all(|&b| b == (w as u8) ^ (round as u8)),
            "range {i} lost a byte: {chunk:?}"
        );
    }
}

async fn unaligned_edges<S: Storage>(s: &S, p: &str) {
    let (blob, _) = s.open(p, b"b").await.unwrap();
    let mut model = vec![0u8; 0];
    let writes = [
        (4095u64, 2usize),
        (1, 8190),
        (12_000, 5),
        (8192, 4096),
        (4000, 300),
        (12_004, 9000),
    ];
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let data = pattern(100 + i as u64, len);
        blob.write_at(offset, &data).await.unwrap();
        let end = offset as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
        assert_eq!(read(&blob, 0, model.len()).await, model, "after write {i}");
    }
    for (offset, len) in [(4095, 2), (0, 1), (8191, 4098), (12_003, 3)] {
        assert_eq!(
            read(&blob, offset as u64, len).await,
            model[offset..offset + len]
        );
    }
}
