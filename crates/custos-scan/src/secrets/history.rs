//! Secrets in git history, with pure-Rust git (gix): every blob reachable from the chosen
//! refs is scanned once, however many commits contain it, and its findings are attributed
//! to the oldest commit that introduced it (commit, author, date, path). Commits are
//! visited oldest first and each tree is walked once, so unchanged subtrees cost nothing.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use gix::ObjectId;
use serde::Serialize;

use super::engine::{Finding, Scanner};

/// Who introduced a finding, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitInfo {
    pub commit: String,
    pub author: String,
    pub email: String,
    /// Unix seconds.
    pub date: i64,
    /// First line of the commit message.
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryOptions {
    /// Branches or refs to start from (`main`, `refs/tags/v1`); empty: every ref and HEAD.
    pub refs: Vec<String>,
    /// Only blobs introduced by commits at or after this time (Unix seconds).
    pub since: Option<i64>,
    pub max_file_size: u64,
    pub threads: usize,
}

#[derive(Debug, Default)]
pub struct HistorySummary {
    pub findings: Vec<Finding>,
    pub commits: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub skipped_binary: u64,
    pub skipped_large: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path} is not a git repository: {error}")]
    Open { path: String, error: String },
    #[error("ref {0:?} was not found (try a branch name such as main, or a full ref such as refs/tags/v1.0)")]
    Ref(String),
    #[error("git: {0}")]
    Git(String),
}

fn git<E: std::fmt::Display>(e: E) -> HistoryError {
    HistoryError::Git(e.to_string())
}

/// One blob to scan: its id, the path it first appeared at, and the commit.
struct Work {
    blob: ObjectId,
    path: String,
    commit: usize,
}

