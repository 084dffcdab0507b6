//! audit: every model call, allowed or denied, becomes a ledger event once its response has
//! completed (or the client hung up). Events go through a bounded channel to one writer that
//! commits them in batches (group commit); when the writer falls behind, new responses wait
//! for room in the channel instead of events being dropped. Events carry SHA-256 digests of
//! the request and response bodies, never the bodies.

use crate::batch::{BatchSink, Commit, Permit};
use crate::body_tap::{Observer, TapBody};
use crate::call::Endpoint;
use crate::problem::ProblemKind;
use crate::stack::Next;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use custos_control::seal::Sealer;
use custos_core::principal::{AuthMethod, SharedPrincipal};
use custos_core::RequestId;
use custos_store::Store;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, OnceLock};

/// Events waiting for the writer; beyond this, responses wait (back-pressure).
const QUEUE: usize = 65_536;
/// Most events committed in one transaction.
const BATCH: usize = 1_024;

struct LedgerWriter(Store);

impl Commit<String> for LedgerWriter {
    async fn commit(&self, events: &[String]) -> Result<(), String> {
        self.0
            .ledger_append(events)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn what(&self) -> &'static str {
        "audit events"
    }
}

/// The sending side of the audit channel: serialized OCSF-shaped events, their personal
/// identifiers sealed under their subjects' keys.
#[derive(Clone, Debug)]
pub struct AuditSink(BatchSink<String>, Arc<Sealer>);

impl AuditSink {
    /// Starts the writer task; it commits until every sender is gone, at most once per
    /// `interval` (`database.commit_interval`).
    pub fn spawn(
        store: Store,
        interval: std::time::Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let sealer = Arc::new(Sealer::new(store.clone()));
        let (sink, task) = BatchSink::spawn(QUEUE, BATCH, interval, LedgerWriter(store));
        (Self(sink, sealer), task)
    }

    /// The subject keys this sink seals with.
    pub fn sealer(&self) -> &Sealer {
        &self.1
    }

    /// Appends one event (waiting for room in the channel).
    pub async fn append(&self, event: &Value) {
        let mut event = event.clone();
        self.1.seal_event(&mut event).await;
        if !self.0.send(event.to_string()).await {
            tracing::error!("the audit writer has stopped; an event is lost");
        }
    }

    /// Waits until every event sent before this call is committed.
    pub async fn flush(&self) {
        self.0.flush().await
    }
}

/// Facts inner layers learn about a call, for its audit event.
#[derive(Debug, Default)]
pub struct AuditSlot {
    principal: OnceLock<SharedPrincipal>,
    call: OnceLock<(String, [u8; 32])>,
    /// The policies that decided the call.
    policies: OnceLock<Vec<String>>,
    /// A call served outside its tenant's pinned regions, when a policy allowed it.
    transfer: OnceLock<Value>,
    /// The manifest digest of the registry entry that served the call.
    model_digest: OnceLock<String>,
    /// The active release whose alias the call named.
    release: OnceLock<String>,
    /// The end user the call was made for (the request's `user`).
    end_user: OnceLock<String>,
    /// Tools offered, called and refused.
    tools: Arc<crate::tools::ToolLog>,
    /// Prompt injections screened in the request and the answer: category, score,
    /// position, action.
    injection: Arc<Mutex<Vec<Value>>>,
}

impl AuditSlot {
    pub fn set_principal(&self, p: &SharedPrincipal) {
        let _ = self.principal.set(p.clone());
    }
    pub fn set_decision(&self, d: &custos_authz::policy::Decision) {
        let _ = self.policies.set(d.policies.clone());
    }
    pub fn set_transfer(&self, pinned: &[String], to: &str) {
        let _ = self.transfer.set(json!({"pinned": pinned, "to": to}));
    }
    pub fn set_end_user(&self, user: String) {
        let _ = self.end_user.set(user);
    }
    pub fn set_release(&self, id: String) {
        let _ = self.release.set(id);
    }
    pub fn set_model_digest(&self, digest: String) {
        let _ = self.model_digest.set(digest);
    }
    pub fn injection_log(&self) -> Arc<Mutex<Vec<Value>>> {
        self.injection.clone()
    }
    pub fn tool_log(&self) -> Arc<crate::tools::ToolLog> {
        self.tools.clone()
    }
    pub fn set_call(&self, model: &str, body_sha256: [u8; 32]) {
        let _ = self.call.set((model.to_owned(), body_sha256));
    }
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "allowed",
        500..=599 => "error",
        _ => "denied",
    }
}

