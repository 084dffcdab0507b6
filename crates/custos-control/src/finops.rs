//! Prices, budgets and spend overrides: the FinOps settings gateways enforce, each one
//! authorized change with its ledger event; and the reconciliation of bills against them,
//! one read shared by the CLI and the console.

use crate::{Actor, Control, ControlError, Evidence, Recorded, GLOBAL};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_finops::budget::Budget;
use custos_finops::reconcile::{
    self as rec, BilledLine, BilledSpan, JobCheck, JobRun, JobStatus, Mapping, MeteredModel,
    Reconciliation, TagGroup,
};
use custos_finops::Price;
use custos_store::{check_tag_key, BilledGroup, Dimension, SpendOverride, StoreError, UsageFilter};
use serde_json::{json, Value};

/// The longest a spend override may last: an emergency, not a new budget.
pub const MAX_OVERRIDE_MS: i64 = 72 * 3600 * 1000;

fn price_state(p: &Price) -> Value {
    json!({"type": "price", "provider": p.provider, "model": p.model,
           "effective_from": format_rfc3339(p.effective_from), "currency": p.currency.as_str(),
           "rates": serde_json::to_value(&p.rates).unwrap_or(Value::Null)})
}

pub fn budget_state(b: &Budget) -> Value {
    json!({"type": "budget", "id": b.id, "tenant": b.tenant, "name": b.name,
           "scope": b.scope.to_string(), "period": b.period.as_str(), "time_zone": b.time_zone,
           "amount": b.amount.to_string(), "currency": b.currency.as_str(),
           "thresholds": b.thresholds, "action": b.action.as_str()})
}

/// A spend override to open for one key.
#[derive(Clone, Debug)]
pub struct NewOverride {
    /// The key, by id or displayed prefix.
    pub key: String,
    pub duration_ms: i64,
}

/// A deleted budget, as it was.
pub type BudgetDeleted = Budget;

impl Control {
    /// Adds or replaces prices (same provider, model and effective date). Prices apply to every
    /// tenant, so the resource is the catalog (`GLOBAL`), not a tenant.
    pub async fn set_prices(
        &self,
        actor: &Actor,
        prices: &[Price],
        source: Option<&str>,
        reason: &Reason,
    ) -> Result<Recorded<usize>, ControlError> {
        let d = self
            .authorize(actor, "prices.manage", GLOBAL, reason)
            .await?;
        if prices.is_empty() {
            return Err(ControlError::invalid("no prices to set"));
        }
        for p in prices {
            if p.rates.has_negative() {
                return Err(ControlError::invalid(format!(
                    "the rates of {}/{} must not be negative",
                    p.provider, p.model
                )));
            }
        }
        let mut c = self.store.begin_change().await?;
        let n = c.prices_upsert(prices).await?;
        let (activity, resource, after) = match prices {
            [one] => ("price.set", price_state(one), price_state(one)),
            many => {
                let all: Vec<Value> = many.iter().map(price_state).collect();
                (
                    "price.import",
                    json!({"type": "prices", "file": source, "count": n}),
                    Value::Array(all),
                )
            }
        };
        let e = self.event(
            actor,
            "prices.manage",
            &d,
            Evidence {
                activity,
                resource,
                before: None,
                after: Some(after),
            },
            reason,
        );
        self.commit(c, vec![e], n).await
    }

    /// Creates a budget; its id is assigned here when empty.
    pub async fn create_budget(
        &self,
        actor: &Actor,
        mut budget: Budget,
        reason: &Reason,
    ) -> Result<Recorded<Budget>, ControlError> {
        let d = self
            .authorize(actor, "budgets.manage", &budget.tenant, reason)
            .await?;
        if !custos_core::id::is_valid_name(&budget.name) {
            return Err(ControlError::invalid(format!(
                "budget name {:?} must be 1–64 letters, digits, '.', '_' or '-'",
                budget.name
            )));
        }
        if budget.id.is_empty() {
            budget.id = custos_core::id::new_id("bud");
        }
        if budget.time_zone.is_empty() {
            budget.time_zone = self.settings.time_zone.clone();
        }
        budget.validate().map_err(ControlError::Invalid)?;
        let mut c = self.store.begin_change().await?;
        let mut events = Vec::new();
        self.tenant_in_change(&mut c, actor, &budget.tenant, &mut events)
            .await?;
        c.budget_create(&budget).await?;
        events.push(self.event(
            actor,
            "budgets.manage",
            &d,
            Evidence {
                activity: "budget.create",
                resource: budget_state(&budget),
                before: None,
                after: Some(budget_state(&budget)),
            },
            reason,
        ));
        self.commit(c, events, budget).await
    }

