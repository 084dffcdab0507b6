//! Continuous compliance: the automated checks over custos' store and ledger that framework
//! mappings name (access reviews, key age, release approvals, vulnerability reports, model
//! signatures and cards, budgets, erasure SLAs, the PII guard, DPIAs), each with the evidence
//! behind its answer; and the catalog of controls a risk register may link to.

use crate::{Control, ControlError};
use custos_core::config::Config;
use custos_core::time::{format_rfc3339, parse_rfc3339};
use custos_govern::comply::{CheckResult, Status};
use custos_store::KeyFilter;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const DAY_MS: i64 = 86_400_000;
/// Access reviews and key rotation: at least every 90 days.
pub const REVIEW_DAYS: i64 = 90;

/// A release's evidence item as stored.
#[derive(serde::Deserialize)]
struct Item {
    kind: String,
    name: String,
    sha256: String,
}

/// The evidence kinds that hold a vulnerability report (`custos vulns scan --json`).
const VULN_KINDS: &[&str] = &["vulns", "vuln-report", "vulnerabilities"];

/// Critical findings of a `custos vulns scan --json` report not suppressed by an exception.
fn critical_unexcepted(report: &Value) -> Option<Vec<String>> {
    let findings = report["findings"].as_array()?;
    Some(
        findings
            .iter()
            .filter(|f| {
                f["severity"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("critical"))
                    && f["suppressed_by"].is_null()
                    && f["informational"].is_null()
            })
            .map(|f| {
                format!(
                    "{} in {} {}",
                    f["id"].as_str().unwrap_or("?"),
                    f["package"].as_str().unwrap_or("?"),
                    f["version"].as_str().unwrap_or("?")
                )
            })
            .collect(),
    )
}

