//! A CPU-bound competitor: a thread pinned to one CPU that computes without
//! pause for as long as it lives, so a case can measure a target on an
//! oversubscribed CPU (the shard's own, with fio's tuned variant pinned there
//! too) as a server sees it when other work shares its cores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct CpuHog {
    stop: Arc<AtomicBool>,
    /// Returns the thread's own (user, system) CPU seconds.
    thread: Option<JoinHandle<(f64, f64)>>,
}

/// The calling thread's (user, system) CPU seconds.
fn thread_cpu_s() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(usage.ru_utime), s(usage.ru_stime))
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t we own, filled by the libc macros, passed by pointer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

impl CpuHog {
    /// Starts the competitor on `cpu`; it stops when dropped.
    pub fn start(cpu: usize) -> CpuHog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-cpu-hog".into())
            .spawn(move || {
                pin_to(cpu);
                let mut x = 1u64;
                while !flag.load(Ordering::Relaxed) {
                    for _ in 0..1000 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                }
                std::hint::black_box(x);
                thread_cpu_s()
            })
            .ok();
        CpuHog { stop, thread }
    }
}

impl CpuHog {
    /// Stops the competitor; the (user, system) CPU seconds it burnt, which
    /// the measured target's figures must not count.
    pub fn stop(mut self) -> (f64, f64) {
        self.halt()
    }

    fn halt(&mut self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hog_stops_and_reports_its_own_cpu_time() {
        let hog = CpuHog::start(0);
        assert!(hog.thread.is_some());
        let (user_s, system_s) = hog.stop(); // joins: would hang if the loop ignored the flag
        assert!(user_s >= 0.0 && system_s >= 0.0);
        drop(CpuHog::start(0)); // dropping stops it too
    }
}
