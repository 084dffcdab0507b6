//! budget: before a call goes out, every budget it is charged to (its tenant, team, app,
//! key, or a tag it carries) holds the call's estimated cost. A blocking budget that is used
//! up, or that the estimate would overrun, refuses the call with 402 problem+json naming the
//! budget, unless the key holds a time-bound spend override (`custos budgets override`).
//! Holds make concurrent calls safe: together they can pass a budget only by what their
//! estimates undercounted. The meter settles each hold with the call's true cost. With a
//! shared Redis the holds and spend live there, so the bound holds across all replicas.

use crate::call::ModelCall;
use crate::cluster::{Cluster, Control};
use crate::meter::MeterSlot;
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use custos_core::config::OnRedisError;
use custos_core::principal::SharedPrincipal;
use custos_finops::budget::{Action, Exhausted, Tracker};
use custos_finops::period::Window;
use custos_finops::{Amount, Attribution};
use custos_store::shared::{BudgetHold, Held};
use std::sync::Arc;
use std::time::Duration;

/// How long a shared hold outlives its call at most: a replica that dies mid-call stops
/// holding its estimates after this.
pub const HOLD_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Window counters outlive their window by this, for late settlements.
const WINDOW_GRACE_MS: i64 = 86_400_000;

pub async fn enforce<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    let ext = req.extensions();
    let (Some(call), Some(principal), Some(slot)) = (
        ext.get::<Arc<ModelCall>>().cloned(),
        ext.get::<SharedPrincipal>().cloned(),
        ext.get::<Arc<MeterSlot>>().cloned(),
    ) else {
        return next.run(req).await;
    };
    let principal = &principal;
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
    let shared = match &state.cluster {
        Some(cluster) => {
            let force = state.finops.spend_override(principal, now).is_some();
            match hold_shared(cluster, &state.finops, &trackers, estimate, now, force).await {
                Ok((hold, Held::Yes { over })) => {
                    overridden = over
                        .iter()
                        .map(|i| trackers[*i].budget.name.clone())
                        .collect();
                    Some(hold)
                }
                Ok((_, Held::Refused { index, spent, held })) => {
                    let t = &trackers[index];
                    let e = Exhausted {
                        spent: Amount::from_nanos(i128::from(spent)),
                        reserved: Amount::from_nanos(i128::from(held)),
                        amount: t.budget.amount,
                        window: t.window(now),
                    };
                    return refusal(state, t, &e, estimate, &call);
                }
                Err(reason) => match cluster.fall_back(state, Control::Budgets, &reason) {
                    OnRedisError::Local => None,
                    OnRedisError::FailOpen => {
                        for t in &trackers {
                            slot.add_hold(t.clone(), t.hold_anyway(now, estimate));
                        }
                        return next.run(req).await;
                    }
                    OnRedisError::FailClosed => {
                        return Problem::new(
                            ProblemKind::Overloaded,
                            "budgets are shared through Redis, which does not answer; this gateway refuses calls charged to a budget until it does (on_redis_error = \"fail_closed\")",
                        )
                        .with_header(http::header::RETRY_AFTER, http::HeaderValue::from(1u64))
                        .into_response();
                    }
                },
            }
        }
        None => None,
    };
    if let Some(hold) = shared {
        // Redis decided; this replica's trackers only follow its own calls, for thresholds.
        for t in &trackers {
            slot.add_hold(t.clone(), t.hold_anyway(now, estimate));
        }
        slot.set_shared_hold(hold);
        return finish(state, principal, overridden, now, req, next).await;
    }
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
            Err(e) => return refusal(state, &t, &e, estimate, &call),
        }
    }
    finish(state, principal, overridden, now, req, next).await
}

/// The 402 for a budget that cannot take a call's estimate. Its thresholds up to 100% are
/// reported now, since holds keep spend itself from ever reaching the amount.
fn refusal(
    state: &AppState,
    t: &Arc<Tracker>,
    e: &Exhausted,
    estimate: Amount,
    call: &ModelCall,
) -> Response {
    let now = custos_core::time::now_ms();
    state.finops.crossed(t, now, t.refused(now));
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
    Problem::new(ProblemKind::BudgetExhausted, detail).into_response()
}

