//! The decision a C2SP `tlog-witness` makes on `add-checkpoint`: a new checkpoint is
//! cosigned only if the witness's recorded size is the request's `old` size and the
//! consistency proof takes the recorded root to the new one. Pure; the server is in the
//! gateway crate.

use crate::proof::verify_consistency;
use crate::{Checkpoint, Hash};

/// Why a witness refuses a checkpoint (the protocol's status codes in brackets).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// [409] The request's `old` is not the size the witness recorded: here is that size.
    #[error("the witness has recorded size {0}, not the old size given")]
    Conflict(u64),
    /// [400] The checkpoint is smaller than the old size.
    #[error("the checkpoint's size {new} is smaller than the old size {old}")]
    Smaller { old: u64, new: u64 },
    /// [422] The proof does not take the recorded tree to the new one.
    #[error("the consistency proof from size {old} to {new} does not verify")]
    BadProof { old: u64, new: u64 },
}

/// Whether a witness that recorded `recorded` (size and root; `None`: never saw this log)
/// accepts `new`, claimed to extend size `old` by `proof`.
pub fn witness_accepts(
    recorded: Option<(u64, Hash)>,
    old: u64,
    proof: &[Hash],
    new: &Checkpoint,
) -> Result<(), WitnessRefusal> {
    let (size, root) = recorded.unwrap_or((0, [0; 32]));
    if old != size {
        return Err(WitnessRefusal::Conflict(size));
    }
    if new.size < old {
        return Err(WitnessRefusal::Smaller { old, new: new.size });
    }
    let bad = WitnessRefusal::BadProof { old, new: new.size };
    if old == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(bad) };
    }
    if old == new.size {
        return if proof.is_empty() && root == new.root {
            Ok(())
        } else {
            Err(bad)
        };
    }
    verify_consistency(old, new.size, &root, &new.root, proof).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{consistency_proof, root, MemoryTree};

    #[test]
    fn the_witness_accepts_only_extensions_of_what_it_saw() {
        let mut tree = MemoryTree::new();
        for i in 0..20u32 {
            tree.append(&i.to_be_bytes());
        }
        let head = |n: u64| Checkpoint {
            origin: "o".into(),
            size: n,
            root: root(&tree, n).unwrap(),
        };
        assert_eq!(witness_accepts(None, 0, &[], &head(8)), Ok(()));
        let seen = Some((8, head(8).root));
        let proof = consistency_proof(&tree, 8, 20).unwrap();
        assert_eq!(witness_accepts(seen, 8, &proof, &head(20)), Ok(()));
        assert_eq!(
            witness_accepts(seen, 0, &[], &head(20)),
            Err(WitnessRefusal::Conflict(8))
        );
        let mut forged = head(20);
        forged.root[0] ^= 1;
        assert!(matches!(
            witness_accepts(seen, 8, &proof, &forged),
            Err(WitnessRefusal::BadProof { .. })
        ));
        assert_eq!(witness_accepts(seen, 8, &[], &head(8)), Ok(()));
        assert!(witness_accepts(seen, 8, &[], &head(4)).is_err());
    }
}
