//! Telemetry out of the gateway. The event relay end to end: ledger events reach real HTTP receivers on loopback as
//! CloudEvents, signed, in ledger order, filtered by each receiver's types; a receiver that
//! fails is retried, one that refuses is skipped past, and a gateway started again resumes
//! from each receiver's cursor. Every delivered document is checked against the published
//! JSON Schemas in docs/events with the reference validator (Python `jsonschema`). And
//! `/metrics` behind a `metrics.read` permission.

mod common;

use axum::Router;
use common::*;
use custos_control::{Actor, GrantRequest};
use custos_core::Reason;
use custos_store::GrantKind;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Receiver {
    /// (content type, signature, body) of each request answered 2xx.
    got: Arc<Mutex<Vec<(String, String, String)>>>,
    calls: Arc<AtomicUsize>,
}

/// A receiver on loopback answering `fail_first` requests with 503, then 200 — or always
/// `always` when set.
async fn receiver(fail_first: usize, always: Option<u16>) -> (std::net::SocketAddr, Receiver) {
    let r = Receiver::default();
    let state = r.clone();
    let addr = upstream(Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let r = state.clone();
            async move {
                let n = r.calls.fetch_add(1, Ordering::SeqCst);
                if let Some(code) = always {
                    return http::StatusCode::from_u16(code).unwrap();
                }
                if n < fail_first {
                    return http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                r.got
                    .lock()
                    .unwrap()
                    .push((h("content-type"), h("x-custos-signature"), body));
                http::StatusCode::NO_CONTENT
            }
        }),
    ))
    .await;
    (addr, r)
}

fn bodies(r: &Receiver) -> Vec<Value> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| serde_json::from_str(b).unwrap())
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn grant(gw: &TestGateway, kind: GrantKind, why: &str) {
    let req = GrantRequest {
        tenant: "acme".into(),
        principal: None,
        role: "tenant-admin".into(),
        duration: Duration::from_secs(600),
        kind,
    };
    gw.state
        .control
        .request_grant(
            &Actor::local("oncall"),
            &req,
            &Reason::new(Some(why), None).unwrap(),
        )
        .await
        .unwrap();
}

