//! [`Engine`]: starting and stopping the shards.
//!
//! Startup is two-phase so that a shard that cannot start fails the whole
//! start with its reason instead of leaving the others waiting: each shard
//! thread builds its pinned executor and its store, reports, and only when
//! every shard reported success do they connect their peer channels and
//! serve. Each shard reports on a channel of its own, so a shard thread
//! that dies before it reports (a panic) closes that channel and the start
//! fails naming it, instead of waiting for a report that never comes.
//!
//! Shutdown is two-phase too, so that running `spawn_on` tasks can finish
//! while their shards still serve each other: first every shard refuses
//! foreign requests (dropping those still queued, whose callers get
//! `Shutdown`) and waits up to the grace period for its tasks; then every
//! shard cancels what still runs, waits for in-flight requests, closes the
//! files and ends; the LOCK goes with the last shard.

use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

use shardblob_shards::fs::any::AnyFs;
use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::fs::sim::SimFs;
use shardblob_shards::sched::{IoScheduler, SchedConfig};
use shardblob_shards::{DataDir, Error, Result, ShardStore};

use crate::client::Client;
use crate::config::{Config, ResolvedConfig};
use crate::message::{BlobId, Envelope};
use crate::per_class::PerClass;
use crate::remote::SyncRequest;
use crate::routing::shard_of;
use crate::shard::{self, ConnectedPeerReceivers, ConnectedPeerSenders, Control, ShardParts};
use crate::stats::EngineStats;
use crate::transport::Router;

/// A running engine: one pinned glommio executor per shard.
pub struct Engine {
    pub(crate) router: Arc<Router>,
    shards: Vec<ShardThread>,
    shutdown_grace: Duration,
}

struct ShardThread {
    control: async_channel::Sender<Control>,
    /// The shard's answer to `Control::Quiesce`: how many tasks still run.
    /// Closed when the shard thread ends without answering.
    report: async_channel::Receiver<usize>,
    thread: Option<JoinHandle<()>>,
}

/// The channels one shard thread starts with.
struct Wiring {
    index: usize,
    cpu: usize,
    router: Arc<Router>,
    queues: ShardQueues,
    ready: async_channel::Sender<Result<()>>,
    go: async_channel::Receiver<bool>,
    control: async_channel::Receiver<Control>,
    report: async_channel::Sender<usize>,
}

/// The queues of one shard, before its thread starts.
struct ShardQueues {
    to_peers: PeerSenders,
    from_peers: PeerReceivers,
    foreign_requests: PerClass<async_channel::Receiver<Envelope>>,
    syncs: async_channel::Receiver<SyncRequest>,
    closes: async_channel::Receiver<BlobId>,
}

/// What the shards store their blobs on.
#[derive(Clone)]
enum Disk {
    /// DMA files under the locked data directory (the LOCK goes with the
    /// last clone).
    Real(Arc<DataDir>),
    /// A simulated disk, shared by every shard.
    Simulated(SimFs),
}

impl Disk {
    /// This shard's scheduler with these bounds: on the real disk its
    /// pieces are cut to what the data directory's device takes; the
    /// simulated disk has no device, so its pieces are the configured ones
    /// on every host (a seed replays the same everywhere).
    fn scheduler(&self, shard: usize, config: &SchedConfig) -> Rc<IoScheduler> {
        match self {
            Disk::Real(data_dir) => {
                crate::io_scheduler::scheduler_for(config, shard, data_dir.path())
            }
            Disk::Simulated(_) => IoScheduler::new(config.for_device(None)),
        }
    }

    /// This shard's file system and the root of its store. On the real
    /// disk it must run on the shard's executor before any blob is made
    /// (`DmaFs::new`).
    async fn file_system(
        self,
        index: usize,
        sync_inline_when_idle: bool,
    ) -> Result<(AnyFs, std::path::PathBuf)> {
        match self {
            Disk::Real(data_dir) => {
                let root = data_dir.path().to_path_buf();
                match DmaFs::new(data_dir).await {
                    Ok(fs) => Ok((
                        AnyFs::Dma(fs.sync_inline_when_idle(sync_inline_when_idle)),
                        root,
                    )),
                    Err(e) => Err(Error::DataDir {
                        dir: root,
                        reason: format!("shard {index} cannot open its first DMA file"),
                        source: Some(e),
                    }),
                }
            }
            Disk::Simulated(fs) => Ok((AnyFs::Sim(fs), std::path::PathBuf::from("/"))),
        }
    }
}

