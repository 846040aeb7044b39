//! [`IoScheduler`]: the queues, the bounds and the dispatch rule of one
//! shard (the rules are in the module docs of `sched`).
//!
//! A call asks for a [`Permit`] of its class and cost ([`IoScheduler::acquire`])
//! and holds it while the device works; dropping the permit gives its share
//! back and dispatches the waiters that now fit. Invariant after every
//! change: no waiting class has a head that may be granted (it would have
//! been dispatched), so a new call may take a permit at once exactly when
//! its class has no waiter, nobody waits for room in it, and it may be
//! granted ([`IoScheduler::grantable`]).
//!
//! Depth reservation: a waiting head that fits its class's own bounds but
//! not the free depth reserves the depth: the other class is granted
//! nothing until the in-flight calls drain enough for the head. Without it
//! a batch as deep as the device never fits under steady load of the other
//! class, and its whole class stalls behind it.
//!
//! Room: a caller finding its class's queue full waits for room on the
//! class's event, and so does every new caller while anyone waits for room
//! (arrival order holds when the queue is full too). Each slot freed in the
//! queue wakes one more room-waiter (`notify(1.additional())`: a plain
//! `notify(1)` does nothing while an earlier woken listener has not run
//! yet), and a room-waiter leaving the wait with room still left wakes the
//! next, so no room-waiter sleeps while the queue has room.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use event_listener::{Event, EventListener, IntoNotification};

use super::{IoClass, SchedConfig};

/// What one device call holds while in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Device requests (1 for one call; a batch of reads counts each).
    pub ops: u32,
    /// Bytes read or written.
    pub bytes: u64,
}

impl Cost {
    /// One call moving `bytes` bytes.
    pub fn call(bytes: usize) -> Cost {
        Cost {
            ops: 1,
            bytes: bytes as u64,
        }
    }
}

/// One shard's I/O scheduler. Not `Send`: it lives on its shard.
#[derive(Debug)]
pub struct IoScheduler {
    config: SchedConfig,
    state: RefCell<State>,
    /// Per class: notified when its queue has room again.
    room: [Event; 2],
}

#[derive(Debug, Default)]
struct State {
    classes: [ClassState; 2],
    /// Calls in flight, all classes.
    ops: u32,
    /// Latency dispatches since the last throughput one, counted while a
    /// throughput call that fits was waiting too.
    streak: u32,
    /// Throughput dispatches since the last latency one that moves data
    /// (saturating): the throughput class is alone once it reaches
    /// `alone_after_ops`.
    throughput_run: u32,
}

#[derive(Debug, Default)]
struct ClassState {
    queue: VecDeque<Rc<Waiter>>,
    /// Callers waiting for room in `queue` (stage `Room`).
    room_waiters: u32,
    in_flight: Cost,
    dispatched: u64,
}

#[derive(Debug)]
struct Waiter {
    cost: Cost,
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// `used + add <= max`, or nothing is used (a request larger than the
/// bound runs alone rather than never).
fn within(used: u64, add: u64, max: u64) -> bool {
    used == 0 || used + add <= max
}

impl IoScheduler {
    /// A scheduler with these bounds, cut to bounds that work first
    /// ([`SchedConfig::clamped`]): a bad config never reaches the queues.
    pub fn new(config: SchedConfig) -> Rc<IoScheduler> {
        let config = config.clamped();
        assert_eq!(config.check(), Ok(()), "clamped bounds that do not work");
        Rc::new(IoScheduler {
            config,
            state: RefCell::default(),
            room: [Event::new(), Event::new()],
        })
    }

    /// Its bounds.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// What `class` has in flight now.
    pub fn in_flight(&self, class: IoClass) -> Cost {
        self.state.borrow().classes[class.index()].in_flight
    }

    /// Calls of `class` waiting in the queue now.
    pub fn queued(&self, class: IoClass) -> usize {
        self.state.borrow().classes[class.index()].queue.len()
    }

    /// The throughput class's bounds now, in calls and bytes (the alone
    /// bounds while it is alone: module docs).
    pub fn throughput_bounds_now(&self) -> (u32, u64) {
        self.throughput_bounds(&self.state.borrow())
    }

    /// Permits granted to `class` so far.
    pub fn dispatched(&self, class: IoClass) -> u64 {
        self.state.borrow().classes[class.index()].dispatched
    }

    /// Waits for a permit of `class` for a call of `cost`.
    pub fn acquire(self: &Rc<Self>, class: IoClass, cost: Cost) -> Acquire {
        Acquire {
            sched: self.clone(),
            class,
            cost,
            stage: Stage::New,
        }
    }

    /// `cost` fits the free depth.
    fn fits_depth(&self, state: &State, cost: Cost) -> bool {
        let depth_max = u64::from(self.config.depth_max);
        within(u64::from(state.ops), u64::from(cost.ops), depth_max)
    }

