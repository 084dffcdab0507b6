//! custos' control plane, in the manner of kanidm's `idm`: every change to custos' state is one
//! function here. It authorizes the acting principal with the Cedar policies, writes the change
//! **and** its ledger event in one database transaction (both or neither), and returns a typed
//! result. The CLI and the admin API are thin surfaces that parse, call and print.

mod access;
pub mod comply;
mod components;
mod dpia;
mod erasure;
mod error;
mod event;
mod evidence;
pub mod export;
mod finops;
mod grants;
mod identity;
mod lifecycle;
mod models;
mod release_health;
mod releases;
pub mod seal;
mod threat;

pub use access::{AccessReview, ReviewRow, ADMIN_ROLES};
pub use components::{NewDataset, NewPrompt};
pub use erasure::{data_files, sha256_file, EraseSpec, Erased};
pub use error::ControlError;
pub use event::{denial, digest, signed_in};
pub use evidence::{ConfigDigest, ConfigLoaded};
pub use finops::{BudgetDeleted, NewOverride, ReconcileParams, ReconcileReport};
pub use grants::GrantRequest;
pub use identity::{CreatedKey, KeyRequest, KeyScope, RotatedKey, TeamLimits};
pub use lifecycle::{holding, subject_hold_digest, OwnRecords, DEFAULT_ERASURE_SLA_MS};
pub use models::{NewModel, SignedCard};
pub use release_health::{BurnRate, PostCheck, PostCheckOutcome, SloBurn, SloState};
pub use releases::{Evidence as ReleaseEvidence, NewRelease, ReleaseView, DRILL};

use custos_authz::policy::{Decision, Engine, PolicyError, RequestFacts, Resource, TenantFacts};
use custos_core::config::{Config, GrantsConfig};
use custos_core::{Principal, Reason};
use custos_store::{Change, Store};
use std::ops::Range;
use std::sync::Arc;

/// The tenant a command acts on when it names none; created on first use.
pub const DEFAULT_TENANT: &str = "default";

/// The resource of catalog-wide changes (prices): a name no tenant can have (tenant names do
/// not start with '.'), so only policies that permit any resource allow them.
pub const GLOBAL: &str = ".global";

/// Whatever decides control-plane requests: the Cedar engine, or the gateway's reloadable one.
pub trait Policies: Send + Sync {
    fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        tenant: &TenantFacts,
        facts: &RequestFacts,
    ) -> Result<Decision, PolicyError>;
}

impl Policies for Engine {
    fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        tenant: &TenantFacts,
        facts: &RequestFacts,
    ) -> Result<Decision, PolicyError> {
        Engine::authorize(self, principal, action, resource, tenant, facts)
    }
}

impl Policies for arc_swap::ArcSwap<Engine> {
    fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        tenant: &TenantFacts,
        facts: &RequestFacts,
    ) -> Result<Decision, PolicyError> {
        self.load()
            .authorize(principal, action, resource, tenant, facts)
    }
}

/// How the actor proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    /// The operating-system user running the CLI on the database it was pointed at.
    Local,
    /// The holder of a verified credential (API key, token, client certificate).
    Credential,
    /// A custos process recording what it did by itself (loading its configuration).
    System,
}

/// Who acts, with the facts of the request the policies see.
#[derive(Clone, Debug)]
pub struct Actor {
    pub principal: Principal,
    pub kind: ActorKind,
    /// Facts for the policies (step-up, roles from live grants, data class); `time` is set
    /// when the request is decided.
    pub facts: RequestFacts,
    /// Facts of the principal's tenant (its pinned regions).
    pub tenant_facts: TenantFacts,
    /// Where the request came from: a client address, or `cli`.
    pub source: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The local operator `local:<login>` with the built-in `operator` role; it acts on the
    /// tenant each operation names.
    pub fn local(login: &str) -> Self {
        Actor {
            principal: Principal {
                id: format!("local:{login}"),
                uid: format!("local:{login}"),
                roles: vec!["operator".into()],
                ..Principal::default()
            },
            kind: ActorKind::Local,
            facts: RequestFacts::default(),
            tenant_facts: TenantFacts::default(),
            source: Some("cli".into()),
            request_id: None,
        }
    }

    /// A verified credential's holder.
    pub fn credential(principal: Principal, facts: RequestFacts, tenant: TenantFacts) -> Self {
        Actor {
            principal,
            kind: ActorKind::Credential,
            facts,
            tenant_facts: tenant,
            source: None,
            request_id: None,
        }
    }

