//! `custos sbom`: a software bill of materials for a directory, a lockfile or a container
//! image (docker and OCI archives, OCI layouts), as CycloneDX 1.6 or SPDX 2.3 JSON. Exit 0 on success (warnings about broken files go to
//! standard error and the rest is still catalogued), 2 on usage or I/O errors.

use crate::output;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use custos_scan::image::{Image, Source};
use custos_scan::sbom::{self, format::DocumentInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SbomFormat {
    #[value(name = "cyclonedx-json")]
    CyclonedxJson,
    #[value(name = "spdx-json")]
    SpdxJson,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Reads: Cargo.lock, package-lock.json / npm-shrinkwrap.json (v1–v3),
requirements*.txt (pinned), poetry.lock, uv.lock, pdm.lock, Pipfile.lock, go.mod.
Every package gets a package URL; dependency edges and direct/transitive marks come from
the lockfiles that record them. A file that cannot be parsed is named on standard error and
the rest is still catalogued.

Images: `docker-archive:IMG.tar` (docker save), `oci-archive:IMG.tar`, `oci-dir:PATH` (an
OCI image layout), or such a file or directory named bare; `registry:HOST/REPO:TAG` or a
bare `name:tag`, pulled (anonymously, or with CUSTOS_REGISTRY_USERNAME/PASSWORD or Docker's
config.json; plain HTTP only for localhost or hosts in CUSTOS_REGISTRY_HTTP). The layers are applied in order
with whiteouts; each package names the layer that installed it and the Dockerfile
instruction that made the layer (CycloneDX properties custos:layer:*).

Examples:
  custos sbom                                   this directory, CycloneDX to standard output
  custos sbom . --format spdx-json -o sbom.spdx.json
  custos sbom services/api/Cargo.lock -o api.cdx.json
  custos sbom docker-archive:api.tar -o api-image.cdx.json
  custos sbom oci-dir:./layout --platform linux/arm64
  custos sbom registry:ghcr.io/acme/api:1.4 -o api.cdx.json"
)]
pub struct SbomArgs {
    /// Directory (walked, honouring .gitignore), a single lockfile, or an image source.
    #[arg(default_value = ".")]
    path: String,
    /// The platform to read from a multi-platform image (os/arch[/variant]).
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Document format.
    #[arg(long, value_enum, default_value_t = SbomFormat::CyclonedxJson)]
    format: SbomFormat,
    /// Write the document here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also list packages only dev-dependencies need (CycloneDX scope "excluded"); by
    /// default they are left out, as they do not ship. Cargo: read from the members'
    /// Cargo.toml beside Cargo.lock; npm and pnpm: the lockfile's dev flags (pnpm 9: what
    /// only devDependencies reach); Pipfile.lock: `develop`; poetry, pdm, uv: their dev
    /// categories and groups.
    #[arg(long)]
    include_dev: bool,
}

/// Which files `sbom` and `vulns scan` leave out.
#[derive(clap::Args, Debug, Default)]
pub struct FilterArgs {
    /// Leave out paths matching this glob (gitignore syntax, relative to the scanned
    /// directory or the image root; repeatable): `--exclude 'vendor/**' --exclude '*.lock'`.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also read lockfiles and manifests under test-fixture folders (tests/, testdata/,
    /// test-data/, fixtures/, __fixtures__/), which are left out by default: they describe
    /// test data, not what ships.
    #[arg(long)]
    pub include_fixtures: bool,
}

