//! `custos secrets`: scan files and trees for credentials with Gitleaks-compatible rules.
//! Exit 1 when findings remain, 0 when none, 2 on usage, rule or I/O errors.

use crate::output;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use custos_scan::report;
use custos_scan::secrets::{
    scan_history, scan_path, scan_staged, HistoryOptions, RuleSet, ScanOptions, ScanSummary,
    Scanner,
};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SecretsCmd {
    /// Scan a directory tree, a file, or standard input (`-`) for secrets.
    #[command(after_help = "Examples:
  custos secrets scan                         the current directory
  custos secrets scan src/ --format sarif -o secrets.sarif
  custos secrets scan --config .gitleaks.toml --baseline known.json
  git diff | custos secrets scan -
  custos secrets scan $(git diff --cached --name-only)   what a commit would add

Rules: custos' defaults, or a Gitleaks-format TOML (--config, else .gitleaks.toml or
.custos-secrets.toml at the scanned root); `[extend] useDefault = true` adds yours to ours.
Silence one line with a `custos:allow` (or `gitleaks:allow`) comment on it; skip paths with
.gitignore, .ignore or .custosignore.

Exit status: 1 when findings remain after allowlists and the baseline, 0 when none,
2 on a usage error, a broken rules file or unreadable files.")]
    Scan {
        /// What to scan: directories, files, `-` for standard input, or images
        /// (docker-archive:IMG.tar, oci-archive:IMG.tar, oci-dir:PATH): every file of every
        /// layer, files a later layer deleted too.
        #[arg(default_value = ".")]
        paths: Vec<String>,
        /// The platform to read from a multi-platform image (os/arch[/variant]).
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        /// Leave out paths matching this glob (gitignore syntax, relative to the scanned
        /// directory or the image root; repeatable). `.gitignore` and `.custosignore` apply too.
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Scan git history: every blob reachable from the refs, once, attributed to the commit
    /// that introduced it.
    #[command(after_help = "Examples:
  custos secrets git                               this repository, every ref
  custos secrets git ../service --branch main --since 2026-01-01
  custos secrets git --format sarif -o history.sarif
  custos secrets git --staged                      what the next commit would add (pre-commit)

Each blob is scanned once however many commits contain it; a finding names the oldest
commit that introduced it, its author, date and path. Reading git is pure Rust (no `git`
binary needed). Exit status as for `scan`: 1 with findings, 0 without, 2 on errors.")]
    Git {
        /// The repository (any folder inside it).
        #[arg(default_value = ".")]
        repo: PathBuf,
        /// Start from these branches or refs only (repeatable; default: every ref and HEAD).
        #[arg(long = "branch", value_name = "REF")]
        branches: Vec<String>,
        /// Only what commits since this date introduced (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Scan what `git commit` would commit (the index), not the history: for pre-commit.
        #[arg(long, conflicts_with_all = ["branches", "since"])]
        staged: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Score the rules on labeled samples: recall on secrets, share of negatives flagged.
    #[command(after_help = "Examples:
  custos secrets eval labeled.jsonl
  custos secrets eval labeled.jsonl --config .gitleaks.toml --errors
  custos secrets eval labeled.jsonl --json

The file holds one JSON object per line (blank lines and # comments are skipped):
  {\"text\": \"max_tokens = 1024\", \"secret\": false, \"category\": \"generic\", \"path\": \"config.py\"}
`text` is scanned as the content of a file named `path` (default sample.txt); a sample
counts as flagged when any rule fires on it. --errors lists the samples the rules got
wrong by line, category, path and rule, never their text.

Exit status: 0 after a report, 2 on an unreadable or malformed file.")]
    Eval {
        /// Labeled samples, as JSON lines.
        file: PathBuf,
        /// A rules file in Gitleaks' TOML format (default: custos' own rules).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// List each missed secret and each flagged negative.
        #[arg(long)]
        errors: bool,
    },
    /// List the rules a scan would use.
    #[command(
        after_help = "Examples:\n  custos secrets rules\n  custos secrets rules --config .gitleaks.toml --json"
    )]
    Rules {
        /// A rules file in Gitleaks' TOML format (default: custos' own rules).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Rules, report and limits: the same for a tree and for history.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// A rules file in Gitleaks' TOML format.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Show secrets in full (they are cut to their first four characters by default).
    #[arg(long)]
    no_redact: bool,
    /// A JSON report from an earlier scan (custos', or Gitleaks' `--report-format json`):
    /// findings with the same fingerprint are known and not reported again.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Skip files larger than this (bytes, or with K, M or G).
    #[arg(long, value_name = "SIZE", default_value = "25M", value_parser = parse_size)]
    max_file_size: u64,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl CommonArgs {
    /// The rules for `root` (from --config, else the files at the root, else ours) and the
    /// baseline's fingerprints.
    fn scanner(&self, root: &Path) -> Result<(Scanner, Baseline)> {
        let rules = load_rules(self.config.as_deref(), root)?;
        let known = match &self.baseline {
            Some(b) => baseline_fingerprints(b)?,
            None => Baseline::default(),
        };
        Ok((Scanner::new(rules), known))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 1048576, 512K, 25M or 1G"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit; use K, M or G")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn load_rules(config: Option<&Path>, root: &Path) -> Result<RuleSet> {
    let found = config.map(Path::to_owned).or_else(|| {
        let dir = if root.is_dir() { root } else { root.parent()? };
        [".gitleaks.toml", ".custos-secrets.toml"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    });
    Ok(match found {
        Some(p) => RuleSet::from_file(&p)?,
        None => RuleSet::default_rules()?,
    })
}

/// Known findings to suppress: custos fingerprints (rule, path, secret) from a custos JSON
/// report, and Gitleaks fingerprints (`File:RuleID:StartLine`, with `Commit:` first for git
/// scans) from a Gitleaks JSON report.
#[derive(Debug, Default)]
struct Baseline {
    custos: HashSet<String>,
    gitleaks: HashSet<String>,
}

impl Baseline {
    fn knows(&self, f: &custos_scan::secrets::Finding) -> bool {
        if self.custos.contains(&f.fingerprint) {
            return true;
        }
        if self.gitleaks.is_empty() {
            return false;
        }
        let path = f.path.strip_prefix("./").unwrap_or(&f.path);
        let at = format!("{path}:{}:{}", f.rule_id, f.line);
        self.gitleaks.contains(&at)
            || f.commit
                .as_ref()
                .is_some_and(|c| self.gitleaks.contains(&format!("{}:{at}", c.commit)))
    }
}

fn baseline_fingerprints(path: &Path) -> Result<Baseline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the baseline {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a JSON report from `custos secrets scan --format json` or `gitleaks --report-format json`",
            path.display()
        )
    })?;
    let items = v
        .get("findings")
        .unwrap_or(&v)
        .as_array()
        .with_context(|| format!("{}: expected an array of findings", path.display()))?;
    let mut b = Baseline::default();
    for (i, f) in items.iter().enumerate() {
        if let Some(fp) = f["fingerprint"].as_str() {
            b.custos.insert(fp.to_owned());
        } else if let Some(fp) = f["Fingerprint"].as_str() {
            b.gitleaks
                .insert(fp.strip_prefix("./").unwrap_or(fp).to_owned());
        } else if let (Some(file), Some(rule), Some(line)) = (
            f["File"].as_str(),
            f["RuleID"].as_str(),
            f["StartLine"].as_u64(),
        ) {
            let at = format!("{}:{rule}:{line}", file.strip_prefix("./").unwrap_or(file));
            match f["Commit"].as_str().filter(|c| !c.is_empty()) {
                Some(c) => b.gitleaks.insert(format!("{c}:{at}")),
                None => b.gitleaks.insert(at),
            };
        } else {
            bail!(
                "{}: finding {} has no fingerprint (custos `fingerprint`, or Gitleaks `Fingerprint` or File/RuleID/StartLine)",
                path.display(),
                i + 1
            );
        }
    }
    Ok(b)
}

/// Runs a secrets command; errors map to exit status 2 in `main`.
pub fn run(cmd: SecretsCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        SecretsCmd::Rules { config } => {
            let rules = load_rules(config.as_deref(), Path::new("."))?;
            if json {
                output::json(&serde_json::json!(rules
                    .rules
                    .iter()
                    .map(|r| serde_json::json!({"id": r.id, "description": r.description, "keywords": r.keywords, "entropy": r.entropy}))
                    .collect::<Vec<_>>()));
            } else {
                let rows: Vec<Vec<String>> = rules
                    .rules
                    .iter()
                    .map(|r| vec![r.id.clone(), r.description.clone()])
                    .collect();
                output::table(&["RULE", "DESCRIPTION"], &rows);
                eprintln!("{} rules", rows.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCmd::Eval {
            file,
            config,
            errors,
        } => {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let text = String::from_utf8(text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not UTF-8 text (invalid byte at offset {})",
                    file.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            let samples = custos_scan::secrets::eval::parse(&text, &file.display().to_string())?;
            let rules = match &config {
                Some(c) => RuleSet::from_file(c)?,
                None => RuleSet::default_rules()?,
            };
            let e = custos_scan::secrets::eval::evaluate(&Scanner::new(rules), &samples);
            if json {
                let score = |s: &custos_scan::secrets::eval::Score| {
                    serde_json::json!({
                        "category": s.category, "positives": s.positives, "found": s.found,
                        "negatives": s.negatives, "flagged": s.flagged, "recall": s.recall(),
                        "negatives_flagged": s.flag_rate(), "precision": s.precision(),
                    })
                };
                output::json(&serde_json::json!({
                    "overall": score(&e.overall),
                    "by_category": e.by_category.iter().map(score).collect::<Vec<_>>(),
                    "errors": e.errors,
                }));
                return Ok(ExitCode::SUCCESS);
            }
            let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
            let rows: Vec<Vec<String>> = e
                .by_category
                .iter()
                .chain(std::iter::once(&e.overall))
                .map(|s| {
                    vec![
                        s.category.clone(),
                        format!("{}/{}", s.found, s.positives),
                        pct(s.recall()),
                        format!("{}/{}", s.flagged, s.negatives),
                        pct(s.flag_rate()),
                    ]
                })
                .collect();
            output::table(
                &[
                    "CATEGORY",
                    "FOUND",
                    "RECALL",
                    "FLAGGED",
                    "NEGATIVES_FLAGGED",
                ],
                &rows,
            );
            if errors {
                for m in &e.errors {
                    if m.secret {
                        println!("line {}: {} ({}): missed", m.line, m.category, m.path);
                    } else {
                        println!(
                            "line {}: {} ({}): flagged by {}",
                            m.line,
                            m.category,
                            m.path,
                            m.rules.join(", ")
                        );
                    }
                }
            } else if !e.errors.is_empty() {
                eprintln!("{} samples wrong; --errors lists them", e.errors.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCmd::Scan {
            paths,
            platform,
            exclude,
            common,
        } => {
            if let Err(e) = custos_scan::sbom::Filter::new(Path::new("."), &exclude, true) {
                bail!("{e}");
            }
            let format = if json { Format::Json } else { common.format };
            let mut targets = Vec::new();
            for p in &paths {
                targets.push(if p == "-" {
                    crate::sbom::Target::Tree(PathBuf::from("-"))
                } else {
                    crate::sbom::target(p, &platform)?
                });
            }
            let first = match targets.first() {
                Some(crate::sbom::Target::Tree(p)) => p.clone(),
                _ => PathBuf::from("."),
            };
            let (scanner, known) = common.scanner(&first)?;
            let started = std::time::Instant::now();
            let mut summary = ScanSummary::default();
            let options = ScanOptions {
                max_file_size: common.max_file_size,
                threads: common.threads,
                exclude,
            };
            for target in &targets {
                let part = match target {
                    crate::sbom::Target::Image(image) => {
                        let part = custos_scan::secrets::scan_image(&scanner, image, &options)
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                        if part.files == 0 {
                            bail!("{}: the image holds no files", image.name);
                        }
                        part
                    }
                    crate::sbom::Target::Tree(path) if path.as_os_str() == "-" => {
                        let mut buf = Vec::new();
                        std::io::stdin()
                            .read_to_end(&mut buf)
                            .context("cannot read standard input")?;
                        ScanSummary {
                            findings: scanner.scan("<stdin>", &buf),
                            files: 1,
                            bytes: buf.len() as u64,
                            ..Default::default()
                        }
                    }
                    crate::sbom::Target::Tree(path) => scan_path(&scanner, path, &options),
                };
                summary.findings.extend(part.findings);
                summary.files += part.files;
                summary.bytes += part.bytes;
                summary.skipped_binary += part.skipped_binary;
                summary.skipped_large += part.skipped_large;
                summary.errors.extend(part.errors);
            }
            report_findings(summary, &scanner, format, &common, &known, started, "file")
        }
        SecretsCmd::Git {
            repo,
            branches,
            since,
            staged,
            common,
        } => {
            let format = if json { Format::Json } else { common.format };
            let since = match since.as_deref() {
                Some(d) => Some(
                    custos_core::time::parse_rfc3339(d).with_context(|| {
                        format!("--since {d:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
                    })? / 1000,
                ),
                None => None,
            };
            let (scanner, known) = common.scanner(&repo)?;
            let started = std::time::Instant::now();
            let h = if staged {
                scan_staged(&repo, &scanner, common.max_file_size)?
            } else {
                let opts = HistoryOptions {
                    refs: branches,
                    since,
                    max_file_size: common.max_file_size,
                    threads: common.threads,
                };
                scan_history(&repo, &scanner, &opts)?
            };
            let summary = ScanSummary {
                findings: h.findings,
                files: h.blobs,
                bytes: h.bytes,
                skipped_binary: h.skipped_binary,
                skipped_large: h.skipped_large,
                ..Default::default()
            };
            if staged {
                eprintln!("{} staged files with new content", h.blobs);
            } else {
                eprintln!("{} commits, {} distinct blobs", h.commits, h.blobs);
            }
            report_findings(summary, &scanner, format, &common, &known, started, "blob")
        }
    }
}

/// Applies the baseline, writes the report and returns the exit status.
#[allow(clippy::too_many_arguments)]
fn report_findings(
    mut summary: ScanSummary,
    scanner: &Scanner,
    format: Format,
    common: &CommonArgs,
    known: &Baseline,
    started: std::time::Instant,
    unit: &str,
) -> Result<ExitCode> {
    let redact = !common.no_redact;
    let out_file = common.output.as_deref();
    let before = summary.findings.len();
    summary.findings.retain(|f| !known.knows(f));
    let suppressed = before - summary.findings.len();
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
            "findings": report::findings_json(&summary.findings, redact),
            "files": summary.files, "bytes": summary.bytes,
            "skipped_binary": summary.skipped_binary, "skipped_large": summary.skipped_large,
            "baseline_suppressed": suppressed, "errors": summary.errors,
                }))?
                + "\n"
        }
        Format::Sarif => {
            serde_json::to_string_pretty(&report::sarif(
                &summary.findings,
                scanner.rules(),
                redact,
            ))? + "\n"
        }
        Format::Table => table(&summary, redact),
    };
    match out_file {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => print!("{text}"),
    }
    for e in &summary.errors {
        eprintln!("warning: skipped {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} in {} ({:.1} MB, {:.2} s{}{}{})",
        output::count(summary.findings.len(), "finding"),
        output::count(usize::try_from(summary.files).unwrap_or(usize::MAX), unit),
        summary.bytes as f64 / 1e6,
        secs,
        if summary.skipped_binary > 0 {
            format!(", {} binary", summary.skipped_binary)
        } else {
            String::new()
        },
        if summary.skipped_large > 0 {
            format!(", {} over --max-file-size skipped", summary.skipped_large)
        } else {
            String::new()
        },
        if suppressed > 0 {
            format!(", {suppressed} known from the baseline")
        } else {
            String::new()
        },
    );
    Ok(if !summary.findings.is_empty() {
        ExitCode::from(1)
    } else if !summary.errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn table(summary: &ScanSummary, redact: bool) -> String {
    let mut out = String::new();
    for f in &summary.findings {
        let secret = if redact {
            f.redacted_secret()
        } else {
            f.secret.clone()
        };
        let at = if f.line > 0 {
            format!("{}:{}:{}", f.path, f.line, f.column)
        } else {
            f.path.clone()
        };
        let origin = match &f.commit {
            Some(c) => format!(
                "  commit {} by {} on {}",
                &c.commit[..c.commit.len().min(10)],
                c.author,
                &custos_core::time::format_rfc3339(c.date * 1000)[..10]
            ),
            None => match &f.layer {
                Some(l) => format!(
                    "  layer {} {}{}{}",
                    l.index,
                    &l.digest[..l.digest.len().min(19)],
                    l.created_by
                        .as_deref()
                        .map(|c| format!(" ({})", output_short(c)))
                        .unwrap_or_default(),
                    if f.removed_in_later_layer {
                        ", deleted by a later layer but still in the image"
                    } else {
                        ""
                    }
                ),
                None => String::new(),
            },
        };
        out.push_str(&format!(
            "{at}  {}  {secret}  ({}){origin}\n",
            f.rule_id, f.description
        ));
    }
    out
}

/// A Dockerfile instruction cut for one line of a table.
fn output_short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 60 {
        one.chars().take(59).collect::<String>() + "…"
    } else {
        one
    }
}
