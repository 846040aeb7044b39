//! What one target measured for one case, in a form every report reads:
//! throughput, the standard percentiles, and a percentile spectrum for
//! plots. Our targets and the Rust peers also keep the full histogram (for
//! .hgrm files); fio gives percentiles only.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Recording;

/// The percentiles of every table row.
pub const TABLE_PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// The percentiles of the spectrum plot (and of fio's percentile list; fio takes at most 20).
pub const SPECTRUM_PERCENTILES: [f64; 17] = [
    1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
    99.9995, 99.9999, 100.0,
];

/// The numbers of one (case, target) row.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub ops_per_s: f64,
    pub mb_per_s: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// Ops measured (every one, no sampling).
    pub samples: u64,
    /// `(percentile, latency_us)` points for the spectrum plot.
    pub spectrum: Vec<(f64, f64)>,
    /// Caveats of this row (e.g. fio's sync latency summed per percentile).
    pub notes: Vec<String>,
    /// Open loop: the latest an op was issued after its intended start.
    pub max_issue_lag_us: f64,
    /// Open loop: ops the target fell too far behind to issue.
    pub missed_ops: u64,
    #[serde(skip)]
    pub histogram_ns: Option<Histogram<u64>>,
}

fn at_us(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    histogram.value_at_percentile(percentile) as f64 / 1e3
}

impl Summary {
    /// Summarises a recording of ops that each moved `op_bytes`.
    pub fn from_recording(recording: Recording, op_bytes: u64) -> Summary {
        let h = &recording.latency_ns;
        let ops_per_s = recording.ops_per_s();
        Summary {
            ops_per_s,
            mb_per_s: ops_per_s * op_bytes as f64 / 1e6,
            p50_us: at_us(h, 50.0),
            p90_us: at_us(h, 90.0),
            p99_us: at_us(h, 99.0),
            p999_us: at_us(h, 99.9),
            p9999_us: at_us(h, 99.99),
            max_us: h.max() as f64 / 1e3,
            mean_us: h.mean() / 1e3,
            samples: h.len(),
            spectrum: SPECTRUM_PERCENTILES
                .iter()
                .map(|&p| (p, at_us(h, p)))
                .collect(),
            notes: Vec::new(),
            max_issue_lag_us: recording.max_issue_lag_ns as f64 / 1e3,
            missed_ops: recording.missed_ops,
            histogram_ns: Some(recording.latency_ns),
        }
    }

    /// The table percentiles in `TABLE_PERCENTILES` order, then max.
    pub fn latency_columns_us(&self) -> [f64; 6] {
        [
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.p9999_us,
            self.max_us,
        ]
    }
}

/// How a (case, target) run ended.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    Measured(Box<Summary>),
    /// Not run, and why (tool missing, shape it cannot express, ...).
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
}

impl Outcome {
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Outcome::Measured(summary) => Some(summary),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Window;
    use std::time::Duration;

    #[test]
    fn summary_reads_percentiles_from_every_op() {
        let window = Window::starting_now(Duration::ZERO, Duration::from_secs(2));
        let mut recording = Recording::new(&window);
        for latency_us in 1..=10_000u64 {
            recording.latency_ns.record(latency_us * 1000).unwrap();
        }
        let summary = Summary::from_recording(recording, 4096);
        assert_eq!(summary.samples, 10_000);
        assert!((summary.ops_per_s - 5_000.0).abs() < 1e-6);
        assert!((summary.mb_per_s - 5_000.0 * 4096.0 / 1e6).abs() < 1e-6);
        // 3 significant digits: within 0.1%.
        for (got, want) in [
            (summary.p50_us, 5000.0),
            (summary.p99_us, 9900.0),
            (summary.max_us, 10_000.0),
        ] {
            assert!((got - want).abs() / want < 0.001, "{got} vs {want}");
        }
        assert_eq!(summary.spectrum.len(), SPECTRUM_PERCENTILES.len());
        assert!(summary.spectrum.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
