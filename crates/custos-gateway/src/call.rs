//! call: reads the request body (bounded), parses it once, and turns it into a `ModelCall`
//! that every later layer reads: which endpoint, which model and route, whether it streams,
//! and how many prompt tokens it carries. Malformed input stops here with a 4xx that says
//! what is wrong and where.

use crate::metrics::CallLabels;
use crate::problem::{Problem, ProblemKind};
use crate::route::Route;
use crate::stack::Next;
use crate::state::AppState;
use crate::tokens;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use custos_core::principal::SharedPrincipal;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// OpenAI's Responses API: `input` items in, `output` items out, typed stream events.
    Responses,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            "/v1/completions" => Some(Self::Completions),
            "/v1/embeddings" => Some(Self::Embeddings),
            "/v1/responses" => Some(Self::Responses),
            _ => None,
        }
    }

    /// Path relative to a provider's base URL.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
        }
    }
}

/// A parsed model call.
#[derive(Debug)]
pub struct ModelCall {
    pub endpoint: Endpoint,
    pub model: String,
    pub route: Arc<Route>,
    pub stream: bool,
    /// The client asked for a usage chunk at the end of the stream.
    pub client_wants_usage: bool,
    pub prompt_tokens: u32,
    /// The most completion tokens the call may produce (`max_completion_tokens` or
    /// `max_tokens`, times `n`), when the request bounds it.
    pub max_output_tokens: Option<u64>,
    /// The parsed body, taken (not cloned) by the proxy when it forwards the call.
    body: std::sync::Mutex<Option<Map<String, Value>>>,
    pub body_sha256: [u8; 32],
    /// The active release whose alias the call named.
    pub release: Option<String>,
    /// The end user the call is made for: the request's `user` (OpenAI's end-user id).
    pub end_user: Option<String>,
}

impl ModelCall {
    /// Hands the parsed body over, once; a second call gets `None`.
    pub fn take_body(&self) -> Option<Map<String, Value>> {
        self.body.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Puts a (possibly rewritten) body back for the layers after this one.
    pub fn put_body(&self, body: Map<String, Value>) {
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    }
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::InvalidRequest, detail)
}

/// Parses and checks a body for an endpoint; returns the object and the `model` and `stream`.
pub fn parse_body(
    endpoint: Endpoint,
    bytes: &[u8],
) -> Result<(Map<String, Value>, String, bool, bool), Problem> {
    if bytes.is_empty() {
        return Err(Problem::new(
            ProblemKind::MalformedJson,
            "the request body is empty; send a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            ProblemKind::MalformedJson,
            format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(body) = value else {
        return Err(Problem::new(
            ProblemKind::MalformedJson,
            "the request body must be a JSON object",
        ));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None => return Err(invalid("`model` is required")),
        Some(other) => {
            return Err(invalid(format!(
                "`model` must be a string, not {}",
                kind(other)
            )))
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(format!(
                "`stream` must be true or false, not {}",
                kind(other)
            )))
        }
    };
    if stream && endpoint == Endpoint::Embeddings {
        return Err(invalid("embeddings do not stream; remove `stream`"));
    }
    let wants_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format!(
                    "`stream_options.include_usage` must be a boolean, not {}",
                    kind(other)
                )))
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "`stream_options` must be an object, not {}",
                kind(other)
            )))
        }
    };
    match endpoint {
        Endpoint::ChatCompletions => match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {
                for (i, msg) in m.iter().enumerate() {
                    let Value::Object(msg) = msg else {
                        return Err(invalid(format!(
                            "`messages[{i}]` must be an object, not {}",
                            kind(msg)
                        )));
                    };
                    if !matches!(msg.get("role"), Some(Value::String(_))) {
                        return Err(invalid(format!("`messages[{i}].role` must be a string")));
                    }
                }
            }
            Some(Value::Array(_)) => return Err(invalid("`messages` must not be empty")),
            Some(other) => {
                return Err(invalid(format!(
                    "`messages` must be an array, not {}",
                    kind(other)
                )))
            }
            None => return Err(invalid("`messages` is required")),
        },
        Endpoint::Completions => match body.get("prompt") {
            Some(Value::String(_) | Value::Array(_)) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "`prompt` must be a string or an array, not {}",
                    kind(other)
                )))
            }
            None => return Err(invalid("`prompt` is required")),
        },
        Endpoint::Embeddings => match body.get("input") {
            Some(Value::String(_)) => {}
            Some(Value::Array(a)) if !a.is_empty() => {}
            Some(Value::Array(_)) => return Err(invalid("`input` must not be empty")),
            Some(other) => {
                return Err(invalid(format!(
                    "`input` must be a string or an array, not {}",
                    kind(other)
                )))
            }
            None => return Err(invalid("`input` is required")),
        },
        Endpoint::Responses => {
            match body.get("input") {
                Some(Value::String(_)) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        if !matches!(item, Value::Object(_) | Value::String(_)) {
                            return Err(invalid(format!(
                                "`input[{i}]` must be an object (an input item), not {}",
                                kind(item)
                            )));
                        }
                    }
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "`input` must be a string or an array of input items, not {}",
                        kind(other)
                    )))
                }
                // A continued conversation or a stored prompt can carry the whole input.
                None if ["previous_response_id", "conversation", "prompt"]
                    .iter()
                    .any(|k| body.get(*k).is_some_and(|v| !v.is_null())) => {}
                None => return Err(invalid("`input` is required")),
            }
            if let Some(i) = body
                .get("instructions")
                .filter(|v| !v.is_null() && !v.is_string())
            {
                return Err(invalid(format!(
                    "`instructions` must be a string, not {}",
                    kind(i)
                )));
            }
        }
    }
    for field in [
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
    ] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some() => {}
            Some(other) => {
                return Err(invalid(format!(
                    "`{field}` must be a non-negative integer, not {}",
                    kind(other)
                )))
            }
        }
    }
    Ok((body, model, stream, wants_usage))
}

