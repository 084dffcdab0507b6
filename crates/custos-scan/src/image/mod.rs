//! Container images as the scanners read them: sources named as Syft and Trivy users write
//! them (`docker-archive:`, `oci-archive:`, `oci-dir:`, `dir:`), the manifest resolved to
//! one platform, and every layer's entries walked in order (gzip, zstd or plain tar), each
//! with the layer and the Dockerfile instruction that made it.

mod registry;
mod view;

pub use view::{materialize, Attribution, ImageView};

use serde::Serialize;
use serde_json::Value;
use std::io::Read;
use std::path::{Component as PathPart, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Source(String),
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    Format(String),
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Where an image (or a plain tree) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A directory or file, scanned as it is.
    Dir(PathBuf),
    /// `docker save` output.
    DockerArchive(PathBuf),
    /// An OCI image layout packed in a tar (`skopeo copy … oci-archive:`).
    OciArchive(PathBuf),
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
    OciDir(PathBuf),
    /// A registry reference (`registry:host/repo:tag`, or `name:tag` that is not a path).
    Registry(String),
}

impl Source {
    /// Reads a source argument. A bare path is looked at: an OCI layout directory, a tar
    /// holding `manifest.json` (docker) or `oci-layout` (OCI), else a plain tree. A bare
    /// `name:tag` that names no file is a registry reference.
    pub fn parse(arg: &str) -> Result<Source, ImageError> {
        let path_of = |rest: &str| -> Result<PathBuf, ImageError> {
            let p = PathBuf::from(rest);
            if p.exists() {
                Ok(p)
            } else {
                Err(ImageError::Source(format!(
                    "{rest}: no such file or directory"
                )))
            }
        };
        if let Some((scheme, rest)) = arg.split_once(':') {
            match scheme {
                "dir" => return Ok(Source::Dir(path_of(rest)?)),
                "docker-archive" => return Ok(Source::DockerArchive(path_of(rest)?)),
                "oci-archive" => return Ok(Source::OciArchive(path_of(rest)?)),
                "oci-dir" => return Ok(Source::OciDir(path_of(rest)?)),
                "registry" | "docker" if !rest.is_empty() => {
                    return Ok(Source::Registry(rest.trim_start_matches("//").to_owned()))
                }
                _ => {}
            }
        }
        let p = Path::new(arg);
        if p.is_dir() {
            if p.join("oci-layout").is_file() && p.join("index.json").is_file() {
                return Ok(Source::OciDir(p.to_path_buf()));
            }
            return Ok(Source::Dir(p.to_path_buf()));
        }
        if p.is_file() {
            return Ok(match sniff_archive(p) {
                Some(ArchiveKind::Docker) => Source::DockerArchive(p.to_path_buf()),
                Some(ArchiveKind::Oci) => Source::OciArchive(p.to_path_buf()),
                None => Source::Dir(p.to_path_buf()),
            });
        }
        if arg == "-" {
            return Ok(Source::Dir(p.to_path_buf()));
        }
        // `name:tag` or `name@sha256:…`; a bare `a/b` is more likely a mistyped path.
        let looks_like_reference = arg.contains(':') || arg.contains('@');
        if looks_like_reference && !arg.starts_with('.') && !arg.contains(' ') {
            return Ok(Source::Registry(arg.to_owned()));
        }
        Err(ImageError::Source(format!(
            "{arg}: no such file or directory"
        )))
    }

    /// Whether this names an image (layers), not a plain tree.
    pub fn is_image(&self) -> bool {
        !matches!(self, Source::Dir(_))
    }
}

enum ArchiveKind {
    Docker,
    Oci,
}

