//! Offline verification of a whole stored ledger: recompute every leaf from its event, the
//! tree from the leaves, compare every stored node, and check every signed checkpoint against
//! the recomputed roots. Reports the first place each kind of damage shows.

use crate::checkpoint::{
    read_checkpoint_unverified, read_prune_unverified, Checkpoint, NoteVerifier, PruneRecord,
};
use crate::proof::NodeSource;
use crate::{leaf_hash, root, Hash, MemoryTree};
use sha2::Digest as _;

/// What is read from storage, as stored (hashes as hex text).
pub struct StoredEntry<'a> {
    pub index: i64,
    pub event: &'a str,
    pub leaf_hash: &'a str,
}

pub struct StoredNode<'a> {
    pub level: i64,
    pub index: i64,
    pub hash: &'a str,
}

pub struct StoredCheckpoint<'a> {
    pub size: i64,
    pub note: &'a str,
}

/// The stored record of a prune: its point, its signed note and the exports it names.
pub struct StoredPrune<'a> {
    pub size: i64,
    pub note: &'a str,
    /// The exports' JSON, exactly as stored: the note signs its SHA-256.
    pub exports: &'a str,
}

/// A checkpoint held outside the database (a published file, a witness, a file given on the
/// command line): the stored ledger must contain it and agree with it.
#[derive(Clone, Debug)]
pub struct Anchor {
    /// Where it came from, for messages.
    pub source: String,
    pub checkpoint: Checkpoint,
}

/// One problem found, located as precisely as the evidence allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The first entry index the problem concerns, when known.
    pub index: Option<u64>,
    /// True when `index` is the damaged entry itself; false when it only starts the range
    /// (between two checkpoints, under a subtree) where the damage must be.
    pub exact: bool,
    pub problem: String,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Entries still stored (after any prune).
    pub entries: u64,
    /// Entries before the prune point: removed, vouched for by the signed prune record.
    pub pruned: u64,
    pub checkpoints_verified: usize,
    pub checkpoints_unchecked: usize,
    /// External anchors the ledger was checked against.
    pub anchors_checked: usize,
    /// The largest anchored size, if any anchor was checked.
    pub anchored_size: Option<u64>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

pub(crate) fn hex_decode(text: &str, out: &mut [u8; 32]) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return false;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (i, b) in out.iter_mut().enumerate() {
        match (nibble(bytes[2 * i]), nibble(bytes[2 * i + 1])) {
            (Some(h), Some(l)) => *b = h << 4 | l,
            _ => return false,
        }
    }
    true
}

/// True when `text` is the lowercase hex of `h` (as stored), without allocating.
fn hex_eq(h: &Hash, text: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let t = text.as_bytes();
    t.len() == 64
        && h.iter().enumerate().all(|(i, b)| {
            t[2 * i] == DIGITS[usize::from(b >> 4)] && t[2 * i + 1] == DIGITS[usize::from(b & 15)]
        })
}

