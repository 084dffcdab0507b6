//! A model's manifest: every file (or shard of a file) with its SHA-256, named by its path
//! relative to the model folder, in model-signing's canonical order; the manifest digest
//! (SHA-256 over the item digests in that order) is what signatures, the registry and model
//! cards name the model by. Hashing runs on every core: files in parallel, and with shard
//! serialization the shards of one large file in parallel too.

use super::{Difference, ModelError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Mutex;

/// The predicate type of an OpenSSF model-signing v1.0 signature.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// What model-signing leaves out of a model folder by default.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];
/// model-signing's default shard size.
pub const DEFAULT_SHARD: u64 = 1_000_000_000;

const MAX_DEPTH: usize = 64;
const CHUNK: usize = 1 << 20;

/// How a model is cut into items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// One item per file (model-signing's default).
    Files,
    /// Files cut into shards of `size` bytes, `path:start:end`.
    Shards { size: u64 },
}

/// The serialization parameters a signature records, so a verifier hashes the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serialization {
    pub method: Method,
    pub hash_type: String,
    pub allow_symlinks: bool,
    /// Paths relative to the model folder that are not part of the model.
    pub ignore_paths: Vec<String>,
}

impl Serialization {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "method": match self.method { Method::Files => "files", Method::Shards { .. } => "shards" },
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        });
        if let Method::Shards { size } = self.method {
            v["shard_size"] = json!(size);
        }
        if !self.ignore_paths.is_empty() {
            v["ignore_paths"] = json!(self.ignore_paths);
        }
        v
    }

    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let bad = |what: &str| ModelError::Signature(format!("the serialization {what}"));
        let hash_type = v
            .get("hash_type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no hash_type"))?;
        if hash_type != "sha256" {
            return Err(ModelError::Signature(format!(
                "the model was hashed with {hash_type}; custos verifies sha256 manifests"
            )));
        }
        let method = match v.get("method").and_then(Value::as_str) {
            Some("files") => Method::Files,
            Some("shards") => {
                // Protocol-buffer JSON writes numbers as doubles (1000000.0).
                let size = v
                    .get("shard_size")
                    .and_then(|s| {
                        s.as_u64().or_else(|| {
                            s.as_f64()
                                .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < 9.0e15)
                                .map(|f| f as u64)
                        })
                    })
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("has no positive shard_size"))?;
                Method::Shards { size }
            }
            Some(other) => {
                return Err(ModelError::Signature(format!(
                    "unknown serialization method {other:?}"
                )))
            }
            None => return Err(bad("has no method")),
        };
        let allow_symlinks = v
            .get("allow_symlinks")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ignore_paths = match v.get("ignore_paths") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("has a non-string ignore path"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("has ignore_paths that is not a list")),
        };
        Ok(Serialization {
            method,
            hash_type: hash_type.to_owned(),
            allow_symlinks,
            ignore_paths,
        })
    }

    /// The digest algorithm model-signing names items with.
    fn algorithm(&self) -> String {
        match self.method {
            Method::Files => self.hash_type.clone(),
            Method::Shards { size } => format!("{}-sharded-{size}", self.hash_type),
        }
    }
}

/// One item of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resource {
    pub name: String,
    pub algorithm: String,
    /// Hex.
    pub digest: String,
}

/// A model's items with their digests, in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Informative only: the folder's name. Renaming a model does not change its digest.
    pub model_name: String,
    pub serialization: Serialization,
    pub resources: Vec<Resource>,
    /// Bytes hashed (zero when read from a signature).
    pub bytes: u64,
}

