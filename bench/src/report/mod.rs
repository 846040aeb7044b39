//! Reports of a run: the table on stdout, a JSON file, .hgrm percentile
//! distributions and SVG latency-spectrum plots, all from one `Results`.

pub mod hgrm;
pub mod interference;
pub mod json;
pub mod markdown;
pub mod svg;
pub mod table;

use std::fs;
use std::path::Path;

use crate::load::Load;
use crate::result::{Outcome, Summary};
use crate::suite::Plan;
use crate::targets::Target;

/// Everything measured: per target, one outcome per plan case.
pub struct Results {
    pub plan: Plan,
    pub by_target: Vec<(Target, Vec<Outcome>)>,
    /// Scaling mode: per case, one row per shard count.
    pub scaling: Vec<Vec<crate::run::ScalingRow>>,
    pub meta: Meta,
    /// Markdown written by hand (`--markdown-prose`), placed after the verdicts.
    pub prose: Option<String>,
}

/// The tables besides the cases', with their titles: the rate sweep and the scaling runs.
pub fn extra_tables(results: &Results) -> Vec<(String, Vec<Vec<String>>)> {
    let mut tables = Vec::new();
    if let Some(rows) = interference::table(results) {
        tables.push((
            "Interference (same shard and file; fg = the case's own ops, bg = the background writer)"
                .to_string(),
            rows,
        ));
    }
    if let Some(rows) = sweep_table(results) {
        tables.push(("Rate sweep".to_string(), rows));
    }
    if let Some(rows) = scaling_table(results) {
        tables.push((
            "Scaling across shards (each shard its own partitions; efficiency = ops/s / (shards x one shard's))"
                .to_string(),
            rows,
        ));
    }
    tables
}

/// The scaling runs as rows of cells (header first), or `None` without them.
pub fn scaling_table(results: &Results) -> Option<Vec<Vec<String>>> {
    use crate::units::format_latency_us;
    if results.scaling.is_empty() {
        return None;
    }
    let mut rows = vec![[
        "case",
        "shards",
        "ops/s",
        "ops/s min-max",
        "p50",
        "p99",
        "p99 min-max",
        "per-core efficiency",
    ]
    .map(String::from)
    .to_vec()];
    for (case, by_shards) in results.plan.cases.iter().zip(&results.scaling) {
        let one = by_shards
            .first()
            .and_then(|r| r.outcome.summary())
            .map(|s| s.ops_per_s);
        for row in by_shards {
            let mut cells = vec![case.label(), row.shards.to_string()];
            match row.outcome.summary() {
                Some(s) => cells.extend([
                    table::thousands(s.ops_per_s),
                    format!(
                        "{}-{}",
                        table::thousands(s.ops_per_s_spread.min),
                        table::thousands(s.ops_per_s_spread.max)
                    ),
                    format_latency_us(s.p50_us),
                    format_latency_us(s.p99_us),
                    format!(
                        "{}-{}",
                        format_latency_us(s.p99_us_spread.min),
                        format_latency_us(s.p99_us_spread.max)
                    ),
                    one.map_or("-".into(), |one| {
                        format!("{:.2}", s.ops_per_s / (row.shards as f64 * one))
                    }),
                ]),
                None => cells.push(match &row.outcome {
                    Outcome::Failed { error } => format!("FAILED: {error}"),
                    Outcome::Skipped { reason } => format!("skipped: {reason}"),
                    Outcome::Measured(_) => String::new(),
                }),
            }
            rows.push(cells);
        }
    }
    Some(rows)
}

/// A target's highest offered rate under the sweep's p99 bound.
pub type SweepRate = (Target, Option<u64>);

/// The rate sweep as rows of cells (header first), or `None` without a sweep.
pub fn sweep_table(results: &Results) -> Option<Vec<Vec<String>>> {
    let bound_us = results.plan.sweep_p99_us?;
    let mut rows = vec![vec![
        "workload".to_string(),
        "target".into(),
        format!("highest rate with p99 <= {bound_us} µs"),
    ]];
    for (workload, per_target) in results.sweep() {
        for (target, rate) in per_target {
            let cell = rate.map_or("none of the rates".into(), |r| format!("{r}/s"));
            rows.push(vec![workload.clone(), target.name().into(), cell]);
        }
    }
    Some(rows)
}

