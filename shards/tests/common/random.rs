//! Seeded random operations over a few partitions and names: writes at
//! aligned, unaligned, appending and sparse offsets (some SYNC, some
//! vectored), reads, `read_many`, resizes, syncs, closes and reopens,
//! removes of blobs and partitions, scans, restarts of the store.

use super::harness::{Data, Harness, Key, Op, Target};
use super::Rng;

pub const PARTITIONS: [&str; 2] = ["p0", "p1"];
pub const NAMES: [&[u8]; 3] = [b"a", b"b", &[0x00, 0xff]];
/// Blobs stay below this many bytes, so each seed stays cheap.
pub const LEN_MAX: u64 = 40 * 1024;

fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize].clone()
}

fn key(rng: &mut Rng) -> Key {
    (
        pick(rng, &PARTITIONS).to_string(),
        pick(rng, &NAMES).to_vec(),
    )
}

/// An offset relative to a blob of length `len`: inside, at the end, past
/// it (a sparse gap), block- or sector-aligned, or straddling the end.
pub fn offset(rng: &mut Rng, len: u64) -> u64 {
    match rng.below(6) {
        0 => rng.below(len + 1),
        1 => len,
        2 => len + 1 + rng.below(3 * 4096),
        3 => rng.below(len / 4096 + 2) * 4096,
        4 => rng.below(len / 512 + 2) * 512,
        _ => len.saturating_sub(1 + rng.below(600)),
    }
}

pub fn size(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => 1 + rng.below(16),
        1 => 1 + rng.below(1200),
        2 => 4096 * (1 + rng.below(3)),
        3 => 512 * (1 + rng.below(10)),
        _ => 1 + rng.below(9000),
    }
}

/// A range to read from a blob of length `len`; one in twenty reaches
/// past the end.
pub fn range(rng: &mut Rng, len: u64) -> (u64, usize) {
    if rng.one_in(20) {
        return (
            len.saturating_sub(rng.below(10)),
            1 + rng.below(20) as usize,
        );
    }
    let offset = rng.below(len + 1);
    (offset, rng.below(len - offset + 1).min(9000) as usize)
}

/// A random op that suits the harness's current handles.
pub fn op(rng: &mut Rng, h: &Harness) -> Op {
    let targets = h.targets();
    let roll = if targets.is_empty() {
        rng.below(19)
    } else {
        rng.below(100)
    };
    if roll < 12 {
        // Mostly names not open now, sometimes one that is.
        let mut key = key(rng);
        for _ in 0..3 {
            if !h.is_open(&key) {
                break;
            }
            key = self::key(rng);
        }
        return Op::Open(key);
    }
    match roll {
        12..=14 => return Op::Remove(key(rng)),
        15 if rng.one_in(2) => return Op::RemovePartition(pick(rng, &PARTITIONS).to_string()),
        15..=18 => return Op::Scan(pick(rng, &PARTITIONS).to_string()),
        _ => {}
    }
    if roll == 19 && rng.one_in(3) {
        return Op::Restart;
    }
    let target: Target = pick(rng, &targets);
    let len = h.handle(&target).expect("a target").model.borrow().len;
    match roll {
        19..=25 => Op::Close(target),
        26..=57 => {
            let size = size(rng);
            let offset = offset(rng, len).min(LEN_MAX - size);
            let data = Data(rng.bytes(size as usize));
            let sync = rng.one_in(5);
            Op::Write {
                target,
                offset,
                data,
                sync,
                pieces: 1 + rng.below(3) as usize,
            }
        }
        58..=66 => {
            let (offset, len) = range(rng, len);
            Op::Read {
                target,
                offset,
                len,
            }
        }
        67..=70 => {
            let ranges = (0..1 + rng.below(5)).map(|_| range(rng, len)).collect();
            Op::ReadMany { target, ranges }
        }
        71..=78 => {
            let len = match rng.below(5) {
                0 => 0,
                1 => rng.below(len + 1),
                2 => len + rng.below(10_000),
                3 => rng.below(LEN_MAX / 4096) * 4096,
                _ => (len + rng.below(1000)).saturating_sub(500),
            };
            Op::Resize {
                target,
                len: len.min(LEN_MAX),
            }
        }
        _ => Op::Sync {
            target,
            start: rng.one_in(4),
        },
    }
}

/// Runs `steps` random ops; before each, with probability `1 / crash_one_in`,
/// a crash: half the time cut into the op (after 0..8 yields), half the
/// time after it. Ends with a crash.
pub async fn run(h: &mut Harness, rng: &mut Rng, steps: usize, crash_one_in: u64) {
    for _ in 0..steps {
        let op = op(rng, h);
        let crash = rng.one_in(crash_one_in);
        let limit = (crash && rng.one_in(2)).then(|| rng.below(8) as usize);
        h.run(&op, limit).await;
        if crash {
            h.crash().await;
        }
    }
    h.crash().await;
}
