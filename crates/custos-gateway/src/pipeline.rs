//! The gateway's shape in one place: which endpoints exist and which controls each passes,
//! outermost first.

use crate::stack::{chain, stages, End, Next, Stack, StackLayer, Then};
use crate::state::AppState;
use crate::{
    admin, audit, authn, authz, budget, call, guard, idempotency, meter, metrics, pii, proxy,
    quota, request_id, service, tools,
};
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub fn router(state: AppState) -> Router {
    build(state, true)
}

/// The same stack without the audit layer, only to measure what evidence costs
/// (`benches/audit_overhead.rs`); the binary never builds it.
#[cfg(feature = "bench-internals")]
pub fn router_without_audit(state: AppState) -> Router {
    build(state, false)
}

stages! {
    Observe(AppState) => metrics::observe as "",
    AssignId(Option<Arc<crate::otel::Tracer>>) => request_id::assign as "",
    Admit(Arc<crate::overload::RequestLimits>) => crate::overload::admit as "",
    Record(AppState) => audit::record as "audit",
    Authenticate(AppState) => authn::authenticate as "authn",
    AuthorizeEndpoint(AppState) => authz::authorize_endpoint as "authz",
    QuotaHeaders(AppState) => quota::headers as "quota.headers",
    Understand(AppState) => call::understand as "call.parse",
    AuthorizeCall(AppState) => authz::authorize_call as "authz.call",
    ScreenTools(AppState) => tools::screen as "guard.tools",
    ScreenInjection(AppState) => guard::screen as "guard.screen",
    Dedupe(AppState) => idempotency::dedupe as "idempotency",
    EnforceQuota(AppState) => quota::enforce as "quota",
    Meter(AppState) => meter::record as "meter",
    EnforceBudget(AppState) => budget::enforce as "budget",
}

/// The end of the model-call stack: the call goes upstream.
struct Forward;

impl Next for Forward {
    fn run(&self, req: Request) -> impl std::future::Future<Output = Response> + Send + '_ {
        proxy::forward(req)
    }
}

fn build(state: AppState, audit: bool) -> Router {
    // Model calls: parse once, screen, dedupe, charge quota, meter, hold budget, forward.
    let s = &state;
    let model_call = Stack::new(chain!(
        QuotaHeaders(s.clone()),
        Understand(s.clone()),
        AuthorizeCall(s.clone()),
        ScreenTools(s.clone()),
        ScreenInjection(s.clone()),
        Dedupe(s.clone()),
        EnforceQuota(s.clone()),
        Meter(s.clone()),
        EnforceBudget(s.clone())
        => Forward
    ));
    let handler = move |req: Request| {
        let stack = model_call.clone();
        async move { stack.run(req).await }
    };
    let model_calls = Router::new()
        .route("/v1/chat/completions", post(handler.clone()))
        .route("/v1/completions", post(handler.clone()))
        .route("/v1/embeddings", post(handler.clone()))
        .route("/v1/responses", post(handler));

    // Everything under /v1 needs a principal; model calls, allowed or not, leave evidence.
    // The other endpoints act on the caller's own tenant.
    let endpoints = Router::new()
        .route("/v1/models", get(service::list_models))
        .route("/v1/models/{id}", get(service::get_model))
        .route(
            "/v1/models/{name}/versions/{version}/card",
            get(service::model_card),
        )
        .route("/v1/usage", post(meter::report_jobs))
        .route("/pii/analyze", post(pii::analyze))
        .route("/pii/anonymize", post(pii::anonymize))
        .route("/pii/supportedentities", get(pii::supported_entities));
    // The metrics name every tenant: with `metrics_auth` a scrape needs `metrics.read`.
    let metrics_auth = state.config.server.metrics_auth;
    let endpoints = if metrics_auth {
        endpoints.route("/metrics", get(metrics::exposition))
    } else {
        endpoints
    };
    let endpoints = endpoints.layer(StackLayer({
        let s = state.clone();
        move |end| Then(AuthorizeEndpoint(s.clone()), end)
    }));

    // The admin API: a tenant's control plane, under the same policies.
    let authenticated = endpoints
        .merge(admin::router(state.clone()))
        .merge(model_calls);
    let authenticated = if audit {
        authenticated.layer(StackLayer({
            let s = state.clone();
            move |end| chain!(Record(s.clone()), Authenticate(s.clone()) => end)
        }))
    } else {
        authenticated.layer(StackLayer({
            let s = state.clone();
            move |end| Then(Authenticate(s.clone()), end)
        }))
    };

    let limits = Arc::new(crate::overload::RequestLimits::new(
        state.config.server.max_concurrent_requests,
        state.config.server.body_timeout.0,
        state.config.server.body_min_rate,
    ));
    let inner = Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/admin/openapi.json", get(crate::openapi::serve));
    let inner = if metrics_auth {
        inner
    } else {
        inner.route("/metrics", get(metrics::exposition))
    };
    // The console signs its own sessions (cookies, not bearer credentials) and authorizes
    // each page with the same policies.
    let inner = match &state.console {
        Some(sessions) => inner.merge(crate::console::router(sessions.clone())),
        None => inner,
    };
    let inner = inner
        .merge(authenticated)
        .fallback(service::not_found)
        .method_not_allowed_fallback(service::method_not_allowed)
        .with_state(state.clone());
    // Around routing itself: shed load first, then name and time every request.
    let outer = Stack::new(
        chain!(Admit(limits), AssignId(state.tracer.clone()), Observe(state.clone()) => End(inner)),
    );
    Router::new().fallback_service(outer)
}
