//! Vulnerability matching against OSV advisories, offline: ecosystem version ordering,
//! OSV range evaluation, CVSS scoring, and an on-disk index keyed by ecosystem and package.
//! `scan` joins components (from lockfiles or an SBOM) with the index and merges records
//! that are aliases of one another into one finding.

pub mod cvss;
pub mod db;
pub mod osv;
pub mod version;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::sbom::Component;
use db::{DbError, VulnDb};
use osv::{ecosystem_for, severity, Band};

/// One vulnerability in one package version.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The primary id (the first record seen), and every other id and alias.
    pub id: String,
    pub aliases: Vec<String>,
    pub ecosystem: String,
    pub package: String,
    pub version: String,
    pub purl: String,
    pub fixed: Vec<String>,
    pub severity: Band,
    pub score: Option<f64>,
    pub vector: Option<String>,
    pub summary: String,
    pub source: String,
    pub direct: Option<bool>,
    /// Set when an exception in force suppresses it (the finding is still listed).
    pub suppressed_by: Option<String>,
    /// Set when an exception for it has expired (it no longer suppresses).
    pub expired_exception: Option<String>,
    /// RustSec's informational kinds (`unmaintained`, `unsound`, `notice`): a warning about
    /// the package rather than a vulnerability; it fails a scan only when asked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub informational: Option<String>,
    /// In an image: the layer that installed the package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::image::Layer>,
}

/// Ecosystems of `components` the database holds no advisories for, with how many packages
/// of each: a scan finds nothing there because it has nothing to look with, which must not
/// read as "no known vulnerabilities".
pub fn uncovered(db: &VulnDb, components: &[Component]) -> Result<Vec<(String, usize)>, DbError> {
    let known: BTreeSet<String> = db
        .status()?
        .by_ecosystem
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(e, _)| e)
        .collect();
    let mut counts: std::collections::BTreeMap<&'static str, BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for c in components.iter().filter(|c| !c.is_root) {
        if let Some(eco) = ecosystem_for(&c.ecosystem) {
            if !known.contains(eco) {
                counts.entry(eco).or_default().insert(&c.purl);
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|(e, purls)| (e.to_owned(), purls.len()))
        .collect())
}

/// Joins `components` with the advisory index.
pub fn scan(db: &VulnDb, components: &[Component]) -> Result<Vec<Finding>, DbError> {
    let mut out: Vec<Finding> = Vec::new();
    let mut seen = BTreeSet::new();
    for c in components {
        // Without a version nothing can be judged (an empty version would sort below
        // every range and look affected by all of them).
        if c.is_root || c.version.is_empty() || !seen.insert(c.purl.clone()) {
            continue;
        }
        let Some(eco) = ecosystem_for(&c.ecosystem) else {
            continue;
        };
        let name = c.advisory_name.as_deref().unwrap_or(&c.name);
        // The index is keyed by base ecosystem; the release, when known, narrows matching.
        let eco_full = c.advisory_ecosystem.as_deref().unwrap_or(eco);
        for r in db.lookup(eco, name)? {
            let hits = r.affects(eco_full, name, &c.version);
            if hits.is_empty() {
                continue;
            }
            let (band, score, vector) = severity(&r, &hits);
            // RustSec writes `informational` in the affected entry's database_specific;
            // other feeds that mark it do so at the top level.
            let marked = |d: &Option<serde_json::Value>| {
                d.as_ref()
                    .and_then(|d| d.get("informational"))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            };
            let informational = hits
                .iter()
                .find_map(|a| marked(&a.database_specific))
                .or_else(|| marked(&r.database_specific));
            let mut ids: BTreeSet<String> = r.aliases.iter().cloned().collect();
            ids.insert(r.id.clone());
            // A record that shares an id or alias with one already found for this
            // package is the same vulnerability: merge (RUSTSEC + GHSA + CVE).
            if let Some(f) = out.iter_mut().find(|f| {
                f.purl == c.purl
                    && (ids.contains(&f.id) || f.aliases.iter().any(|a| ids.contains(a)))
            }) {
                let mut all: BTreeSet<String> = f.aliases.drain(..).collect();
                all.extend(ids);
                all.remove(&f.id);
                f.aliases = all.into_iter().collect();
                let better = match (score, f.score) {
                    (Some(a), Some(b)) => a > b,
                    (Some(_), None) => true,
                    (None, None) => f.severity == Band::Unknown && band != Band::Unknown,
                    _ => false,
                };
                if better {
                    (f.severity, f.score, f.vector) = (band, score, vector);
                }
                // One vulnerability among the aliases makes the finding a vulnerability.
                if informational.is_none() {
                    f.informational = None;
                }
                let mut fixed: BTreeSet<String> = f.fixed.drain(..).collect();
                fixed.extend(r.fixed_versions(&hits));
                f.fixed = fixed.into_iter().collect();
                continue;
            }
            ids.remove(&r.id);
            out.push(Finding {
                id: r.id.clone(),
                aliases: ids.into_iter().collect(),
                ecosystem: eco.to_string(),
                package: c.name.clone(),
                version: c.version.clone(),
                purl: c.purl.clone(),
                fixed: r.fixed_versions(&hits),
                severity: band,
                score,
                vector,
                summary: r
                    .summary
                    .clone()
                    .or_else(|| {
                        r.details
                            .as_ref()
                            .map(|d| d.lines().next().unwrap_or("").to_string())
                    })
                    .unwrap_or_default(),
                source: c.source.clone(),
                direct: c.direct,
                layer: c.layer.clone(),
                suppressed_by: None,
                expired_exception: None,
                informational,
            });
        }
    }
    // The lead id is chosen by rule, not by lookup order: the ecosystem's own
    // database first (RUSTSEC, PYSEC, GO…), then GHSA, then CVE.
    let rank = |id: &str| match id.split('-').next().unwrap_or("") {
        "GHSA" => 1,
        "CVE" => 2,
        _ => 0,
    };
    for f in &mut out {
        let mut all: Vec<String> = f.aliases.drain(..).collect();
        all.push(f.id.clone());
        all.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
        all.dedup();
        f.id = all.remove(0);
        all.sort();
        f.aliases = all;
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.purl.cmp(&b.purl))
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

/// `.custos/vuln-exceptions.toml`: accepted risks, each with an owner and an expiry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exceptions {
    #[serde(default, rename = "exception")]
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// An advisory id or any of its aliases.
    pub id: String,
    /// Package name; absent: every package.
    #[serde(default)]
    pub package: Option<String>,
    /// For IaC rules: the resource (`aws_s3_bucket.logs`, `Deployment/web`); absent: every
    /// resource. A trailing `*` matches any resource that starts with the rest.
    #[serde(default)]
    pub resource: Option<String>,
    pub reason: String,
    pub owner: String,
    /// `YYYY-MM-DD`; the exception no longer applies after this day.
    pub expires: String,
}

