//! Compliance as answers: the automated checks custos can run over its store and ledger,
//! the shipped mappings of framework controls (NIST AI RMF 1.0, ISO/IEC 42001:2023 Annex A)
//! to those checks, and a control's verdict from its checks' results.

pub mod bundle;
pub mod dpia;
pub mod export;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The outcome of a check or a control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// custos holds no evidence either way.
    NotCovered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotCovered => "not covered",
        }
    }
}

/// The automated checks, by id, with what each asks.
pub const CHECKS: &[(&str, &str)] = &[
    ("access-review", "an access review of every tenant recorded in the last 90 days"),
    ("key-rotation", "no active API key older than 90 days without rotation"),
    ("high-release-security", "every high-tier and emergency release approved by security before it went live"),
    ("release-vulns", "active releases' vulnerability reports hold no critical finding without an exception in force"),
    ("models-signed", "every model served (configured or pinned by an active release) is registered and signed"),
    ("models-carded", "every model served has a signed card that passes the card lint"),
    ("team-budgets", "every team has a budget with alert thresholds"),
    ("erasure-sla", "every erasure request closed within its SLA, none open past it"),
    ("ledger-anchored", "the ledger verifies against a signed checkpoint held outside the database"),
    ("risk-register", "the risk register passes its lint"),
    ("dpia-approved", "every DPIA a trigger required is approved"),
    ("pii-guard", "the gateway's PII guard acts on prompts (redact or block) by default"),
];

/// One check's result with the evidence behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub status: Status,
    /// One line: why it passes or fails.
    pub summary: String,
    /// The facts looked at: ledger indexes, ids, dates.
    #[serde(default)]
    pub evidence: Vec<serde_json::Value>,
}

impl CheckResult {
    pub fn new(id: &str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status,
            summary: summary.into(),
            evidence: Vec::new(),
        }
    }
    pub fn with(mut self, evidence: Vec<serde_json::Value>) -> Self {
        self.evidence = evidence;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappedControl {
    pub id: String,
    pub group: String,
    pub title: String,
    #[serde(default)]
    pub checks: Vec<String>,
}

/// A framework's controls and the checks each maps to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
    pub source: String,
    pub controls: Vec<MappedControl>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("control {control}: unknown check {check:?} (known: {known})")]
    UnknownCheck {
        control: String,
        check: String,
        known: String,
    },
    #[error("unknown framework {0:?}: nist-ai-rmf or iso-42001, or a mapping file")]
    Unknown(String),
}

pub const NIST_AI_RMF: &str = include_str!("../../data/nist-ai-rmf-1.0.yaml");
pub const ISO_42001: &str = include_str!("../../data/iso-iec-42001-2023.yaml");

/// Reads a mapping file; every check it names must be one custos runs.
pub fn parse_framework(text: &str) -> Result<Framework, MappingError> {
    let f: Framework = serde_norway::from_str(text).map_err(|e| MappingError::Syntax {
        line: e.location().map_or(1, |l| l.line()),
        message: e.to_string(),
    })?;
    for c in &f.controls {
        for check in &c.checks {
            if !CHECKS.iter().any(|(id, _)| id == check) {
                return Err(MappingError::UnknownCheck {
                    control: c.id.clone(),
                    check: check.clone(),
                    known: CHECKS.iter().map(|c| c.0).collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    Ok(f)
}

/// A shipped framework by id.
pub fn framework(id: &str) -> Result<Framework, MappingError> {
    match id {
        "nist-ai-rmf" => parse_framework(NIST_AI_RMF),
        "iso-42001" => parse_framework(ISO_42001),
        other => Err(MappingError::Unknown(other.into())),
    }
}

/// A control's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlResult {
    pub framework: String,
    pub id: String,
    pub group: String,
    pub title: String,
    pub status: Status,
    /// Each mapped check and its outcome.
    pub checks: Vec<(String, Status)>,
}

/// A control fails when any of its checks fails, passes when every one passes, and is not
/// covered otherwise (no checks, or some without evidence): partial evidence is not a pass.
pub fn evaluate(f: &Framework, results: &BTreeMap<String, CheckResult>) -> Vec<ControlResult> {
    f.controls
        .iter()
        .map(|c| {
            let checks: Vec<(String, Status)> = c
                .checks
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        results.get(id).map_or(Status::NotCovered, |r| r.status),
                    )
                })
                .collect();
            let status = if checks.iter().any(|(_, s)| *s == Status::Fail) {
                Status::Fail
            } else if !checks.is_empty() && checks.iter().all(|(_, s)| *s == Status::Pass) {
                Status::Pass
            } else {
                Status::NotCovered
            };
            ControlResult {
                framework: f.id.clone(),
                id: c.id.clone(),
                group: c.group.clone(),
                title: c.title.clone(),
                status,
                checks,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mappings_parse_and_name_only_real_checks() {
        let nist = framework("nist-ai-rmf").unwrap();
        assert!(nist.controls.len() > 30);
        assert!(nist.controls.iter().any(|c| c.id == "MEASURE 2.10"));
        let iso = framework("iso-42001").unwrap();
        assert!(iso.controls.iter().any(|c| c.id == "A.6.2.8"));
        // every check is used by some control of each framework
        for (id, _) in CHECKS {
            assert!(
                nist.controls
                    .iter()
                    .any(|c| c.checks.iter().any(|x| x == id)),
                "{id} unmapped in NIST"
            );
            assert!(
                iso.controls
                    .iter()
                    .any(|c| c.checks.iter().any(|x| x == id)),
                "{id} unmapped in ISO"
            );
        }
        assert!(matches!(framework("soc2"), Err(MappingError::Unknown(_))));
    }

    #[test]
    fn a_mapping_naming_an_unknown_check_is_refused() {
        let e = parse_framework(
            "id: x\nname: X\nsource: s\ncontrols:\n  - {id: C1, group: G, title: T, checks: [nope]}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown check \"nope\""), "{e}");
    }

    #[test]
    fn a_control_passes_only_when_all_its_checks_pass() {
        let f = parse_framework(
            "id: x\nname: X\nsource: s\ncontrols:\n  - {id: A, group: G, title: T, checks: [key-rotation, pii-guard]}\n  - {id: B, group: G, title: T, checks: [key-rotation]}\n  - {id: C, group: G, title: T, checks: []}\n",
        )
        .unwrap();
        let mut r = BTreeMap::new();
        r.insert(
            "key-rotation".into(),
            CheckResult::new("key-rotation", Status::Pass, "ok"),
        );
        let v = evaluate(&f, &r);
        assert_eq!(
            v.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Status::NotCovered, Status::Pass, Status::NotCovered]
        );
        r.insert(
            "pii-guard".into(),
            CheckResult::new("pii-guard", Status::Fail, "off"),
        );
        assert_eq!(evaluate(&f, &r)[0].status, Status::Fail);
    }
}
