//! Small self-contained SVG line charts for HTML reports: daily spend per team, budget
//! burn-down. No scripts, fonts or network; every label is escaped.

use std::fmt::Write;

/// Escapes text for HTML and SVG content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Colour-blind-safe palette (Okabe–Ito), cycled.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
    /// Drawn dashed (targets, ideal burn).
    pub dashed: bool,
}

/// A round step for axis ticks covering `max` in about five steps.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 1.0 {
        format!("{:.2}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{:.6}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// A line chart with x labels (thinned to fit), a y axis with round ticks and a legend.
pub fn line_chart(title: &str, unit: &str, x_labels: &[String], series: &[Series]) -> String {
    let (w, h) = (760.0, 300.0);
    let (left, right, top, bottom) = (70.0, 170.0, 30.0, 40.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let n = x_labels.len().max(1);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let step = nice_step(max);
    let y_max = (max / step).ceil().max(1.0) * step;
    let x = |i: usize| {
        if n == 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| top + plot_h - plot_h * (v.max(0.0) / y_max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11">"#,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{left}" y="18" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let mut tick = 0.0;
    while tick <= y_max + step / 2.0 {
        let ty = y(tick);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x2}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{tx}" y="{ly:.1}" text-anchor="end">{label}</text>"##,
            x2 = left + plot_w,
            tx = left - 6.0,
            ly = ty + 4.0,
            label = escape(&fmt_tick(tick))
        );
        tick += step;
    }
    let _ = write!(
        svg,
        r#"<text x="12" y="{my}" transform="rotate(-90 12 {my})" text-anchor="middle">{}</text>"#,
        escape(unit),
        my = top + plot_h / 2.0
    );
    // As many labels as fit side by side (about 6.5 px a character at 11 px, plus a gap).
    let widest = x_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1) as f64;
    let fit = ((plot_w / (widest * 6.5 + 12.0)).floor() as usize).max(2);
    let every = n.div_ceil(fit).max(1);
    // Every `every`-th label, and the last one in place of a neighbour too close to it.
    let mut shown: Vec<usize> = (0..x_labels.len()).step_by(every).collect();
    if let Some(&last) = shown.last() {
        let end = x_labels.len() - 1;
        if last != end {
            if end - last < every {
                shown.pop();
            }
            shown.push(end);
        }
    }
    for (i, label) in x_labels.iter().enumerate() {
        if shown.binary_search(&i).is_ok() {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x(i),
                h - bottom + 16.0,
                escape(label)
            );
        }
    }
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(&s.name)
        );
        // A line of one point draws nothing: mark it (the first day of a period).
        if let [only] = points.as_slice() {
            if let Some((cx, cy)) = only.split_once(',') {
                let _ = write!(
                    svg,
                    r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{color}"><title>{}</title></circle>"#,
                    escape(&s.name)
                );
            }
        }
        let ly = top + 14.0 * k as f64 + 6.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx}" x2="{lx2}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"{dash}/><text x="{tx}" y="{ty}">{}</text>"#,
            escape(&s.name),
            lx = w - right + 12.0,
            lx2 = w - right + 30.0,
            tx = w - right + 36.0,
            ty = ly + 4.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_labels_and_draws_every_series() {
        let svg = line_chart(
            "Daily spend <by team>",
            "USD",
            &["2026-11-01".into(), "2026-11-02".into()],
            &[
                Series {
                    name: "ml & data".into(),
                    values: vec![1.0, 2.5],
                    dashed: false,
                },
                Series {
                    name: "budget".into(),
                    values: vec![3.0, 3.0],
                    dashed: true,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Daily spend &lt;by team&gt;"));
        assert!(svg.contains("ml &amp; data"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("stroke-dasharray"));
        assert!(!svg.contains("<script"));
    }

    /// Issue 29 (10): a month of date labels does not overlap, and a one-day line shows.
    #[test]
    fn labels_fit_and_a_single_point_is_drawn() {
        let labels: Vec<String> = (1..=31).map(|d| format!("2026-12-{d:02}")).collect();
        let mut spent = vec![f64::NAN; 31];
        spent[0] = 0.05;
        let svg = line_chart(
            "burn-down",
            "USD",
            &labels,
            &[Series {
                name: "spent".into(),
                values: spent,
                dashed: false,
            }],
        );
        let xs: Vec<f64> = svg
            .match_indices("text-anchor=\"middle\">2026-")
            .map(|(i, _)| {
                let head = &svg[..i];
                let at = head.rfind("x=\"").unwrap() + 3;
                head[at..].split('"').next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(xs.len() >= 4, "{xs:?}");
        // 10 characters at about 6.5 px each: labels at least 65 px apart.
        assert!(xs.windows(2).all(|w| w[1] - w[0] >= 65.0), "{xs:?}");
        assert!(svg.contains("<circle"), "one day of spend is visible");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(100.0), 20.0);
        assert_eq!(nice_step(0.0042), 0.001);
        assert_eq!(nice_step(0.0), 1.0);
        let empty = line_chart("t", "u", &[], &[]);
        assert!(empty.contains("</svg>"));
    }
}
