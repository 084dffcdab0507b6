//! The admin API: a tenant's control plane over HTTP, authenticated like model calls. Reads are
//! authorized here by the Cedar policies (the resource is the tenant in the path); every change
//! is one call into `custos-control`, which authorizes it, writes it with its ledger event in
//! one transaction, and records denials.
//!
//! Versions are chosen by media type: `Accept: application/vnd.custos.v2+json` selects v2,
//! `application/vnd.custos.v1+json` or `application/json` v1 (deprecated, with `Deprecation`,
//! `Sunset` and `Link` headers); anything else is 406. Paths are `/admin/tenants/{tenant}/…`,
//! and `/admin/v1/tenants/{tenant}/…` as before.
//!
//! Isolation: a principal of another tenant is denied by policy before anything is read, with
//! the same answer whether the tenant exists or not; an object id of another tenant inside
//! one's own path is "not found", exactly like an id that does not exist.

use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, RequestExt, Router};
use base64::Engine as _;
use bytes::Bytes;
use custos_authz::policy::{RequestFacts, Resource};
use custos_control::{Actor, ControlError};
use custos_core::principal::SharedPrincipal;
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_store::{Grant, GrantKind, KeyFilter, StoreError, UsageFilter};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};
// Envelope and Page name v2's bodies in the OpenAPI annotations.
#[allow(unused_imports)]
use crate::openapi::{
    AppOut, AuditItem, AuditOut, BudgetOut, CreatedKeyOut, Envelope, GrantOut, KeyOut, OverrideOut,
    Page, PolicyOut, PriceOut, PriceSetOut, ProblemOut, RotatedKeyOut, TeamOut, TenantOut,
    UsageOut,
};

/// The media type of v1 responses (deprecated).
pub const MEDIA_TYPE: &str = "application/vnd.custos.v1+json";
/// The media type of v2 responses.
pub const MEDIA_TYPE_V2: &str = "application/vnd.custos.v2+json";
/// When v1 was deprecated (v2's release), as an RFC 9745 `Deprecation` date.
pub const V1_DEPRECATED: &str = "@1796256000";
/// When v1 stops answering: 90 days after its deprecation (RFC 8594 `Sunset`).
pub const V1_SUNSET: &str = "Wed, 03 Mar 2027 00:00:00 GMT";
/// Where the migration notes are.
pub const V1_MIGRATION: &str =
    "<https://example.invalid/custos/docs/admin-api.md#from-v1-to-v2>; rel=\"deprecation\"; type=\"text/markdown\"";

/// The admin API version a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V2,
}

/// The version an `Accept` header selects, or the 406 that lists the supported ones.
pub fn negotiate_version(accept: Option<&str>) -> Result<ApiVersion, String> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(ApiVersion::V1);
    };
    let mut best: Option<(u16, ApiVersion)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000u16;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v
                    .trim()
                    .parse::<f32>()
                    .map_or(0, |f| (f.clamp(0.0, 1.0) * 1000.0) as u16);
            }
        }
        if q == 0 {
            continue;
        }
        let version = match media.as_str() {
            "application/vnd.custos.v2+json" => ApiVersion::V2,
            "application/vnd.custos.v1+json" | "application/json" | "application/*" | "*/*" => {
                ApiVersion::V1
            }
            _ => continue,
        };
        // Highest q wins; on a tie, the newer version.
        let better = match best {
            None => true,
            Some((bq, bv)) => {
                q > bq || (q == bq && version == ApiVersion::V2 && bv == ApiVersion::V1)
            }
        };
        if better {
            best = Some((q, version));
        }
    }
    best.map(|(_, v)| v).ok_or_else(|| {
        format!(
            "Accept: {} names no version this admin API serves; ask for {MEDIA_TYPE_V2} (current) or {MEDIA_TYPE} (deprecated)",
            crate::problem::prefix(accept, 200)
        )
    })
}

/// The admin routes; the caller adds authentication outside.
pub fn router(state: AppState) -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/admin/v1", "/admin"] {
        let t = |rest: &str| format!("{prefix}/tenants/{{tenant}}{rest}");
        r = r
            .route(&t(""), get(tenant_show))
            .route(&t("/regions"), post(set_regions).put(set_regions))
            .route(&t("/keys"), get(keys).post(create_key))
            .route(&t("/keys/{id}/revoke"), post(revoke_key))
            .route(&t("/keys/{id}/rotate"), post(rotate_key))
            .route(&t("/teams"), get(teams).post(create_team))
            .route(&t("/teams/{name}"), axum::routing::patch(set_team_limits))
            .route(&t("/apps"), get(apps).post(create_app))
            .route(
                &t("/apps/{team}/{app}/tools"),
                axum::routing::put(set_app_tools),
            )
            .route(&t("/budgets"), get(budgets).post(create_budget))
            .route(&t("/budgets/{name}"), axum::routing::delete(delete_budget))
            .route(&t("/overrides"), post(create_override))
            .route(&t("/usage"), get(usage))
            .route(&t("/audit"), get(audit))
            .route(&t("/policies"), get(policies))
            .route(&t("/grants"), get(grants).post(request_grant))
            .route(&t("/grants/break-glass"), post(break_glass))
            .route(&t("/grants/{id}/approve"), post(approve_grant))
            .route(&t("/grants/{id}/deny"), post(deny_grant))
            .route(&t("/grants/{id}/revoke"), post(revoke_grant))
            .route(&t("/releases"), get(releases::releases))
            .route(&t("/releases/{id}"), get(releases::release_show))
            .route(&t("/releases/{id}/proof"), get(releases::release_proof))
            .route(
                &t("/releases/{id}/approve"),
                post(releases::approve_release),
            )
            .route(&t("/releases/{id}/deny"), post(releases::deny_release))
            .route(
                &t("/releases/{id}/promote"),
                post(releases::promote_release),
            )
            .route(&t("/releases/{id}/check"), post(releases::check_release))
            .route(&t("/rollback"), post(releases::rollback))
            .route(&t("/slo"), get(releases::slo));
    }
    let global = Router::new()
        .route("/admin/tenants", post(create_tenant))
        .route("/admin/prices", get(prices).post(set_price))
        .route(
            "/admin/lineage",
            get(lifecycle::lineage).post(lifecycle::add_lineage),
        )
        .route(
            "/admin/holds",
            get(lifecycle::holds).post(lifecycle::place_hold),
        )
        .route("/admin/holds/{id}/release", post(lifecycle::release_hold))
        .route(
            "/admin/erasures",
            get(lifecycle::erasures).post(lifecycle::erase),
        )
        .route(
            "/admin/erasures/{id}/receipt",
            get(lifecycle::erasure_receipt),
        );
    r.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        authorize_read,
    ))
    .merge(global)
    .layer(axum::middleware::from_fn(negotiate))
    // Outermost: a replay is the answer exactly as first given, headers included.
    .layer(crate::stack::StackLayer(move |end| {
        crate::stack::Then(DedupeAdmin(state.clone()), end)
    }))
}