/// Looks for `manifest.json` or `oci-layout` at the top of a tar (of any name).
fn sniff_archive(path: &Path) -> Option<ArchiveKind> {
    let f = std::fs::File::open(path).ok()?;
    let mut ar = tar::Archive::new(f);
    let mut docker = false;
    for entry in ar.entries().ok()?.take(100_000) {
        let entry = entry.ok()?;
        let name = entry.path().ok()?.to_string_lossy().into_owned();
        match name.trim_start_matches("./") {
            "oci-layout" => return Some(ArchiveKind::Oci),
            "manifest.json" => docker = true,
            _ => {}
        }
    }
    docker.then_some(ArchiveKind::Docker)
}

/// One layer of an image.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Layer {
    /// 0 for the base layer.
    pub index: usize,
    /// The layer's uncompressed digest (`diff_id`) when the config gives it, else its blob's.
    pub digest: String,
    /// The Dockerfile instruction that made it, from the image history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// An image ready to be read: its layers, in order, as files on disk.
#[derive(Debug)]
pub struct Image {
    /// What the user named.
    pub name: String,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub layers: Vec<Layer>,
    blobs: Vec<PathBuf>,
    /// An archive unpacked to read it; removed when the image is dropped.
    _unpacked: Option<tempfile::TempDir>,
}

/// The most bytes a JSON document of an image (index, manifest, config) may have.
const MAX_JSON: u64 = 16 << 20;

fn read_json(path: &Path) -> Result<Value, ImageError> {
    let meta = std::fs::metadata(path).map_err(|e| read_err(path, e))?;
    if meta.len() > MAX_JSON {
        return Err(read_err(path, "larger than 16 MiB; not an image document"));
    }
    let bytes = std::fs::read(path).map_err(|e| read_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        read_err(
            path,
            format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })
}

/// A path inside an archive or layer, made relative and safe: `./a/b` and `/a/b` are
/// `a/b`; anything with `..` is refused.
pub fn clean_path(raw: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for part in raw.components() {
        match part {
            PathPart::Normal(p) => parts.push(p.to_str()?.to_owned()),
            PathPart::CurDir | PathPart::RootDir => {}
            PathPart::ParentDir | PathPart::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Unpacks an outer archive (not its layers) into `dir`, refusing unsafe paths and links.
fn unpack(archive: &Path, dir: &Path) -> Result<(), ImageError> {
    let f = std::fs::File::open(archive).map_err(|e| read_err(archive, e))?;
    let mut ar = tar::Archive::new(f);
    for entry in ar.entries().map_err(|e| read_err(archive, e))? {
        let mut entry = entry.map_err(|e| read_err(archive, e))?;
        let kind = entry.header().entry_type();
        let Some(rel) = entry.path().ok().and_then(|p| clean_path(&p)) else {
            continue;
        };
        let out = dir.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&out).map_err(|e| read_err(&out, e))?;
        } else if kind.is_file() {
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(|e| read_err(parent, e))?;
            }
            let mut w = std::fs::File::create(&out).map_err(|e| read_err(&out, e))?;
            std::io::copy(&mut entry, &mut w).map_err(|e| read_err(archive, e))?;
        }
        // Links and devices in the outer archive are never needed to read an image.
    }
    Ok(())
}

fn blob_path(root: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| ImageError::Format(format!("{digest:?} is not a digest")))?;
    if alg.is_empty()
        || hex.is_empty()
        || !alg.bytes().all(|b| b.is_ascii_alphanumeric())
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ImageError::Format(format!("{digest:?} is not a digest")));
    }
    Ok(root.join("blobs").join(alg).join(hex))
}

/// `os/arch[/variant]`, as `--platform` takes it.
fn platform_matches(p: &Value, want: &str) -> bool {
    let mut parts = want.split('/');
    let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
    let get = |k: &str| p.get(k).and_then(Value::as_str);
    os.is_none_or(|o| get("os") == Some(o))
        && arch.is_none_or(|a| get("architecture") == Some(a))
        && variant.is_none_or(|v| get("variant") == Some(v))
}

