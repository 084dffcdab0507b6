//! guard: personal data in model calls, per `[pii.guard]` policy by tenant, app or model.
//! Prompts are allowed, redacted before the upstream sees them, or refused with 403 naming
//! the entity types (never the values). Responses are redacted, streamed ones too: each
//! choice's text is held back a few dozen bytes so an entity split across chunks is seen
//! whole before any of it leaves. Only entity counts reach metrics; values reach no log.

use crate::call::ModelCall;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use custos_core::principal::SharedPrincipal;
use custos_pii::anonymize::{Anonymizer, Pseudonyms};
use custos_pii::{Analyzer, GuardAction, Request as AnalyzeRequest};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Bytes of a streamed choice's text held back until more arrives or it ends.
const HOLD_BACK: usize = 64;

/// Put on a request whose response must be redacted; read by the proxy.
#[derive(Clone)]
pub struct ResponseGuard {
    analyzer: Arc<Analyzer>,
    entities: Arc<Vec<String>>,
    state: AppState,
}

/// Redacts `text` in place; returns the entity types it replaced.
fn redact(analyzer: &Analyzer, entities: &[String], text: &mut String) -> Vec<String> {
    let req = AnalyzeRequest {
        entities: (!entities.is_empty()).then_some(entities),
        threshold: None,
        ..Default::default()
    };
    let found = analyzer.analyze_with(text, &req);
    if found.is_empty() {
        return Vec::new();
    }
    let types = found.iter().map(|f| f.entity_type.to_string()).collect();
    if let Ok(r) = Anonymizer::default().apply(text, &found, &mut Pseudonyms::default()) {
        *text = r.text;
    }
    types
}

/// Every prompt string of a call body: chat message contents (strings and
/// text parts), completion prompts, embedding inputs.
fn prompt_texts(body: &mut Map<String, Value>) -> Vec<&mut String> {
    let mut out = Vec::new();
    fn strings<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => {
                for x in a {
                    match x {
                        Value::String(s) => out.push(s),
                        Value::Object(o)
                            if o.get("type").and_then(Value::as_str) == Some("text") =>
                        {
                            if let Some(Value::String(s)) = o.get_mut("text") {
                                out.push(s);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for (k, v) in body.iter_mut() {
        match k.as_str() {
            "messages" => {
                if let Value::Array(msgs) = v {
                    for m in msgs {
                        if let Some(c) = m.get_mut("content") {
                            strings(c, &mut out);
                        }
                    }
                }
            }
            "prompt" | "input" => strings(v, &mut out),
            _ => {}
        }
    }
    out
}

pub async fn screen(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.config.pii.guard.is_off() {
        return next.run(req).await;
    }
    let (Some(call), Some(principal)) = (
        req.extensions().get::<Arc<ModelCall>>().cloned(),
        req.extensions().get::<SharedPrincipal>().cloned(),
    ) else {
        return Problem::new(
            ProblemKind::Internal,
            "the guard ran before the call was parsed",
        )
        .into_response();
    };
    let policy = state
        .config
        .pii
        .guard
        .resolve(&principal.tenant, &principal.app, &call.model);
    let entities = Arc::new(policy.entities);
    if policy.prompt != GuardAction::Allow {
        let Some(mut body) = call.take_body() else {
            return Problem::new(ProblemKind::Internal, "the call's body was already taken")
                .into_response();
        };
        let analyzer = state.pii.clone();
        let ents = entities.clone();
        let action = policy.prompt;
        // Analysis is CPU work proportional to the prompt: keep it off the reactor.
        let joined = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for s in prompt_texts(&mut body) {
                if action == GuardAction::Block {
                    let req = AnalyzeRequest {
                        entities: (!ents.is_empty()).then_some(&ents[..]),
                        threshold: None,
                        ..Default::default()
                    };
                    found.extend(
                        analyzer
                            .analyze_with(s, &req)
                            .iter()
                            .map(|f| f.entity_type.to_string()),
                    );
                } else {
                    found.extend(redact(&analyzer, &ents, s));
                }
            }
            (body, found)
        })
        .await;
        let Ok((body, found)) = joined else {
            return Problem::new(ProblemKind::Internal, "PII screening failed unexpectedly")
                .into_response();
        };
        state.metrics.pii_found(found.iter().map(String::as_str));
        if action == GuardAction::Redact && !found.is_empty() {
            let types: BTreeSet<&str> = found.iter().map(String::as_str).collect();
            for t in types {
                state.dpia.pii_entity(
                    &principal.tenant,
                    call.route.provider.name(),
                    &call.route.region,
                    t,
                );
            }
        }
        if action == GuardAction::Block && !found.is_empty() {
            let types: BTreeSet<&str> = found.iter().map(String::as_str).collect();
            let list: Vec<&str> = types.into_iter().collect();
            return Problem::new(
                ProblemKind::PiiBlocked,
                format!(
                    "the prompt contains personal data that this gateway's policy blocks: {}; remove it or ask for a redacting policy",
                    list.join(", ")
                ),
            )
            .into_response();
        }
        call.put_body(body);
    }
    if policy.response == GuardAction::Redact {
        req.extensions_mut().insert(ResponseGuard {
            analyzer: state.pii.clone(),
            entities,
            state: state.clone(),
        });
    }
    next.run(req).await
}

impl ResponseGuard {
    /// Redacts a whole (non-streamed) JSON response; `None` leaves it as it is.
    pub fn full(&self, body: &[u8]) -> Option<Bytes> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let mut found = Vec::new();
        for choice in v.get_mut("choices")?.as_array_mut()? {
            let text = match choice.get_mut("message").and_then(|m| m.get_mut("content")) {
                Some(Value::String(s)) => Some(s),
                _ => match choice.get_mut("text") {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                },
            };
            if let Some(s) = text {
                found.extend(redact(&self.analyzer, &self.entities, s));
            }
        }
        self.state
            .metrics
            .pii_found(found.iter().map(String::as_str));
        serde_json::to_vec(&v).ok().map(Bytes::from)
    }

    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            guard: self.clone(),
            held: BTreeMap::new(),
            template: None,
        }
    }
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the held text: it may be personal data.
        f.debug_struct("StreamRedactor")
            .field("choices_held", &self.held.len())
            .finish()
    }
}

