//! Tenants, teams, apps and API keys: their creation, limits, residency, revocation and
//! rotation, each one authorized change with its ledger event.

use crate::{Actor, Control, ControlError, Evidence, Recorded, DEFAULT_TENANT};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_store::{App, Change, KeyRow, NewKey, StoreError, Team, Tenant};
use serde_json::{json, Value};

fn tenant_state(t: &Tenant) -> Value {
    json!({"type": "tenant", "id": t.id, "name": t.name, "regions": t.regions})
}

fn team_state(t: &Team) -> Value {
    json!({"type": "team", "id": t.id, "tenant": t.tenant, "name": t.name, "rpm": t.rpm, "tpm": t.tpm})
}

fn app_state(a: &App) -> Value {
    json!({"type": "app", "id": a.id, "tenant": a.tenant, "team": a.team, "name": a.name,
           "tools": a.tools})
}

/// A tool name as providers accept them (OpenAI: letters, digits, `_`, `-`, up to 64),
/// plus `.` and `:` for namespaced (MCP-style) tools.
fn check_tool_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ControlError::Invalid(format!(
            "tool name {name:?} is invalid: use 1-128 letters, digits, '_', '-', '.' or ':'"
        )))
    }
}

/// The ledger's view of a key: who owns it and what it may do, never the secret or digest.
fn key_state(k: &KeyRow) -> Value {
    json!({"type": "api_key", "id": k.id, "prefix": k.prefix, "tenant": k.tenant, "team": k.team,
           "app": k.app, "env": k.env, "models": k.models, "rpm": k.rpm, "tpm": k.tpm,
           "expires_at": k.expires_at.map(format_rfc3339),
           "revoked_at": k.revoked_at.map(format_rfc3339), "rotated_from": k.rotated_from,
           "roles": (!k.roles.is_empty()).then_some(&k.roles)})
}

/// Team limits to set: `None` keeps the current value, `Some(None)` clears it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TeamLimits {
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
}

/// Which models a new key may call and how fast.
#[derive(Clone, Debug)]
pub struct KeyScope {
    /// `*` or a comma-separated list.
    pub models: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub env: String,
    /// Lifetime from now, in milliseconds.
    pub expires_in_ms: Option<i64>,
    pub name: Option<String>,
    /// Roles the key holds in policies (`finops-viewer`, `auditor`, …); none: `service`.
    pub roles: Vec<String>,
}

/// A key to mint for an app.
#[derive(Clone, Debug)]
pub struct KeyRequest {
    pub tenant: String,
    pub team: String,
    pub app: String,
    pub scope: KeyScope,
}

/// A minted key: the stored row and the secret, which exists only here and is never stored.
#[derive(Clone, Debug)]
pub struct CreatedKey {
    pub key: KeyRow,
    pub secret: String,
}

#[derive(Clone, Debug)]
pub struct RotatedKey {
    pub old: KeyRow,
    pub new: KeyRow,
    pub secret: String,
}

fn mint(app_id: &str, scope: &KeyScope) -> Result<(String, NewKey), ControlError> {
    let minted = custos_authz::api_key::mint()
        .map_err(|e| ControlError::invalid(format!("cannot mint a key: {e}")))?;
    let new = NewKey {
        digest_hex: minted.digest.to_hex(),
        prefix: minted.display_prefix.clone(),
        name: scope.name.clone(),
        app_id: app_id.to_owned(),
        env: scope.env.clone(),
        models: scope.models.clone(),
        rpm: scope.rpm,
        tpm: scope.tpm,
        expires_at: scope.expires_in_ms.map(|ms| now_ms().saturating_add(ms)),
        roles: scope.roles.clone(),
    };
    Ok((minted.secret, new))
}

impl Control {
    /// The default tenant, created (with its event) inside `change` on first use; any other
    /// tenant must exist.
    pub(crate) async fn tenant_in_change(
        &self,
        change: &mut Change,
        actor: &Actor,
        tenant: &str,
        events: &mut Vec<String>,
    ) -> Result<Tenant, ControlError> {
        if tenant != DEFAULT_TENANT {
            return change
                .tenant(tenant)
                .await
                .map_err(|e| missing(e, &format!("custos tenants create {tenant}")));
        }
        let (t, created) = change.ensure_tenant(tenant).await?;
        if created {
            let d = self.decide(actor, "tenants.manage", tenant)?;
            events.push(self.event(
                actor,
                "tenants.manage",
                &d,
                Evidence {
                    activity: "tenant.create",
                    resource: tenant_state(&t),
                    before: None,
                    after: Some(tenant_state(&t)),
                },
                &Reason::why("the default tenant, created on first use"),
            ));
        }
        Ok(t)
    }

