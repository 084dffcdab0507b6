//! The risk register as code: a YAML file of risks (surface, threat, likelihood × impact,
//! optional FAIR ranges, owner, mitigation, due date, acceptance, linked controls), read with
//! the line of every risk and field so the linter can point at what to fix.

pub mod fair;
pub mod report;
pub mod starter;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The attack surfaces a risk sits on.
pub const SURFACES: &[&str] = &["data", "prompt", "model", "supply-chain", "access", "cost"];

/// STRIDE and the AI-specific threats (the seeds' table and the OWASP Top 10 for LLM
/// applications, 2025).
pub const THREATS: &[&str] = &[
    "spoofing",
    "tampering",
    "repudiation",
    "information-disclosure",
    "denial-of-service",
    "elevation-of-privilege",
    "prompt-injection",
    "data-exfiltration",
    "model-inversion",
    "membership-inference",
    "poisoning",
    "drift",
    "hallucination",
    "system-prompt-leakage",
    "improper-output-handling",
    "excessive-agency",
    "embedding-weakness",
    "supply-chain-compromise",
    "unbounded-consumption",
];

pub const STATUSES: &[&str] = &["open", "mitigating", "mitigated", "accepted", "closed"];

/// Names of the five likelihood levels, 1 to 5.
pub const LIKELIHOOD: [&str; 5] = ["rare", "unlikely", "possible", "likely", "almost-certain"];
/// Names of the five impact levels, 1 to 5.
pub const IMPACT: [&str; 5] = ["negligible", "minor", "moderate", "major", "severe"];

#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// A level written as 1–5 or by name (`likely`, `major`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Level {
    Number(i64),
    Name(String),
}

impl Level {
    fn value(&self, names: &[&str; 5]) -> Option<u8> {
        match self {
            Level::Number(n) if (1..=5).contains(n) => Some(*n as u8),
            Level::Number(_) => None,
            Level::Name(s) => names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(s.trim()))
                .map(|i| i as u8 + 1),
        }
    }
}

/// A FAIR-style three-point estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: f64,
    pub likely: f64,
    pub max: f64,
}

/// Loss event frequency (events a year) and loss magnitude (currency per event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fair {
    pub frequency: Range,
    pub magnitude: Range,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub why: Option<String>,
}

/// One risk as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub surface: Option<String>,
    #[serde(default)]
    pub threat: Option<String>,
    /// An OWASP LLM Top 10 (2025) reference such as `LLM01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owasp: Option<String>,
    #[serde(default)]
    pub likelihood: Option<Level>,
    #[serde(default)]
    pub impact: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fair: Option<Fair>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub mitigation: Option<String>,
    #[serde(default)]
    pub due: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Acceptance>,
    #[serde(default)]
    pub controls: Vec<String>,
}

/// What an acceptance may carry: above these, a risk is mitigated, not accepted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The highest likelihood × impact (1–25) a risk may have and be accepted.
    #[serde(default)]
    pub accept_max_score: Option<u8>,
    /// The highest mean annualized loss exposure an accepted risk may carry.
    #[serde(default)]
    pub accept_max_ale: Option<f64>,
}

/// The register file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The AI system the register is about.
    #[serde(default)]
    pub system: Option<String>,
    /// The currency of FAIR magnitudes (ISO 4217), USD unless said.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub risks: Vec<Risk>,
}

/// Where things are in the file: the `risks:` key and each risk's first line.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    pub risks: usize,
    pub items: Vec<usize>,
    text: Vec<String>,
}

impl Lines {
    /// The 1-based line of `field` (or `field.sub`) of the risk at `i`, else the risk's.
    pub fn field(&self, i: usize, path: &str) -> usize {
        let Some(&start) = self.items.get(i) else {
            return self.risks.max(1);
        };
        let end = self
            .items
            .get(i + 1)
            .copied()
            .unwrap_or(self.text.len() + 1);
        let mut from = start;
        for key in path.split('.') {
            match (from..end).find(|&l| key_at(&self.text[l - 1], key)) {
                Some(l) => from = l,
                None => return if from == start { start } else { from },
            }
        }
        from
    }
}

