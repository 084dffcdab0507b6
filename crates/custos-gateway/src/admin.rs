//! The admin API: a tenant's control plane over HTTP, under `/admin/v1/tenants/{tenant}/…`,
//! authenticated like model calls and authorized by the same Cedar policies (the resource is
//! the tenant in the path).
//!
//! Isolation: a principal of another tenant is denied by policy before anything is read, with
//! the same answer whether the tenant exists or not; an object id of another tenant inside
//! one's own path is "not found", exactly like an id that does not exist. Every change, and
//! every denial, leaves a ledger event.

use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, RequestExt, Router};
use custos_authz::policy::Resource;
use custos_core::principal::{AuthMethod, SharedPrincipal};
use custos_core::time::{format_rfc3339, now_ms};
use custos_store::{Grant, GrantKind, KeyFilter, NewGrant, StoreError, UsageFilter};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The media type of admin API responses.
pub const MEDIA_TYPE: &str = "application/vnd.custos.v1+json";

/// The admin routes; the caller adds authentication outside.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants/{tenant}/keys", get(keys))
        .route(
            "/admin/v1/tenants/{tenant}/keys/{id}/revoke",
            post(revoke_key),
        )
        .route("/admin/v1/tenants/{tenant}/teams", get(teams))
        .route("/admin/v1/tenants/{tenant}/budgets", get(budgets))
        .route("/admin/v1/tenants/{tenant}/usage", get(usage))
        .route("/admin/v1/tenants/{tenant}/audit", get(audit))
        .route("/admin/v1/tenants/{tenant}/policies", get(policies))
        .route(
            "/admin/v1/tenants/{tenant}/grants",
            get(grants).post(request_grant),
        )
        .route(
            "/admin/v1/tenants/{tenant}/grants/break-glass",
            post(break_glass),
        )
        .route(
            "/admin/v1/tenants/{tenant}/grants/{id}/approve",
            post(approve_grant),
        )
        .route(
            "/admin/v1/tenants/{tenant}/grants/{id}/deny",
            post(deny_grant),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, authorize))
}

/// The policy action of an admin route.
fn action(method: &http::Method, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/admin/v1/tenants/")?;
    let (_, sub) = rest.split_once('/')?;
    let post = method == http::Method::POST;
    Some(
        match (post, sub.split('/').collect::<Vec<_>>().as_slice()) {
            (false, ["keys"]) => "keys.read",
            (true, ["keys", _, "revoke"]) => "keys.revoke",
            (false, ["teams"]) => "teams.read",
            (false, ["budgets"]) => "budgets.read",
            (false, ["usage"]) => "usage.read",
            (false, ["audit"]) => "audit.read",
            (false, ["policies"]) => "policies.read",
            (false, ["grants"]) => "grants.read",
            (true, ["grants"]) => "grants.request",
            (true, ["grants", "break-glass"]) => "grants.break_glass",
            (true, ["grants", _, "approve" | "deny"]) => "grants.approve",
            _ => return None,
        },
    )
}

/// Authorizes every admin request against the tenant in its path; denials are recorded.
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<SharedPrincipal>().cloned() else {
        return Problem::new(ProblemKind::Internal, "admin ran before authn").into_response();
    };
    let path = req.uri().path().to_owned();
    let Some(action) = action(req.method(), &path) else {
        return Problem::new(ProblemKind::NotFound, "no such admin endpoint").into_response();
    };
    let mut req = req;
    let tenant = match req.extract_parts::<Path<HashMap<String, String>>>().await {
        Ok(Path(params)) => params.get("tenant").cloned().unwrap_or_default(),
        Err(e) => return Problem::new(ProblemKind::InvalidRequest, e.body_text()).into_response(),
    };
    let resource = Resource::Tenant(tenant.clone());
    let decision = match state
        .authz
        .decide(&state, &principal, action, &resource, &req)
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "admin authorization could not be evaluated; denied");
            return Problem::new(
                ProblemKind::AccessDenied,
                "the request could not be evaluated against the policies, so it is denied",
            )
            .into_response();
        }
    };
    if !decision.allowed {
        // The event is the caller's: it names their tenant, never facts of the one asked for.
        record(
            &state,
            &principal,
            action,
            json!({"type": "tenant", "name": tenant}),
            "denied",
            Some(decision.reason()),
        )
        .await;
        return Problem::new(
            ProblemKind::AccessDenied,
            format!(
                "{action} on tenant {tenant:?} is denied: {}",
                decision.reason()
            ),
        )
        .into_response();
    }
    let mut res = next.run(req).await;
    if res.status().is_success() {
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(MEDIA_TYPE),
        );
    }
    res
}