crate::stack::stages! {
    DedupeAdmin(AppState) => crate::idempotency::dedupe_admin as "idempotency",
}

/// Chooses the version, and labels the answer with it; v1 answers carry their deprecation.
async fn negotiate(mut req: Request, next: Next) -> Response {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let version = match negotiate_version(accept.as_deref()) {
        Ok(v) => v,
        Err(detail) => return Problem::new(ProblemKind::NotAcceptable, detail).into_response(),
    };
    if let Some(labels) = req
        .extensions()
        .get::<std::sync::Arc<crate::metrics::CallLabels>>()
    {
        labels.set_api_version(match version {
            ApiVersion::V1 => "v1",
            ApiVersion::V2 => "v2",
        });
    }
    req.extensions_mut().insert(version);
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let is_json = h
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if is_json {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(match version {
                ApiVersion::V1 => MEDIA_TYPE,
                ApiVersion::V2 => MEDIA_TYPE_V2,
            }),
        );
    }
    h.insert(http::header::VARY, HeaderValue::from_static("Accept"));
    if version == ApiVersion::V1 {
        h.insert("deprecation", HeaderValue::from_static(V1_DEPRECATED));
        h.insert("sunset", HeaderValue::from_static(V1_SUNSET));
        h.insert(http::header::LINK, HeaderValue::from_static(V1_MIGRATION));
    }
    res
}

/// The policy action of a read; `None` for changes, which `custos-control` authorizes.
fn read_action(method: &http::Method, path: &str) -> Option<&'static str> {
    let rest = path
        .strip_prefix("/admin/v1/tenants/")
        .or_else(|| path.strip_prefix("/admin/tenants/"))?;
    let sub = rest.split_once('/').map_or("", |(_, s)| s);
    // Release changes name a release by id: the caller must see the tenant's releases before
    // the id is looked up, so another tenant's release is denied like a tenant that is not.
    if method == http::Method::POST && sub.starts_with("releases/") {
        return Some("releases.read");
    }
    if method != http::Method::GET {
        return None;
    }
    Some(match sub {
        "" => "tenants.read",
        "keys" => "keys.read",
        "teams" | "apps" => "teams.read",
        "budgets" => "budgets.read",
        "usage" => "usage.read",
        "audit" => "audit.read",
        "policies" => "policies.read",
        "grants" => "grants.read",
        "slo" => "releases.read",
        s if s == "releases" || s.starts_with("releases/") => "releases.read",
        _ => return None,
    })
}

/// Authorizes every read against the tenant in its path; denials are recorded.
async fn authorize_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(action) = read_action(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(principal) = req.extensions().get::<SharedPrincipal>().cloned() else {
        return Problem::new(ProblemKind::Internal, "admin ran before authn").into_response();
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
        let actor = actor_of(&state, &principal, req.headers(), &req);
        let event = custos_control::denial(&actor, action, &tenant, &decision, &Reason::default());
        state.audit.append(&event).await;
        state.audit.flush().await;
        return Problem::new(
            ProblemKind::AccessDenied,
            format!(
                "{action} on tenant {tenant:?} is denied: {}",
                decision.reason()
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// The acting principal with the facts the gateway's policies see.
fn actor_of<B>(
    s: &AppState,
    p: &SharedPrincipal,
    headers: &HeaderMap,
    req: &http::Request<B>,
) -> Actor {
    let source = req
        .extensions()
        .get::<crate::refusals::ClientAddr>()
        .map(|c| c.0.to_string());
    actor_for(s, p, headers, source)
}

/// The acting principal, for surfaces that hold the request's parts apart (the console).
pub(crate) fn actor_for(
    s: &AppState,
    p: &SharedPrincipal,
    headers: &HeaderMap,
    source: Option<String>,
) -> Actor {
    let now = now_ms();
    let facts = RequestFacts {
        time: now.div_euclid(1000),
        classification: String::new(),
        step_up: p.mfa,
        grants: s.directory.granted_roles(p, now),
    };
    let tenant = (*s.directory.tenant_facts(&p.tenant)).clone();
    let mut a = Actor::credential((**p).clone(), facts, tenant);
    a.source = source;
    a.request_id = headers
        .get(crate::request_id::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    a
}

/// A query string as `T`, refused as problem+json (axum's own rejection is plain text).
pub(crate) struct AdminQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for AdminQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(AdminQuery(q)),
            Err(e) => Err(Problem::new(ProblemKind::InvalidRequest, e.body_text()).into_response()),
        }
    }
}

/// Path parameters as `T`, refused as problem+json.
pub(crate) struct AdminPath<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for AdminPath<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(AdminPath(p)),
            Err(e) => Err(Problem::new(ProblemKind::InvalidRequest, e.body_text()).into_response()),
        }
    }
}

/// What every change handler needs: the state, the actor and the version.
pub(crate) struct Ctx {
    s: AppState,
    actor: Actor,
    version: ApiVersion,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx
where
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let s: AppState = axum::extract::FromRef::from_ref(state);
        let Some(p) = parts.extensions.get::<SharedPrincipal>().cloned() else {
            return Err(
                Problem::new(ProblemKind::Internal, "admin ran before authn").into_response(),
            );
        };
        let version = parts
            .extensions
            .get::<ApiVersion>()
            .copied()
            .unwrap_or(ApiVersion::V1);
        let req = http::Request::from_parts(parts.clone(), ());
        let actor = actor_of(&s, &p, &parts.headers, &req);
        Ok(Ctx { s, actor, version })
    }
}

