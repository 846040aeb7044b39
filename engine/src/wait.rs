//! How a thread outside the engine waits for a reply: spin, then park.
//!
//! A [`Client`](crate::Client) future resolves when the owning shard's
//! reply reaches it from another CPU. A thread that parks as soon as its
//! future is pending pays a futex wake-up for every reply: tens of µs on a
//! VM. One that first watches a flag for a little while catches a reply
//! that comes within that time without sleeping. Measured with the
//! benchmark's foreign-thread caller on the 2-core dev VM: spinning 50 µs
//! brought its depth-1 median from about +60 µs over the owning shard to
//! about +10 µs (README, "Placing shards for tail latency"). The price is
//! CPU time, burnt on the waiting thread's CPU: up to the spin per wait
//! that lasts longer than it (twice, when the wait follows a wake-up the
//! spin caught: its unpark token ends the first park at once). On a core shared with a shard or other busy
//! work, a spin of zero (park at once) is the better choice.
//!
//! [`block_on`] is this wait for one future on a plain thread. Inside an
//! async runtime (tokio, ...) await the `Client`'s futures as any other;
//! this is for threads that have none.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::config::SPIN_BEFORE_PARK_US_MAX;

/// The spin of [`block_on`]: the engine's default `spin_before_park_us`,
/// so a foreign caller waits for a reply as a shard does.
pub const SPIN_DEFAULT: Duration = Duration::from_micros(50);

/// Runs `future` to completion on this thread, spinning [`SPIN_DEFAULT`]
/// for each wake-up before it parks (module docs).
pub fn block_on<F: Future>(future: F) -> F::Output {
    Waiter::new(SPIN_DEFAULT).block_on(future)
}

/// A spin-then-park wait with a spin of its own (module docs).
#[derive(Clone, Copy, Debug)]
pub struct Waiter {
    spin: Duration,
}

impl Waiter {
    /// A waiter that spins `spin` before it parks; zero parks at once. A
    /// spin over 10 ms (the bound of the engine's `spin_before_park_us`)
    /// is cut to 10 ms.
    pub fn new(spin: Duration) -> Waiter {
        Waiter {
            spin: spin.min(Duration::from_micros(SPIN_BEFORE_PARK_US_MAX)),
        }
    }

    /// Runs `future` to completion on this thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.block_on_until(future, || None)
    }

    /// Runs `future` to completion on this thread, also waking at the
    /// instant `next_deadline` names after each poll that left it pending
    /// (`None`: only a waker wakes it). A hook for timers that register
    /// their deadline when polled, on a thread without a runtime.
    pub fn block_on_until<F: Future>(
        &self,
        future: F,
        mut next_deadline: impl FnMut() -> Option<Instant>,
    ) -> F::Output {
        let flag = Arc::new(WakeFlag {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            flag.woken.store(false, Ordering::Relaxed);
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            let deadline = next_deadline();
            if self.spin_for_wake(&flag, deadline) {
                continue; // a later park returns at once for its token: harmless
            }
            match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
                // Due already: poll again rather than pay a futex call.
                Some(left) if left.is_zero() => {}
                Some(left) => thread::park_timeout(left),
                None => thread::park(),
            }
        }
    }

    /// Watches the flag for the spin, or until `deadline`; whether a
    /// wake-up came.
    fn spin_for_wake(&self, flag: &WakeFlag, deadline: Option<Instant>) -> bool {
        let spin_until = Instant::now() + self.spin;
        let spin_until = deadline.map_or(spin_until, |d| d.min(spin_until));
        // Bounded by the clock: at most `spin` (≤ 10 ms) of polling.
        while Instant::now() < spin_until {
            if flag.woken.load(Ordering::Acquire) {
                return true;
            }
            std::hint::spin_loop();
        }
        flag.woken.load(Ordering::Acquire)
    }
}

/// The waker of a [`Waiter`]: sets the flag the spin watches, and unparks.
struct WakeFlag {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}
