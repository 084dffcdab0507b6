//! JWT bearer tokens and Cedar policies over real HTTP: every refused token has its own
//! problem type, scopes are checked per operation, roles decide through the built-in
//! policies, tenants are pinned to regions, and a broken policy edit never replaces a good one.

mod common;

use common::{chat, databases, expect_problem, start};
use custos_authz::testkit::{b64, TestIssuer};
use custos_store::testkit::Seed as _;
use serde_json::{json, Value};
use std::time::Duration;

const MODEL: &str = "gpt-4o-mini";

fn now() -> i64 {
    custos_core::time::now_ms() / 1000
}

/// Config with one issuer whose keys are in `dir/jwks.json`, and the given extra TOML.
fn toml(dir: &std::path::Path, issuer: &TestIssuer, extra: &str) -> String {
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    format!(
        r#"
[[providers]]
name = "mock"
kind = "mock"
region = "us-east"

[[models]]
name = "{MODEL}"
provider = "mock"

[[auth.jwt]]
issuer = "{iss}"
audience = "custos"
jwks_file = "{jwks}"
tenants = ["acme"]
{extra}
"#,
        iss = issuer.issuer,
        jwks = dir.join("jwks.json").display(),
    )
}

fn developer(issuer: &TestIssuer) -> Value {
    let mut c = issuer.claims("alice", "custos", now());
    c["tenant"] = json!("acme");
    c["team"] = json!("ml");
    c["roles"] = json!(["developer"]);
    c["scope"] = json!("custos:chat custos:models");
    c
}

#[tokio::test]
async fn tokens_authenticate_and_every_refusal_has_its_type() {
    let issuer = TestIssuer::new("https://idp.test");
    for db in databases("identity_tokens").await {
        let dir = tempfile::tempdir().unwrap();
        let gw = start(&db, &toml(dir.path(), &issuer, "")).await;
        let good = developer(&issuer);
        let token = issuer.token(&good);
        let r = gw
            .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
            .await;
        assert_eq!(r.status(), 200, "{}: {}", db.name, r.text().await.unwrap());
        assert_eq!(gw.get("/v1/models", &token).await.status(), 200);

        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            issuer.token(&c)
        };
        let mut tampered = good.clone();
        tampered["roles"] = json!(["tenant-admin"]);
        let parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let cases: Vec<(String, &str)> = vec![
            (format!("eyJ{}", "A".repeat(17_000)), "token-too-large"),
            ("eyJhbGciOiJFZERTQSJ9.!!!.x".into(), "token-malformed"),
            (
                format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]),
                "token-algorithm-refused",
            ),
            (
                issuer.sign(&json!({"alg": "HS256", "kid": "ed-1"}), &good),
                "token-algorithm-refused",
            ),
            (
                issuer.sign(&json!({"alg": "EdDSA", "kid": "gone"}), &good),
                "token-unknown-key",
            ),
            (
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(tampered.to_string().as_bytes()),
                    parts[2]
                ),
                "token-bad-signature",
            ),
            (with("exp", json!(now() - 3600)), "token-expired"),
            (with("nbf", json!(now() + 3600)), "token-not-yet-valid"),
            (with("aud", json!("another-api")), "token-wrong-audience"),
            (
                with("iss", json!("https://evil.test")),
                "token-wrong-issuer",
            ),
            // Another IdP's key claiming to be ours.
            (
                TestIssuer::new("https://idp.test").token(&good),
                "token-bad-signature",
            ),
            (with("tenant", json!("nobody")), "token-claims"),
            (with("team", json!("no-such-team")), "token-claims"),
        ];
        for (token, slug) in cases {
            let r = gw
                .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
                .await;
            let www = r.headers().get("www-authenticate").cloned();
            let body = expect_problem(r, 401, slug).await;
            assert!(
                body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{slug}"
            );
            assert_eq!(www.unwrap(), r#"Bearer error="invalid_token""#, "{slug}");
        }

        // Scope per operation: the token may chat but not embed.
        let r = gw
            .post(
                "/v1/embeddings",
                &token,
                &json!({"model": MODEL, "input": "x"}),
            )
            .await;
        let body = expect_problem(r, 403, "insufficient-scope").await;
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("custos:embeddings"));

        // Roles: a token with no role is denied by default, naming no policy.
        let r = gw
            .post(
                "/v1/chat/completions",
                &with("roles", json!([])),
                &chat(MODEL, "hi"),
            )
            .await;
        let body = expect_problem(r, 403, "access-denied").await;
        assert!(
            body["detail"].as_str().unwrap().contains("deny by default"),
            "{body}"
        );

        // API keys still work and reach the same engine (as role `service`).
        let (key, _) = gw.key(Default::default()).await;
        assert_eq!(
            gw.post("/v1/chat/completions", &key, &chat(MODEL, "hi"))
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn residency_pins_and_unknown_kids_refresh_the_key_set() {
    let issuer = TestIssuer::new("https://idp.test");
    for db in databases("identity_residency").await {
        let dir = tempfile::tempdir().unwrap();
        let gw = start(&db, &toml(dir.path(), &issuer, "jwks_min_refetch = \"1s\"")).await;
        let token = issuer.token(&developer(&issuer));
        gw.store
            .set_tenant_regions("acme", &["eu-west".to_owned()])
            .await
            .unwrap();
        gw.state.directory.refresh(&gw.store).await.unwrap();
        let r = gw
            .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
            .await;
        let body = expect_problem(r, 403, "access-denied").await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("residency.pinned-regions"),
            "{body}"
        );
        gw.store
            .set_tenant_regions("acme", &["eu-west".to_owned(), "us-east".to_owned()])
            .await
            .unwrap();
        gw.state.directory.refresh(&gw.store).await.unwrap();
        assert_eq!(
            gw.post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
                .await
                .status(),
            200
        );

        // The IdP rotates its keys: tokens of the new key work once the key set is fetched
        // again (an unknown kid triggers it, at most once per jwks_min_refetch), and the old
        // key's tokens stop.
        let rotated = TestIssuer::with_kid_prefix("https://idp.test", "v2-");
        std::fs::write(dir.path().join("jwks.json"), rotated.jwks()).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let fresh = rotated.token(&developer(&rotated));
        let r = gw
            .post("/v1/chat/completions", &fresh, &chat(MODEL, "hi"))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = gw
            .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
            .await;
        expect_problem(r, 401, "token-unknown-key").await;
    }
}

