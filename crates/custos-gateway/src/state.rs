//! What every layer shares: configuration, the store, the key index, routes, quota and
//! idempotency state, and metrics. Built once at start; the hot path only reads it.

use crate::audit::AuditSink;
use crate::authn::KeyCache;
use crate::idempotency::IdempotencyStore;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::route::RouteTable;
use custos_core::Config;
use custos_store::Store;
use std::sync::Arc;

#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub keys: Arc<KeyCache>,
    /// Trusted JWT issuers (`[[auth.jwt]]`) and their key sets.
    pub issuers: Arc<crate::oidc::Issuers>,
    /// Tenant and team names → ids, for token principals.
    pub directory: Arc<crate::directory::Directory>,
    /// The Cedar policies in force.
    pub authz: Arc<crate::authz::Authz>,
    /// Every change the admin API makes goes through it (authorize → change + ledger event).
    pub control: custos_control::Control,
    /// Starts the traces of sampled calls, when `[telemetry] otlp_endpoint` is set.
    pub tracer: Option<Arc<crate::otel::Tracer>>,
    pub routes: RouteTable,
    /// The keys `[[registry.trust]]` lets sign models, for the deploy gate.
    pub trust: Vec<custos_govern::models::trust::TrustedKey>,
    /// Active releases' aliases (`support-bot` → a model route and a system prompt).
    pub aliases: Arc<crate::releases::Aliases>,
    pub quota: Arc<Quotas>,
    /// The Redis replicas share (`[cluster]`), when configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    pub idempotency: Arc<IdempotencyStore>,
    pub metrics: Metrics,
    /// Refusals before a principal is known, counted per window (`refusals`).
    pub refusals: Arc<crate::refusals::Refusals>,
    pub audit: AuditSink,
    /// Prices, budgets and the usage writer.
    pub finops: Arc<crate::finops::Finops>,
    /// PII analyzer built from `[pii]`; shared by the REST endpoints and the guard.
    pub pii: Arc<custos_pii::Analyzer>,
    /// Prompt-injection detectors (`[injection]`): the built-ins, and any added beside them.
    pub injection: Arc<Vec<Box<dyn custos_pii::injection::Detector>>>,
    /// Key for the encrypt/decrypt operators and vaults (CUSTOS_PII_KEY), if set.
    pub pii_key: Option<custos_pii::Key>,
    /// Salt of the hash operator (CUSTOS_PII_HASH_SALT).
    pub pii_salt: Vec<u8>,
    /// DPIA triggers the guard and authorization see (new PII types, transfers).
    pub dpia: crate::dpia_watch::DpiaWatch,
    /// The web console's sessions and sign-in; `None` when `[console] enabled = false`.
    pub console: Option<Arc<crate::console::Console>>,
}

pub type AppState = Arc<Shared>;

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("keys", &self.len())
            .finish()
    }
}
