//! Endpoints that are not model calls: `/v1/models` (what this key may use), `/healthz`
//! (the process is up), `/readyz` (the store answers and keys are fresh), and fallbacks.

use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use custos_core::principal::SharedPrincipal;
use serde_json::{json, Value};

fn model_object(model: &str, owner: &str) -> Value {
    json!({"id": model, "object": "model", "created": 0, "owned_by": owner})
}

/// `GET /v1/models`: the routed models this key may call.
pub async fn list_models(State(state): State<AppState>, req: Request) -> Response {
    let Some(p) = req.extensions().get::<SharedPrincipal>() else {
        return Problem::new(ProblemKind::Internal, "models listed before authn").into_response();
    };
    let data: Vec<Value> = state
        .routes
        .iter()
        .filter(|r| p.models.allows(&r.model))
        .map(|r| model_object(&r.model, r.provider.name()))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let Some(p) = req.extensions().get::<SharedPrincipal>() else {
        return Problem::new(ProblemKind::Internal, "model read before authn").into_response();
    };
    match state.routes.get(&id) {
        Some(r) if p.models.allows(&r.model) => {
            Json(model_object(&r.model, r.provider.name())).into_response()
        }
        Some(_) => Problem::new(
            ProblemKind::ModelNotAllowed,
            format!("this API key may not use the model {id:?}"),
        )
        .into_response(),
        None => Problem::new(
            ProblemKind::ModelNotFound,
            format!("the model {id:?} is not served by this gateway"),
        )
        .into_response(),
    }
}

/// `GET /v1/models/{name}/versions/{version}/card`: the signed model card snapshot of a
/// registry entry, as HTML (`Accept: text/html`) or JSON, with its digest and signature in
/// headers (`X-Custos-Card-Digest`, `X-Custos-Card-Signature`: the base64 DSSE envelope).
pub async fn model_card(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    use base64::Engine as _;
    let entry = match state.store.model_version(&name, &version).await {
        Ok(e) => e,
        Err(custos_store::StoreError::NotFound(_)) => {
            return Problem::new(
                ProblemKind::NotFound,
                format!(
                    "{}@{} is not in the model registry",
                    crate::problem::prefix(&name, 128),
                    crate::problem::prefix(&version, 128)
                ),
            )
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the model registry failed");
            return Problem::new(
                ProblemKind::NotReady,
                "the model registry cannot be read now",
            )
            .into_response();
        }
    };
    let (Some(text), Some(digest), Some(signature)) =
        (&entry.card, &entry.card_digest, &entry.card_signature)
    else {
        return Problem::new(
            ProblemKind::NotFound,
            format!(
                "{name}@{version} has no signed model card (custos models card sign attaches one)"
            ),
        )
        .into_response();
    };
    let card = match custos_govern::models::card::Card::parse(text) {
        Ok(c) => c,
        Err(p) => {
            return Problem::new(
                ProblemKind::Internal,
                format!(
                    "the stored card does not parse: line {}: {}",
                    p.line, p.message
                ),
            )
            .into_response()
        }
    };
    let html = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let mut response = if html {
        (
            [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            custos_govern::models::card::render_html(&card, &format!("{name} {version}")),
        )
            .into_response()
    } else {
        Json(json!({
            "model": name, "version": version, "state": entry.state,
            "manifest_digest": entry.manifest_digest.as_ref().map(|d| format!("sha256:{d}")),
            "card_digest": format!("sha256:{digest}"),
            "metadata": card.front,
            "markdown": text,
            "signature": serde_json::from_str::<Value>(signature).unwrap_or(Value::Null),
        }))
        .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&format!("sha256:{digest}")) {
        h.insert("x-custos-card-digest", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(
        &base64::engine::general_purpose::STANDARD.encode(signature.as_bytes()),
    ) {
        h.insert("x-custos-card-signature", v);
    }
    h.insert(http::header::VARY, http::HeaderValue::from_static("accept"));
    response
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let stale_after = state.config.server.key_refresh_interval.0.as_millis() as i64 * 10 + 5_000;
    let age = custos_core::time::now_ms() - state.keys.last_refresh_ms();
    let db = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    let redis = match &state.cluster {
        None => None,
        Some(c) => Some((c.ready().await, c.modes)),
    };
    if let Some((false, modes)) = redis {
        if modes.any_fail_closed() {
            return Problem::new(ProblemKind::NotReady, "the shared Redis does not answer, and [cluster] on_redis_error = \"fail_closed\" refuses calls until it does").into_response();
        }
    }
    let redis = redis.map(|(up, _)| {
        if up {
            "ready"
        } else {
            "unavailable: shared state falls back per [cluster] on_redis_error until it answers"
        }
    });
    match db {
        Ok(Ok(())) if age <= stale_after => {
            Json(json!({"status": "ready", "database": state.store.backend().as_str(), "keys": state.keys.len(), "redis": redis})).into_response()
        }
        Ok(Ok(())) => Problem::new(ProblemKind::NotReady, format!("the key index was last refreshed {age} ms ago")).into_response(),
        Ok(Err(e)) => Problem::new(ProblemKind::NotReady, format!("the database does not answer: {e}")).into_response(),
        Err(_) => Problem::new(ProblemKind::NotReady, "the database did not answer within 2s").into_response(),
    }
}

pub async fn not_found() -> Response {
    Problem::new(ProblemKind::NotFound, "no such endpoint; custos serves /v1/chat/completions, /v1/responses, /v1/completions, /v1/embeddings and /v1/models").into_response()
}

pub async fn method_not_allowed() -> Response {
    Problem::new(
        ProblemKind::MethodNotAllowed,
        "this endpoint does not accept that method",
    )
    .into_response()
}
