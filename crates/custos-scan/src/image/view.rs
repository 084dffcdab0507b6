//! The file system an image's layers make, applied in order with whiteouts: which layer
//! wrote each path, the contents of the files the SBOM catalogers read, and every version of
//! each package database, so each package is traced to the layer that installed it.

use super::{Entry, Image, ImageError, Layer};
use crate::sbom::{self, Component};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// A file the catalogers read larger than this is left out (and said so).
const MAX_HELD_FILE: u64 = 64 << 20;
/// All held contents together stay under this.
const MAX_HELD_TOTAL: u64 = 1 << 30;
/// Links followed to reach a file.
const MAX_LINK_HOPS: usize = 16;

#[derive(Debug)]
enum Node {
    /// A regular file; its contents when a cataloger reads it.
    File(Option<Arc<Vec<u8>>>),
    Link(String),
    Dir,
}

/// One version of a file: the layer that wrote it and its contents.
type Version = (usize, Arc<Vec<u8>>);

/// The merged file system of an image.
#[derive(Debug, Default)]
pub struct ImageView {
    /// Path → (layer that wrote it, what it is).
    nodes: BTreeMap<String, (usize, Node)>,
    /// Each package database's versions, base first: (layer, contents).
    databases: BTreeMap<String, Vec<Version>>,
    held: u64,
    /// Files left out, and why.
    pub warnings: Vec<String>,
}

/// Whether the SBOM catalogers read `path` (or read it beside a file they catalog).
fn wanted(path: &str) -> bool {
    sbom::catalog_kind(path).is_some()
        || matches!(
            path,
            "etc/os-release" | "usr/lib/os-release" | "etc/debian_version" | "etc/alpine-release"
        )
        || path.ends_with("/Cargo.toml")
        || path == "Cargo.toml"
}

fn is_database(path: &str) -> bool {
    matches!(sbom::catalog_kind(path), Some("dpkg" | "apk"))
}

impl ImageView {
    /// Reads every layer of `image` into the view.
    pub fn build(image: &Image) -> Result<ImageView, ImageError> {
        let mut view = ImageView::default();
        image.walk(|layer, entry| {
            view.apply(layer.index, entry);
            Ok(())
        })?;
        Ok(view)
    }

    /// Applies one layer entry (reading a file's contents only when a cataloger needs them).
    pub fn apply(&mut self, layer: usize, entry: Entry<'_>) {
        match entry {
            Entry::File {
                path,
                size,
                content,
            } => {
                let held = if wanted(path) {
                    self.hold(path, size, content)
                } else {
                    None
                };
                self.put_file(layer, path, held);
            }
            other => self.apply_meta(layer, other),
        }
    }

    /// Applies a file whose contents the caller already read (or chose not to).
    pub fn apply_read(&mut self, layer: usize, path: &str, content: Option<&[u8]>) {
        let held = match content {
            Some(c) if wanted(path) => {
                let mut r: &[u8] = c;
                self.hold(path, c.len() as u64, &mut r)
            }
            _ => None,
        };
        self.put_file(layer, path, held);
    }

    /// Applies an entry that is not a regular file.
    pub fn apply_meta(&mut self, layer: usize, entry: Entry<'_>) {
        match entry {
            Entry::File { path, .. } => self.put_file(layer, path, None),
            Entry::Whiteout(path) => {
                self.remove_under(path, usize::MAX);
                self.nodes.remove(path);
                self.databases.remove(path);
            }
            Entry::Opaque(dir) => self.remove_under(dir, layer),
            Entry::Dir(path) => {
                let replace = !matches!(self.nodes.get(path), Some((_, Node::Dir)));
                if replace {
                    self.nodes.insert(path.to_owned(), (layer, Node::Dir));
                }
            }
            Entry::Link { path, target, hard } => {
                if hard {
                    // A hard link is the same file: share what is held of it.
                    let node = match self.nodes.get(target.trim_start_matches('/')) {
                        Some((_, Node::File(c))) => Node::File(c.clone()),
                        _ => Node::File(None),
                    };
                    self.nodes.insert(path.to_owned(), (layer, node));
                } else {
                    self.nodes
                        .insert(path.to_owned(), (layer, Node::Link(target.to_owned())));
                }
            }
        }
    }

