//! Presidio-compatible PII endpoints: `POST /pii/analyze`, `POST /pii/anonymize`
//! and `GET /pii/supportedentities`, with Presidio's request and response
//! JSON (char offsets), so existing Presidio clients work against custos.
//! Analysis is CPU work: it runs on the blocking pool, never on the reactor.

use crate::call::read_body;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use custos_pii::analyzer::resolve_overlaps;
use custos_pii::anonymize::{Anonymizer, Operator, Pseudonyms};
use custos_pii::finding::byte_at_char;
use custos_pii::{CharOffsets, Finding, Request as AnalyzeRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyzeBody {
    text: String,
    #[serde(default = "english")]
    language: String,
    #[serde(default)]
    entities: Option<Vec<String>>,
    #[serde(default)]
    score_threshold: Option<f32>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    return_decision_process: bool,
    /// Words describing the text; they raise the scores of matching recognizers.
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    allow_list: Vec<String>,
    /// `exact` (default) or `regex`.
    #[serde(default)]
    allow_list_match: Option<String>,
    /// Python `re` flags for ad-hoc regexes: accepted, unused.
    #[serde(default)]
    #[allow(dead_code)]
    regex_flags: Option<i64>,
    /// Presidio's per-request pattern recognizers and deny lists.
    #[serde(default)]
    ad_hoc_recognizers: Vec<AdHoc>,
}

#[derive(Deserialize)]
struct AdHoc {
    name: String,
    supported_entity: String,
    #[serde(default)]
    #[allow(dead_code)]
    supported_language: Option<String>,
    #[serde(default)]
    patterns: Vec<AdHocPattern>,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    deny_list: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    deny_list_score: Option<f32>,
}

#[derive(Deserialize)]
struct AdHocPattern {
    name: String,
    regex: String,
    #[serde(default = "one")]
    score: f32,
}

/// An analyzer with this request's ad-hoc recognizers added to the configured ones.
fn ad_hoc_analyzer(state: &AppState, ad_hoc: &[AdHoc]) -> Result<custos_pii::Analyzer, Problem> {
    let mut config = state.config.pii.clone();
    for r in ad_hoc {
        for p in &r.patterns {
            config.recognizers.push(custos_pii::CustomRecognizer {
                name: format!("{}: {}", r.name, p.name),
                entity: r.supported_entity.clone(),
                pattern: p.regex.clone(),
                score: p.score,
                context: r.context.clone(),
                validator: None,
            });
        }
        if !r.deny_list.is_empty() {
            config.deny.push(custos_pii::DenyList {
                entity: r.supported_entity.clone(),
                words: r.deny_list.clone(),
                case_sensitive: false,
            });
        }
    }
    custos_pii::Analyzer::new(&config).map_err(|e| invalid(format!("ad_hoc_recognizers: {e} (patterns use Rust regex syntax: no look-around or back-references)")))
}

fn english() -> String {
    "en".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyzerResult {
    entity_type: String,
    start: usize,
    end: usize,
    #[serde(default = "one")]
    score: f32,
    // Presidio clients echo these back from /analyze; accepted and unused.
    #[serde(default)]
    #[allow(dead_code)]
    analysis_explanation: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    recognition_metadata: Option<Value>,
}

fn one() -> f32 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymizeBody {
    text: String,
    #[serde(default)]
    anonymizers: HashMap<String, Value>,
    #[serde(default)]
    analyzer_results: Vec<AnalyzerResult>,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::InvalidRequest, detail)
}

async fn parse<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<T, Problem> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(
        &parts.headers,
        body,
        state.config.server.max_body_bytes as usize,
    )
    .await?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let kind = if inner.is_syntax() || inner.is_eof() {
            ProblemKind::MalformedJson
        } else {
            ProblemKind::InvalidRequest
        };
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        Problem::new(
            kind,
            format!("the request body is not a valid PII request{at}: {inner}"),
        )
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem::new(ProblemKind::Internal, "PII analysis failed unexpectedly"))
}

