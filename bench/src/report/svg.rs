//! The latency percentile spectrum as a hand-written SVG: x is the
//! percentile on HdrHistogram's log scale (distance to 100% in nines), y is
//! latency in µs on a log scale; ours are solid lines, peers dashed.

use std::fmt::Write;

/// One line of the plot.
pub struct Series {
    pub name: String,
    /// Index into the palette (the target's position, so colours hold across plots).
    pub colour: usize,
    pub ours: bool,
    /// `(percentile, latency_us)`, percentile ascending; 100 is the max.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Nines shown on the x axis: 0 (0%) .. 6 (99.9999%); the max sits at MAX_NINES.
const MAX_NINES: f64 = 6.3;
const COLOURS: [&str; 8] = [
    "#d62728", "#ff7f0e", "#bcbd22", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf",
];

/// Percentile → nines: 90 → 1, 99 → 2, 99.9 → 3; 100 → `MAX_NINES`.
pub fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        MAX_NINES
    } else {
        (-(1.0 - percentile / 100.0).log10()).clamp(0.0, MAX_NINES)
    }
}

/// The y range in whole decades around every latency.
pub fn decade_range(series: &[Series]) -> (f64, f64) {
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (min, max) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if min > max {
        return (1.0, 1000.0);
    }
    let lo = 10f64.powf(min.log10().floor());
    let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// A tick label: whole numbers without decimals, µs below 1 with them.
fn axis_label(latency_us: f64) -> String {
    if latency_us >= 1.0 {
        format!("{latency_us:.0}")
    } else {
        format!("{latency_us}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where the plot area lies and how values map into it.
struct Frame {
    plot_w: f64,
    plot_h: f64,
    y_lo: f64,
    y_hi: f64,
}

impl Frame {
    fn x_of(&self, percentile: f64) -> f64 {
        LEFT + nines(percentile) / MAX_NINES * self.plot_w
    }

    fn y_of(&self, latency_us: f64) -> f64 {
        let f = (latency_us.max(self.y_lo).log10() - self.y_lo.log10())
            / (self.y_hi.log10() - self.y_lo.log10());
        TOP + self.plot_h * (1.0 - f)
    }
}

/// The percentile grid lines and labels of the x axis.
fn x_axis(svg: &mut String, frame: &Frame) {
    let (plot_w, plot_h) = (frame.plot_w, frame.plot_h);
    for (n, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = LEFT + n as f64 / MAX_NINES * plot_w;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">max</text>",
        frame.x_of(100.0),
        TOP - 4.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0
    );
}

/// The latency grid lines (1, 2, 5 per decade) and labels of the y axis.
fn y_axis(svg: &mut String, frame: &Frame) {
    let mut decade = frame.y_lo;
    while decade <= frame.y_hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v > frame.y_hi * 1.0001 {
                break;
            }
            let y = frame.y_of(v);
            let stroke = if m == 1.0 { "#ccc" } else { "#eee" };
            let _ = writeln!(svg, "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/>", LEFT + frame.plot_w);
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                y + 4.0,
                axis_label(v)
            );
        }
        decade *= 10.0;
    }
    let _ = writeln!(
        svg,
        "<text transform=\"translate(16,{:.1}) rotate(-90)\" text-anchor=\"middle\">latency (µs)</text>",
        TOP + frame.plot_h / 2.0
    );
}

/// One series' line and its legend entry.
fn series_line(svg: &mut String, frame: &Frame, i: usize, s: &Series) {
    let colour = COLOURS[s.colour % COLOURS.len()];
    let (width, dash) = if s.ours {
        (2.5, "")
    } else {
        (1.5, " stroke-dasharray=\"6 3\"")
    };
    let points: Vec<String> = s
        .points
        .iter()
        .filter(|(_, us)| us.is_finite())
        .map(|&(p, us)| format!("{:.1},{:.1}", frame.x_of(p), frame.y_of(us)))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash} points=\"{}\"/>",
        points.join(" ")
    );
    let ly = TOP + 10.0 + 18.0 * i as f64;
    let lx = LEFT + frame.plot_w + 14.0;
    let _ = writeln!(svg, "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash}/>", lx + 24.0);
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        lx + 30.0,
        ly + 4.0,
        escape(&s.name)
    );
}

/// Renders the plot of one case.
pub fn render(title: &str, series: &[Series]) -> String {
    let (y_lo, y_hi) = decade_range(series);
    let frame = Frame {
        plot_w: WIDTH - LEFT - RIGHT,
        plot_h: HEIGHT - TOP - BOTTOM,
        y_lo,
        y_hi,
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{} — latency by percentile</text>",
        escape(title)
    );
    x_axis(&mut svg, &frame);
    y_axis(&mut svg, &frame);
    let _ = writeln!(svg, "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#888\"/>", frame.plot_w, frame.plot_h);
    for (i, s) in series.iter().enumerate() {
        series_line(&mut svg, &frame, i, s);
    }
    svg.push_str("</svg>\n");
    svg
}

/// A page showing every case's plot, for a browser.
pub fn index_html(started_utc: &str, cases: &[crate::suite::Case]) -> String {
    let mut html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>shardblob-bench {started_utc}</title>\n\
         <body style=\"font-family: sans-serif\">\n<h1>shardblob-bench {started_utc}</h1>\n\
         <p>Latency by percentile; ours solid, peers dashed. Numbers: results.txt, results.json.</p>\n"
    );
    for case in cases {
        let _ = writeln!(
            html,
            "<h2>{}</h2>\n<img src=\"svg/{}.svg\" alt=\"{}\">",
            escape(&case.label()),
            case.id(),
            escape(&case.label())
        );
    }
    html.push_str("</body>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_map_to_nines() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_NINES);
    }

    #[test]
    fn y_range_covers_every_point_in_decades() {
        let s = |points: Vec<(f64, f64)>| Series {
            name: "x".into(),
            colour: 0,
            ours: true,
            points,
        };
        assert_eq!(
            decade_range(&[s(vec![(50.0, 41.0), (100.0, 2500.0)])]),
            (10.0, 10_000.0)
        );
        assert_eq!(decade_range(&[]), (1.0, 1000.0));
    }

    #[test]
    fn the_plot_has_a_line_per_series_and_escapes_names() {
        let series = [
            Series {
                name: "same-shard".into(),
                colour: 0,
                ours: true,
                points: vec![(50.0, 40.0), (99.0, 90.0), (100.0, 900.0)],
            },
            Series {
                name: "fio <io_uring>".into(),
                colour: 3,
                ours: false,
                points: vec![(50.0, 38.0), (99.0, 80.0)],
            },
        ];
        let svg = render("rand-read-4KiB qd1", &series);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("fio &lt;io_uring&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