/// The audit layer's middleware function: outside authn, so denied calls are recorded too.
pub async fn record<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let Some(endpoint) = Endpoint::from_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let slot = Arc::new(AuditSlot::default());
    req.extensions_mut().insert(slot.clone());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.as_str().to_owned());
    let client = req
        .extensions()
        .get::<crate::refusals::ClientAddr>()
        .map(|c| c.0);
    let response = next.run(req).await;
    if slot.principal.get().is_none() {
        // Refused before anyone was identified: counted, recorded per source and window.
        if let Some(kind) = response.extensions().get::<ProblemKind>() {
            state.refusals.note(client, kind.slug());
            return response;
        }
    }
    // Back-pressure: wait for room for this call's event before answering.
    let Some(permit) = state.audit.0.reserve().await else {
        tracing::error!("the audit writer has stopped; the call is answered without evidence");
        return response;
    };
    let status = response.status().as_u16();
    let principal = slot.principal.get().cloned();
    // A person's identity (a token's subject) and an end user's id reach the ledger sealed
    // under their subject's key, so an erasure can shred them.
    let sealer = state.audit.sealer();
    let mut sealed_actor = None;
    if let Some(p) = principal.as_ref().filter(|p| p.method == AuthMethod::Jwt) {
        sealed_actor = Some(match sealer.seal_as(&p.id, &[&p.id, &p.uid]).await {
            Ok(mut v) if v.len() == 2 => {
                let uid = v.pop().unwrap_or_default();
                (v.pop().unwrap_or_default(), uid)
            }
            Ok(_) | Err(_) => ("redacted".to_owned(), "redacted".to_owned()),
        });
    }
    let end_user = match slot.end_user.get() {
        Some(u) => Some(match sealer.seal_as(u, &[u]).await {
            Ok(mut v) => v.pop().unwrap_or_else(|| "redacted".into()),
            Err(_) => "redacted".into(),
        }),
        None => None,
    };
    let event = ModelInvoke {
        schema: 1,
        time: custos_core::time::format_rfc3339(custos_core::time::now_ms()),
        activity: "model.invoke",
        actor: principal.map(|p| Actor(p, sealed_actor)),
        resources: [ModelResource {
            kind: "model",
            id: slot.call.get().map(|(m, _)| m.clone()),
            endpoint: endpoint.upstream_path(),
            digest: slot.model_digest.get().cloned(),
            release: slot.release.get().cloned(),
            end_user,
        }],
        outcome: outcome(status),
        reason: response.extensions().get::<ProblemKind>().map(|k| k.slug()),
        policies: slot.policies.get().cloned(),
        transfer: slot.transfer.get().cloned(),
        status,
        request_id,
        request_sha256: slot.call.get().map(|(_, h)| hex::encode(h)),
        response_sha256: None,
        completed: false,
        tools: None,
        tool_log: slot.tools.clone(),
        injection: None,
        injection_log: slot.injection.clone(),
    };
    let (parts, body) = response.into_parts();
    if state.config.audit.durability == custos_core::config::Durability::Strict {
        return Response::from_parts(
            parts,
            Body::new(StrictBody {
                inner: body,
                hasher: Sha256::new(),
                pending: Some((permit, event)),
                held: None,
                committing: None,
                ended: false,
            }),
        );
    }
    let observer = EventOnEnd {
        hasher: Sha256::new(),
        pending: Some((permit, event)),
    };
    Response::from_parts(parts, Body::new(TapBody::new(body, observer)))
}