fn key_at(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map(str::trim_start).unwrap_or(t);
    t.strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with(':'))
}

fn locate(text: &str) -> Lines {
    let text: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut lines = Lines {
        text,
        ..Lines::default()
    };
    let Some(at) = lines
        .text
        .iter()
        .position(|l| !l.starts_with([' ', '\t']) && key_at(l, "risks"))
    else {
        return lines;
    };
    lines.risks = at + 1;
    let mut indent = None;
    for (i, l) in lines.text.iter().enumerate().skip(at + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let here = l.len() - t.len();
        if here == 0 && !t.starts_with('-') {
            break;
        }
        if t == "-" || t.starts_with("- ") {
            let want = *indent.get_or_insert(here);
            if here == want {
                lines.items.push(i + 1);
            }
        }
    }
    lines
}

/// A register read from its text, with where each risk is.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub register: Register,
    pub lines: Lines,
}

/// Reads a register. Syntax and type errors name their line.
pub fn parse(text: &str) -> Result<Parsed, RiskError> {
    let register: Register = serde_norway::from_str(text).map_err(|e| RiskError::Syntax {
        line: e.location().map_or(1, |l| l.line()),
        message: e.to_string(),
    })?;
    Ok(Parsed {
        lines: locate(text),
        register,
    })
}

/// A date `YYYY-MM-DD`, checked to exist.
pub fn parse_date(s: &str) -> Option<(i32, u8, u8)> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[..4].parse().ok()?;
    let m: u8 = s[5..7].parse().ok()?;
    let d: u8 = s[8..].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (d >= 1 && d <= days).then_some((y, m, d))
}

impl Risk {
    pub fn likelihood(&self) -> Option<u8> {
        self.likelihood.as_ref().and_then(|l| l.value(&LIKELIHOOD))
    }
    pub fn impact(&self) -> Option<u8> {
        self.impact.as_ref().and_then(|l| l.value(&IMPACT))
    }
    /// Likelihood × impact, 1–25.
    pub fn score(&self) -> Option<u8> {
        Some(self.likelihood()? * self.impact()?)
    }
    pub fn status(&self) -> &str {
        self.status.as_deref().map_or("open", str::trim)
    }
    /// Still to be dealt with: open or being mitigated.
    pub fn is_open(&self) -> bool {
        matches!(self.status(), "open" | "mitigating")
    }
}

/// The rating of a score on the usual 5 × 5 matrix.
pub fn rating(score: u8) -> &'static str {
    match score {
        0..=4 => "low",
        5..=9 => "medium",
        10..=16 => "high",
        _ => "critical",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One thing the linter found, with the line to fix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub risk: Option<String>,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
}

/// What a lint needs besides the file: today's date and the controls that exist in the
/// running configuration (`None`: do not check links).
pub struct LintContext<'a> {
    pub today: (i32, u8, u8),
    pub controls: Option<&'a BTreeMap<String, String>>,
    /// Mean annualized loss exposure per risk id, for the acceptance threshold.
    pub exposure: &'a BTreeMap<String, f64>,
}

/// The fewest risks a register must track.
pub const MIN_RISKS: usize = 10;

