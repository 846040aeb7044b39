//! [`Client`]: the engine from any thread.
//!
//! A `Send + Sync` handle that reaches every shard the same way: a bounded
//! queue into the owning shard and a one-shot reply back. Use it from the
//! main thread, a plain std thread or a tokio task; its futures are `Send`
//! and run on any executor (or `futures_lite::future::block_on`).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use shardblob_shards::{Error, IoClass, Result, Storage};

use crate::local::ShardStorage;
use crate::message::{answer, reply, Request, Spawn};
use crate::remote::{RemoteBlob, RemoteStorage};
use crate::routing::shard_of;
use crate::stats::EngineStats;
use crate::transport::{Foreign, Router, TrySendError};

/// A thread-safe handle to a running engine. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    storage: RemoteStorage<Foreign>,
}

/// A blob handle usable from any thread.
pub type ClientBlob = RemoteBlob<Foreign>;

impl Client {
    pub(crate) fn new(router: Arc<Router>) -> Client {
        Client {
            storage: RemoteStorage {
                transport: Foreign { router },
            },
        }
    }

    fn router(&self) -> &Arc<Router> {
        &self.storage.transport.router
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.router().shard_count()
    }

    /// The shard that owns `partition`.
    pub fn shard_of(&self, partition: &str) -> usize {
        shard_of(partition, self.shard_count())
    }

    /// Runs `task` on shard `shard` and returns its output. The task gets
    /// that shard's [`ShardStorage`]: partitions the shard owns are direct
    /// calls from it. The task is queued at once when the shard's queue and
    /// byte budget have room (else when the future is first polled) and runs
    /// whether or not the future is awaited. A panic in the task, in its
    /// future or in the closure that builds it, comes back as
    /// [`Error::TaskPanicked`]; the shard goes on. A shard the engine does
    /// not have gives [`Error::NoSuchShard`].
    ///
    /// The future always resolves: to the task's output, or to
    /// [`Error::Shutdown`] when the engine stopped first (the task was still
    /// queued, or still ran when `Engine::shutdown`'s grace period ended and
    /// it was cancelled). A running task holds none of the shard's in-flight
    /// permits: a task that runs for ever (a server's accept loop) does not
    /// starve the forwarded requests of the shard.
    pub fn spawn_on<F, Fut, T>(
        &self,
        shard: usize,
        task: F,
    ) -> impl Future<Output = Result<T>> + Send + 'static
    where
        F: FnOnce(ShardStorage) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (queued, rx) = self.submit(shard, task);
        async move {
            queued?.finish().await?;
            answer(rx).await
        }
    }

    /// Runs `task` on every shard at once and returns the outputs in shard
    /// order.
    pub async fn on_all_shards<F, Fut, T>(&self, task: F) -> Result<Vec<T>>
    where
        F: Fn(ShardStorage) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let submitted: Vec<_> = (0..self.shard_count())
            .map(|shard| self.submit(shard, task.clone()))
            .collect();
        // Every task is queued before the first answer is awaited.
        let mut answers = Vec::with_capacity(submitted.len());
        for (queued, rx) in submitted {
            queued?.finish().await?;
            answers.push(rx);
        }
        let mut outputs = Vec::with_capacity(answers.len());
        for rx in answers {
            outputs.push(answer(rx).await?);
        }
        Ok(outputs)
    }

    /// Every shard's statistics ([`crate::stats`]), gathered by a task on
    /// each shard as [`Client::on_all_shards`] runs them. Dropping the
    /// future leaves nothing held: a shard's answer goes to a reply nobody
    /// reads. [`Error::Shutdown`] once the engine stops.
    pub async fn stats(&self) -> Result<EngineStats> {
        let shards = self.on_all_shards(|storage| async move { storage.stats() });
        Ok(EngineStats {
            shards: shards.await?,
        })
    }

    /// Wraps `task` as a job for `shard` and queues it if there is room.
    fn submit<F, Fut, T>(
        &self,
        shard: usize,
        task: F,
    ) -> (Result<Queued>, async_channel::Receiver<Result<T>>)
    where
        F: FnOnce(ShardStorage) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = reply();
        let job: Spawn = Box::new(move |storage| {
            Box::pin(async move {
                let shard = storage.shard();
                // The closure runs inside the unwind guard too: a panic
                // before its future exists must not unwind the executor.
                let run = AssertUnwindSafe(async move { task(storage).await })
                    .catch_unwind()
                    .await;
                let output = run.map_err(|panic| Error::TaskPanicked {
                    shard,
                    message: panic_message(panic.as_ref()),
                });
                let _ = tx.try_send(output);
            })
        });
        if shard >= self.shard_count() {
            let missing = Error::NoSuchShard {
                shard,
                shards: self.shard_count(),
            };
            return (Err(missing), rx);
        }
        let foreign = &self.storage.transport;
        // Queued now or later, in the class of the call.
        let class = IoClass::current();
        let queued = match foreign.try_send(shard, Request::Spawn(job), class) {
            Ok(()) => Ok(Queued::Done),
            Err(TrySendError::Busy(request)) => {
                Ok(Queued::Waiting(foreign.clone(), shard, request, class))
            }
            Err(TrySendError::Shutdown) => Err(Error::Shutdown),
        };
        (queued, rx)
    }
}

/// A job that is queued, or waits for room in its shard's queue or budget.
enum Queued {
    Done,
    Waiting(Foreign, usize, Request, IoClass),
}

impl Queued {
    async fn finish(self) -> Result<()> {
        match self {
            Queued::Done => Ok(()),
            Queued::Waiting(foreign, shard, request, class) => {
                foreign.send_as(shard, request, class).await
            }
        }
    }
}

/// The message of a panic payload, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

impl Storage for Client {
    type Blob = ClientBlob;

    async fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> Result<(ClientBlob, u64, u16)> {
        self.storage.open_versioned(partition, name, versions).await
    }

    async fn remove(&self, partition: &str, name: Option<&[u8]>) -> Result<()> {
        self.storage.remove(partition, name).await
    }

    async fn scan(&self, partition: &str) -> Result<Vec<Vec<u8>>> {
        self.storage.scan(partition).await
    }
}
