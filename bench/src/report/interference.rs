//! The interference suite's report: per foreground load and target, the
//! foreground's p50/p99/p99.9 alone and under the background writer, and
//! the writer's MB/s alone and under the foreground; and the targets of
//! issue 14 item 5 on same-shard (bulk work in the throughput class).

use super::markdown::{judge, paired, ratio_range, ratio_text, Verdict};
use super::Results;
use crate::result::{Spread, Summary};
use crate::targets::Target;
use crate::units::format_latency_us;

/// The rows of the table, in this order, where measured.
const TARGETS: [Target; 4] = [
    Target::SameShard,
    Target::SameShardOneClass,
    Target::Fio,
    Target::FioTuned,
];

/// A foreground under the background, with the cases to compare it with.
struct Trio {
    /// The foreground under the background.
    under: usize,
    /// The same foreground alone.
    alone: Option<usize>,
    /// The background alone.
    bulk: Option<usize>,
}

/// Every case with a background, with its partners.
fn trios(results: &Results) -> Vec<Trio> {
    let cases = &results.plan.cases;
    let find = |pick: &dyn Fn(&crate::suite::Case) -> bool| cases.iter().position(pick);
    cases
        .iter()
        .enumerate()
        .filter_map(|(under, case)| {
            let background = case.background.as_ref()?;
            let bulk = background.case();
            Some(Trio {
                under,
                alone: find(&|c| {
                    c.background.is_none()
                        && !c.bulk
                        && !c.cpu_hog
                        && c.workload == case.workload
                        && c.load == case.load
                }),
                bulk: find(&|c| c.bulk && c.workload == bulk.workload && c.load == bulk.load),
            })
        })
        .collect()
}

fn latencies(s: Option<&Summary>) -> String {
    s.map_or("-".into(), |s| {
        [s.p50_us, s.p99_us, s.p999_us]
            .map(format_latency_us)
            .join(" / ")
    })
}

fn mb_per_s(s: Option<&Summary>) -> String {
    s.map_or("-".into(), |s| format!("{:.1}", s.mb_per_s))
}

/// The interference table (header first), or `None` without such cases.
pub fn table(results: &Results) -> Option<Vec<Vec<String>>> {
    let trios = trios(results);
    if trios.is_empty() {
        return None;
    }
    let mut rows = vec![[
        "foreground",
        "target",
        "fg p50 / p99 / p99.9 alone",
        "fg p50 / p99 / p99.9 under bg",
        "bg MB/s alone",
        "bg MB/s under fg",
    ]
    .map(String::from)
    .to_vec()];
    for trio in &trios {
        let case = &results.plan.cases[trio.under];
        for target in TARGETS {
            let Some(under) = results.peer(trio.under, target) else {
                continue;
            };
            // The one-class row skips the foreground alone: it has no bulk
            // work, so it is the same-shard row's.
            let alone_target = match target {
                Target::SameShardOneClass => Target::SameShard,
                t => t,
            };
            let alone = trio.alone.and_then(|i| results.peer(i, alone_target));
            let bulk = trio.bulk.and_then(|i| results.peer(i, target));
            rows.push(vec![
                format!("{} {}", case.workload.label(), case.load.label()),
                target.name().into(),
                latencies(alone),
                latencies(Some(under)),
                mb_per_s(bulk),
                mb_per_s(under.background.as_deref()),
            ]);
        }
    }
    Some(rows)
}

/// The repeats' p99.9 of `a` over those of `b`: the ratio of the medians,
/// with the range the two spreads allow (the cases ran apart, so repeats
/// do not pair), and the text of both.
fn p999_ratio(a: &Summary, b: &Summary) -> (Spread, String, String) {
    let (a, b) = (
        Spread::of(&a.per_repeat.p999_us),
        Spread::of(&b.per_repeat.p999_us),
    );
    let text = |s: &Spread| {
        format!(
            "{} ({}-{})",
            format_latency_us(s.median),
            format_latency_us(s.min),
            format_latency_us(s.max)
        )
    };
    (ratio_range(&a, &b), text(&a), text(&b))
}

/// Same-shard's foreground p99.9 under the background <= 2x alone
/// (medians of the repeats' p99.9).
fn tail_kept(results: &Results, trio: &Trio) -> Option<(String, Verdict)> {
    let under = results.peer(trio.under, Target::SameShard)?;
    let alone = results.peer(trio.alone?, Target::SameShard)?;
    let (ratio, under_text, alone_text) = p999_ratio(under, alone);
    let text = format!(
        "p99.9 per repeat {under_text} under bg vs {alone_text} alone: {}",
        ratio_text(&ratio)
    );
    Some((text, judge(&ratio, 2.0, false)))
}

