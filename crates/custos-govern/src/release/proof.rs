//! The release proof artifact: a promotion's or rollback's ledger events with their inclusion
//! proofs under a signed checkpoint, and what they say — the audit record (event, who, when,
//! what with checksums, why, ticket, decision, rollback_to), the approvers and the telemetry
//! slice — derived from the events, so a verifier holding only the ledger's public key
//! re-derives every statement and any changed byte fails.

use custos_ledger::{leaf_hash, verify_inclusion, Hash, NoteVerifier};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The artifact's kind, and the version of its layout.
pub const KIND: &str = "custos.release-proof/v1";

/// One ledger entry in the artifact.
#[derive(Clone, Debug)]
pub struct Entry {
    pub index: u64,
    /// The entry's exact text, as the ledger hashed it.
    pub event: String,
    pub proof: Vec<Hash>,
}

/// Why an artifact is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("the artifact is malformed: {0}")]
    Malformed(String),
    #[error("the checkpoint's signature does not verify with this public key")]
    Checkpoint,
    #[error("ledger entry {index} is not in the signed log: {why}")]
    Inclusion { index: u64, why: String },
    #[error("`{0}` does not match what the ledger events say")]
    Mismatch(&'static str),
    #[error("the artifact's sha256 does not match its content")]
    Checksum,
    #[error("{0}")]
    Content(String),
}

fn resource(e: &Value) -> &Value {
    &e["resources"][0]
}

/// Does this event concern release `id`: its own events, or a rollback away from it?
pub fn concerns(event: &Value, id: &str) -> bool {
    let r = resource(event);
    r["type"] == "release" && (r["name"] == id || r["rolled_back"]["id"] == id)
}

fn components(c: &Value) -> Value {
    let pin = |p: &Value| {
        format!(
            "{}@{}",
            p["name"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or("")
        )
    };
    let mut checksums = Map::new();
    let mut what = Map::new();
    if c["model"].is_object() {
        what.insert("model".into(), json!(pin(&c["model"])));
        checksums.insert(
            format!("model:{}", pin(&c["model"])),
            json!(format!(
                "sha256:{}",
                c["model"]["digest"].as_str().unwrap_or("")
            )),
        );
    }
    if c["prompt"].is_object() {
        what.insert("prompt".into(), json!(pin(&c["prompt"])));
        checksums.insert(
            format!("prompt:{}", pin(&c["prompt"])),
            json!(format!(
                "sha256:{}",
                c["prompt"]["digest"].as_str().unwrap_or("")
            )),
        );
    }
    let data: Vec<Value> = c["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|p| {
                    checksums.insert(
                        format!("dataset:{}", pin(p)),
                        json!(format!("sha256:{}", p["digest"].as_str().unwrap_or(""))),
                    );
                    json!(pin(p))
                })
                .collect()
        })
        .unwrap_or_default();
    what.insert("dataset".into(), Value::Array(data));
    what.insert("checksums".into(), Value::Object(checksums));
    Value::Object(what)
}

