//! otel: OpenTelemetry traces of calls. A sampled request is one server span, with a child
//! span for each control (the time it spends before it hands the call on) and a client span
//! for the upstream call, whose id is the one sent upstream in `traceparent`. Finished traces
//! wait in a bounded queue that one task posts in batches to `[telemetry] otlp_endpoint`
//! (OTLP/HTTP, protobuf). Unless that is set nothing is recorded and calls pay one relaxed
//! atomic load per control.

use crate::otlp::{self, Span, SpanKind, StatusCode, Value};
use crate::providers::openai::{https_client, HttpClient};
use crate::request_id::TraceContext;
use crate::webhook::{exchange, Outcome};
use axum::extract::Request;
use bytes::Bytes;
use custos_core::config::TelemetryConfig;
use http_body_util::Full;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Set once a tracer starts in this process: until then no request is even looked at.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Most spans in one export request.
const BATCH_SPANS: usize = 2048;
/// How long a batch waits to fill before it is sent.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Tries of one batch before its spans are dropped.
const ATTEMPTS: u32 = 4;

/// The export counters `/metrics` shows.
#[derive(Debug, Default)]
pub struct Stats {
    pub exported: AtomicU64,
    /// Spans of traces that found the queue full.
    pub dropped_queue: AtomicU64,
    /// Spans of batches the receiver refused or never took.
    pub dropped_export: AtomicU64,
}

/// The trace of the request being handled, when it is sampled and a tracer runs.
pub fn current(req: &Request) -> Option<Arc<CallTrace>> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    req.extensions().get::<Arc<CallTrace>>().cloned()
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// Starts traces and hands finished ones to the exporter.
pub struct Tracer {
    tx: mpsc::Sender<Vec<Span>>,
    ratio: f64,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("ratio", &self.ratio)
            .finish()
    }
}

/// A configuration the exporter cannot start with.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint {url:?}: {reason}")]
pub struct ExporterError {
    url: String,
    reason: String,
}

/// A started tracer and its export task.
pub type Started = (Arc<Tracer>, tokio::task::JoinHandle<()>);

impl Tracer {
    /// The tracer and its export task, when `[telemetry] otlp_endpoint` is set.
    pub fn start(
        config: &TelemetryConfig,
        stats: Arc<Stats>,
    ) -> Result<Option<Started>, ExporterError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let url = traces_url(endpoint);
        let uri: http::Uri = url.parse().map_err(|_| ExporterError {
            url: url.clone(),
            reason: "not a valid URL".into(),
        })?;
        let headers = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|v| parse_headers(&v))
            .unwrap_or_else(|_| Ok(Vec::new()))
            .map_err(|reason| ExporterError {
                url: url.clone(),
                reason,
            })?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let exporter = Exporter {
            uri,
            headers,
            client: https_client(Duration::from_secs(5)),
            resource: vec![
                ("service.name", config.service_name.clone().into()),
                ("service.version", env!("CARGO_PKG_VERSION").into()),
                ("telemetry.sdk.name", "custos".into()),
                ("telemetry.sdk.language", "rust".into()),
            ],
            stats: stats.clone(),
        };
        let task = tokio::spawn(exporter.run(rx));
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %url, ratio = config.sample_ratio, "telemetry: exporting traces over OTLP/HTTP");
        Ok(Some((
            Arc::new(Tracer {
                tx,
                ratio: config.sample_ratio,
                stats,
            }),
            task,
        )))
    }

    /// Starts the trace of a request when it is sampled: a caller's `traceparent` decides for
    /// its own trace; a new trace is sampled at the configured ratio. A sampled new trace
    /// says so upstream.
    pub fn begin(&self, ctx: &mut TraceContext, name: String) -> Option<Arc<CallTrace>> {
        let sampled = match &ctx.parent_id {
            Some(_) => ctx.sampled,
            None => {
                self.ratio >= 1.0
                    || (self.ratio > 0.0
                        && (custos_core::random::next_u64() as f64) < self.ratio * u64::MAX as f64)
            }
        };
        if !sampled {
            return None;
        }
        ctx.set_sampled();
        Some(Arc::new(CallTrace {
            trace_id: hex_to(&ctx.trace_id)?,
            span_id: rand_span_id(),
            parent: ctx.parent_id.as_deref().and_then(hex_to),
            upstream_span: hex_to(&ctx.upstream_span_id)?,
            trace_state: ctx
                .tracestate
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            name,
            start: Instant::now(),
            start_unix_ns: unix_nanos(),
            tx: self.tx.clone(),
            stats: self.stats.clone(),
            labels: OnceLock::new(),
            inner: Mutex::new(Inner::default()),
        }))
    }
}

