//! OSV records: which package versions they affect (`ECOSYSTEM` and `SEMVER` ranges with
//! introduced / fixed / last_affected / limit events, and explicit `versions` lists), and how
//! severe they are (CVSS score computed from the vector; else the database's own rating;
//! else unknown).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;

use super::cvss;
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
            "low" | "negligible" => Band::Low,
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

/// The record's severity for one package: the highest base score among its CVSS v3.x and
/// v4.0 vectors (v2 only when it has neither: a gate should err towards failing, and v2
/// scores are not comparable with later ones), else the database's rating (record, then
/// affected entry, then an `Ubuntu` priority), else unknown.
pub fn severity(r: &Record, affected: &[&Affected]) -> (Band, Option<f64>, Option<String>) {
    let vectors = || {
        r.severity
            .iter()
            .chain(affected.iter().flat_map(|a| a.severity.iter()))
    };
    let mut best: Option<(bool, f64, String)> = None;
    for s in vectors().filter(|s| s.kind.starts_with("CVSS_V")) {
        if let Ok((version, score)) = cvss::score(&s.score) {
            let modern = version >= cvss::Version::V3_0;
            let better = best
                .as_ref()
                .is_none_or(|(m, b, _)| (modern, score) > (*m, *b));
            if better {
                best = Some((modern, score, s.score.clone()));
            }
        }
    }
    if let Some((_, score, vector)) = best {
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
        .or_else(|| {
            vectors()
                .filter(|s| s.kind == "Ubuntu")
                .filter_map(|s| Band::parse(&s.score))
                .max()
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
    fn severity_falls_back_to_the_database_rating() {
        let r = record(r#"{"id":"G","database_specific":{"severity":"MODERATE"},"affected":[]}"#);
        assert_eq!(severity(&r, &[]).0, Band::Medium);
        let r = record(r#"{"id":"R","affected":[]}"#);
        assert_eq!(severity(&r, &[]).0, Band::Unknown);
        let r = record(
            r#"{"id":"UBUNTU-CVE-1","severity":[{"type":"Ubuntu","score":"negligible"}],"affected":[]}"#,
        );
        assert_eq!(severity(&r, &[]).0, Band::Low);
    }

    #[test]
    fn severity_takes_the_highest_modern_score_and_v2_only_alone() {
        let v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        let v3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N";
        let v2 = "AV:N/AC:L/Au:N/C:C/I:C/A:C";
        let sev = |list: &[(&str, &str)]| {
            let items: Vec<String> = list
                .iter()
                .map(|(t, v)| format!(r#"{{"type":"{t}","score":"{v}"}}"#))
                .collect();
            let r = record(&format!(
                r#"{{"id":"X","severity":[{}],"database_specific":{{"severity":"LOW"}},"affected":[]}}"#,
                items.join(",")
            ));
            severity(&r, &[])
        };
        assert_eq!(
            sev(&[("CVSS_V3", v3), ("CVSS_V4", v4)]),
            (Band::Critical, Some(9.3), Some(v4.to_string()))
        );
        assert_eq!(
            sev(&[("CVSS_V2", v2), ("CVSS_V3", v3)]),
            (Band::Medium, Some(6.1), Some(v3.to_string())),
            "v2 does not outrank v3"
        );
        assert_eq!(sev(&[("CVSS_V2", v2)]).1, Some(10.0));
        assert_eq!(
            sev(&[("CVSS_V4", "CVSS:4.0/AV:N")]),
            (Band::Low, None, None),
            "an unscorable vector falls back to the rating"
        );
    }
}
