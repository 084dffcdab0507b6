//! `custos vulns`: import OSV advisories into a local index and scan lockfiles or SBOMs
//! against it, offline. `scan` exits 1 when a finding at or above `--fail-on` remains after
//! exceptions, 0 otherwise, 2 on usage, database or I/O errors.

use crate::output;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use custos_scan::sbom;
use custos_scan::vuln::db::VulnDb;
use custos_scan::vuln::osv::Band;
use custos_scan::vuln::{self, Exceptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum VulnsCmd {
    /// The advisory database: import OSV data, show what it holds.
    #[command(subcommand)]
    Db(DbCmd),
    /// Match a project's packages (lockfiles, or a CycloneDX/SPDX SBOM) against advisories.
    #[command(after_help = "Examples:
  custos vulns scan                              lockfiles under this directory
  custos vulns scan bom.cdx.json --fail-on critical
  custos vulns scan . --format json > vulns.json

Severity is the highest CVSS v3.x or v4.0 score computed from the record's vectors (v2 when
there is no later one; critical ≥ 9, high ≥ 7, medium ≥ 4, low > 0), else the database's own
rating. Findings with neither are `unknown` and count as failing unless --unknown-as says
otherwise. RustSec's informational advisories (unmaintained, unsound, notice) are listed but
fail only with --deny KIND. Accepted risks live in .custos/vuln-exceptions.toml:

  [[exception]]
  id = \"GHSA-xxxx-xxxx-xxxx\"     # or any alias (CVE, RUSTSEC, PYSEC)
  package = \"lodash\"             # optional
  reason = \"not reachable: we never call template()\"
  owner = \"alice@example.com\"
  expires = \"2027-03-31\"

An expired exception no longer suppresses, and the report says so.")]
    Scan {
        /// A directory, a lockfile, a CycloneDX/SPDX JSON document, or an image
        /// (docker-archive:IMG.tar, oci-archive:IMG.tar, oci-dir:PATH; see `custos sbom --help`).
        #[arg(default_value = ".")]
        path: String,
        /// The platform to read from a multi-platform image (os/arch[/variant]).
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        #[command(flatten)]
        filter: crate::sbom::FilterArgs,
        /// Exit 1 when a finding at or above this severity remains.
        #[arg(long, value_enum, default_value_t = Level::High)]
        fail_on: Level,
        /// Treat findings without any severity as this level (default: failing).
        #[arg(long, value_enum)]
        unknown_as: Option<Level>,
        /// Also fail on informational advisories of this kind (repeatable).
        #[arg(long, value_enum, value_name = "KIND")]
        deny: Vec<Informational>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Accepted risks (default: .custos/vuln-exceptions.toml under the scanned directory, if present).
        #[arg(long, value_name = "FILE")]
        exceptions: Option<PathBuf>,
        /// Fail when the database's last import is older than this (e.g. 7d, 24h).
        #[arg(long, value_name = "AGE")]
        max_db_age: Option<String>,
        /// Exit 2 when the database holds no advisories for an ecosystem of the scanned
        /// packages (otherwise a warning names it and its packages go unchecked).
        #[arg(long)]
        require_data: bool,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Import OSV records: folders of .json/.yaml files, or OSV's per-ecosystem all.zip.
    #[command(after_help = "Examples:
  custos vulns db import ~/osv/crates.io/all.zip ~/osv/PyPI/all.zip
  custos vulns db import ./advisories/

Records are upserted (a newer `modified` wins); withdrawn records are kept but never match.
A malformed record is named with its file and skipped. Zip entries are read, never
extracted; entries that inflate suspiciously are skipped.")]
    Import {
        /// OSV advisories: folders of OSV JSON/YAML files, or per-ecosystem all.zip exports.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Show sources, record counts per ecosystem and the data's age.
    Status {
        /// Exit 1 when the last import is older than this (e.g. 7d).
        #[arg(long, value_name = "AGE")]
        max_db_age: Option<String>,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(clap::Args, Debug)]
pub struct DbArg {
    /// The advisory database file (default: $CUSTOS_VULN_DB, else ~/.local/share/custos/vulns.sqlite).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Warn when the database's last import is older than this.
    #[arg(
        long,
        value_name = "AGE",
        env = "CUSTOS_VULN_DB_WARN_AGE",
        default_value = "7d"
    )]
    warn_db_age: String,
}

impl DbArg {
    fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.db {
            return Ok(p.clone());
        }
        if let Ok(p) = std::env::var("CUSTOS_VULN_DB") {
            return Ok(PathBuf::from(p));
        }
        let base = match std::env::var("XDG_DATA_HOME") {
            Ok(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(std::env::var("HOME").context("HOME is not set; pass --db FILE")?)
                .join(".local/share"),
        };
        Ok(base.join("custos/vulns.sqlite"))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
    /// Never fail (report only).
    None,
}

impl Level {
    fn band(self) -> Option<Band> {
        match self {
            Level::Low => Some(Band::Low),
            Level::Medium => Some(Band::Medium),
            Level::High => Some(Band::High),
            Level::Critical => Some(Band::Critical),
            Level::None => None,
        }
    }
}

/// RustSec's informational advisory kinds.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Informational {
    /// The crate is no longer maintained.
    Unmaintained,
    /// Unsound API (undefined behaviour reachable from safe code).
    Unsound,
    /// Any other notice.
    Notice,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// A CycloneDX 1.6 VEX document.
    #[value(name = "cyclonedx-vex")]
    CyclonedxVex,
}

/// `7d`, `24h`, `90m`, `3600s` → seconds.
fn parse_age(s: &str) -> Result<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("{s:?} is not an age like 7d, 24h or 90m"))?;
    Ok(n * match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => bail!("{s:?} is not an age like 7d, 24h or 90m"),
    })
}

