//! Release health: SLO error budgets from the gateway's own call outcomes (a spent budget
//! freezes promotion), post-checks of a promoted release against the one it replaced (with
//! rollback on a breach), emergency follow-ups that fall due, and the ledger entries a
//! release's proof artifact carries.

use crate::event::observed;
use crate::{Actor, Control, ControlError, Recorded, ReleaseView};
use custos_core::config::SloConfig;
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_govern::release::health::{self, Budget, Slice, Thresholds, Verdict};
use custos_govern::release::proof;
use custos_store::{StoreError, UsageFilter};
use serde::Serialize;
use serde_json::{json, Value};

/// Refusal reasons the guardrails give (a guardrail hit, for the post-check's refusal rate).
const GUARD_REASONS: &[&str] = &["pii-blocked"];
/// Most ledger entries a post-check reads for guardrail refusals.
const MAX_SCAN: u64 = 2_000_000;
/// Most calls of a release one slice reads.
const MAX_CALLS: i64 = 200_000;

/// One SLO's budget now.
#[derive(Clone, Debug, Serialize)]
pub struct SloState {
    pub name: String,
    pub tenant: String,
    pub app: Option<String>,
    /// `availability` or `latency`.
    pub kind: &'static str,
    pub objective: f64,
    pub window_ms: u64,
    pub budget: Budget,
}

/// An SLO's burn rate over one lookback.
#[derive(Clone, Debug, Serialize)]
pub struct BurnRate {
    /// The lookback: `5m`, `30m`, `1h` or `6h`.
    pub window: &'static str,
    pub calls: u64,
    pub bad: u64,
    pub rate: f64,
}

/// One SLO now: its budget, its burn rates and the burn-rate alerts they fire.
#[derive(Clone, Debug, Serialize)]
pub struct SloBurn {
    #[serde(flatten)]
    pub state: SloState,
    pub rates: Vec<BurnRate>,
    /// Severities (`page`, `ticket`) whose alert condition holds now.
    pub firing: Vec<&'static str>,
}

/// A post-check's measurements and verdict.
#[derive(Clone, Debug, Serialize)]
pub struct PostCheck {
    pub release: String,
    pub tenant: String,
    /// `TEAM/APP`.
    pub app: String,
    /// The release it replaced, whose calls before the promotion are the baseline.
    pub previous: Option<String>,
    pub from_ms: i64,
    pub until_ms: i64,
    pub before: Option<Slice>,
    pub after: Slice,
    pub thresholds: Thresholds,
    pub verdict: Verdict,
    /// Ledger entries read for guardrail refusals stopped at the bound.
    pub truncated: bool,
}

/// A post-check and, when it breached and rollback was asked, the rollback.
#[derive(Debug)]
pub struct PostCheckOutcome {
    pub check: Recorded<PostCheck>,
    pub rollback: Option<Recorded<ReleaseView>>,
}

impl Control {
    /// The post-check thresholds in force.
    pub fn thresholds(&self) -> Thresholds {
        let c = &self.settings.release.post_check;
        let d = Thresholds::default();
        Thresholds {
            min_calls: c.min_calls.unwrap_or(d.min_calls),
            error_rate_margin: c.error_rate_margin.unwrap_or(d.error_rate_margin),
            p99_ratio: c.p99_ratio.unwrap_or(d.p99_ratio),
            cost_ratio: c.cost_ratio.unwrap_or(d.cost_ratio),
            guard_rate_margin: c.guard_rate_margin.unwrap_or(d.guard_rate_margin),
        }
    }

    /// How long a post-check watches (default 5 minutes).
    pub fn post_check_window(&self) -> std::time::Duration {
        self.settings
            .release
            .post_check
            .window
            .map_or(std::time::Duration::from_secs(300), |w| w.0)
    }

    /// The budgets of the SLOs that cover `app` of `tenant` (all of the tenant's, without
    /// an app), over each one's window ending now.
    pub async fn slo_status(
        &self,
        tenant: &str,
        app: Option<&str>,
    ) -> Result<Vec<SloState>, ControlError> {
        let now = now_ms();
        let mut out = Vec::new();
        for s in &self.settings.release.slo {
            if s.tenant != tenant || (app.is_some() && s.app.is_some() && s.app.as_deref() != app) {
                continue;
            }
            out.push(self.slo_state(s, now).await?);
        }
        Ok(out)
    }

