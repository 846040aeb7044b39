//! The one conformance suite every path to a blob must pass.
//!
//! [`run`] takes any [`Storage`] and checks the whole contract of `crate::api`
//! against it: the reference suite of commonware-runtime, plus the newer
//! contracts (one live open, read after remove, versions, overflow, synced
//! writes, `read_many`, concurrent writes inside shared blocks). The shard
//! store runs it on real DMA files and on the simulated file system; the
//! engine runs it unchanged through the same-shard, cross-shard and
//! foreign-thread paths. Each check uses its own partition, named by the
//! caller's `partition` function (an engine test picks names that land on
//! the shard it wants), so one storage can run the suite more than once.
//!
//! Errors and faults: every value the suite reads is an assertion (a wrong
//! value panics), but a store or blob call that fails is passed on (`?`):
//! the suite then returns that error, after checking that it names the
//! partition, and the blob where the call concerns one. A caller that
//! expects success `.expect()`s the result; the fault simulation
//! (`shards/tests/store/conformance_faults.rs`) runs each check with an injected
//! fault at every file-system call, where the suite must pass or return an
//! I/O error, never a wrong value. A check that wants a particular error
//! (`BlobMissing`, `BlobVersionMismatch`, ...) from a call that does I/O
//! accepts that error or passes an I/O error on; any other outcome fails.

use std::collections::HashSet;

use futures::future::join_all;
use futures::StreamExt;

use crate::api::{Blob, Storage, WriteOptions};
use crate::blob::WRITE_BUF_BYTES_MAX;
use crate::name::hex;
use crate::rng::Rng;
use crate::Error;

/// The checks of the suite, in the order [`run`] runs them; each is also
/// the name passed to the caller's `partition` function (except
/// `partition_names`, which asks for several).
pub const CHECKS: &[&str] = &[
    "open",
    "remove",
    "scan",
    "concurrent",
    "large",
    "overwrite",
    "beyond",
    "sparse",
    "vectored",
    "chunked",
    "resize",
    "partition_names",
    "names",
    "versions",
    "zero",
    "into",
    "live",
    "removed",
    "missing",
    "overflow",
    "many",
    "synced",
    "shared",
    "edges",
    "buffers",
];

/// Runs every check; panics (as a test does) on the first wrong value, and
/// returns the first error of a call (see the module docs).
pub async fn run<S: Storage>(storage: &S, partition: impl Fn(&str) -> String) -> Result<(), Error> {
    for check in CHECKS {
        run_check(storage, &partition, check).await?;
    }
    Ok(())
}

/// Runs the one check named `check` (one of [`CHECKS`]).
pub async fn run_check<S: Storage>(
    s: &S,
    partition: &impl Fn(&str) -> String,
    check: &str,
) -> Result<(), Error> {
    let p = partition(check);
    let p = p.as_str();
    match check {
        "open" => open_write_read(s, p).await,
        "remove" => remove_and_scan(s, p).await,
        "scan" => scan_lists_blobs(s, p).await,
        "concurrent" => concurrent_access(s, p).await,
        "large" => large_data(s, p).await,
        "overwrite" => overwrite_append_overlap(s, p).await,
        "beyond" => read_beyond_end(s, p).await,
        "sparse" => sparse_writes_read_zeros(s, p).await,
        "vectored" => vectored_writes(s, p).await,
        "chunked" => chunked_read_write(s, p).await,
        "resize" => resize_then_reopen(s, p).await,
        "partition_names" => partition_names(s, partition).await,
        "names" => blob_names(s, p).await,
        "versions" => versions(s, p).await,
        "zero" => zero_lengths(s, p).await,
        "into" => read_into_buffers(s, p).await,
        "live" => one_live_open(s, p).await,
        "removed" => read_after_remove(s, p).await,
        "missing" => missing_things(s, p).await,
        "overflow" => offset_overflow(s, p).await,
        "many" => read_many_batches(s, p).await,
        "synced" => synced_writes(s, p).await,
        "shared" => shared_block_writers(s, p).await,
        "edges" => unaligned_edges(s, p).await,
        "buffers" => buffer_writes(s, p).await,
        other => panic!("no conformance check {other:?}; see CHECKS"),
    }
}