/// Version of the JSON report's layout; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 2;

/// Where and how the run happened.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Meta {
    pub schema_version: u32,
    pub command: String,
    pub started_utc: String,
    pub git_commit: String,
    /// CPU, disk, filesystem of the run.
    pub environment: crate::machine::Machine,
    /// /proc/loadavg at the start and the end: other work on the machine skews results.
    pub load_average_start: String,
    pub load_average_end: String,
    pub fio_version: Option<String>,
    pub engine_config: String,
    /// Which shard owns the benchmark partition, on which CPU, and why.
    pub shard_placement: String,
    /// Every field of the engine configuration used (data_dir aside, which the run replaces).
    pub engine_settings: String,
    /// The engine's `[io_scheduler]` bounds, for the report's header.
    pub io_scheduler: String,
    pub warmup_ms: u128,
    pub duration_ms: u128,
    pub repeats: usize,
    /// Drains between targets that gave up with dirty or writeback pages left.
    pub undrained: usize,
    pub data_file_bytes: u64,
}

impl Results {
    /// `(target, outcome)` of case `index`, in target order.
    pub fn case_outcomes(&self, index: usize) -> impl Iterator<Item = (Target, &Outcome)> {
        self.by_target
            .iter()
            .filter_map(move |(target, outcomes)| outcomes.get(index).map(|o| (*target, o)))
    }

    /// `peer`'s summary for case `index`, if measured.
    pub fn peer(&self, index: usize, peer: Target) -> Option<&Summary> {
        self.case_outcomes(index)
            .find(|(t, _)| *t == peer)
            .and_then(|(_, o)| o.summary())
    }

    /// The best measured peer of case `index` among those doing the same
    /// work (no caveat): the most ops/s in a closed loop, the lowest p99 in
    /// an open loop (where ops/s is the offered rate).
    pub fn best_peer(&self, index: usize) -> Option<(Target, &Summary)> {
        self.best_of(index, |t| !t.is_ours(), true)
    }

    /// The better fio variant of case `index`, as `best_peer` judges (its
    /// summed append + sync percentiles included: ops/s is still exact).
    pub fn best_fio(&self, index: usize) -> Option<(Target, &Summary)> {
        self.best_of(index, Target::is_fio, false)
    }

    fn best_of(
        &self,
        index: usize,
        pick: fn(Target) -> bool,
        comparable_only: bool,
    ) -> Option<(Target, &Summary)> {
        let open = matches!(self.plan.cases[index].load, crate::load::Load::Open { .. });
        self.case_outcomes(index)
            .filter(|(t, _)| pick(*t))
            .filter_map(|(t, o)| o.summary().map(|s| (t, s)))
            .filter(|(_, s)| s.comparable() || !comparable_only)
            .max_by(|a, b| {
                if open {
                    b.1.p99_us.total_cmp(&a.1.p99_us)
                } else {
                    a.1.ops_per_s.total_cmp(&b.1.ops_per_s)
                }
            })
    }

    /// Rate sweep: per workload with open-loop cases, per target the
    /// highest offered rate whose p99 (over all repeats' ops) stayed under the bound
    /// (`None`: not even the lowest).
    pub fn sweep(&self) -> Vec<(String, Vec<SweepRate>)> {
        let Some(bound_us) = self.plan.sweep_p99_us else {
            return Vec::new();
        };
        let mut workloads: Vec<String> = Vec::new();
        for case in &self.plan.cases {
            let label = case.workload.label();
            if matches!(case.load, Load::Open { .. }) && !workloads.contains(&label) {
                workloads.push(label);
            }
        }
        let best_rate = |label: &str, target: Target| {
            (0..self.plan.cases.len())
                .filter(|&i| self.plan.cases[i].workload.label() == label)
                .filter_map(|i| match self.plan.cases[i].load {
                    Load::Open { rate_ops_per_s, .. } => Some((i, rate_ops_per_s)),
                    Load::Closed { .. } => None,
                })
                .filter(|&(i, _)| self.peer(i, target).is_some_and(|s| s.p99_us <= bound_us))
                .map(|(_, rate)| rate)
                .max()
        };
        workloads
            .into_iter()
            .map(|label| {
                let per_target = self
                    .by_target
                    .iter()
                    .map(|(t, _)| (*t, best_rate(&label, *t)))
                    .collect();
                (label, per_target)
            })
            .collect()
    }

