//! Our three paths into the engine, each running the same cases:
//! - same shard: a task on the partition's own shard (`spawn_on(shard_of(p))`)
//!   using its `ShardStorage`: direct calls, no channel;
//! - cross shard: a task on another shard: every call forwarded, one hop each way;
//! - foreign thread: a plain std thread (`rt::block_on`) using the `Send` client.
//!
//! One engine serves all three, on the embedded default configuration (or
//! --engine-config) with its data_dir moved to the run's temporary directory.
//! The partition is chosen to live on shard `--shard` (default 0); the dma
//! peer pins to that shard's CPU.

use futures::stream::{FuturesUnordered, StreamExt};
use shardblob::sched::IoClass;
use shardblob::{Blob, Config, Engine, EngineStats, Storage, WriteOptions, WRITE_BUF_BYTES_MAX};
use std::cell::RefCell;
use std::path::Path;

use crate::load::{check_read_len, OpResult, Sleep};
use crate::peers::PREFILL_CHUNK_BYTES;
use crate::result::Outcome;
use crate::rt::{self, ThreadSleep};
use crate::suite::{Case, Plan};
use crate::targets::{
    engine_view, pattern, run_case_with_background, Env, GlommioSleep, OpExec, Target,
};
use crate::workload::Op;

const DATA_BLOB: &[u8] = b"data";
const PREFILL_DEPTH: usize = 4;

struct EngineExec<'a, B: Blob> {
    blob: &'a B,
    block: Vec<u8>,
    /// Filled buffers of `block`'s length for page-aligned writes
    /// (`write_buf_at`: no copy on the owning shard), each back here when
    /// its write is done: at most one per op in flight, as the dma peer
    /// writes its one filled buffer.
    spare_bufs: RefCell<Vec<B::WriteBuf>>,
    sync_flag: bool,
    /// Every op runs in this I/O class.
    class: IoClass,
}

impl<'a, B: Blob> EngineExec<'a, B> {
    fn new(blob: &'a B, block_size_bytes: u64, plan: &Plan, class: IoClass) -> Self {
        EngineExec {
            blob,
            block: pattern(block_size_bytes as usize),
            spare_bufs: RefCell::new(Vec::new()),
            sync_flag: plan.sync_flag,
            class,
        }
    }

    /// Writes a whole block at a page-aligned offset from a spare buffer
    /// (`write_buf_at`) if it fits one (`WRITE_BUF_BYTES_MAX`), other
    /// writes from the pattern (`write_vectored_at`, which copies).
    async fn write(&self, offset_bytes: u64, len_bytes: u64, options: WriteOptions) -> OpResult {
        let page = offset_bytes.is_multiple_of(4096) && len_bytes.is_multiple_of(4096);
        let whole_block = len_bytes == self.block.len() as u64;
        if !page || !whole_block || len_bytes > WRITE_BUF_BYTES_MAX as u64 {
            let data = &self.block[..len_bytes as usize];
            let written = self
                .blob
                .write_vectored_at(offset_bytes, &[data], options)
                .await;
            return written.map_err(|e| e.to_string());
        }
        let spare = self.spare_bufs.borrow_mut().pop();
        let buf = match spare {
            Some(buf) => buf,
            None => {
                let buf = self.blob.alloc_buf(self.block.len());
                let mut buf = buf.map_err(|e| e.to_string())?;
                buf.copy_from_slice(&self.block);
                buf
            }
        };
        let written = self.blob.write_buf_at(offset_bytes, buf, options).await;
        let buf = written.map_err(|e| e.to_string())?;
        self.spare_bufs.borrow_mut().push(buf);
        Ok(())
    }
}

impl<B: Blob> OpExec for EngineExec<'_, B> {
    async fn exec(&self, op: Op) -> OpResult {
        self.class.scope(self.op(op)).await
    }
}

