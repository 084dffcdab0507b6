//! Terminal output: aligned tables for people, JSON for machines.

use serde_json::Value;

/// Prints rows as an aligned table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    table_painted(headers, rows, &|_, _| None);
}

/// Whether output may be coloured: a terminal, `NO_COLOR` unset or empty (no-color.org), and
/// a terminal that is not `dumb`.
pub fn colour_wanted(
    is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&str>,
) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty()) && term != Some("dumb")
}

fn colour() -> bool {
    use std::io::IsTerminal;
    colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var("TERM").ok().as_deref(),
    )
}

/// The SGR colour of a severity cell (`critical 9.8`, `high`, …): red for critical and high,
/// yellow for medium, none otherwise.
pub fn severity_colour(cell: &str) -> Option<&'static str> {
    let band = cell.split_whitespace().next().unwrap_or("");
    match band.to_ascii_lowercase().as_str() {
        "critical" => Some("1;31"),
        "high" => Some("31"),
        "medium" => Some("33"),
        _ => None,
    }
}

/// `table`, with `paint(column, cell)` naming an SGR colour for cells worth one — used only
/// when `colour()` allows it, and applied outside the padding so columns stay aligned.
pub fn table_painted(
    headers: &[&str],
    rows: &[Vec<String>],
    paint: &dyn Fn(usize, &str) -> Option<&'static str>,
) {
    let colour = colour();
    if rows.is_empty() {
        eprintln!("(none)");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>, painted: bool| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let sgr = if painted { paint(i, cell) } else { None };
            if let Some(sgr) = sgr {
                out.push_str(&format!("\x1b[{sgr}m{cell}\x1b[0m"));
                if i + 1 < cells.len() {
                    let pad = w.saturating_sub(cell.chars().count()) + 2;
                    out.push_str(&" ".repeat(pad));
                }
            } else if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec(), false);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), colour);
    }
}

pub fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), custos_core::time::format_rfc3339)
}

/// `1 file`, `2 files`: a count with its noun, plural when it is not one.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(super::count(1, "finding"), "1 finding");
        assert_eq!(super::count(0, "file"), "0 files");
        assert_eq!(super::count(2, "component"), "2 components");
    }
}

#[cfg(test)]
mod colour_tests {
    use super::*;

    /// Issue 29 (27): severity in colour on a terminal only, and never with NO_COLOR.
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = std::ffi::OsStr::new("1");
        let empty = std::ffi::OsStr::new("");
        assert!(colour_wanted(true, None, Some("xterm-256color")));
        assert!(colour_wanted(true, Some(empty), None));
        assert!(!colour_wanted(true, Some(set), Some("xterm")));
        assert!(!colour_wanted(false, None, Some("xterm")));
        assert!(!colour_wanted(true, None, Some("dumb")));
        assert_eq!(severity_colour("critical 9.8"), Some("1;31"));
        assert_eq!(severity_colour("HIGH 7.5"), Some("31"));
        assert_eq!(severity_colour("medium"), Some("33"));
        assert_eq!(severity_colour("low 2.0"), None);
        assert_eq!(severity_colour("unknown"), None);
    }
}
