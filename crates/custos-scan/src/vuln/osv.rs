//! OSV records: which package versions they affect (`ECOSYSTEM` and `SEMVER` ranges with
//! introduced / fixed / last_affected / limit events, and explicit `versions` lists), and how
//! severe they are (CVSS v3.x base score computed from the vector; else the database's own
//! rating; else unknown).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;

use super::version::Scheme;

#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub severity: Vec<Severity>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub database_specific: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Severity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub package: Option<Package>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub severity: Vec<Severity>,
    #[serde(default)]
    pub ecosystem_specific: Option<Value>,
    #[serde(default)]
    pub database_specific: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub ecosystem: String,
    pub name: String,
    #[serde(default)]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub introduced: Option<String>,
    #[serde(default)]
    pub fixed: Option<String>,
    #[serde(default)]
    pub last_affected: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

/// The OSV ecosystem name for a purl type.
pub fn ecosystem_for(purl_type: &str) -> Option<&'static str> {
    Some(match purl_type {
        "cargo" => "crates.io",
        "npm" => "npm",
        "pypi" => "PyPI",
        "golang" => "Go",
        "maven" => "Maven",
        "deb" => "Debian",
        "apk" => "Alpine",
        "gem" => "RubyGems",
        "nuget" => "NuGet",
        "composer" => "Packagist",
        _ => return None,
    })
}

/// Package names as the index keys them: PyPI's normalized, others as written.
pub fn index_name(ecosystem: &str, name: &str) -> String {
    if ecosystem.split(':').next() == Some("PyPI") {
        crate::sbom::pypi_name(name)
    } else {
        name.to_string()
    }
}

/// Why an affected entry matches a version.
fn in_ranges(scheme: Scheme, ranges: &[Range], version: &str) -> bool {
    let lt = |a: &str, b: &str| scheme.compare(a, b) == Ordering::Less;
    for r in ranges {
        if r.kind != "ECOSYSTEM" && r.kind != "SEMVER" {
            continue;
        }
        // OSV: sort events by version ("0" lowest), then walk, toggling "affected".
        let mut events: Vec<(&str, u8)> = Vec::new();
        for e in &r.events {
            if let Some(v) = &e.introduced {
                events.push((v, 0));
            }
            if let Some(v) = &e.fixed {
                events.push((v, 1));
            }
            if let Some(v) = &e.last_affected {
                events.push((v, 2));
            }
            if let Some(v) = &e.limit {
                events.push((v, 3));
            }
        }
        events.sort_by(|a, b| match (a.0, b.0) {
            ("0", "0") => a.1.cmp(&b.1),
            ("0", _) => Ordering::Less,
            (_, "0") => Ordering::Greater,
            (x, y) => scheme.compare(x, y).then(a.1.cmp(&b.1)),
        });
        let mut affected = false;
        for (v, kind) in events {
            let before = v == "0" || !lt(version, v);
            match kind {
                0 if before => affected = true,
                1 | 3 if before => affected = false,
                2 if before && lt(v, version) => affected = false,
                _ => {}
            }
        }
        if affected {
            return true;
        }
    }
    false
}

impl Record {
    /// The affected entries that name this package and include this version.
    pub fn affects(&self, ecosystem: &str, name: &str, version: &str) -> Vec<&Affected> {
        let want = index_name(ecosystem, name);
        self.affected
            .iter()
            .filter(|a| {
                let Some(p) = &a.package else { return false };
                let eco_base = p.ecosystem.split(':').next().unwrap_or("");
                // "Debian:11" and "Debian:12" are different package sets: when both sides
                // name a release they must agree.
                let release_clash = p.ecosystem.contains(':')
                    && ecosystem.contains(':')
                    && p.ecosystem != ecosystem;
                if eco_base != ecosystem.split(':').next().unwrap_or("")
                    || release_clash
                    || index_name(&p.ecosystem, &p.name) != want
                {
                    return false;
                }
                let scheme = Scheme::for_ecosystem(&p.ecosystem);
                a.versions
                    .iter()
                    .any(|v| scheme.compare(v, version) == Ordering::Equal)
                    || in_ranges(scheme, &a.ranges, version)
            })
            .collect()
    }

