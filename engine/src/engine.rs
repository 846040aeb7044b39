//! [`Engine`]: starting and stopping the shards.
//!
//! Startup is two-phase so that a shard that cannot start fails the whole
//! start with its reason instead of leaving the others waiting: each shard
//! thread builds its pinned executor and its store, reports, and only when
//! every shard reported success do they connect their peer channels and
//! serve. Shutdown stops the queues, waits for in-flight requests, closes the
//! files and joins the threads; the LOCK goes with the last shard.

use std::sync::Arc;
use std::thread::JoinHandle;

use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::{DataDir, Error, Result, ShardStore};

use crate::client::Client;
use crate::config::{Config, ResolvedConfig};
use crate::message::Request;
use crate::routing::shard_of;
use crate::shard::{self, ShardParts};
use crate::transport::Router;

/// A running engine: one pinned glommio executor per shard.
pub struct Engine {
    router: Arc<Router>,
    shards: Vec<ShardThread>,
}

struct ShardThread {
    stop: async_channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// The channels one shard thread starts with.
struct Wiring {
    index: usize,
    cpu: usize,
    router: Arc<Router>,
    to_peers: Vec<Option<SharedSender<Request>>>,
    from_peers: Vec<SharedReceiver<Request>>,
    foreign_requests: async_channel::Receiver<Request>,
    closes: async_channel::Receiver<u64>,
    ready: async_channel::Sender<Result<()>>,
    go: async_channel::Receiver<bool>,
    stop: async_channel::Receiver<()>,
}

impl Engine {
    /// Starts the shards of `config`; see [`Config`] for every field.
    pub fn start(config: Config) -> Result<Engine> {
        let resolved = config.validate()?;
        resolved.preflight()?;
        let data_dir = DataDir::lock(&resolved.config.data_dir)?;
        let shard_count = resolved.shard_cpus.len();
        let capacity = resolved.config.channel_capacity;

        let (request_tx, request_rx): (Vec<_>, Vec<_>) = (0..shard_count)
            .map(|_| async_channel::bounded(capacity))
            .unzip();
        let (close_tx, close_rx): (Vec<_>, Vec<_>) =
            (0..shard_count).map(|_| async_channel::unbounded()).unzip();
        let router = Arc::new(Router {
            requests: request_tx,
            closes: close_tx,
        });

        // One single-producer channel per ordered pair of shards.
        let mut to_peers: Vec<Vec<Option<SharedSender<Request>>>> = (0..shard_count)
            .map(|_| (0..shard_count).map(|_| None).collect())
            .collect();
        let mut from_peers: Vec<Vec<SharedReceiver<Request>>> =
            (0..shard_count).map(|_| Vec::new()).collect();
        for (from, senders) in to_peers.iter_mut().enumerate() {
            for (to, sender) in senders.iter_mut().enumerate() {
                if from != to {
                    let (tx, rx) = shared_channel::new_bounded(capacity);
                    *sender = Some(tx);
                    from_peers[to].push(rx);
                }
            }
        }

        let (ready_tx, ready_rx) = async_channel::bounded(shard_count);
        let mut shards = Vec::with_capacity(shard_count);
        let mut gos = Vec::with_capacity(shard_count);
        let wirings = to_peers
            .into_iter()
            .zip(from_peers)
            .zip(request_rx)
            .zip(close_rx);
        for (index, (((to_peers, from_peers), foreign_requests), closes)) in wirings.enumerate() {
            let (go_tx, go_rx) = async_channel::bounded(1);
            let (stop_tx, stop_rx) = async_channel::bounded(1);
            let wiring = Wiring {
                index,
                cpu: resolved.shard_cpus[index],
                router: router.clone(),
                to_peers,
                from_peers,
                foreign_requests,
                closes,
                ready: ready_tx.clone(),
                go: go_rx,
                stop: stop_rx,
            };
            let builder = executor_builder(&resolved, wiring.cpu, index);
            let data_dir = data_dir.clone();
            let limits = ShardLimits {
                inflight_max: resolved.config.inflight_per_shard_max,
                spin_before_park: resolved.config.spin_before_park(),
                sync_inline_when_idle: resolved.config.sync_inline_when_idle,
            };
            let thread = std::thread::Builder::new()
                .name(format!("shardblob-{index}"))
                .spawn(move || run_shard_thread(builder, wiring, data_dir, limits))
                .map_err(|e| Error::Startup(format!("cannot spawn shard thread {index}: {e}")))?;
            gos.push(go_tx);
            shards.push(ShardThread {
                stop: stop_tx,
                thread: Some(thread),
            });
        }
        drop(data_dir);

        let mut first_error = None;
        for _ in 0..shard_count {
            match ready_rx.recv_blocking() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error
                        .get_or_insert(Error::Startup("a shard thread died at startup".into()));
                }
            }
        }
        let go = first_error.is_none();
        for tx in &gos {
            let _ = tx.send_blocking(go);
        }
        let mut engine = Engine { router, shards };
        match first_error {
            None => Ok(engine),
            Some(e) => {
                let _ = engine.stop_all();
                Err(e)
            }
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.router.shard_count()
    }

