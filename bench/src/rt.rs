//! A minimal executor for a plain std thread: `block_on` polls one future,
//! spins briefly for a wake-up, then parks the thread until a waker fires or
//! the earliest pending `ThreadSleep` is due. It exists so the foreign-thread path runs on a thread that belongs
//! to no runtime (as a user's main thread would), yet open-loop schedules get
//! timers with microsecond precision (tokio's timer has 1 ms granularity).

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::load::Sleep;

thread_local! {
    /// The earliest deadline a pending `ThreadSleep` on this thread asked for.
    static NEXT_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long `block_on` polls for a wake-up before it parks the thread: the
/// engine's default `spin_before_park_us`, so a foreign caller waits for a
/// reply as a shard does. A parked thread pays a futex wake-up, tens of µs on
/// a VM, on every reply that comes later than this.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

struct ThreadWaker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Runs `future` to completion on the calling thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    // Timer slack of 1 ns: park_timeout wakes on time, not up to 50 µs late.
    // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let waker_state = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(waker_state.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        NEXT_DEADLINE.with(|d| d.set(None));
        waker_state.woken.store(false, Ordering::Relaxed);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let deadline = NEXT_DEADLINE.with(Cell::get);
        let spin_until = Instant::now() + SPIN_BEFORE_PARK;
        let spin_until = deadline.map_or(spin_until, |d| d.min(spin_until));
        while Instant::now() < spin_until {
            if waker_state.woken.load(Ordering::Acquire) {
                break;
            }
            std::hint::spin_loop();
        }
        if waker_state.woken.load(Ordering::Acquire) {
            continue; // its unpark token makes a later park return at once: harmless
        }
        match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    thread::park_timeout(deadline - now);
                }
            }
            None => thread::park(),
        }
    }
}

/// A timer future for `block_on`: pending until its deadline; each poll
/// registers the deadline so the parked thread wakes for it.
pub struct ThreadSleepFuture {
    deadline: Instant,
}

impl Future for ThreadSleepFuture {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        NEXT_DEADLINE.with(|d| {
            let earliest = d.get().map_or(self.deadline, |e| e.min(self.deadline));
            d.set(Some(earliest));
        });
        Poll::Pending
    }
}

/// The `Sleep` of a `block_on` thread.
pub struct ThreadSleep;

impl Sleep for ThreadSleep {
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> {
        ThreadSleepFuture { deadline }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_wakes_for_a_sleep_and_for_a_waker() {
        let deadline = Instant::now() + Duration::from_millis(2);
        block_on(ThreadSleep.sleep_until(deadline));
        assert!(Instant::now() >= deadline);

        let (tx, rx) = futures::channel::oneshot::channel();
        let sender = thread::spawn(move || tx.send(7).unwrap());
        assert_eq!(block_on(rx), Ok(7));
        sender.join().unwrap();
    }
}
