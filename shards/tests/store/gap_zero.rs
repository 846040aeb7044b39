//! The gap-zero contract after a failed write (issue 17, item 3).
//!
//! A gap reads as zeros: bytes past the logical end that a `resize` up or a
//! write past the end makes part of the blob were never written, so they
//! read as zeros. A failed (short) write may leave its bytes in the file
//! past the logical end; the store must never let a later resize up or gap
//! write expose them.
//!
//! - `a_failed_write_never_shows_past_the_end`: the store on SimFs, a short
//!   write past the end injected with `Faults::at_op`, then each of the three
//!   ways bytes past the end become visible: a resize up, a write past a gap
//!   (whole blocks it never writes), and a write into the tail block past the
//!   end (the block is loaded from the device, clamped to the logical end).
//!   On cadb6da the first two exposed the failed write's bytes in 12 of the
//!   48 resize and gap-write cases of seeds 0..72 (seeds 1, 5, 14, 22, 29,
//!   30, 36, 37, 39, 48, 56, 58: 3,192-7,680 non-zero bytes where zeros
//!   belong).
//! - `the_model_takes_only_zeros_past_the_end`: the test model
//!   (common/model.rs) itself refuses anything but zeros in a revealed range,
//!   whatever a failed write left there.
//! - `the_harness_checks_reveals_after_failed_writes`: the same scenarios
//!   through the harness, every read checked against the model. With the
//!   model of cadb6da it passed on cadb6da's store (the model took a failed
//!   write's bytes after a resize up or in a gap); with the strict model it
//!   fails there, as the random fault simulation (faults_sim.rs) now does
//!   (at seed 374 of its 1,000).
//! - The clamp mutant (`load_block` in shards/src/blob/write.rs copying the
//!   whole device block, `let valid = read.len();`, instead of clamping it
//!   to the logical end) fails the `TailWrite` cases of the first and third
//!   tests (seed 6 first): after a short write into the tail block, a write
//!   that starts past the end in that block carries the failed write's bytes
//!   between the old end and its offset, where the model takes only zeros.
//!   The random fault simulation alone does not reach that sequence (a short
//!   write into the tail block, then such a write before any sync, resize or
//!   close) in its 1,000 seeds: these cases are what kill the mutant.
//! - `a_failed_flush_of_the_cut_before_a_reveal_poisons_the_blob`: the cut
//!   before each reveal (plain and SYNC writes too) flushes
//!   (`Faults::at_sync` fails that flush); the reveal fails naming
//!   `CUT_FLUSH_OP` and the blob refuses later syncs and writes, as after a
//!   failed sync. On 4f134b5 the next sync returned `Ok`.
//! - `a_write_waiting_behind_a_failed_cut_flush_is_refused`: a SYNC write
//!   past a gap (a copying or a zero-copy one) that waited for the RMW lock
//!   behind that failure is refused (`BlobPoisoned`); at 47a68f8 it went
//!   ahead without a cut, and a crash showed the failed write's bytes in
//!   its gap (seed 14).
//! - `a_poisoned_close_makes_the_cut_durable_for_any_store`: the close of
//!   the poisoned blob flushes, so an open by a new store (a new process)
//!   needs no flush; on 6df000f, whose close left the flush to
//!   the next open of the same store only, a crash after a SYNC gap write
//!   in the new store's open showed 1,948 of the failed write's bytes (seed
//!   14).
//! - `a_reopen_after_failed_cut_and_close_flushes_makes_the_cut_durable`:
//!   when the close's flush fails too, the close leaves the reopen (by the
//!   same store) a flush; without it (the reopen flushing only a recorded
//!   length or a size change) a crash after a SYNC gap write showed the
//!   failed write's bytes (seed 14).
//! - `a_new_file_of_the_name_takes_nothing_a_poisoned_close_left`: that
//!   flush is for the file the close left, not a new one of the name.
//! - `a_close_leaves_a_failed_writes_synced_bytes_to_the_next_open`: a
//!   close does not cut a failed write's bytes that a sync made durable
//!   (the cut would not be durable); the next open cuts them durably.
//! - `a_resize_down_cuts_a_failed_writes_synced_bytes_durably`: a resize
//!   that does not extend the blob cuts a failed write's bytes durably too;
//!   at ac0fe9b its own cut was not durable, and a SYNC write past a gap
//!   after it showed them after a crash (seed 1: 2,048 bytes).
//! - `a_dropped_reveal_still_zeroes`: a resize up or gap write whose future
//!   is dropped during its trim finishes it (or never started it): the length
//!   and the bytes stay consistent, and the gap still reads zeros.

