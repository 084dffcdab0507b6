//! Software bill of materials: catalogers that read lockfiles and manifests with real
//! parsers, a component model with package URLs and dependency edges, and CycloneDX 1.6 /
//! SPDX 2.3 JSON output. Catalogers never fail the whole scan: a broken file becomes a
//! warning naming it, and the rest goes on.

mod catalog;
pub mod format;
pub mod ml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use catalog::{catalog_file, catalog_kind, catalog_text};

/// One package (or model, or dataset) found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    /// purl type: cargo, npm, pypi, golang, maven, deb, apk, …
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub purl: String,
    /// Direct dependency of the project (`Some(false)`: transitive; `None`: unknown).
    pub direct: Option<bool>,
    /// purls this component depends on.
    pub depends_on: Vec<String>,
    /// The file it was found in, relative to the scanned root.
    pub source: String,
    /// A root of the project itself (a workspace member), not a dependency.
    pub is_root: bool,
    /// The name advisories use when it differs from the package's own (Debian and Alpine
    /// advisories name source packages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advisory_name: Option<String>,
    /// The OSV ecosystem with its release ("Debian:12", "Alpine:v3.18") when the package
    /// database says which release it is; advisories for other releases then do not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advisory_ecosystem: Option<String>,
    /// Models and datasets: hash, format, parameters, card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ml::Artifact>,
    /// Needed only to develop the project (reached only through dev-dependencies): it does
    /// not ship. Set where the project's manifests say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
    /// A requirement that names no exact version (`flask>=2.0`): its constraint, with
    /// `version` empty; `*` when it has none. Such a package cannot be checked for
    /// vulnerabilities until it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_range: Option<String>,
    /// In an image: the layer that installed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::image::Layer>,
}

/// A file that could not be read or parsed.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Sbom {
    pub components: Vec<Component>,
    pub warnings: Vec<Warning>,
    /// Files read, by cataloger.
    pub files: BTreeMap<String, Vec<String>>,
    /// Files a cataloger reads that were left out as test fixtures.
    pub fixtures_left_out: Vec<String>,
}

/// Which files a scan leaves out: `--exclude` globs (gitignore syntax, matched against
/// paths relative to the scanned root), and test fixtures unless asked for.
#[derive(Debug, Default)]
pub struct Filter {
    exclude: Option<ignore::overrides::Override>,
    pub include_fixtures: bool,
}

/// Folders whose lockfiles and manifests are test data, not what ships.
const FIXTURE_DIRS: [&str; 5] = ["tests", "testdata", "test-data", "fixtures", "__fixtures__"];

impl Filter {
    /// A filter of `globs` (`vendor/**`, `*.lock`, `docs/`); an invalid glob is named.
    pub fn new(root: &Path, globs: &[String], include_fixtures: bool) -> Result<Filter, String> {
        let exclude = if globs.is_empty() {
            None
        } else {
            let mut b = ignore::overrides::OverrideBuilder::new(root);
            for g in globs {
                // An override glob selects; `!` makes it an exclusion, as --exclude means.
                b.add(&format!("!{g}"))
                    .map_err(|e| format!("--exclude {g:?}: {e}"))?;
            }
            Some(b.build().map_err(|e| format!("--exclude: {e}"))?)
        };
        Ok(Filter {
            exclude,
            include_fixtures,
        })
    }

    /// The `--exclude` globs as a walker takes them.
    pub fn overrides(&self) -> Option<&ignore::overrides::Override> {
        self.exclude.as_ref()
    }

    /// Whether `rel` (relative to the root, `/`-separated) is left out by `--exclude`.
    pub fn excludes(&self, rel: &str, is_dir: bool) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|o| o.matched(rel, is_dir).is_ignore())
    }

    /// Whether `rel` lies under a test-fixture folder.
    pub fn is_fixture(rel: &str) -> bool {
        let mut parts: Vec<&str> = rel.split('/').collect();
        parts.pop();
        parts.iter().any(|p| FIXTURE_DIRS.contains(p))
    }
}

