//! The gateway end to end: real HTTP over loopback, real SQLite and (when configured) real
//! PostgreSQL, the mock provider and stand-in upstream servers.

mod common;

use axum::routing::post;
use axum::Router;
use common::*;
use custos_store::testkit::Seed as _;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MOCK: &str = "";

#[tokio::test]
async fn chat_completions_end_to_end() {
    for db in databases("chat_completions_end_to_end").await {
        let gw = start(&db, MOCK).await;
        let (key, _) = gw.key(KeySpec::default()).await;
        let r = gw
            .post(
                "/v1/chat/completions",
                &key,
                &chat("gpt-4o-mini", "hello there"),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", db.name);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "gpt-4o-mini");
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains("hello there"));
        let usage = &body["usage"];
        assert_eq!(
            usage["total_tokens"],
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
        // Deterministic.
        let again: Value = gw
            .post(
                "/v1/chat/completions",
                &key,
                &chat("gpt-4o-mini", "hello there"),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["choices"], body["choices"]);
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_replaced() {
    let db = &databases("request_ids").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let send = |id: &'static str| {
        gw.client
            .get(format!("{}/v1/models", gw.base))
            .bearer_auth(&key)
            .header("x-request-id", id)
            .send()
    };
    let r = send("client-id_1.2").await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id_1.2");
    let r = send("bad id with spaces").await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
    assert!(uuid::Uuid::parse_str(r.headers()["x-request-id"].to_str().unwrap()).is_ok());
    let long = "a".repeat(129);
    let r = gw
        .client
        .get(format!("{}/healthz", gw.base))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"].to_str().unwrap(), long);
}

#[tokio::test]
async fn streaming_chat_and_usage() {
    let db = &databases("streaming").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw
        .key(KeySpec {
            tpm: Some(100_000),
            ..Default::default()
        })
        .await;
    let mut req = chat("gpt-4o-mini", "stream me please");
    req["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &key, &req).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The client did not ask for usage, so the usage event custos requested is removed.
    assert!(!text.contains("total_tokens"), "{text}");
    let mut content = String::new();
    for line in text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
    {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert!(content.contains("stream me please"));

    req["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions", &key, &req)
        .await
        .text()
        .await
        .unwrap();
    let usage_line = text
        .lines()
        .find(|l| l.contains("total_tokens"))
        .expect("usage chunk");
    let v: Value = serde_json::from_str(usage_line.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["choices"], json!([]));
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn completions_embeddings_and_models() {
    let db = &databases("completions_embeddings").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let r = gw
        .post(
            "/v1/completions",
            &key,
            &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 5);

    let r = gw
        .post(
            "/v1/embeddings",
            &key,
            &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 1536);

    let r = gw.post("/v1/embeddings", &key, &json!({"model": "text-embedding-3-small", "input": "a", "encoding_format": "base64", "dimensions": 8})).await;
    let body: Value = r.json().await.unwrap();
    let b64 = body["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(base64_len(b64), 8 * 4);

    let scoped = gw
        .key(KeySpec {
            models: Some("gpt-4o-mini"),
            ..Default::default()
        })
        .await
        .0;
    let models: Value = gw.get("/v1/models", &scoped).await.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-4o-mini"]);
    let all: Value = gw.get("/v1/models", &key).await.json().await.unwrap();
    assert!(all["data"].as_array().unwrap().len() >= 4);
    assert_eq!(
        gw.get("/v1/models/gpt-4o-mini", &scoped).await.status(),
        200
    );
    expect_problem(
        gw.get("/v1/models/gpt-4o", &scoped).await,
        403,
        "model-not-allowed",
    )
    .await;
    expect_problem(
        gw.get("/v1/models/nope", &scoped).await,
        404,
        "model-not-found",
    )
    .await;
}

fn base64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|b| *b == b'=').count();
    s.len() / 4 * 3 - pad
}

#[tokio::test]
async fn authentication_failures() {
    for db in databases("authentication_failures").await {
        let gw = start(&db, MOCK).await;
        let body = chat("gpt-4o-mini", "hi");
        let r = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(r, 401, "missing-api-key").await;
        let r = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .header("authorization", "Basic abc")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(r, 401, "invalid-api-key").await;
        expect_problem(
            gw.post("/v1/chat/completions", "sk-not-ours", &body).await,
            401,
            "invalid-api-key",
        )
        .await;
        let unknown = custos_authz::api_key::mint().unwrap().secret;
        expect_problem(
            gw.post("/v1/chat/completions", &unknown, &body).await,
            401,
            "invalid-api-key",
        )
        .await;

        let soon = custos_core::time::now_ms() + 1_500;
        let (expiring, _) = gw
            .key(KeySpec {
                expires_at: Some(soon),
                ..Default::default()
            })
            .await;
        assert_eq!(
            gw.post("/v1/chat/completions", &expiring, &body)
                .await
                .status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        expect_problem(
            gw.post("/v1/chat/completions", &expiring, &body).await,
            401,
            "expired-api-key",
        )
        .await;

        let (scoped, _) = gw
            .key(KeySpec {
                models: Some("text-embedding-3-small"),
                ..Default::default()
            })
            .await;
        expect_problem(
            gw.post("/v1/chat/completions", &scoped, &body).await,
            403,
            "model-not-allowed",
        )
        .await;
        expect_problem(
            gw.post(
                "/v1/chat/completions",
                &scoped,
                &chat("no-such-model", "hi"),
            )
            .await,
            404,
            "model-not-found",
        )
        .await;
    }
}

/// Revocation made through the store (as `custos keys revoke` does from another process)
/// reaches two independent gateways on the same database within a second.
#[tokio::test]
async fn revocation_reaches_every_gateway_within_a_second() {
    for db in databases("revocation").await {
        let a = start(&db, MOCK).await;
        let b = start_on(a.store.clone(), a.app_id.clone(), MOCK).await;
        let (key, id) = a.key(KeySpec::default()).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.get("/v1/models", &key).await.status() != 200 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A separate store connection stands in for the CLI process.
        let cli = custos_store::Store::open(&db.url).await.unwrap();
        cli.revoke_key(&id, None).await.unwrap();
        let revoked_at = Instant::now();
        for gw in [&a, &b] {
            loop {
                let r = gw
                    .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "hi"))
                    .await;
                if r.status() == 401 {
                    expect_problem(r, 401, "revoked-api-key").await;
                    break;
                }
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "{}: key still accepted after 1s",
                    db.name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn request_quota_and_headers() {
    for db in databases("request_quota").await {
        let gw = start(&db, MOCK).await;
        let (key, _) = gw
            .key(KeySpec {
                rpm: Some(2),
                ..Default::default()
            })
            .await;
        // Only model calls count (not the /v1/models calls `key()` made).
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "one"))
            .await;
        assert_eq!(r.status(), 200, "{}", db.name);
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "1");
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "one"))
            .await;
        assert_eq!(r.status(), 200, "{}", db.name);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
        assert!(r.headers().contains_key("x-ratelimit-reset-requests"));
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "two"))
            .await;
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry));
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
        let body = expect_problem(r, 429, "rate-limit-requests").await;
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("2 requests per minute"));
        // Answers that never reached the quota layer carry the headers too, charging
        // nothing: a malformed body (400), a replay, a reused Idempotency-Key (422).
        let (key, _) = gw
            .key(KeySpec {
                rpm: Some(5),
                ..Default::default()
            })
            .await;
        let bad = gw
            .post("/v1/chat/completions", &key, &json!({"model": 3}))
            .await;
        assert_eq!(bad.status(), 400);
        assert_eq!(bad.headers()["x-ratelimit-limit-requests"], "5");
        assert_eq!(bad.headers()["x-ratelimit-remaining-requests"], "5");
        let send = |content: &str| {
            gw.client
                .post(format!("{}/v1/chat/completions", gw.base))
                .bearer_auth(&key)
                .header("idempotency-key", "rl-1")
                .json(&chat("gpt-4o-mini", content))
                .send()
        };
        let first = send("once").await.unwrap();
        assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "4");
        first.bytes().await.unwrap();
        let replay = send("once").await.unwrap();
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.headers()["x-ratelimit-remaining-requests"], "4");
        let reused = send("other").await.unwrap();
        assert_eq!(reused.status(), 422);
        assert_eq!(
            reused.headers()["x-ratelimit-limit-requests"],
            "5",
            "{}",
            db.name
        );
    }
}

