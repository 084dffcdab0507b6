//! The innermost handler: sends the call to its provider and streams the answer back,
//! settling the token quota with the provider's reported usage. A client that hangs up drops
//! the response body, which drops the upstream stream and so cancels the upstream call.

use crate::call::ModelCall;
use crate::guard::{ResponseGuard, Screened};
use crate::meter::MeterSlot;
use crate::metrics::CallLabels;
use crate::problem::{Problem, ProblemKind};
use crate::providers::{CallContext, UpstreamBody, UpstreamError};
use crate::quota::Grant;
use crate::request_id::TraceContext;
use crate::sse::UsageScanner;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use custos_core::RequestId;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

fn problem_for(e: &UpstreamError) -> Problem {
    let kind = match e {
        UpstreamError::Unavailable { .. } => ProblemKind::UpstreamUnavailable,
        UpstreamError::Timeout { .. } => ProblemKind::UpstreamTimeout,
        UpstreamError::Invalid { .. } => ProblemKind::UpstreamInvalid,
    };
    Problem::new(kind, e.to_string())
}

/// The provider's usage from a non-streamed response body.
fn reported_usage(body: &[u8]) -> Option<custos_finops::Usage> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        usage: Option<Value>,
    }
    let u = serde_json::from_slice::<Envelope>(body).ok()?.usage?;
    custos_finops::Usage::from_provider(&u)
}

/// Settles the token charge once, when the response completes or is dropped.
struct Settle {
    grant: Option<Arc<Grant>>,
    total: Option<u32>,
}

impl Settle {
    // A method (not a field write) so closures capture the whole guard, and its Drop runs
    // when the response body is dropped.
    fn record(&mut self, total: Option<u32>) {
        self.total = total;
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if let (Some(g), Some(t)) = (&self.grant, self.total) {
            g.settle(t);
        }
    }
}

