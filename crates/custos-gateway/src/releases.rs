//! releases: the alias table of active composite releases. A call naming an app's alias
//! (`support-bot`) is served by the release's model route with the release's system prompt
//! first in its messages, and its `model.invoke` event names the release. The table is
//! rebuilt from the store on the key refresh interval, so a promotion reaches every replica
//! within it.

use crate::route::RouteTable;
use crate::state::AppState;
use arc_swap::ArcSwap;
use custos_store::Store;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What an alias resolves to.
#[derive(Debug)]
pub struct Alias {
    pub release: String,
    /// The gateway route that serves the release's model.
    pub route_model: String,
    pub system_prompt: Option<String>,
}

impl Alias {
    /// Rewrites a call to the alias into a call to the release's model with its prompt.
    pub fn apply(
        &self,
        endpoint: crate::call::Endpoint,
        mut body: Map<String, Value>,
    ) -> Map<String, Value> {
        body.insert("model".into(), json!(self.route_model));
        match (endpoint, &self.system_prompt) {
            (crate::call::Endpoint::ChatCompletions, Some(p)) => {
                if let Some(Value::Array(messages)) = body.get_mut("messages") {
                    messages.insert(0, json!({"role": "system", "content": p}));
                }
            }
            // Responses put the system prompt in `instructions`: the release's comes first.
            (crate::call::Endpoint::Responses, Some(p)) => {
                let text = match body.get("instructions").and_then(Value::as_str) {
                    Some(own) if !own.is_empty() => format!("{p}\n\n{own}"),
                    _ => p.clone(),
                };
                body.insert("instructions".into(), Value::String(text));
            }
            _ => {}
        }
        body
    }
}

/// Aliases by (tenant, alias).
#[derive(Debug, Default)]
pub struct Aliases(ArcSwap<HashMap<(String, String), Arc<Alias>>>);

impl Aliases {
    pub fn get(&self, tenant: &str, alias: &str) -> Option<Arc<Alias>> {
        let map = self.0.load();
        if map.is_empty() {
            return None;
        }
        map.get(&(tenant.to_owned(), alias.to_owned())).cloned()
    }

    /// Rebuilds the table from the store's active releases.
    pub async fn refresh(
        &self,
        store: &Store,
        routes: &RouteTable,
    ) -> Result<usize, custos_store::StoreError> {
        let mut map = HashMap::new();
        for r in store.releases_active().await? {
            let composite: custos_govern::release::tier::Composite = match serde_json::from_str(
                &r.composite,
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(release = %r.id, error = %e, "an active release's components cannot be read");
                    continue;
                }
            };
            let Some(model) = &composite.model else {
                continue;
            };
            let reference = format!("{}@{}", model.name, model.version);
            let route = routes
                .iter()
                .find(|x| {
                    x.registry
                        .as_ref()
                        .is_some_and(|g| g.reference == reference)
                })
                .or_else(|| routes.get(&model.name));
            let Some(route) = route else {
                tracing::warn!(release = %r.id, model = %reference, "no route serves the active release's model; its alias is not served");
                continue;
            };
            let system_prompt = match &composite.prompt {
                Some(p) => Some(store.prompt(&p.name, &p.version).await?.body),
                None => None,
            };
            let alias = r.app.rsplit('/').next().unwrap_or(&r.app).to_owned();
            map.insert(
                (r.tenant.clone(), alias),
                Arc::new(Alias {
                    release: r.id.clone(),
                    route_model: route.model.clone(),
                    system_prompt,
                }),
            );
        }
        let n = map.len();
        self.0.store(Arc::new(map));
        Ok(n)
    }

    pub fn spawn_refresher(
        state: AppState,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = state.aliases.refresh(&state.store, &state.routes).await {
                    tracing::warn!(error = %e, "refreshing release aliases failed; keeping the last table");
                }
            }
        })
    }
}

/// How often the gateway looks for emergency releases whose follow-up fell due.
const OVERDUE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Records each emergency release whose ADR or audit bundle is overdue, and each erasure
/// request past its SLA (once, through the control plane, which every replica shares); the
/// event relay sends their events to the webhooks.
pub fn spawn_overdue_watch(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(OVERDUE_EVERY);
        let actor = custos_control::Actor::system("custos-gateway");
        loop {
            tick.tick().await;
            match state.control.flag_overdue_emergencies(&actor).await {
                Ok(found) => {
                    for r in found {
                        tracing::warn!(release = %r["name"], "an emergency release's follow-up is overdue");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "checking emergency follow-ups failed; the next tick retries")
                }
            }
            match state.control.flag_overdue_erasures(&actor).await {
                Ok(found) => {
                    for r in found {
                        tracing::warn!(request = %r["request"], "an erasure request is past its SLA");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "checking erasure SLAs failed; the next tick retries")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Endpoint;

    #[test]
    fn an_alias_call_gets_the_release_model_and_its_system_prompt_first() {
        let a = Alias {
            release: "rel_1".into(),
            route_model: "tiny".into(),
            system_prompt: Some("Be brief.".into()),
        };
        let body: Map<String, Value> = serde_json::from_value(json!({
            "model": "support", "messages": [{"role": "system", "content": "client's own"}, {"role": "user", "content": "hi"}]
        }))
        .unwrap();
        let out = a.apply(Endpoint::ChatCompletions, body.clone());
        assert_eq!(out["model"], "tiny");
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(out["messages"][1]["content"], "client's own");
        assert_eq!(out["messages"].as_array().unwrap().len(), 3);
        let emb = a.apply(Endpoint::Embeddings, body);
        assert_eq!(emb["messages"].as_array().unwrap().len(), 2);
        let r: Map<String, Value> = serde_json::from_value(
            json!({"model": "support", "input": "hi", "instructions": "Use French."}),
        )
        .unwrap();
        let out = a.apply(Endpoint::Responses, r);
        assert_eq!(out["instructions"], "Be brief.\n\nUse French.");
        let r: Map<String, Value> =
            serde_json::from_value(json!({"model": "support", "input": "hi"})).unwrap();
        assert_eq!(a.apply(Endpoint::Responses, r)["instructions"], "Be brief.");
    }
}
