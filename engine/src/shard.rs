//! One shard at run time: its store, its queues, and the loops that serve
//! requests forwarded by other shards and foreign threads.
//!
//! Each inbound queue (one per peer shard and I/O class, one per class for
//! foreign threads, the sync lane) has a receive loop. A loop takes a
//! request first and a permit of the shard's in-flight bound second, so an
//! idle loop holds no permit: the bound means what it says at any shard
//! count, even below the number of queues (each loop holds at most one
//! request while it waits for a permit). Every request runs as its own
//! task, so a slow operation never holds up the queue behind it.
//!
//! A throughput-class request also takes a permit of the class's own,
//! smaller bound (`inflight_latency_reserved_percent` fewer), so that
//! bulk requests never hold every permit: a latency-class request, which
//! has queues of its own (`transport.rs`), finds a permit free and its
//! device calls overtake the bulk ones in the I/O scheduler.
//!
//! `spawn_on` jobs take a permit only to start: a user task may run for
//! ever (an accept loop), and holding a permit would starve forwarded
//! requests. Running tasks are tracked so that shutdown can wait for them
//! within its grace period and cancel the rest, which resolves their
//! callers' futures and lets the store (and the LOCK) go.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use glommio::sync::{Semaphore, StaticPermit};
use glommio::task::JoinHandle;

use shardblob_shards::fs::any::AnyFs;
use shardblob_shards::stats::{OpKind, OpTimer};
use shardblob_shards::{Blob, Error, IoClass, Result, ShardBlob, ShardStore};

use crate::local::ShardStorage;
use crate::message::{BlobId, Envelope, Reply, Request, Spawn};
use crate::per_class::PerClass;
use crate::remote::{CloseOnDrop, SyncRequest, SyncWaiters};
use crate::stats::queue::QueueGauge;
use crate::stats::ShardStats;
use crate::transport::Router;

/// Most 1 ms waits a stopping shard gives its blobs to close (1 s).
const CLOSE_WAIT_POLLS_MAX: usize = 1000;

thread_local! {
    /// The shard this thread runs, if it is a shard thread.
    static CURRENT: RefCell<Option<Rc<ShardContext>>> = const { RefCell::new(None) };
}

/// The state of one running shard, shared by its tasks.
pub struct ShardContext {
    pub(crate) index: usize,
    pub(crate) router: Arc<Router>,
    pub(crate) store: ShardStore<AnyFs>,
    /// Senders to every other shard, per class (`None` at this shard's
    /// own index).
    peers: ConnectedPeerSenders,
    /// Blobs opened here on behalf of other threads.
    opened: RefCell<HashMap<BlobId, ShardBlob<AnyFs>>>,
    next_id: Cell<BlobId>,
    closes: async_channel::Receiver<BlobId>,
    foreign: PerClass<async_channel::Receiver<Envelope>>,
    syncs: async_channel::Receiver<SyncRequest>,
    inflight: Rc<Semaphore>,
    inflight_max: u64,
    /// The throughput class's share of `inflight`, taken before it.
    inflight_throughput: Rc<Semaphore>,
    /// Running `spawn_on` tasks, by a shard-local id.
    tasks: RefCell<HashMap<u64, JoinHandle<()>>>,
    next_task: Cell<u64>,
    /// Fires whenever a `spawn_on` task ends.
    task_ended: event_listener::Event,
    /// The executor's `spin_before_park`: how long it stays awake idle.
    pub(crate) spin_before_park: Option<Duration>,
}

/// A shard's connected senders to each other shard, per class (`None` at
/// its own index).
pub type ConnectedPeerSenders = Vec<Option<PerClass<ConnectedSender<Envelope>>>>;

/// A shard's connected receivers from each other shard, per class.
pub type ConnectedPeerReceivers = Vec<PerClass<ConnectedReceiver<Envelope>>>;

