//! idempotency: the IETF `Idempotency-Key` draft. A POST carrying the header runs once per
//! API key; a repeat with the same body replays the stored status, headers and body with
//! `Idempotent-Replayed: true`; a repeat while the first still runs gets 409; the same key
//! with a different body gets 422. Failures worth retrying (5xx, 429, a client that hung up)
//! are not stored, so a retry runs again.

use crate::body_tap::{Observer, TapBody};
use crate::call::ModelCall;
use crate::cluster::{Cluster, Control};
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use custos_core::config::{IdempotencyConfig, OnRedisError};
use custos_core::principal::SharedPrincipal;
use custos_store::shared::Claimed;
use http::{HeaderName, HeaderValue, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";
const MAX_KEY_LEN: usize = 255;

/// (credential id, client's Idempotency-Key): keys are scoped per API key.
type Scope = (String, String);

#[derive(Debug)]
struct Stored {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

#[derive(Debug)]
enum Slot {
    InFlight,
    Done(Arc<Stored>),
}

#[derive(Debug)]
struct Entry {
    /// Unique per execution, so a late completion never overwrites a newer entry.
    token: u64,
    body_sha256: [u8; 32],
    created: Instant,
    slot: Slot,
}

/// Entries by scope, their insertion order (scope, token) for eviction, and the bytes held.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Scope, Entry>,
    order: VecDeque<(Scope, u64)>,
    bytes: usize,
}

impl Stored {
    /// Approximate heap bytes held, for the memory budget.
    fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 64)
                .sum::<usize>()
    }
}

impl Entry {
    fn size(&self, scope: &Scope) -> usize {
        let stored = match &self.slot {
            Slot::Done(s) => s.size(),
            Slot::InFlight => 0,
        };
        stored + scope.0.len() + scope.1.len() + 128
    }
}

impl Entries {
    fn remove(&mut self, scope: &Scope) {
        if let Some(e) = self.map.remove(scope) {
            self.bytes = self.bytes.saturating_sub(e.size(scope));
        }
    }

    /// Evicts the oldest entries until both limits hold; stale queue items (already
    /// replaced or removed) are skipped by comparing tokens.
    fn evict(&mut self, max_entries: usize, max_bytes: usize) {
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let Some((old, old_token)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|e| e.token == old_token) {
                self.remove(&old);
            }
        }
    }
}

#[derive(Debug)]
pub struct IdempotencyStore {
    entries: Mutex<Entries>,
    next_token: AtomicU64,
    pub ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    pub max_response_bytes: usize,
}

enum Lookup {
    Run { token: u64 },
    Replay(Arc<Stored>),
    InFlight,
    Mismatch,
}

impl IdempotencyStore {
    pub fn new(config: &IdempotencyConfig) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            next_token: AtomicU64::new(1),
            ttl: config.ttl.0,
            max_entries: config.max_entries.max(1),
            max_bytes: config.max_memory_bytes,
            max_response_bytes: config.max_response_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, scope: Scope, body_sha256: [u8; 32]) -> Lookup {
        let mut entries = self.lock();
        if let Some(e) = entries.map.get(&scope) {
            if e.created.elapsed() >= self.ttl {
                entries.remove(&scope);
            } else if e.body_sha256 != body_sha256 {
                return Lookup::Mismatch;
            } else {
                return match &e.slot {
                    Slot::InFlight => Lookup::InFlight,
                    Slot::Done(stored) => Lookup::Replay(stored.clone()),
                };
            }
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        entries.evict(self.max_entries - 1, self.max_bytes);
        let entry = Entry {
            token,
            body_sha256,
            created: Instant::now(),
            slot: Slot::InFlight,
        };
        entries.bytes += entry.size(&scope);
        entries.order.push_back((scope.clone(), token));
        entries.map.insert(scope, entry);
        Lookup::Run { token }
    }

    fn complete(&self, scope: &Scope, token: u64, stored: Stored) {
        let mut entries = self.lock();
        let added = stored.size();
        if let Some(e) = entries.map.get_mut(scope) {
            if e.token == token && matches!(e.slot, Slot::InFlight) {
                e.slot = Slot::Done(Arc::new(stored));
                entries.bytes += added;
                entries.evict(self.max_entries, self.max_bytes);
            }
        }
    }

    fn abandon(&self, scope: &Scope, token: u64) {
        let mut entries = self.lock();
        if entries
            .map
            .get(scope)
            .is_some_and(|e| e.token == token && matches!(e.slot, Slot::InFlight))
        {
            entries.remove(scope);
        }
    }

    /// Drops expired entries; called periodically.
    pub fn sweep(&self) {
        let ttl = self.ttl;
        let mut entries = self.lock();
        let expired: Vec<Scope> = entries
            .map
            .iter()
            .filter(|(_, e)| e.created.elapsed() >= ttl && matches!(e.slot, Slot::Done(_)))
            .map(|(s, _)| s.clone())
            .collect();
        for s in &expired {
            entries.remove(s);
        }
        let Entries { map, order, .. } = &mut *entries;
        order.retain(|(s, t)| map.get(s).is_some_and(|e| e.token == *t));
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held by stored responses and keys.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

fn valid_key(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let s = s.trim();
    // The draft's key is an sf-string; accept it quoted or bare.
    let s = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(s);
    (!s.is_empty() && s.len() <= MAX_KEY_LEN && s.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .then(|| s.to_owned())
}

/// The key a POST asks to run once under: none without the header (or for other methods),
/// a 400 for a malformed one.
fn requested_key(req: &Request) -> Result<Option<String>, Box<Response>> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    if req.method() != http::Method::POST {
        return Ok(None);
    }
    match valid_key(raw) {
        Some(key) => Ok(Some(key)),
        None => Err(Box::new(
            Problem::new(
                ProblemKind::IdempotencyKeyInvalid,
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"),
            )
            .into_response(),
        )),
    }
}

/// The idempotency layer's middleware function: after call (it needs the body's hash), before
/// quota (a replay costs nothing).
pub async fn dedupe<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    let key = match requested_key(&req) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(refused) => return *refused,
    };
    let (Some(principal), Some(call)) = (
        req.extensions().get::<SharedPrincipal>().cloned(),
        req.extensions().get::<Arc<ModelCall>>().cloned(),
    ) else {
        return next.run(req).await;
    };
    run_once(
        state,
        &principal.tenant,
        (principal.uid.clone(), key),
        call.body_sha256,
        req,
        next,
    )
    .await
}