/// Passes a failed call's error on, after checking that it names what the
/// call concerns (the contract in `crate::api`: every error names its
/// partition and blob).
trait Concerns<T> {
    /// The call concerns blob `name` of partition `p`.
    fn of_blob(self, p: &str, name: &[u8]) -> Result<T, Error>;
    /// The call concerns partition `p` as a whole.
    fn of_partition(self, p: &str) -> Result<T, Error>;
}

impl<T> Concerns<T> for Result<T, Error> {
    fn of_blob(self, p: &str, name: &[u8]) -> Result<T, Error> {
        if let Err(error) = &self {
            let subject = format!("{p}/{}", hex(name));
            let text = error.to_string();
            assert!(
                text.contains(&subject),
                "the error of a call on {subject} does not name it: {text}"
            );
        }
        self
    }

    fn of_partition(self, p: &str) -> Result<T, Error> {
        if let Err(error) = &self {
            let text = error.to_string();
            assert!(
                text.contains(p),
                "the error of a call on partition {p} does not name it: {text}"
            );
        }
        self
    }
}

/// Whether `result` is the error `expected` wants; an I/O error is passed
/// on (`Err`), as any failed call is; success or another error is `false`.
fn fails_with<T>(
    result: Result<T, Error>,
    expected: impl Fn(&Error) -> bool,
) -> Result<bool, Error> {
    match result {
        Err(error) if expected(&error) => Ok(true),
        Err(error @ Error::Io { .. }) => Err(error),
        _ => Ok(false),
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

async fn read<B: Blob>(blob: &B, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    Ok(blob.read_at(offset, len).await?.to_vec())
}

async fn open_write_read<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let name = b"test_blob";
    let (blob, len) = s.open(p, name).await.of_blob(p, name)?;
    assert_eq!(len, 0, "a new blob is empty");
    blob.write_at(0, b"hello world").await.of_blob(p, name)?;
    assert_eq!(read(&blob, 0, 11).await.of_blob(p, name)?, b"hello world");
    assert_eq!(read(&blob, 6, 5).await.of_blob(p, name)?, b"world");
    Ok(())
}

async fn remove_and_scan<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let name = b"test_blob";
    drop(s.open(p, name).await.of_blob(p, name)?);
    s.remove(p, Some(name)).await.of_blob(p, name)?;
    assert!(s.scan(p).await.of_partition(p)?.is_empty(), "blob removed");
    Ok(())
}

async fn scan_lists_blobs<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let names: Vec<&[u8]> = vec![b"blob1", b"blob2", &[0, 255, 10]];
    for name in &names {
        drop(s.open(p, name).await.of_blob(p, name)?);
    }
    let found: HashSet<Vec<u8>> = s.scan(p).await.of_partition(p)?.into_iter().collect();
    let wanted: HashSet<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    assert_eq!(found, wanted);
    Ok(())
}

async fn concurrent_access<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    blob.write_at(0, b"concurrent write")
        .await
        .of_blob(p, b"b")?;
    let (written, bytes) =
        futures::join!(blob.write_at(0, b"concurrent write"), blob.read_at(0, 16));
    written.of_blob(p, b"b")?;
    assert_eq!(&*bytes.of_blob(p, b"b")?, b"concurrent write");
    Ok(())
}

async fn large_data<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let name = b"large";
    let (blob, _) = s.open(p, name).await.of_blob(p, name)?;
    let data = pattern(1, 10 << 20);
    blob.write_at(0, &data).await.of_blob(p, name)?;
    assert!(
        read(&blob, 0, data.len()).await.of_blob(p, name)? == data,
        "10 MiB round trip"
    );
    let part = read(&blob, 12_345, 3 << 20).await.of_blob(p, name)?;
    assert!(part == data[12_345..12_345 + (3 << 20)]);
    Ok(())
}