use crate::common;

use std::path::Path;

use common::harness::{limited, Harness, Op, Outcome, Target};
use common::model::BlobModel;
use common::run_seeds;
use shardblob_shards::fs::sim::{Faults, SimFs};
use shardblob_shards::fs::{File, FileSystem};
use shardblob_shards::{Blob, Error, ShardBlob, ShardStore, Storage, WriteOptions, CUT_FLUSH_OP};

const HEADER_BYTES: u64 = 4096;
const BASE_BYTE: u8 = 0x11;
const FAILED_BYTE: u8 = 0x22;
const LATER_BYTE: u8 = 0x33;

/// How the bytes past the end are made visible.
#[derive(Clone, Copy, Debug)]
enum Reveal {
    /// `resize` up, well past the failed write.
    Resize,
    /// A write whose first block starts past the block of the logical end.
    GapWrite,
    /// A write inside the tail block, past the logical end.
    TailWrite,
}

/// Case `seed`: the base length, the reveal.
fn case(seed: u64) -> (u64, Reveal) {
    let base_len = [5000, 8192, 100][(seed % 3) as usize];
    let reveal = [Reveal::Resize, Reveal::GapWrite, Reveal::TailWrite][(seed / 3 % 3) as usize];
    (base_len, reveal)
}

/// Where a reveal by a write puts its 100 bytes: two blocks past the block
/// of the end (a gap of whole blocks), or inside the tail block, 1000 bytes
/// past the end (at most to its last byte).
fn later_write_at(base_len: u64, how: Reveal) -> u64 {
    match how {
        Reveal::GapWrite => (base_len / 4096 + 2) * 4096 + 100,
        _ => base_len + 1000.min(4095 - base_len % 4096),
    }
}

/// Non-zero data bytes the raw file holds past `len` (the failed write's).
async fn raw_bytes_past(fs: &SimFs, len: u64) -> usize {
    let file = fs.open_file(Path::new("/p/61"), false).await.unwrap();
    let raw = file.read_at(0, 1 << 20).await.unwrap();
    let past = raw.get((HEADER_BYTES + len) as usize..).unwrap_or_default();
    past.iter().filter(|&&b| b != 0).count()
}

/// A blob of `base_len` synced bytes, then an append of 8000 bytes that fails
/// at its device write (EIO, ENOSPC or short, by the seed).
async fn failed_append(fs: &SimFs, base_len: u64) -> (ShardStore<SimFs>, ShardBlob<SimFs>) {
    let store = ShardStore::new(fs.clone(), "/");
    let (blob, _) = store.open("p", b"a").await.unwrap();
    blob.write_at(0, &vec![BASE_BYTE; base_len as usize])
        .await
        .unwrap();
    blob.sync().await.unwrap();
    // The tail block is cached, and the first write reserved and wrote
    // zeros past the append's end (a sync cuts nothing): the append's first
    // file-system call is its device write.
    fs.set_faults(Faults::at_op(fs.op_count()));
    let failed = blob.write_at(base_len, &[FAILED_BYTE; 8000]).await;
    assert!(failed.is_err(), "the append fails");
    assert_eq!((fs.injected_faults(), blob.len()), (1, base_len));
    (store, blob)
}

/// Makes `base_len..` visible; returns the new length and where the later
/// write's bytes are.
async fn reveal(blob: &ShardBlob<SimFs>, base_len: u64, how: Reveal) -> (u64, Option<u64>) {
    match how {
        Reveal::Resize => {
            blob.resize(base_len + 20_000).await.unwrap();
            (base_len + 20_000, None)
        }
        Reveal::GapWrite | Reveal::TailWrite => {
            let at = later_write_at(base_len, how);
            blob.write_at(at, &[LATER_BYTE; 100]).await.unwrap();
            (at + 100, Some(at))
        }
    }
}