    /// Versions that fix this record for the package (from `fixed` events).
    pub fn fixed_versions(&self, affected: &[&Affected]) -> Vec<String> {
        let mut out: Vec<String> = affected
            .iter()
            .flat_map(|a| {
                a.ranges
                    .iter()
                    .flat_map(|r| r.events.iter().filter_map(|e| e.fixed.clone()))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A severity band, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    None,
    Low,
    Medium,
    High,
    Critical,
    /// No score and no rating anywhere in the record.
    Unknown,
}

impl Band {
    pub fn from_score(s: f64) -> Band {
        match s {
            s if s >= 9.0 => Band::Critical,
            s if s >= 7.0 => Band::High,
            s if s >= 4.0 => Band::Medium,
            s if s > 0.0 => Band::Low,
            _ => Band::None,
        }
    }

    pub fn parse(s: &str) -> Option<Band> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Band::Critical,
            "high" | "important" => Band::High,
            "medium" | "moderate" => Band::Medium,
            "low" => Band::Low,
            "none" => Band::None,
            "unknown" => Band::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::None => "none",
            Band::Low => "low",
            Band::Medium => "medium",
            Band::High => "high",
            Band::Critical => "critical",
            Band::Unknown => "unknown",
        }
    }
}

/// CVSS v3.0/v3.1 base score from a vector (`CVSS:3.1/AV:N/AC:L/...`).
pub fn cvss3_base(vector: &str) -> Option<f64> {
    let mut m = std::collections::HashMap::new();
    let mut parts = vector.split('/');
    let head = parts.next()?;
    if !head.starts_with("CVSS:3") {
        return None;
    }
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let get = |k: &str| m.get(k).copied();
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let changed = match get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let pr = match (get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        Some(match get(k)? {
            "H" => 0.56,
            "L" => 0.22,
            "N" => 0.0,
            _ => return None,
        })
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Some(roundup(raw))
}

/// CVSS v3.1's Roundup: the smallest one-decimal number ≥ x, robust to float error.
fn roundup(x: f64) -> f64 {
    let int = (x * 100_000.0).round() as i64;
    if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) as f64 + 1.0) / 10.0
    }
}

/// The record's severity for one package: the highest computable CVSS v3 base score, else
/// the database's rating (record, then affected entry), else unknown.
pub fn severity(r: &Record, affected: &[&Affected]) -> (Band, Option<f64>, Option<String>) {
    let vectors = r
        .severity
        .iter()
        .chain(affected.iter().flat_map(|a| a.severity.iter()));
    let mut best: Option<(f64, String)> = None;
    for s in vectors {
        if s.kind.starts_with("CVSS_V3") {
            if let Some(score) = cvss3_base(&s.score) {
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, s.score.clone()));
                }
            }
        }
    }
    if let Some((score, vector)) = best {
        return (Band::from_score(score), Some(score), Some(vector));
    }
    let rating = |v: &Option<Value>| {
        v.as_ref()
            .and_then(|d| d.get("severity"))
            .and_then(Value::as_str)
            .and_then(Band::parse)
    };
    let band = rating(&r.database_specific)
        .or_else(|| {
            affected.iter().find_map(|a| {
                rating(&a.database_specific).or_else(|| rating(&a.ecosystem_specific))
            })
        })
        .unwrap_or(Band::Unknown);
    (band, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn ranges_and_versions() {
        let r = record(
            r#"{"id":"X-1","affected":[{"package":{"ecosystem":"PyPI","name":"Django"},
            "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.2.19"},{"introduced":"4.0"},{"fixed":"4.1.9"}]}],
            "versions":["5.0a1"]}]}"#,
        );
        let hit = |v: &str| !r.affects("PyPI", "django", v).is_empty();
        assert!(
            hit("3.2.18")
                && !hit("3.2.19")
                && !hit("3.3")
                && hit("4.1.8")
                && !hit("4.1.9")
                && hit("5.0a1")
        );
        assert!(hit("1.0") && !hit("4.0rc1"));
        let r = record(
            r#"{"id":"X-2","affected":[{"package":{"ecosystem":"crates.io","name":"foo"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.0.0"},{"last_affected":"1.2.3"}]}]}]}"#,
        );
        let hit = |v: &str| !r.affects("crates.io", "foo", v).is_empty();
        assert!(!hit("0.9.9") && hit("1.0.0") && hit("1.2.3") && !hit("1.2.4"));
        assert!(
            r.affects("npm", "foo", "1.1.0").is_empty(),
            "other ecosystem"
        );
        let r = record(
            r#"{"id":"DSA-1","affected":[{"package":{"ecosystem":"Debian:11","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.1w-0+deb11u1"}]}]}]}"#,
        );
        assert!(!r
            .affects("Debian:11", "openssl", "1.1.1n-0+deb11u5")
            .is_empty());
        assert!(
            r.affects("Debian:12", "openssl", "1.1.1n-0+deb11u5")
                .is_empty(),
            "another release"
        );
        assert!(
            !r.affects("Debian", "openssl", "1.1.1n-0+deb11u5")
                .is_empty(),
            "release unknown: match on base"
        );
    }

    #[test]
    fn cvss3_scores_match_the_spec_calculator() {
        assert_eq!(
            cvss3_base("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            cvss3_base("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(6.1)
        );
        assert_eq!(
            cvss3_base("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"),
            Some(5.5)
        );
        assert_eq!(
            cvss3_base("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N"),
            Some(0.0)
        );
        assert_eq!(
            cvss3_base("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H"),
            Some(9.9)
        );
        assert_eq!(cvss3_base("CVSS:3.1/AV:X"), None);
        assert_eq!(cvss3_base("garbage"), None);
        assert_eq!(Band::from_score(7.0), Band::High);
    }

    #[test]
    fn severity_falls_back_to_the_database_rating() {
        let r = record(r#"{"id":"G","database_specific":{"severity":"MODERATE"},"affected":[]}"#);
        assert_eq!(severity(&r, &[]).0, Band::Medium);
        let r = record(r#"{"id":"R","affected":[]}"#);
        assert_eq!(severity(&r, &[]).0, Band::Unknown);
    }
}