async fn overwrite_append_overlap<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    blob.write_at(0, b"initial data").await.of_blob(p, b"b")?;
    blob.write_at(8, b"overwrite").await.of_blob(p, b"b")?;
    assert_eq!(
        read(&blob, 0, 17).await.of_blob(p, b"b")?,
        b"initial overwrite"
    );
    let name = b"append";
    let (blob, _) = s.open(p, name).await.of_blob(p, name)?;
    blob.write_at(0, b"first").await.of_blob(p, name)?;
    blob.write_at(5, b"second").await.of_blob(p, name)?;
    assert_eq!(read(&blob, 0, 11).await.of_blob(p, name)?, b"firstsecond");
    let name = b"overlap";
    let (blob, _) = s.open(p, name).await.of_blob(p, name)?;
    blob.write_at(0, b"overlap").await.of_blob(p, name)?;
    blob.write_at(4, b"map").await.of_blob(p, name)?;
    assert_eq!(read(&blob, 0, 7).await.of_blob(p, name)?, b"overmap");
    Ok(())
}

fn is_short(result: Result<impl Sized, Error>) -> bool {
    matches!(result, Err(Error::BlobInsufficientLength { .. }))
}

async fn read_beyond_end<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    assert!(
        is_short(blob.read_at(0, 1).await),
        "empty blob has no byte 0"
    );
    blob.write_at(0, b"hello").await.of_blob(p, b"b")?;
    assert!(is_short(blob.read_at(6, 10).await));
    assert!(is_short(blob.read_at(0, 6).await));
    let mut buf = [0u8; 10];
    assert!(is_short(blob.read_into(6, &mut buf).await));
    let err = blob.read_at(4, 2).await.unwrap_err().to_string();
    assert!(
        err.contains(p) && err.contains("/62"),
        "error names blob: {err}"
    );
    Ok(())
}

async fn sparse_writes_read_zeros<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    blob.write_at(10_000, b"offset data")
        .await
        .of_blob(p, b"b")?;
    assert_eq!(
        read(&blob, 10_000, 11).await.of_blob(p, b"b")?,
        b"offset data"
    );
    assert!(
        read(&blob, 0, 10_000)
            .await
            .of_blob(p, b"b")?
            .iter()
            .all(|&b| b == 0),
        "gap reads zeros"
    );
    blob.write_at(0, b"first").await.of_blob(p, b"b")?;
    blob.write_at(10, b"second").await.of_blob(p, b"b")?;
    assert_eq!(
        read(&blob, 0, 16).await.of_blob(p, b"b")?,
        b"first\0\0\0\0\0second"
    );
    Ok(())
}

async fn vectored_writes<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
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
        let name = format!("v{i}");
        let name = name.as_bytes();
        let (blob, _) = s.open(p, name).await.of_blob(p, name)?;
        let slices: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        blob.write_vectored_at(offset, &slices, WriteOptions::NONE)
            .await
            .of_blob(p, name)?;
        let expected = bufs.concat();
        assert_eq!(
            read(&blob, offset, expected.len()).await.of_blob(p, name)?,
            expected,
            "case {i}"
        );
        let gap = read(&blob, 0, offset as usize).await.of_blob(p, name)?;
        assert!(gap.iter().all(|&b| b == 0), "case {i}: gap reads zeros");
    }
    Ok(())
}

async fn chunked_read_write<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    let chunk = 1 << 20;
    for i in 0..10u64 {
        blob.write_at(i * chunk as u64, &pattern(i, chunk))
            .await
            .of_blob(p, b"b")?;
    }
    for i in 0..10u64 {
        let bytes = read(&blob, i * chunk as u64, chunk)
            .await
            .of_blob(p, b"b")?;
        assert!(bytes == pattern(i, chunk), "chunk {i}");
    }
    Ok(())
}

