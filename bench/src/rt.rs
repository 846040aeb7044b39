//! A minimal executor for a plain std thread: `block_on` polls one future,
//! spins briefly for a wake-up, then parks the thread until a waker fires or
//! the earliest pending `ThreadSleep` is due (the engine's
//! `shardblob::wait::Waiter` with a timer hook). It exists so the
//! foreign-thread path runs on a thread that belongs to no runtime (as a
//! user's main thread would), yet open-loop schedules get timers with
//! microsecond precision (tokio's timer has 1 ms granularity).

use std::cell::Cell;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::load::Sleep;

thread_local! {
    /// The earliest deadline a pending `ThreadSleep` on this thread asked for.
    static NEXT_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `future` to completion on the calling thread, waking for the
/// earliest pending `ThreadSleep` too. It spins the engine's default
/// `spin_before_park_us` for a wake-up before it parks, so a foreign caller
/// waits for a reply as a shard does (`shardblob::wait`).
pub fn block_on<F: Future>(future: F) -> F::Output {
    // Timer slack of 1 ns: park_timeout wakes on time, not up to 50 µs late.
    // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    // A deadline left by an earlier call's last poll is not this call's.
    NEXT_DEADLINE.with(|d| d.set(None));
    shardblob::wait::Waiter::new(shardblob::wait::SPIN_DEFAULT)
        .block_on_until(future, || NEXT_DEADLINE.with(Cell::take))
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
    use std::time::Duration;

    #[test]
    fn block_on_wakes_for_a_sleep_and_for_a_waker() {
        let deadline = Instant::now() + Duration::from_millis(2);
        block_on(ThreadSleep.sleep_until(deadline));
        assert!(Instant::now() >= deadline);

        let (tx, rx) = futures::channel::oneshot::channel();
        let sender = std::thread::spawn(move || tx.send(7).unwrap());
        assert_eq!(block_on(rx), Ok(7));
        sender.join().unwrap();
    }
}
