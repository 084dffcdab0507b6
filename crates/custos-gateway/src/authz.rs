//! authz: every authenticated request is decided by the Cedar policies before it does
//! anything. Model calls are decided after `call` has parsed which model they use; other
//! endpoints act on the caller's own tenant. A denial is a 403 naming the deciding policies;
//! the decision goes into the audit event either way.
//!
//! Policies are reloaded on SIGHUP and when a policy file changes. A new set that does not
//! parse or validate is refused with an error in the log, and the old set stays in force.

use crate::audit::AuditSlot;
use crate::call::{Endpoint, ModelCall};
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use custos_authz::policy::{
    self, Decision, Engine, PolicyError, RequestFacts, Resource, TenantFacts,
};
use custos_core::config::AuthzConfig;
use custos_core::principal::SharedPrincipal;
use custos_core::time::now_ms;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often policy files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Header in which a caller declares the classification of the data it sends.
pub const DATA_CLASS_HEADER: &str = "x-custos-data-class";

pub struct Authz {
    engine: ArcSwap<Engine>,
    files: Vec<PathBuf>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
    /// Bumped after every reload that took effect, so the configuration's change is recorded.
    reloads: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authz")
            .field("policies", &self.engine.load().policies().len())
            .field("files", &self.files)
            .finish()
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

impl Authz {
    pub fn load(config: &AuthzConfig) -> Result<Self, PolicyError> {
        let schema = policy::schema()?;
        let stamps_now = stamps(&config.policies);
        let policies = policy::configured(&config.policies, &schema)?;
        Ok(Authz {
            engine: ArcSwap::from_pointee(Engine::new(schema, policies)?),
            files: config.policies.clone(),
            stamps: Mutex::new(stamps_now),
            reloads: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Number of policies in force.
    pub fn len(&self) -> usize {
        self.engine.load().policies().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids and origins ("file:line") of the policies in force.
    pub fn policy_ids(&self) -> Vec<(String, String)> {
        let engine = self.engine.load();
        let p = engine.policies();
        p.ids()
            .into_iter()
            .map(|id| (id.to_owned(), p.origin(id).unwrap_or("").to_owned()))
            .collect()
    }

    /// Loads the files again; on any error the policies in force stay.
    pub fn reload(&self) -> Result<usize, PolicyError> {
        let schema = self.engine.load().schema().clone();
        let policies = policy::configured(&self.files, &schema)?;
        let n = policies.len();
        self.engine.store(Arc::new(Engine::new(schema, policies)?));
        self.reloads.send_modify(|n| *n += 1);
        Ok(n)
    }

    /// A receiver that changes after every reload that took effect.
    pub fn subscribe_reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Every policy in force, as (id, text).
    pub fn policy_texts(&self) -> Vec<(String, String)> {
        self.engine.load().policies().texts()
    }

    fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(n) => tracing::info!(policies = n, why, "policies reloaded"),
            Err(e) => {
                tracing::error!(error = %e, why, "new policies refused; the previous policies stay in force")
            }
        }
    }

    /// Reloads on SIGHUP and when a file's modification time changes.
    pub fn spawn_watcher(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = hangup => self.reload_and_log("SIGHUP"),
                    _ = tick.tick() => {
                        if self.files.is_empty() {
                            continue;
                        }
                        let now = stamps(&self.files);
                        let changed = {
                            let mut last = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
                            let changed = *last != now;
                            *last = now;
                            changed
                        };
                        if changed {
                            self.reload_and_log("a policy file changed");
                        }
                    }
                }
            }
        })
    }

    pub fn decide(
        &self,
        state: &AppState,
        principal: &SharedPrincipal,
        action: &str,
        resource: &Resource,
        req: &Request,
    ) -> Result<Decision, PolicyError> {
        self.decide_with_tenant(state, principal, action, resource, req)
            .map(|(d, _)| d)
    }

    /// The decision and the principal tenant's facts it was made with.
    fn decide_with_tenant(
        &self,
        state: &AppState,
        principal: &SharedPrincipal,
        action: &str,
        resource: &Resource,
        req: &Request,
    ) -> Result<(Decision, Arc<TenantFacts>), PolicyError> {
        let classification = req
            .headers()
            .get(DATA_CLASS_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.decide_facts(state, principal, action, resource, classification)
    }

    /// A decision outside the request's layer (a tool the model calls, on the way back),
    /// with the data classification the request declared.
    pub fn decide_facts(
        &self,
        state: &AppState,
        principal: &SharedPrincipal,
        action: &str,
        resource: &Resource,
        classification: &str,
    ) -> Result<(Decision, Arc<TenantFacts>), PolicyError> {
        let now = now_ms();
        let facts = RequestFacts {
            time: now.div_euclid(1000),
            classification: classification.to_owned(),
            step_up: principal.mfa,
            grants: state.directory.granted_roles(principal, now),
        };
        let tenant = state.directory.tenant_facts(&principal.tenant);
        let d = self
            .engine
            .load()
            .authorize(principal, action, resource, &tenant, &facts)?;
        Ok((d, tenant))
    }
}

