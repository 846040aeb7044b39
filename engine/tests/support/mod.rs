//! Helpers shared by the engine's integration tests.
#![allow(dead_code)] // each test file uses a part

pub mod ftrace;
pub mod kill;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use shardblob::{Config, Engine};

/// Starts a 2-shard engine on a fresh directory named after `test`.
pub fn start(test: &str, tune: impl FnOnce(&mut Config)) -> (Engine, PathBuf) {
    let dir = std::env::temp_dir().join(format!("shardblob-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        data_dir: dir.clone(),
        shards: 2,
        ..Config::default()
    };
    tune(&mut config);
    (Engine::start(config).unwrap(), dir)
}

/// A partition named `prefix`-something that `shard` owns.
pub fn partition_on(engine: &Engine, shard: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|p| engine.shard_of(p) == shard)
        .expect("some partition hashes to every shard")
}

/// Runs `test` on a helper thread; a regression that hangs the engine
/// fails the test binary after a minute instead of hanging the test run.
/// It aborts: a hung shard would also hang the engine's drop, which joins
/// the shard threads.
pub fn without_hanging<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || done_tx.send(test()).unwrap());
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output,
        Err(_) => {
            eprintln!("the engine hung for a minute: aborting the test binary");
            std::process::abort()
        }
    }
}