/// Same-shard's background MB/s under the foreground >= 0.7x alone.
fn bulk_kept(results: &Results, trio: &Trio) -> Option<(String, Verdict)> {
    let under = results.peer(trio.under, Target::SameShard)?;
    let behind = under.background.as_deref()?;
    let alone = results.peer(trio.bulk?, Target::SameShard)?;
    let ratio = paired(
        &behind.per_repeat.ops_per_s,
        &alone.per_repeat.ops_per_s,
        |a, b| a / b,
    )
    .unwrap_or_else(|| ratio_range(&behind.ops_per_s_spread, &alone.ops_per_s_spread));
    let text = format!(
        "bg {:.1} MB/s under fg vs {:.1} alone: {}",
        behind.mb_per_s,
        alone.mb_per_s,
        ratio_text(&ratio)
    );
    Some((text, judge(&ratio, 0.7, true)))
}

/// fio's foreground p99.9 in its two-job run >= 3x same-shard's under the
/// background, against the fio variant with the lowest p99.9 there: the
/// hardest to beat on a tail target (`best_fio` picks by ops/s, which can
/// choose the variant with the worse tail).
fn beats_fio(results: &Results, trio: &Trio) -> Option<(String, Verdict)> {
    let ours = results.peer(trio.under, Target::SameShard)?;
    let (fio, theirs) = results
        .case_outcomes(trio.under)
        .filter(|(t, _)| t.is_fio())
        .filter_map(|(t, o)| o.summary().map(|s| (t, s)))
        .min_by(|a, b| {
            let median = |s: &Summary| Spread::of(&s.per_repeat.p999_us).median;
            median(a.1).total_cmp(&median(b.1))
        })?;
    let (ratio, theirs_text, ours_text) = p999_ratio(theirs, ours);
    let text = format!(
        "p99.9 per repeat {ours_text} vs {} {theirs_text}: {} better",
        fio.name(),
        ratio_text(&ratio)
    );
    Some((text, judge(&ratio, 3.0, true)))
}

