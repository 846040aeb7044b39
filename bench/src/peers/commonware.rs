//! commonware-runtime, the seed system: its `Storage`/`Blob` on its tokio
//! runtime and on its io_uring runtime, each with its default configuration
//! and a storage directory of its own. Reads and writes carry `DONT_CACHE`,
//! its request to bypass the page cache (O_DIRECT reads where it can), the
//! nearest it has to our O_DIRECT-only I/O. Its writes have no O_DIRECT: so
//! that they reach the device as ours do, every write that is not followed
//! by a sync carries `WriteOptions::SYNC` (RWF_DSYNC, a flush more than ours
//! pay; the row says so). With --commonware-cached they go to the page cache
//! instead, and the row is marked `page cache` (never the best peer).
//! Synced ops are write then `sync()` (or one `WriteOptions::SYNC` write
//! with --sync-flag).

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use commonware_runtime::{Blob as _, Clock, ReadOptions, Runner as _, Storage, WriteOptions};

use crate::load::{OpResult, Sleep};
use crate::peers::PREFILL_CHUNK_BYTES;
use crate::result::{Caveat, Outcome};
use crate::targets::{pattern, run_case, Env, OpExec, Target};
use crate::workload::Op;
use crate::workload::WorkloadKind;

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
    /// Writes not followed by a sync stay in the page cache (else they carry SYNC).
    cached: bool,
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
                let flag_sync = (sync && self.sync_flag) || (!sync && !self.cached);
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

/// Says on a measured row how its unsynced writes reached (or did not reach) the device.
fn mark_writes(mut outcome: Outcome, case: &crate::suite::Case, cached: bool) -> Outcome {
    let unsynced_writes = !matches!(
        case.workload.kind,
        WorkloadKind::RandRead | WorkloadKind::SeqRead | WorkloadKind::AppendSync
    );
    if let (Outcome::Measured(summary), true) = (&mut outcome, unsynced_writes) {
        if cached {
            summary.caveats.push(Caveat::PageCache);
            summary
                .notes
                .push("writes go to the page cache only (--commonware-cached)".into());
        } else {
            summary.notes.push(
                "writes carry WriteOptions::SYNC (RWF_DSYNC), its only way to the device: \
                 a flush per write more than ours"
                    .into(),
            );
        }
    }
    outcome
}

/// Runs case `index` on a runtime's context.
async fn case_on<C: Storage + Clock>(context: C, env: Env, index: usize) -> Outcome {
    let plan = &env.plan;
    let case = &plan.cases[index];
    let cached = plan.commonware_cached;
    let outcome = run_on(&context, plan, index).await;
    mark_writes(outcome, case, cached)
}

async fn run_on<C: Storage + Clock>(
    context: &C,
    plan: &crate::suite::Plan,
    index: usize,
) -> Outcome {
    let case = &plan.cases[index];
    let sleeper = CwSleep(context);
    let block = Bytes::from(pattern(case.workload.block_size_bytes as usize));
    let (sync_flag, cached) = (plan.sync_flag, plan.commonware_cached);
    if case.workload.kind.uses_data_file() {
        match open_data(context, plan.data_file_bytes).await {
            Ok(blob) => {
                let exec = CwExec {
                    blob,
                    block,
                    sync_flag,
                    cached,
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
                    block,
                    sync_flag,
                    cached,
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
    }
}

/// Prefills the data blob on a runtime's context.
async fn prefill_on<C: Storage>(context: C, env: Env) -> Result<(), String> {
    open_data(&context, env.plan.data_file_bytes)
        .await
        .map(drop)
}

/// Starts `target`'s runtime (tokio or io_uring) on its storage directory and runs `$body` in it.
macro_rules! on_runtime {
    ($env:expr, $target:expr, |$context:ident| $body:expr) => {{
        let dir: PathBuf = $env.work_dir.join($target.name());
        if $target == Target::CommonwareTokio {
            let config = commonware_runtime::tokio::Config::new().with_storage_directory(dir);
            commonware_runtime::tokio::Runner::new(config).start(|$context| $body)
        } else {
            let config = commonware_runtime::iouring::Config::new().with_storage_directory(dir);
            commonware_runtime::iouring::Runner::new(config).start(|$context| $body)
        }
    }};
}

/// Prefills `target`'s data blob (once, before its first case).
pub fn prepare(env: &Env, target: Target) -> Result<(), String> {
    if env.plan.data_file_bytes == 0 {
        return Ok(());
    }
    env.progress
        .note(&format!("{}: prefilling its data blob", target.name()));
    let task_env = env.clone();
    on_runtime!(env, target, |context| prefill_on(context, task_env))
}

/// Runs case `index` on `target`'s runtime, started for this case.
pub fn run_case_on_runtime(env: &Env, target: Target, index: usize) -> Outcome {
    let task_env = env.clone();
    on_runtime!(env, target, |context| case_on(context, task_env, index))
}
