//! guard: personal data and tool calls in model calls. PII per `[pii.guard]` policy by
//! tenant, app or model, in every text a model reads or writes (`texts`): prompts are
//! allowed, redacted before the upstream sees them, or refused with 403 naming the entity
//! types (never the values); responses are redacted, streamed ones too: each choice's text is
//! held back a few dozen bytes so an entity split across chunks is seen whole before any of
//! it leaves, and streamed tool calls are held until complete. The tool calls a model makes
//! are judged by the tools gate and refused ones rewritten or blocked (`[tools] called`).
//! Only entity counts reach metrics; values reach no log.

use crate::audit::AuditSlot;
use crate::call::{Endpoint, ModelCall};
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use crate::texts::{request_texts, response_texts, screened_texts};
use crate::tools::ToolGate;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use custos_core::config::{InjectionAction, InjectionPolicy, ToolCalled};
use custos_core::principal::SharedPrincipal;
use custos_pii::anonymize::{Anonymizer, Pseudonyms};
use custos_pii::injection::{defuse, summarize, Category, Detector, Position};
use custos_pii::{Analyzer, GuardAction, GuardPolicy, Request as AnalyzeRequest};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod responses;

/// Bytes of a streamed choice's text held back until more arrives or it ends.
const HOLD_BACK: usize = 64;

/// Past this much held text, a stream's text is released even inside an open link.
const MAX_HELD_LINK: usize = 16 * 1024;

/// Where a markdown link or image, or an HTML image tag, opens in `text` without closing.
fn open_link(text: &str) -> Option<usize> {
    let bracket = text.rfind('[');
    let tag = text.rfind("<img");
    let start = match (bracket, tag) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b)?,
    };
    let rest = &text[start..];
    let closed = if rest.starts_with("<img") {
        rest.contains('>')
    } else {
        // `[text](url)` is closed by the `)` after `](`; a bare `[x]` never opens a URL.
        match rest.find("](") {
            Some(i) => rest[i..].contains(')'),
            None => rest.contains(']') && !rest.ends_with(']'),
        }
    };
    if closed {
        return None;
    }
    // Include the `!` of an image.
    Some(if start > 0 && text.as_bytes()[start - 1] == b'!' {
        start - 1
    } else {
        start
    })
}

/// The most tool-call argument bytes one stream may hold while they are screened.
const MAX_HELD_CALLS: usize = 1 << 20;

/// What screens the response, put on the request for the proxy.
#[derive(Clone)]
pub struct ResponseGuard {
    /// The analyzer and the entity types to redact, when responses are redacted.
    pii: Option<(Arc<Analyzer>, Arc<Vec<String>>)>,
    /// Judges the model's tool calls, when the request offered tools.
    tools: Option<Arc<ToolGate>>,
    /// Screens the model's text for data leaving through images and links.
    exfil: Option<Arc<Exfil>>,
    state: AppState,
}

/// Output screening: images and links in the model's answer that carry data elsewhere.
struct Exfil {
    detectors: Arc<Vec<Box<dyn Detector>>>,
    block: bool,
    threshold: f32,
    log: Option<Arc<std::sync::Mutex<Vec<Value>>>>,
}

impl Exfil {
    /// Screens one text of the answer; with `block`, defuses what it finds. True when the
    /// text changed.
    fn screen(&self, state: &AppState, text: &mut String) -> bool {
        let signals: Vec<_> = self
            .detectors
            .iter()
            .flat_map(|d| d.detect(text, Position::Output))
            .filter(|s| s.score >= self.threshold)
            .collect();
        if signals.is_empty() {
            return false;
        }
        let action = if self.block { "blocked" } else { "flagged" };
        for (category, score) in summarize(&signals) {
            state.metrics.injection(category.as_str(), action);
            if let Some(log) = &self.log {
                log.lock().unwrap_or_else(|e| e.into_inner()).push(json!({
                    "category": category.as_str(), "score": (score * 100.0).round() / 100.0,
                    "position": "output", "action": action}));
            }
        }
        if !self.block {
            return false;
        }
        match defuse(text, &signals, self.threshold) {
            Some(t) => {
                *text = t;
                true
            }
            None => false,
        }
    }
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

/// The assistant's words in place of a refused tool call.
fn refusal(name: &str) -> String {
    format!("[custos: the model called the tool {name:?}, which this app may not use; the call was not passed on]")
}

/// A Responses API message item saying a tool call was refused, in place of the call item.
fn refusal_item(call: &Value, name: &str) -> Value {
    let call_id = call
        .get("call_id")
        .or_else(|| call.get("id"))
        .and_then(Value::as_str)
        .unwrap_or("call");
    json!({"id": format!("msg_custos_{call_id}"), "type": "message", "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": refusal(name), "annotations": []}]})
}