/// model-signing orders items as Python orders `PurePosixPath`s: component by component
/// (so `a/b` sorts before `a-c`), then shard start and end numerically.
fn item_order(a: &str, b: &str) -> Ordering {
    fn key(s: &str) -> (&str, u64, u64) {
        let mut parts = s.rsplitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(end), Some(start), Some(path)) => match (start.parse(), end.parse()) {
                (Ok(st), Ok(en)) => (path, st, en),
                _ => (s, 0, 0),
            },
            _ => (s, 0, 0),
        }
    }
    let (pa, sa, ea) = key(a);
    let (pb, sb, eb) = key(b);
    pa.split('/')
        .cmp(pb.split('/'))
        .then(sa.cmp(&sb))
        .then(ea.cmp(&eb))
}

impl Manifest {
    /// SHA-256 (hex) over the item digests in order: the subject digest of a model-signing
    /// statement, and the registry's manifest digest.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for r in &self.resources {
            h.update(hex::decode(&r.digest).unwrap_or_default());
        }
        hex::encode(h.finalize())
    }

    /// The in-toto statement model-signing signs.
    pub fn statement(&self) -> Value {
        json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.model_name, "digest": {"sha256": self.digest()}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": self.serialization.to_json(),
                "resources": self.resources,
            }
        })
    }

    /// Reads a signed statement back, checking the subject digest against the items.
    pub fn from_statement(statement: &Value) -> Result<Self, ModelError> {
        let bad = |what: String| ModelError::Signature(what);
        if statement.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(bad(format!(
                "the payload is not an in-toto {STATEMENT_TYPE}"
            )));
        }
        let predicate_type = statement
            .get("predicateType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if predicate_type != PREDICATE_TYPE {
            return Err(bad(format!(
                "the statement's predicate is {predicate_type:?}, not a model signature ({PREDICATE_TYPE})"
            )));
        }
        let subjects = statement
            .get("subject")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("the statement has no subject".into()))?;
        let [subject] = subjects.as_slice() else {
            return Err(bad(format!(
                "expected one subject, found {}",
                subjects.len()
            )));
        };
        let model_name = subject
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let expected = subject
            .pointer("/digest/sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the subject has no sha256 digest".into()))?;
        let predicate = statement
            .get("predicate")
            .ok_or_else(|| bad("the statement has no predicate".into()))?;
        let serialization = Serialization::from_json(
            predicate
                .get("serialization")
                .ok_or_else(|| bad("the predicate has no serialization".into()))?,
        )?;
        let resources: Vec<Resource> =
            serde_json::from_value(predicate.get("resources").cloned().unwrap_or(Value::Null))
                .map_err(|e| bad(format!("the predicate's resources are malformed: {e}")))?;
        for r in &resources {
            if hex::decode(&r.digest).map(|d| d.len()) != Ok(32) {
                return Err(bad(format!("{}: the digest is not SHA-256 hex", r.name)));
            }
        }
        let m = Manifest {
            model_name,
            serialization,
            resources,
            bytes: 0,
        };
        let actual = m.digest();
        if actual != expected {
            return Err(bad(format!(
                "the manifest is inconsistent: the subject digest is {expected}, the resources hash to {actual}"
            )));
        }
        Ok(m)
    }

    /// How `actual` differs from this (expected) manifest, by name: changed, missing, extra.
    pub fn diff(&self, actual: &Manifest) -> Vec<Difference> {
        let want: std::collections::BTreeMap<&str, &Resource> = self
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect();
        let have: std::collections::BTreeMap<&str, &Resource> = actual
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect();
        let mut out = Vec::new();
        for (name, w) in &want {
            match have.get(name) {
                None => out.push(Difference::Missing {
                    name: (*name).to_owned(),
                }),
                Some(h) if h.digest != w.digest || h.algorithm != w.algorithm => {
                    out.push(Difference::Changed {
                        name: (*name).to_owned(),
                        expected: w.digest.clone(),
                        actual: h.digest.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        for name in have.keys() {
            if !want.contains_key(name) {
                out.push(Difference::Extra {
                    name: (*name).to_owned(),
                });
            }
        }
        out.sort_by(|a, b| item_order(a.name(), b.name()));
        out
    }
}

/// How to hash a model.
#[derive(Clone, Debug)]
pub struct Options {
    pub method: Method,
    pub allow_symlinks: bool,
    /// Paths relative to the model folder to leave out (files or whole folders).
    pub ignore: Vec<String>,
    /// Leave out `.git`, `.gitattributes`, `.github`, `.gitignore` (model-signing's default).
    pub ignore_git: bool,
    /// Hash only these items (names as in a manifest): verifying with unsigned files ignored.
    pub only: Option<Vec<String>>,
    /// Worker threads; 0 = one per core.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            method: Method::Files,
            allow_symlinks: false,
            ignore: Vec::new(),
            ignore_git: true,
            only: None,
            threads: 0,
        }
    }
}

/// A path normalized to components, for prefix matching.
fn components(p: &str) -> Vec<&str> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

struct Job {
    name: String,
    path: PathBuf,
    start: u64,
    end: u64,
    /// Read to the end (files) rather than exactly [start, end) (shards).
    whole: bool,
}

fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    opts: &Options,
    ignore: &[Vec<&str>],
    out: &mut Vec<(String, PathBuf, u64)>,
) -> Result<(), ModelError> {
    if depth > MAX_DEPTH {
        return Err(ModelError::Invalid(format!(
            "{} is nested more than {MAX_DEPTH} folders deep (a symbolic-link loop?)",
            dir.display()
        )));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ModelError::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| ModelError::NotUtf8(path.clone()))?;
        let rel_name = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let parts = components(&rel_name);
        if ignore
            .iter()
            .any(|ig| !ig.is_empty() && parts.starts_with(ig))
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| ModelError::io(&path, e))?;
        let meta = if meta.file_type().is_symlink() {
            if !opts.allow_symlinks {
                return Err(ModelError::Symlink(path));
            }
            std::fs::metadata(&path).map_err(|e| ModelError::io(&path, e))?
        } else {
            meta
        };
        if meta.is_dir() {
            walk(&path, &rel_name, depth + 1, opts, ignore, out)?;
        } else if meta.is_file() {
            out.push((rel_name, path, meta.len()));
        } else {
            return Err(ModelError::Special(path));
        }
    }
    Ok(())
}