/// What a shard needs to run, built by the engine.
pub struct ShardParts {
    pub index: usize,
    pub router: Arc<Router>,
    pub store: ShardStore<AnyFs>,
    pub peers: ConnectedPeerSenders,
    pub peer_requests: ConnectedPeerReceivers,
    pub foreign_requests: PerClass<async_channel::Receiver<Envelope>>,
    pub syncs: async_channel::Receiver<SyncRequest>,
    pub closes: async_channel::Receiver<BlobId>,
    pub inflight_max: usize,
    pub inflight_throughput_max: usize,
    pub spin_before_park: Option<Duration>,
}

/// One of a shard's inbound queues, for its depth gauge.
#[derive(Clone, Copy)]
enum Inbound {
    Foreign,
    Syncs,
    /// The queue from this sending shard.
    Peer(usize),
}

/// What the engine tells a running shard.
pub enum Control {
    /// Shutdown begins: drop queued foreign requests, wait up to `grace`
    /// for the running `spawn_on` tasks, and report how many still run.
    Quiesce { grace: Duration },
    /// Cancel what still runs, let every blob go and end.
    Stop,
}

impl ShardContext {
    /// The shard running on this thread, if any.
    pub fn current() -> Option<Rc<ShardContext>> {
        CURRENT.with(|current| current.borrow().clone())
    }

    pub(crate) async fn send_to_peer(&self, shard: usize, envelope: Envelope) -> Result<()> {
        let sender = self.peers[shard]
            .as_ref()
            .expect("a shard forwards only to other shards");
        let pushed = self.router.gauges[shard].peers[self.index].push();
        let sender = sender.get(envelope.class);
        sender.send(envelope).await.map_err(|_| Error::Shutdown)?;
        pushed.sent();
        Ok(())
    }

    /// The depth gauge of one of this shard's inbound queues.
    fn gauge(&self, queue: Inbound) -> &QueueGauge {
        let gauges = &self.router.gauges[self.index];
        match queue {
            Inbound::Foreign => &gauges.foreign,
            Inbound::Syncs => &gauges.syncs,
            Inbound::Peer(from) => &gauges.peers[from],
        }
    }

    /// This shard's statistics now: its store's and its queues' depths.
    pub(crate) fn stats(&self) -> ShardStats {
        let gauges = &self.router.gauges[self.index];
        let peer_queues = (0..self.router.shard_count())
            .filter(|&from| from != self.index)
            .map(|from| (from, gauges.peers[from].read()))
            .collect();
        ShardStats {
            shard: self.index,
            store: self.store.stats().snapshot(),
            forwarded_in_flight: self.inflight_max.saturating_sub(self.inflight.available()),
            foreign_queue: gauges.foreign.read(),
            sync_queue: gauges.syncs.read(),
            peer_queues,
        }
    }

    /// Closes the foreign threads' queues and drops the requests still in
    /// them (their callers get `Shutdown`); returns how many.
    fn close_foreign(&self) -> usize {
        let mut dropped = 0usize;
        for queue in self.foreign.iter() {
            queue.close();
            while let Ok(envelope) = queue.try_recv() {
                self.gauge(Inbound::Foreign).popped();
                drop(envelope);
                dropped += 1;
            }
        }
        dropped
    }

    /// Lets go of the blobs whose remote handles were all dropped.
    pub(crate) fn drain_closes(&self) {
        while let Ok(id) = self.closes.try_recv() {
            self.opened.borrow_mut().remove(&id);
        }
    }

    fn blob(&self, id: BlobId) -> Result<ShardBlob<AnyFs>> {
        self.opened
            .borrow()
            .get(&id)
            .cloned()
            .ok_or(Error::Shutdown)
    }

    /// Flushes a blob, uncounted: [`ShardContext::handle_sync`] counts.
    async fn sync_blob(&self, id: BlobId) -> Result<()> {
        self.blob(id)?.sync_uncounted().await
    }

