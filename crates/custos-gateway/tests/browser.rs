//! The console in a real browser: Debian's Chromium driven over WebDriver by its
//! ChromeDriver. Sign in with a key, visit every page, verify an audit entry's inclusion
//! proof with the page's own script (Web Crypto, under the strict CSP), download the proof
//! and check it here, approve a release, sign out. Screenshots of each page are written for
//! inspection. Skipped, saying why, when Chromium or ChromeDriver is not installed
//! (`./dev test` installs both as root).

mod common;

use base64::Engine as _;
use common::*;
use custos_store::testkit::Seed as _;
use custos_store::NewKey;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var(var)
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(default));
    p.exists().then_some(p)
}

/// A ChromeDriver process and one headless Chromium session in it.
struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    shots: PathBuf,
    driver: std::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(chromium: &Path, driver: &Path, downloads: &Path, shots: PathBuf) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--no-default-browser-check"],
                "prefs": {"download.default_directory": downloads,
                          "download.prompt_for_download": false}
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            http,
            session,
            base,
            shots,
            driver: child,
        }
    }

    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        match v["value"].get("error") {
            None => Ok(v["value"].clone()),
            Some(_) => Err(v["value"].clone()),
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// Runs `f` on the element `css` names, looking it up again while the page is still
    /// being replaced (a form's answer loading), for at most 15 s.
    async fn on(&self, css: &str, action: &str, body: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .try_cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            let err = match found {
                Ok(v) => {
                    let e = v[ELEMENT].as_str().unwrap().to_owned();
                    let method = if action == "text" {
                        reqwest::Method::GET
                    } else {
                        reqwest::Method::POST
                    };
                    let body = (action != "text").then(|| body.clone());
                    match self
                        .try_cmd(method, &format!("/element/{e}/{action}"), body)
                        .await
                    {
                        Ok(v) => return v,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            let retry = matches!(
                err["error"].as_str(),
                Some("stale element reference" | "no such element")
            );
            assert!(
                retry && Instant::now() < deadline,
                "WebDriver {action} on {css}: {err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn click(&self, css: &str) {
        self.on(css, "click", json!({})).await;
    }

    async fn fill(&self, css: &str, text: &str) {
        self.on(css, "clear", json!({})).await;
        self.on(css, "value", json!({"text": text})).await;
    }

    async fn text(&self, css: &str) -> String {
        self.on(css, "text", Value::Null)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits (at most 15 s) until `css`'s text satisfies `ok`; returns it.
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never read as expected: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most 15 s) until the page's address satisfies `ok`; returns it.
    async fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let u = self.url().await;
            if ok(&u) {
                return u;
            }
            assert!(Instant::now() < deadline, "never arrived: {u}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let (Some(chromium), Some(driver)) = (
        tool("CUSTOS_TEST_CHROMIUM", "/usr/bin/chromium"),
        tool("CUSTOS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        eprintln!("skipped: Chromium or ChromeDriver is not installed (apt-get install chromium chromium-driver; ./dev test does as root)");
        return;
    };
    let dbs = databases("console_browser").await;
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = custos_ledger::generate_key("console.test/ledger").unwrap();
    let key_file = dir.path().join("ledger.key");
    std::fs::write(&key_file, &private).unwrap();
    let up = upstream(axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            axum::Json(json!({"id":"c1","object":"chat.completion","model":"m",
                "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                "usage": {"prompt_tokens": 800, "completion_tokens": 200, "total_tokens": 1000}}))
        }),
    ))
    .await;
    let idp = oidc_provider().await;
    let toml = format!(
        "{}\n[audit]\ncheckpoint_key_file = \"{}\"\ncheckpoint_interval = \"1h\"\ncheckpoint_every = 1000000\n\n\
         [[auth.jwt]]\nissuer = \"{b}\"\naudience = \"custos\"\njwks_url = \"{b}/jwks\"\ntenants = [\"acme\"]\n\n\
         [console.oidc]\nissuer = \"{b}\"\nclient_id = \"custos-console\"\n",
        upstream_config(up, "m", ""),
        key_file.display(),
        b = idp.base
    );
    let gw = start(&dbs[0], &toml).await;
    gw.store
        .prices_upsert(&[custos_finops::Price {
            provider: "up".into(),
            model: "m-upstream".into(),
            effective_from: 0,
            currency: custos_finops::Currency::USD,
            rates: custos_finops::Rates {
                input_per_1m: "2.50".parse().unwrap(),
                output_per_1m: "10".parse().unwrap(),
                ..Default::default()
            },
        }])
        .await
        .unwrap();
    gw.state.finops.refresh(&gw.store).await.unwrap();
    let minted = custos_authz::api_key::mint().unwrap();
    gw.store
        .insert_key(&NewKey {
            digest_hex: minted.digest.to_hex(),
            prefix: minted.display_prefix.clone(),
            name: Some("console".into()),
            app_id: gw.app_id.clone(),
            env: "prod".into(),
            models: "*".into(),
            rpm: None,
            tpm: None,
            expires_at: None,
            roles: vec!["tenant-admin".into(), "owner".into()],
        })
        .await
        .unwrap();
    gw.state.keys.refresh(&gw.store).await.unwrap();
    let key = minted.secret;
    for _ in 0..5 {
        let r = gw
            .post("/v1/chat/completions", &key, &chat("m", "hello"))
            .await;
        assert_eq!(r.status(), 200);
    }
    gw.state.finops.usage.flush().await;
    let release = gw
        .state
        .control
        .create_release(
            &custos_control::Actor::local("author"),
            custos_control::NewRelease {
                tenant: "acme".into(),
                app: "ml/bot".into(),
                composite: custos_govern::release::tier::Composite {
                    prompt: Some(custos_govern::release::tier::Pin {
                        name: "support".into(),
                        version: "2.0.0".into(),
                        digest: "cd".repeat(32),
                        pii: false,
                    }),
                    ..Default::default()
                },
                requested_tier: None,
                flags: Default::default(),
                evidence: Vec::new(),
            },
            &custos_core::Reason::new(Some("new support prompt"), Some("CHG-7")).unwrap(),
        )
        .await
        .unwrap()
        .value
        .release
        .id;
    let signer = custos_ledger::NoteSigner::from_key(&private).unwrap();
    let anchors =
        custos_gateway::anchor::Anchors::new(&custos_core::config::AuditConfig::default()).unwrap();
    gw.state.audit.flush().await;
    custos_gateway::audit::sign_checkpoint(&gw.store, &signer, &anchors)
        .await
        .unwrap();

    let downloads = tempfile::tempdir().unwrap();
    let shots = std::env::var("CUSTOS_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    let b = Browser::start(&chromium, &driver, downloads.path(), shots.clone()).await;

    // Sign in: the console sends the browser to the form and back.
    b.go(&format!("{}/console/spend", gw.base)).await;
    assert!(b.url().await.contains("/console/signin?next="));
    b.screenshot("0-signin").await;
    b.fill("input[name=key]", &key).await;
    b.click("form button[type=submit]").await;
    b.wait_url(|u| u.ends_with("/console/spend")).await;

    // Every page, as the navigation reaches it.
    b.go(&format!("{}/console", gw.base)).await;
    assert_eq!(b.text("h1").await, "Overview");
    assert!(b.text("main").await.contains("ml/bot"));
    b.screenshot("1-overview").await;
    b.click("nav a[href^='/console/spend']").await;
    assert_eq!(b.text("h1").await, "Spend");
    b.screenshot("2-spend").await;
    b.click("nav a[href^='/console/access']").await;
    assert_eq!(b.text("h1").await, "Access");
    b.screenshot("4-access").await;
    b.click("nav a[href^='/console/models']").await;
    assert_eq!(b.text("h1").await, "Models");

    // Audit: find the release's creation, open it, verify its proof in the page.
    b.click("nav a[href^='/console/audit']").await;
    b.fill("input[name=activity]", "release.create").await;
    b.click("form.filters button[type=submit]").await;
    b.click("table a[href^='/console/audit/']").await;
    assert!(b.text("h1").await.starts_with("Ledger entry"));
    assert_eq!(
        b.text("#pubkey").await.trim(),
        public.trim(),
        "the page offers the gateway's key"
    );
    b.click("#verify").await;
    let verdict = b
        .wait_text("#verify-result", |t| {
            t.starts_with("Verified") || t.starts_with("NOT")
        })
        .await;
    assert!(verdict.starts_with("Verified: entry"), "{verdict}");
    b.cmd(
        reqwest::Method::POST,
        "/execute/sync",
        Some(json!({"script": "document.getElementById('verify-result').scrollIntoView({block: 'center'});", "args": []})),
    )
    .await;
    b.screenshot("3-audit-verified").await;
    // A key that did not sign the checkpoint: the same page says NOT verified.
    let (_, other) = custos_ledger::generate_key("console.test/ledger").unwrap();
    b.fill("#pubkey", &other).await;
    b.click("#verify").await;
    let verdict = b
        .wait_text("#verify-result", |t| t.starts_with("NOT"))
        .await;
    assert!(verdict.contains("no signature by"), "{verdict}");
    // A proof whose event was altered: the path no longer leads to the signed root.
    b.fill("#pubkey", &public).await;
    let tampered = b
        .cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": "var done = arguments[arguments.length - 1];\n\
                fetch(document.getElementById('verify').getAttribute('data-proof'))\n\
                  .then(function (r) { return r.json(); })\n\
                  .then(function (p) { p.event = p.event.replace('new support prompt', 'no reason'); p.leaf_hash = null;\n\
                    return custosProof.verify(p, document.getElementById('pubkey').value); })\n\
                  .then(function (m) { done('ok ' + m); }, function (e) { done('NOT ' + e.message); });",
                "args": []})),
        )
        .await;
    assert_eq!(
        tampered,
        json!("NOT the audit path does not lead to the checkpoint's root")
    );

    // Download the proof as a person would, and check the file offline.
    b.click("a[download]").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let file = loop {
        let done: Vec<PathBuf> = std::fs::read_dir(downloads.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        if let Some(f) = done.into_iter().next() {
            break f;
        }
        assert!(Instant::now() < deadline, "the proof never downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let proof: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    verify_entry_proof(&proof, &public);

    // Approve the release as owner.
    b.click("nav a[href^='/console/releases']").await;
    b.click(&format!("a[href^='/console/releases/{release}']"))
        .await;
    b.click("select[name=role] option[value=owner]").await;
    b.fill("input[name=why]", "prompt reviewed").await;
    b.click("button[value=approve]").await;
    let notice = b.wait_text(".notice", |t| !t.is_empty()).await;
    assert_eq!(notice, "Your approval was recorded.");
    assert!(b.text("main table").await.contains("prompt reviewed"));
    b.screenshot("5-release-approved").await;
    let view = gw.state.control.release_view(&release).await.unwrap();
    assert_eq!(view.decisions.len(), 1);
    assert_eq!(view.decisions[0].role, "owner");

    // Sign out: back to the form, and the pages ask to sign in again.
    b.click("header form button[type=submit]").await;
    b.wait_url(|u| u.contains("/console/signin")).await;
    b.go(&format!("{}/console", gw.base)).await;
    assert!(b.url().await.contains("/console/signin?next="));

    // A person signs in at the OIDC provider instead: the browser goes there and back, the
    // session cookie (SameSite=Strict) arrives with the page after the provider's redirect.
    b.click("a[href^='/console/signin/oidc']").await;
    let home = format!("{}/console", gw.base);
    b.wait_url(|u| u == home).await;
    assert_eq!(b.text("h1").await, "Overview");
    assert!(b.text("header").await.contains("alice"));
    b.screenshot("6-signed-in-with-oidc").await;
    eprintln!("screenshots: {}", shots.display());
}
