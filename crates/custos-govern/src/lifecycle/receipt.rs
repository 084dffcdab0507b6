//! The erasure receipt: what an erasure did (each object with its version before and after,
//! digests, timestamps, what was not erased and why), bound to its `erasure.complete` ledger
//! event by digest, with that event's inclusion proof under a signed checkpoint. It verifies
//! offline with the ledger's public key; the subject's identity is in it only as a salted
//! digest, the salt held by whoever holds the receipt.

use super::erase::{subjects_digest, Subject};
use custos_ledger::{leaf_hash, verify_inclusion, Hash, NoteVerifier};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const KIND: &str = "custos.erasure-receipt/v1";

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    #[error("the checkpoint's signature does not verify with this public key")]
    Checkpoint,
    #[error("the ledger event is not in the signed log: {0}")]
    Inclusion(String),
    #[error("the receipt does not match its ledger event: {0}")]
    Mismatch(String),
    #[error("the receipt is not about this subject")]
    Subject,
}

/// `sha256:HEX` of the receipt's JSON text.
pub fn digest(receipt: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(receipt.to_string().as_bytes()))
    )
}

/// The artifact: the receipt and its ledger event, proven.
pub fn build(
    receipt: Value,
    index: u64,
    event: &str,
    proof: &[Hash],
    tree_size: u64,
    checkpoint: &str,
) -> Value {
    json!({
        "kind": KIND,
        "receipt": receipt,
        "ledger": {"index": index, "event": event,
                   "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                   "tree_size": tree_size, "checkpoint": checkpoint},
    })
}

/// What a verified receipt says.
#[derive(Clone, Debug)]
pub struct Verified {
    pub request: String,
    pub objects: usize,
    pub not_erased: usize,
    pub index: u64,
    pub origin: String,
}

/// Checks the checkpoint's signature, the event's path to the signed root, that the event
/// names this receipt by digest, and (given the subject) that the receipt is about them.
pub fn verify(
    artifact: &Value,
    verifier: &NoteVerifier,
    subjects: &[Subject],
) -> Result<Verified, ReceiptError> {
    let bad = |w: &str| ReceiptError::Malformed(w.to_owned());
    if artifact["kind"] != KIND {
        return Err(bad(
            "`kind` is not custos.erasure-receipt/v1; is this an erasure receipt?",
        ));
    }
    let receipt = &artifact["receipt"];
    let l = &artifact["ledger"];
    let index = l["index"]
        .as_u64()
        .ok_or_else(|| bad("`ledger.index` must be a number"))?;
    let size = l["tree_size"]
        .as_u64()
        .ok_or_else(|| bad("`ledger.tree_size` must be a number"))?;
    let event = l["event"]
        .as_str()
        .ok_or_else(|| bad("`ledger.event` must be a string"))?;
    let note = l["checkpoint"]
        .as_str()
        .ok_or_else(|| bad("`ledger.checkpoint` must be a string"))?;
    let mut path = Vec::new();
    for h in l["proof"]
        .as_array()
        .ok_or_else(|| bad("`ledger.proof` must be an array"))?
    {
        let mut x = [0u8; 32];
        hex::decode_to_slice(h.as_str().unwrap_or(""), &mut x)
            .map_err(|_| bad("`ledger.proof` holds something that is not a 64-hex-digit hash"))?;
        path.push(x);
    }
    let cp = verifier.open(note).map_err(|_| ReceiptError::Checkpoint)?;
    if cp.size != size {
        return Err(bad("`ledger.tree_size` is not the checkpoint's size"));
    }
    verify_inclusion(index, size, &leaf_hash(event.as_bytes()), &path, &cp.root)
        .map_err(|e| ReceiptError::Inclusion(e.to_string()))?;
    let e: Value = serde_json::from_str(event).map_err(|_| bad("`ledger.event` is not JSON"))?;
    let r = &e["resources"][0];
    if e["activity"] != "erasure.complete" {
        return Err(ReceiptError::Mismatch(
            "the event is not an erasure's completion".into(),
        ));
    }
    if r["receipt"].as_str() != Some(digest(receipt).as_str()) {
        return Err(ReceiptError::Mismatch(
            "the receipt's digest is not the one the ledger holds".into(),
        ));
    }
    if r["request"] != receipt["request"] || r["subject"] != receipt["subject"]["digest"] {
        return Err(ReceiptError::Mismatch(
            "the request or subject differs".into(),
        ));
    }
    if !subjects.is_empty() {
        let salt = hex::decode(receipt["subject"]["salt"].as_str().unwrap_or(""))
            .map_err(|_| bad("`receipt.subject.salt` is not hex"))?;
        if receipt["subject"]["digest"].as_str() != Some(subjects_digest(subjects, &salt).as_str())
        {
            return Err(ReceiptError::Subject);
        }
    }
    Ok(Verified {
        request: receipt["request"].as_str().unwrap_or_default().to_owned(),
        objects: receipt["objects"].as_array().map_or(0, Vec::len),
        not_erased: receipt["not_erased"].as_array().map_or(0, Vec::len),
        index,
        origin: cp.origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_ledger::{generate_key, inclusion_proof, root, Checkpoint, MemoryTree, NoteSigner};

    #[test]
    fn a_receipt_verifies_and_any_edit_fails() {
        let jane = Subject::parse("email:jane@example.com").unwrap();
        let receipt = json!({"request": "era_1", "subject": {"digest": subjects_digest(std::slice::from_ref(&jane), b"salt"), "salt": hex::encode(b"salt")},
                             "objects": [{"dataset": "reviews@v1", "path": "a.csv", "before": "sha256:aa", "after": "sha256:bb", "removed": 2}],
                             "not_erased": []});
        let event = json!({"activity": "erasure.complete", "resources": [{"type": "erasure", "request": "era_1",
                           "subject": receipt["subject"]["digest"], "receipt": digest(&receipt)}]}).to_string();
        let (sk, vk) = generate_key("t.example/l").unwrap();
        let mut tree = MemoryTree::new();
        tree.append(b"x");
        tree.append(event.as_bytes());
        let cp = NoteSigner::from_key(&sk).unwrap().sign(&Checkpoint {
            origin: "t.example/l".into(),
            size: 2,
            root: root(&tree, 2).unwrap(),
        });
        let a = build(
            receipt,
            1,
            &event,
            &inclusion_proof(&tree, 1, 2).unwrap(),
            2,
            &cp,
        );
        let v = NoteVerifier::from_key(&vk).unwrap();
        let ok = verify(&a, &v, std::slice::from_ref(&jane)).unwrap();
        assert_eq!((ok.objects, ok.index), (1, 1));
        assert!(matches!(
            verify(&a, &v, &[Subject::parse("email:bob@example.com").unwrap()]),
            Err(ReceiptError::Subject)
        ));
        let mut edited = a.clone();
        edited["receipt"]["objects"][0]["removed"] = json!(1);
        assert!(matches!(
            verify(&edited, &v, &[]),
            Err(ReceiptError::Mismatch(_))
        ));
        let mut edited = a.clone();
        edited["ledger"]["event"] = json!(event.replace("era_1", "era_2"));
        assert!(matches!(
            verify(&edited, &v, &[]),
            Err(ReceiptError::Inclusion(_))
        ));
    }
}
