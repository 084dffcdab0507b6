//! The math of custos' tamper-evident ledger: RFC 6962 / RFC 9162 Merkle tree hashing,
//! inclusion and consistency proofs — generated from any store of complete subtree hashes
//! and verified offline — and C2SP signed checkpoints (Ed25519). Pure functions over plain
//! data; storage lives in `custos-store`.
//!
//! Leaves hash as `SHA-256(0x00 ‖ data)`, interior nodes as `SHA-256(0x01 ‖ left ‖ right)`,
//! so a leaf can never be passed off as a node (the second-preimage defence of RFC 6962).

pub mod checkpoint;
pub mod frontier;
pub mod proof;
pub mod range;
pub mod tree;
pub mod verify;
pub mod witness;

pub use checkpoint::{
    generate_key, note_body, read_checkpoint_unverified, read_prune_unverified, Checkpoint,
    CheckpointError, NoteSigner, NoteVerifier, PruneRecord,
};
pub use frontier::{Frontier, FrontierError};
pub use proof::{
    consistency_positions, consistency_proof, inclusion_proof, root, verify_consistency,
    verify_inclusion, NodeSource, ProofError, VerifyError,
};
pub use range::{inclusion_positions, range_positions, range_proof, root_from_range};
pub use tree::{MemoryTree, NodeMap};
pub use verify::{
    verify_ledger, Anchor, Finding, LedgerCheck, Report, StoredCheckpoint, StoredEntry, StoredNode,
    StoredPrune,
};
pub use witness::{witness_accepts, WitnessRefusal};

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash of a log entry: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // From RFC 6962's reference implementation test vectors.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