/// Scans the history of the repository at `path`.
pub fn scan_history(
    path: &Path,
    scanner: &Scanner,
    opts: &HistoryOptions,
) -> Result<HistorySummary, HistoryError> {
    let repo = gix::open(path).map_err(|e| HistoryError::Open {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    let mut tips: Vec<ObjectId> = Vec::new();
    if opts.refs.is_empty() {
        for r in repo.references().map_err(git)?.all().map_err(git)? {
            let Ok(mut r) = r else { continue };
            if let Ok(id) = r.peel_to_id() {
                tips.push(id.detach());
            }
        }
        if let Ok(id) = repo.head_id() {
            tips.push(id.detach());
        }
    } else {
        for name in &opts.refs {
            let candidates = [
                name.clone(),
                format!("refs/heads/{name}"),
                format!("refs/remotes/{name}"),
                format!("refs/tags/{name}"),
            ];
            let found = candidates
                .iter()
                .find_map(|c| repo.find_reference(c.as_str()).ok());
            let mut r = found.ok_or_else(|| HistoryError::Ref(name.clone()))?;
            tips.push(r.peel_to_id().map_err(git)?.detach());
        }
    }
    tips.sort();
    tips.dedup();
    if tips.is_empty() {
        return Ok(HistorySummary::default());
    }
    // Every commit reachable from the tips, then oldest first.
    let mut commits: Vec<(i64, ObjectId, CommitInfo, ObjectId)> = Vec::new();
    for info in repo.rev_walk(tips).all().map_err(git)? {
        let info = info.map_err(git)?;
        let commit = repo
            .find_object(info.id)
            .map_err(git)?
            .try_into_commit()
            .map_err(git)?;
        let tree = commit.tree_id().map_err(git)?.detach();
        let author = commit.author().map_err(git)?;
        let date = author.time().map(|t| t.seconds).unwrap_or(0);
        let message = commit.message_raw_sloppy().to_string();
        let ci = CommitInfo {
            commit: info.id.to_string(),
            author: author.name.to_string(),
            email: author.email.to_string(),
            date,
            message: message.lines().next().unwrap_or("").to_string(),
        };
        commits.push((date, info.id, ci, tree));
    }
    commits.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    // The working tree's .custosignore (gitignore syntax) applies to history paths too.
    let ignore = {
        let root = repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.to_path_buf());
        let mut b = ignore::gitignore::GitignoreBuilder::new(&root);
        let _ = b.add(root.join(".custosignore"));
        b.build().ok()
    };
    let ignored = |p: &str| {
        ignore
            .as_ref()
            .is_some_and(|g| g.matched_path_or_any_parents(p, false).is_ignore())
    };
    let mut seen_trees: HashSet<ObjectId> = HashSet::new();
    let mut seen_blobs: HashSet<ObjectId> = HashSet::new();
    let mut work: Vec<Work> = Vec::new();
    for (idx, (date, _, _, tree)) in commits.iter().enumerate() {
        let report = opts.since.is_none_or(|s| *date >= s);
        // Only trees not seen in an older commit are walked: unchanged subtrees are skipped.
        walk_tree(&repo, *tree, &mut seen_trees, |full, oid| {
            if seen_blobs.insert(oid) && report && !ignored(full) {
                work.push(Work {
                    blob: oid,
                    path: full.to_string(),
                    commit: idx,
                });
            }
        })?;
    }
    let mut summary = HistorySummary {
        commits: commits.len() as u64,
        ..HistorySummary::default()
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    }
    .max(1);
    drop(repo);
    let (bytes, binary, large) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let chunk = work.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Finding>, HistoryError>> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                let (bytes, binary, large, commits) = (&bytes, &binary, &large, &commits);
                s.spawn(move || -> Result<Vec<Finding>, HistoryError> {
                    // Each thread opens its own handle: object caches are per thread.
                    let repo = gix::open(path).map_err(git)?;
                    let mut out = Vec::new();
                    for w in part {
                        let obj = repo.find_object(w.blob).map_err(git)?;
                        let data = &obj.data;
                        if data.len() as u64 > opts.max_file_size {
                            large.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if data[..data.len().min(8000)].contains(&0) {
                            binary.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                        for mut f in scanner.scan(&w.path, data) {
                            f.commit = Some(commits[w.commit].2.clone());
                            out.push(f);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(HistoryError::Git("a scanning thread failed".into())))
            })
            .collect()
    });
    for r in results {
        summary.findings.extend(r?);
    }
    summary.blobs = work.len() as u64;
    summary.bytes = bytes.into_inner();
    summary.skipped_binary = binary.into_inner();
    summary.skipped_large = large.into_inner();
    // Oldest introduction first, then path and position.
    summary.findings.sort_by(|a, b| {
        let key = |f: &Finding| f.commit.as_ref().map(|c| c.date).unwrap_or(0);
        key(a)
            .cmp(&key(b))
            .then(a.path.cmp(&b.path))
            .then(a.line.cmp(&b.line))
            .then(a.column.cmp(&b.column))
    });
    Ok(summary)
}

/// Walks `root` depth first, skipping trees already in `seen`, calling `on_blob` with each
/// file's path and blob id.
fn walk_tree(
    repo: &gix::Repository,
    root: ObjectId,
    seen: &mut HashSet<ObjectId>,
    mut on_blob: impl FnMut(&str, ObjectId),
) -> Result<(), HistoryError> {
    let mut stack = vec![(root, String::new())];
    while let Some((tid, prefix)) = stack.pop() {
        if !seen.insert(tid) {
            continue;
        }
        let t = repo
            .find_object(tid)
            .map_err(git)?
            .try_into_tree()
            .map_err(git)?;
        for e in t.iter() {
            let e = e.map_err(git)?;
            let name = e.filename().to_string();
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if e.mode().is_tree() {
                stack.push((e.oid().to_owned(), full));
            } else if e.mode().is_blob() {
                on_blob(&full, e.oid().to_owned());
            }
        }
    }
    Ok(())
}

/// What `git commit` would commit: the index's files whose content HEAD does not already
/// hold, scanned as staged (not as they are in the working tree).
pub fn scan_staged(
    path: &Path,
    scanner: &Scanner,
    max_file_size: u64,
) -> Result<HistorySummary, HistoryError> {
    use gix::index::entry::Mode;
    let repo = gix::open(path).map_err(|e| HistoryError::Open {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    let index = repo.index_or_empty().map_err(git)?;
    let mut committed = HashSet::new();
    // An unborn HEAD (no commit yet) holds nothing: everything staged is new.
    if let Ok(commit) = repo.head_commit() {
        let tree = commit.tree_id().map_err(git)?.detach();
        walk_tree(&repo, tree, &mut HashSet::new(), |_, id| {
            committed.insert(id);
        })?;
    }
    let mut summary = HistorySummary::default();
    for e in index.entries() {
        if !e.mode.contains(Mode::FILE)
            || e.mode.contains(Mode::SYMLINK)
            || committed.contains(&e.id)
        {
            continue;
        }
        let file = e.path(&index).to_string();
        let obj = repo.find_object(e.id).map_err(git)?;
        if obj.data.len() as u64 > max_file_size {
            summary.skipped_large += 1;
            continue;
        }
        if obj.data[..obj.data.len().min(8000)].contains(&0) {
            summary.skipped_binary += 1;
            continue;
        }
        summary.blobs += 1;
        summary.bytes += obj.data.len() as u64;
        summary.findings.extend(scanner.scan(&file, &obj.data));
    }
    Ok(summary)
}