impl Exceptions {
    /// Parses and checks the file: every entry needs a reason, an owner and a valid date.
    pub fn parse(text: &str) -> Result<Exceptions, String> {
        let e: Exceptions = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, x) in e.exceptions.iter().enumerate() {
            let ok_date = x.expires.len() == 10
                && x.expires.as_bytes()[4] == b'-'
                && x.expires.as_bytes()[7] == b'-'
                && x.expires
                    .bytes()
                    .enumerate()
                    .all(|(k, b)| k == 4 || k == 7 || b.is_ascii_digit());
            if !ok_date {
                return Err(format!(
                    "exception[{i}] ({}): expires {:?} is not a YYYY-MM-DD date",
                    x.id, x.expires
                ));
            }
            if x.reason.trim().is_empty() || x.owner.trim().is_empty() {
                return Err(format!(
                    "exception[{i}] ({}): a reason and an owner are required",
                    x.id
                ));
            }
        }
        Ok(e)
    }

    /// The exception for rule `id` on `resource`, if any: `Ok` when in force on `today`
    /// (`YYYY-MM-DD`), `Err` when it has expired; as a label naming owner, date and reason.
    pub fn for_resource(
        &self,
        id: &str,
        resource: &str,
        today: &str,
    ) -> Option<Result<String, String>> {
        let x = self.exceptions.iter().find(|x| {
            x.id == id
                && x.resource
                    .as_deref()
                    .is_none_or(|r| match r.strip_suffix('*') {
                        Some(prefix) => resource.starts_with(prefix),
                        None => r == resource,
                    })
        })?;
        let label = format!(
            "{} (owner {}, expires {}: {})",
            x.id, x.owner, x.expires, x.reason
        );
        Some(if x.expires.as_str() >= today {
            Ok(label)
        } else {
            Err(label)
        })
    }

    /// Marks findings suppressed by exceptions in force on `today` (`YYYY-MM-DD`),
    /// and notes expired ones.
    pub fn apply(&self, findings: &mut [Finding], today: &str) {
        for f in findings {
            for x in &self.exceptions {
                let id_hit = f.id == x.id || f.aliases.contains(&x.id);
                let pkg_hit = x.package.as_deref().is_none_or(|p| p == f.package);
                if !(id_hit && pkg_hit) {
                    continue;
                }
                let label = format!(
                    "{} (owner {}, expires {}: {})",
                    x.id, x.owner, x.expires, x.reason
                );
                if x.expires.as_str() >= today {
                    f.suppressed_by = Some(label);
                } else {
                    f.expired_exception = Some(label);
                }
            }
        }
    }
}

