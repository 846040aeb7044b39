//! A CPU-bound competitor: a thread pinned to one CPU that computes without
//! pause for as long as it lives, so a case can measure a target on an
//! oversubscribed CPU (the shard's own, with fio's tuned variant pinned there
//! too) as a server sees it when other work shares its cores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct CpuHog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
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
                x
            })
            .ok();
        CpuHog { stop, thread }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hog_stops_when_dropped() {
        let hog = CpuHog::start(0);
        assert!(hog.thread.is_some());
        drop(hog); // joins: the test would hang if the loop ignored the flag
    }
}