fn control_problem(e: ControlError) -> Response {
    match e {
        ControlError::Denied { action, tenant, reason, .. } => Problem::new(
            ProblemKind::AccessDenied,
            format!("{action} on tenant {tenant:?} is denied: {reason}"),
        )
        .into_response(),
        ControlError::ReasonRequired { action } => Problem::new(
            ProblemKind::ReasonRequired,
            format!("{action} must say why ([audit] require_why): add \"why\" (and \"ticket\") to the request body"),
        )
        .into_response(),
        ControlError::Invalid(m) => Problem::new(ProblemKind::InvalidRequest, m).into_response(),
        ControlError::Policy(e) => {
            tracing::error!(error = %e, "admin change could not be evaluated; denied");
            Problem::new(
                ProblemKind::AccessDenied,
                "the request could not be evaluated against the policies, so it is denied",
            )
            .into_response()
        }
        ControlError::Store(e) => store_problem(e),
        ControlError::Frozen(m) => Problem::new(ProblemKind::ReleaseFrozen, m).into_response(),
        ControlError::Held(m) => Problem::new(ProblemKind::LegalHold, m).into_response(),
        e @ ControlError::NotCovered { .. } => {
            Problem::new(ProblemKind::Conflict, e.to_string()).into_response()
        }
    }
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

/// One resource: v2 wraps it in `{"data": …}`, v1 answers it bare.
fn one(v: ApiVersion, status: StatusCode, data: Value) -> Response {
    let body = match v {
        ApiVersion::V1 => data,
        ApiVersion::V2 => json!({"data": data}),
    };
    (status, axum::Json(body)).into_response()
}

/// Cursor pagination of v2 lists: `limit` (1–1000, default 100) and the opaque `cursor` the
/// previous page returned as `next_cursor`.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items per page, 1 to 1000 (default 100); v2 only.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page; v2 only.
    cursor: Option<String>,
}

fn decode_cursor(c: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix("o:")?
        .parse()
        .ok()
}

fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

/// A list: v1 answers every item; v2 one page with `next_cursor` (null on the last page).
fn list(v: ApiVersion, page: &PageQuery, items: Vec<Value>) -> Response {
    if v == ApiVersion::V1 {
        return axum::Json(Value::Array(items)).into_response();
    }
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Problem::new(
            ProblemKind::InvalidRequest,
            "limit must be between 1 and 1000",
        )
        .into_response();
    }
    let start = match &page.cursor {
        None => 0,
        Some(c) => match decode_cursor(c) {
            Some(o) => o,
            None => {
                return Problem::new(
                    ProblemKind::InvalidRequest,
                    "cursor is not one this API returned; start again without it",
                )
                .into_response()
            }
        },
    };
    let total = items.len();
    let end = start.saturating_add(limit as usize).min(total);
    let data: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    let next = (end < total).then_some(end);
    axum::Json(json!({"data": data, "next_cursor": next.map(encode_cursor)})).into_response()
}

/// A JSON body as `T`; an empty body is `T::default()` when `T` has one worth taking.
fn body<T: DeserializeOwned>(bytes: &Bytes, empty: Option<T>) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(d) = empty {
            return Ok(d);
        }
        return Err(Problem::new(
            ProblemKind::InvalidRequest,
            "the request needs a JSON body",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            ProblemKind::MalformedJson,
            format!("the request body is not what this endpoint takes: {e}"),
        )
    })
}

fn reason(why: &Option<String>, ticket: &Option<String>) -> Result<Reason, Problem> {
    Reason::new(why.as_deref(), ticket.as_deref())
        .map_err(|e| Problem::new(ProblemKind::InvalidRequest, e.to_string()))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(p) => return p.into_response(),
        }
    };
}

#[path = "admin_releases.rs"]
pub(crate) mod releases;

#[path = "admin_lifecycle.rs"]
pub(crate) mod lifecycle;

/// Just the reason, for changes that take nothing else.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    why: Option<String>,
    ticket: Option<String>,
}

/// A wire value as JSON (the wire types serialize infallibly: strings, numbers, lists).
fn wire<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn tenant_json(t: &custos_store::Tenant) -> Value {
    wire(TenantOut {
        id: t.id.clone(),
        name: t.name.clone(),
        regions: t.regions.clone(),
        created_at: format_rfc3339(t.created_at),
    })
}