/// The content the blob must show: base bytes, zeros, the later write.
fn expected(base_len: u64, new_len: u64, later_at: Option<u64>) -> Vec<u8> {
    let mut want = vec![0; new_len as usize];
    want[..base_len as usize].fill(BASE_BYTE);
    if let Some(at) = later_at {
        want[at as usize..].fill(LATER_BYTE);
    }
    want
}

fn nonzero_in(seen: &[u8], want: &[u8]) -> usize {
    let wrong = seen.iter().zip(want).filter(|(s, w)| s != w);
    wrong.filter(|(s, _)| **s != 0).count()
}

#[test]
fn a_failed_write_never_shows_past_the_end() {
    let exposed_cases = std::cell::Cell::new(0);
    run_seeds(
        "gap_zero a_failed_write_never_shows_past_the_end",
        "",
        72,
        |seed| {
            let exposed_cases = &exposed_cases;
            async move {
                let fs = SimFs::new(seed);
                let (base_len, how) = case(seed);
                let (_store, blob) = failed_append(&fs, base_len).await;
                let left = raw_bytes_past(&fs, base_len).await;
                let (new_len, later_at) = reveal(&blob, base_len, how).await;
                assert_eq!(blob.len(), new_len);
                let seen = blob.read_at(0, new_len as usize).await.unwrap();
                let want = expected(base_len, new_len, later_at);
                let wrong = nonzero_in(&seen, &want);
                assert!(
                    seen[..] == want[..],
                    "{how:?} after a failed append to {base_len} bytes: {wrong} bytes \
                     are not what the blob holds ({left} non-zero bytes were left past the end)"
                );
                exposed_cases.set(exposed_cases.get() + u64::from(left > 0));
                // A sync and a reopen keep it.
                blob.sync().await.unwrap();
                drop(blob);
                let store = ShardStore::new(fs.clone(), "/");
                let (blob, len) = store.open("p", b"a").await.unwrap();
                assert_eq!(len, new_len);
                let seen = blob.read_at(0, new_len as usize).await.unwrap();
                assert!(seen[..] == want[..], "{how:?}: after a reopen");
            }
        },
    );
    // The scenario is real: short writes left bytes to expose.
    if common::seed_override().is_none() {
        assert!(exposed_cases.get() >= 8, "{} cases", exposed_cases.get());
    }
}

/// A model whose bytes past `len` hold a failed write's, as `failed_append`
/// leaves the store.
fn model_after_failed_append(base_len: u64) -> BlobModel {
    let mut model = BlobModel::observed(&vec![BASE_BYTE; base_len as usize]);
    model.maybe_write(base_len, &[FAILED_BYTE; 8000], false, true);
    model
}

#[test]
fn the_model_takes_only_zeros_past_the_end() {
    for base_len in [5000, 8192, 100] {
        // Resize up: the whole range past the old end is zeros, nothing else.
        let mut model = model_after_failed_append(base_len);
        model.resize(base_len + 20_000);
        let zeros = vec![0; 20_000];
        assert!(model.check_read(base_len, &zeros).is_ok());
        let junk = vec![FAILED_BYTE; 8000];
        let refused = model.check_read(base_len, &junk);
        assert!(
            refused.is_err(),
            "{base_len}: a failed write's bytes after a resize up"
        );
        // A gap write: the gap reads zeros, nothing else.
        let mut model = model_after_failed_append(base_len);
        let at = later_write_at(base_len, Reveal::GapWrite);
        model.write(at, &[LATER_BYTE; 100], false);
        assert!(model
            .check_read(base_len, &vec![0; (at - base_len) as usize])
            .is_ok());
        let refused = model.check_read(base_len, &junk[..(at - base_len).min(8000) as usize]);
        assert!(
            refused.is_err(),
            "{base_len}: a failed write's bytes in a gap"
        );
        // Not revealed: reads cannot reach there, a crash may show them.
        let model = model_after_failed_append(base_len);
        assert!(model.crash_lens().iter().any(|&l| l > base_len));
    }
}

