//! Composite releases: create one (each component pinned by its registered digest, the risk
//! tier derived from what changes against the app's current release), attach evidence, and
//! record approver decisions — never by the author, only in roles the tier requires and the
//! approver holds. A release whose tier's approvals and evidence are all in becomes approved.

use crate::{Actor, ActorKind, Control, ControlError, Evidence as Change, Recorded};
use custos_core::time::now_ms;
use custos_core::Reason;
use custos_govern::release::tier::{self, Composite, Flags, Rule, Tier};
use custos_store::{Release, ReleaseDecision, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A piece of evidence: its kind (`adr`, `tests`, `eval`, …), where it is, its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: String,
    pub name: String,
    pub sha256: String,
}

/// A release to create.
#[derive(Clone, Debug)]
pub struct NewRelease {
    pub tenant: String,
    /// `team/app`.
    pub app: String,
    pub composite: Composite,
    pub requested_tier: Option<Tier>,
    pub flags: Flags,
    pub evidence: Vec<Evidence>,
}

/// A release with what its tier still needs.
#[derive(Clone, Debug)]
pub struct ReleaseView {
    pub release: Release,
    pub decisions: Vec<ReleaseDecision>,
    pub rule: Rule,
    pub missing: Vec<String>,
}

fn state(r: &Release) -> Value {
    json!({"id": r.id, "tenant": r.tenant, "app": r.app, "state": r.state, "tier": r.tier,
           "composite": serde_json::from_str::<Value>(&r.composite).unwrap_or(Value::Null),
           "evidence": serde_json::from_str::<Value>(&r.evidence).unwrap_or(Value::Null)})
}

fn resource(r: &Release, composite: &Composite) -> Value {
    json!({"type": "release", "name": r.id, "tenant": r.tenant, "app": format!("{}/{}", r.tenant, r.app),
           "tier": r.tier, "composite": composite.label(),
           "components": composite})
}

impl Control {
    /// The rule a tier must meet: configuration's, else the defaults.
    pub fn tier_rule(&self, t: Tier) -> Rule {
        match self.settings.release.tiers.get(t.as_str()) {
            Some(r) => Rule {
                approvals: r.approvals.clone(),
                evidence: r.evidence.clone(),
            },
            None => tier::default_rules().remove(&t).unwrap_or(Rule {
                approvals: Vec::new(),
                evidence: Vec::new(),
            }),
        }
    }

    /// A release, its decisions and what it still needs.
    pub async fn release_view(&self, id: &str) -> Result<ReleaseView, ControlError> {
        let release = self.store.release(id).await?;
        let decisions = self.store.release_decisions(id).await?;
        let t = Tier::parse(&release.tier).map_err(ControlError::Invalid)?;
        let rule = self.tier_rule(t);
        let missing = missing(&rule, &release, &decisions);
        Ok(ReleaseView {
            release,
            decisions,
            rule,
            missing,
        })
    }