/// Validates `docs` against docs/events with Python's jsonschema, when the test venv has it.
fn validate_with_reference_validator(docs: &[Value]) {
    let Ok(python) = std::env::var("CUSTOS_TEST_PYTHON") else {
        eprintln!(
            "skipping the JSON Schema check: CUSTOS_TEST_PYTHON is not set (./dev test sets it)"
        );
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events");
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("events.json");
    std::fs::write(&input, serde_json::to_vec(docs).unwrap()).unwrap();
    let script = r#"
import json, sys, pathlib
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
d = pathlib.Path(sys.argv[1])
schemas = [json.loads(p.read_text()) for p in d.glob("*.schema.json")]
registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
by_id = {s["$id"]: s for s in schemas}
for doc in json.load(open(sys.argv[2])):
    schema = by_id["urn:custos:events:" + doc["type"]]
    errors = list(Draft202012Validator(schema, registry=registry, format_checker=FormatChecker()).iter_errors(doc))
    if errors:
        print(doc["type"], [e.message for e in errors])
        sys.exit(1)
print("ok", len(json.load(open(sys.argv[2]))))
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&dir)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schema check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn ledger_events_reach_receivers_as_signed_cloudevents_and_resume_after_a_restart() {
    // Made up per run: no credential-shaped literal in the tree.
    let secret = format!(
        "hook-{}-{}",
        std::process::id(),
        custos_core::time::now_ms()
    );
    std::env::set_var("CUSTOS_TEST_EVENTS_SECRET", &secret);
    for db in databases("event_relay").await {
        let (all_addr, all) = receiver(1, None).await;
        let (grants_addr, grants) = receiver(0, None).await;
        let (refusing_addr, refusing) = receiver(0, Some(400)).await;
        let toml = format!(
            "[events]\nsource = \"/custos/test\"\nfailover = \"1s\"\n\
             [[events.webhooks]]\nurl = \"http://{all_addr}/hook\"\nsecret_env = \"CUSTOS_TEST_EVENTS_SECRET\"\n\
             [[events.webhooks]]\nurl = \"http://{grants_addr}/hook\"\ntypes = [\"grant.break_glass\"]\n\
             [[events.webhooks]]\nurl = \"http://{refusing_addr}/hook\"\ntypes = [\"grant.*\", \"dpia.\"]\n"
        );
        let gw = start(&db, &toml).await;
        grant(&gw, GrantKind::Jit, "CHG-1: rotate the provider key").await;
        // Not selected by default: never sent.
        gw.state
            .control
            .record_observation(
                &Actor::local("oncall"),
                "key.create",
                json!({"type": "key", "id": "key_1", "tenant": "acme"}),
                &Reason::default(),
            )
            .await
            .unwrap();
        grant(&gw, GrantKind::BreakGlass, "INC-7: the primary is down").await;

        // The first receiver answered 503 once; the relay retried and kept the order.
        wait_for("two events at the first receiver", || {
            all.got.lock().unwrap().len() == 2
        })
        .await;
        let got = bodies(&all);
        let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["dev.custos.grant.request", "dev.custos.grant.break_glass"],
            "{}",
            db.name
        );
        let first = &got[0];
        assert_eq!(first["specversion"], "1.0");
        assert_eq!(first["source"], "/custos/test");
        assert_eq!(first["datacontenttype"], "application/json");
        assert_eq!(first["custostenant"], "acme");
        let index = first["custosledgerindex"].as_u64().unwrap();
        assert_eq!(first["id"], format!("ledger-{index}"));
        assert!(first["subject"].as_str().unwrap().starts_with("grant/"));
        assert_eq!(first["data"]["why"], "CHG-1: rotate the provider key");
        // The data is the ledger's own entry, as recorded (identifiers sealed as there).
        let entry = &gw.store.ledger_entries(index as i64, 1).await.unwrap()[0];
        let recorded: Value = serde_json::from_str(&entry.event).unwrap();
        assert_eq!(first["data"], recorded);
        for (ctype, sig, body) in all.got.lock().unwrap().iter() {
            assert_eq!(ctype, "application/cloudevents+json; charset=utf-8");
            let (t, _) = sig
                .strip_prefix("t=")
                .and_then(|s| s.split_once(",v1="))
                .expect("a signature");
            assert_eq!(
                *sig,
                custos_gateway::webhook::signature(
                    secret.as_bytes(),
                    t.parse().unwrap(),
                    body.as_bytes()
                )
            );
        }
        // The second receiver asked for break-glass only, and is unsigned.
        wait_for("the break-glass event", || {
            grants.got.lock().unwrap().len() == 1
        })
        .await;
        assert_eq!(bodies(&grants)[0]["type"], "dev.custos.grant.break_glass");
        assert_eq!(grants.got.lock().unwrap()[0].1, "");
        // The refusing receiver's events are skipped past and counted, not retried forever.
        let refusing_url = format!("http://{refusing_addr}/hook");
        let size = gw.store.ledger_size().await.unwrap();
        let store = gw.store.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let cursors = store.event_cursors().await.unwrap();
            let c = cursors.iter().find(|c| c.receiver == refusing_url).unwrap();
            if c.next_index == size && c.dropped == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{c:?} (ledger size {size})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(refusing.calls.load(Ordering::SeqCst), 2);
        validate_with_reference_validator(&bodies(&all));

        // Stopped, then an event happens (another process records it), then started again:
        // once the stopped relay's hold lapses the receiver gets that one, and nothing twice.
        let app_id = gw.app_id.clone();
        let store = gw.store.clone();
        drop(gw);
        let event = json!({"schema": 1, "time": custos_core::time::format_rfc3339(custos_core::time::now_ms()),
            "activity": "dpia.required", "actor": {"type": "system", "id": "custos-gateway"},
            "resources": [{"type": "dpia", "name": "dpia_1", "tenant": "acme", "trigger": "region"}],
            "outcome": "allowed", "why": null});
        store.ledger_append(&[event.to_string()]).await.unwrap();
        let gw = start_on(store, app_id, &toml).await;
        wait_for("the event recorded while stopped", || {
            all.got.lock().unwrap().len() == 3
        })
        .await;
        let got = bodies(&all);
        assert_eq!(got[2]["type"], "dev.custos.dpia.required");
        let ids: std::collections::BTreeSet<&str> =
            got.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 3, "an event was sent twice: {ids:?}");
        validate_with_reference_validator(&got);
        drop(gw);
    }
}

/// With `[server] metrics_auth`, `/metrics` (which names every tenant) needs a principal that
/// may `metrics.read`: none is refused 401, an ordinary key 403, and a key granted the
/// `metrics-reader` role gets the exposition.
#[tokio::test]
async fn metrics_can_require_a_reader() {
    let db = &databases("metrics_auth").await[0];
    let gw = start(db, "[server]\nmetrics_auth = true\n").await;
    let (key, key_id) = gw.key(KeySpec::default()).await;
    let status = |r: reqwest::Response| r.status().as_u16();
    let url = format!("{}/metrics", gw.base);
    assert_eq!(status(gw.client.get(&url).send().await.unwrap()), 401);
    assert_eq!(status(gw.get("/metrics", &key).await), 403);
    let why = Reason::new(Some("OPS-9: scrape the gateway"), None).unwrap();
    let g = gw
        .state
        .control
        .request_grant(
            &Actor::local("sre"),
            &GrantRequest {
                tenant: "acme".into(),
                principal: Some(key_id),
                role: "metrics-reader".into(),
                duration: Duration::from_secs(600),
                kind: GrantKind::Jit,
            },
            &why,
        )
        .await
        .unwrap();
    gw.state
        .control
        .decide_grant(&Actor::local("lead"), Some("acme"), &g.value.id, true, &why)
        .await
        .unwrap();
    gw.state.directory.refresh(&gw.store).await.unwrap();
    let r = gw.get("/metrics", &key).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("custos_build_info"));
}