    /// (calls, bad calls) of an SLO over the `lookback_ms` ending at `now`.
    async fn slo_outcomes(
        &self,
        s: &SloConfig,
        now: i64,
        lookback_ms: u64,
    ) -> Result<(u64, u64), ControlError> {
        let (team, name) = match s.app.as_deref().and_then(|a| a.split_once('/')) {
            Some((t, a)) => (Some(t.to_owned()), Some(a.to_owned())),
            None => (None, None),
        };
        let f = UsageFilter {
            tenant: Some(s.tenant.clone()),
            team,
            app: name,
            from_ms: now.saturating_sub(i64::try_from(lookback_ms).unwrap_or(i64::MAX)),
            until_ms: now + 1,
            ..UsageFilter::default()
        };
        Ok(self.store.usage_outcomes(&f, s.latency_ms).await?)
    }

    async fn slo_state(&self, s: &SloConfig, now: i64) -> Result<SloState, ControlError> {
        let window = s.window.map_or(3_600_000, |w| w.0.as_millis() as u64);
        let (calls, bad) = self.slo_outcomes(s, now, window).await?;
        Ok(SloState {
            name: s.name.clone(),
            tenant: s.tenant.clone(),
            app: s.app.clone(),
            kind: if s.latency_ms.is_some() {
                "latency"
            } else {
                "availability"
            },
            objective: s.objective,
            window_ms: window,
            budget: health::budget(s.objective, calls, bad, s.min_calls.unwrap_or(20)),
        })
    }

    /// Every configured SLO now: its budget over its window (the number that freezes
    /// promotion), its burn rates over the standard lookbacks, and the burn-rate alerts
    /// those numbers fire.
    pub async fn slo_burns(&self) -> Result<Vec<SloBurn>, ControlError> {
        let now = now_ms();
        let mut out = Vec::new();
        for s in &self.settings.release.slo {
            let state = self.slo_state(s, now).await?;
            let mut rates = Vec::with_capacity(health::BURN_WINDOWS.len());
            for (window, ms) in health::BURN_WINDOWS {
                let (calls, bad) = self.slo_outcomes(s, now, ms).await?;
                rates.push(BurnRate {
                    window,
                    calls,
                    bad,
                    rate: health::burn_rate(s.objective, calls, bad),
                });
            }
            let outcomes = |label: &str| {
                rates
                    .iter()
                    .find(|r| r.window == label)
                    .map_or((0, 0), |r| (r.calls, r.bad))
            };
            let firing = health::BURN_ALERTS
                .iter()
                .filter(|a| {
                    a.fires(
                        s.objective,
                        outcomes(a.long.0),
                        outcomes(a.short.0),
                        s.min_calls.unwrap_or(20),
                    )
                })
                .map(|a| a.severity)
                .collect();
            out.push(SloBurn {
                state,
                rates,
                firing,
            });
        }
        Ok(out)
    }