/// Hashes the model at `path` (a folder, or one file). `progress` counts bytes hashed, for
/// a caller that shows progress from another thread.
pub fn hash(
    path: &Path,
    opts: &Options,
    progress: Option<&AtomicU64>,
) -> Result<Manifest, ModelError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.file_type().is_symlink() && !opts.allow_symlinks {
        return Err(ModelError::Symlink(path.to_owned()));
    }
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    let mut ignore_paths: Vec<String> = Vec::new();
    for p in opts
        .ignore
        .iter()
        .map(String::as_str)
        .chain(if opts.ignore_git {
            GIT_PATHS.to_vec()
        } else {
            Vec::new()
        })
    {
        let c = components(p).join("/");
        if !c.is_empty() && !c.split('/').any(|x| x == "..") && !ignore_paths.contains(&c) {
            ignore_paths.push(c);
        }
    }
    let ignore: Vec<Vec<&str>> = ignore_paths.iter().map(|p| components(p)).collect();
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(path, "", 0, opts, &ignore, &mut files)?;
    } else if meta.is_file() {
        // model-signing names the one item of a single-file model ".".
        files.push((".".to_owned(), path.to_owned(), meta.len()));
    } else {
        return Err(ModelError::Special(path.to_owned()));
    }
    let serialization = Serialization {
        method: opts.method,
        hash_type: "sha256".into(),
        allow_symlinks: opts.allow_symlinks,
        ignore_paths,
    };
    let mut jobs = Vec::new();
    for (name, file, len) in files {
        match opts.method {
            Method::Files => jobs.push(Job {
                name,
                path: file,
                start: 0,
                end: len,
                whole: true,
            }),
            Method::Shards { size } => {
                if name.contains(':') {
                    return Err(ModelError::Invalid(format!(
                        "{name}: shard serialization cannot name a file with ':' in its path; use file serialization"
                    )));
                }
                let mut start = 0;
                while start < len {
                    let end = start.saturating_add(size).min(len);
                    jobs.push(Job {
                        name: format!("{name}:{start}:{end}"),
                        path: file.clone(),
                        start,
                        end,
                        whole: false,
                    });
                    start = end;
                }
            }
        }
    }
    if let Some(only) = &opts.only {
        let keep: std::collections::HashSet<&str> = only.iter().map(String::as_str).collect();
        jobs.retain(|j| keep.contains(j.name.as_str()));
    }
    // Largest first, so the last job to start is a small one.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.end - j.start));
    let digests = run(&jobs, opts.threads, progress)?;
    let algorithm = serialization.algorithm();
    let bytes = jobs.iter().map(|j| j.end - j.start).sum();
    let mut resources: Vec<Resource> = jobs
        .iter()
        .zip(digests)
        .map(|(j, d)| Resource {
            name: j.name.clone(),
            algorithm: algorithm.clone(),
            digest: hex::encode(d),
        })
        .collect();
    resources.sort_by(|a, b| item_order(&a.name, &b.name));
    let model_name = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| path.display().to_string());
    Ok(Manifest {
        model_name,
        serialization,
        resources,
        bytes,
    })
}

