//! Test harness: a real gateway on a loopback port over a real SQLite file or a fresh real
//! PostgreSQL database, keys minted through the store as the CLI does, and small upstream
//! servers that play a provider.
#![allow(dead_code)]

use axum::Router;
use custos_core::Config;
use custos_gateway::Gateway;
use custos_store::testkit::Seed as _;
use custos_store::{testkit, NewKey, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub struct Db {
    pub url: String,
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
}

/// SQLite always; PostgreSQL too when `CUSTOS_TEST_POSTGRES_URL` is set.
pub async fn databases(test: &str) -> Vec<Db> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = vec![Db {
        url: format!("sqlite://{}", dir.path().join("custos.db").display()),
        name: "sqlite",
        _dir: Some(dir),
    }];
    if let Some(url) = testkit::fresh_postgres(test)
        .await
        .expect("create test database")
    {
        out.push(Db {
            url,
            name: "postgres",
            _dir: None,
        });
    }
    out
}

pub struct TestGateway {
    pub base: String,
    pub store: Store,
    pub app_id: String,
    pub client: reqwest::Client,
    pub state: custos_gateway::state::AppState,
    server: tokio::task::JoinHandle<()>,
    _gateway_drop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn config(toml: &str) -> Config {
    Config::from_toml(toml, Path::new("test.toml")).expect("test config")
}

/// Starts a gateway with `toml` on `db`, creating tenant `acme`, team `ml`, app `bot`.
pub async fn start(db: &Db, toml: &str) -> TestGateway {
    let store = Store::open(&db.url).await.expect("open store");
    store.ensure_tenant("acme").await.unwrap();
    let app_id = match store.app("acme", "ml", "bot").await {
        Ok(a) => a.id,
        Err(_) => {
            store.create_team("acme", "ml", None, None).await.unwrap();
            store.create_app("acme", "ml", "bot").await.unwrap().id
        }
    };
    start_on(store, app_id, toml).await
}

pub async fn start_on(store: Store, app_id: String, toml: &str) -> TestGateway {
    let mut cfg = config(toml);
    cfg.server.key_refresh_interval =
        custos_core::config::HumanDuration(Duration::from_millis(200));
    let gateway = Gateway::new(cfg, store.clone()).await.expect("gateway");
    let state = gateway.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = gateway
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    TestGateway {
        base: format!("http://{addr}"),
        store,
        app_id,
        state,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        server,
        _gateway_drop: tx,
    }
}

#[derive(Default, Clone)]
pub struct KeySpec {
    pub models: Option<&'static str>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub expires_at: Option<i64>,
}

impl TestGateway {
    /// Mints a key the way `custos keys create` does and waits until the gateway knows it.
    pub async fn key(&self, spec: KeySpec) -> (String, String) {
        let minted = custos_authz::api_key::mint().unwrap();
        let row = self
            .store
            .insert_key(&NewKey {
                digest_hex: minted.digest.to_hex(),
                prefix: minted.display_prefix.clone(),
                name: None,
                app_id: self.app_id.clone(),
                env: "prod".into(),
                models: spec.models.unwrap_or("*").into(),
                rpm: spec.rpm,
                tpm: spec.tpm,
                expires_at: spec.expires_at,
                roles: Vec::new(),
            })
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let r = self.get("/v1/models", &minted.secret).await;
            if r.status() == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway never saw the new key"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (minted.secret, row.id)
    }