    /// Records that a burn-rate alert of `slo` started (`firing`) or stopped, as
    /// `slo.burn` or `slo.recovered`, once across every gateway sharing the database:
    /// `None` when another already recorded this transition.
    pub async fn record_slo_alert(
        &self,
        slo: &SloBurn,
        severity: &str,
        firing: bool,
    ) -> Result<Option<Recorded<()>>, ControlError> {
        let alert = health::BURN_ALERTS
            .iter()
            .find(|a| a.severity == severity)
            .ok_or_else(|| ControlError::invalid(format!("no burn-rate alert {severity:?}")))?;
        let s = &slo.state;
        let mut c = self.store.begin_change().await?;
        if !c
            .slo_alert_set(&s.tenant, &s.name, severity, firing, now_ms())
            .await?
        {
            return Ok(None);
        }
        let rate = |label: &str| slo.rates.iter().find(|r| r.window == label);
        let (long, short) = (rate(alert.long.0), rate(alert.short.0));
        let resource = json!({
            "type": "slo",
            "id": s.name,
            "name": s.name,
            "tenant": s.tenant,
            "app": s.app,
            "detail": {
                "severity": severity,
                "kind": s.kind,
                "objective": s.objective,
                "threshold": alert.threshold,
                "long": {"window": alert.long.0, "burn_rate": long.map(|r| r.rate), "calls": long.map(|r| r.calls), "bad": long.map(|r| r.bad)},
                "short": {"window": alert.short.0, "burn_rate": short.map(|r| r.rate), "calls": short.map(|r| r.calls), "bad": short.map(|r| r.bad)},
                "budget_burn": s.budget.burn,
                "frozen": s.budget.exhausted,
            },
        });
        let why = if firing {
            format!(
                "the SLO {:?} burns its error budget at {:.1}x over {} and {:.1}x over {} (alert at {}x)",
                s.name,
                long.map_or(0.0, |r| r.rate),
                alert.long.0,
                short.map_or(0.0, |r| r.rate),
                alert.short.0,
                alert.threshold
            )
        } else {
            format!(
                "the SLO {:?} burns its error budget below {}x again over {}",
                s.name, alert.threshold, alert.short.0
            )
        };
        let reason =
            Reason::new(Some(&why), None).map_err(|e| ControlError::invalid(e.to_string()))?;
        let e = observed(
            &Actor::system("custos-gateway"),
            if firing { "slo.burn" } else { "slo.recovered" },
            resource,
            None,
            &reason,
        );
        self.commit(c, vec![e], ()).await.map(Some)
    }

    /// The refusal a promotion meets while an SLO of the app has spent its budget.
    pub(crate) async fn slo_freeze(&self, tenant: &str, app: &str) -> Result<(), ControlError> {
        for s in self.slo_status(tenant, Some(app)).await? {
            if s.budget.exhausted {
                return Err(ControlError::Frozen(format!(
                    "the SLO {:?} ({} {}% over {}) has spent its error budget: {} bad of {} calls, {:.1} allowed (burn {:.1}x); only an emergency release is promoted until it recovers",
                    s.name,
                    s.kind,
                    s.objective,
                    custos_core::config::HumanDuration(std::time::Duration::from_millis(s.window_ms)),
                    s.budget.bad,
                    s.budget.calls,
                    s.budget.allowed,
                    s.budget.burn
                )));
            }
        }
        Ok(())
    }

    /// Guardrail refusals of calls naming `release` in [from, until), from the ledger.
    async fn guard_refusals(
        &self,
        release: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<(u64, bool), ControlError> {
        let start = self.store.ledger_index_at_time(0, from_ms).await?;
        let end = self.store.ledger_index_at_time(start, until_ms).await?;
        let stop = end.min(start.saturating_add(MAX_SCAN));
        let mut next = start;
        let mut n = 0;
        while next < stop {
            let page = self
                .store
                .ledger_entries(next as i64, (stop - next).min(10_000) as i64)
                .await?;
            let Some(last) = page.last() else { break };
            next = last.index as u64 + 1;
            for e in &page {
                // Most entries are other calls: a substring test spares parsing them.
                if !e.event.contains(release) || !e.event.contains("model.invoke") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&e.event) else {
                    continue;
                };
                if v["activity"] == "model.invoke"
                    && v["resources"][0]["release"] == release
                    && v["reason"]
                        .as_str()
                        .is_some_and(|r| GUARD_REASONS.contains(&r))
                {
                    n += 1;
                }
            }
        }
        Ok((n, end > stop))
    }