    /// `cost` fits the bounds of `class` itself (latency has none).
    fn fits_class(&self, state: &State, class: IoClass, cost: Cost) -> bool {
        let used = state.classes[class.index()].in_flight;
        match class {
            IoClass::Latency => true,
            IoClass::Throughput => {
                let (ops_max, bytes_max) = self.throughput_bounds(state);
                within(u64::from(used.ops), u64::from(cost.ops), ops_max.into())
                    && within(used.bytes, cost.bytes, bytes_max)
            }
        }
    }

    /// The throughput class's bounds now, in calls and bytes: the alone
    /// bounds while it is alone (module docs), else the throughput bounds.
    fn throughput_bounds(&self, state: &State) -> (u32, u64) {
        let config = &self.config;
        let latency = &state.classes[IoClass::Latency.index()];
        // Each of these changes only where `dispatch` runs after it, or
        // where no throughput call waits: the invariant holds. Latency
        // calls that move no data (flushes, sizes) do not count: bulk
        // work's own syncs run in the latency class.
        let alone = latency.in_flight.bytes == 0
            && latency.queue.is_empty()
            && state.throughput_run >= config.alone_after_ops;
        let tight = (config.throughput_ops_max, config.throughput_bytes_max);
        match alone {
            true => (
                config.throughput_ops_max_alone.max(tight.0),
                config.throughput_bytes_max_alone.max(tight.1),
            ),
            false => tight,
        }
    }

    fn fits(&self, state: &State, class: IoClass, cost: Cost) -> bool {
        self.fits_depth(state, cost) && self.fits_class(state, class, cost)
    }

    /// The head of `class` waits only for depth: it reserves the depth
    /// (module docs).
    fn reserves_depth(&self, state: &State, class: IoClass) -> bool {
        let queue = &state.classes[class.index()].queue;
        queue.front().is_some_and(|head| {
            !self.fits_depth(state, head.cost) && self.fits_class(state, class, head.cost)
        })
    }

    /// A call of `class` and `cost` may be granted now: it fits and the
    /// other class does not reserve the depth.
    fn grantable(&self, state: &State, class: IoClass, cost: Cost) -> bool {
        let other = match class {
            IoClass::Latency => IoClass::Throughput,
            IoClass::Throughput => IoClass::Latency,
        };
        self.fits(state, class, cost) && !self.reserves_depth(state, other)
    }

    fn head_grantable(&self, state: &State, class: IoClass) -> bool {
        let queue = &state.classes[class.index()].queue;
        queue
            .front()
            .is_some_and(|head| self.grantable(state, class, head.cost))
    }

    /// The invariant (module docs): no waiting head may be granted.
    fn settled(&self, state: &State) -> bool {
        IoClass::ALL
            .iter()
            .all(|&class| !self.head_grantable(state, class))
    }

    /// Counts a granted permit in; only for a call that fits.
    fn take(&self, state: &mut State, class: IoClass, cost: Cost) {
        debug_assert!(
            self.fits(state, class, cost),
            "a {class:?} call over its bounds"
        );
        state.ops += cost.ops;
        state.throughput_run = match class {
            IoClass::Latency if cost.bytes > 0 => 0,
            IoClass::Latency => state.throughput_run,
            IoClass::Throughput => state.throughput_run.saturating_add(1),
        };
        let class = &mut state.classes[class.index()];
        class.in_flight.ops += cost.ops;
        class.in_flight.bytes += cost.bytes;
        class.dispatched += 1;
    }

    /// Grants the waiters that fit, by the interleave rule, until none does.
    fn dispatch(&self) {
        let mut state = self.state.borrow_mut();
        loop {
            let latency = self.head_grantable(&state, IoClass::Latency);
            let throughput = self.head_grantable(&state, IoClass::Throughput);
            let class = match (latency, throughput) {
                (true, true) if state.streak + 1 < self.config.throughput_every => {
                    state.streak += 1;
                    IoClass::Latency
                }
                (_, true) => {
                    state.streak = 0;
                    IoClass::Throughput
                }
                (true, false) => IoClass::Latency,
                (false, false) => return,
            };
            let Some(waiter) = state.classes[class.index()].queue.pop_front() else {
                return;
            };
            self.take(&mut state, class, waiter.cost);
            waiter.granted.set(true);
            // Waking only schedules the task (glommio polls it later), so
            // the state may stay borrowed.
            if let Some(waker) = waiter.waker.borrow_mut().take() {
                waker.wake();
            }
            self.room[class.index()].notify(1.additional());
        }
    }

    /// Gives back what a permit held.
    fn release(&self, class: IoClass, cost: Cost) {
        {
            let mut state = self.state.borrow_mut();
            debug_assert!(state.ops >= cost.ops, "in-flight count underflow");
            state.ops -= cost.ops;
            let class = &mut state.classes[class.index()].in_flight;
            class.ops -= cost.ops;
            class.bytes -= cost.bytes;
        }
        self.dispatch();
    }

