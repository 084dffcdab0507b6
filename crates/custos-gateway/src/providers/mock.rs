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
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
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