/// The JSON type name of a value, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) async fn read_body(
    headers: &http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, Problem> {
    use http_body_util::BodyExt;
    let too_large = || {
        Problem::new(
            ProblemKind::BodyTooLarge,
            format!("the request body is larger than this gateway's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            linger(body, len).await;
            return Err(too_large());
        }
    }
    // Collected through a borrow, so a body found too large as it arrives (chunked, no
    // length) is still ours to read and throw away within the same bounds.
    let mut body = body;
    match http_body_util::Limited::new(&mut body, limit)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if let Some(t) = crate::overload::body_timeout_in(&*e) {
                return Err(Problem::new(ProblemKind::BodyTimeout, t.to_string()));
            }
            if e.is::<http_body_util::LengthLimitError>() {
                linger(body, 0).await;
                return Err(too_large());
            }
            Err(invalid(format!("the request body could not be read: {e}")))
        }
    }
}

/// At most this much of a refused body is read and thrown away before the refusal is sent.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;
/// And for at most this long.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards a body that is refused for its size, so a client still writing it
/// reads the 413 instead of a reset connection (answering and closing while the client
/// writes makes its next write fail with `EPIPE`, and the answer is lost). nginx does the
/// same ("lingering close"). Bounded in bytes and time; the body's own read timeout and
/// minimum rate apply too, so a slow client cannot hold the connection. `declared`: the
/// body's `Content-Length`, 0 when unknown.
async fn linger(body: axum::body::Body, declared: u64) {
    use http_body_util::BodyExt;
    if declared > LINGER_BYTES {
        return;
    }
    let mut body = body;
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > LINGER_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// True when the request declares a non-JSON body (used to explain a parse failure).
fn declared_non_json(headers: &http::HeaderMap) -> Option<String> {
    let v = headers
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = v.split(';').next().unwrap_or("").trim().to_owned();
    (essence != "application/json" && !essence.ends_with("+json")).then_some(essence)
}

/// The call layer's middleware function: runs after authn, before idempotency and quota.
pub async fn understand<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    match build(state, req).await {
        Ok(req) => next.run(req).await,
        Err(problem) => problem.into_response(),
    }
}

