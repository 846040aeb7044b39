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

/// Median and range of one figure over the repeats of a case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The median (mean of the middle two for an even count), min and max of `values`.
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return Spread::default();
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }

    /// One measurement: median, min and max are that value.
    pub fn single(value: f64) -> Spread {
        Spread::of(&[value])
    }
}

/// Each repeat's figures, in repeat order (the same order for every target
/// of a case, so two targets' values pair up repeat by repeat).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PerRepeat {
    pub ops_per_s: Vec<f64>,
    pub p50_us: Vec<f64>,
    pub p99_us: Vec<f64>,
    /// Each repeat's p99.9: the tail targets take the median over repeats.
    pub p999_us: Vec<f64>,
}

impl PerRepeat {
    pub fn single(ops_per_s: f64, p50_us: f64, p99_us: f64, p999_us: f64) -> PerRepeat {
        PerRepeat {
            ops_per_s: vec![ops_per_s],
            p50_us: vec![p50_us],
            p99_us: vec![p99_us],
            p999_us: vec![p999_us],
        }
    }
}

/// Fewest samples for which the table shows p99.99 (else `-`): with fewer,
/// the 99.99th percentile rests on under ten ops.
pub const P9999_SAMPLES_MIN: u64 = 100_000;

/// An open loop's latencies from each op's actual issue (not corrected for
/// coordinated omission), next to the corrected ones of `Summary`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Uncorrected {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// CPU time and context switches a target spent on one case (all repeats):
/// what spinning costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// Wall time of the runs these figures cover (warm-ups included).
    pub wall_s: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Interrupts of the data disk during the runs, summed over CPUs.
    pub disk_interrupts: u64,
    /// CPU time of the CPU hog (cases with one; not in the target's own
    /// figures). Beside a target pinned to the hog's CPU, it is the share a
    /// thread of the embedding program gets there; beside one that is not,
    /// the hog has its CPU to itself.
    pub hog_cpu_s: f64,
    /// The CPU the hog was pinned to.
    pub hog_on_cpu: Option<usize>,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.wall_s += other.wall_s;
        self.cpu_user_s += other.cpu_user_s;
        self.cpu_system_s += other.cpu_system_s;
        self.voluntary_switches += other.voluntary_switches;
        self.involuntary_switches += other.involuntary_switches;
        self.disk_interrupts += other.disk_interrupts;
        self.hog_cpu_s += other.hog_cpu_s;
        self.hog_on_cpu = self.hog_on_cpu.or(other.hog_on_cpu);
    }
}

/// What a row's work differs in from the others of its case; a flagged row
/// is never the "best" peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Caveat {
    /// Writes reach only the page cache, not the device.
    PageCache,
    /// Percentiles of two separately timed steps added (an upper bound).
    Summed,
}

impl Caveat {
    pub fn label(self) -> &'static str {
        match self {
            Caveat::PageCache => "page cache",
            Caveat::Summed => "summed",
        }
    }
}

/// The numbers of one (case, target) row: over every repeat of the case.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Median over the repeats.
    pub ops_per_s: f64,
    pub mb_per_s: f64,
    /// ops/s of each repeat: median, min, max.
    pub ops_per_s_spread: Spread,
    /// From the histogram merged over the repeats.
    pub p50_us: f64,
    /// p50 of each repeat: median, min, max.
    pub p50_us_spread: Spread,
    pub p90_us: f64,
    /// From the merged histogram; each repeat's p99 is in `p99_us_spread`.
    pub p99_us: f64,
    pub p99_us_spread: Spread,
    pub p999_us: f64,
    /// `None` below `P9999_SAMPLES_MIN` samples.
    pub p9999_us: Option<f64>,
    pub max_us: f64,
    pub mean_us: f64,
    /// Ops measured over all repeats (every one, no sampling).
    pub samples: u64,
    /// Repeats this row merges.
    pub repeats: usize,
    pub per_repeat: PerRepeat,
    /// `(percentile, latency_us)` points for the spectrum plot.
    pub spectrum: Vec<(f64, f64)>,
    /// Caveats of this row (e.g. fio's sync latency summed per percentile).
    pub notes: Vec<String>,
    pub caveats: Vec<Caveat>,
    /// Open loop: the latest an op was issued after its intended start.
    pub max_issue_lag_us: f64,
    /// Open loop: ops issued more than `LATE_AFTER` after their intended start.
    pub late_ops: u64,
    /// Open loop: latency from each op's actual issue.
    pub uncorrected: Option<Uncorrected>,
    pub resources: Option<Resources>,
    /// The background's own figures, when the case had one (interference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<Box<Summary>>,
    #[serde(skip)]
    pub histogram_ns: Option<Histogram<u64>>,
    #[serde(skip)]
    pub uncorrected_ns: Option<Histogram<u64>>,
}

