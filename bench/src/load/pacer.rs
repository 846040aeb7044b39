//! The harness's pacer: one thread, owned by the load generator rather than
//! by the target's runtime, that wakes the open loop at each op's intended
//! start. Every target (engine shards, the dma executor, tokio, io_uring,
//! the foreign thread) is then paced by the same clock, whatever its own
//! timer's granularity (tokio's is 1 ms). A tick is only a wake-up: the loop
//! reads which ops are due from the schedule and the clock, so a tick that
//! lands while the loop is busy is never lost and never adds an op.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

use super::open::Schedule;

/// Longest sleep between two looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(10);

struct Shared {
    ticked: AtomicBool,
    stopped: AtomicBool,
    waker: AtomicWaker,
}

/// The pacer thread of one open-loop run; it stops when dropped or after
/// the last op's intended start.
pub struct Pacer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Ticks at the intended starts of ops `0..total_ops` of `schedule`.
    pub fn start(schedule: Schedule, total_ops: u64) -> Result<Pacer, String> {
        let shared = Arc::new(Shared {
            ticked: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        let ticker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || {
                // Timer slack of 1 ns: sleeps end on time, not up to 50 µs late.
                // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
                unsafe {
                    libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
                }
                for index in 0..total_ops {
                    if ticker.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let due = schedule.intended_start(index);
                    // In slices, so a stop is seen within one.
                    while let Some(left) = due.checked_duration_since(Instant::now()) {
                        if left.is_zero() || ticker.stopped.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(left.min(STOP_CHECK));
                    }
                    ticker.ticked.store(true, Ordering::Release);
                    ticker.waker.wake();
                }
            })
            .map_err(|e| format!("start the pacer thread: {e}"))?;
        Ok(Pacer {
            shared,
            thread: Some(thread),
        })
    }

    /// Resolves at the next tick (at once if one came since the last).
    pub fn tick(&self) -> Tick<'_> {
        Tick {
            shared: &self.shared,
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The next tick of a `Pacer`.
pub struct Tick<'a> {
    shared: &'a Shared,
}

impl Future for Tick<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.ticked.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.shared.waker.register(cx.waker());
        if self.shared.ticked.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_comes_no_earlier_than_an_intended_start_and_the_pacer_stops() {
        let start = Instant::now() + Duration::from_millis(2);
        let schedule = Schedule::new(start, 1000);
        let pacer = Pacer::start(schedule, 5).unwrap();
        futures::executor::block_on(pacer.tick());
        assert!(Instant::now() >= schedule.intended_start(0));
        drop(pacer); // joins
        let idle = Pacer::start(Schedule::new(start + Duration::from_secs(3600), 1), 1).unwrap();
        drop(idle); // a pacer whose first tick is an hour away still stops at once
    }
}
