//! Workloads: the shape of every operation (read or write, offset, length,
//! sync). Each target runs the same `OpStream`, so one of our rows and a
//! peer's row differ only in the stack below, never in the access pattern.

use serde::{Deserialize, Serialize};
use shardblob_shards::rng::Rng;

use crate::units::format_size;

/// The kinds of workload the benchmark knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Random aligned reads over a prefilled file.
    RandRead,
    /// Random aligned overwrites of a prefilled file.
    RandWrite,
    /// Sequential reads, wrapping at the end of the file.
    SeqRead,
    /// Sequential overwrites, wrapping at the end of the file.
    SeqWrite,
    /// A growing file: each op writes one block at the end, then syncs.
    AppendSync,
    /// A growing file of small records, synced each time `sync_every_bytes` accrue.
    SmallAppend,
    /// Random reads and writes mixed by `read_percent`.
    Mix,
}

impl WorkloadKind {
    /// Whether the workload addresses the shared prefilled data file (else a fresh, growing one).
    pub fn uses_data_file(self) -> bool {
        !matches!(self, WorkloadKind::AppendSync | WorkloadKind::SmallAppend)
    }

    /// The kebab-case name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::RandRead => "rand-read",
            WorkloadKind::RandWrite => "rand-write",
            WorkloadKind::SeqRead => "seq-read",
            WorkloadKind::SeqWrite => "seq-write",
            WorkloadKind::AppendSync => "append-sync",
            WorkloadKind::SmallAppend => "small-append",
            WorkloadKind::Mix => "mix",
        }
    }
}

/// One workload, fully specified.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// Bytes per operation.
    pub block_size_bytes: u64,
    /// Bytes of the data file the operations address (data-file workloads).
    pub file_size_bytes: u64,
    /// Share of reads in a `Mix`, 0..=100.
    pub read_percent: u8,
    /// `SmallAppend`: sync after this many appended bytes.
    pub sync_every_bytes: u64,
}

impl Workload {
    /// A short label: `rand-read-4KiB`, `mix70-4KiB`, `small-append-256B`.
    pub fn label(&self) -> String {
        let size = format_size(self.block_size_bytes);
        match self.kind {
            WorkloadKind::Mix => format!("mix{}-{size}", self.read_percent),
            kind => format!("{}-{size}", kind.name()),
        }
    }

    /// Checks the numbers fit together; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let label = self.label();
        if self.block_size_bytes == 0 {
            return Err(format!("{label}: block size must be > 0"));
        }
        if self.kind.uses_data_file() {
            if !self.block_size_bytes.is_multiple_of(4096) {
                return Err(format!(
                    "{label}: block size must be a multiple of 4KiB (O_DIRECT peers need aligned I/O)"
                ));
            }
            if self.file_size_bytes < self.block_size_bytes {
                return Err(format!("{label}: file size must hold at least one block"));
            }
        }
        if self.kind == WorkloadKind::AppendSync && !self.block_size_bytes.is_multiple_of(4096) {
            return Err(format!("{label}: block size must be a multiple of 4KiB"));
        }
        if self.read_percent > 100 {
            return Err(format!("{label}: read percent must be 0..=100"));
        }
        if self.kind == WorkloadKind::SmallAppend && self.sync_every_bytes < self.block_size_bytes {
            return Err(format!("{label}: sync-every must be at least one record"));
        }
        Ok(())
    }
}

/// One operation, in the workload's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `len_bytes` at `offset_bytes`.
    Read { offset_bytes: u64, len_bytes: u64 },
    /// Write `len_bytes` at `offset_bytes`; if `sync`, then sync the file
    /// (the op's latency covers both).
    Write {
        offset_bytes: u64,
        len_bytes: u64,
        sync: bool,
    },
}

/// The endless stream of operations of one workload.
#[derive(Clone, Debug)]
pub struct OpStream {
    workload: Workload,
    /// The same seed gives every target the same offsets.
    rng: Rng,
    next_offset_bytes: u64,
    unsynced_bytes: u64,
}

impl OpStream {
    /// A stream starting at offset 0 (appends: at the end of an empty file).
    pub fn new(workload: &Workload, seed: u64) -> OpStream {
        OpStream {
            workload: workload.clone(),
            rng: Rng::new(seed),
            next_offset_bytes: 0,
            unsynced_bytes: 0,
        }
    }

    fn random_block_offset(&mut self) -> u64 {
        let blocks = self.workload.file_size_bytes / self.workload.block_size_bytes;
        self.rng.below(blocks) * self.workload.block_size_bytes
    }