/// Admin API POSTs: the same contract, the request identified by its method, path and body
/// (so one key reused on another endpoint is a mismatch too). Admin bodies are small: one
/// over `MAX_ADMIN_BODY` is refused before anything runs.
pub async fn dedupe_admin<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    let key = match requested_key(&req) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(refused) => return *refused,
    };
    let Some(principal) = req.extensions().get::<SharedPrincipal>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_ADMIN_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                ProblemKind::BodyTooLarge,
                format!("an admin request body is at most {MAX_ADMIN_BODY} bytes"),
            )
            .into_response()
        }
    };
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(parts.method.as_str().as_bytes());
    h.update([0]);
    h.update(parts.uri.path().as_bytes());
    h.update([0]);
    h.update(&bytes);
    let sha: [u8; 32] = h.finalize().into();
    let req = Request::from_parts(parts, Body::from(bytes));
    run_once(
        state,
        &principal.tenant,
        (principal.uid.clone(), format!("admin:{key}")),
        sha,
        req,
        next,
    )
    .await
}

/// The largest admin request body read for idempotency.
pub const MAX_ADMIN_BODY: usize = 1 << 20;

/// Runs the request once per (principal, key): replays a completed answer for the same
/// request, refuses a concurrent duplicate (409) and a different request under the key (422).
async fn run_once<N: Next>(
    state: &AppState,
    tenant: &str,
    scope: Scope,
    body_sha256: [u8; 32],
    req: Request,
    next: &N,
) -> Response {
    if let Some(cluster) = state.cluster.clone() {
        let key = shared_key(tenant, &scope);
        let holder = format!("{}/{}", cluster.replica, custos_core::id::new_id("claim"));
        let sha = hex::encode(body_sha256);
        let claimed = cluster
            .call(|s| {
                let (key, sha, holder) = (&key, &sha, &holder);
                async move { s.idempotency_claim(key, sha, holder, CLAIM_LIFETIME).await }
            })
            .await;
        match claimed {
            Ok(Claimed::Run) => {
                return run_shared(state, cluster, key, holder, req, next).await;
            }
            Ok(Claimed::InFlight) => return in_flight(),
            Ok(Claimed::Mismatch) => return mismatch(),
            Ok(Claimed::Done {
                status,
                headers,
                body,
            }) => {
                state.metrics.idempotent_replay();
                return replay(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    decode_headers(&headers),
                    Bytes::from(body),
                );
            }
            Err(reason) => match cluster.fall_back(state, Control::Idempotency, &reason) {
                OnRedisError::Local => {}
                OnRedisError::FailOpen => return next.run(req).await,
                OnRedisError::FailClosed => {
                    return Problem::new(
                        ProblemKind::Overloaded,
                        "Idempotency-Key claims are shared through Redis, which does not answer; retry later, or without the header (on_redis_error = \"fail_closed\")",
                    )
                    .with_header(http::header::RETRY_AFTER, HeaderValue::from(1u64))
                    .into_response()
                }
            },
        }
    }
    let store = state.idempotency.clone();
    let token = match store.begin(scope.clone(), body_sha256) {
        Lookup::Run { token } => token,
        Lookup::Replay(stored) => {
            state.metrics.idempotent_replay();
            return replay(stored.status, stored.headers.clone(), stored.body.clone());
        }
        Lookup::InFlight => return in_flight(),
        Lookup::Mismatch => return mismatch(),
    };
    let guard = Abandon {
        store: store.clone(),
        scope: scope.clone(),
        token,
        armed: true,
    };
    let response = next.run(req).await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // Dropping the guard frees the key so the client can retry.
        return response;
    }
    let (parts, body) = response.into_parts();
    let headers = stored_headers(&parts.headers);
    let recorder = Recorder {
        capture: Capture::new(store.max_response_bytes, status, headers),
        guard,
    };
    Response::from_parts(parts, Body::new(TapBody::new(body, recorder)))
}

