//! [`ShardStorage`]: the storage a task running on a shard uses.
//!
//! A partition this shard owns is served by a direct call into the shard
//! store: no channel, no copy beyond the I/O buffer, no allocation beyond it.
//! Any other partition is forwarded to its shard over the peer channels.

use std::ops::{Deref, DerefMut, RangeInclusive};
use std::rc::Rc;

use futures_lite::{Stream, StreamExt};

use shardblob_shards::blob::WriteBuffer;
use shardblob_shards::fs::any::{AnyFs, AnyReadBuf, AnyWriteBuf};
use shardblob_shards::sched::IoScheduler;
use shardblob_shards::{Blob, BlobBuf, Result, ShardBlob, Storage, WriteOptions};

use crate::remote::{RemoteBlob, RemoteStorage};
use crate::routing::shard_of;
use crate::shard::ShardContext;
use crate::stats::ShardStats;
use crate::transport::Peer;

/// Storage as seen from one shard: direct for its own partitions,
/// forwarded for the rest. Not `Send`: it lives on its shard's thread.
#[derive(Clone)]
pub struct ShardStorage {
    context: Rc<ShardContext>,
}

impl ShardStorage {
    pub(crate) fn new(context: Rc<ShardContext>) -> ShardStorage {
        ShardStorage { context }
    }

    /// The storage of the shard running on this thread, if it is one.
    pub fn current() -> Option<ShardStorage> {
        ShardContext::current().map(ShardStorage::new)
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.context.index
    }

    /// Number of shards in the engine.
    pub fn shard_count(&self) -> usize {
        self.context.router.shard_count()
    }

    /// The shard that owns `partition`.
    pub fn shard_of(&self, partition: &str) -> usize {
        shard_of(partition, self.shard_count())
    }

    /// This shard's I/O scheduler: its bounds, and the calls of each class
    /// in flight, queued and dispatched so far.
    pub fn io_scheduler(&self) -> &Rc<IoScheduler> {
        self.context.store.scheduler()
    }

    /// This shard's statistics now (`Client::stats` gathers every
    /// shard's): its store's counters on every path, its queues' depths.
    pub fn stats(&self) -> ShardStats {
        self.context.stats()
    }

    fn is_local(&self, partition: &str) -> bool {
        self.shard_of(partition) == self.context.index
    }

    fn peers(&self) -> RemoteStorage<Peer> {
        RemoteStorage {
            transport: Peer {
                context: self.context.clone(),
            },
        }
    }
}

impl Storage for ShardStorage {
    type Blob = ShardBlobHandle;

    async fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> Result<(ShardBlobHandle, u64, u16)> {
        if self.is_local(partition) {
            self.context.drain_closes();
            let (blob, len, version) = self
                .context
                .store
                .open_versioned(partition, name, versions)
                .await?;
            Ok((ShardBlobHandle::Local(blob), len, version))
        } else {
            let (blob, len, version) = self
                .peers()
                .open_versioned(partition, name, versions)
                .await?;
            Ok((ShardBlobHandle::Peer(blob), len, version))
        }
    }

    async fn remove(&self, partition: &str, name: Option<&[u8]>) -> Result<()> {
        if self.is_local(partition) {
            self.context.store.remove(partition, name).await
        } else {
            self.peers().remove(partition, name).await
        }
    }

    async fn scan(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        if self.is_local(partition) {
            self.context.store.scan(partition).await
        } else {
            self.peers().scan(partition).await
        }
    }
}

/// A blob handle on a shard: the blob itself when this shard owns it, a
/// forwarding handle otherwise.
#[derive(Clone)]
pub enum ShardBlobHandle {
    /// Owned by this shard: direct calls.
    Local(ShardBlob<AnyFs>),
    /// Owned by another shard: forwarded calls.
    Peer(RemoteBlob<Peer>),
}

/// A buffer for a zero-copy write on a shard (`Blob::write_buf_at`).
#[derive(Debug)]
pub enum WriteBuf {
    /// The owning shard's I/O memory: written as it is.
    Local(WriteBuffer<AnyWriteBuf>),
    /// Moved to the owning shard, which copies it once.
    Peer(Vec<u8>),
}

