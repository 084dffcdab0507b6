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
    let m = gw
        .client
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
