//! Any OpenAI-compatible HTTP API: OpenAI itself, Azure OpenAI's v1 endpoint, vLLM, Ollama,
//! LiteLLM, and so on. The provider key comes from an environment variable or a file, never
//! from the configuration file, and is held as a sensitive header value that logs redact.
//!
//! The client is hyper-util's pooled client over rustls (ring, webpki roots): measured against
//! reqwest on the same machine it adds about 80 µs less per call (bench/RESULTS.md).

use super::{CallContext, ProviderSetupError, UpstreamBody, UpstreamError, UpstreamResponse};
use crate::call::Endpoint;
use bytes::Bytes;
use custos_core::config::{ProviderConfig, ServerConfig};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use std::time::Duration;

/// Largest non-streamed upstream body custos will buffer.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct OpenAiProvider {
    pub name: String,
    base_url: String,
    /// The URL of each endpoint, parsed once (see `uri`).
    uris: [Uri; 4],
    auth: Option<HeaderValue>,
    /// The shared client, then one per connection thread (`[server] io_threads`): a pooled
    /// upstream connection's task runs on the thread that opened it, so a call served on
    /// another thread would wake it across threads, twice per call.
    clients: Box<[HttpClient]>,
    user_agent: HeaderValue,
    pub timeout: Duration,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
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
        let base_url = p
            .base_url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        base_url
            .parse::<Uri>()
            .map_err(|e| ProviderSetupError::Client {
                provider: p.name.clone(),
                reason: format!("base_url {base_url:?} is not a valid URL: {e}"),
            })?;
        let parse = |path: &str| {
            format!("{base_url}{path}")
                .parse::<Uri>()
                .map_err(|e| ProviderSetupError::Client {
                    provider: p.name.clone(),
                    reason: format!("base_url {base_url:?} is not a valid URL: {e}"),
                })
        };
        let uris = [
            parse(Endpoint::ChatCompletions.upstream_path())?,
            parse(Endpoint::Completions.upstream_path())?,
            parse(Endpoint::Embeddings.upstream_path())?,
            parse(Endpoint::Responses.upstream_path())?,
        ];
        let clients = (0..=server.io_threads())
            .map(|_| https_client(server.connect_timeout.0))
            .collect();
        Ok(Self {
            name: p.name.clone(),
            base_url,
            uris,
            auth,
            clients,
            user_agent: HeaderValue::from_static(concat!("custos/", env!("CARGO_PKG_VERSION"))),
            timeout: p.timeout.map_or(server.upstream_timeout.0, |d| d.0),
        })
    }

    /// This thread's client: its own on a connection thread, else the shared one.
    fn client(&self) -> &HttpClient {
        let i = crate::io_thread().map_or(0, |i| i + 1);
        self.clients.get(i).unwrap_or(&self.clients[0])
    }

    /// The upstream URL of `endpoint`: parsed at start, not per call.
    fn uri(&self, endpoint: Endpoint) -> Uri {
        let i = match endpoint {
            Endpoint::ChatCompletions => 0,
            Endpoint::Completions => 1,
            Endpoint::Embeddings => 2,
            Endpoint::Responses => 3,
        };
        self.uris[i].clone()
    }

    fn unavailable(&self, reason: String) -> UpstreamError {
        UpstreamError::Unavailable {
            provider: self.name.clone(),
            reason,
        }
    }

    fn timed_out(&self) -> UpstreamError {
        UpstreamError::Timeout {
            provider: self.name.clone(),
            after: self.timeout,
        }
    }

    pub async fn send(
        &self,
        body: Map<String, Value>,
        ctx: CallContext<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let invalid = |reason: String| UpstreamError::Invalid {
            provider: self.name.clone(),
            reason,
        };
        let payload = serde_json::to_vec(&body).map_err(|e| invalid(e.to_string()))?;
        let mut request = http::Request::post(self.uri(ctx.endpoint))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, self.user_agent.clone())
            .header(crate::request_id::X_REQUEST_ID, ctx.request_id.as_str());
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
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| invalid(format!("cannot build the upstream request: {e}")))?;
        let response =
            match tokio::time::timeout(self.timeout, self.client().request(request)).await {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => return Err(self.unavailable(error_chain(&e))),
                Ok(Ok(r)) => r,
            };
        let (parts, incoming) = response.into_parts();
        let status = parts.status;
        let mut headers = HeaderMap::new();
        for name in [http::header::CONTENT_TYPE, http::header::CACHE_CONTROL] {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        for name in [
            "openai-processing-ms",
            "openai-version",
            "openai-organization",
        ] {
            if let Some(v) = parts.headers.get(name) {
                headers.insert(name, v.clone());
            }
        }
        if let Some(v) = parts.headers.get(crate::request_id::X_REQUEST_ID) {
            headers.insert("x-upstream-request-id", v.clone());
        }
        let is_sse = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if ctx.stream && is_sse && status.is_success() {
            let provider = self.name.clone();
            let stream = incoming
                .into_data_stream()
                .map(move |r| {
                    r.map_err(|e| UpstreamError::Unavailable {
                        provider: provider.clone(),
                        reason: error_chain(&e),
                    })
                })
                .boxed();
            return Ok(UpstreamResponse {
                status,
                headers,
                body: UpstreamBody::Stream(idle_timeout(stream, self.timeout, self.name.clone())),
            });
        }
        let body = match tokio::time::timeout(
            self.timeout,
            Limited::new(incoming, MAX_UPSTREAM_BODY).collect(),
        )
        .await
        {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(invalid(format!(
                    "the response body is larger than {MAX_UPSTREAM_BODY} bytes"
                )))
            }
            Ok(Err(e)) => return Err(self.unavailable(e.to_string())),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        Ok(UpstreamResponse {
            status,
            headers,
            body: UpstreamBody::Full(body),
        })
    }
}

/// A pooled HTTP/1.1 client for http:// and https:// (rustls, webpki roots).
pub(crate) fn https_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https)
}

/// An error and its causes, outermost first (connection refused, DNS, TLS), without secrets.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
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