impl Deref for WriteBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WriteBuf::Local(buf) => buf,
            WriteBuf::Peer(buf) => buf,
        }
    }
}

impl DerefMut for WriteBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            WriteBuf::Local(buf) => buf,
            WriteBuf::Peer(buf) => buf,
        }
    }
}

/// The bytes of a read on a shard.
#[derive(Debug)]
pub enum Bytes {
    /// A view of this shard's I/O buffer (no copy).
    Local(BlobBuf<AnyReadBuf>),
    /// Copied from another shard.
    Peer(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Local(bytes) => bytes,
            Bytes::Peer(bytes) => bytes,
        }
    }
}

impl Blob for ShardBlobHandle {
    type Buf = Bytes;
    type WriteBuf = WriteBuf;

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        match self {
            ShardBlobHandle::Local(blob) => blob.read_at(offset, len).await.map(Bytes::Local),
            ShardBlobHandle::Peer(blob) => blob.read_at(offset, len).await.map(Bytes::Peer),
        }
    }

    async fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            ShardBlobHandle::Local(blob) => blob.read_into(offset, buf).await,
            ShardBlobHandle::Peer(blob) => blob.read_into(offset, buf).await,
        }
    }

    fn read_many(&self, ranges: Vec<(u64, usize)>) -> impl Stream<Item = Result<(usize, Bytes)>> {
        match self {
            ShardBlobHandle::Local(blob) => blob
                .read_many(ranges)
                .map(|item| item.map(|(index, bytes)| (index, Bytes::Local(bytes))))
                .boxed_local(),
            ShardBlobHandle::Peer(blob) => blob
                .read_many(ranges)
                .map(|item| item.map(|(index, bytes)| (index, Bytes::Peer(bytes))))
                .boxed_local(),
        }
    }

    async fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> Result<()> {
        match self {
            ShardBlobHandle::Local(blob) => blob.write_vectored_at(offset, bufs, options).await,
            ShardBlobHandle::Peer(blob) => blob.write_vectored_at(offset, bufs, options).await,
        }
    }

    fn alloc_buf(&self, len: usize) -> Result<WriteBuf> {
        match self {
            ShardBlobHandle::Local(blob) => blob.alloc_buf(len).map(WriteBuf::Local),
            ShardBlobHandle::Peer(blob) => blob.alloc_buf(len).map(WriteBuf::Peer),
        }
    }

    /// A buffer of another handle's kind is written with a copy.
    async fn write_buf_at(
        &self,
        offset: u64,
        buf: WriteBuf,
        options: WriteOptions,
    ) -> Result<WriteBuf> {
        match (self, buf) {
            (ShardBlobHandle::Local(blob), WriteBuf::Local(buf)) => {
                let written = blob.write_buf_at(offset, buf, options).await;
                written.map(WriteBuf::Local)
            }
            (ShardBlobHandle::Peer(blob), WriteBuf::Peer(buf)) => {
                let written = blob.write_buf_at(offset, buf, options).await;
                written.map(WriteBuf::Peer)
            }
            (handle, buf) => {
                let written = handle.write_vectored_at(offset, &[&buf], options).await;
                written.map(|()| buf)
            }
        }
    }

    async fn resize(&self, len: u64) -> Result<()> {
        match self {
            ShardBlobHandle::Local(blob) => blob.resize(len).await,
            ShardBlobHandle::Peer(blob) => blob.resize(len).await,
        }
    }

    async fn sync(&self) -> Result<()> {
        match self {
            ShardBlobHandle::Local(blob) => blob.sync().await,
            ShardBlobHandle::Peer(blob) => blob.sync().await,
        }
    }

    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>> {
        let started = match self {
            ShardBlobHandle::Local(blob) => {
                futures_lite::future::FutureExt::boxed_local(blob.start_sync())
            }
            ShardBlobHandle::Peer(blob) => {
                futures_lite::future::FutureExt::boxed_local(blob.start_sync())
            }
        };
        started
    }
}
