//! The text table: one block per case, one row per target, latencies in µs.
//! Our rows end with their ratios to fio, to the dma peer (the floor of our
//! own stack, so the steadiest measure of the engine's overhead on a busy
//! machine) and to the best peer: ops/s ratio (higher is better) / p99 ratio
//! (lower is better).

use std::fmt::Write;

use super::Results;
use crate::result::{Outcome, Summary};
use crate::targets::Target;
use crate::units::format_latency_us;

/// `1234567.8` → `1,234,568`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `ops 0.97x p99 1.10x` of ours against a peer.
pub fn ratio_cell(ours: &Summary, peer: &Summary) -> String {
    let ops = if peer.ops_per_s > 0.0 {
        ours.ops_per_s / peer.ops_per_s
    } else {
        f64::NAN
    };
    let p99 = if peer.p99_us > 0.0 {
        ours.p99_us / peer.p99_us
    } else {
        f64::NAN
    };
    format!("{ops:.2}/{p99:.2}")
}

const HEADER: [&str; 14] = [
    "target", "ops/s", "MB/s", "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples", "vs fio",
    "vs dma", "vs best", "best",
];

fn row(target: &str, s: &Summary) -> Vec<String> {
    let mut cells = vec![
        target.to_string(),
        thousands(s.ops_per_s),
        format!("{:.1}", s.mb_per_s),
    ];
    cells.extend(
        s.latency_columns_us()
            .iter()
            .map(|&us| format_latency_us(us)),
    );
    cells.push(s.samples.to_string());
    cells
}

/// Renders the whole table.
pub fn render(results: &Results) -> String {
    let mut text = String::new();
    let m = &results.meta;
    let _ = writeln!(
        text,
        "shardblob-bench  {}  ({} CPUs, kernel {})",
        m.started_utc, m.cpus, m.kernel
    );
    let _ = writeln!(text, "command: {}", m.command);
    let _ = writeln!(
        text,
        "load average (1/5/15 min) at start {}, at end {}",
        m.load_average_start, m.load_average_end
    );
    let _ = writeln!(
        text,
        "engine config: {}; measured {}; fio: {}; warm-up {} ms + {} ms per case",
        m.engine_config,
        m.shard_placement,
        m.fio_version.as_deref().unwrap_or("not on PATH (skipped)"),
        m.warmup_ms,
        m.duration_ms
    );
    let _ = writeln!(
        text,
        "latency in µs from each op's start (open loop: from its intended start); \
         vs fio / vs dma / vs best = ops/s ratio / p99 ratio of ours to that peer"
    );
    for (index, case) in results.plan.cases.iter().enumerate() {
        let fio = results.peer(index, Target::Fio);
        let dma = results.peer(index, Target::Dma);
        let best = results.best_peer(index);
        let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
        let mut notes = Vec::new();
        for (target, outcome) in results.case_outcomes(index) {
            match outcome {
                Outcome::Measured(s) => {
                    let mut cells = row(target.name(), s);
                    if target.is_ours() {
                        cells.push(fio.map_or("-".into(), |f| ratio_cell(s, f)));
                        cells.push(dma.map_or("-".into(), |d| ratio_cell(s, d)));
                        cells.push(best.map_or("-".into(), |(_, b)| ratio_cell(s, b)));
                        cells.push(best.map_or("-".into(), |(t, _)| t.name().to_string()));
                    }
                    for note in &s.notes {
                        notes.push(format!("{}: {note}", target.name()));
                    }
                    if s.max_issue_lag_us > 1000.0 {
                        notes.push(format!(
                            "{}: some ops started up to {} µs after their intended start (charged to their latency)",
                            target.name(),
                            format_latency_us(s.max_issue_lag_us)
                        ));
                    }
                    if s.missed_ops > 0 {
                        notes.push(format!(
                            "{}: {} scheduled ops never issued (fell behind)",
                            target.name(),
                            s.missed_ops
                        ));
                    }
                    rows.push(cells);
                }
                Outcome::Skipped { reason } => {
                    notes.push(format!("{}: skipped: {reason}", target.name()))
                }
                Outcome::Failed { error } => {
                    rows.push(vec![target.name().to_string(), "FAILED".into()]);
                    notes.push(format!("{}: failed: {error}", target.name()));
                }
            }
        }
        let _ = writeln!(text, "\n{}", case.label());
        text.push_str(&align(&rows));
        for note in notes {
            let _ = writeln!(text, "  note: {note}");
        }
    }
    text
}

/// Left-aligns the first column, right-aligns the rest.
pub fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for r in rows {
        text.push(' ');
        for (c, cell) in r.iter().enumerate() {
            if c == 0 {
                let _ = write!(text, " {cell:<w$}", w = widths[0]);
            } else {
                let _ = write!(text, "  {cell:>w$}", w = widths[c]);
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ops_per_s: f64, p99_us: f64) -> Summary {
        Summary {
            ops_per_s,
            mb_per_s: 0.0,
            p50_us: 41.0,
            p90_us: 50.0,
            p99_us,
            p999_us: 300.0,
            p9999_us: 1500.5,
            max_us: 250_000.0,
            mean_us: 45.0,
            samples: 22_000,
            spectrum: vec![],
            notes: vec![],
            max_issue_lag_us: 0.0,
            missed_ops: 0,
            histogram_ns: None,
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn ratios_are_ours_over_the_peer() {
        assert_eq!(
            ratio_cell(&summary(19_000.0, 120.0), &summary(20_000.0, 100.0)),
            "0.95/1.20"
        );
        assert_eq!(
            ratio_cell(&summary(1.0, 1.0), &summary(0.0, 0.0)),
            "NaN/NaN"
        );
    }

    #[test]
    fn rows_format_latencies_and_align() {
        let cells = row("same-shard", &summary(22_013.4, 99.94));
        assert_eq!(cells[..4], ["same-shard", "22,013", "0.0", "41.0"]);
        assert_eq!(cells[5], "99.9");
        assert_eq!(cells[7], "1500");
        assert_eq!(cells[8], "250ms");
        let text = align(&[
            vec!["a".into(), "1".into()],
            vec!["bbb".into(), "22".into()],
        ]);
        assert_eq!(text, "  a     1\n  bbb  22\n");
    }
}
