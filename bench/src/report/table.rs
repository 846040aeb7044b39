//! The text table: one block per case, one row per target, latencies in µs.
//! Our rows end with their ratios to fio, to the dma peer (the floor of our
//! own stack, so the steadiest measure of the engine's overhead on a busy
//! machine) and to the best peer: ops/s ratio (higher is better) / p99 ratio
//! (lower is better).

use std::fmt::Write;

use super::Results;
use crate::result::{Outcome, Spread, Summary};
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

/// `0.97/1.10`: ours over a peer, median ops/s and median p99 of the repeats.
pub fn ratio_cell(ours: &Summary, peer: &Summary) -> String {
    let ops = if peer.ops_per_s > 0.0 {
        ours.ops_per_s / peer.ops_per_s
    } else {
        f64::NAN
    };
    let p99 = if peer.p99_us_spread.median > 0.0 {
        ours.p99_us_spread.median / peer.p99_us_spread.median
    } else {
        f64::NAN
    };
    format!("{ops:.2}/{p99:.2}")
}

const HEADER: [&str; 20] = [
    "target",
    "ops/s",
    "ops/s min-max",
    "MB/s",
    "p50",
    "p90",
    "p99",
    "p99 min-max",
    "p99.9",
    "p99.99",
    "max",
    "samples",
    "late>1ms",
    "cpu%",
    "csw/s",
    "irq/op",
    "vs fio",
    "vs dma",
    "vs best",
    "best",
];

/// `min-max` of a spread, formatted by `format`.
fn range_cell(spread: &Spread, format: fn(f64) -> String) -> String {
    format!("{}-{}", format(spread.min), format(spread.max))
}

fn latency_cell(latency_us: Option<f64>) -> String {
    latency_us.map_or("-".into(), format_latency_us)
}

/// CPU share, context switches per second and disk interrupts per op.
fn resource_cells(s: &Summary) -> [String; 3] {
    let Some(r) = &s.resources else {
        return ["-".into(), "-".into(), "-".into()];
    };
    let per_s = |x: f64| if r.wall_s > 0.0 { x / r.wall_s } else { 0.0 };
    let ops = s.ops_per_s * r.wall_s;
    [
        format!("{:.0}", 100.0 * per_s(r.cpu_user_s + r.cpu_system_s)),
        thousands(per_s(
            (r.voluntary_switches + r.involuntary_switches) as f64,
        )),
        if ops > 0.0 {
            format!("{:.2}", r.disk_interrupts as f64 / ops)
        } else {
            "-".into()
        },
    ]
}

fn row(target: &str, s: &Summary) -> Vec<String> {
    let name = match s.caveats.first() {
        Some(caveat) => format!("{target} ({})", caveat.label()),
        None => target.to_string(),
    };
    let [p50, p90, p99, p999, p9999, max] = s.latency_columns_us();
    let mut cells = vec![
        name,
        thousands(s.ops_per_s),
        range_cell(&s.ops_per_s_spread, thousands),
        format!("{:.1}", s.mb_per_s),
        latency_cell(p50),
        latency_cell(p90),
        latency_cell(p99),
        format!(
            "{} ({})",
            format_latency_us(s.p99_us_spread.median),
            range_cell(&s.p99_us_spread, format_latency_us)
        ),
        latency_cell(p999),
        latency_cell(p9999),
        latency_cell(max),
        s.samples.to_string(),
        if s.uncorrected.is_some() {
            s.late_ops.to_string()
        } else {
            "-".into()
        },
    ];
    cells.extend(resource_cells(s));
    cells
}