async fn resize_then_reopen<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    {
        let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
        blob.write_at(0, b"hello world").await.of_blob(p, b"b")?;
        blob.resize(5).await.of_blob(p, b"b")?;
        blob.sync().await.of_blob(p, b"b")?;
        assert!(is_short(blob.read_at(0, 6).await));
        blob.resize(9000).await.of_blob(p, b"b")?;
        assert_eq!(
            read(&blob, 0, 9000).await.of_blob(p, b"b")?[..12],
            *b"hello\0\0\0\0\0\0\0",
            "cut bytes do not return"
        );
        blob.resize(5).await.of_blob(p, b"b")?;
        blob.sync().await.of_blob(p, b"b")?;
    }
    let (blob, len) = s.open(p, b"b").await.of_blob(p, b"b")?;
    assert_eq!(len, 5, "length after resize and reopen");
    assert_eq!(read(&blob, 0, 5).await.of_blob(p, b"b")?, b"hello");
    drop(blob);
    let name = b"unaligned";
    {
        let (blob, _) = s.open(p, name).await.of_blob(p, name)?;
        blob.write_at(0, &pattern(2, 5_000))
            .await
            .of_blob(p, name)?;
        blob.write_at(5_000, &pattern(3, 77))
            .await
            .of_blob(p, name)?;
    }
    let (blob, len) = s.open(p, name).await.of_blob(p, name)?;
    assert_eq!(len, 5_077, "padding of the last block is not length");
    assert_eq!(
        read(&blob, 5_000, 77).await.of_blob(p, name)?,
        pattern(3, 77)
    );
    Ok(())
}

async fn partition_names<S: Storage>(s: &S, p: &impl Fn(&str) -> String) -> Result<(), Error> {
    // Only the name check is under test: any other outcome of a call with a
    // valid name (an I/O error under faults included) passes.
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
    Ok(())
}

async fn blob_names<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let bad = |r: Result<(), Error>| matches!(r, Err(Error::BlobNameInvalid { .. }));
    assert!(bad(s.open(p, b"").await.map(drop)), "empty blob name");
    assert!(
        bad(s.open(p, &[1; 128]).await.map(drop)),
        "128-byte blob name"
    );
    assert!(bad(s.remove(p, Some(b"")).await), "remove of empty name");
    let name = &[0xff; 127];
    let (blob, _) = s.open(p, name).await.of_blob(p, name)?;
    blob.write_at(0, b"x").await.of_blob(p, name)?;
    Ok(())
}

async fn versions<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _, version) = s.open_versioned(p, b"b", 1..=1).await.of_blob(p, b"b")?;
    assert_eq!(version, 1);
    blob.sync().await.of_blob(p, b"b")?;
    drop(blob);
    let (blob, _, version) = s.open_versioned(p, b"b", 0..=2).await.of_blob(p, b"b")?;
    assert_eq!(version, 1, "stored version kept");
    drop(blob);
    let result = s.open_versioned(p, b"b", 2..=3).await.map(drop);
    let text = format!("{result:?}");
    let mismatch = |e: &Error| matches!(e, Error::BlobVersionMismatch { expected, found: 1, .. } if *expected == (2..=3));
    assert!(fails_with(result.of_blob(p, b"b"), mismatch)?, "{text}");
    #[allow(clippy::reversed_empty_ranges)]
    let empty = s.open_versioned(p, b"c", 3..=2).await.map(drop);
    assert!(
        matches!(empty, Err(Error::VersionRangeEmpty { .. })),
        "{empty:?}"
    );
    let (_, _, version) = s.open_versioned(p, b"d", 4..=9).await.of_blob(p, b"d")?;
    assert_eq!(version, 9, "a new blob gets versions.end()");
    Ok(())
}

async fn zero_lengths<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    assert_eq!(
        blob.read_at(0, 0).await.of_blob(p, b"b")?.len(),
        0,
        "empty read of empty blob"
    );
    blob.write_at(0, b"hello").await.of_blob(p, b"b")?;
    for offset in [0, 3, 5] {
        assert_eq!(blob.read_at(offset, 0).await.of_blob(p, b"b")?.len(), 0);
        blob.read_into(offset, &mut []).await.of_blob(p, b"b")?;
    }
    assert!(
        is_short(blob.read_at(6, 0).await),
        "zero-length read past the end"
    );
    blob.write_at(1 << 30, &[]).await.of_blob(p, b"b")?;
    assert!(
        is_short(blob.read_at(0, 6).await),
        "empty write does not extend"
    );
    Ok(())
}

