//! A ledger export (`custos audit export`): JSONL segments of entries, the signed checkpoint
//! note, and a manifest with each file's SHA-256 and the range proof tying the entries to the
//! signed root. Checked here with nothing but its files and the public key.

use custos_ledger::{leaf_hash, root_from_range, Hash, NoteVerifier};
use sha2::{Digest, Sha256};

/// What a verified export holds: entries [first, end) of the signed tree of `size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedExport {
    pub first: u64,
    pub end: u64,
    pub size: u64,
    pub root: Hash,
    pub manifest_sha256: String,
}

fn hash_list(v: &serde_json::Value, what: &str) -> Result<Vec<Hash>, String> {
    let Some(items) = v.as_array() else {
        return if v.is_null() {
            Ok(Vec::new())
        } else {
            Err(format!("{what} must be an array"))
        };
    };
    items
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.as_str().unwrap_or(""), &mut out)
                .map_err(|_| format!("{what} holds something that is not a 64-hex-digit hash"))?;
            Ok(out)
        })
        .collect()
}

/// Checks an export with only its files (read by name through `read`) and the public key.
pub fn verify(
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    verifier: &NoteVerifier,
) -> Result<VerifiedExport, String> {
    let manifest_bytes = read("manifest.json")?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("manifest.json is not JSON: {e}"))?;
    let size = manifest["tree_size"]
        .as_u64()
        .ok_or("manifest.json lacks tree_size")?;
    // Exports made before ranges existed hold the whole log.
    let first = manifest["first"].as_u64().unwrap_or(0);
    let proof = hash_list(&manifest["range_proof"], "manifest.json range_proof")?;
    let files = manifest["files"]
        .as_array()
        .ok_or("manifest.json lacks files")?;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut note = None;
    for f in files {
        let name = f["name"].as_str().ok_or("a manifest entry has no name")?;
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(format!(
                "manifest names a file outside the export: {name:?}"
            ));
        }
        let bytes = read(name)?;
        if f["sha256"].as_str() != Some(hex::encode(Sha256::digest(&bytes)).as_str()) {
            return Err(format!(
                "{name} does not match its SHA-256 in the manifest: it was altered"
            ));
        }
        if name == "checkpoint.note" {
            note = Some(String::from_utf8(bytes).map_err(|_| "checkpoint.note is not UTF-8")?);
            continue;
        }
        let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8"))?;
        for (line_no, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{name}:{}: not JSON: {e}", line_no + 1))?;
            let index = v["index"]
                .as_u64()
                .ok_or_else(|| format!("{name}:{}: no index", line_no + 1))?;
            let expected = first + leaves.len() as u64;
            if index != expected {
                return Err(format!("{name}:{}: entry {index} where {expected} was expected: entries were removed or reordered", line_no + 1));
            }
            let event = v["event"]
                .as_str()
                .ok_or_else(|| format!("{name}:{}: no event", line_no + 1))?;
            leaves.push(leaf_hash(event.as_bytes()));
        }
    }
    let note = note.ok_or("the export has no checkpoint.note")?;
    let checkpoint = verifier
        .open(&note)
        .map_err(|e| format!("checkpoint.note: {e}"))?;
    let end = first + leaves.len() as u64;
    if checkpoint.size != size || manifest["end"].as_u64().is_some_and(|e| e != end) {
        return Err(format!(
            "the checkpoint covers {} entries and the manifest says {size} (ending at {}), but the segments hold entries {first}..{end}",
            checkpoint.size, manifest["end"]
        ));
    }
    match root_from_range(size, first, &leaves, &proof) {
        Ok(r) if r == checkpoint.root => {}
        Ok(_) => {
            return Err(
                "the entries and range proof do not hash to the signed root: an entry was altered"
                    .into(),
            )
        }
        Err(e) => {
            return Err(format!(
                "the entries cannot be placed in the signed tree: {e}"
            ))
        }
    }
    Ok(VerifiedExport {
        first,
        end,
        size,
        root: checkpoint.root,
        manifest_sha256: hex::encode(Sha256::digest(&manifest_bytes)),
    })
}
