//! Typed errors (issue 15, item 3): each kind of problem has its own
//! variant, an I/O error keeps its errno, and a SYNC write's error names
//! its blob, not the descriptor glommio wrote through.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use futures::executor::block_on;
use shardblob::{Blob, Config, Engine, Error, Placement, Storage, WriteOptions};

/// A tmpfs of `size` mounted for the guard's life (needs root, which CI and
/// the dev VM have). Small, so that a write fills it.
struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    fn mount(name: &str, size: &str) -> SmallTmpfs {
        let dir =
            std::env::temp_dir().join(format!("shardblob-errors-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallTmpfs(dir)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn start_on(dir: &Path) -> Engine {
    Engine::start(Config {
        data_dir: dir.to_path_buf(),
        shards: 1,
        allow_volatile_data_dir: true,
        ..Config::default()
    })
    .unwrap()
}

/// Caught on c3ebe6b: glommio's conversion into `io::Error` dropped the
/// errno (`raw_os_error()` was `None` for ENOSPC) and named the SYNC write's
/// descriptor, `/proc/self/fd/N`, instead of leaving that to the blob.
#[test]
fn enospc_keeps_its_errno_and_names_the_blob() {
    let tmpfs = SmallTmpfs::mount("enospc", "1m");
    let engine = start_on(&tmpfs.0.join("data"));
    let client = engine.client();
    block_on(async {
        let (plain, _) = client.open("full", b"plain").await.unwrap();
        let (synced, _) = client.open("full", b"synced").await.unwrap();
        // Whole pages, so that no write is cut short: the one that finds
        // the filesystem full fails whole, with ENOSPC. Plain writes fill
        // it: a failed SYNC write would poison its blob.
        let page = vec![7u8; 4096];
        let mut offset = 0;
        let plain_error = loop {
            match plain.write_at(offset, &page).await {
                Ok(()) => offset += 4096,
                Err(error) => break error,
            }
            assert!(offset < 2 << 20, "a 1 MiB tmpfs took 2 MiB");
        };
        let synced_error = synced
            .write_vectored_at(0, &[&page], WriteOptions::SYNC)
            .await
            .unwrap_err();
        for (error, hex) in [(plain_error, "706c61696e"), (synced_error, "73796e636564")] {
            let text = error.to_string();
            assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{text}");
            let source = std::error::Error::source(&error).expect("the io::Error is the source");
            let source = source.downcast_ref::<std::io::Error>().unwrap();
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{text}");
            assert!(
                text.contains(&format!("full/{hex}")),
                "names the blob: {text}"
            );
            assert!(!text.contains("/proc/self/fd"), "{text}");
        }
    });
    engine.shutdown().unwrap();
}

#[test]
fn a_missing_shard_is_not_a_startup_error() {
    let (engine, dir) = support::start("errors-no-shard", |_| {});
    let missing = block_on(engine.client().spawn_on(9, |_| async {}));
    match missing {
        Err(Error::NoSuchShard {
            shard: 9,
            shards: 2,
        }) => {}
        other => panic!("expected NoSuchShard, got {other:?}"),
    }
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

fn start_error(tune: impl FnOnce(&mut Config)) -> Error {
    let mut config = Config {
        data_dir: std::env::temp_dir().join(format!("shardblob-errors-{}", std::process::id())),
        ..Config::default()
    };
    tune(&mut config);
    Engine::start(config)
        .err()
        .expect("the engine refuses to start")
}

#[test]
fn startup_problems_have_their_own_variants() {
    let error = start_error(|c| c.ring_depth = 0);
    assert!(
        matches!(
            error,
            Error::ConfigValue {
                field: "ring_depth",
                ..
            }
        ),
        "{error:?}"
    );
    let error = start_error(|c| c.placement = Placement::Cpus(vec![4096]));
    assert!(matches!(error, Error::Placement { .. }), "{error:?}");
    assert!(error.to_string().contains("CPU 4096"), "{error}");
    let error = start_error(|c| c.data_dir = "/proc/self/status/data".into());
    assert!(matches!(error, Error::DataDir { .. }), "{error:?}");
    assert_eq!(error.raw_os_error(), Some(libc::ENOTDIR), "{error}");
    let error = Config::from_toml_str("shards = \"two\"").unwrap_err();
    assert!(
        matches!(error, Error::ConfigParse { path: None, .. }),
        "{error:?}"
    );
    let error = Config::from_file(Path::new("/nonexistent/shardblob.toml")).unwrap_err();
    assert!(matches!(error, Error::ConfigFile { .. }), "{error:?}");
    assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{error}");
}