async fn read_into_buffers<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    blob.write_at(0, b"hello world").await.of_blob(p, b"b")?;
    let mut exact = [0u8; 11];
    blob.read_into(0, &mut exact).await.of_blob(p, b"b")?;
    assert_eq!(&exact, b"hello world");
    let mut big = [7u8; 64];
    blob.read_into(6, &mut big[..5]).await.of_blob(p, b"b")?;
    assert_eq!(&big[..5], b"world");
    assert!(big[5..].iter().all(|&b| b == 7), "bytes past len untouched");
    Ok(())
}

fn already_open(result: Result<(), Error>) -> bool {
    matches!(result, Err(Error::BlobAlreadyOpen { .. }))
}

async fn one_live_open<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    let again = s.open(p, b"b").await.map(drop);
    assert!(already_open(again.of_blob(p, b"b")), "second open");
    let clone = blob.clone();
    drop(blob);
    clone.write_at(0, b"shared").await.of_blob(p, b"b")?;
    assert!(
        already_open(s.open(p, b"b").await.map(drop)),
        "open while a clone lives"
    );
    drop(clone);
    // Reopen after the last handle dropped.
    let (blob, len) = s.open(p, b"b").await.of_blob(p, b"b")?;
    assert_eq!(len, 6, "length after the last handle dropped");
    assert_eq!(read(&blob, 0, 6).await.of_blob(p, b"b")?, b"shared");
    Ok(())
}

async fn read_after_remove<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (old, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    old.write_at(0, b"kept by the old handle")
        .await
        .of_blob(p, b"b")?;
    s.remove(p, Some(b"b")).await.of_blob(p, b"b")?;
    assert_eq!(
        read(&old, 0, 4).await.of_blob(p, b"b")?,
        b"kept",
        "old handle reads after remove"
    );
    // Reopen after remove: a new blob.
    let (new, len) = s.open(p, b"b").await.of_blob(p, b"b")?;
    assert_eq!(len, 0);
    new.write_at(0, b"new").await.of_blob(p, b"b")?;
    assert_eq!(read(&old, 0, 4).await.of_blob(p, b"b")?, b"kept");
    drop(old);
    assert!(
        already_open(s.open(p, b"b").await.map(drop)),
        "old handle's drop keeps the new open"
    );
    s.remove(p, None).await.of_partition(p)?;
    assert_eq!(
        read(&new, 0, 3).await.of_blob(p, b"b")?,
        b"new",
        "handle reads after partition remove"
    );
    Ok(())
}

async fn missing_things<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let partition_missing = |e: &Error| matches!(e, Error::PartitionMissing(_));
    let scanned = s.scan(p).await.of_partition(p);
    assert!(
        fails_with(scanned, partition_missing)?,
        "scan of a missing partition"
    );
    let removed = s.remove(p, None).await.of_partition(p);
    assert!(
        fails_with(removed, partition_missing)?,
        "remove of a missing partition"
    );
    drop(s.open(p, b"present").await.of_blob(p, b"present")?);
    let missing = s.remove(p, Some(b"absent")).await;
    let text = format!("{missing:?}");
    let blob_missing = |e: &Error| matches!(e, Error::BlobMissing { .. });
    // The error names the blob (`of_blob` checks it): p/616273656e74.
    assert!(
        fails_with(missing.of_blob(p, b"absent"), blob_missing)?,
        "{text}"
    );
    s.remove(p, None).await.of_partition(p)?;
    let scanned = s.scan(p).await.of_partition(p);
    assert!(
        fails_with(scanned, partition_missing)?,
        "scan of a removed partition"
    );
    Ok(())
}

async fn offset_overflow<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    blob.write_at(0, b"safe").await.of_blob(p, b"b")?;
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
    assert_eq!(
        read(&blob, 0, 4).await.of_blob(p, b"b")?,
        b"safe",
        "nothing stored is lost"
    );
    Ok(())
}

