//! Targets: the things measured. Ours are the three engine paths; peers are
//! fio, raw glommio `DmaFile` and commonware-runtime. Each target runs every
//! case of the plan on its own executor through `run_case`, which ties an
//! `OpStream` to the generic load generator; a target only supplies
//! `OpExec` (do one op) and its executor's `Sleep`.

pub mod engine;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{self, OpResult, Sleep, Window};
use crate::progress::Progress;
use crate::result::{Outcome, Summary};
use crate::suite::{Case, Plan};
use crate::workload::{Op, OpStream};

/// Everything measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Engine: a task on the partition's own shard (direct calls).
    SameShard,
    /// Engine: a task on another shard (each call forwarded, one hop each way).
    CrossShard,
    /// Engine: a plain std thread through the `Send` client.
    ForeignThread,
    /// fio, io_uring, O_DIRECT, defaults.
    Fio,
    /// fio tuned as the shard runs: pinned to its CPU, registered buffers
    /// and files, completions reaped by polling.
    FioTuned,
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
            Target::CrossShard => "cross-shard",
            Target::ForeignThread => "foreign-thread",
            Target::Fio => "fio",
            Target::FioTuned => "fio-tuned",
            Target::Dma => "dma",
            Target::SyncLoop => "sync-loop",
            Target::CommonwareTokio => "commonware-tokio",
            Target::CommonwareIouring => "commonware-iouring",
        }
    }

    /// Whether this is one of the fio variants.
    pub fn is_fio(self) -> bool {
        matches!(self, Target::Fio | Target::FioTuned)
    }

    /// Whether this is one of the engine's paths (else a peer).
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            Target::SameShard | Target::CrossShard | Target::ForeignThread
        )
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
    let mut ops = OpStream::new(&case.workload, plan.seed);
    let window = Window::starting_now(plan.warmup, plan.duration);
    match load::run(case.load, window, sleeper, || exec.exec(ops.next_op())).await {
        Ok(recording) => Outcome::Measured(Box::new(Summary::from_recording(
            recording,
            case.workload.block_size_bytes,
        ))),
        Err(error) => Outcome::Failed { error },
    }
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