/// A Responses API item the tools gate judges: a function call or a custom tool call, and
/// the member holding its arguments.
fn call_item(item: &Value) -> Option<&'static str> {
    match item.get("type").and_then(Value::as_str) {
        Some("function_call") => Some("arguments"),
        Some("custom_tool_call") => Some("input"),
        _ => None,
    }
}

/// Token log probabilities spell out the text they score: when text is redacted they go,
/// from chat choices and from Responses output parts.
fn drop_logprobs(v: &mut Value) {
    if let Some(Value::Array(choices)) = v.get_mut("choices") {
        for c in choices.iter_mut().filter_map(Value::as_object_mut) {
            if c.get("logprobs").is_some_and(|l| !l.is_null()) {
                c.insert("logprobs".into(), Value::Null);
            }
        }
    }
    if let Some(Value::Array(items)) = v.get_mut("output") {
        for item in items.iter_mut() {
            drop_part_logprobs(item);
        }
    }
}

/// The `logprobs` of a Responses item's content parts, emptied.
fn drop_part_logprobs(item: &mut Value) {
    if let Some(Value::Array(parts)) = item.get_mut("content") {
        for p in parts.iter_mut().filter_map(Value::as_object_mut) {
            if p.contains_key("logprobs") {
                p.insert("logprobs".into(), json!([]));
            }
        }
    }
}

/// Prompts above this many bytes of text are screened on the blocking pool.
const INLINE_SCREEN_BYTES: usize = 256 * 1024;

/// Prompts above this many bytes of text are analyzed for PII on the blocking pool (the
/// engine takes about 25 µs per KiB).
const INLINE_PII_BYTES: usize = 4 * 1024;

/// One injection finding at or above the policy's threshold.
struct Injection {
    category: Category,
    score: f32,
    position: Position,
}

fn find_injections(
    detectors: &[Box<dyn Detector>],
    texts: &[(Position, &str)],
    policy: InjectionPolicy,
) -> Vec<Injection> {
    let mut found: Vec<Injection> = Vec::new();
    for &(position, text) in texts {
        let action = match position {
            Position::Indirect => policy.indirect,
            _ => policy.direct,
        };
        if action == InjectionAction::Allow || text.len() < 8 {
            continue;
        }
        let signals: Vec<_> = detectors
            .iter()
            .flat_map(|d| d.detect(text, position))
            .collect();
        for (category, score) in summarize(&signals) {
            if score < policy.threshold {
                continue;
            }
            match found
                .iter_mut()
                .find(|f| f.category == category && f.position == position)
            {
                Some(f) => f.score = f.score.max(score),
                None => found.push(Injection {
                    category,
                    score,
                    position,
                }),
            }
        }
    }
    found
}

fn where_(p: Position) -> &'static str {
    match p {
        Position::Direct => "user content",
        Position::Indirect => "a tool result",
        Position::Output => "the model's answer",
    }
}