fn at_us(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    histogram.value_at_percentile(percentile) as f64 / 1e3
}

fn uncorrected_of(h: &Histogram<u64>) -> Uncorrected {
    Uncorrected {
        p50_us: at_us(h, 50.0),
        p99_us: at_us(h, 99.0),
        p999_us: at_us(h, 99.9),
        max_us: h.max() as f64 / 1e3,
    }
}

impl Summary {
    /// Summarises a recording of ops that each moved `op_bytes`.
    pub fn from_recording(recording: Recording, op_bytes: u64) -> Summary {
        let ops_per_s = recording.ops_per_s();
        let mut summary = Summary::from_histogram(recording.latency_ns, ops_per_s);
        summary.mb_per_s = summary.ops_per_s * op_bytes as f64 / 1e6;
        summary.max_issue_lag_us = recording.max_issue_lag_ns as f64 / 1e3;
        summary.late_ops = recording.late_ops;
        summary.uncorrected = recording.uncorrected_ns.as_ref().map(uncorrected_of);
        summary.uncorrected_ns = recording.uncorrected_ns;
        summary
    }

    /// The percentiles of a (merged) histogram, at `ops_per_s`.
    fn from_histogram(h: Histogram<u64>, ops_per_s: f64) -> Summary {
        let p99_us = at_us(&h, 99.0);
        Summary {
            ops_per_s,
            mb_per_s: 0.0,
            ops_per_s_spread: Spread::single(ops_per_s),
            p50_us: at_us(&h, 50.0),
            p50_us_spread: Spread::single(at_us(&h, 50.0)),
            p90_us: at_us(&h, 90.0),
            p99_us,
            p99_us_spread: Spread::single(p99_us),
            p999_us: at_us(&h, 99.9),
            p9999_us: (h.len() >= P9999_SAMPLES_MIN).then(|| at_us(&h, 99.99)),
            max_us: h.max() as f64 / 1e3,
            mean_us: h.mean() / 1e3,
            samples: h.len(),
            repeats: 1,
            per_repeat: PerRepeat::single(ops_per_s, at_us(&h, 50.0), p99_us, at_us(&h, 99.9)),
            spectrum: SPECTRUM_PERCENTILES
                .iter()
                .map(|&p| (p, at_us(&h, p)))
                .collect(),
            notes: Vec::new(),
            caveats: Vec::new(),
            max_issue_lag_us: 0.0,
            late_ops: 0,
            uncorrected: None,
            resources: None,
            background: None,
            histogram_ns: Some(h),
            uncorrected_ns: None,
        }
    }

    /// The table percentiles in `TABLE_PERCENTILES` order, then max.
    pub fn latency_columns_us(&self) -> [Option<f64>; 6] {
        [
            Some(self.p50_us),
            Some(self.p90_us),
            Some(self.p99_us),
            Some(self.p999_us),
            self.p9999_us,
            Some(self.max_us),
        ]
    }