/// The response body in strict durability: frames pass as they come, but the last one (or,
/// when the end is only known afterwards, the end of the stream) is held until the call's
/// event is committed, so a client never holds a complete answer the ledger lacks.
struct StrictBody {
    inner: Body,
    hasher: Sha256,
    pending: Option<(Permit<String>, ModelInvoke)>,
    /// The last frame, held until the commit.
    held: Option<http_body::Frame<Bytes>>,
    committing: Option<tokio::sync::oneshot::Receiver<()>>,
    ended: bool,
}

impl StrictBody {
    /// Serializes the event and hands it to the writer; `wait` asks to hear of its commit.
    fn send(&mut self, completed: bool, wait: bool) {
        match finish(&mut self.pending, &mut self.hasher, completed) {
            Some((permit, line)) if wait => self.committing = Some(permit.send_durable(line)),
            Some((permit, line)) => permit.send(line),
            None => {}
        }
    }
}

impl http_body::Body for StrictBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(rx) = &mut this.committing {
                // Committed, or the writer is gone (then the error is logged there).
                std::task::ready!(std::pin::Pin::new(rx).poll(cx)).ok();
                this.committing = None;
                this.ended = true;
            }
            if this.ended {
                return Poll::Ready(this.held.take().map(Ok));
            }
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.hasher.update(data);
                    }
                    if this.inner.is_end_stream() {
                        this.held = Some(frame);
                        this.send(true, true);
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    this.send(true, true);
                    if this.committing.is_none() {
                        this.ended = true;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.send(false, false);
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for StrictBody {
    fn drop(&mut self) {
        // The client went away (or an empty body was never polled): the call still leaves
        // its event, marked incomplete unless the body had in fact ended.
        let completed = self.ended || http_body::Body::is_end_stream(&self.inner);
        self.send(completed, false);
    }
}

/// A `model.invoke` event, serialized once when the response ends: a typed record rather
/// than a `serde_json::Value` tree, since building that map (hashing every key) was most of
/// what the audit layer cost a call.
#[derive(serde::Serialize)]
struct ModelInvoke {
    schema: u32,
    time: String,
    activity: &'static str,
    actor: Option<Actor>,
    resources: [ModelResource; 1],
    outcome: &'static str,
    reason: Option<&'static str>,
    policies: Option<Vec<String>>,
    transfer: Option<Value>,
    status: u16,
    request_id: Option<String>,
    request_sha256: Option<String>,
    response_sha256: Option<String>,
    completed: bool,
    /// Tools offered, called and refused, when the call involved any.
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Value>,
    /// Where `tools` is read from when the response ends (the model's calls are judged
    /// while it streams).
    #[serde(skip)]
    tool_log: Arc<crate::tools::ToolLog>,
    /// Prompt injections screened in the request, when any scored at the threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    injection: Option<Value>,
    #[serde(skip)]
    injection_log: Arc<Mutex<Vec<Value>>>,
}

#[derive(serde::Serialize)]
struct ModelResource {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Option<String>,
    endpoint: &'static str,
    /// The registry entry's manifest digest, when a gated route served the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The release whose alias the call named.
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    /// The end user the call was made for, sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    end_user: Option<String>,
}

/// The caller, as OCSF's actor: the principal's identity, never its credentials; a person's
/// `id` and `uid` as sealed.
struct Actor(SharedPrincipal, Option<(String, String)>);

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = &self.0;
        let kind = match p.method {
            AuthMethod::Jwt => "user",
            AuthMethod::ApiKey | AuthMethod::Mtls => "service_account",
        };
        let mut m = s.serialize_map(Some(11))?;
        m.serialize_entry("type", kind)?;
        match &self.1 {
            Some((id, uid)) => {
                m.serialize_entry("id", id)?;
                m.serialize_entry("uid", uid)?;
            }
            None => {
                m.serialize_entry("id", &p.id)?;
                m.serialize_entry("uid", &p.uid)?;
            }
        }
        m.serialize_entry("tenant", &p.tenant)?;
        m.serialize_entry("team", &p.team)?;
        m.serialize_entry("app", &p.app)?;
        m.serialize_entry("env", &p.env)?;
        m.serialize_entry("auth", p.method.as_str())?;
        m.serialize_entry("issuer", &(!p.issuer.is_empty()).then_some(&p.issuer))?;
        m.serialize_entry("roles", &(!p.roles.is_empty()).then_some(&p.roles))?;
        m.serialize_entry("mfa", &p.mfa)?;
        m.end()
    }
}