async fn read_many_batches<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    let data = pattern(9, 64 << 10);
    blob.write_at(0, &data).await.of_blob(p, b"b")?;
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
        let (index, bytes) = item.of_blob(p, b"b")?;
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
    let nothing = std::pin::pin!(blob.read_many(Vec::new())).next().await;
    if let Some(item) = nothing {
        // An I/O error is passed on; a range is a wrong value.
        let (index, _) = item.of_blob(p, b"b")?;
        panic!("an empty batch yielded range {index}");
    }
    Ok(())
}

/// Writes from buffers of `alloc_buf` (zero-copy where aligned): whole
/// blocks that extend the blob, overwrite it, or follow a gap; unaligned
/// ones; one larger than a device piece; a synced one; the buffer given
/// back is whole and writes again; a buffer too large is refused.
async fn buffer_writes<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    let cases: [(u64, usize, WriteOptions); 8] = [
        (0, 8192, WriteOptions::NONE),
        (4096, 4096, WriteOptions::NONE),
        (24_576, 4096, WriteOptions::NONE),
        (100, 5000, WriteOptions::NONE),
        (28_000, 300, WriteOptions::NONE),
        (32_768, WRITE_BUF_BYTES_MAX, WriteOptions::NONE),
        (8192, 8192, WriteOptions::SYNC),
        (8192, 8192, WriteOptions::NONE),
    ];
    let mut expected = Vec::new();
    let mut spare = None;
    for (i, (offset, len, options)) in cases.into_iter().enumerate() {
        let mut buf = match spare.take() {
            Some(buf) => buf,
            None => blob.alloc_buf(len).of_blob(p, b"b")?,
        };
        assert_eq!(buf.len(), len, "case {i}: a buffer of the length asked");
        let data = pattern(i as u64 + 11, len);
        buf.copy_from_slice(&data);
        let buf = blob.write_buf_at(offset, buf, options).await;
        let buf = buf.of_blob(p, b"b")?;
        assert_eq!(buf.len(), len, "case {i}: the buffer comes back whole");
        spare = cases.get(i + 1).filter(|next| next.1 == len).map(|_| buf);
        let end = offset as usize + len;
        expected.resize(expected.len().max(end), 0);
        expected[offset as usize..end].copy_from_slice(&data);
        let stored = read(&blob, 0, expected.len()).await.of_blob(p, b"b")?;
        assert!(stored == expected, "case {i}: the blob holds every write");
    }
    let fresh = blob.alloc_buf(4096).of_blob(p, b"b")?;
    assert!(fresh.iter().all(|&b| b == 0), "a new buffer is zeroed");
    let empty = blob.alloc_buf(0).of_blob(p, b"b")?;
    let at = expected.len() as u64 + 4096;
    blob.write_buf_at(at, empty, WriteOptions::NONE)
        .await
        .of_blob(p, b"b")?;
    let too_large = blob.alloc_buf(WRITE_BUF_BYTES_MAX + 1).of_blob(p, b"b");
    assert!(
        matches!(too_large, Err(Error::InvalidArgument { .. })),
        "a buffer over WRITE_BUF_BYTES_MAX is refused: {too_large:?}"
    );
    let stored = read(&blob, 0, expected.len()).await.of_blob(p, b"b")?;
    assert!(stored == expected, "an empty write changes nothing");
    let past = read(&blob, expected.len() as u64, 1).await;
    assert!(
        matches!(past, Err(Error::BlobInsufficientLength { .. })),
        "an empty write adds no length"
    );
    Ok(())
}

async fn synced_writes<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    let data = pattern(4, 9_000);
    blob.write_vectored_at(0, &[&data[..100], &data[100..]], WriteOptions::SYNC)
        .await
        .of_blob(p, b"b")?;
    blob.write_vectored_at(
        9_000,
        &[b"tail"],
        WriteOptions::SYNC | WriteOptions::DONT_CACHE,
    )
    .await
    .of_blob(p, b"b")?;
    assert_eq!(read(&blob, 0, 9_000).await.of_blob(p, b"b")?, data);
    assert_eq!(read(&blob, 9_000, 4).await.of_blob(p, b"b")?, b"tail");
    let handle = blob.start_sync();
    handle.await.of_blob(p, b"b")?;
    drop(blob.start_sync());
    blob.sync().await.of_blob(p, b"b")?;
    Ok(())
}

