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
//! The test makes it likely: a 100 µs preemption timer, and a thread
//! spinning on the executor's CPU, so that the executor often loses the CPU
//! for a scheduler slice at any point of its loop. The task sleeps 20 µs,
//! `ROUNDS` times; each wake-up is such a pass. Unpatched (2026-12-01, with
//! 5,000 rounds, beside other test loops), the task stopped for good after
//! 177, 43 and 1,612 rounds in three runs; patched, it finishes in about a
//! second.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Wake-ups the task goes through.
const ROUNDS: u32 = 10_000;
/// The executor's preemption timer: far shorter than a scheduler slice.
const PREEMPT: Duration = Duration::from_micros(100);
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

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
        assert_eq!(rc, 0, "sched_setaffinity");
    }
}

#[test]
fn a_task_woken_before_a_preempted_pass_still_runs() {
    let cpu = last_cpu();
    let rounds = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spinner_stop = stop.clone();
    let spinner = std::thread::spawn(move || {
        pin(cpu);
        while !spinner_stop.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    let counted = rounds.clone();
    // Not joined on failure: a stranded executor never returns.
    std::thread::spawn(move || {
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
    while last < ROUNDS && still_s < STILL_S_MAX {
        std::thread::sleep(Duration::from_secs(1));
        let now = rounds.load(Ordering::Relaxed);
        still_s = if now == last { still_s + 1 } else { 0 };
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert_eq!(
        last, ROUNDS,
        "the task stopped after {last} of {ROUNDS} wake-ups: woken, never run"
    );
}