    async fn slice(
        &self,
        release: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<(Slice, bool), ControlError> {
        let calls = self
            .store
            .usage_release_calls(release, from_ms, until_ms, MAX_CALLS)
            .await?;
        let (guard, truncated) = self.guard_refusals(release, from_ms, until_ms).await?;
        Ok((Slice::of(&calls, guard), truncated))
    }

    /// Measures release `id` over [from, until) against the release it replaced over the
    /// same length of time before `from`, records the result (`release.postcheck`), and with
    /// `auto_rollback` rolls the app back when it breached and `id` is still active.
    pub async fn post_check_release(
        &self,
        actor: &Actor,
        id: &str,
        from_ms: i64,
        until_ms: i64,
        auto_rollback: bool,
        reason: &Reason,
    ) -> Result<PostCheckOutcome, ControlError> {
        let r = self.store.release(id).await?;
        let d = self
            .authorize(actor, "releases.promote", &r.tenant, reason)
            .await?;
        if until_ms <= from_ms {
            return Err(ControlError::invalid("the post-check window is empty"));
        }
        let previous = self
            .store
            .releases(&r.tenant, Some(&r.app))
            .await?
            .into_iter()
            // The one this promotion superseded: the latest to leave (or, after a rollback,
            // regain) the active state among those created before it.
            .filter(|x| {
                x.created_at < r.created_at && (x.state == "superseded" || x.state == "active")
            })
            .max_by_key(|x| x.updated_at);
        let (after, t1) = self.slice(id, from_ms, until_ms).await?;
        let (before, t2) = match &previous {
            Some(p) => {
                let (s, t) = self
                    .slice(&p.id, from_ms - (until_ms - from_ms), from_ms)
                    .await?;
                (Some(s), t)
            }
            None => (None, false),
        };
        let thresholds = self.thresholds();
        let verdict = health::judge(before.as_ref(), &after, &thresholds);
        let check = PostCheck {
            release: id.to_owned(),
            tenant: r.tenant.clone(),
            app: r.app.clone(),
            previous: previous.as_ref().map(|p| p.id.clone()),
            from_ms,
            until_ms,
            before,
            after,
            thresholds,
            verdict,
            truncated: t1 || t2,
        };
        let resource = json!({"type": "release", "name": id, "tenant": r.tenant, "app": format!("{}/{}", r.tenant, r.app),
            "window": {"from": format_rfc3339(from_ms), "until": format_rfc3339(until_ms)},
            "previous": check.previous, "before": check.before, "after": check.after,
            "thresholds": check.thresholds, "verdict": check.verdict});
        let e = observed(
            actor,
            "release.postcheck",
            resource,
            Some(("releases.promote", &d)),
            reason,
        );
        let c = self.store.begin_change().await?;
        let breached = check.verdict.breached();
        let check = self.commit(c, vec![e], check).await?;
        let mut rollback = None;
        if breached && auto_rollback {
            let now = self.store.release(id).await?;
            if now.state == "active" {
                let why = format!(
                    "post-check breach of {id}: {}",
                    check.value.verdict.breaches.join("; ")
                );
                rollback = Some(
                    self.rollback_release(
                        actor,
                        &r.tenant,
                        &r.app,
                        &Reason {
                            why: Some(why),
                            ticket: reason.ticket.clone(),
                        },
                    )
                    .await?,
                );
            }
        }
        Ok(PostCheckOutcome { check, rollback })
    }

    /// Emergency releases whose follow-up (ADR and audit bundle as evidence) is overdue now:
    /// each as the resource its `release.overdue` event records.
    pub async fn overdue_emergencies(&self) -> Result<Vec<Value>, ControlError> {
        let due_after = self
            .settings
            .release
            .emergency_followup
            .map_or(24 * 3_600_000, |d| d.0.as_millis() as i64);
        let now = now_ms();
        let mut out = Vec::new();
        for r in self.store.releases_emergency_live().await? {
            if r.created_at + due_after > now {
                continue;
            }
            let have: Vec<crate::ReleaseEvidence> =
                serde_json::from_str(&r.evidence).unwrap_or_default();
            let missing: Vec<&str> = ["adr", "audit-bundle"]
                .into_iter()
                .filter(|k| !have.iter().any(|e| e.kind == *k))
                .collect();
            if !missing.is_empty() {
                out.push(json!({"type": "release", "name": r.id, "tenant": r.tenant, "app": format!("{}/{}", r.tenant, r.app),
                                "tier": r.tier, "missing": missing, "author": r.author,
                                "due": format_rfc3339(r.created_at + due_after)}));
            }
        }
        Ok(out)
    }

    /// Records each overdue emergency release once (as `release.overdue`) and returns what
    /// it recorded now.
    pub async fn flag_overdue_emergencies(
        &self,
        actor: &Actor,
    ) -> Result<Vec<Value>, ControlError> {
        let mut out = Vec::new();
        for resource in self.overdue_emergencies().await? {
            let key = format!(
                "release.overdue.{}",
                resource["name"].as_str().unwrap_or("")
            );
            let mut c = self.store.begin_change().await?;
            if c.state_get(&key).await?.is_some() {
                continue;
            }
            let e = observed(
                actor,
                "release.overdue",
                resource.clone(),
                None,
                &Reason::default(),
            );
            c.state_put(&key, &format_rfc3339(now_ms())).await?;
            self.commit(c, vec![e], ()).await?;
            out.push(resource);
        }
        Ok(out)
    }

    /// The ledger entries of release `id` (its creation, evidence, decisions, promotion,
    /// post-checks and a rollback away from it) under the latest checkpoint, with inclusion
    /// proofs, as a proof artifact. Errs with `NotCovered` when the checkpoint is older than
    /// the entries: sign one and ask again.
    pub async fn release_proof(&self, id: &str) -> Result<Value, ControlError> {
        let r = self.store.release(id).await?;
        let Some((size, note)) = self.store.ledger_latest_checkpoint().await? else {
            return Err(ControlError::NotCovered {
                needed: 0,
                signed: 0,
            });
        };
        let from = self
            .store
            .ledger_index_at_time(0, r.created_at.saturating_sub(60_000))
            .await?;
        let mut found: Vec<(u64, String)> = Vec::new();
        let mut next = from as i64;
        loop {
            let page = self.store.ledger_entries(next, 10_000).await?;
            let Some(last) = page.last() else { break };
            next = last.index + 1;
            for e in page {
                if !e.event.contains(id) || !e.event.contains("\"release") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&e.event) else {
                    continue;
                };
                if v["activity"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("release."))
                    && proof::concerns(&v, id)
                {
                    found.push((e.index as u64, e.event));
                }
            }
        }
        if let Some((last, _)) = found.last() {
            if *last >= size {
                return Err(ControlError::NotCovered {
                    needed: last + 1,
                    signed: size,
                });
            }
        }
        let mut entries = Vec::new();
        for (index, event) in found {
            let path = self.inclusion_path(index, size).await?;
            entries.push(proof::Entry {
                index,
                event,
                proof: path,
            });
        }
        proof::build(id, &entries, size, &note).map_err(|e| ControlError::invalid(e.to_string()))
    }

