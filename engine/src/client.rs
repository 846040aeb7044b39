//! [`Client`]: the engine from any thread.
//!
//! A `Send + Sync` handle that reaches every shard the same way: a bounded
//! queue into the owning shard and a one-shot reply back. Use it from the
//! main thread, a plain std thread or a tokio task; its futures are `Send`
//! and run on any executor (or `futures_lite::future::block_on`).

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;

use shardblob_shards::{Error, Result, Storage};

use crate::local::ShardStorage;
use crate::message::{answer, reply, Request, Spawn};
use crate::remote::{RemoteBlob, RemoteStorage};
use crate::routing::shard_of;
use crate::transport::{Foreign, Router};

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
    /// calls from it. A shard index out of range is an error.
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
        let (tx, rx) = reply();
        let job: Spawn = Box::new(move |storage| {
            Box::pin(async move {
                let output = task(storage).await;
                let _ = tx.send(Ok(output));
            })
        });
        let queue = self.router().requests.get(shard).cloned();
        let shard_count = self.shard_count();
        async move {
            let queue = queue.ok_or_else(|| {
                Error::Startup(format!(
                    "spawn_on: shard {shard} does not exist (the engine has {shard_count})"
                ))
            })?;
            queue
                .send_async(Request::Spawn(job))
                .await
                .map_err(|_| Error::Shutdown)?;
            answer(rx).await
        }
    }

    /// Runs `task` on every shard and returns the outputs in shard order.
    pub async fn on_all_shards<F, Fut, T>(&self, task: F) -> Result<Vec<T>>
    where
        F: Fn(ShardStorage) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let runs: Vec<_> = (0..self.shard_count())
            .map(|shard| self.spawn_on(shard, task.clone()))
            .collect();
        let mut outputs = Vec::with_capacity(runs.len());
        for run in runs {
            outputs.push(run.await?);
        }
        Ok(outputs)
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