/// Screens the call's prompts for injections; a response when the policy blocks one.
async fn screen_injection(
    state: &AppState,
    call: &ModelCall,
    policy: InjectionPolicy,
    slot: Option<&Arc<AuditSlot>>,
) -> Option<Response> {
    let Some(body) = call.take_body() else {
        return Some(
            Problem::new(ProblemKind::Internal, "the call's body was already taken")
                .into_response(),
        );
    };
    let texts = screened_texts(&body);
    let size: usize = texts.iter().map(|(_, t)| t.len()).sum();
    let inline =
        (size <= INLINE_SCREEN_BYTES).then(|| find_injections(&state.injection, &texts, policy));
    drop(texts);
    let (body, found) = if let Some(found) = inline {
        (body, found)
    } else {
        let detectors = state.injection.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let found = find_injections(&detectors, &screened_texts(&body), policy);
            (body, found)
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(_) => {
                return Some(
                    Problem::new(
                        ProblemKind::Internal,
                        "injection screening failed unexpectedly",
                    )
                    .into_response(),
                )
            }
        }
    };
    call.put_body(body);
    if found.is_empty() {
        return None;
    }
    let action_of = |p: Position| match p {
        Position::Indirect => policy.indirect,
        _ => policy.direct,
    };
    let mut record = Vec::new();
    let mut blocked: Option<&Injection> = None;
    for f in &found {
        let block = action_of(f.position) == InjectionAction::Block;
        let action = if block { "blocked" } else { "flagged" };
        state.metrics.injection(f.category.as_str(), action);
        record.push(json!({"category": f.category.as_str(), "score": (f.score * 100.0).round() / 100.0,
                           "position": match f.position { Position::Indirect => "indirect", _ => "direct" },
                           "action": action}));
        if block && blocked.is_none_or(|b| b.score < f.score) {
            blocked = Some(f);
        }
    }
    if let Some(s) = slot {
        s.injection_log()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(record);
    }
    blocked.map(|b| {
        Problem::new(
            ProblemKind::PromptInjection,
            format!(
                "the request holds a prompt injection ({}, in {}, score {:.2}) that this gateway's policy blocks",
                b.category.as_str(),
                where_(b.position),
                b.score
            ),
        )
        .into_response()
    })
}

