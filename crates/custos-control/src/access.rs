//! Access reviews: every principal of a tenant with its roles, keys, grants, creator and last
//! use, and the findings a periodic review asks about (keys unused or older than the rotation
//! policy, grants that expired without being revoked, admins without MFA). The review is
//! authorized, then computed, then recorded with the digest of its findings; the CLI and the
//! console both run it here.

use crate::{Actor, Control, ControlError, Recorded};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_store::{KeyFilter, Store, StoreError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Roles whose holders must prove a second factor.
pub const ADMIN_ROLES: &[&str] = &["tenant-admin", "security-admin", "operator"];

/// One principal under review.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReviewRow {
    pub principal: String,
    /// `service_account` or `user`.
    pub kind: &'static str,
    pub roles: Vec<String>,
    pub team: String,
    pub app: String,
    pub keys: Vec<String>,
    pub grants: Vec<String>,
    pub created_at: Option<i64>,
    pub creator: Option<String>,
    pub last_use: Option<i64>,
    pub status: String,
    /// `unused`, `stale-key`, `expired-grant:ID`, `admin-without-mfa`.
    pub flags: Vec<String>,
}

impl ReviewRow {
    pub fn to_json(&self) -> Value {
        json!({
            "principal": self.principal, "type": self.kind, "roles": self.roles, "team": self.team,
            "app": self.app, "keys": self.keys, "grants": self.grants,
            "created_at": self.created_at.map(format_rfc3339), "creator": self.creator,
            "last_use": self.last_use.map(format_rfc3339), "status": self.status, "flags": self.flags,
        })
    }
}

/// A finished review: its rows (by principal), how many are flagged, the findings as
/// recorded, and their digest (in the ledger event).
#[derive(Clone, Debug)]
pub struct AccessReview {
    pub rows: Vec<ReviewRow>,
    pub flagged: usize,
    pub findings: Value,
    pub digest: String,
}

/// What the ledger says: who created each key, and each user's last appearance.
struct Sightings {
    creators: HashMap<String, String>,
    users: BTreeMap<String, (i64, Vec<String>, bool)>,
}

