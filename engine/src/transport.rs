//! How a request reaches its shard.
//!
//! Two transports, one per kind of caller:
//! - [`Foreign`]: any thread outside the engine (main thread, a tokio
//!   worker). Bounded MPMC queues (async-channel) into each shard, one per
//!   I/O class; the handle is `Send + Sync` and its futures are `Send`.
//! - [`Peer`]: another shard. glommio's lock-free single-producer shared
//!   channels, one per ordered pair of shards and class, connected at
//!   startup.
//!
//! Both are bounded twice: in messages (a full queue makes the sender wait)
//! and in bytes (a [`ByteBudget`] per shard and class, which every queued request
//! draws from until the shard has served it, so a few huge writes cannot
//! fill memory that a message count would allow). Replies come back on a
//! per-request one-shot channel whose waker wakes the caller's thread.
//!
//! Every queue and budget exists once per I/O class ([`PerClass`]): a
//! request goes into those of its class ([`Request::class`]: the
//! sender's, or a write's `WriteOptions::THROUGHPUT`), so a latency-class
//! request never waits for a slot or for bytes behind throughput-class
//! requests, however many of them a busy shard has not served yet. The
//! bounds are therefore twice `channel_capacity` slots per queue pair and
//! twice `queue_bytes_per_shard_max` per shard, and each shard serves its
//! class queues with separate loops (`shard.rs`).
//!
//! Two more queues per shard are unbounded in type and bounded in fact:
//! close notices (one per remote open) and the sync lane (at most one
//! queued sync per remote open, see `CloseOnDrop::queue_sync`). They let a
//! handle's drop and `start_sync` act at once without ever blocking.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shardblob_shards::{Error, IoClass, Result};

use crate::message::{answer, BlobId, Envelope, Request};
use crate::per_class::PerClass;
use crate::remote::SyncRequest;
use crate::shard::ShardContext;
use crate::stats::queue::ShardQueueGauges;

/// The shared, thread-safe part of the router.
pub struct Router {
    /// Foreign-thread request queues, one per shard and class (bounded).
    pub requests: Vec<PerClass<async_channel::Sender<Envelope>>>,
    /// Close notices of remote blob handles, one queue per shard. Unbounded
    /// in type, bounded in fact: each remote open sends exactly one notice,
    /// so a queue never holds more than the remote opens of its shard.
    pub closes: Vec<async_channel::Sender<BlobId>>,
    /// Started syncs of remote handles, one lane per shard. Unbounded in
    /// type, bounded in fact: at most one queued request per remote open.
    pub syncs: Vec<async_channel::Sender<SyncRequest>>,
    /// The byte budget of each shard's queued requests, per class.
    pub budgets: Vec<PerClass<Arc<ByteBudget>>>,
    /// The depth of each shard's queues, counted by their senders and by
    /// the shard's serving loops.
    pub gauges: Vec<ShardQueueGauges>,
    /// Set when shutdown begins: shards drop foreign requests from then on.
    stopping: AtomicBool,
}