    /// The audit path of ledger entry `index` in the tree of `size`, from stored nodes.
    async fn inclusion_path(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>, ControlError> {
        let nodes = self
            .store
            .ledger_nodes_at(&custos_ledger::inclusion_positions(index, size))
            .await?;
        custos_ledger::inclusion_proof(&nodes, index, size).map_err(|e| {
            ControlError::Store(StoreError::Invalid(format!(
                "cannot prove ledger entry {index}: {e}; run custos audit verify"
            )))
        })
    }

    /// One ledger entry's inclusion proof in the latest signed checkpoint, as
    /// `custos audit verify-proof` reads it: `index`, `tree_size`, `event` (the exact text
    /// hashed), `leaf_hash`, `proof` (hex hashes, leaf to root) and `checkpoint` (the note).
    pub async fn entry_proof(&self, index: u64) -> Result<Value, ControlError> {
        let Some((size, note)) = self.store.ledger_latest_checkpoint().await? else {
            return Err(ControlError::NotCovered {
                needed: index.saturating_add(1),
                signed: 0,
            });
        };
        if index >= size {
            return Err(ControlError::NotCovered {
                needed: index.saturating_add(1),
                signed: size,
            });
        }
        if let Some((base, _)) = self.store.ledger_latest_prune().await? {
            if index < base {
                return Err(ControlError::invalid(format!(
                    "entry {index} was pruned (the ledger now starts at {base}); the export that holds it verifies it: `custos audit verify-export DIR`"
                )));
            }
        }
        let entry = self
            .store
            .ledger_entries(i64::try_from(index).unwrap_or(i64::MAX), 1)
            .await?
            .into_iter()
            .next()
            .filter(|e| u64::try_from(e.index).ok() == Some(index))
            .ok_or_else(|| StoreError::NotFound(format!("ledger entry {index}")))?;
        let path = self.inclusion_path(index, size).await?;
        Ok(json!({
            "index": index,
            "tree_size": size,
            "event": entry.event,
            "leaf_hash": entry.leaf_hash,
            "proof": path.iter().map(hex::encode).collect::<Vec<_>>(),
            "checkpoint": note,
        }))
    }
}