    /// Serves a forwarded open. The reply carries the open's close guard:
    /// if the caller dropped its future, the reply is dropped (here, in the
    /// channel, or in the caller's future) and the guard's close notice lets
    /// the blob go, so the name never stays "already open".
    async fn open(
        self: &Rc<Self>,
        partition: String,
        name: Vec<u8>,
        versions: std::ops::RangeInclusive<u16>,
        reply: Reply<(crate::remote::OpenGuard, u64, u16)>,
    ) {
        if reply.is_closed() {
            // The caller gave up before the open began: nothing to undo.
            self.count_left(OpKind::Open);
            return;
        }
        self.drain_closes();
        let timer = self.store.stats().start(OpKind::Open);
        let opened = self
            .store
            .open_versioned_uncounted(&partition, &name, versions)
            .await;
        let result = opened.map(|(blob, len, version)| {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            self.opened.borrow_mut().insert(id, blob);
            (
                CloseOnDrop::new(self.router.clone(), self.index, id),
                len,
                version,
            )
        });
        answer_counted(timer, &reply, result);
    }

    /// Serves a forwarded `read_many`: each range as it completes, until the
    /// first error or until the caller dropped its stream. Like every other
    /// reply, the last item goes out after the blob clone is dropped: a
    /// caller that drops its handle on the last range and reopens never
    /// finds the old open still alive (a timing race: `engine_sim.rs`'s
    /// sequential test hit `BlobAlreadyOpen` there once, seed 285 of a
    /// 375-seed run on a loaded machine; it rarely replays).
    async fn read_many(
        &self,
        blob: BlobId,
        ranges: Vec<(u64, usize)>,
        items: async_channel::Sender<Result<(usize, Vec<u8>)>>,
    ) {
        if items.is_closed() {
            // The caller left while the request was queued.
            self.count_left(OpKind::ReadMany);
            return;
        }
        let blob = match self.blob(blob) {
            Ok(blob) => blob,
            Err(e) => {
                let _ = items.try_send(Err(e));
                return;
            }
        };
        let mut left = ranges.len();
        let last = {
            let mut results = std::pin::pin!(blob.read_many(ranges));
            loop {
                let Some(item) = results.next().await else {
                    break None;
                };
                let item = item.map(|(index, bytes)| (index, bytes.to_vec()));
                left = left.saturating_sub(1);
                if item.is_err() || left == 0 {
                    break Some(item);
                }
                if items.try_send(item).is_err() {
                    break None;
                }
            }
        };
        drop(blob);
        if let Some(item) = last {
            let _ = items.try_send(item);
        }
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
            } => self.open(partition, name, versions, reply).await,
            Request::Remove {
                partition,
                name,
                reply,
            } => {
                let timer = self.store.stats().start(OpKind::Remove);
                let removed = self
                    .store
                    .remove_uncounted(&partition, name.as_deref())
                    .await;
                answer_counted(timer, &reply, removed);
            }
            Request::Scan { partition, reply } => {
                let timer = self.store.stats().start(OpKind::Scan);
                let names = self.store.scan_uncounted(&partition).await;
                answer_counted(timer, &reply, names);
            }
            Request::Read {
                blob,
                offset,
                len,
                reply,
            } => {
                let blob = self.blob(blob);
                let read = async move { blob?.read_at(offset, len).await.map(|b| b.to_vec()) };
                self.for_caller(OpKind::Read, reply, read).await;
            }
            Request::ReadMany {
                blob,
                ranges,
                items,
                ..
            } => self.read_many(blob, ranges, items).await,
            Request::Write {
                blob,
                offset,
                data,
                options,
                reply,
            } => {
                let blob = self.blob(blob);
                let write = async move {
                    let written = blob?.write_vectored_at(offset, &[&data], options).await;
                    written.map(|()| data)
                };
                self.for_caller(OpKind::Write, reply, write).await;
            }
            Request::Resize { blob, len, reply } => {
                let blob = self.blob(blob);
                let resize = async move { blob?.resize(len).await };
                self.for_caller(OpKind::Resize, reply, resize).await;
            }
            Request::Spawn(job) => self.start_task(job),
        }
    }

    /// Serves a request from another shard; its budget charge is given back
    /// when the request is done, or, for a `read_many`, handed on to its
    /// stream, where the items it sent wait until read.
    async fn handle_envelope(self: Rc<Self>, envelope: Envelope) {
        let Envelope {
            request,
            charge,
            class,
        } = envelope;
        // A spawn job becomes a running task, which holds no budget: its
        // bytes go back before it starts (glommio may run it at once).
        let charge = (!matches!(request, Request::Spawn(_))).then_some(charge);
        let stream = match &request {
            Request::ReadMany { charge_back, .. } => Some(charge_back.clone()),
            _ => None,
        };
        // Served in the I/O class of the operation that sent it.
        class.scope(self.handle(request)).await;
        if let (Some(stream), Some(charge)) = (stream, charge) {
            // A stream already dropped refuses it: the bytes go back now.
            let _ = stream.try_send(charge);
        }
    }

    /// Serves a request from a foreign thread, unless shutdown began: then
    /// it is dropped unserved and its caller gets `Shutdown`.
    async fn handle_foreign(self: Rc<Self>, envelope: Envelope) {
        if !self.router.refuses_foreign() {
            self.handle_envelope(envelope).await;
        }
    }

    /// Runs one started sync for all the `start_sync` calls it answers: one
    /// flush serves them all. After a failure each further waiter gets its
    /// own answer from the (now poisoned) blob, since errors do not clone.
    ///
    /// Counted as the same calls on the owning shard would be: one sync per
    /// waiter, by its answer, or cancelled if its caller is gone (the flush
    /// still runs: the request holds the open until it is done).
    async fn handle_sync(self: Rc<Self>, mut request: SyncRequest) {
        let SyncWaiters {
            waiting: waiters,
            left,
        } = request.start();
        for _ in 0..left {
            self.count_left(OpKind::Sync);
        }
        let stats = self.store.stats();
        let timers: Vec<_> = waiters.iter().map(|_| stats.start(OpKind::Sync)).collect();
        let first = self.sync_blob(request.blob()).await;
        let synced = first.is_ok();
        let mut first = Some(first);
        for (waiter, timer) in waiters.into_iter().zip(timers) {
            if waiter.is_closed() {
                continue;
            }
            let result = match first.take() {
                Some(result) => result,
                None if synced => Ok(()),
                None => self.sync_blob(request.blob()).await,
            };
            answer_counted(timer, &waiter, result);
        }
    }

    /// Counts a forwarded call of `kind` whose caller left before it was
    /// served as cancelled: its caller polled it (that sent the request),
    /// and a call dropped after its first poll on the owning shard counts
    /// so too.
    fn count_left(&self, kind: OpKind) {
        drop(self.store.stats().start(kind));
    }

    /// Runs a forwarded blob operation for a caller who may leave, and
    /// answers it (`ARCHITECTURE.md`, Cancellation). A caller that left
    /// while the request was queued gets nothing run (the call counts as
    /// cancelled). One that leaves while it runs (its reply's receiver
    /// dropped) has the operation dropped here, as a direct caller's drop
    /// would: a commit already started finishes as an orphan of the blob,
    /// which the blob's next write waits for, so a dropped forwarded write
    /// never lands on top of a write issued after the drop. (The shard
    /// learns of the drop by a wake-up that the caller sends before its
    /// next request, and serves wake-ups in order.) The operation owns its
    /// blob clone, which is gone before the reply goes out.
    async fn for_caller<T>(
        &self,
        kind: OpKind,
        reply: Reply<T>,
        operation: impl Future<Output = Result<T>>,
    ) {
        if reply.is_closed() {
            self.count_left(kind);
            return;
        }
        let done = async { Some(operation.await) };
        let left = async {
            reply.closed().await;
            None
        };
        if let Some(result) = futures_lite::future::or(done, left).await {
            let _ = reply.try_send(result);
        }
    }

    /// Starts a `spawn_on` job as a tracked task of this shard.
    fn start_task(self: &Rc<Self>, job: Spawn) {
        let id = self.next_task.get();
        self.next_task.set(id + 1);
        // A user task starts in the latency class, whatever the class of
        // the request that carried it (glommio runs a new task at once,
        // inside the caller's scope).
        let task = IoClass::Latency.scope(job(ShardStorage::new(self.clone())));
        let shard = self.clone();
        let ended = Rc::new(Cell::new(false));
        let ends = ended.clone();
        let handle = glommio::spawn_local(async move {
            task.await;
            ends.set(true);
            shard.tasks.borrow_mut().remove(&id);
            shard.task_ended.notify(usize::MAX);
        })
        .detach();
        // glommio may run the new task before `spawn_local` returns: a
        // task that already ended is not tracked.
        if !ended.get() {
            self.tasks.borrow_mut().insert(id, handle);
        }
    }

    /// Waits until no `spawn_on` task runs, or `grace` passed; returns how
    /// many still run.
    async fn wait_for_tasks(&self, grace: Duration) -> usize {
        let all_ended = async {
            loop {
                let ended = self.task_ended.listen();
                if self.tasks.borrow().is_empty() {
                    return;
                }
                ended.await;
            }
        };
        futures_lite::future::or(all_ended, glommio::timer::sleep(grace)).await;
        self.tasks.borrow().len()
    }

    /// The in-flight permits a request of `class` runs under: the
    /// throughput class's own first, then one of the shard's bound. `None`
    /// once the shard stops.
    async fn permits(&self, class: IoClass) -> Option<(StaticPermit, Option<StaticPermit>)> {
        let throughput = match class {
            IoClass::Latency => None,
            IoClass::Throughput => {
                let share = self.inflight_throughput.clone();
                Some(share.acquire_static_permit(1).await.ok()?)
            }
        };
        let permit = self.inflight.clone().acquire_static_permit(1).await.ok()?;
        Some((permit, throughput))
    }

    /// Takes messages of `class` from one queue until it closes or the
    /// shard stops, serving each as its own task under in-flight permits.
    async fn serve<M, S, F, Fut>(
        self: Rc<Self>,
        mut queue: S,
        inbound: Inbound,
        class: IoClass,
        handle: F,
    ) where
        S: futures_lite::Stream<Item = M> + Unpin,
        F: Fn(Rc<Self>, M) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        // Each turn takes one message and waits for its permits: bounded by
        // the queue, which the senders bound.
        while let Some(message) = queue.next().await {
            self.gauge(inbound).popped();
            let Some(permits) = self.permits(class).await else {
                return;
            };
            let served = handle(self.clone(), message);
            glommio::spawn_local(async move {
                served.await;
                drop(permits);
            })
            .detach();
        }
    }
}

