//! Load generation, generic over "do one op": a target plugs in a closure
//! returning the op's future and a `Sleep` for its executor's timer, and the
//! same closed- and open-loop code drives every engine path and every peer.
//!
//! Every operation is recorded in an HdrHistogram (nanoseconds, no
//! sampling). Warm-up ops run but are not recorded: an op counts if its start
//! (closed loop) or intended start (open loop) lies in the measured window.

pub mod closed;
pub mod open;

use std::future::Future;
use std::time::{Duration, Instant};

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
/// `measure_start` until `end`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub measure_start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now();
        Window {
            start,
            measure_start: start + warmup,
            end: start + warmup + duration,
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

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Recording {
    /// Latency of every measured op, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Length of the measured window.
    pub measured_s: f64,
    /// Open loop: the latest an op was issued after its intended start.
    pub max_issue_lag_ns: u64,
    /// Open loop: scheduled ops never issued because the target fell too far behind.
    pub missed_ops: u64,
}

impl Recording {
    pub fn new(window: &Window) -> Recording {
        Recording {
            // 1 ns .. 100 s at 3 significant digits.
            latency_ns: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            measured_s: window.measured_s(),
            max_issue_lag_ns: 0,
            missed_ops: 0,
        }
    }

    /// Records an op that started (or was meant to start) at `start` and ended at `done`.
    pub fn record(&mut self, window: &Window, start: Instant, done: Instant) {
        if window.measures(start) {
            let latency_ns = done.saturating_duration_since(start).as_nanos();
            self.latency_ns
                .saturating_record(u64::try_from(latency_ns).unwrap_or(u64::MAX));
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
        Load::Closed { queue_depth } => closed::run(queue_depth, window, next_op).await,
        Load::Open {
            rate_ops_per_s,
            max_in_flight,
        } => open::run(rate_ops_per_s, max_in_flight, window, sleeper, next_op).await,
    }
}

/// Wraps an op so it reports when it ended, with the start it is measured from.
async fn timed<Fut: Future<Output = OpResult>>(
    op: Fut,
    start: Instant,
) -> (Instant, Instant, OpResult) {
    let result = op.await;
    (start, Instant::now(), result)
}
