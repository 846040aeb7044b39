//! Load generation, generic over "do one op": a target plugs in a closure
//! returning the op's future and a `Sleep` for its executor's timer, and the
//! same closed- and open-loop code drives every engine path and every peer.
//!
//! Every operation is recorded in an HdrHistogram (nanoseconds, no
//! sampling). Warm-up ops run but are not recorded: an op counts if its start
//! (closed loop) or intended start (open loop) lies in the measured window.

pub mod closed;
pub mod open;
pub mod pacer;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures::stream::{Stream, StreamExt};

use hdrhistogram::Histogram;
use serde::Serialize;

/// How load is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Load {
    /// `queue_depth` ops always in flight; a new one starts when one ends.
    Closed { queue_depth: usize },
    /// Ops start on a fixed schedule whatever the target does; latency is
    /// measured from each op's intended start. At most `max_in_flight` ops
    /// are outstanding (a bounded queue): late ops start late and say so.
    Open {
        rate_ops_per_s: u64,
        max_in_flight: usize,
    },
}

impl Load {
    /// `qd1`, `qd32`, `open 10000/s`.
    pub fn label(&self) -> String {
        match self {
            Load::Closed { queue_depth } => format!("qd{queue_depth}"),
            Load::Open { rate_ops_per_s, .. } => format!("open{rate_ops_per_s}/s"),
        }
    }

    /// The most ops this load keeps in flight.
    pub fn max_in_flight(&self) -> usize {
        match *self {
            Load::Closed { queue_depth } => queue_depth,
            Load::Open { max_in_flight, .. } => max_in_flight,
        }
    }
}

/// The time frame of one run: warm-up from `start`, measured from
/// `measure_start` until `end`; a run fails when ops are still in flight
/// `hung_after` past the end (open loop: when none completed for `hung_after`).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub measure_start: Instant,
    pub end: Instant,
    pub hung_after: Duration,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now();
        Window {
            start,
            measure_start: start + warmup,
            end: start + warmup + duration,
            hung_after: HUNG_AFTER,
        }
    }

    /// Whether an op that started (or was meant to start) at `at` is measured.
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.end
    }

    pub fn measured_s(&self) -> f64 {
        (self.end - self.measure_start).as_secs_f64()
    }
}

/// The timer of the executor a load runs on.
pub trait Sleep {
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()>;
}

/// The result of one op.
pub type OpResult = Result<(), String>;

/// Fails an op whose read returned other than the bytes asked for.
pub fn check_read_len(target: &str, got_bytes: usize, wanted_bytes: u64) -> OpResult {
    if got_bytes as u64 == wanted_bytes {
        Ok(())
    } else {
        Err(format!(
            "{target} read: {got_bytes} of {wanted_bytes} bytes"
        ))
    }
}

/// An open-loop op issued more than this after its intended start counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static histogram bounds are valid")
}