/// After a crash a failed write counts as an unsynced write (shards/src/api.rs):
/// until the next sync a crash may show it, whole or torn, and with the
/// length it would have given the blob. A later write past a gap first cuts
/// the file to the logical length (so the gap reads zeros), which zeroes the
/// failed write's bytes past that length, also inside a sector that holds
/// some of them below it. If that write is cut short by the crash, the
/// sector comes back as the failed write's bytes up to the old length and
/// zeros after: the model must take it. Found by `faults_sim` random seed
/// 613516965809 (a 1536-byte write at 0 failing short on a 222-byte blob,
/// then a write at 10909 cut short by the crash: the blob came back 12288
/// bytes long, sector 0 holding the failed bytes up to 222, then zeros);
/// the model lacked that content. The store was right: what the gap write
/// makes visible is zeros.
#[test]
fn a_failed_write_cut_by_a_gap_write_may_show_after_a_crash() {
    let (kept, failed, later) = (vec![0x11; 222], vec![0x22; 1536], vec![0x33; 15]);
    let mut model = BlobModel::default();
    model.write(0, &kept, false);
    model.maybe_write(0, &failed, false, true);
    model.maybe_write(10_909, &later, false, true);
    let mut crashed = vec![0; 12_288];
    crashed[..222].copy_from_slice(&failed[..222]);
    crashed[10_909..10_924].copy_from_slice(&later);
    let taken = model.check_crashed(&crashed);
    assert!(taken.is_ok(), "the cut failed write: {taken:?}");
    // Nothing but zeros where the cut was: not another write's bytes.
    crashed[222..512].fill(0x33);
    assert!(model.check_crashed(&crashed).is_err(), "junk past the cut");
    // A write past the gap that completed leaves only zeros there to read.
    model.write(10_909, &later, false);
    let gap = model.check_read(222, &failed[222..512]);
    assert!(gap.is_err(), "a failed write's bytes in the gap");
    assert!(model.check_read(222, &[0; 10_687]).is_ok());
}

/// A failed (or crash-cut) write inside the tail block, past the end: the
/// store writes that block whole, loaded from the device up to the
/// logical end (where an earlier failed write may have landed), then zeros
/// up to its offset. A crash may keep that sector: the model must take it,
/// and still refuse anything else there. The model took only the write's
/// bytes laid over each earlier content, which here keeps the earlier
/// failed write's bytes below the offset where the store writes zeros.
#[test]
fn a_failed_write_in_the_tail_block_zeroes_below_its_offset() {
    let mut model = BlobModel::observed(&[0x11; 100]);
    model.maybe_write(50, &[0x22; 3950], false, true);
    model.maybe_write(300, &[0x33; 10], false, true);
    let mut crashed = vec![0; 4096];
    crashed[..50].fill(0x11);
    crashed[50..100].fill(0x22);
    crashed[300..310].fill(0x33);
    let taken = model.check_crashed(&crashed);
    assert!(taken.is_ok(), "the block as the store wrote it: {taken:?}");
    crashed[200..300].fill(0x44);
    assert!(
        model.check_crashed(&crashed).is_err(),
        "junk below the write"
    );
}

#[test]
fn the_harness_checks_reveals_after_failed_writes() {
    run_seeds(
        "gap_zero the_harness_checks_reveals_after_failed_writes",
        "",
        72,
        |seed| async move {
            let (base_len, how) = case(seed);
            let mut h = Harness::new(seed);
            let target = Target::open("p", "a");
            let base = vec![BASE_BYTE; base_len as usize];
            assert_eq!(
                h.run(&Op::Open(("p".into(), b"a".to_vec())), None).await,
                Outcome::Done
            );
            assert_eq!(
                h.run(&Op::write(&target, 0, base, false), None).await,
                Outcome::Done
            );
            assert_eq!(h.run(&Op::sync(&target), None).await, Outcome::Done);
            // The first call is the append's device write (as above: the
            // harness's 16 KiB step covers the append's end).
            h.set_faults(Faults::at_op(h.fs.op_count()));
            let append = Op::write(&target, base_len, vec![FAILED_BYTE; 8000], false);
            assert_eq!(h.run(&append, None).await, Outcome::Failed);
            h.set_faults(Faults::default());
            let new_len = match how {
                Reveal::Resize => {
                    let op = Op::resize(&target, base_len + 20_000);
                    assert_eq!(h.run(&op, None).await, Outcome::Done);
                    base_len + 20_000
                }
                Reveal::GapWrite | Reveal::TailWrite => {
                    let at = later_write_at(base_len, how);
                    let op = Op::write(&target, at, vec![LATER_BYTE; 100], false);
                    assert_eq!(h.run(&op, None).await, Outcome::Done);
                    at + 100
                }
            };
            // The harness checks the read against the model.
            let read = Op::read(&target, 0, new_len as usize);
            assert_eq!(h.run(&read, None).await, Outcome::Done);
            h.crash().await;
        },
    );
}