    fn hold(&mut self, path: &str, size: u64, content: &mut dyn Read) -> Option<Arc<Vec<u8>>> {
        if size > MAX_HELD_FILE || self.held + size > MAX_HELD_TOTAL {
            self.warnings.push(format!(
                "{path}: {size} bytes, more than custos reads of one package file; left out"
            ));
            return None;
        }
        let mut buf = Vec::with_capacity(size as usize);
        if let Err(e) = content.take(MAX_HELD_FILE).read_to_end(&mut buf) {
            self.warnings.push(format!("{path}: cannot be read: {e}"));
            return None;
        }
        self.held += buf.len() as u64;
        Some(Arc::new(buf))
    }

    fn put_file(&mut self, layer: usize, path: &str, held: Option<Arc<Vec<u8>>>) {
        if let (Some(c), true) = (&held, is_database(path)) {
            self.databases
                .entry(path.to_owned())
                .or_default()
                .push((layer, c.clone()));
        }
        self.nodes
            .insert(path.to_owned(), (layer, Node::File(held)));
    }

    /// Removes what lies under `dir` from layers before `before` (all of it for a whiteout).
    fn remove_under(&mut self, dir: &str, before: usize) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, (l, _))| *l < before)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
            self.databases.remove(&k);
        }
    }

    /// The layer that wrote `path` as the image finally has it; `None` when it is gone.
    pub fn layer_of(&self, path: &str) -> Option<usize> {
        self.nodes.get(path).map(|(l, _)| *l)
    }

    /// Regular files in the final image.
    pub fn file_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .count()
    }

    /// The contents of `path`, following links inside the image (never outside it).
    fn contents(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        let mut at = path.to_owned();
        for _ in 0..MAX_LINK_HOPS {
            match &self.nodes.get(&at)?.1 {
                Node::File(c) => return c.clone(),
                Node::Dir => return None,
                Node::Link(target) => {
                    let joined = if target.starts_with('/') {
                        target.clone()
                    } else {
                        match at.rsplit_once('/') {
                            Some((d, _)) => format!("{d}/{target}"),
                            None => target.clone(),
                        }
                    };
                    at = normalize(&joined)?;
                }
            }
        }
        None
    }

    /// Which layer installed each package: for a package database, the first layer from
    /// which every later version of the database lists it; for anything else, the layer
    /// that wrote the file it was found in.
    pub fn attribution(&self) -> Attribution {
        let mut packages = HashMap::new();
        for (path, versions) in &self.databases {
            let name = path.rsplit('/').next().unwrap_or(path);
            let mut since: HashMap<(String, String), usize> = HashMap::new();
            for (layer, content) in versions {
                let text = String::from_utf8_lossy(content);
                let Some(Ok(found)) = sbom::catalog_text(name, &text) else {
                    continue;
                };
                let now: std::collections::HashSet<(String, String)> =
                    found.into_iter().map(|c| (c.name, c.version)).collect();
                since.retain(|k, _| now.contains(k));
                for k in now {
                    since.entry(k).or_insert(*layer);
                }
            }
            for ((n, v), l) in since {
                packages.insert((path.clone(), n, v), l);
            }
        }
        Attribution {
            packages,
            files: self
                .nodes
                .iter()
                .map(|(k, (l, _))| (k.clone(), *l))
                .collect(),
        }
    }
}

/// `a/b/../c` → `a/c`, from the image root; `None` if it climbs out.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Writes the files the catalogers read into `dir`, as the image has them.
pub fn materialize(view: &ImageView, dir: &Path) -> Result<usize, ImageError> {
    let mut written = 0;
    for path in view.nodes.keys().filter(|p| wanted(p)) {
        let Some(content) = view.contents(path) else {
            continue;
        };
        let out = dir.join(path);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| super::read_err(parent, e))?;
        }
        std::fs::write(&out, content.as_slice()).map_err(|e| super::read_err(&out, e))?;
        written += 1;
    }
    Ok(written)
}

/// Which layer brought each package and file.
#[derive(Debug, Default)]
pub struct Attribution {
    packages: HashMap<(String, String, String), usize>,
    files: HashMap<String, usize>,
}

