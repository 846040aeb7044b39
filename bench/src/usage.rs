//! What a target costs the machine while it runs a case: CPU time and
//! context switches of this process and its reaped children (fio), and the
//! data disk's interrupts, as the difference of two snapshots.

use std::time::Instant;

use crate::irq::DiskIrqs;
use crate::result::Resources;

/// A point-in-time reading of the counters.
pub struct Snapshot {
    at: Instant,
    user_s: f64,
    system_s: f64,
    voluntary: u64,
    involuntary: u64,
    interrupts: u64,
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

impl Snapshot {
    pub fn now(disk: Option<&DiskIrqs>) -> Snapshot {
        let (own, children) = (rusage(libc::RUSAGE_SELF), rusage(libc::RUSAGE_CHILDREN));
        Snapshot {
            at: Instant::now(),
            user_s: seconds(own.ru_utime) + seconds(children.ru_utime),
            system_s: seconds(own.ru_stime) + seconds(children.ru_stime),
            voluntary: (own.ru_nvcsw + children.ru_nvcsw) as u64,
            involuntary: (own.ru_nivcsw + children.ru_nivcsw) as u64,
            interrupts: disk.map_or(0, DiskIrqs::total),
        }
    }

    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &Snapshot) -> Resources {
        Resources {
            wall_s: (later.at - self.at).as_secs_f64(),
            cpu_user_s: later.user_s - self.user_s,
            cpu_system_s: later.system_s - self.system_s,
            voluntary_switches: later.voluntary.saturating_sub(self.voluntary),
            involuntary_switches: later.involuntary.saturating_sub(self.involuntary),
            disk_interrupts: later.interrupts.saturating_sub(self.interrupts),
            ..Resources::default()
        }
    }
}
