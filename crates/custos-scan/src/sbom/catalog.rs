//! Catalogers: one parser per lockfile or manifest format, each turning the file into
//! components with purls, direct/transitive marks and dependency edges where the format
//! records them. Errors name what is wrong; the caller reports them and goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{purl, pypi_name, pypi_purl_name, Component};

/// Files larger than this are not lockfiles anyone wrote; refuse rather than parse.
const MAX_MANIFEST: u64 = 256 << 20;

type Catalog = Result<Vec<Component>, String>;

/// The cataloger for `path` by its file name, and its result; `None` when
/// the file is not a format custos reads.
pub fn catalog_file(path: &Path, rel: &str) -> Option<(&'static str, Catalog)> {
    let name = path.file_name()?.to_str()?;
    let in_dist_info = path
        .parent()
        .and_then(|p| p.extension())
        .is_some_and(|e| e == "dist-info");
    let kind = kind_of(name, rel, in_dist_info)?;
    let text = match read(path) {
        Ok(t) => t,
        Err(e) => return Some((kind, Err(e))),
    };
    let result = match kind {
        "cargo-lock" => cargo_lock(&text, rel).map(|mut c| {
            mark_cargo_dev(path, &mut c);
            c
        }),
        "npm-lock" => npm_lock(&text, rel),
        "poetry-lock" | "uv-lock" | "pdm-lock" => python_toml_lock(&text, rel),
        "pipfile-lock" => pipfile_lock(&text, rel),
        "go-mod" => go_mod(&text, rel),
        "go-sum" => go_sum(&text, rel),
        "yarn-lock" => yarn_lock(&text, rel),
        "pnpm-lock" => pnpm_lock(&text, rel),
        "gradle-lock" => gradle_lock(&text, rel),
        "maven-pom" => maven_pom(&text, rel),
        "dpkg" => dpkg_status(&text, rel, path),
        "apk" => apk_installed(&text, rel, path),
        "python-dist-info" => dist_info(&text, rel),
        _ => requirements(&text, rel),
    };
    Some((kind, result))
}

/// The cataloger that reads the file at `rel` (a `/`-separated path), if one does.
pub fn catalog_kind(rel: &str) -> Option<&'static str> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    kind_of(name, rel, dir.ends_with(".dist-info"))
}

fn kind_of(name: &str, rel: &str, in_dist_info: bool) -> Option<&'static str> {
    Some(match name {
        "Cargo.lock" => "cargo-lock",
        "package-lock.json" | "npm-shrinkwrap.json" => "npm-lock",
        "poetry.lock" => "poetry-lock",
        "uv.lock" => "uv-lock",
        "pdm.lock" => "pdm-lock",
        "Pipfile.lock" => "pipfile-lock",
        "go.mod" => "go-mod",
        "go.sum" => "go-sum",
        "yarn.lock" => "yarn-lock",
        "pnpm-lock.yaml" => "pnpm-lock",
        "gradle.lockfile" => "gradle-lock",
        "pom.xml" => "maven-pom",
        "status" if rel.ends_with("var/lib/dpkg/status") => "dpkg",
        "installed" if rel.ends_with("lib/apk/db/installed") => "apk",
        "METADATA" if in_dist_info => "python-dist-info",
        n if n.starts_with("requirements") && n.ends_with(".txt") => "requirements",
        _ => return None,
    })
}

/// Runs the cataloger for a file called `name` over `text` (for fuzzing and tests; OS
/// package databases are recognized by name alone here).
pub fn catalog_text(name: &str, text: &str) -> Option<Catalog> {
    let p = Path::new("/nonexistent");
    Some(match name {
        "Cargo.lock" => cargo_lock(text, name),
        "package-lock.json" => npm_lock(text, name),
        "poetry.lock" | "uv.lock" | "pdm.lock" => python_toml_lock(text, name),
        "Pipfile.lock" => pipfile_lock(text, name),
        "go.mod" => go_mod(text, name),
        "go.sum" => go_sum(text, name),
        "yarn.lock" => yarn_lock(text, name),
        "pnpm-lock.yaml" => pnpm_lock(text, name),
        "gradle.lockfile" => gradle_lock(text, name),
        "pom.xml" => maven_pom(text, name),
        "status" => dpkg_status(text, name, p),
        "installed" => apk_installed(text, name, p),
        "METADATA" => dist_info(text, name),
        "requirements.txt" => requirements(text, name),
        _ => return None,
    })
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
        advisory_name: None,
        advisory_ecosystem: None,
        artifact: None,
        dev: false,
        version_range: None,
        layer: None,
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

/// A workspace member's dependency names from its Cargo.toml: (normal and build, dev).
fn cargo_manifest_deps(manifest: &toml::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut normal = BTreeSet::new();
    let mut dev = BTreeSet::new();
    let mut tables: Vec<&toml::Value> = vec![manifest];
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        tables.extend(targets.values());
    }
    for t in tables {
        for (key, is_dev) in [
            ("dependencies", false),
            ("build-dependencies", false),
            ("build_dependencies", false),
            ("dev-dependencies", true),
            ("dev_dependencies", true),
        ] {
            let set = if is_dev { &mut dev } else { &mut normal };
            for (name, spec) in t
                .get(key)
                .and_then(toml::Value::as_table)
                .into_iter()
                .flatten()
            {
                // A renamed dependency names its package in `package`.
                let package = spec.get("package").and_then(toml::Value::as_str);
                set.insert(package.unwrap_or(name).to_string());
            }
        }
    }
    (normal, dev)
}

