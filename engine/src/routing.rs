//! Which shard owns a partition.
//!
//! A partition's shard is a pure function of its name and the shard count:
//! ahash under fixed seeds, so the same name maps to the same shard in every
//! process of the same build. A server can call [`shard_of`] to accept work
//! on the owning core and skip the hop. Nothing on disk records shards, so
//! the shard count may change between runs.

/// Fixed seeds: changing them re-homes every partition.
const SEEDS: [u64; 4] = [
    0x7368_6172_6462_6c6f,
    0x6220_7061_7274_6974,
    0x696f_6e20_7365_6564,
    0x2031_2032_2033_2034,
];

/// The shard (in `0..shard_count`) that owns `partition`.
pub fn shard_of(partition: &str, shard_count: usize) -> usize {
    assert!(shard_count > 0, "an engine has at least one shard");
    let state = ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);
    (state.hash_one(partition.as_bytes()) % shard_count as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_partitions_map_to_pinned_shards() {
        let got: Vec<usize> = ["users", "orders", "p0", "p1", "p2", "log-2026"]
            .iter()
            .map(|p| shard_of(p, 7))
            .collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [usize; 6] = [0, 6, 0, 3, 3, 2];

    #[test]
    fn spreads_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("partition-{i}"), 4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