fn in_flight() -> Response {
    Problem::new(
        ProblemKind::IdempotencyInFlight,
        "a request with this Idempotency-Key is still being processed; retry after it completes",
    )
    .into_response()
}

fn mismatch() -> Response {
    Problem::new(
        ProblemKind::IdempotencyKeyReused,
        "this Idempotency-Key was already used with a different request body; use a new key for a new request",
    )
    .into_response()
}

fn replay(status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (n, v) in headers {
        response.headers_mut().append(n, v);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// How long a shared claim outlives a replica that died holding it: a duplicate gets 409
/// until then, and runs after.
pub const CLAIM_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The Redis key of a scope: tenant in clear, the principal and the client's key hashed (they
/// may hold any printable character and should not be listed from Redis).
fn shared_key(tenant: &str, scope: &Scope) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(scope.0.as_bytes());
    h.update([0]);
    h.update(scope.1.as_bytes());
    format!("i:{tenant}:{}", hex::encode(h.finalize()))
}

/// Headers as `name: value` lines (values hold no line breaks).
fn encode_headers(headers: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_headers(blob: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    blob.split(|b| *b == b'\n')
        .filter_map(|line| {
            let at = line.windows(2).position(|w| w == b": ")?;
            Some((
                HeaderName::from_bytes(&line[..at]).ok()?,
                HeaderValue::from_bytes(&line[at + 2..]).ok()?,
            ))
        })
        .collect()
}

/// Runs a request whose key this replica claimed on Redis. A complete answer is stored before
/// it is sent, so a retry that follows on any replica finds it; an event stream is stored
/// when it ends. Failures worth retrying, and answers too large to keep, free the key.
async fn run_shared<N: Next>(
    state: &AppState,
    cluster: Arc<Cluster>,
    key: String,
    holder: String,
    req: Request,
    next: &N,
) -> Response {
    let claim = SharedClaim {
        cluster,
        key,
        holder,
        ttl: state.idempotency.ttl,
        armed: true,
    };
    let limit = state.idempotency.max_response_bytes;
    let response = next.run(req).await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let (parts, body) = response.into_parts();
    let headers = stored_headers(&parts.headers);
    let streaming = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streaming {
        let recorder = SharedRecorder {
            capture: Capture::new(limit, status, headers),
            claim: Some(claim),
        };
        return Response::from_parts(parts, Body::new(TapBody::new(body, recorder)));
    }
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut buffer = BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buffer.len() + data.len() > limit {
                    // Too large to keep: sent as it comes, and the key is freed (the claim
                    // drops here).
                    use futures_util::StreamExt as _;
                    let head = futures_util::stream::iter([
                        Ok::<Bytes, axum::Error>(buffer.freeze()),
                        Ok(data),
                    ]);
                    let rest = head.chain(body.into_data_stream());
                    return Response::from_parts(parts, Body::from_stream(rest));
                }
                buffer.extend_from_slice(&data);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "a response broke off before it was stored for its Idempotency-Key");
                return Problem::new(
                    ProblemKind::UpstreamUnavailable,
                    "the response broke off before it completed; retry with the same Idempotency-Key",
                )
                .into_response();
            }
        }
    }
    let body = buffer.freeze();
    claim.complete(status, &headers, body.clone()).await;
    Response::from_parts(parts, Body::from(body))
}