impl Router {
    /// A router over the given per-shard queues.
    pub fn new(
        requests: Vec<PerClass<async_channel::Sender<Envelope>>>,
        closes: Vec<async_channel::Sender<BlobId>>,
        syncs: Vec<async_channel::Sender<SyncRequest>>,
        budget_bytes: u64,
    ) -> Router {
        assert!(requests.len() == closes.len() && requests.len() == syncs.len());
        let budgets = (0..requests.len())
            .map(|_| PerClass::new(|| ByteBudget::new(budget_bytes)))
            .collect();
        let gauges = (0..requests.len())
            .map(|_| ShardQueueGauges::new(requests.len()))
            .collect();
        Router {
            requests,
            closes,
            syncs,
            budgets,
            gauges,
            stopping: AtomicBool::new(false),
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.requests.len()
    }

    /// Shutdown begins: threads outside the engine get `Shutdown` from now
    /// on, and requests of theirs still queued are dropped unserved (their
    /// callers get `Shutdown` too). Shards keep serving each other, so that
    /// running tasks can finish within the grace period.
    pub fn refuse_foreign(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for queue in self.requests.iter().flat_map(PerClass::iter) {
            queue.close();
        }
    }

    /// Takes `request`'s bytes from `shard`'s budget of `class`, waiting in
    /// line for them; the envelope carries the class to its queue.
    async fn admit(&self, shard: usize, request: Request, class: IoClass) -> Result<Envelope> {
        let charge = self.budgets[shard]
            .get(class)
            .acquire(request.cost_bytes())
            .await?;
        Ok(Envelope::new(request, charge, class))
    }

    /// Whether [`Router::refuse_foreign`] was called.
    pub fn refuses_foreign(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The shards stop: senders waiting for budget and new syncs get
    /// `Shutdown`.
    pub fn close(&self) {
        self.refuse_foreign();
        for budget in self.budgets.iter().flat_map(PerClass::iter) {
            budget.close();
        }
        for lane in &self.syncs {
            lane.close();
        }
    }
}

/// The bytes a shard's queued and running forwarded requests of one I/O
/// class may hold.
///
/// A request is charged its [`Request::cost_bytes`], capped at the whole
/// budget: a request larger than the budget is admitted alone, once the
/// budget is entirely free, rather than refused (a large write is legitimate
/// and must not depend on the configuration to work). Senders wait while the
/// budget is spent, and are admitted first come, first served: a request
/// that needs many bytes is never overtaken for ever by smaller ones.
pub struct ByteBudget {
    capacity_bytes: u64,
    state: Mutex<BudgetState>,
    freed: event_listener::Event,
}

struct BudgetState {
    available_bytes: u64,
    closed: bool,
    /// Waiting senders hold tickets, admitted in ticket order: the next
    /// ticket to hand out, and the ticket whose turn it is.
    next_ticket: u64,
    turn: u64,
    /// Tickets whose senders gave up before their turn came: skipped.
    abandoned: BTreeSet<u64>,
}

impl BudgetState {
    /// The ticket whose turn it was is done: the next one still waiting
    /// gets its turn.
    fn advance(&mut self) {
        self.turn += 1;
        while self.abandoned.remove(&self.turn) {
            self.turn += 1;
        }
        debug_assert!(
            self.turn <= self.next_ticket,
            "a turn for a ticket never handed out"
        );
    }

    /// Takes `bytes` if they are free.
    fn take(&mut self, bytes: u64) -> Result<bool> {
        if self.closed {
            return Err(Error::Shutdown);
        }
        let free = self.available_bytes >= bytes;
        if free {
            self.available_bytes -= bytes;
        }
        Ok(free)
    }
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// A waiting sender's place in line; dropped before its turn was used (the
/// sender's future was dropped), it gives the place up.
struct Ticket<'a> {
    budget: &'a ByteBudget,
    number: u64,
    used: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut state = self.budget.state();
        if state.turn == self.number {
            state.advance();
            drop(state);
            self.budget.freed.notify(usize::MAX);
        } else {
            state.abandoned.insert(self.number);
        }
    }
}

impl ByteBudget {
    /// A budget of `capacity_bytes` (at least 1).
    pub fn new(capacity_bytes: u64) -> Arc<ByteBudget> {
        assert!(capacity_bytes > 0, "a byte budget must admit something");
        Arc::new(ByteBudget {
            capacity_bytes,
            state: Mutex::new(BudgetState {
                available_bytes: capacity_bytes,
                closed: false,
                next_ticket: 0,
                turn: 0,
                abandoned: BTreeSet::new(),
            }),
            freed: event_listener::Event::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        Charge {
            budget: self.clone(),
            bytes,
        }
    }

    /// Takes `cost_bytes` (capped at the whole budget) if they are free and
    /// no sender waits before this one.
    pub fn try_acquire(self: &Arc<Self>, cost_bytes: u64) -> Result<Option<Charge>> {
        let bytes = cost_bytes.min(self.capacity_bytes);
        let mut state = self.state();
        let nobody_waits = state.turn == state.next_ticket;
        let taken = nobody_waits && state.take(bytes)?;
        drop(state);
        Ok(taken.then(|| self.charge(bytes)))
    }

    /// Takes `cost_bytes` (capped at the whole budget), waiting in line
    /// until they are free; `Shutdown` once the shard stopped.
    pub async fn acquire(self: &Arc<Self>, cost_bytes: u64) -> Result<Charge> {
        if let Some(charge) = self.try_acquire(cost_bytes)? {
            return Ok(charge);
        }
        let bytes = cost_bytes.min(self.capacity_bytes);
        let mut ticket = {
            let mut state = self.state();
            let number = state.next_ticket;
            state.next_ticket += 1;
            Ticket {
                budget: self,
                number,
                used: false,
            }
        };
        loop {
            // Listen before looking, so a release in between is not missed.
            let freed = self.freed.listen();
            {
                let mut state = self.state();
                if state.turn == ticket.number && state.take(bytes)? {
                    ticket.used = true;
                    state.advance();
                    drop(state);
                    // The next in line may fit in what is left.
                    self.freed.notify(usize::MAX);
                    return Ok(self.charge(bytes));
                }
            }
            freed.await;
        }
    }

    fn release(&self, bytes: u64) {
        let mut state = self.state();
        state.available_bytes += bytes;
        assert!(
            state.available_bytes <= self.capacity_bytes,
            "a byte budget got back more than it gave"
        );
        drop(state);
        self.freed.notify(usize::MAX);
    }

    fn close(&self) {
        self.state().closed = true;
        self.freed.notify(usize::MAX);
    }

    /// Bytes not taken right now.
    #[cfg(test)]
    pub fn available_bytes(&self) -> u64 {
        self.state().available_bytes
    }
}

/// A way to deliver requests to shards.
#[allow(async_fn_in_trait)]
pub trait Transport: Clone + 'static {
    /// The router (shard count, close queues).
    fn router(&self) -> &Arc<Router>;

    /// Delivers `request` to `shard`, waiting while its queue is full or
    /// its byte budget spent.
    async fn send(&self, shard: usize, request: Request) -> Result<()>;

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
        let class = request.class();
        self.send_as(shard, request, class).await
    }
}

/// Why [`Foreign::try_send`] did not queue a request.
pub enum TrySendError {
    /// The queue is full or the budget spent: try again with `send_as`.
    Busy(Request),
    /// The shard stopped.
    Shutdown,
}

impl Foreign {
    /// Delivers `request` to `shard` in `class`, waiting while that class's
    /// queue is full or its byte budget spent.
    pub async fn send_as(&self, shard: usize, request: Request, class: IoClass) -> Result<()> {
        let envelope = self.router.admit(shard, request, class).await?;
        let pushed = self.router.gauges[shard].foreign.push();
        self.router.requests[shard]
            .get(envelope.class)
            .send(envelope)
            .await
            .map_err(|_| Error::Shutdown)?;
        pushed.sent();
        Ok(())
    }

