//! Data lifecycle through the control plane: lineage edges, legal holds, and erasure requests
//! from their start (the SLA clock) to their receipt, each with its ledger event. Subjects
//! reach the ledger only as digests: the ledger cannot forget, so it must never know them.

use crate::event::observed;
use crate::{Actor, Control, ControlError, Evidence, Recorded, GLOBAL};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_govern::lifecycle::erase::Subject;
use custos_govern::lifecycle::lineage::{parse_node, Edge, Graph};
use custos_store::{Dataset, Erasure, Hold, LineageEdge, StoreError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How long an erasure may stay open by default (GDPR's "without undue delay", as the seeds'
/// `rtbF_sla_hours: 72`).
pub const DEFAULT_ERASURE_SLA_MS: i64 = 72 * 3_600_000;

/// The digest a hold on a subject is kept under: unsalted, so an erasure can find it.
pub fn subject_hold_digest(s: &Subject) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(s.label().as_bytes()))
    )
}

/// What custos itself holds about a data subject: the keys that seal their identifiers in
/// ledger events, and usage records naming them as the end user of a call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnRecords {
    pub subject_keys: usize,
    pub usage_records: u64,
}

/// The subjects' key lookups, and their end-user ids (exact ids, lower-cased addresses).
fn own_keys(subjects: &[Subject]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let lookups = subjects
        .iter()
        .map(|s| custos_govern::lifecycle::seal::lookup(&s.label()))
        .collect();
    let mut exact = Vec::new();
    let mut lower = Vec::new();
    for s in subjects {
        match s {
            Subject::Id(v) => exact.push(v.clone()),
            Subject::Email(v) => lower.push(v.to_lowercase()),
            Subject::Phone(_) | Subject::Text(_) => {}
        }
    }
    (lookups, exact, lower)
}

/// The active hold covering a dataset tag at `location`, or a subject, if any.
pub fn holding<'h>(
    holds: &'h [Hold],
    dataset: Option<(&str, &str)>,
    location: Option<&str>,
    subject: Option<&str>,
) -> Option<&'h Hold> {
    holds.iter().filter(|h| h.released_at.is_none()).find(|h| {
        let t = h.target.as_str();
        if let (Some((name, tag)), Some(rest)) = (dataset, t.strip_prefix("dataset:")) {
            if rest == name || rest == format!("{name}@{tag}") {
                return true;
            }
        }
        if let (Some(loc), Some(prefix)) = (location, t.strip_prefix("location:")) {
            if loc.starts_with(prefix) {
                return true;
            }
        }
        matches!((subject, t.strip_prefix("subject:")), (Some(d), Some(x)) if d == x)
    })
}

impl Control {
    /// Records that `dst` was derived from (or trained on) `src`, by `job`.
    pub async fn add_lineage(
        &self,
        actor: &Actor,
        src: &str,
        dst: &str,
        job: Option<String>,
        reason: &Reason,
    ) -> Result<Recorded<LineageEdge>, ControlError> {
        let d = self
            .authorize(actor, "lineage.manage", GLOBAL, reason)
            .await?;
        for n in [src, dst] {
            let (kind, r) = parse_node(n).map_err(ControlError::Invalid)?;
            let (name, v) = r.split_once('@').unwrap_or((r, ""));
            let found = match kind {
                "dataset" => self.store.dataset(name, v).await.map(|_| ()),
                "model" => self.store.model_version(name, v).await.map(|_| ()),
                _ => self.store.release(r).await.map(|_| ()),
            };
            if let Err(StoreError::NotFound(_)) = found {
                return Err(ControlError::invalid(format!(
                    "{n} is not registered (custos datasets list, custos models list, custos release list)"
                )));
            }
            found?;
        }
        if src == dst {
            return Err(ControlError::invalid("an edge joins two different nodes"));
        }
        let e = LineageEdge {
            src: src.into(),
            dst: dst.into(),
            job: job.filter(|j| !j.trim().is_empty()),
            created_by: actor.name(),
            created_at: now_ms(),
        };
        let mut c = self.store.begin_change().await?;
        c.lineage_insert(&e).await?;
        let ev = self.event(
            actor,
            "lineage.manage",
            &d,
            Evidence {
                activity: "lineage.add",
                resource: json!({"type": "lineage", "name": format!("{src} -> {dst}"), "from": src, "to": dst, "job": e.job}),
                before: None,
                after: None,
            },
            reason,
        );
        self.commit(c, vec![ev], e).await
    }

