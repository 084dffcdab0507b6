//! The admin API's releases: list and show a tenant's releases, decide on them in a role,
//! promote, post-check (with rollback on a breach), roll an app back, fetch a proof artifact,
//! and read SLO budgets. Thin over `custos-control`; creating a release (which reads files
//! for digests) is the CLI's.

use super::*;

#[derive(serde::Serialize, ToSchema)]
pub struct ReleaseOut {
    pub id: String,
    pub tenant: String,
    /// `TEAM/APP`.
    pub app: String,
    /// draft, approved, active, superseded or rolled back.
    pub state: String,
    pub tier: String,
    pub derived_tier: String,
    #[schema(value_type = Object)]
    pub composite: Value,
    #[schema(value_type = Vec<Object>)]
    pub evidence: Value,
    #[schema(value_type = Vec<Object>)]
    pub decisions: Value,
    /// What it still needs before promotion.
    pub missing: Vec<String>,
    pub author: String,
    pub why: Option<String>,
    pub ticket: Option<String>,
    pub created_at: String,
}

fn release_json(v: &custos_control::ReleaseView) -> Value {
    let r = &v.release;
    wire(ReleaseOut {
        id: r.id.clone(),
        tenant: r.tenant.clone(),
        app: r.app.clone(),
        state: r.state.clone(),
        tier: r.tier.clone(),
        derived_tier: r.derived_tier.clone(),
        composite: serde_json::from_str(&r.composite).unwrap_or(Value::Null),
        evidence: serde_json::from_str(&r.evidence).unwrap_or(json!([])),
        decisions: Value::Array(
            v.decisions
                .iter()
                .map(|d| json!({"role": d.role, "decision": d.decision, "by": d.by_whom, "why": d.why, "at": format_rfc3339(d.at)}))
                .collect(),
        ),
        missing: v.missing.clone(),
        author: r.author.clone(),
        why: r.why.clone(),
        ticket: r.ticket.clone(),
        created_at: format_rfc3339(r.created_at),
    })
}

/// Filters of the release list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReleasesQuery {
    /// Only this app's (`TEAM/APP`).
    app: Option<String>,
}

/// This gateway serves a changed alias at once; the others on their next refresh.
pub(crate) async fn refresh_aliases(s: &AppState) {
    if let Some(c) = &s.cluster {
        c.announce(crate::cluster::Topic::Releases);
    }
    if let Err(e) = s.aliases.refresh(&s.store, &s.routes).await {
        tracing::warn!(error = %e, "refreshing release aliases failed; the next refresh retries");
    }
}

/// The release `id` when it belongs to `tenant`; another tenant's is not found, as if absent.
async fn in_tenant(
    s: &AppState,
    tenant: &str,
    id: &str,
) -> Result<custos_control::ReleaseView, Response> {
    match release_of(s, tenant, id).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Problem::new(
            ProblemKind::NotFound,
            format!("no release {id:?} in this tenant"),
        )
        .into_response()),
        Err(e) => Err(control_problem(e)),
    }
}

