//! budget: before a call goes out, every budget it is charged to (its tenant, team, app,
//! key, or a tag it carries) holds the call's estimated cost. A blocking budget that is used
//! up, or that the estimate would overrun, refuses the call with 402 problem+json naming the
//! budget, unless the key holds a time-bound spend override (`custos budgets override`).
//! Holds make concurrent calls safe: together they can pass a budget only by what their
//! estimates undercounted. The meter settles each hold with the call's true cost.

use crate::call::ModelCall;
use crate::meter::MeterSlot;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custos_core::principal::SharedPrincipal;
use custos_finops::Attribution;
use std::sync::Arc;

pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ext = req.extensions();
    let (Some(call), Some(principal), Some(slot)) = (
        ext.get::<Arc<ModelCall>>(),
        ext.get::<SharedPrincipal>(),
        ext.get::<Arc<MeterSlot>>(),
    ) else {
        return next.run(req).await;
    };
    let tags: Vec<(String, String)> = slot
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let at = Attribution {
        tenant: &principal.tenant,
        team: &principal.team,
        app: &principal.app,
        key: &principal.id,
        tags: &tags,
    };
    let trackers = state.finops.budgets_for(&at);
    if trackers.is_empty() {
        return next.run(req).await;
    }
    let now = custos_core::time::now_ms();
    let route = &call.route;
    let price = state.finops.price(
        route.provider.name(),
        &route.upstream_model,
        &route.model,
        now,
    );
    let estimate = state.finops.estimate(
        price.as_ref(),
        u64::from(call.prompt_tokens),
        call.max_output_tokens,
    );
    let mut overridden: Vec<String> = Vec::new();
    for t in trackers {
        match t.reserve(now, estimate) {
            // Held in the meter's slot: released on refusal, settled when the call ends.
            Ok(hold) => slot.add_hold(t, hold),
            // A time-bound spend override lets the call through; it still counts, and the
            // ledger says whose override spent past which budget.
            Err(_) if state.finops.spend_override(principal, now).is_some() => {
                overridden.push(t.budget.name.clone());
                let hold = t.hold_anyway(now, estimate);
                slot.add_hold(t, hold);
            }
            Err(e) => {
                let b = &t.budget;
                let detail = format!(
                    "the {} budget {:?} ({}) has {} of {} {} spent{} this period, which ends {}; this call's estimated cost is {} {}{}",
                    b.period.as_str(),
                    b.name,
                    b.scope,
                    e.spent.format_money(),
                    b.amount.format_money(),
                    b.currency,
                    if e.reserved.is_zero() {
                        String::new()
                    } else {
                        format!(" and {} held by calls in flight", e.reserved.format_money())
                    },
                    custos_core::time::format_rfc3339(e.window.end_ms),
                    estimate.format_money(),
                    b.currency,
                    if call.max_output_tokens.is_none() {
                        format!(
                            " (no max_tokens was set, so {} output tokens were assumed)",
                            state.finops.default_max_output
                        )
                    } else {
                        String::new()
                    }
                );
                return Problem::new(ProblemKind::BudgetExhausted, detail).into_response();
            }
        }
    }
    if !overridden.is_empty() {
        let why = state
            .finops
            .spend_override(principal, now)
            .unwrap_or_default();
        state
            .audit
            .append(&serde_json::json!({
                "schema": 1,
                "time": custos_core::time::format_rfc3339(now),
                "activity": "budget.override",
                "actor": {"type": if principal.method == custos_core::principal::AuthMethod::Jwt { "user" } else { "api_key" },
                          "id": principal.id, "uid": principal.uid, "tenant": principal.tenant,
                          "team": principal.team, "app": principal.app},
                "resources": overridden.iter().map(|b| serde_json::json!({"type": "budget", "name": b})).collect::<Vec<_>>(),
                "outcome": "allowed",
                "reason": "spend override in force",
                "why": why,
                "request_id": req.extensions().get::<custos_core::RequestId>().map(|r| r.as_str().to_owned()),
            }))
            .await;
    }
    next.run(req).await
}