fn run(
    jobs: &[Job],
    threads: usize,
    progress: Option<&AtomicU64>,
) -> Result<Vec<[u8; 32]>, ModelError> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<[u8; 32]>>> = Mutex::new(vec![None; jobs.len()]);
    let failed: Mutex<Option<ModelError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        break;
                    }
                    match hash_job(job, &mut buf, progress) {
                        Ok(d) => {
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(d);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let results = results
        .into_inner()
        .map_err(|_| ModelError::Invalid("a hashing thread panicked".into()))?;
    results
        .into_iter()
        .map(|d| d.ok_or_else(|| ModelError::Invalid("a hashing thread stopped early".into())))
        .collect()
}

/// Files at least this large are read ahead on a second thread.
const PIPELINE_MIN: u64 = 16 << 20;
const PIPELINE_CHUNK: usize = 4 << 20;

fn hash_job(
    job: &Job,
    buf: &mut [u8],
    progress: Option<&AtomicU64>,
) -> Result<[u8; 32], ModelError> {
    let mut f = std::fs::File::open(&job.path).map_err(|e| ModelError::io(&job.path, e))?;
    if job.start > 0 {
        f.seek(SeekFrom::Start(job.start))
            .map_err(|e| ModelError::io(&job.path, e))?;
    }
    let mut h = Sha256::new();
    let count = |n: usize| {
        if let Some(p) = progress {
            p.fetch_add(n as u64, AtomicOrdering::Relaxed);
        }
    };
    if job.end - job.start < PIPELINE_MIN {
        let mut left = job.end - job.start;
        while let Some(n) = read_chunk(job, &mut f, buf, &mut left)? {
            h.update(&buf[..n]);
            count(n);
        }
        return Ok(h.finalize().into());
    }
    // The disk and the hash work at once: a reader fills buffers while this thread hashes
    // the last one (a single sequential reader per file keeps the kernel's read-ahead).
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; PIPELINE_CHUNK]);
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<(), ModelError> {
            let mut left = job.end - job.start;
            while let Ok(mut b) = empty_rx.recv() {
                match read_chunk(job, &mut f, &mut b, &mut left)? {
                    Some(n) => {
                        if full_tx.send((b, n)).is_err() {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                }
            }
            Ok(())
        });
        for (b, n) in full_rx.iter() {
            h.update(&b[..n]);
            count(n);
            // The reader may be done already; chunks it sent are still queued.
            let _ = empty_tx.send(b);
        }
        drop(empty_tx);
        reader
            .join()
            .map_err(|_| ModelError::Invalid("a reading thread panicked".into()))?
    })?;
    Ok(h.finalize().into())
}

