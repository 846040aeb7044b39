//! One shard of shardblob: the shard-local blob store.
//!
//! A shard is one CPU-pinned glommio executor. Everything in this crate runs
//! on that one thread: no locks, no atomics on the data path, `Rc` instead of
//! `Arc`. The store knows nothing of other shards, channels or configuration
//! files; the `shardblob` crate builds the engine from many of these.
//!
//! Layout of the crate:
//! - [`api`]: the `Storage`/`Blob` contract every path to a blob implements.
//! - [`fs`]: the file seam (real DMA files, or a simulated file system).
//! - [`store`]: [`ShardStore`], partitions and the open-blob registry.
//! - [`blob`]: [`ShardBlob`], reads, writes, resize and sync on one file.
//! - [`header`]: the 4096-byte header page at the start of every blob file.
//! - [`data_dir`]: the data directory and its `LOCK`.
//! - [`name`]: partition and blob names.
//! - [`sched`]: I/O classes and the shard's I/O scheduler.
//! - [`stats`]: the store's per-shard counters and latency histograms.

#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod fs;
pub mod name;
pub mod rng;
pub mod sched;
pub mod stats;

pub use api::{Blob, ReadOptions, SendBlob, SendStorage, Storage, WriteOptions};
pub use error::{Error, Result};
pub use sched::IoClass;
pub mod blob;
pub mod data_dir;
pub mod header;
pub mod store;

pub use blob::{BlobBuf, ShardBlob, WriteBuffer, CUT_FLUSH_OP, CUT_OP, WRITE_BUF_BYTES_MAX};
pub use data_dir::DataDir;
pub use store::ShardStore;

#[cfg(feature = "conformance")]
pub mod conformance;