#[test]
fn a_dropped_reveal_still_zeroes() {
    run_seeds(
        "gap_zero a_dropped_reveal_still_zeroes",
        "",
        48,
        |seed| async move {
            let fs = SimFs::new(seed);
            let (base_len, how) = case(seed);
            let (_store, blob) = failed_append(&fs, base_len).await;
            // Dropped after 0..4 yields: before, during or after the trim.
            let polls = Some((seed / 9 % 5) as usize);
            let new_len = match how {
                Reveal::Resize => {
                    let resized = limited(blob.resize(base_len + 20_000), polls).await;
                    resized.transpose().expect("resize");
                    base_len + 20_000
                }
                Reveal::GapWrite | Reveal::TailWrite => {
                    let at = later_write_at(base_len, how);
                    let written = limited(blob.write_at(at, &[LATER_BYTE; 100]), polls).await;
                    written.transpose().expect("write");
                    at + 100
                }
            };
            // A read waits for a started commit; the length is old or new.
            let len = blob.len();
            let seen = blob.read_at(0, len as usize).await.unwrap();
            assert!(len == base_len || len == new_len, "length {len}");
            assert!(seen[..base_len as usize].iter().all(|&b| b == BASE_BYTE));
            assert!(
                seen[base_len as usize..]
                    .iter()
                    .all(|&b| b == 0 || b == LATER_BYTE),
                "{how:?} dropped after {polls:?} polls: a failed write's bytes show"
            );
            // Then the reveal done in full, whatever the dropped one did.
            let (new_len, later_at) = reveal(&blob, base_len, how).await;
            let seen = blob.read_at(0, new_len as usize).await.unwrap();
            assert!(
                seen[..] == expected(base_len, new_len, later_at)[..],
                "{how:?} redone"
            );
        },
    );
}

/// A failed write's bytes past the end that a sync made durable (a sync
/// cuts nothing) never show after a crash, even when an append over them
/// (no gap: it rewrites the tail block with zeros past the old end) has its
/// length slot kept by the crash and its block lost. The append cuts them
/// durably first. Found by concurrency_sim seed 620350668355; on 614a7e1
/// some of these seeds showed the failed bytes inside the length.
#[test]
fn an_append_over_a_failed_writes_synced_bytes_never_shows_them_after_a_crash() {
    run_seeds(
        "gap_zero an_append_over_a_failed_writes_synced_bytes",
        "",
        64,
        |seed| async move {
            let fs = SimFs::new(seed);
            let store = ShardStore::new(fs.clone(), "/");
            let (blob, _) = store.open("p", b"a").await.unwrap();
            blob.write_at(0, &[BASE_BYTE; 100]).await.unwrap();
            blob.sync().await.unwrap();
            // Its block lands, its length slot fails (the next call).
            fs.set_faults(Faults::at_op(fs.op_count() + 1));
            let failed = blob.write_at(100, &[FAILED_BYTE; 3000]).await;
            assert!(failed.is_err(), "the write fails");
            assert_eq!((fs.injected_faults(), blob.len()), (1, 100));
            blob.sync().await.unwrap();
            blob.write_at(100, &[LATER_BYTE; 50]).await.unwrap();
            let store = ShardStore::new(fs.crash(), "/");
            let (blob, len) = store.open("p", b"a").await.unwrap();
            let bytes = blob.read_at(0, len as usize).await.unwrap();
            assert!(bytes[..100].iter().all(|&b| b == BASE_BYTE));
            assert!(
                bytes[100..].iter().all(|&b| b == LATER_BYTE || b == 0),
                "length {len}: the failed write's bytes inside the length"
            );
        },
    );
}

