//! Roots, inclusion proofs and consistency proofs (RFC 6962 §2.1, verified as RFC 9162
//! §2.1.3.2 and §2.1.4.2 describe).
//!
//! Generation reads only complete subtree hashes from a `NodeSource`, so its cost grows with
//! log(n) lookups per proof element, never with the number of entries.

use crate::{empty_root, node_hash, Hash};

/// Where complete subtree hashes come from: `node(l, i)` is the root of the subtree of 2^l
/// leaves starting at leaf i·2^l, or `None` when that subtree is not complete yet.
pub trait NodeSource {
    type Error;
    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error>;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    #[error("leaf {index} is not in a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("cannot prove consistency from size {old} to the smaller or empty size {new}")]
    BadSizes { old: u64, new: u64 },
    #[error("the store lacks the node at level {level}, index {index}")]
    MissingNode { level: u32, index: u64 },
    #[error("reading the store failed: {0}")]
    Source(E),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("leaf {index} is not in a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("a consistency proof needs 0 < old size <= new size (got {old} and {new})")]
    BadSizes { old: u64, new: u64 },
    #[error("entries [{first}, {end}) are not a non-empty range of a tree of {size} entries")]
    BadRange { first: u64, end: u64, size: u64 },
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of leaves [start, start + len), with `start` aligned as RFC 6962's
/// recursion guarantees.
pub(crate) fn subtree<S: NodeSource>(
    s: &S,
    start: u64,
    len: u64,
) -> Result<Hash, ProofError<S::Error>> {
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        let index = start >> level;
        return s
            .node(level, index)
            .map_err(ProofError::Source)?
            .ok_or(ProofError::MissingNode { level, index });
    }
    let k = split_point(len);
    let left = subtree(s, start, k)?;
    let right = subtree(s, start + k, len - k)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` entries.
pub fn root<S: NodeSource>(s: &S, size: u64) -> Result<Hash, ProofError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(s, 0, size)
}

/// The audit path proving leaf `index` is in the tree of the first `size` entries.
pub fn inclusion_proof<S: NodeSource>(
    s: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut path = Vec::new();
    // RFC 6962 PATH(m, D[start..start+n]), iteratively from the top; elements are pushed
    // top-down and reversed at the end (the proof lists them leaf-up).
    let (mut start, mut n, mut m) = (0u64, size, index);
    while n > 1 {
        let k = split_point(n);
        if m < k {
            path.push(subtree(s, start + k, n - k)?);
            n = k;
        } else {
            path.push(subtree(s, start, k)?);
            start += k;
            m -= k;
            n -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The proof that the tree of the first `old` entries is a prefix of that of the first `new`.
pub fn consistency_proof<S: NodeSource>(
    s: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    let mut path = Vec::new();
    // RFC 6962 SUBPROOF(m, D[start..start+n], b), iteratively.
    let (mut start, mut n, mut m, mut complete) = (0u64, new, old, true);
    while m != n {
        let k = split_point(n);
        if m <= k {
            path.push(subtree(s, start + k, n - k)?);
            n = k;
        } else {
            path.push(subtree(s, start, k)?);
            start += k;
            m -= k;
            n -= k;
            complete = false;
        }
    }
    if !complete {
        path.push(subtree(s, start, n)?);
    }
    path.reverse();
    Ok(path)
}

/// The (level, index) of every stored node that `consistency_proof(old, new)` and
/// `root(new)` read, so a store can fetch just those O(log n) rows first.
pub fn consistency_positions(old: u64, new: u64) -> Vec<(u32, u64)> {
    struct Recorder(std::cell::RefCell<Vec<(u32, u64)>>);
    impl NodeSource for Recorder {
        type Error = std::convert::Infallible;
        fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
            self.0.borrow_mut().push((level, index));
            Ok(Some([0; 32]))
        }
    }
    let r = Recorder(std::cell::RefCell::new(Vec::new()));
    let _ = root(&r, new);
    if old > 0 && old <= new {
        let _ = root(&r, old);
        let _ = consistency_proof(&r, old, new);
    }
    let mut positions = r.0.into_inner();
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if r == *root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

/// Checks a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old == 0 || old > new {
        return Err(VerifyError::BadSizes { old, new });
    }
    if old == new {
        return if !proof.is_empty() {
            Err(VerifyError::WrongLength)
        } else if old_root == new_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(VerifyError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{leaf_hash, MemoryTree};
    use proptest::prelude::*;

    /// RFC 6962's MTH, straight from the definition, for cross-checking.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    use crate::tree::sample_tree as tree;

    #[test]
    fn rfc6962_reference_roots() {
        // The eight-leaf test vector of the RFC 6962 reference implementation (Certificate
        // Transparency's merkle_tree_test): leaves are these byte strings.
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut t = MemoryTree::new();
        for (i, data) in inputs.iter().enumerate() {
            t.append(data);
            assert_eq!(
                hex::encode(root(&t, i as u64 + 1).unwrap()),
                expected[i],
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn positions_cover_what_proofs_read() {
        let (t, _) = tree(1000);
        let positions = consistency_positions(377, 1000);
        assert!(positions.len() < 40, "{}", positions.len());
        let mut subset = crate::NodeMap::default();
        for (l, i) in positions {
            subset.0.insert((l, i), t.node(l, i).unwrap().unwrap());
        }
        assert_eq!(root(&subset, 1000).unwrap(), root(&t, 1000).unwrap());
        assert_eq!(root(&subset, 377).unwrap(), root(&t, 377).unwrap());
        assert_eq!(
            consistency_proof(&subset, 377, 1000).unwrap(),
            consistency_proof(&t, 377, 1000).unwrap()
        );
    }

    #[test]
    fn rejects_bad_requests() {
        let (t, _) = tree(5);
        assert_eq!(
            inclusion_proof(&t, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            consistency_proof(&t, 0, 5),
            Err(ProofError::BadSizes { old: 0, new: 5 })
        );
        assert_eq!(
            consistency_proof(&t, 6, 5),
            Err(ProofError::BadSizes { old: 6, new: 5 })
        );
        // Sizes beyond what the store holds are reported, not guessed.
        assert!(matches!(
            inclusion_proof(&t, 0, 9),
            Err(ProofError::MissingNode { .. })
        ));
        assert!(matches!(root(&t, 6), Err(ProofError::MissingNode { .. })));
    }

    proptest! {
        #[test]
        fn roots_match_the_definition(n in 0u64..200) {
            let (t, leaves) = tree(n);
            prop_assert_eq!(root(&t, n).unwrap(), naive_root(&leaves));
            // Every earlier size is answerable from the same store.
            if n > 0 {
                let m = n / 2 + 1;
                prop_assert_eq!(root(&t, m).unwrap(), naive_root(&leaves[..m as usize]));
            }
        }

        #[test]
        fn inclusion_proofs_verify_and_detect_tampering(n in 1u64..150, seed in any::<u64>()) {
            let (t, leaves) = tree(n);
            let r = root(&t, n).unwrap();
            let i = seed % n;
            let proof = inclusion_proof(&t, i, n).unwrap();
            prop_assert!(proof.len() <= 64 - (n.leading_zeros() as usize) + 1);
            prop_assert_eq!(verify_inclusion(i, n, &leaves[i as usize], &proof, &r), Ok(()));
            // Another leaf, another index, a flipped bit, a short proof: all refused.
            let other = leaf_hash(b"forged");
            prop_assert!(verify_inclusion(i, n, &other, &proof, &r).is_err());
            if n > 1 {
                let j = (i + 1) % n;
                prop_assert!(verify_inclusion(j, n, &leaves[i as usize], &proof, &r).is_err());
                let mut bad = proof.clone();
                let k = (seed as usize) % bad.len();
                bad[k][0] ^= 1;
                prop_assert!(verify_inclusion(i, n, &leaves[i as usize], &bad, &r).is_err());
                prop_assert!(verify_inclusion(i, n, &leaves[i as usize], &proof[..proof.len() - 1], &r).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_detect_rewrites(n in 1u64..150, seed in any::<u64>()) {
            let (t, leaves) = tree(n);
            let old = seed % n + 1;
            let old_root = root(&t, old).unwrap();
            let new_root = root(&t, n).unwrap();
            let proof = consistency_proof(&t, old, n).unwrap();
            prop_assert_eq!(verify_consistency(old, n, &old_root, &new_root, &proof), Ok(()));
            // A history rewritten before `old` must not verify against the real old root.
            let mut forged = leaves.clone();
            forged[(seed as usize) % old as usize] = leaf_hash(b"rewritten");
            let mut ft = MemoryTree::new();
            for l in &forged { ft.append_hash(*l); }
            let forged_root = root(&ft, n).unwrap();
            let forged_proof = consistency_proof(&ft, old, n).unwrap();
            prop_assert!(verify_consistency(old, n, &old_root, &forged_root, &forged_proof).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let k = (seed as usize) % bad.len();
                bad[k][5] ^= 0x40;
                prop_assert!(verify_consistency(old, n, &old_root, &new_root, &bad).is_err());
            }
        }

        #[test]
        fn verifiers_never_panic(
            index in any::<u64>(), size in any::<u64>(), old in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
        ) {
            let h = [7u8; 32];
            let _ = verify_inclusion(index, size, &h, &proof, &h);
            let _ = verify_consistency(old, size, &h, &h, &proof);
        }
    }
}