impl Control {
    /// Every store-backed check as of `as_of` (ms). The ledger's anchor and the risk register
    /// are checked by the caller, which holds the public key and the register file.
    pub async fn comply_checks(
        &self,
        config: &Config,
        as_of: i64,
    ) -> Result<Vec<CheckResult>, ControlError> {
        let store = &self.store;
        let tenants = store.list_tenants().await?;
        let mut out = Vec::new();

        // access-review: every tenant with keys reviewed in the last 90 days.
        let mut reviews: BTreeMap<String, (i64, u64)> = BTreeMap::new();
        let base = store.ledger_latest_prune().await?.map_or(0, |p| p.0);
        store
            .ledger_scan_entries(i64::try_from(base).unwrap_or(0), &mut |e| {
                if !e.event.contains("\"access.review\"") {
                    return;
                }
                let Ok(v) = serde_json::from_str::<Value>(e.event) else {
                    return;
                };
                if v["activity"] != "access.review" {
                    return;
                }
                let (Some(t), Some(at)) = (
                    v["resources"][0]["tenant"].as_str(),
                    v["time"].as_str().and_then(parse_rfc3339),
                ) else {
                    return;
                };
                if at <= as_of {
                    let slot = reviews.entry(t.to_owned()).or_insert((at, e.index as u64));
                    if at >= slot.0 {
                        *slot = (at, e.index as u64);
                    }
                }
            })
            .await?;
        let keys = store
            .list_keys(&KeyFilter {
                include_inactive: false,
                ..KeyFilter::default()
            })
            .await?;
        let with_keys: BTreeSet<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        let since = as_of - REVIEW_DAYS * DAY_MS;
        let mut evidence = Vec::new();
        let mut stale = Vec::new();
        for t in &with_keys {
            match reviews.get(*t) {
                Some((at, idx)) if *at >= since => evidence.push(
                    json!({"tenant": t, "reviewed_at": format_rfc3339(*at), "ledger_index": idx}),
                ),
                Some((at, idx)) => {
                    stale.push(format!("{t} (last {})", &format_rfc3339(*at)[..10]));
                    evidence.push(json!({"tenant": t, "reviewed_at": format_rfc3339(*at), "ledger_index": idx, "stale": true}));
                }
                None => {
                    stale.push(format!("{t} (never)"));
                    evidence.push(json!({"tenant": t, "reviewed_at": null}));
                }
            }
        }
        out.push(
            if with_keys.is_empty() {
                CheckResult::new("access-review", Status::NotCovered, "no tenant holds API keys yet")
            } else if stale.is_empty() {
                CheckResult::new(
                    "access-review",
                    Status::Pass,
                    format!("{} tenant(s) reviewed in the last {REVIEW_DAYS} days", with_keys.len()),
                )
            } else {
                CheckResult::new(
                    "access-review",
                    Status::Fail,
                    format!(
                        "no access review in the last {REVIEW_DAYS} days: {} (run `custos access review --tenant T`)",
                        stale.join(", ")
                    ),
                )
            }
            .with(evidence),
        );

        // key-rotation: no active key older than 90 days.
        let active: Vec<_> = keys
            .iter()
            .filter(|k| {
                k.revoked_at.is_none()
                    && k.expires_at.is_none_or(|e| e > as_of)
                    && k.created_at <= as_of
            })
            .collect();
        let old: Vec<_> = active.iter().filter(|k| k.created_at < since).collect();
        out.push(
            if active.is_empty() {
                CheckResult::new("key-rotation", Status::NotCovered, "no active API keys")
            } else if old.is_empty() {
                CheckResult::new(
                    "key-rotation",
                    Status::Pass,
                    format!("all {} active key(s) are younger than {REVIEW_DAYS} days", active.len()),
                )
            } else {
                CheckResult::new(
                    "key-rotation",
                    Status::Fail,
                    format!(
                        "{} active key(s) older than {REVIEW_DAYS} days: rotate them with `custos keys rotate`",
                        old.len()
                    ),
                )
            }
            .with(
                old.iter()
                    .map(|k| json!({"key": k.id, "tenant": k.tenant, "team": k.team, "app": k.app,
                                    "created_at": format_rfc3339(k.created_at)}))
                    .collect(),
            ),
        );

        // high-release-security and release-vulns, over every tenant's releases.
        let mut live_high = Vec::new();
        let mut unapproved = Vec::new();
        let mut active_releases = Vec::new();
        for t in &tenants {
            for r in store.releases(&t.name, None).await? {
                let went_live = matches!(
                    r.state.as_str(),
                    "active" | "superseded" | "rolled back" | "rolled-back"
                );
                if r.state == "active" {
                    active_releases.push(r.clone());
                }
                if went_live && (r.tier == "high" || r.tier == "emergency") && r.created_at <= as_of
                {
                    let decisions = store.release_decisions(&r.id).await?;
                    let sec = decisions
                        .iter()
                        .find(|d| d.role == "security" && d.decision == "approve");
                    match sec {
                        Some(d) => live_high.push(json!({"release": r.id, "tier": r.tier, "security": d.by_whom, "at": format_rfc3339(d.at), "ledger_index": d.ledger_index})),
                        None => {
                            unapproved.push(r.id.clone());
                            live_high.push(json!({"release": r.id, "tier": r.tier, "security": null}));
                        }
                    }
                }
            }
        }
        out.push(
            if live_high.is_empty() {
                CheckResult::new(
                    "high-release-security",
                    Status::NotCovered,
                    "no high-tier or emergency release has gone live",
                )
            } else if unapproved.is_empty() {
                CheckResult::new(
                    "high-release-security",
                    Status::Pass,
                    format!(
                        "{} high-tier/emergency release(s), each approved by security",
                        live_high.len()
                    ),
                )
            } else {
                CheckResult::new(
                    "high-release-security",
                    Status::Fail,
                    format!(
                        "went live without a security approval: {}",
                        unapproved.join(", ")
                    ),
                )
            }
            .with(live_high),
        );

        let mut ev = Vec::new();
        let mut problems = Vec::new();
        for r in &active_releases {
            let items: Vec<Item> = serde_json::from_str(&r.evidence).unwrap_or_default();
            let reports: Vec<&Item> = items
                .iter()
                .filter(|i| VULN_KINDS.contains(&i.kind.as_str()))
                .collect();
            if reports.is_empty() {
                problems.push(format!(
                    "{} has no vulnerability report attached (evidence kind `vulns`)",
                    r.id
                ));
                ev.push(json!({"release": r.id, "report": null}));
                continue;
            }
            for i in reports {
                // Read once: the bytes hashed are the bytes judged.
                let bytes = std::fs::read(Path::new(&i.name)).ok();
                match &bytes {
                    Some(b) if hex::encode(sha2::Sha256::digest(b)) == i.sha256 => {}
                    Some(_) => {
                        problems.push(format!(
                            "{}: {} changed since it was attached",
                            r.id, i.name
                        ));
                        continue;
                    }
                    None => {
                        problems.push(format!("{}: {} cannot be read here", r.id, i.name));
                        continue;
                    }
                }
                let report = bytes.and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                match report.as_ref().and_then(critical_unexcepted) {
                    Some(c) if c.is_empty() => ev.push(json!({"release": r.id, "report": i.name, "sha256": i.sha256, "critical": 0})),
                    Some(c) => {
                        problems.push(format!("{}: {} critical finding(s) without an exception in force: {}", r.id, c.len(), c.join(", ")));
                        ev.push(json!({"release": r.id, "report": i.name, "sha256": i.sha256, "critical": c}));
                    }
                    None => problems.push(format!("{}: {} is not a `custos vulns scan --json` report", r.id, i.name)),
                }
            }
        }
        out.push(
            if active_releases.is_empty() {
                CheckResult::new("release-vulns", Status::NotCovered, "no active release")
            } else if problems.is_empty() {
                CheckResult::new(
                    "release-vulns",
                    Status::Pass,
                    format!(
                        "{} active release(s), no critical finding without an exception",
                        active_releases.len()
                    ),
                )
            } else {
                CheckResult::new("release-vulns", Status::Fail, problems.join("; "))
            }
            .with(ev),
        );

        // models-signed and models-carded: models served by route or by an active release.
        let mut served: BTreeSet<(String, String)> = BTreeSet::new();
        for m in &config.models {
            if let Some((n, v)) = m.registry.as_deref().and_then(|r| r.split_once('@')) {
                served.insert((n.to_owned(), v.to_owned()));
            }
        }
        for r in &active_releases {
            if let Ok(c) =
                serde_json::from_str::<custos_govern::release::tier::Composite>(&r.composite)
            {
                if let Some(m) = c.model {
                    served.insert((m.name, m.version));
                }
            }
        }
        let mut unsigned = Vec::new();
        let mut uncarded = Vec::new();
        let mut ev_signed = Vec::new();
        let mut ev_card = Vec::new();
        for (name, version) in &served {
            let label = format!("{name}@{version}");
            let Ok(m) = store.model_version(name, version).await else {
                unsigned.push(format!("{label} (not registered)"));
                uncarded.push(format!("{label} (not registered)"));
                continue;
            };
            if m.signature.is_some() || m.kind == "remote" {
                ev_signed.push(json!({"model": label, "kind": m.kind, "manifest_digest": m.manifest_digest, "signer": m.signer, "state": m.state}));
            } else {
                unsigned.push(label.clone());
            }
            match (&m.card, &m.card_digest, &m.card_signature) {
                (Some(text), Some(d), Some(_)) => {
                    let problems = custos_govern::models::card::Card::parse(text)
                        .map(|c| {
                            custos_govern::models::card::lint(
                                &c,
                                custos_govern::models::card::Kind::Model,
                                None,
                                None,
                            )
                        })
                        .unwrap_or_else(|p| vec![p]);
                    if problems.is_empty() {
                        ev_card.push(json!({"model": label, "card_digest": format!("sha256:{d}")}));
                    } else {
                        uncarded.push(format!(
                            "{label} (card: line {}: {})",
                            problems[0].line, problems[0].message
                        ));
                    }
                }
                _ => uncarded.push(format!("{label} (no signed card)")),
            }
        }
        let verdict = |id: &str, bad: &[String], good: Vec<Value>, what: &str| {
            if served.is_empty() {
                CheckResult::new(id, Status::NotCovered, "no model is served from the registry (no `registry =` route, no active release)")
            } else if bad.is_empty() {
                CheckResult::new(
                    id,
                    Status::Pass,
                    format!("{} served model(s), each {what}", served.len()),
                )
                .with(good)
            } else {
                CheckResult::new(id, Status::Fail, format!("not {what}: {}", bad.join(", ")))
                    .with(good)
            }
        };
        out.push(verdict(
            "models-signed",
            &unsigned,
            ev_signed,
            "registered and signed",
        ));
        out.push(verdict(
            "models-carded",
            &uncarded,
            ev_card,
            "with a signed card that lints",
        ));

        // team-budgets: every team has a budget with alert thresholds.
        let teams = store.list_teams(None).await?;
        let budgets = store.budgets(None).await?;
        let mut without = Vec::new();
        let mut ev = Vec::new();
        for t in &teams {
            let scope = custos_finops::budget::Scope::Team(t.name.clone());
            match budgets
                .iter()
                .find(|b| b.tenant == t.tenant && b.scope == scope && !b.thresholds.is_empty())
            {
                Some(b) => ev.push(json!({"team": format!("{}/{}", t.tenant, t.name), "budget": b.name, "thresholds": b.thresholds})),
                None => without.push(format!("{}/{}", t.tenant, t.name)),
            }
        }
        out.push(
            if teams.is_empty() {
                CheckResult::new("team-budgets", Status::NotCovered, "no teams")
            } else if without.is_empty() {
                CheckResult::new("team-budgets", Status::Pass, format!("{} team(s), each with a budget that alerts", teams.len()))
            } else {
                CheckResult::new(
                    "team-budgets",
                    Status::Fail,
                    format!("without a budget with alerts: {} (`custos budgets create NAME --scope team:TEAM --amount N`; it alerts at 70, 90 and 100%)", without.join(", ")),
                )
            }
            .with(ev),
        );

        // erasure-sla
        let erasures = store.erasures().await?;
        let mut late = Vec::new();
        let mut ev = Vec::new();
        for e in erasures.iter().filter(|e| e.requested_at <= as_of) {
            let done = e.finished_at.filter(|f| *f <= as_of);
            let late_by = match done {
                Some(f) => f > e.due_at,
                None => as_of > e.due_at,
            };
            if late_by {
                late.push(e.id.clone());
            }
            ev.push(json!({"erasure": e.id, "state": e.state, "requested_at": format_rfc3339(e.requested_at),
                           "due_at": format_rfc3339(e.due_at), "finished_at": done.map(format_rfc3339), "within_sla": !late_by}));
        }
        out.push(
            if ev.is_empty() {
                CheckResult::new("erasure-sla", Status::NotCovered, "no erasure requests")
            } else if late.is_empty() {
                CheckResult::new(
                    "erasure-sla",
                    Status::Pass,
                    format!("{} erasure request(s), each within its SLA", ev.len()),
                )
            } else {
                CheckResult::new(
                    "erasure-sla",
                    Status::Fail,
                    format!("past their SLA: {}", late.join(", ")),
                )
            }
            .with(ev),
        );

        // pii-guard: redact or block on prompts by default.
        use custos_pii::GuardAction;
        let g = &config.pii.guard;
        let loose: Vec<String> = g
            .rules
            .iter()
            .filter(|r| r.prompt == Some(GuardAction::Allow))
            .map(|r| {
                format!(
                    "a rule for tenant {} app {} model {}",
                    r.tenant.as_deref().unwrap_or("*"),
                    r.app.as_deref().unwrap_or("*"),
                    r.model.as_deref().unwrap_or("*")
                )
            })
            .collect();
        out.push(if g.prompt == GuardAction::Allow {
            CheckResult::new("pii-guard", Status::Fail, "[pii.guard] prompt = \"allow\": personal data in prompts reaches providers (set redact or block)")
        } else if !loose.is_empty() {
            CheckResult::new("pii-guard", Status::Fail, format!("the guard is off for {}", loose.join("; ")))
        } else {
            CheckResult::new("pii-guard", Status::Pass, format!("prompts: {:?}, responses: {:?}", g.prompt, g.response).to_lowercase())
        });

        out.push(self.dpia_check(as_of).await?);
        Ok(out)
    }