/// A shard thread that has not been told to serve yet.
struct StartingShard {
    thread: ShardThread,
    /// Its one report: started, or why not. Closed if the thread died.
    ready: async_channel::Receiver<Result<()>>,
    go: async_channel::Sender<bool>,
}

/// Spawns the thread of shard `index`; it reports on its own channel.
fn spawn_shard(
    resolved: &ResolvedConfig,
    router: &Arc<Router>,
    disk: &Disk,
    index: usize,
    queues: ShardQueues,
) -> Result<StartingShard> {
    let (ready_tx, ready) = async_channel::bounded(1);
    let (go, go_rx) = async_channel::bounded(1);
    let (control, control_rx) = async_channel::bounded(2);
    let (report_tx, report) = async_channel::bounded(1);
    let wiring = Wiring {
        index,
        cpu: resolved.shard_cpus[index],
        router: router.clone(),
        queues,
        ready: ready_tx,
        go: go_rx,
        control: control_rx,
        report: report_tx,
    };
    let builder = executor_builder(resolved, wiring.cpu, index);
    let disk = disk.clone();
    let limits = ShardLimits::new(&resolved.config, index);
    let thread = std::thread::Builder::new()
        .name(format!("shardblob-{index}"))
        .spawn(move || run_shard_thread(builder, wiring, disk, limits))
        .map_err(|e| Error::ShardStart {
            shard: index,
            reason: format!("cannot spawn its thread: {e}"),
        })?;
    let thread = ShardThread {
        control,
        report,
        thread: Some(thread),
    };
    Ok(StartingShard { thread, ready, go })
}

/// The per-shard queues from threads outside a shard into it.
struct Inbound {
    requests: Vec<PerClass<async_channel::Receiver<Envelope>>>,
    syncs: Vec<async_channel::Receiver<SyncRequest>>,
    closes: Vec<async_channel::Receiver<BlobId>>,
}

/// Builds the router and the receiving ends of its queues.
fn route(config: &Config, shard_count: usize) -> (Arc<Router>, Inbound) {
    let (request_tx, requests): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| PerClass::new(|| async_channel::bounded(config.channel_capacity)).unzip())
        .unzip();
    let (sync_tx, syncs): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| async_channel::unbounded()).unzip();
    let (close_tx, closes): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| async_channel::unbounded()).unzip();
    let router = Router::new(
        request_tx,
        close_tx,
        sync_tx,
        config.queue_bytes_per_shard_max,
    );
    let inbound = Inbound {
        requests,
        syncs,
        closes,
    };
    (Arc::new(router), inbound)
}

/// The senders of one shard to each other shard (`None` at its own index).
type PeerSenders = Vec<Option<PerClass<SharedSender<Envelope>>>>;

/// The receivers of one shard from each other shard.
type PeerReceivers = Vec<PerClass<SharedReceiver<Envelope>>>;

/// One single-producer channel per ordered pair of shards and I/O class:
/// the senders of each shard and the receivers of each shard.
fn peer_channels(shard_count: usize, capacity: usize) -> (Vec<PeerSenders>, Vec<PeerReceivers>) {
    let mut to_peers: Vec<PeerSenders> = (0..shard_count)
        .map(|_| (0..shard_count).map(|_| None).collect())
        .collect();
    let mut from_peers: Vec<PeerReceivers> = (0..shard_count).map(|_| Vec::new()).collect();
    for (from, senders) in to_peers.iter_mut().enumerate() {
        for (to, sender) in senders.iter_mut().enumerate() {
            if from != to {
                let (tx, rx) = PerClass::new(|| shared_channel::new_bounded(capacity)).unzip();
                *sender = Some(tx);
                from_peers[to].push(rx);
            }
        }
    }
    (to_peers, from_peers)
}