/// What the events of release `id` say: the audit record of its latest promotion or rollback,
/// its approvers, and the post-check telemetry recorded after that promotion.
pub fn derive(id: &str, events: &[(u64, Value)]) -> Result<Value, ProofError> {
    let key = events
        .iter()
        .rev()
        .find(|(_, e)| {
            matches!(e["activity"].as_str(), Some("release.promote") if resource(e)["name"] == id)
                || (e["activity"] == "release.rollback" && resource(e)["rolled_back"]["id"] == id)
        })
        .ok_or_else(|| {
            ProofError::Content(format!("release {id} has not been promoted or rolled back"))
        })?;
    let (index, e) = key;
    let r = resource(e);
    let rollback = e["activity"] == "release.rollback";
    let what = if rollback {
        components(&r["rolled_back"]["components"])
    } else {
        components(&r["components"])
    };
    let record = json!({
        "event": if rollback { "rollback" } else { "promote" },
        "who": e["actor"]["id"],
        "when": e["time"],
        "release": id,
        "app": r["app"],
        "tier": if rollback { Value::Null } else { r["tier"].clone() },
        "what": what,
        "why": e["why"],
        "ticket": e.get("ticket").cloned().unwrap_or(Value::Null),
        "decision": if rollback { "rolled back" } else { "promoted" },
        "rollback_to": if rollback { r["rollback_to"].clone() } else { Value::Null },
        "ledger_index": index,
    });
    let approvers: Vec<Value> = events
        .iter()
        .filter(|(_, x)| {
            matches!(
                x["activity"].as_str(),
                Some("release.approve" | "release.deny")
            ) && resource(x)["name"] == id
        })
        .map(|(i, x)| {
            let by = match &resource(x)["by"] {
                Value::Null => x["actor"]["id"].clone(),
                b => b.clone(),
            };
            json!({"role": resource(x)["role"], "by": by,
                   "decision": if x["activity"] == "release.approve" { "approve" } else { "deny" },
                   "when": x["time"], "why": x["why"], "ledger_index": i})
        })
        .collect();
    // The promotion names its approvers: every one of them must be among the events.
    let promote = events
        .iter()
        .rev()
        .find(|(_, x)| x["activity"] == "release.promote" && resource(x)["name"] == id);
    if let Some((_, p)) = promote {
        for a in resource(p)["approvers"].as_array().into_iter().flatten() {
            if !approvers
                .iter()
                .any(|x| x["role"] == a["role"] && x["by"] == a["by"])
            {
                return Err(ProofError::Content(format!(
                    "the promotion names the approver {} as {} but the artifact lacks that decision",
                    a["by"], a["role"]
                )));
            }
        }
    }
    let telemetry = events
        .iter()
        .rev()
        .find(|(i, x)| {
            x["activity"] == "release.postcheck"
                && resource(x)["name"] == id
                && promote.is_none_or(|(p, _)| i > p)
        })
        .map(|(i, x)| {
            let r = resource(x);
            json!({"window": r["window"], "previous": r["previous"], "before": r["before"],
                   "after": r["after"], "verdict": r["verdict"], "ledger_index": i})
        })
        .unwrap_or(Value::Null);
    Ok(json!({"record": record, "approvers": approvers, "telemetry": telemetry}))
}

/// The checksum of an artifact: SHA-256 of its JSON without the `sha256` member.
fn checksum(body: &Map<String, Value>) -> String {
    let mut b = body.clone();
    b.remove("sha256");
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(Value::Object(b).to_string().as_bytes()))
    )
}

/// Builds the artifact from the release's entries (with their inclusion proofs in the log of
/// `tree_size` that `checkpoint` signs).
pub fn build(
    id: &str,
    entries: &[Entry],
    tree_size: u64,
    checkpoint: &str,
) -> Result<Value, ProofError> {
    let parsed = parse_entries(entries)?;
    let derived = derive(id, &parsed)?;
    let mut body = Map::new();
    body.insert("kind".into(), json!(KIND));
    body.insert("release".into(), json!(id));
    for k in ["record", "approvers", "telemetry"] {
        body.insert(k.into(), derived[k].clone());
    }
    body.insert(
        "events".into(),
        Value::Array(
            entries
                .iter()
                .map(|e| {
                    json!({"index": e.index, "event": e.event,
                           "proof": e.proof.iter().map(hex::encode).collect::<Vec<_>>()})
                })
                .collect(),
        ),
    );
    body.insert("tree_size".into(), json!(tree_size));
    body.insert("checkpoint".into(), json!(checkpoint));
    let sum = checksum(&body);
    body.insert("sha256".into(), json!(sum));
    Ok(Value::Object(body))
}

fn parse_entries(entries: &[Entry]) -> Result<Vec<(u64, Value)>, ProofError> {
    entries
        .iter()
        .map(|e| {
            serde_json::from_str(&e.event)
                .map(|v| (e.index, v))
                .map_err(|x| ProofError::Malformed(format!("entry {} is not JSON: {x}", e.index)))
        })
        .collect()
}

/// What a verified artifact proves.
#[derive(Clone, Debug)]
pub struct Verified {
    pub release: String,
    pub record: Value,
    pub events: usize,
    pub tree_size: u64,
    pub origin: String,
}

