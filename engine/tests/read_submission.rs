//! glommio patch 3 (`third_party/glommio/PATCHES.md`): a shard submits each
//! disk read to the kernel when the read is issued, as fio does, rather
//! than all of a pass's reads in one batch at the pass's end (glommio
//! 0.9.0), which this VM's disk serves more slowly at depth 32.
//!
//! Checked by the kernel's record, not by a clock: the test issues reads
//! on the shard, polling each once without returning to the executor,
//! marks the trace, and counts the reads the kernel saw the shard's thread
//! submit (`io_uring:io_uring_submit_req`) before the mark. Needs root and
//! tracefs, as the durability audit does, and a data directory on a device
//! without io_uring poll queues (the patch leaves polled files as upstream
//! has them), as every disk of the dev VM is.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures::future::MaybeDone;
use shardblob::{Blob, Storage};
use support::ftrace::{self, Tracer};
use support::start;

/// Reads issued at once.
const READS: u64 = 32;
/// The marker written before the reads are issued (after the open's own).
const ISSUING: &str = "the reads are issued";
/// The marker written once every read was polled once.
const ISSUED: &str = "every read issued";

/// The data reads thread `tid` submitted between the markers (`READ_FIXED`
/// from glommio's registered buffers, plain `READ` where it falls back).
fn reads_between_markers(lines: &[String], tid: i32) -> u64 {
    let between = ftrace::lines_between(lines, ISSUING, ISSUED).expect("both markers in the trace");
    ftrace::io_uring_opcodes(between, tid)
        .iter()
        .filter(|opcode| *opcode == "READ_FIXED" || *opcode == "READ")
        .count() as u64
}

#[test]
fn a_shard_submits_each_read_when_it_is_issued() {
    let (engine, dir) = start("read-submission", |config| config.shards = 1);
    let client = engine.client();
    let tid = shardblob::wait::block_on(client.spawn_on(0, |storage| async move {
        let (blob, _) = storage.open("reads", b"blob").await.unwrap();
        blob.write_at(0, &vec![7u8; 1 << 20]).await.unwrap();
        blob.sync().await.unwrap();
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }))
    .expect("the shard writes the blob");
    let tracer = Arc::new(Tracer::start_filtered(
        "read-submission",
        "io_uring/io_uring_submit_req",
        Some(&format!("common_pid == {tid}")),
    ));
    let marker = tracer.clone();
    shardblob::wait::block_on(client.spawn_on(0, move |storage| async move {
        let (blob, _) = storage.open("reads", b"blob").await.unwrap();
        let mut reads: Vec<_> = (0..READS)
            .map(|read| MaybeDone::Future(Box::pin(blob.read_at(read * 8192, 4096))))
            .collect();
        marker.mark(ISSUING);
        // Each read polled once, then the mark, before the executor's pass
        // goes on: what the kernel has by then was submitted when issued.
        // (A read may be done by then: its submission collects what the
        // device already finished.)
        std::future::poll_fn(|cx| {
            for read in reads.iter_mut() {
                let _ = Pin::new(read).poll(cx);
            }
            Poll::Ready(())
        })
        .await;
        marker.mark(ISSUED);
        for mut read in reads {
            (&mut read).await;
            let bytes = Pin::new(&mut read)
                .take_output()
                .expect("the read's output");
            assert_eq!(bytes.unwrap().len(), 4096);
        }
    }))
    .expect("the shard runs the reads");
    let submitted = reads_between_markers(&tracer.lines(), tid);
    drop(tracer);
    engine.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        submitted >= READS,
        "the kernel had {submitted} of {READS} reads the shard's thread {tid} issued before \
         it returned to its executor; glommio 0.9.0 submits them at the pass's end"
    );
}
