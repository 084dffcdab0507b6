//! What the CLI tests of the model registry and releases share: running `custos` as a user
//! does (no inherited credentials or database), and a gateway process on a free port.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub fn custos(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUSTOS_CONFIG")
        .env_remove("CUSTOS_DATABASE_URL")
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_SIGNING_KEY")
        .env_remove("CUSTOS_LEDGER_KEY_FILE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run custos")
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = custos(dir, args);
    assert!(
        out.status.success(),
        "custos {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

/// Exit code and stderr of a command expected to fail.
pub fn fails(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = custos(dir, args);
    assert!(!out.status.success(), "custos {args:?} succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stderr of a command expected to fail.
pub fn refused(dir: &Path, args: &[&str]) -> String {
    fails(dir, args).1
}

pub struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn serve(dir: &Path) -> (Server, String) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("CUSTOS_CONFIG")
        .env_remove("CUSTOS_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("custos gateway listening on ") {
            break rest.trim_end_matches("/v1").to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Server(child), url)
}

pub fn chat(url: &str, key: &str, model: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

/// An admin API call with a bearer token, asking for v2: status and JSON body.
pub fn admin(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let req = match method {
            "GET" => c.get(format!("{url}{path}")),
            _ => c.post(format!("{url}{path}")),
        }
        .bearer_auth(token)
        .header("accept", "application/vnd.custos.v2+json");
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

/// An admin token of `sub` in tenant `default` with `roles`, the admin scope and a second
/// factor.
pub fn admin_token(
    issuer: &custos_authz::testkit::TestIssuer,
    sub: &str,
    roles: &[&str],
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut c = issuer.claims(sub, "custos", now);
    c["tenant"] = serde_json::json!("default");
    c["roles"] = serde_json::json!(roles);
    c["scope"] = serde_json::json!("custos:admin");
    c["amr"] = serde_json::json!(["pwd", "hwk"]);
    issuer.token(&c)
}

/// A token of `sub` in tenant acme with `roles` and a second factor, written to a file.
pub fn token_file(
    d: &Path,
    issuer: &custos_authz::testkit::TestIssuer,
    sub: &str,
    roles: &[&str],
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut c = issuer.claims(sub, "custos", now);
    c["tenant"] = serde_json::json!("acme");
    c["roles"] = serde_json::json!(roles);
    c["amr"] = serde_json::json!(["pwd", "hwk"]);
    let path = d.join(format!("{sub}.jwt"));
    std::fs::write(&path, issuer.token(&c)).unwrap();
    path.display().to_string()
}

/// Validates `doc` against an official schema with Python's jsonschema, when the test
/// Python (`CUSTOS_TEST_PYTHON`, set up by `.ci/run`) is there.
pub fn schema_valid(doc: &Path, schema_dir: &str, main: &str) {
    let Ok(python) = std::env::var("CUSTOS_TEST_PYTHON") else {
        eprintln!(
            "skipping schema validation of {}: CUSTOS_TEST_PYTHON is not set",
            doc.display()
        );
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let out = Command::new(python)
        .arg(here.join("validate_schema.py"))
        .arg(here.join("schemas").join(schema_dir))
        .arg(main)
        .arg(doc)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{} is not valid {schema_dir}: {}{}",
        doc.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
