//! commonware-runtime, the seed system: its `Storage`/`Blob` on its tokio
//! runtime and on its io_uring runtime, each with its default configuration
//! and a storage directory of its own. Reads and writes carry `DONT_CACHE`,
//! its request to bypass the page cache (O_DIRECT reads where it can), the
//! nearest it has to our O_DIRECT-only I/O. Synced ops are write then
//! `sync()` (or one `WriteOptions::SYNC` write with --sync-flag).

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use commonware_runtime::{Blob as _, Clock, ReadOptions, Runner as _, Storage, WriteOptions};

use crate::load::{OpResult, Sleep};
use crate::peers::PREFILL_CHUNK_BYTES;
use crate::result::Outcome;
use crate::targets::{pattern, run_case, Env, OpExec, Target};
use crate::workload::Op;

const PARTITION: &str = "bench";

struct CwSleep<'a, C>(&'a C);

impl<C: Clock> Sleep for CwSleep<'_, C> {
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> {
        self.0
            .sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

struct CwExec<B> {
    blob: B,
    block: Bytes,
    sync_flag: bool,
}

impl<B: commonware_runtime::Blob> OpExec for CwExec<B> {
    async fn exec(&self, op: Op) -> OpResult {
        match op {
            Op::Read {
                offset_bytes,
                len_bytes,
            } => {
                let bufs = self
                    .blob
                    .read_at(offset_bytes, len_bytes as usize, ReadOptions::DONT_CACHE)
                    .await
                    .map_err(|e| format!("commonware read: {e}"))?;
                drop(bufs);
            }
            Op::Write {
                offset_bytes,
                len_bytes,
                sync,
            } => {
                let data = self.block.slice(..len_bytes as usize);
                let flag_sync = sync && self.sync_flag;
                let options = if flag_sync {
                    WriteOptions::SYNC | WriteOptions::DONT_CACHE
                } else {
                    WriteOptions::DONT_CACHE
                };
                self.blob
                    .write_at(offset_bytes, data, options)
                    .await
                    .map_err(|e| format!("commonware write: {e}"))?;
                if sync && !flag_sync {
                    self.blob
                        .sync()
                        .await
                        .map_err(|e| format!("commonware sync: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// Opens (and on first use prefills) the data blob.
async fn open_data<S: Storage>(storage: &S, len_bytes: u64) -> Result<S::Blob, String> {
    let (blob, len) = storage
        .open(PARTITION, b"data")
        .await
        .map_err(|e| format!("commonware open data: {e}"))?;
    if len < len_bytes {
        let chunk = Bytes::from(pattern(PREFILL_CHUNK_BYTES));
        let mut offset = 0u64;
        while offset < len_bytes {
            let n = (len_bytes - offset).min(chunk.len() as u64) as usize;
            blob.write_at(offset, chunk.slice(..n), WriteOptions::DONT_CACHE)
                .await
                .map_err(|e| format!("commonware prefill: {e}"))?;
            offset += n as u64;
        }
        blob.sync()
            .await
            .map_err(|e| format!("commonware prefill sync: {e}"))?;
    }
    Ok(blob)
}

async fn run_cases<C: Storage + Clock>(context: C, env: Env, target: Target) -> Vec<Outcome> {
    let plan = &env.plan;
    let sync_flag = plan.sync_flag;
    let mut outcomes = Vec::with_capacity(plan.cases.len());
    let sleeper = CwSleep(&context);
    let block_bytes = plan
        .cases
        .iter()
        .map(|c| c.workload.block_size_bytes)
        .max()
        .unwrap_or(0);
    let block = Bytes::from(pattern(block_bytes as usize));
    if plan.data_file_bytes > 0 {
        env.progress
            .note(&format!("{}: prefilling its data blob", target.name()));
    }
    for (index, case) in plan.cases.iter().enumerate() {
        env.progress.step(target.name(), &case.label());
        let outcome = if case.workload.kind.uses_data_file() {
            match open_data(
                &context,
                case.workload.file_size_bytes.max(plan.data_file_bytes),
            )
            .await
            {
                Ok(blob) => {
                    let exec = CwExec {
                        blob,
                        block: block.clone(),
                        sync_flag,
                    };
                    run_case(case, plan, &sleeper, &exec).await
                }
                Err(error) => Outcome::Failed { error },
            }
        } else {
            let name = format!("append-{index}");
            match context.open(PARTITION, name.as_bytes()).await {
                Ok((blob, _)) => {
                    let exec = CwExec {
                        blob,
                        block: block.clone(),
                        sync_flag,
                    };
                    let outcome = run_case(case, plan, &sleeper, &exec).await;
                    drop(exec);
                    let _ = context.remove(PARTITION, Some(name.as_bytes())).await;
                    outcome
                }
                Err(e) => Outcome::Failed {
                    error: format!("commonware open {name}: {e}"),
                },
            }
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Runs every case on commonware's tokio runtime.
pub fn run_tokio(env: &Env) -> Vec<Outcome> {
    let dir: PathBuf = env.work_dir.join("commonware-tokio");
    let config = commonware_runtime::tokio::Config::new().with_storage_directory(dir);
    let task_env = env.clone();
    commonware_runtime::tokio::Runner::new(config)
        .start(move |context| run_cases(context, task_env, Target::CommonwareTokio))
}

/// Runs every case on commonware's io_uring runtime.
pub fn run_iouring(env: &Env) -> Vec<Outcome> {
    let dir: PathBuf = env.work_dir.join("commonware-iouring");
    let config = commonware_runtime::iouring::Config::new().with_storage_directory(dir);
    let task_env = env.clone();
    commonware_runtime::iouring::Runner::new(config)
        .start(move |context| run_cases(context, task_env, Target::CommonwareIouring))
}