impl<B: Blob> EngineExec<'_, B> {
    async fn op(&self, op: Op) -> OpResult {
        match op {
            Op::Read {
                offset_bytes,
                len_bytes,
            } => {
                let buf = self
                    .blob
                    .read_at(offset_bytes, len_bytes as usize)
                    .await
                    .map_err(|e| e.to_string())?;
                check_read_len("engine", buf.len(), len_bytes)?;
            }
            Op::Write {
                offset_bytes,
                len_bytes,
                sync,
            } => {
                let options = if sync && self.sync_flag {
                    WriteOptions::SYNC
                } else {
                    WriteOptions::NONE
                };
                self.write(offset_bytes, len_bytes, options).await?;
                if sync && !self.sync_flag {
                    self.blob.sync().await.map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }
}

/// Runs one case through `storage` (any path) on the caller's executor.
async fn engine_case<S: Storage, T: Sleep>(
    storage: &S,
    sleeper: &T,
    partition: &str,
    path: Target,
    index: usize,
    case: &Case,
    plan: &Plan,
) -> Outcome {
    let fresh = !case.workload.kind.uses_data_file();
    let name = if fresh {
        format!("append-{}-{index}", path.name()).into_bytes()
    } else {
        DATA_BLOB.to_vec()
    };
    let blob = match storage.open(partition, &name).await {
        Ok((blob, _len)) => blob,
        Err(e) => {
            return Outcome::Failed {
                error: format!("open: {e}"),
            }
        }
    };
    // Bulk work in the throughput class, but all in one on the control row.
    let bulk = match path {
        Target::SameShardOneClass => IoClass::Latency,
        _ => IoClass::Throughput,
    };
    let class = if case.bulk { bulk } else { IoClass::Latency };
    let outcome = {
        let exec = EngineExec::new(&blob, case.workload.block_size_bytes, plan, class);
        let behind = case
            .background
            .as_ref()
            .map_or(0, |b| b.workload.block_size_bytes);
        let background_exec = EngineExec::new(&blob, behind, plan, bulk);
        run_case_with_background(case, plan, sleeper, (&exec, &background_exec)).await
    };
    drop(blob);
    if fresh {
        if let Err(e) = storage.remove(partition, Some(&name)).await {
            return Outcome::Failed {
                error: format!("remove after the run: {e}"),
            };
        }
    }
    outcome
}

/// Fills the data blob to `len_bytes` with `PREFILL_DEPTH` 1 MiB writes in flight, then syncs.
async fn prefill<S: Storage>(storage: &S, partition: &str, len_bytes: u64) -> Result<(), String> {
    let (blob, len) = storage
        .open(partition, DATA_BLOB)
        .await
        .map_err(|e| e.to_string())?;
    if len >= len_bytes {
        return Ok(());
    }
    let chunk = pattern(PREFILL_CHUNK_BYTES);
    let chunk_bytes = chunk.len() as u64;
    let mut in_flight = FuturesUnordered::new();
    let mut offset = 0u64;
    loop {
        while in_flight.len() < PREFILL_DEPTH && offset < len_bytes {
            let n = (len_bytes - offset).min(chunk_bytes) as usize;
            let (blob, chunk) = (&blob, &chunk);
            in_flight.push(async move { blob.write_at(offset, &chunk[..n]).await });
            offset += n as u64;
        }
        match in_flight.next().await {
            Some(result) => result.map_err(|e| e.to_string())?,
            None => break,
        }
    }
    blob.sync().await.map_err(|e| e.to_string())
}

/// The engine configuration: the embedded default or `path`.
pub fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// A partition name that lives on `shard`.
fn partition_on_shard(engine: &Engine, shard: usize) -> Result<String, String> {
    (0..100_000)
        .map(|i| format!("bench-{i}"))
        .find(|p| engine.shard_of(p) == shard)
        .ok_or_else(|| {
            format!(
                "no partition name maps to shard {shard} of {}",
                engine.shard_count()
            )
        })
}

/// A running engine, prefilled, serving its three paths one case at a time.
pub struct EngineTargets {
    engine: Engine,
    partition: String,
    home: usize,
    /// Scaling mode: a prefilled partition on every shard, by shard.
    shard_partitions: Vec<String>,
}

/// Prefills the data blob of `partition` on shard `shard`.
fn prefill_on(engine: &Engine, env: &Env, partition: &str, shard: usize) -> Result<(), String> {
    env.progress.note(&format!(
        "engine: prefilling {} on shard {shard}",
        crate::units::format_size(env.plan.data_file_bytes)
    ));
    let (partition, len) = (partition.to_string(), env.plan.data_file_bytes);
    let task = engine.client().spawn_on(shard, move |storage| async move {
        prefill(&storage, &partition, len).await
    });
    match futures::executor::block_on(task) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("engine prefill: {e}")),
        Err(e) => Err(format!("engine prefill: {e}")),
    }
}

impl EngineTargets {
    /// Starts the engine in the run's directory and prefills the data blob
    /// (with `every_shard`, one data blob in a partition on each shard).
    pub fn start(env: &Env, every_shard: bool) -> Result<EngineTargets, String> {
        EngineTargets::start_in(env, "engine", every_shard)
    }

    /// The engine of the control row "same-shard-no-prealloc": one shard on
    /// the measured shard's CPU that reserves no space ahead of appends,
    /// without a data blob (it runs the append cases only).
    pub fn start_without_preallocation(env: &Env) -> Result<EngineTargets, String> {
        let mut env = env.clone();
        let config = &mut env.engine_config;
        config.preallocate_bytes = 0;
        config.shards = 1;
        config.placement = shardblob::Placement::Cpus(vec![env.peer_cpu]);
        config.physical_cores_only = false;
        env.shard = 0;
        env.plan.data_file_bytes = 0;
        EngineTargets::start_in(&env, "engine-no-prealloc", false)
    }

