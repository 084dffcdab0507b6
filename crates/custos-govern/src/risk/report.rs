//! The register rendered for people: a 5 × 5 heat map (SVG, likelihood against impact with
//! each risk's id in its cell), and a table as Markdown or a self-contained HTML page.

use super::fair::Exposure;
use super::{rating, Register, Risk, IMPACT, LIKELIHOOD};
use crate::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write;

fn colour(score: u8) -> &'static str {
    match rating(score) {
        "low" => "#c8e6c9",
        "medium" => "#fff59d",
        "high" => "#ffcc80",
        _ => "#ef9a9a",
    }
}

/// Open risks placed on the matrix; closed ones are history, not heat.
pub fn heat_map(reg: &Register) -> String {
    let (cell, left, top) = (110u32, 120u32, 40u32);
    let (w, h) = (left + 5 * cell + 20, top + 5 * cell + 70);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12" role="img" aria-label="risk heat map">"#
    );
    let _ = write!(
        s,
        r#"<title>Risk heat map{}</title>"#,
        reg.system
            .as_deref()
            .map(|x| format!(": {}", escape(x)))
            .unwrap_or_default()
    );
    let mut cells: BTreeMap<(u8, u8), Vec<&Risk>> = BTreeMap::new();
    for r in reg.risks.iter().filter(|r| r.status() != "closed") {
        if let (Some(l), Some(i)) = (r.likelihood(), r.impact()) {
            cells.entry((l, i)).or_default().push(r);
        }
    }
    for l in 1..=5u8 {
        for i in 1..=5u8 {
            let x = left + u32::from(i - 1) * cell;
            let y = top + u32::from(5 - l) * cell;
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{}" stroke="#555"/>"##,
                colour(l * i)
            );
            let ids = cells.get(&(l, i)).map(Vec::as_slice).unwrap_or_default();
            for (k, r) in ids.iter().take(6).enumerate() {
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}" font-weight="bold"><title>{}</title>{}</text>"#,
                    x + 8,
                    y + 18 + 16 * k as u32,
                    escape(r.title.as_deref().unwrap_or(&r.id)),
                    escape(&r.id)
                );
            }
            if ids.len() > 6 {
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}">+{} more</text>"#,
                    x + 8,
                    y + cell - 8,
                    ids.len() - 6
                );
            }
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{} ({l})</text>"#,
            left - 6,
            top + u32::from(5 - l) * cell + cell / 2,
            LIKELIHOOD[usize::from(l - 1)]
        );
    }
    for i in 1..=5u8 {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{} ({i})</text>"#,
            left + u32::from(i - 1) * cell + cell / 2,
            top + 5 * cell + 18,
            IMPACT[usize::from(i - 1)]
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">impact →</text><text x="{}" y="24" text-anchor="middle" font-weight="bold">likelihood ↑</text></svg>"#,
        left + 5 * cell / 2,
        top + 5 * cell + 44,
        left / 2
    );
    s
}

fn money(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn row(r: &Risk, ale: Option<&Exposure>) -> [String; 10] {
    let score = r.score();
    [
        r.id.clone(),
        r.title.clone().unwrap_or_default(),
        r.surface.clone().unwrap_or_default(),
        r.threat.clone().unwrap_or_default(),
        score.map_or("?".into(), |s| format!("{s} ({})", rating(s))),
        ale.map_or(String::new(), |e| {
            format!("{} (p90 {})", money(e.ale), money(e.p90))
        }),
        r.owner.clone().unwrap_or_default(),
        r.due.clone().unwrap_or_default(),
        match (&r.acceptance, r.status()) {
            (Some(a), "accepted") => format!(
                "accepted by {} until {}",
                a.by.as_deref().unwrap_or("?"),
                a.until.as_deref().unwrap_or("?")
            ),
            (_, s) => s.to_owned(),
        },
        r.controls.join(", "),
    ]
}

const HEAD: [&str; 10] = [
    "id", "risk", "surface", "threat", "score", "ALE", "owner", "due", "status", "controls",
];

/// Risks by score, highest first.
fn ranked(reg: &Register) -> Vec<&Risk> {
    let mut v: Vec<&Risk> = reg.risks.iter().collect();
    v.sort_by_key(|r| (std::cmp::Reverse(r.score().unwrap_or(0)), r.id.clone()));
    v
}

pub fn markdown(reg: &Register, exposure: &BTreeMap<String, Exposure>) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut s = format!(
        "# Risk register{}\n\n",
        reg.system
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "| {} |", HEAD.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEAD.len()));
    for r in ranked(reg) {
        let cols = row(r, exposure.get(&r.id));
        let cols: Vec<String> = cols.iter().map(|c| cell(c)).collect();
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    }
    if let Some(e) = exposure.values().next() {
        let _ = writeln!(
            s,
            "\nALE: annualized loss exposure in {}, the mean of {} simulated years (seed {}).",
            reg.currency.as_deref().unwrap_or("USD"),
            e.iterations,
            e.seed
        );
    }
    s
}

pub fn html(reg: &Register, exposure: &BTreeMap<String, Exposure>) -> String {
    let title = format!(
        "Risk register{}",
        reg.system
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    );
    let mut s = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#eee}}</style></head><body><h1>{t}</h1>",
        t = escape(&title)
    );
    s.push_str(&heat_map(reg));
    s.push_str("<table><thead><tr>");
    for h in HEAD {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for r in ranked(reg) {
        s.push_str("<tr>");
        for c in row(r, exposure.get(&r.id)) {
            let _ = write!(s, "<td>{}</td>", escape(&c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    if let Some(e) = exposure.values().next() {
        let _ = write!(
            s,
            "<p>ALE: annualized loss exposure in {}, the mean of {} simulated years (seed {}).</p>",
            escape(reg.currency.as_deref().unwrap_or("USD")),
            e.iterations,
            e.seed
        );
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn the_heat_map_places_each_open_risk_and_escapes_text() {
        let p = parse(
            "system: a<b\nrisks:\n  - {id: R1, likelihood: 5, impact: 5, title: \"x & y\"}\n  - {id: R2, likelihood: 1, impact: 1, status: closed}\n",
        )
        .unwrap();
        let svg = heat_map(&p.register);
        assert!(svg.contains(">R1</text>") && !svg.contains(">R2</text>"));
        assert!(svg.contains("a&lt;b") && svg.contains("x &amp; y"));
        assert_eq!(svg.matches("<rect").count(), 25);
        let md = markdown(&p.register, &BTreeMap::new());
        assert!(
            md.lines().nth(4).unwrap().starts_with("| R1 | x & y |"),
            "{md}"
        );
        assert_eq!(money(1234567.4), "1,234,567");
    }
}
