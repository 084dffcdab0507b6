//! Telemetry out of the gateway. The event relay end to end: ledger events reach real HTTP receivers on loopback as
//! CloudEvents, signed, in ledger order, filtered by each receiver's types; a receiver that
//! fails is retried, one that refuses is skipped past, and a gateway started again resumes
//! from each receiver's cursor. Every delivered document is checked against the published
//! JSON Schemas in docs/events with the reference validator (Python `jsonschema`). And
//! `/metrics` behind a `metrics.read` permission.

mod common;

use axum::response::IntoResponse;
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

/// An OTLP/HTTP receiver on loopback built on the `opentelemetry-proto` package: it parses
/// each export as an `ExportTraceServiceRequest`, refuses one whose bytes do not serialize
/// back identically (a field it does not know, a wrong wire type), and writes each request as
/// JSON (protobuf's canonical mapping) to a file, one line each.
const OTLP_RECEIVER: &str = r#"
import json, sys, http.server
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
out = open(sys.argv[1], "a")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
            self.send_response(415); self.end_headers(); return
        req = ts.ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
            if req.SerializeToString() != body:
                raise ValueError("unknown or non-canonical fields")
        except Exception as e:
            print("refused:", e, file=sys.stderr, flush=True)
            self.send_response(400); self.end_headers(); return
        line = {"x-test": self.headers.get("x-test"), "request": json_format.MessageToDict(req)}
        out.write(json.dumps(line) + "\n"); out.flush()
        answer = ts.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Kills the receiver when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the receiver; None (the test skips) without a Python that has the package.
fn otlp_receiver(out: &std::path::Path) -> Option<(Child, u16)> {
    let Ok(python) = std::env::var("CUSTOS_TEST_PYTHON") else {
        eprintln!("skipping the OTLP test: CUSTOS_TEST_PYTHON is not set (./dev test sets it)");
        return None;
    };
    let probe = std::process::Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .output()
        .ok()?;
    if !probe.status.success() {
        eprintln!("skipping the OTLP test: the test venv lacks opentelemetry-proto (./dev test installs it)");
        return None;
    }
    let mut child = std::process::Command::new(&python)
        .arg("-c")
        .arg(OTLP_RECEIVER)
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    Some((
        Child(child),
        line.trim().parse().expect("the receiver's port"),
    ))
}

fn b64_hex(v: &Value) -> String {
    use base64::Engine as _;
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .unwrap(),
    )
}

