//! The Presidio-compatible PII endpoints over real HTTP: request and response
//! shapes, char offsets, operators, and clear 4xx for bad input.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn analyze_speaks_presidio() {
    let db = databases("pii_analyze").await.remove(0);
    let gw = start(&db, "").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    // Multi-byte text before the PII: offsets must count chars, as Presidio does.
    let text = "Señor José wrote: mail jane.doe@example.com or call (212) 555-0147.";
    let r = gw
        .post(
            "/pii/analyze",
            &key,
            &json!({"text": text, "language": "en"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let results: Vec<Value> = r.json().await.unwrap();
    let chars: Vec<char> = text.chars().collect();
    let get = |e: &str| {
        let r = results
            .iter()
            .find(|r| r["entity_type"] == e)
            .unwrap_or_else(|| panic!("{e} in {results:?}"));
        let (s, t) = (
            r["start"].as_u64().unwrap() as usize,
            r["end"].as_u64().unwrap() as usize,
        );
        assert!(r["score"].as_f64().unwrap() > 0.5);
        assert!(r["recognition_metadata"]["recognizer_name"].is_string());
        chars[s..t].iter().collect::<String>()
    };
    assert_eq!(get("EMAIL_ADDRESS"), "jane.doe@example.com");
    assert_eq!(get("PHONE_NUMBER"), "(212) 555-0147");

    // Entity filter and threshold.
    let r: Vec<Value> = gw
        .post("/pii/analyze", &key, &json!({"text": text, "language": "en", "entities": ["PHONE_NUMBER"], "score_threshold": 0.1}))
        .await
        .json()
        .await
        .unwrap();
    assert!(r.iter().all(|x| x["entity_type"] == "PHONE_NUMBER") && !r.is_empty());

    // Presidio's allow list and context words.
    let r: Vec<Value> = gw
        .post(
            "/pii/analyze",
            &key,
            &json!({"text": text, "language": "en", "allow_list": ["jane.doe@example.com"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        r.iter().all(|x| x["entity_type"] != "EMAIL_ADDRESS"),
        "{r:?}"
    );
    let r: Vec<Value> = gw
        .post(
            "/pii/analyze",
            &key,
            &json!({"text": "Bob", "language": "en", "context": ["name"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        r[0]["entity_type"], "PERSON",
        "a column called name makes Bob a person"
    );
    expect_problem(
        gw.post(
            "/pii/analyze",
            &key,
            &json!({"text": "x", "allow_list_match": "fuzzy"}),
        )
        .await,
        400,
        "invalid-request",
    )
    .await;

    // Presidio's ad-hoc recognizers: a pattern and a deny list for this call only.
    let r: Vec<Value> = gw
        .post(
            "/pii/analyze",
            &key,
            &json!({"text": "order ZX-99812 for project Nightjar", "language": "en", "ad_hoc_recognizers": [
                {"name": "Order ids", "supported_language": "en", "supported_entity": "ORDER_ID",
                 "patterns": [{"name": "order", "regex": "\\bZX-\\d{5}\\b", "score": 0.9}]},
                {"name": "Projects", "supported_language": "en", "supported_entity": "PROJECT", "deny_list": ["nightjar"]}
            ]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = r
        .iter()
        .map(|x| x["entity_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ORDER_ID", "PROJECT"], "{r:?}");
    let bad = json!({"text": "x", "ad_hoc_recognizers": [{"name": "n", "supported_entity": "X", "patterns": [{"name": "p", "regex": "(?<=a)b", "score": 0.5}]}]});
    let p = expect_problem(
        gw.post("/pii/analyze", &key, &bad).await,
        400,
        "invalid-request",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("look-around"));

    // Bad input: clear problems, never a 500.
    expect_problem(
        gw.post(
            "/pii/analyze",
            &key,
            &json!({"text": text, "language": "fr"}),
        )
        .await,
        400,
        "invalid-request",
    )
    .await;
    expect_problem(
        gw.post("/pii/analyze", &key, &json!({"text": 42})).await,
        400,
        "invalid-request",
    )
    .await;
    expect_problem(
        gw.post(
            "/pii/analyze",
            &key,
            &json!({"text": "x", "score_threshold": 3}),
        )
        .await,
        400,
        "invalid-request",
    )
    .await;
    expect_problem(
        gw.post("/pii/analyze", &key, &json!({"text": "x", "nonsense": 1}))
            .await,
        400,
        "invalid-request",
    )
    .await;
    expect_problem(
        gw.post_raw("/pii/analyze", &key, "{\"text\": ").await,
        400,
        "malformed-json",
    )
    .await;
    expect_problem(
        gw.post("/pii/analyze", "sk-wrong", &json!({"text": "x"}))
            .await,
        401,
        "invalid-api-key",
    )
    .await;

    let entities: Vec<String> = gw
        .get("/pii/supportedentities", &key)
        .await
        .json()
        .await
        .unwrap();
    for e in ["PERSON", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "UK_NHS"] {
        assert!(entities.iter().any(|x| x == e), "{e}");
    }
    // Metrics count entity types, never values.
    let m = gw.metrics().await;
    assert!(
        m.contains("custos_pii_entities_total{entity=\"EMAIL_ADDRESS\"}"),
        "{m}"
    );
    assert!(!m.contains("jane.doe"));
}

#[tokio::test]
async fn anonymize_speaks_presidio() {
    let db = databases("pii_anonymize").await.remove(0);
    let gw = start(&db, "").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let text = "Ünal called 212-555-0147 for Ünal.";
    let body = json!({
        "text": text,
        "anonymizers": {
            "DEFAULT": {"type": "replace", "new_value": "ANONYMIZED"},
            "PHONE_NUMBER": {"type": "mask", "masking_char": "*", "chars_to_mask": 4, "from_end": true},
            "PERSON": {"type": "pseudonymize"}
        },
        "analyzer_results": [
            {"start": 0, "end": 4, "score": 0.9, "entity_type": "PERSON"},
            {"start": 12, "end": 24, "score": 0.9, "entity_type": "PHONE_NUMBER"},
            {"start": 12, "end": 15, "score": 0.3, "entity_type": "ZIP"},
            {"start": 29, "end": 33, "score": 0.9, "entity_type": "PERSON"}
        ]
    });
    let r = gw.post("/pii/anonymize", &key, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["text"], "<PERSON_1> called 212-555-**** for <PERSON_1>.");
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        3,
        "the overlapping lower-score result is dropped"
    );
    let out: Vec<char> = v["text"].as_str().unwrap().chars().collect();
    for i in items {
        let (s, e) = (
            i["start"].as_u64().unwrap() as usize,
            i["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            out[s..e].iter().collect::<String>(),
            i["text"].as_str().unwrap()
        );
    }

    let bad_span = json!({"text": "abc", "analyzer_results": [{"start": 1, "end": 9, "entity_type": "X", "score": 1}]});
    expect_problem(
        gw.post("/pii/anonymize", &key, &bad_span).await,
        400,
        "invalid-request",
    )
    .await;
    let bad_op = json!({"text": "abc", "anonymizers": {"X": {"type": "custom", "lambda": "x"}}, "analyzer_results": []});
    let p = expect_problem(
        gw.post("/pii/anonymize", &key, &bad_op).await,
        400,
        "invalid-request",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("anonymizers.X"));
    let no_key = json!({"text": "abc", "anonymizers": {"DEFAULT": {"type": "encrypt"}}, "analyzer_results": [{"start": 0, "end": 1, "entity_type": "X", "score": 1}]});
    let p = expect_problem(
        gw.post("/pii/anonymize", &key, &no_key).await,
        400,
        "invalid-request",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("CUSTOS_PII_KEY"));
}

/// The chat text of a response, streamed or not.
async fn reply_text(r: reqwest::Response) -> String {
    let streamed = r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream");
    if !streamed {
        let v: Value = r.json().await.unwrap();
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let mut content = String::new();
    for line in text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
    {
        let v: Value = serde_json::from_str(line).unwrap();
        content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    content
}

const SECRET_PROMPT: &str =
    "please forward this to jane.roe@example.com and call (212) 555-0147 tomorrow";

#[tokio::test]
async fn guard_redacts_or_blocks_prompts_per_policy() {
    let db = databases("pii_guard_prompts").await.remove(0);
    let toml = r#"
[pii.guard]
prompt = "redact"
[[pii.guard.rules]]
model = "gpt-4o"
prompt = "block"
[[pii.guard.rules]]
model = "gpt-4.1-mini"
prompt = "block"
entities = ["CREDIT_CARD"]
"#;
    let gw = start(&db, toml).await;
    let (key, _) = gw.key(KeySpec::default()).await;
    // The mock echoes the prompt: what it echoes is what the upstream saw.
    let r = gw
        .post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-4o-mini", SECRET_PROMPT),
        )
        .await;
    assert_eq!(r.status(), 200);
    let echoed = reply_text(r).await;
    assert!(
        echoed.contains("<EMAIL_ADDRESS>") && echoed.contains("<PHONE_NUMBER>"),
        "{echoed}"
    );
    assert!(
        !echoed.contains("jane.roe") && !echoed.contains("555-0147"),
        "{echoed}"
    );
    // Blocked: 403 names the types, never the values.
    let p = expect_problem(
        gw.post("/v1/chat/completions", &key, &chat("gpt-4o", SECRET_PROMPT))
            .await,
        403,
        "pii-blocked",
    )
    .await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("EMAIL_ADDRESS") && detail.contains("PHONE_NUMBER"),
        "{detail}"
    );
    assert!(!p.to_string().contains("jane.roe"));
    // A rule limited to card numbers lets the rest through untouched.
    let r = gw
        .post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-4.1-mini", SECRET_PROMPT),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(reply_text(r).await.contains("jane.roe@example.com"));
    // Clean prompts pass every policy.
    let r = gw
        .post(
            "/v1/chat/completions",
            &key,
            &chat("gpt-4o", "what is a merkle tree"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let m = gw.metrics().await;
    assert!(
        m.contains("custos_pii_entities_total{entity=\"EMAIL_ADDRESS\"}"),
        "{m}"
    );
    assert!(!m.contains("jane.roe"));
    // Each type of personal data the guard redacted on its way to a provider requires a
    // DPIA, recorded once (the second prompt above was blocked: nothing went out).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let dpias = loop {
        let d = gw.store.dpias().await.unwrap();
        if d.len() >= 2 || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut keys: Vec<&str> = dpias.iter().map(|d| d.trigger_key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "pii-entity:acme:mock:EMAIL_ADDRESS",
            "pii-entity:acme:mock:PHONE_NUMBER"
        ]
    );
    assert!(dpias
        .iter()
        .all(|d| d.trigger_kind == "pii-entity" && d.state == "required"));
    assert!(!format!("{dpias:?}").contains("jane.roe"));
}

#[tokio::test]
async fn guard_redacts_responses_streamed_or_not() {
    let db = databases("pii_guard_responses").await.remove(0);
    let gw = start(&db, "[pii.guard]\nresponse = \"redact\"\n").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    for stream in [false, true] {
        let mut req = chat("gpt-4o-mini", SECRET_PROMPT);
        req["stream"] = json!(stream);
        let r = gw.post("/v1/chat/completions", &key, &req).await;
        assert_eq!(r.status(), 200);
        let text = reply_text(r).await;
        // The echo is redacted on the way back, across chunk boundaries when streamed.
        assert!(
            text.contains("<EMAIL_ADDRESS>") && text.contains("<PHONE_NUMBER>"),
            "stream={stream}: {text}"
        );
        assert!(
            !text.contains("jane.roe") && !text.contains("555"),
            "stream={stream}: {text}"
        );
        assert!(
            text.contains("please forward this to"),
            "the rest is intact: {text}"
        );
    }
}

/// The REST endpoint and the library (what `custos pii eval` and `pii dataset` call) are one
/// code path: on generated samples and on shapes that once split them (a date-time prefix,
/// escaped line breaks, multi-byte text), they report the same entities at the same offsets.
#[tokio::test]
async fn rest_analyze_and_the_library_agree() {
    let db = databases("pii_agree").await.remove(0);
    let gw = start(&db, "").await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let analyzer = custos_pii::Analyzer::default();
    let mut texts: Vec<String> = custos_pii::synth::generate(5, 150, 4)
        .into_iter()
        .map(|s| s.full_text)
        .collect();
    texts.extend(
        [
            "2000-04-16 11 meeting moved, call 0161 496 0000",
            "Name: José Álvarez\\nPhone: 961 52 200\\nCity: Valencia",
            "logged at 2019-03-02 08:15:00 by maria lopez from boston",
        ]
        .map(String::from),
    );
    let mut differ = Vec::new();
    for text in &texts {
        let rest: Vec<Value> = gw
            .post(
                "/pii/analyze",
                &key,
                &json!({"text": text, "language": "en"}),
            )
            .await
            .json()
            .await
            .unwrap();
        let mut rest: Vec<(String, u64, u64)> = rest
            .iter()
            .map(|r| {
                (
                    r["entity_type"].as_str().unwrap().to_string(),
                    r["start"].as_u64().unwrap(),
                    r["end"].as_u64().unwrap(),
                )
            })
            .collect();
        // The library speaks bytes; REST speaks chars, as Presidio does.
        let char_at = |b: usize| text[..b].chars().count() as u64;
        let mut lib: Vec<(String, u64, u64)> = analyzer
            .analyze(text)
            .iter()
            .map(|f| (f.entity_type.to_string(), char_at(f.start), char_at(f.end)))
            .collect();
        rest.sort();
        lib.sort();
        if rest != lib {
            differ.push(format!("{text:?}\n  rest {rest:?}\n  lib  {lib:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} texts differ:\n{}",
        differ.len(),
        texts.len(),
        differ.join("\n")
    );
}