/// Sends `result` to the caller, counting `timer` by the answer: as
/// cancelled if the caller is gone, as the same call dropped on the owning
/// shard counts, else by its result.
fn answer_counted<T>(timer: OpTimer<'_>, reply: &Reply<T>, result: Result<T>) {
    if !reply.is_closed() {
        timer.end(result.as_ref().err(), 0);
    }
    let _ = reply.try_send(result);
}

/// Runs a shard until the engine stops it, then cancels what still runs and
/// waits for its in-flight requests. `report` answers `Control::Quiesce`.
pub async fn run(
    parts: ShardParts,
    control: async_channel::Receiver<Control>,
    report: async_channel::Sender<usize>,
) {
    let context = Rc::new(ShardContext {
        index: parts.index,
        router: parts.router,
        store: parts.store,
        peers: parts.peers,
        opened: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
        closes: parts.closes,
        foreign: parts.foreign_requests,
        syncs: parts.syncs,
        inflight: Rc::new(Semaphore::new(parts.inflight_max as u64)),
        inflight_max: parts.inflight_max as u64,
        inflight_throughput: Rc::new(Semaphore::new(parts.inflight_throughput_max as u64)),
        tasks: RefCell::new(HashMap::new()),
        next_task: Cell::new(0),
        task_ended: event_listener::Event::new(),
        spin_before_park: parts.spin_before_park,
    });
    CURRENT.with(|current| *current.borrow_mut() = Some(context.clone()));

    let loops = start_loops(&context, parts.peer_requests);

    if let Ok(Control::Quiesce { grace }) = control.recv().await {
        // Foreign queues are closed: what they still hold is dropped here.
        let dropped = context.close_foreign();
        tracing::debug!(
            shard = context.index,
            dropped,
            "shutdown: dropped queued foreign requests (their callers get Shutdown)"
        );
        let _ = report.try_send(context.wait_for_tasks(grace).await);
        // Wait for `Stop` (or the engine's end).
        let _ = control.recv().await;
    }
    stop(&context, loops).await;
    CURRENT.with(|current| current.borrow_mut().take());
}

