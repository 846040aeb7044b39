//! The sync loop: the plainest way to do the work, for a per-op reference
//! distribution. One thread pinned to the measured shard's CPU does each op
//! as blocking `pread`/`pwrite` on an O_DIRECT file laid out as the engine's,
//! appends preallocated in the engine's steps (`fallocate` KEEP_SIZE), and a
//! synced op adds `fdatasync`: for append + sync this is the reference fio
//! cannot give (fio times the write and the sync apart). One op at a time:
//! closed loops at depth 1 only.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::hog::pin_to;
use crate::load::{check_read_len, Load, OpResult};
use crate::peers::{HEADER_PAGE_BYTES, PREALLOCATE_BYTES};
use crate::result::Outcome;
use crate::rt::{self, ThreadSleep};
use crate::targets::{self, pattern, Env, OpExec};
use crate::workload::Op;

const ALIGN_BYTES: usize = 4096;

/// `len_bytes` of pattern at a 4 KiB-aligned address inside `storage`.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len_bytes: usize,
}

impl AlignedBuf {
    fn new(len_bytes: usize) -> AlignedBuf {
        let mut storage = vec![0u8; len_bytes + ALIGN_BYTES];
        let start = storage.as_ptr().align_offset(ALIGN_BYTES);
        storage[start..start + len_bytes].copy_from_slice(&pattern(len_bytes));
        AlignedBuf {
            storage,
            start,
            len_bytes,
        }
    }

    fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.storage[self.start..].as_mut_ptr().cast()
    }
}

struct SyncExec {
    file: File,
    buf: RefCell<AlignedBuf>,
    reserved_bytes: Cell<u64>,
}

fn check(what: &str, result: isize, want: usize) -> OpResult {
    if result < 0 {
        return Err(format!(
            "sync-loop {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
    check_read_len(&format!("sync-loop {what}"), result as usize, want as u64)
}

impl SyncExec {
    fn reserve(&self, data_end_bytes: u64) -> OpResult {
        if data_end_bytes <= self.reserved_bytes.get() {
            return Ok(());
        }
        let target = data_end_bytes.div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
        let len = (HEADER_PAGE_BYTES + target) as libc::off_t;
        // SAFETY: fallocate on a descriptor `self.file` owns.
        if unsafe { libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) } != 0
        {
            return Err(format!(
                "sync-loop fallocate: {}",
                std::io::Error::last_os_error()
            ));
        }
        self.reserved_bytes.set(target);
        Ok(())
    }

    fn io(&self, op: Op) -> OpResult {
        let fd = self.file.as_raw_fd();
        let mut buf = self.buf.borrow_mut();
        let (offset_bytes, len_bytes, write, sync) = match op {
            Op::Read {
                offset_bytes,
                len_bytes,
            } => (offset_bytes, len_bytes, false, false),
            Op::Write {
                offset_bytes,
                len_bytes,
                sync,
            } => (offset_bytes, len_bytes, true, sync),
        };
        if write {
            self.reserve(offset_bytes + len_bytes)?;
        }
        let at = (HEADER_PAGE_BYTES + offset_bytes) as libc::off_t;
        let len = (len_bytes as usize).min(buf.len_bytes);
        let ptr = buf.as_mut_ptr();
        // SAFETY: `ptr` points at `len` bytes of `buf`, borrowed for the call.
        let (what, done) = unsafe {
            if write {
                ("pwrite", libc::pwrite(fd, ptr, len, at))
            } else {
                ("pread", libc::pread(fd, ptr, len, at))
            }
        };
        check(what, done, len_bytes as usize)?;
        // SAFETY: fdatasync on a descriptor `self.file` owns.
        if sync && unsafe { libc::fdatasync(fd) } != 0 {
            return Err(format!(
                "sync-loop fdatasync: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

impl OpExec for SyncExec {
    async fn exec(&self, op: Op) -> OpResult {
        self.io(op)
    }
}

fn open_direct(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("sync-loop open {}: {e}", path.display()))
}

/// Runs case `index` on a thread pinned to `env.peer_cpu`, or says why it cannot.
pub fn run_case(env: &Env, index: usize) -> Outcome {
    let case = &env.plan.cases[index];
    if case.load != (Load::Closed { queue_depth: 1 }) {
        return Outcome::Skipped {
            reason: "one op at a time: closed loops at depth 1 only".into(),
        };
    }
    if !case
        .workload
        .block_size_bytes
        .is_multiple_of(ALIGN_BYTES as u64)
    {
        return Outcome::Skipped {
            reason: "O_DIRECT needs whole 4KiB blocks".into(),
        };
    }
    let fresh = !case.workload.kind.uses_data_file();
    let path = if fresh {
        env.work_dir
            .join("raw")
            .join(format!("sync-append-{index}.bin"))
    } else {
        env.raw_data_path()
    };
    if fresh {
        if let Err(e) = std::fs::write(&path, pattern(HEADER_PAGE_BYTES as usize)) {
            return Outcome::Failed {
                error: format!("sync-loop: write {}: {e}", path.display()),
            };
        }
    }
    let (plan, cpu) = (env.plan.clone(), env.peer_cpu);
    let reserved_bytes = if fresh { 0 } else { plan.data_file_bytes };
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("bench-sync-loop".into())
        .spawn(move || {
            pin_to(cpu);
            let case = &plan.cases[index];
            let exec = SyncExec {
                file: open_direct(&thread_path)?,
                buf: RefCell::new(AlignedBuf::new(case.workload.block_size_bytes as usize)),
                reserved_bytes: Cell::new(reserved_bytes),
            };
            Ok(rt::block_on(targets::run_case(
                case,
                &plan,
                &ThreadSleep,
                &exec,
            )))
        });
    let outcome = match thread.map(|t| t.join()) {
        Ok(Ok(Ok(outcome))) => outcome,
        Ok(Ok(Err(error))) => Outcome::Failed { error },
        Ok(Err(_)) => Outcome::Failed {
            error: "the sync-loop thread panicked".into(),
        },
        Err(e) => Outcome::Failed {
            error: format!("spawn the sync-loop thread: {e}"),
        },
    };
    if fresh {
        let _ = std::fs::remove_file(&path);
    }
    outcome
}