pub async fn screen<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let gate = req.extensions().get::<Arc<ToolGate>>().cloned();
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
    let slot = req.extensions().get::<Arc<AuditSlot>>().cloned();
    let injection = (!state.config.injection.is_off() && call.endpoint != Endpoint::Embeddings)
        .then(|| {
            state
                .config
                .injection
                .resolve(&principal.tenant, &principal.app, &call.model)
        });
    if let Some(policy) = injection {
        if let Some(refused) = screen_injection(state, &call, policy, slot.as_ref()).await {
            return refused;
        }
    }
    let exfil = injection
        .filter(|p| p.output != InjectionAction::Allow)
        .map(|p| Exfil {
            detectors: state.injection.clone(),
            block: p.output == InjectionAction::Block,
            threshold: p.threshold,
            log: slot.as_ref().map(|s| s.injection_log()),
        });
    if state.config.pii.guard.is_off() && gate.is_none() && exfil.is_none() {
        return next.run(req).await;
    }
    let policy = if state.config.pii.guard.is_off() {
        GuardPolicy {
            prompt: GuardAction::Allow,
            response: GuardAction::Allow,
            entities: Vec::new(),
        }
    } else {
        state
            .config
            .pii
            .guard
            .resolve(&principal.tenant, &principal.app, &call.model)
    };
    let entities = Arc::new(policy.entities);
    if policy.prompt != GuardAction::Allow {
        let Some(mut body) = call.take_body() else {
            return Problem::new(ProblemKind::Internal, "the call's body was already taken")
                .into_response();
        };
        let analyzer = state.pii.clone();
        let ents = entities.clone();
        let action = policy.prompt;
        let mut size = 0;
        for mut slot in request_texts(&mut body) {
            slot.each(&mut |s| {
                size += s.len();
                false
            });
        }
        let work = move || {
            let mut found = Vec::new();
            let req = AnalyzeRequest {
                entities: (!ents.is_empty()).then_some(&ents[..]),
                threshold: None,
                ..Default::default()
            };
            for mut slot in request_texts(&mut body) {
                slot.each(&mut |s| {
                    if action == GuardAction::Block {
                        found.extend(
                            analyzer
                                .analyze_with(s, &req)
                                .iter()
                                .map(|f| f.entity_type.to_string()),
                        );
                        false
                    } else {
                        let types = redact(&analyzer, &ents, s);
                        let changed = !types.is_empty();
                        found.extend(types);
                        changed
                    }
                });
            }
            (body, found)
        };
        // Analysis is CPU work proportional to the prompt: a short prompt is screened in
        // place (a hop to the blocking pool and back costs more than its analysis), a long
        // one off the reactor.
        let (body, found) = if size <= INLINE_PII_BYTES {
            work()
        } else {
            let Ok(done) = tokio::task::spawn_blocking(work).await else {
                return Problem::new(ProblemKind::Internal, "PII screening failed unexpectedly")
                    .into_response();
            };
            done
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
    let pii =
        (policy.response == GuardAction::Redact).then(|| (state.pii.clone(), entities.clone()));
    if pii.is_some() || gate.is_some() || exfil.is_some() {
        req.extensions_mut().insert(ResponseGuard {
            pii,
            tools: gate,
            exfil: exfil.map(Arc::new),
            state: state.clone(),
        });
    }
    next.run(req).await
}

/// What the guard made of a whole response.
#[derive(Debug)]
pub enum Screened {
    /// Nothing to change.
    Unchanged,
    /// The body to send instead.
    Rewritten(Bytes),
    /// A refused tool call under `[tools] called = "block"`: answer with this problem.
    Refused(String),
}

impl ResponseGuard {
    fn redact_all(&self, texts: Vec<crate::texts::Slot<'_>>) {
        let Some((analyzer, entities)) = &self.pii else {
            return;
        };
        let mut found = Vec::new();
        for mut slot in texts {
            slot.each(&mut |s| {
                let types = redact(analyzer, entities, s);
                let changed = !types.is_empty();
                found.extend(types);
                changed
            });
        }
        self.state
            .metrics
            .pii_found(found.iter().map(String::as_str));
    }

    /// Screens texts of the answer: exfiltrating links defused, then personal data redacted.
    /// True when any text changed.
    fn clean(&self, texts: Vec<crate::texts::Slot<'_>>) -> bool {
        if self.pii.is_none() && self.exfil.is_none() {
            return false;
        }
        let mut changed_any = false;
        let mut found = Vec::new();
        for mut slot in texts {
            slot.each(&mut |t| {
                let mut changed = false;
                if let Some(x) = &self.exfil {
                    changed |= x.screen(&self.state, t);
                }
                if let Some((analyzer, entities)) = &self.pii {
                    let types = redact(analyzer, entities, t);
                    changed |= !types.is_empty();
                    found.extend(types);
                }
                changed_any |= changed;
                changed
            });
        }
        self.state
            .metrics
            .pii_found(found.iter().map(String::as_str));
        changed_any
    }

    /// Judges the function and custom tool calls among Responses output items; a refused one
    /// becomes a message saying so. Returns the refused names.
    fn judge_items(&self, gate: &ToolGate, items: &mut [Value]) -> Vec<String> {
        let mut refused = Vec::new();
        for item in items.iter_mut() {
            let Some(field) = call_item(item) else {
                continue;
            };
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let args = item.get(field).and_then(Value::as_str).unwrap_or("");
            if gate.judge(&name, Some(args)).is_err() {
                *item = refusal_item(item, &name);
                refused.push(name);
            }
        }
        refused
    }

    /// Judges the tool calls of one chat message; refused ones are removed (and the message
    /// says so when none is left). Returns the refused names.
    fn judge_message(&self, gate: &ToolGate, m: &mut Map<String, Value>) -> Vec<String> {
        let mut refused = Vec::new();
        if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
            calls.retain(|tc| {
                let f = tc.get("function");
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let args = f
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let ok = gate.judge(name, Some(args)).is_ok();
                if !ok {
                    refused.push(name.to_owned());
                }
                ok
            });
            if calls.is_empty() {
                m.remove("tool_calls");
            }
        }
        if let Some(f) = m.get("function_call") {
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
            if gate.judge(&name, Some(args)).is_err() {
                m.remove("function_call");
                refused.push(name);
            }
        }
        if !refused.is_empty() && !m.contains_key("tool_calls") && !m.contains_key("function_call")
        {
            let note: Vec<String> = refused.iter().map(|n| refusal(n)).collect();
            let text = match m.get("content").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => format!("{c}\n{}", note.join("\n")),
                _ => note.join("\n"),
            };
            m.insert("content".into(), Value::String(text));
        }
        refused
    }

    /// Screens a whole (non-streamed) JSON response.
    pub fn full(&self, body: &[u8]) -> Screened {
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
            return Screened::Unchanged;
        };
        let mut refused = Vec::new();
        if let Some(gate) = &self.tools {
            if let Some(Value::Array(choices)) = v.get_mut("choices") {
                for c in choices.iter_mut().filter_map(Value::as_object_mut) {
                    let mut gone = Vec::new();
                    if let Some(Value::Object(m)) = c.get_mut("message") {
                        gone = self.judge_message(gate, m);
                        if !gone.is_empty()
                            && !m.contains_key("tool_calls")
                            && !m.contains_key("function_call")
                        {
                            c.insert("finish_reason".into(), Value::String("stop".into()));
                        }
                    }
                    refused.extend(gone);
                }
            }
            if let Some(Value::Array(items)) = v.get_mut("output") {
                refused.extend(self.judge_items(gate, items));
            }
        }
        if !refused.is_empty() && self.state.config.tools.called == ToolCalled::Block {
            return Screened::Refused(format!(
                "the model called tools this app may not use: {}; the answer was withheld",
                refused.join(", ")
            ));
        }
        let defused = self.clean(response_texts(&mut v));
        if self.pii.is_some() {
            drop_logprobs(&mut v);
        }
        if self.pii.is_none() && refused.is_empty() && !defused {
            return Screened::Unchanged;
        }
        match serde_json::to_vec(&v) {
            Ok(b) => Screened::Rewritten(Bytes::from(b)),
            Err(_) => Screened::Unchanged,
        }
    }

    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            guard: self.clone(),
            held: BTreeMap::new(),
            calls: BTreeMap::new(),
            held_call_bytes: 0,
            broken: false,
            template: None,
            responses: None,
        }
    }
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the held text: it may be personal data.
        f.debug_struct("StreamRedactor")
            .field("choices_held", &self.held.len())
            .field("calls_held", &self.calls.len())
            .finish()
    }
}