impl Image {
    /// Opens an image source; `platform` (`linux/amd64`, the default) picks from a
    /// multi-platform index.
    pub fn open(source: &Source, platform: Option<&str>) -> Result<Image, ImageError> {
        let platform = platform.unwrap_or("linux/amd64");
        match source {
            Source::Dir(p) => Err(ImageError::Source(format!(
                "{} is a plain directory or file, not an image",
                p.display()
            ))),
            Source::Registry(r) => registry::pull(r, platform),
            Source::OciDir(p) => Self::from_layout(p, &p.display().to_string(), platform, None),
            Source::OciArchive(p) | Source::DockerArchive(p) => {
                let dir = tempfile::tempdir().map_err(|e| read_err(p, e))?;
                unpack(p, dir.path())?;
                let root = dir.path().to_path_buf();
                let name = p.display().to_string();
                if root.join("index.json").is_file() && !root.join("manifest.json").is_file() {
                    Self::from_layout(&root, &name, platform, Some(dir))
                } else if root.join("manifest.json").is_file() {
                    Self::from_docker(&root, &name, Some(dir))
                } else {
                    Err(ImageError::Format(format!(
                        "{name}: neither a docker archive (manifest.json) nor an OCI layout (index.json)"
                    )))
                }
            }
        }
    }