#[tokio::test]
async fn token_quota_counts_prompt_and_settles_with_usage() {
    let db = &databases("token_quota").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw
        .key(KeySpec {
            tpm: Some(200),
            ..Default::default()
        })
        .await;
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "hello"))
        .await;
    assert_eq!(r.status(), 200);
    let remaining_after_prompt: u32 = r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap() as u32;
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap() as u32;
    assert!(remaining_after_prompt <= 200 - prompt);
    // The next call sees the completion tokens charged too (settled from reported usage).
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "hello"))
        .await;
    let remaining: u32 = r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining + completion + prompt <= remaining_after_prompt + 2,
        "{remaining} {remaining_after_prompt}"
    );
    // A prompt larger than the whole limit can never pass.
    let big = "word ".repeat(400);
    expect_problem(
        gw.post("/v1/chat/completions", &key, &chat("gpt-4o-mini", &big))
            .await,
        429,
        "request-too-large-for-limit",
    )
    .await;
    // Keep calling until the token budget is gone.
    let mut saw_429 = false;
    for _ in 0..20 {
        let r = gw
            .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "hello"))
            .await;
        if r.status() == 429 {
            expect_problem(r, 429, "rate-limit-tokens").await;
            saw_429 = true;
            break;
        }
    }
    assert!(saw_429);
}

