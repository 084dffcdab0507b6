//! The web console over real HTTP on loopback, on SQLite and PostgreSQL: sign-in with an API
//! key, every page under the Cedar policies, CSRF and origin checks on every form, changes
//! through the control plane (recorded in the ledger), sessions that end when their key is
//! revoked or they sign out, and another tenant's pages refused.

mod common;

use common::*;
use custos_finops::{Amount, Currency, Price, Rates};
use custos_store::testkit::Seed as _;
use custos_store::NewKey;
use serde_json::json;
use std::time::Duration;

/// A browser without cookies or redirects of its own: each test sees every 303 and sets
/// each cookie by hand, so what the server asks for is what is checked.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Browser {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            // Only the in-flight OIDC cookie is Lax: it must come back with the provider's
            // cross-site redirect.
            let same_site = if v.starts_with("custos_oidc=") {
                "SameSite=Lax"
            } else {
                "SameSite=Strict"
            };
            assert!(v.contains("HttpOnly") && v.contains(same_site), "{v}");
            let (pair, attrs) = v.split_once(';').unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        self.keep(&r);
        r
    }

    /// Signs in with `key`, as a person would: the form, then the post.
    async fn sign_in(&mut self, key: &str) -> reqwest::Response {
        let page = self.get("/console/signin").await.text().await.unwrap();
        let csrf = csrf_of(&page);
        self.post(
            "/console/signin",
            &[("csrf", &csrf), ("key", key), ("next", "/console")],
            None,
        )
        .await
    }
}

