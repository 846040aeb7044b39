//! The Markdown report, the body of bench/RESULTS.md: the run's
//! environment, a verdict on each performance target of issue 5 from the
//! ratio of ours to the peer in each repeat (met when every repeat meets
//! it, missed when none does, else within the spread, saying whether the
//! median of the figures column met it), the rate sweep, and
//! every case's table. The tables are the text report's cells (`table::case_table`),
//! so the two never disagree; every figure comes from results.json.

use std::fmt::Write;

#[cfg(test)]
use super::table::case_table;
use super::table::{case_tables, header_lines};
use super::Results;
use crate::load::Load;
#[cfg(test)]
use crate::result::Outcome;
use crate::result::{Spread, Summary};
use crate::targets::Target;
use crate::workload::WorkloadKind;

/// A verdict on a target, from the medians and the ranges over the repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Met on some repeats and missed on others; `median_met`: whether the
    /// median (of the per-repeat ratios or differences, or the ratio of the
    /// medians, as the figures column says) meets it: what a target judged
    /// on medians asks.
    WithinSpread {
        median_met: bool,
    },
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::WithinSpread { median_met: true } => "within the spread (median met)",
            Verdict::WithinSpread { median_met: false } => "within the spread (median **missed**)",
        }
    }

    /// Both checks must hold.
    fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Missed, _) | (_, Verdict::Missed) => Verdict::Missed,
            (Verdict::Met, Verdict::Met) => Verdict::Met,
            (Verdict::WithinSpread { median_met }, Verdict::Met)
            | (Verdict::Met, Verdict::WithinSpread { median_met }) => {
                Verdict::WithinSpread { median_met }
            }
            (Verdict::WithinSpread { median_met: a }, Verdict::WithinSpread { median_met: b }) => {
                Verdict::WithinSpread { median_met: a && b }
            }
        }
    }
}

/// The ratio ours/peer of a figure: at the medians, and the lowest and
/// highest any two repeats allow.
pub fn ratio_range(ours: &Spread, peer: &Spread) -> Spread {
    Spread {
        median: ratio(ours.median, peer.median),
        min: ratio(ours.min, peer.max),
        max: ratio(ours.max, peer.min),
    }
}