    /// Deletes a budget (its alert history stays).
    pub async fn delete_budget(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
        reason: &Reason,
    ) -> Result<Recorded<BudgetDeleted>, ControlError> {
        let d = self
            .authorize(actor, "budgets.manage", tenant, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let b = c.budget_delete(tenant, name).await?;
        let e = self.event(
            actor,
            "budgets.manage",
            &d,
            Evidence {
                activity: "budget.delete",
                resource: budget_state(&b),
                before: Some(budget_state(&b)),
                after: None,
            },
            reason,
        );
        self.commit(c, vec![e], b).await
    }

    /// Lets one active key spend past its budgets for a while (at most 72 hours).
    pub async fn create_override(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        req: &NewOverride,
        reason: &Reason,
    ) -> Result<Recorded<SpendOverride>, ControlError> {
        if req.duration_ms <= 0 || req.duration_ms > MAX_OVERRIDE_MS {
            return Err(ControlError::invalid(
                "an override lasts between 1s and 72h",
            ));
        }
        let row = match self.store.key(&req.key).await {
            Ok(k) if tenant.is_none_or(|t| t == k.tenant) => Some(k),
            Ok(_) | Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let on = tenant
            .map(str::to_owned)
            .or(row.as_ref().map(|k| k.tenant.clone()));
        let Some(on) = on else {
            return Err(StoreError::NotFound(format!("key {:?}", req.key)).into());
        };
        let d = self
            .authorize(actor, "budgets.override", &on, reason)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("key {:?}", req.key)).into());
        };
        let now = now_ms();
        if row.status(now) != "active" {
            return Err(ControlError::invalid(format!(
                "key {} is {}; an override would not let it spend",
                row.prefix,
                row.status(now)
            )));
        }
        let o = SpendOverride {
            id: custos_core::id::new_id("ovr"),
            tenant: row.tenant.clone(),
            key_id: row.id.clone(),
            expires_at: now.saturating_add(req.duration_ms),
            why: reason.why.clone().unwrap_or_default(),
            created_by: actor.name(),
            created_at: now,
        };
        let state = json!({"type": "spend_override", "id": o.id, "tenant": o.tenant,
                           "key": o.key_id, "expires_at": format_rfc3339(o.expires_at)});
        let mut c = self.store.begin_change().await?;
        c.spend_override_create(&o).await?;
        let e = self.event(
            actor,
            "budgets.override",
            &d,
            Evidence {
                activity: "budget.override.grant",
                resource: state.clone(),
                before: None,
                after: Some(state),
            },
            reason,
        );
        self.commit(c, vec![e], o).await
    }
}

/// What a bill is reconciled against, beside its period.
#[derive(Clone, Debug)]
pub struct ReconcileParams {
    /// The tag that allocates spend (e.g. `Team`).
    pub tag: String,
    /// The largest acceptable untagged share and metering gap, in percent.
    pub tolerance: f64,
    /// How bill names relate to the gateway's.
    pub mapping: Mapping,
    /// A tag jobs and billed resources both carry, matching a job to its bill lines.
    pub job_tag: Option<String>,
}

impl Default for ReconcileParams {
    fn default() -> Self {
        ReconcileParams {
            tag: "Team".to_owned(),
            tolerance: 1.0,
            mapping: Mapping::default(),
            job_tag: None,
        }
    }
}

/// A period's bill reconciled: spend by allocation tag, metering gaps by provider and model,
/// and each reported job found in the bill or not.
#[derive(Clone, Debug)]
pub struct ReconcileReport {
    /// Billed spend by the allocation tag's value (`""` = untagged).
    pub by_tag: Vec<BilledGroup>,
    pub result: Reconciliation,
    pub jobs: Vec<JobCheck>,
    /// An untagged share or metering gap beyond the tolerance, or a job missing from the bill.
    pub failed: bool,
}

impl ReconcileReport {
    /// Whether there was no bill at all to reconcile in the period.
    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty() && self.result.metering.is_empty() && self.jobs.is_empty()
    }
}

