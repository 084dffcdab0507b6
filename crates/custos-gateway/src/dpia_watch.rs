//! dpia_watch: the gateway's DPIA triggers. The guard reports each type of personal data it
//! redacts from prompts bound for a provider; authorization reports a call a policy lets out
//! of its tenant's pinned regions (a cross-border transfer). The first sight of each, per
//! tenant, is recorded once as `dpia.required` by a background task, never on the call's path.

use crate::state::AppState;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Sightings remembered per process; beyond this, new ones are still recorded (the store
/// keeps each trigger once) but no longer remembered.
const REMEMBERED: usize = 100_000;
/// Sightings waiting for the recorder; more are dropped and seen again on a later call.
const QUEUE: usize = 1024;

#[derive(Debug)]
pub struct Sighting {
    pub kind: &'static str,
    pub key: String,
    pub tenant: String,
    pub subject: String,
    pub details: Value,
}

#[derive(Debug)]
pub struct DpiaWatch {
    seen: Mutex<HashSet<String>>,
    tx: mpsc::Sender<Sighting>,
}

impl DpiaWatch {
    /// The watch and the receiving end for `spawn_recorder`.
    pub fn new(known: impl IntoIterator<Item = String>) -> (Self, mpsc::Receiver<Sighting>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Self {
                seen: Mutex::new(known.into_iter().collect()),
                tx,
            },
            rx,
        )
    }

    /// Sends the sighting `make` describes, unless `key` was seen; one lock either way.
    fn see(&self, key: String, make: impl FnOnce(String) -> Sighting) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.contains(&key) {
            return;
        }
        if self.tx.try_send(make(key.clone())).is_ok() && seen.len() < REMEMBERED {
            seen.insert(key);
        }
    }

    /// The guard redacted `entity` from a prompt of `tenant` bound for `provider`.
    pub fn pii_entity(&self, tenant: &str, provider: &str, region: &str, entity: &str) {
        self.see(format!("pii-entity:{tenant}:{provider}:{entity}"), |key| {
            let at = if region.is_empty() {
                provider.to_owned()
            } else {
                format!("{provider} ({region})")
            };
            Sighting {
                kind: "pii-entity",
                key,
                tenant: tenant.into(),
                subject: format!("{entity} in {tenant}'s prompts to {at}"),
                details: json!({"entity": entity, "provider": provider,
                                "region": (!region.is_empty()).then_some(region),
                                "seen_by": "the PII guard (redacted before the provider)"}),
            }
        });
    }

    /// A call of `tenant`, pinned to `pinned`, served in `region` because a policy allowed it.
    pub fn transfer(&self, tenant: &str, pinned: &[String], region: &str) {
        self.see(format!("cross-border:{tenant}:{region}"), |key| Sighting {
            kind: "cross-border",
            key,
            tenant: tenant.into(),
            subject: format!(
                "{tenant}'s calls served in {region} (pinned to {})",
                pinned.join(", ")
            ),
            details: json!({"pinned": pinned, "to": region}),
        });
    }

    /// Forgets a key whose recording failed, so a later sighting tries again.
    fn forget(&self, key: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.remove(key);
        }
    }
}

/// Records each sighting through the control plane, as the gateway.
pub fn spawn_recorder(
    state: AppState,
    mut rx: mpsc::Receiver<Sighting>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let actor = custos_control::Actor::system("custos-gateway");
        while let Some(s) = rx.recv().await {
            let key = s.key.clone();
            match state
                .control
                .record_dpia_sighting(&actor, s.kind, &s.tenant, &s.key, &s.subject, s.details)
                .await
            {
                Ok(Some(d)) => tracing::info!(dpia = %d, kind = s.kind, "a DPIA is required"),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, kind = s.kind, "recording a DPIA trigger failed; a later call retries");
                    state.dpia.forget(&key);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_sighting_is_sent_once() {
        let (w, mut rx) = DpiaWatch::new(["pii-entity:acme:openai:PERSON".to_owned()]);
        w.pii_entity("acme", "openai", "us-east", "EMAIL_ADDRESS");
        w.pii_entity("acme", "openai", "us-east", "EMAIL_ADDRESS");
        w.pii_entity("acme", "openai", "us-east", "PERSON");
        w.transfer("acme", &["eu-west".to_owned()], "us-east");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.key, "pii-entity:acme:openai:EMAIL_ADDRESS");
        assert!(first.subject.contains("openai (us-east)"));
        assert_eq!(rx.recv().await.unwrap().kind, "cross-border");
        assert!(rx.try_recv().is_err());
        w.forget("pii-entity:acme:openai:EMAIL_ADDRESS");
        w.pii_entity("acme", "openai", "us-east", "EMAIL_ADDRESS");
        assert!(rx.try_recv().is_ok());
    }
}
