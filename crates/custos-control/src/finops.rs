//! Prices, budgets and spend overrides: the FinOps settings gateways enforce, each one
//! authorized change with its ledger event.

use crate::{Actor, Control, ControlError, Evidence, Recorded, GLOBAL};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_finops::budget::Budget;
use custos_finops::Price;
use custos_store::{SpendOverride, StoreError};
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
