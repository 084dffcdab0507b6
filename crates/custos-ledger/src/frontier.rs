//! The right edge of a Merkle tree: the roots of its complete subtrees, one per set bit of the
//! size. It is all an appender needs to know: each append yields the complete nodes it
//! creates (for a store to persist) without reading anything else.

use crate::{empty_root, node_hash, Hash};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees, largest (leftmost) first.
    nodes: Vec<Hash>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a tree of {size} entries has {expected} right-edge nodes, not {got}")]
pub struct FrontierError {
    pub size: u64,
    pub expected: usize,
    pub got: usize,
}

impl Frontier {
    /// The (level, index) of each right-edge node of a tree of `size` entries, largest
    /// first: what to read from a store to resume appending.
    pub fn positions(size: u64) -> Vec<(u32, u64)> {
        (0..64u32)
            .rev()
            .filter(|l| size >> l & 1 == 1)
            .map(|l| (l, (size >> l) - 1))
            .collect()
    }

    /// Resumes from the hashes at `positions(size)`, in that order.
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if nodes.len() != expected {
            return Err(FrontierError {
                size,
                expected,
                got: nodes.len(),
            });
        }
        Ok(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the complete nodes created, lowest level first, as
    /// (level, index, hash).
    pub fn append(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut created = vec![(0, self.size, leaf)];
        let mut hash = leaf;
        let mut level = 0u32;
        // Each trailing one bit of the old size is a complete sibling to merge with.
        while self.size >> level & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            created.push((level, (self.size >> level), hash));
        }
        self.nodes.push(hash);
        self.size += 1;
        created
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(first) = iter.next() else {
            return empty_root();
        };
        iter.fold(*first, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{leaf_hash, proof::NodeSource, root, MemoryTree};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_the_full_tree(n in 0u64..300, resume_at in 0u64..300) {
            let mut full = MemoryTree::new();
            let mut f = Frontier::default();
            let resume_at = resume_at.min(n);
            for i in 0..n {
                if i == resume_at {
                    // Resume from stored right-edge nodes, as a restarted process would.
                    let nodes = Frontier::positions(i).iter().map(|(l, x)| full.node(*l, *x).unwrap().unwrap()).collect();
                    f = Frontier::from_nodes(i, nodes).unwrap();
                }
                let leaf = leaf_hash(&i.to_le_bytes());
                let expected = full.append_hash(leaf);
                let got = f.append(leaf);
                prop_assert_eq!(got, expected);
            }
            prop_assert_eq!(f.root(), root(&full, n).unwrap());
        }
    }

    #[test]
    fn rejects_wrong_node_counts() {
        assert!(Frontier::from_nodes(3, vec![[0; 32]]).is_err());
        assert_eq!(Frontier::positions(6), vec![(2, 0), (1, 2)]);
    }
}
