//! One shard at run time: its store, its queues, and the loop that serves
//! requests forwarded by other shards and foreign threads.
//!
//! Each inbound queue has a receive loop. A loop takes a permit from the
//! shard's in-flight bound before it takes a request, so at most
//! `inflight_per_shard_max` forwarded operations run at once; past that the
//! queues fill and senders wait. Every request runs as its own task, so a
//! slow operation never holds up the queue behind it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use glommio::sync::Semaphore;

use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::{Blob, Error, Result, ShardBlob, ShardStore, Storage};

use crate::local::ShardStorage;
use crate::message::{BlobId, Request};
use crate::transport::Router;

thread_local! {
    /// The shard this thread runs, if it is a shard thread.
    static CURRENT: RefCell<Option<Rc<ShardContext>>> = const { RefCell::new(None) };
}

/// The state of one running shard, shared by its tasks.
pub struct ShardContext {
    pub(crate) index: usize,
    pub(crate) router: Arc<Router>,
    pub(crate) store: ShardStore<DmaFs>,
    /// Senders to every other shard (`None` at this shard's own index).
    peers: Vec<Option<ConnectedSender<Request>>>,
    /// Blobs opened here on behalf of other threads.
    opened: RefCell<HashMap<BlobId, ShardBlob<DmaFs>>>,
    next_id: Cell<BlobId>,
    closes: async_channel::Receiver<BlobId>,
    inflight: Rc<Semaphore>,
    inflight_max: u64,
    /// The executor's `spin_before_park`: how long it stays awake idle.
    pub(crate) spin_before_park: Option<Duration>,
}

/// What a shard needs to run, built by the engine.
pub struct ShardParts {
    pub index: usize,
    pub router: Arc<Router>,
    pub store: ShardStore<DmaFs>,
    pub peers: Vec<Option<ConnectedSender<Request>>>,
    pub peer_requests: Vec<ConnectedReceiver<Request>>,
    pub foreign_requests: async_channel::Receiver<Request>,
    pub closes: async_channel::Receiver<BlobId>,
    pub inflight_max: usize,
    pub spin_before_park: Option<Duration>,
}

impl ShardContext {
    /// The shard running on this thread, if any.
    pub fn current() -> Option<Rc<ShardContext>> {
        CURRENT.with(|current| current.borrow().clone())
    }

    pub(crate) async fn send_to_peer(&self, shard: usize, request: Request) -> Result<()> {
        let sender = self.peers[shard]
            .as_ref()
            .expect("a shard forwards only to other shards");
        sender.send(request).await.map_err(|_| Error::Shutdown)
    }

    /// Lets go of the blobs whose remote handles were all dropped.
    pub(crate) fn drain_closes(&self) {
        while let Ok(id) = self.closes.try_recv() {
            self.opened.borrow_mut().remove(&id);
        }
    }

    fn blob(&self, id: BlobId) -> Result<ShardBlob<DmaFs>> {
        self.opened
            .borrow()
            .get(&id)
            .cloned()
            .ok_or(Error::Shutdown)
    }

