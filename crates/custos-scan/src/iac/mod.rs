//! Infrastructure-as-code checks: Terraform plans, CloudFormation templates, Kubernetes
//! manifests (and Helm output) and Dockerfiles read into resources (`parse`), judged by rules
//! written as data (`rules`, shipped in `rules.toml`), reported as findings with the file,
//! line, rationale and remediation, as JSON or SARIF.

pub mod parse;
pub mod rules;

use parse::Target;
use rules::{Rule, Severity};
use serde::Serialize;
use std::path::Path;

/// One rule a resource fails.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub title: String,
    pub severity: Severity,
    /// The file, relative to the scanned root.
    pub file: String,
    /// 1-based; 0 when the format has no lines.
    pub line: usize,
    pub format: &'static str,
    pub kind: String,
    pub resource: String,
    pub rationale: String,
    pub remediation: String,
    /// An exception in force that accepts it (the finding is still listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
    /// An exception for it that has expired (it no longer suppresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_exception: Option<String>,
}

/// What a scan read and found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Files read, by format.
    pub files: std::collections::BTreeMap<&'static str, usize>,
    pub resources: usize,
    /// Files of a format custos reads that could not be parsed, with why.
    pub errors: Vec<String>,
    /// The Terraform plans read (for checks that read a plan whole, such as cost tags).
    #[serde(skip)]
    pub plans: Vec<std::path::PathBuf>,
}

/// Judges the resources of one file.
pub fn check(
    rules: &[Rule],
    file: &str,
    format: parse::Format,
    targets: &[Target],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in targets {
        for r in rules
            .iter()
            .filter(|r| r.kinds.iter().any(|k| k == &t.kind))
        {
            if r.only_if.as_ref().is_some_and(|c| !c.eval(&t.doc)) {
                continue;
            }
            if r.pass.eval(&t.doc) {
                continue;
            }
            out.push(Finding {
                rule_id: r.id.clone(),
                title: r.title.clone(),
                severity: r.severity,
                file: file.to_owned(),
                line: t.line,
                format: format.as_str(),
                kind: t.kind.clone(),
                resource: t.name.clone(),
                rationale: r.rationale.clone(),
                remediation: r.remediation.clone(),
                suppressed_by: None,
                expired_exception: None,
            });
        }
    }
    out
}

/// The most bytes of one file read.
const MAX_FILE: u64 = 32 << 20;

/// Scans a file or a tree (honouring `.gitignore` and `filter`'s excludes).
pub fn scan(root: &Path, rules: &[Rule], filter: &crate::sbom::Filter) -> Report {
    let mut report = Report::default();
    let files: Vec<std::path::PathBuf> = if root.is_file() {
        vec![root.to_path_buf()]
    } else {
        let mut walk = ignore::WalkBuilder::new(root);
        if let Some(o) = filter.overrides() {
            walk.overrides(o.clone());
        }
        let mut files: Vec<_> = walk
            .hidden(false)
            .filter_entry(|e| {
                !matches!(
                    e.file_name().to_str(),
                    Some(".git" | ".terraform" | "node_modules")
                )
            })
            .build()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
            .map(|e| e.into_path())
            .collect();
        files.sort();
        files
    };
    for path in files {
        let rel = path
            .strip_prefix(root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let lower = name.to_ascii_lowercase();
        let candidate = parse::is_dockerfile(name)
            || [".json", ".yaml", ".yml", ".template"]
                .iter()
                .any(|e| lower.ends_with(e));
        if !candidate {
            continue;
        }
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE => {
                report
                    .errors
                    .push(format!("{rel}: larger than 32 MiB; skipped"));
                continue;
            }
            _ => match std::fs::read(&path) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => {
                    report.errors.push(format!("{rel}: cannot read: {e}"));
                    continue;
                }
            },
        };
        match parse::parse(&rel, &text) {
            None => {}
            Some(Err(e)) => report.errors.push(format!("{rel}: {e}")),
            Some(Ok((format, targets))) => {
                *report.files.entry(format.as_str()).or_default() += 1;
                if format == parse::Format::TerraformPlan {
                    report.plans.push(path.clone());
                }
                report.resources += targets.len();
                report.findings.extend(check(rules, &rel, format, &targets));
            }
        }
    }
    report.findings.sort_by(|a, b| {
        (b.severity, &a.file, a.line, &a.rule_id).cmp(&(a.severity, &b.file, b.line, &b.rule_id))
    });
    report
}

/// SARIF 2.1.0: one rule per rule id with its rationale and remediation, one result per
/// finding; accepted findings carry a suppression.
pub fn sarif(findings: &[Finding], tool_version: &str) -> serde_json::Value {
    use serde_json::json;
    let mut rules = Vec::new();
    let mut index = std::collections::BTreeMap::new();
    let level = |s: Severity| match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    };
    let score = |s: Severity| match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
    };
    for f in findings {
        if index.contains_key(&f.rule_id) {
            continue;
        }
        index.insert(f.rule_id.clone(), rules.len());
        rules.push(json!({
            "id": f.rule_id,
            "name": f.rule_id,
            "shortDescription": {"text": f.title},
            "fullDescription": {"text": f.rationale},
            "help": {"text": f.remediation},
            "defaultConfiguration": {"level": level(f.severity)},
            "properties": {"security-severity": score(f.severity), "tags": ["security", "iac"]},
        }));
    }
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut physical = json!({"artifactLocation": {"uri": crate::report::artifact_uri(&f.file), "uriBaseId": "%SRCROOT%"}});
            if f.line > 0 {
                physical["region"] = json!({"startLine": f.line});
            }
            let mut r = json!({
                "ruleId": f.rule_id,
                "ruleIndex": index.get(&f.rule_id),
                "level": level(f.severity),
                "message": {"text": format!("{}: {}", f.resource, f.title)},
                "locations": [{"physicalLocation": physical,
                    "logicalLocations": [{"name": f.resource, "kind": "resource"}]}],
                "partialFingerprints": {"custosIac/v1": format!("{}:{}:{}", f.rule_id, f.file, f.resource)},
            });
            if let Some(by) = &f.suppressed_by {
                r["suppressions"] = json!([{"kind": "external", "justification": by}]);
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "custos", "informationUri": "https://custos.dev",
                                 "version": tool_version, "rules": rules}},
            "results": results,
        }],
    })
}