/// The release `id` if it is `tenant`'s; `None` for another tenant's, exactly as for one
/// that does not exist (every surface answers both alike).
pub(crate) async fn release_of(
    s: &AppState,
    tenant: &str,
    id: &str,
) -> Result<Option<custos_control::ReleaseView>, ControlError> {
    match s.control.release_view(id).await {
        Ok(v) if v.release.tenant == tenant => Ok(Some(v)),
        Ok(_) | Err(ControlError::Store(StoreError::NotFound(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The tenant's releases, newest first.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/releases",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery, ReleasesQuery),
    responses(
        (status = 200, body = Page<ReleaseOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn releases(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
    AdminQuery(f): AdminQuery<ReleasesQuery>,
) -> Response {
    let rows = match s.store.releases(&tenant, f.app.as_deref()).await {
        Ok(r) => r,
        Err(e) => return store_problem(e),
    };
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        match s.control.release_view(&r.id).await {
            Ok(view) => items.push(release_json(&view)),
            Err(e) => return control_problem(e),
        }
    }
    list(v, &page, items)
}

/// One release: its state, decisions and what it still needs.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/releases/{id}",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the release id")),
    responses(
        (status = 200, body = Envelope<ReleaseOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn release_show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
) -> Response {
    match in_tenant(&s, &tenant, &id).await {
        Ok(view) => one(v, StatusCode::OK, release_json(&view)),
        Err(r) => r,
    }
}

/// The proof artifact of the release's latest promotion or rollback (`custos release
/// verify-proof` checks it offline). 409 while no signed checkpoint covers its events.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/releases/{id}/proof",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the release id")),
    responses(
        (status = 200, body = Envelope<Object>, content_type = "application/vnd.custos.v2+json", description = "the artifact"),
        Errors
    )
)]
pub(crate) async fn release_proof(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
) -> Response {
    if let Err(r) = in_tenant(&s, &tenant, &id).await {
        return r;
    }
    match s.control.release_proof(&id).await {
        Ok(p) => one(v, StatusCode::OK, p),
        Err(ControlError::Invalid(m)) => Problem::new(ProblemKind::Conflict, m).into_response(),
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    /// The approver role decided in (owner, on-call, platform, security, cab,
    /// incident-commander); the caller must hold it and must not be the author.
    role: String,
    why: Option<String>,
    ticket: Option<String>,
}

async fn decide_release(
    c: Ctx,
    tenant: String,
    id: String,
    bytes: Bytes,
    approve: bool,
) -> Response {
    let b: DecisionBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    if let Err(r) = in_tenant(&c.s, &tenant, &id).await {
        return r;
    }
    match c
        .s
        .control
        .decide_release(&c.actor, &id, &b.role, approve, &r)
        .await
    {
        Ok(done) => one(c.version, StatusCode::OK, release_json(&done.value)),
        Err(e) => control_problem(e),
    }
}

/// Approve a release in a role its tier requires.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/releases/{id}/approve",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the release id")),
    request_body(content = DecisionBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<ReleaseOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn approve_release(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    decide_release(c, tenant, id, bytes, true).await
}

/// Deny a release in a role its tier requires (`why` required).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/releases/{id}/deny",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the release id")),
    request_body(content = DecisionBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<ReleaseOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn deny_release(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    decide_release(c, tenant, id, bytes, false).await
}

/// Activate an approved release (signatures, card, freezes and SLO budgets checked); every
/// gateway serves it under the app's alias within the refresh interval. Post-check it later
/// with `…/check`.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/releases/{id}/promote",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the release id")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<ReleaseOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn promote_release(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    let b: ReasonBody = tri!(body(&bytes, Some(ReasonBody::default())));
    let r = tri!(reason(&b.why, &b.ticket));
    if let Err(r) = in_tenant(&c.s, &tenant, &id).await {
        return r;
    }
    match c
        .s
        .control
        .promote_release(&c.actor, &id, &c.s.trust, &r)
        .await
    {
        Ok(done) => {
            refresh_aliases(&c.s).await;
            one(c.version, StatusCode::OK, release_json(&done.value))
        }
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckBody {
    /// Roll the app back when the check breaches.
    #[serde(default)]
    auto_rollback: bool,
    why: Option<String>,
    ticket: Option<String>,
}

#[derive(serde::Serialize, ToSchema)]
pub struct PostCheckOut {
    /// The post-check: window, before and after slices, thresholds and verdict.
    #[schema(value_type = Object)]
    pub post_check: Value,
    /// The release active again after a rollback on breach.
    pub rolled_back_to: Option<String>,
}

/// Post-check the active release over the time since its promotion against the previous
/// release's calls; recorded in the ledger.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/releases/{id}/check",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the release id")),
    request_body(content = CheckBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<PostCheckOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn check_release(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    let b: CheckBody = tri!(body(&bytes, Some(CheckBody::default())));
    let r = tri!(reason(&b.why, &b.ticket));
    let view = match in_tenant(&c.s, &tenant, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if view.release.state != "active" {
        return Problem::new(
            ProblemKind::Conflict,
            format!(
                "release {id} is {}; a post-check watches the active release",
                view.release.state
            ),
        )
        .into_response();
    }
    match c
        .s
        .control
        .post_check_release(
            &c.actor,
            &id,
            view.release.updated_at,
            now_ms() + 1,
            b.auto_rollback,
            &r,
        )
        .await
    {
        Ok(o) => {
            if o.rollback.is_some() {
                refresh_aliases(&c.s).await;
            }
            one(
                c.version,
                StatusCode::OK,
                wire(PostCheckOut {
                    post_check: wire(&o.check.value),
                    rolled_back_to: o.rollback.map(|r| r.value.release.id),
                }),
            )
        }
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackBody {
    /// The app, as `TEAM/APP`.
    app: String,
    why: Option<String>,
    ticket: Option<String>,
}

/// Restore an app's last known good release (`why` required).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/rollback",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = RollbackBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<ReleaseOut>, content_type = "application/vnd.custos.v2+json", description = "the release active again"),
        Errors
    )
)]
pub(crate) async fn rollback(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: RollbackBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .rollback_release(&c.actor, &tenant, &b.app, &r)
        .await
    {
        Ok(done) => {
            refresh_aliases(&c.s).await;
            one(c.version, StatusCode::OK, release_json(&done.value))
        }
        Err(e) => control_problem(e),
    }
}

#[derive(serde::Serialize, ToSchema)]
pub struct SloOut {
    pub name: String,
    pub app: Option<String>,
    /// `availability` or `latency`.
    pub kind: String,
    pub objective: f64,
    pub window_ms: u64,
    pub calls: u64,
    pub bad: u64,
    /// Bad calls over the budget's allowance; 1 is the budget spent.
    pub burn: f64,
    /// Spent: promotion is frozen (but for emergency releases).
    pub exhausted: bool,
}

/// The tenant's SLO error budgets now ([[release.slo]]).
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/slo",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery),
    responses(
        (status = 200, body = Page<SloOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn slo(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Response {
    match s.control.slo_status(&tenant, None).await {
        Ok(all) => list(
            v,
            &page,
            all.into_iter()
                .map(|o| {
                    wire(SloOut {
                        name: o.name,
                        app: o.app,
                        kind: o.kind.into(),
                        objective: o.objective,
                        window_ms: o.window_ms,
                        calls: o.budget.calls,
                        bad: o.budget.bad,
                        burn: o.budget.burn,
                        exhausted: o.budget.exhausted,
                    })
                })
                .collect(),
        ),
        Err(e) => control_problem(e),
    }
}