impl Control {
    /// Reconciles the bills ingested for `[from_ms, until_ms)`: the share of spend without the
    /// allocation tag, the gateway's metering against each provider's bill, and each job
    /// reported through `/v1/usage` against the bill within 48 hours of its end. A read that
    /// spans every tenant (bills are the organization's): surfaces authorize it first.
    pub async fn reconcile(
        &self,
        from_ms: i64,
        until_ms: i64,
        p: &ReconcileParams,
    ) -> Result<ReconcileReport, ControlError> {
        check_tag_key(&p.tag).map_err(ControlError::invalid)?;
        if let Some(t) = &p.job_tag {
            check_tag_key(t).map_err(|e| ControlError::invalid(format!("job tag: {e}")))?;
        }
        if !(0.0..=100.0).contains(&p.tolerance) {
            return Err(ControlError::invalid(
                "the tolerance is a percentage between 0 and 100",
            ));
        }
        let store = &self.store;
        let by_tag = store
            .billing_groups(from_ms, until_ms, Some(&p.tag))
            .await?;
        let tags: Vec<TagGroup> = by_tag
            .iter()
            .map(|g| TagGroup {
                value: g.keys.first().cloned().unwrap_or_default(),
                currency: g.currency.clone(),
                billed: g.billed,
                rows: g.rows,
            })
            .collect();
        let billed: Vec<BilledLine> = store
            .billing_groups(from_ms, until_ms, None)
            .await?
            .into_iter()
            .map(|g| {
                let mut k = g.keys.into_iter();
                BilledLine {
                    provider: k.next().unwrap_or_default(),
                    service: k.next().unwrap_or_default(),
                    sku: k.next().unwrap_or_default(),
                    description: k.next().unwrap_or_default(),
                    currency: g.currency,
                    billed: g.billed,
                }
            })
            .collect();
        let f = UsageFilter {
            from_ms,
            until_ms,
            ..UsageFilter::default()
        };
        let metered: Vec<MeteredModel> = store
            .usage_report(
                &f,
                &[
                    Dimension::Source,
                    Dimension::Provider,
                    Dimension::Model,
                    Dimension::Currency,
                ],
                0,
            )
            .await?
            .into_iter()
            .filter(|m| m.keys.first().is_some_and(|s| s == "gateway"))
            .map(|m| {
                let key = |i: usize| m.keys.get(i).cloned().unwrap_or_default();
                MeteredModel {
                    provider: key(1),
                    model: key(2),
                    currency: key(3),
                    cost: m.cost,
                }
            })
            .collect();
        let result = rec::reconcile(&tags, &billed, &metered, &p.mapping, p.tolerance);
        let runs: Vec<JobRun> = store
            .job_rows(from_ms, until_ms)
            .await?
            .into_iter()
            .map(|j| JobRun {
                tag: p.job_tag.as_ref().and_then(|t| j.tags.get(t).cloned()),
                id: j.id,
                provider: j.provider,
                resource: j.model,
                at_ms: j.at_ms,
                compute_ms: j.compute_ms,
                cost: j.cost,
                currency: j.currency,
            })
            .filter(|j| j.provider != "*" && !j.provider.is_empty())
            .collect();
        let jobs = if runs.is_empty() {
            Vec::new()
        } else {
            let earliest = runs
                .iter()
                .map(|j| j.at_ms - j.compute_ms)
                .min()
                .unwrap_or(from_ms);
            let spans: Vec<BilledSpan> = store
                .billing_spans(
                    earliest,
                    until_ms.saturating_add(rec::JOB_BILLING_GRACE_MS),
                    p.job_tag.as_deref(),
                )
                .await?
                .into_iter()
                .map(|b| BilledSpan {
                    text: format!(
                        "{} {} {} {}",
                        b.service, b.sku, b.description, b.resource_id
                    ),
                    provider: b.provider,
                    tag: b.tag,
                    start_ms: b.start_ms,
                    end_ms: b.end_ms,
                    currency: b.currency,
                    billed: b.billed,
                })
                .collect();
            let coverage = store.billing_coverage().await?;
            rec::jobs(&runs, &spans, &p.mapping, &coverage)
        };
        let failed = result.failed || jobs.iter().any(|j| j.status == JobStatus::Missing);
        Ok(ReconcileReport {
            by_tag,
            result,
            jobs,
            failed,
        })
    }
}