/// Every problem of a register, in line order.
pub fn lint(p: &Parsed, cx: &LintContext<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    let reg = &p.register;
    let tracked = reg.risks.iter().filter(|r| r.status() != "closed").count();
    if tracked < MIN_RISKS {
        out.push(Problem {
            line: p.lines.risks.max(1),
            risk: None,
            rule: "too-few-risks",
            severity: Severity::Error,
            message: format!(
                "{tracked} risk(s) tracked; a register tracks at least {MIN_RISKS} (`custos risk init` writes a starter)"
            ),
        });
    }
    let mut seen = BTreeSet::new();
    for (i, r) in reg.risks.iter().enumerate() {
        let mut problem = |field: &str, rule: &'static str, severity: Severity, message: String| {
            out.push(Problem {
                line: p.lines.field(i, field),
                risk: Some(r.id.clone()),
                rule,
                severity,
                message,
            })
        };
        let e = Severity::Error;
        if r.id.trim().is_empty() {
            problem("id", "invalid", e, "the risk has an empty id".into());
        } else if !seen.insert(r.id.trim().to_owned()) {
            problem("id", "duplicate-id", e, format!("{} is used twice", r.id));
        }
        let status = r.status();
        if !STATUSES.contains(&status) {
            problem(
                "status",
                "invalid",
                e,
                format!("unknown status {status:?}: {}", STATUSES.join(", ")),
            );
        }
        if status == "closed" {
            continue;
        }
        match r.surface.as_deref().map(str::trim) {
            None | Some("") => problem(
                "id",
                "missing-surface",
                e,
                format!("no surface: one of {}", SURFACES.join(", ")),
            ),
            Some(s) if !SURFACES.contains(&s) => problem(
                "surface",
                "invalid",
                e,
                format!("unknown surface {s:?}: one of {}", SURFACES.join(", ")),
            ),
            _ => {}
        }
        match r.threat.as_deref().map(str::trim) {
            None | Some("") => problem("id", "missing-threat", e, "no threat named".into()),
            Some(t) if !THREATS.contains(&t) => problem(
                "threat",
                "invalid",
                e,
                format!("unknown threat {t:?}: one of {}", THREATS.join(", ")),
            ),
            _ => {}
        }
        for (field, level, names) in [
            ("likelihood", &r.likelihood, &LIKELIHOOD),
            ("impact", &r.impact, &IMPACT),
        ] {
            match level {
                None => problem(
                    "id",
                    "missing-rating",
                    e,
                    format!("no {field}: 1–5 or {}", names.join(", ")),
                ),
                Some(l) if l.value(names).is_none() => problem(
                    field,
                    "invalid",
                    e,
                    format!("{field} must be 1–5 or one of {}", names.join(", ")),
                ),
                _ => {}
            }
        }
        if let Some(f) = &r.fair {
            for (name, range) in [("frequency", &f.frequency), ("magnitude", &f.magnitude)] {
                if let Err(why) = fair::check_range(range) {
                    problem(
                        &format!("fair.{name}"),
                        "invalid",
                        e,
                        format!("fair.{name}: {why}"),
                    );
                }
            }
        }
        let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
        if blank(&r.owner) {
            problem("owner", "missing-owner", e, "no owner".into());
        }
        if blank(&r.mitigation) {
            problem(
                "mitigation",
                "missing-mitigation",
                e,
                "no mitigation".into(),
            );
        }
        match r.due.as_deref().map(str::trim) {
            None | Some("") if r.is_open() => problem(
                "due",
                "missing-due",
                e,
                "no due date for its mitigation (YYYY-MM-DD)".into(),
            ),
            None | Some("") => {}
            Some(d) => match parse_date(d) {
                None => problem(
                    "due",
                    "invalid",
                    e,
                    format!("due {d:?} is not a date (YYYY-MM-DD)"),
                ),
                Some(day) if r.is_open() && day < cx.today => problem(
                    "due",
                    "overdue",
                    e,
                    format!("due {d} has passed and the risk is still {status}"),
                ),
                _ => {}
            },
        }
        if status == "accepted" {
            let a = r.acceptance.clone().unwrap_or_default();
            if blank(&a.by) {
                problem(
                    "acceptance.by",
                    "acceptance-incomplete",
                    e,
                    "accepted, but acceptance.by does not say who accepted it".into(),
                );
            }
            match a.until.as_deref().map(str::trim) {
                None | Some("") => problem(
                    "acceptance.until",
                    "acceptance-incomplete",
                    e,
                    "accepted, but acceptance.until does not say until when".into(),
                ),
                Some(u) => match parse_date(u) {
                    None => problem(
                        "acceptance.until",
                        "invalid",
                        e,
                        format!("acceptance.until {u:?} is not a date (YYYY-MM-DD)"),
                    ),
                    Some(day) if day < cx.today => problem(
                        "acceptance.until",
                        "acceptance-expired",
                        e,
                        format!("the acceptance expired on {u}: review the risk and accept it again or mitigate it"),
                    ),
                    _ => {}
                },
            }
            if let (Some(max), Some(score)) = (reg.thresholds.accept_max_score, r.score()) {
                if score > max {
                    problem(
                        "acceptance",
                        "acceptance-over-threshold",
                        e,
                        format!("score {score} is above the acceptance threshold {max}: it must be mitigated"),
                    );
                }
            }
            if let (Some(max), Some(ale)) = (reg.thresholds.accept_max_ale, cx.exposure.get(&r.id))
            {
                if *ale > max {
                    problem(
                        "acceptance",
                        "acceptance-over-threshold",
                        e,
                        format!("annualized loss exposure {ale:.0} is above the acceptance threshold {max:.0}: it must be mitigated"),
                    );
                }
            }
        }
        if let Some(known) = cx.controls {
            for c in &r.controls {
                if !known.contains_key(c.trim()) {
                    problem(
                        "controls",
                        "unknown-control",
                        e,
                        format!("linked control {c:?} does not exist in the running configuration (`custos risk controls` lists those that do)"),
                    );
                }
            }
        }
        if r.controls.is_empty() && r.is_open() {
            problem(
                "id",
                "no-controls",
                Severity::Warning,
                "no linked controls: nothing custos runs mitigates it".into(),
            );
        }
    }
    out.sort_by_key(|p| p.line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(controls: &BTreeMap<String, String>) -> LintContext<'_> {
        static EMPTY: std::sync::OnceLock<BTreeMap<String, f64>> = std::sync::OnceLock::new();
        LintContext {
            today: (2026, 12, 3),
            controls: Some(controls),
            exposure: EMPTY.get_or_init(BTreeMap::new),
        }
    }

    fn risk(id: &str) -> String {
        format!(
            "  - id: {id}\n    surface: prompt\n    threat: prompt-injection\n    likelihood: 3\n    impact: major\n    owner: a@example.com\n    mitigation: guard\n    due: 2027-01-31\n    status: open\n    controls: [guard:pii]\n"
        )
    }

    fn ten() -> String {
        let mut s = String::from("system: demo\nrisks:\n");
        for i in 1..=10 {
            s.push_str(&risk(&format!("R{i:02}")));
        }
        s
    }

    fn known() -> BTreeMap<String, String> {
        BTreeMap::from([("guard:pii".to_owned(), "the PII guard".to_owned())])
    }

    fn rules(text: &str) -> Vec<(usize, &'static str)> {
        let p = parse(text).unwrap();
        lint(&p, &cx(&known()))
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| (p.line, p.rule))
            .collect()
    }

    #[test]
    fn a_complete_register_is_clean() {
        assert!(rules(&ten()).is_empty(), "{:?}", rules(&ten()));
    }

    #[test]
    fn each_rule_names_its_line() {
        assert_eq!(rules("risks:\n"), vec![(1, "too-few-risks")]);
        let t = ten().replace("    owner: a@example.com\n    mitigation: guard\n    due: 2027-01-31\n    status: open\n    controls: [guard:pii]\n  - id: R03", "    owner: ''\n    mitigation: guard\n    due: 2027-01-31\n    status: open\n    controls: [guard:pii]\n  - id: R03");
        assert_eq!(rules(&t), vec![(18, "missing-owner")]);
        let t = ten().replacen("    mitigation: guard\n", "", 1);
        assert_eq!(rules(&t), vec![(3, "missing-mitigation")]);
        let t = ten().replacen("    due: 2027-01-31\n", "", 1);
        assert_eq!(rules(&t), vec![(3, "missing-due")]);
        let t = ten().replacen("due: 2027-01-31", "due: 2026-11-30", 1);
        assert_eq!(rules(&t), vec![(10, "overdue")]);
        let t = ten().replacen(
            "status: open",
            "status: accepted\n    acceptance: {by: ciso@example.com, until: 2026-12-01}",
            1,
        );
        assert_eq!(rules(&t), vec![(12, "acceptance-expired")]);
        let t = ten().replacen(
            "controls: [guard:pii]",
            "controls: [guard:pii, budget:nope]",
            1,
        );
        assert_eq!(rules(&t), vec![(12, "unknown-control")]);
        let t = ten().replacen("id: R02", "id: R01", 1);
        assert_eq!(rules(&t), vec![(13, "duplicate-id")]);
    }

    #[test]
    fn an_accepted_risk_above_the_threshold_must_be_mitigated() {
        let t = format!("thresholds: {{accept_max_score: 9}}\n{}", ten()).replacen(
            "status: open",
            "status: accepted\n    acceptance: {by: ciso@example.com, until: 2027-06-30}",
            1,
        );
        // likelihood 3 × impact major (4) = 12 > 9
        assert_eq!(rules(&t), vec![(13, "acceptance-over-threshold")]);
    }

    #[test]
    fn closed_risks_are_not_tracked() {
        let t = ten().replacen("status: open", "status: closed", 1);
        assert_eq!(rules(&t), vec![(2, "too-few-risks")]);
    }

    #[test]
    fn type_errors_name_their_line() {
        // A value no variant of a level takes is reported at its risk.
        let e = parse("risks:\n  - id: R1\n    likelihood: [1]\n").unwrap_err();
        let RiskError::Syntax { line, .. } = e;
        assert_eq!(line, 2);
        let e = parse("risks:\n  - id: R1\n    owner: [1]\n").unwrap_err();
        let RiskError::Syntax { line, .. } = e;
        assert_eq!(line, 3);
        let e = parse("risks:\n  - id: R1\n    owner: x\n    colour: red\n").unwrap_err();
        let RiskError::Syntax { line, message } = e;
        assert_eq!(line, 4, "{message}");
    }

    #[test]
    fn levels_by_number_or_name() {
        let p = parse("risks:\n  - {id: A, likelihood: almost-certain, impact: 2}\n").unwrap();
        assert_eq!(p.register.risks[0].score(), Some(10));
        assert_eq!(rating(10), "high");
    }

    #[test]
    fn dates_are_checked() {
        assert_eq!(parse_date("2028-02-29"), Some((2028, 2, 29)));
        assert_eq!(parse_date("2027-02-29"), None);
        assert_eq!(parse_date("2027-13-01"), None);
        assert_eq!(parse_date("27-01-01"), None);
    }

    #[test]
    fn the_starter_register_is_complete_but_for_its_owners() {
        let text = starter::register("support-bot", None, "2027-03-03", &known());
        let p = parse(&text).unwrap();
        assert!(p.register.risks.len() >= MIN_RISKS);
        let found = lint(&p, &cx(&known()));
        assert!(
            found
                .iter()
                .all(|x| x.rule == "missing-owner" || x.severity == Severity::Warning),
            "{found:?}"
        );
        let text = starter::register(
            "support-bot",
            Some("risk@example.com"),
            "2027-03-03",
            &known(),
        );
        let p = parse(&text).unwrap();
        let found: Vec<_> = lint(&p, &cx(&known()))
            .into_iter()
            .filter(|x| x.severity == Severity::Error)
            .collect();
        assert!(found.is_empty(), "{found:?}");
    }
}
