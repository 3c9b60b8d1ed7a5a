//! Small, dependency-free SVG charts: line charts and stacked bar charts with axes, ticks
//! and a legend. The output depends only on the data, so plots are as reproducible as the
//! run.

use std::fmt::Write;

const W: f64 = 900.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

const COLOURS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

/// One named line.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>
"#,
        W / 2.0,
        esc(title)
    );
}

/// "Nice" tick step for a range.
fn step(range: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label with as many decimals as the tick step needs (0.002 min stays 0.002).
fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || !step.is_finite() || step <= 0.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Horizontal grid lines with their labels across the plot, for values `y.0` to `y.1`.
fn y_grid(out: &mut String, y: (f64, f64)) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sy = step(y.1 - y.0);
    let mut t = (y.0 / sy).ceil() * sy;
    while t <= y.1 + 1e-9 {
        let py = TOP + ph - (t - y.0) / (y.1 - y.0) * ph;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            fmt_tick(t, sy)
        );
        t += sy;
    }
}

fn axes(out: &mut String, x: (f64, f64), y: (f64, f64), x_label: &str, y_label: &str) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let sx = step(x.1 - x.0);
    let mut t = (x.0 / sx).ceil() * sx;
    while t <= x.1 + 1e-9 {
        let px = LEFT + (t - x.0) / (x.1 - x.0) * pw;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP,
            TOP + ph,
            TOP + ph + 16.0,
            fmt_tick(t, sx)
        );
        t += sx;
    }
    y_grid(out, y);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 18.0,
        esc(x_label)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_label)
    );
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, n) in names.iter().enumerate().take(24) {
        let y = TOP + 10.0 + i as f64 * 16.0;
        let x = W - RIGHT + 12.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            y - 9.0,
            COLOURS[i % COLOURS.len()],
            x + 18.0,
            y,
            esc(n)
        );
    }
}

/// A line chart of `lines`; `y_max` fixes the top of the y axis when given.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    y_max: Option<f64>,
) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for (x, y) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = y_max.unwrap_or(if y1 <= 0.0 { 1.0 } else { y1 * 1.05 });
    axes(&mut out, (x0, x1), (0.0, y1), x_label, y_label);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    for (i, l) in lines.iter().enumerate() {
        if l.points.is_empty() {
            continue;
        }
        let mut d = String::new();
        for (k, (x, y)) in l.points.iter().enumerate() {
            let px = LEFT + (x - x0) / (x1 - x0) * pw;
            let py = TOP + ph - (y.min(y1) / y1) * ph;
            let _ = write!(d, "{}{px:.1},{py:.1} ", if k == 0 { "M" } else { "L" });
        }
        let _ = writeln!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            d.trim_end(),
            COLOURS[i % COLOURS.len()]
        );
    }
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

/// A stacked bar chart: one bar per category, one stack segment per series.
pub fn stacked_bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    stacks: &[(String, Vec<f64>)],
) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let n = categories.len().max(1);
    let totals: Vec<f64> = (0..n)
        .map(|c| {
            stacks
                .iter()
                .map(|(_, v)| v.get(c).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let y1 = totals.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.05;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    y_grid(&mut out, (0.0, y1));
    let bw = pw / n as f64;
    for (c, name) in categories.iter().enumerate() {
        let mut base = 0.0;
        for (i, (_, values)) in stacks.iter().enumerate() {
            let v = values.get(c).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = v / y1 * ph;
            let y = TOP + ph - (base / y1 * ph) - h;
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                LEFT + c as f64 * bw + bw * 0.1,
                bw * 0.8,
                COLOURS[i % COLOURS.len()]
            );
            base += v;
        }
        let x = LEFT + c as f64 * bw + bw / 2.0;
        let _ = writeln!(
            out,
            r#"<text transform="translate({x:.1} {}) rotate(-60)" text-anchor="end" font-size="9">{}</text>"#,
            TOP + ph + 8.0,
            esc(name)
        );
    }
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_label)
    );
    let names: Vec<&str> = stacks.iter().map(|(n, _)| n.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

/// The empirical CDF of sorted `values`, scaled by `unit`, thinned to at most 400 points.
pub fn cdf(sorted: &[u64], unit: f64) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return vec![];
    }
    let stride = n.div_ceil(400).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .step_by(stride)
        .map(|i| (sorted[i] as f64 / unit, (i + 1) as f64 / n as f64))
        .collect();
    pts.push((sorted[n - 1] as f64 / unit, 1.0));
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg() {
        let s = line_chart(
            "t <1>",
            "x",
            "y",
            &[Line {
                name: "a".into(),
                points: vec![(0.0, 0.0), (1.0, 2.0)],
            }],
            None,
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t &lt;1&gt;"));
        let b = stacked_bars(
            "b",
            "n",
            &["m1".into(), "m2".into()],
            &[("kept".into(), vec![1.0, 2.0])],
        );
        assert_eq!(b.matches("<rect").count(), 2 + 2 + 1);
        assert_eq!(cdf(&[1, 2, 3, 4], 1.0).last(), Some(&(4.0, 1.0)));
    }
}