    /// The Prometheus exposition, as text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, key: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

pub fn chat(model: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Asserts a problem+json response of the given status and slug; returns its body.
pub async fn expect_problem(r: reqwest::Response, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status, "status for {slug}");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert!(r.headers().contains_key("x-request-id"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("https://custos.dev/problems/{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    let openai_code = match slug {
        s if s.contains("api-key") || s.starts_with("token-") => "invalid_api_key",
        "rate-limit-requests" | "rate-limit-tokens" => "rate_limit_exceeded",
        "budget-exhausted" => "insufficient_quota",
        "model-not-found" => "model_not_found",
        other => other,
    };
    assert_eq!(body["error"]["code"], openai_code, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// Serves `app` on a loopback port; returns its address.
pub async fn upstream(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A config routing `model` to an OpenAI-compatible provider at `addr`.
pub fn upstream_config(addr: SocketAddr, model: &str, extra_provider: &str) -> String {
    format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"http://{addr}/v1\"\n{extra_provider}\n\n\
         [[models]]\nname = \"{model}\"\nprovider = \"up\"\nupstream = \"{model}-upstream\"\n"
    )
}

pub type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Captures webhook deliveries: (signature header, body).
pub async fn webhook_receiver() -> (SocketAddr, Deliveries) {
    let seen: Deliveries = Default::default();
    let s = seen.clone();
    let addr = upstream(Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let sig = headers
                    .get("x-custos-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                s.lock().unwrap().push((sig, body));
                "ok"
            }
        }),
    ))
    .await;
    (addr, seen)
}

/// Declares the tools app `acme/ml/bot` uses, through the control plane, and reloads them.
pub async fn declare(gw: &TestGateway, tools: &[&str]) {
    gw.state
        .control
        .set_app_tools(
            &custos_control::Actor::local("test"),
            "acme",
            "ml",
            "bot",
            Some(tools.iter().map(|t| t.to_string()).collect()),
            &custos_core::Reason::default(),
        )
        .await
        .unwrap();
    gw.state.directory.refresh(&gw.store).await.unwrap();
}

/// The `model.invoke` events of the ledger, oldest first.
pub async fn invoke_events(gw: &TestGateway) -> Vec<serde_json::Value> {
    gw.state.audit.flush().await;
    gw.store
        .ledger_entries(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.event).unwrap())
        .filter(|e| e["activity"] == "model.invoke")
        .collect()
}

/// A small OIDC provider on loopback: discovery, an authorization endpoint that signs in
/// "alice" at once, a token endpoint that checks the code, redirect URI and PKCE verifier,
/// and its key set. `mode` makes it misbehave on purpose.
pub struct Provider {
    pub base: String,
    pub mode: std::sync::Arc<std::sync::Mutex<&'static str>>,
    pub codes_redeemed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn oidc_provider() -> Provider {
    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    type Codes = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;
    #[derive(Clone)]
    struct Idp {
        issuer: Arc<custos_authz::testkit::TestIssuer>,
        codes: Codes,
        mode: Arc<Mutex<&'static str>>,
        redeemed: Arc<std::sync::atomic::AtomicUsize>,
    }
    let idp = Idp {
        issuer: Arc::new(custos_authz::testkit::TestIssuer::new(&base)),
        codes: Default::default(),
        mode: Arc::new(Mutex::new("ok")),
        redeemed: Default::default(),
    };
    let out = Provider {
        base: base.clone(),
        mode: idp.mode.clone(),
        codes_redeemed: idp.redeemed.clone(),
    };
    let b = base.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let b = b.clone();
                async move {
                    axum::Json(serde_json::json!({"issuer": b, "authorization_endpoint": format!("{b}/authorize"),
                        "token_endpoint": format!("{b}/token"), "jwks_uri": format!("{b}/jwks"),
                        "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"]}))
                }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(|State(idp): State<Idp>| async move { idp.issuer.jwks() }),
        )
        .route(
            "/authorize",
            axum::routing::get(
                |State(idp): State<Idp>, Query(q): Query<HashMap<String, String>>| async move {
                    assert_eq!(q["response_type"], "code");
                    assert_eq!(q["code_challenge_method"], "S256");
                    assert_eq!(q["client_id"], "custos-console");
                    assert!(q["scope"].split(' ').any(|s| s == "openid"));
                    let code = format!("code-{}", q["state"]);
                    let back = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
                    idp.codes.lock().unwrap().insert(code, q);
                    (axum::http::StatusCode::SEE_OTHER, [("location", back)]).into_response()
                },
            ),
        )
        .route(
            "/token",
            axum::routing::post(
                |State(idp): State<Idp>, body: axum::body::Bytes| async move {
                    let f: HashMap<String, String> =
                        url::form_urlencoded::parse(&body).into_owned().collect();
                    use base64::Engine as _;
                    use sha2::Digest as _;
                    let refuse = |e: &str| {
                        (axum::http::StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": e})))
                            .into_response()
                    };
                    let Some(asked) = idp.codes.lock().unwrap().remove(&f["code"]) else {
                        return refuse("invalid_grant");
                    };
                    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(f["code_verifier"].as_bytes()));
                    if f["grant_type"] != "authorization_code"
                        || challenge != asked["code_challenge"]
                        || f["redirect_uri"] != asked["redirect_uri"]
                        || f["client_id"] != asked["client_id"]
                    {
                        return refuse("invalid_grant");
                    }
                    idp.redeemed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mode = *idp.mode.lock().unwrap();
                    let now = custos_core::time::now_ms() / 1000;
                    let mut access = idp.issuer.claims("alice", "custos", now);
                    access["tenant"] = serde_json::json!("acme");
                    access["roles"] = serde_json::json!(["tenant-admin"]);
                    access["scope"] = serde_json::json!(if mode == "no-admin-scope" { "openid" } else { "openid custos:admin" });
                    // A sign-in asked to step up authenticates again with a second factor.
                    if asked.get("prompt").map(String::as_str) == Some("login")
                        && asked.get("acr_values").is_some_and(|a| a.contains("multi-factor"))
                    {
                        access["amr"] = serde_json::json!(["pwd", "otp"]);
                    }
                    let mut id = idp.issuer.claims("alice", "custos-console", now);
                    id["nonce"] = serde_json::json!(if mode == "bad-nonce" { "replayed".to_owned() } else { asked["nonce"].clone() });
                    axum::Json(serde_json::json!({"access_token": idp.issuer.token(&access),
                        "id_token": idp.issuer.token(&id), "token_type": "Bearer", "expires_in": 3600}))
                    .into_response()
                },
            ),
        )
        .with_state(idp);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    out
}

/// Checks an entry proof as `custos audit prove` writes it (and the console serves it):
/// the checkpoint's signature by `public_key`, then the audit path from the event's leaf to
/// the checkpoint's root. Panics, saying where, when either fails.
pub fn verify_entry_proof(proof: &serde_json::Value, public_key: &str) {
    let checkpoint = custos_ledger::NoteVerifier::from_key(public_key)
        .unwrap()
        .open(proof["checkpoint"].as_str().unwrap())
        .unwrap();
    let path: Vec<[u8; 32]> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    custos_ledger::verify_inclusion(
        proof["index"].as_u64().unwrap(),
        checkpoint.size,
        &custos_ledger::leaf_hash(proof["event"].as_str().unwrap().as_bytes()),
        &path,
        &checkpoint.root,
    )
    .unwrap();
}
