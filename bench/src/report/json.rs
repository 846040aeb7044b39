//! The machine-readable report: run metadata, then per case its workload,
//! load and every target's outcome (numbers in µs, ops/s, MB/s).

use serde::Serialize;
use serde_json::json;

use super::Results;

#[derive(Serialize)]
struct TargetJson<'a> {
    target: &'static str,
    ours: bool,
    #[serde(flatten)]
    outcome: &'a crate::result::Outcome,
}

pub fn render(results: &Results) -> String {
    let cases: Vec<_> = results
        .plan
        .cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let targets: Vec<TargetJson> = results
                .case_outcomes(index)
                .map(|(target, outcome)| TargetJson {
                    target: target.name(),
                    ours: target.is_ours(),
                    outcome,
                })
                .collect();
            json!({
                "id": case.id(),
                "label": case.label(),
                "workload": case.workload,
                "load": case.load,
                "best_peer": results.best_peer(index).map(|(t, _)| t.name()),
                "targets": targets,
            })
        })
        .collect();
    let report = json!({ "meta": results.meta, "cases": cases });
    serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