    /// Queues `request` in `class` if the shard has room for it now.
    pub fn try_send(
        &self,
        shard: usize,
        request: Request,
        class: IoClass,
    ) -> std::result::Result<(), TrySendError> {
        let budget = self.router.budgets[shard].get(class);
        let charge = match budget.try_acquire(request.cost_bytes()) {
            Ok(Some(charge)) => charge,
            Ok(None) => return Err(TrySendError::Busy(request)),
            Err(_) => return Err(TrySendError::Shutdown),
        };
        let pushed = self.router.gauges[shard].foreign.try_push();
        let envelope = Envelope::new(request, charge, class);
        match self.router.requests[shard].get(class).try_send(envelope) {
            Ok(()) => {
                pushed.sent();
                Ok(())
            }
            Err(async_channel::TrySendError::Full(envelope)) => {
                Err(TrySendError::Busy(envelope.request))
            }
            Err(async_channel::TrySendError::Closed(_)) => Err(TrySendError::Shutdown),
        }
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
        let class = request.class();
        let envelope = self.context.router.admit(shard, request, class).await?;
        self.context.send_to_peer(shard, envelope).await
    }

    async fn reply<R>(&self, rx: async_channel::Receiver<Result<R>>) -> Result<R> {
        futures_lite::future::or(answer(rx), stay_awake(self.context.spin_before_park)).await
    }
}
