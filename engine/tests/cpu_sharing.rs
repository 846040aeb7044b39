//! Threads that are not shards keep running beside busy shards (issue 16,
//! item 3; the choice and its cost are in README, "Sharing CPUs with the
//! embedding program").
//!
//! The mechanism: a shard is an ordinary thread (it keeps the scheduling
//! policy and nice value of the thread that started the engine: here
//! SCHED_OTHER, nice 0), so the kernel shares its CPU fairly with any other
//! thread placed there (an idle shard's spin yields its CPU too:
//! `spin_yield.rs`); and the blocking pool that runs handed-off syncs is
//! not pinned to the shard's CPU. While a task keeps every shard's executor
//! computing, a thread pinned beside each shard counts its CPU time against
//! the shard thread's (counted, not timed: the shares are ratios of CPU
//! time), and a caller pinned to a shard's CPU finishes a fixed number of
//! requests and handed-off syncs. The shards stay busy until the caller is
//! done and each shard's CPU has been busy for `WINDOW_CPU_NS`; a caller or
//! pool that never runs hangs the test, which `without_hanging` turns into
//! a failure.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use futures::executor::block_on;
use shardblob::{Blob, Storage};
use support::{compute, partition_on, pin_to, start, without_hanging};

/// CPU time of each shard's CPU (shard and worker together) that the
/// window lasts at least: about 0.4 s of wall time when the two share it.
const WINDOW_CPU_NS: u64 = 400_000_000;
/// Write-and-read pairs the pinned caller makes while the shards are busy.
const PAIRS: u64 = 200;
/// The caller syncs once every this many writes; each sync is handed to the
/// shard's blocking pool (`sync_inline_when_idle = false`).
const SYNC_EVERY: u64 = 10;
/// Least share of a CPU's time, between the shard and the thread pinned
/// beside it, that each must get: half of the fair half.
const SHARE_MIN: f64 = 0.25;
/// How long a computing shard's task computes between two polls of its
/// rings and queues, in thread CPU time.
const COMPUTE_STEP_NS: u64 = 50_000;

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// How many CPUs the calling thread may run on.
fn allowed_cpus() -> usize {
    // SAFETY: sched_getaffinity fills the zeroed cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(rc, 0, "sched_getaffinity");
        libc::CPU_COUNT(&set) as usize
    }
}

/// The counting window shared by the busy shards, the pinned threads and
/// the caller: counting starts at `go` and ends at `stop`.
#[derive(Default)]
struct Window {
    go: AtomicBool,
    stop: AtomicBool,
    /// CPU time spent in the window so far, per shard and per worker.
    shard_ns: [AtomicU64; 2],
    worker_ns: [AtomicU64; 2],
}

impl Window {
    /// Counts the calling thread's CPU time into `spent` from `go` to
    /// `stop`, running `step` (which must come back soon) in between.
    async fn count_cpu_ns(&self, spent: &AtomicU64, mut step: impl AsyncFnMut()) {
        while !self.go.load(Ordering::SeqCst) {
            step().await;
        }
        let start_ns = thread_cpu_ns();
        while !self.stop.load(Ordering::SeqCst) {
            step().await;
            spent.store(thread_cpu_ns() - start_ns, Ordering::SeqCst);
        }
    }