async fn scan_ledger(store: &Store, tenant: &str) -> Result<Sightings, StoreError> {
    let mut s = Sightings {
        creators: HashMap::new(),
        users: BTreeMap::new(),
    };
    let mut from = 0i64;
    const PAGE: i64 = 5_000;
    loop {
        let page = store.ledger_entries(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.index + 1;
        // Users are sealed in the ledger: opened while their key lives (an erased one is
        // reviewed as erased:KEYID).
        let mut values: Vec<Value> = page
            .iter()
            .map(|e| serde_json::from_str(&e.event).unwrap_or(Value::Null))
            .collect();
        crate::seal::reveal(store, &mut values).await?;
        for (e, v) in page.iter().zip(values) {
            if v.is_null() {
                continue;
            }
            let actor = &v["actor"];
            if matches!(v["activity"].as_str(), Some("key.create" | "key.rotate")) {
                if let (Some(id), Some(by)) =
                    (v["resources"][0]["id"].as_str(), actor["id"].as_str())
                {
                    if v["resources"][0]["tenant"] == tenant {
                        s.creators.insert(id.to_owned(), by.to_owned());
                    }
                }
            }
            if actor["type"] == "user" && actor["tenant"] == tenant && actor["auth"] != "local" {
                if let Some(sub) = actor["id"].as_str() {
                    // Users are named as grants name them: ISSUER#SUBJECT, so a namesake at
                    // another issuer is another row.
                    let id = match actor["issuer"].as_str() {
                        Some(iss) if !iss.is_empty() => format!("{iss}#{sub}"),
                        _ => sub.to_owned(),
                    };
                    let roles = actor["roles"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mfa = actor["mfa"].as_bool().unwrap_or(false);
                    s.users.insert(id, (e.recorded_at, roles, mfa));
                }
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    Ok(s)
}

impl Control {
    /// Reviews `tenant`'s access (`access.review`): a credential unused for `unused_ms` is
    /// flagged `unused`, a key older than `rotate_ms` `stale-key`. The findings' digest is
    /// recorded in the ledger with the reviewer and reason.
    pub async fn access_review(
        &self,
        actor: &Actor,
        tenant: &str,
        unused_ms: i64,
        rotate_ms: i64,
        reason: &Reason,
    ) -> Result<Recorded<AccessReview>, ControlError> {
        self.authorize(actor, "access.review", tenant, reason)
            .await?;
        let store = &self.store;
        if store.tenant(tenant).await.is_err() {
            return Err(StoreError::NotFound(format!(
                "tenant {tenant:?}; `custos tenants list` shows them"
            ))
            .into());
        }
        let now = now_ms();
        let keys = store
            .list_keys(&KeyFilter {
                tenant: Some(tenant.to_owned()),
                include_inactive: true,
                ..KeyFilter::default()
            })
            .await?;
        let last_use = store.last_use_by_credential(tenant).await?;
        let grants = store.grants_list(Some(tenant)).await?;
        let seen = scan_ledger(store, tenant).await?;

        let mut rows: BTreeMap<String, ReviewRow> = BTreeMap::new();
        for k in &keys {
            let status = k.status(now).to_owned();
            let used = last_use.get(&k.id).copied();
            let mut flags = Vec::new();
            if status == "active" {
                if now - used.unwrap_or(k.created_at) >= unused_ms {
                    flags.push("unused".to_owned());
                }
                if now - k.created_at >= rotate_ms {
                    flags.push("stale-key".to_owned());
                }
                // A key holds no second factor: an admin role on one is an admin without MFA.
                if k.roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str())) {
                    flags.push("admin-without-mfa".to_owned());
                }
            }
            rows.insert(
                k.id.clone(),
                ReviewRow {
                    principal: k.id.clone(),
                    kind: "service_account",
                    roles: if k.roles.is_empty() {
                        vec!["service".into()]
                    } else {
                        k.roles.clone()
                    },
                    team: k.team.clone(),
                    app: k.app.clone(),
                    keys: vec![k.prefix.clone()],
                    created_at: Some(k.created_at),
                    creator: seen.creators.get(&k.id).cloned(),
                    last_use: used,
                    status,
                    flags,
                    ..ReviewRow::default()
                },
            );
        }
        for (id, (at, roles, mfa)) in &seen.users {
            let row = rows.entry(id.clone()).or_insert_with(|| ReviewRow {
                principal: id.clone(),
                kind: "user",
                status: "seen".into(),
                ..ReviewRow::default()
            });
            row.roles = roles.clone();
            row.last_use = Some(row.last_use.unwrap_or(0).max(*at));
            if now - at >= unused_ms {
                row.flags.push("unused".into());
            }
            if !mfa && roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str())) {
                row.flags.push("admin-without-mfa".into());
            }
        }
        for g in &grants {
            let row = rows
                .entry(g.principal.clone())
                .or_insert_with(|| ReviewRow {
                    principal: g.principal.clone(),
                    kind: if g.principal.starts_with("key_") {
                        "service_account"
                    } else {
                        "user"
                    },
                    status: "grant-holder".into(),
                    ..ReviewRow::default()
                });
            let state = g.state(now);
            row.grants.push(format!(
                "{} {} ({}{})",
                g.role,
                state,
                g.kind.as_str(),
                g.expires_at
                    .map(|e| format!(", until {}", format_rfc3339(e)))
                    .unwrap_or_default()
            ));
            if state == "expired" && g.revoked_at.is_none() {
                row.flags.push(format!("expired-grant:{}", g.id));
            }
            if state == "live" && ADMIN_ROLES.contains(&g.role.as_str()) {
                row.roles.push(format!("{} (granted)", g.role));
            }
        }
        let rows: Vec<ReviewRow> = rows.into_values().collect();
        let flagged = rows.iter().filter(|r| !r.flags.is_empty()).count();
        let findings = json!({
            "tenant": tenant,
            "reviewed_at": format_rfc3339(now),
            "principals": rows.iter().map(ReviewRow::to_json).collect::<Vec<_>>(),
            "flagged": flagged,
        });
        let recorded = self
            .record_access_review(actor, tenant, &findings, rows.len(), flagged, reason)
            .await?;
        Ok(Recorded {
            value: AccessReview {
                rows,
                flagged,
                findings,
                digest: recorded.value,
            },
            ledger: recorded.ledger,
        })
    }
}