/// A claim on Redis, freed in the background unless completed.
struct SharedClaim {
    cluster: Arc<Cluster>,
    key: String,
    holder: String,
    ttl: Duration,
    armed: bool,
}

impl SharedClaim {
    async fn complete(
        mut self,
        status: StatusCode,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) {
        self.armed = false;
        let blob = encode_headers(headers);
        let (key, holder, ttl) = (&self.key, &self.holder, self.ttl);
        let stored = self
            .cluster
            .call(|s| {
                let (blob, body) = (&blob, &body);
                async move {
                    s.idempotency_complete(key, holder, status.as_u16(), blob, body, ttl)
                        .await
                }
            })
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => tracing::warn!("an Idempotency-Key claim lapsed before its answer was stored; a retry runs again"),
            Err(reason) => tracing::warn!(reason, "cannot store an answer for its Idempotency-Key; a duplicate gets 409 until the claim lapses"),
        }
    }
}

impl Drop for SharedClaim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cluster = self.cluster.clone();
        let key = std::mem::take(&mut self.key);
        let holder = std::mem::take(&mut self.holder);
        handle.spawn(async move {
            let freed = cluster
                .call(|s| {
                    let (key, holder) = (&key, &holder);
                    async move { s.idempotency_abandon(key, holder).await }
                })
                .await;
            if let Err(reason) = freed {
                tracing::warn!(
                    reason,
                    "cannot free an Idempotency-Key claim; it lapses on its own"
                );
            }
        });
    }
}

/// A copy of an answer being sent, up to a size; past it the copy is dropped.
struct Capture {
    buffer: BytesMut,
    limit: usize,
    status: StatusCode,
    /// None once the answer is too large to keep.
    headers: Option<Vec<(HeaderName, HeaderValue)>>,
}

impl Capture {
    fn new(limit: usize, status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        Self {
            buffer: BytesMut::new(),
            limit,
            status,
            headers: Some(headers),
        }
    }

    fn data(&mut self, chunk: &Bytes) {
        if self.headers.is_none() {
            return;
        }
        if self.buffer.len() + chunk.len() > self.limit {
            // Too big to keep: stop recording; the key is freed when this ends.
            self.headers = None;
            self.buffer = BytesMut::new();
        } else {
            self.buffer.extend_from_slice(chunk);
        }
    }

    /// The whole answer, when it completed and was small enough to keep.
    fn take(&mut self, completed: bool) -> Option<Stored> {
        let headers = self.headers.take().filter(|_| completed)?;
        Some(Stored {
            status: self.status,
            headers,
            body: std::mem::take(&mut self.buffer).freeze(),
        })
    }
}

/// Keeps a copy of a streamed answer and stores it on Redis when the stream ends.
struct SharedRecorder {
    capture: Capture,
    claim: Option<SharedClaim>,
}

impl Observer for SharedRecorder {
    fn data(&mut self, chunk: &Bytes) {
        self.capture.data(chunk);
    }

    fn end(&mut self, completed: bool) {
        // Otherwise dropping the claim frees the key.
        let (Some(claim), Some(stored)) = (self.claim.take(), self.capture.take(completed)) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            claim
                .complete(stored.status, &stored.headers, stored.body)
                .await
        });
    }
}

/// The response headers worth replaying. Values are copied: a header parsed from the
/// upstream connection shares its whole read buffer, which must not stay alive for a day.
/// Rate-limit headers are left out, since they describe the moment of the first call.
fn stored_headers(headers: &http::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            !matches!(
                n,
                "content-length" | "transfer-encoding" | "date" | "x-request-id" | "connection"
            ) && !n.starts_with("x-ratelimit-")
        })
        .filter_map(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.as_str().as_bytes()).ok()?,
                HeaderValue::from_bytes(v.as_bytes()).ok()?,
            ))
        })
        .collect()
}

/// Frees the key unless disarmed: runs when the response is dropped before completion.
struct Abandon {
    store: Arc<IdempotencyStore>,
    scope: Scope,
    token: u64,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.armed {
            self.store.abandon(&self.scope, self.token);
        }
    }
}

/// Keeps a copy of the response to replay; frees the key if the body fails, is too large
/// to keep, or is dropped before its end.
struct Recorder {
    capture: Capture,
    guard: Abandon,
}

impl Observer for Recorder {
    fn data(&mut self, chunk: &Bytes) {
        self.capture.data(chunk);
    }