/// Starts the loops that serve the shard's queues (`peer_requests`: one
/// per class from each other shard, in the order of the senders) and its
/// close notices.
fn start_loops(
    context: &Rc<ShardContext>,
    peer_requests: ConnectedPeerReceivers,
) -> Vec<glommio::Task<()>> {
    let mut loops = Vec::new();
    let senders = (0..context.router.shard_count()).filter(|&from| from != context.index);
    for (from, queues) in senders.zip(peer_requests) {
        for (class, queue) in queues.into_iter_classes() {
            let serving = context.clone().serve(
                queue,
                Inbound::Peer(from),
                class,
                ShardContext::handle_envelope,
            );
            loops.push(glommio::spawn_local(serving));
        }
    }
    for (class, foreign) in context.foreign.clone().into_iter_classes() {
        let serving = context.clone().serve(
            Box::pin(foreign),
            Inbound::Foreign,
            class,
            ShardContext::handle_foreign,
        );
        loops.push(glommio::spawn_local(serving));
    }
    // Started syncs flush, and a flush is latency work (`ARCHITECTURE.md`).
    let syncs = Box::pin(context.syncs.clone());
    let serving = context.clone().serve(
        syncs,
        Inbound::Syncs,
        IoClass::Latency,
        ShardContext::handle_sync,
    );
    loops.push(glommio::spawn_local(serving));
    let closer = context.clone();
    loops.push(glommio::spawn_local(async move {
        while let Ok(id) = closer.closes.recv().await {
            closer.opened.borrow_mut().remove(&id);
        }
    }));
    loops
}

