//! [`IoScheduler`]: the queues, the bounds and the dispatch rule of one
//! shard (the rules are in the module docs of `sched`).
//!
//! A call asks for a [`Permit`] of its class and cost ([`IoScheduler::acquire`])
//! and holds it while the device works; dropping the permit gives its share
//! back and dispatches the waiters that now fit. Invariant after every
//! change: no waiting class has a head that fits (it would have been
//! dispatched), so a new call may take a permit at once exactly when its
//! class has no waiter and it fits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use event_listener::{Event, EventListener};

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
}

#[derive(Debug, Default)]
struct ClassState {
    queue: VecDeque<Rc<Waiter>>,
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
    /// A scheduler with these bounds; they must pass [`SchedConfig::check`].
    pub fn new(config: SchedConfig) -> Rc<IoScheduler> {
        debug_assert_eq!(config.check(), Ok(()));
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

    fn fits(&self, state: &State, class: IoClass, cost: Cost) -> bool {
        let config = &self.config;
        let depth = within(
            u64::from(state.ops),
            u64::from(cost.ops),
            u64::from(config.depth_max),
        );
        let used = state.classes[class.index()].in_flight;
        depth
            && match class {
                IoClass::Latency => true,
                IoClass::Throughput => {
                    let ops_max = u64::from(config.throughput_ops_max);
                    within(u64::from(used.ops), u64::from(cost.ops), ops_max)
                        && within(used.bytes, cost.bytes, config.throughput_bytes_max)
                }
            }
    }

    fn head_fits(&self, state: &State, class: IoClass) -> bool {
        let queue = &state.classes[class.index()].queue;
        queue
            .front()
            .is_some_and(|head| self.fits(state, class, head.cost))
    }

    /// Counts a granted permit in; only for a call that fits.
    fn take(&self, state: &mut State, class: IoClass, cost: Cost) {
        debug_assert!(
            self.fits(state, class, cost),
            "a {class:?} call over its bounds"
        );
        state.ops += cost.ops;
        let class = &mut state.classes[class.index()];
        class.in_flight.ops += cost.ops;
        class.in_flight.bytes += cost.bytes;
        class.dispatched += 1;
    }

    /// Grants the waiters that fit, by the interleave rule, until none does.
    fn dispatch(&self) {
        let mut state = self.state.borrow_mut();
        loop {
            let latency = self.head_fits(&state, IoClass::Latency);
            let throughput = self.head_fits(&state, IoClass::Throughput);
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
            self.room[class.index()].notify(1);
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

    /// Takes a waiter that was dropped out of its queue.
    fn forget(&self, class: IoClass, waiter: &Rc<Waiter>) {
        let removed = {
            let mut state = self.state.borrow_mut();
            let queue = &mut state.classes[class.index()].queue;
            let at = queue.iter().position(|w| Rc::ptr_eq(w, waiter));
            at.and_then(|at| queue.remove(at)).is_some()
        };
        if removed {
            self.room[class.index()].notify(1);
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

    /// First try (or a retry after room was made): a permit at once, a
    /// place in the queue, or a wait for room.
    fn enter(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        let sched = self.sched.clone();
        let mut state = sched.state.borrow_mut();
        let index = self.class.index();
        if state.classes[index].queue.is_empty() && sched.fits(&state, self.class, self.cost) {
            sched.take(&mut state, self.class, self.cost);
            drop(state);
            return Poll::Ready(self.permit());
        }
        if state.classes[index].queue.len() >= sched.config.queue_max as usize {
            self.stage = Stage::Room(sched.room[index].listen());
            return Poll::Pending;
        }
        let waiter = Rc::new(Waiter {
            cost: self.cost,
            granted: Cell::new(false),
            waker: RefCell::new(Some(cx.waker().clone())),
        });
        state.classes[index].queue.push_back(waiter.clone());
        self.stage = Stage::Queued(waiter);
        Poll::Pending
    }
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = &mut *self;
        loop {
            match &mut this.stage {
                Stage::New => {
                    let entered = this.enter(cx);
                    if !matches!(this.stage, Stage::Room(_)) {
                        return entered;
                    }
                }
                Stage::Room(listener) => {
                    std::task::ready!(Pin::new(listener).poll(cx));
                    this.stage = Stage::New;
                }
                Stage::Queued(waiter) if waiter.granted.get() => {
                    return Poll::Ready(this.permit());
                }
                Stage::Queued(waiter) => {
                    *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Stage::Done => panic!("an Acquire polled after it completed"),
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Stage::Queued(waiter) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        if waiter.granted.get() {
            // Granted, never handed out: give it back at once.
            drop(self.permit());
        } else {
            self.sched.forget(self.class, &waiter);
        }
    }
}
