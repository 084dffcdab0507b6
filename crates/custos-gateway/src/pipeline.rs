//! The gateway's shape in one place: which endpoints exist and which controls each passes,
//! outermost first.

use crate::state::AppState;
use crate::{
    admin, audit, authn, authz, budget, call, guard, idempotency, meter, metrics, pii, proxy,
    quota, request_id, service, tools,
};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;

pub fn router(state: AppState) -> Router {
    build(state, true)
}

/// The same stack without the audit layer, only to measure what evidence costs
/// (`benches/audit_overhead.rs`); the binary never builds it.
#[cfg(feature = "bench-internals")]
pub fn router_without_audit(state: AppState) -> Router {
    build(state, false)
}

fn build(state: AppState, audit: bool) -> Router {
    // Model calls: parse once, screen, dedupe, charge quota, meter, hold budget, forward.
    let model_calls = Router::new()
        .route("/v1/chat/completions", post(proxy::forward))
        .route("/v1/completions", post(proxy::forward))
        .route("/v1/embeddings", post(proxy::forward))
        .route("/v1/responses", post(proxy::forward))
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), quota::headers))
                .layer(from_fn_with_state(state.clone(), call::understand))
                .layer(from_fn_with_state(state.clone(), authz::authorize_call))
                .layer(from_fn_with_state(state.clone(), tools::screen))
                .layer(from_fn_with_state(state.clone(), guard::screen))
                .layer(from_fn_with_state(state.clone(), idempotency::dedupe))
                .layer(from_fn_with_state(state.clone(), quota::enforce))
                .layer(from_fn_with_state(state.clone(), meter::record))
                .layer(from_fn_with_state(state.clone(), budget::enforce)),
        );

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
        .route("/pii/supportedentities", get(pii::supported_entities))
        .layer(from_fn_with_state(state.clone(), authz::authorize_endpoint));

    // The admin API: a tenant's control plane, under the same policies.
    let authenticated = endpoints
        .merge(admin::router(state.clone()))
        .merge(model_calls)
        .layer(from_fn_with_state(state.clone(), authn::authenticate));
    let authenticated = if audit {
        authenticated.layer(from_fn_with_state(state.clone(), audit::record))
    } else {
        authenticated
    };

    let limits = std::sync::Arc::new(crate::overload::RequestLimits::new(
        state.config.server.max_concurrent_requests,
        state.config.server.body_timeout.0,
        state.config.server.body_min_rate,
    ));
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(metrics::exposition))
        .route("/admin/openapi.json", get(crate::openapi::serve))
        .merge(authenticated)
        .fallback(service::not_found)
        .method_not_allowed_fallback(service::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(limits, crate::overload::admit))
                .layer(from_fn(request_id::assign))
                .layer(from_fn_with_state(state.clone(), metrics::observe)),
        )
        .with_state(state)
}
