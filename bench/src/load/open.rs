//! Open loop: op `i` is due at `start + i / rate`, whatever the target does.
//! The harness's pacer thread (`pacer`) wakes the loop at each intended
//! start, so every target is paced by the same clock.
//! Latency is measured from that intended start, so a stall delays and is
//! charged to every op scheduled behind it (coordinated omission corrected).
//! At most `max_in_flight` ops are outstanding; ops due while the cap is hit
//! start late, and their lateness is part of their latency. No op is dropped:
//! however far a target falls behind, every scheduled op is issued and
//! recorded (the run only fails when nothing completes for `hung_after`).
//! Each op is also recorded from its actual issue (the uncorrected
//! histogram), and ops issued more than `LATE_AFTER` late are counted.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};

use super::pacer::Pacer;
use super::{stopped_answering, OpResult, Recording, Sleep, Window};

const NS_PER_S: u128 = 1_000_000_000;

/// Wraps an op so it reports its intended start, its issue and its end.
async fn timed_open<Fut: Future<Output = OpResult>>(
    op: Fut,
    intended: Instant,
) -> (Instant, Instant, Instant, OpResult) {
    let issued = Instant::now();
    let result = op.await;
    (intended, issued, Instant::now(), result)
}

/// The fixed schedule of intended starts.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate_ops_per_s: u64,
}

impl Schedule {
    pub fn new(start: Instant, rate_ops_per_s: u64) -> Schedule {
        Schedule {
            start,
            rate_ops_per_s: rate_ops_per_s.max(1),
        }
    }

    /// Nanoseconds from the start to op `index`'s intended start.
    pub fn offset_ns(&self, index: u64) -> u64 {
        (u128::from(index) * NS_PER_S / u128::from(self.rate_ops_per_s)) as u64
    }

    pub fn intended_start(&self, index: u64) -> Instant {
        self.start + Duration::from_nanos(self.offset_ns(index))
    }

    /// How many ops are due strictly before `elapsed_ns` after the start.
    pub fn ops_before_ns(&self, elapsed_ns: u64) -> u64 {
        let scaled = u128::from(elapsed_ns) * u128::from(self.rate_ops_per_s);
        scaled.div_ceil(NS_PER_S) as u64
    }

    pub fn ops_before(&self, at: Instant) -> u64 {
        let elapsed_ns = at.saturating_duration_since(self.start).as_nanos();
        self.ops_before_ns(u64::try_from(elapsed_ns).unwrap_or(u64::MAX))
    }
}

