//! An in-memory Merkle tree that keeps every complete subtree hash, level by level: the
//! reference `NodeSource` for tests, and the shape a persistent store mirrors (one row per
//! complete node, written when an append completes it).

use crate::{leaf_hash, node_hash, proof::NodeSource, Hash};
use std::convert::Infallible;

#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the root of the complete subtree of 2^l leaves starting at i·2^l.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// A tree of `size` entries rebuilt from its complete nodes alone (the entries
    /// themselves may be gone, as after a prune). Fails with the first missing node.
    pub fn from_nodes<S: NodeSource>(src: &S, size: u64) -> Result<Self, (u32, u64)> {
        let mut levels = Vec::new();
        for level in 0..64u32 {
            let count = size >> level;
            if count == 0 {
                break;
            }
            let mut nodes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            for index in 0..count {
                match src.node(level, index) {
                    Ok(Some(h)) => nodes.push(h),
                    _ => return Err((level, index)),
                }
            }
            levels.push(nodes);
        }
        Ok(Self { levels })
    }

    /// The lowest stored node that is not the hash of its two children, if any: a tree
    /// rebuilt by `from_nodes` must pass this before its root means anything.
    pub fn first_inconsistent(&self) -> Option<(u32, u64)> {
        for (level, pair) in self.levels.windows(2).enumerate() {
            let (below, nodes) = (&pair[0], &pair[1]);
            for (index, hash) in nodes.iter().enumerate() {
                if node_hash(&below[2 * index], &below[2 * index + 1]) != *hash {
                    return Some((level as u32 + 1, index as u64));
                }
            }
        }
        None
    }

    /// Appends an entry; returns the complete nodes this append created, lowest first, as
    /// (level, index, hash) — what a store must persist.
    pub fn append(&mut self, data: &[u8]) -> Vec<(u32, u64, Hash)> {
        self.append_hash(leaf_hash(data))
    }

    /// Appends an already hashed leaf.
    pub fn append_hash(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut created = Vec::new();
        let mut level = 0usize;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let nodes = &mut self.levels[level];
            nodes.push(hash);
            let index = nodes.len() - 1;
            created.push((level as u32, index as u64, hash));
            if index.is_multiple_of(2) {
                return created;
            }
            hash = node_hash(&nodes[index - 1], &nodes[index]);
            level += 1;
        }
    }
}

impl NodeSource for MemoryTree {
    type Error = Infallible;

    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Infallible> {
        Ok(self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied())
    }
}

/// Complete nodes loaded from storage, keyed by (level, index): a `NodeSource` for proofs
/// over a stored ledger.
#[derive(Clone, Debug, Default)]
pub struct NodeMap(pub std::collections::HashMap<(u32, u64), Hash>);

impl NodeSource for NodeMap {
    type Error = Infallible;

    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Infallible> {
        Ok(self.0.get(&(level, index)).copied())
    }
}

/// A tree of `n` entries "entry 0", "entry 1", … and their leaf hashes, for tests.
#[cfg(test)]
pub(crate) fn sample_tree(n: u64) -> (MemoryTree, Vec<Hash>) {
    let mut t = MemoryTree::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let data = format!("entry {i}");
        leaves.push(leaf_hash(data.as_bytes()));
        t.append(data.as_bytes());
    }
    (t, leaves)
}
