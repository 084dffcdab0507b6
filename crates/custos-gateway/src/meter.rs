//! meter: every model call that reaches its provider, streamed or not, becomes one usage
//! record when its response ends: who (tenant, team, app, env, key), what (provider, model,
//! region), each token class from the provider's usage object, latency, exact cost at the
//! price in force, and the caller's cost tags (`X-Custos-Tags: Project=atlas,Env=prod`). The
//! record goes through the batched writer; settling the call's budget holds happens here
//! too, so budgets see the true cost as soon as the call ends.

use crate::body_tap::{Observer, TapBody};
use crate::call::ModelCall;
use crate::finops::Finops;
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use custos_core::principal::SharedPrincipal;
use custos_core::RequestId;
use custos_finops::budget::{Hold, Tracker};
use custos_finops::{Amount, Currency, Usage, UsageRecord};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The header callers put their cost tags in.
pub const X_CUSTOS_TAGS: &str = "x-custos-tags";
const MAX_TAGS: usize = 32;

/// What the inner layers tell the meter about one call.
#[derive(Debug)]
pub struct MeterSlot {
    /// Set by the proxy when the call is sent to the provider.
    reached: AtomicBool,
    usage: OnceLock<Usage>,
    holds: Mutex<Vec<(Arc<Tracker>, Hold)>>,
    /// The call's holds on the shared budgets, when Redis decided them.
    shared_hold: Mutex<Option<crate::budget::SharedHold>>,
    pub tags: BTreeMap<String, String>,
}

impl MeterSlot {
    pub fn mark_reached(&self) {
        self.reached.store(true, Ordering::Release);
    }

    pub fn set_usage(&self, u: Usage) {
        let _ = self.usage.set(u);
    }

    pub fn add_hold(&self, t: Arc<Tracker>, h: Hold) {
        self.holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((t, h));
    }

    fn take_holds(&self) -> Vec<(Arc<Tracker>, Hold)> {
        std::mem::take(&mut *self.holds.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_shared_hold(&self, h: crate::budget::SharedHold) {
        *self.shared_hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    fn take_shared_hold(&self) -> Option<crate::budget::SharedHold> {
        self.shared_hold
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Drop for MeterSlot {
    /// A call refused or abandoned before it was metered gives its holds back.
    fn drop(&mut self) {
        let now = custos_core::time::now_ms();
        for (t, h) in self.take_holds() {
            t.settle(Some(h), now, Amount::ZERO);
        }
        if let Some(h) = self.take_shared_hold() {
            h.settle(Amount::ZERO);
        }
    }
}

/// Parses `Key=Value` pairs separated by commas; keys are checked like report dimensions.
pub fn parse_tags(header: &str) -> Result<BTreeMap<String, String>, String> {
    let mut tags = BTreeMap::new();
    for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        custos_store::check_tag_key(k)?;
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(format!(
                "the value of tag {k} is longer than 256 characters or holds control characters"
            ));
        }
        if tags.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("tag {k} is given twice"));
        }
        if tags.len() > MAX_TAGS {
            return Err(format!("more than {MAX_TAGS} tags"));
        }
    }
    Ok(tags)
}

/// The meter layer's middleware function: inside idempotency (a replay costs nothing),
/// outside the budget layer (whose holds it settles).
pub async fn record<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let ext = req.extensions();
    let (Some(call), Some(principal)) = (
        ext.get::<Arc<ModelCall>>().cloned(),
        ext.get::<SharedPrincipal>().cloned(),
    ) else {
        return next.run(req).await;
    };
    let request_id = ext.get::<RequestId>().map(|r| r.as_str().to_owned());
    let tags = match req.headers().get(X_CUSTOS_TAGS) {
        None => BTreeMap::new(),
        Some(v) => match v.to_str().map_err(|_| "it is not ASCII".to_owned()).and_then(parse_tags) {
            Ok(t) => t,
            Err(e) => {
                return Problem::new(
                    ProblemKind::InvalidRequest,
                    format!("the {X_CUSTOS_TAGS} header is not valid: {e}; send KEY=VALUE pairs separated by commas"),
                )
                .into_response()
            }
        },
    };
    let slot = Arc::new(MeterSlot {
        reached: AtomicBool::new(false),
        usage: OnceLock::new(),
        holds: Mutex::new(Vec::new()),
        shared_hold: Mutex::new(None),
        tags,
    });
    req.extensions_mut().insert(slot.clone());
    let started = Instant::now();
    let response = next.run(req).await;
    if !slot.reached.load(Ordering::Acquire) {
        return response;
    }
    let Some(permit) = state.finops.usage.reserve().await else {
        tracing::error!("the usage writer has stopped; the call is answered unmetered");
        return response;
    };
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let observer = MeterOnEnd {
        pending: Some((permit, slot)),
        finops: state.finops.clone(),
        state: state.clone(),
        call,
        principal,
        request_id,
        status,
        started,
    };
    Response::from_parts(parts, Body::new(TapBody::new(body, observer)))
}

