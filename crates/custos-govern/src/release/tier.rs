//! Risk tiers of a composite release: derived from what changes against the app's active
//! release (a model swap or a new PII flow is High, a prompt minor bump Medium, …), raised but
//! never lowered by the author; each tier's required approvals (by role) and evidence come
//! from a table with the seeds' defaults that configuration may replace.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::semver::{Bump, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Low,
    Medium,
    High,
    /// Its own path: fewer approvals now, a post-hoc ADR and audit bundle within 24 h.
    Emergency,
}

impl Tier {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Tier::Low),
            "medium" => Ok(Tier::Medium),
            "high" => Ok(Tier::High),
            "emergency" => Ok(Tier::Emergency),
            other => Err(format!(
                "unknown tier {other:?}: low, medium, high or emergency"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Emergency => "emergency",
        }
    }
}

/// One pinned component of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub name: String,
    /// A model's version, a prompt's SemVer, a dataset's tag.
    pub version: String,
    /// Hex SHA-256.
    pub digest: String,
    /// For datasets: whether its PII report found personal data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pii: bool,
}

/// What a release pins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composite {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<Pin>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt: Option<Pin>,
    #[serde(default)]
    pub data: Vec<Pin>,
}

impl Composite {
    /// `model@1.4.2 + prompt@2.3.0 + data@golden`.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.model {
            parts.push(format!("{}@{}", m.name, m.version));
        }
        if let Some(p) = &self.prompt {
            parts.push(format!("{}@{}", p.name, p.version));
        }
        parts.extend(
            self.data
                .iter()
                .map(|d| format!("{}@{}", d.name, d.version)),
        );
        parts.join(" + ")
    }
}

/// What the author declares beyond the components.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Personal data reaches a model or store it did not before.
    pub new_pii_flow: bool,
    /// A request/response or data schema changes.
    pub schema_change: bool,
}

/// The tier a change derives, with the reasons.
pub fn derive(
    previous: Option<&Composite>,
    next: &Composite,
    flags: &Flags,
) -> (Tier, Vec<String>) {
    let mut out: Vec<(Tier, String)> = Vec::new();
    let Some(prev) = previous else {
        return (
            Tier::High,
            vec!["the app's first release: everything is new".into()],
        );
    };
    if prev.model.as_ref().map(|m| (&m.name, &m.digest))
        != next.model.as_ref().map(|m| (&m.name, &m.digest))
    {
        out.push((
            Tier::High,
            format!(
                "model swap: {} → {}",
                prev.model
                    .as_ref()
                    .map_or("none".into(), |m| format!("{}@{}", m.name, m.version)),
                next.model
                    .as_ref()
                    .map_or("none".into(), |m| format!("{}@{}", m.name, m.version))
            ),
        ));
    }
    if flags.new_pii_flow {
        out.push((Tier::High, "a new flow of personal data (declared)".into()));
    }
    for d in next.data.iter().filter(|d| d.pii) {
        if !prev.data.iter().any(|p| p.name == d.name && p.pii) {
            out.push((
                Tier::High,
                format!(
                    "new PII flow: dataset {}@{} holds personal data",
                    d.name, d.version
                ),
            ));
        }
    }
    if flags.schema_change {
        out.push((Tier::High, "a schema change (declared)".into()));
    }
    match (&prev.prompt, &next.prompt) {
        (Some(a), Some(b)) if a.name == b.name && a.digest != b.digest => {
            let bump = Version::parse(&b.version)
                .ok()
                .zip(Version::parse(&a.version).ok())
                .and_then(|(n, o)| n.bump_from(&o));
            let (tier, kind) = match bump {
                Some(Bump::Major) => (Tier::High, "major"),
                Some(Bump::Minor) => (Tier::Medium, "minor"),
                Some(Bump::Patch) => (Tier::Low, "patch"),
                None => (Tier::High, "non-increasing"),
            };
            out.push((
                tier,
                format!(
                    "prompt {kind} bump: {} {} → {}",
                    b.name, a.version, b.version
                ),
            ));
        }
        (a, b)
            if a.as_ref().map(|p| (&p.name, &p.digest))
                != b.as_ref().map(|p| (&p.name, &p.digest)) =>
        {
            out.push((Tier::High, "a different prompt".into()));
        }
        _ => {}
    }
    let prev_data: BTreeMap<&str, &Pin> = prev.data.iter().map(|d| (d.name.as_str(), d)).collect();
    for d in &next.data {
        match prev_data.get(d.name.as_str()) {
            Some(p) if p.digest == d.digest => {}
            Some(p) => out.push((
                Tier::Medium,
                format!("dataset {} {} → {}", d.name, p.version, d.version),
            )),
            None => out.push((
                Tier::Medium,
                format!("new dataset {}@{}", d.name, d.version),
            )),
        }
    }
    if out.is_empty() {
        return (
            Tier::Low,
            vec!["no component changes (documentation or configuration)".into()],
        );
    }
    let tier = out.iter().map(|(t, _)| *t).max().unwrap_or(Tier::Low);
    (tier, out.into_iter().map(|(_, r)| r).collect())
}

/// The tier in force: the author may raise the derived one, never lower it; Emergency is
/// always the author's explicit choice.
pub fn effective(derived: Tier, requested: Option<Tier>) -> Result<Tier, String> {
    match requested {
        None => Ok(derived),
        Some(Tier::Emergency) => Ok(Tier::Emergency),
        Some(r) if r >= derived => Ok(r),
        Some(r) => Err(format!(
            "the change is {} (see the reasons); a tier may be raised, not lowered to {}",
            derived.as_str(),
            r.as_str()
        )),
    }
}