async fn build(state: &AppState, req: Request) -> Result<Request, Problem> {
    let endpoint = Endpoint::from_path(req.uri().path())
        .ok_or_else(|| Problem::new(ProblemKind::NotFound, "no such endpoint"))?;
    let principal = req
        .extensions()
        .get::<SharedPrincipal>()
        .cloned()
        .ok_or_else(|| Problem::new(ProblemKind::Internal, "the call layer ran before authn"))?;
    let labels = req.extensions().get::<Arc<CallLabels>>().cloned();
    let (parts, body) = req.into_parts();
    let bytes = read_body(
        &parts.headers,
        body,
        state.config.server.max_body_bytes as usize,
    )
    .await?;
    // Like OpenAI, the body is read as JSON whatever Content-Type says (curl's -d sends a
    // form type); a declared non-JSON type is named only if parsing fails.
    let (body, model, stream, client_wants_usage) =
        parse_body(endpoint, &bytes).map_err(|mut p| {
            if p.kind == ProblemKind::MalformedJson {
                if let Some(ct) = declared_non_json(&parts.headers) {
                    p.detail = format!(
                        "{} (the request says Content-Type {ct:?}; send application/json)",
                        p.detail
                    );
                }
            }
            p
        })?;
    // The attempted model is evidence even when the call is refused for it (unknown, or not
    // allowed to this key); a name longer than any real one is cut for the ledger.
    let body_sha256: [u8; 32] = Sha256::digest(&bytes).into();
    drop(bytes);
    if let Some(slot) = parts.extensions.get::<Arc<crate::audit::AuditSlot>>() {
        slot.set_call(crate::problem::prefix(&model, 256), body_sha256);
    }
    // A name no route serves may be an app's alias: its active release's model and prompt.
    let mut release = None;
    let (body, model, alias, route) = match state.routes.get(&model) {
        Some(r) => (body, model, None, Some(r.clone())),
        None => match state.aliases.get(&principal.tenant, &model) {
            Some(a) => {
                if let Some(slot) = parts.extensions.get::<Arc<crate::audit::AuditSlot>>() {
                    slot.set_release(a.release.clone());
                }
                release = Some(a.release.clone());
                let route = state.routes.get(&a.route_model).cloned();
                (
                    a.apply(endpoint, body),
                    a.route_model.clone(),
                    Some(model),
                    route,
                )
            }
            None => (body, model, None, None),
        },
    };
    let route = route.ok_or_else(|| {
        Problem::new(
            ProblemKind::ModelNotFound,
            format!("the model {model:?} is not served by this gateway; GET /v1/models lists the models your key may use"),
        )
    })?;
    if let Some(labels) = &labels {
        labels.set_model(&route.model);
        if let Some(r) = &release {
            labels.set_release(r);
        }
    }
    if !principal.models.allows(&model)
        && !alias.as_deref().is_some_and(|a| principal.models.allows(a))
    {
        return Err(Problem::new(
            ProblemKind::ModelNotAllowed,
            format!(
                "this API key may not use the model {model:?}; allowed: {}",
                principal.models.to_list()
            ),
        ));
    }
    if let Some(gate) = &route.registry {
        // The verdict is read, not copied: a served call clones only the digest it records.
        let verdict = gate.current();
        match verdict.as_ref() {
            Some(Ok(served)) => {
                if let (Some(slot), Some(d)) = (
                    parts.extensions.get::<Arc<crate::audit::AuditSlot>>(),
                    &served.manifest_digest,
                ) {
                    slot.set_model_digest(d.clone());
                }
            }
            refused => {
                let why = match refused {
                    Some(Err(why)) => why.as_str(),
                    _ => "it has not been checked yet",
                };
                return Err(Problem::new(
                    ProblemKind::ModelUnverified,
                    format!(
                        "the model {model:?} serves the registry entry {}, which is not verified: {why}",
                        gate.reference
                    ),
                ));
            }
        }
    }
    let max_output_tokens = max_output(&body);
    let end_user = end_user(&body)?;
    if let (Some(slot), Some(u)) = (
        parts.extensions.get::<Arc<crate::audit::AuditSlot>>(),
        &end_user,
    ) {
        slot.set_end_user(u.clone());
    }
    let (body, prompt_tokens) = count_prompt(endpoint, &model, body).await?;
    let call = ModelCall {
        endpoint,
        model,
        route,
        stream,
        client_wants_usage,
        prompt_tokens,
        max_output_tokens,
        body: std::sync::Mutex::new(Some(body)),
        body_sha256,
        release,
        end_user,
    };
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    req.extensions_mut().insert(Arc::new(call));
    Ok(req)
}

/// The longest end-user id recorded; a longer one is not an id (the call still runs).
const MAX_END_USER: usize = 256;

/// The request's end user (`user`), when it names one.
fn end_user(body: &Map<String, Value>) -> Result<Option<String>, Problem> {
    match body.get("user") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            Ok(
                (!s.is_empty() && s.len() <= MAX_END_USER && !s.chars().any(char::is_control))
                    .then(|| s.to_owned()),
            )
        }
        Some(other) => Err(invalid(format!(
            "`user` must be a string (an id for your end user), not {}",
            kind(other)
        ))),
    }
}

