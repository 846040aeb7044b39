//! Helpers shared by the engine's integration tests.
#![allow(dead_code)] // each test file uses a part

pub mod ftrace;
pub mod kill;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use shardblob::{shard_of, Client, Config, Engine, Error, Storage};

/// An empty directory for `test` under the temporary directory (removed
/// first if an earlier run left it).
pub fn fresh_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardblob-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The configuration the tests start from: 2 shards on `dir`.
pub fn config_in(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        shards: 2,
        ..Config::default()
    }
}

/// Starts a 2-shard engine on a fresh directory named after `test`.
pub fn start(test: &str, tune: impl FnOnce(&mut Config)) -> (Engine, PathBuf) {
    let dir = fresh_dir(test);
    let mut config = config_in(&dir);
    tune(&mut config);
    (Engine::start(config).expect("engine starts"), dir)
}

/// Blocks shard `shard`'s thread until the returned sender fires (or a
/// minute passes, so that a regression fails instead of hanging); requests
/// sent meanwhile wait in the shard's queues. The task's output says
/// whether the test released it.
pub fn block_shard(
    client: &Client,
    shard: usize,
) -> (
    mpsc::Sender<()>,
    impl Future<Output = shardblob::Result<bool>>,
) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocked = client.spawn_on(shard, move |_| async move {
        started_tx.send(()).unwrap();
        release_rx.recv_timeout(Duration::from_secs(60)).is_ok()
    });
    started_rx.recv().unwrap();
    (release_tx, blocked)
}

/// How often `reopen` retries an open that a dropped request still holds:
/// the dropped request is served within a few round trips.
pub const REOPEN_ATTEMPTS_MAX: usize = 2000;

/// Opens `name` and closes it again, retrying while an earlier dropped
/// request still holds it; panics when the name stays "already open".
pub async fn reopen(client: &Client, partition: &str, name: &[u8]) {
    for _ in 0..REOPEN_ATTEMPTS_MAX {
        match client.open(partition, name).await {
            Ok((blob, _)) => return drop(blob),
            Err(Error::BlobAlreadyOpen { .. }) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
    panic!("{partition}/{name:?} stays open although no handle exists");
}

/// A partition named `prefix`-something that `shard` owns.
pub fn partition_on(engine: &Engine, shard: usize, prefix: &str) -> String {
    partition_of(prefix, shard, engine.shard_count())
}

/// A partition named `prefix`-something that `shard` of `shards` owns
/// (for code on a shard, where the engine is not at hand).
pub fn partition_of(prefix: &str, shard: usize, shards: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|p| shard_of(p, shards) == shard)
        .expect("some partition hashes to every shard")
}

/// Runs `test` on a helper thread; a regression that hangs the engine
/// fails the test binary after a minute instead of hanging the test run.
/// It aborts: a hung shard would also hang the engine's drop, which joins
/// the shard threads.
pub fn without_hanging<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let test = std::thread::spawn(move || done_tx.send(test()).unwrap());
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output,
        // The test panicked: fail with its panic, at once.
        Err(mpsc::RecvTimeoutError::Disconnected) => match test.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test ended without sending its output"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            eprintln!("the engine hung for a minute: aborting the test binary");
            std::process::abort()
        }
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t we own, filled by the libc macro.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "sched_setaffinity to CPU {cpu}");
}

/// A thousand steps of a generator: work the compiler keeps.
pub fn compute(x: &mut u64) {
    for _ in 0..1000 {
        *x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
    }
}