    /// The whole lineage graph: recorded edges, models trained on registered datasets (the
    /// registration's dataset digests), and the releases that pin models and datasets.
    pub async fn lineage_graph(&self) -> Result<Graph, ControlError> {
        let mut edges: Vec<Edge> = self
            .store
            .lineage_edges()
            .await?
            .into_iter()
            .map(|e| Edge {
                from: e.src,
                to: e.dst,
                how: "recorded".into(),
                job: e.job,
            })
            .collect();
        let datasets = self.store.datasets(None).await?;
        for m in self.store.model_versions(None).await? {
            let reg: custos_govern::models::registry::Registration =
                serde_json::from_str(&m.registration).unwrap_or_default();
            for r in &reg.datasets {
                for d in datasets.iter().filter(|d| d.digest == r.sha256) {
                    edges.push(Edge {
                        from: format!("dataset:{}@{}", d.name, d.tag),
                        to: format!("model:{}@{}", m.name, m.version),
                        how: "trained".into(),
                        job: None,
                    });
                }
            }
        }
        for t in self.store.list_tenants().await? {
            for r in self.store.releases(&t.name, None).await? {
                let c: custos_govern::release::tier::Composite =
                    serde_json::from_str(&r.composite).unwrap_or_default();
                let to = format!("release:{}", r.id);
                for p in c.model.iter() {
                    edges.push(Edge {
                        from: format!("model:{}@{}", p.name, p.version),
                        to: to.clone(),
                        how: "serves".into(),
                        job: None,
                    });
                }
                for p in &c.data {
                    edges.push(Edge {
                        from: format!("dataset:{}@{}", p.name, p.version),
                        to: to.clone(),
                        how: "serves".into(),
                        job: None,
                    });
                }
            }
        }
        Ok(Graph::new(edges))
    }

    /// Places a legal hold; erasure and lifecycle actions on what it covers are refused.
    /// `target`: `dataset:NAME[@TAG]`, `location:PREFIX` or `subject:KIND:VALUE` (kept as a
    /// digest).
    pub async fn place_hold(
        &self,
        actor: &Actor,
        target: &str,
        reason: &Reason,
    ) -> Result<Recorded<Hold>, ControlError> {
        let d = self
            .authorize(actor, "holds.manage", GLOBAL, reason)
            .await?;
        let why = reason
            .why
            .clone()
            .ok_or_else(|| ControlError::ReasonRequired {
                action: "holds.manage".into(),
            })?;
        // The ledger names a held subject sealed under its key, never by a digest anyone
        // could confirm a guess against.
        let mut named = json!(target);
        let target = match target.split_once(':') {
            Some(("dataset", r)) if !r.is_empty() => target.to_owned(),
            Some(("location", r)) if !r.is_empty() => target.to_owned(),
            Some(("subject", s)) => {
                let s = Subject::parse(s).map_err(|e| ControlError::invalid(e.to_string()))?;
                named = json!({"subject": s.label()});
                format!("subject:{}", subject_hold_digest(&s))
            }
            _ => {
                return Err(ControlError::invalid(format!(
                    "{target:?}: a hold is on dataset:NAME[@TAG], location:PREFIX or subject:KIND:VALUE"
                )))
            }
        };
        let h = Hold {
            id: custos_core::id::new_id("hold"),
            target,
            reason: why,
            placed_by: actor.name(),
            placed_at: now_ms(),
            released_by: None,
            released_at: None,
        };
        let mut c = self.store.begin_change().await?;
        c.hold_insert(&h).await?;
        let ev = self.event(
            actor,
            "holds.manage",
            &d,
            Evidence {
                activity: "hold.place",
                resource: json!({"type": "hold", "name": h.id, "target": named}),
                before: None,
                after: None,
            },
            reason,
        );
        self.commit(c, vec![ev], h).await
    }