    /// Every control id a risk register may link to, with what it is, as the running
    /// configuration and store have them.
    pub async fn control_catalog(
        &self,
        config: &Config,
        policy_ids: &[&str],
    ) -> Result<BTreeMap<String, String>, ControlError> {
        use custos_pii::GuardAction;
        let mut c = BTreeMap::new();
        let g = &config.pii.guard;
        if g.prompt != GuardAction::Allow {
            c.insert(
                "guard:pii-prompt".into(),
                format!("PII guard on prompts ({:?})", g.prompt).to_lowercase(),
            );
        }
        if g.response != GuardAction::Allow {
            c.insert(
                "guard:pii-response".into(),
                format!("PII guard on responses ({:?})", g.response).to_lowercase(),
            );
        }
        for id in policy_ids {
            c.insert(format!("policy:{id}"), "Cedar policy".into());
        }
        for b in self.store.budgets(None).await? {
            c.insert(
                format!("budget:{}/{}", b.tenant, b.name),
                format!("budget on {} ({:?})", b.scope, b.action).to_lowercase(),
            );
        }
        c.insert(
            "gate:release-approvals".into(),
            "release tiers' required approvals".into(),
        );
        let rules = custos_govern::release::tier::default_rules();
        let mut kinds: BTreeSet<String> = rules.values().flat_map(|r| r.evidence.clone()).collect();
        for r in config.release.tiers.values() {
            kinds.extend(r.evidence.iter().cloned());
        }
        for k in kinds {
            c.insert(
                format!("gate:evidence:{k}"),
                format!("release evidence `{k}` required by a tier"),
            );
        }
        if !config.registry.trust.is_empty() {
            c.insert(
                "gate:model-signature".into(),
                "only models signed by a trusted key are served".into(),
            );
        }
        if !config.release.freeze.is_empty() {
            c.insert("gate:change-freeze".into(), "change freeze windows".into());
        }
        if !config.release.slo.is_empty() {
            c.insert("gate:slo".into(), "SLO burn freezes promotions".into());
        }
        c.insert(
            "gate:dpia".into(),
            "a release that triggered a DPIA is promoted only once it is approved".into(),
        );
        for class in &config.lifecycle.class {
            c.insert(
                format!("retention:{}", class.name),
                "retention policy of a data class".into(),
            );
        }
        for (id, what) in custos_govern::comply::CHECKS {
            c.insert(format!("check:{id}"), (*what).to_owned());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::critical_unexcepted;
    use serde_json::json;

    #[test]
    fn only_critical_findings_without_an_exception_count() {
        let report = json!({"findings": [
            {"id": "CVE-1", "severity": "CRITICAL", "package": "a", "version": "1", "suppressed_by": null},
            {"id": "CVE-2", "severity": "critical", "package": "b", "version": "2", "suppressed_by": "EXC-7"},
            {"id": "CVE-3", "severity": "high", "package": "c", "version": "3", "suppressed_by": null},
            {"id": "RUSTSEC-4", "severity": "critical", "package": "d", "version": "4", "suppressed_by": null, "informational": "unmaintained"}
        ]});
        assert_eq!(
            critical_unexcepted(&report),
            Some(vec!["CVE-1 in a 1".to_owned()])
        );
        assert_eq!(critical_unexcepted(&json!({"findings": []})), Some(vec![]));
        assert_eq!(critical_unexcepted(&json!({"runs": []})), None);
    }
}

/// A risk register read and linted as `custos risk lint` lints it.
#[derive(Clone, Debug)]
pub struct RegisterLint {
    pub register: custos_govern::risk::Register,
    /// Every problem in line order; a register that does not parse has one, its `syntax`.
    pub problems: Vec<custos_govern::risk::Problem>,
    /// Mean annualized loss exposure of each risk that carries FAIR ranges.
    pub exposure: BTreeMap<String, f64>,
}

impl RegisterLint {
    /// Clean: no error (warnings allowed).
    pub fn ok(&self) -> bool {
        !self
            .problems
            .iter()
            .any(|p| p.severity == custos_govern::risk::Severity::Error)
    }
}

/// FAIR simulations per risk for the lint: enough for a stable mean, seeded so the same
/// register lints the same way every time.
const LINT_ITERATIONS: u32 = 10_000;

impl Control {
    /// Lints a register's text against the controls that exist in `config` and the loaded
    /// policies (`policy_ids`), as of `today`; one reading shared by `custos risk lint`,
    /// `custos comply status` and the console.
    pub async fn lint_register(
        &self,
        config: &Config,
        policy_ids: &[&str],
        text: &str,
        today: (i32, u8, u8),
    ) -> Result<RegisterLint, ControlError> {
        use custos_govern::risk::{self, fair, LintContext, Problem, Severity};
        let parsed = match risk::parse(text) {
            Ok(p) => p,
            Err(risk::RiskError::Syntax { line, message }) => {
                return Ok(RegisterLint {
                    register: risk::Register {
                        system: None,
                        currency: None,
                        thresholds: risk::Thresholds::default(),
                        risks: Vec::new(),
                    },
                    problems: vec![Problem {
                        line,
                        risk: None,
                        rule: "syntax",
                        severity: Severity::Error,
                        message,
                    }],
                    exposure: BTreeMap::new(),
                })
            }
        };
        let catalog = self.control_catalog(config, policy_ids).await?;
        let exposure: BTreeMap<String, f64> = parsed
            .register
            .risks
            .iter()
            .filter_map(|r| {
                let f = r.fair.as_ref()?;
                fair::simulate(f, LINT_ITERATIONS, 1)
                    .ok()
                    .map(|e| (r.id.clone(), e.ale))
            })
            .collect();
        let problems = risk::lint(
            &parsed,
            &LintContext {
                today,
                controls: Some(&catalog),
                exposure: &exposure,
            },
        );
        Ok(RegisterLint {
            register: parsed.register,
            problems,
            exposure,
        })
    }
}
