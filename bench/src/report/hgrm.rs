//! HdrHistogram's percentile-distribution text (.hgrm), the format its
//! plotters read: value (µs), percentile, cumulative count, 1/(1-percentile),
//! at 5 ticks per half-distance, then mean, max and count.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Renders a nanosecond histogram in microseconds.
pub fn render(histogram_ns: &Histogram<u64>) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total_count = 0u64;
    for v in histogram_ns.iter_quantiles(5) {
        total_count += v.count_since_last_iteration();
        let value_us = v.value_iterated_to() as f64 / 1e3;
        let quantile = v.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                text,
                "{value_us:12.3} {quantile:2.12} {total_count:10} {:14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(text, "{value_us:12.3} {quantile:2.12} {total_count:10}");
        }
    }
    let _ = writeln!(
        text,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        histogram_ns.mean() / 1e3,
        histogram_ns.stdev() / 1e3
    );
    let _ = writeln!(
        text,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        histogram_ns.max() as f64 / 1e3,
        histogram_ns.len()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_is_cumulative_and_ends_at_the_max() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap();
        }
        let text = render(&h);
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 10);
        assert!(rows
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1] && w[0][2] <= w[1][2]));
        let last = rows.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 1000.0);
        assert!((last[0] - 1000.0).abs() < 1.0, "{}", last[0]);
        assert!(text.contains("Total count    =         1000"));
    }
}