    /// A `docker save` archive, unpacked: `manifest.json` names the config and layer files.
    fn from_docker(
        root: &Path,
        name: &str,
        unpacked: Option<tempfile::TempDir>,
    ) -> Result<Image, ImageError> {
        let manifest = read_json(&root.join("manifest.json"))?;
        let first = manifest
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| ImageError::Format(format!("{name}: manifest.json lists no image")))?;
        let config_rel = first
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::Format(format!("{name}: manifest.json names no Config")))?;
        let config_path = root.join(
            clean_path(Path::new(config_rel))
                .ok_or_else(|| ImageError::Format(format!("{config_rel:?}: unsafe path")))?,
        );
        let config = read_json(&config_path)?;
        let mut blobs = Vec::new();
        for l in first
            .get("Layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rel = l
                .as_str()
                .and_then(|s| clean_path(Path::new(s)))
                .ok_or_else(|| ImageError::Format(format!("{name}: a layer path is unsafe")))?;
            blobs.push(root.join(rel));
        }
        let display = first
            .get("RepoTags")
            .and_then(|t| t.get(0))
            .and_then(Value::as_str)
            .map_or_else(|| name.to_owned(), str::to_owned);
        Self::assemble(display, &config, blobs, Vec::new(), unpacked)
    }

    /// An OCI image layout: `index.json` → (an index →) a manifest → config and layers.
    fn from_layout(
        root: &Path,
        name: &str,
        platform: &str,
        unpacked: Option<tempfile::TempDir>,
    ) -> Result<Image, ImageError> {
        let index = read_json(&root.join("index.json"))?;
        let mut doc = index;
        let mut display = name.to_owned();
        // An index may point at another index (a multi-platform image); at most a few hops.
        for _ in 0..4 {
            let is_index = doc.get("manifests").is_some() && doc.get("layers").is_none();
            if !is_index {
                break;
            }
            let manifests: Vec<&Value> = doc
                .get("manifests")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let chosen = manifests
                .iter()
                .find(|m| {
                    m.get("platform")
                        .is_some_and(|p| platform_matches(p, platform))
                })
                .or_else(|| {
                    // A single-image layout often states no platform.
                    (manifests.len() == 1).then(|| &manifests[0])
                })
                .or_else(|| {
                    manifests
                        .iter()
                        .find(|m| m.get("platform").is_none())
                })
                .ok_or_else(|| {
                    let offered: Vec<String> = manifests
                        .iter()
                        .filter_map(|m| m.get("platform"))
                        .map(|p| {
                            let g = |k| p.get(k).and_then(Value::as_str).unwrap_or("?");
                            format!("{}/{}", g("os"), g("architecture"))
                        })
                        .collect();
                    ImageError::Source(format!(
                        "{name}: no image for the platform {platform}; it has {}; choose one with --platform",
                        offered.join(", ")
                    ))
                })?;
            if let Some(r) = chosen
                .get("annotations")
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .and_then(Value::as_str)
            {
                display = format!("{name}:{r}");
            }
            let digest = chosen
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| ImageError::Format(format!("{name}: a manifest has no digest")))?;
            doc = read_json(&blob_path(root, digest)?)?;
        }
        let config_digest = doc
            .get("config")
            .and_then(|c| c.get("digest"))
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::Format(format!("{name}: the manifest names no config")))?;
        let config = read_json(&blob_path(root, config_digest)?)?;
        let mut blobs = Vec::new();
        let mut blob_digests = Vec::new();
        for l in doc
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let d = l
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| ImageError::Format(format!("{name}: a layer has no digest")))?;
            blobs.push(blob_path(root, d)?);
            blob_digests.push(d.to_owned());
        }
        Self::assemble(display, &config, blobs, blob_digests, unpacked)
    }

    pub(crate) fn assemble(
        name: String,
        config: &Value,
        blobs: Vec<PathBuf>,
        blob_digests: Vec<String>,
        unpacked: Option<tempfile::TempDir>,
    ) -> Result<Image, ImageError> {
        let diff_ids: Vec<&str> = config
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // History entries marked empty_layer made no layer; the rest pair with layers.
        let instructions: Vec<Option<String>> = config
            .get("history")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter(|e| e.get("empty_layer").and_then(Value::as_bool) != Some(true))
                    .map(|e| {
                        e.get("created_by").and_then(Value::as_str).map(|s| {
                            // Docker writes `/bin/sh -c #(nop) COPY …` for metadata steps.
                            s.trim_start_matches("/bin/sh -c ")
                                .trim_start_matches("#(nop) ")
                                .trim()
                                .to_owned()
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if blobs.is_empty() {
            return Err(ImageError::Format(format!(
                "{name}: the image has no layers"
            )));
        }
        let layers = blobs
            .iter()
            .enumerate()
            .map(|(i, _)| Layer {
                index: i,
                digest: diff_ids
                    .get(i)
                    .map(|d| (*d).to_owned())
                    .or_else(|| blob_digests.get(i).cloned())
                    .unwrap_or_else(|| format!("layer-{i}")),
                created_by: instructions.get(i).cloned().flatten(),
            })
            .collect();
        let get = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Image {
            name,
            os: get("os"),
            architecture: get("architecture"),
            layers,
            blobs,
            _unpacked: unpacked,
        })
    }

    /// Walks every entry of every layer, base first.
    pub fn walk(
        &self,
        mut f: impl FnMut(&Layer, Entry<'_>) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        for (layer, blob) in self.layers.iter().zip(&self.blobs) {
            let file = std::fs::File::open(blob).map_err(|e| read_err(blob, e))?;
            let mut reader = std::io::BufReader::new(file);
            let magic = {
                use std::io::BufRead;
                let buf = reader.fill_buf().map_err(|e| read_err(blob, e))?;
                buf.get(..4).map(<[u8]>::to_vec).unwrap_or_default()
            };
            let stream: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::MultiGzDecoder::new(reader))
            } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
                Box::new(zstd::stream::read::Decoder::new(reader).map_err(|e| read_err(blob, e))?)
            } else {
                Box::new(reader)
            };
            let mut ar = tar::Archive::new(stream);
            let entries = ar.entries().map_err(|e| read_err(blob, e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| {
                    read_err(
                        blob,
                        format!("layer {} is not a readable tar: {e}", layer.index),
                    )
                })?;
                let Some(path) = entry.path().ok().and_then(|p| clean_path(&p)) else {
                    continue;
                };
                let (dir, base) = match path.rsplit_once('/') {
                    Some((d, b)) => (Some(d), b),
                    None => (None, path.as_str()),
                };
                if base == ".wh..wh..opq" {
                    f(layer, Entry::Opaque(dir.unwrap_or("")))?;
                    continue;
                }
                if let Some(gone) = base.strip_prefix(".wh.") {
                    let target = match dir {
                        Some(d) => format!("{d}/{gone}"),
                        None => gone.to_owned(),
                    };
                    f(layer, Entry::Whiteout(&target))?;
                    continue;
                }
                let kind = entry.header().entry_type();
                if kind.is_file() {
                    let size = entry.header().size().unwrap_or(0);
                    f(
                        layer,
                        Entry::File {
                            path: &path,
                            size,
                            content: &mut entry,
                        },
                    )?;
                } else if kind.is_symlink() || kind.is_hard_link() {
                    let target = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    f(
                        layer,
                        Entry::Link {
                            path: &path,
                            target: &target,
                            hard: kind.is_hard_link(),
                        },
                    )?;
                } else if kind.is_dir() {
                    f(layer, Entry::Dir(&path))?;
                }
            }
        }
        Ok(())
    }
}