    /// Ends the window once `done` says so (a caller finished, done or
    /// panicked) and each shard's CPU has been busy `WINDOW_CPU_NS`.
    fn close_when_counted(&self, done: impl Fn() -> bool) {
        let busy_ns = |shard: usize| {
            self.shard_ns[shard].load(Ordering::SeqCst)
                + self.worker_ns[shard].load(Ordering::SeqCst)
        };
        // Bounded: each pinned worker computes until `stop`, so its CPU
        // time grows; a caller is bounded by `without_hanging`.
        while !done() || busy_ns(0) < WINDOW_CPU_NS || busy_ns(1) < WINDOW_CPU_NS {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Keeps shard `shard` busy until the window ends: a task that computes
/// `COMPUTE_STEP_NS` at a time, then sleeps 1 µs, so the executor always
/// has a timer due and never sleeps, yet polls its rings and queues between
/// steps and so keeps serving requests. (A task that only yields would hold
/// its task queue for glommio's whole preemption period, and each request
/// would wait that long.) Reports `(shard, its CPU, CPUs its blocking pool
/// may use)`.
fn busy_shard(
    client: &shardblob::Client,
    shard: usize,
    window: &Arc<Window>,
    report: mpsc::Sender<(usize, usize, usize)>,
) -> impl std::future::Future<Output = shardblob::Result<()>> {
    let window = window.clone();
    client.spawn_on(shard, move |_| async move {
        // SAFETY: sched_getcpu has no arguments; the shard is pinned.
        let cpu = unsafe { libc::sched_getcpu() } as usize;
        let pool_cpus = glommio::executor().spawn_blocking(allowed_cpus).await;
        report.send((shard, cpu, pool_cpus)).unwrap();
        let mut x = 1u64;
        let step = async || {
            let until_ns = thread_cpu_ns() + COMPUTE_STEP_NS;
            // Bounded: the thread's CPU time grows while it computes.
            while thread_cpu_ns() < until_ns {
                compute(&mut x);
            }
            glommio::timer::sleep(std::time::Duration::from_micros(1)).await
        };
        window.count_cpu_ns(&window.shard_ns[shard], step).await
    })
}

/// A thread of the embedding program pinned beside shard `shard` on `cpu`:
/// computes until the window ends.
fn pinned_worker(shard: usize, cpu: usize, window: &Arc<Window>) -> std::thread::JoinHandle<()> {
    let window = window.clone();
    std::thread::spawn(move || {
        pin_to(cpu);
        let mut x = 1u64;
        let step = async || compute(&mut x);
        block_on(window.count_cpu_ns(&window.worker_ns[shard], step));
    })
}

/// Keeps both shards busy, starts a worker pinned beside each,
/// opens the window and runs `during` (given the shards' CPUs) in it; the
/// window closes when `during` has returned and the CPUs were counted.
/// Returns the shards' reports and what `during` returned.
fn in_window<T: Send + 'static>(
    engine: &shardblob::Engine,
    window: &Arc<Window>,
    during: impl FnOnce([usize; 2]) -> T + Send + 'static,
) -> (Vec<(usize, usize, usize)>, T) {
    let client = engine.client();
    let (report_tx, report_rx) = mpsc::channel();
    let kept: Vec<_> = (0..2)
        .map(|shard| busy_shard(&client, shard, window, report_tx.clone()))
        .collect();
    drop(report_tx);
    let window = window.clone();
    without_hanging(move || {
        let reports: Vec<(usize, usize, usize)> = report_rx.iter().take(2).collect();
        let mut cpus = [0; 2];
        for &(shard, cpu, _) in &reports {
            cpus[shard] = cpu;
        }
        let workers: Vec<_> = (0..2)
            .map(|shard| pinned_worker(shard, cpus[shard], &window))
            .collect();
        window.go.store(true, Ordering::SeqCst);
        let during = std::thread::spawn(move || during(cpus));
        window.close_when_counted(|| during.is_finished());
        let outcome = during.join().expect("the work run in the window");
        workers.into_iter().for_each(|w| w.join().unwrap());
        kept.into_iter().for_each(|k| block_on(k).unwrap());
        (reports, outcome)
    })
}

/// The pinned caller: `PAIRS` writes and reads of a blob on shard 1 from a
/// thread on `cpu`, a sync every `SYNC_EVERY` writes. Returns the syncs.
fn pinned_caller(client: shardblob::Client, partition: String, cpu: usize) -> u64 {
    pin_to(cpu);
    block_on(async {
        let (blob, _) = client.open(&partition, b"caller").await.unwrap();
        let mut synced = 0;
        for pair in 0..PAIRS {
            blob.write_at(8 * pair, &pair.to_le_bytes()).await.unwrap();
            let read = blob.read_at(8 * pair, 8).await.unwrap();
            assert_eq!(&read[..], &pair.to_le_bytes()[..], "pair {pair}");
            if (pair + 1).is_multiple_of(SYNC_EVERY) {
                blob.sync().await.unwrap();
                synced += 1;
            }
        }
        synced
    })
}

/// The share of a CPU's counted time that `own_ns` is, against `other_ns`.
fn share(own_ns: u64, other_ns: u64) -> f64 {
    own_ns as f64 / (own_ns + other_ns).max(1) as f64
}

/// Checked by hand on the commit that last changed this file to fail when
/// shards take their CPUs from other threads (the busy task raising its
/// shard thread to nice -20 with `setpriority`) and when the blocking pool
/// is pinned to its shard's CPU (`PoolPlacement::Custom` with that CPU in
/// `engine.rs`); the commit message has the figures.
#[test]
fn threads_beside_busy_shards_get_their_share_and_requests_finish() {
    let (engine, dir) = start("cpu-sharing", |c| {
        c.spin_before_park_us = 10_000;
        c.sync_inline_when_idle = false;
    });
    assert_eq!(engine.shard_count(), 2, "the window counts two shards");
    let (client, there) = (engine.client(), partition_on(&engine, 1, "p"));
    let window = Arc::new(Window::default());
    let (reports, synced) = in_window(&engine, &window, move |cpus| {
        pinned_caller(client, there, cpus[0])
    });
    assert_eq!(synced, PAIRS / SYNC_EVERY);
    check_pools(&reports);
    check_shares(&window);
    drop(engine);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every shard reported, and its blocking pool may use every CPU this test
/// may use.
fn check_pools(reports: &[(usize, usize, usize)]) {
    assert_eq!(reports.len(), 2, "every busy task reports: {reports:?}");
    let test_cpus = allowed_cpus();
    for &(shard, _, pool_cpus) in reports {
        assert_eq!(
            pool_cpus, test_cpus,
            "shard {shard}'s blocking pool may use {pool_cpus} CPUs, the test {test_cpus}"
        );
    }
}

/// Each shard's CPU was shared: the worker and the shard each got a share.
fn check_shares(window: &Window) {
    for shard in 0..2 {
        let shard_ns = window.shard_ns[shard].load(Ordering::SeqCst);
        let worker_ns = window.worker_ns[shard].load(Ordering::SeqCst);
        let (worker, busy) = (share(worker_ns, shard_ns), share(shard_ns, worker_ns));
        eprintln!("shard {shard}'s CPU: the worker {worker:.3}, the shard {busy:.3}");
        assert!(
            worker >= SHARE_MIN,
            "shard {shard}'s CPU: worker {worker:.3}"
        );
        assert!(
            busy >= SHARE_MIN,
            "shard {shard} was not kept busy: {busy:.3}"
        );
    }
}
