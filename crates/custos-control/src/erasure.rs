//! The right-to-erasure procedure, once for every surface (CLI, admin API): holds checked,
//! datasets found through lineage, their local files rewritten without the subject, models
//! flagged, custos' own records about the subject destroyed, and the receipt recorded; the
//! signed receipt with its inclusion proof is built once a checkpoint covers it.

use crate::{Actor, Control, ControlError};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_govern::lifecycle::erase::{self, subjects_digest, Format, Mode, Subject};
use custos_govern::lifecycle::parquet::{is_parquet, rewrite_parquet};
use custos_govern::lifecycle::{receipt, seal};
use custos_govern::release::DatasetFacts;
use custos_store::{Dataset, Erasure, StoreError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What to erase.
#[derive(Clone, Debug, Default)]
pub struct EraseSpec {
    /// Every identifier of the one person.
    pub subjects: Vec<Subject>,
    /// Only these datasets (`NAME@TAG`) and what lineage derives from them; empty: every
    /// registered dataset.
    pub datasets: Vec<String>,
    /// Keep the subject's records with their values replaced instead of leaving them out.
    pub pseudonymize: bool,
    /// Objects the surface erased itself before (PII vaults it holds), for the receipt.
    pub extra_objects: Vec<Value>,
    /// How long the gateways keep stored responses (`[idempotency] ttl`), for the receipt.
    pub stored_responses_ttl: String,
}

/// A finished erasure: its request, the receipt's body, and the ledger entry of its
/// `erasure.complete` event (what the receipt's proof is of).
#[derive(Clone, Debug)]
pub struct Erased {
    pub request: Erasure,
    pub receipt: Value,
    pub index: u64,
}

fn io(what: &Path, e: impl std::fmt::Display) -> ControlError {
    ControlError::invalid(format!("{}: {e}", what.display()))
}

/// `sha256:HEX` of a file.
pub fn sha256_file(path: &Path) -> Result<String, ControlError> {
    custos_govern::models::manifest::file_sha256(path)
        .map(|(h, _)| format!("sha256:{h}"))
        .map_err(|e| io(path, e))
}

/// The CSV, JSON Lines and Parquet files of a dataset's location, in a stable order (hidden
/// folders and symbolic links are not followed).
pub fn data_files(location: &Path) -> Result<Vec<PathBuf>, ControlError> {
    if location.is_file() {
        return Ok(vec![location.to_owned()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![location.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let p = e.map_err(|e| io(&d, e))?.path();
            let meta = std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
            if meta.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                dirs.push(p);
            } else if meta.is_file() && (Format::of(&p).is_some() || is_parquet(&p)) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The digest a dataset tag is registered under, as `custos datasets add` takes it.
fn dataset_digest(location: &Path) -> Result<(String, &'static str), ControlError> {
    if location.is_dir() {
        let m = custos_govern::models::manifest::hash(location, &Default::default(), None)
            .map_err(|e| io(location, e))?;
        Ok((m.digest(), "files"))
    } else {
        let (h, _) =
            custos_govern::models::manifest::file_sha256(location).map_err(|e| io(location, e))?;
        Ok((h, "file"))
    }
}

/// Rewrites one file without the subjects' records (or with them pseudonymized), replacing
/// it whole; `None` when nothing in it named them.
fn erase_file(
    path: &Path,
    subjects: &[Subject],
    mode: &Mode,
) -> Result<Option<(String, String, erase::Outcome)>, ControlError> {
    let format = Format::of(path);
    if format.is_none() && !is_parquet(path) {
        return Err(io(path, "not a CSV, JSON Lines or Parquet file"));
    }
    let before = sha256_file(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.custos-erase.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let outcome = (|| -> Result<erase::Outcome, ControlError> {
        let Some(format) = format else {
            let o = rewrite_parquet(path, &tmp, subjects, mode).map_err(|e| io(path, e))?;
            if o.matched > 0 {
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io(&tmp, e))?;
            }
            return Ok(o);
        };
        let mut input =
            std::io::BufReader::new(std::fs::File::open(path).map_err(|e| io(path, e))?);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                io(
                    &tmp,
                    format!(
                        "cannot create it ({e}); a previous erasure left it? remove it and retry"
                    ),
                )
            })?;
        let mut out = std::io::BufWriter::new(file);
        let o = erase::rewrite(&mut input, &mut out, format, subjects, mode)
            .map_err(|e| io(path, e))?;
        let f = out.into_inner().map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        Ok(o)
    })();
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if o.matched == 0 {
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| io(&tmp, e))?;
        }
        return Ok(None);
    }
    // The new version replaces the old one whole: no reader sees half of either.
    std::fs::rename(&tmp, path).map_err(|e| io(path, format!("cannot replace it: {e}")))?;
    Ok(Some((before, sha256_file(path)?, o)))
}

impl Control {
    /// The datasets an erasure searches: those named and what lineage derives from them, or
    /// every registered one.
    async fn erasure_targets(&self, named: &[String]) -> Result<Vec<Dataset>, ControlError> {
        let registered = self.store.datasets(None).await?;
        if named.is_empty() {
            return Ok(registered);
        }
        let graph = self.lineage_graph().await?;
        let mut targets: Vec<Dataset> = Vec::new();
        for d in named {
            let (n, t) = d.split_once('@').ok_or_else(|| {
                ControlError::invalid(format!("dataset {d:?}: expected NAME@TAG"))
            })?;
            self.store.dataset(n, t).await?;
            let mut nodes = vec![format!("dataset:{n}@{t}")];
            nodes.extend(graph.impact(&nodes[0]).into_iter().map(|e| e.to));
            for node in nodes {
                let Some(r) = node.strip_prefix("dataset:") else {
                    continue;
                };
                if let Some(x) = registered
                    .iter()
                    .find(|x| format!("{}@{}", x.name, x.tag) == r)
                {
                    if !targets.iter().any(|y| y.name == x.name && y.tag == x.tag) {
                        targets.push(x.clone());
                    }
                }
            }
        }
        Ok(targets)
    }

    /// Refuses when a legal hold covers one of the subjects.
    pub async fn check_subject_holds(&self, subjects: &[Subject]) -> Result<(), ControlError> {
        let holds = self.store.holds(true).await?;
        for s in subjects {
            let d = crate::subject_hold_digest(s);
            if let Some(h) = crate::holding(&holds, None, None, Some(&d)) {
                return Err(ControlError::Held(format!(
                    "a legal hold ({}, placed by {}: {}) covers this subject; nothing was erased. Release it first: custos hold release {} --why …",
                    h.id, h.placed_by, h.reason, h.id
                )));
            }
        }
        Ok(())
    }

    /// Erases a data subject (see the module's description); `progress` hears of each file.
    /// Datasets under a hold, or out of reach of this process, are listed in the receipt's
    /// `not_erased` with why, and the erasure is `partial`.
    pub async fn erase(
        &self,
        actor: &Actor,
        spec: &EraseSpec,
        reason: &Reason,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Erased, ControlError> {
        if spec.subjects.is_empty() {
            return Err(ControlError::invalid(
                "name the data subject: email:jane@example.com (one per identifier of the person)",
            ));
        }
        let subjects = &spec.subjects;
        self.check_subject_holds(subjects).await?;
        let holds = self.store.holds(true).await?;
        let targets = self.erasure_targets(&spec.datasets).await?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&custos_core::random::secret(16));
        let subject_digest = subjects_digest(subjects, &salt);
        let begun = self
            .begin_erasure(actor, &subject_digest, reason)
            .await?
            .value;
        progress(format!(
            "erasure {} opened; due {}",
            begun.id,
            format_rfc3339(begun.due_at)
        ));
        let short = &begun.id[begun.id.len().saturating_sub(8)..];
        let mode = if spec.pseudonymize {
            Mode::Pseudonymize {
                token: format!("[erased:{short}]"),
            }
        } else {
            Mode::Delete
        };
        let mut objects = spec.extra_objects.clone();
        let mut not_erased = Vec::new();
        let mut new_versions = Vec::new();
        let mut affected = Vec::new();
        let mut searched = 0u64;
        let mut locations = BTreeSet::new();
        for ds in &targets {
            let facts: DatasetFacts = serde_json::from_str(&ds.facts).unwrap_or_default();
            let label = format!("{}@{}", ds.name, ds.tag);
            let loc = Path::new(&facts.location);
            // Tags of the same files (an erasure's new versions among them) are searched once.
            if !locations.insert(facts.location.clone()) {
                continue;
            }
            if let Some(h) = crate::holding(
                &holds,
                Some((&ds.name, &ds.tag)),
                Some(&facts.location),
                None,
            ) {
                not_erased.push(json!({"dataset": label, "location": facts.location,
                                       "why": format!("legal hold {}: {}", h.id, h.reason)}));
                progress(format!(
                    "  {label}: held by {} ({}); not erased",
                    h.id, h.reason
                ));
                continue;
            }
            if facts.location.contains("://") || !loc.exists() {
                not_erased.push(json!({"dataset": label, "location": facts.location,
                                       "why": "custos cannot reach this location from here; erase it where it lives and attach the proof"}));
                continue;
            }
            let mut changed = false;
            for f in data_files(loc)? {
                searched += 1;
                let Some((before, after, o)) = erase_file(&f, subjects, &mode)? else {
                    continue;
                };
                changed = true;
                let action = if spec.pseudonymize {
                    "pseudonymized"
                } else {
                    "deleted"
                };
                progress(format!(
                    "  {label}: {} — {} of {} records {}",
                    f.display(),
                    o.matched,
                    o.records,
                    if spec.pseudonymize {
                        "pseudonymized"
                    } else {
                        "removed"
                    }
                ));
                objects.push(json!({"dataset": label, "path": f.display().to_string(), "version_before": before,
                                    "version_after": after, "records": o.records, "matched": o.matched,
                                    "values_replaced": o.values_replaced, "action": action,
                                    "at": format_rfc3339(now_ms())}));
            }
            if changed {
                let (digest, digest_of) = dataset_digest(loc)?;
                let mut f2 = facts.clone();
                f2.digest_of = digest_of.into();
                new_versions.push(Dataset {
                    name: ds.name.clone(),
                    tag: format!("{}+erased.{short}", ds.tag),
                    digest,
                    facts: serde_json::to_string(&f2)
                        .map_err(|e| ControlError::invalid(e.to_string()))?,
                    created_by: actor.name(),
                    created_at: now_ms(),
                });
                affected.push(format!("dataset:{label}"));
            }
        }
        let own = self.own_records(subjects).await?;
        let graph = self.lineage_graph().await?;
        let mut models: Vec<String> = Vec::new();
        for node in &affected {
            for e in graph.impact(node) {
                if let Some(m) = e.to.strip_prefix("model:") {
                    if !models.iter().any(|x| x == m) {
                        models.push(m.to_owned());
                    }
                }
            }
        }
        let body = json!({
            "request": begun.id,
            "subject": {"digest": subject_digest, "salt": hex::encode(salt), "identifiers": subjects.len()},
            // The receipt is handed out: it names no address, even one given in the reason.
            "why": reason.why.as_deref().map(seal::mask_emails),
            "ticket": reason.ticket,
            "requested_at": format_rfc3339(begun.requested_at),
            "due_at": format_rfc3339(begun.due_at),
            "finished_at": format_rfc3339(now_ms()),
            "mode": if spec.pseudonymize { "pseudonymize" } else { "delete" },
            "searched": {"datasets": targets.len(), "files": searched},
            "objects": objects,
            "new_versions": new_versions.iter().map(|v| json!({"dataset": format!("{}@{}", v.name, v.tag),
                                                               "digest": format!("sha256:{}", v.digest)})).collect::<Vec<_>>(),
            "models_flagged": models,
            "custos": {"ledger_subject_keys_shredded": own.subject_keys,
                       "usage_records_end_user_cleared": own.usage_records,
                       "gateway_stored_responses": format!("kept in gateway memory for at most {} after each call (idempotency replay), then gone",
                                                           spec.stored_responses_ttl)},
            "not_erased": not_erased,
        });
        let done = self
            .complete_erasure(
                actor,
                &begun.id,
                &body,
                &new_versions,
                &models,
                subjects,
                reason,
            )
            .await?;
        Ok(Erased {
            request: self.store.erasure(&begun.id).await?,
            receipt: body,
            index: done.value,
        })
    }

    /// The signed receipt of a finished erasure: its body, its `erasure.complete` event and
    /// that event's inclusion proof under the latest checkpoint. `NotCovered` until a
    /// checkpoint covers the event (sign one and ask again).
    pub async fn erasure_receipt(&self, id: &str) -> Result<Value, ControlError> {
        let e = self.store.erasure(id).await?;
        let (Some(text), Some(index)) = (&e.receipt, e.receipt_index) else {
            return Err(ControlError::invalid(format!(
                "erasure {id} is {}: it has no receipt yet",
                e.state
            )));
        };
        let body: Value = serde_json::from_str(text).map_err(|x| {
            ControlError::Store(StoreError::Invalid(format!("erasure {id}'s receipt: {x}")))
        })?;
        let index = index.max(0) as u64;
        let Some((size, note)) = self.store.ledger_latest_checkpoint().await? else {
            return Err(ControlError::NotCovered {
                needed: index + 1,
                signed: 0,
            });
        };
        if index >= size {
            return Err(ControlError::NotCovered {
                needed: index + 1,
                signed: size,
            });
        }
        let entry = self
            .store
            .ledger_entries(index as i64, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ControlError::Store(StoreError::Invalid(format!(
                    "ledger entry {index} of erasure {id} is missing; run custos audit verify"
                )))
            })?;
        let nodes = self
            .store
            .ledger_nodes_at(&custos_ledger::inclusion_positions(index, size))
            .await?;
        let path = custos_ledger::inclusion_proof(&nodes, index, size).map_err(|x| {
            ControlError::Store(StoreError::Invalid(format!(
                "cannot prove ledger entry {index}: {x}; run custos audit verify"
            )))
        })?;
        Ok(receipt::build(
            body,
            index,
            &entry.event,
            &path,
            size,
            &note,
        ))
    }
}