/// The cut before a reveal (a resize up, a plain or SYNC write) is a flush
/// (`sync_data`): when it fails, the blob is poisoned as by a failed sync,
/// since a later flush may report success for what this one lost
/// (DESIGN.md, Durability). The reveal
/// fails with the flush's OS error, and every later write and sync of the
/// handle is refused; a reopen still shows only the synced bytes.
#[test]
fn a_failed_flush_of_the_cut_before_a_reveal_poisons_the_blob() {
    run_seeds(
        "gap_zero a_failed_flush_of_the_cut_before_a_reveal_poisons",
        "",
        18,
        |seed| async move {
            let (base_len, how) = case(seed % 9);
            // Seeds 9.. reveal with SYNC writes.
            let options = [WriteOptions::NONE, WriteOptions::SYNC][usize::from(seed >= 9)];
            let fs = SimFs::new(seed);
            let (store, blob) = failed_append(&fs, base_len).await;
            fs.set_faults(Faults::at_sync(fs.sync_count()));
            let at = later_write_at(base_len, how);
            let bufs: [&[u8]; 1] = [&[LATER_BYTE; 100]];
            let revealed = match how {
                Reveal::Resize => blob.resize(base_len + 20_000).await,
                _ => blob.write_vectored_at(at, &bufs, options).await,
            };
            let e = revealed.expect_err("the cut's flush fails: the reveal fails");
            assert!(e.raw_os_error().is_some(), "{how:?}: the OS error: {e}");
            let op = match &e {
                Error::Io { op, .. } => *op,
                _ => panic!("{how:?}: not an I/O error: {e}"),
            };
            assert_eq!(op, CUT_FLUSH_OP, "{how:?}: the error names the flush");
            assert_eq!((fs.injected_faults(), blob.len()), (2, base_len));
            let refused = blob.sync().await.expect_err("a sync after a failed flush");
            assert!(
                refused.to_string().contains("poisoned"),
                "{how:?}: {refused}"
            );
            let write = blob.write_at(0, &[LATER_BYTE; 10]).await;
            assert!(write.is_err(), "{how:?}: a write after a failed flush");
            drop(blob);
            let (blob, len) = store.open("p", b"a").await.unwrap();
            let bytes = blob.read_at(0, len as usize).await.unwrap();
            assert_eq!(
                &bytes[..],
                &vec![BASE_BYTE; base_len as usize][..],
                "{how:?} reopened"
            );
        },
    );
}

/// Case `seed`: a blob after a failed append (`failed_append`), with the
/// next flush set to fail; and where a write past a gap goes.
async fn before_a_failing_cut_flush(
    seed: u64,
) -> (SimFs, ShardStore<SimFs>, ShardBlob<SimFs>, u64) {
    let base_len = [5000, 8192, 100][(seed % 3) as usize];
    let fs = SimFs::new(seed);
    let (store, blob) = failed_append(&fs, base_len).await;
    fs.set_faults(Faults::at_sync(fs.sync_count()));
    let gap_at = later_write_at(base_len, Reveal::GapWrite);
    (fs, store, blob, gap_at)
}

/// A write that waited for the RMW lock behind a write whose cut's flush
/// failed is refused, as a later write is: the cut may not be durable, and
/// a crash must not show the failed write's bytes in the gap a durable
/// write past them opens. (With the cut recorded before its flush and no
/// check after the wait, the waiting SYNC write went ahead without a cut,
/// and seeds showed them; a zero-copy write passed a check made only on
/// the copying path.)
#[test]
fn a_write_waiting_behind_a_failed_cut_flush_is_refused() {
    run_seeds(
        "gap_zero a_write_waiting_behind_a_failed_cut_flush_is_refused",
        "",
        48,
        |seed| async move {
            let (fs, _store, blob, first_at) = before_a_failing_cut_flush(seed).await;
            let base_len = blob.len();
            let first = blob.write_at(first_at, &[LATER_BYTE; 100]);
            // Past the first, aligned, and too large to join its device
            // write; odd seeds write it from a buffer of `alloc_buf`.
            let (second_at, second_len) = ((first_at / 4096 + 3) * 4096, 20 << 10);
            let second = async {
                if seed % 2 == 1 {
                    let mut buf = blob.alloc_buf(second_len).unwrap();
                    buf.fill(LATER_BYTE);
                    let written = blob.write_buf_at(second_at, buf, WriteOptions::SYNC);
                    return written.await.map(drop);
                }
                let bytes = vec![LATER_BYTE; second_len];
                let bufs: [&[u8]; 1] = [&bytes];
                blob.write_vectored_at(second_at, &bufs, WriteOptions::SYNC)
                    .await
            };
            let (first, second) = futures_lite::future::zip(first, second).await;
            let e = first.expect_err("the first write's cut flush fails");
            assert!(
                matches!(e, Error::Io { op, .. } if op == CUT_FLUSH_OP),
                "{e}"
            );
            let refused = second.expect_err("the waiting write is refused");
            assert!(matches!(refused, Error::BlobPoisoned { .. }), "{refused}");
            // After a crash: the synced length, or the failed append's (an
            // unsynced write, which a crash may keep whole with its length
            // slot), never a length past it with its bytes in a gap.
            let store = ShardStore::new(fs.crash(), "/");
            let (blob, len) = store.open("p", b"a").await.unwrap();
            assert!([base_len, base_len + 8000].contains(&len), "length {len}");
            let bytes = blob.read_at(0, base_len as usize).await.unwrap();
            assert!(bytes.iter().all(|&b| b == BASE_BYTE), "the synced bytes");
        },
    );
}

