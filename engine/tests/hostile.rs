//! Hostile input, table-driven: every bad name, offset, file and directory
//! gets its own specific error; nothing stored is lost; nothing panics.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use shardblob::{Blob, Client, Engine, Error, Storage};
use support::{config_in, fresh_dir};

const PRECIOUS: &[u8] = b"stored before the hostile input";

async fn store_precious(client: &Client) {
    let (blob, _) = client.open("safe", b"precious").await.unwrap();
    blob.write_at(0, PRECIOUS).await.unwrap();
    blob.sync().await.unwrap();
}

async fn precious_is_intact(client: &Client) {
    let (blob, len) = client
        .open("safe", b"precious")
        .await
        .expect("precious blob reopens");
    assert_eq!(len, PRECIOUS.len() as u64);
    assert_eq!(
        &blob.read_at(0, PRECIOUS.len()).await.unwrap()[..],
        PRECIOUS
    );
}

type Check = fn(&Error) -> bool;

#[test]
fn every_hostile_input_gets_its_own_error() {
    let dir = fresh_dir("hostile-table");
    let engine = Engine::start(config_in(&dir)).unwrap();
    let client = engine.client();
    futures::executor::block_on(async {
        store_precious(&client).await;
        let (blob, _) = client.open("p", b"victim").await.unwrap();
        blob.write_at(0, b"0123456789").await.unwrap();

        // Hand-made damage on disk.
        std::fs::create_dir_all(dir.join("foreign")).unwrap();
        drop(client.open("foreign", b"ok").await.unwrap());
        std::fs::write(dir.join("foreign").join("notes.txt"), b"not a blob").unwrap();
        drop(client.open("subdir", b"ok").await.unwrap());
        std::fs::create_dir(dir.join("subdir").join("nested")).unwrap();
        std::fs::write(dir.join("afile"), b"a file where a partition would be").unwrap();
        drop(client.open("corrupt", b"c").await.unwrap());
        let corrupt = dir.join("corrupt").join("63");
        let mut bytes = std::fs::read(&corrupt).unwrap();
        bytes[0] ^= 0xff;
        bytes.extend_from_slice(b"data after the header");
        std::fs::write(&corrupt, bytes).unwrap();
        std::fs::create_dir_all(dir.join("p").join("6469")).unwrap();

        let long = "x".repeat(256);
        let table: Vec<(&str, Result<(), Error>, Check)> = vec![
            (
                "empty partition",
                client.open("", b"b").await.map(drop),
                |e| matches!(e, Error::PartitionNameInvalid(_)),
            ),
            (
                "partition ..",
                client.open("..", b"b").await.map(drop),
                |e| matches!(e, Error::PartitionNameInvalid(_)),
            ),
            ("partition a/b", client.scan("a/b").await.map(drop), |e| {
                matches!(e, Error::PartitionNameInvalid(_))
            }),
            (
                "partition with NUL",
                client.remove("a\0b", None).await,
                |e| matches!(e, Error::PartitionNameInvalid(_)),
            ),
            (
                "non-ASCII partition",
                client.open("é", b"b").await.map(drop),
                |e| matches!(e, Error::PartitionNameInvalid(_)),
            ),
            (
                "256-byte partition",
                client.open(&long, b"b").await.map(drop),
                |e| matches!(e, Error::PartitionNameInvalid(_)),
            ),
            (
                "empty blob name",
                client.open("p", b"").await.map(drop),
                |e| matches!(e, Error::BlobNameInvalid { .. }),
            ),
            (
                "128-byte blob name",
                client.open("p", &[b'n'; 128]).await.map(drop),
                |e| matches!(e, Error::BlobNameInvalid { .. }),
            ),
            (
                "write near u64::MAX",
                blob.write_at(u64::MAX - 2, b"12345").await,
                |e| matches!(e, Error::OffsetOverflow { .. }),
            ),
            (
                "read at u64::MAX",
                blob.read_at(u64::MAX, 1).await.map(drop),
                |e| matches!(e, Error::OffsetOverflow { .. }),
            ),
            ("resize to u64::MAX", blob.resize(u64::MAX).await, |e| {
                matches!(e, Error::OffsetOverflow { .. })
            }),
            (
                "read past the end",
                blob.read_at(8, 3).await.map(drop),
                |e| matches!(e, Error::BlobInsufficientLength { .. }),
            ),
            (
                "corrupt header",
                client.open("corrupt", b"c").await.map(drop),
                |e| matches!(e, Error::BlobCorrupt { .. }),
            ),
            (
                "foreign file in a partition",
                client.scan("foreign").await.map(drop),
                |e| matches!(e, Error::PartitionCorrupt { .. }),
            ),
            (
                "foreign directory in a partition",
                client.remove("subdir", None).await,
                |e| matches!(e, Error::PartitionCorrupt { .. }),
            ),
            (
                "partition path is a file",
                client.open("afile", b"b").await.map(drop),
                |e| matches!(e, Error::PartitionCorrupt { .. }),
            ),
            (
                "blob path is a directory",
                client.open("p", b"di").await.map(drop),
                |e| matches!(e, Error::Io { .. }),
            ),
            #[allow(clippy::reversed_empty_ranges)]
            (
                "empty version range",
                client.open_versioned("p", b"v", 5..=4).await.map(drop),
                |e| matches!(e, Error::VersionRangeEmpty { .. }),
            ),
            (
                "too many read_many ranges",
                first_error(&blob, vec![(0, 1); 5000]).await,
                |e| matches!(e, Error::InvalidArgument { .. }),
            ),
            (
                "missing blob",
                client.remove("p", Some(b"absent")).await,
                |e| matches!(e, Error::BlobMissing { .. }),
            ),
            (
                "missing partition",
                client.scan("never").await.map(drop),
                |e| matches!(e, Error::PartitionMissing(_)),
            ),
        ];
        for (what, result, check) in table {
            match result {
                Ok(()) => panic!("{what}: accepted"),
                Err(e) => assert!(check(&e), "{what}: wrong error {e:?}"),
            }
        }
        // What was there before is still there and usable.
        assert_eq!(&blob.read_at(0, 10).await.unwrap()[..], b"0123456789");
        drop(
            client
                .open("foreign", b"another")
                .await
                .expect("other blobs of a dirty partition open"),
        );
        assert!(
            dir.join("subdir").join("6f6b").exists(),
            "a refused partition remove deletes nothing"
        );
        precious_is_intact(&client).await;
    });
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn first_error<B: Blob>(blob: &B, ranges: Vec<(u64, usize)>) -> Result<(), Error> {
    let mut items = std::pin::pin!(blob.read_many(ranges));
    match futures::StreamExt::next(&mut items).await {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// A read-only bind mount of a directory for the guard's life (needs root,
/// which CI and the dev VM have).
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            let status = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .expect("run mount");
            assert!(
                status.success(),
                "mount {args:?} {} needs root",
                dir.display()
            );
        };
        run(&["--bind"]);
        let guard = ReadOnly(dir.to_path_buf());
        let status = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount read-only");
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_data_dir_is_refused_and_loses_nothing() {
    let dir = fresh_dir("hostile-readonly");
    let engine = Engine::start(config_in(&dir)).unwrap();
    futures::executor::block_on(store_precious(&engine.client()));
    engine.shutdown().unwrap();
    {
        let _read_only = ReadOnly::mount(&dir);
        let error = Engine::start(config_in(&dir))
            .err()
            .expect("a read-only data_dir is refused");
        assert!(matches!(error, Error::DataDir { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&dir.display().to_string()),
            "{error}"
        );
    }
    let engine = Engine::start(config_in(&dir)).unwrap();
    futures::executor::block_on(precious_is_intact(&engine.client()));
    engine.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
