//! The patched glommio (third_party/glommio/PATCHES.md, patch 1): by
//! default a running shard keeps a preemption timer that is still armed
//! across the passes of its loop; with `GLOMMIO_KEEP_PREEMPTION_TIMERS=0`
//! it cancels and re-arms both timers on every pass, as glommio 0.9.0 does
//! (each a submission, and an `io_uring_enter`, per pass). Checked by
//! counting the io_uring timeouts the kernel saw the shard's thread submit
//! (`io_uring:io_uring_submit_req`), not by a clock. glommio reads the
//! switch once per process: `GLOMMIO_KEEP_PREEMPTION_TIMERS=0 cargo test -p
//! shardblob --test reactor_timers` checks upstream's behaviour. Needs root
//! and tracefs, as the durability audit does.

mod support;

use shardblob::{Blob, Storage};
use support::ftrace::{self, Tracer};
use support::start;

/// Reads the test makes on the shard while it is traced.
const READS: u64 = 2_000;
/// The blob's size: reads cycle over its 4 KiB blocks.
const BLOB_BYTES: u64 = 1 << 20;
/// glommio's switch for the patch (read once per process).
const KEEP_VAR: &str = "GLOMMIO_KEEP_PREEMPTION_TIMERS";

/// Runs `READS` reads on a one-shard engine whose shard never parks, and
/// returns the data reads and the io_uring timeouts its thread submitted.
fn reads_and_timeouts() -> (u64, u64) {
    // A spin far longer than a read: the shard never parks between reads,
    // so every pass of its loop is a pass with work (parking re-arms the
    // timer once after each sleep, patched or not).
    let (engine, dir) = start("reactor-timers", |config| {
        config.shards = 1;
        config.spin_before_park_us = 10_000;
    });
    let client = engine.client();
    let tid = shardblob::wait::block_on(client.spawn_on(0, |storage| async move {
        let (blob, _) = storage.open("timers", b"blob").await.unwrap();
        blob.write_at(0, &vec![7u8; BLOB_BYTES as usize])
            .await
            .unwrap();
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }))
    .expect("the shard writes the blob");
    // Only the shard's thread, filtered in the kernel: other processes'
    // io_uring work cannot crowd its events out of the buffer.
    let tracer = Tracer::start_filtered(
        "reactor-timers",
        "io_uring/io_uring_submit_req",
        Some(&format!("common_pid == {tid}")),
    );
    shardblob::wait::block_on(client.spawn_on(0, |storage| async move {
        let (blob, _) = storage.open("timers", b"blob").await.unwrap();
        for read in 0..READS {
            let offset = (read * 4096) % BLOB_BYTES;
            blob.read_at(offset, 4096).await.unwrap();
        }
    }))
    .expect("the shard runs the reads");
    let opcodes = ftrace::io_uring_opcodes(&tracer.lines(), tid);
    drop(tracer);
    engine.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let count = |name: &str| opcodes.iter().filter(|o| o.as_str() == name).count() as u64;
    // Data reads only: plain READ is also the eventfd's, re-armed now and then.
    let (reads, timeouts) = (count("READ_FIXED"), count("TIMEOUT"));
    assert!(
        reads >= READS,
        "the trace holds {reads} reads of the shard's thread {tid}, expected {READS}: \
         the trace does not see the shard ({} submissions in all)",
        opcodes.len()
    );
    (reads, timeouts)
}

/// By default, the patch's behaviour; with `GLOMMIO_KEEP_PREEMPTION_TIMERS=0`
/// in the environment, upstream's. CI runs the default.
#[test]
fn a_running_shard_keeps_its_armed_timers_unless_the_patch_is_switched_off() {
    let switched_off = std::env::var_os(KEEP_VAR).is_some_and(|v| v == "0");
    let (_, timeouts) = reads_and_timeouts();
    if switched_off {
        assert!(
            timeouts >= READS,
            "with {KEEP_VAR}=0 the shard re-arms its timers every pass as glommio 0.9.0 \
             does: {timeouts} io_uring timeouts for {READS} reads"
        );
        return;
    }
    // The throughput timer still fires every `ring_depth` (128) main-ring
    // completions and is armed again: a shard that arms none is broken too.
    assert!(
        timeouts >= READS / 512,
        "the shard armed {timeouts} io_uring timeouts for {READS} reads: none re-armed"
    );
    assert!(
        timeouts * 10 < READS,
        "the shard armed {timeouts} io_uring timeouts for {READS} reads \
         (glommio 0.9.0 re-arms two per pass: more than one per read)"
    );
}