pub async fn analyze(State(state): State<AppState>, req: Request) -> Response {
    match analyze_inner(state, req).await {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn analyze_inner(state: AppState, req: Request) -> Result<Value, Problem> {
    let body: AnalyzeBody = parse(&state, req).await?;
    if !body.language.eq_ignore_ascii_case("en") {
        return Err(invalid(format!(
            "language `{}` is not supported; custos analyzes English (`en`)",
            body.language
        )));
    }
    if let Some(t) = body.score_threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid(format!(
                "score_threshold must be between 0 and 1, got {t}"
            )));
        }
    }
    let _ = &body.correlation_id;
    match body.allow_list_match.as_deref() {
        None | Some("exact") | Some("regex") => {}
        Some(other) => {
            return Err(invalid(format!(
                "allow_list_match must be \"exact\" or \"regex\", got {other:?}"
            )))
        }
    }
    let analyzer = if body.ad_hoc_recognizers.is_empty() {
        state.pii.clone()
    } else {
        std::sync::Arc::new(ad_hoc_analyzer(&state, &body.ad_hoc_recognizers)?)
    };
    let findings = blocking(move || {
        let context: Vec<String> = body.context.iter().map(|w| w.to_lowercase()).collect();
        let req = AnalyzeRequest {
            entities: body.entities.as_deref(),
            threshold: body.score_threshold,
            context: &context,
            allow: &body.allow_list,
            allow_regex: body.allow_list_match.as_deref() == Some("regex"),
        };
        let found = analyzer.analyze_with(&body.text, &req);
        let types: Vec<String> = found.iter().map(|f| f.entity_type.to_string()).collect();
        (
            results_json(&body.text, &found, body.return_decision_process),
            types,
        )
    })
    .await?;
    state
        .metrics
        .pii_found(findings.1.iter().map(String::as_str));
    Ok(findings.0)
}

/// Presidio's RecognizerResult list, with char offsets.
fn results_json(text: &str, found: &[Finding], explain: bool) -> Value {
    let mut chars = CharOffsets::new(text);
    Value::Array(
        found
            .iter()
            .map(|f| {
                let score = (f64::from(f.score) * 100.0).round() / 100.0;
                json!({
                    "entity_type": f.entity_type,
                    "start": chars.char_at(f.start),
                    "end": chars.char_at(f.end),
                    "score": score,
                    "analysis_explanation": if explain { json!({"recognizer": f.recognizer, "score": score}) } else { Value::Null },
                    "recognition_metadata": {"recognizer_name": f.recognizer, "recognizer_identifier": f.recognizer},
                })
            })
            .collect(),
    )
}

pub async fn anonymize(State(state): State<AppState>, req: Request) -> Response {
    match anonymize_inner(state, req).await {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn anonymize_inner(state: AppState, req: Request) -> Result<Value, Problem> {
    let body: AnonymizeBody = parse(&state, req).await?;
    let mut anonymizer = Anonymizer {
        key: state.pii_key.clone(),
        salt: state.pii_salt.clone(),
        ..Anonymizer::default()
    };
    for (entity, spec) in &body.anonymizers {
        let op: Operator = serde_json::from_value(spec.clone())
            .map_err(|e| invalid(format!("anonymizers.{entity}: {e}; custos supports replace, redact, mask, hash, encrypt, decrypt, keep and pseudonymize")))?;
        if entity == "DEFAULT" {
            anonymizer.default = op;
        } else {
            anonymizer.operators.insert(entity.clone(), op);
        }
    }
    let text = body.text;
    let nchars = text.chars().count();
    let mut findings = Vec::with_capacity(body.analyzer_results.len());
    for (i, r) in body.analyzer_results.iter().enumerate() {
        if r.start > r.end || r.end > nchars {
            return Err(invalid(format!(
                "analyzer_results[{i}]: span {}..{} is outside the text ({nchars} characters)",
                r.start, r.end
            )));
        }
        findings.push(Finding::new(
            r.entity_type.clone(),
            byte_at_char(&text, r.start),
            byte_at_char(&text, r.end),
            r.score,
            "request",
        ));
    }
    blocking(move || {
        // Presidio resolves overlapping results before it anonymizes; so do we.
        let findings = resolve_overlaps(findings);
        let result = anonymizer.apply(&text, &findings, &mut Pseudonyms::default()).map_err(|e| invalid(e.to_string()))?;
        let mut chars = CharOffsets::new(&result.text);
        let items: Vec<Value> = result
            .items
            .iter()
            .map(|i| json!({"start": chars.char_at(i.start), "end": chars.char_at(i.end), "entity_type": i.entity_type, "text": i.text, "operator": i.operator}))
            .collect();
        Ok(json!({"text": result.text, "items": items}))
    })
    .await?
}

pub async fn supported_entities(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(state.pii.supported_entities())
}