    /// Whether this row may be chosen as the best peer (it does the same work).
    pub fn comparable(&self) -> bool {
        self.caveats.is_empty()
    }
}

/// Merges the repeats of one (case, target): histograms merged when every
/// repeat has one (else each percentile is the median over the repeats, as
/// for fio); ops/s as median with min and max, and each repeat's p50 and
/// p99 as median, min and max.
pub fn merge(runs: Vec<Summary>) -> Option<Summary> {
    let ops: Vec<f64> = runs.iter().map(|s| s.ops_per_s).collect();
    let p99s: Vec<f64> = runs.iter().map(|s| s.p99_us).collect();
    let p50s: Vec<f64> = runs.iter().map(|s| s.p50_us).collect();
    let ops_spread = Spread::of(&ops);
    let p99_spread = Spread::of(&p99s);
    let bytes_per_op = runs
        .first()
        .map_or(0.0, |s| s.mb_per_s / s.ops_per_s.max(f64::MIN_POSITIVE));
    let merged_histogram = merged(runs.iter().map(|s| s.histogram_ns.as_ref()));
    let mut merged_summary = match merged_histogram {
        Some(h) => {
            let mut s = Summary::from_histogram(h, ops_spread.median);
            s.uncorrected_ns = merged(runs.iter().map(|r| r.uncorrected_ns.as_ref()));
            s.uncorrected = s.uncorrected_ns.as_ref().map(uncorrected_of);
            s
        }
        None => median_of_percentiles(&runs)?,
    };
    let first = runs.first()?;
    merged_summary.ops_per_s = ops_spread.median;
    merged_summary.mb_per_s = ops_spread.median * bytes_per_op;
    merged_summary.ops_per_s_spread = ops_spread;
    merged_summary.p50_us_spread = Spread::of(&p50s);
    merged_summary.p99_us_spread = p99_spread;
    merged_summary.repeats = runs.len();
    merged_summary.per_repeat = PerRepeat {
        ops_per_s: runs
            .iter()
            .flat_map(|r| r.per_repeat.ops_per_s.clone())
            .collect(),
        p50_us: runs
            .iter()
            .flat_map(|r| r.per_repeat.p50_us.clone())
            .collect(),
        p99_us: runs
            .iter()
            .flat_map(|r| r.per_repeat.p99_us.clone())
            .collect(),
        p999_us: runs
            .iter()
            .flat_map(|r| r.per_repeat.p999_us.clone())
            .collect(),
    };
    merged_summary.notes = first.notes.clone();
    merged_summary.caveats = first.caveats.clone();
    merged_summary.max_issue_lag_us = runs.iter().map(|s| s.max_issue_lag_us).fold(0.0, f64::max);
    merged_summary.late_ops = runs.iter().map(|s| s.late_ops).sum();
    let backgrounds = runs.iter().filter_map(|s| s.background.as_deref().cloned());
    merged_summary.background = merge(backgrounds.collect()).map(Box::new);
    Some(merged_summary)
}

/// The histograms merged, or `None` unless every run has one.
fn merged<'a>(
    mut histograms: impl Iterator<Item = Option<&'a Histogram<u64>>>,
) -> Option<Histogram<u64>> {
    let mut total = histograms.next()??.clone();
    for h in histograms {
        total.add(h?).ok()?;
    }
    Some(total)
}

