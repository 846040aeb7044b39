//! shardblob: a thread-per-core, shard-nothing blob storage engine.
//!
//! Partitions (named groups of blobs) are hashed to CPU-pinned shards. Each
//! shard runs its own glommio executor and does all I/O for its partitions
//! with O_DIRECT files, so a request never waits on a lock or another core.
//! Work that arrives on the wrong core travels to the owner over bounded
//! channels: one hop there, one back.
//!
//! Three ways in, one contract ([`Storage`]/[`Blob`]):
//! - on the owning shard ([`ShardStorage`] inside [`Client::spawn_on`]):
//!   direct calls, no channel, no copy;
//! - on another shard (the same [`ShardStorage`]): forwarded over glommio's
//!   lock-free shared channels;
//! - from any other thread ([`Client`]): `Send + Sync`, works from std
//!   threads and async runtimes such as tokio.
//!
//! ```
//! use shardblob::{Blob, Config, Engine, Storage};
//!
//! let mut config = Config::default();
//! config.data_dir = std::env::temp_dir().join("shardblob-doc-example");
//! let engine = Engine::start(config)?;
//! let client = engine.client();
//! futures_lite::future::block_on(async {
//!     let (blob, _len) = client.open("users", b"alice").await?;
//!     blob.write_at(0, b"hello").await?;
//!     blob.sync().await?;
//!     shardblob::Result::Ok(())
//! })?;
//! engine.shutdown()?;
//! # shardblob::Result::Ok(())
//! ```

#![warn(missing_docs)]

mod client;
pub mod config;
mod engine;
mod io_scheduler;
mod local;
mod message;
mod per_class;
mod placement;
mod preflight;
mod remote;
mod routing;
mod send;
mod shard;
pub mod stats;
#[cfg(test)]
mod tests;
mod transport;
pub mod wait;

pub use client::{Client, ClientBlob};
pub use config::{Config, ConfigBuilder, Placement, ResolvedConfig};
pub use engine::Engine;
pub use local::{Bytes, ShardBlobHandle, ShardStorage, WriteBuf};
pub use remote::RemoteBlob;
pub use routing::shard_of;
/// The simulated disk that [`Engine::start_simulated`] runs on (tests and
/// simulations): faults on demand, crashes, seed-deterministic.
pub use shardblob_shards::fs::sim;
pub use stats::{EngineStats, ShardStats};
/// README.md's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// I/O classes and the shards' I/O schedulers.
pub use shardblob_shards::sched;
pub use shardblob_shards::{
    Blob, BlobBuf, Error, IoClass, ReadOptions, Result, SendBlob, SendStorage, Storage,
    WriteBuffer, WriteOptions, CUT_FLUSH_OP, CUT_OP, WRITE_BUF_BYTES_MAX,
};
