//! request_id: every request gets an `X-Request-ID` (the client's if valid, else a UUIDv7),
//! echoed on the response, sent upstream, and carried by every log line of the request.
//! W3C trace context is propagated: custos joins the caller's trace as a new span, or starts
//! one.

use crate::body_tap::{Observer, TapBody};
use crate::stack::Next;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use custos_core::RequestId;
use http::HeaderValue;
use std::sync::Arc;
use tracing::Instrument;

pub const X_REQUEST_ID: &str = "x-request-id";

/// The trace context to send upstream.
#[derive(Clone, Debug)]
pub struct TraceContext {
    /// `00-<trace-id>-<upstream span id>-<flags>`.
    pub traceparent: String,
    pub tracestate: Option<HeaderValue>,
    pub trace_id: String,
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent_id: Option<String>,
    /// The caller asked for the trace to be recorded (W3C `sampled` flag).
    pub sampled: bool,
    /// The span id sent upstream: the upstream call's own span when traces are exported.
    pub upstream_span_id: String,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a W3C `traceparent` and returns (trace-id, parent-id, flags) when valid.
pub fn parse_traceparent(value: &str) -> Option<(&str, &str, &str)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !is_lower_hex(version, 2)
        || version == "ff"
        || !is_lower_hex(trace_id, 32)
        || !is_lower_hex(parent_id, 16)
        || !is_lower_hex(flags, 2)
    {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace_id, parent_id, flags))
}

impl TraceContext {
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let span_id = custos_core::random::hex(8);
        let incoming = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        match incoming {
            Some((trace_id, parent_id, flags)) => Self {
                traceparent: format!("00-{trace_id}-{span_id}-{flags}"),
                tracestate: headers.get("tracestate").cloned(),
                trace_id: trace_id.to_owned(),
                parent_id: Some(parent_id.to_owned()),
                sampled: u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1),
                upstream_span_id: span_id,
            },
            None => {
                let trace_id = custos_core::random::hex(16);
                Self {
                    traceparent: format!("00-{trace_id}-{span_id}-00"),
                    tracestate: None,
                    trace_id,
                    parent_id: None,
                    sampled: false,
                    upstream_span_id: span_id,
                }
            }
        }
    }

    /// The trace is recorded here: the upstream is told so (the `sampled` flag).
    pub fn set_sampled(&mut self) {
        if !self.sampled {
            self.sampled = true;
            if let Some(head) = self.traceparent.get(..self.traceparent.len() - 2) {
                self.traceparent = format!("{head}01");
            }
        }
    }
}

/// Requests never traced: probes and scrapes would drown the calls.
fn traced(path: &str) -> bool {
    !matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The request_id layer's middleware function: the outermost layer but admission. With
/// a tracer it starts the request's trace and ends it when the response body is sent.
pub async fn assign<N: Next>(
    tracer: &Option<Arc<crate::otel::Tracer>>,
    mut req: Request,
    next: &N,
) -> Response {
    let id = RequestId::from_client(req.headers().get(X_REQUEST_ID).map(|v| v.as_bytes()));
    let mut trace = TraceContext::from_headers(req.headers());
    let span = tracing::info_span!("request", request_id = %id, trace_id = %trace.trace_id);
    let call_trace = match tracer {
        Some(t) if traced(req.uri().path()) => t.begin(
            &mut trace,
            format!(
                "{} {}",
                req.method(),
                crate::metrics::route_label(req.uri().path())
            ),
        ),
        _ => None,
    };
    if let Some(t) = &call_trace {
        req.extensions_mut().insert(t.clone());
    }
    // A client that leaves before the response head still leaves its trace.
    let mut unanswered = Unanswered(call_trace);
    req.extensions_mut().insert(id.clone());
    req.extensions_mut().insert(trace);
    let mut response = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    match unanswered.0.take() {
        Some(t) => {
            t.set_status(response.status().as_u16());
            response.map(|body| Body::new(TapBody::new(body, TraceEnd(t))))
        }
        None => response,
    }
}

/// Ends the trace of a request dropped before its response head was ready.
struct Unanswered(Option<Arc<crate::otel::CallTrace>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.finish(false);
        }
    }
}

/// Ends a trace when its response body has been sent, or dropped.
struct TraceEnd(Arc<crate::otel::CallTrace>);

impl Observer for TraceEnd {
    fn data(&mut self, _chunk: &bytes::Bytes) {}
    fn end(&mut self, completed: bool) {
        self.0.finish(completed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(ok),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"))
        );
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none()
        );
        assert!(
            parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }

    #[test]
    fn joins_or_starts_a_trace() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h);
        assert!(t
            .traceparent
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(t.traceparent.ends_with("-01"));
        assert!(!t.traceparent.contains("00f067aa0ba902b7"));
        assert!(t.sampled);
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.traceparent.contains(&t.upstream_span_id));
        let mut unsampled = http::HeaderMap::new();
        unsampled.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        assert!(!TraceContext::from_headers(&unsampled).sampled);
        let mut fresh = TraceContext::from_headers(&http::HeaderMap::new());
        assert!(!fresh.sampled && fresh.parent_id.is_none());
        assert!(fresh.traceparent.ends_with("-00"));
        fresh.set_sampled();
        assert!(fresh.traceparent.ends_with("-01"));
        assert!(parse_traceparent(&fresh.traceparent).is_some());
        assert!(parse_traceparent(&fresh.traceparent).is_some());
    }
}
