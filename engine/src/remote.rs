//! Blobs owned by another shard, reached through a [`Transport`].
//!
//! [`RemoteStorage`] forwards each call to the owning shard and awaits the
//! one reply. A [`RemoteBlob`] names its blob by the id the owning shard gave
//! it; when the last clone drops, one close notice tells the shard to let the
//! blob go. The owning shard builds that close guard ([`CloseOnDrop`]) and
//! sends it in the open's reply, so an open whose future is dropped — with
//! the reply still in the channel or already in the caller's future — closes
//! all the same. Bytes are copied once into an owned buffer on their way
//! across.
//!
//! `start_sync` must never block and its sync must go on even if its future
//! is dropped unpolled, so it does not use the bounded request queue: it
//! puts a [`SyncRequest`] in the shard's sync lane, which holds at most one
//! queued request per open. A `start_sync` while one is queued joins it:
//! that sync has not started, so it covers every write completed before
//! this call.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_lite::{stream, Stream};

use shardblob_shards::blob::check_write_buf_len;
use shardblob_shards::{Blob, Error, Result, Storage, WriteOptions};

use crate::message::{answer, reply, BlobId, Reply, Request};
use crate::routing::shard_of;
use crate::transport::{Charge, Router, Transport};

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
        let (open, len, version) = call(&self.transport, shard, |reply| Request::Open {
            partition: partition.to_string(),
            name: name.to_vec(),
            versions,
            reply,
        })
        .await?;
        debug_assert_eq!(open.shard, shard, "the owning shard answers an open");
        let blob = RemoteBlob {
            transport: self.transport.clone(),
            open,
            key: Arc::new((partition.to_string(), name.to_vec())),
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

/// One remote open, shared by its handles and by a queued sync of it.
pub type OpenGuard = Arc<CloseOnDrop>;

/// A remote open: sends its one close notice when the last clone drops,
/// and keeps the waiters of its queued sync.
pub struct CloseOnDrop {
    router: Arc<Router>,
    shard: usize,
    id: BlobId,
    /// `Some` exactly while one [`SyncRequest`] of this open waits in the
    /// shard's sync lane: the callers of every `start_sync` it answers.
    queued_sync: Mutex<Option<SyncWaiters>>,
}

/// The callers of a queued sync: the replies still awaited, and how many
/// callers left before it started (their replies were pruned; the owning
/// shard counts each as a cancelled sync, as it counts a direct one).
#[derive(Default)]
pub struct SyncWaiters {
    /// The replies of the callers still waiting (some may close meanwhile).
    pub waiting: Vec<Reply<()>>,
    /// Callers that left while the sync was queued.
    pub left: usize,
}

impl CloseOnDrop {
    /// The guard of blob `id` opened on `shard`; built by that shard.
    pub(crate) fn new(router: Arc<Router>, shard: usize, id: BlobId) -> OpenGuard {
        Arc::new(CloseOnDrop {
            router,
            shard,
            id,
            queued_sync: Mutex::new(None),
        })
    }

    fn queued_sync(&self) -> MutexGuard<'_, Option<SyncWaiters>> {
        self.queued_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a sync of this open, answered on `reply`, without waiting:
    /// joins the queued sync if there is one, else queues one.
    fn queue_sync(self: &Arc<Self>, reply: Reply<()>) {
        let mut queued = self.queued_sync();
        match queued.as_mut() {
            Some(waiters) => {
                // Dropped futures leave closed replies: the list holds only
                // the waiters still alive, plus this one; the others count.
                let before = waiters.waiting.len();
                waiters.waiting.retain(|waiter| !waiter.is_closed());
                waiters.left += before - waiters.waiting.len();
                waiters.waiting.push(reply);
            }
            None => {
                *queued = Some(SyncWaiters {
                    waiting: vec![reply],
                    left: 0,
                });
                let request = SyncRequest {
                    open: self.clone(),
                    started: false,
                };
                let pushed = self.router.gauges[self.shard].syncs.try_push();
                match self.router.syncs[self.shard].try_send(request) {
                    Ok(()) => pushed.sent(),
                    Err(unsent) => {
                        // The shard stopped: the unsent request's drop takes
                        // the waiter back, which then sees `Shutdown`.
                        drop(queued);
                        drop(unsent);
                    }
                }
            }
        }
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // A stopped shard has let go of every blob already.
        let _ = self.router.closes[self.shard].try_send(self.id);
    }
}

/// A started sync of a remote open, waiting in its shard's sync lane. It
/// keeps the open alive until the sync is done; dropped unserved (the shard
/// stopped), it answers its waiters `Shutdown`.
pub struct SyncRequest {
    open: OpenGuard,
    started: bool,
}

impl SyncRequest {
    /// The blob to sync.
    pub fn blob(&self) -> BlobId {
        self.open.id
    }

    /// The sync begins: takes its waiters. A `start_sync` from now on queues
    /// a new request, since this sync may miss writes that complete later.
    pub fn start(&mut self) -> SyncWaiters {
        assert!(!self.started, "a sync request starts once");
        self.started = true;
        let waiters = self.open.queued_sync().take();
        debug_assert!(waiters.is_some(), "a queued sync request has waiters");
        waiters.unwrap_or_default()
    }
}

impl Drop for SyncRequest {
    fn drop(&mut self) {
        if !self.started {
            drop(self.open.queued_sync().take());
        }
    }
}

/// A handle to a blob owned by another shard.
#[derive(Clone)]
pub struct RemoteBlob<T: Transport> {
    transport: T,
    open: OpenGuard,
    /// The blob's partition and name, for the errors found on this side.
    key: Arc<(String, Vec<u8>)>,
}

/// Where a `read_many` stream is. Once sent, it keeps the request's budget
/// charge when the shard hands it back (`Items::_charge`): the bytes the shard sent
/// count until the stream has read them, ended or been dropped.
enum Batch<T> {
    Unsent {
        transport: T,
        shard: usize,
        request: Request,
        items: Items,
    },
    Receiving(Items),
    Done,
}

/// The receiving side of a sent `read_many`.
struct Items {
    items: async_channel::Receiver<Item>,
    /// Holds the charge the shard hands back; never read, only dropped.
    _charge: async_channel::Receiver<Charge>,
    remaining: usize,
}

type Item = Result<(usize, Vec<u8>)>;

async fn next_item<T>(mut batch: Items) -> Option<(Item, Batch<T>)> {
    if batch.remaining == 0 {
        return None;
    }
    match batch.items.recv().await {
        Ok(Ok(item)) => {
            batch.remaining -= 1;
            Some((Ok(item), Batch::Receiving(batch)))
        }
        Ok(Err(e)) => Some((Err(e), Batch::Done)),
        // The shard stopped before answering every range.
        Err(_) => Some((Err(Error::Shutdown), Batch::Done)),
    }
}

impl<T: Transport> Blob for RemoteBlob<T> {
    type Buf = Vec<u8>;
    type WriteBuf = Vec<u8>;

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        call(&self.transport, self.open.shard, |reply| Request::Read {
            blob: self.open.id,
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
        let (charge_back, charge) = async_channel::bounded(1);
        let start = Batch::Unsent {
            transport: self.transport.clone(),
            shard: self.open.shard,
            request: Request::ReadMany {
                blob: self.open.id,
                ranges,
                items: tx,
                charge_back,
            },
            items: Items {
                items,
                _charge: charge,
                remaining,
            },
        };
        stream::unfold(start, |batch| async move {
            match batch {
                Batch::Unsent {
                    transport,
                    shard,
                    request,
                    items,
                } => match transport.send(shard, request).await {
                    Ok(()) => next_item(items).await,
                    Err(e) => Some((Err(e), Batch::Done)),
                },
                Batch::Receiving(items) => next_item(items).await,
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
        self.write_buf_at(offset, data, options).await.map(drop)
    }

    /// Plain memory: it moves to the owning shard, which copies it once
    /// into its I/O memory, and comes back with the reply.
    fn alloc_buf(&self, len: usize) -> Result<Vec<u8>> {
        let (partition, name) = &*self.key;
        check_write_buf_len(partition, name, len)?;
        Ok(vec![0; len])
    }

    async fn write_buf_at(
        &self,
        offset: u64,
        data: Vec<u8>,
        options: WriteOptions,
    ) -> Result<Vec<u8>> {
        call(&self.transport, self.open.shard, |reply| Request::Write {
            blob: self.open.id,
            offset,
            data,
            options,
            reply,
        })
        .await
    }

    async fn resize(&self, len: u64) -> Result<()> {
        call(&self.transport, self.open.shard, |reply| Request::Resize {
            blob: self.open.id,
            len,
            reply,
        })
        .await
    }

    /// A sync is a started sync awaited: its request in the sync lane holds
    /// the open, so a sync whose caller left and dropped the handle still
    /// flushes before the shard lets the blob go.
    async fn sync(&self) -> Result<()> {
        self.start_sync().await
    }

    fn start_sync(&self) -> impl std::future::Future<Output = Result<()>> {
        let (tx, rx) = reply();
        self.open.queue_sync(tx);
        answer(rx)
    }
}