const WRITERS: usize = 64;
const STRIDE: usize = 7;
const ROUNDS: usize = 40;
/// Bytes written at offset 0 before the writers start.
const FIRST_BYTES: [u8; 3] = [0xEE; 3];

async fn shared_block_writers<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
    blob.write_at(0, &FIRST_BYTES).await.of_blob(p, b"b")?;
    let blob_ref = &blob;
    // Each writer stops at its first failed write: (its round, the error).
    let written = join_all((0..WRITERS).map(|w| async move {
        for round in 0..ROUNDS {
            let offset = (round * WRITERS + w) * STRIDE;
            let bytes = [(w as u8) ^ (round as u8); STRIDE];
            let result = blob_ref.write_at(offset as u64, &bytes).await;
            result.of_blob(p, b"b").map_err(|e| (round, e))?;
        }
        Ok::<(), (usize, Error)>(())
    }))
    .await;
    let rounds_done: Vec<usize> = written
        .iter()
        .map(|r| r.as_ref().map_or_else(|(round, _)| *round, |()| ROUNDS))
        .collect();
    // Up to the end of the last write that succeeded (at least FIRST_BYTES).
    let written_len = (0..WRITERS)
        .filter(|&w| rounds_done[w] > 0)
        .map(|w| ((rounds_done[w] - 1) * WRITERS + w + 1) * STRIDE)
        .fold(FIRST_BYTES.len(), usize::max);
    let all = read(&blob, 0, written_len).await.of_blob(p, b"b")?;
    check_writers(&all, &rounds_done);
    // A failed write damages no other writer's range (checked); then the
    // first error is the suite's.
    for result in written {
        result.map_err(|(_, e)| e)?;
    }
    assert_eq!(all.len(), WRITERS * ROUNDS * STRIDE, "every write done");
    Ok(())
}

/// Each range holds its writer's bytes if its write succeeded, zeros (or
/// `FIRST_BYTES`) if it was never tried, and per byte either if it failed.
fn check_writers(all: &[u8], rounds_done: &[usize]) {
    for (i, chunk) in all.chunks(STRIDE).enumerate() {
        let (round, w) = (i / WRITERS, i % WRITERS);
        let new = (w as u8) ^ (round as u8);
        let old = |at: usize| FIRST_BYTES.get(i * STRIDE + at).copied().unwrap_or(0);
        let fits =
            |want: &dyn Fn(usize, u8) -> bool| chunk.iter().enumerate().all(|(at, &b)| want(at, b));
        let holds = match round.cmp(&rounds_done[w]) {
            std::cmp::Ordering::Less => fits(&|_, b| b == new),
            std::cmp::Ordering::Equal => fits(&|at, b| b == new || b == old(at)),
            std::cmp::Ordering::Greater => fits(&|at, b| b == old(at)),
        };
        assert!(
            holds,
            "range {i} (writer {w}, round {round}) lost a byte: {chunk:?}"
        );
    }
}

async fn unaligned_edges<S: Storage>(s: &S, p: &str) -> Result<(), Error> {
    let (blob, _) = s.open(p, b"b").await.of_blob(p, b"b")?;
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
        blob.write_at(offset, &data).await.of_blob(p, b"b")?;
        let end = offset as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
        let seen = read(&blob, 0, model.len()).await.of_blob(p, b"b")?;
        assert_eq!(seen, model, "after write {i}");
    }
    for (offset, len) in [(4095, 2), (0, 1), (8191, 4098), (12_003, 3)] {
        assert_eq!(
            read(&blob, offset as u64, len).await.of_blob(p, b"b")?,
            model[offset..offset + len]
        );
    }
    Ok(())
}
