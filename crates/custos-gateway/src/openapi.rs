//! The admin API's wire types and its OpenAPI 3.1 documents, generated from the handlers'
//! annotations and these types (utoipa): v2 as annotated, v1 derived from it (bare bodies
//! instead of envelopes, its own media type, and the three bodies that differ in v1).

use crate::admin::{MEDIA_TYPE, MEDIA_TYPE_V2};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct TenantOut {
    pub id: String,
    pub name: String,
    /// Regions the tenant's calls may be served from; empty: anywhere.
    pub regions: Vec<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// The displayed prefix (`ck_live_…`); the secret is never shown again.
    pub prefix: String,
    pub name: Option<String>,
    pub team: String,
    pub app: String,
    pub env: String,
    /// `*` or a comma-separated list of model names.
    pub models: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub rotated_from: Option<String>,
    /// Roles the key holds in policies; absent: the built-in `service`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A minted key: its row and, once, its secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyOut {
    #[serde(flatten)]
    pub row: KeyOut,
    /// The secret: shown in this answer only.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct RotatedKeyOut {
    pub old: KeyOut,
    pub new: KeyOut,
    /// The successor's secret: shown in this answer only.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct TeamOut {
    pub id: String,
    pub name: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AppOut {
    pub id: String,
    pub team: String,
    pub name: String,
    pub created_at: String,
    /// The tools the app declared it uses; absent when it never declared any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct BudgetOut {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub period: String,
    pub time_zone: String,
    /// A decimal amount.
    pub amount: String,
    pub currency: String,
    pub thresholds: Vec<u32>,
    /// `alert` or `block`.
    pub action: String,
}

#[derive(Serialize, ToSchema)]
pub struct OverrideOut {
    pub id: String,
    pub key: String,
    pub expires_at: String,
    pub why: String,
    pub created_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct UsageRow {
    pub team: Option<String>,
    pub model: Option<String>,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// A decimal amount in the prices' currency.
    pub cost: String,
}

#[derive(Serialize, ToSchema)]
pub struct UsageOut {
    pub since: String,
    pub until: String,
    pub groups: Vec<UsageRow>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditItem {
    pub index: i64,
    pub leaf_hash: String,
    pub recorded_at: String,
    /// The event as recorded (OCSF-shaped JSON).
    #[schema(value_type = Object)]
    pub event: Value,
    /// With `?proofs=true`: the entry's inclusion proof in the latest signed checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<InclusionOut>,
}

/// An inclusion proof (RFC 9162): `leaf_hash` = SHA-256(0x00 ‖ `event_text`), and the audit
/// path `hashes` lead from it to the root of the checkpoint of `tree_size`.
#[derive(Serialize, ToSchema)]
pub struct InclusionOut {
    pub tree_size: u64,
    /// The event's exact bytes, as hashed.
    pub event_text: String,
    /// Hex SHA-256 hashes, leaf to root.
    pub hashes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    pub ledger_size: i64,
    /// More of the tenant's events may lie below this ledger index: ask again with
    /// `?before=` it. Null once the whole ledger was read.
    pub next_before: Option<i64>,
    pub events: Vec<AuditItem>,
    /// With `?proofs=true`: the signed checkpoint (C2SP signed note) the proofs lead to;
    /// null when none is signed yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// How to get an inclusion proof for an index.
    pub proofs: String,
}

/// v1's audit item.
#[derive(Serialize, ToSchema)]
pub struct AuditItemV1 {
    pub index: i64,
    #[schema(value_type = Object)]
    pub event: Value,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyOut {
    pub id: String,
    /// Where the policy was written (`file:line`).
    pub origin: String,
}

#[derive(Serialize, ToSchema)]
pub struct GrantOut {
    pub id: String,
    pub principal: String,
    pub role: String,
    /// `jit` or `break_glass`.
    pub kind: String,
    pub state: String,
    pub why: String,
    pub duration_ms: i64,
    pub requested_by: String,
    pub requested_at: String,
    pub decided_by: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PriceOut {
    pub provider: String,
    pub model: String,
    pub effective_from: String,
    pub currency: String,
    /// Rates per 1M tokens, per call, per image, per second, per hour.
    #[schema(value_type = Object)]
    pub rates: Value,
}

#[derive(Serialize, ToSchema)]
pub struct PriceSetOut {
    pub provider: String,
    pub model: String,
    pub effective_from: String,
}

/// v2's envelope of one resource.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T: ToSchema> {
    pub data: T,
}

/// v2's page of a list; follow `next_cursor` (null on the last page).
#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An RFC 9457 problem, as every error of custos is answered.
#[derive(Serialize, ToSchema)]
pub struct ProblemOut {
    /// A stable URI per kind of error (docs/problems.md).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "custos admin API",
        description = "A tenant's control plane. Versions by media type: send `Accept: application/vnd.custos.v2+json`. Every change is authorized by the Cedar policies and recorded in the audit ledger with its `why` and `ticket`.",
        version = "2"
    ),
    paths(
        crate::admin::create_tenant,
        crate::admin::tenant_show,
        crate::admin::set_regions,
        crate::admin::keys,
        crate::admin::create_key,
        crate::admin::revoke_key,
        crate::admin::rotate_key,
        crate::admin::teams,
        crate::admin::create_team,
        crate::admin::set_team_limits,
        crate::admin::apps,
        crate::admin::create_app,
        crate::admin::set_app_tools,
        crate::admin::budgets,
        crate::admin::create_budget,
        crate::admin::delete_budget,
        crate::admin::create_override,
        crate::admin::usage,
        crate::admin::audit,
        crate::admin::policies,
        crate::admin::grants,
        crate::admin::request_grant,
        crate::admin::break_glass,
        crate::admin::approve_grant,
        crate::admin::deny_grant,
        crate::admin::revoke_grant,
        crate::admin::prices,
        crate::admin::set_price,
        crate::admin::releases::releases,
        crate::admin::releases::release_show,
        crate::admin::releases::release_proof,
        crate::admin::releases::approve_release,
        crate::admin::releases::deny_release,
        crate::admin::releases::promote_release,
        crate::admin::releases::check_release,
        crate::admin::releases::rollback,
        crate::admin::releases::slo,
        crate::admin::lifecycle::lineage,
        crate::admin::lifecycle::add_lineage,
        crate::admin::lifecycle::holds,
        crate::admin::lifecycle::place_hold,
        crate::admin::lifecycle::release_hold,
        crate::admin::lifecycle::erasures,
        crate::admin::lifecycle::erase,
        crate::admin::lifecycle::erasure_receipt,
    ),
    components(schemas(ProblemOut)),
    tags((name = "admin", description = "A tenant's control plane")),
    modifiers(&BearerAuth)
)]
struct ApiV2;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A custos API key (ck_live_…), or a JWT of a configured issuer",
                    ))
                    .build(),
            ),
        );
        api.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI 3.1 document of `version` (1 or 2), as JSON.
