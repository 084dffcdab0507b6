//! Range proofs: that the leaves [a, b) are exactly the entries at those positions of a tree
//! of size n. An export segment carries one, so it verifies against a signed checkpoint
//! without the entries before or after it.
//!
//! The proof is the hashes of the subtrees that RFC 6962's recursion meets entirely outside
//! [a, b), in recursion order: O(log n) hashes. The verifier repeats the same recursion, takes
//! a proof hash where the producer put one and a leaf inside the range, and must arrive at the
//! signed root having used every hash.

use crate::proof::{split_point, subtree, NodeSource, ProofError, VerifyError};
use crate::{node_hash, Hash};

fn check(n: u64, a: u64, b: u64) -> Result<(), VerifyError> {
    if a >= b || b > n {
        return Err(VerifyError::BadRange {
            first: a,
            end: b,
            size: n,
        });
    }
    Ok(())
}

/// The range proof for leaves [a, b) of the first `n` entries.
pub fn range_proof<S: NodeSource>(
    s: &S,
    n: u64,
    a: u64,
    b: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if check(n, a, b).is_err() {
        return Err(ProofError::IndexOutOfRange {
            index: b.max(a),
            size: n,
        });
    }
    let mut out = Vec::new();
    collect(s, 0, n, a, b, &mut out)?;
    Ok(out)
}

/// A `NodeSource` that hands out dummy hashes and notes every position asked for: run a
/// proof generator over it to learn which stored nodes the real one will read.
struct Recorder(std::cell::RefCell<Vec<(u32, u64)>>);

impl NodeSource for Recorder {
    type Error = std::convert::Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
        self.0.borrow_mut().push((level, index));
        Ok(Some([0; 32]))
    }
}

/// The stored nodes `range_proof` reads for these sizes, so a caller can fetch just those.
pub fn range_positions(n: u64, a: u64, b: u64) -> Vec<(u32, u64)> {
    let r = Recorder(Default::default());
    let _ = range_proof(&r, n, a, b);
    r.0.into_inner()
}

/// The stored nodes `inclusion_proof` reads for leaf `index` of a tree of `size`.
pub fn inclusion_positions(index: u64, size: u64) -> Vec<(u32, u64)> {
    let r = Recorder(Default::default());
    let _ = crate::proof::inclusion_proof(&r, index, size);
    r.0.into_inner()
}

fn collect<S: NodeSource>(
    s: &S,
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError<S::Error>> {
    if hi <= a || lo >= b {
        out.push(subtree(s, lo, hi - lo)?);
    } else if hi - lo > 1 {
        let k = split_point(hi - lo);
        collect(s, lo, lo + k, a, b, out)?;
        collect(s, lo + k, hi, a, b, out)?;
    }
    Ok(())
}

/// The root of a tree of `n` entries whose leaves [a, a + leaves.len()) are `leaves`, given
/// the range proof for them. Compare it with a signed root.
pub fn root_from_range(
    n: u64,
    a: u64,
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, VerifyError> {
    let b = a
        .checked_add(leaves.len() as u64)
        .ok_or(VerifyError::BadRange {
            first: a,
            end: u64::MAX,
            size: n,
        })?;
    check(n, a, b)?;
    let mut proof = proof.iter();
    let root = fold(0, n, a, b, leaves, &mut proof)?;
    if proof.next().is_some() {
        return Err(VerifyError::WrongLength);
    }
    Ok(root)
}

fn fold(
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    leaves: &[Hash],
    proof: &mut std::slice::Iter<'_, Hash>,
) -> Result<Hash, VerifyError> {
    if hi <= a || lo >= b {
        return proof.next().copied().ok_or(VerifyError::WrongLength);
    }
    if hi - lo == 1 {
        // lo lies in [a, b) here, so the index is in bounds.
        return Ok(leaves[(lo - a) as usize]);
    }
    let k = split_point(hi - lo);
    let left = fold(lo, lo + k, a, b, leaves, proof)?;
    let right = fold(lo + k, hi, a, b, leaves, proof)?;
    Ok(node_hash(&left, &right))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{root, NodeSource};
    use proptest::prelude::*;

    use crate::tree::sample_tree as tree;

    #[test]
    fn whole_tree_needs_no_proof() {
        let (t, leaves) = tree(13);
        let p = range_proof(&t, 13, 0, 13).unwrap();
        assert!(p.is_empty());
        assert_eq!(
            root_from_range(13, 0, &leaves, &p).unwrap(),
            root(&t, 13).unwrap()
        );
    }

    #[test]
    fn empty_and_out_of_bounds_ranges_are_refused() {
        let (t, leaves) = tree(8);
        assert!(range_proof(&t, 8, 3, 3).is_err());
        assert!(range_proof(&t, 8, 3, 9).is_err());
        assert!(matches!(
            root_from_range(8, 7, &leaves[..2], &[]),
            Err(VerifyError::BadRange { .. })
        ));
        assert!(root_from_range(8, 0, &[], &[]).is_err());
    }

    proptest! {
        #[test]
        fn range_proofs_verify_and_forgeries_fail(
            n in 1u64..300,
            x in any::<u64>(),
            y in any::<u64>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let (t, leaves) = tree(n);
            let a = x % n;
            let b = a + 1 + y % (n - a);
            let proof = range_proof(&t, n, a, b).unwrap();
            // Exactly the nodes listed by range_positions suffice.
            let mut only = crate::NodeMap::default();
            for (l, i) in range_positions(n, a, b) {
                only.0.insert((l, i), t.node(l, i).unwrap().unwrap());
            }
            prop_assert_eq!(&range_proof(&only, n, a, b).unwrap(), &proof);
            prop_assert!(proof.len() <= 2 * 64);
            let slice = &leaves[a as usize..b as usize];
            let expected = root(&t, n).unwrap();
            prop_assert_eq!(root_from_range(n, a, slice, &proof).unwrap(), expected);
            // Any altered proof hash changes the root.
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let at = flip.index(bad.len());
                bad[at][0] ^= 1;
                prop_assert_ne!(root_from_range(n, a, slice, &bad).unwrap(), expected);
                // A dropped or an extra hash is refused outright.
                prop_assert!(root_from_range(n, a, slice, &proof[1..]).is_err());
            }
            let mut extra = proof.clone();
            extra.push([7; 32]);
            prop_assert!(root_from_range(n, a, slice, &extra).is_err());
            // An altered leaf, or the same leaves claimed at another offset, does not verify.
            let mut forged = slice.to_vec();
            let at = flip.index(forged.len());
            forged[at][5] ^= 0x80;
            prop_assert_ne!(root_from_range(n, a, &forged, &proof).ok(), Some(expected));
            if a + 1 < n && b < n {
                prop_assert_ne!(root_from_range(n, a + 1, slice, &proof).ok(), Some(expected));
            }
        }
    }
}