    /// The default tenant, created (with its event) when it does not exist yet.
    pub async fn ensure_default_tenant(
        &self,
        actor: &Actor,
    ) -> Result<Recorded<Tenant>, ControlError> {
        let mut c = self.store.begin_change().await?;
        let mut events = Vec::new();
        let t = self
            .tenant_in_change(&mut c, actor, DEFAULT_TENANT, &mut events)
            .await?;
        self.commit(c, events, t).await
    }

    pub async fn create_tenant(
        &self,
        actor: &Actor,
        name: &str,
        reason: &Reason,
    ) -> Result<Recorded<Tenant>, ControlError> {
        let d = self
            .authorize(actor, "tenants.manage", name, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let t = c.create_tenant(name).await?;
        let e = self.event(
            actor,
            "tenants.manage",
            &d,
            Evidence {
                activity: "tenant.create",
                resource: tenant_state(&t),
                before: None,
                after: Some(tenant_state(&t)),
            },
            reason,
        );
        self.commit(c, vec![e], t).await
    }

    /// Pins a tenant to regions (none: unpinned).
    pub async fn set_tenant_regions(
        &self,
        actor: &Actor,
        name: &str,
        regions: &[String],
        reason: &Reason,
    ) -> Result<Recorded<Tenant>, ControlError> {
        let d = self
            .authorize(actor, "tenants.manage", name, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let before = c.tenant(name).await?;
        let t = c.set_tenant_regions(name, regions).await?;
        let e = self.event(
            actor,
            "tenants.manage",
            &d,
            Evidence {
                activity: "tenant.regions",
                resource: tenant_state(&t),
                before: Some(tenant_state(&before)),
                after: Some(tenant_state(&t)),
            },
            reason,
        );
        self.commit(c, vec![e], t).await
    }

    pub async fn create_team(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
        reason: &Reason,
    ) -> Result<Recorded<Team>, ControlError> {
        let d = self
            .authorize(actor, "teams.manage", tenant, reason)
            .await?;
        check_limit("rpm", rpm)?;
        check_limit("tpm", tpm)?;
        let mut c = self.store.begin_change().await?;
        let mut events = Vec::new();
        self.tenant_in_change(&mut c, actor, tenant, &mut events)
            .await?;
        let team = c.create_team(tenant, name, rpm, tpm).await?;
        events.push(self.event(
            actor,
            "teams.manage",
            &d,
            Evidence {
                activity: "team.create",
                resource: team_state(&team),
                before: None,
                after: Some(team_state(&team)),
            },
            reason,
        ));
        self.commit(c, events, team).await
    }

    /// Sets or clears a team's shared limits; gateways apply them within a second.
    pub async fn set_team_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        name: &str,
        limits: TeamLimits,
        reason: &Reason,
    ) -> Result<Recorded<Team>, ControlError> {
        let d = self
            .authorize(actor, "teams.manage", tenant, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let before = c.team(tenant, name).await?;
        let rpm = limits.rpm.unwrap_or(before.rpm);
        let tpm = limits.tpm.unwrap_or(before.tpm);
        check_limit("rpm", rpm)?;
        check_limit("tpm", tpm)?;
        let team = c.set_team_limits(tenant, name, rpm, tpm).await?;
        let e = self.event(
            actor,
            "teams.manage",
            &d,
            Evidence {
                activity: "team.update",
                resource: team_state(&team),
                before: Some(team_state(&before)),
                after: Some(team_state(&team)),
            },
            reason,
        );
        self.commit(c, vec![e], team).await
    }

    pub async fn create_app(
        &self,
        actor: &Actor,
        tenant: &str,
        team: &str,
        name: &str,
        reason: &Reason,
    ) -> Result<Recorded<App>, ControlError> {
        let d = self
            .authorize(actor, "teams.manage", tenant, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let mut events = Vec::new();
        self.tenant_in_change(&mut c, actor, tenant, &mut events)
            .await?;
        let app = c.create_app(tenant, team, name).await.map_err(|e| {
            missing(
                e,
                &format!("custos teams create {team}{}", tenant_flag(tenant)),
            )
        })?;
        events.push(self.event(
            actor,
            "teams.manage",
            &d,
            Evidence {
                activity: "app.create",
                resource: app_state(&app),
                before: None,
                after: Some(app_state(&app)),
            },
            reason,
        ));
        self.commit(c, events, app).await
    }

    /// Declares the tools an app uses (`None` withdraws the declaration). With a
    /// declaration, the built-in `tools.declared` policy refuses every other tool.
    pub async fn set_app_tools(
        &self,
        actor: &Actor,
        tenant: &str,
        team: &str,
        name: &str,
        tools: Option<Vec<String>>,
        reason: &Reason,
    ) -> Result<Recorded<App>, ControlError> {
        let d = self
            .authorize(actor, "tools.manage", tenant, reason)
            .await?;
        let tools = match tools {
            Some(mut list) => {
                for t in &list {
                    check_tool_name(t)?;
                }
                list.sort();
                list.dedup();
                Some(list)
            }
            None => None,
        };
        let mut c = self.store.begin_change().await?;
        let before = c.app(tenant, team, name).await.map_err(|e| {
            missing(
                e,
                &format!(
                    "custos apps create {name} --team {team}{}",
                    tenant_flag(tenant)
                ),
            )
        })?;
        let app = c
            .set_app_tools(tenant, team, name, tools.as_deref())
            .await?;
        let e = self.event(
            actor,
            "tools.manage",
            &d,
            Evidence {
                activity: "app.tools",
                resource: app_state(&app),
                before: Some(app_state(&before)),
                after: Some(app_state(&app)),
            },
            reason,
        );
        self.commit(c, vec![e], app).await
    }

    /// Mints an API key for an app. The secret is returned once and never stored.
    pub async fn create_key(
        &self,
        actor: &Actor,
        req: &KeyRequest,
        reason: &Reason,
    ) -> Result<Recorded<CreatedKey>, ControlError> {
        let d = self
            .authorize(actor, "keys.create", &req.tenant, reason)
            .await?;
        check_scope(&req.scope)?;
        check_roles_held(actor, &req.scope.roles)?;
        let mut c = self.store.begin_change().await?;
        let mut events = Vec::new();
        self.tenant_in_change(&mut c, actor, &req.tenant, &mut events)
            .await?;
        let app = c.app(&req.tenant, &req.team, &req.app).await.map_err(|e| {
            missing(
                e,
                &format!(
                    "custos apps create {} --team {}{}",
                    req.app,
                    req.team,
                    tenant_flag(&req.tenant)
                ),
            )
        })?;
        let (secret, new) = mint(&app.id, &req.scope)?;
        let key = c.insert_key(&new).await?;
        events.push(self.event(
            actor,
            "keys.create",
            &d,
            Evidence {
                activity: "key.create",
                resource: key_state(&key),
                before: None,
                after: Some(key_state(&key)),
            },
            reason,
        ));
        self.commit(c, events, CreatedKey { key, secret }).await
    }

    /// The key named by id or displayed prefix, authorized for `action` on its tenant. With
    /// `tenant` given (the admin API's path), the caller is authorized on that tenant first and
    /// a key of another tenant is "not found", exactly like a key that does not exist.
    async fn key_for(
        &self,
        actor: &Actor,
        action: &'static str,
        tenant: Option<&str>,
        key: &str,
        reason: &Reason,
    ) -> Result<(KeyRow, custos_authz::policy::Decision), ControlError> {
        if let Some(t) = tenant {
            let d = self.authorize(actor, action, t, reason).await?;
            let row = match self.store.key(key).await {
                Ok(k) if k.tenant == t => k,
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    return Err(StoreError::NotFound(format!("key {key:?}")).into())
                }
                Err(e) => return Err(e.into()),
            };
            return Ok((row, d));
        }
        let row = self.store.key(key).await?;
        let d = self.authorize(actor, action, &row.tenant, reason).await?;
        Ok((row, d))
    }

    /// Revokes a key now; every gateway refuses it within a second.
    pub async fn revoke_key(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        key: &str,
        reason: &Reason,
    ) -> Result<Recorded<KeyRow>, ControlError> {
        let (row, d) = self
            .key_for(actor, "keys.revoke", tenant, key, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let before = c.key(&row.id).await?;
        let k = c.revoke_key(&row.id, None).await?;
        let e = self.event(
            actor,
            "keys.revoke",
            &d,
            Evidence {
                activity: "key.revoke",
                resource: key_state(&k),
                before: Some(key_state(&before)),
                after: Some(key_state(&k)),
            },
            reason,
        );
        self.commit(c, vec![e], k).await
    }

    /// Issues a successor with the same scope and limits; the old key stops after `overlap_ms`.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        key: &str,
        overlap_ms: i64,
        reason: &Reason,
    ) -> Result<Recorded<RotatedKey>, ControlError> {
        if overlap_ms < 0 {
            return Err(ControlError::invalid("the overlap must not be negative"));
        }
        let (row, d) = self
            .key_for(actor, "keys.rotate", tenant, key, reason)
            .await?;
        let mut c = self.store.begin_change().await?;
        let before = c.key(&row.id).await?;
        let scope = KeyScope {
            models: before.models.clone(),
            rpm: before.rpm,
            tpm: before.tpm,
            env: before.env.clone(),
            expires_in_ms: None,
            name: before.name.clone(),
            roles: before.roles.clone(),
        };
        let (secret, mut new) = mint(&before.app_id, &scope)?;
        new.expires_at = before.expires_at;
        let (old, succ) = c
            .rotate_key(&before.id, &new, now_ms().saturating_add(overlap_ms))
            .await?;
        let e = self.event(
            actor,
            "keys.rotate",
            &d,
            Evidence {
                activity: "key.rotate",
                resource: json!({"type": "api_key", "id": succ.id, "rotated_from": old.id,
                                 "tenant": succ.tenant, "old_key_stops_at": old.revoked_at.map(format_rfc3339)}),
                before: Some(key_state(&before)),
                after: Some(json!([key_state(&old), key_state(&succ)])),
            },
            reason,
        );
        self.commit(
            c,
            vec![e],
            RotatedKey {
                old,
                new: succ,
                secret,
            },
        )
        .await
    }
}

/// A missing object the change needs, as an error that names the command creating it.
fn missing(e: StoreError, create: &str) -> ControlError {
    match e {
        StoreError::NotFound(what) => {
            ControlError::Invalid(format!("{what} not found; create it with `{create}`"))
        }
        other => other.into(),
    }
}

fn tenant_flag(tenant: &str) -> String {
    if tenant == DEFAULT_TENANT {
        String::new()
    } else {
        format!(" --tenant {tenant}")
    }
}

fn check_limit(what: &str, v: Option<i64>) -> Result<(), ControlError> {
    match v {
        Some(n) if n <= 0 || n > i64::from(u32::MAX) => Err(ControlError::invalid(format!(
            "{what} {n} is out of range: use 1 to {} (or none for no limit)",
            u32::MAX
        ))),
        _ => Ok(()),
    }
}

/// A key cannot carry more power than its maker: a credential may give a new key only roles
/// it holds itself (by its credential or a live grant). The local operator, who owns the
/// database, may give any.
fn check_roles_held(actor: &Actor, roles: &[String]) -> Result<(), ControlError> {
    if actor.kind != crate::ActorKind::Credential {
        return Ok(());
    }
    let held = custos_authz::policy::roles(&actor.principal);
    for r in roles {
        if !held.contains(r) && !actor.facts.grants.contains(r) {
            return Err(ControlError::invalid(format!(
                "a key cannot hold role {r:?}: {} does not hold it, and a key gets no role its maker lacks",
                actor.principal.id
            )));
        }
    }
    Ok(())
}

fn check_scope(s: &KeyScope) -> Result<(), ControlError> {
    if s.roles.len() > 16 {
        return Err(ControlError::invalid("a key holds at most 16 roles"));
    }
    for r in &s.roles {
        if !custos_core::id::is_valid_name(r) {
            return Err(ControlError::invalid(format!(
                "role {r:?} is invalid: use letters, digits, '.', '_' or '-'"
            )));
        }
    }
    check_limit("rpm", s.rpm)?;
    check_limit("tpm", s.tpm)?;
    if !custos_core::id::is_valid_name(&s.env) {
        return Err(ControlError::invalid(format!(
            "env {:?} is invalid: use letters, digits, '.', '_' or '-'",
            s.env
        )));
    }
    if s.expires_in_ms.is_some_and(|ms| ms <= 0) {
        return Err(ControlError::invalid("a key's lifetime must be positive"));
    }
    if s.models.len() > 4096 || s.models.chars().any(char::is_control) {
        return Err(ControlError::invalid(
            "models must be `*` or a comma-separated list of model names",
        ));
    }
    if s.name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 128 || n.chars().any(char::is_control))
    {
        return Err(ControlError::invalid(
            "a key's name must be at most 128 printable characters",
        ));
    }
    Ok(())
}