#[tokio::test]
async fn team_quota_is_shared_by_the_teams_keys() {
    let db = &databases("team_quota").await[0];
    let gw = start(db, MOCK).await;
    let (k1, _) = gw.key(KeySpec::default()).await;
    let (k2, _) = gw.key(KeySpec::default()).await;
    gw.store
        .set_team_limits("acme", "ml", Some(3), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let k = if i % 2 == 0 { &k1 } else { &k2 };
        statuses.push(
            gw.post("/v1/chat/completions", k, &chat("gpt-4o-mini", "x"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
}

#[tokio::test]
async fn idempotency_replays_conflicts_and_mismatches() {
    for db in databases("idempotency").await {
        let gw = start(&db, "[[providers]]\nname = \"mock\"\nkind = \"mock\"\nlatency = \"1s\"\n\n[[models]]\nname = \"gpt-4o-mini\"\nprovider = \"mock\"\n").await;
        let (key, _) = gw
            .key(KeySpec {
                rpm: Some(1000),
                ..Default::default()
            })
            .await;
        let send = |idem: &'static str, text: &'static str, key: String| {
            let client = gw.client.clone();
            let url = format!("{}/v1/chat/completions", gw.base);
            async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .header("idempotency-key", idem)
                    .json(&chat("gpt-4o-mini", text))
                    .send()
                    .await
                    .unwrap()
            }
        };
        // A repeat while the first runs: 409.
        let first = tokio::spawn(send("k1", "hello", key.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        expect_problem(
            send("k1", "hello", key.clone()).await,
            409,
            "idempotency-in-flight",
        )
        .await;
        let first = first.await.unwrap();
        assert_eq!(first.status(), 200, "{}", db.name);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first_body = first.text().await.unwrap();
        // A repeat after: the same response, marked replayed, and quota untouched.
        let replay = send("k1", "hello", key.clone()).await;
        assert_eq!(replay.status(), 200);
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert!(replay.headers().contains_key("x-request-id"));
        assert_eq!(replay.text().await.unwrap(), first_body);
        // Same key, different body: 422.
        expect_problem(
            send("k1", "goodbye", key.clone()).await,
            422,
            "idempotency-key-reused",
        )
        .await;
        // Keys are per API key: another key's k1 runs fresh.
        let (other, _) = gw.key(KeySpec::default()).await;
        let r = send("k1", "goodbye", other).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("idempotent-replayed").is_none());
        // Invalid header.
        let r = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .header("idempotency-key", "")
            .json(&chat("gpt-4o-mini", "x"))
            .send()
            .await
            .unwrap();
        expect_problem(r, 400, "idempotency-key-invalid").await;
    }
}

#[tokio::test]
async fn idempotent_streams_replay_whole() {
    let db = &databases("idempotent_streams").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let mut req = chat("gpt-4o-mini", "stream once");
    req["stream"] = json!(true);
    let send = || {
        gw.client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .header("idempotency-key", "s1")
            .json(&req)
            .send()
    };
    let a = send().await.unwrap().text().await.unwrap();
    let r = send().await.unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.text().await.unwrap(), a);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx() {
    let db = &databases("bad_input").await[0];
    let gw = start(db, "[server]\nmax_body_bytes = 2048\n").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let big = chat("gpt-4o-mini", &"x".repeat(4096));
    expect_problem(
        gw.post("/v1/chat/completions", &key, &big).await,
        413,
        "body-too-large",
    )
    .await;
    // Chunked (no Content-Length) bodies are bounded too.
    let stream =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            &key,
            reqwest::Body::wrap_stream(stream),
        )
        .await;
    expect_problem(r, 413, "body-too-large").await;
    let body = expect_problem(
        gw.post_raw(
            "/v1/chat/completions",
            &key,
            "{\"model\": \"gpt-4o-mini\",\n \"messages\": [}",
        )
        .await,
        400,
        "malformed-json",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("line 2, column"),
        "{body}"
    );
    expect_problem(
        gw.post_raw(
            "/v1/chat/completions",
            &key,
            b"{\"model\": \"\xff\xfe\"}".to_vec(),
        )
        .await,
        400,
        "malformed-json",
    )
    .await;
    expect_problem(
        gw.post_raw("/v1/chat/completions", &key, "").await,
        400,
        "malformed-json",
    )
    .await;
    let body = expect_problem(
        gw.post(
            "/v1/chat/completions",
            &key,
            &json!({"model": 42, "messages": []}),
        )
        .await,
        400,
        "invalid-request",
    )
    .await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("`model` must be a string"));
    expect_problem(
        gw.post(
            "/v1/chat/completions",
            &key,
            &json!({"model": "gpt-4o-mini", "messages": "hi"}),
        )
        .await,
        400,
        "invalid-request",
    )
    .await;
    let r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    let body = expect_problem(r, 400, "malformed-json").await;
    assert!(body["detail"].as_str().unwrap().contains("text/plain"));
    expect_problem(gw.get("/v1/nothing-here", &key).await, 404, "not-found").await;
    expect_problem(
        gw.get("/v1/chat/completions", &key).await,
        405,
        "method-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let db = &databases("upstream_failures").await[0];
    // Nothing listens on a port we just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = start(db, &upstream_config(closed, "m", "")).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let body = expect_problem(
        gw.post("/v1/chat/completions", &key, &chat("m", "hi"))
            .await,
        502,
        "upstream-unavailable",
    )
    .await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("could not be reached"));

    let slow = upstream(Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "{}"
        }),
    ))
    .await;
    let gw = start(db, &upstream_config(slow, "m", "timeout = \"300ms\"")).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let started = Instant::now();
    expect_problem(
        gw.post("/v1/chat/completions", &key, &chat("m", "hi"))
            .await,
        504,
        "upstream-timeout",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));

    // An upstream error response is passed through as is.
    let failing = upstream(Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                http::StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                "{\"error\":{\"message\":\"bad temperature\"}}",
            )
        }),
    ))
    .await;
    let gw = start(db, &upstream_config(failing, "m", "")).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let r = gw
        .post("/v1/chat/completions", &key, &chat("m", "hi"))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bad temperature"));
}

