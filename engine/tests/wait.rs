//! `shardblob::wait`: a plain thread waits for the engine's replies by
//! spinning before it parks. Checked by counting the thread's voluntary
//! context switches (each park is one), not by a clock threshold.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use shardblob::wait::{block_on, Waiter};
use shardblob::{Blob, Storage};
use support::start;

/// The calling thread's voluntary context switches so far.
fn voluntary_switches() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    // SAFETY: filled by the successful call above.
    unsafe { usage.assume_init() }.ru_nvcsw
}

/// Pending until a helper thread, started on its first poll, wakes it
/// after `delay` (zero: at once).
struct WokenFromAnotherThread {
    delay: Duration,
    fired: Arc<AtomicBool>,
    started: bool,
}

impl Future for WokenFromAnotherThread {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !self.started {
            self.started = true;
            let waker = cx.waker().clone();
            let fired = self.fired.clone();
            let delay = self.delay;
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                fired.store(true, Ordering::Release);
                waker.wake();
            });
        }
        Poll::Pending
    }
}

/// Voluntary switches of the calling thread while `waiter` waits for a
/// wake-up from another thread after `delay`.
fn switches_while_waiting(waiter: Waiter, delay: Duration) -> i64 {
    let future = WokenFromAnotherThread {
        delay,
        fired: Arc::new(AtomicBool::new(false)),
        started: false,
    };
    let before = voluntary_switches();
    waiter.block_on(future);
    voluntary_switches() - before
}

/// How often the spinning wait is tried: the waking thread must run within
/// the spin once, which a loaded 2-core machine may deny a few times.
const ATTEMPTS: usize = 20;

#[test]
fn a_wake_up_within_the_spin_is_caught_without_parking() {
    let spinning = Waiter::new(Duration::from_millis(10));
    let parked_every_time = (0..ATTEMPTS)
        .map(|_| switches_while_waiting(spinning, Duration::ZERO))
        .all(|switches| switches > 0);
    assert!(
        !parked_every_time,
        "a spinning waiter parked in all {ATTEMPTS} waits for an immediate wake-up"
    );
}

#[test]
fn a_wait_past_the_spin_parks_and_a_zero_spin_parks_at_once() {
    let late = Duration::from_millis(30);
    assert!(switches_while_waiting(Waiter::new(Duration::from_micros(50)), late) > 0);
    assert!(switches_while_waiting(Waiter::new(Duration::ZERO), late) > 0);
}

#[test]
fn a_plain_thread_waits_for_the_engine_with_block_on() {
    let (engine, dir) = start("wait-block-on", |_| {});
    let client = engine.client();
    let read = std::thread::spawn(move || {
        block_on(async {
            let (blob, _) = client.open("p", b"waited").await.unwrap();
            blob.write_at(0, b"reply").await.unwrap();
            blob.read_at(0, 5).await.unwrap()
        })
    })
    .join()
    .unwrap();
    assert_eq!(&read[..], b"reply");
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