/// Turns a decision into "go on" or the 403, and leaves it for the audit event.
async fn enforce<N: Next>(
    state: &AppState,
    action: &str,
    resource: Resource,
    req: Request,
    next: &N,
) -> Response {
    let Some(principal) = req.extensions().get::<SharedPrincipal>().cloned() else {
        return Problem::new(ProblemKind::Internal, "authz ran before authn").into_response();
    };
    let (decision, tenant) = match state
        .authz
        .decide_with_tenant(state, &principal, action, &resource, &req)
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "authorization could not be evaluated; denied");
            return Problem::new(
                ProblemKind::AccessDenied,
                "the request could not be evaluated against the policies, so it is denied",
            )
            .into_response();
        }
    };
    for e in &decision.errors {
        tracing::warn!(error = %e, action, "a policy failed to evaluate and was skipped");
    }
    if let Some(slot) = req.extensions().get::<Arc<AuditSlot>>() {
        slot.set_decision(&decision);
        // A pinned tenant served elsewhere, because a policy allowed it: a data transfer.
        if let Resource::Model { region, .. } = &resource {
            if decision.allowed && !tenant.regions.is_empty() && !tenant.regions.contains(region) {
                slot.set_transfer(&tenant.regions, region);
                state
                    .dpia
                    .transfer(&principal.tenant, &tenant.regions, region);
            }
        }
    }
    if decision.allowed {
        return next.run(req).await;
    }
    let what = match &resource {
        Resource::Model { name, .. } => format!("{action} on model {name:?}"),
        Resource::Tenant(_) => action.to_owned(),
        Resource::Tool(t) => format!("{action} on tool {:?}", t.name),
    };
    Problem::new(
        ProblemKind::AccessDenied,
        format!("{what} is denied: {}", decision.reason()),
    )
    .into_response()
}

/// The authz layer of model calls (after `call`, which knows the model).
pub async fn authorize_call<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    let Some(call) = req.extensions().get::<Arc<ModelCall>>().cloned() else {
        return Problem::new(ProblemKind::Internal, "authz ran before call").into_response();
    };
    let action = match call.endpoint {
        Endpoint::ChatCompletions => "chat",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Responses => "responses",
    };
    let resource = Resource::Model {
        name: call.model.clone(),
        provider: call.route.provider.name().to_owned(),
        region: call.route.region.clone(),
    };
    enforce(state, action, resource, req, next).await
}

/// The authz layer of the other authenticated endpoints: they act on the caller's tenant.
pub async fn authorize_endpoint<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    let path = req.uri().path();
    if path == "/metrics" {
        let global = Resource::Tenant(custos_control::GLOBAL.into());
        return enforce(state, "metrics.read", global, req, next).await;
    }
    let action = if path.starts_with("/v1/models") {
        "models.read"
    } else if path == "/v1/usage" {
        "usage.report"
    } else if path.starts_with("/pii/") {
        "pii.analyze"
    } else {
        return Problem::new(
            ProblemKind::AccessDenied,
            "no policy action covers this endpoint",
        )
        .into_response();
    };
    let Some(tenant) = req
        .extensions()
        .get::<SharedPrincipal>()
        .map(|p| p.tenant.clone())
    else {
        return Problem::new(ProblemKind::Internal, "authz ran before authn").into_response();
    };
    enforce(state, action, Resource::Tenant(tenant), req, next).await
}

/// The control plane asks the same reloadable policies the gateway enforces.
impl custos_control::Policies for Authz {
    fn authorize(
        &self,
        principal: &custos_core::Principal,
        action: &str,
        resource: &Resource,
        tenant: &TenantFacts,
        facts: &RequestFacts,
    ) -> Result<Decision, PolicyError> {
        self.engine
            .load()
            .authorize(principal, action, resource, tenant, facts)
    }
}