/// A streamed tool call, assembled from its deltas.
#[derive(Debug, Default)]
struct HeldCall {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

/// Index of a legacy `function_call` among a choice's calls.
const LEGACY_CALL: u64 = u64::MAX;

/// Screens an SSE stream one complete event at a time: redacts text deltas (held back a
/// little), and holds tool-call deltas until the call is complete, then judges and redacts
/// it and sends it as one delta.
pub struct StreamRedactor {
    guard: ResponseGuard,
    /// Per choice index: text received but not yet sent.
    held: BTreeMap<u64, String>,
    /// Per (choice, call index): a tool call being assembled.
    calls: BTreeMap<(u64, u64), HeldCall>,
    held_call_bytes: usize,
    /// The stream was ended by the guard (a blocked call, or too much to hold): drop the rest.
    broken: bool,
    /// The last event's envelope (id, model, …), for the flush event.
    template: Option<Map<String, Value>>,
    /// A Responses API stream's state, once one of its typed events is seen.
    responses: Option<Box<responses::StreamState>>,
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

fn error_event(message: &str, code: &str) -> Vec<u8> {
    sse(&json!({"error": {"message": message, "type": "api_error", "code": code}}))
}

impl StreamRedactor {
    /// Text of `held` that can go now: everything but the last `HOLD_BACK`
    /// bytes (cut at a space), and never through the middle of an entity.
    fn release(&mut self, index: u64, all: bool) -> String {
        let Some(text) = self.held.get_mut(&index) else {
            return String::new();
        };
        let found = match &self.guard.pii {
            Some((analyzer, entities)) => {
                let req = AnalyzeRequest {
                    entities: (!entities.is_empty()).then_some(&entities[..]),
                    threshold: None,
                    ..Default::default()
                };
                analyzer.analyze_with(text, &req)
            }
            None => Vec::new(),
        };
        let mut cut = if all {
            text.len()
        } else {
            let limit = text.len().saturating_sub(HOLD_BACK);
            text[..limit].rfind(char::is_whitespace).unwrap_or(0)
        };
        if !all && self.guard.exfil.is_some() && text.len() < MAX_HELD_LINK {
            // Never release part of a link or image: its URL is judged whole.
            cut = open_link(&text[..cut]).unwrap_or(cut);
        }
        for f in &found {
            if f.start < cut && cut < f.end {
                cut = f.start;
            }
        }
        let inside: Vec<_> = found.into_iter().filter(|f| f.end <= cut).collect();
        let rest = text.split_off(cut);
        let mut out = std::mem::replace(text, rest);
        let mut inside = inside;
        if let Some(x) = &self.guard.exfil {
            // Before redaction, which may rewrite the very URL; a defused text is analyzed
            // again, as the entities' offsets moved.
            if x.screen(&self.guard.state, &mut out) {
                if let Some((analyzer, entities)) = &self.guard.pii {
                    let req = AnalyzeRequest {
                        entities: (!entities.is_empty()).then_some(&entities[..]),
                        threshold: None,
                        ..Default::default()
                    };
                    inside = analyzer.analyze_with(&out, &req);
                }
            }
        }
        if !inside.is_empty() {
            self.guard
                .state
                .metrics
                .pii_found(inside.iter().map(|f| f.entity_type.as_ref()));
            if let Ok(r) = Anonymizer::default().apply(&out, &inside, &mut Pseudonyms::default()) {
                out = r.text;
            }
        }
        out
    }

