//! Raw glommio `DmaFile`: the floor of our stack. One long-lived executor
//! (started once, as a shard is) pinned to the CPU of the engine's measured
//! shard, with `spin_before_park` as the engine has it, doing each op as the
//! fewest DMA calls that can express it, on a file laid out as the engine's
//! (a header page before the data): an aligned read or write, appends
//! preallocated past the end in the engine's steps (`fallocate` KEEP_SIZE),
//! and for synced ops the engine's sync path: `fdatasync` inline on the
//! executor's thread when nothing else is in flight, else on glommio's
//! blocking thread. Small appends rewrite the tail page from memory (no
//! device read), as an engine must.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::load::{check_read_len, OpResult};
use crate::peers::{HEADER_PAGE_BYTES, PREALLOCATE_BYTES};
use crate::result::Outcome;
use crate::targets::{pattern, run_case, Env, GlommioSleep, OpExec};
use crate::workload::Op;

const PAGE_BYTES: u64 = 4096;

struct DmaExec {
    file: Rc<DmaFile>,
    /// A pattern-filled buffer of the workload's (page-rounded) block size, reused by every write.
    block: Rc<DmaBuffer>,
    /// Data bytes preallocated so far (the engine's policy).
    reserved_bytes: Cell<u64>,
    /// Ops of this peer in flight, for the inline-sync decision.
    in_flight: Cell<usize>,
}

/// Counts an op in flight for as long as it lives.
struct InFlight<'a>(&'a Cell<usize>);

