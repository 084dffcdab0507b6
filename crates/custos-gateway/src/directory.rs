//! The directory: tenant and team names → ids, team limits and tenant regions, loaded from
//! the store and refreshed like the key index, with the time-bound grants live now. Token principals name their tenant and team;
//! authorization reads a tenant's residency pins from here, never from the database.

use arc_swap::ArcSwap;
use custos_authz::jwt::{TokenClaims, TokenError};
use custos_authz::policy::TenantFacts;
use custos_core::principal::{AuthMethod, ModelScope, Principal};
use custos_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Live grants by (tenant, principal): role and expiry (ms).
type GrantIndex = HashMap<(String, String), Vec<(String, i64)>>;

#[derive(Clone, Debug)]
struct TenantEntry {
    id: String,
    facts: Arc<TenantFacts>,
}

/// A team as the directory knows it.
#[derive(Clone, Debug)]
struct TeamEntry {
    id: String,
    rpm: Option<u32>,
    tpm: Option<u32>,
}

/// Tenant and team names → ids and team limits, for principals that name them in claims.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: ArcSwap<HashMap<String, TenantEntry>>,
    teams: ArcSwap<HashMap<(String, String), TeamEntry>>,
    grants: ArcSwap<GrantIndex>,
    /// App id → the tools it declared, for apps that declared any.
    app_tools: ArcSwap<HashMap<String, Arc<Vec<String>>>>,
    /// One refresh at a time: two overlapping ones could otherwise store the older snapshot
    /// last (the periodic refresher against one a write asked for).
    refreshing: tokio::sync::Mutex<()>,
}

impl Directory {
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let d = Directory::default();
        d.refresh(store).await?;
        Ok(d)
    }

    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let _one = self.refreshing.lock().await;
        let tenants: HashMap<String, TenantEntry> = store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| {
                let facts = Arc::new(TenantFacts { regions: t.regions });
                (t.name, TenantEntry { id: t.id, facts })
            })
            .collect();
        let teams = store
            .list_teams(None)
            .await?
            .into_iter()
            .map(|t| {
                let limit = |v: Option<i64>| {
                    v.filter(|v| *v > 0)
                        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                };
                (
                    (t.tenant_id, t.name),
                    TeamEntry {
                        id: t.id,
                        rpm: limit(t.rpm),
                        tpm: limit(t.tpm),
                    },
                )
            })
            .collect();
        let mut grants = GrantIndex::new();
        for g in store.grants_live(custos_core::time::now_ms()).await? {
            if let Some(expires) = g.expires_at {
                grants
                    .entry((g.tenant, g.principal))
                    .or_default()
                    .push((g.role, expires));
            }
        }
        let app_tools = store
            .list_apps(None, None)
            .await?
            .into_iter()
            .filter_map(|a| a.tools.map(|t| (a.id, Arc::new(t))))
            .collect();
        self.app_tools.store(Arc::new(app_tools));
        self.grants.store(Arc::new(grants));
        self.tenants.store(Arc::new(tenants));
        self.teams.store(Arc::new(teams));
        Ok(())
    }

    /// The tools an app declared it uses; `None` when it never declared any.
    pub fn app_tools(&self, app_id: &str) -> Option<Arc<Vec<String>>> {
        self.app_tools.load().get(app_id).cloned()
    }

    /// The principal of verified claims, or why its tenant or team cannot be used.
    pub fn principal(&self, c: TokenClaims) -> Result<Principal, TokenError> {
        let Some(tenant) = c.tenant else {
            return Err(TokenError::Claim(
                "the token names no tenant and its issuer has no `default_tenant`".into(),
            ));
        };
        let mut p = Principal {
            id: c.subject,
            method: AuthMethod::Jwt,
            issuer: c.issuer,
            roles: c.roles,
            groups: c.groups,
            scopes: Some(c.scopes),
            mfa: c.mfa,
            tenant,
            team: c.team.unwrap_or_default(),
            models: ModelScope::Any,
            ..Principal::default()
        };
        self.resolve(&mut p).map_err(TokenError::Claim)?;
        Ok(p)
    }

    /// Fills a principal's tenant and team ids and team limits from their names.
    pub fn resolve(&self, p: &mut Principal) -> Result<(), String> {
        let tenant = &p.tenant;
        let Some(tenant_id) = self.tenants.load().get(tenant).map(|t| t.id.clone()) else {
            return Err(format!(
                "tenant {tenant:?} is not known to custos (create it with `custos tenants create {tenant}`)"
            ));
        };
        if !p.team.is_empty() {
            let teams = self.teams.load();
            let Some(t) = teams.get(&(tenant_id.clone(), p.team.clone())) else {
                return Err(format!(
                    "team {:?} is not a team of tenant {tenant:?}",
                    p.team
                ));
            };
            p.team_id = t.id.clone();
            p.team_rpm = t.rpm;
            p.team_tpm = t.tpm;
        }
        p.tenant_id = tenant_id;
        p.qualify();
        Ok(())
    }

    /// What authorization needs to know of a tenant (unknown tenants: nothing).
    pub fn tenant_facts(&self, name: &str) -> Arc<TenantFacts> {
        self.tenants
            .load()
            .get(name)
            .map(|t| t.facts.clone())
            .unwrap_or_default()
    }

    /// Roles a principal holds through grants live at `now_ms`. Expiry is checked here, on
    /// every request, so a grant stops on time without waiting for a refresh.
    /// Grants name principals within their tenant (`Principal::grant_name`): a token's
    /// subject only together with its issuer.
    pub fn granted_roles(&self, principal: &Principal, now_ms: i64) -> Vec<String> {
        let grants = self.grants.load();
        if grants.is_empty() {
            return Vec::new();
        }
        grants
            .get(&(principal.tenant.clone(), principal.grant_name()))
            .map(|list| {
                list.iter()
                    .filter(|(_, expires)| now_ms < *expires)
                    .map(|(role, _)| role.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refreshes in the background until the returned handle is aborted.
    pub fn spawn_refresher(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        crate::spawn_every(
            interval,
            "tenant directory refresh failed; using the last one",
            move || {
                let (this, store) = (self.clone(), store.clone());
                async move { this.refresh(&store).await }
            },
        )
    }
}