/// For runs without histograms (fio): every percentile the median over the runs.
fn median_of_percentiles(runs: &[Summary]) -> Option<Summary> {
    let first = runs.first()?;
    let median = |pick: &dyn Fn(&Summary) -> f64| {
        Spread::of(&runs.iter().map(pick).collect::<Vec<_>>()).median
    };
    let samples: u64 = runs.iter().map(|s| s.samples).sum();
    let mut s = first.clone();
    s.p50_us = median(&|s| s.p50_us);
    s.p90_us = median(&|s| s.p90_us);
    s.p99_us = median(&|s| s.p99_us);
    s.p999_us = median(&|s| s.p999_us);
    s.p9999_us = (samples >= P9999_SAMPLES_MIN).then(|| median(&|s| s.p9999_us.unwrap_or(0.0)));
    s.max_us = runs.iter().map(|s| s.max_us).fold(0.0, f64::max);
    s.mean_us = median(&|s| s.mean_us);
    s.samples = samples;
    s.spectrum = first
        .spectrum
        .iter()
        .enumerate()
        .map(|(i, &(p, _))| (p, median(&|s| s.spectrum.get(i).map_or(0.0, |x| x.1))))
        .collect();
    Some(s)
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

    /// One outcome for several shards run at once: ops/s and MB/s summed,
    /// histograms merged; the first failure fails it.
    pub fn sum(parts: Vec<Outcome>) -> Outcome {
        let mut summaries = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Outcome::Measured(summary) => summaries.push(*summary),
                other => return other,
            }
        }
        let total_ops_per_s: f64 = summaries.iter().map(|s| s.ops_per_s).sum();
        let total_mb_per_s: f64 = summaries.iter().map(|s| s.mb_per_s).sum();
        match merge(summaries) {
            Some(mut summary) => {
                summary.ops_per_s = total_ops_per_s;
                summary.mb_per_s = total_mb_per_s;
                summary.ops_per_s_spread = Spread::single(total_ops_per_s);
                if let Some(h) = &summary.histogram_ns {
                    summary.p99_us = at_us(h, 99.0);
                    summary.p50_us_spread = Spread::single(summary.p50_us);
                }
                summary.p99_us_spread = Spread::single(summary.p99_us);
                summary.repeats = 1;
                summary.per_repeat = PerRepeat::single(
                    total_ops_per_s,
                    summary.p50_us,
                    summary.p99_us,
                    summary.p999_us,
                );
                Outcome::Measured(Box::new(summary))
            }
            None => Outcome::Skipped {
                reason: "no shard ran".into(),
            },
        }
    }

    /// One outcome for all repeats of a (case, target): the measured
    /// repeats merged (a note counts the failed ones); else the first
    /// failure, else the skip.
    pub fn aggregate(runs: Vec<Outcome>) -> Outcome {
        let total = runs.len();
        let mut measured = Vec::with_capacity(total);
        let mut failures = Vec::new();
        let mut skipped = None;
        for run in runs {
            match run {
                Outcome::Measured(summary) => measured.push(*summary),
                Outcome::Failed { error } => failures.push(error),
                skip @ Outcome::Skipped { .. } => skipped = skipped.or(Some(skip)),
            }
        }
        match merge(measured) {
            Some(mut summary) => {
                if let Some(first) = failures.first() {
                    summary.notes.push(format!(
                        "{} of {total} repeats failed (first: {first})",
                        failures.len()
                    ));
                }
                Outcome::Measured(Box::new(summary))
            }
            None => match (failures.into_iter().next(), skipped) {
                (Some(error), _) => Outcome::Failed { error },
                (None, Some(skip)) => skip,
                (None, None) => Outcome::Skipped {
                    reason: "not run".into(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Window;
    use std::time::Duration;

    fn recording_of(latencies_us: impl Iterator<Item = u64>, measured_s: u64) -> Recording {
        let window = Window::starting_now(Duration::ZERO, Duration::from_secs(measured_s));
        let mut recording = Recording::new(&window);
        for latency_us in latencies_us {
            recording.latency_ns.record(latency_us * 1000).unwrap();
        }
        recording
    }

    #[test]
    fn summary_reads_percentiles_from_every_op() {
        let summary = Summary::from_recording(recording_of(1..=10_000, 2), 4096);
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
        // 10,000 samples: p99.99 rests on one op, so it is not shown.
        assert_eq!(summary.p9999_us, None);
    }

    #[test]
    fn spread_is_median_min_and_max() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 10.0]).median, 3.0);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).median, 5.0);
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn repeats_merge_histograms_and_take_medians_of_ops_and_p99() {
        // Three repeats: 1 s each, 40,000 ops of 1..=40,000 µs shifted by
        // 0, 10 and 20 ms; ops/s 40,000 each but one of 20,000 (2 s window).
        let runs: Vec<Outcome> = [(0u64, 1u64), (10_000, 1), (20_000, 2)]
            .into_iter()
            .map(|(shift_us, seconds)| {
                let recording = recording_of((1..=40_000).map(move |us| us + shift_us), seconds);
                Outcome::Measured(Box::new(Summary::from_recording(recording, 4096)))
            })
            .collect();
        let Outcome::Measured(merged) = Outcome::aggregate(runs) else {
            panic!("not measured")
        };
        assert_eq!(merged.repeats, 3);
        assert_eq!(merged.per_repeat.ops_per_s, [40_000.0, 40_000.0, 20_000.0]);
        assert_eq!(merged.samples, 120_000);
        assert_eq!(merged.ops_per_s, 40_000.0);
        assert_eq!(merged.ops_per_s_spread.min, 20_000.0);
        assert_eq!(merged.ops_per_s_spread.max, 40_000.0);
        // p99 per repeat: 39,600 + shift; the median is the middle repeat's.
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.001;
        assert!(close(merged.p99_us_spread.median, 49_600.0));
        assert!(close(merged.p99_us_spread.min, 39_600.0));
        assert!(close(merged.p99_us_spread.max, 59_600.0));
        // The merged histogram: the median and the p99 of all 120,000 ops
        // (the top 1,200 of them lie in 58,801..=60,000 µs), and the max.
        assert!(close(merged.p50_us, 30_000.0), "{}", merged.p50_us);
        assert!(close(merged.p99_us, 58_800.0), "{}", merged.p99_us);
        assert!(close(merged.max_us, 60_000.0));
        // 120,000 samples: p99.99 is shown.
        assert!(merged.p9999_us.is_some());
    }

    #[test]
    fn failed_repeats_are_counted_and_all_failed_is_a_failure() {
        let ok = || {
            Outcome::Measured(Box::new(Summary::from_recording(
                recording_of(1..=10, 1),
                1,
            )))
        };
        let failed = || Outcome::Failed {
            error: "boom".into(),
        };
        let Outcome::Measured(s) = Outcome::aggregate(vec![ok(), failed(), ok()]) else {
            panic!("not measured")
        };
        assert_eq!(s.repeats, 2);
        assert!(
            s.notes[0].contains("1 of 3 repeats failed"),
            "{:?}",
            s.notes
        );
        assert!(matches!(
            Outcome::aggregate(vec![failed(), failed()]),
            Outcome::Failed { .. }
        ));
    }

    #[test]
    fn shards_run_at_once_add_their_ops_and_merge_their_histograms() {
        let part = |shift_us: u64| {
            let recording = recording_of((1..=1000).map(move |us| us + shift_us), 1);
            Outcome::Measured(Box::new(Summary::from_recording(recording, 4096)))
        };
        let Outcome::Measured(total) = Outcome::sum(vec![part(0), part(1000)]) else {
            panic!("not measured")
        };
        assert_eq!(total.ops_per_s, 2000.0);
        assert!((total.mb_per_s - 2000.0 * 4096.0 / 1e6).abs() < 1e-9);
        assert_eq!(total.samples, 2000);
        // The merged histogram's p99: 1,980 of 1..=2,000 µs.
        assert!(
            (total.p99_us - 1980.0).abs() / 1980.0 < 0.001,
            "{}",
            total.p99_us
        );
        let failed = Outcome::Failed {
            error: "shard 1".into(),
        };
        assert!(matches!(
            Outcome::sum(vec![part(0), failed]),
            Outcome::Failed { .. }
        ));
    }
}