/// Cancels the tasks and loops still running, answers every queued request
/// `Shutdown`, waits for the in-flight ones and lets every blob go.
async fn stop(context: &Rc<ShardContext>, loops: Vec<glommio::Task<()>>) {
    let tasks: Vec<_> = context.tasks.borrow_mut().drain().collect();
    tracing::debug!(
        shard = context.index,
        cancelled = tasks.len(),
        "shutdown: cancelling tasks, waiting for in-flight requests"
    );
    for (_, task) in tasks {
        // A cancelled task's future is dropped: its reply sender with it.
        task.cancel();
    }
    for serving in loops {
        serving.cancel().await;
    }
    context.close_foreign();
    context.syncs.close();
    while let Ok(sync) = context.syncs.try_recv() {
        context.gauge(Inbound::Syncs).popped();
        drop(sync);
    }
    // Every permit back means no forwarded request is still running.
    let _ = context.inflight.acquire(context.inflight_max).await;
    context.opened.borrow_mut().clear();
    // Dropped DmaFiles close asynchronously, on the next reactor poll, and
    // cancelled tasks drop their futures when next scheduled: a timer
    // forces both before the executor ends, else fds and the LOCK leak.
    // A blob whose last handle went closes when the work it started lands
    // (the zeros written ahead of its appends: a few device writes);
    // bounded, for a handle the embedding code still holds.
    for _ in 0..CLOSE_WAIT_POLLS_MAX {
        if context.store.stats().open_blobs() == 0 {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    // The reactor poll that closes the files dropped last.
    glommio::timer::sleep(Duration::from_millis(1)).await;
    tracing::debug!(shard = context.index, "shutdown: shard stopped");
}