/// Marks the Cargo.lock packages that only dev-dependencies reach. Cargo.lock does not say
/// which dependencies are dev-only, the members' manifests do; when a member's manifest
/// cannot be found or read, nothing is marked.
fn mark_cargo_dev(lock: &Path, components: &mut [Component]) {
    let Some(dir) = lock.parent() else { return };
    let read = |p: &Path| -> Option<toml::Value> {
        let text = std::fs::read_to_string(p).ok()?;
        toml::from_str(&text).ok()
    };
    let Some(root) = read(&dir.join("Cargo.toml")) else {
        return;
    };
    let mut manifests = vec![root.clone()];
    let members = root
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array);
    for m in members
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str)
    {
        // Only a trailing `*` is expanded; it covers how workspaces are laid out in practice.
        let dirs: Vec<std::path::PathBuf> = match m.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => std::fs::read_dir(dir.join(prefix))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect(),
            _ => vec![dir.join(m)],
        };
        manifests.extend(dirs.iter().filter_map(|d| read(&d.join("Cargo.toml"))));
    }
    let mut deps: HashMap<String, (BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
    for m in &manifests {
        if let Some(name) = m
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
        {
            deps.insert(name.to_string(), cargo_manifest_deps(m));
        }
    }
    if components
        .iter()
        .any(|c| c.is_root && !deps.contains_key(&c.name))
    {
        return;
    }
    let index: HashMap<String, usize> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.purl.clone(), i))
        .collect();
    let mut reached = vec![false; components.len()];
    let mut todo: Vec<usize> = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if c.is_root {
            reached[i] = true;
            todo.push(i);
        }
    }
    while let Some(i) = todo.pop() {
        let c = &components[i];
        // A member's lock entry lists its dev-dependencies too; only the others ship.
        let normal = c.is_root.then(|| &deps[&c.name].0);
        for d in &c.depends_on {
            if let Some(&j) = index.get(d) {
                if !reached[j] && normal.is_none_or(|n| n.contains(&components[j].name)) {
                    reached[j] = true;
                    todo.push(j);
                }
            }
        }
    }
    for (c, r) in components.iter_mut().zip(reached) {
        c.dev = !r;
    }
}

/// Marks as dev-only every component that no runtime root reaches through `depends_on`:
/// for lockfiles that record which top-level dependencies are for development but not which
/// packages only those pull in (uv, pnpm 9).
fn mark_dev_unless_reached(components: &mut [Component], runtime_roots: &BTreeSet<String>) {
    let index: HashMap<&str, usize> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.purl.as_str(), i))
        .collect();
    let mut reached = vec![false; components.len()];
    let mut todo: Vec<usize> = runtime_roots
        .iter()
        .filter_map(|p| index.get(p.as_str()).copied())
        .collect();
    for &i in &todo {
        reached[i] = true;
    }
    while let Some(i) = todo.pop() {
        for d in &components[i].depends_on {
            if let Some(&j) = index.get(d.as_str()) {
                if !reached[j] {
                    reached[j] = true;
                    todo.push(j);
                }
            }
        }
    }
    for (c, r) in components.iter_mut().zip(reached) {
        c.dev = !r && !c.is_root;
    }
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
            // `dev` marks what only devDependencies need; `devOptional` is also needed by an
            // optional runtime dependency, so it ships.
            c.dev = meta.get("dev").and_then(Value::as_bool) == Some(true);
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
            c.dev = meta.get("dev").and_then(Value::as_bool) == Some(true);
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

/// `requirements*.txt`: `name[extras]==version` lines are packages at that version; a
/// requirement with a range (`flask>=2.0`) or none (`flask`) is listed without a version and
/// with its constraint as `version_range`; options (`-r`, `-e`, `--hash`) and direct URL
/// references are not packages from an index and are skipped.
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
        // PEP 508: the name, optional [extras], then the version specifiers.
        let name_end = spec
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(spec.len());
        let (name, rest) = spec.split_at(name_end);
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map_or("", |(_, after)| after).trim(),
            None => rest,
        };
        if rest.starts_with('@') || rest.contains("://") {
            continue;
        }
        let constraint: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
        let constraint = constraint.trim_start_matches('(').trim_end_matches(')');
        let exact = constraint
            .strip_prefix("===")
            .or_else(|| constraint.strip_prefix("=="))
            .filter(|v| !v.is_empty() && !v.contains([',', '*']));
        let mut c = match exact {
            Some(version) => component("pypi", None, &pypi_purl_name(name), version, rel),
            None => {
                let mut c = component("pypi", None, &pypi_purl_name(name), "", rel);
                c.version_range = Some(if constraint.is_empty() {
                    "*".to_owned()
                } else {
                    constraint.to_owned()
                });
                c
            }
        };
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
    /// poetry before 1.5: `"main"` or `"dev"`.
    #[serde(default)]
    category: Option<String>,
    /// pdm: the dependency groups that need the package (`"default"` is the runtime one).
    #[serde(default)]
    groups: Option<Vec<String>>,
    /// uv, on the project itself: extras, which ship when asked for.
    #[serde(default, rename = "optional-dependencies")]
    optional_dependencies: Option<toml::Value>,
}

/// poetry.lock, uv.lock and pdm.lock: TOML `[[package]]` tables.
fn python_toml_lock(text: &str, rel: &str) -> Catalog {
    let lock: PyLock =
        toml::from_str(text).map_err(|e| format!("not a Python lockfile: {}", e.message()))?;
    // Dependencies name packages in any spelling; PEP 503 finds the one meant.
    let version_of: HashMap<String, (String, String)> = lock
        .package
        .iter()
        .filter_map(|p| {
            Some((
                pypi_name(&p.name),
                (pypi_purl_name(&p.name), p.version.clone()?),
            ))
        })
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
        let mut c = component("pypi", None, &pypi_purl_name(&p.name), version, rel);
        c.is_root = is_root;
        c.dev = p.category.as_deref() == Some("dev")
            || p.groups
                .as_ref()
                .is_some_and(|g| !g.iter().any(|g| g == "default"));
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
                version_of
                    .get(&pypi_name(d))
                    .map(|(n, v)| purl("pypi", None, n, v))
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
        // uv lists a project's development groups apart (`dev-dependencies`), so what its
        // runtime dependencies and extras do not reach is for development only.
        let mut runtime = roots;
        for p in &lock.package {
            let extras = p
                .optional_dependencies
                .as_ref()
                .and_then(toml::Value::as_table);
            for dep in extras.into_iter().flat_map(|t| t.values()) {
                for name in dep
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.get("name").and_then(toml::Value::as_str))
                {
                    if let Some((n, v)) = version_of.get(&pypi_name(name)) {
                        runtime.insert(purl("pypi", None, n, v));
                    }
                }
            }
        }
        mark_dev_unless_reached(&mut out, &runtime);
    }
    Ok(out)
}