    fn end(&mut self, completed: bool) {
        if let Some(stored) = self.capture.take(completed) {
            self.guard
                .store
                .complete(&self.guard.scope, self.guard.token, stored);
            self.guard.armed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_travel_through_redis_unchanged() {
        let headers = vec![
            (
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/json"),
            ),
            (
                HeaderName::from_static("x-custos-note"),
                HeaderValue::from_bytes(b"a: b\tc \xff").unwrap(),
            ),
        ];
        assert_eq!(decode_headers(&encode_headers(&headers)), headers);
        assert!(decode_headers(b"garbage\n: no name\n").is_empty());
        // Keys are per tenant and principal; the client's key is never stored in clear.
        let a = shared_key("acme", &("ten_a/key/k1".into(), "order-1".into()));
        let b = shared_key("acme", &("ten_a/key/k2".into(), "order-1".into()));
        assert!(a.starts_with("i:acme:") && !a.contains("order-1"));
        assert_ne!(a, b);
    }

    fn store(max: usize) -> IdempotencyStore {
        IdempotencyStore::new(&IdempotencyConfig {
            ttl: custos_core::config::HumanDuration(Duration::from_secs(60)),
            max_entries: max,
            max_memory_bytes: 1 << 20,
            max_response_bytes: 1024,
        })
    }

    fn stored() -> Stored {
        Stored {
            status: StatusCode::OK,
            headers: vec![],
            body: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn lifecycle() {
        let s = store(10);
        let scope = ("key_a".to_string(), "k1".to_string());
        let Lookup::Run { token } = s.begin(scope.clone(), [1; 32]) else {
            panic!()
        };
        assert!(matches!(s.begin(scope.clone(), [1; 32]), Lookup::InFlight));
        assert!(matches!(s.begin(scope.clone(), [2; 32]), Lookup::Mismatch));
        s.complete(&scope, token, stored());
        assert!(matches!(s.begin(scope.clone(), [1; 32]), Lookup::Replay(_)));
        assert!(matches!(s.begin(scope.clone(), [2; 32]), Lookup::Mismatch));
        // Same client key under another API key is independent.
        assert!(matches!(
            s.begin(("key_b".into(), "k1".into()), [2; 32]),
            Lookup::Run { .. }
        ));
    }

    #[test]
    fn abandoned_keys_can_be_retried() {
        let s = store(10);
        let scope = ("key_a".to_string(), "k1".to_string());
        let Lookup::Run { token } = s.begin(scope.clone(), [1; 32]) else {
            panic!()
        };
        s.abandon(&scope, token);
        assert!(matches!(s.begin(scope, [1; 32]), Lookup::Run { .. }));
    }

    #[test]
    fn evicts_oldest_beyond_cap() {
        let s = store(2);
        for i in 0..5 {
            let scope = ("key".to_string(), format!("k{i}"));
            let Lookup::Run { token } = s.begin(scope.clone(), [0; 32]) else {
                panic!()
            };
            s.complete(&scope, token, stored());
        }
        assert!(s.len() <= 2);
        assert!(matches!(
            s.begin(("key".into(), "k4".into()), [0; 32]),
            Lookup::Replay(_)
        ));
    }

    #[test]
    fn evicts_oldest_beyond_memory_budget() {
        let s = IdempotencyStore::new(&IdempotencyConfig {
            ttl: custos_core::config::HumanDuration(Duration::from_secs(60)),
            max_entries: 1000,
            max_memory_bytes: 10_000,
            max_response_bytes: 4096,
        });
        for i in 0..20 {
            let scope = ("key".to_string(), format!("k{i}"));
            let Lookup::Run { token } = s.begin(scope.clone(), [0; 32]) else {
                panic!()
            };
            let body = Bytes::from(vec![b'x'; 2000]);
            s.complete(
                &scope,
                token,
                Stored {
                    status: StatusCode::OK,
                    headers: vec![],
                    body,
                },
            );
        }
        assert!(s.bytes() <= 10_000, "{}", s.bytes());
        assert!(s.len() < 20);
        let newest = s.begin(("key".into(), "k19".into()), [0; 32]);
        assert!(matches!(newest, Lookup::Replay(_)));
        let oldest = s.begin(("key".into(), "k0".into()), [0; 32]);
        assert!(matches!(oldest, Lookup::Run { .. }));
    }

    #[test]
    fn stored_headers_are_copied_and_filtered() {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("5"),
        );
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        let kept = stored_headers(&h);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, "content-type");
    }

    #[test]
    fn key_validation() {
        assert_eq!(
            valid_key(&HeaderValue::from_static("\"abc\"")).as_deref(),
            Some("abc")
        );
        assert_eq!(
            valid_key(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert!(valid_key(&HeaderValue::from_static("")).is_none());
        assert!(valid_key(&HeaderValue::from_str(&"a".repeat(256)).unwrap()).is_none());
    }
}
