//! registry: the deploy gate for routes that name a model registry entry
//! (`[[models]] registry = "NAME@VERSION"`). At start, on every policy reload and on the key
//! refresh interval, each entry is checked against the trust policy (`[[registry.trust]]`)
//! and its approval state; the verdict is cached on the route, so the hot path reads a
//! pointer. A change of verdict is logged and recorded in the ledger (`model.gate`).

use crate::state::AppState;
use arc_swap::ArcSwap;
use custos_govern::models::keys::PublicKey;
use custos_govern::models::registry::Kind;
use custos_govern::models::trust::{self, Servable, TrustedKey};
use serde_json::json;
use std::sync::Arc;

/// A route's registry entry and the gate's current verdict on it.
#[derive(Debug)]
pub struct Gate {
    /// `NAME@VERSION`.
    pub reference: String,
    name: String,
    version: String,
    verdict: ArcSwap<Option<Result<Servable, String>>>,
}

impl Gate {
    pub fn new(reference: &str) -> Self {
        let (name, version) = reference.rsplit_once('@').unwrap_or((reference, ""));
        Gate {
            reference: reference.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            verdict: ArcSwap::from_pointee(None),
        }
    }

    /// What the gate decided last (`None` before the first check): the manifest digest to
    /// record, or why it is refused.
    pub fn current(&self) -> Arc<Option<Result<Servable, String>>> {
        self.verdict.load_full()
    }
}

/// Reads the trust policy's public keys; a key that cannot be read stops the start.
pub fn trusted_keys(config: &custos_core::Config) -> Result<Vec<TrustedKey>, String> {
    config
        .registry
        .trust
        .iter()
        .map(|t| {
            let text = std::fs::read_to_string(&t.public_key).map_err(|e| {
                format!("registry.trust public_key {}: {e}", t.public_key.display())
            })?;
            let key = PublicKey::from_pem(&text).map_err(|e| {
                format!("registry.trust public_key {}: {e}", t.public_key.display())
            })?;
            Ok(TrustedKey {
                names: t.names.clone(),
                key,
                source: t.public_key.display().to_string(),
            })
        })
        .collect()
}

async fn check(state: &AppState, gate: &Gate) -> Result<Servable, String> {
    let entry = match state.store.model_version(&gate.name, &gate.version).await {
        Ok(e) => e,
        Err(custos_store::StoreError::NotFound(_)) => {
            return Err(format!("{} is not in the model registry", gate.reference))
        }
        // A database hiccup keeps the last verdict rather than flapping routes.
        Err(e) => {
            return match gate.current().as_ref() {
                Some(Ok(s)) => Ok(s.clone()),
                _ => Err(format!("cannot read the registry: {e}")),
            }
        }
    };
    let kind = if entry.kind == "remote" {
        Kind::Remote
    } else {
        Kind::Weights
    };
    trust::servable(
        &trust::Entry {
            name: &entry.name,
            version: &entry.version,
            kind,
            state: &entry.state,
            manifest_digest: entry.manifest_digest.as_deref(),
            signature: entry.signature.as_deref(),
        },
        &state.trust,
    )
}

/// Re-checks every gated route; logs and records each verdict that changed.
pub async fn refresh(state: &AppState) {
    for route in state.routes.iter() {
        let Some(gate) = &route.registry else {
            continue;
        };
        let verdict = check(state, gate).await;
        let before = gate.verdict.load_full();
        if before.as_ref().as_ref() == Some(&verdict) {
            continue;
        }
        gate.verdict.store(Arc::new(Some(verdict.clone())));
        let (outcome, reason) = match &verdict {
            Ok(s) => {
                tracing::info!(model = %route.model, registry = %gate.reference,
                    digest = s.manifest_digest.as_deref().unwrap_or("remote"), "registry entry verified: serving it");
                ("served", None)
            }
            Err(why) => {
                tracing::warn!(model = %route.model, registry = %gate.reference, reason = %why,
                    "registry entry unverified: the route answers 503 model-unverified");
                ("refused", Some(why.clone()))
            }
        };
        let resource = json!({
            "type": "model", "name": gate.reference, "route": route.model,
            "verdict": outcome, "reason": reason,
            "digest": verdict.as_ref().ok().and_then(|s| s.manifest_digest.clone()),
            "signer": verdict.as_ref().ok().and_then(|s| s.signer.clone()),
        });
        let actor = custos_control::Actor::system("custos serve");
        if let Err(e) = state
            .control
            .record_observation(
                &actor,
                "model.gate",
                resource,
                &custos_core::Reason::default(),
            )
            .await
        {
            tracing::error!(error = %e, "recording the deploy gate's verdict failed");
        }
    }
}

/// Re-checks on an interval and after each policy reload.
pub fn spawn_refresher(state: AppState, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reloads = state.authz.subscribe_reloads();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = reloads.changed() => if r.is_err() { return },
            }
            refresh(&state).await;
        }
    })
}
