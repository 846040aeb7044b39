//! The patched glommio (third_party/glommio/PATCHES.md, patch 4): a task
//! woken in one pass of the executor's loop still runs when the next pass
//! finds its preemption timer already fired.
//!
//! glommio 0.9.0's `run_task_queues` checks for preemption before it runs
//! a task queue, and on preemption returns what it ran so far: nothing. The
//! loop reads that as "no work" and parks, and the park sleeps, since no
//! event came in that pass, with the woken task still in its queue, until
//! some other event comes. A pass arms the timer just before the check, so
//! it fires there only when the thread loses its CPU for the timer's whole
//! duration in between: on a loaded host, with the default 100 ms, rarely
//! (a stalled shard); with patch 1's kept timers, half as long. It was the
//! hang that turned patch 1 off.
//!
//! The test makes it likely: a 100 µs preemption timer, and a real-time
//! thread on the executor's CPU that takes the CPU for 200 µs, then sleeps
//! 200 µs, wherever the executor is in its loop. The task sleeps 20 µs,
//! `ROUNDS` times; each wake-up is such a pass. On a quiet machine
//! (2026-12-01), unpatched, the task stopped for good after 111, 29 and
//! 190 wake-ups with patch 1's kept timers (the default) and after 2,234
//! with upstream's (`GLOMMIO_KEEP_PREEMPTION_TIMERS=0`); patched, the
//! 30,000 took about four seconds in each of three runs. Needs root, for
//! the real-time thread.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use support::pin_to;

/// Wake-ups the task goes through.
const ROUNDS: u32 = 30_000;
/// The executor's preemption timer: shorter than `STALL`.
const PREEMPT: Duration = Duration::from_micros(100);
/// How long the real-time thread holds the executor's CPU each time: longer
/// than `PREEMPT`, so a timer armed just before fires in it.
const STALL: Duration = Duration::from_micros(200);
/// How long it leaves the CPU between stalls: the executor keeps about
/// half of its CPU.
const GAP: Duration = Duration::from_micros(200);
/// Seconds without a round after which the task counts as stranded: a
/// round takes tens of µs, a slice a few ms.
const STILL_S_MAX: u32 = 5;

/// The last CPU this process may run on.
fn last_cpu() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set);
        assert_eq!(rc, 0, "sched_getaffinity");
        set
    };
    (0..libc::CPU_SETSIZE as usize)
        .rev()
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .expect("at least one CPU")
}

/// Makes the calling thread a real-time one (`SCHED_FIFO`), which takes
/// its CPU from the executor at once when it wakes, wherever the executor is.
fn realtime() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param for the call.
    match unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[test]
fn a_task_woken_before_a_preempted_pass_still_runs() {
    let cpu = last_cpu();
    let rounds = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spinner_stop = stop.clone();
    let (ready, is_realtime) = std::sync::mpsc::channel();
    let spinner = std::thread::spawn(move || {
        pin_to(cpu);
        let realtime = realtime();
        let failed = realtime.is_err();
        ready.send(realtime).unwrap();
        if failed {
            return;
        }
        while !spinner_stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            while start.elapsed() < STALL {
                std::hint::spin_loop();
            }
            std::thread::sleep(GAP);
        }
    });
    if let Err(error) = is_realtime.recv().unwrap() {
        spinner.join().unwrap();
        panic!("the test needs a SCHED_FIFO thread (root, CAP_SYS_NICE): {error}");
    }
    let counted = rounds.clone();
    // Joined only once it made every round: a stranded executor never
    // returns, and the process's exit ends it.
    let executor = std::thread::spawn(move || {
        let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .preempt_timer(PREEMPT)
            .make()
            .expect("executor");
        executor.run(async {
            for _ in 0..ROUNDS {
                glommio::timer::sleep(Duration::from_micros(20)).await;
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
    });
    let mut last = 0;
    let mut still_s = 0;
    while last < ROUNDS && still_s < STILL_S_MAX && !executor.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let now = rounds.load(Ordering::Relaxed);
        still_s = if now == last { still_s + 1 } else { 0 };
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    if executor.is_finished() || last == ROUNDS {
        // Reports the executor's own failure (a setup error) as itself.
        executor.join().expect("the executor's thread");
    }
    assert_eq!(
        rounds.load(Ordering::Relaxed),
        ROUNDS,
        "the task stopped after {last} of {ROUNDS} wake-ups: woken, never run"
    );
}