/// A poisoned blob whose close cannot flush either leaves the next open
/// (by the same store) a flush: the cut whose flush failed may not be
/// durable, and a write past a gap after the reopen must not find the
/// failed write's bytes there after a crash.
#[test]
fn a_reopen_after_failed_cut_and_close_flushes_makes_the_cut_durable() {
    run_seeds(
        "gap_zero a_reopen_after_failed_cut_and_close_flushes_makes_the_cut_durable",
        "",
        48,
        |seed| poisoned_close_then_gap_write(seed, Reopen::SameStoreAfterAFailedFlush),
    );
}

/// A poisoned blob's close flushes: the cut whose flush failed is durable
/// once the close is done, so an open by another store (one in a new
/// process, which knows nothing of the close) needs no flush of its own. A
/// write past a gap after that open must not find the failed write's bytes
/// there after a crash.
#[test]
fn a_poisoned_close_makes_the_cut_durable_for_any_store() {
    run_seeds(
        "gap_zero a_poisoned_close_makes_the_cut_durable_for_any_store",
        "",
        48,
        |seed| poisoned_close_then_gap_write(seed, Reopen::NewStore),
    );
}

/// Who reopens a blob a failed cut's flush poisoned, after its close.
#[derive(Clone, Copy)]
enum Reopen {
    /// The same store, after the close's own flush failed too.
    SameStoreAfterAFailedFlush,
    /// A new store on the same file system (as a new process would).
    NewStore,
}

/// A failed cut's flush poisons a blob; it closes, `reopen` opens it, a
/// SYNC write lands past a gap, and after a crash the gap reads zeros.
async fn poisoned_close_then_gap_write(seed: u64, reopen: Reopen) {
    let (fs, store, blob, at) = before_a_failing_cut_flush(seed).await;
    let base_len = blob.len();
    let failed = blob.write_at(at, &[LATER_BYTE; 100]).await;
    assert!(failed.is_err(), "the cut's flush fails");
    if let Reopen::SameStoreAfterAFailedFlush = reopen {
        fs.set_faults(Faults::at_sync(fs.sync_count()));
    }
    drop(blob);
    closed(&store).await;
    let store = match reopen {
        Reopen::SameStoreAfterAFailedFlush => {
            assert_eq!(fs.injected_sync_faults(), 2, "the close's flush failed");
            store
        }
        Reopen::NewStore => ShardStore::new(fs.clone(), "/"),
    };
    reopen_then_sync_gap_write(&fs, &store, base_len, at).await;
}

/// Opens the blob in `store` (its length `base_len`), writes 100 bytes at
/// `at` with SYNC, and crashes: the gap below them reads zeros.
async fn reopen_then_sync_gap_write(fs: &SimFs, store: &ShardStore<SimFs>, base_len: u64, at: u64) {
    let (blob, len) = store.open("p", b"a").await.unwrap();
    assert_eq!(len, base_len);
    let bufs: [&[u8]; 1] = [&[LATER_BYTE; 100]];
    blob.write_vectored_at(at, &bufs, WriteOptions::SYNC)
        .await
        .unwrap();
    let store = ShardStore::new(fs.crash(), "/");
    let (blob, len) = store.open("p", b"a").await.unwrap();
    let want = expected(base_len, at + 100, Some(at));
    let bytes = blob.read_at(0, len as usize).await.unwrap();
    assert_eq!((len, nonzero_in(&bytes, &want)), (at + 100, 0));
}