    /// The shard that owns `partition`.
    pub fn shard_of(&self, partition: &str) -> usize {
        shard_of(partition, self.shard_count())
    }

    /// A thread-safe handle to this engine.
    pub fn client(&self) -> Client {
        Client::new(self.router.clone())
    }

    /// Stops every shard after its in-flight requests and releases the LOCK.
    /// Fails if a shard thread had died (a panic in the engine itself).
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<()> {
        for shard in &self.shards {
            let _ = shard.stop.try_send(());
        }
        let mut died = Vec::new();
        for (index, shard) in self.shards.iter_mut().enumerate() {
            if let Some(thread) = shard.thread.take() {
                if thread.join().is_err() {
                    died.push(index);
                }
            }
        }
        if died.is_empty() {
            Ok(())
        } else {
            Err(Error::Startup(format!(
                "shard threads {died:?} had died of a panic"
            )))
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}

fn executor_builder(resolved: &ResolvedConfig, cpu: usize, index: usize) -> LocalExecutorBuilder {
    let config = &resolved.config;
    // The blocking pool (fdatasync, truncate) is not pinned: it runs beside
    // the shard instead of queueing behind its spinning executor.
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .name(&format!("shardblob-{index}"))
        .io_memory(config.io_memory_bytes)
        .ring_depth(config.ring_depth);
    if let Some(spin) = config.spin_before_park() {
        builder = builder.spin_before_park(spin);
    }
    builder
}

/// The configuration a shard's serving code needs.
struct ShardLimits {
    inflight_max: usize,
    spin_before_park: Option<std::time::Duration>,
    sync_inline_when_idle: bool,
}

/// The body of one shard thread: build, report, wait for go, serve.
fn run_shard_thread(
    builder: LocalExecutorBuilder,
    wiring: Wiring,
    data_dir: Arc<DataDir>,
    limits: ShardLimits,
) {
    let executor = match builder.make() {
        Ok(executor) => executor,
        Err(e) => {
            let _ = wiring.ready.try_send(Err(Error::Startup(format!(
                "shard {} cannot start its executor on CPU {}: {e} (is io_uring enabled? is `ulimit -l` large enough?)",
                wiring.index, wiring.cpu
            ))));
            return;
        }
    };
    executor.run(async move {
        let root = data_dir.path().to_path_buf();
        let fs = match DmaFs::new(data_dir).await {
            Ok(fs) => fs.sync_inline_when_idle(limits.sync_inline_when_idle),
            Err(e) => {
                let _ = wiring.ready.try_send(Err(Error::DataDir {
                    dir: root,
                    reason: format!("shard {} cannot open its first DMA file: {e}", wiring.index),
                }));
                return;
            }
        };
        let store = ShardStore::new(fs, root);
        let _ = wiring.ready.try_send(Ok(()));
        if !matches!(wiring.go.recv().await, Ok(true)) {
            return;
        }
        let connecting = wiring.to_peers.into_iter().map(|tx| async move {
            match tx {
                Some(tx) => Some(tx.connect().await),
                None => None,
            }
        });
        let receiving = wiring.from_peers.into_iter().map(|rx| rx.connect());
        let (peers, peer_requests) =
            futures_lite::future::zip(join_all(connecting), join_all(receiving)).await;
        let parts = ShardParts {
            index: wiring.index,
            router: wiring.router,
            store,
            peers,
            peer_requests,
            foreign_requests: wiring.foreign_requests,
            closes: wiring.closes,
            inflight_max: limits.inflight_max,
            spin_before_park: limits.spin_before_park,
        };
        shard::run(parts, wiring.stop).await;
    });
}

/// Awaits every future concurrently (connections wait for their peer).
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let tasks: Vec<_> = futures.map(glommio::spawn_local).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await);
    }
    outputs
}