/// A chat call's server span.
fn is_call(span: &Value) -> bool {
    span["kind"] == "SPAN_KIND_SERVER" && span["name"] == "POST /v1/chat/completions"
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test]
async fn calls_are_traced_to_an_otlp_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("spans.jsonl");
    let Some((_receiver, port)) = otlp_receiver(&file) else {
        return;
    };
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let up = upstream(Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::Json<Value>| {
            let s = s.clone();
            async move {
                let tp = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                s.lock().unwrap().push(tp);
                let usage = json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5});
                if body.0["stream"] == true {
                    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]});
                    let last = json!({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage});
                    return (
                        [(http::header::CONTENT_TYPE, "text/event-stream")],
                        format!("data: {chunk}\n\ndata: {last}\n\ndata: [DONE]\n\n"),
                    )
                        .into_response();
                }
                axum::Json(json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}], "usage": usage}))
                    .into_response()
            }
        }),
    ))
    .await;
    std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "x-test=from%20env");
    let db = &databases("otlp").await[0];
    let toml = format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nservice_name = \"custos-test\"\n",
        upstream_config(up, "m", "")
    );
    let gw = start(db, &toml).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let call = |traceparent: Option<&'static str>, body: Value| {
        let mut r = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .json(&body);
        if let Some(tp) = traceparent {
            r = r.header("traceparent", tp);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let prompt = "the prompt text stays out of traces";
    // The caller said not to sample: nothing is recorded for its trace.
    call(
        Some("00-11111111111111111111111111111111-2222222222222222-00"),
        chat("m", prompt),
    )
    .await;
    call(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        chat("m", prompt),
    )
    .await;
    call(None, chat("m", prompt)).await;
    let mut streamed = chat("m", prompt);
    streamed["stream"] = json!(true);
    let text = call(None, streamed).await;
    assert!(text.contains("[DONE]"));

    // Three traces of three spans or more arrive; read them back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (lines, spans) = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        let spans: Vec<Value> = lines
            .iter()
            .flat_map(|l| {
                l["request"]["resourceSpans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
            .collect();
        let servers = spans.iter().filter(|s| is_call(s)).count();
        if servers >= 3 {
            break (lines, spans);
        }
        assert!(
            Instant::now() < deadline,
            "only {servers} server spans arrived: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!std::fs::read_to_string(&file).unwrap().contains(prompt));
    let first = &lines[0];
    assert_eq!(first["x-test"], "from env");
    let resource = &first["request"]["resourceSpans"][0]["resource"];
    assert!(resource["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "custos-test"));
    let servers: Vec<&Value> = spans.iter().filter(|s| is_call(s)).collect();
    assert_eq!(servers.len(), 3, "the unsampled call is not traced");
    // The key's readiness checks were traced too, as requests of their own.
    assert!(spans
        .iter()
        .any(|s| s["kind"] == "SPAN_KIND_SERVER" && s["name"] == "GET /v1/models"));
    assert!(spans
        .iter()
        .all(|s| b64_hex(&s["traceId"]) != "11111111111111111111111111111111"));
    let upstream_seen = seen.lock().unwrap().clone();
    assert_eq!(upstream_seen.len(), 4);
    assert!(upstream_seen[0].ends_with("-00"), "{upstream_seen:?}");

    for (n, server) in servers.iter().enumerate() {
        let trace = b64_hex(&server["traceId"]);
        let id = b64_hex(&server["spanId"]);
        assert_eq!(server["name"], "POST /v1/chat/completions");
        assert_eq!(
            attr(server, "http.response.status_code").unwrap()["intValue"],
            "200"
        );
        assert_eq!(
            attr(server, "custos.tenant").unwrap()["stringValue"],
            "acme"
        );
        assert_eq!(
            attr(server, "gen_ai.request.model").unwrap()["stringValue"],
            "m"
        );
        let (start, end) = (
            server["startTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            server["endTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        assert!(start <= end);
        if n == 0 {
            // It joined the caller's trace, under the caller's span, which is remote.
            assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(b64_hex(&server["parentSpanId"]), "00f067aa0ba902b7");
            assert_eq!(server["flags"].as_u64().unwrap(), 0x301);
        } else {
            assert!(server.get("parentSpanId").is_none(), "{server}");
            assert_eq!(server["flags"].as_u64().unwrap(), 0x101);
        }
        let children: Vec<&Value> = spans
            .iter()
            .filter(|s| {
                b64_hex(&s["traceId"]) == trace
                    && s.get("parentSpanId").is_some_and(|p| b64_hex(p) == id)
            })
            .collect();
        let names: Vec<&str> = children
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        for control in [
            "custos.audit",
            "custos.authn",
            "custos.authz.call",
            "custos.call.parse",
            "custos.quota",
            "custos.meter",
            "custos.budget",
            "upstream up",
        ] {
            assert!(names.contains(&control), "{control} missing from {names:?}");
        }
        for c in &children {
            let (s, e) = (
                c["startTimeUnixNano"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                c["endTimeUnixNano"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            assert!(start <= s && s <= e && e <= end, "{c} outside {server}");
        }
        // The upstream span is the one named in the traceparent the provider received,
        // and the provider was told the trace is sampled.
        let client = children
            .iter()
            .find(|s| s["kind"] == "SPAN_KIND_CLIENT")
            .unwrap();
        let client_id = b64_hex(&client["spanId"]);
        assert!(
            upstream_seen.contains(&format!("00-{trace}-{client_id}-01")),
            "{client_id} not in {upstream_seen:?}"
        );
        assert_eq!(
            attr(client, "gen_ai.request.model").unwrap()["stringValue"],
            "m-upstream"
        );
        assert_eq!(
            attr(client, "http.response.status_code").unwrap()["intValue"],
            "200"
        );
    }
    // The counter moves once the receiver has answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = gw.metrics().await;
        let exported: usize = metrics
            .lines()
            .find_map(|l| l.strip_prefix("custos_otlp_spans_exported_total "))
            .unwrap()
            .parse()
            .unwrap();
        if exported == spans.len() {
            assert!(metrics.contains("custos_otlp_spans_dropped_total{reason=\"queue_full\"} 0"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{exported} of {} spans counted",
            spans.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SLO burn-rate alerts: failing calls through a real gateway burn the budget; both
/// multiwindow alerts start, are recorded once though two gateways watch the same database,
/// reach a webhook as CloudEvents that match their schema, and the burn shows on /metrics.
#[tokio::test]
async fn slo_burn_rate_alerts_are_recorded_once_and_sent() {
    for db in databases("slo_alerts").await {
        let (addr, hook) = receiver(0, None).await;
        let toml = format!(
            "[[providers]]\nname = \"mock\"\nkind = \"mock\"\nfailure_rate = 1.0\n\
             [[models]]\nname = \"m\"\nprovider = \"mock\"\n\
             [release]\nslo_interval = \"200ms\"\n\
             [[release.slo]]\nname = \"bot availability\"\ntenant = \"acme\"\napp = \"ml/bot\"\nobjective = 99.0\nmin_calls = 5\n\
             [[events.webhooks]]\nurl = \"http://{addr}/hook\"\ntypes = [\"slo.\"]\n"
        );
        let gw = start(&db, &toml).await;
        let twin = start(&db, &toml).await;
        let (key, _) = gw.key(KeySpec::default()).await;
        for _ in 0..6 {
            let r = gw
                .post("/v1/chat/completions", &key, &chat("m", "hi"))
                .await;
            assert_eq!(r.status(), 503);
        }
        wait_for("two slo.burn events", || {
            hook.got.lock().unwrap().len() >= 2
        })
        .await;
        // Both gateways measured; give the slower one a few ticks to try to record again.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let got = bodies(&hook);
        assert_eq!(got.len(), 2, "{} {got:?}", db.name);
        let mut severities: Vec<&str> = got
            .iter()
            .map(|e| {
                assert_eq!(e["type"], "dev.custos.slo.burn");
                assert_eq!(e["custostenant"], "acme");
                let r = &e["data"]["resources"][0];
                assert_eq!(r["type"], "slo");
                assert_eq!(r["id"], "bot availability");
                assert_eq!(r["detail"]["frozen"], true);
                // Every call failed: the burn is 100x over both lookbacks.
                let rate = r["detail"]["long"]["burn_rate"].as_f64().unwrap();
                assert!((rate - 100.0).abs() < 1e-6, "{rate}");
                r["detail"]["severity"].as_str().unwrap()
            })
            .collect();
        severities.sort();
        assert_eq!(severities, ["page", "ticket"]);
        validate_with_reference_validator(&got);
        let burns: Vec<_> = gw
            .store
            .ledger_entries(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event.contains("\"activity\":\"slo.burn\""))
            .collect();
        assert_eq!(burns.len(), 2, "recorded once across the two gateways");
        let metrics = twin.metrics().await;
        let labels =
            "tenant=\"acme\",slo=\"bot availability\",app=\"ml/bot\",kind=\"availability\"";
        let value = |series: String| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{series} ")))
                .unwrap_or_else(|| panic!("{series} not in\n{metrics}"))
                .parse()
                .unwrap()
        };
        for (series, want) in [
            (
                format!("custos_slo_burn_rate{{{labels},window=\"5m\"}}"),
                100.0,
            ),
            (format!("custos_slo_error_budget_burn{{{labels}}}"), 100.0),
            (
                format!("custos_slo_alert_firing{{{labels},severity=\"page\"}}"),
                1.0,
            ),
            (format!("custos_slo_frozen{{{labels}}}"), 1.0),
            (format!("custos_slo_objective_ratio{{{labels}}}"), 0.99),
        ] {
            let got = value(series.clone());
            assert!((got - want).abs() < 1e-6, "{series} = {got}");
        }
    }
}

/// A receiver that is down costs calls nothing: they answer as usual, and the spans that
/// could not be delivered are counted as dropped once the exporter has given up on them.
#[tokio::test]
async fn spans_for_a_receiver_that_is_down_are_dropped_and_counted() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let db = &databases("otlp_down").await[0];
    let gw = start(
        db,
        &format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n"),
    )
    .await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let started = Instant::now();
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Four tries a second, two and four apart, then the batch is dropped.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = gw.metrics().await;
        let dropped: u64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("custos_otlp_spans_dropped_total{reason=\"export_failed\"} ")
            })
            .unwrap()
            .parse()
            .unwrap();
        if dropped > 0 {
            assert!(
                metrics.contains("custos_otlp_spans_exported_total 0"),
                "{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing counted as dropped:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
