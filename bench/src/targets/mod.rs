//! Targets: the things measured. Ours are the three engine paths; peers are
//! fio, raw glommio `DmaFile` and commonware-runtime. Each target runs every
//! case of the plan on its own executor through `run_case`, which ties an
//! `OpStream` to the generic load generator; a target only supplies
//! `OpExec` (do one op) and its executor's `Sleep`.

pub mod engine;
mod engine_view;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{self, Load, OpResult, Sleep, Window};
use crate::progress::Progress;
use crate::result::{Outcome, Summary};
use crate::suite::{Case, Plan};
use crate::workload::{Op, OpStream, Workload};

/// Everything measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Engine: a task on the partition's own shard (direct calls).
    SameShard,
    /// Control row of same-shard: every op in the latency class, bulk
    /// work included (cases with bulk work only).
    SameShardOneClass,
    /// Control row of same-shard: an engine that reserves no space ahead
    /// of appends (`preallocate_bytes = 0`; append cases only).
    SameShardNoPrealloc,
    /// Engine: a task on another shard (each call forwarded, one hop each way).
    CrossShard,
    /// Engine: a plain std thread through the `Send` client.
    ForeignThread,
    /// fio, io_uring, O_DIRECT, defaults.
    Fio,
    /// fio tuned as the shard runs: pinned to its CPU, registered buffers
    /// and files, completions reaped by polling.
    FioTuned,
    /// fio-tuned submitting in batches as glommio does (closed loops
    /// deeper than 1): the device's answer to batched submission.
    FioBatched,
    /// Raw glommio `DmaFile`: the floor of our stack.
    Dma,
    /// A bare `pwrite` + `fdatasync` loop on one thread on the shard's CPU:
    /// the append + sync reference as one per-op distribution.
    SyncLoop,
    /// commonware-runtime storage on its tokio runtime.
    CommonwareTokio,
    /// commonware-runtime storage on its io_uring runtime.
    CommonwareIouring,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::SameShard => "same-shard",
            Target::SameShardOneClass => "same-shard-one-class",
            Target::SameShardNoPrealloc => "same-shard-no-prealloc",
            Target::CrossShard => "cross-shard",
            Target::ForeignThread => "foreign-thread",
            Target::Fio => "fio",
            Target::FioTuned => "fio-tuned",
            Target::FioBatched => "fio-batched",
            Target::Dma => "dma",
            Target::SyncLoop => "sync-loop",
            Target::CommonwareTokio => "commonware-tokio",
            Target::CommonwareIouring => "commonware-iouring",
        }
    }

    /// Whether this is one of the fio variants.
    pub fn is_fio(self) -> bool {
        matches!(self, Target::Fio | Target::FioTuned | Target::FioBatched)
    }

    /// Whether this is one of the engine's paths or control rows (else a peer).
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            Target::SameShard
                | Target::SameShardOneClass
                | Target::SameShardNoPrealloc
                | Target::CrossShard
                | Target::ForeignThread
        )
    }

    /// Why this target does not run `case`, if it does not.
    pub fn skips(self, case: &Case) -> Option<String> {
        let reason = match self {
            Target::SameShardOneClass if !case.has_bulk_work() => {
                "no bulk work in this case: the same as same-shard"
            }
            Target::SameShardNoPrealloc if case.workload.kind.uses_data_file() => {
                "not an append case"
            }
            Target::FioBatched if !matches!(case.load, Load::Closed { queue_depth } if queue_depth > 1) => {
                "batches need a closed loop deeper than 1"
            }
            Target::SameShard
            | Target::SameShardOneClass
            | Target::Fio
            | Target::FioTuned
            | Target::FioBatched => return None,
            _ if case.background.is_some() => {
                "runs no background writer (interference is measured on the same shard and by fio)"
            }
            _ => return None,
        };
        Some(reason.to_string())
    }
}