/// Pipfile.lock: JSON, `default` (runtime) and `develop` sections, `"version": "==x"`.
fn pipfile_lock(text: &str, rel: &str) -> Catalog {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut out: Vec<Component> = Vec::new();
    let mut seen = BTreeSet::new();
    for section in ["default", "develop"] {
        let Some(pkgs) = v.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, meta) in pkgs {
            let Some(version) = meta.get("version").and_then(Value::as_str) else {
                continue;
            };
            let version = version.trim_start_matches("==").trim();
            let mut c = component("pypi", None, &pypi_purl_name(name), version, rel);
            // Pipfile.lock flattens the tree: whether a package is direct is not recorded.
            c.direct = None;
            // A package in both sections ships; `default` comes first.
            c.dev = section == "develop";
            if seen.insert(c.purl.clone()) {
                out.push(c);
            }
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

/// go.sum: `module version[/go.mod] h1:hash` lines; the module itself (not only its
/// go.mod) being listed means its code is in the build.
fn go_sum(text: &str, rel: &str) -> Catalog {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let (Some(path), Some(version), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(format!("line {}: expected `module version hash`", i + 1));
        };
        if !hash.starts_with("h1:") {
            return Err(format!("line {}: unknown hash {hash:?}", i + 1));
        }
        if version.ends_with("/go.mod") || !seen.insert((path.to_string(), version.to_string())) {
            continue;
        }
        let (ns, name) = match path.rsplit_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, path),
        };
        out.push(component("golang", ns, name, version, rel));
    }
    Ok(out)
}

// ---------------------------------------------------------------- yarn

/// `name@range` → name (scoped names keep their leading `@`).
fn spec_name(spec: &str) -> &str {
    let spec = spec.trim().trim_matches('"');
    // The first character is skipped whole: a scope's `@`, or any other (maybe multi-byte).
    let skip = spec.chars().next().map_or(0, char::len_utf8);
    match spec[skip..].find('@') {
        Some(i) => &spec[..i + skip],
        None => spec,
    }
}

/// yarn.lock: classic (v1, its own indented format) or berry (v2+, YAML).
fn yarn_lock(text: &str, rel: &str) -> Catalog {
    if text.contains("__metadata:") {
        return yarn_berry(text, rel);
    }
    // Classic: unindented `"a@^1", a@~1.2:` headers, then indented fields.
    struct Entry {
        specs: Vec<String>,
        version: Option<String>,
        deps: Vec<(String, String)>,
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut in_deps = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 0 {
            let Some(head) = t.strip_suffix(':') else {
                return Err(format!(
                    "line {}: expected `spec:` at the start of an entry",
                    i + 1
                ));
            };
            let specs = head
                .split(", ")
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect();
            entries.push(Entry {
                specs,
                version: None,
                deps: Vec::new(),
            });
            in_deps = false;
            continue;
        }
        let Some(e) = entries.last_mut() else {
            return Err(format!("line {}: a field before any entry", i + 1));
        };
        if indent == 2 {
            in_deps = matches!(t, "dependencies:" | "optionalDependencies:");
            if let Some(v) = t.strip_prefix("version ") {
                e.version = Some(v.trim().trim_matches('"').to_string());
            }
        } else if in_deps {
            let (n, r) = t.split_once(' ').unwrap_or((t, ""));
            e.deps.push((
                n.trim_matches('"').to_string(),
                r.trim().trim_matches('"').to_string(),
            ));
        }
    }
    let mut by_spec: HashMap<String, String> = HashMap::new();
    for e in &entries {
        if let Some(v) = &e.version {
            for s in &e.specs {
                by_spec.insert(s.clone(), npm_purl(spec_name(s), v).2);
            }
        }
    }
    let mut out = Vec::new();
    for e in &entries {
        let (Some(v), Some(first)) = (&e.version, e.specs.first()) else {
            continue;
        };
        let mut c = npm_component(spec_name(first), v, rel);
        c.depends_on = e
            .deps
            .iter()
            .filter_map(|(n, r)| by_spec.get(&format!("{n}@{r}")).cloned())
            .collect();
        out.push(c);
    }
    Ok(out)
}

fn yarn_berry(text: &str, rel: &str) -> Catalog {
    let v: serde_json::Value =
        serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let map = v
        .as_object()
        .ok_or("not a yarn lockfile: the top level is not a mapping")?;
    let mut by_spec: HashMap<String, String> = HashMap::new();
    let mut entries = Vec::new();
    for (key, meta) in map {
        if key == "__metadata" {
            continue;
        }
        let Some(version) = meta.get("version").and_then(|x| {
            x.as_str()
                .map(str::to_string)
                .or_else(|| x.as_f64().map(|f| f.to_string()))
        }) else {
            continue;
        };
        let resolution = meta.get("resolution").and_then(Value::as_str).unwrap_or("");
        // Workspaces and links are the project itself, not dependencies.
        let root = resolution.contains("@workspace:") || resolution.contains("@link:");
        let name = spec_name(key.split(", ").next().unwrap_or(key)).to_string();
        let p = npm_purl(&name, &version).2;
        for s in key.split(", ") {
            by_spec.insert(s.trim().to_string(), p.clone());
        }
        entries.push((name, version, root, meta));
    }
    let mut out = Vec::new();
    for (name, version, root, meta) in entries {
        let mut c = npm_component(&name, &version, rel);
        c.is_root = root;
        if let Some(deps) = meta.get("dependencies").and_then(Value::as_object) {
            c.depends_on = deps
                .iter()
                .filter_map(|(n, r)| {
                    let r = r.as_str().unwrap_or("");
                    let range = if r.contains(':') {
                        r.to_string()
                    } else {
                        format!("npm:{r}")
                    };
                    by_spec.get(&format!("{n}@{range}")).cloned()
                })
                .collect();
        }
        out.push(c);
    }
    Ok(out)
}

