//! Closed loop: `queue_depth` ops in flight; each completion starts the next
//! op until the window ends. Latency runs from the op's actual start, so this
//! measures service time under a fixed concurrency, not response time under
//! an offered load (that is `open`).

use std::future::Future;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};

use super::{timed, OpResult, Recording, Window};

pub async fn run<F, Fut>(
    queue_depth: usize,
    window: Window,
    mut next_op: F,
) -> Result<Recording, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = OpResult>,
{
    let mut recording = Recording::new(&window);
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..queue_depth.max(1) {
        in_flight.push(timed(next_op(), Instant::now()));
    }
    while let Some((start, done, result)) = in_flight.next().await {
        result?;
        recording.record(&window, start, done);
        if done < window.end {
            in_flight.push(timed(next_op(), Instant::now()));
        }
    }
    Ok(recording)
}