/// SARIF 2.1.0 for code scanning: one rule per advisory, results located at the lockfile
/// that brought the package in. Suppressed findings carry a SARIF suppression.
pub fn sarif(findings: &[Finding]) -> serde_json::Value {
    use serde_json::json;
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let mut index = std::collections::BTreeMap::new();
    let level = |f: &Finding| match f.severity {
        _ if f.informational.is_some() => "note",
        Band::Critical | Band::High | Band::Unknown => "error",
        Band::Medium => "warning",
        _ => "note",
    };
    for f in findings {
        if index.contains_key(&f.id) {
            continue;
        }
        index.insert(f.id.clone(), rules.len());
        let score = f.score.map_or_else(
            || match f.severity {
                Band::Critical => "9.5".to_string(),
                Band::High => "8.0".to_string(),
                Band::Medium => "5.5".to_string(),
                Band::Low => "2.0".to_string(),
                _ => "0.0".to_string(),
            },
            |s| format!("{s:.1}"),
        );
        rules.push(json!({
            "id": f.id,
            "name": f.id,
            "shortDescription": {"text": if f.summary.is_empty() { f.id.clone() } else { f.summary.clone() }},
            "helpUri": format!("https://osv.dev/vulnerability/{}", f.id),
            "defaultConfiguration": {"level": level(f)},
            "properties": {"tags": ["security", "vulnerability", "dependency"], "security-severity": score, "aliases": f.aliases},
        }));
    }
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let fix = if f.fixed.is_empty() { "no fixed version is known".to_string() } else { format!("fixed in {}", f.fixed.join(", ")) };
            let mut r = json!({
                "ruleId": f.id,
                "ruleIndex": index[&f.id],
                "level": level(f),
                "message": {"text": match &f.informational {
                    Some(kind) => format!("{} {}: {} ({kind}, informational); {fix}", f.package, f.version, f.id),
                    None => format!("{} {} is affected by {} ({}); {fix}", f.package, f.version, f.id, f.severity.as_str()),
                }},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": crate::report::artifact_uri(&f.source), "uriBaseId": "%SRCROOT%"}}}],
                "partialFingerprints": {"custosVuln/v1": format!("{}|{}", f.id, f.purl)},
            });
            if let Some(why) = &f.suppressed_by {
                r["suppressions"] = json!([{"kind": "external", "justification": why}]);
            }
            r
        })
        .collect();
    crate::report::sarif_document(rules, results)
}

/// A CycloneDX 1.6 VEX document: each finding as a vulnerability with its rating, the
/// affected component's purl, and, for accepted risks, the analysis that says so.
pub fn cyclonedx_vex(findings: &[Finding], created: &str, uuid: &str) -> serde_json::Value {
    use serde_json::json;
    let vulns: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let source = match f.id.split('-').next().unwrap_or("") {
                "GHSA" => ("GitHub Advisories", format!("https://github.com/advisories/{}", f.id)),
                "CVE" => ("NVD", format!("https://nvd.nist.gov/vuln/detail/{}", f.id)),
                _ => ("OSV", format!("https://osv.dev/vulnerability/{}", f.id)),
            };
            let mut rating = json!({"severity": match f.severity { Band::Unknown => "unknown", b => b.as_str() }});
            if let (Some(score), Some(vector)) = (f.score, &f.vector) {
                rating["score"] = json!(score);
                rating["vector"] = json!(vector);
                rating["method"] = json!(match vector.get(..8) {
                    Some("CVSS:4.0") => "CVSSv4",
                    Some("CVSS:3.1") => "CVSSv31",
                    Some("CVSS:3.0") => "CVSSv3",
                    _ => "CVSSv2",
                });
            }
            let mut v = json!({
                "bom-ref": format!("{}@{}", f.id, f.purl),
                "id": f.id,
                "source": {"name": source.0, "url": source.1},
                "references": f.aliases.iter().map(|a| json!({"id": a, "source": {"name": "alias"}})).collect::<Vec<_>>(),
                "ratings": [rating],
                "description": f.summary,
                "affects": [{"ref": f.purl}],
            });
            if !f.fixed.is_empty() {
                v["recommendation"] = json!(format!("Upgrade {} to {}", f.package, f.fixed.join(" or ")));
            }
            v["analysis"] = match &f.suppressed_by {
                Some(why) => json!({"state": "exploitable", "response": ["will_not_fix"], "detail": format!("accepted risk: {why}")}),
                None => json!({"state": "in_triage"}),
            };
            v
        })
        .collect();
    let mut components: Vec<serde_json::Value> = Vec::new();
    let mut seen = BTreeSet::new();
    for f in findings {
        if seen.insert(f.purl.clone()) {
            components.push(json!({"type": "library", "bom-ref": f.purl, "name": f.package, "version": f.version, "purl": f.purl}));
        }
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{uuid}"),
        "version": 1,
        "metadata": {"timestamp": created, "tools": {"components": [{"type": "application", "name": "custos", "version": env!("CARGO_PKG_VERSION")}]}},
        "components": components,
        "vulnerabilities": vulns,
    })
}
