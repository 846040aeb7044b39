//! The store counts its own calls: a [`ShardStore`] on the simulated disk,
//! with the space its blobs reserve past their ends.

use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};

use super::{ErrorClass, OpKind};
use crate::fs::sim::{Faults, SimFs};
use crate::{Blob, ShardStore, Storage};

/// The step the tests' stores reserve ahead in.
const STEP_BYTES: u64 = 1 << 20;

fn on_executor(test: impl Future<Output = ()> + 'static) {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    executor.run(test);
}

#[test]
fn a_store_counts_each_call_once_with_its_bytes_and_errors() {
    on_executor(async {
        let store = ShardStore::new(SimFs::new(1), "/");
        let (blob, _) = store.open("p", b"b").await.expect("open");
        blob.write_at(0, &[1; 5000]).await.expect("write");
        assert!(blob.read_at(4000, 2000).await.is_err(), "past the end");
        let mut into = [0; 100];
        blob.read_into(0, &mut into).await.expect("read_into");
        blob.sync().await.expect("sync");
        blob.start_sync().await.expect("start_sync");
        assert!(store.open("p", b"b").await.is_err(), "open twice");
        drop(blob);
        store.scan("p").await.expect("scan");
        store.remove("p", Some(b"b")).await.expect("remove");
        let stats = store.stats().snapshot();
        let counted = |kind| {
            let op = stats.op(kind);
            assert_eq!(op.latency_us.len(), op.count, "{kind:?}");
            (op.count, op.bytes, op.errors_total())
        };
        assert_eq!(counted(OpKind::Open), (2, 0, 1));
        assert_eq!(counted(OpKind::Write), (1, 5000, 0));
        assert_eq!(counted(OpKind::Read), (2, 100, 1));
        assert_eq!(counted(OpKind::Sync), (2, 0, 0));
        assert_eq!(counted(OpKind::Scan), (1, 0, 0));
        assert_eq!(counted(OpKind::Remove), (1, 0, 0));
        assert_eq!(counted(OpKind::Resize), (0, 0, 0));
        assert_eq!(stats.op(OpKind::Read).errors_of(ErrorClass::OutOfRange), 1);
        assert_eq!(stats.op(OpKind::Open).errors_of(ErrorClass::AlreadyOpen), 1);
        assert_eq!((stats.ops_in_flight, stats.open_blobs), (0, 0));
    });
}

#[test]
fn reserved_space_past_the_end_follows_appends_cuts_gaps_and_failures() {
    on_executor(async {
        let fs = SimFs::new(2);
        let store = ShardStore::new(fs.clone(), "/").with_preallocate_bytes(STEP_BYTES);
        let reserved = || store.stats().snapshot().reserved_past_end_bytes;
        let (blob, _) = store.open("p", b"b").await.expect("open");
        blob.write_at(0, &[1; 5000]).await.expect("append");
        assert_eq!(reserved(), STEP_BYTES - 5000);
        blob.write_at(5000, &[2; 1000])
            .await
            .expect("append within the step");
        assert_eq!(reserved(), STEP_BYTES - 6000);
        blob.resize(100).await.expect("cut");
        assert_eq!(reserved(), 0, "a cut gives the reservation back");
        blob.write_at(3 * STEP_BYTES, &[3; 10])
            .await
            .expect("past a gap");
        assert_eq!(reserved(), 0, "a write past a gap reserves nothing");
        let (other, _) = store.open("p", b"c").await.expect("open");
        fs.set_faults(Faults::at_op(fs.op_count()));
        other
            .write_at(0, &[4; 10])
            .await
            .expect("the write goes on");
        fs.set_faults(Faults::default());
        assert_eq!(reserved(), 0, "a failed reservation holds nothing");
        other
            .write_at(STEP_BYTES, &[5; 10])
            .await
            .expect("the next step");
        assert_eq!(
            reserved(),
            STEP_BYTES - 10,
            "reserved from the failed step on"
        );
        drop((blob, other));
        assert_eq!(reserved(), 0);
        assert_eq!(store.stats().snapshot().open_blobs, 0);
    });
}