    fn sequential_offset(&mut self) -> u64 {
        let block = self.workload.block_size_bytes;
        if self.next_offset_bytes + block > self.workload.file_size_bytes {
            self.next_offset_bytes = 0;
        }
        let offset = self.next_offset_bytes;
        self.next_offset_bytes += block;
        offset
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let len_bytes = self.workload.block_size_bytes;
        match self.workload.kind {
            WorkloadKind::RandRead => Op::Read {
                offset_bytes: self.random_block_offset(),
                len_bytes,
            },
            WorkloadKind::RandWrite => Op::Write {
                offset_bytes: self.random_block_offset(),
                len_bytes,
                sync: false,
            },
            WorkloadKind::SeqRead => Op::Read {
                offset_bytes: self.sequential_offset(),
                len_bytes,
            },
            WorkloadKind::SeqWrite => Op::Write {
                offset_bytes: self.sequential_offset(),
                len_bytes,
                sync: false,
            },
            WorkloadKind::AppendSync | WorkloadKind::SmallAppend => {
                let offset_bytes = self.next_offset_bytes;
                self.next_offset_bytes += len_bytes;
                self.unsynced_bytes += len_bytes;
                let sync = self.workload.kind == WorkloadKind::AppendSync
                    || self.unsynced_bytes >= self.workload.sync_every_bytes;
                if sync {
                    self.unsynced_bytes = 0;
                }
                Op::Write {
                    offset_bytes,
                    len_bytes,
                    sync,
                }
            }
            WorkloadKind::Mix => {
                let offset_bytes = self.random_block_offset();
                if self.rng.below(100) < u64::from(self.workload.read_percent) {
                    Op::Read {
                        offset_bytes,
                        len_bytes,
                    }
                } else {
                    Op::Write {
                        offset_bytes,
                        len_bytes,
                        sync: false,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(kind: WorkloadKind, block_size_bytes: u64) -> Workload {
        Workload {
            kind,
            block_size_bytes,
            file_size_bytes: 1 << 20,
            read_percent: 70,
            sync_every_bytes: 1 << 20,
        }
    }

    #[test]
    fn random_offsets_are_aligned_and_inside_the_file() {
        let w = workload(WorkloadKind::RandRead, 4096);
        let mut ops = OpStream::new(&w, 7);
        for _ in 0..10_000 {
            let Op::Read {
                offset_bytes,
                len_bytes,
            } = ops.next_op()
            else {
                panic!("rand-read made a write")
            };
            assert_eq!(offset_bytes % 4096, 0);
            assert!(offset_bytes + len_bytes <= w.file_size_bytes);
        }
    }

    #[test]
    fn sequential_offsets_wrap_at_the_end() {
        let w = workload(WorkloadKind::SeqWrite, 128 << 10);
        let mut ops = OpStream::new(&w, 1);
        let offsets: Vec<u64> = (0..9)
            .map(|_| match ops.next_op() {
                Op::Write { offset_bytes, .. } => offset_bytes,
                op => panic!("{op:?}"),
            })
            .collect();
        assert_eq!(
            offsets[..8],
            (0..8).map(|i| i * (128 << 10)).collect::<Vec<_>>()[..]
        );
        assert_eq!(offsets[8], 0);
    }

    #[test]
    fn small_appends_sync_once_per_interval() {
        let mut w = workload(WorkloadKind::SmallAppend, 256);
        w.sync_every_bytes = 1024;
        let mut ops = OpStream::new(&w, 1);
        let syncs: Vec<bool> = (0..8)
            .map(|_| match ops.next_op() {
                Op::Write { sync, .. } => sync,
                op => panic!("{op:?}"),
            })
            .collect();
        assert_eq!(
            syncs,
            [false, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn append_sync_grows_and_syncs_every_op() {
        let w = workload(WorkloadKind::AppendSync, 4096);
        let mut ops = OpStream::new(&w, 1);
        for i in 0..3 {
            assert_eq!(
                ops.next_op(),
                Op::Write {
                    offset_bytes: i * 4096,
                    len_bytes: 4096,
                    sync: true
                }
            );
        }
    }

    #[test]
    fn mix_honours_the_read_share() {
        let w = workload(WorkloadKind::Mix, 4096);
        let mut ops = OpStream::new(&w, 3);
        let reads = (0..10_000)
            .filter(|_| matches!(ops.next_op(), Op::Read { .. }))
            .count();
        assert!((6_700..7_300).contains(&reads), "{reads} reads of 10000");
    }

    #[test]
    fn labels_and_validation() {
        assert_eq!(workload(WorkloadKind::Mix, 4096).label(), "mix70-4KiB");
        assert_eq!(
            workload(WorkloadKind::SmallAppend, 256).label(),
            "small-append-256B"
        );
        assert!(workload(WorkloadKind::RandRead, 4096).validate().is_ok());
        assert!(workload(WorkloadKind::RandRead, 1000).validate().is_err());
        assert!(workload(WorkloadKind::SmallAppend, 256).validate().is_ok());
    }
}