    pub async fn release_hold(
        &self,
        actor: &Actor,
        id: &str,
        reason: &Reason,
    ) -> Result<Recorded<Hold>, ControlError> {
        let d = self
            .authorize(actor, "holds.manage", GLOBAL, reason)
            .await?;
        if reason.why.is_none() {
            return Err(ControlError::ReasonRequired {
                action: "holds.manage".into(),
            });
        }
        let mut c = self.store.begin_change().await?;
        let h = c.hold_release(id, &actor.name(), now_ms()).await?;
        let ev = self.event(
            actor,
            "holds.manage",
            &d,
            Evidence {
                activity: "hold.release",
                resource: json!({"type": "hold", "name": h.id,
                                 "target": if h.target.starts_with("subject:") { "subject" } else { h.target.as_str() }}),
                before: None,
                after: None,
            },
            reason,
        );
        self.commit(c, vec![ev], h).await
    }

    /// Opens an erasure request for a subject (by its salted digest): the SLA clock starts.
    pub async fn begin_erasure(
        &self,
        actor: &Actor,
        subject_digest: &str,
        reason: &Reason,
    ) -> Result<Recorded<Erasure>, ControlError> {
        let d = self.authorize(actor, "erasure.run", GLOBAL, reason).await?;
        if reason.why.is_none() {
            return Err(ControlError::ReasonRequired {
                action: "erasure.run".into(),
            });
        }
        let now = now_ms();
        let e = Erasure {
            id: custos_core::id::new_id("era"),
            subject_digest: subject_digest.into(),
            state: "open".into(),
            requested_by: actor.name(),
            requested_at: now,
            due_at: now + self.erasure_sla_ms(),
            finished_at: None,
            receipt_digest: None,
            receipt: None,
            receipt_index: None,
        };
        let mut c = self.store.begin_change().await?;
        c.erasure_insert(&e).await?;
        let ev = self.event(
            actor,
            "erasure.run",
            &d,
            Evidence {
                activity: "erasure.request",
                resource: json!({"type": "erasure", "request": e.id, "subject": e.subject_digest,
                                 "due": format_rfc3339(e.due_at)}),
                before: None,
                after: None,
            },
            reason,
        );
        self.commit(c, vec![ev], e).await
    }

    /// What custos holds about the subjects itself (see [`OwnRecords`]).
    pub async fn own_records(&self, subjects: &[Subject]) -> Result<OwnRecords, ControlError> {
        let (lookups, exact, lower) = own_keys(subjects);
        Ok(OwnRecords {
            subject_keys: self.store.subject_keys_by_lookup(&lookups).await?.len(),
            usage_records: self.store.usage_end_user_count(&exact, &lower).await?,
        })
    }

    pub fn erasure_sla_ms(&self) -> i64 {
        self.settings
            .erasure_sla
            .map_or(DEFAULT_ERASURE_SLA_MS, |d| d.as_millis() as i64)
    }