/// Percent-encodes a purl segment (purl spec: keep unreserved chars).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pkg:TYPE/[NAMESPACE/]NAME@VERSION`, with each part encoded.
pub fn purl(ecosystem: &str, namespace: Option<&str>, name: &str, version: &str) -> String {
    let ns = namespace
        .map(|n| n.split('/').map(purl_encode).collect::<Vec<_>>().join("/") + "/")
        .unwrap_or_default();
    if version.is_empty() {
        format!("pkg:{ecosystem}/{ns}{}", purl_encode(name))
    } else {
        format!(
            "pkg:{ecosystem}/{ns}{}@{}",
            purl_encode(name),
            purl_encode(version)
        )
    }
}

fn purl_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && s.is_char_boundary(i + 1) && s.is_char_boundary(i + 3)
        {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A component from a package URL (as found in a CycloneDX or SPDX document): the
/// ecosystem, the name as custos' catalogers write it, and the version.
pub fn component_from_purl(purl: &str, source: &str) -> Option<Component> {
    let rest = purl.strip_prefix("pkg:")?;
    let qualifiers: BTreeMap<String, String> = rest
        .split('#')
        .next()
        .and_then(|r| r.split_once('?'))
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), purl_decode(v)))
                .collect()
        })
        .unwrap_or_default();
    let rest = rest.split(['?', '#']).next()?;
    let (path, version) = match rest.rsplit_once('@') {
        Some((p, v)) if !p.is_empty() => (p, purl_decode(v)),
        _ => (rest, String::new()),
    };
    let (ty, name_path) = path.split_once('/')?;
    let segments: Vec<String> = name_path.split('/').map(purl_decode).collect();
    let ty = ty.to_ascii_lowercase();
    let os_package = matches!(ty.as_str(), "deb" | "apk" | "rpm");
    let name = match ty.as_str() {
        "maven" => segments.join(":"),
        "pypi" => pypi_purl_name(&segments.join("/")),
        // The namespace of an OS package is its vendor (`debian`), not part of its name.
        _ if os_package => segments.last().cloned().unwrap_or_default(),
        _ => segments.join("/"),
    };
    if name.is_empty() {
        return None;
    }
    let (advisory_name, advisory_ecosystem) = if os_package {
        let vendor = (segments.len() > 1).then(|| segments[0].to_ascii_lowercase());
        (
            qualifiers
                .get("upstream")
                .map(|u| u.split(['@', ' ']).next().unwrap_or(u).to_owned())
                .filter(|u| !u.is_empty() && *u != name),
            qualifiers
                .get("distro")
                .and_then(|d| osv_release(&ty, vendor.as_deref(), d)),
        )
    } else {
        (None, None)
    };
    Some(Component {
        version_range: None,
        ecosystem: ty,
        name,
        version,
        purl: purl.to_string(),
        direct: None,
        depends_on: Vec::new(),
        source: source.to_string(),
        is_root: false,
        advisory_name,
        advisory_ecosystem,
        artifact: None,
        dev: false,
        layer: None,
    })
}

/// The OSV ecosystem of a purl's `distro` qualifier: `debian-12` (Syft) or `debian-12.4`,
/// `alpine-3.18.4`, or a bare `3.18.4` (Trivy) read with the vendor. Other distributions'
/// advisories are matched without a release, as custos' own catalogers do.
fn osv_release(ty: &str, vendor: Option<&str>, distro: &str) -> Option<String> {
    let (name, release) = match distro.split_once('-') {
        Some((n, r)) if !n.is_empty() && !n.starts_with(|c: char| c.is_ascii_digit()) => {
            (n.to_ascii_lowercase(), r)
        }
        _ => (vendor?.to_owned(), distro),
    };
    let mut parts = release.split('.');
    let major = parts
        .next()
        .filter(|m| m.bytes().all(|b| b.is_ascii_digit()) && !m.is_empty())?;
    match (ty, name.as_str()) {
        ("deb", "debian") => Some(format!("Debian:{major}")),
        ("apk", "alpine") => Some(format!("Alpine:v{major}.{}", parts.next()?)),
        _ => None,
    }
}

