//! Tenant isolation, as a matrix: for every admin endpoint and every model route, a principal
//! of tenant A — holding every built-in admin role, with MFA — cannot read, change or use
//! anything of tenant B, and cannot tell B from a tenant that does not exist. The same
//! requests on A's own tenant succeed, so the matrix would catch a policy that denies all.

mod common;

use common::{chat, databases, expect_problem, start};
use custos_authz::testkit::TestIssuer;
use custos_store::{GrantKind, NewGrant, NewKey};
use serde_json::{json, Value};

const MODEL: &str = "gpt-4o-mini";

fn now() -> i64 {
    custos_core::time::now_ms() / 1000
}

/// (method, path under /admin/v1/tenants/{t}, body) of every admin endpoint; `{key}` and
/// `{grant}` stand for an object id of the tenant in the path.
fn endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    let grant = json!({"role": "auditor", "duration": "10m", "why": "matrix"});
    vec![
        ("GET", "keys", None),
        ("POST", "keys/{key}/revoke", None),
        ("GET", "teams", None),
        ("GET", "budgets", None),
        ("GET", "usage", None),
        ("GET", "audit", None),
        ("GET", "policies", None),
        ("GET", "grants", None),
        ("POST", "grants", Some(grant.clone())),
        ("POST", "grants/break-glass", Some(grant)),
        ("POST", "grants/{grant}/approve", None),
        ("POST", "grants/{grant}/deny", None),
    ]
}