fn now_s() -> i64 {
    custos_core::time::now_ms() / 1000
}

fn check_age(db: &VulnDb, max: Option<&str>, warn: &str) -> Result<Option<String>> {
    let warn_after = parse_age(warn).context("--warn-db-age")?;
    let status = db.status()?;
    let Some(last) = status.last_import else {
        bail!("the advisory database {} is empty: import OSV data first (custos vulns db import PATH)", status.path);
    };
    let age = now_s() - last;
    let days = age / 86_400;
    if let Some(max) = max {
        if age > parse_age(max)? {
            bail!("the advisory database was last imported {days} days ago, more than --max-db-age {max}; import fresh OSV data");
        }
    }
    Ok((age > warn_after).then(|| {
        format!("warning: the advisory database was last imported {days} days ago (more than {warn}); import fresh OSV data")
    }))
}

pub fn run(cmd: VulnsCmd, json_out: bool) -> Result<ExitCode> {
    match cmd {
        VulnsCmd::Db(DbCmd::Import { paths, db }) => {
            let path = db.path()?;
            let mut vdb = VulnDb::open(&path)?;
            let mut total = 0;
            let mut reports = Vec::new();
            for p in &paths {
                let r = vdb.import(p)?;
                for w in r.warnings.iter().take(20) {
                    let at = if w.entry.is_empty() {
                        w.source.clone()
                    } else {
                        format!("{}:{}", w.source, w.entry)
                    };
                    eprintln!("warning: {at}: {}", w.message);
                }
                if r.warnings.len() > 20 {
                    eprintln!(
                        "warning: {} more records skipped in {}",
                        r.warnings.len() - 20,
                        p.display()
                    );
                }
                for w in r.unscored.iter().take(20) {
                    eprintln!("warning: {}:{}: {}", w.source, w.entry, w.message);
                }
                if r.unscored.len() > 20 {
                    eprintln!(
                        "warning: {} more records in {} have vectors that cannot be scored",
                        r.unscored.len() - 20,
                        p.display()
                    );
                }
                total += r.records;
                reports.push(json!({"source": p, "records": r.records, "withdrawn": r.withdrawn, "skipped": r.warnings.len(), "unscored_vectors": r.unscored.len()}));
                if !json_out {
                    println!(
                        "{}: {} records ({} withdrawn, {} skipped)",
                        p.display(),
                        r.records,
                        r.withdrawn,
                        r.warnings.len()
                    );
                }
            }
            if json_out {
                output::json(&json!({"database": path, "imported": total, "sources": reports}));
            } else {
                println!("{total} records imported into {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        VulnsCmd::Db(DbCmd::Status { max_db_age, db }) => {
            let path = db.path()?;
            if !path.exists() {
                bail!("no advisory database at {}: import OSV data first (custos vulns db import PATH)", path.display());
            }
            let vdb = VulnDb::open(&path)?;
            let status = vdb.status()?;
            if json_out {
                output::json(&serde_json::to_value(&status)?);
            } else {
                println!("database: {}", status.path);
                println!("records: {}", status.records);
                let rows: Vec<Vec<String>> = status
                    .by_ecosystem
                    .iter()
                    .map(|(e, n)| vec![e.clone(), n.to_string()])
                    .collect();
                output::table(&["ECOSYSTEM", "RECORDS"], &rows);
                for s in &status.sources {
                    println!(
                        "source: {} ({} records, imported {})",
                        s.path,
                        s.records,
                        custos_core::time::format_rfc3339(s.imported_at * 1000)
                    );
                }
                if let Some(m) = &status.newest_modified {
                    println!("newest record modified: {m}");
                }
            }
            match check_age(&vdb, max_db_age.as_deref(), &db.warn_db_age) {
                Ok(Some(w)) => eprintln!("{w}"),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        VulnsCmd::Scan {
            path,
            platform,
            filter,
            fail_on,
            unknown_as,
            deny,
            format,
            exceptions,
            max_db_age,
            require_data,
            db,
        } => {
            let db_path = db.path()?;
            if !db_path.exists() {
                bail!("no advisory database at {}: import OSV data first (custos vulns db import PATH)", db_path.display());
            }
            let vdb = VulnDb::open(&db_path)?;
            if let Some(w) = check_age(&vdb, max_db_age.as_deref(), &db.warn_db_age)? {
                eprintln!("{w}");
            }
            let (components, path) = match crate::sbom::target(&path, &platform)? {
                crate::sbom::Target::Tree(path) => (components_of(&path, &filter)?, path),
                crate::sbom::Target::Image(image) => {
                    let found = crate::sbom::image_sbom(&image, &filter)?;
                    for w in &found.warnings {
                        eprintln!("warning: {}: {}", w.file, w.message);
                    }
                    // An image has no folder of its own for exceptions: --exceptions names them.
                    (found.components, PathBuf::from("/nonexistent"))
                }
            };
            let uncovered = vuln::uncovered(&vdb, &components)?;
            for (eco, n) in &uncovered {
                eprintln!(
                    "warning: the advisory database holds no {eco} records, so {n} {eco} package{} went unchecked; import them (custos vulns db import, e.g. OSV's {eco}/all.zip){}",
                    if *n == 1 { "" } else { "s" },
                    if require_data { "" } else { " or pass --require-data to fail" }
                );
            }
            if require_data && !uncovered.is_empty() {
                eprintln!(
                    "error: --require-data: no advisories for {}",
                    uncovered
                        .iter()
                        .map(|(e, _)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(ExitCode::from(2));
            }
            let unpinned =
                crate::sbom::warn_unpinned(&components, "cannot be checked for vulnerabilities");
            let mut findings = vuln::scan(&vdb, &components)?;
            if let Some(ex) = load_exceptions(exceptions, &path)? {
                ex.apply(&mut findings, &today());
            }
            let effective = |b: Band| {
                if b == Band::Unknown {
                    unknown_as.and_then(Level::band).unwrap_or(Band::Critical)
                } else {
                    b
                }
            };
            let threshold = fail_on.band();
            let failing: Vec<&vuln::Finding> = findings
                .iter()
                .filter(|f| f.suppressed_by.is_none())
                .filter(|f| {
                    if let Some(kind) = &f.informational {
                        return deny.iter().any(|d| {
                            d.to_possible_value()
                                .is_some_and(|v| v.get_name() == kind.as_str())
                        });
                    }
                    threshold.is_some_and(|t| {
                        effective(f.severity) >= t
                            && !(f.severity == Band::Unknown && unknown_as == Some(Level::None))
                    })
                })
                .collect();
            match format {
                Format::Json => output::json(&json!({
                    "packages": components.iter().filter(|c| !c.is_root).count(),
                    "findings": findings,
                    "failing": failing.len(),
                    "unchecked_ecosystems": uncovered.iter().map(|(e, n)| json!({"ecosystem": e, "packages": n})).collect::<Vec<_>>(),
                    "unpinned_packages": unpinned,
                })),
                Format::Sarif => output::json(&vuln::sarif(&findings)),
                Format::CyclonedxVex => {
                    let created = custos_core::time::format_rfc3339(custos_core::time::now_ms());
                    let created = format!(
                        "{}Z",
                        created
                            .split('.')
                            .next()
                            .unwrap_or(&created)
                            .trim_end_matches('Z')
                    );
                    output::json(&vuln::cyclonedx_vex(
                        &findings,
                        &created,
                        &uuid::Uuid::new_v4().to_string(),
                    ));
                }
                Format::Table if json_out => {
                    output::json(&json!({"findings": findings, "failing": failing.len()}))
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = findings
                        .iter()
                        .map(|f| {
                            let sev = match f.score {
                                Some(s) => format!("{} {s:.1}", f.severity.as_str()),
                                None => f.severity.as_str().to_string(),
                            };
                            let note = match (&f.suppressed_by, &f.expired_exception) {
                                (Some(_), _) => "accepted".to_string(),
                                (None, Some(_)) => "exception expired".to_string(),
                                _ => match &f.informational {
                                    Some(kind) => format!("{kind} (informational)"),
                                    None => String::new(),
                                },
                            };
                            let fixed = if f.fixed.is_empty() {
                                "-".to_string()
                            } else {
                                f.fixed.join(", ")
                            };
                            vec![
                                sev,
                                display_id(&f.id, &f.aliases),
                                format!("{} {}", f.package, f.version),
                                fixed,
                                f.source.clone(),
                                note,
                            ]
                        })
                        .collect();
                    if rows.is_empty() {
                        let unchecked: usize = uncovered.iter().map(|(_, n)| n).sum();
                        let mut notes = Vec::new();
                        if unchecked > 0 {
                            notes.push(format!(
                                "{unchecked} not checked: no advisories for their ecosystem"
                            ));
                        }
                        if unpinned > 0 {
                            notes.push(format!("{unpinned} not checked: not pinned"));
                        }
                        println!(
                            "no known vulnerabilities in {}{}",
                            output::count(
                                components
                                    .iter()
                                    .filter(|c| !c.is_root)
                                    .count()
                                    .saturating_sub(unchecked + unpinned),
                                "package"
                            ),
                            if notes.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", notes.join("; "))
                            }
                        );
                    } else {
                        output::table_painted(
                            &["SEVERITY", "ID", "PACKAGE", "FIXED IN", "FOUND IN", "NOTE"],
                            &rows,
                            &|col, cell| {
                                (col == 0).then(|| output::severity_colour(cell)).flatten()
                            },
                        );
                        println!(
                            "{}, {} at or above {:?} (after exceptions)",
                            output::count(findings.len(), "finding"),
                            failing.len(),
                            fail_on
                        );
                    }
                }
            }
            Ok(if failing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The id people look for first: the CVE when the advisory has one as an alias
/// (`CVE-2018-1000656 (PYSEC-2018-28)`), else the advisory's own id.
fn display_id(id: &str, aliases: &[String]) -> String {
    if id.starts_with("CVE-") {
        return id.to_owned();
    }
    match aliases.iter().find(|a| a.starts_with("CVE-")) {
        Some(cve) => format!("{cve} ({id})"),
        None => id.to_owned(),
    }
}

/// Accepted risks: `explicit`, else `.custos/vuln-exceptions.toml` beside what was scanned
/// (shared by `vulns scan` and `iac scan`).
pub fn load_exceptions(explicit: Option<PathBuf>, scanned: &Path) -> Result<Option<Exceptions>> {
    let path = explicit.or_else(|| {
        let dir = if scanned.is_dir() {
            scanned.to_path_buf()
        } else {
            scanned.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        Some(dir.join(".custos/vuln-exceptions.toml")).filter(|p| p.exists())
    });
    let Some(p) = path else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    Exceptions::parse(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// Today as `YYYY-MM-DD` (UTC), the date exceptions expire on.
pub fn today() -> String {
    let now = custos_core::time::format_rfc3339(custos_core::time::now_ms());
    now[..10.min(now.len())].to_owned()
}

/// Components from an SBOM document, or from the lockfiles under a path.
fn components_of(path: &Path, filter: &crate::sbom::FilterArgs) -> Result<Vec<sbom::Component>> {
    if path.is_file() && path.extension().and_then(|e| e.to_str()) == Some("json") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(c) = sbom::components_from_document(&doc, &path.display().to_string()) {
                if c.is_empty() {
                    bail!(
                        "{}: the SBOM lists no component with a package URL, so there is nothing to check; \
                         write it again from the project or image (custos sbom, syft -o cyclonedx-json, trivy --format cyclonedx)",
                        path.display()
                    );
                }
                return Ok(c);
            }
        }
    }
    let found = crate::sbom::scan_tree(path, filter)?;
    for w in &found.warnings {
        eprintln!("warning: {}: {}", w.file, w.message);
    }
    crate::sbom::require_manifests(path, &found)?;
    Ok(found.components)
}

#[cfg(test)]
mod display_tests {
    use super::display_id;

    #[test]
    fn the_cve_alias_comes_first() {
        let aliases = vec![
            "GHSA-562c-5r94-xh97".to_string(),
            "CVE-2018-1000656".to_string(),
        ];
        assert_eq!(
            display_id("PYSEC-2018-28", &aliases),
            "CVE-2018-1000656 (PYSEC-2018-28)"
        );
        assert_eq!(display_id("CVE-2018-1000656", &aliases), "CVE-2018-1000656");
        assert_eq!(display_id("RUSTSEC-2023-0089", &[]), "RUSTSEC-2023-0089");
    }
}