impl FilterArgs {
    pub fn filter(&self, root: &Path) -> Result<sbom::Filter> {
        sbom::Filter::new(root, &self.exclude, self.include_fixtures)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Scans a tree with the filter, saying what was left out as fixtures.
pub fn scan_tree(path: &Path, args: &FilterArgs) -> Result<sbom::Sbom> {
    let found = sbom::scan_filtered(path, &args.filter(path)?);
    say_fixtures(&found);
    Ok(found)
}

fn say_fixtures(found: &sbom::Sbom) {
    let n = found.fixtures_left_out.len();
    if n > 0 {
        let shown: Vec<&str> = found
            .fixtures_left_out
            .iter()
            .take(3)
            .map(String::as_str)
            .collect();
        eprintln!(
            "note: left out {} under test-fixture folders ({}{}); --include-fixtures reads them",
            output::count(n, "lockfile or manifest"),
            shown.join(", "),
            if n > shown.len() { ", …" } else { "" }
        );
    }
}

/// What a scan reads: a tree (or file) as it is, or a container image.
pub enum Target {
    Tree(PathBuf),
    Image(Box<Image>),
}

/// Reads a scan's source argument (see `custos sbom --help`).
pub fn target(arg: &str, platform: &str) -> Result<Target> {
    match Source::parse(arg).map_err(|e| anyhow::anyhow!("{e}"))? {
        Source::Dir(p) => Ok(Target::Tree(p)),
        source => {
            let image = Image::open(&source, Some(platform)).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Target::Image(Box::new(image)))
        }
    }
}

/// The packages of an image; an image in which nothing is found is an error, not an empty
/// answer (a distroless or scratch image, or the wrong file).
pub fn image_sbom(image: &Image, args: &FilterArgs) -> Result<sbom::Sbom> {
    let (found, view) = custos_scan::image::sbom_of(image, &args.filter(Path::new(""))?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    say_fixtures(&found);
    if found.files.is_empty() {
        bail!(
            "{}: no package database, lockfile or manifest custos reads in its {} across {} \
             (dpkg and apk databases, Python dist-info, lockfiles); nothing to list",
            image.name,
            output::count(view.file_count(), "file"),
            output::count(image.layers.len(), "layer")
        );
    }
    eprintln!(
        "{}: {}, {}, {}/{}",
        image.name,
        output::count(image.layers.len(), "layer"),
        output::count(view.file_count(), "file"),
        image.os.as_deref().unwrap_or("?"),
        image.architecture.as_deref().unwrap_or("?")
    );
    Ok(found)
}

pub fn run(args: SbomArgs) -> Result<ExitCode> {
    let (mut found, name) = match target(&args.path, &args.platform)? {
        Target::Tree(path) => {
            let found = scan_tree(&path, &args.filter)?;
            for w in &found.warnings {
                eprintln!("warning: {}: {}", w.file, w.message);
            }
            require_manifests(&path, &found)?;
            let abs = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let name = abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "project".into());
            (found, name)
        }
        Target::Image(image) => {
            let found = image_sbom(&image, &args.filter)?;
            for w in &found.warnings {
                eprintln!("warning: {}: {}", w.file, w.message);
            }
            (found, image.name.clone())
        }
    };
    if !args.include_dev {
        found.components.retain(|c| !c.dev);
    }
    warn_unpinned(
        &found.components,
        "the SBOM lists them without a version (their constraint as custos:version_range)",
    );
    let created = custos_core::time::format_rfc3339(custos_core::time::now_ms());
    let created = created
        .split('.')
        .next()
        .map(|s| format!("{}Z", s.trim_end_matches('Z')))
        .unwrap_or(created);
    let uuid = uuid::Uuid::new_v4().to_string();
    let info = DocumentInfo {
        name: &name,
        created: &created,
        uuid: &uuid,
        tool_version: env!("CARGO_PKG_VERSION"),
    };
    let doc = match args.format {
        SbomFormat::CyclonedxJson => sbom::format::cyclonedx(&found, &info),
        SbomFormat::SpdxJson => sbom::format::spdx(&found, &info),
    };
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match &args.output {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
            let mut by_eco: BTreeMap<&str, usize> = BTreeMap::new();
            let mut seen = std::collections::BTreeSet::new();
            for c in &found.components {
                if seen.insert(&c.purl) {
                    *by_eco.entry(c.ecosystem.as_str()).or_default() += 1;
                }
            }
            let parts: Vec<String> = by_eco.iter().map(|(e, n)| format!("{n} {e}")).collect();
            eprintln!(
                "{} ({}) from {} written to {}",
                output::count(seen.len(), "component"),
                if parts.is_empty() {
                    "none".into()
                } else {
                    parts.join(", ")
                },
                output::count(found.files.values().map(Vec::len).sum::<usize>(), "file"),
                display(p)
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// An SBOM of nothing is a mistake (a wrong path, a tree without lockfiles), not an answer:
/// say what custos reads instead of writing an empty document.
pub fn require_manifests(path: &Path, found: &sbom::Sbom) -> Result<()> {
    if found.files.is_empty() {
        bail!(
            "{}: no lockfile, manifest or package database custos reads (Cargo.lock, package-lock.json, \
             yarn.lock, pnpm-lock.yaml, poetry.lock, uv.lock, pdm.lock, Pipfile.lock, requirements*.txt, \
             go.mod, go.sum, pom.xml, gradle.lockfile, dpkg/apk databases, Python dist-info, model files); \
             point it at a project or an image's root file system",
            path.display()
        );
    }
    Ok(())
}

/// Warns about requirements that name no exact version (listed without one) and returns how
/// many packages that is.
pub fn warn_unpinned(components: &[sbom::Component], consequence: &str) -> usize {
    let mut unpinned: Vec<String> = components
        .iter()
        .filter_map(|c| {
            let range = c.version_range.as_deref()?;
            Some(if range == "*" {
                format!("{} ({})", c.name, c.source)
            } else {
                format!("{}{range} ({})", c.name, c.source)
            })
        })
        .collect();
    unpinned.sort();
    unpinned.dedup();
    if !unpinned.is_empty() {
        let shown: Vec<&str> = unpinned.iter().take(5).map(String::as_str).collect();
        eprintln!(
            "warning: {} not pinned to a version, so {consequence}: {}{}; pin them (pip-compile, uv pip compile, pip freeze) for a complete answer",
            output::count(unpinned.len(), "requirement"),
            shown.join(", "),
            if unpinned.len() > shown.len() {
                format!(" and {} more", unpinned.len() - shown.len())
            } else {
                String::new()
            }
        );
    }
    unpinned.len()
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
