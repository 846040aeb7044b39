//! Property test: random operation sequences through the public API, each
//! checked against an in-memory model of the blob. 10,000 cases in the
//! normal run (`PROPTEST_CASES` changes it).

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use shardblob::{Blob, Client, Config, Engine, Error, Storage, WriteOptions};

/// One engine for every case: starting shards per case would dominate.
fn client() -> &'static Client {
    static ENGINE: OnceLock<(Engine, Client)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let dir: PathBuf =
                std::env::temp_dir().join(format!("shardblob-model-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let engine = Engine::start(Config {
                data_dir: dir,
                shards: 2,
                ..Config::default()
            })
            .expect("engine starts");
            let client = engine.client();
            (engine, client)
        })
        .1
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        offset: u64,
        len: usize,
        byte: u8,
        sync: bool,
    },
    Read {
        offset: u64,
        len: usize,
    },
    ReadMany {
        ranges: Vec<(u64, usize)>,
    },
    Resize {
        len: u64,
    },
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..20_000, 0usize..9_000, any::<u8>(), any::<bool>())
            .prop_map(|(offset, len, byte, sync)| Op::Write { offset, len, byte, sync }),
        3 => (0u64..24_000, 0usize..9_000).prop_map(|(offset, len)| Op::Read { offset, len }),
        1 => prop::collection::vec((0u64..24_000, 0usize..5_000), 0..6).prop_map(|ranges| Op::ReadMany { ranges }),
        1 => (0u64..24_000).prop_map(|len| Op::Resize { len }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn in_range(model: &[u8], offset: u64, len: usize) -> bool {
    offset as usize + len <= model.len()
}

async fn run(case: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let client = client();
    let partition = format!("model-{}", case % 128);
    let name = format!("case-{case}");
    let (mut blob, len) = client
        .open(&partition, name.as_bytes())
        .await
        .expect("open");
    prop_assert_eq!(len, 0);
    let mut model: Vec<u8> = Vec::new();
    for op in ops {
        match op {
            Op::Write {
                offset,
                len,
                byte,
                sync,
            } => {
                let data = vec![byte; len];
                let options = if sync {
                    WriteOptions::SYNC
                } else {
                    WriteOptions::NONE
                };
                blob.write_vectored_at(offset, &[&data], options)
                    .await
                    .expect("write");
                if len > 0 {
                    let end = offset as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[offset as usize..end].fill(byte);
                }
            }
            Op::Read { offset, len } => {
                let got = blob.read_at(offset, len).await;
                if in_range(&model, offset, len) {
                    let bytes = got.expect("read inside the blob");
                    prop_assert!(*bytes == model[offset as usize..offset as usize + len]);
                } else {
                    prop_assert!(
                        matches!(got, Err(Error::BlobInsufficientLength { .. })),
                        "{:?}",
                        got
                    );
                }
            }
            Op::ReadMany { ranges } => {
                let all_in = ranges.iter().all(|&(o, l)| in_range(&model, o, l));
                let items: Vec<_> =
                    futures::StreamExt::collect(blob.read_many(ranges.clone())).await;
                if all_in {
                    let mut seen = vec![false; ranges.len()];
                    for item in items {
                        let (index, bytes) = item.expect("read_many inside the blob");
                        let (o, l) = ranges[index];
                        prop_assert!(!seen[index], "range {} twice", index);
                        seen[index] = true;
                        prop_assert!(*bytes == model[o as usize..o as usize + l]);
                    }
                    prop_assert!(seen.iter().all(|&s| s), "every range answered");
                } else {
                    prop_assert!(
                        items.iter().any(|i| i.is_err()),
                        "a range past the end fails the call"
                    );
                }
            }
            Op::Resize { len } => {
                blob.resize(len).await.expect("resize");
                model.resize(len as usize, 0);
            }
            Op::Sync => blob.sync().await.expect("sync"),
            Op::Reopen => {
                drop(blob);
                let (reopened, len) = client
                    .open(&partition, name.as_bytes())
                    .await
                    .expect("reopen");
                prop_assert_eq!(len, model.len() as u64, "length after reopen");
                blob = reopened;
            }
        }
    }
    drop(blob);
    client
        .remove(&partition, Some(name.as_bytes()))
        .await
        .expect("remove");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn random_operations_match_the_model(case in any::<u64>(), ops in prop::collection::vec(op(), 1..12)) {
        futures::executor::block_on(run(case, ops))?;
    }

    #[test]
    fn names_are_accepted_exactly_when_valid(partition in "[ -~]{0,5}|[A-Za-z0-9_-]{250,260}", name in prop::collection::vec(any::<u8>(), 0..140)) {
        let client = client();
        let valid_partition = !partition.is_empty()
            && partition.len() <= 255
            && partition != "LOCK"
            && partition.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let valid_name = !name.is_empty() && name.len() <= 127;
        let opened = futures::executor::block_on(client.open(&partition, &name)).map(drop);
        match opened {
            Ok(()) => prop_assert!(valid_partition && valid_name),
            Err(Error::PartitionNameInvalid(_)) => prop_assert!(!valid_partition),
            Err(Error::BlobNameInvalid { .. }) => prop_assert!(valid_partition && !valid_name),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}