pub fn document(version: u8) -> Value {
    let v2 = serde_json::to_value(ApiV2::openapi()).unwrap_or(Value::Null);
    match version {
        1 => to_v1(v2),
        _ => v2,
    }
}

/// v1 from v2: v1's media type, bodies without their envelope (a page is a bare array), the
/// deprecation headers, and the three reads whose v1 bodies differ.
fn to_v1(mut doc: Value) -> Value {
    use utoipa::PartialSchema;
    doc["info"]["version"] = "1".into();
    doc["info"]["description"] = format!(
        "Deprecated: use v2 (`Accept: {MEDIA_TYPE_V2}`). v1 answers until its Sunset date; every v1 answer carries `Deprecation`, `Sunset` and a `Link` to the migration notes."
    )
    .into();
    let schemas = doc["components"]["schemas"].clone();
    let usage_v1 = serde_json::to_value(Vec::<UsageRow>::schema()).unwrap_or(Value::Null);
    let audit_v1 = serde_json::to_value(Vec::<AuditItemV1>::schema()).unwrap_or(Value::Null);
    let policies_v1 = serde_json::json!({"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, ops) in paths.iter_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (_, op) in ops.iter_mut() {
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            for (status, r) in responses.iter_mut() {
                let Some(content) = r["content"].as_object_mut() else {
                    continue;
                };
                if let Some(mut media) = content.remove(MEDIA_TYPE_V2) {
                    let schema = media["schema"].take();
                    let bare = if path.ends_with("/usage") && status == "200" {
                        usage_v1.clone()
                    } else if path.ends_with("/audit") && status == "200" {
                        audit_v1.clone()
                    } else if path.ends_with("/policies") && status == "200" {
                        policies_v1.clone()
                    } else {
                        unwrap_envelope(&schema, &schemas)
                    };
                    media["schema"] = bare;
                    content.insert(MEDIA_TYPE.into(), media);
                }
                if status.starts_with('2') {
                    r["headers"] = serde_json::json!({
                        "Deprecation": {"description": "When v1 was deprecated (RFC 9745)", "schema": {"type": "string"}},
                        "Sunset": {"description": "When v1 stops answering (RFC 8594)", "schema": {"type": "string"}},
                        "Link": {"description": "The migration notes (rel=\"deprecation\")", "schema": {"type": "string"}}
                    });
                }
            }
        }
    }
    doc
}

/// The schema inside a v2 envelope: `data` of an object, as is for an array (a page).
fn unwrap_envelope(schema: &Value, schemas: &Value) -> Value {
    let resolved = match schema["$ref"].as_str() {
        Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
        None => schema.clone(),
    };
    match resolved["properties"].get("data") {
        Some(data) => data.clone(),
        None => schema.clone(),
    }
}

/// `GET /admin/openapi.json?version=1|2` (default 2); no credential needed.
pub async fn serve(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let version = match q.get("version").map(String::as_str) {
        None | Some("2") => 2,
        Some("1") => 1,
        Some(other) => {
            return crate::problem::Problem::new(
                crate::problem::ProblemKind::NotAcceptable,
                format!(
                    "version {} is not served; ask for 1 or 2",
                    crate::problem::prefix(other, 32)
                ),
            )
            .into_response()
        }
    };
    axum::Json(document(version)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_document_every_admin_operation() {
        for v in [1u8, 2] {
            let doc = document(v);
            assert_eq!(doc["openapi"], "3.1.0");
            let paths = doc["paths"].as_object().unwrap();
            let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
            assert_eq!(ops, 45, "v{v}");
            let media = if v == 1 { MEDIA_TYPE } else { MEDIA_TYPE_V2 };
            let keys = &paths["/admin/tenants/{tenant}/keys"]["get"]["responses"]["200"];
            let schema = &keys["content"][media]["schema"];
            assert!(!schema.is_null(), "v{v}: {keys}");
            if v == 1 {
                assert_eq!(schema["type"], "array", "{schema}");
                assert!(keys["headers"]["Sunset"].is_object());
            }
        }
    }
}