    /// Writes JSON, .hgrm and SVG files under `dir`; returns the files written.
    pub fn write_files(&self, dir: &Path) -> Result<Vec<String>, String> {
        let fail =
            |what: &str, e: std::io::Error| format!("write {what} under {}: {e}", dir.display());
        fs::create_dir_all(dir.join("hgrm")).map_err(|e| fail("hgrm/", e))?;
        fs::create_dir_all(dir.join("svg")).map_err(|e| fail("svg/", e))?;
        let mut written = Vec::new();
        let json_path = dir.join("results.json");
        fs::write(&json_path, json::render(self)).map_err(|e| fail("results.json", e))?;
        written.push(json_path.display().to_string());
        fs::write(dir.join("results.txt"), table::render(self))
            .map_err(|e| fail("results.txt", e))?;
        written.push(dir.join("results.txt").display().to_string());
        fs::write(dir.join("results.md"), markdown::render(self))
            .map_err(|e| fail("results.md", e))?;
        written.push(dir.join("results.md").display().to_string());
        for (index, case) in self.plan.cases.iter().enumerate() {
            for (target, outcome) in self.case_outcomes(index) {
                let Some(summary) = outcome.summary() else {
                    continue;
                };
                let histograms = [
                    ("", summary.histogram_ns.as_ref()),
                    (".uncorrected", summary.uncorrected_ns.as_ref()),
                ];
                for (suffix, histogram) in histograms {
                    let Some(histogram) = histogram else {
                        continue;
                    };
                    let name = format!("{}.{}{suffix}.hgrm", case.id(), target.name());
                    fs::write(dir.join("hgrm").join(name), hgrm::render(histogram))
                        .map_err(|e| fail("hgrm", e))?;
                }
            }
            let series: Vec<svg::Series> = self
                .case_outcomes(index)
                .filter_map(|(t, o)| {
                    o.summary().map(|s| svg::Series {
                        name: t.name().to_string(),
                        colour: t as usize,
                        ours: t.is_ours(),
                        points: s.spectrum.clone(),
                    })
                })
                .collect();
            let path = dir.join("svg").join(format!("{}.svg", case.id()));
            fs::write(&path, svg::render(&case.label(), &series)).map_err(|e| fail("svg", e))?;
        }
        let index = svg::index_html(&self.meta.started_utc, &self.plan.cases);
        fs::write(dir.join("index.html"), index).map_err(|e| fail("index.html", e))?;
        written.push(format!("{}/hgrm/*.hgrm", dir.display()));
        written.push(format!(
            "{}/svg/*.svg (all on {}/index.html)",
            dir.display(),
            dir.display()
        ));
        Ok(written)
    }
}

/// A small run's results with chosen figures, for the reports' tests.
#[cfg(test)]
pub mod fixture {
    use super::*;
    use crate::result::Spread;
    use clap::Parser;