#[tokio::test]
async fn a_broken_policy_edit_is_refused_and_a_good_one_applies() {
    let issuer = TestIssuer::new("https://idp.test");
    let dbs = databases("identity_reload").await;
    let db = &dbs[0];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("team.cedar");
    std::fs::write(
        &file,
        "@id(\"devs.chat\")\npermit(principal in Custos::Role::\"developer\", action == Custos::Action::\"chat\", resource);\n",
    )
    .unwrap();
    let extra = format!("\n[authz]\npolicies = [\"{}\"]\n", file.display());
    let gw = start(db, &toml(dir.path(), &issuer, &extra)).await;
    let token = issuer.token(&developer(&issuer));
    let body = chat(MODEL, "hi");
    let call = || gw.post("/v1/chat/completions", &token, &body);
    assert_eq!(call().await.status(), 200);
    assert_eq!(gw.state.authz.len(), 1);

    // A policy that does not parse: refused, the old one stays in force.
    std::fs::write(&file, "permit(principal, action ==, resource);").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(call().await.status(), 200);

    // A valid edit applies within the watch interval.
    std::fs::write(
        &file,
        "@id(\"devs.chat\")\npermit(principal in Custos::Role::\"developer\", action == Custos::Action::\"chat\", resource);\n@id(\"freeze\")\nforbid(principal, action in Custos::Action::\"model.use\", resource) when { context.classification == \"restricted\" };\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gw.state.authz.len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new policies never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&token)
        .header("x-custos-data-class", "restricted")
        .json(&chat(MODEL, "hi"))
        .send()
        .await
        .unwrap();
    let body = expect_problem(r, 403, "access-denied").await;
    assert!(
        body["detail"].as_str().unwrap().contains("freeze"),
        "{body}"
    );
    assert_eq!(call().await.status(), 200);
}

#[tokio::test]
async fn jit_grants_need_another_approver_and_expire_by_themselves() {
    let issuer = TestIssuer::new("https://idp.test");
    for db in databases("identity_grants").await {
        let dir = tempfile::tempdir().unwrap();
        let (hook, seen) = common::webhook_receiver().await;
        std::env::set_var("CUSTOS_TEST_GRANT_HOOK", "s3cret");
        let extra = format!(
            "\n[[finops.webhooks]]\nurl = \"http://{hook}/hook\"\nsecret_env = \"CUSTOS_TEST_GRANT_HOOK\"\n"
        );
        let gw = start(&db, &toml(dir.path(), &issuer, &extra)).await;
        let user = |sub: &str, roles: Value, mfa: bool| {
            let mut c = issuer.claims(sub, "custos", now());
            c["tenant"] = json!("acme");
            c["roles"] = roles;
            c["scope"] = json!("custos:admin custos:chat");
            if mfa {
                c["amr"] = json!(["pwd", "otp"]);
            }
            issuer.token(&c)
        };
        let alice = user("alice", json!(["developer"]), true);
        let bob = user("bob", json!(["security-admin"]), true);
        let teams = "/admin/v1/tenants/acme/teams";
        expect_problem(gw.get(teams, &alice).await, 403, "access-denied").await;

        // Alice asks; she cannot approve her own request; Bob can.
        let r = gw
            .post(
                "/admin/v1/tenants/acme/grants",
                &alice,
                &json!({"role": "tenant-admin", "duration": "2s", "why": "INC-1: rotate a key"}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = gw.store.grants_list(Some("acme")).await.unwrap()[0]
            .id
            .clone();
        let approve = format!("/admin/v1/tenants/acme/grants/{id}/approve");
        expect_problem(
            gw.post(&approve, &alice, &json!({"why": "INC-1"})).await,
            403,
            "access-denied",
        )
        .await;
        expect_problem(gw.get(teams, &alice).await, 403, "access-denied").await;
        let r = gw.post(&approve, &bob, &json!({"why": "INC-1"})).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let granted: Value = gw.get(teams, &alice).await.json().await.unwrap();
        assert!(granted.is_array(), "{granted}");
        expect_problem(
            gw.post(&approve, &bob, &json!({"why": "INC-1"})).await,
            409,
            "conflict",
        )
        .await;

        // The grant ends on time, with nothing run.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        expect_problem(gw.get(teams, &alice).await, 403, "access-denied").await;

        // Longer than policy allows: refused.
        let r = gw
            .post(
                "/admin/v1/tenants/acme/grants",
                &alice,
                &json!({"role": "tenant-admin", "duration": "9h", "why": "long"}),
            )
            .await;
        expect_problem(r, 400, "invalid-request").await;

        // Break-glass: live at once, alerted to the webhook, in the ledger; needs MFA.
        let carol = user("carol", json!([]), false);
        let glass = json!({"role": "security-admin", "duration": "1h", "why": "INC-2: leaked key"});
        let r = gw
            .post("/admin/v1/tenants/acme/grants/break-glass", &carol, &glass)
            .await;
        expect_problem(r, 403, "access-denied").await;
        let carol = user("carol", json!([]), true);
        let r = gw
            .post("/admin/v1/tenants/acme/grants/break-glass", &carol, &glass)
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let keys: Value = gw
            .get("/admin/v1/tenants/acme/keys", &carol)
            .await
            .json()
            .await
            .unwrap();
        assert!(keys.is_array(), "{keys}");
        let too_long = json!({"role": "security-admin", "duration": "5h", "why": "x"});
        let r = gw
            .post(
                "/admin/v1/tenants/acme/grants/break-glass",
                &carol,
                &too_long,
            )
            .await;
        expect_problem(r, 400, "invalid-request").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b.contains("grant.break_glass"))
        {
            assert!(std::time::Instant::now() < deadline, "no break-glass alert");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let events: Vec<String> = gw
            .store
            .ledger_entries(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        for activity in ["grant.request", "grant.approve", "grant.break_glass"] {
            assert!(
                events
                    .iter()
                    .any(|e| e.contains(&format!("\"activity\":\"{activity}\""))),
                "{activity} missing from the ledger"
            );
        }
    }
}

#[tokio::test]
async fn cross_region_use_a_policy_allows_is_recorded_as_a_transfer() {
    let issuer = TestIssuer::new("https://idp.test");
    let dbs = databases("identity_transfer").await;
    let db = &dbs[0];
    let dir = tempfile::tempdir().unwrap();
    // Policies without the residency forbid: cross-region calls are allowed, and evidenced.
    let file = dir.path().join("open.cedar");
    std::fs::write(
        &file,
        "@id(\"devs\")\npermit(principal in Custos::Role::\"developer\", action in Custos::Action::\"model.use\", resource);\n",
    )
    .unwrap();
    let extra = format!("\n[authz]\npolicies = [\"{}\"]\n", file.display());
    let gw = start(db, &toml(dir.path(), &issuer, &extra)).await;
    gw.store
        .set_tenant_regions("acme", &["eu-west".to_owned()])
        .await
        .unwrap();
    gw.state.directory.refresh(&gw.store).await.unwrap();
    let token = issuer.token(&developer(&issuer));
    let r = gw
        .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
        .await;
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    gw.state.audit.flush().await;
    let events = gw.store.ledger_entries(0, 100).await.unwrap();
    let call: Value = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.event).unwrap())
        .find(|e| e["activity"] == "model.invoke")
        .expect("a model.invoke event");
    assert_eq!(
        call["transfer"],
        json!({"pinned": ["eu-west"], "to": "us-east"}),
        "{call}"
    );
    assert_eq!(call["policies"], json!(["devs"]));
    assert_eq!(call["actor"]["roles"], json!(["developer"]));
    // A new cross-border transfer requires a DPIA.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let dpia = loop {
        let d = gw.store.dpias().await.unwrap();
        if !d.is_empty() || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dpia.len(), 1);
    assert_eq!(dpia[0].trigger_key, "cross-border:acme:us-east");
    assert_eq!(dpia[0].tenant, "acme");
    // The token's subject is a person: stored sealed, opened while the key lives.
    let stored = call["actor"]["id"].as_str().unwrap();
    assert!(stored.starts_with("sealed:v1:"), "{call}");
    assert!(!call["actor"]["uid"].as_str().unwrap().contains("alice"));
    let mut shown = vec![call.clone()];
    custos_control::seal::reveal(&gw.store, &mut shown)
        .await
        .unwrap();
    assert_eq!(shown[0]["actor"]["id"], "alice");
    assert!(shown[0]["actor"]["uid"]
        .as_str()
        .unwrap()
        .ends_with("#alice"));
}

#[tokio::test]
async fn keys_come_from_a_jwks_url_fetched_once_not_per_request() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let issuer = Arc::new(TestIssuer::new("https://idp.test"));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (i, f) = (issuer.clone(), fetches.clone());
    let addr = common::upstream(axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (i, f) = (i.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                i.jwks()
            }
        }),
    ))
    .await;
    let dbs = databases("identity_jwks_url").await;
    let toml = format!(
        r#"
[[auth.jwt]]
issuer = "https://idp.test"
audience = "custos"
jwks_url = "http://{addr}/.well-known/jwks.json"
tenants = ["acme"]
"#
    );
    let gw = start(&dbs[0], &toml).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let token = issuer.token(&developer(&issuer));
    for _ in 0..20 {
        let r = gw
            .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
            .await;
        assert_eq!(r.status(), 200);
    }
    // Forged kids do not make custos hammer the IdP: one refetch at most per interval.
    for i in 0..20 {
        let forged = issuer.sign(
            &json!({"alg": "EdDSA", "kid": format!("forged-{i}")}),
            &developer(&issuer),
        );
        let r = gw
            .post("/v1/chat/completions", &forged, &chat(MODEL, "hi"))
            .await;
        expect_problem(r, 401, "token-unknown-key").await;
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "no refetch within jwks_min_refetch"
    );
}

#[tokio::test]
async fn a_verified_token_stops_working_when_it_expires() {
    let issuer = TestIssuer::new("https://idp.test");
    let dbs = databases("identity_token_cache").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dbs[0], &toml(dir.path(), &issuer, "leeway = \"0s\"")).await;
    let mut c = developer(&issuer);
    c["exp"] = json!(now() + 2);
    let token = issuer.token(&c);
    let r = gw
        .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
        .await;
    assert_eq!(r.status(), 200);
    // Served from the verified-token cache now…
    assert_eq!(
        gw.post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
            .await
            .status(),
        200
    );
    // …but not past `exp`.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = gw
        .post("/v1/chat/completions", &token, &chat(MODEL, "hi"))
        .await;
    expect_problem(r, 401, "token-expired").await;
}