/// Checks an artifact offline: its checksum, the checkpoint's signature, every entry's path
/// to the signed root, and that the record, approvers and telemetry are what the entries say.
pub fn verify(artifact: &Value, verifier: &NoteVerifier) -> Result<Verified, ProofError> {
    let body = artifact
        .as_object()
        .ok_or_else(|| ProofError::Malformed("not a JSON object".into()))?;
    let field = |k: &str| {
        body.get(k)
            .ok_or_else(|| ProofError::Malformed(format!("it lacks `{k}`")))
    };
    if field("kind")? != KIND {
        return Err(ProofError::Malformed(format!(
            "`kind` is not {KIND:?}; is this a release proof?"
        )));
    }
    if field("sha256")?.as_str() != Some(checksum(body).as_str()) {
        return Err(ProofError::Checksum);
    }
    let id = field("release")?
        .as_str()
        .ok_or_else(|| ProofError::Malformed("`release` must be a string".into()))?;
    let size = field("tree_size")?
        .as_u64()
        .ok_or_else(|| ProofError::Malformed("`tree_size` must be a number".into()))?;
    let note = field("checkpoint")?
        .as_str()
        .ok_or_else(|| ProofError::Malformed("`checkpoint` must be a string".into()))?;
    let checkpoint = verifier.open(note).map_err(|_| ProofError::Checkpoint)?;
    if checkpoint.size != size {
        return Err(ProofError::Malformed(format!(
            "`tree_size` is {size} but the checkpoint signs size {}",
            checkpoint.size
        )));
    }
    let mut entries = Vec::new();
    for (n, e) in field("events")?
        .as_array()
        .ok_or_else(|| ProofError::Malformed("`events` must be an array".into()))?
        .iter()
        .enumerate()
    {
        let bad = |what: &str| ProofError::Malformed(format!("events[{n}]: {what}"));
        let index = e["index"]
            .as_u64()
            .ok_or_else(|| bad("`index` must be a number"))?;
        let event = e["event"]
            .as_str()
            .ok_or_else(|| bad("`event` must be a string"))?;
        let mut proof = Vec::new();
        for h in e["proof"]
            .as_array()
            .ok_or_else(|| bad("`proof` must be an array"))?
        {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(h.as_str().unwrap_or(""), &mut hash)
                .map_err(|_| bad("`proof` holds something that is not a 64-hex-digit hash"))?;
            proof.push(hash);
        }
        verify_inclusion(
            index,
            size,
            &leaf_hash(event.as_bytes()),
            &proof,
            &checkpoint.root,
        )
        .map_err(|x| ProofError::Inclusion {
            index,
            why: x.to_string(),
        })?;
        entries.push(Entry {
            index,
            event: event.to_owned(),
            proof,
        });
    }
    if entries.windows(2).any(|w| w[0].index >= w[1].index) {
        return Err(ProofError::Malformed(
            "`events` must be in ledger order, each once".into(),
        ));
    }
    let parsed = parse_entries(&entries)?;
    if let Some((i, _)) = parsed.iter().find(|(_, e)| !concerns(e, id)) {
        return Err(ProofError::Content(format!(
            "ledger entry {i} is not an event of release {id}"
        )));
    }
    let derived = derive(id, &parsed)?;
    for k in ["record", "approvers", "telemetry"] {
        if body.get(k) != Some(&derived[k]) {
            return Err(ProofError::Mismatch(match k {
                "record" => "record",
                "approvers" => "approvers",
                _ => "telemetry",
            }));
        }
    }
    Ok(Verified {
        release: id.to_owned(),
        record: derived["record"].clone(),
        events: entries.len(),
        tree_size: size,
        origin: checkpoint.origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_ledger::{generate_key, inclusion_proof, MemoryTree, NoteSigner};

    fn events() -> Vec<String> {
        let comp = json!({"model": {"name": "m", "version": "1.0.0", "digest": "aa", "pii": false},
                          "prompt": {"name": "p", "version": "2.0.0", "digest": "bb", "pii": false}, "data": []});
        vec![
            json!({"activity": "release.create", "time": "t0", "actor": {"id": "alice"}, "why": "new",
                   "resources": [{"type": "release", "name": "rel_1", "app": "default/ml/bot", "tier": "low", "components": comp}]}),
            json!({"activity": "release.approve", "time": "t1", "actor": {"id": "bob"}, "why": null,
                   "resources": [{"type": "release", "name": "rel_1", "role": "owner"}]}),
            json!({"activity": "release.promote", "time": "t2", "actor": {"id": "alice"}, "why": "go", "ticket": "CHG-1",
                   "resources": [{"type": "release", "name": "rel_1", "app": "default/ml/bot", "tier": "low", "components": comp,
                                  "approvers": [{"role": "owner", "by": "bob"}]}]}),
            json!({"activity": "release.postcheck", "time": "t3", "actor": {"id": "alice"}, "why": null,
                   "resources": [{"type": "release", "name": "rel_1", "window": {"from": 1, "until": 2}, "previous": "rel_0",
                                  "before": {"calls": 20}, "after": {"calls": 20, "errors": 10}, "verdict": {"status": "breach"}}]}),
            json!({"activity": "release.rollback", "time": "t4", "actor": {"id": "alice"}, "why": "breach",
                   "resources": [{"type": "release", "name": "rel_0", "rolled_back": {"id": "rel_1", "composite": "m@1.0.0", "components": comp},
                                  "rollback_to": {"id": "rel_0", "composite": "m@0.9.0"}}]}),
        ]
        .into_iter()
        .map(|v| v.to_string())
        .collect()
    }

    fn artifact() -> (Value, NoteVerifier) {
        let (sk, vk) = generate_key("test.example/ledger").unwrap();
        let signer = NoteSigner::from_key(&sk).unwrap();
        let mut tree = MemoryTree::new();
        // Unrelated entries around the release's own.
        tree.append(b"{}");
        let evs = events();
        for e in &evs {
            tree.append(e.as_bytes());
        }
        tree.append(b"{}");
        let size = tree.size();
        let note = signer.sign(&custos_ledger::Checkpoint {
            origin: "test.example/ledger".into(),
            size,
            root: custos_ledger::root(&tree, size).unwrap(),
        });
        let entries: Vec<Entry> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| Entry {
                index: i as u64 + 1,
                event: e.clone(),
                proof: inclusion_proof(&tree, i as u64 + 1, size).unwrap(),
            })
            .collect();
        let a = build("rel_1", &entries, size, &note).unwrap();
        (a, NoteVerifier::from_key(&vk).unwrap())
    }

    #[test]
    fn an_artifact_verifies_and_says_what_happened() {
        let (a, v) = artifact();
        let ok = verify(&a, &v).unwrap();
        assert_eq!(ok.record["event"], "rollback");
        assert_eq!(ok.record["what"]["checksums"]["model:m@1.0.0"], "sha256:aa");
        assert_eq!(ok.record["rollback_to"]["id"], "rel_0");
        assert_eq!(a["approvers"][0]["by"], "bob");
        assert_eq!(a["telemetry"]["after"]["errors"], 10);
    }

    #[test]
    fn any_changed_statement_or_event_fails() {
        let (a, v) = artifact();
        let text = a.to_string();
        // Every byte of every digit in the artifact: flipping one fails verification (or
        // the parse), never silently passes.
        let mut changed = 0;
        for (i, b) in text.bytes().enumerate() {
            if !b.is_ascii_digit() {
                continue;
            }
            let mut t = text.clone().into_bytes();
            t[i] = if b == b'9' { b'0' } else { b + 1 };
            let Ok(s) = String::from_utf8(t) else {
                continue;
            };
            if let Ok(x) = serde_json::from_str::<Value>(&s) {
                assert!(verify(&x, &v).is_err(), "a change at byte {i} passed");
                changed += 1;
            }
        }
        assert!(changed > 50);
        // A statement changed and the checksum recomputed still fails: it is re-derived.
        let mut x = a.clone();
        x["record"]["why"] = json!("routine");
        let mut body = x.as_object().unwrap().clone();
        let sum = checksum(&body);
        body.insert("sha256".into(), json!(sum));
        assert!(matches!(
            verify(&Value::Object(body), &v),
            Err(ProofError::Mismatch("record"))
        ));
        // Another key does not verify it.
        let (_, other) = generate_key("test.example/ledger").unwrap();
        assert!(matches!(
            verify(&a, &NoteVerifier::from_key(&other).unwrap()),
            Err(ProofError::Checkpoint)
        ));
    }

    #[test]
    fn a_hidden_approval_is_caught() {
        let (a, v) = artifact();
        let mut body = a.as_object().unwrap().clone();
        let evs = body["events"].as_array().unwrap().clone();
        body.insert(
            "events".into(),
            Value::Array(
                evs.into_iter()
                    .filter(|e| !e["event"].as_str().unwrap().contains("release.approve"))
                    .collect(),
            ),
        );
        body.insert("approvers".into(), json!([]));
        let sum = checksum(&body);
        body.insert("sha256".into(), json!(sum));
        let e = verify(&Value::Object(body), &v).unwrap_err();
        assert!(e.to_string().contains("lacks that decision"), "{e}");
    }
}