pub async fn run<S, F, Fut>(
    rate_ops_per_s: u64,
    max_in_flight: usize,
    window: Window,
    sleeper: &S,
    mut next_op: F,
) -> Result<Recording, String>
where
    S: Sleep,
    F: FnMut() -> Fut,
    Fut: Future<Output = OpResult>,
{
    let max_in_flight = max_in_flight.max(1);
    let schedule = Schedule::new(window.start, rate_ops_per_s);
    let total_ops = schedule.ops_before(window.end);
    let mut recording = Recording::new(&window);
    let mut in_flight = FuturesUnordered::new();
    let mut next_index = 0u64;
    let mut completed_since_armed = 0u64;
    let mut hung = pin!(sleeper.sleep_until(window.end + window.hung_after));
    let pacer = Pacer::start(schedule, total_ops)?;
    loop {
        let now = Instant::now();
        while next_index < total_ops
            && in_flight.len() < max_in_flight
            && schedule.intended_start(next_index) <= now
        {
            in_flight.push(timed_open(next_op(), schedule.intended_start(next_index)));
            next_index += 1;
        }
        let completion = if next_index < total_ops && in_flight.len() < max_in_flight {
            let wake = pacer.tick();
            if in_flight.is_empty() {
                wake.await;
                None
            } else {
                match select(pin!(wake), in_flight.next()).await {
                    Either::Left(_) => None,
                    Either::Right((completion, _)) => completion,
                }
            }
        } else if in_flight.is_empty() {
            break;
        } else {
            match select(hung.as_mut(), in_flight.next()).await {
                Either::Left(_) if completed_since_armed == 0 => {
                    return Err(stopped_answering(window.hung_after))
                }
                Either::Left(_) => {
                    // Behind but progressing: wait another `hung_after`.
                    completed_since_armed = 0;
                    hung.set(sleeper.sleep_until(Instant::now() + window.hung_after));
                    None
                }
                Either::Right((completion, _)) => completion,
            }
        };
        if let Some((intended, issued, done, result)) = completion {
            result?;
            completed_since_armed += 1;
            recording.record_open(&window, intended, issued, done);
        }
    }
    Ok(recording)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Due;
    use futures::FutureExt;
    use shardblob_shards::rng::Rng;

    #[test]
    fn schedule_spaces_ops_evenly() {
        let schedule = Schedule::new(Instant::now(), 1000);
        assert_eq!(schedule.offset_ns(0), 0);
        assert_eq!(schedule.offset_ns(1), 1_000_000);
        assert_eq!(schedule.offset_ns(1000), 1_000_000_000);
        let odd = Schedule::new(Instant::now(), 3);
        assert_eq!(odd.offset_ns(1), 333_333_333);
        assert_eq!(odd.offset_ns(3), 1_000_000_000);
    }

    #[test]
    fn ops_before_counts_exactly_the_ops_due_earlier() {
        let mut rng = Rng::new(11);
        for _ in 0..10_000 {
            let rate = 1 + rng.below(200_000);
            let schedule = Schedule::new(Instant::now(), rate);
            let elapsed_ns = rng.below(5_000_000_000);
            let due = schedule.ops_before_ns(elapsed_ns);
            assert!(
                due == 0 || schedule.offset_ns(due - 1) < elapsed_ns,
                "rate {rate}"
            );
            assert!(schedule.offset_ns(due) >= elapsed_ns, "rate {rate}");
        }
    }

    #[test]
    fn a_window_holds_rate_times_duration_ops() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 10_000);
        assert_eq!(schedule.ops_before(start + Duration::from_secs(2)), 20_000);
        assert_eq!(schedule.ops_before(start), 0);
    }

    #[test]
    fn an_overloaded_target_has_every_op_recorded_and_late_ones_counted() {
        // 20 ops due 1 ms apart, each taking at least 5 ms, one at a time:
        // op i is issued at least 4i ms late. None is dropped.
        let window = Window::starting_now(Duration::ZERO, Duration::from_millis(20));
        let recording = futures::executor::block_on(run(1000, 1, window, &Due, || {
            Due.sleep_until(Instant::now() + Duration::from_millis(5))
                .map(Ok)
        }))
        .unwrap();
        assert_eq!(recording.latency_ns.len(), 20);
        assert!(recording.late_ops >= 19, "{} late", recording.late_ops);
        let uncorrected = recording.uncorrected_ns.unwrap();
        assert_eq!(uncorrected.len(), 20);
        // Corrected latency includes the wait for issue: above the service time.
        assert!(recording.latency_ns.max() > uncorrected.max());
    }

    #[test]
    fn a_stall_is_charged_to_every_op_scheduled_behind_it() {
        // A 10 ms stall at a 1000 ops/s schedule: ten ops complete together
        // when it ends; measured from their intended starts they waited
        // 10, 9, ..., 1 ms, not the ~0 a closed-loop clock would show.
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000);
        let window = Window {
            start,
            measure_start: start,
            end: start + Duration::from_secs(1),
            hung_after: Duration::from_secs(1),
        };
        let stall_end = start + Duration::from_millis(10);
        let mut recording = Recording::new(&window);
        for i in 0..10 {
            recording.record(&window, schedule.intended_start(i), stall_end);
        }
        let h = &recording.latency_ns;
        assert_eq!(h.len(), 10);
        assert!(
            h.equivalent(h.min(), 1_000_000),
            "shortest wait {} ns",
            h.min()
        );
        assert!(
            h.equivalent(h.max(), 10_000_000),
            "longest wait {} ns",
            h.max()
        );
        assert!(h.equivalent(h.value_at_quantile(0.5), 5_000_000));
        // Before the measured window (warm-up) nothing is recorded.
        let later = Window {
            start,
            measure_start: stall_end,
            end: stall_end + Duration::from_secs(1),
            hung_after: Duration::from_secs(1),
        };
        let mut warm = Recording::new(&later);
        warm.record(&later, start, stall_end);
        assert_eq!(warm.latency_ns.len(), 0);
    }
}
