//! `shardblob::wait`: a plain thread waits for the engine's replies by
//! spinning before it parks. Checked by counting the thread's voluntary
//! context switches (each park is one), not by a clock threshold.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use shardblob::wait::{block_on, Waiter, SPIN_DEFAULT};
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
fn a_wait_past_the_spin_parks() {
    let late = Duration::from_millis(30);
    assert!(switches_while_waiting(Waiter::new(Duration::from_micros(50)), late) > 0);
}

#[test]
fn a_zero_spin_parks_even_for_an_immediate_wake_up() {
    let parked = (0..ATTEMPTS)
        .filter(|_| switches_while_waiting(Waiter::new(Duration::ZERO), Duration::ZERO) > 0)
        .count();
    // The waking thread may win the race to the flag now and then.
    assert!(
        parked > ATTEMPTS / 2,
        "parked in {parked} of {ATTEMPTS} waits"
    );
}

#[test]
fn block_on_until_wakes_for_its_deadline_without_a_waker() {
    let deadline = Instant::now() + Duration::from_millis(5);
    let mut asked = 0;
    let woke = Waiter::new(Duration::ZERO).block_on_until(
        std::future::poll_fn(|_| match Instant::now() >= deadline {
            true => Poll::Ready(Instant::now()),
            false => Poll::Pending,
        }),
        || {
            asked += 1;
            Some(deadline)
        },
    );
    assert!(woke >= deadline && asked >= 1, "asked {asked} times");
}

#[test]
fn the_default_spin_is_the_engines_spin_before_park() {
    let config = shardblob::Config::default();
    assert_eq!(
        SPIN_DEFAULT,
        Duration::from_micros(config.spin_before_park_us)
    );
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