/// The SBOM of an image: its file system assembled from the layers, the files the
/// catalogers read written to a temporary directory and catalogued there, and each package
/// traced to its layer. Also returns the view, for callers that report on files.
pub fn sbom_of(
    image: &Image,
    filter: &crate::sbom::Filter,
) -> Result<(crate::sbom::Sbom, ImageView), ImageError> {
    let view = ImageView::build(image)?;
    let dir = tempfile::tempdir()
        .map_err(|e| ImageError::Source(format!("cannot make a temporary directory: {e}")))?;
    materialize(&view, dir.path())?;
    let mut found = crate::sbom::scan_filtered(dir.path(), filter);
    let attribution = view.attribution();
    for c in &mut found.components {
        c.layer = attribution.layer(c, &image.layers).cloned();
    }
    found
        .warnings
        .extend(view.warnings.iter().map(|w| crate::sbom::Warning {
            file: image.name.clone(),
            message: w.clone(),
        }));
    Ok((found, view))
}

/// One entry of a layer.
pub enum Entry<'a> {
    File {
        path: &'a str,
        size: u64,
        content: &'a mut dyn Read,
    },
    /// A symbolic link (target as written) or a hard link (target: a path in the image).
    Link {
        path: &'a str,
        target: &'a str,
        hard: bool,
    },
    Dir(&'a str),
    /// `.wh.NAME`: the path (and all under it) deleted by this layer.
    Whiteout(&'a str),
    /// `.wh..wh..opq`: the directory's earlier contents hidden by this layer.
    Opaque(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_and_never_climb() {
        assert_eq!(
            clean_path(Path::new("./etc/os-release")).unwrap(),
            "etc/os-release"
        );
        assert_eq!(clean_path(Path::new("/usr/lib/x")).unwrap(), "usr/lib/x");
        assert!(clean_path(Path::new("../../etc/passwd")).is_none());
        assert!(clean_path(Path::new("a/../../b")).is_none());
        assert!(clean_path(Path::new("./")).is_none());
    }

    #[test]
    fn sources_are_named_as_syft_and_trivy_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        assert_eq!(
            Source::parse(&format!("dir:{d}")).unwrap(),
            Source::Dir(dir.path().into())
        );
        assert_eq!(Source::parse(&d).unwrap(), Source::Dir(dir.path().into()));
        std::fs::write(dir.path().join("oci-layout"), "{}").unwrap();
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        assert_eq!(
            Source::parse(&d).unwrap(),
            Source::OciDir(dir.path().into())
        );
        assert_eq!(
            Source::parse("registry:localhost:5000/app:1").unwrap(),
            Source::Registry("localhost:5000/app:1".into())
        );
        assert_eq!(
            Source::parse("python:3.11-slim").unwrap(),
            Source::Registry("python:3.11-slim".into())
        );
        assert!(Source::parse("docker-archive:/no/such.tar").is_err());
        assert!(Source::parse("./no-such-dir").is_err());
        assert!(Source::parse("no/such/dir").is_err());
    }
}