fn ns_between(start: Instant, end: Instant) -> u64 {
    u64::try_from(end.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Recording {
    /// Latency of every measured op, in nanoseconds (open loop: from its intended start).
    pub latency_ns: Histogram<u64>,
    /// Open loop: latency of every measured op from its actual issue
    /// (uncorrected for coordinated omission).
    pub uncorrected_ns: Option<Histogram<u64>>,
    /// Length of the measured window.
    pub measured_s: f64,
    /// Open loop: the latest an op was issued after its intended start.
    pub max_issue_lag_ns: u64,
    /// Open loop: measured ops issued more than `LATE_AFTER` after their intended start.
    pub late_ops: u64,
}

impl Recording {
    pub fn new(window: &Window) -> Recording {
        Recording {
            latency_ns: new_histogram(),
            uncorrected_ns: None,
            measured_s: window.measured_s(),
            max_issue_lag_ns: 0,
            late_ops: 0,
        }
    }

    /// Records an op that started (or was meant to start) at `start` and ended at `done`.
    pub fn record(&mut self, window: &Window, start: Instant, done: Instant) {
        if window.measures(start) {
            self.latency_ns.saturating_record(ns_between(start, done));
        }
    }

    /// Records an open-loop op meant to start at `intended`, issued at
    /// `issued`, ended at `done`: both histograms and its lateness.
    pub fn record_open(
        &mut self,
        window: &Window,
        intended: Instant,
        issued: Instant,
        done: Instant,
    ) {
        if !window.measures(intended) {
            return;
        }
        self.latency_ns
            .saturating_record(ns_between(intended, done));
        self.uncorrected_ns
            .get_or_insert_with(new_histogram)
            .saturating_record(ns_between(issued, done));
        let lag_ns = ns_between(intended, issued);
        self.max_issue_lag_ns = self.max_issue_lag_ns.max(lag_ns);
        if lag_ns > LATE_AFTER.as_nanos() as u64 {
            self.late_ops += 1;
        }
    }

    pub fn ops_per_s(&self) -> f64 {
        self.latency_ns.len() as f64 / self.measured_s
    }
}

/// Runs `next_op` under `load` for the window; the first failing op ends the run.
pub async fn run<S, F, Fut>(
    load: Load,
    window: Window,
    sleeper: &S,
    next_op: F,
) -> Result<Recording, String>
where
    S: Sleep,
    F: FnMut() -> Fut,
    Fut: Future<Output = OpResult>,
{
    match load {
        Load::Closed { queue_depth } => closed::run(queue_depth, window, sleeper, next_op).await,
        Load::Open {
            rate_ops_per_s,
            max_in_flight,
        } => open::run(rate_ops_per_s, max_in_flight, window, sleeper, next_op).await,
    }
}

/// How long after the window's end ops may still be in flight before the run
/// is declared hung (a target that never answers fails its case, and the
/// benchmark goes on).
pub const HUNG_AFTER: Duration = Duration::from_secs(30);

/// The next completion of `in_flight`, or an error once `hung` fires.
async fn next_or_hung<St, H>(
    in_flight: &mut St,
    hung: Pin<&mut H>,
    hung_after: Duration,
) -> Result<Option<St::Item>, String>
where
    St: Stream + Unpin,
    H: Future<Output = ()>,
{
    let next = match select(hung, in_flight.next()).await {
        Either::Left(_) => None,
        Either::Right((next, _)) => Some(next),
    };
    next.ok_or_else(|| stopped_answering(hung_after))
}

/// The error of a run whose ops stopped completing.
fn stopped_answering(hung_after: Duration) -> String {
    format!(
        "no op completed for {} ms: the target stopped answering",
        hung_after.as_millis()
    )
}

/// Wraps an op so it reports when it ended, with the start it is measured from.
async fn timed<Fut: Future<Output = OpResult>>(
    op: Fut,
    start: Instant,
) -> (Instant, Instant, OpResult) {
    let result = op.await;
    (start, Instant::now(), result)
}

/// A timer for tests that spins: pending until its deadline, asking to be polled again at once.
#[cfg(test)]
pub struct Due;

#[cfg(test)]
impl Sleep for Due {
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> {
        futures::future::poll_fn(move |cx| {
            if Instant::now() >= deadline {
                std::task::Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_closed_loop_keeps_queue_depth_ops_in_flight_and_stops_at_the_end() {
        let issued = Cell::new(0);
        let window = Window::starting_now(Duration::ZERO, Duration::ZERO);
        let load = Load::Closed { queue_depth: 4 };
        let recording = futures::executor::block_on(run(load, window, &Due, || {
            issued.set(issued.get() + 1);
            async { Ok(()) }
        }))
        .unwrap();
        // The window is over before the first completion: only the first wave runs.
        assert_eq!(issued.get(), 4);
        assert_eq!(recording.latency_ns.len(), 0);
    }

    #[test]
    fn an_open_loop_issues_every_scheduled_op_once() {
        let issued = Cell::new(0u64);
        let window = Window::starting_now(Duration::from_millis(5), Duration::from_millis(10));
        let load = Load::Open {
            rate_ops_per_s: 1000,
            max_in_flight: 8,
        };
        let recording = futures::executor::block_on(run(load, window, &Due, || {
            issued.set(issued.get() + 1);
            async { Ok(()) }
        }))
        .unwrap();
        // 15 ms at 1000/s: 15 ops, the last 10 of them in the measured window.
        assert_eq!(issued.get(), 15);
        assert_eq!(recording.latency_ns.len(), 10);
        assert_eq!(recording.uncorrected_ns.map(|h| h.len()), Some(10));
    }

    #[test]
    fn a_failing_op_ends_the_run_with_its_error() {
        let window = Window::starting_now(Duration::ZERO, Duration::from_secs(1));
        let load = Load::Closed { queue_depth: 2 };
        let error = futures::executor::block_on(run(load, window, &Due, || async {
            Err("device on fire".to_string())
        }))
        .unwrap_err();
        assert_eq!(error, "device on fire");
    }

    #[test]
    fn a_target_that_never_answers_fails_instead_of_hanging() {
        let mut window = Window::starting_now(Duration::ZERO, Duration::from_millis(1));
        window.hung_after = Duration::from_millis(1);
        for load in [
            Load::Closed { queue_depth: 2 },
            Load::Open {
                rate_ops_per_s: 1_000_000,
                max_in_flight: 2,
            },
        ] {
            let result = futures::executor::block_on(run(load, window, &Due, || {
                futures::future::pending::<OpResult>()
            }));
            let error = result.map(|r| r.latency_ns.len()).unwrap_err();
            assert!(error.contains("stopped answering"), "{load:?}: {error}");
        }
    }
}