/// Ours against a peer repeat by repeat (the targets of a repeat ran back to
/// back): `combine` of each pair, as median and range. Without a pair for
/// every repeat (a repeat failed), the widest range any two repeats allow.
pub fn paired(ours: &[f64], peer: &[f64], combine: fn(f64, f64) -> f64) -> Option<Spread> {
    (ours.len() == peer.len() && !ours.is_empty()).then(|| {
        let values: Vec<f64> = ours
            .iter()
            .zip(peer)
            .map(|(&a, &b)| combine(a, b))
            .collect();
        Spread::of(&values)
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// `at_least`: the ratio must be >= `bound` (ops/s); else <= (latency).
pub fn judge(ratio: &Spread, bound: f64, at_least: bool) -> Verdict {
    let meets = |r: f64| if at_least { r >= bound } else { r <= bound };
    match (meets(ratio.min), meets(ratio.max)) {
        _ if ratio.median.is_nan() => Verdict::Missed,
        (true, true) => Verdict::Met,
        (false, false) => Verdict::Missed,
        _ => Verdict::WithinSpread {
            median_met: meets(ratio.median),
        },
    }
}

fn find_case(results: &Results, kind: WorkloadKind, load: Load) -> Option<usize> {
    results.plan.cases.iter().position(|c| {
        c.workload.kind == kind
            && c.workload.block_size_bytes == 4096
            && c.load == load
            && !c.cpu_hog
            && !c.has_bulk_work()
    })
}

fn ours(results: &Results, index: usize, path: Target) -> Option<&Summary> {
    results.peer(index, path)
}

/// The faster commonware runtime of case `index` (by median ops/s).
fn faster_commonware(results: &Results, index: usize) -> Option<(Target, &Summary)> {
    [Target::CommonwareTokio, Target::CommonwareIouring]
        .into_iter()
        .filter_map(|t| results.peer(index, t).map(|s| (t, s)))
        .max_by(|a, b| a.1.ops_per_s.total_cmp(&b.1.ops_per_s))
}

pub fn ratio_text(ratio: &Spread) -> String {
    format!("{:.2}x ({:.2}-{:.2})", ratio.median, ratio.min, ratio.max)
}

/// Same-shard ops/s >= `ops_min` x the peer, and p99 <= `p99_max` x the peer.
fn against_peer(
    results: &Results,
    index: usize,
    (peer_name, peer): (Target, &Summary),
    ops_min: f64,
    p99_max: Option<f64>,
) -> Option<(String, Verdict)> {
    let s = ours(results, index, Target::SameShard)?;
    let (mine, theirs) = (&s.per_repeat, &peer.per_repeat);
    let ops = paired(&mine.ops_per_s, &theirs.ops_per_s, ratio)
        .unwrap_or_else(|| ratio_range(&s.ops_per_s_spread, &peer.ops_per_s_spread));
    let mut text = format!(
        "ops/s {} vs {} {}: {}",
        super::table::thousands(s.ops_per_s),
        peer_name.name(),
        super::table::thousands(peer.ops_per_s),
        ratio_text(&ops)
    );
    let mut verdict = judge(&ops, ops_min, true);
    if let Some(bound) = p99_max {
        let p99 = paired(&mine.p99_us, &theirs.p99_us, ratio)
            .unwrap_or_else(|| ratio_range(&s.p99_us_spread, &peer.p99_us_spread));
        let _ = write!(text, "; p99 {}", ratio_text(&p99));
        verdict = verdict.and(judge(&p99, bound, false));
    }
    Some((text, verdict))
}

/// A path's p50 within `within_us` of same-shard's, on reads and writes at depth 1.
fn p50_within(results: &Results, path: Target, within_us: f64) -> Option<(String, Verdict)> {
    let mut texts = Vec::new();
    let mut verdict = Verdict::Met;
    for kind in [WorkloadKind::RandRead, WorkloadKind::RandWrite] {
        let index = find_case(results, kind, Load::Closed { queue_depth: 1 })?;
        let (p, same) = (
            ours(results, index, path)?,
            ours(results, index, Target::SameShard)?,
        );
        let over =
            paired(&p.per_repeat.p50_us, &same.per_repeat.p50_us, |a, b| a - b).unwrap_or(Spread {
                median: p.p50_us_spread.median - same.p50_us_spread.median,
                min: p.p50_us_spread.min - same.p50_us_spread.max,
                max: p.p50_us_spread.max - same.p50_us_spread.min,
            });
        texts.push(format!(
            "{} p50 {:.1} vs {:.1} µs: {:+.1} ({:+.1}..{:+.1})",
            kind.name(),
            p.p50_us_spread.median,
            same.p50_us_spread.median,
            over.median,
            over.min,
            over.max
        ));
        verdict = verdict.and(judge(&over, within_us, false));
    }
    Some((texts.join("; "), verdict))
}

/// The targets of issue 5 (and of issue 14 item 5, interference), each with its figures and verdict.
pub fn verdicts(results: &Results) -> Vec<(String, String, Verdict)> {
    let closed = |queue_depth| Load::Closed { queue_depth };
    let mut rows = Vec::new();
    let mut push = |name: &str, judged: Option<(String, Verdict)>| {
        if let Some((text, verdict)) = judged {
            rows.push((name.to_string(), text, verdict));
        }
    };
    for (name, kind, depth) in [
        (
            "rand read 4KiB qd1 >= 0.95x fio ops/s, p99 <= 1.2x",
            WorkloadKind::RandRead,
            1,
        ),
        (
            "rand read 4KiB qd32 >= 0.95x fio ops/s, p99 <= 1.2x",
            WorkloadKind::RandRead,
            32,
        ),
        (
            "rand write 4KiB qd1 >= 0.95x fio ops/s, p99 <= 1.2x",
            WorkloadKind::RandWrite,
            1,
        ),
        (
            "rand write 4KiB qd32 >= 0.95x fio ops/s, p99 <= 1.2x",
            WorkloadKind::RandWrite,
            32,
        ),
    ] {
        let judged = find_case(results, kind, closed(depth))
            .and_then(|i| against_peer(results, i, results.best_fio(i)?, 0.95, Some(1.2)));
        push(name, judged);
    }
    push(
        "cross-shard p50 qd1 within 10 µs of same-shard",
        p50_within(results, Target::CrossShard, 10.0),
    );
    push(
        "foreign-thread p50 qd1 within 10 µs of same-shard",
        p50_within(results, Target::ForeignThread, 10.0),
    );
    let append = find_case(results, WorkloadKind::AppendSync, closed(1));
    push(
        "append + sync >= 0.95x fio's write + fdatasync ops/s",
        append.and_then(|i| against_peer(results, i, results.best_fio(i)?, 0.95, None)),
    );
    push(
        "append + sync >= 1.5x commonware's faster runtime",
        append.and_then(|i| against_peer(results, i, faster_commonware(results, i)?, 1.5, None)),
    );
    let read32 = find_case(results, WorkloadKind::RandRead, closed(32));
    push(
        "rand read qd32 >= 1.5x commonware's faster runtime",
        read32.and_then(|i| against_peer(results, i, faster_commonware(results, i)?, 1.5, None)),
    );
    for (name, judged) in super::interference::verdicts(results) {
        push(&name, judged);
    }
    rows
}

/// A Markdown table from rows of cells (the first row is the header).
pub fn pipe_table(rows: &[Vec<String>]) -> String {
    let mut text = String::new();
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(text, "| {} |", row.join(" | "));
        if i == 0 {
            let _ = writeln!(text, "|{}", " --- |".repeat(row.len()));
        }
    }
    text
}

/// The heading of the verdicts: hand-written prose goes after them.
const VERDICTS_HEADING: &str = "\n## Against the targets of issues 5 and 14\n\n";

/// `report` (Markdown this tool wrote without prose) with `prose` placed
/// after the verdicts, before the first section that follows them (after
/// the header lines when there are none): where `--markdown-prose` puts it
/// in a run, and where `--prose-into` puts it after one.
pub fn with_prose(report: &str, prose: &str) -> String {
    let from = report
        .find(VERDICTS_HEADING)
        .map_or(0, |i| i + VERDICTS_HEADING.len());
    let at = report[from..]
        .find("\n## ")
        .map_or(report.len(), |i| from + i);
    format!(
        "{}\n{PROSE_MARK}\n{}\n{}",
        &report[..at],
        prose.trim_end(),
        &report[at..]
    )
}

/// The line before placed prose, so that it is placed once.
const PROSE_MARK: &str = "<!-- hand-written (--markdown-prose) -->";

/// Whether `report` already holds prose placed by [`with_prose`].
pub fn has_prose(report: &str) -> bool {
    report.lines().any(|line| line == PROSE_MARK)
}

/// Renders the whole report.
pub fn render(results: &Results) -> String {
    let mut text = String::from("# shardblob-bench results\n\n");
    for line in header_lines(results) {
        let _ = writeln!(text, "- {line}");
    }
    let verdicts = verdicts(results);
    if !verdicts.is_empty() {
        text.push_str(VERDICTS_HEADING);
        let mut rows = vec![vec![
            "target".into(),
            "figures: median (min-max) of the per-repeat ratios or differences".into(),
            "verdict".into(),
        ]];
        rows.extend(
            verdicts
                .into_iter()
                .map(|(name, figures, v)| vec![name, figures, v.word().into()]),
        );
        text.push_str(&pipe_table(&rows));
    }
    for (title, rows) in super::extra_tables(results) {
        let _ = writeln!(text, "\n## {title}\n");
        text.push_str(&pipe_table(&rows));
    }
    text.push_str("\n## Tables\n");
    for table in case_tables(results) {
        let _ = writeln!(text, "\n### {}\n", table.title);
        text.push_str(&pipe_table(&table.rows));
        if !table.notes.is_empty() {
            text.push('\n');
        }
        for note in table.notes {
            let _ = writeln!(text, "- {note}");
        }
    }
    match &results.prose {
        Some(prose) => with_prose(&text, prose),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::results;

    /// The cells of every `| ... |` row under `### title`, separator row excluded.
    fn parsed_table(markdown: &str, title: &str) -> Vec<Vec<String>> {
        let heading = format!("### {title}\n");
        let start = markdown.find(&heading).unwrap() + heading.len();
        markdown[start..]
            .lines()
            .skip_while(|l| l.is_empty())
            .take_while(|l| l.starts_with('|'))
            .filter(|l| {
                !l.starts_with("| ---") && !l.starts_with("| --- |") && !l.contains("--- |")
            })
            .map(|l| {
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn markdown_tables_are_the_text_tables_and_match_the_json() {
        let results = results();
        let markdown = render(&results);
        let json: serde_json::Value =
            serde_json::from_str(&crate::report::json::render(&results)).unwrap();
        for (index, case) in results.plan.cases.iter().enumerate() {
            let rows = parsed_table(&markdown, &case.label());
            assert_eq!(rows, case_table(&results, index).rows, "{}", case.label());
            for row in rows.iter().skip(1).filter(|r| r[1] != "FAILED") {
                let target = json["cases"][index]["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["target"] == row[0].as_str())
                    .unwrap();
                let ops = target["ops_per_s"].as_f64().unwrap();
                assert_eq!(row[1], super::super::table::thousands(ops));
                let p99 = target["p99_us"].as_f64().unwrap();
                assert_eq!(row[6], crate::units::format_latency_us(p99));
                let spread = &target["p99_us_spread"];
                let cell =
                    |key: &str| crate::units::format_latency_us(spread[key].as_f64().unwrap());
                assert_eq!(
                    row[7],
                    format!("{} ({}-{})", cell("median"), cell("min"), cell("max"))
                );
            }
        }
    }

    #[test]
    fn prose_goes_after_the_verdicts_or_the_header_once() {
        let results = results();
        let prose = "## Analysis\n\nWritten after the run.\n";
        let bare = render(&results);
        assert!(!has_prose(&bare));
        let placed = with_prose(&bare, prose);
        let verdicts_end = placed.find(VERDICTS_HEADING).unwrap();
        let analysis = placed.find("## Analysis").unwrap();
        assert!(verdicts_end < analysis && analysis < placed.find("## Tables").unwrap());
        assert!(has_prose(&placed), "a second placement would repeat it");
        // No verdicts: after the header lines, before the first section.
        let header_only = "# shardblob-bench results\n\n- a header line\n\n## Tables\n";
        assert_eq!(
            with_prose(header_only, "Text."),
            format!(
                "# shardblob-bench results\n\n- a header line\n\n{PROSE_MARK}\nText.\n\n## Tables\n"
            )
        );
        assert!(!has_prose(header_only) && has_prose(&with_prose(header_only, "Text.")));
    }

    #[test]
    fn hand_written_prose_follows_the_verdicts() {
        let mut results = results();
        results.prose = Some("## What the misses come from\n\nText.\n".into());
        let markdown = render(&results);
        let verdicts = markdown.find("## Against the targets").unwrap();
        let prose = markdown.find("## What the misses come from").unwrap();
        let tables = markdown.find("## Tables").unwrap();
        assert!(verdicts < prose && prose < tables);
    }

    #[test]
    fn verdicts_use_the_range_over_repeats() {
        let ratio = |median, min, max| Spread { median, min, max };
        assert_eq!(judge(&ratio(1.0, 0.96, 1.1), 0.95, true), Verdict::Met);
        assert_eq!(
            judge(&ratio(1.0, 0.9, 1.1), 0.95, true),
            Verdict::WithinSpread { median_met: true }
        );
        let missed_by_median = judge(&ratio(0.9, 0.85, 1.0), 0.95, true);
        assert_eq!(
            missed_by_median,
            Verdict::WithinSpread { median_met: false }
        );
        assert_eq!(
            missed_by_median.word(),
            "within the spread (median **missed**)"
        );
        assert_eq!(
            missed_by_median.and(Verdict::WithinSpread { median_met: true }),
            missed_by_median
        );
        assert_eq!(missed_by_median.and(Verdict::Met), missed_by_median);
        assert_eq!(judge(&ratio(0.8, 0.7, 0.9), 0.95, true), Verdict::Missed);
        assert_eq!(
            judge(&ratio(1.1, 1.0, 1.3), 1.2, false),
            Verdict::WithinSpread { median_met: true }
        );
        assert_eq!(
            judge(&ratio(f64::NAN, 0.0, 0.0), 1.2, false),
            Verdict::Missed
        );
        // ours 10 (9..11) over a peer's 10 (8..12): 0.75 .. 1.375.
        let r = ratio_range(&ratio(10.0, 9.0, 11.0), &ratio(10.0, 8.0, 12.0));
        assert_eq!((r.median, r.min, r.max), (1.0, 0.75, 1.375));
    }

    fn row<'a>(
        rows: &'a [(String, String, Verdict)],
        start: &str,
    ) -> &'a (String, String, Verdict) {
        rows.iter().find(|r| r.0.starts_with(start)).unwrap()
    }

    #[test]
    fn the_targets_table_pairs_the_repeats() {
        let mut results = results();
        let rows = verdicts(&results);
        let qd1 = row(&rows, "rand read 4KiB qd1");
        // same-shard 18,000 / 20,000 / 22,000 vs fio 17,100 / 19,000 / 20,900:
        // 1.05x in every repeat; p99 90 vs 95 scaled alike: 0.95x.
        assert!(
            qd1.1.contains("1.05x (1.05-1.05); p99 0.95x (0.95-0.95)"),
            "{}",
            qd1.1
        );
        assert_eq!(qd1.2, Verdict::Met);
        // 60,000 vs 75,000: 0.80x in every repeat.
        assert_eq!(row(&rows, "rand read 4KiB qd32").2, Verdict::Missed);
        // A failed repeat leaves no pairs: the widest range of two repeats.
        let fio = results
            .by_target
            .iter_mut()
            .find(|(t, _)| *t == Target::Fio)
            .unwrap();
        if let Outcome::Measured(s) = &mut fio.1[0] {
            s.per_repeat.ops_per_s.pop();
        }
        let rows = verdicts(&results);
        let qd1 = row(&rows, "rand read 4KiB qd1");
        // 20,000 (18,000..22,000) vs 19,000 (17,100..20,900): 0.86..1.29.
        assert!(qd1.1.contains("1.05x (0.86-1.29)"), "{}", qd1.1);
        assert_eq!(qd1.2, Verdict::WithinSpread { median_met: true });
    }

    #[test]
    fn pairs_combine_repeat_by_repeat() {
        let diff = paired(&[10.0, 20.0, 30.0], &[9.0, 25.0, 27.0], |a, b| a - b).unwrap();
        assert_eq!((diff.median, diff.min, diff.max), (1.0, -5.0, 3.0));
        assert_eq!(paired(&[1.0], &[1.0, 2.0], ratio), None);
        assert_eq!(paired(&[], &[], ratio), None);
    }
}
