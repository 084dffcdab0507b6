//! The built-in `mock` provider: deterministic replies with true token counts, optional
//! latency, SSE streaming, completions and embeddings — enough to run the quickstart, the
//! tests and the benchmarks without any network.

use super::{CallContext, UpstreamBody, UpstreamResponse};
use crate::call::Endpoint;
use crate::tokens;
use base64::Engine as _;
use bytes::Bytes;
use custos_core::config::ProviderConfig;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

#[derive(Debug)]
pub struct MockProvider {
    pub name: String,
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub timeout: Duration,
    /// Fault injection: this fraction of calls is answered 503.
    pub failure_rate: f64,
    calls: std::sync::atomic::AtomicU64,
}

impl MockProvider {
    pub fn new(p: &ProviderConfig) -> Self {
        Self {
            name: p.name.clone(),
            latency: p.latency.map_or(Duration::ZERO, |d| d.0),
            chunk_delay: p.chunk_delay.map_or(Duration::ZERO, |d| d.0),
            timeout: p.timeout.map_or(Duration::from_secs(60), |d| d.0),
            failure_rate: p.failure_rate.unwrap_or(0.0).clamp(0.0, 1.0),
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub async fn respond(
        &self,
        body: Map<String, Value>,
        ctx: CallContext<'_>,
    ) -> UpstreamResponse {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.fails_next() {
            return unavailable();
        }
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock")
            .to_owned();
        let created = custos_core::time::now_ms() / 1000;
        let id_seed =
            hex::encode(&Sha256::digest(serde_json::to_vec(&body).unwrap_or_default())[..12]);
        match ctx.endpoint {
            Endpoint::Embeddings => json_response(embeddings(&body, &model, ctx.prompt_tokens)),
            Endpoint::Responses => {
                let limit = body
                    .get("max_output_tokens")
                    .and_then(Value::as_u64)
                    .map(|v| v.min(u64::from(u32::MAX)) as u32);
                let (words, output_tokens, finish) = reply(&model, &last_input_text(&body), limit);
                let r = ResponseObject {
                    id: format!("resp_mock{id_seed}"),
                    message_id: format!("msg_mock{id_seed}"),
                    created,
                    model: &model,
                    body: &body,
                    input_tokens: ctx.prompt_tokens,
                    output_tokens,
                    incomplete: finish == "length",
                };
                if ctx.stream {
                    self.stream_response(r.events(&words))
                } else {
                    json_response(r.finished(&words.concat()))
                }
            }
            Endpoint::ChatCompletions | Endpoint::Completions => {
                let chat = ctx.endpoint == Endpoint::ChatCompletions;
                let prompt = if chat {
                    last_user_text(&body)
                } else {
                    prompt_text(&body)
                };
                let limit = ["max_completion_tokens", "max_tokens"]
                    .iter()
                    .find_map(|k| body.get(*k).and_then(Value::as_u64))
                    .map(|v| v.min(u64::from(u32::MAX)) as u32);
                let (words, completion_tokens, finish) = reply(&model, &prompt, limit);
                let usage = json!({
                    "prompt_tokens": ctx.prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": ctx.prompt_tokens + completion_tokens,
                });
                let (id, object) = if chat {
                    (format!("chatcmpl-mock{id_seed}"), "chat.completion")
                } else {
                    (format!("cmpl-mock{id_seed}"), "text_completion")
                };
                if ctx.stream {
                    let include_usage = body
                        .get("stream_options")
                        .and_then(|o| o.get("include_usage"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let events = stream_events(
                        chat,
                        &id,
                        created,
                        &model,
                        &words,
                        finish,
                        include_usage.then_some(usage),
                    );
                    self.stream_response(events)
                } else {
                    let text = words.concat();
                    let choice = if chat {
                        json!({"index": 0, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": null, "finish_reason": finish})
                    } else {
                        json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
                    };
                    json_response(json!({
                        "id": id, "object": object, "created": created, "model": model,
                        "choices": [choice], "usage": usage, "system_fingerprint": "custos-mock",
                    }))
                }
            }
        }
    }

    /// Spreads failures evenly: call n fails when ⌊(n+1)·rate⌋ > ⌊n·rate⌋, so any run of
    /// calls fails at the configured rate within one call.
    fn fails_next(&self) -> bool {
        if self.failure_rate <= 0.0 {
            return false;
        }
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
        ((n + 1.0) * self.failure_rate).floor() > (n * self.failure_rate).floor()
    }

    fn stream_response(&self, events: Vec<Bytes>) -> UpstreamResponse {
        let delay = self.chunk_delay;
        let stream = futures_util::stream::iter(events.into_iter().enumerate())
            .then(move |(i, e)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(e)
            })
            .boxed();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        UpstreamResponse {
            status: StatusCode::OK,
            headers,
            body: UpstreamBody::Stream(stream),
        }
    }
}

/// What an overloaded OpenAI-compatible provider answers.
fn unavailable() -> UpstreamResponse {
    let mut r = json_response(json!({"error": {
        "message": "the mock provider failed this call on purpose (failure_rate)",
        "type": "server_error", "param": null, "code": "injected_failure"}}));
    r.status = StatusCode::SERVICE_UNAVAILABLE;
    r
}

fn json_response(v: Value) -> UpstreamResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    UpstreamResponse {
        status: StatusCode::OK,
        headers,
        body: UpstreamBody::Full(Bytes::from(v.to_string())),
    }
}

fn last_user_text(body: &Map<String, Value>) -> String {
    let Some(Value::Array(messages)) = body.get("messages") else {
        return String::new();
    };
    let Some(m) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    content_text(m.get("content"))
}

/// The text of message content: a string, or the text parts joined.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The last user text of a Responses `input`: the string itself, or the last user item's text.
fn last_input_text(body: &Map<String, Value>) -> String {
    match body.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
            .map(|i| content_text(i.get("content")))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A Responses API answer, whole or as its typed stream events (OpenAI's shapes).
struct ResponseObject<'a> {
    id: String,
    message_id: String,
    created: i64,
    model: &'a str,
    body: &'a Map<String, Value>,
    input_tokens: u32,
    output_tokens: u32,
    /// Cut short by `max_output_tokens`.
    incomplete: bool,
}

impl ResponseObject<'_> {
    /// The response object; `text` is `None` while it is still being written.
    fn object(&self, text: Option<&str>) -> Value {
        let echo = |k: &str| self.body.get(k).cloned().unwrap_or(Value::Null);
        let (status, output, usage) = match text {
            None => ("in_progress", json!([]), Value::Null),
            Some(t) => (
                if self.incomplete {
                    "incomplete"
                } else {
                    "completed"
                },
                json!([self.message(t, "completed")]),
                json!({
                    "input_tokens": self.input_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": self.output_tokens,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": self.input_tokens + self.output_tokens,
                }),
            ),
        };
        let incomplete = if text.is_some() && self.incomplete {
            json!({"reason": "max_output_tokens"})
        } else {
            Value::Null
        };
        json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "error": null, "incomplete_details": incomplete, "instructions": echo("instructions"),
            "max_output_tokens": echo("max_output_tokens"), "model": self.model, "output": output,
            "parallel_tool_calls": true, "previous_response_id": echo("previous_response_id"),
            "reasoning": {"effort": null, "summary": null}, "store": false,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": self.body.get("tools").cloned().unwrap_or_else(|| json!([])),
            "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": echo("user"),
            "metadata": self.body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })
    }

    fn message(&self, text: &str, status: &str) -> Value {
        let content = if status == "completed" {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        } else {
            json!([])
        };
        json!({"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    fn finished(&self, text: &str) -> Value {
        self.object(Some(text))
    }

    /// The stream: created, in progress, the message item and its text part added, one text
    /// delta per word, the text, part and item done, and the completed response with usage.
    fn events(&self, words: &[String]) -> Vec<Bytes> {
        let text = words.concat();
        let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
        let (id, out) = (&self.message_id, 0);
        let mut events = vec![
            json!({"type": "response.created", "response": self.object(None)}),
            json!({"type": "response.in_progress", "response": self.object(None)}),
            json!({"type": "response.output_item.added", "output_index": out, "item": self.message("", "in_progress")}),
            json!({"type": "response.content_part.added", "item_id": id, "output_index": out, "content_index": 0, "part": part("")}),
        ];
        for w in words {
            events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": out, "content_index": 0, "delta": w, "logprobs": []}));
        }
        events.extend([
            json!({"type": "response.output_text.done", "item_id": id, "output_index": out, "content_index": 0, "text": text, "logprobs": []}),
            json!({"type": "response.content_part.done", "item_id": id, "output_index": out, "content_index": 0, "part": part(&text)}),
            json!({"type": "response.output_item.done", "output_index": out, "item": self.message(&text, "completed")}),
        ]);
        let last = if self.incomplete {
            "response.incomplete"
        } else {
            "response.completed"
        };
        events.push(json!({"type": last, "response": self.object(Some(&text))}));
        events
            .into_iter()
            .enumerate()
            .map(|(n, mut e)| {
                e["sequence_number"] = json!(n);
                let kind = e["type"].as_str().unwrap_or("").to_owned();
                Bytes::from(format!("event: {kind}\ndata: {e}\n\n"))
            })
            .collect()
    }
}

fn prompt_text(body: &Map<String, Value>) -> String {
    match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The reply as words (each streamed as one chunk), its token count and finish reason.
/// Deterministic: the same prompt always gets the same reply.
pub fn reply(
    model: &str,
    prompt: &str,
    max_tokens: Option<u32>,
) -> (Vec<String>, u32, &'static str) {
    let echo: String = prompt
        .split_whitespace()
        .take(24)
        .collect::<Vec<_>>()
        .join(" ");
    let digest = hex::encode(&Sha256::digest(prompt.as_bytes())[..4]);
    let text = if echo.is_empty() {
        format!("This is the custos mock provider (reply {digest}). Your message was empty.")
    } else {
        format!("This is the custos mock provider (reply {digest}). You said: {echo}")
    };
    let mut words: Vec<String> = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        words.push(if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        });
    }
    let Some(limit) = max_tokens else {
        let n = tokens::count(model, &text);
        return (words, n, "stop");
    };
    let mut kept = Vec::new();
    let mut n = 0;
    for w in words {
        let next = tokens::count(model, &format!("{}{w}", kept.concat()));
        if next > limit {
            return (kept, n, "length");
        }
        n = next;
        kept.push(w);
    }
    (kept, n, "stop")
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn stream_events(
    chat: bool,
    id: &str,
    created: i64,
    model: &str,
    words: &[String],
    finish: &str,
    usage: Option<Value>,
) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(words.len() + 4);
    let extra = |v: &mut Value, with_usage: bool| {
        if usage.is_some() && with_usage {
            v["usage"] = Value::Null;
        }
    };
    if chat {
        let object = "chat.completion.chunk";
        let mut first = json!({"id": id, "object": object, "created": created, "model": model, "system_fingerprint": "custos-mock",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]});
        extra(&mut first, true);
        out.push(sse(&first));
        for w in words {
            let mut c = json!({"id": id, "object": object, "created": created, "model": model, "system_fingerprint": "custos-mock",
                "choices": [{"index": 0, "delta": {"content": w}, "logprobs": null, "finish_reason": null}]});
            extra(&mut c, true);
            out.push(sse(&c));
        }
        let mut last = json!({"id": id, "object": object, "created": created, "model": model, "system_fingerprint": "custos-mock",
            "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]});
        extra(&mut last, true);
        out.push(sse(&last));
        if let Some(u) = &usage {
            out.push(sse(&json!({"id": id, "object": object, "created": created, "model": model, "system_fingerprint": "custos-mock", "choices": [], "usage": u})));
        }
    } else {
        for w in words {
            out.push(sse(
                &json!({"id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": w, "logprobs": null, "finish_reason": null}]}),
            ));
        }
        out.push(sse(
            &json!({"id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": finish}]}),
        ));
        if let Some(u) = &usage {
            out.push(sse(&json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": [], "usage": u})));
        }
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn embeddings(body: &Map<String, Value>, model: &str, prompt_tokens: u32) -> Value {
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| (1..=8192).contains(d))
        .unwrap_or(if model.contains("large") { 3072 } else { 1536 }) as usize;
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

/// A deterministic unit vector derived from the text (xorshift seeded by SHA-256).
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let seed = Sha256::digest(text.as_bytes());
    let mut state = u64::from_le_bytes(seed[..8].try_into().unwrap_or([1; 8])) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_deterministic_and_bounded() {
        let (a, n, f) = reply("gpt-4o-mini", "hello there", None);
        let (b, m, _) = reply("gpt-4o-mini", "hello there", None);
        assert_eq!(a, b);
        assert_eq!(n, m);
        assert_eq!(f, "stop");
        assert_eq!(n, tokens::count("gpt-4o-mini", &a.concat()));
        let (c, k, f) = reply("gpt-4o-mini", "hello there", Some(3));
        assert!(k <= 3);
        assert_eq!(f, "length");
        assert!(c.len() < a.len());
    }

    #[test]
    fn vectors_are_unit_and_stable() {
        let v = vector("abc", 64);
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(v, vector("abc", 64));
        assert_ne!(v, vector("abd", 64));
    }
}
