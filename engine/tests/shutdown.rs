//! Shutdown and user tasks: `Engine::shutdown` waits for running `spawn_on`
//! tasks within a grace period, every `spawn_on` future resolves, the LOCK
//! is released in every case, and a task that panics before its future
//! exists does not take its shard down.
//!
//! Issue 11, items 3 and 4.

mod support;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use futures::executor::block_on;
use futures_lite::future::poll_once;
use shardblob::{Client, Config, Engine, Error};
use support::{config_in, fresh_dir};

/// A second engine on the same data_dir starts only once the first one
/// released the LOCK.
fn lock_is_free(dir: &Path) -> bool {
    match Engine::start(config_in(dir)) {
        Ok(engine) => engine.shutdown().is_ok(),
        Err(Error::DataDirLocked { .. }) => false,
        Err(e) => panic!("unexpected start error: {e}"),
    }
}

/// Starts the task `body` builds on `shard` and returns once it runs.
fn running_task<T, Fut>(
    client: &Client,
    shard: usize,
    body: impl FnOnce() -> Fut + Send + 'static,
) -> impl std::future::Future<Output = shardblob::Result<T>>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let (started_tx, started_rx) = mpsc::channel();
    let task = client.spawn_on(shard, move |_| {
        started_tx.send(()).unwrap();
        body()
    });
    started_rx.recv().unwrap();
    task
}

/// Caught on 58545b6: shutdown returned at once while the task ran, the
/// task was dropped unfinished, and its future never resolved.
#[test]
fn shutdown_waits_for_a_running_task_within_the_grace_period() {
    let dir = fresh_dir("shutdown-waits");
    let engine = Engine::start(config_in(&dir)).unwrap();
    let task = running_task(&engine.client(), 1, || async {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        42
    });
    engine.shutdown().unwrap();
    let mut task = Box::pin(task);
    match block_on(poll_once(&mut task)) {
        Some(Ok(42)) => {}
        other => panic!("the task did not finish before shutdown returned: {other:?}"),
    }
    assert!(lock_is_free(&dir), "the LOCK is still held");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6: a task that never ends kept its future unresolved and
/// the LOCK held after shutdown, which reported success.
#[test]
fn a_task_past_the_grace_period_is_cancelled_and_named() {
    let dir = fresh_dir("shutdown-grace");
    let engine = Engine::start(Config {
        shutdown_grace_ms: 20,
        ..config_in(&dir)
    })
    .unwrap();
    let forever = running_task(&engine.client(), 1, std::future::pending::<()>);
    let error = engine.shutdown().unwrap_err();
    assert!(
        matches!(error, Error::ShutdownIncomplete { ref cancelled, ref died, .. }
            if cancelled == &[(1, 1)] && died.is_empty()),
        "{error:?}"
    );
    let error = error.to_string();
    assert!(error.contains("shard 1 (1 tasks)"), "{error}");
    assert!(!error.contains("shard 0"), "shard 0 had no task: {error}");
    let mut forever = Box::pin(forever);
    assert!(
        matches!(
            block_on(poll_once(&mut forever)),
            Some(Err(Error::Shutdown))
        ),
        "the cancelled task's future must resolve to Shutdown"
    );
    assert!(lock_is_free(&dir), "the LOCK is still held");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6: a request still queued when the engine stopped kept
/// its reply sender alive in the channel, so its future never resolved.
#[test]
fn requests_still_queued_at_shutdown_resolve_to_shutdown() {
    let dir = fresh_dir("shutdown-queued");
    let engine = Engine::start(Config {
        channel_capacity: 1,
        ..config_in(&dir)
    })
    .unwrap();
    let client = engine.client();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    // Blocks shard 0's thread, so the next job stays in the queue.
    let blocker = running_task(&client, 0, move || async move {
        release_rx.recv_timeout(Duration::from_secs(60)).is_ok()
    });
    let queued = client.spawn_on(0, |_| async { "ran" });
    let stopper = std::thread::spawn(move || engine.shutdown());
    // Shutdown has begun once a new request is refused.
    let refused = (0..60_000).any(|_| {
        let mut probe = Box::pin(client.spawn_on(1, |_| async {}));
        let refused = matches!(block_on(poll_once(&mut probe)), Some(Err(Error::Shutdown)));
        if !refused {
            std::thread::sleep(Duration::from_millis(1));
        }
        refused
    });
    assert!(refused, "shutdown never began refusing requests");
    release_tx.send(()).unwrap();
    stopper.join().unwrap().unwrap();
    let mut blocker = Box::pin(blocker);
    assert!(matches!(block_on(poll_once(&mut blocker)), Some(Ok(true))));
    let mut queued = Box::pin(queued);
    assert!(
        matches!(block_on(poll_once(&mut queued)), Some(Err(Error::Shutdown))),
        "a queued request must resolve when the engine stops"
    );
    assert!(lock_is_free(&dir), "the LOCK is still held");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Caught on 58545b6: a panic while the closure built its future (before
/// any await) unwound through the shard's executor and killed shard 0.
#[test]
fn a_panic_before_the_future_is_task_panicked_and_the_shard_lives_on() {
    let dir = fresh_dir("shutdown-panic");
    let engine = Engine::start(config_in(&dir)).unwrap();
    let client = engine.client();
    let panicked = block_on(client.spawn_on(0, |_| -> std::future::Ready<()> {
        panic!("no future for you")
    }));
    match panicked {
        Err(Error::TaskPanicked { shard: 0, message }) => {
            assert_eq!(message, "no future for you")
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    let shard = block_on(client.spawn_on(0, |storage| async move { storage.shard() }));
    assert_eq!(shard.unwrap(), 0, "shard 0 still serves");
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