impl<'a> InFlight<'a> {
    fn enter(count: &'a Cell<usize>) -> InFlight<'a> {
        count.set(count.get() + 1);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl DmaExec {
    /// Preallocates past the end in the engine's steps when a write reaches past the reserve.
    async fn reserve(&self, data_end_bytes: u64) -> OpResult {
        if data_end_bytes <= self.reserved_bytes.get() {
            return Ok(());
        }
        let target = data_end_bytes.div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
        self.file
            .pre_allocate(HEADER_PAGE_BYTES + target, true)
            .await
            .map_err(|e| format!("dma preallocate: {e}"))?;
        self.reserved_bytes.set(target);
        Ok(())
    }

    /// The engine's sync: inline when this op is the only one in flight.
    async fn sync(&self) -> OpResult {
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.file.as_ref());
        // SAFETY: fdatasync on a descriptor `self.file` keeps open meanwhile.
        let fdatasync = move || {
            if unsafe { libc::fdatasync(fd) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let result = if self.in_flight.get() <= 1 {
            fdatasync()
        } else {
            glommio::executor().spawn_blocking(fdatasync).await
        };
        result.map_err(|e| format!("dma fdatasync: {e}"))
    }

    fn new(file: DmaFile, block_size_bytes: u64, reserved_bytes: u64) -> DmaExec {
        let len = block_size_bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let mut block = file.alloc_dma_buffer(len as usize);
        block
            .as_bytes_mut()
            .copy_from_slice(&crate::targets::pattern(len as usize));
        DmaExec {
            file: Rc::new(file),
            block: Rc::new(block),
            reserved_bytes: Cell::new(reserved_bytes),
            in_flight: Cell::new(0),
        }
    }
}

impl OpExec for DmaExec {
    async fn exec(&self, op: Op) -> OpResult {
        let _counted = InFlight::enter(&self.in_flight);
        match op {
            Op::Read {
                offset_bytes,
                len_bytes,
            } => {
                let read = self
                    .file
                    .read_at_aligned(HEADER_PAGE_BYTES + offset_bytes, len_bytes as usize)
                    .await
                    .map_err(|e| format!("dma read: {e}"))?;
                check_read_len("dma", read.len(), len_bytes)?;
            }
            Op::Write {
                offset_bytes,
                len_bytes,
                sync,
            } => {
                // Cover the op with whole pages; the tail page lives in memory.
                let start = offset_bytes / PAGE_BYTES * PAGE_BYTES;
                let end = (offset_bytes + len_bytes).div_ceil(PAGE_BYTES) * PAGE_BYTES;
                let buffer = if end - start == self.block.len() as u64 {
                    self.block.clone()
                } else {
                    let mut pages = self.file.alloc_dma_buffer((end - start) as usize);
                    pages.as_bytes_mut().fill(1);
                    Rc::new(pages)
                };
                self.reserve(end).await?;
                self.file
                    .write_rc_at(buffer, HEADER_PAGE_BYTES + start)
                    .await
                    .map_err(|e| format!("dma write: {e}"))?;
                if sync {
                    self.sync().await?;
                }
            }
        }
        Ok(())
    }
}

async fn open(path: &Path) -> Result<DmaFile, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(|e| format!("dma open {}: {e}", path.display()))
}

/// Runs case `index` on the peer's executor.
async fn run_one(env: &Env, index: usize) -> Outcome {
    let plan = &env.plan;
    let case = &plan.cases[index];
    let fresh = !case.workload.kind.uses_data_file();
    let path = if fresh {
        let path = env
            .work_dir
            .join("raw")
            .join(format!("dma-append-{index}.bin"));
        if let Err(e) = std::fs::write(&path, pattern(HEADER_PAGE_BYTES as usize)) {
            return Outcome::Failed {
                error: format!("dma: write {}: {e}", path.display()),
            };
        }
        path
    } else {
        env.raw_data_path()
    };
    let reserved_bytes = if fresh { 0 } else { plan.data_file_bytes };
    let outcome = match open(&path).await {
        Ok(file) => {
            let exec = DmaExec::new(file, case.workload.block_size_bytes, reserved_bytes);
            run_case(case, plan, &GlommioSleep, &exec).await
        }
        Err(error) => Outcome::Failed { error },
    };
    if fresh {
        let _ = std::fs::remove_file(&path);
    }
    outcome
}

/// The serving loop of the peer's executor: one case at a time, until the
/// request channel closes.
async fn serve(env: Env, requests: Receiver<usize>, replies: SyncSender<Outcome>) {
    // Open a file holding data first: glommio's poll probe on an empty file
    // would wrongly mark the device pollable (ARCHITECTURE.md, glommio 0.9 traps).
    let probe = env.work_dir.join("raw").join("probe.bin");
    let probed = match std::fs::write(&probe, pattern(PAGE_BYTES as usize)) {
        Ok(()) => open(&probe).await.map(drop),
        Err(e) => Err(format!("dma: write {}: {e}", probe.display())),
    };
    // Blocking on the channel is fine: this executor has nothing else to run.
    while let Ok(index) = requests.recv() {
        let outcome = match &probed {
            Ok(()) => run_one(&env, index).await,
            Err(error) => Outcome::Failed {
                error: error.clone(),
            },
        };
        if replies.send(outcome).is_err() {
            break;
        }
    }
}

/// The dma peer: a glommio executor started once, pinned to `env.peer_cpu`,
/// that runs the cases it is sent.
pub struct DmaPeer {
    requests: Option<SyncSender<usize>>,
    replies: Receiver<Outcome>,
    executor: Option<ExecutorJoinHandle<()>>,
}

impl DmaPeer {
    pub fn start(env: &Env) -> Result<DmaPeer, String> {
        let dir = env.work_dir.join("raw");
        std::fs::create_dir_all(&dir).map_err(|e| format!("dma: create {}: {e}", dir.display()))?;
        let mut builder =
            LocalExecutorBuilder::new(Placement::Fixed(env.peer_cpu)).name("bench-dma");
        if env.peer_spin > Duration::ZERO {
            builder = builder.spin_before_park(env.peer_spin);
        }
        let (requests, requests_rx) = sync_channel(1);
        let (replies_tx, replies) = sync_channel(1);
        let task_env = env.clone();
        let executor = builder
            .spawn(move || serve(task_env, requests_rx, replies_tx))
            .map_err(|e| format!("dma executor: {e}"))?;
        Ok(DmaPeer {
            requests: Some(requests),
            replies,
            executor: Some(executor),
        })
    }

    /// Runs case `index` on the peer's executor.
    pub fn run_case(&self, index: usize) -> Outcome {
        let sent = self.requests.as_ref().map(|r| r.send(index));
        match (sent, self.replies.recv()) {
            (Some(Ok(())), Ok(outcome)) => outcome,
            _ => Outcome::Failed {
                error: "dma executor: stopped".into(),
            },
        }
    }
}

impl Drop for DmaPeer {
    fn drop(&mut self) {
        self.requests = None; // closes the channel: the serving loop ends
        if let Some(executor) = self.executor.take() {
            let _ = executor.join();
        }
    }
}