impl Attribution {
    /// The layer of a component found in the materialized image.
    pub fn layer<'a>(&self, c: &Component, layers: &'a [Layer]) -> Option<&'a Layer> {
        let at = self
            .packages
            .get(&(c.source.clone(), c.name.clone(), c.version.clone()))
            .or_else(|| self.files.get(&c.source))?;
        layers.get(*at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(view: &mut ImageView, layer: usize, path: &str, text: &str) {
        view.apply_read(layer, path, Some(text.as_bytes()));
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_what_lower_layers_wrote() {
        let mut v = ImageView::default();
        file(&mut v, 0, "app/a.txt", "a");
        file(&mut v, 0, "app/sub/b.txt", "b");
        file(&mut v, 0, "etc/keep", "k");
        v.apply_meta(1, Entry::Whiteout("app/sub"));
        assert_eq!(v.layer_of("app/sub/b.txt"), None);
        assert_eq!(v.layer_of("app/a.txt"), Some(0));
        v.apply_meta(2, Entry::Opaque("app"));
        file(&mut v, 2, "app/new.txt", "n");
        assert_eq!(v.layer_of("app/a.txt"), None);
        assert_eq!(v.layer_of("app/new.txt"), Some(2));
        assert_eq!(v.layer_of("etc/keep"), Some(0));
        // An opaque marker hides only lower layers, not its own layer's files.
        file(&mut v, 3, "srv/x", "x");
        v.apply_meta(3, Entry::Opaque("srv"));
        assert_eq!(v.layer_of("srv/x"), Some(3));
    }

    #[test]
    fn links_are_followed_inside_the_image_only() {
        let mut v = ImageView::default();
        file(
            &mut v,
            0,
            "usr/lib/os-release",
            "ID=debian\nVERSION_ID=\"12\"\n",
        );
        v.apply_meta(
            0,
            Entry::Link {
                path: "etc/os-release",
                target: "../usr/lib/os-release",
                hard: false,
            },
        );
        v.apply_meta(
            1,
            Entry::Link {
                path: "etc/debian_version",
                target: "/../../../../etc/hostname",
                hard: false,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        materialize(&v, dir.path()).unwrap();
        let os = std::fs::read_to_string(dir.path().join("etc/os-release")).unwrap();
        assert!(os.contains("debian"));
        assert!(!dir.path().join("etc/debian_version").exists());
    }

    #[test]
    fn each_package_is_traced_to_the_layer_that_installed_it() {
        let pkg = |name: &str| {
            format!("Package: {name}\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\n")
        };
        let mut v = ImageView::default();
        let db = "var/lib/dpkg/status";
        file(&mut v, 0, db, &(pkg("base-files") + &pkg("bash")));
        file(&mut v, 1, "app/requirements.txt", "flask==2.0.0\n");
        file(
            &mut v,
            2,
            db,
            &(pkg("base-files") + &pkg("bash") + &pkg("curl")),
        );
        // Removed in layer 3 and installed again in layer 4: layer 4 brought it.
        file(&mut v, 3, db, &(pkg("base-files") + &pkg("curl")));
        file(
            &mut v,
            4,
            db,
            &(pkg("base-files") + &pkg("curl") + &pkg("bash")),
        );
        let a = v.attribution();
        let layers: Vec<Layer> = (0..5)
            .map(|i| Layer {
                index: i,
                digest: format!("sha256:{i}"),
                created_by: None,
            })
            .collect();
        let comp = |name: &str, source: &str| Component {
            ecosystem: "deb".into(),
            name: name.into(),
            version: "1.0".into(),
            purl: String::new(),
            direct: None,
            depends_on: Vec::new(),
            source: source.into(),
            is_root: false,
            advisory_name: None,
            advisory_ecosystem: None,
            artifact: None,
            dev: false,
            version_range: None,
            layer: None,
        };
        let at = |c: &Component| a.layer(c, &layers).map(|l| l.index);
        assert_eq!(at(&comp("base-files", db)), Some(0));
        assert_eq!(at(&comp("curl", db)), Some(2));
        assert_eq!(at(&comp("bash", db)), Some(4));
        assert_eq!(at(&comp("flask", "app/requirements.txt")), Some(1));
    }
}
