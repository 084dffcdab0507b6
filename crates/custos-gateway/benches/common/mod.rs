//! What the gateway benchmarks share: a gateway on a fresh SQLite file with one key, a
//! typical chat body, and sending one request through a router in process.
#![allow(dead_code)] // each bench uses its own part

use axum::body::Body;
use custos_gateway::Gateway;
use custos_store::testkit::Seed as _;
use custos_store::{NewKey, Store};
use http::Request;
use tower::ServiceExt;

pub const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarize the benefits of rate limiting an AI gateway in two sentences."}],"temperature":0.2}"#;

/// A chat completion request with this key.
pub fn chat_request(key: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(CHAT))
        .unwrap()
}

/// A gateway on a fresh SQLite file with one key; `finops` adds a price for the mock model
/// and three budgets the key's calls are charged to.
pub async fn build(dir: &std::path::Path, finops: bool) -> (Gateway, String) {
    build_with(dir, finops, None).await
}

/// `build`, exporting every call's trace to the OTLP receiver at `otlp` when given.
pub async fn build_with(
    dir: &std::path::Path,
    finops: bool,
    otlp: Option<String>,
) -> (Gateway, String) {
    {
        let store = Store::open(&format!("sqlite://{}", dir.join("bench.db").display()))
            .await
            .unwrap();
        store.ensure_tenant("acme").await.unwrap();
        store.create_team("acme", "ml", None, None).await.unwrap();
        let app = store.create_app("acme", "ml", "bot").await.unwrap();
        let minted = custos_authz::api_key::mint().unwrap();
        store
            .insert_key(&NewKey {
                digest_hex: minted.digest.to_hex(),
                prefix: minted.display_prefix.clone(),
                name: None,
                app_id: app.id,
                env: "prod".into(),
                models: "*".into(),
                rpm: Some(1_000_000_000),
                tpm: Some(1_000_000_000),
                expires_at: None,
                roles: Vec::new(),
            })
            .await
            .unwrap();
        if finops {
            use custos_finops::budget::{Action, Budget, Scope};
            store
                .prices_upsert(&[custos_finops::Price {
                    provider: "mock".into(),
                    model: "gpt-4o-mini".into(),
                    effective_from: 0,
                    currency: custos_finops::Currency::USD,
                    rates: custos_finops::Rates {
                        input_per_1m: "0.15".parse().unwrap(),
                        output_per_1m: "0.6".parse().unwrap(),
                        ..Default::default()
                    },
                }])
                .await
                .unwrap();
            for (i, scope) in ["tenant", "team:ml", "tag:Project=atlas"]
                .iter()
                .enumerate()
            {
                store
                    .budget_create(&Budget {
                        id: format!("bud_{i}"),
                        name: format!("b{i}"),
                        tenant: "acme".into(),
                        scope: scope.parse::<Scope>().unwrap(),
                        period: custos_finops::PeriodKind::Monthly,
                        time_zone: "Europe/Berlin".into(),
                        amount: custos_finops::Amount::from_units(1_000_000_000),
                        currency: custos_finops::Currency::USD,
                        thresholds: vec![70, 90, 100],
                        action: Action::Block,
                    })
                    .await
                    .unwrap();
            }
        }
        let mut config =
            custos_core::Config::from_toml("", std::path::Path::new("bench.toml")).unwrap();
        // CUSTOS_BENCH_DURABILITY=async measures the stack without strict durability's wait.
        if std::env::var("CUSTOS_BENCH_DURABILITY").as_deref() == Ok("async") {
            config.audit.durability = custos_core::config::Durability::Async;
        }
        // CUSTOS_BENCH_INJECTION=off measures the stack without prompt-injection screening
        // (on by default, flagging), to price that default.
        if std::env::var("CUSTOS_BENCH_INJECTION").as_deref() == Ok("off") {
            config.injection.direct = custos_core::config::InjectionAction::Allow;
            config.injection.indirect = custos_core::config::InjectionAction::Allow;
            config.injection.output = custos_core::config::InjectionAction::Allow;
        }
        config.telemetry.otlp_endpoint = otlp;
        let gateway = Gateway::new(config, store).await.unwrap();
        (gateway, minted.secret)
    }
}

/// One request through the router; the response body is read to the end.
pub async fn send(router: axum::Router, req: Request<Body>) -> usize {
    let r = router.oneshot(req).await.unwrap();
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .len()
}