    /// Serves one forwarded request. The blob clone is dropped before the
    /// reply goes out, so a caller that drops its handle on the reply and
    /// reopens never finds the old open still alive.
    async fn handle(self: &Rc<Self>, request: Request) {
        match request {
            Request::Open {
                partition,
                name,
                versions,
                reply,
            } => {
                self.drain_closes();
                let opened = self.store.open_versioned(&partition, &name, versions).await;
                let result = opened.map(|(blob, len, version)| {
                    let id = self.next_id.get();
                    self.next_id.set(id + 1);
                    self.opened.borrow_mut().insert(id, blob);
                    (id, len, version)
                });
                let _ = reply.try_send(result);
            }
            Request::Remove {
                partition,
                name,
                reply,
            } => {
                let _ = reply.try_send(self.store.remove(&partition, name.as_deref()).await);
            }
            Request::Scan { partition, reply } => {
                let _ = reply.try_send(self.store.scan(&partition).await);
            }
            Request::Read {
                blob,
                offset,
                len,
                reply,
            } => {
                let result = match self.blob(blob) {
                    Ok(blob) => blob.read_at(offset, len).await.map(|bytes| bytes.to_vec()),
                    Err(e) => Err(e),
                };
                let _ = reply.try_send(result);
            }
            Request::ReadMany {
                blob,
                ranges,
                items,
            } => match self.blob(blob) {
                Ok(blob) => {
                    let mut results = std::pin::pin!(blob.read_many(ranges));
                    while let Some(item) = results.next().await {
                        let item = item.map(|(index, bytes)| (index, bytes.to_vec()));
                        let failed = item.is_err();
                        if items.try_send(item).is_err() || failed {
                            break;
                        }
                    }
                }
                Err(e) => {
                    let _ = items.try_send(Err(e));
                }
            },
            Request::Write {
                blob,
                offset,
                data,
                options,
                reply,
            } => {
                let result = match self.blob(blob) {
                    Ok(blob) => blob.write_vectored_at(offset, &[&data], options).await,
                    Err(e) => Err(e),
                };
                let _ = reply.try_send(result);
            }
            Request::Resize { blob, len, reply } => {
                let result = match self.blob(blob) {
                    Ok(blob) => blob.resize(len).await,
                    Err(e) => Err(e),
                };
                let _ = reply.try_send(result);
            }
            Request::Sync { blob, reply, hold } => {
                let result = match self.blob(blob) {
                    Ok(blob) => blob.sync().await,
                    Err(e) => Err(e),
                };
                drop(hold);
                let _ = reply.try_send(result);
            }
            Request::Spawn(job) => {
                glommio::spawn_local(job(ShardStorage::new(self.clone()))).detach();
            }
        }
    }

    /// Takes requests from one queue until it closes or the shard stops.
    async fn serve<S: futures_lite::Stream<Item = Request> + Unpin>(self: Rc<Self>, mut queue: S) {
        loop {
            let Ok(permit) = self.inflight.clone().acquire_static_permit(1).await else {
                return;
            };
            let Some(request) = queue.next().await else {
                return;
            };
            let shard = self.clone();
            glommio::spawn_local(async move {
                shard.handle(request).await;
                drop(permit);
            })
            .detach();
        }
    }
}

/// Runs a shard until `stop` fires, then waits for its in-flight requests.
pub async fn run(parts: ShardParts, stop: async_channel::Receiver<()>) {
    let context = Rc::new(ShardContext {
        index: parts.index,
        router: parts.router,
        store: parts.store,
        peers: parts.peers,
        opened: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
        closes: parts.closes,
        inflight: Rc::new(Semaphore::new(parts.inflight_max as u64)),
        inflight_max: parts.inflight_max as u64,
        spin_before_park: parts.spin_before_park,
    });
    CURRENT.with(|current| *current.borrow_mut() = Some(context.clone()));

    let mut loops = Vec::new();
    for queue in parts.peer_requests {
        loops.push(glommio::spawn_local(context.clone().serve(queue)));
    }
    loops.push(glommio::spawn_local(
        context.clone().serve(Box::pin(parts.foreign_requests)),
    ));
    let closer = context.clone();
    loops.push(glommio::spawn_local(async move {
        while let Ok(id) = closer.closes.recv().await {
            closer.opened.borrow_mut().remove(&id);
        }
    }));

    let _ = stop.recv().await;
    for task in loops {
        task.cancel().await;
    }
    // Every permit back means no forwarded request is still running.
    let _ = context.inflight.acquire(context.inflight_max).await;
    context.opened.borrow_mut().clear();
    // Dropped DmaFiles close asynchronously, on the next reactor poll: a
    // timer forces one before the executor ends, else their fds leak.
    glommio::timer::sleep(Duration::from_millis(1)).await;
    CURRENT.with(|current| current.borrow_mut().take());
}
