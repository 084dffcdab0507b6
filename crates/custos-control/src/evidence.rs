//! Facts the control plane records without changing custos' objects: the configuration a
//! process loaded (with a structural diff against the last one), an access review and its
//! findings, and observations the CLI makes (a cost gate overridden, an anomaly seen).

use crate::event::{digest, observed};
use crate::{Actor, Control, ControlError, Recorded};
use custos_core::config::Config;
use custos_core::Reason;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Where the last loaded configuration's digest is kept between loads.
const LAST_CONFIG: &str = "config.loaded";

/// A configuration by structure: the file's digest and, per section (models, providers, pii,
/// policies, settings), each item's digest by name, so two loads compare item by item.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigDigest {
    /// `sha256:HEX` of the file's bytes, or `embedded` for the built-in default.
    pub file: String,
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Datetime(d) => json!(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

impl ConfigDigest {
    /// The digest of `config`, loaded from `text` (None: the embedded default), with the
    /// policies in force as (id, text).
    pub fn new(config: &Config, text: Option<&str>, policies: &[(String, String)]) -> Self {
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let file = match text {
            Some(t) => format!("sha256:{}", hex::encode(Sha256::digest(t.as_bytes()))),
            None => "embedded".into(),
        };
        // Everything the file says, section by section; models and providers come from the
        // effective configuration below (the embedded default has them without a file).
        if let Some(table) = text.and_then(|t| t.parse::<toml::Table>().ok()) {
            for (name, value) in &table {
                match name.as_str() {
                    "models" | "providers" => {}
                    "pii" => {
                        if let toml::Value::Table(pii) = value {
                            let s = sections.entry("pii".into()).or_default();
                            for (k, v) in pii {
                                s.insert(k.clone(), digest(&to_json(v)));
                            }
                        }
                    }
                    _ => {
                        sections
                            .entry("settings".into())
                            .or_default()
                            .insert(name.clone(), digest(&to_json(value)));
                    }
                }
            }
        }
        let models = sections.entry("models".into()).or_default();
        for m in &config.models {
            let provider: &String = m.provider.get_ref();
            models.insert(
                m.name.clone(),
                digest(&json!({"provider": provider, "upstream": m.upstream_model()})),
            );
        }
        let providers = sections.entry("providers".into()).or_default();
        for p in &config.providers {
            providers.insert(
                p.name.clone(),
                digest(&json!({"kind": format!("{:?}", p.kind).to_lowercase(),
                               "base_url": p.base_url, "region": p.region,
                               "api_key_env": p.api_key_env,
                               "api_key_file": p.api_key_file.as_ref().map(|f| f.display().to_string())})),
            );
        }
        let pol = sections.entry("policies".into()).or_default();
        for (id, text) in policies {
            pol.insert(id.clone(), digest(&json!(text)));
        }
        ConfigDigest { file, sections }
    }

    /// What changed from `before`: per section, the names added, removed and changed.
    pub fn diff(&self, before: &ConfigDigest) -> Value {
        let mut out = serde_json::Map::new();
        let empty = BTreeMap::new();
        let names: std::collections::BTreeSet<&String> =
            self.sections.keys().chain(before.sections.keys()).collect();
        for section in names {
            let now = self.sections.get(section).unwrap_or(&empty);
            let was = before.sections.get(section).unwrap_or(&empty);
            let added: Vec<&String> = now.keys().filter(|k| !was.contains_key(*k)).collect();
            let removed: Vec<&String> = was.keys().filter(|k| !now.contains_key(*k)).collect();
            let changed: Vec<&String> = now
                .iter()
                .filter(|(k, v)| was.get(*k).is_some_and(|w| w != *v))
                .map(|(k, _)| k)
                .collect();
            if added.is_empty() && removed.is_empty() && changed.is_empty() {
                continue;
            }
            let mut s = serde_json::Map::new();
            for (label, list) in [("added", added), ("removed", removed), ("changed", changed)] {
                if !list.is_empty() {
                    s.insert(label.into(), json!(list));
                }
            }
            out.insert(section.clone(), Value::Object(s));
        }
        Value::Object(out)
    }
}

/// What a `config.loaded` event recorded.
#[derive(Clone, Debug)]
pub struct ConfigLoaded {
    /// The file digest of the previous load, if any.
    pub previous: Option<String>,
    /// Per section: names added, removed, changed (empty: nothing changed).
    pub diff: Value,
}

impl Control {
    /// Records that this process loaded `config` (`cause`: `start` or `reload`), with its
    /// diff against the last configuration any process recorded; both in one transaction.
    /// The actor is the process itself, so no policy is asked.
    pub async fn config_loaded(
        &self,
        actor: &Actor,
        origin: &str,
        config: &ConfigDigest,
        cause: &str,
    ) -> Result<Recorded<ConfigLoaded>, ControlError> {
        let mut c = self.store.begin_change().await?;
        let before: Option<ConfigDigest> = c
            .state_get(LAST_CONFIG)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok());
        let diff = match &before {
            Some(b) => config.diff(b),
            None => config.diff(&ConfigDigest::default()),
        };
        let text = serde_json::to_string(config)
            .map_err(|e| ControlError::invalid(format!("config digest: {e}")))?;
        c.state_put(LAST_CONFIG, &text).await?;
        let resource = json!({"type": "config", "path": origin, "digest": config.file,
                              "cause": cause, "previous": before.as_ref().map(|b| &b.file),
                              "diff": diff});
        let e = observed(actor, "config.loaded", resource, None, &Reason::default());
        self.commit(
            c,
            vec![e],
            ConfigLoaded {
                previous: before.map(|b| b.file),
                diff,
            },
        )
        .await
    }

    /// Records an access review of `tenant`: how many principals were reviewed and flagged,
    /// and the digest of the findings, so a quarterly review is evidence too.
    pub async fn record_access_review(
        &self,
        actor: &Actor,
        tenant: &str,
        findings: &Value,
        principals: usize,
        flagged: usize,
        reason: &Reason,
    ) -> Result<Recorded<String>, ControlError> {
        let d = self
            .authorize(actor, "access.review", tenant, reason)
            .await?;
        let findings_digest = digest(findings);
        let resource = json!({"type": "access_review", "tenant": tenant,
                              "principals": principals, "flagged": flagged,
                              "findings": findings_digest});
        let e = observed(
            actor,
            "access.review",
            resource,
            Some(("access.review", &d)),
            reason,
        );
        let c = self.store.begin_change().await?;
        self.commit(c, vec![e], findings_digest).await
    }

    /// Records something the CLI observed and acted on (`cost.override`, `cost.anomaly`,
    /// `billing.ingest`), with the actor and reason. No policy is asked: the event is the
    /// actor's own account of what it did.
    pub async fn record_observation(
        &self,
        actor: &Actor,
        activity: &str,
        resource: Value,
        reason: &Reason,
    ) -> Result<Recorded<()>, ControlError> {
        let e = observed(actor, activity, resource, None, reason);
        let c = self.store.begin_change().await?;
        self.commit(c, vec![e], ()).await
    }
}