/// One case as rows of cells (the first row is the header) and notes: the
/// text and Markdown tables both render this.
pub struct CaseTable {
    pub title: String,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

/// The notes a measured row adds under its case's table.
fn row_notes(target: Target, s: &Summary, notes: &mut Vec<String>) {
    for note in &s.notes {
        notes.push(format!("{}: {note}", target.name()));
    }
    if let Some(r) = s.resources.filter(|r| r.hog_cpu_s > 0.0 && r.wall_s > 0.0) {
        let cpu = r.hog_on_cpu.map_or("?".into(), |cpu| cpu.to_string());
        notes.push(format!(
            "{}: the CPU hog on CPU {cpu} ran {:.0}% of the wall time",
            target.name(),
            100.0 * r.hog_cpu_s / r.wall_s
        ));
    }
    if let Some(u) = &s.uncorrected {
        notes.push(format!(
            "{}: uncorrected latency (µs, from each op's issue): p50 {} p99 {} p99.9 {} max {}; \
             {} ops issued over 1 ms late, the latest by {} µs",
            target.name(),
            format_latency_us(u.p50_us),
            format_latency_us(u.p99_us),
            format_latency_us(u.p999_us),
            format_latency_us(u.max_us),
            s.late_ops,
            format_latency_us(s.max_issue_lag_us)
        ));
    }
}

/// The table of case `index`.
pub fn case_table(results: &Results, index: usize) -> CaseTable {
    let fio = results.best_fio(index);
    let dma = results.peer(index, Target::Dma);
    let best = results.best_peer(index);
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    let mut notes = Vec::new();
    for (target, outcome) in results.case_outcomes(index) {
        match outcome {
            Outcome::Measured(s) => {
                let mut cells = row(target.name(), s);
                if let (true, Some(d)) = (target.is_ours(), dma) {
                    if s.ops_per_s_spread.min > d.ops_per_s_spread.max {
                        notes.push(format!(
                            "{}: above its dma floor on every repeat ({} vs at most {} ops/s): \
                             the floor should be the least work that does the op, so this wants an explanation",
                            target.name(),
                            thousands(s.ops_per_s_spread.min),
                            thousands(d.ops_per_s_spread.max)
                        ));
                    }
                }
                if target.is_ours() {
                    cells.push(fio.map_or("-".into(), |(_, f)| ratio_cell(s, f)));
                    cells.push(dma.map_or("-".into(), |d| ratio_cell(s, d)));
                    cells.push(best.map_or("-".into(), |(_, b)| ratio_cell(s, b)));
                    cells.push(best.map_or("-".into(), |(t, _)| t.name().to_string()));
                }
                row_notes(target, s, &mut notes);
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
    CaseTable {
        title: results.plan.cases[index].label(),
        rows,
        notes,
    }
}

/// The tables of every case that has rows (none in scaling mode).
pub fn case_tables(results: &Results) -> impl Iterator<Item = CaseTable> + '_ {
    (0..results.plan.cases.len())
        .map(|index| case_table(results, index))
        .filter(|table| table.rows.len() > 1 || !table.notes.is_empty())
}

/// The lines above the tables: when, where, on what, how.
pub fn header_lines(results: &Results) -> Vec<String> {
    let m = &results.meta;
    let mut lines = vec![
        format!(
            "shardblob-bench {} at {} (schema {})",
            m.started_utc, m.git_commit, m.schema_version
        ),
        format!("command: {}", m.command),
        format!(
            "load average (1/5/15 min) at start {}, at end {}",
            m.load_average_start, m.load_average_end
        ),
        format!(
            "engine config: {} (I/O scheduler: {}); measured {}; fio: {}",
            m.engine_config,
            m.io_scheduler,
            m.shard_placement,
            m.fio_version.as_deref().unwrap_or("not on PATH (skipped)")
        ),
        format!(
            "{} repeats per case, targets in a rotated order each time with a drain between them \
             ({} drains gave up with dirty pages left); warm-up {} ms + {} ms per repeat",
            m.repeats, m.undrained, m.warmup_ms, m.duration_ms
        ),
    ];
    lines.extend(m.environment.lines());
    lines.push(
        "ops/s: median over the repeats, with min-max; percentiles from the histogram merged \
         over the repeats (fio: median over the repeats), p99.99 only with >= 100,000 samples; \
         p99 per repeat: median (min-max) of the repeats' p99"
            .into(),
    );
    lines.push(
        "latency in µs from each op's start (open loop: from its intended start); cpu% and csw/s: \
         the target's CPU time and context switches per wall second; irq/op: data-disk interrupts \
         per op; vs fio (the better fio variant) / vs dma / vs best = ops/s ratio / p99 ratio of ours"
            .into(),
    );
    lines
}

/// Renders the whole table.
pub fn render(results: &Results) -> String {
    let mut text = String::new();
    for line in header_lines(results) {
        let _ = writeln!(text, "{line}");
    }
    for (title, rows) in super::extra_tables(results) {
        let _ = writeln!(text, "\n{title}");
        text.push_str(&align(&rows));
    }
    for table in case_tables(results) {
        let _ = writeln!(text, "\n{}", table.title);
        text.push_str(&align(&table.rows));
        for note in table.notes {
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
    use crate::report::fixture::{results, summary};
    use crate::result::{Caveat, Resources};

    #[test]
    fn the_header_names_the_io_scheduler_bounds() {
        let mut r = results();
        r.meta.io_scheduler = "SchedConfig { throughput_ops_max: 6 }".into();
        let line = header_lines(&r)
            .into_iter()
            .find(|l| l.starts_with("engine config:"))
            .unwrap();
        assert!(
            line.contains("(I/O scheduler: SchedConfig { throughput_ops_max: 6 })"),
            "{line}"
        );
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
    fn rows_show_medians_ranges_and_hide_p9999_below_100k_samples() {
        let mut s = summary(22_013.4, 99.94);
        let cells = row("same-shard", &s);
        assert_eq!(
            cells[..4],
            ["same-shard", "22,013", "19,812-24,215", "90.2"]
        );
        assert_eq!(cells[6], "99.9");
        assert_eq!(cells[7], "99.9 (80.0-125)");
        assert_eq!(s.samples, 22_000);
        assert_eq!(cells[9], "-", "p99.99 of 22,000 samples");
        assert_eq!(cells[12], "-", "late ops of a closed loop");
        s.p9999_us = Some(1500.5);
        s.caveats.push(Caveat::PageCache);
        let cells = row("commonware-tokio", &s);
        assert_eq!(cells[0], "commonware-tokio (page cache)");
        assert_eq!(cells[9], "1500");
        let text = align(&[
            vec!["a".into(), "1".into()],
            vec!["bbb".into(), "22".into()],
        ]);
        assert_eq!(text, "  a     1\n  bbb  22\n");
    }

    #[test]
    fn a_cpu_hog_beside_a_row_gets_a_note_with_its_share() {
        let mut s = summary(20_000.0, 100.0);
        let mut notes = Vec::new();
        row_notes(Target::SameShard, &s, &mut notes);
        assert!(notes.is_empty(), "no hog, no note: {notes:?}");
        s.resources = Some(Resources {
            wall_s: 4.0,
            hog_cpu_s: 1.5,
            hog_on_cpu: Some(1),
            ..Resources::default()
        });
        row_notes(Target::SameShard, &s, &mut notes);
        assert_eq!(
            notes,
            ["same-shard: the CPU hog on CPU 1 ran 38% of the wall time"]
        );
    }

    #[test]
    fn ours_are_compared_with_fio_dma_and_the_best_peer() {
        let results = results();
        let qd1 = case_table(&results, 0);
        assert_eq!(qd1.title, "rand-read-4KiB qd1");
        let same = &qd1.rows[1];
        assert_eq!(same[0], "same-shard");
        // 20,000 vs fio 19,000 and dma 21,000 (the best peer by ops/s).
        assert_eq!(same[16], "1.05/0.95");
        assert_eq!(same[17], "0.95/1.06");
        assert_eq!(same[18], same[17]);
        assert_eq!(same[19], "dma");
        let qd32 = case_table(&results, 1);
        assert!(qd32.rows.iter().any(|r| r[..2] == ["dma", "FAILED"]));
        assert!(qd32.notes.iter().any(|n| n == "dma: failed: boom"));
        assert_eq!(qd32.rows[1][19], "fio");
    }

    #[test]
    fn a_row_above_its_floor_on_every_repeat_is_flagged() {
        let mut results = results();
        assert!(!case_table(&results, 0)
            .notes
            .iter()
            .any(|n| n.contains("dma floor")));
        let dma = results
            .by_target
            .iter_mut()
            .find(|(t, _)| *t == Target::Dma)
            .unwrap();
        dma.1[0] = Outcome::Measured(Box::new(summary(10_000.0, 85.0)));
        let notes = case_table(&results, 0).notes;
        let flagged: Vec<&String> = notes.iter().filter(|n| n.contains("dma floor")).collect();
        // same-shard (18,000 at least) and cross-shard (13,500) vs dma's 11,000 at most.
        assert_eq!(flagged.len(), 2, "{notes:?}");
        assert!(flagged[0].starts_with(
            "same-shard: above its dma floor on every repeat (18,000 vs at most 11,000"
        ));
    }
}