/// A close does not cut a failed write's bytes past the end that a sync
/// made durable (its cut would not be durable, and the next open would
/// find the file's size at the length and not flush): the next open cuts
/// them, durably, so a SYNC write past a gap after it does not find them
/// there after a crash. Kills `shards/src/blob/mod.rs:594:42: replace >
/// with == in <impl Drop for BlobState<F>>::drop` (lines at 9206cb2).
#[test]
fn a_close_leaves_a_failed_writes_synced_bytes_to_the_next_open() {
    run_seeds(
        "gap_zero a_close_leaves_a_failed_writes_synced_bytes_to_the_next_open",
        "",
        48,
        |seed| async move {
            let fs = SimFs::new(seed);
            let (base_len, _) = case(seed);
            let (store, blob) = failed_append(&fs, base_len).await;
            blob.sync().await.unwrap();
            drop(blob);
            closed(&store).await;
            let at = later_write_at(base_len, Reveal::GapWrite);
            reopen_then_sync_gap_write(&fs, &store, base_len, at).await;
        },
    );
}

/// Waits until `store` has no blob open (a close may wait for its tasks).
async fn closed(store: &ShardStore<SimFs>) {
    for _ in 0..1000 {
        if store.stats().open_blobs() == 0 {
            break;
        }
        futures_lite::future::yield_now().await;
    }
    assert_eq!(store.stats().open_blobs(), 0, "the blob closed");
}

/// What a poisoned blob's close leaves the next open belongs to that file:
/// a file of the name made after it was deleted (outside the store) opens
/// empty.
#[test]
fn a_new_file_of_the_name_takes_nothing_a_poisoned_close_left() {
    run_seeds(
        "gap_zero a_new_file_of_the_name_takes_nothing_a_poisoned_close_left",
        "",
        3,
        |seed| async move {
            let (fs, store, blob, at) = before_a_failing_cut_flush(seed).await;
            let failed = blob.write_at(at, &[LATER_BYTE; 100]).await;
            assert!(failed.is_err(), "the cut's flush fails: poisoned");
            fs.set_faults(Faults::at_sync(fs.sync_count()));
            drop(blob);
            closed(&store).await;
            assert_eq!(fs.injected_sync_faults(), 2, "the close's flush failed");
            fs.remove_file(Path::new("/p/61")).unwrap();
            let (blob, len) = store.open("p", b"a").await.unwrap();
            assert_eq!((len, blob.len()), (0, 0), "a new file of the name");
        },
    );
}

/// A resize that does not extend the blob, after a failed write whose
/// bytes a sync made durable, still cuts them durably: a SYNC write past a
/// gap after it must not find them there after a crash.
#[test]
fn a_resize_down_cuts_a_failed_writes_synced_bytes_durably() {
    run_seeds(
        "gap_zero a_resize_down_cuts_a_failed_writes_synced_bytes_durably",
        "",
        48,
        |seed| async move {
            let base_len = [5000, 8192, 100][(seed % 3) as usize];
            let fs = SimFs::new(seed);
            let (_store, blob) = failed_append(&fs, base_len).await;
            blob.sync().await.unwrap();
            let len = base_len - (seed / 3 % 2) * 50;
            blob.resize(len).await.unwrap();
            let at = later_write_at(len, Reveal::GapWrite);
            let bufs: [&[u8]; 1] = [&[LATER_BYTE; 100]];
            blob.write_vectored_at(at, &bufs, WriteOptions::SYNC)
                .await
                .unwrap();
            let store = ShardStore::new(fs.crash(), "/");
            let (blob, reopened) = store.open("p", b"a").await.unwrap();
            let bytes = blob.read_at(0, reopened as usize).await.unwrap();
            let failed = bytes.iter().filter(|&&b| b == FAILED_BYTE).count();
            assert_eq!((reopened, failed), (at + 100, 0), "no failed bytes");
        },
    );
}