/// The targets of issue 14 item 5 for every foreground load, named
/// (p99.9: the medians over the repeats, with the range their extremes
/// allow; MB/s per repeat).
pub fn verdicts(results: &Results) -> Vec<(String, Option<(String, Verdict)>)> {
    let mut rows = Vec::new();
    for trio in trios(results) {
        let load = results.plan.cases[trio.under].load.label();
        rows.push((
            format!("interference {load}: fg p99.9 under bg <= 2x alone"),
            tail_kept(results, &trio),
        ));
        rows.push((
            format!("interference {load}: bg MB/s under fg >= 0.7x alone"),
            bulk_kept(results, &trio),
        ));
        rows.push((
            format!("interference {load}: fg p99.9 under bg >= 3x better than fio's two jobs"),
            beats_fio(results, &trio),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{results, summary};
    use crate::result::Outcome;
    use clap::Parser;

    /// A summary with this p99.9 (its three repeats 0.9x, 1x and 1.1x of
    /// it), at `ops_per_s`.
    fn with_p999(ops_per_s: f64, p999_us: f64) -> Outcome {
        let mut s = summary(ops_per_s, p999_us / 2.0);
        s.p999_us = p999_us;
        s.per_repeat.p999_us = vec![p999_us * 0.9, p999_us, p999_us * 1.1];
        Outcome::Measured(Box::new(s))
    }

    /// The foreground at `p999_us` under a background at `behind_ops` ops/s.
    fn under(p999_us: f64, behind_ops: f64) -> Outcome {
        let mut outcome = with_p999(20_000.0, p999_us);
        if let Outcome::Measured(s) = &mut outcome {
            s.background = Some(Box::new(summary(behind_ops, 900.0)));
        }
        outcome
    }

    /// The fixture's results with the plan of the interference suite on
    /// same-shard (and its one-class row) and fio.
    fn interference_results() -> Results {
        let mut r = results();
        let args = ["b", "--suite", "interference", "--paths", "same-shard"];
        let cli = crate::cli::Cli::try_parse_from(args.iter().chain(&["--peers", "fio"])).unwrap();
        r.plan = crate::suite::plan(&cli).unwrap();
        r
    }

    #[test]
    fn each_foreground_is_judged_against_its_partners() {
        let mut r = interference_results();
        // Cases: qd1 alone, qd1 under, open alone, open under, bulk alone.
        let skipped = || Outcome::Skipped { reason: "-".into() };
        r.by_target = vec![
            (
                Target::SameShard,
                vec![
                    with_p999(20_000.0, 100.0),
                    under(150.0, 800.0),
                    with_p999(10_000.0, 100.0),
                    under(300.0, 500.0),
                    with_p999(1000.0, 900.0),
                ],
            ),
            (
                Target::SameShardOneClass,
                vec![
                    skipped(),
                    under(900.0, 1000.0),
                    skipped(),
                    under(900.0, 1000.0),
                    with_p999(1100.0, 900.0),
                ],
            ),
            (
                Target::Fio,
                vec![
                    with_p999(20_000.0, 90.0),
                    under(600.0, 1000.0),
                    with_p999(10_000.0, 90.0),
                    under(600.0, 1000.0),
                    with_p999(1000.0, 900.0),
                ],
            ),
        ];
        let rows = table(&r).unwrap();
        assert_eq!(rows.len(), 1 + 2 * 3, "{rows:?}");
        let one_class = &rows[2];
        assert_eq!(one_class[1], "same-shard-one-class");
        assert_eq!(
            one_class[2], rows[1][2],
            "its foreground alone is same-shard's"
        );
        assert_ne!(one_class[4], rows[1][4], "its writer alone is its own");
        let verdicts: Vec<Option<Verdict>> = verdicts(&r)
            .into_iter()
            .map(|(_, judged)| judged.map(|(_, v)| v))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [
                // qd1: 1.5x alone; 0.8x the writer alone (0.9..1.1 spread paired); 4x fio.
                Some(Met),
                Some(Met),
                Some(Met),
                // open: 3x alone; 0.5x the writer alone; 2x fio.
                Some(Missed),
                Some(Missed),
                Some(Missed),
            ]
        );
    }
    #[test]
    fn fio_is_the_variant_with_the_lowest_tail_under_the_writer() {
        let mut r = interference_results();
        let fast_but_late = || {
            let mut o = under(5000.0, 900.0);
            if let Outcome::Measured(s) = &mut o {
                s.ops_per_s = 80_000.0;
            }
            o
        };
        let row = |f: fn() -> Outcome| vec![f(), f(), f(), f(), with_p999(1000.0, 900.0)];
        r.by_target = vec![
            (Target::SameShard, row(|| under(500.0, 800.0))),
            (Target::Fio, row(|| under(1000.0, 900.0))),
            (Target::FioTuned, row(fast_but_late)),
        ];
        let judged: Vec<(String, Verdict)> = verdicts(&r)
            .into_iter()
            .filter(|(name, _)| name.contains("fio"))
            .map(|(_, judged)| judged.unwrap())
            .collect();
        for (text, verdict) in judged {
            // Against fio's 1000 µs (2x), not fio-tuned's 5000 µs (10x).
            assert!(text.contains("vs fio 1000 (900-1100)"), "{text}");
            assert!(text.contains(": 2.00x (1.64-2.44) better"), "{text}");
            assert_eq!(verdict, Verdict::Missed);
        }
    }
    #[test]
    fn the_tail_target_takes_the_repeats_p999_not_the_merged_one() {
        let mut r = interference_results();
        let with_repeats = |merged: f64, repeats: [f64; 3]| {
            let mut o = with_p999(20_000.0, merged);
            if let Outcome::Measured(s) = &mut o {
                s.per_repeat.p999_us = repeats.to_vec();
                s.background = Some(Box::new(summary(900.0, 900.0)));
            }
            o
        };
        let alone = || with_repeats(100.0, [100.0, 100.0, 100.0]);
        // Merged, 1x (met); per repeat, 3x (missed).
        let under = || with_repeats(100.0, [290.0, 300.0, 310.0]);
        let row = vec![alone(), under(), alone(), under(), with_p999(1000.0, 900.0)];
        r.by_target = vec![(Target::SameShard, row)];
        let (text, verdict) = verdicts(&r).swap_remove(0).1.unwrap();
        assert!(
            text.starts_with("p99.9 per repeat 300 (290-310) under bg"),
            "{text}"
        );
        assert_eq!(verdict, Verdict::Missed, "{text}");
    }
}