/// The CSRF token of the first form of a page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn key_for(gw: &TestGateway, app_id: &str, roles: &[&str]) -> (String, String) {
    let minted = custos_authz::api_key::mint().unwrap();
    let row = gw
        .store
        .insert_key(&NewKey {
            digest_hex: minted.digest.to_hex(),
            prefix: minted.display_prefix.clone(),
            name: None,
            app_id: app_id.to_owned(),
            env: "prod".into(),
            models: "*".into(),
            rpm: None,
            tpm: None,
            expires_at: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
        .await
        .unwrap();
    gw.state.keys.refresh(&gw.store).await.unwrap();
    (minted.secret, row.id)
}

/// A draft release of `tenant`'s `team/app` (created, with the team and app, by the local
/// operator): a prompt pin of no registered prompt, so its tier is high (owner, platform,
/// security and cab approve).
async fn draft_release(gw: &TestGateway, tenant: &str, app: &str) -> String {
    use custos_govern::release::tier::{Composite, Pin};
    let (team, name) = app.split_once('/').unwrap();
    gw.store.ensure_tenant(tenant).await.unwrap();
    if gw.store.app(tenant, team, name).await.is_err() {
        let _ = gw.store.create_team(tenant, team, None, None).await;
        gw.store.create_app(tenant, team, name).await.unwrap();
    }
    gw.state
        .control
        .create_release(
            &custos_control::Actor::local("author"),
            custos_control::NewRelease {
                tenant: tenant.into(),
                app: app.into(),
                composite: Composite {
                    prompt: Some(Pin {
                        name: "svc".into(),
                        version: "1.0.0".into(),
                        digest: "ab".repeat(32),
                        pii: false,
                    }),
                    ..Composite::default()
                },
                requested_tier: None,
                flags: Default::default(),
                evidence: Vec::new(),
            },
            &custos_core::Reason::default(),
        )
        .await
        .unwrap()
        .value
        .release
        .id
}

#[tokio::test]
async fn the_console_signs_in_shows_every_page_and_changes_through_the_control_plane() {
    for db in databases("console_pages").await {
        let up = upstream(axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(|| async {
                axum::Json(json!({"id":"c1","object":"chat.completion","model":"m",
                    "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}}))
            }),
        ))
        .await;
        // The built-in policies: the console key holds tenant-admin, the others `service`.
        let gw = start(&db, &upstream_config(up, "m", "")).await;
        gw.store
            .prices_upsert(&[Price {
                provider: "up".into(),
                model: "m-upstream".into(),
                effective_from: 0,
                currency: Currency::USD,
                rates: Rates {
                    input_per_1m: "2.50".parse::<Amount>().unwrap(),
                    output_per_1m: "10".parse::<Amount>().unwrap(),
                    ..Rates::default()
                },
            }])
            .await
            .unwrap();
        gw.state.finops.refresh(&gw.store).await.unwrap();
        let app = gw.app_id.clone();
        let (admin, _) = key_for(&gw, &app, &["tenant-admin", "owner"]).await;
        let (victim, victim_id) = key_for(&gw, &app, &[]).await;
        for _ in 0..3 {
            let r = gw
                .post("/v1/chat/completions", &admin, &chat("m", "hello"))
                .await;
            assert_eq!(r.status(), 200, "{}", db.name);
        }
        gw.state.finops.usage.flush().await;

        let mut b = Browser::new(&gw.base);
        // Without a session every page sends the browser to sign in, and says where it was.
        let r = b.get("/console/spend?window=7d").await;
        assert_eq!(r.status(), 303);
        assert_eq!(
            location(&r),
            "/console/signin?next=%2Fconsole%2Fspend%3Fwindow%3D7d"
        );
        let r = b.get("/console/signin").await;
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let page = r.text().await.unwrap();
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "no inline code"
        );

        // A sign-in without the form's token, or with another site's origin, is refused.
        let r = b.post("/console/signin", &[("key", &admin)], None).await;
        assert_eq!(r.status(), 403, "{}", db.name);
        let csrf = csrf_of(&b.get("/console/signin").await.text().await.unwrap());
        let r = b
            .post(
                "/console/signin",
                &[("csrf", &csrf), ("key", &admin)],
                Some("http://evil.example"),
            )
            .await;
        assert_eq!(r.status(), 403);
        assert!(!b.cookies.contains_key("custos_session"));

        // A wrong key is refused without echoing it.
        let r = b.sign_in("ck_not-a-key").await;
        assert_eq!(r.status(), 401);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("not a custos API key") && !page.contains("ck_not-a-key"),
            "{page}"
        );

        let r = b.sign_in(&admin).await;
        assert_eq!(r.status(), 303, "{}", db.name);
        assert_eq!(location(&r), "/console");
        assert!(b.cookies.contains_key("custos_session"));
        assert!(
            !b.cookies["custos_session"].contains(&admin[3..]),
            "the key itself is never in the cookie"
        );

        // Every page renders for the tenant, with the tenant's data.
        let page = b.get("/console").await.text().await.unwrap();
        for want in [
            "Overview",
            "p95 latency",
            "ml/bot",
            "<svg",
            "<td class=\"mono\">/v1/chat/completions</td>",
        ] {
            assert!(page.contains(want), "{want} missing from overview");
        }
        assert!(page.contains(">3<"), "three calls counted: {page}");
        let page = b
            .get("/console/spend?window=30d&group=app")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("Showback by app") && page.contains("bot"),
            "{page}"
        );
        // 3 calls × (1000 × 2.50 + 100 × 10) / 1M = 0.0105 USD.
        assert!(page.contains("0.0105 USD"), "{page}");
        let r = b.get("/console/spend.csv?window=30d&group=team").await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment"));
        let csv = r.text().await.unwrap();
        assert!(csv.starts_with("team,currency,cost,calls,"), "{csv}");
        assert!(csv.contains("\nml,USD,0.0105,3,3000,300,0.0035,"), "{csv}");
        let r = b.get("/console/spend?group=nope").await;
        assert_eq!(r.status(), 400);
        let page = b.get("/console/access").await.text().await.unwrap();
        assert!(
            page.contains(&victim_id) && page.contains("Revoke"),
            "{page}"
        );
        let page = b.get("/console/releases").await.text().await.unwrap();
        assert!(page.contains("No releases"), "{page}");

        // Another tenant's pages are refused by policy, and the refusal is in the ledger.
        gw.store.ensure_tenant("globex").await.unwrap();
        for path in [
            "/console?tenant=globex",
            "/console/spend?tenant=globex",
            "/console/access?tenant=globex",
            "/console/releases?tenant=globex",
            "/console/spend.csv?tenant=globex",
        ] {
            let r = b.get(path).await;
            assert_eq!(r.status(), 403, "{path} on {}", db.name);
        }
        gw.state.audit.flush().await;
        let size = gw.store.ledger_size().await.unwrap();
        let entries = gw.store.ledger_entries(0, size as i64).await.unwrap();
        assert!(entries
            .iter()
            .any(|e| e.event.contains("\"console.signin\"")));
        assert!(entries
            .iter()
            .any(|e| e.event.contains("\"denied\"") && e.event.contains("globex")));

        // Revoking a key: refused without the token, with a forged one or from another
        // site; then done through the control plane, its reason in the ledger.
        let page = b.get("/console/access").await.text().await.unwrap();
        let csrf = csrf_of(&page);
        let path = format!("/console/access/keys/{victim_id}/revoke");
        let r = b.post(&path, &[("why", "leaked")], None).await;
        assert_eq!(r.status(), 403);
        let r = b
            .post(&path, &[("csrf", "forged"), ("why", "leaked")], None)
            .await;
        assert_eq!(r.status(), 403);
        let r = b
            .post(
                &path,
                &[("csrf", &csrf), ("why", "leaked")],
                Some("http://evil.example"),
            )
            .await;
        assert_eq!(r.status(), 403);
        assert_eq!(gw.get("/v1/models", &victim).await.status(), 200);
        let r = b
            .post(&path, &[("csrf", &csrf), ("why", "leaked in a log")], None)
            .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert_eq!(location(&r), "/console/access?tenant=acme&done=revoked");
        assert_eq!(gw.get("/v1/models", &victim).await.status(), 401);
        gw.state.audit.flush().await;
        let size = gw.store.ledger_size().await.unwrap();
        let entries = gw.store.ledger_entries(0, size as i64).await.unwrap();
        assert!(entries
            .iter()
            .any(|e| e.event.contains("\"keys.revoke\"") && e.event.contains("leaked in a log")));

        // A session signed in with the victim's key ends with it.
        let mut v = Browser::new(&gw.base);
        let (victim2, victim2_id) = key_for(&gw, &app, &["auditor"]).await;
        assert_eq!(v.sign_in(&victim2).await.status(), 303);
        assert_eq!(v.get("/console").await.status(), 200);
        let csrf = csrf_of(&b.get("/console/access").await.text().await.unwrap());
        let r = b
            .post(
                &format!("/console/access/keys/{victim2_id}/revoke"),
                &[("csrf", &csrf), ("why", "rotation")],
                None,
            )
            .await;
        assert_eq!(r.status(), 303);
        let r = v.get("/console").await;
        assert_eq!(r.status(), 303);
        assert!(
            location(&r).contains("was%20revoked") || location(&r).contains("was+revoked"),
            "{}",
            location(&r)
        );

        // A release: approved here as owner, after a refused denial without a reason and a
        // refused form without its token; another tenant's release is not found.
        let id = draft_release(&gw, "acme", "ml/bot").await;
        let page = b.get("/console/releases").await.text().await.unwrap();
        assert!(
            page.contains(&id) && page.contains("approval by owner"),
            "{page}"
        );
        let page = b
            .get(&format!("/console/releases/{id}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("Approve") && page.contains("Deny"), "{page}");
        let csrf = csrf_of(&page);
        let decide = format!("/console/releases/{id}/decide");
        let r = b
            .post(&decide, &[("role", "owner"), ("decision", "approve")], None)
            .await;
        assert_eq!(r.status(), 403);
        let r = b
            .post(
                &decide,
                &[("csrf", &csrf), ("role", "owner"), ("decision", "deny")],
                None,
            )
            .await;
        assert_eq!(r.status(), 400, "a denial says why");
        let r = b
            .post(
                &decide,
                &[
                    ("csrf", &csrf),
                    ("role", "security"),
                    ("decision", "approve"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), 400, "the key does not hold security");
        assert!(r.text().await.unwrap().contains("does not hold the role"));
        let r = b
            .post(
                &decide,
                &[
                    ("csrf", &csrf),
                    ("role", "owner"),
                    ("decision", "approve"),
                    ("why", "reviewed"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), 303, "{}", db.name);
        let page = b.get(&location(&r)).await.text().await.unwrap();
        assert!(
            page.contains("Your approval was recorded")
                && page.contains("Still needs:")
                && !page.contains("approval by owner"),
            "{page}"
        );
        let theirs = draft_release(&gw, "globex", "ops/svc").await;
        assert_eq!(
            b.get(&format!("/console/releases/{theirs}")).await.status(),
            404
        );
        let r = b
            .post(
                &format!("/console/releases/{theirs}/decide"),
                &[("csrf", &csrf), ("role", "owner"), ("decision", "approve")],
                None,
            )
            .await;
        assert_eq!(r.status(), 404);

        // The audit page finds the revocation; its entry's proof downloads and verifies
        // offline against the ledger key, exactly as `custos audit verify-proof` checks it.
        let page = b
            .get("/console/audit?activity=key.revoke")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("key.revoke") && page.contains("leaked in a log"),
            "{page}"
        );
        let at = page.find("/console/audit/").unwrap() + "/console/audit/".len();
        let index: u64 = page[at..].split('?').next().unwrap().parse().unwrap();
        let page = b
            .get(&format!("/console/audit/{index}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("does not cover this entry yet"), "{page}");
        let (private, public) = custos_ledger::generate_key("test/ledger").unwrap();
        let signer = custos_ledger::NoteSigner::from_key(&private).unwrap();
        let anchors =
            custos_gateway::anchor::Anchors::new(&custos_core::config::AuditConfig::default())
                .unwrap();
        gw.state.audit.flush().await;
        custos_gateway::audit::sign_checkpoint(&gw.store, &signer, &anchors)
            .await
            .unwrap();
        let page = b
            .get(&format!("/console/audit/{index}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("Verify in this browser") && page.contains("Download proof"),
            "{page}"
        );
        let r = b.get(&format!("/console/audit/{index}/proof.json")).await;
        assert_eq!(r.status(), 200);
        let proof: serde_json::Value = r.json().await.unwrap();
        assert_eq!(proof["index"], index);
        verify_entry_proof(&proof, &public);
        // Another tenant's entry is not found, as if absent; so is one past the end.
        let theirs = gw
            .store
            .ledger_append(&[json!({"activity": "x", "actor": {"tenant": "globex"}}).to_string()])
            .await
            .unwrap()
            .start;
        assert_eq!(
            b.get(&format!("/console/audit/{theirs}")).await.status(),
            404
        );
        assert_eq!(
            b.get(&format!("/console/audit/{theirs}/proof.json"))
                .await
                .status(),
            404
        );
        assert_eq!(b.get("/console/audit/99999999").await.status(), 404);
        assert_eq!(b.get("/console/audit?before=-1").await.status(), 400);

        // A grant someone asked for is approved here (grants.approve needs another person
        // than the requester), and an access review runs and is recorded.
        let grant = gw
            .store
            .grant_create(&custos_store::NewGrant {
                tenant: "acme".into(),
                principal: "bob".into(),
                role: "auditor".into(),
                kind: custos_store::GrantKind::Jit,
                why: "quarter close".into(),
                duration_ms: 600_000,
                requested_by: "bob".into(),
            })
            .await
            .unwrap()
            .id;
        let page = b.get("/console/access").await.text().await.unwrap();
        assert!(
            page.contains(&format!("/console/access/grants/{grant}/decide")),
            "{page}"
        );
        let csrf = csrf_of(&page);
        let r = b
            .post(
                &format!("/console/access/grants/{grant}/decide"),
                &[("decision", "approve"), ("why", "ok")],
                None,
            )
            .await;
        assert_eq!(r.status(), 403);
        let r = b
            .post(
                &format!("/console/access/grants/{grant}/decide"),
                &[
                    ("csrf", &csrf),
                    ("decision", "approve"),
                    ("why", "quarter close, checked"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        let page = b.get(&location(&r)).await.text().await.unwrap();
        assert!(page.contains("The grant was approved"), "{page}");
        let r = b
            .post(
                "/console/access/review",
                &[
                    ("csrf", &csrf),
                    ("unused_after", "30d"),
                    ("why", "Q4 review"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("principals,") && page.contains("recorded as ledger entry"),
            "{page}"
        );
        assert!(page.contains(&victim_id) && page.contains("bob"), "{page}");
        let r = b
            .post(
                "/console/access/review",
                &[("csrf", &csrf), ("unused_after", "soon")],
                None,
            )
            .await;
        assert_eq!(r.status(), 400);
        let r = b
            .post("/console/access/review", &[("why", "no token")], None)
            .await;
        assert_eq!(r.status(), 403);

        // The compliance checks span every tenant: a tenant admin does not see them, an
        // operator does.
        let page = b.get("/console/access").await.text().await.unwrap();
        assert!(page.contains("Access review") && !page.contains("Compliance checks"));
        let (operator, _) = key_for(&gw, &app, &["operator"]).await;
        let mut op = Browser::new(&gw.base);
        assert_eq!(op.sign_in(&operator).await.status(), 303);
        let page = op.get("/console/access").await.text().await.unwrap();
        assert!(
            page.contains("Compliance checks") && page.contains("access-review"),
            "{page}"
        );
        // So are every tenant's traffic and the refusals of no tenant (the bad sign-in above).
        let page = op.get("/console").await.text().await.unwrap();
        assert!(
            page.contains("Every tenant") && page.contains("invalid-api-key"),
            "{page}"
        );
        let page = b.get("/console").await.text().await.unwrap();
        assert!(!page.contains("Every tenant") && !page.contains("invalid-api-key"));

        // A key without a reader's role signs in, and every page says what it may not read.
        let (service, _) = key_for(&gw, &app, &[]).await;
        let mut sv = Browser::new(&gw.base);
        assert_eq!(sv.sign_in(&service).await.status(), 303);
        let r = sv.get("/console").await;
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("usage.read on tenant"));

        // A key gets no role its maker lacks: the tenant admin cannot mint a security admin.
        let mint = |roles: serde_json::Value| {
            gw.client
                .post(format!("{}/admin/v1/tenants/acme/keys", gw.base))
                .bearer_auth(&admin)
                .json(&json!({"team": "ml", "app": "bot", "roles": roles, "why": "console"}))
                .send()
        };
        let r = mint(json!(["security-admin"])).await.unwrap();
        assert_eq!(r.status(), 400, "{}", db.name);
        assert!(r.text().await.unwrap().contains("no role its maker lacks"));
        let r = mint(json!(["tenant-admin"])).await.unwrap();
        assert_eq!(r.status(), 201);
        let made: serde_json::Value = r.json().await.unwrap();
        assert_eq!(made["roles"], json!(["tenant-admin"]));

        // Signing out needs the token too; after it, a copy of the cookie opens nothing here.
        let copied = b.cookies["custos_session"].clone();
        let r = b.post("/console/signout", &[], None).await;
        assert_eq!(r.status(), 403);
        let csrf = csrf_of(&b.get("/console").await.text().await.unwrap());
        let r = b.post("/console/signout", &[("csrf", &csrf)], None).await;
        assert_eq!(r.status(), 303);
        assert!(!b.cookies.contains_key("custos_session"));
        b.cookies.insert("custos_session".into(), copied);
        assert_eq!(b.get("/console").await.status(), 303);

        // A form body past 64 KiB is refused before it is read further; without a session
        // it is never read at all.
        let big = "x".repeat(70 * 1024);
        assert_eq!(f_big(&mut op, &big).await, 413);
        assert_eq!(f_big(&mut b, &big).await, 303);

        // A forged or altered cookie is not a session.
        let mut f = Browser::new(&gw.base);
        f.cookies
            .insert("custos_session".into(), "eyJtIjoia2V5In0.AAAA".into());
        assert_eq!(f.get("/console").await.status(), 303);
        let r = f.get("/console/assets/console.css").await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css"));
        assert_eq!(
            f.get("/console/assets/../../etc/passwd").await.status(),
            404
        );
    }
}

#[tokio::test]
async fn the_console_is_off_when_configured_so() {
    let dbs = databases("console_off").await;
    let gw = start(&dbs[0], "[console]\nenabled = false\n").await;
    let r = gw
        .client
        .get(format!("{}/console", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Runs the sign-in at the provider as a browser would: the console's start, the provider's
/// authorization, and the callback; returns the callback's answer.
async fn oidc_sign_in(b: &mut Browser, next: &str) -> reqwest::Response {
    let r = b.get(&format!("/console/signin/oidc?next={next}")).await;
    assert_eq!(r.status(), 303);
    let at_provider = location(&r);
    let r = b.http.get(&at_provider).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    let path = back.strip_prefix(&b.base).unwrap().to_owned();
    b.get(&path).await
}

#[tokio::test]
async fn people_sign_in_at_the_oidc_provider_with_pkce() {
    let idp = oidc_provider().await;
    let dbs = databases("console_oidc").await;
    let toml = format!(
        "[[auth.jwt]]\nissuer = \"{b}\"\naudience = \"custos\"\njwks_url = \"{b}/jwks\"\ntenants = [\"acme\"]\n\n[console.oidc]\nissuer = \"{b}\"\nclient_id = \"custos-console\"\n",
        b = idp.base
    );
    let gw = start(&dbs[0], &toml).await;
    let mut b = Browser::new(&gw.base);
    let page = b.get("/console/signin").await.text().await.unwrap();
    assert!(page.contains("Sign in with 127.0.0.1"), "{page}");

    // The whole flow: alice lands where she was going, as the principal the API knows.
    let r = oidc_sign_in(&mut b, "%2Fconsole%2Fspend").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("url=/console/spend"), "{page}");
    assert!(b.cookies.contains_key("custos_session") && !b.cookies.contains_key("custos_oidc"));
    let page = b.get("/console/spend").await.text().await.unwrap();
    assert!(page.contains("Spend") && page.contains(">alice<"), "{page}");
    assert_eq!(b.get("/console/access").await.status(), 200);
    gw.state.audit.flush().await;
    let size = gw.store.ledger_size().await.unwrap();
    let entries = gw.store.ledger_entries(0, size as i64).await.unwrap();
    assert!(entries
        .iter()
        .any(|e| e.event.contains("\"console.signin\"") && e.event.contains("\"user\"")));

    // A change the policies want a second factor for: alice's sign-in has none, so the page
    // offers to step up; the provider is asked to authenticate again, and then it is done.
    let (_, victim) = key_for(&gw, &gw.app_id.clone(), &[]).await;
    let page = b.get("/console/access").await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let revoke = format!("/console/access/keys/{victim}/revoke");
    let r = b
        .post(&revoke, &[("csrf", &csrf), ("why", "rotation")], None)
        .await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("A second factor is needed") && page.contains("step_up=1"),
        "{page}"
    );
    let r = oidc_sign_in(&mut b, "%2Fconsole%2Faccess&step_up=1").await;
    assert_eq!(r.status(), 200);
    let csrf = csrf_of(&b.get("/console/access").await.text().await.unwrap());
    let r = b
        .post(&revoke, &[("csrf", &csrf), ("why", "rotation")], None)
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());

    // A callback nobody started here, or whose state differs, is refused; so is a code
    // replayed after the flight ended.
    let mut m = Browser::new(&gw.base);
    let r = m.get("/console/auth/callback?code=x&state=y").await;
    assert_eq!(r.status(), 400);
    let r = m.get("/console/signin/oidc").await;
    let at_provider = location(&r);
    let back = location(&m.http.get(&at_provider).send().await.unwrap());
    let path = back.strip_prefix(&m.base).unwrap().to_owned();
    let forged = path.replace("state=", "state=0");
    assert_eq!(m.get(&forged).await.status(), 400);
    let redeemed = idp.codes_redeemed.load(std::sync::atomic::Ordering::SeqCst);
    let r = m.get(&path).await;
    assert_eq!(r.status(), 400, "the forged attempt ended the flight");
    assert_eq!(
        idp.codes_redeemed.load(std::sync::atomic::Ordering::SeqCst),
        redeemed
    );

    // The provider's refusal, a token without the admin scope, an ID token for another
    // sign-in: each is refused with the reason, and no session starts.
    let mut m = Browser::new(&gw.base);
    let r = m.get("/console/signin/oidc").await;
    let state = location(&r)
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let r = m
        .get(&format!(
            "/console/auth/callback?error=access_denied&error_description=no&state={state}"
        ))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("refused the sign-in: access_denied"));
    *idp.mode.lock().unwrap() = "no-admin-scope";
    let r = oidc_sign_in(&mut m, "").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("custos:admin"));
    *idp.mode.lock().unwrap() = "bad-nonce";
    let r = oidc_sign_in(&mut m, "").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("nonce"));
    assert!(!m.cookies.contains_key("custos_session"));
}

#[tokio::test]
async fn the_models_page_checks_signatures_against_the_trusted_keys() {
    use custos_govern::models::{bundle, card, keys, manifest, registry};
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    std::fs::write(weights.join("model.safetensors"), vec![7u8; 4096]).unwrap();
    std::fs::write(weights.join("config.json"), "{}").unwrap();
    let m = manifest::hash(&weights, &manifest::Options::default(), None).unwrap();
    let reg = registry::describe(&weights, &m).unwrap();
    let (key, _) = keys::SigningKey::generate(keys::Curve::P256).unwrap();
    let (stranger, _) = keys::SigningKey::generate(keys::Curve::P256).unwrap();
    let pem = dir.path().join("release.pub");
    std::fs::write(&pem, key.public_key().to_pem()).unwrap();
    let toml = format!(
        "[[registry.trust]]\npublic_key = \"{}\"\nnames = [\"tiny*\"]\n",
        pem.display()
    );
    let dbs = databases("console_models").await;
    let gw = start(&dbs[0], &toml).await;
    let op = custos_control::Actor::local("steward");
    let why = |w: &str| custos_core::Reason::new(Some(w), None).unwrap();
    for (version, signer) in [("1.0", &key), ("2.0", &stranger)] {
        gw.state
            .control
            .register_model(
                &op,
                custos_control::NewModel {
                    name: "tiny".into(),
                    version: version.into(),
                    kind: registry::Kind::Weights,
                    manifest_digest: Some(m.digest()),
                    registration: reg.clone(),
                },
                &why("fine-tune"),
            )
            .await
            .unwrap();
        let signed = bundle::sign(&m.statement(), signer).unwrap().to_string();
        gw.state
            .control
            .sign_model(
                &op,
                "tiny",
                version,
                &signed,
                &signer.public_key(),
                &why("sign"),
            )
            .await
            .unwrap();
        let mut text = card::model_template(&card::Facts {
            name: "tiny".into(),
            version: version.into(),
            manifest_digest: Some(m.digest()),
            registration: reg.clone(),
            metrics: None,
            cost: None,
        });
        text.push_str("\n<script>alert(1)</script>\n[click](javascript:alert(1))\n");
        let envelope = card::sign("tiny", version, Some(&m.digest()), &text, signer).unwrap();
        gw.state
            .control
            .attach_card(
                &op,
                "tiny",
                version,
                &custos_control::SignedCard {
                    text: &text,
                    envelope: &envelope,
                    key: &signer.public_key(),
                },
                &why("card"),
            )
            .await
            .unwrap();
    }
    let mut b = Browser::new(&gw.base);
    let (admin, _) = key_for(&gw, &gw.app_id.clone(), &["tenant-admin"]).await;
    assert_eq!(b.sign_in(&admin).await.status(), 303);
    let page = b.get("/console/models").await.text().await.unwrap();
    let row = |v: &str| {
        let at = page.find(&format!("tiny@{v}")).unwrap();
        page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
    };
    // Signed by the trusted key: both signatures verify; by another key: neither does.
    assert_eq!(
        row("1.0").matches(">verified<").count(),
        2,
        "{}",
        row("1.0")
    );
    assert_eq!(
        row("2.0").matches(">not verified<").count(),
        2,
        "{}",
        row("2.0")
    );
    let page = b
        .get("/console/models/tiny/1.0")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<h1>") && page.contains("Model card"),
        "{page}"
    );
    // The card is rendered, its raw HTML shown as text and its script link dropped.
    assert!(
        !page.contains("<script>alert") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("javascript:"), "{page}");
    // Its history: registered, signed, card attached, each linked to its ledger entry.
    assert!(
        page.matches("href=\"/console/audit/").count() >= 3,
        "{page}"
    );
    assert_eq!(b.get("/console/models/tiny/9.9").await.status(), 404);
}

#[tokio::test]
async fn the_spend_page_flags_a_day_that_strays_from_its_baseline() {
    for db in databases("console_anomaly").await {
        let gw = start(&db, "").await;
        let today = custos_core::time::now_ms().div_euclid(86_400_000);
        // Six weeks of a dollar and some cents a day for team ml; yesterday, twenty.
        let records: Vec<_> = (1..=42)
            .map(|ago| {
                let cost = if ago == 1 {
                    "20".to_owned()
                } else {
                    format!("1.{:02}", (ago * 7) % 20)
                };
                custos_store::sample_record(
                    &format!("u{ago:03}"),
                    "acme",
                    "ml",
                    (today - ago) * 86_400_000 + 3_600_000,
                    cost.parse().unwrap(),
                )
            })
            .collect();
        gw.store.usage_insert(&records).await.unwrap();
        let mut b = Browser::new(&gw.base);
        let (admin, _) = key_for(&gw, &gw.app_id.clone(), &["finops-viewer"]).await;
        assert_eq!(b.sign_in(&admin).await.status(), 303);
        let page = b
            .get("/console/spend?window=90d")
            .await
            .text()
            .await
            .unwrap();
        let at = page
            .find("<h2>Anomalies</h2>")
            .expect("an anomalies section");
        let section = &page[at..page[at..]
            .find("<h2>Budgets")
            .map_or(page.len(), |e| at + e)];
        let yesterday = custos_core::time::format_rfc3339((today - 1) * 86_400_000);
        assert!(
            section.contains(&yesterday[..10]) && section.contains("20.0000"),
            "{db:?}: {section}",
            db = db.name
        );
        assert_eq!(
            section.matches("<tr>").count(),
            2,
            "only yesterday: {section}"
        );
    }
}

/// Posts an oversized reason to the access review form; the status answered.
async fn f_big(b: &mut Browser, why: &str) -> u16 {
    b.post("/console/access/review", &[("why", why)], None)
        .await
        .status()
        .as_u16()
}

/// A release of `acme`'s `ml/bot` pinning prompt `version` (digest from `seed`), approved as
/// owner and promoted by the local operator (this test's tiers ask for the owner alone).
async fn promoted_release(gw: &TestGateway, version: &str, seed: &str) -> String {
    use custos_govern::release::tier::{Composite, Pin};
    let operator = custos_control::Actor::local("ops");
    let why = custos_core::Reason::new(Some("ship"), None).unwrap();
    let id = gw
        .state
        .control
        .create_release(
            &operator,
            custos_control::NewRelease {
                tenant: "acme".into(),
                app: "ml/bot".into(),
                composite: Composite {
                    prompt: Some(Pin {
                        name: "svc".into(),
                        version: version.into(),
                        digest: seed.repeat(32),
                        pii: false,
                    }),
                    ..Composite::default()
                },
                requested_tier: None,
                flags: Default::default(),
                evidence: Vec::new(),
            },
            &why,
        )
        .await
        .unwrap()
        .value
        .release
        .id;
    gw.state
        .control
        .decide_release(
            &custos_control::Actor::local("owner"),
            &id,
            "owner",
            true,
            &why,
        )
        .await
        .unwrap();
    let promoted = gw
        .state
        .control
        .promote_release(&operator, &id, &[], &why)
        .await
        .unwrap();
    assert_eq!(promoted.value.release.state, "active");
    id
}

#[tokio::test]
async fn operators_reconcile_bills_read_the_risk_register_and_roll_back_releases() {
    use custos_finops::billing::LineItem;
    for db in databases("console_operators").await {
        let up = upstream(axum::Router::new()).await;
        let dir = tempfile::tempdir().unwrap();
        let risks = dir.path().join("risks.yaml");
        std::fs::write(
            &risks,
            "system: support-bot\nrisks:\n  - id: R-PROMPT\n    title: Prompt injection <leaks> tools\n    \
             surface: prompt\n    threat: tampering\n    likelihood: likely\n    impact: major\n    \
             owner: risk@example.com\n    mitigation: screen what models read\n    due: 2099-01-01\n    \
             status: open\n",
        )
        .unwrap();
        let config = format!(
            "{}\n[release.tiers.high]\napprovals = [\"owner\"]\nevidence = []\n\n[release.tiers.low]\napprovals = [\"owner\"]\nevidence = []\n\n[console]\nrisks = {:?}\n",
            upstream_config(up, "m", ""),
            risks.display().to_string()
        );
        let gw = start(&db, &config).await;
        let app = gw.app_id.clone();
        let (operator, _) = key_for(&gw, &app, &["operator"]).await;
        let (admin, _) = key_for(&gw, &app, &["tenant-admin", "owner"]).await;

        // A bill of this month: one line tagged Team=ml, one untagged.
        let now = custos_core::time::now_ms();
        let item = |row: u64, team: Option<&str>, cost: &str| LineItem {
            row,
            provider: "OpenAI".into(),
            billing_account: "1".into(),
            sub_account: "2".into(),
            service: "API".into(),
            service_category: "AI and Machine Learning".into(),
            charge_category: "Usage".into(),
            period_start_ms: now - 3_600_000,
            period_end_ms: now - 60_000,
            billed_cost: cost.parse::<Amount>().unwrap(),
            effective_cost: cost.parse::<Amount>().unwrap(),
            list_cost: cost.parse::<Amount>().unwrap(),
            currency: Currency::USD,
            region: "us".into(),
            resource_id: String::new(),
            sku: "gpt-4o".into(),
            description: "input tokens".into(),
            tags: team
                .map(|t| [("Team".to_owned(), t.to_owned())].into_iter().collect())
                .unwrap_or_default(),
        };
        gw.store
            .billing_insert(
                &"cd".repeat(32),
                vec![item(1, Some("ml"), "9"), item(2, None, "1")],
            )
            .await
            .unwrap();

        let mut op = Browser::new(&gw.base);
        assert_eq!(op.sign_in(&operator).await.status(), 303);
        let page = op
            .get("/console/spend?window=7d")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("Reconciliation with the bills")
                && page.contains("(untagged)")
                && page.contains("10.00%")
                && page.contains("over tolerance"),
            "{}: {page}",
            db.name
        );
        // A wider tolerance passes it; a tolerance that is no percentage says so.
        let page = op
            .get("/console/spend?window=7d&reconcile_tag=Team&tolerance=20")
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("within tolerance"), "{page}");
        let page = op
            .get("/console/spend?window=7d&tolerance=200")
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("between 0 and 100"), "{page}");
        let page = op
            .get("/console/spend?window=7d&reconcile_tag=bad%20tag")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("notice error") && !page.contains("(untagged)"),
            "{page}"
        );
        let page = op
            .get("/console/spend?window=7d&provider_map=openai")
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("gateway=billing pairs"), "{page}");

        // The register: its lint (fewer than ten risks), heat map and open risks, escaped.
        let page = op.get("/console/access").await.text().await.unwrap();
        assert!(
            page.contains("Risk register — support-bot")
                && page.contains("R-PROMPT")
                && page.contains("Prompt injection &lt;leaks&gt; tools")
                && page.contains("risk heat map")
                && page.contains("1 errors"),
            "{page}"
        );
        assert!(!page.contains("<leaks>"));
        // A register that is not UTF-8, or gone, is said so; the page still answers.
        std::fs::write(&risks, b"risks:\n  - id: \xff\xfe\n").unwrap();
        let page = op.get("/console/access").await.text().await.unwrap();
        assert!(
            page.contains("not UTF-8") && page.contains("API keys"),
            "{page}"
        );
        std::fs::remove_file(&risks).unwrap();
        let r = op.get("/console/access").await;
        assert_eq!(r.status(), 200);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("The register could not be read"));

        // A tenant admin sees neither the bills nor the register.
        let mut b = Browser::new(&gw.base);
        assert_eq!(b.sign_in(&admin).await.status(), 303);
        let page = b.get("/console/spend").await.text().await.unwrap();
        assert!(!page.contains("Reconciliation"), "{page}");
        let page = b.get("/console/access").await.text().await.unwrap();
        assert!(!page.contains("Risk register"), "{page}");

        // Two releases promoted in turn; the second is rolled back here, with a reason.
        let first = promoted_release(&gw, "1.0.0", "a1").await;
        let second = promoted_release(&gw, "1.0.1", "b2").await;
        let path = format!("/console/releases/{second}");
        let page = b.get(&path).await.text().await.unwrap();
        assert!(page.contains("Roll back"), "{page}");
        let csrf = csrf_of(&page);
        let decide = format!("{path}/decide");
        let r = b
            .post(&decide, &[("csrf", &csrf), ("decision", "rollback")], None)
            .await;
        assert_eq!(r.status(), 400, "a rollback says why");
        let r = b
            .post(
                &decide,
                &[
                    ("csrf", &csrf),
                    ("decision", "rollback"),
                    ("why", "error rate doubled"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), 303, "{}", db.name);
        assert!(location(&r).contains("done=rolled-back"));
        assert_eq!(gw.store.release(&first).await.unwrap().state, "active");
        assert_eq!(
            gw.store.release(&second).await.unwrap().state,
            "rolled back"
        );
        let entries = gw.store.ledger_entries(0, 10_000).await.unwrap();
        let rollback = entries
            .iter()
            .rev()
            .find(|e| e.event.contains("\"release.rollback\""))
            .expect("the rollback is in the ledger");
        assert!(rollback.event.contains("error rate doubled"));
        // Nothing is left to roll back to: the form is refused with the reason.
        let page = b
            .get(&format!("/console/releases/{first}"))
            .await
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&page);
        let r = b
            .post(
                &format!("/console/releases/{first}/decide"),
                &[("csrf", &csrf), ("decision", "rollback"), ("why", "again")],
                None,
            )
            .await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("no earlier release"));
    }
}
