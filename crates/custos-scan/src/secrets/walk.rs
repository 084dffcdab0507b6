//! Walks a directory tree in parallel (respecting `.gitignore`, `.ignore` and
//! `.custosignore`, skipping `.git`, binaries and files over a size limit) and scans every
//! file. Unreadable files, broken links and loops are reported and skipped; the rest of the
//! scan goes on.

use super::engine::{Finding, Scanner};
use ignore::{WalkBuilder, WalkState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How a tree is scanned.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Larger files are skipped (and counted).
    pub max_file_size: u64,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// `--exclude` globs (gitignore syntax, relative to the scanned root).
    pub exclude: Vec<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_size: 25 << 20,
            threads: 0,
            exclude: Vec::new(),
        }
    }
}

/// What a scan found and what it looked at.
#[derive(Debug, Default, serde::Serialize)]
pub struct ScanSummary {
    pub findings: Vec<Finding>,
    pub files: u64,
    pub bytes: u64,
    pub skipped_binary: u64,
    pub skipped_large: u64,
    /// Files or directories that could not be read, with why.
    pub errors: Vec<String>,
}

/// A file is treated as binary when its first 8 KiB hold a NUL byte (as git does).
fn is_binary(content: &[u8]) -> bool {
    content[..content.len().min(8192)].contains(&0)
}

/// Scans every file of every layer of an image, the files a later layer deleted or
/// replaced too (they still ship in the image): each finding names its layer.
pub fn scan_image(
    scanner: &Scanner,
    image: &crate::image::Image,
    options: &ScanOptions,
) -> Result<ScanSummary, crate::image::ImageError> {
    use crate::image::{Entry, ImageView};
    let mut summary = ScanSummary::default();
    let mut view = ImageView::default();
    let mut buf = Vec::new();
    let filter = crate::sbom::Filter::new(std::path::Path::new(""), &options.exclude, true)
        .map_err(crate::image::ImageError::Source)?;
    image.walk(|layer, entry| {
        let Entry::File {
            path,
            size,
            content,
        } = entry
        else {
            view.apply_meta(layer.index, entry);
            return Ok(());
        };
        let path = path.to_owned();
        view.apply_meta(
            layer.index,
            Entry::File {
                path: &path,
                size,
                content: &mut std::io::empty(),
            },
        );
        if size > options.max_file_size {
            summary.skipped_large += 1;
            return Ok(());
        }
        if scanner.path_allowed(&path) || filter.excludes(&path, false) {
            return Ok(());
        }
        buf.clear();
        let mut limited = std::io::Read::take(content, options.max_file_size);
        if let Err(e) = std::io::Read::read_to_end(&mut limited, &mut buf) {
            summary
                .errors
                .push(format!("{path} in layer {}: {e}", layer.index));
            return Ok(());
        }
        summary.files += 1;
        summary.bytes += buf.len() as u64;
        if is_binary(&buf) {
            summary.skipped_binary += 1;
            return Ok(());
        }
        for mut f in scanner.scan(&path, &buf) {
            f.layer = Some(layer.clone());
            summary.findings.push(f);
        }
        Ok(())
    })?;
    for f in &mut summary.findings {
        let at = f.layer.as_ref().map(|l| l.index);
        f.removed_in_later_layer = view.layer_of(&f.path) != at;
    }
    Ok(summary)
}

/// Scans one file or a whole tree.
pub fn scan_path(scanner: &Scanner, root: &Path, options: &ScanOptions) -> ScanSummary {
    let findings = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let (files, bytes, binary, large) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let display = |p: &Path| -> String {
        let rel = p
            .strip_prefix(root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty());
        let shown = rel.unwrap_or(p).to_string_lossy();
        shown.replace('\\', "/")
    };
    let scan_file = |path: &Path| {
        let name = display(path);
        if scanner.path_allowed(&name) {
            return;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.len() > options.max_file_size => {
                large.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{name}: {e}"));
                return;
            }
        }
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) => {
                errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{name}: {e}"));
                return;
            }
        };
        files.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(content.len() as u64, Ordering::Relaxed);
        // Binaries are not searched, but rules that match by file name still apply.
        let found = if is_binary(&content) {
            binary.fetch_add(1, Ordering::Relaxed);
            scanner.scan(&name, b"")
        } else {
            scanner.scan(&name, &content)
        };
        if !found.is_empty() {
            findings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(found);
        }
    };
    if root.is_file() {
        scan_file(root);
    } else {
        let mut walker = WalkBuilder::new(root);
        match crate::sbom::Filter::new(root, &options.exclude, true) {
            Ok(f) => {
                if let Some(o) = f.overrides() {
                    walker.overrides(o.clone());
                }
            }
            Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
        }
        let walker = walker
            .hidden(false)
            .require_git(false)
            .follow_links(false)
            .add_custom_ignore_filename(".custosignore")
            .filter_entry(|e| e.file_name() != ".git")
            .threads(options.threads)
            .build_parallel();
        walker.run(|| {
            Box::new(|entry| {
                match entry {
                    Ok(e) => {
                        if e.file_type().is_some_and(|t| t.is_file()) {
                            scan_file(e.path());
                        }
                    }
                    Err(err) => errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(err.to_string()),
                }
                WalkState::Continue
            })
        });
    }
    let mut findings = findings.into_inner().unwrap_or_else(|p| p.into_inner());
    findings.sort_by(|a, b| {
        (&a.path, a.line, a.column, &a.rule_id).cmp(&(&b.path, b.line, b.column, &b.rule_id))
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort();
    ScanSummary {
        findings,
        files: files.into_inner(),
        bytes: bytes.into_inner(),
        skipped_binary: binary.into_inner(),
        skipped_large: large.into_inner(),
        errors,
    }
}
