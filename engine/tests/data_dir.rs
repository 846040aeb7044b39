//! The data directory at startup (issue 11, items 14, 17 and 18): a
//! relative path works, leftover tombstones of removed partitions are
//! deleted, and a filesystem that keeps nothing across a reboot is refused
//! unless the configuration says it is meant.
//!
//! The tmpfs tests mount one, which needs root (CI and the dev VM have it).

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use futures::executor::block_on;
use shardblob::{Blob, Config, Engine, Error, Storage};
use shardblob_shards::DataDir;

/// A fresh directory under the system temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardblob-datadir-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// `target` (absolute) as a path relative to the working directory.
fn relative_to_cwd(target: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut relative: PathBuf = std::iter::repeat_n("..", ups).collect();
    relative.push(target.strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    relative
}

fn start(data_dir: &Path, tune: impl FnOnce(&mut Config)) -> Result<Engine, Error> {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        shards: 1,
        ..Config::default()
    };
    tune(&mut config);
    Engine::start(config)
}

/// Creates, writes, syncs, reads back and removes one blob.
fn use_a_blob(engine: &Engine) {
    let client = engine.client();
    block_on(async {
        let (blob, _) = client.open("p", b"a").await.unwrap();
        blob.write_at(0, b"relative").await.unwrap();
        blob.sync().await.unwrap();
        assert_eq!(&blob.read_at(0, 8).await.unwrap()[..], b"relative");
        drop(blob);
        client.remove("p", Some(b"a")).await.unwrap();
    });
}

/// The default `data_dir = "shardblob-data"` is relative. Before the fix
/// the first open failed: "sync data directory failed … Bad file
/// descriptor" (glommio opened the directory relative to nothing).
#[test]
fn a_relative_data_dir_works() {
    let dir = scratch("relative");
    let relative = relative_to_cwd(&dir);
    let engine = start(&relative, |_| {}).expect("start with a relative data_dir");
    use_a_blob(&engine);
    engine.shutdown().unwrap();
    assert!(dir.join("LOCK").is_file(), "the data_dir is where it says");
    fs::remove_dir_all(&dir).unwrap();
}

/// A removal that committed but did not finish deleting leaves a tombstone
/// directory; the next lock deletes it and nothing else.
#[test]
fn locking_deletes_leftover_tombstones() {
    let dir = scratch("tombstones");
    let tombstone = dir.join(".removed-0123abcd-0");
    fs::create_dir_all(&tombstone).unwrap();
    fs::write(tombstone.join("6d69"), b"removed blob").unwrap();
    fs::create_dir_all(dir.join("p")).unwrap();
    fs::write(dir.join("p/6d69"), b"kept blob").unwrap();
    let locked = DataDir::lock(&dir).unwrap();
    assert!(!tombstone.exists(), "the tombstone is deleted");
    assert!(dir.join("p/6d69").is_file(), "partitions are kept");
    drop(locked);
    fs::remove_dir_all(&dir).unwrap();
}

/// A tmpfs mounted for the guard's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str) -> Tmpfs {
        let dir = scratch(name);
        fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} needs root",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

/// Before the fix the engine started on tmpfs (Linux 6.6+ has O_DIRECT
/// there) and every "durable" blob vanished at the next reboot.
#[test]
fn a_data_dir_on_tmpfs_is_refused() {
    let tmpfs = Tmpfs::mount("tmpfs-refused");
    let error = match start(&tmpfs.0.join("data"), |_| {}) {
        Ok(engine) => {
            engine.shutdown().unwrap();
            panic!("the engine started on tmpfs")
        }
        Err(e) => e.to_string(),
    };
    assert!(error.contains("tmpfs"), "{error}");
    assert!(error.contains("reboot"), "says why: {error}");
    assert!(
        error.contains("allow_volatile_data_dir"),
        "names the field: {error}"
    );
}

/// With `allow_volatile_data_dir` (a test or a cache) tmpfs is fine.
#[test]
fn a_data_dir_on_tmpfs_is_allowed_when_meant() {
    let tmpfs = Tmpfs::mount("tmpfs-allowed");
    let engine = start(&tmpfs.0.join("data"), |c| c.allow_volatile_data_dir = true)
        .expect("start on tmpfs when allowed");
    use_a_blob(&engine);
    engine.shutdown().unwrap();
}