    /// Starts the engine in `dir` of the run's directory.
    fn start_in(env: &Env, dir: &str, every_shard: bool) -> Result<EngineTargets, String> {
        let mut config = env.engine_config.clone();
        config.data_dir = env.work_dir.join(dir);
        let engine = Engine::start(config).map_err(|e| format!("engine start: {e}"))?;
        let partition = partition_on_shard(&engine, env.shard)?;
        let home = engine.shard_of(&partition);
        let shard_partitions = if every_shard {
            (0..engine.shard_count())
                .map(|shard| partition_on_shard(&engine, shard))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        if env.plan.data_file_bytes > 0 {
            if every_shard {
                for (shard, p) in shard_partitions.iter().enumerate() {
                    prefill_on(&engine, env, p, shard)?;
                }
            } else {
                prefill_on(&engine, env, &partition, home)?;
            }
        }
        Ok(EngineTargets {
            engine,
            partition,
            home,
            shard_partitions,
        })
    }

    /// The file of the prefilled data blob, for peers to read and overwrite
    /// the very same extents (`None` if it is not where the layout puts it).
    pub fn data_file_path(&self, work_dir: &Path) -> Option<std::path::PathBuf> {
        let name = shardblob_shards::name::blob_file_name(&self.partition, DATA_BLOB).ok()?;
        let path = work_dir.join("engine").join(&self.partition).join(name);
        path.is_file().then_some(path)
    }

    pub fn shard_count(&self) -> usize {
        self.engine.shard_count()
    }

    /// Scaling: case `index` on shards `0..shards` at once, each a task on
    /// its own shard driving its own partition (shard-aware load); one
    /// outcome per shard.
    pub fn run_on_shards(&self, env: &Env, index: usize, shards: usize) -> Vec<Outcome> {
        let tasks =
            self.shard_partitions
                .iter()
                .take(shards)
                .enumerate()
                .map(|(shard, partition)| {
                    self.spawn_case(env, shard, partition, Target::SameShard, index)
                });
        futures::executor::block_on(futures::future::join_all(tasks))
    }

    /// Case `index` as a task on `shard` driving `partition` through `path`.
    fn spawn_case(
        &self,
        env: &Env,
        shard: usize,
        partition: &str,
        path: Target,
        index: usize,
    ) -> impl std::future::Future<Output = Outcome> {
        let (case, plan) = (env.plan.cases[index].clone(), env.plan.clone());
        let partition = partition.to_string();
        let task = self
            .engine
            .client()
            .spawn_on(shard, move |storage| async move {
                engine_case(
                    &storage,
                    &GlommioSleep,
                    &partition,
                    path,
                    index,
                    &case,
                    &plan,
                )
                .await
            });
        async move {
            task.await.unwrap_or_else(|e| Outcome::Failed {
                error: format!("spawn_on shard {shard}: {e}"),
            })
        }
    }

    /// Runs case `index` on one path, and notes the engine's own view of
    /// it beside the harness's (`engine_view`): printed, and a note of the
    /// path's row in the report.
    pub fn run_case(&self, env: &Env, path: Target, index: usize) -> Outcome {
        let before = self.stats();
        let mut outcome = self.run_path(env, path, index);
        if let (Some(before), Some(after)) = (before, self.stats()) {
            if let Some(view) = engine_view::add_note(&before, &after, self.home, &mut outcome) {
                env.progress.print(&view);
            }
        }
        outcome
    }

    /// Every shard's statistics, `None` if the engine cannot answer.
    fn stats(&self) -> Option<EngineStats> {
        futures::executor::block_on(self.engine.stats()).ok()
    }

    /// Runs case `index` on one path.
    fn run_path(&self, env: &Env, path: Target, index: usize) -> Outcome {
        let shards = self.engine.shard_count();
        match path {
            Target::SameShard | Target::SameShardOneClass | Target::SameShardNoPrealloc => {
                self.on_shard(env, self.home, path, index)
            }
            Target::CrossShard if shards < 2 => Outcome::Skipped {
                reason: "the engine has one shard".into(),
            },
            Target::CrossShard => self.on_shard(env, (self.home + 1) % shards, path, index),
            Target::ForeignThread => self.on_foreign_thread(env, index),
            peer => Outcome::Skipped {
                reason: format!("{} is not an engine path", peer.name()),
            },
        }
    }

    fn on_shard(&self, env: &Env, shard: usize, path: Target, index: usize) -> Outcome {
        futures::executor::block_on(self.spawn_case(env, shard, &self.partition, path, index))
    }

    /// Runs the case on a fresh plain std thread through the `Send` client.
    fn on_foreign_thread(&self, env: &Env, index: usize) -> Outcome {
        let client = self.engine.client();
        let (plan, partition) = (env.plan.clone(), self.partition.clone());
        let thread = std::thread::Builder::new()
            .name("bench-foreign".into())
            .spawn(move || {
                let case = &plan.cases[index];
                let path = Target::ForeignThread;
                rt::block_on(engine_case(
                    &client,
                    &ThreadSleep,
                    &partition,
                    path,
                    index,
                    case,
                    &plan,
                ))
            });
        match thread.map(|t| t.join()) {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Failed {
                error: "the foreign thread panicked".into(),
            },
            Err(e) => Outcome::Failed {
                error: format!("spawn the foreign thread: {e}"),
            },
        }
    }

    /// Stops the engine.
    pub fn shutdown(self) -> Result<(), String> {
        self.engine.shutdown().map_err(|e| e.to_string())
    }
}