    pub async fn create_release(
        &self,
        actor: &Actor,
        new: NewRelease,
        reason: &Reason,
    ) -> Result<Recorded<ReleaseView>, ControlError> {
        let d = self
            .authorize(actor, "releases.create", &new.tenant, reason)
            .await?;
        let (team, app) = new
            .app
            .split_once('/')
            .ok_or_else(|| ControlError::invalid(format!("{:?} is not TEAM/APP", new.app)))?;
        if new.composite.model.is_none()
            && new.composite.prompt.is_none()
            && new.composite.data.is_empty()
        {
            return Err(ControlError::invalid(
                "a release pins at least one of --model, --prompt, --data",
            ));
        }
        let mut c = self.store.begin_change().await?;
        match c.app(&new.tenant, team, app).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(ControlError::invalid(format!(
                    "no app {team}/{app} in tenant {} (custos apps list)",
                    new.tenant
                )))
            }
            Err(e) => return Err(e.into()),
        }
        // The app's current release: the active one, else (before any promotion) the latest
        // approved one.
        let previous = c
            .release_latest(&new.tenant, &new.app, &["active", "approved"])
            .await?;
        let prev_composite: Option<Composite> = previous
            .as_ref()
            .and_then(|r| serde_json::from_str(&r.composite).ok());
        let (derived, reasons) = tier::derive(prev_composite.as_ref(), &new.composite, &new.flags);
        let effective =
            tier::effective(derived, new.requested_tier).map_err(ControlError::Invalid)?;
        let now = now_ms();
        let r = Release {
            id: custos_core::id::new_id("rel"),
            tenant: new.tenant.clone(),
            app: new.app.clone(),
            state: "draft".into(),
            tier: effective.as_str().into(),
            derived_tier: derived.as_str().into(),
            reasons: serde_json::to_string(&reasons).unwrap_or_default(),
            composite: serde_json::to_string(&new.composite)
                .map_err(|e| ControlError::invalid(e.to_string()))?,
            evidence: serde_json::to_string(&new.evidence)
                .map_err(|e| ControlError::invalid(e.to_string()))?,
            author: actor.name(),
            why: reason.why.clone(),
            ticket: reason.ticket.clone(),
            created_at: now,
            updated_at: now,
        };
        c.release_insert(&r).await?;
        let pii: Vec<String> = new
            .composite
            .data
            .iter()
            .filter(|d| d.pii)
            .map(|d| format!("{}@{}", d.name, d.version))
            .collect();
        let trigger = if effective == Tier::High && (new.flags.new_pii_flow || !pii.is_empty()) {
            self.dpia_trigger(
                &mut c,
                actor,
                crate::dpia::Trigger {
                    tenant: r.tenant.clone(),
                    kind: "high-release-pii",
                    key: format!("release:{}", r.id),
                    subject: format!("release {} of {}", r.id, r.app),
                    release_id: Some(r.id.clone()),
                    details: json!({"release": r.id, "app": r.app, "tier": "high",
                                    "new_pii_flow": new.flags.new_pii_flow, "datasets_with_pii": pii,
                                    "composite": new.composite.label()}),
                },
                reason,
            )
            .await?
        } else {
            None
        };
        let mut res = resource(&r, &new.composite);
        res["derived_tier"] = json!(derived.as_str());
        res["reasons"] = json!(reasons);
        res["previous"] = json!(previous.as_ref().map(|p| &p.id));
        let e = self.event(
            actor,
            "releases.create",
            &d,
            Change {
                activity: "release.create",
                resource: res,
                before: None,
                after: Some(state(&r)),
            },
            reason,
        );
        let rule = self.tier_rule(effective);
        let missing = missing(&rule, &r, &[]);
        self.commit(
            c,
            std::iter::once(e).chain(trigger).collect(),
            ReleaseView {
                release: r,
                decisions: Vec::new(),
                rule,
                missing,
            },
        )
        .await
    }

    /// Attaches evidence to a draft release (replacing evidence of the same kind).
    pub async fn add_release_evidence(
        &self,
        actor: &Actor,
        id: &str,
        items: Vec<Evidence>,
        reason: &Reason,
    ) -> Result<Recorded<ReleaseView>, ControlError> {
        let tenant = self.store.release(id).await?.tenant;
        let d = self
            .authorize(actor, "releases.create", &tenant, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let before = c
            .release_get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release {id:?}")))?;
        // An emergency release gets its ADR and audit bundle after the fact.
        let post_hoc = before.tier == "emergency"
            && items
                .iter()
                .all(|e| e.kind == "adr" || e.kind == "audit-bundle");
        if before.state != "draft" && !post_hoc {
            return Err(ControlError::invalid(format!(
                "release {id} is {}; evidence is attached while it is a draft (an emergency release takes its adr and audit-bundle afterwards)",
                before.state
            )));
        }
        let mut all: Vec<Evidence> = serde_json::from_str(&before.evidence).unwrap_or_default();
        for e in items {
            all.retain(|x| x.kind != e.kind);
            all.push(e);
        }
        let mut after = before.clone();
        after.evidence =
            serde_json::to_string(&all).map_err(|e| ControlError::invalid(e.to_string()))?;
        after.updated_at = now_ms();
        let decisions = c.release_decisions_in(id).await?;
        let rule = self.tier_rule(Tier::parse(&after.tier).map_err(ControlError::Invalid)?);
        let still = missing(&rule, &after, &decisions);
        if before.state == "draft"
            && still.is_empty()
            && !decisions.iter().any(|d| d.decision == "deny")
        {
            after.state = "approved".into();
        }
        c.release_update(&after, &before.state).await?;
        let composite: Composite = serde_json::from_str(&after.composite).unwrap_or_default();
        let e = self.event(
            actor,
            "releases.create",
            &d,
            Change {
                activity: "release.evidence",
                resource: resource(&after, &composite),
                before: Some(state(&before)),
                after: Some(state(&after)),
            },
            reason,
        );
        self.commit(
            c,
            vec![e],
            ReleaseView {
                release: after,
                decisions,
                rule,
                missing: still,
            },
        )
        .await
    }

    /// Records one approver role's decision. The author never decides their own release; the
    /// role must be one the tier requires and the approver holds.
    pub async fn decide_release(
        &self,
        actor: &Actor,
        id: &str,
        role: &str,
        approve: bool,
        reason: &Reason,
    ) -> Result<Recorded<ReleaseView>, ControlError> {
        let tenant = self.store.release(id).await?.tenant;
        let d = self
            .authorize(actor, "releases.approve", &tenant, reason)
            .await?;
        if !approve && reason.why.is_none() {
            return Err(ControlError::ReasonRequired {
                action: "releases.deny".into(),
            });
        }
        let who = actor.name();
        let holds = match actor.kind {
            // The local operator acts in any role it names; still never on its own release.
            ActorKind::Local => true,
            ActorKind::Credential => actor
                .principal
                .roles
                .iter()
                .chain(&actor.facts.grants)
                .any(|r| r == role),
            ActorKind::System => false,
        };
        let mut c = self.store.begin_change().await?;
        let before = c
            .release_get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release {id:?}")))?;
        if before.author == who {
            return Err(ControlError::invalid(format!(
                "{who} wrote release {id}; someone else decides on it"
            )));
        }
        let rule = self.tier_rule(Tier::parse(&before.tier).map_err(ControlError::Invalid)?);
        if !rule.approvals.iter().any(|r| r == role) {
            return Err(ControlError::invalid(format!(
                "a {} release needs approvals by {}; {role:?} is not one of them",
                before.tier,
                rule.approvals.join(", ")
            )));
        }
        if !holds {
            return Err(ControlError::invalid(format!(
                "{who} does not hold the role {role:?}; only its holders decide as {role}"
            )));
        }
        if before.state != "draft" {
            return Err(ControlError::invalid(format!(
                "release {id} is {}; decisions are made on drafts",
                before.state
            )));
        }
        let mut decisions = c.release_decisions_in(id).await?;
        if let Some(prev) = decisions.iter().find(|x| x.role == role) {
            return Err(ControlError::invalid(format!(
                "{} already decided release {id} as {role} ({})",
                prev.by_whom, prev.decision
            )));
        }
        let now = now_ms();
        let mut after = before.clone();
        after.updated_at = now;
        let decision = ReleaseDecision {
            release_id: id.into(),
            role: role.into(),
            decision: if approve { "approve" } else { "deny" }.into(),
            by_whom: who,
            why: reason.why.clone(),
            at: now,
            ledger_index: 0,
        };
        decisions.push(decision.clone());
        let still = missing(&rule, &after, &decisions);
        if approve && still.is_empty() && !decisions.iter().any(|d| d.decision == "deny") {
            after.state = "approved".into();
        }
        c.release_update(&after, &before.state).await?;
        let composite: Composite = serde_json::from_str(&after.composite).unwrap_or_default();
        let mut res = resource(&after, &composite);
        res["role"] = json!(role);
        // The name the promotion lists approvers by.
        res["by"] = json!(decision.by_whom);
        let e = self.event(
            actor,
            "releases.approve",
            &d,
            Change {
                activity: if approve {
                    "release.approve"
                } else {
                    "release.deny"
                },
                resource: res,
                before: Some(state(&before)),
                after: Some(state(&after)),
            },
            reason,
        );
        let e = crate::seal::seal_in(&mut c, e).await?;
        let ledger = c.append_events(&[e]).await?;
        c.release_decision_insert(&ReleaseDecision {
            ledger_index: ledger.start as i64,
            ..decision
        })
        .await?;
        c.commit().await?;
        let decisions = self.store.release_decisions(id).await?;
        Ok(Recorded {
            value: ReleaseView {
                release: after,
                decisions,
                rule,
                missing: still,
            },
            ledger,
        })
    }
}

