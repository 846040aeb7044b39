//! What travels between threads: one request, answered once.
//!
//! Requests carry owned, `Send` data (bytes copied once at the sender) and a
//! one-shot reply channel. A blob opened through a forwarded request lives
//! in the owning shard's table under a [`BlobId`]; remote handles name it by
//! that id.

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;

use shardblob_shards::{Error, Result, WriteOptions};

use crate::local::ShardStorage;
use crate::remote::OpenGuard;

/// A blob opened on its shard on behalf of another thread.
pub type BlobId = u64;

/// The sending half of a one-shot reply.
pub type Reply<T> = flume::Sender<Result<T>>;

/// Makes a one-shot reply channel.
pub fn reply<T>() -> (Reply<T>, flume::Receiver<Result<T>>) {
    flume::bounded(1)
}

/// Awaits a reply; a dropped sender means the shard shut down.
pub async fn answer<T>(rx: flume::Receiver<Result<T>>) -> Result<T> {
    rx.recv_async().await.unwrap_or(Err(Error::Shutdown))
}

/// A user task to run on a shard, built there from the shard's storage.
pub type Spawn =
    Box<dyn FnOnce(ShardStorage) -> Pin<Box<dyn Future<Output = ()>>> + Send + 'static>;

/// One request to a shard.
pub enum Request {
    Open {
        partition: String,
        name: Vec<u8>,
        versions: RangeInclusive<u16>,
        reply: Reply<(BlobId, u64, u16)>,
    },
    Remove {
        partition: String,
        name: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    Scan {
        partition: String,
        reply: Reply<Vec<Vec<u8>>>,
    },
    Read {
        blob: BlobId,
        offset: u64,
        len: usize,
        reply: Reply<Vec<u8>>,
    },
    ReadMany {
        blob: BlobId,
        ranges: Vec<(u64, usize)>,
        /// Bounded by the number of ranges: the shard never waits on it.
        items: flume::Sender<Result<(usize, Vec<u8>)>>,
    },
    Write {
        blob: BlobId,
        offset: u64,
        data: Vec<u8>,
        options: WriteOptions,
        reply: Reply<()>,
    },
    Resize {
        blob: BlobId,
        len: u64,
        reply: Reply<()>,
    },
    Sync {
        blob: BlobId,
        reply: Reply<()>,
        /// Keeps the open alive until the sync is done (`start_sync`).
        hold: Option<OpenGuard>,
    },
    /// Run a user task on the shard.
    Spawn(Spawn),
}