impl Engine {
    /// Starts the shards of `config`; see [`Config`] for every field.
    pub fn start(config: Config) -> Result<Engine> {
        let resolved = config.validate()?;
        resolved.preflight()?;
        let data_dir = DataDir::lock(&resolved.config.data_dir)?;
        tracing::info!(data_dir = %data_dir.path().display(), "data directory locked");
        Engine::start_on(&resolved, Disk::Real(data_dir))
    }

    /// Starts the shards of `config` on a simulated disk: for tests and
    /// simulations, which can inject faults into it and crash it
    /// (`SimFs::set_faults`, `SimFs::crash`). Every shard gets a view of the
    /// same `disk`, so the router, the forwarding between shards and from
    /// foreign threads, and the shard stores are the production code; only
    /// the file calls land on the simulation. The store's root is the
    /// disk's root: `data_dir` is not used. What needs a real disk is
    /// skipped: the preflight (locked-memory limit, io_uring probe, the
    /// O_DIRECT probe, the tmpfs check and the creation of `data_dir`), the
    /// LOCK and its flock (nothing keeps two engines off one simulated
    /// disk: start the next one after the last one's shutdown), the
    /// deletion of leftover partition tombstones (never listed anyway), and
    /// the first DMA file of each shard. The placement and every other
    /// value of `config` apply as in [`Engine::start`]; the executors are
    /// real glommio executors.
    pub fn start_simulated(config: Config, disk: SimFs) -> Result<Engine> {
        let resolved = config.validate()?;
        tracing::info!("starting on a simulated disk");
        Engine::start_on(&resolved, Disk::Simulated(disk))
    }

    /// The two-phase start of the shards on `disk` (module docs).
    fn start_on(resolved: &ResolvedConfig, disk: Disk) -> Result<Engine> {
        let shard_count = resolved.shard_cpus.len();
        log_placement(resolved);
        let (router, inbound) = route(&resolved.config, shard_count);
        let (to_peers, from_peers) = peer_channels(shard_count, resolved.config.channel_capacity);

        let wirings = to_peers
            .into_iter()
            .zip(from_peers)
            .zip(inbound.requests)
            .zip(inbound.syncs)
            .zip(inbound.closes);
        let mut starting = Vec::with_capacity(shard_count);
        for (index, ((((to_peers, from_peers), foreign_requests), syncs), closes)) in
            wirings.enumerate()
        {
            let queues = ShardQueues {
                to_peers,
                from_peers,
                foreign_requests,
                syncs,
                closes,
            };
            starting.push(spawn_shard(resolved, &router, &disk, index, queues)?);
        }
        drop(disk);

        let first_error = starting.iter().enumerate().find_map(|(index, shard)| {
            match shard.ready.recv_blocking() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                // Its thread ended without a report: it panicked.
                Err(_) => Some(Error::ShardStart {
                    shard: index,
                    reason: "its thread panicked while starting; see the message above".to_string(),
                }),
            }
        });
        let go = first_error.is_none();
        for shard in &starting {
            let _ = shard.go.send_blocking(go);
        }
        let shards = starting.into_iter().map(|shard| shard.thread).collect();
        let mut engine = Engine {
            router,
            shards,
            shutdown_grace: Duration::from_millis(resolved.config.shutdown_grace_ms),
        };
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

    /// Every shard's statistics: [`Client::stats`]. Await it on any
    /// executor (`futures_lite::future::block_on` on a plain thread), not
    /// by blocking a shard's thread.
    pub async fn stats(&self) -> Result<EngineStats> {
        self.client().stats().await
    }

