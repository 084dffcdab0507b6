//! Any OpenAI-compatible HTTP API: OpenAI itself, Azure OpenAI's v1 endpoint, vLLM, Ollama,
//! LiteLLM, and so on. The provider key comes from an environment variable or a file, never
//! from the configuration file, and is held as a sensitive header value that logs redact.

use super::{CallContext, ProviderSetupError, UpstreamBody, UpstreamError, UpstreamResponse};
use bytes::Bytes;
use custos_core::config::{ProviderConfig, ServerConfig};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};
use std::time::Duration;

/// Largest non-streamed upstream body custos will buffer.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct OpenAiProvider {
    pub name: String,
    base_url: String,
    auth: Option<HeaderValue>,
    client: reqwest::Client,
    pub timeout: Duration,
}

impl OpenAiProvider {
    pub fn new(p: &ProviderConfig, server: &ServerConfig) -> Result<Self, ProviderSetupError> {
        let key = match (&p.api_key_env, &p.api_key_file) {
            (Some(var), _) => {
                Some(
                    std::env::var(var).map_err(|_| ProviderSetupError::MissingEnv {
                        provider: p.name.clone(),
                        var: var.clone(),
                    })?,
                )
            }
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ProviderSetupError::KeyFile {
                        provider: p.name.clone(),
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let auth = match key.filter(|k| !k.is_empty()) {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                    ProviderSetupError::BadKey {
                        provider: p.name.clone(),
                    }
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(server.connect_timeout.0)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("custos/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderSetupError::Client {
                provider: p.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            name: p.name.clone(),
            base_url: p
                .base_url
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            auth,
            client,
            timeout: p.timeout.map_or(server.upstream_timeout.0, |d| d.0),
        })
    }

    fn unavailable(&self, e: &reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            return UpstreamError::Timeout {
                provider: self.name.clone(),
                after: self.timeout,
            };
        }
        // The error chain names the cause (connection refused, DNS, TLS) without any secret.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        UpstreamError::Unavailable {
            provider: self.name.clone(),
            reason,
        }
    }

    pub async fn send(
        &self,
        body: Map<String, Value>,
        ctx: CallContext<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = format!("{}{}", self.base_url, ctx.endpoint.upstream_path());
        let payload = serde_json::to_vec(&body).map_err(|e| UpstreamError::Invalid {
            provider: self.name.clone(),
            reason: e.to_string(),
        })?;
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(crate::request_id::X_REQUEST_ID, ctx.request_id.as_str())
            .body(payload);
        if ctx.stream {
            request = request.header(http::header::ACCEPT, "text/event-stream");
        }
        if let Some(auth) = &self.auth {
            request = request.header(http::header::AUTHORIZATION, auth.clone());
        }
        if let Some(trace) = ctx.trace {
            request = request.header("traceparent", trace.traceparent.as_str());
            if let Some(state) = &trace.tracestate {
                request = request.header("tracestate", state.clone());
            }
        }
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    provider: self.name.clone(),
                    after: self.timeout,
                })
            }
            Ok(Err(e)) => return Err(self.unavailable(&e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let mut headers = HeaderMap::new();
        for name in [http::header::CONTENT_TYPE, http::header::CACHE_CONTROL] {
            if let Some(v) = response.headers().get(&name) {
                headers.insert(name, v.clone());
            }
        }
        for name in [
            "openai-processing-ms",
            "openai-version",
            "openai-organization",
        ] {
            if let Some(v) = response.headers().get(name) {
                headers.insert(name, v.clone());
            }
        }
        if let Some(v) = response.headers().get(crate::request_id::X_REQUEST_ID) {
            headers.insert("x-upstream-request-id", v.clone());
        }
        let is_sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if ctx.stream && is_sse && status.is_success() {
            let provider = self.name.clone();
            let timeout = self.timeout;
            let stream = response
                .bytes_stream()
                .map(move |r| {
                    r.map_err(|e| UpstreamError::Unavailable {
                        provider: provider.clone(),
                        reason: e.to_string(),
                    })
                })
                .boxed();
            return Ok(UpstreamResponse {
                status,
                headers,
                body: UpstreamBody::Stream(idle_timeout(stream, timeout, self.name.clone())),
            });
        }
        let body = match tokio::time::timeout(self.timeout, read_limited(response)).await {
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    provider: self.name.clone(),
                    after: self.timeout,
                })
            }
            Ok(Err(Some(e))) => return Err(self.unavailable(&e)),
            Ok(Err(None)) => {
                return Err(UpstreamError::Invalid {
                    provider: self.name.clone(),
                    reason: format!("the response body is larger than {MAX_UPSTREAM_BODY} bytes"),
                })
            }
            Ok(Ok(b)) => b,
        };
        Ok(UpstreamResponse {
            status,
            headers,
            body: UpstreamBody::Full(body),
        })
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Bytes, Option<reqwest::Error>> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if buf.len() + chunk.len() > MAX_UPSTREAM_BODY {
            return Err(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Ends a stream with an error when the upstream sends nothing for `timeout`.
fn idle_timeout(
    stream: futures_util::stream::BoxStream<'static, Result<Bytes, UpstreamError>>,
    timeout: Duration,
    provider: String,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, UpstreamError>> {
    futures_util::stream::unfold(Some(stream), move |state| {
        let provider = provider.clone();
        async move {
            let mut s = state?;
            match tokio::time::timeout(timeout, s.next()).await {
                Ok(Some(item)) => Some((item, Some(s))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(UpstreamError::Timeout {
                        provider,
                        after: timeout,
                    }),
                    None,
                )),
            }
        }
    })
    .boxed()
}