/// Appends a control-plane event to the ledger.
async fn record(
    state: &AppState,
    p: &SharedPrincipal,
    activity: &str,
    resource: Value,
    outcome: &str,
    reason: Option<String>,
) {
    let kind = match p.method {
        AuthMethod::Jwt => "user",
        AuthMethod::ApiKey | AuthMethod::Mtls => "service_account",
    };
    let event = json!({
        "schema": 1,
        "time": format_rfc3339(now_ms()),
        "activity": activity,
        "actor": {"type": kind, "id": p.id, "uid": p.uid, "issuer": (!p.issuer.is_empty()).then_some(&p.issuer),
                  "tenant": p.tenant, "auth": p.method.as_str(),
                  "roles": (!p.roles.is_empty()).then_some(&p.roles), "mfa": p.mfa},
        "resources": [resource],
        "outcome": outcome,
        "reason": reason,
    });
    state.audit.append(&event).await;
    state.audit.flush().await;
}

fn store_problem(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(what) => {
            Problem::new(ProblemKind::NotFound, format!("no {what} in this tenant")).into_response()
        }
        StoreError::Invalid(m) => Problem::new(ProblemKind::InvalidRequest, m).into_response(),
        StoreError::Conflict(m) => Problem::new(ProblemKind::Conflict, m).into_response(),
        other => {
            tracing::error!(error = %other, "admin request failed in the store");
            Problem::new(ProblemKind::Internal, "the database could not answer").into_response()
        }
    }
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

async fn keys(State(s): State<AppState>, Path(tenant): Path<String>) -> Response {
    let filter = KeyFilter {
        tenant: Some(tenant),
        include_inactive: true,
        ..KeyFilter::default()
    };
    match s.store.list_keys(&filter).await {
        Ok(list) => {
            let now = now_ms();
            ok(json!(list
                .iter()
                .map(|k| json!({
                    "id": k.id, "prefix": k.prefix, "name": k.name, "team": k.team, "app": k.app,
                    "env": k.env, "models": k.models, "status": k.status(now),
                    "created_at": format_rfc3339(k.created_at),
                    "expires_at": k.expires_at.map(format_rfc3339),
                    "revoked_at": k.revoked_at.map(format_rfc3339),
                }))
                .collect::<Vec<_>>()))
        }
        Err(e) => store_problem(e),
    }
}

async fn revoke_key(
    State(s): State<AppState>,
    Extension(p): Extension<SharedPrincipal>,
    Path((tenant, id)): Path<(String, String)>,
) -> Response {
    // Look the key up inside the tenant only: another tenant's key is "not found".
    let filter = KeyFilter {
        tenant: Some(tenant.clone()),
        include_inactive: true,
        ..KeyFilter::default()
    };
    let key = match s.store.list_keys(&filter).await {
        Ok(list) => list.into_iter().find(|k| k.id == id),
        Err(e) => return store_problem(e),
    };
    let Some(key) = key else {
        return store_problem(StoreError::NotFound(format!("key {id:?}")));
    };
    match s.store.revoke_key(&key.id, None).await {
        Ok(k) => {
            record(
                &s,
                &p,
                "key.revoke",
                json!({"type": "api_key", "id": k.id, "tenant": tenant}),
                "allowed",
                None,
            )
            .await;
            ok(json!({"id": k.id, "status": k.status(now_ms())}))
        }
        Err(e) => store_problem(e),
    }
}

async fn teams(State(s): State<AppState>, Path(tenant): Path<String>) -> Response {
    match s.store.list_teams(Some(&tenant)).await {
        Ok(list) => ok(json!(list
            .iter()
            .map(|t| json!({
                "id": t.id, "name": t.name, "rpm": t.rpm, "tpm": t.tpm,
                "created_at": format_rfc3339(t.created_at),
            }))
            .collect::<Vec<_>>())),
        Err(e) => store_problem(e),
    }
}