/// What every target needs to run its cases.
#[derive(Clone)]
pub struct Env {
    pub plan: Plan,
    /// The run's temporary directory; each target uses a subdirectory.
    pub work_dir: PathBuf,
    /// The engine configuration (its data_dir is replaced by the run's).
    pub engine_config: shardblob::Config,
    pub peer_spin: Duration,
    pub peer_cpu: usize,
    /// The engine shard that owns the benchmark partition.
    pub shard: usize,
    /// The data disk's interrupts, counted around each run.
    pub disk_irqs: Option<crate::irq::DiskIrqs>,
    /// The raw peers' data file when it is not their own (the engine's).
    pub raw_data_file: Option<PathBuf>,
    pub progress: Arc<Progress>,
}

impl Env {
    /// The prefilled data file of the raw peers (fio, dma, the sync loop):
    /// the engine's data blob file when the engine runs, else their own.
    pub fn raw_data_path(&self) -> PathBuf {
        self.raw_data_file
            .clone()
            .unwrap_or_else(|| self.work_dir.join("raw").join("data.bin"))
    }
}

/// Does one op of a workload on one target.
pub trait OpExec {
    fn exec(&self, op: Op) -> impl Future<Output = OpResult>;
}

/// Runs one case: warm-up, then the measured window, on the caller's executor.
pub async fn run_case<S: Sleep, X: OpExec>(
    case: &Case,
    plan: &Plan,
    sleeper: &S,
    exec: &X,
) -> Outcome {
    let window = Window::starting_now(plan.warmup, plan.duration);
    let measured = measure(&case.workload, case.load, window, plan.seed, sleeper, exec).await;
    match measured {
        Ok(summary) => Outcome::Measured(Box::new(summary)),
        Err(error) => Outcome::Failed { error },
    }
}

/// Runs a case with a background: the case's ops through `exec` and the
/// background's through `background_exec`, at once over the same window;
/// the background's figures go to the outcome's `Summary::background`.
pub async fn run_case_with_background<S: Sleep, X: OpExec, Y: OpExec>(
    case: &Case,
    plan: &Plan,
    sleeper: &S,
    (exec, background_exec): (&X, &Y),
) -> Outcome {
    let Some(background) = &case.background else {
        return run_case(case, plan, sleeper, exec).await;
    };
    let window = Window::starting_now(plan.warmup, plan.duration);
    let background_load = Load::Closed {
        queue_depth: background.queue_depth,
    };
    let (foreground, behind) = futures::join!(
        measure(&case.workload, case.load, window, plan.seed, sleeper, exec),
        measure(
            &background.workload,
            background_load,
            window,
            plan.seed.wrapping_add(1),
            sleeper,
            background_exec
        )
    );
    match (foreground, behind) {
        (Ok(mut summary), Ok(behind)) => {
            summary.background = Some(Box::new(behind));
            Outcome::Measured(Box::new(summary))
        }
        (Err(error), _) => Outcome::Failed { error },
        (_, Err(error)) => Outcome::Failed {
            error: format!("background: {error}"),
        },
    }
}

/// One workload under one load over `window`, summarised.
async fn measure<S: Sleep, X: OpExec>(
    workload: &Workload,
    load: Load,
    window: Window,
    seed: u64,
    sleeper: &S,
    exec: &X,
) -> Result<Summary, String> {
    let mut ops = OpStream::new(workload, seed);
    let recording = load::run(load, window, sleeper, || exec.exec(ops.next_op())).await?;
    Ok(Summary::from_recording(
        recording,
        workload.block_size_bytes,
    ))
}

/// The `Sleep` of a glommio executor (engine shards and the dma peer).
pub struct GlommioSleep;

impl Sleep for GlommioSleep {
    async fn sleep_until(&self, deadline: Instant) {
        let now = Instant::now();
        if deadline > now {
            glommio::timer::sleep(deadline - now).await;
        }
    }
}

/// Bytes to write: a non-zero pattern, so no layer can elide zero pages.
pub fn pattern(len_bytes: usize) -> Vec<u8> {
    (0..len_bytes).map(|i| (i % 251) as u8 + 1).collect()
}