fn rand_span_id() -> [u8; 8] {
    loop {
        let id = custos_core::random::next_u64().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// `<endpoint>/v1/traces`, unless the endpoint already names the path.
pub fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.ends_with("/v1/traces") {
        e.to_owned()
    } else {
        format!("{e}/v1/traces")
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, values
/// percent-encoded (the OpenTelemetry environment variable specification).
pub fn parse_headers(text: &str) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let mut out = Vec::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(
                "OTEL_EXPORTER_OTLP_HEADERS holds an entry without `=` (expected key=value,key=value)"
                    .into(),
            );
        };
        let name = http::HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| {
            format!(
                "OTEL_EXPORTER_OTLP_HEADERS: {:?} is not a header name",
                k.trim()
            )
        })?;
        let decoded = percent_decode(v.trim());
        let value = http::HeaderValue::from_bytes(&decoded).map_err(|_| {
            format!("OTEL_EXPORTER_OTLP_HEADERS: the value of {name} is not a valid header value")
        })?;
        out.push((name, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let digit = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (digit(b[i + 1]), digit(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// What the server span reads from the metrics layer once the call is known.
pub trait CallFacts: Send + Sync {
    fn tenant(&self) -> Option<&str>;
    fn team(&self) -> Option<&str>;
    fn model(&self) -> Option<&str>;
}

#[derive(Default)]
struct Inner {
    /// (name, start, end) as nanoseconds since the request began.
    controls: Vec<(&'static str, u64, Option<u64>)>,
    /// The control whose own part is running.
    open: Option<usize>,
    upstream: Option<Upstream>,
    status: u16,
}

struct Upstream {
    start: u64,
    end: u64,
    provider: String,
    model: String,
    status: Option<u16>,
    error: Option<&'static str>,
}

/// One sampled request being traced.
pub struct CallTrace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    upstream_span: [u8; 8],
    trace_state: String,
    name: String,
    start: Instant,
    start_unix_ns: u64,
    tx: mpsc::Sender<Vec<Span>>,
    stats: Arc<Stats>,
    labels: OnceLock<Arc<dyn CallFacts>>,
    inner: Mutex<Inner>,
}

impl CallTrace {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A control starts: the one before it has handed the call on.
    pub fn enter(&self, name: &'static str) -> usize {
        let now = self.now();
        let mut i = self.lock();
        if let Some(open) = i.open.take() {
            if let Some(c) = i.controls.get_mut(open) {
                c.2.get_or_insert(now);
            }
        }
        i.controls.push((name, now, None));
        i.open = Some(i.controls.len() - 1);
        i.controls.len() - 1
    }

    /// A control returned; if it answered without handing on, its span ends now.
    pub fn leave(&self, index: usize) {
        let now = self.now();
        let mut i = self.lock();
        if let Some(c) = i.controls.get_mut(index) {
            c.2.get_or_insert(now);
        }
        if i.open == Some(index) {
            i.open = None;
        }
    }

    /// The call's tenant, team and model, read when the trace ends.
    pub fn set_facts(&self, facts: Arc<dyn CallFacts>) {
        let _ = self.labels.set(facts);
    }

    /// The upstream request is about to be sent.
    pub fn upstream_started(&self, provider: &str, model: &str) {
        let now = self.now();
        let mut i = self.lock();
        if let Some(open) = i.open.take() {
            if let Some(c) = i.controls.get_mut(open) {
                c.2.get_or_insert(now);
            }
        }
        i.upstream = Some(Upstream {
            start: now,
            end: now,
            provider: provider.to_owned(),
            model: model.to_owned(),
            status: None,
            error: None,
        });
    }

    /// The upstream answered (`status`) or failed (`error`, a short kind).
    pub fn upstream_answered(&self, status: Option<u16>, error: Option<&'static str>) {
        let now = self.now();
        if let Some(u) = self.lock().upstream.as_mut() {
            u.end = now;
            u.status = status;
            u.error = error;
        }
    }

    /// A streamed answer ended: the upstream span lasts until then.
    pub fn upstream_stream_ended(&self, error: Option<&'static str>) {
        let now = self.now();
        if let Some(u) = self.lock().upstream.as_mut() {
            u.end = now;
            if error.is_some() {
                u.error = error;
            }
        }
    }

    /// The response status, once the response head is ready.
    pub fn set_status(&self, status: u16) {
        self.lock().status = status;
    }

    /// The response is sent (or the client went away): the spans go to the exporter.
    pub fn finish(&self, completed: bool) {
        let end = self.now();
        let spans = self.spans(end, completed);
        let n = spans.len() as u64;
        if self.tx.try_send(spans).is_err() {
            self.stats.dropped_queue.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn spans(&self, end: u64, completed: bool) -> Vec<Span> {
        let i = self.lock();
        let at = |offset: u64| self.start_unix_ns.saturating_add(offset);
        let mut attributes: otlp::Attributes = Vec::with_capacity(8);
        let (method, route) = self.name.split_once(' ').unwrap_or(("", &self.name));
        attributes.push(("http.request.method", method.into()));
        attributes.push(("http.route", route.into()));
        // No status: the client left before the response head.
        if i.status != 0 {
            attributes.push(("http.response.status_code", i64::from(i.status).into()));
        }
        if let Some(f) = self.labels.get() {
            for (k, v) in [
                ("custos.tenant", f.tenant()),
                ("custos.team", f.team()),
                ("gen_ai.request.model", f.model()),
            ] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    attributes.push((k, v.into()));
                }
            }
        }
        let (status, message) = if i.status >= 500 {
            (StatusCode::Error, String::new())
        } else if !completed {
            (
                StatusCode::Error,
                "the response was not sent to its end".to_owned(),
            )
        } else {
            (StatusCode::Unset, String::new())
        };
        if i.status >= 500 {
            attributes.push(("error.type", i64::from(i.status).to_string().into()));
        }
        let sampled = 0x01;
        let mut spans = Vec::with_capacity(i.controls.len() + 2);
        spans.push(Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent,
            trace_state: self.trace_state.clone(),
            name: self.name.clone(),
            kind: SpanKind::Server,
            start_unix_nano: at(0),
            end_unix_nano: at(end),
            attributes,
            status,
            status_message: message,
            flags: sampled
                | otlp::FLAG_HAS_IS_REMOTE
                | if self.parent.is_some() {
                    otlp::FLAG_IS_REMOTE
                } else {
                    0
                },
        });
        let child = |name: String, kind, start, stop, attributes, span_id| Span {
            trace_id: self.trace_id,
            span_id,
            parent_span_id: Some(self.span_id),
            trace_state: String::new(),
            name,
            kind,
            start_unix_nano: at(start),
            end_unix_nano: at(stop),
            attributes,
            status: StatusCode::Unset,
            status_message: String::new(),
            flags: sampled | otlp::FLAG_HAS_IS_REMOTE,
        };
        for (name, start, stop) in &i.controls {
            spans.push(child(
                format!("custos.{name}"),
                SpanKind::Internal,
                *start,
                stop.unwrap_or(end).max(*start),
                Vec::new(),
                rand_span_id(),
            ));
        }
        if let Some(u) = &i.upstream {
            let mut attributes: otlp::Attributes = vec![
                ("custos.provider", u.provider.as_str().into()),
                ("gen_ai.request.model", u.model.as_str().into()),
            ];
            if let Some(s) = u.status {
                attributes.push(("http.response.status_code", i64::from(s).into()));
            }
            let mut span = child(
                format!("upstream {}", u.provider),
                SpanKind::Client,
                u.start,
                u.end.max(u.start),
                attributes,
                self.upstream_span,
            );
            if let Some(e) = u.error {
                span.status = StatusCode::Error;
                span.status_message = e.to_owned();
                span.attributes.push(("error.type", e.into()));
            } else if u.status.is_some_and(|s| s >= 500) {
                span.status = StatusCode::Error;
            }
            spans.push(span);
        }
        spans
    }
}

/// Posts batches of spans to the receiver.
struct Exporter {
    uri: http::Uri,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    client: HttpClient,
    resource: Vec<(&'static str, Value)>,
    stats: Arc<Stats>,
}

impl Exporter {
    async fn run(self, mut rx: mpsc::Receiver<Vec<Span>>) {
        let mut warned = false;
        while let Some(first) = rx.recv().await {
            let mut batch = first;
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < BATCH_SPANS {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(more)) => batch.extend(more),
                    Ok(None) | Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            let body = Bytes::from(otlp::export_request(
                &self.resource,
                ("custos", env!("CARGO_PKG_VERSION")),
                &batch,
            ));
            drop(batch);
            let mut wait = Duration::from_secs(1);
            let mut outcome = Outcome::Failed(String::new());
            for attempt in 1..=ATTEMPTS {
                outcome = self.post(body.clone()).await;
                match &outcome {
                    Outcome::Failed(_) if attempt < ATTEMPTS => {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    _ => break,
                }
            }
            match outcome {
                Outcome::Delivered => {
                    self.stats.exported.fetch_add(n, Ordering::Relaxed);
                    warned = false;
                }
                Outcome::Refused(why) | Outcome::Failed(why) => {
                    self.stats.dropped_export.fetch_add(n, Ordering::Relaxed);
                    // Once per outage, not once per batch.
                    if !warned {
                        tracing::warn!(endpoint = %self.uri, spans = n, error = %why, "telemetry: the OTLP receiver did not take a batch of spans; they are dropped");
                        warned = true;
                    }
                }
            }
        }
    }

    async fn post(&self, body: Bytes) -> Outcome {
        let mut req = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                http::header::USER_AGENT,
                concat!("custos/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        exchange(&self.client, req.body(Full::new(body)), 10, "OTLP receiver").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(ratio: f64) -> (Tracer, mpsc::Receiver<Vec<Span>>) {
        let (tx, rx) = mpsc::channel(4);
        (
            Tracer {
                tx,
                ratio,
                stats: Arc::default(),
            },
            rx,
        )
    }

    fn context(traceparent: Option<&'static str>) -> TraceContext {
        let mut h = http::HeaderMap::new();
        if let Some(tp) = traceparent {
            h.insert("traceparent", http::HeaderValue::from_static(tp));
        }
        TraceContext::from_headers(&h)
    }

    #[test]
    fn sampling_follows_the_caller_then_the_ratio() {
        let (never, _rx) = tracer(0.0);
        assert!(never.begin(&mut context(None), "GET /".into()).is_none());
        // The caller asked for it: traced whatever the ratio.
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(never
            .begin(&mut context(Some(sampled)), "GET /".into())
            .is_some());
        let (always, _rx) = tracer(1.0);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(always
            .begin(&mut context(Some(unsampled)), "GET /".into())
            .is_none());
        let mut fresh = context(None);
        assert!(always.begin(&mut fresh, "GET /".into()).is_some());
        assert!(fresh.traceparent.ends_with("-01"), "upstream is told");
    }

    #[test]
    fn control_spans_cover_their_own_part_and_nest_under_the_call() {
        let (t, mut rx) = tracer(1.0);
        let mut ctx = context(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        let call = t
            .begin(&mut ctx, "POST /v1/chat/completions".into())
            .unwrap();
        let outer = call.enter("authn");
        let inner = call.enter("quota");
        call.upstream_started("up", "m-1");
        call.upstream_answered(Some(503), None);
        call.leave(inner);
        call.leave(outer);
        // A control that answers without handing on ends when it returns.
        let refusing = call.enter("budget");
        call.leave(refusing);
        call.set_status(503);
        call.finish(true);
        let spans = rx.try_recv().unwrap();
        assert_eq!(spans.len(), 5);
        let server = &spans[0];
        assert_eq!(server.kind, SpanKind::Server);
        assert_eq!(server.parent_span_id, hex_to("00f067aa0ba902b7"));
        assert_eq!(server.status, StatusCode::Error);
        let by = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        let (authn, quota, budget) = (by("custos.authn"), by("custos.quota"), by("custos.budget"));
        assert_eq!(authn.end_unix_nano, quota.start_unix_nano);
        assert!(quota.end_unix_nano <= by("upstream up").start_unix_nano);
        assert!(budget.start_unix_nano <= budget.end_unix_nano);
        for s in &spans[1..] {
            assert_eq!(s.parent_span_id, Some(server.span_id));
            assert_eq!(s.trace_id, server.trace_id);
            assert!(s.start_unix_nano >= server.start_unix_nano);
            assert!(s.end_unix_nano <= server.end_unix_nano);
        }
        let up = by("upstream up");
        assert_eq!(up.kind, SpanKind::Client);
        assert_eq!(up.status, StatusCode::Error);
        assert_eq!(hex::encode(up.span_id), ctx.upstream_span_id);
        assert!(ctx.traceparent.contains(&ctx.upstream_span_id));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let t = Tracer {
            tx,
            ratio: 1.0,
            stats: Arc::default(),
        };
        for _ in 0..3 {
            let c = t.begin(&mut context(None), "GET /".into()).unwrap();
            c.finish(true);
        }
        // One trace of one span waits; two found the queue full.
        assert_eq!(t.stats.dropped_queue.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("https://c.example/otlp/v1/traces"),
            "https://c.example/otlp/v1/traces"
        );
    }

    #[test]
    fn headers_follow_the_environment_variable_format() {
        let h = parse_headers("api-key=secret%20value, x-tenant = a").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0, "api-key");
        assert_eq!(h[0].1, "secret value");
        assert_eq!(h[1].0, "x-tenant");
        assert_eq!(h[1].1, "a");
        assert!(parse_headers("").unwrap().is_empty());
        assert!(parse_headers("novalue")
            .unwrap_err()
            .contains("without `=`"));
        assert!(parse_headers("bad header=x")
            .unwrap_err()
            .contains("header name"));
        // A lone or malformed escape is kept as written.
        assert_eq!(parse_headers("k=100%").unwrap()[0].1, "100%");
        assert_eq!(parse_headers("k=%zz").unwrap()[0].1, "%zz");
    }
}
