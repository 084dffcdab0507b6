//! The Responses API (`POST /v1/responses`) over real HTTP, against a stand-in provider that
//! answers as OpenAI's does: output items, and typed stream events with text and function
//! call arguments cut into 7-byte pieces. Personal data is screened in input items and in
//! output, the model's function calls are judged by the app's declared tools, streamed or
//! not, and usage is metered from the completed response.

mod common;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use custos_store::{Dimension, UsageFilter};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<Value>>>;

const EMAIL: &str = "jane.roe@example.com";

fn last_user_text(body: &Value) -> String {
    match &body["input"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|i| i["role"] == "user")
            .map(|i| match &i["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn pieces(s: &str) -> Vec<String> {
    s.chars()
        .collect::<Vec<_>>()
        .chunks(7)
        .map(|c| c.iter().collect())
        .collect()
}

/// Answers with a call to the tool named after `call:` in the last user text (its
/// arguments carry an e-mail address), or with a text that does.
async fn provider(State(seen): State<Seen>, Json(body): Json<Value>) -> Response {
    seen.lock().unwrap().push(body.clone());
    let last = last_user_text(&body);
    let tool = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("call:"))
        .map(str::to_owned);
    let args = json!({"to": EMAIL, "subject": "hello"}).to_string();
    let text = format!("Write to {EMAIL} about it.");
    let item = match &tool {
        Some(t) => json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
            "name": t, "arguments": args, "status": "completed"}),
        None => {
            json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": [{"token": "jane", "logprob": -0.1}]}]})
        }
    };
    let usage = json!({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 26});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status,
               "model": "m", "output": output, "usage": usage})
    };
    if body["stream"] != json!(true) {
        return Json(response("completed", json!([item]), usage)).into_response();
    }
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
    ];
    match &tool {
        Some(_) => {
            let mut added = item.clone();
            added["arguments"] = json!("");
            added["status"] = json!("in_progress");
            events.push(
                json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
            );
            for p in pieces(&args) {
                events.push(json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": p}));
            }
            events.push(json!({"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0, "arguments": args}));
        }
        None => {
            events.push(json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []}}));
            let at = json!({"item_id": "msg_1", "output_index": 0, "content_index": 0});
            let with = |kind: &str, extra: Value| {
                let mut e = at.clone();
                e["type"] = json!(kind);
                for (k, v) in extra.as_object().unwrap() {
                    e[k] = v.clone();
                }
                e
            };
            events.push(with(
                "response.content_part.added",
                json!({"part": {"type": "output_text", "text": "", "annotations": []}}),
            ));
            for p in pieces(&text) {
                events.push(with(
                    "response.output_text.delta",
                    json!({"delta": p, "logprobs": [{"token": p}]}),
                ));
            }
            events.push(with("response.output_text.done", json!({"text": text})));
            events.push(with(
                "response.content_part.done",
                json!({"part": {"type": "output_text", "text": text, "annotations": []}}),
            ));
        }
    }
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "response": response("completed", json!([item]), usage)}));
    let mut out = String::new();
    for (n, mut e) in events.into_iter().enumerate() {
        e["sequence_number"] = json!(n);
        out.push_str(&format!(
            "event: {}\ndata: {e}\n\n",
            e["type"].as_str().unwrap()
        ));
    }
    ([("content-type", "text/event-stream")], out).into_response()
}

async fn stand_in() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/responses", post(provider))
        .with_state(seen.clone());
    (upstream(app).await, seen)
}

/// What a client makes of an answer: the output items and the whole stream's events.
struct Answer {
    output: Vec<Value>,
    /// Text assembled from `response.output_text.delta` events (streams only).
    deltas: String,
    /// Arguments assembled from `response.function_call_arguments.delta` events.
    arguments: String,
    events: Vec<Value>,
    raw: String,
}

async fn answer(r: reqwest::Response) -> Answer {
    assert_eq!(r.status(), 200);
    let streamed = r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream");
    let raw = r.text().await.unwrap();
    if !streamed {
        let v: Value = serde_json::from_str(&raw).unwrap();
        return Answer {
            output: v["output"].as_array().unwrap().clone(),
            deltas: String::new(),
            arguments: String::new(),
            events: Vec::new(),
            raw,
        };
    }
    let mut events = Vec::new();
    for block in raw.split("\n\n").filter(|b| !b.is_empty()) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
        let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], name, "{block}");
        events.push(v);
    }
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "numbered in order"
    );
    let collect = |kind: &str| -> String {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["delta"].as_str().unwrap())
            .collect()
    };
    let deltas = collect("response.output_text.delta");
    let arguments = collect("response.function_call_arguments.delta");
    let last = events.last().unwrap();
    let output = last["response"]["output"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Answer {
        output,
        deltas,
        arguments,
        events,
        raw,
    }
}

