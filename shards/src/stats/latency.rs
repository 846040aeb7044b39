//! The latency histogram of one operation kind: an HdrHistogram with fixed
//! bounds, so its memory is known up front and recording never allocates
//! (record with `saturating_record`: a value outside the bounds is clamped,
//! never a resize).
//!
//! Bounds: microseconds from 1 µs to [`LATENCY_MAX_US`] (60 s), two
//! significant digits (a value is kept within 1%). That is 2,560 counters
//! of 8 bytes: [`LATENCY_HISTOGRAM_BYTES`] (20 KiB) per histogram, 160 KiB
//! for a shard's eight operation kinds, and as much again for each
//! snapshot of them. Three digits would cost seven times that for a
//! precision no tail-latency alert needs.

use hdrhistogram::Histogram;

/// The slowest latency a histogram tells apart, in microseconds (60 s);
/// slower operations count as this.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Significant decimal digits every recorded latency keeps.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;
/// The memory of one latency histogram's counters, in bytes.
pub const LATENCY_HISTOGRAM_BYTES: usize = 2_560 * std::mem::size_of::<u64>();

/// An empty latency histogram (microseconds) with the bounds above.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
        .expect("the latency bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_memory_is_the_memory_used() {
        let histogram = latency_histogram();
        assert_eq!(
            histogram.distinct_values() * std::mem::size_of::<u64>(),
            LATENCY_HISTOGRAM_BYTES
        );
    }

    #[test]
    fn values_past_the_bounds_are_clamped_not_lost() {
        let mut histogram = latency_histogram();
        histogram.saturating_record(3_600_000_000);
        histogram.saturating_record(0);
        assert_eq!(histogram.len(), 2);
        assert!(histogram.max() >= LATENCY_MAX_US);
        assert_eq!(histogram.distinct_values() * 8, LATENCY_HISTOGRAM_BYTES);
    }
}