/// Verifies a ledger held in memory: `LedgerCheck` fed from slices. Without a verifier,
/// checkpoint signatures are not checked (and counted as unchecked), but their roots still
/// are when they parse.
///
/// After a prune, `pruned` is the signed checkpoint at the prune point: the entries before
/// it are gone, their tree is rebuilt from the stored nodes (hashes only), and that tree must
/// hash to the signed root before anything after it counts.
#[allow(clippy::too_many_arguments)]
pub fn verify_ledger(
    entries: &[StoredEntry<'_>],
    nodes: &[StoredNode<'_>],
    checkpoints: &[StoredCheckpoint<'_>],
    pruned: Option<&StoredPrune<'_>>,
    verifier: Option<&NoteVerifier>,
    anchors: &[Anchor],
) -> Report {
    let mut check = LedgerCheck::new(verifier);
    for a in anchors {
        check.anchor(a.clone());
    }
    if let Some(p) = pruned {
        check.pruned(p, nodes);
    }
    for e in entries {
        check.entry(e);
    }
    let mut sorted: Vec<&StoredNode<'_>> = nodes.iter().collect();
    sorted.sort_by_key(|n| (n.level, n.index));
    for n in sorted {
        check.node(n);
    }
    check.finish(checkpoints)
}

/// Streaming verification, so a ledger of millions of entries is checked in one pass with
/// memory for its tree hashes only: call `pruned` (after a prune), then `entry` for every
/// stored entry in index order, then `node` for every stored node in (level, index) order,
/// then `finish` with the checkpoints.
pub struct LedgerCheck<'v> {
    verifier: Option<&'v NoteVerifier>,
    base: u64,
    tree: MemoryTree,
    report: Report,
    next_entry: u64,
    first_gap: Option<u64>,
    first_altered: Option<u64>,
    /// The most precise bad node: the lowest level, then the earliest entry it covers.
    first_bad_node: Option<((u32, u64), String)>,
    /// Per level, the next node index expected in the ordered stream.
    node_next: Vec<u64>,
    first_missing: Option<(u32, u64)>,
    /// The pruned part could not be rebuilt; nothing after it can be checked.
    broken: bool,
    /// The `audit.prune` event the prune record names: (index, leaf hash, seen and matching).
    prune_event: Option<(u64, Hash, Option<bool>)>,
    anchors: Vec<Anchor>,
}

impl<'v> LedgerCheck<'v> {
    pub fn new(verifier: Option<&'v NoteVerifier>) -> Self {
        Self {
            verifier,
            base: 0,
            tree: MemoryTree::new(),
            report: Report::default(),
            next_entry: 0,
            first_gap: None,
            first_altered: None,
            first_bad_node: None,
            node_next: vec![0; 64],
            first_missing: None,
            broken: false,
            prune_event: None,
            anchors: Vec::new(),
        }
    }

    /// Checks the ledger against a checkpoint held outside the database too (call before
    /// `finish`): the ledger must be at least as long and hash to its root at its size.
    pub fn anchor(&mut self, anchor: Anchor) {
        self.anchors.push(anchor);
    }

    /// The ledger was pruned at `p.size`: rebuild the tree below it from `nodes` (any order;
    /// nodes not wholly below the prune point are ignored) and check it against the signed
    /// prune record, whose `audit.prune` event must be among the entries. Call before the
    /// first entry.
    pub fn pruned(&mut self, p: &StoredPrune<'_>, nodes: &[StoredNode<'_>]) {
        let base = u64::try_from(p.size).unwrap_or(0);
        self.base = base;
        self.next_entry = base;
        self.report.pruned = base;
        let mut below = crate::NodeMap::default();
        for n in nodes {
            let (Ok(level), Ok(index)) = (u32::try_from(n.level), u64::try_from(n.index)) else {
                continue;
            };
            let mut hash = [0u8; 32];
            let fits = index
                .checked_add(1)
                .and_then(|i| i.checked_shl(level))
                .is_some_and(|end| end <= base);
            if fits && hex_decode(n.hash, &mut hash) {
                below.0.insert((level, index), hash);
            }
        }
        let report = &mut self.report;
        match MemoryTree::from_nodes(&below, base) {
            Ok(t) => {
                if let Some((level, index)) = t.first_inconsistent() {
                    report.findings.push(Finding {
                        index: Some(index << level),
                        exact: false,
                        problem: format!("stored node {level}/{index}, below the prune point {base}, is not the hash of its children: the pruned part of the tree was altered"),
                    });
                }
                self.tree = t;
            }
            Err((level, index)) => {
                report.findings.push(Finding {
                    index: Some(index << level),
                    exact: false,
                    problem: format!("stored node {level}/{index}, below the prune point {base}, is missing or unreadable: the pruned part of the tree cannot be rebuilt"),
                });
                self.broken = true;
                return;
            }
        }
        let record: Result<PruneRecord, _> = match self.verifier {
            Some(v) => v
                .open_prune(p.note)
                .inspect(|_| report.checkpoints_verified += 1),
            None => {
                report.checkpoints_unchecked += 1;
                read_prune_unverified(p.note)
            }
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.findings.push(Finding {
                    index: Some(0),
                    exact: false,
                    problem: format!("the prune record at size {base} is not a valid prune record ({e}): entries before {base} were removed without a signed prune"),
                });
                return;
            }
        };
        if record.head.size != base || root(&self.tree, base).ok() != Some(record.head.root) {
            report.findings.push(Finding {
                index: Some(0),
                exact: false,
                problem: format!("the stored tree below the prune point {base} no longer hashes to the signed prune record: nodes before entry {base} were altered"),
            });
        }
        let exports: Hash = sha2::Sha256::digest(p.exports.as_bytes()).into();
        if exports != record.exports_sha256 {
            report.findings.push(Finding {
                index: Some(0),
                exact: false,
                problem: format!(
                    "the exports stored with the prune at {base} are not the ones its record signs"
                ),
            });
        }
        if record.event_index < base {
            report.findings.push(Finding {
                index: Some(0),
                exact: false,
                problem: format!(
                    "the prune record at {base} names event {} inside the pruned range",
                    record.event_index
                ),
            });
        } else {
            self.prune_event = Some((record.event_index, record.event_leaf, None));
        }
    }

    /// The next stored entry, in index order.
    pub fn entry(&mut self, e: &StoredEntry<'_>) {
        if self.broken {
            return;
        }
        let pos = self.next_entry;
        self.next_entry += 1;
        self.report.entries += 1;
        if e.index != pos as i64 && self.first_gap.is_none() {
            self.first_gap = Some(pos);
        }
        let leaf = leaf_hash(e.event.as_bytes());
        if self.first_altered.is_none() && !hex_eq(&leaf, e.leaf_hash) {
            self.first_altered = Some(pos);
        }
        if let Some((at, expected, seen)) = &mut self.prune_event {
            if *at == pos {
                *seen = Some(leaf == *expected);
            }
        }
        self.tree.append_hash(leaf);
    }

    /// The next stored node, in (level, index) order, after every entry.
    pub fn node(&mut self, n: &StoredNode<'_>) {
        let mut hash = [0u8; 32];
        let parsed = hex_decode(n.hash, &mut hash);
        self.node_hash(n.level, n.index, parsed.then_some(&hash));
    }

    /// `node` for a hash already decoded (`None`: the stored text was not a hash at all).
    pub fn node_hash(&mut self, level: i64, index: i64, hash: Option<&Hash>) {
        if self.broken {
            return;
        }
        let n = StoredNode {
            level,
            index,
            hash: "",
        };
        let (Ok(level), Ok(index)) = (u32::try_from(n.level), u64::try_from(n.index)) else {
            self.first_bad_node.get_or_insert((
                (0, 0),
                format!("node {}/{} has an impossible position", n.level, n.index),
            ));
            return;
        };
        if let Some(next) = self.node_next.get_mut(level as usize) {
            if index > *next && self.first_missing.is_none_or(|m| (level, *next) < m) {
                self.first_missing = Some((level, *next));
            }
            *next = (*next).max(index + 1);
        }
        let covers = index.checked_shl(level).unwrap_or(u64::MAX);
        let problem = match self.tree.node(level, index) {
            Ok(Some(h)) if Some(&h) == hash => return,
            Ok(Some(_)) => format!(
                "stored node {level}/{index} does not match the entries it covers (from entry {covers})"
            ),
            _ => format!(
                "stored node {level}/{index} covers entries that do not exist: the log was truncated"
            ),
        };
        if self
            .first_bad_node
            .as_ref()
            .is_none_or(|(k, _)| (level, covers) < *k)
        {
            self.first_bad_node = Some(((level, covers), problem));
        }
    }

    /// Checks the signed checkpoints against the recomputed tree and returns the report.
    pub fn finish(mut self, checkpoints: &[StoredCheckpoint<'_>]) -> Report {
        let verifier = self.verifier;
        let mut report = std::mem::take(&mut self.report);
        if self.broken {
            return report;
        }
        let tree = &self.tree;
        if let Some((at, _, seen)) = self.prune_event {
            if seen != Some(true) {
                report.findings.push(Finding {
                    index: Some(at),
                    exact: true,
                    problem: format!(
                        "the prune record's audit.prune event (entry {at}) is {}: the prune was not recorded as it claims",
                        if seen.is_none() { "missing" } else { "not the one it signed" }
                    ),
                });
            }
        }
        if let Some(i) = self.first_gap {
            report.findings.push(Finding {
                index: Some(i),
                exact: true,
                problem: format!(
                    "entry indexes are not contiguous from {i}: an entry was deleted or inserted"
                ),
            });
        }
        if let Some(i) = self.first_altered {
            report.findings.push(Finding {
                index: Some(i),
                exact: true,
                problem: format!(
                    "entry {i} no longer matches its stored leaf hash: its event was altered"
                ),
            });
        }
        if let Some(((level, i), problem)) = self.first_bad_node.take() {
            report.findings.push(Finding {
                index: Some(i),
                exact: level == 0,
                problem,
            });
        }
        // Every complete node the entries imply must be stored (appends persist them all).
        let size = self.next_entry;
        let mut missing = self.first_missing;
        for (level, next) in self.node_next.iter().enumerate() {
            let count = size >> level;
            if *next < count && missing.is_none_or(|m| (level as u32, *next) < m) {
                missing = Some((level as u32, *next));
            }
        }
        if let Some((level, index)) = missing {
            report.findings.push(Finding {
                index: Some(index << level),
                exact: level == 0,
                problem: format!("stored node {level}/{index} is missing"),
            });
        }
        // Checkpoints: signed roots must match the recomputed tree at their sizes.
        let mut previous = 0u64;
        for c in checkpoints {
            let Ok(csize) = u64::try_from(c.size) else {
                continue;
            };
            // Without the public key the signature cannot be checked, but the root can: a
            // stored checkpoint that disagrees with the recomputed tree is damage either way.
            let opened = match verifier {
                Some(v) => v.open(c.note).inspect(|_| report.checkpoints_verified += 1),
                None => {
                    report.checkpoints_unchecked += 1;
                    read_checkpoint_unverified(c.note)
                }
            };
            let parsed = match opened {
                Ok(cp) => Some(cp),
                Err(e) => {
                    report.findings.push(Finding {
                        index: Some(previous),
                        exact: false,
                        problem: format!("checkpoint at size {csize}: {e}"),
                    });
                    None
                }
            };
            if let Some(cp) = parsed {
                if cp.size != csize {
                    report.findings.push(Finding {
                        index: Some(previous),
                        exact: false,
                        problem: format!(
                            "checkpoint row for size {csize} carries a note for size {}",
                            cp.size
                        ),
                    });
                } else if csize > size {
                    report.findings.push(Finding { index: Some(size), exact: true, problem: format!("the checkpoint at size {csize} covers entries beyond the {size} stored: the log was truncated") });
                } else {
                    match root(tree, csize) {
                        Ok(r) if r == cp.root => {}
                        _ => report.findings.push(Finding {
                            index: Some(previous),
                            exact: false,
                            problem: format!("the entries no longer match the signed checkpoint at size {csize}: something between entry {previous} and {csize} was altered, removed, inserted or reordered"),
                        }),
                    }
                }
            }
            previous = csize;
        }
        // External anchors: what the database can no longer rewrite without it showing.
        for a in &self.anchors {
            let cp = &a.checkpoint;
            if cp.size < self.base {
                // Below the prune point the signed prune record vouches for the tree.
                continue;
            }
            report.anchors_checked += 1;
            report.anchored_size = Some(report.anchored_size.unwrap_or(0).max(cp.size));
            if cp.size > size {
                report.findings.push(Finding {
                    index: Some(size),
                    exact: true,
                    problem: format!(
                        "the ledger holds {size} entries, but the checkpoint anchored at {} covers {} with root {}: entries from {size} were removed",
                        a.source, cp.size, crate::checkpoint::hex32(&cp.root)
                    ),
                });
            } else if cp.size > 0 && root(tree, cp.size).ok() != Some(cp.root) {
                report.findings.push(Finding {
                    index: Some(0),
                    exact: false,
                    problem: format!(
                        "the ledger is not consistent with the checkpoint anchored at {}: at size {} its root should be {}; entries before {} were rewritten, removed or reordered",
                        a.source, cp.size, crate::checkpoint::hex32(&cp.root), cp.size
                    ),
                });
            } else if !checkpoints.iter().any(|c| c.size == cp.size as i64) {
                report.findings.push(Finding {
                    index: Some(cp.size),
                    exact: false,
                    problem: format!(
                        "the checkpoint at size {} anchored at {} is missing from the database: stored checkpoints were deleted",
                        cp.size, a.source
                    ),
                });
            }
        }
        // Exact locations first, earliest first; then the ranges that bound the rest.
        report
            .findings
            .sort_by_key(|f| (!f.exact, f.index.unwrap_or(u64::MAX)));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{generate_key, Checkpoint, NoteSigner, PruneRecord};

    fn hex32(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    struct Log {
        events: Vec<String>,
        leaves: Vec<String>,
        nodes: Vec<(i64, i64, String)>,
        checkpoints: Vec<(i64, String)>,
        signer: NoteSigner,
        verifier: NoteVerifier,
    }

    fn log(n: usize, checkpoint_every: usize) -> Log {
        let (private, public) = generate_key("test/log").unwrap();
        let signer = NoteSigner::from_key(&private).unwrap();
        let verifier = NoteVerifier::from_key(&public).unwrap();
        let mut tree = MemoryTree::new();
        let mut out = Log {
            events: vec![],
            leaves: vec![],
            nodes: vec![],
            checkpoints: vec![],
            signer,
            verifier,
        };
        for i in 0..n {
            let e = format!("{{\"n\":{i}}}");
            out.leaves.push(hex32(&leaf_hash(e.as_bytes())));
            for (l, x, h) in tree.append(e.as_bytes()) {
                out.nodes.push((i64::from(l), x as i64, hex32(&h)));
            }
            out.events.push(e);
            if (i + 1) % checkpoint_every == 0 {
                let size = i as u64 + 1;
                let cp = Checkpoint {
                    origin: "test/log".into(),
                    size,
                    root: root(&tree, size).unwrap(),
                };
                out.checkpoints.push((size as i64, out.signer.sign(&cp)));
            }
        }
        out
    }

    fn run(l: &Log, indexes: Option<&[i64]>) -> Report {
        run_from(l, 0, indexes)
    }

    /// Verifies the log as stored after a prune at `base`, whose record names the event at
    /// `base` as its `audit.prune` event.
    fn run_pruned(l: &Log, base: usize) -> Report {
        run_from(l, base, None)
    }

    fn prune_note(l: &Log, base: usize, exports: &str) -> String {
        let head = read_checkpoint_unverified(
            &l.checkpoints.iter().find(|c| c.0 == base as i64).unwrap().1,
        )
        .unwrap();
        l.signer.sign_prune(&PruneRecord {
            head,
            exports_sha256: sha2::Sha256::digest(exports.as_bytes()).into(),
            event_index: base as u64,
            event_leaf: leaf_hash(l.events[base].as_bytes()),
        })
    }

    fn run_from(l: &Log, base: usize, indexes: Option<&[i64]>) -> Report {
        let note = (base > 0).then(|| prune_note(l, base, "[]"));
        run_with(l, base, indexes, note.as_deref(), &[])
    }

    fn run_with(
        l: &Log,
        base: usize,
        indexes: Option<&[i64]>,
        prune_note: Option<&str>,
        anchors: &[Anchor],
    ) -> Report {
        run_as(l, base, indexes, prune_note, anchors, Some(&l.verifier))
    }

    fn run_as(
        l: &Log,
        base: usize,
        indexes: Option<&[i64]>,
        prune_note: Option<&str>,
        anchors: &[Anchor],
        verifier: Option<&NoteVerifier>,
    ) -> Report {
        let entries: Vec<StoredEntry> = l.events[base..]
            .iter()
            .zip(&l.leaves[base..])
            .enumerate()
            .map(|(i, (e, h))| StoredEntry {
                index: indexes.map_or((base + i) as i64, |x| x[base + i]),
                event: e,
                leaf_hash: h,
            })
            .collect();
        let nodes: Vec<StoredNode> = l
            .nodes
            .iter()
            .map(|(a, b, h)| StoredNode {
                level: *a,
                index: *b,
                hash: h,
            })
            .collect();
        let cps: Vec<StoredCheckpoint> = l
            .checkpoints
            .iter()
            .map(|(s, n)| StoredCheckpoint { size: *s, note: n })
            .collect();
        let prune = prune_note.map(|note| StoredPrune {
            size: base as i64,
            note,
            exports: "[]",
        });
        verify_ledger(&entries, &nodes, &cps, prune.as_ref(), verifier, anchors)
    }

    #[test]
    fn a_checkpoint_is_never_accepted_as_a_prune_record() {
        let l = log(37, 10);
        // The attack: the checkpoint note at 20 copied into the prune table, entries deleted.
        let r = run_with(&l, 20, None, Some(&l.checkpoints[1].1), &[]);
        assert!(
            r.findings
                .iter()
                .any(|f| f.problem.contains("not a valid prune record")),
            "{:?}",
            r.findings
        );
        // A genuine prune record whose audit.prune event was then deleted or altered.
        let mut altered = log(37, 10);
        let note = prune_note(&altered, 20, "[]");
        altered.events[20] = "{\"n\":\"x\"}".into();
        altered.leaves[20] = hex32(&leaf_hash(altered.events[20].as_bytes()));
        let r = run_with(&altered, 20, None, Some(&note), &[]);
        assert!(
            r.findings.iter().any(|f| f.problem.contains("audit.prune")),
            "{:?}",
            r.findings
        );
        // Exports swapped after the prune.
        let other = prune_note(&l, 20, "[{\"dir\":\"elsewhere\"}]");
        let r = run_with(&l, 20, None, Some(&other), &[]);
        assert!(
            r.findings.iter().any(|f| f.problem.contains("exports")),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn stored_checkpoint_roots_are_compared_without_the_public_key() {
        let mut l = log(20, 10);
        // Flip one bit of the stored root of the checkpoint at 20.
        let cp = read_checkpoint_unverified(&l.checkpoints[1].1).unwrap();
        let mut bad = cp.clone();
        bad.root[0] ^= 1;
        l.checkpoints[1].1 = l.signer.sign(&bad);
        let r = run_as(&l, 0, None, None, &[], None);
        assert_eq!(r.checkpoints_unchecked, 2);
        assert!(
            r.findings.iter().any(|f| f.problem.contains("size 20")),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn anchors_catch_truncation_and_consistent_rewrites() {
        let l = log(37, 10);
        let head = |n: &Log, size: u64| Anchor {
            source: "the anchor directory".into(),
            checkpoint: read_checkpoint_unverified(
                &n.checkpoints.iter().find(|c| c.0 == size as i64).unwrap().1,
            )
            .unwrap(),
        };
        let r = run_with(&l, 0, None, None, &[head(&l, 30)]);
        assert!(r.ok(), "{:?}", r.findings);
        assert_eq!((r.anchors_checked, r.anchored_size), (1, Some(30)));
        // Truncated to 25 with every row after it (entries, nodes, checkpoints) deleted: the
        // stored rows agree with each other; only the anchor knows.
        let mut t = log(25, 10);
        t.checkpoints.retain(|c| c.0 <= 25);
        let r = run_with(&t, 0, None, None, &[head(&l, 30)]);
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        assert!(r.findings[0].problem.contains("holds 25 entries"));
        assert_eq!(r.findings[0].index, Some(25));
        // A consistent rewrite of the suffix from 22, checkpoints re-signed by the attacker's
        // own key: nothing stored disagrees, the anchor does.
        let mut w = log(37, 10);
        let mut tree = MemoryTree::new();
        w.events[22] = "{\"n\":\"forged\"}".into();
        w.nodes.clear();
        w.leaves.clear();
        w.checkpoints.clear();
        for e in &w.events {
            w.leaves.push(hex32(&leaf_hash(e.as_bytes())));
            for (a, b, h) in tree.append(e.as_bytes()) {
                w.nodes.push((i64::from(a), b as i64, hex32(&h)));
            }
        }
        let r = run_with(&w, 0, None, None, &[head(&l, 30)]);
        assert!(
            r.findings.iter().any(|f| f
                .problem
                .contains("not consistent with the checkpoint anchored")),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn a_pruned_log_verifies_from_its_signed_prune_point() {
        let l = log(37, 10);
        let r = run_pruned(&l, 20);
        assert!(r.ok(), "{:?}", r.findings);
        assert_eq!((r.pruned, r.entries), (20, 17));
        // Every checkpoint, before and after the prune point, and the prune record itself.
        assert_eq!(r.checkpoints_verified, 4);
        // Damage after the prune point is still found at its index.
        let mut t = log(37, 10);
        t.events[25] = "{}".into();
        assert_eq!(run_pruned(&t, 20).findings[0].index, Some(25));
        // A node below the prune point cannot be changed unnoticed.
        let mut n = log(37, 10);
        let at = n.nodes.iter().position(|x| x.0 == 2 && x.1 == 1).unwrap();
        n.nodes[at].2 = "00".repeat(32);
        let r = run_pruned(&n, 20);
        assert!(
            r.findings.iter().any(|f| f.problem.contains("prune")),
            "{:?}",
            r.findings
        );
        // Nor removed.
        n.nodes.remove(at);
        assert!(!run_pruned(&n, 20).ok());
    }

    #[test]
    fn an_intact_log_verifies() {
        let l = log(37, 10);
        let r = run(&l, None);
        assert!(r.ok(), "{:?}", r.findings);
        assert_eq!(r.checkpoints_verified, 3);
    }

    #[test]
    fn an_altered_event_is_found_at_its_index() {
        let mut l = log(37, 10);
        l.events[17] = "{\"n\":999}".into();
        let r = run(&l, None);
        assert_eq!(r.findings[0].index, Some(17), "{:?}", r.findings);
    }

    #[test]
    fn a_consistent_rewrite_is_caught_by_the_checkpoint() {
        // The attacker rewrites event 23, its leaf hash and every node: only the signed
        // checkpoint at size 30 can tell, and it bounds the damage to entries 20..30.
        let mut l = log(37, 10);
        let mut tree = MemoryTree::new();
        l.events[23] = "{\"n\":\"forged\"}".into();
        l.nodes.clear();
        l.leaves.clear();
        for e in &l.events {
            l.leaves.push(hex32(&leaf_hash(e.as_bytes())));
            for (a, b, h) in tree.append(e.as_bytes()) {
                l.nodes.push((i64::from(a), b as i64, hex32(&h)));
            }
        }
        let r = run(&l, None);
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        assert_eq!(r.findings[0].index, Some(20));
        assert!(r.findings[0].problem.contains("size 30"));
    }

    #[test]
    fn deletion_insertion_truncation_and_forged_checkpoints() {
        let l = log(37, 10);
        let idx: Vec<i64> = (0..37).map(|i| if i >= 12 { i + 1 } else { i }).collect();
        assert_eq!(run(&l, Some(&idx)).findings[0].index, Some(12));

        let mut t = log(37, 10);
        t.events.truncate(25);
        t.leaves.truncate(25);
        let r = run(&t, None);
        assert!(
            r.findings.iter().any(|f| f.problem.contains("truncated")),
            "{:?}",
            r.findings
        );

        let mut f = log(20, 10);
        let other = NoteSigner::from_key(&generate_key("test/log").unwrap().0).unwrap();
        let forged = Checkpoint {
            origin: "test/log".into(),
            size: 20,
            root: [0; 32],
        };
        f.checkpoints[1].1 = other.sign(&forged);
        let r = run(&f, None);
        assert!(
            r.findings
                .iter()
                .any(|x| x.problem.contains("checkpoint at size 20")),
            "{:?}",
            r.findings
        );

        let mut m = log(8, 100);
        m.nodes.retain(|(l, i, _)| !(*l == 1 && *i == 2));
        assert!(run(&m, None)
            .findings
            .iter()
            .any(|x| x.problem.contains("missing")));
    }
}
