//! `custos iac`: infrastructure-as-code checks (encryption at rest, TLS 1.2+, network
//! exposure, public storage, container hardening, mandatory cost tags) over Terraform plans,
//! CloudFormation, Kubernetes manifests and Dockerfiles. Exit 0 clean, 1 with a finding at or
//! above `--fail-on` (or an expired exception), 2 on usage or input errors.

use crate::output;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use custos_scan::iac::{self, rules::Severity, Finding};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FailOn {
    Low,
    Medium,
    High,
    Critical,
    /// Never fail (report only).
    None,
}

impl FailOn {
    fn severity(self) -> Option<Severity> {
        match self {
            FailOn::Low => Some(Severity::Low),
            FailOn::Medium => Some(Severity::Medium),
            FailOn::High => Some(Severity::High),
            FailOn::Critical => Some(Severity::Critical),
            FailOn::None => None,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum IacCmd {
    /// Check Terraform plans, CloudFormation, Kubernetes manifests and Dockerfiles.
    #[command(after_help = "Reads, under PATH (honouring .gitignore) or PATH itself:
  Terraform plans as JSON        terraform plan -out plan.out && terraform show -json plan.out > plan.json
  CloudFormation templates       JSON or YAML (short-form tags like !Ref are fine)
  Kubernetes manifests           YAML, several documents per file (helm template … > out.yaml works)
  Dockerfiles                    Dockerfile, Containerfile, *.Dockerfile

Rules (custos iac rules lists them) cover encryption at rest (S3, EBS, RDS), TLS 1.2+,
internet-open security groups and control planes, GPU nodes with public addresses, public S3
ACLs, and container hardening (non-root, read-only root filesystem, dropped capabilities,
seccomp RuntimeDefault, resource limits, no privilege). --require-tags adds the mandatory
cost-tag check of `custos cost tags check` to plans.

Accepted risks share the vulnerability exceptions file (.custos/vuln-exceptions.toml under
PATH, or --exceptions FILE); an expired exception fails the scan:
  [[exception]]
  id = \"CUSTOS-K8S-002\"
  resource = \"Deployment/web*\"      # optional; a trailing * matches a prefix
  reason = \"the app writes its cache to /tmp on the root filesystem\"
  owner = \"platform@example.com\"
  expires = \"2027-03-31\"

Examples:
  custos iac scan infra/
  custos iac scan plan.json --require-tags Project,Env --fail-on medium
  custos iac scan k8s/ --format sarif -o iac.sarif")]
    Scan {
        /// A directory, or one file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Output: a table for people, JSON, or SARIF for code scanning.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Exit 1 when a finding at or above this severity is not accepted by an exception.
        #[arg(long, value_enum, default_value_t = FailOn::High)]
        fail_on: FailOn,
        /// Accepted risks (default: .custos/vuln-exceptions.toml under PATH, if present).
        #[arg(long, value_name = "FILE")]
        exceptions: Option<PathBuf>,
        /// Rules to use instead of the built-in ones (same TOML shape as `custos iac rules --toml`).
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Tags every taggable resource of a Terraform plan must carry (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "TAGS")]
        require_tags: Vec<String>,
        /// Leave out paths matching this glob (gitignore syntax; repeatable).
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// Write the report here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the rules: id, severity, the resource kinds each checks, title.
    Rules {
        /// Print the built-in rules file itself (to copy and edit for --rules).
        #[arg(long)]
        toml: bool,
    },
}

fn load_rules(path: Option<&Path>) -> Result<Vec<iac::rules::Rule>> {
    Ok(match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            iac::rules::parse(&p.display().to_string(), &text)?
        }
        None => iac::rules::parse("built-in rules", iac::rules::DEFAULT_RULES)?,
    })
}

/// The cost-tag check of `custos cost tags check`, as findings of the same report.
fn tag_findings(root: &Path, plans: &[PathBuf], required: &[String]) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for p in plans {
        let text = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        let value: Value =
            serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", p.display()))?;
        let report = custos_finops::tags::check_plan(&value, required)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let rel = p
            .strip_prefix(root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned();
        for r in report.failing() {
            out.push(Finding {
                rule_id: "CUSTOS-COST-001".into(),
                title: format!("Resource lacks mandatory cost tags: {}", r.missing.join(", ")),
                severity: Severity::Medium,
                file: rel.clone(),
                line: 0,
                format: "terraform-plan",
                kind: format!("tf:{}", r.resource_type),
                resource: r.address.clone(),
                rationale: "Untagged resources cannot be charged back to a team, project or environment, so their cost goes unexplained.".into(),
                remediation: format!("Add the tags {} (or provider default_tags).", r.missing.join(", ")),
                suppressed_by: None,
                expired_exception: None,
            });
        }
    }
    Ok(out)
}

pub fn run(cmd: IacCmd, json_out: bool) -> Result<ExitCode> {
    match cmd {
        IacCmd::Rules { toml } => {
            if toml {
                print!("{}", iac::rules::DEFAULT_RULES);
                return Ok(ExitCode::SUCCESS);
            }
            let rules = load_rules(None)?;
            if json_out {
                output::json(&json!(rules
                    .iter()
                    .map(|r| json!({"id": r.id, "severity": r.severity, "kinds": r.kinds, "title": r.title,
                                    "rationale": r.rationale, "remediation": r.remediation}))
                    .collect::<Vec<_>>()));
            } else {
                let mut rows: Vec<Vec<String>> = rules
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            r.severity.as_str().into(),
                            r.kinds.join(" "),
                            r.title.clone(),
                        ]
                    })
                    .collect();
                rows.push(vec![
                    "CUSTOS-COST-001".into(),
                    "medium".into(),
                    "tf:* (with --require-tags)".into(),
                    "Resource lacks mandatory cost tags".into(),
                ]);
                output::table(&["ID", "SEVERITY", "KINDS", "TITLE"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        IacCmd::Scan {
            path,
            format,
            fail_on,
            exceptions,
            rules,
            require_tags,
            exclude,
            output: out,
        } => {
            if !path.exists() {
                bail!("{}: no such file or directory", path.display());
            }
            let rules = load_rules(rules.as_deref())?;
            let filter = custos_scan::sbom::Filter::new(&path, &exclude, true)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut report = iac::scan(&path, &rules, &filter);
            for e in &report.errors {
                eprintln!("warning: {e}");
            }
            if report.files.is_empty() {
                bail!(
                    "{}: no Terraform plan (JSON), CloudFormation template, Kubernetes manifest or Dockerfile found{}",
                    path.display(),
                    if report.errors.is_empty() { "" } else { " that could be read" }
                );
            }
            let required: Vec<String> = require_tags
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            if !required.is_empty() {
                let plans = std::mem::take(&mut report.plans);
                report
                    .findings
                    .extend(tag_findings(&path, &plans, &required)?);
            }
            if let Some(ex) = crate::vulns::load_exceptions(exceptions, &path)? {
                let today = crate::vulns::today();
                for f in &mut report.findings {
                    match ex.for_resource(&f.rule_id, &f.resource, &today) {
                        Some(Ok(label)) => f.suppressed_by = Some(label),
                        Some(Err(label)) => f.expired_exception = Some(label),
                        None => {}
                    }
                }
            }
            let threshold = fail_on.severity();
            let failing = report
                .findings
                .iter()
                .filter(|f| f.suppressed_by.is_none())
                .filter(|f| {
                    threshold.is_some_and(|t| f.severity >= t) || f.expired_exception.is_some()
                })
                .count();
            let text = match format {
                Format::Json => None,
                Format::Sarif => Some(
                    serde_json::to_string_pretty(&iac::sarif(
                        &report.findings,
                        env!("CARGO_PKG_VERSION"),
                    ))? + "\n",
                ),
                Format::Table if json_out => None,
                Format::Table => Some(table(&report.findings)),
            };
            let text = match text {
                Some(t) => t,
                None => {
                    serde_json::to_string_pretty(&json!({
                        "findings": report.findings, "files": report.files,
                        "resources": report.resources, "failing": failing, "errors": report.errors,
                    }))? + "\n"
                }
            };
            match &out {
                Some(p) => std::fs::write(p, &text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
            let files: Vec<String> = report
                .files
                .iter()
                .map(|(f, n)| format!("{n} {f}"))
                .collect();
            eprintln!(
                "{} ({} failing at {} or above, {} accepted) in {} from {}",
                output::count(report.findings.len(), "finding"),
                failing,
                threshold.map_or("no level", Severity::as_str),
                report
                    .findings
                    .iter()
                    .filter(|f| f.suppressed_by.is_some())
                    .count(),
                output::count(report.resources, "resource"),
                files.join(", ")
            );
            Ok(if failing > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn table(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let at = if f.line > 0 {
            format!("{}:{}", f.file, f.line)
        } else {
            f.file.clone()
        };
        let note = match (&f.suppressed_by, &f.expired_exception) {
            (Some(_), _) => "  [accepted]",
            (None, Some(_)) => "  [exception expired]",
            _ => "",
        };
        out.push_str(&format!(
            "{:<8} {}  {}  {}{note}\n         {}\n         fix: {}\n",
            f.severity.as_str().to_uppercase(),
            f.rule_id,
            at,
            f.resource,
            f.title,
            f.remediation
        ));
    }
    out
}