// ---------------------------------------------------------------- pnpm

/// pnpm-lock.yaml v5–v9: package keys `/name/1.0.0` (v5), `/name@1.0.0` (v6),
/// `name@1.0.0` (v9), with peer suffixes in parentheses or after `_`.
fn pnpm_key(key: &str) -> Option<(String, String)> {
    let k = key.trim_start_matches('/');
    let k = k.split('(').next()?;
    if let Some(i) = k[1.min(k.len())..].find('@').map(|i| i + 1) {
        let (n, v) = (&k[..i], &k[i + 1..]);
        return Some((n.to_string(), v.split('_').next()?.to_string()));
    }
    let (n, v) = k.rsplit_once('/')?;
    Some((n.to_string(), v.split('_').next()?.to_string()))
}

fn pnpm_lock(text: &str, rel: &str) -> Catalog {
    let v: Value = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let packages = v.get("packages").and_then(Value::as_object);
    let snapshots = v.get("snapshots").and_then(Value::as_object);
    // Direct dependencies: importers (v6+) or top-level sections (v5); those not under
    // devDependencies are the runtime roots.
    let mut direct: BTreeSet<String> = BTreeSet::new();
    let mut runtime: BTreeSet<String> = BTreeSet::new();
    let mut add_direct = |deps: &Value| {
        for section in ["dependencies", "devDependencies", "optionalDependencies"] {
            if let Some(m) = deps.get(section).and_then(Value::as_object) {
                for (name, spec) in m {
                    let ver = spec
                        .get("version")
                        .and_then(Value::as_str)
                        .or_else(|| spec.as_str())
                        .unwrap_or("");
                    let ver = ver
                        .split('(')
                        .next()
                        .unwrap_or(ver)
                        .split('_')
                        .next()
                        .unwrap_or(ver);
                    let p = npm_purl(name, ver).2;
                    if section != "devDependencies" {
                        runtime.insert(p.clone());
                    }
                    direct.insert(p);
                }
            }
        }
    };
    match v.get("importers").and_then(Value::as_object) {
        Some(imps) => imps.values().for_each(&mut add_direct),
        None => add_direct(&v),
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (key, meta) in packages
        .into_iter()
        .flatten()
        .chain(snapshots.into_iter().flatten())
    {
        let Some((name, version)) = pnpm_key(key) else {
            continue;
        };
        let mut c = npm_component(&name, &version, rel);
        let deps = meta.get("dependencies").and_then(Value::as_object);
        let edges: Vec<String> = deps
            .into_iter()
            .flatten()
            .filter_map(|(n, v)| {
                v.as_str().map(|v| {
                    npm_purl(
                        n,
                        v.split('(')
                            .next()
                            .unwrap_or(v)
                            .split('_')
                            .next()
                            .unwrap_or(v),
                    )
                    .2
                })
            })
            .collect();
        if !seen.insert(c.purl.clone()) {
            if let Some(prev) = out.iter_mut().find(|p: &&mut Component| p.purl == c.purl) {
                prev.depends_on.extend(edges);
            }
            continue;
        }
        c.direct = Some(direct.contains(&c.purl));
        c.dev = meta.get("dev").and_then(Value::as_bool) == Some(true);
        c.depends_on = edges;
        out.push(c);
    }
    // pnpm 9 dropped the per-package `dev` flag: tell by what the runtime roots reach.
    let flagged = packages
        .into_iter()
        .flatten()
        .any(|(_, m)| m.get("dev").is_some());
    if !flagged && v.get("importers").is_some() {
        mark_dev_unless_reached(&mut out, &runtime);
    }
    Ok(out)
}

// ---------------------------------------------------------------- OS packages

/// The distribution id from `etc/os-release` next to a package database.
fn os_release(db_path: &Path, levels_up: usize) -> Option<(String, Option<String>)> {
    let mut root = db_path;
    for _ in 0..levels_up {
        root = root.parent()?;
    }
    let text = std::fs::read_to_string(root.join("etc/os-release")).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim_matches('"').to_string())
    };
    Some((field("ID=")?, field("VERSION_ID=")))
}