/// Records whose spend override passed which budgets, then runs the call.
async fn finish<N: Next>(
    state: &AppState,
    principal: &SharedPrincipal,
    overridden: Vec<String>,
    now: i64,
    req: Request,
    next: &N,
) -> Response {
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

/// A call's holds on the shared budgets, released with its cost when the call ends.
#[derive(Debug)]
pub struct SharedHold {
    cluster: Arc<Cluster>,
    finops: Arc<crate::finops::Finops>,
    id: String,
    /// Each budget's window counter, with the tracker that follows it here.
    budgets: Vec<(String, Arc<Tracker>, Window)>,
    estimate: i64,
}

impl SharedHold {
    /// Releases the hold and adds `cost` in the background; thresholds the shared spend now
    /// reaches are reported like local ones (the store claims each alert once).
    pub fn settle(self, cost: Amount) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cost = cost.to_i64_nanos().unwrap_or(i64::MAX);
        handle.spawn(async move {
            let keys: Vec<&str> = self.budgets.iter().map(|(k, _, _)| k.as_str()).collect();
            let (id, estimate) = (&self.id, self.estimate);
            match self
                .cluster
                .call(|s| async move { s.budget_spend(id, &keys, estimate, cost).await })
                .await
            {
                Ok(spent) => {
                    let now = custos_core::time::now_ms();
                    for ((_, tracker, window), spent) in self.budgets.iter().zip(spent) {
                        let fired =
                            tracker.refresh(now, *window, Amount::from_nanos(i128::from(spent)));
                        self.finops.crossed(tracker, now, fired);
                    }
                }
                // The usage record still reaches the database, whose spend every replica
                // takes in at its next refresh; the hold lapses after HOLD_LIFETIME.
                Err(reason) => tracing::warn!(
                    reason,
                    "cannot settle a shared budget hold; the database's spend catches up at the next refresh"
                ),
            }
        });
    }
}

/// The Redis counter of `t`'s window: tenant, budget and window in the key.
fn window_key(t: &Tracker, w: Window) -> String {
    format!("b:{}:{}:{}", t.budget.tenant, t.budget.id, w.start_ms)
}

/// Holds `estimate` on every tracker's shared counter, or on none.
async fn hold_shared(
    cluster: &Arc<Cluster>,
    finops: &Arc<crate::finops::Finops>,
    trackers: &[Arc<Tracker>],
    estimate: Amount,
    now: i64,
    force: bool,
) -> Result<(SharedHold, Held), String> {
    let budgets: Vec<(String, Arc<Tracker>, Window)> = trackers
        .iter()
        .map(|t| {
            let w = t.window(now);
            (window_key(t, w), t.clone(), w)
        })
        .collect();
    let asked: Vec<BudgetHold<'_>> = budgets
        .iter()
        .map(|(key, t, w)| {
            let (spent, _, _) = t.snapshot(now);
            BudgetHold {
                key,
                amount: (t.budget.action == Action::Block)
                    .then(|| t.budget.amount.to_i64_nanos().unwrap_or(i64::MAX)),
                floor: spent.to_i64_nanos().unwrap_or(0),
                expire_at_ms: w.end_ms.saturating_add(WINDOW_GRACE_MS),
            }
        })
        .collect();
    let id = custos_core::id::new_id("hold");
    let est = estimate.to_i64_nanos().unwrap_or(i64::MAX);
    let held = match cluster
        .call(|s| {
            let (id, asked) = (&id, &asked);
            async move { s.budget_hold(id, asked, est, HOLD_LIFETIME, force).await }
        })
        .await
    {
        Ok(held) => held,
        Err(reason) => {
            // A hold that timed out here may still have been applied by Redis: release it, or
            // it would keep part of every replica's budget for HOLD_LIFETIME. The connection
            // is ordered, so the release runs after the hold if the hold was sent at all.
            release_late_hold(cluster, id, &budgets, est);
            return Err(reason);
        }
    };
    Ok((
        SharedHold {
            cluster: cluster.clone(),
            finops: finops.clone(),
            id,
            budgets,
            estimate: est,
        },
        held,
    ))
}

/// Releases, in the background, a hold whose outcome the caller did not wait for.
fn release_late_hold(
    cluster: &Arc<Cluster>,
    id: String,
    budgets: &[(String, Arc<Tracker>, Window)],
    estimate: i64,
) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let cluster = cluster.clone();
    let keys: Vec<String> = budgets.iter().map(|(k, _, _)| k.clone()).collect();
    handle.spawn(async move {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (id, keys) = (&id, &keys);
        if let Err(reason) = cluster
            .call(|s| async move { s.budget_spend(id, keys, estimate, 0).await })
            .await
        {
            tracing::warn!(
                reason,
                "cannot release a budget hold that timed out; it lapses after its lifetime"
            );
        }
    });
}

/// Adds spend reported outside a call (`/v1/usage` job records) to the shared counters.
pub fn spend_shared(state: &AppState, trackers: &[Arc<Tracker>], cost: Amount, now: i64) {
    let Some(cluster) = &state.cluster else {
        return;
    };
    if trackers.is_empty() || cost.is_zero() {
        return;
    }
    SharedHold {
        cluster: cluster.clone(),
        finops: state.finops.clone(),
        id: String::new(),
        budgets: trackers
            .iter()
            .map(|t| {
                let w = t.window(now);
                (window_key(t, w), t.clone(), w)
            })
            .collect(),
        estimate: 0,
    }
    .settle(cost);
}
