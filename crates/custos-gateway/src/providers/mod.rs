//! Model providers behind the gateway: the built-in deterministic `mock`, and any
//! OpenAI-compatible HTTP API. Both answer with the same `UpstreamResponse`, so every layer
//! and the proxy treat them alike.

pub mod mock;
pub mod openai;

use crate::call::Endpoint;
use crate::request_id::TraceContext;
use bytes::Bytes;
use custos_core::config::{ProviderConfig, ProviderKind, ServerConfig};
use custos_core::RequestId;
use futures_util::stream::BoxStream;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use std::time::Duration;

/// What went wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the provider {provider} could not be reached: {reason}")]
    Unavailable { provider: String, reason: String },
    #[error("the provider {provider} did not answer within {}", custos_core::duration::format_duration(*.after))]
    Timeout { provider: String, after: Duration },
    #[error("the provider {provider} sent an invalid response: {reason}")]
    Invalid { provider: String, reason: String },
}

pub enum UpstreamBody {
    Full(Bytes),
    /// Server-sent events, passed through chunk by chunk.
    Stream(BoxStream<'static, Result<Bytes, UpstreamError>>),
}

pub struct UpstreamResponse {
    pub status: StatusCode,
    /// Headers worth passing to the client (content type, provider request id, …).
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

/// Per-call facts a provider needs besides the body.
pub struct CallContext<'a> {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub prompt_tokens: u32,
    pub request_id: &'a RequestId,
    pub trace: Option<&'a TraceContext>,
}

/// Why a provider could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("provider {provider:?}: the environment variable {var} named by `api_key_env` is not set; export it before starting custos")]
    MissingEnv { provider: String, var: String },
    #[error("provider {provider:?}: cannot read the key file {path}: {reason}")]
    KeyFile {
        provider: String,
        path: String,
        reason: String,
    },
    #[error(
        "provider {provider:?}: the API key contains characters not allowed in an HTTP header"
    )]
    BadKey { provider: String },
    #[error("provider {provider:?}: cannot build the HTTP client: {reason}")]
    Client { provider: String, reason: String },
}

#[derive(Debug)]
pub enum Provider {
    Mock(mock::MockProvider),
    OpenAi(Box<openai::OpenAiProvider>),
}

impl Provider {
    pub fn from_config(
        p: &ProviderConfig,
        server: &ServerConfig,
    ) -> Result<Self, ProviderSetupError> {
        Ok(match p.kind {
            ProviderKind::Mock => Provider::Mock(mock::MockProvider::new(p)),
            ProviderKind::Openai => {
                Provider::OpenAi(Box::new(openai::OpenAiProvider::new(p, server)?))
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Provider::Mock(m) => &m.name,
            Provider::OpenAi(o) => &o.name,
        }
    }

    pub async fn send(
        &self,
        body: Map<String, Value>,
        ctx: CallContext<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Provider::Mock(m) => Ok(m.respond(body, ctx).await),
            Provider::OpenAi(o) => o.send(body, ctx).await,
        }
    }

    /// How long to wait for response headers and between streamed chunks.
    pub fn timeout(&self) -> Duration {
        match self {
            Provider::Mock(m) => m.timeout,
            Provider::OpenAi(o) => o.timeout,
        }
    }
}