/// The output bound a request sets, for budget estimates (already validated as integers).
fn max_output(body: &Map<String, Value>) -> Option<u64> {
    let get = |f: &str| body.get(f).and_then(Value::as_u64);
    let per_choice = get("max_completion_tokens")
        .or_else(|| get("max_tokens"))
        .or_else(|| get("max_output_tokens"))?;
    Some(per_choice.saturating_mul(get("n").unwrap_or(1).max(1)))
}

fn prompt_of(endpoint: Endpoint, body: &Map<String, Value>) -> tokens::PromptText<'_> {
    match endpoint {
        Endpoint::ChatCompletions => tokens::chat_prompt(body),
        Endpoint::Completions => tokens::completion_prompt(body),
        Endpoint::Embeddings => tokens::embedding_input(body),
        Endpoint::Responses => tokens::responses_prompt(body),
    }
}

/// Counts prompt tokens, moving big prompts to the blocking pool.
async fn count_prompt(
    endpoint: Endpoint,
    model: &str,
    body: Map<String, Value>,
) -> Result<(Map<String, Value>, u32), Problem> {
    if prompt_of(endpoint, &body).len() <= tokens::INLINE_LIMIT {
        let n = prompt_of(endpoint, &body).count(model);
        return Ok((body, n));
    }
    let model = model.to_owned();
    tokio::task::spawn_blocking(move || {
        let n = prompt_of(endpoint, &body).count(&model);
        (body, n)
    })
    .await
    .map_err(|_| Problem::new(ProblemKind::Internal, "counting the prompt's tokens failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(endpoint: Endpoint, body: &str) -> String {
        parse_body(endpoint, body.as_bytes()).unwrap_err().detail
    }

    #[test]
    fn explains_bad_bodies() {
        use Endpoint::*;
        assert!(err(ChatCompletions, "").contains("empty"));
        assert!(err(ChatCompletions, "{\"model\": ").contains("line 1, column"));
        assert!(err(ChatCompletions, "[1]").contains("JSON object"));
        assert!(err(ChatCompletions, "{}").contains("`model` is required"));
        assert!(err(ChatCompletions, "{\"model\": 4}").contains("must be a string, not a number"));
        assert!(err(ChatCompletions, "{\"model\": \"m\"}").contains("`messages` is required"));
        assert!(err(ChatCompletions, "{\"model\": \"m\", \"messages\": []}")
            .contains("must not be empty"));
        assert!(
            err(ChatCompletions, "{\"model\": \"m\", \"messages\": [3]}").contains("messages[0]")
        );
        assert!(err(
            ChatCompletions,
            "{\"model\": \"m\", \"messages\": [{\"role\":\"user\"}], \"stream\": \"yes\"}"
        )
        .contains("`stream`"));
        assert!(err(
            ChatCompletions,
            "{\"model\": \"m\", \"messages\": [{\"role\":\"user\"}], \"max_tokens\": -1}"
        )
        .contains("max_tokens"));
        assert!(err(Completions, "{\"model\": \"m\"}").contains("`prompt` is required"));
        assert!(err(Embeddings, "{\"model\": \"m\", \"input\": []}").contains("must not be empty"));
        assert!(err(Responses, "{\"model\": \"m\"}").contains("`input` is required"));
        assert!(err(Responses, "{\"model\": \"m\", \"input\": 3}").contains("input items"));
        assert!(err(Responses, "{\"model\": \"m\", \"input\": [true]}").contains("`input[0]`"));
        assert!(err(
            Responses,
            "{\"model\": \"m\", \"input\": \"x\", \"instructions\": 1}"
        )
        .contains("`instructions`"));
        assert!(err(
            Responses,
            "{\"model\": \"m\", \"input\": \"x\", \"max_output_tokens\": 1.5}"
        )
        .contains("max_output_tokens"));
        assert!(parse_body(
            Responses,
            br#"{"model":"m","previous_response_id":"resp_1"}"#
        )
        .is_ok());
        assert!(err(
            Embeddings,
            "{\"model\": \"m\", \"input\": \"x\", \"stream\": true}"
        )
        .contains("do not stream"));
        let bad_utf8 = b"{\"model\": \"\xff\"}";
        assert!(parse_body(ChatCompletions, bad_utf8)
            .unwrap_err()
            .detail
            .contains("invalid JSON"));
    }

    #[test]
    fn accepts_good_bodies() {
        let (_, model, stream, usage) = parse_body(
            Endpoint::ChatCompletions,
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!((model.as_str(), stream, usage), ("gpt-4o-mini", true, true));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_body(Endpoint::ChatCompletions, &bytes);
        }
    }
}