struct MeterOnEnd {
    pending: Option<(crate::batch::Permit<UsageRecord>, Arc<MeterSlot>)>,
    finops: Arc<Finops>,
    /// For the spend metrics.
    state: AppState,
    call: Arc<ModelCall>,
    principal: SharedPrincipal,
    request_id: Option<String>,
    status: u16,
    started: Instant,
}

impl Observer for MeterOnEnd {
    fn data(&mut self, _chunk: &Bytes) {}

    fn end(&mut self, completed: bool) {
        let Some((permit, slot)) = self.pending.take() else {
            return;
        };
        let now = custos_core::time::now_ms();
        let route = &self.call.route;
        let provider = route.provider.name();
        let price = self
            .finops
            .price(provider, &route.upstream_model, &route.model, now);
        let success = (200..300).contains(&self.status);
        // A stream cut short never reports usage, yet the provider bills what it read:
        // custos' own prompt count stands in, and the record says so.
        let (usage, detail) = match slot.usage.get() {
            Some(u) => (*u, None),
            None if success => (
                Usage {
                    input_tokens: u64::from(self.call.prompt_tokens),
                    calls: 1,
                    ..Usage::default()
                },
                Some(if completed {
                    "the provider reported no usage; prompt tokens counted by custos"
                } else {
                    "the client disconnected before usage was reported; prompt tokens counted by custos"
                }),
            ),
            None => (
                Usage {
                    calls: 1,
                    ..Usage::default()
                },
                None,
            ),
        };
        let cost = price
            .as_ref()
            .and_then(|p| p.rates.cost(&usage))
            .unwrap_or(Amount::ZERO);
        for (tracker, hold) in slot.take_holds() {
            let fired = tracker.settle(Some(hold), now, cost);
            self.finops.crossed(&tracker, now, fired);
        }
        if let Some(h) = slot.take_shared_hold() {
            h.settle(cost);
        }
        let p = &self.principal;
        let currency = price.as_ref().map_or(Currency::USD, |p| p.currency);
        self.state.metrics.spend(
            &p.tenant,
            &p.app,
            &route.model,
            &usage,
            currency,
            cost.nanos(),
        );
        let record = UsageRecord {
            // Client request ids need not be unique; the record's own id is.
            id: custos_core::id::new_id("use"),
            at_ms: now,
            source: "gateway".into(),
            tenant: p.tenant.clone(),
            team: p.team.clone(),
            app: p.app.clone(),
            env: p.env.clone(),
            key_id: p.id.clone(),
            provider: provider.to_owned(),
            model: route.model.clone(),
            region: self
                .finops
                .regions
                .get(provider)
                .cloned()
                .unwrap_or_default(),
            usage,
            documents: 0,
            latency_ms: self.started.elapsed().as_millis() as u64,
            cost,
            currency,
            priced: price.is_some(),
            energy_mwh: 0,
            co2e_mg: 0,
            tags: slot.tags.clone(),
            untagged: self
                .finops
                .mandatory_tags
                .iter()
                .any(|t| !slot.tags.contains_key(t)),
            request_id: self.request_id.clone(),
            status: self.status,
            detail: detail.map(|d| serde_json::json!({ "note": d }).to_string()),
            release: self.call.release.clone(),
            end_user: self.call.end_user.clone(),
        };
        permit.send(record);
    }
}

