//! The shard store on the simulated file system: the same conformance suite
//! the DMA path passes, driving the very same store code.

use glommio::{LocalExecutorBuilder, Placement};
use shardblob_shards::fs::sim::SimFs;
use shardblob_shards::{conformance, ShardStore};

#[test]
fn conformance_on_simulated_files() {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor");
    executor.run(async {
        let store = ShardStore::new(SimFs::new(7), "/");
        conformance::run(&store, |check| format!("sim-{check}"))
            .await
            .expect("the suite passes on simulated files");
    });
}