async fn send(
    gw: &common::TestGateway,
    token: &str,
    method: &str,
    path: &str,
    body: &Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", gw.base);
    let req = match method {
        "GET" => gw.client.get(url),
        _ => gw.client.post(url),
    }
    .bearer_auth(token);
    let req = match body {
        Some(b) => req.json(b),
        None => req,
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A key of `tenant`/`team`/`app`, straight through the store.
async fn key_of(gw: &common::TestGateway, tenant: &str) -> String {
    gw.store.ensure_tenant(tenant).await.unwrap();
    let app = match gw.store.app(tenant, "ops", "svc").await {
        Ok(a) => a,
        Err(_) => {
            gw.store
                .create_team(tenant, "ops", None, None)
                .await
                .unwrap();
            gw.store.create_app(tenant, "ops", "svc").await.unwrap()
        }
    };
    let minted = custos_authz::api_key::mint().unwrap();
    gw.store
        .insert_key(&NewKey {
            digest_hex: minted.digest.to_hex(),
            prefix: minted.display_prefix.clone(),
            name: None,
            app_id: app.id,
            env: "prod".into(),
            models: "*".into(),
            rpm: None,
            tpm: None,
            expires_at: None,
        })
        .await
        .unwrap()
        .id
}

async fn pending_grant(gw: &common::TestGateway, tenant: &str) -> String {
    gw.store
        .grant_create(&NewGrant {
            tenant: tenant.into(),
            principal: "someone".into(),
            role: "auditor".into(),
            kind: GrantKind::Jit,
            why: "matrix".into(),
            duration_ms: 600_000,
            requested_by: "someone".into(),
        })
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn a_tenant_reaches_nothing_of_another() {
    let issuer = TestIssuer::new("https://idp.test");
    for db in databases("isolation_matrix").await {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), issuer.jwks()).unwrap();
        let toml = format!(
            "[[auth.jwt]]\nissuer = \"{}\"\naudience = \"custos\"\njwks_file = \"{}\"\n",
            issuer.issuer,
            dir.path().join("jwks.json").display()
        );
        let gw = start(&db, &toml).await;
        gw.store.ensure_tenant("globex").await.unwrap();
        gw.state.directory.refresh(&gw.store).await.unwrap();
        let admin_of = |tenant: &str| {
            let mut c = issuer.claims(&format!("admin@{tenant}"), "custos", now());
            c["tenant"] = json!(tenant);
            c["roles"] = json!(["tenant-admin", "auditor", "security-admin", "developer"]);
            c["scope"] = json!("custos:admin custos:chat custos:embeddings custos:completions custos:models custos:usage custos:pii");
            c["amr"] = json!(["pwd", "hwk"]);
            issuer.token(&c)
        };
        let a = admin_of("acme");
        let b = admin_of("globex");

        // B's objects, and some activity of B to find.
        let b_key = key_of(&gw, "globex").await;
        let r = gw
            .post(
                "/v1/chat/completions",
                &b,
                &chat(MODEL, "globex secret plans"),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", db.name);
        let a_key = key_of(&gw, "acme").await;

        for (method, tail, body) in endpoints() {
            // Fresh pending grants each row: approving or denying consumes one.
            let a_grant = pending_grant(&gw, "acme").await;
            let b_grant = pending_grant(&gw, "globex").await;
            let path = |tenant: &str, key: &str, grant: &str| {
                format!(
                    "/admin/v1/tenants/{tenant}/{}",
                    tail.replace("{key}", key).replace("{grant}", grant)
                )
            };
            // A on B's tenant, and A on a tenant that does not exist: denied alike.
            let (s_b, body_b) =
                send(&gw, &a, method, &path("globex", &b_key, &b_grant), &body).await;
            let (s_none, body_none) =
                send(&gw, &a, method, &path("nowhere", &b_key, &b_grant), &body).await;
            assert_eq!(s_b, 403, "{} {method} {tail}: {body_b}", db.name);
            assert_eq!(body_b["type"], "https://custos.dev/problems/access-denied");
            assert_eq!(
                body_b["detail"].as_str().unwrap().replace("globex", "T"),
                body_none["detail"]
                    .as_str()
                    .unwrap()
                    .replace("nowhere", "T"),
                "{method} {tail}: B is distinguishable from nothing"
            );
            assert_eq!(s_b, s_none);
            // A's own path with B's object ids: not found, exactly like an id that never was.
            if tail.contains('{') {
                let (s_x, body_x) =
                    send(&gw, &a, method, &path("acme", &b_key, &b_grant), &body).await;
                let (s_y, body_y) = send(
                    &gw,
                    &a,
                    method,
                    &path("acme", "key_nope", "grant_nope"),
                    &body,
                )
                .await;
                assert_eq!((s_x, s_y), (404, 404), "{method} {tail}: {body_x} {body_y}");
                assert_eq!(
                    body_x["detail"]
                        .as_str()
                        .unwrap()
                        .replace(&b_key, "X")
                        .replace(&b_grant, "X"),
                    body_y["detail"]
                        .as_str()
                        .unwrap()
                        .replace("key_nope", "X")
                        .replace("grant_nope", "X"),
                );
            }
            // A on its own tenant and objects: allowed (the matrix is not vacuous).
            let (s_a, body_a) = send(&gw, &a, method, &path("acme", &a_key, &a_grant), &body).await;
            assert!(
                (200..300).contains(&s_a),
                "{} {method} {tail} on own tenant: {s_a} {body_a}",
                db.name
            );
            // Nothing A saw is B's: no B object, no B principal.
            let seen = body_a.to_string();
            for secret in [b_key.as_str(), b_grant.as_str(), "admin@globex"] {
                assert!(
                    !seen.contains(secret),
                    "{method} {tail} leaked {secret}: {seen}"
                );
            }
        }

        // B's key is untouched, B's grants undecided, B's audit trail unread by A.
        let b_row = gw.store.key(&b_key).await.unwrap();
        assert!(b_row.revoked_at.is_none());
        assert!(gw
            .store
            .grants_list(Some("globex"))
            .await
            .unwrap()
            .iter()
            .all(|g| g.decided_by.is_none()));

        // Model routes: A's calls are A's, whatever A claims in the body or headers.
        let r = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&a)
            .header("x-custos-tenant", "globex")
            .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "user": "globex"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = gw
            .post("/v1/usage", &a, &json!({"records": [{"provider": "mock", "model": MODEL, "input_tokens": 5, "tenant": "globex"}]}))
            .await;
        assert!(
            r.status().is_client_error() || r.status().is_success(),
            "{}",
            r.status()
        );
        gw.state.finops.usage.flush().await;
        let (_, usage_b) = send(&gw, &b, "GET", "/admin/v1/tenants/globex/usage", &None).await;
        let calls_b: i64 = usage_b
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["calls"].as_i64().unwrap())
            .sum();
        assert_eq!(calls_b, 1, "only B's own call is B's: {usage_b}");
        // B's audit view holds B's call; A's holds none of it.
        let (_, audit_a) = send(
            &gw,
            &a,
            "GET",
            "/admin/v1/tenants/acme/audit?limit=1000",
            &None,
        )
        .await;
        assert!(!audit_a.to_string().contains("admin@globex"), "{audit_a}");
        let (_, audit_b) = send(
            &gw,
            &b,
            "GET",
            "/admin/v1/tenants/globex/audit?limit=1000",
            &None,
        )
        .await;
        assert!(audit_b.to_string().contains("admin@globex"), "{audit_b}");

        // The probing of B left denied events in A's own trail.
        let denied = audit_a
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["outcome"] == "denied")
            .count();
        assert!(denied >= endpoints().len(), "{denied}");
        let _ = expect_problem;
    }
}