/// The derived tier of a drill release.
pub const DRILL: &str = "drill";

/// What a release still needs: approvals by role, evidence by kind.
fn missing(rule: &Rule, r: &Release, decisions: &[ReleaseDecision]) -> Vec<String> {
    if r.derived_tier == DRILL {
        return Vec::new();
    }
    let approved: BTreeSet<String> = decisions
        .iter()
        .filter(|d| d.decision == "approve")
        .map(|d| d.role.clone())
        .collect();
    let evidence: BTreeSet<String> = serde_json::from_str::<Vec<Evidence>>(&r.evidence)
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let mut out = tier::missing(rule, &approved, &evidence);
    let denied: BTreeMap<&str, &str> = decisions
        .iter()
        .filter(|d| d.decision == "deny")
        .map(|d| (d.role.as_str(), d.by_whom.as_str()))
        .collect();
    for (role, by) in denied {
        out.insert(0, format!("denied by {by} as {role}"));
    }
    out
}

impl Control {
    /// Activates an approved release: its model must be servable under `trust` (approved or
    /// promoted, signed by a trusted key), a high-tier release's model must carry a signed
    /// card; the app's active release becomes superseded. The gateway switches the app's
    /// alias on its next refresh.
    pub async fn promote_release(
        &self,
        actor: &Actor,
        id: &str,
        trust: &[custos_govern::models::trust::TrustedKey],
        reason: &Reason,
    ) -> Result<Recorded<ReleaseView>, ControlError> {
        use custos_govern::models::registry::Kind;
        use custos_govern::models::trust;
        let stored = self.store.release(id).await?;
        let d = self
            .authorize(actor, "releases.promote", &stored.tenant, reason)
            .await?;
        // Read outside the change's transaction: SQLite has one writer.
        if stored.tier != "emergency" {
            self.slo_freeze(&stored.tenant, &stored.app).await?;
        }
        let mut c = self.store.begin_change().await?;
        let before = c
            .release_get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release {id:?}")))?;
        let decisions = c.release_decisions_in(id).await?;
        let rule = self.tier_rule(Tier::parse(&before.tier).map_err(ControlError::Invalid)?);
        let still = missing(&rule, &before, &decisions);
        if before.state != "approved" || !still.is_empty() {
            return Err(ControlError::invalid(format!(
                "release {id} is {}{}; only an approved release is promoted",
                before.state,
                if still.is_empty() {
                    String::new()
                } else {
                    format!(" (missing: {})", still.join(", "))
                }
            )));
        }
        let waiting = c.dpias_open_for_release(id).await?;
        if let Some(w) = waiting.first() {
            return Err(ControlError::invalid(format!(
                "release {id} triggered DPIA {} ({}), which is {}; it is promoted once the DPIA is approved (`custos dpia approve {}`)",
                w.id, w.subject, w.state, w.id
            )));
        }
        if before.tier != "emergency" {
            let now = now_ms();
            let frozen = self
                .settings
                .release
                .freeze
                .iter()
                .find(|w| w.bounds().is_some_and(|(a, b)| a <= now && now < b));
            if let Some(w) = frozen {
                return Err(ControlError::Frozen(format!(
                    "a change freeze is in force from {} until {} ({}); only an emergency release is promoted",
                    w.from, w.until, w.reason
                )));
            }
        }
        let composite: Composite = serde_json::from_str(&before.composite)
            .map_err(|e| ControlError::invalid(e.to_string()))?;
        let mut checks = Vec::new();
        if let Some(m) = &composite.model {
            let entry = c.model_get(&m.name, &m.version).await?.ok_or_else(|| {
                ControlError::invalid(format!(
                    "the model {}@{} is no longer registered",
                    m.name, m.version
                ))
            })?;
            let kind = if entry.kind == "remote" {
                Kind::Remote
            } else {
                Kind::Weights
            };
            let verdict = trust::servable(
                &trust::Entry {
                    name: &entry.name,
                    version: &entry.version,
                    kind,
                    state: &entry.state,
                    manifest_digest: entry.manifest_digest.as_deref(),
                    signature: entry.signature.as_deref(),
                },
                trust,
            )
            .map_err(|why| {
                ControlError::invalid(format!(
                    "the model {}@{} cannot be served: {why}",
                    m.name, m.version
                ))
            })?;
            if before.tier == "high" && kind == Kind::Weights && entry.card_digest.is_none() {
                return Err(ControlError::invalid(format!(
                    "a high-tier release needs the model's signed card: custos models card sign for {}@{}",
                    m.name, m.version
                )));
            }
            checks.push(json!({"model": format!("{}@{}", m.name, m.version), "digest": verdict.manifest_digest,
                               "signer": verdict.signer, "card_digest": entry.card_digest.map(|d| format!("sha256:{d}"))}));
        }
        let now = now_ms();
        let previous = c
            .release_supersede(&before.tenant, &before.app, id, now)
            .await?;
        let mut after = before.clone();
        after.state = "active".into();
        after.updated_at = now;
        c.release_update(&after, &before.state).await?;
        let mut res = resource(&after, &composite);
        res["superseded"] = json!(previous);
        res["checks"] = json!(checks);
        res["approvers"] = json!(decisions
            .iter()
            .map(|d| json!({"role": d.role, "by": d.by_whom}))
            .collect::<Vec<_>>());
        let e = self.event(
            actor,
            "releases.promote",
            &d,
            Change {
                activity: "release.promote",
                resource: res,
                before: Some(state(&before)),
                after: Some(state(&after)),
            },
            reason,
        );
        self.commit(
            c,
            vec![e],
            ReleaseView {
                release: after,
                decisions,
                rule,
                missing: Vec::new(),
            },
        )
        .await
    }
}

