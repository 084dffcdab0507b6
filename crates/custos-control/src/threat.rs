//! The threat model's facts: the deployment as configured and stored (tenants and their apps,
//! identity providers, providers and regions, datasets, stores, anchors, webhooks) turned into
//! data flows, and each attack surface's controls read off the configuration and the
//! compliance checks — on, or off and why.

use crate::{Control, ControlError};
use custos_core::config::{Config, Durability};
use custos_govern::comply::Status;
use custos_govern::threat::{ControlState, Flow, Model, Node, Surface};
use custos_pii::GuardAction;
use custos_store::KeyFilter;
use std::collections::BTreeMap;

/// Apps drawn per tenant; the rest are summed into one node.
const APPS_SHOWN: usize = 8;
const DATASETS_SHOWN: usize = 8;

fn host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // Never draw credentials a URL might carry.
    host.rsplit_once('@').map_or(host, |(_, h)| h).to_owned()
}

fn on(id: &str, on: bool, detail: impl Into<String>) -> ControlState {
    ControlState {
        id: id.into(),
        on,
        detail: detail.into(),
    }
}

impl Control {
    /// The deployment's threat model. `policy_ids` are the Cedar policies in force.
    pub async fn threat_model(
        &self,
        config: &Config,
        policy_ids: &[&str],
    ) -> Result<Model, ControlError> {
        let store = &self.store;
        let mut nodes = Vec::new();
        let mut flows = Vec::new();
        let guard = &config.pii.guard;
        let tenants = store.list_tenants().await?;
        let keys = store
            .list_keys(&KeyFilter {
                include_inactive: false,
                ..KeyFilter::default()
            })
            .await?;
        let mut keys_per_app: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for k in &keys {
            *keys_per_app
                .entry((k.tenant.clone(), k.team.clone(), k.app.clone()))
                .or_default() += 1;
        }
        let apps = store.list_apps(None, None).await?;
        for t in &tenants {
            let boundary = if t.regions.is_empty() {
                format!("tenant {}", t.name)
            } else {
                format!("tenant {} (data in {})", t.name, t.regions.join(", "))
            };
            let mine: Vec<_> = apps.iter().filter(|a| a.tenant == t.name).collect();
            let mut drawn = Vec::new();
            for a in mine.iter().take(APPS_SHOWN) {
                let n = keys_per_app
                    .get(&(a.tenant.clone(), a.team.clone(), a.name.clone()))
                    .copied()
                    .unwrap_or(0);
                drawn.push(Node {
                    id: format!("app:{}/{}/{}", a.tenant, a.team, a.name),
                    label: format!(
                        "{}/{} ({n} key{})",
                        a.team,
                        a.name,
                        if n == 1 { "" } else { "s" }
                    ),
                    kind: "client",
                    boundary: boundary.clone(),
                });
            }
            if mine.len() > APPS_SHOWN {
                drawn.push(Node {
                    id: format!("apps:{}:more", t.name),
                    label: format!("{} more apps", mine.len() - APPS_SHOWN),
                    kind: "client",
                    boundary: boundary.clone(),
                });
            }
            if drawn.is_empty() {
                drawn.push(Node {
                    id: format!("tenant:{}:users", t.name),
                    label: format!("users of {} (tokens)", t.name),
                    kind: "client",
                    boundary: boundary.clone(),
                });
            }
            for n in &drawn {
                flows.push(Flow {
                    from: n.id.clone(),
                    to: "gateway".into(),
                    label: "prompts, documents".into(),
                    personal_data: true,
                });
            }
            nodes.extend(drawn);
        }
        for j in &config.auth.jwt {
            let id = format!("idp:{}", host(&j.issuer));
            nodes.push(Node {
                id: id.clone(),
                label: format!("OIDC {}", host(&j.issuer)),
                kind: "identity",
                boundary: "identity providers".into(),
            });
            flows.push(Flow {
                from: id,
                to: "gateway".into(),
                label: "signing keys (JWKS)".into(),
                personal_data: false,
            });
        }
        let listen = config.server.listen.to_string();
        nodes.push(Node {
            id: "gateway".into(),
            label: format!(
                "gateway {listen}{}",
                if config.server.tls.is_some() {
                    " (TLS)"
                } else {
                    ""
                }
            ),
            kind: "gateway",
            boundary: "custos deployment".into(),
        });
        let db = config.database_url(None);
        let backend = if db.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        nodes.push(Node {
            id: "database".into(),
            label: format!("{backend}: keys, usage, ledger"),
            kind: "store",
            boundary: "custos deployment".into(),
        });
        flows.push(Flow {
            from: "gateway".into(),
            to: "database".into(),
            label: "usage, audit events (identifiers sealed)".into(),
            personal_data: false,
        });
        if let Some(dir) = &config.audit.anchor_dir {
            nodes.push(Node {
                id: "anchors".into(),
                label: format!("anchor folder {}", dir.display()),
                kind: "store",
                boundary: "outside the database".into(),
            });
            flows.push(Flow {
                from: "gateway".into(),
                to: "anchors".into(),
                label: "signed checkpoints".into(),
                personal_data: false,
            });
        }
        for (i, w) in config.audit.witnesses.iter().enumerate() {
            let id = format!("witness:{i}");
            nodes.push(Node {
                id: id.clone(),
                label: format!("witness {}", host(&w.url)),
                kind: "witness",
                boundary: "outside the database".into(),
            });
            flows.push(Flow {
                from: "gateway".into(),
                to: id,
                label: "checkpoints to cosign".into(),
                personal_data: false,
            });
        }
        for (i, w) in config
            .audit
            .anchor_webhooks
            .iter()
            .chain(&config.finops.webhooks)
            .enumerate()
        {
            let id = format!("webhook:{i}");
            nodes.push(Node {
                id: id.clone(),
                label: format!("webhook {}", host(&w.url)),
                kind: "webhook",
                boundary: "webhook receivers".into(),
            });
            flows.push(Flow {
                from: "gateway".into(),
                to: id,
                label: "alerts, checkpoints (HMAC-signed)".into(),
                personal_data: false,
            });
        }
        for p in &config.providers {
            let region = p.region.clone().unwrap_or_else(|| "region unknown".into());
            let id = format!("provider:{}", p.name);
            let where_ = match (&p.base_url, format!("{:?}", p.kind).to_lowercase().as_str()) {
                (_, "mock") => "built-in mock".to_owned(),
                (Some(u), _) => host(u),
                (None, k) => format!("{k} default endpoint"),
            };
            nodes.push(Node {
                id: id.clone(),
                label: format!("{} ({where_})", p.name),
                kind: "provider",
                boundary: format!("provider {} ({region})", p.name),
            });
            let prompt = match guard.prompt {
                GuardAction::Allow => "prompts as sent",
                GuardAction::Redact => "prompts, PII redacted",
                GuardAction::Block => "prompts without PII (else refused)",
            };
            flows.push(Flow {
                from: "gateway".into(),
                to: id,
                label: prompt.into(),
                personal_data: guard.prompt == GuardAction::Allow,
            });
        }
        let datasets = store.datasets(None).await?;
        let with_pii = |d: &custos_store::Dataset| {
            serde_json::from_str::<custos_govern::release::DatasetFacts>(&d.facts)
                .ok()
                .and_then(|f| f.pii)
                .is_some_and(|p| p.status == "contains-pii")
        };
        if !datasets.is_empty() {
            nodes.push(Node {
                id: "pipelines".into(),
                label: "training and evaluation jobs".into(),
                kind: "client",
                boundary: "data platform".into(),
            });
        }
        for d in datasets.iter().take(DATASETS_SHOWN) {
            let id = format!("dataset:{}@{}", d.name, d.tag);
            let pii = with_pii(d);
            nodes.push(Node {
                id: id.clone(),
                label: format!("{}@{}{}", d.name, d.tag, if pii { " (PII)" } else { "" }),
                kind: "dataset",
                boundary: "data platform".into(),
            });
            flows.push(Flow {
                from: id,
                to: "pipelines".into(),
                label: "training data".into(),
                personal_data: pii,
            });
        }

        // The surfaces.
        let checks: BTreeMap<String, custos_govern::comply::CheckResult> = self
            .comply_checks(config, custos_core::time::now_ms())
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let check = |id: &str| {
            let c = &checks[id];
            on(
                &format!("check:{id}"),
                c.status != Status::Fail,
                format!("{}: {}", c.status.as_str(), c.summary),
            )
        };
        let mut prompt = vec![
            on("authn", true, format!(
                "every call authenticated: {} active API keys, {} OIDC issuers, {} mTLS principals",
                keys.len(), config.auth.jwt.len(), config.auth.mtls.len()
            )),
            on("authz:cedar", true, format!("deny by default; {} Cedar policies", policy_ids.len())),
            on("guard:pii-prompt", guard.prompt != GuardAction::Allow, format!("[pii.guard] prompt = {:?}", guard.prompt).to_lowercase()),
            on("guard:pii-response", guard.response != GuardAction::Allow, format!("[pii.guard] response = {:?}", guard.response).to_lowercase()),
            on("prompt-injection-screening", false, "custos does not screen prompts for injection: treat output as untrusted, keep tools least-privileged"),
            on("quota:rate-limits", keys.iter().any(|k| k.rpm.is_some() || k.tpm.is_some() || k.team_rpm.is_some() || k.team_tpm.is_some()),
               "per-key and per-team requests and tokens a minute"),
            on("server:max-body", true, format!("request bodies up to {} bytes", config.server.max_body_bytes)),
        ];
        for r in &guard.rules {
            if r.prompt == Some(GuardAction::Allow) && guard.prompt != GuardAction::Allow {
                prompt.push(on(
                    "guard:pii-prompt",
                    false,
                    format!(
                        "off for tenant {} app {} model {}",
                        r.tenant.as_deref().unwrap_or("*"),
                        r.app.as_deref().unwrap_or("*"),
                        r.model.as_deref().unwrap_or("*")
                    ),
                ));
            }
        }
        let mut data = vec![
            on("sealed-identifiers", true, "personal identifiers reach the ledger sealed under per-subject keys that erasure destroys"),
            check("erasure-sla"),
            check("dpia-approved"),
            on("gate:dpia", true, "a release that triggered a DPIA is promoted only once it is approved"),
            on(
                "datasets:pii-status",
                datasets.iter().all(|d| serde_json::from_str::<custos_govern::release::DatasetFacts>(&d.facts).ok().and_then(|f| f.pii).is_some()),
                format!("{} of {} registered datasets contain PII; every dataset should carry a PII report", datasets.iter().filter(|d| with_pii(d)).count(), datasets.len()),
            ),
            on("egress-allow-list", false, "custos calls the configured providers and webhooks only, but enforces no network egress policy: restrict egress at the network"),
        ];
        if config.lifecycle.class.is_empty() {
            data.push(on(
                "retention",
                false,
                "no [[lifecycle.class]]: nothing expires",
            ));
        }
        for c in &config.lifecycle.class {
            data.push(on(
                &format!("retention:{}", c.name),
                c.retention.is_some(),
                format!("prefixes {}", c.prefixes.join(", ")),
            ));
        }
        for t in &tenants {
            if t.regions.is_empty() {
                data.push(on(
                    &format!("residency:{}", t.name),
                    false,
                    format!(
                        "tenant {} pins no regions: its calls may go anywhere",
                        t.name
                    ),
                ));
                continue;
            }
            let outside: Vec<String> = config
                .providers
                .iter()
                .filter(|p| p.region.as_ref().is_none_or(|r| !t.regions.contains(r)))
                .map(|p| {
                    format!(
                        "{} ({})",
                        p.name,
                        p.region.as_deref().unwrap_or("region unknown")
                    )
                })
                .collect();
            data.push(if outside.is_empty() {
                on(&format!("residency:{}", t.name), true, format!("every provider is in {}", t.regions.join(", ")))
            } else {
                on(&format!("residency:{}", t.name), false, format!(
                    "providers outside {}'s residency ({}): {} — calls there are refused by the residency policy, or are cross-border transfers if it is changed",
                    t.name, t.regions.join(", "), outside.join(", ")
                ))
            });
        }
        let unpinned: Vec<&str> = config
            .models
            .iter()
            .filter(|m| m.registry.is_none())
            .map(|m| m.name.as_str())
            .collect();
        let model = vec![
            on(
                "gate:model-signature",
                !config.registry.trust.is_empty(),
                if config.registry.trust.is_empty() {
                    "no [[registry.trust]]: models are served unsigned".to_owned()
                } else {
                    format!("{} trusted signing key(s)", config.registry.trust.len())
                },
            ),
            on(
                "routes:registry-pinned",
                unpinned.is_empty(),
                if unpinned.is_empty() {
                    "every route serves a registered version".to_owned()
                } else {
                    format!(
                        "routes serving an unregistered model: {}",
                        unpinned.join(", ")
                    )
                },
            ),
            check("models-signed"),
            check("models-carded"),
        ];
        let rules = custos_govern::release::tier::default_rules();
        let mut kinds: std::collections::BTreeSet<String> =
            rules.values().flat_map(|r| r.evidence.clone()).collect();
        for r in config.release.tiers.values() {
            kinds.extend(r.evidence.iter().cloned());
        }
        let scans = ["vulns", "sbom"].iter().any(|k| kinds.contains(*k));
        let supply = vec![
            on(
                "gate:evidence:vulns",
                scans,
                if scans {
                    "a tier requires an SBOM or vulnerability report as release evidence".to_owned()
                } else {
                    "no tier requires an SBOM or vulnerability report (add `vulns` to [release.tiers.*] evidence)".to_owned()
                },
            ),
            check("release-vulns"),
            on(
                "gate:model-signature",
                !config.registry.trust.is_empty(),
                "models verified against trusted signers before they are served",
            ),
        ];
        let mut access = vec![
            on("policy:admin.requires-mfa", policy_ids.contains(&"admin.requires-mfa"), "admin actions need a second factor"),
            check("access-review"),
            check("key-rotation"),
            on("tls", config.server.tls.is_some(), if config.server.tls.is_some() { "the gateway serves TLS" } else { "the gateway serves plain HTTP: terminate TLS in front of it" }),
            on("ledger:anchored", config.audit.anchor_dir.is_some() || !config.audit.anchor_webhooks.is_empty() || !config.audit.witnesses.is_empty(),
               "signed checkpoints published outside the database (anchor_dir, anchor_webhooks, witnesses)"),
            on("ledger:durability", config.audit.durability == Durability::Strict, format!("{:?}: a response waits for its evidence to be durable", config.audit.durability).to_lowercase()),
        ];
        for j in &config.auth.jwt {
            let wildcard = j.tenants.iter().any(|t| t == "*");
            let bound = !wildcard && (!j.tenants.is_empty() || j.default_tenant.is_some());
            access.push(on(
                &format!("auth:oidc:{}", host(&j.issuer)),
                bound,
                if bound {
                    format!(
                        "bound to tenants {}",
                        if j.tenants.is_empty() {
                            j.default_tenant.clone().unwrap_or_default()
                        } else {
                            j.tenants.join(", ")
                        }
                    )
                } else if wildcard {
                    "trusted by every tenant (`tenants = [\"*\"]`): one of its tokens may act in any tenant".to_owned()
                } else {
                    "bound to no tenant: its tokens may name any tenant".to_owned()
                },
            ));
        }
        let budgets = store.budgets(None).await?;
        let cost = vec![
            check("team-budgets"),
            on(
                "budgets:blocking",
                budgets
                    .iter()
                    .any(|b| format!("{:?}", b.action).eq_ignore_ascii_case("block")),
                "a budget that blocks calls when spent (else alerts only)",
            ),
            on(
                "finops:max-output-tokens",
                config.finops.default_max_output_tokens > 0,
                format!(
                    "calls without max_tokens are capped at {} output tokens",
                    config.finops.default_max_output_tokens
                ),
            ),
        ];
        let surfaces = vec![
            Surface {
                name: "prompt",
                what: "model calls through the gateway",
                controls: prompt,
                risks: Vec::new(),
            },
            Surface {
                name: "data",
                what: "personal data in calls, datasets and custos' own records",
                controls: data,
                risks: Vec::new(),
            },
            Surface {
                name: "model",
                what: "the models served",
                controls: model,
                risks: Vec::new(),
            },
            Surface {
                name: "supply-chain",
                what: "dependencies, images and models from outside",
                controls: supply,
                risks: Vec::new(),
            },
            Surface {
                name: "access",
                what: "who may call and administer, and the evidence of it",
                controls: access,
                risks: Vec::new(),
            },
            Surface {
                name: "cost",
                what: "spend",
                controls: cost,
                risks: Vec::new(),
            },
        ];
        Ok(Model {
            nodes,
            flows,
            surfaces,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_never_carry_credentials() {
        assert_eq!(
            super::host("https://user:pw@api.example.com:8443/v1?x"),
            "api.example.com:8443"
        );
        assert_eq!(super::host("api.example.com/v1"), "api.example.com");
    }
}