    /// A room-waiter of `class` left without entering: the next one may
    /// take the room it was woken for.
    fn leave_room(&self, class: IoClass) {
        let room_left = {
            let mut state = self.state.borrow_mut();
            let class = &mut state.classes[class.index()];
            debug_assert!(class.room_waiters > 0, "room-waiter count");
            class.room_waiters -= 1;
            class.queue.len() < self.config.queue_max as usize && class.room_waiters > 0
        };
        if room_left {
            self.room[class.index()].notify(1);
        }
    }

    /// Takes a waiter that was dropped out of its queue.
    fn forget(&self, class: IoClass, waiter: &Rc<Waiter>) {
        let removed = {
            let mut state = self.state.borrow_mut();
            let queue = &mut state.classes[class.index()].queue;
            let at = queue.iter().position(|w| Rc::ptr_eq(w, waiter));
            at.and_then(|at| queue.remove(at)).is_some()
        };
        if removed {
            self.room[class.index()].notify(1.additional());
            // The next waiter may fit where the dropped head did not.
            self.dispatch();
        }
    }
}

enum Stage {
    New,
    /// The class's queue is full: waiting for room.
    Room(EventListener),
    Queued(Rc<Waiter>),
    Done,
}

/// The future of [`IoScheduler::acquire`]. Dropped while it waits, it
/// leaves the queue; dropped after its permit was granted, it gives the
/// permit back.
pub struct Acquire {
    sched: Rc<IoScheduler>,
    class: IoClass,
    cost: Cost,
    stage: Stage,
}

/// A granted share of the device; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    sched: Rc<IoScheduler>,
    class: IoClass,
    cost: Cost,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.sched.release(self.class, self.cost);
    }
}

impl Acquire {
    fn permit(&mut self) -> Permit {
        self.stage = Stage::Done;
        Permit {
            sched: self.sched.clone(),
            class: self.class,
            cost: self.cost,
        }
    }

    /// First try, or a retry by a room-waiter woken (`from_room`): a permit
    /// at once, a place in the queue, or a wait for room.
    fn enter(&mut self, cx: &mut Context<'_>, from_room: bool) -> Poll<Permit> {
        let sched = self.sched.clone();
        let mut state = sched.state.borrow_mut();
        let index = self.class.index();
        if from_room {
            debug_assert!(state.classes[index].room_waiters > 0, "room-waiter count");
            state.classes[index].room_waiters -= 1;
        }
        let queue_max = sched.config.queue_max as usize;
        let class = &state.classes[index];
        // A new caller goes behind those already waiting for room.
        if class.queue.len() >= queue_max || (!from_room && class.room_waiters > 0) {
            state.classes[index].room_waiters += 1;
            self.stage = Stage::Room(sched.room[index].listen());
            return Poll::Pending;
        }
        let ready = class.queue.is_empty() && sched.grantable(&state, self.class, self.cost);
        let result = if ready {
            sched.take(&mut state, self.class, self.cost);
            Poll::Ready(())
        } else {
            let waiter = Rc::new(Waiter {
                cost: self.cost,
                granted: Cell::new(false),
                waker: RefCell::new(Some(cx.waker().clone())),
            });
            state.classes[index].queue.push_back(waiter.clone());
            self.stage = Stage::Queued(waiter);
            Poll::Pending
        };
        debug_assert!(sched.settled(&state), "a waiting head could be granted");
        let class = &state.classes[index];
        let room_left = class.queue.len() < queue_max && class.room_waiters > 0;
        drop(state);
        if from_room && room_left {
            // The next room-waiter may come in too.
            sched.room[index].notify(1);
        }
        result.map(|()| self.permit())
    }
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = &mut *self;
        loop {
            let from_room = match &mut this.stage {
                Stage::New => false,
                Stage::Room(listener) => {
                    std::task::ready!(Pin::new(listener).poll(cx));
                    true
                }
                Stage::Queued(waiter) if waiter.granted.get() => {
                    return Poll::Ready(this.permit());
                }
                Stage::Queued(waiter) => {
                    *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Stage::Done => panic!("an Acquire polled after it completed"),
            };
            let entered = this.enter(cx, from_room);
            // Waiting for room: poll the listener, so it holds the waker.
            if !matches!(this.stage, Stage::Room(_)) {
                return entered;
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Queued(waiter) if waiter.granted.get() => {
                // Granted, never handed out: give it back at once.
                drop(self.permit());
            }
            Stage::Queued(waiter) => self.sched.forget(self.class, &waiter),
            Stage::Room(_) => self.sched.leave_room(self.class),
            Stage::New | Stage::Done => {}
        }
    }
}