    /// Closes an erasure: the new dataset versions written without the subject, the models
    /// trained on affected data flagged, the subjects' keys destroyed (their identifiers in
    /// the ledger become unreadable; every leaf stays as it was), their end-user ids cleared
    /// from usage records, and the receipt's digest, in one transaction. The
    /// `erasure.complete` event is the one the receipt's proof is of (its index is returned).
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_erasure(
        &self,
        actor: &Actor,
        id: &str,
        receipt: &Value,
        new_versions: &[Dataset],
        flagged_models: &[String],
        subjects: &[Subject],
        reason: &Reason,
    ) -> Result<Recorded<u64>, ControlError> {
        let d = self.authorize(actor, "erasure.run", GLOBAL, reason).await?;
        let e = self.store.erasure(id).await?;
        let receipt_digest = custos_govern::lifecycle::receipt::digest(receipt);
        let partial = receipt["not_erased"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let mut c = self.store.begin_change().await?;
        let mut events = Vec::new();
        for v in new_versions {
            c.dataset_insert(v).await?;
            events.push(self.event(
                actor,
                "erasure.run",
                &d,
                Evidence {
                    activity: "dataset.erasure-version",
                    resource: json!({"type": "dataset", "name": format!("{}@{}", v.name, v.tag),
                                     "digest": format!("sha256:{}", v.digest), "request": id}),
                    before: None,
                    after: None,
                },
                reason,
            ));
        }
        for m in flagged_models {
            events.push(observed(
                actor,
                "model.trained-on-erased-data",
                json!({"type": "model", "name": m, "request": id,
                       "decide": "retrain, or record why not (custos models retire|attest)"}),
                Some(("erasure.run", &d)),
                reason,
            ));
        }
        let now = now_ms();
        let (lookups, exact, lower) = own_keys(subjects);
        let cleared = c.usage_clear_end_user(&exact, &lower).await?;
        events.push(self.event(
            actor,
            "erasure.run",
            &d,
            Evidence {
                activity: "erasure.complete",
                resource: json!({"type": "erasure", "request": id, "subject": e.subject_digest,
                                 "receipt": receipt_digest, "late": now > e.due_at,
                                 "usage_records_cleared": cleared}),
                before: None,
                after: None,
            },
            reason,
        ));
        // Sealed first, shredded after: these very events may name the subject (in `why`),
        // and must be sealed under the keys being destroyed, not under new ones.
        let mut sealed = Vec::with_capacity(events.len());
        for ev in events {
            sealed.push(crate::seal::seal_in(&mut c, ev).await?);
        }
        let ledger = c.append_events(&sealed).await?;
        let index = ledger.end.saturating_sub(1);
        c.erasure_finish(
            id,
            if partial { "partial" } else { "done" },
            now,
            &receipt.to_string(),
            &receipt_digest,
            index,
        )
        .await?;
        c.subject_keys_shred(&lookups).await?;
        c.commit().await?;
        Ok(Recorded {
            value: ledger.end.saturating_sub(1),
            ledger,
        })
    }

    /// Records each open erasure past its due time, once (as `erasure.overdue`); returns
    /// what it recorded. The gateway runs it on a timer and alerts the webhooks.
    pub async fn flag_overdue_erasures(&self, actor: &Actor) -> Result<Vec<Value>, ControlError> {
        let now = now_ms();
        let mut out = Vec::new();
        for e in self.store.erasures().await? {
            if e.state != "open" || e.due_at > now {
                continue;
            }
            let key = format!("erasure.overdue.{}", e.id);
            let mut c = self.store.begin_change().await?;
            if c.state_get(&key).await?.is_some() {
                continue;
            }
            let resource = json!({"type": "erasure", "request": e.id, "subject": e.subject_digest,
                                  "requested_at": format_rfc3339(e.requested_at),
                                  "due": format_rfc3339(e.due_at)});
            let ev = observed(
                actor,
                "erasure.overdue",
                resource.clone(),
                None,
                &Reason::default(),
            );
            c.state_put(&key, &format_rfc3339(now)).await?;
            self.commit(c, vec![ev], ()).await?;
            out.push(resource);
        }
        Ok(out)
    }

    /// Records that a data subject access request was answered (the subject as a salted
    /// digest, what was found): the export itself goes to the requester, not the ledger.
    pub async fn record_dsar(
        &self,
        actor: &Actor,
        subject_digest: &str,
        found: Value,
        reason: &Reason,
    ) -> Result<Recorded<()>, ControlError> {
        let d = self.authorize(actor, "erasure.run", GLOBAL, reason).await?;
        let ev = observed(
            actor,
            "dsar.export",
            json!({"type": "dsar", "subject": subject_digest, "found": found}),
            Some(("erasure.run", &d)),
            reason,
        );
        let c = self.store.begin_change().await?;
        self.commit(c, vec![ev], ()).await
    }

    /// Authorizes and opens a lifecycle run: the plan's digest and counts are recorded before
    /// any object is touched; returns the run id.
    pub async fn begin_lifecycle_run(
        &self,
        actor: &Actor,
        plan: &Value,
        reason: &Reason,
    ) -> Result<Recorded<String>, ControlError> {
        let d = self
            .authorize(actor, "lifecycle.apply", GLOBAL, reason)
            .await?;
        // A run deletes data: it says why (a change ticket, the policy it applies).
        if reason.why.is_none() {
            return Err(ControlError::ReasonRequired {
                action: "lifecycle.apply".into(),
            });
        }
        let id = custos_core::id::new_id("lcr");
        let ev = self.event(
            actor,
            "lifecycle.apply",
            &d,
            Evidence {
                activity: "lifecycle.run",
                resource: json!({"type": "lifecycle", "name": id, "plan": crate::event::digest(plan),
                                 "summary": plan["summary"]}),
                before: None,
                after: None,
            },
            reason,
        );
        let c = self.store.begin_change().await?;
        self.commit(c, vec![ev], id).await
    }

    /// Applies the retention of custos' own records within a lifecycle run: usage records
    /// before `usage_before` deleted, end-user ids before `end_users_before` cleared; one
    /// `lifecycle.custos` event with the counts. Returns (deleted, cleared).
    pub async fn apply_own_retention(
        &self,
        actor: &Actor,
        run: &str,
        usage_before: Option<i64>,
        end_users_before: Option<i64>,
        reason: &Reason,
    ) -> Result<Recorded<(u64, u64)>, ControlError> {
        let d = self
            .authorize(actor, "lifecycle.apply", GLOBAL, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let deleted = match usage_before {
            Some(t) => c.usage_delete_before(t).await?,
            None => 0,
        };
        let cleared = match end_users_before {
            Some(t) => c.usage_clear_end_users_before(t).await?,
            None => 0,
        };
        let ev = observed(
            actor,
            "lifecycle.custos",
            json!({"type": "usage_records", "run": run,
                   "deleted": deleted, "deleted_before": usage_before.map(format_rfc3339),
                   "end_users_cleared": cleared, "cleared_before": end_users_before.map(format_rfc3339)}),
            Some(("lifecycle.apply", &d)),
            reason,
        );
        self.commit(c, vec![ev], (deleted, cleared)).await
    }

    /// Records what a lifecycle run did, one event per object (`lifecycle.delete`,
    /// `lifecycle.move`, `lifecycle.keep`, `lifecycle.failed`).
    pub async fn record_lifecycle_actions(
        &self,
        actor: &Actor,
        run: &str,
        done: &[Value],
        reason: &Reason,
    ) -> Result<Recorded<()>, ControlError> {
        let d = self
            .authorize(actor, "lifecycle.apply", GLOBAL, reason)
            .await?;
        let events: Vec<String> = done
            .iter()
            .map(|a| {
                let mut r = a.clone();
                r["type"] = json!("object");
                r["run"] = json!(run);
                let activity = format!("lifecycle.{}", a["action"].as_str().unwrap_or("keep"));
                observed(actor, &activity, r, Some(("lifecycle.apply", &d)), reason)
            })
            .collect();
        let c = self.store.begin_change().await?;
        self.commit(c, events, ()).await
    }
}
