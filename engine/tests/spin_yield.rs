//! glommio patch 2 (`third_party/glommio/PATCHES.md`): an idle shard's spin
//! starts with a yield of its CPU, at most one per 200 µs, unless a yield
//! came back late, which says that another thread computes on that CPU;
//! then it spins as upstream does for a while. Counted by the kernel: a perf counter on the
//! `sys_enter_sched_yield` tracepoint, attached to the shard's thread,
//! counts its yields (no trace buffer to overflow).
//!
//! Needs root (or `perf_event_paranoid` <= 1) and tracefs for the
//! tracepoint's id.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{compute, ftrace, pin_to, start};

/// The tracepoint's id, under tracefs.
const EVENT_ID: &str = "/sys/kernel/tracing/events/syscalls/sys_enter_sched_yield/id";
/// Held by the test that runs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// How long the shard idles in each test, its executor kept awake.
const IDLE: Duration = Duration::from_millis(300);
/// How often the idle shard's task wakes: well within its 10 ms spin, so
/// the shard spins between wake-ups and never parks.
const WAKE_EVERY: Duration = Duration::from_millis(2);

/// `struct perf_event_attr` up to `config1` (`PERF_ATTR_SIZE_VER0`): a
/// counting event, enabled at once, every other field zero.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

/// A perf counter of the sched_yield calls of one thread.
struct YieldCount {
    fd: std::fs::File,
}

impl YieldCount {
    fn start(tid: i32) -> YieldCount {
        ftrace::ensure_tracefs();
        let id = std::fs::read_to_string(EVENT_ID).unwrap_or_else(|e| {
            panic!("this test needs tracefs and syscall events: {EVENT_ID}: {e}")
        });
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: id.trim().parse().expect("a tracepoint id"),
            ..PerfEventAttr::default()
        };
        // SAFETY: perf_event_open reads `attr`, which outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                tid,
                -1,
                -1,
                0,
            )
        };
        assert!(
            fd >= 0,
            "perf_event_open: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a descriptor perf_event_open just returned, owned here.
        let fd = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        YieldCount { fd }
    }

    /// The yields counted so far.
    fn count(&self) -> u64 {
        let mut value = [0u8; 8];
        std::io::Read::read_exact(&mut &self.fd, &mut value).expect("read the counter");
        u64::from_ne_bytes(value)
    }
}

/// Keeps the one shard of a fresh engine idle and spinning for `IDLE`,
/// with `beside` (if any) computing on a thread pinned to its CPU
/// meanwhile; returns the shard's yields, counted from when that thread
/// runs there.
fn yields_while_idle(beside: bool) -> u64 {
    // One at a time: both tests put their shard on the same CPU.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tag = if beside {
        "spin-yield-beside"
    } else {
        "spin-yield-idle"
    };
    let (engine, dir) = start(tag, |c| {
        c.shards = 1;
        c.spin_before_park_us = 10_000;
    });
    let client = engine.client();
    let (tid, cpu) = shardblob::wait::block_on(client.spawn_on(0, |_| async {
        // SAFETY: gettid and sched_getcpu have no preconditions.
        unsafe { (libc::gettid(), libc::sched_getcpu() as usize) }
    }))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (running_tx, running_rx) = std::sync::mpsc::channel();
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if beside {
                pin_to(cpu);
                running_tx.send(()).unwrap();
                compute_until(&stop);
            }
        })
    };
    if beside {
        running_rx.recv().expect("the computing thread runs");
    }
    let count = YieldCount::start(tid);
    shardblob::wait::block_on(client.spawn_on(0, |_| async {
        let until = std::time::Instant::now() + IDLE;
        // Bounded by the clock: IDLE / WAKE_EVERY wake-ups.
        while std::time::Instant::now() < until {
            glommio::timer::sleep(WAKE_EVERY).await;
        }
    }))
    .unwrap();
    let yields = count.count();
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    drop(count);
    drop(engine);
    std::fs::remove_dir_all(dir).unwrap();
    yields
}

/// Computes until `stop` is set.
fn compute_until(stop: &AtomicBool) {
    let mut x = 1u64;
    // Bounded by the test: it sets `stop` after IDLE.
    while !stop.load(Ordering::SeqCst) {
        compute(&mut x);
    }
}

/// Attempts of `an_idle_spinning_shard_yields_as_each_spin_starts`: a thread
/// of another process computing on the shard's CPU makes the spin stop
/// yielding for a while, as it should; the test needs one attempt with the
/// CPU free.
const IDLE_ATTEMPTS: usize = 3;

/// Checked by hand to fail without the yield (0 yields).
#[test]
fn an_idle_spinning_shard_yields_as_each_spin_starts() {
    let mut yields = 0;
    for _ in 0..IDLE_ATTEMPTS {
        yields = yields_while_idle(false);
        eprintln!("{yields} yields in {IDLE:?} of idle spinning");
        // A spin starts at each wake-up: IDLE / WAKE_EVERY of them (150).
        if yields >= 100 {
            return;
        }
    }
    panic!("{yields} yields: the idle spin does not yield");
}

/// Checked by hand to fail with a yield as each spin starts whatever the
/// CPU (every yield then waits out the computing thread's time slice: 69
/// yields counted in IDLE).
#[test]
fn a_shard_beside_a_computing_thread_stops_yielding() {
    let yields = yields_while_idle(true);
    eprintln!("{yields} yields in {IDLE:?} beside a computing thread");
    // One late yield per 250 ms of contention, and a few short ones.
    assert!(yields <= 30, "{yields} yields beside a computing thread");
}