/// RFC 822-style paragraphs (dpkg status) or `K:value` lines (apk): fields per paragraph.
fn paragraphs(text: &str, sep: char) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: HashMap<String, String> = HashMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue; // continuation lines (descriptions)
        }
        if let Some((k, v)) = line.split_once(sep) {
            last = k.trim().to_string();
            cur.insert(last.clone(), v.trim().to_string());
        } else if let Some(v) = cur.get_mut(&last) {
            v.push_str(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Which distribution release a package database belongs to.
struct OsRelease {
    distro: String,
    /// `&distro=debian-12` for purls, empty when the release is unknown.
    qualifier: String,
    /// The OSV ecosystem with its release ("Debian:12", "Alpine:v3.18").
    osv: Option<String>,
}

impl OsRelease {
    fn read(path: &Path, default: &str, osv: impl Fn(&str, &str) -> Option<String>) -> OsRelease {
        let (distro, release) = os_release(path, 4).unwrap_or_else(|| (default.into(), None));
        OsRelease {
            qualifier: release
                .as_deref()
                .map(|r| format!("&distro={distro}-{r}"))
                .unwrap_or_default(),
            osv: release.as_deref().and_then(|r| osv(&distro, r)),
            distro,
        }
    }

    /// An installed package of this release; `source` is the name advisories use.
    fn package(
        &self,
        ty: &str,
        name: &str,
        version: &str,
        arch: Option<&String>,
        source: Option<String>,
        rel: &str,
    ) -> Component {
        let mut c = component(ty, Some(&self.distro), name, version, rel);
        c.name = name.to_string();
        // Qualifiers in key order, as the purl specification writes them; `upstream` names
        // the source package advisories use (Syft writes it too), so an SBOM scans as well
        // as the root file system it came from.
        let mut q = Vec::new();
        if let Some(arch) = arch {
            q.push(format!("arch={}", super::purl_encode(arch)));
        }
        if !self.qualifier.is_empty() {
            q.push(self.qualifier.trim_start_matches('&').to_owned());
        }
        if let Some(s) = source.as_deref().filter(|s| *s != name) {
            q.push(format!("upstream={}", super::purl_encode(s)));
        }
        if !q.is_empty() {
            c.purl.push('?');
            c.purl.push_str(&q.join("&"));
        }
        c.advisory_ecosystem = self.osv.clone();
        c.advisory_name = source;
        c
    }
}

/// Debian's `/var/lib/dpkg/status`: installed packages only.
fn dpkg_status(text: &str, rel: &str, path: &Path) -> Catalog {
    // OSV names Debian releases by major number: "Debian:12".
    let os = OsRelease::read(path, "debian", |distro, r| {
        (distro == "debian").then(|| format!("Debian:{}", r.split('.').next().unwrap_or(r)))
    });
    let mut out = Vec::new();
    for p in paragraphs(text, ':') {
        let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
            continue;
        };
        if p.get("Status")
            .is_some_and(|s| !s.ends_with("installed") || s.contains("not-installed"))
        {
            continue;
        }
        // Advisories name the source package: "Source: openssl (3.0.11-1)" → openssl.
        let source = p
            .get("Source")
            .map(|s| s.split_whitespace().next().unwrap_or(s).to_string());
        out.push(os.package("deb", name, version, p.get("Architecture"), source, rel));
    }
    Ok(out)
}

/// Alpine's `/lib/apk/db/installed`: `P:` name, `V:` version, `A:` arch, `o:` origin.
fn apk_installed(text: &str, rel: &str, path: &Path) -> Catalog {
    // OSV names Alpine releases by branch: VERSION_ID 3.18.4 → "Alpine:v3.18".
    let os = OsRelease::read(path, "alpine", |distro, r| {
        let mut parts = r.split('.');
        (distro == "alpine")
            .then(|| Some(format!("Alpine:v{}.{}", parts.next()?, parts.next()?)))
            .flatten()
    });
    let mut out = Vec::new();
    for p in paragraphs(text, ':') {
        let (Some(name), Some(version)) = (p.get("P"), p.get("V")) else {
            continue;
        };
        out.push(os.package("apk", name, version, p.get("A"), p.get("o").cloned(), rel));
    }
    Ok(out)
}

/// An installed Python distribution: `*.dist-info/METADATA` headers.
fn dist_info(text: &str, rel: &str) -> Catalog {
    let header = text.split("\n\n").next().unwrap_or("");
    let field = |k: &str| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    match (field("Name:"), field("Version:")) {
        (Some(n), Some(v)) => Ok(vec![component("pypi", None, &pypi_purl_name(&n), &v, rel)]),
        _ => Err("METADATA without Name and Version".into()),
    }
}

/// Maven `pom.xml`: the project and its declared dependencies, with `${…}` resolved from
/// the POM's own properties, project and parent coordinates, and dependencyManagement.
fn maven_pom(text: &str, rel: &str) -> Catalog {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut props: HashMap<String, String> = HashMap::new();
    let mut deps: Vec<HashMap<String, String>> = Vec::new();
    let mut managed: Vec<HashMap<String, String>> = Vec::new();
    let mut current: Option<HashMap<String, String>> = None;
    let mut root_element: Option<String> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("not XML at byte {}: {e}", reader.error_position()))?;
        match ev {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if name == "dependency" {
                    current = Some(HashMap::new());
                }
                if root_element.is_none() {
                    root_element = Some(name.clone());
                }
                path.push(name);
                if path.len() > 64 {
                    return Err("XML nested deeper than 64 levels".into());
                }
            }
            Event::End(_) => {
                if path.last().map(String::as_str) == Some("dependency") {
                    if let Some(d) = current.take() {
                        if path.iter().any(|p| p == "dependencyManagement") {
                            managed.push(d);
                        } else if path.iter().any(|p| p == "plugin") {
                            // Plugin dependencies are build tools, not what ships.
                        } else {
                            deps.push(d);
                        }
                    }
                }
                path.pop();
            }
            Event::Text(t) => {
                let value = t
                    .decode()
                    .map_err(|e| format!("bad text: {e}"))?
                    .trim()
                    .to_string();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["project", "properties", key] => {
                        props.insert((*key).to_string(), value);
                    }
                    ["project", field @ ("groupId" | "artifactId" | "version")] => {
                        props.insert(format!("project.{field}"), value);
                    }
                    ["project", "parent", field @ ("groupId" | "version")] => {
                        props.insert(format!("project.parent.{field}"), value);
                    }
                    [.., "dependency", field] => {
                        if let Some(d) = current.as_mut() {
                            d.insert((*field).to_string(), value);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => {
                if let Some(open) = path.last() {
                    return Err(format!("truncated: the file ends inside <{open}>"));
                }
                break;
            }
            _ => {}
        }
    }
    if root_element.as_deref() != Some("project") {
        return Err("not a Maven POM (no <project>)".into());
    }
    for k in ["groupId", "version"] {
        if !props.contains_key(&format!("project.{k}")) {
            if let Some(v) = props.get(&format!("project.parent.{k}")).cloned() {
                props.insert(format!("project.{k}"), v);
            }
        }
    }
    let resolve = |v: &str| -> String {
        let mut out = v.to_string();
        for _ in 0..8 {
            let Some(start) = out.find("${") else { break };
            let Some(len) = out[start..].find('}') else {
                break;
            };
            let key = out[start + 2..start + len].to_string();
            let key = key
                .strip_prefix("pom.")
                .map(|k| format!("project.{k}"))
                .unwrap_or(key);
            match props.get(&key) {
                Some(val) => out.replace_range(start..start + len + 1, val),
                None => break,
            }
        }
        if out.contains("${") {
            String::new()
        } else {
            out
        }
    };
    let mut out = Vec::new();
    if let (Some(g), Some(a)) = (
        props.get("project.groupId"),
        props.get("project.artifactId"),
    ) {
        let v = resolve(props.get("project.version").map_or("", String::as_str));
        let mut c = component("maven", Some(&resolve(g)), &resolve(a), &v, rel);
        c.name = format!("{}:{}", resolve(g), resolve(a));
        c.is_root = true;
        out.push(c);
    }
    let managed_version = |g: &str, a: &str| {
        managed
            .iter()
            .find(|m| {
                m.get("groupId").map(String::as_str) == Some(g)
                    && m.get("artifactId").map(String::as_str) == Some(a)
            })
            .and_then(|m| m.get("version").cloned())
    };
    for d in &deps {
        let (Some(g), Some(a)) = (d.get("groupId"), d.get("artifactId")) else {
            continue;
        };
        let (g, a) = (resolve(g), resolve(a));
        let v = resolve(
            &d.get("version")
                .cloned()
                .or_else(|| managed_version(&g, &a))
                .unwrap_or_default(),
        );
        let mut c = component("maven", Some(&g), &a, &v, rel);
        c.name = format!("{g}:{a}");
        c.direct = Some(true);
        out.push(c);
    }
    let root = out.iter().find(|c| c.is_root).map(|c| c.purl.clone());
    if let (Some(_), Some(r)) = (out.first(), root) {
        let edges: Vec<String> = out
            .iter()
            .filter(|c| !c.is_root)
            .map(|c| c.purl.clone())
            .collect();
        if let Some(rc) = out.iter_mut().find(|c| c.purl == r) {
            rc.depends_on = edges;
        }
    }
    Ok(out)
}

/// Gradle's `gradle.lockfile`: `group:artifact:version=configurations`.
fn gradle_lock(text: &str, rel: &str) -> Catalog {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("empty=") {
            continue;
        }
        let coords = line.split('=').next().unwrap_or(line);
        let parts: Vec<&str> = coords.split(':').collect();
        let [group, artifact, version] = parts[..] else {
            return Err(format!("line {}: expected group:artifact:version", i + 1));
        };
        let mut c = component("maven", Some(group), artifact, version, rel);
        c.name = format!("{group}:{artifact}");
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_dev_only_packages_come_from_the_members_manifests() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"crates/*\"]\n",
        )
        .unwrap();
        let app = d.path().join("crates/app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(
            app.join("Cargo.toml"),
            "[package]\nname = \"app\"\n[dependencies]\njson = { package = \"serde_json\", version = \"1\" }\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n[dev-dependencies]\nassert_cmd = \"2\"\nlibc = \"0.2\"\n",
        )
        .unwrap();
        let reg = "source = \"registry+https://github.com/rust-lang/crates.io-index\"";
        let lock = format!(
            "version = 3\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"assert_cmd\", \"libc\", \"serde_json\"]\n\
             [[package]]\nname = \"assert_cmd\"\nversion = \"2.0.0\"\n{reg}\ndependencies = [\"bstr\", \"libc\"]\n\
             [[package]]\nname = \"bstr\"\nversion = \"1.0.0\"\n{reg}\n\
             [[package]]\nname = \"libc\"\nversion = \"0.2.0\"\n{reg}\n\
             [[package]]\nname = \"serde_json\"\nversion = \"1.0.0\"\n{reg}\n"
        );
        std::fs::write(d.path().join("Cargo.lock"), &lock).unwrap();
        let dev_of = || {
            let found = crate::sbom::scan(&d.path().join("Cargo.lock"));
            assert!(found.warnings.is_empty(), "{:?}", found.warnings);
            let mut dev: Vec<(String, bool)> = found
                .components
                .iter()
                .map(|c| (c.name.clone(), c.dev))
                .collect();
            dev.sort();
            dev
        };
        let want = |names: &[&str]| -> Vec<(String, bool)> {
            ["app", "assert_cmd", "bstr", "libc", "serde_json"]
                .iter()
                .map(|n| (n.to_string(), names.contains(n)))
                .collect()
        };
        // Renamed and target-specific dependencies ship; a crate both normal and dev ships.
        assert_eq!(dev_of(), want(&["assert_cmd", "bstr"]));
        // Without the member's manifest nothing can be told apart.
        std::fs::remove_file(app.join("Cargo.toml")).unwrap();
        assert_eq!(dev_of(), want(&[]));
    }

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
                "pkg:pypi/flask",
                "pkg:pypi/numpy@1.26.0"
            ]
        );
        // Issue 29 (13): unpinned requirements are listed with their constraint, not dropped.
        assert_eq!(c[2].version, "");
        assert_eq!(c[2].version_range.as_deref(), Some(">=2"));
        let loose = "six\nhttpx [http2] >= 0.27, < 1 ; python_version >= '3.8'\nmine @ https://example.com/mine.whl\n-e .\nweird==1.*\n";
        let c = requirements(loose, "requirements.txt").unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = c
            .iter()
            .map(|x| {
                (
                    x.name.as_str(),
                    x.version.as_str(),
                    x.version_range.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("six", "", Some("*")),
                ("httpx", "", Some(">=0.27,<1")),
                ("weird", "", Some("==1.*")),
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

    #[test]
    fn yarn_classic_and_berry() {
        let v1 = "# yarn lockfile v1\n\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\":\n  version \"7.12.13\"\n  resolved \"https://registry.yarnpkg.com/x\"\n  dependencies:\n    \"@babel/highlight\" \"^7.12.13\"\n\n\"@babel/highlight@^7.12.13\":\n  version \"7.13.10\"\n\nms@2.1.2:\n  version \"2.1.2\"\n";
        let c = yarn_lock(v1, "yarn.lock").unwrap();
        assert_eq!(c[0].purl, "pkg:npm/%40babel/code-frame@7.12.13");
        assert_eq!(c[0].depends_on, ["pkg:npm/%40babel/highlight@7.13.10"]);
        assert_eq!(c[2].purl, "pkg:npm/ms@2.1.2");
        assert!(yarn_lock("  version \"1\"\n", "y").is_err());
        let berry = "__metadata:\n  version: 6\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n  resolution: \"app@workspace:.\"\n  dependencies:\n    ms: ^2.1.0\n\n\"ms@npm:^2.1.0\":\n  version: 2.1.3\n  resolution: \"ms@npm:2.1.3\"\n";
        let c = yarn_lock(berry, "yarn.lock").unwrap();
        let app = c.iter().find(|x| x.name == "app").unwrap();
        assert!(app.is_root);
        assert_eq!(app.depends_on, ["pkg:npm/ms@2.1.3"]);
    }

    /// Each lockfile's own notion of development-only packages, and what ships regardless.
    #[test]
    fn dev_only_packages_per_lockfile() {
        let dev = |c: &[Component]| -> Vec<String> {
            let mut d: Vec<String> = c.iter().filter(|c| c.dev).map(|c| c.name.clone()).collect();
            d.sort();
            d
        };
        let npm3 = r#"{"lockfileVersion":3,"packages":{"":{"dependencies":{"lodash":"^4"},"devDependencies":{"jest":"^29"}},
            "node_modules/lodash":{"version":"4.17.21"},
            "node_modules/jest":{"version":"29.0.0","dev":true,"dependencies":{"ci-info":"^3"}},
            "node_modules/ci-info":{"version":"3.9.0","dev":true},
            "node_modules/fsevents":{"version":"2.3.3","devOptional":true,"optional":true}}}"#;
        assert_eq!(dev(&npm_lock(npm3, "l").unwrap()), ["ci-info", "jest"]);
        let npm1 = r#"{"lockfileVersion":1,"dependencies":{"jest":{"version":"29.0.0","dev":true},"lodash":{"version":"4.17.21"}}}"#;
        assert_eq!(dev(&npm_lock(npm1, "l").unwrap()), ["jest"]);

        let pipfile = r#"{"default":{"requests":{"version":"==2.31.0"}},
            "develop":{"pytest":{"version":"==8.0.0"},"requests":{"version":"==2.31.0"}}}"#;
        let c = pipfile_lock(pipfile, "Pipfile.lock").unwrap();
        assert_eq!(c.len(), 2, "a package in both sections is listed once");
        assert_eq!(dev(&c), ["pytest"]);

        let poetry =
            "[[package]]\nname = \"requests\"\nversion = \"2.31.0\"\ncategory = \"main\"\n\
                      [[package]]\nname = \"pytest\"\nversion = \"8.0.0\"\ncategory = \"dev\"\n";
        assert_eq!(
            dev(&python_toml_lock(poetry, "poetry.lock").unwrap()),
            ["pytest"]
        );
        let pdm = "[[package]]\nname = \"requests\"\nversion = \"2.31.0\"\ngroups = [\"default\", \"test\"]\n\
                   [[package]]\nname = \"pytest\"\nversion = \"8.0.0\"\ngroups = [\"test\"]\n";
        assert_eq!(dev(&python_toml_lock(pdm, "pdm.lock").unwrap()), ["pytest"]);

        let uv = r#"version = 1
[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "requests" }]
[package.optional-dependencies]
speed = [{ name = "orjson" }]
[package.dev-dependencies]
dev = [{ name = "pytest" }]
[[package]]
name = "requests"
version = "2.31.0"
dependencies = [{ name = "urllib3" }]
[[package]]
name = "urllib3"
version = "2.2.0"
[[package]]
name = "orjson"
version = "3.10.0"
[[package]]
name = "pytest"
version = "8.0.0"
dependencies = [{ name = "pluggy" }, { name = "urllib3" }]
[[package]]
name = "pluggy"
version = "1.5.0"
"#;
        assert_eq!(
            dev(&python_toml_lock(uv, "uv.lock").unwrap()),
            ["pluggy", "pytest"]
        );

        let v6 = "lockfileVersion: '6.0'\nimporters:\n  .:\n    dependencies:\n      lodash:\n        specifier: ^4\n        version: 4.17.21\npackages:\n  /lodash@4.17.21:\n    dev: false\n  /@types/node@20.1.0:\n    dev: true\n";
        assert_eq!(
            dev(&pnpm_lock(v6, "pnpm-lock.yaml").unwrap()),
            ["@types/node"]
        );
        let v9 = "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      debug:\n        specifier: ^4\n        version: 4.3.4\n    devDependencies:\n      typescript:\n        specifier: ^5\n        version: 5.4.0\npackages:\n  debug@4.3.4: {}\n  ms@2.1.2: {}\n  typescript@5.4.0: {}\nsnapshots:\n  debug@4.3.4:\n    dependencies:\n      ms: 2.1.2\n  ms@2.1.2: {}\n  typescript@5.4.0: {}\n";
        assert_eq!(
            dev(&pnpm_lock(v9, "pnpm-lock.yaml").unwrap()),
            ["typescript"]
        );
    }

    #[test]
    fn yarn_spec_names_never_split_a_character() {
        assert_eq!(spec_name("\"@babel/core@^7.0.0\""), "@babel/core");
        assert_eq!(spec_name("lodash@^4"), "lodash");
        assert_eq!(spec_name("¢@1"), "¢");
        assert_eq!(spec_name("¢"), "¢");
        assert_eq!(spec_name(""), "");
        // The fuzzer's find: a header starting with a multi-byte character.
        assert!(yarn_lock("\u{a2}\t%:\n  version \"1\"\n", "yarn.lock").is_ok());
    }

    #[test]
    fn pnpm_v6_and_v9() {
        let v6 = "lockfileVersion: '6.0'\nimporters:\n  .:\n    dependencies:\n      lodash:\n        specifier: ^4.17.21\n        version: 4.17.21\npackages:\n  /lodash@4.17.21:\n    resolution: {integrity: sha512-x}\n  /@types/node@20.1.0:\n    dev: true\n";
        let c = pnpm_lock(v6, "pnpm-lock.yaml").unwrap();
        let lodash = c
            .iter()
            .find(|x| x.purl == "pkg:npm/lodash@4.17.21")
            .unwrap();
        assert_eq!(lodash.direct, Some(true));
        assert!(c
            .iter()
            .any(|x| x.purl == "pkg:npm/%40types/node@20.1.0" && x.direct == Some(false)));
        let v9 = "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      debug:\n        specifier: ^4\n        version: 4.3.4\npackages:\n  debug@4.3.4:\n    resolution: {integrity: x}\n  ms@2.1.2:\n    resolution: {integrity: y}\nsnapshots:\n  debug@4.3.4:\n    dependencies:\n      ms: 2.1.2\n  ms@2.1.2: {}\n";
        let c = pnpm_lock(v9, "pnpm-lock.yaml").unwrap();
        let debug = c.iter().find(|x| x.name == "debug").unwrap();
        assert_eq!(debug.depends_on, ["pkg:npm/ms@2.1.2"]);
        assert_eq!(
            c.iter().find(|x| x.name == "ms").unwrap().direct,
            Some(false)
        );
        let v5 = "lockfileVersion: 5.4\ndependencies:\n  once: 1.4.0\npackages:\n  /once/1.4.0:\n    dependencies:\n      wrappy: 1.0.2\n  /wrappy/1.0.2: {}\n";
        let c = pnpm_lock(v5, "p").unwrap();
        let once = c.iter().find(|x| x.purl == "pkg:npm/once@1.4.0").unwrap();
        assert_eq!(once.direct, Some(true));
        assert_eq!(once.depends_on, ["pkg:npm/wrappy@1.0.2"]);
        assert!(pnpm_lock("packages: [", "p").is_err());
    }

    #[test]
    fn os_packages_python_dists_and_gradle() {
        let status = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl (3.0.11-1)\nVersion: 3.0.11-1~deb12u2\nDescription: x\n more text\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n";
        let c = dpkg_status(
            status,
            "var/lib/dpkg/status",
            Path::new("/nonexistent/var/lib/dpkg/status"),
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].purl,
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl"
        );
        assert_eq!(c[0].advisory_name.as_deref(), Some("openssl"));
        let apk =
            "C:Q1x\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:libcrypto3\nV:3.1.4-r0\no:openssl\n";
        let c = apk_installed(
            apk,
            "lib/apk/db/installed",
            Path::new("/nonexistent/lib/apk/db/installed"),
        )
        .unwrap();
        assert_eq!(
            c[1].purl,
            "pkg:apk/alpine/libcrypto3@3.1.4-r0?upstream=openssl"
        );
        assert_eq!(c[1].advisory_name.as_deref(), Some("openssl"));
        let meta =
            "Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\n\nlong description Name: nope";
        assert_eq!(
            dist_info(meta, "x").unwrap()[0].purl,
            "pkg:pypi/requests@2.31.0"
        );
        assert!(dist_info("garbage", "x").is_err());
        let g = "# comment\ncom.google.guava:guava:32.1.2-jre=compileClasspath,runtimeClasspath\nempty=annotationProcessor\n";
        let c = gradle_lock(g, "gradle.lockfile").unwrap();
        assert_eq!(c[0].purl, "pkg:maven/com.google.guava/guava@32.1.2-jre");
        assert_eq!(c[0].name, "com.google.guava:guava");
        assert!(gradle_lock("a:b\n", "g").is_err());
    }

    #[test]
    fn go_sum_modules() {
        let sum = "github.com/pkg/errors v0.9.1 h1:FEBLx1zS214owpjy7qsBeixbURkuhQAwrK5UwLGTwt4=\ngithub.com/pkg/errors v0.9.1/go.mod h1:bwawxfHBFNV+L2hUp1rHADufV3IMtnDRdf1r5NINEl0=\ngolang.org/x/text v0.3.0/go.mod h1:x=\n";
        let c = go_sum(sum, "go.sum").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].purl, "pkg:golang/github.com/pkg/errors@v0.9.1");
        assert!(go_sum("a b c\n", "go.sum").is_err());
    }

    #[test]
    fn maven_pom_properties_and_management() {
        let pom = r#"<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <parent><groupId>org.example</groupId><artifactId>parent</artifactId><version>2.0.0</version></parent>
  <artifactId>app</artifactId>
  <properties><jackson.version>2.15.2</jackson.version></properties>
  <dependencyManagement><dependencies>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.9</version></dependency>
  </dependencies></dependencyManagement>
  <dependencies>
    <dependency><groupId>com.fasterxml.jackson.core</groupId><artifactId>jackson-databind</artifactId><version>${jackson.version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId></dependency>
    <dependency><groupId>org.example</groupId><artifactId>lib</artifactId><version>${project.version}</version></dependency>
  </dependencies>
  <build><plugins><plugin><dependencies><dependency><groupId>x</groupId><artifactId>tool</artifactId><version>1</version></dependency></dependencies></plugin></plugins></build>
</project>"#;
        let c = maven_pom(pom, "pom.xml").unwrap();
        let purls: Vec<&str> = c.iter().map(|x| x.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:maven/org.example/app@2.0.0",
                "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.15.2",
                "pkg:maven/org.slf4j/slf4j-api@2.0.9",
                "pkg:maven/org.example/lib@2.0.0"
            ]
        );
        assert!(c[0].is_root && c[0].depends_on.len() == 3);
        assert_eq!(c[1].name, "com.fasterxml.jackson.core:jackson-databind");
        assert!(maven_pom("<project><a></b></project>", "pom.xml").is_err());
        assert!(maven_pom("<html></html>", "pom.xml")
            .unwrap_err()
            .contains("POM"));
        assert!(maven_pom("<project><dependencies><dependency>", "pom.xml")
            .unwrap_err()
            .contains("truncated"));
    }
}