    /// A summary of 22,000 ops evenly spread so p99 is about `p99_us`, at
    /// `ops_per_s` (median) within 0.9..1.1 of it, p99 within 0.8..1.25.
    pub fn summary(ops_per_s: f64, p99_us: f64) -> Summary {
        let window = crate::load::Window::starting_now(
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(1),
        );
        let mut recording = crate::load::Recording::new(&window);
        for i in 1..=22_000u64 {
            recording
                .latency_ns
                .record(i * (p99_us * 1000.0 / 21_780.0) as u64)
                .unwrap();
        }
        let mut s = Summary::from_recording(recording, 4096);
        s.ops_per_s = ops_per_s;
        s.mb_per_s = ops_per_s * 4096.0 / 1e6;
        s.ops_per_s_spread = Spread {
            median: ops_per_s,
            min: ops_per_s * 0.9,
            max: ops_per_s * 1.1,
        };
        s.p99_us = p99_us;
        s.p99_us_spread = Spread {
            median: p99_us,
            min: p99_us * 0.8,
            max: p99_us * 1.25,
        };
        s.per_repeat = crate::result::PerRepeat {
            ops_per_s: vec![ops_per_s * 0.9, ops_per_s, ops_per_s * 1.1],
            p50_us: vec![s.p50_us; 3],
            p99_us: vec![p99_us * 0.8, p99_us, p99_us * 1.25],
            p999_us: vec![s.p999_us; 3],
        };
        s
    }

    /// rand-read qd1 and qd32 on same-shard, cross-shard, fio and dma.
    pub fn results() -> Results {
        let cli = crate::cli::Cli::try_parse_from([
            "b",
            "-w",
            "rand-read",
            "--queue-depths",
            "1,32",
            "--paths",
            "same-shard,cross-shard",
            "--peers",
            "fio,dma",
        ])
        .unwrap();
        let plan = crate::suite::plan(&cli).unwrap();
        let measured = |ops, p99| Outcome::Measured(Box::new(summary(ops, p99)));
        let by_target = vec![
            (
                Target::SameShard,
                vec![measured(20_000.0, 90.0), measured(60_000.0, 900.0)],
            ),
            (
                Target::CrossShard,
                vec![measured(15_000.0, 110.0), measured(50_000.0, 1100.0)],
            ),
            (
                Target::Fio,
                vec![measured(19_000.0, 95.0), measured(75_000.0, 700.0)],
            ),
            (
                Target::Dma,
                vec![
                    measured(21_000.0, 85.0),
                    Outcome::Failed {
                        error: "boom".into(),
                    },
                ],
            ),
        ];
        Results {
            meta: Meta {
                schema_version: SCHEMA_VERSION,
                command: "b".into(),
                started_utc: "20261129-000000".into(),
                git_commit: "abc1234".into(),
                environment: crate::machine::Machine::default(),
                load_average_start: "0 0 0".into(),
                load_average_end: "0 0 0".into(),
                fio_version: Some("fio-3.33".into()),
                engine_config: "embedded default".into(),
                shard_placement: "shard 1".into(),
                engine_settings: String::new(),
                io_scheduler: String::new(),
                warmup_ms: 100,
                duration_ms: 200,
                repeats: 5,
                undrained: 0,
                data_file_bytes: 1 << 30,
            },
            plan,
            by_target,
            scaling: Vec::new(),
            prose: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{results, summary};
    use super::*;
    use crate::run::ScalingRow;

    #[test]
    fn scaling_rows_sum_the_shards_and_give_the_per_core_efficiency() {
        let mut r = results();
        let measured = |ops_per_s| Outcome::Measured(Box::new(summary(ops_per_s, 100.0)));
        let failed = Outcome::Failed {
            error: "no third shard".into(),
        };
        r.scaling = vec![vec![
            ScalingRow {
                shards: 1,
                outcome: measured(10_000.0),
            },
            ScalingRow {
                shards: 2,
                outcome: Outcome::sum(vec![measured(9_000.0), measured(9_000.0)]),
            },
            ScalingRow {
                shards: 3,
                outcome: Outcome::sum(vec![measured(9_000.0), failed]),
            },
        ]];
        let rows = scaling_table(&r).expect("a scaling table");
        assert_eq!(rows.len(), 1 + 3, "{rows:?}");
        assert_eq!((&rows[1][2][..], &rows[1][7][..]), ("10,000", "1.00"));
        assert_eq!((&rows[2][2][..], &rows[2][7][..]), ("18,000", "0.90"));
        assert_eq!(rows[3][2], "FAILED: no third shard");
    }
}