#[derive(Default)]
struct Seen {
    headers: Vec<http::HeaderMap>,
    bodies: Vec<Value>,
}

#[tokio::test]
async fn forwards_ids_trace_context_key_and_upstream_model() {
    let db = &databases("forwarding").await[0];
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let addr = upstream(Router::new().route(
        "/v1/chat/completions",
        post(move |headers: http::HeaderMap, body: axum::Json<Value>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().headers.push(headers);
                s.lock().unwrap().bodies.push(body.0);
                axum::Json(json!({"id": "x", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
            }
        }),
    ))
    .await;
    std::env::set_var("CUSTOS_TEST_PROVIDER_KEY", "sk-upstream-secret");
    let gw = start(
        db,
        &upstream_config(addr, "m", "api_key_env = \"CUSTOS_TEST_PROVIDER_KEY\""),
    )
    .await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&key)
        .header("x-request-id", "req-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", "vendor=x")
        .json(&chat("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let seen = seen.lock().unwrap();
    let h = &seen.headers[0];
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["authorization"], "Bearer sk-upstream-secret");
    assert_eq!(h["tracestate"], "vendor=x");
    let tp = h["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"),
        "{tp}"
    );
    assert!(!tp.contains("00f067aa0ba902b7"));
    assert_eq!(seen.bodies[0]["model"], "m-upstream");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let db = &databases("disconnect").await[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    struct OnDrop(Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    }
    let addr = upstream(Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let guard = OnDrop(tx.clone());
            async move {
                // An endless stream, one event every 50 ms; the guard fires when hyper drops it.
                let stream = futures_util::stream::unfold(guard, |g| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Ok::<_, std::io::Error>(
                            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
                        ),
                        g,
                    ))
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(stream),
                )
            }
        }),
    ))
    .await;
    let gw = start(db, &upstream_config(addr, "m", "")).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let mut req = chat("m", "hi");
    req["stream"] = json!(true);
    let mut r = gw.post("/v1/chat/completions", &key, &req).await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(r);
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("upstream stream was not cancelled")
        .unwrap();
}

