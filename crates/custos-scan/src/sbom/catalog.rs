//! Catalogers: one parser per lockfile or manifest format, each turning the file into
//! components with purls, direct/transitive marks and dependency edges where the format
//! records them. Errors name what is wrong; the caller reports them and goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{purl, pypi_name, Component};

/// Files larger than this are not lockfiles anyone wrote; refuse rather than parse.
const MAX_MANIFEST: u64 = 256 << 20;

type Catalog = Result<Vec<Component>, String>;

/// The cataloger for `path` by its file name, and its result; `None` when
/// the file is not a format custos reads.
pub fn catalog_file(path: &Path, rel: &str) -> Option<(&'static str, Catalog)> {
    let name = path.file_name()?.to_str()?;
    let kind: &'static str = match name {
        "Cargo.lock" => "cargo-lock",
        "package-lock.json" | "npm-shrinkwrap.json" => "npm-lock",
        "poetry.lock" => "poetry-lock",
        "uv.lock" => "uv-lock",
        "pdm.lock" => "pdm-lock",
        "Pipfile.lock" => "pipfile-lock",
        "go.mod" => "go-mod",
        n if n.starts_with("requirements") && n.ends_with(".txt") => "requirements",
        _ => return None,
    };
    let text = match read(path) {
        Ok(t) => t,
        Err(e) => return Some((kind, Err(e))),
    };
    let result = match kind {
        "cargo-lock" => cargo_lock(&text, rel),
        "npm-lock" => npm_lock(&text, rel),
        "poetry-lock" | "uv-lock" | "pdm-lock" => python_toml_lock(&text, rel),
        "pipfile-lock" => pipfile_lock(&text, rel),
        "go-mod" => go_mod(&text, rel),
        _ => requirements(&text, rel),
    };
    Some((kind, result))
}

fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_MANIFEST {
        return Err(format!(
            "{} bytes is too large for a lockfile (limit {MAX_MANIFEST})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}

fn component(ecosystem: &str, ns: Option<&str>, name: &str, version: &str, rel: &str) -> Component {
    Component {
        ecosystem: ecosystem.into(),
        name: match ns {
            Some(n) => format!("{n}/{name}"),
            None => name.into(),
        },
        version: version.into(),
        purl: purl(ecosystem, ns, name, version),
        direct: None,
        depends_on: Vec::new(),
        source: rel.into(),
        is_root: false,
    }
}

// ---------------------------------------------------------------- Cargo.lock

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    package: Vec<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

fn cargo_lock(text: &str, rel: &str) -> Catalog {
    let lock: CargoLock =
        toml::from_str(text).map_err(|e| format!("not a Cargo.lock: {}", e.message()))?;
    if lock.version.is_some_and(|v| v > 4) {
        return Err(format!(
            "Cargo.lock version {} is newer than custos knows (1–4)",
            lock.version.unwrap_or(0)
        ));
    }
    // A dependency entry is "name", "name version" or "name version (source)".
    let mut by_name: HashMap<&str, Vec<&CargoPackage>> = HashMap::new();
    for p in &lock.package {
        by_name.entry(p.name.as_str()).or_default().push(p);
    }
    let resolve = |dep: &str| -> Option<&CargoPackage> {
        let mut parts = dep.split(' ');
        let name = parts.next()?;
        let version = parts.next();
        let candidates = by_name.get(name)?;
        match version {
            Some(v) => candidates.iter().find(|p| p.version == v).copied(),
            None => candidates.first().copied(),
        }
    };
    let pkg_purl = |p: &CargoPackage| purl("cargo", None, &p.name, &p.version);
    // Workspace members have no source; their dependencies are the direct ones.
    let direct: BTreeSet<String> = lock
        .package
        .iter()
        .filter(|p| p.source.is_none())
        .flat_map(|p| {
            p.dependencies
                .iter()
                .filter_map(|d| resolve(d))
                .filter(|d| d.source.is_some())
                .map(pkg_purl)
        })
        .collect();
    Ok(lock
        .package
        .iter()
        .map(|p| {
            let mut c = component("cargo", None, &p.name, &p.version, rel);
            c.is_root = p.source.is_none();
            c.direct = (!c.is_root).then(|| direct.contains(&c.purl));
            c.depends_on = p
                .dependencies
                .iter()
                .filter_map(|d| resolve(d))
                .map(pkg_purl)
                .collect();
            c
        })
        .collect())
}

// ---------------------------------------------------------------- npm

fn npm_name_from_path(path: &str) -> Option<&str> {
    let i = path.rfind("node_modules/")?;
    Some(&path[i + "node_modules/".len()..])
}

fn npm_purl(name: &str, version: &str) -> (Option<String>, String, String) {
    match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
        Some((scope, n)) => {
            let ns = format!("@{scope}");
            let p = purl("npm", Some(&ns), n, version);
            (Some(ns), n.to_string(), p)
        }
        None => (None, name.to_string(), purl("npm", None, name, version)),
    }
}

fn npm_component(name: &str, version: &str, rel: &str) -> Component {
    let (ns, n, _) = npm_purl(name, version);
    component("npm", ns.as_deref(), &n, version, rel)
}

fn dep_names(v: &Value) -> Vec<String> {
    [
        "dependencies",
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ]
    .iter()
    .filter_map(|k| v.get(*k).and_then(Value::as_object))
    .flat_map(|m| m.keys().cloned())
    .collect()
}

fn npm_lock(text: &str, rel: &str) -> Catalog {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let version = v
        .get("lockfileVersion")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    if version > 3 {
        return Err(format!(
            "lockfileVersion {version} is newer than custos knows (1–3)"
        ));
    }
    if let Some(packages) = v.get("packages").and_then(Value::as_object) {
        // v2/v3: a flat map of install paths.
        let root = packages.get("").cloned().unwrap_or(Value::Null);
        let root_deps: BTreeSet<String> = dep_names(&root).into_iter().collect();
        let mut paths: BTreeMap<&str, (String, String)> = BTreeMap::new();
        for (path, meta) in packages {
            if path.is_empty() || meta.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let Some(name) = meta
                .get("name")
                .and_then(Value::as_str)
                .or_else(|| npm_name_from_path(path))
            else {
                continue;
            };
            let Some(ver) = meta.get("version").and_then(Value::as_str) else {
                continue;
            };
            paths.insert(path.as_str(), (name.to_string(), ver.to_string()));
        }
        // Node's resolution: look in this package's node_modules, then each parent's.
        let resolve = |from: &str, dep: &str| -> Option<String> {
            let mut base = from.to_string();
            loop {
                let candidate = if base.is_empty() {
                    format!("node_modules/{dep}")
                } else {
                    format!("{base}/node_modules/{dep}")
                };
                if let Some((n, v)) = paths.get(candidate.as_str()) {
                    return Some(npm_purl(n, v).2);
                }
                if base.is_empty() {
                    return None;
                }
                base = match base.rfind("/node_modules/") {
                    Some(i) => base[..i].to_string(),
                    None => String::new(),
                };
            }
        };
        let mut out = Vec::new();
        for (path, (name, ver)) in &paths {
            let meta = &packages[*path];
            let mut c = npm_component(name, ver, rel);
            let top = *path == format!("node_modules/{name}");
            c.direct = Some(top && root_deps.contains(name));
            c.depends_on = dep_names(meta)
                .iter()
                .filter_map(|d| resolve(path, d))
                .collect();
            out.push(c);
        }
        return Ok(out);
    }
    // v1: a nested tree of dependencies with `requires`.
    let mut out = Vec::new();
    fn walk(
        deps: &serde_json::Map<String, Value>,
        top: bool,
        rel: &str,
        out: &mut Vec<Component>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 256 {
            return Err("dependency tree nested deeper than 256 levels".into());
        }
        for (name, meta) in deps {
            let Some(ver) = meta.get("version").and_then(Value::as_str) else {
                continue;
            };
            let mut c = npm_component(name, ver, rel);
            c.direct = Some(top);
            if let Some(req) = meta.get("requires").and_then(Value::as_object) {
                // v1 names the required package, not its resolved copy: record by name.
                c.depends_on = req.keys().map(|k| format!("npm:{k}")).collect();
            }
            out.push(c);
            if let Some(nested) = meta.get("dependencies").and_then(Value::as_object) {
                walk(nested, false, rel, out, depth + 1)?;
            }
        }
        Ok(())
    }
    if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        walk(deps, true, rel, &mut out, 0)?;
    }
    // Resolve v1's by-name edges to the (first) purl with that name.
    let by_name: HashMap<String, String> = out
        .iter()
        .rev()
        .map(|c| (c.name.clone(), c.purl.clone()))
        .collect();
    for c in &mut out {
        c.depends_on = c
            .depends_on
            .iter()
            .filter_map(|d| by_name.get(d.trim_start_matches("npm:")).cloned())
            .collect();
    }
    Ok(out)
}

// ---------------------------------------------------------------- Python

/// `requirements*.txt`: pinned `name[extras]==version` lines; options, URLs and
/// unpinned requirements are not packages with a known version and are skipped.
fn requirements(text: &str, rel: &str) -> Catalog {
    let mut out = Vec::new();
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        let spec = line.split(';').next().unwrap_or("").trim();
        let spec = spec.split(" --hash").next().unwrap_or(spec).trim();
        let Some((name, version)) = spec.split_once("===").or_else(|| spec.split_once("==")) else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name).trim();
        let version = version.trim();
        if name.is_empty() || version.is_empty() || version.contains([',', '*', ' ']) {
            continue;
        }
        let mut c = component("pypi", None, &pypi_name(name), version, rel);
        c.direct = Some(true);
        out.push(c);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct PyLock {
    #[serde(default)]
    package: Vec<PyPackage>,
}

#[derive(Deserialize)]
struct PyPackage {
    name: String,
    #[serde(default)]
    version: Option<String>,
    /// uv: `[{name = "x"}]`; poetry: `{x = "^1"}`; pdm: `["x>=1"]`.
    #[serde(default)]
    dependencies: Option<toml::Value>,
    #[serde(default)]
    source: Option<toml::Value>,
}

/// poetry.lock, uv.lock and pdm.lock: TOML `[[package]]` tables.
fn python_toml_lock(text: &str, rel: &str) -> Catalog {
    let lock: PyLock =
        toml::from_str(text).map_err(|e| format!("not a Python lockfile: {}", e.message()))?;
    let version_of: HashMap<String, String> = lock
        .package
        .iter()
        .filter_map(|p| Some((pypi_name(&p.name), p.version.clone()?)))
        .collect();
    let mut out = Vec::new();
    for p in &lock.package {
        let Some(version) = &p.version else { continue };
        // uv marks the project itself with a virtual or editable source.
        let is_root = p
            .source
            .as_ref()
            .and_then(toml::Value::as_table)
            .is_some_and(|s| s.contains_key("virtual") || s.contains_key("editable"));
        let name = pypi_name(&p.name);
        let mut c = component("pypi", None, &name, version, rel);
        c.is_root = is_root;
        let deps: Vec<String> = match &p.dependencies {
            Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
            Some(toml::Value::Array(a)) => a
                .iter()
                .filter_map(|d| match d {
                    toml::Value::Table(t) => t
                        .get("name")
                        .and_then(toml::Value::as_str)
                        .map(str::to_string),
                    toml::Value::String(s) => Some(
                        s.split(|c: char| !(c.is_alphanumeric() || "-_.".contains(c)))
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    ),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        c.depends_on = deps
            .iter()
            .filter_map(|d| {
                let n = pypi_name(d);
                version_of.get(&n).map(|v| purl("pypi", None, &n, v))
            })
            .collect();
        out.push(c);
    }
    // Direct: what a root depends on (uv); unknown otherwise.
    let roots: BTreeSet<String> = out
        .iter()
        .filter(|c| c.is_root)
        .flat_map(|c| c.depends_on.clone())
        .collect();
    if out.iter().any(|c| c.is_root) {
        for c in out.iter_mut().filter(|c| !c.is_root) {
            c.direct = Some(roots.contains(&c.purl));
        }
    }
    Ok(out)
}

/// Pipfile.lock: JSON, `default` (runtime) and `develop` sections, `"version": "==x"`.
fn pipfile_lock(text: &str, rel: &str) -> Catalog {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = Vec::new();
    for section in ["default", "develop"] {
        let Some(pkgs) = v.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, meta) in pkgs {
            let Some(version) = meta.get("version").and_then(Value::as_str) else {
                continue;
            };
            let version = version.trim_start_matches("==").trim();
            let mut c = component("pypi", None, &pypi_name(name), version, rel);
            // Pipfile.lock flattens the tree: whether a package is direct is not recorded.
            c.direct = None;
            out.push(c);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- Go

/// go.mod `require` directives (block or single line); `// indirect` marks transitive.
fn go_mod(text: &str, rel: &str) -> Catalog {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut module = None;
    for (i, raw) in text.lines().enumerate() {
        let (code, comment) = match raw.find("//") {
            Some(p) => (&raw[..p], &raw[p..]),
            None => (raw, ""),
        };
        let line = code.trim();
        let entry = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line.strip_prefix("require") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else {
            if let Some(m) = line.strip_prefix("module") {
                module = Some(m.trim().trim_matches('"').to_string());
            }
            continue;
        };
        if entry.is_empty() {
            continue;
        }
        let mut parts = entry.split_whitespace();
        let (Some(path), Some(version)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "line {}: a require needs a module path and a version",
                i + 1
            ));
        };
        let path = path.trim_matches('"');
        let (ns, name) = match path.rsplit_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, path),
        };
        let mut c = component("golang", ns, name, version, rel);
        c.direct = Some(!comment.contains("indirect"));
        out.push(c);
    }
    let _ = module;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_lock_direct_and_edges() {
        let lock = r#"
version = 3
[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde", "rand 0.8.5"]
[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
[[package]]
name = "rand"
version = "0.8.5"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["libc"]
[[package]]
name = "libc"
version = "0.2.150"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;
        let c = cargo_lock(lock, "Cargo.lock").unwrap();
        let get = |n: &str| c.iter().find(|x| x.name == n).unwrap();
        assert!(get("app").is_root);
        assert_eq!(get("serde").direct, Some(true));
        assert_eq!(get("libc").direct, Some(false));
        assert_eq!(get("rand").depends_on, ["pkg:cargo/libc@0.2.150"]);
        assert!(cargo_lock("[[package]]\nname = 3", "x").is_err());
        assert!(cargo_lock("version = 9\n", "x")
            .unwrap_err()
            .contains("newer"));
    }

    #[test]
    fn npm_lock_v3_resolution_and_scopes() {
        let lock = r#"{"name":"app","lockfileVersion":3,"packages":{
            "":{"name":"app","dependencies":{"@babel/core":"^7","a":"1"}},
            "node_modules/@babel/core":{"version":"7.24.0","dependencies":{"b":"2"}},
            "node_modules/a":{"version":"1.0.0","dependencies":{"b":"1"}},
            "node_modules/a/node_modules/b":{"version":"1.5.0"},
            "node_modules/b":{"version":"2.0.0"}}}"#;
        let c = npm_lock(lock, "package-lock.json").unwrap();
        let get = |p: &str| c.iter().find(|x| x.purl == p).unwrap();
        assert_eq!(get("pkg:npm/%40babel/core@7.24.0").direct, Some(true));
        assert_eq!(get("pkg:npm/b@2.0.0").direct, Some(false));
        assert_eq!(get("pkg:npm/a@1.0.0").depends_on, ["pkg:npm/b@1.5.0"]);
        assert_eq!(
            get("pkg:npm/%40babel/core@7.24.0").depends_on,
            ["pkg:npm/b@2.0.0"]
        );
        let v1 = r#"{"lockfileVersion":1,"dependencies":{"x":{"version":"1.0.0","requires":{"y":"^2"},"dependencies":{"y":{"version":"2.1.0"}}}}}"#;
        let c = npm_lock(v1, "p").unwrap();
        assert_eq!(c[0].depends_on, ["pkg:npm/y@2.1.0"]);
        assert_eq!(c[1].direct, Some(false));
        assert!(npm_lock("{\"lockfileVersion\": 7}", "p")
            .unwrap_err()
            .contains("newer"));
        assert!(npm_lock("{", "p").is_err());
    }

    #[test]
    fn python_formats() {
        let req = "# comment\nDjango==4.2.1 \\\n    --hash=sha256:abc\nrequests[socks]==2.31.0 ; python_version>'3'\nflask>=2\n-r other.txt\nnumpy===1.26.0\n";
        let c = requirements(req, "requirements.txt").unwrap();
        let purls: Vec<&str> = c.iter().map(|x| x.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:pypi/django@4.2.1",
                "pkg:pypi/requests@2.31.0",
                "pkg:pypi/numpy@1.26.0"
            ]
        );
        let uv = r#"
version = 1
[[package]]
name = "proj"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "httpx" }]
[[package]]
name = "httpx"
version = "0.27.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "idna" }]
[[package]]
name = "idna"
version = "3.7"
source = { registry = "https://pypi.org/simple" }
"#;
        let c = python_toml_lock(uv, "uv.lock").unwrap();
        let get = |n: &str| c.iter().find(|x| x.name == n).unwrap();
        assert_eq!(get("httpx").direct, Some(true));
        assert_eq!(get("idna").direct, Some(false));
        assert_eq!(get("httpx").depends_on, ["pkg:pypi/idna@3.7"]);
        let pipfile = r#"{"default":{"Requests":{"version":"==2.31.0"}},"develop":{"pytest":{"version":"==8.0.0"}}}"#;
        assert_eq!(
            pipfile_lock(pipfile, "Pipfile.lock").unwrap()[0].purl,
            "pkg:pypi/requests@2.31.0"
        );
    }

    #[test]
    fn go_mod_requires() {
        let m = "module example.com/app\n\ngo 1.22\n\nrequire (\n\tgithub.com/pkg/errors v0.9.1\n\tgolang.org/x/text v0.14.0 // indirect\n)\nrequire gopkg.in/yaml.v3 v3.0.1\n";
        let c = go_mod(m, "go.mod").unwrap();
        assert_eq!(c[0].purl, "pkg:golang/github.com/pkg/errors@v0.9.1");
        assert_eq!(c[1].direct, Some(false));
        assert_eq!(c[2].purl, "pkg:golang/gopkg.in/yaml.v3@v3.0.1");
        assert!(go_mod("require (\n broken\n)", "go.mod")
            .unwrap_err()
            .contains("line 2"));
    }
}
