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
                "cpu_hog": case.cpu_hog,
                "repeats": results.plan.repeats,
                "best_peer": results.best_peer(index).map(|(t, _)| t.name()),
                "targets": targets,
            })
        })
        .collect();
    let sweep: Vec<_> = results
        .sweep()
        .into_iter()
        .map(|(workload, per_target)| {
            let rates: serde_json::Map<String, serde_json::Value> = per_target
                .into_iter()
                .map(|(t, rate)| (t.name().to_string(), json!(rate)))
                .collect();
            json!({ "workload": workload, "p99_bound_us": results.plan.sweep_p99_us, "highest_rate_ops_per_s": rates })
        })
        .collect();
    let report = json!({
        "schema_version": super::SCHEMA_VERSION,
        "meta": results.meta,
        "cases": cases,
        "sweep": sweep,
        "scaling": results.scaling,
    });
    serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
