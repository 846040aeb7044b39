//! Raw glommio `DmaFile`: the floor of our stack. One executor pinned to the
//! CPU of the engine's measured shard, with `spin_before_park` as the engine
//! has it, doing each op as the fewest DMA calls that can express it: an
//! aligned read or write, plus `fdatasync` for synced ops. Small appends
//! rewrite the tail page from memory (no device read), as an engine must.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};

use crate::load::{check_read_len, OpResult};
use crate::result::Outcome;
use crate::targets::{run_case, Env, GlommioSleep, OpExec};
use crate::workload::Op;

const PAGE_BYTES: u64 = 4096;

struct DmaExec {
    file: Rc<DmaFile>,
    /// A pattern-filled buffer of the workload's (page-rounded) block size, reused by every write.
    block: Rc<DmaBuffer>,
}

impl DmaExec {
    fn new(file: DmaFile, block_size_bytes: u64) -> DmaExec {
        let len = block_size_bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let mut block = file.alloc_dma_buffer(len as usize);
        block
            .as_bytes_mut()
            .copy_from_slice(&crate::targets::pattern(len as usize));
        DmaExec {
            file: Rc::new(file),
            block: Rc::new(block),
        }
    }
}

impl OpExec for DmaExec {
    async fn exec(&self, op: Op) -> OpResult {
        match op {
            Op::Read {
                offset_bytes,
                len_bytes,
            } => {
                let read = self
                    .file
                    .read_at_aligned(offset_bytes, len_bytes as usize)
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
                self.file
                    .write_rc_at(buffer, start)
                    .await
                    .map_err(|e| format!("dma write: {e}"))?;
                if sync {
                    self.file
                        .fdatasync()
                        .await
                        .map_err(|e| format!("dma fdatasync: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

async fn open(path: &Path, create: bool) -> Result<DmaFile, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .dma_open(path)
        .await
        .map_err(|e| format!("dma open {}: {e}", path.display()))
}

async fn run_one(env: Env, index: usize) -> Outcome {
    let plan = &env.plan;
    let case = &plan.cases[index];
    let dir = env.work_dir.join("raw");
    // Open a file holding data first: glommio's poll probe on an empty file
    // would wrongly mark the device pollable (see DESIGN.md).
    let probe = dir.join("probe.bin");
    if let Err(e) = std::fs::write(&probe, crate::targets::pattern(PAGE_BYTES as usize)) {
        return Outcome::Failed {
            error: format!("dma: write {}: {e}", probe.display()),
        };
    }
    if let Err(error) = open(&probe, false).await {
        return Outcome::Failed { error };
    }
    let fresh = !case.workload.kind.uses_data_file();
    let path = if fresh {
        dir.join(format!("append-{index}.bin"))
    } else {
        env.raw_data_path()
    };
    let outcome = match open(&path, fresh).await {
        Ok(file) => {
            let exec = DmaExec::new(file, case.workload.block_size_bytes);
            run_case(case, plan, &GlommioSleep, &exec).await
        }
        Err(error) => Outcome::Failed { error },
    };
    if fresh {
        let _ = std::fs::remove_file(&path);
    }
    outcome
}

/// Runs case `index` on a fresh glommio executor pinned to `env.peer_cpu`.
pub fn run_case_on_executor(env: &Env, index: usize) -> Outcome {
    let dir = env.work_dir.join("raw");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Outcome::Failed {
            error: format!("dma: create {}: {e}", dir.display()),
        };
    }
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(env.peer_cpu)).name("bench-dma");
    if env.peer_spin > Duration::ZERO {
        builder = builder.spin_before_park(env.peer_spin);
    }
    let task_env = env.clone();
    match builder.spawn(move || run_one(task_env, index)) {
        Ok(handle) => handle.join().unwrap_or_else(|e| Outcome::Failed {
            error: format!("dma executor: {e}"),
        }),
        Err(e) => Outcome::Failed {
            error: format!("dma executor: {e}"),
        },
    }
}
