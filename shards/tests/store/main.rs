//! The store's integration tests, one module per concern, in one test
//! binary (`cargo test -p shardblob-shards --test store [module]`).
//!
//! One binary, not one per file: each test binary compiles its own copy of
//! the store's generic code (`ShardStore<SimFs>`, `ShardStore<DmaFs>`, the
//! blob beneath), so twelve binaries compiled it twelve times for every
//! change to the crate. That was most of the cost of one mutant in
//! `scripts/mutants` (issue 17, point 7), and of an edit-and-test cycle.
//! `dma_fd_reuse` stays a binary of its own: it reasons about the process's
//! file descriptor numbers, which other tests in the same process would
//! take.

#[path = "../common/mod.rs"]
mod common;

mod blob_races;
mod concurrency_sim;
mod conformance_faults;
mod crash_sim;
mod dma_store;
mod faults_sim;
mod gap_zero;
mod logs;
mod mutants_killed;
mod sim_store;
mod split_write_faults;
mod store_races;
mod sync_trim;