#[tokio::test]
async fn streaming_is_passed_through_as_it_arrives() {
    let db = &databases("stream_passthrough").await[0];
    let gw = start(db, "[[providers]]\nname = \"mock\"\nkind = \"mock\"\nchunk_delay = \"200ms\"\n\n[[models]]\nname = \"gpt-4o-mini\"\nprovider = \"mock\"\n").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let mut req = chat("gpt-4o-mini", "hi");
    req["stream"] = json!(true);
    let started = Instant::now();
    let mut r = gw.post("/v1/chat/completions", &key, &req).await;
    let _ = r.chunk().await.unwrap().unwrap();
    // The whole reply takes seconds; the first event must not wait for it.
    assert!(started.elapsed() < Duration::from_millis(1_000));
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let db = &databases("metrics").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw
        .key(KeySpec {
            rpm: Some(2),
            ..Default::default()
        })
        .await;
    for _ in 0..3 {
        gw.post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "x"))
            .await;
    }
    // `key()` may have seen 401s while waiting for the key, so count from here.
    let auth_failures = metric(
        &gw,
        "custos_auth_failures_total{reason=\"invalid-api-key\"}",
    )
    .await;
    gw.post("/v1/chat/completions", "bad", &chat("gpt-4o-mini", "x"))
        .await;
    let text = gw.metrics().await;
    assert!(text.contains("custos_requests_total{route=\"/v1/chat/completions\",model=\"gpt-4o-mini\",status=\"200\",team=\"ml\",tenant=\"acme\",release=\"\",api_version=\"v1\"} 2"), "{text}");
    assert!(text.contains("status=\"429\""), "{text}");
    assert!(text.contains("custos_overhead_seconds_bucket{route=\"/v1/chat/completions\""));
    assert!(text.contains(
        "custos_upstream_seconds_count{route=\"/v1/chat/completions\",model=\"gpt-4o-mini\"}"
    ));
    assert_eq!(
        metric(
            &gw,
            "custos_auth_failures_total{reason=\"invalid-api-key\"}"
        )
        .await,
        auth_failures + 1
    );
    assert!(text.contains("custos_quota_rejections_total{scope=\"key\",limit=\"requests\"} 1"));
    assert!(text.contains("custos_api_keys_cached 1"));
    assert!(!text.contains(&key), "metrics must not leak keys");
    let r = gw
        .client
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = gw
        .client
        .get(format!("{}/readyz", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");
}

#[tokio::test]
async fn large_prompts_are_counted_off_the_async_workers() {
    let db = &databases("large_prompts").await[0];
    let gw = start(db, MOCK).await;
    let (key, _) = gw
        .key(KeySpec {
            tpm: Some(1_000_000),
            ..Default::default()
        })
        .await;
    // ~200 KB of text: counted on the blocking pool, one token per " word" in o200k.
    let text = " word".repeat(40_000);
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", &text))
        .await;
    assert_eq!(r.status(), 200);
    let remaining: u32 = r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let charged = 1_000_000 - remaining;
    assert!((40_000..40_100).contains(&charged), "charged {charged}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["usage"]["prompt_tokens"].as_u64().unwrap() as u32,
        charged
    );
}

/// The value of one series in `/metrics` (0 when absent).
async fn metric(gw: &TestGateway, series: &str) -> u64 {
    gw.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

#[tokio::test]
async fn slow_clients_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = &databases("slow_clients").await[0];
    let gw = start(db, "[server]\nheader_read_timeout = \"300ms\"\n").await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Headers that never finish.
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was kept open");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A well-behaved client on another connection is unaffected.
    assert_eq!(
        gw.client
            .get(format!("{}/healthz", gw.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Every model call, allowed or denied, is in the ledger once answered, with digests of the
/// bodies and never their content; the ledger verifies.
#[tokio::test]
async fn model_calls_leave_evidence_in_the_ledger() {
    use sha2::{Digest, Sha256};
    for db in databases("audit_events").await {
        let gw = start(&db, MOCK).await;
        let (key, key_id) = gw
            .key(KeySpec {
                rpm: Some(2),
                ..Default::default()
            })
            .await;
        let body = serde_json::to_vec(&chat("gpt-4o-mini", "my secret prompt")).unwrap();
        let r = gw
            .post_raw("/v1/chat/completions", &key, body.clone())
            .await;
        assert_eq!(r.status(), 200);
        let answer = r.bytes().await.unwrap();
        let mut req = chat("gpt-4o-mini", "stream it");
        req["stream"] = json!(true);
        let streamed = gw
            .post("/v1/chat/completions", &key, &req)
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            gw.post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "x"))
                .await
                .status(),
            429
        );
        assert_eq!(
            gw.post("/v1/chat/completions", "nope", &chat("gpt-4o-mini", "x"))
                .await
                .status(),
            401
        );
        gw.state.refusals.flush(&gw.state.audit).await;
        gw.state.audit.flush().await;

        let entries = gw.store.ledger_entries(0, 100).await.unwrap();
        let events: Vec<Value> = entries
            .iter()
            .map(|e| serde_json::from_str(&e.event).unwrap())
            .collect();
        let calls: Vec<&Value> = events
            .iter()
            .filter(|e| e["activity"] == "model.invoke")
            .collect();
        assert_eq!(calls.len(), 3, "{}: {events:?}", db.name);
        let first = calls[0];
        assert_eq!(first["outcome"], "allowed");
        assert_eq!(first["actor"]["id"], key_id);
        assert_eq!(first["actor"]["tenant"], "acme");
        assert_eq!(first["resources"][0]["id"], "gpt-4o-mini");
        assert_eq!(first["request_sha256"], hex::encode(Sha256::digest(&body)));
        assert_eq!(
            first["response_sha256"],
            hex::encode(Sha256::digest(&answer))
        );
        assert_eq!(first["completed"], true);
        assert!(first["request_id"].as_str().is_some());
        assert_eq!(
            calls[1]["response_sha256"],
            hex::encode(Sha256::digest(&streamed))
        );
        assert_eq!(
            (calls[2]["outcome"].as_str(), calls[2]["reason"].as_str()),
            (Some("denied"), Some("rate-limit-requests"))
        );
        // The refusal before any principal was known is counted in an `auth.refused` event.
        let refused = events
            .iter()
            .find(|e| e["activity"] == "auth.refused")
            .expect("auth.refused");
        assert_eq!(refused["reason"], "invalid-api-key");
        assert_eq!(refused["count"], 1);
        assert!(refused["actor"].is_null());
        assert!(
            !entries.iter().any(|e| e.event.contains("my secret prompt")),
            "prompts never reach the ledger"
        );

        let nodes = gw.store.ledger_nodes().await.unwrap();
        let e: Vec<custos_ledger::StoredEntry> = entries
            .iter()
            .map(|x| custos_ledger::StoredEntry {
                index: x.index,
                event: &x.event,
                leaf_hash: &x.leaf_hash,
            })
            .collect();
        let n: Vec<custos_ledger::StoredNode> = nodes
            .iter()
            .map(|x| custos_ledger::StoredNode {
                level: x.level,
                index: x.index,
                hash: &x.hash,
            })
            .collect();
        assert!(custos_ledger::verify_ledger(&e, &n, &[], None, None, &[]).ok());
    }
}

#[tokio::test]
async fn responses_too_large_to_keep_are_not_replayed() {
    let db = &databases("idempotency_large").await[0];
    let gw = start(db, "[idempotency]\nmax_response_bytes = 100\n").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let send = || {
        gw.client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .header("idempotency-key", "big")
            .json(&chat(
                "gpt-4o-mini",
                "a reply longer than one hundred bytes",
            ))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let again = send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(
        again.headers().get("idempotent-replayed").is_none(),
        "a response over the limit was stored"
    );
}

/// With a key configured, the gateway signs checkpoints as the ledger grows, and refuses to
/// sign a history that does not extend the last checkpoint.
#[tokio::test]
async fn checkpoints_are_signed_and_forks_refused() {
    for db in databases("auto_checkpoints").await {
        let keys = tempfile::tempdir().unwrap();
        let (private, public) = custos_ledger::generate_key("test/gateway").unwrap();
        let key_file = keys.path().join("ledger.key");
        std::fs::write(&key_file, &private).unwrap();
        let toml = format!(
            "[audit]\ncheckpoint_key_file = \"{}\"\ncheckpoint_interval = \"1h\"\ncheckpoint_every = 5\n",
            key_file.display()
        );
        let gw = start(&db, &toml).await;
        let (key, _) = gw.key(KeySpec::default()).await;
        for i in 0..5 {
            gw.post(
                "/v1/chat/completions",
                &key,
                &chat("gpt-4o-mini", &format!("call {i}")),
            )
            .await;
        }
        gw.state.audit.flush().await;
        let verifier = custos_ledger::NoteVerifier::from_key(&public).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let size = loop {
            let latest = gw.store.ledger_latest_checkpoint().await.unwrap();
            if let Some((size, note)) = latest.filter(|(s, _)| *s >= 5) {
                let cp = verifier.open(&note).unwrap();
                assert_eq!(cp.size, size);
                break size;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no checkpoint was signed",
                db.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let entries = gw.store.ledger_entries(0, 1000).await.unwrap();
        let mut tree = custos_ledger::MemoryTree::new();
        for e in entries.iter().take(size as usize) {
            tree.append(e.event.as_bytes());
        }
        let note = gw
            .store
            .ledger_checkpoints()
            .await
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s as u64 == size)
            .unwrap()
            .1;
        assert_eq!(
            verifier.open(&note).unwrap().root,
            custos_ledger::root(&tree, size).unwrap()
        );

        if db.name == "sqlite" {
            // Rewrite history under the checkpoint (as someone with the file could), append,
            // and ask for a new signature: refused.
            let signer = custos_ledger::NoteSigner::from_key(&private).unwrap();
            let level = 63 - size.leading_zeros();
            custos_store::testkit::execute_raw(
                &gw.store,
                &format!("DROP TRIGGER ledger_nodes_append_only_update; UPDATE ledger_nodes SET hash = '{}' WHERE level = {level} AND last_leaf = {}", "00".repeat(32), (1u64 << level) - 1),
            )
            .await
            .unwrap();
            gw.store
                .ledger_append(&["{\"after\":\"tampering\"}".to_string()])
                .await
                .unwrap();
            let no_anchors = custos_gateway::anchor::Anchors::new(&Default::default()).unwrap();
            let err = custos_gateway::audit::sign_checkpoint(&gw.store, &signer, &no_anchors)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    custos_gateway::audit::CheckpointFailure::Inconsistent { .. }
                ),
                "{err}"
            );
        }
    }
}

/// A megabyte model name is not echoed back whole in the 404.
#[tokio::test]
async fn echoed_input_is_capped() {
    let dbs = databases("echo_cap").await;
    let gw = start(&dbs[0], "").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let name = "m".repeat(1_000_000);
    let r = gw
        .post("/v1/chat/completions", &key, &chat(&name, "hi"))
        .await;
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.len() < 4096, "{} bytes echoed", body.len());
    assert!(body.contains("more bytes)"), "{body}");
}

/// `[server] io_threads`: connections served on single-threaded runtimes of their own answer
/// as on the shared runtime, concurrent calls and streams alike, and each leaves its evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_their_own_threads_serve_calls_and_streams() {
    let db = &databases("io_threads").await[0];
    let gw = start(db, "[server]\nio_threads = 2\n").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let mut calls = Vec::new();
    for i in 0..24 {
        let client = reqwest::Client::new();
        let (base, key) = (gw.base.clone(), key.clone());
        calls.push(tokio::spawn(async move {
            let mut body = chat("gpt-4o-mini", &format!("call {i}"));
            if i % 4 == 0 {
                body["stream"] = json!(true);
            }
            let r = client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            if i % 4 == 0 {
                assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            } else {
                assert!(text.contains("chat.completion"), "{text}");
            }
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    // The key's readiness checks came first; then the 24 calls.
    let events = invoke_events(&gw).await;
    let chats = events
        .iter()
        .filter(|e| e.to_string().contains("gpt-4o-mini"))
        .count();
    assert_eq!(chats, 24, "{events:?}");
}