async fn budgets(State(s): State<AppState>, Path(tenant): Path<String>) -> Response {
    match s.store.budgets(Some(&tenant)).await {
        Ok(list) => ok(json!(list.iter().map(|b| json!({
            "id": b.id, "name": b.name, "scope": b.scope.to_string(), "period": b.period.as_str(),
            "amount": b.amount.to_string(), "currency": b.currency.as_str(),
            "thresholds": b.thresholds, "action": b.action.as_str(),
        })).collect::<Vec<_>>())),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize)]
struct Window {
    /// Unix ms; default: 30 days ago.
    since: Option<i64>,
    until: Option<i64>,
}

async fn usage(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    Query(w): Query<Window>,
) -> Response {
    let now = now_ms();
    let filter = UsageFilter {
        tenant: Some(tenant),
        team: None,
        app: None,
        key_id: None,
        env: None,
        tags: Vec::new(),
        from_ms: w.since.unwrap_or(now - 30 * 86_400_000),
        until_ms: w.until.unwrap_or(now + 1),
    };
    let by = [
        custos_store::Dimension::Team,
        custos_store::Dimension::Model,
    ];
    match s.store.usage_report(&filter, &by, 0).await {
        Ok(rows) => ok(json!(rows
            .iter()
            .map(|r| json!({
                "team": r.keys.first(), "model": r.keys.get(1), "calls": r.calls,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                "cost": r.cost.to_string(),
            }))
            .collect::<Vec<_>>())),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize)]
struct AuditQuery {
    /// Most events returned, newest last (default 100, at most 1000).
    limit: Option<i64>,
}

/// Whether an event concerns `tenant`: its actor or one of its resources belongs to it.
fn concerns(event: &Value, tenant: &str) -> bool {
    event["actor"]["tenant"] == tenant
        || event["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["tenant"] == tenant))
}

async fn audit(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let size = match s.store.ledger_size().await {
        Ok(n) => n as i64,
        Err(e) => return store_problem(e),
    };
    // Read backwards in pages until enough of this tenant's events are found.
    let mut found: Vec<Value> = Vec::new();
    let mut end = size;
    const PAGE: i64 = 2_000;
    let mut scanned = 0i64;
    while end > 0 && found.len() < limit && scanned < 200_000 {
        let from = (end - PAGE).max(0);
        let page = match s.store.ledger_entries(from, end - from).await {
            Ok(p) => p,
            Err(e) => return store_problem(e),
        };
        scanned += end - from;
        let mut mine: Vec<Value> = page
            .iter()
            .filter_map(|e| {
                let v: Value = serde_json::from_str(&e.event).ok()?;
                concerns(&v, &tenant).then(|| json!({"index": e.index, "event": v}))
            })
            .collect();
        mine.append(&mut found);
        found = mine;
        end = from;
    }
    let skip = found.len().saturating_sub(limit);
    ok(json!(found.split_off(skip)))
}

async fn policies(State(s): State<AppState>) -> Response {
    ok(json!(s.authz.policy_ids()))
}

fn grant_json(g: &Grant) -> Value {
    let now = now_ms();
    json!({
        "id": g.id, "principal": g.principal, "role": g.role, "kind": g.kind.as_str(),
        "state": g.state(now), "why": g.why, "duration_ms": g.duration_ms,
        "requested_by": g.requested_by, "requested_at": format_rfc3339(g.requested_at),
        "decided_by": g.decided_by, "expires_at": g.expires_at.map(format_rfc3339),
    })
}

async fn grants(State(s): State<AppState>, Path(tenant): Path<String>) -> Response {
    match s.store.grants_list(Some(&tenant)).await {
        Ok(list) => ok(json!(list.iter().map(grant_json).collect::<Vec<_>>())),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    role: String,
    /// e.g. "60m".
    duration: String,
    why: String,
}

async fn create_grant(
    s: AppState,
    p: SharedPrincipal,
    tenant: String,
    body: GrantBody,
    kind: GrantKind,
) -> Response {
    let d = match custos_core::duration::parse_duration(&body.duration) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            return Problem::new(
                ProblemKind::InvalidRequest,
                "duration must be longer than zero",
            )
            .into_response()
        }
        Err(e) => {
            return Problem::new(ProblemKind::InvalidRequest, format!("duration: {e}"))
                .into_response()
        }
    };
    let max = s
        .config
        .authz
        .grants
        .max_for(&body.role, kind == GrantKind::BreakGlass);
    if d > max {
        return Problem::new(
            ProblemKind::InvalidRequest,
            format!(
                "a grant of {} lasts at most {}",
                body.role,
                custos_core::duration::format_duration(max)
            ),
        )
        .into_response();
    }
    let new = NewGrant {
        tenant: tenant.clone(),
        principal: p.grant_name(),
        role: body.role,
        kind,
        why: body.why,
        duration_ms: d.as_millis().min(i64::MAX as u128) as i64,
        requested_by: p.grant_name(),
    };
    match s.store.grant_create(&new).await {
        Ok(g) => {
            let activity = match kind {
                GrantKind::Jit => "grant.request",
                GrantKind::BreakGlass => "grant.break_glass",
            };
            record(&s, &p, activity, json!({"type": "grant", "id": g.id, "tenant": tenant, "role": g.role, "principal": g.principal}), "allowed", Some(g.why.clone())).await;
            if kind == GrantKind::BreakGlass {
                // Break-glass always alerts: the ledger event above, and every webhook.
                s.webhooks.deliver(
                    g.id.clone(),
                    json!({"type": "grant.break_glass", "tenant": tenant, "grant": grant_json(&g)}),
                );
                if let Err(e) = s.directory.refresh(&s.store).await {
                    tracing::warn!(error = %e, "directory refresh after break-glass failed");
                }
            }
            (http::StatusCode::CREATED, axum::Json(grant_json(&g))).into_response()
        }
        Err(e) => store_problem(e),
    }
}

