//! Open loop: op `i` is due at `start + i / rate`, whatever the target does.
//! Latency is measured from that intended start, so a stall delays and is
//! charged to every op scheduled behind it (coordinated omission corrected).
//! At most `max_in_flight` ops are outstanding; ops due while the cap is hit
//! start late, and their lateness is part of their latency. If the target
//! falls more than `GIVE_UP_AFTER` behind the end, the rest count as missed.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};

use super::{next_or_hung, timed, OpResult, Recording, Sleep, Window};

const NS_PER_S: u128 = 1_000_000_000;

/// How long past the window's end overdue ops are still issued.
const GIVE_UP_AFTER: Duration = Duration::from_secs(2);

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
    let give_up_at = window.end + GIVE_UP_AFTER.min(window.hung_after);
    let mut recording = Recording::new(&window);
    let mut in_flight = FuturesUnordered::new();
    let mut next_index = 0u64;
    let mut hung = pin!(sleeper.sleep_until(give_up_at + window.hung_after));
    loop {
        let now = Instant::now();
        while next_index < total_ops
            && in_flight.len() < max_in_flight
            && schedule.intended_start(next_index) <= now
        {
            let intended = schedule.intended_start(next_index);
            if window.measures(intended) {
                let lag_ns = now.saturating_duration_since(intended).as_nanos();
                recording.max_issue_lag_ns = recording.max_issue_lag_ns.max(lag_ns as u64);
            }
            in_flight.push(timed(next_op(), intended));
            next_index += 1;
        }
        if next_index < total_ops && now > give_up_at {
            recording.missed_ops = total_ops - next_index;
            next_index = total_ops;
        }
        let completion = if next_index < total_ops && in_flight.len() < max_in_flight {
            let wake = sleeper.sleep_until(schedule.intended_start(next_index));
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
            next_or_hung(&mut in_flight, hung.as_mut(), window.hung_after).await?
        };
        if let Some((intended, done, result)) = completion {
            result?;
            recording.record(&window, intended, done);
        }
    }
    Ok(recording)
}

#[cfg(test)]
mod tests {
    use super::*;
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
