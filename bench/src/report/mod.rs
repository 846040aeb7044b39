//! Reports of a run: the table on stdout, a JSON file, .hgrm percentile
//! distributions and SVG latency-spectrum plots, all from one `Results`.

pub mod hgrm;
pub mod json;
pub mod svg;
pub mod table;

use std::fs;
use std::path::Path;

use crate::result::{Outcome, Summary};
use crate::suite::Plan;
use crate::targets::Target;

/// Everything measured: per target, one outcome per plan case.
pub struct Results {
    pub plan: Plan,
    pub by_target: Vec<(Target, Vec<Outcome>)>,
    pub meta: Meta,
}

/// Where and how the run happened.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Meta {
    pub command: String,
    pub started_utc: String,
    pub cpus: usize,
    pub kernel: String,
    /// /proc/loadavg at the start and the end: other work on the machine skews results.
    pub load_average_start: String,
    pub load_average_end: String,
    pub fio_version: Option<String>,
    pub engine_config: String,
    /// Which shard owns the benchmark partition, on which CPU, and why.
    pub shard_placement: String,
    /// Every field of the engine configuration used (data_dir aside, which the run replaces).
    pub engine_settings: String,
    pub warmup_ms: u128,
    pub duration_ms: u128,
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

    /// The best measured peer of case `index`: the most ops/s in a closed
    /// loop, the lowest p99 in an open loop (where ops/s is the offered rate).
    pub fn best_peer(&self, index: usize) -> Option<(Target, &Summary)> {
        let open = matches!(self.plan.cases[index].load, crate::load::Load::Open { .. });
        self.case_outcomes(index)
            .filter(|(t, _)| !t.is_ours())
            .filter_map(|(t, o)| o.summary().map(|s| (t, s)))
            .max_by(|a, b| {
                if open {
                    b.1.p99_us.total_cmp(&a.1.p99_us)
                } else {
                    a.1.ops_per_s.total_cmp(&b.1.ops_per_s)
                }
            })
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
        for (index, case) in self.plan.cases.iter().enumerate() {
            for (target, outcome) in self.case_outcomes(index) {
                if let Some(histogram) = outcome.summary().and_then(|s| s.histogram_ns.as_ref()) {
                    let path =
                        dir.join("hgrm")
                            .join(format!("{}.{}.hgrm", case.id(), target.name()));
                    fs::write(&path, hgrm::render(histogram)).map_err(|e| fail("hgrm", e))?;
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