impl Control {
    /// Restores an app's last known good release: the active one becomes `rolled back`, the
    /// most recently superseded one active again. Must say why.
    pub async fn rollback_release(
        &self,
        actor: &Actor,
        tenant: &str,
        app: &str,
        reason: &Reason,
    ) -> Result<Recorded<ReleaseView>, ControlError> {
        let d = self
            .authorize(actor, "releases.promote", tenant, reason)
            .await?;
        if reason.why.is_none() {
            return Err(ControlError::ReasonRequired {
                action: "releases.rollback".into(),
            });
        }
        let mut c = self.store.begin_change().await?;
        let current = c
            .release_latest(tenant, app, &["active"])
            .await?
            .ok_or_else(|| {
                ControlError::invalid(format!("{tenant}/{app} has no active release to roll back"))
            })?;
        let good = c
            .release_latest(tenant, app, &["superseded"])
            .await?
            .ok_or_else(|| {
                ControlError::invalid(format!(
                    "{tenant}/{app} has no earlier release to return to"
                ))
            })?;
        let now = now_ms();
        c.release_set_state(&current.id, "active", "rolled back", now)
            .await?;
        c.release_set_state(&good.id, "superseded", "active", now)
            .await?;
        let composite: Composite = serde_json::from_str(&good.composite).unwrap_or_default();
        let from: Composite = serde_json::from_str(&current.composite).unwrap_or_default();
        let mut after = good.clone();
        after.state = "active".into();
        after.updated_at = now;
        let mut res = resource(&after, &composite);
        res["rolled_back"] =
            json!({"id": current.id, "composite": from.label(), "components": from});
        res["rollback_to"] = json!({"id": good.id, "composite": composite.label()});
        let e = self.event(
            actor,
            "releases.promote",
            &d,
            Change {
                activity: "release.rollback",
                resource: res,
                before: Some(state(&current)),
                after: Some(state(&after)),
            },
            reason,
        );
        let decisions = c.release_decisions_in(&good.id).await?;
        let rule = self.tier_rule(Tier::parse(&good.tier).map_err(ControlError::Invalid)?);
        self.commit(
            c,
            vec![e],
            ReleaseView {
                release: after,
                decisions,
                rule,
                missing: Vec::new(),
            },
        )
        .await
    }
}