/// Reads the next chunk of a job into `buf`: `Some(bytes read)`, or `None` at its end.
fn read_chunk(
    job: &Job,
    f: &mut std::fs::File,
    buf: &mut [u8],
    left: &mut u64,
) -> Result<Option<usize>, ModelError> {
    loop {
        let want = if job.whole {
            buf.len()
        } else {
            buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX))
        };
        if want == 0 {
            return Ok(None);
        }
        let n = match f.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ModelError::io(&job.path, e)),
        };
        if n == 0 {
            if !job.whole && *left > 0 {
                return Err(ModelError::Invalid(format!(
                    "{}: the file shrank while it was hashed",
                    job.path.display()
                )));
            }
            return Ok(None);
        }
        *left = left.saturating_sub(n as u64);
        return Ok(Some(n));
    }
}

/// One file's SHA-256 (hex) and size: evidence, reports and datasheets named by digest.
pub fn file_sha256(path: &Path) -> Result<(String, u64), ModelError> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if !meta.is_file() {
        return Err(ModelError::Invalid(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let job = Job {
        name: ".".into(),
        path: path.to_owned(),
        start: 0,
        end: meta.len(),
        whole: true,
    };
    let mut buf = vec![0u8; CHUNK];
    let d = hash_job(&job, &mut buf, None)?;
    Ok((hex::encode(d), meta.len()))
}

/// Re-hashes the model at `path` the way `expected` was serialized (its method, symlink
/// policy and ignored paths, plus `extra_ignore`) and lists every difference.
pub fn check(
    path: &Path,
    expected: &Manifest,
    extra_ignore: &[String],
    ignore_unsigned: bool,
    threads: usize,
    progress: Option<&AtomicU64>,
) -> Result<(Manifest, Vec<Difference>), ModelError> {
    let s = &expected.serialization;
    let opts = Options {
        method: s.method,
        allow_symlinks: s.allow_symlinks,
        ignore: s.ignore_paths.iter().chain(extra_ignore).cloned().collect(),
        ignore_git: true,
        only: ignore_unsigned.then(|| expected.resources.iter().map(|r| r.name.clone()).collect()),
        threads,
    };
    let actual = hash(path, &opts, progress)?;
    let diff = expected.diff(&actual);
    Ok((actual, diff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        d
    }

    #[test]
    fn items_sort_by_component_like_python_paths() {
        let mut names = vec!["a-c", "a/b", "b", "a/b:10:20", "a/b:2:10"];
        names.sort_by(|a, b| item_order(a, b));
        assert_eq!(names, ["a/b", "a/b:2:10", "a/b:10:20", "a-c", "b"]);
    }

    #[test]
    fn git_paths_are_left_out_and_recorded() {
        let d = model(&[
            ("w.bin", b"weights"),
            (".git/HEAD", b"ref"),
            ("sub/t.json", b"{}"),
        ]);
        let m = hash(d.path(), &Options::default(), None).unwrap();
        let names: Vec<_> = m.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["sub/t.json", "w.bin"]);
        assert!(m.serialization.ignore_paths.contains(&".git".to_string()));
        assert_eq!(m.bytes, 9);
    }

    #[test]
    fn shards_cover_every_byte_and_skip_empty_files() {
        let d = model(&[("w", &[7u8; 25]), ("empty", b"")]);
        let m = hash(
            d.path(),
            &Options {
                method: Method::Shards { size: 10 },
                ..Options::default()
            },
            None,
        )
        .unwrap();
        let names: Vec<_> = m.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["w:0:10", "w:10:20", "w:20:25"]);
        assert_eq!(m.resources[0].algorithm, "sha256-sharded-10");
    }

    #[test]
    fn the_statement_round_trips_and_a_forged_digest_is_caught() {
        let d = model(&[("a", b"1"), ("b", b"2")]);
        let m = hash(d.path(), &Options::default(), None).unwrap();
        let back = Manifest::from_statement(&m.statement()).unwrap();
        assert_eq!(back.resources, m.resources);
        assert_eq!(back.digest(), m.digest());
        let mut forged = m.statement();
        forged["predicate"]["resources"][0]["digest"] = json!(hex::encode([0u8; 32]));
        assert!(Manifest::from_statement(&forged)
            .unwrap_err()
            .to_string()
            .contains("inconsistent"));
    }

    #[test]
    fn check_names_changed_missing_and_extra_files() {
        let d = model(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let m = hash(d.path(), &Options::default(), None).unwrap();
        std::fs::write(d.path().join("a"), b"changed").unwrap();
        std::fs::remove_file(d.path().join("b")).unwrap();
        std::fs::write(d.path().join("d"), b"new").unwrap();
        let (_, diff) = check(d.path(), &m, &[], false, 0, None).unwrap();
        let kinds: Vec<_> = diff.iter().map(|x| x.to_string()).collect();
        assert!(kinds[0].starts_with("a: content differs"), "{kinds:?}");
        assert_eq!(kinds[1], "b: signed but missing");
        assert_eq!(kinds[2], "d: present but not signed");
        let (_, diff) = check(d.path(), &m, &["d".into()], false, 0, None).unwrap();
        assert_eq!(diff.len(), 2);
    }

    #[test]
    fn large_files_read_ahead_to_the_same_digest() {
        let body: Vec<u8> = (0..(PIPELINE_MIN as usize + 3 * PIPELINE_CHUNK / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        let d = model(&[("big.bin", &body)]);
        let m = hash(d.path(), &Options::default(), None).unwrap();
        assert_eq!(m.resources[0].digest, hex::encode(Sha256::digest(&body)));
        let size = PIPELINE_MIN + 5;
        let s = hash(
            d.path(),
            &Options {
                method: Method::Shards { size },
                ..Options::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(
            s.resources[0].digest,
            hex::encode(Sha256::digest(&body[..size as usize]))
        );
        assert_eq!(
            s.resources[1].digest,
            hex::encode(Sha256::digest(&body[size as usize..]))
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_unless_allowed() {
        let d = model(&[("a", b"1")]);
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("l")).unwrap();
        let e = hash(d.path(), &Options::default(), None).unwrap_err();
        assert!(e.to_string().contains("--allow-symlinks"), "{e}");
        let m = hash(
            d.path(),
            &Options {
                allow_symlinks: true,
                ..Options::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(m.resources.len(), 2);
        assert_eq!(m.resources[0].digest, m.resources[1].digest);
    }

    proptest! {
        #[test]
        fn the_digest_does_not_depend_on_threads_or_shard_boundaries(
            sizes in proptest::collection::vec(0usize..5000, 1..6),
            shard in 1u64..3000,
            threads in 1usize..5,
        ) {
            let files: Vec<(String, Vec<u8>)> = sizes.iter().enumerate()
                .map(|(i, n)| (format!("d{}/f{i}", i % 2), (0..*n).map(|b| (b * 31 + i) as u8).collect()))
                .collect();
            let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
            let d = model(&refs);
            let one = hash(d.path(), &Options { threads: 1, ..Options::default() }, None).unwrap();
            let many = hash(d.path(), &Options { threads, ..Options::default() }, None).unwrap();
            prop_assert_eq!(one.digest(), many.digest());
            let sharded = hash(d.path(), &Options { method: Method::Shards { size: shard }, threads, ..Options::default() }, None).unwrap();
            let total: u64 = sharded.resources.iter().map(|r| {
                let mut p = r.name.rsplitn(3, ':');
                let end: u64 = p.next().unwrap().parse().unwrap();
                let start: u64 = p.next().unwrap().parse().unwrap();
                end - start
            }).sum();
            prop_assert_eq!(total, sizes.iter().sum::<usize>() as u64);
        }
    }
}