async fn request_grant(
    State(s): State<AppState>,
    Extension(p): Extension<SharedPrincipal>,
    Path(tenant): Path<String>,
    body: Result<axum::Json<GrantBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(axum::Json(b)) => create_grant(s, p, tenant, b, GrantKind::Jit).await,
        Err(e) => Problem::new(ProblemKind::InvalidRequest, e.body_text()).into_response(),
    }
}

async fn break_glass(
    State(s): State<AppState>,
    Extension(p): Extension<SharedPrincipal>,
    Path(tenant): Path<String>,
    body: Result<axum::Json<GrantBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(axum::Json(b)) => create_grant(s, p, tenant, b, GrantKind::BreakGlass).await,
        Err(e) => Problem::new(ProblemKind::InvalidRequest, e.body_text()).into_response(),
    }
}

async fn decide(
    s: AppState,
    p: SharedPrincipal,
    tenant: String,
    id: String,
    approve: bool,
) -> Response {
    // Only this tenant's grants: another tenant's id is "not found".
    match s.store.grant(&id).await {
        Ok(g) if g.tenant == tenant => {}
        Ok(_) | Err(StoreError::NotFound(_)) => {
            return store_problem(StoreError::NotFound(format!("grant {id:?}")))
        }
        Err(e) => return store_problem(e),
    }
    match s.store.grant_decide(&id, approve, &p.grant_name()).await {
        Ok(g) => {
            let activity = if approve {
                "grant.approve"
            } else {
                "grant.deny"
            };
            record(&s, &p, activity, json!({"type": "grant", "id": g.id, "tenant": tenant, "role": g.role, "principal": g.principal}), "allowed", None).await;
            if let Err(e) = s.directory.refresh(&s.store).await {
                tracing::warn!(error = %e, "directory refresh after a grant decision failed");
            }
            ok(grant_json(&g))
        }
        Err(e) => store_problem(e),
    }
}

async fn approve_grant(
    State(s): State<AppState>,
    Extension(p): Extension<SharedPrincipal>,
    Path((tenant, id)): Path<(String, String)>,
) -> Response {
    decide(s, p, tenant, id, true).await
}

async fn deny_grant(
    State(s): State<AppState>,
    Extension(p): Extension<SharedPrincipal>,
    Path((tenant, id)): Path<(String, String)>,
) -> Response {
    decide(s, p, tenant, id, false).await
}