/// Redacts the text deltas of an SSE stream, one complete event at a time.
pub struct StreamRedactor {
    guard: ResponseGuard,
    /// Per choice index: text received but not yet sent.
    held: BTreeMap<u64, String>,
    /// The last event's envelope (id, model, …), for the flush event.
    template: Option<Map<String, Value>>,
}

fn data_of(event: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(d) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
        }
    }
    (!data.is_empty()).then_some(data)
}

fn sse(v: &Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

impl StreamRedactor {
    /// Text of `held` that can go now: everything but the last `HOLD_BACK`
    /// bytes (cut at a space), and never through the middle of an entity.
    fn release(&mut self, index: u64, all: bool) -> String {
        let Some(text) = self.held.get_mut(&index) else {
            return String::new();
        };
        let g = &self.guard;
        let req = AnalyzeRequest {
            entities: (!g.entities.is_empty()).then_some(&g.entities[..]),
            threshold: None,
            ..Default::default()
        };
        let found = g.analyzer.analyze_with(text, &req);
        let mut cut = if all {
            text.len()
        } else {
            let limit = text.len().saturating_sub(HOLD_BACK);
            text[..limit].rfind(char::is_whitespace).unwrap_or(0)
        };
        for f in &found {
            if f.start < cut && cut < f.end {
                cut = f.start;
            }
        }
        let inside: Vec<_> = found.into_iter().filter(|f| f.end <= cut).collect();
        let rest = text.split_off(cut);
        let mut out = std::mem::replace(text, rest);
        if !inside.is_empty() {
            g.state
                .metrics
                .pii_found(inside.iter().map(|f| f.entity_type.as_ref()));
            if let Ok(r) = Anonymizer::default().apply(&out, &inside, &mut Pseudonyms::default()) {
                out = r.text;
            }
        }
        out
    }

    /// One complete SSE event from upstream; returns what the client gets.
    pub fn event(&mut self, event: &[u8]) -> Vec<u8> {
        let parsed = data_of(event).and_then(|d| serde_json::from_slice::<Value>(&d).ok());
        let Some(Value::Object(mut obj)) = parsed else {
            // `[DONE]` or anything not JSON: first send what is held, then it.
            let mut out = self.flush();
            out.extend_from_slice(event);
            return out;
        };
        let mut finished = Vec::new();
        if let Some(Value::Array(choices)) = obj.get_mut("choices") {
            for c in choices.iter_mut() {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let ends = c.get("finish_reason").is_some_and(|f| !f.is_null());
                let delta_text = match c.get_mut("delta").and_then(|d| d.get_mut("content")) {
                    Some(Value::String(s)) => Some(std::mem::take(s)),
                    _ => match c.get_mut("text") {
                        Some(Value::String(s)) => Some(std::mem::take(s)),
                        _ => None,
                    },
                };
                if let Some(t) = delta_text {
                    self.held.entry(index).or_default().push_str(&t);
                    let out = self.release(index, ends);
                    if let Some(Value::String(s)) =
                        c.get_mut("delta").and_then(|d| d.get_mut("content"))
                    {
                        *s = out;
                    } else if let Some(Value::String(s)) = c.get_mut("text") {
                        *s = out;
                    }
                } else if ends {
                    finished.push(index);
                }
            }
        }
        let mut out = Vec::new();
        // A choice that ends without text in its last event: send what it holds first.
        for index in finished {
            let rest = self.release(index, true);
            if !rest.is_empty() {
                out.extend(self.text_event(&obj, index, rest));
            }
        }
        let mut envelope = obj.clone();
        envelope.remove("choices");
        envelope.remove("usage");
        self.template = Some(envelope);
        out.extend(sse(&Value::Object(obj)));
        out
    }

    fn text_event(&self, like: &Map<String, Value>, index: u64, text: String) -> Vec<u8> {
        let mut e = like.clone();
        e.remove("usage");
        e.insert(
            "choices".into(),
            serde_json::json!([{"index": index, "delta": {"content": text}, "finish_reason": null}]),
        );
        sse(&Value::Object(e))
    }

    /// Sends everything still held (the stream is ending).
    pub fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let indices: Vec<u64> = self.held.keys().copied().collect();
        let template = self.template.clone().unwrap_or_default();
        for index in indices {
            let rest = self.release(index, true);
            if !rest.is_empty() {
                out.extend(self.text_event(&template, index, rest));
            }
        }
        out
    }
}