pub async fn forward(req: Request) -> Response {
    let ext = req.extensions();
    let (Some(call), Some(request_id)) = (
        ext.get::<Arc<ModelCall>>().cloned(),
        ext.get::<RequestId>().cloned(),
    ) else {
        return Problem::new(
            ProblemKind::Internal,
            "the call reached the proxy without its context",
        )
        .into_response();
    };
    let trace = ext.get::<TraceContext>().cloned();
    let grant = ext.get::<Arc<Grant>>().cloned();
    let labels = ext.get::<Arc<CallLabels>>().cloned();
    let response_guard = ext.get::<ResponseGuard>().cloned();
    let meter = ext.get::<Arc<MeterSlot>>().cloned();
    let otel = crate::otel::current(&req);
    drop(req);

    let Some(mut body) = call.take_body() else {
        return Problem::new(
            ProblemKind::Internal,
            "the call's body was already forwarded",
        )
        .into_response();
    };
    body.insert(
        "model".into(),
        Value::String(call.route.upstream_model.clone()),
    );
    // Ask for usage on streams so quotas (and later, metering) see true token counts; the
    // usage-only event is removed again if the client did not ask for it.
    // Responses streams always end with their usage, in the completed response.
    let strip_usage = call.stream
        && !call.client_wants_usage
        && call.endpoint != crate::call::Endpoint::Responses;
    if strip_usage {
        match body.get_mut("stream_options") {
            Some(Value::Object(o)) => {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            _ => {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
    }
    let ctx = CallContext {
        endpoint: call.endpoint,
        stream: call.stream,
        prompt_tokens: call.prompt_tokens,
        request_id: &request_id,
        trace: trace.as_ref(),
    };
    let started = Instant::now();
    if let Some(m) = &meter {
        m.mark_reached();
    }
    let provider = &call.route.provider;
    if let Some(t) = &otel {
        t.upstream_started(provider.name(), &call.route.upstream_model);
    }
    let upstream = provider.send(body, ctx).await;
    if let Some(l) = &labels {
        l.set_upstream(started.elapsed());
    }
    if let Some(t) = &otel {
        match &upstream {
            Ok(u) => t.upstream_answered(Some(u.status.as_u16()), None),
            Err(e) => t.upstream_answered(None, Some(error_kind(e))),
        }
    }
    let upstream = match upstream {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(provider = provider.name(), error = %e, "upstream call failed");
            return problem_for(&e).into_response();
        }
    };
    let mut rewritten = false;
    let mut response = match upstream.body {
        UpstreamBody::Full(mut bytes) => {
            // Usage is read before screening: a refused answer still cost its tokens.
            let usage = upstream
                .status
                .is_success()
                .then(|| reported_usage(&bytes))
                .flatten();
            if let (Some(m), Some(u)) = (&meter, usage) {
                m.set_usage(u);
            }
            let _settle = Settle {
                grant,
                total: usage.map(|u| u32::try_from(u.total_tokens()).unwrap_or(u32::MAX)),
            };
            if let Some(g) = response_guard
                .as_ref()
                .filter(|_| upstream.status.is_success())
            {
                match g.full(&bytes) {
                    Screened::Unchanged => {}
                    Screened::Rewritten(b) => {
                        bytes = b;
                        rewritten = true;
                    }
                    Screened::Refused(why) => {
                        return Problem::new(ProblemKind::ToolCallRefused, why).into_response();
                    }
                }
            }
            Response::new(Body::from(bytes))
        }
        UpstreamBody::Stream(stream) => {
            let mut scanner = UsageScanner::new(strip_usage);
            if let Some(g) = &response_guard {
                scanner = scanner.with_redactor(g.stream());
                rewritten = true;
            }
            let mut settle = Settle { grant, total: None };
            let responses_api = call.endpoint == crate::call::Endpoint::Responses;
            let mut ended = false;
            let body = stream
                .map(Some)
                .chain(futures_util::stream::once(async { None }))
                .filter_map(move |item| {
                    let out = match item {
                        Some(Ok(chunk)) => {
                            let out = scanner.feed(&chunk);
                            settle.record(scanner.total_tokens);
                            if let (Some(m), Some(u)) = (&meter, scanner.usage) {
                                m.set_usage(u);
                            }
                            (!out.is_empty()).then_some(Ok::<Bytes, std::io::Error>(out))
                        }
                        Some(Err(e)) => {
                            // Mid-stream the status line is gone: tell the client in-band and end.
                            tracing::warn!(error = %e, "upstream stream failed");
                            ended = true;
                            if let Some(t) = &otel {
                                t.upstream_stream_ended(Some(error_kind(&e)));
                            }
                            let code = match e {
                                UpstreamError::Timeout { .. } => "upstream-timeout",
                                _ => "upstream-unavailable",
                            };
                            let event = if responses_api {
                                // The Responses API's own error event.
                                format!("event: error\ndata: {}\n\n", json!({"type": "error", "code": code, "message": e.to_string(), "param": null}))
                            } else {
                                format!("data: {}\n\n", json!({"error": {"message": e.to_string(), "type": "api_error", "code": code}}))
                            };
                            Some(Ok(Bytes::from(event)))
                        }
                        None if !ended => {
                            if let Some(t) = &otel {
                                t.upstream_stream_ended(None);
                            }
                            let rest = scanner.finish();
                            settle.record(scanner.total_tokens);
                            if let (Some(m), Some(u)) = (&meter, scanner.usage) {
                                m.set_usage(u);
                            }
                            (!rest.is_empty()).then_some(Ok(rest))
                        }
                        None => None,
                    };
                    async move { out }
                });
            Response::new(Body::from_stream(body))
        }
    };
    *response.status_mut() = upstream.status;
    response.headers_mut().extend(upstream.headers);
    if rewritten {
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    response
}

/// A failed upstream call's kind, for the trace (never the message, which may quote a URL).
fn error_kind(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Timeout { .. } => "timeout",
        UpstreamError::Unavailable { .. } => "unavailable",
        UpstreamError::Invalid { .. } => "invalid_response",
    }
}