    /// Takes the tool-call deltas of one choice into the held calls. False when the stream
    /// holds more than it may.
    fn hold_calls(&mut self, index: u64, delta: &mut Map<String, Value>) -> bool {
        if let Some(Value::Array(list)) = delta.remove("tool_calls") {
            for (pos, tc) in list.into_iter().enumerate() {
                let k = tc
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                let call = self.calls.entry((index, k)).or_default();
                if let Some(id) = tc.get("id").filter(|v| !v.is_null()) {
                    call.id = Some(id.clone());
                }
                if let Some(t) = tc.get("type").filter(|v| !v.is_null()) {
                    call.kind = Some(t.clone());
                }
                if let Some(f) = tc.get("function") {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        call.name.push_str(n);
                    }
                    if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                        call.arguments.push_str(a);
                        self.held_call_bytes += a.len();
                    }
                }
            }
        }
        if let Some(f) = delta.remove("function_call") {
            let call = self.calls.entry((index, LEGACY_CALL)).or_default();
            if let Some(n) = f.get("name").and_then(Value::as_str) {
                call.name.push_str(n);
            }
            if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                call.arguments.push_str(a);
                self.held_call_bytes += a.len();
            }
        }
        self.held_call_bytes <= MAX_HELD_CALLS
    }

    /// The held calls of choice `index`, judged and redacted, as events to send now; and
    /// whether every one of them was refused.
    fn release_calls(&mut self, like: &Map<String, Value>, index: u64) -> (Vec<u8>, bool) {
        let keys: Vec<(u64, u64)> = self
            .calls
            .range((index, 0)..=(index, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return (Vec::new(), false);
        }
        let mut out = Vec::new();
        let mut passed = Vec::new();
        let mut refused = Vec::new();
        for key in keys {
            let Some(mut call) = self.calls.remove(&key) else {
                continue;
            };
            self.held_call_bytes = self.held_call_bytes.saturating_sub(call.arguments.len());
            if let Some(gate) = &self.guard.tools {
                if gate.judge(&call.name, Some(&call.arguments)).is_err() {
                    refused.push(call.name);
                    continue;
                }
            }
            self.guard
                .redact_all(vec![crate::texts::Slot::Json(&mut call.arguments)]);
            passed.push((key.1, call));
        }
        if !refused.is_empty() && self.guard.state.config.tools.called == ToolCalled::Block {
            self.broken = true;
            out.extend(error_event(
                &format!(
                    "the model called tools this app may not use: {}; the stream was ended",
                    refused.join(", ")
                ),
                "tool-call-refused",
            ));
            return (out, true);
        }
        let all_refused = passed.is_empty();
        let mut tool_calls = Vec::new();
        for (k, call) in passed {
            if k == LEGACY_CALL {
                out.extend(self.delta_event(
                    like,
                    index,
                    json!({"function_call": {"name": call.name, "arguments": call.arguments}}),
                ));
                continue;
            }
            let mut tc = Map::new();
            tc.insert("index".into(), json!(k));
            if let Some(id) = call.id {
                tc.insert("id".into(), id);
            }
            tc.insert(
                "type".into(),
                call.kind
                    .unwrap_or_else(|| Value::String("function".into())),
            );
            tc.insert(
                "function".into(),
                json!({"name": call.name, "arguments": call.arguments}),
            );
            tool_calls.push(Value::Object(tc));
        }
        if !tool_calls.is_empty() {
            out.extend(self.delta_event(like, index, json!({"tool_calls": tool_calls})));
        }
        if !refused.is_empty() {
            let note: Vec<String> = refused.iter().map(|n| refusal(n)).collect();
            out.extend(self.delta_event(like, index, json!({"content": note.join("\n")})));
        }
        (out, all_refused && !refused.is_empty())
    }

    /// One complete SSE event from upstream; returns what the client gets.
    pub fn event(&mut self, event: &[u8]) -> Vec<u8> {
        if self.broken {
            return Vec::new();
        }
        let parsed = data_of(event).and_then(|d| serde_json::from_slice::<Value>(&d).ok());
        if let Some(Value::Object(obj)) = &parsed {
            if obj.get("type").is_some_and(Value::is_string) && !obj.contains_key("choices") {
                let Some(Value::Object(obj)) = parsed else {
                    return Vec::new();
                };
                return self.responses_event(obj);
            }
        }
        let Some(Value::Object(mut obj)) = parsed else {
            // `[DONE]` or anything not JSON: first send what is held, then it.
            let mut out = self.flush();
            if !self.broken {
                out.extend_from_slice(event);
            }
            return out;
        };
        let mut envelope = obj.clone();
        envelope.remove("choices");
        envelope.remove("usage");
        let mut finished = Vec::new();
        let mut too_much = false;
        let mut text_choices = Vec::new();
        if let Some(Value::Array(choices)) = obj.get_mut("choices") {
            for c in choices.iter_mut() {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let ends = c.get("finish_reason").is_some_and(|f| !f.is_null());
                if let Some(Value::Object(d)) = c.get_mut("delta") {
                    too_much |= !self.hold_calls(index, d);
                }
                if self.guard.pii.is_some() {
                    if let Some(l) = c.get_mut("logprobs").filter(|l| !l.is_null()) {
                        *l = Value::Null;
                    }
                }
                let delta_text = if self.guard.pii.is_none() && self.guard.exfil.is_none() {
                    None
                } else {
                    match c.get_mut("delta").and_then(|d| d.get_mut("content")) {
                        Some(Value::String(s)) => Some(std::mem::take(s)),
                        _ => match c.get_mut("text") {
                            Some(Value::String(s)) => Some(std::mem::take(s)),
                            _ => None,
                        },
                    }
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
                    text_choices.push(index);
                }
                if ends {
                    finished.push(index);
                }
            }
        }
        if too_much {
            self.broken = true;
            self.calls.clear();
            return error_event(
                "the model's tool-call arguments exceed what the gateway holds to screen them (1 MiB); the stream was ended",
                "tool-call-too-large",
            );
        }
        let mut out = Vec::new();
        let mut all_refused = Vec::new();
        for &index in &finished {
            // A choice that ends without text in its last event: send what it holds first.
            if !text_choices.contains(&index) {
                let rest = self.release(index, true);
                if !rest.is_empty() {
                    out.extend(self.delta_event(&envelope, index, json!({"content": rest})));
                }
            }
            let (events, refused_all) = self.release_calls(&envelope, index);
            out.extend(events);
            if self.broken {
                return out;
            }
            if refused_all {
                all_refused.push(index);
            }
        }
        self.template = Some(envelope);
        if let Some(Value::Array(choices)) = obj.get_mut("choices") {
            for c in choices.iter_mut() {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                if all_refused.contains(&index) {
                    // Nothing is left to call: the answer is the refusal text.
                    c["finish_reason"] = Value::String("stop".into());
                }
            }
            let empty = choices.iter().all(|c| {
                c.get("finish_reason").is_none_or(Value::is_null)
                    && c.get("delta")
                        .is_none_or(|d| d.as_object().is_some_and(Map::is_empty))
                    && c.get("text").is_none()
            });
            if empty && !choices.is_empty() && obj.get("usage").is_none_or(Value::is_null) {
                // Only held tool-call pieces: nothing for the client yet.
                return out;
            }
        }
        out.extend(sse(&Value::Object(obj)));
        out
    }

    fn delta_event(&self, like: &Map<String, Value>, index: u64, delta: Value) -> Vec<u8> {
        let mut e = like.clone();
        e.remove("usage");
        e.insert(
            "choices".into(),
            json!([{"index": index, "delta": delta, "finish_reason": null}]),
        );
        sse(&Value::Object(e))
    }

    /// Sends everything still held (the stream is ending).
    pub fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        if self.responses.is_some() {
            return self.responses_flush();
        }
        let template = self.template.clone().unwrap_or_default();
        let indices: BTreeSet<u64> = self
            .held
            .keys()
            .copied()
            .chain(self.calls.keys().map(|(c, _)| *c))
            .collect();
        for index in indices {
            let rest = self.release(index, true);
            if !rest.is_empty() {
                out.extend(self.delta_event(&template, index, json!({"content": rest})));
            }
            let (events, _) = self.release_calls(&template, index);
            out.extend(events);
            if self.broken {
                break;
            }
        }
        out
    }
}