/// Most job reports in one `POST /v1/usage`.
const MAX_REPORTS: usize = 1_000;

/// `POST /v1/usage`: usage from work outside the gateway (one report or an array). Each
/// report is checked, priced and recorded durably before the answer; budgets see it at once.
pub async fn report_jobs(State(state): State<AppState>, req: Request) -> Response {
    let Some(principal) = req.extensions().get::<SharedPrincipal>().cloned() else {
        return Problem::new(
            ProblemKind::Internal,
            "usage reports reached the handler unauthenticated",
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    // The same body limit and errors as model calls (413 problem+json past the limit).
    let body = match crate::call::read_body(
        &parts.headers,
        body,
        state.config.server.max_body_bytes as usize,
    )
    .await
    {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let invalid =
        |detail: String| Problem::new(ProblemKind::InvalidRequest, detail).into_response();
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Problem::new(
                ProblemKind::MalformedJson,
                format!(
                    "invalid JSON at line {}, column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
            .into_response()
        }
    };
    let items = match value {
        serde_json::Value::Array(a) => a,
        obj @ serde_json::Value::Object(_) => vec![obj],
        _ => return invalid("send one usage report object or an array of them".into()),
    };
    if items.is_empty() || items.len() > MAX_REPORTS {
        return invalid(format!("send between 1 and {MAX_REPORTS} usage reports"));
    }
    let p = &principal;
    let who = custos_finops::job::Reporter {
        tenant: &p.tenant,
        team: &p.team,
        app: &p.app,
        env: &p.env,
        key_id: &p.id,
    };
    let cfg = &state.config.finops;
    let policy = custos_finops::job::Policy {
        mandatory_tags: cfg.mandatory_tags.clone(),
        accept_untagged: cfg.untagged == custos_core::config::UntaggedPolicy::Accept,
    };
    let catalog = state.finops.catalog.load();
    let now = custos_core::time::now_ms();
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |e: String| invalid(format!("usage report [{i}]: {e}"));
        let report: custos_finops::job::JobReport = match serde_path_to_error::deserialize(item) {
            Ok(r) => r,
            Err(e) => return at(format!("`{}`: {}", e.path(), e.inner())),
        };
        for k in report.tags.keys() {
            if let Err(e) = custos_store::check_tag_key(k) {
                return at(e);
            }
        }
        match custos_finops::job::to_record(
            &report,
            &who,
            &catalog,
            &state.finops.carbon,
            &policy,
            now,
            || custos_core::id::new_id("use"),
        ) {
            Ok(r) => records.push(r),
            Err(e) => return at(e.to_string()),
        }
    }
    for r in &records {
        let tags: Vec<(String, String)> =
            r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let at = custos_finops::Attribution {
            tenant: &r.tenant,
            team: &r.team,
            app: &r.app,
            key: &r.key_id,
            tags: &tags,
        };
        let trackers = state.finops.budgets_for(&at);
        for t in &trackers {
            let fired = t.settle(None, now, r.cost);
            state.finops.crossed(t, now, fired);
        }
        crate::budget::spend_shared(&state, &trackers, r.cost, now);
    }
    let summary: Vec<serde_json::Value> = records.iter().map(custos_finops::job::summary).collect();
    for r in records {
        if !state.finops.usage.send(r).await {
            return Problem::new(ProblemKind::Internal, "the usage writer has stopped")
                .into_response();
        }
    }
    // Acknowledged only once durable.
    state.finops.usage.flush().await;
    (
        http::StatusCode::CREATED,
        axum::Json(serde_json::json!({ "recorded": summary.len(), "records": summary })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_with_clear_errors() {
        let t = parse_tags("Project=atlas, Env=prod,,").unwrap();
        assert_eq!(t.get("Env").map(String::as_str), Some("prod"));
        assert!(parse_tags("").unwrap().is_empty());
        assert!(parse_tags("novalue").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_tags("a=1,a=2").unwrap_err().contains("twice"));
        assert!(parse_tags("bad key=1").is_err());
        assert!(parse_tags(&"k=v,".repeat(40)).is_err());
    }
}
