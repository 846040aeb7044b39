//! Crash simulation (issue 6, point 2): the shard store on the simulated
//! file system, random operation sequences with crashes at random points,
//! every crash checked against a model of the contract.
//!
//! Each seed runs a sequence of opens, writes (aligned, unaligned, sparse,
//! vectored, some `WriteOptions::SYNC`), reads, `read_many`, resizes, syncs,
//! closes and reopens, removes of blobs and partitions, scans, and restarts
//! of the store without a crash; every result is checked against the model
//! (`common/model.rs`, which also states the allowed lengths). Now and then
//! the disk crashes, between two ops or cut into one (after a few of its
//! file-system calls): every handle and the store are dropped, the disk
//! keeps any version each 512-byte sector had since its last flush, any
//! size each file had since, and any subset of each directory's unsynced
//! entries (`shards/src/fs/sim.rs`, "A crash"), and a new store on what is
//! left must show: every byte of a completed sync or SYNC write intact, every
//! other sector old or new, a length the store's documented behaviour
//! allows, every name whose create returned `Ok` (and not removed since),
//! no name whose remove returned `Ok`, and every listed blob reopening.
//!
//! `SHARDBLOB_SEED=n` reruns seed `n`; `SHARDBLOB_CRASH_SEEDS=100000` runs
//! that many seeds (the long mode); the default is 1,000.

use crate::common;

use std::cell::RefCell;

use common::harness::{Harness, Stats};
use common::model::{BlobModel, Trim};
use common::{random, rng, run_seeds};

/// Random ops per seed.
const STEPS: usize = 80;
/// One op in this many is followed, or cut short, by a crash.
const CRASH_ONE_IN: u64 = 10;

#[test]
fn random_ops_with_crashes_keep_the_contract() {
    let total = RefCell::new(Stats::default());
    run_seeds("crash_sim", "SHARDBLOB_CRASH_SEEDS", 1000, |seed| {
        let total = &total;
        async move {
            let mut rng = rng(seed);
            let mut h = Harness::new(seed);
            random::run(&mut h, &mut rng, STEPS, CRASH_ONE_IN).await;
            total.borrow_mut().add(&h.stats);
        }
    });
    let total = total.into_inner();
    eprintln!("crash_sim: {total:?}");
    if total.crashes > 2000 {
        // Enough seeds ran for every kind of event to have happened: the
        // runs must really cut ops short, lose or tear unsynced data, leave
        // padded lengths, and both keep and drop names of unfinished ops.
        assert!(total.interrupted > 100, "{total:?}");
        assert!(total.blobs_changed > 100, "{total:?}");
        assert!(total.blobs_padded > 10, "{total:?}");
        assert!(total.maybe_names_kept > 10, "{total:?}");
        assert!(total.maybe_names_dropped > 10, "{total:?}");
    }
}

fn check(model: &BlobModel, bytes: &[u8]) -> bool {
    model.check_crashed(bytes).is_ok()
}

/// The model itself: it must reject what the contract forbids, or the
/// simulation above would prove nothing.
#[test]
fn the_model_rejects_broken_crash_states() {
    let old = vec![0x11u8; 6000];
    let mut model = BlobModel::default();
    model.write(0, &old, false);
    model.sync();
    model.write(1000, &[0x22; 2000], false);
    model.write(100, &[0x33; 10], true);

    let mut new = old.clone();
    new[1000..3000].fill(0x22);
    new[100..110].fill(0x33);
    let mut synced_only = old.clone();
    synced_only[100..110].fill(0x33);
    assert!(check(&model, &new), "all new");
    assert!(
        check(&model, &synced_only),
        "unsynced lost, SYNC write kept"
    );
    let mut torn = synced_only.clone();
    torn[1024..1536].fill(0x22);
    assert!(check(&model, &torn), "one whole new sector");

    let mut lost_sync = new.clone();
    lost_sync[105] = 0x11;
    assert!(!check(&model, &lost_sync), "a SYNC-written byte lost");
    let mut mixed = new.clone();
    mixed[1100] = 0x11;
    assert!(!check(&model, &mixed), "a sector half old, half new");
    let mut garbage = new.clone();
    garbage[4000] = 0x99;
    assert!(!check(&model, &garbage), "a byte never written");
    assert!(!check(&model, &new[..5999]), "a synced length lost");
    let mut long = new.clone();
    long.resize(8192, 0);
    assert!(!check(&model, &long), "zero padding no write made");

    // A SYNC write in the last block makes that whole block durable: the
    // file holds its zero padding, durably, until a sync trims it.
    model.write(5000, &[0x44; 10], true);
    new[5000..5010].fill(0x44);
    let mut padded = new.clone();
    padded.resize(8192, 0);
    assert!(check(&model, &padded), "padded to the block");
    assert!(
        check(&model, &new),
        "the exact length: the slot the SYNC write recorded (format 2)"
    );
    model.sync();
    assert!(check(&model, &new));
    assert!(!check(&model, &padded), "padding after a sync");

    // After a clean close, a reopen shows exactly the logical length.
    model.write(6000, &[0x55; 5], false);
    model.close(Trim::Done);
    assert!(model.reopened(8192).is_err(), "padding after a close");
    assert!(model.reopened(6005).is_ok());
}

/// A crash may leave any size the file had since the last sync (a real
/// disk may keep any of the size updates it had not flushed), and no other:
/// not one shorter than the synced length or than a SYNC write's blocks.
#[test]
fn the_model_takes_any_size_since_the_sync_and_no_other() {
    let mut model = BlobModel::default();
    model.write(0, &[0x11; 5000], false);
    model.sync();
    model.write(5000, &[0x22; 5000], false);
    model.resize(6000);
    let mut full = vec![0x11; 5000];
    full.extend([0x22; 5000]);
    full.resize(12_288, 0);
    // The padded end of the write, the end of its first block (a split
    // write grows the file piece by piece), the resize.
    for len in [12_288, 8192, 6000, 5000] {
        assert!(check(&model, &full[..len]), "length {len}");
    }
    assert!(!check(&model, &full[..7000]), "a size the file never had");
    assert!(!check(&model, &full[..4999]), "a synced length lost");
    // A SYNC write makes its blocks durable: no size below their end.
    model.write(12_288, &[0x33; 10], true);
    full.resize(16_384, 0);
    full[12_288..12_298].fill(0x33);
    assert!(check(&model, &full), "the SYNC write's padded end");
    let mut shorter = full[..6000].to_vec();
    shorter.resize(12_288, 0);
    assert!(!check(&model, &shorter), "a SYNC write's blocks cut off");
    assert!(
        check(&model, &full[..12_298]),
        "the exact length: the slot the SYNC write recorded (format 2)"
    );
    assert!(
        !check(&model, &full[..12_297]),
        "shorter than the SYNC write"
    );
}