/// Hashes the response as it passes and sends the event when it ends, or when it is dropped
/// early (the client disconnected), marked incomplete.
struct EventOnEnd {
    hasher: Sha256,
    pending: Option<(Permit<String>, ModelInvoke)>,
}

impl Observer for EventOnEnd {
    fn data(&mut self, chunk: &Bytes) {
        self.hasher.update(chunk);
    }

    fn end(&mut self, completed: bool) {
        if let Some((permit, line)) = finish(&mut self.pending, &mut self.hasher, completed) {
            permit.send(line);
        }
    }
}

/// Completes a call's event with the response digest and how it ended, and serializes it:
/// the permit to send it with and the line, once (`None` after the first call).
fn finish(
    pending: &mut Option<(Permit<String>, ModelInvoke)>,
    hasher: &mut Sha256,
    completed: bool,
) -> Option<(Permit<String>, String)> {
    let (permit, mut event) = pending.take()?;
    event.response_sha256 = Some(hex::encode(std::mem::take(hasher).finalize()));
    event.completed = completed;
    event.tools = event.tool_log.snapshot();
    let found = std::mem::take(
        &mut *event
            .injection_log
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    event.injection = (!found.is_empty()).then_some(Value::Array(found));
    match serde_json::to_string(&event) {
        Ok(line) => Some((permit, line)),
        // Plain strings and numbers cannot fail to serialize; should that change, the
        // failure is loud rather than a silent gap.
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an audit event");
            None
        }
    }
}

/// Why a checkpoint was not signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFailure {
    #[error(transparent)]
    Store(#[from] custos_store::StoreError),
    #[error("the ledger lacks the stored nodes needed for its root at size {0}")]
    MissingNodes(u64),
    #[error("the last checkpoint does not verify with this key: {0}")]
    PreviousUnreadable(custos_ledger::CheckpointError),
    #[error("the ledger at size {new} is not an extension of the checkpoint at size {old}: refusing to sign a history that forks")]
    Inconsistent { old: u64, new: u64 },
    #[error(
        "the latest published checkpoint ({source_name}) does not verify with this key: {error}"
    )]
    AnchorUnreadable {
        source_name: String,
        error: custos_ledger::CheckpointError,
    },
    #[error("the ledger holds {size} entries, fewer than the {anchored} of the checkpoint published at {source_name}: entries were removed; refusing to sign")]
    BehindAnchor {
        size: u64,
        anchored: u64,
        source_name: String,
    },
    #[error("the ledger at size {new} does not extend the checkpoint published at {source_name} (size {old}): its history was rewritten; refusing to sign")]
    ForksFromAnchor {
        old: u64,
        new: u64,
        source_name: String,
    },
    #[error(transparent)]
    Anchor(#[from] crate::anchor::AnchorError),
}

/// Proves that the tree of `size` entries with root `new_root` extends `old`, from stored
/// nodes.
async fn extends(
    store: &Store,
    old: &custos_ledger::Checkpoint,
    size: u64,
    new_root: &custos_ledger::Hash,
) -> Result<bool, CheckpointFailure> {
    use custos_ledger::{consistency_positions, consistency_proof, verify_consistency};
    if old.size == 0 {
        return Ok(true);
    }
    if old.size > size {
        return Ok(false);
    }
    let nodes = store
        .ledger_nodes_at(&consistency_positions(old.size, size))
        .await?;
    let Ok(proof) = consistency_proof(&nodes, old.size, size) else {
        return Ok(false);
    };
    Ok(verify_consistency(old.size, size, &old.root, new_root, &proof).is_ok())
}

