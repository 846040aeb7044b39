//! How a request reaches its shard.
//!
//! Two transports, one per kind of caller:
//! - [`Foreign`]: any thread outside the engine (main thread, a tokio
//!   worker). Bounded MPMC queues (async-channel) into each shard; the handle is
//!   `Send + Sync` and its futures are `Send`.
//! - [`Peer`]: another shard. glommio's lock-free single-producer shared
//!   channels, one per ordered pair of shards, connected at startup.
//!
//! Both are bounded: a full queue makes the sender wait. Replies come back
//! on a per-request one-shot channel whose waker wakes the caller's thread.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardblob_shards::{Error, Result};

use crate::message::{answer, BlobId, Request};
use crate::shard::ShardContext;

/// The shared, thread-safe part of the router.
pub struct Router {
    /// Foreign-thread request queues, one per shard (bounded).
    pub requests: Vec<async_channel::Sender<Request>>,
    /// Close notices of remote blob handles, one queue per shard. Unbounded
    /// in type, bounded in fact: each remote open sends exactly one notice,
    /// so a queue never holds more than the remote opens of its shard.
    pub closes: Vec<async_channel::Sender<BlobId>>,
}

impl Router {
    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.requests.len()
    }
}

/// A way to deliver requests to shards.
#[allow(async_fn_in_trait)]
pub trait Transport: Clone + 'static {
    /// The router (shard count, close queues).
    fn router(&self) -> &Arc<Router>;

    /// Delivers `request` to `shard`, waiting while its queue is full.
    async fn send(&self, shard: usize, request: Request) -> Result<()>;

    /// Delivers `request` without the caller awaiting it: used by
    /// `start_sync`, whose sync must go on even if its future is dropped.
    fn send_detached(&self, shard: usize, request: Request);

    /// Awaits the reply to a request this transport delivered.
    async fn reply<R>(&self, rx: async_channel::Receiver<Result<R>>) -> Result<R> {
        answer(rx).await
    }
}

/// How long a shard keeps its executor awake for a peer's reply before it
/// lets it park. A reply usually takes one device I/O; an executor parked
/// by then costs a wake-up (eventfd, membarrier, reschedule) of tens of
/// microseconds per hop on top of it. An awake executor sees the reply's
/// wake-up on its next spin iteration.
const PEER_REPLY_AWAKE: Duration = Duration::from_micros(500);

/// Keeps the calling executor from parking for `PEER_REPLY_AWAKE`, then
/// never completes. glommio parks after `spin` without a task to run, so a
/// timer wakes a task just before that, each time.
async fn stay_awake<T>(spin: Option<Duration>) -> T {
    if let Some(spin) = spin {
        let step = spin / 2;
        let until = Instant::now() + PEER_REPLY_AWAKE;
        while Instant::now() < until {
            glommio::timer::sleep(step).await;
        }
    }
    std::future::pending().await
}

/// The transport of threads outside the engine.
#[derive(Clone)]
pub struct Foreign {
    pub(crate) router: Arc<Router>,
}

impl Transport for Foreign {
    fn router(&self) -> &Arc<Router> {
        &self.router
    }

    async fn send(&self, shard: usize, request: Request) -> Result<()> {
        self.router.requests[shard]
            .send(request)
            .await
            .map_err(|_| Error::Shutdown)
    }

    fn send_detached(&self, shard: usize, request: Request) {
        // No executor to park a task on: block this thread while the
        // shard's queue is full. A send to a stopped shard drops the request
        // and its reply, which the caller then sees as `Shutdown`.
        let _ = self.router.requests[shard].send_blocking(request);
    }
}

/// The transport of one shard to the others.
#[derive(Clone)]
pub struct Peer {
    pub(crate) context: Rc<ShardContext>,
}

impl Transport for Peer {
    fn router(&self) -> &Arc<Router> {
        &self.context.router
    }

    async fn send(&self, shard: usize, request: Request) -> Result<()> {
        self.context.send_to_peer(shard, request).await
    }

    fn send_detached(&self, shard: usize, request: Request) {
        let peer = self.clone();
        glommio::spawn_local(async move { peer.send(shard, request).await }).detach();
    }

    async fn reply<R>(&self, rx: async_channel::Receiver<Result<R>>) -> Result<R> {
        futures_lite::future::or(answer(rx), stay_awake(self.context.spin_before_park)).await
    }
}