/// What a tier requires before promotion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Roles that must each approve (one approval per role, by someone other than the author).
    pub approvals: Vec<String>,
    /// Evidence kinds that must be attached (`adr`, `tests`, `eval`, …).
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// The seeds' defaults.
pub fn default_rules() -> BTreeMap<Tier, Rule> {
    let r = |a: &[&str], e: &[&str]| Rule {
        approvals: a.iter().map(|s| (*s).to_owned()).collect(),
        evidence: e.iter().map(|s| (*s).to_owned()).collect(),
    };
    BTreeMap::from([
        (Tier::Low, r(&["owner", "on-call"], &[])),
        (
            Tier::Medium,
            r(
                &["owner", "platform", "security"],
                &["adr", "tests", "eval", "slo"],
            ),
        ),
        (
            Tier::High,
            r(
                &["owner", "platform", "security", "cab"],
                &[
                    "adr",
                    "tests",
                    "eval",
                    "slo",
                    "risk-assessment",
                    "dry-run",
                    "rollback-plan",
                ],
            ),
        ),
        (Tier::Emergency, r(&["incident-commander", "security"], &[])),
    ])
}

/// What is still missing: roles not yet approved, evidence not attached.
pub fn missing(
    rule: &Rule,
    approved_roles: &BTreeSet<String>,
    evidence: &BTreeSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = rule
        .approvals
        .iter()
        .filter(|r| !approved_roles.contains(*r))
        .map(|r| format!("approval by {r}"))
        .collect();
    out.extend(
        rule.evidence
            .iter()
            .filter(|e| !evidence.contains(*e))
            .map(|e| format!("evidence: {e}")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pin(name: &str, v: &str, d: &str) -> Pin {
        Pin {
            name: name.into(),
            version: v.into(),
            digest: d.repeat(64 / d.len()),
            pii: false,
        }
    }

    fn base() -> Composite {
        Composite {
            model: Some(pin("llama", "1.4.2", "a")),
            prompt: Some(pin("support", "2.3.0", "b")),
            data: vec![pin("golden", "2025_09", "c")],
        }
    }

    #[test]
    fn tiers_follow_what_changes() {
        let prev = base();
        assert_eq!(derive(None, &prev, &Flags::default()).0, Tier::High);
        assert_eq!(derive(Some(&prev), &prev, &Flags::default()).0, Tier::Low);
        let mut n = prev.clone();
        n.prompt = Some(pin("support", "2.4.0", "d"));
        assert_eq!(derive(Some(&prev), &n, &Flags::default()).0, Tier::Medium);
        n.prompt = Some(pin("support", "2.3.1", "d"));
        assert_eq!(derive(Some(&prev), &n, &Flags::default()).0, Tier::Low);
        n.prompt = Some(pin("support", "3.0.0", "d"));
        assert_eq!(derive(Some(&prev), &n, &Flags::default()).0, Tier::High);
        let mut m = prev.clone();
        m.model = Some(pin("llama", "1.5.0", "e"));
        let (t, why) = derive(Some(&prev), &m, &Flags::default());
        assert_eq!(t, Tier::High);
        assert!(why[0].contains("model swap"));
        let mut p = prev.clone();
        p.data[0] = Pin {
            pii: true,
            ..pin("golden", "2025_10", "f")
        };
        assert_eq!(derive(Some(&prev), &p, &Flags::default()).0, Tier::High);
        assert_eq!(
            derive(
                Some(&prev),
                &prev,
                &Flags {
                    schema_change: true,
                    ..Flags::default()
                }
            )
            .0,
            Tier::High
        );
    }

    #[test]
    fn tiers_rise_but_never_fall() {
        assert_eq!(effective(Tier::Medium, Some(Tier::High)), Ok(Tier::High));
        assert!(effective(Tier::High, Some(Tier::Low))
            .unwrap_err()
            .contains("not lowered"));
        assert_eq!(
            effective(Tier::High, Some(Tier::Emergency)),
            Ok(Tier::Emergency)
        );
        let rules = default_rules();
        let approved: BTreeSet<String> = ["owner".to_string(), "platform".to_string()].into();
        let ev: BTreeSet<String> = ["adr".to_string()].into();
        let m = missing(&rules[&Tier::Medium], &approved, &ev);
        assert_eq!(
            m,
            [
                "approval by security",
                "evidence: tests",
                "evidence: eval",
                "evidence: slo"
            ]
        );
    }

    proptest! {
        #[test]
        fn the_derived_tier_is_the_highest_reason(model in any::<bool>(), minor in any::<bool>(), pii in any::<bool>(), schema in any::<bool>()) {
            let prev = base();
            let mut n = prev.clone();
            if model { n.model = Some(pin("llama", "2.0.0", "9")); }
            if minor { n.prompt = Some(pin("support", "2.4.0", "8")); }
            let (t, why) = derive(Some(&prev), &n, &Flags { new_pii_flow: pii, schema_change: schema });
            let expect = if model || pii || schema { Tier::High } else if minor { Tier::Medium } else { Tier::Low };
            prop_assert_eq!(t, expect);
            prop_assert!(!why.is_empty());
            for requested in [Tier::Low, Tier::Medium, Tier::High] {
                prop_assert_eq!(effective(t, Some(requested)).is_ok(), requested >= t);
            }
        }
    }
}