fn request(text: &str, tools: &[&str], stream: bool) -> Value {
    json!({"model": "m", "stream": stream,
           "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}],
           "tools": tools.iter().map(|t| json!({"type": "function", "name": t, "description": "a tool",
               "parameters": {"type": "object", "properties": {"to": {"type": "string"}}}})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn personal_data_is_screened_in_input_items_and_in_output_streamed_or_not() {
    let (addr, seen) = stand_in().await;
    let db = databases("responses_dlp").await.remove(0);
    let toml = format!(
        "{}\n[pii.guard]\nprompt = \"redact\"\nresponse = \"redact\"\nentities = [\"EMAIL_ADDRESS\", \"PHONE_NUMBER\"]\n",
        upstream_config(addr, "m", "")
    );
    let gw = start(&db, &toml).await;
    let (key, _) = gw.key(KeySpec::default()).await;

    // Toward the provider: instructions, an earlier call's arguments, its output, and the
    // user's text all carry personal data.
    let body = json!({"model": "m", "instructions": format!("Escalations go to {EMAIL}."),
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "find the customer"}]},
        {"type": "function_call", "call_id": "c0", "name": "lookup", "arguments": format!("{{\"email\":\"{EMAIL}\"}}")},
        {"type": "function_call_output", "call_id": "c0", "output": "found: call (212) 555-0147"},
        {"role": "user", "content": "thanks"}
    ]});
    let r = gw.post("/v1/responses", &key, &body).await;
    let _ = answer(r).await;
    let sent = seen.lock().unwrap().pop().unwrap();
    let text = sent.to_string();
    assert!(
        !text.contains("jane.roe") && !text.contains("555-0147"),
        "{text}"
    );
    assert_eq!(sent["model"], "m-upstream");
    let args: Value = serde_json::from_str(sent["input"][1]["arguments"].as_str().unwrap())
        .expect("arguments stay JSON");
    assert_eq!(args["email"], "<EMAIL_ADDRESS>");

    for stream in [false, true] {
        // A text answer: every copy of the text says the same, redacted.
        let a = answer(
            gw.post("/v1/responses", &key, &request("hello", &[], stream))
                .await,
        )
        .await;
        assert!(!a.raw.contains("jane.roe"), "stream={stream}: {}", a.raw);
        let final_text = a.output[0]["content"][0]["text"].as_str().unwrap();
        assert_eq!(final_text, "Write to <EMAIL_ADDRESS> about it.");
        assert_eq!(a.output[0]["content"][0]["logprobs"], json!([]));
        if stream {
            assert_eq!(a.deltas, final_text);
            for kind in ["response.output_text.done", "response.output_item.done"] {
                let e = a.events.iter().find(|e| e["type"] == kind).unwrap();
                assert!(e.to_string().contains(final_text), "{e}");
            }
        }
        // A function call: its arguments are redacted and stay JSON.
        let a = answer(
            gw.post(
                "/v1/responses",
                &key,
                &request("call:notify", &["notify"], stream),
            )
            .await,
        )
        .await;
        assert!(!a.raw.contains("jane.roe"), "stream={stream}: {}", a.raw);
        assert_eq!(a.output[0]["type"], "function_call");
        let args: Value = serde_json::from_str(a.output[0]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["to"], "<EMAIL_ADDRESS>");
        if stream {
            assert_eq!(a.arguments, a.output[0]["arguments"].as_str().unwrap());
        }
    }

    // Usage is read from the completed response, streamed or not, by token class.
    gw.state.finops.usage.flush().await;
    let filter = UsageFilter {
        tenant: Some("acme".into()),
        from_ms: 0,
        until_ms: i64::MAX,
        ..UsageFilter::default()
    };
    let rows = gw
        .store
        .usage_report(&filter, &[Dimension::Model], 0)
        .await
        .unwrap();
    assert_eq!(rows[0].calls, 5);
    assert_eq!(
        (
            rows[0].input_tokens,
            rows[0].cached_input_tokens,
            rows[0].output_tokens
        ),
        (5 * 12, 5 * 8, 5 * 6)
    );
}