    /// A custos process acting by itself, named by what it is (`custos serve`).
    pub fn system(name: &str) -> Self {
        Actor {
            principal: Principal {
                id: name.to_owned(),
                uid: name.to_owned(),
                ..Principal::default()
            },
            kind: ActorKind::System,
            facts: RequestFacts::default(),
            tenant_facts: TenantFacts::default(),
            source: None,
            request_id: None,
        }
    }

    /// How grants, overrides and approvals name this actor.
    pub fn name(&self) -> String {
        match self.kind {
            ActorKind::Local | ActorKind::System => self.principal.id.clone(),
            ActorKind::Credential => self.principal.grant_name(),
        }
    }
}

/// The settings the control plane applies beyond the policies.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Actions that must carry `why` (`[audit] require_why`).
    pub require_why: Vec<String>,
    pub grants: GrantsConfig,
    /// The time zone budgets default to.
    pub time_zone: String,
    /// `[release]`: tier overrides, freezes, SLOs, post-check thresholds.
    pub release: custos_core::config::ReleaseConfig,
    /// `[lifecycle] erasure_sla`: how long an erasure request may stay open.
    pub erasure_sla: Option<std::time::Duration>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            require_why: config.audit.require_why.clone(),
            grants: config.authz.grants.clone(),
            time_zone: config.finops.time_zone.clone(),
            release: config.release.clone(),
            erasure_sla: config.lifecycle.erasure_sla.map(|d| d.0),
        }
    }

    fn requires_why(&self, action: &str) -> bool {
        self.require_why.iter().any(|r| match r.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => r == action,
        })
    }
}

/// A change's result and the ledger entries that record it.
#[derive(Clone, Debug)]
pub struct Recorded<T> {
    pub value: T,
    /// Indexes of the change's ledger events.
    pub ledger: Range<u64>,
}

/// The control plane over one store and one set of policies. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    store: Store,
    policies: Arc<dyn Policies>,
    settings: Arc<Settings>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// What a change is about to record, besides who and why.
pub(crate) struct Evidence {
    pub activity: &'static str,
    pub resource: serde_json::Value,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl Control {
    pub fn new(store: Store, policies: Arc<dyn Policies>, settings: Settings) -> Self {
        Control {
            store,
            policies,
            settings: Arc::new(settings),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The policies' decision on `actor` doing `action` on `tenant`, without acting.
    pub fn decide(
        &self,
        actor: &Actor,
        action: &str,
        tenant: &str,
    ) -> Result<Decision, ControlError> {
        let mut principal = std::borrow::Cow::Borrowed(&actor.principal);
        if actor.kind == ActorKind::Local {
            // The local operator acts as a member of whichever tenant it names.
            principal.to_mut().tenant = tenant.to_owned();
        }
        let mut facts = actor.facts.clone();
        if facts.time == 0 {
            facts.time = custos_core::time::now_ms().div_euclid(1000);
        }
        self.policies
            .authorize(
                &principal,
                action,
                &Resource::Tenant(tenant.to_owned()),
                &actor.tenant_facts,
                &facts,
            )
            .map_err(ControlError::Policy)
    }

    /// Authorizes a change: the reason it needs, then the policies. A denial is recorded.
    pub(crate) async fn authorize(
        &self,
        actor: &Actor,
        action: &'static str,
        tenant: &str,
        reason: &Reason,
    ) -> Result<Decision, ControlError> {
        let d = self.decide(actor, action, tenant)?;
        if !d.allowed {
            let event = event::denial(actor, action, tenant, &d, reason).to_string();
            let event = seal::seal_text(&self.store, event).await?;
            self.store.ledger_append(&[event]).await?;
            return Err(ControlError::Denied {
                action: action.to_owned(),
                tenant: tenant.to_owned(),
                who: actor.name(),
                reason: d.reason(),
                local: actor.kind == ActorKind::Local && d.policies.is_empty(),
            });
        }
        if reason.why.is_none() && self.settings.requires_why(action) {
            return Err(ControlError::ReasonRequired {
                action: action.to_owned(),
            });
        }
        Ok(d)
    }

    /// Appends the events of a change and commits both.
    pub(crate) async fn commit<T>(
        &self,
        mut change: Change,
        events: Vec<String>,
        value: T,
    ) -> Result<Recorded<T>, ControlError> {
        // Personal identifiers reach the ledger only sealed under their subject's key.
        let mut sealed = Vec::with_capacity(events.len());
        for e in events {
            sealed.push(seal::seal_in(&mut change, e).await?);
        }
        let ledger = change.append_events(&sealed).await?;
        change.commit().await?;
        Ok(Recorded { value, ledger })
    }

    pub(crate) fn event(
        &self,
        actor: &Actor,
        action: &str,
        decision: &Decision,
        evidence: Evidence,
        reason: &Reason,
    ) -> String {
        event::allowed(actor, action, decision, evidence, reason)
    }
}