/// Components of a CycloneDX or SPDX JSON document, by their purls.
pub fn components_from_document(doc: &serde_json::Value, source: &str) -> Option<Vec<Component>> {
    if doc.get("bomFormat").and_then(|v| v.as_str()) == Some("CycloneDX") {
        fn walk(list: &serde_json::Value, source: &str, out: &mut Vec<Component>) {
            for c in list.as_array().into_iter().flatten() {
                if let Some(p) = c.get("purl").and_then(|v| v.as_str()) {
                    let Some(mut found) = component_from_purl(p, source) else {
                        if let Some(nested) = c.get("components") {
                            walk(nested, source, out);
                        }
                        continue;
                    };
                    // Trivy names an OS package's source package in a property.
                    let src = c
                        .get("properties")
                        .and_then(|p| p.as_array())
                        .into_iter()
                        .flatten()
                        .find(|p| {
                            p.get("name").and_then(|n| n.as_str())
                                == Some("aquasecurity:trivy:SrcName")
                        })
                        .and_then(|p| p.get("value").and_then(|v| v.as_str()));
                    if let Some(s) = src.filter(|s| !s.is_empty() && *s != found.name) {
                        if found.advisory_name.is_none() {
                            found.advisory_name = Some(s.to_owned());
                        }
                    }
                    out.push(found);
                }
                if let Some(nested) = c.get("components") {
                    walk(nested, source, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(
            doc.get("components").unwrap_or(&serde_json::Value::Null),
            source,
            &mut out,
        );
        return Some(out);
    }
    if doc.get("spdxVersion").is_some() {
        let out = doc
            .get("packages")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .flat_map(|p| {
                p.get("externalRefs")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
            })
            .filter(|r| r.get("referenceType").and_then(|t| t.as_str()) == Some("purl"))
            .filter_map(|r| r.get("referenceLocator").and_then(|l| l.as_str()))
            .filter_map(|p| component_from_purl(p, source))
            .collect();
        return Some(out);
    }
    None
}

/// A PyPI name as the purl specification writes it: lowercased, `_` as `-`, dots kept
/// (`boolean.py`), so that custos' purls equal other tools'. Matching uses [`pypi_name`].
pub fn pypi_purl_name(name: &str) -> String {
    name.trim().to_lowercase().replace('_', "-")
}

/// PEP 503 name normalization (how PyPI compares names; advisories are indexed by it).
pub fn pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.extend(c.to_lowercase());
            last_sep = false;
        }
    }
    out
}

/// Catalogs every known manifest and lockfile under `root` (respecting
/// `.gitignore`), or `root` itself when it is a file; test fixtures are left out.
pub fn scan(root: &Path) -> Sbom {
    scan_filtered(root, &Filter::default())
}

/// [`scan`] with `--exclude` globs and the choice about test fixtures.
pub fn scan_filtered(root: &Path, filter: &Filter) -> Sbom {
    let mut sbom = Sbom::default();
    let files: Vec<PathBuf> = if root.is_file() {
        vec![root.to_path_buf()]
    } else {
        let mut walk = ignore::WalkBuilder::new(root);
        if let Some(o) = &filter.exclude {
            walk.overrides(o.clone());
        }
        walk.hidden(false)
            .git_ignore(true)
            .filter_entry(|e| !matches!(e.file_name().to_str(), Some(".git" | "target")))
            .build()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
            .map(|e| e.into_path())
            .collect()
    };
    let mut sorted = files;
    sorted.sort();
    for path in sorted {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let rel = if rel.is_empty() {
            path.to_string_lossy().into_owned()
        } else {
            rel
        };
        let rel = rel.replace('\\', "/");
        // A file named on its own is read whatever folder it is in.
        if !filter.include_fixtures && !root.is_file() && Filter::is_fixture(&rel) {
            if catalog_kind(&rel).is_some() {
                sbom.fixtures_left_out.push(rel);
            }
            continue;
        }
        match catalog_file(&path, &rel).or_else(|| ml::catalog(&path, &rel)) {
            None => {}
            Some((kind, Ok(components))) => {
                sbom.files.entry(kind.to_string()).or_default().push(rel);
                sbom.components.extend(components);
            }
            Some((kind, Err(message))) => {
                sbom.files
                    .entry(kind.to_string())
                    .or_default()
                    .push(rel.clone());
                sbom.warnings.push(Warning { file: rel, message });
            }
        }
    }
    sbom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_package_purls_keep_their_source_package_and_release() {
        // Syft: vendor namespace, `upstream` (sometimes with a version), `distro`.
        let c = component_from_purl(
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl&distro=debian-12",
            "s",
        )
        .unwrap();
        assert_eq!(c.name, "libssl3");
        assert_eq!(c.advisory_name.as_deref(), Some("openssl"));
        assert_eq!(c.advisory_ecosystem.as_deref(), Some("Debian:12"));
        let c = component_from_purl(
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?upstream=glibc%402.36-9&distro=debian-12.4",
            "s",
        )
        .unwrap();
        assert_eq!(c.version, "2.36-9+deb12u4");
        assert_eq!(c.advisory_name.as_deref(), Some("glibc"));
        assert_eq!(c.advisory_ecosystem.as_deref(), Some("Debian:12"));
        // Trivy: a bare release number.
        let c = component_from_purl(
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=3.18.4",
            "s",
        )
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.advisory_ecosystem.as_deref()),
            ("musl", Some("Alpine:v3.18"))
        );
        // Trivy's CycloneDX names the source package in a property.
        let doc = serde_json::json!({"bomFormat": "CycloneDX", "components": [
            {"purl": "pkg:deb/debian/libssl3@3.0.11-1?distro=debian-12",
             "properties": [{"name": "aquasecurity:trivy:SrcName", "value": "openssl"}]}]});
        let c = components_from_document(&doc, "t.json").unwrap();
        assert_eq!(c[0].advisory_name.as_deref(), Some("openssl"));
        // Not an OS package: the namespace is part of the name, as before.
        let c = component_from_purl("pkg:npm/%40babel/core@7.0.0?x=1", "s").unwrap();
        assert_eq!((c.name.as_str(), c.advisory_name), ("@babel/core", None));
    }

    #[test]
    fn purls_are_encoded() {
        assert_eq!(
            purl("npm", Some("@babel"), "core", "7.0.0"),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(
            purl("cargo", None, "serde", "1.0.0+build"),
            "pkg:cargo/serde@1.0.0%2Bbuild"
        );
        assert_eq!(
            purl("golang", Some("github.com/pkg"), "errors", "v0.9.1"),
            "pkg:golang/github.com/pkg/errors@v0.9.1"
        );
        assert_eq!(pypi_name("Django_REST.framework"), "django-rest-framework");
        assert_eq!(
            pypi_purl_name("Django_REST.framework"),
            "django-rest.framework"
        );
        assert_eq!(
            component_from_purl("pkg:pypi/boolean.py@5.0", "bom.json")
                .unwrap()
                .name,
            "boolean.py"
        );
        let c = component_from_purl("pkg:npm/%40babel/core@7.0.0?x=1", "s").unwrap();
        assert_eq!(
            (c.ecosystem.as_str(), c.name.as_str(), c.version.as_str()),
            ("npm", "@babel/core", "7.0.0")
        );
        let c = component_from_purl("pkg:golang/github.com/pkg/errors@v0.9.1", "s").unwrap();
        assert_eq!(c.name, "github.com/pkg/errors");
        assert!(component_from_purl("npm/x@1", "s").is_none());
        assert_eq!(purl_decode("a%2"), "a%2");
    }
}