/// A tenant and its residency.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    responses(
        (status = 200, body = Envelope<TenantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn tenant_show(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
) -> Response {
    match s.store.tenant(&tenant).await {
        Ok(t) => one(v, StatusCode::OK, tenant_json(&t)),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenantBody {
    name: String,
    why: Option<String>,
    ticket: Option<String>,
}

/// Create a tenant (action tenants.manage on the new name).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants",
    request_body(content = NewTenantBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<TenantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn create_tenant(c: Ctx, bytes: Bytes) -> Response {
    let b: NewTenantBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c.s.control.create_tenant(&c.actor, &b.name, &r).await {
        Ok(t) => one(c.version, StatusCode::CREATED, tenant_json(&t.value)),
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegionsBody {
    regions: Vec<String>,
    why: Option<String>,
    ticket: Option<String>,
}

/// Pin the tenant to regions (none: unpinned).
#[utoipa::path(
    tag = "admin",
    put,
    path = "/admin/tenants/{tenant}/regions",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = RegionsBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<TenantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn set_regions(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: RegionsBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .set_tenant_regions(&c.actor, &tenant, &b.regions, &r)
        .await
    {
        Ok(t) => one(c.version, StatusCode::OK, tenant_json(&t.value)),
        Err(e) => control_problem(e),
    }
}

fn key_out(k: &custos_store::KeyRow) -> KeyOut {
    KeyOut {
        id: k.id.clone(),
        prefix: k.prefix.clone(),
        name: k.name.clone(),
        team: k.team.clone(),
        app: k.app.clone(),
        env: k.env.clone(),
        models: k.models.clone(),
        rpm: k.rpm,
        tpm: k.tpm,
        status: k.status(now_ms()).to_owned(),
        created_at: format_rfc3339(k.created_at),
        expires_at: k.expires_at.map(format_rfc3339),
        revoked_at: k.revoked_at.map(format_rfc3339),
        rotated_from: k.rotated_from.clone(),
        roles: k.roles.clone(),
    }
}

fn key_json(k: &custos_store::KeyRow) -> Value {
    wire(key_out(k))
}

/// API keys of the tenant, revoked and expired ones too.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/keys",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery, KeysQuery),
    responses(
        (status = 200, body = Page<KeyOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn keys(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
    AdminQuery(f): AdminQuery<KeysQuery>,
) -> Response {
    let filter = KeyFilter {
        tenant: Some(tenant),
        team: f.team,
        app: f.app,
        include_inactive: true,
    };
    let now = now_ms();
    match s.store.list_keys(&filter).await {
        Ok(l) => list(
            v,
            &page,
            l.iter()
                .filter(|k| f.status.as_deref().is_none_or(|st| k.status(now) == st))
                .map(key_json)
                .collect(),
        ),
        Err(e) => store_problem(e),
    }
}

/// Filters of the key list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct KeysQuery {
    /// Only keys of this team.
    team: Option<String>,
    /// Only keys of this app.
    app: Option<String>,
    /// `active`, `revoked` or `expired`.
    status: Option<String>,
}

/// Filters of the grant list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GrantsQuery {
    /// `pending`, `live`, `denied`, `revoked` or `expired`.
    state: Option<String>,
    /// Only grants held by this principal (`ISSUER#SUBJECT`, a key id, a SPIFFE ID).
    principal: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKeyBody {
    team: String,
    app: String,
    /// `*` or a comma-separated list, or a JSON array of names.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    models: Option<Value>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    /// A lifetime such as "90d".
    expires_in: Option<String>,
    env: Option<String>,
    name: Option<String>,
    /// Roles the key holds in policies (`finops-viewer`, `auditor`, …): only roles the
    /// caller holds itself. None: the built-in `service`.
    roles: Option<Vec<String>>,
    why: Option<String>,
    ticket: Option<String>,
}

/// Mint an API key; the secret is in this answer only.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/keys",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = NewKeyBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<CreatedKeyOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn create_key(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: NewKeyBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    let models = match &b.models {
        None => "*".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(_) => {
            return Problem::new(
                ProblemKind::InvalidRequest,
                "models must be \"*\", a comma-separated string or an array of names",
            )
            .into_response()
        }
    };
    let expires_in_ms = match &b.expires_in {
        None => None,
        Some(d) => match custos_core::duration::parse_duration(d) {
            Ok(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => {
                return Problem::new(ProblemKind::InvalidRequest, format!("expires_in: {e}"))
                    .into_response()
            }
        },
    };
    let req = custos_control::KeyRequest {
        tenant,
        team: b.team,
        app: b.app,
        scope: custos_control::KeyScope {
            models: custos_core::principal::ModelScope::parse(&models).to_list(),
            rpm: b.rpm.filter(|n| *n > 0).map(i64::from),
            tpm: b.tpm.filter(|n| *n > 0).map(i64::from),
            env: b.env.unwrap_or_else(|| "prod".into()),
            expires_in_ms,
            name: b.name,
            roles: b.roles.unwrap_or_default(),
        },
    };
    match c.s.control.create_key(&c.actor, &req, &r).await {
        Ok(k) => {
            refresh_keys(&c.s).await;
            let out = CreatedKeyOut {
                row: key_out(&k.value.key),
                key: k.value.secret,
            };
            one(c.version, StatusCode::CREATED, wire(out))
        }
        Err(e) => control_problem(e),
    }
}

/// Makes a key change visible to this gateway at once, and to the others at once through the
/// shared Redis (else at their next refresh, within a second).
pub(crate) async fn refresh_keys(s: &AppState) {
    if let Some(c) = &s.cluster {
        c.announce(crate::cluster::Topic::Keys);
    }
    if let Err(e) = s.keys.refresh(&s.store).await {
        tracing::warn!(error = %e, "key refresh after an admin change failed");
    }
}

/// Makes a price, budget or override change visible to this gateway at once.
async fn refresh_finops(s: &AppState) {
    if let Some(c) = &s.cluster {
        c.announce(crate::cluster::Topic::Finops);
    }
    if let Err(e) = s.finops.refresh(&s.store).await {
        tracing::warn!(error = %e, "finops refresh after an admin change failed");
    }
}

/// Makes a grant change visible to this gateway at once.
pub(crate) async fn refresh_directory(s: &AppState) {
    if let Some(c) = &s.cluster {
        c.announce(crate::cluster::Topic::Directory);
    }
    if let Err(e) = s.directory.refresh(&s.store).await {
        tracing::warn!(error = %e, "directory refresh after an admin change failed");
    }
}

/// Revoke a key now (needs why by default).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/keys/{id}/revoke",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the object id (or a key's displayed prefix)")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<KeyOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn revoke_key(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    let b: ReasonBody = tri!(body(&bytes, Some(ReasonBody::default())));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .revoke_key(&c.actor, Some(&tenant), &id, &r)
        .await
    {
        Ok(k) => {
            refresh_keys(&c.s).await;
            one(c.version, StatusCode::OK, key_json(&k.value))
        }
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    /// How long the old key keeps working, e.g. "24h" (default: stops now).
    overlap: Option<String>,
    why: Option<String>,
    ticket: Option<String>,
}

/// Issue a successor; the old key stops after the overlap.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/keys/{id}/rotate",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the object id (or a key's displayed prefix)")),
    request_body(content = RotateBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<RotatedKeyOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn rotate_key(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    let b: RotateBody = tri!(body(&bytes, Some(RotateBody::default())));
    let r = tri!(reason(&b.why, &b.ticket));
    let overlap = match &b.overlap {
        None => 0,
        Some(o) => match custos_core::duration::parse_duration(o) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => {
                return Problem::new(ProblemKind::InvalidRequest, format!("overlap: {e}"))
                    .into_response()
            }
        },
    };
    match c
        .s
        .control
        .rotate_key(&c.actor, Some(&tenant), &id, overlap, &r)
        .await
    {
        Ok(k) => {
            refresh_keys(&c.s).await;
            one(
                c.version,
                StatusCode::CREATED,
                wire(RotatedKeyOut {
                    old: key_out(&k.value.old),
                    new: key_out(&k.value.new),
                    key: k.value.secret,
                }),
            )
        }
        Err(e) => control_problem(e),
    }
}

fn team_json(t: &custos_store::Team) -> Value {
    wire(TeamOut {
        id: t.id.clone(),
        name: t.name.clone(),
        rpm: t.rpm,
        tpm: t.tpm,
        created_at: format_rfc3339(t.created_at),
    })
}

/// Teams of the tenant.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/teams",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery),
    responses(
        (status = 200, body = Page<TeamOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn teams(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Response {
    match s.store.list_teams(Some(&tenant)).await {
        Ok(l) => list(v, &page, l.iter().map(team_json).collect()),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamBody {
    name: String,
    rpm: Option<u32>,
    tpm: Option<u32>,
    why: Option<String>,
    ticket: Option<String>,
}

/// Create a team, with optional shared limits.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/teams",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = TeamBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<TeamOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn create_team(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: TeamBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    let lim = |v: Option<u32>| v.filter(|n| *n > 0).map(i64::from);
    match c
        .s
        .control
        .create_team(&c.actor, &tenant, &b.name, lim(b.rpm), lim(b.tpm), &r)
        .await
    {
        Ok(t) => one(c.version, StatusCode::CREATED, team_json(&t.value)),
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsBody {
    /// A number sets the limit; 0 or null clears it; absent keeps it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    tpm: Option<Option<u32>>,
    why: Option<String>,
    ticket: Option<String>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// Set or clear a team's shared limits.
#[utoipa::path(
    tag = "admin",
    patch,
    path = "/admin/tenants/{tenant}/teams/{name}",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("name" = String, Path, description = "the team's or budget's name")),
    request_body(content = LimitsBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<TeamOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn set_team_limits(
    c: Ctx,
    AdminPath((tenant, name)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    let b: LimitsBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    let lim = |v: Option<Option<u32>>| v.map(|v| v.filter(|n| *n > 0).map(i64::from));
    let limits = custos_control::TeamLimits {
        rpm: lim(b.rpm),
        tpm: lim(b.tpm),
    };
    match c
        .s
        .control
        .set_team_limits(&c.actor, &tenant, &name, limits, &r)
        .await
    {
        Ok(t) => one(c.version, StatusCode::OK, team_json(&t.value)),
        Err(e) => control_problem(e),
    }
}

fn app_json(a: &custos_store::App) -> Value {
    wire(AppOut {
        id: a.id.clone(),
        team: a.team.clone(),
        name: a.name.clone(),
        created_at: format_rfc3339(a.created_at),
        tools: a.tools.clone(),
    })
}

/// Apps of the tenant.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/apps",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery),
    responses(
        (status = 200, body = Page<AppOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn apps(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Response {
    match s.store.list_apps(Some(&tenant), None).await {
        Ok(l) => list(v, &page, l.iter().map(app_json).collect()),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppBody {
    team: String,
    name: String,
    why: Option<String>,
    ticket: Option<String>,
}

/// Create an app in a team.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/apps",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = AppBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<AppOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn create_app(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: AppBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .create_app(&c.actor, &tenant, &b.team, &b.name, &r)
        .await
    {
        Ok(a) => one(c.version, StatusCode::CREATED, app_json(&a.value)),
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppToolsBody {
    /// The tools the app uses (every other is refused); `null` withdraws the declaration.
    tools: Option<Vec<String>>,
    why: Option<String>,
    ticket: Option<String>,
}

/// Declare the tools an app's model calls may use.
#[utoipa::path(
    tag = "admin",
    put,
    path = "/admin/tenants/{tenant}/apps/{team}/{app}/tools",
    params(
        ("tenant" = String, Path, description = "the tenant acted on", example = "acme"),
        ("team" = String, Path, description = "the app's team", example = "ml"),
        ("app" = String, Path, description = "the app", example = "chatbot"),
    ),
    request_body(content = AppToolsBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<AppOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn set_app_tools(
    c: Ctx,
    AdminPath((tenant, team, app)): AdminPath<(String, String, String)>,
    bytes: Bytes,
) -> Response {
    let b: AppToolsBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .set_app_tools(&c.actor, &tenant, &team, &app, b.tools, &r)
        .await
    {
        Ok(a) => {
            // This gateway (and its peers) learn the declaration now, not at the next refresh.
            refresh_directory(&c.s).await;
            one(c.version, StatusCode::OK, app_json(&a.value))
        }
        Err(e) => control_problem(e),
    }
}

fn budget_json(b: &custos_finops::budget::Budget) -> Value {
    wire(BudgetOut {
        id: b.id.clone(),
        name: b.name.clone(),
        scope: b.scope.to_string(),
        period: b.period.as_str().to_owned(),
        time_zone: b.time_zone.clone(),
        amount: b.amount.to_string(),
        currency: b.currency.as_str().to_owned(),
        thresholds: b.thresholds.clone(),
        action: b.action.as_str().to_owned(),
    })
}

/// Budgets of the tenant.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/budgets",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery),
    responses(
        (status = 200, body = Page<BudgetOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn budgets(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Response {
    match s.store.budgets(Some(&tenant)).await {
        Ok(l) => list(v, &page, l.iter().map(budget_json).collect()),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetBody {
    name: String,
    /// `tenant`, `team:NAME`, `app:TEAM/APP`, `key:ID` or `tag:KEY=VALUE`.
    scope: String,
    /// `daily`, `weekly`, `monthly`, `quarterly` or `yearly`.
    period: String,
    /// A decimal amount, e.g. "500" or "1250.50".
    amount: String,
    currency: Option<String>,
    thresholds: Option<Vec<u32>>,
    /// `alert` or `block`.
    action: Option<String>,
    time_zone: Option<String>,
    why: Option<String>,
    ticket: Option<String>,
}

fn parsed<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, Problem>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>()
        .map_err(|e| Problem::new(ProblemKind::InvalidRequest, format!("{field}: {e}")))
}

/// Create a budget.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/budgets",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = BudgetBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<BudgetOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn create_budget(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    use custos_finops::budget::{Action, Budget, Scope};
    let b: BudgetBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    let budget = Budget {
        id: String::new(),
        name: b.name,
        tenant,
        scope: tri!(parsed::<Scope>("scope", &b.scope)),
        period: tri!(parsed::<custos_finops::period::PeriodKind>(
            "period", &b.period
        )),
        time_zone: b.time_zone.unwrap_or_default(),
        amount: tri!(parsed::<custos_finops::Amount>("amount", &b.amount)),
        currency: tri!(parsed::<custos_finops::Currency>(
            "currency",
            b.currency.as_deref().unwrap_or("USD")
        )),
        thresholds: b.thresholds.unwrap_or_else(|| vec![50, 80, 100]),
        action: tri!(parsed::<Action>(
            "action",
            b.action.as_deref().unwrap_or("alert")
        )),
    };
    match c.s.control.create_budget(&c.actor, budget, &r).await {
        Ok(b) => {
            refresh_finops(&c.s).await;
            one(c.version, StatusCode::CREATED, budget_json(&b.value))
        }
        Err(e) => control_problem(e),
    }
}

/// Delete a budget (its alert history stays).
#[utoipa::path(
    tag = "admin",
    delete,
    path = "/admin/tenants/{tenant}/budgets/{name}",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("name" = String, Path, description = "the team's or budget's name")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<BudgetOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn delete_budget(
    c: Ctx,
    AdminPath((tenant, name)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    let b: ReasonBody = tri!(body(&bytes, Some(ReasonBody::default())));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .delete_budget(&c.actor, &tenant, &name, &r)
        .await
    {
        Ok(b) => {
            refresh_finops(&c.s).await;
            one(c.version, StatusCode::OK, budget_json(&b.value))
        }
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideBody {
    key: String,
    /// e.g. "2h"; at most 72h.
    duration: String,
    why: Option<String>,
    ticket: Option<String>,
}

/// Let one key spend past its budgets for up to 72h (needs why).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/overrides",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = OverrideBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<OverrideOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn create_override(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    let b: OverrideBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    let d = match custos_core::duration::parse_duration(&b.duration) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            return Problem::new(ProblemKind::InvalidRequest, format!("duration: {e}"))
                .into_response()
        }
    };
    let req = custos_control::NewOverride {
        key: b.key,
        duration_ms: d,
    };
    match c
        .s
        .control
        .create_override(&c.actor, Some(&tenant), &req, &r)
        .await
    {
        Ok(o) => {
            refresh_finops(&c.s).await;
            let o = o.value;
            one(
                c.version,
                StatusCode::CREATED,
                wire(OverrideOut {
                    id: o.id,
                    key: o.key_id,
                    expires_at: format_rfc3339(o.expires_at),
                    why: o.why,
                    created_by: o.created_by,
                }),
            )
        }
        Err(e) => control_problem(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// v1: Unix ms; v2: RFC 3339. Default: 30 days ago.
    since: Option<String>,
    until: Option<String>,
}

fn window_bound(
    v: ApiVersion,
    field: &str,
    value: &Option<String>,
) -> Result<Option<i64>, Problem> {
    let Some(text) = value else { return Ok(None) };
    let parsed = match v {
        ApiVersion::V1 => text.parse::<i64>().ok(),
        ApiVersion::V2 => custos_core::time::parse_rfc3339(text),
    };
    parsed.map(Some).ok_or_else(|| {
        Problem::new(
            ProblemKind::InvalidRequest,
            match v {
                ApiVersion::V1 => format!("{field} must be Unix milliseconds"),
                ApiVersion::V2 => format!("{field} must be an RFC 3339 time"),
            },
        )
    })
}

/// Spend and tokens by team and model.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/usage",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), WindowQuery),
    responses(
        (status = 200, body = Envelope<UsageOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn usage(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(w): AdminQuery<WindowQuery>,
) -> Response {
    let now = now_ms();
    let since = tri!(window_bound(v, "since", &w.since));
    let until = tri!(window_bound(v, "until", &w.until));
    let filter = UsageFilter {
        tenant: Some(tenant),
        team: None,
        app: None,
        key_id: None,
        env: None,
        tags: Vec::new(),
        from_ms: since.unwrap_or(now - 30 * 86_400_000),
        until_ms: until.unwrap_or(now + 1),
    };
    let by = [
        custos_store::Dimension::Team,
        custos_store::Dimension::Model,
    ];
    match s.store.usage_report(&filter, &by, 0).await {
        Ok(rows) => {
            let items: Vec<crate::openapi::UsageRow> = rows
                .iter()
                .map(|r| crate::openapi::UsageRow {
                    team: r.keys.first().cloned(),
                    model: r.keys.get(1).cloned(),
                    calls: r.calls,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cost: r.cost.to_string(),
                })
                .collect();
            match v {
                ApiVersion::V1 => axum::Json(wire(items)).into_response(),
                ApiVersion::V2 => one(
                    v,
                    StatusCode::OK,
                    wire(UsageOut {
                        since: format_rfc3339(filter.from_ms),
                        until: format_rfc3339(filter.until_ms),
                        groups: items,
                    }),
                ),
            }
        }
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Most events returned, newest last (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// v2: add each event's inclusion proof in the latest signed checkpoint.
    proofs: Option<bool>,
    /// Only entries below this ledger index: the previous answer's `next_before`, to read
    /// further back.
    #[param(minimum = 0)]
    before: Option<i64>,
}

/// Ledger entries one request reads at most looking for a tenant's events; past it the
/// answer carries a `next_before` cursor to go on from, so nothing older is hidden.
const AUDIT_SCAN: i64 = 200_000;

/// Whether an event concerns `tenant`: its actor or one of its resources belongs to it.
fn concerns(event: &Value, tenant: &str) -> bool {
    event["actor"]["tenant"] == tenant
        || event["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["tenant"] == tenant))
}

/// The newest `limit` ledger entries below `before` that concern `tenant` and that `keep`
/// accepts, oldest first, with their parsed events; and where to read on from (below the
/// oldest returned when some were left out, else below the oldest entry read; none once the
/// whole ledger was read). Reads backwards in pages, at most `AUDIT_SCAN` entries.
pub(crate) async fn tenant_entries(
    store: &custos_store::Store,
    tenant: &str,
    before: Option<i64>,
    limit: usize,
    keep: impl Fn(&Value) -> bool,
) -> Result<(Vec<(custos_store::LedgerEntry, Value)>, Option<i64>), StoreError> {
    let size = store.ledger_size().await? as i64;
    let mut found: Vec<(custos_store::LedgerEntry, Value)> = Vec::new();
    let mut end = before.map_or(size, |b| b.clamp(0, size));
    const PAGE: i64 = 2_000;
    let mut scanned = 0i64;
    while end > 0 && found.len() < limit && scanned < AUDIT_SCAN {
        let from = (end - PAGE).max(0);
        let page = store.ledger_entries(from, end - from).await?;
        scanned += end - from;
        let mut mine: Vec<_> = page
            .into_iter()
            .filter_map(|e| {
                let ev: Value = serde_json::from_str(&e.event).ok()?;
                (concerns(&ev, tenant) && keep(&ev)).then_some((e, ev))
            })
            .collect();
        mine.append(&mut found);
        found = mine;
        end = from;
    }
    let skip = found.len().saturating_sub(limit);
    let items = found.split_off(skip);
    let next_before = if skip > 0 {
        items.first().map(|(e, _)| e.index)
    } else {
        (end > 0).then_some(end)
    };
    Ok((items, next_before))
}

/// Whether ledger entry `index` concerns `tenant` (for reading one entry of it).
pub(crate) fn entry_concerns(event_text: &str, tenant: &str) -> bool {
    serde_json::from_str::<Value>(event_text).is_ok_and(|ev| concerns(&ev, tenant))
}

/// The tenant's latest ledger events.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/audit",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), AuditQuery),
    responses(
        (status = 200, body = Envelope<AuditOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn audit(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(q): AdminQuery<AuditQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let size = match s.store.ledger_size().await {
        Ok(n) => n as i64,
        Err(e) => return store_problem(e),
    };
    if q.before.is_some_and(|b| b < 0) {
        return Problem::new(
            ProblemKind::InvalidRequest,
            "`before` is a ledger index, 0 or more",
        )
        .into_response();
    }
    let (entries, next_before) =
        match tenant_entries(&s.store, &tenant, q.before, limit, |_| true).await {
            Ok(r) => r,
            Err(e) => return store_problem(e),
        };
    let mut items: Vec<AuditItem> = entries
        .into_iter()
        .map(|(e, ev)| AuditItem {
            index: e.index,
            leaf_hash: e.leaf_hash,
            recorded_at: format_rfc3339(e.recorded_at),
            event: ev,
            proof: q
                .proofs
                .unwrap_or(false)
                .then_some(crate::openapi::InclusionOut {
                    tree_size: 0,
                    event_text: e.event,
                    hashes: Vec::new(),
                }),
        })
        .collect();
    // Personal identifiers are opened for the reader while their subject's key lives (the
    // proofs keep the stored text, which is what the ledger's hashes are of).
    let mut events: Vec<Value> = items.iter_mut().map(|i| i.event.take()).collect();
    if let Err(e) = custos_control::seal::reveal(&s.store, &mut events).await {
        return store_problem(e);
    }
    for (i, e) in items.iter_mut().zip(events) {
        i.event = e;
    }
    let mut checkpoint = None;
    if v == ApiVersion::V2 && q.proofs == Some(true) {
        match proofs(&s.store, &mut items).await {
            Ok(note) => checkpoint = note,
            Err(e) => return store_problem(e),
        }
    }
    match v {
        ApiVersion::V1 => {
            let mut r = axum::Json(wire(
                items
                    .into_iter()
                    .map(|i| crate::openapi::AuditItemV1 {
                        index: i.index,
                        event: i.event,
                    })
                    .collect::<Vec<_>>(),
            ))
            .into_response();
            if let Some(n) = next_before {
                r.headers_mut().insert(
                    "x-custos-next-before",
                    http::HeaderValue::from(n),
                );
            }
            r
        }
        ApiVersion::V2 => one(
            v,
            StatusCode::OK,
            wire(AuditOut {
                ledger_size: size,
                next_before,
                events: items,
                checkpoint,
                proofs: "`custos audit prove --index N` gives an entry's inclusion proof against a signed checkpoint; `custos audit verify-proof` checks it offline".into(),
            }),
        ),
    }
}

/// Fills each item's inclusion proof in the latest signed checkpoint (items past it, or with
/// none signed, get none); returns the checkpoint's note.
async fn proofs(
    store: &custos_store::Store,
    items: &mut [AuditItem],
) -> Result<Option<String>, StoreError> {
    let Some((size, note)) = store.ledger_latest_checkpoint().await? else {
        for i in items.iter_mut() {
            i.proof = None;
        }
        return Ok(None);
    };
    for item in items.iter_mut() {
        let index = u64::try_from(item.index).unwrap_or(u64::MAX);
        if index >= size {
            item.proof = None;
            continue;
        }
        let nodes = store
            .ledger_nodes_at(&custos_ledger::inclusion_positions(index, size))
            .await?;
        let hashes = custos_ledger::inclusion_proof(&nodes, index, size).map_err(|e| {
            StoreError::Invalid(format!(
                "cannot prove entry {index}: {e}; run `custos audit verify`"
            ))
        })?;
        if let Some(p) = item.proof.as_mut() {
            p.tree_size = size;
            p.hashes = hashes.iter().map(hex::encode).collect();
        }
    }
    Ok(Some(note))
}

/// The Cedar policies in force.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/policies",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    responses(
        (status = 200, body = Envelope<Vec<PolicyOut>>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn policies(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
) -> Response {
    match v {
        ApiVersion::V1 => axum::Json(json!(s.authz.policy_ids())).into_response(),
        ApiVersion::V2 => one(
            v,
            StatusCode::OK,
            Value::Array(
                s.authz
                    .policy_ids()
                    .into_iter()
                    .map(|(id, origin)| wire(PolicyOut { id, origin }))
                    .collect(),
            ),
        ),
    }
}

fn grant_json(g: &Grant) -> Value {
    wire(GrantOut {
        id: g.id.clone(),
        principal: g.principal.clone(),
        role: g.role.clone(),
        kind: g.kind.as_str().to_owned(),
        state: g.state(now_ms()).to_owned(),
        why: g.why.clone(),
        duration_ms: g.duration_ms,
        requested_by: g.requested_by.clone(),
        requested_at: format_rfc3339(g.requested_at),
        decided_by: g.decided_by.clone(),
        expires_at: g.expires_at.map(format_rfc3339),
    })
}

/// Grants of the tenant, newest first.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/tenants/{tenant}/grants",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), PageQuery, GrantsQuery),
    responses(
        (status = 200, body = Page<GrantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn grants(
    State(s): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    AdminPath(tenant): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
    AdminQuery(f): AdminQuery<GrantsQuery>,
) -> Response {
    let now = now_ms();
    match s.store.grants_list(Some(&tenant)).await {
        Ok(l) => list(
            v,
            &page,
            l.iter()
                .filter(|g| f.state.as_deref().is_none_or(|st| g.state(now) == st))
                .filter(|g| f.principal.as_deref().is_none_or(|p| g.principal == p))
                .map(grant_json)
                .collect(),
        ),
        Err(e) => store_problem(e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    role: String,
    /// e.g. "60m".
    duration: String,
    why: Option<String>,
    ticket: Option<String>,
}

async fn create_grant(c: Ctx, tenant: String, bytes: Bytes, kind: GrantKind) -> Response {
    let b: GrantBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    let d = match custos_core::duration::parse_duration(&b.duration) {
        Ok(d) => d,
        Err(e) => {
            return Problem::new(ProblemKind::InvalidRequest, format!("duration: {e}"))
                .into_response()
        }
    };
    let req = custos_control::GrantRequest {
        tenant: tenant.clone(),
        principal: None,
        role: b.role,
        duration: d,
        kind,
    };
    match c.s.control.request_grant(&c.actor, &req, &r).await {
        Ok(g) => {
            let g = g.value;
            if kind == GrantKind::BreakGlass {
                // Break-glass always alerts: its ledger event goes to every webhook through
                // the event relay.
                refresh_directory(&c.s).await;
            }
            one(c.version, StatusCode::CREATED, grant_json(&g))
        }
        Err(e) => control_problem(e),
    }
}

/// Ask for a role for a while; another principal approves.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/grants",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = GrantBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<GrantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn request_grant(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    create_grant(c, tenant, bytes, GrantKind::Jit).await
}

/// Take a role now, in an emergency; always alerted.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/grants/break-glass",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme")),
    request_body(content = GrantBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<GrantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn break_glass(
    c: Ctx,
    AdminPath(tenant): AdminPath<String>,
    bytes: Bytes,
) -> Response {
    create_grant(c, tenant, bytes, GrantKind::BreakGlass).await
}

async fn decide(
    c: Ctx,
    tenant: String,
    id: String,
    bytes: Bytes,
    verdict: Option<bool>,
) -> Response {
    let b: ReasonBody = tri!(body(&bytes, Some(ReasonBody::default())));
    let r = tri!(reason(&b.why, &b.ticket));
    let done = match verdict {
        Some(approve) => {
            c.s.control
                .decide_grant(&c.actor, Some(&tenant), &id, approve, &r)
                .await
        }
        None => {
            c.s.control
                .revoke_grant(&c.actor, Some(&tenant), &id, &r)
                .await
        }
    };
    match done {
        Ok(g) => {
            refresh_directory(&c.s).await;
            one(c.version, StatusCode::OK, grant_json(&g.value))
        }
        Err(e) => control_problem(e),
    }
}

/// Approve a pending grant (not your own).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/grants/{id}/approve",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the object id (or a key's displayed prefix)")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<GrantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn approve_grant(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    decide(c, tenant, id, bytes, Some(true)).await
}

/// Deny a pending grant.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/grants/{id}/deny",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the object id (or a key's displayed prefix)")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<GrantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn deny_grant(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    decide(c, tenant, id, bytes, Some(false)).await
}

/// End a grant now.
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/tenants/{tenant}/grants/{id}/revoke",
    params(("tenant" = String, Path, description = "the tenant acted on", example = "acme"), ("id" = String, Path, description = "the object id (or a key's displayed prefix)")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<GrantOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn revoke_grant(
    c: Ctx,
    AdminPath((tenant, id)): AdminPath<(String, String)>,
    bytes: Bytes,
) -> Response {
    decide(c, tenant, id, bytes, None).await
}

/// Every price, by provider, model and date.
#[utoipa::path(
    tag = "admin",
    get,
    path = "/admin/prices",
    params(PageQuery),
    responses(
        (status = 200, body = Page<PriceOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn prices(c: Ctx, AdminQuery(page): AdminQuery<PageQuery>) -> Response {
    let d = match c
        .s
        .control
        .decide(&c.actor, "prices.read", &c.actor.principal.tenant)
    {
        Ok(d) => d,
        Err(e) => return control_problem(e),
    };
    if !d.allowed {
        return Problem::new(
            ProblemKind::AccessDenied,
            format!("prices.read is denied: {}", d.reason()),
        )
        .into_response();
    }
    match c.s.store.prices_all().await {
        Ok(l) => list(
            c.version,
            &page,
            l.iter()
                .map(|p| {
                    wire(PriceOut {
                        provider: p.provider.clone(),
                        model: p.model.clone(),
                        effective_from: format_rfc3339(p.effective_from),
                        currency: p.currency.as_str().to_owned(),
                        rates: wire(&p.rates),
                    })
                })
                .collect(),
        ),
        Err(e) => store_problem(e),
    }
}

/// Set one price (catalog-wide: action prices.manage).
#[utoipa::path(
    tag = "admin",
    post,
    path = "/admin/prices",
    request_body(content = PriceBody, content_type = "application/json"),
    responses(
        (status = 201, body = Envelope<PriceSetOut>, content_type = "application/vnd.custos.v2+json", description = "done"),
        Errors
    )
)]
pub(crate) async fn set_price(c: Ctx, bytes: Bytes) -> Response {
    let b: PriceBody = tri!(body(&bytes, None));
    let r = tri!(reason(&b.why, &b.ticket));
    match c
        .s
        .control
        .set_prices(&c.actor, std::slice::from_ref(&b.price), None, &r)
        .await
    {
        Ok(_) => {
            refresh_finops(&c.s).await;
            one(
                c.version,
                StatusCode::CREATED,
                wire(PriceSetOut {
                    provider: b.price.provider.clone(),
                    model: b.price.model.clone(),
                    effective_from: format_rfc3339(b.price.effective_from),
                }),
            )
        }
        Err(e) => control_problem(e),
    }
}

/// A price: `provider`, `model`, `currency`, `effective_from` (Unix ms) and rates
/// (`input_per_1m`, `output_per_1m`, `cached_input_per_1m`, `per_call`, …), with the reason.
#[derive(Deserialize, ToSchema)]
pub(crate) struct PriceBody {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    price: custos_finops::Price,
    why: Option<String>,
    ticket: Option<String>,
}

/// The errors every admin endpoint may answer, as RFC 9457 problems.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Errors {
    /// The request is malformed or invalid.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemOut),
    /// No credential, or one that is not valid.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemOut),
    /// The policies deny it (recorded in the ledger).
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemOut),
    /// No such object in this tenant.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemOut),
    /// No supported version was asked for in `Accept`.
    #[response(status = 406, content_type = "application/problem+json")]
    NotAcceptable(ProblemOut),
    /// The object exists already, or changed meanwhile.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemOut),
    /// The change must say why (`[audit] require_why`).
    #[response(status = 422, content_type = "application/problem+json")]
    ReasonRequired(ProblemOut),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_selects_the_version() {
        assert_eq!(negotiate_version(None), Ok(ApiVersion::V1));
        assert_eq!(
            negotiate_version(Some("application/json")),
            Ok(ApiVersion::V1)
        );
        assert_eq!(negotiate_version(Some("*/*")), Ok(ApiVersion::V1));
        assert_eq!(negotiate_version(Some(MEDIA_TYPE_V2)), Ok(ApiVersion::V2));
        assert_eq!(negotiate_version(Some(MEDIA_TYPE)), Ok(ApiVersion::V1));
        assert_eq!(
            negotiate_version(Some(
                "application/vnd.custos.v1+json;q=0.5, application/vnd.custos.v2+json"
            )),
            Ok(ApiVersion::V2)
        );
        assert_eq!(
            negotiate_version(Some(
                "application/vnd.custos.v2+json;q=0.2, application/vnd.custos.v1+json"
            )),
            Ok(ApiVersion::V1)
        );
        assert!(negotiate_version(Some("application/vnd.custos.v3+json")).is_err());
        assert!(negotiate_version(Some("text/html")).is_err());
        assert!(negotiate_version(Some("application/vnd.custos.v2+json;q=0")).is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(1234)), Some(1234));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor(""), None);
    }
}
