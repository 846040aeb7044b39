//! Closed loop: `queue_depth` ops in flight; each completion starts the next
//! op until the window ends. Latency runs from the op's actual start, so this
//! measures service time under a fixed concurrency, not response time under
//! an offered load (that is `open`).

use std::future::Future;
use std::pin::pin;
use std::time::Instant;

use futures::stream::FuturesUnordered;

use super::{next_or_hung, timed, OpResult, Recording, Sleep, Window};

pub async fn run<S, F, Fut>(
    queue_depth: usize,
    window: Window,
    sleeper: &S,
    mut next_op: F,
) -> Result<Recording, String>
where
    S: Sleep,
    F: FnMut() -> Fut,
    Fut: Future<Output = OpResult>,
{
    let mut recording = Recording::new(&window);
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..queue_depth.max(1) {
        in_flight.push(timed(next_op(), Instant::now()));
    }
    let mut hung = pin!(sleeper.sleep_until(window.end + window.hung_after));
    while let Some((start, done, result)) =
        next_or_hung(&mut in_flight, hung.as_mut(), window.hung_after).await?
    {
        result?;
        recording.record(&window, start, done);
        if done < window.end {
            in_flight.push(timed(next_op(), Instant::now()));
        }
    }
    Ok(recording)
}