/// Signs the ledger's current head when it has grown since the last checkpoint, after proving
/// it consistent with that checkpoint; reads only O(log n) nodes. Returns the new (size,
/// note), or `None` when there was nothing new to sign.
///
/// The head must also extend the latest checkpoint published to the external anchors
/// (`anchors`), which the database cannot rewrite; the new checkpoint is published there
/// once stored. A stored checkpoint that never reached the anchors is published again here.
pub async fn sign_checkpoint(
    store: &Store,
    signer: &custos_ledger::NoteSigner,
    anchors: &crate::anchor::Anchors,
) -> Result<Option<(u64, String)>, CheckpointFailure> {
    use custos_ledger::{root, Checkpoint, Frontier};
    let verifier = signer.verifier();
    let anchored = match anchors.latest_of(verifier.name()).await? {
        Some((source_name, note)) => {
            let cp = verifier
                .open(&note)
                .map_err(|error| CheckpointFailure::AnchorUnreadable {
                    source_name: source_name.clone(),
                    error,
                })?;
            Some((source_name, cp))
        }
        None => None,
    };
    let size = store.ledger_size().await?;
    if let Some((source_name, a)) = &anchored {
        if size < a.size {
            return Err(CheckpointFailure::BehindAnchor {
                size,
                anchored: a.size,
                source_name: source_name.clone(),
            });
        }
    }
    let previous = store.ledger_latest_checkpoint().await?;
    if size == 0 || previous.as_ref().is_some_and(|(s, _)| *s >= size) {
        if let Some((s, note)) = &previous {
            if anchored.as_ref().is_none_or(|(_, a)| a.size < *s) && !anchors.is_empty() {
                anchors.publish(*s, note, store).await?;
            }
        }
        return Ok(None);
    }
    let old = match &previous {
        Some((_, note)) => Some(
            verifier
                .open(note)
                .map_err(CheckpointFailure::PreviousUnreadable)?,
        ),
        None => None,
    };
    let nodes = store.ledger_nodes_at(&Frontier::positions(size)).await?;
    let new_root = root(&nodes, size).map_err(|_| CheckpointFailure::MissingNodes(size))?;
    if let Some(old) = &old {
        if !extends(store, old, size, &new_root).await? {
            return Err(CheckpointFailure::Inconsistent {
                old: old.size,
                new: size,
            });
        }
    }
    if let Some((source_name, a)) = &anchored {
        if !extends(store, a, size, &new_root).await? {
            return Err(CheckpointFailure::ForksFromAnchor {
                old: a.size,
                new: size,
                source_name: source_name.clone(),
            });
        }
    }
    let note = signer.sign(&Checkpoint {
        origin: verifier.name().to_owned(),
        size,
        root: new_root,
    });
    match store.ledger_add_checkpoint(size, &note).await {
        Ok(()) => {
            anchors.publish(size, &note, store).await?;
            Ok(Some((size, note)))
        }
        // Another process signed this size first; the same key over the same tree gives the
        // same checkpoint, so there is nothing to add.
        Err(custos_store::StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Signs a checkpoint every `interval` while the ledger grows, or as soon as `every` events
/// were added, until the task is aborted.
pub fn spawn_checkpointer(
    store: Store,
    signer: custos_ledger::NoteSigner,
    anchors: crate::anchor::Anchors,
    interval: std::time::Duration,
    every: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let poll = interval.min(std::time::Duration::from_secs(1));
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_signed = std::time::Instant::now();
        loop {
            tick.tick().await;
            let (size, signed) = match (
                store.ledger_size().await,
                store.ledger_latest_checkpoint().await,
            ) {
                (Ok(size), Ok(last)) => (size, last.map_or(0, |(s, _)| s)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the ledger head");
                    continue;
                }
            };
            let due = size > signed
                && (size - signed >= every.max(1) || last_signed.elapsed() >= interval);
            if !due {
                continue;
            }
            match sign_checkpoint(&store, &signer, &anchors).await {
                Ok(Some((size, _))) => {
                    last_signed = std::time::Instant::now();
                    tracing::info!(size, "signed a ledger checkpoint");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not sign a ledger checkpoint"),
            }
        }
    })
}