impl Control {
    /// A drill release: the app's active composite again, approved without decisions (it
    /// changes nothing that runs), marked `drill`, so a drill can promote it, watch it fail
    /// under injected faults and roll back to the release it copied.
    pub async fn create_drill_release(
        &self,
        actor: &Actor,
        tenant: &str,
        app: &str,
        reason: &Reason,
    ) -> Result<Recorded<ReleaseView>, ControlError> {
        let d = self
            .authorize(actor, "releases.promote", tenant, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let active = c
            .release_latest(tenant, app, &["active"])
            .await?
            .ok_or_else(|| {
                ControlError::invalid(format!(
                    "{tenant}/{app} has no active release; a drill rolls back to it, so promote one first"
                ))
            })?;
        let now = now_ms();
        let r = Release {
            id: custos_core::id::new_id("rel"),
            tenant: tenant.to_owned(),
            app: app.to_owned(),
            state: "approved".into(),
            tier: "low".into(),
            // Marks the drill: it needs no decisions (see `missing`).
            derived_tier: DRILL.into(),
            reasons: serde_json::to_string(&[format!(
                "drill: the components of {} again; nothing new reaches production",
                active.id
            )])
            .unwrap_or_default(),
            composite: active.composite.clone(),
            evidence: "[]".into(),
            author: actor.name(),
            why: reason.why.clone(),
            ticket: reason.ticket.clone(),
            created_at: now,
            updated_at: now,
        };
        c.release_insert(&r).await?;
        let composite: Composite = serde_json::from_str(&r.composite).unwrap_or_default();
        let mut res = resource(&r, &composite);
        res["drill"] = json!({"copy_of": active.id});
        let e = self.event(
            actor,
            "releases.promote",
            &d,
            Change {
                activity: "release.create",
                resource: res,
                before: None,
                after: Some(state(&r)),
            },
            reason,
        );
        let rule = Rule {
            approvals: Vec::new(),
            evidence: Vec::new(),
        };
        self.commit(
            c,
            vec![e],
            ReleaseView {
                release: r,
                decisions: Vec::new(),
                rule,
                missing: Vec::new(),
            },
        )
        .await
    }
}
