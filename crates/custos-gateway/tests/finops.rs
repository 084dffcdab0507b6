//! Metering, budgets and alerts end to end: real HTTP over loopback, a provider played by a
//! local server that reports cached and reasoning tokens, real SQLite and PostgreSQL.

mod common;

use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use custos_finops::budget::{Action, Budget, Scope};
use custos_finops::{Amount, Currency, PeriodKind, Price, Rates};
use custos_store::testkit::Seed as _;
use custos_store::{Dimension, UsageFilter};
use serde_json::{json, Value};

fn a(s: &str) -> Amount {
    s.parse().unwrap()
}

/// A provider that reports 1200 prompt tokens (1000 of them cached) and 300 completion tokens
/// (100 of them reasoning), streamed or not; streams carry usage only when asked for.
async fn provider() -> std::net::SocketAddr {
    upstream(Router::new().route(
        "/v1/chat/completions",
        post(|Json(body): Json<Value>| async move {
            let usage = json!({"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1000},
                "completion_tokens_details": {"reasoning_tokens": 100}});
            if body["stream"] == true {
                let mut sse = String::new();
                sse.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n");
                if body["stream_options"]["include_usage"] == true {
                    sse.push_str(&format!("data: {}\n\n", json!({"id":"c1","object":"chat.completion.chunk","choices":[],"usage":usage})));
                }
                sse.push_str("data: [DONE]\n\n");
                ([("content-type", "text/event-stream")], sse).into_response()
            } else {
                let body = json!({"id":"c1","object":"chat.completion","model":"m",
                    "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                    "usage": usage});
                ([("content-type", "application/json")], body.to_string()).into_response()
            }
        }),
    ))
    .await
}

fn price() -> Price {
    Price {
        provider: "up".into(),
        model: "m-upstream".into(),
        effective_from: 0,
        currency: Currency::USD,
        rates: Rates {
            input_per_1m: a("2.50"),
            cached_input_per_1m: Some(a("1.25")),
            output_per_1m: a("10"),
            ..Rates::default()
        },
    }
}

/// 200 uncached × 2.5 + 1000 cached × 1.25 + 300 output × 10, per million.
const CALL_COST: &str = "0.00475";

fn budget(amount: &str, action: Action) -> Budget {
    Budget {
        id: custos_core::id::new_id("bud"),
        name: "ml".into(),
        tenant: "acme".into(),
        scope: Scope::Team("ml".into()),
        period: PeriodKind::Monthly,
        time_zone: "UTC".into(),
        amount: a(amount),
        currency: Currency::USD,
        thresholds: vec![70, 90, 100],
        action,
    }
}

fn month_filter() -> UsageFilter {
    UsageFilter {
        tenant: Some("acme".into()),
        from_ms: 0,
        until_ms: i64::MAX,
        ..UsageFilter::default()
    }
}

#[tokio::test]
async fn calls_are_metered_exactly_streamed_or_not() {
    let addr = provider().await;
    for db in databases("calls_are_metered_exactly").await {
        let gw = start(&db, &upstream_config(addr, "m", "region = \"eu-west\"")).await;
        gw.store.prices_upsert(&[price()]).await.unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let (key, key_id) = gw.key(KeySpec::default()).await;
        let r = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .header("x-custos-tags", "Project=atlas, Env=prod")
            .json(&chat("m", "hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", db.name);
        let mut streamed = chat("m", "hello");
        streamed["stream"] = json!(true);
        let text = gw
            .post("/v1/chat/completions", &key, &streamed)
            .await
            .text()
            .await
            .unwrap();
        // custos asked for usage; the client did not, so it never sees the usage event.
        assert!(!text.contains("\"usage\""), "{text}");
        assert!(text.contains("[DONE]"));
        gw.state.finops.usage.flush().await;
        let rows = gw
            .store
            .usage_report(&month_filter(), &[Dimension::Tag("Project".into())], 0)
            .await
            .unwrap();
        let total: Amount = rows
            .iter()
            .fold(Amount::ZERO, |s, r| s.saturating_add(r.cost));
        assert_eq!(total, a("0.0095"), "{}: two calls at {CALL_COST}", db.name);
        let atlas = rows.iter().find(|r| r.keys[0] == "atlas").unwrap();
        assert_eq!(atlas.cost, a(CALL_COST), "{}", db.name);
        for r in &rows {
            assert_eq!(
                (
                    r.input_tokens,
                    r.cached_input_tokens,
                    r.output_tokens,
                    r.reasoning_tokens
                ),
                (200, 1000, 200, 100),
                "{}",
                db.name
            );
        }
        // The same spend as metrics: tokens by class, calls and cost per tenant, app, model.
        let metrics = gw.metrics().await;
        let l = "tenant=\"acme\",app=\"bot\",model=\"m\"";
        for line in [
            format!("custos_tokens_total{{{l},class=\"input\"}} 400"),
            format!("custos_tokens_total{{{l},class=\"cached_input\"}} 2000"),
            format!("custos_tokens_total{{{l},class=\"output\"}} 400"),
            format!("custos_tokens_total{{{l},class=\"reasoning\"}} 200"),
            format!("custos_metered_calls_total{{{l}}} 2"),
            format!("custos_cost_total{{{l},currency=\"USD\"}} 0.0095"),
            "custos_request_duration_seconds_count{route=\"/v1/chat/completions\",tenant=\"acme\"} 2".to_owned(),
            format!("custos_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(metrics.lines().any(|m| m == line), "{}: no {line} in\n{metrics}", db.name);
        }
        let by_key = gw
            .store
            .usage_report(
                &month_filter(),
                &[Dimension::Key, Dimension::Region, Dimension::Model],
                0,
            )
            .await
            .unwrap();
        assert_eq!(
            by_key[0].keys,
            vec![key_id, "eu-west".into(), "m".into()],
            "{}",
            db.name
        );
        assert_eq!(by_key[0].calls, 2);
        // A malformed tag header is refused before anything is spent.
        let bad = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .header("x-custos-tags", "no-equals-sign")
            .json(&chat("m", "hello"))
            .send()
            .await
            .unwrap();
        expect_problem(bad, 400, "invalid-request").await;
    }
}

#[tokio::test]
async fn blocking_budget_refuses_and_each_threshold_alerts_once() {
    let addr = provider().await;
    let (hook, seen) = common::webhook_receiver().await;
    std::env::set_var("CUSTOS_TEST_HOOK_SECRET", "s3cret"); // custos:allow (test-only)
    for db in databases("blocking_budget").await {
        seen.lock().unwrap().clear();
        let toml = format!(
            "{}\n[finops]\nrefresh_interval = \"100ms\"\n[[finops.webhooks]]\nurl = \"http://{hook}/hook\"\nsecret_env = \"CUSTOS_TEST_HOOK_SECRET\"\n",
            upstream_config(addr, "m", "")
        );
        let gw = start(&db, &toml).await;
        gw.store.prices_upsert(&[price()]).await.unwrap();
        // Room for four calls at their estimate (200+1000 prompt... counted by custos as a
        // handful of tokens, plus max_tokens 300 of output): the true cost is higher than
        // the estimate here, so the budget is checked against real spend too.
        gw.store
            .budget_create(&budget("0.019", Action::Block))
            .await
            .unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let (key, _) = gw.key(KeySpec::default()).await;
        let mut body = chat("m", "hello");
        body["max_tokens"] = json!(300);
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let r = gw.post("/v1/chat/completions", &key, &body).await;
            statuses.push(r.status().as_u16());
            if r.status() == 402 {
                let p = expect_problem(r, 402, "budget-exhausted").await;
                assert!(p["detail"].as_str().unwrap().contains("\"ml\""), "{p}");
            } else {
                r.bytes().await.unwrap();
            }
        }
        assert_eq!(statuses, vec![200, 200, 200, 200, 402, 402], "{}", db.name);
        gw.state.finops.usage.flush().await;
        // Alerts are claimed asynchronously; wait for the three of them.
        let b = &gw.store.budgets(Some("acme")).await.unwrap()[0];
        let w = custos_finops::period::window(
            PeriodKind::Monthly,
            &jiff::tz::TimeZone::UTC,
            custos_core::time::now_ms(),
        )
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let fired = gw
                .store
                .budget_alerts_fired(&b.id, w.start_ms)
                .await
                .unwrap();
            if fired == vec![70, 90, 100] && seen.lock().unwrap().len() == 3 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: fired {fired:?}",
                db.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        for (sig, body) in seen.lock().unwrap().iter() {
            let (t, v1) = sig
                .strip_prefix("t=")
                .and_then(|s| s.split_once(",v1="))
                .expect("signature header");
            let expected =
                custos_gateway::webhook::signature(b"s3cret", t.parse().unwrap(), body.as_bytes());
            assert_eq!(expected, format!("t={t},v1={v1}"));
            let alert: Value = serde_json::from_str(body).unwrap();
            assert_eq!(alert["specversion"], "1.0");
            assert_eq!(alert["type"], "dev.custos.budget.threshold");
            assert_eq!(alert["data"]["activity"], "budget.threshold");
            // The id is the alert's, as raised: a repeat from another path is recognised.
            assert_eq!(alert["id"], alert["data"]["detail"]["id"]);
        }
        gw.state.audit.flush().await;
        let events = gw.store.ledger_entries(0, 1000).await.unwrap();
        let thresholds = events
            .iter()
            .filter(|e| e.event.contains("\"budget.threshold\""))
            .count();
        assert_eq!(thresholds, 3, "{}", db.name);
    }
}

#[tokio::test]
async fn concurrent_calls_overspend_by_no_more_than_their_estimates() {
    let addr = provider().await;
    for db in databases("concurrent_budget").await {
        let gw = start(&db, &upstream_config(addr, "m", "")).await;
        // Priced so the estimate (prompt at input rate + max_tokens at output rate) covers
        // the true cost: output only, and max_tokens equal to the reported completion.
        let mut p = price();
        p.rates = Rates {
            output_per_1m: a("10"),
            ..Rates::default()
        };
        gw.store.prices_upsert(&[p]).await.unwrap();
        gw.store
            .budget_create(&budget("0.03", Action::Block))
            .await
            .unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let (key, _) = gw.key(KeySpec::default()).await;
        let mut body = chat("m", "hello");
        body["max_tokens"] = json!(300);
        let mut calls = Vec::new();
        for _ in 0..40 {
            let gw_client = gw.client.clone();
            let url = format!("{}/v1/chat/completions", gw.base);
            let key = key.clone();
            let body = body.clone();
            calls.push(tokio::spawn(async move {
                let r = gw_client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let s = r.status().as_u16();
                r.bytes().await.unwrap();
                s
            }));
        }
        let mut ok = 0;
        for c in calls {
            match c.await.unwrap() {
                200 => ok += 1,
                402 => {}
                s => panic!("unexpected status {s}"),
            }
        }
        gw.state.finops.usage.flush().await;
        let spent = gw
            .store
            .usage_report(&month_filter(), &[], 0)
            .await
            .unwrap()[0]
            .cost;
        // Each call costs 300 × 10 / 10⁶ = 0.003: exactly ten fit.
        assert_eq!(ok, 10, "{}", db.name);
        assert!(spent <= a("0.03"), "{}: spent {spent}", db.name);
    }
}

#[tokio::test]
async fn thresholds_fire_once_across_a_restart() {
    let addr = provider().await;
    for db in databases("thresholds_restart").await {
        let toml = upstream_config(addr, "m", "");
        let b = budget("0.01", Action::Alert);
        {
            let gw = start(&db, &toml).await;
            gw.store.prices_upsert(&[price()]).await.unwrap();
            gw.store.budget_create(&b).await.unwrap();
            gw.state.finops.refresh(&gw.store).await.unwrap();
            let (key, _) = gw.key(KeySpec::default()).await;
            // 2 × 0.00475 = 0.0095: past 70% and 90%.
            for _ in 0..2 {
                gw.post("/v1/chat/completions", &key, &chat("m", "hi"))
                    .await
                    .bytes()
                    .await
                    .unwrap();
            }
            gw.state.finops.usage.flush().await;
            wait_for_alerts(&gw, &b.id, 2).await;
        }
        // A new process on the same database: the spend and the fired thresholds carry over.
        let gw = start(&db, &toml).await;
        let (key, _) = gw.key(KeySpec::default()).await;
        gw.post("/v1/chat/completions", &key, &chat("m", "hi"))
            .await
            .bytes()
            .await
            .unwrap();
        gw.state.finops.usage.flush().await;
        wait_for_alerts(&gw, &b.id, 3).await;
        gw.state.finops.refresh(&gw.store).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        gw.state.audit.flush().await;
        let events = gw.store.ledger_entries(0, 1000).await.unwrap();
        let count = |pct: &str| {
            events
                .iter()
                .filter(|e| {
                    e.event.contains("\"budget.threshold\"")
                        && e.event.contains(&format!("\"{pct}% of"))
                })
                .count()
        };
        assert_eq!(
            (count("70"), count("90"), count("100")),
            (1, 1, 1),
            "{}",
            db.name
        );
    }
}

/// Holds keep a blocking budget's spend from ever reaching its amount when estimates are
/// exact, so the 100% alert fires when a call is refused for it, once.
#[tokio::test]
async fn a_refusal_fires_the_100_percent_alert_that_spend_never_reaches() {
    let addr = provider().await;
    for db in databases("refusal_alerts").await {
        let gw = start(&db, &upstream_config(addr, "m", "")).await;
        let mut p = price();
        p.rates = Rates {
            per_call: a("1"),
            ..Rates::default()
        };
        gw.store.prices_upsert(&[p]).await.unwrap();
        // $2.50 at exactly $1 a call: two calls, then $2 spent and a refusal.
        let b = budget("2.50", Action::Block);
        gw.store.budget_create(&b).await.unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let (key, _) = gw.key(KeySpec::default()).await;
        let body = chat("m", "hello");
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let r = gw.post("/v1/chat/completions", &key, &body).await;
            statuses.push(r.status().as_u16());
            r.bytes().await.unwrap();
        }
        assert_eq!(statuses, vec![200, 200, 402, 402], "{}", db.name);
        wait_for_alerts(&gw, &b.id, 2).await;
        let w = custos_finops::period::window(
            PeriodKind::Monthly,
            &jiff::tz::TimeZone::UTC,
            custos_core::time::now_ms(),
        )
        .unwrap();
        assert_eq!(
            gw.store
                .budget_alerts_fired(&b.id, w.start_ms)
                .await
                .unwrap(),
            vec![70, 100],
            "{}: 80% spent fires 70, the refusal fires 100, 90% is never spent",
            db.name
        );
    }
}

async fn wait_for_alerts(gw: &TestGateway, budget_id: &str, n: usize) {
    let w = custos_finops::period::window(
        PeriodKind::Monthly,
        &jiff::tz::TimeZone::UTC,
        custos_core::time::now_ms(),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gw
        .store
        .budget_alerts_fired(budget_id, w.start_ms)
        .await
        .unwrap()
        .len()
        < n
    {
        assert!(std::time::Instant::now() < deadline, "alerts never fired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn jobs_report_usage_with_mandatory_tags() {
    for db in databases("jobs_report_usage").await {
        let toml = "[finops]\nmandatory_tags = [\"Project\", \"CostCenter\"]\n";
        let gw = start(&db, toml).await;
        gw.store
            .prices_upsert(&[Price {
                provider: "aws".into(),
                model: "p4d.24xlarge".into(),
                effective_from: 0,
                currency: Currency::USD,
                rates: Rates {
                    per_hour: a("32.77"),
                    ..Rates::default()
                },
            }])
            .await
            .unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let (key, _) = gw.key(KeySpec::default()).await;
        let missing = gw
            .post(
                "/v1/usage",
                &key,
                &json!({"gpu_type": "a100", "gpu_hours": 1, "tags": {"Project": "atlas"}}),
            )
            .await;
        let p = expect_problem(missing, 400, "invalid-request").await;
        assert!(p["detail"].as_str().unwrap().contains("CostCenter"), "{p}");
        let garbage = gw.post_raw("/v1/usage", &key, "{\"gpu_hours\": ").await;
        let p = expect_problem(garbage, 400, "malformed-json").await;
        assert!(p["detail"].as_str().unwrap().contains("line 1"), "{p}");
        let huge = gw
            .post_raw("/v1/usage", &key, vec![b' '; 5 * 1024 * 1024])
            .await;
        expect_problem(huge, 413, "body-too-large").await;
        let not_object = gw.post("/v1/usage", &key, &json!(42)).await;
        expect_problem(not_object, 400, "invalid-request").await;
        let wrong_type = gw
            .post("/v1/usage", &key, &json!({"gpu_hours": "two"}))
            .await;
        let p = expect_problem(wrong_type, 400, "invalid-request").await;
        assert!(p["detail"].as_str().unwrap().contains("gpu_hours"), "{p}");
        let report = json!({"id": "run-42-step-1", "provider": "aws", "instance_type": "p4d.24xlarge",
            "gpu_type": "a100", "gpu_count": 8, "hours": 1.5, "region": "us-east-1",
            "documents": 5000, "tags": {"Project": "atlas", "CostCenter": "cc-7"}});
        let r = gw.post("/v1/usage", &key, &report).await;
        assert_eq!(r.status(), 201, "{}", db.name);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["records"][0]["cost"], "49.155");
        // Re-sending the same report id records it once.
        assert_eq!(gw.post("/v1/usage", &key, &report).await.status(), 201);
        let rows = gw
            .store
            .usage_report(&month_filter(), &[Dimension::Source], 0)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{}", db.name);
        assert_eq!(
            (rows[0].records, rows[0].documents, rows[0].cost),
            (1, 5000, a("49.155"))
        );
        // 1.5 instance-hours billed; 8 GPUs for 1.5 h are 12 GPU-hours.
        assert_eq!(
            (rows[0].compute_ms, rows[0].gpu_ms),
            (5_400_000, 12 * 3_600_000)
        );
        assert!(rows[0].co2e_mg > 0);
    }
}

#[tokio::test]
async fn a_time_bound_spend_override_lets_calls_past_a_used_up_budget() {
    let addr = provider().await;
    for db in databases("spend_override").await {
        let gw = start(&db, &upstream_config(addr, "m", "")).await;
        gw.store.prices_upsert(&[price()]).await.unwrap();
        gw.store
            .budget_create(&budget("0.004", Action::Block))
            .await
            .unwrap();
        let (key, key_id) = gw.key(KeySpec::default()).await;
        gw.state.finops.refresh(&gw.store).await.unwrap();
        // With max_tokens 10 the estimate fits; the first call's true cost (0.00475) then
        // uses the budget up.
        let mut body = chat("m", "hi");
        body["max_tokens"] = json!(10);
        let first = gw.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(first.status(), 200, "{}", db.name);
        first.bytes().await.unwrap();
        let refused = gw.post("/v1/chat/completions", &key, &body).await;
        expect_problem(refused, 402, "budget-exhausted").await;
        let now = custos_core::time::now_ms();
        gw.store
            .spend_override_create(&custos_store::SpendOverride {
                id: "ovr_1".into(),
                tenant: "acme".into(),
                key_id: key_id.clone(),
                expires_at: now + 1_500,
                why: "INC-1: month-end batch".into(),
                created_by: "test".into(),
                created_at: now,
            })
            .await
            .unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let r = gw.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(r.status(), 200, "{}", db.name);
        r.bytes().await.unwrap();
        // It still counts (the record is sent as the response ends), and it ends by itself.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            gw.state.finops.usage.flush().await;
            let spent = gw
                .store
                .usage_report(&month_filter(), &[], 0)
                .await
                .unwrap()[0]
                .cost;
            if spent == a("0.0095") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: spent {spent}",
                db.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
        let refused = gw.post("/v1/chat/completions", &key, &body).await;
        expect_problem(refused, 402, "budget-exhausted").await;
        gw.state.audit.flush().await;
        let events = gw.store.ledger_entries(0, 1000).await.unwrap();
        let overrides: Vec<_> = events
            .iter()
            .filter(|e| e.event.contains("\"budget.override\""))
            .collect();
        assert_eq!(overrides.len(), 1, "{}", db.name);
        assert!(overrides[0].event.contains("INC-1"));
    }
}

#[tokio::test]
async fn two_gateways_on_one_database_alert_each_threshold_once() {
    let addr = provider().await;
    for db in databases("two_gateways_alert_once").await {
        let toml = format!(
            "{}\n[finops]\nrefresh_interval = \"100ms\"\n",
            upstream_config(addr, "m", "")
        );
        let one = start(&db, &toml).await;
        one.store.prices_upsert(&[price()]).await.unwrap();
        let b = budget("0.02", Action::Alert);
        one.store.budget_create(&b).await.unwrap();
        let two = start(&db, &toml).await;
        for gw in [&one, &two] {
            gw.state.finops.refresh(&gw.store).await.unwrap();
        }
        let (key, _) = one.key(KeySpec::default()).await;
        two.key(KeySpec::default()).await;
        // Six calls at 0.00475, alternating gateways: 0.0285 passes 70%, 90% and 100% of 0.02,
        // each gateway seeing the other's spend through the store.
        for i in 0..6 {
            let gw = if i % 2 == 0 { &one } else { &two };
            gw.post("/v1/chat/completions", &key, &chat("m", "hi"))
                .await
                .bytes()
                .await
                .unwrap();
            gw.state.finops.usage.flush().await;
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
        wait_for_alerts(&one, &b.id, 3).await;
        // Give both processes a few more refreshes to (not) fire again.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        one.state.audit.flush().await;
        two.state.audit.flush().await;
        let events = one.store.ledger_entries(0, 1000).await.unwrap();
        let thresholds = events
            .iter()
            .filter(|e| e.event.contains("\"budget.threshold\""))
            .count();
        assert_eq!(thresholds, 3, "{}", db.name);
    }
}

/// A budget or override created by another process binds within the key refresh interval
/// (200 ms in tests), not the minute-long spend refresh configured here.
#[tokio::test]
async fn new_budgets_and_overrides_bind_as_fast_as_new_keys() {
    let addr = provider().await;
    for db in databases("budgets_bind_fast").await {
        let toml = format!(
            "{}\n[finops]\nrefresh_interval = \"60s\"\n",
            upstream_config(addr, "m", "")
        );
        let gw = start(&db, &toml).await;
        gw.store.prices_upsert(&[price()]).await.unwrap();
        let (key, key_id) = gw.key(KeySpec::default()).await;
        let r = gw
            .post("/v1/chat/completions", &key, &chat("m", "hi"))
            .await;
        assert_eq!(r.status(), 200, "{}", db.name);
        r.bytes().await.unwrap();
        gw.store
            .budget_create(&budget("0.000001", Action::Block))
            .await
            .unwrap();
        let until = |want: u16| {
            let gw = &gw;
            let key = &key;
            async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
                loop {
                    let r = gw.post("/v1/chat/completions", key, &chat("m", "hi")).await;
                    let got = r.status().as_u16();
                    r.bytes().await.unwrap();
                    if got == want {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "still {got}, not {want}, 3 s after the change"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        };
        until(402).await;
        let now = custos_core::time::now_ms();
        gw.store
            .spend_override_create(&custos_store::SpendOverride {
                id: "ovr_fast".into(),
                tenant: "acme".into(),
                key_id,
                expires_at: now + 600_000,
                why: "INC-2".into(),
                created_by: "test".into(),
                created_at: now,
            })
            .await
            .unwrap();
        until(200).await;
    }
}
