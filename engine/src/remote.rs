//! Blobs owned by another shard, reached through a [`Transport`].
//!
//! [`RemoteStorage`] forwards each call to the owning shard and awaits the
//! one reply. A [`RemoteBlob`] names its blob by the id the owning shard gave
//! it; when the last clone drops, one close notice tells the shard to let the
//! blob go. Bytes are copied once into an owned buffer on their way across.

use std::ops::RangeInclusive;
use std::sync::Arc;

use futures_lite::{stream, Stream};

use shardblob_shards::{Blob, Error, Result, Storage, WriteOptions};

use crate::message::{answer, reply, BlobId, Reply, Request};
use crate::routing::shard_of;
use crate::transport::Transport;

/// Storage whose every call is forwarded to the partition's shard.
#[derive(Clone)]
pub struct RemoteStorage<T: Transport> {
    pub(crate) transport: T,
}

/// Forwards a request built around a fresh reply channel and awaits it.
pub(crate) async fn call<T: Transport, R>(
    transport: &T,
    shard: usize,
    make: impl FnOnce(Reply<R>) -> Request,
) -> Result<R> {
    let (tx, rx) = reply();
    transport.send(shard, make(tx)).await?;
    transport.reply(rx).await
}

impl<T: Transport> RemoteStorage<T> {
    fn shard(&self, partition: &str) -> usize {
        shard_of(partition, self.transport.router().shard_count())
    }
}

impl<T: Transport> Storage for RemoteStorage<T> {
    type Blob = RemoteBlob<T>;

    async fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> Result<(RemoteBlob<T>, u64, u16)> {
        let shard = self.shard(partition);
        let (id, len, version) = call(&self.transport, shard, |reply| Request::Open {
            partition: partition.to_string(),
            name: name.to_vec(),
            versions,
            reply,
        })
        .await?;
        let close = Arc::new(CloseOnDrop {
            closes: self.transport.router().closes[shard].clone(),
            id,
        });
        let blob = RemoteBlob {
            transport: self.transport.clone(),
            shard,
            id,
            _close: close,
        };
        Ok((blob, len, version))
    }

    async fn remove(&self, partition: &str, name: Option<&[u8]>) -> Result<()> {
        call(&self.transport, self.shard(partition), |reply| {
            Request::Remove {
                partition: partition.to_string(),
                name: name.map(<[u8]>::to_vec),
                reply,
            }
        })
        .await
    }

    async fn scan(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        call(&self.transport, self.shard(partition), |reply| {
            Request::Scan {
                partition: partition.to_string(),
                reply,
            }
        })
        .await
    }
}

/// Keeps a remote open alive while a request that must outlive the caller's
/// handle (a started sync) is on its way.
pub type OpenGuard = Arc<CloseOnDrop>;

/// Sends the one close notice of a remote open when its last clone drops.
pub struct CloseOnDrop {
    closes: async_channel::Sender<BlobId>,
    id: BlobId,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // A stopped shard has let go of every blob already.
        let _ = self.closes.try_send(self.id);
    }
}

/// A handle to a blob owned by another shard.
#[derive(Clone)]
pub struct RemoteBlob<T: Transport> {
    transport: T,
    shard: usize,
    id: BlobId,
    _close: Arc<CloseOnDrop>,
}

/// Where a `read_many` stream is.
enum Batch<T> {
    Unsent {
        transport: T,
        shard: usize,
        request: Request,
        items: async_channel::Receiver<Result<(usize, Vec<u8>)>>,
        remaining: usize,
    },
    Receiving {
        items: async_channel::Receiver<Result<(usize, Vec<u8>)>>,
        remaining: usize,
    },
    Done,
}

type Item = Result<(usize, Vec<u8>)>;

async fn next_item<T>(
    items: async_channel::Receiver<Item>,
    remaining: usize,
) -> Option<(Item, Batch<T>)> {
    if remaining == 0 {
        return None;
    }
    match items.recv().await {
        Ok(Ok(item)) => Some((
            Ok(item),
            Batch::Receiving {
                items,
                remaining: remaining - 1,
            },
        )),
        Ok(Err(e)) => Some((Err(e), Batch::Done)),
        // The shard stopped before answering every range.
        Err(_) => Some((Err(Error::Shutdown), Batch::Done)),
    }
}

impl<T: Transport> Blob for RemoteBlob<T> {
    type Buf = Vec<u8>;

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        call(&self.transport, self.shard, |reply| Request::Read {
            blob: self.id,
            offset,
            len,
            reply,
        })
        .await
    }

    async fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes = self.read_at(offset, buf.len()).await?;
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn read_many(&self, ranges: Vec<(u64, usize)>) -> impl Stream<Item = Item> {
        let remaining = ranges.len();
        let (tx, items) = async_channel::bounded(remaining.max(1));
        let start = Batch::Unsent {
            transport: self.transport.clone(),
            shard: self.shard,
            request: Request::ReadMany {
                blob: self.id,
                ranges,
                items: tx,
            },
            items,
            remaining,
        };
        stream::unfold(start, |batch| async move {
            match batch {
                Batch::Unsent {
                    transport,
                    shard,
                    request,
                    items,
                    remaining,
                } => match transport.send(shard, request).await {
                    Ok(()) => next_item(items, remaining).await,
                    Err(e) => Some((Err(e), Batch::Done)),
                },
                Batch::Receiving { items, remaining } => next_item(items, remaining).await,
                Batch::Done => None,
            }
        })
    }

    async fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> Result<()> {
        let data = bufs.concat();
        call(&self.transport, self.shard, |reply| Request::Write {
            blob: self.id,
            offset,
            data,
            options,
            reply,
        })
        .await
    }

    async fn resize(&self, len: u64) -> Result<()> {
        call(&self.transport, self.shard, |reply| Request::Resize {
            blob: self.id,
            len,
            reply,
        })
        .await
    }

    async fn sync(&self) -> Result<()> {
        call(&self.transport, self.shard, |reply| Request::Sync {
            blob: self.id,
            reply,
            hold: None,
        })
        .await
    }

    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>> {
        let (tx, rx) = reply();
        self.transport.send_detached(
            self.shard,
            Request::Sync {
                blob: self.id,
                reply: tx,
                hold: Some(self._close.clone()),
            },
        );
        answer(rx)
    }
}