#[tokio::test]
async fn undeclared_function_calls_are_refused_or_blocked_streamed_or_not() {
    let (addr, _seen) = stand_in().await;
    for db in databases("responses_tools").await {
        let gw = start(&db, &upstream_config(addr, "m", "")).await;
        let (key, _) = gw.key(KeySpec::default()).await;
        declare(&gw, &["get_weather"]).await;

        let r = gw
            .post("/v1/responses", &key, &request("hi", &["shell"], false))
            .await;
        expect_problem(r, 403, "tool-not-allowed").await;

        for stream in [false, true] {
            let a = answer(
                gw.post(
                    "/v1/responses",
                    &key,
                    &request("call:shell", &["get_weather"], stream),
                )
                .await,
            )
            .await;
            assert_eq!(a.output.len(), 1, "{}", a.raw);
            assert_eq!(a.output[0]["type"], "message", "{}", a.raw);
            let said = a.output[0]["content"][0]["text"].as_str().unwrap();
            assert!(said.contains("\"shell\""), "{said}");
            assert!(
                !a.raw.contains("jane.roe"),
                "no piece of the call: {}",
                a.raw
            );
            if stream {
                assert_eq!(a.deltas, said);
                assert!(!a
                    .events
                    .iter()
                    .any(|e| e["type"] == "response.function_call_arguments.delta"));
            }
            let a = answer(
                gw.post(
                    "/v1/responses",
                    &key,
                    &request("call:get_weather", &["get_weather"], stream),
                )
                .await,
            )
            .await;
            assert_eq!(a.output[0]["name"], "get_weather", "{}", a.raw);
            if stream {
                assert_eq!(a.arguments, a.output[0]["arguments"].as_str().unwrap());
            }
        }
        // Each call is judged once, however many events repeat it.
        let events = invoke_events(&gw).await;
        let denied: usize = events
            .iter()
            .map(|e| e["tools"]["denied"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(denied, 3, "{}: {events:?}", db.name);
        let called = events
            .iter()
            .filter(|e| e["tools"]["called"] == json!(["get_weather"]))
            .count();
        assert_eq!(called, 2, "{}: {events:?}", db.name);
    }

    let db = databases("responses_block").await.remove(0);
    let toml = format!(
        "{}\n[tools]\ncalled = \"block\"\n",
        upstream_config(addr, "m", "")
    );
    let gw = start(&db, &toml).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    declare(&gw, &["get_weather"]).await;
    let r = gw
        .post(
            "/v1/responses",
            &key,
            &request("call:shell", &["get_weather"], false),
        )
        .await;
    expect_problem(r, 502, "tool-call-refused").await;
    let r = gw
        .post(
            "/v1/responses",
            &key,
            &request("call:shell", &["get_weather"], true),
        )
        .await;
    let a = answer(r).await;
    let last = a.events.last().unwrap();
    assert_eq!(last["type"], "error", "{}", a.raw);
    assert_eq!(last["code"], "tool-call-refused");
    assert!(!a.raw.contains("jane.roe"), "{}", a.raw);
}

#[tokio::test]
async fn the_built_in_mock_answers_the_responses_api() {
    let db = databases("responses_mock").await.remove(0);
    let gw = start(
        &db,
        "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"gpt-4o-mini\"\nprovider = \"mock\"\n",
    )
    .await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let body = json!({"model": "gpt-4o-mini", "input": "tell me a story", "max_output_tokens": 4});
    let r = gw.post("/v1/responses", &key, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() <= 4);

    let mut streamed = json!({"model": "gpt-4o-mini", "input": "tell me a story", "stream": true});
    let a = answer(gw.post("/v1/responses", &key, &streamed).await).await;
    assert_eq!(a.events[0]["type"], "response.created");
    assert_eq!(a.events.last().unwrap()["type"], "response.completed");
    assert!(a.deltas.contains("tell me a story"), "{}", a.deltas);
    assert_eq!(a.output[0]["content"][0]["text"], a.deltas);

    // The same controls as chat: a retried call with an Idempotency-Key is replayed, and
    // every call is in the ledger as a call to /responses.
    let once = json!({"model": "gpt-4o-mini", "input": "only once"});
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let r = gw
            .client
            .post(format!("{}/v1/responses", gw.base))
            .bearer_auth(&key)
            .header("idempotency-key", "retry-1")
            .json(&once)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        bodies.push((
            r.headers().get("idempotent-replayed").is_some(),
            r.text().await.unwrap(),
        ));
    }
    assert!(!bodies[0].0 && bodies[1].0, "the second is a replay");
    assert_eq!(bodies[0].1, bodies[1].1);
    let events = invoke_events(&gw).await;
    assert!(events.len() >= 3, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["resources"][0]["endpoint"] == "/responses"),
        "{events:?}"
    );

    // Malformed input is refused before anything is spent, saying where.
    streamed["input"] = json!(7);
    let p = expect_problem(
        gw.post("/v1/responses", &key, &streamed).await,
        400,
        "invalid-request",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("`input`"), "{p}");
}