    /// Stops the engine and releases the LOCK, also when it fails.
    ///
    /// Known leak: glommio 0.9 keeps some descriptors of an executor that
    /// ended (its eventfds, glommio issue #448), so every start and
    /// shutdown of an engine leaves a few file descriptors open in the
    /// process. Start one engine per process lifetime; a process that
    /// restarts engines thousands of times runs out of descriptors.
    ///
    /// Foreign callers get `Shutdown` from the start of the call, and their
    /// requests still queued are dropped unserved (their futures resolve to
    /// `Shutdown`). Running `spawn_on` tasks get up to `shutdown_grace_ms`
    /// to end while the shards still serve each other through the tasks'
    /// `ShardStorage` (a `Client` used inside a task is refused like any
    /// foreign caller). Tasks still running then are cancelled (their
    /// futures resolve to `Shutdown`) and the call fails naming their
    /// shards. It also fails if a shard thread had died (a panic in the
    /// engine itself). The LOCK goes when the shards drop their store: a
    /// task that a `spawn_on` task spawned itself with `glommio::spawn_local`
    /// and that keeps a `ShardStorage` must end with its parent.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<()> {
        if self.shards.iter().all(|shard| shard.thread.is_none()) {
            return Ok(());
        }
        tracing::debug!(
            shards = self.shards.len(),
            "shutdown: refusing foreign requests"
        );
        self.router.refuse_foreign();
        let grace = self.shutdown_grace;
        tracing::debug!(
            grace_ms = grace.as_millis() as u64,
            "shutdown: waiting for spawn_on tasks"
        );
        for shard in &self.shards {
            let _ = shard.control.try_send(Control::Quiesce { grace });
        }
        // Every shard waits for its tasks at once: this takes at most about
        // one grace period. A dead shard's report channel is closed.
        let busy: Vec<(usize, usize)> = self
            .shards
            .iter()
            .enumerate()
            .filter_map(|(index, shard)| match shard.report.recv_blocking() {
                Ok(running) if running > 0 => Some((index, running)),
                _ => None,
            })
            .collect();
        for &(shard, tasks) in &busy {
            tracing::warn!(
                shard,
                tasks,
                "shutdown: cancelling spawn_on tasks still running after the grace period"
            );
        }
        tracing::debug!("shutdown: stopping the shards");
        self.router.close();
        for shard in &self.shards {
            let _ = shard.control.try_send(Control::Stop);
        }
        let mut died = Vec::new();
        for (index, shard) in self.shards.iter_mut().enumerate() {
            if let Some(thread) = shard.thread.take() {
                if thread.join().is_err() {
                    tracing::warn!(
                        shard = index,
                        "shutdown: the shard's thread had died (a panic)"
                    );
                    died.push(index);
                }
            }
        }
        tracing::debug!("shutdown: every shard stopped");
        self.shutdown_result(&busy, &died)
    }

    fn shutdown_result(&self, busy: &[(usize, usize)], died: &[usize]) -> Result<()> {
        if busy.is_empty() && died.is_empty() {
            return Ok(());
        }
        Err(Error::ShutdownIncomplete {
            grace_ms: self.shutdown_grace.as_millis() as u64,
            cancelled: busy.to_vec(),
            died: died.to_vec(),
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}

/// Logs the resolved placement: shard `i` on `cpus[i]`.
fn log_placement(resolved: &ResolvedConfig) {
    let config = &resolved.config;
    tracing::info!(
        shards = resolved.shards(),
        cpus = ?resolved.shard_cpus,
        placement = ?config.placement,
        physical_cores_only = config.physical_cores_only,
        spin_before_park_us = config.spin_before_park_us,
        sync_inline_when_idle = config.sync_inline_when_idle,
        "placement resolved: shard i runs on cpus[i]"
    );
}

fn executor_builder(resolved: &ResolvedConfig, cpu: usize, index: usize) -> LocalExecutorBuilder {
    let config = &resolved.config;
    // The blocking pool (fdatasync, truncate) is not pinned: it runs beside
    // the shard instead of queueing behind its spinning executor.
    // More than one thread, so that handed-off syncs of different blobs
    // do not wait for each other.
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .blocking_thread_pool_placement(PoolPlacement::Unbound(config.blocking_threads_per_shard))
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
    inflight_throughput_max: usize,
    spin_before_park: Option<std::time::Duration>,
    sync_inline_when_idle: bool,
    preallocate_bytes: u64,
    io_scheduler: SchedConfig,
    /// For the log: the registered `io_memory` and the ring depth.
    io_memory_bytes: u64,
    ring_depth: usize,
    /// A fault for tests: the shard thread panics before it reports.
    #[cfg(test)]
    panic_at_start: bool,
}

impl ShardLimits {
    fn new(config: &Config, index: usize) -> ShardLimits {
        #[cfg(not(test))]
        let _ = index;
        ShardLimits {
            inflight_max: config.inflight_per_shard_max,
            inflight_throughput_max: config.inflight_throughput_per_shard_max(),
            spin_before_park: config.spin_before_park(),
            sync_inline_when_idle: config.sync_inline_when_idle,
            preallocate_bytes: config.preallocate_bytes,
            io_scheduler: config.io_scheduler,
            io_memory_bytes: crate::preflight::registered_io_memory_bytes(config.io_memory_bytes),
            ring_depth: config.ring_depth,
            #[cfg(test)]
            panic_at_start: crate::tests::PANIC_SHARD_AT_START
                .with(|shard| shard.get() == Some(index)),
        }
    }

    /// Logs a started executor: its CPU, its registered memory, its rings.
    fn log_executor(&self, wiring: &Wiring) {
        tracing::info!(
            shard = wiring.index,
            cpu = wiring.cpu,
            io_memory_bytes = self.io_memory_bytes,
            rings = crate::preflight::RINGS_PER_SHARD,
            ring_depth = self.ring_depth,
            "shard executor started: io_memory registered with each ring"
        );
    }
}

/// The body of one shard thread: build, report, wait for go, serve.
fn run_shard_thread(
    builder: LocalExecutorBuilder,
    wiring: Wiring,
    disk: Disk,
    limits: ShardLimits,
) {
    let executor = match builder.make() {
        Ok(executor) => {
            limits.log_executor(&wiring);
            executor
        }
        Err(e) => {
            let _ = wiring.ready.try_send(Err(Error::ShardStart {
                shard: wiring.index,
                reason: format!(
                    "cannot start its executor on CPU {}: {e} (is io_uring enabled? is `ulimit -l` large enough?)",
                    wiring.cpu
                ),
            }));
            return;
        }
    };
    executor.run(async move {
        #[cfg(test)]
        assert!(
            !limits.panic_at_start,
            "fault injected: shard {} panics at start",
            wiring.index
        );
        let sched = disk.scheduler(wiring.index, &limits.io_scheduler);
        let (fs, root) = match disk
            .file_system(wiring.index, limits.sync_inline_when_idle)
            .await
        {
            Ok(fs) => fs,
            Err(e) => {
                let _ = wiring.ready.try_send(Err(e));
                return;
            }
        };
        let store = ShardStore::with_scheduler(fs, root, sched)
            .with_preallocate_bytes(limits.preallocate_bytes);
        let _ = wiring.ready.try_send(Ok(()));
        if !matches!(wiring.go.recv().await, Ok(true)) {
            return;
        }
        let (peers, peer_requests) =
            connect_peers(wiring.queues.to_peers, wiring.queues.from_peers).await;
        let parts = ShardParts {
            index: wiring.index,
            router: wiring.router,
            store,
            peers,
            peer_requests,
            foreign_requests: wiring.queues.foreign_requests,
            syncs: wiring.queues.syncs,
            closes: wiring.queues.closes,
            inflight_max: limits.inflight_max,
            inflight_throughput_max: limits.inflight_throughput_max,
            spin_before_park: limits.spin_before_park,
        };
        shard::run(parts, wiring.control, wiring.report).await;
    });
}

/// Connects this shard's ends of its peer channels, every channel at once
/// (each connection waits for the other end's).
async fn connect_peers(
    to_peers: PeerSenders,
    from_peers: PeerReceivers,
) -> (ConnectedPeerSenders, ConnectedPeerReceivers) {
    let connecting = to_peers
        .into_iter()
        .map(|tx| async move { Some(tx?.join_map(SharedSender::connect).await) });
    let receiving = from_peers
        .into_iter()
        .map(|rx| rx.join_map(SharedReceiver::connect));
    futures_lite::future::zip(join_all(connecting), join_all(receiving)).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_disk_takes_the_configured_piece_on_every_host() {
        // The largest piece: a real device (max_sectors_kb) would cut it.
        let config = SchedConfig {
            piece_bytes: shardblob_shards::sched::PIECE_BYTES_MAX,
            throughput_bytes_max: 2 << 20,
            ..SchedConfig::default()
        };
        let sched = Disk::Simulated(SimFs::new(0)).scheduler(0, &config);
        assert_eq!(sched.config().piece_bytes, config.piece_bytes);
        assert_eq!(*sched.config(), config);
    }
}
